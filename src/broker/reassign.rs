//! Partition reassignment through the Kafka API (AlterPartitionReassignments,
//! ListPartitionReassignments), as `kafka-reassign-partitions.sh` and `shardlog topic
//! reassign` send it. Each change is a `Reassign` command proposed to the metadata quorum;
//! the controller completes it once the new replicas are in sync.
//!
//! Invariant: nothing here moves data or decides when a move ends; it only validates and
//! proposes, and reads the image to list what is under way.

use crate::protocol::str_bytes as s;
use std::rc::Rc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    AlterPartitionReassignmentsResponse, ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::list_partition_reassignments_response::{
    ListPartitionReassignmentsResponse, OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use tracing::info;

use super::catalog::{broker_id, node_and_shard};
use super::errors;
use super::shard::Shard;
use crate::cluster::state::{Command, Outcome, Replica};
use crate::protocol::{AlterReassignmentsRequest, ListReassignmentsRequest};

const NO_REASSIGNMENT_IN_PROGRESS: i16 = 85;
const DEADLINE: Duration = Duration::from_secs(15);

pub async fn alter(
    shard: &Rc<Shard>,
    req: AlterReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let mut resp = AlterPartitionReassignmentsResponse::default();
    for (topic, partition, replicas) in req.partitions {
        let (code, msg) = alter_one(shard, &topic, partition, replicas).await;
        let mut pr = ReassignablePartitionResponse::default();
        pr.partition_index = partition;
        pr.error_code = code;
        pr.error_message = msg.map(|m| s(&m));
        match resp.responses.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(pr),
            _ => {
                let mut t = ReassignableTopicResponse::default();
                t.name = TopicName(s(&topic));
                t.partitions = vec![pr];
                resp.responses.push(t);
            }
        }
    }
    resp
}

async fn alter_one(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    replicas: Option<Vec<i32>>,
) -> (i16, Option<String>) {
    let Some(proposer) = shard.proposer.as_ref() else {
        return (
            errors::INVALID_REPLICA_ASSIGNMENT,
            Some("a single node has nowhere to move replicas".into()),
        );
    };
    let known = shard
        .cluster
        .get()
        .image
        .topics
        .get(topic)
        .is_some_and(|t| partition >= 0 && (partition as usize) < t.partitions.len());
    if !known {
        return (errors::UNKNOWN_TOPIC_OR_PARTITION, None);
    }
    let target = replicas.map(|ids| {
        ids.into_iter()
            .map(|id| {
                let (node, shard) = node_and_shard(id);
                Replica { node, shard }
            })
            .collect::<Vec<_>>()
    });
    let cancel = target.is_none();
    let cmd = Command::Reassign {
        topic: topic.to_string(),
        partition: partition as u32,
        target,
    };
    match proposer.propose(cmd, DEADLINE).await {
        Ok(Outcome::Done) => {
            info!(
                topic,
                partition, cancel, "reassignment accepted by the quorum"
            );
            (errors::NONE, None)
        }
        Ok(Outcome::Refused(why)) if cancel => (NO_REASSIGNMENT_IN_PROGRESS, Some(why)),
        Ok(Outcome::Refused(why)) => (errors::INVALID_REPLICA_ASSIGNMENT, Some(why)),
        Ok(Outcome::NoSuchTopic) => (errors::UNKNOWN_TOPIC_OR_PARTITION, None),
        Ok(other) => (errors::UNKNOWN_SERVER_ERROR, Some(format!("{other:?}"))),
        Err(e) => (errors::REQUEST_TIMED_OUT, Some(e)),
    }
}

pub fn list(shard: &Shard, req: ListReassignmentsRequest) -> ListPartitionReassignmentsResponse {
    let view = shard.cluster.get();
    let mut resp = ListPartitionReassignmentsResponse::default();
    let ids = |rs: &mut dyn Iterator<Item = &Replica>| -> Vec<BrokerId> {
        rs.map(|r| BrokerId(broker_id(r.node, r.shard))).collect()
    };
    for (name, t) in &view.image.topics {
        let wanted: Option<&Vec<i32>> = match &req.topics {
            None => None,
            Some(list) => match list.iter().find(|(n, _)| n == name) {
                Some((_, parts)) => Some(parts),
                None => continue,
            },
        };
        let mut parts = Vec::new();
        for (i, p) in t.partitions.iter().enumerate() {
            let Some(r) = &p.reassignment else {
                continue;
            };
            if wanted.is_some_and(|w| !w.contains(&(i as i32))) {
                continue;
            }
            let mut o = OngoingPartitionReassignment::default();
            o.partition_index = i as i32;
            o.replicas = ids(&mut p.replicas.iter());
            o.adding_replicas = ids(&mut r.target.iter().filter(|x| !r.original.contains(x)));
            o.removing_replicas = ids(&mut r.original.iter().filter(|x| !r.target.contains(x)));
            parts.push(o);
        }
        if !parts.is_empty() {
            let mut ot = OngoingTopicReassignment::default();
            ot.name = TopicName(s(name));
            ot.partitions = parts;
            resp.topics.push(ot);
        }
    }
    resp
}
