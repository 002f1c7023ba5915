//! Sparse segment indexes: the offset index (`.index`) and the time index (`.timeindex`).
//!
//! Each index is kept whole in memory (a sorted `Vec`, binary-searched) and mirrored to its
//! file by appending buffered entries, so the append path does no extra syscalls; entries
//! reach the file in batches when enough are pending, on roll and on flush.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::IoContext;
use crate::fs::{Fs, LogFile, OpenMode};
use crate::LogError;

/// Pending index bytes that trigger a write to the file.
const WRITE_THRESHOLD: usize = 4096;

/// One fixed-size, big-endian index entry.
pub(crate) trait Entry: Copy {
    const SIZE: usize;
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(b: &[u8]) -> Self;
}

/// Offset index entry: offset relative to the segment base, and byte position in the `.log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel_offset: u32,
    pub position: u32,
}

impl Entry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        OffsetEntry {
            rel_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Time index entry: the largest timestamp seen so far and the relative offset it was seen at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub rel_offset: u32,
}

impl Entry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.rel_offset.to_be_bytes());
    }
    fn decode(b: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            rel_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// An index file plus its in-memory mirror. Lookups use only the mirror, so the file handle
/// is open only while the index is being written (the active segment, or a sealed one whose
/// bytes are not yet fsynced).
pub(crate) struct IndexFile<E: Entry> {
    fs: Fs,
    path: PathBuf,
    file: Option<Arc<LogFile>>,
    entries: Vec<E>,
    /// How many leading entries are already in the file.
    written: usize,
}

impl<E: Entry> IndexFile<E> {
    /// Creates an empty index, discarding any file at `path`.
    pub fn create(fs: &Fs, path: &Path) -> Result<Self, LogError> {
        let file = fs
            .open(path, OpenMode::Truncate)
            .ctx(|| format!("creating index {}", path.display()))?;
        Ok(IndexFile {
            fs: fs.clone(),
            path: path.to_path_buf(),
            file: Some(Arc::new(file)),
            entries: Vec::new(),
            written: 0,
        })
    }

    /// Loads an existing index, leaving its file closed. `None` when the file is missing or
    /// not a whole number of entries, so that the caller rebuilds it.
    pub fn load(fs: &Fs, path: &Path) -> Result<Option<Self>, LogError> {
        let data = match fs.read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LogError::io(format!("reading {}", path.display()), e)),
        };
        if data.len() % E::SIZE != 0 {
            return Ok(None);
        }
        let entries: Vec<E> = data.chunks_exact(E::SIZE).map(E::decode).collect();
        let written = entries.len();
        Ok(Some(IndexFile {
            fs: fs.clone(),
            path: path.to_path_buf(),
            file: None,
            entries,
            written,
        }))
    }

    /// An empty index whose file is only created by its first write: most segments never
    /// get an entry in their transaction index, and then have no such file.
    pub fn lazy(fs: &Fs, path: &Path) -> Self {
        IndexFile {
            fs: fs.clone(),
            path: path.to_path_buf(),
            file: None,
            entries: Vec::new(),
            written: 0,
        }
    }

    pub fn entries(&self) -> &[E] {
        &self.entries
    }

    pub fn last(&self) -> Option<E> {
        self.entries.last().copied()
    }

    /// Bytes the index occupies (or will once pending entries are written).
    pub fn size_bytes(&self) -> usize {
        self.entries.len() * E::SIZE
    }

    /// The open file handle, if any (for fsync).
    pub fn file(&self) -> Option<Arc<LogFile>> {
        self.file.clone()
    }

    /// Closes the file handle; the next write reopens it.
    pub fn close(&mut self) {
        self.file = None;
    }

    fn handle(&mut self) -> Result<Arc<LogFile>, LogError> {
        if let Some(f) = &self.file {
            return Ok(Arc::clone(f));
        }
        let f = match self.fs.open(&self.path, OpenMode::Existing) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.written == 0 => {
                self.fs.open(&self.path, OpenMode::Truncate)
            }
            other => other,
        }
        .ctx(|| format!("opening index {}", self.path.display()))?;
        let f = Arc::new(f);
        self.file = Some(Arc::clone(&f));
        Ok(f)
    }

    /// Appends an entry in memory; the file catches up in batches.
    pub fn push(&mut self, entry: E) -> Result<(), LogError> {
        self.entries.push(entry);
        if (self.entries.len() - self.written) * E::SIZE >= WRITE_THRESHOLD {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes entries not yet in the file.
    pub fn write_pending(&mut self) -> Result<(), LogError> {
        if self.written == self.entries.len() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity((self.entries.len() - self.written) * E::SIZE);
        for e in &self.entries[self.written..] {
            e.encode(&mut buf);
        }
        self.handle()?
            .write_all_at(&buf, (self.written * E::SIZE) as u64)
            .ctx(|| format!("writing index {}", self.path.display()))?;
        self.written = self.entries.len();
        Ok(())
    }

    /// Keeps only the first `n` entries, in memory and in the file.
    pub fn truncate(&mut self, n: usize) -> Result<(), LogError> {
        if n >= self.entries.len() {
            return Ok(());
        }
        self.entries.truncate(n);
        if self.written > n {
            self.written = n;
            self.handle()?
                .set_len((n * E::SIZE) as u64)
                .ctx(|| format!("truncating index {}", self.path.display()))?;
        }
        Ok(())
    }

    /// Replaces the whole index with `entries` and writes it out.
    pub fn rebuild(&mut self, entries: Vec<E>) -> Result<(), LogError> {
        self.handle()?
            .set_len(0)
            .ctx(|| format!("truncating index {}", self.path.display()))?;
        self.entries = entries;
        self.written = 0;
        self.write_pending()
    }

    pub fn remove_file(&mut self) -> Result<(), LogError> {
        self.file = None;
        remove_if_exists(&self.fs, &self.path)
    }
}

/// Offset index lookups.
impl IndexFile<OffsetEntry> {
    /// Position of the last indexed batch whose offset is <= `rel_offset`, or 0.
    pub fn lookup(&self, rel_offset: u32) -> u32 {
        let n = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        if n == 0 {
            0
        } else {
            self.entries[n - 1].position
        }
    }

    /// Entries whose position lies below `position` (those that survive truncation there).
    pub fn count_below_position(&self, position: u32) -> usize {
        self.entries.partition_point(|e| e.position < position)
    }
}

/// Time index lookups.
impl IndexFile<TimeEntry> {
    /// Relative offset of the last entry whose timestamp is strictly below `ts`: every record
    /// up to that offset is older than `ts`, so a search for `ts` may start there.
    pub fn lookup_before(&self, ts: i64) -> Option<u32> {
        let n = self.entries.partition_point(|e| e.timestamp < ts);
        if n == 0 {
            None
        } else {
            Some(self.entries[n - 1].rel_offset)
        }
    }

    /// Entries whose relative offset lies below `rel_offset`.
    pub fn count_below_offset(&self, rel_offset: u32) -> usize {
        self.entries.partition_point(|e| e.rel_offset < rel_offset)
    }
}

pub(crate) fn remove_if_exists(fs: &Fs, path: &Path) -> Result<(), LogError> {
    match fs.remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io(format!("removing {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_round_trip_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut idx = IndexFile::<OffsetEntry>::create(&Fs::real(), &path).unwrap();
        for i in 0..1000u32 {
            idx.push(OffsetEntry {
                rel_offset: i * 10,
                position: i * 100,
            })
            .unwrap();
        }
        idx.write_pending().unwrap();
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(15), 100);
        assert_eq!(idx.lookup(9990), 99_900);
        assert_eq!(idx.lookup(u32::MAX), 99_900);
        let loaded = IndexFile::<OffsetEntry>::load(&Fs::real(), &path)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries(), idx.entries());
        idx.truncate(10).unwrap();
        let loaded = IndexFile::<OffsetEntry>::load(&Fs::real(), &path)
            .unwrap()
            .unwrap();
        assert_eq!(loaded.entries().len(), 10);
    }

    #[test]
    fn time_index_lookup_is_strict() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = IndexFile::<TimeEntry>::create(&Fs::real(), &dir.path().join("t")).unwrap();
        for (ts, off) in [(10, 1), (20, 5), (30, 9)] {
            idx.push(TimeEntry {
                timestamp: ts,
                rel_offset: off,
            })
            .unwrap();
        }
        assert_eq!(idx.lookup_before(10), None);
        assert_eq!(idx.lookup_before(11), Some(1));
        assert_eq!(idx.lookup_before(30), Some(5));
        assert_eq!(idx.lookup_before(100), Some(9));
    }

    #[test]
    fn damaged_file_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        std::fs::write(&path, [0u8; 13]).unwrap();
        assert!(IndexFile::<OffsetEntry>::load(&Fs::real(), &path)
            .unwrap()
            .is_none());
        assert!(
            IndexFile::<OffsetEntry>::load(&Fs::real(), &dir.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }
}
