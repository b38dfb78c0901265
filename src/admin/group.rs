//! `shardlog group list|describe|reset-offsets`: consumer groups, their members, committed
//! offsets and lag, like `kafka-consumer-groups.sh`, plus a Burrow-style status per
//! partition (stalled, lagging) evaluated over a sampling window.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Buf;
use kafka_protocol::messages::consumer_protocol_assignment::ConsumerProtocolAssignment;
use kafka_protocol::messages::delete_groups_request::DeleteGroupsRequest;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::{GroupId, MetadataResponse};
use kafka_protocol::protocol::{Decodable, StrBytes};

use super::client::Client;
use super::topic::{metadata, offsets};

/// (topic, partition) → offset.
pub(super) type Offsets = BTreeMap<(String, i32), i64>;

pub(super) fn coordinator(bootstrap: &str, group: &str) -> Result<Client> {
    let mut c = Client::connect(bootstrap)?;
    let mut req = FindCoordinatorRequest::default();
    req.key = StrBytes::from_string(group.to_string());
    let resp = c.call(&req, 2)?;
    if resp.error_code != 0 {
        bail!(
            "no coordinator for group {group}: error {}",
            resp.error_code
        );
    }
    Client::connect(&format!("{}:{}", resp.host, resp.port))
}

/// Every group the brokers coordinate, with its state.
pub fn list_groups(bootstrap: &str) -> Result<BTreeMap<String, String>> {
    let mut rows = BTreeMap::new();
    for (_, mut bc) in super::topic::every_broker(bootstrap)? {
        let resp = bc.call(&ListGroupsRequest::default(), 4)?;
        for g in resp.groups {
            rows.insert(g.group_id.0.to_string(), g.group_state.to_string());
        }
    }
    Ok(rows)
}

pub fn list(bootstrap: &str) -> Result<()> {
    println!("GROUP\tSTATE");
    for (g, st) in list_groups(bootstrap)? {
        println!("{g}\t{st}");
    }
    Ok(())
}

pub(super) fn describe_group(c: &mut Client, group: &str) -> Result<DescribedGroup> {
    let mut req = DescribeGroupsRequest::default();
    req.groups = vec![GroupId(StrBytes::from_string(group.to_string()))];
    let resp = c.call(&req, 4)?;
    let g = resp
        .groups
        .into_iter()
        .next()
        .context("empty DescribeGroups answer")?;
    if g.error_code != 0 {
        bail!("describe {group}: error {}", g.error_code);
    }
    Ok(g)
}

/// (topic, partition) → committed offset.
pub(super) fn committed(c: &mut Client, group: &str) -> Result<Offsets> {
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(StrBytes::from_string(group.to_string()));
    req.topics = None;
    let resp = c.call(&req, 7)?;
    if resp.error_code != 0 {
        bail!("offset fetch for {group}: error {}", resp.error_code);
    }
    let mut out = BTreeMap::new();
    for t in resp.topics {
        for p in t.partitions {
            if p.committed_offset >= 0 {
                out.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// (topic, partition) → log end offset, for the given topics.
fn end_offsets(bootstrap: &str, topics: &BTreeSet<String>) -> Result<Offsets> {
    let mut c = Client::connect(bootstrap)?;
    let md: MetadataResponse = metadata(&mut c, Some(topics.iter().cloned().collect()))?;
    let mut out = BTreeMap::new();
    for t in &md.topics {
        let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        let parts: Vec<(i32, i32)> = t
            .partitions
            .iter()
            .map(|p| (p.partition_index, p.leader_id.0))
            .collect();
        for (p, off) in offsets(&md, &name, &parts, -1)? {
            out.insert((name.clone(), p), off);
        }
    }
    Ok(out)
}

/// Who holds each partition: (topic, partition) → (member id, host, client id).
fn owners(g: &DescribedGroup) -> BTreeMap<(String, i32), (String, String, String)> {
    let mut out = BTreeMap::new();
    for m in &g.members {
        let mut buf = m.member_assignment.clone();
        if buf.remaining() < 2 {
            continue;
        }
        let version = buf.get_i16();
        let Ok(a) = ConsumerProtocolAssignment::decode(&mut buf, version.clamp(0, 3)) else {
            continue;
        };
        for tp in a.assigned_partitions {
            for p in tp.partitions {
                out.insert(
                    (tp.topic.0.to_string(), p),
                    (
                        m.member_id.to_string(),
                        m.client_host.to_string(),
                        m.client_id.to_string(),
                    ),
                );
            }
        }
    }
    out
}

/// Status of a partition from two samples (committed, end) a window apart.
pub fn status(before: (Option<i64>, i64), after: (Option<i64>, i64)) -> &'static str {
    let lag = |(c, e): (Option<i64>, i64)| c.map(|c| (e - c).max(0));
    match (lag(before), lag(after)) {
        (Some(l0), Some(l1)) if before.0 == after.0 && l1 > 0 && l0 > 0 => "STALLED",
        (Some(l0), Some(l1)) if l1 > l0 => "LAGGING",
        (Some(_), Some(_)) => "OK",
        _ => "-",
    }
}

/// One partition of a group: its committed offset, the log end, and who holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupRow {
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub end: i64,
    pub member: String,
    pub host: String,
    pub client: String,
}

impl GroupRow {
    /// Records behind the log end (`None` with no committed offset).
    pub fn lag(&self) -> Option<i64> {
        self.committed.map(|c| (self.end - c).max(0))
    }
}

/// A group at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupSnapshot {
    pub state: String,
    pub protocol: String,
    pub members: usize,
    pub rows: Vec<GroupRow>,
}

/// The group's state, and each partition it has a committed offset for or holds.
pub fn snapshot(bootstrap: &str, group: &str) -> Result<GroupSnapshot> {
    let mut c = coordinator(bootstrap, group)?;
    let g = describe_group(&mut c, group)?;
    let owners = owners(&g);
    let committed = committed(&mut c, group)?;
    let topics: BTreeSet<String> = committed
        .keys()
        .chain(owners.keys())
        .map(|(t, _)| t.clone())
        .collect();
    let ends = end_offsets(bootstrap, &topics)?;
    let keys: BTreeSet<&(String, i32)> = committed.keys().chain(owners.keys()).collect();
    let rows = keys
        .into_iter()
        .map(|key| {
            let (member, host, client) = owners
                .get(key)
                .cloned()
                .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
            GroupRow {
                topic: key.0.clone(),
                partition: key.1,
                committed: committed.get(key).copied(),
                end: ends.get(key).copied().unwrap_or(-1),
                member,
                host,
                client,
            }
        })
        .collect();
    Ok(GroupSnapshot {
        state: g.group_state.to_string(),
        protocol: g.protocol_data.to_string(),
        members: g.members.len(),
        rows,
    })
}

pub fn describe(bootstrap: &str, group: &str, window: Duration) -> Result<()> {
    let s0 = snapshot(bootstrap, group)?;
    let s1 = if window.is_zero() {
        s0.clone()
    } else {
        std::thread::sleep(window);
        snapshot(bootstrap, group)?
    };
    println!(
        "group {group}  state {}  protocol {}  members {}",
        s1.state, s1.protocol, s1.members
    );
    println!("TOPIC\tPARTITION\tCURRENT-OFFSET\tLOG-END-OFFSET\tLAG\tCONSUMER-ID\tHOST\tCLIENT-ID\tSTATUS");
    for r in &s1.rows {
        let st = if window.is_zero() {
            "-"
        } else {
            let before = s0
                .rows
                .iter()
                .find(|x| x.topic == r.topic && x.partition == r.partition);
            status(
                (
                    before.and_then(|b| b.committed),
                    before.map_or(r.end, |b| b.end),
                ),
                (r.committed, r.end),
            )
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{st}",
            r.topic,
            r.partition,
            r.committed.map_or("-".to_string(), |c| c.to_string()),
            r.end,
            r.lag().map_or("-".to_string(), |l| l.to_string()),
            r.member,
            r.host,
            r.client,
        );
    }
    Ok(())
}

/// Deletes groups with no members (DeleteGroups on each one's coordinator).
pub fn delete(bootstrap: &str, groups: &[String]) -> Result<()> {
    let mut failed = Vec::new();
    for g in groups {
        let mut c = coordinator(bootstrap, g)?;
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(StrBytes::from_string(g.clone()))];
        let resp = c.call(&req, 2)?;
        let code = resp.results.first().map_or(-1, |r| r.error_code);
        match code {
            0 => println!("deleted group {g}"),
            68 => failed.push(format!("{g}: it has members (stop its consumers first)")),
            69 => failed.push(format!("{g}: no such group")),
            code => failed.push(format!("{g}: error {code}")),
        }
    }
    if !failed.is_empty() {
        bail!("not deleted: {}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::status;

    #[test]
    fn burrow_style_status() {
        assert_eq!(status((Some(10), 20), (Some(10), 25)), "STALLED");
        assert_eq!(status((Some(10), 20), (Some(12), 30)), "LAGGING");
        assert_eq!(status((Some(10), 20), (Some(20), 22)), "OK");
        assert_eq!(status((Some(20), 20), (Some(20), 20)), "OK");
        assert_eq!(status((None, 20), (None, 20)), "-");
    }
}
