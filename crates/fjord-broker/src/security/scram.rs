//! SCRAM (RFC 5802, with SHA-256 and SHA-512 as RFC 7677 and Kafka use them): the
//! credentials derived from a password, and the server side of the exchange.
//!
//! The server keeps only the salt, the iteration count, StoredKey = H(HMAC(SaltedPassword,
//! "Client Key")) and ServerKey = HMAC(SaltedPassword, "Server Key"), so a leaked metadata
//! log does not give the password or anything to log in with.

use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use fjord_controller::{ScramCredential, ScramMechanism};
use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hmac, pbkdf2};

/// Random bytes in the server's part of the nonce, and their length in base64.
const SERVER_NONCE_BYTES: usize = 24;
const SERVER_NONCE_LEN: usize = SERVER_NONCE_BYTES / 3 * 4;

/// Why a SCRAM exchange failed; the text is for the server's log and the client, and
/// never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramError(pub String);

fn algorithms(
    m: ScramMechanism,
) -> (
    pbkdf2::Algorithm,
    hmac::Algorithm,
    &'static digest::Algorithm,
) {
    match m {
        ScramMechanism::Sha256 => (
            pbkdf2::PBKDF2_HMAC_SHA256,
            hmac::HMAC_SHA256,
            &digest::SHA256,
        ),
        ScramMechanism::Sha512 => (
            pbkdf2::PBKDF2_HMAC_SHA512,
            hmac::HMAC_SHA512,
            &digest::SHA512,
        ),
    }
}

fn hmac_of(m: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(algorithms(m).1, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// SaltedPassword = Hi(password, salt, iterations).
pub fn salted_password(m: ScramMechanism, password: &str, salt: &[u8], iterations: i32) -> Vec<u8> {
    let (alg, _, d) = algorithms(m);
    let mut out = vec![0u8; d.output_len()];
    let rounds = NonZeroU32::new(iterations.max(1) as u32).unwrap_or(NonZeroU32::MIN);
    pbkdf2::derive(alg, rounds, salt, password.as_bytes(), &mut out);
    out
}

/// The stored credential for a salted password (what AlterUserScramCredentials carries).
pub fn credential_from_salted(
    m: ScramMechanism,
    salt: &[u8],
    salted: &[u8],
    iterations: i32,
) -> ScramCredential {
    let client_key = hmac_of(m, salted, b"Client Key");
    let stored_key = digest::digest(algorithms(m).2, &client_key)
        .as_ref()
        .to_vec();
    ScramCredential {
        salt: salt.to_vec(),
        stored_key,
        server_key: hmac_of(m, salted, b"Server Key"),
        iterations,
    }
}

/// A fresh random salt, as long as the mechanism's hash.
pub fn new_salt(m: ScramMechanism) -> Result<Vec<u8>, ScramError> {
    let mut salt = vec![0u8; algorithms(m).2.output_len()];
    SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| ScramError("the system's random source failed".into()))?;
    Ok(salt)
}

/// The stored credential for a password, with a fresh salt.
pub fn credential(
    m: ScramMechanism,
    password: &str,
    iterations: i32,
) -> Result<ScramCredential, ScramError> {
    let salt = new_salt(m)?;
    let salted = salted_password(m, password, &salt, iterations);
    Ok(credential_from_salted(m, &salt, &salted, iterations))
}

/// Whether `password` is the one `c` was made from (SASL/PLAIN checked against a SCRAM
/// credential); compared in constant time.
pub fn password_matches(m: ScramMechanism, c: &ScramCredential, password: &str) -> bool {
    let salted = salted_password(m, password, &c.salt, c.iterations);
    let derived = credential_from_salted(m, &c.salt, &salted, c.iterations);
    same_bytes(&derived.stored_key, &c.stored_key)
}

/// Whether two secrets are equal, in time that depends on their length only, so that
/// timing does not tell a guesser how much of a secret it got right.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// SCRAM names escape ',' and '=' (RFC 5802 section 5.1).
fn unescape_name(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError("invalid escape in the user name".into())),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `key=value` attributes of a SCRAM message, in order.
fn attributes(msg: &str) -> Vec<(&str, &str)> {
    msg.split(',')
        .filter_map(|a| a.split_once('='))
        .collect::<Vec<_>>()
}

/// The server side of one SCRAM exchange: client-first, then client-final.
pub enum ScramServer {
    /// Waiting for client-first-message.
    Start {
        mechanism: ScramMechanism,
    },
    /// server-first-message sent; waiting for client-final-message.
    Challenged {
        mechanism: ScramMechanism,
        user: String,
        credential: ScramCredential,
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        nonce: String,
    },
    Finished,
}

/// What one step of the exchange produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Send this challenge and wait for the client's next message.
    Challenge(Vec<u8>),
    /// Authenticated as `user`; send the server-final-message.
    Done { user: String, reply: Vec<u8> },
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> ScramServer {
        ScramServer::Start { mechanism }
    }

    /// Takes the client's next message; `lookup` finds a user's credential.
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl Fn(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, ScramError> {
        let text = std::str::from_utf8(message)
            .map_err(|_| ScramError("the SCRAM message is not UTF-8".into()))?;
        match std::mem::replace(self, ScramServer::Finished) {
            ScramServer::Start { mechanism } => {
                let (step, next) = client_first(mechanism, text, lookup)?;
                *self = next;
                Ok(step)
            }
            ScramServer::Challenged {
                mechanism,
                user,
                credential,
                gs2_header,
                client_first_bare,
                server_first,
                nonce,
            } => {
                let (without_proof, proof) = text
                    .rsplit_once(",p=")
                    .ok_or_else(|| ScramError("client-final-message has no proof".into()))?;
                let attrs = attributes(without_proof);
                let binding = attrs
                    .iter()
                    .find(|(k, _)| *k == "c")
                    .map(|(_, v)| *v)
                    .ok_or_else(|| ScramError("client-final-message has no c=".into()))?;
                if B64.decode(binding).ok().as_deref() != Some(gs2_header.as_bytes()) {
                    return Err(ScramError("channel binding does not match".into()));
                }
                let their_nonce = attrs.iter().find(|(k, _)| *k == "r").map(|(_, v)| *v);
                // RFC 5802 wants the server's nonce back. librdkafka before 2.6.1 sends the
                // client's nonce in front of it once more; that still carries the server's
                // fresh part, which is what defeats replay, so it is taken too (as Kafka
                // 3.8.1 to 3.9 did), and nothing else.
                let client_nonce = &nonce[..nonce.len() - SERVER_NONCE_LEN];
                let accepted = their_nonce.is_some_and(|r| {
                    r == nonce
                        || (r.len() == client_nonce.len() + nonce.len()
                            && r.starts_with(client_nonce)
                            && r.ends_with(nonce.as_str()))
                });
                if !accepted {
                    return Err(ScramError("the nonce does not match".into()));
                }
                let proof = B64
                    .decode(proof)
                    .map_err(|_| ScramError("the proof is not base64".into()))?;
                let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
                let signature = hmac_of(mechanism, &credential.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(ScramError("invalid credentials".into()));
                }
                let client_key: Vec<u8> =
                    proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                let stored = digest::digest(algorithms(mechanism).2, &client_key);
                if !same_bytes(stored.as_ref(), &credential.stored_key) {
                    return Err(ScramError("invalid credentials".into()));
                }
                let server_signature =
                    hmac_of(mechanism, &credential.server_key, auth_message.as_bytes());
                Ok(ScramStep::Done {
                    user,
                    reply: format!("v={}", B64.encode(server_signature)).into_bytes(),
                })
            }
            ScramServer::Finished => Err(ScramError("the SCRAM exchange is over".into())),
        }
    }
}

fn client_first(
    mechanism: ScramMechanism,
    text: &str,
    lookup: impl Fn(&str) -> Option<ScramCredential>,
) -> Result<(ScramStep, ScramServer), ScramError> {
    // gs2-header: channel-binding flag, optional authzid, then the bare message.
    let mut parts = text.splitn(3, ',');
    let (flag, authzid, bare) = match (parts.next(), parts.next(), parts.next()) {
        (Some(f), Some(a), Some(b)) => (f, a, b),
        _ => return Err(ScramError("malformed client-first-message".into())),
    };
    if flag != "n" && flag != "y" {
        return Err(ScramError(
            "channel binding is not supported (gs2 flag must be n or y)".into(),
        ));
    }
    let gs2_header = format!("{flag},{authzid},");
    let attrs = attributes(bare);
    let user = match attrs.first() {
        Some(("n", name)) => unescape_name(name)?,
        _ => return Err(ScramError("client-first-message has no user name".into())),
    };
    let client_nonce = match attrs.get(1) {
        Some(("r", nonce)) if !nonce.is_empty() => *nonce,
        _ => return Err(ScramError("client-first-message has no nonce".into())),
    };
    if let Some(authz) = authzid.strip_prefix("a=") {
        if unescape_name(authz)? != user {
            return Err(ScramError(
                "the authorization id differs from the user name".into(),
            ));
        }
    }
    // Extensions (Kafka's tokenauth=true is for delegation tokens, which Fjord has not).
    if attrs[2..]
        .iter()
        .any(|(k, v)| *k == "tokenauth" && *v == "true")
    {
        return Err(ScramError("delegation tokens are not supported".into()));
    }
    let credential = lookup(&user).ok_or_else(|| ScramError("invalid credentials".into()))?;
    let mut random = [0u8; SERVER_NONCE_BYTES];
    SystemRandom::new()
        .fill(&mut random)
        .map_err(|_| ScramError("the system's random source failed".into()))?;
    let nonce = format!("{client_nonce}{}", B64.encode(random));
    let server_first = format!(
        "r={nonce},s={},i={}",
        B64.encode(&credential.salt),
        credential.iterations
    );
    Ok((
        ScramStep::Challenge(server_first.clone().into_bytes()),
        ScramServer::Challenged {
            mechanism,
            user,
            credential,
            gs2_header,
            client_first_bare: bare.to_string(),
            server_first,
            nonce,
        },
    ))
}

/// The client side of a SCRAM exchange (Fjord's own tools log in with it).
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    nonce: String,
    client_first_bare: String,
    expected_server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
    ) -> Result<ScramClient, ScramError> {
        let mut random = [0u8; 24];
        SystemRandom::new()
            .fill(&mut random)
            .map_err(|_| ScramError("the system's random source failed".into()))?;
        let nonce = B64.encode(random);
        let escaped = user.replace('=', "=3D").replace(',', "=2C");
        Ok(ScramClient {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            client_first_bare: format!("n={escaped},r={nonce}"),
            nonce,
            expected_server_signature: None,
        })
    }

    /// client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Answers server-first-message with client-final-message.
    pub fn answer(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramError("server-first-message is not UTF-8".into()))?;
        let attrs = attributes(text);
        let get = |k: &str| attrs.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let nonce = get("r").ok_or_else(|| ScramError("no nonce from the server".into()))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(ScramError("the server's nonce does not extend ours".into()));
        }
        let salt = get("s")
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| ScramError("no salt from the server".into()))?;
        let iterations: i32 = get("i")
            .and_then(|i| i.parse().ok())
            .filter(|i| *i >= 1)
            .ok_or_else(|| ScramError("no iteration count from the server".into()))?;
        let m = self.mechanism;
        let salted = salted_password(m, &self.password, &salt, iterations);
        let client_key = hmac_of(m, &salted, b"Client Key");
        let stored_key = digest::digest(algorithms(m).2, &client_key);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{},{text},{without_proof}", self.client_first_bare);
        let signature = hmac_of(m, stored_key.as_ref(), auth.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac_of(m, &salted, b"Server Key");
        self.expected_server_signature = Some(hmac_of(m, &server_key, auth.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final-message: the server knew the password's keys too.
    pub fn verify(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramError("server-final-message is not UTF-8".into()))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramError(format!("the server refused: {e}")));
        }
        let given = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| ScramError("malformed server-final-message".into()))?;
        match &self.expected_server_signature {
            Some(want) if same_bytes(want, &given) => Ok(()),
            _ => Err(ScramError(format!(
                "the server's signature is wrong: it does not hold {}'s credential",
                self.user
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exchange of RFC 7677 section 3 (user "user", password "pencil"), with the
    /// server nonce the RFC's server chose.
    #[test]
    fn rfc7677_sha256_exchange_verifies() {
        let m = ScramMechanism::Sha256;
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(m, "pencil", &salt, 4096);
        let c = credential_from_salted(m, &salt, &salted, 4096);
        let client_first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let server_first =
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let mut server = ScramServer::Challenged {
            mechanism: m,
            user: "user".into(),
            credential: c.clone(),
            gs2_header: "n,,".into(),
            client_first_bare: client_first_bare.into(),
            server_first: server_first.into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                            p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        let step = server.step(client_final.as_bytes(), |_| None).unwrap();
        assert_eq!(
            step,
            ScramStep::Done {
                user: "user".into(),
                reply: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
            }
        );
        assert!(password_matches(m, &c, "pencil"));
        assert!(!password_matches(m, &c, "pencil2"));
    }

    /// A whole exchange against a client written from the RFC, for both mechanisms, and
    /// a wrong password refused.
    #[test]
    fn full_exchange_and_wrong_password() {
        for m in ScramMechanism::ALL {
            let stored = credential(m, "secret", 4096).unwrap();
            // (password, what the client puts before the server's nonce, accepted):
            // librdkafka before 2.6.1 repeats its own nonce in front.
            for (password, prefix, ok) in [
                ("secret", "", true),
                ("wrong", "", false),
                ("secret", "abcdef", true),
                ("secret", "abcdeX", false),
                ("secret", "a", false),
            ] {
                let mut server = ScramServer::new(m);
                let lookup = |u: &str| (u == "al,ice").then(|| stored.clone());
                let first = "n,,n=al=2Cice,r=abcdef";
                let ScramStep::Challenge(challenge) =
                    server.step(first.as_bytes(), lookup).unwrap()
                else {
                    panic!("expected a challenge")
                };
                let challenge = String::from_utf8(challenge).unwrap();
                let attrs = attributes(&challenge);
                let nonce = attrs[0].1;
                assert!(nonce.starts_with("abcdef") && nonce.len() > 6);
                let salt = B64.decode(attrs[1].1).unwrap();
                let iterations: i32 = attrs[2].1.parse().unwrap();
                let salted = salted_password(m, password, &salt, iterations);
                let client_key = hmac_of(m, &salted, b"Client Key");
                let stored_key = digest::digest(algorithms(m).2, &client_key);
                let without_proof = format!("c=biws,r={prefix}{nonce}");
                let auth = format!("n=al=2Cice,r=abcdef,{challenge},{without_proof}");
                let sig = hmac_of(m, stored_key.as_ref(), auth.as_bytes());
                let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
                let last = format!("{without_proof},p={}", B64.encode(proof));
                let result = server.step(last.as_bytes(), lookup);
                assert_eq!(result.is_ok(), ok, "{m:?} {password}: {result:?}");
            }
        }
    }

    #[test]
    fn fjords_client_logs_in_to_fjords_server() {
        for m in ScramMechanism::ALL {
            let stored = credential(m, "pw", 4096).unwrap();
            let lookup = |u: &str| (u == "u,1").then(|| stored.clone());
            let mut client = ScramClient::new(m, "u,1", "pw").unwrap();
            let mut server = ScramServer::new(m);
            let ScramStep::Challenge(c) = server.step(&client.first(), lookup).unwrap() else {
                panic!("expected a challenge")
            };
            let last = client.answer(&c).unwrap();
            let ScramStep::Done { user, reply } = server.step(&last, lookup).unwrap() else {
                panic!("expected the end")
            };
            assert_eq!(user, "u,1");
            client.verify(&reply).unwrap();
            assert!(client.verify(b"v=AAAA").is_err());
        }
    }

    #[test]
    fn malformed_and_unknown_are_refused() {
        let m = ScramMechanism::Sha512;
        for bad in [
            "",
            "n,,",
            "p=tls-unique,,n=u,r=x",
            "n,,n=u",
            "n,,n=u=ZZ,r=x",
            "n,a=other,n=u,r=x",
            "n,,n=nobody,r=x",
        ] {
            let mut s = ScramServer::new(m);
            assert!(s.step(bad.as_bytes(), |_| None).is_err(), "{bad}");
        }
        let mut s = ScramServer::new(m);
        assert!(s.step(&[0xff, 0xfe], |_| None).is_err());
    }
}
