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
    pub transactions: Arc<crate::txn::coordinator::TransactionCoordinator>,
    /// Connection and request-memory bounds shared by every connection.
    pub limits: Arc<crate::limits::NetworkLimits>,
    /// How this broker connects to the others (TLS, SASL login).
    pub inter_broker: crate::security::client::ListenerClient,
}

impl BrokerState {
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Whether this broker may act on its image as a coordinator: in a cluster, only
    /// while its session on the active controller is surely open. A broker cut off from
    /// the controllers but not from clients still believes it leads the partitions it
    /// led; once its session may have ended, the controller may have fenced it and
    /// another broker may coordinate its groups and transactions, so it answers from
    /// that old state no more (NOT_COORDINATOR sends clients looking again).
    pub fn session_current(&self) -> bool {
        self.controller
            .session_current(std::time::Duration::from_millis(
                self.config.broker_session_timeout_ms,
            ))
    }

    /// Creates an internal topic (`__consumer_offsets`, `__transaction_state`) on first
    /// use and opens its partitions here. The replication factor is capped at the brokers
    /// alive now, so that a small or starting cluster still gets its coordinators; the
    /// cap is logged. Blocking: it waits for the metadata commit.
    pub fn ensure_internal_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: std::collections::BTreeMap<String, String>,
    ) -> Result<(), i16> {
        use crate::error::code;
        if self.controller.image().topic(name).is_some() {
            return Ok(());
        }
        let spec = fjord_controller::CreateTopicSpec {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: replication_factor
                .min(self.controller.image().live_brokers().count().max(1) as i16),
            configs,
            ..Default::default()
        };
        // Opened here before the commit, so a broker that cannot host the partitions
        // refuses instead of recording a topic it could not start from.
        let created = self.controller.create_topic_prepared(&spec, |records| {
            self.replicas
                .prepare_partitions(name, &spec.configs, records)
        });
        if created.is_err() {
            self.replicas.discard_prepared(name);
        }
        match created {
            Ok(_) => tracing::info!(
                partitions = spec.num_partitions,
                replication_factor = spec.replication_factor,
                "created {name}"
            ),
            Err(e) if e.kafka_code() == code::TOPIC_ALREADY_EXISTS => {}
            Err(e) => {
                tracing::error!(error = %e, "cannot create {name}");
                return Err(code::COORDINATOR_NOT_AVAILABLE);
            }
        }
        // Also after losing a creation race: the winner may not have opened the logs yet.
        self.reconcile().map_err(|e| {
            tracing::error!(error = %e, "cannot open {name} partitions");
            code::COORDINATOR_NOT_AVAILABLE
        })
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
