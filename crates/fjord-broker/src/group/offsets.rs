//! The records of `__consumer_offsets`: which partition a group lives in, the binary key
//! and value layouts (the same as Kafka's, so the topic can be inspected with Kafka's own
//! tools), and replaying a partition's log into those records at startup.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_log::records::{self, RecordReader};
use fjord_log::{Log, LogError};
use indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::BrokerError;

pub const TOPIC: &str = "__consumer_offsets";

/// Key layout versions: 1 is an offset commit, 2 a group's metadata (0 is the older
/// offset-commit layout, identical on the wire).
const OFFSET_KEY_VERSION: i16 = 1;
const GROUP_KEY_VERSION: i16 = 2;
/// Value layout versions written; older ones are still read.
const OFFSET_VALUE_VERSION: i16 = 3;
const GROUP_VALUE_VERSION: i16 = 3;
/// How much of a log one read during loading pulls into memory.
const LOAD_READ_BYTES: usize = 1 << 20;

/// The partition of `__consumer_offsets` that owns `group`: Java's `String.hashCode`
/// with the sign bit masked off, modulo the partition count. Matching Kafka means a group
/// keeps its partition if data is ever moved between the two.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub state_timestamp: i64,
    pub members: Vec<MemberValue>,
}

fn put_str(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes; group ids and topics are far shorter, and
    // metadata is bounded by the commit handler before it gets here.
    let bytes = &s.as_bytes()[..s.len().min(i16::MAX as usize)];
    buf.put_i16(bytes.len() as i16);
    buf.put_slice(bytes);
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

impl Key {
    pub fn group(&self) -> &str {
        match self {
            Key::Offset { group, .. } | Key::Group { group } => group,
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            Key::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_KEY_VERSION);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            Key::Group { group } => {
                buf.put_i16(GROUP_KEY_VERSION);
                put_str(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// `None` for a key this broker does not understand (for instance a transaction or
    /// new-protocol record written by another implementation): loading skips those.
    pub fn decode(mut buf: &[u8]) -> Option<Key> {
        let r = &mut buf;
        match read_i16(r)? {
            0 | 1 => Some(Key::Offset {
                group: read_str(r)?,
                topic: read_str(r)?,
                partition: read_i32(r)?,
            }),
            2 => Some(Key::Group {
                group: read_str(r)?,
            }),
            _ => None,
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(OFFSET_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_str(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp);
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Option<OffsetValue> {
        let r = &mut buf;
        let version = read_i16(r)?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let offset = read_i64(r)?;
        let leader_epoch = if version >= 3 { read_i32(r)? } else { -1 };
        let metadata = read_str(r)?;
        let commit_timestamp = read_i64(r)?;
        Some(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(GROUP_VALUE_VERSION);
        put_str(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_str(&mut buf, self.protocol.as_deref());
        put_nullable_str(&mut buf, self.leader.as_deref());
        buf.put_i64(self.state_timestamp);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut buf, &m.member_id);
            put_nullable_str(&mut buf, m.instance_id.as_deref());
            put_str(&mut buf, &m.client_id);
            put_str(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    pub fn decode(mut buf: &[u8]) -> Option<GroupValue> {
        let r = &mut buf;
        let version = read_i16(r)?;
        if !(0..=3).contains(&version) {
            return None;
        }
        let protocol_type = read_str(r)?;
        let generation = read_i32(r)?;
        let protocol = read_nullable_str(r)?;
        let leader = read_nullable_str(r)?;
        let state_timestamp = if version >= 2 { read_i64(r)? } else { -1 };
        let count = read_i32(r)?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            let member_id = read_str(r)?;
            let instance_id = if version >= 3 {
                read_nullable_str(r)?
            } else {
                None
            };
            let client_id = read_str(r)?;
            let client_host = read_str(r)?;
            let rebalance_timeout_ms = if version >= 1 { read_i32(r)? } else { -1 };
            let session_timeout_ms = read_i32(r)?;
            members.push(MemberValue {
                member_id,
                instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms: if rebalance_timeout_ms < 0 {
                    session_timeout_ms
                } else {
                    rebalance_timeout_ms
                },
                session_timeout_ms,
                subscription: read_bytes(r)?,
                assignment: read_bytes(r)?,
            });
        }
        Some(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
}

fn read_i16(r: &mut &[u8]) -> Option<i16> {
    (r.len() >= 2).then(|| r.get_i16())
}

fn read_i32(r: &mut &[u8]) -> Option<i32> {
    (r.len() >= 4).then(|| r.get_i32())
}

fn read_i64(r: &mut &[u8]) -> Option<i64> {
    (r.len() >= 8).then(|| r.get_i64())
}

fn read_nullable_str(r: &mut &[u8]) -> Option<Option<String>> {
    let len = read_i16(r)?;
    if len < 0 {
        return Some(None);
    }
    let len = len as usize;
    if r.len() < len {
        return None;
    }
    let s = String::from_utf8_lossy(&r[..len]).into_owned();
    r.advance(len);
    Some(Some(s))
}

fn read_str(r: &mut &[u8]) -> Option<String> {
    read_nullable_str(r)?
}

fn read_bytes(r: &mut &[u8]) -> Option<Bytes> {
    let len = read_i32(r)?;
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    if r.len() < len {
        return None;
    }
    let b = Bytes::copy_from_slice(&r[..len]);
    r.advance(len);
    Some(b)
}

/// One record of the topic; a `None` value is a tombstone.
pub fn record(key: Bytes, value: Option<Bytes>, now_ms: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key),
        value,
        headers: Default::default(),
    }
}

/// Encodes records as one uncompressed v2 batch, ready for `Partition::append`. With
/// `txn` (producer id, epoch) it is a transactional batch of that producer: offsets sent
/// to a transaction, which its marker later commits or aborts.
pub fn batch(records: &[Record], txn: Option<(i64, i16)>) -> Result<BytesMut, BrokerError> {
    // Offsets inside a batch are consecutive deltas; the log assigns the real ones.
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = Record {
                offset: i as i64,
                ..r.clone()
            };
            if let Some((pid, epoch)) = txn {
                r.transactional = true;
                r.producer_id = pid;
                r.producer_epoch = epoch;
            }
            r
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| {
        BrokerError::Kafka(
            crate::error::code::UNKNOWN_SERVER_ERROR,
            format!("encode {TOPIC} batch: {e}"),
        )
    })?;
    Ok(buf)
}

/// Whether a record's key and value are ones replay can apply.
pub fn decodable(key: &[u8], value: Option<&[u8]>) -> bool {
    match Key::decode(key) {
        Some(Key::Offset { .. }) => value.is_none_or(|v| OffsetValue::decode(v).is_some()),
        Some(Key::Group { .. }) => value.is_none_or(|v| GroupValue::decode(v).is_some()),
        None => false,
    }
}

/// Individual warnings per partition before replay only counts what it skips.
const REPLAY_WARNINGS: u32 = 20;

/// Counts what replay skips, warning for the first few and summing up the rest.
struct Skipped<'a> {
    topic: &'a str,
    warned: u32,
    total: u64,
}

impl Skipped<'_> {
    fn note(&mut self, offset: i64, what: &dyn std::fmt::Display) {
        self.total += 1;
        if self.warned < REPLAY_WARNINGS {
            self.warned += 1;
            tracing::warn!(offset, "{} replay skips {what}", self.topic);
        }
    }
}

/// Reads a partition of the topic from its start, in offset order, and returns the latest
/// (key, value) of every key that decodes; a `None` value is a tombstone.
///
/// Records are read one at a time through a bounded buffer, never by inflating a batch, and
/// no record larger than the topic's `max.message.bytes` is held. Anything that does not
/// decode is skipped with a warning rather than trusted or allowed to stop the broker: a
/// batch whose records are malformed is skipped whole, and so is a single record that is
/// too large or whose key or value does not decode. One bad record must not cost every
/// group its offsets, nor overwrite a good commit.
///
/// Offsets sent to a transaction (transactional batches) count only once its commit
/// marker follows; an abort marker drops them. Those of transactions still open at the
/// end are returned apart, by producer id.
///
/// `decodable` says which records the topic's coordinator understands (`__consumer_offsets`
/// and `__transaction_state` are read the same way, each with its own record layouts).
pub fn read_all(log: &Log, topic: &str, decodable: &Decodable) -> Result<Replayed, BrokerError> {
    let max_record = log.config().max_message_bytes as usize;
    // Replay keeps the last value per key, as the coordinator's maps would: memory follows
    // the live state, not the length of the log.
    let mut latest: IndexMap<Bytes, Option<Bytes>> = IndexMap::new();
    let mut pending: HashMap<i64, IndexMap<Bytes, Option<Bytes>>> = HashMap::new();
    let mut skipped = Skipped {
        topic,
        warned: 0,
        total: 0,
    };
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let info = log.read(offset, LOAD_READ_BYTES, i64::MAX, true)?;
        let mut progressed = false;
        for item in fjord_log::batch::iter(&info.bytes) {
            let Ok((h, range)) = item else { break };
            offset = h.last_offset() + 1;
            progressed = true;
            let bytes = &info.bytes[range];
            if h.is_control() {
                match fjord_log::txn::read_marker(bytes, &h) {
                    Ok(m) => {
                        let written = pending.remove(&h.producer_id).unwrap_or_default();
                        if m.commit {
                            latest.extend(written);
                        }
                    }
                    Err(e) => skipped.note(h.base_offset, &format_args!("a marker: {e}")),
                }
                continue;
            }
            let sink = if h.is_transactional() {
                pending.entry(h.producer_id).or_default()
            } else {
                &mut latest
            };
            // The batch as a whole first (CRC, record structure), so that a malformed batch
            // is skipped entirely rather than applied up to its first fault. This pass keeps
            // no record data.
            if let Err(e) = fjord_log::batch::validate(bytes)
                .and_then(|h| records::validate_records(bytes, &h, usize::MAX))
            {
                skipped.note(h.base_offset, &format_args!("a batch: {e}"));
                continue;
            }
            let mut reader = match RecordReader::new(bytes, &h, max_record) {
                Ok(r) => r,
                Err(e) => {
                    skipped.note(h.base_offset, &format_args!("a batch: {e}"));
                    continue;
                }
            };
            loop {
                match reader.next_record() {
                    Ok(Some(r)) => {
                        let at = h.base_offset + r.offset_delta as i64;
                        match r.key {
                            Some(key) if decodable(key, r.value) => {
                                sink.insert(
                                    Bytes::copy_from_slice(key),
                                    r.value.map(Bytes::copy_from_slice),
                                );
                            }
                            Some(_) => skipped.note(at, &"a record that does not decode"),
                            None => skipped.note(at, &"a record without a key"),
                        }
                    }
                    Ok(None) => break,
                    Err(e @ LogError::RecordTooLarge { .. }) => {
                        skipped.note(h.base_offset, &format_args!("a record: {e}"));
                    }
                    Err(e) => {
                        skipped.note(h.base_offset, &format_args!("the rest of a batch: {e}"));
                        break;
                    }
                }
            }
        }
        if !progressed {
            break;
        }
    }
    if skipped.total > 0 {
        tracing::warn!(
            skipped = skipped.total,
            dir = %log.dir().display(),
            "{topic} replay skipped undecodable records or batches"
        );
    }
    Ok(Replayed {
        records: latest.into_iter().collect(),
        pending: pending
            .into_iter()
            .map(|(pid, kv)| (pid, kv.into_iter().collect()))
            .collect(),
    })
}

/// Whether a record's (key, value) is one its topic's coordinator understands.
pub type Decodable = dyn Fn(&[u8], Option<&[u8]>) -> bool;

/// What [`read_all`] found.
#[derive(Debug, Default)]
pub struct Replayed {
    /// The latest (key, value) of every key; a `None` value is a tombstone.
    pub records: Vec<(Bytes, Option<Bytes>)>,
    /// The records of transactions not yet ended, by producer id.
    pub pending: HashMap<i64, Vec<(Bytes, Option<Bytes>)>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_matches_java_string_hash() {
        // "" hashes to 0; "a" to 97; these pin the arithmetic Java's String.hashCode uses.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // "polygenelubricants" has Java hashCode i32::MIN: masking keeps it non-negative.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // "test-group".hashCode() == 627841412 in Java.
        assert_eq!(partition_for("test-group", 50), 627841412 % 50);
    }

    #[test]
    fn keys_and_values_round_trip() {
        let k = Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(Key::decode(&k.encode()), Some(k));
        let k = Key::Group { group: "g".into() };
        assert_eq!(Key::decode(&k.encode()), Some(k));
        let v = OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "meta".into(),
            commit_timestamp: 1000,
        };
        assert_eq!(OffsetValue::decode(&v.encode()), Some(v));
        let g = GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 5,
            members: vec![MemberValue {
                member_id: "m1".into(),
                instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300000,
                session_timeout_ms: 45000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(&g.encode()), Some(g));
    }

    #[test]
    fn offset_key_layout_is_kafkas() {
        let k = Key::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 1,
        };
        assert_eq!(&k.encode()[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 1]);
    }

    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// One v2 record without headers.
    fn raw_record(offset_delta: i64, key: &[u8], value: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8];
        put_varint(&mut body, 0);
        put_varint(&mut body, offset_delta);
        put_varint(&mut body, key.len() as i64);
        body.extend_from_slice(key);
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0);
        let mut out = Vec::new();
        put_varint(&mut out, body.len() as i64);
        out.extend_from_slice(&body);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Rewrites header fields of an encoded batch and reseals its CRC.
    fn patch(batch: &mut [u8], base_offset: i64, count: Option<i32>) {
        batch[..8].copy_from_slice(&base_offset.to_be_bytes());
        if let Some(count) = count {
            batch[23..27].copy_from_slice(&(count - 1).to_be_bytes());
            batch[57..61].copy_from_slice(&count.to_be_bytes());
        }
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
    }

    /// A gzip batch whose first record's value inflates to 512 MiB of zeros (concatenated
    /// gzip members of one compressed MiB each), followed by `then` as a second record.
    fn bomb(key: &[u8], then: &[u8]) -> Vec<u8> {
        const VALUE: usize = 512 << 20;
        let mut body_head = vec![0u8];
        put_varint(&mut body_head, 0);
        put_varint(&mut body_head, 0);
        put_varint(&mut body_head, key.len() as i64);
        body_head.extend_from_slice(key);
        put_varint(&mut body_head, VALUE as i64);
        let mut head = Vec::new();
        put_varint(&mut head, (body_head.len() + VALUE + 1) as i64);
        head.extend_from_slice(&body_head);
        let mut payload = gzip(&head);
        let zeros = gzip(&vec![0u8; 1 << 20]);
        for _ in 0..VALUE >> 20 {
            payload.extend_from_slice(&zeros);
        }
        let mut tail = vec![0u8]; // the giant record's header count
        tail.extend_from_slice(then);
        payload.extend_from_slice(&gzip(&tail));
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((49 + payload.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&5i64.to_be_bytes());
        b.extend_from_slice(&5i64.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&payload);
        b
    }

    #[test]
    fn replay_skips_what_does_not_decode_and_keeps_good_commits() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path().join("p-0"), fjord_log::LogConfig::default()).unwrap();
        let key = |group: &str| {
            Key::Offset {
                group: group.into(),
                topic: "t".into(),
                partition: 0,
            }
            .encode()
        };
        let value = |offset: i64| {
            OffsetValue {
                offset,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp: 1,
            }
            .encode()
        };
        let mut good = batch(&[record(key("g1"), Some(value(42)), 1)], None).unwrap();
        log.append(&mut good, 0, 1).unwrap();

        // Written before produce validation existed, or forged: appended the way a follower
        // copies batches, without looking inside them.
        let follow = |mut b: Vec<u8>, count: Option<i32>| {
            patch(&mut b, log.log_end_offset(), count);
            log.append_as_follower(&b).unwrap();
        };
        // A commit for g1 whose value does not decode must not replace (or delete) 42,
        // nor must a record whose key is garbage be applied.
        for r in [
            record(key("g1"), Some(Bytes::from_static(b"\x00\x03garbage")), 1),
            record(Bytes::from_static(b"\x7f\x7f??"), Some(value(1)), 1),
            record(key("g2"), Some(value(7)), 1),
        ] {
            follow(batch(&[r], None).unwrap().to_vec(), None);
        }
        // A batch declaring more records than it holds is skipped whole: g3 stays unset.
        let short = batch(&[record(key("g3"), Some(value(9)), 1)], None).unwrap();
        follow(short.to_vec(), Some(3));
        // The bomb's giant record is skipped unread; the record after it still counts.
        follow(
            bomb(&key("g4"), &raw_record(1, &key("g5"), &value(11))),
            None,
        );
        let mut later = batch(&[record(key("g6"), Some(value(13)), 1)], None).unwrap();
        log.append(&mut later, 0, 1).unwrap();

        let got = read_all(&log, TOPIC, &decodable).unwrap().records;
        let expected: Vec<(Bytes, Option<Bytes>)> = vec![
            (key("g1"), Some(value(42))),
            (key("g2"), Some(value(7))),
            (key("g5"), Some(value(11))),
            (key("g6"), Some(value(13))),
        ];
        assert_eq!(got, expected);
    }

    #[test]
    fn truncated_input_does_not_panic() {
        let v = OffsetValue {
            offset: 1,
            leader_epoch: -1,
            metadata: "x".into(),
            commit_timestamp: 2,
        }
        .encode();
        for cut in 0..v.len() {
            assert_eq!(OffsetValue::decode(&v[..cut]), None);
        }
        assert_eq!(Key::decode(&[0, 9]), None);
    }
}
