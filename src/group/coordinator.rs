//! The group coordinator of one shard: the groups whose offsets partitions this shard owns,
//! their offsets logs, and the request handlers of the classic group protocol.
//!
//! Invariant: group state is borrowed only between awaits; every commit is appended to the
//! group's offsets log before the in-memory map changes and before the client hears back.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponse, OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponseGroup, OffsetFetchResponsePartition,
    OffsetFetchResponsePartitions, OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{GroupId, TopicName};
use kafka_protocol::protocol::StrBytes;
use tracing::{error, info, warn};

use super::offsets::{self, encode_key, encode_value};
use super::state::{self, Committed, Group, GroupState, JoinArgs, Step};
use super::{offsets_partition, GroupConfig, OFFSETS_TOPIC};
use crate::log::records::{build_batch, Record};
use crate::log::{now_ms, Log, LogConfig};
use crate::protocol::{
    GroupsRequest, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};

pub const OFFSET_METADATA_TOO_LARGE: i16 = 12;
pub const NOT_COORDINATOR: i16 = 16;
pub const INVALID_GROUP_ID: i16 = 24;
pub const KAFKA_STORAGE_ERROR: i16 = 56;
pub const NON_EMPTY_GROUP: i16 = 68;
pub const GROUP_ID_NOT_FOUND: i16 = 69;
pub const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// (group, topic, partition, committed offset)
pub type CommittedList = Vec<(String, String, i32, i64)>;

/// A topic's partitions with their committed offsets, if any.
type TopicOffsets = (String, Vec<(i32, Option<Committed>)>);

pub struct Coordinator {
    cfg: GroupConfig,
    logs: RefCell<HashMap<i32, Log>>,
    groups: RefCell<HashMap<String, Group>>,
}

impl Coordinator {
    /// Opens this shard's offsets partitions under `<data-dir>/groups/` and rebuilds the
    /// committed offsets of their groups.
    pub async fn open(
        data_dir: &Path,
        owned: &[i32],
        cfg: GroupConfig,
        clean: bool,
    ) -> Coordinator {
        let c = Coordinator {
            cfg,
            logs: RefCell::new(HashMap::new()),
            groups: RefCell::new(HashMap::new()),
        };
        c.adopt(data_dir, owned, clean).await;
        c
    }

    /// Takes over the offsets partitions in `parts` this shard does not hold yet (in a
    /// cluster, as the metadata quorum places them here): opens each log and rebuilds its
    /// groups' committed offsets.
    pub async fn adopt(&self, data_dir: &Path, parts: &[i32], clean: bool) {
        let now = now_ms();
        for &p in parts {
            if self.logs.borrow().contains_key(&p) {
                continue;
            }
            let dir = data_dir.join("groups").join(format!("{OFFSETS_TOPIC}-{p}"));
            let lc = LogConfig {
                segment_bytes: 100 << 20,
                ..LogConfig::default()
            };
            let log = match Log::open_with(&dir, lc, clean).await {
                Ok((log, report)) => {
                    for line in report {
                        info!(partition = p, "offsets log recovery: {line}");
                    }
                    log
                }
                Err(e) => {
                    error!(partition = p, dir = %dir.display(), "cannot open offsets log: {e}");
                    continue;
                }
            };
            match offsets::recover(&log).await {
                Ok(map) => {
                    let mut groups = self.groups.borrow_mut();
                    for ((g, t, part), c) in map {
                        groups
                            .entry(g.clone())
                            .or_insert_with(|| Group::new(&g, now))
                            .offsets
                            .insert((t, part), c);
                    }
                }
                Err(e) => error!(partition = p, "cannot replay offsets log: {e}"),
            }
            self.logs.borrow_mut().insert(p, log);
        }
    }

    /// The offsets logs this shard holds.
    fn all_logs(&self) -> Vec<(i32, Log)> {
        self.logs
            .borrow()
            .iter()
            .map(|(p, l)| (*p, l.clone()))
            .collect()
    }

    /// Whether this shard coordinates `group`.
    pub fn owns(&self, group: &str) -> bool {
        self.logs.borrow().contains_key(&offsets_partition(group))
    }

    fn log_of(&self, group: &str) -> Option<Log> {
        self.logs.borrow().get(&offsets_partition(group)).cloned()
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
        if !self.owns(&req.group_id) {
            return fail(resp, NOT_COORDINATOR);
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
        if !self.owns(&req.group_id) {
            resp.error_code = NOT_COORDINATOR;
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
        resp.error_code = if !self.owns(&req.group_id) {
            NOT_COORDINATOR
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
        if !self.owns(&req.group_id) {
            resp.error_code = NOT_COORDINATOR;
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

    pub async fn commit(&self, req: OffsetCommitRequest) -> OffsetCommitResponse {
        let group_code = if !self.owns(&req.group_id) {
            NOT_COORDINATOR
        } else if req.group_id.is_empty() {
            INVALID_GROUP_ID
        } else {
            let mut groups = self.groups.borrow_mut();
            let g = groups
                .entry(req.group_id.clone())
                .or_insert_with(|| Group::new(&req.group_id, now_ms()));
            g.check_commit(
                &req.member_id,
                req.group_instance_id.as_deref(),
                req.generation_id,
            )
        };
        let now = now_ms();
        let mut codes: Vec<(String, Vec<(i32, i16)>)> = Vec::new();
        let mut writes: Vec<(String, i32, Committed)> = Vec::new();
        for (topic, parts) in &req.topics {
            let mut tc = Vec::new();
            for p in parts {
                let too_big = p
                    .metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > self.cfg.max_metadata_bytes);
                let code = if group_code != state::NONE {
                    group_code
                } else if too_big {
                    OFFSET_METADATA_TOO_LARGE
                } else {
                    writes.push((
                        topic.clone(),
                        p.partition,
                        Committed {
                            offset: p.offset,
                            leader_epoch: p.leader_epoch,
                            metadata: p.metadata.clone(),
                            commit_ms: now,
                        },
                    ));
                    state::NONE
                };
                tc.push((p.partition, code));
            }
            codes.push((topic.clone(), tc));
        }
        if !writes.is_empty() {
            let result = self.append_offsets(&req.group_id, &writes).await;
            match result {
                Ok(()) => {
                    let mut groups = self.groups.borrow_mut();
                    if let Some(g) = groups.get_mut(&req.group_id) {
                        for (t, p, c) in writes {
                            g.offsets.insert((t, p), c);
                        }
                    }
                }
                Err(code) => {
                    for (_, tc) in codes.iter_mut() {
                        for (_, c) in tc.iter_mut().filter(|(_, c)| *c == state::NONE) {
                            *c = code;
                        }
                    }
                }
            }
        }
        let mut resp = OffsetCommitResponse::default();
        for (topic, tc) in codes {
            let mut t = OffsetCommitResponseTopic::default();
            t.name = TopicName(s(&topic));
            for (p, code) in tc {
                let mut pr = OffsetCommitResponsePartition::default();
                pr.partition_index = p;
                pr.error_code = code;
                t.partitions.push(pr);
            }
            resp.topics.push(t);
        }
        resp
    }

    /// Appends commit records (`None` value: tombstone) for a group; Kafka error on failure.
    async fn append_records(
        &self,
        group: &str,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), i16> {
        let Some(log) = self.log_of(group) else {
            return Err(NOT_COORDINATOR);
        };
        let refs: Vec<Record<'_>> = records
            .iter()
            .map(|(k, v)| (Some(k.as_slice()), v.as_deref()))
            .collect();
        let batch = build_batch(&refs, now_ms());
        log.append_with(&batch, true)
            .await
            .map(|_| ())
            .map_err(|e| {
                error!(group, "offset commit not written: {e}");
                KAFKA_STORAGE_ERROR
            })
    }

    async fn append_offsets(
        &self,
        group: &str,
        writes: &[(String, i32, Committed)],
    ) -> Result<(), i16> {
        let records = writes
            .iter()
            .map(|(t, p, c)| (encode_key(group, t, *p), Some(encode_value(c))))
            .collect();
        self.append_records(group, records).await
    }

    fn fetch_group(
        &self,
        group: &str,
        topics: &Option<Vec<(String, Vec<i32>)>>,
    ) -> (i16, Vec<TopicOffsets>) {
        if !self.owns(group) {
            return (NOT_COORDINATOR, Vec::new());
        }
        let groups = self.groups.borrow();
        let offsets = groups.get(group).map(|g| &g.offsets);
        let out = match topics {
            Some(ts) => ts
                .iter()
                .map(|(t, ps)| {
                    let parts = ps
                        .iter()
                        .map(|p| (*p, offsets.and_then(|o| o.get(&(t.clone(), *p))).cloned()))
                        .collect();
                    (t.clone(), parts)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<Committed>)>> = BTreeMap::new();
                for ((t, p), c) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(t.clone())
                        .or_default()
                        .push((*p, Some(c.clone())));
                }
                for v in by_topic.values_mut() {
                    v.sort_by_key(|x| x.0);
                }
                by_topic.into_iter().collect()
            }
        };
        (state::NONE, out)
    }

    pub fn fetch_offsets(&self, req: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
        // The per-group (v8+) and single-group (v0-7) layouts use differently named types
        // with the same fields.
        macro_rules! topics {
            ($topic:ty, $part:ty, $found:expr, $code:expr) => {
                $found
                    .into_iter()
                    .map(|(t, parts)| {
                        let mut tr = <$topic>::default();
                        tr.name = TopicName(s(&t));
                        for (p, c) in parts {
                            let c: Option<Committed> = c;
                            let mut pr = <$part>::default();
                            pr.partition_index = p;
                            pr.committed_offset = c.as_ref().map_or(-1, |c| c.offset);
                            pr.committed_leader_epoch = c.as_ref().map_or(-1, |c| c.leader_epoch);
                            pr.metadata = Some(s(c
                                .as_ref()
                                .and_then(|c| c.metadata.as_deref())
                                .unwrap_or("")));
                            pr.error_code = $code;
                            tr.partitions.push(pr);
                        }
                        tr
                    })
                    .collect()
            };
        }
        let mut resp = OffsetFetchResponse::default();
        for (group, topics) in &req.groups {
            let (code, found) = self.fetch_group(group, topics);
            if version >= 8 {
                let mut gr = OffsetFetchResponseGroup::default();
                gr.group_id = GroupId(s(group));
                gr.error_code = code;
                gr.topics = topics!(
                    OffsetFetchResponseTopics,
                    OffsetFetchResponsePartitions,
                    found,
                    code
                );
                resp.groups.push(gr);
            } else {
                resp.error_code = code;
                resp.topics = topics!(
                    OffsetFetchResponseTopic,
                    OffsetFetchResponsePartition,
                    found,
                    code
                );
            }
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
            if !self.owns(id) {
                d.error_code = NOT_COORDINATOR;
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

    /// Removes a group and its offsets (tombstones written first).
    async fn remove_group(&self, id: &str) -> Result<(), i16> {
        let keys: Vec<(String, i32)> = match self.groups.borrow().get(id) {
            None => return Err(GROUP_ID_NOT_FOUND),
            Some(g) if g.state != GroupState::Empty || !g.members.is_empty() => {
                return Err(NON_EMPTY_GROUP)
            }
            Some(g) => g.offsets.keys().cloned().collect(),
        };
        if !keys.is_empty() {
            let records = keys
                .iter()
                .map(|(t, p)| (encode_key(id, t, *p), None))
                .collect();
            self.append_records(id, records).await?;
        }
        self.groups.borrow_mut().remove(id);
        Ok(())
    }

    pub async fn delete(&self, req: GroupsRequest) -> DeleteGroupsResponse {
        let mut resp = DeleteGroupsResponse::default();
        for id in &req.groups {
            let code = if !self.owns(id) {
                NOT_COORDINATOR
            } else {
                match self.remove_group(id).await {
                    Ok(()) => {
                        info!(group = %id, "group deleted");
                        state::NONE
                    }
                    Err(c) => c,
                }
            };
            let mut r = DeletableGroupResult::default();
            r.group_id = GroupId(s(id));
            r.error_code = code;
            resp.results.push(r);
        }
        resp
    }

    pub async fn delete_offsets(&self, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let mut resp = OffsetDeleteResponse::default();
        let check = if !self.owns(&req.group_id) {
            NOT_COORDINATOR
        } else {
            match self.groups.borrow().get(&req.group_id) {
                None => GROUP_ID_NOT_FOUND,
                Some(g) if !g.members.is_empty() => GROUP_SUBSCRIBED_TO_TOPIC,
                Some(_) => state::NONE,
            }
        };
        if check != state::NONE && check != GROUP_SUBSCRIBED_TO_TOPIC {
            resp.error_code = check;
            return resp;
        }
        let mut records = Vec::new();
        for (t, ps) in &req.topics {
            let mut tr = OffsetDeleteResponseTopic::default();
            tr.name = TopicName(s(t));
            for p in ps {
                let mut pr = OffsetDeleteResponsePartition::default();
                pr.partition_index = *p;
                pr.error_code = check;
                if check == state::NONE {
                    records.push((encode_key(&req.group_id, t, *p), None));
                }
                tr.partitions.push(pr);
            }
            resp.topics.push(tr);
        }
        if !records.is_empty() {
            let keys: Vec<(String, i32)> = req
                .topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect();
            match self.append_records(&req.group_id, records).await {
                Ok(()) => {
                    if let Some(g) = self.groups.borrow_mut().get_mut(&req.group_id) {
                        for k in keys {
                            g.offsets.remove(&k);
                        }
                    }
                }
                Err(code) => resp.error_code = code,
            }
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

    /// Compacts offsets partitions whose log has rolled since their last snapshot.
    pub async fn compact(&self) {
        for (p, log) in self.all_logs() {
            match offsets::compact(&log).await {
                Ok(Some(at)) => info!(
                    partition = p,
                    offset = at,
                    "compacted offsets log into a snapshot"
                ),
                Ok(None) => {}
                Err(e) => warn!(partition = p, "offsets compaction failed: {e}"),
            }
        }
    }

    /// Flushes the offsets logs (clean shutdown); whether all succeeded.
    pub async fn sync_logs(&self) -> bool {
        let mut ok = true;
        for (p, log) in self.all_logs() {
            if let Err(e) = log.sync().await {
                error!(partition = p, "offsets log sync failed: {e}");
                ok = false;
            }
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::CommitPartition;

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
