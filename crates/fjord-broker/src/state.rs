//! What every handler shares: configuration, the controller, and the hosted partitions.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use fjord_controller::Controller;

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::replica::ReplicaManager;

pub struct BrokerState {
    pub config: BrokerConfig,
    pub cluster_id: String,
    pub controller: Arc<Controller>,
    pub replicas: ReplicaManager,
    pub groups: crate::group::GroupCoordinator,
    /// Connection and request-memory bounds shared by every connection.
    pub limits: Arc<crate::limits::NetworkLimits>,
}

impl BrokerState {
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The error for a request about a partition this broker does not host: in a cluster
    /// it may live on another broker (NOT_LEADER_OR_FOLLOWER sends the client to refresh
    /// its metadata and go there); otherwise it does not exist.
    pub fn missing_partition_code(&self, topic: &str, partition: i32) -> i16 {
        let exists = self
            .controller
            .image()
            .topic(topic)
            .is_some_and(|t| t.partitions.iter().any(|p| p.partition == partition));
        if exists {
            crate::error::code::NOT_LEADER_OR_FOLLOWER
        } else {
            crate::error::code::UNKNOWN_TOPIC_OR_PARTITION
        }
    }

    /// Applies the controller's latest image to the hosted partitions. Called after every
    /// metadata change this broker makes, so a client that created a topic can produce to
    /// it in its very next request.
    pub fn reconcile(&self) -> Result<(), BrokerError> {
        self.replicas.reconcile(&self.controller.image())
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
