//! This node as a client of a listener of the others: the inter-broker listener (the
//! replica fetcher's and the transaction coordinator's connections) and the controller
//! listener (the quorum's). Connections go through TLS and a SASL login when the
//! listener asks for them, with the settings Kafka reads for it.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use fjord_controller::ScramMechanism;
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::TlsStream;

use super::scram::ScramClient;
use super::tls::ServerTls;
use super::Listener;
use crate::config::{Mechanism, SaslLogin, SecurityConfig, SecurityProtocol, TlsSettings};

/// The largest answer to a login request: a SCRAM message is a few hundred bytes.
const LOGIN_RESPONSE_LIMIT: usize = 64 * 1024;

/// A connection between nodes, in the clear or over TLS (either side of it).
pub enum BrokerStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for BrokerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for BrokerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            BrokerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            BrokerStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a connection to another broker failed; a refused login is told apart, since
/// retrying cannot mend it and the operator needs to hear of it.
#[derive(Debug)]
pub enum ConnectError {
    Unreachable(String),
    Refused(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(why) | ConnectError::Refused(why) => f.write_str(why),
        }
    }
}

impl From<ConnectError> for String {
    fn from(e: ConnectError) -> String {
        e.to_string()
    }
}

/// How this node connects to one listener of the others, which all name it alike
/// (`inter.broker.listener.name`, `controller.listener.names`).
pub struct ListenerClient {
    listener: String,
    tls: Option<TlsConnector>,
    /// Set when the listener uses SASL; on a one-node server, which never connects to
    /// another broker, it may stay unset.
    login: Option<SaslLogin>,
    sasl: bool,
}

impl ListenerClient {
    /// From the listener's own settings. A TLS listener's certificate is also this
    /// node's client certificate (reloaded with it), and its truststore the CAs the
    /// others' certificates must chain to. `tls` is the listener's server side and
    /// settings; on a one-node server, which never connects to another, pass `None`.
    pub fn new(
        listener: &str,
        protocol: SecurityProtocol,
        tls: Option<(&ServerTls, &TlsSettings)>,
        login: Option<SaslLogin>,
    ) -> Result<ListenerClient, String> {
        let tls = match tls {
            Some((server, settings)) => Some(TlsConnector::from(
                server.client_config(settings, listener)?,
            )),
            None => None,
        };
        Ok(ListenerClient {
            listener: listener.to_string(),
            tls,
            login,
            sasl: protocol.sasl(),
        })
    }

    /// The inter-broker listener's client, as `security` configures it.
    pub fn inter_broker(
        listener: &Listener,
        security: &SecurityConfig,
        clustered: bool,
    ) -> Result<ListenerClient, String> {
        let tls = listener
            .tls
            .as_ref()
            .zip(listener.security.tls.as_ref())
            .filter(|_| clustered);
        ListenerClient::new(
            &listener.name,
            listener.protocol,
            tls,
            security.inter_broker_login.clone(),
        )
    }

    /// Wraps `tcp`, connected to `host`, in TLS and logs in, as the listener asks.
    pub async fn secure(&self, tcp: TcpStream, host: &str) -> Result<BrokerStream, ConnectError> {
        let mut stream = match &self.tls {
            None => BrokerStream::Plain(tcp),
            Some(connector) => {
                let name = ServerName::try_from(host.to_string()).map_err(|e| {
                    ConnectError::Refused(format!("{host} is not a TLS server name: {e}"))
                })?;
                let tls = connector.connect(name, tcp).await.map_err(|e| {
                    let refused = e.kind() == io::ErrorKind::InvalidData;
                    let why = format!("TLS with {host} on listener {}: {e}", self.listener);
                    if refused {
                        ConnectError::Refused(why)
                    } else {
                        ConnectError::Unreachable(why)
                    }
                })?;
                BrokerStream::Tls(Box::new(tls.into()))
            }
        };
        if self.sasl {
            let login = self.login.as_ref().ok_or_else(|| {
                ConnectError::Refused(format!(
                    "listener {} needs a SASL login: set \
                     sasl.mechanism.inter.broker.protocol and its JAAS line",
                    self.listener
                ))
            })?;
            log_in(&mut stream, login).await?;
        }
        Ok(stream)
    }
}

/// SaslHandshake v1, then the mechanism's messages in SaslAuthenticate v2 requests.
async fn log_in<S>(stream: &mut S, login: &SaslLogin) -> Result<(), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let lost = |e: String| ConnectError::Unreachable(format!("logging in: {e}"));
    let refused = |why: String| refusal(login, why);
    let handshake: SaslHandshakeResponse = crate::broker_client::call(
        stream,
        "fjord-broker",
        1,
        &SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(login.mechanism.name())),
        1,
        LOGIN_RESPONSE_LIMIT,
    )
    .await
    .map_err(lost)?;
    if handshake.error_code != 0 {
        let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(refused(format!(
            "the broker offers {} here",
            offered.join(", ")
        )));
    }
    let scram = match login.mechanism {
        Mechanism::Plain => {
            let token = format!("\0{}\0{}", login.username, login.password);
            authenticate(stream, 2, token.into_bytes(), login).await?;
            return Ok(());
        }
        Mechanism::ScramSha256 => ScramMechanism::Sha256,
        Mechanism::ScramSha512 => ScramMechanism::Sha512,
        // The configuration refuses it for nodes' own logins.
        Mechanism::OAuthBearer => return Err(refusal(login, "no token to log in with".into())),
    };
    let mut client =
        ScramClient::new(scram, &login.username, &login.password).map_err(|e| refused(e.0))?;
    let server_first = authenticate(stream, 2, client.first(), login).await?;
    let last = client.answer(&server_first).map_err(|e| refused(e.0))?;
    let server_final = authenticate(stream, 3, last, login).await?;
    client.verify(&server_final).map_err(|e| refused(e.0))
}

/// One SaslAuthenticate round: the broker's answer, or why it refused.
async fn authenticate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    correlation_id: i32,
    bytes: Vec<u8>,
    login: &SaslLogin,
) -> Result<Vec<u8>, ConnectError> {
    let resp: SaslAuthenticateResponse = crate::broker_client::call(
        stream,
        "fjord-broker",
        correlation_id,
        &SaslAuthenticateRequest::default().with_auth_bytes(bytes.into()),
        2,
        LOGIN_RESPONSE_LIMIT,
    )
    .await
    .map_err(|e| ConnectError::Unreachable(format!("logging in: {e}")))?;
    if resp.error_code != 0 {
        let message = resp.error_message.as_ref().map_or("", |m| m.as_str());
        return Err(refusal(login, message.to_string()));
    }
    Ok(resp.auth_bytes.to_vec())
}

fn refusal(login: &SaslLogin, why: String) -> ConnectError {
    ConnectError::Refused(format!(
        "SASL {} login as {} refused: {why}",
        login.mechanism.name(),
        login.username
    ))
}
