//! Kafka v2 record batch headers: parse, validate (CRC32C), iterate and patch in place.
//!
//! The log stores batches byte for byte as producers sent them; only the fixed 61-byte
//! header is ever read or rewritten on the hot path.

use std::ops::Range;

use crate::LogError;

/// Length of the fixed v2 record batch header.
pub const BATCH_HEADER_LEN: usize = 61;

/// Bytes before `partitionLeaderEpoch` that `batchLength` does not count (baseOffset + batchLength).
pub(crate) const LOG_OVERHEAD: usize = 12;
/// The CRC covers everything from the attributes field to the end of the batch.
pub(crate) const CRC_START: usize = 21;

pub(crate) const BASE_OFFSET_POS: usize = 0;
pub(crate) const LEADER_EPOCH_POS: usize = 12;
pub(crate) const MAGIC_POS: usize = 16;
pub(crate) const CRC_POS: usize = 17;
pub(crate) const ATTRIBUTES_POS: usize = 21;
pub(crate) const MAX_TIMESTAMP_POS: usize = 35;

const ATTR_LOG_APPEND_TIME: i16 = 1 << 3;

/// The fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf` without looking at the records.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, LogError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(LogError::CorruptBatch(format!(
                "{} bytes is too short for a record batch header ({BATCH_HEADER_LEN} bytes)",
                buf.len()
            )));
        }
        let magic = buf[MAGIC_POS] as i8;
        if magic != 2 {
            return Err(LogError::UnsupportedMagic(magic));
        }
        let header = BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_POS),
            batch_length: be_i32(buf, 8),
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_POS),
            magic,
            crc: be_i32(buf, CRC_POS) as u32,
            attributes: be_i16(buf, ATTRIBUTES_POS),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_POS),
            producer_id: be_i64(buf, 43),
            producer_epoch: be_i16(buf, 51),
            base_sequence: be_i32(buf, 53),
            records_count: be_i32(buf, 57),
        };
        if (header.batch_length as i64) < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(LogError::CorruptBatch(format!(
                "batch length {} is smaller than the header",
                header.batch_length
            )));
        }
        if header.last_offset_delta < 0 {
            return Err(LogError::CorruptBatch(format!(
                "negative last offset delta {}",
                header.last_offset_delta
            )));
        }
        Ok(header)
    }

    /// Size of the whole batch on disk: `batch_length` plus the 12 bytes it does not count.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }

    /// Compression codec id (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
    pub fn compression(&self) -> u8 {
        (self.attributes & 7) as u8
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & (1 << 4) != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & (1 << 5) != 0
    }
}

/// Validates one complete batch at the start of `buf`: header sane, `batch_length`
/// consistent with `buf`, and CRC32C over bytes `[21..total_len)` matching.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, LogError> {
    let header = BatchHeader::parse(buf)?;
    let total = header.total_len();
    if total > buf.len() {
        return Err(LogError::CorruptBatch(format!(
            "batch length {} runs past the {} bytes available",
            total,
            buf.len()
        )));
    }
    let actual = crc32c::crc32c(&buf[CRC_START..total]);
    if actual != header.crc {
        return Err(LogError::CorruptBatch(format!(
            "CRC mismatch at offset {}: stored {:#010x}, computed {:#010x}",
            header.base_offset, header.crc, actual
        )));
    }
    Ok(header)
}

/// Iterates over concatenated batches in `buf`, checking headers and lengths (not CRCs).
pub fn iter(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Iterator returned by [`iter`]; stops after the first error.
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl Iterator for BatchIter<'_> {
    type Item = Result<(BatchHeader, Range<usize>), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let result = BatchHeader::parse(rest).and_then(|h| {
            if h.total_len() > rest.len() {
                Err(LogError::CorruptBatch(format!(
                    "batch length {} runs past the {} bytes available",
                    h.total_len(),
                    rest.len()
                )))
            } else {
                Ok(h)
            }
        });
        match result {
            Ok(h) => {
                let range = self.pos..self.pos + h.total_len();
                self.pos = range.end;
                Some(Ok((h, range)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Rewrites the base offset of the batch at the start of `buf` (not covered by the CRC).
pub(crate) fn set_base_offset(buf: &mut [u8], offset: i64) {
    buf[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&offset.to_be_bytes());
}

/// Rewrites the partition leader epoch (not covered by the CRC).
pub(crate) fn set_leader_epoch(buf: &mut [u8], epoch: i32) {
    buf[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as LogAppendTime with `now_ms` as its max timestamp and recomputes the CRC,
/// as a Kafka broker does for topics with `message.timestamp.type=LogAppendTime`.
pub(crate) fn stamp_log_append_time(buf: &mut [u8], total_len: usize, now_ms: i64) {
    let attrs = be_i16(buf, ATTRIBUTES_POS) | ATTR_LOG_APPEND_TIME;
    buf[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attrs.to_be_bytes());
    buf[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..total_len]);
    buf[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the max timestamp of a CreateTime batch to what its records hold and recomputes the
/// CRC, as a Kafka broker corrects a producer's header before storing the batch.
pub(crate) fn set_max_timestamp(buf: &mut [u8], total_len: usize, max_timestamp: i64) {
    buf[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&buf[CRC_START..total_len]);
    buf[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{build_batch, Codec};

    #[test]
    fn parses_encoder_output() {
        let bytes = build_batch(5, &[10, 30, 20], Codec::None);
        let h = validate(&bytes).unwrap();
        assert_eq!(h.base_offset, 5);
        assert_eq!(h.last_offset(), 7);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.base_timestamp, 10);
        assert_eq!(h.max_timestamp, 30);
        assert_eq!(h.total_len(), bytes.len());
        assert_eq!(h.compression(), 0);
        assert!(!h.is_log_append_time());
        assert!(!h.is_transactional());
        assert!(!h.is_control());
    }

    #[test]
    fn compression_bits() {
        for (codec, id) in [
            (Codec::Gzip, 1),
            (Codec::Snappy, 2),
            (Codec::Lz4, 3),
            (Codec::Zstd, 4),
        ] {
            let bytes = build_batch(0, &[1, 2], codec);
            assert_eq!(validate(&bytes).unwrap().compression(), id);
        }
    }

    #[test]
    fn rejects_bad_crc_short_and_magic() {
        let mut bytes = build_batch(0, &[1, 2, 3], Codec::None);
        assert!(matches!(
            BatchHeader::parse(&bytes[..60]),
            Err(LogError::CorruptBatch(_))
        ));
        assert!(matches!(
            validate(&bytes[..bytes.len() - 1]),
            Err(LogError::CorruptBatch(_))
        ));
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert!(matches!(validate(&bytes), Err(LogError::CorruptBatch(_))));
        bytes[last] ^= 0xff;
        bytes[MAGIC_POS] = 1;
        assert!(matches!(
            validate(&bytes),
            Err(LogError::UnsupportedMagic(1))
        ));
    }

    #[test]
    fn patching_keeps_crc_valid() {
        let mut bytes = build_batch(0, &[1, 2, 3], Codec::Lz4);
        let len = bytes.len();
        set_base_offset(&mut bytes, 42);
        set_leader_epoch(&mut bytes, 7);
        let h = validate(&bytes).unwrap();
        assert_eq!((h.base_offset, h.partition_leader_epoch), (42, 7));
        stamp_log_append_time(&mut bytes, len, 999);
        let h = validate(&bytes).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 999);
        assert_eq!(h.compression(), 3);
    }

    #[test]
    fn iterates_concatenated_batches() {
        let mut buf = build_batch(0, &[1, 2], Codec::None);
        let second = build_batch(2, &[3], Codec::Gzip);
        buf.extend_from_slice(&second);
        let got: Vec<_> = iter(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0.base_offset, 2);
        assert_eq!(got[1].1.end, buf.len());
        buf.truncate(buf.len() - 3);
        let results: Vec<_> = iter(&buf).collect();
        assert_eq!(results.len(), 2);
        assert!(results[1].is_err());
    }
}
