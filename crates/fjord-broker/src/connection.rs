//! One client connection: reads size-prefixed request frames and runs them in arrival
//! order, and writes the responses back strictly in request order (pipelining clients
//! match responses to requests by order as well as by correlation id).
//!
//! Requests on one connection take effect one after another, as on a Kafka broker: each
//! waits for its predecessor's [`Turn`] before it starts. A handler may pass the turn on
//! before it has answered, once only waiting is left (Produce after its append, Fetch
//! before its long poll), so pipelined produces still share an fsync.
//!
//! What one client can make the broker hold is bounded: requests in flight by count and
//! by bytes (per connection, and `queued.max.request.bytes` over all connections), and
//! unsent responses by bytes. A client that stops reading its answers stops being read
//! from. A connection idle for `connections.max.idle.ms` is closed, and so is one whose
//! request frame dribbles in for longer than `fjord.request.read.timeout.ms`.
//!
//! Anything malformed — a frame over `socket.request.max.bytes`, a header or body that does
//! not decode, an unknown API key — closes this connection with a warning; the broker and
//! every other connection carry on.
//!
//! On a TLS listener the handshake comes first (bounded by `fjord.request.read.timeout.ms`);
//! on a SASL listener nothing but ApiVersions, SaslHandshake and SaslAuthenticate is served
//! until the client has authenticated, and a failed login is answered after
//! `connection.failed.authentication.delay.ms`, then the connection closes.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, RequestKind, ResponseKind, SaslAuthenticateResponse,
};
use kafka_protocol::protocol::Decodable;
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, OwnedSemaphorePermit};
use tokio::time::{timeout_at, Instant};

use crate::handlers::{self, Outcome};
use crate::limits::{Activity, ByteGauge, Ticket};
use crate::security::sasl::{AuthStep, Authenticator};
use crate::security::{Listener, Session, ANONYMOUS};
use crate::state::BrokerState;

/// The two directions of a connection, plain TCP or TLS alike.
type ReadSide = Box<dyn AsyncRead + Send + Unpin>;
type WriteSide = Box<dyn AsyncWrite + Send + Unpin>;

/// Requests one connection may have in flight before the reader stops reading.
const MAX_IN_FLIGHT: usize = 128;

pub struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    state: Arc<BrokerState>,
    shutdown: broadcast::Receiver<()>,
    ticket: Ticket,
    _done: mpsc::Sender<()>,
}

/// Why a connection ended early; logged once.
enum Close {
    Eof,
    Shutdown,
    Idle,
    Evicted,
    Bad(String),
    /// A failed login: its answer is queued, then the connection closes.
    Unauthenticated,
    /// A request after the login's `connections.max.reauth.ms` ran out, without a new
    /// login (KIP-368).
    Expired,
}

/// The right to take effect next on this connection. Dropping it hands the right to the
/// next request; a handler drops it as soon as what remains cannot affect later requests.
pub struct Turn(#[allow(dead_code)] oneshot::Sender<()>);

impl Turn {
    /// Hands the turn to the next request on this connection.
    pub fn pass(self) {}
}

/// Per-connection byte accounting shared by the reader, the request tasks and the writer.
struct Budget {
    /// Responses built or reserved and not yet written to the socket.
    unsent: ByteGauge,
    /// Request frames read and not yet answered.
    requests: ByteGauge,
    /// Most unsent response bytes before requests wait and the reader stops.
    unsent_limit: usize,
    /// Most request bytes in flight on this connection.
    request_limit: usize,
}

/// A response for the writer, with what it counts against the connection's budget.
struct Reply {
    bytes: Option<Bytes>,
    counted: usize,
}

impl Connection {
    /// The connection's socket, before anything was read from it.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// Gives the socket up (to the quorum, on an observer); the connection's ticket and
    /// shutdown handle go with the rest.
    pub fn into_parts(self) -> (TcpStream, SocketAddr) {
        (self.socket, self.peer)
    }

    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        listener: Arc<Listener>,
        state: Arc<BrokerState>,
        shutdown: broadcast::Receiver<()>,
        ticket: Ticket,
        done: mpsc::Sender<()>,
    ) -> Connection {
        Connection {
            socket,
            peer,
            listener,
            state,
            shutdown,
            ticket,
            _done: done,
        }
    }

    pub async fn run(self) {
        let Connection {
            socket,
            peer,
            listener,
            state,
            mut shutdown,
            ticket,
            _done,
        } = self;
        let activity = ticket.activity.clone();
        let Some((reader, writer, principal)) = open(socket, peer, &listener, &state).await else {
            drop(ticket);
            return;
        };
        let session = Session::new(peer, &listener.name, &principal);
        let authenticator = listener
            .protocol
            .sasl()
            .then(|| Authenticator::new(&listener.security));
        let budget = Arc::new(Budget {
            unsent: ByteGauge::default(),
            requests: ByteGauge::default(),
            unsent_limit: state.config.fetch_max_bytes.max(1 << 20),
            request_limit: state.config.socket_request_max_bytes,
        });
        let (order_tx, order_rx) = mpsc::channel(MAX_IN_FLIGHT);
        let mut write_task = tokio::spawn(write_responses(
            writer,
            order_rx,
            peer,
            budget.clone(),
            activity.clone(),
            Duration::from_millis(state.config.connections_max_idle_ms),
        ));
        let close = tokio::select! {
            c = read_requests(reader, session, authenticator, &listener, &state, order_tx, &budget, &activity) => c,
            _ = shutdown.recv() => Close::Shutdown,
            _ = activity.evict.notified() => Close::Evicted,
            // The writer stopped (the client went away or a response could not be built):
            // nothing more read here could be answered.
            _ = &mut write_task => {
                drop(ticket);
                return;
            }
        };
        let quiet = matches!(close, Close::Evicted | Close::Idle);
        match close {
            Close::Bad(why) => tracing::warn!(%peer, "closing connection: {why}"),
            Close::Idle => {
                tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)")
            }
            Close::Evicted => tracing::debug!(%peer, "closed to make room for a new connection"),
            Close::Eof | Close::Shutdown => tracing::debug!(%peer, "connection closed"),
            Close::Unauthenticated => {}
            Close::Expired => tracing::info!(
                %peer,
                "closing connection: its SASL login expired and the client did not log in \
                 again (connections.max.reauth.ms)"
            ),
        }
        if quiet {
            // Nothing is in flight on an idle connection: close at once.
            write_task.abort();
        }
        // The writer finishes the responses already queued, then closes the socket.
        let _ = write_task.await;
        drop(ticket);
    }
}

/// Reads the 4-byte size prefix of the next frame. An idle connection is closed after
/// `connections.max.idle.ms`; a prefix that starts but does not finish in time is an error.
/// Cancel-safe reads are used so a timeout never loses bytes of a frame.
async fn read_size(
    reader: &mut ReadSide,
    state: &BrokerState,
    activity: &Activity,
) -> Result<i32, Close> {
    let idle = Duration::from_millis(state.config.connections_max_idle_ms);
    let frame_timeout = Duration::from_millis(state.config.request_read_timeout_ms);
    let mut head = [0u8; 4];
    let mut got = 0;
    let mut deadline = Instant::now() + idle;
    while got < 4 {
        match timeout_at(deadline, reader.read(&mut head[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(if got == 0 {
                    Close::Eof
                } else {
                    Close::Bad("connection ended in the middle of a request".into())
                })
            }
            Ok(Ok(n)) => {
                if got == 0 {
                    deadline = Instant::now() + frame_timeout;
                }
                got += n;
            }
            Err(_) if got > 0 => {
                return Err(Close::Bad(format!(
                    "request frame not received within {} ms",
                    frame_timeout.as_millis()
                )))
            }
            Err(_) => {
                // A connection waiting on its own long request is not idle.
                let since = crate::state::now_ms() - activity.last_ms();
                if activity.in_flight() > 0 {
                    deadline = Instant::now() + idle;
                } else if since >= idle.as_millis() as i64 {
                    return Err(Close::Idle);
                } else {
                    deadline = Instant::now() + idle - Duration::from_millis(since.max(0) as u64);
                }
            }
        }
    }
    Ok(i32::from_be_bytes(head))
}

#[allow(clippy::too_many_arguments)]
async fn read_requests(
    mut reader: ReadSide,
    mut session: Session,
    mut authenticator: Option<Authenticator>,
    listener: &Listener,
    state: &Arc<BrokerState>,
    order: mpsc::Sender<oneshot::Receiver<Reply>>,
    budget: &Arc<Budget>,
    activity: &Arc<Activity>,
) -> Close {
    let max = state.config.socket_request_max_bytes;
    let frame_timeout = Duration::from_millis(state.config.request_read_timeout_ms);
    // The turn the next request waits for: fired (or dropped) when its predecessor is done.
    let (first_tx, mut previous) = oneshot::channel::<()>();
    drop(first_tx);
    // The SASL login (KIP-368): whether one succeeded on this connection, and when it runs
    // out if connections.max.reauth.ms limits it.
    let mut login = LoginState::default();
    loop {
        // A client that does not read its answers is not read from either.
        budget.unsent.wait_below(budget.unsent_limit).await;
        let size = match read_size(&mut reader, state, activity).await {
            Ok(n) => n,
            Err(close) => return close,
        };
        let started = Instant::now();
        if size < 0 || size as usize > max {
            return Close::Bad(format!(
                "frame of {size} bytes exceeds socket.request.max.bytes ({max})"
            ));
        }
        // Before a SASL login the frames are small (Kafka's sasl.server.max.receive.size):
        // a client without credentials must not hold the broker's request memory.
        let before_login = state.config.security.sasl_max_receive_size;
        if authenticator.is_some() && size as usize > before_login {
            return Close::Bad(format!(
                "frame of {size} bytes before SASL authentication exceeds \
                 sasl.server.max.receive.size ({before_login})"
            ));
        }
        let size = size as usize;
        // Room for the frame, on this connection and broker-wide, before it is allocated.
        budget.requests.acquire(size, budget.request_limit).await;
        let counted = RequestBytes {
            budget: budget.clone(),
            size,
            _pool: state.limits.reserve_request(size).await,
        };
        let mut frame = BytesMut::zeroed(size);
        match timeout_at(started + frame_timeout, reader.read_exact(&mut frame)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return Close::Bad("connection ended in the middle of a request".into()),
            Err(_) => {
                return Close::Bad(format!(
                    "request frame of {size} bytes not received within {} ms",
                    frame_timeout.as_millis()
                ))
            }
        }
        // After a SaslHandshake v0 the SASL messages are bare frames, answered in kind.
        if let Some(auth) = authenticator.as_mut().filter(|a| a.expects_raw()) {
            let (reply_tx, reply_rx) = oneshot::channel();
            if order.send(reply_rx).await.is_err() {
                return Close::Eof;
            }
            let step = auth.authenticate(&frame, &state.controller.image());
            let lifetime = auth.session_lifetime_ms();
            let (bytes, next) = match step {
                AuthStep::Continue(b) => (raw_frame(&b), Login::Pending),
                AuthStep::Done(b, user) => {
                    (raw_frame(&b), Login::Done(format!("User:{user}"), lifetime))
                }
                // A bare exchange has no error field: the connection just closes.
                AuthStep::Failed { log, .. } => {
                    failed_login(&session, state, &log).await;
                    (Bytes::new(), Login::Failed)
                }
            };
            queue_reply(reply_tx, bytes, budget, activity);
            drop(counted);
            if matches!(next, Login::Failed) {
                // Its empty reply closes the connection.
                return Close::Unauthenticated;
            }
            if let Some(close) = next
                .apply(
                    &mut session,
                    &mut authenticator,
                    &mut login,
                    &order,
                    activity,
                )
                .await
            {
                return close;
            }
            continue;
        }
        let (header, api_key, request) = match parse(frame.freeze()) {
            Ok(parsed) => parsed,
            Err(why) => return Close::Bad(why),
        };
        if authenticator.is_none() && login.done {
            if api_key == ApiKey::SaslHandshake
                && header.request_api_version >= 1
                && login.expires.is_some()
            {
                // KIP-368: the client logs in again on the same connection, as the same
                // principal, before its login runs out.
                authenticator = Some(Authenticator::new(&listener.security));
            } else if login.expires.is_some_and(|t| Instant::now() >= t) {
                return Close::Expired;
            }
        }
        let sasl_api = matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate);
        if authenticator.is_some() && !sasl_api && api_key != ApiKey::ApiVersions {
            return Close::Bad(format!(
                "{api_key:?} request before SASL authentication completed"
            ));
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        if order.send(reply_rx).await.is_err() {
            return Close::Eof;
        }
        // Until a SASL client has logged in, the SASL requests are answered here, in
        // order, and anything but ApiVersions ends the connection.
        if let Some(auth) = authenticator.as_mut() {
            if api_key != ApiKey::ApiVersions {
                let again = login.done.then(|| session.principal.clone());
                let step =
                    authenticate(auth, &header, api_key, request, &session, again, state).await;
                let (bytes, next) = match step {
                    Ok(done) => done,
                    Err(why) => return Close::Bad(why),
                };
                queue_reply(reply_tx, bytes, budget, activity);
                drop(counted);
                if let Some(close) = next
                    .apply(
                        &mut session,
                        &mut authenticator,
                        &mut login,
                        &order,
                        activity,
                    )
                    .await
                {
                    return close;
                }
                continue;
            }
        }
        let peer = session.peer;
        let request_session = session.clone();
        activity.request_started();
        let (turn_tx, next) = oneshot::channel::<()>();
        let wait_for = std::mem::replace(&mut previous, next);
        let state = state.clone();
        let budget = budget.clone();
        tokio::spawn(async move {
            // Whether the predecessor finished or failed, it no longer holds the turn.
            let _ = wait_for.await;
            let turn_at = Instant::now();
            let api_version = header.request_api_version;
            let correlation_id = header.correlation_id;
            let reply = run_one(
                &state,
                &budget,
                header,
                api_key,
                request,
                &request_session,
                Turn(turn_tx),
            )
            .await;
            // Kafka's request log, in brief: enough to tell a slow handler from a request
            // that waited for the one before it.
            tracing::debug!(
                target: "fjord::request",
                %peer,
                api = ?api_key,
                version = api_version,
                correlation_id,
                waited_ms = (turn_at - started).as_millis() as u64,
                handled_ms = turn_at.elapsed().as_millis() as u64,
                bytes = reply.counted,
                "request answered"
            );
            drop(counted);
            let _ = reply_tx.send(reply);
        });
    }
}

/// Where a SASL login stands after one request: a login that succeeded carries its
/// principal and how long it lasts (ms, 0 for the connection's life).
enum Login {
    Pending,
    Done(String, u64),
    Failed,
}

/// The last successful SASL login of a connection.
#[derive(Default)]
struct LoginState {
    done: bool,
    /// When it runs out (`connections.max.reauth.ms`).
    expires: Option<Instant>,
}

impl Login {
    /// A login that succeeded gives the connection its principal and ends the SASL
    /// stage; one that failed closes the connection once its answer is written (an empty
    /// reply tells the writer to close). `Some` ends the connection.
    async fn apply(
        self,
        session: &mut Session,
        authenticator: &mut Option<Authenticator>,
        login: &mut LoginState,
        order: &mpsc::Sender<oneshot::Receiver<Reply>>,
        activity: &Activity,
    ) -> Option<Close> {
        match self {
            Login::Pending => None,
            Login::Done(principal, lifetime_ms) => {
                *session = Session::new(session.peer, &session.listener, &principal);
                *authenticator = None;
                login.done = true;
                login.expires =
                    (lifetime_ms > 0).then(|| Instant::now() + Duration::from_millis(lifetime_ms));
                None
            }
            Login::Failed => {
                let (close_tx, close_rx) = oneshot::channel();
                if order.send(close_rx).await.is_ok() {
                    activity.request_started();
                    let _ = close_tx.send(Reply {
                        bytes: Some(Bytes::new()),
                        counted: 0,
                    });
                }
                Some(Close::Unauthenticated)
            }
        }
    }
}

/// Hands an answer built here (not by a request task) to the writer, counted as unsent.
fn queue_reply(reply: oneshot::Sender<Reply>, bytes: Bytes, budget: &Budget, activity: &Activity) {
    let size = bytes.len();
    budget.unsent.add(size);
    activity.request_started();
    let _ = reply.send(Reply {
        bytes: Some(bytes),
        counted: size,
    });
}

/// The TLS handshake on a TLS listener (the client's certificate subject, mapped by
/// `ssl.principal.mapping.rules`, is its principal), then the two directions of the
/// stream. `None` when the handshake failed or timed out; that is logged here.
async fn open(
    socket: TcpStream,
    peer: SocketAddr,
    listener: &Listener,
    state: &BrokerState,
) -> Option<(ReadSide, WriteSide, String)> {
    let Some(tls) = &listener.tls else {
        let (r, w) = socket.into_split();
        return Some((Box::new(r), Box::new(w), ANONYMOUS.to_string()));
    };
    let limit = Duration::from_millis(state.config.request_read_timeout_ms);
    let stream = match tokio::time::timeout(limit, tls.acceptor().accept(socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(%peer, listener = %listener.name, "TLS handshake failed: {e}");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, listener = %listener.name, "TLS handshake not done within {} ms", limit.as_millis());
            return None;
        }
    };
    let principal = crate::security::tls::peer_principal(
        stream.get_ref().1,
        listener.principal_mapper.as_ref(),
    );
    let (r, w) = tokio::io::split(stream);
    Some((Box::new(r), Box::new(w), principal))
}

/// Answers one request of a connection that has not logged in yet: SaslHandshake or
/// SaslAuthenticate, encoded, and where the login stands. Any other request is an error.
/// `again` is the principal of the login being renewed (KIP-368), which must not change.
async fn authenticate(
    auth: &mut Authenticator,
    header: &RequestHeader,
    api_key: ApiKey,
    request: Request,
    session: &Session,
    again: Option<Arc<str>>,
    state: &BrokerState,
) -> Result<(Bytes, Login), String> {
    let kind = match request {
        Request::Kind(k) => *k,
        _ => {
            return Err(format!(
                "{api_key:?} v{} before SASL authentication",
                header.request_api_version
            ))
        }
    };
    let (response, login) = match kind {
        RequestKind::SaslHandshake(req) => {
            let (resp, ok) = auth.handshake(&req, header.request_api_version);
            if !ok {
                tracing::info!(
                    peer = %session.peer,
                    listener = %session.listener,
                    mechanism = %req.mechanism.as_str(),
                    "SASL handshake refused (code {})",
                    resp.error_code
                );
            }
            let login = if ok { Login::Pending } else { Login::Failed };
            (ResponseKind::SaslHandshake(resp), login)
        }
        RequestKind::SaslAuthenticate(req) => {
            let image = state.controller.image();
            let ok = SaslAuthenticateResponse::default;
            match auth.authenticate(&req.auth_bytes, &image) {
                AuthStep::Continue(b) => (
                    ResponseKind::SaslAuthenticate(ok().with_auth_bytes(b.into())),
                    Login::Pending,
                ),
                AuthStep::Done(_, user)
                    if again
                        .as_deref()
                        .is_some_and(|was| was != format!("User:{user}")) =>
                {
                    let was = again.as_deref().unwrap_or_default();
                    let why = format!(
                        "Cannot change principals during re-authentication from {was}: \
                         User:{user}"
                    );
                    failed_login(session, state, &why).await;
                    let resp = ok()
                        .with_error_code(crate::error::code::SASL_AUTHENTICATION_FAILED)
                        .with_error_message(Some(StrBytes::from_string(why)));
                    (ResponseKind::SaslAuthenticate(resp), Login::Failed)
                }
                AuthStep::Done(b, user) => {
                    let lifetime = auth.session_lifetime_ms();
                    let renewed = if again.is_some() {
                        "re-authenticated"
                    } else {
                        "authenticated"
                    };
                    tracing::debug!(peer = %session.peer, %user, lifetime_ms = lifetime, "{renewed}");
                    let mut resp = ok().with_auth_bytes(b.into());
                    // v0 has no field for it; such a client is disconnected when it runs out.
                    if header.request_api_version >= 1 {
                        resp = resp.with_session_lifetime_ms(lifetime as i64);
                    }
                    (
                        ResponseKind::SaslAuthenticate(resp),
                        Login::Done(format!("User:{user}"), lifetime),
                    )
                }
                AuthStep::Failed { code, message, log } => {
                    failed_login(session, state, &log).await;
                    let resp = ok()
                        .with_error_code(code)
                        .with_error_message(Some(StrBytes::from_string(message)));
                    (ResponseKind::SaslAuthenticate(resp), Login::Failed)
                }
            }
        }
        _ => {
            return Err(format!(
                "{api_key:?} request before SASL authentication completed"
            ))
        }
    };
    let bytes = handlers::encode_response(header, api_key, response, header.request_api_version)?;
    Ok((bytes, login))
}

/// Logs a failed login (the reason names the user at most, never the secret), then waits
/// `connection.failed.authentication.delay.ms` before it is answered: each guess costs
/// the client that long and a new connection.
async fn failed_login(session: &Session, state: &BrokerState, why: &str) {
    tracing::info!(
        peer = %session.peer,
        listener = %session.listener,
        "failed authentication: {why}"
    );
    let delay = state.config.security.failed_authentication_delay_ms;
    tokio::time::sleep(Duration::from_millis(delay)).await;
}

/// A bare SASL message in its size-prefixed frame (the v0 handshake's exchange).
fn raw_frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(4 + message.len());
    out.extend_from_slice(&(message.len() as i32).to_be_bytes());
    out.extend_from_slice(message);
    out.freeze()
}

/// Frees a request's bytes, on the connection and broker-wide, once it is answered.
struct RequestBytes {
    budget: Arc<Budget>,
    size: usize,
    _pool: Option<OwnedSemaphorePermit>,
}

impl Drop for RequestBytes {
    fn drop(&mut self) {
        self.budget.requests.release(self.size);
    }
}

/// Runs one request that holds its turn, and encodes its answer.
async fn run_one(
    state: &Arc<BrokerState>,
    budget: &Budget,
    header: RequestHeader,
    api_key: ApiKey,
    request: Request,
    session: &Session,
    turn: Turn,
) -> Reply {
    // A fetch's answer can be large: room for it is taken before any of it is read, so
    // a client that never reads cannot pile fetch responses up in the broker.
    let reserved = match &request {
        Request::Kind(k) => match k.as_ref() {
            RequestKind::Fetch(f) => {
                let want = handlers::fetch_response_limit(state, f.max_bytes);
                budget.unsent.acquire(want, budget.unsent_limit).await;
                want
            }
            _ => {
                budget.unsent.wait_below(budget.unsent_limit).await;
                0
            }
        },
        _ => 0,
    };
    let bytes = match handlers::handle(state, &header, session, request, turn).await {
        Outcome::Respond(r, version) => {
            match handlers::encode_response(&header, api_key, *r, version) {
                Ok(bytes) => Some(bytes),
                Err(why) => {
                    tracing::error!("{why}");
                    Some(Bytes::new())
                }
            }
        }
        Outcome::NoResponse => None,
        Outcome::Close(why) => {
            tracing::warn!("closing connection: {why}");
            // An empty buffer tells the writer to close after earlier responses.
            Some(Bytes::new())
        }
    };
    let size = bytes.as_ref().map_or(0, Bytes::len);
    // Swap the reservation for the real size (KIP-74 lets one batch exceed it).
    budget.unsent.add(size);
    budget.unsent.release(reserved);
    Reply {
        bytes,
        counted: size,
    }
}

/// Parses a request frame: header, then body at the header's version. A panic inside the
/// protocol decoder (a bug there) is contained here and treated as a malformed request.
pub(crate) fn parse(frame: Bytes) -> Result<(RequestHeader, ApiKey, Request), String> {
    let key = if frame.len() >= 2 {
        i16::from_be_bytes([frame[0], frame[1]])
    } else {
        -1
    };
    match std::panic::catch_unwind(AssertUnwindSafe(|| decode_request(frame))) {
        Ok(result) => result,
        Err(_) => Err(format!("undecodable request (API key {key})")),
    }
}

/// Decodes a request frame without containing panics; `parse` is the caller for the
/// network, the decoder property tests call this directly so a panic fails them.
pub fn decode_request(mut frame: Bytes) -> Result<(RequestHeader, ApiKey, Request), String> {
    if frame.len() < 8 {
        return Err(format!(
            "request of {} bytes is too short for a header",
            frame.len()
        ));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let api_key = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key}"))?;
    let header_version = api_key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .map_err(|e| format!("bad {api_key:?} v{version} request header: {e}"))?;
    // A request newer than we know still gets an ApiVersions answer (v0, error 35), so the
    // client can learn our ranges; everything else must be a version we implement.
    if !handlers::is_supported(api_key, version) {
        let request = if api_key == ApiKey::ApiVersions {
            Request::UnsupportedApiVersions
        } else {
            Request::Unsupported
        };
        return Ok((header, api_key, request));
    }
    let body = RequestKind::decode(api_key, &mut frame, version)
        .map_err(|e| format!("bad {api_key:?} v{version} request: {e}"))?;
    Ok((header, api_key, Request::Kind(Box::new(body))))
}

/// A decoded request, or the reason it will not be decoded.
pub enum Request {
    Kind(Box<RequestKind>),
    /// ApiVersions at a version above ours: answered at v0 with UNSUPPORTED_VERSION.
    UnsupportedApiVersions,
    /// Another API at a version we do not implement.
    Unsupported,
}

async fn write_responses(
    writer: WriteSide,
    mut order: mpsc::Receiver<oneshot::Receiver<Reply>>,
    peer: SocketAddr,
    budget: Arc<Budget>,
    activity: Arc<Activity>,
    stall: Duration,
) {
    let mut out = writer;
    while let Some(next) = order.recv().await {
        let reply = match next.await {
            Ok(r) => r,
            // The handler task died (a bug): the client would wait forever; close instead.
            Err(_) => {
                tracing::error!(%peer, "request handler failed; closing connection");
                break;
            }
        };
        let Reply { bytes, counted } = reply;
        let written = match bytes {
            None => true,
            Some(b) if b.is_empty() => false,
            // One response is one buffer (size prefix included): one write, nothing to flush.
            // A client that stops reading for connections.max.idle.ms is gone for good: the
            // connection closes rather than pin its responses forever.
            Some(b) => match tokio::time::timeout(stall, out.write_all(&b)).await {
                Ok(r) => r.is_ok(),
                Err(_) => {
                    tracing::warn!(%peer, "closing connection: client has not read its responses for {} ms", stall.as_millis());
                    false
                }
            },
        };
        budget.unsent.release(counted);
        activity.request_done();
        if !written {
            break;
        }
    }
    let _ = out.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{MetadataRequest, ProduceRequest};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    fn encoded<R: kafka_protocol::protocol::Request>(req: &R, version: i16) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::header_version(version))
            .expect("header");
        req.encode(&mut buf, version).expect("body");
        buf.to_vec()
    }

    /// Valid requests of the APIs with the richest bodies, to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for v in [0, 4, 9, 12] {
            out.push(encoded(&MetadataRequest::default().with_topics(None), v));
        }
        for v in [3, 9, 12] {
            out.push(encoded(&ProduceRequest::default().with_acks(1), v));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Random bytes never panic the decoder.
        #[test]
        fn random_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(Bytes::from(bytes));
        }

        /// Valid requests with bytes flipped or cut never panic the decoder.
        #[test]
        fn mutated_requests_never_panic(
            seed in 0usize..7,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut frame = seeds()[seed].clone();
            for (i, b) in flips {
                let at = i.index(frame.len());
                frame[at] ^= b;
            }
            let keep = cut.index(frame.len() + 1);
            frame.truncate(keep);
            let _ = decode_request(Bytes::from(frame));
        }
    }
}
