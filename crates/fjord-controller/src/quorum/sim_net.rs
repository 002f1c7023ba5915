//! A simulated network for the metadata quorum: members in one process, each message
//! and each answer delayed, lost or cut by a partition, as the seed decides. The quorum
//! simulation runs openraft over it, and so does the broker crate's whole-cluster
//! simulation (with the `simulation` feature).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::RaftError;
use parking_lot::Mutex;

use super::network::{Network, QuorumTransport, Rpc, TransportError};
use super::types::{Node, NodeId, Raft};

/// The runtime a simulation runs in: one thread, and a clock only the simulation moves.
pub fn paused_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
}

/// `FJORD_SIM_LOG=<filter>` (`openraft=debug`, say) logs a run to stderr, to see what a
/// replayed seed did; logging lasts as long as the guard.
pub fn log_from_env() -> Option<tracing::subscriber::DefaultGuard> {
    std::env::var("FJORD_SIM_LOG").ok().map(|filter| {
        tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .finish(),
        )
    })
}

/// splitmix64: tiny, seedable, and good enough to pick faults.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

pub struct NetState {
    rng: Rng,
    /// The running process of each member that is up.
    pub up: BTreeMap<NodeId, Raft>,
    /// Members in different groups cannot reach each other (no entry: group 0).
    pub group: BTreeMap<NodeId, u8>,
    /// Each leg of a message is lost with this probability, and delayed up to this long.
    pub drop_percent: u64,
    pub max_delay_ms: u64,
}

#[derive(Clone)]
pub struct SimNet(pub Arc<Mutex<NetState>>);

enum Leg {
    Deliver(Duration),
    Drop(Duration),
}

impl SimNet {
    /// A network that draws its losses and delays from `seed`.
    pub fn new(seed: u64) -> SimNet {
        SimNet(Arc::new(Mutex::new(NetState {
            rng: Rng(seed),
            up: BTreeMap::new(),
            group: BTreeMap::new(),
            drop_percent: 0,
            max_delay_ms: 10,
        })))
    }

    fn leg(&self, from: NodeId, to: NodeId) -> Leg {
        let mut guard = self.0.lock();
        let s = &mut *guard;
        let delay = Duration::from_millis(s.rng.below(s.max_delay_ms + 1));
        let drop_percent = s.drop_percent;
        let group = |id| s.group.get(&id).copied().unwrap_or(0);
        if group(from) != group(to) || s.rng.percent(drop_percent) {
            Leg::Drop(delay)
        } else {
            Leg::Deliver(delay)
        }
    }

    fn process(&self, id: NodeId) -> Option<Raft> {
        self.0.lock().up.get(&id).cloned()
    }

    /// Carries one request and its answer, each leg delayed and possibly lost; the
    /// delays differ per message, so concurrent messages arrive out of order.
    fn send<T, E, F, Fut>(&self, from: NodeId, to: NodeId, call: F) -> Rpc<T, RaftError<NodeId, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
        F: FnOnce(Raft) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, RaftError<NodeId, E>>> + Send,
    {
        let net = self.clone();
        Box::pin(async move {
            match net.leg(from, to) {
                Leg::Drop(d) => {
                    tokio::time::sleep(d).await;
                    return Err(TransportError::Lost(to, "request lost".into()));
                }
                Leg::Deliver(d) => tokio::time::sleep(d).await,
            }
            let Some(raft) = net.process(to) else {
                return Err(TransportError::Unreachable(to, "down".into()));
            };
            let res = call(raft).await;
            if let Err(RaftError::Fatal(e)) = &res {
                // The member stopped while handling it: as good as down.
                return Err(TransportError::Unreachable(to, e.to_string()));
            }
            match net.leg(to, from) {
                Leg::Drop(d) => {
                    tokio::time::sleep(d).await;
                    Err(TransportError::Lost(to, "answer lost".into()))
                }
                Leg::Deliver(d) => {
                    tokio::time::sleep(d).await;
                    Ok(res)
                }
            }
        })
    }

    /// The transport member `from` sends with.
    pub fn network(&self, from: NodeId) -> Network {
        Network::new(Arc::new(SimTransport {
            from,
            net: self.clone(),
        }))
    }
}

struct SimTransport {
    from: NodeId,
    net: SimNet,
}

impl QuorumTransport for SimTransport {
    fn append_entries(
        &self,
        target: NodeId,
        _node: &Node,
        rpc: openraft::raft::AppendEntriesRequest<super::types::MetadataRaft>,
    ) -> Rpc<openraft::raft::AppendEntriesResponse<NodeId>> {
        self.net.send(self.from, target, move |raft| async move {
            raft.append_entries(rpc).await
        })
    }

    fn vote(
        &self,
        target: NodeId,
        _node: &Node,
        rpc: openraft::raft::VoteRequest<NodeId>,
    ) -> Rpc<openraft::raft::VoteResponse<NodeId>> {
        self.net.send(self.from, target, move |raft| async move {
            raft.vote(rpc).await
        })
    }

    fn install_snapshot(
        &self,
        target: NodeId,
        _node: &Node,
        rpc: openraft::raft::InstallSnapshotRequest<super::types::MetadataRaft>,
    ) -> Rpc<
        openraft::raft::InstallSnapshotResponse<NodeId>,
        RaftError<NodeId, openraft::error::InstallSnapshotError>,
    > {
        self.net.send(self.from, target, move |raft| async move {
            raft.install_snapshot(rpc).await
        })
    }
}
