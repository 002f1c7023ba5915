//! DeleteRecords (advance a partition's log start offset) and OffsetForLeaderEpoch
//! (where a leader epoch ended, so clients can detect log truncation).

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use crate::error::code;
use crate::state::BrokerState;

/// Blocking (deletes files, then waits for the followers): run on the blocking pool.
pub fn delete(state: &BrokerState, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let deadline = tokio::time::Instant::now()
        + std::time::Duration::from_millis(req.timeout_ms.max(0) as u64);
    let image = state.controller.image();
    let live = |r: i32| image.brokers.get(&r).is_some_and(|b| !b.fenced);
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.0.to_string();
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let base =
                DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
            let result = match state.replicas.get(&name, p.partition_index) {
                None => base
                    .with_error_code(state.missing_partition_code(&name, p.partition_index))
                    .with_low_watermark(-1),
                Some(partition) => match state
                    .replicas
                    .delete_records(&partition, p.offset)
                    .and_then(|start| {
                        // Answered, as Kafka does, once every live replica has deleted:
                        // the low watermark is the smallest log start among them.
                        tokio::runtime::Handle::current()
                            .block_on(partition.wait_low_watermark(start, live, deadline))
                    }) {
                    Ok(low) => base.with_error_code(code::NONE).with_low_watermark(low),
                    Err(e) => {
                        tracing::info!(topic = %name, partition = p.partition_index, error = %e, "delete records refused");
                        base.with_error_code(e.kafka_code()).with_low_watermark(-1)
                    }
                },
            };
            partitions.push(result);
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(t.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

pub fn offset_for_leader_epoch(
    state: &BrokerState,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.topic.0.to_string();
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let base = EpochEndOffset::default().with_partition(p.partition);
                    let Some(partition) = state.replicas.get(&name, p.partition) else {
                        return base
                            .with_error_code(state.missing_partition_code(&name, p.partition))
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                    };
                    let current = match partition.check_leader_epoch(p.current_leader_epoch) {
                        Ok(e) => e,
                        Err(c) => {
                            return base
                                .with_error_code(c)
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        }
                    };
                    // The current epoch ends at the log end; an older one where the next began.
                    let (epoch, end) = if p.leader_epoch >= current {
                        (current, partition.log.log_end_offset())
                    } else {
                        partition
                            .log
                            .end_offset_for_epoch(p.leader_epoch)
                            .unwrap_or((-1, -1))
                    };
                    base.with_error_code(code::NONE)
                        .with_leader_epoch(epoch)
                        .with_end_offset(end)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
