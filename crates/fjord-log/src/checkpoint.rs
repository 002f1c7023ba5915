//! Small checkpoint files of a partition directory: log start offset, recovery point, the
//! leader-epoch cache and the clean-shutdown marker. All are replaced atomically
//! (temp file, fsync, rename, fsync directory) so a crash leaves either the old or the new one.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::IoContext;
use crate::LogError;

pub(crate) const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";

const VERSION: &str = "0";

/// Makes renames and unlinks inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// Replaces `dir/name` with `contents` atomically and durably.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &str) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}.tmp"));
    let dst = dir.join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .ctx(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents.as_bytes())
        .and_then(|_| f.sync_all())
        .ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &dst).ctx(|| format!("renaming {}", tmp.display()))?;
    sync_dir(dir)
}

/// Writes a single-offset checkpoint: version line, then the offset.
pub(crate) fn write_offset(dir: &Path, name: &str, offset: i64) -> Result<(), LogError> {
    write_atomic(dir, name, &format!("{VERSION}\n{offset}\n"))
}

/// Reads a single-offset checkpoint; a missing or unreadable one counts as absent, because the
/// log can always fall back to what the segment files say.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Option<i64> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let mut lines = text.lines();
    if lines.next()?.trim() != VERSION {
        return None;
    }
    lines.next()?.trim().parse().ok()
}

/// Leader epochs and the first offset written in each, in increasing order of both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    pub fn load(dir: &Path) -> EpochCache {
        let Ok(text) = std::fs::read_to_string(dir.join(LEADER_EPOCH_FILE)) else {
            return EpochCache::default();
        };
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(VERSION) {
            return EpochCache::default();
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0);
        let mut entries = Vec::with_capacity(count);
        for line in lines.take(count) {
            let mut parts = line.split_whitespace();
            let (Some(e), Some(o)) = (parts.next(), parts.next()) else {
                break;
            };
            let (Ok(e), Ok(o)) = (e.parse::<i32>(), o.parse::<i64>()) else {
                break;
            };
            // Keep the cache monotonic even if the file was hand-edited.
            if entries
                .last()
                .is_some_and(|&(le, lo): &(i32, i64)| e <= le || o < lo)
            {
                break;
            }
            entries.push((e, o));
        }
        EpochCache { entries }
    }

    pub fn store(&self, dir: &Path) -> Result<(), LogError> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            text.push_str(&format!("{e} {o}\n"));
        }
        write_atomic(dir, LEADER_EPOCH_FILE, &text)
    }

    pub fn latest(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start_offset`; true when the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || self.latest().is_some_and(|l| epoch <= l) {
            return false;
        }
        self.entries.push((epoch, start_offset));
        true
    }

    /// Drops epochs that start at or after `offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, o)| o < offset);
        before != self.entries.len()
    }

    /// Moves the cache's start up to `offset` (the log start advanced).
    pub fn truncate_from_start(&mut self, offset: i64) -> bool {
        let below = self.entries.partition_point(|&(_, o)| o <= offset);
        if below == 0 {
            return false;
        }
        let changed = below > 1 || self.entries[0].1 != offset;
        self.entries.drain(..below - 1);
        self.entries[0].1 = offset;
        changed
    }

    /// Kafka's OffsetForLeaderEpoch answer: the largest epoch <= `requested` and the offset
    /// where the next higher epoch starts (the log end for the latest epoch).
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        if requested < 0 || self.entries.is_empty() {
            return None;
        }
        if self.latest() == Some(requested) {
            return Some((requested, log_end));
        }
        let higher = self.entries.partition_point(|&(e, _)| e <= requested);
        if higher == self.entries.len() {
            return None;
        }
        let end = self.entries[higher].1;
        if higher == 0 {
            Some((requested, end))
        } else {
            Some((self.entries[higher - 1].0, end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_offset(dir.path(), LOG_START_FILE), None);
        write_offset(dir.path(), LOG_START_FILE, 42).unwrap();
        assert_eq!(read_offset(dir.path(), LOG_START_FILE), Some(42));
    }

    #[test]
    fn epoch_cache_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EpochCache::default();
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5));
        assert!(c.assign(3, 10));
        assert!(c.assign(5, 20));
        c.store(dir.path()).unwrap();
        assert_eq!(EpochCache::load(dir.path()), c);
        assert_eq!(c.end_offset_for(5, 30), Some((5, 30)));
        assert_eq!(c.end_offset_for(4, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(3, 30), Some((3, 20)));
        assert_eq!(c.end_offset_for(0, 30), Some((0, 0)));
        assert_eq!(c.end_offset_for(6, 30), None);
        let mut t = c.clone();
        t.truncate_from_end(10);
        assert_eq!(t.latest(), Some(1));
        c.truncate_from_start(15);
        assert_eq!(c.entries, vec![(3, 15), (5, 20)]);
    }
}
