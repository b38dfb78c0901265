//! The topic catalog: which topics exist, their ids, partition counts and configs, and which
//! shard owns each partition.
//!
//! Invariant: shard 0 (the controller) is the only writer; it persists every change to
//! `<data-dir>/catalog.json` (write, fsync, rename) before any shard sees it, then hands an
//! immutable copy to every shard. Shards read their own copy and never lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::config::BrokerConfig;
use crate::log::LogConfig;
use crate::settings::dynamic::DynamicConfigs;

#[derive(Debug, Error)]
pub enum CatalogError {
    #[error("catalog I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicMeta {
    pub id: [u8; 16],
    pub partitions: i32,
    /// Topic-level config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
    /// In a cluster: each partition's replicas and leader, from the metadata quorum. Empty
    /// on a single node, where the shard is a hash of topic and partition
    /// ([`Catalog::owner`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placement: Vec<PartitionPlace>,
}

/// One partition's replicas and leadership as the data plane reads them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PartitionPlace {
    /// (node, shard) of each replica, the preferred leader first.
    pub replicas: Vec<(u64, u16)>,
    /// Nodes of the in-sync replicas.
    pub isr: Vec<u64>,
    /// The leader's node, if one leads.
    pub leader: Option<u64>,
    pub leader_epoch: i32,
    /// Bumped by every leader or ISR change (what an ISR change proposal must name).
    #[serde(default)]
    pub partition_epoch: i32,
}

impl PartitionPlace {
    /// The replica on `node`, if it has one: its shard.
    pub fn shard_on(&self, node: u64) -> Option<u16> {
        self.replicas
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, s)| *s)
    }

    /// (node, shard) of the leading replica.
    pub fn leader_replica(&self) -> Option<(u64, u16)> {
        let node = self.leader?;
        Some((node, self.shard_on(node)?))
    }
}

impl From<&crate::cluster::state::PartitionRecord> for PartitionPlace {
    fn from(p: &crate::cluster::state::PartitionRecord) -> Self {
        PartitionPlace {
            replicas: p.replicas.iter().map(|r| (r.node, r.shard)).collect(),
            isr: p.isr.clone(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
        }
    }
}

/// A node of the cluster as the data plane needs it: where its shards listen.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeAddr {
    pub host: String,
    /// Port of shard 0; shard i at `port + i`.
    pub port: u16,
    pub shards: u16,
    /// `broker.rack` of the node (its id when unset).
    pub rack: String,
    /// Not fenced.
    pub live: bool,
    /// (listener name, host, port of shard 0) clients reach the node on.
    pub endpoints: Vec<(String, String, u16)>,
}

/// The cluster around this node, when it is part of one.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMap {
    pub local: u64,
    pub controller: Option<u64>,
    pub nodes: BTreeMap<u64, NodeAddr>,
    /// (node, shard) of each partition of the internal offsets log, i.e. of each group
    /// coordinator (empty until the first FindCoordinator creates it).
    pub groups: Vec<(u64, u16)>,
}

impl ClusterMap {
    /// The broker id and address of shard `shard` of live node `node` on `listener`.
    pub fn broker_on(&self, node: u64, shard: u16, listener: &str) -> Option<(i32, &str, u16)> {
        let n = self.nodes.get(&node).filter(|n| n.live)?;
        let (_, host, port) = n.endpoints.iter().find(|(l, ..)| l == listener)?;
        Some((
            broker_id(node, shard),
            host.as_str(),
            port.saturating_add(shard),
        ))
    }

    /// The broker id and address of shard `shard` of live node `node`.
    pub fn broker(&self, node: u64, shard: u16) -> Option<(i32, &str, u16)> {
        let n = self.nodes.get(&node).filter(|n| n.live)?;
        Some((
            broker_id(node, shard),
            n.host.as_str(),
            n.port.saturating_add(shard),
        ))
    }
}

/// Kafka broker id of shard `shard` of node `node` (each shard is advertised as a broker):
/// stable across restarts, and equal to the shard index on a single node with `node.id` 0.
pub fn broker_id(node: u64, shard: u16) -> i32 {
    (node as i32)
        .saturating_mul(1024)
        .saturating_add(i32::from(shard))
}

/// The (node, shard) a broker id names: the inverse of [`broker_id`].
pub fn node_and_shard(broker: i32) -> (u64, u16) {
    let b = broker.max(0);
    ((b / 1024) as u64, (b % 1024) as u16)
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Catalog {
    pub cluster_id: String,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Set in a cluster (from the metadata quorum); never persisted.
    #[serde(skip)]
    pub cluster: Option<ClusterMap>,
    /// SCRAM credentials (from `security.json` on a single node, the quorum in a cluster).
    #[serde(skip)]
    pub security: Arc<crate::security::store::SecurityState>,
    /// Dynamic broker settings (kept in `catalog.json` on a single node; from the quorum in
    /// a cluster).
    #[serde(default, skip_serializing_if = "DynamicConfigs::is_empty")]
    pub dynamic: DynamicConfigs,
}

const FILE: &str = "catalog.json";

/// Topic configs shardlog understands, with the broker-level default of each.
pub fn topic_config_defaults(cfg: &BrokerConfig) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", cfg.cleanup.to_string()),
        ("delete.retention.ms", cfg.delete_retention_ms.to_string()),
        (
            "min.compaction.lag.ms",
            cfg.min_compaction_lag_ms.to_string(),
        ),
        (
            "min.cleanable.dirty.ratio",
            cfg.min_cleanable_ratio.to_string(),
        ),
        ("retention.ms", cfg.retention_ms.to_string()),
        ("retention.bytes", cfg.retention_bytes.to_string()),
        ("segment.bytes", cfg.segment_bytes.to_string()),
        ("segment.ms", cfg.segment_ms.to_string()),
        ("max.message.bytes", cfg.message_max_bytes.to_string()),
        ("index.interval.bytes", cfg.index_interval_bytes.to_string()),
        ("message.timestamp.type", "CreateTime".into()),
        ("compression.type", "producer".into()),
        ("min.insync.replicas", "1".into()),
        ("flush.policy", cfg.flush.to_string()),
        ("flush.ms", cfg.flush_ms.to_string()),
        ("flush.messages", cfg.flush_messages.to_string()),
        ("schema.validation", "none".into()),
        ("schema.validation.key", "false".into()),
        ("schema.validation.failure", "reject".into()),
        // Empty: `<topic>.dlq`.
        ("dead.letter.topic", String::new()),
    ]
}

/// The broker setting a topic config inherits when the topic does not override it.
pub fn broker_key(topic_key: &str) -> Option<&'static str> {
    Some(match topic_key {
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "max.message.bytes" => "message.max.bytes",
        "index.interval.bytes" => "log.index.interval.bytes",
        "flush.policy" => "log.flush.policy",
        "flush.ms" => "log.flush.interval.ms",
        "flush.messages" => "log.flush.interval.messages",
        _ => return None,
    })
}

/// Checks a topic config override; `Err` says why it is refused.
pub fn validate_topic_config(key: &str, value: &str) -> Result<(), String> {
    let positive = |v: &str| match v.parse::<i64>() {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(format!("{key} must be a positive integer, got {v:?}")),
    };
    match key {
        "segment.bytes" => match value.parse::<i64>() {
            Ok(n) if (14..=(1 << 30)).contains(&n) => Ok(()),
            _ => Err(format!(
                "segment.bytes must be in [14, 1073741824], got {value:?}"
            )),
        },
        "segment.ms"
        | "index.interval.bytes"
        | "max.message.bytes"
        | "flush.ms"
        | "flush.messages" => positive(value),
        "flush.policy" => value.parse::<crate::log::FlushPolicy>().map(|_| ()),
        "retention.ms" | "retention.bytes" => match value.parse::<i64>() {
            Ok(n) if n >= -1 => Ok(()),
            _ => Err(format!("{key} must be -1 or more, got {value:?}")),
        },
        "cleanup.policy" => value.parse::<crate::log::CleanupPolicy>().map(|_| ()),
        "delete.retention.ms" | "min.compaction.lag.ms" => match value.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(()),
            _ => Err(format!("{key} must be 0 or more, got {value:?}")),
        },
        "min.cleanable.dirty.ratio" => crate::settings::ratio(value).map(|_| ()),
        "message.timestamp.type" => match value {
            "CreateTime" => Ok(()),
            _ => Err(format!("message.timestamp.type {value:?} is not supported")),
        },
        "compression.type" => match value {
            "producer" => Ok(()),
            _ => Err("compression.type: only \"producer\" (store as sent) is supported".into()),
        },
        // Effective value: at most the replication factor (as Kafka).
        "min.insync.replicas" => positive(value),
        "schema.validation" => crate::schema::validate::Mode::parse(value)
            .map(|_| ())
            .ok_or_else(|| format!("schema.validation must be none, id or full, got {value:?}")),
        "schema.validation.key" => match value {
            "true" | "false" => Ok(()),
            _ => Err(format!(
                "schema.validation.key must be true or false, got {value:?}"
            )),
        },
        "schema.validation.failure" => match value {
            "reject" | "dead-letter" => Ok(()),
            _ => Err(format!(
                "schema.validation.failure must be reject or dead-letter, got {value:?}"
            )),
        },
        "dead.letter.topic" if value.is_empty() || valid_topic_name(value) => Ok(()),
        "dead.letter.topic" => Err(format!(
            "dead.letter.topic {value:?} is not a valid topic name"
        )),
        _ => Err(format!("unknown topic config {key:?}")),
    }
}

/// Valid Kafka topic name: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

impl Catalog {
    pub fn load_or_create(data_dir: &Path) -> Result<Catalog, CatalogError> {
        let path = data_dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CatalogError::Parse {
                path: path.clone(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let c = Catalog {
                    cluster_id: uuid::Uuid::new_v4().simple().to_string()[..22].to_string(),
                    topics: BTreeMap::new(),
                    cluster: None,
                    security: Default::default(),
                    dynamic: Default::default(),
                };
                c.persist(data_dir)?;
                Ok(c)
            }
            Err(source) => Err(CatalogError::Io { path, source }),
        }
    }

    /// Writes the catalog atomically and durably.
    pub fn persist(&self, data_dir: &Path) -> Result<(), CatalogError> {
        let path = data_dir.join(FILE);
        let io = |source| CatalogError::Io {
            path: path.clone(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| io(std::io::Error::other(e)))?;
        crate::durable::write_atomic(&path, &bytes).map_err(io)
    }

    /// The shard that owns `partition` of `topic` among `shards` shards.
    pub fn owner(topic: &str, partition: i32, shards: usize) -> usize {
        let h = crate::hash::fnv1a(topic);
        ((h as usize).wrapping_add(partition.max(0) as usize)) % shards.max(1)
    }

    /// A partition's placement (in a cluster).
    pub fn place(&self, topic: &str, partition: i32) -> Option<&PartitionPlace> {
        let meta = self.topics.get(topic)?;
        meta.placement.get(usize::try_from(partition).ok()?)
    }

    /// The shard of this node that leads `partition` of `topic` (serves its produce and
    /// fetch); `None` when another node leads it, none does, or it is unknown.
    pub fn locate(&self, topic: &str, partition: i32, shards: usize) -> Option<usize> {
        let Some(cm) = &self.cluster else {
            return Some(Self::owner(topic, partition, shards));
        };
        let (node, shard) = self.place(topic, partition)?.leader_replica()?;
        (node == cm.local && usize::from(shard) < shards).then_some(usize::from(shard))
    }

    /// The shard of this node that holds a replica of `partition` of `topic` (leader or
    /// not): the shard that keeps its log open.
    pub fn hosted(&self, topic: &str, partition: i32, shards: usize) -> Option<usize> {
        let Some(cm) = &self.cluster else {
            return Some(Self::owner(topic, partition, shards));
        };
        let shard = usize::from(self.place(topic, partition)?.shard_on(cm.local)?);
        (shard < shards).then_some(shard)
    }

    /// The broker (node and shard) leading `partition` of `topic` for Metadata: `None`
    /// when none leads or its node is fenced.
    pub fn leader(&self, topic: &str, partition: i32, shards: usize) -> Option<i32> {
        let Some(cm) = &self.cluster else {
            return Some(Self::owner(topic, partition, shards) as i32);
        };
        let (node, shard) = self.place(topic, partition)?.leader_replica()?;
        cm.nodes
            .get(&node)
            .filter(|n| n.live)
            .map(|_| broker_id(node, shard))
    }

    /// [`Catalog::leader`] with the partition's leader epoch.
    pub fn leader_and_epoch(
        &self,
        topic: &str,
        partition: i32,
        shards: usize,
    ) -> Option<(i32, i32)> {
        let leader = self.leader(topic, partition, shards)?;
        let epoch = self.place(topic, partition).map_or(0, |p| p.leader_epoch);
        Some((leader, epoch))
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<&str> {
        self.topics
            .iter()
            .find(|(_, m)| &m.id == id)
            .map(|(n, _)| n.as_str())
    }
}

/// Directory of one partition's log.
pub fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join("topics").join(format!("{topic}-{partition}"))
}

/// The effective log settings of a topic: its overrides on top of the broker's defaults.
pub fn log_config(cfg: &BrokerConfig, meta: &TopicMeta) -> LogConfig {
    fn parsed<T: std::str::FromStr>(meta: &TopicMeta, key: &str) -> Option<T> {
        meta.configs.get(key).and_then(|v| v.parse().ok())
    }
    LogConfig {
        segment_bytes: parsed(meta, "segment.bytes").unwrap_or(cfg.segment_bytes),
        segment_ms: parsed(meta, "segment.ms").unwrap_or(cfg.segment_ms),
        index_interval_bytes: parsed(meta, "index.interval.bytes")
            .unwrap_or(cfg.index_interval_bytes),
        max_batch_bytes: parsed(meta, "max.message.bytes").unwrap_or(cfg.message_max_bytes),
        producer_expiration_ms: cfg.producer_id_expiration_ms,
        flush: parsed(meta, "flush.policy").unwrap_or(cfg.flush),
        flush_ms: parsed(meta, "flush.ms").unwrap_or(cfg.flush_ms),
        flush_messages: parsed(meta, "flush.messages").unwrap_or(cfg.flush_messages),
        retention_ms: parsed(meta, "retention.ms").unwrap_or(cfg.retention_ms),
        retention_bytes: parsed(meta, "retention.bytes").unwrap_or(cfg.retention_bytes),
        cleanup: parsed(meta, "cleanup.policy").unwrap_or(cfg.cleanup),
        delete_retention_ms: parsed(meta, "delete.retention.ms").unwrap_or(cfg.delete_retention_ms),
        min_compaction_lag_ms: parsed(meta, "min.compaction.lag.ms")
            .unwrap_or(cfg.min_compaction_lag_ms),
        min_cleanable_dirty_ratio: parsed(meta, "min.cleanable.dirty.ratio")
            .unwrap_or(cfg.min_cleanable_ratio),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_is_stable_and_spreads() {
        let owners: Vec<usize> = (0..8).map(|p| Catalog::owner("events", p, 2)).collect();
        assert_eq!(
            owners,
            (0..8)
                .map(|p| Catalog::owner("events", p, 2))
                .collect::<Vec<_>>()
        );
        assert_eq!(owners.iter().filter(|&&o| o == 0).count(), 4);
    }

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("a.b_c-1"));
        assert!(!valid_topic_name("../etc"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name(&"x".repeat(250)));
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Catalog::load_or_create(dir.path()).expect("create");
        c.topics.insert(
            "t".into(),
            TopicMeta {
                id: [7; 16],
                partitions: 3,
                configs: BTreeMap::new(),
                placement: Vec::new(),
            },
        );
        c.persist(dir.path()).expect("persist");
        assert_eq!(Catalog::load_or_create(dir.path()).expect("load"), c);
    }
}
