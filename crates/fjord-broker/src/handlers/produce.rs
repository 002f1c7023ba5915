//! Produce: appends record batches byte for byte to partition logs.
//!
//! acks=1 is answered once the batch is in the page cache; acks=all once it is fsynced
//! (group commit: every append waiting on the same partition shares one fsync).

use std::sync::Arc;

use bytes::BytesMut;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::str;
use crate::connection::Turn;
use crate::error::{code, BrokerError};
use crate::replica::Partition;
use crate::state::{now_ms, BrokerState};

struct Appended {
    partition: Arc<Partition>,
    next_offset: i64,
    leader_epoch: i32,
    min_isr: usize,
}

pub async fn handle(
    state: &Arc<BrokerState>,
    req: ProduceRequest,
    version: i16,
    turn: Option<Turn>,
) -> Result<Option<ProduceResponse>, String> {
    let acks = req.acks;
    // One deadline for the whole request, however many partitions it waits on.
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    // Appends write files (and fsync when flush.messages says so, or when a segment rolls):
    // they run on the blocking pool, never on an async worker.
    // The first transactional batch of a transaction in a partition must belong to an open
    // transaction the coordinator knows (KIP-890 part 1), or is added to it (part 2).
    let ask = crate::txn::verify::Ask::for_produce(version);
    let refused = crate::txn::verify::unverified(state, &req, ask).await;
    let st = state.clone();
    let appended =
        tokio::task::spawn_blocking(move || append_all(&st, req, version, &refused)).await;
    let (mut responses, to_sync) = match appended {
        Ok(done) => done,
        // Nothing is known about what was appended: closing makes the client retry.
        Err(e) => return Err(format!("produce append task failed: {e}")),
    };
    // Appends are done; the next pipelined produce on this connection may go ahead while
    // this one waits for its fsync.
    drop(turn);
    state.replicas.notify_append();

    for (ti, pi, appended) in to_sync {
        let Appended {
            partition,
            next_offset,
            leader_epoch,
            min_isr,
        } = appended;
        let log = partition.log.clone();
        let synced = tokio::task::spawn_blocking(move || log.flush_until(next_offset)).await;
        let failure = match synced {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((code::KAFKA_STORAGE_ERROR, e.to_string())),
            Err(e) => Some((code::KAFKA_STORAGE_ERROR, format!("flush task failed: {e}"))),
        };
        if let Some((_, why)) = &failure {
            tracing::error!(topic = %partition.topic, partition = partition.index, "acks=all flush failed: {why}");
        }
        // Then every in-sync replica must have it (and, by default, have fsynced it).
        let failure = match failure {
            Some(f) => Some(f),
            None => partition
                .wait_replicated(next_offset, leader_epoch, min_isr, deadline)
                .await
                .err()
                .map(|e| (e.kafka_code(), e.to_string())),
        };
        if let Some((c, why)) = failure {
            let r = &mut responses[ti].partition_responses[pi];
            r.error_code = c;
            if version >= 8 {
                r.error_message = Some(str(why));
            }
        }
    }
    if acks == 0 {
        return Ok(None);
    }
    Ok(Some(ProduceResponse::default().with_responses(responses)))
}

/// Appends every partition's batches; returns the responses and what acks=all waits for.
#[allow(clippy::type_complexity)]
fn append_all(
    state: &BrokerState,
    req: ProduceRequest,
    version: i16,
    refused: &std::collections::HashMap<(String, i32), i16>,
) -> (Vec<TopicProduceResponse>, Vec<(usize, usize, Appended)>) {
    let acks = req.acks;
    let image = state.controller.image();
    let now = now_ms();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    // (topic index, partition index, what to wait for) for acks=all.
    let mut to_sync: Vec<(usize, usize, Appended)> = Vec::new();

    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let min_isr = image
            .topic(&name)
            .and_then(|t| t.configs.get("min.insync.replicas"))
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(state.replicas.config().min_insync_replicas as usize);
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for (pi, data) in topic.partition_data.into_iter().enumerate() {
            let index = data.index;
            let result = if !matches!(acks, -1..=1) {
                Err(BrokerError::Kafka(
                    code::INVALID_REQUIRED_ACKS,
                    format!("acks must be -1 (all), 0 or 1, not {acks}"),
                ))
            } else if let Some(&c) = refused.get(&(name.clone(), index)) {
                Err(BrokerError::Kafka(
                    c,
                    format!(
                        "The partition {name}-{index} is not in the producer's ongoing \
                         transaction, as its coordinator says (or it could not be asked)"
                    ),
                ))
            } else if super::topics::is_internal_topic(&name) {
                // As Kafka: only the broker itself appends to its internal topics.
                Err(BrokerError::Kafka(
                    code::INVALID_TOPIC_EXCEPTION,
                    format!("Cannot append to internal topic {name}"),
                ))
            } else {
                match state.replicas.get(&name, index) {
                    None => match state.missing_partition_code(&name, index) {
                        code::NOT_LEADER_OR_FOLLOWER => Err(BrokerError::Kafka(
                            code::NOT_LEADER_OR_FOLLOWER,
                            format!(
                                "Broker {} is not the leader of {name}-{index}",
                                state.node_id()
                            ),
                        )),
                        c => Err(BrokerError::Kafka(
                            c,
                            format!(
                                "This server does not host this topic-partition: {name}-{index}"
                            ),
                        )),
                    },
                    Some(p) => {
                        let mut records = match data.records {
                            Some(r) => BytesMut::from(&r[..]),
                            None => BytesMut::new(),
                        };
                        let checked = if acks == -1 {
                            p.check_min_isr(min_isr)
                        } else {
                            Ok(())
                        };
                        checked
                            .and_then(|_| p.append(&mut records, now))
                            .map(|info| (p, info))
                    }
                }
            };
            let response = match result {
                Ok((p, info)) => {
                    if acks == -1 {
                        let leader_epoch = p.assignment().leader_epoch;
                        to_sync.push((
                            ti,
                            pi,
                            Appended {
                                partition: p,
                                next_offset: info.last_offset + 1,
                                leader_epoch,
                                min_isr,
                            },
                        ));
                    }
                    PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(code::NONE)
                        .with_base_offset(info.base_offset)
                        .with_log_append_time_ms(info.log_append_time)
                        .with_log_start_offset(info.log_start_offset)
                }
                Err(e) => {
                    tracing::debug!(topic = %name, partition = index, error = %e, "produce refused");
                    let mut r = PartitionProduceResponse::default()
                        .with_index(index)
                        .with_error_code(e.kafka_code())
                        .with_base_offset(-1)
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(-1);
                    if version >= 8 {
                        r = r.with_error_message(Some(str(e.to_string())));
                        // KIP-467: name the refused records, so the client fails just those
                        // and retries the rest of the batch.
                        if let BrokerError::InvalidRecords(message, indexes) = &e {
                            r = r.with_record_errors(
                                indexes
                                    .iter()
                                    .map(|&i| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(i)
                                            .with_batch_index_error_message(Some(str(
                                                message.clone()
                                            )))
                                    })
                                    .collect(),
                            );
                        }
                    }
                    r
                }
            };
            partitions.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    (responses, to_sync)
}
