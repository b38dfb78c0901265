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

/// Milliseconds since the epoch from a number or an RFC 3339 date-time (UTC `Z` or an
/// offset like `+02:00`; seconds may have a fraction).
pub fn parse_time(s: &str) -> Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let bad = || {
        anyhow::anyhow!("{s:?} is neither milliseconds nor a date-time like 2026-11-24T10:00:00Z")
    };
    let (date, rest) = s.split_once(['T', ' ']).ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [y, mo, da] = d[..] else {
        return Err(bad());
    };
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix('Z') {
        (c, 0)
    } else if let Some(at) = rest.rfind(['+', '-']) {
        let (c, off) = rest.split_at(at);
        let sign = if off.starts_with('-') { -1 } else { 1 };
        let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        (c, sign * (h * 60 + m))
    } else {
        (rest, 0)
    };
    let t: Vec<&str> = clock.split(':').collect();
    let [h, mi, sec] = t[..] else {
        return Err(bad());
    };
    let (h, mi): (i64, i64) = (
        h.parse().map_err(|_| bad())?,
        mi.parse().map_err(|_| bad())?,
    );
    let sec: f64 = sec.parse().map_err(|_| bad())?;
    if !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
        || h > 23
        || mi > 59
        || !(0.0..61.0).contains(&sec)
    {
        return Err(bad());
    }
    // Days from 1970-01-01 (the civil-from-days inverse, proleptic Gregorian).
    let (y2, m2) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 - offset_min * 60;
    Ok(secs * 1000 + (sec * 1000.0).round() as i64)
}

fn text(b: &Option<Vec<u8>>) -> String {
    b.as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `r` in kcat's `format`.
pub fn format_record(format: &str, topic: &str, partition: i32, r: &InRecord) -> String {
    let mut out = String::new();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek().copied()) {
            ('%', Some(x)) => {
                chars.next();
                match x {
                    't' => out.push_str(topic),
                    'p' => out.push_str(&partition.to_string()),
                    'o' => out.push_str(&r.offset.to_string()),
                    'T' => out.push_str(&r.timestamp.to_string()),
                    'k' => out.push_str(&text(&r.key)),
                    'K' => out.push_str(&r.key.as_ref().map_or(-1, |k| k.len() as i64).to_string()),
                    's' | 'v' => out.push_str(&text(&r.value)),
                    'S' => {
                        out.push_str(&r.value.as_ref().map_or(-1, |v| v.len() as i64).to_string())
                    }
                    'h' => {
                        let hs: Vec<String> = r
                            .headers
                            .iter()
                            .map(|(k, v)| match v {
                                Some(v) => format!("{k}={}", String::from_utf8_lossy(v)),
                                None => format!("{k}=NULL"),
                            })
                            .collect();
                        out.push_str(&hs.join(","));
                    }
                    '%' => out.push('%'),
                    other => {
                        out.push('%');
                        out.push(other);
                    }
                }
            }
            ('\\', Some(x)) => {
                chars.next();
                match x {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    '\\' => out.push('\\'),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// `r` as one JSON object.
pub fn json_record(topic: &str, partition: i32, r: &InRecord) -> serde_json::Value {
    let mut o = serde_json::json!({
        "topic": topic,
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
    });
    for (name, b) in [("key", &r.key), ("value", &r.value)] {
        match b.as_deref().map(std::str::from_utf8) {
            None => o[name] = serde_json::Value::Null,
            Some(Ok(s)) => o[name] = s.into(),
            Some(Err(_)) => {
                o[name] = serde_json::Value::Null;
                o[format!("{name}_hex")] = hex(b.as_deref().unwrap_or_default()).into();
            }
        }
    }
    let headers: serde_json::Map<String, serde_json::Value> = r
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_deref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .into(),
            )
        })
        .collect();
    o["headers"] = headers.into();
    o
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
            let mut ft = FetchTopic::default();
            ft.topic = name(&a.topic);
            for i in &idx {
                let mut fp = FetchPartition::default();
                fp.partition = cursors[*i].partition;
                fp.fetch_offset = cursors[*i].position;
                fp.current_leader_epoch = -1;
                fp.log_start_offset = -1;
                fp.partition_max_bytes = PARTITION_MAX_BYTES;
                ft.partitions.push(fp);
            }
            let mut req = FetchRequest::default();
            req.replica_id = BrokerId(-1);
            req.max_wait_ms = MAX_WAIT_MS;
            req.min_bytes = 1;
            req.max_bytes = MAX_BYTES;
            req.isolation_level = isolation;
            req.session_epoch = -1;
            req.topics = vec![ft];
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
                for r in &records {
                    if a.count.is_some_and(|n| printed >= n) {
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
                c.position = next.max(c.position);
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

/// The value as it is, or pretty-printed on a terminal when it is JSON.
fn default_line(r: &InRecord, terminal: bool) -> String {
    let v = text(&r.value);
    if terminal {
        if let Ok(j) = serde_json::from_str::<serde_json::Value>(&v) {
            if j.is_object() || j.is_array() {
                return serde_json::to_string_pretty(&j).unwrap_or(v);
            }
        }
    }
    v
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_times_and_formats() {
        assert_eq!(parse_time("0").unwrap(), 0);
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(parse_time("2000-03-01T00:00:00Z").unwrap(), 951_868_800_000);
        assert_eq!(
            parse_time("2026-11-24T10:00:00.5+01:00").unwrap(),
            1_795_510_800_500
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01T00:00:00Z").is_err());
        let r = InRecord {
            offset: 5,
            timestamp: 9,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: vec![("a".into(), Some(b"1".to_vec())), ("b".into(), None)],
        };
        assert_eq!(
            format_record("%t/%p@%o %T %k=%s (%K,%S) [%h] 100%%\\n", "t", 3, &r),
            "t/3@5 9 k=v (1,1) [a=1,b=NULL] 100%\n"
        );
        let j = json_record("t", 3, &r);
        assert_eq!(j["value"], "v");
        assert_eq!(j["headers"]["a"], "1");
        assert!(j["headers"]["b"].is_null());
        let bin = InRecord {
            value: Some(vec![0xff, 0x00]),
            ..r
        };
        assert_eq!(json_record("t", 3, &bin)["value_hex"], "ff00");
    }
}
