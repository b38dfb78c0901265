//! The control plane: several shardlog nodes form one cluster whose metadata lives in a
//! replicated log agreed by a Raft quorum of voters (openraft), KRaft's design.
//!
//! Invariants:
//! - Consensus is openraft's; this module supplies its storage ([`store`]), its wire
//!   ([`net`]) and the state machine ([`state::Image`]), and never decides anything itself
//!   outside a committed log entry. The quorum's leader is the controller.
//! - It runs on a thread of its own with its own (tokio) runtime, off every shard: the data
//!   plane reads it only through [`ClusterView`], an immutable snapshot swapped in after each
//!   change, and never waits on it.
//! - It knows nothing of partitions' data, logs, shards' internals or the Kafka protocol.
//! - Liveness is soft state held by the controller only (heartbeat times); what follows from
//!   it (fencing a node) is decided by committing a command, so every node agrees.

mod duties;
pub mod metrics;
pub mod net;
mod node;
pub mod partition;
pub mod placement;
pub mod state;
pub mod store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use node::{start, ClusterHandle, Proposer};
use state::{Command, Image, NodeId, NodeRegistration, Outcome};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Outcome,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;

/// How this node takes part in a cluster (Kafka's KRaft names).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// `node.id`
    pub node_id: NodeId,
    /// `controller.quorum.voters`: `id@host:port` of every voter.
    pub voters: BTreeMap<NodeId, String>,
    /// `controller.listener`: where this node's controller listens (its own voter address by
    /// default).
    pub listener: String,
    /// `broker.rack`
    pub rack: String,
    /// `broker.session.timeout.ms`: a node silent this long is fenced.
    pub session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`
    pub heartbeat_interval: Duration,
    /// `controller.quorum.election.timeout.ms`: voters that hear nothing from the leader
    /// for between half of this and all of it (after its lease) elect another.
    pub election_timeout: Duration,
}

impl ClusterConfig {
    /// Whether this node votes in the metadata quorum; a node that does not is a broker
    /// only (Kafka's `process.roles=broker`): it receives the log as a learner.
    pub fn is_voter(&self) -> bool {
        self.voters.contains_key(&self.node_id)
    }

    /// Parses `controller.quorum.voters` (`1@host:port,2@host:port`).
    pub fn parse_voters(s: &str) -> Result<BTreeMap<NodeId, String>, String> {
        let mut out = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) = part
                .split_once('@')
                .ok_or_else(|| format!("voter {part:?} is not id@host:port"))?;
            let id: NodeId = id
                .parse()
                .map_err(|_| format!("voter id {id:?} is not a number"))?;
            if !addr.contains(':') {
                return Err(format!("voter address {addr:?} is not host:port"));
            }
            if out.insert(id, addr.to_string()).is_some() {
                return Err(format!("voter {id} is listed twice"));
            }
        }
        Ok(out)
    }
}

/// The cluster as this node last saw it, for the data plane and operators.
#[derive(Debug, Clone, Serialize, Default)]
pub struct View {
    pub node_id: NodeId,
    pub cluster_id: String,
    /// The controller (quorum leader), if one is known.
    pub controller: Option<NodeId>,
    /// Raft term this node is in.
    pub term: u64,
    /// This node's quorum role: leader, follower, candidate or learner.
    pub role: String,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub voters: Vec<NodeId>,
    /// On the controller: log entries each voter is behind the controller's last entry.
    pub voter_lag: BTreeMap<NodeId, u64>,
    /// Milliseconds since a quorum last acknowledged this node as leader (leader only).
    pub quorum_ack_age_ms: Option<u64>,
    pub image: Image,
}

/// A shared, swappable snapshot of the [`View`]; readers on any thread (shards included)
/// can wait for the next change.
#[derive(Clone)]
pub struct ClusterView {
    tx: Arc<tokio::sync::watch::Sender<Arc<View>>>,
}

impl Default for ClusterView {
    fn default() -> Self {
        ClusterView {
            tx: Arc::new(tokio::sync::watch::channel(Arc::new(View::default())).0),
        }
    }
}

impl ClusterView {
    pub fn get(&self) -> Arc<View> {
        self.tx.borrow().clone()
    }

    /// A receiver woken at every change (runtime-agnostic: shards await it too).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<Arc<View>> {
        self.tx.subscribe()
    }

    fn update(&self, f: impl FnOnce(&mut View)) {
        self.tx.send_modify(|v| {
            let mut next = (**v).clone();
            f(&mut next);
            *v = Arc::new(next);
        });
    }
}

/// What the node tells the cluster about itself, from the broker's settings.
pub fn registration(
    cfg: &ClusterConfig,
    host: &str,
    kafka_port: u16,
    shards: usize,
    http_port: Option<u16>,
    cluster_id: &str,
    endpoints: Vec<(String, String, u16)>,
) -> NodeRegistration {
    NodeRegistration {
        id: cfg.node_id,
        incarnation: uuid::Uuid::new_v4().to_string(),
        rack: cfg.rack.clone(),
        host: host.to_string(),
        kafka_port,
        shards: shards as u16,
        http_port,
        cluster_id: cluster_id.to_string(),
        controller: cfg.listener.clone(),
        endpoints,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_mistakes_are_named() {
        let v = ClusterConfig::parse_voters("1@127.0.0.1:9093, 2@127.0.0.2:9093").expect("ok");
        assert_eq!(v.len(), 2);
        assert_eq!(v[&2], "127.0.0.2:9093");
        assert!(ClusterConfig::parse_voters("1@a:1,1@b:2")
            .unwrap_err()
            .contains("twice"));
        assert!(ClusterConfig::parse_voters("x@a:1")
            .unwrap_err()
            .contains("not a number"));
        assert!(ClusterConfig::parse_voters("1@nohostport")
            .unwrap_err()
            .contains("host:port"));
        assert!(ClusterConfig::parse_voters("1a:1").is_err());
    }
}
