//! AlterPartitionReassignments and ListPartitionReassignments (KIP-455): moving a
//! partition's replicas to other brokers while it keeps serving. The active controller
//! records the target; the new replicas copy the log as followers, and the assignment
//! switches once they are all in sync (see `fjord_controller::partitions::reassign`).

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};

use super::str;
use crate::error::code;
use crate::state::BrokerState;

/// Blocking (commits metadata through the active controller): run on the blocking pool.
pub fn alter(
    state: &BrokerState,
    req: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    // Before v1 a reassignment could always change the replication factor.
    let allow_rf_change = version < 1 || req.allow_replication_factor_change;
    let wanted: Vec<(String, i32, Option<Vec<i32>>)> = req
        .topics
        .into_iter()
        .flat_map(|t| {
            let name = t.name.0.to_string();
            t.partitions.into_iter().map(move |p| {
                (
                    name.clone(),
                    p.partition_index,
                    p.replicas.map(|r| r.into_iter().map(|b| b.0).collect()),
                )
            })
        })
        .collect();
    let outcomes = match state
        .controller
        .alter_reassignments(wanted.clone(), allow_rf_change)
    {
        Ok(outcomes) => outcomes,
        Err(e) => {
            // Nothing was decided: the whole request carries the failure.
            return AlterPartitionReassignmentsResponse::default()
                .with_allow_replication_factor_change(allow_rf_change)
                .with_error_code(e.kafka_code())
                .with_error_message(Some(str(e.to_string())));
        }
    };
    if let Err(e) = state.reconcile() {
        tracing::error!(error = %e, "applying metadata after a reassignment failed");
    }
    let mut by_topic: BTreeMap<String, Vec<ReassignablePartitionResponse>> = BTreeMap::new();
    for o in outcomes {
        by_topic.entry(o.topic).or_default().push(
            ReassignablePartitionResponse::default()
                .with_partition_index(o.partition)
                .with_error_code(o.code)
                .with_error_message(o.message.map(str)),
        );
    }
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_error_code(code::NONE)
        .with_responses(
            by_topic
                .into_iter()
                .map(|(name, partitions)| {
                    ReassignableTopicResponse::default()
                        .with_name(TopicName(str(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// The ongoing reassignments, of every partition (null topics) or of those named;
/// partitions that are not being reassigned, or do not exist, are left out, as in Kafka.
pub fn list(
    state: &BrokerState,
    req: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let image = state.controller.image();
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    let ids = |v: &[i32]| v.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let mut topics = Vec::new();
    for topic in image.topics.values() {
        let only = match &wanted {
            Some(w) => match w.get(&topic.name) {
                Some(indexes) => Some(indexes),
                None => continue,
            },
            None => None,
        };
        let partitions: Vec<_> = topic
            .partitions
            .iter()
            .filter(|p| p.reassigning() && only.is_none_or(|o| o.contains(&p.partition)))
            .map(|p| {
                OngoingPartitionReassignment::default()
                    .with_partition_index(p.partition)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding_replicas))
                    .with_removing_replicas(ids(&p.removing_replicas))
            })
            .collect();
        if !partitions.is_empty() {
            topics.push(
                OngoingTopicReassignment::default()
                    .with_name(TopicName(str(topic.name.clone())))
                    .with_partitions(partitions),
            );
        }
    }
    ListPartitionReassignmentsResponse::default()
        .with_error_code(code::NONE)
        .with_topics(topics)
}
