//! The Fjord broker: it serves the Kafka wire protocol over TCP.
//!
//! The path of a request, top to bottom: [`server`] accepts connections →
//! [`connection`] reads size-prefixed frames and keeps responses in request order →
//! [`handlers`] routes by API key to one module per Kafka API family → the
//! [`replica`] manager (partition logs) and the controller (cluster metadata). Partitions
//! are copied between brokers by [`replication`].

pub mod alloc;
pub mod broker_client;
pub mod cleaner;
pub mod config;
pub mod connection;
pub mod dynamic_config;
pub mod error;
pub mod group;
pub mod handlers;
pub mod limits;
pub mod replica;
pub mod replication;
pub mod security;
pub mod server;
pub mod state;
pub mod topic_config;
pub mod txn;

pub use config::{parse_properties, BrokerConfig, ConfigError};
pub use error::BrokerError;
pub use server::Server;

/// Every binary that links the broker gets the allocator that survives forged lengths.
#[global_allocator]
static GLOBAL: alloc::LazyLargeAlloc = alloc::LazyLargeAlloc;
