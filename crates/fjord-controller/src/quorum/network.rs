//! The boundary between openraft and whatever carries its messages.
//!
//! openraft wants a [`RaftNetworkFactory`]; Fjord implements it once, here, over the
//! object-safe [`QuorumTransport`]. A transport only moves a request to a node and its
//! answer back: the simulation's lossy in-memory network is one, and the CONTROLLER
//! listener's TCP transport ([`super::tcp`]) is another, with no change to this file.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::types::{MetadataRaft, Node, NodeId};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Why a message got no answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The node cannot be reached now (down, partitioned, refused): openraft backs off.
    #[error("node {0} is unreachable: {1}")]
    Unreachable(NodeId, String),
    /// The message may or may not have arrived (lost answer, timeout, broken stream).
    #[error("message to node {0} failed: {1}")]
    Lost(NodeId, String),
}

/// The outer result is the transport's; the inner one is the remote raft's own answer.
pub type Rpc<T, E = RaftError<NodeId>> = BoxFuture<Result<Result<T, E>, TransportError>>;

/// Carries raft messages to other quorum members.
pub trait QuorumTransport: Send + Sync + 'static {
    fn append_entries(
        &self,
        target: NodeId,
        node: &Node,
        rpc: AppendEntriesRequest<MetadataRaft>,
    ) -> Rpc<AppendEntriesResponse<NodeId>>;

    fn vote(
        &self,
        target: NodeId,
        node: &Node,
        rpc: VoteRequest<NodeId>,
    ) -> Rpc<VoteResponse<NodeId>>;

    fn install_snapshot(
        &self,
        target: NodeId,
        node: &Node,
        rpc: InstallSnapshotRequest<MetadataRaft>,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;
}

/// openraft's network factory over a [`QuorumTransport`].
#[derive(Clone)]
pub struct Network {
    transport: Arc<dyn QuorumTransport>,
}

impl Network {
    pub fn new(transport: Arc<dyn QuorumTransport>) -> Network {
        Network { transport }
    }
}

/// One peer as openraft sees it.
pub struct Peer {
    transport: Arc<dyn QuorumTransport>,
    target: NodeId,
    node: Node,
}

impl RaftNetworkFactory<MetadataRaft> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> Peer {
        Peer {
            transport: self.transport.clone(),
            target,
            node: node.clone(),
        }
    }
}

// The error type is openraft's own, dictated by `RaftNetwork`.
#[allow(clippy::result_large_err)]
fn rpc_result<T, E: std::error::Error>(
    target: NodeId,
    res: Result<Result<T, RaftError<NodeId, E>>, TransportError>,
) -> Result<T, RPCError<NodeId, Node, RaftError<NodeId, E>>> {
    match res {
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(target, remote))),
        Err(e @ TransportError::Unreachable(..)) => {
            Err(RPCError::Unreachable(Unreachable::new(&e)))
        }
        Err(e @ TransportError::Lost(..)) => Err(RPCError::Network(NetworkError::new(&e))),
    }
}

impl RaftNetwork<MetadataRaft> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<MetadataRaft>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let res = self
            .transport
            .append_entries(self.target, &self.node, rpc)
            .await;
        rpc_result(self.target, res)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<MetadataRaft>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let res = self
            .transport
            .install_snapshot(self.target, &self.node, rpc)
            .await;
        rpc_result(self.target, res)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let res = self.transport.vote(self.target, &self.node, rpc).await;
        rpc_result(self.target, res)
    }
}
