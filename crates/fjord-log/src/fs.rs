//! File access for the log, behind a thin wrapper so that tests can simulate power loss.
//!
//! Every file operation of `fjord-log` goes through [`Fs`] (names: open, rename, remove,
//! directory fsync) or [`LogFile`] (one open file: positional reads and writes, truncate,
//! fsync). In normal builds `Fs` is zero-sized and `LogFile` is a `File`: each method is an
//! inlined call into `std`, so appends and fetches cost exactly what they cost without it.
//!
//! Test builds can attach a [`sim::SimFs`] instead. It still does the real file I/O (reads
//! go straight to the file), but it also records every mutation into a model of what the
//! disk has made durable: bytes written and not yet fsynced, and directory entries created,
//! renamed or removed and not yet made durable by a directory fsync. A simulated crash drops
//! (some of) what was not durable and rewrites the directory accordingly. It can also fail a
//! chosen fsync, or pretend to fsync without doing so, to show the tests catch a missing one.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

#[cfg(test)]
pub(crate) mod sim;

/// How [`Fs::open`] treats an existing or missing file. Files are always opened read-write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenMode {
    /// The file must exist; its contents are kept.
    Existing,
    /// The file is created if missing and emptied if present.
    Truncate,
    /// The file must not exist yet.
    CreateNew,
}

/// The file system the log works on. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Fs {
    #[cfg(test)]
    sim: Option<std::sync::Arc<sim::SimFs>>,
}

impl Fs {
    /// The real file system.
    pub fn real() -> Fs {
        Fs::default()
    }

    /// A file system that mirrors every mutation into `sim`'s durability model.
    #[cfg(test)]
    pub fn simulated(sim: std::sync::Arc<sim::SimFs>) -> Fs {
        Fs { sim: Some(sim) }
    }

    pub fn open(&self, path: &Path, mode: OpenMode) -> io::Result<LogFile> {
        #[cfg(test)]
        if let Some(sim) = &self.sim {
            return sim.open(path, mode);
        }
        Ok(LogFile::from_std(open_std(path, mode)?))
    }

    /// Whole contents of a (small) file.
    pub fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    pub fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    pub fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        #[cfg(test)]
        if let Some(sim) = &self.sim {
            return sim.rename(from, to);
        }
        std::fs::rename(from, to)
    }

    /// Sets the modification time of the file at `path` (milliseconds since the epoch;
    /// negative leaves it alone): a compacted segment keeps the age of the one it replaces.
    pub fn set_modified_ms(&self, path: &Path, ms: i64) -> io::Result<()> {
        if ms < 0 {
            return Ok(());
        }
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
        File::options().write(true).open(path)?.set_modified(when)
    }

    pub fn remove_file(&self, path: &Path) -> io::Result<()> {
        #[cfg(test)]
        if let Some(sim) = &self.sim {
            return sim.remove_file(path);
        }
        std::fs::remove_file(path)
    }

    /// Makes creations, renames and removals of entries in `dir` durable.
    pub fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(test)]
        if let Some(sim) = &self.sim {
            return sim.sync_dir(dir);
        }
        File::open(dir)?.sync_all()
    }

    pub fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    /// Names of the entries of `dir`.
    pub fn list(&self, dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect()
    }

    pub fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::remove_dir_all(dir)
    }
}

pub(crate) fn open_std(path: &Path, mode: OpenMode) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true);
    match mode {
        OpenMode::Existing => {}
        OpenMode::Truncate => {
            o.create(true).truncate(true);
        }
        OpenMode::CreateNew => {
            o.create_new(true);
        }
    }
    o.open(path)
}

/// One open file of the log.
pub(crate) struct LogFile {
    file: File,
    #[cfg(test)]
    sim: Option<sim::SimHandle>,
}

impl LogFile {
    fn from_std(file: File) -> LogFile {
        LogFile {
            file,
            #[cfg(test)]
            sim: None,
        }
    }

    #[inline]
    pub fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.file.read_at(buf, pos)
    }

    #[inline]
    pub fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.file.write_all_at(buf, pos)?;
        #[cfg(test)]
        if let Some(s) = &self.sim {
            s.wrote(buf, pos);
        }
        Ok(())
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        #[cfg(test)]
        if let Some(s) = &self.sim {
            s.set_len(len);
        }
        Ok(())
    }

    /// fsync of the file's data (and of the metadata needed to read it back, such as its size).
    pub fn sync_data(&self) -> io::Result<()> {
        #[cfg(test)]
        if let Some(s) = &self.sim {
            return s.sync();
        }
        self.file.sync_data()
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}
