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
/// "Latest" for a read_committed client: the last stable offset (not a wire value; the
/// handler maps LATEST to it before routing).
const LATEST_STABLE: i64 = i64::MIN;

pub struct OffsetResult {
    pub topic: String,
    pub partition: i32,
    pub error: i16,
    pub timestamp: i64,
    pub offset: i64,
}

impl OffsetResult {
    /// No error yet, no offset or timestamp found.
    fn new(topic: String, partition: i32) -> Self {
        OffsetResult {
            topic,
            partition,
            error: errors::NONE,
            timestamp: -1,
            offset: -1,
        }
    }
}

/// Answers queries on partitions this shard owns.
pub async fn local(shard: &Rc<Shard>, queries: Vec<(String, i32, i64)>) -> Vec<OffsetResult> {
    let mut out = Vec::with_capacity(queries.len());
    for (topic, partition, ts) in queries {
        let mut r = OffsetResult::new(topic, partition);
        match shard.log(&r.topic, partition) {
            None => r.error = errors::UNKNOWN_TOPIC_OR_PARTITION,
            Some(log) => match ts {
                LATEST => r.offset = log.high_watermark(),
                LATEST_STABLE => r.offset = log.last_stable_offset(),
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

/// DeleteRecords on partitions this shard owns: (topic, partition, new low watermark, error).
pub fn delete_records_local(
    shard: &Rc<Shard>,
    parts: Vec<(String, i32, i64)>,
) -> Vec<OffsetResult> {
    parts
        .into_iter()
        .map(|(topic, partition, offset)| {
            let mut r = OffsetResult::new(topic, partition);
            match shard.log(&r.topic, partition) {
                None => r.error = errors::UNKNOWN_TOPIC_OR_PARTITION,
                Some(log) => match log.delete_records(offset) {
                    Ok(low) => r.offset = low,
                    Err(e) => r.error = log_error_code(&e),
                },
            }
            r
        })
        .collect()
}

/// Which per-partition query [`scatter`] runs on each owner.
#[derive(Clone, Copy)]
enum Query {
    Offsets,
    Delete,
}

/// Runs `query` for each (topic, partition, value) on the partition's owner — in place for
/// this shard's, over the router for others — and gathers the results by partition.
async fn scatter(
    shard: &Rc<Shard>,
    items: Vec<(String, i32, i64)>,
    query: Query,
) -> BTreeMap<(String, i32), OffsetResult> {
    let mut by_owner: BTreeMap<usize, Vec<(String, i32, i64)>> = BTreeMap::new();
    for (t, p, v) in items {
        // A partition led by another node is left out: the caller answers for it.
        if let Some(owner) = shard.owner(&t, p) {
            by_owner.entry(owner).or_default().push((t, p, v));
        }
    }
    let futs = by_owner.into_iter().map(|(owner, q)| {
        let shard = shard.clone();
        async move {
            if owner == shard.id {
                return match query {
                    Query::Offsets => local(&shard, q).await,
                    Query::Delete => delete_records_local(&shard, q),
                };
            }
            let call = match query {
                Query::Offsets => Call::ListOffsets(q),
                Query::Delete => Call::DeleteRecords(q),
            };
            match shard.call(owner, call).await {
                Some(Reply::ListOffsets(r)) => r,
                _ => Vec::new(),
            }
        }
    });
    let mut found = BTreeMap::new();
    for r in join_all(futs).await.into_iter().flatten() {
        found.insert((r.topic.clone(), r.partition), r);
    }
    found
}

/// The error for a partition no shard of this node answered for: led by another node, or
/// unknown.
fn missing(shard: &Shard, topic: &str, partition: i32) -> i16 {
    let known = shard
        .catalog()
        .topics
        .get(topic)
        .is_some_and(|m| partition >= 0 && partition < m.partitions);
    if known {
        errors::NOT_LEADER_OR_FOLLOWER
    } else {
        errors::UNKNOWN_TOPIC_OR_PARTITION
    }
}

/// Handles DeleteRecords, routing each partition to its owner.
pub async fn delete_records(
    shard: &Rc<Shard>,
    req: crate::protocol::DeleteRecordsRequest,
) -> kafka_protocol::messages::DeleteRecordsResponse {
    use kafka_protocol::messages::delete_records_response::{
        DeleteRecordsPartitionResult, DeleteRecordsResponse, DeleteRecordsTopicResult,
    };
    let mut found = scatter(shard, req.partitions.clone(), Query::Delete).await;
    let mut resp = DeleteRecordsResponse::default();
    for (t, p, _) in &req.partitions {
        if resp
            .topics
            .last()
            .is_none_or(|x: &DeleteRecordsTopicResult| x.name.0.as_str() != t)
        {
            let mut tr = DeleteRecordsTopicResult::default();
            tr.name = TopicName(StrBytes::from_string(t.clone()));
            resp.topics.push(tr);
        }
        let mut pr = DeleteRecordsPartitionResult::default();
        pr.partition_index = *p;
        match found.remove(&(t.clone(), *p)) {
            Some(r) => {
                pr.error_code = r.error;
                pr.low_watermark = r.offset;
            }
            None => {
                pr.error_code = missing(shard, t, *p);
                pr.low_watermark = -1;
            }
        }
        if let Some(tr) = resp.topics.last_mut() {
            tr.partitions.push(pr);
        }
    }
    resp
}

/// Handles ListOffsets, routing each partition's query to its owner.
pub async fn handle(shard: &Rc<Shard>, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let committed = req.isolation_level == 1;
    let items = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |&(p, ts)| {
                let ts = match ts {
                    LATEST if committed => LATEST_STABLE,
                    // From a client it is just an unknown negative spec (UNSUPPORTED_VERSION).
                    LATEST_STABLE => LATEST_STABLE + 1,
                    ts => ts,
                };
                (t.name.clone(), p, ts)
            })
        })
        .collect();
    let mut found = scatter(shard, items, Query::Offsets).await;
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
                    pr.error_code = missing(shard, &t.name, p);
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
