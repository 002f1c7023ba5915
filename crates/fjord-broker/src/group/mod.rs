//! The group coordinator: owns every consumer group this broker coordinates, their
//! committed offsets, and their persistence in the internal topic `__consumer_offsets`.
//!
//! Groups live in memory behind two locks, one for classic groups (and every group's
//! committed offsets) and one for new-protocol groups (a request touches one group for
//! microseconds; nothing waits while holding them). Every change that must survive a restart is appended
//! to the group's partition of `__consumer_offsets`, and on start the coordinator replays
//! those partitions before it answers any group request. One timer task drives what
//! happens without a request: the end of a join phase, session expiry, offset retention.

pub mod classic;
pub mod consumer;
pub mod offsets;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::records::Record;
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::BrokerConfig;
use crate::error::{code, BrokerError};
use crate::replica::Partition;
use crate::state::{now_ms, BrokerState};
use classic::{ClassicGroup, CommittedOffset, JoinParams, JoinResult, Reply, SyncResult, Timeouts};
use consumer::{ConsumerGroup, ConsumerTimeouts, HeartbeatParams, HeartbeatResult};
use offsets::{GroupValue, Key, OffsetValue, TOPIC};

/// offset.metadata.max.bytes: longer commit metadata is refused.
const MAX_METADATA_BYTES: usize = 4096;
/// How often offset retention runs (Kafka checks every ten minutes; a minute costs
/// nothing here and keeps tests of short retentions quick).
const RETENTION_CHECK_MS: i64 = 60_000;
/// The timer never sleeps longer than this, so a missed wake-up costs at most a second.
const MAX_TIMER_SLEEP_MS: i64 = 1000;
/// How long an offset commit waits for the offsets partition's in-sync replicas.
const COMMIT_REPLICATION_TIMEOUT: Duration = Duration::from_secs(5);

/// One partition's offset to commit, as a request carries it.
#[derive(Debug, Clone)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// Longest group id accepted: Kafka's limit for any protocol string.
pub const MAX_GROUP_ID_BYTES: usize = i16::MAX as usize;
/// Most bytes of classic-group member metadata the whole broker holds, across all groups:
/// with the per-group bound it keeps group state from growing the broker's memory
/// without limit, however many groups clients create.
pub const MAX_BROKER_GROUP_METADATA_BYTES: usize = 256 * 1024 * 1024;

pub struct GroupCoordinator {
    /// Classic groups, and the committed offsets of every group (a new-protocol group's
    /// offsets live in a member-less entry here, so one code path persists them all).
    groups: Mutex<HashMap<String, ClassicGroup>>,
    /// New-protocol (KIP-848) groups, in memory only. Lock order: `groups` before
    /// `consumers` whenever both are held.
    consumers: Mutex<HashMap<String, ConsumerGroup>>,
    consumer_timeouts: ConsumerTimeouts,
    loaded: AtomicBool,
    /// The `__consumer_offsets` partitions whose groups are in memory here, with the
    /// leader epoch they were loaded in: this broker coordinates a group only while it
    /// leads the group's partition in that same epoch.
    owned: Mutex<HashMap<i32, i32>>,
    wake: Notify,
    timeouts: Timeouts,
    retention_ms: i64,
    default_partitions: i32,
    replication_factor: i16,
    segment_bytes: i32,
    last_retention_check: AtomicI64,
    /// Offsets sent to transactions (TxnOffsetCommit), written but not yet committed:
    /// group → producer id → offsets. A commit marker on the group's partition makes
    /// them the group's committed offsets; an abort marker drops them. Lock order:
    /// `groups` before this.
    pending_txn: Mutex<HashMap<String, PendingTxnOffsets>>,
    /// Held while `__consumer_offsets` partitions are loaded (or dropped), and while a
    /// transaction marker is applied: a marker landing during a load is applied after it,
    /// to the offsets the load found, rather than to an empty group the load then skips
    /// or to pending offsets the load has not installed yet. Taken before any other lock.
    loading: Mutex<()>,
    /// Run by a load between reading the log and installing what it read, to let a test
    /// land a transaction marker in that window.
    #[cfg(test)]
    after_replay: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

/// Offsets pending in transactions, by group and producer id.
type PendingTxnOffsets = HashMap<i64, BTreeMap<(String, i32), CommittedOffset>>;

impl GroupCoordinator {
    pub fn new(config: &BrokerConfig) -> GroupCoordinator {
        GroupCoordinator {
            groups: Mutex::new(HashMap::new()),
            consumers: Mutex::new(HashMap::new()),
            consumer_timeouts: ConsumerTimeouts {
                session_ms: config.group_consumer_session_timeout_ms as i64,
                heartbeat_ms: config.group_consumer_heartbeat_interval_ms,
                max_size: config.group_consumer_max_size.max(1) as usize,
            },
            loaded: AtomicBool::new(false),
            owned: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            timeouts: Timeouts {
                min_session_ms: config.group_min_session_timeout_ms,
                max_session_ms: config.group_max_session_timeout_ms,
                initial_delay_ms: config.group_initial_rebalance_delay_ms as i64,
                max_size: config.group_max_size.max(1) as usize,
            },
            retention_ms: config.offsets_retention_minutes.saturating_mul(60_000),
            default_partitions: config.offsets_topic_num_partitions,
            replication_factor: config.offsets_topic_replication_factor,
            segment_bytes: config.offsets_topic_segment_bytes,
            last_retention_check: AtomicI64::new(0),
            pending_txn: Mutex::new(HashMap::new()),
            loading: Mutex::new(()),
            #[cfg(test)]
            after_replay: Mutex::new(None),
        }
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    fn partition_count(&self, state: &BrokerState) -> i32 {
        state
            .controller
            .image()
            .topic(TOPIC)
            .map(|t| t.partitions.len() as i32)
            .filter(|n| *n > 0)
            .unwrap_or(self.default_partitions)
    }

    /// The node coordinating `group`: the leader of its `__consumer_offsets` partition,
    /// or this broker while the topic does not exist yet (it creates it on first use).
    pub fn coordinator_node(&self, state: &BrokerState, group: &str) -> i32 {
        let image = state.controller.image();
        let Some(topic) = image.topic(TOPIC) else {
            // Alone, this broker coordinates every group and creates the topic on first
            // use; in a cluster no broker does until the topic places the group.
            return if state.controller.quorum().is_some() {
                -1
            } else {
                state.node_id()
            };
        };
        let index = offsets::partition_for(group, topic.partitions.len() as i32);
        topic
            .partitions
            .iter()
            .find(|p| p.partition == index)
            .map(|p| p.leader)
            .unwrap_or(-1)
    }

    /// The partition of `__consumer_offsets` that holds `group`.
    pub fn offsets_partition(&self, state: &BrokerState, group: &str) -> i32 {
        offsets::partition_for(group, self.partition_count(state))
    }

    /// Whether this broker may serve a request for `group` now.
    pub fn check(&self, state: &BrokerState, group: &str) -> Result<(), i16> {
        // Kafka's own decoders refuse any string over 32767 bytes, compact encodings
        // included; ids that long are stored in every group and offset record.
        if group.is_empty() || group.len() > MAX_GROUP_ID_BYTES {
            return Err(code::INVALID_GROUP_ID);
        }
        if !self.is_loaded() {
            return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        // Cut off from the controllers it may have been replaced already, its commits
        // made elsewhere since; its own state is then no answer.
        if self.coordinator_node(state, group) != state.node_id() || !state.session_current() {
            return Err(code::NOT_COORDINATOR);
        }
        // In a cluster the image can name this broker before it has opened the
        // partition (another node created the topic a moment ago): the client retries
        // until it is open, instead of a write failing after it was accepted.
        if state.controller.image().topic(TOPIC).is_some() {
            let index = offsets::partition_for(group, self.partition_count(state));
            let Some(p) = state.replicas.get(TOPIC, index) else {
                return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
            };
            // Led here, but its groups are not (yet) loaded in this leader epoch.
            let epoch = p.assignment().leader_epoch;
            if self.owned.lock().get(&index) != Some(&epoch) {
                return Err(if p.is_leader() {
                    code::COORDINATOR_LOAD_IN_PROGRESS
                } else {
                    code::NOT_COORDINATOR
                });
            }
        }
        Ok(())
    }

    /// [`GroupCoordinator::ensure_topic`] for handlers on the async workers. In a cluster
    /// creating the topic waits for the active controller, so only FindCoordinator and
    /// Metadata (on the blocking pool) create it; here a missing topic means "not yet".
    fn ensure_topic_async(&self, state: &BrokerState) -> Result<(), i16> {
        if state.controller.quorum().is_some() {
            return match state.controller.image().topic(TOPIC) {
                Some(_) => Ok(()),
                None => Err(code::COORDINATOR_NOT_AVAILABLE),
            };
        }
        self.ensure_topic(state)
    }

    /// Creates `__consumer_offsets` on first use and opens its partitions here.
    pub fn ensure_topic(&self, state: &BrokerState) -> Result<(), i16> {
        if state.controller.image().topic(TOPIC).is_some() {
            return Ok(());
        }
        // Kafka's own settings for the topic: compacted, in segments of
        // offsets.topic.segment.bytes.
        let configs = [
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), self.segment_bytes.to_string()),
        ];
        state.ensure_internal_topic(
            TOPIC,
            self.default_partitions,
            self.replication_factor,
            configs.into(),
        )?;
        // Take up the new partitions this broker leads now, not when the coordinator's
        // task next looks: the request that created the topic is served by it.
        self.sync_ownership(state);
        Ok(())
    }

    /// Appends records for `group` to its partition; returns the partition and the
    /// offset just past them (what a durable write must flush up to).
    fn append(
        &self,
        state: &BrokerState,
        group: &str,
        records: &[Record],
        txn: Option<(i64, i16)>,
    ) -> Result<(Arc<Partition>, i64), BrokerError> {
        let index = offsets::partition_for(group, self.partition_count(state));
        let partition = state.replicas.get(TOPIC, index).ok_or_else(|| {
            BrokerError::Kafka(
                code::NOT_COORDINATOR,
                format!("{TOPIC}-{index} is not hosted on this broker"),
            )
        })?;
        let mut batch = offsets::batch(records, txn)?;
        let info = partition.append(&mut batch, now_ms())?;
        state.replicas.notify_append();
        Ok((partition, info.last_offset + 1))
    }

    /// Writes the group's metadata record (a tombstone once the group is gone).
    fn persist_group(&self, state: &BrokerState, group: &str, value: Option<GroupValue>) {
        let now = now_ms();
        let record = offsets::record(
            Key::Group {
                group: group.to_string(),
            }
            .encode(),
            value.map(|v| v.encode()),
            now,
        );
        if let Err(e) = self.append(state, group, &[record], None) {
            tracing::error!(group, error = %e, "writing group metadata failed");
        }
    }

    fn persist_if_dirty(&self, state: &BrokerState, g: &mut ClassicGroup) {
        if g.take_dirty() {
            self.persist_group(state, &g.id.clone(), Some(g.to_value()));
        }
    }

    /// Runs a group's due timers before a request reads or changes it. A member's
    /// session ends exactly its timeout after its last heartbeat, as on Kafka, even when
    /// the timer task runs late (a busy runtime, a slow pass over many groups): a request
    /// never sees, or is served by, a member whose session has already ended.
    fn catch_up(&self, g: &mut ClassicGroup, now: i64) -> bool {
        let before = (g.state, g.generation, g.members.len(), g.pending_len());
        g.tick(&self.timeouts, now);
        let changed = before != (g.state, g.generation, g.members.len(), g.pending_len());
        if changed {
            // The timer persists what changed and looks at the new deadlines.
            self.wake.notify_one();
        }
        changed
    }

    /// The group under the lock, its due timers run first (see `catch_up`).
    fn caught_up<'a>(
        &self,
        state: &BrokerState,
        groups: &'a mut HashMap<String, ClassicGroup>,
        group: &str,
        now: i64,
    ) -> Option<&'a mut ClassicGroup> {
        let g = groups.get_mut(group)?;
        if self.catch_up(g, now) {
            self.persist_if_dirty(state, g);
        }
        Some(g)
    }

    /// Session timeouts outside the broker's bounds are refused.
    pub fn valid_session_timeout(&self, ms: i32) -> bool {
        (self.timeouts.min_session_ms..=self.timeouts.max_session_ms).contains(&ms)
    }

    pub async fn join(&self, state: &BrokerState, group: &str, p: JoinParams) -> JoinResult {
        if let Err(e) = self.check(state, group) {
            return JoinResult::error(e, &p.member_id);
        }
        if !self.valid_session_timeout(p.session_timeout_ms) {
            return JoinResult::error(code::INVALID_SESSION_TIMEOUT, &p.member_id);
        }
        if p.protocol_type.is_empty() || p.protocols.is_empty() {
            return JoinResult::error(code::INCONSISTENT_GROUP_PROTOCOL, &p.member_id);
        }
        if let Err(e) = self.ensure_topic_async(state) {
            return JoinResult::error(e, &p.member_id);
        }
        let member_id = p.member_id.clone();
        let now = now_ms();
        let reply = {
            let mut groups = self.groups.lock();
            {
                let mut consumers = self.consumers.lock();
                match consumers.get(group) {
                    // Mixing protocols in one group (online migration) is not supported.
                    Some(c) if !c.is_empty() => {
                        return JoinResult::error(code::INCONSISTENT_GROUP_PROTOCOL, &member_id)
                    }
                    Some(_) => {
                        consumers.remove(group);
                    }
                    None => {}
                }
            }
            self.caught_up(state, &mut groups, group, now);
            if !member_id.is_empty() && !groups.contains_key(group) {
                return JoinResult::error(code::UNKNOWN_MEMBER_ID, &member_id);
            }
            let is_new_member = !groups
                .get(group)
                .is_some_and(|g| g.members.contains_key(&member_id));
            if is_new_member {
                let held: usize = groups.values().map(ClassicGroup::metadata_bytes).sum();
                let incoming: usize = p.protocols.iter().map(|(n, m)| n.len() + m.len()).sum();
                if held + incoming > MAX_BROKER_GROUP_METADATA_BYTES {
                    tracing::warn!(
                        group,
                        held,
                        incoming,
                        max = MAX_BROKER_GROUP_METADATA_BYTES,
                        "join refused: member metadata of all groups on this broker would exceed its bound"
                    );
                    return JoinResult::error(code::GROUP_MAX_SIZE_REACHED, "");
                }
            }
            let g = groups
                .entry(group.to_string())
                .or_insert_with(|| ClassicGroup::new(group, now));
            let reply = g.join(p, &self.timeouts, now);
            self.persist_if_dirty(state, g);
            reply
        };
        self.wake.notify_one();
        match reply {
            Reply::Now(r) => r,
            // The member was removed before its join completed (e.g. the group was reset).
            Reply::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| JoinResult::error(code::UNKNOWN_MEMBER_ID, &member_id)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        state: &BrokerState,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncResult {
        if let Err(e) = self.check(state, group) {
            return SyncResult::error(e);
        }
        let now = now_ms();
        let reply = {
            let mut groups = self.groups.lock();
            let Some(g) = self.caught_up(state, &mut groups, group, now) else {
                return SyncResult::error(code::UNKNOWN_MEMBER_ID);
            };
            let reply = g.sync(
                member_id,
                instance_id,
                generation,
                protocol_type,
                protocol,
                assignments,
                now,
            );
            self.persist_if_dirty(state, g);
            reply
        };
        self.wake.notify_one();
        match reply {
            Reply::Now(r) => r,
            Reply::Wait(rx) => rx
                .await
                .unwrap_or_else(|_| SyncResult::error(code::UNKNOWN_MEMBER_ID)),
        }
    }

    pub fn heartbeat(
        &self,
        state: &BrokerState,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> i16 {
        if let Err(e) = self.check(state, group) {
            return e;
        }
        let now = now_ms();
        let mut groups = self.groups.lock();
        match self.caught_up(state, &mut groups, group, now) {
            Some(g) => g.heartbeat(member_id, instance_id, generation, now),
            None => code::UNKNOWN_MEMBER_ID,
        }
    }

    /// LeaveGroup: a group-level error, or one code per member.
    pub fn leave(
        &self,
        state: &BrokerState,
        group: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        self.check(state, group)?;
        let out = {
            let now = now_ms();
            let mut groups = self.groups.lock();
            let Some(g) = self.caught_up(state, &mut groups, group, now) else {
                return Ok(vec![code::UNKNOWN_MEMBER_ID; members.len()]);
            };
            let out = g.leave(members, &self.timeouts, now);
            self.persist_if_dirty(state, g);
            out
        };
        self.wake.notify_one();
        Ok(out)
    }

    /// A transaction marker was written to partition `index` of the offsets topic:
    /// producer `producer_id`'s pending offsets there become committed, or are dropped.
    pub fn complete_txn(&self, state: &BrokerState, index: i32, producer_id: i64, commit: bool) {
        let count = self.partition_count(state);
        let _loading = self.loading.lock();
        // Groups of a partition not loaded here are not in memory: the marker is in the
        // log, and the load that takes the partition up replays it. Applying it here
        // would make a group holding only this transaction's offsets, which the load
        // would then keep in place of the group's real ones.
        if !self.owned.lock().contains_key(&index) {
            tracing::debug!(
                partition = index,
                producer_id,
                "transaction marker for {TOPIC}-{index}, whose groups are not loaded here"
            );
            return;
        }
        // Lock order: `groups` before `pending_txn`, as commits take them.
        let mut groups = self.groups.lock();
        let mut pending = self.pending_txn.lock();
        let now = now_ms();
        for (group, by_producer) in pending.iter_mut() {
            if offsets::partition_for(group, count) != index {
                continue;
            }
            let Some(written) = by_producer.remove(&producer_id) else {
                continue;
            };
            if commit {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| ClassicGroup::new(group, now))
                    .offsets
                    .extend(written);
            }
        }
        pending.retain(|_, by_producer| !by_producer.is_empty());
    }

    /// Whether an offset of `group` for `(topic, partition)` waits in an open transaction
    /// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for it).
    fn unstable(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.pending_txn
            .lock()
            .get(group)
            .is_some_and(|by_producer| {
                by_producer
                    .values()
                    .any(|o| o.contains_key(&(topic.to_string(), partition)))
            })
    }

    /// OffsetCommit, and TxnOffsetCommit with `txn` = the producer's (id, epoch): a
    /// group-level error, or one code per entry (in order). Answers only once the commit
    /// is on disk. Offsets of a transaction become the group's only when its commit
    /// marker lands on the group's partition ([`GroupCoordinator::complete_txn`]).
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        state: &BrokerState,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        entries: &[CommitEntry],
        txn: Option<(i64, i16)>,
    ) -> Result<Vec<i16>, i16> {
        self.check(state, group)?;
        self.ensure_topic_async(state)?;
        let image = state.controller.image();
        let now = now_ms();
        let mut codes = vec![code::NONE; entries.len()];
        let mut records = Vec::new();
        let mut accepted = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let exists = image
                .topic(&e.topic)
                .is_some_and(|t| t.partitions.iter().any(|p| p.partition == e.partition));
            if !exists {
                codes[i] = code::UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            let metadata = e.metadata.clone().unwrap_or_default();
            if metadata.len() > MAX_METADATA_BYTES {
                codes[i] = code::OFFSET_METADATA_TOO_LARGE;
                continue;
            }
            let value = OffsetValue {
                offset: e.offset,
                leader_epoch: e.leader_epoch,
                metadata: metadata.clone(),
                commit_timestamp: now,
            };
            let key = Key::Offset {
                group: group.to_string(),
                topic: e.topic.clone(),
                partition: e.partition,
            };
            records.push(offsets::record(key.encode(), Some(value.encode()), now));
            accepted.push((
                i,
                (e.topic.clone(), e.partition),
                CommittedOffset {
                    offset: e.offset,
                    leader_epoch: e.leader_epoch,
                    metadata,
                    commit_timestamp: now,
                },
            ));
        }
        let written = {
            let mut groups = self.groups.lock();
            // A new-protocol group checks member id and member epoch itself; its offsets
            // are then kept like any other group's.
            let consumer_group = match self.consumers.lock().get(group) {
                Some(c) => {
                    c.validate_offset_request(member_id, generation)?;
                    true
                }
                None => false,
            };
            // Kafka treats any commit with a negative generation as a simple commit,
            // whatever member id it carries (librdkafka sends its own on such commits).
            // A transactional commit from a group the coordinator does not know is taken
            // as one too: the producer may not be a member at all.
            let simple = generation < 0 || txn.is_some() && !groups.contains_key(group);
            if !groups.contains_key(group) {
                if !simple && !consumer_group {
                    return Err(code::UNKNOWN_MEMBER_ID);
                }
                groups.insert(group.to_string(), ClassicGroup::new(group, now));
            }
            let Some(g) = self.caught_up(state, &mut groups, group, now) else {
                return Err(code::UNKNOWN_MEMBER_ID);
            };
            if !consumer_group {
                g.validate_commit(member_id, instance_id, generation, now)?;
            }
            if records.is_empty() {
                return Ok(codes);
            }
            // Appending under the lock keeps the log's order equal to the memory order
            // when two commits for one partition race.
            match self.append(state, group, &records, txn) {
                Ok(w) => {
                    match txn {
                        None => {
                            for (_, key, value) in &accepted {
                                g.offsets.insert(key.clone(), value.clone());
                            }
                        }
                        Some((pid, _)) => {
                            let mut pending = self.pending_txn.lock();
                            let mine = pending
                                .entry(group.to_string())
                                .or_default()
                                .entry(pid)
                                .or_default();
                            for (_, key, value) in &accepted {
                                mine.insert(key.clone(), value.clone());
                            }
                        }
                    }
                    w
                }
                Err(e) => {
                    tracing::error!(group, error = %e, "offset commit write failed");
                    for (i, _, _) in &accepted {
                        codes[*i] = e.kafka_code();
                    }
                    return Ok(codes);
                }
            }
        };
        let (partition, next_offset) = written;
        let log = partition.log.clone();
        let synced = tokio::task::spawn_blocking(move || log.flush_until(next_offset)).await;
        let failed = match synced {
            Ok(Ok(())) => false,
            Ok(Err(e)) => {
                tracing::error!(group, error = %e, "offset commit flush failed");
                true
            }
            Err(e) => {
                tracing::error!(group, error = %e, "offset commit flush task failed");
                true
            }
        };
        // As Kafka writes commits with acks=all: answered once every in-sync replica of
        // the offsets partition has them, so a new coordinator cannot lack them.
        let replicated = if failed {
            Some(code::KAFKA_STORAGE_ERROR)
        } else {
            let deadline = tokio::time::Instant::now() + COMMIT_REPLICATION_TIMEOUT;
            let epoch = partition.assignment().leader_epoch;
            partition
                .wait_replicated(next_offset, epoch, 1, deadline)
                .await
                .err()
                .map(|e| {
                    tracing::warn!(group, error = %e, "offset commit not replicated");
                    match e.kafka_code() {
                        code::NOT_LEADER_OR_FOLLOWER => code::NOT_COORDINATOR,
                        c => c,
                    }
                })
        };
        if let Some(c) = replicated {
            for (i, _, _) in &accepted {
                codes[*i] = c;
            }
        }
        Ok(codes)
    }

    /// OffsetFetch for one group: `None` topics means every committed partition.
    #[allow(clippy::type_complexity)]
    /// OffsetFetch: each partition's committed offset and error code. With
    /// `require_stable`, a partition whose offset waits in an open transaction is
    /// answered UNSTABLE_OFFSET_COMMIT (the client asks again), as Kafka does (KIP-447).
    #[allow(clippy::type_complexity)]
    pub fn fetch(
        &self,
        state: &BrokerState,
        group: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> Result<Vec<(String, Vec<(i32, Option<CommittedOffset>, i16)>)>, i16> {
        self.check(state, group)?;
        let code_for = |topic: &str, p: i32| {
            if require_stable && self.unstable(group, topic, p) {
                code::UNSTABLE_OFFSET_COMMIT
            } else {
                code::NONE
            }
        };
        let groups = self.groups.lock();
        let committed = groups.get(group).map(|g| &g.offsets);
        let out = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|p| {
                            let c = committed.and_then(|o| o.get(&(topic.clone(), p))).cloned();
                            let code = code_for(&topic, p);
                            (p, c, code)
                        })
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>, i16)>> =
                    BTreeMap::new();
                if let Some(offsets) = committed {
                    for ((t, p), c) in offsets {
                        by_topic.entry(t.clone()).or_default().push((
                            *p,
                            Some(c.clone()),
                            code_for(t, *p),
                        ));
                    }
                }
                by_topic.into_iter().collect()
            }
        };
        Ok(out)
    }

    /// Reads one group under the lock (DescribeGroups, ListGroups).
    pub fn with_group<R>(&self, group: &str, f: impl FnOnce(&ClassicGroup) -> R) -> Option<R> {
        let now = now_ms();
        let mut groups = self.groups.lock();
        let g = groups.get_mut(group)?;
        self.catch_up(g, now);
        Some(f(g))
    }

    pub fn with_all<R>(&self, mut f: impl FnMut(&ClassicGroup) -> Option<R>) -> Vec<R> {
        let now = now_ms();
        let mut groups = self.groups.lock();
        let mut out: Vec<R> = groups
            .values_mut()
            .filter_map(|g| {
                self.catch_up(g, now);
                f(g)
            })
            .collect();
        out.shrink_to_fit();
        out
    }

    /// DeleteGroups for one group: only a group without members may go; its offsets and
    /// metadata are tombstoned.
    pub fn delete_group(&self, state: &BrokerState, group: &str) -> i16 {
        if let Err(e) = self.check(state, group) {
            return e;
        }
        let mut groups = self.groups.lock();
        {
            let mut consumers = self.consumers.lock();
            if let Some(c) = consumers.get(group) {
                if !c.is_empty() {
                    return code::NON_EMPTY_GROUP;
                }
                consumers.remove(group);
                if !groups.contains_key(group) {
                    return code::NONE;
                }
            }
        }
        let now = now_ms();
        let Some(g) = self.caught_up(state, &mut groups, group, now) else {
            return code::GROUP_ID_NOT_FOUND;
        };
        if !g.is_empty() {
            return code::NON_EMPTY_GROUP;
        }
        let mut records: Vec<Record> = g
            .offsets
            .keys()
            .map(|(topic, partition)| {
                let key = Key::Offset {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                };
                offsets::record(key.encode(), None, now)
            })
            .collect();
        records.push(offsets::record(
            Key::Group {
                group: group.to_string(),
            }
            .encode(),
            None,
            now,
        ));
        if state.controller.image().topic(TOPIC).is_some() {
            if let Err(e) = self.append(state, group, &records, None) {
                tracing::error!(group, error = %e, "writing group deletion failed");
                return e.kafka_code();
            }
        }
        groups.remove(group);
        code::NONE
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not consume.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &self,
        state: &BrokerState,
        group: &str,
        topics: &[(String, Vec<i32>)],
    ) -> Result<Vec<(String, Vec<(i32, i16)>)>, i16> {
        self.check(state, group)?;
        let mut groups = self.groups.lock();
        let Some(g) = self.caught_up(state, &mut groups, group, now_ms()) else {
            return Err(code::GROUP_ID_NOT_FOUND);
        };
        if !g.is_empty() && g.protocol_type.as_deref() != Some("consumer") {
            return Err(code::NON_EMPTY_GROUP);
        }
        let mut subscribed = if g.is_empty() {
            vec![]
        } else {
            g.subscribed_topics()
        };
        if let Some(c) = self.consumers.lock().get(group) {
            subscribed.extend(c.subscribed_topics());
        }
        let now = now_ms();
        let mut records = Vec::new();
        let mut out = Vec::new();
        let mut removed = Vec::new();
        for (topic, partitions) in topics {
            let busy = subscribed.contains(topic);
            let mut results = Vec::new();
            for p in partitions {
                if busy {
                    results.push((*p, code::GROUP_SUBSCRIBED_TO_TOPIC));
                    continue;
                }
                if g.offsets.contains_key(&(topic.clone(), *p)) {
                    let key = Key::Offset {
                        group: group.to_string(),
                        topic: topic.clone(),
                        partition: *p,
                    };
                    records.push(offsets::record(key.encode(), None, now));
                    removed.push((topic.clone(), *p));
                }
                results.push((*p, code::NONE));
            }
            out.push((topic.clone(), results));
        }
        if !records.is_empty() {
            self.append(state, group, &records, None).map_err(|e| {
                tracing::error!(group, error = %e, "writing offset deletion failed");
                e.kafka_code()
            })?;
            for k in removed {
                g.offsets.remove(&k);
            }
        }
        Ok(out)
    }

    /// ConsumerGroupHeartbeat: joins, heartbeats and leaves of new-protocol members.
    /// `may_describe` says which topics the member's principal may describe: a regex
    /// subscription resolves to those only.
    pub fn consumer_heartbeat(
        &self,
        state: &BrokerState,
        group: &str,
        p: HeartbeatParams,
        may_describe: &dyn Fn(&str) -> bool,
    ) -> HeartbeatResult {
        let (member_id, epoch) = (p.member_id.clone(), p.member_epoch);
        let refuse = |c: i16, m: String| HeartbeatResult::error(c, m, &member_id, epoch);
        if let Err(e) = self.check(state, group) {
            return refuse(e, String::new());
        }
        if epoch == consumer::JOIN_EPOCH {
            // Offsets of the group will go to __consumer_offsets: have it ready.
            if let Err(e) = self.ensure_topic_async(state) {
                return refuse(e, String::new());
            }
        }
        let image = state.controller.image();
        let result = {
            let groups = self.groups.lock();
            if groups.get(group).is_some_and(|g| !g.is_empty()) {
                return refuse(
                    code::GROUP_ID_NOT_FOUND,
                    format!("Group {group} is not a consumer group."),
                );
            }
            let mut consumers = self.consumers.lock();
            if epoch != consumer::JOIN_EPOCH && !consumers.contains_key(group) {
                return refuse(
                    code::UNKNOWN_MEMBER_ID,
                    format!("Member {member_id} is not a member of group {group}."),
                );
            }
            let g = consumers
                .entry(group.to_string())
                .or_insert_with(|| ConsumerGroup::new(group));
            let timeouts = self.consumer_timeouts_for(&image, group);
            let visible = consumer::Describable {
                topics: image.as_ref(),
                may_describe,
            };
            g.heartbeat(p, &visible, &timeouts, now_ms())
        };
        // Session deadlines may have moved earlier (a new member): let the timer look.
        self.wake.notify_one();
        result
    }

    /// A new-protocol group's session and heartbeat: the broker's, or the group's own
    /// configs (`consumer.session.timeout.ms`, `consumer.heartbeat.interval.ms`).
    fn consumer_timeouts_for(
        &self,
        image: &fjord_controller::MetadataImage,
        group: &str,
    ) -> ConsumerTimeouts {
        crate::dynamic_config::group_timeouts(
            self.consumer_timeouts,
            image.configs(fjord_controller::ConfigResource::Group, group),
        )
    }

    /// How often members of `group` (new protocol) are told to heartbeat.
    pub fn consumer_heartbeat_interval_ms(&self, state: &BrokerState, group: &str) -> i32 {
        self.consumer_timeouts_for(&state.controller.image(), group)
            .heartbeat_ms
    }

    /// OffsetFetch v9+ from a new-protocol member: the member and its epoch must be
    /// current. Classic groups and callers without a member id are not checked.
    pub fn validate_fetch(
        &self,
        group: &str,
        member_id: Option<&str>,
        epoch: i32,
    ) -> Result<(), i16> {
        let Some(member_id) = member_id else {
            return Ok(());
        };
        match self.consumers.lock().get(group) {
            Some(c) => c.validate_offset_request(member_id, epoch),
            None => Ok(()),
        }
    }

    /// Reads one new-protocol group under the lock (ConsumerGroupDescribe, DescribeGroups).
    pub fn with_consumer_group<R>(
        &self,
        group: &str,
        f: impl FnOnce(&ConsumerGroup) -> R,
    ) -> Option<R> {
        self.consumers.lock().get(group).map(f)
    }

    pub fn with_all_consumer_groups<R>(
        &self,
        f: impl FnMut(&ConsumerGroup) -> Option<R>,
    ) -> Vec<R> {
        self.consumers.lock().values().filter_map(f).collect()
    }

    /// Expires silent new-protocol members; on a retention pass also forgets empty
    /// groups that have nothing committed. Returns when the next deadline is due.
    fn tick_consumers(&self, state: &BrokerState, now: i64, retention_due: bool) -> Option<i64> {
        let image = state.controller.image();
        let next = self
            .consumers
            .lock()
            .values_mut()
            .filter_map(|g| g.tick(image.as_ref(), now))
            .min();
        if retention_due {
            let groups = self.groups.lock();
            self.consumers
                .lock()
                .retain(|id, g| !g.is_empty() || groups.contains_key(id));
        }
        next
    }

    /// Runs every group's timers; returns when the next one is due.
    pub fn tick(&self, state: &BrokerState, now: i64) -> Option<i64> {
        if !self.is_loaded() {
            return None;
        }
        let retention_due =
            now - self.last_retention_check.load(Ordering::Relaxed) >= RETENTION_CHECK_MS;
        if retention_due {
            self.last_retention_check.store(now, Ordering::Relaxed);
        }
        let mut next = self.tick_consumers(state, now, retention_due);
        let mut groups = self.groups.lock();
        let mut gone = Vec::new();
        for g in groups.values_mut() {
            if let Some(due) = g.tick(&self.timeouts, now) {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
            self.persist_if_dirty(state, g);
            if retention_due {
                let expired = g.expire_offsets(self.retention_ms, now);
                if !expired.is_empty() {
                    tracing::info!(group = %g.id, partitions = expired.len(), "committed offsets expired");
                    let records: Vec<Record> = expired
                        .into_iter()
                        .map(|(topic, partition)| {
                            let key = Key::Offset {
                                group: g.id.clone(),
                                topic,
                                partition,
                            };
                            offsets::record(key.encode(), None, now)
                        })
                        .collect();
                    if let Err(e) = self.append(state, &g.id, &records, None) {
                        tracing::error!(group = %g.id, error = %e, "writing offset expiry failed");
                    }
                }
                if g.is_empty()
                    && g.offsets.is_empty()
                    && g.state == classic::GroupState::Empty
                    && now - g.state_since >= self.retention_ms.min(RETENTION_CHECK_MS)
                {
                    gone.push(g.id.clone());
                }
            }
        }
        for id in gone {
            groups.remove(&id);
            self.persist_group(state, &id, None);
        }
        next
    }

    /// Follows leadership of `__consumer_offsets`: loads the groups of every partition
    /// this broker now leads (replaying its log), and drops from memory those of every
    /// partition it no longer leads, whose clients then get NOT_COORDINATOR and find the
    /// new coordinator. Blocking: run it off the async threads.
    pub fn sync_ownership(&self, state: &BrokerState) {
        let count = self.partition_count(state);
        let _loading = self.loading.lock();
        let (to_load, mut lost) =
            crate::replica::ownership_changes(&state.replicas, TOPIC, &self.owned.lock());
        // Led again in a newer epoch: what memory holds may predate writes another leader
        // made in between (this broker can miss the epochs it did not lead), so the
        // partition is dropped and replayed like one taken up anew.
        let reloaded: Vec<i32> = {
            let owned = self.owned.lock();
            to_load
                .iter()
                .map(|(p, _)| p.index)
                .filter(|i| owned.contains_key(i))
                .collect()
        };
        lost.extend(reloaded);
        if !lost.is_empty() {
            let mut groups = self.groups.lock();
            let mut consumers = self.consumers.lock();
            groups.retain(|id, _| !lost.contains(&offsets::partition_for(id, count)));
            consumers.retain(|id, _| !lost.contains(&offsets::partition_for(id, count)));
            self.pending_txn
                .lock()
                .retain(|id, _| !lost.contains(&offsets::partition_for(id, count)));
            let mut owned = self.owned.lock();
            for index in &lost {
                owned.remove(index);
                if !to_load.iter().any(|(p, _)| p.index == *index) {
                    tracing::info!(
                        partition = index,
                        "no longer coordinating the groups of {TOPIC}-{index}"
                    );
                }
            }
        }
        if !to_load.is_empty() {
            // Groups of a partition lost earlier were dropped above, so what is in memory
            // for these partitions was made after their log was opened (a one-node
            // coordinator serves requests while it creates the topic) and is kept.
            let partitions: Vec<Arc<Partition>> = to_load.iter().map(|(p, _)| p.clone()).collect();
            self.load(&partitions);
            let mut owned = self.owned.lock();
            for (p, epoch) in to_load {
                owned.insert(p.index, epoch);
            }
        }
        if !self.loaded.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }

    /// Replays the given partitions of `__consumer_offsets` into memory.
    fn load(&self, partitions: &[Arc<Partition>]) {
        let started = std::time::Instant::now();
        let now = now_ms();
        let mut metadata: HashMap<String, Option<GroupValue>> = HashMap::new();
        let mut committed: HashMap<String, BTreeMap<(String, i32), CommittedOffset>> =
            HashMap::new();
        for p in partitions {
            let replayed = match offsets::read_all(&p.log, TOPIC, &offsets::decodable) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(partition = p.index, error = %e, "loading {TOPIC} partition failed; its groups start empty");
                    continue;
                }
            };
            // Offsets of transactions still open wait for their markers, as when written.
            for (pid, records) in replayed.pending {
                for (key, value) in records {
                    let (
                        Some(Key::Offset {
                            group,
                            topic,
                            partition,
                        }),
                        Some(v),
                    ) = (
                        Key::decode(&key),
                        value.as_deref().and_then(OffsetValue::decode),
                    )
                    else {
                        continue;
                    };
                    self.pending_txn
                        .lock()
                        .entry(group)
                        .or_default()
                        .entry(pid)
                        .or_default()
                        .insert((topic, partition), v.into());
                }
            }
            for (key, value) in replayed.records {
                match Key::decode(&key) {
                    Some(Key::Offset {
                        group,
                        topic,
                        partition,
                    }) => {
                        let offsets = committed.entry(group).or_default();
                        match value.as_deref().and_then(OffsetValue::decode) {
                            Some(v) => {
                                offsets.insert((topic, partition), v.into());
                            }
                            None => {
                                offsets.remove(&(topic, partition));
                            }
                        }
                    }
                    Some(Key::Group { group }) => {
                        metadata.insert(group, value.as_deref().and_then(GroupValue::decode));
                    }
                    None => {}
                }
            }
        }
        #[cfg(test)]
        {
            let hook = self.after_replay.lock().take();
            if let Some(hook) = hook {
                hook();
            }
        }
        let mut loaded = HashMap::new();
        for (id, value) in &metadata {
            if let Some(v) = value {
                loaded.insert(id.clone(), ClassicGroup::restore(id, v, now));
            }
        }
        for (id, offsets) in committed {
            if offsets.is_empty() {
                continue;
            }
            loaded
                .entry(id.clone())
                .or_insert_with(|| ClassicGroup::new(&id, now))
                .offsets = offsets;
        }
        let count = loaded.len();
        let mut groups = self.groups.lock();
        for (id, g) in loaded {
            groups.entry(id).or_insert(g);
        }
        drop(groups);
        self.wake.notify_one();
        tracing::info!(
            groups = count,
            partitions = partitions.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded"
        );
    }
}

impl From<OffsetValue> for CommittedOffset {
    fn from(v: OffsetValue) -> CommittedOffset {
        CommittedOffset {
            offset: v.offset,
            leader_epoch: v.leader_epoch,
            metadata: v.metadata,
            commit_timestamp: v.commit_timestamp,
        }
    }
}

/// Loads the groups of the offsets partitions led here, then runs the coordinator's
/// timers until the task is aborted, following leadership changes as they come.
pub async fn run(state: Arc<BrokerState>) {
    let mut leadership = state.replicas.subscribe_followers();
    leadership.borrow_and_update();
    sync_groups(&state).await;
    loop {
        let next = state.groups.tick(&state, now_ms());
        // Measured after the pass: a slow pass must not push the next deadline back.
        let now = now_ms();
        let wait = next
            .map(|due| (due - now).clamp(1, MAX_TIMER_SLEEP_MS))
            .unwrap_or(MAX_TIMER_SLEEP_MS);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
            _ = state.groups.wake.notified() => {}
            changed = leadership.changed() => {
                if changed.is_ok() {
                    sync_groups(&state).await;
                }
            }
        }
    }
}

async fn sync_groups(state: &Arc<BrokerState>) {
    let loader = state.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || loader.groups.sync_ownership(&loader)).await
    {
        tracing::error!(error = %e, "group coordinator load task failed");
        state.groups.loaded.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::txn::markers::{self, MarkerRequest};
    use fjord_log::txn::Marker;

    /// One broker whose group "g" has input-0 committed plainly at 10 and input-1 sent to
    /// producer 7's transaction at 20, marker not written yet; its `__consumer_offsets`
    /// partition is then unloaded, as on a broker about to become its leader.
    async fn unloaded_with_an_open_transaction(
        dir: &std::path::Path,
    ) -> (crate::server::Server, Arc<BrokerState>) {
        let props = BTreeMap::from([
            (
                "listeners".to_string(),
                "PLAINTEXT://127.0.0.1:0".to_string(),
            ),
            ("log.dirs".to_string(), dir.display().to_string()),
            ("offsets.topic.num.partitions".to_string(), "1".to_string()),
        ]);
        let config = BrokerConfig::from_props(&props).unwrap();
        let server = crate::server::Server::start(config).await.unwrap();
        let state = server.state();
        let st = state.clone();
        tokio::task::spawn_blocking(move || {
            st.groups.ensure_topic(&st).unwrap();
            st.ensure_internal_topic("input", 2, 1, BTreeMap::new())
                .unwrap();
        })
        .await
        .unwrap();
        let entry = |partition, offset| CommitEntry {
            topic: "input".into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: None,
        };
        let g = &state.groups;
        let (plain, sent) = ([entry(0, 10)], [entry(1, 20)]);
        let committed = g.commit(&state, "g", "", None, -1, &plain, None).await;
        assert_eq!(committed, Ok(vec![code::NONE]));
        let committed = g
            .commit(&state, "g", "", None, -1, &sent, Some((7, 0)))
            .await;
        assert_eq!(committed, Ok(vec![code::NONE]));
        g.groups.lock().clear();
        g.pending_txn.lock().clear();
        g.owned.lock().clear();
        (server, state)
    }

    /// A broker that led a `__consumer_offsets` partition, and leads it again in a newer
    /// epoch, may have missed what leaders in between wrote while it was not looking: it
    /// replays the log rather than keep what it held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_partition_led_again_in_a_newer_epoch_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, state) = unloaded_with_an_open_transaction(dir.path()).await;
        load(&state).await;
        // Another leader's commit, replicated here: in the log, not in memory.
        let key = Key::Offset {
            group: "g".into(),
            topic: "input".into(),
            partition: 0,
        };
        let value = OffsetValue {
            offset: 15,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: now_ms(),
        };
        let record = offsets::record(key.encode(), Some(value.encode()), now_ms());
        state.groups.append(&state, "g", &[record], None).unwrap();
        let p = state.replicas.get(TOPIC, 0).unwrap();
        let mut next = p.assignment();
        next.leader_epoch += 2;
        let leo = p.log.log_end_offset();
        p.update(|s| s.apply(next, leo, now_ms()));
        load(&state).await;
        write_commit_marker(&state).unwrap();
        assert_eq!(
            fetched(&state),
            vec![(0, Some(15), code::NONE), (1, Some(20), code::NONE)]
        );
    }

    /// Writes producer 7's commit marker to `__consumer_offsets-0`, as WriteTxnMarkers does.
    fn write_commit_marker(state: &BrokerState) -> Result<(), BrokerError> {
        let req = MarkerRequest {
            producer_id: 7,
            producer_epoch: 0,
            commit: true,
            coordinator_epoch: 0,
            partitions: vec![(TOPIC.to_string(), 0)],
        };
        let marker = Marker {
            commit: true,
            coordinator_epoch: 0,
        };
        markers::append(state, TOPIC, 0, &req, marker).map(|_| ())
    }

    async fn load(state: &Arc<BrokerState>) {
        let st = state.clone();
        tokio::task::spawn_blocking(move || st.groups.sync_ownership(&st))
            .await
            .unwrap();
    }

    /// Group "g"'s offsets of input-0 and input-1 as a stable OffsetFetch answers them:
    /// (partition, committed offset, error code).
    fn fetched(state: &BrokerState) -> Vec<(i32, Option<i64>, i16)> {
        let topics = Some(vec![("input".to_string(), vec![0, 1])]);
        let fetched = state.groups.fetch(state, "g", topics, true).unwrap();
        fetched[0]
            .1
            .iter()
            .map(|(p, c, code)| (*p, c.as_ref().map(|c| c.offset), *code))
            .collect()
    }

    /// Both of group "g"'s offsets, committed and stable.
    fn assert_both_committed(state: &BrokerState) {
        assert_eq!(
            fetched(state),
            vec![(0, Some(10), code::NONE), (1, Some(20), code::NONE)]
        );
    }

    /// A commit marker that lands on a `__consumer_offsets` partition while a new
    /// coordinator loads it, after the load has read the log, must add to the offsets the
    /// load found. It once made a group of the transaction's offsets alone, which the load
    /// then kept: every other offset of the group was gone, and a transactional copier
    /// restarted from the beginning and copied its input twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_marker_landing_during_a_load_adds_to_the_loaded_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, state) = unloaded_with_an_open_transaction(dir.path()).await;
        let marker_thread = Arc::new(Mutex::new(None));
        let (st, slot) = (state.clone(), marker_thread.clone());
        *state.groups.after_replay.lock() = Some(Box::new(move || {
            let writer = std::thread::spawn(move || write_commit_marker(&st));
            // Time enough for the marker to be applied now, were nothing to hold it.
            std::thread::sleep(Duration::from_millis(300));
            *slot.lock() = Some(writer);
        }));
        load(&state).await;
        let writer = marker_thread.lock().take().expect("the load ran the hook");
        writer.join().unwrap().unwrap();
        assert_both_committed(&state);
    }

    /// The same marker landing after the broker became the partition's leader but before
    /// its load began: the load replays it from the log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_marker_landing_before_a_load_is_replayed_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, state) = unloaded_with_an_open_transaction(dir.path()).await;
        let st = state.clone();
        tokio::task::spawn_blocking(move || write_commit_marker(&st))
            .await
            .unwrap()
            .unwrap();
        load(&state).await;
        assert_both_committed(&state);
    }
}
