//! Dynamic broker settings: the keys an operator may change on a running broker
//! (IncrementalAlterConfigs or AlterConfigs on the broker resource; `shardlog config set`).
//! They are kept with the catalog (`catalog.json` on a single node, the metadata quorum in a
//! cluster), so a change outlives restarts and reaches every node and shard.
//!
//! Invariants:
//! - a dynamic value is checked by the same parser as a static one before it is stored;
//! - the effective value of a key is, highest first: this node's dynamic value, the
//!   cluster-wide dynamic default, the static setting (file, environment, flag), the
//!   built-in default (Kafka's order);
//! - only keys that are re-read when a catalog is applied are dynamic (the topic defaults
//!   each partition log is configured with); any other key is refused with the way to set it,
//!   because nothing would pick a new value up.
//!
//! Knows nothing of shards, the protocol or the quorum.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{keys, LogFormat, Settings};
use crate::config::BrokerConfig;

/// The settings that may change while the broker runs. Each feeds the configuration of
/// every partition log whose topic does not override it.
pub const DYNAMIC_KEYS: &[&str] = &[
    "log.segment.bytes",
    "log.roll.ms",
    "message.max.bytes",
    "log.index.interval.bytes",
    "producer.id.expiration.ms",
    "log.retention.ms",
    "log.retention.bytes",
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.flush.policy",
    "log.flush.interval.ms",
    "log.flush.interval.messages",
];

/// Most dynamic values one scope may hold (there are fewer keys; a bound all the same).
const MAX_VALUE_BYTES: usize = 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DynamicError {
    #[error("unknown broker setting `{0}`")]
    Unknown(String),
    #[error(
        "`{0}` cannot be changed on a running broker: set it in the config file, a SHARDLOG_* \
         variable or a flag, and restart (`shardlog config get` marks the dynamic settings)"
    )]
    ReadOnly(String),
    #[error("invalid value {value:?} for `{key}`: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

/// Which broker entity a dynamic value belongs to (Kafka's `<default>` or one broker id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Cluster,
    Node(u64),
}

impl Scope {
    /// The broker resource name of a DescribeConfigs/AlterConfigs request: empty is the
    /// cluster-wide default, else a node id.
    pub fn parse(resource_name: &str) -> Option<Scope> {
        if resource_name.is_empty() {
            return Some(Scope::Cluster);
        }
        resource_name.parse().ok().map(Scope::Node)
    }
}

/// Where an effective dynamic value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Node,
    Cluster,
}

/// The dynamic values, as stored with the catalog.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicConfigs {
    /// Kafka's `<default>` broker entity: every node.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cluster: BTreeMap<String, String>,
    /// One node's own values, above the cluster's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<u64, BTreeMap<String, String>>,
}

pub fn is_dynamic(key: &str) -> bool {
    DYNAMIC_KEYS.contains(&key)
}

fn scratch(broker: BrokerConfig) -> Settings {
    Settings {
        broker,
        log_format: LogFormat::Text,
        log_level: String::new(),
    }
}

/// Checks that `key` may change at run time and that `value` parses.
pub fn check(key: &str, value: &str) -> Result<(), DynamicError> {
    let Some((_, _, apply, _)) = keys::KEYS.iter().find(|(k, ..)| *k == key) else {
        return Err(if super::keys().any(|(k, ..)| *k == key) {
            DynamicError::ReadOnly(key.to_string())
        } else {
            DynamicError::Unknown(key.to_string())
        });
    };
    if !is_dynamic(key) {
        return Err(DynamicError::ReadOnly(key.to_string()));
    }
    let invalid = |reason: String| DynamicError::Invalid {
        key: key.to_string(),
        value: value.chars().take(64).collect(),
        reason,
    };
    if value.len() > MAX_VALUE_BYTES {
        return Err(invalid(format!("longer than {MAX_VALUE_BYTES} bytes")));
    }
    apply(&mut scratch(BrokerConfig::default()), value).map_err(invalid)
}

impl DynamicConfigs {
    pub fn is_empty(&self) -> bool {
        self.cluster.is_empty() && self.nodes.is_empty()
    }

    /// The values set at `scope` (not inherited ones).
    pub fn at(&self, scope: Scope) -> BTreeMap<String, String> {
        match scope {
            Scope::Cluster => self.cluster.clone(),
            Scope::Node(id) => self.nodes.get(&id).cloned().unwrap_or_default(),
        }
    }

    /// Replaces the values at `scope`.
    pub fn set(&mut self, scope: Scope, values: BTreeMap<String, String>) {
        match scope {
            Scope::Cluster => self.cluster = values,
            Scope::Node(id) if values.is_empty() => {
                self.nodes.remove(&id);
            }
            Scope::Node(id) => {
                self.nodes.insert(id, values);
            }
        }
    }

    /// The dynamic value node `node` runs `key` with, and its layer.
    pub fn lookup(&self, key: &str, node: u64) -> Option<(&str, Layer)> {
        if let Some(v) = self.nodes.get(&node).and_then(|m| m.get(key)) {
            return Some((v, Layer::Node));
        }
        self.cluster.get(key).map(|v| (v.as_str(), Layer::Cluster))
    }

    /// The settings node `node` runs with: `base` (static) under the dynamic values. A value
    /// that no longer parses (stored by another version) is skipped with a warning.
    pub fn effective(&self, base: &BrokerConfig, node: u64) -> BrokerConfig {
        let mut s = scratch(base.clone());
        let node_values = self.nodes.get(&node).into_iter().flatten();
        for (k, v) in self.cluster.iter().chain(node_values) {
            let Some((_, _, apply, _)) = keys::KEYS.iter().find(|(key, ..)| key == k) else {
                continue;
            };
            if !is_dynamic(k) {
                continue;
            }
            if let Err(e) = apply(&mut s, v) {
                tracing::warn!(key = %k, value = %v, "dynamic setting skipped: {e}");
            }
        }
        s.broker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dynamic_key_is_a_setting() {
        for k in DYNAMIC_KEYS {
            assert!(keys::KEYS.iter().any(|(key, ..)| key == k), "{k}");
        }
    }

    #[test]
    fn check_refuses_static_unknown_and_bad_values() {
        assert_eq!(check("log.retention.ms", "1000"), Ok(()));
        assert!(matches!(
            check("cores", "4"),
            Err(DynamicError::ReadOnly(_))
        ));
        assert!(matches!(
            check("listeners", "PLAINTEXT://:1"),
            Err(DynamicError::ReadOnly(_))
        ));
        assert!(matches!(
            check("no.such", "1"),
            Err(DynamicError::Unknown(_))
        ));
        assert!(matches!(
            check("log.retention.ms", "-5"),
            Err(DynamicError::Invalid { .. })
        ));
        assert!(matches!(
            check("log.cleanup.policy", "shred"),
            Err(DynamicError::Invalid { .. })
        ));
    }

    #[test]
    fn node_value_beats_cluster_value_beats_static() {
        let base = BrokerConfig {
            retention_ms: 5,
            segment_bytes: 4096,
            ..BrokerConfig::default()
        };
        let mut d = DynamicConfigs::default();
        d.set(
            Scope::Cluster,
            [("log.retention.ms".to_string(), "100".to_string())].into(),
        );
        d.set(
            Scope::Node(2),
            [("log.retention.ms".to_string(), "200".to_string())].into(),
        );
        assert_eq!(d.effective(&base, 1).retention_ms, 100);
        assert_eq!(d.effective(&base, 2).retention_ms, 200);
        assert_eq!(d.effective(&base, 2).segment_bytes, 4096);
        assert_eq!(d.lookup("log.retention.ms", 2), Some(("200", Layer::Node)));
        assert_eq!(
            d.lookup("log.retention.ms", 1),
            Some(("100", Layer::Cluster))
        );
        d.set(Scope::Node(2), BTreeMap::new());
        assert!(d.nodes.is_empty());
    }
}
