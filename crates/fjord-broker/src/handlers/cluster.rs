//! DescribeCluster (the brokers, the controller and the cluster id), DescribeQuorum
//! (the metadata quorum) and ElectLeaders.

use fjord_controller::partitions::Election;
use fjord_controller::PartitionOutcome;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::describe_quorum_response::{
    Listener as QuorumListener, Node as QuorumNode, PartitionData as QuorumPartition, ReplicaState,
    TopicData as QuorumTopic,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, DescribeQuorumRequest,
    DescribeQuorumResponse, ElectLeadersRequest, ElectLeadersResponse, TopicName,
};

use super::str;
use crate::error::code;
use crate::state::BrokerState;

/// Kafka's EndpointType: 1 = brokers (2 = controllers, which clients cannot reach here).
const BROKERS: i8 = 1;

pub fn describe(
    state: &BrokerState,
    req: DescribeClusterRequest,
    listener: &str,
) -> DescribeClusterResponse {
    if req.endpoint_type != BROKERS {
        return DescribeClusterResponse::default()
            .with_error_code(code::UNSUPPORTED_ENDPOINT_TYPE)
            .with_error_message(Some(str("Only broker endpoints can be described")))
            .with_endpoint_type(req.endpoint_type);
    }
    let brokers = state
        .controller
        .image()
        .live_brokers()
        .filter_map(|b| {
            let (host, port) = b.endpoint(listener)?;
            Some(
                DescribeClusterBroker::default()
                    .with_broker_id(BrokerId(b.node_id))
                    .with_host(str(host.to_string()))
                    .with_port(port)
                    .with_rack(b.rack.clone().map(str)),
            )
        })
        .collect();
    let mut resp = DescribeClusterResponse::default();
    if req.include_cluster_authorized_operations {
        resp = resp.with_cluster_authorized_operations(super::metadata::CLUSTER_OPERATIONS);
    }
    resp.with_error_code(code::NONE)
        .with_endpoint_type(BROKERS)
        .with_cluster_id(str(state.cluster_id.clone()))
        .with_controller_id(BrokerId(super::controller_id(state)))
        .with_brokers(brokers)
}

/// The metadata log's name in DescribeQuorum, as in KRaft.
const METADATA_TOPIC: &str = "__cluster_metadata";

/// DescribeQuorum: the metadata quorum as the active controller sees it (asked of it
/// through this broker). Blocking: run on the blocking pool.
pub fn describe_quorum(
    state: &BrokerState,
    req: DescribeQuorumRequest,
    version: i16,
) -> DescribeQuorumResponse {
    let asks_for_metadata = req.topics.iter().any(|t| {
        t.topic_name.0.as_str() == METADATA_TOPIC
            && t.partitions.iter().any(|p| p.partition_index == 0)
    });
    if !asks_for_metadata {
        return DescribeQuorumResponse::default()
            .with_error_code(code::INVALID_REQUEST)
            .with_error_message(Some(str(format!(
                "DescribeQuorum only describes {METADATA_TOPIC} partition 0"
            ))));
    }
    let status = match state.controller.describe_quorum() {
        Ok(s) => s,
        Err(e) => {
            let partition = QuorumPartition::default()
                .with_partition_index(0)
                .with_error_code(e.kafka_code())
                .with_error_message(Some(str(e.to_string())))
                .with_leader_id(BrokerId(-1))
                .with_leader_epoch(-1)
                .with_high_watermark(-1);
            return DescribeQuorumResponse::default().with_topics(vec![QuorumTopic::default()
                .with_topic_name(TopicName(str(METADATA_TOPIC)))
                .with_partitions(vec![partition])]);
        }
    };
    let replicas = |list: &[fjord_controller::ReplicaStatus]| -> Vec<ReplicaState> {
        list.iter()
            .map(|r| {
                ReplicaState::default()
                    .with_replica_id(BrokerId(r.replica_id))
                    .with_log_end_offset(r.log_end_offset)
                    .with_last_fetch_timestamp(r.last_fetch_ms)
                    .with_last_caught_up_timestamp(r.last_caught_up_ms)
            })
            .collect()
    };
    let voters = replicas(&status.voters);
    let observers = replicas(&status.observers);
    let partition = QuorumPartition::default()
        .with_partition_index(0)
        .with_error_code(code::NONE)
        .with_leader_id(BrokerId(status.leader_id))
        .with_leader_epoch(status.leader_epoch)
        .with_high_watermark(status.high_watermark)
        .with_current_voters(voters)
        .with_observers(observers);
    let mut resp = DescribeQuorumResponse::default().with_topics(vec![QuorumTopic::default()
        .with_topic_name(TopicName(str(METADATA_TOPIC)))
        .with_partitions(vec![partition])]);
    if version >= 2 {
        let nodes = status
            .endpoints
            .iter()
            .filter_map(|(id, addr)| {
                let (host, port) = addr.rsplit_once(':')?;
                Some(
                    QuorumNode::default()
                        .with_node_id(BrokerId(*id))
                        .with_listeners(vec![QuorumListener::default()
                            .with_name(str("CONTROLLER"))
                            .with_host(str(host))
                            .with_port(port.parse().ok()?)]),
                )
            })
            .collect();
        resp = resp.with_nodes(nodes);
    }
    resp
}

/// ElectLeaders: preferred (0) or unclean (1) leader election, carried out by the active
/// controller. A null partition list means every partition. Blocking: run on the
/// blocking pool.
pub fn elect_leaders(state: &BrokerState, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let election = match req.election_type {
        0 => Election::Preferred,
        1 => Election::Unclean,
        other => {
            return ElectLeadersResponse::default()
                .with_error_code(code::INVALID_REQUEST)
                .with_replica_election_results(
                    req.topic_partitions
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| {
                            ReplicaElectionResult::default()
                                .with_topic(t.topic)
                                .with_partition_result(
                                    t.partitions
                                        .into_iter()
                                        .map(|p| {
                                            PartitionResult::default()
                                                .with_partition_id(p)
                                                .with_error_code(code::INVALID_REQUEST)
                                                .with_error_message(Some(str(format!(
                                                    "Unknown election type {other}"
                                                ))))
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                )
        }
    };
    let wanted = req.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .flat_map(|t| {
                let name = t.topic.0.to_string();
                t.partitions.into_iter().map(move |p| (name.clone(), p))
            })
            .collect::<Vec<_>>()
    });
    let results = match state.controller.elect_leaders(election, wanted.clone()) {
        Ok(results) => results,
        Err(e) => {
            // Every partition asked about gets the failure.
            let (code, message) = (e.kafka_code(), e.to_string());
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partition)| PartitionOutcome {
                    topic,
                    partition,
                    code,
                    message: Some(message.clone()),
                })
                .collect()
        }
    };
    if let Err(e) = state.reconcile() {
        tracing::error!(error = %e, "applying metadata after a leader election failed");
    }
    let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> = Default::default();
    for r in results {
        by_topic.entry(r.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(r.partition)
                .with_error_code(r.code)
                .with_error_message(r.message.map(str)),
        );
    }
    ElectLeadersResponse::default()
        .with_error_code(code::NONE)
        .with_replica_election_results(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    ReplicaElectionResult::default()
                        .with_topic(TopicName(str(topic)))
                        .with_partition_result(partitions)
                })
                .collect(),
        )
}
