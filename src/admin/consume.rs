//! `shardlog consume TOPIC`: records of a topic's partitions from a starting point
//! (beginning, end, an offset, N before the end, or a time), like kcat -C and
//! `kafka-console-consumer.sh`: printed as their values, in a kcat-style `--format`, or as
//! JSON lines; JSON values pretty-printed on a terminal. read_committed by default (aborted
//! transactions' records left out, reads stop at the last stable offset).
//!
//! Without `--count` or `--exit-at-end` it follows the partitions until interrupted. With
//! `--group` it is a member of a consumer group ([`super::member`]).

use std::io::{IsTerminal, Write};

use anyhow::{bail, Result};
use clap::Args;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::BrokerId;

use super::batch::{decode, InRecord};
use super::format::parse_time;
use super::format::{default_line, format_record, json_record};
use super::leaders::Leaders;
use super::member::Member;
use super::topic::{list_offset, name};

/// Bytes one Fetch asks for, per partition and in all.
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const MAX_BYTES: i32 = 8 << 20;
const MAX_WAIT_MS: i32 = 500;

#[derive(Args)]
pub struct ConsumeArgs {
    /// Topic to read.
    pub topic: String,
    /// Only this partition (default: all of them).
    #[arg(short = 'p', long)]
    pub partition: Option<i32>,
    /// Where to start in each partition: beginning, end, an offset N, or -N (N records
    /// before the end).
    #[arg(
        short = 'o',
        long,
        default_value = "beginning",
        allow_hyphen_values = true
    )]
    pub offset: String,
    /// Start at the first record at or after this time (milliseconds since the epoch, or a
    /// date-time like 2026-11-24T10:00:00Z); overrides --offset.
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Stop after this many records.
    #[arg(short = 'c', long)]
    pub count: Option<u64>,
    /// Stop at the end of every partition instead of waiting for more (kcat's -e).
    #[arg(short = 'e', long)]
    pub exit_at_end: bool,
    /// Output format, kcat's: %t topic, %p partition, %o offset, %T timestamp (ms), %k key,
    /// %K key length, %s (or %v) value, %S value length, %h headers (k=v,..., a null value
    /// as NULL, like kcat), \n \t \\.
    /// Default: the value and a newline.
    #[arg(short = 'f', long, conflicts_with = "json")]
    pub format: Option<String>,
    /// One JSON object per record: topic, partition, offset, timestamp, key, value, headers
    /// (strings if UTF-8, else null and a key_hex/value_hex).
    #[arg(long)]
    pub json: bool,
    /// read_committed (default) or read_uncommitted.
    #[arg(long, default_value = "read_committed")]
    pub isolation: String,
    /// Read as a member of this consumer group: the group's members share the partitions
    /// (range assignor), each starts at the group's committed offset (else at --offset) and
    /// commits after every batch it prints.
    #[arg(short = 'G', long, conflicts_with = "partition")]
    pub group: Option<String>,
    /// Any broker of the cluster.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

/// A consumer's Fetch (v11) of `topic` at (partition, offset) each.
fn fetch_request(topic: &str, at: &[(i32, i64)], max_wait_ms: i32, isolation: i8) -> FetchRequest {
    let mut ft = FetchTopic::default();
    ft.topic = name(topic);
    for (p, offset) in at {
        let mut fp = FetchPartition::default();
        fp.partition = *p;
        fp.fetch_offset = *offset;
        fp.current_leader_epoch = -1;
        fp.log_start_offset = -1;
        fp.partition_max_bytes = PARTITION_MAX_BYTES;
        ft.partitions.push(fp);
    }
    let mut req = FetchRequest::default();
    req.replica_id = BrokerId(-1);
    req.max_wait_ms = max_wait_ms;
    req.min_bytes = 1;
    req.max_bytes = MAX_BYTES;
    req.isolation_level = isolation;
    req.session_epoch = -1;
    req.topics = vec![ft];
    req
}

/// One partition being read.
struct Cursor {
    partition: i32,
    position: i64,
    /// The end seen in the last answer (the LSO under read_committed).
    end: i64,
    /// In a group: the position last committed.
    committed: i64,
}

pub fn run(a: ConsumeArgs) -> Result<()> {
    let isolation: i8 = match a.isolation.as_str() {
        "read_committed" => 1,
        "read_uncommitted" => 0,
        other => bail!("--isolation {other}: use read_committed or read_uncommitted"),
    };
    let mut leaders = Leaders::new(&a.bootstrap, &a.topic)?;
    let parts: Vec<i32> = match a.partition {
        Some(p) if p < 0 || p >= leaders.count() => bail!(
            "{} has partitions 0..{}; no partition {p}",
            a.topic,
            leaders.count() - 1
        ),
        Some(p) => vec![p],
        None => leaders.partitions.iter().map(|(p, _)| *p).collect(),
    };
    let start = match &a.timestamp {
        Some(t) => Start::Time(parse_time(t)?),
        None => Start::parse(&a.offset)?,
    };
    let mut member = match &a.group {
        Some(g) => Some(Member::new(&a.bootstrap, g, &a.topic)?),
        None => None,
    };
    let mut cursors = match member.as_mut() {
        Some(m) => join(m, &mut leaders, &start)?,
        None => {
            let mut cursors = Vec::new();
            for p in parts {
                let position = start.resolve(&mut leaders, p)?;
                cursors.push(Cursor {
                    partition: p,
                    position,
                    end: -1,
                    committed: position,
                });
            }
            cursors
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    // Ends at the count, at the end (-e), on an error, or when interrupted.
    loop {
        let mut by_leader: std::collections::BTreeMap<i32, Vec<usize>> = Default::default();
        for (i, c) in cursors.iter().enumerate() {
            match leaders.leader(c.partition) {
                Some(l) => by_leader.entry(l).or_default().push(i),
                None => {
                    leaders.refresh()?;
                    continue;
                }
            }
        }
        for (leader, idx) in by_leader {
            let at: Vec<(i32, i64)> = idx
                .iter()
                .map(|i| (cursors[*i].partition, cursors[*i].position))
                .collect();
            let req = fetch_request(&a.topic, &at, MAX_WAIT_MS, isolation);
            let resp = match leaders.client(leader)?.call(&req, 11) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("fetch from broker {leader} failed ({e:#}); retrying");
                    leaders.forget(leader);
                    leaders.refresh()?;
                    continue;
                }
            };
            for pd in resp.responses.iter().flat_map(|t| t.partitions.iter()) {
                let Some(c) = cursors
                    .iter_mut()
                    .find(|c| c.partition == pd.partition_index)
                else {
                    continue;
                };
                match pd.error_code {
                    0 => {}
                    1 => {
                        let (_, earliest) =
                            list_offset(leaders.client(leader)?, &a.topic, c.partition, -2)?;
                        eprintln!(
                            "{}/{}: offset {} is out of range; starting again at {earliest}",
                            a.topic, c.partition, c.position
                        );
                        c.position = earliest.max(0);
                        continue;
                    }
                    5 | 6 | 74 | 75 => {
                        leaders.refresh()?;
                        continue;
                    }
                    code => bail!(
                        "{}/{}: fetch refused with error {code}",
                        a.topic,
                        c.partition
                    ),
                }
                c.end = if isolation == 1 && pd.last_stable_offset >= 0 {
                    pd.last_stable_offset
                } else {
                    pd.high_watermark
                };
                let aborted: Vec<(i64, i64)> = pd
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|t| (t.producer_id.0, t.first_offset))
                    .collect();
                let (records, next) = match &pd.records {
                    Some(b) => decode(b, c.position, &aborted),
                    None => (Vec::new(), c.position),
                };
                // Where this partition goes on: past the batches read, or — when the count
                // ends the printing inside them — at the first record not printed (a group
                // commits exactly what was printed).
                let mut resume = next;
                for r in &records {
                    if a.count.is_some_and(|n| printed >= n) {
                        resume = r.offset;
                        break;
                    }
                    let line = if a.json {
                        let v = json_record(&a.topic, c.partition, r);
                        if terminal {
                            serde_json::to_string_pretty(&v)?
                        } else {
                            v.to_string()
                        }
                    } else if let Some(f) = &a.format {
                        format_record(f, &a.topic, c.partition, r)
                    } else {
                        default_line(r, terminal)
                    };
                    if a.format.is_some() {
                        out.write_all(line.as_bytes())?;
                    } else {
                        writeln!(out, "{line}")?;
                    }
                    printed += 1;
                }
                c.position = resume.max(c.position);
            }
        }
        out.flush()?;
        let done = a.count.is_some_and(|n| printed >= n)
            || (a.exit_at_end && cursors.iter().all(|c| c.end >= 0 && c.position >= c.end));
        if let Some(m) = member.as_mut() {
            // At least once: what was printed is committed after it was printed.
            let moved: Vec<(i32, i64)> = cursors
                .iter()
                .filter(|c| c.position != c.committed)
                .map(|c| (c.partition, c.position))
                .collect();
            let rebalance = m.commit(&moved)? || m.heartbeat()?;
            if !rebalance {
                for c in cursors.iter_mut() {
                    c.committed = c.position;
                }
            }
            if done {
                m.leave();
                return Ok(());
            }
            if rebalance {
                cursors = join(m, &mut leaders, &start)?;
            }
            if cursors.is_empty() {
                // No partition for this member (more members than partitions): wait.
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        } else if done {
            return Ok(());
        }
    }
}

/// Joins the group and makes a cursor for each partition assigned: at its committed
/// offset, else where `start` says.
fn join(m: &mut Member, leaders: &mut Leaders, start: &Start) -> Result<Vec<Cursor>> {
    let mut cursors = Vec::new();
    for (p, committed) in m.join(leaders.count())? {
        let position = match committed {
            Some(o) if o >= 0 => o,
            _ => start.resolve(leaders, p)?,
        };
        cursors.push(Cursor {
            partition: p,
            position,
            end: -1,
            committed: position,
        });
    }
    Ok(cursors)
}

/// Where to start reading a partition.
enum Start {
    Beginning,
    End,
    Offset(i64),
    FromEnd(i64),
    Time(i64),
}

impl Start {
    fn parse(s: &str) -> Result<Start> {
        Ok(match s {
            "beginning" | "earliest" => Start::Beginning,
            "end" | "latest" => Start::End,
            n => match n.parse::<i64>() {
                Ok(v) if v >= 0 => Start::Offset(v),
                Ok(v) => Start::FromEnd(v.saturating_neg()),
                Err(_) => bail!("--offset {n}: use beginning, end, an offset or -N"),
            },
        })
    }

    fn resolve(&self, leaders: &mut Leaders, p: i32) -> Result<i64> {
        let Some(leader) = leaders.leader(p) else {
            bail!("partition {p} has no leader");
        };
        let topic = leaders.topic.clone();
        let c = leaders.client(leader)?;
        let mut at = |ts: i64| -> Result<i64> {
            let (code, off) = list_offset(c, &topic, p, ts)?;
            if code != 0 {
                bail!("{topic}/{p}: ListOffsets error {code}");
            }
            Ok(off)
        };
        Ok(match self {
            Start::Beginning => at(-2)?,
            Start::End => at(-1)?,
            Start::Offset(o) => *o,
            Start::FromEnd(n) => {
                let (start, end) = (at(-2)?, at(-1)?);
                end.saturating_sub(*n).max(start)
            }
            Start::Time(t) => match at(*t)? {
                -1 => at(-1)?,
                o => o,
            },
        })
    }
}

/// Up to `limit` records of one partition from `offset` on (`None`: the last `limit`),
/// read_uncommitted, with the partition's earliest and latest offsets: what the web
/// console's message view shows.
pub fn read_range(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: Option<i64>,
    limit: usize,
) -> Result<(Vec<InRecord>, i64, i64)> {
    let mut leaders = Leaders::new(bootstrap, topic)?;
    let Some(leader) = leaders.leader(partition) else {
        bail!("{topic} has no partition {partition} (or it has no leader)");
    };
    let c = leaders.client(leader)?;
    let (_, earliest) = list_offset(c, topic, partition, -2)?;
    let (_, latest) = list_offset(c, topic, partition, -1)?;
    let mut position = match offset {
        Some(o) => o.clamp(earliest, latest),
        None => (latest - limit as i64).max(earliest),
    };
    let mut out = Vec::new();
    // Bounded: each round moves the position forward or stops.
    while out.len() < limit && position < latest {
        let req = fetch_request(topic, &[(partition, position)], 0, 0);
        let resp = c.call(&req, 11)?;
        let Some(pd) = resp.responses.first().and_then(|t| t.partitions.first()) else {
            break;
        };
        if pd.error_code != 0 {
            bail!(
                "{topic}/{partition}: fetch refused with error {}",
                pd.error_code
            );
        }
        let (records, next) = match &pd.records {
            Some(b) => decode(b, position, &[]),
            None => (Vec::new(), position),
        };
        if next <= position {
            break;
        }
        position = next;
        out.extend(records.into_iter().take(limit - out.len()));
    }
    Ok((out, earliest, latest))
}
