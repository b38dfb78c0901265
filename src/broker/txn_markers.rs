//! Transaction markers on their way to partitions: from the coordinator to the shard of
//! this node that leads each partition (over the router), or in a cluster to the broker of
//! another node that leads it (WriteTxnMarkers, API 27, on the inter-broker listener), and
//! that request served.
//!
//! Invariants: a marker is written only by the shard leading its partition, durably, and is
//! acknowledged only once the partition's in-sync replicas have it (Kafka writes markers
//! with acks=all); the offsets partition's "marker" is its group coordinator's. A
//! WriteTxnMarkers request is never passed on to a third broker: a partition not led here
//! gets NOT_LEADER_OR_FOLLOWER and the coordinator retries with a newer catalog.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use futures::future::join_all;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic, WriteTxnMarkersRequest as WireRequest,
};
use kafka_protocol::messages::write_txn_markers_response::*;
use kafka_protocol::messages::{ProducerId, TopicName};
use tracing::{debug, warn};

use super::errors::{self, log_error_code};
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::group::OFFSETS_TOPIC;
use crate::log::txn_index::Marker;
use crate::protocol::{str_bytes as s, WriteTxnMarkersRequest};

/// Version spoken to other nodes (flexible).
const VERSION: i16 = 1;
/// How long a marker waits for its in-sync replicas, and a remote call for its answer.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(5);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle connections kept per destination broker.
const IDLE_PER_BROKER: usize = 2;

/// One transaction's marker for some partitions.
#[derive(Debug, Clone)]
pub struct MarkerCall {
    pub pid: i64,
    pub epoch: i16,
    pub marker: Marker,
    pub coordinator_epoch: i32,
    pub parts: Vec<(String, i32)>,
}

impl MarkerCall {
    fn with_parts(&self, parts: Vec<(String, i32)>) -> MarkerCall {
        MarkerCall {
            parts,
            ..self.clone()
        }
    }
}

/// Where a partition's marker goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    /// The shard of this node leading it.
    Shard(usize),
    /// The broker (node, shard) of another node leading it.
    Broker(u64, u16),
    /// Not written: this code (UNKNOWN_TOPIC_OR_PARTITION for a partition gone, which the
    /// coordinator counts as done; else retried).
    Code(i16),
}

fn target(shard: &Shard, topic: &str, partition: i32) -> Target {
    let cat = shard.catalog();
    if cat.cluster.is_none() {
        if topic == OFFSETS_TOPIC {
            return if (0..crate::group::OFFSETS_PARTITIONS).contains(&partition) {
                Target::Shard(super::catalog::Catalog::owner(
                    topic,
                    partition,
                    shard.nshards,
                ))
            } else {
                Target::Code(errors::UNKNOWN_TOPIC_OR_PARTITION)
            };
        }
        if !cat
            .topics
            .get(topic)
            .is_some_and(|m| (0..m.partitions).contains(&partition))
        {
            return Target::Code(errors::UNKNOWN_TOPIC_OR_PARTITION);
        }
    }
    let Some(place) = cat.place(topic, partition) else {
        return match cat.cluster {
            Some(_) => Target::Code(errors::UNKNOWN_TOPIC_OR_PARTITION),
            None => Target::Shard(super::catalog::Catalog::owner(
                topic,
                partition,
                shard.nshards,
            )),
        };
    };
    match (place.leader_replica(), cat.cluster.as_ref()) {
        (Some((node, s)), Some(cm)) if node == cm.local => {
            if usize::from(s) < shard.nshards {
                Target::Shard(usize::from(s))
            } else {
                Target::Code(errors::NOT_LEADER_OR_FOLLOWER)
            }
        }
        (Some((node, s)), Some(_)) => Target::Broker(node, s),
        _ => Target::Code(errors::NOT_LEADER_OR_FOLLOWER),
    }
}

/// Writes `call`'s marker to each of its partitions: one code per partition. Partitions
/// another node leads are sent there when `remote` (the coordinator's calls), else refused.
pub async fn deliver(shard: &Rc<Shard>, call: MarkerCall, remote: bool) -> Vec<i16> {
    let mut codes = vec![errors::UNKNOWN_TOPIC_OR_PARTITION; call.parts.len()];
    let mut by_target: BTreeMap<Target, Vec<usize>> = BTreeMap::new();
    for (i, (t, p)) in call.parts.iter().enumerate() {
        match target(shard, t, *p) {
            Target::Code(c) => codes[i] = c,
            Target::Broker(..) if !remote => codes[i] = errors::NOT_LEADER_OR_FOLLOWER,
            to => by_target.entry(to).or_default().push(i),
        }
    }
    let futs = by_target.into_iter().map(|(to, idx)| {
        let shard = shard.clone();
        let sub = call.with_parts(idx.iter().map(|i| call.parts[*i].clone()).collect());
        async move {
            let n = idx.len();
            let got = match to {
                Target::Shard(o) if o == shard.id => markers_local(&shard, sub).await,
                Target::Shard(o) => match shard.call(o, Call::WriteMarkers(sub)).await {
                    Some(Reply::Codes(c)) => c,
                    _ => vec![errors::COORDINATOR_NOT_AVAILABLE; n],
                },
                Target::Broker(node, s) => send(&shard, (node, s), sub).await,
                Target::Code(c) => vec![c; n],
            };
            let got = if got.len() == n {
                got
            } else {
                vec![errors::UNKNOWN_SERVER_ERROR; n]
            };
            idx.into_iter().zip(got).collect::<Vec<_>>()
        }
    });
    for (i, c) in join_all(futs).await.into_iter().flatten() {
        codes[i] = c;
    }
    codes
}

/// Writes markers to partitions this shard leads (the offsets topic's through its group
/// coordinator): one code per partition, each only once its in-sync replicas have it.
pub async fn markers_local(shard: &Rc<Shard>, call: MarkerCall) -> Vec<i16> {
    let mut out = Vec::with_capacity(call.parts.len());
    let clustered = shard.catalog().cluster.is_some();
    for (t, p) in &call.parts {
        let (t, p) = (t.as_str(), *p);
        let code = if t == OFFSETS_TOPIC {
            shard
                .groups
                .txn_marker(p, call.pid, call.marker == Marker::Commit)
                .await
        } else if shard.owner(t, p) != Some(shard.id) {
            errors::NOT_LEADER_OR_FOLLOWER
        } else {
            match shard.log(t, p) {
                None => errors::UNKNOWN_TOPIC_OR_PARTITION,
                Some(log) => {
                    let written = log
                        .append_marker(
                            call.pid,
                            call.epoch,
                            call.marker,
                            call.coordinator_epoch,
                            true,
                        )
                        .await;
                    match written {
                        Ok(info) if clustered => {
                            shard.data_arrived.notify_all();
                            crate::replication::leader::await_replicated(
                                shard,
                                t,
                                p,
                                &log,
                                info.last_offset,
                                REPLICA_TIMEOUT,
                            )
                            .await
                        }
                        Ok(_) => errors::NONE,
                        Err(e) => {
                            warn!(topic = %t, partition = p, producer_id = call.pid, "transaction marker not written: {e}");
                            log_error_code(&e)
                        }
                    }
                }
            }
        };
        out.push(code);
    }
    shard.data_arrived.notify_all();
    out
}

/// Sends `call` to the broker `to` of another node: one code per partition.
async fn send(shard: &Rc<Shard>, to: (u64, u16), call: MarkerCall) -> Vec<i16> {
    let n = call.parts.len();
    let failed = |code: i16| vec![code; n];
    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (t, p) in &call.parts {
        match topics.last_mut() {
            Some(last) if last.name.0.as_str() == t => last.partition_indexes.push(*p),
            _ => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(s(t)))
                    .with_partition_indexes(vec![*p]),
            ),
        }
    }
    let req = WireRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(call.pid))
        .with_producer_epoch(call.epoch)
        .with_transaction_result(call.marker == Marker::Commit)
        .with_topics(topics)
        .with_coordinator_epoch(call.coordinator_epoch)]);
    let pooled = shard
        .marker_conns
        .borrow_mut()
        .get_mut(&to)
        .and_then(Vec::pop);
    let mut conn = match pooled {
        Some(c) => c,
        None => match crate::replication::follower::connect(&shard.catalog(), to).await {
            Some(c) => c,
            None => return failed(errors::NOT_LEADER_OR_FOLLOWER),
        },
    };
    // One request at a time per connection, and a connection that failed is dropped.
    let correlation = 1;
    let resp = match crate::runtime::timeout(
        CALL_TIMEOUT,
        crate::replication::follower::call_broker(
            &mut conn,
            &req,
            VERSION,
            correlation,
            "shardlog-txn-markers",
        ),
    )
    .await
    {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            debug!(node = to.0, "WriteTxnMarkers failed: {e}");
            return failed(errors::NOT_LEADER_OR_FOLLOWER);
        }
        None => return failed(errors::REQUEST_TIMED_OUT),
    };
    {
        let mut pool = shard.marker_conns.borrow_mut();
        let idle = pool.entry(to).or_default();
        if idle.len() < IDLE_PER_BROKER {
            idle.push(conn);
        }
    }
    let result = resp
        .markers
        .into_iter()
        .find(|m| m.producer_id.0 == call.pid);
    call.parts
        .iter()
        .map(|(t, p)| {
            result
                .as_ref()
                .and_then(|r| r.topics.iter().find(|x| x.name.0.as_str() == t))
                .and_then(|x| x.partitions.iter().find(|q| q.partition_index == *p))
                .map_or(errors::UNKNOWN_SERVER_ERROR, |q| q.error_code)
        })
        .collect()
}

/// WriteTxnMarkers from another node's coordinator (authorized by the caller): each
/// marker written to the partitions this node leads. A request naming more partitions
/// than a transaction may span is answered INVALID_REQUEST throughout, nothing written.
pub async fn handle(shard: &Rc<Shard>, req: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let total: usize = req
        .markers
        .iter()
        .flat_map(|m| m.topics.iter().map(|(_, ps)| ps.len()))
        .sum();
    if total > crate::txn::coordinator::MAX_PARTITIONS {
        warn!(
            partitions = total,
            "WriteTxnMarkers refused: more partitions than a transaction may span"
        );
        return refuse(req, errors::INVALID_REQUEST);
    }
    let mut resp = WriteTxnMarkersResponse::default();
    for m in req.markers {
        let parts = flat(&m.topics);
        let call = MarkerCall {
            pid: m.producer_id,
            epoch: m.producer_epoch,
            marker: if m.committed {
                Marker::Commit
            } else {
                Marker::Abort
            },
            coordinator_epoch: m.coordinator_epoch,
            parts: parts.clone(),
        };
        let codes = deliver(shard, call, false).await;
        resp.markers.push(result(m.producer_id, parts, codes));
    }
    resp
}

/// Every partition of `req` answered `code`.
pub fn refuse(req: WriteTxnMarkersRequest, code: i16) -> WriteTxnMarkersResponse {
    let mut resp = WriteTxnMarkersResponse::default();
    for m in req.markers {
        let parts = flat(&m.topics);
        let codes = vec![code; parts.len()];
        resp.markers.push(result(m.producer_id, parts, codes));
    }
    resp
}

fn flat(topics: &[(String, Vec<i32>)]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
        .collect()
}

fn result(pid: i64, parts: Vec<(String, i32)>, codes: Vec<i16>) -> WritableTxnMarkerResult {
    let mut result = WritableTxnMarkerResult::default().with_producer_id(ProducerId(pid));
    for ((t, p), code) in parts.into_iter().zip(codes) {
        if result.topics.last().is_none_or(|x| x.name.0.as_str() != t) {
            result
                .topics
                .push(WritableTxnMarkerTopicResult::default().with_name(TopicName(s(&t))));
        }
        if let Some(last) = result.topics.last_mut() {
            last.partitions.push(
                WritableTxnMarkerPartitionResult::default()
                    .with_partition_index(p)
                    .with_error_code(code),
            );
        }
    }
    result
}
