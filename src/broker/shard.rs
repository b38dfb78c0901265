//! A shard: one executor pinned to one core, owning a disjoint set of partitions and the
//! logs behind them, plus its copy of the topic catalog and its links to the other shards.
//!
//! Invariants: only this shard touches the logs in `logs`; state lives in `RefCell`s that are
//! never borrowed across an `.await`; cross-shard work travels as plain-data messages over
//! bounded channels, never as shared memory.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ahash::RandomState;
use futures::channel::oneshot;
use futures::StreamExt;
use glommio::channels::shared_channel::ConnectedSender;
use tracing::{error, info, warn};

use super::catalog::{log_config, partition_dir, Catalog};
use super::router::{Call, Envelope, Reply};
use crate::config::BrokerConfig;
use crate::log::Log;
use crate::notify::Notify;

pub type PartitionKey = (String, i32);

/// Logs opened (at start, on a new catalog) or synced (at shutdown) at once.
const OPEN_CONCURRENCY: usize = 32;
/// Background flushes (fdatasync) in flight at once per shard.
const FLUSH_CONCURRENCY: usize = 16;

pub struct Shard {
    pub id: usize,
    /// The control plane's view of the cluster (read-only here; empty for a single node).
    pub cluster: crate::cluster::ClusterView,
    /// Proposes topic changes to the metadata quorum (in a cluster only).
    pub proposer: Option<crate::cluster::Proposer>,
    /// This shard asked the quorum to place the group coordinators (in a cluster).
    /// Internal topics (coordinators) this shard asked the quorum to place, not yet done.
    /// Idle connections to other nodes' brokers for transaction markers.
    pub marker_conns: RefCell<HashMap<(u64, u16), Vec<crate::runtime::Conn>>>,
    pub placements_requested: RefCell<std::collections::HashSet<&'static str>>,
    /// Follower progress (partitions led here) and fetchers (partitions followed here).
    pub replication: crate::replication::ShardReplication,
    pub nshards: usize,
    /// The static settings (file, environment, flags).
    pub cfg: Arc<BrokerConfig>,
    /// `cfg` under the catalog's dynamic settings, recomputed with each catalog.
    effective: RefCell<Arc<BrokerConfig>>,
    catalog: RefCell<Arc<Catalog>>,
    logs: RefCell<HashMap<PartitionKey, Log, RandomState>>,
    /// Fired after any append on this shard: wakes long-polling fetches.
    pub data_arrived: Notify,
    /// `peers[j]`: channel to shard j (`None` for this shard).
    peers: Vec<Option<ConnectedSender<Envelope>>>,
    pub stopping: Cell<bool>,
    /// Serialises catalog changes on the controller (admin path only, never data).
    pub admin_lock: futures::lock::Mutex<()>,
    /// Open client connections on this shard.
    pub connections: Cell<usize>,
    /// Producer id allocator (used on the controller only).
    pub producer_ids: super::producer_id::Allocator,
    /// Coordinator of the consumer groups placed on this shard.
    pub groups: crate::group::coordinator::Coordinator,
    /// Coordinator of the transactional ids placed on this shard.
    pub txns: crate::txn::coordinator::TxnCoordinator,
    /// This shard's counters.
    pub metrics: crate::metrics::ShardMetrics,
    /// The broker shut down cleanly last time: logs opened at startup skip the full scan.
    pub clean_start: Cell<bool>,
    /// Requests being handled right now (shutdown waits for them).
    pub in_flight: Cell<usize>,
    /// Bytes held by connection read buffers on this shard.
    pub read_buffer_bytes: Cell<usize>,
    /// `queued.max.request.bytes`: bytes of requests this shard reads and handles at once.
    pub request_budget: super::limits::RequestBudget,
    /// This shard's view of the data directory's free space (`storage.min.free.bytes`).
    pub disk: super::disk_space::DiskSpace,
    /// Connection limits of the Kafka port and the HTTP port (shared by all shards).
    pub kafka_conns: Arc<super::limits::ConnLimits>,
    pub http_conns: Arc<super::limits::ConnLimits>,
    /// Listeners, TLS and SASL settings (shared by all shards).
    pub security: Arc<crate::security::settings::Resolved>,
    /// The schema registry (one per process).
    pub registry: Arc<crate::schema::store::Registry>,
    /// The console's samples of group lag (one per process).
    pub lag_history: Arc<crate::ui::lag_history::LagHistory>,
    /// This shard's copy of the registry's snapshot and its generation (`schema_check`).
    pub schema_snapshot: RefCell<(u64, Arc<crate::schema::validate::Snapshot>)>,
    /// The compaction task is running.
    cleaning: Cell<bool>,
    /// A background flush pass is running.
    flushing: Cell<bool>,
}

impl Shard {
    pub fn new(
        id: usize,
        cfg: Arc<BrokerConfig>,
        catalog: Arc<Catalog>,
        peers: Vec<Option<ConnectedSender<Envelope>>>,
        (groups, txns): (
            crate::group::coordinator::Coordinator,
            crate::txn::coordinator::TxnCoordinator,
        ),
        conns: [Arc<super::limits::ConnLimits>; 2],
        security: Arc<crate::security::settings::Resolved>,
    ) -> Shard {
        let [kafka_conns, http_conns] = conns;
        Shard {
            cluster: Default::default(),
            proposer: None,
            placements_requested: Default::default(),
            marker_conns: Default::default(),
            replication: Default::default(),
            request_budget: super::limits::RequestBudget::new(cfg.request_budget_bytes()),
            disk: super::disk_space::DiskSpace::new(cfg.storage_min_free_bytes, cfg.cores, id == 0),
            kafka_conns,
            http_conns,
            id,
            nshards: cfg.cores,
            effective: RefCell::new(cfg.clone()),
            cfg,
            catalog: RefCell::new(catalog),
            logs: RefCell::new(HashMap::default()),
            data_arrived: Notify::new(),
            peers,
            stopping: Cell::new(false),
            admin_lock: futures::lock::Mutex::new(()),
            connections: Cell::new(0),
            producer_ids: Default::default(),
            groups,
            txns,
            metrics: Default::default(),
            clean_start: Cell::new(false),
            in_flight: Cell::new(0),
            read_buffer_bytes: Cell::new(0),
            security,
            registry: Default::default(),
            lag_history: Default::default(),
            schema_snapshot: RefCell::new((u64::MAX, Default::default())),
            cleaning: Cell::new(false),
            flushing: Cell::new(false),
        }
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// The shard of this node that owns the partition; `None` if another node does.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<usize> {
        self.catalog().locate(topic, partition, self.nshards)
    }

    /// The log of a partition this shard owns.
    pub fn log(&self, topic: &str, partition: i32) -> Option<Log> {
        self.logs
            .borrow()
            .get(&(topic.to_string(), partition))
            .cloned()
    }

    pub fn open_logs(&self) -> Vec<(PartitionKey, Log)> {
        self.logs
            .borrow()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The settings in force: the static ones under the dynamic ones.
    pub fn settings(&self) -> Arc<BrokerConfig> {
        self.effective.borrow().clone()
    }

    /// Sends `call` to shard `to` and waits for its reply.
    pub async fn call(&self, to: usize, call: Call) -> Option<Reply> {
        self.send(to, call).await?.await.ok()
    }

    /// Puts `call` on the channel to shard `to` (calls on one channel are served in the
    /// order sent); the receiver yields the reply.
    pub async fn send(&self, to: usize, call: Call) -> Option<oneshot::Receiver<Reply>> {
        let Some(Some(tx)) = self.peers.get(to) else {
            error!(shard = self.id, to, "no channel to shard");
            return None;
        };
        self.metrics
            .router_calls
            .set(self.metrics.router_calls.get() + 1);
        let (reply, rx) = oneshot::channel();
        if tx.send(Envelope { call, reply }).await.is_err() {
            warn!(shard = self.id, to, "shard channel closed");
            return None;
        }
        Some(rx)
    }

    /// Installs a new catalog: opens logs of partitions this shard owns that are new, closes
    /// and deletes logs of topics that are gone.
    pub async fn apply_catalog(self: &Rc<Self>, catalog: Arc<Catalog>) -> Vec<(String, String)> {
        let mut failed = Vec::new();
        let effective = if catalog.dynamic.is_empty() {
            self.cfg.clone()
        } else {
            Arc::new(catalog.dynamic.effective(&self.cfg, self.cfg.node_id))
        };
        *self.effective.borrow_mut() = effective.clone();
        let wanted: Vec<(PartitionKey, crate::log::LogConfig)> = catalog
            .topics
            .iter()
            .flat_map(|(name, meta)| {
                let lc = log_config(&effective, meta);
                (0..meta.partitions)
                    .filter(|p| catalog.hosted(name, *p, self.nshards) == Some(self.id))
                    .map(move |p| ((name.clone(), p), lc.clone()))
            })
            .collect();
        // Drop logs whose topic was deleted (or recreated with a new id), and in a cluster
        // replicas moved off this shard (a completed reassignment).
        let old = self.catalog();
        let gone: Vec<PartitionKey> = self
            .logs
            .borrow()
            .keys()
            .filter(|(t, p)| match (old.topics.get(t), catalog.topics.get(t)) {
                (_, None) => true,
                (Some(a), Some(b)) if a.id != b.id => true,
                (Some(_), Some(_)) => {
                    catalog.cluster.is_some()
                        && catalog.place(t, *p).is_some()
                        && catalog.hosted(t, *p, self.nshards) != Some(self.id)
                }
                (None, Some(_)) => false,
            })
            .cloned()
            .collect();
        for key in gone {
            let log = self.logs.borrow_mut().remove(&key);
            if let Some(log) = log {
                let dir = log.dir().to_path_buf();
                log.close();
                drop(log);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    warn!(dir = %dir.display(), "could not delete partition directory: {e}");
                } else {
                    info!(topic = %key.0, partition = key.1, "deleted partition");
                }
            }
        }
        *self.catalog.borrow_mut() = catalog;
        let mut to_open = Vec::new();
        for (key, lc) in wanted {
            match self.log(&key.0, key.1) {
                Some(log) => log.set_config(lc),
                None => to_open.push((key, lc)),
            }
        }
        // Opened OPEN_CONCURRENCY at a time: thousands of partitions start in seconds, and
        // the descriptor cache bounds what they hold.
        let clean = self.clean_start.get();
        let opened = futures::stream::iter(to_open.into_iter().map(|(key, lc)| async move {
            let dir = partition_dir(&self.cfg.data_dir, &key.0, key.1);
            let r = Log::open_with(&dir, lc, clean).await;
            (key, dir, r)
        }))
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
        for (key, dir, r) in opened {
            match r {
                Ok((log, report)) => {
                    for line in report {
                        info!(topic = %key.0, partition = key.1, "recovery: {line}");
                    }
                    self.logs.borrow_mut().insert(key, log);
                }
                Err(e) => {
                    error!(
                        topic = %key.0, partition = key.1, dir = %dir.display(),
                        "cannot open partition log: {e}"
                    );
                    failed.push((key.0.clone(), format!("{}: {e}", key.1)));
                }
            }
        }
        // The partitions this shard leads stamp their leader epoch on what they append.
        let catalog = self.catalog();
        if catalog.cluster.is_some() {
            for ((t, p), log) in self.open_logs() {
                if catalog.locate(&t, p, self.nshards) == Some(self.id) {
                    if let Some(place) = catalog.place(&t, p) {
                        log.set_leader_epoch(place.leader_epoch);
                    }
                }
            }
        }
        crate::replication::on_catalog(self);
        // In a cluster, the group coordinators of the offsets partitions this shard leads.
        if catalog.cluster.is_some() {
            self.lead_groups(&catalog, clean);
            self.lead_txns(&catalog);
        }
        failed
    }

    /// Hands the coordinator the offsets partitions this shard leads now; those it did not
    /// lead at this epoch are loaded in tasks of their own.
    fn lead_groups(self: &Rc<Self>, catalog: &Catalog, clean: bool) {
        use crate::group::{OFFSETS_PARTITIONS, OFFSETS_TOPIC};
        let led: Vec<(i32, i32, Log)> = (0..OFFSETS_PARTITIONS)
            .filter(|p| catalog.locate(OFFSETS_TOPIC, *p, self.nshards) == Some(self.id))
            .filter_map(|p| {
                let epoch = catalog.place(OFFSETS_TOPIC, p)?.leader_epoch;
                Some((p, epoch, self.log(OFFSETS_TOPIC, p)?))
            })
            .collect();
        for (p, epoch, log) in self.groups.lead(&led) {
            let shard = self.clone();
            crate::runtime::spawn_local(async move {
                let dir = shard.cfg.data_dir.clone();
                shard.groups.load(&dir, p, epoch, log, clean).await;
            });
        }
    }

    /// Hands the transaction coordinator the `__transaction_state` partitions this shard
    /// leads now; those it did not lead at this epoch are loaded in tasks of their own.
    fn lead_txns(self: &Rc<Self>, catalog: &Catalog) {
        use crate::txn::{TXN_PARTITIONS, TXN_TOPIC};
        let led: Vec<(i32, i32, Log)> = (0..TXN_PARTITIONS)
            .filter(|p| catalog.locate(TXN_TOPIC, *p, self.nshards) == Some(self.id))
            .filter_map(|p| {
                let epoch = catalog.place(TXN_TOPIC, p)?.leader_epoch;
                Some((p, epoch, self.log(TXN_TOPIC, p)?))
            })
            .collect();
        for (p, epoch, log) in self.txns.lead(&led) {
            let shard = self.clone();
            crate::runtime::spawn_local(async move { shard.txns.load(p, epoch, log).await });
        }
    }

    /// Flushes logs whose `flush.ms` has passed with data unflushed.
    /// Only the logs that are due are collected (no per-partition work for idle ones), and
    /// their fdatasyncs run FLUSH_CONCURRENCY at a time (the file system commits them
    /// together). One pass at a time per shard; the timers never wait for it.
    pub async fn flush_due(&self) {
        if self.flushing.replace(true) {
            return;
        }
        let now = crate::log::now_ms();
        let due: Vec<(PartitionKey, Log)> = self
            .logs
            .borrow()
            .iter()
            .filter(|(_, log)| log.flush_due(now))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        futures::stream::iter(due)
            .for_each_concurrent(FLUSH_CONCURRENCY, |((t, p), log)| async move {
                if let Err(e) = log.flush_if_due(now).await {
                    error!(topic = %t, partition = p, "background flush failed: {e}");
                }
            })
            .await;
        self.flushing.set(false);
    }

    /// Applies retention to every log this shard owns.
    pub fn apply_retention(&self) {
        let now = crate::log::now_ms();
        for ((t, p), log) in self.open_logs() {
            if let Err(e) = log.apply_retention(now) {
                error!(topic = %t, partition = p, "retention failed: {e}");
            }
        }
    }

    /// Compacts, one after another, the logs of this shard whose policy includes `compact`
    /// and that have enough dirty data. Runs as one background task per shard at a time.
    pub async fn compact_logs(&self) {
        if self.cleaning.replace(true) {
            return;
        }
        let budget = (self.cfg.cleaner_dedupe_bytes / self.nshards.max(1) as u64) as usize;
        for ((t, p), log) in self.open_logs() {
            if self.stopping.get() {
                break;
            }
            if let Err(e) = log.clean(crate::log::now_ms(), budget).await {
                error!(topic = %t, partition = p, "compaction failed; off for this partition until restart: {e}");
            }
        }
        self.cleaning.set(false);
    }

    /// This shard's metrics, with the state of its partitions and groups, for a scrape.
    pub fn snapshot(&self) -> crate::metrics::Snapshot {
        let (reads, (n, bytes)) = crate::runtime::take_io_counts();
        let (inline_n, inline_bytes) = crate::log::file::take_inline_writes();
        self.metrics
            .add_io(reads, (n + inline_n, bytes + inline_bytes));
        let mut s = self.metrics.snapshot(self.id);
        s.connections = self.connections.get();
        s.fsyncs = crate::log::file::fsync_stats();
        s.slow_inline_writes = crate::log::file::slow_inline_writes();
        s.fetch_sent = super::splice::send_stats();
        s.replication = crate::replication::stats(self);
        s.damage = crate::log::read::damage_stats();
        s.open_files = crate::log::file::open_file_stats();
        s.buffer_bytes = self.read_buffer_bytes.get() as u64;
        s.request_bytes_reserved = self.request_budget.in_use() as u64;
        s.storage = (self.disk.free(), self.disk.low());
        s.connections_refused = vec![
            ("kafka", self.kafka_conns.refused()),
            ("http", self.http_conns.refused()),
        ];
        for ((t, p), log) in self.open_logs() {
            s.buffer_bytes += log.pending_bytes() as u64;
            s.partitions.push((
                t,
                p,
                log.log_start_offset(),
                log.high_watermark(),
                log.size_bytes(),
            ));
        }
        let (committed, groups) = self.groups.metrics();
        s.committed = committed;
        s.groups = groups;
        s
    }

    /// Flushes every log this shard owns and snapshots producer state (clean shutdown).
    /// Returns whether everything was flushed.
    pub async fn sync_all(&self) -> bool {
        crate::replication::checkpoint::write(self);
        let ok = self.groups.sync_logs().await;
        let each = futures::stream::iter(self.open_logs().into_iter().map(
            |((t, p), log)| async move {
                let mut ok = true;
                if let Err(e) = log.sync().await {
                    error!(topic = %t, partition = p, "sync at shutdown failed: {e}");
                    ok = false;
                }
                if let Err(e) = log.snapshot_producers().await {
                    error!(topic = %t, partition = p, "producer snapshot at shutdown failed: {e}");
                    ok = false;
                }
                ok
            },
        ))
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect::<Vec<bool>>()
        .await;
        ok && each.into_iter().all(|x| x)
    }
}
