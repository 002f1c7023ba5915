//! The partition log: ordered segments, offset assignment, reads, recovery on open,
//! retention, truncation and group-commit durability.
//!
//! Locking: `inner` guards the segment list and is held only for bookkeeping and the write
//! syscall itself, never across an fsync: reads and fsyncs work on cloned file handles
//! outside it. `flush` guards the group-commit state and is never held while taking `inner`.
//! `checkpoints` serialises replacing the checkpoint files (each a temp file, fsync, rename
//! and directory fsync); it is taken before `inner`, never while holding it.
//!
//! Failure: once an fsync (or any write or replacement of the log's files) fails, the log
//! goes offline. It refuses every later append, flush and other mutation with
//! [`LogError::Offline`] rather than retry: after a failed fsync the kernel may already have
//! dropped the data it could not write, so a retry that succeeds proves nothing.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex};

use crate::batch::{self, BatchHeader};
use crate::checkpoint::{
    self, EpochCache, CLEANER_CHECKPOINT_FILE, CLEAN_SHUTDOWN_FILE, LEADER_EPOCH_FILE,
    LOG_START_FILE, RECOVERY_POINT_FILE,
};
use crate::config::{LogConfig, TimestampType};
use crate::error::IoContext;
use crate::fs::{Fs, LogFile, OpenMode};
use crate::index::remove_if_exists;
use crate::producer_state::{write_snapshot_file, Admission, ProducerEntry, ProducerStateManager};
use crate::records;
use crate::segment::{self, Opened, Segment, SegmentView};
use crate::LogError;

/// How many sealed, synced segments keep their `.log` open after a read, so that a consumer
/// reading through old segments does not reopen the file for every fetch. Every other sealed
/// segment holds no file descriptor.
const READ_HANDLES: usize = 8;

/// Written into a partition directory by the broker; not the log's, but expected there.
const BROKER_FILES: [&str; 1] = ["partition.metadata"];

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

/// What [`Log::open`] found and did, for the broker to report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoverySummary {
    /// A clean-shutdown marker was found: the files were trusted and nothing was scanned.
    pub clean_shutdown: bool,
    /// The recovery point read from its checkpoint (unclean opens only).
    pub recovery_point: Option<i64>,
    /// Segments the log holds after opening.
    pub segments: usize,
    /// Segments whose every batch was validated (CRC included).
    pub segments_scanned: usize,
    /// Bytes of the segments that were scanned.
    pub bytes_scanned: u64,
    /// Segments that lost an invalid tail.
    pub segments_truncated: usize,
    /// Bytes cut off invalid tails: data that was never fsynced, or damaged.
    pub bytes_truncated: u64,
    /// Segments whose indexes were rebuilt from the log.
    pub indexes_rebuilt: usize,
    /// Files in the directory that were ignored (not well-formed segment names, or an empty
    /// `.log` inside another segment's offsets). They are left in place, untouched.
    pub ignored_files: Vec<String>,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    /// The directory held no segment yet: the log was created, nothing was recovered.
    pub created: bool,
}

impl RecoverySummary {
    /// Whether recovery ran at all (no clean-shutdown marker).
    pub fn recovery_ran(&self) -> bool {
        !self.clean_shutdown && !self.created
    }
}

/// One partition's log on disk. Internally synchronised; share it behind an `Arc`.
pub struct Log {
    dir: PathBuf,
    fs: Fs,
    inner: Mutex<Inner>,
    /// Mirror of the log end offset, readable without `inner` (group commit needs it while
    /// holding `flush`).
    leo: AtomicI64,
    flush: Mutex<FlushState>,
    flush_done: Condvar,
    /// Held while replacing checkpoint files; see the module comment for the lock order.
    checkpoints: Mutex<()>,
    /// An fsync (or write) failed: see the module comment. `offline_reason` says which.
    offline: AtomicBool,
    offline_reason: Mutex<Option<String>>,
    recovery: RecoverySummary,
    /// Held for a whole compaction pass: one at a time per log.
    cleaning: Mutex<()>,
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
    /// The log start offset changed since its checkpoint was written.
    log_start_dirty: bool,
    /// The epoch cache changed since its checkpoint was written. Appends only set this: the
    /// next flush writes the file (before it advances the recovery point), and recovery
    /// rebuilds the epochs of everything after the recovery point from the batches.
    epochs_dirty: bool,
    /// `close` ran: no more appends or other changes.
    closed: bool,
    /// Recovery point stored in the checkpoint file: everything below it, indexes included,
    /// is on disk, so the next unclean open scans only from the segment holding it.
    persisted_rp: i64,
    /// Bumped by truncation so a flush that raced with it does not claim new data as durable.
    generation: u64,
    /// Base offsets of sealed, synced segments whose `.log` is open for reads, oldest first.
    read_handles: VecDeque<i64>,
    /// Idempotent producers' sequences; checked and updated under this lock with each append.
    producers: ProducerStateManager,
    /// Compaction: where the dirty part starts (its checkpoint file may lag behind).
    first_dirty: i64,
    /// Compaction: when the first tombstone a pass kept may go (`delete.retention.ms`).
    tombstones_due_ms: Option<i64>,
}

struct FlushState {
    in_progress: bool,
    flushed: i64,
}

/// The files one fsync round syncs, and what it may then record.
struct SyncPlan {
    files: Vec<Arc<LogFile>>,
    /// The log end when planned: everything below is durable once the files are synced.
    target: i64,
    generation: u64,
    sync_dir: bool,
    /// Sealed segments wholly synced by this round.
    sealed: Vec<i64>,
    /// Recovery point this round justifies.
    rp: i64,
}

/// What one fsync round covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncKind {
    /// Up to an offset, sharing rounds with concurrent callers (group commit).
    UpTo(i64),
    /// Sealed segments not yet synced (and whatever else is pending), even if every offset
    /// is already flushed: their index files still need it.
    Sealed,
    /// Everything, indexes of the active segment included, then the recovery point.
    Full,
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

    fn position_of(&self, base: i64) -> Option<usize> {
        self.segments
            .binary_search_by_key(&base, |s| s.base_offset)
            .ok()
    }

    fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    fn check_writable(&self, dir: &Path) -> Result<(), LogError> {
        if self.closed {
            return Err(LogError::Offline {
                dir: dir.display().to_string(),
                reason: "the log was closed".into(),
            });
        }
        Ok(())
    }

    /// A view of segment `idx` for reading; opens a sealed segment's file on demand and keeps
    /// at most [`READ_HANDLES`] such files open.
    fn view(&mut self, idx: usize) -> Result<SegmentView, LogError> {
        let pinned = idx + 1 == self.segments.len() || self.segments[idx].dirty;
        let view = self.segments[idx].view()?;
        if !pinned {
            let base = self.segments[idx].base_offset;
            self.read_handles.retain(|&b| b != base);
            self.read_handles.push_back(base);
            while self.read_handles.len() > READ_HANDLES {
                let Some(old) = self.read_handles.pop_front() else {
                    break;
                };
                if let Some(i) = self.position_of(old) {
                    if i + 1 < self.segments.len() && !self.segments[i].dirty {
                        self.segments[i].close_handles();
                    }
                }
            }
        }
        Ok(view)
    }

    /// Segments at `bases` were sealed and are now wholly on disk: they need no open handles
    /// any more; their `.log` stays open as a read handle for a while.
    fn release_synced(&mut self, bases: &[i64]) {
        for &base in bases {
            let Some(i) = self.position_of(base) else {
                continue;
            };
            if i + 1 == self.segments.len() {
                continue;
            }
            self.segments[i].dirty = false;
            self.segments[i].close_handles();
        }
    }

    /// Moves the log start offset (memory only; `write_checkpoints` persists it).
    fn set_log_start(&mut self, start: i64) {
        if start != self.log_start {
            self.log_start = start;
            self.log_start_dirty = true;
        }
        if self.epochs.truncate_from_start(start) {
            self.epochs_dirty = true;
        }
        self.producers.prune(start);
    }

    fn remove_segment(&mut self, idx: usize) -> Result<(), LogError> {
        let mut seg = self.segments.remove(idx);
        self.read_handles.retain(|&b| b != seg.base_offset);
        self.dir_dirty = true;
        seg.remove_files()
    }
}

fn out_of_range(offset: i64, start: i64, end: i64) -> LogError {
    LogError::OffsetOutOfRange { offset, start, end }
}

/// Kinds of files named after a base offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Log,
    Index,
    TimeIndex,
    /// Aborted transactions of a segment.
    TxnIndex,
    /// Producer-state snapshots: not the log's files, but expected beside its segments.
    Snapshot,
}

/// `<20 decimal digits>.<ext>` → (base offset, kind). Anything else — a sign, fewer or more
/// digits, another extension — is not a segment file.
fn parse_segment_name(name: &str) -> Option<(i64, FileKind)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base = stem.parse::<i64>().ok()?;
    let kind = match ext {
        "log" => FileKind::Log,
        "index" => FileKind::Index,
        "timeindex" => FileKind::TimeIndex,
        "txnindex" => FileKind::TxnIndex,
        "snapshot" => FileKind::Snapshot,
        _ => return None,
    };
    Some((base, kind))
}

/// Whether `name` is the temporary file of an interrupted producer-snapshot write.
fn is_snapshot_temp(name: &str) -> bool {
    name.strip_suffix(checkpoint::TMP_SUFFIX)
        .and_then(parse_segment_name)
        .is_some_and(|(_, kind)| kind == FileKind::Snapshot)
}

/// What [`scan_dir`] found.
struct Listing {
    /// Base offsets of the well-formed `.log` files, ascending.
    bases: Vec<i64>,
    /// Names of files that are neither the log's nor expected beside it.
    ignored: Vec<String>,
}

/// Lists the partition directory. Only well-formed segment names are ever used; any other
/// unexpected file is reported and left alone. Leftover temp files of checkpoint writes and
/// index files without a `.log` are the log's own debris and are removed.
fn scan_dir(fs: &Fs, dir: &Path) -> Result<Listing, LogError> {
    let mut bases = Vec::new();
    let mut indexes = Vec::new();
    let mut ignored = Vec::new();
    let mut swaps = Vec::new();
    let names = fs.list(dir).ctx(|| format!("listing {}", dir.display()))?;
    for name in names {
        let Some(name) = name.to_str() else {
            let lossy = name.to_string_lossy().into_owned();
            tracing::warn!(dir = %dir.display(), file = %lossy, "ignoring file with a non-UTF-8 name in partition directory");
            ignored.push(lossy);
            continue;
        };
        if [
            LOG_START_FILE,
            RECOVERY_POINT_FILE,
            LEADER_EPOCH_FILE,
            CLEAN_SHUTDOWN_FILE,
            CLEANER_CHECKPOINT_FILE,
        ]
        .contains(&name)
            || BROKER_FILES.contains(&name)
        {
            continue;
        }
        if let Some(stem) = name.strip_suffix(clean::CLEANED_SUFFIX) {
            if parse_segment_name(stem).is_some() {
                tracing::info!(dir = %dir.display(), file = name, "removing a cleaned segment whose swap never began");
                remove_if_exists(fs, &dir.join(name))?;
                continue;
            }
        }
        if let Some(stem) = name.strip_suffix(clean::SWAP_SUFFIX) {
            if let Some((base, kind)) = parse_segment_name(stem) {
                swaps.push((base, kind, name.to_string()));
                continue;
            }
        }
        if checkpoint::is_atomic_temp(name) || is_snapshot_temp(name) {
            tracing::info!(dir = %dir.display(), file = name, "removing temp file of an interrupted checkpoint write");
            remove_if_exists(fs, &dir.join(name))?;
            continue;
        }
        match parse_segment_name(name) {
            Some((base, FileKind::Log)) => bases.push(base),
            Some((base, FileKind::Index | FileKind::TimeIndex | FileKind::TxnIndex)) => {
                indexes.push((base, name.to_string()))
            }
            Some((_, FileKind::Snapshot)) => {}
            None => {
                tracing::warn!(
                    dir = %dir.display(),
                    file = name,
                    "ignoring unexpected file in partition directory (not a well-formed segment name); leaving it in place"
                );
                ignored.push(name.to_string());
            }
        }
    }
    // A compaction swap whose log file reached `.swap` was committed: finish it. Index
    // `.swap` files without it belong to a swap that never committed.
    let committed: Vec<i64> = swaps
        .iter()
        .filter(|(_, kind, _)| *kind == FileKind::Log)
        .map(|(base, _, _)| *base)
        .collect();
    for (base, _, name) in &swaps {
        if !committed.contains(base) {
            tracing::info!(dir = %dir.display(), file = %name, "removing an index of a compaction swap that never committed");
            remove_if_exists(fs, &dir.join(name))?;
        }
    }
    for &base in &committed {
        tracing::info!(dir = %dir.display(), base, "finishing a compaction swap cut short by a crash");
        clean::finish_swap(fs, dir, base)?;
        if !bases.contains(&base) {
            bases.push(base);
        }
        indexes.retain(|(b, _)| *b != base);
    }
    if !swaps.is_empty() {
        checkpoint::sync_dir(fs, dir)?;
    }
    bases.sort_unstable();
    for (base, name) in indexes {
        if bases.binary_search(&base).is_err() {
            tracing::info!(dir = %dir.display(), file = %name, "removing index file without a segment");
            remove_if_exists(fs, &dir.join(name))?;
        }
    }
    Ok(Listing { bases, ignored })
}

impl Log {
    /// Opens (creating if missing) the partition directory and recovers it.
    pub fn open(dir: impl Into<PathBuf>, config: LogConfig) -> Result<Log, LogError> {
        Log::open_with(Fs::real(), dir.into(), config)
    }

    pub(crate) fn open_with(fs: Fs, dir: PathBuf, config: LogConfig) -> Result<Log, LogError> {
        fs.create_dir_all(&dir)
            .ctx(|| format!("creating {}", dir.display()))?;
        let listing = scan_dir(&fs, &dir)?;
        let fresh = listing.bases.is_empty();
        let marker = dir.join(CLEAN_SHUTDOWN_FILE);
        let clean = fs.exists(&marker);
        // A clean close sets the recovery point to the log end; it is read either way.
        let rp_checkpoint = checkpoint::read_offset(&fs, &dir, RECOVERY_POINT_FILE);
        // Segments from the one holding `rp` onward are scanned.
        let rp = if clean {
            i64::MAX
        } else {
            rp_checkpoint.unwrap_or(0)
        };
        let mut summary = RecoverySummary {
            clean_shutdown: clean,
            created: fresh,
            recovery_point: if clean { None } else { rp_checkpoint },
            ignored_files: listing.ignored,
            ..RecoverySummary::default()
        };
        let interval = config.index_interval_bytes;
        let mut segments: Vec<Segment> = Vec::with_capacity(listing.bases.len().max(1));
        // Per segment: whether it was scanned, and the epochs its batches start.
        let mut scans: Vec<Opened> = Vec::new();
        let mut prev_cut = false;
        for (i, &base) in listing.bases.iter().enumerate() {
            if let Some(prev) = segments.last() {
                if base < prev.next_offset {
                    let path = segment::segment_path(&dir, base, "log");
                    let len = fs
                        .len(&path)
                        .ctx(|| format!("reading size of {}", path.display()))?;
                    if len == 0 || !segment::starts_with_valid_batch(&fs, &path)? {
                        tracing::warn!(
                            dir = %dir.display(),
                            file = %path.display(),
                            bytes = len,
                            previous_segment = prev.base_offset,
                            previous_end = prev.next_offset,
                            "ignoring segment file without a valid batch whose base offset lies inside the previous segment; leaving it in place"
                        );
                        summary.ignored_files.push(format!("{base:020}.log"));
                        continue;
                    }
                    return Err(LogError::Offline {
                        dir: dir.display().to_string(),
                        reason: format!(
                            "segment {} ({len} bytes) starts at offset {base}, inside segment {:020}.log which holds offsets up to {}; \
                             refusing to guess which one is right (move one of them out of the directory)",
                            path.display(),
                            prev.base_offset,
                            prev.next_offset - 1
                        ),
                    });
                }
                if prev_cut && base > prev.next_offset {
                    tracing::warn!(
                        dir = %dir.display(),
                        lost_from = prev.next_offset,
                        lost_to = base - 1,
                        "offsets lost with the damaged tail of the previous segment; the log continues at the next segment"
                    );
                }
            }
            let next_base = listing.bases.get(i + 1).copied().unwrap_or(i64::MAX);
            let (mut seg, mut opened) = Segment::open(&fs, &dir, base, next_base > rp, interval)?;
            if !opened.scanned && seg.next_offset > rp {
                // Trusted by its position, yet holding offsets at or past the recovery point
                // (the file after it was not a real segment): validate it after all.
                opened = seg.rescan(interval)?;
            }
            if opened.scanned {
                summary.segments_scanned += 1;
                summary.bytes_scanned += seg.size + opened.bytes_cut;
            }
            if opened.bytes_cut > 0 {
                summary.segments_truncated += 1;
                summary.bytes_truncated += opened.bytes_cut;
            }
            if opened.rebuilt {
                summary.indexes_rebuilt += 1;
            }
            prev_cut = opened.bytes_cut > 0;
            scans.push(opened);
            segments.push(seg);
        }
        // Make durable what recovery rewrote (cut tails, rebuilt indexes) and what it kept
        // that may still sit only in the page cache (the process died, not the machine).
        for seg in segments.iter().filter(|s| s.dirty) {
            let mut files: Vec<Arc<LogFile>> = Vec::new();
            seg.sync_handles(true, &mut files);
            for f in files {
                f.sync_data()
                    .ctx(|| format!("syncing recovered segment in {}", dir.display()))?;
            }
        }
        // Empty segments hold no offsets, so they may not decide where the log starts or go
        // below where it ended. `floor` is a log end the log is known to have reached: the
        // recovery point and the log start are never written past the log end.
        let log_start_checkpoint = checkpoint::read_offset(&fs, &dir, LOG_START_FILE);
        let floor = rp_checkpoint
            .unwrap_or(0)
            .max(log_start_checkpoint.unwrap_or(0))
            .max(0);
        // Only the last segment may be empty. An empty last one past a gap and beyond `floor`
        // is a roll whose file survived a crash while the data before it did not: nothing
        // from the end of that data on was acknowledged, and taking its base as the log end
        // would leave offsets that hold nothing. One below `floor` is an old leftover (say a
        // truncation that started the log over was cut short after removing the old files).
        // Ignored files are left in place; a roll to that offset reuses one.
        let count = segments.len();
        let mut kept: Vec<(Segment, Opened)> = Vec::with_capacity(count);
        for (i, pair) in segments.into_iter().zip(scans).enumerate() {
            let seg = &pair.0;
            let prev_end = kept.last().map(|(p, _)| p.next_offset);
            let ignore = seg.size == 0
                && (i + 1 < count
                    || seg.base_offset < floor
                    || prev_end.is_some_and(|end| seg.base_offset > end)
                        && seg.base_offset > floor);
            if ignore {
                tracing::warn!(
                    dir = %dir.display(),
                    base = seg.base_offset,
                    "ignoring an empty segment file that is not where the log ends; leaving it in place"
                );
                summary
                    .ignored_files
                    .push(format!("{:020}.log", seg.base_offset));
                continue;
            }
            kept.push(pair);
        }
        let (mut segments, mut scans): (Vec<Segment>, Vec<Opened>) = kept.into_iter().unzip();
        if segments.last().is_none_or(|s| s.next_offset < floor) {
            // Nothing left, or the files end below where the log had reached: go on, empty,
            // from there, so that offsets never go backwards.
            segments.push(Segment::create(&fs, &dir, floor)?);
            scans.push(Opened::default());
        }
        let leo = segments.last().map_or(0, |s| s.next_offset);
        let last = segments.len() - 1;
        for (i, seg) in segments.iter_mut().enumerate() {
            seg.dirty = false;
            if i < last {
                seg.close_handles();
            }
        }

        let first_base = segments[0].base_offset;
        let log_start = log_start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(leo);
        let mut epochs = EpochCache::load(&fs, &dir);
        let mut epochs_changed = false;
        // The epochs of the scanned tail come from its batches: the checkpoint may lag (it is
        // written on flush) or run ahead (of a tail that was cut).
        let tail = scans.iter().rev().take_while(|o| o.scanned).count();
        if tail > 0 {
            // Everything after the trusted prefix is taken from the batches, gaps included.
            let first = segments.len() - tail;
            let from = if first == 0 {
                segments[0].base_offset
            } else {
                segments[first - 1].next_offset
            };
            epochs_changed |= epochs.truncate_from_end(from);
            for opened in &scans[scans.len() - tail..] {
                for &(epoch, offset) in &opened.epoch_starts {
                    epochs_changed |= epochs.assign(epoch, offset);
                }
            }
        }
        epochs_changed |= epochs.truncate_from_end(leo);
        epochs_changed |= epochs.truncate_from_start(log_start);
        if epochs_changed {
            epochs.store(&fs, &dir)?;
        }
        // Idempotent producers' state, from the newest snapshot and the batch headers after
        // it; the directory sync below makes any stale snapshot's removal durable. The
        // transaction indexes of scanned segments are rebuilt on the way.
        let rebuild_from = segments
            .iter()
            .zip(&scans)
            .find(|(_, o)| o.txn_rebuild)
            .map_or(i64::MAX, |(s, _)| s.base_offset);
        let mut producers = ProducerStateManager::new(&fs, &dir);
        producers.load(&mut segments, log_start, leo, rebuild_from)?;
        for (i, seg) in segments.iter_mut().enumerate() {
            if seg.base_offset < rebuild_from || !seg.dirty {
                continue;
            }
            if let Some(f) = seg.txn_index.file() {
                f.sync_data()
                    .ctx(|| format!("syncing a rebuilt transaction index in {}", dir.display()))?;
            }
            seg.dirty = false;
            if i < last {
                seg.close_handles();
            }
        }
        // The recovery point moves to the log end, once the rebuilt transaction indexes are
        // on disk; rewriting an unchanged one (or writing a first one for an empty log,
        // whose recovery scans nothing) would only cost fsyncs.
        if rp_checkpoint != Some(leo) && !(rp_checkpoint.is_none() && leo == 0) {
            checkpoint::sync_dir(&fs, &dir)?;
            checkpoint::write_offset(&fs, &dir, RECOVERY_POINT_FILE, leo)?;
        }
        // Removing the marker must be durable before any new append, or a later crash would
        // be mistaken for a clean shutdown. The directory sync also covers files recovery
        // created (a first segment, rebuilt index files).
        remove_if_exists(&fs, &marker)?;
        checkpoint::sync_dir(&fs, &dir)?;

        let first_dirty = checkpoint::read_offset(&fs, &dir, CLEANER_CHECKPOINT_FILE)
            .unwrap_or(log_start)
            .clamp(log_start, leo);
        summary.segments = segments.len();
        summary.log_start_offset = log_start;
        summary.log_end_offset = leo;
        if fresh {
            tracing::debug!(dir = %dir.display(), "created an empty log");
        } else if clean {
            tracing::debug!(dir = %dir.display(), log_start, leo, segments = segments.len(), "log opened after a clean shutdown");
        } else {
            tracing::info!(
                dir = %dir.display(),
                recovery_point = ?rp_checkpoint,
                segments = summary.segments,
                segments_scanned = summary.segments_scanned,
                bytes_scanned = summary.bytes_scanned,
                bytes_truncated = summary.bytes_truncated,
                log_start,
                leo,
                "log recovered after an unclean shutdown"
            );
        }
        if summary.bytes_truncated > 0 {
            tracing::warn!(
                dir = %dir.display(),
                segments_truncated = summary.segments_truncated,
                bytes_truncated = summary.bytes_truncated,
                "recovery cut invalid segment tails (data that was never fsynced, or damaged)"
            );
        }
        Ok(Log {
            dir,
            fs,
            inner: Mutex::new(Inner {
                config,
                segments,
                log_start,
                epochs,
                messages_since_flush: 0,
                first_unflushed_ms: None,
                dir_dirty: false,
                log_start_dirty: false,
                epochs_dirty: false,
                closed: false,
                persisted_rp: leo,
                generation: 0,
                read_handles: VecDeque::new(),
                producers,
                first_dirty,
                tombstones_due_ms: None,
            }),
            leo: AtomicI64::new(leo),
            flush: Mutex::new(FlushState {
                in_progress: false,
                flushed: leo,
            }),
            flush_done: Condvar::new(),
            checkpoints: Mutex::new(()),
            offline: AtomicBool::new(false),
            offline_reason: Mutex::new(None),
            recovery: summary,
            cleaning: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What opening the log found and did.
    pub fn recovery_summary(&self) -> &RecoverySummary {
        &self.recovery
    }

    /// Whether an fsync or write failed: the log refuses all writes until it is reopened.
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::Acquire)
    }

    fn offline_error(&self) -> LogError {
        let reason = self
            .offline_reason
            .lock()
            .clone()
            .unwrap_or_else(|| "storage failure".into());
        LogError::Offline {
            dir: self.dir.display().to_string(),
            reason: format!(
                "{reason}; the log accepts no more writes or flushes until it is reopened"
            ),
        }
    }

    fn check_online(&self) -> Result<(), LogError> {
        if self.offline.load(Ordering::Acquire) {
            return Err(self.offline_error());
        }
        Ok(())
    }

    /// Takes the log offline because of `cause` (an I/O failure) and returns the error to report.
    fn go_offline(&self, cause: LogError) -> LogError {
        {
            let mut reason = self.offline_reason.lock();
            if reason.is_none() {
                tracing::error!(dir = %self.dir.display(), error = %cause, "log storage failed; taking the log offline for writes");
                *reason = Some(cause.to_string());
            }
        }
        self.offline.store(true, Ordering::Release);
        self.offline_error()
    }

    /// I/O errors on a write path take the log offline; others (bad input) pass through.
    fn fail(&self, e: LogError) -> LogError {
        match e {
            LogError::Io { .. } => self.go_offline(e),
            other => other,
        }
    }

    /// Validates all batches (all or nothing), assigns offsets, stamps the leader epoch (and
    /// LogAppendTime if configured) and appends them byte for byte.
    pub fn append(
        &self,
        batches: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_online()?;
        let (max, compact, target_codec) = {
            let inner = self.inner.lock();
            let c = &inner.config;
            (c.max_message_bytes, c.compact, c.compression)
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
            if h.is_control() {
                return Err(LogError::InvalidRecord(
                    "Clients are not allowed to write control records".into(),
                ));
            }
            if h.is_transactional() && h.producer_id < 0 {
                return Err(LogError::InvalidRecord(
                    "A transactional batch must carry a producer id".into(),
                ));
            }
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
                let partition = self.dir.file_name().map(|n| n.to_string_lossy());
                return Err(LogError::InvalidRecords {
                    message: format!(
                        "Compacted topic cannot accept message without key in topic partition {}.",
                        partition.unwrap_or_default()
                    ),
                    indexes: summary.null_key_indexes,
                });
            }
            record_max_ts.push(summary.max_timestamp);
            headers.push((h, range.start));
        }
        if headers.is_empty() {
            return Err(LogError::CorruptBatch("no record batches".into()));
        }
        // The topic's compression.type, where it is not the producer's codec.
        let mut converted;
        let batches: &mut [u8] = match target_codec {
            Some(codec)
                if headers
                    .iter()
                    .any(|(h, _)| !h.is_control() && h.compression() != codec) =>
            {
                let (bytes, placed) = recompress(batches, &headers, codec, max)?;
                converted = bytes;
                headers = placed;
                &mut converted
            }
            _ => batches,
        };
        let count: i64 = headers
            .iter()
            .map(|(h, _)| h.last_offset_delta as i64 + 1)
            .sum();

        let mut inner = self.inner.lock();
        inner.check_writable(&self.dir)?;
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
        )
        .map_err(|e| self.fail(e))?;
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
        self.write_batches(&mut inner, batches, &headers, now_ms)
            .map_err(|e| self.fail(e))?;
        inner.producers.commit(updated);
        if inner.epochs.assign(leader_epoch, base) {
            inner.epochs_dirty = true;
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
        self.check_online()?;
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
        inner.check_writable(&self.dir)?;
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
        )
        .map_err(|e| self.fail(e))?;
        self.write_batches(&mut inner, batches, &headers, now_ms)
            .map_err(|e| self.fail(e))?;
        for (h, start) in &headers {
            let marker = if h.is_control() {
                // Validated by the leader that wrote it: unreadable means damaged in transit
                // past the CRC, which cannot happen; refuse the copy rather than guess.
                Some(crate::txn::read_marker(
                    &batches[*start..*start + h.total_len()],
                    h,
                )?)
            } else {
                None
            };
            if let Some(aborted) = inner.producers.replay(h, marker) {
                self.record_aborted(&mut inner, aborted)
                    .map_err(|e| self.fail(e))?;
            }
            if inner.epochs.assign(h.partition_leader_epoch, h.base_offset) {
                inner.epochs_dirty = true;
            }
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

    /// Appends the marker that ends producer `producer_id`'s transaction (WriteTxnMarkers),
    /// as the leader in `leader_epoch`. A marker from an older producer epoch or an older
    /// coordinator is refused.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: crate::txn::Marker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.check_online()?;
        let mut bytes = crate::txn::marker_batch(producer_id, producer_epoch, marker, now_ms);
        let mut inner = self.inner.lock();
        inner.check_writable(&self.dir)?;
        inner
            .producers
            .check_marker(producer_id, producer_epoch, marker)?;
        let offset = inner.leo();
        self.maybe_roll(&mut inner, bytes.len() as u64, now_ms, offset, offset)
            .map_err(|e| self.fail(e))?;
        batch::set_base_offset(&mut bytes, offset);
        batch::set_leader_epoch(&mut bytes, leader_epoch);
        let mut h = BatchHeader::parse(&bytes)?;
        h.base_offset = offset;
        h.partition_leader_epoch = leader_epoch;
        self.write_batches(&mut inner, &bytes, &[(h, 0)], now_ms)
            .map_err(|e| self.fail(e))?;
        if let Some(aborted) =
            inner
                .producers
                .complete_txn(producer_id, producer_epoch, offset, marker)
        {
            self.record_aborted(&mut inner, aborted)
                .map_err(|e| self.fail(e))?;
        }
        if inner.epochs.assign(leader_epoch, offset) {
            inner.epochs_dirty = true;
        }
        Ok(AppendInfo {
            base_offset: offset,
            last_offset: offset,
            log_append_time: -1,
            log_start_offset: inner.log_start,
        })
    }

    /// Adds an aborted transaction to the index of the active segment, which holds its
    /// marker. A first entry creates the index file, whose name the next flush makes
    /// durable with the directory.
    fn record_aborted(
        &self,
        inner: &mut Inner,
        aborted: crate::txn::AbortedTxn,
    ) -> Result<(), LogError> {
        let active = inner.active();
        let first = active.txn_index.entries().is_empty();
        active.push_aborted(aborted)?;
        if first {
            inner.dir_dirty = true;
        }
        Ok(())
    }

    /// The last stable offset for a high watermark of `high_watermark`: read_committed
    /// consumers read below it.
    pub fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        let mut inner = self.inner.lock();
        inner
            .producers
            .first_unstable(high_watermark)
            .map_or(high_watermark, |u| u.min(high_watermark))
    }

    /// The aborted transactions a read of `[from, to)` overlaps, oldest first: what a
    /// read_committed fetch returns beside the records so the consumer drops theirs.
    pub fn aborted_txns(&self, from: i64, to: i64) -> Vec<crate::txn::AbortedTxn> {
        let inner = self.inner.lock();
        let mut out = Vec::new();
        for seg in &inner.segments[inner.segment_for(from)..] {
            for t in seg.txn_index.entries() {
                if t.last_offset >= from && t.first_offset < to {
                    out.push(*t);
                }
                // Every transaction begun below `to` had ended when this one did.
                if t.last_stable_offset >= to {
                    return out;
                }
            }
        }
        out
    }

    /// Every producer this partition remembers: `(id, state)` (DescribeProducers).
    pub fn producer_states(&self) -> Vec<(i64, ProducerEntry)> {
        let inner = self.inner.lock();
        inner
            .producers
            .producers()
            .map(|(id, e)| (id, e.clone()))
            .collect()
    }

    /// Rolls to a new segment starting at `first_offset` when the active one is full by
    /// segment.bytes, old by segment.ms, has a full index, or cannot express the offsets.
    /// Nothing is fsynced here: the sealed segment keeps its handles open until a flush
    /// syncs it (and the directory, for the new file's name) outside the append lock.
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
                let seg = Segment::create(&self.fs, &self.dir, first_offset)?;
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
            let seg = Segment::create(&self.fs, &self.dir, first_offset)?;
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
        let (mut view, mut pos, log_start, leo) = {
            let mut inner = self.inner.lock();
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
            let pos = inner.segments[idx].lookup_position(offset);
            (inner.view(idx)?, pos, start, end)
        };
        let mut bytes = Bytes::new();
        loop {
            if let Some(b) =
                segment::read_batches(&view, pos, offset, max_bytes, max_offset, min_one_batch)?
            {
                bytes = b;
                break;
            }
            // Nothing at or after `offset` in this segment: go on with the next one, if any.
            let next = {
                let mut inner = self.inner.lock();
                let idx = inner
                    .segments
                    .partition_point(|s| s.base_offset <= view.base_offset);
                if idx == inner.segments.len() {
                    None
                } else {
                    Some(inner.view(idx)?)
                }
            };
            match next {
                Some(v) => {
                    view = v;
                    pos = 0;
                }
                None => break,
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

    /// View of the segment with base offset `base`, if it still exists.
    fn view_of(&self, base: i64) -> Result<Option<SegmentView>, LogError> {
        let mut inner = self.inner.lock();
        match inner.position_of(base) {
            Some(i) => Ok(Some(inner.view(i)?)),
            None => Ok(None),
        }
    }

    /// Earliest offset whose record timestamp is >= `ts`, with that timestamp.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let (candidates, log_start) = {
            let inner = self.inner.lock();
            let candidates: Vec<i64> = inner
                .segments
                .iter()
                .filter(|s| s.max_timestamp >= ts && s.next_offset > inner.log_start)
                .map(|s| s.base_offset)
                .collect();
            (candidates, inner.log_start)
        };
        for base in candidates {
            // The position and the file together: compaction may have replaced the
            // segment since the candidates were listed, and a position in the old file
            // means nothing in the new one.
            let (view, pos) = {
                let mut inner = self.inner.lock();
                let Some(i) = inner.position_of(base) else {
                    continue;
                };
                let pos = inner.segments[i].lookup_time_position(ts);
                (inner.view(i)?, pos)
            };
            if let Some(found) = segment::find_by_timestamp(&view, pos, ts, log_start)? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// `(timestamp, offset)` of the record with the largest timestamp (the earliest such).
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let (view, pos, max, log_start) = {
            let mut inner = self.inner.lock();
            let mut best: Option<usize> = None;
            for (i, s) in inner.segments.iter().enumerate() {
                if s.next_offset > inner.log_start
                    && s.max_timestamp >= 0
                    && best.is_none_or(|b| s.max_timestamp > inner.segments[b].max_timestamp)
                {
                    best = Some(i);
                }
            }
            let Some(i) = best else { return Ok(None) };
            let s = &inner.segments[i];
            let (pos, max) = (s.lookup_time_position(s.max_timestamp), s.max_timestamp);
            (inner.view(i)?, pos, max, inner.log_start)
        };
        Ok(segment::find_by_timestamp(&view, pos, max, log_start)?.map(|(o, t)| (t, o)))
    }

    /// fsyncs every segment and index holding unsynced data and persists the recovery point.
    pub fn flush(&self) -> Result<(), LogError> {
        self.sync_until(SyncKind::Full)
    }

    /// Group commit: returns once every offset below `offset` is durable, sharing one fsync
    /// among concurrent callers. An error means nothing new may be assumed durable; after one,
    /// the log is offline and every later call fails too.
    pub fn flush_until(&self, offset: i64) -> Result<(), LogError> {
        self.sync_until(SyncKind::UpTo(offset))
    }

    fn sync_until(&self, kind: SyncKind) -> Result<(), LogError> {
        loop {
            // A failed fsync is never retried: the data it covered may be gone from the page
            // cache already, so a later fsync that succeeds would prove nothing.
            self.check_online()?;
            let mut st = self.flush.lock();
            loop {
                if let SyncKind::UpTo(offset) = kind {
                    let target = offset.min(self.leo.load(Ordering::Acquire));
                    if st.flushed >= target {
                        return Ok(());
                    }
                }
                if !st.in_progress {
                    break;
                }
                self.flush_done.wait(&mut st);
            }
            self.check_online()?;
            st.in_progress = true;
            let from = st.flushed;
            drop(st);
            let result = self.sync_once(from, kind);
            let mut st = self.flush.lock();
            st.in_progress = false;
            if let Ok(Some(reached)) = result {
                st.flushed = st.flushed.max(reached);
            }
            self.flush_done.notify_all();
            drop(st);
            result?;
            if !matches!(kind, SyncKind::UpTo(_)) {
                return Ok(());
            }
        }
    }

    /// One fsync round by the single active flusher. Returns the offset now durable, or `None`
    /// if a truncation raced with it.
    fn sync_once(&self, flushed: i64, kind: SyncKind) -> Result<Option<i64>, LogError> {
        let SyncPlan {
            files,
            target,
            generation,
            sync_dir,
            sealed,
            rp,
        } = self
            .plan_sync(flushed, kind == SyncKind::Full)
            .map_err(|e| self.fail(e))?;
        // The expensive part runs without the append lock, so appends continue meanwhile.
        let synced = files
            .iter()
            .try_for_each(|f| {
                f.sync_data()
                    .ctx(|| format!("syncing a segment of {}", self.dir.display()))
            })
            .and_then(|()| {
                if sync_dir {
                    checkpoint::sync_dir(&self.fs, &self.dir)
                } else {
                    Ok(())
                }
            });
        if let Err(e) = synced {
            return Err(self.go_offline(e));
        }
        {
            let mut inner = self.inner.lock();
            if inner.generation != generation {
                return Ok(None);
            }
            inner.release_synced(&sealed);
        }
        self.write_checkpoints(Some((generation, rp)))?;
        Ok(Some(target))
    }

    /// Under the append lock: what one fsync round covers. Writes pending index entries of
    /// the segments concerned (a write, not an fsync).
    fn plan_sync(&self, flushed: i64, full: bool) -> Result<SyncPlan, LogError> {
        let mut inner = self.inner.lock();
        let target = inner.leo();
        let last = inner.segments.len() - 1;
        let mut idx = if full { 0 } else { inner.segment_for(flushed) };
        // A segment that was active during the previous round and sealed since still has
        // index bytes to sync.
        while idx > 0 && inner.segments[idx - 1].dirty {
            idx -= 1;
        }
        let mut files = Vec::new();
        let mut sealed = Vec::new();
        for i in idx..=last {
            let seg = &mut inner.segments[i];
            if i < last {
                if !seg.dirty {
                    continue;
                }
                seg.write_pending_indexes()?;
                seg.sync_handles(true, &mut files);
                sealed.push(seg.base_offset);
            } else {
                if full {
                    seg.write_pending_indexes()?;
                }
                seg.sync_handles(full, &mut files);
            }
        }
        inner.messages_since_flush = 0;
        inner.first_unflushed_ms = None;
        // The recovery point may move up to what this round makes durable, indexes included:
        // all of it for a full round, else up to the active segment (whose index is not
        // synced). Recovery scans whole segments from the one holding it.
        let rp = if full {
            target
        } else {
            inner.segments[last].base_offset.min(target)
        };
        Ok(SyncPlan {
            files,
            target,
            generation: inner.generation,
            sync_dir: std::mem::take(&mut inner.dir_dirty),
            sealed,
            rp,
        })
    }

    /// Writes the checkpoint files that lag behind memory: the leader epochs and the log start
    /// offset, then the recovery point `rp` if it is still current (same truncation
    /// generation) and higher than the stored one. Runs outside the append lock.
    fn write_checkpoints(&self, rp: Option<(u64, i64)>) -> Result<(), LogError> {
        let _guard = self.checkpoints.lock();
        self.write_checkpoints_locked(rp)
    }

    /// [`Self::write_checkpoints`] for a caller already holding `checkpoints`.
    fn write_checkpoints_locked(&self, rp: Option<(u64, i64)>) -> Result<(), LogError> {
        let (epochs, log_start, rp) = {
            let mut inner = self.inner.lock();
            let epochs = std::mem::take(&mut inner.epochs_dirty).then(|| inner.epochs.clone());
            let log_start = std::mem::take(&mut inner.log_start_dirty).then_some(inner.log_start);
            let rp = rp
                .filter(|&(g, rp)| g == inner.generation && rp > inner.persisted_rp)
                .map(|(_, rp)| rp);
            (epochs, log_start, rp)
        };
        // Order matters. The log start first: the epoch cache in memory is already trimmed to
        // it, and a trimmed epoch file next to an old log start would have lost the epochs of
        // offsets that are still readable (open trims the cache to the log start, so the
        // other way round is harmless). The epochs before the recovery point: it must not
        // move past data whose epoch is unrecorded.
        if let Some(start) = log_start {
            checkpoint::write_offset(&self.fs, &self.dir, LOG_START_FILE, start)
                .map_err(|e| self.go_offline(e))?;
        }
        if let Some(epochs) = epochs {
            epochs
                .store(&self.fs, &self.dir)
                .map_err(|e| self.go_offline(e))?;
        }
        if let Some(rp) = rp {
            checkpoint::write_offset(&self.fs, &self.dir, RECOVERY_POINT_FILE, rp)
                .map_err(|e| self.go_offline(e))?;
            // Truncation, the only thing lowering it, takes `checkpoints` first.
            let mut inner = self.inner.lock();
            inner.persisted_rp = inner.persisted_rp.max(rp);
        }
        Ok(())
    }

    /// fsyncs the directory if segment files were created or removed since it last was.
    fn sync_dir_if_dirty(&self) -> Result<(), LogError> {
        if std::mem::take(&mut self.inner.lock().dir_dirty) {
            checkpoint::sync_dir(&self.fs, &self.dir).map_err(|e| self.go_offline(e))?;
        }
        Ok(())
    }

    /// Offset below which everything is durable.
    pub fn flushed_offset(&self) -> i64 {
        self.flush.lock().flushed
    }

    /// The flush scheduler's tick. flush.ms: flushes if the oldest unflushed append is at
    /// least flush.ms old. Otherwise, if segments were rolled since the last flush, syncs
    /// them (as Kafka flushes a segment when it rolls), so that they can close their files
    /// and the recovery point moves past them.
    /// An offline log has nothing the tick could do; its failure was reported when it
    /// happened, so the tick stays quiet rather than fail every second.
    pub fn flush_if_due(&self, now_ms: i64) -> Result<(), LogError> {
        if self.is_offline() {
            return Ok(());
        }
        self.write_prepared_snapshot();
        let (due, sealed_dirty) = {
            let inner = self.inner.lock();
            let due = inner
                .first_unflushed_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= inner.config.flush_ms);
            let n = inner.segments.len();
            (due, n >= 2 && inner.segments[n - 2].dirty)
        };
        if due {
            self.flush_until(self.log_end_offset())?;
        } else if sealed_dirty {
            self.sync_until(SyncKind::Sealed)?;
        }
        Ok(())
    }

    /// Writes the producer snapshot a segment roll captured, outside the append lock. A
    /// failure only means a longer rebuild scan after a crash, so it is logged, not raised.
    fn write_prepared_snapshot(&self) {
        let (prepared, generation) = {
            let mut inner = self.inner.lock();
            (inner.producers.take_prepared(), inner.generation)
        };
        let Some((offset, bytes)) = prepared else {
            return;
        };
        if let Err(e) = write_snapshot_file(&self.fs, &self.dir, offset, &bytes) {
            tracing::warn!(dir = %self.dir.display(), offset, error = %e, "could not write producer snapshot");
            return;
        }
        let mut inner = self.inner.lock();
        if inner.generation == generation {
            let log_start = inner.log_start;
            inner.producers.snapshot_written(offset, log_start);
        } else {
            // The log was truncated meanwhile: the snapshot may describe batches that are
            // gone, so it must not survive to be loaded.
            inner.producers.discard_written(offset);
        }
    }

    /// Deletes closed segments from the front by retention.ms and retention.bytes.
    pub fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        self.check_online()?;
        let deleted = self.retain(now_ms).map_err(|e| self.fail(e))?;
        if deleted > 0 {
            self.sync_dir_if_dirty()?;
            self.write_checkpoints(None)?;
        }
        Ok(deleted)
    }

    fn retain(&self, now_ms: i64) -> Result<usize, LogError> {
        let mut inner = self.inner.lock();
        inner.check_writable(&self.dir)?;
        let retention_ms = inner.config.retention_ms;
        let retention_bytes = inner.config.retention_bytes;
        let mut deleted = 0;
        if retention_ms >= 0 {
            while inner.segments.len() > 1 {
                let ts = inner.segments[0].age_ms();
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
            inner.set_log_start(start);
        }
        Ok(deleted)
    }

    fn remove_front_segment(&self, inner: &mut Inner) -> Result<(), LogError> {
        tracing::debug!(dir = %self.dir.display(), base = inner.segments[0].base_offset, "deleting segment");
        inner.remove_segment(0)
    }

    /// DeleteRecords: advances the log start offset to `offset`, deleting whole segments
    /// below. The new start is durable when this returns.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        self.check_online()?;
        let start = {
            let mut inner = self.inner.lock();
            inner.check_writable(&self.dir)?;
            let (start, end) = (inner.log_start, inner.leo());
            if offset < 0 || offset > end {
                return Err(out_of_range(offset, start, end));
            }
            if offset <= start {
                return Ok(start);
            }
            while inner.segments.len() > 1 && inner.segments[1].base_offset <= offset {
                self.remove_front_segment(&mut inner)
                    .map_err(|e| self.fail(e))?;
            }
            inner.set_log_start(offset);
            offset
        };
        self.sync_dir_if_dirty()?;
        self.write_checkpoints(None)?;
        Ok(start)
    }

    /// Removes everything at and above `offset` (a follower diverged from its leader). The
    /// truncation is durable when this returns, so that data appended afterwards can never
    /// meet the removed data again after a crash. Callers must not append concurrently.
    pub fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        self.cut(offset, false)
    }

    /// Empties the log and starts it again, empty, at `offset`, which may lie above its
    /// end: a follower whose log ends below its leader's log start (a new replica of a
    /// partition whose head was deleted, or one that was away longer than retention)
    /// cannot copy what is gone, so it starts where the leader's log does. Its epochs
    /// and producer state go with the records. Durable when this returns.
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            let inner = self.inner.lock();
            return Err(out_of_range(offset, inner.log_start, inner.leo()));
        }
        self.cut(offset, true)
    }

    fn cut(&self, offset: i64, start_over: bool) -> Result<(), LogError> {
        self.check_online()?;
        let _guard = self.checkpoints.lock();
        let (leo, rp, floor) = {
            let inner = self.inner.lock();
            inner.check_writable(&self.dir)?;
            // The log will end at or above this: the base of the segment that keeps the cut
            // (batch boundaries are only known once it is made), or `offset` when the log
            // starts over.
            let floor = if start_over {
                inner.log_start.min(offset)
            } else if offset <= inner.log_start {
                offset.max(0)
            } else {
                let idx = inner
                    .segments
                    .partition_point(|s| s.base_offset < offset)
                    .saturating_sub(1);
                inner.segments[idx].base_offset.min(offset)
            };
            (inner.leo(), inner.persisted_rp, floor)
        };
        if offset >= leo && !start_over {
            // Nothing to cut, but epochs that start at the end hold no record: a replica
            // that led in an epoch without writing must stop announcing it, or its new
            // leader would answer the same divergence forever.
            let mut inner = self.inner.lock();
            if inner.epochs.truncate_from_end(leo) {
                inner.epochs_dirty = true;
            }
            return Ok(());
        }
        // Lower the recovery point first: from here on a crash rescans what follows, and the
        // checkpoint never names an end the log will not have.
        if rp > floor {
            checkpoint::write_offset(&self.fs, &self.dir, RECOVERY_POINT_FILE, floor)
                .map_err(|e| self.go_offline(e))?;
            self.inner.lock().persisted_rp = floor;
        }
        // Compaction has not looked at what will be written above the cut.
        let first_dirty = self.inner.lock().first_dirty;
        if first_dirty > floor {
            checkpoint::write_offset(&self.fs, &self.dir, CLEANER_CHECKPOINT_FILE, floor)
                .map_err(|e| self.go_offline(e))?;
            self.inner.lock().first_dirty = floor;
        }
        let files = self
            .truncate_files(offset, start_over)
            .map_err(|e| self.fail(e))?;
        // The cut must reach the disk before anything new is appended above it.
        let synced = files.iter().try_for_each(|f| {
            f.sync_data()
                .ctx(|| format!("syncing truncated segment of {}", self.dir.display()))
        });
        if let Err(e) = synced {
            return Err(self.go_offline(e));
        }
        self.sync_dir_if_dirty()?;
        // The cut fell on a batch boundary at or below `offset`: the recovery point comes down
        // to the new log end, so that it never claims an end that is not there.
        let (leo, rp) = {
            let inner = self.inner.lock();
            (inner.leo(), inner.persisted_rp)
        };
        // Started over, the log holds nothing below its new end to recover.
        if rp > leo || (start_over && rp != leo) {
            checkpoint::write_offset(&self.fs, &self.dir, RECOVERY_POINT_FILE, leo)
                .map_err(|e| self.go_offline(e))?;
            self.inner.lock().persisted_rp = leo;
        }
        self.write_checkpoints_locked(None)
    }

    /// The in-memory and file part of [`Self::truncate_to`]; returns the handles to fsync.
    fn truncate_files(&self, offset: i64, start_over: bool) -> Result<Vec<Arc<LogFile>>, LogError> {
        let mut inner = self.inner.lock();
        if offset >= inner.leo() && !start_over {
            return Ok(Vec::new());
        }
        inner.generation += 1;
        if start_over {
            // No epoch of the old records describes the new, empty log.
            if inner.epochs.truncate_from_end(i64::MIN) {
                inner.epochs_dirty = true;
            }
        }
        if start_over || offset <= inner.log_start {
            // Nothing of the log survives: start over, empty, at `offset`.
            while !inner.segments.is_empty() {
                let last = inner.segments.len() - 1;
                inner.remove_segment(last)?;
            }
            let start = offset.max(0);
            inner
                .segments
                .push(Segment::create(&self.fs, &self.dir, start)?);
            inner.dir_dirty = true;
            inner.producers.reset()?;
            inner.set_log_start(start);
        } else {
            while inner.segments.len() > 1 && inner.active().base_offset >= offset {
                let last = inner.segments.len() - 1;
                inner.remove_segment(last)?;
            }
            let base = inner.active().base_offset;
            inner.read_handles.retain(|&b| b != base);
            inner.active().truncate_to(offset)?;
        }
        let leo = inner.leo();
        if leo < inner.log_start {
            inner.set_log_start(leo);
        }
        self.leo.store(leo, Ordering::Release);
        if inner.epochs.truncate_from_end(leo) {
            inner.epochs_dirty = true;
        }
        {
            let mut st = self.flush.lock();
            st.flushed = st.flushed.min(leo);
        }
        // Drops the snapshots above the new end and rebuilds from what is left; the caller's
        // directory sync makes the removals durable before anything is appended again.
        let Inner {
            producers,
            segments,
            log_start,
            ..
        } = &mut *inner;
        if producers.load(segments, *log_start, leo, i64::MAX)? {
            inner.dir_dirty = true;
        }
        let mut files = Vec::new();
        inner.active().write_pending_indexes()?;
        inner.active().sync_handles(true, &mut files);
        Ok(files)
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

    /// Whether producer `producer_id` has a transaction open here at epoch `epoch`
    /// (checked on the transactional produce path, without copying its state).
    pub fn has_open_txn(&self, producer_id: i64, epoch: i16) -> bool {
        self.inner
            .lock()
            .producers
            .entry(producer_id)
            .is_some_and(|e| e.epoch == epoch && e.current_txn_first_offset.is_some())
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

    /// Records that `epoch` starts at the log end, before anything is written in it: a
    /// new leader does this at once (as Kafka's does), so that followers whose last epoch
    /// it never wrote in are answered the true divergence rather than none.
    pub fn start_epoch(&self, epoch: i32) {
        let mut inner = self.inner.lock();
        let leo = inner.leo();
        if inner.epochs.assign(epoch, leo) {
            inner.epochs_dirty = true;
        }
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

    /// Stops all writes, flushes, persists the recovery point and leaves a clean-shutdown
    /// marker so the next open trusts the files instead of scanning them. Appends and other
    /// changes fail afterwards. If the flush fails, no marker is written: the next open
    /// recovers.
    pub fn close(&self) -> Result<(), LogError> {
        self.check_online()?;
        {
            let mut inner = self.inner.lock();
            if inner.closed {
                // Closed before; had that failed, the log would be offline.
                return Ok(());
            }
            inner.closed = true;
        }
        self.flush()?;
        // The next open then loads the producer state without scanning any batch. Nothing
        // appends any more, so the snapshots are written without the lock.
        let (snapshots, log_start) = {
            let mut inner = self.inner.lock();
            let leo = inner.leo();
            let mut snapshots: Vec<(i64, Vec<u8>)> =
                inner.producers.take_prepared().into_iter().collect();
            snapshots.push((leo, inner.producers.encode(leo)));
            (snapshots, inner.log_start)
        };
        for (offset, bytes) in snapshots {
            match write_snapshot_file(&self.fs, &self.dir, offset, &bytes) {
                Ok(()) => self
                    .inner
                    .lock()
                    .producers
                    .snapshot_written(offset, log_start),
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), offset, error = %e, "could not write producer snapshot")
                }
            }
        }
        let _guard = self.checkpoints.lock();
        self.write_checkpoints_locked(None)?;
        let marker = self.dir.join(CLEAN_SHUTDOWN_FILE);
        self.fs
            .open(&marker, OpenMode::Truncate)
            .and_then(|f| f.sync_data())
            .ctx(|| format!("writing {}", marker.display()))
            .and_then(|()| checkpoint::sync_dir(&self.fs, &self.dir))
            .map_err(|e| self.go_offline(e))
    }

    /// Closes file handles and removes the whole partition directory (DeleteTopics).
    pub fn delete(self) -> Result<(), LogError> {
        let Log { dir, inner, fs, .. } = self;
        drop(inner);
        fs.remove_dir_all(&dir)
            .ctx(|| format!("removing {}", dir.display()))
    }
}

/// A batch's header and where it starts in a request's bytes.
type Placed = (BatchHeader, usize);

/// `batches` with every batch (but control batches) in codec `codec`, as Kafka's log
/// validator converts to a topic's `compression.type`; with where each batch now starts.
/// A converted batch over `max` bytes is refused, as it would be from a producer, and so
/// is one whose records inflate past `max` on their way to being stored uncompressed.
fn recompress(
    batches: &[u8],
    headers: &[(BatchHeader, usize)],
    codec: u8,
    max: u32,
) -> Result<(Vec<u8>, Vec<Placed>), LogError> {
    let max_bytes = max as usize;
    // Compressing shrinks; only the way to no compression can grow a batch past `max`.
    let input_limit = if codec == 0 {
        max_bytes
    } else {
        max_bytes.saturating_mul(64)
    };
    let mut out = Vec::with_capacity(batches.len());
    let mut placed = Vec::with_capacity(headers.len());
    for (h, start) in headers {
        let data = &batches[*start..*start + h.total_len()];
        let at = out.len();
        if h.is_control() || h.compression() == codec {
            out.extend_from_slice(data);
        } else {
            let b = crate::encode::rebuild(data, h, codec, max_bytes, input_limit, None)?;
            if b.len() > max_bytes {
                return Err(LogError::BatchTooLarge { size: b.len(), max });
            }
            out.extend_from_slice(&b);
        }
        placed.push((BatchHeader::parse(&out[at..])?, at));
    }
    Ok((out, placed))
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

mod clean;
pub use clean::{CleanOptions, CleanStats, Cleanable};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod crash_tests;

#[cfg(test)]
mod txn_tests;
