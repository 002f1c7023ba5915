//! One client connection: reads size-prefixed request frames, runs each request as its own
//! task, and writes the responses back strictly in request order (pipelining clients
//! match responses to requests by order as well as by correlation id).
//!
//! Anything malformed — a frame over `socket.request.max.bytes`, a header or body that does
//! not decode, an unknown API key — closes this connection with a warning; the broker and
//! every other connection carry on.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, Mutex};

use crate::handlers::{self, Outcome};
use crate::state::BrokerState;

/// Requests one connection may have in flight before the reader stops reading: bounds
/// the memory a single pipelining client can pin.
const MAX_IN_FLIGHT: usize = 128;

pub struct Connection {
    socket: TcpStream,
    peer: SocketAddr,
    state: Arc<BrokerState>,
    shutdown: broadcast::Receiver<()>,
    _done: mpsc::Sender<()>,
}

/// Why a connection ended early; logged once.
enum Close {
    Eof,
    Shutdown,
    Bad(String),
}

impl Connection {
    pub fn new(
        socket: TcpStream,
        peer: SocketAddr,
        state: Arc<BrokerState>,
        shutdown: broadcast::Receiver<()>,
        done: mpsc::Sender<()>,
    ) -> Connection {
        Connection {
            socket,
            peer,
            state,
            shutdown,
            _done: done,
        }
    }

    pub async fn run(self) {
        let Connection {
            socket,
            peer,
            state,
            mut shutdown,
            _done,
        } = self;
        let (reader, writer) = socket.into_split();
        let (order_tx, order_rx) = mpsc::channel(MAX_IN_FLIGHT);
        let write_task = tokio::spawn(write_responses(writer, order_rx, peer));
        let close = tokio::select! {
            c = read_requests(reader, peer, &state, order_tx) => c,
            _ = shutdown.recv() => Close::Shutdown,
        };
        match close {
            Close::Bad(why) => tracing::warn!(%peer, "closing connection: {why}"),
            Close::Eof | Close::Shutdown => tracing::debug!(%peer, "connection closed"),
        }
        // The writer finishes the responses already queued, then closes the socket.
        let _ = write_task.await;
    }
}

async fn read_requests(
    mut reader: OwnedReadHalf,
    peer: SocketAddr,
    state: &Arc<BrokerState>,
    order: mpsc::Sender<oneshot::Receiver<Option<Bytes>>>,
) -> Close {
    let max = state.config.socket_request_max_bytes;
    // Produce requests from one connection append in arrival order: an idempotent producer
    // pipelines batches of one partition and their sequence numbers must land in order.
    let produce_turn = Arc::new(Mutex::new(()));
    loop {
        let size = match reader.read_i32().await {
            Ok(n) => n,
            Err(_) => return Close::Eof,
        };
        if size < 0 || size as usize > max {
            return Close::Bad(format!(
                "frame of {size} bytes exceeds socket.request.max.bytes ({max})"
            ));
        }
        let mut frame = BytesMut::zeroed(size as usize);
        if reader.read_exact(&mut frame).await.is_err() {
            return Close::Bad("connection ended in the middle of a request".into());
        }
        let (header, api_key, request) = match parse(frame.freeze()) {
            Ok(parsed) => parsed,
            Err(why) => return Close::Bad(why),
        };
        let turn = if api_key == ApiKey::Produce {
            Some(produce_turn.clone().lock_owned().await)
        } else {
            None
        };
        let (tx, rx) = oneshot::channel();
        if order.send(rx).await.is_err() {
            return Close::Eof;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let response = match handlers::handle(&state, &header, peer, request, turn).await {
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
            let _ = tx.send(response);
        });
    }
}

/// Parses a request frame: header, then body at the header's version. A panic inside the
/// protocol decoder (a bug there) is contained here and treated as a malformed request.
fn parse(frame: Bytes) -> Result<(RequestHeader, ApiKey, Request), String> {
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
    writer: OwnedWriteHalf,
    mut order: mpsc::Receiver<oneshot::Receiver<Option<Bytes>>>,
    peer: SocketAddr,
) {
    let mut out = writer;
    while let Some(next) = order.recv().await {
        let response = match next.await {
            Ok(r) => r,
            // The handler task died (a bug): the client would wait forever; close instead.
            Err(_) => {
                tracing::error!(%peer, "request handler failed; closing connection");
                break;
            }
        };
        let Some(bytes) = response else {
            continue;
        };
        if bytes.is_empty() {
            break;
        }
        // One response is one buffer (size prefix included): one write, nothing to flush.
        if out.write_all(&bytes).await.is_err() {
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
