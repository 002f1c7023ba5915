//! Requests one broker sends another over the inter-broker listener: the replica
//! fetcher's Fetch, and the transaction coordinator's WriteTxnMarkers and
//! AddPartitionsToTxn; with TLS and a SASL login when that listener uses them.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::security::client::{BrokerStream, ConnectError};
use crate::state::BrokerState;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection to broker `node` at the address it registered for the
/// inter-broker listener, secured as that listener asks.
pub async fn connect(state: &BrokerState, node: i32) -> Result<BrokerStream, ConnectError> {
    let image = state.controller.image();
    let b = image
        .brokers
        .get(&node)
        .ok_or_else(|| ConnectError::Unreachable(format!("broker {node} is not registered")))?;
    let (host, port) = match b.endpoint(&state.config.cluster.listener_name) {
        Some((h, p)) => (h.to_string(), p),
        None => (b.host.clone(), b.port),
    };
    let addr = format!("{host}:{port}");
    let unreachable = |why: String| ConnectError::Unreachable(format!("broker {node}: {why}"));
    let s = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable(format!("connecting to {addr} timed out")))?
        .map_err(|e| unreachable(format!("connecting to {addr}: {e}")))?;
    let _ = s.set_nodelay(true);
    let secured = tokio::time::timeout(CONNECT_TIMEOUT, state.inter_broker.secure(s, &host));
    match secured.await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(ConnectError::Refused(why))) => {
            Err(ConnectError::Refused(format!("broker {node}: {why}")))
        }
        Ok(Err(ConnectError::Unreachable(why))) => Err(unreachable(why)),
        Err(_) => Err(unreachable(format!(
            "no TLS handshake or login with {addr} within {CONNECT_TIMEOUT:?}"
        ))),
    }
}

/// Sends one request at `version` and reads its answer, refusing frames over `limit`
/// bytes and answers to another request.
pub async fn call<Req, Resp, S>(
    stream: &mut S,
    client_id: &'static str,
    correlation_id: i32,
    request: &Req,
    version: i16,
    limit: usize,
) -> Result<Resp, String>
where
    Req: Request + Encodable + HeaderVersion,
    Resp: Decodable,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let header = RequestHeader::default()
        .with_request_api_key(Req::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .map_err(|e| format!("encoding the request header: {e}"))?;
    request
        .encode(&mut body, version)
        .map_err(|e| format!("encoding the request: {e}"))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream
        .write_all(&frame)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    // TLS may hold the last record back until flushed.
    stream.flush().await.map_err(|e| format!("sending: {e}"))?;
    let size = stream
        .read_i32()
        .await
        .map_err(|e| format!("reading: {e}"))?;
    if size < 0 || size as usize > limit {
        return Err(format!("the broker answered with a frame of {size} bytes"));
    }
    let mut buf = vec![0u8; size as usize];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    let mut buf = Bytes::from(buf);
    let api = kafka_protocol::messages::ApiKey::try_from(Req::KEY)
        .map_err(|_| format!("unknown API key {}", Req::KEY))?;
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version))
        .map_err(|e| format!("decoding: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err("the broker answered another request".into());
    }
    let response = Resp::decode(&mut buf, version).map_err(|e| format!("decoding: {e}"))?;
    if buf.has_remaining() {
        tracing::debug!(extra = buf.remaining(), "response had trailing bytes");
    }
    Ok(response)
}
