//! One partition as the metadata image holds it: its replicas, in-sync replicas, leader and
//! epochs, and the elections that follow from nodes leaving and returning.
//!
//! Invariants (pure functions, applied identically on every node):
//! - Leaders come from the ISR only and must be live (no unclean election).
//! - The ISR is never empty: a lost node leaves it unless it is the last member (as Kafka
//!   keeps the last ISR member, so the partition knows whom to wait for).
//! - Every change of leader bumps the leader epoch; every change of leader or ISR bumps the
//!   partition epoch. Epochs never go down.

use serde::{Deserialize, Serialize};

use super::state::NodeId;

/// Where one replica lives: a node and the shard (core) on it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Replica {
    pub node: NodeId,
    pub shard: u16,
}

/// A partition's replicas and leadership.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(from = "PartitionWire")]
pub struct PartitionRecord {
    /// Replicas in preference order, on distinct nodes; the first is the preferred leader.
    pub replicas: Vec<Replica>,
    /// Nodes of the in-sync replicas, in replica order.
    pub isr: Vec<NodeId>,
    /// The leading replica's node; `None` while no ISR member is live.
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// The stored form, which also reads records written before replicas existed
/// (`{node, shard, leader_epoch}`: one replica that leads).
#[derive(Deserialize)]
struct PartitionWire {
    #[serde(default)]
    replicas: Vec<Replica>,
    #[serde(default)]
    isr: Vec<NodeId>,
    #[serde(default)]
    leader: Option<NodeId>,
    #[serde(default)]
    leader_epoch: i32,
    #[serde(default)]
    partition_epoch: i32,
    node: Option<NodeId>,
    shard: Option<u16>,
}

impl From<PartitionWire> for PartitionRecord {
    fn from(w: PartitionWire) -> Self {
        match (w.replicas.is_empty(), w.node) {
            (true, Some(node)) => PartitionRecord {
                replicas: vec![Replica {
                    node,
                    shard: w.shard.unwrap_or(0),
                }],
                isr: vec![node],
                leader: Some(node),
                leader_epoch: w.leader_epoch,
                partition_epoch: w.partition_epoch,
            },
            _ => PartitionRecord {
                replicas: w.replicas,
                isr: w.isr,
                leader: w.leader,
                leader_epoch: w.leader_epoch,
                partition_epoch: w.partition_epoch,
            },
        }
    }
}

impl PartitionRecord {
    /// A new partition on `replicas`: all in sync, the first leading, epoch 0.
    pub fn new(replicas: Vec<Replica>) -> PartitionRecord {
        PartitionRecord {
            isr: replicas.iter().map(|r| r.node).collect(),
            leader: replicas.first().map(|r| r.node),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    /// The replica on `node`, if it has one.
    pub fn replica_on(&self, node: NodeId) -> Option<Replica> {
        self.replicas.iter().copied().find(|r| r.node == node)
    }

    /// The leading replica.
    pub fn leader_replica(&self) -> Option<Replica> {
        self.leader.and_then(|n| self.replica_on(n))
    }

    /// `node` stopped (fenced, or restarted as a new incarnation that must catch up): it
    /// leaves the ISR unless it is the last member, and if it led, the first live ISR
    /// member in replica order leads instead (or none). Whether anything changed.
    pub fn node_lost(&mut self, node: NodeId, live: impl Fn(NodeId) -> bool) -> bool {
        if self.replica_on(node).is_none() {
            return false;
        }
        let mut changed = false;
        if self.isr.len() > 1 && self.isr.contains(&node) {
            self.isr.retain(|n| *n != node);
            changed = true;
        }
        if self.leader == Some(node) {
            let next = self
                .replicas
                .iter()
                .map(|r| r.node)
                .find(|n| *n != node && self.isr.contains(n) && live(*n));
            self.set_leader(next);
            changed = true;
        }
        if changed {
            self.partition_epoch = self.partition_epoch.saturating_add(1);
        }
        changed
    }

    /// `node` is live again: a leaderless partition whose ISR holds it is led by it.
    pub fn node_back(&mut self, node: NodeId) -> bool {
        if self.leader.is_none() && self.isr.contains(&node) {
            self.set_leader(Some(node));
            self.partition_epoch = self.partition_epoch.saturating_add(1);
            return true;
        }
        false
    }

    /// The leader's ISR change (Kafka's AlterPartition): applied only if it was decided for
    /// this leader epoch and partition epoch, keeps the leader in, names only replicas,
    /// and adds only live ones. Whether it was applied.
    pub fn alter_isr(
        &mut self,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[NodeId],
        live: impl Fn(NodeId) -> bool,
    ) -> bool {
        let valid = leader_epoch == self.leader_epoch
            && partition_epoch == self.partition_epoch
            && self.leader.is_some_and(|l| isr.contains(&l))
            && isr.iter().all(|n| self.replica_on(*n).is_some())
            && isr.iter().all(|n| self.isr.contains(n) || live(*n));
        if !valid {
            return false;
        }
        // Kept in replica order, each once.
        self.isr = self
            .replicas
            .iter()
            .map(|r| r.node)
            .filter(|n| isr.contains(n))
            .collect();
        self.partition_epoch = self.partition_epoch.saturating_add(1);
        true
    }

    /// Moves leadership back to the preferred replica (the first) if it is in the ISR and
    /// live, and the move was decided at the current leader epoch. Whether it moved.
    pub fn prefer_leader(&mut self, leader_epoch: i32, live: impl Fn(NodeId) -> bool) -> bool {
        let Some(preferred) = self.replicas.first().map(|r| r.node) else {
            return false;
        };
        if leader_epoch != self.leader_epoch
            || self.leader == Some(preferred)
            || !self.isr.contains(&preferred)
            || !live(preferred)
        {
            return false;
        }
        self.set_leader(Some(preferred));
        self.partition_epoch = self.partition_epoch.saturating_add(1);
        true
    }

    /// Whether the preferred replica could lead but another does.
    pub fn imbalanced(&self, live: impl Fn(NodeId) -> bool) -> bool {
        let preferred = self.replicas.first().map(|r| r.node);
        preferred.is_some_and(|p| self.leader != Some(p) && self.isr.contains(&p) && live(p))
    }

    fn set_leader(&mut self, leader: Option<NodeId>) {
        self.leader = leader;
        self.leader_epoch = self.leader_epoch.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> PartitionRecord {
        PartitionRecord::new(
            [1, 2, 3]
                .iter()
                .map(|n| Replica { node: *n, shard: 0 })
                .collect(),
        )
    }

    #[test]
    fn leaders_move_within_the_isr_and_epochs_only_grow() {
        let mut p = three();
        assert_eq!((p.leader, p.leader_epoch), (Some(1), 0));
        assert!(p.node_lost(1, |n| n != 1));
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (Some(2), 1, 1)
        );
        assert_eq!(p.isr, vec![2, 3]);
        // A follower lost: out of the ISR, the leader stays.
        assert!(p.node_lost(3, |n| n == 2));
        assert_eq!(
            (p.leader, p.leader_epoch, p.isr.clone()),
            (Some(2), 1, vec![2])
        );
        // The last ISR member lost: no leader, but it stays in the ISR to be waited for.
        assert!(p.node_lost(2, |_| false));
        assert_eq!((p.leader, p.isr.clone()), (None, vec![2]));
        // Node 1 returns: it is not in the ISR, so it may not lead (no unclean election).
        assert!(!p.node_back(1));
        assert!(p.node_back(2));
        assert_eq!((p.leader, p.leader_epoch), (Some(2), 3));
        assert!(!p.node_lost(9, |_| true), "not a replica");
    }

    #[test]
    fn isr_changes_need_the_current_epochs_and_keep_the_leader() {
        let mut p = three();
        assert!(!p.alter_isr(0, 0, &[2, 3], |_| true), "leader left out");
        assert!(!p.alter_isr(1, 0, &[1, 2], |_| true), "stale leader epoch");
        assert!(!p.alter_isr(0, 0, &[1, 9], |_| true), "not a replica");
        assert!(p.alter_isr(0, 0, &[1, 2], |_| true));
        assert_eq!((p.isr.clone(), p.partition_epoch), (vec![1, 2], 1));
        assert!(
            !p.alter_isr(0, 0, &[1, 2, 3], |_| true),
            "stale partition epoch"
        );
        assert!(
            !p.alter_isr(0, 1, &[3, 1, 2], |n| n != 3),
            "a fenced node cannot join"
        );
        assert!(p.alter_isr(0, 1, &[3, 1, 2], |_| true));
        assert_eq!(p.isr, vec![1, 2, 3], "replica order");
    }

    #[test]
    fn leadership_returns_to_the_preferred_replica_once_it_is_in_sync() {
        let mut p = three();
        p.node_lost(1, |n| n != 1);
        assert_eq!(p.leader, Some(2));
        assert!(!p.imbalanced(|_| true), "node 1 is not in the ISR");
        assert!(p.alter_isr(1, 1, &[1, 2, 3], |_| true));
        assert!(p.imbalanced(|_| true));
        assert!(!p.prefer_leader(0, |_| true), "stale epoch");
        assert!(!p.prefer_leader(1, |n| n != 1), "not live");
        assert!(p.prefer_leader(1, |_| true));
        assert_eq!((p.leader, p.leader_epoch), (Some(1), 2));
        assert!(!p.imbalanced(|_| true));
    }

    #[test]
    fn records_from_before_replicas_read_as_one_leading_replica() {
        let old: PartitionRecord =
            serde_json::from_str(r#"{"node":2,"shard":1,"leader_epoch":4}"#).expect("old");
        assert_eq!(old.replicas, vec![Replica { node: 2, shard: 1 }]);
        assert_eq!(
            (old.leader, old.isr.clone(), old.leader_epoch),
            (Some(2), vec![2], 4)
        );
        let p = three();
        let back: PartitionRecord =
            serde_json::from_str(&serde_json::to_string(&p).expect("json")).expect("new");
        assert_eq!(back, p);
    }
}
