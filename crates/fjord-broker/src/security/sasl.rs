//! The SASL exchange of one connection on a SASL_PLAINTEXT or SASL_SSL listener:
//! SaslHandshake picks a mechanism, SaslAuthenticate carries its messages, and until it
//! succeeds nothing but ApiVersions is served. After a SaslHandshake v0 (older clients)
//! the messages come as bare size-prefixed frames instead, without Kafka headers.

use std::collections::BTreeMap;

use fjord_controller::{MetadataImage, ScramMechanism};
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::scram::{ScramServer, ScramStep};
use crate::config::{ListenerSecurity, Mechanism};
use crate::error::code::{
    ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
};

enum Stage {
    /// Waiting for SaslHandshake.
    Handshake,
    /// The mechanism is chosen; waiting for (more) SaslAuthenticate.
    Plain,
    Scram(ScramMechanism, Box<ScramServer>),
}

/// Where one connection's authentication stands.
pub struct Authenticator {
    mechanisms: Vec<Mechanism>,
    plain_users: BTreeMap<String, String>,
    reauth_ms: BTreeMap<Mechanism, u64>,
    stage: Stage,
    /// The handshake was v0: messages come as bare frames.
    raw: bool,
}

/// What one SASL message led to.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthStep {
    /// More messages to come; send these bytes.
    Continue(Vec<u8>),
    /// Authenticated as this user; send these bytes.
    Done(Vec<u8>, String),
    /// Refused with this error code and message for the client, then the connection
    /// closes; `log` is for the broker's log (never a secret).
    Failed {
        code: i16,
        message: String,
        log: String,
    },
}

impl Authenticator {
    pub fn new(listener: &ListenerSecurity) -> Authenticator {
        Authenticator {
            mechanisms: listener.mechanisms.clone(),
            plain_users: listener.plain_users.clone(),
            reauth_ms: listener.reauth_ms.clone(),
            stage: Stage::Handshake,
            raw: false,
        }
    }

    /// How long a login with the chosen mechanism lasts before the client must log in
    /// again (KIP-368); 0 for the connection's life, or before a mechanism is chosen.
    pub fn session_lifetime_ms(&self) -> u64 {
        let mechanism = match &self.stage {
            Stage::Handshake => return 0,
            Stage::Plain => Mechanism::Plain,
            Stage::Scram(ScramMechanism::Sha256, _) => Mechanism::ScramSha256,
            Stage::Scram(ScramMechanism::Sha512, _) => Mechanism::ScramSha512,
        };
        self.reauth_ms.get(&mechanism).copied().unwrap_or(0)
    }

    /// Whether the next frame is a bare SASL message (after a v0 handshake).
    pub fn expects_raw(&self) -> bool {
        self.raw && !matches!(self.stage, Stage::Handshake)
    }

    /// Answers a SaslHandshake; `false` means the client asked for a mechanism this
    /// listener does not offer (or asked twice), and the connection closes after the
    /// answer.
    pub fn handshake(
        &mut self,
        req: &SaslHandshakeRequest,
        version: i16,
    ) -> (SaslHandshakeResponse, bool) {
        let offered: Vec<StrBytes> = self
            .mechanisms
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let response = SaslHandshakeResponse::default().with_mechanisms(offered);
        if !matches!(self.stage, Stage::Handshake) {
            return (response.with_error_code(ILLEGAL_SASL_STATE), false);
        }
        let asked = req.mechanism.as_str().to_ascii_uppercase();
        match Mechanism::parse(&asked).filter(|m| self.mechanisms.contains(m)) {
            Some(Mechanism::Plain) => self.stage = Stage::Plain,
            Some(Mechanism::ScramSha256) => {
                let m = ScramMechanism::Sha256;
                self.stage = Stage::Scram(m, Box::new(ScramServer::new(m)))
            }
            Some(Mechanism::ScramSha512) => {
                let m = ScramMechanism::Sha512;
                self.stage = Stage::Scram(m, Box::new(ScramServer::new(m)))
            }
            None => return (response.with_error_code(UNSUPPORTED_SASL_MECHANISM), false),
        }
        self.raw = version == 0;
        (response, true)
    }

    /// Takes one SASL message (a SaslAuthenticate's bytes, or a bare frame after a v0
    /// handshake); credentials are looked up in `image`.
    pub fn authenticate(&mut self, message: &[u8], image: &MetadataImage) -> AuthStep {
        let failed =
            |code: i16, message: String, log: String| AuthStep::Failed { code, message, log };
        match &mut self.stage {
            Stage::Handshake => failed(
                ILLEGAL_SASL_STATE,
                "SaslAuthenticate before SaslHandshake".into(),
                "SaslAuthenticate before SaslHandshake".into(),
            ),
            Stage::Plain => match check_plain(message, &self.plain_users, image) {
                Ok(user) => AuthStep::Done(Vec::new(), user),
                Err(why) => failed(
                    SASL_AUTHENTICATION_FAILED,
                    "Authentication failed: Invalid username or password".into(),
                    format!("PLAIN: {why}"),
                ),
            },
            Stage::Scram(m, server) => {
                let m = *m;
                let lookup = |user: &str| image.scram_credential(user, m).cloned();
                match server.step(message, lookup) {
                    Ok(ScramStep::Challenge(bytes)) => AuthStep::Continue(bytes),
                    Ok(ScramStep::Done { user, reply }) => AuthStep::Done(reply, user),
                    Err(e) => failed(
                        SASL_AUTHENTICATION_FAILED,
                        format!(
                            "Authentication failed during authentication due to invalid \
                             credentials with SASL mechanism {}",
                            m.name()
                        ),
                        format!("{}: {}", m.name(), e.0),
                    ),
                }
            }
        }
    }
}

/// SASL/PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`. The password is checked
/// against the listener's JAAS users, else against the user's SCRAM credential.
fn check_plain(
    message: &[u8],
    jaas: &BTreeMap<String, String>,
    image: &MetadataImage,
) -> Result<String, String> {
    let text = std::str::from_utf8(message).map_err(|_| "the message is not UTF-8".to_string())?;
    let mut parts = text.split('\0');
    let (authzid, user, password) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(u), Some(p), None) => (a, u, p),
        _ => return Err("malformed message".into()),
    };
    if user.is_empty() || password.is_empty() {
        return Err("empty user name or password".into());
    }
    if !authzid.is_empty() && authzid != user {
        return Err(format!("user {user} asked to act as {authzid}"));
    }
    let ok = match jaas.get(user) {
        Some(expected) => super::scram::same_bytes(expected.as_bytes(), password.as_bytes()),
        None => ScramMechanism::ALL.into_iter().rev().any(|m| {
            image
                .scram_credential(user, m)
                .is_some_and(|c| super::scram::password_matches(m, c, password))
        }),
    };
    if ok {
        Ok(user.to_string())
    } else {
        Err(format!("invalid credentials for user {user}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_controller::MetadataRecord;

    fn listener(mechanisms: &[Mechanism]) -> ListenerSecurity {
        ListenerSecurity {
            tls: None,
            mechanisms: mechanisms.to_vec(),
            plain_users: [("jaas".to_string(), "jaas-secret".to_string())].into(),
            reauth_ms: [(Mechanism::Plain, 60_000)].into(),
        }
    }

    #[test]
    fn a_login_lasts_as_its_mechanism_says() {
        let mut a = Authenticator::new(&listener(&[Mechanism::Plain, Mechanism::ScramSha512]));
        assert_eq!(a.session_lifetime_ms(), 0, "no mechanism chosen yet");
        assert_eq!(handshake(&mut a, "PLAIN"), (0, true));
        assert_eq!(a.session_lifetime_ms(), 60_000);
        let mut a = Authenticator::new(&listener(&[Mechanism::Plain, Mechanism::ScramSha512]));
        assert_eq!(handshake(&mut a, "SCRAM-SHA-512"), (0, true));
        assert_eq!(a.session_lifetime_ms(), 0, "not set for SCRAM-SHA-512");
    }

    fn image_with(user: &str, password: &str) -> MetadataImage {
        let mut image = MetadataImage::default();
        let m = ScramMechanism::Sha512;
        image.apply(&MetadataRecord::ScramCredential {
            user: user.into(),
            mechanism: m,
            credential: Some(super::super::scram::credential(m, password, 4096).unwrap()),
        });
        image
    }

    fn handshake(a: &mut Authenticator, m: &str) -> (i16, bool) {
        let (r, ok) = a.handshake(
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(m.into())),
            1,
        );
        (r.error_code, ok)
    }

    fn plain(a: &mut Authenticator, image: &MetadataImage, msg: &str) -> Result<String, i16> {
        match a.authenticate(msg.as_bytes(), image) {
            AuthStep::Done(_, user) => Ok(user),
            AuthStep::Failed { code, .. } => Err(code),
            AuthStep::Continue(_) => Err(-1),
        }
    }

    #[test]
    fn plain_checks_jaas_users_then_scram_credentials() {
        let image = image_with("alice", "alice-secret");
        let all = [Mechanism::Plain, Mechanism::ScramSha512];
        for (msg, want) in [
            ("\0jaas\0jaas-secret", Ok("jaas".to_string())),
            ("\0alice\0alice-secret", Ok("alice".to_string())),
            ("alice\0alice\0alice-secret", Ok("alice".to_string())),
            ("bob\0alice\0alice-secret", Err(SASL_AUTHENTICATION_FAILED)),
            ("\0alice\0wrong", Err(SASL_AUTHENTICATION_FAILED)),
            ("\0jaas\0alice-secret", Err(SASL_AUTHENTICATION_FAILED)),
            ("\0nobody\0x", Err(SASL_AUTHENTICATION_FAILED)),
            ("garbage", Err(SASL_AUTHENTICATION_FAILED)),
        ] {
            let mut a = Authenticator::new(&listener(&all));
            assert_eq!(handshake(&mut a, "PLAIN"), (0, true));
            assert_eq!(plain(&mut a, &image, msg), want, "{msg:?}");
        }
    }

    #[test]
    fn handshake_offers_only_the_listener_mechanisms() {
        let mut a = Authenticator::new(&listener(&[Mechanism::ScramSha256]));
        assert_eq!(
            handshake(&mut a, "PLAIN"),
            (UNSUPPORTED_SASL_MECHANISM, false)
        );
        assert_eq!(
            handshake(&mut a, "GSSAPI"),
            (UNSUPPORTED_SASL_MECHANISM, false)
        );
        assert_eq!(handshake(&mut a, "SCRAM-SHA-256"), (0, true));
        // Twice is a protocol error.
        assert_eq!(
            handshake(&mut a, "SCRAM-SHA-256"),
            (ILLEGAL_SASL_STATE, false)
        );
        // Authenticate before any handshake.
        let mut b = Authenticator::new(&listener(&[Mechanism::Plain]));
        assert_eq!(
            plain(&mut b, &MetadataImage::default(), "\0jaas\0jaas-secret"),
            Err(ILLEGAL_SASL_STATE)
        );
        // A v0 handshake: the messages that follow are bare frames.
        let mut c = Authenticator::new(&listener(&[Mechanism::Plain]));
        assert!(!c.expects_raw());
        let req =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        assert!(c.handshake(&req, 0).1);
        assert!(c.expects_raw());
    }
}
