//! Topic configs: which names exist, which values are valid, what their effective value is
//! given the broker's defaults, and how DescribeConfigs reports them.
//!
//! The log owns the configs that change how data is stored (see `fjord_log::LogConfig`);
//! this module adds the ones the broker itself acts on and ties both to their broker-level
//! synonyms (`retention.ms` ← `log.retention.ms`, ...).

use std::collections::BTreeMap;

use fjord_log::LogConfig;

use crate::config::{BrokerConfig, PropType};

/// Every Kafka 4.x topic config: (name, broker property that sets its default — empty when
/// Kafka has none — and type).
pub const TOPIC_CONFIGS: &[(&str, &str, PropType)] = &[
    ("cleanup.policy", "log.cleanup.policy", PropType::List),
    (
        "compression.gzip.level",
        "compression.gzip.level",
        PropType::Int,
    ),
    (
        "compression.lz4.level",
        "compression.lz4.level",
        PropType::Int,
    ),
    ("compression.type", "compression.type", PropType::String),
    (
        "compression.zstd.level",
        "compression.zstd.level",
        PropType::Int,
    ),
    (
        "delete.retention.ms",
        "log.cleaner.delete.retention.ms",
        PropType::Long,
    ),
    (
        "file.delete.delay.ms",
        "log.segment.delete.delay.ms",
        PropType::Long,
    ),
    (
        "flush.messages",
        "log.flush.interval.messages",
        PropType::Long,
    ),
    ("flush.ms", "log.flush.interval.ms", PropType::Long),
    (
        "follower.replication.throttled.replicas",
        "",
        PropType::List,
    ),
    (
        "index.interval.bytes",
        "log.index.interval.bytes",
        PropType::Int,
    ),
    ("leader.replication.throttled.replicas", "", PropType::List),
    (
        "local.retention.bytes",
        "log.local.retention.bytes",
        PropType::Long,
    ),
    (
        "local.retention.ms",
        "log.local.retention.ms",
        PropType::Long,
    ),
    (
        "max.compaction.lag.ms",
        "log.cleaner.max.compaction.lag.ms",
        PropType::Long,
    ),
    ("max.message.bytes", "message.max.bytes", PropType::Int),
    (
        "message.timestamp.after.max.ms",
        "log.message.timestamp.after.max.ms",
        PropType::Long,
    ),
    (
        "message.timestamp.before.max.ms",
        "log.message.timestamp.before.max.ms",
        PropType::Long,
    ),
    (
        "message.timestamp.type",
        "log.message.timestamp.type",
        PropType::String,
    ),
    (
        "min.cleanable.dirty.ratio",
        "log.cleaner.min.cleanable.ratio",
        PropType::Double,
    ),
    (
        "min.compaction.lag.ms",
        "log.cleaner.min.compaction.lag.ms",
        PropType::Long,
    ),
    ("min.insync.replicas", "min.insync.replicas", PropType::Int),
    ("preallocate", "log.preallocate", PropType::Boolean),
    ("remote.log.copy.disable", "", PropType::Boolean),
    ("remote.log.delete.on.disable", "", PropType::Boolean),
    ("remote.storage.enable", "", PropType::Boolean),
    ("retention.bytes", "log.retention.bytes", PropType::Long),
    ("retention.ms", "log.retention.ms", PropType::Long),
    ("segment.bytes", "log.segment.bytes", PropType::Int),
    (
        "segment.index.bytes",
        "log.index.size.max.bytes",
        PropType::Int,
    ),
    ("segment.jitter.ms", "log.roll.jitter.ms", PropType::Long),
    ("segment.ms", "log.roll.ms", PropType::Long),
    (
        "unclean.leader.election.enable",
        "unclean.leader.election.enable",
        PropType::Boolean,
    ),
];

/// Kafka 4's smallest `segment.bytes` (KIP-1030): smaller segments only multiply files.
pub const MIN_SEGMENT_BYTES: i64 = 1024 * 1024;

/// Kafka's defaults for the topic configs the log does not hold (see `LogConfig` for the
/// others). Fjord stores and reports these; the ones for features it does not have yet
/// (compaction, tiered storage, follower throttling) do not change its behaviour.
fn kafka_default(name: &str) -> Option<&'static str> {
    Some(match name {
        "cleanup.policy" => "delete",
        "compression.type" => "producer",
        "compression.gzip.level" => "-1",
        "compression.lz4.level" => "9",
        "compression.zstd.level" => "3",
        "delete.retention.ms" => "86400000",
        "file.delete.delay.ms" => "60000",
        "follower.replication.throttled.replicas" | "leader.replication.throttled.replicas" => "",
        "local.retention.bytes" | "local.retention.ms" => "-2",
        "max.compaction.lag.ms" => "9223372036854775807",
        "message.timestamp.after.max.ms" => "3600000",
        "message.timestamp.before.max.ms" => "9223372036854775807",
        "min.cleanable.dirty.ratio" => "0.5",
        "min.compaction.lag.ms" => "0",
        "min.insync.replicas" => "1",
        "preallocate"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable"
        | "remote.storage.enable"
        | "unclean.leader.election.enable" => "false",
        "segment.jitter.ms" => "0",
        _ => return None,
    })
}

fn invalid(name: &str, value: &str, why: impl std::fmt::Display) -> String {
    format!("Invalid value {value} for configuration {name}: {why}")
}

fn long_at_least(name: &str, value: &str, min: i64) -> Result<(), String> {
    match value.trim().parse::<i64>() {
        Ok(v) if v >= min => Ok(()),
        Ok(_) => Err(invalid(
            name,
            value,
            format!("Value must be at least {min}"),
        )),
        Err(_) => Err(invalid(name, value, "Not a number of type LONG")),
    }
}

fn int_between(name: &str, value: &str, min: i32, max: i32) -> Result<(), String> {
    match value.trim().parse::<i32>() {
        Ok(v) if v < min => Err(invalid(
            name,
            value,
            format!("Value must be at least {min}"),
        )),
        Ok(v) if v > max => Err(invalid(
            name,
            value,
            format!("Value must be no more than {max}"),
        )),
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(name, value, "Not a number of type INT")),
    }
}

fn boolean(name: &str, value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(
            name,
            value,
            "Expected value to be either true or false",
        )),
    }
}

/// `""`, `"*"` or a list of `partition:broker` pairs, as Kafka's throttled-replica lists.
fn throttled_replicas(name: &str, value: &str) -> Result<(), String> {
    let v = value.trim();
    let pair = |p: &str| {
        p.trim().split_once(':').is_some_and(|(a, b)| {
            a.trim().parse::<u32>().is_ok() && b.trim().parse::<u32>().is_ok()
        })
    };
    if v.is_empty() || v == "*" || v.split(',').all(pair) {
        Ok(())
    } else {
        Err(invalid(
            name,
            value,
            "must be empty, the wildcard '*', or a list of partition:broker pairs such as 0:1,1:2",
        ))
    }
}

/// Kafka's DescribeConfigs config_source codes.
pub mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
}

pub fn validate_cleanup_policy(value: &str) -> Result<(), String> {
    let parts: Vec<&str> = value.split(',').map(str::trim).collect();
    if parts.is_empty() || parts.iter().any(|p| *p != "delete" && *p != "compact") {
        return Err(format!(
            "Invalid value {value} for configuration cleanup.policy: String must be one of: compact, delete"
        ));
    }
    Ok(())
}

pub fn validate_compression_type(value: &str) -> Result<(), String> {
    codec_of(value).map(|_| ())
}

/// The codec a `compression.type` stores batches in: `None` for `producer` (as sent).
pub fn codec_of(value: &str) -> Result<Option<u8>, String> {
    Ok(Some(match value.trim() {
        "producer" => return Ok(None),
        "uncompressed" => 0,
        "gzip" => 1,
        "snappy" => 2,
        "lz4" => 3,
        "zstd" => 4,
        _ => {
            return Err(format!(
                "Invalid value {value} for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"
            ))
        }
    }))
}

/// Checks one topic config against Kafka's type and range for it; the error text is what
/// the client shows its user, in Kafka's "Invalid value V for configuration N: why" shape.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match name {
        "cleanup.policy" => validate_cleanup_policy(value),
        "compression.type" => validate_compression_type(value),
        "compression.gzip.level" => {
            // Kafka: -1 (the codec's default) or a level from 1 to 9.
            if value.trim() == "-1" {
                Ok(())
            } else {
                int_between(name, value, 1, 9)
            }
        }
        "compression.lz4.level" => int_between(name, value, 1, 17),
        "compression.zstd.level" => int_between(name, value, -131072, 22),
        "min.insync.replicas" => int_between(name, value, 1, i32::MAX),
        "segment.bytes" => int_between(name, value, MIN_SEGMENT_BYTES as i32, i32::MAX),
        "delete.retention.ms"
        | "file.delete.delay.ms"
        | "min.compaction.lag.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.before.max.ms"
        | "segment.jitter.ms" => long_at_least(name, value, 0),
        "max.compaction.lag.ms" => long_at_least(name, value, 1),
        "local.retention.ms" | "local.retention.bytes" => long_at_least(name, value, -2),
        "min.cleanable.dirty.ratio" => match value.trim().parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            Ok(v) if v > 1.0 => Err(invalid(name, value, "Value must be no more than 1")),
            Ok(_) => Err(invalid(name, value, "Value must be at least 0")),
            Err(_) => Err(invalid(name, value, "Not a number of type DOUBLE")),
        },
        "preallocate"
        | "unclean.leader.election.enable"
        | "remote.log.copy.disable"
        | "remote.log.delete.on.disable" => boolean(name, value).map(|_| ()),
        "remote.storage.enable" => {
            if boolean(name, value)? {
                // As Kafka answers when the broker has no remote storage system.
                Err(format!(
                    "Tiered storage is not available on this broker: topic cannot be configured with remote.storage.enable=true (value {value})"
                ))
            } else {
                Ok(())
            }
        }
        "leader.replication.throttled.replicas" | "follower.replication.throttled.replicas" => {
            throttled_replicas(name, value)
        }
        _ => {
            let mut probe = LogConfig::default();
            match probe.set(name, value) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("Unknown topic config name: {name}")),
                Err(e) => Err(e.to_string()),
            }
        }
    }
}

/// Checks rules that tie several configs together, on a topic's complete set of
/// overrides (after a change is applied), as Kafka checks them.
pub fn validate_combination(overrides: &BTreeMap<String, String>) -> Result<(), String> {
    let long = |k: &str| {
        overrides
            .get(k)
            .map(String::as_str)
            .or_else(|| kafka_default(k))
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    if let (Some(min), Some(max)) = (long("min.compaction.lag.ms"), long("max.compaction.lag.ms")) {
        if max < min {
            return Err(format!(
                "Conflicting topic configs: max.compaction.lag.ms ({max}) is less than min.compaction.lag.ms ({min})"
            ));
        }
    }
    Ok(())
}

/// Whether a topic's effective `cleanup.policy` lets retention delete old segments.
pub fn has_delete_policy(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> bool {
    overrides
        .get("cleanup.policy")
        .unwrap_or(&broker.cleanup_policy)
        .split(',')
        .any(|p| p.trim() == "delete")
}

pub fn is_known(name: &str) -> bool {
    TOPIC_CONFIGS.iter().any(|(n, _, _)| *n == name)
}

/// The log config a topic gets: the broker's defaults with the topic's own settings on top.
pub fn log_config(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
    let mut config = broker.log_defaults.clone();
    for (k, v) in overrides {
        // Values were validated when they were set; a failure would mean an older Fjord
        // accepted something this one does not, and the broker default is the safe answer.
        if let Err(e) = config.set(k, v) {
            tracing::warn!(config = %k, value = %v, error = %e, "ignoring stored topic config");
        }
    }
    config.compact = overrides
        .get("cleanup.policy")
        .unwrap_or(&broker.cleanup_policy)
        .split(',')
        .any(|p| p.trim() == "compact");
    // Validated when set; an unreadable stored value keeps batches as sent.
    config.compression = codec_of(
        overrides
            .get("compression.type")
            .unwrap_or(&broker.compression_type),
    )
    .unwrap_or(None);
    config
}

/// One row of DescribeConfigs for a topic.
pub struct DescribedConfig {
    pub name: &'static str,
    pub value: String,
    pub source: i8,
    pub prop_type: PropType,
    /// The broker-level synonym and its value, when the broker sets one explicitly.
    pub broker_synonym: Option<(&'static str, String)>,
    pub default_value: String,
}

/// Every topic config with its effective value and where that value comes from.
pub fn describe(
    broker: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    let defaults = broker.log_defaults.clone();
    let builtin = LogConfig::default();
    TOPIC_CONFIGS
        .iter()
        .map(|&(name, broker_key, prop_type)| {
            let broker_set = !broker_key.is_empty() && broker.explicit.contains_key(broker_key);
            let default_value = builtin
                .get(name)
                .or_else(|| kafka_default(name).map(String::from))
                .unwrap_or_default();
            let broker_value = match name {
                "cleanup.policy" => broker.cleanup_policy.clone(),
                "compression.type" => broker.compression_type.clone(),
                "min.insync.replicas" => broker.min_insync_replicas.to_string(),
                _ => match defaults.get(name) {
                    Some(v) => v,
                    None if broker_set => {
                        broker.explicit.get(broker_key).cloned().unwrap_or_default()
                    }
                    None => default_value.clone(),
                },
            };
            let (value, source) = match overrides.get(name) {
                Some(v) => (v.clone(), source::DYNAMIC_TOPIC_CONFIG),
                None if broker_set => (broker_value.clone(), source::STATIC_BROKER_CONFIG),
                None => (broker_value.clone(), source::DEFAULT_CONFIG),
            };
            DescribedConfig {
                name,
                value,
                source,
                prop_type,
                broker_synonym: broker_set.then_some((broker_key, broker_value)),
                default_value,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_kafka() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "abc").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert_eq!(
            validate("no.such.thing", "1").unwrap_err(),
            "Unknown topic config name: no.such.thing"
        );
    }

    #[test]
    fn every_kafka_topic_config_is_known_and_checked_to_kafkas_range() {
        for (name, _, _) in TOPIC_CONFIGS {
            let default = LogConfig::default()
                .get(name)
                .or_else(|| kafka_default(name).map(String::from))
                .unwrap_or_else(|| panic!("{name} has no default"));
            assert_eq!(validate(name, &default), Ok(()), "{name}={default}");
        }
        let refused = [
            ("segment.bytes", "14"),
            ("segment.bytes", "1048575"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("min.cleanable.dirty.ratio", "-0.1"),
            ("min.cleanable.dirty.ratio", "NaN"),
            ("min.insync.replicas", "0"),
            ("delete.retention.ms", "-1"),
            ("max.compaction.lag.ms", "0"),
            ("segment.jitter.ms", "-5"),
            ("segment.ms", "0"),
            ("segment.index.bytes", "3"),
            ("local.retention.ms", "-3"),
            ("preallocate", "yes"),
            ("compression.gzip.level", "0"),
            ("compression.zstd.level", "23"),
            ("remote.storage.enable", "true"),
            ("leader.replication.throttled.replicas", "everything"),
            ("message.downconversion.enable", "true"),
        ];
        for (name, value) in refused {
            assert!(validate(name, value).is_err(), "{name}={value} accepted");
        }
        assert_eq!(
            validate("segment.bytes", "14").unwrap_err(),
            "Invalid value 14 for configuration segment.bytes: Value must be at least 1048576"
        );
        assert_eq!(
            validate("min.cleanable.dirty.ratio", "1.5").unwrap_err(),
            "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"
        );
        for (name, value) in [
            ("segment.bytes", "1048576"),
            ("min.cleanable.dirty.ratio", "0"),
            ("min.cleanable.dirty.ratio", "1"),
            ("unclean.leader.election.enable", "TRUE"),
            ("follower.replication.throttled.replicas", "0:1,1:2"),
            ("leader.replication.throttled.replicas", "*"),
            ("compression.gzip.level", "-1"),
            ("local.retention.bytes", "-2"),
        ] {
            assert_eq!(validate(name, value), Ok(()), "{name}={value}");
        }
    }

    #[test]
    fn compaction_lags_must_be_ordered() {
        let mut c = BTreeMap::new();
        c.insert("min.compaction.lag.ms".to_string(), "1000".to_string());
        assert!(validate_combination(&c).is_ok());
        c.insert("max.compaction.lag.ms".to_string(), "999".to_string());
        assert!(validate_combination(&c).is_err());
    }

    #[test]
    fn describe_reports_sources() {
        let broker = BrokerConfig::default();
        let mut overrides = BTreeMap::new();
        overrides.insert("retention.ms".to_string(), "1000".to_string());
        let rows = describe(&broker, &overrides);
        let r = rows.iter().find(|r| r.name == "retention.ms").unwrap();
        assert_eq!(r.value, "1000");
        assert_eq!(r.source, source::DYNAMIC_TOPIC_CONFIG);
        let s = rows.iter().find(|r| r.name == "segment.bytes").unwrap();
        assert_eq!(s.value, "1073741824");
        assert_eq!(s.source, source::DEFAULT_CONFIG);
        assert_eq!(log_config(&broker, &overrides).retention_ms, 1000);
    }

    #[test]
    fn compact_only_topics_are_not_trimmed_by_retention() {
        let broker = BrokerConfig::default();
        let mut overrides = BTreeMap::new();
        assert!(has_delete_policy(&broker, &overrides));
        overrides.insert("cleanup.policy".to_string(), "compact".to_string());
        assert!(!has_delete_policy(&broker, &overrides));
        overrides.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        assert!(has_delete_policy(&broker, &overrides));
    }
}
