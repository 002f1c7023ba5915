//! The replicated metadata log: the metadata quorum's storage, state machine and network
//! boundary for openraft. Controllers are voters, brokers learners; the raft leader is
//! the active controller.
//!
//! Layout of one member's quorum directory:
//! - `raft.log`: CRC-framed entries, each append fsynced before openraft counts it;
//! - `raft.state`: vote, committed and purged log ids, replaced atomically;
//! - `snapshot`: the last snapshot (serialized image and its meta), replaced atomically.
//!
//! Not yet wired into the server: the single-node `Controller` still owns the metadata
//! log there.

mod dir;
mod frame;
mod log_store;
mod network;
#[cfg(test)]
mod sim;
mod state_machine;
mod types;

pub use dir::{DurableDir, FsDir, MemDir};
pub use log_store::LogStore;
pub use network::{BoxFuture, Network, Peer, QuorumTransport, Rpc, TransportError};
pub use state_machine::{Applied, ApplyObserver, ImageReader, StateMachine};
pub use types::{BatchApplied, MetadataBatch, MetadataRaft, Node, NodeId, Raft};
