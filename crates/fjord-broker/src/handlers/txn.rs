//! The transaction APIs (KIP-98): the producer's (InitProducerId with a transactional id,
//! AddPartitionsToTxn, AddOffsetsToTxn, EndTxn) and the admin's (DescribeTransactions,
//! ListTransactions) go to the transaction coordinator; TxnOffsetCommit to the group
//! coordinator; WriteTxnMarkers and DescribeProducers to the partitions' leaders.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, TopicName,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse, WriteTxnMarkersRequest,
    WriteTxnMarkersResponse,
};

use super::str;
use crate::error::code;
use crate::group::CommitEntry;
use crate::state::BrokerState;
use crate::txn::markers::{self, MarkerRequest};

/// WriteTxnMarkers: a coordinator (maybe this broker's own) ends a transaction in the
/// partitions led here.
pub async fn write_txn_markers(
    state: &Arc<BrokerState>,
    req: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(req.markers.len());
    for m in req.markers {
        let partitions: Vec<(String, i32)> = m
            .topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|&p| (t.name.0.to_string(), p))
            })
            .collect();
        let request = MarkerRequest {
            producer_id: m.producer_id.0,
            producer_epoch: m.producer_epoch,
            commit: m.transaction_result,
            coordinator_epoch: m.coordinator_epoch,
            partitions,
        };
        let codes = markers::write_local(state, &request).await;
        let mut by_topic: BTreeMap<String, Vec<WritableTxnMarkerPartitionResult>> = BTreeMap::new();
        for ((topic, index), c) in request.partitions.into_iter().zip(codes) {
            by_topic.entry(topic).or_default().push(
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(index)
                    .with_error_code(c),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(m.producer_id)
                .with_topics(
                    by_topic
                        .into_iter()
                        .map(|(name, partitions)| {
                            WritableTxnMarkerTopicResult::default()
                                .with_name(TopicName(str(name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}

/// TxnOffsetCommit: a transactional producer sends a group's offsets into its
/// transaction; they count for the group once the transaction commits.
pub async fn txn_offset_commit(
    state: &BrokerState,
    req: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group = req.group_id.0.to_string();
    let mut entries = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            entries.push(CommitEntry {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if version >= 2 {
                    p.committed_leader_epoch
                } else {
                    -1
                },
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            });
        }
    }
    // Before v3 the request names no member: the commit is taken as a simple one.
    let (member, instance, generation) = if version >= 3 {
        (
            req.member_id.to_string(),
            req.group_instance_id.as_ref().map(|i| i.to_string()),
            req.generation_id,
        )
    } else {
        (String::new(), None, -1)
    };
    let result = state
        .groups
        .txn_commit(
            state,
            &group,
            &member,
            instance.as_deref(),
            generation,
            &entries,
            (req.producer_id.0, req.producer_epoch),
        )
        .await;
    let mut codes = match result {
        Ok(codes) => codes.into_iter(),
        Err(e) => vec![e; entries.len()].into_iter(),
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(code::UNKNOWN_SERVER_ERROR))
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// DescribeProducers: the producers each partition led here remembers, with the start
/// of their open transaction (`kafka-transactions.sh find-hanging` reads this).
pub fn describe_producers(
    state: &BrokerState,
    req: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let base = PartitionResponse::default().with_partition_index(index);
                    let Some(p) = state.replicas.get(&name, index) else {
                        return base.with_error_code(state.missing_partition_code(&name, index));
                    };
                    if let Err(c) = p.check_leader_epoch(-1) {
                        return base.with_error_code(c);
                    }
                    let producers = p
                        .log
                        .producer_states()
                        .into_iter()
                        .map(|(id, e)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(id))
                                .with_producer_epoch(e.epoch as i32)
                                .with_last_sequence(e.batches.back().map_or(-1, |b| b.last_seq))
                                .with_last_timestamp(e.last_timestamp)
                                .with_coordinator_epoch(e.coordinator_epoch)
                                .with_current_txn_start_offset(
                                    e.current_txn_first_offset.unwrap_or(-1),
                                )
                        })
                        .collect();
                    base.with_error_code(code::NONE)
                        .with_active_producers(producers)
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
