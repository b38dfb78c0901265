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
    /// A reassignment under way: the replicas before it began (to cancel back to) and the
    /// ones it ends with. While it runs `replicas` holds both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reassignment: Option<Reassignment>,
}

/// A partition's reassignment: from `original` to `target` replicas.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reassignment {
    pub original: Vec<Replica>,
    pub target: Vec<Replica>,
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
    #[serde(default)]
    reassignment: Option<Reassignment>,
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
                reassignment: None,
            },
            _ => PartitionRecord {
                replicas: w.replicas,
                isr: w.isr,
                leader: w.leader,
                leader_epoch: w.leader_epoch,
                partition_epoch: w.partition_epoch,
                reassignment: w.reassignment,
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
            reassignment: None,
        }
    }

    /// Starts moving the partition to `target` replicas (distinct nodes): the new ones are
    /// added as followers outside the ISR; nothing is removed until they are in sync
    /// ([`PartitionRecord::complete_reassignment`]). `None` cancels a running one (back to
    /// the original replicas). An error says why it is refused.
    pub fn reassign(&mut self, target: Option<&[Replica]>) -> Result<(), String> {
        let Some(target) = target else {
            let Some(r) = self.reassignment.take() else {
                return Err("no reassignment is running".into());
            };
            self.finish_move(r.original);
            return Ok(());
        };
        let nodes: std::collections::BTreeSet<NodeId> = target.iter().map(|r| r.node).collect();
        if target.is_empty() || nodes.len() != target.len() {
            return Err("the replicas must be on distinct nodes".into());
        }
        if self.reassignment.is_some() {
            return Err("a reassignment is already running".into());
        }
        if target == self.replicas.as_slice() {
            return Ok(());
        }
        if target
            .iter()
            .any(|t| self.replica_on(t.node).is_some_and(|r| r.shard != t.shard))
        {
            return Err("a replica cannot move between shards of one node".into());
        }
        let original = self.replicas.clone();
        for t in target {
            if self.replica_on(t.node).is_none() {
                self.replicas.push(*t);
            }
        }
        self.reassignment = Some(Reassignment {
            original,
            target: target.to_vec(),
        });
        self.partition_epoch = self.partition_epoch.saturating_add(1);
        Ok(())
    }

    /// Whether every target replica of a running reassignment is in sync.
    pub fn reassignment_ready(&self) -> bool {
        self.reassignment
            .as_ref()
            .is_some_and(|r| r.target.iter().all(|t| self.isr.contains(&t.node)))
    }

    /// Ends a reassignment whose targets are all in sync: the replicas become the target
    /// ones; a leader that is not among them hands over to the first in-sync target.
    pub fn complete_reassignment(
        &mut self,
        partition_epoch: i32,
        live: impl Fn(NodeId) -> bool,
    ) -> bool {
        if partition_epoch != self.partition_epoch || !self.reassignment_ready() {
            return false;
        }
        let Some(r) = self.reassignment.take() else {
            return false;
        };
        let target = r.target;
        self.finish_move(target);
        if self.leader.is_none() {
            let next = self
                .replicas
                .iter()
                .map(|r| r.node)
                .find(|n| self.isr.contains(n) && live(*n));
            if next.is_some() {
                self.set_leader(next);
            }
        }
        true
    }

    /// The replicas become `to`: the ISR keeps its members among them (never emptied: the
    /// leader stays if it would be), a leader outside them hands over to the first in-sync
    /// replica of `to`.
    fn finish_move(&mut self, to: Vec<Replica>) {
        let keep: Vec<NodeId> = to
            .iter()
            .map(|r| r.node)
            .filter(|n| self.isr.contains(n))
            .collect();
        self.replicas = to;
        if keep.is_empty() {
            // Nothing of the new set is in sync: keep the old ISR's leader as the only
            // member (and as a replica), so no unsynced replica can lead.
            if let Some(l) = self.leader_replica() {
                self.replicas.insert(0, l);
                self.isr = vec![l.node];
            }
        } else {
            self.isr = keep;
            if self.leader.is_some_and(|l| !self.isr.contains(&l)) {
                let next = self.isr.first().copied();
                self.set_leader(next);
            }
        }
        self.partition_epoch = self.partition_epoch.saturating_add(1);
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
    fn a_reassignment_adds_then_switches_once_in_sync_or_cancels_back() {
        let r = |node| Replica { node, shard: 0 };
        let mut p = three();
        assert!(p.reassign(Some(&[r(2), r(2)])).is_err(), "one node twice");
        assert!(
            p.reassign(Some(&[Replica { node: 1, shard: 1 }])).is_err(),
            "shard move"
        );
        p.reassign(Some(&[r(4), r(2), r(3)])).expect("started");
        assert_eq!(p.replicas.len(), 4, "old and new while it runs");
        assert!(p.reassign(Some(&[r(5)])).is_err(), "one at a time");
        assert!(!p.reassignment_ready(), "node 4 is not in sync yet");
        let epoch = p.partition_epoch;
        assert!(!p.complete_reassignment(epoch, |_| true));
        assert!(p.alter_isr(0, epoch, &[1, 2, 3, 4], |_| true));
        assert!(!p.complete_reassignment(epoch, |_| true), "stale epoch");
        assert!(p.complete_reassignment(epoch + 1, |_| true));
        assert_eq!(p.replicas, vec![r(4), r(2), r(3)]);
        assert_eq!(p.isr, vec![4, 2, 3]);
        assert_eq!(
            (p.leader, p.leader_epoch),
            (Some(4), 1),
            "the old leader left"
        );
        // Cancelled: back to where it started, the added replica gone from the ISR.
        p.reassign(Some(&[r(1), r(2), r(3)])).expect("started");
        let e = p.partition_epoch;
        assert!(p.alter_isr(1, e, &[4, 2, 3, 1], |_| true));
        p.reassign(None).expect("cancelled");
        assert_eq!(p.replicas, vec![r(4), r(2), r(3)]);
        assert_eq!((p.isr.clone(), p.leader), (vec![4, 2, 3], Some(4)));
        assert!(p.reassign(None).is_err(), "nothing to cancel");
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
