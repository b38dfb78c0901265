//! `shardlog consume --group`: a member of a classic consumer group, one topic, the range
//! assignor — join (JoinGroup, the leader assigns, SyncGroup), heartbeats between fetches,
//! offsets committed after each batch printed (at least once), LeaveGroup at the end.
//!
//! Invariant: positions are committed only at the generation they were assigned in; a
//! rebalance found by a heartbeat or a commit makes the caller join again and take the
//! committed offsets of its new partitions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::{
    ConsumerProtocolAssignment, TopicPartition as AssignedPartitions,
};
use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::sync_group_request::{SyncGroupRequest, SyncGroupRequestAssignment};
use kafka_protocol::messages::GroupId;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::client::Client;
use super::group::{committed, coordinator};
use super::topic::name;

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
/// Joins one command may make (each rebalance is one).
const MAX_JOINS: u32 = 50;
const MEMBER_ID_REQUIRED: i16 = 79;
const REBALANCE_IN_PROGRESS: i16 = 27;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;

pub struct Member {
    bootstrap: String,
    group: String,
    topic: String,
    coord: Client,
    member_id: String,
    generation: i32,
    last_heartbeat: Instant,
    joins: u32,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Kafka's range assignor for one topic: members sorted by id, partitions in order, the
/// first `n % members` members one more.
pub fn range_assign(members: &[String], partitions: i32) -> BTreeMap<String, Vec<i32>> {
    let mut ids: Vec<&String> = members.iter().collect();
    ids.sort();
    let n = ids.len().max(1) as i32;
    let (each, extra) = (partitions / n, partitions % n);
    let mut out = BTreeMap::new();
    let mut next = 0;
    for (i, id) in ids.into_iter().enumerate() {
        let take = each + i32::from((i as i32) < extra);
        out.insert(id.clone(), (next..next + take).collect());
        next += take;
    }
    out
}

fn versioned<M: Encodable>(m: &M, version: i16) -> Result<Bytes> {
    let mut b = BytesMut::new();
    b.put_i16(version);
    m.encode(&mut b, version)?;
    Ok(b.freeze())
}

impl Member {
    pub fn new(bootstrap: &str, group: &str, topic: &str) -> Result<Member> {
        Ok(Member {
            bootstrap: bootstrap.to_string(),
            group: group.to_string(),
            topic: topic.to_string(),
            coord: coordinator(bootstrap, group)?,
            member_id: String::new(),
            generation: -1,
            last_heartbeat: Instant::now(),
            joins: 0,
        })
    }

    /// Joins (or rejoins) the group: this member's partitions of the topic (which has
    /// `partitions` partitions) and, for each, its committed offset if the group has one.
    pub fn join(&mut self, partitions: i32) -> Result<Vec<(i32, Option<i64>)>> {
        // Bounded: each pass is one join, and a command makes at most MAX_JOINS.
        loop {
            self.joins += 1;
            if self.joins > MAX_JOINS {
                bail!(
                    "group {}: rebalanced more than {MAX_JOINS} times; giving up",
                    self.group
                );
            }
            let sub = ConsumerProtocolSubscription::default().with_topics(vec![s(&self.topic)]);
            let mut req = JoinGroupRequest::default();
            req.group_id = GroupId(s(&self.group));
            req.session_timeout_ms = SESSION_TIMEOUT_MS;
            req.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
            req.member_id = s(&self.member_id);
            req.protocol_type = s("consumer");
            req.protocols = vec![JoinGroupRequestProtocol::default()
                .with_name(s("range"))
                .with_metadata(versioned(&sub, 0)?)];
            let resp = self.coord.call(&req, 5)?;
            match resp.error_code {
                0 => {}
                MEMBER_ID_REQUIRED => {
                    self.member_id = resp.member_id.to_string();
                    continue;
                }
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                REBALANCE_IN_PROGRESS => continue,
                code => bail!("group {}: JoinGroup refused with error {code}", self.group),
            }
            self.member_id = resp.member_id.to_string();
            self.generation = resp.generation_id;
            let assignments = if resp.leader.as_str() == self.member_id {
                let ids: Vec<String> = resp
                    .members
                    .iter()
                    .map(|m| m.member_id.to_string())
                    .collect();
                range_assign(&ids, partitions)
                    .into_iter()
                    .map(|(id, parts)| {
                        let a =
                            ConsumerProtocolAssignment::default().with_assigned_partitions(vec![
                                AssignedPartitions::default()
                                    .with_topic(name(&self.topic))
                                    .with_partitions(parts),
                            ]);
                        Ok(SyncGroupRequestAssignment::default()
                            .with_member_id(s(&id))
                            .with_assignment(versioned(&a, 0)?))
                    })
                    .collect::<Result<Vec<_>>>()?
            } else {
                Vec::new()
            };
            let mut sync = SyncGroupRequest::default();
            sync.group_id = GroupId(s(&self.group));
            sync.generation_id = self.generation;
            sync.member_id = s(&self.member_id);
            sync.assignments = assignments;
            let resp = self.coord.call(&sync, 3)?;
            match resp.error_code {
                0 => {}
                REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION => continue,
                UNKNOWN_MEMBER_ID => {
                    self.member_id.clear();
                    continue;
                }
                code => bail!("group {}: SyncGroup refused with error {code}", self.group),
            }
            self.last_heartbeat = Instant::now();
            let mine = self.decode_assignment(resp.assignment)?;
            let offsets = committed(&mut self.coord, &self.group)?;
            return Ok(mine
                .into_iter()
                .map(|p| (p, offsets.get(&(self.topic.clone(), p)).copied()))
                .collect());
        }
    }

    fn decode_assignment(&self, mut b: Bytes) -> Result<Vec<i32>> {
        if b.len() < 2 {
            return Ok(Vec::new());
        }
        let version = b.get_i16();
        let a = ConsumerProtocolAssignment::decode(&mut b, version.clamp(0, 3))
            .context("an assignment that does not decode")?;
        let mut parts: Vec<i32> = a
            .assigned_partitions
            .into_iter()
            .filter(|t| t.topic.0.as_str() == self.topic)
            .flat_map(|t| t.partitions)
            .collect();
        parts.sort();
        Ok(parts)
    }

    /// A heartbeat if one is due: whether the group is rebalancing (join again).
    pub fn heartbeat(&mut self) -> Result<bool> {
        if self.last_heartbeat.elapsed() < HEARTBEAT_EVERY {
            return Ok(false);
        }
        self.last_heartbeat = Instant::now();
        let mut req = HeartbeatRequest::default();
        req.group_id = GroupId(s(&self.group));
        req.generation_id = self.generation;
        req.member_id = s(&self.member_id);
        match self.coord.call(&req, 4)?.error_code {
            0 => Ok(false),
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => Ok(true),
            // The coordinator moved: find it again, then rejoin.
            14..=16 => {
                self.coord = coordinator(&self.bootstrap, &self.group)?;
                Ok(true)
            }
            code => bail!("group {}: heartbeat refused with error {code}", self.group),
        }
    }

    /// Commits `positions` (partition, next offset to read): whether the group is
    /// rebalancing (those positions are then not committed; another member reads on from
    /// the last commit).
    pub fn commit(&mut self, positions: &[(i32, i64)]) -> Result<bool> {
        if positions.is_empty() {
            return Ok(false);
        }
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(s(&self.group));
        req.generation_id_or_member_epoch = self.generation;
        req.member_id = s(&self.member_id);
        req.topics = vec![OffsetCommitRequestTopic::default()
            .with_name(name(&self.topic))
            .with_partitions(
                positions
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                    })
                    .collect(),
            )];
        let resp = self.coord.call(&req, 8)?;
        let code = resp
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|c| *c != 0)
            .unwrap_or(0);
        match code {
            0 => Ok(false),
            REBALANCE_IN_PROGRESS | ILLEGAL_GENERATION | UNKNOWN_MEMBER_ID => Ok(true),
            code => bail!("group {}: commit refused with error {code}", self.group),
        }
    }

    /// Leaves the group (its partitions go to the others at once).
    pub fn leave(&mut self) {
        let mut req = LeaveGroupRequest::default();
        req.group_id = GroupId(s(&self.group));
        req.members = vec![MemberIdentity::default().with_member_id(s(&self.member_id))];
        // Leaving is a courtesy: if it fails, the session timeout does the same.
        let _ = self.coord.call(&req, 3);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_assignment_spreads_partitions_in_order() {
        let ids = vec!["b".to_string(), "a".to_string(), "c".to_string()];
        let a = range_assign(&ids, 8);
        assert_eq!(a["a"], vec![0, 1, 2]);
        assert_eq!(a["b"], vec![3, 4, 5]);
        assert_eq!(a["c"], vec![6, 7]);
        let one = range_assign(&["x".to_string()], 3);
        assert_eq!(one["x"], vec![0, 1, 2]);
        let many = range_assign(&ids, 2);
        assert_eq!(many["c"], Vec::<i32>::new());
    }
}
