//! The file layer under the quorum's storage, as a trait so that one storage
//! implementation runs both on disk and in the deterministic simulation.
//!
//! The contract is the one a POSIX file system gives after fsync: `append` and
//! `truncate` change the file but are only guaranteed to survive a crash once `sync` has
//! returned; `write_atomic` replaces a whole file and is durable when it returns (temp
//! file, fsync, rename, fsync of the directory). [`MemDir`] models exactly that contract,
//! keeping a durable and a volatile copy of every file, so that a simulated crash loses
//! what a real one may lose and nothing more.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

pub trait DurableDir: Send + Sync + 'static {
    /// The file's current content, `None` if it does not exist.
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>>;
    /// Appends to the file, creating it. Not durable until [`DurableDir::sync`].
    fn append(&self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Cuts the file to `len` bytes. Not durable until [`DurableDir::sync`].
    fn truncate(&self, name: &str, len: u64) -> io::Result<()>;
    /// Makes every earlier `append`/`truncate` of the file durable, and its directory entry.
    fn sync(&self, name: &str) -> io::Result<()>;
    /// Replaces the file with `data` all at once; durable on return. After a crash the file
    /// holds either the old content or the new, never a mix.
    fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()>;
    /// Where this directory is, for error messages.
    fn describe(&self, name: &str) -> String;
}

/// A directory on disk.
pub struct FsDir {
    path: PathBuf,
    /// Files created since the directory was last fsynced: their entries are not yet
    /// durable, so the next `sync` of one of them fsyncs the directory too.
    created: Mutex<Vec<String>>,
}

impl FsDir {
    /// Opens `path`, creating it (and making its entry in the parent durable) if missing.
    pub fn open(path: &Path) -> io::Result<FsDir> {
        if !path.exists() {
            fs::create_dir_all(path)?;
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        Ok(FsDir {
            path: path.to_path_buf(),
            created: Mutex::new(Vec::new()),
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl DurableDir for FsDir {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.file(name)) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn append(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let path = self.file(name);
        let existed = path.exists();
        let mut file = OpenOptions::new().append(true).create(true).open(&path)?;
        if !existed {
            self.created.lock().push(name.to_string());
        }
        file.write_all(data)
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        OpenOptions::new()
            .write(true)
            .open(self.file(name))?
            .set_len(len)
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        // fsync through a fresh descriptor flushes the inode's dirty pages all the same.
        File::open(self.file(name))?.sync_data()?;
        let mut created = self.created.lock();
        if created.iter().any(|n| n == name) {
            sync_dir(&self.path)?;
            created.retain(|n| n != name);
        }
        Ok(())
    }

    fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let tmp = self.file(&format!("{name}.tmp"));
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, self.file(name))?;
        sync_dir(&self.path)
    }

    fn describe(&self, name: &str) -> String {
        self.file(name).display().to_string()
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[derive(Default, Clone)]
struct MemFile {
    durable: Option<Vec<u8>>,
    current: Option<Vec<u8>>,
}

#[derive(Default)]
struct MemFiles {
    files: HashMap<String, MemFile>,
    /// Bumped by every crash: handles from before it are the dead process's and fail.
    generation: u64,
}

/// An in-memory directory with an explicit durable/volatile split, for simulations: a
/// [`MemDir::crash`] keeps only what was synced (or atomically written), and fences every
/// handle of the crashed process so that nothing it still holds can write afterwards.
#[derive(Clone)]
pub struct MemDir {
    shared: Arc<Mutex<MemFiles>>,
    generation: u64,
    label: String,
}

impl MemDir {
    pub fn new(label: impl Into<String>) -> MemDir {
        MemDir {
            shared: Arc::new(Mutex::new(MemFiles::default())),
            generation: 0,
            label: label.into(),
        }
    }

    /// Simulates a crash: every unsynced change is lost, and `torn_tail` (bytes of an
    /// append that was under way and never acknowledged) may be left at the end of file
    /// `torn_file`, as a real disk may persist part of an unsynced write. Returns the handle
    /// for the restarted process.
    pub fn crash(&self, torn_file: &str, torn_tail: &[u8]) -> MemDir {
        let mut files = self.shared.lock();
        files.generation += 1;
        for file in files.files.values_mut() {
            file.current = file.durable.clone();
        }
        if !torn_tail.is_empty() {
            if let Some(file) = files.files.get_mut(torn_file) {
                if let Some(data) = file.durable.as_mut() {
                    data.extend_from_slice(torn_tail);
                    file.current = file.durable.clone();
                }
            }
        }
        MemDir {
            shared: self.shared.clone(),
            generation: files.generation,
            label: self.label.clone(),
        }
    }

    fn with<R>(
        &self,
        f: impl FnOnce(&mut HashMap<String, MemFile>) -> io::Result<R>,
    ) -> io::Result<R> {
        let mut files = self.shared.lock();
        if files.generation != self.generation {
            return Err(io::Error::other(
                "this process crashed; its storage is gone",
            ));
        }
        f(&mut files.files)
    }
}

impl DurableDir for MemDir {
    fn read(&self, name: &str) -> io::Result<Option<Vec<u8>>> {
        self.with(|files| Ok(files.get(name).and_then(|f| f.current.clone())))
    }

    fn append(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.with(|files| {
            let file = files.entry(name.to_string()).or_default();
            file.current
                .get_or_insert_with(Vec::new)
                .extend_from_slice(data);
            Ok(())
        })
    }

    fn truncate(&self, name: &str, len: u64) -> io::Result<()> {
        self.with(
            |files| match files.get_mut(name).and_then(|f| f.current.as_mut()) {
                Some(data) => {
                    data.truncate(len as usize);
                    Ok(())
                }
                None => Err(io::Error::new(io::ErrorKind::NotFound, name.to_string())),
            },
        )
    }

    fn sync(&self, name: &str) -> io::Result<()> {
        self.with(|files| match files.get_mut(name) {
            Some(file) => {
                file.durable = file.current.clone();
                Ok(())
            }
            None => Err(io::Error::new(io::ErrorKind::NotFound, name.to_string())),
        })
    }

    fn write_atomic(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.with(|files| {
            let file = files.entry(name.to_string()).or_default();
            file.current = Some(data.to_vec());
            file.durable = Some(data.to_vec());
            Ok(())
        })
    }

    fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_crash_keeps_only_synced_data_and_fences_old_handles() {
        let dir = MemDir::new("n1");
        dir.append("log", b"abc").unwrap();
        dir.sync("log").unwrap();
        dir.append("log", b"def").unwrap();
        dir.write_atomic("state", b"v1").unwrap();
        let after = dir.crash("log", b"");
        assert_eq!(after.read("log").unwrap().unwrap(), b"abc");
        assert_eq!(after.read("state").unwrap().unwrap(), b"v1");
        assert!(
            dir.append("log", b"x").is_err(),
            "the crashed process wrote"
        );
        let torn = after.crash("log", b"zz");
        assert_eq!(torn.read("log").unwrap().unwrap(), b"abczz");
    }

    #[test]
    fn fs_dir_appends_truncates_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = FsDir::open(&tmp.path().join("q")).unwrap();
        assert!(dir.read("log").unwrap().is_none());
        dir.append("log", b"abcdef").unwrap();
        dir.sync("log").unwrap();
        dir.truncate("log", 2).unwrap();
        dir.sync("log").unwrap();
        assert_eq!(dir.read("log").unwrap().unwrap(), b"ab");
        dir.write_atomic("state", b"one").unwrap();
        dir.write_atomic("state", b"two").unwrap();
        assert_eq!(dir.read("state").unwrap().unwrap(), b"two");
        assert!(dir.read("state.tmp").unwrap().is_none());
    }
}
