//! A consumer worker: fetches its share of the partitions from their leaders (one connection
//! and one Fetch in flight per leader, no consumer group), checks every batch's CRC, and
//! records each message's end-to-end latency from the send time stamped in its value.
//!
//! Invariants: it reads only offsets at or after where the run started, and stops once every
//! partition reaches the end offset the main thread publishes after the producers finish, or
//! when told to stop.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use shardlog::log::batch::BatchScan;
use shardlog::log::codec;
use shardlog::log::records::RecordWalk;

use crate::conn;
use crate::gen::STAMP_LEN;
use crate::stats::{self, Stats};
use crate::{LoadSpec, Worker};

const FETCH_VERSION: i16 = 11;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Largest decompressed records section accepted from one batch.
const MAX_SECTION: usize = 64 << 20;

/// Reads `parts` (partition, first offset) until they reach the published end offsets.
pub async fn run(spec: &LoadSpec, worker: &Worker, parts: Vec<(i32, i64)>) -> Result<()> {
    let mut by_leader: BTreeMap<&str, Vec<(i32, i64)>> = BTreeMap::new();
    for (p, o) in parts {
        let leader = spec.target.leaders[p as usize].as_str();
        by_leader.entry(leader).or_default().push((p, o));
    }
    let tasks = by_leader
        .into_iter()
        .map(|(addr, parts)| fetch_loop(spec, worker, addr, parts));
    for r in futures::future::join_all(tasks).await {
        r?;
    }
    Ok(())
}

async fn fetch_loop(
    spec: &LoadSpec,
    worker: &Worker,
    addr: &str,
    mut parts: Vec<(i32, i64)>,
) -> Result<()> {
    let (mut w, mut r) = conn::connect(addr).await?;
    let topic = TopicName(StrBytes::from_string(spec.target.topic.clone()));
    let mut stats = Stats::default();
    let mut last_report = worker.clock.now_us();
    // Bounded by the stop flag and the published end offsets.
    loop {
        if worker.stopped() {
            break;
        }
        if let Some(ends) = worker.end_offsets() {
            if parts.iter().all(|(p, o)| *o >= ends[*p as usize]) {
                break;
            }
        }
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 100;
        req.min_bytes = 1;
        req.max_bytes = 64 << 20;
        req.session_epoch = -1;
        let mut ft = FetchTopic::default();
        ft.topic = topic.clone();
        ft.partitions = parts
            .iter()
            .map(|(p, o)| {
                let mut fp = FetchPartition::default();
                fp.partition = *p;
                fp.current_leader_epoch = -1;
                fp.fetch_offset = *o;
                fp.log_start_offset = -1;
                fp.partition_max_bytes = PARTITION_MAX_BYTES;
                fp
            })
            .collect();
        req.topics = vec![ft];
        let corr = w.send(&req, FETCH_VERSION).await?;
        let resp = r.recv::<FetchRequest>(corr, FETCH_VERSION).await?;
        if resp.error_code != 0 {
            bail!("fetch from {addr} failed with error {}", resp.error_code);
        }
        let now = worker.clock.now_us();
        for pd in resp.responses.iter().flat_map(|t| t.partitions.iter()) {
            let Some(slot) = parts.iter_mut().find(|(p, _)| *p == pd.partition_index) else {
                continue;
            };
            if pd.error_code != 0 {
                tracing::warn!(
                    partition = pd.partition_index,
                    code = pd.error_code,
                    "fetch error"
                );
                continue;
            }
            if let Some(records) = &pd.records {
                slot.1 = consume(records, slot.1, now, &mut stats)?;
            }
        }
        if now.saturating_sub(last_report) >= 1_000_000 {
            last_report = now;
            worker.report(stats.take());
        }
        if resp.responses.iter().all(|t| {
            t.partitions
                .iter()
                .all(|p| p.records.as_ref().is_none_or(|r| r.is_empty()))
        }) {
            shardlog::runtime::sleep(Duration::from_millis(1)).await;
        }
    }
    worker.report(stats.take());
    Ok(())
}

/// Counts the messages at or after `offset` in a fetched record set; returns the next
/// offset to fetch.
fn consume(records: &[u8], mut offset: i64, now: u64, stats: &mut Stats) -> Result<i64> {
    for (pos, h) in BatchScan::new(records, true) {
        if h.last_offset() < offset {
            continue;
        }
        let batch = &records[pos..pos + h.size];
        let (_, section) = codec::batch_records(batch, &h, MAX_SECTION)?;
        for rec in RecordWalk::new(&section, &h) {
            if h.base_offset + rec.offset_delta < offset {
                continue;
            }
            let v = rec.value.unwrap_or_default();
            stats.consumed += 1;
            stats.consumed_bytes += v.len() as u64;
            if v.len() >= STAMP_LEN {
                let mut t = [0u8; 8];
                t.copy_from_slice(&v[..8]);
                stats::record(&mut stats.e2e, now.saturating_sub(u64::from_be_bytes(t)));
            }
        }
        offset = h.last_offset() + 1;
    }
    Ok(offset)
}
