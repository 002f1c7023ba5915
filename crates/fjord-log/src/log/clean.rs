//! Compaction of a whole log (`cleanup.policy=compact`), as Kafka's log cleaner does it.
//!
//! A pass reads the dirty part of the log (from the cleaner checkpoint to the first
//! segment it may not touch) into a map of each key's newest offset, then rewrites every
//! sealed segment below the map's end, oldest first, without the records the map makes
//! obsolete. Offsets never change; the active segment is never touched.
//!
//! Each segment is rewritten on its own, under its own name, so that a crash at any point
//! leaves either the old segment or the new one, never both and never neither:
//!
//! 1. `<base>.log.cleaned` (and `.index.cleaned`, `.timeindex.cleaned`) are written and
//!    fsynced. A crash here leaves debris that the next open deletes.
//! 2. The three are renamed to `.swap`, the log file last, and the directory is fsynced.
//!    The log's `.swap` existing is the commit point: the next open finishes the swap.
//! 3. The `.swap` files are renamed over the old ones and the directory is fsynced.
//!
//! A segment left with no record at all is deleted instead (one unlink is atomic).
//!
//! Tombstones (null values) stay for `delete.retention.ms`, counted from the last write to
//! their segment (its modification time, which a rewrite keeps). A tombstone goes only
//! once it is its key's newest record inside the mapped range, and only in a pass that
//! rewrites every older segment first, so no older value of its key can remain to come
//! back. Batches an idempotent producer's state still refers to are never removed: when
//! nothing of one survives, an empty batch with its header stays, as in Kafka.

use std::collections::{HashMap, HashSet};

use super::*;
use crate::checkpoint::CLEANER_CHECKPOINT_FILE;
use crate::cleaner::{self, Filtered, OffsetMap};
use crate::segment::{segment_file, FileWindow, SegmentView};

/// Suffix of a cleaned segment being written.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment committed but not yet renamed into place.
pub(crate) const SWAP_SUFFIX: &str = ".swap";
/// Read size when walking a segment's batches.
const READ_CHUNK: usize = 1 << 20;
/// The smallest bound on a record held in memory while cleaning.
const MIN_RECORD_BOUND: usize = 8 << 20;
const SEGMENT_EXTS: [&str; 3] = ["log", "index", "timeindex"];

/// What the broker gives a cleaning pass.
#[derive(Debug, Clone)]
pub struct CleanOptions {
    pub now_ms: i64,
    /// Memory for the key map (`log.cleaner.dedupe.buffer.size` over the cleaner threads).
    pub map_budget: usize,
}

/// What a pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanStats {
    pub segments_rewritten: usize,
    pub segments_removed: usize,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Bytes the rewritten and removed segments held before.
    pub bytes_before: u64,
    pub batches_rewritten: usize,
    pub batches_removed: usize,
    /// Distinct keys in the map.
    pub keys: usize,
    /// Where the dirty part started before the pass, and where it starts now.
    pub dirty_from: i64,
    pub first_dirty: i64,
    /// The pass stopped early (the log changed under it); what it did stands.
    pub interrupted: bool,
}

impl CleanStats {
    /// Whether the pass changed anything: segments, or where the dirty part starts.
    pub fn progressed(&self) -> bool {
        self.segments_rewritten + self.segments_removed > 0 || self.first_dirty > self.dirty_from
    }
}

/// How much a pass would find to do, for choosing which log to clean.
#[derive(Debug, Clone, PartialEq)]
pub struct Cleanable {
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// Dirty records older than `max.compaction.lag.ms` wait, or tombstones whose
    /// `delete.retention.ms` has passed: clean whatever the ratio.
    pub overdue: bool,
}

impl Cleanable {
    pub fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// The batches of aborted transactions, from the segments' transaction indexes.
struct AbortedBatches {
    /// Producer id → `(first offset, marker offset)` of each of its aborted transactions.
    by_producer: HashMap<i64, Vec<(i64, i64)>>,
}

impl AbortedBatches {
    fn of(segments: &[Segment]) -> AbortedBatches {
        let mut by_producer: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for t in segments.iter().flat_map(|s| s.txn_index.entries()) {
            by_producer
                .entry(t.producer_id)
                .or_default()
                .push((t.first_offset, t.last_offset));
        }
        AbortedBatches { by_producer }
    }

    fn contains(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.by_producer.get(&h.producer_id).is_some_and(|spans| {
                spans
                    .iter()
                    .any(|&(first, last)| (first..=last).contains(&h.base_offset))
            })
    }
}

/// Whether the record at `(offset, key, is tombstone)` stays.
type Keep<'a> = dyn FnMut(i64, Option<&[u8]>, bool) -> bool + 'a;

/// A sealed segment as a pass found it. Its file is opened only when the pass reaches it,
/// so a pass over many segments holds one descriptor at a time.
struct Planned {
    base: i64,
    size: u64,
    next_offset: i64,
    modified_ms: i64,
}

/// What became of one segment.
enum Outcome {
    Unchanged,
    Rewritten {
        written: u64,
    },
    Removed,
    /// The segment changed under the pass (truncated, deleted by retention): stop.
    Moved,
}

impl Inner {
    /// `(first dirty offset, first offset a pass may not clean)`. The second is the base of
    /// the active segment, of the first sealed segment not yet fsynced, or of the first one
    /// with records younger than `min.compaction.lag.ms`, whichever comes first.
    fn cleanable_range(&self, now_ms: i64) -> (i64, i64) {
        let active = self.segments.len() - 1;
        let lag = self.config.min_compaction_lag_ms;
        // Records of an open transaction may still be aborted: a map holding them could
        // remove older committed values of their keys. Only decided segments are cleaned.
        let open_txn = self.producers.first_open_txn().unwrap_or(i64::MAX);
        let end = self.segments[..active]
            .iter()
            .find(|s| {
                s.dirty
                    || s.next_offset > open_txn
                    || lag > 0 && now_ms.saturating_sub(s.age_ms()) < lag
            })
            .map_or(self.segments[active].base_offset, |s| s.base_offset);
        (self.first_dirty.clamp(self.log_start, end), end)
    }
}

impl Log {
    /// How much of the log is clean and how much dirty (and cleanable now).
    pub fn cleanable(&self, now_ms: i64) -> Cleanable {
        let inner = self.inner.lock();
        let (first_dirty, end) = inner.cleanable_range(now_ms);
        let (mut clean_bytes, mut dirty_bytes) = (0, 0);
        let mut overdue = inner.tombstones_due_ms.is_some_and(|t| now_ms >= t);
        let max_lag = inner.config.max_compaction_lag_ms;
        for s in inner.segments.iter().take_while(|s| s.base_offset < end) {
            if s.next_offset <= first_dirty {
                clean_bytes += s.size;
            } else {
                dirty_bytes += s.size;
                let first = s.rolling_base_ms.unwrap_or_else(|| s.age_ms());
                overdue |= now_ms.saturating_sub(first) > max_lag;
            }
        }
        Cleanable {
            clean_bytes,
            dirty_bytes,
            overdue: overdue && dirty_bytes + clean_bytes > 0,
        }
    }

    /// One compaction pass; see the module docs. `io` is told of every byte read or
    /// written, and may sleep to hold the cleaner to its I/O rate.
    ///
    /// Errors before a segment's commit point leave the log as it was (a full disk, a
    /// batch that cannot be read). Errors after it take the log offline, as any failed
    /// write does.
    pub fn clean(
        &self,
        opts: &CleanOptions,
        io: &mut dyn FnMut(u64),
    ) -> Result<CleanStats, LogError> {
        self.check_online()?;
        let _one_pass = self.cleaning.lock();
        let (first_dirty, end, segments, protected, generation, config, aborted) = {
            let inner = self.inner.lock();
            inner.check_writable(&self.dir)?;
            let (first_dirty, end) = inner.cleanable_range(opts.now_ms);
            let aborted = AbortedBatches::of(&inner.segments);
            let segments: Vec<Planned> = inner
                .segments
                .iter()
                .take_while(|s| s.base_offset < end)
                .map(|s| Planned {
                    base: s.base_offset,
                    size: s.size,
                    next_offset: s.next_offset,
                    modified_ms: s.modified_ms(),
                })
                .collect();
            (
                first_dirty,
                end,
                segments,
                inner.producers.remembered_batches(),
                inner.generation,
                inner.config.clone(),
                aborted,
            )
        };
        let mut stats = CleanStats {
            dirty_from: first_dirty,
            first_dirty,
            ..CleanStats::default()
        };
        let record_bound = (config.max_message_bytes as usize)
            .saturating_mul(2)
            .max(MIN_RECORD_BOUND);

        // The map of the dirty part, as far as the budget reaches.
        let mut map = OffsetMap::new(opts.map_budget);
        let mut map_end = first_dirty;
        'segments: for seg in segments.iter().filter(|s| s.next_offset > first_dirty) {
            let Some(view) = self.planned_view(seg)? else {
                stats.interrupted = true;
                return Ok(stats);
            };
            let mut win = FileWindow::new(&view.file, view.size, READ_CHUNK);
            let mut pos = 0u64;
            while let Some(h) = win.header(pos)? {
                let len = h.total_len();
                // An aborted transaction's records never were values of their keys.
                if h.last_offset() >= first_dirty && !aborted.contains(&h) {
                    let data = win.get(pos, len)?;
                    cleaner::map_keys(data, &h, record_bound.max(len), &mut map)?;
                    stats.bytes_read += len as u64;
                    io(len as u64);
                    map_end = h.last_offset() + 1;
                    if map.full() {
                        break 'segments;
                    }
                }
                pos += len as u64;
            }
            map_end = map_end.max(seg.next_offset);
        }
        stats.keys = map.len();
        if map_end == first_dirty && self.inner.lock().tombstones_due_ms.is_none() {
            return Ok(stats);
        }
        let map_end = map_end.min(end);

        // Rewrite every segment below the map's end, oldest first.
        let horizon = opts.now_ms.saturating_sub(config.delete_retention_ms);
        let mut tombstones_due: Option<i64> = None;
        for seg in segments.iter().filter(|s| s.base < map_end) {
            // A segment whose age cannot be read keeps its tombstones.
            let expired = seg.modified_ms >= 0 && seg.modified_ms < horizon;
            let mut kept_tombstone = false;
            let mut keep = |offset: i64, key: Option<&[u8]>, tombstone: bool| {
                let Some(key) = key else {
                    // Refused on compacted topics; from before the topic was: keep it.
                    return true;
                };
                if offset >= map_end {
                    return true;
                }
                let newest = map.get(key).is_none_or(|m| offset >= m);
                if newest && tombstone && !expired {
                    kept_tombstone = true;
                }
                newest && !(tombstone && expired)
            };
            let outcome = self.clean_segment(
                seg,
                &mut keep,
                &protected,
                &aborted,
                record_bound,
                generation,
                &mut stats,
                io,
            )?;
            if kept_tombstone && seg.modified_ms >= 0 {
                let due = seg.modified_ms.saturating_add(config.delete_retention_ms);
                tombstones_due = Some(tombstones_due.map_or(due, |t| t.min(due)));
            }
            match outcome {
                Outcome::Unchanged => {}
                Outcome::Rewritten { written } => {
                    stats.segments_rewritten += 1;
                    stats.bytes_written += written;
                    stats.bytes_before += seg.size;
                }
                Outcome::Removed => {
                    stats.segments_removed += 1;
                    stats.bytes_before += seg.size;
                }
                Outcome::Moved => {
                    stats.interrupted = true;
                    return Ok(stats);
                }
            }
        }

        // Everything below `map_end` is clean now.
        let _guard = self.checkpoints.lock();
        {
            let inner = self.inner.lock();
            if inner.generation != generation || inner.closed {
                stats.interrupted = true;
                return Ok(stats);
            }
        }
        checkpoint::write_offset(&self.fs, &self.dir, CLEANER_CHECKPOINT_FILE, map_end)
            .map_err(|e| self.go_offline(e))?;
        let mut inner = self.inner.lock();
        inner.first_dirty = map_end;
        inner.tombstones_due_ms = tombstones_due;
        stats.first_dirty = map_end;
        Ok(stats)
    }

    /// Writes `seg` again with the records `keep` accepts, and swaps it in.
    #[allow(clippy::too_many_arguments)]
    fn clean_segment(
        &self,
        seg: &Planned,
        keep: &mut Keep<'_>,
        protected: &HashSet<i64>,
        aborted: &AbortedBatches,
        record_bound: usize,
        generation: u64,
        stats: &mut CleanStats,
        io: &mut dyn FnMut(u64),
    ) -> Result<Outcome, LogError> {
        let base = seg.base;
        let Some(view) = self.planned_view(seg)? else {
            return Ok(Outcome::Moved);
        };
        remove_cleaned(&self.fs, &self.dir, base)?;
        let path = segment_file(&self.dir, base, "log", CLEANED_SUFFIX);
        let out = self
            .fs
            .open(&path, OpenMode::CreateNew)
            .ctx(|| format!("creating {}", path.display()))?;
        let first_of_log = self.inner.lock().segments[0].base_offset == base;
        let written = match self.write_cleaned(
            seg.base,
            first_of_log,
            &view,
            &out,
            keep,
            protected,
            aborted,
            record_bound,
            stats,
            io,
        ) {
            Ok(Some(n)) => n,
            Ok(None) => {
                drop(out);
                remove_cleaned(&self.fs, &self.dir, base)?;
                return Ok(Outcome::Unchanged);
            }
            Err(e) => {
                drop(out);
                // Best effort: the next pass or open removes what is left.
                let _ = remove_cleaned(&self.fs, &self.dir, base);
                return Err(e);
            }
        };
        let prepared = (|| {
            out.sync_data()
                .ctx(|| format!("syncing {}", path.display()))?;
            drop(out);
            self.fs
                .set_modified_ms(&path, seg.modified_ms)
                .ctx(|| format!("setting the modification time of {}", path.display()))?;
            if written > 0 {
                // The indexes beside it, built and fsynced before the swap, so that the
                // swap itself only renames.
                let (cleaned, _) = Segment::open_with_suffix(
                    &self.fs,
                    &self.dir,
                    base,
                    CLEANED_SUFFIX,
                    true,
                    self.inner.lock().config.index_interval_bytes,
                )?;
                let mut files = Vec::new();
                cleaned.sync_handles(true, &mut files);
                for f in files {
                    f.sync_data()
                        .ctx(|| format!("syncing the indexes of {}", path.display()))?;
                }
            }
            Ok::<(), LogError>(())
        })();
        if let Err(e) = prepared {
            let _ = remove_cleaned(&self.fs, &self.dir, base);
            return Err(e);
        }

        let mut inner = self.inner.lock();
        let idx = inner.position_of(base);
        let still = idx.is_some_and(|i| {
            let s = &inner.segments[i];
            i + 1 < inner.segments.len() && s.size == seg.size && s.next_offset == seg.next_offset
        });
        let (Some(idx), true) = (
            idx,
            still && inner.generation == generation && !inner.closed,
        ) else {
            drop(inner);
            remove_cleaned(&self.fs, &self.dir, base)?;
            return Ok(Outcome::Moved);
        };
        if written == 0 && idx == 0 {
            // Retention made it the first segment meanwhile: it stays for the next pass.
            drop(inner);
            remove_cleaned(&self.fs, &self.dir, base)?;
            return Ok(Outcome::Moved);
        }
        if written == 0 {
            remove_cleaned(&self.fs, &self.dir, base)?;
            inner.remove_segment(idx).map_err(|e| self.fail(e))?;
            checkpoint::sync_dir(&self.fs, &self.dir).map_err(|e| self.go_offline(e))?;
            inner.dir_dirty = false;
            return Ok(Outcome::Removed);
        }
        self.swap_in(&mut inner, idx, base)
            .map_err(|e| self.fail(e))?;
        Ok(Outcome::Rewritten { written })
    }

    /// Streams the surviving batches of `seg` into `out`. `None` when nothing would change.
    #[allow(clippy::too_many_arguments)]
    fn write_cleaned(
        &self,
        base: i64,
        first_of_log: bool,
        view: &SegmentView,
        out: &LogFile,
        keep: &mut Keep<'_>,
        protected: &HashSet<i64>,
        aborted: &AbortedBatches,
        record_bound: usize,
        stats: &mut CleanStats,
        io: &mut dyn FnMut(u64),
    ) -> Result<Option<u64>, LogError> {
        let mut win = FileWindow::new(&view.file, view.size, READ_CHUNK);
        let mut pos = 0u64;
        let mut written = 0u64;
        let mut changed = false;
        let path = || segment_file(&self.dir, base, "log", CLEANED_SUFFIX);
        let mut last = None;
        while let Some(h) = win.header(pos)? {
            last = Some(h);
            let len = h.total_len();
            let data = win.get(pos, len)?;
            // Aborted batches stay whole, as their markers do: the segment's transaction
            // index still describes them, and consumers drop them by it.
            let filtered = if aborted.contains(&h) {
                Filtered::Whole
            } else {
                cleaner::filter_batch(data, &h, record_bound.max(len), &mut *keep)?
            };
            let producers_batch = h.producer_id >= 0 && protected.contains(&h.last_offset());
            let bytes: std::borrow::Cow<[u8]> = match filtered {
                Filtered::Whole => data.into(),
                Filtered::Rewritten(b) => {
                    changed = true;
                    stats.batches_rewritten += 1;
                    b.into()
                }
                Filtered::Dropped if producers_batch => {
                    changed = true;
                    stats.batches_rewritten += 1;
                    cleaner::empty_batch(&h).into()
                }
                Filtered::Dropped => {
                    changed = true;
                    stats.batches_removed += 1;
                    pos += len as u64;
                    stats.bytes_read += len as u64;
                    io(len as u64);
                    continue;
                }
            };
            out.write_all_at(&bytes, written)
                .ctx(|| format!("writing {}", path().display()))?;
            written += bytes.len() as u64;
            pos += len as u64;
            stats.bytes_read += len as u64;
            io(len as u64 + bytes.len() as u64);
        }
        // The log's first segment never goes: its base offset is where the log starts,
        // and reads from there must find the first surviving record, as in Kafka, not
        // an offset out of range. One empty batch, the last one's offsets, keeps it.
        if written == 0 && first_of_log {
            if let Some(h) = last {
                let empty = cleaner::empty_batch(&h);
                out.write_all_at(&empty, 0)
                    .ctx(|| format!("writing {}", path().display()))?;
                written = empty.len() as u64;
            }
        }
        Ok(changed.then_some(written))
    }

    /// A reading view of a planned segment, unless it has changed since it was planned.
    fn planned_view(&self, seg: &Planned) -> Result<Option<SegmentView>, LogError> {
        Ok(self.view_of(seg.base)?.filter(|v| v.size == seg.size))
    }

    /// Steps 2 and 3 of the swap (see the module docs), then the new segment in memory.
    fn swap_in(&self, inner: &mut Inner, idx: usize, base: i64) -> Result<(), LogError> {
        let name = |ext: &str, suffix: &str| segment_file(&self.dir, base, ext, suffix);
        let rename = |from: &std::path::Path, to: &std::path::Path| {
            self.fs
                .rename(from, to)
                .ctx(|| format!("renaming {} to {}", from.display(), to.display()))
        };
        // The log file last: its `.swap` is the commit point.
        for ext in ["index", "timeindex", "log"] {
            rename(&name(ext, CLEANED_SUFFIX), &name(ext, SWAP_SUFFIX))?;
        }
        checkpoint::sync_dir(&self.fs, &self.dir)?;
        finish_swap(&self.fs, &self.dir, base)?;
        checkpoint::sync_dir(&self.fs, &self.dir)?;
        let interval = inner.config.index_interval_bytes;
        let (mut seg, _) = Segment::open(&self.fs, &self.dir, base, false, interval)?;
        if !seg.dirty {
            seg.close_handles();
        }
        inner.read_handles.retain(|&b| b != base);
        inner.segments[idx] = seg;
        Ok(())
    }
}

/// Completes a committed swap of segment `base`: renames its `.swap` files into place. An
/// index without its `.swap` may be the old one or the new one; it is removed, and rebuilt
/// when the segment opens. The caller fsyncs the directory.
pub(crate) fn finish_swap(fs: &Fs, dir: &Path, base: i64) -> Result<(), LogError> {
    for ext in ["index", "timeindex"] {
        let swap = segment_file(dir, base, ext, SWAP_SUFFIX);
        let dst = segment_file(dir, base, ext, "");
        if fs.exists(&swap) {
            fs.rename(&swap, &dst)
                .ctx(|| format!("renaming {}", swap.display()))?;
        } else {
            remove_if_exists(fs, &dst)?;
        }
    }
    let swap = segment_file(dir, base, "log", SWAP_SUFFIX);
    fs.rename(&swap, &segment_file(dir, base, "log", ""))
        .ctx(|| format!("renaming {}", swap.display()))
}

/// Removes the `.cleaned` files of segment `base`, if any.
fn remove_cleaned(fs: &Fs, dir: &Path, base: i64) -> Result<(), LogError> {
    for ext in SEGMENT_EXTS {
        remove_if_exists(fs, &segment_file(dir, base, ext, CLEANED_SUFFIX))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::batch;
    use crate::fs::sim::SimFs;
    use crate::records::RecordReader;
    use crate::testutil::{assemble, raw_record};

    type Rec = (i64, String, Option<String>);

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 700,
            index_interval_bytes: 100,
            compact: true,
            ..LogConfig::default()
        }
    }

    fn opts(now_ms: i64) -> CleanOptions {
        CleanOptions {
            now_ms,
            map_budget: 1 << 20,
        }
    }

    fn now() -> i64 {
        wall_clock_ms()
    }

    /// A batch of `(key, value)` records; `producer` is `(id, epoch, base sequence)`.
    fn keyed(records: &[(&str, Option<&str>)], producer: Option<(i64, i16, i32)>) -> Vec<u8> {
        let mut data = Vec::new();
        for (i, (k, v)) in records.iter().enumerate() {
            data.extend(raw_record(
                i as i32,
                0,
                Some(k.as_bytes()),
                v.map(str::as_bytes),
                &[],
            ));
        }
        let mut b = assemble(&data, 0, records.len() as i32, 1000, 1000);
        if let Some((id, epoch, seq)) = producer {
            b[43..51].copy_from_slice(&id.to_be_bytes());
            b[51..53].copy_from_slice(&epoch.to_be_bytes());
            b[53..57].copy_from_slice(&seq.to_be_bytes());
            let crc = crc32c::crc32c(&b[21..]);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
        }
        b
    }

    fn append(log: &Log, records: &[(&str, Option<&str>)]) -> i64 {
        log.append(&mut keyed(records, None), 0, 1000)
            .unwrap()
            .base_offset
    }

    /// Every record the log returns, in order.
    fn records(log: &Log) -> Vec<Rec> {
        let mut out: Vec<Rec> = Vec::new();
        let mut offset = log.log_start_offset();
        while offset < log.log_end_offset() {
            let info = log.read(offset, 1 << 20, i64::MAX, true).unwrap();
            if info.bytes.is_empty() {
                break;
            }
            for item in batch::iter(&info.bytes) {
                let (h, range) = item.unwrap();
                let data = &info.bytes[range];
                let mut r = RecordReader::new(data, &h, 1 << 20).unwrap();
                while let Some(rec) = r.next_record().unwrap() {
                    let o = h.base_offset + rec.offset_delta as i64;
                    if o >= offset {
                        out.push((
                            o,
                            String::from_utf8(rec.key.unwrap().to_vec()).unwrap(),
                            rec.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
                        ));
                    }
                }
                offset = offset.max(h.last_offset() + 1);
            }
        }
        out
    }

    /// Each key's newest record.
    fn newest(recs: &[Rec]) -> BTreeMap<String, Rec> {
        recs.iter().map(|r| (r.1.clone(), r.clone())).collect()
    }

    /// 60 batches over 6 keys, every seventh write a tombstone; returns all records.
    fn fill(log: &Log) -> Vec<Rec> {
        for i in 0..60 {
            let key = format!("k{}", i % 6);
            let value = format!("v{i}");
            let tomb = i % 7 == 6;
            append(log, &[(&key, (!tomb).then_some(value.as_str()))]);
        }
        records(log)
    }

    #[test]
    fn compaction_keeps_each_keys_newest_record_at_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        let before = fill(&log);
        log.flush().unwrap();
        let (start, end) = (log.log_start_offset(), log.log_end_offset());
        let active = log.inner.lock().active().base_offset;
        let stats = log.clean(&opts(now()), &mut |_| {}).unwrap();
        assert!(
            stats.segments_rewritten + stats.segments_removed > 0,
            "{stats:?}"
        );
        assert_eq!(stats.first_dirty, active);
        let after = records(&log);
        assert_eq!(log.log_end_offset(), end, "the log end never moves");
        assert!(log.log_start_offset() >= start);
        // Every survivor is a record that was written at that offset.
        for r in &after {
            assert!(before.contains(r), "{r:?} was never written");
        }
        assert!(after.windows(2).all(|w| w[0].0 < w[1].0));
        // The newest record of each key survives, tombstones included (they are fresh).
        assert_eq!(newest(&after), newest(&before));
        // Below the active segment (which a pass never reads), nothing but each key's
        // newest record there remains.
        let below: Vec<Rec> = before.iter().filter(|r| r.0 < active).cloned().collect();
        let latest = newest(&below);
        for r in after.iter().filter(|r| r.0 < active) {
            assert_eq!(&latest[&r.1], r, "an older record of {} survived", r.1);
        }
        // Everything from the active segment on is untouched.
        let tail = |v: &[Rec]| {
            v.iter()
                .filter(|r| r.0 >= active)
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(tail(&after), tail(&before));

        // A second pass finds nothing more, and a reopen reads the same.
        let again = log.clean(&opts(now()), &mut |_| {}).unwrap();
        assert_eq!(again.segments_rewritten + again.segments_removed, 0);
        log.close().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(records(&log), after);
        assert_eq!(log.inner.lock().first_dirty, active);
    }

    #[test]
    fn tombstones_go_after_delete_retention() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(
            dir.path(),
            LogConfig {
                delete_retention_ms: 60_000,
                ..config()
            },
        )
        .unwrap();
        let before = fill(&log);
        log.flush().unwrap();
        let active = log.inner.lock().active().base_offset;
        log.clean(&opts(now()), &mut |_| {}).unwrap();
        let tombstones = |v: &[Rec]| v.iter().filter(|r| r.2.is_none() && r.0 < active).count();
        let kept = tombstones(&records(&log));
        assert!(kept > 0, "fresh tombstones stay");
        assert!(!log.cleanable(now()).overdue);
        // A minute later they are due, and go.
        let later = now() + 61_000;
        assert!(log.cleanable(later).overdue);
        log.clean(&opts(later), &mut |_| {}).unwrap();
        let after = records(&log);
        assert_eq!(tombstones(&after), 0);
        // Their keys are gone entirely below the active segment: nothing older came back.
        let below: Vec<Rec> = before.iter().filter(|r| r.0 < active).cloned().collect();
        let latest = newest(&below);
        for r in after.iter().filter(|r| r.0 < active) {
            assert!(latest[&r.1].2.is_some() && &latest[&r.1] == r, "{r:?}");
        }
    }

    #[test]
    fn a_producers_last_batch_stays_as_an_empty_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        let mut b = keyed(&[("a", Some("old"))], Some((9, 0, 0)));
        let at = log.append(&mut b, 0, 1000).unwrap().base_offset;
        for i in 0..40 {
            append(&log, &[("a", Some(&format!("new{i}")))]);
        }
        log.flush().unwrap();
        log.clean(&opts(now()), &mut |_| {}).unwrap();
        assert!(
            records(&log).iter().all(|r| r.0 != at),
            "the old value is gone"
        );
        let info = log.read(at, 1 << 20, i64::MAX, true).unwrap();
        let h = batch::validate(&info.bytes).unwrap();
        assert_eq!((h.base_offset, h.producer_id, h.records_count), (at, 9, 0));
        // The producer's next sequence is still accepted after a reopen.
        log.close().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        let mut next = keyed(&[("b", Some("1"))], Some((9, 0, 1)));
        log.append(&mut next, 0, 1000)
            .expect("sequence 1 follows 0");
    }

    #[test]
    fn emptied_segments_go_but_the_first_stays_and_the_log_start_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        for i in 0..40 {
            append(&log, &[("same", Some(&format!("v{i}")))]);
        }
        log.flush().unwrap();
        let segments = log.inner.lock().segments.len();
        let stats = log.clean(&opts(now()), &mut |_| {}).unwrap();
        assert!(stats.segments_removed > 0, "{stats:?}");
        assert!(log.inner.lock().segments.len() < segments);
        assert_eq!(log.inner.lock().segments[0].base_offset, 0);
        assert_eq!(
            log.log_start_offset(),
            0,
            "compaction never moves the log start"
        );
        // A read from the start finds the first surviving record, past the gap.
        let recs = records(&log);
        assert_eq!(recs.last().unwrap().2.as_deref(), Some("v39"));
        assert!(recs.first().unwrap().0 > 0);
        // And so it stays after a reopen.
        log.close().unwrap();
        let log = Log::open(dir.path(), config()).unwrap();
        assert_eq!(log.log_start_offset(), 0);
        assert_eq!(records(&log), recs);
    }

    #[test]
    fn a_swap_cut_short_by_a_crash_finishes_or_never_happened() {
        // Power off at every fsync of a pass in turn; the log must always read as before
        // the pass or as after it, per record, and a new pass must reach the same end.
        let reference = {
            let dir = tempfile::tempdir().unwrap();
            let log = Log::open(dir.path(), config()).unwrap();
            fill(&log);
            log.flush().unwrap();
            log.clean(&opts(now()), &mut |_| {}).unwrap();
            records(&log)
        };
        let mut completed = false;
        for k in 1..400 {
            let dir = tempfile::tempdir().unwrap();
            let sim = SimFs::new(k);
            let fs = Fs::simulated(sim.clone());
            let log = Log::open_with(fs.clone(), dir.path().to_path_buf(), config()).unwrap();
            let before = fill(&log);
            log.flush().unwrap();
            sim.power_off_in(k);
            let _ = log.clean(&opts(now()), &mut |_| {});
            let off = sim.is_off();
            drop(log);
            sim.crash();
            let log = Log::open_with(
                Fs::simulated(SimFs::new(k)),
                dir.path().to_path_buf(),
                config(),
            )
            .unwrap_or_else(|e| panic!("power off at fsync {k}: reopen failed: {e}"));
            let got = records(&log);
            for r in &got {
                assert!(before.contains(r), "fsync {k}: {r:?} was never written");
            }
            assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "fsync {k}: order");
            assert_eq!(
                newest(&got),
                newest(&before),
                "fsync {k}: a newest record lost"
            );
            log.clean(&opts(now()), &mut |_| {}).unwrap();
            assert_eq!(
                records(&log),
                reference,
                "fsync {k}: a new pass ends elsewhere"
            );
            let leftovers: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(CLEANED_SUFFIX) || n.ends_with(SWAP_SUFFIX))
                .collect();
            assert!(leftovers.is_empty(), "fsync {k}: {leftovers:?}");
            if !off {
                completed = true;
                assert!(k > 10, "only {k} fsyncs in a pass over many segments");
                break;
            }
        }
        assert!(completed, "the pass never ran to its end");
    }
}
