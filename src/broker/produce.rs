//! Produce: validate, route each partition's records to its owning shard, append, answer.
//!
//! Invariant: records are appended only by the owning shard, all batches of one partition in
//! a request succeed or fail together, and nothing is acknowledged before it is written.

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;
use tracing::warn;

use super::errors::{self, log_error_code};
use super::router::{Call, Reply};
use super::shard::Shard;
use crate::protocol::ProduceRequest;

/// One partition's records to append on its owner.
pub struct PartAppend {
    pub slot: usize,
    pub topic: String,
    pub partition: i32,
    pub records: Option<Bytes>,
    /// acks=all: acknowledge only once durable (under the `always` flush policy).
    pub durable: bool,
}

pub struct PartProduceResult {
    pub slot: usize,
    pub error: i16,
    pub base_offset: i64,
    pub log_start_offset: i64,
}

fn failed(slot: usize, error: i16) -> PartProduceResult {
    PartProduceResult {
        slot,
        error,
        base_offset: -1,
        log_start_offset: -1,
    }
}

/// Appends to partitions owned by this shard, concurrently.
pub async fn append_local(shard: &Rc<Shard>, parts: Vec<PartAppend>) -> Vec<PartProduceResult> {
    let futs = parts.into_iter().map(|p| {
        let shard = shard.clone();
        async move {
            let Some(log) = shard.log(&p.topic, p.partition) else {
                return failed(p.slot, errors::UNKNOWN_TOPIC_OR_PARTITION);
            };
            let Some(records) = p.records.filter(|r| !r.is_empty()) else {
                return failed(p.slot, errors::CORRUPT_MESSAGE);
            };
            // Logged once when the state changes (disk_space), not per request.
            if shard.disk.low() {
                return failed(p.slot, errors::KAFKA_STORAGE_ERROR);
            }
            shard.disk.appended(records.len() as u64);
            match log.append_with(&records, p.durable).await {
                Ok(info) => {
                    shard.data_arrived.notify_all();
                    shard.metrics.record_in(
                        &p.topic,
                        records.len() as u64,
                        (info.last_offset - info.base_offset + 1) as u64,
                    );
                    PartProduceResult {
                        slot: p.slot,
                        error: errors::NONE,
                        base_offset: info.base_offset,
                        log_start_offset: log.log_start_offset(),
                    }
                }
                Err(e) => {
                    warn!(topic = %p.topic, partition = p.partition, "produce refused: {e}");
                    failed(p.slot, log_error_code(&e))
                }
            }
        }
    });
    join_all(futs).await
}

/// Handles a Produce request; `None` for acks=0 (no response is sent).
pub async fn handle(shard: &Rc<Shard>, req: ProduceRequest) -> Option<ProduceResponse> {
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
            let refused = if !acks_ok {
                Some(errors::INVALID_REQUIRED_ACKS)
            } else if req.transactional_id.is_some() {
                Some(errors::TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            } else if !known {
                Some(errors::UNKNOWN_TOPIC_OR_PARTITION)
            } else {
                None
            };
            match refused {
                Some(code) => results.push(Some(failed(slot, code))),
                None => {
                    results.push(None);
                    by_owner
                        .entry(shard.owner(&t.name, p.index))
                        .or_default()
                        .push(PartAppend {
                            slot,
                            topic: t.name.clone(),
                            partition: p.index,
                            records: p.records.clone(),
                            durable: req.acks == -1,
                        });
                }
            }
        }
        layout.push((t.name.clone(), parts));
    }
    let futs = by_owner.into_iter().map(|(owner, parts)| {
        let shard = shard.clone();
        async move {
            if owner == shard.id {
                return append_local(&shard, parts).await;
            }
            let slots: Vec<usize> = parts.iter().map(|p| p.slot).collect();
            match shard.call(owner, Call::Produce(parts)).await {
                Some(Reply::Produce(r)) => r,
                _ => slots
                    .into_iter()
                    .map(|s| failed(s, errors::UNKNOWN_SERVER_ERROR))
                    .collect(),
            }
        }
    });
    for r in join_all(futs).await.into_iter().flatten() {
        let slot = r.slot;
        if let Some(x) = results.get_mut(slot) {
            *x = Some(r);
        }
    }
    if req.acks == 0 {
        return None;
    }
    let mut resp = ProduceResponse::default();
    for (name, parts) in layout {
        let mut t = TopicProduceResponse::default();
        t.name = TopicName(StrBytes::from_string(name));
        for (slot, index) in parts {
            let r = results
                .get_mut(slot)
                .and_then(|x| x.take())
                .unwrap_or_else(|| failed(slot, errors::UNKNOWN_SERVER_ERROR));
            let mut p = PartitionProduceResponse::default();
            p.index = index;
            p.error_code = r.error;
            p.base_offset = r.base_offset;
            p.log_append_time_ms = -1;
            p.log_start_offset = r.log_start_offset;
            t.partition_responses.push(p);
        }
        resp.responses.push(t);
    }
    Some(resp)
}
