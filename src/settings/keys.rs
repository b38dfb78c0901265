//! The table of broker settings: each key's meaning, how a value is parsed into
//! [`Settings`], and how the effective value is shown. Parsing lives here so that a value is
//! checked the same way whether it comes from the file, the environment, a flag or a dynamic
//! change (`dynamic`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{Apply, LogFormat, Show};

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
        "ui.lag.sample.interval.ms",
        "how often the broker samples every group's lag for the console's chart (kept 30 samples)",
        |s, v| {
            s.broker.lag_sample_ms = positive(v)?;
            Ok(())
        },
        |s| s.broker.lag_sample_ms.to_string(),
    ),
    (
        "schema.registry.enable",
        "the schema registry's REST API on the HTTP port (/subjects, /schemas, /config, ...)",
        |s, v| {
            s.broker.schema_registry = boolean(v)?;
            Ok(())
        },
        |s| s.broker.schema_registry.to_string(),
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
