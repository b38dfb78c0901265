//! Fetch: read whole batches from each requested partition's owner, long-polling until
//! `min_bytes` are available or `max_wait_ms` passes.
//!
//! Invariant: only committed (written) batches are served, starting with the one holding the
//! fetch offset; the response's records are the stored bytes as they are (no recompression).
//! Partitions this shard owns may answer with file ranges that the connection splices to
//! the socket (`log::send_range`); answers for another shard's connection are always bytes.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use tracing::warn;

use super::errors::{self, log_error_code};
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::log::send_range::Records;
use crate::log::Isolation;
use crate::protocol::fetch_response::FetchPartitionOut;
use crate::protocol::{FetchPartition, FetchRequest, FetchTopic};

/// Longest long-poll honoured, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// One partition's answer; `R` is `Records` on the shard that owns the connection and
/// `Bytes` when it crosses to another shard.
pub struct FetchPartResult<R = Bytes> {
    pub topic: String,
    pub partition: i32,
    pub error: i16,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub records: R,
    /// A follower's log diverged: (epoch, end offset) to truncate to.
    pub diverging: Option<(i32, i64)>,
    pub last_stable_offset: i64,
    /// read_committed: the aborted transactions in what was read, (producer id, first offset).
    pub aborted: Vec<(i64, i64)>,
}

/// One pass over the partitions owned by this shard, without waiting.
async fn read_once(
    shard: &Rc<Shard>,
    req: &FetchRequest,
    zero_copy: bool,
) -> Vec<FetchPartResult<Records>> {
    let mut out = Vec::new();
    // Kafka's broker `fetch.max.bytes` caps what a client may ask for.
    let mut budget = (req.max_bytes.max(0) as usize).min(shard.cfg.fetch_max_bytes);
    for t in &req.topics {
        for p in &t.partitions {
            let first = out
                .iter()
                .all(|r: &FetchPartResult<Records>| r.records.is_empty());
            out.push(read_partition(shard, &t.name, p, req, &mut budget, first, zero_copy).await);
        }
    }
    out
}

async fn read_partition(
    shard: &Rc<Shard>,
    topic: &str,
    p: &FetchPartition,
    req: &FetchRequest,
    budget: &mut usize,
    first: bool,
    zero_copy: bool,
) -> FetchPartResult<Records> {
    let mut r = FetchPartResult {
        topic: topic.to_string(),
        partition: p.partition,
        error: errors::NONE,
        high_watermark: -1,
        log_start_offset: -1,
        records: Records::Bytes(Bytes::new()),
        diverging: None,
        last_stable_offset: -1,
        aborted: Vec::new(),
    };
    let Some(log) = shard.log(topic, p.partition) else {
        r.error = errors::UNKNOWN_TOPIC_OR_PARTITION;
        return r;
    };
    // A follower's fetch: checked against the leader epoch and the log's epoch history,
    // and read up to the log end; its progress moves the high watermark.
    let replica_id = req.replica_id;
    let iso = Isolation::of_fetch(replica_id, req.isolation_level);
    let replica = iso == Isolation::Replica;
    if replica {
        let cat = shard.catalog();
        match crate::replication::leader::check_fetch(shard, &cat, topic, p, replica_id, &log) {
            Ok(None) => {}
            Ok(Some(div)) => {
                r.diverging = Some(div);
                r.high_watermark = log.high_watermark();
                r.log_start_offset = log.log_start_offset();
                return r;
            }
            Err(code) => {
                r.error = code;
                return r;
            }
        }
    }
    let limit = (p.partition_max_bytes.max(0) as usize).min(*budget);
    let read = if zero_copy {
        log.read_for_send(p.fetch_offset, limit, first, iso).await
    } else {
        log.read_as(p.fetch_offset, limit, first, iso)
            .await
            .map(Into::into)
    };
    match read {
        Ok(info) => {
            *budget = budget.saturating_sub(info.records.len());
            if !info.records.is_empty() {
                shard
                    .metrics
                    .record_out(topic, info.records.len() as u64, info.record_count);
            }
            r.high_watermark = info.high_watermark;
            r.log_start_offset = info.log_start_offset;
            r.last_stable_offset = info.last_stable_offset;
            if iso == Isolation::Committed && !info.records.is_empty() {
                r.aborted = log.aborted_txns(p.fetch_offset, r.last_stable_offset);
            }
            r.records = info.records;
        }
        Err(e) => {
            r.error = log_error_code(&e);
            r.high_watermark = log.high_watermark();
            r.last_stable_offset = log.last_stable_offset();
            r.log_start_offset = log.log_start_offset();
            if r.error != errors::OFFSET_OUT_OF_RANGE {
                warn!(topic, partition = p.partition, "fetch failed: {e}");
            }
        }
    }
    r
}

/// Serves the partitions of `req` this shard owns, long-polling as the request asks; with
/// `zero_copy`, large cached ranges are left in their files for the connection to splice.
pub async fn fetch_local(
    shard: &Rc<Shard>,
    req: &FetchRequest,
    zero_copy: bool,
) -> Vec<FetchPartResult<Records>> {
    let wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + wait;
    let min_bytes = req.min_bytes.max(1) as usize;
    // Each pass either returns or waits for new data or the deadline; the deadline bounds it.
    loop {
        let arrived = shard.data_arrived.notified();
        let res = read_once(shard, req, zero_copy).await;
        let bytes: usize = res.iter().map(|r| r.records.len()).sum();
        let errored = res
            .iter()
            .any(|r| r.error != errors::NONE || r.diverging.is_some());
        let now = Instant::now();
        if bytes >= min_bytes || errored || now >= deadline || shard.stopping.get() {
            return res;
        }
        crate::runtime::timeout(deadline - now, arrived).await;
    }
}

/// Serves a fetch another shard's connection sent: the answers as bytes, to cross cores.
pub async fn fetch_for_peer(shard: &Rc<Shard>, req: &FetchRequest) -> Vec<FetchPartResult> {
    let mut out = Vec::new();
    for r in fetch_local(shard, req, false).await {
        let (error, records) = match r.records.into_bytes().await {
            Ok(b) => (r.error, b),
            Err(e) => (log_error_code(&e), Bytes::new()),
        };
        out.push(FetchPartResult {
            topic: r.topic,
            partition: r.partition,
            error,
            high_watermark: r.high_watermark,
            log_start_offset: r.log_start_offset,
            records,
            diverging: r.diverging,
            last_stable_offset: r.last_stable_offset,
            aborted: r.aborted,
        });
    }
    out
}

/// Handles a Fetch request: splits it by owning shard, fetches, and merges the answers in
/// request order.
pub async fn handle(
    shard: &Rc<Shard>,
    req: FetchRequest,
) -> Vec<(String, Vec<FetchPartitionOut<Records>>)> {
    let catalog = shard.catalog();
    let mut by_owner: BTreeMap<usize, Vec<FetchTopic>> = BTreeMap::new();
    // Known partitions another node leads: NOT_LEADER_OR_FOLLOWER.
    let mut elsewhere: std::collections::BTreeSet<(String, i32)> = Default::default();
    for t in &req.topics {
        for p in &t.partitions {
            let known = catalog
                .topics
                .get(&t.name)
                .is_some_and(|m| p.partition >= 0 && p.partition < m.partitions);
            if !known {
                continue;
            }
            let Some(owner) = catalog.locate(&t.name, p.partition, shard.nshards) else {
                elsewhere.insert((t.name.clone(), p.partition));
                continue;
            };
            let topics = by_owner.entry(owner).or_default();
            match topics.last_mut() {
                Some(last) if last.name == t.name => last.partitions.push(*p),
                _ => topics.push(FetchTopic {
                    name: t.name.clone(),
                    partitions: vec![*p],
                }),
            }
        }
    }
    let futs = by_owner.into_iter().map(|(owner, topics)| {
        let shard = shard.clone();
        let sub = FetchRequest {
            topics,
            ..req.clone()
        };
        async move {
            if owner == shard.id {
                return fetch_local(&shard, &sub, shard.cfg.fetch_zero_copy).await;
            }
            match shard.call(owner, Call::Fetch(sub.clone())).await {
                Some(Reply::Fetch(r)) => r
                    .into_iter()
                    .map(|r| FetchPartResult {
                        topic: r.topic,
                        partition: r.partition,
                        error: r.error,
                        high_watermark: r.high_watermark,
                        log_start_offset: r.log_start_offset,
                        records: Records::Bytes(r.records),
                        diverging: r.diverging,
                        last_stable_offset: r.last_stable_offset,
                        aborted: r.aborted,
                    })
                    .collect(),
                _ => sub
                    .topics
                    .iter()
                    .flat_map(|t| {
                        t.partitions.iter().map(|p| FetchPartResult {
                            topic: t.name.clone(),
                            partition: p.partition,
                            error: errors::UNKNOWN_SERVER_ERROR,
                            high_watermark: -1,
                            log_start_offset: -1,
                            records: Records::Bytes(Bytes::new()),
                            diverging: None,
                            last_stable_offset: -1,
                            aborted: Vec::new(),
                        })
                    })
                    .collect(),
            }
        }
    });
    let mut found: BTreeMap<(String, i32), FetchPartResult<Records>> = BTreeMap::new();
    for r in join_all(futs).await.into_iter().flatten() {
        found.insert((r.topic.clone(), r.partition), r);
    }
    let mut out = Vec::with_capacity(req.topics.len());
    for t in &req.topics {
        let mut parts = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            parts.push(match found.remove(&(t.name.clone(), p.partition)) {
                Some(r) => FetchPartitionOut {
                    partition: p.partition,
                    error: r.error,
                    high_watermark: r.high_watermark,
                    last_stable_offset: r.last_stable_offset,
                    log_start_offset: r.log_start_offset,
                    records: r.records,
                    diverging: r.diverging,
                    aborted: r.aborted,
                },
                None => FetchPartitionOut {
                    partition: p.partition,
                    error: if elsewhere.contains(&(t.name.clone(), p.partition)) {
                        errors::NOT_LEADER_OR_FOLLOWER
                    } else {
                        errors::UNKNOWN_TOPIC_OR_PARTITION
                    },
                    high_watermark: -1,
                    last_stable_offset: -1,
                    log_start_offset: -1,
                    records: Records::Bytes(Bytes::new()),
                    diverging: None,
                    aborted: Vec::new(),
                },
            });
        }
        out.push((t.name.clone(), parts));
    }
    out
}
