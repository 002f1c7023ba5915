//! Fetch: returns stored batches as they are on disk, and long-polls.
//!
//! A fetch that finds fewer than `min_bytes` waits up to `max_wait_ms`, woken by the
//! replica manager's append signal the moment any partition grows — never a sleep loop.
//! Fetch sessions (KIP-227) are answered as full fetches: session id 0 tells the client
//! that no session was created, and it keeps sending full requests.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::code;
use crate::state::BrokerState;

/// A fetch from a client that sent a session id we never handed out.
const INVALID_SESSION: i32 = 0;

struct Wanted {
    topic: TopicName,
    topic_id: Uuid,
    /// Resolved name, or the error every partition of this topic gets.
    resolved: Result<String, i16>,
    partitions: Vec<(i32, i64, i32, i32)>, // (partition, fetch offset, max bytes, leader epoch)
}

pub async fn handle(state: &BrokerState, req: FetchRequest, version: i16) -> FetchResponse {
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
                    .map(|p| {
                        (
                            p.partition,
                            p.fetch_offset,
                            p.partition_max_bytes,
                            p.current_leader_epoch,
                        )
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
    let mut appended = state.replicas.subscribe();
    loop {
        // Mark the current state as seen before reading, so an append that lands between
        // the read and the wait still wakes us.
        appended.borrow_and_update();
        let (responses, bytes, errors) = read_once(state, &wanted, max_bytes, version);
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
                let (responses, _, _) = read_once(state, &wanted, max_bytes, version);
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

/// One pass over the requested partitions: (responses, bytes returned, any error).
fn read_once(
    state: &BrokerState,
    wanted: &[Wanted],
    max_bytes: usize,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut partitions = Vec::with_capacity(w.partitions.len());
        for &(index, offset, partition_max, leader_epoch) in &w.partitions {
            let data = match &w.resolved {
                Err(c) => error(index, *c),
                Ok(name) => match state.replicas.get(name, index) {
                    None => error(index, state.missing_partition_code(name, index)),
                    Some(p) => {
                        let hw = p.high_watermark();
                        let start = p.log.log_start_offset();
                        let base = PartitionData::default()
                            .with_partition_index(index)
                            .with_high_watermark(hw)
                            .with_last_stable_offset(hw)
                            .with_log_start_offset(start)
                            .with_aborted_transactions(None);
                        if let Err(c) = p.check_leader_epoch(leader_epoch) {
                            base.with_error_code(c).with_records(Some(Bytes::new()))
                        } else {
                            let budget = (partition_max.max(0) as usize)
                                .min(max_bytes.saturating_sub(total));
                            // KIP-74: the first batch returned is whole even when larger than
                            // the limits, so one big batch can never stall a consumer.
                            let min_one = total == 0;
                            match p.log.read(offset, budget, hw, min_one) {
                                Ok(read) => {
                                    total += read.bytes.len();
                                    base.with_error_code(code::NONE)
                                        .with_records(Some(read.bytes))
                                }
                                Err(e) => base
                                    .with_error_code(e.kafka_code())
                                    .with_records(Some(Bytes::new())),
                            }
                        }
                    }
                },
            };
            any_error |= data.error_code != code::NONE;
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
