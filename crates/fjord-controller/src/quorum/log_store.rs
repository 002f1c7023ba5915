//! The durable raft log: an append-only file of CRC-framed entries (`raft.log`) and a
//! small state file (`raft.state`: vote, committed log id, purged log id) that is replaced
//! atomically.
//!
//! Entries are acknowledged to openraft (the `LogFlushed` callback) only after the
//! appended frames are fsynced. The state file is written with temp file, fsync, rename
//! and directory fsync, so it is always whole. On open, a torn tail of `raft.log` (the
//! last append, never acknowledged) is cut; damage before a valid frame stops the node.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, RaftLogReader, StorageIOError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::dir::DurableDir;
use super::frame;
use super::types::{Entry, LogId, MetadataRaft, StorageError, Vote};
use crate::error::ControllerError;

pub(crate) const LOG_FILE: &str = "raft.log";
const STATE_FILE: &str = "raft.state";

/// What must survive a restart besides the entries themselves.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct RaftState {
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// Every entry up to this one is gone (covered by a snapshot); later ones may still
    /// have frames at the head of `raft.log` until the file is rewritten.
    purged: Option<LogId>,
}

struct Stored {
    entry: Entry,
    /// Where the entry's frame starts in `raft.log`, to truncate there.
    offset: u64,
}

struct Inner {
    dir: Arc<dyn DurableDir>,
    entries: BTreeMap<u64, Stored>,
    state: RaftState,
    /// Bytes of `raft.log`, all durable.
    file_len: u64,
    /// How many times entries were cut off the end (conflicting entries a new leader
    /// replaced).
    truncations: u64,
}

/// The log storage handed to openraft. Cloning shares the same log: openraft's
/// replication tasks read through readers made by `get_log_reader` while the core
/// appends.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
    /// For a replication task's reader: `truncations` when it was made.
    reader_since: Option<u64>,
}

impl LogStore {
    /// Opens the log kept in `dir`, recovering it as described in the module docs.
    pub fn open(dir: Arc<dyn DurableDir>) -> Result<LogStore, ControllerError> {
        let state = match read_file(&*dir, STATE_FILE)? {
            None => RaftState::default(),
            Some(data) => match frame::decode::<RaftState>(&data) {
                Some((state, used)) if used == data.len() => state,
                // Written atomically, so it is whole or absent: anything else is damage.
                _ => {
                    return Err(ControllerError::Corrupt(format!(
                        "{} is damaged; refusing to start without the raft vote",
                        dir.describe(STATE_FILE)
                    )))
                }
            },
        };
        let data = read_file(&*dir, LOG_FILE)?.unwrap_or_default();
        let decoded = frame::decode_all::<Entry>(&dir.describe(LOG_FILE), &data)?;
        if decoded.valid_len < data.len() as u64 {
            tracing::warn!(
                path = %dir.describe(LOG_FILE),
                valid_bytes = decoded.valid_len,
                dropped_bytes = data.len() as u64 - decoded.valid_len,
                "raft log ends in a torn write (an append that was never acknowledged); cutting it"
            );
            dir.truncate(LOG_FILE, decoded.valid_len)
                .and_then(|_| dir.sync(LOG_FILE))
                .map_err(|e| {
                    ControllerError::io(format!("truncate {}", dir.describe(LOG_FILE)), e)
                })?;
        }
        let purged_index = state.purged.map(|l| l.index);
        let mut entries = BTreeMap::new();
        let mut prev: Option<u64> = None;
        for (offset, entry) in decoded.values {
            let index = entry.log_id.index;
            if let Some(p) = prev {
                if index != p + 1 {
                    return Err(ControllerError::Corrupt(format!(
                        "{}: entry {index} follows entry {p}; the log has a gap",
                        dir.describe(LOG_FILE)
                    )));
                }
            }
            prev = Some(index);
            if purged_index.is_some_and(|p| index <= p) {
                continue;
            }
            entries.insert(index, Stored { entry, offset });
        }
        if let (Some(p), Some((&first, _))) = (purged_index, entries.first_key_value()) {
            if first != p + 1 {
                return Err(ControllerError::Corrupt(format!(
                    "{}: the log resumes at entry {first} but only entries up to {p} were purged",
                    dir.describe(LOG_FILE)
                )));
            }
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir,
                entries,
                state,
                file_len: decoded.valid_len,
                truncations: 0,
            })),
            reader_since: None,
        })
    }

    /// The vote as last made durable.
    pub fn vote(&self) -> Option<Vote> {
        self.inner.lock().state.vote
    }

    /// Every entry still held, in order; for inspection and tests.
    pub fn entries(&self) -> Vec<Entry> {
        self.inner
            .lock()
            .entries
            .values()
            .map(|s| s.entry.clone())
            .collect()
    }
}

fn read_file(dir: &dyn DurableDir, name: &str) -> Result<Option<Vec<u8>>, ControllerError> {
    dir.read(name)
        .map_err(|e| ControllerError::io(format!("read {}", dir.describe(name)), e))
}

fn io_error(e: &ControllerError) -> StorageError {
    StorageIOError::write_logs(AnyError::new(e)).into()
}

impl Inner {
    fn save_state(&mut self, state: RaftState) -> Result<(), ControllerError> {
        let data = frame::encode(&state)?;
        self.dir.write_atomic(STATE_FILE, &data).map_err(|e| {
            ControllerError::io(format!("write {}", self.dir.describe(STATE_FILE)), e)
        })?;
        self.state = state;
        Ok(())
    }

    fn append(&mut self, entries: Vec<Entry>) -> Result<(), ControllerError> {
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for entry in entries {
            let offset = self.file_len + buf.len() as u64;
            buf.extend(frame::encode(&entry)?);
            placed.push(Stored { entry, offset });
        }
        let res = self
            .dir
            .append(LOG_FILE, &buf)
            .and_then(|_| self.dir.sync(LOG_FILE));
        if let Err(e) = res {
            // Leave no half-written frame for the next append to follow; if even this
            // fails, recovery cuts it as a torn tail.
            let _ = self.dir.truncate(LOG_FILE, self.file_len);
            return Err(ControllerError::io(
                format!("append to {}", self.dir.describe(LOG_FILE)),
                e,
            ));
        }
        self.file_len += buf.len() as u64;
        for stored in placed {
            self.entries.insert(stored.entry.log_id.index, stored);
        }
        Ok(())
    }

    fn truncate(&mut self, from: u64) -> Result<(), ControllerError> {
        let Some(offset) = self.entries.get(&from).map(|s| s.offset) else {
            return Ok(());
        };
        self.dir
            .truncate(LOG_FILE, offset)
            .and_then(|_| self.dir.sync(LOG_FILE))
            .map_err(|e| {
                ControllerError::io(format!("truncate {}", self.dir.describe(LOG_FILE)), e)
            })?;
        self.file_len = offset;
        self.entries.split_off(&from);
        self.truncations += 1;
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> Result<(), ControllerError> {
        // The marker first: once it is durable the purged entries are dead whether or not
        // their frames are still in the file.
        let mut state = self.state.clone();
        state.purged = Some(upto);
        self.save_state(state)?;
        let live = self.entries.split_off(&(upto.index + 1));
        self.entries = live;
        let dead = self
            .entries
            .first_key_value()
            .map_or(self.file_len, |(_, s)| s.offset);
        // Rewrite the file once the dead head outweighs the live rest, so the log's size
        // stays bounded by the snapshot policy without rewriting on every purge.
        if dead > 0 && dead >= self.file_len - dead {
            let mut data = Vec::with_capacity((self.file_len - dead) as usize);
            for stored in self.entries.values_mut() {
                let frame = frame::encode(&stored.entry)?;
                stored.offset = data.len() as u64;
                data.extend(frame);
            }
            self.dir.write_atomic(LOG_FILE, &data).map_err(|e| {
                ControllerError::io(format!("rewrite {}", self.dir.describe(LOG_FILE)), e)
            })?;
            self.file_len = data.len() as u64;
        }
        Ok(())
    }
}

impl RaftLogReader<MetadataRaft> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Bound::Included(e),
            Bound::Excluded(&e) => Bound::Excluded(e),
            Bound::Unbounded => Bound::Unbounded,
        };
        let inner = self.inner.lock();
        Ok(inner
            .entries
            .range((start, end))
            .map(|(_, s)| s.entry.clone())
            .collect())
    }

    /// The read replication makes: it builds an append request from the entry before
    /// `start` and whatever this returns, assuming it begins at `start`. If the head of the
    /// range was purged meanwhile (a leader that just stepped down may still have a
    /// replication task reading), a later suffix would make a request whose entries do not
    /// follow its `prev_log_id`. Answer nothing instead: openraft treats that as a
    /// heartbeat, and a follower that needs purged entries gets a snapshot.
    /// (`try_get_log_entries` keeps returning the suffix: openraft's own membership lookup
    /// reads from index 0 and relies on it.)
    ///
    /// Nor does a reader made before the log was last truncated: it belongs to a leader
    /// that has since stepped down (a leader never truncates its own log), and its
    /// `prev_log_id` describes a log that is gone. Entries a newer leader wrote at those
    /// indexes, sent behind it, would graft that leader's log onto the old one on a
    /// follower that still follows the old leader, which a later election could then
    /// commit (the quorum simulation's seed 67814 did so).
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let inner = self.inner.lock();
        if self
            .reader_since
            .is_some_and(|since| since != inner.truncations)
        {
            return Ok(Vec::new());
        }
        if inner
            .entries
            .first_key_value()
            .is_none_or(|(&first, _)| first > start)
        {
            return Ok(Vec::new());
        }
        Ok(inner
            .entries
            .range(start..end)
            .map(|(_, s)| s.entry.clone())
            .collect())
    }
}

impl RaftLogStorage<MetadataRaft> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<MetadataRaft>, StorageError> {
        let inner = self.inner.lock();
        let last = inner
            .entries
            .last_key_value()
            .map(|(_, s)| s.entry.log_id)
            .or(inner.state.purged);
        Ok(LogState {
            last_purged_log_id: inner.state.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        let truncations = self.inner.lock().truncations;
        LogStore {
            inner: self.inner.clone(),
            reader_since: Some(truncations),
        }
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        let mut state = inner.state.clone();
        state.vote = Some(*vote);
        inner
            .save_state(state)
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.inner.lock().state.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.inner.lock();
        if inner.state.committed == committed {
            return Ok(());
        }
        let mut state = inner.state.clone();
        state.committed = committed;
        inner.save_state(state).map_err(|e| io_error(&e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.inner.lock().state.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<MetadataRaft>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let res = self.inner.lock().append(entries.into_iter().collect());
        match res {
            Ok(()) => {
                // Only now is the append durable, so only now may openraft count it.
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_error(&e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.inner
            .lock()
            .truncate(log_id.index)
            .map_err(|e| io_error(&e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.inner.lock().purge(log_id).map_err(|e| io_error(&e))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;
    use crate::quorum::dir::{FsDir, MemDir};
    use crate::quorum::state_machine::StateMachine;
    use crate::quorum::types::MetadataBatch;
    use crate::record::MetadataRecord;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: log_id(term, index),
            payload: EntryPayload::Normal(MetadataBatch {
                records: vec![MetadataRecord::ProducerIds { next: index as i64 }],
            }),
        }
    }

    fn open(path: &Path) -> Result<LogStore, ControllerError> {
        LogStore::open(Arc::new(FsDir::open(path).unwrap()))
    }

    /// A store at `path` holding entries 1..=n of term 1.
    fn store_with(path: &Path, n: u64) -> LogStore {
        let store = open(path).unwrap();
        store
            .inner
            .lock()
            .append((1..=n).map(|i| entry(1, i)).collect())
            .unwrap();
        store
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.entries().iter().map(|e| e.log_id.index).collect()
    }

    #[test]
    fn entries_vote_and_committed_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with(tmp.path(), 3);
        let vote = Vote::new(2, 7);
        let mut state = store.inner.lock().state.clone();
        state.vote = Some(vote);
        state.committed = Some(log_id(1, 2));
        store.inner.lock().save_state(state).unwrap();
        drop(store);
        let store = open(tmp.path()).unwrap();
        assert_eq!(indexes(&store), [1, 2, 3]);
        assert_eq!(store.entries()[1], entry(1, 2));
        assert_eq!(store.vote(), Some(vote));
        assert_eq!(store.inner.lock().state.committed, Some(log_id(1, 2)));
    }

    #[test]
    fn torn_tail_is_cut_and_appends_resume() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with(tmp.path(), 2);
        drop(store);
        let path = tmp.path().join(LOG_FILE);
        let whole = std::fs::read(&path).unwrap();
        // Half of a third frame: an append that crashed before its fsync returned.
        let third = frame::encode(&entry(1, 3)).unwrap();
        let mut torn = whole.clone();
        torn.extend_from_slice(&third[..third.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let store = open(tmp.path()).unwrap();
        assert_eq!(indexes(&store), [1, 2]);
        assert_eq!(std::fs::read(&path).unwrap(), whole, "the tail was not cut");
        store.inner.lock().append(vec![entry(2, 3)]).unwrap();
        drop(store);
        assert_eq!(indexes(&open(tmp.path()).unwrap()), [1, 2, 3]);
    }

    #[test]
    fn damage_in_the_middle_fails_closed() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with(tmp.path(), 3);
        let second = store.inner.lock().entries[&2].offset as usize;
        drop(store);
        let path = tmp.path().join(LOG_FILE);
        let mut data = std::fs::read(&path).unwrap();
        data[second + 12] ^= 0x20;
        std::fs::write(&path, &data).unwrap();
        let err = open(tmp.path()).err().expect("opened a damaged log");
        assert!(matches!(err, ControllerError::Corrupt(_)), "{err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            data,
            "the damaged file was changed"
        );
    }

    #[test]
    fn damaged_state_file_fails_closed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(STATE_FILE), b"\0\0\0\x02abcd{}").unwrap();
        assert!(matches!(open(tmp.path()), Err(ControllerError::Corrupt(_))));
    }

    #[test]
    fn truncate_and_purge_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store_with(tmp.path(), 6);
        // A new leader's log diverged at 5: entries from 5 on go.
        store.inner.lock().truncate(5).unwrap();
        store.inner.lock().append(vec![entry(2, 5)]).unwrap();
        store.inner.lock().purge(log_id(1, 2)).unwrap();
        assert_eq!(indexes(&store), [3, 4, 5]);
        drop(store);
        let mut store = open(tmp.path()).unwrap();
        assert_eq!(indexes(&store), [3, 4, 5]);
        assert_eq!(store.entries()[2], entry(2, 5));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let state = rt.block_on(store.get_log_state()).unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
        assert_eq!(state.last_log_id, Some(log_id(2, 5)));
        // Purging past the live head rewrites the file down to what is left.
        let before = std::fs::metadata(tmp.path().join(LOG_FILE)).unwrap().len();
        store.inner.lock().purge(log_id(1, 4)).unwrap();
        let after = std::fs::metadata(tmp.path().join(LOG_FILE)).unwrap().len();
        assert!(after < before / 2, "{after} of {before} bytes left");
        store.inner.lock().append(vec![entry(2, 6)]).unwrap();
        drop(store);
        let store = open(tmp.path()).unwrap();
        assert_eq!(indexes(&store), [5, 6]);
        // Everything purged: the last log id is the purged one.
        store.inner.lock().purge(log_id(2, 6)).unwrap();
        drop(store);
        let mut store = open(tmp.path()).unwrap();
        let state = rt.block_on(store.get_log_state()).unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 6)));
        assert!(indexes(&store).is_empty());
    }

    /// A deposed leader's replication task must not send entries a newer leader wrote
    /// over its own: its reader serves nothing once the log was truncated.
    #[test]
    fn a_reader_from_before_a_truncation_serves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut store = store_with(tmp.path(), 6);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut stale = rt.block_on(store.get_log_reader());
        let served = rt.block_on(stale.limited_get_log_entries(5, 7)).unwrap();
        assert_eq!(served.len(), 2);
        // The node now follows a new leader whose log differs from 5 on.
        store.inner.lock().truncate(5).unwrap();
        store
            .inner
            .lock()
            .append(vec![entry(2, 5), entry(2, 6)])
            .unwrap();
        assert!(rt
            .block_on(stale.limited_get_log_entries(5, 7))
            .unwrap()
            .is_empty());
        // A reader made afterwards (the node leads again) serves the log as it is.
        let mut fresh = rt.block_on(store.get_log_reader());
        let served = rt.block_on(fresh.limited_get_log_entries(5, 7)).unwrap();
        assert_eq!(served, [entry(2, 5), entry(2, 6)]);
    }

    struct MemBuilder;

    impl StoreBuilder<MetadataRaft, LogStore, StateMachine, ()> for MemBuilder {
        async fn build(&self) -> Result<((), LogStore, StateMachine), StorageError> {
            let dir: Arc<dyn DurableDir> = Arc::new(MemDir::new("suite"));
            let log = LogStore::open(dir.clone()).map_err(|e| io_error(&e))?;
            let sm = StateMachine::open(dir, None).map_err(|e| io_error(&e))?;
            Ok(((), log, sm))
        }
    }

    /// openraft's own conformance suite for log storage and state machines.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(MemBuilder).unwrap();
    }
}
