//! Metadata changes as values: what a broker asks the active controller to do.
//!
//! Every write the [`Controller`](crate::Controller) offers is one [`ControllerOp`]. On the
//! active controller (or a single node) the op is planned against the current image and
//! committed; anywhere else it is sent to the active controller, which runs it and
//! answers with its outcome and the log index that holds it, so the asking node can wait
//! until its own image includes the change before answering its client.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::controller::{CreatePartitionsSpec, CreateTopicSpec};
use crate::error::ControllerError;
use crate::image::PartitionImage;
use crate::partitions::{AlterPartitionRequest, Election};
use crate::record::{ConfigResource, ListenerEndpoint, ScramCredential, ScramMechanism};

/// Config changes: a key set to `Some` value, or returned to its default with `None`.
pub type ConfigChanges = Vec<(String, Option<String>)>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerOp {
    RegisterBroker {
        node_id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
        /// Set by cluster members: new at every process start.
        incarnation: Option<Uuid>,
        #[serde(default)]
        listeners: Vec<ListenerEndpoint>,
    },
    CreateTopic(CreateTopicSpec),
    DeleteTopic(String),
    CreatePartitions(CreatePartitionsSpec),
    AlterTopicConfigs {
        name: String,
        changes: ConfigChanges,
    },
    AlterConfigs {
        resource: ConfigResource,
        name: String,
        changes: ConfigChanges,
    },
    /// A broker is alive (every `broker.heartbeat.interval.ms`).
    BrokerHeartbeat {
        node_id: i32,
    },
    /// A partition leader asks for a new ISR (Kafka's AlterPartition).
    AlterPartition(AlterPartitionRequest),
    /// ElectLeaders: for the named partitions, or every partition when `None`.
    ElectLeaders {
        election: Election,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// AlterPartitionReassignments: per partition a new replica list, or `None` to cancel
    /// the ongoing reassignment.
    AlterReassignments {
        allow_replication_factor_change: bool,
        partitions: Vec<(String, i32, Option<Vec<i32>>)>,
    },
    /// A broker is shutting down: move its leaderships away now.
    ControlledShutdown {
        node_id: i32,
    },
    /// A broker-only node asks to follow the quorum as an observer (an openraft
    /// learner), reached at `addr`.
    AddObserver {
        node_id: i32,
        addr: String,
    },
    /// Reserves the next block of producer ids for the asking broker.
    ProducerIdBlock,
    /// Sets a cluster-wide feature level (UpdateFeatures); lowering it only if
    /// `allow_downgrade`.
    UpdateFeature {
        name: String,
        level: i16,
        allow_downgrade: bool,
    },
    /// The quorum as the active controller sees it (DescribeQuorum).
    DescribeQuorum,
    /// Sets (`Some`) or deletes (`None`) SCRAM credentials, all in one commit
    /// (AlterUserScramCredentials, `--add-scram` at first start).
    AlterScram(Vec<(String, ScramMechanism, Option<ScramCredential>)>),
    /// Stores ACLs (CreateAcls); one already stored is not stored twice.
    CreateAcls(Vec<crate::acl::AclBinding>),
    /// Deletes the ACLs each filter matches (DeleteAcls), all in one commit.
    DeleteAcls(Vec<crate::acl::AclFilter>),
}

/// What an op produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpOutput {
    Done,
    TopicId(Uuid),
    /// Producer ids `start..end`, reserved for one broker.
    ProducerIds {
        start: i64,
        end: i64,
    },
    Quorum(QuorumStatus),
    /// The ACLs each DeleteAcls filter deleted, in filter order.
    DeletedAcls(Vec<Vec<crate::acl::AclBinding>>),
    /// A partition's state after an AlterPartition.
    Partition(PartitionImage),
    /// ElectLeaders: per partition, the error code (0 when elected) and its message.
    Elections(Vec<PartitionOutcome>),
    /// AlterPartitionReassignments: per partition, the error code and its message.
    Reassignments(Vec<PartitionOutcome>),
    /// An observer joined; the cluster it joined.
    Joined {
        cluster_id: String,
    },
}

/// The outcome of one partition's election or reassignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionOutcome {
    pub topic: String,
    pub partition: i32,
    pub code: i16,
    pub message: Option<String>,
}

/// The metadata quorum as its leader sees it, in the terms of Kafka's DescribeQuorum:
/// offsets are "next offset" positions in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumStatus {
    pub leader_id: i32,
    /// The raft term: the controller epoch.
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<ReplicaStatus>,
    /// Broker-only nodes following the quorum (openraft learners).
    #[serde(default)]
    pub observers: Vec<ReplicaStatus>,
    /// Each voter's CONTROLLER endpoint, `host:port`.
    pub endpoints: Vec<(i32, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub replica_id: i32,
    /// -1 when the leader has not heard from the replica in this term.
    pub log_end_offset: i64,
    /// When the leader last heard from it; -1 when unknown.
    pub last_fetch_ms: i64,
    /// When it last held everything committed; -1 when unknown.
    pub last_caught_up_ms: i64,
}

/// An op's outcome as it crosses the network: the output, or the error's Kafka code and
/// message; and the log index the change was committed at (0 when nothing changed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpReply {
    pub result: Result<OpOutput, (i16, String)>,
    pub log_index: u64,
}

impl OpReply {
    pub fn new(result: Result<OpOutput, ControllerError>, log_index: u64) -> OpReply {
        OpReply {
            result: result.map_err(|e| (e.kafka_code(), e.to_string())),
            log_index,
        }
    }

    pub fn into_result(self) -> Result<OpOutput, ControllerError> {
        self.result
            .map_err(|(code, message)| ControllerError::Remote { code, message })
    }
}
