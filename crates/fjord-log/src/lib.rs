//! Fjord's partition log: segment files of Kafka v2 record batches, sparse offset and time
//! indexes, crash recovery, retention, leader-epoch tracking and group-commit flushing.
//!
//! Batches are stored byte for byte as producers sent them; only the fixed batch header is
//! parsed and patched on the append path.

pub mod batch;
mod checkpoint;
mod cleaner;
pub mod config;
mod encode;
mod error;
mod fs;
mod index;
mod log;
mod producer_state;
pub mod records;
mod segment;
#[cfg(test)]
mod testutil;
pub mod txn;

pub use batch::{BatchHeader, BATCH_HEADER_LEN};
pub use config::{LogConfig, TimestampType};
pub use error::LogError;
pub use log::{AppendInfo, CleanOptions, CleanStats, Cleanable, Log, ReadInfo, RecoverySummary};
pub use producer_state::{BatchMetadata, ProducerEntry, PRODUCER_BATCH_CACHE};
