//! Follower fetchers: for each broker this one follows, `num.replica.fetchers` tasks, each
//! copying its share of the partitions led there with one long-polling Fetch at a time,
//! as Kafka's ReplicaFetcherThread does. The follower appends the leader's batches with
//! their offsets and epochs, fsyncs them (unless `replica.fsync.enable=false`) before it
//! asks for more, and so before the leader counts them for acks=all; it truncates a
//! divergent tail when the leader answers with a diverging epoch.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use crate::broker_client;
use crate::error::code;
use crate::replica::Partition;
use crate::security::client::{BrokerStream, ConnectError};
use crate::state::{now_ms, BrokerState};

/// Fetch v12: topic names, the last fetched epoch and diverging epochs (KIP-320), the
/// replica id in the request body.
const FETCH_VERSION: i16 = 12;
/// How long a fetcher with only throttled partitions waits before looking again.
const THROTTLED_PAUSE: Duration = Duration::from_millis(100);

/// Keeps one fetcher task per (leader, slot) that has partitions to copy; a task whose
/// partitions all moved away ends by itself.
pub async fn run(state: Arc<BrokerState>) {
    let mut changed = state.replicas.subscribe_followers();
    let mut tasks: HashMap<(i32, u32), JoinHandle<()>> = HashMap::new();
    loop {
        changed.borrow_and_update();
        tasks.retain(|_, t| !t.is_finished());
        let slots = state.config.replication.fetchers.max(1);
        for p in state.replicas.all() {
            let Some(leader) = source(&state, &p) else {
                continue;
            };
            let key = (leader, slot(&p, slots));
            tasks
                .entry(key)
                .or_insert_with(|| tokio::spawn(fetch_from(state.clone(), key.0, key.1)));
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            // Also a periodic look: a fetcher that ended on an error is restarted.
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The broker `p` copies from, if this broker follows it.
fn source(state: &BrokerState, p: &Partition) -> Option<i32> {
    if p.is_leader() || p.log.is_offline() {
        return None;
    }
    let a = p.assignment();
    (a.leader >= 0 && a.leader != state.node_id() && a.replicas.contains(&state.node_id()))
        .then_some(a.leader)
}

fn slot(p: &Partition, slots: u32) -> u32 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&p.topic, p.index).hash(&mut h);
    (h.finish() % slots as u64) as u32
}

/// One fetcher: copies the partitions of `slot` led by `leader` until there are none.
async fn fetch_from(state: Arc<BrokerState>, leader: i32, slot_no: u32) {
    let cfg = state.config.replication.clone();
    let backoff = Duration::from_millis(cfg.fetch_backoff_ms);
    let mut conn: Option<BrokerStream> = None;
    // A refused login or certificate is logged once per distinct reason, not per retry.
    let mut last_refusal: Option<String> = None;
    let mut correlation: i32 = 0;
    tracing::debug!(leader, slot = slot_no, "fetcher started");
    loop {
        let slots = state.config.replication.fetchers.max(1);
        let partitions: Vec<Arc<Partition>> = state
            .replicas
            .all()
            .into_iter()
            .filter(|p| source(&state, p) == Some(leader) && slot(p, slots) == slot_no)
            .collect();
        if partitions.is_empty() {
            tracing::debug!(
                leader,
                slot = slot_no,
                "fetcher stopped: nothing left to copy"
            );
            return;
        }
        // Over the follower throttle: copy only what the throttle does not cover (in-sync
        // replicas, unlisted partitions) until the rate falls back.
        let rate = state.replicas.config().replication.follower_throttle_rate;
        let partitions: Vec<Arc<Partition>> = if rate != u64::MAX
            && state
                .replicas
                .follower_quota
                .lock()
                .exceeded(rate, now_ms())
        {
            partitions
                .into_iter()
                .filter(|p| !p.follower_throttled(state.node_id()))
                .collect()
        } else {
            partitions
        };
        if partitions.is_empty() {
            tokio::time::sleep(THROTTLED_PAUSE).await;
            continue;
        }
        let stream = match &mut conn {
            Some(s) => s,
            None => match broker_client::connect(&state, leader).await {
                Ok(s) => {
                    last_refusal = None;
                    conn.insert(s)
                }
                Err(ConnectError::Refused(why)) => {
                    if last_refusal.as_deref() != Some(why.as_str()) {
                        tracing::warn!(leader, "replica fetcher cannot connect: {why}");
                        last_refusal = Some(why);
                    }
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                Err(e) => {
                    tracing::debug!(leader, error = %e, "cannot reach the leader");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            },
        };
        // The epoch each partition is fetched in: an answer is applied only if the
        // partition still follows this leader in it when the answer arrives.
        let epochs: Vec<i32> = partitions
            .iter()
            .map(|p| p.assignment().leader_epoch)
            .collect();
        let request = build_request(&state, &partitions, &epochs);
        correlation = correlation.wrapping_add(1);
        let wait = Duration::from_millis(cfg.fetch_wait_max_ms.max(0) as u64);
        let limit = state.config.socket_request_max_bytes;
        let answer = tokio::time::timeout(
            wait + Duration::from_secs(30),
            broker_client::call::<_, FetchResponse, _>(
                stream,
                "fjord-replica-fetcher",
                correlation,
                &request,
                FETCH_VERSION,
                limit,
            ),
        )
        .await;
        let response = match answer {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::debug!(leader, error = %e, "fetch from the leader failed");
                conn = None;
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(_) => {
                tracing::debug!(leader, "fetch from the leader timed out");
                conn = None;
                continue;
            }
        };
        let st = state.clone();
        let applied = tokio::task::spawn_blocking(move || {
            apply_response(&st, leader, partitions, &epochs, response)
        })
        .await;
        match applied {
            Ok(true) => {}
            // Something needs newer metadata or a moment: do not spin.
            Ok(false) => tokio::time::sleep(backoff.min(Duration::from_millis(200))).await,
            Err(e) => {
                tracing::error!(error = %e, "applying fetched data failed");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

fn build_request(
    state: &BrokerState,
    partitions: &[Arc<Partition>],
    epochs: &[i32],
) -> FetchRequest {
    let cfg = &state.config.replication;
    let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
    for (p, &epoch) in partitions.iter().zip(epochs) {
        topics.entry(&p.topic).or_default().push(
            FetchPartition::default()
                .with_partition(p.index)
                .with_current_leader_epoch(epoch)
                .with_fetch_offset(p.log.log_end_offset())
                .with_last_fetched_epoch(p.log.latest_epoch().unwrap_or(-1))
                .with_log_start_offset(p.log.log_start_offset())
                .with_partition_max_bytes(cfg.fetch_max_bytes),
        );
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(state.node_id()))
        .with_max_wait_ms(cfg.fetch_wait_max_ms)
        .with_min_bytes(1)
        .with_max_bytes(cfg.fetch_response_max_bytes)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Appends (or truncates) what the leader sent. Returns false when some partition needs
/// newer metadata or hit an error, so the fetcher pauses before the next round.
fn apply_response(
    state: &BrokerState,
    leader: i32,
    partitions: Vec<Arc<Partition>>,
    epochs: &[i32],
    response: FetchResponse,
) -> bool {
    if response.error_code != code::NONE {
        tracing::debug!(code = response.error_code, "the leader refused the fetch");
        return false;
    }
    let by_key: HashMap<(&str, i32), (&Arc<Partition>, i32)> = partitions
        .iter()
        .zip(epochs)
        .map(|(p, &epoch)| ((p.topic.as_str(), p.index), (p, epoch)))
        .collect();
    let mut smooth = true;
    let mut hw_moved = false;
    let rate = state.replicas.config().replication.follower_throttle_rate;
    for topic in &response.responses {
        for data in &topic.partitions {
            let Some(&(p, epoch)) = by_key.get(&(topic.topic.0.as_str(), data.partition_index))
            else {
                continue;
            };
            if rate != u64::MAX && p.follower_throttled(state.node_id()) {
                let bytes = data.records.as_ref().map_or(0, |r| r.len()) as u64;
                state.replicas.follower_quota.lock().record(bytes, now_ms());
            }
            let applied = p.as_follower_of(leader, epoch, || apply_partition(state, p, data));
            match applied {
                None => {
                    tracing::debug!(topic = %p.topic, partition = p.index, "dropped a fetch answer from a former leader");
                }
                Some(Ok(Some(truncated_to))) => {
                    // A log that started over holds nothing below its start to wait for.
                    let start = p.log.log_start_offset();
                    p.update(|s| {
                        s.truncated(truncated_to);
                        s.raise_high_watermark(start);
                    })
                }
                Some(Ok(None)) => {
                    let leo = p.log.log_end_offset();
                    hw_moved |= p.update(|s| s.follower_high_watermark(data.high_watermark, leo));
                }
                Some(Err(e)) => {
                    tracing::warn!(topic = %p.topic, partition = p.index, "replication: {e}");
                    smooth = false;
                }
            }
        }
    }
    if hw_moved {
        // Consumers reading from this follower (KIP-392) wait for its high watermark.
        state.replicas.notify_append();
    }
    smooth
}

/// Appends one partition's records, or truncates it on a diverging epoch (returning
/// where it now ends). Runs with the partition's leadership held still.
fn apply_partition(
    state: &BrokerState,
    p: &Partition,
    data: &PartitionData,
) -> Result<Option<i64>, String> {
    match data.error_code {
        code::NONE => {}
        // Our log ends below the leader's start (a new replica, or one away longer than
        // retention): what lies below is gone everywhere, so start over where the leader's
        // log starts. Above the leader's end it is a divergence, which epochs settle.
        code::OFFSET_OUT_OF_RANGE
            if data.log_start_offset > p.log.log_end_offset() && data.log_start_offset >= 0 =>
        {
            tracing::info!(topic = %p.topic, partition = p.index, log_end = p.log.log_end_offset(), leader_start = data.log_start_offset, "behind the leader's log start: starting over there");
            p.log
                .truncate_fully_and_start_at(data.log_start_offset)
                .map_err(|e| format!("starting over at the leader's log start failed: {e}"))?;
            return Ok(Some(p.log.log_end_offset()));
        }
        code::NOT_LEADER_OR_FOLLOWER | code::FENCED_LEADER_EPOCH | code::UNKNOWN_LEADER_EPOCH => {
            // The leader moved, or one of us has older metadata: the image will tell.
            return Err(format!(
                "the leader answered code {}; waiting for metadata",
                data.error_code
            ));
        }
        c => return Err(format!("the leader answered error code {c}")),
    }
    if data.diverging_epoch.epoch >= 0 {
        return truncate(
            p,
            data.diverging_epoch.epoch,
            data.diverging_epoch.end_offset,
        )
        .map(Some);
    }
    let records = data.records.clone().unwrap_or_default();
    if !records.is_empty() {
        start_at_first_batch(p, &records)?;
        p.log
            .append_as_follower(&records)
            .map_err(|e| format!("appending the leader's batches failed: {e}"))?;
        if state.config.replication.fsync {
            p.log
                .flush()
                .map_err(|e| format!("fsync of copied batches failed: {e}"))?;
        }
    }
    // Records the leader deleted (DeleteRecords) go here too, as far as this copy has
    // them; retention by time and size each replica applies on its own.
    let leader_start = data.log_start_offset.min(p.log.log_end_offset());
    if leader_start > p.log.log_start_offset() {
        p.log
            .delete_records_before(leader_start)
            .map_err(|e| format!("following the leader's log start {leader_start} failed: {e}"))?;
    }
    Ok(None)
}

/// An empty log that just started over at the leader's log start may be handed a batch
/// that begins below it (the start fell inside the batch, after DeleteRecords): the log
/// starts over once more at the batch's base, so the batch is appended whole. Followed
/// by the leader's log start again right after.
fn start_at_first_batch(p: &Partition, records: &[u8]) -> Result<(), String> {
    let leo = p.log.log_end_offset();
    if leo != p.log.log_start_offset() {
        return Ok(());
    }
    let Ok(first) = fjord_log::BatchHeader::parse(records) else {
        return Ok(());
    };
    if first.base_offset < leo && first.last_offset() >= leo {
        p.log
            .truncate_fully_and_start_at(first.base_offset)
            .map_err(|e| format!("starting over at batch {}: {e}", first.base_offset))?;
    }
    Ok(())
}

/// The leader's log diverges from ours after `end_offset` of `epoch` (KIP-320): cut our
/// tail back to where both agree, and drop epochs we announced without writing in them.
/// Only uncommitted records are ever above that point. Returns the new log end.
fn truncate(p: &Partition, epoch: i32, end_offset: i64) -> Result<i64, String> {
    let target = match p.log.end_offset_for_epoch(epoch) {
        Some((_, end)) => end.min(end_offset),
        None => p.log.log_start_offset(),
    };
    let leo = p.log.log_end_offset();
    if target < leo {
        if target < p.high_watermark() {
            // Committed records are never above a divergence; if they are, an election
            // went wrong. Say so loudly, but follow the leader, as Kafka does.
            tracing::error!(topic = %p.topic, partition = p.index, target, high_watermark = p.high_watermark(), "truncating below the high watermark");
        }
        tracing::info!(topic = %p.topic, partition = p.index, from = leo, to = target, epoch, "truncating a divergent tail");
    }
    p.log
        .truncate_to(target.min(leo))
        .map_err(|e| format!("truncation to {target} failed: {e}"))?;
    Ok(p.log.log_end_offset())
}
