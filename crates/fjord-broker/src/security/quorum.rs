//! The controller listener's security for the metadata quorum's connections: TLS, then,
//! on SASL_SSL or SASL_PLAINTEXT, a login in Kafka's own SaslHandshake and
//! SaslAuthenticate requests before the quorum's frames begin. A member that connects
//! must prove who it is (a client certificate the truststore vouches for, or a SASL
//! login), and with an authorizer it must be a super user: the quorum's frames write
//! the metadata log itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_controller::quorum::{BoxFuture, QuorumStream, StreamSecurity};
use fjord_controller::MetadataImage;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse};
use kafka_protocol::protocol::StrBytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::client::{BrokerStream, ListenerClient};
use super::sasl::{AuthStep, Authenticator};
use super::tls::{PrincipalMapper, ServerTls};
use super::ANONYMOUS;
use crate::config::{ListenerSecurity, SecurityConfig, SecurityProtocol};
use crate::connection::Request;

/// The largest frame read before a quorum member has logged in: a login request is a
/// few hundred bytes.
const LOGIN_FRAME_LIMIT: usize = 64 * 1024;

/// A quorum member's side of the controller listener, both directions.
pub struct QuorumSecurity(Arc<Inner>);

struct Inner {
    listener: String,
    client: ListenerClient,
    tls: Option<ServerTls>,
    principal_mapper: Option<PrincipalMapper>,
    security: ListenerSecurity,
    sasl: bool,
    /// `super.users`, when an authorizer is set; `None` admits any authenticated member.
    super_users: Option<Vec<String>>,
    failed_delay: Duration,
}

impl QuorumSecurity {
    /// The quorum's security as configured: frames in the clear unless the controller
    /// listener says otherwise. Bad certificates stop the server at start.
    pub fn from_config(
        name: &str,
        protocol: SecurityProtocol,
        config: &SecurityConfig,
    ) -> Result<Arc<dyn StreamSecurity>, String> {
        let Some(security) = config.controller.clone() else {
            return Ok(Arc::new(fjord_controller::quorum::Plaintext));
        };
        let (tls, principal_mapper) = match &security.tls {
            Some(settings) => (
                Some(ServerTls::new(settings, name)?),
                Some(PrincipalMapper::parse(&settings.principal_mapping_rules)?),
            ),
            None => (None, None),
        };
        let client = ListenerClient::new(
            name,
            protocol,
            tls.as_ref().zip(security.tls.as_ref()),
            config.controller_login.clone(),
        )?;
        let inner = Arc::new(Inner {
            listener: name.to_string(),
            client,
            tls,
            principal_mapper,
            sasl: protocol.sasl(),
            security,
            super_users: config.authorizer.then(|| config.super_users.clone()),
            failed_delay: Duration::from_millis(config.failed_authentication_delay_ms),
        });
        if let Some(tls) = inner.tls.clone() {
            tokio::spawn(reload_certificate(tls, Arc::downgrade(&inner)));
        }
        Ok(Arc::new(QuorumSecurity(inner)))
    }
}

impl Inner {
    async fn accept_stream(&self, tcp: TcpStream) -> Result<QuorumStream, String> {
        let (mut stream, mut principal) = match &self.tls {
            None => (BrokerStream::Plain(tcp), ANONYMOUS.to_string()),
            Some(tls) => {
                let stream = tls
                    .acceptor()
                    .accept(tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                let principal =
                    super::tls::peer_principal(stream.get_ref().1, self.principal_mapper.as_ref());
                (BrokerStream::Tls(Box::new(stream.into())), principal)
            }
        };
        if self.sasl {
            principal = self.serve_login(&mut stream).await?;
        }
        if principal == ANONYMOUS {
            return Err(format!(
                "listener {} admits only quorum members that authenticate",
                self.listener
            ));
        }
        if let Some(supers) = &self.super_users {
            if !supers.contains(&principal) {
                return Err(format!(
                    "{principal} is not in super.users; the members of the metadata quorum \
                     must be"
                ));
            }
        }
        Ok(Box::new(stream))
    }

    /// Answers SaslHandshake and SaslAuthenticate until the login succeeds or fails;
    /// the principal that logged in.
    async fn serve_login<S>(&self, stream: &mut S) -> Result<String, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut auth = Authenticator::new(&self.security);
        // Only PLAIN is offered here (SCRAM credentials live in the metadata log), whose
        // users are the listener's JAAS entries: no image is consulted.
        let image = MetadataImage::default();
        loop {
            let frame = read_frame(stream).await?;
            let (header, api_key, request) = crate::connection::parse(frame)?;
            let kind = match request {
                Request::Kind(k) => *k,
                _ => return Err(format!("{api_key:?} before logging in")),
            };
            let (response, outcome) = match kind {
                RequestKind::SaslHandshake(req) if header.request_api_version >= 1 => {
                    let (resp, ok) = auth.handshake(&req, header.request_api_version);
                    let outcome = (!ok)
                        .then(|| Err(format!("SASL mechanism {} refused", req.mechanism.as_str())));
                    (ResponseKind::SaslHandshake(resp), outcome)
                }
                RequestKind::SaslAuthenticate(req) => {
                    let ok = SaslAuthenticateResponse::default;
                    match auth.authenticate(&req.auth_bytes, &image) {
                        AuthStep::Continue(b) => (
                            ResponseKind::SaslAuthenticate(ok().with_auth_bytes(b.into())),
                            None,
                        ),
                        AuthStep::Done(b, user) => (
                            ResponseKind::SaslAuthenticate(ok().with_auth_bytes(b.into())),
                            Some(Ok(format!("User:{user}"))),
                        ),
                        AuthStep::Failed { code, message, log } => {
                            tokio::time::sleep(self.failed_delay).await;
                            let resp = ok()
                                .with_error_code(code)
                                .with_error_message(Some(StrBytes::from_string(message)));
                            (
                                ResponseKind::SaslAuthenticate(resp),
                                Some(Err(format!("failed authentication: {log}"))),
                            )
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "{api_key:?} v{} before logging in",
                        header.request_api_version
                    ))
                }
            };
            let bytes = crate::handlers::encode_response(
                &header,
                api_key,
                response,
                header.request_api_version,
            )?;
            write_frame(stream, &bytes).await?;
            if api_key != ApiKey::SaslHandshake && api_key != ApiKey::SaslAuthenticate {
                return Err(format!("{api_key:?} before logging in"));
            }
            if let Some(done) = outcome {
                return done;
            }
        }
    }
}

impl StreamSecurity for QuorumSecurity {
    fn connect(&self, tcp: TcpStream, host: String) -> BoxFuture<Result<QuorumStream, String>> {
        let inner = self.0.clone();
        Box::pin(async move {
            inner
                .client
                .secure(tcp, &host)
                .await
                .map(|s| Box::new(s) as QuorumStream)
                .map_err(|e| e.to_string())
        })
    }

    fn accept(&self, tcp: TcpStream, _peer: SocketAddr) -> BoxFuture<Result<QuorumStream, String>> {
        let inner = self.0.clone();
        Box::pin(async move { inner.accept_stream(tcp).await })
    }
}

/// A renewed controller certificate takes effect without a restart, as on the client
/// listeners; the task ends with the quorum's security.
async fn reload_certificate(tls: ServerTls, owner: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(crate::server::CERTIFICATE_CHECK);
    while owner.strong_count() > 0 {
        tick.tick().await;
        let t = tls.clone();
        let _ = tokio::task::spawn_blocking(move || t.reload_if_changed()).await;
    }
}

async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Bytes, String> {
    let size = stream
        .read_i32()
        .await
        .map_err(|e| format!("reading: {e}"))?;
    if size < 8 || size as usize > LOGIN_FRAME_LIMIT {
        return Err(format!(
            "a frame of {size} bytes before logging in (not a quorum member's login)"
        ));
    }
    let mut buf = BytesMut::zeroed(size as usize);
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| format!("reading: {e}"))?;
    Ok(buf.freeze())
}

async fn write_frame<S: AsyncWrite + Unpin>(stream: &mut S, body: &Bytes) -> Result<(), String> {
    let write = async {
        stream.write_all(body).await?;
        stream.flush().await
    };
    write.await.map_err(|e| format!("writing: {e}"))
}
