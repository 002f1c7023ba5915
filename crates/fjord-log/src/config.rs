//! Per-topic log configuration, named and validated as Kafka topic configs.

use crate::LogError;

/// Which timestamp a topic keeps: the producer's or the broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// The topic configs the log itself acts on. Defaults equal Kafka's.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`
    pub segment_bytes: u64,
    /// `segment.ms`
    pub segment_ms: i64,
    /// `retention.ms`; -1 keeps data forever.
    pub retention_ms: i64,
    /// `retention.bytes`; -1 means no size limit.
    pub retention_bytes: i64,
    /// `index.interval.bytes`
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`
    pub segment_index_bytes: u32,
    /// `max.message.bytes`
    pub max_message_bytes: u32,
    /// `message.timestamp.type`
    pub timestamp_type: TimestampType,
    /// `flush.messages`
    pub flush_messages: i64,
    /// `flush.ms`
    pub flush_ms: i64,
    /// Whether `cleanup.policy` includes `compact`: every record then needs a key, and the
    /// log cleaner compacts the log. The policy itself is the broker's to store and
    /// describe.
    pub compact: bool,
    /// `delete.retention.ms`: how long a tombstone stays after it was written.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: records younger than this are never compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: records older than this are compacted whatever the ratio.
    pub max_compaction_lag_ms: i64,
    /// The codec batches are stored in (`compression.type`), `None` for as the producer
    /// sent them. Like `compact`, the broker sets it from the name it stores.
    pub compression: Option<u8>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            segment_index_bytes: 10_485_760,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            compact: false,
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            compression: None,
        }
    }
}

const KEYS: [&str; 14] = [
    "segment.bytes",
    "segment.ms",
    "retention.ms",
    "retention.bytes",
    "index.interval.bytes",
    "segment.index.bytes",
    "max.message.bytes",
    "message.timestamp.type",
    "flush.messages",
    "flush.ms",
    "delete.retention.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
];

fn invalid(key: &str, value: &str, reason: impl Into<String>) -> LogError {
    LogError::InvalidConfig {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Parses a Kafka LONG config with a lower bound, with Kafka's wording for failures.
fn parse_long(key: &str, value: &str, min: i64) -> Result<i64, LogError> {
    let v: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "Not a number of type LONG"))?;
    if v < min {
        return Err(invalid(key, value, format!("Value must be at least {min}")));
    }
    Ok(v)
}

/// Parses a Kafka INT config with a lower bound.
fn parse_int(key: &str, value: &str, min: i32) -> Result<i32, LogError> {
    let v: i32 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "Not a number of type INT"))?;
    if v < min {
        return Err(invalid(key, value, format!("Value must be at least {min}")));
    }
    Ok(v)
}

impl LogConfig {
    /// Sets `key` if the log owns it: `Ok(true)` when set, `Ok(false)` when the key belongs
    /// to someone else, `Err(InvalidConfig)` when the value is bad.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, LogError> {
        match key {
            // Kafka types segment.bytes as INT, so the same bound applies here.
            "segment.bytes" => self.segment_bytes = parse_int(key, value, 14)? as u64,
            "segment.ms" => self.segment_ms = parse_long(key, value, 1)?,
            "retention.ms" => self.retention_ms = parse_long(key, value, -1)?,
            "retention.bytes" => self.retention_bytes = parse_long(key, value, i64::MIN)?,
            "index.interval.bytes" => self.index_interval_bytes = parse_int(key, value, 0)? as u32,
            "segment.index.bytes" => self.segment_index_bytes = parse_int(key, value, 4)? as u32,
            "max.message.bytes" => self.max_message_bytes = parse_int(key, value, 0)? as u32,
            "message.timestamp.type" => {
                self.timestamp_type = match value.trim() {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            "String must be one of: CreateTime, LogAppendTime",
                        ))
                    }
                }
            }
            "flush.messages" => self.flush_messages = parse_long(key, value, 1)?,
            "flush.ms" => self.flush_ms = parse_long(key, value, 0)?,
            "delete.retention.ms" => self.delete_retention_ms = parse_long(key, value, 0)?,
            "min.cleanable.dirty.ratio" => {
                self.min_cleanable_dirty_ratio = match value.trim().parse::<f64>() {
                    Ok(v) if (0.0..=1.0).contains(&v) => v,
                    Ok(v) if v > 1.0 => {
                        return Err(invalid(key, value, "Value must be no more than 1"))
                    }
                    Ok(_) => return Err(invalid(key, value, "Value must be at least 0")),
                    Err(_) => return Err(invalid(key, value, "Not a number of type DOUBLE")),
                }
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = parse_long(key, value, 0)?,
            "max.compaction.lag.ms" => self.max_compaction_lag_ms = parse_long(key, value, 1)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The config names the log owns, with their default values.
    pub fn defaults() -> Vec<(&'static str, String)> {
        let d = LogConfig::default();
        KEYS.iter()
            .filter_map(|k| d.get(k).map(|v| (*k, v)))
            .collect()
    }

    /// The current value of `key` as Kafka would print it, if the log owns it.
    pub fn get(&self, key: &str) -> Option<String> {
        Some(match key {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => self.timestamp_type.as_str().to_string(),
            "flush.messages" => self.flush_messages.to_string(),
            "flush.ms" => self.flush_ms.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka() {
        let d = LogConfig::defaults();
        assert_eq!(d.len(), 14);
        assert!(d.contains(&("min.cleanable.dirty.ratio", "0.5".to_string())));
        assert!(d.contains(&("delete.retention.ms", "86400000".to_string())));
        assert!(d.contains(&("segment.bytes", "1073741824".to_string())));
        assert!(d.contains(&("max.message.bytes", "1048588".to_string())));
        assert!(d.contains(&("message.timestamp.type", "CreateTime".to_string())));
        assert!(d.contains(&("flush.ms", i64::MAX.to_string())));
    }

    #[test]
    fn set_and_get() {
        let mut c = LogConfig::default();
        assert!(c.set("retention.ms", "-1").unwrap());
        assert_eq!(c.retention_ms, -1);
        assert!(c.set("message.timestamp.type", "LogAppendTime").unwrap());
        assert_eq!(c.get("message.timestamp.type").unwrap(), "LogAppendTime");
        assert!(!c.set("cleanup.policy", "compact").unwrap());
        assert_eq!(c.get("cleanup.policy"), None);
    }

    #[test]
    fn rejects_bad_values_with_kafka_wording() {
        let mut c = LogConfig::default();
        let e = c.set("segment.bytes", "abc").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid value abc for configuration segment.bytes: Not a number of type INT"
        );
        let e = c.set("retention.ms", "x").unwrap_err();
        assert!(e.to_string().ends_with("Not a number of type LONG"));
        let e = c.set("segment.bytes", "10").unwrap_err();
        assert!(e.to_string().ends_with("Value must be at least 14"));
        assert!(c.set("message.timestamp.type", "Now").is_err());
        assert_eq!(e.kafka_code(), 40);
        assert_eq!(c, LogConfig::default());
    }
}
