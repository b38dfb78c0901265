//! One node's control-plane thread: runs its openraft instance and controller listener,
//! registers the node and heartbeats to the controller; while it is the controller it also
//! runs the controller's duties ([`super::duties`]) and unfences nodes whose heartbeats
//! return.
//!
//! Invariant: every decision here is a command proposed to the quorum (through whichever
//! node leads it); nothing is changed locally. Each loop has a period and each call a
//! deadline, so a dead peer or a lost leader only delays the next attempt.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tracing::{debug, error, info, warn};

use super::net::{self, Network, Peer, Reply, Request};
use super::state::{Command, NodeId, NodeRegistration, Outcome};
use super::store::{LogStore, StateMachine};
use super::{ClusterConfig, ClusterView, Raft};

/// How long a proposal or heartbeat sent to the controller may take.
pub(super) const CALL_DEADLINE: Duration = Duration::from_secs(3);
/// How often the controller checks for silent nodes.
const FENCE_CHECK: Duration = Duration::from_millis(100);
/// How often the controller moves leadership back to preferred replicas that are in sync
/// (Kafka's `auto.leader.rebalance.enable`, checked every 300 s there; sooner here, as it
/// is one committed command per partition and the ISR already proved the replica current).
const PREFERRED_LEADER_CHECK: Duration = Duration::from_secs(5);
/// A new controller waits this long before its first preferred-leader pass.
const PREFERRED_LEADER_GRACE: Duration = Duration::from_secs(5);
/// Leadership moves proposed per pass at most.
pub(super) const PREFERRED_LEADER_BATCH: usize = 100;

/// Proposes commands to the quorum from any thread (a shard awaits the answer without
/// blocking: the work runs on the control plane's runtime).
#[derive(Clone)]
pub struct Proposer {
    rt: tokio::runtime::Handle,
    ctl: Arc<Ctl>,
}

impl Proposer {
    /// Commits `cmd` through the controller, then waits (up to `deadline`) until this
    /// node has applied it too: its outcome.
    pub async fn propose(&self, cmd: Command, deadline: Duration) -> Result<Outcome, String> {
        let ctl = self.ctl.clone();
        let work = self.rt.spawn(async move {
            let mut rx = ctl.view.subscribe();
            let (outcome, index) =
                tokio::time::timeout(deadline, retrying(|| ctl.propose_anywhere(cmd.clone())))
                    .await
                    .map_err(|_| "no controller committed it in time".to_string())??;
            let applied = tokio::time::timeout(deadline, rx.wait_for(|v| v.applied_index >= index))
                .await
                .map(|r| r.is_ok());
            match applied {
                Ok(true) => Ok(outcome),
                _ => Err(format!(
                    "committed at {index} but not yet applied on this node"
                )),
            }
        });
        work.await
            .map_err(|e| format!("control plane task failed: {e}"))?
    }
}

/// Tries `f` until it succeeds, pausing between attempts (the caller bounds it with a
/// timeout): a proposal made during an election is retried once a controller is known.
async fn retrying<F, Fut, T>(mut f: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    // Bounded by the caller's timeout.
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                debug!("proposal not committed yet: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The running control plane of this node; stops it when dropped.
pub struct ClusterHandle {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ClusterHandle {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the control plane thread of this node; returns once its controller listener is
/// bound (an error if it cannot be, or its storage cannot be opened).
pub fn start(
    cfg: ClusterConfig,
    data_dir: &Path,
    reg: NodeRegistration,
    view: ClusterView,
) -> anyhow::Result<(ClusterHandle, Proposer)> {
    let dir = data_dir.join("cluster");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<Proposer>>();
    let thread = std::thread::Builder::new()
        .name("controller".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into()));
                    return;
                }
            };
            rt.block_on(async move {
                match Node::open(cfg, &dir, reg, view).await {
                    Ok(node) => {
                        let _ = ready_tx.send(Ok(Proposer {
                            rt: tokio::runtime::Handle::current(),
                            ctl: node.ctl.clone(),
                        }));
                        node.run(stop_rx).await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            });
        })
        .context("cannot start the controller thread")?;
    match ready_rx.recv() {
        Ok(Ok(proposer)) => Ok((
            ClusterHandle {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            proposer,
        )),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => {
            let _ = thread.join();
            anyhow::bail!("the controller thread ended before it was ready")
        }
    }
}

/// The controller side of this node: what it answers for other nodes.
pub(super) struct Ctl {
    pub(super) raft: Raft,
    pub(super) cfg: ClusterConfig,
    pub(super) view: ClusterView,
    /// Last heartbeat per node (node id → (epoch, when)), kept while this node leads.
    pub(super) seen: Mutex<HashMap<NodeId, (u64, Instant)>>,
    /// Nodes whose controller listener refuses connections, as replication finds them.
    pub(super) refusals: Arc<net::Refusals>,
    /// Connections to controllers, kept across calls: (voter, 0 proposals / 1 heartbeats).
    /// At most two per voter; a connection that failed is dialled again by its next call.
    pub(super) peers: Mutex<HashMap<(NodeId, usize), SharedPeer>>,
}

/// A kept connection, used by one call at a time.
type SharedPeer = Arc<tokio::sync::Mutex<Peer>>;

impl net::Controller for Ctl {
    async fn propose(&self, cmd: Command, forward: bool) -> Result<(Outcome, u64), String> {
        if let Command::Register(reg) = &cmd {
            // A new incarnation: refusals its previous process left are stale.
            self.refusals.forget(reg.id);
        }
        match self.raft.client_write(cmd.clone()).await {
            Ok(r) => Ok((r.data, r.log_id.index)),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => match f.leader_id {
                Some(l) if forward && l != self.cfg.node_id => self
                    .ask_leader(l, &Request::Forwarded(cmd))
                    .await
                    .and_then(|r| match r {
                        Reply::Proposed(r) => r,
                        _ => Err("unexpected reply".into()),
                    }),
                other => Err(format!("not the controller; the controller is {other:?}")),
            },
            Err(e) => Err(e.to_string()),
        }
    }

    async fn heartbeat(&self, id: NodeId, epoch: u64) -> bool {
        if !self.leads() {
            return false;
        }
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(id, (epoch, Instant::now()));
        }
        self.refusals.forget(id);
        let fenced = self
            .view
            .get()
            .image
            .nodes
            .get(&id)
            .is_some_and(|n| n.fenced && n.epoch == epoch);
        if fenced {
            info!(node = id, epoch, "node is heartbeating again; unfencing it");
            if let Err(e) = self.propose_here(Command::Unfence { id, epoch }).await {
                debug!(node = id, "unfence not committed: {e}");
            }
        }
        true
    }
}

impl Ctl {
    /// Whether this node believes it leads the quorum (a stale belief only costs a proposal
    /// that cannot commit).
    pub(super) fn leads(&self) -> bool {
        let m = self.raft.metrics();
        let m = m.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.cfg.node_id)
    }

    pub(super) async fn propose_here(&self, cmd: Command) -> Result<(Outcome, u64), String> {
        net::Controller::propose(self, cmd, false).await
    }

    /// Commits `cmd` through whichever node leads the quorum now: its outcome and log index.
    /// A node that knows no leader (a broker-only node before it receives the log) asks the
    /// voters in turn; a voter passes it on to the leader it knows.
    async fn propose_anywhere(&self, cmd: Command) -> Result<(Outcome, u64), String> {
        let leader = self.raft.current_leader().await;
        let proposed = |r: Result<Reply, String>| {
            r.and_then(|r| match r {
                Reply::Proposed(r) => r,
                _ => Err("unexpected reply".into()),
            })
        };
        match leader {
            Some(l) if l == self.cfg.node_id => self.propose_here(cmd).await,
            Some(l) => proposed(self.ask_leader(l, &Request::Forwarded(cmd)).await),
            None if self.cfg.is_voter() => Err("no controller elected yet".into()),
            None => {
                let mut last = "no voter answered".to_string();
                for v in self.cfg.voters.keys() {
                    match proposed(self.ask_leader(*v, &Request::Propose(cmd.clone())).await) {
                        Ok(r) => return Ok(r),
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    /// One request to the controller over this node's kept connection for that kind of
    /// request (heartbeats apart from proposals, so a slow commit never delays a heartbeat).
    async fn ask_leader(&self, leader: NodeId, req: &Request) -> Result<Reply, String> {
        let addr = self
            .cfg
            .voters
            .get(&leader)
            .ok_or_else(|| format!("controller {leader} is not a known voter"))?;
        // Connections by voter and kind: at most two per voter.
        let kind = usize::from(matches!(req, Request::Heartbeat { .. }));
        let peer = {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            peers
                .entry((leader, kind))
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Peer::new(addr.clone()))))
                .clone()
        };
        let mut peer = peer.lock().await;
        peer.call(req, CALL_DEADLINE)
            .await
            .map_err(|e| format!("controller {leader} at {addr}: {e}"))
    }
}

pub(super) struct Node {
    pub(super) ctl: Arc<Ctl>,
    pub(super) reg: NodeRegistration,
}

impl Node {
    async fn open(
        cfg: ClusterConfig,
        dir: &Path,
        reg: NodeRegistration,
        view: ClusterView,
    ) -> anyhow::Result<Node> {
        let (log, report) = LogStore::open(dir)
            .with_context(|| format!("cannot open the metadata log in {}", dir.display()))?;
        for line in report {
            warn!("{line}");
        }
        let v = view.clone();
        let sm = StateMachine::open(
            dir,
            Arc::new(move |img, applied| {
                v.update(|view| {
                    view.image = img.clone();
                    view.applied_index = applied.unwrap_or(0);
                })
            }),
        )
        .with_context(|| format!("cannot open the metadata snapshot in {}", dir.display()))?;
        let election = cfg.election_timeout.as_millis().clamp(200, 60_000) as u64;
        let config = openraft::Config {
            cluster_name: "shardlog".into(),
            heartbeat_interval: (election / 5).min(100),
            election_timeout_min: election / 2,
            election_timeout_max: election,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(1000),
            max_in_snapshot_log_to_keep: 100,
            snapshot_max_chunk_size: 1 << 20,
            ..Default::default()
        }
        .validate()
        .context("quorum settings")?;
        let refusals = Arc::new(net::Refusals::default());
        let raft = Raft::new(
            cfg.node_id,
            Arc::new(config),
            Network(refusals.clone()),
            log,
            sm,
        )
        .await
        .context("cannot start the metadata quorum")?;
        let listener = TcpListener::bind(&cfg.listener)
            .await
            .with_context(|| format!("cannot listen on controller.listener {}", cfg.listener))?;
        info!(node = cfg.node_id, listener = %cfg.listener, voters = ?cfg.voters, "metadata quorum starting");
        view.update(|v| {
            v.node_id = cfg.node_id;
            v.voters = cfg.voters.keys().copied().collect();
        });
        let ctl = Arc::new(Ctl {
            raft: raft.clone(),
            cfg,
            view,
            seen: Mutex::new(HashMap::new()),
            refusals,
            peers: Mutex::new(HashMap::new()),
        });
        tokio::spawn(net::serve(listener, raft.clone(), ctl.clone()));
        if ctl.cfg.is_voter() && !raft.is_initialized().await.unwrap_or(true) {
            // Every voter proposes the same initial membership at log index 0 (openraft
            // makes that safe); whichever is elected first carries on from it.
            let members: BTreeMap<NodeId, BasicNode> = ctl
                .cfg
                .voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode::new(addr)))
                .collect();
            if let Err(e) = raft.initialize(members).await {
                debug!("quorum already initialized: {e}");
            }
        }
        Ok(Node { ctl, reg })
    }

    async fn run(self, mut stop: tokio::sync::oneshot::Receiver<()>) {
        tokio::spawn(watch_metrics(self.ctl.clone()));
        let mut epoch: Option<u64> = None;
        let mut heartbeat = tokio::time::interval(self.ctl.cfg.heartbeat_interval);
        let mut fence_check = tokio::time::interval(FENCE_CHECK);
        let mut led_since: Option<Instant> = None;
        let mut last_rebalance = Instant::now();
        // Runs until the broker stops; each branch is one bounded step.
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = heartbeat.tick() => match epoch {
                    None => match self.ctl.propose_anywhere(Command::Register(self.reg.clone())).await {
                        Ok((Outcome::Registered { epoch: e }, _)) => {
                            info!(node = self.reg.id, epoch = e, "registered with the cluster");
                            epoch = Some(e);
                        }
                        Ok((other, _)) => warn!("registration answered {other:?}"),
                        Err(e) => debug!("registration not yet committed: {e}"),
                    },
                    Some(e) => self.send_heartbeat(e).await,
                },
                _ = fence_check.tick() => {
                    led_since = self.fence_silent_nodes(led_since).await;
                    if let Some(since) = led_since {
                        self.sync_learners().await;
                        self.move_replicas().await;
                        if since.elapsed() > PREFERRED_LEADER_GRACE && last_rebalance.elapsed() > PREFERRED_LEADER_CHECK {
                            last_rebalance = Instant::now();
                            self.prefer_leaders().await;
                        }
                    }
                }
            }
        }
        if let Err(e) = self.ctl.raft.shutdown().await {
            warn!("metadata quorum shutdown: {e}");
        }
    }

    async fn send_heartbeat(&self, epoch: u64) {
        let id = self.reg.id;
        match self.ctl.raft.current_leader().await {
            Some(l) if l == id => {
                net::Controller::heartbeat(&*self.ctl, id, epoch).await;
            }
            Some(l) => {
                if let Err(e) = self
                    .ctl
                    .ask_leader(l, &Request::Heartbeat { id, epoch })
                    .await
                {
                    debug!("heartbeat not delivered: {e}");
                }
            }
            // A broker-only node not yet receiving the log: the voters in turn, until the
            // one that leads takes it.
            None if !self.ctl.cfg.is_voter() => {
                for v in self.ctl.cfg.voters.keys() {
                    let req = Request::Heartbeat { id, epoch };
                    if let Ok(Reply::HeartbeatTaken(true)) = self.ctl.ask_leader(*v, &req).await {
                        break;
                    }
                }
            }
            None => {}
        }
    }
}

/// Keeps the view's quorum figures current.
async fn watch_metrics(ctl: Arc<Ctl>) {
    let mut rx = ctl.raft.metrics();
    let mut last_leader = None;
    let mut reported_fatal = false;
    // Ends when the Raft instance shuts down (the channel closes).
    loop {
        {
            let m = rx.borrow().clone();
            if m.current_leader != last_leader {
                match m.current_leader {
                    Some(l) if l == ctl.cfg.node_id => {
                        info!(term = m.current_term, "this node is now the controller")
                    }
                    Some(l) => info!(controller = l, term = m.current_term, "controller elected"),
                    None => info!(
                        term = m.current_term,
                        "no controller: an election is under way"
                    ),
                }
                last_leader = m.current_leader;
            }
            if let (Err(e), false) = (&m.running_state, reported_fatal) {
                error!("metadata quorum stopped: {e}");
                reported_fatal = true;
            }
            ctl.view.update(|v| {
                v.controller = m.current_leader;
                v.term = m.current_term;
                v.role = match m.state {
                    ServerState::Leader => "leader",
                    ServerState::Follower => "follower",
                    ServerState::Candidate => "candidate",
                    ServerState::Learner => "learner",
                    ServerState::Shutdown => "shutdown",
                }
                .to_string();
                v.last_log_index = m.last_log_index.unwrap_or(0);
                v.voters = m.membership_config.membership().voter_ids().collect();
                v.quorum_ack_age_ms = m.millis_since_quorum_ack;
                v.voter_lag = m
                    .replication
                    .as_ref()
                    .map(|r| {
                        r.iter()
                            .map(|(id, matched)| {
                                let at = matched.map_or(0, |l| l.index);
                                (*id, v.last_log_index.saturating_sub(at))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
            });
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
