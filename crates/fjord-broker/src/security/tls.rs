//! The server side of a TLS listener, with rustls: certificates from PEM, client
//! certificates checked against the truststore (`ssl.client.auth`), the TLS versions of
//! `ssl.enabled.protocols`, and a keystore file that is read again when it changes, so a
//! renewed certificate takes effect without a restart.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::RwLock;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, Keystore, TlsSettings, Truststore};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS listener's acceptor, and what it needs to reload its certificate.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
    resolver: Arc<Reloading>,
}

impl ServerTls {
    /// Reads the keystore and truststore; an unreadable or invalid file is an error
    /// naming it, so the server does not start half-configured.
    pub fn new(settings: &TlsSettings, listener: &str) -> Result<ServerTls, String> {
        let provider = provider();
        let key = load_keystore(&settings.keystore, &provider)
            .map_err(|e| format!("listener {listener}: {e}"))?;
        let resolver = Arc::new(Reloading {
            keystore: settings.keystore.clone(),
            current: RwLock::new((key, modified(&settings.keystore))),
            provider: provider.clone(),
            listener: listener.to_string(),
        });
        let verifier = match (&settings.truststore, settings.client_auth) {
            (_, ClientAuth::None) | (None, _) => WebPkiClientVerifier::no_client_auth(),
            (Some(trust), auth) => {
                let roots =
                    load_truststore(trust).map_err(|e| format!("listener {listener}: {e}"))?;
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let builder = if auth == ClientAuth::Requested {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder
                    .build()
                    .map_err(|e| format!("listener {listener}: truststore: {e}"))?
            }
        };
        let config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions(settings))
            .map_err(|e| format!("listener {listener}: ssl.enabled.protocols: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(resolver.clone());
        Ok(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            resolver,
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// This node as a TLS client of the others' listener of the same name: it trusts
    /// the listener's truststore and shows the listener's own certificate (the current
    /// one, reloaded with the listener's) when asked for one.
    pub fn client_config(
        &self,
        settings: &TlsSettings,
        listener: &str,
    ) -> Result<Arc<ClientConfig>, String> {
        let trust = settings.truststore.as_ref().ok_or_else(|| {
            format!(
                "listener {listener} also carries this node's connections to the others, \
                 whose certificates are checked against its truststore; set \
                 ssl.truststore.location"
            )
        })?;
        let roots = load_truststore(trust).map_err(|e| format!("listener {listener}: {e}"))?;
        let provider = provider();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("listener {listener}: truststore: {e}"))?;
        let verifier: Arc<dyn ServerCertVerifier> = if settings.verify_hostname {
            webpki
        } else {
            Arc::new(AnyHostName(webpki))
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions(settings))
            .map_err(|e| format!("listener {listener}: ssl.enabled.protocols: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_cert_resolver(self.resolver.clone());
        Ok(Arc::new(config))
    }

    /// Reads the keystore again if its file changed since it was last read. A new file
    /// that does not load is reported and the old certificate kept.
    pub fn reload_if_changed(&self) {
        self.resolver.reload_if_changed();
    }
}

/// Serves the current certificate; swapped when the keystore file changes.
#[derive(Debug)]
struct Reloading {
    keystore: Keystore,
    current: RwLock<(Arc<CertifiedKey>, Option<SystemTime>)>,
    provider: Arc<CryptoProvider>,
    listener: String,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().0.clone())
    }
}

impl ResolvesClientCert for Reloading {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// `ssl.endpoint.identification.algorithm=` (empty): the certificate must chain to the
/// truststore, but need not name the host it was reached at.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl Reloading {
    fn reload_if_changed(&self) {
        let now = modified(&self.keystore);
        if now.is_none() || now == self.current.read().1 {
            return;
        }
        match load_keystore(&self.keystore, &self.provider) {
            Ok(key) => {
                *self.current.write() = (key, now);
                tracing::info!(listener = %self.listener, "TLS certificate reloaded");
            }
            Err(e) => {
                // A half-written file looks like this too: keep serving the old one and
                // try again at the next change.
                self.current.write().1 = now;
                tracing::warn!(listener = %self.listener, "keeping the old TLS certificate: {e}");
            }
        }
    }
}

/// `ssl.enabled.protocols`, newest first.
fn versions(settings: &TlsSettings) -> Vec<&'static rustls::SupportedProtocolVersion> {
    let mut versions = Vec::new();
    if settings.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if settings.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    versions
}

fn modified(keystore: &Keystore) -> Option<SystemTime> {
    match keystore {
        Keystore::PemFile(path) | Keystore::Pkcs12 { path, .. } => {
            fs::metadata(path).and_then(|m| m.modified()).ok()
        }
        Keystore::PemInline { .. } => None,
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn load_keystore(
    keystore: &Keystore,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let (chain, key, origin) = match keystore {
        Keystore::PemFile(path) => {
            let pem = read(path, "ssl.keystore.location")?;
            let origin = path.display().to_string();
            (certificates(&pem), pem_key(&pem), origin)
        }
        Keystore::PemInline { chain, key } => (
            certificates(chain.as_bytes()),
            pem_key(key.as_bytes()),
            "ssl.keystore.certificate.chain/ssl.keystore.key".to_string(),
        ),
        Keystore::Pkcs12 { path, password } => {
            let store = pkcs12(path, password, "ssl.keystore.location")?;
            let origin = path.display().to_string();
            let (_, entry) = store
                .private_key_chain()
                .ok_or_else(|| format!("{origin}: holds no private key"))?;
            let chain = entry
                .certs()
                .iter()
                .map(|c| CertificateDer::from(c.as_der().to_vec()))
                .collect();
            let key = PrivateKeyDer::Pkcs8(entry.key().as_der().to_vec().into());
            (Ok(chain), Ok(key), origin)
        }
    };
    let chain = chain.map_err(|e| format!("{origin}: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "{origin}: holds no certificate (-----BEGIN CERTIFICATE-----)"
        ));
    }
    let key = key.map_err(|e| format!("{origin}: {e}"))?;
    let certified = CertifiedKey::from_der(chain, key, provider)
        .map_err(|e| format!("{origin}: the key does not go with the certificate: {e}"))?;
    Ok(Arc::new(certified))
}

fn pem_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| {
        format!("no unencrypted private key (-----BEGIN PRIVATE KEY-----, RSA or EC): {e}")
    })
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate: {e}"))
}

/// A PKCS12 file, opened with its password. A truststore's certificates are taken as
/// they are (`Raw`): those made by openssl carry no mark of trust for a key store to
/// check.
fn pkcs12(path: &Path, password: &str, what: &str) -> Result<p12_keystore::KeyStore, String> {
    let data = read(path, what)?;
    let policy = if what == "ssl.truststore.location" {
        p12_keystore::Pkcs12ImportPolicy::Raw
    } else {
        p12_keystore::Pkcs12ImportPolicy::Relaxed
    };
    p12_keystore::KeyStore::from_pkcs12(&data, password, policy).map_err(|e| {
        format!(
            "{}: not a PKCS12 file its password opens ({e}): check {what} and the password",
            path.display()
        )
    })
}

fn load_truststore(trust: &Truststore) -> Result<RootCertStore, String> {
    let (certs, origin) = match trust {
        Truststore::PemFile(path) => (
            certificates(&read(path, "ssl.truststore.location")?),
            path.display().to_string(),
        ),
        Truststore::PemInline(text) => (
            certificates(text.as_bytes()),
            "ssl.truststore.certificates".to_string(),
        ),
        Truststore::Pkcs12 { path, password } => {
            let store = pkcs12(path, password, "ssl.truststore.location")?;
            let mut certs = Vec::new();
            for (_, entry) in store.entries() {
                match entry {
                    p12_keystore::KeyStoreEntry::Certificate(c) => {
                        certs.push(CertificateDer::from(c.as_der().to_vec()))
                    }
                    p12_keystore::KeyStoreEntry::PrivateKeyChain(k) => certs.extend(
                        k.certs()
                            .iter()
                            .map(|c| CertificateDer::from(c.as_der().to_vec())),
                    ),
                    _ => {}
                }
            }
            (Ok(certs), path.display().to_string())
        }
    };
    let certs = certs.map_err(|e| format!("{origin}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{origin}: holds no certificate"));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{origin}: not a CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// The principal of a TLS connection: its client certificate's subject, mapped by
/// `ssl.principal.mapping.rules`, or `User:ANONYMOUS` without a certificate.
pub fn peer_principal(conn: &rustls::ServerConnection, mapper: Option<&PrincipalMapper>) -> String {
    let subject = conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|cert| subject_name(cert));
    match (subject, mapper) {
        (Some(s), Some(mapper)) => format!("User:{}", mapper.map(&s)),
        _ => super::ANONYMOUS.to_string(),
    }
}

/// A client certificate's subject as Kafka names it (Java's X500Principal in RFC 2253
/// form): the most specific attribute first, `,` between them, e.g.
/// `CN=alice,OU=eng,O=Example,C=US`.
pub fn subject_name(cert: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let mut parts = Vec::new();
    for rdn in parsed.subject().iter() {
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let name = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.11" => "OU",
                "2.5.4.10" => "O",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.6" => "C",
                "2.5.4.9" => "STREET",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                other => other,
            }
            .to_string();
            let value = attr.as_str().ok()?;
            parts.push(format!("{name}={}", escape_rfc2253(value)));
        }
    }
    parts.reverse();
    Some(parts.join(","))
}

fn escape_rfc2253(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.len() && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `ssl.principal.mapping.rules`: each `RULE:pattern/replacement/[LU]` is tried in
/// order on the subject; the first that matches gives the user name, `DEFAULT` gives the
/// whole subject.
#[derive(Debug, Clone)]
pub struct PrincipalMapper {
    rules: Vec<MappingRule>,
}

#[derive(Debug, Clone)]
enum MappingRule {
    Default,
    Replace {
        pattern: regex::Regex,
        replacement: String,
        case: Option<char>,
    },
}

impl PrincipalMapper {
    pub fn parse(rules: &str) -> Result<PrincipalMapper, String> {
        let mut out = Vec::new();
        let mut rest = rules.trim();
        // Java's `$1` becomes `${1}`, so a letter after it is not read as part of a group
        // name.
        let java_refs = regex::Regex::new(r"\$(\d+)").map_err(|e| e.to_string())?;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("DEFAULT") {
                out.push(MappingRule::Default);
                rest = after.trim_start().trim_start_matches(',').trim_start();
                continue;
            }
            let body = rest.strip_prefix("RULE:").ok_or_else(|| {
                format!("expected DEFAULT or RULE:pattern/replacement/ at '{rest}'")
            })?;
            let (pattern, after) =
                split_unescaped(body).ok_or_else(|| format!("rule '{body}' has no replacement"))?;
            let (replacement, after) = split_unescaped(after)
                .ok_or_else(|| format!("rule '{body}' does not end with /"))?;
            let (case, after) = match after.chars().next() {
                Some(c @ ('L' | 'U')) => (Some(c), &after[1..]),
                _ => (None, after),
            };
            let pattern =
                regex::Regex::new(pattern).map_err(|e| format!("rule pattern '{pattern}': {e}"))?;
            let replacement = java_refs.replace_all(replacement, "$${${1}}").into_owned();
            out.push(MappingRule::Replace {
                pattern,
                replacement,
                case,
            });
            rest = after.trim_start().trim_start_matches(',').trim_start();
        }
        if out.is_empty() {
            out.push(MappingRule::Default);
        }
        Ok(PrincipalMapper { rules: out })
    }

    /// The user name for a certificate subject; the subject itself when no rule matches.
    pub fn map(&self, subject: &str) -> String {
        for rule in &self.rules {
            match rule {
                MappingRule::Default => return subject.to_string(),
                MappingRule::Replace {
                    pattern,
                    replacement,
                    case,
                } => {
                    if let Some(caps) = pattern.captures(subject) {
                        let mut name = String::new();
                        caps.expand(replacement, &mut name);
                        return match case {
                            Some('L') => name.to_lowercase(),
                            Some('U') => name.to_uppercase(),
                            _ => name,
                        };
                    }
                }
            }
        }
        subject.to_string()
    }
}

/// Splits at the first `/` not escaped by a backslash.
fn split_unescaped(s: &str) -> Option<(&str, &str)> {
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'/' => return Some((&s[..i], &s[i + 1..])),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principal_mapping_rules_as_kafka_documents_them() {
        let m = PrincipalMapper::parse(
            "RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,RULE:^CN=(.*?),OU=(.*?),O=(.*?)$/$1@$2/L, DEFAULT",
        )
        .unwrap();
        assert_eq!(
            m.map("CN=kafka-client,OU=ServiceUsers,O=Org"),
            "kafka-client"
        );
        assert_eq!(m.map("CN=Duke,OU=JavaSoft,O=Sun"), "duke@javasoft");
        assert_eq!(m.map("C=US"), "C=US");
        let d = PrincipalMapper::parse("DEFAULT").unwrap();
        assert_eq!(d.map("CN=a,O=b"), "CN=a,O=b");
        assert!(PrincipalMapper::parse("RULE:^CN=(.*$").is_err());
        assert!(PrincipalMapper::parse("NOPE").is_err());
    }

    #[test]
    fn rfc2253_escapes() {
        assert_eq!(escape_rfc2253("a,b"), "a\\,b");
        assert_eq!(escape_rfc2253(" x "), "\\ x\\ ");
        assert_eq!(escape_rfc2253("plain"), "plain");
    }
}
