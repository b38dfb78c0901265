//! Broker-wide settings, with Kafka's names and defaults where Kafka has them.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Settings for `shardlog serve`.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Address of shard 0; shard `i` listens on the same host at `port + i`.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Number of shards (executors), one pinned per core.
    pub cores: usize,
    /// `socket.request.max.bytes`: frames larger than this close the connection.
    pub max_frame_bytes: usize,
    /// `auto.create.topics.enable`
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with -1.
    pub default_partitions: i32,
    /// `log.segment.bytes`
    pub segment_bytes: u64,
    /// `log.roll.ms`
    pub segment_ms: i64,
    /// `message.max.bytes`
    pub message_max_bytes: usize,
    /// `log.index.interval.bytes`
    pub index_interval_bytes: u64,
    /// `producer.id.expiration.ms`
    pub producer_id_expiration_ms: i64,
    /// Consumer-group settings.
    pub groups: crate::group::GroupConfig,
    pub txns: crate::txn::TxnConfig,
    /// Where shard 0 serves `/metrics` and `/health` over HTTP (`None`: off).
    pub metrics_listen: Option<SocketAddr>,
    /// `ui`: the web console on the HTTP port.
    pub ui: crate::ui::UiMode,
    /// `schema.registry.enable`: the schema registry's API on the HTTP port.
    pub schema_registry: bool,
    /// `ui.lag.sample.interval.ms`: how often the console's group lag is sampled.
    pub lag_sample_ms: u64,
    /// Flush policy (`--flush`): when appended data is fdatasynced.
    pub flush: crate::log::FlushPolicy,
    /// `log.flush.interval.ms`
    pub flush_ms: i64,
    /// `log.flush.interval.messages`
    pub flush_messages: i64,
    /// `log.retention.ms` (-1: keep forever)
    pub retention_ms: i64,
    /// `log.retention.bytes` (-1: no limit)
    pub retention_bytes: i64,
    /// `log.retention.check.interval.ms`
    pub retention_check_ms: u64,
    /// `log.cleanup.policy`
    pub cleanup: crate::log::CleanupPolicy,
    /// `log.cleaner.backoff.ms`: how often each shard looks for logs to compact.
    pub cleaner_backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size`: key-map memory of all shards' cleaners together.
    pub cleaner_dedupe_bytes: u64,
    /// `log.cleaner.delete.retention.ms`
    pub delete_retention_ms: i64,
    /// `log.cleaner.min.compaction.lag.ms`
    pub min_compaction_lag_ms: i64,
    /// `log.cleaner.min.cleanable.ratio`
    pub min_cleanable_ratio: f64,
    /// `connections.max.idle.ms`: a connection with no bytes from its client for this long
    /// is closed (Kafka and HTTP ports).
    pub connections_max_idle: std::time::Duration,
    /// `max.connections`: open connections of each port kind (Kafka, HTTP), all shards.
    pub max_connections: usize,
    /// `max.connections.per.ip`: open connections from one client address, per port kind.
    pub max_connections_per_ip: usize,
    /// `queued.max.request.bytes`: bytes of request frames one shard reads and handles at
    /// once; never less than `socket.request.max.bytes`.
    pub queued_max_request_bytes: usize,
    /// `storage.min.free.bytes`: produce is refused below this much free space on the data
    /// directory's file system (0: off).
    pub storage_min_free_bytes: u64,
    /// `fetch.max.bytes`: most record bytes one Fetch reads on each shard it touches,
    /// whatever the client asks (at least one batch, KIP-74).
    pub fetch_max_bytes: usize,
    /// `fetch.zero.copy`: large fetch ranges whose pages are cached are spliced from the
    /// segment file to the socket instead of read and copied (and not CRC-checked again).
    pub fetch_zero_copy: bool,
    /// `topic.partitions.per.shard`: most partitions one shard may own.
    pub partitions_per_shard: usize,
    /// Descriptors each shard keeps open for log files (derived from `ulimit -n` at start).
    pub open_files_per_shard: usize,
    /// `node.id`: this node's id in a cluster.
    pub node_id: u64,
    /// `controller.quorum.voters` (`id@host:port,...`); empty: a single node, no quorum.
    pub quorum_voters: String,
    /// `controller.listener`: where this node's controller listens (default: its voter
    /// address).
    pub controller_listener: String,
    /// `broker.rack` (default: the node id).
    pub rack: String,
    /// `broker.session.timeout.ms`
    pub session_timeout_ms: u64,
    /// `controller.quorum.election.timeout.ms`
    pub election_timeout_ms: u64,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `offsets.topic.replication.factor` (capped by the live nodes when the offsets topic
    /// is created)
    pub offsets_replication_factor: usize,
    /// `replica.lag.time.max.ms`
    pub replica_lag_time_max_ms: u64,
    /// `broker.heartbeat.interval.ms`
    pub heartbeat_interval_ms: u64,
    /// Listeners, TLS and SASL.
    pub security: crate::security::settings::SecurityConfig,
}

impl BrokerConfig {
    /// The cluster settings, if `controller.quorum.voters` makes this node part of one.
    pub fn cluster(&self) -> Result<Option<crate::cluster::ClusterConfig>, String> {
        if self.quorum_voters.trim().is_empty() {
            return Ok(None);
        }
        let voters = crate::cluster::ClusterConfig::parse_voters(&self.quorum_voters)?;
        let listener = if self.controller_listener.is_empty() {
            voters.get(&self.node_id).cloned().ok_or_else(|| {
                format!(
                    "node.id {} is not among controller.quorum.voters and no controller.listener is set",
                    self.node_id
                )
            })?
        } else {
            self.controller_listener.clone()
        };
        Ok(Some(crate::cluster::ClusterConfig {
            node_id: self.node_id,
            voters,
            listener,
            rack: if self.rack.is_empty() {
                self.node_id.to_string()
            } else {
                self.rack.clone()
            },
            session_timeout: std::time::Duration::from_millis(self.session_timeout_ms),
            heartbeat_interval: std::time::Duration::from_millis(self.heartbeat_interval_ms),
            election_timeout: std::time::Duration::from_millis(self.election_timeout_ms),
        }))
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            data_dir: PathBuf::from("./shardlog-data"),
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            max_frame_bytes: 104_857_600,
            auto_create_topics: true,
            default_partitions: 1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            message_max_bytes: 1_048_588,
            index_interval_bytes: 4096,
            producer_id_expiration_ms: 24 * 3600 * 1000,
            groups: crate::group::GroupConfig::default(),
            txns: crate::txn::TxnConfig::default(),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            ui: crate::ui::UiMode::ReadWrite,
            schema_registry: true,
            lag_sample_ms: 10_000,
            flush: crate::log::FlushPolicy::Always,
            flush_ms: 1000,
            flush_messages: i64::MAX,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            retention_check_ms: 300_000,
            cleanup: crate::log::CleanupPolicy::DELETE,
            cleaner_backoff_ms: 15_000,
            cleaner_dedupe_bytes: 128 << 20,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            min_cleanable_ratio: 0.5,
            connections_max_idle: std::time::Duration::from_secs(600),
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            queued_max_request_bytes: 256 << 20,
            storage_min_free_bytes: 1 << 30,
            fetch_max_bytes: 57_671_680,
            fetch_zero_copy: true,
            partitions_per_shard: 1000,
            open_files_per_shard: 4096,
            node_id: 0,
            quorum_voters: String::new(),
            controller_listener: String::new(),
            rack: String::new(),
            session_timeout_ms: 9000,
            election_timeout_ms: 1000,
            default_replication_factor: 1,
            offsets_replication_factor: 3,
            replica_lag_time_max_ms: 30_000,
            heartbeat_interval_ms: 1000,
            security: Default::default(),
        }
    }
}

impl BrokerConfig {
    /// The request budget each shard really gets: at least one frame of the largest size.
    pub fn request_budget_bytes(&self) -> usize {
        self.queued_max_request_bytes.max(self.max_frame_bytes)
    }

    /// The address clients reach shard `i` at.
    pub fn shard_addr(&self, i: usize) -> SocketAddr {
        let mut a = self.listen;
        a.set_port(self.listen.port() + i as u16);
        a
    }
}
