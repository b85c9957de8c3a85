//! Topic configs: the Kafka names Braid understands, their defaults, checks, and the log
//! settings they become.

use braid_engine::log::{
    CleanupPolicy, LogConfig, DELETE_RETENTION_MS_DEFAULT, RETENTION_MS_DEFAULT, SEGMENT_BYTES_DEFAULT,
};
use std::collections::BTreeMap;

/// Kafka's default `max.message.bytes`.
pub const MAX_MESSAGE_BYTES_DEFAULT: i64 = 1_048_588;

/// (name, default, kind) of every topic config Braid accepts.
pub const TOPIC_CONFIGS: &[(&str, &str, ConfigKind)] = &[
    ("cleanup.policy", "delete", ConfigKind::List),
    ("delete.retention.ms", "86400000", ConfigKind::Long),
    ("max.message.bytes", "1048588", ConfigKind::Int),
    ("retention.bytes", "-1", ConfigKind::Long),
    ("retention.ms", "604800000", ConfigKind::Long),
    ("segment.bytes", "1073741824", ConfigKind::Int),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Int,
    Long,
    List,
}

impl ConfigKind {
    /// DescribeConfigs' configType.
    pub fn wire_type(self) -> i8 {
        match self {
            ConfigKind::Int => 3,
            ConfigKind::Long => 5,
            ConfigKind::List => 7,
        }
    }
}

pub fn default_of(name: &str) -> Option<&'static str> {
    TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == name).map(|(_, d, _)| *d)
}

/// Checks one config value; the error says what is wrong in Kafka's words.
pub fn validate(name: &str, value: &str) -> Result<(), String> {
    let Some((_, _, kind)) = TOPIC_CONFIGS.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("Unknown topic config name: {name}"));
    };
    match (name, kind) {
        ("cleanup.policy", _) => {
            let ok = value.split(',').map(str::trim).all(|p| p == "delete" || p == "compact");
            if !ok || value.trim().is_empty() {
                return Err(format!("Invalid value {value} for configuration cleanup.policy"));
            }
        }
        ("segment.bytes", _) => match value.parse::<i64>() {
            Ok(v) if (14..=i32::MAX as i64).contains(&v) => {}
            _ => return Err(format!("Invalid value {value} for configuration segment.bytes: must be 14..2147483647")),
        },
        ("delete.retention.ms", _) => match value.parse::<i64>() {
            Ok(v) if v >= 0 => {}
            _ => return Err(format!("Invalid value {value} for configuration delete.retention.ms: must be >= 0")),
        },
        ("max.message.bytes", _) => match value.parse::<i64>() {
            Ok(v) if (0..=i32::MAX as i64).contains(&v) => {}
            _ => return Err(format!("Invalid value {value} for configuration max.message.bytes")),
        },
        (_, ConfigKind::Long) => match value.parse::<i64>() {
            Ok(v) if v >= -1 => {}
            _ => return Err(format!("Invalid value {value} for configuration {name}: must be a long >= -1")),
        },
        _ => {}
    }
    Ok(())
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
        cleanup_policy: match (delete, compact) {
            (true, true) => CleanupPolicy::CompactDelete,
            (false, true) => CleanupPolicy::Compact,
            _ => CleanupPolicy::Delete,
        },
        ..LogConfig::default()
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
        let overrides = BTreeMap::from([("cleanup.policy".to_owned(), "compact".to_owned())]);
        assert_eq!(log_config(&overrides).cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(log_config(&BTreeMap::new()).retention_ms, 604_800_000);
        assert!(validate_topic_name("orders.v1_x-y").is_ok());
        assert!(validate_topic_name("a/b").is_err());
        assert!(validate_topic_name("..").is_err());
    }
}
