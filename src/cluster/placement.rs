//! Where new partitions' replicas go: over the live, non-draining nodes' shards, each
//! partition's replicas on distinct nodes (and distinct racks while there are enough),
//! leaders and replicas balanced by count, a per-shard limit respected.
//!
//! Invariant: a pure function of the image, so the placement a node proposes is the one
//! the committed command carries; nothing here is applied, only proposed.

use std::collections::{BTreeMap, BTreeSet};

use super::state::{Image, NodeId, PartitionRecord, Replica};

/// Why partitions could not be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlaceError {
    /// Fewer live, non-draining nodes than the replication factor asks for.
    TooFewNodes { replication: usize, nodes: usize },
    /// The shards are full (`topic.partitions.per.shard`).
    NoRoom,
}

impl std::fmt::Display for PlaceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlaceError::TooFewNodes { replication, nodes } => write!(
                f,
                "replication factor {replication} is larger than the {nodes} available node(s)"
            ),
            PlaceError::NoRoom => write!(f, "the partitions do not fit on the live nodes' shards"),
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Load {
    replicas: usize,
    leaders: usize,
}

impl Image {
    /// Replicas each (node, shard) holds, leaders among them.
    fn shard_loads(&self) -> BTreeMap<(NodeId, u16), Load> {
        let mut out: BTreeMap<(NodeId, u16), Load> = BTreeMap::new();
        for t in self.topics.values() {
            for p in &t.partitions {
                for (i, r) in p.replicas.iter().enumerate() {
                    let l = out.entry((r.node, r.shard)).or_default();
                    l.replicas += 1;
                    l.leaders += usize::from(i == 0);
                }
            }
        }
        out
    }

    /// Replicas each (node, shard) holds (for the per-shard limit).
    pub fn partitions_per_shard(&self) -> BTreeMap<(NodeId, u16), usize> {
        self.shard_loads()
            .into_iter()
            .map(|(k, l)| (k, l.replicas))
            .collect()
    }

    /// Places `count` new partitions of `replication` replicas each. The first replica
    /// (the preferred leader) goes to the shard with the fewest preferred leaders, the
    /// others to the least loaded shards of other nodes, on other racks first; ties go
    /// round the nodes from a different one per partition, so followers spread too.
    pub fn place(
        &self,
        count: usize,
        replication: usize,
        per_shard_limit: usize,
    ) -> Result<Vec<PartitionRecord>, PlaceError> {
        let eligible: Vec<(NodeId, String, u16)> = self
            .placeable_nodes()
            .map(|n| {
                (
                    n.registration.id,
                    n.registration.rack.clone(),
                    n.registration.shards,
                )
            })
            .collect();
        let replication = replication.max(1);
        if eligible.len() < replication {
            return Err(PlaceError::TooFewNodes {
                replication,
                nodes: eligible.len(),
            });
        }
        let known = self.shard_loads();
        let mut load: BTreeMap<(NodeId, u16), Load> = BTreeMap::new();
        for (node, _, shards) in &eligible {
            for s in 0..*shards {
                let k = (*node, s);
                load.insert(k, known.get(&k).copied().unwrap_or_default());
            }
        }
        let rack: BTreeMap<NodeId, &str> =
            eligible.iter().map(|(n, r, _)| (*n, r.as_str())).collect();
        let order: BTreeMap<NodeId, usize> = eligible
            .iter()
            .enumerate()
            .map(|(i, (n, _, _))| (*n, i))
            .collect();
        let n_nodes = eligible.len();
        let mut out = Vec::with_capacity(count);
        // Each iteration places one partition (at most `replication` picks).
        for p in 0..count {
            let mut chosen: Vec<Replica> = Vec::with_capacity(replication);
            let mut racks: BTreeSet<&str> = BTreeSet::new();
            for i in 0..replication {
                let turn = |node: NodeId| (order[&node] + n_nodes - p % n_nodes) % n_nodes;
                let pick = load
                    .iter()
                    .filter(|(_, l)| l.replicas < per_shard_limit)
                    .filter(|((node, _), _)| chosen.iter().all(|r| r.node != *node))
                    .min_by_key(|((node, shard), l)| {
                        let same_rack = racks.contains(rack[node]);
                        let leaders = if i == 0 { l.leaders } else { 0 };
                        (same_rack, leaders, l.replicas, turn(*node), *shard)
                    })
                    .map(|(k, _)| *k);
                let Some((node, shard)) = pick else {
                    return Err(PlaceError::NoRoom);
                };
                if let Some(l) = load.get_mut(&(node, shard)) {
                    l.replicas += 1;
                    l.leaders += usize::from(i == 0);
                }
                racks.insert(rack[&node]);
                chosen.push(Replica { node, shard });
            }
            out.push(PartitionRecord::new(chosen));
        }
        Ok(out)
    }
}

/// What the controller moves: leaders back to preferred replicas, finished
/// reassignments, replicas off draining nodes.
impl Image {
    /// Partitions whose preferred replica could lead but does not: (topic, partition,
    /// leader epoch), at most `max`.
    pub fn imbalanced(&self, max: usize) -> Vec<(String, u32, i32)> {
        let live = |n: NodeId| self.nodes.get(&n).is_some_and(|r| !r.fenced);
        self.all_partitions()
            .filter(|(_, _, p)| p.imbalanced(live))
            .map(|(name, i, p)| (name.clone(), i, p.leader_epoch))
            .take(max)
            .collect()
    }

    /// Partitions whose reassignment can complete: (topic, partition, partition epoch).
    pub fn reassignments_ready(&self, max: usize) -> Vec<(String, u32, i32)> {
        self.all_partitions()
            .filter(|(_, _, p)| p.reassignment_ready())
            .map(|(name, i, p)| (name.clone(), i, p.partition_epoch))
            .take(max)
            .collect()
    }

    /// Moves that take replicas off draining nodes: for a partition with a replica on one
    /// and no reassignment running, its replicas with that one replaced by the least
    /// loaded shard of a live, non-draining node it is not on yet.
    pub fn drain_moves(&self, max: usize) -> Vec<(String, u32, Vec<Replica>)> {
        let draining: Vec<NodeId> = self
            .nodes
            .values()
            .filter(|n| n.draining)
            .map(|n| n.registration.id)
            .collect();
        if draining.is_empty() {
            return Vec::new();
        }
        let mut load = self.partitions_per_shard();
        let mut out = Vec::new();
        for (name, t) in self.topics.iter() {
            for (i, p) in t.partitions.iter().enumerate() {
                if out.len() >= max {
                    return out;
                }
                if p.reassignment.is_some()
                    || !p.replicas.iter().any(|r| draining.contains(&r.node))
                {
                    continue;
                }
                let mut target = Vec::with_capacity(p.replicas.len());
                let mut ok = true;
                for r in &p.replicas {
                    if !draining.contains(&r.node) {
                        target.push(*r);
                        continue;
                    }
                    let pick = self
                        .live_nodes()
                        .filter(|n| !n.draining)
                        .filter(|n| {
                            let id = n.registration.id;
                            !p.replicas.iter().chain(target.iter()).any(|x| x.node == id)
                        })
                        .flat_map(|n| {
                            (0..n.registration.shards).map(move |s| (n.registration.id, s))
                        })
                        .min_by_key(|k| (load.get(k).copied().unwrap_or(0), *k));
                    match pick {
                        Some((node, shard)) => {
                            *load.entry((node, shard)).or_insert(0) += 1;
                            target.push(Replica { node, shard });
                        }
                        None => ok = false,
                    }
                }
                if ok {
                    out.push((name.clone(), i as u32, target));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::state::{Command, NodeRegistration, TopicRecord};
    use super::*;

    fn image(nodes: &[(NodeId, &str, u16)]) -> Image {
        let mut img = Image::default();
        for (i, (id, rack, shards)) in nodes.iter().enumerate() {
            let reg = NodeRegistration {
                id: *id,
                incarnation: "a".into(),
                rack: rack.to_string(),
                host: "h".into(),
                kafka_port: 9092,
                shards: *shards,
                http_port: None,
                cluster_id: String::new(),
                controller: String::new(),
                endpoints: Vec::new(),
            };
            img.apply(&Command::Register(reg), i as u64 + 1);
        }
        img
    }

    #[test]
    fn replicas_land_on_distinct_nodes_and_racks_with_balanced_leaders() {
        let img = image(&[(1, "a", 2), (2, "a", 2), (3, "b", 2), (4, "b", 2)]);
        let placed = img.place(16, 3, 100).expect("fits");
        let mut leaders: BTreeMap<NodeId, usize> = BTreeMap::new();
        let mut replicas: BTreeMap<(NodeId, u16), usize> = BTreeMap::new();
        for p in &placed {
            let nodes: BTreeSet<NodeId> = p.replicas.iter().map(|r| r.node).collect();
            assert_eq!(nodes.len(), 3, "distinct nodes: {p:?}");
            let racks: BTreeSet<bool> = p.replicas.iter().map(|r| r.node <= 2).collect();
            assert_eq!(racks.len(), 2, "both racks: {p:?}");
            assert_eq!(p.isr.len(), 3);
            assert_eq!(p.leader, Some(p.replicas[0].node));
            *leaders.entry(p.replicas[0].node).or_default() += 1;
            for r in &p.replicas {
                *replicas.entry((r.node, r.shard)).or_default() += 1;
            }
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![4; 4]);
        assert_eq!(replicas.len(), 8, "every shard used");
        // 48 replicas over 8 shards: 6 each, give or take one; 12 on each node.
        assert!(
            replicas.values().all(|n| (5..=7).contains(n)),
            "{replicas:?}"
        );
        for node in 1..=4u64 {
            let on: usize = replicas
                .iter()
                .filter(|((n, _), _)| *n == node)
                .map(|(_, c)| c)
                .sum();
            assert_eq!(on, 12, "{replicas:?}");
        }
    }

    #[test]
    fn too_few_nodes_or_no_room_is_refused() {
        let mut img = image(&[(1, "1", 1), (2, "2", 1)]);
        assert_eq!(
            img.place(1, 3, 100),
            Err(PlaceError::TooFewNodes {
                replication: 3,
                nodes: 2
            })
        );
        let placed = img.place(3, 2, 100).expect("fits");
        let topic = TopicRecord {
            id: [1; 16],
            configs: Default::default(),
            partitions: placed,
        };
        img.apply(
            &Command::CreateTopic {
                name: "t".into(),
                topic,
            },
            9,
        );
        assert_eq!(
            img.place(1, 1, 3),
            Err(PlaceError::NoRoom),
            "3 replicas per shard"
        );
        assert_eq!(img.place(1, 1, 4).expect("fits").len(), 1);
    }

    #[test]
    fn a_fenced_leader_is_replaced_from_the_isr_and_a_restart_hands_over() {
        let mut img = image(&[(1, "1", 1), (2, "2", 1), (3, "3", 1)]);
        let placed = img.place(3, 3, 100).expect("fits");
        let topic = TopicRecord {
            id: [1; 16],
            configs: Default::default(),
            partitions: placed,
        };
        let create = Command::CreateTopic {
            name: "t".into(),
            topic,
        };
        img.apply(&create, 10);
        let led_by_1 = |img: &Image| -> Vec<usize> {
            img.topics["t"]
                .partitions
                .iter()
                .enumerate()
                .filter(|(_, p)| p.leader == Some(1))
                .map(|(i, _)| i)
                .collect()
        };
        let mine = led_by_1(&img);
        assert_eq!(mine.len(), 1);
        let epoch1 = img.nodes[&1].epoch;
        img.apply(
            &Command::Fence {
                id: 1,
                epoch: epoch1,
            },
            11,
        );
        let p = &img.topics["t"].partitions[mine[0]];
        assert!(p.leader.is_some_and(|l| l != 1), "{p:?}");
        assert_eq!(p.leader_epoch, 1);
        assert!(!p.isr.contains(&1));
        // Node 1 back: not in the ISR, so it follows (it must catch up first).
        img.apply(
            &Command::Unfence {
                id: 1,
                epoch: epoch1,
            },
            12,
        );
        assert!(led_by_1(&img).is_empty());
        // Node 2 restarts: it leaves every ISR and its leadership moves at once.
        let two = img.nodes[&2].registration.clone();
        let restarted = NodeRegistration {
            incarnation: "b".into(),
            ..two
        };
        img.apply(&Command::Register(restarted), 13);
        for p in &img.topics["t"].partitions {
            assert_ne!(p.leader, Some(2), "{p:?}");
            assert!(!p.isr.contains(&2) || p.isr.len() == 1, "{p:?}");
        }
    }
}
