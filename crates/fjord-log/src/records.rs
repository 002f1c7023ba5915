//! Record-by-record reading of v2 record batches, compressed or not, with bounded memory.
//!
//! A compressed batch may inflate to hundreds of times its stored size, so nothing here ever
//! holds a batch's whole decompressed payload: the codec streams through a fixed-size buffer
//! and records are parsed one at a time. A reader costs a constant (the codec's own state and
//! the read buffer) plus, when keys and values are kept, the largest record it returned,
//! which the caller bounds. The one exception is snappy without the Java framing, whose
//! single block can only be decoded whole; the snappy format itself caps that block at about
//! 22 times the batch's compressed size.
//!
//! [`validate_records`] is the produce-time check Kafka's log validator makes: record count,
//! offset deltas, record sizes, no trailing bytes.

use std::io::{BufRead, BufReader, Cursor, Read};

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::LogError;

/// How much decompressed data a streaming reader buffers at a time.
const STREAM_BUFFER: usize = 16 << 10;

/// zstd frames declare the window the decoder must keep; without a cap a 12-byte frame header
/// makes the decoder allocate up to 2 GiB. 16 MiB covers every level up to 19 (default
/// producers use level 3, a 2 MiB window at most).
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// The Java framing snappy-java writes (and Kafka's Java client uses): magic, version,
/// compatible version, then length-prefixed raw snappy blocks.
const XERIAL_MAGIC: [u8; 8] = *b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// A raw snappy block cannot expand more than ~21.3 times (a 3-byte copy op yields at most 64
/// bytes); anything that claims more is not snappy.
fn snappy_max_inflated(compressed: usize) -> usize {
    compressed.saturating_mul(22).saturating_add(64)
}

/// One record of a batch, as Kafka's v2 `DefaultRecord` lays it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'r> {
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    /// `None` when the reader skips keys and values, or the key is null.
    pub key: Option<&'r [u8]>,
    /// `None` when the reader skips keys and values, or the value is null (a tombstone).
    pub value: Option<&'r [u8]>,
    pub headers_count: i32,
    /// Whether the key is non-null, known even when keys are not kept.
    pub has_key: bool,
}

/// One record of a batch with its encoded bytes, for rewriting a batch without it
/// or with it byte for byte (the log cleaner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'r> {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    /// `None` for a null key.
    pub key: Option<&'r [u8]>,
    /// A null value: a tombstone on a compacted topic.
    pub is_tombstone: bool,
    /// The record as stored, after its length prefix: attributes through headers.
    pub body: &'r [u8],
}

/// Most null-key record indexes a summary lists; more only raise the count.
pub const MAX_LISTED_NULL_KEYS: usize = 10_000;

/// What the broker learns from reading every record of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsSummary {
    /// Records read (equal to the header's count once validated).
    pub count: i32,
    /// Largest record timestamp (`base_timestamp + delta`), -1 if none is set.
    pub max_timestamp: i64,
    /// Offset delta of the first record carrying `max_timestamp`.
    pub max_timestamp_offset_delta: i32,
    /// Records whose key is null (refused on compacted topics).
    pub null_keys: i32,
    /// Their indexes in the batch, the first [`MAX_LISTED_NULL_KEYS`] of them.
    pub null_key_indexes: Vec<i32>,
}

/// A parsed record whose key and value, when kept, lie in the reader's scratch buffer.
struct RecordMeta {
    attributes: i8,
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<std::ops::Range<usize>>,
    value: Option<std::ops::Range<usize>>,
    headers_count: i32,
    /// Whether the key is non-null, known even when keys are not kept.
    has_key: bool,
}

fn invalid(msg: impl Into<String>) -> LogError {
    LogError::InvalidRecord(msg.into())
}

/// Streams the records of one batch (`batch` holds exactly the batch, header included).
pub struct RecordReader<'a> {
    input: Box<dyn BufRead + 'a>,
    codec: u8,
    /// Records the header declares.
    declared: i32,
    /// Records read so far, counting those skipped as too large.
    read: i32,
    /// Decompressed bytes consumed so far.
    consumed: u64,
    /// Largest record body kept in memory when keys and values are kept.
    max_record_bytes: usize,
    keep_data: bool,
    /// Key and value bytes of the last record when `keep_data`.
    scratch: Vec<u8>,
    done: bool,
}

impl<'a> RecordReader<'a> {
    /// A reader that returns keys and values. Records whose body is longer than
    /// `max_record_bytes` are never allocated: [`RecordReader::next_record`] skips them and
    /// answers [`LogError::RecordTooLarge`], after which reading may go on.
    pub fn new(
        batch: &'a [u8],
        header: &BatchHeader,
        max_record_bytes: usize,
    ) -> Result<RecordReader<'a>, LogError> {
        Self::open(batch, header, max_record_bytes, true)
    }

    /// A reader that checks keys, values and headers for length only and returns records
    /// without them: its memory does not depend on record sizes at all.
    pub fn skipping_data(
        batch: &'a [u8],
        header: &BatchHeader,
    ) -> Result<RecordReader<'a>, LogError> {
        Self::open(batch, header, usize::MAX, false)
    }

    /// A reader for [`RecordReader::next_raw`]: each record's whole body is held in turn,
    /// so memory is bounded by `max_record_bytes` as with [`RecordReader::new`].
    pub fn raw(
        batch: &'a [u8],
        header: &BatchHeader,
        max_record_bytes: usize,
    ) -> Result<RecordReader<'a>, LogError> {
        Self::open(batch, header, max_record_bytes, true)
    }

    fn open(
        batch: &'a [u8],
        header: &BatchHeader,
        max_record_bytes: usize,
        keep_data: bool,
    ) -> Result<RecordReader<'a>, LogError> {
        let total = header.total_len();
        if batch.len() < total || total < BATCH_HEADER_LEN {
            return Err(LogError::CorruptBatch(format!(
                "batch length {total} does not match the {} bytes given",
                batch.len()
            )));
        }
        let payload = &batch[BATCH_HEADER_LEN..total];
        let codec = header.compression();
        let input: Box<dyn BufRead + 'a> = match codec {
            0 => Box::new(payload),
            1 => Box::new(BufReader::with_capacity(
                STREAM_BUFFER,
                flate2::bufread::MultiGzDecoder::new(payload),
            )),
            2 => snappy_input(payload)?,
            3 => {
                let decoder = lz4::Decoder::new(payload)
                    .map_err(|e| LogError::CorruptBatch(format!("lz4 frame: {e}")))?;
                Box::new(BufReader::with_capacity(STREAM_BUFFER, decoder))
            }
            4 => {
                let mut decoder = zstd::stream::read::Decoder::with_buffer(payload)
                    .map_err(|e| LogError::CorruptBatch(format!("zstd frame: {e}")))?;
                decoder
                    .window_log_max(ZSTD_WINDOW_LOG_MAX)
                    .map_err(|e| LogError::CorruptBatch(format!("zstd frame: {e}")))?;
                Box::new(BufReader::with_capacity(STREAM_BUFFER, decoder))
            }
            other => {
                return Err(LogError::CorruptBatch(format!(
                    "unknown compression codec {other}"
                )))
            }
        };
        Ok(RecordReader {
            input,
            codec,
            declared: header.records_count,
            read: 0,
            consumed: 0,
            max_record_bytes,
            keep_data,
            scratch: Vec::new(),
            done: false,
        })
    }

    /// Records read so far, counting those skipped as too large.
    pub fn records_read(&self) -> i32 {
        self.read
    }

    fn stream_error(&self, e: std::io::Error) -> LogError {
        stream_error(self.codec, self.read, self.declared, e)
    }

    /// The decompressed bytes available now; empty at the end of the records.
    fn fill(&mut self) -> Result<&[u8], LogError> {
        let (codec, read, declared) = (self.codec, self.read, self.declared);
        // In-memory decoders make no system calls, so `Interrupted` cannot occur here.
        self.input
            .fill_buf()
            .map_err(|e| stream_error(codec, read, declared, e))
    }

    fn read_u8(&mut self) -> Result<u8, LogError> {
        let byte = match self.fill()?.first() {
            Some(b) => *b,
            None => {
                return Err(self.stream_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
        };
        self.input.consume(1);
        self.consumed += 1;
        Ok(byte)
    }

    /// Kafka's unsigned varint of up to `max_bytes` bytes, zigzag-decoded.
    fn read_zigzag(&mut self, max_bytes: u32) -> Result<i64, LogError> {
        let mut raw: u64 = 0;
        for i in 0..max_bytes {
            let b = self.read_u8()?;
            raw |= ((b & 0x7f) as u64) << (7 * i);
            if b & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(invalid(format!("varint longer than {max_bytes} bytes")))
    }

    fn read_varint(&mut self) -> Result<i32, LogError> {
        let v = self.read_zigzag(5)?;
        i32::try_from(v).map_err(|_| invalid(format!("varint {v} overflows 32 bits")))
    }

    fn read_varlong(&mut self) -> Result<i64, LogError> {
        self.read_zigzag(10)
    }

    /// Discards `n` bytes of record data.
    fn skip(&mut self, mut n: usize) -> Result<(), LogError> {
        while n > 0 {
            let avail = self.fill()?.len();
            if avail == 0 {
                return Err(self.stream_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let step = avail.min(n);
            self.input.consume(step);
            self.consumed += step as u64;
            n -= step;
        }
        Ok(())
    }

    /// Appends `n` bytes of record data to the scratch buffer.
    fn take(&mut self, mut n: usize) -> Result<(), LogError> {
        let (codec, read, declared) = (self.codec, self.read, self.declared);
        while n > 0 {
            // Borrowing only the input (not all of `self`) lets the chunk go to `scratch`.
            let chunk = self
                .input
                .fill_buf()
                .map_err(|e| stream_error(codec, read, declared, e))?;
            if chunk.is_empty() {
                return Err(self.stream_error(std::io::ErrorKind::UnexpectedEof.into()));
            }
            let step = chunk.len().min(n);
            self.scratch.extend_from_slice(&chunk[..step]);
            self.input.consume(step);
            self.consumed += step as u64;
            n -= step;
        }
        Ok(())
    }

    /// Reads a length-prefixed field (`-1` is null) that must end within the record.
    /// Returns where it lies in the scratch buffer when data is kept.
    fn field(
        &mut self,
        record_end: u64,
        keep: bool,
        what: &str,
    ) -> Result<Option<std::ops::Range<usize>>, LogError> {
        let len = self.read_varint()?;
        if len < -1 {
            return Err(invalid(format!("invalid {what} length {len}")));
        }
        if len == -1 {
            return Ok(None);
        }
        let len = len as usize;
        if self.consumed + len as u64 > record_end {
            return Err(invalid(format!(
                "{what} of {len} bytes runs past the end of its record"
            )));
        }
        if keep {
            let start = self.scratch.len();
            self.take(len)?;
            Ok(Some(start..start + len))
        } else {
            self.skip(len)?;
            Ok(Some(0..0))
        }
    }

    /// The next record, or `None` after the last declared one (having checked that no
    /// record data follows it). Any error but [`LogError::RecordTooLarge`] ends the reading.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, LogError> {
        if self.done {
            return Ok(None);
        }
        match self.read_one() {
            Ok(Some(m)) => {
                let scratch = &self.scratch;
                Ok(Some(Record {
                    attributes: m.attributes,
                    timestamp_delta: m.timestamp_delta,
                    offset_delta: m.offset_delta,
                    key: m.key.map(|r| &scratch[r]),
                    value: m.value.map(|r| &scratch[r]),
                    headers_count: m.headers_count,
                    has_key: m.has_key,
                }))
            }
            Ok(None) => {
                self.done = true;
                Ok(None)
            }
            Err(e @ LogError::RecordTooLarge { .. }) => Err(e),
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }

    /// The next record with its encoded body, or `None` after the last declared one. The
    /// body is parsed only as far as the cleaner needs (offset and timestamp deltas, key,
    /// whether the value is null) and must hold exactly those fields and the headers.
    pub fn next_raw(&mut self) -> Result<Option<RawRecord<'_>>, LogError> {
        if self.done {
            return Ok(None);
        }
        if self.read >= self.declared {
            self.done = true;
            if !self.fill()?.is_empty() {
                return Err(invalid(format!(
                    "batch declares {} records but holds more record data",
                    self.declared
                )));
            }
            return Ok(None);
        }
        let len = self.read_varint()?;
        if len <= 0 {
            self.done = true;
            return Err(invalid(format!("invalid record length {len}")));
        }
        let len = len as usize;
        if len > self.max_record_bytes {
            self.done = true;
            return Err(LogError::RecordTooLarge {
                size: len,
                max: self.max_record_bytes,
            });
        }
        self.scratch.clear();
        if let Err(e) = self.take(len) {
            self.done = true;
            return Err(e);
        }
        self.read += 1;
        let body = &self.scratch[..];
        let parsed = parse_raw(body);
        if parsed.is_none() {
            self.done = true;
        }
        let (offset_delta, timestamp_delta, key, is_tombstone) =
            parsed.ok_or_else(|| invalid("malformed record body"))?;
        Ok(Some(RawRecord {
            offset_delta,
            timestamp_delta,
            key,
            is_tombstone,
            body,
        }))
    }

    fn read_one(&mut self) -> Result<Option<RecordMeta>, LogError> {
        if self.read >= self.declared {
            // Whatever is left would be records the header does not count.
            if !self.fill()?.is_empty() {
                return Err(invalid(format!(
                    "batch declares {} records but holds more record data",
                    self.declared
                )));
            }
            return Ok(None);
        }
        if self.fill()?.is_empty() {
            return Err(invalid(format!(
                "batch declares {} records but holds {}",
                self.declared, self.read
            )));
        }
        let len = self.read_varint()?;
        if len <= 0 {
            return Err(invalid(format!("invalid record length {len}")));
        }
        let len = len as usize;
        if len > self.max_record_bytes {
            // Skipping streams the record through the fixed buffer; it is never held.
            self.skip(len)?;
            self.read += 1;
            return Err(LogError::RecordTooLarge {
                size: len,
                max: self.max_record_bytes,
            });
        }
        let start = self.consumed;
        let end = start + len as u64;
        self.scratch.clear();
        let keep = self.keep_data;
        let attributes = self.read_u8()? as i8;
        let timestamp_delta = self.read_varlong()?;
        let offset_delta = self.read_varint()?;
        let key = self.field(end, keep, "key")?;
        let value = self.field(end, keep, "value")?;
        let headers_count = self.read_varint()?;
        if headers_count < 0 {
            return Err(invalid(format!(
                "invalid number of record headers {headers_count}"
            )));
        }
        self.skip_headers(headers_count, end)?;
        if self.consumed != end {
            return Err(invalid(format!(
                "expected to read {len} bytes in record payload, but read {}",
                self.consumed - start
            )));
        }
        self.read += 1;
        Ok(Some(RecordMeta {
            attributes,
            timestamp_delta,
            offset_delta,
            has_key: key.is_some(),
            key: key.filter(|_| keep),
            value: value.filter(|_| keep),
            headers_count,
        }))
    }

    fn skip_headers(&mut self, count: i32, record_end: u64) -> Result<(), LogError> {
        for _ in 0..count {
            // Each header takes at least two bytes, so a huge count fails here quickly.
            if self.consumed >= record_end {
                return Err(invalid(format!(
                    "{count} record headers do not fit in their record"
                )));
            }
            if self.field(record_end, false, "header key")?.is_none() {
                return Err(invalid("null header key"));
            }
            self.field(record_end, false, "header value")?;
        }
        Ok(())
    }
}

/// Kafka's zigzag varint at the front of `b`: the value and the bytes it took.
fn zigzag_at(b: &[u8], max_bytes: usize) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in b.iter().take(max_bytes).enumerate() {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(((raw >> 1) as i64 ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// `(offset delta, timestamp delta, key, value is null)` of a record body.
fn parse_raw(body: &[u8]) -> Option<(i32, i64, Option<&[u8]>, bool)> {
    let mut at = 1; // attributes
    let (timestamp_delta, n) = zigzag_at(body.get(at..)?, 10)?;
    at += n;
    let (offset_delta, n) = zigzag_at(body.get(at..)?, 5)?;
    at += n;
    let offset_delta = i32::try_from(offset_delta).ok()?;
    let (key_len, n) = zigzag_at(body.get(at..)?, 5)?;
    at += n;
    let key = match key_len {
        -1 => None,
        l if l >= 0 => {
            let k = body.get(at..at + l as usize)?;
            at += l as usize;
            Some(k)
        }
        _ => return None,
    };
    let (value_len, _) = zigzag_at(body.get(at..)?, 5)?;
    if value_len < -1 {
        return None;
    }
    Some((offset_delta, timestamp_delta, key, value_len == -1))
}

fn stream_error(codec: u8, read: i32, declared: i32, e: std::io::Error) -> LogError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        invalid(format!(
            "record data ends after {read} of {declared} declared records"
        ))
    } else {
        LogError::CorruptBatch(format!("decompressing {} records: {e}", codec_name(codec)))
    }
}

fn codec_name(codec: u8) -> &'static str {
    match codec {
        0 => "uncompressed",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// Snappy as Kafka clients write it: the Java framing when the magic is there, otherwise
/// one raw snappy block (librdkafka's choice), as snappy-java's reader falls back to.
fn snappy_input<'a>(payload: &'a [u8]) -> Result<Box<dyn BufRead + 'a>, LogError> {
    if payload.len() >= XERIAL_HEADER_LEN && payload[..8] == XERIAL_MAGIC {
        return Ok(Box::new(BufReader::with_capacity(
            STREAM_BUFFER,
            XerialReader {
                rest: &payload[XERIAL_HEADER_LEN..],
                block: Vec::new(),
                pos: 0,
            },
        )));
    }
    Ok(Box::new(Cursor::new(inflate_snappy_block(payload)?)))
}

fn inflate_snappy_block(block: &[u8]) -> Result<Vec<u8>, LogError> {
    let len = snap::raw::decompress_len(block)
        .map_err(|e| LogError::CorruptBatch(format!("snappy block: {e}")))?;
    if len > snappy_max_inflated(block.len()) {
        return Err(LogError::CorruptBatch(format!(
            "snappy block of {} bytes claims to inflate to {len} bytes",
            block.len()
        )));
    }
    let mut out = vec![0u8; len];
    snap::raw::Decoder::new()
        .decompress(block, &mut out)
        .map_err(|e| LogError::CorruptBatch(format!("snappy block: {e}")))?;
    Ok(out)
}

/// Decodes the Java snappy framing one block at a time.
struct XerialReader<'a> {
    rest: &'a [u8],
    block: Vec<u8>,
    pos: usize,
}

impl Read for XerialReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.block.len() {
            if self.rest.is_empty() {
                return Ok(0);
            }
            if self.rest.len() < 4 {
                return Err(std::io::Error::other("truncated snappy block length"));
            }
            let len = u32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]])
                as usize;
            let Some(block) = self.rest.get(4..4 + len) else {
                return Err(std::io::Error::other(format!(
                    "snappy block of {len} bytes runs past the batch"
                )));
            };
            self.rest = &self.rest[4 + len..];
            self.block = inflate_snappy_block(block).map_err(std::io::Error::other)?;
            self.pos = 0;
        }
        let n = out.len().min(self.block.len() - self.pos);
        out[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Kafka's produce-time checks of a client batch's records (`batch` holds the whole batch,
/// already CRC-checked): exactly `records_count` records with offset deltas 0, 1, 2, ...,
/// each record's declared length equal to what it holds, nothing after the last record, and
/// no record body longer than `max_record_bytes`. Reads by streaming without keeping keys or
/// values, so a batch that inflates to gigabytes costs a fixed amount of memory; the record
/// bound stops one that inflates to a few giant records at the first of them.
pub fn validate_records(
    batch: &[u8],
    header: &BatchHeader,
    max_record_bytes: usize,
) -> Result<RecordsSummary, LogError> {
    let mut reader = RecordReader::open(batch, header, max_record_bytes, false)?;
    let mut max_timestamp = -1i64;
    let mut max_timestamp_offset_delta = 0;
    let mut expected = 0i32;
    let mut null_keys = 0i32;
    let mut null_key_indexes = Vec::new();
    while let Some(r) = reader.next_record()? {
        if !r.has_key {
            null_keys += 1;
            if null_key_indexes.len() < MAX_LISTED_NULL_KEYS {
                null_key_indexes.push(expected);
            }
        }
        if r.offset_delta != expected {
            return Err(invalid(format!(
                "record {expected} of the batch has offset delta {}; deltas must count up from 0",
                r.offset_delta
            )));
        }
        let ts = header
            .base_timestamp
            .checked_add(r.timestamp_delta)
            .ok_or_else(|| {
                invalid(format!(
                    "timestamp delta {} overflows the base timestamp {}",
                    r.timestamp_delta, header.base_timestamp
                ))
            })?;
        if ts > max_timestamp {
            max_timestamp = ts;
            max_timestamp_offset_delta = r.offset_delta;
        }
        expected += 1;
    }
    Ok(RecordsSummary {
        count: reader.records_read(),
        max_timestamp,
        max_timestamp_offset_delta,
        null_keys,
        null_key_indexes,
    })
}

/// The first record of the batch at or after `min_offset` whose timestamp is at least `ts`,
/// as `(offset, timestamp)`. Reads records by streaming, never holding keys or values.
pub fn find_timestamp(
    batch: &[u8],
    header: &BatchHeader,
    ts: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut reader = RecordReader::skipping_data(batch, header)?;
    while let Some(r) = reader.next_record()? {
        let offset = header.base_offset + r.offset_delta as i64;
        let timestamp = header.base_timestamp.saturating_add(r.timestamp_delta);
        if offset >= min_offset && timestamp >= ts {
            return Ok(Some((offset, timestamp)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{assemble, build_batch_with_value, compress, raw_record, Codec};

    fn header(batch: &[u8]) -> BatchHeader {
        crate::batch::validate(batch).unwrap()
    }

    /// A batch of hand-made records compressed with `codec`.
    fn batch_of(records: &[Vec<u8>], codec: Codec, count: i32) -> Vec<u8> {
        let plain: Vec<u8> = records.concat();
        assemble(&compress(codec, &plain), codec.id(), count, 1000, 1000)
    }

    fn simple(n: i32) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| raw_record(i, i as i64, Some(b"k"), Some(b"v"), &[]))
            .collect()
    }

    #[test]
    fn reads_client_batches_of_every_codec() {
        for codec in Codec::ALL {
            let bytes = build_batch_with_value(0, &[10, 30, 20], codec, 5000);
            let h = header(&bytes);
            let mut reader = RecordReader::new(&bytes, &h, 1 << 20).unwrap();
            let mut seen = 0;
            while let Some(r) = reader.next_record().unwrap() {
                let i = seen as usize;
                assert_eq!(r.offset_delta, seen, "{codec:?}");
                assert_eq!(h.base_timestamp + r.timestamp_delta, [10, 30, 20][i]);
                assert_eq!(r.key, Some(format!("key-{i}").as_bytes()));
                assert_eq!(r.value, Some(&vec![(i % 251) as u8; 5000][..]));
                assert_eq!(r.headers_count, 1);
                seen += 1;
            }
            assert_eq!(seen, 3, "{codec:?}");
            let summary = validate_records(&bytes, &h, 1 << 20).unwrap();
            assert_eq!(
                summary,
                RecordsSummary {
                    count: 3,
                    max_timestamp: 30,
                    max_timestamp_offset_delta: 1,
                    null_keys: 0,
                    null_key_indexes: vec![],
                }
            );
            assert_eq!(find_timestamp(&bytes, &h, 25, 0).unwrap(), Some((1, 30)));
            assert_eq!(find_timestamp(&bytes, &h, 31, 0).unwrap(), None);
        }
    }

    #[test]
    fn skipping_reader_leaves_out_keys_and_values() {
        let bytes = build_batch_with_value(0, &[1, 2], Codec::Gzip, 100);
        let h = header(&bytes);
        let mut reader = RecordReader::skipping_data(&bytes, &h).unwrap();
        let r = reader.next_record().unwrap().unwrap();
        assert_eq!((r.key, r.value, r.offset_delta), (None, None, 0));
    }

    #[test]
    fn raw_snappy_as_librdkafka_writes_it() {
        let plain = simple(3).concat();
        let block = snap::raw::Encoder::new().compress_vec(&plain).unwrap();
        let bytes = assemble(&block, 2, 3, 0, 2);
        assert_eq!(
            validate_records(&bytes, &header(&bytes), 1024)
                .unwrap()
                .count,
            3
        );
        // A raw block that claims far more than snappy can expand to is refused unread.
        let mut forged = Vec::new();
        crate::testutil::put_varlong(&mut forged, 1 << 40);
        let bytes = assemble(&forged, 2, 1, 0, 0);
        assert!(matches!(
            validate_records(&bytes, &header(&bytes), 1024),
            Err(LogError::CorruptBatch(_))
        ));
    }

    #[test]
    fn null_key_and_tombstone() {
        let rec = raw_record(0, 0, None, None, &[(b"h", None)]);
        let bytes = batch_of(&[rec], Codec::Lz4, 1);
        let h = header(&bytes);
        let mut reader = RecordReader::new(&bytes, &h, 1024).unwrap();
        let r = reader.next_record().unwrap().unwrap();
        assert_eq!((r.key, r.value, r.headers_count), (None, None, 1));
        assert!(!r.has_key);
        assert!(reader.next_record().unwrap().is_none());
        // Counted even when keys are skipped, for the compacted-topic check.
        let keyed = raw_record(0, 0, Some(b"k"), None, &[]);
        let null = raw_record(1, 0, None, Some(b"v"), &[]);
        let bytes = batch_of(&[keyed, null], Codec::Gzip, 2);
        let summary = validate_records(&bytes, &header(&bytes), 1024).unwrap();
        assert_eq!(summary.null_keys, 1);
        assert_eq!(summary.null_key_indexes, vec![1]);
    }

    fn invalid_for_every_codec(records: &[Vec<u8>], count: i32, what: &str) {
        for codec in Codec::ALL {
            let bytes = batch_of(records, codec, count);
            let got = validate_records(&bytes, &header(&bytes), 1 << 20);
            assert!(
                matches!(got, Err(LogError::InvalidRecord(_))),
                "{what} with {codec:?}: {got:?}"
            );
            assert_eq!(got.unwrap_err().kafka_code(), 87);
        }
    }

    #[test]
    fn refuses_count_that_disagrees_with_records() {
        invalid_for_every_codec(&simple(3), 4, "fewer records than declared");
        invalid_for_every_codec(&simple(3), 2, "more records than declared");
        invalid_for_every_codec(&simple(1), i32::MAX, "two billion declared");
    }

    #[test]
    fn refuses_offset_deltas_out_of_order() {
        let mut recs = simple(3);
        recs[2] = raw_record(5, 2, Some(b"k"), Some(b"v"), &[]);
        invalid_for_every_codec(&recs, 3, "gap in offset deltas");
        let mut recs = simple(2);
        recs.swap(0, 1);
        invalid_for_every_codec(&recs, 2, "deltas swapped");
    }

    #[test]
    fn refuses_record_length_mismatches_and_trailing_bytes() {
        // Declared length one byte longer than the body: the record swallows the next one.
        let mut long = raw_record(0, 0, Some(b"k"), Some(b"v"), &[]);
        long[0] += 2;
        invalid_for_every_codec(&[long, simple(1).concat()], 2, "length too long");
        // Declared length shorter than the body.
        let mut short = raw_record(0, 0, Some(b"k"), Some(b"vv"), &[]);
        short[0] -= 2;
        invalid_for_every_codec(&[short], 1, "length too short");
        // Key longer than its record.
        let mut key = raw_record(0, 0, Some(b"k"), None, &[]);
        key[4] = 40;
        invalid_for_every_codec(&[key], 1, "key past record");
        invalid_for_every_codec(&[simple(1).concat(), vec![0]], 1, "trailing byte");
        let bad_headers = raw_record(0, 0, None, None, &[]);
        let mut forged = bad_headers.clone();
        *forged.last_mut().unwrap() = 0x7e; // 63 headers in a record with no room for any
        invalid_for_every_codec(&[forged], 1, "header count");
    }

    #[test]
    fn refuses_corrupt_compressed_data_as_corrupt_message() {
        for codec in [Codec::Gzip, Codec::Lz4, Codec::Zstd, Codec::Snappy] {
            let mut payload = compress(codec, &simple(50).concat());
            let mid = payload.len() / 2;
            payload[mid] ^= 0x55;
            payload.truncate(payload.len() - 3);
            let bytes = assemble(&payload, codec.id(), 50, 0, 0);
            let got = validate_records(&bytes, &header(&bytes), 1 << 20);
            assert!(got.is_err(), "{codec:?}");
        }
        let bytes = assemble(b"not gzip at all", 1, 1, 0, 0);
        let got = validate_records(&bytes, &header(&bytes), 1 << 20).unwrap_err();
        assert_eq!(got.kafka_code(), 2, "{got}");
    }

    #[test]
    fn refuses_record_over_the_limit_without_reading_it_whole() {
        let big = vec![0u8; 64 << 10];
        let recs = vec![
            raw_record(0, 0, Some(b"a"), Some(&big), &[]),
            raw_record(1, 0, Some(b"b"), Some(b"small"), &[]),
        ];
        for codec in Codec::ALL {
            let bytes = batch_of(&recs, codec, 2);
            let h = header(&bytes);
            let got = validate_records(&bytes, &h, 4096).unwrap_err();
            assert_eq!(got.kafka_code(), 10, "{codec:?}: {got}");
            // A reader keeping data skips the giant and goes on to the next record.
            let mut reader = RecordReader::new(&bytes, &h, 4096).unwrap();
            assert!(matches!(
                reader.next_record(),
                Err(LogError::RecordTooLarge { .. })
            ));
            let r = reader.next_record().unwrap().unwrap();
            assert_eq!(r.value, Some(&b"small"[..]));
            assert!(reader.next_record().unwrap().is_none());
            assert!(reader.scratch.capacity() < 4096);
        }
    }

    #[test]
    fn refuses_timestamp_overflow() {
        let recs = vec![raw_record(0, i64::MAX, None, Some(b"v"), &[])];
        let bytes = batch_of(&recs, Codec::None, 1);
        let got = validate_records(&bytes, &header(&bytes), 1024).unwrap_err();
        assert_eq!(got.kafka_code(), 87, "{got}");
    }
}
