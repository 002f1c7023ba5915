//! The security part of the configuration, in Kafka's names: per listener, the TLS
//! settings (`ssl.*`) and the SASL mechanisms (`sasl.enabled.mechanisms`, and the PLAIN
//! users of `listener.name.<name>.plain.sasl.jaas.config`), each of which a
//! `listener.name.<name>.` prefix overrides for one listener, as in Kafka.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::cluster::{ClusterConfig, SecurityProtocol};
use super::{ConfigError, Reader};

/// A SASL mechanism Fjord's broker offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
    /// Unsecured JWS tokens only, as Kafka's default validator takes them: for tests.
    OAuthBearer,
}

impl Mechanism {
    pub const ALL: [Mechanism; 4] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
        Mechanism::OAuthBearer,
    ];

    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// How a listener checks OAUTHBEARER tokens: as Kafka's unsecured validator, from the
/// options of its `oauthbearer.sasl.jaas.config` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthSettings {
    /// `unsecuredValidatorPrincipalClaimName` (default `sub`).
    pub principal_claim: String,
    /// `unsecuredValidatorAllowableClockSkewMs` (default 0).
    pub clock_skew_ms: u64,
}

/// Where a listener's certificate and key come from (`ssl.keystore.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Keystore {
    /// `ssl.keystore.type=PEM` with `ssl.keystore.location`: one file holding the private
    /// key and the certificate chain.
    PemFile(PathBuf),
    /// `ssl.keystore.type=PEM` with `ssl.keystore.certificate.chain` and
    /// `ssl.keystore.key` given inline.
    PemInline { chain: String, key: String },
    /// `ssl.keystore.type=PKCS12`: the file and `ssl.keystore.password`.
    Pkcs12 { path: PathBuf, password: String },
}

/// `ssl.client.auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    Requested,
    Required,
}

/// What a TLS listener needs to build its server side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub keystore: Keystore,
    /// CA certificates that client certificates must chain to: a PEM file
    /// (`ssl.truststore.location`) or inline (`ssl.truststore.certificates`).
    pub truststore: Option<Truststore>,
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`: which of TLS 1.2 and 1.3 are offered.
    pub tls12: bool,
    pub tls13: bool,
    /// `ssl.principal.mapping.rules`: from a client certificate's subject to a user.
    pub principal_mapping_rules: String,
    /// `ssl.endpoint.identification.algorithm=https` (the default): when this node
    /// connects to the listener of another, the certificate must name the host it
    /// connects to; empty checks only its chain.
    pub verify_hostname: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Truststore {
    PemFile(PathBuf),
    PemInline(String),
    /// `ssl.truststore.type=PKCS12` with `ssl.truststore.password`.
    Pkcs12 {
        path: PathBuf,
        password: String,
    },
}

/// One client listener's security; the default is none (PLAINTEXT).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListenerSecurity {
    pub tls: Option<TlsSettings>,
    /// Empty unless the listener is SASL_PLAINTEXT or SASL_SSL.
    pub mechanisms: Vec<Mechanism>,
    /// PLAIN users and passwords from the listener's `plain.sasl.jaas.config`
    /// (`user_<name>="<password>"`); PLAIN checks SCRAM credentials for users not here.
    pub plain_users: BTreeMap<String, String>,
    /// `connections.max.reauth.ms` for each enabled mechanism (Kafka's
    /// `listener.name.<name>.<mechanism>.connections.max.reauth.ms`, else the broker's);
    /// 0 lets a login last as long as its connection.
    pub reauth_ms: BTreeMap<Mechanism, u64>,
    /// Set when the listener enables OAUTHBEARER.
    pub oauth: Option<OAuthSettings>,
}

/// How this node logs in to a SASL listener of the others (the inter-broker or the
/// controller listener): a mechanism (`sasl.mechanism.inter.broker.protocol`,
/// `sasl.mechanism.controller.protocol`), with the `username` and `password` of that
/// mechanism's JAAS line on the listener.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslLogin {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for SaslLogin {
    // The password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Kafka's authorizers, all of which Fjord answers with its StandardAuthorizer.
const AUTHORIZERS: &[&str] = &[
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
];

/// The broker's security settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecurityConfig {
    /// By listener name.
    pub listeners: BTreeMap<String, ListenerSecurity>,
    /// `authorizer.class.name` is set: requests are checked against the ACLs.
    pub authorizer: bool,
    /// `super.users`: principals (`User:admin`) that every check allows.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`: a resource without any ACL is open to all.
    pub allow_if_no_acl: bool,
    /// `connection.failed.authentication.delay.ms`: a failed login is answered only
    /// after this long, which slows password guessing.
    pub failed_authentication_delay_ms: u64,
    /// `sasl.server.max.receive.size`: the largest frame read before a SASL login, so
    /// that clients without credentials cannot hold request memory.
    pub sasl_max_receive_size: usize,
    /// Set when the inter-broker listener uses SASL and this node replicates from others.
    pub inter_broker_login: Option<SaslLogin>,
    /// The controller listener's security when it is not PLAINTEXT, on a quorum member.
    pub controller: Option<ListenerSecurity>,
    /// Set when the controller listener uses SASL.
    pub controller_login: Option<SaslLogin>,
}

/// Properties a `listener.name.<name>.` prefix may override; these prefixed names are
/// used, not merely accepted.
const PER_LISTENER: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.certificates",
    "ssl.client.auth",
    "ssl.enabled.protocols",
    "ssl.principal.mapping.rules",
    "sasl.enabled.mechanisms",
    "plain.sasl.jaas.config",
    "scram-sha-256.sasl.jaas.config",
    "scram-sha-512.sasl.jaas.config",
    "ssl.endpoint.identification.algorithm",
    "plain.connections.max.reauth.ms",
    "scram-sha-256.connections.max.reauth.ms",
    "scram-sha-512.connections.max.reauth.ms",
    "oauthbearer.connections.max.reauth.ms",
    "oauthbearer.sasl.jaas.config",
    "oauthbearer.sasl.server.callback.handler.class",
];

/// Whether a `listener.name.` property is one Fjord reads.
pub fn is_used_listener_property(name: &str) -> bool {
    name.strip_prefix("listener.name.")
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(_, key)| PER_LISTENER.contains(&key))
}

/// Whether a property's value is a secret, never shown by DescribeConfigs or the log.
pub fn is_sensitive(name: &str) -> bool {
    name.ends_with("password")
        || name.ends_with("sasl.jaas.config")
        || name.ends_with("keystore.key")
}

pub(super) fn parse(r: &Reader, cluster: &ClusterConfig) -> Result<SecurityConfig, ConfigError> {
    let authorizer = r.string("authorizer.class.name").trim().to_string();
    if !authorizer.is_empty() && !AUTHORIZERS.contains(&authorizer.as_str()) {
        return Err(r.invalid(
            "authorizer.class.name",
            &format!(
                "Fjord's authorizer works as Kafka's StandardAuthorizer: set {}",
                AUTHORIZERS[0]
            ),
        ));
    }
    let mut super_users = Vec::new();
    for p in r
        .string("super.users")
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !p
            .split_once(':')
            .is_some_and(|(k, n)| !k.is_empty() && !n.is_empty())
        {
            return Err(r.invalid(
                "super.users",
                &format!("'{p}' is not a principal: write User:<name>, separated by ;"),
            ));
        }
        super_users.push(p.to_string());
    }
    let mut out = SecurityConfig {
        failed_authentication_delay_ms: r.long("connection.failed.authentication.delay.ms")?.max(0)
            as u64,
        sasl_max_receive_size: r.long("sasl.server.max.receive.size")?.max(0) as usize,
        authorizer: !authorizer.is_empty(),
        super_users,
        allow_if_no_acl: r.boolean("allow.everyone.if.no.acl.found")?,
        ..SecurityConfig::default()
    };
    let clustered = cluster.in_quorum();
    // The inter-broker listener is the first.
    for (i, l) in cluster.client_listeners.iter().enumerate() {
        let security = listener_security(r, &l.name, l.protocol)?;
        if i == 0 && l.protocol.sasl() && clustered {
            out.inter_broker_login = Some(sasl_login(
                r,
                &l.name,
                &security.mechanisms,
                "sasl.mechanism.inter.broker.protocol",
            )?);
        }
        out.listeners.insert(l.name.clone(), security);
    }
    if clustered && cluster.controller_protocol != SecurityProtocol::Plaintext {
        let name = &cluster.controller_listener_name;
        let security = listener_security(r, name, cluster.controller_protocol)?;
        check_controller_security(r, name, &security)?;
        if cluster.controller_protocol.sasl() {
            out.controller_login = Some(sasl_login(
                r,
                name,
                &security.mechanisms,
                "sasl.mechanism.controller.protocol",
            )?);
        }
        out.controller = Some(security);
    }
    Ok(out)
}

/// One listener's TLS settings and SASL mechanisms, as its protocol asks.
fn listener_security(
    r: &Reader,
    name: &str,
    protocol: SecurityProtocol,
) -> Result<ListenerSecurity, ConfigError> {
    let get = |key: &str| listener_value(r, name, key);
    let tls = if protocol.tls() {
        Some(parse_tls(&get, name)?)
    } else {
        None
    };
    let mut mechanisms = Vec::new();
    let mut plain_users = BTreeMap::new();
    if protocol.sasl() {
        let (key, value) = get("sasl.enabled.mechanisms");
        for m in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let m = m.to_ascii_uppercase();
            match Mechanism::parse(&m) {
                Some(m) if !mechanisms.contains(&m) => mechanisms.push(m),
                Some(_) => {}
                None => {
                    return Err(invalid(
                        (key, value.clone()),
                        format!(
                            "Fjord offers the SASL mechanisms PLAIN, SCRAM-SHA-256, \
                             SCRAM-SHA-512 and OAUTHBEARER (unsecured tokens), not {m}"
                        ),
                    ))
                }
            }
        }
        if mechanisms.is_empty() {
            return Err(invalid(
                (key, value),
                format!("listener {name} uses SASL but enables no mechanism"),
            ));
        }
        let jaas = get("plain.sasl.jaas.config");
        if !jaas.1.is_empty() {
            plain_users = jaas_users(&jaas.1).map_err(|why| invalid(jaas, why))?;
        }
    }
    let oauth = if mechanisms.contains(&Mechanism::OAuthBearer) {
        Some(oauth_settings(&get, name)?)
    } else {
        None
    };
    let mut reauth_ms = BTreeMap::new();
    for m in &mechanisms {
        let key = format!(
            "listener.name.{}.{}.connections.max.reauth.ms",
            name.to_ascii_lowercase(),
            m.name().to_ascii_lowercase()
        );
        let ms = match r.props.get(&key) {
            Some(v) => v.trim().parse::<i64>().map_err(|_| {
                invalid(
                    (key.clone(), v.clone()),
                    "must be a number of milliseconds".into(),
                )
            })?,
            None => r.long("connections.max.reauth.ms")?,
        };
        reauth_ms.insert(*m, ms.max(0) as u64);
    }
    Ok(ListenerSecurity {
        tls,
        mechanisms,
        plain_users,
        reauth_ms,
        oauth,
    })
}

/// OAUTHBEARER as Kafka's default, unsecured validator checks it: an unsigned token whose
/// claims name the principal. A listener set up for another validator (signed tokens from
/// an identity provider) is refused rather than served with unsigned ones.
fn oauth_settings(
    get: &dyn Fn(&str) -> (String, String),
    listener: &str,
) -> Result<OAuthSettings, ConfigError> {
    let handler = get("oauthbearer.sasl.server.callback.handler.class");
    if !handler.1.is_empty() {
        return Err(invalid(
            handler,
            "Fjord checks OAUTHBEARER tokens only as Kafka's unsecured validator does \
             (unsigned tokens, for testing); it has no validator of signed tokens: remove \
             this setting, or OAUTHBEARER from sasl.enabled.mechanisms"
                .into(),
        ));
    }
    let jaas = get("oauthbearer.sasl.jaas.config");
    if jaas.1.is_empty() {
        return Err(invalid(
            jaas,
            format!(
                "listener {listener} enables OAUTHBEARER: set \
                 listener.name.{}.oauthbearer.sasl.jaas.config={OAUTH_MODULE} required;",
                listener.to_ascii_lowercase()
            ),
        ));
    }
    let options = jaas_options(&jaas.1, OAUTH_MODULE).map_err(|why| invalid(jaas.clone(), why))?;
    let principal_claim = options
        .get("unsecuredValidatorPrincipalClaimName")
        .cloned()
        .unwrap_or_else(|| "sub".into());
    let clock_skew_ms = match options.get("unsecuredValidatorAllowableClockSkewMs") {
        Some(v) => v.parse::<u64>().map_err(|_| {
            invalid(
                jaas.clone(),
                "unsecuredValidatorAllowableClockSkewMs must be a number of milliseconds".into(),
            )
        })?,
        None => 0,
    };
    Ok(OAuthSettings {
        principal_claim,
        clock_skew_ms,
    })
}

/// The controller listener carries the metadata log, SCRAM credentials included, so its
/// members cannot log in with SCRAM (as in Kafka), and each must prove who it is.
fn check_controller_security(
    r: &Reader,
    name: &str,
    security: &ListenerSecurity,
) -> Result<(), ConfigError> {
    if let Some(m) = security.mechanisms.iter().find(|m| **m != Mechanism::Plain) {
        return Err(invalid(
            listener_value(r, name, "sasl.enabled.mechanisms"),
            format!(
                "the controller listener {name} cannot offer {}: SCRAM credentials live in \
                 the metadata log the controllers serve over it; enable PLAIN there (its \
                 users as user_<name> entries of the listener's plain.sasl.jaas.config), or \
                 use SSL with ssl.client.auth=required",
                m.name()
            ),
        ));
    }
    let mtls = security
        .tls
        .as_ref()
        .is_some_and(|t| t.client_auth == ClientAuth::Required);
    if security.mechanisms.is_empty() && !mtls {
        return Err(invalid(
            listener_value(r, name, "ssl.client.auth"),
            format!(
                "the controller listener {name} uses SSL: set \
                 listener.name.{}.ssl.client.auth=required, so that quorum members prove who \
                 they are with their certificates",
                name.to_ascii_lowercase()
            ),
        ));
    }
    Ok(())
}

/// A property for one listener: `listener.name.<name>.<key>` if set, else `<key>`; with
/// the name it was read under, for error messages.
fn listener_value(r: &Reader, listener: &str, key: &str) -> (String, String) {
    let prefixed = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
    match r.props.get(&prefixed) {
        Some(v) => (prefixed, v.trim().to_string()),
        None => (key.to_string(), r.string(key).trim().to_string()),
    }
}

fn invalid((name, value): (String, String), reason: String) -> ConfigError {
    ConfigError::Invalid {
        name,
        value,
        reason,
    }
}

/// The mechanism (named by `key`) and the credentials this node logs in to `listener`
/// of the others with, as Kafka reads them: the mechanism's JAAS line on that listener
/// (or `sasl.jaas.config`), whose `username` and `password` are this node's own.
fn sasl_login(
    r: &Reader,
    listener: &str,
    enabled: &[Mechanism],
    key: &str,
) -> Result<SaslLogin, ConfigError> {
    let name = r.string(key).trim().to_ascii_uppercase();
    let Some(mechanism) = Mechanism::parse(&name).filter(|m| *m != Mechanism::OAuthBearer) else {
        return Err(r.invalid(
            key,
            &format!(
                "nodes log in to listener {listener} with PLAIN, SCRAM-SHA-256 or \
                 SCRAM-SHA-512; Fjord's nodes do not log in with {name} (Kafka's default is \
                 GSSAPI): set this to one of them"
            ),
        ));
    };
    if !enabled.contains(&mechanism) {
        return Err(r.invalid(
            key,
            &format!(
                "{name} is not enabled on listener {listener} (its sasl.enabled.mechanisms \
                 are {})",
                enabled
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ));
    }
    let jaas = listener_value(
        r,
        listener,
        &format!("{}.sasl.jaas.config", name.to_ascii_lowercase()),
    );
    let jaas = if jaas.1.is_empty() {
        ("sasl.jaas.config".to_string(), r.string("sasl.jaas.config"))
    } else {
        jaas
    };
    let module = match mechanism {
        Mechanism::Plain => PLAIN_MODULE,
        Mechanism::ScramSha256 | Mechanism::ScramSha512 => SCRAM_MODULE,
        Mechanism::OAuthBearer => OAUTH_MODULE,
    };
    let missing = || {
        invalid(
            (jaas.0.clone(), String::new()),
            format!(
                "listener {listener} uses SASL: give this node's own login as {module} \
                 required username=\"<user>\" password=\"<password>\"; (under \
                 listener.name.{}.{}.sasl.jaas.config)",
                listener.to_ascii_lowercase(),
                name.to_ascii_lowercase()
            ),
        )
    };
    if jaas.1.trim().is_empty() {
        return Err(missing());
    }
    let options = jaas_options(&jaas.1, module).map_err(|why| invalid(jaas.clone(), why))?;
    match (options.get("username"), options.get("password")) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(SaslLogin {
            mechanism,
            username: u.clone(),
            password: p.clone(),
        }),
        _ => Err(missing()),
    }
}

fn parse_tls(
    get: &dyn Fn(&str) -> (String, String),
    listener: &str,
) -> Result<TlsSettings, ConfigError> {
    let kind = get("ssl.keystore.type");
    let location = get("ssl.keystore.location");
    let chain = get("ssl.keystore.certificate.chain");
    let key = get("ssl.keystore.key");
    let keystore = match kind.1.to_ascii_uppercase().as_str() {
        "PEM" if !chain.1.is_empty() || !key.1.is_empty() => {
            if chain.1.is_empty() || key.1.is_empty() || !location.1.is_empty() {
                return Err(invalid(
                    chain,
                    "an inline PEM keystore needs both ssl.keystore.certificate.chain and \
                     ssl.keystore.key, and no ssl.keystore.location"
                        .into(),
                ));
            }
            Keystore::PemInline {
                chain: chain.1,
                key: key.1,
            }
        }
        "PEM" if !location.1.is_empty() => Keystore::PemFile(PathBuf::from(&location.1)),
        "PEM" => {
            return Err(invalid(
                location,
                format!(
                    "listener {listener} uses TLS: set ssl.keystore.location to a PEM file \
                     with its private key and certificate chain"
                ),
            ))
        }
        "PKCS12" if !location.1.is_empty() => Keystore::Pkcs12 {
            path: PathBuf::from(&location.1),
            password: get("ssl.keystore.password").1,
        },
        "PKCS12" => {
            return Err(invalid(
                location,
                format!(
                    "listener {listener} uses TLS: set ssl.keystore.location to its PKCS12 file"
                ),
            ))
        }
        other => {
            return Err(invalid(
                kind.clone(),
                format!(
                    "Fjord reads PEM and PKCS12 keystores; a {other} keystore converts with \
                     keytool -importkeystore -deststoretype PKCS12: set ssl.keystore.type"
                ),
            ))
        }
    };
    // One password opens a PKCS12 keystore and its key; a PEM key is read unencrypted.
    let key_password = get("ssl.key.password");
    let same_as_store =
        matches!(&keystore, Keystore::Pkcs12 { password, .. } if *password == key_password.1);
    if !key_password.1.is_empty() && !same_as_store {
        return Err(invalid(
            key_password,
            "Fjord reads unencrypted PEM private keys, and PKCS12 keys under the keystore's \
             own password (ssl.keystore.password): decrypt the key (`openssl pkey`) and \
             protect the file by its permissions"
                .into(),
        ));
    }
    let trust_kind = get("ssl.truststore.type");
    let trust_location = get("ssl.truststore.location");
    let trust_inline = get("ssl.truststore.certificates");
    let truststore = match (trust_location.1.is_empty(), trust_inline.1.is_empty()) {
        (true, true) => None,
        (false, true) if trust_kind.1.eq_ignore_ascii_case("PKCS12") => Some(Truststore::Pkcs12 {
            path: PathBuf::from(&trust_location.1),
            password: get("ssl.truststore.password").1,
        }),
        _ if !trust_kind.1.eq_ignore_ascii_case("PEM") => {
            return Err(invalid(
                trust_kind,
                "Fjord reads PEM and PKCS12 truststores: set ssl.truststore.type".into(),
            ))
        }
        (false, true) => Some(Truststore::PemFile(PathBuf::from(&trust_location.1))),
        (true, false) => Some(Truststore::PemInline(trust_inline.1)),
        (false, false) => {
            return Err(invalid(
                trust_inline,
                "set ssl.truststore.location or ssl.truststore.certificates, not both".into(),
            ))
        }
    };
    let auth = get("ssl.client.auth");
    let client_auth = match auth.1.to_ascii_lowercase().as_str() {
        "none" | "" => ClientAuth::None,
        "requested" => ClientAuth::Requested,
        "required" => ClientAuth::Required,
        _ => return Err(invalid(auth, "must be none, requested or required".into())),
    };
    if client_auth != ClientAuth::None && truststore.is_none() {
        return Err(invalid(
            auth,
            "client certificates are checked against a truststore: set \
             ssl.truststore.location"
                .into(),
        ));
    }
    let protocols = get("ssl.enabled.protocols");
    let (mut tls12, mut tls13) = (false, false);
    for p in protocols
        .1
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        match p {
            "TLSv1.2" => tls12 = true,
            "TLSv1.3" => tls13 = true,
            _ => {
                return Err(invalid(
                    protocols.clone(),
                    format!("Fjord speaks TLSv1.2 and TLSv1.3, not {p}"),
                ))
            }
        }
    }
    if !tls12 && !tls13 {
        return Err(invalid(protocols, "enables no TLS version".into()));
    }
    let rules = get("ssl.principal.mapping.rules");
    if let Err(why) = crate::security::tls::PrincipalMapper::parse(&rules.1) {
        return Err(invalid(rules, why));
    }
    let (key, value) = get("ssl.endpoint.identification.algorithm");
    let verify_hostname = match value.to_ascii_lowercase().as_str() {
        "https" => true,
        "" => false,
        _ => {
            return Err(invalid(
                (key, value),
                "must be https (check the host name) or empty (do not)".into(),
            ))
        }
    };
    Ok(TlsSettings {
        keystore,
        truststore,
        client_auth,
        tls12,
        tls13,
        principal_mapping_rules: rules.1,
        verify_hostname,
    })
}

const PLAIN_MODULE: &str = "org.apache.kafka.common.security.plain.PlainLoginModule";
const SCRAM_MODULE: &str = "org.apache.kafka.common.security.scram.ScramLoginModule";
const OAUTH_MODULE: &str = "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule";

/// The `user_<name>="<password>"` options of a PlainLoginModule JAAS line.
fn jaas_users(jaas: &str) -> Result<BTreeMap<String, String>, String> {
    Ok(jaas_options(jaas, PLAIN_MODULE)?
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix("user_").map(|u| (u.to_string(), v)))
        .collect())
}

/// The `name="value"` options of a JAAS line for `module`:
/// `<module> required a="1" b="2";`.
fn jaas_options(jaas: &str, module: &str) -> Result<BTreeMap<String, String>, String> {
    let body = jaas.trim().trim_end_matches(';');
    let Some(rest) = body.strip_prefix(module).map(str::trim_start) else {
        return Err(format!(
            "expected {module} required <option>=\"<value>\" ...;"
        ));
    };
    let mut rest = rest
        .strip_prefix("required")
        .ok_or("the login module must be `required`")?;
    let mut options = BTreeMap::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let (name, after) = rest
            .split_once('=')
            .ok_or("expected name=\"value\" options")?;
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("option values must be quoted")?;
        let (value, after) = after
            .split_once('"')
            .ok_or("an option value is not closed")?;
        options.insert(name.trim().to_string(), value.to_string());
        rest = after;
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_users_of_a_jaas_line() {
        let users = jaas_users(
            "org.apache.kafka.common.security.plain.PlainLoginModule required \
             username=\"admin\" password=\"admin-secret\" user_admin=\"admin-secret\" \
             user_alice=\"a b=c\";",
        )
        .expect("parses");
        assert_eq!(users.len(), 2);
        assert_eq!(users["alice"], "a b=c");
        assert!(jaas_users("com.example.Other required;").is_err());
        assert!(jaas_users(
            "org.apache.kafka.common.security.plain.PlainLoginModule required user_x=\"open"
        )
        .is_err());
    }

    #[test]
    fn knows_which_listener_overrides_it_reads() {
        assert!(is_used_listener_property(
            "listener.name.sasl_ssl.ssl.keystore.location"
        ));
        assert!(is_used_listener_property(
            "listener.name.external.plain.sasl.jaas.config"
        ));
        // The inter-broker login is read from a SCRAM JAAS line.
        assert!(is_used_listener_property(
            "listener.name.external.scram-sha-256.sasl.jaas.config"
        ));
        assert!(is_used_listener_property(
            "listener.name.external.oauthbearer.sasl.jaas.config"
        ));
        assert!(!is_used_listener_property(
            "listener.name.external.gssapi.sasl.jaas.config"
        ));
        assert!(is_sensitive("listener.name.x.plain.sasl.jaas.config"));
        assert!(is_sensitive("ssl.keystore.password"));
        assert!(!is_sensitive("ssl.keystore.location"));
    }
}
