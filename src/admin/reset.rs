//! `shardlog group reset-offsets`: moves an inactive group's committed offsets, as
//! `kafka-consumer-groups.sh --reset-offsets` does — to the earliest or latest offset, an
//! offset, a time, or shifted by N — for some partitions of some topics or for every topic
//! the group has offsets for. The plan is printed; only `--execute` commits it.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::Args;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::StrBytes;

use super::client::Client;
use super::group::{committed, coordinator, describe_group};
use super::topic::{metadata, name, offsets};

#[derive(Args)]
pub struct ResetArgs {
    /// The group.
    pub name: String,
    /// A topic, or TOPIC:P1,P2 for some of its partitions (repeatable).
    #[arg(long = "topic", required_unless_present = "all_topics")]
    pub topics: Vec<String>,
    /// Every topic the group has committed offsets for.
    #[arg(long, conflicts_with = "topics")]
    pub all_topics: bool,
    /// To each partition's earliest offset.
    #[arg(long, group = "to")]
    pub to_earliest: bool,
    /// To each partition's latest offset (the group skips everything written so far).
    #[arg(long, group = "to")]
    pub to_latest: bool,
    /// To this offset (clamped to each partition's earliest..latest).
    #[arg(long, group = "to")]
    pub to_offset: Option<i64>,
    /// To the first offset at or after this time (2026-11-24T10:00:00Z, or milliseconds).
    #[arg(long, group = "to")]
    pub to_datetime: Option<String>,
    /// By N from the committed offset (negative: back), clamped; a partition with no
    /// committed offset shifts from its earliest.
    #[arg(long, group = "to", allow_negative_numbers = true)]
    pub shift_by: Option<i64>,
    /// Only show what would change (the default).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    pub execute: bool,
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
}

enum To {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
    Shift(i64),
}

impl ResetArgs {
    fn to(&self) -> Result<To> {
        Ok(if self.to_earliest {
            To::Earliest
        } else if self.to_latest {
            To::Latest
        } else if let Some(n) = self.to_offset {
            To::Offset(n)
        } else if let Some(t) = &self.to_datetime {
            To::Time(super::format::parse_time(t)?)
        } else if let Some(n) = self.shift_by {
            To::Shift(n)
        } else {
            bail!("give one of --to-earliest, --to-latest, --to-offset N, --to-datetime T, --shift-by N")
        })
    }
}

/// `TOPIC` or `TOPIC:P1,P2`: the topic and the partitions named (`None`: all).
fn parse_scope(s: &str) -> Result<(String, Option<Vec<i32>>)> {
    match s.split_once(':') {
        None => Ok((s.to_string(), None)),
        Some((t, ps)) => {
            let parts = ps
                .split(',')
                .map(|p| p.trim().parse::<i32>())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--topic {s}: partitions are numbers, TOPIC:0,1"))?;
            Ok((t.to_string(), Some(parts)))
        }
    }
}

pub fn run(a: ResetArgs) -> Result<()> {
    let to = a.to()?;
    let mut c = coordinator(&a.bootstrap, &a.name)?;
    let g = describe_group(&mut c, &a.name)?;
    if !g.members.is_empty() {
        bail!(
            "group {} is active ({} members, state {}): offsets can only be reset while it has none",
            a.name,
            g.members.len(),
            g.group_state
        );
    }
    let current = committed(&mut c, &a.name)?;
    let scopes: Vec<(String, Option<Vec<i32>>)> = if a.all_topics {
        let mut ts: Vec<String> = current.keys().map(|(t, _)| t.clone()).collect();
        ts.dedup();
        if ts.is_empty() {
            bail!("group {} has no committed offsets", a.name);
        }
        ts.into_iter().map(|t| (t, None)).collect()
    } else {
        a.topics
            .iter()
            .map(|t| parse_scope(t))
            .collect::<Result<_>>()?
    };
    let mut mc = Client::connect(&a.bootstrap)?;
    // (topic, partition) → (current, new)
    let mut plan: BTreeMap<(String, i32), (Option<i64>, i64)> = BTreeMap::new();
    for (topic, only) in scopes {
        let md = metadata(&mut mc, Some(vec![topic.clone()]))?;
        let t = md.topics.first().context("no metadata")?;
        match t.error_code {
            0 => {}
            3 => bail!("topic {topic} does not exist"),
            code => bail!("topic {topic}: error {code}"),
        }
        let mut parts: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        if let Some(only) = &only {
            if let Some(p) = only.iter().find(|p| !parts.iter().any(|(q, _)| q == *p)) {
                bail!("{topic} has no partition {p}");
            }
            parts.retain(|(p, _)| only.contains(p));
        }
        parts.sort();
        let lo = offsets(&md, &topic, &parts, -2)?;
        let hi = offsets(&md, &topic, &parts, -1)?;
        let at = match &to {
            To::Time(ts) => offsets(&md, &topic, &parts, *ts)?,
            _ => Vec::new(),
        };
        for (i, (p, _)) in parts.iter().enumerate() {
            let (l, h) = (lo[i].1, hi[i].1);
            let cur = current.get(&(topic.clone(), *p)).copied();
            let new = match &to {
                To::Earliest => l,
                To::Latest => h,
                To::Offset(n) => (*n).clamp(l, h),
                To::Time(_) => match at[i].1 {
                    -1 => h,
                    o => o,
                },
                To::Shift(n) => cur.unwrap_or(l).saturating_add(*n).clamp(l, h),
            };
            plan.insert((topic.clone(), *p), (cur, new));
        }
    }
    println!("TOPIC\tPARTITION\tCURRENT-OFFSET\tNEW-OFFSET");
    for ((t, p), (cur, new)) in &plan {
        let cur = cur.map_or("-".to_string(), |c| c.to_string());
        println!("{t}\t{p}\t{cur}\t{new}");
    }
    if !a.execute {
        eprintln!("dry run: nothing changed (--execute commits these offsets)");
        return Ok(());
    }
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(StrBytes::from_string(a.name.clone()));
    req.generation_id_or_member_epoch = -1;
    req.member_id = StrBytes::from_static_str("");
    for ((t, p), (_, new)) in &plan {
        if req.topics.last().is_none_or(|x| x.name.0.as_str() != t) {
            req.topics
                .push(OffsetCommitRequestTopic::default().with_name(name(t)));
        }
        if let Some(last) = req.topics.last_mut() {
            last.partitions.push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*new),
            );
        }
    }
    let resp = c.call(&req, 8)?;
    for t in &resp.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                bail!(
                    "{}/{}: not committed: error {}",
                    t.name.0,
                    p.partition_index,
                    p.error_code
                );
            }
        }
    }
    eprintln!("committed {} offset(s) for group {}", plan.len(), a.name);
    Ok(())
}
