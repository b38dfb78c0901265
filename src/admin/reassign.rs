//! `shardlog topic reassign` and `shardlog topic reassignments`: move a partition's
//! replicas to other nodes (AlterPartitionReassignments) and list moves under way
//! (ListPartitionReassignments).

use anyhow::{bail, Result};
use kafka_protocol::messages::alter_partition_reassignments_request::{
    AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
};
use kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsRequest;
use kafka_protocol::messages::BrokerId;

use super::client::Client;
use super::topic::{metadata, name};

/// Moves `partition` of `topic` to replicas on `nodes` (node ids, the first the preferred
/// leader); `None` cancels a move under way. A node that already holds a replica keeps its
/// shard; a new one gets shard `partition mod its shards`.
pub fn reassign(bootstrap: &str, topic: &str, partition: i32, nodes: Option<&[u64]>) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let replicas = match nodes {
        None => None,
        Some(nodes) => {
            let md = metadata(&mut c, Some(vec![topic.to_string()]))?;
            let Some(t) = md.topics.first().filter(|t| t.error_code == 0) else {
                bail!("unknown topic {topic}");
            };
            let current: Vec<i32> = t
                .partitions
                .iter()
                .find(|p| p.partition_index == partition)
                .map(|p| p.replica_nodes.iter().map(|b| b.0).collect())
                .unwrap_or_default();
            let mut ids = Vec::with_capacity(nodes.len());
            for node in nodes {
                let shards = md
                    .brokers
                    .iter()
                    .filter(|b| b.node_id.0 >= 0 && (b.node_id.0 / 1024) as u64 == *node)
                    .count() as i32;
                if shards == 0 {
                    bail!("node {node} is not a live node of the cluster");
                }
                let kept = current.iter().find(|b| (**b / 1024) as u64 == *node);
                ids.push(*kept.unwrap_or(&((*node as i32) * 1024 + partition.rem_euclid(shards))));
            }
            Some(ids)
        }
    };
    let mut p = ReassignablePartition::default();
    p.partition_index = partition;
    p.replicas = replicas.map(|ids| ids.into_iter().map(BrokerId).collect());
    let mut t = ReassignableTopic::default();
    t.name = name(topic);
    t.partitions = vec![p];
    let mut req = AlterPartitionReassignmentsRequest::default();
    req.timeout_ms = 30_000;
    req.topics = vec![t];
    let resp = c.call(&req, 0)?;
    if resp.error_code != 0 {
        bail!("reassignment refused: error {}", resp.error_code);
    }
    for t in &resp.responses {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "{topic}-{}: error {}: {}",
                    p.partition_index,
                    p.error_code,
                    p.error_message.as_deref().unwrap_or("")
                );
            }
        }
    }
    if nodes.is_some() {
        println!("moving {topic}-{partition}; it completes once the new replicas are in sync");
    } else {
        println!("cancelled the move of {topic}-{partition}");
    }
    Ok(())
}

/// Lists the moves under way: partition, replicas, adding, removing (broker ids).
pub fn list(bootstrap: &str) -> Result<()> {
    let mut c = Client::connect(bootstrap)?;
    let mut req = ListPartitionReassignmentsRequest::default();
    req.timeout_ms = 30_000;
    req.topics = None;
    let resp = c.call(&req, 0)?;
    let ids = |v: &[BrokerId]| {
        v.iter()
            .map(|b| b.0.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    println!("partition\treplicas\tadding\tremoving");
    for t in &resp.topics {
        for p in &t.partitions {
            println!(
                "{}-{}\t{}\t{}\t{}",
                t.name.0,
                p.partition_index,
                ids(&p.replicas),
                ids(&p.adding_replicas),
                ids(&p.removing_replicas)
            );
        }
    }
    Ok(())
}
