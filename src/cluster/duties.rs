//! What the controller does besides answering: fencing silent nodes, keeping the
//! quorum's learners to the registered broker-only nodes, ending reassignments and moving
//! replicas off draining nodes, restoring preferred leaders.
//!
//! Invariant: every decision is a command committed through Raft (valid only at the epochs
//! it was decided at); each pass is bounded and runs only while this node leads.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use openraft::{BasicNode, ChangeMembers};
use tracing::{debug, info, warn};

use super::node::{Node, CALL_DEADLINE, PREFERRED_LEADER_BATCH};
use super::state::{Command, NodeId};

/// A node silent this long (no heartbeat, or none since this controller took over) whose
/// controller listener has refused connections for [`REFUSED_FOR`] is fenced before its
/// session times out: no process listens there.
const DEAD_AFTER: Duration = Duration::from_millis(100);
const REFUSED_FOR: Duration = Duration::from_millis(200);

impl Node {
    /// On the controller: fences nodes silent for a session timeout, or silent briefly while
    /// their listener refuses connections. Returns since when this node has led (every
    /// node, and every new incarnation from when it is first seen, gets a full session
    /// timeout of grace).
    pub(super) async fn fence_silent_nodes(&self, led_since: Option<Instant>) -> Option<Instant> {
        if !self.ctl.leads() {
            if let Ok(mut seen) = self.ctl.seen.lock() {
                seen.clear();
            }
            return None;
        }
        let since = led_since.unwrap_or_else(Instant::now);
        let timeout = self.ctl.cfg.session_timeout;
        // A node that has not heartbeated for a while and whose controller listener
        // refuses every connection meanwhile has no process running: fenced without
        // waiting out the session (a node cut off by the network still gets the whole
        // session timeout).
        let dead_after = DEAD_AFTER.min(timeout);
        let silent: Vec<(NodeId, u64, &str)> = {
            let image = self.ctl.view.get();
            let Ok(mut seen) = self.ctl.seen.lock() else {
                return Some(since);
            };
            image
                .image
                .live_nodes()
                .filter_map(|n| {
                    let id = n.registration.id;
                    // An incarnation not heard from yet is timed from now.
                    let (_, heard) = *seen
                        .entry(id)
                        .and_modify(|e| {
                            if e.0 != n.epoch {
                                *e = (n.epoch, Instant::now());
                            }
                        })
                        .or_insert_with(|| (n.epoch, Instant::now()));
                    let silent = heard.max(since).elapsed();
                    let refused = self.ctl.refusals.refused_for(id);
                    if silent > timeout {
                        Some((id, n.epoch, "no heartbeat within the session timeout"))
                    } else if silent > dead_after && refused.is_some_and(|r| r > REFUSED_FOR) {
                        Some((
                            id,
                            n.epoch,
                            "silent and its controller listener refuses connections (no process)",
                        ))
                    } else {
                        None
                    }
                })
                .collect()
        };
        for (id, epoch, why) in silent {
            warn!(node = id, epoch, "{why}; fencing the node");
            if let Err(e) = self.ctl.propose_here(Command::Fence { id, epoch }).await {
                debug!(node = id, "fence not committed: {e}");
            }
        }
        Some(since)
    }

    /// On the controller: moves leadership back to preferred replicas that are in sync
    /// (a bounded batch per pass; each move is valid only at the epoch it was decided in).
    pub(super) async fn prefer_leaders(&self) {
        let moves = self.ctl.view.get().image.imbalanced(PREFERRED_LEADER_BATCH);
        for (topic, partition, leader_epoch) in moves {
            info!(%topic, partition, "moving leadership back to the preferred replica");
            let cmd = Command::PreferLeader {
                topic,
                partition,
                leader_epoch,
            };
            if let Err(e) = self.ctl.propose_here(cmd).await {
                debug!("preferred leader move not committed: {e}");
                return;
            }
        }
    }

    /// On the controller: ends reassignments whose target replicas are in sync, and starts
    /// moving replicas off draining nodes (decommissioning), a bounded batch per pass.
    pub(super) async fn move_replicas(&self) {
        let image = self.ctl.view.get().image.clone();
        for (topic, partition, partition_epoch) in image.reassignments_ready(PREFERRED_LEADER_BATCH)
        {
            info!(%topic, partition, "reassignment complete: its new replicas are in sync");
            let cmd = Command::CompleteReassign {
                topic,
                partition,
                partition_epoch,
            };
            if let Err(e) = self.ctl.propose_here(cmd).await {
                debug!("reassignment completion not committed: {e}");
                return;
            }
        }
        for (topic, partition, target) in image.drain_moves(PREFERRED_LEADER_BATCH) {
            info!(%topic, partition, ?target, "moving a replica off a draining node");
            let cmd = Command::Reassign {
                topic,
                partition,
                target: Some(target),
            };
            if let Err(e) = self.ctl.propose_here(cmd).await {
                debug!("drain move not committed: {e}");
                return;
            }
        }
    }

    /// On the controller: makes the quorum's learners the registered nodes that are not
    /// voters (each at the controller address it registered), so every broker-only node
    /// receives the metadata log, and a node that left stops receiving it. Each change is
    /// a membership entry committed through Raft; one per tick at most.
    pub(super) async fn sync_learners(&self) {
        let membership = self.ctl.raft.metrics().borrow().membership_config.clone();
        let membership = membership.membership();
        let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
        let known: BTreeMap<NodeId, String> = membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let image = self.ctl.view.get();
        let wanted: BTreeMap<NodeId, String> = image
            .image
            .nodes
            .values()
            .map(|n| &n.registration)
            .filter(|r| !voters.contains(&r.id) && !r.controller.is_empty())
            .map(|r| (r.id, r.controller.clone()))
            .collect();
        let change = if let Some((id, addr)) =
            wanted.iter().find(|(id, addr)| known.get(id) != Some(addr))
        {
            info!(node = id, controller = %addr, "adding a broker-only node to the quorum as a learner");
            // Adds the learner, or moves one whose address changed (never a voter: safe).
            ChangeMembers::SetNodes(BTreeMap::from([(*id, BasicNode::new(addr))]))
        } else if let Some(id) = known
            .keys()
            .find(|id| !voters.contains(id) && !wanted.contains_key(id))
        {
            info!(
                node = id,
                "removing an unregistered node's learner from the quorum"
            );
            ChangeMembers::RemoveNodes(std::collections::BTreeSet::from([*id]))
        } else {
            return;
        };
        match tokio::time::timeout(CALL_DEADLINE, self.ctl.raft.change_membership(change, true))
            .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => debug!("learner change not committed: {e}"),
            Err(_) => debug!("learner change not committed within {CALL_DEADLINE:?}"),
        }
    }
}
