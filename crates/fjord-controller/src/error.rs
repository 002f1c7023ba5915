//! The controller's error type; each variant carries the Kafka error code it answers with.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("{0}")]
    InvalidTopic(String),
    #[error("Topic '{0}' already exists.")]
    TopicAlreadyExists(String),
    #[error("{0}")]
    InvalidPartitions(String),
    #[error("{0}")]
    InvalidReplicationFactor(String),
    #[error("{0}")]
    InvalidConfig(String),
    #[error("This server does not host this topic-partition.")]
    UnknownTopic(String),
    #[error("metadata log I/O error ({context}): {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("metadata log is corrupt: {0}")]
    Corrupt(String),
    /// This node is not the active controller and could not reach it (none elected yet,
    /// or it is unreachable): retriable once the quorum has a leader.
    #[error("{0}")]
    NotController(String),
    /// This node's raft stopped for good (a bug or a storage failure): the node must be
    /// restarted.
    #[error("{0}")]
    QuorumStopped(String),
    /// A change refused with a specific Kafka code (an AlterPartition from a stale
    /// leader, for instance).
    #[error("{message}")]
    Refused { code: i16, message: String },
    /// The active controller refused the change; its code and message, as it sent them.
    #[error("{message}")]
    Remote { code: i16, message: String },
}

impl ControllerError {
    /// The Kafka protocol error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ControllerError::InvalidTopic(_) => 17,
            ControllerError::TopicAlreadyExists(_) => 36,
            ControllerError::InvalidPartitions(_) => 37,
            ControllerError::InvalidReplicationFactor(_) => 38,
            ControllerError::InvalidConfig(_) => 40,
            ControllerError::UnknownTopic(_) => 3,
            // KAFKA_STORAGE_ERROR: the request may be retried once the disk is healthy.
            ControllerError::Io { .. } | ControllerError::Corrupt(_) => 56,
            ControllerError::NotController(_) => 41,
            // KAFKA_STORAGE_ERROR, as for a metadata log that failed.
            ControllerError::QuorumStopped(_) => 56,
            ControllerError::Remote { code, .. } | ControllerError::Refused { code, .. } => *code,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ControllerError::Io {
            context: context.into(),
            source,
        }
    }
}
