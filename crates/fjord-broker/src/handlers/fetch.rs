//! Fetch: returns stored batches as they are on disk, and long-polls.
//!
//! A fetch that finds fewer than `min_bytes` waits up to `max_wait_ms`, woken by the
//! replica manager's append signal the moment any partition grows — never a sleep loop.
//! Fetch sessions (KIP-227) are answered as full fetches: session id 0 tells the client
//! that no session was created, and it keeps sending full requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::code;
use crate::state::{now_ms, BrokerState};

/// A fetch from a client that sent a session id we never handed out.
const INVALID_SESSION: i32 = 0;

struct Wanted {
    topic: TopicName,
    topic_id: Uuid,
    /// Resolved name, or the error every partition of this topic gets.
    resolved: Result<String, i16>,
    partitions: Vec<WantedPartition>,
}

struct WantedPartition {
    index: i32,
    fetch_offset: i64,
    max_bytes: i32,
    leader_epoch: i32,
    /// A follower's epoch of its last fetched batch (KIP-320), -1 from consumers.
    last_fetched_epoch: i32,
    /// A follower's log start offset (Fetch v5+), for DeleteRecords' low watermark.
    log_start_offset: i64,
}

/// Where a follower's log departs from the leader's: the largest epoch both have, and
/// where the leader's copy of it ends.
#[derive(Clone, Copy)]
struct Divergence {
    epoch: i32,
    end_offset: i64,
}

pub async fn handle(state: &Arc<BrokerState>, req: FetchRequest, version: i16) -> FetchResponse {
    if req.session_id != INVALID_SESSION {
        return FetchResponse::default()
            .with_error_code(code::FETCH_SESSION_ID_NOT_FOUND)
            .with_session_id(INVALID_SESSION);
    }
    let image = state.controller.image();
    // A partition listed more than once is answered once, for its first listing: a
    // request must not multiply the bytes it gets back by repeating itself.
    let mut seen = std::collections::HashSet::new();
    let wanted: Vec<Wanted> = req
        .topics
        .into_iter()
        .map(|t| {
            let key = t.topic.0.clone();
            let resolved = if version >= 13 {
                image
                    .topic_by_id(&t.topic_id)
                    .map(|t| t.name.clone())
                    .ok_or(code::UNKNOWN_TOPIC_ID)
            } else {
                Ok(t.topic.0.to_string())
            };
            Wanted {
                topic: t.topic,
                topic_id: t.topic_id,
                resolved,
                partitions: t
                    .partitions
                    .iter()
                    .filter(|p| seen.insert((t.topic_id, key.clone(), p.partition)))
                    .map(|p| WantedPartition {
                        index: p.partition,
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        leader_epoch: p.current_leader_epoch,
                        last_fetched_epoch: if version >= 12 {
                            p.last_fetched_epoch
                        } else {
                            -1
                        },
                        log_start_offset: p.log_start_offset,
                    })
                    .collect(),
            }
        })
        .collect();

    // Never more than fetch.max.bytes, whatever the client asks (KIP-74 may still return
    // one whole batch beyond it, so a large batch cannot stall a consumer).
    let max_bytes = super::fetch_response_limit(state, req.max_bytes);
    let min_bytes = req.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(req.max_wait_ms.max(0) as u64);
    // A follower (Kafka's replica id, in the body before v15 and in ReplicaState after)
    // reads up to the log end, and its fetch offset tells the leader how far it is.
    let replica_id = if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    };
    let divergent = if replica_id >= 0 {
        record_follower(state, &wanted, replica_id)
    } else {
        HashMap::new()
    };
    let config = state.replicas.config();
    // KIP-392: a consumer that says where it is (Fetch v11+, `client.rack`) may be sent
    // to a follower in its rack, unless the leader is there itself.
    let client_rack = (version >= 11 && !req.rack_id.is_empty()).then(|| req.rack_id.to_string());
    let rack_aware = config.replication.rack_aware_reads
        && client_rack.is_some()
        && config.rack.as_deref() != client_rack.as_deref();
    let reader = Reader {
        // read_committed (Fetch v4+): up to the last stable offset, with the aborted
        // transactions of what is returned.
        read_committed: version >= 4 && req.isolation_level == 1 && replica_id < 0,
        replica: replica_id >= 0,
        replica_id,
        divergent: &divergent,
        throttle_rate: config.replication.leader_throttle_rate,
        from_followers: version >= 11,
        near_client: rack_aware.then(|| {
            image
                .brokers
                .values()
                .filter(|b| !b.fenced && b.rack.is_some() && b.rack == client_rack)
                .map(|b| b.node_id)
                .collect()
        }),
    };
    let mut appended = state.replicas.subscribe();
    loop {
        // Mark the current state as seen before reading, so an append that lands between
        // the read and the wait still wakes us.
        appended.borrow_and_update();
        let (responses, bytes, errors) = read_once(state, &wanted, max_bytes, version, &reader);
        if bytes >= min_bytes || errors {
            return response(responses);
        }
        tokio::select! {
            changed = appended.changed() => {
                if changed.is_err() {
                    return response(responses);
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                let (responses, _, _) = read_once(state, &wanted, max_bytes, version, &reader);
                return response(responses);
            }
        }
    }
}

fn response(responses: Vec<FetchableTopicResponse>) -> FetchResponse {
    FetchResponse::default()
        .with_error_code(code::NONE)
        .with_session_id(INVALID_SESSION)
        .with_responses(responses)
}

/// How one fetch reads: a follower's reads go to the log end, and partitions where its
/// log diverged get the diverging epoch instead of records.
struct Reader<'a> {
    read_committed: bool,
    replica: bool,
    replica_id: i32,
    divergent: &'a HashMap<(String, i32), Divergence>,
    /// `leader.replication.throttled.rate` (`u64::MAX`: none).
    throttle_rate: u64,
    /// A consumer that may read from followers (KIP-392, Fetch v11+).
    from_followers: bool,
    /// With the rack-aware replica selector, the live brokers in the consumer's rack
    /// (when the leader is not there itself).
    near_client: Option<Vec<i32>>,
}

impl Reader<'_> {
    /// Whether this read of `p` is a follower's that the leader throttle covers.
    fn throttled(&self, p: &crate::replica::Partition) -> bool {
        self.replica && self.throttle_rate != u64::MAX && p.leader_throttles(self.replica_id)
    }
}

/// On the leader, before a follower's fetch is served: checks each partition's log
/// against the follower's (its last fetched epoch must end at or after its fetch
/// offset here, KIP-320) and, where it agrees, records the follower's position, which
/// may advance the high watermark or bring it back into the ISR. Returns the partitions
/// where it diverges.
fn record_follower(
    state: &Arc<BrokerState>,
    wanted: &[Wanted],
    replica_id: i32,
) -> HashMap<(String, i32), Divergence> {
    let mut divergent = HashMap::new();
    let mut moved = false;
    for w in wanted {
        let Ok(name) = &w.resolved else { continue };
        for wp in &w.partitions {
            let Some(p) = state.replicas.get(name, wp.index) else {
                continue;
            };
            if p.check_leader_epoch(wp.leader_epoch).is_err() {
                continue;
            }
            if wp.last_fetched_epoch >= 0 {
                if let Some((epoch, end)) = p.log.end_offset_for_epoch(wp.last_fetched_epoch) {
                    if epoch != wp.last_fetched_epoch || end < wp.fetch_offset {
                        divergent.insert(
                            (name.clone(), wp.index),
                            Divergence {
                                epoch,
                                end_offset: end,
                            },
                        );
                        continue;
                    }
                }
            }
            let leo = p.log.log_end_offset();
            if wp.fetch_offset > leo {
                // Answered OFFSET_OUT_OF_RANGE by the read; it says nothing of the ISR.
                continue;
            }
            let (hw_moved, proposal) = p.update(|s| {
                s.follower_log_start(replica_id, wp.log_start_offset);
                s.follower_fetched(replica_id, wp.fetch_offset, leo, now_ms())
            });
            moved |= hw_moved;
            if let Some(proposal) = proposal {
                crate::replication::propose(state, &p, proposal);
            }
        }
    }
    if moved {
        // Consumers long-polling for data below the new high watermark.
        state.replicas.notify_append();
    }
    divergent
}

/// One pass over the requested partitions: (responses, bytes returned, any error).
fn read_once(
    state: &BrokerState,
    wanted: &[Wanted],
    max_bytes: usize,
    version: i16,
    reader: &Reader,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for wp in &w.partitions {
            let (index, offset, partition_max, leader_epoch) =
                (wp.index, wp.fetch_offset, wp.max_bytes, wp.leader_epoch);
            let data = match &w.resolved {
                Err(c) => error(index, *c),
                Ok(name) => match state.replicas.get(name, index) {
                    None => error(index, state.missing_partition_code(name, index)),
                    Some(p) => {
                        let hw = p.high_watermark();
                        let lso = p.log.last_stable_offset(hw);
                        let start = p.log.log_start_offset();
                        let base = PartitionData::default()
                            .with_partition_index(index)
                            .with_high_watermark(hw)
                            .with_last_stable_offset(lso)
                            .with_log_start_offset(start)
                            .with_aborted_transactions(None);
                        let divergence = reader.divergent.get(&(name.clone(), index));
                        let epoch_check = if reader.from_followers && !reader.replica {
                            p.check_read_epoch(leader_epoch)
                        } else {
                            p.check_leader_epoch(leader_epoch)
                        };
                        let preferred = match &reader.near_client {
                            Some(near) if epoch_check.is_ok() => {
                                p.preferred_read_replica(offset, |r| near.contains(&r))
                            }
                            _ => None,
                        };
                        if let Err(c) = epoch_check {
                            base.with_error_code(c).with_records(Some(Bytes::new()))
                        } else if let Some(r) = preferred {
                            // Read there instead: no records, and the client switches.
                            base.with_error_code(code::NONE)
                                .with_preferred_read_replica(BrokerId(r))
                                .with_records(Some(Bytes::new()))
                        } else if let Some(d) = divergence {
                            base.with_error_code(code::NONE)
                                .with_diverging_epoch(
                                    EpochEndOffset::default()
                                        .with_epoch(d.epoch)
                                        .with_end_offset(d.end_offset),
                                )
                                .with_records(Some(Bytes::new()))
                        } else {
                            // Consumers read what is committed; followers copy everything.
                            let upto = if reader.replica {
                                p.log.log_end_offset()
                            } else if reader.read_committed {
                                lso
                            } else {
                                hw
                            };
                            let budget = (partition_max.max(0) as usize)
                                .min(max_bytes.saturating_sub(total));
                            // KIP-74: the first batch returned is whole even when larger than
                            // the limits, so one big batch can never stall a consumer.
                            let min_one = total == 0;
                            let throttled = reader.throttled(&p);
                            let quota = &state.replicas.leader_quota;
                            if throttled && quota.lock().exceeded(reader.throttle_rate, now_ms()) {
                                // Over the throttle: nothing for this follower this time;
                                // it asks again after its long poll.
                                base.with_error_code(code::NONE)
                                    .with_records(Some(Bytes::new()))
                            } else {
                                match p.log.read(offset, budget, upto, min_one) {
                                    Ok(read) => {
                                        total += read.bytes.len();
                                        if throttled {
                                            quota.lock().record(read.bytes.len() as u64, now_ms());
                                        }
                                        let aborted = reader
                                            .read_committed
                                            .then(|| aborted_in(&p.log, offset, &read.bytes));
                                        base.with_error_code(code::NONE)
                                            .with_aborted_transactions(aborted)
                                            .with_records(Some(read.bytes))
                                    }
                                    Err(e) => base
                                        .with_error_code(e.kafka_code())
                                        .with_records(Some(Bytes::new())),
                                }
                            }
                        }
                    }
                },
            };
            // An error, or a consumer sent elsewhere, is answered without waiting.
            any_error |= data.error_code != code::NONE || data.preferred_read_replica.0 >= 0;
            partitions.push(data);
        }
        let mut topic = FetchableTopicResponse::default().with_partitions(partitions);
        if version >= 13 {
            topic = topic.with_topic_id(w.topic_id);
        } else {
            topic = topic.with_topic(w.topic.clone());
        }
        out.push(topic);
    }
    (out, total, any_error)
}

/// The aborted transactions that the batches read from `offset` overlap, for the consumer
/// to drop their records (an empty list when there are none, as Kafka answers).
fn aborted_in(log: &fjord_log::Log, offset: i64, bytes: &Bytes) -> Vec<AbortedTransaction> {
    let end = fjord_log::batch::iter(bytes)
        .filter_map(Result::ok)
        .last()
        .map_or(offset, |(h, _)| h.last_offset() + 1);
    if end <= offset {
        return Vec::new();
    }
    log.aborted_txns(offset, end)
        .into_iter()
        .map(|t| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(t.producer_id))
                .with_first_offset(t.first_offset)
        })
        .collect()
}

fn error(index: i32, c: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(c)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_aborted_transactions(None)
        .with_records(Some(Bytes::new()))
}
