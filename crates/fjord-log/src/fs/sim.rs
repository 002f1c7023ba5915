//! A power-loss simulator for the log's files (test builds only).
//!
//! The real files are still read and written, so the log behaves exactly as in production.
//! Alongside, [`SimFs`] keeps a model of what a disk would have made durable:
//!
//! - per file (inode): the durable contents, plus the writes and truncations made since the
//!   last fsync of that file;
//! - per directory: the durable set of names, plus the creations, renames and removals made
//!   since the last fsync of that directory.
//!
//! [`SimFs::crash`] then plays a power loss: a prefix of the pending directory operations
//! reaches the disk (a journaling file system commits metadata in order), and each file keeps
//! its durable contents plus some of its pending changes: none, all, an in-order prefix (the
//! last write possibly torn), all sizes but zeroed data, or an arbitrary subset. The directory
//! on disk is rewritten to that state. Files the log never touched (planted by a test) are
//! left alone.
//!
//! It can also fail a chosen fsync (as Linux does on a writeback error, the pending changes
//! are then dropped: a later fsync will not make them durable), cut the power at a chosen
//! fsync (nothing after it is recorded), or pretend to fsync without doing so, which stands
//! in for a log that forgot an fsync call.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use super::{open_std, LogFile, OpenMode};

/// Which kind of fsync a skip rule is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncKind {
    /// fsync of a file's data.
    Data,
    /// fsync of a directory.
    Dir,
}

type SkipRule = Box<dyn Fn(SyncKind, &Path) -> bool + Send + Sync>;
type SyncHook = Arc<dyn Fn(SyncKind, &Path) + Send + Sync>;

/// Torn writes break at sector boundaries: a disk writes whole sectors or none.
const SECTOR: u64 = 512;

#[derive(Debug, Clone)]
enum FileOp {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Clone)]
enum DirOp {
    Create(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
}

struct SimFile {
    path: PathBuf,
    durable: Vec<u8>,
    pending: Vec<FileOp>,
}

struct State {
    rng: u64,
    files: HashMap<u64, SimFile>,
    /// Names as the running process sees them.
    names: HashMap<PathBuf, u64>,
    /// Names a crash right now would certainly keep.
    durable_names: HashMap<PathBuf, u64>,
    dir_ops: Vec<DirOp>,
    /// Every path the log opened, renamed or removed: what a crash rewrites.
    seen: HashSet<PathBuf>,
    next_id: u64,
    /// fsync calls so far (file and directory).
    syncs: u64,
    fail_at: Option<u64>,
    power_off_at: Option<u64>,
    off: bool,
    failed: u64,
    skip: Option<SkipRule>,
    hook: Option<SyncHook>,
}

/// The simulated disk. Share it between successive opens of a log.
pub(crate) struct SimFs {
    state: Mutex<State>,
}

/// What an open [`LogFile`] needs to report its mutations.
pub(crate) struct SimHandle {
    sim: Arc<SimFs>,
    /// `None` for files opened after the power went off: nothing about them is recorded.
    id: Option<u64>,
}

fn injected(what: &str) -> io::Error {
    io::Error::other(format!("injected failure: {what}"))
}

impl SimFs {
    pub fn new(seed: u64) -> Arc<SimFs> {
        Arc::new(SimFs {
            state: Mutex::new(State {
                rng: seed ^ 0x9e37_79b9_7f4a_7c15,
                files: HashMap::new(),
                names: HashMap::new(),
                durable_names: HashMap::new(),
                dir_ops: Vec::new(),
                seen: HashSet::new(),
                next_id: 0,
                syncs: 0,
                fail_at: None,
                power_off_at: None,
                off: false,
                failed: 0,
                skip: None,
                hook: None,
            }),
        })
    }

    /// The `n`th fsync from now (1 = the next one) fails.
    pub fn fail_sync_in(&self, n: u64) {
        let mut st = self.state.lock();
        st.fail_at = Some(st.syncs + n);
    }

    /// The power goes off at the `n`th fsync from now (1 = the next one): that fsync and
    /// everything after it never reach the disk.
    pub fn power_off_in(&self, n: u64) {
        let mut st = self.state.lock();
        st.power_off_at = Some(st.syncs + n);
    }

    /// Whether the power went off: the process is a ghost and nothing it does counts.
    pub fn is_off(&self) -> bool {
        self.state.lock().off
    }

    /// fsyncs for which `rule` says true report success but make nothing durable.
    pub fn skip_syncs(&self, rule: impl Fn(SyncKind, &Path) -> bool + Send + Sync + 'static) {
        self.state.lock().skip = Some(Box::new(rule));
    }

    /// Calls `hook` on the fsyncing thread at every fsync, before it takes effect.
    pub fn on_sync(&self, hook: impl Fn(SyncKind, &Path) + Send + Sync + 'static) {
        self.state.lock().hook = Some(Arc::new(hook));
    }

    fn run_hook(&self, kind: SyncKind, path: &Path) {
        let hook = self.state.lock().hook.clone();
        if let Some(hook) = hook {
            hook(kind, path);
        }
    }

    /// fsync calls seen so far.
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs
    }

    /// Injected fsync failures so far.
    pub fn failures(&self) -> u64 {
        self.state.lock().failed
    }

    pub(super) fn open(self: &Arc<Self>, path: &Path, mode: OpenMode) -> io::Result<LogFile> {
        let mut st = self.state.lock();
        st.seen.insert(path.to_path_buf());
        if !st.off {
            st.adopt(path);
        }
        let file = open_std(path, mode)?;
        let id = if st.off {
            None
        } else if let Some(&id) = st.names.get(path) {
            if mode == OpenMode::Truncate {
                st.file(id).pending.push(FileOp::SetLen(0));
            }
            Some(id)
        } else {
            let id = st.next_id;
            st.next_id += 1;
            st.files.insert(
                id,
                SimFile {
                    path: path.to_path_buf(),
                    durable: Vec::new(),
                    pending: Vec::new(),
                },
            );
            st.names.insert(path.to_path_buf(), id);
            st.dir_ops.push(DirOp::Create(path.to_path_buf(), id));
            Some(id)
        };
        Ok(LogFile {
            file,
            sim: Some(SimHandle {
                sim: Arc::clone(self),
                id,
            }),
        })
    }

    pub(super) fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.seen.insert(from.to_path_buf());
        st.seen.insert(to.to_path_buf());
        if !st.off {
            st.adopt(from);
            st.adopt(to);
        }
        std::fs::rename(from, to)?;
        if !st.off {
            if let Some(id) = st.names.remove(from) {
                st.names.insert(to.to_path_buf(), id);
                st.file(id).path = to.to_path_buf();
            }
            st.dir_ops
                .push(DirOp::Rename(from.to_path_buf(), to.to_path_buf()));
        }
        Ok(())
    }

    pub(super) fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state.lock();
        st.seen.insert(path.to_path_buf());
        if !st.off {
            st.adopt(path);
        }
        std::fs::remove_file(path)?;
        if !st.off {
            st.names.remove(path);
            st.dir_ops.push(DirOp::Remove(path.to_path_buf()));
        }
        Ok(())
    }

    pub(super) fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?;
        self.run_hook(SyncKind::Dir, dir);
        let mut st = self.state.lock();
        match st.sync_outcome(SyncKind::Dir, dir) {
            Outcome::Ghost | Outcome::Skipped => Ok(()),
            Outcome::Fail => {
                // The entries' fate is unknown; assume the worst: they never reach the disk.
                st.dir_ops.retain(|op| op_dir(op) != dir);
                Err(injected("directory fsync"))
            }
            Outcome::Sync => {
                let (mine, rest): (Vec<DirOp>, Vec<DirOp>) = std::mem::take(&mut st.dir_ops)
                    .into_iter()
                    .partition(|op| op_dir(op) == dir);
                st.dir_ops = rest;
                for op in &mine {
                    apply_dir_op(&mut st.durable_names, op);
                }
                Ok(())
            }
        }
    }

    /// Plays a power loss and rewrites the files on disk to what survived it. The log must
    /// have been dropped first. Afterwards everything on disk counts as durable.
    pub fn crash(&self) {
        let mut st = self.state.lock();
        let n = st.dir_ops.len();
        let keep_ops = match st.next_below(5) {
            0 | 1 => 0,
            2 => n,
            _ => st.next_below(n as u64 + 1) as usize,
        };
        let mut names = st.durable_names.clone();
        let ops: Vec<DirOp> = st.dir_ops[..keep_ops].to_vec();
        for op in &ops {
            apply_dir_op(&mut names, op);
        }
        let mut contents: HashMap<PathBuf, Vec<u8>> = HashMap::new();
        let mut ids: Vec<(PathBuf, u64)> = names.iter().map(|(p, &id)| (p.clone(), id)).collect();
        ids.sort();
        for (path, id) in &ids {
            let c = st.crash_contents(*id);
            contents.insert(path.clone(), c);
        }
        for path in &st.seen {
            match std::fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => panic!("crash: removing {}: {e}", path.display()),
            }
        }
        for (path, data) in &contents {
            std::fs::write(path, data)
                .unwrap_or_else(|e| panic!("crash: writing {}: {e}", path.display()));
        }
        st.files.retain(|id, _| names.values().any(|v| v == id));
        for (path, id) in &names {
            let f = st.files.get_mut(id).expect("named file is tracked");
            f.durable = contents[path].clone();
            f.pending.clear();
            f.path = path.clone();
        }
        st.seen = names.keys().cloned().collect();
        st.durable_names = names.clone();
        st.names = names;
        st.dir_ops.clear();
        st.off = false;
        st.power_off_at = None;
        st.fail_at = None;
    }
}

enum Outcome {
    /// The power is off: nothing happens.
    Ghost,
    Skipped,
    Fail,
    Sync,
}

impl State {
    fn file(&mut self, id: u64) -> &mut SimFile {
        self.files.get_mut(&id).expect("tracked file")
    }

    /// Starts tracking a file that existed before the log touched it: it is durable as is.
    fn adopt(&mut self, path: &Path) {
        if self.names.contains_key(path) {
            return;
        }
        let Ok(data) = std::fs::read(path) else {
            return;
        };
        let id = self.next_id;
        self.next_id += 1;
        self.files.insert(
            id,
            SimFile {
                path: path.to_path_buf(),
                durable: data,
                pending: Vec::new(),
            },
        );
        self.names.insert(path.to_path_buf(), id);
        self.durable_names.insert(path.to_path_buf(), id);
    }

    fn sync_outcome(&mut self, kind: SyncKind, path: &Path) -> Outcome {
        if self.off {
            return Outcome::Ghost;
        }
        self.syncs += 1;
        if self.power_off_at == Some(self.syncs) {
            self.off = true;
            return Outcome::Ghost;
        }
        if self.fail_at == Some(self.syncs) {
            self.failed += 1;
            return Outcome::Fail;
        }
        if self.skip.as_ref().is_some_and(|rule| rule(kind, path)) {
            return Outcome::Skipped;
        }
        Outcome::Sync
    }

    fn next(&mut self) -> u64 {
        // splitmix64
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn next_below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// What a file holds after the power loss: its durable bytes plus some pending changes.
    fn crash_contents(&mut self, id: u64) -> Vec<u8> {
        let (mut data, pending) = {
            let f = &self.files[&id];
            (f.durable.clone(), f.pending.clone())
        };
        if pending.is_empty() {
            return data;
        }
        match self.next_below(5) {
            0 => {}
            1 => pending
                .iter()
                .for_each(|op| apply_file_op(&mut data, op, false)),
            2 => {
                let k = self.next_below(pending.len() as u64 + 1) as usize;
                pending[..k]
                    .iter()
                    .for_each(|op| apply_file_op(&mut data, op, false));
                if let Some(FileOp::Write(pos, bytes)) = pending.get(k) {
                    // The write got as far as some sector boundary inside it.
                    let end = pos + self.next_below(bytes.len() as u64);
                    let torn = (end / SECTOR * SECTOR).saturating_sub(*pos) as usize;
                    apply_file_op(
                        &mut data,
                        &FileOp::Write(*pos, bytes[..torn].to_vec()),
                        false,
                    );
                }
            }
            3 => pending
                .iter()
                .for_each(|op| apply_file_op(&mut data, op, true)),
            _ => {
                for op in &pending {
                    if self.next_below(2) == 0 {
                        apply_file_op(&mut data, op, false);
                    }
                }
            }
        }
        data
    }
}

fn apply_file_op(data: &mut Vec<u8>, op: &FileOp, zeroed: bool) {
    match op {
        FileOp::Write(pos, bytes) => {
            let (pos, end) = (*pos as usize, *pos as usize + bytes.len());
            if data.len() < end {
                data.resize(end, 0);
            }
            if zeroed {
                data[pos..end].fill(0);
            } else {
                data[pos..end].copy_from_slice(bytes);
            }
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

fn op_dir(op: &DirOp) -> &Path {
    let p = match op {
        DirOp::Create(p, _) | DirOp::Remove(p) => p,
        DirOp::Rename(_, to) => to,
    };
    p.parent().unwrap_or(Path::new(""))
}

fn apply_dir_op(names: &mut HashMap<PathBuf, u64>, op: &DirOp) {
    match op {
        DirOp::Create(p, id) => {
            names.insert(p.clone(), *id);
        }
        DirOp::Rename(from, to) => {
            if let Some(id) = names.remove(from) {
                names.insert(to.clone(), id);
            }
        }
        DirOp::Remove(p) => {
            names.remove(p);
        }
    }
}

impl SimHandle {
    pub(super) fn wrote(&self, buf: &[u8], pos: u64) {
        let Some(id) = self.id else { return };
        let mut st = self.sim.state.lock();
        if !st.off {
            st.file(id).pending.push(FileOp::Write(pos, buf.to_vec()));
        }
    }

    pub(super) fn set_len(&self, len: u64) {
        let Some(id) = self.id else { return };
        let mut st = self.sim.state.lock();
        if !st.off {
            st.file(id).pending.push(FileOp::SetLen(len));
        }
    }

    pub(super) fn sync(&self) -> io::Result<()> {
        let Some(id) = self.id else {
            return Ok(());
        };
        let path = self.sim.state.lock().files.get(&id).map(|f| f.path.clone());
        if let Some(path) = &path {
            self.sim.run_hook(SyncKind::Data, path);
        }
        let mut st = self.sim.state.lock();
        let path = match st.files.get(&id) {
            Some(f) => f.path.clone(),
            // Removed from the model by a crash while this handle lived on: a ghost.
            None => return Ok(()),
        };
        match st.sync_outcome(SyncKind::Data, &path) {
            Outcome::Ghost | Outcome::Skipped => Ok(()),
            Outcome::Fail => {
                // As Linux does after a writeback error: the dirty pages are marked clean
                // and dropped from the write-back path. They will never reach the disk.
                st.file(id).pending.clear();
                Err(injected("fsync"))
            }
            Outcome::Sync => {
                let f = st.file(id);
                let pending = std::mem::take(&mut f.pending);
                for op in &pending {
                    apply_file_op(&mut f.durable, op, false);
                }
                Ok(())
            }
        }
    }
}
