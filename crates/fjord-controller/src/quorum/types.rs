//! The openraft type configuration of the metadata quorum: what a log entry carries and
//! what applying one answers.

use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::record::MetadataRecord;

/// A quorum member's id. Kafka's `node.id` is a non-negative `i32`; it widens losslessly
/// to the `u64` that openraft's examples and tooling use, and the wiring converts at the
/// edge so that the rest of Fjord keeps speaking `i32`.
pub type NodeId = u64;

/// How a quorum member is reached: its CONTROLLER listener, `host:port`.
pub type Node = openraft::BasicNode;

/// One replicated change: the records that must land together (a topic and its
/// partitions). It is the unit of atomicity, exactly like a frame of the single-node log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataBatch {
    pub records: Vec<MetadataRecord>,
}

/// What applying one log entry answered: where it landed and the image offset after it,
/// so that a caller can wait for the same offset to be applied on another node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchApplied {
    pub log_index: u64,
    pub image_offset: u64,
}

openraft::declare_raft_types!(
    /// The metadata quorum's openraft types.
    pub MetadataRaft:
        D = MetadataBatch,
        R = BatchApplied,
        NodeId = NodeId,
        Node = Node,
        Entry = openraft::Entry<MetadataRaft>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<MetadataRaft>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type Raft = openraft::Raft<MetadataRaft>;
