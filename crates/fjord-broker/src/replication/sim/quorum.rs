//! The whole-cluster variant of the replication simulation: the controller is not one
//! process that commits at once, but Fjord's metadata quorum, openraft over
//! `fjord_controller::quorum` (its log store on a [`MemDir`] that loses what was not
//! fsynced, its state machine), with a voter on each of brokers 1 to 3 as in a combined
//! cluster. A broker crash crashes its voter, a partition cuts its voter off with it,
//! and the quorum's messages are lost and delayed like the brokers'.
//!
//! The simulation's controller logic runs as the active controller, the voter that leads
//! in the highest term, the way `Controller::commit_prepared` runs a change: one at a
//! time (the writer lock), only once `may_plan` holds, planned on that voter's applied
//! image, and written with `client_write`. A write the quorum has not decided within the
//! write timeout is not answered, but holds back the next plan until it is decided, as
//! `QuorumMember::ready_to_plan` does. Brokers reach the active controller
//! only while connected to its node; a request that arrives after the active controller
//! changed is lost, as a NOT_CONTROLLER answer would make it, and the broker retries. A
//! new active controller starts every broker's session afresh, as Kafka's does.
//!
//! Checked on top of the replication invariants: every voter applies the same entry at
//! each log index (so every image the controller and the brokers read is one the
//! committed log went through), one leader per term, no voter stops on an error, and at
//! the end every voter runs and holds the same image.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use fjord_controller::quorum::sim_net::SimNet;
use fjord_controller::quorum::{
    leader_lease, may_plan, Applied, ApplyObserver, DurableDir, ImageReader, LogStore, MemDir,
    MetadataBatch, Node, NodeId, Raft, StateMachine,
};
use fjord_controller::{MetadataImage, MetadataRecord, PartitionImage};
use openraft::{Config, ServerState, SnapshotPolicy};
use parking_lot::Mutex;

use super::{Msg, STEP_MS};

/// Voters: brokers 1 to 3 (every run has at least 3 brokers).
pub(super) const VOTERS: i32 = 3;
/// The quorum member's write timeout (15 s against a 1 s election timeout), scaled to the
/// simulation's election timeout, in steps.
const WRITE_TIMEOUT_STEPS: u64 = 15 * 100 / STEP_MS as u64;
/// Salt of the quorum network's random stream.
const NET_STREAM: u64 = 0x0A7E_5EED;

fn config() -> Arc<Config> {
    // Elections take a few steps against the brokers' session of 25 steps, as Fjord's
    // 1 to 2 s elections against its 9 s broker session.
    let config = Config {
        cluster_name: "sim".into(),
        heartbeat_interval: 20,
        election_timeout_min: 100,
        election_timeout_max: 200,
        // Small, so snapshots, purges and installs happen in every run.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(16),
        max_in_snapshot_log_to_keep: 4,
        purge_batch_size: 1,
        ..Default::default()
    };
    Arc::new(config.validate().expect("a valid raft config"))
}

struct Member {
    dir: MemDir,
    process: Option<(Raft, ImageReader)>,
}

/// What the observer of every voter's state machine collects.
#[derive(Default)]
struct Check {
    /// The entry first applied at each index: every later application must match.
    canonical: BTreeMap<u64, Option<MetadataBatch>>,
    /// The image of the canonical sequence, and each partition state it went through.
    image: MetadataImage,
    changes: Vec<(u64, PartitionImage, Vec<MetadataRecord>)>,
    leaders: BTreeMap<u64, NodeId>,
    violations: Vec<String>,
}

impl Check {
    fn applied(&mut self, id: NodeId, event: Applied<'_>) {
        let Applied::Entry { log_id, batch } = event else {
            return;
        };
        let index = log_id.index;
        match self.canonical.get(&index) {
            Some(first) => {
                if first.as_ref() != batch {
                    self.violations.push(format!(
                        "voter {id} applied {batch:?} at index {index}, another {first:?}"
                    ));
                }
            }
            None => {
                // Whoever applies an index first has applied every index before it.
                let expected = self.canonical.keys().next_back().map_or(0, |l| l + 1);
                if index != expected {
                    self.violations.push(format!(
                        "voter {id} applied index {index} first, before index {expected}"
                    ));
                }
                self.canonical.insert(index, batch.cloned());
                if let Some(batch) = batch {
                    for r in &batch.records {
                        self.image.apply(r);
                    }
                    if let Some(t) = self.image.topic("t") {
                        self.changes
                            .push((index, t.partitions[0].clone(), batch.records.clone()));
                    }
                }
            }
        }
    }
}

/// A change the active controller is writing.
struct Writing {
    /// Steps left until the write times out for the requester.
    patience: u64,
    /// Some(true) once committed and applied here, Some(false) once refused (this voter
    /// no longer leads).
    outcome: Arc<Mutex<Option<bool>>>,
    /// The AlterPartition to answer once it is committed: (broker, request id).
    reply: Option<(i32, u64)>,
}

pub(super) struct Quorum {
    net: SimNet,
    config: Arc<Config>,
    members: BTreeMap<i32, Member>,
    check: Arc<Mutex<Check>>,
    /// Voter crashes (false) and starts (true) the step asked for, done by the driver.
    todo: Vec<(i32, bool)>,
    /// The active controller: (voter, term).
    pub(super) active: Option<(i32, u64)>,
    /// The offset of its image the simulation's controller logic last read.
    applied: Option<u64>,
    writing: Option<Writing>,
    /// Requests delivered to the active controller, handled one change at a time.
    pub(super) queue: VecDeque<(i32, Msg)>,
    pub(super) crashes: usize,
    pub(super) elections: usize,
    pub(super) timeouts: usize,
}

impl Quorum {
    pub(super) fn new(seed: u64) -> Quorum {
        let members = (1..=VOTERS)
            .map(|id| {
                let dir = MemDir::new(format!("voter-{id}"));
                let member = Member { dir, process: None };
                (id, member)
            })
            .collect();
        Quorum {
            net: SimNet::new(seed ^ NET_STREAM),
            config: config(),
            members,
            check: Arc::default(),
            todo: vec![],
            active: None,
            applied: None,
            writing: None,
            queue: VecDeque::new(),
            crashes: 0,
            elections: 0,
            timeouts: 0,
        }
    }

    pub(super) fn is_voter(id: i32) -> bool {
        (1..=VOTERS).contains(&id)
    }

    pub(super) fn crash(&mut self, id: i32) {
        if Quorum::is_voter(id) {
            self.todo.push((id, false));
        }
    }

    pub(super) fn start(&mut self, id: i32) {
        if Quorum::is_voter(id) {
            self.todo.push((id, true));
        }
    }

    /// Starts every voter, forms the quorum and commits `records`, the cluster's first
    /// metadata; returns the image they make.
    pub(super) async fn bootstrap(&mut self, records: Vec<MetadataRecord>) -> MetadataImage {
        for id in 1..=VOTERS {
            self.start_voter(id).await;
        }
        let voters: BTreeMap<NodeId, Node> = (1..=VOTERS as NodeId)
            .map(|id| (id, Node::new(format!("voter-{id}"))))
            .collect();
        let first = self.raft(1).expect("voter 1 runs");
        first
            .initialize(voters)
            .await
            .expect("a new quorum initializes");
        let batch = MetadataBatch { records };
        for _ in 0..1000 {
            if let Some(raft) = self.leader_raft() {
                if raft.client_write(batch.clone()).await.is_ok() {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(STEP_MS as u64)).await;
        }
        for _ in 0..1000 {
            let images: Vec<Arc<MetadataImage>> = self
                .members
                .values()
                .filter_map(|m| m.process.as_ref().map(|(_, r)| r.image()))
                .collect();
            if images
                .iter()
                .all(|i| i.topic("t").is_some() && same(i, &images[0]))
            {
                return (*images[0]).clone();
            }
            tokio::time::sleep(Duration::from_millis(STEP_MS as u64)).await;
        }
        panic!("the quorum did not commit the first metadata");
    }

    fn raft(&self, id: i32) -> Option<Raft> {
        self.members[&id].process.as_ref().map(|(r, _)| r.clone())
    }

    fn leader_raft(&self) -> Option<Raft> {
        self.leader()
            .map(|(id, _)| self.raft(id).expect("a leader runs"))
    }

    /// The voter that believes it leads in the highest term.
    fn leader(&self) -> Option<(i32, u64)> {
        self.members
            .iter()
            .filter_map(|(&id, m)| {
                let (raft, _) = m.process.as_ref()?;
                let m = raft.metrics().borrow().clone();
                (m.state == ServerState::Leader && m.current_leader == Some(m.id))
                    .then_some((id, m.current_term))
            })
            .max_by_key(|(_, term)| *term)
    }

    async fn start_voter(&mut self, id: i32) {
        let member = self.members.get_mut(&id).expect("a voter");
        if member.process.is_some() {
            return;
        }
        let dir: Arc<dyn DurableDir> = Arc::new(member.dir.clone());
        let log = LogStore::open(dir.clone())
            .unwrap_or_else(|e| panic!("voter {id} cannot open its log: {e}"));
        let check = self.check.clone();
        let observer: ApplyObserver =
            Arc::new(move |event| check.lock().applied(id as NodeId, event));
        let sm = StateMachine::open(dir, Some(observer))
            .unwrap_or_else(|e| panic!("voter {id} cannot open its state machine: {e}"));
        let reader = sm.reader();
        let network = self.net.network(id as NodeId);
        let raft = Raft::new(id as NodeId, self.config.clone(), network, log, sm)
            .await
            .unwrap_or_else(|e| panic!("voter {id} cannot start: {e}"));
        self.net.0.lock().up.insert(id as NodeId, raft.clone());
        member.process = Some((raft, reader));
    }

    async fn crash_voter(&mut self, id: i32) {
        let member = self.members.get_mut(&id).expect("a voter");
        self.net.0.lock().up.remove(&(id as NodeId));
        if let Some((raft, _)) = member.process.take() {
            let _ = raft.shutdown().await;
            // Everything not fsynced is lost.
            member.dir = member.dir.crash("", &[]);
            self.crashes += 1;
        }
    }

    /// The driver's part of a step: the crashes and starts asked for, and the network as
    /// the simulation has it now (`group` of each voter, loss per mille, delay in steps).
    pub(super) async fn io(
        &mut self,
        group: [u8; VOTERS as usize],
        drop_permille: u64,
        delay: u64,
    ) {
        for (id, start) in std::mem::take(&mut self.todo) {
            if start {
                self.start_voter(id).await;
            } else {
                self.crash_voter(id).await;
            }
        }
        let mut net = self.net.0.lock();
        net.group = (1..=VOTERS)
            .map(|id| (id as NodeId, group[(id - 1) as usize]))
            .collect();
        net.drop_percent = drop_permille / 10;
        net.max_delay_ms = delay * STEP_MS as u64;
    }

    /// Who is the active controller now. A new one (another voter, or the same in a new
    /// term) starts with no request queued and no change in flight: the old one's are
    /// lost with its leadership. Returns whether it changed.
    pub(super) fn follow_leader(&mut self) -> bool {
        let now = self.leader();
        for (id, m) in &self.members {
            if let Some((raft, _)) = &m.process {
                let m = raft.metrics().borrow().clone();
                if m.state == ServerState::Leader {
                    let mut check = self.check.lock();
                    if let Some(other) = check.leaders.insert(m.current_term, m.id) {
                        if other != m.id {
                            check.violations.push(format!(
                                "two leaders in term {}: voters {other} and {id}",
                                m.current_term
                            ));
                        }
                    }
                }
                if let Err(e) = &m.running_state {
                    if !matches!(e, openraft::error::Fatal::Stopped) {
                        self.check
                            .lock()
                            .violations
                            .push(format!("voter {id} stopped: {e}"));
                    }
                }
            }
        }
        if now == self.active {
            return false;
        }
        self.active = now;
        self.applied = None;
        self.writing = None;
        self.queue.clear();
        if now.is_some() {
            self.elections += 1;
        }
        true
    }

    /// The active controller's image, when it changed since the last call.
    pub(super) fn new_image(&mut self) -> Option<MetadataImage> {
        let (id, _) = self.active?;
        let (_, reader) = self.members[&id].process.as_ref()?;
        let image = reader.image();
        if Some(image.offset) == self.applied {
            return None;
        }
        self.applied = Some(image.offset);
        Some((*image).clone())
    }

    /// Whether the active controller may plan a change now: nothing of its own in
    /// flight (the writer lock), and `may_plan` holds.
    pub(super) fn ready_to_plan(&self) -> bool {
        let Some((id, term)) = self.active else {
            return false;
        };
        let Some(raft) = self.raft(id) else {
            return false;
        };
        let m = raft.metrics().borrow().clone();
        self.writing.is_none() && m.current_term == term && may_plan(&m, leader_lease(&self.config))
    }

    /// Writes `records` as the active controller.
    pub(super) fn write(&mut self, records: Vec<MetadataRecord>) {
        let Some((id, _)) = self.active else {
            return;
        };
        let Some(raft) = self.raft(id) else {
            return;
        };
        let outcome: Arc<Mutex<Option<bool>>> = Arc::default();
        let done = outcome.clone();
        tokio::spawn(async move {
            let res = raft.client_write(MetadataBatch { records }).await;
            *done.lock() = Some(res.is_ok());
        });
        self.writing = Some(Writing {
            patience: WRITE_TIMEOUT_STEPS,
            outcome,
            reply: None,
        });
    }

    pub(super) fn writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Asks that the change being written answer this AlterPartition once committed.
    pub(super) fn reply_when_written(&mut self, broker: i32, id: u64) {
        if let Some(w) = &mut self.writing {
            w.reply = Some((broker, id));
        }
    }

    /// The change in flight, once it is over: whether it was committed, and the
    /// AlterPartition to answer if it was committed in time (the caller reads the new
    /// image first). One step of its patience goes by at each call.
    pub(super) fn written(&mut self) -> Option<(bool, Option<(i32, u64)>)> {
        let w = self.writing.as_mut()?;
        if w.patience > 0 {
            w.patience -= 1;
            if w.patience == 0 {
                // The requester hears NOT_CONTROLLER; the write goes on.
                self.timeouts += 1;
                w.reply = None;
            }
        }
        let outcome = (*w.outcome.lock())?;
        let w = self.writing.take().expect("a write");
        Some((outcome, w.reply.filter(|_| outcome)))
    }

    /// Partition states the committed log went through since the last call, with the
    /// records of each change, and violations found.
    #[allow(clippy::type_complexity)]
    pub(super) fn drain(
        &mut self,
    ) -> (Vec<(u64, PartitionImage, Vec<MetadataRecord>)>, Vec<String>) {
        let mut check = self.check.lock();
        let changes = std::mem::take(&mut check.changes);
        (changes, check.violations.clone())
    }

    /// What each voter and the active controller are doing, for a failure's message.
    pub(super) fn describe(&self) -> String {
        let mut lines: Vec<String> = self
            .members
            .iter()
            .map(|(id, m)| match &m.process {
                None => format!("voter {id}: down"),
                Some((raft, reader)) => {
                    let m = raft.metrics().borrow().clone();
                    format!(
                        "voter {id}: {:?} in term {}, log up to {:?}, applied {:?}, snapshot {:?}, purged {:?}, image offset {}",
                        m.state,
                        m.current_term,
                        m.last_log_index,
                        m.last_applied.map(|l| l.index),
                        m.snapshot.map(|l| l.index),
                        m.purged.map(|l| l.index),
                        reader.image().offset,
                    )
                }
            })
            .collect();
        lines.push(format!(
            "active controller {:?}, writing {}, {} requests queued",
            self.active,
            self.writing.is_some(),
            self.queue.len()
        ));
        lines.join("\n")
    }

    /// At the end: every voter runs, and all hold the same image.
    pub(super) fn converged(&self) -> Result<usize, String> {
        let mut images = vec![];
        for (id, m) in &self.members {
            let Some((_, reader)) = &m.process else {
                return Err(format!("voter {id} is down after settling"));
            };
            images.push((id, reader.image()));
        }
        for (id, image) in &images[1..] {
            if !same(image, &images[0].1) {
                return Err(format!(
                    "voter {id}'s image (offset {}) differs from voter {}'s (offset {})",
                    image.offset, images[0].0, images[0].1.offset,
                ));
            }
        }
        if self.active.is_none() {
            return Err("no active controller after settling".into());
        }
        Ok(self.check.lock().canonical.len())
    }
}

/// Images are equal when they serialize alike (as a snapshot carries them).
fn same(a: &MetadataImage, b: &MetadataImage) -> bool {
    serde_json::to_vec(a).ok() == serde_json::to_vec(b).ok()
}
