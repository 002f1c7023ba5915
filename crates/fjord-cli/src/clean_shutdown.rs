//! The node's clean-shutdown marker, so that the start log can say how the previous run of
//! a data directory ended (like Kafka's `.kafka_cleanshutdown`).
//!
//! The marker is written, atomically, only after a shutdown has flushed every log, and is
//! removed at start once this server holds the data directory's lock. A start that finds
//! no marker in a directory that has run before therefore follows a crash, a `kill -9` or a
//! power loss, and the partition logs were recovered from their recovery points. Each
//! partition keeps its own marker too (in `fjord-log`); this one only feeds the log line.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

/// The marker's name in the data directory.
pub const MARKER: &str = ".clean-shutdown";

/// How the previous run of a data directory ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviousRun {
    /// The directory had never been used by a server.
    None,
    Clean,
    Unclean,
}

/// Whether a server has used `dir` before; asked before the start writes its identity.
pub fn has_run_before(dir: &Path) -> bool {
    dir.join("meta.properties").exists()
}

/// Removes the marker and says how the previous run ended. Call only while holding the
/// directory's lock. The removal is made durable before the server serves anything, so a
/// crash in this run can never be mistaken for a clean shutdown at the next start.
pub fn take(dir: &Path, ran_before: bool) -> io::Result<PreviousRun> {
    let found = match fs::remove_file(dir.join(MARKER)) {
        Ok(()) => {
            sync_dir(dir)?;
            true
        }
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    };
    Ok(match (ran_before, found) {
        (false, _) => PreviousRun::None,
        (true, true) => PreviousRun::Clean,
        (true, false) => PreviousRun::Unclean,
    })
}

/// Writes the marker after a clean shutdown: temp file, fsync, rename, fsync of the
/// directory. The server has released the data directory's lock by now, so the lock is
/// taken again first; if another server got it meanwhile the marker is not written, since
/// that server's run is not this one's to vouch for.
pub fn write(dir: &Path) -> io::Result<bool> {
    let lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(".lock"))?;
    // SAFETY: flock on a descriptor owned by `lock`, which outlives the call; the OS drops
    // the lock when `lock` is closed at the end of this function.
    let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == ErrorKind::WouldBlock {
            return Ok(false);
        }
        return Err(e);
    }
    let tmp = dir.join(format!("{MARKER}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(format!("version={}\n", env!("CARGO_PKG_VERSION")).as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(MARKER))?;
    sync_dir(dir)?;
    Ok(true)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(take(dir.path(), false).unwrap(), PreviousRun::None);
        assert_eq!(take(dir.path(), true).unwrap(), PreviousRun::Unclean);
        assert!(write(dir.path()).unwrap());
        assert!(dir.path().join(MARKER).is_file());
        assert!(!dir.path().join(format!("{MARKER}.tmp")).exists());
        assert_eq!(take(dir.path(), true).unwrap(), PreviousRun::Clean);
        assert!(!dir.path().join(MARKER).exists());
        assert_eq!(take(dir.path(), true).unwrap(), PreviousRun::Unclean);
    }
}
