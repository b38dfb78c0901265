//! ListOffsets: earliest (-2), latest (-1) or first offset at or after a timestamp, answered
//! by each partition's owner.

use std::collections::BTreeMap;
use std::rc::Rc;

use futures::future::join_all;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use super::errors::{self, log_error_code};
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::protocol::ListOffsetsRequest;

pub const LATEST: i64 = -1;
pub const EARLIEST: i64 = -2;

pub struct OffsetResult {
    pub topic: String,
    pub partition: i32,
    pub error: i16,
    pub timestamp: i64,
    pub offset: i64,
}

/// Answers queries on partitions this shard owns.
pub async fn local(shard: &Rc<Shard>, queries: Vec<(String, i32, i64)>) -> Vec<OffsetResult> {
    let mut out = Vec::with_capacity(queries.len());
    for (topic, partition, ts) in queries {
        let mut r = OffsetResult {
            topic,
            partition,
            error: errors::NONE,
            timestamp: -1,
            offset: -1,
        };
        match shard.log(&r.topic, partition) {
            None => r.error = errors::UNKNOWN_TOPIC_OR_PARTITION,
            Some(log) => match ts {
                LATEST => r.offset = log.high_watermark(),
                EARLIEST => r.offset = log.log_start_offset(),
                ts if ts < 0 => r.error = errors::UNSUPPORTED_VERSION,
                ts => match log.offset_for_timestamp(ts).await {
                    Ok(Some((off, t))) => {
                        r.offset = off;
                        r.timestamp = t;
                    }
                    Ok(None) => {}
                    Err(e) => r.error = log_error_code(&e),
                },
            },
        }
        out.push(r);
    }
    out
}

/// Handles ListOffsets, routing each partition's query to its owner.
pub async fn handle(shard: &Rc<Shard>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let mut by_owner: BTreeMap<usize, Vec<(String, i32, i64)>> = BTreeMap::new();
    for t in &req.topics {
        for &(p, ts) in &t.partitions {
            by_owner
                .entry(shard.owner(&t.name, p))
                .or_default()
                .push((t.name.clone(), p, ts));
        }
    }
    let futs = by_owner.into_iter().map(|(owner, q)| {
        let shard = shard.clone();
        async move {
            if owner == shard.id {
                local(&shard, q).await
            } else {
                match shard.call(owner, Call::ListOffsets(q)).await {
                    Some(Reply::ListOffsets(r)) => r,
                    _ => Vec::new(),
                }
            }
        }
    });
    let mut found: BTreeMap<(String, i32), OffsetResult> = BTreeMap::new();
    for r in join_all(futs).await.into_iter().flatten() {
        found.insert((r.topic.clone(), r.partition), r);
    }
    let mut resp = ListOffsetsResponse::default();
    for t in &req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = TopicName(StrBytes::from_string(t.name.clone()));
        for &(p, _) in &t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p;
            pr.leader_epoch = -1;
            match found.remove(&(t.name.clone(), p)) {
                Some(r) => {
                    pr.error_code = r.error;
                    pr.offset = r.offset;
                    pr.timestamp = r.timestamp;
                }
                None => {
                    pr.error_code = errors::UNKNOWN_TOPIC_OR_PARTITION;
                    pr.offset = -1;
                    pr.timestamp = -1;
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    resp
}
