//! DescribeCluster: the brokers, the controller and the cluster id.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str;
use crate::error::code;
use crate::state::BrokerState;

/// Kafka's EndpointType: 1 = brokers (2 = controllers, which clients cannot reach here).
const BROKERS: i8 = 1;

pub fn describe(state: &BrokerState, req: DescribeClusterRequest) -> DescribeClusterResponse {
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
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(b.node_id))
                .with_host(str(b.host.clone()))
                .with_port(b.port)
                .with_rack(b.rack.clone().map(str))
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
