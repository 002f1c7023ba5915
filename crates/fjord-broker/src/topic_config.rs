//! Topic configs: which names exist, which values are valid, what their effective value is
//! given the broker's defaults, and how DescribeConfigs reports them.
//!
//! The log owns the configs that change how data is stored (see `fjord_log::LogConfig`);
//! this module adds the ones the broker itself acts on and ties both to their broker-level
//! synonyms (`retention.ms` ← `log.retention.ms`, ...).

use std::collections::BTreeMap;

use fjord_log::LogConfig;

use crate::config::{BrokerConfig, PropType};

/// (topic config name, broker property that sets its default, type).
pub const TOPIC_CONFIGS: &[(&str, &str, PropType)] = &[
    ("cleanup.policy", "log.cleanup.policy", PropType::List),
    ("compression.type", "compression.type", PropType::String),
    (
        "flush.messages",
        "log.flush.interval.messages",
        PropType::Long,
    ),
    ("flush.ms", "log.flush.interval.ms", PropType::Long),
    (
        "index.interval.bytes",
        "log.index.interval.bytes",
        PropType::Int,
    ),
    ("max.message.bytes", "message.max.bytes", PropType::Int),
    (
        "message.timestamp.type",
        "log.message.timestamp.type",
        PropType::String,
    ),
    ("min.insync.replicas", "min.insync.replicas", PropType::Int),
    ("retention.bytes", "log.retention.bytes", PropType::Long),
    ("retention.ms", "log.retention.ms", PropType::Long),
    ("segment.bytes", "log.segment.bytes", PropType::Int),
    (
        "segment.index.bytes",
        "log.index.size.max.bytes",
        PropType::Int,
    ),
    ("segment.ms", "log.roll.ms", PropType::Long),
];

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
    match value {
        "producer" => Ok(()),
        "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Err(format!(
            "compression.type={value} is not supported yet: Fjord stores batches as the producer compressed them (compression.type=producer)"
        )),
        _ => Err(format!(
            "Invalid value {value} for configuration compression.type: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer"
        )),
    }
}

/// Checks one topic config; the error text is what the client shows its user.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    match name {
        "cleanup.policy" => validate_cleanup_policy(value),
        "compression.type" => validate_compression_type(value),
        "min.insync.replicas" => match value.parse::<i32>() {
            Ok(v) if v >= 1 => Ok(()),
            _ => Err(format!(
                "Invalid value {value} for configuration min.insync.replicas: Value must be at least 1"
            )),
        },
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
            let broker_value = match name {
                "cleanup.policy" => broker.cleanup_policy.clone(),
                "compression.type" => broker.compression_type.clone(),
                "min.insync.replicas" => broker.min_insync_replicas.to_string(),
                _ => defaults.get(name).unwrap_or_default(),
            };
            let default_value = match name {
                "cleanup.policy" => "delete".to_string(),
                "compression.type" => "producer".to_string(),
                "min.insync.replicas" => "1".to_string(),
                _ => builtin.get(name).unwrap_or_default(),
            };
            let broker_set = broker.explicit.contains_key(broker_key);
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
