//! The records of `__transaction_state`: which partition a transactional id lives in, and
//! the binary key and value layouts, the same as Kafka's so that the topic can be read with
//! Kafka's own tools and a transaction log written by either can be loaded by the other.
//!
//! Key, version 0: `i16 version, STRING transactional_id`.
//!
//! Value, version 0 (what classic transactions write, and what every Kafka version reads):
//! `i16 version, i64 producer_id, i16 producer_epoch, i32 timeout_ms, i8 state,
//! ARRAY(STRING topic, ARRAY(i32 partition)) partitions (null when Empty),
//! i64 last_update_ms, i64 start_ms`.
//!
//! Value, version 1 (written by Kafka for transaction version 2, KIP-890): the same fields
//! in the flexible encoding (compact strings and arrays, a tagged-field section after each
//! struct), with tags 0 PreviousProducerId, 1 NextProducerId, 2 ClientTransactionVersion,
//! and 3 NextProducerEpoch (newer Kafka) in the top-level section. Both versions are read;
//! version 0 is written.
//!
//! A record whose value is null (a tombstone) says the transactional id has expired.

use bytes::{BufMut, Bytes, BytesMut};

use super::metadata::TxnState;

pub const TOPIC: &str = "__transaction_state";

/// The only key version Kafka has written for this topic.
const KEY_VERSION: i16 = 0;
/// The value layouts: 0 classic, 1 flexible.
const VALUE_V0: i16 = 0;
const VALUE_V1: i16 = 1;
/// A Kafka STRING holds at most this many bytes; the coordinator refuses longer ids (see
/// [`super::metadata::init_producer_id`]), so every id that reaches a key fits.
pub const MAX_ID_BYTES: usize = i16::MAX as usize;

/// Defaults of the version 1 tagged fields, which a version 0 value implies.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// The partition of `__transaction_state` that owns `transactional_id`, as Kafka picks it:
/// Java's `String.hashCode`, made non-negative the way Kafka's `Utils.abs` does it
/// (`i32::MIN` becomes 0, anything else its absolute value), modulo the partition count.
/// It must match Kafka exactly: a client may be sent to a coordinator by one broker and
/// a migrated log must land where its ids are looked up.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in transactional_id.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // `checked_abs` fails only for i32::MIN, which Kafka maps to 0.
    h.checked_abs().unwrap_or(0) % partitions.max(1)
}

/// The key of `transactional_id`'s records.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_str(&mut buf, transactional_id);
    buf.freeze()
}

/// The transactional id in a key, or None for another key version or bytes that are not a
/// key of this topic.
pub fn decode_key(buf: &[u8]) -> Option<String> {
    let mut r = Reader(buf);
    if r.i16()? != KEY_VERSION {
        return None;
    }
    r.string()
}

/// The state of one transactional id as written to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub transaction_timeout_ms: i32,
    pub state: TxnState,
    /// The partitions of the open transaction, grouped by topic. Empty for the Empty state
    /// (written as a null array, as Kafka does) and once a transaction completed.
    pub partitions: Vec<(String, Vec<i32>)>,
    pub last_update_ms: i64,
    /// When the open transaction began; -1 when there is none.
    pub start_ms: i64,
    /// Version 1 only (tag 0): the producer id before the last rotation. -1 in version 0.
    pub previous_producer_id: i64,
    /// Version 1 only (tag 1): the producer id a transaction-version-2 commit will move to
    /// when the epoch ran out. -1 in version 0.
    pub next_producer_id: i64,
    /// Version 1 only (tag 3, newer Kafka): the epoch that goes with `next_producer_id`.
    pub next_producer_epoch: i16,
    /// Version 1 only (tag 2): the transaction version the client used; 0 in version 0.
    pub client_transaction_version: i16,
}

impl TxnLogValue {
    /// A value with the version 1 fields at their defaults.
    pub fn new(
        producer_id: i64,
        producer_epoch: i16,
        transaction_timeout_ms: i32,
        state: TxnState,
    ) -> Self {
        TxnLogValue {
            producer_id,
            producer_epoch,
            transaction_timeout_ms,
            state,
            partitions: Vec::new(),
            last_update_ms: -1,
            start_ms: -1,
            previous_producer_id: NO_PRODUCER_ID,
            next_producer_id: NO_PRODUCER_ID,
            next_producer_epoch: NO_PRODUCER_EPOCH,
            client_transaction_version: 0,
        }
    }
}

/// `v` in the layout Kafka writes for it: version 1 (with the producer id a rotation moves
/// to and the client's transaction version) for transaction version 2, version 0, which
/// every reader of the log understands, otherwise.
pub fn encode(v: &TxnLogValue) -> Bytes {
    if v.client_transaction_version >= 2 {
        encode_value_v1(v)
    } else {
        encode_value(v)
    }
}

/// `v` in layout version 0, which drops the version 1 fields.
pub fn encode_value(v: &TxnLogValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_V0);
    buf.put_i64(v.producer_id);
    buf.put_i16(v.producer_epoch);
    buf.put_i32(v.transaction_timeout_ms);
    buf.put_i8(v.state.id());
    if v.state == TxnState::Empty {
        buf.put_i32(-1);
    } else {
        buf.put_i32(len_i32(v.partitions.len()));
        for (topic, parts) in &v.partitions {
            put_str(&mut buf, topic);
            buf.put_i32(len_i32(parts.len()));
            for p in parts {
                buf.put_i32(*p);
            }
        }
    }
    buf.put_i64(v.last_update_ms);
    buf.put_i64(v.start_ms);
    buf.freeze()
}

/// `v` in layout version 1, the one Kafka writes for transaction version 2. Tagged fields
/// are written only when they differ from their defaults, as Kafka's serializer does.
pub fn encode_value_v1(v: &TxnLogValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(VALUE_V1);
    buf.put_i64(v.producer_id);
    buf.put_i16(v.producer_epoch);
    buf.put_i32(v.transaction_timeout_ms);
    buf.put_i8(v.state.id());
    if v.state == TxnState::Empty {
        put_uvarint(&mut buf, 0);
    } else {
        put_uvarint(&mut buf, len_u32(v.partitions.len()).saturating_add(1));
        for (topic, parts) in &v.partitions {
            put_compact_str(&mut buf, topic);
            put_uvarint(&mut buf, len_u32(parts.len()).saturating_add(1));
            for p in parts {
                buf.put_i32(*p);
            }
            put_uvarint(&mut buf, 0);
        }
    }
    buf.put_i64(v.last_update_ms);
    buf.put_i64(v.start_ms);
    let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
    if v.previous_producer_id != NO_PRODUCER_ID {
        tags.push((0, v.previous_producer_id.to_be_bytes().to_vec()));
    }
    if v.next_producer_id != NO_PRODUCER_ID {
        tags.push((1, v.next_producer_id.to_be_bytes().to_vec()));
    }
    if v.client_transaction_version != 0 {
        tags.push((2, v.client_transaction_version.to_be_bytes().to_vec()));
    }
    if v.next_producer_epoch != NO_PRODUCER_EPOCH {
        tags.push((3, v.next_producer_epoch.to_be_bytes().to_vec()));
    }
    put_uvarint(&mut buf, len_u32(tags.len()));
    for (tag, data) in tags {
        put_uvarint(&mut buf, tag);
        put_uvarint(&mut buf, len_u32(data.len()));
        buf.put_slice(&data);
    }
    buf.freeze()
}

/// A value in layout version 0 or 1, or None for another version or bytes that do not
/// parse. Bytes after the last field are ignored, as Kafka's reader ignores them.
pub fn decode_value(buf: &[u8]) -> Option<TxnLogValue> {
    let mut r = Reader(buf);
    let version = r.i16()?;
    let flexible = match version {
        VALUE_V0 => false,
        VALUE_V1 => true,
        _ => return None,
    };
    let mut v = TxnLogValue::new(r.i64()?, r.i16()?, r.i32()?, TxnState::from_id(r.i8()?)?);
    let count = if flexible {
        // Compact arrays store the count plus one; 0 is null.
        r.uvarint()?.checked_sub(1)
    } else {
        // -1 is null; any other negative count is corrupt.
        match r.i32()? {
            -1 => None,
            n => Some(u32::try_from(n).ok()?),
        }
    };
    if let Some(count) = count {
        for _ in 0..count {
            let topic = if flexible {
                r.compact_string()?
            } else {
                r.string()?
            };
            let n = if flexible {
                r.uvarint()?.checked_sub(1)?
            } else {
                u32::try_from(r.i32()?).ok()?
            };
            // Each partition takes 4 bytes: a count the buffer cannot hold is corrupt, and
            // is refused before anything is allocated for it.
            if n as usize > r.0.len() / 4 {
                return None;
            }
            let mut parts = Vec::with_capacity(n as usize);
            for _ in 0..n {
                parts.push(r.i32()?);
            }
            if flexible {
                r.skip_tagged_fields()?;
            }
            v.partitions.push((topic, parts));
        }
    }
    v.last_update_ms = r.i64()?;
    v.start_ms = r.i64()?;
    if flexible {
        let tags = r.uvarint()?;
        for _ in 0..tags {
            let tag = r.uvarint()?;
            let size = r.uvarint()? as usize;
            let data = r.take(size)?;
            match tag {
                0 => v.previous_producer_id = i64::from_be_bytes(data.try_into().ok()?),
                1 => v.next_producer_id = i64::from_be_bytes(data.try_into().ok()?),
                2 => v.client_transaction_version = i16::from_be_bytes(data.try_into().ok()?),
                3 => v.next_producer_epoch = i16::from_be_bytes(data.try_into().ok()?),
                // A tag from a newer Kafka: its size says how much to skip.
                _ => {}
            }
        }
    }
    Some(v)
}

/// One record of the topic: the transactional id and its value, None for a tombstone.
/// None overall when the key or a present value cannot be read; loading skips such a
/// record, as Kafka skips versions it does not know.
pub fn decode_record(key: &[u8], value: Option<&[u8]>) -> Option<(String, Option<TxnLogValue>)> {
    let id = decode_key(key)?;
    match value {
        None => Some((id, None)),
        Some(v) => Some((id, Some(decode_value(v)?))),
    }
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Ids longer than MAX_ID_BYTES are refused by InitProducerId, and topics in a
    // transaction are ones that exist (at most 249 bytes), so the cut is only a guard: no
    // input can make the length field wrap.
    let bytes = &s.as_bytes()[..s.len().min(MAX_ID_BYTES)];
    buf.put_i16(bytes.len() as i16);
    buf.put_slice(bytes);
}

fn put_compact_str(buf: &mut BytesMut, s: &str) {
    put_uvarint(buf, len_u32(s.len()).saturating_add(1));
    buf.put_slice(s.as_bytes());
}

fn put_uvarint(buf: &mut BytesMut, mut n: u32) {
    while n >= 0x80 {
        buf.put_u8((n as u8) | 0x80);
        n >>= 7;
    }
    buf.put_u8(n as u8);
}

/// Reads big-endian fields off the front of a slice; every read is None past the end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn i8(&mut self) -> Option<i8> {
        Some(i8::from_be_bytes(self.array()?))
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.array()?))
    }

    /// An unsigned varint of at most 5 bytes (a u32), as Kafka's flexible versions use.
    fn uvarint(&mut self) -> Option<u32> {
        let mut n: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            let bits = u32::from(b & 0x7f);
            // The fifth byte may carry only the top 4 bits of a u32.
            if i == 4 && bits > 0x0f {
                return None;
            }
            n |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Some(n);
            }
        }
        None
    }

    /// A non-null STRING: i16 length, UTF-8 bytes.
    fn string(&mut self) -> Option<String> {
        let len = usize::try_from(self.i16()?).ok()?;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    /// A non-null COMPACT_STRING: uvarint length plus one, UTF-8 bytes.
    fn compact_string(&mut self) -> Option<String> {
        let len = self.uvarint()?.checked_sub(1)? as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }

    fn skip_tagged_fields(&mut self) -> Option<()> {
        for _ in 0..self.uvarint()? {
            self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnLogValue {
        TxnLogValue {
            partitions: vec![("orders".into(), vec![0, 3]), ("t".into(), vec![7])],
            last_update_ms: 1_700_000_000_123,
            start_ms: 1_700_000_000_000,
            ..TxnLogValue::new(1000, 5, 60_000, TxnState::Ongoing)
        }
    }

    #[test]
    fn partition_matches_kafka_utils_abs_of_java_hash() {
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // Java: "my-txn".hashCode() == -1061187895. Kafka's Utils.abs gives 1061187895,
        // partition 45; masking the sign bit would give 3, another coordinator.
        assert_eq!(partition_for("my-txn", 50), 45);
        // "polygenelubricants".hashCode() == i32::MIN, which Utils.abs maps to 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Not ASCII: Java hashes UTF-16 code units, a surrogate pair here.
        let h = "é😀"
            .encode_utf16()
            .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)));
        assert_eq!(partition_for("é😀", 7), h.abs() % 7);
        assert_eq!(
            partition_for("x", 0),
            0,
            "a partition count of 0 must not divide by zero"
        );
    }

    #[test]
    fn key_bytes_are_kafkas_layout() {
        // version 0, STRING length 6, "my-txn"
        let expected = [0, 0, 0, 6, b'm', b'y', b'-', b't', b'x', b'n'];
        assert_eq!(&encode_key("my-txn")[..], &expected);
        assert_eq!(decode_key(&expected).as_deref(), Some("my-txn"));
    }

    #[test]
    fn value_v0_bytes_are_kafkas_layout() {
        let v = TxnLogValue {
            partitions: vec![("t".into(), vec![0, 2])],
            last_update_ms: 0x0102_0304_0506_0708,
            start_ms: 9,
            ..TxnLogValue::new(1000, 5, 60_000, TxnState::Ongoing)
        };
        let mut expected = vec![0, 0]; // version 0
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x03, 0xe8]); // producer id 1000
        expected.extend_from_slice(&[0, 5]); // epoch
        expected.extend_from_slice(&[0, 0, 0xea, 0x60]); // timeout 60000
        expected.push(1); // Ongoing
        expected.extend_from_slice(&[0, 0, 0, 1]); // one topic
        expected.extend_from_slice(&[0, 1, b't']); // "t"
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2]); // [0, 2]
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // last update
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]); // start
        assert_eq!(&encode_value(&v)[..], &expected[..]);
        assert_eq!(decode_value(&expected), Some(v));
    }

    #[test]
    fn empty_state_writes_a_null_partition_array() {
        let v = TxnLogValue {
            last_update_ms: 1,
            ..TxnLogValue::new(7, 0, 1000, TxnState::Empty)
        };
        let bytes = encode_value(&v);
        // version, pid, epoch, timeout, state, then the array length -1.
        assert_eq!(&bytes[2 + 8 + 2 + 4 + 1..][..4], &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(decode_value(&bytes), Some(v));
    }

    #[test]
    fn value_v1_bytes_are_kafkas_flexible_layout() {
        let v = TxnLogValue {
            partitions: vec![("t".into(), vec![4])],
            last_update_ms: 2,
            start_ms: 1,
            previous_producer_id: 3,
            client_transaction_version: 2,
            ..TxnLogValue::new(1000, 5, 60_000, TxnState::PrepareCommit)
        };
        let mut expected = vec![0, 1]; // version 1
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0, 5, 0, 0, 0xea, 0x60]);
        expected.push(2); // PrepareCommit
        expected.push(2); // compact array: 1 topic + 1
        expected.extend_from_slice(&[2, b't']); // compact string: len 1 + 1
        expected.extend_from_slice(&[2, 0, 0, 0, 4]); // compact int32 array [4]
        expected.push(0); // the topic struct's tagged fields: none
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.push(2); // two tagged fields
        expected.extend_from_slice(&[0, 8, 0, 0, 0, 0, 0, 0, 0, 3]); // tag 0, 8 bytes, 3
        expected.extend_from_slice(&[2, 2, 0, 2]); // tag 2, 2 bytes, 2
        assert_eq!(&encode_value_v1(&v)[..], &expected[..]);
        assert_eq!(decode_value(&expected), Some(v));
    }

    #[test]
    fn values_round_trip_in_both_versions() {
        for state in [
            TxnState::Empty,
            TxnState::Ongoing,
            TxnState::PrepareCommit,
            TxnState::PrepareAbort,
            TxnState::CompleteCommit,
            TxnState::CompleteAbort,
            TxnState::Dead,
            TxnState::PrepareEpochFence,
        ] {
            let mut v = ongoing();
            v.state = state;
            if state == TxnState::Empty {
                v.partitions.clear();
            }
            assert_eq!(
                decode_value(&encode_value(&v)),
                Some(v.clone()),
                "{state:?}"
            );
            v.previous_producer_id = 999;
            v.next_producer_id = 1001;
            v.next_producer_epoch = 0;
            v.client_transaction_version = 2;
            assert_eq!(decode_value(&encode_value_v1(&v)), Some(v), "{state:?}");
        }
        // Version 0 has no room for the tagged fields: they read back as their defaults.
        let mut v = ongoing();
        v.previous_producer_id = 999;
        assert_eq!(
            decode_value(&encode_value(&v)).map(|d| d.previous_producer_id),
            Some(-1)
        );
    }

    #[test]
    fn unknown_tags_are_skipped() {
        let mut bytes = encode_value_v1(&ongoing()).to_vec();
        // Replace the empty tag section with one tag 9 of 3 bytes.
        assert_eq!(bytes.pop(), Some(0));
        bytes.extend_from_slice(&[1, 9, 3, 1, 2, 3]);
        assert_eq!(decode_value(&bytes), Some(ongoing()));
    }

    #[test]
    fn records_and_tombstones() {
        let key = encode_key("a");
        let value = encode_value(&ongoing());
        assert_eq!(
            decode_record(&key, Some(&value)),
            Some(("a".to_string(), Some(ongoing())))
        );
        assert_eq!(decode_record(&key, None), Some(("a".to_string(), None)));
        assert_eq!(
            decode_record(&[0, 1, 0, 1, b'a'], None),
            None,
            "unknown key version"
        );
        assert_eq!(decode_record(&key, Some(&value[..9])), None, "cut value");
    }

    #[test]
    fn truncated_or_garbage_input_is_refused_without_panicking() {
        let key = encode_key("my-txn");
        for n in 0..key.len() {
            assert_eq!(decode_key(&key[..n]), None, "key cut at {n}");
        }
        assert_eq!(decode_key(&[0, 1, 0, 1, b'x']), None, "unknown key version");
        assert_eq!(decode_key(&[0, 0, 0xff, 0xff]), None, "null id");
        assert_eq!(decode_key(&[0, 0, 0, 2, 0xc3, 0x28]), None, "not UTF-8");
        for bytes in [encode_value(&ongoing()), encode_value_v1(&ongoing())] {
            for n in 0..bytes.len() {
                assert_eq!(decode_value(&bytes[..n]), None, "value cut at {n}");
            }
        }
        let mut v = encode_value(&ongoing()).to_vec();
        v[1] = 2;
        assert_eq!(decode_value(&v), None, "unknown value version");
        let mut v = encode_value(&ongoing()).to_vec();
        v[16] = 9;
        assert_eq!(decode_value(&v), None, "unknown state");
        let mut v = encode_value(&ongoing()).to_vec();
        v[17..21].copy_from_slice(&(-2i32).to_be_bytes());
        assert_eq!(decode_value(&v), None, "negative topic count");
        // A forged partition count far beyond the buffer is refused, not allocated.
        let mut v = encode_value(&ongoing()).to_vec();
        let at = 21 + 2 + "orders".len();
        v[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(decode_value(&v), None, "forged partition count");
        // An overlong varint.
        let mut v = vec![0, 1];
        v.extend_from_slice(&[0; 15]);
        v.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(decode_value(&v), None, "varint longer than 5 bytes");
        // Pseudo-random garbage of every length up to 200 bytes.
        let mut x: u64 = 0x1234_5678;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode_key(&bytes);
            let _ = decode_value(&bytes);
            let mut versioned = vec![0, (len % 2) as u8];
            versioned.extend_from_slice(&bytes);
            let _ = decode_value(&versioned);
        }
    }
}
