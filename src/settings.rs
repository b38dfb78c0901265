//! Layered broker settings: built-in defaults < TOML file (`--config`) < `SHARDLOG_*`
//! environment variables < command-line flags. Keys are Kafka's broker config names where
//! Kafka has one; each effective value remembers where it came from (`shardlog config print`).
//!
//! Invariant: every key in the file and the flags is known and every value parses, or
//! startup fails with an error naming the key and its source. An unknown `SHARDLOG_*`
//! environment variable (a script's own `SHARDLOG_BIN`, say) is not an error but a warning
//! naming it; a known one with a bad value is an error. Nothing is silently ignored.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use crate::config::BrokerConfig;

#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("unknown setting `{key}` ({origin})")]
    Unknown { key: String, origin: Source },
    #[error("invalid value {value:?} for `{key}` ({origin}): {reason}")]
    Invalid {
        key: String,
        value: String,
        origin: Source,
        reason: String,
    },
}

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag(fl) => write!(f, "flag {fl}"),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Everything `serve` runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub broker: BrokerConfig,
    pub log_format: LogFormat,
    pub log_level: String,
}

pub type Apply = fn(&mut Settings, &str) -> Result<(), String>;
pub type Show = fn(&Settings) -> String;

/// Every setting: the broker's ([`KEYS`]) and the security ones.
pub fn keys() -> impl Iterator<Item = &'static (&'static str, &'static str, Apply, Show)> {
    KEYS.iter().chain(crate::security::settings::KEYS.iter())
}

fn num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse::<T>()
        .map_err(|_| format!("expected a number, got {v:?}"))
}

fn positive(v: &str) -> Result<u64, String> {
    match num::<u64>(v)? {
        0 => Err("must be positive".into()),
        n => Ok(n),
    }
}

fn retention(v: &str) -> Result<i64, String> {
    match num::<i64>(v)? {
        n if n >= -1 => Ok(n),
        _ => Err("must be -1 or more".into()),
    }
}

/// A share in [0, 1].
pub fn ratio(v: &str) -> Result<f64, String> {
    match num::<f64>(v)? {
        n if (0.0..=1.0).contains(&n) => Ok(n),
        _ => Err("must be between 0 and 1".into()),
    }
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("expected true or false, got {v:?}")),
    }
}

/// Every setting: key, meaning, how to apply a value, how to show the effective one.
pub const KEYS: &[(&str, &str, Apply, Show)] = &[
    (
        "listen",
        "address of shard 0; shard i uses port + i",
        |s, v| {
            s.broker.listen = v.parse::<SocketAddr>().map_err(|e| e.to_string())?;
            Ok(())
        },
        |s| s.broker.listen.to_string(),
    ),
    (
        "log.dirs",
        "data directory",
        |s, v| {
            s.broker.data_dir = PathBuf::from(v);
            Ok(())
        },
        |s| s.broker.data_dir.display().to_string(),
    ),
    (
        "cores",
        "number of shards, one pinned per core",
        |s, v| {
            s.broker.cores = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.cores.to_string(),
    ),
    (
        "socket.request.max.bytes",
        "largest request frame",
        |s, v| {
            s.broker.max_frame_bytes = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.max_frame_bytes.to_string(),
    ),
    (
        "auto.create.topics.enable",
        "create topics on first use",
        |s, v| {
            s.broker.auto_create_topics = boolean(v)?;
            Ok(())
        },
        |s| s.broker.auto_create_topics.to_string(),
    ),
    (
        "num.partitions",
        "partitions of auto-created topics",
        |s, v| {
            s.broker.default_partitions = positive(v)?.min(10_000) as i32;
            Ok(())
        },
        |s| s.broker.default_partitions.to_string(),
    ),
    (
        "log.segment.bytes",
        "segment size before a roll",
        |s, v| {
            let n = positive(v)?;
            if !(14..=(1 << 30)).contains(&n) {
                return Err("must be in [14, 1073741824]".into());
            }
            s.broker.segment_bytes = n;
            Ok(())
        },
        |s| s.broker.segment_bytes.to_string(),
    ),
    (
        "log.roll.ms",
        "segment age before a roll",
        |s, v| {
            s.broker.segment_ms = positive(v)? as i64;
            Ok(())
        },
        |s| s.broker.segment_ms.to_string(),
    ),
    (
        "message.max.bytes",
        "largest record batch",
        |s, v| {
            s.broker.message_max_bytes = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.message_max_bytes.to_string(),
    ),
    (
        "log.index.interval.bytes",
        "bytes between offset index entries",
        |s, v| {
            s.broker.index_interval_bytes = positive(v)?;
            Ok(())
        },
        |s| s.broker.index_interval_bytes.to_string(),
    ),
    (
        "producer.id.expiration.ms",
        "idempotent-producer state kept after the last write",
        |s, v| {
            s.broker.producer_id_expiration_ms = positive(v)? as i64;
            Ok(())
        },
        |s| s.broker.producer_id_expiration_ms.to_string(),
    ),
    (
        "group.initial.rebalance.delay.ms",
        "wait before an empty group's first rebalance",
        |s, v| {
            s.broker.groups.initial_rebalance_delay = Duration::from_millis(num(v)?);
            Ok(())
        },
        |s| {
            s.broker
                .groups
                .initial_rebalance_delay
                .as_millis()
                .to_string()
        },
    ),
    (
        "group.min.session.timeout.ms",
        "smallest session timeout a consumer may ask for",
        |s, v| {
            s.broker.groups.min_session_timeout = Duration::from_millis(positive(v)?);
            Ok(())
        },
        |s| s.broker.groups.min_session_timeout.as_millis().to_string(),
    ),
    (
        "group.max.session.timeout.ms",
        "largest session timeout a consumer may ask for",
        |s, v| {
            s.broker.groups.max_session_timeout = Duration::from_millis(positive(v)?);
            Ok(())
        },
        |s| s.broker.groups.max_session_timeout.as_millis().to_string(),
    ),
    (
        "transaction.max.timeout.ms",
        "longest transaction timeout a producer may ask for",
        |s, v| {
            s.broker.txns.max_timeout_ms = i32::try_from(positive(v)?).map_err(|e| e.to_string())?;
            Ok(())
        },
        |s| s.broker.txns.max_timeout_ms.to_string(),
    ),
    (
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "how often transactions past their timeout are looked for and aborted",
        |s, v| {
            s.broker.txns.abort_scan_ms = positive(v)? as i64;
            Ok(())
        },
        |s| s.broker.txns.abort_scan_ms.to_string(),
    ),
    (
        "transaction.state.log.replication.factor",
        "replicas of the internal transaction state topic in a cluster, as far as the live nodes allow when it is created",
        |s, v| {
            s.broker.txns.replication_factor = match positive(v)? {
                n @ 1..=16 => n as usize,
                _ => return Err("must be in [1, 16]".to_string()),
            };
            Ok(())
        },
        |s| s.broker.txns.replication_factor.to_string(),
    ),
    (
        "offsets.retention.minutes",
        "offsets of a group empty this long are deleted",
        |s, v| {
            s.broker.groups.offsets_retention = Duration::from_secs(positive(v)? * 60);
            Ok(())
        },
        |s| (s.broker.groups.offsets_retention.as_secs() / 60).to_string(),
    ),
    (
        "ui",
        "the web console on the HTTP port (/ui): read-write, read-only or off",
        |s, v| {
            s.broker.ui = crate::ui::UiMode::parse(v.trim())?;
            Ok(())
        },
        |s| s.broker.ui.name().to_string(),
    ),
    (
        "metrics.listen",
        "HTTP address for /metrics and /health, or off",
        |s, v| {
            s.broker.metrics_listen = match v.trim() {
                "off" => None,
                a => Some(a.parse::<SocketAddr>().map_err(|e| e.to_string())?),
            };
            Ok(())
        },
        |s| {
            s.broker
                .metrics_listen
                .map(|a| a.to_string())
                .unwrap_or_else(|| "off".into())
        },
    ),
    (
        "log.retention.ms",
        "closed segments whose newest record is older are deleted; -1 keeps",
        |s, v| {
            s.broker.retention_ms = retention(v)?;
            Ok(())
        },
        |s| s.broker.retention_ms.to_string(),
    ),
    (
        "log.retention.bytes",
        "oldest closed segments deleted while a partition is larger; -1 no limit",
        |s, v| {
            s.broker.retention_bytes = retention(v)?;
            Ok(())
        },
        |s| s.broker.retention_bytes.to_string(),
    ),
    (
        "log.retention.check.interval.ms",
        "how often each shard applies retention",
        |s, v| {
            s.broker.retention_check_ms = positive(v)?;
            Ok(())
        },
        |s| s.broker.retention_check_ms.to_string(),
    ),
    (
        "log.cleanup.policy",
        "default cleanup.policy of topics: delete, compact or compact,delete",
        |s, v| {
            s.broker.cleanup = v.parse()?;
            Ok(())
        },
        |s| s.broker.cleanup.to_string(),
    ),
    (
        "log.cleaner.backoff.ms",
        "how often each shard looks for logs to compact",
        |s, v| {
            s.broker.cleaner_backoff_ms = positive(v)?;
            Ok(())
        },
        |s| s.broker.cleaner_backoff_ms.to_string(),
    ),
    (
        "log.cleaner.dedupe.buffer.size",
        "key-map memory of the cleaners, shared out among shards",
        |s, v| {
            s.broker.cleaner_dedupe_bytes = positive(v)?;
            Ok(())
        },
        |s| s.broker.cleaner_dedupe_bytes.to_string(),
    ),
    (
        "log.cleaner.delete.retention.ms",
        "tombstones stay this long after their segment's newest record",
        |s, v| {
            s.broker.delete_retention_ms = num::<u32>(v)?.into();
            Ok(())
        },
        |s| s.broker.delete_retention_ms.to_string(),
    ),
    (
        "log.cleaner.min.compaction.lag.ms",
        "segments with a record newer than this are not compacted",
        |s, v| {
            s.broker.min_compaction_lag_ms = num::<u32>(v)?.into();
            Ok(())
        },
        |s| s.broker.min_compaction_lag_ms.to_string(),
    ),
    (
        "log.cleaner.min.cleanable.ratio",
        "share of uncleaned bytes in closed segments before a log is compacted",
        |s, v| {
            s.broker.min_cleanable_ratio = ratio(v)?;
            Ok(())
        },
        |s| s.broker.min_cleanable_ratio.to_string(),
    ),
    (
        "connections.max.idle.ms",
        "close a connection after this long without a byte from its client (Kafka and HTTP ports)",
        |s, v| {
            s.broker.connections_max_idle = Duration::from_millis(positive(v)?);
            Ok(())
        },
        |s| s.broker.connections_max_idle.as_millis().to_string(),
    ),
    (
        "max.connections",
        "open connections per port kind (Kafka, HTTP), all shards; more are closed at accept",
        |s, v| {
            s.broker.max_connections = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.max_connections.to_string(),
    ),
    (
        "max.connections.per.ip",
        "open connections from one client address, per port kind",
        |s, v| {
            s.broker.max_connections_per_ip = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.max_connections_per_ip.to_string(),
    ),
    (
        "queued.max.request.bytes",
        "bytes of requests one shard reads and handles at once (back-pressure past it); at least socket.request.max.bytes",
        |s, v| {
            s.broker.queued_max_request_bytes = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.queued_max_request_bytes.to_string(),
    ),
    (
        "fetch.max.bytes",
        "most record bytes one Fetch reads on each shard it touches, whatever the client asks (at least one batch)",
        |s, v| {
            s.broker.fetch_max_bytes = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.fetch_max_bytes.to_string(),
    ),
    (
        "node.id",
        "this node's id in a cluster (stable across restarts)",
        |s, v| {
            s.broker.node_id = v
                .trim()
                .parse()
                .map_err(|_| format!("expected a non-negative integer, got {v:?}"))?;
            Ok(())
        },
        |s| s.broker.node_id.to_string(),
    ),
    (
        "controller.quorum.voters",
        "the metadata quorum's voters, id@host:port,... (empty: a single node without a quorum)",
        |s, v| {
            crate::cluster::ClusterConfig::parse_voters(v)?;
            s.broker.quorum_voters = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.quorum_voters.clone(),
    ),
    (
        "controller.listener",
        "host:port this node's controller listens on (default: its entry in controller.quorum.voters)",
        |s, v| {
            s.broker.controller_listener = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.controller_listener.clone(),
    ),
    (
        "broker.rack",
        "failure domain of this node, for placing replicas apart (default: the node id)",
        |s, v| {
            s.broker.rack = v.trim().to_string();
            Ok(())
        },
        |s| s.broker.rack.clone(),
    ),
    (
        "controller.quorum.election.timeout.ms",
        "voters that hear nothing from the metadata quorum's leader for about this long elect another",
        |s, v| {
            s.broker.election_timeout_ms = match positive(v)? {
                n @ 200..=60_000 => n,
                _ => return Err("must be in [200, 60000]".to_string()),
            };
            Ok(())
        },
        |s| s.broker.election_timeout_ms.to_string(),
    ),
    (
        "broker.session.timeout.ms",
        "a node whose heartbeats stop for this long is fenced by the controller",
        |s, v| {
            s.broker.session_timeout_ms = positive(v)?;
            Ok(())
        },
        |s| s.broker.session_timeout_ms.to_string(),
    ),
    (
        "replica.lag.time.max.ms",
        "a follower that has not caught up with its leader for this long leaves the ISR",
        |s, v| {
            s.broker.replica_lag_time_max_ms = positive(v)?;
            Ok(())
        },
        |s| s.broker.replica_lag_time_max_ms.to_string(),
    ),
    (
        "default.replication.factor",
        "replicas of a topic created without a replication factor (on distinct nodes)",
        |s, v| {
            s.broker.default_replication_factor = match positive(v)? {
                n @ 1..=16 => n as i16,
                _ => return Err("must be in [1, 16]".to_string()),
            };
            Ok(())
        },
        |s| s.broker.default_replication_factor.to_string(),
    ),
    (
        "offsets.topic.replication.factor",
        "replicas of the internal offsets topic (committed offsets), as far as the live nodes allow when it is created",
        |s, v| {
            s.broker.offsets_replication_factor = match positive(v)? {
                n @ 1..=16 => n as usize,
                _ => return Err("must be in [1, 16]".to_string()),
            };
            Ok(())
        },
        |s| s.broker.offsets_replication_factor.to_string(),
    ),
    (
        "broker.heartbeat.interval.ms",
        "how often a node heartbeats to the controller",
        |s, v| {
            s.broker.heartbeat_interval_ms = positive(v)?;
            Ok(())
        },
        |s| s.broker.heartbeat_interval_ms.to_string(),
    ),
    (
        "fetch.zero.copy",
        "splice large fetch ranges whose pages are cached straight from the segment file to the socket (true), or always read and copy them, checking every batch's CRC (false)",
        |s, v| {
            s.broker.fetch_zero_copy = boolean(v)?;
            Ok(())
        },
        |s| s.broker.fetch_zero_copy.to_string(),
    ),
    (
        "topic.partitions.per.shard",
        "most partitions one shard (core) may own; CreateTopics/CreatePartitions beyond it are refused",
        |s, v| {
            s.broker.partitions_per_shard = positive(v)? as usize;
            Ok(())
        },
        |s| s.broker.partitions_per_shard.to_string(),
    ),
    (
        "storage.min.free.bytes",
        "refuse produce (KAFKA_STORAGE_ERROR) below this much free space on the data directory's file system; 0 turns it off",
        |s, v| {
            s.broker.storage_min_free_bytes = num(v)?;
            Ok(())
        },
        |s| s.broker.storage_min_free_bytes.to_string(),
    ),
    (
        "log.flush.policy",
        "always (acks=all waits for fdatasync, group commit), interval or never",
        |s, v| {
            s.broker.flush = v.parse()?;
            Ok(())
        },
        |s| s.broker.flush.to_string(),
    ),
    (
        "log.flush.interval.ms",
        "longest time written data stays unflushed (always, interval)",
        |s, v| {
            s.broker.flush_ms = positive(v)? as i64;
            Ok(())
        },
        |s| s.broker.flush_ms.to_string(),
    ),
    (
        "log.flush.interval.messages",
        "most records written before a flush (interval)",
        |s, v| {
            s.broker.flush_messages = positive(v)?.min(i64::MAX as u64) as i64;
            Ok(())
        },
        |s| s.broker.flush_messages.to_string(),
    ),
    (
        "log.format",
        "text or json",
        |s, v| {
            s.log_format = match v.trim() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err("expected text or json".into()),
            };
            Ok(())
        },
        |s| match s.log_format {
            LogFormat::Text => "text".into(),
            LogFormat::Json => "json".into(),
        },
    ),
    (
        "log.level",
        "log filter (RUST_LOG syntax; RUST_LOG itself overrides)",
        |s, v| {
            s.log_level = v.trim().to_string();
            Ok(())
        },
        |s| s.log_level.clone(),
    ),
];

/// Command-line flags of `serve` and the setting each sets.
pub const FLAG_KEYS: &[(&str, &str)] = &[
    ("--listen", "listen"),
    ("--data-dir", "log.dirs"),
    ("--cores", "cores"),
    ("--max-frame-bytes", "socket.request.max.bytes"),
    ("--auto-create-topics", "auto.create.topics.enable"),
    ("--num-partitions", "num.partitions"),
    ("--segment-bytes", "log.segment.bytes"),
    ("--segment-ms", "log.roll.ms"),
    ("--message-max-bytes", "message.max.bytes"),
    ("--producer-id-expiration-ms", "producer.id.expiration.ms"),
    (
        "--group-initial-rebalance-delay-ms",
        "group.initial.rebalance.delay.ms",
    ),
    (
        "--group-min-session-timeout-ms",
        "group.min.session.timeout.ms",
    ),
    ("--offsets-retention-minutes", "offsets.retention.minutes"),
    ("--metrics-listen", "metrics.listen"),
    ("--flush", "log.flush.policy"),
    ("--ui", "ui"),
    ("--log-format", "log.format"),
    ("--log", "log.level"),
];

/// The environment variable of a key: `SHARDLOG_` + upper case, dots as underscores.
pub fn env_name(key: &str) -> String {
    format!("SHARDLOG_{}", key.to_uppercase().replace('.', "_"))
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut Vec<(String, String)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        toml::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Effective settings and the source of each.
pub struct Resolved {
    pub settings: Settings,
    pub sources: BTreeMap<&'static str, Source>,
    /// What was ignored, for the caller to log once logging is set up.
    pub warnings: Vec<String>,
}

impl Resolved {
    /// `key = value  # source`, one line per setting.
    pub fn print(&self) -> String {
        let mut out = String::new();
        for (key, help, _, show) in keys() {
            let src = self.sources.get(key).cloned().unwrap_or(Source::Default);
            out.push_str(&format!(
                "{key} = {:?}  # {src}; {help}\n",
                show(&self.settings)
            ));
        }
        out
    }
}

/// Layers defaults, `file`, the environment (`env`) and `flags` (key, value, flag name).
pub fn resolve(
    file: Option<&Path>,
    env: &[(String, String)],
    flags: &[(&'static str, String, &'static str)],
) -> Result<Resolved, SettingsError> {
    let mut r = Resolved {
        settings: Settings {
            broker: BrokerConfig::default(),
            log_format: LogFormat::Text,
            log_level: "info".into(),
        },
        sources: BTreeMap::new(),
        warnings: Vec::new(),
    };
    let set = |r: &mut Resolved, key: &str, value: &str, source: Source| {
        let Some((k, _, apply, _)) = keys().find(|(k, ..)| *k == key) else {
            return Err(SettingsError::Unknown {
                key: key.to_string(),
                origin: source,
            });
        };
        apply(&mut r.settings, value).map_err(|reason| SettingsError::Invalid {
            key: key.to_string(),
            value: value.to_string(),
            origin: source.clone(),
            reason,
        })?;
        r.sources.insert(k, source);
        Ok(())
    };
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let value: toml::Value = toml::from_str(&text).map_err(|e| SettingsError::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut pairs = Vec::new();
        flatten("", &value, &mut pairs);
        for (k, v) in pairs {
            set(&mut r, &k, &v, Source::File(path.to_path_buf()))?;
        }
    }
    for (name, value) in env {
        if !name.starts_with("SHARDLOG_") {
            continue;
        }
        let Some(key) = keys().map(|(k, ..)| *k).find(|k| env_name(k) == *name) else {
            r.warnings.push(format!(
                "ignoring environment variable {name}: not a shardlog setting"
            ));
            continue;
        };
        set(&mut r, key, value, Source::Env(name.clone()))?;
    }
    for (key, value, flag) in flags {
        set(&mut r, key, value, Source::Flag((*flag).to_string()))?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_file_env_flag() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("shardlog.toml");
        std::fs::write(
            &f,
            "num.partitions = 3\nlog.segment.bytes = 1000000\n\"log.format\" = \"json\"\n",
        )
        .expect("write");
        let env = vec![("SHARDLOG_NUM_PARTITIONS".to_string(), "5".to_string())];
        let r = resolve(Some(&f), &env, &[]).expect("resolve");
        assert_eq!(r.settings.broker.default_partitions, 5);
        assert_eq!(r.settings.broker.segment_bytes, 1_000_000);
        assert_eq!(r.settings.log_format, LogFormat::Json);
        let flags = vec![("num.partitions", "7".to_string(), "--num-partitions")];
        let r = resolve(Some(&f), &env, &flags).expect("resolve");
        assert_eq!(r.settings.broker.default_partitions, 7);
        let printed = r.print();
        assert!(
            printed.contains("num.partitions = \"7\"  # flag --num-partitions"),
            "{printed}"
        );
        assert!(
            printed.contains("log.segment.bytes = \"1000000\"  # file"),
            "{printed}"
        );
        assert!(printed.contains("cores = "), "{printed}");
    }

    #[test]
    fn every_flag_sets_a_known_key() {
        for (flag, key) in FLAG_KEYS {
            assert!(
                keys().any(|(k, ..)| k == key),
                "{flag} maps to unknown {key}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, "no.such.key = 1\n").expect("write");
        let e = resolve(Some(&f), &[], &[])
            .err()
            .expect("error")
            .to_string();
        assert!(e.contains("unknown setting `no.such.key`"), "{e}");
        std::fs::write(&f, "log.segment.bytes = \"lots\"\n").expect("write");
        let e = resolve(Some(&f), &[], &[])
            .err()
            .expect("error")
            .to_string();
        assert!(e.contains("log.segment.bytes") && e.contains("lots"), "{e}");
        // An unknown environment variable is a warning; a bad value of a known one fails.
        let env = vec![("SHARDLOG_NOPE".to_string(), "1".to_string())];
        let r = resolve(None, &env, &[]).expect("unknown env var is not fatal");
        assert!(
            r.warnings.iter().any(|w| w.contains("SHARDLOG_NOPE")),
            "{:?}",
            r.warnings
        );
        let env = vec![("SHARDLOG_NUM_PARTITIONS".to_string(), "many".to_string())];
        let e = resolve(None, &env, &[]).err().expect("error").to_string();
        assert!(e.contains("SHARDLOG_NUM_PARTITIONS"), "{e}");
    }
}
