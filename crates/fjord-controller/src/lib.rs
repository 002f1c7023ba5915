//! Fjord's cluster metadata: every change is a record in a replicated log, and the
//! brokers read an in-memory image built by applying those records in order.
//!
//! This is the job KRaft does for Kafka. The single-node default is a quorum of one
//! voter: a record is committed once it is fsynced to the local metadata log.

pub mod acl;
mod controller;
mod error;
pub mod features;
mod image;
pub mod liveness;
mod log;
mod ops;
pub mod partitions;
pub mod quorum;
mod record;

pub use controller::{validate_topic_name, Controller, CreatePartitionsSpec, CreateTopicSpec};
pub use error::ControllerError;
pub use image::{BrokerImage, MetadataImage, PartitionImage, TopicImage};
pub use log::MetadataLog;
pub use ops::{ControllerOp, OpOutput, OpReply, PartitionOutcome, QuorumStatus, ReplicaStatus};
pub use record::{
    ConfigResource, ListenerEndpoint, MetadataRecord, ScramCredential, ScramMechanism,
};
