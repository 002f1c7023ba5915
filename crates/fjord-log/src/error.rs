//! The log's error type and its mapping to Kafka error codes.

/// Everything that can go wrong inside a partition log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A record batch failed validation (short, inconsistent length, bad CRC, bad offsets).
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    /// A record inside a batch is malformed: wrong count, out-of-order offset deltas, a
    /// length that disagrees with its contents, trailing data (Kafka's InvalidRecordException).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// Particular records of a batch are refused (KIP-467): their indexes in the batch, so
    /// the client can fail just those records and retry the others.
    #[error("invalid record: {message}")]
    InvalidRecords { message: String, indexes: Vec<i32> },
    /// One record inflates past the largest record the reader may hold.
    #[error("record of {size} bytes is larger than the limit of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    /// The batch uses an old message format (magic 0 or 1) that Fjord does not store.
    #[error("unsupported record batch magic {0}; only magic 2 (Kafka 0.11+) is supported")]
    UnsupportedMagic(i8),
    /// A single batch is larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes is larger than max.message.bytes {max}")]
    BatchTooLarge { size: usize, max: u32 },
    /// The requested offset lies outside `[log start, log end]`.
    #[error("offset {offset} is out of range; the log holds offsets {start} to {end}")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// A topic configuration value was rejected.
    #[error("Invalid value {value} for configuration {key}: {reason}")]
    InvalidConfig {
        key: String,
        value: String,
        reason: String,
    },
    /// An idempotent producer skipped or reordered sequence numbers.
    #[error("{0}")]
    OutOfOrderSequence(String),
    /// A batch from a producer epoch older than one already seen (a fenced zombie producer).
    #[error("{0}")]
    InvalidProducerEpoch(String),
    /// A producer's write does not fit the state of its transaction: a plain write while
    /// its transaction is open, or a transactional write without a producer id.
    #[error("{0}")]
    InvalidTxnState(String),
    /// A transaction marker from a coordinator older than one that already wrote here.
    #[error("{0}")]
    CoordinatorFenced(String),
    /// The file system failed us; the partition's storage is suspect.
    #[error("log storage error while {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The log accepts no more writes or flushes: an fsync (or an atomic file replacement)
    /// failed, so what it holds can no longer be promised durable; or it was closed; or its
    /// files are inconsistent in a way it refuses to guess about. Reopening the log (after
    /// fixing the disk) runs recovery.
    #[error("log {dir} is offline: {reason}")]
    Offline { dir: String, reason: String },
}

impl LogError {
    /// The Kafka protocol error code a broker should answer with.
    pub fn kafka_code(&self) -> i16 {
        match self {
            LogError::CorruptBatch(_) => 2,
            LogError::InvalidRecord(_) | LogError::InvalidRecords { .. } => 87,
            // MESSAGE_TOO_LARGE, as a producer's own record-size check would have answered.
            LogError::RecordTooLarge { .. } => 10,
            LogError::UnsupportedMagic(_) => 43,
            LogError::BatchTooLarge { .. } => 10,
            LogError::OffsetOutOfRange { .. } => 1,
            LogError::InvalidConfig { .. } => 40,
            LogError::OutOfOrderSequence(_) => 45,
            LogError::InvalidProducerEpoch(_) => 47,
            LogError::InvalidTxnState(_) => 48,
            LogError::CoordinatorFenced(_) => 52,
            LogError::Io { .. } | LogError::Offline { .. } => 56,
        }
    }

    /// Whether this is [`LogError::Offline`]: the log refuses writes until it is reopened.
    pub fn is_offline(&self) -> bool {
        matches!(self, LogError::Offline { .. })
    }

    /// Wraps an I/O error with what the log was doing when it happened.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> LogError {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand for attaching context to I/O results.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, LogError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T, LogError> {
        self.map_err(|e| LogError::io(context(), e))
    }
}
