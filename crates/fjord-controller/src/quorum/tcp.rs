//! The metadata quorum over TCP: what the CONTROLLER listener speaks.
//!
//! Each message is a frame: a 4-byte big-endian length, then a serde_json body. A
//! connection carries one request at a time, answered in order, so no request ids are
//! needed. JSON keeps the wire readable and reuses openraft's own serde support; the
//! quorum carries metadata, not record data, so its size does not matter much.
//!
//! The client keeps one connection per target and drops it on any error, so a broken or
//! half-read stream is never reused. What a connection runs over once connected (TCP
//! itself, or TLS and a login) is the node's [`StreamSecurity`]; frames are the same. The server answers from the local [`Raft`] and, for
//! [`QuorumRequest::Forward`], from a [`ForwardHandler`]: a member that is not the leader
//! forwards an opaque controller operation to the leader, and the bytes mean nothing here.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use super::network::{BoxFuture, QuorumTransport, Rpc, TransportError};
use super::types::{MetadataRaft, Node, NodeId, Raft};

/// The largest frame either side accepts. Far above any real message (openraft sends
/// snapshots in chunks of a few MiB), and low enough that a corrupt or hostile length
/// cannot make the reader allocate without bound.
pub const MAX_FRAME: usize = 64 * 1024 * 1024;

/// Connecting to a live member on the controller network is quick; a slow connect means
/// it is down, and openraft should hear so soon.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A vote or an append (a heartbeat, or a batch of entries) and its answer.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(5);

/// A snapshot chunk, or a forwarded operation that waits for its commit on the leader.
pub const LONG_RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections one server holds open at once: every quorum member and broker needs one
/// or two; the bound keeps a flood of connections from exhausting file descriptors.
pub const MAX_CONNECTIONS: usize = 256;

/// A server connection with no request for this long is closed, so that dead or idle
/// peers do not hold one of the [`MAX_CONNECTIONS`] slots forever. The client notices a
/// closed idle connection before reusing it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A secured connection accepting or opening a quorum connection may take this long (a
/// TLS handshake and a login); a peer that stalls there is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sent in the clear before anything else on a connection to an observer (a broker-only
/// node), which receives the metadata log on its inter-broker listener, beside Kafka
/// clients: it tells the quorum's connection apart before the controller listener's TLS
/// and login begin. No Kafka request (its size's top byte), TLS record (0x16) or quorum
/// frame (a length below 256 MiB) starts with 0xF7.
pub const OBSERVER_PREFACE: [u8; 4] = [0xF7, b'F', b'Q', b'1'];

/// The byte stream a quorum connection's frames travel on.
pub trait QuorumIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> QuorumIo for T {}
pub type QuorumStream = Box<dyn QuorumIo>;

/// How a node secures its quorum connections (the controller listener's TLS and SASL):
/// given a connected or accepted TCP stream, the stream to carry frames on, or why the
/// peer is refused. The transport knows nothing of certificates or logins.
pub trait StreamSecurity: Send + Sync + 'static {
    /// An outgoing connection to `host`.
    fn connect(&self, tcp: TcpStream, host: String) -> BoxFuture<Result<QuorumStream, String>>;
    /// An accepted connection from `peer`.
    fn accept(&self, tcp: TcpStream, peer: SocketAddr) -> BoxFuture<Result<QuorumStream, String>>;
}

/// Frames straight over TCP: a PLAINTEXT controller listener.
pub struct Plaintext;

impl StreamSecurity for Plaintext {
    fn connect(&self, tcp: TcpStream, _host: String) -> BoxFuture<Result<QuorumStream, String>> {
        Box::pin(async move { Ok(Box::new(tcp) as QuorumStream) })
    }

    fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> BoxFuture<Result<QuorumStream, String>> {
        Box::pin(async move { Ok(Box::new(tcp) as QuorumStream) })
    }
}

/// A request to a quorum member.
#[derive(Debug, Serialize, Deserialize)]
pub enum QuorumRequest {
    AppendEntries(AppendEntriesRequest<MetadataRaft>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<MetadataRaft>),
    /// An opaque controller operation for the leader; see [`ForwardHandler`].
    Forward(Vec<u8>),
}

/// The answer to a [`QuorumRequest`] of the same variant: the remote raft's own result,
/// or the forward handler's opaque answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum QuorumResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Forward(Vec<u8>),
}

/// Serves forwarded controller operations. The transport neither reads nor validates the
/// bytes: their meaning, and how failures are encoded in the answer, are the
/// controller's.
pub trait ForwardHandler: Send + Sync + 'static {
    fn handle(&self, op: Vec<u8>) -> BoxFuture<Vec<u8>>;
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(u64),
    #[error("malformed frame: {0}")]
    Malformed(serde_json::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Encodes `msg` as one frame, length prefix included, so that it goes out in one write.
fn encode_frame<T: Serialize>(msg: &T) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 4];
    serde_json::to_writer(&mut buf, msg).map_err(|e| format!("cannot encode: {e}"))?;
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(format!(
            "message of {len} bytes exceeds the {MAX_FRAME}-byte limit"
        ));
    }
    // MAX_FRAME fits in a u32, so this cannot truncate.
    buf[..4].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(buf)
}

/// Reads one frame. The length is checked before anything is allocated for the body.
async fn read_frame<T, R>(r: &mut R) -> Result<T, FrameError>
where
    T: for<'de> Deserialize<'de>,
    R: AsyncRead + Unpin,
{
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    // Read as unsigned: a length that is negative as an i32 is above the limit too.
    let len = u32::from_be_bytes(len) as u64;
    if len > MAX_FRAME as u64 {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await?;
    serde_json::from_slice(&body).map_err(FrameError::Malformed)
}

/// A pooled connection and the address it was opened to: if a member's address changes,
/// the next call connects to the new one.
struct Conn {
    addr: String,
    stream: QuorumStream,
    /// The TCP socket under `stream` (owned by it), to look for a close while idle.
    fd: RawFd,
}

type Slot = Arc<tokio::sync::Mutex<Option<Conn>>>;

/// The client side: carries openraft's messages, and forwarded operations, to other
/// members over TCP. Cheap to clone; clones share the connections.
#[derive(Clone)]
pub struct TcpTransport {
    conns: Arc<parking_lot::Mutex<HashMap<NodeId, Slot>>>,
    security: Arc<dyn StreamSecurity>,
    /// The quorum's voters, when known: raft's messages to any other member go to an
    /// observer, opened with [`OBSERVER_PREFACE`].
    voters: Option<Arc<HashSet<NodeId>>>,
}

impl Default for TcpTransport {
    fn default() -> TcpTransport {
        TcpTransport::new(Arc::new(Plaintext))
    }
}

impl TcpTransport {
    pub fn new(security: Arc<dyn StreamSecurity>) -> TcpTransport {
        TcpTransport {
            conns: Arc::default(),
            security,
            voters: None,
        }
    }

    /// Names the voters: raft's messages to other members then open with
    /// [`OBSERVER_PREFACE`]. Only voters send raft's messages, and they know the voters.
    pub fn with_voters(mut self, voters: impl IntoIterator<Item = NodeId>) -> TcpTransport {
        self.voters = Some(Arc::new(voters.into_iter().collect()));
        self
    }

    /// Whether raft's messages to `target` go to an observer.
    fn to_observer(&self, target: NodeId) -> bool {
        self.voters.as_ref().is_some_and(|v| !v.contains(&target))
    }

    /// Sends an opaque controller operation to `target` (normally the leader) at `addr`
    /// and returns its [`ForwardHandler`]'s answer. Never retried here: the operation may
    /// not be idempotent, so after [`TransportError::Lost`] the caller decides.
    pub async fn forward(
        &self,
        target: NodeId,
        addr: &str,
        op: Vec<u8>,
    ) -> Result<Vec<u8>, TransportError> {
        self.forward_within(target, addr, op, LONG_RPC_TIMEOUT)
            .await
    }

    /// [`TcpTransport::forward`] with its own time limit, for operations that are
    /// worthless late (a heartbeat) and must not wait out a frozen controller.
    pub async fn forward_within(
        &self,
        target: NodeId,
        addr: &str,
        op: Vec<u8>,
        limit: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let req = QuorumRequest::Forward(op);
        // Operations go to controllers, never to an observer.
        match self.call(target, addr, &req, limit, false).await? {
            QuorumResponse::Forward(answer) => Ok(answer),
            other => Err(mismatch(target, &other)),
        }
    }

    fn slot(&self, target: NodeId) -> Slot {
        self.conns.lock().entry(target).or_default().clone()
    }

    /// One request and its answer within `limit`, waiting for the connection included;
    /// `observer` says the target is one.
    async fn call(
        &self,
        target: NodeId,
        addr: &str,
        req: &QuorumRequest,
        limit: Duration,
        observer: bool,
    ) -> Result<QuorumResponse, TransportError> {
        let frame = encode_frame(req).map_err(|e| TransportError::Lost(target, e))?;
        let deadline = Instant::now() + limit;
        let slot = self.slot(target);
        let Ok(mut conn) = tokio::time::timeout_at(deadline, slot.lock()).await else {
            return Err(TransportError::Lost(
                target,
                "timed out waiting for the connection".into(),
            ));
        };
        // On any failure, the time limit included, `exchange` has dropped the stream: it
        // may hold part of a request or of an answer.
        let exchanged = exchange(&mut conn, target, addr, &frame, &*self.security, observer);
        tokio::time::timeout_at(deadline, exchanged)
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::Lost(
                    target,
                    format!("no answer within {limit:?}"),
                ))
            })
    }
}

/// Whether a pooled connection still looks usable: an idle connection that the peer
/// closed (restart, idle timeout) reads as end of stream, and must not take the next
/// request, which would then be lost rather than refused.
/// The socket is looked at, not the stream over it: with TLS, a peer's close arrives as
/// an alert record, which is as unasked-for as any other byte.
fn still_open(fd: RawFd) -> bool {
    let mut probe = [0u8; 1];
    // SAFETY: `fd` is the socket of a stream the caller holds, so it is open; MSG_PEEK
    // leaves the byte, if any, where it is, and MSG_DONTWAIT never blocks.
    let n = unsafe {
        libc::recv(
            fd,
            probe.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    // End of stream, or bytes nobody asked for: either way the stream is unusable.
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

async fn connect(
    target: NodeId,
    addr: &str,
    security: &dyn StreamSecurity,
    observer: bool,
) -> Result<Conn, TransportError> {
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(TransportError::Unreachable(target, format!("{addr}: {e}"))),
        Err(_) => {
            return Err(TransportError::Unreachable(
                target,
                format!("{addr}: connect timed out after {CONNECT_TIMEOUT:?}"),
            ))
        }
    };
    // Requests are small and latency-bound (heartbeats): do not let Nagle hold them.
    stream
        .set_nodelay(true)
        .map_err(|e| TransportError::Unreachable(target, format!("{addr}: {e}")))?;
    if observer {
        // Four bytes into an empty socket buffer: only a dead peer makes this fail.
        stream
            .write_all(&OBSERVER_PREFACE)
            .await
            .map_err(|e| TransportError::Unreachable(target, format!("{addr}: {e}")))?;
    }
    let fd = stream.as_raw_fd();
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
    // Nothing of a request has been sent yet: a refused handshake is an unreachable
    // member, retried like one.
    let secured = tokio::time::timeout(HANDSHAKE_TIMEOUT, security.connect(stream, host));
    let stream = match secured.await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(TransportError::Unreachable(target, format!("{addr}: {e}"))),
        Err(_) => {
            return Err(TransportError::Unreachable(
                target,
                format!("{addr}: no handshake within {HANDSHAKE_TIMEOUT:?}"),
            ))
        }
    };
    Ok(Conn {
        addr: addr.to_string(),
        stream,
        fd,
    })
}

/// One request and its answer over the pooled connection, opening one if needed.
///
/// The connection is taken out of the pool for the exchange and put back only once the
/// whole answer has been read. A caller that gives up midway (openraft wraps every RPC
/// in its own timeout and drops the future) thereby drops the connection with it: left
/// in the pool, it would still carry the unread answer to the abandoned request, and the
/// next request would take that answer as its own.
async fn exchange(
    conn: &mut Option<Conn>,
    target: NodeId,
    addr: &str,
    frame: &[u8],
    security: &dyn StreamSecurity,
    observer: bool,
) -> Result<QuorumResponse, TransportError> {
    let mut c = match conn.take() {
        Some(c) if c.addr == addr && still_open(c.fd) => c,
        _ => connect(target, addr, security, observer).await?,
    };
    // From here on the request may have reached the peer, partly or wholly.
    let lost = |e: String| TransportError::Lost(target, format!("{addr}: {e}"));
    c.stream
        .write_all(frame)
        .await
        .map_err(|e| lost(e.to_string()))?;
    // TLS may hold the request's last record until flushed.
    c.stream.flush().await.map_err(|e| lost(e.to_string()))?;
    let answer = read_frame(&mut c.stream)
        .await
        .map_err(|e| lost(e.to_string()))?;
    *conn = Some(c);
    Ok(answer)
}

fn mismatch(target: NodeId, resp: &QuorumResponse) -> TransportError {
    let kind = match resp {
        QuorumResponse::AppendEntries(_) => "AppendEntries",
        QuorumResponse::Vote(_) => "Vote",
        QuorumResponse::InstallSnapshot(_) => "InstallSnapshot",
        QuorumResponse::Forward(_) => "Forward",
    };
    TransportError::Lost(target, format!("answer of the wrong kind: {kind}"))
}

/// A stopped remote raft answers every message with a fatal error: to openraft that is a
/// member that is down, so report it as unreachable and let it back off.
fn raft_result<T, E>(
    target: NodeId,
    res: Result<T, RaftError<NodeId, E>>,
) -> Result<Result<T, RaftError<NodeId, E>>, TransportError> {
    match res {
        Err(RaftError::Fatal(e)) => Err(TransportError::Unreachable(target, e.to_string())),
        res => Ok(res),
    }
}

impl QuorumTransport for TcpTransport {
    fn append_entries(
        &self,
        target: NodeId,
        node: &Node,
        rpc: AppendEntriesRequest<MetadataRaft>,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let this = self.clone();
        let addr = node.addr.clone();
        Box::pin(async move {
            let req = QuorumRequest::AppendEntries(rpc);
            let observer = this.to_observer(target);
            match this
                .call(target, &addr, &req, RPC_TIMEOUT, observer)
                .await?
            {
                QuorumResponse::AppendEntries(res) => raft_result(target, res),
                other => Err(mismatch(target, &other)),
            }
        })
    }

    fn vote(
        &self,
        target: NodeId,
        node: &Node,
        rpc: VoteRequest<NodeId>,
    ) -> Rpc<VoteResponse<NodeId>> {
        let this = self.clone();
        let addr = node.addr.clone();
        Box::pin(async move {
            let req = QuorumRequest::Vote(rpc);
            let observer = this.to_observer(target);
            match this
                .call(target, &addr, &req, RPC_TIMEOUT, observer)
                .await?
            {
                QuorumResponse::Vote(res) => raft_result(target, res),
                other => Err(mismatch(target, &other)),
            }
        })
    }

    fn install_snapshot(
        &self,
        target: NodeId,
        node: &Node,
        rpc: InstallSnapshotRequest<MetadataRaft>,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        let this = self.clone();
        let addr = node.addr.clone();
        Box::pin(async move {
            let req = QuorumRequest::InstallSnapshot(rpc);
            let observer = this.to_observer(target);
            match this
                .call(target, &addr, &req, LONG_RPC_TIMEOUT, observer)
                .await?
            {
                QuorumResponse::InstallSnapshot(res) => raft_result(target, res),
                other => Err(mismatch(target, &other)),
            }
        })
    }
}

/// The server side: accepts quorum connections on `listener` and answers them from
/// `raft` and `forward` until `shutdown` resolves. Then it stops accepting, closes the
/// open connections (a request being handled is abandoned, as if the peer had lost the
/// answer) and returns once they are all gone.
pub async fn serve(
    listener: TcpListener,
    raft: Raft,
    forward: Arc<dyn ForwardHandler>,
    security: Arc<dyn StreamSecurity>,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        // Take the slot before accepting: at the limit, new peers wait in the backlog
        // instead of costing a descriptor each.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = slots.clone().acquire_owned() => permit,
        };
        // The semaphore is never closed.
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            res = listener.accept() => res,
        };
        match accepted {
            Ok((stream, peer)) => {
                let raft = raft.clone();
                let forward = forward.clone();
                let security = security.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.wait_for(|stopped| *stopped) => {}
                        _ = serve_connection(stream, peer, raft, forward, &*security) => {}
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of descriptors or a peer that reset before accept: both pass, and a
                // short pause keeps a persistent error from spinning the loop.
                tracing::warn!("quorum listener: accept failed: {e}");
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it ends: all slots back means all closed.
    let _ = slots.acquire_many(MAX_CONNECTIONS as u32).await;
}

/// Answers one connection's requests in order until it closes, idles out or sends
/// something that is not a request; the last two are logged and close this connection
/// only.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    raft: Raft,
    forward: Arc<dyn ForwardHandler>,
    security: &dyn StreamSecurity,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::warn!("quorum connection from {peer}: {e}");
        return;
    }
    let mut stream =
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, security.accept(stream, peer)).await {
            Ok(Ok(s)) => s,
            Ok(Err(why)) => {
                tracing::warn!("quorum connection from {peer} refused: {why}");
                return;
            }
            Err(_) => {
                tracing::warn!(
                "quorum connection from {peer}: no handshake within {HANDSHAKE_TIMEOUT:?}; closed"
            );
                return;
            }
        };
    loop {
        let req = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Err(_) => {
                tracing::debug!("quorum connection from {peer}: idle, closed");
                return;
            }
            Ok(Ok(req)) => req,
            Ok(Err(FrameError::Closed)) => return,
            Ok(Err(e)) => {
                tracing::warn!("quorum connection from {peer}: {e}; closing it");
                return;
            }
        };
        let resp = match req {
            QuorumRequest::AppendEntries(rpc) => {
                QuorumResponse::AppendEntries(raft.append_entries(rpc).await)
            }
            QuorumRequest::Vote(rpc) => QuorumResponse::Vote(raft.vote(rpc).await),
            QuorumRequest::InstallSnapshot(rpc) => {
                QuorumResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            QuorumRequest::Forward(op) => QuorumResponse::Forward(forward.handle(op).await),
        };
        let frame = match encode_frame(&resp) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!("quorum connection from {peer}: answer: {e}; closing it");
                return;
            }
        };
        if let Err(e) = async {
            stream.write_all(&frame).await?;
            stream.flush().await
        }
        .await
        {
            tracing::debug!("quorum connection from {peer}: {e}");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{Config, ServerState};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;
    use uuid::Uuid;

    use super::*;
    use crate::quorum::StateMachine;
    use crate::quorum::{DurableDir, ImageReader, LogStore, MemDir, MetadataBatch, Network};
    use crate::record::MetadataRecord;

    /// Generous: two loaded cores can stall a runtime for a while, and every wait below
    /// is for a condition, ended as soon as it holds.
    const DEADLINE: Duration = Duration::from_secs(10);

    fn config() -> Arc<Config> {
        let config = Config {
            cluster_name: "tcp-test".into(),
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            ..Default::default()
        };
        Arc::new(config.validate().expect("valid config"))
    }

    /// Answers a forwarded operation with its bytes reversed.
    struct Reverse;

    impl ForwardHandler for Reverse {
        fn handle(&self, mut op: Vec<u8>) -> BoxFuture<Vec<u8>> {
            op.reverse();
            Box::pin(async move { op })
        }
    }

    struct TestNode {
        id: NodeId,
        raft: Raft,
        reader: ImageReader,
        stop: Option<oneshot::Sender<()>>,
        server: Option<JoinHandle<()>>,
    }

    impl TestNode {
        /// Stops the member the way a process exit would: raft first, then its listener
        /// and every connection to it.
        async fn stop(&mut self) {
            self.raft.shutdown().await.expect("raft shutdown");
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(server) = self.server.take() {
                tokio::time::timeout(DEADLINE, server)
                    .await
                    .expect("server stops in time")
                    .expect("server task");
            }
        }
    }

    async fn listen() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        (listener, addr)
    }

    async fn start(id: NodeId, listener: TcpListener) -> TestNode {
        let dir: Arc<dyn DurableDir> = Arc::new(MemDir::new(format!("tcp-{id}")));
        let log = LogStore::open(dir.clone()).expect("log store");
        let sm = StateMachine::open(dir, None).expect("state machine");
        let reader = sm.reader();
        let transport = Arc::new(TcpTransport::default());
        let raft = Raft::new(id, config(), Network::new(transport), log, sm)
            .await
            .expect("raft");
        let (stop_tx, stop_rx) = oneshot::channel();
        let server = tokio::spawn(serve(
            listener,
            raft.clone(),
            Arc::new(Reverse),
            Arc::new(Plaintext),
            async {
                let _ = stop_rx.await;
            },
        ));
        TestNode {
            id,
            raft,
            reader,
            stop: Some(stop_tx),
            server: Some(server),
        }
    }

    /// Three members on loopback, initialized with all three as voters.
    async fn cluster() -> Vec<TestNode> {
        let mut listeners = Vec::new();
        let mut voters = BTreeMap::new();
        for id in 1..=3 {
            let (listener, addr) = listen().await;
            listeners.push((id, listener));
            voters.insert(id, Node::new(addr));
        }
        let mut nodes = Vec::new();
        for (id, listener) in listeners {
            nodes.push(start(id, listener).await);
        }
        nodes[0].raft.initialize(voters).await.expect("initialize");
        nodes
    }

    /// Waits for one of `nodes` to lead in a term above `after_term`, and for the others
    /// to know it.
    async fn leader(nodes: &[&TestNode], after_term: u64) -> (NodeId, u64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let metrics: Vec<_> = nodes
                .iter()
                .map(|n| n.raft.metrics().borrow().clone())
                .collect();
            let leader = metrics
                .iter()
                .find(|m| m.state == ServerState::Leader && m.current_term > after_term);
            if let Some(l) = leader {
                if metrics.iter().all(|m| m.current_leader == Some(l.id)) {
                    return (l.id, l.current_term);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader after term {after_term} within {DEADLINE:?}: {metrics:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn topic(k: u128) -> MetadataBatch {
        MetadataBatch {
            records: vec![MetadataRecord::Topic {
                name: format!("t{k}"),
                topic_id: Uuid::from_u128(k),
                configs: BTreeMap::new(),
            }],
        }
    }

    /// Writes one topic through whichever member leads, retrying across elections: on
    /// loaded cores a leader may lose its term between the check and the write.
    async fn write(nodes: &[&TestNode], k: u128) -> u64 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let (id, _) = leader(nodes, 0).await;
            let Some(node) = nodes.iter().find(|n| n.id == id) else {
                unreachable!("the leader is one of the nodes");
            };
            match tokio::time::timeout_at(deadline, node.raft.client_write(topic(k))).await {
                Ok(Ok(resp)) => return resp.log_id.index,
                Ok(Err(e)) => assert!(
                    Instant::now() < deadline,
                    "topic t{k} not written within {DEADLINE:?}: {e}"
                ),
                Err(_) => panic!("topic t{k} not written within {DEADLINE:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every one of `nodes` has applied topic `k`.
    async fn applied_everywhere(nodes: &[&TestNode], k: u128) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let missing: BTreeSet<NodeId> = nodes
                .iter()
                .filter(|n| n.reader.image().topic_by_id(&Uuid::from_u128(k)).is_none())
                .map(|n| n.id)
                .collect();
            if missing.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "topic t{k} not applied on {missing:?} within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_members_elect_and_replicate_over_tcp() {
        let mut nodes = cluster().await;
        let all: Vec<&TestNode> = nodes.iter().collect();
        leader(&all, 0).await;
        let index = write(&all, 1).await;
        applied_everywhere(&all, 1).await;
        for n in &all {
            let applied = n.reader.last_applied().map(|l| l.index);
            assert!(applied >= Some(index), "node {} applied {applied:?}", n.id);
        }
        for n in &mut nodes {
            n.stop().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_new_leader_takes_over_when_the_leader_stops() {
        let mut nodes = cluster().await;
        let all: Vec<&TestNode> = nodes.iter().collect();
        write(&all, 1).await;
        applied_everywhere(&all, 1).await;
        let (old, term) = leader(&all, 0).await;

        let Some(pos) = nodes.iter().position(|n| n.id == old) else {
            unreachable!("the leader is one of the nodes");
        };
        let mut stopped = nodes.remove(pos);
        stopped.stop().await;

        let rest: Vec<&TestNode> = nodes.iter().collect();
        let (new, _) = leader(&rest, term).await;
        assert_ne!(new, old);
        write(&rest, 2).await;
        applied_everywhere(&rest, 2).await;
        for n in &mut nodes {
            n.stop().await;
        }
    }

    /// One member that is never initialized: enough to answer votes and forwards.
    async fn single() -> (TestNode, String) {
        let (listener, addr) = listen().await;
        (start(1, listener).await, addr)
    }

    async fn vote(transport: &TcpTransport, addr: &str) {
        let rpc = VoteRequest::new(openraft::Vote::new(1, 99), None);
        let res = transport.vote(1, &Node::new(addr), rpc).await;
        assert!(matches!(res, Ok(Ok(_))), "vote failed: {res:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forward_round_trip() {
        let (mut node, addr) = single().await;
        let transport = TcpTransport::default();
        let answer = transport.forward(1, &addr, b"abc".to_vec()).await;
        assert_eq!(answer.ok(), Some(b"cba".to_vec()));
        // The same pooled connection serves the next request.
        let answer = transport.forward(1, &addr, vec![1, 2, 3, 4]).await;
        assert_eq!(answer.ok(), Some(vec![4, 3, 2, 1]));
        let answer = transport.forward(1, &addr, Vec::new()).await;
        assert_eq!(answer.ok(), Some(Vec::new()));
        node.stop().await;
    }

    /// Sends raw bytes and waits for the server to close the connection without an
    /// answer.
    async fn closed_after(addr: &str, bytes: &[u8]) {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(bytes).await.expect("write");
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buf))
            .await
            .expect("the server closes the connection in time");
        // End of stream, or a reset if the server closed with unread bytes pending.
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the server answered {read:?} to {bytes:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_frames_close_only_their_connection() {
        let (mut node, addr) = single().await;
        let transport = TcpTransport::default();
        // A pooled connection opened before the bad ones must survive them.
        vote(&transport, &addr).await;

        closed_after(&addr, &0x7fff_ffffu32.to_be_bytes()).await;
        closed_after(&addr, &0xffff_ffffu32.to_be_bytes()).await;
        let mut garbage = 9u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"{not json");
        closed_after(&addr, &garbage).await;
        let mut unknown = Vec::new();
        let body = br#"{"Shutdown":null}"#;
        unknown.extend_from_slice(&(body.len() as u32).to_be_bytes());
        unknown.extend_from_slice(body);
        closed_after(&addr, &unknown).await;

        vote(&transport, &addr).await;
        let answer = transport.forward(1, &addr, b"still here".to_vec()).await;
        assert_eq!(answer.ok(), Some(b"ereh llits".to_vec()));
        // And a fresh connection is accepted too.
        vote(&TcpTransport::default(), &addr).await;
        node.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unreachable_then_lost_are_told_apart() {
        // Bound then dropped: nothing listens there, so the connect is refused.
        let (listener, addr) = listen().await;
        drop(listener);
        let transport = TcpTransport::default();
        let res = transport.forward(7, &addr, vec![1]).await;
        assert!(
            matches!(res, Err(TransportError::Unreachable(7, _))),
            "{res:?}"
        );

        // A peer that reads the request and closes without answering: lost.
        let (listener, addr) = listen().await;
        let peer = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let req: Result<QuorumRequest, _> = read_frame(&mut stream).await;
            assert!(matches!(req, Ok(QuorumRequest::Forward(_))));
        });
        let res = transport.forward(7, &addr, vec![1]).await;
        assert!(matches!(res, Err(TransportError::Lost(7, _))), "{res:?}");
        peer.await.expect("peer");
    }

    /// A peer that answers one request per connection and then closes it, as a restarted
    /// member or the server's idle timeout would.
    async fn one_answer_per_connection(listener: TcpListener, connections: usize) {
        for _ in 0..connections {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let req: Result<QuorumRequest, _> = read_frame(&mut stream).await;
            let Ok(QuorumRequest::Forward(mut op)) = req else {
                panic!("expected a forward, got {req:?}");
            };
            op.reverse();
            let frame = encode_frame(&QuorumResponse::Forward(op)).expect("encode");
            stream.write_all(&frame).await.expect("answer");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pooled_connection_the_peer_closed_is_replaced() {
        let (listener, addr) = listen().await;
        let peer = tokio::spawn(one_answer_per_connection(listener, 2));
        let transport = TcpTransport::default();
        let answer = transport.forward(3, &addr, vec![1, 2]).await;
        assert_eq!(answer.ok(), Some(vec![2, 1]));

        // Wait until the close is visible on the pooled stream; it is not yet reused.
        let slot = transport.slot(3);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let closed = {
                let conn = slot.lock().await;
                conn.as_ref().is_some_and(|c| !still_open(c.fd))
            };
            if closed {
                break;
            }
            assert!(Instant::now() < deadline, "the close was never seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Sent on a new connection, not lost on the closed one.
        let answer = transport.forward(3, &addr, vec![3, 4]).await;
        assert_eq!(answer.ok(), Some(vec![4, 3]));
        peer.await.expect("peer");
    }

    /// A peer that answers every request on every connection, the one carrying `[1]`
    /// only after `delay`.
    async fn slow_to_answer_one(listener: TcpListener, delay: Duration) {
        loop {
            let (mut stream, _) = listener.accept().await.expect("accept");
            tokio::spawn(async move {
                while let Ok(QuorumRequest::Forward(mut op)) = read_frame(&mut stream).await {
                    if op == [1] {
                        tokio::time::sleep(delay).await;
                    }
                    op.reverse();
                    let frame = encode_frame(&QuorumResponse::Forward(op)).expect("encode");
                    if stream.write_all(&frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_abandoned_request_never_lends_its_answer_to_the_next() {
        let (listener, addr) = listen().await;
        let peer = tokio::spawn(slow_to_answer_one(listener, Duration::from_millis(300)));
        let transport = TcpTransport::default();
        // The caller gives up, as openraft's own RPC timeout does, by dropping the call.
        let abandoned = tokio::time::timeout(
            Duration::from_millis(50),
            transport.forward(5, &addr, vec![1]),
        )
        .await;
        assert!(
            abandoned.is_err(),
            "the slow answer came early: {abandoned:?}"
        );
        let answer = transport.forward(5, &addr, vec![2, 3]).await;
        assert_eq!(answer.ok(), Some(vec![3, 2]));
        // And once more after the late answer has certainly been sent.
        tokio::time::sleep(Duration::from_millis(400)).await;
        let answer = transport.forward(5, &addr, vec![4, 5]).await;
        assert_eq!(answer.ok(), Some(vec![5, 4]));
        peer.abort();
    }
}
