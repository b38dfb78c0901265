//! Metadata: every shard is advertised as its own broker (node id = shard index, port =
//! base port + index; in a cluster, every live node's shards, id = node × 1024 + shard), and
//! each partition's leader is the shard that owns it, so clients send partition traffic
//! straight to the owning core of the owning node.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::admin;
use super::catalog::{self, valid_topic_name};
use super::errors;
use super::shard::Shard;
use crate::protocol::MetadataRequest;

fn broker(id: i32, host: &str, port: u16, rack: Option<&str>) -> MetadataResponseBroker {
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(id);
    b.host = StrBytes::from_string(host.to_string());
    b.port = i32::from(port);
    b.rack = rack.map(|r| StrBytes::from_string(r.to_string()));
    b
}

/// The broker id, host and port of shard `s` of `node` (of this node, on a single node) on
/// the listener a client came in on; `None` if that broker is down or lacks the listener.
pub fn endpoint(
    shard: &Shard,
    cat: &catalog::Catalog,
    node: u64,
    s: u16,
    listener: &str,
) -> Option<(i32, String, u16)> {
    match &cat.cluster {
        Some(cm) => cm
            .broker_on(node, s, listener)
            .map(|(id, host, port)| (id, host.to_string(), port)),
        None => {
            let l = shard
                .security
                .listeners
                .iter()
                .find(|l| l.name == listener)?;
            let (host, port) = l.advertised_for(usize::from(s));
            Some((i32::from(s), host, port))
        }
    }
}

pub async fn handle(shard: &Rc<Shard>, req: MetadataRequest, listener: &str) -> MetadataResponse {
    if let Some(names) = &req.topics {
        if req.allow_auto_topic_creation && shard.cfg.auto_create_topics {
            let cat = shard.catalog();
            let missing: Vec<String> = names
                .iter()
                .filter(|n| !cat.topics.contains_key(*n) && valid_topic_name(n))
                .cloned()
                .collect();
            admin::auto_create(shard, missing).await;
        }
    }
    let cat = shard.catalog();
    let mut resp = MetadataResponse::default();
    match &cat.cluster {
        None => {
            for i in 0..shard.nshards {
                if let Some((id, host, port)) = endpoint(shard, &cat, 0, i as u16, listener) {
                    resp.brokers.push(broker(id, &host, port, None));
                }
            }
            resp.controller_id = BrokerId(admin::CONTROLLER as i32);
        }
        Some(cm) => {
            // Every live node's shards, each a broker; the controller is its node's shard 0.
            for (id, n) in cm.nodes.iter().filter(|(_, n)| n.live) {
                for s in 0..n.shards {
                    if let Some((b, host, port)) = cm.broker_on(*id, s, listener) {
                        resp.brokers.push(broker(b, host, port, Some(&n.rack)));
                    }
                }
            }
            resp.controller_id = BrokerId(cm.controller.map_or(-1, |c| catalog::broker_id(c, 0)));
        }
    }
    resp.cluster_id = Some(StrBytes::from_string(cat.cluster_id.clone()));
    let names: Vec<String> = match &req.topics {
        None => cat.topics.keys().cloned().collect(),
        Some(n) => n.clone(),
    };
    for name in names {
        let mut t = MetadataResponseTopic::default();
        t.name = Some(TopicName(StrBytes::from_string(name.clone())));
        match cat.topics.get(&name) {
            None => {
                t.error_code = if valid_topic_name(&name) {
                    errors::UNKNOWN_TOPIC_OR_PARTITION
                } else {
                    errors::INVALID_TOPIC_EXCEPTION
                };
            }
            Some(meta) => {
                t.topic_id = uuid::Uuid::from_bytes(meta.id);
                t.is_internal = super::admin::internal(&name);
                for p in 0..meta.partitions {
                    let mut pm = MetadataResponsePartition::default();
                    pm.partition_index = p;
                    match (&cat.cluster, cat.place(&name, p)) {
                        (Some(cm), Some(place)) => {
                            // Each replica is its (node, shard) broker; ISR members and
                            // replicas on fenced nodes (offline) named the same way.
                            let id = |(n, s): (u64, u16)| BrokerId(catalog::broker_id(n, s));
                            pm.leader_epoch = place.leader_epoch;
                            pm.replica_nodes = place.replicas.iter().copied().map(id).collect();
                            pm.isr_nodes = place
                                .replicas
                                .iter()
                                .filter(|(n, _)| place.isr.contains(n))
                                .copied()
                                .map(id)
                                .collect();
                            pm.offline_replicas = place
                                .replicas
                                .iter()
                                .filter(|(n, _)| !cm.nodes.get(n).is_some_and(|a| a.live))
                                .copied()
                                .map(id)
                                .collect();
                        }
                        _ => pm.leader_epoch = 0,
                    }
                    match cat.leader(&name, p, shard.nshards) {
                        Some(l) => pm.leader_id = BrokerId(l),
                        None => {
                            // No live ISR member: leaderless until one returns.
                            pm.error_code = errors::LEADER_NOT_AVAILABLE;
                            pm.leader_id = BrokerId(-1);
                        }
                    }
                    if cat.cluster.is_none() {
                        pm.replica_nodes = vec![pm.leader_id];
                        pm.isr_nodes = vec![pm.leader_id];
                    }
                    t.partitions.push(pm);
                }
            }
        }
        resp.topics.push(t);
    }
    resp
}
