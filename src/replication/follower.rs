//! The follower's side: one fetcher task per leader broker this shard follows partitions
//! from. Each round it sends one Fetch (v12, `replica_id` = this shard's broker id) for all
//! of them, truncates a partition whose log diverged, appends what came, and takes the
//! leader's high watermark (capped by its own log end).
//!
//! A fetcher reads its partitions from the current catalog every round, so leadership
//! changes need no signal: a partition whose leader moved drops out of this fetcher and
//! into another's; a fetcher left with none ends.

use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::fetch_response::FetchResponse;
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info, warn};

use crate::admin::client::{decode_response, encode_request, response_len};
use crate::broker::catalog::{self, Catalog};
use crate::broker::errors;
use crate::broker::shard::Shard;
use crate::log::{Log, LogError};
use crate::runtime::Conn;

/// Fetch version spoken to leaders (DivergingEpoch needs 12).
const VERSION: i16 = 12;
const MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const MAX_BYTES: i32 = 16 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after a failed round (no connection, an error answer) before the next.
const BACKOFF: Duration = Duration::from_millis(200);

/// Starts a fetcher for every leader this shard follows a partition from and has none for.
pub fn ensure_fetchers(shard: &Rc<Shard>) {
    let cat = shard.catalog();
    let Some(cm) = &cat.cluster else {
        return;
    };
    let mut leaders = std::collections::BTreeSet::new();
    for (name, meta) in &cat.topics {
        for p in 0..meta.partitions {
            if cat.hosted(name, p, shard.nshards) != Some(shard.id) {
                continue;
            }
            if let Some((node, s)) = cat.place(name, p).and_then(|pl| pl.leader_replica()) {
                if node != cm.local {
                    leaders.insert((node, s));
                }
            }
        }
    }
    for leader in leaders {
        let new = shard
            .replication
            .fetchers
            .borrow_mut()
            .insert(leader, ())
            .is_none();
        if new {
            let shard = shard.clone();
            crate::runtime::spawn_local(async move { run(shard, leader).await });
        }
    }
}

/// One partition a fetcher fetches: its log and the leader epoch it expects.
struct Followed {
    topic: String,
    partition: i32,
    log: Log,
    leader_epoch: i32,
}

/// The partitions this shard follows from `leader`, now.
fn followed(shard: &Shard, cat: &Catalog, leader: (u64, u16)) -> Vec<Followed> {
    let mut out = Vec::new();
    for (name, meta) in &cat.topics {
        for p in 0..meta.partitions {
            let Some(place) = cat.place(name, p) else {
                continue;
            };
            if place.leader_replica() != Some(leader)
                || cat.hosted(name, p, shard.nshards) != Some(shard.id)
            {
                continue;
            }
            if let Some(log) = shard.log(name, p) {
                out.push(Followed {
                    topic: name.clone(),
                    partition: p,
                    log,
                    leader_epoch: place.leader_epoch,
                });
            }
        }
    }
    out
}

async fn run(shard: Rc<Shard>, leader: (u64, u16)) {
    info!(
        shard = shard.id,
        leader_node = leader.0,
        leader_shard = leader.1,
        "follower fetcher started"
    );
    let mut conn: Option<Conn> = None;
    let mut correlation = 0i32;
    // Ends when the shard stops or no partition is followed from this leader any more;
    // each round is bounded by the fetch's wait and the call's deadline.
    loop {
        let cat = shard.catalog();
        let parts = followed(&shard, &cat, leader);
        if parts.is_empty() || shard.stopping.get() {
            // Checked and removed in one step: a new partition from this leader either
            // sees this fetcher gone (and starts another) or is in `parts` next round.
            shard.replication.fetchers.borrow_mut().remove(&leader);
            info!(
                shard = shard.id,
                leader_node = leader.0,
                "follower fetcher stopped"
            );
            return;
        }
        if conn.is_none() {
            conn = connect(&cat, leader).await;
            if conn.is_none() {
                crate::runtime::sleep(BACKOFF).await;
                continue;
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        correlation = correlation.wrapping_add(1);
        let me = catalog::broker_id(
            cat.cluster.as_ref().map_or(0, |cm| cm.local),
            shard.id as u16,
        );
        let req = request(me, &parts);
        let deadline = Duration::from_millis(MAX_WAIT_MS as u64) + Duration::from_secs(10);
        let answer = crate::runtime::timeout(deadline, call(c, &req, correlation)).await;
        let resp = match answer {
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                debug!(leader_node = leader.0, "replica fetch failed: {e}");
                conn = None;
                crate::runtime::sleep(BACKOFF).await;
                continue;
            }
            None => {
                debug!(leader_node = leader.0, "replica fetch timed out");
                conn = None;
                continue;
            }
        };
        if !apply(&shard, leader, &parts, resp).await {
            crate::runtime::sleep(BACKOFF).await;
        }
    }
}

/// Connects to the leader shard's Kafka port (its inter-broker listener).
pub(crate) async fn connect(cat: &Catalog, leader: (u64, u16)) -> Option<Conn> {
    let cm = cat.cluster.as_ref()?;
    let (_, host, port) = cm.broker(leader.0, leader.1)?;
    let addr: SocketAddr = match format!("{host}:{port}").parse() {
        Ok(a) => a,
        // A host name: resolved here, on the rare (re)connect.
        Err(_) => (host, port).to_socket_addrs().ok()?.next()?,
    };
    match Conn::connect(addr, CONNECT_TIMEOUT).await {
        Ok(c) => Some(c),
        Err(e) => {
            debug!(%addr, "cannot connect to the leader: {e}");
            None
        }
    }
}

fn request(me: i32, parts: &[Followed]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for f in parts {
        let mut fp = FetchPartition::default();
        fp.partition = f.partition;
        fp.current_leader_epoch = f.leader_epoch;
        fp.fetch_offset = f.log.log_end_offset();
        fp.last_fetched_epoch = f.log.latest_epoch().unwrap_or(-1);
        fp.log_start_offset = -1;
        fp.partition_max_bytes = PARTITION_MAX_BYTES;
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == f.topic => t.partitions.push(fp),
            _ => {
                let mut t = FetchTopic::default();
                t.topic = TopicName(StrBytes::from_string(f.topic.clone()));
                t.partitions = vec![fp];
                topics.push(t);
            }
        }
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(me);
    req.max_wait_ms = MAX_WAIT_MS;
    req.min_bytes = 1;
    req.max_bytes = MAX_BYTES;
    req.session_id = 0;
    req.session_epoch = -1;
    req.topics = topics;
    req
}

async fn call(c: &mut Conn, req: &FetchRequest, correlation: i32) -> anyhow::Result<FetchResponse> {
    call_broker(c, req, VERSION, correlation, "shardlog-replica").await
}

/// One request to another node's broker and its answer (one at a time per connection).
pub(crate) async fn call_broker<R: kafka_protocol::protocol::Request>(
    c: &mut Conn,
    req: &R,
    version: i16,
    correlation: i32,
    client_id: &'static str,
) -> anyhow::Result<R::Response> {
    let frame = encode_request(req, version, correlation, client_id)?;
    c.write_all(&frame).await?;
    let mut len = [0u8; 4];
    c.read_exact(&mut len).await?;
    let mut body = vec![0u8; response_len(len)?];
    c.read_exact(&mut body).await?;
    decode_response::<R>(Bytes::from(body), version, correlation)
}

/// Applies one answer: truncations, appends, high watermarks. Whether the round went well
/// (false: pause before the next).
async fn apply(
    shard: &Rc<Shard>,
    leader: (u64, u16),
    parts: &[Followed],
    resp: FetchResponse,
) -> bool {
    let mut ok = resp.error_code == errors::NONE;
    for t in resp.responses {
        for pd in t.partitions {
            let Some(f) = parts
                .iter()
                .find(|f| f.topic == t.topic.0.as_str() && f.partition == pd.partition_index)
            else {
                continue;
            };
            // Still following this leader at this epoch? (The catalog may have moved on
            // while the fetch was out.)
            let cat = shard.catalog();
            let same = cat.place(&f.topic, f.partition).is_some_and(|p| {
                p.leader_replica() == Some(leader) && p.leader_epoch == f.leader_epoch
            });
            if !same {
                continue;
            }
            match pd.error_code {
                errors::NONE => {}
                errors::OFFSET_OUT_OF_RANGE => {
                    ok = false;
                    out_of_range(f, pd.high_watermark, pd.log_start_offset).await;
                    continue;
                }
                code => {
                    // Fenced or unknown epoch, not the leader: the catalog catches up.
                    debug!(topic = %f.topic, partition = f.partition, code, "replica fetch refused");
                    ok = false;
                    continue;
                }
            }
            let div = &pd.diverging_epoch;
            if div.epoch >= 0 || div.end_offset >= 0 {
                truncate_diverged(f, div.epoch, div.end_offset).await;
                continue;
            }
            if let Some(records) = pd.records.filter(|r| !r.is_empty()) {
                match f.log.append_replica(&records, false).await {
                    Ok(_) => shard
                        .replication
                        .count(|s| s.fetched_bytes += records.len() as u64),
                    Err(LogError::NotAtEnd { .. }) => {}
                    Err(e) => {
                        warn!(topic = %f.topic, partition = f.partition, "replica append failed: {e}");
                        ok = false;
                        continue;
                    }
                }
            }
            let end = f.log.written_end();
            f.log.set_committed(Some(pd.high_watermark.min(end).max(0)));
            // The leader's log start moved (DeleteRecords, retention): follow it, within
            // what this replica has committed.
            let start = pd.log_start_offset.min(f.log.high_watermark());
            if start > f.log.log_start_offset() {
                if let Err(e) = f.log.delete_records(start) {
                    warn!(topic = %f.topic, partition = f.partition, "log start not moved: {e}");
                }
            }
        }
    }
    ok
}

/// KIP-279: the leader's history differs from `epoch` on (its `epoch` ends at `end`): cut
/// to where both agree — the smaller of the leader's end for that epoch and this log's.
async fn truncate_diverged(f: &Followed, epoch: i32, end: i64) {
    let mine = if epoch >= 0 {
        f.log.end_offset_for_epoch(epoch).map_or(end, |(_, e)| e)
    } else {
        end
    };
    let to = end.min(mine).max(f.log.log_start_offset());
    match f.log.truncate_to(to).await {
        Ok(at) => {
            info!(topic = %f.topic, partition = f.partition, epoch, to = at, "truncated a diverged replica to its leader's log")
        }
        Err(e) => warn!(topic = %f.topic, partition = f.partition, "truncation failed: {e}"),
    }
}

/// The leader says this replica's fetch offset is outside its log. Past its end (this
/// replica has more, never acknowledged): cut back to the leader's high watermark.
async fn out_of_range(f: &Followed, leader_hw: i64, leader_start: i64) {
    let mine = f.log.log_end_offset();
    if mine < leader_start {
        // Below the leader's log start (retention or DeleteRecords there): what comes next
        // is gone, so this replica starts over from the leader's log start.
        if let Err(e) = f.log.reset_to(leader_start).await {
            warn!(topic = %f.topic, partition = f.partition, "reset failed: {e}");
        }
        return;
    }
    if leader_hw >= 0 && mine > leader_hw {
        if let Err(e) = f.log.truncate_to(leader_hw).await {
            warn!(topic = %f.topic, partition = f.partition, "truncation failed: {e}");
        }
    }
}
