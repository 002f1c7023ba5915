//! The few Kafka requests the tools send themselves, where librdkafka has no API for
//! them (DescribeQuorum, ElectLeaders, partition reassignments, ACLs, SCRAM users): one
//! blocking connection, one request at a time. [`open`] connects as the tool's
//! `--command-config` says: over TLS (rustls) and with a SASL login (PLAIN, SCRAM) when
//! `security.protocol` asks for them.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fjord_broker::config::SecurityProtocol;
use fjord_broker::security::scram::ScramClient;
use fjord_controller::ScramMechanism;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::common::{read_properties, Connection};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// The largest answer read: these answers are a few kilobytes at most.
const MAX_RESPONSE: usize = 16 << 20;

/// What [`call`] talks over: plain TCP or a [`Stream`].
pub trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

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

/// How the tools reach a secured listener, from the `--command-config` properties, in
/// Kafka's names or librdkafka's.
#[derive(Debug, Clone, Default)]
pub struct ClientSecurity {
    tls: bool,
    /// The SASL mechanism, user and password, for SASL_PLAINTEXT and SASL_SSL.
    sasl: Option<(String, String, String)>,
    /// PEM CA certificates (`ssl.ca.location`, or a PEM `ssl.truststore.location`).
    ca: Option<PathBuf>,
    /// A client certificate and key, for mTLS (`ssl.certificate.location` and
    /// `ssl.key.location`, or one PEM `ssl.keystore.location`).
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

impl ClientSecurity {
    pub fn of(conn: &Connection) -> Result<ClientSecurity> {
        let Some(path) = &conn.command_config else {
            return Ok(ClientSecurity::default());
        };
        let props: std::collections::HashMap<String, String> =
            read_properties(path)?.into_iter().collect();
        let get = |k: &str| props.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let protocol = get("security.protocol")
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase();
        let Some(protocol) = SecurityProtocol::parse(&protocol) else {
            bail!("security.protocol {protocol} is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL");
        };
        let (tls, sasl) = (protocol.tls(), protocol.sasl());
        let sasl = if sasl {
            let mechanism = get("sasl.mechanism")
                .or(get("sasl.mechanisms"))
                .unwrap_or("PLAIN")
                .to_ascii_uppercase();
            let jaas = get("sasl.jaas.config").map(jaas_login).transpose()?;
            let user = get("sasl.username")
                .map(str::to_string)
                .or_else(|| jaas.as_ref().map(|j| j.0.clone()))
                .ok_or_else(|| anyhow!("SASL needs sasl.username (or sasl.jaas.config)"))?;
            let password = get("sasl.password")
                .map(str::to_string)
                .or_else(|| jaas.map(|j| j.1))
                .ok_or_else(|| anyhow!("SASL needs sasl.password (or sasl.jaas.config)"))?;
            Some((mechanism, user, password))
        } else {
            None
        };
        let keystore = get("ssl.keystore.location").map(PathBuf::from);
        Ok(ClientSecurity {
            tls,
            sasl,
            ca: get("ssl.ca.location")
                .or(get("ssl.truststore.location"))
                .map(PathBuf::from),
            cert: get("ssl.certificate.location")
                .map(PathBuf::from)
                .or(keystore.clone()),
            key: get("ssl.key.location").map(PathBuf::from).or(keystore),
        })
    }
}

/// The username and password of a Java client's `sasl.jaas.config` line.
fn jaas_login(jaas: &str) -> Result<(String, String)> {
    let value = |key: &str| {
        let at = jaas.find(&format!("{key}=\""))? + key.len() + 2;
        let end = jaas[at..].find('"')?;
        Some(jaas[at..at + end].to_string())
    };
    match (value("username"), value("password")) {
        (Some(u), Some(p)) => Ok((u, p)),
        _ => bail!("sasl.jaas.config has no username=\"...\" password=\"...\""),
    }
}

/// A connection of the tools: plain TCP, or TLS over it.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// Connects to `server` as `conn`'s `--command-config` says, and logs in.
pub fn open(conn: &Connection, server: &str) -> Result<Stream> {
    let security = ClientSecurity::of(conn)?;
    let tcp = connect(server, conn.timeout())?;
    let mut stream = if security.tls {
        Stream::Tls(Box::new(tls(&security, server, tcp)?))
    } else {
        Stream::Plain(tcp)
    };
    if let Some((mechanism, user, password)) = &security.sasl {
        login(&mut stream, mechanism, user, password)
            .with_context(|| format!("SASL {mechanism} login as {user}"))?;
    }
    Ok(stream)
}

fn tls(
    security: &ClientSecurity,
    server: &str,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = security
        .ca
        .as_ref()
        .ok_or_else(|| anyhow!("TLS needs the broker's CA: set ssl.ca.location (PEM)"))?;
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots
            .add(cert.with_context(|| format!("a certificate in {}", ca.display()))?)
            .with_context(|| format!("a CA certificate in {}", ca.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&security.cert, &security.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("a certificate in {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("no private key in {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    let host = server.rsplit_once(':').map_or(server, |(h, _)| h);
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| anyhow!("{host} is not a TLS server name: {e}"))?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    // Handshake now, so that a refused certificate is reported as such.
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .context("TLS handshake")?;
    }
    Ok(stream)
}

/// SaslHandshake v1, then the mechanism's messages in SaslAuthenticate requests.
fn login(stream: &mut Stream, mechanism: &str, user: &str, password: &str) -> Result<()> {
    let handshake: SaslHandshakeResponse = call(
        stream,
        1,
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
        1,
    )?;
    if handshake.error_code != 0 {
        let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        bail!(
            "the broker does not offer {mechanism} here (it offers {})",
            offered.join(", ")
        );
    }
    let mut send = |id: i32, bytes: Vec<u8>| -> Result<Vec<u8>> {
        let resp: SaslAuthenticateResponse = call(
            stream,
            id,
            SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()),
            2,
        )?;
        refused(
            "authentication failed",
            resp.error_code,
            &resp.error_message,
        )?;
        Ok(resp.auth_bytes.to_vec())
    };
    match mechanism {
        "PLAIN" => {
            send(2, format!("\0{user}\0{password}").into_bytes())?;
        }
        _ => {
            let m = ScramMechanism::from_name(mechanism).ok_or_else(|| {
                anyhow!(
                    "the tools log in with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, not {mechanism}"
                )
            })?;
            let mut client = ScramClient::new(m, user, password).map_err(|e| anyhow!(e.0))?;
            let challenge = send(2, client.first())?;
            let last = client.answer(&challenge).map_err(|e| anyhow!(e.0))?;
            let server_final = send(3, last)?;
            client.verify(&server_final).map_err(|e| anyhow!(e.0))?;
        }
    }
    Ok(())
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
    stream: &mut impl ReadWrite,
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
