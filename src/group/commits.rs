//! The offset handlers of the group coordinator: commit, fetch and delete committed
//! offsets, and delete groups.
//!
//! Invariant: a commit or deletion changes the in-memory offsets only after its records are
//! in the group's offsets partition (on every in-sync replica, in a cluster); a failure
//! leaves them as they were and answers the partition's error.

use std::collections::BTreeMap;

use kafka_protocol::messages::delete_groups_response::{
    DeletableGroupResult, DeleteGroupsResponse,
};
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
use kafka_protocol::messages::{GroupId, TopicName};
use tracing::info;

use super::coordinator::{
    s, Coordinator, TopicOffsets, GROUP_ID_NOT_FOUND, GROUP_SUBSCRIBED_TO_TOPIC, INVALID_GROUP_ID,
    NON_EMPTY_GROUP, OFFSET_METADATA_TOO_LARGE,
};
use super::offsets::{encode_key, encode_value};
use super::state::{self, Committed, Group, GroupState};
use crate::log::now_ms;
use crate::protocol::{
    CommitPartition, GroupsRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
};

/// Per topic, each partition's answer code.
pub(super) type PlannedCodes = Vec<(String, Vec<(i32, i16)>)>;

const INVALID_REQUEST: i16 = 42;
/// KIP-447: a transaction has staged an offset for this partition and not ended yet.
const UNSTABLE_OFFSET_COMMIT: i16 = 88;

/// The partitions a commit meant to write get `code`: the write failed.
pub(super) fn fail_planned(codes: &mut PlannedCodes, code: i16) {
    for (_, tc) in codes.iter_mut() {
        for (_, c) in tc.iter_mut().filter(|(_, c)| *c == state::NONE) {
            *c = code;
        }
    }
}

impl Coordinator {
    pub async fn commit(&self, req: OffsetCommitRequest) -> OffsetCommitResponse {
        let serves = self.serves(&req.group_id);
        let group_code = if serves != state::NONE {
            serves
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
        let (mut codes, writes) = self.plan_commit(group_code, &req.topics, usize::MAX);
        if !writes.is_empty() {
            let result = self.append_offsets(&req.group_id, &writes).await;
            match result {
                Ok(at) => {
                    for (t, p, c) in writes {
                        self.apply((req.group_id.clone(), t, p), at, Some(c));
                    }
                }
                Err(code) => fail_planned(&mut codes, code),
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

    /// The answer codes of a commit of `topics` and the offsets to write: `group_code` for
    /// every partition when the group refuses the commit, OFFSET_METADATA_TOO_LARGE for
    /// oversize metadata, INVALID_REQUEST past `room` offsets; NONE for those to write.
    pub(super) fn plan_commit(
        &self,
        group_code: i16,
        topics: &[(String, Vec<CommitPartition>)],
        room: usize,
    ) -> (PlannedCodes, Vec<(String, i32, Committed)>) {
        let now = now_ms();
        let mut codes: PlannedCodes = Vec::new();
        let mut writes: Vec<(String, i32, Committed)> = Vec::new();
        for (topic, parts) in topics {
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
                } else if writes.len() >= room {
                    INVALID_REQUEST
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
        (codes, writes)
    }

    async fn append_offsets(
        &self,
        group: &str,
        writes: &[(String, i32, Committed)],
    ) -> Result<i64, i16> {
        let records = writes
            .iter()
            .map(|(t, p, c)| (encode_key(group, t, *p), Some(encode_value(c))))
            .collect();
        self.append_records(group, records).await
    }

    pub(super) fn fetch_group(
        &self,
        group: &str,
        topics: &Option<Vec<(String, Vec<i32>)>>,
    ) -> (i16, Vec<TopicOffsets>) {
        let serves = self.serves(group);
        if serves != state::NONE {
            return (serves, Vec::new());
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
            ($topic:ty, $part:ty, $found:expr, $code:expr, $unstable:expr) => {
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
                            if $unstable(t.as_str(), p) {
                                pr.committed_offset = -1;
                                pr.committed_leader_epoch = -1;
                                pr.metadata = Some(s(""));
                                pr.error_code = UNSTABLE_OFFSET_COMMIT;
                            }
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
            let unstable = |t: &str, p: i32| req.require_stable && self.is_unstable(group, t, p);
            if version >= 8 {
                let mut gr = OffsetFetchResponseGroup::default();
                gr.group_id = GroupId(s(group));
                gr.error_code = code;
                gr.topics = topics!(
                    OffsetFetchResponseTopics,
                    OffsetFetchResponsePartitions,
                    found,
                    code,
                    unstable
                );
                resp.groups.push(gr);
            } else {
                resp.error_code = code;
                resp.topics = topics!(
                    OffsetFetchResponseTopic,
                    OffsetFetchResponsePartition,
                    found,
                    code,
                    unstable
                );
            }
        }
        resp
    }

    /// Removes a group and its offsets (tombstones written first).
    pub(super) async fn remove_group(&self, id: &str) -> Result<(), i16> {
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
        self.applied.borrow_mut().retain(|(g, _, _), _| g != id);
        Ok(())
    }

    pub async fn delete(&self, req: GroupsRequest) -> DeleteGroupsResponse {
        let mut resp = DeleteGroupsResponse::default();
        for id in &req.groups {
            let serves = self.serves(id);
            let code = if serves != state::NONE {
                serves
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
        let serves = self.serves(&req.group_id);
        let check = if serves != state::NONE {
            serves
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
                Ok(at) => {
                    for (t, p) in keys {
                        self.apply((req.group_id.clone(), t, p), at, None);
                    }
                }
                Err(code) => resp.error_code = code,
            }
        }
        resp
    }
}
