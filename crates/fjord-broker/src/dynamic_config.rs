//! Dynamic configs, as `kafka-configs.sh --alter` sets them: broker configs for one
//! broker (its id) or for every broker (the cluster-wide default, an empty name), and
//! group configs (KIP-848). Both are metadata records, so they survive restarts and are
//! applied on start like any other part of the image.
//!
//! A broker's effective settings follow Kafka's order: its own dynamic configs, then the
//! cluster-wide dynamic default, then `server.properties` and flags, then the built-in
//! default. Only names Kafka itself lets change at runtime are accepted.

use std::collections::BTreeMap;

use fjord_controller::{ConfigResource, MetadataImage};

use crate::config::{BrokerConfig, PropType};
use crate::error::{code, BrokerError};
use crate::group::consumer::ConsumerTimeouts;

/// Broker configs Kafka lets change at runtime (its `DynamicBrokerConfig`). Those Fjord
/// uses take effect at once: the `log.*` topic defaults, `message.max.bytes`,
/// `compression.type`, `min.insync.replicas` and `producer.id.expiration.ms` (partitions
/// pick them up on the next metadata change, which the alteration itself is), and the
/// cleaner's I/O rate, key-map memory and backoff (read before each pass). The others
/// (thread pools, the cleaner's thread count, connection rates) are stored and reported,
/// as Kafka would, and take effect at the next start or not at all.
pub const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    // Topic-level defaults.
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.roll.jitter.ms",
    "log.roll.jitter.hours",
    "log.index.size.max.bytes",
    "log.index.interval.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.retention.bytes",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.segment.delete.delay.ms",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.preallocate",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "log.local.retention.ms",
    "log.local.retention.bytes",
    "message.max.bytes",
    "min.insync.replicas",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "unclean.leader.election.enable",
    // Kafka's per-listener SASL settings for Kerberos and token refresh, which Fjord
    // does not use: stored and reported only.
    "sasl.kerberos.kinit.cmd",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal.to.local.rules",
    "sasl.kerberos.service.name",
    "sasl.kerberos.ticket.renew.jitter",
    "sasl.kerberos.ticket.renew.window.factor",
    "sasl.login.refresh.buffer.seconds",
    "sasl.login.refresh.min.period.seconds",
    "sasl.login.refresh.window.factor",
    "sasl.login.refresh.window.jitter",
    // The log cleaner.
    "log.cleaner.threads",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.backoff.ms",
    // Thread pools.
    "num.io.threads",
    "num.network.threads",
    "num.replica.fetchers",
    "num.recovery.threads.per.data.dir",
    "background.threads",
    // Connections.
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "max.connection.creation.rate",
    // Replication throttles and producer state.
    "leader.replication.throttled.rate",
    "follower.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
    "producer.id.expiration.ms",
];

pub fn is_dynamic_broker_config(name: &str) -> bool {
    DYNAMIC_BROKER_CONFIGS.contains(&name)
}

/// DescribeConfigs' config sources.
pub mod source {
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
    pub const GROUP_CONFIG: i8 = 8;
}

/// The properties a broker runs with: static ones, then the cluster-wide dynamic default,
/// then its own dynamic configs, each overriding the one before.
pub fn effective_props(
    base: &BrokerConfig,
    image: &MetadataImage,
    pending: Option<(&str, &BTreeMap<String, String>)>,
) -> BTreeMap<String, String> {
    let node = base.node_id.to_string();
    let mut props = base.explicit.clone();
    for name in ["", node.as_str()] {
        let dynamic = match pending {
            Some((n, configs)) if n == name => Some(configs),
            _ => image.configs(ConfigResource::Broker, name),
        };
        if let Some(configs) = dynamic {
            props.extend(configs.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    props
}

/// Where a broker config's effective value comes from, with that value.
pub fn broker_source(
    base: &BrokerConfig,
    image: &MetadataImage,
    name: &str,
) -> (i8, Option<String>) {
    let node = base.node_id.to_string();
    let dynamic = |n: &str| {
        image
            .configs(ConfigResource::Broker, n)
            .and_then(|c| c.get(name))
            .cloned()
    };
    if let Some(v) = dynamic(&node) {
        return (source::DYNAMIC_BROKER_CONFIG, Some(v));
    }
    if let Some(v) = dynamic("") {
        return (source::DYNAMIC_DEFAULT_BROKER_CONFIG, Some(v));
    }
    if let Some(v) = base.explicit.get(name) {
        return (source::STATIC_BROKER_CONFIG, Some(v.clone()));
    }
    (source::DEFAULT_CONFIG, base.value_of(name))
}

/// Checks a change to the dynamic configs of broker `name` ("" for the cluster-wide
/// default), as Kafka does: names that cannot change at runtime refuse the whole
/// resource, and the result must still be a valid broker configuration.
pub fn validate_broker_change(
    base: &BrokerConfig,
    image: &MetadataImage,
    name: &str,
    changes: &[(String, Option<String>)],
) -> Result<(), BrokerError> {
    let mut refused: Vec<&str> = changes
        .iter()
        .map(|(k, _)| k.as_str())
        .filter(|k| !is_dynamic_broker_config(k))
        .collect();
    if !refused.is_empty() {
        refused.sort_unstable();
        refused.dedup();
        return Err(BrokerError::Kafka(
            code::INVALID_REQUEST,
            format!(
                "Cannot update these configs dynamically: Set({})",
                refused.join(", ")
            ),
        ));
    }
    let mut proposed = image
        .configs(ConfigResource::Broker, name)
        .cloned()
        .unwrap_or_default();
    for (k, v) in changes {
        match v {
            Some(v) => proposed.insert(k.clone(), v.clone()),
            None => proposed.remove(k),
        };
    }
    let props = effective_props(base, image, Some((name, &proposed)));
    BrokerConfig::from_props(&props)
        .map(|_| ())
        .map_err(|e| BrokerError::Kafka(code::INVALID_REQUEST, e.to_string()))
}

/// Group configs (Kafka's `GroupConfig`): per-group overrides of broker settings.
pub const GROUP_CONFIGS: &[(&str, PropType)] = &[
    ("consumer.session.timeout.ms", PropType::Int),
    ("consumer.heartbeat.interval.ms", PropType::Int),
    ("share.session.timeout.ms", PropType::Int),
    ("share.heartbeat.interval.ms", PropType::Int),
    ("share.record.lock.duration.ms", PropType::Int),
    ("share.auto.offset.reset", PropType::String),
    ("share.isolation.level", PropType::String),
    ("streams.session.timeout.ms", PropType::Int),
    ("streams.heartbeat.interval.ms", PropType::Int),
    ("streams.num.standby.replicas", PropType::Int),
];

/// Kafka's bounds on a group's session and heartbeat (`group.consumer.min/max.*`), widened
/// to include the broker's own setting so that a broker run with shorter timeouts (tests
/// do) can still give a group the broker's value.
const SESSION_BOUNDS: (i64, i64) = (45_000, 60_000);
const HEARTBEAT_BOUNDS: (i64, i64) = (5_000, 15_000);

/// A group config's value when the group does not set it: the broker's.
pub fn group_default(broker: &BrokerConfig, name: &str) -> String {
    match name {
        "consumer.session.timeout.ms" => broker.group_consumer_session_timeout_ms.to_string(),
        "consumer.heartbeat.interval.ms" => broker.group_consumer_heartbeat_interval_ms.to_string(),
        "share.session.timeout.ms" | "streams.session.timeout.ms" => "45000".into(),
        "share.heartbeat.interval.ms" | "streams.heartbeat.interval.ms" => "5000".into(),
        "share.record.lock.duration.ms" => "30000".into(),
        "share.auto.offset.reset" => "latest".into(),
        "share.isolation.level" => "read_uncommitted".into(),
        "streams.num.standby.replicas" => "0".into(),
        _ => String::new(),
    }
}

fn invalid(msg: String) -> BrokerError {
    BrokerError::Kafka(code::INVALID_CONFIG, msg)
}

/// Checks a change to a group's configs: known names, Kafka's types and ranges, and a
/// heartbeat interval shorter than the session timeout.
pub fn validate_group_change(
    broker: &BrokerConfig,
    current: Option<&BTreeMap<String, String>>,
    changes: &[(String, Option<String>)],
) -> Result<(), BrokerError> {
    let mut merged = current.cloned().unwrap_or_default();
    for (k, v) in changes {
        if !GROUP_CONFIGS.iter().any(|(n, _)| n == k) {
            return Err(invalid(format!("Unknown group config name: {k}")));
        }
        match v {
            Some(v) => merged.insert(k.clone(), v.clone()),
            None => merged.remove(k),
        };
    }
    let int = |name: &str| -> Result<i64, BrokerError> {
        let v = merged
            .get(name)
            .cloned()
            .unwrap_or_else(|| group_default(broker, name));
        v.trim().parse::<i32>().map(i64::from).map_err(|_| {
            invalid(format!(
                "Invalid value {v} for configuration {name}: Not a number of type INT"
            ))
        })
    };
    let in_range = |name: &str, (lo, hi): (i64, i64), broker_value: i64| {
        let (lo, hi) = (lo.min(broker_value), hi.max(broker_value));
        let v = int(name)?;
        if v < lo || v > hi {
            return Err(invalid(format!(
                "Invalid value {v} for configuration {name}: Value must be in [{lo}, {hi}]"
            )));
        }
        Ok(v)
    };
    let session = in_range(
        "consumer.session.timeout.ms",
        SESSION_BOUNDS,
        broker.group_consumer_session_timeout_ms as i64,
    )?;
    let heartbeat = in_range(
        "consumer.heartbeat.interval.ms",
        HEARTBEAT_BOUNDS,
        broker.group_consumer_heartbeat_interval_ms as i64,
    )?;
    if heartbeat >= session {
        return Err(invalid(
            "consumer.heartbeat.interval.ms must be less than consumer.session.timeout.ms".into(),
        ));
    }
    for name in [
        "share.session.timeout.ms",
        "share.heartbeat.interval.ms",
        "share.record.lock.duration.ms",
        "streams.session.timeout.ms",
        "streams.heartbeat.interval.ms",
    ] {
        if int(name)? < 1 {
            return Err(invalid(format!(
                "Invalid value {} for configuration {name}: Value must be at least 1",
                int(name)?
            )));
        }
    }
    if int("streams.num.standby.replicas")? < 0 {
        return Err(invalid(
            "Invalid value for configuration streams.num.standby.replicas: Value must be at least 0"
                .into(),
        ));
    }
    if let Some(v) = merged.get("share.auto.offset.reset") {
        let ok = v == "latest" || v == "earliest" || v.starts_with("by_duration:");
        if !ok {
            return Err(invalid(format!(
                "Invalid value {v} for configuration share.auto.offset.reset"
            )));
        }
    }
    if let Some(v) = merged.get("share.isolation.level") {
        if v != "read_committed" && v != "read_uncommitted" {
            return Err(invalid(format!(
                "Invalid value {v} for configuration share.isolation.level: String must be one of: read_committed, read_uncommitted"
            )));
        }
    }
    Ok(())
}

/// A consumer group's timeouts: the broker's, with the group's own configs on top.
pub fn group_timeouts(
    base: ConsumerTimeouts,
    configs: Option<&BTreeMap<String, String>>,
) -> ConsumerTimeouts {
    let get = |k: &str| {
        configs
            .and_then(|c| c.get(k))
            .and_then(|v| v.trim().parse::<i32>().ok())
    };
    ConsumerTimeouts {
        session_ms: get("consumer.session.timeout.ms").map_or(base.session_ms, i64::from),
        heartbeat_ms: get("consumer.heartbeat.interval.ms").unwrap_or(base.heartbeat_ms),
        ..base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(k: &str, v: &str) -> Vec<(String, Option<String>)> {
        vec![(k.to_string(), Some(v.to_string()))]
    }

    #[test]
    fn read_only_broker_configs_are_refused_as_kafka_does() {
        let base = BrokerConfig::default();
        let image = MetadataImage::default();
        let e = validate_broker_change(&base, &image, "1", &change("log.dirs", "/x"))
            .err()
            .map(|e| (e.kafka_code(), e.to_string()));
        assert_eq!(
            e,
            Some((
                code::INVALID_REQUEST,
                "Cannot update these configs dynamically: Set(log.dirs)".to_string()
            ))
        );
        assert!(
            validate_broker_change(&base, &image, "", &change("log.retention.ms", "1000")).is_ok()
        );
        assert!(
            validate_broker_change(&base, &image, "", &change("message.max.bytes", "x")).is_err()
        );
    }

    #[test]
    fn group_configs_are_checked_against_kafkas_ranges() {
        let base = BrokerConfig::default();
        let ok = |k: &str, v: &str| validate_group_change(&base, None, &change(k, v)).is_ok();
        assert!(ok("consumer.session.timeout.ms", "50000"));
        assert!(!ok("consumer.session.timeout.ms", "1000"));
        assert!(!ok("consumer.heartbeat.interval.ms", "100"));
        assert!(!ok("no.such.config", "1"));
        assert!(ok("share.auto.offset.reset", "earliest"));
        let t = group_timeouts(
            ConsumerTimeouts {
                session_ms: 45_000,
                heartbeat_ms: 5_000,
                max_size: 1,
            },
            Some(
                &[(
                    "consumer.session.timeout.ms".to_string(),
                    "50000".to_string(),
                )]
                .into(),
            ),
        );
        assert_eq!((t.session_ms, t.heartbeat_ms), (50_000, 5_000));
    }
}
