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

use crate::batch::{BatchHeader, BATCH_HEADER_LEN, CRC_POS, CRC_START, LOG_OVERHEAD};
use crate::encode;
use crate::records::RecordReader;
use crate::LogError;

/// Bytes a map entry costs besides its key: the hash table slot, the boxed slice's
/// pointer and length, the offset, and the allocator's rounding.
const ENTRY_OVERHEAD: usize = 48;

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
    let b = encode::rebuild(
        batch,
        h,
        h.compression(),
        max_record_bytes,
        usize::MAX,
        Some(&kept),
    )?;
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
        b[encode::RECORDS_COUNT_POS..encode::RECORDS_COUNT_POS + 4]
            .copy_from_slice(&3i32.to_be_bytes());
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
