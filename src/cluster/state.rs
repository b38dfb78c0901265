//! The replicated metadata image: what every node of the cluster agrees on, built by applying
//! the quorum's committed commands in log order.
//!
//! Invariant: `apply` is a pure function of the image and the command (plus the command's log
//! index), so every node that applies the same log reaches the same image. Nothing here does
//! I/O or knows about Raft, shards or logs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::partition::{PartitionRecord, Replica};

/// A node's identity in the cluster (Kafka's `node.id`).
pub type NodeId = u64;

/// What a node tells the cluster about itself when it starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRegistration {
    pub id: NodeId,
    /// A random id per process start: a restart is a new incarnation.
    pub incarnation: String,
    /// `broker.rack`; the node's id when unset, so each machine is its own failure domain.
    pub rack: String,
    /// Host clients reach this node's shards at.
    pub host: String,
    /// Kafka port of shard 0; shard i listens on `kafka_port + i`.
    pub kafka_port: u16,
    pub shards: u16,
    /// The metrics/HTTP port, if any.
    pub http_port: Option<u16>,
    /// The cluster id this node proposes (its own from before it joined); the first
    /// registration's becomes the cluster's.
    #[serde(default)]
    pub cluster_id: String,
    /// Where this node's controller listens (`controller.listener`): a node that is not a
    /// voter is added to the quorum as a learner at this address, to receive the log.
    #[serde(default)]
    pub controller: String,
    /// (listener name, host, port of shard 0) clients reach the node on; empty in records
    /// from before listeners: one PLAINTEXT listener at `host:kafka_port`.
    #[serde(default)]
    pub endpoints: Vec<(String, String, u16)>,
}

/// A node as the image holds it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeRecord {
    pub registration: NodeRegistration,
    /// Log index of the registration that started this incarnation (Kafka's broker epoch).
    pub epoch: u64,
    /// Fenced nodes missed their session timeout: no leadership, left out of Metadata.
    pub fenced: bool,
    /// Being decommissioned: no new partitions or coordinators are placed on it (kept
    /// across its restarts until cancelled or it is unregistered).
    #[serde(default)]
    pub draining: bool,
}

/// A topic as the cluster agrees on it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    pub id: [u8; 16],
    /// Topic-level config overrides (Kafka names).
    pub configs: BTreeMap<String, String>,
    /// Index = partition number.
    pub partitions: Vec<PartitionRecord>,
}

/// A change to the image, proposed through the quorum's leader.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Command {
    /// A node (re)starting; a new incarnation gets a new epoch and is unfenced.
    Register(NodeRegistration),
    /// The controller saw no heartbeat from `id` for a session timeout.
    Fence {
        id: NodeId,
        epoch: u64,
    },
    /// A fenced node is heartbeating again with the same incarnation.
    Unfence {
        id: NodeId,
        epoch: u64,
    },
    /// The node leaves the cluster: refused while it runs or still holds partitions.
    Unregister {
        id: NodeId,
    },
    /// Starts (or cancels) decommissioning a node: placement passes it by.
    SetDraining {
        id: NodeId,
        draining: bool,
    },
    /// A new topic with its placement (decided by the controller before proposing).
    CreateTopic {
        name: String,
        topic: TopicRecord,
    },
    DeleteTopic {
        name: String,
    },
    /// A change of the SCRAM credentials.
    Security(crate::security::store::SecurityChange),
    /// Reserves `count` idempotent-producer ids for one node, starting no lower than
    /// `at_least` (ids a node handed out before it joined the cluster are never reused).
    AllocateProducerIds {
        count: i64,
        at_least: i64,
    },
    /// More partitions for a topic, placed by the controller (appended in order).
    AddPartitions {
        name: String,
        /// The partition count the proposer saw: a concurrent change makes this stale.
        from: usize,
        partitions: Vec<PartitionRecord>,
    },
    /// A partition leader's change of its ISR (Kafka's AlterPartition), valid only for the
    /// epochs it was decided in.
    AlterIsr {
        topic: String,
        partition: u32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    /// Moves a partition to `target` replicas (`None`: cancels a running move).
    Reassign {
        topic: String,
        partition: u32,
        target: Option<Vec<Replica>>,
    },
    /// The controller ends a reassignment whose target replicas are all in sync.
    CompleteReassign {
        topic: String,
        partition: u32,
        partition_epoch: i32,
    },
    /// The controller moves a partition's leadership back to its preferred replica.
    PreferLeader {
        topic: String,
        partition: u32,
        leader_epoch: i32,
    },
    /// A topic's config overrides, replaced whole.
    SetTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// Dynamic broker settings of every node (`node: None`) or one, replaced whole.
    SetBrokerConfigs {
        node: Option<NodeId>,
        configs: BTreeMap<String, String>,
    },
}

/// What applying a command answered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Outcome {
    #[default]
    Done,
    /// The node's epoch after a registration.
    Registered { epoch: u64 },
    /// The command named a node or epoch the image no longer has.
    Stale,
    /// A topic of that name exists already.
    TopicExists,
    /// No topic of that name.
    NoSuchTopic,
    /// Producer ids `[start, start + count)` are reserved for the proposer.
    ProducerIds { start: i64 },
    /// The command is not allowed in this state; why.
    Refused(String),
    /// A security change refused, with Kafka's error code.
    Denied { code: i16, message: String },
    /// No node of that id is registered.
    NoSuchNode,
}

fn done_or_stale(applied: bool) -> Outcome {
    if applied {
        Outcome::Done
    } else {
        Outcome::Stale
    }
}

/// The agreed state of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Image {
    pub nodes: BTreeMap<NodeId, NodeRecord>,
    #[serde(default)]
    pub topics: BTreeMap<String, TopicRecord>,
    /// The first idempotent-producer id not yet reserved by any node.
    #[serde(default)]
    pub next_producer_id: i64,
    /// Kafka's cluster id, the same on every node (set by the first registration).
    #[serde(default)]
    pub cluster_id: String,
    /// SCRAM credentials.
    #[serde(default)]
    pub security: crate::security::store::SecurityState,
    /// Dynamic broker settings (cluster-wide and per node).
    #[serde(default)]
    pub broker_configs: crate::settings::dynamic::DynamicConfigs,
}

impl Image {
    /// Applies one committed command found at log `index`.
    pub fn apply(&mut self, cmd: &Command, index: u64) -> Outcome {
        match cmd {
            Command::Register(reg) => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = reg.cluster_id.clone();
                }
                let old = self.nodes.get(&reg.id);
                let same = old.is_some_and(|n| n.registration.incarnation == reg.incarnation);
                let epoch = match old {
                    Some(n) if same => n.epoch,
                    _ => index,
                };
                let draining = old.is_some_and(|n| n.draining);
                if old.is_some() && !same {
                    // A restart: the old incarnation's leadership and ISR places go first
                    // (it may have lost unflushed data); the new one catches up like any
                    // returning replica.
                    if let Some(n) = self.nodes.get_mut(&reg.id) {
                        n.fenced = true;
                    }
                    self.node_lost(reg.id);
                }
                self.nodes.insert(
                    reg.id,
                    NodeRecord {
                        registration: reg.clone(),
                        epoch,
                        fenced: false,
                        draining,
                    },
                );
                self.node_back(reg.id);
                Outcome::Registered { epoch }
            }
            Command::Fence { id, epoch } | Command::Unfence { id, epoch } => {
                let fence = matches!(cmd, Command::Fence { .. });
                match self.nodes.get_mut(id) {
                    Some(n) if n.epoch == *epoch => {
                        n.fenced = fence;
                        if fence {
                            self.node_lost(*id);
                        } else {
                            self.node_back(*id);
                        }
                        Outcome::Done
                    }
                    _ => Outcome::Stale,
                }
            }
            Command::Unregister { id } => {
                let Some(node) = self.nodes.get(id) else {
                    return Outcome::NoSuchNode;
                };
                if !node.fenced {
                    return Outcome::Refused(format!(
                        "node {id} is running: stop it first (it is unregistered once fenced)"
                    ));
                }
                let held = self.partitions_of(*id);
                if let Some(first) = held.first() {
                    return Outcome::Refused(format!(
                        "node {id} still holds {} partitions ({first} …): they must move first",
                        held.len()
                    ));
                }
                self.nodes.remove(id);
                Outcome::Done
            }
            Command::SetDraining { id, draining } => match self.nodes.get_mut(id) {
                Some(n) => {
                    n.draining = *draining;
                    Outcome::Done
                }
                None => Outcome::NoSuchNode,
            },
            Command::CreateTopic { name, topic } => {
                if self.topics.contains_key(name) {
                    return Outcome::TopicExists;
                }
                self.topics.insert(name.clone(), topic.clone());
                Outcome::Done
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => Outcome::Done,
                None => Outcome::NoSuchTopic,
            },
            Command::AddPartitions {
                name,
                from,
                partitions,
            } => match self.topics.get_mut(name) {
                Some(t) if t.partitions.len() == *from => {
                    t.partitions.extend(partitions.iter().cloned());
                    Outcome::Done
                }
                Some(_) => Outcome::Stale,
                None => Outcome::NoSuchTopic,
            },
            Command::SetTopicConfigs { name, configs } => match self.topics.get_mut(name) {
                Some(t) => {
                    t.configs = configs.clone();
                    Outcome::Done
                }
                None => Outcome::NoSuchTopic,
            },
            Command::SetBrokerConfigs { node, configs } => {
                use crate::settings::dynamic::Scope;
                let scope = match node {
                    None => Scope::Cluster,
                    Some(id) if self.nodes.contains_key(id) => Scope::Node(*id),
                    Some(_) => return Outcome::NoSuchNode,
                };
                self.broker_configs.set(scope, configs.clone());
                Outcome::Done
            }
            Command::AlterIsr {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
            } => self.with_partition(topic, *partition, |p, live| {
                done_or_stale(p.alter_isr(*leader_epoch, *partition_epoch, isr, live))
            }),
            Command::Reassign {
                topic,
                partition,
                target,
            } => {
                if let Some(t) = target {
                    let unknown = t.iter().find(|r| {
                        self.nodes
                            .get(&r.node)
                            .is_none_or(|n| r.shard >= n.registration.shards)
                    });
                    if let Some(r) = unknown {
                        return Outcome::Refused(format!(
                            "node {} has no shard {}",
                            r.node, r.shard
                        ));
                    }
                }
                self.with_partition(topic, *partition, |p, _| {
                    match p.reassign(target.as_deref()) {
                        Ok(()) => Outcome::Done,
                        Err(why) => Outcome::Refused(why),
                    }
                })
            }
            Command::CompleteReassign {
                topic,
                partition,
                partition_epoch,
            } => self.with_partition(topic, *partition, |p, live| {
                done_or_stale(p.complete_reassignment(*partition_epoch, live))
            }),
            Command::PreferLeader {
                topic,
                partition,
                leader_epoch,
            } => self.with_partition(topic, *partition, |p, live| {
                done_or_stale(p.prefer_leader(*leader_epoch, live))
            }),
            Command::Security(change) => match self.security.apply(change) {
                Ok(()) => Outcome::Done,
                Err(r) => Outcome::Denied {
                    code: r.code,
                    message: r.message,
                },
            },
            Command::AllocateProducerIds { count, at_least } => {
                let start = self.next_producer_id.max(*at_least);
                self.next_producer_id = start.saturating_add((*count).max(1));
                Outcome::ProducerIds { start }
            }
        }
    }

    /// Applies `f` to partition `partition` of `topic`, with a liveness test over the
    /// nodes (for the commands that change one partition).
    fn with_partition(
        &mut self,
        topic: &str,
        partition: u32,
        f: impl FnOnce(&mut PartitionRecord, &dyn Fn(NodeId) -> bool) -> Outcome,
    ) -> Outcome {
        let nodes = &self.nodes;
        let live = |n: NodeId| nodes.get(&n).is_some_and(|r| !r.fenced);
        match self
            .topics
            .get_mut(topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
        {
            Some(p) => f(p, &live),
            None => Outcome::NoSuchTopic,
        }
    }

    /// The partitions (`topic-index`) with a replica on node `id`, internal topics
    /// included.
    pub fn partitions_of(&self, id: NodeId) -> Vec<String> {
        self.all_partitions()
            .filter(|(_, _, p)| p.replica_on(id).is_some())
            .map(|(name, i, _)| format!("{name}-{i}"))
            .collect()
    }

    /// Every partition of every topic: (topic, index, record).
    pub fn all_partitions(&self) -> impl Iterator<Item = (&String, u32, &PartitionRecord)> {
        self.topics.iter().flat_map(|(name, t)| {
            t.partitions
                .iter()
                .enumerate()
                .map(move |(i, p)| (name, i as u32, p))
        })
    }

    /// Node `id` is gone (fenced, or restarted): elections where it led, out of ISRs.
    fn node_lost(&mut self, id: NodeId) {
        let nodes = &self.nodes;
        let live = |n: NodeId| nodes.get(&n).is_some_and(|r| !r.fenced);
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                p.node_lost(id, live);
            }
        }
    }

    /// Node `id` is live: it leads the leaderless partitions whose ISR holds it.
    fn node_back(&mut self, id: NodeId) {
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                p.node_back(id);
            }
        }
    }

    /// Nodes clients may use: registered and not fenced.
    pub fn live_nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values().filter(|n| !n.fenced)
    }

    /// Nodes new replicas may go to: live and not draining.
    pub fn placeable_nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.live_nodes().filter(|n| !n.draining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: NodeId, inc: &str) -> NodeRegistration {
        NodeRegistration {
            id,
            incarnation: inc.into(),
            rack: id.to_string(),
            host: "127.0.0.1".into(),
            kafka_port: 9092,
            shards: 2,
            http_port: None,
            cluster_id: format!("c{id}"),
            controller: String::new(),
            endpoints: Vec::new(),
        }
    }

    #[test]
    fn epochs_follow_incarnations_and_stale_fences_are_ignored() {
        let mut img = Image::default();
        assert_eq!(
            img.apply(&Command::Register(reg(1, "a")), 5),
            Outcome::Registered { epoch: 5 }
        );
        assert_eq!(
            img.cluster_id, "c1",
            "the first registration names the cluster"
        );
        img.apply(&Command::Register(reg(2, "a")), 6);
        assert_eq!(img.cluster_id, "c1");
        assert!(matches!(
            img.apply(&Command::Unregister { id: 2 }, 7),
            Outcome::Refused(_)
        ));
        // The same incarnation registering again keeps its epoch.
        assert_eq!(
            img.apply(&Command::Register(reg(1, "a")), 9),
            Outcome::Registered { epoch: 5 }
        );
        assert_eq!(
            img.apply(&Command::Fence { id: 1, epoch: 5 }, 10),
            Outcome::Done
        );
        assert_eq!(img.live_nodes().count(), 1, "node 2 only");
        // A restart is a new incarnation: new epoch, unfenced; a fence for the old epoch
        // (decided before the restart) no longer applies.
        assert_eq!(
            img.apply(&Command::Register(reg(1, "b")), 11),
            Outcome::Registered { epoch: 11 }
        );
        assert_eq!(
            img.apply(&Command::Fence { id: 1, epoch: 5 }, 12),
            Outcome::Stale
        );
        assert_eq!(img.live_nodes().count(), 2);
        for id in [1, 2] {
            let epoch = img.nodes[&id].epoch;
            img.apply(&Command::Fence { id, epoch }, 13);
            assert_eq!(img.apply(&Command::Unregister { id }, 13), Outcome::Done);
        }
        assert!(img.nodes.is_empty());
        assert_eq!(
            img.apply(&Command::Unregister { id: 1 }, 13),
            Outcome::NoSuchNode
        );
        assert_eq!(
            img.apply(&Command::Unfence { id: 1, epoch: 11 }, 14),
            Outcome::Stale
        );
    }

    #[test]
    fn placement_spreads_over_live_nodes_and_respects_the_limit() {
        let mut img = Image::default();
        for id in 1..=3 {
            img.apply(&Command::Register(reg(id, "a")), id);
        }
        img.apply(&Command::Fence { id: 3, epoch: 3 }, 4);
        let placed = img.place(8, 1, 100).expect("fits");
        // Two live nodes of two shards each: two partitions per shard, none on node 3.
        let mut load = BTreeMap::new();
        for r in &placed {
            *load
                .entry((r.replicas[0].node, r.replicas[0].shard))
                .or_insert(0) += 1;
        }
        assert_eq!(load.values().copied().collect::<Vec<_>>(), vec![2; 4]);
        assert!(placed.iter().all(|p| p.replicas[0].node != 3));
        let create = Command::CreateTopic {
            name: "t".into(),
            topic: TopicRecord {
                id: [1; 16],
                configs: BTreeMap::new(),
                partitions: placed,
            },
        };
        assert_eq!(img.apply(&create, 5), Outcome::Done);
        assert_eq!(img.apply(&create, 6), Outcome::TopicExists);
        // The next topic goes where there is room; the limit is kept.
        assert!(
            img.place(5, 1, 3).is_err(),
            "4 shards with 1 free slot each"
        );
        assert_eq!(img.place(4, 1, 3).expect("fits").len(), 4);
        let delete = Command::DeleteTopic { name: "t".into() };
        assert_eq!(img.apply(&delete, 7), Outcome::Done);
        assert_eq!(img.apply(&delete, 8), Outcome::NoSuchTopic);
    }

    #[test]
    fn a_draining_node_gets_nothing_new_and_leaves_only_when_stopped_and_empty() {
        let mut img = Image::default();
        for id in 1..=2 {
            img.apply(&Command::Register(reg(id, "a")), id);
        }
        let placed = img.place(4, 1, 100).expect("fits");
        assert!(placed.iter().any(|p| p.replicas[0].node == 2));
        let topic = TopicRecord {
            id: [1; 16],
            configs: BTreeMap::new(),
            partitions: placed,
        };
        let create = Command::CreateTopic {
            name: "t".into(),
            topic,
        };
        img.apply(&create, 3);
        let drain = Command::SetDraining {
            id: 2,
            draining: true,
        };
        assert_eq!(img.apply(&drain, 4), Outcome::Done);
        assert!(img
            .place(6, 1, 100)
            .expect("fits")
            .iter()
            .all(|p| p.replicas[0].node == 1));
        // A restart keeps it draining.
        img.apply(&Command::Register(reg(2, "b")), 5);
        assert!(img.nodes[&2].draining);
        assert!(img
            .place(1, 1, 100)
            .expect("fits")
            .iter()
            .all(|p| p.replicas[0].node == 1));
        // Stopped (fenced) but still holding partitions: refused, naming one.
        img.apply(&Command::Fence { id: 2, epoch: 5 }, 6);
        match img.apply(&Command::Unregister { id: 2 }, 7) {
            Outcome::Refused(why) => assert!(why.contains("2 partitions (t-"), "{why}"),
            other => panic!("{other:?}"),
        }
        img.apply(&Command::DeleteTopic { name: "t".into() }, 8);
        assert_eq!(img.apply(&Command::Unregister { id: 2 }, 9), Outcome::Done);
        assert_eq!(img.apply(&drain, 10), Outcome::NoSuchNode);
    }

    #[test]
    fn producer_id_blocks_never_overlap_and_skip_ids_used_before_joining() {
        let mut img = Image::default();
        let mut alloc = |at_least| match img.apply(
            &Command::AllocateProducerIds {
                count: 1000,
                at_least,
            },
            1,
        ) {
            Outcome::ProducerIds { start } => start,
            other => panic!("{other:?}"),
        };
        assert_eq!(alloc(0), 0);
        assert_eq!(alloc(0), 1000);
        // A node that handed out ids up to 5000 alone gets a block above them.
        assert_eq!(alloc(5000), 5000);
        assert_eq!(alloc(0), 6000);
    }
}
