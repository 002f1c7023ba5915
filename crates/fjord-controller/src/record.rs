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
        /// Every client listener's advertised address, so each client is told addresses
        /// on the listener it came through (empty in logs from before several listeners:
        /// `host:port` is then the only one).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        listeners: Vec<ListenerEndpoint>,
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
    /// A user's SCRAM credential for one mechanism was set (`Some`) or deleted (`None`),
    /// as Kafka's UserScramCredentialRecord: salted and iterated, never the password.
    ScramCredential {
        user: String,
        mechanism: ScramMechanism,
        credential: Option<ScramCredential>,
    },
    /// An ACL was created (`Some`) or deleted (`None`), by its id (Kafka's
    /// AccessControlEntryRecord and RemoveAccessControlEntryRecord).
    Acl {
        id: Uuid,
        binding: Option<crate::acl::AclBinding>,
    },
}

/// A broker listener's advertised address (Kafka's BrokerEndpoint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerEndpoint {
    pub name: String,
    pub host: String,
    pub port: i32,
    /// Kafka's SecurityProtocol id: 0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT, 3 SASL_SSL.
    pub security_protocol: i16,
}

/// A SCRAM mechanism, with Kafka's type codes (ScramMechanism: 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    pub fn code(self) -> i8 {
        match self {
            ScramMechanism::Sha256 => 1,
            ScramMechanism::Sha512 => 2,
        }
    }

    pub fn from_code(code: i8) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            ScramMechanism::Sha256 => "SCRAM-SHA-256",
            ScramMechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<ScramMechanism> {
        ScramMechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's bounds on the iteration count (ScramMechanism's minIterations, and the
    /// 16384 its AlterUserScramCredentials refuses above).
    pub const MIN_ITERATIONS: i32 = 4096;
    pub const MAX_ITERATIONS: i32 = 16384;
}

/// A stored SCRAM credential (RFC 5802): enough to check a client's proof and to prove
/// the server's identity, not enough to log in with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}

/// What a dynamic config belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ConfigResource {
    Broker,
    Group,
}
