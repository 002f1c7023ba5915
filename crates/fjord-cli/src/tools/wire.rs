//! The few Kafka requests the tools send themselves, where librdkafka has no API for
//! them (DescribeQuorum, ElectLeaders, partition reassignments): one blocking connection,
//! one request at a time.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// The largest answer read: these answers are a few kilobytes at most.
const MAX_RESPONSE: usize = 16 << 20;

/// Connects to `server` (HOST:PORT) with `timeout` for the connection and each request.
pub fn connect(server: &str, timeout: Duration) -> Result<TcpStream> {
    let addr = server
        .to_socket_addrs()
        .with_context(|| format!("resolving {server}"))?
        .next()
        .ok_or_else(|| anyhow!("{server} resolves to no address"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout).context("connecting")?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// Tries each of `servers` (HOST:PORT,...) in turn; the first that answers is used.
pub fn with_broker<T>(servers: &str, f: impl Fn(&str) -> Result<T>) -> Result<T> {
    let mut last_error = None;
    for server in servers.split(',').map(str::trim) {
        match f(server) {
            Ok(v) => return Ok(v),
            Err(e) => last_error = Some(e.context(format!("broker {server}"))),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow!("no bootstrap server given")))
}

/// An error code other than 0 as an error naming `what`, the code and the message.
pub fn refused(what: &str, code: i16, message: &Option<StrBytes>) -> Result<()> {
    if code != 0 {
        bail!(
            "{what} (error {code}): {}",
            message.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

/// Sends one request and reads its answer.
pub fn call<Req: Request + Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    correlation_id: i32,
    request: Req,
    version: i16,
) -> Result<Resp> {
    let header = RequestHeader::default()
        .with_request_api_key(Req::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str("fjord-tools")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, Req::header_version(version))
        .map_err(|e| anyhow!("encoding the request header: {e}"))?;
    request
        .encode(&mut body, version)
        .map_err(|e| anyhow!("encoding the request: {e}"))?;
    let mut frame = BytesMut::with_capacity(body.len() + 4);
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    stream.write_all(&frame).context("sending the request")?;
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).context("reading the answer")?;
    let size = i32::from_be_bytes(size);
    if size < 0 || size as usize > MAX_RESPONSE {
        bail!("the broker answered with a frame of {size} bytes");
    }
    let mut buf = vec![0u8; size as usize];
    stream.read_exact(&mut buf).context("reading the answer")?;
    let mut buf = bytes::Bytes::from(buf);
    let api = ApiKey::try_from(Req::KEY).map_err(|_| anyhow!("unknown API key {}", Req::KEY))?;
    let header = ResponseHeader::decode(&mut buf, api.response_header_version(version))
        .map_err(|e| anyhow!("decoding the answer's header: {e}"))?;
    if header.correlation_id != correlation_id {
        bail!("the broker answered another request");
    }
    Resp::decode(&mut buf, version).map_err(|e| anyhow!("decoding the answer: {e}"))
}
