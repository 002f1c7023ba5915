//! The partition log: ordered segments, offset assignment, reads, recovery on open,
//! retention, truncation and group-commit durability.
//!
//! Locking: `inner` guards the segment list and is held only for bookkeeping and the write
//! syscall itself; reads and fsyncs work on cloned file handles outside it. `flush` guards
//! the group-commit state and is never held while taking `inner`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::batch::{self, BatchHeader};
use crate::checkpoint::{
    self, EpochCache, CLEAN_SHUTDOWN_FILE, LOG_START_FILE, RECOVERY_POINT_FILE,
};
use crate::config::{LogConfig, TimestampType};
use crate::error::IoContext;
use crate::index::remove_if_exists;
use crate::producer_state::{Admission, ProducerEntry, ProducerStateManager};
use crate::records;
use crate::segment::{self, Segment, SegmentView};
use crate::LogError;

/// Outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The stamped time for LogAppendTime topics, -1 for CreateTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// Outcome of a read.
#[derive(Debug, Clone)]
pub struct ReadInfo {
    /// Whole stored batches, possibly none.
    pub bytes: Bytes,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
}

/// One partition's log on disk. Internally synchronised; share it behind an `Arc`.
pub struct Log {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// Mirror of the log end offset, readable without `inner` (group commit needs it while
    /// holding `flush`).
    leo: AtomicI64,
    flush: Mutex<FlushState>,
    flush_done: Condvar,
}

struct Inner {
    config: LogConfig,
    /// Ordered by base offset; never empty; the last one is active.
    segments: Vec<Segment>,
    log_start: i64,
    epochs: EpochCache,
    messages_since_flush: i64,
    first_unflushed_ms: Option<i64>,
    /// Segment files were created or removed since the directory was last synced.
    dir_dirty: bool,
    clean_marker: bool,
    /// Recovery point stored in the checkpoint file: everything below it, indexes included,
    /// is on disk, so the next unclean open scans only from there.
    persisted_rp: i64,
    /// Bumped by truncation so a flush that raced with it does not claim new data as durable.
    generation: u64,
    /// Idempotent producers' sequences; checked and updated under this lock with each append.
    producers: ProducerStateManager,
}

struct FlushState {
    in_progress: bool,
    flushed: i64,
}

impl Inner {
    fn active(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    fn leo(&self) -> i64 {
        self.segments.last().map_or(0, |s| s.next_offset)
    }

    /// Index of the segment that holds `offset` (the first one if it is below all of them).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }
}

fn out_of_range(offset: i64, start: i64, end: i64) -> LogError {
    LogError::OffsetOutOfRange { offset, start, end }
}

/// Base offsets of the `.log` files in `dir`; removes leftover temp files and orphan indexes.
fn scan_dir(dir: &Path) -> Result<Vec<i64>, LogError> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    let entries = std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            remove_if_exists(&entry.path())?;
            continue;
        }
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        match ext {
            "log" => bases.push(base),
            "index" | "timeindex" => indexes.push((base, entry.path())),
            _ => {}
        }
    }
    bases.sort_unstable();
    for (base, path) in indexes {
        if bases.binary_search(&base).is_err() {
            remove_if_exists(&path)?;
        }
    }
    Ok(bases)
}

impl Log {
    /// Opens (creating if missing) the partition directory and recovers it.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log, LogError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
        let bases = scan_dir(&dir)?;
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = marker.exists();
        let rp = if clean {
            i64::MAX
        } else {
            checkpoint::read_offset(&dir, RECOVERY_POINT_FILE).unwrap_or(0)
        };
        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let mut scanned_from = None;
        let mut cut = false;
        for (i, &base) in bases.iter().enumerate() {
            if cut {
                // A damaged segment ends the log: later segments were written after bytes
                // that are now gone, so they cannot be trusted to follow on.
                tracing::warn!(dir = %dir.display(), base, "removing segment after damaged tail");
                for ext in ["log", "index", "timeindex"] {
                    remove_if_exists(&segment::segment_path(&dir, base, ext))?;
                }
                continue;
            }
            let next_base = bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let full_scan = next_base > rp;
            if full_scan && scanned_from.is_none() {
                scanned_from = Some(segments.len());
            }
            let (seg, truncated) =
                Segment::open(&dir, base, full_scan, config.index_interval_bytes)?;
            cut = truncated;
            segments.push(seg);
        }
        let mut dir_dirty = cut;
        if segments.is_empty() {
            let start = checkpoint::read_offset(&dir, LOG_START_FILE)
                .unwrap_or(0)
                .max(0);
            segments.push(Segment::create(&dir, start)?);
            dir_dirty = true;
        }
        let leo = segments.last().map_or(0, |s| s.next_offset);
        if !clean {
            // What recovery kept may still sit only in the page cache (the process died, not
            // the machine): make it durable before calling it recovered.
            for seg in &segments[scanned_from.unwrap_or(segments.len())..] {
                seg.log
                    .sync_data()
                    .ctx(|| "syncing recovered segment".into())?;
                seg.offset_index
                    .file()
                    .sync_data()
                    .ctx(|| "syncing recovered index".into())?;
                seg.time_index
                    .file()
                    .sync_data()
                    .ctx(|| "syncing recovered index".into())?;
            }
        }
        if clean || dir_dirty {
            // Removing the marker must be durable before any new append, or a later crash
            // would be mistaken for a clean shutdown.
            remove_if_exists(&marker)?;
            checkpoint::sync_dir(&dir)?;
        }
        let first_base = segments[0].base_offset;
        let log_start = checkpoint::read_offset(&dir, LOG_START_FILE)
            .unwrap_or(first_base)
            .max(first_base)
            .min(leo);
        let mut epochs = EpochCache::load(&dir);
        let trimmed_end = epochs.truncate_from_end(leo);
        let trimmed_start = epochs.truncate_from_start(log_start);
        if trimmed_end || trimmed_start {
            epochs.store(&dir)?;
        }
        checkpoint::write_offset(&dir, RECOVERY_POINT_FILE, leo)?;
        let mut producers = ProducerStateManager::new(&dir);
        producers.load(&segments, log_start, leo)?;
        tracing::debug!(dir = %dir.display(), log_start, leo, clean, segments = segments.len(), "log opened");
        Ok(Log {
            dir,
            inner: Mutex::new(Inner {
                config,
                segments,
                log_start,
                epochs,
                messages_since_flush: 0,
                first_unflushed_ms: None,
                dir_dirty: false,
                clean_marker: false,
                persisted_rp: leo,
                generation: 0,
                producers,
            }),
            leo: AtomicI64::new(leo),
            flush: Mutex::new(FlushState {
                in_progress: false,
                flushed: leo,
            }),
            flush_done: Condvar::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Validates all batches (all or nothing), assigns offsets, stamps the leader epoch (and
    /// LogAppendTime if configured) and appends them byte for byte.
    pub fn append(
        &self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let (max, compact) = {
            let inner = self.inner.lock();
            (inner.config.max_message_bytes, inner.config.compact)
        };
        let mut headers = Vec::new();
        // The largest record timestamp of each batch, which its header must carry.
        let mut record_max_ts = Vec::new();
        for item in batch::iter(batches) {
            let (h, range) = item?;
            if h.total_len() > max as usize {
                return Err(LogError::BatchTooLarge {
                    size: h.total_len(),
                    max,
                });
            }
            batch::validate(&batches[range.clone()])?;
            if h.records_count <= 0 || h.last_offset_delta != h.records_count - 1 {
                return Err(LogError::CorruptBatch(format!(
                    "batch has {} records but last offset delta {}",
                    h.records_count, h.last_offset_delta
                )));
            }
            // A record may not inflate past what the topic lets one batch store.
            let summary = records::validate_records(&batches[range.clone()], &h, max as usize)?;
            // Compaction keeps the newest record per key: a record without one has no place.
            if compact && summary.null_keys > 0 && !h.is_control() {
                return Err(LogError::InvalidRecord(
                    "Compacted topic cannot accept message without key".into(),
                ));
            }
            record_max_ts.push(summary.max_timestamp);
            headers.push((h, range.start));
        }
        if headers.is_empty() {
            return Err(LogError::CorruptBatch("no record batches".into()));
        }
        let count: i64 = headers
            .iter()
            .map(|(h, _)| h.last_offset_delta as i64 + 1)
            .sum();

        let mut inner = self.inner.lock();
        let log_append = inner.config.timestamp_type == TimestampType::LogAppendTime;
        let base = inner.leo();
        let append_time = log_append.then_some(now_ms);
        let updated =
            match inner
                .producers
                .check(headers.iter().map(|(h, _)| h), base, append_time)?
            {
                Admission::Append(updated) => updated,
                Admission::Duplicate(b) => {
                    return Ok(AppendInfo {
                        base_offset: b.first_offset,
                        last_offset: b.last_offset(),
                        log_append_time: if log_append { b.timestamp } else { -1 },
                        log_start_offset: inner.log_start,
                    })
                }
            };
        self.maybe_roll(
            &mut inner,
            batches.len() as u64,
            now_ms,
            base,
            base + count - 1,
        )?;
        let mut next = base;
        for ((h, start), record_max) in headers.iter_mut().zip(&record_max_ts) {
            let total = h.total_len();
            let bytes = &mut batches[*start..*start + total];
            batch::set_base_offset(bytes, next);
            batch::set_leader_epoch(bytes, leader_epoch);
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch;
            if log_append {
                batch::stamp_log_append_time(bytes, total, now_ms);
                h.attributes |= 1 << 3;
                h.max_timestamp = now_ms;
            } else if h.max_timestamp != *record_max {
                // The time index and ListOffsets trust the header; a producer's wrong max
                // would hide records from timestamp lookups.
                batch::set_max_timestamp(bytes, total, *record_max);
                h.max_timestamp = *record_max;
            }
            next = h.last_offset() + 1;
        }
        self.write_batches(&mut inner, batches, &headers, now_ms)?;
        inner.producers.commit(updated);
        if inner.epochs.assign(leader_epoch, base) {
            inner.epochs.store(&self.dir)?;
        }
        let info = AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            log_append_time: if log_append { now_ms } else { -1 },
            log_start_offset: inner.log_start,
        };
        let flush_now = inner.messages_since_flush >= inner.config.flush_messages;
        drop(inner);
        if flush_now {
            self.flush_until(next)?;
        }
        Ok(info)
    }

    /// Appends batches that already carry their offsets, as a follower copies its leader.
    pub fn append_as_follower(&self, batches: &[u8]) -> Result<AppendInfo, LogError> {
        let mut headers = Vec::new();
        let mut expected = i64::MIN;
        for item in batch::iter(batches) {
            let (h, range) = item?;
            batch::validate(&batches[range.clone()])?;
            if h.base_offset < expected {
                return Err(LogError::CorruptBatch(format!(
                    "batch offset {} is not above the previous batch's last offset {}",
                    h.base_offset,
                    expected - 1
                )));
            }
            expected = h.last_offset() + 1;
            headers.push((h, range.start));
        }
        let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
            return Err(LogError::CorruptBatch("no record batches".into()));
        };
        let (first_offset, last_offset) = (first.0.base_offset, last.0.last_offset());
        let mut inner = self.inner.lock();
        let leo = inner.leo();
        if first_offset < leo {
            return Err(LogError::CorruptBatch(format!(
                "follower batch offset {first_offset} is below the log end offset {leo}"
            )));
        }
        let now_ms = wall_clock_ms();
        self.maybe_roll(
            &mut inner,
            batches.len() as u64,
            now_ms,
            first_offset,
            last_offset,
        )?;
        self.write_batches(&mut inner, batches, &headers, now_ms)?;
        let mut epochs_changed = false;
        for (h, _) in &headers {
            inner.producers.replay(h);
            epochs_changed |= inner.epochs.assign(h.partition_leader_epoch, h.base_offset);
        }
        if epochs_changed {
            inner.epochs.store(&self.dir)?;
        }
        let info = AppendInfo {
            base_offset: first_offset,
            last_offset,
            log_append_time: -1,
            log_start_offset: inner.log_start,
        };
        let flush_now = inner.messages_since_flush >= inner.config.flush_messages;
        drop(inner);
        if flush_now {
            self.flush_until(last_offset + 1)?;
        }
        Ok(info)
    }

    /// Rolls to a new segment starting at `first_offset` when the active one is full by
    /// segment.bytes, old by segment.ms, has a full index, or cannot express the offsets.
    fn maybe_roll(
        &self,
        inner: &mut Inner,
        incoming: u64,
        now_ms: i64,
        first_offset: i64,
        last_offset: i64,
    ) -> Result<(), LogError> {
        let cfg = inner.config.clone();
        let active = inner.active();
        if active.size == 0 {
            if !active.fits_offset(first_offset) || !active.fits_offset(last_offset) {
                // An empty segment at the wrong base (a follower jumped ahead): replace it.
                active.remove_files()?;
                let seg = Segment::create(&self.dir, first_offset)?;
                *inner.active() = seg;
                inner.dir_dirty = true;
            }
            return Ok(());
        }
        let index_full = active.offset_index.size_bytes() + 8 > cfg.segment_index_bytes as usize
            || active.time_index.size_bytes() + 12 > cfg.segment_index_bytes as usize;
        let too_old = active
            .rolling_base_ms
            .is_some_and(|b| now_ms.saturating_sub(b) > cfg.segment_ms);
        if active.size + incoming > cfg.segment_bytes
            || too_old
            || index_full
            || !active.fits_offset(last_offset)
        {
            active.seal()?;
            let seg = Segment::create(&self.dir, first_offset)?;
            inner.segments.push(seg);
            inner.dir_dirty = true;
            // Everything below the new segment is in the producer state: a crash from here
            // on rebuilds it from this snapshot and the new segment's headers alone. It is
            // written (with its fsyncs) by the next flush check, not on the append path.
            inner.producers.prepare_snapshot(first_offset);
        }
        Ok(())
    }

    /// Writes patched batches to the active segment and updates the bookkeeping.
    fn write_batches(
        &self,
        inner: &mut Inner,
        bytes: &[u8],
        headers: &[(BatchHeader, usize)],
        now_ms: i64,
    ) -> Result<(), LogError> {
        if inner.clean_marker {
            remove_if_exists(&self.dir.join(CLEAN_SHUTDOWN_FILE))?;
            checkpoint::sync_dir(&self.dir)?;
            inner.clean_marker = false;
        }
        let interval = inner.config.index_interval_bytes;
        let active = inner.active();
        active.append(bytes, headers, interval)?;
        if active.rolling_base_ms.is_none() {
            active.rolling_base_ms = Some(now_ms);
        }
        let leo = active.next_offset;
        self.leo.store(leo, Ordering::Release);
        let records: i64 = headers
            .iter()
            .map(|(h, _)| h.records_count.max(0) as i64)
            .sum();
        inner.messages_since_flush = inner.messages_since_flush.saturating_add(records);
        inner.first_unflushed_ms.get_or_insert(now_ms);
        Ok(())
    }

    /// Reads whole stored batches starting with the batch containing `offset`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<ReadInfo, LogError> {
        let (views, start_pos, log_start, leo) = {
            let inner = self.inner.lock();
            let (start, end) = (inner.log_start, inner.leo());
            if offset < start || offset > end {
                return Err(out_of_range(offset, start, end));
            }
            if offset == end || offset >= max_offset {
                return Ok(ReadInfo {
                    bytes: Bytes::new(),
                    log_start_offset: start,
                    log_end_offset: end,
                });
            }
            let idx = inner.segment_for(offset);
            let views: Vec<SegmentView> = inner.segments[idx..].iter().map(|s| s.view()).collect();
            (
                views,
                inner.segments[idx].lookup_position(offset),
                start,
                end,
            )
        };
        let mut bytes = Bytes::new();
        for (i, view) in views.iter().enumerate() {
            let pos = if i == 0 { start_pos } else { 0 };
            if let Some(b) =
                segment::read_batches(view, pos, offset, max_bytes, max_offset, min_one_batch)?
            {
                bytes = b;
                break;
            }
        }
        Ok(ReadInfo {
            bytes,
            log_start_offset: log_start,
            log_end_offset: leo,
        })
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.lock().log_start
    }

    pub fn log_end_offset(&self) -> i64 {
        self.leo.load(Ordering::Acquire)
    }

    pub fn size_bytes(&self) -> u64 {
        self.inner.lock().size_bytes()
    }

    /// Earliest offset whose record timestamp is >= `ts`, with that timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let (candidates, log_start) = {
            let inner = self.inner.lock();
            let candidates: Vec<(SegmentView, u64)> = inner
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= ts && s.next_offset > inner.log_start)
                .map(|s| (s.view(), s.lookup_time_position(ts)))
                .collect();
            (candidates, inner.log_start)
        };
        for (view, pos) in &candidates {
            if let Some(found) = segment::find_by_timestamp(view, *pos, ts, log_start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// `(timestamp, offset)` of the record with the largest timestamp (the earliest such).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let (view, pos, max, log_start) = {
            let inner = self.inner.lock();
            let mut best: Option<&Segment> = None;
            for s in &inner.segments {
                if s.next_offset > inner.log_start
                    && s.max_timestamp >= 0
                    && best.is_none_or(|b| s.max_timestamp > b.max_timestamp)
                {
                    best = Some(s);
                }
            }
            let Some(s) = best else { return Ok(None) };
            (
                s.view(),
                s.lookup_time_position(s.max_timestamp),
                s.max_timestamp,
                inner.log_start,
            )
        };
        Ok(segment::find_by_timestamp(&view, pos, max, log_start)?.map(|(o, t)| (t, o)))
    }

    /// fsyncs every segment and index holding unsynced data and persists the recovery point.
    pub fn flush(&self) -> Result<(), LogError> {
        self.sync_until(i64::MAX, true)
    }

    /// Group commit: returns once every offset below `offset` is durable, sharing one fsync
    /// among concurrent callers.
    pub fn flush_until(&self, offset: i64) -> Result<(), LogError> {
        self.sync_until(offset, false)
    }

    fn sync_until(&self, offset: i64, full: bool) -> Result<(), LogError> {
        loop {
            let mut st = self.flush.lock();
            loop {
                let target = offset.min(self.leo.load(Ordering::Acquire));
                if !full && st.flushed >= target {
                    return Ok(());
                }
                if !st.in_progress {
                    break;
                }
                self.flush_done.wait(&mut st);
            }
            st.in_progress = true;
            let from = st.flushed;
            drop(st);
            let result = self.sync_once(from, full);
            let mut st = self.flush.lock();
            st.in_progress = false;
            if let Ok(Some(reached)) = result {
                st.flushed = st.flushed.max(reached);
            }
            self.flush_done.notify_all();
            drop(st);
            result?;
            if full {
                return Ok(());
            }
        }
    }

    /// One fsync round by the single active flusher. Returns the offset now durable, or `None`
    /// if a truncation raced with it.
    fn sync_once(&self, flushed: i64, full: bool) -> Result<Option<i64>, LogError> {
        let (files, target, generation, sync_dir) = {
            let mut inner = self.inner.lock();
            let target = inner.leo();
            let from = if full {
                inner.persisted_rp.min(flushed)
            } else {
                flushed
            };
            let idx = inner.segment_for(from);
            let mut files = Vec::new();
            for seg in &mut inner.segments[idx..] {
                if full {
                    seg.write_pending_indexes()?;
                    files.push(seg.offset_index.file());
                    files.push(seg.time_index.file());
                }
                files.push(Arc::clone(&seg.log));
            }
            inner.messages_since_flush = 0;
            inner.first_unflushed_ms = None;
            let sync_dir = std::mem::take(&mut inner.dir_dirty);
            (files, target, inner.generation, sync_dir)
        };
        // The expensive part runs without the append lock, so appends continue meanwhile.
        let synced = files
            .iter()
            .try_for_each(|f| {
                f.sync_data()
                    .ctx(|| format!("syncing {}", self.dir.display()))
            })
            .and_then(|()| {
                if sync_dir {
                    checkpoint::sync_dir(&self.dir)
                } else {
                    Ok(())
                }
            });
        let mut inner = self.inner.lock();
        if let Err(e) = synced {
            inner.dir_dirty |= sync_dir;
            return Err(e);
        }
        if inner.generation != generation {
            return Ok(None);
        }
        if full && target > inner.persisted_rp {
            checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, target)?;
            inner.persisted_rp = target;
        }
        Ok(Some(target))
    }

    /// Offset below which everything is durable.
    pub fn flushed_offset(&self) -> i64 {
        self.flush.lock().flushed
    }

    /// flush.ms: flushes if the oldest unflushed append is at least flush.ms old.
    /// Also writes the producer snapshot a segment roll prepared.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        let due = {
            let mut inner = self.inner.lock();
            let log_start = inner.log_start;
            inner.producers.write_prepared(log_start);
            inner
                .first_unflushed_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= inner.config.flush_ms)
        };
        if due {
            self.flush_until(self.log_end_offset())?;
        }
        Ok(())
    }

    /// Deletes closed segments from the front by retention.ms and retention.bytes.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut inner = self.inner.lock();
        let retention_ms = inner.config.retention_ms;
        let retention_bytes = inner.config.retention_bytes;
        let mut deleted = 0;
        if retention_ms >= 0 {
            while inner.segments.len() > 1 {
                let s = &inner.segments[0];
                let ts = if s.max_timestamp >= 0 {
                    s.max_timestamp
                } else {
                    s.modified_ms()
                };
                if now_ms.saturating_sub(ts) <= retention_ms {
                    break;
                }
                self.remove_front_segment(&mut inner)?;
                deleted += 1;
            }
        }
        if retention_bytes >= 0 {
            let mut excess = inner.size_bytes() as i64 - retention_bytes;
            while inner.segments.len() > 1 && excess >= inner.segments[0].size as i64 {
                excess -= inner.segments[0].size as i64;
                self.remove_front_segment(&mut inner)?;
                deleted += 1;
            }
        }
        if deleted > 0 {
            let start = inner.log_start.max(inner.segments[0].base_offset);
            self.set_log_start(&mut inner, start)?;
        }
        Ok(deleted)
    }

    fn remove_front_segment(&self, inner: &mut Inner) -> Result<(), LogError> {
        let seg = inner.segments.remove(0);
        tracing::debug!(dir = %self.dir.display(), base = seg.base_offset, "deleting segment");
        inner.dir_dirty = true;
        seg.remove_files()
    }

    /// Records a new log start offset durably and trims the epoch cache to it.
    fn set_log_start(&self, inner: &mut Inner, start: i64) -> Result<(), LogError> {
        inner.log_start = start;
        checkpoint::write_offset(&self.dir, LOG_START_FILE, start)?;
        if inner.epochs.truncate_from_start(start) {
            inner.epochs.store(&self.dir)?;
        }
        inner.producers.prune(start);
        Ok(())
    }

    /// DeleteRecords: advances the log start offset to `offset`, deleting whole segments below.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let mut inner = self.inner.lock();
        let (start, end) = (inner.log_start, inner.leo());
        if offset < 0 || offset > end {
            return Err(out_of_range(offset, start, end));
        }
        if offset <= start {
            return Ok(start);
        }
        while inner.segments.len() > 1 && inner.segments[1].base_offset <= offset {
            self.remove_front_segment(&mut inner)?;
        }
        self.set_log_start(&mut inner, offset)?;
        Ok(offset)
    }

    /// Removes everything at and above `offset` (a follower diverged from its leader).
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let mut inner = self.inner.lock();
        if offset >= inner.leo() {
            return Ok(());
        }
        inner.generation += 1;
        inner.dir_dirty = true;
        if offset <= inner.log_start {
            // Nothing of the log survives: start over, empty, at `offset`.
            for seg in inner.segments.drain(..) {
                seg.remove_files()?;
            }
            let start = offset.max(0);
            inner.segments.push(Segment::create(&self.dir, start)?);
            inner.producers.reset()?;
            self.set_log_start(&mut inner, start)?;
        } else {
            while inner.segments.len() > 1 && inner.active().base_offset >= offset {
                if let Some(seg) = inner.segments.pop() {
                    seg.remove_files()?;
                }
            }
            inner.active().truncate_to(offset)?;
        }
        let leo = inner.leo();
        if leo < inner.log_start {
            self.set_log_start(&mut inner, leo)?;
        }
        self.leo.store(leo, Ordering::Release);
        if inner.epochs.truncate_from_end(leo) {
            inner.epochs.store(&self.dir)?;
        }
        let Inner {
            producers,
            segments,
            log_start,
            ..
        } = &mut *inner;
        // Drops the snapshots above the new end (durably) and rebuilds from what is left.
        producers.load(segments, *log_start, leo)?;
        if inner.persisted_rp > leo {
            checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, leo)?;
            inner.persisted_rp = leo;
        }
        let mut st = self.flush.lock();
        st.flushed = st.flushed.min(leo);
        Ok(())
    }

    pub fn config(&self) -> LogConfig {
        self.inner.lock().config.clone()
    }

    pub fn update_config(&self, config: LogConfig) {
        self.inner.lock().config = config;
    }

    /// What the log remembers of an idempotent producer.
    pub fn producer_state(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.inner.lock().producers.entry(producer_id).cloned()
    }

    /// Number of producer ids with state in this partition.
    pub fn producer_count(&self) -> usize {
        self.inner.lock().producers.len()
    }

    /// Forgets producers idle for `producer.id.expiration.ms`; returns how many.
    pub fn remove_expired_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.inner
            .lock()
            .producers
            .remove_expired(now_ms, expiration_ms)
    }

    /// Latest leader epoch recorded in the leader-epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.lock().epochs.latest()
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)` for the largest epoch <= `epoch`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let inner = self.inner.lock();
        inner.epochs.end_offset_for(epoch, inner.leo())
    }

    /// Flushes, persists the recovery point and leaves a clean-shutdown marker so the next
    /// open trusts the files instead of scanning them.
    pub fn close(&self) -> Result<(), LogError> {
        self.flush()?;
        let mut inner = self.inner.lock();
        for seg in &mut inner.segments {
            seg.write_pending_indexes()?;
        }
        // The next open then loads the producer state without scanning any batch.
        let (leo, log_start) = (inner.leo(), inner.log_start);
        inner.producers.write_prepared(log_start);
        inner.producers.snapshot_or_warn(leo, log_start);
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .ctx(|| format!("writing {}", marker.display()))?;
        checkpoint::sync_dir(&self.dir)?;
        inner.clean_marker = true;
        Ok(())
    }

    /// Closes file handles and removes the whole partition directory (DeleteTopics).
    pub fn delete(self) -> Result<(), LogError> {
        let Log { dir, inner, .. } = self;
        drop(inner);
        std::fs::remove_dir_all(&dir).ctx(|| format!("removing {}", dir.display()))
    }
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
