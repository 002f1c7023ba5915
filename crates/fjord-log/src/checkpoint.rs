//! Small checkpoint files of a partition directory: log start offset, recovery point, the
//! leader-epoch cache and the clean-shutdown marker. All are replaced atomically
//! (temp file, fsync, rename, fsync directory) so a crash leaves either the old or the new one.

use std::path::Path;

use crate::error::IoContext;
use crate::fs::{Fs, OpenMode};
use crate::LogError;

pub(crate) const LOG_START_FILE: &str = "log-start-offset-checkpoint";
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// The first offset not yet compacted (the start of the dirty part of a compacted log).
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";

/// Files the log replaces with [`write_atomic`]: a `<name>.tmp` beside them is a leftover of
/// a write that a crash interrupted.
pub(crate) const ATOMIC_FILES: [&str; 4] = [
    LOG_START_FILE,
    RECOVERY_POINT_FILE,
    LEADER_EPOCH_FILE,
    CLEANER_CHECKPOINT_FILE,
];

pub(crate) const TMP_SUFFIX: &str = ".tmp";
const VERSION: &str = "0";

/// Whether `name` is the temporary file of an interrupted [`write_atomic`].
pub(crate) fn is_atomic_temp(name: &str) -> bool {
    name.strip_suffix(TMP_SUFFIX)
        .is_some_and(|stem| ATOMIC_FILES.contains(&stem))
}

/// Makes creations, renames and unlinks inside `dir` durable.
pub(crate) fn sync_dir(fs: &Fs, dir: &Path) -> Result<(), LogError> {
    fs.sync_dir(dir)
        .ctx(|| format!("syncing directory {}", dir.display()))
}

/// Replaces `dir/name` with `contents` atomically and durably: temp file, fsync, rename,
/// fsync of the directory. A crash at any point leaves the old or the new contents.
pub(crate) fn write_atomic(
    fs: &Fs,
    dir: &Path,
    name: &str,
    contents: &[u8],
) -> Result<(), LogError> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let dst = dir.join(name);
    let f = fs
        .open(&tmp, OpenMode::Truncate)
        .ctx(|| format!("creating {}", tmp.display()))?;
    f.write_all_at(contents, 0)
        .and_then(|()| f.sync_data())
        .ctx(|| format!("writing {}", tmp.display()))?;
    drop(f);
    fs.rename(&tmp, &dst)
        .ctx(|| format!("renaming {}", tmp.display()))?;
    sync_dir(fs, dir)
}

/// Writes a single-offset checkpoint: version line, then the offset.
pub(crate) fn write_offset(fs: &Fs, dir: &Path, name: &str, offset: i64) -> Result<(), LogError> {
    write_atomic(fs, dir, name, format!("{VERSION}\n{offset}\n").as_bytes())
}

/// Reads a single-offset checkpoint; a missing or unreadable one counts as absent, because the
/// log can always fall back to what the segment files say.
pub(crate) fn read_offset(fs: &Fs, dir: &Path, name: &str) -> Option<i64> {
    let text = String::from_utf8(fs.read(&dir.join(name)).ok()?).ok()?;
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
    pub fn load(fs: &Fs, dir: &Path) -> EpochCache {
        let Some(text) = fs
            .read(&dir.join(LEADER_EPOCH_FILE))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
        else {
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

    pub fn store(&self, fs: &Fs, dir: &Path) -> Result<(), LogError> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for (e, o) in &self.entries {
            text.push_str(&format!("{e} {o}\n"));
        }
        write_atomic(fs, dir, LEADER_EPOCH_FILE, text.as_bytes())
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
        let fs = Fs::real();
        assert_eq!(read_offset(&fs, dir.path(), LOG_START_FILE), None);
        write_offset(&fs, dir.path(), LOG_START_FILE, 42).unwrap();
        assert_eq!(read_offset(&fs, dir.path(), LOG_START_FILE), Some(42));
        assert!(!dir.path().join("log-start-offset-checkpoint.tmp").exists());
        assert!(is_atomic_temp("log-start-offset-checkpoint.tmp"));
        assert!(!is_atomic_temp("00000000000000000000.log.tmp"));
    }

    /// A crash anywhere inside an atomic replacement leaves the old or the new contents,
    /// never a mix, an empty file or nothing; and once it returned, only the new one.
    #[test]
    fn atomic_write_survives_a_crash_at_any_point() {
        use crate::fs::sim::SimFs;
        for seed in 0..200u64 {
            let dir = tempfile::tempdir().unwrap();
            let sim = SimFs::new(seed);
            let fs = Fs::simulated(sim.clone());
            write_offset(&fs, dir.path(), LOG_START_FILE, 7).unwrap();
            sim.crash();
            assert_eq!(read_offset(&fs, dir.path(), LOG_START_FILE), Some(7));
            // Cut the power at one of the three fsyncs of the next replacement, or not at all.
            let cut = seed % 4;
            if cut > 0 {
                sim.power_off_in(cut);
            }
            write_offset(&fs, dir.path(), LOG_START_FILE, 1234).unwrap();
            let completed = !sim.is_off();
            sim.crash();
            let got = read_offset(&fs, dir.path(), LOG_START_FILE);
            if completed {
                assert_eq!(got, Some(1234), "seed {seed}");
            } else {
                assert!(got == Some(7) || got == Some(1234), "seed {seed}: {got:?}");
            }
        }
    }

    #[test]
    fn epoch_cache_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EpochCache::default();
        assert!(c.assign(1, 0));
        assert!(!c.assign(1, 5));
        assert!(c.assign(3, 10));
        assert!(c.assign(5, 20));
        c.store(&Fs::real(), dir.path()).unwrap();
        assert_eq!(EpochCache::load(&Fs::real(), dir.path()), c);
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
