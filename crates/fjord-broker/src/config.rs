//! Broker configuration, spoken in Kafka's property names (`server.properties` style).
//!
//! Every property Fjord understands is in [`BROKER_PROPERTIES`] with Kafka's default. A
//! property Kafka knows but Fjord does not use (thread pools, socket buffers, transaction
//! log settings, ...) is accepted and reported in [`BrokerConfig::ignored`], so Kafka's own
//! `server.properties` starts Fjord. Any other name is an error rather than a silent no-op:
//! a typo in a retention setting should stop the server, not quietly keep data for a week.

mod cluster;
mod kafka_names;
mod security;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use fjord_log::{LogConfig, TimestampType};

pub use cluster::{ClientListener, ClusterConfig, Roles, SecurityProtocol};
pub use kafka_names::is_kafka_broker_property;
pub use security::{
    is_sensitive, ClientAuth, Keystore, ListenerSecurity, Mechanism, OAuthSettings, SaslLogin,
    SecurityConfig, TlsSettings, Truststore,
};

/// The kinds a property value can take; also the `config_type` DescribeConfigs reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropType {
    Boolean,
    String,
    Int,
    Long,
    /// A floating-point value (topic config `min.cleanable.dirty.ratio`).
    Double,
    List,
}

impl PropType {
    /// Kafka's ConfigType codes for DescribeConfigs v3+.
    pub fn code(self) -> i8 {
        match self {
            PropType::Boolean => 1,
            PropType::String => 2,
            PropType::Int => 3,
            PropType::Long => 5,
            PropType::Double => 6,
            PropType::List => 7,
        }
    }
}

/// (name, Kafka's default, type). Defaults equal Kafka's except where Fjord's zero-config
/// start needs otherwise (listeners, log.dirs, node.id).
pub const BROKER_PROPERTIES: &[(&str, &str, PropType)] = &[
    ("node.id", "1", PropType::Int),
    ("broker.id", "", PropType::Int),
    ("process.roles", "broker,controller", PropType::List),
    ("listeners", "PLAINTEXT://127.0.0.1:9092", PropType::List),
    ("advertised.listeners", "", PropType::List),
    ("controller.listener.names", "", PropType::List),
    (
        "listener.security.protocol.map",
        "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
        PropType::List,
    ),
    ("inter.broker.listener.name", "", PropType::String),
    // TLS listeners (SSL, SASL_SSL). Kafka's keystore default is JKS, which Fjord does
    // not read; PEM is named explicitly, as with Kafka.
    ("ssl.keystore.type", "JKS", PropType::String),
    ("ssl.keystore.location", "", PropType::String),
    ("ssl.keystore.password", "", PropType::String),
    ("ssl.keystore.certificate.chain", "", PropType::String),
    ("ssl.keystore.key", "", PropType::String),
    ("ssl.key.password", "", PropType::String),
    ("ssl.truststore.type", "JKS", PropType::String),
    ("ssl.truststore.location", "", PropType::String),
    ("ssl.truststore.password", "", PropType::String),
    ("ssl.truststore.certificates", "", PropType::String),
    ("ssl.client.auth", "none", PropType::String),
    ("ssl.enabled.protocols", "TLSv1.2,TLSv1.3", PropType::List),
    ("ssl.principal.mapping.rules", "DEFAULT", PropType::String),
    // A broker connecting to another's TLS inter-broker listener checks that the
    // certificate names the host, as Kafka does by default.
    (
        "ssl.endpoint.identification.algorithm",
        "https",
        PropType::String,
    ),
    // SASL listeners. Kafka's default is GSSAPI (Kerberos), which Fjord does not offer;
    // SCRAM keeps passwords off the wire, so it is Fjord's default.
    (
        "sasl.enabled.mechanisms",
        "SCRAM-SHA-256,SCRAM-SHA-512",
        PropType::List,
    ),
    // How nodes log in to each other's SASL inter-broker and controller listeners, and the
    // JAAS line with their own username and password when no
    // listener.name.<l>.<mechanism>. form is set.
    (
        "sasl.mechanism.inter.broker.protocol",
        "GSSAPI",
        PropType::String,
    ),
    (
        "sasl.mechanism.controller.protocol",
        "GSSAPI",
        PropType::String,
    ),
    ("sasl.jaas.config", "", PropType::String),
    (
        "connection.failed.authentication.delay.ms",
        "100",
        PropType::Int,
    ),
    // KIP-368: a SASL login lasts this long (0: for the connection's life); the client
    // logs in again on the same connection before it runs out, or is disconnected.
    ("connections.max.reauth.ms", "0", PropType::Long),
    // The largest frame a SASL listener reads before the client has logged in.
    ("sasl.server.max.receive.size", "524288", PropType::Int),
    // ACLs: off unless an authorizer is named (Kafka's StandardAuthorizer is the one
    // Fjord has); then whatever no ACL allows is denied, except to the super users.
    ("authorizer.class.name", "", PropType::String),
    ("super.users", "", PropType::String),
    ("allow.everyone.if.no.acl.found", "false", PropType::Boolean),
    ("controller.quorum.voters", "", PropType::List),
    ("controller.quorum.bootstrap.servers", "", PropType::List),
    (
        "controller.quorum.election.timeout.ms",
        "1000",
        PropType::Int,
    ),
    ("broker.heartbeat.interval.ms", "2000", PropType::Int),
    ("broker.session.timeout.ms", "9000", PropType::Int),
    ("replica.lag.time.max.ms", "30000", PropType::Int),
    ("replica.fetch.wait.max.ms", "500", PropType::Int),
    ("replica.fetch.max.bytes", "1048576", PropType::Int),
    (
        "replica.fetch.response.max.bytes",
        "10485760",
        PropType::Int,
    ),
    ("replica.fetch.backoff.ms", "1000", PropType::Int),
    (
        "replica.high.watermark.checkpoint.interval.ms",
        "5000",
        PropType::Int,
    ),
    ("num.replica.fetchers", "1", PropType::Int),
    ("auto.leader.rebalance.enable", "true", PropType::Boolean),
    (
        "leader.imbalance.check.interval.seconds",
        "300",
        PropType::Int,
    ),
    (
        "leader.imbalance.per.broker.percentage",
        "10",
        PropType::Int,
    ),
    // Replication throttles (bytes per second; the maximum means none), measured over
    // `replication.quota.window.num` windows of `replication.quota.window.size.seconds`.
    (
        "leader.replication.throttled.rate",
        "9223372036854775807",
        PropType::Long,
    ),
    (
        "follower.replication.throttled.rate",
        "9223372036854775807",
        PropType::Long,
    ),
    // KIP-392: which replica a consumer reads from. Empty (Kafka's default) or Kafka's
    // LeaderSelector: always the leader; RackAwareReplicaSelector: a follower in the
    // consumer's `client.rack` when there is one.
    ("replica.selector.class", "", PropType::String),
    ("replication.quota.window.num", "11", PropType::Int),
    ("replication.quota.window.size.seconds", "1", PropType::Int),
    // Fjord's own: a follower fsyncs what it copied before it asks for more, and so
    // before the leader counts it towards acks=all.
    ("replica.fsync.enable", "true", PropType::Boolean),
    ("log.dirs", "./fjord-data", PropType::String),
    ("log.dir", "", PropType::String),
    ("broker.rack", "", PropType::String),
    ("num.partitions", "1", PropType::Int),
    ("default.replication.factor", "1", PropType::Int),
    ("min.insync.replicas", "1", PropType::Int),
    ("auto.create.topics.enable", "true", PropType::Boolean),
    ("delete.topic.enable", "true", PropType::Boolean),
    ("message.max.bytes", "1048588", PropType::Int),
    ("socket.request.max.bytes", "104857600", PropType::Int),
    // Kafka's default is -1 (unbounded); Fjord bounds request memory by default.
    ("queued.max.request.bytes", "268435456", PropType::Long),
    ("fetch.max.bytes", "57671680", PropType::Int),
    ("max.connections", "2147483647", PropType::Int),
    ("max.connections.per.ip", "2147483647", PropType::Int),
    ("connections.max.idle.ms", "600000", PropType::Long),
    // Fjord's own: how long one request frame may take to arrive once it has started.
    ("fjord.request.read.timeout.ms", "30000", PropType::Long),
    ("log.segment.bytes", "1073741824", PropType::Int),
    ("log.roll.ms", "", PropType::Long),
    ("log.roll.hours", "168", PropType::Int),
    ("log.retention.ms", "", PropType::Long),
    ("log.retention.minutes", "", PropType::Int),
    ("log.retention.hours", "168", PropType::Int),
    ("log.retention.bytes", "-1", PropType::Long),
    ("log.retention.check.interval.ms", "300000", PropType::Long),
    ("log.index.interval.bytes", "4096", PropType::Int),
    ("log.index.size.max.bytes", "10485760", PropType::Int),
    ("log.message.timestamp.type", "CreateTime", PropType::String),
    (
        "log.flush.interval.messages",
        "9223372036854775807",
        PropType::Long,
    ),
    ("log.flush.interval.ms", "", PropType::Long),
    (
        "log.flush.scheduler.interval.ms",
        "9223372036854775807",
        PropType::Long,
    ),
    ("log.cleanup.policy", "delete", PropType::List),
    ("log.cleaner.enable", "true", PropType::Boolean),
    ("log.cleaner.threads", "1", PropType::Int),
    (
        "log.cleaner.dedupe.buffer.size",
        "134217728",
        PropType::Long,
    ),
    (
        "log.cleaner.io.max.bytes.per.second",
        "1.7976931348623157E308",
        PropType::Double,
    ),
    ("log.cleaner.backoff.ms", "15000", PropType::Long),
    (
        "log.cleaner.delete.retention.ms",
        "86400000",
        PropType::Long,
    ),
    ("log.cleaner.min.cleanable.ratio", "0.5", PropType::Double),
    ("log.cleaner.min.compaction.lag.ms", "0", PropType::Long),
    (
        "log.cleaner.max.compaction.lag.ms",
        "9223372036854775807",
        PropType::Long,
    ),
    ("compression.type", "producer", PropType::String),
    ("producer.id.expiration.ms", "86400000", PropType::Int),
    (
        "producer.id.expiration.check.interval.ms",
        "600000",
        PropType::Int,
    ),
    ("offsets.topic.num.partitions", "50", PropType::Int),
    ("offsets.topic.replication.factor", "3", PropType::Int),
    ("offsets.topic.segment.bytes", "104857600", PropType::Int),
    ("offsets.retention.minutes", "10080", PropType::Int),
    ("transaction.state.log.num.partitions", "50", PropType::Int),
    (
        "transaction.state.log.replication.factor",
        "3",
        PropType::Int,
    ),
    ("transaction.state.log.min.isr", "2", PropType::Int),
    (
        "transaction.state.log.segment.bytes",
        "104857600",
        PropType::Int,
    ),
    ("transaction.max.timeout.ms", "900000", PropType::Int),
    ("transactional.id.expiration.ms", "604800000", PropType::Int),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "10000",
        PropType::Int,
    ),
    (
        "transaction.remove.expired.transaction.cleanup.interval.ms",
        "3600000",
        PropType::Int,
    ),
    ("group.initial.rebalance.delay.ms", "3000", PropType::Int),
    ("group.min.session.timeout.ms", "6000", PropType::Int),
    ("group.max.session.timeout.ms", "1800000", PropType::Int),
    ("group.consumer.session.timeout.ms", "45000", PropType::Int),
    (
        "group.consumer.heartbeat.interval.ms",
        "5000",
        PropType::Int,
    ),
    ("group.max.size", "2147483647", PropType::Int),
    ("group.consumer.max.size", "2147483647", PropType::Int),
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Every unknown name at once, so that a file with several is fixed in one go.
    #[error("{}", describe_unknown(.0))]
    Unknown(Vec<UnknownProperty>),
    #[error("{} for ZooKeeper, which Fjord does not use (it runs in KRaft style): remove {}",
        quoted_list("broker property", .0), if .0.len() == 1 { "it" } else { "them" })]
    ZooKeeper(Vec<String>),
    #[error("invalid value '{value}' for broker property '{name}': {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
    #[error("line {line} of the properties file is not 'key=value': {text}")]
    Syntax { line: usize, text: String },
}

/// A property name neither Fjord nor Kafka knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownProperty {
    pub name: String,
    /// The closest known name, when one is close enough to be the intended one.
    pub suggestion: Option<String>,
}

fn describe_unknown(unknown: &[UnknownProperty]) -> String {
    let each = |u: &UnknownProperty| match &u.suggestion {
        Some(s) => format!("'{}' (did you mean '{s}'?)", u.name),
        None => format!("'{}'", u.name),
    };
    let list: Vec<String> = unknown.iter().map(each).collect();
    let noun = if unknown.len() == 1 {
        "unknown broker property"
    } else {
        "unknown broker properties"
    };
    let mut text = format!("{noun} {}", list.join(", "));
    if unknown.iter().all(|u| u.suggestion.is_none()) {
        text.push_str(
            " (Fjord accepts Kafka's names: node.id, listeners, log.dirs, num.partitions, ...)",
        );
    }
    text
}

fn quoted_list(noun: &str, names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match names.len() {
        1 => format!("{noun} {} is", quoted[0]),
        _ => format!("{noun}s {} are", quoted.join(", ")),
    }
}

/// A listener address in Kafka's `NAME://host:port` form (the name is optional here).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

/// How partitions are replicated between brokers, in Kafka's `replica.*` names.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// A follower that has not caught up for this long leaves the ISR.
    pub lag_time_max_ms: i64,
    pub fetch_wait_max_ms: i32,
    /// Per partition, per follower fetch.
    pub fetch_max_bytes: i32,
    pub fetch_response_max_bytes: i32,
    /// The pause after a failed follower fetch.
    pub fetch_backoff_ms: u64,
    /// How often high watermarks are checkpointed.
    pub checkpoint_interval_ms: u64,
    /// Fetchers per source broker; partitions are spread over them.
    pub fetchers: u32,
    /// Whether a follower fsyncs before counting towards acks=all.
    pub fsync: bool,
    /// `auto.leader.rebalance.enable`: the active controller moves leadership back to
    /// preferred replicas every `leader.imbalance.check.interval.seconds` when a broker
    /// leads fewer than `leader.imbalance.per.broker.percentage` of its preferred ones.
    pub auto_leader_rebalance: bool,
    pub imbalance_check_interval_s: u64,
    pub imbalance_percentage: u32,
    /// Bytes per second a leader sends to, and a follower copies for, replicas outside
    /// the ISR that the topic lists as throttled; `u64::MAX` means no throttle.
    pub leader_throttle_rate: u64,
    pub follower_throttle_rate: u64,
    pub quota_window_ms: i64,
    pub quota_windows: usize,
    /// `replica.selector.class` is Kafka's RackAwareReplicaSelector.
    pub rack_aware_reads: bool,
}

const LEADER_SELECTOR: &str = "org.apache.kafka.common.replica.LeaderSelector";
const RACK_AWARE_SELECTOR: &str = "org.apache.kafka.common.replica.RackAwareReplicaSelector";

/// The transaction coordinator's settings, with Kafka's names.
#[derive(Debug, Clone, PartialEq)]
pub struct TransactionConfig {
    /// `transaction.state.log.num.partitions`.
    pub log_partitions: i32,
    /// `transaction.state.log.replication.factor` (capped at the live brokers).
    pub log_replication_factor: i16,
    /// `transaction.state.log.min.isr`: the topic's `min.insync.replicas`.
    pub log_min_isr: i32,
    /// `transaction.state.log.segment.bytes`.
    pub log_segment_bytes: i32,
    /// `transaction.max.timeout.ms`: a longer transaction timeout is refused.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms`: an idle transactional id is forgotten.
    pub id_expiration_ms: i64,
    /// How often open transactions are checked against their timeout.
    pub abort_check_interval_ms: u64,
    /// How often idle transactional ids are checked for expiry.
    pub expiry_check_interval_ms: u64,
}

/// The log cleaner's settings, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.enable`
    pub enable: bool,
    /// `log.cleaner.threads`: passes that may run at once.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: key-map memory, shared by the threads.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.io.max.bytes.per.second`: read and write rate of all passes together.
    pub io_max_bytes_per_second: f64,
    /// `log.cleaner.backoff.ms`: the pause when no log needs cleaning.
    pub backoff_ms: u64,
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub listener: Endpoint,
    /// What clients are told to connect to; defaults to the listener.
    pub advertised: Endpoint,
    /// Roles, the controller listener and the quorum's voters.
    pub cluster: ClusterConfig,
    /// TLS and SASL, per client listener.
    pub security: SecurityConfig,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout_ms: u64,
    /// How often a cluster member tells the active controller it is alive.
    pub broker_heartbeat_interval_ms: u64,
    /// A broker silent this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// Partition replication: how followers fetch and when they count as in sync.
    pub replication: ReplicationConfig,
    pub rack: Option<String>,
    pub data_dir: PathBuf,
    pub num_partitions: i32,
    pub default_replication_factor: i16,
    pub min_insync_replicas: i32,
    pub auto_create_topics: bool,
    pub delete_topic_enable: bool,
    pub socket_request_max_bytes: usize,
    /// Bytes of requests read and not yet answered, over all connections.
    pub queued_max_request_bytes: usize,
    /// Most bytes one Fetch response may carry, whatever the client asks.
    pub fetch_max_bytes: usize,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    /// A connection with no request in flight for this long is closed.
    pub connections_max_idle_ms: u64,
    /// A request frame still arriving after this long closes its connection.
    pub request_read_timeout_ms: u64,
    pub retention_check_interval_ms: u64,
    pub flush_scheduler_interval_ms: u64,
    /// An idempotent producer whose latest batch is this old is forgotten.
    pub producer_id_expiration_ms: i64,
    /// How often expired producer ids are looked for.
    pub producer_id_expiration_check_interval_ms: u64,
    pub cleanup_policy: String,
    /// The log cleaner (`log.cleaner.*`).
    pub cleaner: CleanerConfig,
    pub compression_type: String,
    pub offsets_topic_num_partitions: i32,
    pub offsets_topic_replication_factor: i16,
    /// `offsets.topic.segment.bytes`: small segments let the cleaner compact it sooner.
    pub offsets_topic_segment_bytes: i32,
    pub offsets_retention_minutes: i64,
    /// The transaction coordinator (`transaction.*`, `transactional.id.expiration.ms`).
    pub transactions: TransactionConfig,
    pub group_initial_rebalance_delay_ms: u64,
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// New consumer protocol (KIP-848): a member silent this long is removed.
    pub group_consumer_session_timeout_ms: i32,
    /// New consumer protocol: how often members are told to heartbeat.
    pub group_consumer_heartbeat_interval_ms: i32,
    /// Most members a classic group may have (`group.max.size`).
    pub group_max_size: i32,
    /// Most members a consumer-protocol group may have (`group.consumer.max.size`).
    pub group_consumer_max_size: i32,
    /// The topic-level defaults the log.* properties set.
    pub log_defaults: LogConfig,
    /// Properties set explicitly (file, flags, overrides), for DescribeConfigs.
    pub explicit: BTreeMap<String, String>,
    /// Kafka broker properties that were set but that Fjord does not use, sorted; the server
    /// names them once at start.
    pub ignored: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        // The embedded defaults are valid by construction; a failure here is a bug in the table.
        match BrokerConfig::from_props(&BTreeMap::new()) {
            Ok(c) => c,
            Err(e) => panic!("built-in broker defaults are invalid: {e}"),
        }
    }
}

/// Parses `server.properties` text: `key=value` or `key: value` lines, `#`/`!` comments.
pub fn parse_properties(text: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut props = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
            continue;
        }
        let Some(sep) = line.find(['=', ':']) else {
            return Err(ConfigError::Syntax {
                line: i + 1,
                text: raw.to_string(),
            });
        };
        let key = line[..sep].trim();
        let value = line[sep + 1..].trim();
        if key.is_empty() {
            return Err(ConfigError::Syntax {
                line: i + 1,
                text: raw.to_string(),
            });
        }
        props.insert(key.to_string(), value.to_string());
    }
    Ok(props)
}

impl BrokerConfig {
    /// Builds a config from explicitly set properties, filling in defaults.
    pub fn from_props(props: &BTreeMap<String, String>) -> Result<BrokerConfig, ConfigError> {
        let mut ignored = Vec::new();
        let mut zookeeper = Vec::new();
        let mut unknown = Vec::new();
        // Kafka's own example configuration (one node, formatted `--standalone`) names
        // the node itself in controller.quorum.bootstrap.servers. A node with the
        // controller role and no voter list is Fjord's one-node cluster, which the
        // setting does not apply to; only a broker-only node finds the quorum by it.
        let roles = props
            .get("process.roles")
            .map(String::as_str)
            .unwrap_or("broker,controller");
        let standalone = roles.split(',').any(|r| r.trim() == "controller")
            && props
                .get("controller.quorum.voters")
                .is_none_or(|v| v.trim().is_empty());
        for name in props.keys() {
            if standalone && name == "controller.quorum.bootstrap.servers" {
                ignored.push(name.clone());
                continue;
            }
            if BROKER_PROPERTIES.iter().any(|(n, _, _)| n == name)
                || security::is_used_listener_property(name)
            {
                continue;
            }
            if name.starts_with("zookeeper.") {
                zookeeper.push(name.clone());
            } else if is_kafka_broker_property(name) {
                ignored.push(name.clone());
            } else {
                unknown.push(UnknownProperty {
                    name: name.clone(),
                    suggestion: closest_known(name).map(str::to_string),
                });
            }
        }
        if !unknown.is_empty() {
            return Err(ConfigError::Unknown(unknown));
        }
        if !zookeeper.is_empty() {
            return Err(ConfigError::ZooKeeper(zookeeper));
        }
        // Only what Fjord uses is reported by DescribeConfigs as set.
        let used: BTreeMap<String, String> = props
            .iter()
            .filter(|(k, _)| !ignored.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let props = &used;
        let r = Reader { props };
        let node_id = match r.opt_int("broker.id")? {
            Some(id) if !props.contains_key("node.id") => id,
            _ => r.int("node.id")?,
        };
        if node_id < 0 {
            return Err(r.invalid("node.id", "must be 0 or greater"));
        }
        let cluster = cluster::parse(&r, node_id)?;
        let security = security::parse(&r, &cluster)?;
        let data_dir = match r.string("log.dir") {
            d if !d.is_empty() && !props.contains_key("log.dirs") => d,
            _ => r.string("log.dirs"),
        };
        if data_dir.contains(',') {
            return Err(r.invalid("log.dirs", "Fjord stores data in one directory per broker"));
        }

        let mut log = LogConfig::default();
        let mut set_log = |topic_key: &str, broker_key: &str, value: String| {
            log.set(topic_key, &value)
                .map(|_| ())
                .map_err(|e| ConfigError::Invalid {
                    name: broker_key.to_string(),
                    value,
                    reason: e.to_string(),
                })
        };
        // Kafka 4 refuses segments under 1 MiB at the broker level as at the topic level.
        if r.long("log.segment.bytes")? < crate::topic_config::MIN_SEGMENT_BYTES {
            return Err(r.invalid(
                "log.segment.bytes",
                &format!(
                    "must be at least {}",
                    crate::topic_config::MIN_SEGMENT_BYTES
                ),
            ));
        }
        set_log(
            "segment.bytes",
            "log.segment.bytes",
            r.string("log.segment.bytes"),
        )?;
        let roll_ms = match r.opt_long("log.roll.ms")? {
            Some(ms) => ms,
            None => r.long("log.roll.hours")? * 3_600_000,
        };
        set_log("segment.ms", "log.roll.ms", roll_ms.to_string())?;
        let retention_ms = if let Some(ms) = r.opt_long("log.retention.ms")? {
            ms
        } else if let Some(min) = r.opt_long("log.retention.minutes")? {
            min * 60_000
        } else {
            r.long("log.retention.hours")? * 3_600_000
        };
        set_log("retention.ms", "log.retention.ms", retention_ms.to_string())?;
        set_log(
            "retention.bytes",
            "log.retention.bytes",
            r.string("log.retention.bytes"),
        )?;
        set_log(
            "index.interval.bytes",
            "log.index.interval.bytes",
            r.string("log.index.interval.bytes"),
        )?;
        set_log(
            "segment.index.bytes",
            "log.index.size.max.bytes",
            r.string("log.index.size.max.bytes"),
        )?;
        set_log(
            "max.message.bytes",
            "message.max.bytes",
            r.string("message.max.bytes"),
        )?;
        set_log(
            "message.timestamp.type",
            "log.message.timestamp.type",
            r.string("log.message.timestamp.type"),
        )?;
        set_log(
            "flush.messages",
            "log.flush.interval.messages",
            r.string("log.flush.interval.messages"),
        )?;
        for (topic_key, broker_key) in [
            ("delete.retention.ms", "log.cleaner.delete.retention.ms"),
            (
                "min.cleanable.dirty.ratio",
                "log.cleaner.min.cleanable.ratio",
            ),
            ("min.compaction.lag.ms", "log.cleaner.min.compaction.lag.ms"),
            ("max.compaction.lag.ms", "log.cleaner.max.compaction.lag.ms"),
        ] {
            set_log(topic_key, broker_key, r.string(broker_key))?;
        }
        // Kafka: log.flush.interval.ms falls back to the scheduler interval.
        let flush_ms = match r.opt_long("log.flush.interval.ms")? {
            Some(ms) => ms,
            None => r.long("log.flush.scheduler.interval.ms")?,
        };
        set_log("flush.ms", "log.flush.interval.ms", flush_ms.to_string())?;

        let cleanup_policy = r.string("log.cleanup.policy");
        crate::topic_config::validate_cleanup_policy(&cleanup_policy)
            .map_err(|reason| r.invalid("log.cleanup.policy", &reason))?;
        let compression_type = r.string("compression.type");
        crate::topic_config::validate_compression_type(&compression_type)
            .map_err(|reason| r.invalid("compression.type", &reason))?;

        let positive = |name: &str| -> Result<i64, ConfigError> {
            let v = r.long(name)?;
            if v <= 0 {
                return Err(r.invalid(name, "must be greater than 0"));
            }
            Ok(v)
        };
        let non_negative = |name: &str| -> Result<u64, ConfigError> {
            let v = r.long(name)?;
            if v < 0 {
                return Err(r.invalid(name, "must be at least 0"));
            }
            Ok(v as u64)
        };
        // Kafka refuses the same: a member could never heartbeat within its session.
        let heartbeat_ms = positive("group.consumer.heartbeat.interval.ms")?;
        if heartbeat_ms >= positive("group.consumer.session.timeout.ms")? {
            return Err(r.invalid(
                "group.consumer.heartbeat.interval.ms",
                "must be less than group.consumer.session.timeout.ms",
            ));
        }
        let socket_request_max_bytes = positive("socket.request.max.bytes")? as usize;
        let queued_max_request_bytes = positive("queued.max.request.bytes")? as usize;
        // Kafka refuses the same: otherwise one legal request could never be read.
        if queued_max_request_bytes < socket_request_max_bytes {
            return Err(r.invalid(
                "queued.max.request.bytes",
                "must be at least socket.request.max.bytes",
            ));
        }
        Ok(BrokerConfig {
            node_id,
            listener: cluster.listener.clone(),
            advertised: cluster.advertised.clone(),
            election_timeout_ms: positive("controller.quorum.election.timeout.ms")? as u64,
            broker_heartbeat_interval_ms: positive("broker.heartbeat.interval.ms")? as u64,
            broker_session_timeout_ms: positive("broker.session.timeout.ms")? as u64,
            replication: ReplicationConfig {
                lag_time_max_ms: positive("replica.lag.time.max.ms")?,
                fetch_wait_max_ms: positive("replica.fetch.wait.max.ms")? as i32,
                fetch_max_bytes: positive("replica.fetch.max.bytes")? as i32,
                fetch_response_max_bytes: positive("replica.fetch.response.max.bytes")? as i32,
                fetch_backoff_ms: positive("replica.fetch.backoff.ms")? as u64,
                checkpoint_interval_ms: positive("replica.high.watermark.checkpoint.interval.ms")?
                    as u64,
                fetchers: positive("num.replica.fetchers")?.min(64) as u32,
                fsync: r.boolean("replica.fsync.enable")?,
                auto_leader_rebalance: r.boolean("auto.leader.rebalance.enable")?,
                imbalance_check_interval_s: positive("leader.imbalance.check.interval.seconds")?
                    as u64,
                imbalance_percentage: r
                    .long("leader.imbalance.per.broker.percentage")?
                    .clamp(0, 100) as u32,
                leader_throttle_rate: non_negative("leader.replication.throttled.rate")?,
                follower_throttle_rate: non_negative("follower.replication.throttled.rate")?,
                quota_window_ms: positive("replication.quota.window.size.seconds")?
                    .saturating_mul(1000),
                quota_windows: positive("replication.quota.window.num")?.min(1000) as usize,
                rack_aware_reads: match r.string("replica.selector.class").trim() {
                    "" | LEADER_SELECTOR => false,
                    RACK_AWARE_SELECTOR => true,
                    _ => {
                        return Err(r.invalid(
                            "replica.selector.class",
                            &format!(
                                "Fjord has two replica selectors: {LEADER_SELECTOR} (the default) and {RACK_AWARE_SELECTOR}"
                            ),
                        ))
                    }
                },
            },
            cluster,
            security,
            rack: Some(r.string("broker.rack")).filter(|s| !s.is_empty()),
            data_dir: PathBuf::from(data_dir),
            num_partitions: positive("num.partitions")? as i32,
            default_replication_factor: positive("default.replication.factor")? as i16,
            min_insync_replicas: positive("min.insync.replicas")? as i32,
            auto_create_topics: r.boolean("auto.create.topics.enable")?,
            delete_topic_enable: r.boolean("delete.topic.enable")?,
            socket_request_max_bytes,
            queued_max_request_bytes,
            fetch_max_bytes: positive("fetch.max.bytes")? as usize,
            max_connections: positive("max.connections")? as usize,
            max_connections_per_ip: positive("max.connections.per.ip")? as usize,
            connections_max_idle_ms: positive("connections.max.idle.ms")? as u64,
            request_read_timeout_ms: positive("fjord.request.read.timeout.ms")? as u64,
            retention_check_interval_ms: positive("log.retention.check.interval.ms")? as u64,
            flush_scheduler_interval_ms: positive("log.flush.scheduler.interval.ms")? as u64,
            producer_id_expiration_ms: positive("producer.id.expiration.ms")?,
            producer_id_expiration_check_interval_ms: positive(
                "producer.id.expiration.check.interval.ms",
            )? as u64,
            cleanup_policy,
            cleaner: CleanerConfig {
                enable: r.boolean("log.cleaner.enable")?,
                threads: positive("log.cleaner.threads")?.min(64) as usize,
                dedupe_buffer_bytes: positive("log.cleaner.dedupe.buffer.size")?
                    .min(usize::MAX as i64) as usize,
                io_max_bytes_per_second: {
                    let rate = r.double("log.cleaner.io.max.bytes.per.second")?;
                    if rate <= 0.0 {
                        return Err(r.invalid(
                            "log.cleaner.io.max.bytes.per.second",
                            "must be greater than 0",
                        ));
                    }
                    rate
                },
                backoff_ms: positive("log.cleaner.backoff.ms")? as u64,
            },
            compression_type,
            offsets_topic_num_partitions: positive("offsets.topic.num.partitions")? as i32,
            offsets_topic_replication_factor: positive("offsets.topic.replication.factor")? as i16,
            offsets_topic_segment_bytes: {
                let bytes = positive("offsets.topic.segment.bytes")?;
                if !(14..=i32::MAX as i64).contains(&bytes) {
                    return Err(r.invalid(
                        "offsets.topic.segment.bytes",
                        "must be between 14 and 2147483647",
                    ));
                }
                bytes as i32
            },
            offsets_retention_minutes: positive("offsets.retention.minutes")?,
            transactions: TransactionConfig {
                log_partitions: positive("transaction.state.log.num.partitions")? as i32,
                log_replication_factor: positive("transaction.state.log.replication.factor")?
                    .min(i16::MAX as i64) as i16,
                log_min_isr: positive("transaction.state.log.min.isr")? as i32,
                log_segment_bytes: positive("transaction.state.log.segment.bytes")?
                    .min(i32::MAX as i64) as i32,
                max_timeout_ms: positive("transaction.max.timeout.ms")? as i32,
                id_expiration_ms: positive("transactional.id.expiration.ms")?,
                abort_check_interval_ms: positive(
                    "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                )? as u64,
                expiry_check_interval_ms: positive(
                    "transaction.remove.expired.transaction.cleanup.interval.ms",
                )? as u64,
            },
            group_initial_rebalance_delay_ms: r.long("group.initial.rebalance.delay.ms")?.max(0)
                as u64,
            group_min_session_timeout_ms: positive("group.min.session.timeout.ms")? as i32,
            group_max_session_timeout_ms: positive("group.max.session.timeout.ms")? as i32,
            group_consumer_session_timeout_ms: positive("group.consumer.session.timeout.ms")?
                as i32,
            group_consumer_heartbeat_interval_ms: positive("group.consumer.heartbeat.interval.ms")?
                as i32,
            group_max_size: positive("group.max.size")?.min(i32::MAX as i64) as i32,
            group_consumer_max_size: positive("group.consumer.max.size")?.min(i32::MAX as i64)
                as i32,
            log_defaults: log,
            explicit: props.clone(),
            ignored,
        })
    }

    /// The address to bind.
    pub fn listen_addr(&self) -> String {
        format!("{}:{}", self.listener.host, self.listener.port)
    }

    /// Current value of a broker property as DescribeConfigs shows it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        if let Some(v) = self.explicit.get(name) {
            return Some(v.clone());
        }
        BROKER_PROPERTIES
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, d, _)| d.to_string())
            .filter(|d| !d.is_empty())
    }

    pub fn is_timestamp_log_append(&self) -> bool {
        self.log_defaults.timestamp_type == TimestampType::LogAppendTime
    }

    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen_addr()
            .parse()
            .map_err(|e| ConfigError::Invalid {
                name: "listeners".into(),
                value: self.listen_addr(),
                reason: format!("{e} (use an IP address, e.g. PLAINTEXT://127.0.0.1:9092)"),
            })
    }
}

/// The known property name nearest to a misspelled one, if it is near enough to be the
/// intended name: at most a third of the name's characters differ (so `log.retention.hourz`
/// suggests `log.retention.hours`, while an unrelated word suggests nothing).
fn closest_known(name: &str) -> Option<&'static str> {
    let candidates = BROKER_PROPERTIES
        .iter()
        .map(|(n, _, _)| *n)
        .chain(kafka_names::KAFKA_BROKER_PROPERTIES.iter().copied());
    let limit = (name.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'static str)> = None;
    for candidate in candidates {
        let d = edit_distance(name, candidate);
        // Ties keep the first, and Fjord's own properties come first.
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map(|(_, n)| n)
}

/// Levenshtein distance (insertions, deletions, substitutions) over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Accepts `PLAINTEXT://host:port`, `host:port`, and the first of a comma list.
/// One `HOST:PORT` of a listener-like property (`[v6]:port` too; an empty host means all
/// interfaces).
fn parse_endpoint(name: &str, value: &str, addr: &str) -> Result<Endpoint, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: name.into(),
        value: value.into(),
        reason: reason.into(),
    };
    let (host, port) = addr
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| invalid("expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

struct Reader<'a> {
    props: &'a BTreeMap<String, String>,
}

impl Reader<'_> {
    fn string(&self, name: &str) -> String {
        self.props.get(name).cloned().unwrap_or_else(|| {
            BROKER_PROPERTIES
                .iter()
                .find(|(n, _, _)| *n == name)
                .map(|(_, d, _)| d.to_string())
                .unwrap_or_default()
        })
    }

    fn invalid(&self, name: &str, reason: &str) -> ConfigError {
        ConfigError::Invalid {
            name: name.into(),
            value: self.string(name),
            reason: reason.into(),
        }
    }

    fn opt_long(&self, name: &str) -> Result<Option<i64>, ConfigError> {
        let v = self.string(name);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|_| self.invalid(name, "not a whole number"))
    }

    fn long(&self, name: &str) -> Result<i64, ConfigError> {
        self.opt_long(name)?
            .ok_or_else(|| self.invalid(name, "a value is required"))
    }

    fn opt_int(&self, name: &str) -> Result<Option<i32>, ConfigError> {
        match self.opt_long(name)? {
            None => Ok(None),
            Some(v) => i32::try_from(v)
                .map(Some)
                .map_err(|_| self.invalid(name, "out of range for a 32-bit number")),
        }
    }

    fn int(&self, name: &str) -> Result<i32, ConfigError> {
        self.opt_int(name)?
            .ok_or_else(|| self.invalid(name, "a value is required"))
    }

    fn double(&self, name: &str) -> Result<f64, ConfigError> {
        self.string(name)
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| !v.is_nan())
            .ok_or_else(|| self.invalid(name, "not a number"))
    }

    fn boolean(&self, name: &str) -> Result<bool, ConfigError> {
        match self.string(name).to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.invalid(name, "expected true or false")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = BrokerConfig::default();
        assert_eq!(c.node_id, 1);
        assert_eq!(c.listen_addr(), "127.0.0.1:9092");
        assert_eq!(c.log_defaults.retention_ms, 7 * 24 * 3_600_000);
        assert_eq!(c.log_defaults.max_message_bytes, 1048588);
        assert!(c.auto_create_topics);
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.producer_id_expiration_ms, 86_400_000);
        assert_eq!(c.producer_id_expiration_check_interval_ms, 600_000);
    }

    #[test]
    fn kafka_names_are_applied() {
        let c = BrokerConfig::from_props(&props(&[
            ("node.id", "3"),
            ("listeners", "PLAINTEXT://127.0.0.1:19092"),
            ("advertised.listeners", "PLAINTEXT://localhost:19092"),
            ("log.retention.hours", "1"),
            ("log.segment.bytes", "1048576"),
            ("num.partitions", "6"),
            ("auto.create.topics.enable", "false"),
        ]))
        .unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.listener.port, 19092);
        assert_eq!(c.advertised.host, "localhost");
        assert_eq!(c.log_defaults.retention_ms, 3_600_000);
        assert_eq!(c.log_defaults.segment_bytes, 1048576);
        assert_eq!(c.num_partitions, 6);
        assert!(!c.auto_create_topics);
        // log.retention.ms wins over hours, as in Kafka.
        let c = BrokerConfig::from_props(&props(&[
            ("log.retention.hours", "1"),
            ("log.retention.ms", "5000"),
        ]))
        .unwrap();
        assert_eq!(c.log_defaults.retention_ms, 5000);
    }

    #[test]
    fn unknown_and_bad_values_are_refused() {
        let e = BrokerConfig::from_props(&props(&[("log.retention.hourz", "1")])).unwrap_err();
        assert!(e.to_string().contains("log.retention.hourz"), "{e}");
        let e = BrokerConfig::from_props(&props(&[("num.partitions", "x")])).unwrap_err();
        assert!(e.to_string().contains("num.partitions"), "{e}");
        let e = BrokerConfig::from_props(&props(&[("log.segment.bytes", "14")])).unwrap_err();
        assert!(e.to_string().contains("at least 1048576"), "{e}");
        let e = BrokerConfig::from_props(&props(&[("num.partitions", "0")])).unwrap_err();
        assert!(e.to_string().contains("greater than 0"), "{e}");
        let e = BrokerConfig::from_props(&props(&[("listeners", "SSL://h:1")])).unwrap_err();
        assert!(e.to_string().contains("set ssl.keystore.type"), "{e}");
        let e = BrokerConfig::from_props(&props(&[("listeners", "TLS://h:1")])).unwrap_err();
        assert!(e.to_string().contains("no security protocol"), "{e}");
    }

    #[test]
    fn listeners_take_their_security_with_per_listener_overrides() {
        let c = BrokerConfig::from_props(&props(&[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,SECURE://127.0.0.1:9093,SASL_PLAINTEXT://127.0.0.1:9094",
            ),
            (
                "listener.security.protocol.map",
                "PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL,SASL_PLAINTEXT:SASL_PLAINTEXT",
            ),
            (
                "advertised.listeners",
                "PLAINTEXT://a:9092,SECURE://b:9093,SASL_PLAINTEXT://c:9094",
            ),
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", "/keys/all.pem"),
            ("listener.name.secure.ssl.keystore.location", "/keys/secure.pem"),
            ("listener.name.secure.sasl.enabled.mechanisms", "SCRAM-SHA-512"),
            ("sasl.enabled.mechanisms", "PLAIN,SCRAM-SHA-256"),
            ("connections.max.reauth.ms", "1000"),
            (
                "listener.name.secure.scram-sha-512.connections.max.reauth.ms",
                "500",
            ),
            (
                "listener.name.sasl_plaintext.plain.sasl.jaas.config",
                "org.apache.kafka.common.security.plain.PlainLoginModule required \
                 user_bob=\"bob-secret\";",
            ),
        ]))
        .unwrap();
        let names: Vec<_> = c
            .cluster
            .client_listeners
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["PLAINTEXT", "SECURE", "SASL_PLAINTEXT"]);
        assert_eq!(c.cluster.client_listeners[1].advertised.host, "b");
        assert_eq!(
            c.cluster.client_listeners[1].protocol,
            SecurityProtocol::SaslSsl
        );
        let secure = &c.security.listeners["SECURE"];
        assert_eq!(secure.mechanisms, [Mechanism::ScramSha512]);
        assert_eq!(secure.reauth_ms[&Mechanism::ScramSha512], 500);
        assert_eq!(
            secure.tls.as_ref().map(|t| t.keystore.clone()),
            Some(Keystore::PemFile("/keys/secure.pem".into()))
        );
        let sasl = &c.security.listeners["SASL_PLAINTEXT"];
        assert_eq!(sasl.mechanisms, [Mechanism::Plain, Mechanism::ScramSha256]);
        assert_eq!(sasl.reauth_ms[&Mechanism::Plain], 1000);
        assert_eq!(sasl.plain_users["bob"], "bob-secret");
        assert!(sasl.tls.is_none());
        // Used, not ignored, so DescribeConfigs and the start-up line know them.
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);

        let oauth = BrokerConfig::from_props(&props(&[
            ("listeners", "SASL_PLAINTEXT://127.0.0.1:1"),
            ("sasl.enabled.mechanisms", "OAUTHBEARER"),
            (
                "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config",
                "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required \
                 unsecuredValidatorPrincipalClaimName=\"email\";",
            ),
        ]))
        .unwrap();
        let settings = oauth.security.listeners["SASL_PLAINTEXT"]
            .oauth
            .clone()
            .unwrap();
        assert_eq!(
            (settings.principal_claim.as_str(), settings.clock_skew_ms),
            ("email", 0)
        );

        for (props_, needle) in [
            (
                vec![
                    ("listeners", "SASL_PLAINTEXT://127.0.0.1:1"),
                    ("sasl.enabled.mechanisms", "GSSAPI"),
                ],
                "not GSSAPI",
            ),
            (
                vec![
                    ("listeners", "SASL_PLAINTEXT://127.0.0.1:1"),
                    ("sasl.enabled.mechanisms", "OAUTHBEARER"),
                ],
                "oauthbearer.sasl.jaas.config=",
            ),
            (
                vec![
                    ("listeners", "SASL_PLAINTEXT://127.0.0.1:1"),
                    ("sasl.enabled.mechanisms", "OAUTHBEARER"),
                    (
                        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config",
                        "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule \
                         required;",
                    ),
                    (
                        "listener.name.sasl_plaintext.oauthbearer.sasl.server.callback.handler.class",
                        "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler",
                    ),
                ],
                "no validator of signed tokens",
            ),
            (
                vec![
                    ("listeners", "SSL://127.0.0.1:1"),
                    ("ssl.keystore.type", "PEM"),
                ],
                "ssl.keystore.location",
            ),
            (
                vec![
                    ("listeners", "SSL://127.0.0.1:1"),
                    ("ssl.keystore.type", "PEM"),
                    ("ssl.keystore.location", "/k.pem"),
                    ("ssl.client.auth", "required"),
                ],
                "truststore",
            ),
            (
                vec![
                    ("listeners", "SSL://127.0.0.1:1"),
                    ("ssl.keystore.type", "PEM"),
                    ("ssl.keystore.location", "/k.pem"),
                    ("ssl.enabled.protocols", "TLSv1.1"),
                ],
                "not TLSv1.1",
            ),
            (
                vec![
                    ("listeners", "PLAINTEXT://127.0.0.1:1"),
                    ("advertised.listeners", "PLAINTEXT://a:1,OTHER://b:2"),
                    (
                        "listener.security.protocol.map",
                        "PLAINTEXT:PLAINTEXT,OTHER:PLAINTEXT",
                    ),
                ],
                "not in listeners",
            ),
        ] {
            let e = BrokerConfig::from_props(&props(&props_)).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle}: {e}");
        }
    }

    #[test]
    fn known_kafka_properties_are_ignored_and_typos_get_a_suggestion() {
        let c = BrokerConfig::from_props(&props(&[
            ("num.io.threads", "8"),
            ("queued.max.requests", "500"),
            ("num.partitions", "3"),
        ]))
        .unwrap();
        assert_eq!(c.ignored, ["num.io.threads", "queued.max.requests"]);
        assert_eq!(c.num_partitions, 3);
        assert!(!c.explicit.contains_key("num.io.threads"));

        let e = BrokerConfig::from_props(&props(&[("log.retention.hourz", "1")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean 'log.retention.hours'?"),
            "{e}"
        );
        // Ignored Kafka names are suggested too.
        let e = BrokerConfig::from_props(&props(&[("num.network.thread", "3")])).unwrap_err();
        assert!(
            e.to_string()
                .contains("did you mean 'num.network.threads'?"),
            "{e}"
        );
        let e = BrokerConfig::from_props(&props(&[("banana", "1")])).unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
        let e = BrokerConfig::from_props(&props(&[("zookeeper.connect", "h:2181")])).unwrap_err();
        assert!(e.to_string().contains("ZooKeeper"), "{e}");
        // Several mistakes are named together, so one restart fixes them all.
        let e = BrokerConfig::from_props(&props(&[
            ("log.retention.hourz", "1"),
            ("num.partition", "1"),
            ("banana", "1"),
        ]))
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown broker properties 'banana', 'log.retention.hourz' (did you mean \
             'log.retention.hours'?), 'num.partition' (did you mean 'num.partitions'?)"
        );
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn properties_file_syntax() {
        let p = parse_properties("# comment\nnode.id=2\n\nlog.dirs : /tmp/x\n").unwrap();
        assert_eq!(p.get("node.id").unwrap(), "2");
        assert_eq!(p.get("log.dirs").unwrap(), "/tmp/x");
        assert!(parse_properties("just words").is_err());
    }
}
