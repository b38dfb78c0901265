//! The broker: starts one glommio executor per shard, pinned to its own core, wires the
//! shards together with bounded channels, and runs until SIGTERM/SIGINT.
//!
//! Invariants: shard `i` accepts clients on `listen.port + i` and is advertised as broker
//! id `i`; each partition is owned by exactly one shard ([`catalog::Catalog::owner`]); the
//! only state shared between threads is immutable (`Arc<BrokerConfig>`, catalog snapshots)
//! or a stop flag.

pub mod acls;
pub mod admin;
pub mod authn;
pub mod catalog;
pub mod cluster_link;
pub mod configs;
pub mod connection;
pub mod disk_space;
pub mod dispatch;
pub mod dispatch_groups;
pub mod dispatch_txn;
pub mod errors;
pub mod fetch;
pub mod find_coordinator;
pub mod http_apps;
pub mod limits;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod metrics_http;
pub mod node_admin;
pub mod placement;
pub mod produce;
pub mod producer_id;
pub mod reassign;
pub mod router;
pub mod schema_check;
pub mod shard;
pub mod splice;
pub mod txn;
pub mod txn_markers;
pub mod users;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::cluster::ClusterView;
use futures::future::join_all;
use glommio::channels::shared_channel::{self, SharedReceiver, SharedSender};
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::config::BrokerConfig;
use catalog::Catalog;
use limits::ConnLimits;
use router::Envelope;
use shard::Shard;

/// Capacity of each shard-to-shard channel.
const PEER_CHANNEL_CAPACITY: usize = 1024;

/// Holds an exclusive lock on the data directory for the broker's lifetime.
struct DirLock(#[allow(dead_code)] File);

fn lock_data_dir(cfg: &BrokerConfig) -> anyhow::Result<DirLock> {
    std::fs::create_dir_all(cfg.data_dir.join("topics"))
        .with_context(|| format!("cannot create data directory {}", cfg.data_dir.display()))?;
    let path = cfg.data_dir.join(".lock");
    let f = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    // SAFETY: flock on a valid, open file descriptor.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        bail!(
            "data directory {} is in use by another shardlog process",
            cfg.data_dir.display()
        );
    }
    Ok(DirLock(f))
}

/// Removes partition directories that belong to no topic in the catalog (a topic deleted
/// while its shard was down), so a later topic of the same name starts empty.
fn remove_orphans(cfg: &BrokerConfig, cat: &Catalog) {
    let Ok(entries) = std::fs::read_dir(cfg.data_dir.join("topics")) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let known = name.rsplit_once('-').is_some_and(|(t, p)| {
            p.parse::<i32>()
                .is_ok_and(|p| cat.topics.get(t).is_some_and(|m| p < m.partitions))
        });
        if !known {
            warn!(dir = %e.path().display(), "removing partition directory of a deleted topic");
            if let Err(err) = std::fs::remove_dir_all(e.path()) {
                error!(dir = %e.path().display(), "could not remove: {err}");
            }
        }
    }
}

type Links = (
    Vec<Option<SharedSender<Envelope>>>,
    Vec<Option<SharedReceiver<Envelope>>>,
);

/// `links[i]`: shard i's senders to, and receivers from, every other shard.
fn build_links(n: usize) -> Vec<Links> {
    let mut senders: Vec<Vec<Option<SharedSender<Envelope>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut receivers: Vec<Vec<Option<SharedReceiver<Envelope>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    for from in 0..n {
        for to in 0..n {
            if from != to {
                let (tx, rx) = shared_channel::new_bounded(PEER_CHANNEL_CAPACITY);
                senders[from][to] = Some(tx);
                receivers[to][from] = Some(rx);
            }
        }
    }
    senders.into_iter().zip(receivers).collect()
}

/// Keeps large buffers (request frames, append and read buffers) in malloc's heap instead
/// of a fresh mmap each time: with glibc's default threshold every 1 MiB frame costs page
/// faults and kernel page zeroing, which dominated the produce profile.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only adjusts allocator tunables; called before any shard starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
    }
}

/// Runs the broker until SIGTERM or SIGINT.
pub fn serve(cfg: BrokerConfig) -> anyhow::Result<()> {
    if cfg.cores == 0 {
        bail!("--cores must be at least 1");
    }
    let security = cfg
        .security
        .resolve(cfg.listen, cfg.cores)
        .map_err(|e| anyhow::anyhow!("security settings: {e}"))?;
    if !cfg.quorum_voters.trim().is_empty()
        && security.inter_broker().protocol != crate::security::listeners::Protocol::Plaintext
    {
        bail!(
            "inter.broker.listener.name {} is {}: nodes replicate and fetch from each other in PLAINTEXT only (TLS and SASL between nodes are not built); name a PLAINTEXT listener on a private network",
            security.inter_broker().name,
            security.inter_broker().protocol.name()
        );
    }
    tune_allocator();
    let mut cfg = cfg;
    // Other nodes and the tools of the cluster use the inter-broker listener.
    cfg.listen = security.inter_broker().bind;
    cfg.open_files_per_shard = limits::file_descriptor_budget(cfg.cores, cfg.max_connections)?;
    let _lock = lock_data_dir(&cfg)?;
    let fresh = !cfg.data_dir.join("catalog.json").exists();
    let clean = take_clean_marker(&cfg.data_dir)?;
    if fresh {
        info!(dir = %cfg.data_dir.display(), "new data directory");
    } else if clean {
        info!("clean shutdown last time: no recovery needed, active segments checked from their last index entry");
    } else {
        info!("no clean-shutdown marker: recovering, every active segment is scanned");
    }
    let mut catalog = Catalog::load_or_create(&cfg.data_dir)?;
    if cfg.quorum_voters.trim().is_empty() {
        // In a cluster the credentials come from the metadata quorum.
        catalog.security = Arc::new(crate::security::store::SecurityState::load(&cfg.data_dir)?);
    }
    if cfg.quorum_voters.trim().is_empty() {
        // In a cluster the quorum says which partitions this node holds, not catalog.json.
        remove_orphans(&cfg, &catalog);
    }
    let view = ClusterView::default();
    // The control plane first: its thread runs beside the shards, which only read its view.
    let (_control_plane, proposer) = match cfg.cluster().map_err(|e| anyhow::anyhow!(e))? {
        None => (None, None),
        Some(cc) => {
            let http_port = cfg.metrics_listen.map(|a| a.port()).filter(|p| *p != 0);
            let inter = security.inter_broker();
            let endpoints = security
                .listeners
                .iter()
                .map(|l| (l.name.clone(), l.advertised_host.clone(), l.advertised_port))
                .collect();
            let reg = crate::cluster::registration(
                &cc,
                &inter.advertised_host,
                inter.advertised_port,
                cfg.cores,
                http_port,
                &catalog.cluster_id,
                endpoints,
            );
            let (handle, proposer) = crate::cluster::start(cc, &cfg.data_dir, reg, view.clone())?;
            (Some(handle), Some(proposer))
        }
    };
    let catalog = Arc::new(catalog);
    let cfg = Arc::new(cfg);
    let security = Arc::new(security);
    let registry = Arc::new(crate::schema::store::Registry::default());
    let lag_history = Arc::new(crate::ui::lag_history::LagHistory::default());
    let stop = Arc::new(AtomicBool::new(false));
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, term.clone())?;
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())?;

    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    if cfg.cores > cpus.len() && !cpus.is_empty() {
        warn!(
            cores = cfg.cores,
            cpus = cpus.len(),
            "more shards than cores: extra shards are not pinned"
        );
    }
    let conns = [
        ConnLimits::new("kafka", cfg.max_connections, cfg.max_connections_per_ip),
        ConnLimits::new("http", cfg.max_connections, cfg.max_connections_per_ip),
    ];
    let (ready_tx, ready_rx) = mpsc::channel::<Result<usize, String>>();
    let mut handles = Vec::new();
    for (i, (senders, receivers)) in build_links(cfg.cores).into_iter().enumerate() {
        let placement = match cpus.get(i) {
            Some(c) => Placement::Fixed(c.id),
            None => Placement::Unbound,
        };
        let (cfg, catalog, stop, ready, conns, cluster, proposer, security) = (
            cfg.clone(),
            catalog.clone(),
            stop.clone(),
            ready_tx.clone(),
            conns.clone(),
            view.clone(),
            proposer.clone(),
            security.clone(),
        );
        let (registry, lag_history) = (registry.clone(), lag_history.clone());
        let h = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{i}"))
            .spawn(move || {
                shard_main(ShardStart {
                    id: i,
                    cfg,
                    catalog,
                    senders,
                    receivers,
                    ready,
                    stop,
                    clean,
                    conns,
                    cluster,
                    proposer,
                    security,
                    registry,
                    lag_history,
                })
            })
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start executor for shard {i}: {e}. shardlog needs io_uring (Linux >= 5.8, \
                     not blocked by seccomp: Docker needs --security-opt seccomp=unconfined or a \
                     profile allowing io_uring_*) and >= 512 KiB of locked memory per shard \
                     (raise `ulimit -l` or LimitMEMLOCK= in the systemd unit)"
                )
            })?;
        handles.push(h);
    }
    drop(ready_tx);
    let mut failure = None;
    for _ in 0..cfg.cores {
        match ready_rx.recv_timeout(Duration::from_secs(300)) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                failure = Some(e);
                break;
            }
            Err(_) => {
                failure = Some("a shard did not start".into());
                break;
            }
        }
    }
    let mut loader = None;
    let mut sampler = None;
    if failure.is_none() {
        if cfg.schema_registry {
            loader =
                http_apps::spawn_registry_loader(registry.clone(), security.clone(), stop.clone());
        }
        if cfg.ui != crate::ui::UiMode::Off && cfg.metrics_listen.is_some() {
            sampler = http_apps::spawn_lag_sampler(
                lag_history.clone(),
                security.clone(),
                Duration::from_millis(cfg.lag_sample_ms),
                stop.clone(),
            );
        }
        for l in &security.listeners {
            info!(
                shards = cfg.cores,
                listener = %l.name,
                protocol = l.protocol.name(),
                "listening on {} (advertised {}:{})",
                l.bind, l.advertised_host, l.advertised_port
            );
        }
        while !term.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
            if hup.swap(false, Ordering::Relaxed) {
                match &security.tls {
                    Some(tls) => match tls.reload() {
                        Ok(()) => info!("SIGHUP: TLS certificate and key reloaded"),
                        Err(e) => {
                            error!("SIGHUP: TLS files not reloaded, the old ones stay in use: {e}")
                        }
                    },
                    None => info!("SIGHUP: no TLS listener, nothing to reload"),
                }
            }
        }
        info!("shutdown requested; flushing logs");
    }
    stop.store(true, Ordering::Relaxed);
    // The loader only reads: it is woken to see `stop`, not waited for (a call it has out
    // to a stopping shard would hold the shutdown up to the client's timeout).
    registry.wake_loader();
    lag_history.wake();
    drop((loader, sampler));
    let mut all_clean = failure.is_none();
    for h in handles {
        match h.join() {
            Ok(true) => {}
            Ok(false) => all_clean = false,
            Err(e) => {
                error!("shard exited with an error: {e}");
                all_clean = false;
            }
        }
    }
    if let Some(e) = failure {
        bail!(e);
    }
    if all_clean {
        write_clean_marker(&cfg.data_dir)?;
        info!("stopped cleanly");
    } else {
        warn!("stopped; some shard did not flush cleanly, the next start recovers");
    }
    Ok(())
}

const CLEAN_MARKER: &str = ".clean_shutdown";

/// Whether the last run shut down cleanly; removes the marker so a crash from here on is
/// seen as unclean.
fn take_clean_marker(dir: &std::path::Path) -> anyhow::Result<bool> {
    let path = dir.join(CLEAN_MARKER);
    if !path.exists() {
        return Ok(false);
    }
    std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    File::open(dir)?.sync_all()?;
    Ok(true)
}

fn write_clean_marker(dir: &std::path::Path) -> anyhow::Result<()> {
    let path = dir.join(CLEAN_MARKER);
    File::create(&path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Binds without SO_REUSEPORT (which glommio's own `bind` sets), so a second broker on the
/// same port fails loudly instead of silently sharing the port's connections.
fn bind_exclusive(addr: std::net::SocketAddr) -> std::io::Result<glommio::net::TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let fd = std_listener.into_raw_fd();
    // SAFETY: `fd` is a freshly bound, listening TCP socket whose ownership moves here.
    Ok(unsafe { glommio::net::TcpListener::from_raw_fd(fd) })
}

/// Everything a shard starts with.
struct ShardStart {
    id: usize,
    cfg: Arc<BrokerConfig>,
    catalog: Arc<Catalog>,
    senders: Vec<Option<SharedSender<Envelope>>>,
    receivers: Vec<Option<SharedReceiver<Envelope>>>,
    ready: mpsc::Sender<Result<usize, String>>,
    stop: Arc<AtomicBool>,
    clean: bool,
    /// Connection limits of the Kafka and HTTP ports, shared by all shards.
    conns: [Arc<ConnLimits>; 2],
    /// The control plane's view of the cluster (empty for a single node).
    cluster: ClusterView,
    proposer: Option<crate::cluster::Proposer>,
    security: Arc<crate::security::settings::Resolved>,
    /// The schema registry (control plane; the HTTP port serves its API).
    registry: Arc<crate::schema::store::Registry>,
    /// The console's group lag samples.
    lag_history: Arc<crate::ui::lag_history::LagHistory>,
}

/// Runs one shard until the stop flag; returns whether it drained and flushed cleanly.
async fn shard_main(start: ShardStart) -> bool {
    let ShardStart {
        id,
        cfg,
        catalog,
        senders,
        receivers,
        ready,
        stop,
        clean,
        conns,
        cluster,
        proposer,
        security,
        registry,
        lag_history,
    } = start;
    // The shard's descriptors: pipes for zero-copy fetches (two each) take an eighth, log
    // and index files the rest.
    let pipes = splice::set_pipe_limit(cfg.open_files_per_shard / 16);
    crate::log::file::set_open_file_limit(cfg.open_files_per_shard - 2 * pipes);
    let connect_tx = join_all(senders.into_iter().map(|s| async move {
        match s {
            Some(s) => Some(s.connect().await),
            None => None,
        }
    }));
    let connect_rx = join_all(receivers.into_iter().map(|r| async move {
        match r {
            Some(r) => Some(r.connect().await),
            None => None,
        }
    }));
    let (peers, inbound) = futures::join!(connect_tx, connect_rx);
    // In a cluster the quorum places the offsets partitions; the shard adopts its own as
    // the catalog arrives.
    let owned: Vec<i32> = (0..crate::group::OFFSETS_PARTITIONS)
        .filter(|p| Catalog::owner(crate::group::OFFSETS_TOPIC, *p, cfg.cores) == id)
        .filter(|_| proposer.is_none())
        .collect();
    let groups = crate::group::coordinator::Coordinator::open(
        &cfg.data_dir,
        &owned,
        cfg.groups.clone(),
        clean,
    )
    .await;
    let txn_parts: Vec<i32> = (0..crate::txn::TXN_PARTITIONS)
        .filter(|p| Catalog::owner(crate::txn::TXN_TOPIC, *p, cfg.cores) == id)
        .filter(|_| proposer.is_none())
        .collect();
    let txns = crate::txn::coordinator::TxnCoordinator::open(
        &cfg.data_dir,
        &txn_parts,
        cfg.txns.clone(),
        clean,
    )
    .await;
    let mut shard = Shard::new(
        id,
        cfg.clone(),
        Arc::new(Catalog::default()),
        peers,
        (groups, txns),
        conns,
        security.clone(),
    );
    shard.cluster = cluster;
    let clustered = proposer.is_some();
    shard.proposer = proposer;
    shard.registry = registry;
    shard.lag_history = lag_history;
    let shard = Rc::new(shard);
    shard
        .txns
        .set_host(Rc::new(txn::ShardTxnHost(Rc::downgrade(&shard))));
    shard.groups.set_replicator(Rc::new(
        crate::replication::coordinator_log::ShardReplicator {
            shard: Rc::downgrade(&shard),
            topic: crate::group::OFFSETS_TOPIC,
        },
    ));
    shard.txns.set_replicator(Rc::new(
        crate::replication::coordinator_log::ShardReplicator {
            shard: Rc::downgrade(&shard),
            topic: crate::txn::TXN_TOPIC,
        },
    ));
    shard.disk.measure(&cfg.data_dir);
    shard.clean_start.set(clean);
    if clustered {
        // Topics come from the metadata quorum; catalog.json only seeds an upgrade.
        let empty = Catalog {
            cluster_id: catalog.cluster_id.clone(),
            cluster: Some(catalog::ClusterMap {
                local: cfg.node_id,
                controller: None,
                nodes: Default::default(),
                groups: Vec::new(),
            }),
            ..Default::default()
        };
        shard.apply_catalog(Arc::new(empty)).await;
        if id == 0 {
            crate::runtime::spawn_local(cluster_link::follow(shard.clone(), catalog.clone()));
        }
    } else {
        shard.apply_catalog(catalog).await;
    }
    shard.clean_start.set(false);
    for rx in inbound.into_iter().flatten() {
        crate::runtime::spawn_local(router::serve_peer(shard.clone(), rx));
    }
    let mut listeners = Vec::new();
    for l in &security.listeners {
        let addr = l.bind_for(id);
        match bind_exclusive(addr) {
            Ok(sock) => listeners.push((Arc::new(l.clone()), sock)),
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen on {addr} ({}): {e}", l.name)));
                return false;
            }
        }
    }
    let metrics_listener = match cfg.metrics_listen.filter(|_| id == 0) {
        None => None,
        Some(addr) => match bind_exclusive(addr) {
            Ok(l) => {
                let bound = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
                let scheme = if security.http_tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                info!("metrics on {scheme}://{bound}/metrics");
                Some(l)
            }
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen for metrics on {addr}: {e}")));
                return false;
            }
        },
    };
    if let Some(l) = metrics_listener {
        crate::runtime::spawn_local(metrics_http::serve(shard.clone(), l, stop.clone()));
    }
    let _ = ready.send(Ok(id));
    {
        // Housekeeping every 100 ms: group timers (session expiry, due rebalances, offsets
        // retention and compaction), background flushes, retention, and the log cleaner
        // (spawned, so a long pass never delays the timers). Ends with the shard.
        let (shard, stop) = (shard.clone(), stop.clone());
        crate::runtime::spawn_local(async move {
            let mut ticks: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                crate::runtime::sleep(Duration::from_millis(100)).await;
                shard.groups.tick().await;
                {
                    // Markers may go to other nodes: the scan never holds up housekeeping.
                    let shard = shard.clone();
                    crate::runtime::spawn_local(async move { shard.txns.tick().await });
                }
                {
                    let shard = shard.clone();
                    crate::runtime::spawn_local(async move { shard.flush_due().await });
                }
                ticks += 1;
                if ticks % 5 == 0 {
                    crate::replication::leader::isr_check(&shard);
                }
                if ticks % 50 == 0 {
                    crate::replication::checkpoint::write(&shard);
                }
                if ticks % 10 == 0 {
                    shard.disk.measure(&shard.cfg.data_dir);
                }
                if ticks % 600 == 0 {
                    shard.groups.compact().await;
                    shard.txns.compact(16 << 20).await;
                }
                if ticks % (shard.cfg.retention_check_ms / 100).max(1) == 0 {
                    shard.apply_retention();
                }
                if ticks % (shard.cfg.cleaner_backoff_ms / 100).max(1) == 0 {
                    let shard = shard.clone();
                    crate::runtime::spawn_local(async move { shard.compact_logs().await });
                }
            }
        });
    }
    join_all(
        listeners
            .into_iter()
            .map(|(l, sock)| accept_loop(shard.clone(), l, sock, stop.clone())),
    )
    .await;
    shard.stopping.set(true);
    shard.data_arrived.notify_all();
    // Let requests already being handled finish (long-polls return at once now), up to 10 s.
    for _ in 0..1000 {
        if shard.in_flight.get() == 0 {
            break;
        }
        crate::runtime::sleep(Duration::from_millis(10)).await;
    }
    let drained = shard.in_flight.get() == 0;
    if !drained {
        warn!(
            shard = id,
            in_flight = shard.in_flight.get(),
            "requests still running at shutdown"
        );
    }
    shard.sync_all().await && drained
}

/// Accepts connections on one listener until the stop flag.
async fn accept_loop(
    shard: Rc<Shard>,
    listener: Arc<crate::security::listeners::Listener>,
    sock: glommio::net::TcpListener,
    stop: Arc<AtomicBool>,
) {
    let backoff = limits::AcceptBackoff::default();
    // Bounded by the stop flag, checked at least every 100 ms (or after a back-off of at
    // most a second).
    // One accept stays in flight across the 100 ms checks of the stop flag: dropping an
    // accept whose connection the kernel already took would leave that client hanging.
    let mut accepting = None;
    while !stop.load(Ordering::Relaxed) {
        let accept = accepting.get_or_insert_with(|| Box::pin(sock.accept()));
        let done = crate::runtime::timeout(Duration::from_millis(100), accept.as_mut()).await;
        if done.is_some() {
            accepting = None;
        }
        match done {
            None => {}
            Some(Ok(stream)) => {
                backoff.succeeded();
                let peer = match stream.peer_addr() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                // Refused: the stream is dropped here, closing the socket.
                let Some(slot) = shard.kafka_conns.admit(peer.ip()) else {
                    continue;
                };
                shard.connections.set(shard.connections.get() + 1);
                let (s, l) = (shard.clone(), listener.clone());
                crate::runtime::spawn_local(async move {
                    connection::serve(s.clone(), stream, peer, l).await;
                    s.connections.set(s.connections.get().saturating_sub(1));
                    drop(slot);
                });
            }
            Some(Err(e)) => {
                crate::runtime::sleep(backoff.failed("kafka", &e)).await;
            }
        }
    }
}
