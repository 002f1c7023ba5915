//! Idempotent-producer state of one partition, as Kafka's ProducerStateManager keeps it:
//! for every producer id its epoch and the metadata of its last few batches, so that a
//! retried batch is answered with its original offset and a sequence gap is refused.
//!
//! The state is derived from the log: on open it is rebuilt from the newest valid
//! `<offset>.snapshot` file at or below the log end plus the batch headers after it (no
//! record is ever decompressed). Snapshots are written when a segment rolls and at clean
//! close. They only make the rebuild shorter: a missing or corrupt snapshot costs a longer
//! header scan, never correctness, so snapshot trouble is logged and never fatal.
//!
//! Transactions are tracked here too: each producer's open transaction (its first
//! offset), so that the partition knows its last stable offset, and the markers that end
//! them, so that aborted transactions enter the segment's transaction index.
//!
//! Snapshot format (all integers big-endian):
//!
//! ```text
//! magic "FJPS" | version u16 = 2 | crc32c u32 of every byte after it | offset i64
//! | producer count u32 | per producer: id i64, epoch i16, last timestamp i64,
//!   batch count u8, per batch: first seq i32, last seq i32, first offset i64,
//!   last offset delta i32, timestamp i64;
//!   then open transaction's first offset i64 (-1: none), coordinator epoch i32
//! ```
//!
//! Version 1 (without the last two fields) is still read.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::batch::BatchHeader;
use crate::checkpoint;
use crate::error::IoContext;
use crate::fs::Fs;
use crate::segment::{FileWindow, Segment};
use crate::txn::{self, AbortedTxn, Marker};
use crate::LogError;

/// Kafka keeps the last five batches per producer: a producer has at most five requests in
/// flight (`max.in.flight.requests.per.connection`), so any retry is one of them.
pub const PRODUCER_BATCH_CACHE: usize = 5;
/// Snapshots kept on disk. More than one so a corrupt newest one still leaves a short scan.
const SNAPSHOTS_KEPT: usize = 3;
const SNAPSHOT_EXT: &str = "snapshot";
const SNAPSHOT_MAGIC: &[u8; 4] = b"FJPS";
const SNAPSHOT_VERSION: u16 = 2;
/// magic + version + crc.
const SNAPSHOT_PREFIX: usize = 10;
const BATCH_META_LEN: usize = 28;
/// Read size when walking headers to rebuild the state.
const SCAN_CHUNK: usize = 64 << 10;

/// Where one of a producer's recent batches landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset_delta: i32,
    /// The batch's max timestamp (the append time on LogAppendTime topics).
    pub timestamp: i64,
}

impl BatchMetadata {
    pub fn last_offset(&self) -> i64 {
        self.first_offset + self.last_offset_delta as i64
    }
}

/// What the partition remembers of one producer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The latest batches of the current epoch, oldest first, at most [`PRODUCER_BATCH_CACHE`].
    pub batches: VecDeque<BatchMetadata>,
    /// Timestamp of the latest batch; expiration counts from it.
    pub last_timestamp: i64,
    /// First offset of the producer's transaction open in this partition, if any.
    pub current_txn_first_offset: Option<i64>,
    /// Epoch of the coordinator that wrote this producer's latest marker (-1: none yet):
    /// a marker from an older coordinator is refused.
    pub coordinator_epoch: i32,
}

impl ProducerEntry {
    fn new(epoch: i16) -> ProducerEntry {
        ProducerEntry {
            epoch,
            batches: VecDeque::new(),
            last_timestamp: -1,
            current_txn_first_offset: None,
            coordinator_epoch: -1,
        }
    }

    fn add(&mut self, epoch: i16, meta: BatchMetadata) {
        if epoch != self.epoch {
            // Sequences are per epoch: the old epoch's batches can no longer be retried.
            self.epoch = epoch;
            self.batches.clear();
        }
        self.batches.push_back(meta);
        while self.batches.len() > PRODUCER_BATCH_CACHE {
            self.batches.pop_front();
        }
        self.last_timestamp = meta.timestamp;
    }

    fn duplicate_of(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }
}

/// Sequence of the last record of a batch. Sequences wrap from `i32::MAX` to 0, not to a
/// negative number, as Kafka's producer numbers them.
pub fn last_sequence(base_sequence: i32, last_offset_delta: i32) -> i32 {
    if base_sequence > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - base_sequence) - 1
    } else {
        base_sequence + last_offset_delta
    }
}

fn next_sequence(last: i32) -> i32 {
    if last == i32::MAX {
        0
    } else {
        last + 1
    }
}

/// Whether a batch header carries idempotent-producer sequence numbers.
fn is_idempotent(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && h.base_sequence >= 0 && !h.is_control()
}

fn metadata(h: &BatchHeader, first_offset: i64, timestamp: i64) -> BatchMetadata {
    BatchMetadata {
        first_seq: h.base_sequence,
        last_seq: last_sequence(h.base_sequence, h.last_offset_delta),
        first_offset,
        last_offset_delta: h.last_offset_delta,
        timestamp,
    }
}

/// The verdict on a client's append.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Append; once written, record these updated producer entries.
    Append(HashMap<i64, ProducerEntry>),
    /// A retry of a batch already in the log: answer with where it landed, append nothing.
    Duplicate(BatchMetadata),
}

pub(crate) struct ProducerStateManager {
    fs: Fs,
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
    /// Offsets of the snapshot files on disk.
    snapshots: BTreeSet<i64>,
    /// A snapshot taken at a segment roll, encoded, waiting to be written off the append path.
    prepared: Option<(i64, Vec<u8>)>,
    /// Open transactions: first offset → producer id.
    ongoing: BTreeMap<i64, i64>,
    /// Transactions whose marker is written but maybe not yet replicated: marker offset →
    /// first offset. They keep the last stable offset down until the high watermark passes
    /// their marker, as in Kafka, so read_committed never reads a transaction's records
    /// before its outcome is on every in-sync replica.
    unreplicated: BTreeMap<i64, i64>,
}

pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_EXT}"))
}

impl ProducerStateManager {
    pub fn new(fs: &Fs, dir: &Path) -> ProducerStateManager {
        ProducerStateManager {
            fs: fs.clone(),
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            snapshots: BTreeSet::new(),
            prepared: None,
            ongoing: BTreeMap::new(),
            unreplicated: BTreeMap::new(),
        }
    }

    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// The last offsets of the batches each producer's state remembers. The log cleaner
    /// keeps these batches whole, so that state rebuilt from the log alone still knows each
    /// producer's latest sequence.
    pub fn remembered_batches(&self) -> std::collections::HashSet<i64> {
        self.producers
            .values()
            .flat_map(|p| p.batches.iter().map(BatchMetadata::last_offset))
            .collect()
    }

    /// Decides whether a client's batches may be appended, given the offset the first one
    /// will get. `append_time` is the stamped time on LogAppendTime topics. Nothing changes
    /// until the caller has written the batches and passes the verdict to [`Self::commit`].
    pub fn check<'a>(
        &self,
        headers: impl IntoIterator<Item = &'a BatchHeader>,
        base_offset: i64,
        append_time: Option<i64>,
    ) -> Result<Admission, LogError> {
        let mut updated: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut offset = base_offset;
        for h in headers {
            let first_offset = offset;
            offset += h.last_offset_delta as i64 + 1;
            if h.is_transactional() && h.base_sequence < 0 && h.producer_id >= 0 {
                // A coordinator's own transactional write (offsets sent to a transaction):
                // no sequence to check, only the transaction to open.
                let pid = h.producer_id;
                let current = updated.get(&pid).or_else(|| self.producers.get(&pid));
                if let Some(e) = current.filter(|e| h.producer_epoch < e.epoch) {
                    return Err(LogError::InvalidProducerEpoch(format!(
                        "Epoch {} of producer {pid} is older than its current epoch {}",
                        h.producer_epoch, e.epoch
                    )));
                }
                let mut entry = current
                    .cloned()
                    .unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
                entry.epoch = entry.epoch.max(h.producer_epoch);
                entry.current_txn_first_offset.get_or_insert(first_offset);
                updated.insert(pid, entry);
                continue;
            }
            if !is_idempotent(h) {
                continue;
            }
            let pid = h.producer_id;
            let current = updated.get(&pid).or_else(|| self.producers.get(&pid));
            let last_seq = last_sequence(h.base_sequence, h.last_offset_delta);
            if let Some(dup) =
                current.and_then(|e| e.duplicate_of(h.producer_epoch, h.base_sequence, last_seq))
            {
                return Ok(Admission::Duplicate(dup));
            }
            if let Some(e) = current {
                check_sequence(pid, e, h)?;
            }
            // An unknown producer id (new, or its state expired) may start at any sequence:
            // since KIP-360 Kafka accepts it rather than answering UNKNOWN_PRODUCER_ID.
            let mut entry = current
                .cloned()
                .unwrap_or_else(|| ProducerEntry::new(h.producer_epoch));
            if h.is_transactional() {
                entry.current_txn_first_offset.get_or_insert(first_offset);
            } else if let Some(open) = entry.current_txn_first_offset {
                return Err(LogError::InvalidTxnState(format!(
                    "Expected a transactional write from producer {pid}, whose transaction \
                     from offset {open} is still open"
                )));
            }
            let ts = append_time.unwrap_or(h.max_timestamp);
            entry.add(h.producer_epoch, metadata(h, first_offset, ts));
            updated.insert(pid, entry);
        }
        Ok(Admission::Append(updated))
    }

    /// Records the entries of an append that [`Self::check`] admitted and that is now written.
    pub fn commit(&mut self, updated: HashMap<i64, ProducerEntry>) {
        for (&pid, e) in &updated {
            if let Some(first) = e.current_txn_first_offset {
                self.ongoing.insert(first, pid);
            }
        }
        self.producers.extend(updated);
    }

    /// Records a batch already in the log (a follower's copy, or the rebuild scan): the
    /// leader validated it, so nothing is refused here. A control batch comes with its
    /// marker; the aborted transaction it ends, if any, is returned for the segment's index.
    pub fn replay(&mut self, h: &BatchHeader, marker: Option<Marker>) -> Option<AbortedTxn> {
        if let (true, Some(m)) = (h.is_control(), marker) {
            return self.complete_txn(h.producer_id, h.producer_epoch, h.base_offset, m);
        }
        let coordinator_write = h.is_transactional() && h.producer_id >= 0 && !h.is_control();
        if !is_idempotent(h) && !coordinator_write {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry::new(h.producer_epoch));
        if is_idempotent(h) {
            entry.add(
                h.producer_epoch,
                metadata(h, h.base_offset, h.max_timestamp),
            );
        } else {
            entry.epoch = entry.epoch.max(h.producer_epoch);
        }
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        None
    }

    /// Whether a coordinator may end producer `pid`'s transaction with epoch `epoch`: a
    /// marker from an older producer epoch, or from an older coordinator, is refused.
    pub fn check_marker(&self, pid: i64, epoch: i16, marker: Marker) -> Result<(), LogError> {
        let Some(e) = self.producers.get(&pid) else {
            return Ok(());
        };
        if epoch < e.epoch {
            return Err(LogError::InvalidProducerEpoch(format!(
                "Transaction marker epoch {epoch} of producer {pid} is older than its current \
                 epoch {}",
                e.epoch
            )));
        }
        if marker.coordinator_epoch < e.coordinator_epoch {
            return Err(LogError::CoordinatorFenced(format!(
                "Transaction marker for producer {pid} from coordinator epoch {} is older than \
                 the last one seen, {}",
                marker.coordinator_epoch, e.coordinator_epoch
            )));
        }
        Ok(())
    }

    /// Ends producer `pid`'s open transaction with the marker written at `offset`. An
    /// abort returns the entry for the transaction index of the marker's segment.
    pub fn complete_txn(
        &mut self,
        pid: i64,
        epoch: i16,
        offset: i64,
        marker: Marker,
    ) -> Option<AbortedTxn> {
        let entry = self
            .producers
            .entry(pid)
            .or_insert_with(|| ProducerEntry::new(epoch));
        if epoch != entry.epoch {
            // A coordinator that bumped the epoch to abort (a timeout, a fenced producer):
            // the old epoch's batches can no longer be retried.
            entry.epoch = epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = entry.coordinator_epoch.max(marker.coordinator_epoch);
        let first = entry.current_txn_first_offset.take()?;
        self.ongoing.remove(&first);
        // Still unstable until the marker itself is replicated (see `first_unstable`).
        self.unreplicated.insert(offset, first);
        if marker.commit {
            return None;
        }
        let last_stable_offset = self
            .ongoing
            .keys()
            .next()
            .copied()
            .unwrap_or(offset + 1)
            .min(offset + 1);
        Some(AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: offset,
            last_stable_offset,
        })
    }

    /// The first offset a read_committed consumer may not read yet, given the high
    /// watermark: the start of the oldest transaction that is open, or whose marker is not
    /// yet below the high watermark (Kafka's first unstable offset). `None` when there is
    /// none; the last stable offset is then the high watermark.
    pub fn first_unstable(&mut self, high_watermark: i64) -> Option<i64> {
        // Markers now below the high watermark are on every in-sync replica.
        self.unreplicated = self.unreplicated.split_off(&high_watermark);
        let open = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.values().min().copied();
        match (open, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The first offset of the oldest open transaction, if any: compaction stops before it.
    pub fn first_open_txn(&self) -> Option<i64> {
        self.ongoing.keys().next().copied()
    }

    /// Every producer's open transaction, as `(producer id, epoch, first offset, last
    /// timestamp)` (DescribeProducers).
    pub fn producers(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(&id, e)| (id, e))
    }

    /// Forgets producers whose latest batch is at least `expiration_ms` old
    /// (`producer.id.expiration.ms`). Returns how many were removed.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        // A producer with an open transaction stays: its transaction keeps the last stable
        // offset where it is until the coordinator ends it.
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    fn rebuild_ongoing(&mut self) {
        self.ongoing = self
            .producers
            .iter()
            .filter_map(|(&pid, e)| e.current_txn_first_offset.map(|f| (f, pid)))
            .collect();
        self.unreplicated.clear();
    }

    /// Rebuilds the state for a log holding `[log_start, leo)` in `segments`: the newest
    /// valid snapshot at or below `leo`, then the batch headers after it. Used on open and
    /// after a truncation.
    /// Returns whether snapshot files were removed: the caller makes that durable with a
    /// directory fsync before anything new is appended at their offsets.
    ///
    /// The transaction index of every segment from `rebuild_from` on is rebuilt from the
    /// batches (they were scanned by recovery, or their index was damaged); the state is
    /// then loaded from a snapshot at or below it, so that each aborted transaction's
    /// first offset is known. `i64::MAX` rebuilds none.
    pub fn load(
        &mut self,
        segments: &mut [Segment],
        log_start: i64,
        leo: i64,
        rebuild_from: i64,
    ) -> Result<bool, LogError> {
        self.producers.clear();
        // A prepared snapshot above `leo` would describe batches that are gone; one at or
        // below it still describes batches the log holds.
        self.prepared = self.prepared.take().filter(|(o, _)| *o <= leo);
        self.snapshots = list_snapshots(&self.dir)?;
        // A snapshot above the log end describes batches that are gone (a torn tail was cut,
        // or the log was truncated): it must never be loaded. Its removal is made durable
        // before new batches can reach its offset, or a crash could bring it back as valid.
        let stale: Vec<i64> = self.snapshots.range(leo + 1..).copied().collect();
        for offset in &stale {
            tracing::info!(dir = %self.dir.display(), offset, "removing producer snapshot above the log end");
            crate::index::remove_if_exists(&self.fs, &snapshot_path(&self.dir, *offset))?;
            self.snapshots.remove(offset);
        }
        let mut from = None;
        let usable = leo.min(rebuild_from);
        while let Some(&offset) = self.snapshots.range(..=usable).next_back() {
            match read_snapshot(&self.dir, offset) {
                Ok(producers) => {
                    self.producers = producers;
                    from = Some(offset);
                    break;
                }
                Err(reason) => {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        offset,
                        reason = %reason,
                        "ignoring unreadable producer snapshot; rebuilding from the log instead"
                    );
                    self.remove_snapshot(offset);
                }
            }
        }
        let scan_from = from.unwrap_or(log_start).max(log_start);
        for seg in segments
            .iter_mut()
            .filter(|s| s.base_offset >= rebuild_from)
        {
            if !seg.txn_index.entries().is_empty() {
                seg.txn_index.truncate(0)?;
            }
        }
        self.rebuild_ongoing();
        let batches = self.scan(segments, scan_from, leo, rebuild_from)?;
        tracing::debug!(
            dir = %self.dir.display(),
            snapshot = ?from,
            scan_from,
            batches,
            producers = self.producers.len(),
            "producer state loaded"
        );
        if scan_from < leo && from != Some(leo) {
            // So that the next unclean open scans only what is appended after this one;
            // written by the next flush check, never under the log's lock.
            self.prepare_snapshot(leo);
        }
        Ok(!stale.is_empty())
    }

    /// Replays the headers of every batch in `[from, to)` (and the record of each control
    /// batch); aborted transactions whose marker lies in a segment from `rebuild_from` on
    /// enter its transaction index. Returns how many batches were read.
    fn scan(
        &mut self,
        segments: &mut [Segment],
        from: i64,
        to: i64,
        rebuild_from: i64,
    ) -> Result<usize, LogError> {
        let mut count = 0;
        if from >= to {
            return Ok(0);
        }
        let first = segments
            .partition_point(|s| s.base_offset <= from)
            .saturating_sub(1);
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.iter_mut().enumerate().skip(first) {
            if seg.next_offset <= from {
                continue;
            }
            let view = seg.view()?;
            let mut aborted = Vec::new();
            let mut win = FileWindow::new(&view.file, view.size, SCAN_CHUNK);
            let mut pos = seg.lookup_position(from);
            while let Some(h) = win.header(pos)? {
                let at = pos;
                pos += h.total_len() as u64;
                if h.last_offset() < from {
                    continue;
                }
                if h.base_offset >= to {
                    break;
                }
                let marker = if h.is_control() {
                    match txn::read_marker(win.get(at, h.total_len())?, &h) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            // Written by a leader that validated it: a marker that cannot
                            // be read means damage, and guessing its outcome could show an
                            // aborted transaction as committed.
                            return Err(LogError::Offline {
                                dir: self.dir.display().to_string(),
                                reason: format!(
                                    "transaction marker at offset {} cannot be read: {e}",
                                    h.base_offset
                                ),
                            });
                        }
                    }
                } else {
                    None
                };
                if let Some(t) = self.replay(&h, marker) {
                    aborted.push(t);
                }
                count += 1;
            }
            if seg.base_offset >= rebuild_from {
                let grew = !aborted.is_empty();
                for t in aborted {
                    seg.push_aborted(t)?;
                }
                if grew {
                    seg.txn_index.write_pending()?;
                }
            }
            // A sealed, synced segment holds no descriptors while nobody reads it.
            if i < last && !seg.dirty {
                seg.close_handles();
            }
        }
        Ok(count)
    }

    /// Captures the state as of `offset` now, to be written by [`Self::write_prepared`].
    pub fn prepare_snapshot(&mut self, offset: i64) {
        self.prepared = Some((offset, encode_snapshot(offset, &self.producers)));
    }

    /// Hands over the snapshot [`Self::prepare_snapshot`] captured, to be written with
    /// [`write_snapshot_file`] outside the log's lock and then registered with
    /// [`Self::snapshot_written`].
    pub fn take_prepared(&mut self) -> Option<(i64, Vec<u8>)> {
        self.prepared.take()
    }

    /// The state as of `offset`, encoded for [`write_snapshot_file`].
    pub fn encode(&self, offset: i64) -> Vec<u8> {
        encode_snapshot(offset, &self.producers)
    }

    /// Records a snapshot file written outside the lock, and drops old ones.
    pub fn snapshot_written(&mut self, offset: i64, log_start: i64) {
        self.snapshots.insert(offset);
        self.prune(log_start);
    }

    /// Removes a snapshot file that was written while the log was truncated under it.
    pub fn discard_written(&mut self, offset: i64) {
        self.remove_snapshot(offset);
    }

    /// Keeps the newest [`SNAPSHOTS_KEPT`] snapshots, and of those only ones at or above the
    /// log start, except the newest, which also carries the state of producers whose
    /// batches retention has already deleted.
    pub fn prune(&mut self, log_start: i64) {
        let Some(&newest) = self.snapshots.last() else {
            return;
        };
        let doomed: Vec<i64> = self
            .snapshots
            .iter()
            .rev()
            .enumerate()
            .filter(|&(i, &o)| o != newest && (i >= SNAPSHOTS_KEPT || o < log_start))
            .map(|(_, &o)| o)
            .collect();
        for offset in doomed {
            self.remove_snapshot(offset);
        }
    }

    /// The log restarted empty at some offset: nothing before it applies any more.
    /// The caller fsyncs the directory (the removals) before new appends.
    pub fn reset(&mut self) -> Result<(), LogError> {
        self.producers.clear();
        self.ongoing.clear();
        self.unreplicated.clear();
        self.prepared = None;
        for offset in std::mem::take(&mut self.snapshots) {
            crate::index::remove_if_exists(&self.fs, &snapshot_path(&self.dir, offset))?;
        }
        Ok(())
    }

    fn remove_snapshot(&mut self, offset: i64) {
        self.snapshots.remove(&offset);
        let path = snapshot_path(&self.dir, offset);
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "could not remove producer snapshot");
            }
        }
    }
}

/// Writes one snapshot file atomically (temp file, fsync, rename, directory fsync). Runs
/// without the log's lock: it is only I/O.
pub(crate) fn write_snapshot_file(
    fs: &Fs,
    dir: &Path,
    offset: i64,
    bytes: &[u8],
) -> Result<(), LogError> {
    // Its temp file is cleared by the log's directory scan after a crash.
    checkpoint::write_atomic(fs, dir, &format!("{offset:020}.{SNAPSHOT_EXT}"), bytes)
}

fn check_sequence(pid: i64, e: &ProducerEntry, h: &BatchHeader) -> Result<(), LogError> {
    if h.producer_epoch < e.epoch {
        return Err(LogError::InvalidProducerEpoch(format!(
            "Epoch {} of producer {pid} is older than its current epoch {}",
            h.producer_epoch, e.epoch
        )));
    }
    if h.producer_epoch != e.epoch {
        if h.base_sequence != 0 {
            return Err(LogError::OutOfOrderSequence(format!(
                "Producer {pid} started epoch {} at sequence {} instead of 0",
                h.producer_epoch, h.base_sequence
            )));
        }
        return Ok(());
    }
    let expected = e.batches.back().map_or(0, |b| next_sequence(b.last_seq));
    if h.base_sequence != expected {
        return Err(LogError::OutOfOrderSequence(format!(
            "Out of order sequence number for producer {pid}: {} (incoming seq. number), {expected} (expected)",
            h.base_sequence
        )));
    }
    Ok(())
}

/// Offsets of the well-named snapshot files in `dir`; other names are left alone.
fn list_snapshots(dir: &Path) -> Result<BTreeSet<i64>, LogError> {
    let mut out = BTreeSet::new();
    let entries = std::fs::read_dir(dir).ctx(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.ctx(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name();
        let Some(stem) = name
            .to_str()
            .and_then(|n| n.strip_suffix(&format!(".{SNAPSHOT_EXT}")))
        else {
            continue;
        };
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(offset) = stem.parse::<i64>() {
            out.insert(offset);
        }
    }
    Ok(out)
}

fn encode_snapshot(offset: i64, producers: &HashMap<i64, ProducerEntry>) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + producers.len() * (19 + 5 * BATCH_META_LEN));
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    // Sorted so that equal states give equal files.
    let mut ids: Vec<&i64> = producers.keys().collect();
    ids.sort_unstable();
    for id in ids {
        let e = &producers[id];
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        body.push(e.batches.len() as u8);
        for b in &e.batches {
            body.extend_from_slice(&b.first_seq.to_be_bytes());
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.first_offset.to_be_bytes());
            body.extend_from_slice(&b.last_offset_delta.to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
        body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        body.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
    }
    let mut out = Vec::with_capacity(SNAPSHOT_PREFIX + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A cursor over snapshot bytes whose reads fail instead of panicking on a short file.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        if self.buf.len() < N {
            return Err("file ends early".into());
        }
        let (head, rest) = self.buf.split_at(N);
        self.buf = rest;
        let mut a = [0u8; N];
        a.copy_from_slice(head);
        Ok(a)
    }
    fn i64(&mut self) -> Result<i64, String> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32, String> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16, String> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn u8(&mut self) -> Result<u8, String> {
        self.take::<1>().map(|a| a[0])
    }
}

/// Reads and checks one snapshot; the error says why it cannot be trusted.
fn read_snapshot(dir: &Path, offset: i64) -> Result<HashMap<i64, ProducerEntry>, String> {
    let path = snapshot_path(dir, offset);
    let bytes = std::fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    decode_snapshot(&bytes, offset)
}

fn decode_snapshot(bytes: &[u8], offset: i64) -> Result<HashMap<i64, ProducerEntry>, String> {
    if bytes.len() < SNAPSHOT_PREFIX || &bytes[..4] != SNAPSHOT_MAGIC {
        return Err("not a producer snapshot".into());
    }
    let version = u16::from_be_bytes([bytes[4], bytes[5]]);
    if !(1..=SNAPSHOT_VERSION).contains(&version) {
        return Err(format!("unknown snapshot version {version}"));
    }
    let stored = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
    let body = &bytes[SNAPSHOT_PREFIX..];
    let actual = crc32c::crc32c(body);
    if stored != actual {
        return Err(format!(
            "CRC mismatch: stored {stored:#010x}, computed {actual:#010x}"
        ));
    }
    let mut r = Reader { buf: body };
    let at = r.i64()?;
    if at != offset {
        return Err(format!("file for offset {offset} holds offset {at}"));
    }
    let count = r.take::<4>().map(u32::from_be_bytes)? as usize;
    let mut producers = HashMap::new();
    for _ in 0..count {
        let id = r.i64()?;
        let mut e = ProducerEntry::new(r.i16()?);
        e.last_timestamp = r.i64()?;
        let n = r.u8()? as usize;
        if n > PRODUCER_BATCH_CACHE {
            return Err(format!("producer {id} has {n} cached batches"));
        }
        for _ in 0..n {
            e.batches.push_back(BatchMetadata {
                first_seq: r.i32()?,
                last_seq: r.i32()?,
                first_offset: r.i64()?,
                last_offset_delta: r.i32()?,
                timestamp: r.i64()?,
            });
        }
        if version >= 2 {
            let first = r.i64()?;
            e.current_txn_first_offset = (first >= 0).then_some(first);
            e.coordinator_epoch = r.i32()?;
            if first >= offset {
                return Err(format!(
                    "producer {id}'s open transaction starts at or above offset {offset}"
                ));
            }
        }
        if e.batches.iter().any(|b| b.last_offset() >= offset) {
            return Err(format!(
                "producer {id} has a batch at or above offset {offset}"
            ));
        }
        producers.insert(id, e);
    }
    if !r.buf.is_empty() {
        return Err(format!("{} bytes of trailing data", r.buf.len()));
    }
    Ok(producers)
}

#[cfg(test)]
mod tests;
