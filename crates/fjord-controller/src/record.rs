//! The records of the metadata log: each one is a single change to the cluster.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A broker joined, or came back with a new endpoint.
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        /// A new id at every start of a cluster member's process, so each start is a new
        /// registration (absent in one-node logs, which never needed it).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        incarnation: Option<Uuid>,
    },
    /// A broker stopped heartbeating (`fenced`), or heartbeats again. A fenced broker is
    /// left out of Metadata and gets no new partitions.
    BrokerFencing { node_id: i32, fenced: bool },
    /// A topic was created; its partitions follow as `Partition` records.
    Topic {
        name: String,
        topic_id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// A partition was created, or its leadership/replicas changed.
    Partition {
        topic_id: Uuid,
        partition: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
        leader: i32,
        leader_epoch: i32,
        /// Bumped by every change to the partition (leader or ISR), so that a leader's
        /// AlterPartition based on an older state is refused. Absent in logs written
        /// before partitions were replicated.
        #[serde(default)]
        partition_epoch: i32,
        /// An ongoing reassignment: replicas being added (catching up, not yet in the
        /// final assignment) and replicas to be removed once they have. Both are part of
        /// `replicas` meanwhile.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        adding_replicas: Vec<i32>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        removing_replicas: Vec<i32>,
    },
    /// A topic and all its partitions were deleted.
    RemoveTopic { topic_id: Uuid },
    /// A topic config was set (`Some`) or returned to its default (`None`).
    TopicConfig {
        topic_id: Uuid,
        key: String,
        value: Option<String>,
    },
    /// A block of producer ids was handed out; the next block starts at `next`.
    ProducerIds { next: i64 },
    /// A dynamic config of a broker (its id; an empty name is the cluster-wide default)
    /// or of a group was set (`Some`) or removed (`None`). Logs written before this
    /// record existed simply hold none.
    Config {
        resource: ConfigResource,
        name: String,
        key: String,
        value: Option<String>,
    },
    /// A cluster-wide feature was finalized at `level` (Kafka's FeatureLevelRecord); level
    /// 0 turns it off. Written at the first start of a new cluster and by UpdateFeatures.
    FeatureLevel { name: String, level: i16 },
}

/// What a dynamic config belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    Broker,
    Group,
}
