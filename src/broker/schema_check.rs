//! Schema validation on produce, on the shard that owns the partition: each record of a
//! topic with `schema.validation` = `id` or `full` is checked against the registry's
//! snapshot before it is appended. An invalid record either fails its partition's batch
//! (`schema.validation.failure` = `reject`: INVALID_RECORD with per-record errors) or goes
//! to the dead-letter topic (`dead-letter`) while the batch is stored without it.
//!
//! Invariants:
//! - a record reaches the topic only if it passed; a partition's batches are checked as
//!   the producer sent them, so a retry of a stored batch is answered as a duplicate, with
//!   nothing appended twice anywhere;
//! - dead letters are appended (acks=all) before the producer's batch is acknowledged,
//!   each naming the original topic, partition and offset, the schema id and the reason;
//! - the stored batch keeps its offsets and sequence range, so offsets stay monotonic and
//!   the producer's sequence numbers still deduplicate.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use super::catalog::TopicMeta;
use super::errors;
use super::produce::PartAppend;
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::admin::batch::OutRecord;
use crate::log::batch;
use crate::log::codec;
use crate::log::records::{owned_headers, RecordWalk};
use crate::schema::validate::{self, Mode, Snapshot};

/// How long a record naming a schema id the snapshot lacks waits for the registry to read
/// `_schemas` again (an id registered through another node a moment ago).
const REFRESH_WAIT: Duration = Duration::from_secs(2);
/// Largest records section decompressed to check it (the log's own bound).
const MAX_SECTION: usize = 64 << 20;
/// Longest reason kept per refused record (in responses and dead-letter headers).
const MAX_REASON: usize = 500;

/// What a topic checks, from its configs (`None`: `schema.validation` is `none`).
#[derive(Debug, Clone)]
pub struct Rules {
    pub mode: Mode,
    pub key: bool,
    /// `Some(topic)` with `schema.validation.failure = dead-letter`.
    pub dead_letter: Option<String>,
}

pub fn rules(topic: &str, meta: &TopicMeta) -> Option<Rules> {
    let get = |k: &str| meta.configs.get(k).map(String::as_str);
    let mode = get("schema.validation").and_then(Mode::parse)?;
    if mode == Mode::None {
        return None;
    }
    let dead_letter =
        (get("schema.validation.failure") == Some("dead-letter")).then(|| {
            match get("dead.letter.topic") {
                Some(t) if !t.is_empty() => t.to_string(),
                _ => format!("{topic}.dlq"),
            }
        });
    Some(Rules {
        mode,
        key: get("schema.validation.key") == Some("true"),
        dead_letter,
    })
}

/// A refused record, kept whole for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Position among the partition's records in the request (the response's batch index).
    pub index: i32,
    /// Which batch of the request, and the record's offset delta in it.
    pub batch: usize,
    pub offset_delta: i64,
    /// Its offset relative to the first batch's base offset.
    pub relative_offset: i64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub schema_id: Option<u32>,
    pub reason: String,
    /// The id was not in the snapshot (a newer one may know it).
    pub unknown_id: bool,
}

/// The outcome for one partition's records.
#[derive(Debug, Default)]
pub struct Checked {
    pub records: u64,
    pub refused: Vec<Refused>,
}

/// The shard's copy of the registry's snapshot, re-read only when it changed.
fn snapshot(shard: &Shard) -> (u64, Arc<Snapshot>) {
    let g = shard.registry.generation();
    let mut cached = shard.schema_snapshot.borrow_mut();
    if cached.0 != g {
        *cached = shard.registry.snapshot();
    }
    cached.clone()
}

/// Checks every record of `records` (one partition's batches as sent). Batches that do not
/// parse are left to the log, which refuses them as corrupt.
pub async fn check(shard: &Shard, topic: &str, rules: &Rules, records: &[u8]) -> Checked {
    if !shard.cfg.schema_registry {
        return refuse_all(
            records,
            "the schema registry is off (schema.registry.enable)",
        );
    }
    let (generation, snap) = snapshot(shard);
    let first = check_with(&snap, topic, rules, records);
    if !first.refused.iter().any(|r| r.unknown_id) {
        return first;
    }
    // An id the snapshot does not know: the registry reads `_schemas` once more.
    shard.registry.nudge();
    let deadline = std::time::Instant::now() + REFRESH_WAIT;
    // Bounded by the deadline.
    while std::time::Instant::now() < deadline {
        crate::runtime::sleep(Duration::from_millis(20)).await;
        if shard.registry.generation() != generation {
            let (_, snap) = snapshot(shard);
            return check_with(&snap, topic, rules, records);
        }
    }
    first
}

/// Every record refused for `reason` (validation cannot run).
fn refuse_all(records: &[u8], reason: &str) -> Checked {
    let mut out = Checked::default();
    walk(records, |at, r| {
        out.records += 1;
        let why = validate::Refusal {
            schema_id: None,
            reason: reason.to_string(),
            unknown_id: false,
        };
        out.refused.push(refused(at, r, why));
    });
    out
}

/// Where a record is: batch number, its index among all records, its batch's base
/// relative to the first batch's, its batch's base timestamp.
#[derive(Clone, Copy)]
struct At {
    batch: usize,
    index: i32,
    relative_base: i64,
    base_timestamp: i64,
}

fn refused(at: At, r: &crate::log::records::RawRecord<'_>, why: validate::Refusal) -> Refused {
    let mut reason = why.reason;
    if reason.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        reason.truncate(cut);
    }
    let headers = owned_headers(r.headers);
    Refused {
        index: at.index,
        batch: at.batch,
        offset_delta: r.offset_delta,
        relative_offset: at.relative_base + r.offset_delta,
        timestamp: at.base_timestamp + r.timestamp_delta,
        key: r.key.map(<[u8]>::to_vec),
        value: r.value.map(<[u8]>::to_vec),
        headers,
        schema_id: why.schema_id,
        reason,
        unknown_id: why.unknown_id,
    }
}

/// Calls `f(where, record)` for every record of the whole, decodable batches of `records`.
fn walk(records: &[u8], mut f: impl FnMut(At, &crate::log::records::RawRecord<'_>)) {
    let mut pos = 0;
    let mut at = At {
        batch: 0,
        index: 0,
        relative_base: 0,
        base_timestamp: 0,
    };
    // Bounded: each round moves past one batch or stops.
    while pos < records.len() {
        let Ok(h) = batch::validate(&records[pos..]) else {
            return;
        };
        let b = &records[pos..pos + h.size];
        pos += h.size;
        let Ok((_, section)) = codec::batch_records(b, &h, MAX_SECTION) else {
            return;
        };
        at.base_timestamp = h.base_timestamp;
        for r in RecordWalk::new(&section, &h) {
            f(at, &r);
            at.index += 1;
        }
        at.batch += 1;
        at.relative_base += h.offset_span();
    }
}

fn check_with(snap: &Snapshot, topic: &str, rules: &Rules, records: &[u8]) -> Checked {
    let value_subject = format!("{topic}-value");
    let key_subject = format!("{topic}-key");
    let mut out = Checked::default();
    walk(records, |at, r| {
        out.records += 1;
        let mut verdict = match r.value {
            // A tombstone carries no payload to check.
            None => Ok(0),
            Some(v) => validate::check(snap, &value_subject, rules.mode, v),
        };
        if verdict.is_ok() && rules.key {
            verdict = match r.key {
                None => Err(validate::Refusal {
                    schema_id: None,
                    reason: "the key is null but the topic checks keys".into(),
                    unknown_id: false,
                }),
                Some(k) => validate::check(snap, &key_subject, rules.mode, k).map_err(|mut e| {
                    e.reason = format!("key: {}", e.reason);
                    e
                }),
            };
        }
        if let Err(e) = verdict {
            out.refused.push(refused(at, r, e));
        }
    });
    out
}

/// The dead letters of one partition's batch, to append once the batch has its offsets.
pub struct DeadLetters {
    pub topic: String,
    pub partition: i32,
    pub dead_letter_topic: String,
    pub refused: Vec<Refused>,
}

/// Appends `d`'s records to the dead-letter topic (creating it with the topic's partition
/// count if it is missing), each with headers naming where it was going; `base` is the
/// offset the original batch got. Waits for acks=all.
pub async fn dead_letter(shard: &Rc<Shard>, d: &DeadLetters, base: i64) -> Result<(), String> {
    let dlq = &d.dead_letter_topic;
    if !shard.catalog().topics.contains_key(dlq) {
        // As many partitions as the topic, and in a cluster as many replicas.
        let (partitions, replication) = shard.catalog().topics.get(&d.topic).map_or((1, -1), |m| {
            let rf = m.placement.first().map_or(-1, |p| p.replicas.len() as i16);
            (m.partitions, rf)
        });
        super::admin::create_internal_topic(shard, dlq, partitions, replication).await;
        // In a cluster the new topic reaches this shard's catalog a moment later.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline.
        while !shard.catalog().topics.contains_key(dlq) && std::time::Instant::now() < deadline {
            crate::runtime::sleep(Duration::from_millis(20)).await;
        }
    }
    let cat = shard.catalog();
    let Some(meta) = cat.topics.get(dlq) else {
        return Err(format!("dead-letter topic {dlq} could not be created"));
    };
    let partition = d.partition % meta.partitions.max(1);
    let records: Vec<OutRecord> = d
        .refused
        .iter()
        .map(|r| {
            let mut headers = r.headers.clone();
            let offset = base + r.relative_offset;
            for (k, v) in [
                ("dlq.topic", d.topic.clone()),
                ("dlq.partition", d.partition.to_string()),
                ("dlq.offset", offset.to_string()),
                (
                    "dlq.schema.id",
                    r.schema_id.map(|i| i.to_string()).unwrap_or_default(),
                ),
                ("dlq.reason", r.reason.clone()),
            ] {
                headers.push((k.to_string(), Some(v.into_bytes())));
            }
            OutRecord {
                key: r.key.clone(),
                value: r.value.clone(),
                headers,
            }
        })
        .collect();
    let timestamp = d.refused.first().map_or(0, |r| r.timestamp);
    let bytes = crate::admin::batch::encode(&records, timestamp, codec::Codec::None, None)
        .map_err(|e| format!("dead-letter batch: {e}"))?;
    let bytes = bytes::Bytes::from(bytes);
    let deadline = std::time::Instant::now() + NEW_TOPIC_WAIT;
    // Bounded by the deadline: a partition just created (or just moved) is not served by
    // its leader at once.
    loop {
        let code = append_once(shard, dlq, partition, bytes.clone()).await?;
        match code {
            errors::NONE => return Ok(()),
            errors::UNKNOWN_TOPIC_OR_PARTITION | errors::NOT_LEADER_OR_FOLLOWER
                if std::time::Instant::now() < deadline =>
            {
                crate::runtime::sleep(Duration::from_millis(50)).await
            }
            code => return Err(format!("{dlq}/{partition}: error {code}")),
        }
    }
}

/// How long a dead-letter partition may take to be served after it is created or moves.
const NEW_TOPIC_WAIT: Duration = Duration::from_secs(10);

/// One attempt to append `bytes` to `topic`/`partition` wherever it is led: its error code.
async fn append_once(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    bytes: bytes::Bytes,
) -> Result<i16, String> {
    let Some(owner) = shard.catalog().locate(topic, partition, shard.nshards) else {
        return remote(shard, topic, partition, bytes).await;
    };
    let part = PartAppend {
        slot: 0,
        topic: topic.to_string(),
        partition,
        records: Some(bytes),
        durable: true,
        timeout_ms: 30_000,
    };
    let results = if owner == shard.id {
        let fut: std::pin::Pin<Box<dyn std::future::Future<Output = _>>> =
            Box::pin(super::produce::append_local(shard, vec![part]));
        fut.await
    } else {
        match shard.call(owner, Call::Produce(vec![part])).await {
            Some(Reply::Produce(r)) => r,
            _ => return Err(format!("shard {owner} did not answer")),
        }
    };
    results
        .first()
        .map(|r| r.error)
        .ok_or_else(|| format!("{topic}/{partition}: no answer"))
}

/// Longest wait for another node to take dead letters.
const REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Appends `records` to `topic`/`partition` on the node that leads it (a Produce, acks=all,
/// on its inter-broker listener): its error code.
async fn remote(
    shard: &Rc<Shard>,
    topic: &str,
    partition: i32,
    records: bytes::Bytes,
) -> Result<i16, String> {
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    let cat = shard.catalog();
    let Some(leader) = cat.place(topic, partition).and_then(|p| p.leader_replica()) else {
        return Ok(errors::NOT_LEADER_OR_FOLLOWER);
    };
    let mut conn = crate::replication::follower::connect(&cat, leader)
        .await
        .ok_or_else(|| format!("cannot reach node {}", leader.0))?;
    let mut p = PartitionProduceData::default();
    p.index = partition;
    p.records = Some(records);
    let mut t = TopicProduceData::default();
    t.name = kafka_protocol::messages::TopicName(kafka_protocol::protocol::StrBytes::from_string(
        topic.to_string(),
    ));
    t.partition_data = vec![p];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = REMOTE_TIMEOUT.as_millis() as i32;
    req.topic_data = vec![t];
    let call =
        crate::replication::follower::call_broker(&mut conn, &req, 9, 1, "shardlog-dead-letters");
    let resp = match crate::runtime::timeout(REMOTE_TIMEOUT, call).await {
        Some(Ok(r)) => r,
        Some(Err(e)) => return Err(format!("node {}: {e}", leader.0)),
        None => return Err(format!("node {} did not answer", leader.0)),
    };
    Ok(resp
        .responses
        .first()
        .and_then(|t| t.partition_responses.first())
        .map_or(errors::UNKNOWN_SERVER_ERROR, |p| p.error_code))
}
