//! The replicated metadata log: the metadata quorum's storage, state machine and network
//! boundary for openraft. Controllers are voters, brokers learners; the raft leader is
//! the active controller.
//!
//! Layout of one member's quorum directory:
//! - `raft.log`: CRC-framed entries, each append fsynced before openraft counts it;
//! - `raft.state`: vote, committed and purged log ids, replaced atomically;
//! - `snapshot`: the last snapshot (serialized image and its meta), replaced atomically.
//!
//! Members talk over the CONTROLLER listener with the TCP transport in `tcp.rs`
//! ([`TcpTransport`] and [`serve`]), which also carries the controller operations that a
//! non-leader forwards to the leader. [`QuorumMember`] runs one member in a server; a
//! node without `controller.quorum.voters` keeps the one-node metadata log instead.

mod dir;
mod frame;
mod log_store;
mod member;
mod network;
#[cfg(test)]
mod sim;
#[cfg(any(test, feature = "simulation"))]
pub mod sim_net;
mod state_machine;
mod tcp;
mod types;

pub use dir::{DurableDir, FsDir, MemDir};
pub use log_store::LogStore;
pub use member::{leader_lease, may_plan, own_log_applied, QuorumMember, QuorumTiming};
pub use network::{BoxFuture, Network, Peer, QuorumTransport, Rpc, TransportError};
pub use state_machine::{Applied, ApplyObserver, ImageReader, StateMachine};
pub use tcp::{
    serve, ForwardHandler, Plaintext, QuorumIo, QuorumRequest, QuorumResponse, QuorumStream,
    StreamSecurity, TcpTransport, CONNECT_TIMEOUT, HANDSHAKE_TIMEOUT, IDLE_TIMEOUT,
    LONG_RPC_TIMEOUT, MAX_CONNECTIONS, MAX_FRAME, OBSERVER_PREFACE, RPC_TIMEOUT,
};
pub use types::{BatchApplied, MetadataBatch, MetadataRaft, Node, NodeId, Raft};
