//! Re-encoding a stored batch: its records (all, or those a mask keeps) written again,
//! possibly with another codec, behind the same header. The log cleaner uses it for a
//! batch that loses records, and appends use it where a topic's `compression.type` asks
//! for another codec than the producer's.
//!
//! Records are streamed from the source batch and into the codec: neither the source's
//! inflated records nor the new batch's uncompressed payload are ever held whole.

use std::io::Write;

use crate::batch::{
    BatchHeader, ATTRIBUTES_POS, BATCH_HEADER_LEN, CRC_POS, CRC_START, LOG_OVERHEAD,
    MAX_TIMESTAMP_POS,
};
use crate::records::RecordReader;
use crate::LogError;

/// Records count position in the batch header.
pub(crate) const RECORDS_COUNT_POS: usize = 57;

/// `batch` again with codec `codec`, keeping the records whose bit in `keep` is set (all
/// when `keep` is `None`). Base offset, last offset delta, producer, sequence and base
/// timestamp stay; the record count and max timestamp are the kept records'. Fails with
/// [`LogError::BatchTooLarge`] once more than `input_limit` bytes of records went in.
pub(crate) fn rebuild(
    batch: &[u8],
    h: &BatchHeader,
    codec: u8,
    max_record_bytes: usize,
    input_limit: usize,
    keep: Option<&[bool]>,
) -> Result<Vec<u8>, LogError> {
    let mut out = Compressor::new(codec)?;
    let mut max_timestamp = -1i64;
    let mut reader = RecordReader::raw(batch, h, max_record_bytes)?;
    let (mut i, mut count, mut input) = (0usize, 0i32, 0usize);
    while let Some(r) = reader.next_raw()? {
        if keep.is_none_or(|k| k.get(i).copied().unwrap_or(false)) {
            max_timestamp = max_timestamp.max(h.base_timestamp.saturating_add(r.timestamp_delta));
            let mut len = Vec::with_capacity(5);
            put_varint(&mut len, r.body.len() as i64);
            input += len.len() + r.body.len();
            if input > input_limit {
                return Err(LogError::BatchTooLarge {
                    size: input,
                    max: input_limit.min(u32::MAX as usize) as u32,
                });
            }
            out.write(&len)?;
            out.write(r.body)?;
            count += 1;
        }
        i += 1;
    }
    let payload = out.finish()?;
    let mut b = Vec::with_capacity(BATCH_HEADER_LEN + payload.len());
    b.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
    b.extend_from_slice(&payload);
    let batch_length = (b.len() - LOG_OVERHEAD) as i32;
    b[8..12].copy_from_slice(&batch_length.to_be_bytes());
    b[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&count.to_be_bytes());
    let attributes = (h.attributes & !7) | codec as i16;
    b[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
    // A LogAppendTime batch's max timestamp is the broker's stamp, the same for all.
    if !h.is_log_append_time() {
        b[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    }
    let crc = crc32c::crc32c(&b[CRC_START..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(b)
}

/// Kafka's zigzag varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i64) {
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
