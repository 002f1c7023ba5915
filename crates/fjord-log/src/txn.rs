//! Transactions on the partition side: the control batches that end a transaction (its
//! commit or abort marker) and the aborted-transaction index kept beside each segment.
//!
//! A transaction's records sit in the log from their first batch on, visible only to
//! read_uncommitted consumers until the coordinator writes a marker. read_committed
//! consumers read no further than the last stable offset (the first offset of the oldest
//! transaction not yet decided) and get, with every fetch, the aborted transactions the
//! fetched range overlaps, so that they drop those records themselves (KIP-98).
//!
//! The index (`<base>.txnindex`, Kafka's layout) has one 34-byte entry per aborted
//! transaction whose marker lies in the segment:
//!
//! ```text
//! version i16 = 0 | producer id i64 | first offset i64 | last offset i64 (the marker)
//! | last stable offset i64 (when the marker was written)
//! ```

use crate::batch::{BatchHeader, BATCH_HEADER_LEN, CRC_POS, CRC_START, LOG_OVERHEAD};
use crate::encode::put_varint;
use crate::index::Entry;
use crate::records::RecordReader;
use crate::LogError;

/// Control batch attribute bits: transactional (4) and control (5).
const CONTROL_ATTRIBUTES: i16 = (1 << 4) | (1 << 5);
/// Control record types in the record key (Kafka's ControlRecordType).
const ABORT: i16 = 0;
const COMMIT: i16 = 1;

/// One aborted transaction of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl Entry for AbortedTxn {
    const SIZE: usize = 34;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&0i16.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.first_offset.to_be_bytes());
        out.extend_from_slice(&self.last_offset.to_be_bytes());
        out.extend_from_slice(&self.last_stable_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        }
    }
}

/// What a control batch says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

/// A control batch ending producer `producer_id`'s transaction, as a coordinator's
/// WriteTxnMarkers asks the leader to append: one uncompressed record whose key says
/// commit or abort and whose value carries the coordinator epoch. The offset and leader
/// epoch are set by the append.
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    timestamp_ms: i64,
) -> Vec<u8> {
    let kind = if marker.commit { COMMIT } else { ABORT };
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&kind.to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    // The record: attributes, timestamp delta, offset delta, key, value, no headers.
    let mut body = vec![0u8, 0, 0];
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0);
    let mut record = Vec::with_capacity(body.len() + 1);
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);

    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + record.len());
    b.extend_from_slice(&0i64.to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_LEN + record.len() - LOG_OVERHEAD) as i32).to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&CONTROL_ATTRIBUTES.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&timestamp_ms.to_be_bytes());
    b.extend_from_slice(&producer_id.to_be_bytes());
    b.extend_from_slice(&producer_epoch.to_be_bytes());
    b.extend_from_slice(&(-1i32).to_be_bytes());
    b.extend_from_slice(&1i32.to_be_bytes());
    b.extend_from_slice(&record);
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Reads the marker of a control batch (`batch` is the whole stored batch). A control
/// batch whose record cannot be read as a marker is reported as an error: the caller
/// decides whether that stops it.
pub fn read_marker(batch: &[u8], h: &BatchHeader) -> Result<Marker, LogError> {
    let mut reader = RecordReader::new(batch, h, 1 << 16)?;
    let record = reader
        .next_record()?
        .ok_or_else(|| LogError::InvalidRecord("control batch without a record".into()))?;
    let key = record
        .key
        .ok_or_else(|| LogError::InvalidRecord("control record without a key".into()))?;
    if key.len() < 4 {
        return Err(LogError::InvalidRecord(format!(
            "control record key of {} bytes",
            key.len()
        )));
    }
    let kind = i16::from_be_bytes([key[2], key[3]]);
    let commit = match kind {
        COMMIT => true,
        ABORT => false,
        other => {
            return Err(LogError::InvalidRecord(format!(
                "unknown control record type {other}"
            )))
        }
    };
    let coordinator_epoch = match record.value {
        Some(v) if v.len() >= 6 => i32::from_be_bytes([v[2], v[3], v[4], v[5]]),
        _ => -1,
    };
    Ok(Marker {
        commit,
        coordinator_epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch;

    #[test]
    fn marker_batches_read_back_and_validate() {
        for commit in [true, false] {
            let m = Marker {
                commit,
                coordinator_epoch: 7,
            };
            let b = marker_batch(42, 3, m, 1_700_000_000_000);
            let h = batch::validate(&b).unwrap();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.records_count),
                (42, 3, 1)
            );
            assert_eq!(read_marker(&b, &h).unwrap(), m);
        }
    }

    #[test]
    fn aborted_entries_have_kafkas_layout() {
        let e = AbortedTxn {
            producer_id: 1,
            first_offset: 2,
            last_offset: 3,
            last_stable_offset: 4,
        };
        let mut out = Vec::new();
        e.encode(&mut out);
        assert_eq!(out.len(), AbortedTxn::SIZE);
        assert_eq!(&out[..2], &[0, 0]);
        assert_eq!(out[9], 1);
        assert_eq!(out[33], 4);
        assert_eq!(AbortedTxn::decode(&out), e);
    }
}
