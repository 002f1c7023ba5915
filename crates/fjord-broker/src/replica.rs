//! The replica manager: the partitions this broker hosts, each a log plus the replication
//! state Kafka keeps beside it (leader, leader epoch, ISR, high watermark), and the signal
//! that wakes long-polling fetches when data arrives.
//!
//! The set of partitions follows the metadata image: [`ReplicaManager::reconcile`] opens
//! logs for partitions assigned here and deletes those whose topic was deleted. Doubt never
//! deletes: a directory the image does not account for is renamed aside as a stray, and a
//! directory the image wants but that cannot be proven to belong to it stops the start.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use fjord_controller::{MetadataImage, MetadataRecord};
use fjord_log::{AppendInfo, Log, LogConfig, LogError};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::error::{code, BrokerError};
use crate::replication::state::{Assignment, ReplicaState};
use crate::replication::throttle::{self, RateWindow};
use crate::topic_config;

/// Written in each partition directory so a directory can never be mistaken for the
/// partition of a later topic with the same name.
const PARTITION_METADATA: &str = "partition.metadata";

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub log: Arc<Log>,
    /// Leadership, ISR and follower positions: one lock for all of it. Appends hold it
    /// shared for their whole duration, so a leadership change (which takes it
    /// exclusively) never interleaves with an append stamped with the old epoch.
    replication: RwLock<ReplicaState>,
    /// The high watermark, published for lock-free reads: offsets below it are on every
    /// ISR member and visible to consumers. Written only under `replication`.
    high_watermark: AtomicI64,
    /// Bumped whenever the high watermark or the leadership changes: acks=all waits on
    /// it.
    changed: watch::Sender<u64>,
    /// Whether `cleanup.policy` includes `delete`: a compact-only topic (such as
    /// `__consumer_offsets`) is never trimmed by time or size, as in Kafka.
    delete_retention: AtomicBool,
    /// Whether the topic lists this replica in `leader.replication.throttled.replicas`
    /// (what it sends to followers outside the ISR counts against the leader throttle),
    /// and in `follower.replication.throttled.replicas` (what it copies while outside the
    /// ISR counts against the follower throttle).
    leader_throttled: AtomicBool,
    follower_throttled: AtomicBool,
}

impl Partition {
    fn new(
        topic: &str,
        topic_id: Uuid,
        index: i32,
        log: Log,
        state: ReplicaState,
        delete_retention: bool,
    ) -> Partition {
        let hw = state.high_watermark();
        Partition {
            topic: topic.to_string(),
            topic_id,
            index,
            log: Arc::new(log),
            replication: RwLock::new(state),
            high_watermark: AtomicI64::new(hw),
            changed: watch::channel(0).0,
            delete_retention: AtomicBool::new(delete_retention),
            leader_throttled: AtomicBool::new(false),
            follower_throttled: AtomicBool::new(false),
        }
    }

    /// Reads the topic's throttled-replica lists for this replica on broker `node`.
    fn set_throttles(&self, configs: &BTreeMap<String, String>, node: i32) {
        let listed = |key: &str| {
            configs
                .get(key)
                .is_some_and(|l| throttle::listed(l, self.index, node))
        };
        self.leader_throttled.store(
            listed("leader.replication.throttled.replicas"),
            Ordering::Release,
        );
        self.follower_throttled.store(
            listed("follower.replication.throttled.replicas"),
            Ordering::Release,
        );
    }

    /// Whether what this leader sends to `follower` is throttled: the topic lists this
    /// replica, and the follower is not in the ISR (an in-sync one is never held back).
    pub fn leader_throttles(&self, follower: i32) -> bool {
        self.leader_throttled.load(Ordering::Acquire)
            && !self.replication.read().assignment.isr.contains(&follower)
    }

    /// Whether what this follower (on broker `node`) copies is throttled.
    pub fn follower_throttled(&self, node: i32) -> bool {
        self.follower_throttled.load(Ordering::Acquire)
            && !self.replication.read().assignment.isr.contains(&node)
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// The partition's leader, leader epoch, replicas and ISR as this broker knows them.
    pub fn assignment(&self) -> Assignment {
        self.replication.read().assignment.clone()
    }

    pub fn is_leader(&self) -> bool {
        self.replication.read().is_leader()
    }

    /// The current leader epoch, after checking the one a client believes in (KIP-320):
    /// newer than ours means our metadata lags (UNKNOWN_LEADER_EPOCH, retry), older means
    /// the client's does (FENCED_LEADER_EPOCH, refresh metadata). -1 skips the check.
    /// Only the leader serves clients: elsewhere NOT_LEADER_OR_FOLLOWER.
    pub fn check_leader_epoch(&self, client_epoch: i32) -> Result<i32, i16> {
        let state = self.replication.read();
        let current = state.assignment.leader_epoch;
        if client_epoch >= 0 && client_epoch > current {
            Err(code::UNKNOWN_LEADER_EPOCH)
        } else if client_epoch >= 0 && client_epoch < current {
            Err(code::FENCED_LEADER_EPOCH)
        } else if !state.is_leader() {
            Err(code::NOT_LEADER_OR_FOLLOWER)
        } else {
            Ok(current)
        }
    }

    /// As [`Partition::check_leader_epoch`], for a consumer allowed to read from a
    /// follower (Fetch v11+, KIP-392): any replica here serves it, up to its own high
    /// watermark.
    pub fn check_read_epoch(&self, client_epoch: i32) -> Result<i32, i16> {
        match self.check_leader_epoch(client_epoch) {
            Err(code::NOT_LEADER_OR_FOLLOWER) => {
                let state = self.replication.read();
                if state.assignment.leader_epoch < 0 || state.assignment.leader < 0 {
                    Err(code::NOT_LEADER_OR_FOLLOWER)
                } else {
                    Ok(state.assignment.leader_epoch)
                }
            }
            other => other,
        }
    }

    /// On the leader, the follower a consumer near `near_client` should read from.
    pub fn preferred_read_replica(
        &self,
        fetch_offset: i64,
        near_client: impl Fn(i32) -> bool,
    ) -> Option<i32> {
        self.replication
            .read()
            .preferred_read_replica(fetch_offset, near_client)
    }

    /// Validates and appends a producer's batches as the leader; returns where they
    /// landed. Idempotent producers' sequences are checked by the log under its append
    /// lock, so a retry is answered with the batch's original offsets (also after a
    /// restart, or on a new leader that copied the batch) and never written twice.
    pub fn append(&self, records: &mut [u8], now_ms: i64) -> Result<AppendInfo, BrokerError> {
        self.append_as_leader(|log, epoch| log.append(records, epoch, now_ms))
    }

    /// Runs `write` (an append stamped with the leader epoch it is given) only while this
    /// broker leads, then lets the high watermark follow.
    fn append_as_leader(
        &self,
        write: impl FnOnce(&Log, i32) -> Result<AppendInfo, LogError>,
    ) -> Result<AppendInfo, BrokerError> {
        let info = {
            let state = self.replication.read();
            if !state.is_leader() {
                return Err(BrokerError::Kafka(
                    code::NOT_LEADER_OR_FOLLOWER,
                    format!(
                        "This broker is not the leader of {}-{} (leader {})",
                        self.topic, self.index, state.assignment.leader
                    ),
                ));
            }
            write(&self.log, state.assignment.leader_epoch)?
        };
        let mut state = self.replication.write();
        if state.appended(self.log.log_end_offset()) {
            self.publish(&state);
        }
        Ok(info)
    }

    /// Appends the marker ending producer `producer_id`'s transaction, as the leader
    /// (WriteTxnMarkers); returns its offset.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: fjord_log::txn::Marker,
        now_ms: i64,
    ) -> Result<AppendInfo, BrokerError> {
        self.append_as_leader(|log, epoch| {
            log.append_marker(producer_id, producer_epoch, marker, epoch, now_ms)
        })
    }

    /// The ISR is below `min_isr`: acks=all is refused before the append (by the
    /// leader; anywhere else the answer is NOT_LEADER_OR_FOLLOWER).
    pub fn check_min_isr(&self, min_isr: usize) -> Result<(), BrokerError> {
        let (isr, leads) = {
            let s = self.replication.read();
            (s.assignment.isr.len(), s.is_leader())
        };
        if !leads {
            return Err(BrokerError::Kafka(
                code::NOT_LEADER_OR_FOLLOWER,
                format!(
                    "This broker is not the leader of {}-{}",
                    self.topic, self.index
                ),
            ));
        }
        if isr < min_isr {
            return Err(BrokerError::Kafka(
                code::NOT_ENOUGH_REPLICAS,
                format!(
                    "The size of the current ISR {isr} is insufficient to satisfy the min.isr \
                     requirement of {min_isr} for partition {}-{}",
                    self.topic, self.index
                ),
            ));
        }
        Ok(())
    }

    /// Waits until everything below `offset` is on every ISR member (the high watermark
    /// reached it), until `deadline`. The answer is then checked as Kafka does: an
    /// ISR shrunk below `min_isr` meanwhile is NOT_ENOUGH_REPLICAS_AFTER_APPEND, a lost
    /// leadership NOT_LEADER_OR_FOLLOWER, and a timeout REQUEST_TIMED_OUT.
    pub async fn wait_replicated(
        &self,
        offset: i64,
        leader_epoch: i32,
        min_isr: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), BrokerError> {
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            {
                let state = self.replication.read();
                if !state.is_leader() || state.assignment.leader_epoch != leader_epoch {
                    return Err(BrokerError::Kafka(
                        code::NOT_LEADER_OR_FOLLOWER,
                        format!(
                            "Leadership of {}-{} changed before the write was replicated",
                            self.topic, self.index
                        ),
                    ));
                }
                if state.high_watermark() >= offset {
                    let isr = state.assignment.isr.len();
                    if isr < min_isr {
                        return Err(BrokerError::Kafka(
                            code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                            format!(
                                "The size of the current ISR {isr} is insufficient to satisfy \
                                 the min.isr requirement of {min_isr} for partition {}-{}",
                                self.topic, self.index
                            ),
                        ));
                    }
                    return Ok(());
                }
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() { return Err(BrokerError::Kafka(code::NOT_LEADER_OR_FOLLOWER, "partition closed".into())) },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BrokerError::Kafka(
                        code::REQUEST_TIMED_OUT,
                        format!(
                            "Not every in-sync replica of {}-{} had the write within the produce timeout",
                            self.topic, self.index
                        ),
                    ));
                }
            }
        }
    }

    /// Runs `f` (a follower's append or truncation) only while this broker still follows
    /// `leader` at `leader_epoch`, holding the state so that leadership cannot change
    /// meanwhile: an answer from a leader this partition no longer follows is dropped,
    /// never written into the log of a new term.
    pub(crate) fn as_follower_of<T>(
        &self,
        leader: i32,
        leader_epoch: i32,
        f: impl FnOnce() -> T,
    ) -> Option<T> {
        let state = self.replication.read();
        let a = &state.assignment;
        if state.is_leader() || a.leader != leader || a.leader_epoch != leader_epoch {
            return None;
        }
        Some(f())
    }

    /// Runs `f` on the replication state and publishes what it changed.
    pub(crate) fn update<T>(&self, f: impl FnOnce(&mut ReplicaState) -> T) -> T {
        let mut state = self.replication.write();
        let out = f(&mut state);
        self.publish(&state);
        out
    }

    /// Waits until every live replica's log starts at `offset` or later (DeleteRecords
    /// reached them all), until `deadline`; returns the low watermark then. Leadership
    /// lost meanwhile is NOT_LEADER_OR_FOLLOWER, a timeout REQUEST_TIMED_OUT.
    pub async fn wait_low_watermark(
        &self,
        offset: i64,
        live: impl Fn(i32) -> bool,
        deadline: tokio::time::Instant,
    ) -> Result<i64, BrokerError> {
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            let low = self
                .replication
                .read()
                .low_watermark(self.log.log_start_offset(), &live);
            match low {
                None => {
                    return Err(BrokerError::Kafka(
                        code::NOT_LEADER_OR_FOLLOWER,
                        format!(
                            "Leadership of {}-{} moved before every replica deleted",
                            self.topic, self.index
                        ),
                    ))
                }
                Some(low) if low >= offset => return Ok(low),
                Some(_) => {}
            }
            tokio::select! {
                r = changed.changed() => if r.is_err() {
                    return Err(BrokerError::Kafka(code::NOT_LEADER_OR_FOLLOWER, "partition closed".into()));
                },
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(BrokerError::Kafka(
                        code::REQUEST_TIMED_OUT,
                        format!(
                            "Not every replica of {}-{} deleted up to {offset} within the timeout",
                            self.topic, self.index
                        ),
                    ));
                }
            }
        }
    }

    /// Mirrors the high watermark and wakes acks=all waiters (called under the lock).
    fn publish(&self, state: &ReplicaState) {
        self.high_watermark
            .store(state.high_watermark(), Ordering::Release);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Re-reads the high watermark after DeleteRecords moved the log start past it.
    fn refresh_high_watermark(&self) {
        let start = self.log.log_start_offset();
        self.update(|s| s.raise_high_watermark(start));
    }
}

pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    /// The configuration the broker started with.
    config: BrokerConfig,
    /// What it runs with now: `config` with the image's dynamic broker configs on top,
    /// and the properties that produced it (rebuilt only when they change).
    effective: RwLock<(BTreeMap<String, String>, Arc<BrokerConfig>)>,
    partitions: RwLock<BTreeMap<(String, i32), Arc<Partition>>>,
    /// Serialises reconciles so two metadata changes cannot open the same log twice, and
    /// holds the offset of the newest image reconciled: a caller that fetched its image
    /// before someone else reconciled a newer one must not apply its stale view, which
    /// would remove the partitions created in between.
    reconcile_lock: Mutex<Option<u64>>,
    /// Logs opened by [`ReplicaManager::prepare_partitions`] ahead of the metadata commit
    /// that creates their partitions; `reconcile` adopts them once the image names them.
    prepared: Mutex<HashMap<(String, i32), (Uuid, Log)>>,
    /// Bumped after every append; long-polling fetches wait on it.
    appended: watch::Sender<u64>,
    /// Bumped when a partition here changes leader or role: fetchers re-plan.
    followers_changed: watch::Sender<u64>,
    /// High watermarks read from the checkpoint at start, for partitions not yet opened.
    checkpoint: Mutex<HashMap<(String, i32), i64>>,
    /// What the checkpoint file holds now.
    checkpoint_written: Mutex<Option<Vec<(String, i32, i64)>>>,
    /// Bytes sent to throttled followers, and copied for throttled replicas here.
    pub leader_quota: Mutex<RateWindow>,
    pub follower_quota: Mutex<RateWindow>,
}

/// How a coordinator's partitions of internal topic `topic` moved since it last looked:
/// `(partitions it now leads in another epoch than the one it loaded them in, with that
/// epoch; partitions it holds but no longer leads or hosts)`. `owned` maps the partitions
/// it holds to the leader epoch they were loaded in.
#[allow(clippy::type_complexity)]
pub fn ownership_changes(
    replicas: &ReplicaManager,
    topic: &str,
    owned: &HashMap<i32, i32>,
) -> (Vec<(Arc<Partition>, i32)>, Vec<i32>) {
    let hosted: Vec<Arc<Partition>> = replicas
        .all()
        .into_iter()
        .filter(|p| p.topic == topic)
        .collect();
    let mut to_load = Vec::new();
    let mut lost = Vec::new();
    for p in &hosted {
        let a = p.assignment();
        let held = owned.get(&p.index);
        if p.is_leader() {
            if held != Some(&a.leader_epoch) {
                to_load.push((p.clone(), a.leader_epoch));
            }
        } else if held.is_some() {
            lost.push(p.index);
        }
    }
    for &index in owned.keys() {
        if !hosted.iter().any(|p| p.index == index) {
            lost.push(index);
        }
    }
    (to_load, lost)
}

fn quota(config: &BrokerConfig) -> RateWindow {
    let r = &config.replication;
    RateWindow::new(r.quota_window_ms, r.quota_windows)
}

pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

impl ReplicaManager {
    pub fn new(config: &BrokerConfig) -> ReplicaManager {
        let (appended, _) = watch::channel(0);
        ReplicaManager {
            node_id: config.node_id,
            data_dir: config.data_dir.clone(),
            config: config.clone(),
            effective: RwLock::new((config.explicit.clone(), Arc::new(config.clone()))),
            partitions: RwLock::new(BTreeMap::new()),
            reconcile_lock: Mutex::new(None),
            prepared: Mutex::new(HashMap::new()),
            appended,
            followers_changed: watch::channel(0).0,
            checkpoint: Mutex::new(crate::replication::checkpoint::read(&config.data_dir)),
            checkpoint_written: Mutex::new(None),
            leader_quota: Mutex::new(quota(config)),
            follower_quota: Mutex::new(quota(config)),
        }
    }

    /// The broker configuration in force: static settings with dynamic ones on top.
    pub fn config(&self) -> Arc<BrokerConfig> {
        self.effective.read().1.clone()
    }

    /// Rebuilds the configuration in force from `image` when its dynamic broker configs
    /// changed. They were validated when set; should one fail now (a value an older Fjord
    /// accepted) the previous configuration stays, and the failure is logged.
    fn refresh_config(&self, image: &MetadataImage) -> Arc<BrokerConfig> {
        let props = crate::dynamic_config::effective_props(&self.config, image, None);
        if let Some(current) = {
            let e = self.effective.read();
            (e.0 == props).then(|| e.1.clone())
        } {
            return current;
        }
        match BrokerConfig::from_props(&props) {
            Ok(c) => {
                let c = Arc::new(c);
                *self.effective.write() = (props, c.clone());
                tracing::info!("dynamic broker configs applied");
                c
            }
            Err(e) => {
                tracing::error!(error = %e, "dynamic broker configs are invalid; keeping the previous ones");
                self.config()
            }
        }
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    pub fn subscribe_followers(&self) -> watch::Receiver<u64> {
        self.followers_changed.subscribe()
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    fn checkpointed_high_watermark(&self, topic: &str, partition: i32) -> Option<i64> {
        self.checkpoint
            .lock()
            .get(&(topic.to_string(), partition))
            .copied()
    }

    /// Writes every partition's high watermark to the checkpoint file, atomically.
    pub fn checkpoint_high_watermarks(&self) -> Result<(), BrokerError> {
        let entries: Vec<(String, i32, i64)> = self
            .all()
            .iter()
            .map(|p| (p.topic.clone(), p.index, p.high_watermark()))
            .collect();
        // Written only when something moved: an idle broker costs no fsyncs.
        let mut written = self.checkpoint_written.lock();
        if written.as_ref() == Some(&entries) {
            return Ok(());
        }
        crate::replication::checkpoint::write(&self.data_dir, &entries)?;
        *written = Some(entries);
        Ok(())
    }

    /// Wakes every fetch waiting for data.
    pub fn notify_append(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Brings the hosted partitions in line with the metadata image: opens logs for new
    /// partitions, applies config and leadership changes, deletes logs of removed topics.
    pub fn reconcile(&self, image: &MetadataImage) -> Result<(), BrokerError> {
        let mut reconciled = self.reconcile_lock.lock();
        // An image no newer than the last one applied changes nothing: the broker's own
        // reconcile after a change and the metadata follower's for the same change do the
        // work once.
        if reconciled.is_some_and(|newest| image.offset <= newest) {
            tracing::debug!(
                offset = image.offset,
                "skipping a reconcile with an image already applied"
            );
            return Ok(());
        }
        let config = self.refresh_config(image);
        let mut wanted = BTreeMap::new();
        for topic in image.topics.values() {
            for p in &topic.partitions {
                if p.replicas.contains(&self.node_id) {
                    wanted.insert((topic.name.clone(), p.partition), (topic, p));
                }
            }
        }

        let current: Vec<_> = self.partitions.read().keys().cloned().collect();
        for key in current {
            let stale = match (wanted.get(&key), self.get(&key.0, key.1)) {
                (Some((topic, _)), Some(existing)) => existing.topic_id != topic.topic_id,
                _ => true,
            };
            if stale {
                // Released before the files go: produce and fetch take this lock, and the
                // removal fsyncs.
                let removed = self.partitions.write().remove(&key);
                if let Some(p) = removed {
                    self.remove_partition(p)?;
                }
            }
        }

        let mut opened = RecoveryTotals::default();
        let mut leadership_changed = false;
        for ((name, index), (topic, p)) in &wanted {
            let log_config = topic_config::log_config(&config, &topic.configs);
            let delete_retention = topic_config::has_delete_policy(&config, &topic.configs);
            if let Some(existing) = self.get(name, *index) {
                if existing.log.config() != log_config {
                    existing.log.update_config(log_config);
                }
                existing
                    .delete_retention
                    .store(delete_retention, Ordering::Release);
                existing.set_throttles(&topic.configs, self.node_id);
                let leo = existing.log.log_end_offset();
                let became = existing.update(|state| {
                    let became = state.apply(Assignment::from(*p), leo, crate::state::now_ms());
                    // Under the lock, so no append of the new term comes first.
                    if became && state.is_leader() {
                        existing.log.start_epoch(p.leader_epoch);
                    }
                    became
                });
                if became {
                    let role = if p.leader == self.node_id {
                        "leader"
                    } else {
                        "follower"
                    };
                    tracing::info!(topic = %name, partition = index, leader = p.leader, leader_epoch = p.leader_epoch, "now {role}");
                    leadership_changed = true;
                }
                continue;
            }
            let prepared = self.prepared.lock().remove(&(name.clone(), *index));
            let log = match prepared {
                Some((id, log)) if id == topic.topic_id => log,
                _ => {
                    let dir = partition_dir(&self.data_dir, name, *index);
                    if prepare_dir(&dir, name, &topic.topic_id)? {
                        sync_dir(&self.data_dir)?;
                    }
                    Log::open(&dir, log_config)?
                }
            };
            opened.add(log.recovery_summary());
            let leo = log.log_end_offset();
            // One replica: everything in its log was acknowledged. Several: only what
            // the checkpoint proves committed, until the followers show more.
            let hw = if p.replicas.len() <= 1 {
                leo
            } else {
                self.checkpointed_high_watermark(name, *index)
                    .unwrap_or(log.log_start_offset())
                    .clamp(log.log_start_offset(), leo)
            };
            let state = ReplicaState::new(
                self.node_id,
                Assignment::from(*p),
                hw,
                leo,
                crate::state::now_ms(),
            );
            if state.is_leader() {
                log.start_epoch(p.leader_epoch);
            }
            leadership_changed = true;
            let partition = Arc::new(Partition::new(
                name,
                topic.topic_id,
                *index,
                log,
                state,
                delete_retention,
            ));
            partition.set_throttles(&topic.configs, self.node_id);
            self.partitions
                .write()
                .insert((name.clone(), *index), partition);
        }
        opened.report();
        self.remove_strays(&wanted)?;
        *reconciled = Some(image.offset);
        if leadership_changed {
            // Fetchers re-read which partitions they copy, and from whom.
            self.followers_changed
                .send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(())
    }

    /// Makes sure this broker can host the partitions a metadata change is about to
    /// create, before it is committed: creates each directory assigned here, writes its
    /// `partition.metadata` and opens its log. On any failure (a directory that cannot be
    /// made, no file descriptors left) everything prepared by this call is undone and the
    /// error is returned, so the change is refused instead of being answered as created
    /// and leaving a metadata log this broker could not start from.
    pub fn prepare_partitions(
        &self,
        topic: &str,
        configs: &BTreeMap<String, String>,
        records: &[MetadataRecord],
    ) -> Result<(), BrokerError> {
        let _guard = self.reconcile_lock.lock();
        let log_config = topic_config::log_config(&self.config(), configs);
        let mut opened: Vec<(i32, Uuid, Log)> = Vec::new();
        let mut failure = None;
        // New directories' entries in the data directory are made durable by one fsync
        // after the loop, not one per partition: creating a topic costs two fsyncs a
        // partition (its partition.metadata and its directory), which matters on disks
        // where an fsync takes tens of milliseconds.
        let mut created_any = false;
        for r in records {
            let MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                ..
            } = r
            else {
                continue;
            };
            if !replicas.contains(&self.node_id) {
                continue;
            }
            let dir = partition_dir(&self.data_dir, topic, *partition);
            let result = prepare_dir(&dir, topic, topic_id).and_then(|created| {
                created_any |= created;
                Log::open(&dir, log_config.clone()).map_err(BrokerError::from)
            });
            match result {
                Ok(log) => opened.push((*partition, *topic_id, log)),
                Err(e) => {
                    failure = Some(BrokerError::Kafka(
                        code::KAFKA_STORAGE_ERROR,
                        format!(
                            "Cannot create partition {topic}-{partition} on broker {}: {e}",
                            self.node_id
                        ),
                    ));
                    break;
                }
            }
        }
        if failure.is_none() && created_any {
            if let Err(e) = sync_dir(&self.data_dir) {
                failure = Some(BrokerError::Kafka(
                    code::KAFKA_STORAGE_ERROR,
                    format!(
                        "Cannot create topic {topic} on broker {}: {e}",
                        self.node_id
                    ),
                ));
            }
        }
        if let Some(e) = failure {
            for (partition, _, log) in opened {
                let dir = log.dir().to_path_buf();
                drop(log);
                if let Err(err) = delete_dir(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %err, "could not remove a partition directory prepared for a refused creation");
                }
                tracing::debug!(topic, partition, "undid a prepared partition");
            }
            return Err(e);
        }
        let mut prepared = self.prepared.lock();
        for (partition, topic_id, log) in opened {
            prepared.insert((topic.to_string(), partition), (topic_id, log));
        }
        Ok(())
    }

    /// Undoes what `prepare_partitions` did for `topic` when the commit did not happen.
    pub fn discard_prepared(&self, topic: &str) {
        let _guard = self.reconcile_lock.lock();
        let mut prepared = self.prepared.lock();
        let keys: Vec<_> = prepared
            .keys()
            .filter(|(t, _)| t == topic)
            .cloned()
            .collect();
        for key in keys {
            if let Some((_, log)) = prepared.remove(&key) {
                let dir = log.dir().to_path_buf();
                drop(log);
                if let Err(e) = delete_dir(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a partition directory prepared for a failed creation");
                }
            }
        }
    }

    /// Removes the data of a partition whose topic was deleted (an explicit DeleteTopics)
    /// or that a reassignment moved to other brokers.
    fn remove_partition(&self, p: Arc<Partition>) -> Result<(), BrokerError> {
        tracing::info!(topic = %p.topic, partition = p.index, "deleting partition");
        p.update(|s| s.stop());
        // Readers holding the partition keep their open files; the directory goes now.
        delete_dir(p.log.dir())
    }

    /// Handles partition directories the image does not account for: left by a topic
    /// deleted while the broker was down, by a crash between committing a delete and
    /// removing the files, or by a damaged metadata log. None is deleted, because the
    /// image itself may be what is wrong: each is renamed aside as a stray for an operator
    /// to inspect. Directories left half-deleted by an explicit delete (`-delete`) are
    /// finished off. Only directories Fjord made (they hold `partition.metadata`) are
    /// touched.
    fn remove_strays(
        &self,
        wanted: &BTreeMap<
            (String, i32),
            (
                &fjord_controller::TopicImage,
                &fjord_controller::PartitionImage,
            ),
        >,
    ) -> Result<(), BrokerError> {
        let entries = match fs::read_dir(&self.data_dir) {
            Ok(e) => e,
            Err(e) => {
                return Err(BrokerError::io(
                    format!("list {}", self.data_dir.display()),
                    e,
                ))
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.join(PARTITION_METADATA).is_file() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(DELETE_SUFFIX) {
                tracing::info!(dir = %path.display(), "finishing the removal of a deleted partition");
                remove_dir(&path)?;
                continue;
            }
            let Some((topic, index)) = parse_partition_dir(name) else {
                continue;
            };
            let key = (topic, index);
            // A prepared directory belongs to a creation being committed right now.
            if !wanted.contains_key(&key) && !self.prepared.lock().contains_key(&key) {
                let aside = rename_aside(&path, STRAY_SUFFIX)?;
                tracing::warn!(
                    dir = %path.display(),
                    renamed_to = %aside.display(),
                    "partition directory is not in the metadata image; kept aside as a stray, not deleted"
                );
            }
        }
        Ok(())
    }

    /// Flushes and closes every log so the next start skips recovery.
    pub fn shutdown(&self) {
        for p in self.all() {
            if let Err(e) = p.log.close() {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "flush at shutdown failed");
            }
        }
        if let Err(e) = self.checkpoint_high_watermarks() {
            tracing::error!(error = %e, "high watermark checkpoint at shutdown failed");
        }
    }

    /// Retention: deletes expired segments; run every log.retention.check.interval.ms.
    pub fn apply_retention(&self, now_ms: i64) {
        for p in self.all() {
            if !p.delete_retention.load(Ordering::Acquire) {
                continue;
            }
            match p.log.apply_retention(now_ms) {
                Ok(0) => {}
                Ok(n) => {
                    tracing::info!(topic = %p.topic, partition = p.index, segments = n, "retention deleted segments")
                }
                Err(e) => {
                    tracing::error!(topic = %p.topic, partition = p.index, error = %e, "retention failed")
                }
            }
        }
    }

    /// Forgets idempotent producers idle for `producer.id.expiration.ms`; run every
    /// `producer.id.expiration.check.interval.ms`.
    pub fn expire_producers(&self, now_ms: i64) {
        let expiration_ms = self.config().producer_id_expiration_ms;
        for p in self.all() {
            let n = p.log.remove_expired_producers(now_ms, expiration_ms);
            if n > 0 {
                tracing::debug!(topic = %p.topic, partition = p.index, producers = n, "expired producer ids");
            }
        }
    }

    /// flush.ms policy for every partition.
    pub fn flush_due(&self, now_ms: i64) {
        for p in self.all() {
            if let Err(e) = p.log.flush_if_due(now_ms) {
                tracing::error!(topic = %p.topic, partition = p.index, error = %e, "scheduled flush failed");
            }
        }
    }

    /// DeleteRecords on one partition; returns the new log start offset.
    pub fn delete_records(&self, p: &Partition, offset: i64) -> Result<i64, BrokerError> {
        // Only the leader deletes; followers follow its log start.
        if !p.is_leader() {
            return Err(BrokerError::Kafka(
                code::NOT_LEADER_OR_FOLLOWER,
                format!("This broker is not the leader of {}-{}", p.topic, p.index),
            ));
        }
        let target = if offset == -1 {
            p.high_watermark()
        } else {
            offset
        };
        if target > p.high_watermark() || target < 0 {
            return Err(BrokerError::Kafka(
                code::OFFSET_OUT_OF_RANGE,
                format!(
                    "Cannot delete records before offset {target}: the high watermark is {}",
                    p.high_watermark()
                ),
            ));
        }
        let start = p.log.delete_records_before(target)?;
        p.refresh_high_watermark();
        Ok(start)
    }

    pub fn log_config_for(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        topic_config::log_config(&self.config(), overrides)
    }
}

/// Suffix of a partition directory being removed by an explicit topic deletion.
const DELETE_SUFFIX: &str = "-delete";
/// Suffix of a directory the image does not account for, kept for an operator to judge.
const STRAY_SUFFIX: &str = "-stray";

/// `<topic>-<partition>` → (topic, partition); `None` for any other name.
fn parse_partition_dir(name: &str) -> Option<(String, i32)> {
    let (topic, index) = name.rsplit_once('-')?;
    let index = index.parse::<i32>().ok().filter(|i| *i >= 0)?;
    Some((topic.to_string(), index))
}

fn partition_metadata(topic_id: &Uuid) -> String {
    format!("version: 0\ntopic_id: {topic_id}\n")
}

/// The topic id recorded in a `partition.metadata` file, or `None` if it is not one.
fn parse_partition_metadata(text: &str) -> Option<Uuid> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "version: 0" {
        return None;
    }
    let id = lines.next()?.trim().strip_prefix("topic_id:")?.trim();
    Uuid::parse_str(id).ok()
}

/// Whether a directory holds no partition data: besides `partition.metadata` (and its
/// temporary file), nothing but empty files. That is what a creation cut short leaves.
fn holds_no_data(dir: &Path) -> Result<bool, BrokerError> {
    let entries =
        fs::read_dir(dir).map_err(|e| BrokerError::io(format!("list {}", dir.display()), e))?;
    let meta = dir.join(PARTITION_METADATA);
    let meta_tmp = temp_path(&meta);
    for entry in entries {
        let entry = entry.map_err(|e| BrokerError::io(format!("list {}", dir.display()), e))?;
        if entry.path() == meta || entry.path() == meta_tmp {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| BrokerError::io(format!("stat {}", entry.path().display()), e))?;
        if !meta.is_file() || meta.len() > 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Makes sure `dir` is the directory of `topic`'s partition (`topic_id`), creating it if
/// missing. A directory that exists but cannot be proven to belong to this topic — its
/// `partition.metadata` missing, empty, unreadable or naming another topic id — stops the
/// start: the metadata image names this partition, so serving that directory could serve
/// another topic's data, and moving it aside would hide this topic's data. The operator
/// decides, guided by the error. Only a directory holding no data at all (a creation cut
/// short) is simply taken over.
///
/// Returns whether the directory was created; the caller then fsyncs the data directory
/// (once for many partitions). The new `partition.metadata` is made durable by the
/// directory fsync of [`Log::open`], which always follows.
fn prepare_dir(dir: &Path, topic: &str, topic_id: &Uuid) -> Result<bool, BrokerError> {
    let meta = dir.join(PARTITION_METADATA);
    let expected = partition_metadata(topic_id);
    if dir.is_dir() {
        let problem = match fs::read_to_string(&meta) {
            Ok(text) => match parse_partition_metadata(&text) {
                Some(id) if id == *topic_id => return Ok(false),
                Some(id) => format!("belongs to topic id {id}"),
                None if text.is_empty() => format!("has an empty {PARTITION_METADATA}"),
                None => format!("has an unparsable {PARTITION_METADATA}"),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                format!("has no {PARTITION_METADATA}")
            }
            Err(e) => format!("has an unreadable {PARTITION_METADATA} ({e})"),
        };
        if !holds_no_data(dir)? {
            return Err(BrokerError::Startup(format!(
                "partition directory {} {problem}, so it cannot be proven to belong to topic \
                 '{topic}' (topic id {topic_id}); refusing to use or remove it. If it holds \
                 this topic's data, write \"version: 0\" and \"topic_id: {topic_id}\" as the \
                 two lines of {}; otherwise move the directory out of the data directory.",
                dir.display(),
                meta.display(),
            )));
        }
        tracing::warn!(dir = %dir.display(), "partition directory holds no data and {problem}; taking it over", problem = problem);
    } else {
        fs::create_dir_all(dir)
            .map_err(|e| BrokerError::io(format!("create {}", dir.display()), e))?;
        write_replacing(&meta, expected.as_bytes())?;
        return Ok(true);
    }
    write_replacing(&meta, expected.as_bytes())?;
    Ok(false)
}

/// `<name>.tmp` beside `path`: where its next content is written before the rename.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces `path` so that a crash leaves either the old or the new content, never a torn
/// or empty file: temp file, fsync, rename over. The rename is durable once the caller
/// fsyncs the directory.
pub(crate) fn write_replacing(path: &Path, content: &[u8]) -> Result<(), BrokerError> {
    use std::io::Write;
    let tmp = temp_path(path);
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| BrokerError::io(format!("write {}", path.display()), e))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BrokerError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BrokerError::io(format!("fsync {}", dir.display()), e))
}

fn sync_parent(path: &Path) -> Result<(), BrokerError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => Ok(()),
    }
}

/// Renames `dir` to `<name>.<uuid><suffix>` beside it, as Kafka names stray and deleted
/// logs, and makes the rename durable. Returns the new path.
fn rename_aside(dir: &Path, suffix: &str) -> Result<PathBuf, BrokerError> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| BrokerError::Startup(format!("bad directory name {}", dir.display())))?;
    let aside = dir.with_file_name(format!("{name}.{}{suffix}", Uuid::new_v4().simple()));
    fs::rename(dir, &aside).map_err(|e| {
        BrokerError::io(
            format!("rename {} to {}", dir.display(), aside.display()),
            e,
        )
    })?;
    sync_parent(dir)?;
    Ok(aside)
}

/// Deletes a deleted topic's partition directory: renamed to `-delete` first (durably), so
/// a crash midway leaves a name no start can mistake for a live partition, then removed.
fn delete_dir(dir: &Path) -> Result<(), BrokerError> {
    if !dir.exists() {
        return Ok(());
    }
    let aside = rename_aside(dir, DELETE_SUFFIX)?;
    remove_dir(&aside)
}

fn remove_dir(dir: &Path) -> Result<(), BrokerError> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BrokerError::io(format!("remove {}", dir.display()), e)),
    }
}

/// What opening partition logs found, summed for one line at start (each log also reports
/// its own recovery).
#[derive(Default)]
struct RecoveryTotals {
    logs: usize,
    created: usize,
    recovered: usize,
    segments_scanned: usize,
    bytes_scanned: u64,
    bytes_truncated: u64,
    ignored_files: usize,
}

impl RecoveryTotals {
    fn add(&mut self, s: &fjord_log::RecoverySummary) {
        self.logs += 1;
        self.created += usize::from(s.created);
        self.recovered += usize::from(s.recovery_ran());
        self.segments_scanned += s.segments_scanned;
        self.bytes_scanned += s.bytes_scanned;
        self.bytes_truncated += s.bytes_truncated;
        self.ignored_files += s.ignored_files.len();
    }

    fn report(&self) {
        if self.logs == 0 {
            return;
        }
        if self.created == self.logs {
            tracing::debug!(logs = self.logs, "created partition logs");
            return;
        }
        if self.recovered == 0 && self.ignored_files == 0 {
            tracing::info!(
                logs = self.logs,
                "opened partition logs after a clean shutdown"
            );
            return;
        }
        tracing::info!(
            logs = self.logs,
            recovered = self.recovered,
            segments_scanned = self.segments_scanned,
            bytes_scanned = self.bytes_scanned,
            bytes_truncated = self.bytes_truncated,
            ignored_files = self.ignored_files,
            "opened partition logs; those without a clean shutdown were recovered"
        );
    }
}

/// Every storage failure of a log (`LogError::Io`, and `LogError::Offline` once an fsync
/// failed) carries KAFKA_STORAGE_ERROR as its code.
impl From<LogError> for BrokerError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::InvalidRecords { message, indexes } => {
                BrokerError::InvalidRecords(message, indexes)
            }
            e => BrokerError::Kafka(e.kafka_code(), e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn partition(dir: &Path) -> Partition {
        let assignment = Assignment {
            leader: 1,
            leader_epoch: 3,
            partition_epoch: 0,
            replicas: vec![1],
            isr: vec![1],
        };
        let state = ReplicaState::new(1, assignment, 0, 0, 0);
        let log = Log::open(dir, LogConfig::default()).unwrap();
        Partition::new("t", Uuid::new_v4(), 0, log, state, true)
    }

    /// A batch of `n` records from an idempotent producer, as a client encodes it.
    fn idempotent_batch(pid: i64, epoch: i16, first_seq: i32, n: i32) -> BytesMut {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: pid,
                producer_epoch: epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: first_seq + i,
                timestamp: 1000,
                key: None,
                value: Some(bytes::Bytes::from_static(b"v")),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .unwrap();
        buf
    }

    #[test]
    fn retried_batch_gets_its_original_offset_and_gaps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        let first = p.append(&mut idempotent_batch(7, 0, 0, 3), 0).unwrap();
        let second = p.append(&mut idempotent_batch(7, 0, 3, 2), 0).unwrap();
        assert_eq!((first.base_offset, second.base_offset), (0, 3));
        // A retry of the first batch: same answer, nothing appended.
        let retry = p.append(&mut idempotent_batch(7, 0, 0, 3), 0).unwrap();
        assert_eq!(retry.base_offset, 0);
        assert_eq!(p.log.log_end_offset(), 5);
        assert_eq!(p.high_watermark(), 5);
        // A gap in the sequence.
        let err = p.append(&mut idempotent_batch(7, 0, 9, 1), 0).unwrap_err();
        assert_eq!(err.kafka_code(), code::OUT_OF_ORDER_SEQUENCE_NUMBER);
        // A zombie with an older epoch, after the producer bumped it.
        p.append(&mut idempotent_batch(7, 1, 0, 1), 0).unwrap();
        let err = p.append(&mut idempotent_batch(7, 0, 5, 1), 0).unwrap_err();
        assert_eq!(err.kafka_code(), code::INVALID_PRODUCER_EPOCH);
        assert_eq!(p.log.log_end_offset(), 6);
        // Another producer is independent.
        assert_eq!(
            p.append(&mut idempotent_batch(8, 0, 0, 1), 0)
                .unwrap()
                .base_offset,
            6
        );
    }

    /// A log that refuses writes (here closed; after a failed fsync it is offline the same
    /// way) answers produce with KAFKA_STORAGE_ERROR.
    #[test]
    fn offline_log_answers_produce_with_storage_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        p.append(&mut idempotent_batch(7, 0, 0, 1), 0).unwrap();
        p.log.close().unwrap();
        let err = p.append(&mut idempotent_batch(7, 0, 1, 1), 0).unwrap_err();
        assert_eq!(err.kafka_code(), code::KAFKA_STORAGE_ERROR);
        let offline = LogError::Offline {
            dir: "t-0".into(),
            reason: "fsync failed".into(),
        };
        assert_eq!(
            BrokerError::from(offline).kafka_code(),
            code::KAFKA_STORAGE_ERROR
        );
    }

    #[test]
    fn leader_epoch_checks_follow_kip_320() {
        let dir = tempfile::tempdir().unwrap();
        let p = partition(dir.path());
        assert_eq!(p.check_leader_epoch(-1), Ok(3));
        assert_eq!(p.check_leader_epoch(3), Ok(3));
        assert_eq!(p.check_leader_epoch(4), Err(code::UNKNOWN_LEADER_EPOCH));
        assert_eq!(p.check_leader_epoch(2), Err(code::FENCED_LEADER_EPOCH));
        // A follower serves no client, whatever epoch it is asked at.
        p.update(|s| {
            s.apply(
                Assignment {
                    leader: 2,
                    leader_epoch: 4,
                    partition_epoch: 1,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                },
                0,
                0,
            )
        });
        assert_eq!(p.check_leader_epoch(4), Err(code::NOT_LEADER_OR_FOLLOWER));
        assert_eq!(p.check_leader_epoch(-1), Err(code::NOT_LEADER_OR_FOLLOWER));
        let err = p.append(&mut idempotent_batch(7, 0, 0, 1), 0).unwrap_err();
        assert_eq!(err.kafka_code(), code::NOT_LEADER_OR_FOLLOWER);
    }

    #[test]
    fn prepare_dir_takes_over_only_directories_without_data() {
        let tmp = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        // A creation cut short: the metadata's temporary file and an empty segment.
        let cut = tmp.path().join("t-0");
        fs::create_dir(&cut).unwrap();
        fs::write(cut.join("partition.metadata.tmp"), b"version: 0\n").unwrap();
        fs::write(cut.join("00000000000000000000.log"), b"").unwrap();
        prepare_dir(&cut, "t", &id).unwrap();
        let text = fs::read_to_string(cut.join(PARTITION_METADATA)).unwrap();
        assert_eq!(parse_partition_metadata(&text), Some(id));
        assert!(!cut.join("partition.metadata.tmp").exists());
        // Verified on the next call, not rewritten.
        prepare_dir(&cut, "t", &id).unwrap();

        // Data under another topic id, or under an unreadable metadata file: refused, and
        // the data stays exactly where it was.
        let other = tmp.path().join("t-1");
        fs::create_dir(&other).unwrap();
        fs::write(
            other.join(PARTITION_METADATA),
            partition_metadata(&Uuid::new_v4()),
        )
        .unwrap();
        fs::write(other.join("00000000000000000000.log"), b"data").unwrap();
        let err = prepare_dir(&other, "t", &id).unwrap_err().to_string();
        assert!(err.contains("belongs to topic id"), "{err}");
        fs::write(other.join(PARTITION_METADATA), b"garbage").unwrap();
        let err = prepare_dir(&other, "t", &id).unwrap_err().to_string();
        assert!(err.contains("unparsable"), "{err}");
        assert_eq!(
            fs::read(other.join("00000000000000000000.log")).unwrap(),
            b"data"
        );
    }

    #[test]
    fn an_older_image_never_undoes_a_newer_one() {
        use fjord_controller::MetadataRecord as R;
        let tmp = tempfile::tempdir().unwrap();
        let config = BrokerConfig {
            data_dir: tmp.path().to_path_buf(),
            ..BrokerConfig::default()
        };
        let replicas = ReplicaManager::new(&config);
        let mut old = MetadataImage::default();
        old.apply(&R::RegisterBroker {
            node_id: config.node_id,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
            incarnation: None,
            listeners: vec![],
        });
        let mut new = old.clone();
        let topic_id = Uuid::new_v4();
        new.apply(&R::Topic {
            name: "fresh".into(),
            topic_id,
            configs: BTreeMap::new(),
        });
        new.apply(&R::Partition {
            topic_id,
            partition: 0,
            replicas: vec![config.node_id],
            isr: vec![config.node_id],
            leader: config.node_id,
            leader_epoch: 0,
            partition_epoch: 0,
            adding_replicas: vec![],
            removing_replicas: vec![],
        });
        replicas.reconcile(&new).unwrap();
        assert!(replicas.get("fresh", 0).is_some());
        // A caller that fetched its image before the topic was created comes late.
        replicas.reconcile(&old).unwrap();
        assert!(replicas.get("fresh", 0).is_some());
        assert!(tmp.path().join("fresh-0").is_dir());
    }
}
