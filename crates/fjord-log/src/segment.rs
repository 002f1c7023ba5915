//! One log segment: the `.log` file of stored batches plus its offset and time indexes.
//!
//! Mutation happens under the log's lock; the free functions at the bottom read a segment
//! through a shared file handle without any lock, using positional reads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::batch::{self, BatchHeader, BATCH_HEADER_LEN};
use crate::error::IoContext;
use crate::fs::{Fs, LogFile, OpenMode};
use crate::index::{remove_if_exists, IndexFile, OffsetEntry, TimeEntry};
use crate::records;
use crate::txn::AbortedTxn;
use crate::LogError;

/// Read size for recovery scans: large sequential reads.
const RECOVERY_CHUNK: usize = 1 << 20;
/// Read size when walking headers: enough for many small batches per syscall.
const HEADER_CHUNK: usize = 16 << 10;

pub(crate) fn segment_path(dir: &Path, base_offset: i64, ext: &str) -> PathBuf {
    segment_file(dir, base_offset, ext, "")
}

/// A segment's file with `suffix` after its usual name: the log cleaner writes a cleaned
/// segment as `<base>.log.cleaned` (and its indexes likewise) before swapping it in.
pub(crate) fn segment_file(dir: &Path, base_offset: i64, ext: &str, suffix: &str) -> PathBuf {
    dir.join(format!("{base_offset:020}.{ext}{suffix}"))
}

/// What opening a segment found and did.
#[derive(Debug, Default)]
pub(crate) struct Opened {
    /// Every batch was validated (CRC included).
    pub scanned: bool,
    /// Bytes cut off the end because they were not whole valid batches.
    pub bytes_cut: u64,
    /// The indexes were rebuilt from the log.
    pub rebuilt: bool,
    /// `(leader epoch, first offset)` wherever a scanned batch raised the epoch.
    pub epoch_starts: Vec<(i32, i64)>,
    /// The transaction index is empty and must be rebuilt from the batches (the segment
    /// was scanned, or its index file was damaged): the log does it with the producer
    /// state, which knows where each aborted transaction began.
    pub txn_rebuild: bool,
}

pub(crate) struct Segment {
    fs: Fs,
    pub base_offset: i64,
    log_path: PathBuf,
    /// Open handle of the `.log`: always for the active segment and while writes to the
    /// segment await an fsync; for a sealed, synced segment only while the log keeps it in
    /// its small cache of read handles.
    log: Option<Arc<LogFile>>,
    /// Bytes of whole batches in the file.
    pub size: u64,
    /// Offset after the last batch (the base offset while empty).
    pub next_offset: i64,
    pub offset_index: IndexFile<OffsetEntry>,
    pub time_index: IndexFile<TimeEntry>,
    /// Aborted transactions whose marker is in this segment (`.txnindex`).
    pub txn_index: IndexFile<AbortedTxn>,
    bytes_since_index: u64,
    /// Largest batch max timestamp in the segment, -1 if none.
    pub max_timestamp: i64,
    max_ts_rel: u32,
    /// When segment.ms counts from: the first batch's timestamp, or when we first appended.
    pub rolling_base_ms: Option<i64>,
    /// Something was written to the segment's files that is not yet known fsynced. Its
    /// handles stay open until then, so that the fsync reports any write-back error.
    pub dirty: bool,
}

impl Segment {
    /// Creates a new empty segment. A leftover empty `.log` of the same name is reused; a
    /// non-empty one is data this log does not know about, and is never overwritten.
    pub fn create(fs: &Fs, dir: &Path, base_offset: i64) -> Result<Segment, LogError> {
        let log_path = segment_path(dir, base_offset, "log");
        let log = match fs.open(&log_path, OpenMode::CreateNew) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let len = fs
                    .len(&log_path)
                    .ctx(|| format!("reading size of {}", log_path.display()))?;
                if len > 0 {
                    return Err(LogError::io(
                        format!("creating segment {}", log_path.display()),
                        std::io::Error::new(
                            std::io::ErrorKind::AlreadyExists,
                            format!("a non-empty file of that name ({len} bytes) is in the way; refusing to overwrite it"),
                        ),
                    ));
                }
                tracing::warn!(segment = %log_path.display(), "reusing a leftover empty segment file");
                fs.open(&log_path, OpenMode::Existing)
            }
            other => other,
        }
        .ctx(|| format!("creating segment {}", log_path.display()))?;
        Ok(Segment {
            fs: fs.clone(),
            base_offset,
            log_path,
            log: Some(Arc::new(log)),
            size: 0,
            next_offset: base_offset,
            offset_index: IndexFile::create(fs, &segment_path(dir, base_offset, "index"))?,
            time_index: IndexFile::create(fs, &segment_path(dir, base_offset, "timeindex"))?,
            txn_index: {
                // A leftover of an earlier segment at this base describes batches that
                // are gone.
                let path = segment_path(dir, base_offset, "txnindex");
                remove_if_exists(fs, &path)?;
                IndexFile::lazy(fs, &path)
            },
            bytes_since_index: 0,
            max_timestamp: -1,
            max_ts_rel: 0,
            rolling_base_ms: None,
            dirty: true,
        })
    }

    /// Opens an existing segment. With `full_scan` every batch is validated (CRC included), a
    /// bad tail is cut off and the indexes are rebuilt; otherwise the indexes are trusted if
    /// they look sane and only the tail after the last index entry is walked.
    pub fn open(
        fs: &Fs,
        dir: &Path,
        base_offset: i64,
        full_scan: bool,
        index_interval: u32,
    ) -> Result<(Segment, Opened), LogError> {
        Segment::open_with_suffix(fs, dir, base_offset, "", full_scan, index_interval)
    }

    /// [`Segment::open`] of the files named with `suffix` (see [`segment_file`]).
    pub fn open_with_suffix(
        fs: &Fs,
        dir: &Path,
        base_offset: i64,
        suffix: &str,
        full_scan: bool,
        index_interval: u32,
    ) -> Result<(Segment, Opened), LogError> {
        let log_path = segment_file(dir, base_offset, "log", suffix);
        let log = fs
            .open(&log_path, OpenMode::Existing)
            .ctx(|| format!("opening segment {}", log_path.display()))?;
        let size = log
            .len()
            .ctx(|| format!("reading size of {}", log_path.display()))?;
        let index_path = segment_file(dir, base_offset, "index", suffix);
        let time_path = segment_file(dir, base_offset, "timeindex", suffix);
        let loaded = if full_scan {
            None
        } else {
            match (
                IndexFile::<OffsetEntry>::load(fs, &index_path)?,
                IndexFile::<TimeEntry>::load(fs, &time_path)?,
            ) {
                (Some(o), Some(t)) => Some((o, t)),
                _ => None,
            }
        };
        let trusted = loaded.is_some();
        let txn_path = segment_file(dir, base_offset, "txnindex", suffix);
        let (txn_index, txn_damaged) = if !fs.exists(&txn_path) {
            (IndexFile::lazy(fs, &txn_path), false)
        } else {
            match IndexFile::<AbortedTxn>::load(fs, &txn_path)? {
                Some(t) => (t, false),
                None => (IndexFile::lazy(fs, &txn_path), true),
            }
        };
        let (offset_index, time_index) = match loaded {
            Some(pair) => pair,
            None => (
                IndexFile::create(fs, &index_path)?,
                IndexFile::create(fs, &time_path)?,
            ),
        };
        let mut seg = Segment {
            fs: fs.clone(),
            base_offset,
            log_path,
            log: Some(Arc::new(log)),
            size,
            next_offset: base_offset,
            offset_index,
            time_index,
            txn_index,
            bytes_since_index: 0,
            max_timestamp: -1,
            max_ts_rel: 0,
            rolling_base_ms: None,
            dirty: false,
        };
        let mut opened = Opened::default();
        if txn_damaged {
            tracing::warn!(
                segment = %seg.log_path.display(),
                "transaction index damaged; rebuilding it from the log"
            );
            seg.txn_index.remove_file()?;
            opened.txn_rebuild = true;
        }
        if !trusted || !seg.indexes_sane() || seg.recompute_tail().is_err() {
            if trusted {
                tracing::warn!(
                    segment = %seg.log_path.display(),
                    "segment index or tail inconsistent; rebuilding"
                );
            }
            opened = seg.recover(index_interval)?;
        }
        if seg.size > 0 {
            let log = Arc::clone(seg.handle_arc()?);
            let mut win = FileWindow::new(&log, seg.size, BATCH_HEADER_LEN);
            if let Ok(Some(h)) = win.header(0) {
                if h.max_timestamp >= 0 {
                    seg.rolling_base_ms = Some(h.max_timestamp);
                }
            }
        }
        Ok((seg, opened))
    }

    /// Opens the `.log` handle if it is closed; returns whether it had to.
    pub fn open_handle(&mut self) -> Result<bool, LogError> {
        if self.log.is_some() {
            return Ok(false);
        }
        let f = self
            .fs
            .open(&self.log_path, OpenMode::Existing)
            .ctx(|| format!("opening segment {}", self.log_path.display()))?;
        self.log = Some(Arc::new(f));
        Ok(true)
    }

    /// Closes every file handle of a sealed, synced segment. Readers holding a view keep theirs.
    pub fn close_handles(&mut self) {
        debug_assert!(!self.dirty, "closing a segment with unsynced writes");
        self.log = None;
        self.offset_index.close();
        self.time_index.close();
        self.txn_index.close();
    }

    /// Handles to fsync: the `.log`, and with `indexes` also the index files.
    pub fn sync_handles(&self, indexes: bool, out: &mut Vec<Arc<LogFile>>) {
        out.extend(self.log.clone());
        if indexes {
            out.extend(self.offset_index.file());
            out.extend(self.time_index.file());
            out.extend(self.txn_index.file());
        }
    }

    /// Walks the whole segment again, validating every batch (a trusted open found the
    /// segment reaching past the recovery point).
    pub fn rescan(&mut self, index_interval: u32) -> Result<Opened, LogError> {
        self.size = self
            .handle_arc()?
            .len()
            .ctx(|| format!("reading size of {}", self.log_path.display()))?;
        self.recover(index_interval)
    }

    fn rel(&self, offset: i64) -> u32 {
        (offset - self.base_offset) as u32
    }

    /// Whether `offset` can still be expressed relative to this segment's base.
    pub fn fits_offset(&self, offset: i64) -> bool {
        offset >= self.base_offset && offset - self.base_offset <= u32::MAX as i64
    }

    /// Cheap structural checks of loaded indexes against the log file.
    fn indexes_sane(&self) -> bool {
        let o = self.offset_index.entries();
        let offsets_ok = o
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position)
            && o.last().is_none_or(|e| (e.position as u64) < self.size);
        let t = self.time_index.entries();
        let times_ok = t
            .windows(2)
            .all(|w| w[0].timestamp <= w[1].timestamp && w[0].rel_offset <= w[1].rel_offset);
        offsets_ok && times_ok
    }

    /// Walks the batch headers after the last offset-index entry to learn the next offset and
    /// max timestamp. Fails if the tail is not a clean sequence of whole batches.
    fn recompute_tail(&mut self) -> Result<(), LogError> {
        let (start, expect_last) = match self.offset_index.last() {
            Some(e) => (
                e.position as u64,
                Some(self.base_offset + e.rel_offset as i64),
            ),
            None => (0, None),
        };
        self.max_timestamp = -1;
        if let Some(t) = self.time_index.last() {
            self.max_timestamp = t.timestamp;
            self.max_ts_rel = t.rel_offset;
        }
        let size = self.size;
        let log = Arc::clone(self.handle_arc()?);
        let mut win = FileWindow::new(&log, size, HEADER_CHUNK);
        let mut pos = start;
        let mut next = self.base_offset;
        let mut first = true;
        while let Some(h) = win.header(pos)? {
            if first {
                if let Some(last) = expect_last {
                    if h.last_offset() != last {
                        return Err(LogError::CorruptBatch("index disagrees with log".into()));
                    }
                }
                first = false;
            } else if h.base_offset < next {
                return Err(LogError::CorruptBatch("offsets go backwards".into()));
            }
            if !self.fits_offset(h.last_offset()) {
                return Err(LogError::CorruptBatch("offset outside segment".into()));
            }
            if h.max_timestamp > self.max_timestamp {
                self.max_timestamp = h.max_timestamp;
                self.max_ts_rel = self.rel(h.last_offset());
            }
            next = h.last_offset() + 1;
            pos += h.total_len() as u64;
        }
        if let Some(t) = self.time_index.last() {
            if self.base_offset + t.rel_offset as i64 >= next && self.size > 0 {
                return Err(LogError::CorruptBatch("time index past log end".into()));
            }
        }
        self.next_offset = next;
        self.bytes_since_index = self.size - start;
        Ok(())
    }

    /// The `.log` handle, opened if it was closed.
    fn handle_arc(&mut self) -> Result<&Arc<LogFile>, LogError> {
        self.open_handle()?;
        Ok(self.log.as_ref().expect("just opened"))
    }

    /// Full validation scan: keeps the longest valid prefix of batches, truncates the rest,
    /// rebuilds both indexes.
    fn recover(&mut self, index_interval: u32) -> Result<Opened, LogError> {
        self.dirty = true;
        self.offset_index.rebuild(Vec::new())?;
        self.time_index.rebuild(Vec::new())?;
        // Rebuilt by the log from the batches this scan keeps.
        self.txn_index.remove_file()?;
        self.txn_index = IndexFile::lazy(&self.fs, &self.txn_path());
        self.bytes_since_index = 0;
        self.max_timestamp = -1;
        self.max_ts_rel = 0;
        self.next_offset = self.base_offset;
        let file_len = self.size;
        let log = Arc::clone(self.handle_arc()?);
        let mut win = FileWindow::new(&log, file_len, RECOVERY_CHUNK);
        let mut pos = 0u64;
        let mut epoch_starts: Vec<(i32, i64)> = Vec::new();
        while pos < file_len {
            let Ok(Some(h)) = win.header(pos) else { break };
            let data = win.get(pos, h.total_len())?;
            if data.len() < h.total_len() || batch::validate(data).is_err() {
                break;
            }
            if h.base_offset < self.next_offset || !self.fits_offset(h.last_offset()) {
                break;
            }
            let epoch = h.partition_leader_epoch;
            if epoch >= 0 && epoch_starts.last().is_none_or(|&(e, _)| epoch > e) {
                epoch_starts.push((epoch, h.base_offset));
            }
            self.track(&h, pos, index_interval)?;
            pos += h.total_len() as u64;
        }
        self.size = pos;
        let bytes_cut = file_len - pos;
        if bytes_cut > 0 {
            tracing::warn!(
                segment = %self.log_path.display(),
                valid_bytes = pos,
                dropped_bytes = bytes_cut,
                "truncating invalid tail of segment"
            );
            log.set_len(pos)
                .ctx(|| format!("truncating {}", self.log_path.display()))?;
        }
        self.offset_index.write_pending()?;
        self.time_index.write_pending()?;
        Ok(Opened {
            scanned: true,
            bytes_cut,
            rebuilt: true,
            epoch_starts,
            txn_rebuild: true,
        })
    }

    /// Updates indexes and statistics for a batch now stored at `pos`.
    fn track(&mut self, h: &BatchHeader, pos: u64, index_interval: u32) -> Result<(), LogError> {
        let last = h.last_offset();
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.max_ts_rel = self.rel(last);
        }
        if self.bytes_since_index > index_interval as u64 {
            self.offset_index.push(OffsetEntry {
                rel_offset: self.rel(last),
                position: pos as u32,
            })?;
            self.maybe_append_time_entry()?;
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.total_len() as u64;
        self.next_offset = last + 1;
        Ok(())
    }

    fn maybe_append_time_entry(&mut self) -> Result<(), LogError> {
        let newer = match self.time_index.last() {
            Some(t) => self.max_timestamp > t.timestamp,
            None => self.max_timestamp >= 0,
        };
        if newer {
            self.time_index.push(TimeEntry {
                timestamp: self.max_timestamp,
                rel_offset: self.max_ts_rel,
            })?;
        }
        Ok(())
    }

    /// Appends already validated and patched batches byte for byte.
    pub fn append(
        &mut self,
        bytes: &[u8],
        headers: &[(BatchHeader, usize)],
        index_interval: u32,
    ) -> Result<(), LogError> {
        self.dirty = true;
        self.open_handle()?;
        let log = self.log.as_deref().expect("just opened");
        if let Err(e) = log.write_all_at(bytes, self.size) {
            // Drop whatever part of the write landed so the file stays whole batches. If even
            // that fails, the file's tail is unknown: the caller must stop writing to it.
            let err = LogError::io(format!("appending to {}", self.log_path.display()), e);
            if let Err(e2) = log.set_len(self.size) {
                return Err(LogError::io(
                    format!(
                        "cutting a failed append ({err}) off {}",
                        self.log_path.display()
                    ),
                    e2,
                ));
            }
            return Err(err);
        }
        let start = self.size;
        for (h, at) in headers {
            self.track(h, start + *at as u64, index_interval)?;
        }
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Closes the segment for appends: final time-index entry and index bytes to the files.
    pub fn seal(&mut self) -> Result<(), LogError> {
        self.maybe_append_time_entry()?;
        self.write_pending_indexes()
    }

    pub fn write_pending_indexes(&mut self) -> Result<(), LogError> {
        self.dirty = true;
        self.offset_index.write_pending()?;
        self.time_index.write_pending()?;
        self.txn_index.write_pending()
    }

    /// Records an aborted transaction whose marker was just appended to this segment. The
    /// entry reaches the file with the segment's other pending index bytes.
    pub fn push_aborted(&mut self, txn: AbortedTxn) -> Result<(), LogError> {
        self.dirty = true;
        self.txn_index.push(txn)
    }

    /// `<base>.txnindex` (with the suffix the segment was opened with, if any).
    fn txn_path(&self) -> PathBuf {
        let name = self
            .log_path
            .file_name()
            .map(|n| n.to_string_lossy().replacen(".log", ".txnindex", 1))
            .unwrap_or_default();
        self.log_path.with_file_name(name)
    }

    /// Index file position where reading for `offset` may start.
    pub fn lookup_position(&self, offset: i64) -> u64 {
        if offset <= self.base_offset {
            return 0;
        }
        let rel = (offset - self.base_offset).min(u32::MAX as i64) as u32;
        self.offset_index.lookup(rel) as u64
    }

    /// Position where a search for timestamp `ts` may start.
    pub fn lookup_time_position(&self, ts: i64) -> u64 {
        match self.time_index.lookup_before(ts) {
            Some(rel) => self.offset_index.lookup(rel) as u64,
            None => 0,
        }
    }

    /// Removes every batch at and above `offset`; `offset` lies inside this segment.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        self.dirty = true;
        let log = Arc::clone(self.handle_arc()?);
        let mut win = FileWindow::new(&log, self.size, HEADER_CHUNK);
        let mut pos = self.lookup_position(offset);
        let mut cut = self.size;
        while let Some(h) = win.header(pos)? {
            if h.last_offset() >= offset {
                cut = pos;
                break;
            }
            pos += h.total_len() as u64;
        }
        let keep_offsets = self.offset_index.count_below_position(cut as u32);
        self.offset_index.truncate(keep_offsets)?;
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let keep_times = self.time_index.count_below_offset(rel);
        self.time_index.truncate(keep_times)?;
        let keep_aborted = self
            .txn_index
            .entries()
            .partition_point(|t| t.last_offset < offset);
        self.txn_index.truncate(keep_aborted)?;
        log.set_len(cut)
            .ctx(|| format!("truncating {}", self.log_path.display()))?;
        self.size = cut;
        self.recompute_tail()
    }

    /// Deletes the segment's files (open views stay readable until dropped).
    pub fn remove_files(&mut self) -> Result<(), LogError> {
        self.log = None;
        remove_if_exists(&self.fs, &self.log_path)?;
        self.offset_index.remove_file()?;
        self.time_index.remove_file()?;
        self.txn_index.remove_file()
    }

    /// Everything a lock-free reader needs; opens the `.log` if its handle is closed.
    pub fn view(&mut self) -> Result<SegmentView, LogError> {
        Ok(SegmentView {
            file: Arc::clone(self.handle_arc()?),
            size: self.size,
            base_offset: self.base_offset,
        })
    }

    /// The time that ages the segment, for retention and compaction lags: its newest
    /// record's timestamp, or its file's modification time when it has none.
    pub fn age_ms(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.modified_ms()
        }
    }

    /// Last modification time, for retention of segments without timestamps.
    pub fn modified_ms(&self) -> i64 {
        std::fs::metadata(&self.log_path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(-1)
    }
}

/// A snapshot of a segment for reading without the log lock.
#[derive(Clone)]
pub(crate) struct SegmentView {
    pub file: Arc<LogFile>,
    /// Size when the snapshot was taken: later appends are invisible, torn ones impossible.
    pub size: u64,
    pub base_offset: i64,
}

/// A read-through window over part of a file, so that walking many small batch headers
/// costs one `pread` per chunk rather than one per header.
pub(crate) struct FileWindow<'a> {
    file: &'a LogFile,
    end: u64,
    start: u64,
    buf: Vec<u8>,
    chunk: usize,
}

impl<'a> FileWindow<'a> {
    pub fn new(file: &'a LogFile, end: u64, chunk: usize) -> Self {
        FileWindow {
            file,
            end,
            start: 0,
            buf: Vec::new(),
            chunk,
        }
    }

    /// Up to `len` bytes at `pos`, fewer only at the end of the readable range.
    pub fn get(&mut self, pos: u64, len: usize) -> Result<&[u8], LogError> {
        let have_end = self.start + self.buf.len() as u64;
        if pos < self.start || pos + len as u64 > have_end {
            let avail = self.end.saturating_sub(pos);
            let want = (len.max(self.chunk) as u64).min(avail) as usize;
            self.buf.resize(want, 0);
            let mut filled = 0;
            while filled < want {
                match self
                    .file
                    .read_at(&mut self.buf[filled..], pos + filled as u64)
                {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(LogError::io("reading segment", e)),
                }
            }
            self.buf.truncate(filled);
            self.start = pos;
        }
        let from = (pos - self.start) as usize;
        let to = (from + len).min(self.buf.len());
        Ok(&self.buf[from..to])
    }

    /// The header of the batch at `pos`; `None` at the end, an error if the bytes there are
    /// not a whole batch inside the range.
    pub fn header(&mut self, pos: u64) -> Result<Option<BatchHeader>, LogError> {
        if pos >= self.end {
            return Ok(None);
        }
        let end = self.end;
        let h = BatchHeader::parse(self.get(pos, BATCH_HEADER_LEN)?)?;
        if pos + h.total_len() as u64 > end {
            return Err(LogError::CorruptBatch(format!(
                "batch at position {pos} runs past the segment end {end}"
            )));
        }
        Ok(Some(h))
    }
}

/// Whether the `.log` at `path` begins with a whole, valid batch. Reads only.
pub(crate) fn starts_with_valid_batch(fs: &Fs, path: &Path) -> Result<bool, LogError> {
    let file = fs
        .open(path, OpenMode::Existing)
        .ctx(|| format!("opening segment {}", path.display()))?;
    let len = file
        .len()
        .ctx(|| format!("reading size of {}", path.display()))?;
    let mut win = FileWindow::new(&file, len, HEADER_CHUNK);
    let Ok(Some(h)) = win.header(0) else {
        return Ok(false);
    };
    let data = win.get(0, h.total_len())?;
    Ok(data.len() == h.total_len() && batch::validate(data).is_ok())
}

/// Reads whole batches from `view` starting with the first batch, at or after `start_pos`,
/// whose last offset is >= `offset`. `None` if the segment has no such batch.
pub(crate) fn read_batches(
    view: &SegmentView,
    start_pos: u64,
    offset: i64,
    max_bytes: usize,
    max_offset: i64,
    min_one_batch: bool,
) -> Result<Option<Bytes>, LogError> {
    let mut win = FileWindow::new(&view.file, view.size, HEADER_CHUNK);
    let mut pos = start_pos;
    let first = loop {
        match win.header(pos)? {
            None => return Ok(None),
            Some(h) if h.last_offset() >= offset => break h,
            Some(h) => pos += h.total_len() as u64,
        }
    };
    if first.last_offset() >= max_offset {
        return Ok(Some(Bytes::new()));
    }
    let mut want = (max_bytes as u64).min(view.size - pos) as usize;
    if first.total_len() > want {
        if !min_one_batch {
            return Ok(Some(Bytes::new()));
        }
        want = first.total_len();
    }
    let mut buf = BytesMut::zeroed(want);
    let mut filled = 0;
    while filled < want {
        match view.file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LogError::io("reading segment", e)),
        }
    }
    let mut cut = 0;
    for item in batch::iter(&buf[..filled]) {
        match item {
            Ok((h, range)) if h.last_offset() < max_offset => cut = range.end,
            _ => break,
        }
    }
    buf.truncate(cut);
    Ok(Some(buf.freeze()))
}

/// Finds the first record at or after `min_offset` whose timestamp is >= `ts`, scanning from
/// `start_pos`. Returns `(offset, timestamp)`.
pub(crate) fn find_by_timestamp(
    view: &SegmentView,
    start_pos: u64,
    ts: i64,
    min_offset: i64,
) -> Result<Option<(i64, i64)>, LogError> {
    let mut win = FileWindow::new(&view.file, view.size, HEADER_CHUNK);
    let mut pos = start_pos;
    while let Some(h) = win.header(pos)? {
        if h.max_timestamp >= ts && h.last_offset() >= min_offset {
            if h.is_log_append_time() {
                // Every record of a LogAppendTime batch carries the batch's max timestamp.
                return Ok(Some((h.base_offset.max(min_offset), h.max_timestamp)));
            }
            let data = win.get(pos, h.total_len())?;
            if let Some(found) = records::find_timestamp(data, &h, ts, min_offset)? {
                return Ok(Some(found));
            }
        }
        pos += h.total_len() as u64;
    }
    Ok(None)
}
