//! The replicated state machine: committed batches applied, in log order, to a
//! [`MetadataImage`], exactly as the single-node controller applies its log.
//!
//! Snapshots are the serialized image plus openraft's snapshot meta (last log id and
//! membership). The current snapshot is kept durably in `snapshot` (replaced atomically),
//! because openraft purges the log up to it: after a restart the image is rebuilt from
//! that snapshot and openraft re-applies the committed entries after it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::dir::DurableDir;
use super::frame;
use super::types::{
    BatchApplied, Entry, LogId, MetadataBatch, MetadataRaft, SnapshotMeta, StorageError,
    StoredMembership,
};
use crate::error::ControllerError;
use crate::image::MetadataImage;

const SNAPSHOT_FILE: &str = "snapshot";

/// What a state machine reports to an [`ApplyObserver`].
#[derive(Debug)]
pub enum Applied<'a> {
    /// One log entry was applied; `batch` is `None` for raft's own entries (blank,
    /// membership), which change no metadata.
    Entry {
        log_id: LogId,
        batch: Option<&'a MetadataBatch>,
    },
    /// A snapshot replaced the image; everything up to `last_log_id` is in it.
    Snapshot { last_log_id: Option<LogId> },
}

/// Called synchronously for every change to the image, in order. Brokers will use this to
/// react to records; the simulation uses it to check that every node applies the same
/// entries in the same order.
pub type ApplyObserver = Arc<dyn Fn(Applied<'_>) + Send + Sync>;

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    /// The serialized image, exactly the bytes sent to a follower that installs it.
    data: Vec<u8>,
}

struct SmState {
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    snapshot: Option<StoredSnapshot>,
    /// Makes snapshot ids unique even when two are built at the same log id.
    snapshot_seq: u64,
}

struct Shared {
    dir: Arc<dyn DurableDir>,
    state: Mutex<SmState>,
    applied: watch::Sender<u64>,
    observer: Option<ApplyObserver>,
}

/// The state machine handed to openraft. Clones share it.
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

/// A read-only view of a state machine, for whoever serves the image.
#[derive(Clone)]
pub struct ImageReader {
    shared: Arc<Shared>,
}

impl ImageReader {
    /// The image as of the last applied entry.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.shared.state.lock().image.clone()
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.shared.state.lock().last_applied
    }

    /// Notified with the last applied log index after every change: a request that must
    /// answer only once its change is applied here waits for this to reach its index.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.applied.subscribe()
    }
}

impl StateMachine {
    /// Opens the state machine kept in `dir`: the last durable snapshot, if any.
    pub fn open(
        dir: Arc<dyn DurableDir>,
        observer: Option<ApplyObserver>,
    ) -> Result<StateMachine, ControllerError> {
        let mut state = SmState {
            image: Arc::new(MetadataImage::default()),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshot_seq: 0,
        };
        let data = dir
            .read(SNAPSHOT_FILE)
            .map_err(|e| ControllerError::io(format!("read {}", dir.describe(SNAPSHOT_FILE)), e))?;
        if let Some(data) = data {
            let stored = match frame::decode::<StoredSnapshot>(&data) {
                Some((s, used)) if used == data.len() => s,
                _ => {
                    return Err(ControllerError::Corrupt(format!(
                        "{} is damaged; the log before it is purged, so the node cannot \
                         rebuild its metadata",
                        dir.describe(SNAPSHOT_FILE)
                    )))
                }
            };
            let image: MetadataImage = serde_json::from_slice(&stored.data).map_err(|e| {
                ControllerError::Corrupt(format!("{}: {e}", dir.describe(SNAPSHOT_FILE)))
            })?;
            state.image = Arc::new(image);
            state.last_applied = stored.meta.last_log_id;
            state.membership = stored.meta.last_membership.clone();
            state.snapshot = Some(stored);
        }
        let (applied, _) = watch::channel(state.last_applied.map_or(0, |l| l.index));
        Ok(StateMachine {
            shared: Arc::new(Shared {
                dir,
                state: Mutex::new(state),
                applied,
                observer,
            }),
        })
    }

    pub fn reader(&self) -> ImageReader {
        ImageReader {
            shared: self.shared.clone(),
        }
    }

    // The error type is openraft's own, returned as is by the trait methods that call this.
    #[allow(clippy::result_large_err)]
    fn persist(&self, stored: &StoredSnapshot) -> Result<(), StorageError> {
        let signature = Some(stored.meta.signature());
        let data = frame::encode(stored)
            .map_err(|e| StorageIOError::write_snapshot(signature.clone(), AnyError::new(&e)))?;
        self.shared
            .dir
            .write_atomic(SNAPSHOT_FILE, &data)
            .map_err(|e| StorageIOError::write_snapshot(signature, AnyError::new(&e)).into())
    }

    fn notify(&self, index: u64) {
        self.shared.applied.send_replace(index);
    }
}

impl RaftSnapshotBuilder<MetadataRaft> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<MetadataRaft>, StorageError> {
        let (image, last_applied, membership, seq) = {
            let mut state = self.shared.state.lock();
            state.snapshot_seq += 1;
            (
                state.image.clone(),
                state.last_applied,
                state.membership.clone(),
                state.snapshot_seq,
            )
        };
        let data = serde_json::to_vec(&*image)
            .map_err(|e| StorageIOError::write_snapshot(None, AnyError::new(&e)))?;
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id.term, l.index),
            None => format!("0-0-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership: membership,
            snapshot_id,
        };
        let stored = StoredSnapshot { meta, data };
        // Durable before openraft sees it: openraft purges the log up to it next.
        self.persist(&stored)?;
        let snapshot = Snapshot {
            meta: stored.meta.clone(),
            snapshot: Box::new(Cursor::new(stored.data.clone())),
        };
        self.shared.state.lock().snapshot = Some(stored);
        Ok(snapshot)
    }
}

impl RaftStateMachine<MetadataRaft> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = self.shared.state.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchApplied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let last = {
            let mut guard = self.shared.state.lock();
            // Through a plain reference, so the image and the membership borrow apart.
            let state = &mut *guard;
            for entry in entries {
                let log_id = entry.log_id;
                let batch = match &entry.payload {
                    EntryPayload::Blank => None,
                    EntryPayload::Normal(batch) => {
                        // Copy-on-write: readers keep the image they hold, unchanged.
                        let image = Arc::make_mut(&mut state.image);
                        for record in &batch.records {
                            image.apply(record);
                        }
                        Some(batch)
                    }
                    EntryPayload::Membership(m) => {
                        state.membership = StoredMembership::new(Some(log_id), m.clone());
                        None
                    }
                };
                state.last_applied = Some(log_id);
                if let Some(observer) = &self.shared.observer {
                    observer(Applied::Entry { log_id, batch });
                }
                responses.push(BatchApplied {
                    log_index: log_id.index,
                    image_offset: state.image.offset,
                });
            }
            state.last_applied
        };
        if let Some(last) = last {
            self.notify(last.index);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let image: MetadataImage = serde_json::from_slice(&data).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), AnyError::new(&e))
        })?;
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&stored)?;
        {
            let mut state = self.shared.state.lock();
            state.image = Arc::new(image);
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership.clone();
            state.snapshot = Some(stored);
            if let Some(observer) = &self.shared.observer {
                observer(Applied::Snapshot {
                    last_log_id: meta.last_log_id,
                });
            }
        }
        self.notify(meta.last_log_id.map_or(0, |l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<MetadataRaft>>, StorageError> {
        let state = self.shared.state.lock();
        Ok(state.snapshot.as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.clone())),
        }))
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Membership};

    use super::*;
    use crate::quorum::dir::MemDir;
    use crate::record::MetadataRecord;

    fn log_id(index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    fn topic(n: u32) -> Entry {
        Entry {
            log_id: log_id(n as u64 + 1),
            payload: EntryPayload::Normal(MetadataBatch {
                records: vec![MetadataRecord::Topic {
                    name: format!("t{n}"),
                    topic_id: uuid::Uuid::from_u128(n as u128 + 1),
                    configs: Default::default(),
                }],
            }),
        }
    }

    fn open(dir: &MemDir) -> StateMachine {
        StateMachine::open(Arc::new(dir.clone()), None).unwrap()
    }

    #[tokio::test]
    async fn applies_snapshots_and_restores_the_image() {
        let dir = MemDir::new("a");
        let mut sm = open(&dir);
        let reader = sm.reader();
        let mut applied = reader.subscribe();
        let membership = Entry {
            log_id: log_id(1),
            payload: EntryPayload::Membership(Membership::new(vec![[1u64].into()], None)),
        };
        let resp = sm
            .apply(vec![membership, topic(1), topic(2)])
            .await
            .unwrap();
        assert_eq!(
            resp.iter().map(|r| r.image_offset).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(*applied.borrow_and_update(), 3);
        let before = reader.image();
        assert!(before.topic("t1").is_some() && before.topic("t2").is_some());

        let snap = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snap.meta.last_log_id, Some(log_id(3)));
        // The image is copy-on-write: what a reader holds does not change under it.
        sm.apply(vec![topic(3)]).await.unwrap();
        assert!(before.topic("t3").is_none());

        // A restart comes back to the snapshot; openraft re-applies the rest from the log.
        let mut restarted = open(&dir.crash("", b""));
        let (last, members) = restarted.applied_state().await.unwrap();
        assert_eq!(last, Some(log_id(3)));
        assert_eq!(members.log_id(), &Some(log_id(1)));
        assert!(restarted.reader().image().topic("t2").is_some());
        assert!(restarted.reader().image().topic("t3").is_none());

        // A follower installs the snapshot and holds the same image.
        let mut follower = open(&MemDir::new("b"));
        let data = sm.begin_receiving_snapshot().await.unwrap();
        drop(data);
        follower
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        let got = follower.reader().image();
        assert_eq!(got.topics, before.topics);
        assert_eq!(got.offset, 2);
        assert_eq!(*follower.reader().subscribe().borrow(), 3);
        assert!(follower.get_current_snapshot().await.unwrap().is_some());
    }
}
