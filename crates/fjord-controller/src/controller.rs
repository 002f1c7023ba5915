//! The controller: validates metadata changes, commits them to the metadata log, and
//! publishes the new image. With one voter, commit means fsynced locally.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::ControllerError;
use crate::image::{MetadataImage, TopicImage};
use crate::liveness::{Liveness, Verdict};
use crate::log::MetadataLog;
use crate::ops::{ControllerOp, OpOutput, PartitionOutcome, QuorumStatus, ReplicaStatus};
use crate::partitions::{self, AlterPartitionRequest, Election};
use crate::quorum::QuorumMember;
use crate::record::{
    ConfigResource, ListenerEndpoint, MetadataRecord, ScramCredential, ScramMechanism,
};

/// Kafka's limit: a partition directory name `<topic>-<partition>` must fit in 255 bytes.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// Producer ids are persisted a block at a time so that handing one out costs no fsync.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// A request to create one topic.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateTopicSpec {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Explicit replica lists per partition; when non-empty it fixes both counts.
    pub assignments: Vec<Vec<i32>>,
    /// Already validated by the broker, which knows what each config means.
    pub configs: BTreeMap<String, String>,
}

/// A request to grow a topic to `total` partitions.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreatePartitionsSpec {
    pub name: String,
    pub total: i32,
    pub assignments: Vec<Vec<i32>>,
}

pub struct Controller {
    node_id: i32,
    backend: Backend,
    /// Producer ids this broker may still hand out: `start..end` of its reserved block.
    producer_ids: Mutex<(i64, i64)>,
    /// Brokers' heartbeats, as the active controller has heard them.
    liveness: Mutex<Liveness>,
    /// When this broker sent the last heartbeat an active controller acknowledged: the
    /// start of its session there (see [`Controller::session_current`]).
    heartbeat_acked: Mutex<Option<std::time::Instant>>,
    /// The cluster's id, told to observers as they join.
    cluster_id: std::sync::OnceLock<String>,
}

/// Where metadata lives: a local log (one node), or the replicated quorum.
enum Backend {
    Local {
        /// Serialises writers: validate against the image, append, apply, publish — as
        /// one step, so two concurrent creates of the same topic cannot both pass
        /// validation.
        log: Mutex<MetadataLog>,
        image: RwLock<Arc<MetadataImage>>,
        changed: watch::Sender<u64>,
    },
    Quorum(Arc<QuorumMember>),
}

impl Controller {
    /// Opens the metadata log under `dir` and rebuilds the image by replaying it.
    pub fn open(dir: &Path, node_id: i32) -> Result<Controller, ControllerError> {
        let (log, batches) = MetadataLog::open(dir)?;
        let mut image = MetadataImage::default();
        for batch in &batches {
            for record in batch {
                image.apply(record);
            }
        }
        let (changed, _) = watch::channel(image.offset);
        Ok(Controller {
            node_id,
            backend: Backend::Local {
                log: Mutex::new(log),
                image: RwLock::new(Arc::new(image)),
                changed,
            },
            producer_ids: Mutex::new((0, 0)),
            liveness: Mutex::new(Liveness::new(i64::MAX)),
            heartbeat_acked: Mutex::new(None),
            cluster_id: std::sync::OnceLock::new(),
        })
    }

    /// A controller over a member of the replicated metadata quorum; a broker silent for
    /// `session_timeout_ms` is fenced.
    pub fn with_quorum(
        member: Arc<QuorumMember>,
        node_id: i32,
        session_timeout_ms: i64,
    ) -> Controller {
        Controller {
            node_id,
            backend: Backend::Quorum(member),
            producer_ids: Mutex::new((0, 0)),
            liveness: Mutex::new(Liveness::new(session_timeout_ms)),
            heartbeat_acked: Mutex::new(None),
            cluster_id: std::sync::OnceLock::new(),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// The cluster id of this node's data directory, once it is known.
    pub fn set_cluster_id(&self, id: &str) {
        let _ = self.cluster_id.set(id.to_string());
    }

    /// The quorum member, when metadata is replicated.
    pub fn quorum(&self) -> Option<&Arc<QuorumMember>> {
        match &self.backend {
            Backend::Quorum(q) => Some(q),
            Backend::Local { .. } => None,
        }
    }

    /// The active controller's node id, if one is known: this node when it runs alone.
    pub fn active_controller(&self) -> Option<i32> {
        match &self.backend {
            Backend::Local { .. } => Some(self.node_id),
            Backend::Quorum(q) => q.leader(),
        }
    }

    /// The current image. Cheap: a shared snapshot that later changes do not alter.
    pub fn image(&self) -> Arc<MetadataImage> {
        match &self.backend {
            Backend::Local { image, .. } => image.read().clone(),
            Backend::Quorum(q) => q.image(),
        }
    }

    /// Notified after every change applied to the image.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Local { changed, .. } => changed.subscribe(),
            Backend::Quorum(q) => q.subscribe(),
        }
    }

    /// The member to send ops to the active controller through, when that is not us.
    fn forwarder(&self) -> Option<&QuorumMember> {
        match &self.backend {
            Backend::Quorum(q) if !q.is_leader() => Some(q),
            _ => None,
        }
    }

    /// Commits `build(image)`'s records, if any, while holding the writer lock. Returns
    /// the output and the log index of the change (0 when nothing changed).
    fn commit<T>(
        &self,
        build: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
    ) -> Result<(T, u64), ControllerError> {
        self.commit_prepared(build, |_| Ok::<(), ControllerError>(()))
    }

    /// Like [`Controller::commit`], but `prepare` sees the planned records first and can
    /// veto them: nothing is committed unless it succeeds. This is how a broker makes sure
    /// it can host new partitions before the metadata log says they exist, so that a
    /// creation it cannot honour never leaves a log it cannot start from.
    fn commit_prepared<T, E: From<ControllerError>>(
        &self,
        build: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), ControllerError>,
        prepare: impl FnOnce(&[MetadataRecord]) -> Result<(), E>,
    ) -> Result<(T, u64), E> {
        match &self.backend {
            Backend::Local {
                log,
                image,
                changed,
            } => {
                let mut log = log.lock();
                let current = image.read().clone();
                let (records, out) = build(&current)?;
                if records.is_empty() {
                    return Ok((out, 0));
                }
                prepare(&records)?;
                log.append(&records)?;
                let mut next = (*current).clone();
                for r in &records {
                    next.apply(r);
                }
                let offset = next.offset;
                *image.write() = Arc::new(next);
                changed.send_replace(offset);
                Ok((out, offset))
            }
            Backend::Quorum(q) => {
                // Planning and proposing happen as one step on the active controller, so
                // each plan sees every change proposed before it; and a new active
                // controller plans nothing until its image holds every change committed
                // before its term.
                let _writer = q.writer.lock();
                q.ready_to_plan()?;
                let current = q.image();
                let (records, out) = build(&current)?;
                if records.is_empty() {
                    return Ok((out, 0));
                }
                prepare(&records)?;
                let index = q.write(records)?;
                Ok((out, index))
            }
        }
    }

    /// Runs `op` here, or on the active controller when that is another node; in the
    /// second case waits until this node's image includes the change.
    pub fn submit(&self, op: ControllerOp) -> Result<OpOutput, ControllerError> {
        self.submit_within(op, None)
    }

    /// [`Controller::submit`], giving up on the active controller's answer after `limit`.
    fn submit_within(
        &self,
        op: ControllerOp,
        limit: Option<std::time::Duration>,
    ) -> Result<OpOutput, ControllerError> {
        match self.forwarder() {
            Some(q) => {
                let reply = q.forward(&op, limit)?;
                let index = reply.log_index;
                let out = reply.into_result()?;
                q.wait_applied(index, limit)?;
                Ok(out)
            }
            None => self.execute(&op).map(|(out, _)| out),
        }
    }

    /// Runs `op` on this node, as the active controller (or the only node): plans it
    /// against the image and commits it. Returns its output and log index.
    pub fn execute(&self, op: &ControllerOp) -> Result<(OpOutput, u64), ControllerError> {
        let done = |(_, index): ((), u64)| (OpOutput::Done, index);
        match op {
            ControllerOp::RegisterBroker {
                node_id,
                host,
                port,
                rack,
                incarnation,
                listeners,
            } => self
                .commit(|image| {
                    let record = MetadataRecord::RegisterBroker {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                        incarnation: *incarnation,
                        listeners: listeners.clone(),
                    };
                    let mut records = plan_registration(image, record);
                    // The very first record of a new cluster: it starts with every feature
                    // at its new-cluster level. Older logs keep their levels.
                    if image.offset == 0 && !records.is_empty() {
                        records.splice(0..0, crate::features::bootstrap());
                    }
                    Ok((records, ()))
                })
                .map(done),
            ControllerOp::CreateTopic(spec) => self
                .commit(|image| Ok((plan_topic(image, spec)?, ())))
                .map(done),
            ControllerOp::DeleteTopic(name) => self
                .commit(|image| plan_delete(image, name))
                .map(|(id, index)| (OpOutput::TopicId(id), index)),
            ControllerOp::CreatePartitions(spec) => self
                .commit(|image| Ok((plan_partitions(image, spec)?, ())))
                .map(done),
            ControllerOp::AlterTopicConfigs { name, changes } => self
                .commit(|image| Ok((plan_topic_configs(image, name, changes)?, ())))
                .map(done),
            ControllerOp::AlterConfigs {
                resource,
                name,
                changes,
            } => self
                .commit(|image| Ok((plan_configs(image, *resource, name, changes), ())))
                .map(done),
            ControllerOp::BrokerHeartbeat { node_id } => {
                let verdict = {
                    let mut live = self.liveness.lock();
                    if let Some(q) = self.quorum() {
                        // An acknowledged heartbeat promises the broker that no active
                        // controller fences it for a session; only one the quorum
                        // follows can promise that.
                        if !q.leads_acknowledged() {
                            return Err(ControllerError::NotController(
                                "this node has not been acknowledged as active controller by the metadata quorum within an election timeout".into(),
                            ));
                        }
                        live.lead(q.term(), now_ms());
                    }
                    live.heartbeat(&self.image(), *node_id, now_ms())
                };
                match verdict {
                    Some(Verdict::Unfence(id)) => self
                        .commit(|image| Ok((fencing(image, id, false), ())))
                        .map(done),
                    _ => Ok((OpOutput::Done, 0)),
                }
            }
            ControllerOp::AlterPartition(req) => {
                let mut refused = None;
                let (state, index) =
                    self.commit(|image| match partitions::alter_partition(image, req) {
                        Ok((records, state)) => Ok((records, Some(state))),
                        Err(why) => {
                            refused = Some(why);
                            Ok((vec![], None))
                        }
                    })?;
                match (state, refused) {
                    (Some(state), _) => Ok((OpOutput::Partition(state), index)),
                    (None, Some((code, message))) => {
                        Err(ControllerError::Refused { code, message })
                    }
                    (None, None) => Err(ControllerError::Corrupt(
                        "AlterPartition planned nothing".into(),
                    )),
                }
            }
            ControllerOp::ElectLeaders {
                election,
                partitions,
            } => self
                .commit(|image| Ok(plan_elections(image, *election, partitions.as_deref())))
                .map(|(results, index)| (OpOutput::Elections(results), index)),
            ControllerOp::AlterReassignments {
                allow_replication_factor_change,
                partitions,
            } => self
                .commit(|image| {
                    Ok(plan_reassignments(
                        image,
                        partitions,
                        *allow_replication_factor_change,
                    ))
                })
                .map(|(results, index)| (OpOutput::Reassignments(results), index)),
            ControllerOp::ControlledShutdown { node_id } => self
                .commit(|image| Ok((fencing(image, *node_id, true), ())))
                .map(done),
            ControllerOp::AddObserver { node_id, addr } => {
                if let Some(q) = self.forwarder() {
                    // Any voter admits an observer (which may know just one of them, from
                    // controller.quorum.bootstrap.servers): it passes the request on.
                    let out = q.forward(op, None)?.into_result()?;
                    return Ok((out, 0));
                }
                let (Some(q), Some(cluster_id)) = (self.quorum(), self.cluster_id.get()) else {
                    return Err(ControllerError::NotController(
                        "this node is not ready to admit observers".into(),
                    ));
                };
                q.add_observer(*node_id, addr)?;
                Ok((
                    OpOutput::Joined {
                        cluster_id: cluster_id.clone(),
                    },
                    0,
                ))
            }
            ControllerOp::DescribeQuorum => self
                .describe_quorum_here()
                .map(|status| (OpOutput::Quorum(status), 0)),
            ControllerOp::ProducerIdBlock => self
                .commit(|image| {
                    let start = image.next_producer_id;
                    let end = start + PRODUCER_ID_BLOCK;
                    Ok((
                        vec![MetadataRecord::ProducerIds { next: end }],
                        (start, end),
                    ))
                })
                .map(|((start, end), index)| (OpOutput::ProducerIds { start, end }, index)),
            ControllerOp::UpdateFeature {
                name,
                level,
                allow_downgrade,
            } => self
                .commit(|image| {
                    let downgrade = if *allow_downgrade {
                        crate::features::Downgrade::Allow
                    } else {
                        crate::features::Downgrade::Refuse
                    };
                    let record = crate::features::plan_update(image, name, *level, downgrade)?;
                    Ok((record.into_iter().collect(), ()))
                })
                .map(done),
            ControllerOp::CreateAcls(bindings) => self
                .commit(|image| {
                    let mut have: std::collections::BTreeSet<&crate::acl::AclBinding> =
                        image.acls.values().collect();
                    let mut records = Vec::new();
                    for b in bindings {
                        crate::acl::validate(b).map_err(|message| ControllerError::Refused {
                            // INVALID_REQUEST, as Kafka answers an unusable binding.
                            code: 42,
                            message,
                        })?;
                        if have.insert(b) {
                            records.push(MetadataRecord::Acl {
                                id: Uuid::new_v4(),
                                binding: Some(b.clone()),
                            });
                        }
                    }
                    Ok((records, ()))
                })
                .map(done),
            ControllerOp::DeleteAcls(filters) => self
                .commit(|image| {
                    let mut gone = std::collections::BTreeSet::new();
                    let mut records = Vec::new();
                    let mut deleted = Vec::new();
                    for f in filters {
                        let mut these = Vec::new();
                        for (id, b) in &image.acls {
                            if f.matches(b) {
                                these.push(b.clone());
                                if gone.insert(*id) {
                                    records.push(MetadataRecord::Acl {
                                        id: *id,
                                        binding: None,
                                    });
                                }
                            }
                        }
                        deleted.push(these);
                    }
                    Ok((records, deleted))
                })
                .map(|(deleted, index)| (OpOutput::DeletedAcls(deleted), index)),
            ControllerOp::AlterScram(changes) => self
                .commit(|image| {
                    // Deleting what is not there changes nothing, and writes nothing.
                    let records = changes
                        .iter()
                        .filter(|(user, mechanism, credential)| {
                            credential.is_some()
                                || image.scram_credential(user, *mechanism).is_some()
                        })
                        .map(
                            |(user, mechanism, credential)| MetadataRecord::ScramCredential {
                                user: user.clone(),
                                mechanism: *mechanism,
                                credential: credential.clone(),
                            },
                        )
                        .collect();
                    Ok((records, ()))
                })
                .map(done),
        }
    }

    /// Records this broker's endpoint; a no-op when nothing changed since last start. In
    /// a quorum every start registers anew (with a new incarnation id), and returns once
    /// this node's image holds everything committed up to the registration.
    pub fn register_broker(
        &self,
        node_id: i32,
        host: &str,
        port: i32,
        rack: Option<String>,
        listeners: Vec<ListenerEndpoint>,
    ) -> Result<(), ControllerError> {
        let incarnation = self.quorum().map(|q| q.incarnation());
        self.submit(ControllerOp::RegisterBroker {
            node_id,
            host: host.to_string(),
            port,
            rack,
            incarnation,
            listeners,
        })
        .map(|_| ())
    }

    /// Stores ACLs; an invalid one refuses the whole batch.
    pub fn create_acls(
        &self,
        bindings: Vec<crate::acl::AclBinding>,
    ) -> Result<(), ControllerError> {
        self.submit(ControllerOp::CreateAcls(bindings)).map(|_| ())
    }

    /// Deletes the ACLs the filters match; returns them per filter.
    pub fn delete_acls(
        &self,
        filters: Vec<crate::acl::AclFilter>,
    ) -> Result<Vec<Vec<crate::acl::AclBinding>>, ControllerError> {
        match self.submit(ControllerOp::DeleteAcls(filters))? {
            OpOutput::DeletedAcls(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }

    /// Sets or deletes SCRAM credentials in one commit.
    pub fn alter_scram(
        &self,
        changes: Vec<(String, ScramMechanism, Option<ScramCredential>)>,
    ) -> Result<(), ControllerError> {
        self.submit(ControllerOp::AlterScram(changes)).map(|_| ())
    }

    /// The metadata quorum: its leader, epoch, high watermark and how far each voter is.
    pub fn describe_quorum(&self) -> Result<QuorumStatus, ControllerError> {
        match self.submit(ControllerOp::DescribeQuorum)? {
            OpOutput::Quorum(status) => Ok(status),
            other => Err(unexpected(other)),
        }
    }

    /// [`Controller::describe_quorum`] answered by this node: the only node, or the leader.
    fn describe_quorum_here(&self) -> Result<QuorumStatus, ControllerError> {
        let now = now_ms();
        match &self.backend {
            Backend::Local { .. } => {
                let end = self.image().offset as i64;
                Ok(QuorumStatus {
                    leader_id: self.node_id,
                    leader_epoch: 1,
                    high_watermark: end,
                    voters: vec![ReplicaStatus {
                        replica_id: self.node_id,
                        log_end_offset: end,
                        last_fetch_ms: now,
                        last_caught_up_ms: now,
                    }],
                    observers: vec![],
                    endpoints: vec![],
                })
            }
            Backend::Quorum(q) => q.status(now),
        }
    }

    /// Asks the active controller for a new ISR of a partition this broker leads. Returns
    /// the partition's state once committed and applied here.
    pub fn alter_partition(
        &self,
        req: AlterPartitionRequest,
    ) -> Result<crate::image::PartitionImage, ControllerError> {
        match self.submit(ControllerOp::AlterPartition(req))? {
            OpOutput::Partition(state) => Ok(state),
            other => Err(unexpected(other)),
        }
    }

    /// ElectLeaders, as the active controller carries it out.
    pub fn elect_leaders(
        &self,
        election: Election,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<PartitionOutcome>, ControllerError> {
        match self.submit(ControllerOp::ElectLeaders {
            election,
            partitions,
        })? {
            OpOutput::Elections(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// AlterPartitionReassignments, as the active controller carries it out.
    pub fn alter_reassignments(
        &self,
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
        allow_replication_factor_change: bool,
    ) -> Result<Vec<PartitionOutcome>, ControllerError> {
        match self.submit(ControllerOp::AlterReassignments {
            allow_replication_factor_change,
            partitions,
        })? {
            OpOutput::Reassignments(results) => Ok(results),
            other => Err(unexpected(other)),
        }
    }

    /// `auto.leader.rebalance.enable`, on the active controller: when some broker leads
    /// fewer than `percent` percent of the partitions it is the preferred replica of (and
    /// could lead them), preferred replicas take their leadership back. Returns how many
    /// moved. Elsewhere it does nothing.
    pub fn rebalance_leaders(&self, percent: u32) -> Result<usize, ControllerError> {
        match self.quorum() {
            Some(q) if q.is_leader() => {}
            _ => return Ok(0),
        }
        if !partitions::leaders_imbalanced(&self.image(), percent) {
            return Ok(0);
        }
        let (results, _) =
            self.commit(|image| Ok(plan_elections(image, Election::Preferred, None)))?;
        Ok(results.iter().filter(|r| r.code == 0).count())
    }

    /// A broker about to stop: it is fenced at once, so its partitions get new leaders
    /// before it goes rather than a session timeout later. Its next heartbeat (a restart)
    /// unfences it.
    /// Bounded by `limit` (both reaching the active controller and seeing the change
    /// here), so that a node stopping with a broken disk is not held up by it.
    pub fn controlled_shutdown(
        &self,
        node_id: i32,
        limit: std::time::Duration,
    ) -> Result<(), ControllerError> {
        self.submit_within(ControllerOp::ControlledShutdown { node_id }, Some(limit))
            .map(|_| ())
    }

    /// Tells the active controller this broker is alive.
    ///
    /// A heartbeat is worthless late: one stuck on a frozen (SIGSTOP) controller must not
    /// keep this broker from reaching the next active controller before its session
    /// there ends, so the broker bounds the wait with `limit`.
    pub fn heartbeat(
        &self,
        node_id: i32,
        limit: std::time::Duration,
    ) -> Result<(), ControllerError> {
        let sent = std::time::Instant::now();
        self.submit_within(ControllerOp::BrokerHeartbeat { node_id }, Some(limit))?;
        let mut acked = self.heartbeat_acked.lock();
        if acked.is_none_or(|a| a < sent) {
            *acked = Some(sent);
        }
        Ok(())
    }

    /// Whether this broker's session on the active controller is surely still open: a
    /// heartbeat it acknowledged was sent less than `session` ago. The controller counts
    /// the session from when the heartbeat arrived, later than it was sent, so until
    /// then no controller can have fenced this broker and moved its partitions away.
    /// A broker cut off from the quorum stops trusting its image once the session may
    /// have ended; one without a quorum (a single node) is never fenced.
    pub fn session_current(&self, session: std::time::Duration) -> bool {
        if self.quorum().is_none() {
            return true;
        }
        self.heartbeat_acked
            .lock()
            .is_some_and(|sent| sent.elapsed() < session)
    }

    /// On the active controller: fences the brokers whose heartbeats stopped. Returns
    /// their ids. Elsewhere it only forgets what it heard while it led.
    pub fn fence_expired(&self) -> Result<Vec<i32>, ControllerError> {
        let Some(q) = self.quorum() else {
            return Ok(vec![]);
        };
        let expired = {
            let mut live = self.liveness.lock();
            if !q.is_leader() {
                live.follow();
                return Ok(vec![]);
            }
            live.lead(q.term(), now_ms());
            live.expired(&self.image(), now_ms())
        };
        let mut fenced = Vec::new();
        for v in expired {
            if let Verdict::Fence(id) = v {
                self.commit(|image| Ok((fencing(image, id, true), ())))?;
                fenced.push(id);
            }
        }
        Ok(fenced)
    }

    pub fn validate_create_topic(&self, spec: &CreateTopicSpec) -> Result<(), ControllerError> {
        plan_topic(&self.image(), spec).map(|_| ())
    }

    pub fn create_topic(&self, spec: &CreateTopicSpec) -> Result<TopicImage, ControllerError> {
        self.create_topic_prepared(spec, |_| Ok::<(), ControllerError>(()))
    }

    /// Creates a topic; `prepare` runs first when this node commits the change itself.
    /// Partitions placed on other brokers are created by those brokers as they apply it.
    pub fn create_topic_prepared<E: From<ControllerError>>(
        &self,
        spec: &CreateTopicSpec,
        prepare: impl FnOnce(&[MetadataRecord]) -> Result<(), E>,
    ) -> Result<TopicImage, E> {
        if self.forwarder().is_some() {
            self.submit(ControllerOp::CreateTopic(spec.clone()))?;
        } else {
            self.commit_prepared(|image| Ok((plan_topic(image, spec)?, ())), prepare)?;
        }
        Ok(self
            .image()
            .topic(&spec.name)
            .cloned()
            .ok_or_else(|| ControllerError::UnknownTopic(spec.name.clone()))?)
    }

    pub fn delete_topic(&self, name: &str) -> Result<Uuid, ControllerError> {
        match self.submit(ControllerOp::DeleteTopic(name.to_string()))? {
            OpOutput::TopicId(id) => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    pub fn validate_create_partitions(
        &self,
        spec: &CreatePartitionsSpec,
    ) -> Result<(), ControllerError> {
        plan_partitions(&self.image(), spec).map(|_| ())
    }

    pub fn create_partitions(&self, spec: &CreatePartitionsSpec) -> Result<(), ControllerError> {
        self.create_partitions_prepared(spec, |_| Ok::<(), ControllerError>(()))
    }

    pub fn create_partitions_prepared<E: From<ControllerError>>(
        &self,
        spec: &CreatePartitionsSpec,
        prepare: impl FnOnce(&[MetadataRecord]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.forwarder().is_some() {
            self.submit(ControllerOp::CreatePartitions(spec.clone()))?;
            return Ok(());
        }
        self.commit_prepared(|image| Ok((plan_partitions(image, spec)?, ())), prepare)
            .map(|_| ())
    }

    pub fn alter_topic_configs(
        &self,
        name: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), ControllerError> {
        self.submit(ControllerOp::AlterTopicConfigs {
            name: name.to_string(),
            changes: changes.to_vec(),
        })
        .map(|_| ())
    }

    pub fn alter_configs(
        &self,
        resource: ConfigResource,
        name: &str,
        changes: &[(String, Option<String>)],
    ) -> Result<(), ControllerError> {
        self.submit(ControllerOp::AlterConfigs {
            resource,
            name: name.to_string(),
            changes: changes.to_vec(),
        })
        .map(|_| ())
    }

    /// Finalizes feature `name` at `level` (0 turns it off); lowering it only with
    /// `allow_downgrade`.
    pub fn update_feature(
        &self,
        name: &str,
        level: i16,
        allow_downgrade: bool,
    ) -> Result<(), ControllerError> {
        self.submit(ControllerOp::UpdateFeature {
            name: name.to_string(),
            level,
            allow_downgrade,
        })
        .map(|_| ())
    }

    /// A producer id no broker has handed out before. Ids are reserved a block at a time
    /// in the metadata log, so handing one out usually costs nothing; after a restart new
    /// ids start past every reserved block, so an id is never handed out twice.
    pub fn allocate_producer_id(&self) -> Result<i64, ControllerError> {
        let mut ids = self.producer_ids.lock();
        if ids.0 >= ids.1 {
            match self.submit(ControllerOp::ProducerIdBlock)? {
                OpOutput::ProducerIds { start, end } => *ids = (start, end),
                other => return Err(unexpected(other)),
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }
}

/// An op answered with the wrong kind of output: a bug, reported rather than unwrapped.
fn unexpected(out: OpOutput) -> ControllerError {
    ControllerError::Corrupt(format!("unexpected controller answer {out:?}"))
}

/// The registration record, unless the image already holds exactly it (a restart of a
/// one-node cluster with the same endpoint changes nothing).
fn plan_registration(image: &MetadataImage, record: MetadataRecord) -> Vec<MetadataRecord> {
    let MetadataRecord::RegisterBroker { node_id, .. } = &record else {
        return vec![record];
    };
    // Applied to an image of this broker alone: the same `apply` decides what changes.
    let before = image.brokers.get(node_id).cloned();
    let mut probe = MetadataImage::default();
    if let Some(b) = &before {
        probe.brokers.insert(*node_id, b.clone());
    }
    probe.apply(&record);
    if probe.brokers.get(node_id) == before.as_ref() {
        return vec![];
    }
    // Registering unfences: partitions waiting for this broker get it back as leader.
    let node_id = *node_id;
    let mut after = image.clone();
    after.apply(&record);
    let mut records = vec![record];
    if before.is_some_and(|b| b.fenced) {
        records.extend(partitions::on_unfenced(&after, node_id));
    }
    records
}

/// The record that fences or unfences `node_id`, unless it is already so, followed by
/// the leadership and ISR changes that follow from it (judged on the image with the
/// fencing applied, so the broker counts as gone or back).
fn fencing(image: &MetadataImage, node_id: i32, fenced: bool) -> Vec<MetadataRecord> {
    match image.brokers.get(&node_id) {
        Some(b) if b.fenced != fenced => {
            let record = MetadataRecord::BrokerFencing { node_id, fenced };
            let mut after = image.clone();
            after.apply(&record);
            let mut records = vec![record];
            if fenced {
                records.extend(partitions::on_fenced(&after, node_id));
            } else {
                records.extend(partitions::on_unfenced(&after, node_id));
            }
            records
        }
        _ => vec![],
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The records of an ElectLeaders and each partition's outcome. Over every partition
/// (`None`) those already led by the right replica are left out of the answer.
fn plan_elections(
    image: &MetadataImage,
    election: Election,
    only: Option<&[(String, i32)]>,
) -> (Vec<MetadataRecord>, Vec<PartitionOutcome>) {
    let wanted: Vec<(String, i32)> = match only {
        Some(list) => list.to_vec(),
        None => image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter().map(|p| (t.name.clone(), p.partition)))
            .collect(),
    };
    let mut records = Vec::new();
    let mut results = Vec::new();
    for (topic, partition) in wanted {
        let outcome = match image.topic(&topic) {
            Some(t) => partitions::elect(image, t, partition, election),
            None => Err((
                partitions::alter_code::UNKNOWN_TOPIC_OR_PARTITION,
                format!("Unknown topic {topic}"),
            )),
        };
        let (code, message) = match outcome {
            Ok(record) => {
                records.push(record);
                (0, None)
            }
            Err((partitions::alter_code::ELECTION_NOT_NEEDED, _)) if only.is_none() => continue,
            Err((code, message)) => (code, Some(message)),
        };
        results.push(PartitionOutcome {
            topic,
            partition,
            code,
            message,
        });
    }
    (records, results)
}

/// The records of an AlterPartitionReassignments and each partition's outcome. A
/// partition named twice is refused the second time: which list should win is unclear.
fn plan_reassignments(
    image: &MetadataImage,
    wanted: &[(String, i32, Option<Vec<i32>>)],
    allow_replication_factor_change: bool,
) -> (Vec<MetadataRecord>, Vec<PartitionOutcome>) {
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (topic, partition, target) in wanted {
        let outcome = if !seen.insert((topic, partition)) {
            Err((
                partitions::alter_code::INVALID_REPLICA_ASSIGNMENT,
                format!("Partition {topic}-{partition} is named more than once"),
            ))
        } else {
            match image.topic(topic) {
                Some(t) => partitions::reassign(
                    image,
                    t,
                    *partition,
                    target.as_deref(),
                    allow_replication_factor_change,
                ),
                None => Err((
                    partitions::alter_code::UNKNOWN_TOPIC_OR_PARTITION,
                    format!("Unknown topic {topic}"),
                )),
            }
        };
        let (code, message) = match outcome {
            Ok(record) => {
                records.extend(record);
                (0, None)
            }
            Err((code, message)) => (code, Some(message)),
        };
        results.push(PartitionOutcome {
            topic: topic.clone(),
            partition: *partition,
            code,
            message,
        });
    }
    (records, results)
}

fn plan_delete(
    image: &MetadataImage,
    name: &str,
) -> Result<(Vec<MetadataRecord>, Uuid), ControllerError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    Ok((
        vec![MetadataRecord::RemoveTopic {
            topic_id: topic.topic_id,
        }],
        topic.topic_id,
    ))
}

fn plan_topic_configs(
    image: &MetadataImage,
    name: &str,
    changes: &[(String, Option<String>)],
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))?;
    Ok(changes
        .iter()
        .filter(|(k, v)| topic.configs.get(k) != v.as_ref())
        .map(|(k, v)| MetadataRecord::TopicConfig {
            topic_id: topic.topic_id,
            key: k.clone(),
            value: v.clone(),
        })
        .collect())
}

fn plan_configs(
    image: &MetadataImage,
    resource: ConfigResource,
    name: &str,
    changes: &[(String, Option<String>)],
) -> Vec<MetadataRecord> {
    let current = image.configs(resource, name);
    changes
        .iter()
        .filter(|(k, v)| current.and_then(|c| c.get(k)) != v.as_ref())
        .map(|(k, v)| MetadataRecord::Config {
            resource,
            name: name.to_string(),
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    if name.is_empty() {
        return Err(ControllerError::InvalidTopic(
            "Topic name is illegal, it can't be empty".into(),
        ));
    }
    if name == "." || name == ".." {
        return Err(ControllerError::InvalidTopic(
            "Topic name cannot be \".\" or \"..\"".into(),
        ));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters, topic name: {name}"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic name \"{name}\" is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Metrics names replace '.' with '_', so Kafka refuses topics that differ only there.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

fn plan_topic(
    image: &MetadataImage,
    spec: &CreateTopicSpec,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    validate_topic_name(&spec.name)?;
    if image.topics.contains_key(&spec.name) {
        return Err(ControllerError::TopicAlreadyExists(spec.name.clone()));
    }
    let key = collision_key(&spec.name);
    if let Some(other) = image.topics.keys().find(|t| collision_key(t) == key) {
        return Err(ControllerError::InvalidTopic(format!(
            "Topic '{}' collides with existing topic: {other}",
            spec.name
        )));
    }
    let assignments = if spec.assignments.is_empty() {
        if spec.num_partitions <= 0 {
            return Err(ControllerError::InvalidPartitions(
                "Number of partitions must be larger than 0.".into(),
            ));
        }
        if spec.replication_factor <= 0 {
            return Err(ControllerError::InvalidReplicationFactor(
                "Replication factor must be larger than 0.".into(),
            ));
        }
        partitions::place(image, 0, spec.num_partitions, spec.replication_factor)?
    } else {
        validate_assignments(image, &spec.assignments)?;
        spec.assignments.clone()
    };
    let topic_id = Uuid::new_v4();
    let mut records = vec![MetadataRecord::Topic {
        name: spec.name.clone(),
        topic_id,
        configs: spec.configs.clone(),
    }];
    records.extend(partition_records(topic_id, 0, &assignments));
    Ok(records)
}

fn plan_partitions(
    image: &MetadataImage,
    spec: &CreatePartitionsSpec,
) -> Result<Vec<MetadataRecord>, ControllerError> {
    let topic = image
        .topic(&spec.name)
        .ok_or_else(|| ControllerError::UnknownTopic(spec.name.clone()))?;
    let current = topic.partitions.len() as i32;
    if spec.total < current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic currently has {current} partitions, which is higher than the requested {}.",
            spec.total
        )));
    }
    if spec.total == current {
        return Err(ControllerError::InvalidPartitions(format!(
            "Topic already has {current} partitions."
        )));
    }
    let added = spec.total - current;
    let assignments = if spec.assignments.is_empty() {
        partitions::place(image, current, added, topic.replication_factor())?
    } else {
        if spec.assignments.len() as i32 != added {
            return Err(ControllerError::InvalidPartitions(format!(
                "Increasing the number of partitions by {added} but {} assignments provided.",
                spec.assignments.len()
            )));
        }
        validate_assignments(image, &spec.assignments)?;
        spec.assignments.clone()
    };
    Ok(partition_records(topic.topic_id, current, &assignments))
}

fn partition_records(topic_id: Uuid, first: i32, assignments: &[Vec<i32>]) -> Vec<MetadataRecord> {
    assignments
        .iter()
        .enumerate()
        .map(|(i, replicas)| MetadataRecord::Partition {
            topic_id,
            partition: first + i as i32,
            replicas: replicas.clone(),
            isr: replicas.clone(),
            leader: replicas[0],
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        })
        .collect()
}

fn validate_assignments(
    image: &MetadataImage,
    assignments: &[Vec<i32>],
) -> Result<(), ControllerError> {
    let rf = assignments[0].len();
    for (i, replicas) in assignments.iter().enumerate() {
        if replicas.is_empty() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "Partition {i} has an empty replica assignment."
            )));
        }
        if replicas.len() != rf {
            return Err(ControllerError::InvalidReplicationFactor(
                "All partitions should have the same number of replicas.".into(),
            ));
        }
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != replicas.len() {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "Duplicate brokers in replica assignment {replicas:?}."
            )));
        }
        if let Some(b) = replicas.iter().find(|b| !image.brokers.contains_key(b)) {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "Unknown broker {b} in replica assignment {replicas:?}."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(dir: &Path) -> Controller {
        let c = Controller::open(dir, 1).unwrap();
        c.register_broker(1, "127.0.0.1", 9092, None, vec![])
            .unwrap();
        c
    }

    fn spec(name: &str, partitions: i32, rf: i16) -> CreateTopicSpec {
        CreateTopicSpec {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            ..Default::default()
        }
    }

    #[test]
    fn dynamic_configs_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = controller(dir.path());
            let set = |k: &str, v: &str| vec![(k.to_string(), Some(v.to_string()))];
            c.alter_configs(ConfigResource::Broker, "", &set("log.retention.ms", "1000"))
                .unwrap();
            c.alter_configs(
                ConfigResource::Broker,
                "1",
                &set("message.max.bytes", "2000"),
            )
            .unwrap();
            c.alter_configs(
                ConfigResource::Group,
                "g",
                &set("consumer.session.timeout.ms", "50000"),
            )
            .unwrap();
            c.alter_configs(
                ConfigResource::Group,
                "h",
                &set("consumer.heartbeat.interval.ms", "6000"),
            )
            .unwrap();
            // Removing the only config of a resource forgets the resource.
            c.alter_configs(
                ConfigResource::Group,
                "h",
                &[("consumer.heartbeat.interval.ms".into(), None)],
            )
            .unwrap();
        }
        let c = Controller::open(dir.path(), 1).unwrap();
        let image = c.image();
        let get = |r, n: &str, k: &str| image.configs(r, n).and_then(|m| m.get(k)).cloned();
        assert_eq!(
            get(ConfigResource::Broker, "", "log.retention.ms").as_deref(),
            Some("1000")
        );
        assert_eq!(
            get(ConfigResource::Broker, "1", "message.max.bytes").as_deref(),
            Some("2000")
        );
        assert_eq!(
            get(ConfigResource::Group, "g", "consumer.session.timeout.ms").as_deref(),
            Some("50000")
        );
        assert!(image.configs(ConfigResource::Group, "h").is_none());
    }

    #[test]
    fn topics_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let c = controller(dir.path());
            let t = c.create_topic(&spec("orders", 3, 1)).unwrap();
            c.alter_topic_configs("orders", &[("retention.ms".into(), Some("1000".into()))])
                .unwrap();
            c.create_partitions(&CreatePartitionsSpec {
                name: "orders".into(),
                total: 5,
                assignments: vec![],
            })
            .unwrap();
            t.topic_id
        };
        let c = Controller::open(dir.path(), 1).unwrap();
        let image = c.image();
        let t = image.topic("orders").unwrap();
        assert_eq!(t.topic_id, id);
        assert_eq!(t.partitions.len(), 5);
        assert_eq!(
            t.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert_eq!(t.partitions[4].leader, 1);
        assert_eq!(t.partitions[4].isr, vec![1]);
    }

    #[test]
    fn partitions_spread_over_live_brokers() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        for b in [2, 3] {
            c.register_broker(b, "127.0.0.1", 9092 + b, None, vec![])
                .unwrap();
        }
        let t = c.create_topic(&spec("spread", 6, 1)).unwrap();
        let leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders, vec![1, 2, 3, 1, 2, 3]);
        let err = c.create_topic(&spec("four", 1, 4)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Replication factor: 4 larger than available brokers: 3."
        );
        let t = c.create_topic(&spec("two", 3, 2)).unwrap();
        let replicas: Vec<Vec<i32>> = t.partitions.iter().map(|p| p.replicas.clone()).collect();
        assert_eq!(replicas, vec![vec![1, 2], vec![2, 3], vec![3, 1]]);
        assert!(t.partitions.iter().all(|p| p.isr == p.replicas));
        // A fenced broker gets nothing new.
        c.commit(|image| Ok((fencing(image, 2, true), ()))).unwrap();
        // ... and leaves the ISRs, its leaderships taken over by the next in-sync replica.
        let two = c.image().topic("two").unwrap().clone();
        assert_eq!(two.partitions[1].leader, 3);
        assert_eq!(two.partitions[1].leader_epoch, 1);
        assert!(
            two.partitions.iter().all(|p| !p.isr.contains(&2)),
            "{two:?}"
        );
        let t = c.create_topic(&spec("after", 4, 1)).unwrap();
        assert!(t.partitions.iter().all(|p| p.leader != 2), "{t:?}");
        let err = c.create_topic(&spec("three", 1, 3)).unwrap_err();
        assert!(err.to_string().contains("available brokers: 2"), "{err}");
    }

    #[test]
    fn refuses_bad_topics_with_kafka_messages() {
        let dir = tempfile::tempdir().unwrap();
        let c = controller(dir.path());
        let err = c.create_topic(&spec("t", 1, 2)).unwrap_err();
        assert_eq!(err.kafka_code(), 38);
        assert_eq!(
            err.to_string(),
            "Replication factor: 2 larger than available brokers: 1."
        );
        assert_eq!(
            c.create_topic(&spec("bad name!", 1, 1))
                .unwrap_err()
                .kafka_code(),
            17
        );
        assert_eq!(
            c.create_topic(&spec("..", 1, 1)).unwrap_err().kafka_code(),
            17
        );
        assert_eq!(
            c.create_topic(&spec(&"x".repeat(250), 1, 1))
                .unwrap_err()
                .kafka_code(),
            17
        );
        c.create_topic(&spec(&"x".repeat(249), 1, 1)).unwrap();
        assert_eq!(
            c.create_topic(&spec("t", 0, 1)).unwrap_err().kafka_code(),
            37
        );
        assert_eq!(
            c.create_topic(&spec("t", -1, 1)).unwrap_err().kafka_code(),
            37
        );
        c.create_topic(&spec("a.b", 1, 1)).unwrap();
        assert_eq!(
            c.create_topic(&spec("a.b", 1, 1)).unwrap_err().kafka_code(),
            36
        );
        assert_eq!(
            c.create_topic(&spec("a_b", 1, 1)).unwrap_err().kafka_code(),
            17
        );
        let err = c
            .create_partitions(&CreatePartitionsSpec {
                name: "a.b".into(),
                total: 1,
                assignments: vec![],
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "Topic already has 1 partitions.");
    }

    #[test]
    fn delete_removes_topic_for_good() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = controller(dir.path());
            c.create_topic(&spec("gone", 1, 1)).unwrap();
            c.delete_topic("gone").unwrap();
            assert!(c.image().topic("gone").is_none());
            assert_eq!(c.delete_topic("gone").unwrap_err().kafka_code(), 3);
        }
        let c = Controller::open(dir.path(), 1).unwrap();
        assert!(c.image().topic("gone").is_none());
        // The name is free again.
        c.create_topic(&spec("gone", 2, 1)).unwrap();
    }

    #[test]
    fn producer_ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let c = controller(dir.path());
            (0..5)
                .map(|_| c.allocate_producer_id().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
        let c = Controller::open(dir.path(), 1).unwrap();
        let next = c.allocate_producer_id().unwrap();
        assert!(next > 4, "id {next} reused after restart");
    }

    #[test]
    fn features_start_at_their_new_cluster_levels_only_in_a_new_log() {
        use crate::features::TRANSACTION_VERSION;
        let dir = tempfile::tempdir().unwrap();
        {
            let c = Controller::open(dir.path(), 1).unwrap();
            c.register_broker(1, "127.0.0.1", 9092, None, vec![])
                .unwrap();
            assert_eq!(c.image().feature_level(TRANSACTION_VERSION), 2);
            c.update_feature(TRANSACTION_VERSION, 0, true).unwrap();
        }
        // A restart (and a new endpoint) replays the log: the level stays as it was set.
        let c = Controller::open(dir.path(), 1).unwrap();
        c.register_broker(1, "127.0.0.1", 9093, None, vec![])
            .unwrap();
        assert_eq!(c.image().feature_level(TRANSACTION_VERSION), 0);
        assert!(c.update_feature(TRANSACTION_VERSION, 3, false).is_err());
        c.update_feature(TRANSACTION_VERSION, 2, false).unwrap();
        assert_eq!(c.image().feature_level(TRANSACTION_VERSION), 2);
    }

    #[test]
    fn a_refused_preparation_commits_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let c = controller(dir.path());
            let err = c
                .create_topic_prepared(&spec("never", 3, 1), |records| {
                    assert_eq!(records.len(), 4, "the topic and its three partitions");
                    Err(ControllerError::InvalidConfig("cannot host it".into()))
                })
                .unwrap_err();
            assert_eq!(err.to_string(), "cannot host it");
            assert!(c.image().topic("never").is_none());
            c.create_topic(&spec("grows", 1, 1)).unwrap();
            let refused = c.create_partitions_prepared(
                &CreatePartitionsSpec {
                    name: "grows".into(),
                    total: 3,
                    assignments: vec![],
                },
                |_| Err(ControllerError::InvalidConfig("no".into())),
            );
            assert!(refused.is_err());
            assert_eq!(c.image().topic("grows").unwrap().partitions.len(), 1);
        }
        let c = Controller::open(dir.path(), 1).unwrap();
        assert!(c.image().topic("never").is_none());
        assert_eq!(c.image().topic("grows").unwrap().partitions.len(), 1);
    }
}
