//! The group coordinator of one shard: the groups whose offsets partitions this shard
//! holds, and the membership handlers of the classic group protocol (the offset handlers
//! are in [`super::commits`], the partitions it holds in [`super::partitions`]).
//!
//! Invariant: group state is borrowed only between awaits; every commit is appended to the
//! group's offsets log before the in-memory map changes and before the client hears back.

pub(super) use crate::protocol::str_bytes as s;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::GroupId;
use tracing::{info, warn};

use super::offsets::OffsetKey;
use super::partitions::{Held, Replicator};
use super::state::{self, Committed, Group, GroupState, JoinArgs, Step};
use super::GroupConfig;
use crate::log::now_ms;
use crate::protocol::{
    GroupsRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    SyncGroupRequest,
};

pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_GROUP_ID: i16 = 24;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

/// (group, topic, partition, committed offset)
pub type CommittedList = Vec<(String, String, i32, i64)>;

/// A topic's partitions with their committed offsets, if any.
pub(super) type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

pub struct Coordinator {
    pub(super) cfg: GroupConfig,
    /// The offsets partitions served now.
    pub(super) logs: RefCell<HashMap<i32, Held>>,
    /// Replicated offsets partitions being loaded, with the leader epoch of the load.
    pub(super) loading: RefCell<HashMap<i32, i32>>,
    pub(super) groups: RefCell<HashMap<String, Group>>,
    /// The log offset of the append each key's in-memory value came from (commits since
    /// the partition was loaded).
    pub(super) applied: RefCell<HashMap<OffsetKey, i64>>,
    pub(super) replicator: RefCell<Option<Rc<dyn Replicator>>>,
    /// Offsets staged by open transactions, per offsets partition.
    pub(super) staged: RefCell<HashMap<i32, super::txn_offsets::Staged>>,
}

impl Coordinator {
    /// Single node: opens this shard's offsets partitions under `<data-dir>/groups/` and
    /// rebuilds the committed offsets of their groups (in a cluster `owned` is empty and the
    /// shard hands over the partitions it leads through [`Coordinator::lead`]).
    pub async fn open(
        data_dir: &Path,
        owned: &[i32],
        cfg: GroupConfig,
        clean: bool,
    ) -> Coordinator {
        let c = Coordinator {
            cfg,
            logs: RefCell::new(HashMap::new()),
            loading: RefCell::new(HashMap::new()),
            groups: RefCell::new(HashMap::new()),
            applied: RefCell::new(HashMap::new()),
            replicator: RefCell::new(None),
            staged: RefCell::new(HashMap::new()),
        };
        c.adopt(data_dir, owned, clean).await;
        c
    }

    /// Installs how appends to replicated offsets partitions wait for their replicas.
    pub fn set_replicator(&self, r: Rc<dyn Replicator>) {
        *self.replicator.borrow_mut() = Some(r);
    }

    pub async fn join(
        &self,
        req: JoinGroupRequest,
        client_id: &str,
        client_host: &str,
        version: i16,
    ) -> JoinGroupResponse {
        let mut resp = JoinGroupResponse::default();
        let fail = |mut r: JoinGroupResponse, code: i16| {
            r.error_code = code;
            r.generation_id = -1;
            r.protocol_name = if version >= 7 { None } else { Some(s("")) };
            r
        };
        if req.group_id.is_empty() {
            return fail(resp, INVALID_GROUP_ID);
        }
        let serves = self.serves(&req.group_id);
        if serves != state::NONE {
            return fail(resp, serves);
        }
        let step = {
            let mut groups = self.groups.borrow_mut();
            let g = groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id, now_ms()));
            g.join(
                JoinArgs {
                    member_id: &req.member_id,
                    instance_id: req.group_instance_id.as_deref(),
                    client_id,
                    client_host,
                    session_timeout_ms: req.session_timeout_ms,
                    rebalance_timeout_ms: req.rebalance_timeout_ms,
                    protocol_type: &req.protocol_type,
                    protocols: &req.protocols,
                    require_known_member_id: version >= 4,
                },
                &self.cfg,
                Instant::now(),
            )
        };
        let wait = Duration::from_millis(
            req.rebalance_timeout_ms.max(req.session_timeout_ms).max(0) as u64,
        ) + Duration::from_secs(5);
        let out = match step {
            Step::Now(o) => o,
            Step::Wait(rx) => match crate::runtime::timeout(wait, rx).await {
                Some(Ok(o)) => o,
                _ => {
                    resp.member_id = s(&req.member_id);
                    return fail(resp, state::REBALANCE_IN_PROGRESS);
                }
            },
        };
        resp.error_code = out.error;
        resp.generation_id = out.generation;
        resp.protocol_type = out.protocol_type.as_deref().map(s);
        resp.protocol_name = match (out.protocol_name.as_deref(), version >= 7) {
            (Some(p), _) => Some(s(p)),
            (None, true) => None,
            (None, false) => Some(s("")),
        };
        resp.leader = s(&out.leader);
        resp.member_id = s(&out.member_id);
        resp.members = out
            .members
            .into_iter()
            .map(|(id, inst, meta)| {
                let mut m = JoinGroupResponseMember::default();
                m.member_id = s(&id);
                m.group_instance_id = inst.as_deref().map(s);
                m.metadata = meta;
                m
            })
            .collect();
        resp
    }

    pub async fn sync(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        let mut resp = SyncGroupResponse::default();
        resp.error_code = self.serves(&req.group_id);
        if resp.error_code != state::NONE {
            return resp;
        }
        let step = {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(&req.group_id) {
                None => Step::Now(state::SyncOutcome {
                    error: state::UNKNOWN_MEMBER_ID,
                    ..Default::default()
                }),
                Some(g) => g.sync(
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                    &req.assignments,
                    Instant::now(),
                ),
            }
        };
        let out = match step {
            Step::Now(o) => o,
            Step::Wait(rx) => match crate::runtime::timeout(Duration::from_secs(300), rx).await {
                Some(Ok(o)) => o,
                _ => state::SyncOutcome {
                    error: state::REBALANCE_IN_PROGRESS,
                    ..Default::default()
                },
            },
        };
        resp.error_code = out.error;
        resp.assignment = out.assignment;
        resp.protocol_type = out.protocol_type.as_deref().map(s);
        resp.protocol_name = out.protocol_name.as_deref().map(s);
        resp
    }

    pub fn heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        let mut resp = HeartbeatResponse::default();
        let serves = self.serves(&req.group_id);
        resp.error_code = if serves != state::NONE {
            serves
        } else {
            match self.groups.borrow_mut().get_mut(&req.group_id) {
                None => state::UNKNOWN_MEMBER_ID,
                Some(g) => g.heartbeat(
                    &req.member_id,
                    req.group_instance_id.as_deref(),
                    req.generation_id,
                    Instant::now(),
                ),
            }
        };
        resp
    }

    pub fn leave(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        let mut resp = LeaveGroupResponse::default();
        resp.error_code = self.serves(&req.group_id);
        if resp.error_code != state::NONE {
            return resp;
        }
        let mut groups = self.groups.borrow_mut();
        let now = Instant::now();
        for (member, inst) in &req.members {
            let code = match groups.get_mut(&req.group_id) {
                None => state::UNKNOWN_MEMBER_ID,
                Some(g) => g.leave(member, inst.as_deref(), &self.cfg, now),
            };
            if code == state::NONE {
                info!(group = %req.group_id, member = %member, "member left");
            }
            let mut m = MemberResponse::default();
            m.member_id = s(member);
            m.group_instance_id = inst.as_deref().map(s);
            m.error_code = code;
            resp.members.push(m);
        }
        if let (1, Some(m)) = (req.members.len(), resp.members.first()) {
            resp.error_code = m.error_code;
        }
        if version < 3 {
            resp.members.clear();
        }
        resp
    }

    pub fn list(&self, req: ListGroupsRequest) -> ListGroupsResponse {
        let mut resp = ListGroupsResponse::default();
        let groups = self.groups.borrow();
        let mut ids: Vec<&String> = groups.keys().collect();
        ids.sort();
        for id in ids {
            let g = &groups[id];
            let st = g.state.name();
            if !req.states_filter.is_empty() && !req.states_filter.iter().any(|f| f == st) {
                continue;
            }
            let mut lg = ListedGroup::default();
            lg.group_id = GroupId(s(id));
            lg.protocol_type = s(g.protocol_type.as_deref().unwrap_or("consumer"));
            lg.group_state = s(st);
            lg.group_type = s("classic");
            resp.groups.push(lg);
        }
        resp
    }

    pub fn describe(&self, req: GroupsRequest) -> DescribeGroupsResponse {
        let mut resp = DescribeGroupsResponse::default();
        let groups = self.groups.borrow();
        for id in &req.groups {
            let mut d = DescribedGroup::default();
            d.group_id = GroupId(s(id));
            let serves = self.serves(id);
            if serves != state::NONE {
                d.error_code = serves;
            } else {
                match groups.get(id) {
                    None => d.group_state = s("Dead"),
                    Some(g) => {
                        d.group_state = s(g.state.name());
                        d.protocol_type = s(g.protocol_type.as_deref().unwrap_or(""));
                        d.protocol_data = s(g.protocol.as_deref().unwrap_or(""));
                        for m in g.members.values() {
                            let mut dm = DescribedGroupMember::default();
                            dm.member_id = s(&m.id);
                            dm.group_instance_id = m.instance_id.as_deref().map(s);
                            dm.client_id = s(&m.client_id);
                            dm.client_host = s(&m.client_host);
                            dm.member_metadata = g
                                .protocol
                                .as_ref()
                                .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                                .map(|(_, b)| b.clone())
                                .unwrap_or_else(Bytes::new);
                            dm.member_assignment = m.assignment.clone();
                            d.members.push(dm);
                        }
                    }
                }
            }
            resp.groups.push(d);
        }
        resp
    }

    /// Periodic work: member session expiry, due rebalances, expiry of the offsets of groups
    /// empty for longer than `offsets.retention.minutes`.
    pub async fn tick(&self) {
        let now = Instant::now();
        let now_ms = now_ms();
        let retention = self.cfg.offsets_retention.as_millis() as i64;
        let expired: Vec<String> = {
            let mut groups = self.groups.borrow_mut();
            let mut expired = Vec::new();
            for g in groups.values_mut() {
                g.tick(&self.cfg, now, now_ms);
                if g.state == GroupState::Empty
                    && g.members.is_empty()
                    && now_ms - g.empty_since_ms > retention
                {
                    expired.push(g.id.clone());
                }
            }
            expired
        };
        for id in expired {
            match self.remove_group(&id).await {
                Ok(()) => {
                    info!(group = %id, "offsets expired (group empty past offsets.retention.minutes)")
                }
                Err(code) => warn!(group = %id, code, "could not expire group offsets"),
            }
        }
    }

    /// For metrics: every committed offset (group, topic, partition, offset) and every
    /// group's (id, state, members).
    pub fn metrics(&self) -> (CommittedList, Vec<(String, &'static str, usize)>) {
        let groups = self.groups.borrow();
        let mut committed = Vec::new();
        let mut states = Vec::new();
        for g in groups.values() {
            for ((t, p), c) in &g.offsets {
                committed.push((g.id.clone(), t.clone(), *p, c.offset));
            }
            states.push((g.id.clone(), g.state.name(), g.members.len()));
        }
        (committed, states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CommitPartition, OffsetCommitRequest};

    #[test]
    fn offsets_of_groups_empty_past_retention_expire_durably() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let owned: Vec<i32> = (0..super::super::OFFSETS_PARTITIONS).collect();
                let cfg = GroupConfig {
                    offsets_retention: Duration::from_millis(200),
                    ..GroupConfig::default()
                };
                let c = Coordinator::open(&path, &owned, cfg.clone(), false).await;
                let commit = |group: &str, offset: i64| OffsetCommitRequest {
                    group_id: group.to_string(),
                    generation_id: -1,
                    member_id: String::new(),
                    group_instance_id: None,
                    topics: vec![(
                        "t".to_string(),
                        vec![CommitPartition {
                            partition: 0,
                            offset,
                            leader_epoch: 3,
                            metadata: Some("m".into()),
                        }],
                    )],
                };
                let r = c.commit(commit("old", 5)).await;
                assert_eq!(r.topics[0].partitions[0].error_code, 0);
                crate::runtime::sleep(Duration::from_millis(300)).await;
                let r = c.commit(commit("fresh", 7)).await;
                assert_eq!(r.topics[0].partitions[0].error_code, 0);
                // "old" has been empty for longer than the retention; "fresh" was just used.
                c.groups
                    .borrow_mut()
                    .get_mut("fresh")
                    .expect("fresh")
                    .empty_since_ms = now_ms();
                c.tick().await;
                assert!(c.groups.borrow().get("old").is_none());
                let fetched = c.fetch_group("fresh", &None).1;
                assert_eq!(
                    fetched[0].1[0]
                        .1
                        .as_ref()
                        .map(|x| (x.offset, x.leader_epoch)),
                    Some((7, 3))
                );
                drop(c);
                // After a restart the expiry holds (tombstones) and the other group survives.
                let c = Coordinator::open(&path, &owned, cfg, false).await;
                assert!(c.groups.borrow().get("old").is_none());
                let fetched = c.fetch_group("fresh", &None).1;
                let got = fetched[0].1[0].1.clone().expect("committed");
                assert_eq!((got.offset, got.metadata.as_deref()), (7, Some("m")));
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
