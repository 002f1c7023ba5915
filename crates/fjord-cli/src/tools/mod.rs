//! The Kafka-style command-line tools of the `fjord` binary, one module per tool, using
//! librdkafka (through the rdkafka crate) as their client; `metadata-quorum`,
//! `leader-election`, `reassign-partitions`, `features`, `acls` and the SCRAM users of
//! `configs` send DescribeQuorum, ElectLeaders, the partition reassignment requests,
//! ApiVersions, UpdateFeatures, the ACL and SCRAM requests themselves (`wire`), which the
//! rdkafka crate lacks; `wire` also logs in over TLS and SASL.

pub mod acls;
pub mod admin;
pub mod common;
pub mod configs;
pub mod console_consumer;
pub mod console_producer;
pub mod consumer_groups;
pub mod features;
pub mod leader_election;
pub mod metadata_quorum;
pub mod reassign_partitions;
pub mod scram;
pub mod topics;
pub mod wire;
