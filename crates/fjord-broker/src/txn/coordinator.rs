//! The transaction coordinator's shell: it owns the transactional ids of the
//! `__transaction_state` partitions this broker leads, drives [`super::metadata`] (the
//! pure decisions), writes each decision to the log with acks=all before acting on it,
//! and sends the markers that end a transaction to the partitions' leaders.
//!
//! Ownership follows leadership, as the group coordinator's does: on becoming leader of a
//! partition its ids are loaded from the log, and every transaction found decided but
//! not complete gets its markers sent again. The coordinator epoch written into markers
//! is that partition's leader epoch, so a marker from a deposed coordinator is refused by
//! partitions that already saw a newer one.
//!
//! One timer task aborts transactions open past their timeout (fencing their producer
//! with a bumped epoch) and forgets ids idle for `transactional.id.expiration.ms`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use parking_lot::Mutex;

use super::log::{self as txnlog, TOPIC};
use super::markers::{self, MarkerRequest};
use super::metadata::{self, Then, Transit, TxnMetadata, TxnState};
use crate::config::TransactionConfig;
use crate::error::code;
use crate::group::offsets;
use crate::handlers::str;
use crate::replica::Partition;
use crate::state::{now_ms, BrokerState};

/// How long a decision waits for the in-sync replicas of its `__transaction_state`
/// partition before the request is answered COORDINATOR_NOT_AVAILABLE.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before markers that failed (a leader moving, a broker down) are sent again.
const MARKER_RETRY: Duration = Duration::from_millis(200);
/// The timer never sleeps longer than this.
const TICK: Duration = Duration::from_millis(500);
/// Largest WriteTxnMarkers answer read from another broker.
const MARKER_RESPONSE_LIMIT: usize = 16 << 20;

pub struct TransactionCoordinator {
    txns: Mutex<HashMap<String, TxnMetadata>>,
    /// The `__transaction_state` partitions whose ids are in memory here, with the leader
    /// epoch they were loaded in (the coordinator epoch of their markers).
    owned: Mutex<HashMap<i32, i32>>,
    /// Ids whose markers a task is sending now: one task per id.
    completing: Mutex<HashSet<String>>,
    /// Held by [`TransactionCoordinator::sync_ownership`]. Lock order: `owned` before
    /// `txns`; neither is held while taking this.
    syncing: Mutex<()>,
    loaded: AtomicBool,
    config: TransactionConfig,
    last_abort_check: AtomicI64,
    last_expiry_check: AtomicI64,
}

/// What a transactional id's requests need: its partition of `__transaction_state` and
/// the coordinator epoch it is owned in.
struct Owner {
    partition: Arc<Partition>,
    epoch: i32,
}

impl TransactionCoordinator {
    pub fn new(config: &TransactionConfig) -> TransactionCoordinator {
        TransactionCoordinator {
            txns: Mutex::new(HashMap::new()),
            owned: Mutex::new(HashMap::new()),
            completing: Mutex::new(HashSet::new()),
            syncing: Mutex::new(()),
            loaded: AtomicBool::new(false),
            config: config.clone(),
            last_abort_check: AtomicI64::new(0),
            last_expiry_check: AtomicI64::new(0),
        }
    }

    fn partition_count(&self, state: &BrokerState) -> i32 {
        state
            .controller
            .image()
            .topic(TOPIC)
            .map(|t| t.partitions.len() as i32)
            .filter(|n| *n > 0)
            .unwrap_or(self.config.log_partitions)
    }

    /// Creates `__transaction_state` on first use (FindCoordinator, off the async
    /// workers) and takes up the partitions this broker leads.
    pub fn ensure_topic(&self, state: &BrokerState) -> Result<(), i16> {
        if state.controller.image().topic(TOPIC).is_some() {
            return Ok(());
        }
        let rf = self
            .config
            .log_replication_factor
            .min(state.controller.image().live_brokers().count().max(1) as i16);
        let min_isr = self.config.log_min_isr.min(rf as i32).max(1);
        let configs = [
            ("cleanup.policy".to_string(), "compact".to_string()),
            (
                "segment.bytes".to_string(),
                self.config.log_segment_bytes.to_string(),
            ),
            ("min.insync.replicas".to_string(), min_isr.to_string()),
        ];
        state.ensure_internal_topic(TOPIC, self.config.log_partitions, rf, configs.into())?;
        self.sync_ownership(state);
        Ok(())
    }

    /// The node coordinating `id`: the leader of its partition, or -1 while there is none.
    pub fn coordinator_node(&self, state: &BrokerState, id: &str) -> i32 {
        let image = state.controller.image();
        let Some(topic) = image.topic(TOPIC) else {
            return -1;
        };
        let index = txnlog::partition_for(id, topic.partitions.len() as i32);
        topic
            .partitions
            .iter()
            .find(|p| p.partition == index)
            .map_or(-1, |p| p.leader)
    }

    /// Whether this broker coordinates `id` now.
    fn owner(&self, state: &BrokerState, id: &str) -> Result<Owner, i16> {
        if id.is_empty() {
            return Err(code::INVALID_REQUEST);
        }
        if !self.loaded.load(Ordering::Acquire) {
            return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        if state.controller.image().topic(TOPIC).is_none() {
            return Err(code::COORDINATOR_NOT_AVAILABLE);
        }
        let index = txnlog::partition_for(id, self.partition_count(state));
        let Some(partition) = state.replicas.get(TOPIC, index) else {
            return Err(code::NOT_COORDINATOR);
        };
        let epoch = partition.assignment().leader_epoch;
        if !partition.is_leader() || !state.session_current() {
            return Err(code::NOT_COORDINATOR);
        }
        if self.owned.lock().get(&index) != Some(&epoch) {
            return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        Ok(Owner { partition, epoch })
    }

    /// Writes `transit`'s record with acks=all, then applies it (or drops it, if the
    /// write failed); returns what is to be done next.
    async fn write(
        self: &Arc<Self>,
        state: &Arc<BrokerState>,
        owner: &Owner,
        id: &str,
        transit: Transit,
    ) -> Result<Then, i16> {
        let written = self.append(state, owner, id, &transit).await;
        let mut txns = self.txns.lock();
        let Some(md) = txns.get_mut(id) else {
            return Err(code::NOT_COORDINATOR);
        };
        match written {
            Ok(()) => metadata::complete_transition(md, transit),
            Err(c) => {
                metadata::abort_transition(md, &transit);
                Err(c)
            }
        }
    }

    async fn append(
        &self,
        state: &Arc<BrokerState>,
        owner: &Owner,
        id: &str,
        transit: &Transit,
    ) -> Result<(), i16> {
        let now = now_ms();
        let value = transit.record().map(|v| txnlog::encode(&v));
        let record = offsets::record(txnlog::encode_key(id), value, now);
        let mut batch = offsets::batch(&[record], None).map_err(|_| code::UNKNOWN_SERVER_ERROR)?;
        let p = owner.partition.clone();
        let appended = tokio::task::spawn_blocking(move || {
            let info = p.append(&mut batch, now)?;
            p.log.flush_until(info.last_offset + 1)?;
            Ok::<i64, crate::error::BrokerError>(info.last_offset + 1)
        })
        .await;
        state.replicas.notify_append();
        let next = match appended {
            Ok(Ok(next)) => next,
            Ok(Err(e)) => {
                tracing::warn!(transactional_id = id, error = %e, "writing transaction state failed");
                return Err(coordinator_code(e.kafka_code()));
            }
            Err(e) => {
                tracing::error!(transactional_id = id, error = %e, "transaction state write task failed");
                return Err(code::COORDINATOR_NOT_AVAILABLE);
            }
        };
        // The topic's own min.insync.replicas: set at creation from
        // transaction.state.log.min.isr, capped at its replication factor.
        let min_isr = state
            .controller
            .image()
            .topic(TOPIC)
            .and_then(|t| t.configs.get("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let deadline = tokio::time::Instant::now() + WRITE_TIMEOUT;
        owner
            .partition
            .wait_replicated(next, owner.epoch, min_isr, deadline)
            .await
            .map_err(|e| {
                tracing::warn!(transactional_id = id, error = %e, "transaction state not replicated");
                coordinator_code(e.kafka_code())
            })
    }

    /// Carries out what a written decision asks that needs no answer from the log.
    fn follow_up(self: &Arc<Self>, state: &Arc<BrokerState>, id: &str, then: &Then) {
        match then {
            Then::WriteMarkers { .. } => self.spawn_markers(state, id),
            Then::Remove => {
                self.txns.lock().remove(id);
            }
            _ => {}
        }
    }

    /// InitProducerId with a transactional id: its producer id and a new epoch.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        state: &Arc<BrokerState>,
        id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), i16> {
        let owner = self.owner(state, id)?;
        // A new id (or one whose epochs ran out) needs a producer id, which may commit
        // metadata: allocated before the lock, off the async workers.
        let needs_id = self
            .txns
            .lock()
            .get(id)
            .is_none_or(|md| md.producer_epoch >= i16::MAX - 2);
        let mut fresh = producer_id_if(state, needs_id).await?;
        let plan = {
            let mut txns = self.txns.lock();
            let mut allocate = || fresh.take().ok_or(code::COORDINATOR_NOT_AVAILABLE);
            let plan = metadata::init_producer_id(
                txns.get_mut(id),
                id,
                timeout_ms,
                expected,
                self.config.max_timeout_ms,
                &mut allocate,
                now_ms(),
            )?;
            if let Some(entry) = plan.new_entry {
                txns.insert(id.to_string(), entry);
            }
            plan.transit
        };
        let then = self.write(state, &owner, id, plan).await?;
        self.follow_up(state, id, &then);
        match then {
            Then::ReplyProducer {
                producer_id,
                producer_epoch,
            } => Ok((producer_id, producer_epoch)),
            Then::WriteMarkers { reply: Some(c), .. } => Err(c),
            _ => Err(code::CONCURRENT_TRANSACTIONS),
        }
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn): the partitions join the transaction.
    /// `client_version` is the transaction version the request implies (2 when a broker
    /// adds the partitions its writes reach).
    pub async fn add_partitions(
        self: &Arc<Self>,
        state: &Arc<BrokerState>,
        id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
        client_version: i16,
    ) -> Result<(), i16> {
        let owner = self.owner(state, id)?;
        let transit = {
            let mut txns = self.txns.lock();
            metadata::add_partitions(
                txns.get_mut(id),
                producer.0,
                producer.1,
                partitions,
                client_version,
                now_ms(),
            )?
        };
        let Some(transit) = transit else {
            return Ok(());
        };
        let then = self.write(state, &owner, id, transit).await?;
        self.follow_up(state, id, &then);
        Ok(())
    }

    /// AddPartitionsToTxn v4+ with verify_only: whether each partition is in the open
    /// transaction of this producer.
    pub fn verify_partitions(
        &self,
        state: &BrokerState,
        id: &str,
        producer: (i64, i16),
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        self.owner(state, id)?;
        let txns = self.txns.lock();
        let md = txns.get(id).ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
        if md.producer_id != producer.0 {
            return Err(code::INVALID_PRODUCER_ID_MAPPING);
        }
        if md.producer_epoch != producer.1 {
            return Err(code::PRODUCER_FENCED);
        }
        Ok(partitions
            .iter()
            .map(|p| {
                if md.state == TxnState::Ongoing && md.partitions.contains(p) {
                    code::NONE
                } else {
                    code::INVALID_TXN_STATE
                }
            })
            .collect())
    }

    /// EndTxn: the decision is durable when this returns NONE; its markers follow. The
    /// answer is the producer id and epoch to go on with (new ones for transaction version
    /// 2, `client_version` 2).
    pub async fn end_txn(
        self: &Arc<Self>,
        state: &Arc<BrokerState>,
        id: &str,
        producer: (i64, i16),
        commit: bool,
        client_version: i16,
    ) -> Result<(i64, i16), i16> {
        let owner = self.owner(state, id)?;
        // A bump that finds the epoch run out moves to a new producer id: allocated before
        // the lock, off the async workers, and only then.
        let needs_id = client_version >= 2
            && self
                .txns
                .lock()
                .get(id)
                .is_some_and(|md| md.producer_epoch >= i16::MAX - 1);
        let mut fresh = producer_id_if(state, needs_id).await?;
        let (transit, current) = {
            let mut txns = self.txns.lock();
            let mut allocate = || fresh.take().ok_or(code::COORDINATOR_NOT_AVAILABLE);
            let transit = metadata::end_txn(
                txns.get_mut(id),
                producer.0,
                producer.1,
                commit,
                client_version,
                &mut allocate,
                now_ms(),
            )?;
            let current = txns.get(id).map(TxnMetadata::producer_after_markers);
            (transit, current)
        };
        let Some(transit) = transit else {
            return current.ok_or(code::INVALID_PRODUCER_ID_MAPPING);
        };
        let answer = transit.target.producer_after_markers();
        let then = self.write(state, &owner, id, transit).await?;
        self.follow_up(state, id, &then);
        match then {
            Then::WriteMarkers { reply: Some(c), .. } if c != code::NONE => Err(c),
            _ => Ok(answer),
        }
    }

    /// DescribeTransactions: one id's state, if this broker coordinates it.
    pub fn describe(&self, state: &BrokerState, id: &str) -> Result<TxnMetadata, i16> {
        self.owner(state, id)?;
        self.txns
            .lock()
            .get(id)
            .filter(|md| md.state != TxnState::Dead)
            .cloned()
            .ok_or(code::TRANSACTIONAL_ID_NOT_FOUND)
    }

    /// ListTransactions: every id coordinated here.
    pub fn list(&self) -> Result<Vec<TxnMetadata>, i16> {
        if !self.loaded.load(Ordering::Acquire) {
            return Err(code::COORDINATOR_LOAD_IN_PROGRESS);
        }
        Ok(self
            .txns
            .lock()
            .values()
            .filter(|md| md.state != TxnState::Dead && md.producer_epoch >= 0)
            .cloned()
            .collect())
    }

    /// Starts the task that writes `id`'s markers and completes its transaction, unless
    /// one is running.
    fn spawn_markers(self: &Arc<Self>, state: &Arc<BrokerState>, id: &str) {
        if !self.completing.lock().insert(id.to_string()) {
            return;
        }
        let (me, st, id) = (self.clone(), state.clone(), id.to_string());
        tokio::spawn(async move {
            me.complete(&st, &id).await;
            me.completing.lock().remove(&id);
        });
    }

    /// Sends the markers of `id`'s decided transaction until every partition has one,
    /// then writes the transaction complete. Stops when this broker no longer
    /// coordinates the id (the new coordinator finishes it from the log).
    async fn complete(self: &Arc<Self>, state: &Arc<BrokerState>, id: &str) {
        loop {
            let Ok(owner) = self.owner(state, id) else {
                return;
            };
            let Some(md) = self.txns.lock().get(id).cloned() else {
                return;
            };
            let Some(commit) = metadata::needs_markers(&md) else {
                // A transit is being written for it: look again shortly.
                if md.pending().is_some() {
                    tokio::time::sleep(MARKER_RETRY).await;
                    continue;
                }
                return;
            };
            let request = MarkerRequest {
                producer_id: md.producer_id,
                producer_epoch: md.producer_epoch,
                commit,
                coordinator_epoch: owner.epoch,
                partitions: md.partitions.iter().cloned().collect(),
            };
            if !self.send_markers(state, &request).await {
                tokio::time::sleep(MARKER_RETRY).await;
                continue;
            }
            let transit = {
                let mut txns = self.txns.lock();
                let Some(md) = txns.get_mut(id) else { return };
                match metadata::complete_markers(md, now_ms()) {
                    Ok(t) => t,
                    Err(_) => return,
                }
            };
            match self.write(state, &owner, id, transit).await {
                Ok(_) => return,
                Err(c) => {
                    tracing::warn!(
                        transactional_id = id,
                        code = c,
                        "completing a transaction failed; retrying"
                    );
                    tokio::time::sleep(MARKER_RETRY).await;
                }
            }
        }
    }

    /// Sends one round of markers to the leaders of the request's partitions; true when
    /// every partition has its marker (or no longer exists).
    async fn send_markers(&self, state: &Arc<BrokerState>, req: &MarkerRequest) -> bool {
        let image = state.controller.image();
        let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, index) in &req.partitions {
            let leader = image
                .topic(topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == *index))
                .map(|p| p.leader);
            match leader {
                // A deleted topic keeps no transaction: nothing to end there.
                None => continue,
                Some(l) => by_leader
                    .entry(l)
                    .or_default()
                    .push((topic.clone(), *index)),
            }
        }
        let mut done = true;
        for (leader, partitions) in by_leader {
            if leader < 0 {
                done = false;
                continue;
            }
            let part = MarkerRequest {
                partitions,
                ..req.clone()
            };
            let codes = if leader == state.node_id() {
                Ok(markers::write_local(state, &part).await)
            } else {
                send_remote(state, leader, &part).await
            };
            match codes {
                Ok(codes) => {
                    for ((topic, index), c) in part.partitions.iter().zip(codes) {
                        if c != code::NONE && c != code::UNKNOWN_TOPIC_OR_PARTITION {
                            tracing::debug!(topic = %topic, partition = index, code = c, "transaction marker not written; retrying");
                            done = false;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(leader, error = %e, "sending transaction markers failed; retrying");
                    done = false;
                }
            }
        }
        done
    }

    /// Follows leadership of `__transaction_state`: loads the ids of partitions led here
    /// now, drops those of partitions no longer led. Blocking: run it off the async
    /// workers. Returns the ids whose markers must be sent.
    pub fn sync_ownership(&self, state: &BrokerState) -> Vec<String> {
        // One at a time (the timer task and a FindCoordinator that created the topic may
        // both call it), so that a partition is never loaded twice at once.
        let _one = self.syncing.lock();
        let count = self.partition_count(state);
        let (to_load, lost) =
            crate::replica::ownership_changes(&state.replicas, TOPIC, &self.owned.lock());
        let reloaded: Vec<i32> = to_load.iter().map(|(p, _)| p.index).collect();
        if !lost.is_empty() || !reloaded.is_empty() {
            let mut owned = self.owned.lock();
            let mut txns = self.txns.lock();
            txns.retain(|id, _| {
                let index = txnlog::partition_for(id, count);
                !lost.contains(&index) && !reloaded.contains(&index)
            });
            for index in &lost {
                owned.remove(index);
                tracing::info!(
                    partition = index,
                    "no longer coordinating the transactions of {TOPIC}-{index}"
                );
            }
        }
        let mut unfinished = Vec::new();
        for (p, epoch) in to_load {
            let loaded = load(&p);
            {
                let mut txns = self.txns.lock();
                for (id, md) in loaded {
                    if metadata::needs_markers(&md).is_some() {
                        unfinished.push(id.clone());
                    }
                    txns.insert(id, md);
                }
            }
            self.owned.lock().insert(p.index, epoch);
        }
        self.loaded.store(true, Ordering::Release);
        unfinished
    }

    /// One pass of the timer: aborts transactions past their timeout and forgets expired
    /// ids, each at its own interval.
    async fn tick(self: &Arc<Self>, state: &Arc<BrokerState>) {
        let now = now_ms();
        let abort_due = now - self.last_abort_check.load(Ordering::Relaxed)
            >= self.config.abort_check_interval_ms as i64;
        let expiry_due = now - self.last_expiry_check.load(Ordering::Relaxed)
            >= self.config.expiry_check_interval_ms as i64;
        if abort_due {
            self.last_abort_check.store(now, Ordering::Relaxed);
            let timed_out: Vec<String> = self
                .txns
                .lock()
                .values()
                .filter(|md| metadata::timed_out(md, now))
                .map(|md| md.transactional_id.clone())
                .collect();
            for id in timed_out {
                let Ok(owner) = self.owner(state, &id) else {
                    continue;
                };
                let transit = {
                    let mut txns = self.txns.lock();
                    txns.get_mut(&id)
                        .and_then(|md| metadata::abort_timed_out(md, now_ms()))
                };
                let Some(transit) = transit else { continue };
                tracing::info!(transactional_id = %id, "aborting a transaction open past its timeout");
                if let Ok(then) = self.write(state, &owner, &id, transit).await {
                    self.follow_up(state, &id, &then);
                }
            }
        }
        if expiry_due {
            self.last_expiry_check.store(now, Ordering::Relaxed);
            let expiration = self.config.id_expiration_ms;
            let expired: Vec<String> = self
                .txns
                .lock()
                .values()
                .filter(|md| metadata::expired(md, now, expiration))
                .map(|md| md.transactional_id.clone())
                .collect();
            for id in expired {
                let Ok(owner) = self.owner(state, &id) else {
                    continue;
                };
                let transit = {
                    let mut txns = self.txns.lock();
                    txns.get_mut(&id)
                        .and_then(|md| metadata::expire(md, now_ms(), expiration))
                };
                let Some(transit) = transit else { continue };
                if let Ok(then) = self.write(state, &owner, &id, transit).await {
                    self.follow_up(state, &id, &then);
                }
            }
        }
    }
}

/// Kafka's answers for a failed write of the coordinator's log: the partition moved
/// (NOT_COORDINATOR, the client looks for the new one) or the write could not be made
/// durable on enough replicas (COORDINATOR_NOT_AVAILABLE, the client retries).
/// A new producer id from the controller if `needed`, allocated off the async workers (it
/// may commit metadata).
async fn producer_id_if(state: &Arc<BrokerState>, needed: bool) -> Result<Option<i64>, i16> {
    if !needed {
        return Ok(None);
    }
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.controller.allocate_producer_id()).await {
        Ok(Ok(pid)) => Ok(Some(pid)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "allocating a producer id failed");
            Err(code::COORDINATOR_NOT_AVAILABLE)
        }
        Err(_) => Err(code::COORDINATOR_NOT_AVAILABLE),
    }
}

fn coordinator_code(c: i16) -> i16 {
    match c {
        code::NOT_LEADER_OR_FOLLOWER => code::NOT_COORDINATOR,
        _ => code::COORDINATOR_NOT_AVAILABLE,
    }
}

/// The ids of one `__transaction_state` partition, from its log.
fn load(p: &Partition) -> Vec<(String, TxnMetadata)> {
    let started = std::time::Instant::now();
    let decodable = |k: &[u8], v: Option<&[u8]>| txnlog::decode_record(k, v).is_some();
    let replayed = match offsets::read_all(&p.log, TOPIC, &decodable) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(partition = p.index, error = %e, "loading {TOPIC} partition failed; its transactional ids start empty");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (key, value) in replayed.records {
        let Some((id, value)) = txnlog::decode_record(&key, value.as_deref()) else {
            continue;
        };
        if let Some(v) = value {
            out.push((id.clone(), metadata::from_log(&id, &v)));
        }
    }
    tracing::info!(
        partition = p.index,
        ids = out.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "transaction coordinator loaded"
    );
    out
}

/// Sends `req` to broker `leader` as WriteTxnMarkers; the code of each partition.
async fn send_remote(
    state: &BrokerState,
    leader: i32,
    req: &MarkerRequest,
) -> Result<Vec<i16>, String> {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &req.partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(req.producer_id))
            .with_producer_epoch(req.producer_epoch)
            .with_transaction_result(req.commit)
            .with_coordinator_epoch(req.coordinator_epoch)
            .with_topics(
                by_topic
                    .into_iter()
                    .map(|(t, ps)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(TopicName(str(t)))
                            .with_partition_indexes(ps)
                    })
                    .collect(),
            )]);
    let mut conn = crate::broker_client::connect(state, leader).await?;
    let answer = tokio::time::timeout(
        Duration::from_secs(60),
        crate::broker_client::call::<_, WriteTxnMarkersResponse, _>(
            &mut conn,
            "fjord-txn-coordinator",
            1,
            &request,
            1,
            MARKER_RESPONSE_LIMIT,
        ),
    )
    .await
    .map_err(|_| format!("broker {leader} did not answer"))??;
    let mut codes: HashMap<(String, i32), i16> = HashMap::new();
    for m in answer.markers {
        for t in m.topics {
            for p in t.partitions {
                codes.insert((t.name.0.to_string(), p.partition_index), p.error_code);
            }
        }
    }
    Ok(req
        .partitions
        .iter()
        .map(|k| codes.get(k).copied().unwrap_or(code::UNKNOWN_SERVER_ERROR))
        .collect())
}

/// Loads the coordinator's partitions, then runs its timer until the task is aborted,
/// following leadership changes as they come.
pub async fn run(state: Arc<BrokerState>) {
    let mut leadership = state.replicas.subscribe_followers();
    leadership.borrow_and_update();
    sync(&state).await;
    loop {
        state.transactions.tick(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            changed = leadership.changed() => {
                if changed.is_ok() {
                    sync(&state).await;
                }
            }
        }
    }
}

async fn sync(state: &Arc<BrokerState>) {
    let st = state.clone();
    match tokio::task::spawn_blocking(move || st.transactions.sync_ownership(&st)).await {
        Ok(unfinished) => {
            for id in unfinished {
                state.transactions.spawn_markers(state, &id);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "transaction coordinator load task failed");
            state.transactions.loaded.store(true, Ordering::Release);
        }
    }
}
