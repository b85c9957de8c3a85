//! Topic configs: the Kafka names Braid understands, their defaults, checks, and the log
//! settings they become.

use braid_engine::log::{
    CleanupPolicy, LogConfig, DELETE_RETENTION_MS_DEFAULT, RETENTION_MS_DEFAULT, SEGMENT_BYTES_DEFAULT,
};
use std::collections::BTreeMap;

/// Kafka's default `max.message.bytes`.
pub const MAX_MESSAGE_BYTES_DEFAULT: i64 = 1_048_588;

/// (name, default, kind) of every topic config Kafka documents, all accepted by name; what
/// each does on Braid is in docs/compatibility.md, and the values Braid cannot honour are
/// refused by [`validate`] with the reason.
pub const TOPIC_CONFIGS: &[(&str, &str, ConfigKind)] = &[
    ("cleanup.policy", "delete", ConfigKind::List),
    ("compression.gzip.level", "-1", ConfigKind::Int),
    ("compression.lz4.level", "9", ConfigKind::Int),
    ("compression.type", "producer", ConfigKind::String),
    ("compression.zstd.level", "3", ConfigKind::Int),
    ("delete.retention.ms", "86400000", ConfigKind::Long),
    ("file.delete.delay.ms", "60000", ConfigKind::Long),
    ("flush.messages", "9223372036854775807", ConfigKind::Long),
    ("flush.ms", "9223372036854775807", ConfigKind::Long),
    ("follower.replication.throttled.replicas", "", ConfigKind::List),
    ("index.interval.bytes", "4096", ConfigKind::Int),
    ("leader.replication.throttled.replicas", "", ConfigKind::List),
    ("local.retention.bytes", "-2", ConfigKind::Long),
    ("local.retention.ms", "-2", ConfigKind::Long),
    ("max.compaction.lag.ms", "9223372036854775807", ConfigKind::Long),
    ("max.message.bytes", "1048588", ConfigKind::Int),
    ("message.downconversion.enable", "true", ConfigKind::Boolean),
    ("message.format.version", "3.0-IV1", ConfigKind::String),
    ("message.timestamp.after.max.ms", "9223372036854775807", ConfigKind::Long),
    ("message.timestamp.before.max.ms", "9223372036854775807", ConfigKind::Long),
    ("message.timestamp.difference.max.ms", "9223372036854775807", ConfigKind::Long),
    ("message.timestamp.type", "CreateTime", ConfigKind::String),
    ("min.cleanable.dirty.ratio", "0.5", ConfigKind::Double),
    ("min.compaction.lag.ms", "0", ConfigKind::Long),
    ("min.insync.replicas", "1", ConfigKind::Int),
    ("preallocate", "false", ConfigKind::Boolean),
    ("remote.storage.enable", "false", ConfigKind::Boolean),
    ("retention.bytes", "-1", ConfigKind::Long),
    ("retention.ms", "604800000", ConfigKind::Long),
    ("segment.bytes", "1073741824", ConfigKind::Int),
    ("segment.index.bytes", "10485760", ConfigKind::Int),
    ("segment.jitter.ms", "0", ConfigKind::Long),
    ("segment.ms", "604800000", ConfigKind::Long),
    ("unclean.leader.election.enable", "false", ConfigKind::Boolean),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigKind {
    /// DescribeConfigs' configType.
    pub fn wire_type(self) -> i8 {
        match self {
            ConfigKind::Boolean => 1,
            ConfigKind::String => 2,
            ConfigKind::Int => 3,
            ConfigKind::Long => 5,
            ConfigKind::Double => 6,
            ConfigKind::List => 7,
        }
    }
}

pub fn default_of(name: &str) -> Option<&'static str> {
    TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == name).map(|(_, d, _)| *d)
}

/// The smallest value a numeric config takes (Kafka's validators).
fn minimum(name: &str) -> i64 {
    match name {
        "retention.bytes" | "retention.ms" => -1,
        "local.retention.bytes" | "local.retention.ms" => -2,
        "flush.messages" | "max.compaction.lag.ms" | "min.insync.replicas" | "segment.ms" => 1,
        "segment.bytes" => 14,
        "segment.index.bytes" => 4,
        "compression.gzip.level" => -1,
        "compression.lz4.level" => 1,
        "compression.zstd.level" => -131_072,
        _ => 0,
    }
}

/// Values of configs whose effect on the broker Braid does not have (yet): only the default
/// is taken; anything else is refused with why.
fn unsupported(name: &str, value: &str) -> Option<String> {
    let default = default_of(name)?;
    if value.eq_ignore_ascii_case(default) {
        return None;
    }
    let why = match name {
        "remote.storage.enable" => "Braid has no tiered storage",
        "unclean.leader.election.enable" => "Raft never elects a replica that lacks committed records",
        _ => return None,
    };
    Some(format!("Invalid value {value} for configuration {name}: {why}"))
}

/// Checks one config value; the error says what is wrong in Kafka's words.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some((_, _, kind)) = TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    let invalid = |what: &str| Err(format!("Invalid value {value} for configuration {name}: {what}"));
    match (name, kind) {
        ("cleanup.policy", _) => {
            let ok = value.split(',').map(str::trim).all(|p| p == "delete" || p == "compact");
            if !ok || value.trim().is_empty() {
                return Err(format!("Invalid value {value} for configuration cleanup.policy"));
            }
        }
        ("compression.type", _) if !["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"].contains(&value) => {
            return invalid("String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer");
        }
        ("message.timestamp.type", _) if value != "CreateTime" && value != "LogAppendTime" => {
            return invalid("String must be one of: CreateTime, LogAppendTime");
        }
        (_, ConfigKind::Int) => match value.parse::<i32>() {
            Ok(v) if i64::from(v) >= minimum(name) => {}
            _ => return invalid(&format!("must be an int >= {}", minimum(name))),
        },
        (_, ConfigKind::Long) => match value.parse::<i64>() {
            Ok(v) if v >= minimum(name) => {}
            _ => return invalid(&format!("must be a long >= {}", minimum(name))),
        },
        (_, ConfigKind::Double) => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => {}
            _ => return invalid("must be a double between 0 and 1"),
        },
        (_, ConfigKind::Boolean) if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") => {
            return invalid("Expected value to be either true or false");
        }
        _ => {}
    }
    match unsupported(name, value) {
        Some(why) => Err(why),
        None => Ok(()),
    }
}

fn effective<'a>(overrides: &'a BTreeMap<String, String>, name: &str) -> &'a str {
    overrides.get(name).map(String::as_str).unwrap_or_else(|| default_of(name).expect("known config"))
}

/// The log settings a topic's config overrides give.
pub fn log_config(overrides: &BTreeMap<String, String>) -> LogConfig {
    let policy = effective(overrides, "cleanup.policy");
    let (delete, compact) = (policy.contains("delete"), policy.contains("compact"));
    LogConfig {
        segment_bytes: effective(overrides, "segment.bytes").parse().unwrap_or(SEGMENT_BYTES_DEFAULT),
        retention_bytes: effective(overrides, "retention.bytes").parse().unwrap_or(-1),
        retention_ms: effective(overrides, "retention.ms").parse().unwrap_or(RETENTION_MS_DEFAULT),
        delete_retention_ms: effective(overrides, "delete.retention.ms").parse().unwrap_or(DELETE_RETENTION_MS_DEFAULT),
        index_interval_bytes: effective(overrides, "index.interval.bytes").parse().unwrap_or(4096),
        segment_ms: effective(overrides, "segment.ms").parse().unwrap_or(braid_engine::log::SEGMENT_MS_DEFAULT),
        min_compaction_lag_ms: effective(overrides, "min.compaction.lag.ms").parse().unwrap_or(0),
        segment_jitter_ms: effective(overrides, "segment.jitter.ms").parse().unwrap_or(0),
        cleanup_policy: match (delete, compact) {
            (true, true) => CleanupPolicy::CompactDelete,
            (false, true) => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        },
        ..LogConfig::default()
    }
}

/// How long a record may wait for compaction at most (max.compaction.lag.ms).
pub fn max_compaction_lag_ms(overrides: &BTreeMap<String, String>) -> i64 {
    effective(overrides, "max.compaction.lag.ms").parse().unwrap_or(i64::MAX)
}

/// The share of a compacted log written since its last compaction at which it is compacted
/// again (min.cleanable.dirty.ratio).
pub fn min_cleanable_dirty_ratio(overrides: &BTreeMap<String, String>) -> f64 {
    effective(overrides, "min.cleanable.dirty.ratio").parse().unwrap_or(0.5)
}

/// What a topic's leader does with the batches it is sent: their timestamps
/// (message.timestamp.* configs) and their compression (compression.type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchPolicy {
    /// The batches take the broker's append time (message.timestamp.type=LogAppendTime).
    pub log_append_time: bool,
    /// CreateTime batches are refused INVALID_TIMESTAMP with a timestamp more than this before
    /// the broker's clock (message.timestamp.before.max.ms, or difference.max.ms if smaller)...
    pub before_ms: i64,
    /// ...or more than this after it (message.timestamp.after.max.ms, or difference.max.ms).
    pub after_ms: i64,
    /// The codec batches are stored with (compression.type; None: as the producer sent them).
    pub compression: Option<i16>,
}

pub fn batch_policy(overrides: &BTreeMap<String, String>) -> BatchPolicy {
    let long = |name| effective(overrides, name).parse::<i64>().unwrap_or(i64::MAX);
    let difference = long("message.timestamp.difference.max.ms");
    BatchPolicy {
        log_append_time: effective(overrides, "message.timestamp.type") == "LogAppendTime",
        before_ms: long("message.timestamp.before.max.ms").min(difference),
        after_ms: long("message.timestamp.after.max.ms").min(difference),
        compression: crate::recompress::codec_of(effective(overrides, "compression.type")),
    }
}

pub fn max_message_bytes(overrides: &BTreeMap<String, String>) -> i64 {
    effective(overrides, "max.message.bytes").parse().unwrap_or(MAX_MESSAGE_BYTES_DEFAULT)
}

/// Kafka's topic name rules.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("Topic name {name:?} is illegal"));
    }
    if name.len() > 249 {
        return Err("Topic name is longer than 249 characters".into());
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-') {
        return Err(format!(
            "Topic name {name:?} is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_validate_and_map_to_the_log() {
        assert!(validate("retention.ms", "1000").is_ok());
        assert!(validate("retention.ms", "-2").is_err());
        assert!(validate("segment.bytes", "10").is_err());
        assert!(validate("cleanup.policy", "compact,delete").is_ok());
        assert!(validate("cleanup.policy", "shred").is_err());
        assert!(validate("no.such", "1").is_err());
        assert!(validate("compression.type", "producer").is_ok());
        assert!(validate("compression.type", "lz4").is_ok());
        assert_eq!(
            batch_policy(&BTreeMap::from([("compression.type".to_owned(), "lz4".to_owned())])).compression,
            Some(3)
        );
        assert!(validate("compression.type", "brotli").is_err());
        assert!(validate("min.insync.replicas", "2").is_ok());
        assert!(validate("min.insync.replicas", "0").is_err());
        assert!(validate("min.cleanable.dirty.ratio", "0.2").is_ok());
        assert!(validate("min.cleanable.dirty.ratio", "1.5").is_err());
        assert!(validate("unclean.leader.election.enable", "false").is_ok());
        assert!(validate("unclean.leader.election.enable", "true").is_err());
        assert!(validate("preallocate", "TRUE").is_ok());
        assert!(validate("preallocate", "yes").is_err());
        assert!(validate("message.format.version", "2.8-IV1").is_ok());
        let tuned = BTreeMap::from([("index.interval.bytes".to_owned(), "1024".to_owned())]);
        assert_eq!(log_config(&tuned).index_interval_bytes, 1024);
        let overrides = BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]);
        assert_eq!(log_config(&overrides).cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(log_config(&BTreeMap::new()).retention_ms, 604_800_000);
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name("..").is_err());
    }
}
