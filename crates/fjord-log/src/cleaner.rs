//! Log compaction, record by record: the map of each key's newest offset, and the rewrite
//! of one stored batch without the records that map makes obsolete.
//!
//! [`crate::Log::clean`] drives these over whole segments; nothing here touches files.
//!
//! Records are streamed, never a whole batch inflated: a batch is read twice, once to
//! decide which records stay and once to re-encode those, with the batch's own codec.
//! A batch whose records all stay is kept byte for byte, and a rewritten one keeps its
//! base offset, last offset delta, producer id, epoch and base sequence, so offsets and
//! idempotent producers' sequences read the same as before.

use std::collections::HashMap;
use std::io::Write;

use crate::batch::{
    BatchHeader, ATTRIBUTES_POS, BATCH_HEADER_LEN, CRC_POS, CRC_START, LOG_OVERHEAD,
    MAX_TIMESTAMP_POS,
};
use crate::records::RecordReader;
use crate::LogError;

/// Bytes a map entry costs besides its key: the hash table slot, the boxed slice's
/// pointer and length, the offset, and the allocator's rounding.
const ENTRY_OVERHEAD: usize = 48;

/// Records count position in the batch header.
const RECORDS_COUNT_POS: usize = 57;

/// Each key's newest offset in the part of the log a cleaning pass has read, within a
/// memory budget (`log.cleaner.dedupe.buffer.size`). Keys are kept whole rather than
/// hashed, so two keys can never be taken for one another.
pub struct OffsetMap {
    offsets: HashMap<Box<[u8]>, i64>,
    used: usize,
    budget: usize,
}

impl OffsetMap {
    pub fn new(budget: usize) -> OffsetMap {
        OffsetMap {
            offsets: HashMap::new(),
            used: 0,
            budget,
        }
    }

    /// Records `offset` as the newest of `key` (offsets only grow within a pass).
    pub fn put(&mut self, key: &[u8], offset: i64) {
        match self.offsets.get_mut(key) {
            Some(o) => *o = (*o).max(offset),
            None => {
                self.used += key.len() + ENTRY_OVERHEAD;
                self.offsets.insert(key.into(), offset);
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.offsets.get(key).copied()
    }

    /// Whether the budget is spent: the pass reads no further batches.
    pub fn full(&self) -> bool {
        self.used >= self.budget
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }
}

/// What cleaning did to one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Every record stays: the stored bytes are kept as they are.
    Whole,
    /// No record stays.
    Dropped,
    /// Some records stay: the batch re-encoded with only them.
    Rewritten(Vec<u8>),
}

/// Reads every key of `batch` into `map` at its offset. Control batches hold no keys of
/// the topic's and are skipped.
pub fn map_keys(
    batch: &[u8],
    h: &BatchHeader,
    max_record_bytes: usize,
    map: &mut OffsetMap,
) -> Result<(), LogError> {
    if h.is_control() {
        return Ok(());
    }
    let mut reader = RecordReader::raw(batch, h, max_record_bytes)?;
    while let Some(r) = reader.next_raw()? {
        if let Some(key) = r.key {
            map.put(key, h.base_offset + r.offset_delta as i64);
        }
    }
    Ok(())
}

/// Applies `keep(offset, key, is_tombstone)` to each record of `batch` and says what
/// remains. Control batches are always kept whole.
pub fn filter_batch(
    batch: &[u8],
    h: &BatchHeader,
    max_record_bytes: usize,
    mut keep: impl FnMut(i64, Option<&[u8]>, bool) -> bool,
) -> Result<Filtered, LogError> {
    if h.is_control() {
        return Ok(Filtered::Whole);
    }
    // First read: decide, remembering one bit per record.
    let mut kept = Vec::with_capacity(h.records_count.clamp(0, 1 << 16) as usize);
    let mut reader = RecordReader::raw(batch, h, max_record_bytes)?;
    while let Some(r) = reader.next_raw()? {
        kept.push(keep(
            h.base_offset + r.offset_delta as i64,
            r.key,
            r.is_tombstone,
        ));
    }
    let count = kept.iter().filter(|k| **k).count();
    if count == kept.len() {
        return Ok(Filtered::Whole);
    }
    if count == 0 {
        return Ok(Filtered::Dropped);
    }
    // Second read: re-encode the survivors.
    let mut out = Compressor::new(h.compression())?;
    let mut max_timestamp = -1i64;
    let mut reader = RecordReader::raw(batch, h, max_record_bytes)?;
    let mut i = 0;
    while let Some(r) = reader.next_raw()? {
        if kept.get(i).copied().unwrap_or(false) {
            max_timestamp = max_timestamp.max(h.base_timestamp.saturating_add(r.timestamp_delta));
            let mut len = Vec::with_capacity(5);
            put_varint(&mut len, r.body.len() as i64);
            out.write(&len)?;
            out.write(r.body)?;
        }
        i += 1;
    }
    let payload = out.finish()?;
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + payload.len());
    b.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    b.extend_from_slice(&payload);
    let batch_length = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&batch_length.to_be_bytes());
    b[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&(count as i32).to_be_bytes());
    // A LogAppendTime batch's max timestamp is the broker's stamp, the same for all.
    if !h.is_log_append_time() {
        b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    }
    debug_assert_eq!(
        i16::from_be_bytes([b[ATTRIBUTES_POS], b[ATTRIBUTES_POS + 1]]),
        h.attributes
    );
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Filtered::Rewritten(b))
}

/// A batch with `h`'s offsets, producer, sequence and timestamps but no record: what
/// stays of an idempotent producer's batch whose records all went, so that its sequence
/// is still known. Uncompressed, as Kafka writes such a batch.
pub fn empty_batch(h: &BatchHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN);
    b.extend_from_slice(&h.base_offset.to_be_bytes());
    b.extend_from_slice(&((BATCH_HEADER_LEN - LOG_OVERHEAD) as i32).to_be_bytes());
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(2);
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(&(h.attributes & !7).to_be_bytes());
    b.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&h.base_timestamp.to_be_bytes());
    b.extend_from_slice(&h.max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes());
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Kafka's zigzag varint.
fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// The framing snappy-java writes, which every client reads: magic, version 1,
/// compatible version 1, then length-prefixed raw snappy blocks.
const XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java's block size.
const XERIAL_BLOCK: usize = 32 << 10;

/// Record data compressed as it is written, with a batch's codec as Kafka's clients
/// encode it.
enum Compressor {
    None(Vec<u8>),
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Snappy { out: Vec<u8>, block: Vec<u8> },
    Lz4(lz4::Encoder<Vec<u8>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

fn codec_error(what: &str, e: std::io::Error) -> LogError {
    LogError::CorruptBatch(format!("re-encoding {what} records: {e}"))
}

impl Compressor {
    fn new(codec: u8) -> Result<Compressor, LogError> {
        Ok(match codec {
            0 => Compressor::None(Vec::new()),
            1 => Compressor::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
            2 => Compressor::Snappy {
                out: XERIAL_HEADER.to_vec(),
                block: Vec::with_capacity(XERIAL_BLOCK),
            },
            // Kafka's Java decoder reads each 64 KiB block on its own, so blocks must not
            // refer to earlier ones.
            3 => Compressor::Lz4(
                lz4::EncoderBuilder::new()
                    .block_size(lz4::BlockSize::Max64KB)
                    .block_mode(lz4::BlockMode::Independent)
                    .checksum(lz4::ContentChecksum::NoChecksum)
                    .build(Vec::new())
                    .map_err(|e| codec_error("lz4", e))?,
            ),
            4 => Compressor::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), 3)
                    .map_err(|e| codec_error("zstd", e))?,
            ),
            other => {
                return Err(LogError::CorruptBatch(format!(
                    "unknown compression codec {other}"
                )))
            }
        })
    }

    fn write(&mut self, data: &[u8]) -> Result<(), LogError> {
        match self {
            Compressor::None(out) => {
                out.extend_from_slice(data);
                Ok(())
            }
            Compressor::Gzip(e) => e.write_all(data).map_err(|e| codec_error("gzip", e)),
            Compressor::Snappy { out, block } => {
                let mut rest = data;
                while !rest.is_empty() {
                    let n = (XERIAL_BLOCK - block.len()).min(rest.len());
                    block.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if block.len() == XERIAL_BLOCK {
                        snappy_block(out, block)?;
                    }
                }
                Ok(())
            }
            Compressor::Lz4(e) => e.write_all(data).map_err(|e| codec_error("lz4", e)),
            Compressor::Zstd(e) => e.write_all(data).map_err(|e| codec_error("zstd", e)),
        }
    }

    fn finish(self) -> Result<Vec<u8>, LogError> {
        match self {
            Compressor::None(out) => Ok(out),
            Compressor::Gzip(e) => e.finish().map_err(|e| codec_error("gzip", e)),
            Compressor::Snappy { mut out, mut block } => {
                if !block.is_empty() {
                    snappy_block(&mut out, &mut block)?;
                }
                Ok(out)
            }
            Compressor::Lz4(e) => {
                let (out, result) = e.finish();
                result.map_err(|e| codec_error("lz4", e))?;
                Ok(out)
            }
            Compressor::Zstd(e) => e.finish().map_err(|e| codec_error("zstd", e)),
        }
    }
}

/// Compresses `block` as one xerial-framed snappy block onto `out` and empties it.
fn snappy_block(out: &mut Vec<u8>, block: &mut Vec<u8>) -> Result<(), LogError> {
    let compressed = snap::raw::Encoder::new()
        .compress_vec(block)
        .map_err(|e| codec_error("snappy", std::io::Error::other(e)))?;
    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    out.extend_from_slice(&compressed);
    block.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch;
    use crate::testutil::{assemble, compress, raw_record, Codec};

    /// A batch at `base` of records `(key, value)`, with headers, in `codec`.
    fn keyed(base: i64, records: &[(&str, Option<&str>)], codec: Codec) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, (k, v)) in records.iter().enumerate() {
            data.extend(raw_record(
                i as i32,
                i as i64 * 10,
                Some(k.as_bytes()),
                v.map(str::as_bytes),
                &[(b"h", Some(b"x"))],
            ));
        }
        let mut b = assemble(
            &compress(codec, &data),
            codec.id(),
            records.len() as i32,
            1000,
            1000 + (records.len() as i64 - 1) * 10,
        );
        batch::set_base_offset(&mut b, base);
        b
    }

    /// `(offset, key, value)` of every record, read back with the plain record reader.
    fn contents(b: &[u8]) -> Vec<(i64, String, Option<String>, i64)> {
        let h = batch::validate(b).unwrap();
        let mut r = RecordReader::new(b, &h, 1 << 20).unwrap();
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            assert_eq!(rec.headers_count, 1);
            out.push((
                h.base_offset + rec.offset_delta as i64,
                String::from_utf8(rec.key.unwrap().to_vec()).unwrap(),
                rec.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                h.base_timestamp + rec.timestamp_delta,
            ));
        }
        out
    }

    #[test]
    fn the_map_keeps_each_keys_newest_offset() {
        let b = keyed(
            100,
            &[("a", Some("1")), ("b", Some("1")), ("a", Some("2"))],
            Codec::None,
        );
        let h = batch::validate(&b).unwrap();
        let mut map = OffsetMap::new(1 << 20);
        map_keys(&b, &h, 1 << 20, &mut map).unwrap();
        assert_eq!(map.get(b"a"), Some(102));
        assert_eq!(map.get(b"b"), Some(101));
        assert_eq!(map.get(b"c"), None);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn the_map_reports_its_budget_spent() {
        let mut map = OffsetMap::new(2 * (ENTRY_OVERHEAD + 1));
        map.put(b"a", 1);
        assert!(!map.full());
        map.put(b"a", 2);
        assert!(!map.full(), "an existing key costs nothing more");
        map.put(b"b", 3);
        assert!(map.full());
    }

    #[test]
    fn a_batch_keeps_survivors_in_every_codec() {
        for codec in Codec::ALL {
            let b = keyed(
                50,
                &[
                    ("a", Some("old")),
                    ("b", Some("keep")),
                    ("a", Some("new")),
                    ("c", None),
                ],
                codec,
            );
            let h = batch::validate(&b).unwrap();
            let f = filter_batch(&b, &h, 1 << 20, |o, _, tomb| o != 50 && !tomb).unwrap();
            let Filtered::Rewritten(out) = f else {
                panic!("{codec:?}: expected a rewrite, got {f:?}");
            };
            let nh = batch::validate(&out).expect("valid CRC and length");
            assert_eq!(nh.base_offset, 50);
            assert_eq!(nh.last_offset(), 53, "{codec:?}: last offset delta kept");
            assert_eq!(nh.records_count, 2);
            assert_eq!(nh.compression(), codec.id());
            assert_eq!(nh.base_timestamp, h.base_timestamp);
            assert_eq!(nh.max_timestamp, 1020, "{codec:?}: max over survivors");
            assert_eq!(
                contents(&out),
                vec![
                    (51, "b".into(), Some("keep".into()), 1010),
                    (52, "a".into(), Some("new".into()), 1020)
                ],
                "{codec:?}"
            );
        }
    }

    #[test]
    fn whole_and_dropped_batches_are_not_rewritten() {
        let b = keyed(7, &[("a", Some("1")), ("b", Some("2"))], Codec::Lz4);
        let h = batch::validate(&b).unwrap();
        assert_eq!(
            filter_batch(&b, &h, 1 << 20, |_, _, _| true).unwrap(),
            Filtered::Whole
        );
        assert_eq!(
            filter_batch(&b, &h, 1 << 20, |_, _, _| false).unwrap(),
            Filtered::Dropped
        );
    }

    #[test]
    fn a_large_batch_rewrites_across_snappy_blocks() {
        let value = "v".repeat(5000);
        let records: Vec<(String, Option<&str>)> = (0..40)
            .map(|i| (format!("k{}", i % 20), Some(value.as_str())))
            .collect();
        let refs: Vec<(&str, Option<&str>)> =
            records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        for codec in [Codec::Snappy, Codec::Lz4] {
            let b = keyed(0, &refs, codec);
            let h = batch::validate(&b).unwrap();
            let Filtered::Rewritten(out) =
                filter_batch(&b, &h, 1 << 20, |o, _, _| o >= 20).unwrap()
            else {
                panic!("expected a rewrite");
            };
            let got = contents(&out);
            assert_eq!(got.len(), 20, "{codec:?}");
            assert_eq!(got[0].0, 20);
            assert_eq!(got[19].2.as_deref(), Some(value.as_str()));
        }
    }

    #[test]
    fn a_malformed_batch_is_an_error_not_a_guess() {
        let mut b = keyed(0, &[("a", Some("1")), ("a", Some("2"))], Codec::None);
        // Declare one more record than the batch holds.
        b[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&3i32.to_be_bytes());
        let h = BatchHeader::parse(&b).unwrap();
        assert!(filter_batch(&b, &h, 1 << 20, |o, _, _| o == 1).is_err());
        let mut map = OffsetMap::new(1 << 20);
        assert!(map_keys(&b, &h, 1 << 20, &mut map).is_err());
    }

    #[test]
    fn an_empty_batch_keeps_offsets_producer_and_sequence() {
        let mut b = keyed(40, &[("a", Some("1")), ("b", Some("2"))], Codec::Zstd);
        b[43..51].copy_from_slice(&7i64.to_be_bytes());
        b[51..53].copy_from_slice(&3i16.to_be_bytes());
        b[53..57].copy_from_slice(&11i32.to_be_bytes());
        let h = BatchHeader::parse(&b).unwrap();
        let e = empty_batch(&h);
        let eh = batch::validate(&e).expect("valid");
        assert_eq!((eh.base_offset, eh.last_offset()), (40, 41));
        assert_eq!(
            (eh.producer_id, eh.producer_epoch, eh.base_sequence),
            (7, 3, 11)
        );
        assert_eq!((eh.records_count, eh.compression()), (0, 0));
        let mut r = RecordReader::raw(&e, &eh, 1 << 20).unwrap();
        assert!(r.next_raw().unwrap().is_none());
    }
}
