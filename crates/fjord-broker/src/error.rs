//! The broker's error type and the Kafka error codes it answers with.

use std::io;

/// Kafka protocol error codes used by Fjord (names as in Kafka's `Errors` enum).
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const RECORD_LIST_TOO_LARGE: i16 = 18;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const INVALID_REQUIRED_ACKS: i16 = 21;
    pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
    pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const INVALID_REQUEST: i16 = 42;
    pub const INVALID_REPLICA_ASSIGNMENT: i16 = 39;
    pub const INVALID_CONFIG: i16 = 40;
    pub const POLICY_VIOLATION: i16 = 44;
    pub const INVALID_RECORD: i16 = 87;
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const TOPIC_DELETION_DISABLED: i16 = 73;
    pub const UNKNOWN_LEADER_EPOCH: i16 = 75;
    pub const FENCED_LEADER_EPOCH: i16 = 74;
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    pub const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
    pub const UNKNOWN_TOPIC_ID: i16 = 100;
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
    pub const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    pub const SECURITY_DISABLED: i16 = 54;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const UNKNOWN_SERVER_ERROR: i16 = -1;
    pub const UNSUPPORTED_ENDPOINT_TYPE: i16 = 115;
    pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    pub const INVALID_GROUP_ID: i16 = 24;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    pub const FENCED_INSTANCE_ID: i16 = 82;
    pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;
    pub const FENCED_MEMBER_EPOCH: i16 = 110;
    pub const UNRELEASED_INSTANCE_ID: i16 = 111;
    pub const UNSUPPORTED_ASSIGNOR: i16 = 112;
    pub const STALE_MEMBER_EPOCH: i16 = 113;
    pub const INVALID_REGULAR_EXPRESSION: i16 = 128;
    pub const UNSTABLE_OFFSET_COMMIT: i16 = 88;
    // The transaction coordinator's answers.
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
    pub const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
    pub const OPERATION_NOT_ATTEMPTED: i16 = 55;
    pub const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
    pub const ILLEGAL_SASL_STATE: i16 = 34;
    pub const SASL_AUTHENTICATION_FAILED: i16 = 58;
    pub const PRODUCER_FENCED: i16 = 90;
    pub const RESOURCE_NOT_FOUND: i16 = 91;
    pub const DUPLICATE_RESOURCE: i16 = 92;
    pub const UNACCEPTABLE_CREDENTIAL: i16 = 93;
    pub const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// An error a client sees: its Kafka code and a message for the `error_message` field.
    #[error("{1}")]
    Kafka(i16, String),
    /// INVALID_RECORD for particular records of a batch (KIP-467), by index in the batch.
    #[error("{0}")]
    InvalidRecords(String, Vec<i32>),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Controller(#[from] fjord_controller::ControllerError),
    #[error("{0}")]
    Startup(String),
    /// The data directory belongs to another node, cluster or kind of metadata than the
    /// configuration says: a setting to fix, like a bad property (exit code 2).
    #[error("{0}")]
    WrongDirectory(String),
    /// A cluster member's data directory failed under it (a full disk, an I/O error):
    /// the node stopped so that the other replicas take over.
    #[error("{0}")]
    StorageFailed(String),
}

impl BrokerError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        BrokerError::Io {
            context: context.into(),
            source,
        }
    }

    /// The code a client is answered with.
    pub fn kafka_code(&self) -> i16 {
        match self {
            BrokerError::Kafka(c, _) => *c,
            BrokerError::InvalidRecords(..) => code::INVALID_RECORD,
            BrokerError::Controller(e) => e.kafka_code(),
            BrokerError::Io { .. } => code::KAFKA_STORAGE_ERROR,
            BrokerError::Config(_) => code::INVALID_CONFIG,
            BrokerError::StorageFailed(_) => code::KAFKA_STORAGE_ERROR,
            BrokerError::Startup(_) | BrokerError::WrongDirectory(_) => code::UNKNOWN_SERVER_ERROR,
        }
    }
}
