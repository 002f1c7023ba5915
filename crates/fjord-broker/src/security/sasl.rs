//! The SASL exchange of one connection on a SASL_PLAINTEXT or SASL_SSL listener:
//! SaslHandshake picks a mechanism, SaslAuthenticate carries its messages, and until it
//! succeeds nothing but ApiVersions is served. After a SaslHandshake v0 (older clients)
//! the messages come as bare size-prefixed frames instead, without Kafka headers.

use std::collections::BTreeMap;

use fjord_controller::{MetadataImage, ScramMechanism};
use kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};
use kafka_protocol::protocol::StrBytes;

use super::scram::{ScramServer, ScramStep};
use base64::Engine;

use crate::config::{ListenerSecurity, Mechanism, OAuthSettings};
use crate::error::code::{
    ILLEGAL_SASL_STATE, SASL_AUTHENTICATION_FAILED, UNSUPPORTED_SASL_MECHANISM,
};

enum Stage {
    /// Waiting for SaslHandshake.
    Handshake,
    /// The mechanism is chosen; waiting for (more) SaslAuthenticate.
    Plain,
    Scram(ScramMechanism, Box<ScramServer>),
    OAuth,
}

/// Where one connection's authentication stands.
pub struct Authenticator {
    mechanisms: Vec<Mechanism>,
    plain_users: BTreeMap<String, String>,
    reauth_ms: BTreeMap<Mechanism, u64>,
    oauth: Option<OAuthSettings>,
    /// When the OAUTHBEARER token of a finished login expires (ms since the epoch).
    token_expires_ms: Option<i64>,
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
            oauth: listener.oauth.clone(),
            token_expires_ms: None,
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
            Stage::OAuth => Mechanism::OAuthBearer,
        };
        let max = self.reauth_ms.get(&mechanism).copied().unwrap_or(0);
        // As Kafka: a token that expires sooner shortens the login to its expiry, when
        // logins are limited at all.
        match self.token_expires_ms {
            Some(exp) if max > 0 => {
                let left = (exp - crate::state::now_ms()).max(1) as u64;
                max.min(left)
            }
            _ => max,
        }
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
            Some(Mechanism::OAuthBearer) => self.stage = Stage::OAuth,
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
            Stage::OAuth => {
                let settings = self.oauth.as_ref();
                match settings
                    .ok_or_else(|| "not set up".to_string())
                    .and_then(|o| check_unsecured_token(message, o, crate::state::now_ms()))
                {
                    Ok((user, expires_ms)) => {
                        self.token_expires_ms = Some(expires_ms);
                        AuthStep::Done(Vec::new(), user)
                    }
                    Err(why) => failed(
                        SASL_AUTHENTICATION_FAILED,
                        "Authentication failed during authentication due to invalid \
                         credentials with SASL mechanism OAUTHBEARER"
                            .into(),
                        format!("OAUTHBEARER: {why}"),
                    ),
                }
            }
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

/// The client's first OAUTHBEARER message (RFC 7628): a GS2 header, then `key=value`
/// pairs each ended by 0x01, `auth=Bearer <token>` among them, then a final 0x01. The
/// token is an unsecured JWS (`alg` none), checked as Kafka's unsecured validator does:
/// its principal claim names the user and `exp` must not have passed. The user and the
/// token's expiry (ms) on success; the reason never quotes the token.
fn check_unsecured_token(
    message: &[u8],
    settings: &OAuthSettings,
    now_ms: i64,
) -> Result<(String, i64), String> {
    let text = std::str::from_utf8(message).map_err(|_| "the message is not UTF-8".to_string())?;
    let (gs2, pairs) = text
        .split_once('\x01')
        .ok_or("no key/value pairs after the GS2 header")?;
    if !gs2.starts_with("n,") && !gs2.starts_with("y,") {
        return Err("malformed GS2 header".into());
    }
    let token = pairs
        .split('\x01')
        .find_map(|kv| kv.strip_prefix("auth="))
        .ok_or("no auth= pair")?;
    let token = token
        .strip_prefix("Bearer ")
        .ok_or("the auth= pair is not a Bearer token")?
        .trim();
    let mut parts = token.split('.');
    let (header, payload, signature) =
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(p), Some(s), None) => (h, p, s),
            _ => return Err("the token is not a compact JWS (header.payload.signature)".into()),
        };
    let json = |part: &str, what: &str| -> Result<serde_json::Value, String> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part.trim_end_matches('='))
            .map_err(|_| format!("the token's {what} is not base64url"))?;
        serde_json::from_slice(&bytes).map_err(|_| format!("the token's {what} is not JSON"))
    };
    let header = json(header, "header")?;
    if header.get("alg").and_then(|a| a.as_str()) != Some("none") || !signature.is_empty() {
        return Err("the token is signed; only unsecured tokens (alg none) are accepted".into());
    }
    let claims = json(payload, "claims")?;
    let principal = claims
        .get(&settings.principal_claim)
        .and_then(|p| p.as_str())
        .filter(|p| !p.trim().is_empty())
        .ok_or_else(|| format!("the token has no '{}' claim", settings.principal_claim))?;
    let seconds = |claim: &str| claims.get(claim).and_then(|v| v.as_f64());
    let exp = seconds("exp").ok_or("the token has no 'exp' claim")?;
    let exp_ms = (exp * 1000.0) as i64;
    let skew = settings.clock_skew_ms as i64;
    if now_ms > exp_ms.saturating_add(skew) {
        return Err(format!("the token of {principal} expired"));
    }
    if seconds("iat").is_some_and(|iat| (iat * 1000.0) as i64 > now_ms.saturating_add(skew)) {
        return Err(format!("the token of {principal} was issued in the future"));
    }
    Ok((principal.to_string(), exp_ms))
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
            reauth_ms: [(Mechanism::Plain, 60_000), (Mechanism::OAuthBearer, 60_000)].into(),
            oauth: Some(OAuthSettings {
                principal_claim: "sub".into(),
                clock_skew_ms: 0,
            }),
        }
    }

    fn token(header: &str, claims: &str, signature: &str) -> Vec<u8> {
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "n,,\x01auth=Bearer {}.{}.{signature}\x01\x01",
            b64(header),
            b64(claims)
        )
        .into_bytes()
    }

    #[test]
    fn oauthbearer_takes_unsecured_tokens_and_their_principal() {
        let now = crate::state::now_ms() / 1000;
        let none = r#"{"alg":"none"}"#;
        let good = format!(r#"{{"sub":"alice","exp":{},"iat":{now}}}"#, now + 30);
        let mut a = Authenticator::new(&listener(&[Mechanism::OAuthBearer]));
        assert_eq!(handshake(&mut a, "OAUTHBEARER"), (0, true));
        let image = MetadataImage::default();
        match a.authenticate(&token(none, &good, ""), &image) {
            AuthStep::Done(reply, user) => assert_eq!((reply, user.as_str()), (vec![], "alice")),
            other => panic!("{other:?}"),
        }
        // The login lasts until the token expires, within connections.max.reauth.ms.
        let lifetime = a.session_lifetime_ms();
        assert!((25_000..=30_000).contains(&lifetime), "{lifetime}");

        let expired = format!(r#"{{"sub":"alice","exp":{}}}"#, now - 5);
        let cases = [
            (token(none, &expired, ""), "expired"),
            (
                token(r#"{"alg":"HS256"}"#, &good, ""),
                "only unsecured tokens",
            ),
            (token(none, &good, "c2ln"), "only unsecured tokens"),
            (
                token(none, &format!(r#"{{"exp":{}}}"#, now + 30), ""),
                "no 'sub' claim",
            ),
            (token(none, r#"{"sub":"alice"}"#, ""), "no 'exp' claim"),
            (
                b"n,,\x01auth=Basic abc\x01\x01".to_vec(),
                "not a Bearer token",
            ),
            (b"garbage".to_vec(), "no key/value pairs"),
        ];
        for (message, why) in cases {
            let mut a = Authenticator::new(&listener(&[Mechanism::OAuthBearer]));
            handshake(&mut a, "OAUTHBEARER");
            match a.authenticate(&message, &image) {
                AuthStep::Failed { code, log, .. } => {
                    assert_eq!(code, SASL_AUTHENTICATION_FAILED);
                    assert!(log.contains(why), "{why}: {log}");
                    assert!(!log.contains("eyJ"), "the token is never logged: {log}");
                }
                other => panic!("{why}: {other:?}"),
            }
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
