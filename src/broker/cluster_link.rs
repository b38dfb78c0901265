//! The data plane's side of a cluster: turning the control plane's view into the shards'
//! catalog, and topic changes into commands for the metadata quorum.
//!
//! Invariants: in a cluster the quorum is the only source of topics and their placement —
//! shard 0 installs on every shard the catalog derived from each newer view (nothing is
//! written to `catalog.json`); a topic change is answered only after the quorum committed
//! it and this node applied it. Nothing here waits on the control plane from the produce or
//! fetch path.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info, warn};

use super::admin::TopicResult;
use super::catalog::{Catalog, ClusterMap, NodeAddr, PartitionPlace, TopicMeta};
use super::errors;
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::cluster::placement::PlaceError;
use crate::cluster::state::{Command, Outcome, PartitionRecord, Replica, TopicRecord};
use crate::cluster::View;
use crate::group::{OFFSETS_PARTITIONS, OFFSETS_TOPIC};

/// How long a topic change may take to commit and apply.
pub const PROPOSE_DEADLINE: Duration = Duration::from_secs(15);

/// The catalog a node's shards use, from the cluster's view.
pub fn catalog_from_view(view: &View, cluster_id: &str) -> Catalog {
    let topics = view
        .image
        .topics
        .iter()
        .map(|(name, t)| {
            let mut configs = t.configs.clone();
            if name == OFFSETS_TOPIC || name == crate::txn::TXN_TOPIC {
                // Whatever it was created with: committed offsets and transaction states
                // are kept by compaction, never expired by time or size.
                for (k, v) in internal_topic_configs() {
                    configs.insert(k, v);
                }
            }
            (
                name.clone(),
                TopicMeta {
                    id: t.id,
                    partitions: t.partitions.len() as i32,
                    configs,
                    placement: t.partitions.iter().map(PartitionPlace::from).collect(),
                },
            )
        })
        .collect();
    let nodes = view
        .image
        .nodes
        .values()
        .map(|n| {
            (
                n.registration.id,
                NodeAddr {
                    host: n.registration.host.clone(),
                    port: n.registration.kafka_port,
                    shards: n.registration.shards,
                    rack: n.registration.rack.clone(),
                    live: !n.fenced,
                    endpoints: if n.registration.endpoints.is_empty() {
                        vec![(
                            "PLAINTEXT".to_string(),
                            n.registration.host.clone(),
                            n.registration.kafka_port,
                        )]
                    } else {
                        n.registration.endpoints.clone()
                    },
                },
            )
        })
        .collect();
    Catalog {
        cluster_id: if view.image.cluster_id.is_empty() {
            cluster_id.to_string()
        } else {
            view.image.cluster_id.clone()
        },
        topics,
        security: Arc::new(view.image.security.clone()),
        dynamic: view.image.broker_configs.clone(),
        cluster: Some(ClusterMap {
            local: view.node_id,
            controller: view.controller,
            nodes,
            groups: view
                .image
                .topics
                .get(OFFSETS_TOPIC)
                .map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| {
                            // Node 0 is never registered: no coordinator while none leads.
                            p.leader_replica().map_or((0, 0), |r| (r.node, r.shard))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
    }
}

/// The configs the internal offsets and transaction state topics always have (Kafka's
/// `offsets.topic.segment.bytes` and compaction).
pub fn internal_topic_configs() -> [(String, String); 3] {
    [
        ("cleanup.policy".into(), "compact".into()),
        ("segment.bytes".into(), (100u64 << 20).to_string()),
        ("retention.ms".into(), "-1".into()),
    ]
}

/// On shard 0 of a clustered node: installs the catalog of every newer view on all shards,
/// until the shard stops. Topics of `local` (this node's `catalog.json` from a single-node
/// version) that the cluster does not have are proposed first, placed where their data is.
pub async fn follow(shard: Rc<Shard>, local: Arc<Catalog>) {
    let mut rx = shard.cluster.subscribe();
    let cluster_id = shard.catalog().cluster_id.clone();
    import(&shard, &local).await;
    // The catalog depends only on the applied image and the controller; the view also
    // changes with every quorum metric, which needs no new catalog.
    let mut installed: Option<(u64, Option<u64>)> = None;
    // Each iteration installs one view; ends when the shard stops or the view is gone.
    loop {
        let view = rx.borrow_and_update().clone();
        let key = (view.applied_index, view.controller);
        let cat = (installed != Some(key)).then(|| catalog_from_view(&view, &cluster_id));
        installed = Some(key);
        if let Some(cat) = cat.filter(|cat| *shard.catalog() != *cat) {
            let cat = Arc::new(cat);
            for j in 0..shard.nshards {
                let failed = if j == shard.id {
                    shard.apply_catalog(cat.clone()).await
                } else {
                    match shard.call(j, Call::Apply(cat.clone())).await {
                        Some(Reply::Applied(f)) => f,
                        _ => {
                            error!(shard = j, "shard did not apply the cluster's catalog");
                            Vec::new()
                        }
                    }
                };
                for (topic, why) in failed {
                    warn!(%topic, "partition not opened: {why}");
                }
            }
        }
        if shard.stopping.get() {
            return;
        }
        let next = crate::runtime::timeout(Duration::from_millis(500), rx.changed()).await;
        if let Some(Err(_)) = next {
            return;
        }
    }
}

/// Proposes the topics of a single-node catalog the cluster lacks, each partition on this
/// node's shard that already holds its log. Retried at the next start if it fails.
async fn import(shard: &Rc<Shard>, local: &Catalog) {
    let Some(proposer) = &shard.proposer else {
        return;
    };
    let node = shard.cfg.node_id;
    let mut all_in = true;
    let dynamic = &local.dynamic.cluster;
    if !dynamic.is_empty() && shard.cluster.get().image.broker_configs.cluster.is_empty() {
        let cmd = Command::SetBrokerConfigs {
            node: None,
            configs: dynamic.clone(),
        };
        match proposer.propose(cmd, PROPOSE_DEADLINE).await {
            Ok(Outcome::Done) => info!("imported the single node's dynamic broker settings"),
            other => {
                warn!("dynamic broker settings not imported: {other:?}");
                all_in = false;
            }
        }
    }
    for (name, meta) in &local.topics {
        // Waits (bounded by the proposal's deadline) for the quorum's view of the topic.
        if shard.cluster.get().image.topics.contains_key(name) {
            continue;
        }
        let topic = TopicRecord {
            id: meta.id,
            configs: meta.configs.clone(),
            partitions: (0..meta.partitions)
                .map(|p| {
                    PartitionRecord::new(vec![Replica {
                        node,
                        shard: Catalog::owner(name, p, shard.nshards) as u16,
                    }])
                })
                .collect(),
        };
        let cmd = Command::CreateTopic {
            name: name.clone(),
            topic,
        };
        match proposer.propose(cmd, PROPOSE_DEADLINE).await {
            Ok(Outcome::Done) => {
                info!(topic = %name, "imported a single-node topic into the cluster")
            }
            Ok(Outcome::TopicExists) => warn!(
                topic = %name,
                "a topic of this name exists in the cluster already; this node's copy is not imported"
            ),
            Ok(other) => {
                warn!(topic = %name, "topic not imported: {other:?}");
                all_in = false;
            }
            Err(e) => {
                warn!(topic = %name, "topic not imported (retried at the next start): {e}");
                all_in = false;
            }
        }
    }
    // Imported once: the quorum is the source from now on, so a topic deleted through it
    // does not come back from this file at the next start (the cluster id stays).
    if all_in && !(local.topics.is_empty() && local.dynamic.is_empty()) {
        let emptied = Catalog {
            cluster_id: local.cluster_id.clone(),
            ..Default::default()
        };
        if let Err(e) = emptied.persist(&shard.cfg.data_dir) {
            warn!(
                "catalog.json not emptied after the import (imported again at the next start): {e}"
            );
        }
    }
}

fn result(
    name: &str,
    error: i16,
    message: Option<String>,
    meta: Option<&TopicRecord>,
) -> TopicResult {
    TopicResult {
        name: name.to_string(),
        error,
        message,
        id: meta.map_or([0; 16], |t| t.id),
        partitions: meta.map_or(-1, |t| t.partitions.len() as i32),
    }
}

/// The cluster's view once at least one node is registered and live (a node registers about
/// a heartbeat interval after it starts), or as it is after [`PROPOSE_DEADLINE`].
async fn live_view(shard: &Shard) -> Arc<View> {
    let mut rx = shard.cluster.subscribe();
    let live = |v: &Arc<View>| v.image.live_nodes().next().is_some();
    let waited = crate::runtime::timeout(PROPOSE_DEADLINE, rx.wait_for(live)).await;
    match waited {
        Some(Ok(v)) => v.clone(),
        _ => shard.cluster.get(),
    }
}

/// The shard's way to the quorum, or the answer for a topic change outside a cluster.
fn proposer<'a>(shard: &'a Shard, name: &str) -> Result<&'a crate::cluster::Proposer, TopicResult> {
    shard.proposer.as_ref().ok_or_else(|| {
        result(
            name,
            errors::UNKNOWN_SERVER_ERROR,
            Some("not in a cluster".into()),
            None,
        )
    })
}

/// Creates a topic through the quorum, its partitions spread over the live nodes' shards.
pub async fn create(
    shard: &Rc<Shard>,
    name: &str,
    partitions: i32,
    replication: usize,
    configs: std::collections::BTreeMap<String, String>,
) -> TopicResult {
    let proposer = match proposer(shard, name) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let placement = match place(shard, name, partitions.max(0) as usize, replication).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let topic = TopicRecord {
        id: *uuid::Uuid::new_v4().as_bytes(),
        configs,
        partitions: placement,
    };
    let cmd = Command::CreateTopic {
        name: name.to_string(),
        topic: topic.clone(),
    };
    match proposer.propose(cmd, PROPOSE_DEADLINE).await {
        Ok(Outcome::Done) => {
            info!(
                topic = name,
                partitions, "created topic through the metadata quorum"
            );
            result(name, errors::NONE, None, Some(&topic))
        }
        other => refused(name, other),
    }
}

/// Places `count` partitions of `replication` replicas over the live nodes (once one is
/// known), or the answer refusing it.
async fn place(
    shard: &Rc<Shard>,
    name: &str,
    count: usize,
    replication: usize,
) -> Result<Vec<PartitionRecord>, TopicResult> {
    let limit = shard.cfg.partitions_per_shard;
    live_view(shard)
        .await
        .image
        .place(count, replication, limit)
        .map_err(|e| {
            let code = match e {
                PlaceError::TooFewNodes { .. } => errors::INVALID_REPLICATION_FACTOR,
                PlaceError::NoRoom => errors::POLICY_VIOLATION,
            };
            let msg = match e {
                PlaceError::NoRoom => format!(
                    "{count} partitions do not fit on the live nodes' shards (topic.partitions.per.shard = {limit})"
                ),
                other => other.to_string(),
            };
            result(name, code, Some(msg), None)
        })
}

/// The answer for a topic change the quorum did not make.
fn refused(name: &str, r: Result<Outcome, String>) -> TopicResult {
    let (code, msg) = match r {
        Ok(Outcome::TopicExists) => (
            errors::TOPIC_ALREADY_EXISTS,
            format!("topic '{name}' already exists"),
        ),
        Ok(Outcome::NoSuchTopic) => (errors::UNKNOWN_TOPIC_OR_PARTITION, "unknown topic".into()),
        Ok(other) => (errors::UNKNOWN_SERVER_ERROR, format!("{other:?}")),
        Err(e) => (errors::REQUEST_TIMED_OUT, e),
    };
    result(name, code, Some(msg), None)
}

/// Adds partitions to a topic through the quorum (from `now` to `count`), placed like a
/// new topic's.
pub async fn add_partitions(shard: &Rc<Shard>, name: &str, now: i32, count: i32) -> TopicResult {
    let proposer = match proposer(shard, name) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let add = (count - now).max(0) as usize;
    // New partitions get as many replicas as the topic's first has.
    let replication = shard
        .cluster
        .get()
        .image
        .topics
        .get(name)
        .and_then(|t| t.partitions.first())
        .map_or(1, |p| p.replicas.len());
    let partitions = match place(shard, name, add, replication).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let cmd = Command::AddPartitions {
        name: name.to_string(),
        from: now.max(0) as usize,
        partitions,
    };
    match proposer.propose(cmd, PROPOSE_DEADLINE).await {
        Ok(Outcome::Done) => {
            info!(
                topic = name,
                from = now,
                to = count,
                "added partitions through the metadata quorum"
            );
            let t = shard.cluster.get().image.topics.get(name).cloned();
            result(name, errors::NONE, None, t.as_ref())
        }
        Ok(Outcome::Stale) => result(
            name,
            errors::INVALID_PARTITIONS,
            Some("the partition count changed meanwhile; retry".into()),
            None,
        ),
        other => refused(name, other),
    }
}

/// Replaces a topic's config overrides through the quorum.
pub async fn set_configs(
    shard: &Rc<Shard>,
    name: &str,
    configs: std::collections::BTreeMap<String, String>,
) -> TopicResult {
    let proposer = match proposer(shard, name) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let cmd = Command::SetTopicConfigs {
        name: name.to_string(),
        configs,
    };
    match proposer.propose(cmd, PROPOSE_DEADLINE).await {
        Ok(Outcome::Done) => {
            info!(
                topic = name,
                "altered topic configs through the metadata quorum"
            );
            let t = shard.cluster.get().image.topics.get(name).cloned();
            result(name, errors::NONE, None, t.as_ref())
        }
        other => refused(name, other),
    }
}

/// Replaces the dynamic broker settings of every node (`node: None`) or one, through the
/// quorum; `name` is the broker resource the request named.
pub async fn set_broker_configs(
    shard: &Rc<Shard>,
    name: &str,
    node: Option<u64>,
    configs: std::collections::BTreeMap<String, String>,
) -> TopicResult {
    let proposer = match proposer(shard, name) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let cmd = Command::SetBrokerConfigs { node, configs };
    match proposer.propose(cmd, PROPOSE_DEADLINE).await {
        Ok(Outcome::Done) => {
            info!(
                broker = name,
                "altered dynamic broker settings through the metadata quorum"
            );
            result(name, errors::NONE, None, None)
        }
        other => refused(name, other),
    }
}

/// Has the quorum place the internal offsets log (the group coordinators) over the live
/// nodes' shards, once per shard; later FindCoordinator requests find it there.
pub fn request_group_placement(shard: &Rc<Shard>) {
    let rf = shard.cfg.offsets_replication_factor;
    place_internal(shard, OFFSETS_TOPIC, OFFSETS_PARTITIONS, rf);
}

/// Has the quorum place the internal transaction state log (the transaction coordinators),
/// like [`request_group_placement`].
pub fn request_txn_placement(shard: &Rc<Shard>) {
    let rf = shard.cfg.txns.replication_factor;
    place_internal(shard, crate::txn::TXN_TOPIC, crate::txn::TXN_PARTITIONS, rf);
}

/// Creates internal topic `topic` (compacted, never expired) with `rf` replicas as far as
/// the live nodes allow, once per shard and topic at a time.
fn place_internal(shard: &Rc<Shard>, topic: &'static str, partitions: i32, rf: usize) {
    if !shard.placements_requested.borrow_mut().insert(topic) {
        return;
    }
    let shard = shard.clone();
    crate::runtime::spawn_local(async move {
        let live = shard.cluster.get().image.placeable_nodes().count().max(1);
        let rf = rf.min(live);
        let r = create(
            &shard,
            topic,
            partitions,
            rf,
            internal_topic_configs().into_iter().collect(),
        )
        .await;
        if r.error != errors::NONE && r.error != errors::TOPIC_ALREADY_EXISTS {
            warn!(
                topic,
                "coordinators not placed yet: {}",
                r.message.unwrap_or_default()
            );
            shard.placements_requested.borrow_mut().remove(topic);
        }
    });
}

/// Deletes a topic through the quorum.
pub async fn delete(shard: &Rc<Shard>, name: &str) -> TopicResult {
    let proposer = match proposer(shard, name) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let existing = shard.cluster.get().image.topics.get(name).cloned();
    let cmd = Command::DeleteTopic {
        name: name.to_string(),
    };
    match proposer.propose(cmd, PROPOSE_DEADLINE).await {
        Ok(Outcome::Done) => {
            info!(topic = name, "deleted topic through the metadata quorum");
            result(name, errors::NONE, None, existing.as_ref())
        }
        other => refused(name, other),
    }
}
