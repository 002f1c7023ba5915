//! The records of `__consumer_offsets`: which partition a group lives in, the binary key
//! and value layouts (the same as Kafka's, so the topic can be inspected with Kafka's own
//! tools), and replaying a partition's log into those records at startup.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use fjord_log::Log;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
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

/// Encodes records as one uncompressed v2 batch, ready for `Partition::append`.
pub fn batch(records: &[Record]) -> Result<BytesMut, BrokerError> {
    // Offsets inside a batch are consecutive deltas; the log assigns the real ones.
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            offset: i as i64,
            ..r.clone()
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

/// Reads a partition of the topic from its start, in offset order: every (key, value)
/// record. Batches that do not decode are skipped with a warning rather than stopping
/// the broker: one bad batch must not cost every group its offsets.
pub fn read_all(log: &Log) -> Result<Vec<(Bytes, Option<Bytes>)>, BrokerError> {
    let mut out = Vec::new();
    let mut offset = log.log_start_offset();
    while offset < log.log_end_offset() {
        let info = log.read(offset, LOAD_READ_BYTES, i64::MAX, true)?;
        let mut buf = info.bytes;
        let mut progressed = false;
        // A batch header is 61 bytes; base offset at 0, length at 8, last offset delta at
        // 23, attributes at 21 (bit 5: control batch).
        while buf.len() >= 61 {
            let base = i64::from_be_bytes(buf[0..8].try_into().unwrap_or_default());
            let len = i32::from_be_bytes(buf[8..12].try_into().unwrap_or_default());
            let total = 12 + len.max(0) as usize;
            if len < 49 || total > buf.len() {
                break;
            }
            let attributes = i16::from_be_bytes(buf[21..23].try_into().unwrap_or_default());
            let last_delta = i32::from_be_bytes(buf[23..27].try_into().unwrap_or_default());
            let mut one = buf.split_to(total);
            offset = base + last_delta as i64 + 1;
            progressed = true;
            if attributes & 0x20 != 0 {
                continue;
            }
            match RecordBatchDecoder::decode(&mut one) {
                Ok(set) => {
                    for r in set.records {
                        if let Some(key) = r.key {
                            out.push((key, r.value));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(base_offset = base, error = %e, "skipping undecodable {TOPIC} batch")
                }
            }
        }
        if !progressed {
            break;
        }
    }
    Ok(out)
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
