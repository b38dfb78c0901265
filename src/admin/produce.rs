//! `shardlog produce TOPIC`: records from standard input (or a file), one per line, like
//! kcat -P and `kafka-console-producer.sh`: an optional key before a separator, headers,
//! a fixed partition or the key's partition (Kafka's murmur2, as the Java client picks it),
//! acks, compression, and an idempotent producer.
//!
//! Lines are sent in batches of up to `--batch-size` per partition; when one is full, every
//! partition's pending batch goes with it, one request per leader, all leaders at once. On
//! a terminal every line is sent as it is typed. A retriable error (a leader moved) refreshes the leaders and
//! sends the batch again, with the same sequence when idempotent, so it is never written
//! twice.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::ProducerId;

use super::batch::{encode, OutRecord};
use super::client::Client;
use super::leaders::Leaders;
use super::topic::name;
use crate::log::codec::Codec;

/// The longest line read (a record's key and value).
const MAX_LINE: usize = 16 << 20;
/// Attempts per batch (leader moves, broker restarts).
const ATTEMPTS: u32 = 10;

#[derive(Args)]
pub struct ProduceArgs {
    /// Topic to write to (it must exist).
    pub topic: String,
    /// Read records from this file instead of standard input.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Split each line at the first occurrence of this string into key and value (kcat's
    /// -K); lines without it have no key.
    #[arg(short = 'K', long)]
    pub key_separator: Option<String>,
    /// A header KEY=VALUE on every record (repeatable; KEY alone: a null value).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Write every record to this partition (default: a keyed record to the partition its
    /// key hashes to, as the Java client does; keyless ones spread round robin).
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Acknowledgement to wait for: all (-1), 1 (the leader) or 0 (none).
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// Compression: none, gzip, snappy, lz4 or zstd.
    #[arg(short = 'z', long, default_value = "none")]
    pub compression: String,
    /// Be an idempotent producer: a retried batch is never written twice (needs acks=all).
    #[arg(long)]
    pub idempotent: bool,
    /// Most records per partition in one request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Any broker of the cluster.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

/// Kafka's murmur2 (the Java client's default partitioner hash).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in chunks.by_ref() {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

fn parse_acks(s: &str) -> Result<i16> {
    match s {
        "all" | "-1" => Ok(-1),
        "1" => Ok(1),
        "0" => Ok(0),
        other => bail!("--acks {other}: use all, 1 or 0"),
    }
}

fn parse_codec(s: &str) -> Result<Codec> {
    Codec::from_name(s)
        .with_context(|| format!("--compression {s}: use none, gzip, snappy, lz4 or zstd"))
}

fn parse_headers(hs: &[String]) -> Vec<(String, Option<Vec<u8>>)> {
    hs.iter()
        .map(|h| match h.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.as_bytes().to_vec())),
            None => (h.clone(), None),
        })
        .collect()
}

struct Producer {
    leaders: Leaders,
    acks: i16,
    codec: Codec,
    /// (producer id, epoch) when idempotent, and the next sequence per partition.
    idempotent: Option<(i64, i16)>,
    sequences: BTreeMap<i32, i32>,
    sent: u64,
}

impl Producer {
    /// Sends `records` to `partition`, retrying (bounded) while its leader moves: the
    /// offset of the first (-1 with acks=0).
    fn send(&mut self, partition: i32, records: &[OutRecord]) -> Result<i64> {
        let seq = self.sequences.get(&partition).copied().unwrap_or(0);
        let producer = self.idempotent.map(|(pid, epoch)| (pid, epoch, seq));
        let batch = Bytes::from(encode(records, crate::log::now_ms(), self.codec, producer)?);
        let mut req = ProduceRequest::default();
        req.acks = self.acks;
        req.timeout_ms = 30_000;
        let mut pd = PartitionProduceData::default();
        pd.index = partition;
        pd.records = Some(batch);
        let mut td = TopicProduceData::default();
        td.name = name(&self.leaders.topic);
        td.partition_data = vec![pd];
        req.topic_data = vec![td];
        let mut last = String::new();
        let mut base = -1;
        for _ in 0..ATTEMPTS {
            let Some(leader) = self.leaders.leader(partition) else {
                last = format!("partition {partition} has no leader");
                self.leaders.refresh()?;
                continue;
            };
            let c = self.leaders.client(leader)?;
            if self.acks == 0 {
                c.send(&req, 9)?;
                break;
            }
            let resp = match c.call(&req, 9) {
                Ok(r) => r,
                Err(e) => {
                    last = format!("broker {leader}: {e:#}");
                    self.leaders.forget(leader);
                    self.leaders.refresh()?;
                    continue;
                }
            };
            let code = resp
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .map(|p| (p.error_code, p.error_message.clone()))
                .unwrap_or((-1, None));
            match code {
                (0, _) => {
                    last.clear();
                    base = resp
                        .responses
                        .first()
                        .and_then(|t| t.partition_responses.first())
                        .map_or(-1, |p| p.base_offset);
                    break;
                }
                // Not the leader, no leader yet, not enough replicas, timeouts: again.
                (c @ (5 | 6 | 7 | 19 | 20), _) => {
                    last = format!("error {c}");
                    self.leaders.refresh()?;
                }
                (c, msg) => bail!(
                    "{}/{partition}: produce refused with error {c}{}",
                    self.leaders.topic,
                    msg.map(|m| format!(": {m}")).unwrap_or_default()
                ),
            }
        }
        if !last.is_empty() {
            bail!("{}/{partition}: not written: {last}", self.leaders.topic);
        }
        self.sequences
            .insert(partition, seq.wrapping_add(records.len() as i32) & i32::MAX);
        self.sent += records.len() as u64;
        Ok(base)
    }

    /// Sends every batch of `batches` at once: one request per leader, all leaders' requests
    /// written before any answer is read. A batch whose answer is an error or lost goes
    /// again alone through [`Producer::send`] (with the same sequence when idempotent).
    fn send_round(&mut self, batches: Vec<(i32, Vec<OutRecord>)>) -> Result<()> {
        let mut by_leader: BTreeMap<i32, Vec<(i32, Vec<OutRecord>)>> = BTreeMap::new();
        let mut again = Vec::new();
        for (p, records) in batches {
            match self.leaders.leader(p) {
                Some(l) => by_leader.entry(l).or_default().push((p, records)),
                None => again.push((p, records)),
            }
        }
        let mut sent = Vec::new();
        for (leader, parts) in by_leader {
            let mut td = TopicProduceData::default();
            td.name = name(&self.leaders.topic);
            for (p, records) in &parts {
                let seq = self.sequences.get(p).copied().unwrap_or(0);
                let producer = self.idempotent.map(|(pid, epoch)| (pid, epoch, seq));
                let mut pd = PartitionProduceData::default();
                pd.index = *p;
                pd.records = Some(Bytes::from(encode(
                    records,
                    crate::log::now_ms(),
                    self.codec,
                    producer,
                )?));
                td.partition_data.push(pd);
            }
            let mut req = ProduceRequest::default();
            req.acks = self.acks;
            req.timeout_ms = 30_000;
            req.topic_data = vec![td];
            match self.leaders.client(leader).and_then(|c| c.send(&req, 9)) {
                Ok(correlation) => sent.push((leader, correlation, parts)),
                Err(_) => {
                    self.leaders.forget(leader);
                    again.extend(parts);
                }
            }
        }
        for (leader, correlation, parts) in sent {
            if self.acks == 0 {
                for (p, records) in parts {
                    self.advance(p, records.len());
                }
                continue;
            }
            let resp = self
                .leaders
                .client(leader)
                .and_then(|c| c.receive::<ProduceRequest>(9, correlation));
            let Ok(resp) = resp else {
                self.leaders.forget(leader);
                again.extend(parts);
                continue;
            };
            let codes: BTreeMap<i32, i16> = resp
                .responses
                .iter()
                .flat_map(|t| t.partition_responses.iter())
                .map(|p| (p.index, p.error_code))
                .collect();
            for (p, records) in parts {
                match codes.get(&p) {
                    Some(0) => self.advance(p, records.len()),
                    _ => again.push((p, records)),
                }
            }
        }
        for (p, records) in again {
            self.send(p, &records)?;
        }
        Ok(())
    }

    /// Counts `n` records written to `partition` (its next sequence moves on).
    fn advance(&mut self, partition: i32, n: usize) {
        let seq = self.sequences.get(&partition).copied().unwrap_or(0);
        self.sequences
            .insert(partition, seq.wrapping_add(n as i32) & i32::MAX);
        self.sent += n as u64;
    }
}

/// Writes one record (acks=all) to `partition`, or by its key as `produce` does: the
/// partition and offset it got.
pub fn produce_one(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
    record: OutRecord,
) -> Result<(i32, i64)> {
    let leaders = Leaders::new(bootstrap, topic)?;
    let n = leaders.count();
    let p = match (partition, &record.key) {
        (Some(p), _) if p < 0 || p >= n => bail!("{topic} has no partition {p}"),
        (Some(p), _) => p,
        (None, Some(k)) => (murmur2(k) & i32::MAX) % n,
        (None, None) => (crate::log::now_ms() % i64::from(n.max(1))) as i32,
    };
    let mut producer = Producer {
        leaders,
        acks: -1,
        codec: Codec::None,
        idempotent: None,
        sequences: BTreeMap::new(),
        sent: 0,
    };
    let offset = producer.send(p, &[record])?;
    Ok((p, offset))
}

pub fn run(a: ProduceArgs) -> Result<()> {
    let acks = parse_acks(&a.acks)?;
    let codec = parse_codec(&a.compression)?;
    if a.idempotent && acks != -1 {
        bail!("--idempotent needs --acks all");
    }
    let leaders = Leaders::new(&a.bootstrap, &a.topic)?;
    if let Some(p) = a.partition {
        if p < 0 || p >= leaders.count() {
            bail!(
                "{} has partitions 0..{}; no partition {p}",
                a.topic,
                leaders.count() - 1
            );
        }
    }
    let idempotent = if a.idempotent {
        let mut c = Client::connect(&a.bootstrap)?;
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = None;
        req.transaction_timeout_ms = -1;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let r = c.call(&req, 4)?;
        if r.error_code != 0 {
            bail!("no producer id: error {}", r.error_code);
        }
        Some((r.producer_id.0, r.producer_epoch))
    } else {
        None
    };
    let mut producer = Producer {
        leaders,
        acks,
        codec,
        idempotent,
        sequences: BTreeMap::new(),
        sent: 0,
    };
    let headers = parse_headers(&a.headers);
    let (input, interactive): (Box<dyn BufRead>, bool) = match &a.file {
        Some(path) => (
            Box::new(std::io::BufReader::new(
                std::fs::File::open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )),
            false,
        ),
        None => (
            Box::new(std::io::stdin().lock()),
            std::io::stdin().is_terminal(),
        ),
    };
    let n = producer.leaders.count();
    let mut pending: BTreeMap<i32, Vec<OutRecord>> = BTreeMap::new();
    let mut next = 0i32;
    let mut reader = input;
    let mut line = Vec::new();
    loop {
        line.clear();
        let got =
            std::io::Read::take(&mut reader, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
        if got == 0 {
            break;
        }
        if line.len() > MAX_LINE {
            bail!("a line longer than {MAX_LINE} bytes");
        }
        if line.last() == Some(&b'\n') {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
        }
        let (key, value) = match &a.key_separator {
            Some(sep) => match find(&line, sep.as_bytes()) {
                Some(at) => (Some(line[..at].to_vec()), line[at + sep.len()..].to_vec()),
                None => (None, line.clone()),
            },
            None => (None, line.clone()),
        };
        let partition = match (a.partition, &key) {
            (Some(p), _) => p,
            (None, Some(k)) => (murmur2(k) & i32::MAX) % n,
            (None, None) => {
                next = (next + 1) % n;
                next
            }
        };
        let batch = pending.entry(partition).or_default();
        batch.push(OutRecord {
            key,
            value: Some(value),
            headers: headers.clone(),
        });
        if interactive {
            let records = std::mem::take(batch);
            producer.send(partition, &records)?;
        } else if batch.len() >= a.batch_size as usize {
            // Every partition's batch goes with it: one request per leader.
            let round: Vec<(i32, Vec<OutRecord>)> = std::mem::take(&mut pending)
                .into_iter()
                .filter(|(_, r)| !r.is_empty())
                .collect();
            producer.send_round(round)?;
        }
    }
    let rest: Vec<(i32, Vec<OutRecord>)> = std::mem::take(&mut pending)
        .into_iter()
        .filter(|(_, r)| !r.is_empty())
        .collect();
    if !rest.is_empty() {
        producer.send_round(rest)?;
    }
    eprintln!("produced {} record(s) to {}", producer.sent, a.topic);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafkas() {
        // Kafka's UtilsTest vectors.
        assert_eq!(murmur2(b"21"), -973932308);
        assert_eq!(murmur2(b"foobar"), -790332482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985981536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1486304829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58897971
        );
        assert_eq!(murmur2(b"abc"), 479470107);
    }
}
