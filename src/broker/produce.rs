//! Produce: validate, route each partition's records to its owning shard, append, answer.
//!
//! Invariants: records are appended only by the owning shard, all batches of one partition
//! in a request succeed or fail together, and nothing is acknowledged before it is written.
//! A request is handled in two halves: [`start`] queues its appends (or sends them to their
//! owners, over channels that keep order) and [`finish`] waits for them, so a connection can
//! read and start the next Produce while this one's writes are in flight, and appends still
//! land in request order.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::{error, info, warn};

use super::catalog;
use super::errors::{self, log_error_code};
use super::router::{Call, Reply};
use super::schema_check;
use super::shard::Shard;
use crate::log::Enqueued;
use crate::protocol::ProduceRequest;

/// One partition's records to append on its owner.
pub struct PartAppend {
    pub slot: usize,
    pub topic: String,
    pub partition: i32,
    pub records: Option<Bytes>,
    /// acks=all: acknowledge only once durable (under the `always` flush policy) and, for a
    /// replicated partition, once every in-sync replica has it.
    pub durable: bool,
    /// The request's `timeout_ms`: how long acks=all waits for the in-sync replicas.
    pub timeout_ms: i32,
}

pub struct PartProduceResult {
    pub slot: usize,
    pub error: i16,
    pub base_offset: i64,
    pub log_start_offset: i64,
    /// Records refused by schema validation: (index in the batch, why), and a summary.
    pub record_errors: Vec<(i32, String)>,
    pub message: Option<String>,
}

fn failed(slot: usize, error: i16) -> PartProduceResult {
    PartProduceResult {
        slot,
        error,
        base_offset: -1,
        log_start_offset: -1,
        record_errors: Vec::new(),
        message: None,
    }
}

/// A failed append to a partition this shard holds: the error with the log's start offset
/// (a Java producer retries a sequence error without one until its delivery timeout).
fn failed_in(slot: usize, error: i16, log: Option<&crate::log::Log>) -> PartProduceResult {
    PartProduceResult {
        log_start_offset: log.map_or(-1, |l| l.log_start_offset()),
        ..failed(slot, error)
    }
}

/// A partition's append on this shard after its first half ([`enqueue_local`]).
pub struct LocalPending {
    slot: usize,
    durable: bool,
    timeout_ms: i32,
    topic: String,
    partition: i32,
    bytes: usize,
    state: Result<(crate::log::Log, Enqueued), i16>,
    /// Schema validation: the records checked, and those refused (with `reject`, the
    /// batch failed; with `dead-letter`, they go to the dead-letter topic).
    checked: u64,
    refused: Vec<schema_check::Refused>,
    dead_letters: Option<String>,
}

/// Queues the appends of partitions owned by this shard: when it returns, every one has its
/// offsets (or its error), so a later request's appends come after them. The partitions are
/// queued side by side (each future's first poll, in order, queues it unless its log's queue
/// is full), so one full log never reorders another.
pub async fn enqueue_local(shard: &Rc<Shard>, parts: Vec<PartAppend>) -> Vec<LocalPending> {
    join_all(parts.into_iter().map(|p| async move {
        let mut checked = 0;
        let mut refused = Vec::new();
        let mut dead_letters = None;
        let state = async {
            let log = shard
                .log(&p.topic, p.partition)
                .ok_or(errors::UNKNOWN_TOPIC_OR_PARTITION)?;
            let records = p
                .records
                .as_ref()
                .filter(|r| !r.is_empty())
                .ok_or(errors::CORRUPT_MESSAGE)?;
            let rules = shard
                .catalog()
                .topics
                .get(&p.topic)
                .and_then(|m| schema_check::rules(&p.topic, m));
            if let Some(rules) = &rules {
                let c = schema_check::check(shard, &p.topic, rules, records).await;
                checked = c.records;
                refused = c.refused;
                if !refused.is_empty() && rules.dead_letter.is_none() {
                    return Err(errors::INVALID_RECORD);
                }
                dead_letters = rules.dead_letter.clone().filter(|_| !refused.is_empty());
            }
            // Logged once when the state changes (disk_space), not per request.
            if shard.disk.low() {
                return Err(errors::KAFKA_STORAGE_ERROR);
            }
            if p.durable {
                crate::replication::leader::check_insync(&shard.catalog(), &p.topic, p.partition)?;
            }
            shard.disk.appended(records.len() as u64);
            let drop: Vec<(usize, i64)> = refused.iter().map(|r| (r.batch, r.offset_delta)).collect();
            match log.enqueue_without(records, p.durable, &drop).await {
                Ok(q) => Ok((log, q)),
                Err(e) => {
                    let code = log_error_code(&e);
                    if code == errors::DUPLICATE_SEQUENCE_NUMBER {
                        // A late retry of batches already written: normal after a failover.
                        info!(topic = %p.topic, partition = p.partition, "retry of a written batch: {e}");
                    } else {
                        warn!(topic = %p.topic, partition = p.partition, "produce refused: {e}");
                    }
                    Err(code)
                }
            }
        }
        .await;
        LocalPending {
            slot: p.slot,
            durable: p.durable,
            timeout_ms: p.timeout_ms,
            bytes: p.records.as_ref().map_or(0, |r| r.len()),
            topic: p.topic,
            partition: p.partition,
            state,
            checked,
            refused,
            dead_letters,
        }
    }))
    .await
}

/// Waits for queued appends to be written (and synced where asked), concurrently.
pub async fn finish_local(shard: &Rc<Shard>, pending: Vec<LocalPending>) -> Vec<PartProduceResult> {
    let futs = pending.into_iter().map(|p| {
        let shard = shard.clone();
        async move {
            let (log, queued) = match p.state {
                Ok(x) => x,
                Err(code) => {
                    let mut r = failed_in(p.slot, code, shard.log(&p.topic, p.partition).as_ref());
                    if code == errors::INVALID_RECORD && !p.refused.is_empty() {
                        shard.metrics.record_schema(&p.topic, p.checked, p.refused.len() as u64, 0);
                        r.record_errors =
                            p.refused.iter().map(|x| (x.index, x.reason.clone())).collect();
                        r.message = Some(format!(
                            "schema validation refused {} of {} records; the first: {}",
                            p.refused.len(),
                            p.checked,
                            p.refused[0].reason
                        ));
                        info!(topic = %p.topic, partition = p.partition, "{}", r.message.as_deref().unwrap_or(""));
                    }
                    return r;
                }
            };
            // A retry of a batch already stored: its dead letters were written with it.
            let duplicate = matches!(queued, Enqueued::Duplicate(..));
            match log.finish(queued).await {
                Ok(info) => {
                    // Wakes long-polling fetches first: followers among them must take the
                    // batch before acks=all can be answered.
                    shard.data_arrived.notify_all();
                    let code = replicated(
                        &shard,
                        &p.topic,
                        p.partition,
                        p.durable,
                        p.timeout_ms,
                        &log,
                        info.last_offset,
                    )
                    .await;
                    if code != errors::NONE {
                        return failed_in(p.slot, code, Some(&log));
                    }
                    let dead = p.refused.len() as u64;
                    match p.dead_letters.filter(|_| !duplicate) {
                        Some(dlq) => {
                            let d = schema_check::DeadLetters {
                                topic: p.topic.clone(),
                                partition: p.partition,
                                dead_letter_topic: dlq,
                                refused: p.refused,
                            };
                            if let Err(e) =
                                schema_check::dead_letter(&shard, &d, info.base_offset).await
                            {
                                error!(topic = %p.topic, partition = p.partition, "dead letters not written: {e}");
                                return failed_in(p.slot, errors::KAFKA_STORAGE_ERROR, Some(&log));
                            }
                            shard.metrics.record_schema(&p.topic, p.checked, 0, dead);
                        }
                        None if p.checked > 0 && !duplicate => {
                            shard.metrics.record_schema(&p.topic, p.checked, 0, 0)
                        }
                        None => {}
                    }
                    shard.metrics.record_in(
                        &p.topic,
                        p.bytes as u64,
                        (info.last_offset - info.base_offset + 1) as u64,
                    );
                    PartProduceResult {
                        log_start_offset: log.log_start_offset(),
                        base_offset: info.base_offset,
                        ..failed(p.slot, errors::NONE)
                    }
                }
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.partition, "produce failed: {e}");
                    failed_in(p.slot, log_error_code(&e), Some(&log))
                }
            }
        }
    });
    join_all(futs).await
}

/// For a replicated partition: the high watermark after this append and, for acks=all,
/// the wait until every in-sync replica has it (its error, or NONE).
async fn replicated(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    all: bool,
    timeout_ms: i32,
    log: &crate::log::Log,
    last: i64,
) -> i16 {
    use crate::replication::leader;
    let cat = shard.catalog();
    if !cat.place(topic, partition).is_some_and(leader::replicated) {
        return errors::NONE;
    }
    leader::update_high_watermark(shard, &cat, topic, partition, log);
    if !all {
        return errors::NONE;
    }
    let timeout = std::time::Duration::from_millis(timeout_ms.clamp(0, 300_000) as u64);
    leader::await_replicated(shard, topic, partition, log, last, timeout).await
}

/// Appends to partitions owned by this shard: queued in order, then written concurrently.
pub async fn append_local(shard: &Rc<Shard>, parts: Vec<PartAppend>) -> Vec<PartProduceResult> {
    let pending = enqueue_local(shard, parts).await;
    finish_local(shard, pending).await
}

/// A Produce request whose appends are queued (locally) or sent to their owners' queues in
/// request order; [`finish`] waits for them and builds the response.
pub struct Started {
    acks: i16,
    layout: Vec<(String, Vec<(usize, i32)>)>,
    results: Vec<Option<PartProduceResult>>,
    local: Vec<LocalPending>,
    remote: Vec<(
        Vec<usize>,
        Option<futures::channel::oneshot::Receiver<Reply>>,
    )>,
}

/// Handles a Produce request; `None` for acks=0 (no response is sent).
pub async fn handle(
    shard: &Rc<Shard>,
    req: ProduceRequest,
    listener: &str,
) -> Option<ProduceResponse> {
    let started = start(shard, req).await;
    finish(shard, started, listener).await
}

/// The first half of a Produce: checks, routes and queues every partition's append (on
/// this shard) or sends it to its owner (whose shard-to-shard channel keeps the order).
/// When it returns, a later request's appends are ordered after this one's.
pub async fn start(shard: &Rc<Shard>, req: ProduceRequest) -> Started {
    let catalog = shard.catalog();
    let mut results: Vec<Option<PartProduceResult>> = Vec::new();
    let mut by_owner: BTreeMap<usize, Vec<PartAppend>> = BTreeMap::new();
    let mut layout = Vec::new();
    let acks_ok = matches!(req.acks, -1..=1);
    for t in &req.topics {
        let mut parts = Vec::new();
        for p in &t.partitions {
            let slot = results.len();
            parts.push((slot, p.index));
            let known = catalog
                .topics
                .get(&t.name)
                .is_some_and(|m| p.index >= 0 && p.index < m.partitions);
            let owner = catalog.locate(&t.name, p.index, shard.nshards);
            let refused = if !acks_ok {
                Some(errors::INVALID_REQUIRED_ACKS)
            } else if !known {
                Some(errors::UNKNOWN_TOPIC_OR_PARTITION)
            } else if super::admin::internal(&t.name) {
                // Only the group coordinators append to it (as Kafka refuses clients).
                Some(errors::INVALID_TOPIC_EXCEPTION)
            } else if owner.is_none() {
                // Led by another node: the client refreshes Metadata and goes there.
                Some(errors::NOT_LEADER_OR_FOLLOWER)
            } else {
                None
            };
            match (refused, owner) {
                (Some(_), _) | (None, None) => results.push(Some(failed(
                    slot,
                    refused.unwrap_or(errors::NOT_LEADER_OR_FOLLOWER),
                ))),
                (None, Some(owner)) => {
                    results.push(None);
                    by_owner.entry(owner).or_default().push(PartAppend {
                        slot,
                        topic: t.name.clone(),
                        partition: p.index,
                        records: p.records.clone(),
                        durable: req.acks == -1,
                        timeout_ms: req.timeout_ms,
                    });
                }
            }
        }
        layout.push((t.name.clone(), parts));
    }
    let mut local = Vec::new();
    let mut remote = Vec::new();
    for (owner, parts) in by_owner {
        if owner == shard.id {
            local = enqueue_local(shard, parts).await;
        } else {
            let slots: Vec<usize> = parts.iter().map(|p| p.slot).collect();
            remote.push((slots, shard.send(owner, Call::Produce(parts)).await));
        }
    }
    Started {
        acks: req.acks,
        layout,
        results,
        local,
        remote,
    }
}

/// The second half of a Produce: waits for its appends and builds the response (`None`
/// for acks=0).
pub async fn finish(shard: &Rc<Shard>, s: Started, listener: &str) -> Option<ProduceResponse> {
    let Started {
        acks,
        layout,
        mut results,
        local,
        remote,
    } = s;
    let remote = remote.into_iter().map(|(slots, rx)| async move {
        match rx {
            Some(rx) => match rx.await {
                Ok(Reply::Produce(r)) => r,
                _ => slots
                    .into_iter()
                    .map(|s| failed(s, errors::UNKNOWN_SERVER_ERROR))
                    .collect(),
            },
            None => slots
                .into_iter()
                .map(|s| failed(s, errors::UNKNOWN_SERVER_ERROR))
                .collect(),
        }
    });
    let (local, remote) = futures::join!(finish_local(shard, local), join_all(remote));
    for r in local.into_iter().chain(remote.into_iter().flatten()) {
        let slot = r.slot;
        if let Some(x) = results.get_mut(slot) {
            *x = Some(r);
        }
    }
    if acks == 0 {
        return None;
    }
    let catalog = shard.catalog();
    let mut resp = ProduceResponse::default();
    let mut leaders = BTreeMap::new();
    for (name, parts) in layout {
        let mut t = TopicProduceResponse::default();
        for (slot, index) in parts {
            let r = results
                .get_mut(slot)
                .and_then(|x| x.take())
                .unwrap_or_else(|| failed(slot, errors::UNKNOWN_SERVER_ERROR));
            let mut p = PartitionProduceResponse::default();
            p.index = index;
            p.error_code = r.error;
            if r.error != errors::NONE {
                shard.metrics.record_produce_error(r.error);
            }
            p.base_offset = r.base_offset;
            p.log_append_time_ms = -1;
            p.error_message = r.message.map(StrBytes::from_string);
            p.record_errors = r
                .record_errors
                .into_iter()
                .map(|(i, why)| {
                    kafka_protocol::messages::produce_response::BatchIndexAndErrorMessage::default()
                        .with_batch_index(i)
                        .with_batch_index_error_message(Some(StrBytes::from_string(why)))
                })
                .collect();
            p.log_start_offset = r.log_start_offset;
            if r.error == errors::NOT_LEADER_OR_FOLLOWER {
                // KIP-951 (v10+; older versions drop the tagged fields): the leader and
                // its address, so the client can retry there before its Metadata refresh.
                if let Some((id, epoch)) = catalog.leader_and_epoch(&name, index, shard.nshards) {
                    p.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(id))
                        .with_leader_epoch(epoch);
                    leaders.insert(id, ());
                }
            }
            t.partition_responses.push(p);
        }
        t.name = TopicName(StrBytes::from_string(name));
        resp.responses.push(t);
    }
    if let Some(cm) = &catalog.cluster {
        for id in leaders.into_keys() {
            let (node, shard_index) = catalog::node_and_shard(id);
            if let Some((_, host, port)) = cm.broker_on(node, shard_index, listener) {
                let rack = cm.nodes.get(&node).map(|n| n.rack.clone());
                resp.node_endpoints.push(
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(id))
                        .with_host(StrBytes::from_string(host.to_string()))
                        .with_port(i32::from(port))
                        .with_rack(rack.map(StrBytes::from_string)),
                );
            }
        }
    }
    Some(resp)
}
