//! The cluster part of the configuration, in Kafka's KRaft names: `process.roles`,
//! `listeners` with their names, `controller.listener.names`,
//! `listener.security.protocol.map`, `inter.broker.listener.name` and
//! `controller.quorum.voters`.
//!
//! Without `controller.quorum.voters` a node is a one-node cluster with a local metadata
//! log, as Fjord always was. With it, the node is a voter of a replicated metadata quorum.

use std::collections::BTreeMap;

use super::{ConfigError, Endpoint, Reader};

/// What a node does (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

/// A listener's security protocol (`listener.security.protocol.map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// A protocol by its name (`SASL_SSL`); `None` for any other name.
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        Some(match name {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Kafka's SecurityProtocol id, as broker registrations carry it.
    pub fn id(self) -> i16 {
        match self {
            SecurityProtocol::Plaintext => 0,
            SecurityProtocol::Ssl => 1,
            SecurityProtocol::SaslPlaintext => 2,
            SecurityProtocol::SaslSsl => 3,
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// A listener clients connect to: its name, protocol, where it binds and what clients
/// are told (`advertised.listeners`, else the bind address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientListener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bind: Endpoint,
    pub advertised: Endpoint,
}

/// The listener and quorum settings, checked against each other.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub roles: Roles,
    /// Where other brokers connect (`inter.broker.listener.name`, else the listener
    /// named PLAINTEXT, else the first client listener); clients may connect there too.
    pub listener: Endpoint,
    pub listener_name: String,
    /// What other brokers and clients of that listener are told to connect to.
    pub advertised: Endpoint,
    /// Every listener for clients, the inter-broker one first; empty on a controller-only
    /// node.
    pub client_listeners: Vec<ClientListener>,
    /// Where quorum peers connect, on a node with the controller role in a quorum.
    pub controller_listener: Option<Endpoint>,
    /// The controllers' listener name (the first of `controller.listener.names`) and
    /// its protocol, which every member's quorum connections use.
    pub controller_listener_name: String,
    pub controller_protocol: SecurityProtocol,
    /// Voter id to CONTROLLER endpoint; empty for a one-node cluster.
    pub voters: BTreeMap<i32, Endpoint>,
    /// `controller.quorum.bootstrap.servers`: where a broker-only node may find the
    /// quorum when it does not list the voters.
    pub bootstrap_servers: Vec<Endpoint>,
}

impl ClusterConfig {
    /// A member of a replicated metadata quorum (a voter, or a broker that follows it),
    /// rather than a one-node cluster.
    pub fn in_quorum(&self) -> bool {
        !self.voters.is_empty() || !self.bootstrap_servers.is_empty()
    }

    /// A broker that follows the quorum without voting (`process.roles=broker`).
    pub fn is_observer(&self) -> bool {
        self.in_quorum() && !self.roles.controller
    }

    /// Each voter's id and `host:port`, as the quorum member dials them.
    pub fn voter_addresses(&self) -> BTreeMap<i32, String> {
        self.voters
            .iter()
            .map(|(id, e)| (*id, format!("{}:{}", e.host, e.port)))
            .collect()
    }
}

/// One entry of `listeners`: its name, protocol and where it binds.
struct Listener {
    name: String,
    protocol: SecurityProtocol,
    endpoint: Endpoint,
}

pub(super) fn parse(r: &Reader, node_id: i32) -> Result<ClusterConfig, ConfigError> {
    let roles = parse_roles(r)?;
    let controller_names: Vec<String> = list(&r.string("controller.listener.names"))
        .map(str::to_ascii_uppercase)
        .collect();
    let protocols = parse_protocol_map(r)?;
    let listeners = parse_listeners(r, "listeners", &controller_names, &protocols)?;
    let client_names: Vec<&Listener> = listeners
        .iter()
        .filter(|l| !controller_names.contains(&l.name))
        .collect();
    let inter_broker = r.string("inter.broker.listener.name").to_ascii_uppercase();
    let client = match inter_broker.as_str() {
        // Kafka's default, security.inter.broker.protocol=PLAINTEXT, picks the listener
        // named PLAINTEXT.
        "" => client_names
            .iter()
            .copied()
            .find(|l| l.name == "PLAINTEXT")
            .or_else(|| client_names.first().copied()),
        name => Some(
            client_names
                .iter()
                .copied()
                .find(|l| l.name == name)
                .ok_or_else(|| {
                    r.invalid(
                        "inter.broker.listener.name",
                        "must name one of the listeners that is not a controller listener",
                    )
                })?,
        ),
    };
    let controller_listener = controller_names
        .iter()
        .find_map(|n| listeners.iter().find(|l| &l.name == n))
        .map(|l| l.endpoint.clone());
    let controller_listener_name = controller_names.first().cloned().unwrap_or_default();
    // As Kafka 4: a controller listener missing from the map is PLAINTEXT.
    let controller_protocol = match protocols.get(&controller_listener_name) {
        Some(p) => SecurityProtocol::parse(p).ok_or_else(|| {
            r.invalid(
                "listener.security.protocol.map",
                &format!(
                    "maps {controller_listener_name} to {p}: name one of PLAINTEXT, SSL, \
                     SASL_PLAINTEXT, SASL_SSL"
                ),
            )
        })?,
        None => SecurityProtocol::Plaintext,
    };
    // A controller-only node serves no client: its one listener is the controller's,
    // which stands in where the client listener would be (nothing binds it as such).
    if !roles.broker && client.is_some() {
        return Err(r.invalid(
            "listeners",
            "a controller-only node serves no clients: list only its controller listener",
        ));
    }
    let client = match (client, &controller_listener) {
        (Some(c), _) => (c.endpoint.clone(), c.name.clone()),
        (None, Some(c)) if !roles.broker => (c.clone(), String::new()),
        (None, _) => {
            return Err(r.invalid(
                "listeners",
                "needs a listener for clients besides the controller listeners",
            ))
        }
    };
    let announced = match r.string("advertised.listeners") {
        s if s.is_empty() => Vec::new(),
        _ => parse_listeners(r, "advertised.listeners", &controller_names, &protocols)?,
    };
    if let Some(stray) = announced.iter().find(|a| {
        !client_names.iter().any(|l| l.name == a.name) && !controller_names.contains(&a.name)
    }) {
        // One advertised address and one listener is the old single-listener form, where
        // the names need not agree.
        if !(announced.len() == 1 && client_names.len() == 1) {
            return Err(r.invalid(
                "advertised.listeners",
                &format!("names listener {}, which is not in listeners", stray.name),
            ));
        }
    }
    let advertised_for = |l: &Listener| {
        announced
            .iter()
            .find(|a| a.name == l.name)
            .or_else(|| (announced.len() == 1 && client_names.len() == 1).then(|| &announced[0]))
            .map_or_else(|| l.endpoint.clone(), |a| a.endpoint.clone())
    };
    let advertised = client_names
        .iter()
        .find(|l| l.name == client.1)
        .map_or_else(|| client.0.clone(), |l| advertised_for(l));
    let voters = parse_voters(r)?;
    let bootstrap_servers = parse_bootstrap_servers(r)?;
    // The inter-broker listener first: it is the one registered as the broker's address.
    let mut client_listeners: Vec<ClientListener> = client_names
        .iter()
        .map(|l| ClientListener {
            name: l.name.clone(),
            protocol: l.protocol,
            bind: l.endpoint.clone(),
            advertised: advertised_for(l),
        })
        .collect();
    client_listeners.sort_by_key(|l| l.name != client.1);
    let ids = || {
        voters
            .keys()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };

    if voters.is_empty() && bootstrap_servers.is_empty() && !(roles.broker && roles.controller) {
        return Err(r.invalid(
            "process.roles",
            "a node with only one role is part of a cluster: set controller.quorum.voters (or, \
             for a broker, controller.quorum.bootstrap.servers); Fjord's voter set is static \
             (dynamic quorums, KIP-853, are not supported)",
        ));
    }
    if !roles.controller && (!voters.is_empty() || !bootstrap_servers.is_empty()) {
        if voters.contains_key(&node_id) {
            return Err(ConfigError::Invalid {
                name: "node.id".into(),
                value: node_id.to_string(),
                reason: format!(
                    "node {node_id} is a voter in controller.quorum.voters ({}) but \
                     process.roles has no controller role",
                    ids()
                ),
            });
        }
        if controller_listener.is_some() {
            return Err(r.invalid(
                "listeners",
                "a broker-only node has no controller listener; controller.listener.names \
                 must not name one of its listeners",
            ));
        }
        if controller_names.is_empty() {
            return Err(r.invalid(
                "controller.listener.names",
                "must name the controllers' listener (e.g. CONTROLLER), as on the controllers",
            ));
        }
    }

    if !voters.is_empty() && roles.controller {
        let Some(own) = voters.get(&node_id) else {
            return Err(ConfigError::Invalid {
                name: "node.id".into(),
                value: node_id.to_string(),
                reason: format!(
                    "this node has the controller role but is not one of the voters in \
                     controller.quorum.voters ({})",
                    ids()
                ),
            });
        };
        let Some(listener) = &controller_listener else {
            return Err(r.invalid(
                "controller.listener.names",
                "must name a listener in listeners (e.g. CONTROLLER://127.0.0.1:9093) on a \
                 node with the controller role",
            ));
        };
        if listener.port != own.port && listener.port != 0 {
            return Err(ConfigError::Invalid {
                name: "controller.quorum.voters".into(),
                value: r.string("controller.quorum.voters"),
                reason: format!(
                    "gives node {node_id} port {}, but its controller listener is on port {}",
                    own.port, listener.port
                ),
            });
        }
    }
    Ok(ClusterConfig {
        roles,
        listener: client.0,
        listener_name: client.1,
        advertised,
        client_listeners,
        controller_listener,
        controller_listener_name,
        controller_protocol,
        voters,
        bootstrap_servers,
    })
}

/// `controller.quorum.bootstrap.servers`: `host:port` entries.
fn parse_bootstrap_servers(r: &Reader) -> Result<Vec<Endpoint>, ConfigError> {
    let key = "controller.quorum.bootstrap.servers";
    let value = r.string(key);
    let mut out = Vec::new();
    for entry in list(&value) {
        let endpoint = super::parse_endpoint(key, &value, entry)?;
        if endpoint.port == 0 {
            return Err(r.invalid(key, "a controller needs a fixed port"));
        }
        out.push(endpoint);
    }
    Ok(out)
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_roles(r: &Reader) -> Result<Roles, ConfigError> {
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for role in list(&r.string("process.roles")) {
        match role {
            "broker" => roles.broker = true,
            "controller" => roles.controller = true,
            _ => return Err(r.invalid("process.roles", "each role must be broker or controller")),
        }
    }
    if !roles.broker && !roles.controller {
        return Err(r.invalid("process.roles", "must name broker, controller or both"));
    }
    Ok(roles)
}

/// `listener.security.protocol.map`: listener name to security protocol.
fn parse_protocol_map(r: &Reader) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map = BTreeMap::new();
    for entry in list(&r.string("listener.security.protocol.map")) {
        let (name, protocol) = entry.split_once(':').ok_or_else(|| {
            r.invalid(
                "listener.security.protocol.map",
                "expected NAME:PROTOCOL entries",
            )
        })?;
        map.insert(
            name.trim().to_ascii_uppercase(),
            protocol.trim().to_ascii_uppercase(),
        );
    }
    Ok(map)
}

fn parse_listeners(
    r: &Reader,
    key: &str,
    controller_names: &[String],
    protocols: &BTreeMap<String, String>,
) -> Result<Vec<Listener>, ConfigError> {
    let value = r.string(key);
    let mut out: Vec<Listener> = Vec::new();
    for entry in list(&value) {
        let (name, addr) = match entry.split_once("://") {
            Some((name, rest)) => (name.to_ascii_uppercase(), rest),
            None => ("PLAINTEXT".to_string(), entry),
        };
        // As Kafka 4: a controller listener missing from the map is PLAINTEXT.
        let protocol = match protocols.get(&name) {
            Some(p) => p.clone(),
            None if controller_names.contains(&name) => "PLAINTEXT".into(),
            None => name.clone(),
        };
        let Some(protocol) = SecurityProtocol::parse(&protocol) else {
            return Err(r.invalid(
                key,
                &format!(
                    "listener {name} has no security protocol: name one of PLAINTEXT, SSL, \
                     SASL_PLAINTEXT, SASL_SSL, or map it in listener.security.protocol.map \
                     (found '{protocol}')"
                ),
            ));
        };
        if out.iter().any(|l| l.name == name) {
            return Err(r.invalid(key, &format!("listener name {name} appears twice")));
        }
        out.push(Listener {
            name,
            protocol,
            endpoint: super::parse_endpoint(key, &value, addr)?,
        });
    }
    if out.is_empty() {
        return Err(r.invalid(key, "expected NAME://HOST:PORT"));
    }
    Ok(out)
}

/// `controller.quorum.voters`: `id@host:port` entries.
fn parse_voters(r: &Reader) -> Result<BTreeMap<i32, Endpoint>, ConfigError> {
    let value = r.string("controller.quorum.voters");
    let mut voters = BTreeMap::new();
    for entry in list(&value) {
        let bad = |why: &str| r.invalid("controller.quorum.voters", why);
        let (id, addr) = entry
            .split_once('@')
            .ok_or_else(|| bad("expected id@host:port entries"))?;
        let id: i32 = id
            .trim()
            .parse()
            .map_err(|_| bad("a voter id is not a number"))?;
        if id < 0 {
            return Err(bad("voter ids must be 0 or greater"));
        }
        let endpoint = super::parse_endpoint("controller.quorum.voters", &value, addr)?;
        if endpoint.port == 0 {
            return Err(bad("a voter needs a fixed port"));
        }
        if voters.insert(id, endpoint).is_some() {
            return Err(bad(&format!("voter {id} appears twice")));
        }
    }
    Ok(voters)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::config::{BrokerConfig, ConfigError, SecurityProtocol};

    fn config(pairs: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        let props: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        BrokerConfig::from_props(&props)
    }

    const VOTERS: &str = "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293";

    fn member(id: &str, listeners: &str) -> Vec<(&'static str, String)> {
        vec![
            ("node.id", id.to_string()),
            ("listeners", listeners.to_string()),
            ("controller.listener.names", "CONTROLLER".into()),
            ("controller.quorum.voters", VOTERS.into()),
        ]
    }

    fn parse(pairs: Vec<(&'static str, String)>) -> Result<BrokerConfig, ConfigError> {
        let refs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        config(&refs)
    }

    #[test]
    fn a_voter_with_kafkas_settings() {
        let c = parse(member(
            "2",
            "PLAINTEXT://127.0.0.1:9192,CONTROLLER://127.0.0.1:9193",
        ))
        .unwrap();
        assert_eq!(c.listener.port, 9192);
        assert_eq!(c.advertised.port, 9192);
        assert_eq!(
            c.cluster.controller_listener.as_ref().map(|e| e.port),
            Some(9193)
        );
        assert_eq!(c.cluster.voters.len(), 3);
        assert!(c.cluster.roles.broker && c.cluster.roles.controller);
    }

    #[test]
    fn defaults_stay_a_single_node() {
        let c = config(&[]).unwrap();
        assert!(c.cluster.voters.is_empty());
        assert_eq!(c.listen_addr(), "127.0.0.1:9092");
    }

    #[test]
    fn refusals_name_the_setting() {
        let cases: Vec<(Vec<(&'static str, String)>, &str)> = vec![
            (
                member(
                    "4",
                    "PLAINTEXT://127.0.0.1:9392,CONTROLLER://127.0.0.1:9393",
                ),
                "not one of the voters",
            ),
            (
                member(
                    "1",
                    "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9999",
                ),
                "gives node 1 port 9093",
            ),
            (
                member("1", "PLAINTEXT://127.0.0.1:9092"),
                "must name a listener",
            ),
            (
                member("1", "PLAINTEXT://127.0.0.1:9092,SSL2://127.0.0.1:9093"),
                "no security protocol",
            ),
        ];
        for (pairs, expected) in cases {
            let err = parse(pairs).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        let mut dup = member(
            "1",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        );
        dup[3].1 = "1@127.0.0.1:9093,1@127.0.0.1:9193".into();
        assert!(parse(dup)
            .unwrap_err()
            .to_string()
            .contains("appears twice"));
        let mut roles = member(
            "1",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        );
        roles.push(("process.roles", "broker,zookeeper".into()));
        assert!(parse(roles)
            .unwrap_err()
            .to_string()
            .contains("process.roles"));
    }

    #[test]
    fn single_role_nodes() {
        let with = |mut pairs: Vec<(&'static str, String)>, extra: &[(&'static str, &str)]| {
            for (k, v) in extra {
                pairs.retain(|(key, _)| key != k);
                pairs.push((k, v.to_string()));
            }
            parse(pairs)
        };
        // A controller-only voter: only its controller listener.
        let c = with(
            member("2", "CONTROLLER://127.0.0.1:9193"),
            &[("process.roles", "controller")],
        )
        .unwrap();
        assert!(!c.cluster.roles.broker && !c.cluster.is_observer());
        // A broker-only observer, by the voters or by bootstrap servers alone.
        let b = with(
            member("4", "PLAINTEXT://127.0.0.1:9392"),
            &[("process.roles", "broker")],
        )
        .unwrap();
        assert!(b.cluster.is_observer());
        let b = with(
            member("4", "PLAINTEXT://127.0.0.1:9392"),
            &[
                ("process.roles", "broker"),
                ("controller.quorum.voters", ""),
                ("controller.quorum.bootstrap.servers", "127.0.0.1:9093"),
            ],
        )
        .unwrap();
        assert!(b.cluster.is_observer() && b.cluster.voters.is_empty());
        // A broker-only node of a cluster secured throughout: SASL_SSL between brokers,
        // and the controllers' quorum (which reaches it on that listener) over SASL_SSL.
        let b = with(
            member("4", "INTERNAL://127.0.0.1:9392"),
            &[
                ("process.roles", "broker"),
                (
                    "listener.security.protocol.map",
                    "INTERNAL:SASL_SSL,CONTROLLER:SASL_SSL",
                ),
                ("inter.broker.listener.name", "INTERNAL"),
                ("ssl.keystore.type", "PEM"),
                ("ssl.keystore.location", "/k.pem"),
                ("ssl.truststore.type", "PEM"),
                ("ssl.truststore.location", "/ca.pem"),
                ("listener.name.controller.ssl.client.auth", "required"),
                ("sasl.enabled.mechanisms", "SCRAM-SHA-512"),
                ("sasl.mechanism.inter.broker.protocol", "SCRAM-SHA-512"),
                (
                    "listener.name.internal.scram-sha-512.sasl.jaas.config",
                    "org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"broker\" password=\"broker-secret\";",
                ),
                ("listener.name.controller.sasl.enabled.mechanisms", "PLAIN"),
                ("sasl.mechanism.controller.protocol", "PLAIN"),
                (
                    "listener.name.controller.plain.sasl.jaas.config",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required \
                     username=\"ctl\" password=\"ctl-secret\" user_ctl=\"ctl-secret\";",
                ),
            ],
        )
        .unwrap();
        assert!(b.cluster.is_observer());
        assert_eq!(b.cluster.controller_protocol, SecurityProtocol::SaslSsl);
        assert!(b.security.controller.is_some_and(|c| c.tls.is_some()));
        assert_eq!(b.security.inter_broker_login.unwrap().username, "broker");
        let refused = [
            (
                with(
                    member("1", "PLAINTEXT://127.0.0.1:9092"),
                    &[("process.roles", "broker")],
                ),
                "is a voter",
            ),
            (
                with(
                    member(
                        "4",
                        "PLAINTEXT://127.0.0.1:9392,CONTROLLER://127.0.0.1:9393",
                    ),
                    &[("process.roles", "broker")],
                ),
                "no controller listener",
            ),
            (
                with(
                    member(
                        "1",
                        "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
                    ),
                    &[("process.roles", "controller")],
                ),
                "serves no clients",
            ),
            (
                with(
                    member("1", "CONTROLLER://127.0.0.1:9093"),
                    &[
                        ("process.roles", "controller"),
                        ("controller.quorum.voters", ""),
                        ("controller.quorum.bootstrap.servers", "127.0.0.1:9093"),
                    ],
                ),
                "part of a cluster",
            ),
            (
                with(
                    member("1", "PLAINTEXT://127.0.0.1:9092"),
                    &[
                        ("process.roles", "broker"),
                        ("controller.quorum.voters", ""),
                    ],
                ),
                "part of a cluster",
            ),
        ];
        for (result, expected) in refused {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn a_controller_listener_is_plaintext_unless_mapped() {
        let pairs = member(
            "1",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        );
        let c = parse(pairs.clone()).unwrap();
        assert_eq!(c.cluster.controller_protocol, SecurityProtocol::Plaintext);
        assert!(c.security.controller.is_none());

        let with = |extra: &[(&'static str, &str)]| {
            let mut p = pairs.clone();
            p.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
            parse(p)
        };
        let tls: &[(&'static str, &str)] = &[
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_SSL",
            ),
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.truststore.type", "PEM"),
            ("ssl.truststore.location", "/ca.pem"),
        ];
        let plain: &[(&'static str, &str)] = &[
            ("listener.name.controller.sasl.enabled.mechanisms", "PLAIN"),
            ("sasl.mechanism.controller.protocol", "PLAIN"),
            (
                "listener.name.controller.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required \
                 username=\"ctl\" password=\"ctl-secret\" user_ctl=\"ctl-secret\";",
            ),
        ];
        let c = with(&[tls, plain].concat()).unwrap();
        assert_eq!(c.cluster.controller_protocol, SecurityProtocol::SaslSsl);
        let controller = c.security.controller.clone().unwrap();
        assert_eq!(controller.plain_users["ctl"], "ctl-secret");
        assert!(controller.tls.is_some());
        assert_eq!(c.security.controller_login.unwrap().username, "ctl");

        let refused = [
            (
                with(&[(
                    "listener.security.protocol.map",
                    "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
                )]),
                "set ssl.keystore.type",
            ),
            (
                with(
                    &[
                        tls,
                        &[(
                            "listener.security.protocol.map",
                            "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
                        )],
                    ]
                    .concat(),
                ),
                "listener.name.controller.ssl.client.auth=required",
            ),
            (with(tls), "cannot offer SCRAM-SHA-256"),
            (
                with(&[tls, &plain[..1]].concat()),
                "do not log in with GSSAPI",
            ),
        ];
        for (result, expected) in refused {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    /// A voter whose brokers replicate over SASL_SSL, as Kafka is configured for it.
    fn secured_member() -> Vec<(&'static str, String)> {
        let mut pairs = member("1", "INTERNAL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093");
        pairs.extend([
            (
                "listener.security.protocol.map",
                "INTERNAL:SASL_SSL,CONTROLLER:PLAINTEXT".to_string(),
            ),
            ("inter.broker.listener.name", "INTERNAL".into()),
            ("ssl.keystore.type", "PEM".into()),
            ("ssl.keystore.location", "/k.pem".into()),
            ("ssl.truststore.type", "PEM".into()),
            ("ssl.truststore.location", "/ca.pem".into()),
            ("sasl.enabled.mechanisms", "SCRAM-SHA-512".into()),
            (
                "sasl.mechanism.inter.broker.protocol",
                "SCRAM-SHA-512".into(),
            ),
            (
                "listener.name.internal.scram-sha-512.sasl.jaas.config",
                "org.apache.kafka.common.security.scram.ScramLoginModule required \
                 username=\"broker\" password=\"broker-secret\";"
                    .into(),
            ),
        ]);
        pairs
    }

    #[test]
    fn brokers_log_in_to_a_secured_inter_broker_listener() {
        let c = parse(secured_member()).unwrap();
        let login = c.security.inter_broker_login.clone().unwrap();
        assert_eq!(login.mechanism, crate::config::Mechanism::ScramSha512);
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("broker", "broker-secret")
        );
        assert!(!format!("{login:?}").contains("broker-secret"));
        let tls = |c: &BrokerConfig| c.security.listeners["INTERNAL"].tls.clone().unwrap();
        assert!(tls(&c).verify_hostname);
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);

        let with = |key: &'static str, value: &str| {
            let mut pairs = secured_member();
            pairs.retain(|(k, _)| *k != key);
            pairs.push((key, value.to_string()));
            parse(pairs)
        };
        let c = with("ssl.endpoint.identification.algorithm", "").unwrap();
        assert!(!tls(&c).verify_hostname);
        // The top-level JAAS line serves when the listener has none.
        let mut pairs = secured_member();
        pairs.retain(|(k, _)| !k.ends_with("jaas.config"));
        pairs.push((
            "sasl.jaas.config",
            "org.apache.kafka.common.security.scram.ScramLoginModule required \
             username=\"b2\" password=\"p2\";"
                .into(),
        ));
        let login = parse(pairs).unwrap().security.inter_broker_login.unwrap();
        assert_eq!(login.username, "b2");

        for (result, expected) in [
            (
                with("sasl.mechanism.inter.broker.protocol", "GSSAPI"),
                "do not log in with GSSAPI",
            ),
            (
                with("sasl.mechanism.inter.broker.protocol", "PLAIN"),
                "PLAIN is not enabled on listener INTERNAL",
            ),
            (
                with(
                    "listener.name.internal.scram-sha-512.sasl.jaas.config",
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                ),
                "give this node's own login",
            ),
            (
                with(
                    "listener.name.internal.scram-sha-512.sasl.jaas.config",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required \
                     username=\"a\" password=\"b\";",
                ),
                "expected org.apache.kafka.common.security.scram.ScramLoginModule",
            ),
            (
                with("ssl.endpoint.identification.algorithm", "dns"),
                "must be https",
            ),
        ] {
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }
}
