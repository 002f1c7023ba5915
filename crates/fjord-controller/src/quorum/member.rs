//! One running member of the metadata quorum: its durable log and state machine, its
//! openraft instance, and the CONTROLLER listener that peers reach it on.
//!
//! The controller's write path is synchronous (it runs on the blocking pool), so the
//! methods here that wait for the quorum block on the runtime handle captured at start;
//! they must never be called from an async task.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Config, RaftMetrics, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::dir::{DurableDir, FsDir};
use super::log_store::LogStore;
use super::network::{BoxFuture, Network};
use super::state_machine::{ImageReader, StateMachine};
use super::tcp::{self, ForwardHandler, StreamSecurity, TcpTransport};
use super::types::{MetadataBatch, Node, NodeId, Raft};
use crate::controller::Controller;
use crate::error::ControllerError;
use crate::image::MetadataImage;
use crate::ops::{ControllerOp, OpReply, QuorumStatus, ReplicaStatus};
use crate::record::MetadataRecord;

/// How long a write may wait for the quorum to commit it before the client is told to
/// retry: as long as an election takes, several times over.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// What a metadata write's task returns.
type WriteResult = Result<
    openraft::raft::ClientWriteResponse<super::types::MetadataRaft>,
    RaftError<NodeId, ClientWriteError<NodeId, Node>>,
>;
/// How long a node waits for a change the active controller committed to reach its
/// own image.
const APPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a member may plan a change on its own image now: it leads, and its state
/// machine has applied its whole log, so an entry of its own term and every change it
/// proposed itself.
///
/// A member that has just won an election may hold entries its predecessor committed
/// that it has not applied yet: it learns they are committed only once the first entry
/// of its own term commits. And a change this leader proposed that the quorum has not
/// committed yet (its write timed out while the followers were unreachable, say) may
/// still commit later, in this term or the next. The active controller plans each change
/// on its image (the next producer id block, the next leader and partition epochs,
/// whether a topic exists), so a plan made before either is applied would build on a
/// stale image: hand out a producer id block twice, elect a leader from an ISR that has
/// since shrunk, or undo a finished reassignment with a partition epoch already used.
///
/// And a quorum has acknowledged it as leader within `lease`. A member that restarts
/// restores the leader vote it had and believes it leads its old term, with the image of
/// then, until a follower answers with the newer term; one cut off from the quorum
/// believes it until it hears of a newer term. Neither's image can be trusted: a plan
/// made on it does not commit, but a refusal answered from it reaches the broker (an
/// ISR change refused because its partition epoch is "not current" leaves the
/// partition's leader waiting for metadata that never comes).
pub fn may_plan(m: &RaftMetrics<NodeId, Node>, lease: Duration) -> bool {
    leads_acknowledged(m, lease)
        && m.last_applied.map(|l| l.leader_id.term) == Some(m.current_term)
        && m.last_applied.map(|l| l.index) == m.last_log_index
}

/// Whether the member leads and a quorum acknowledged it within `lease`.
fn leads_acknowledged(m: &RaftMetrics<NodeId, Node>, lease: Duration) -> bool {
    m.state == ServerState::Leader
        && m.current_leader == Some(m.id)
        && m.millis_since_quorum_ack
            .is_some_and(|ms| u128::from(ms) < lease.as_millis())
}

/// How recently a quorum must have acknowledged a leader for it to act as active
/// controller: the election timeout, for that long after acknowledging a leader a
/// follower refuses to vote for another (openraft's leader lease).
pub fn leader_lease(config: &Config) -> Duration {
    Duration::from_millis(config.election_timeout_min)
}

/// Waits until [`may_plan`] holds for `raft`, or fails with why not.
pub async fn own_log_applied(raft: &Raft, timeout: Duration) -> Result<(), ControllerError> {
    let lease = leader_lease(raft.config());
    let waited = raft
        .wait(Some(timeout))
        .metrics(
            |m| m.state != ServerState::Leader || may_plan(m, lease),
            "the active controller's image catches up",
        )
        .await;
    match waited {
        Ok(m) if may_plan(&m, lease) => Ok(()),
        Ok(m) => Err(ControllerError::NotController(match m.current_leader {
            Some(l) if l != m.id => format!("node {l} is now the active controller"),
            _ => "the metadata quorum is electing a new active controller".into(),
        })),
        Err(_) => Err(ControllerError::NotController(format!(
            "the active controller was not acknowledged by the metadata quorum, or did not apply its own metadata log, within {} s",
            timeout.as_secs()
        ))),
    }
}

/// Timing of the quorum, from Kafka's `controller.quorum.*` settings.
#[derive(Debug, Clone)]
pub struct QuorumTiming {
    /// `controller.quorum.election.timeout.ms`: a follower that hears nothing from a
    /// leader for between this and twice this starts an election.
    pub election_timeout_ms: u64,
    /// How long a metadata write waits for the quorum to commit it.
    pub write_timeout: Duration,
}

impl Default for QuorumTiming {
    fn default() -> Self {
        QuorumTiming {
            election_timeout_ms: 1000,
            write_timeout: WRITE_TIMEOUT,
        }
    }
}

pub struct QuorumMember {
    node_id: NodeId,
    raft: Raft,
    reader: ImageReader,
    transport: Arc<TcpTransport>,
    /// The voters and their CONTROLLER endpoints (`host:port`).
    voters: BTreeMap<NodeId, Node>,
    /// Further places an observer looks for the quorum
    /// (`controller.quorum.bootstrap.servers`).
    bootstrap: Vec<String>,
    runtime: tokio::runtime::Handle,
    /// Held while the active controller plans and proposes a change.
    pub(crate) writer: Mutex<()>,
    /// How long a write waits for the quorum (`QuorumTiming::write_timeout`).
    write_timeout: Duration,
    /// A change this member proposed whose write timed out before the quorum decided
    /// it: no plan is made until it is committed, or dropped with this leadership.
    unsettled: Mutex<Option<tokio::task::JoinHandle<WriteResult>>>,
    /// Who runs ops that other nodes forward here.
    controller: Arc<ControllerSlot>,
    stop: watch::Sender<bool>,
    /// New at every start: the broker registration of this process.
    incarnation: uuid::Uuid,
    /// How quorum connections accepted elsewhere (an observer's broker listener) are
    /// secured.
    security: Arc<dyn StreamSecurity>,
}

/// The controller that forwarded ops run on; set once it exists (it owns this member).
#[derive(Default)]
struct ControllerSlot(OnceLock<Weak<Controller>>);

impl ForwardHandler for ControllerSlot {
    fn handle(&self, op: Vec<u8>) -> BoxFuture<Vec<u8>> {
        let controller = self.0.get().and_then(Weak::upgrade);
        Box::pin(async move {
            let reply = match (controller, serde_json::from_slice::<ControllerOp>(&op)) {
                (None, _) => OpReply::new(
                    Err(ControllerError::NotController(
                        "the controller is starting".into(),
                    )),
                    0,
                ),
                (_, Err(e)) => OpReply::new(
                    Err(ControllerError::Corrupt(format!(
                        "undecodable forwarded op: {e}"
                    ))),
                    0,
                ),
                // Committing waits for the quorum: off the async workers.
                (Some(c), Ok(op)) => {
                    match tokio::task::spawn_blocking(move || c.execute(&op)).await {
                        Ok(Ok((out, index))) => OpReply::new(Ok(out), index),
                        Ok(Err(e)) => OpReply::new(Err(e), 0),
                        Err(e) => OpReply::new(
                            Err(ControllerError::NotController(format!(
                                "forwarded op failed: {e}"
                            ))),
                            0,
                        ),
                    }
                }
            };
            serde_json::to_vec(&reply).unwrap_or_default()
        })
    }
}

/// Logs each change of active controller as this node sees it: the quorum's one line of
/// news for an operator.
fn spawn_leader_log(raft: Raft, id: NodeId) {
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        let mut last: Option<(Option<NodeId>, u64)> = None;
        loop {
            let (now, stopped) = {
                let m = metrics.borrow_and_update();
                (
                    (m.current_leader, m.current_term),
                    m.running_state.clone().err(),
                )
            };
            if let Some(fatal) = stopped {
                // Nothing recovers a stopped raft core in this process: say so once, loudly.
                tracing::error!(
                    "this node's metadata quorum member stopped ({fatal}); the node stops"
                );
                return;
            }
            if last.map(|l| l.0) != Some(now.0) {
                match now.0 {
                    Some(l) if l == id => {
                        tracing::info!(term = now.1, "this node is now the active controller")
                    }
                    Some(l) => {
                        tracing::info!(term = now.1, leader = l, "active controller elected")
                    }
                    None if last.is_some() => {
                        tracing::info!(term = now.1, "no active controller: electing one")
                    }
                    None => {}
                }
                last = Some(now);
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}

impl QuorumMember {
    /// Opens the member's durable state under `dir`, starts raft and serves peers on
    /// `listener`. On a first start every voter proposes the same initial membership;
    /// openraft accepts it once and refuses it harmlessly afterwards.
    pub async fn start(
        node_id: i32,
        voters: &BTreeMap<i32, String>,
        dir: &Path,
        listener: TcpListener,
        timing: &QuorumTiming,
        security: Arc<dyn StreamSecurity>,
    ) -> Result<Arc<QuorumMember>, ControllerError> {
        Self::open(node_id, voters, &[], dir, Some(listener), timing, security).await
    }

    /// Opens an observer: a broker-only node (`process.roles=broker`) that follows the
    /// quorum as an openraft learner, never voting. It has no listener of its own: the
    /// active controller reaches it through the broker's listener, which hands quorum
    /// connections to [`QuorumMember::serve_stream`]. It joins with
    /// [`QuorumMember::join`]. `bootstrap` (`host:port`) is where to look for the
    /// quorum besides the voters.
    pub async fn start_observer(
        node_id: i32,
        voters: &BTreeMap<i32, String>,
        bootstrap: &[String],
        dir: &Path,
        timing: &QuorumTiming,
        security: Arc<dyn StreamSecurity>,
    ) -> Result<Arc<QuorumMember>, ControllerError> {
        Self::open(node_id, voters, bootstrap, dir, None, timing, security).await
    }

    async fn open(
        node_id: i32,
        voters: &BTreeMap<i32, String>,
        bootstrap: &[String],
        dir: &Path,
        listener: Option<TcpListener>,
        timing: &QuorumTiming,
        security: Arc<dyn StreamSecurity>,
    ) -> Result<Arc<QuorumMember>, ControllerError> {
        let id = node_id as NodeId;
        let durable: Arc<dyn DurableDir> = Arc::new(
            FsDir::open(dir)
                .map_err(|e| ControllerError::io(format!("open {}", dir.display()), e))?,
        );
        let log = LogStore::open(durable.clone())?;
        let sm = StateMachine::open(durable, None)?;
        let reader = sm.reader();
        let election = timing.election_timeout_ms.max(100);
        let config = Config {
            cluster_name: "fjord-metadata".into(),
            heartbeat_interval: (election / 5).max(20),
            election_timeout_min: election,
            election_timeout_max: election * 2,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
            ..Default::default()
        }
        .validate()
        .map_err(|e| ControllerError::NotController(format!("quorum settings: {e}")))?;
        let transport = Arc::new(
            TcpTransport::new(security.clone()).with_voters(voters.keys().map(|&v| v as NodeId)),
        );
        let raft = Raft::new(
            id,
            Arc::new(config),
            Network::new(transport.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| ControllerError::NotController(format!("starting raft: {e}")))?;
        let nodes: BTreeMap<NodeId, Node> = voters
            .iter()
            .map(|(&v, addr)| (v as NodeId, Node::new(addr.clone())))
            .collect();
        let controller = Arc::new(ControllerSlot::default());
        let (stop, mut stopped) = watch::channel(false);
        if let Some(listener) = listener {
            let raft = raft.clone();
            let handler: Arc<dyn ForwardHandler> = controller.clone();
            let security = security.clone();
            tokio::spawn(async move {
                let stopping = async move {
                    let _ = stopped.wait_for(|&s| s).await;
                };
                tcp::serve(listener, raft, handler, security, stopping).await
            });
        }
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ControllerError::NotController(format!("starting raft: {e}")))?;
        if !initialized && nodes.contains_key(&id) {
            match raft.initialize(nodes.clone()).await {
                Ok(()) => {}
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => {
                    return Err(ControllerError::NotController(format!(
                        "initializing the metadata quorum: {e}"
                    )))
                }
            }
        }
        spawn_leader_log(raft.clone(), id);
        Ok(Arc::new(QuorumMember {
            node_id: id,
            raft,
            reader,
            transport,
            voters: nodes,
            bootstrap: bootstrap.to_vec(),
            runtime: tokio::runtime::Handle::current(),
            writer: Mutex::new(()),
            unsettled: Mutex::new(None),
            write_timeout: timing.write_timeout,
            controller,
            stop,
            incarnation: uuid::Uuid::new_v4(),
            security,
        }))
    }

    /// Serves one connection of the quorum's traffic (the active controller replicating
    /// to this observer) that the broker's listener accepted.
    pub async fn serve_stream(&self, stream: tokio::net::TcpStream, peer: std::net::SocketAddr) {
        let handler: Arc<dyn ForwardHandler> = self.controller.clone();
        let mut stopped = self.stop.subscribe();
        tokio::select! {
            _ = stopped.wait_for(|&s| s) => {}
            _ = tcp::serve_connection(stream, peer, self.raft.clone(), handler, &*self.security) => {}
        }
    }

    /// Whether this member is an observer (not among the voters).
    pub fn is_observer(&self) -> bool {
        !self.voters.contains_key(&self.node_id)
    }

    /// Where member `id` is reached: its configured voter endpoint, else what the
    /// replicated membership says (observers, and voters an observer learnt of).
    fn address_of(&self, id: NodeId) -> Option<String> {
        if let Some(n) = self.voters.get(&id) {
            return Some(n.addr.clone());
        }
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// Makes this observer known to the active controller, which then replicates the
    /// metadata log (or a snapshot of it) to `addr`, this broker's listener. Tries every
    /// voter and bootstrap server until the active controller answers; returns the
    /// cluster id it gives.
    pub fn join(&self, addr: &str) -> Result<String, ControllerError> {
        let op = ControllerOp::AddObserver {
            node_id: self.node_id as i32,
            addr: addr.to_string(),
        };
        let bytes = serde_json::to_vec(&op)
            .map_err(|e| ControllerError::Corrupt(format!("encoding a controller op: {e}")))?;
        let mut places: Vec<(NodeId, String)> = Vec::new();
        if let Some(leader) = self.leader() {
            if let Some(addr) = self.address_of(leader as NodeId) {
                places.push((leader as NodeId, addr));
            }
        }
        places.extend(self.voters.iter().map(|(&id, n)| (id, n.addr.clone())));
        // Bootstrap servers have no known id: each gets its own connection slot, above
        // any node id.
        places.extend(
            self.bootstrap
                .iter()
                .enumerate()
                .map(|(i, a)| (u64::MAX - i as u64, a.clone())),
        );
        let mut last = ControllerError::NotController("no voter or bootstrap server to ask".into());
        for (id, place) in places {
            let transport = self.transport.clone();
            let bytes = bytes.clone();
            let answer = self.block(async move {
                transport
                    .forward_within(id, &place, bytes, tcp::RPC_TIMEOUT)
                    .await
            });
            let reply: OpReply = match answer {
                Ok(a) => match serde_json::from_slice(&a) {
                    Ok(r) => r,
                    Err(e) => {
                        last = ControllerError::NotController(format!("undecodable answer: {e}"));
                        continue;
                    }
                },
                Err(e) => {
                    last = ControllerError::NotController(format!("cannot reach the quorum: {e}"));
                    continue;
                }
            };
            match reply.into_result() {
                Ok(crate::ops::OpOutput::Joined { cluster_id }) => return Ok(cluster_id),
                Ok(other) => {
                    last = ControllerError::Corrupt(format!("unexpected answer {other:?}"))
                }
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// On the active controller: adds `node_id` at `addr` as a learner, replicated to
    /// but never voting. Returns once the membership change is committed.
    pub(crate) fn add_observer(&self, node_id: i32, addr: &str) -> Result<(), ControllerError> {
        let id = node_id as NodeId;
        if self.voters.contains_key(&id) {
            return Err(ControllerError::Refused {
                code: 42,
                message: format!("node {node_id} is a voter and cannot join as an observer"),
            });
        }
        let known = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config.membership().get_node(&id).cloned()
        };
        if known.is_some_and(|n| n.addr == addr) {
            return Ok(());
        }
        let raft = self.raft.clone();
        let node = Node::new(addr.to_string());
        let limit = self.write_timeout;
        let result = self.block(async move {
            tokio::time::timeout(limit, raft.add_learner(id, node, false)).await
        });
        match result {
            Ok(Ok(_)) => {
                tracing::info!(node_id, addr, "observer joined the metadata quorum");
                Ok(())
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => Err(
                ControllerError::NotController("this node is not the active controller".into()),
            ),
            Ok(Err(e)) => Err(ControllerError::NotController(format!(
                "adding observer {node_id}: {e}"
            ))),
            Err(_) => Err(ControllerError::NotController(format!(
                "adding observer {node_id} was not committed within {} s",
                self.write_timeout.as_secs()
            ))),
        }
    }

    /// Lets peers' forwarded ops run on `controller`.
    pub fn serve_controller(&self, controller: &Arc<Controller>) {
        let _ = self.controller.0.set(Arc::downgrade(controller));
    }

    pub fn incarnation(&self) -> uuid::Uuid {
        self.incarnation
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.reader.image()
    }

    /// Notified with the last applied log index after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.reader.subscribe()
    }

    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    pub fn voters(&self) -> BTreeSet<i32> {
        self.voters.keys().map(|&v| v as i32).collect()
    }

    /// The active controller, if the quorum has elected one that this node knows of.
    pub fn leader(&self) -> Option<i32> {
        self.raft
            .metrics()
            .borrow()
            .current_leader
            .map(|l| l as i32)
    }

    /// The quorum as this node, its leader, sees it.
    pub(crate) fn status(&self, now_ms: i64) -> Result<QuorumStatus, ControllerError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Leader {
            return Err(ControllerError::NotController(
                "this node is no longer the active controller".into(),
            ));
        }
        // Raft indexes count from 0; Kafka's offsets are "next offset" positions.
        let end = m.last_log_index.map_or(0, |i| i as i64 + 1);
        let high_watermark = m.last_applied.map_or(0, |l| l.index as i64 + 1);
        let learners: Vec<NodeId> = m.membership_config.membership().learner_ids().collect();
        let status_of = |id: NodeId| {
            let matched = if id == self.node_id {
                Some(end)
            } else {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten())
                    .map(|l| l.index as i64 + 1)
            };
            let caught_up = matched.is_some_and(|e| e >= high_watermark);
            ReplicaStatus {
                replica_id: id as i32,
                log_end_offset: matched.unwrap_or(-1),
                last_fetch_ms: if id == self.node_id { now_ms } else { -1 },
                last_caught_up_ms: if caught_up { now_ms } else { -1 },
            }
        };
        let voters = self.voters.keys().map(|&id| status_of(id)).collect();
        let observers = learners.into_iter().map(status_of).collect();
        Ok(QuorumStatus {
            leader_id: self.node_id as i32,
            leader_epoch: m.current_term.min(i32::MAX as u64) as i32,
            high_watermark,
            voters,
            observers,
            endpoints: self
                .voters
                .iter()
                .map(|(&id, n)| (id as i32, n.addr.clone()))
                .collect(),
        })
    }

    /// Why this node's raft core stopped (a storage error it cannot go on from), if it
    /// did. Nothing restarts it in this process.
    pub fn fatal(&self) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.running_state.as_ref().err().map(|e| e.to_string())
    }

    /// Waits until the raft core stops for good; returns why.
    pub async fn stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Some(why) = metrics.borrow_and_update().running_state.as_ref().err() {
                return why.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the metadata quorum member ended".into();
            }
        }
    }

    /// The current raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    pub fn is_leader(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.node_id)
    }

    /// Whether this member leads and a quorum acknowledged it within an election
    /// timeout: a leader restored from its own vote, or one cut off from the quorum,
    /// believes it leads until it hears otherwise, and must not vouch for anything
    /// meanwhile (a broker's heartbeat, say).
    pub fn leads_acknowledged(&self) -> bool {
        let lease = leader_lease(self.raft.config());
        leads_acknowledged(&self.raft.metrics().borrow(), lease)
    }

    /// Waits until this member may plan a change on its own image: a write of its own
    /// that timed out is settled, and [`may_plan`] holds.
    pub(crate) fn ready_to_plan(&self) -> Result<(), ControllerError> {
        let earlier = self.unsettled.lock().take();
        if let Some(mut task) = earlier {
            let settled = self.block(async {
                tokio::time::timeout(self.write_timeout, &mut task)
                    .await
                    .is_ok()
            });
            if !settled {
                *self.unsettled.lock() = Some(task);
                return Err(ControllerError::NotController(
                    "the metadata quorum has not yet committed an earlier change of this active controller; it makes no other until then".into(),
                ));
            }
        }
        let (raft, limit) = (self.raft.clone(), self.write_timeout);
        self.block(async move { own_log_applied(&raft, limit).await })
    }

    /// Proposes `records` as one batch and waits until it is committed and applied here.
    /// Returns its log index.
    /// A write that times out goes on in the background (see `unsettled`).
    pub(crate) fn write(&self, records: Vec<MetadataRecord>) -> Result<u64, ControllerError> {
        let raft = self.raft.clone();
        let mut task = self
            .runtime
            .spawn(async move { raft.client_write(MetadataBatch { records }).await });
        let limit = self.write_timeout;
        let result = self.block(async { tokio::time::timeout(limit, &mut task).await });
        let result = match result {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(join)) => {
                return Err(ControllerError::NotController(format!(
                    "the metadata write stopped: {join}"
                )))
            }
            Err(elapsed) => {
                *self.unsettled.lock() = Some(task);
                Err(elapsed)
            }
        };
        match result {
            Ok(Ok(resp)) => Ok(resp.log_id.index),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(ControllerError::NotController(match f.leader_id {
                    Some(l) => format!("node {l} is now the active controller"),
                    None => "the metadata quorum is electing a new active controller".into(),
                }))
            }
            Ok(Err(RaftError::Fatal(f))) => Err(ControllerError::QuorumStopped(format!(
                "this node's metadata quorum member stopped: {f}"
            ))),
            Ok(Err(e)) => Err(ControllerError::NotController(format!(
                "the metadata quorum refused the change: {e}"
            ))),
            Err(_) => Err(ControllerError::NotController(format!(
                "the metadata quorum did not commit the change within {} s",
                self.write_timeout.as_secs()
            ))),
        }
    }

    /// Sends `op` to the active controller and returns its reply, waiting up to `limit`
    /// (by default long enough for any op).
    pub(crate) fn forward(
        &self,
        op: &ControllerOp,
        limit: Option<Duration>,
    ) -> Result<OpReply, ControllerError> {
        let Some(leader) = self.leader() else {
            return Err(ControllerError::NotController(
                "the metadata quorum has no active controller yet".into(),
            ));
        };
        let Some(addr) = self.address_of(leader as NodeId) else {
            return Err(ControllerError::NotController(format!(
                "active controller {leader} is not a known voter"
            )));
        };
        let bytes = serde_json::to_vec(op)
            .map_err(|e| ControllerError::Corrupt(format!("encoding a controller op: {e}")))?;
        let transport = self.transport.clone();
        let limit = limit.unwrap_or(tcp::LONG_RPC_TIMEOUT);
        let answer = self
            .block(async move {
                transport
                    .forward_within(leader as NodeId, &addr, bytes, limit)
                    .await
            })
            .map_err(|e| {
                ControllerError::NotController(format!(
                    "active controller {leader} could not be reached: {e}"
                ))
            })?;
        serde_json::from_slice(&answer).map_err(|e| {
            ControllerError::NotController(format!(
                "undecodable answer from active controller {leader}: {e}"
            ))
        })
    }

    /// Waits until this node has applied the log up to `index`.
    pub(crate) fn wait_applied(
        &self,
        index: u64,
        limit: Option<Duration>,
    ) -> Result<(), ControllerError> {
        let mut applied = self.reader.subscribe();
        let limit = limit.unwrap_or(APPLY_TIMEOUT);
        let waited = self.block(async move {
            tokio::time::timeout(limit, applied.wait_for(|&i| i >= index))
                .await
                .map(|r| r.is_ok())
        });
        match waited {
            Ok(true) => Ok(()),
            _ => Err(ControllerError::NotController(format!(
                "this node did not apply metadata change {index} within {} s",
                limit.as_secs()
            ))),
        }
    }

    /// Waits for `f` on the runtime from synchronous code. On the blocking pool this is a
    /// plain `block_on`; should a caller on an async worker slip through, the worker is
    /// handed over first instead of panicking the request.
    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.runtime.block_on(f))
            }
            _ => self.runtime.block_on(f),
        }
    }

    /// Stops raft and the CONTROLLER listener.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "metadata quorum did not shut down cleanly");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quorum::tcp::Plaintext;

    fn start(
        rt: &tokio::runtime::Runtime,
        id: i32,
        voters: &BTreeMap<i32, String>,
        dir: &Path,
        timing: &QuorumTiming,
    ) -> Arc<QuorumMember> {
        rt.block_on(async {
            let listener = TcpListener::bind(&voters[&id]).await.expect("bind");
            QuorumMember::start(id, voters, dir, listener, timing, Arc::new(Plaintext)).await
        })
        .expect("the member starts")
    }

    /// Three members on loopback that have committed a first write; the leader's two
    /// followers are then stopped. Returns the runtime, the voters, the leader and the
    /// stopped followers' ids.
    fn leader_without_followers(
        tmp: &std::path::Path,
        timing: &QuorumTiming,
    ) -> (
        tokio::runtime::Runtime,
        BTreeMap<i32, String>,
        Arc<QuorumMember>,
        Vec<i32>,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let voters: BTreeMap<i32, String> = (1..=3)
            .map(|id| {
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port();
                (id, format!("127.0.0.1:{port}"))
            })
            .collect();
        let members: Vec<Arc<QuorumMember>> = (1..=3)
            .map(|id| start(&rt, id, &voters, &member_dir(tmp, id), timing))
            .collect();
        // A first write with every member up; on a loaded machine elections may come
        // and go at first, so whichever member leads tries until one commits it.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let leader = loop {
            let written = members.iter().find(|m| m.is_leader()).filter(|m| {
                m.ready_to_plan().is_ok()
                    && m.write(vec![MetadataRecord::ProducerIds { next: 1000 }])
                        .is_ok()
            });
            if let Some(m) = written {
                break m.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no write committed");
            std::thread::sleep(Duration::from_millis(50));
        };
        let followers: Vec<i32> = (1..=3).filter(|&id| id != leader.node_id as i32).collect();
        for m in &members {
            if m.node_id != leader.node_id {
                rt.block_on(m.shutdown());
            }
        }
        (rt, voters, leader, followers)
    }

    fn member_dir(tmp: &std::path::Path, id: i32) -> std::path::PathBuf {
        tmp.join(format!("node-{id}"))
    }

    /// Quick elections, and writes that give up after `write_timeout_ms`.
    fn quick(write_timeout_ms: u64) -> QuorumTiming {
        QuorumTiming {
            election_timeout_ms: 100,
            write_timeout: Duration::from_millis(write_timeout_ms),
        }
    }

    /// Waits (30 s at most) until `leader` may plan again.
    fn until_planning_resumes(leader: &QuorumMember) {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while leader.ready_to_plan().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "planning never resumed"
            );
        }
    }

    /// Three members on loopback. Both followers stop, so the leader keeps leading but
    /// commits nothing: its write times out with the entry in its log, undecided. No
    /// change may be planned until it is decided (a plan on the image without it would
    /// repeat its producer ids once it commits); once a follower is back it commits, and
    /// planning goes on with it in the image.
    #[test]
    fn a_write_that_timed_out_holds_back_the_next_plan() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let timing = quick(1500);
        let (rt, voters, leader, followers) = leader_without_followers(tmp.path(), &timing);
        let dir = |id: i32| member_dir(tmp.path(), id);

        let timed_out = leader.write(vec![MetadataRecord::ProducerIds { next: 2000 }]);
        assert!(
            matches!(timed_out, Err(ControllerError::NotController(_))),
            "{timed_out:?}"
        );
        assert!(leader.is_leader(), "the leader stepped down");
        let refused = leader.ready_to_plan();
        assert!(
            matches!(&refused, Err(ControllerError::NotController(m)) if m.contains("earlier change")),
            "a plan was allowed while an earlier write is undecided: {refused:?}"
        );

        let _back = start(&rt, followers[0], &voters, &dir(followers[0]), &timing);
        until_planning_resumes(&leader);
        assert_eq!(leader.image().next_producer_id, 2000);
        rt.block_on(leader.shutdown());
    }

    /// A leader that no quorum has acknowledged for an election timeout (cut off here;
    /// restarted with its old leader vote, in the simulation) still believes it leads,
    /// but plans nothing on its image, which may be stale: it once refused an ISR change
    /// as "partition epoch 23 is not the current 20", leaving the partition's leader
    /// waiting for metadata that never came. Once a follower answers it plans again.
    #[test]
    fn a_leader_no_quorum_acknowledges_plans_nothing() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let timing = quick(1000);
        let (rt, voters, leader, followers) = leader_without_followers(tmp.path(), &timing);
        std::thread::sleep(Duration::from_millis(300));
        assert!(leader.is_leader(), "the leader stepped down");
        let refused = leader.ready_to_plan();
        assert!(
            matches!(&refused, Err(ControllerError::NotController(m)) if m.contains("not acknowledged")),
            "a leader without a quorum may plan: {refused:?}"
        );
        let dir = member_dir(tmp.path(), followers[0]);
        let _back = start(&rt, followers[0], &voters, &dir, &timing);
        until_planning_resumes(&leader);
        rt.block_on(leader.shutdown());
    }

    /// A broker's heartbeat is a promise that no active controller fences the broker
    /// for a session; a group coordinator cut off from the quorum relies on it to stop
    /// answering from its old state in time. So a leader no quorum has acknowledged
    /// refuses heartbeats (even its own broker's), and the broker's session counts from
    /// the last heartbeat one acknowledged.
    #[test]
    fn a_leader_no_quorum_acknowledges_takes_no_heartbeats() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let timing = quick(1000);
        let (rt, voters, leader, followers) = leader_without_followers(tmp.path(), &timing);
        let node = leader.node_id as i32;
        let controller = crate::controller::Controller::with_quorum(leader.clone(), node, 6000);
        let beat = || controller.heartbeat(node, Duration::from_secs(1));
        std::thread::sleep(Duration::from_millis(300));
        assert!(leader.is_leader(), "the leader stepped down");
        let refused = beat();
        assert!(
            matches!(&refused, Err(ControllerError::NotController(m)) if m.contains("acknowledged")),
            "a leader without a quorum took a heartbeat: {refused:?}"
        );
        assert!(!controller.session_current(Duration::from_secs(60)));

        let dir = member_dir(tmp.path(), followers[0]);
        let back = start(&rt, followers[0], &voters, &dir, &timing);
        until_planning_resumes(&leader);
        beat().expect("a heartbeat with the quorum back");
        assert!(controller.session_current(Duration::from_secs(60)));

        rt.block_on(back.shutdown());
        std::thread::sleep(Duration::from_millis(300));
        assert!(beat().is_err(), "a leader cut off again took a heartbeat");
        // The last acknowledged one was sent over 300 ms ago: a 200 ms session may have
        // ended, a minute's has not.
        assert!(!controller.session_current(Duration::from_millis(200)));
        assert!(controller.session_current(Duration::from_secs(60)));
        rt.block_on(leader.shutdown());
    }
}
