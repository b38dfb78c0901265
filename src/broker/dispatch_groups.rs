//! The consumer-group requests, authorized (Kafka's checks: DESCRIBE, READ or DELETE on the
//! group, READ or DESCRIBE on the topics they name) and served by the shard's coordinator.
//! See [`super::dispatch`] for the rules every request follows.

use std::rc::Rc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authn::Session;
use super::dispatch::{name, CLUSTER, GROUP_DENIED, TOPIC_DENIED};
use super::find_coordinator;
use super::shard::Shard;
use super::splice::Piece;
use crate::protocol::{encode_response, ProtocolError, Request, RequestHeader};
use crate::security::acl::{Operation as Op, ResourceType as Rt};

pub async fn dispatch(
    shard: &Rc<Shard>,
    h: RequestHeader,
    req: Request,
    session: &Session,
) -> Result<Option<Vec<Piece>>, ProtocolError> {
    let (k, v, c) = (h.api_key, h.api_version, h.correlation_id);
    let listener = session.listener.name.as_str();
    let may = |op: Op, rt: Rt, n: &str| session.may(shard, op, rt, n);
    let cluster = |op: Op| session.may(shard, op, Rt::Cluster, CLUSTER);
    let groups = &shard.groups;
    let bytes = match req {
        Request::JoinGroup(r) => {
            if !may(Op::Read, Rt::Group, &r.group_id) {
                let resp = JoinGroupResponse::default()
                    .with_error_code(GROUP_DENIED)
                    .with_generation_id(-1);
                encode_response(k, v, c, &resp)?
            } else {
                let client = h.client_id.as_deref().unwrap_or("");
                let host = format!("/{}", session.peer.ip());
                encode_response(k, v, c, &groups.join(r, client, &host, v).await)?
            }
        }
        Request::SyncGroup(r) => {
            if !may(Op::Read, Rt::Group, &r.group_id) {
                encode_response(
                    k,
                    v,
                    c,
                    &SyncGroupResponse::default().with_error_code(GROUP_DENIED),
                )?
            } else {
                encode_response(k, v, c, &groups.sync(r).await)?
            }
        }
        Request::Heartbeat(r) => {
            if !may(Op::Read, Rt::Group, &r.group_id) {
                encode_response(
                    k,
                    v,
                    c,
                    &HeartbeatResponse::default().with_error_code(GROUP_DENIED),
                )?
            } else {
                encode_response(k, v, c, &groups.heartbeat(r))?
            }
        }
        Request::LeaveGroup(r) => {
            if !may(Op::Read, Rt::Group, &r.group_id) {
                encode_response(
                    k,
                    v,
                    c,
                    &LeaveGroupResponse::default().with_error_code(GROUP_DENIED),
                )?
            } else {
                encode_response(k, v, c, &groups.leave(r, v))?
            }
        }
        Request::OffsetCommit(mut r) => {
            // READ on the group, then READ on each topic.
            let group_ok = may(Op::Read, Rt::Group, &r.group_id);
            let mut denied = Vec::new();
            r.topics.retain(|(t, parts)| {
                let ok = group_ok && may(Op::Read, Rt::Topic, t);
                if !ok {
                    denied.push((
                        t.clone(),
                        parts.iter().map(|p| p.partition).collect::<Vec<_>>(),
                    ));
                }
                ok
            });
            let mut resp = if r.topics.is_empty() && !denied.is_empty() {
                OffsetCommitResponse::default()
            } else {
                groups.commit(r).await
            };
            let code = if group_ok { TOPIC_DENIED } else { GROUP_DENIED };
            for (t, parts) in denied {
                resp.topics.push(
                    offset_commit_response::OffsetCommitResponseTopic::default()
                        .with_name(name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    offset_commit_response::OffsetCommitResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect(),
                        ),
                );
            }
            crate::protocol::legacy::offset_commit(k, v, c, &resp)?
        }
        Request::OffsetFetch(r) => {
            let denied_groups: Vec<String> = r
                .groups
                .iter()
                .filter(|(g, _)| !may(Op::Describe, Rt::Group, g))
                .map(|(g, _)| g.clone())
                .collect();
            let mut resp = groups.fetch_offsets(r, v);
            // Denied groups answer GROUP_AUTHORIZATION_FAILED with nothing in them; topics
            // without DESCRIBE are left out.
            for g in resp.groups.iter_mut() {
                if denied_groups
                    .iter()
                    .any(|d| d.as_str() == g.group_id.0.as_str())
                {
                    g.topics.clear();
                    g.error_code = GROUP_DENIED;
                } else {
                    g.topics
                        .retain(|t| may(Op::Describe, Rt::Topic, t.name.0.as_str()));
                }
            }
            if v < 8 {
                if !denied_groups.is_empty() {
                    resp.topics.clear();
                    resp.error_code = GROUP_DENIED;
                } else {
                    resp.topics
                        .retain(|t| may(Op::Describe, Rt::Topic, t.name.0.as_str()));
                }
            }
            encode_response(k, v, c, &resp)?
        }
        Request::ListGroups(r) => {
            let mut resp = groups.list(r);
            if !cluster(Op::Describe) {
                resp.groups
                    .retain(|g| may(Op::Describe, Rt::Group, g.group_id.0.as_str()));
            }
            encode_response(k, v, c, &resp)?
        }
        Request::DescribeGroups(mut r) => {
            let mut denied = Vec::new();
            r.groups.retain(|g| {
                let ok = may(Op::Describe, Rt::Group, g);
                if !ok {
                    denied.push(g.clone());
                }
                ok
            });
            let mut resp = groups.describe(r);
            for g in denied {
                resp.groups.push(
                    describe_groups_response::DescribedGroup::default()
                        .with_group_id(GroupId(StrBytes::from_string(g)))
                        .with_error_code(GROUP_DENIED),
                );
            }
            encode_response(k, v, c, &resp)?
        }
        Request::DeleteGroups(mut r) => {
            let mut denied = Vec::new();
            r.groups.retain(|g| {
                let ok = may(Op::Delete, Rt::Group, g);
                if !ok {
                    denied.push(g.clone());
                }
                ok
            });
            let mut resp = groups.delete(r).await;
            for g in denied {
                resp.results.push(
                    delete_groups_response::DeletableGroupResult::default()
                        .with_group_id(GroupId(StrBytes::from_string(g)))
                        .with_error_code(GROUP_DENIED),
                );
            }
            encode_response(k, v, c, &resp)?
        }
        Request::OffsetDelete(r) => {
            if !may(Op::Delete, Rt::Group, &r.group_id) {
                encode_response(
                    k,
                    v,
                    c,
                    &OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
                )?
            } else {
                let mut resp = groups.delete_offsets(r).await;
                for t in resp.topics.iter_mut() {
                    if !may(Op::Read, Rt::Topic, t.name.0.as_str()) {
                        for p in t.partitions.iter_mut() {
                            p.error_code = TOPIC_DENIED;
                        }
                    }
                }
                encode_response(k, v, c, &resp)?
            }
        }
        Request::FindCoordinator(r) => {
            let mut resp = find_coordinator::handle(shard, r.clone(), v, listener);
            // Group keys need DESCRIBE on the group.
            if r.key_type == 0 {
                for co in resp.coordinators.iter_mut() {
                    if !may(Op::Describe, Rt::Group, co.key.as_str()) {
                        *co = find_coordinator_response::Coordinator::default()
                            .with_key(co.key.clone())
                            .with_error_code(GROUP_DENIED)
                            .with_node_id(BrokerId(-1))
                            .with_port(-1);
                    }
                }
                if v < 4
                    && !r
                        .keys
                        .first()
                        .is_none_or(|g| may(Op::Describe, Rt::Group, g))
                {
                    resp = FindCoordinatorResponse::default()
                        .with_error_code(GROUP_DENIED)
                        .with_node_id(BrokerId(-1))
                        .with_port(-1);
                }
            }
            encode_response(k, v, c, &resp)?
        }
        _ => return Err(ProtocolError::Unsupported { key: k, version: v }),
    };
    Ok(Some(vec![Piece::Bytes(bytes)]))
}
