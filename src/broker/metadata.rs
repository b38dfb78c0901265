//! Metadata: every shard is advertised as its own broker (node id = shard index, port =
//! base port + index), and each partition's leader is the shard that owns it, so clients
//! send partition traffic straight to the owning core.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::admin;
use super::catalog::valid_topic_name;
use super::errors;
use super::shard::Shard;
use crate::protocol::MetadataRequest;

pub async fn handle(shard: &Rc<Shard>, req: MetadataRequest) -> MetadataResponse {
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
    for i in 0..shard.nshards {
        let addr = shard.cfg.shard_addr(i);
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(i as i32);
        b.host = StrBytes::from_string(addr.ip().to_string());
        b.port = i32::from(addr.port());
        resp.brokers.push(b);
    }
    resp.cluster_id = Some(StrBytes::from_string(cat.cluster_id.clone()));
    resp.controller_id = BrokerId(admin::CONTROLLER as i32);
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
                for p in 0..meta.partitions {
                    let leader = BrokerId(shard.owner(&name, p) as i32);
                    let mut pm = MetadataResponsePartition::default();
                    pm.partition_index = p;
                    pm.leader_id = leader;
                    pm.leader_epoch = 0;
                    pm.replica_nodes = vec![leader];
                    pm.isr_nodes = vec![leader];
                    t.partitions.push(pm);
                }
            }
        }
        resp.topics.push(t);
    }
    resp
}
