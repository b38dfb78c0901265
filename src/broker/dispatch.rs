//! Runs one decoded request: authorizes it (Kafka's checks per API, KafkaApis.scala), calls
//! its handler, and encodes the answer.
//!
//! Invariant: no handler runs for a resource the connection's principal may not use. A
//! request naming several resources is split: the denied ones are taken out before the
//! handler runs and answered with Kafka's error (TOPIC_, GROUP_ or
//! CLUSTER_AUTHORIZATION_FAILED), the rest served. Without an authorizer every check
//! passes at the cost of one branch.

use std::rc::Rc;

use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::authn::Session;
use super::shard::Shard;
use super::splice::Piece;
use super::{acls, admin, fetch, list_offsets, metadata, produce, producer_id, users};
use crate::protocol::{self, encode_response, ProtocolError, Request, RequestHeader};
use crate::security::acl::{Operation as Op, ResourceType as Rt};

pub(super) const TOPIC_DENIED: i16 = 29;
pub(super) const GROUP_DENIED: i16 = 30;
pub(super) const CLUSTER_DENIED: i16 = 31;
pub(super) const TXN_DENIED: i16 = 53;
pub(super) const CLUSTER: &str = "kafka-cluster";
/// DescribeConfigs/AlterConfigs resource types.
const CONFIG_TOPIC: i8 = 2;

pub(super) fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Topics of a Produce request the principal may not WRITE (or all of them, when it may not
/// WRITE the request's transactional id): taken out, answered by [`deny_produce`] with the
/// code.
pub fn authorize_produce(
    shard: &Shard,
    session: &Session,
    mut req: protocol::ProduceRequest,
) -> (protocol::ProduceRequest, Vec<(String, Vec<i32>, i16)>) {
    let mut denied = Vec::new();
    let txn_ok = req
        .transactional_id
        .as_deref()
        .is_none_or(|id| session.may(shard, Op::Write, Rt::TransactionalId, id));
    req.topics.retain(|t| {
        let code = if !txn_ok {
            TXN_DENIED
        } else if !session.may(shard, Op::Write, Rt::Topic, &t.name) {
            TOPIC_DENIED
        } else {
            return true;
        };
        denied.push((
            t.name.clone(),
            t.partitions.iter().map(|p| p.index).collect(),
            code,
        ));
        false
    });
    (req, denied)
}

pub fn deny_produce(resp: &mut ProduceResponse, denied: Vec<(String, Vec<i32>, i16)>) {
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };
    for (t, parts, code) in denied {
        let mut r = TopicProduceResponse::default();
        r.name = name(&t);
        r.partition_responses = parts
            .into_iter()
            .map(|p| {
                PartitionProduceResponse::default()
                    .with_index(p)
                    .with_error_code(code)
                    .with_base_offset(-1)
                    .with_log_append_time_ms(-1)
                    .with_log_start_offset(-1)
            })
            .collect();
        resp.responses.push(r);
    }
}

fn pieces(b: bytes::Bytes) -> Option<Vec<Piece>> {
    Some(vec![Piece::Bytes(b)])
}

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
    let bytes = match req {
        Request::ApiVersions => protocol::api_versions_response(v, c)?,
        Request::Metadata(mut r) => {
            // Auto-creation needs CREATE on the cluster or the topic.
            if r.allow_auto_topic_creation && !cluster(Op::Create) {
                if let Some(names) = &r.topics {
                    r.allow_auto_topic_creation =
                        names.iter().all(|n| may(Op::Create, Rt::Topic, n));
                }
            }
            let named = r.topics.is_some();
            let mut resp = metadata::handle(shard, r, listener).await;
            // Topics without DESCRIBE: dropped from a full listing; named, refused without
            // telling whether they exist.
            resp.topics.retain_mut(|t| {
                let n = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
                if may(Op::Describe, Rt::Topic, &n) {
                    return true;
                }
                *t = metadata_response::MetadataResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_error_code(TOPIC_DENIED);
                named
            });
            encode_response(k, v, c, &resp)?
        }
        Request::Produce(r) => {
            let (r, denied) = authorize_produce(shard, session, r);
            match produce::handle(shard, r, listener).await {
                Some(mut resp) => {
                    deny_produce(&mut resp, denied);
                    encode_response(k, v, c, &resp)?
                }
                None => return Ok(None),
            }
        }
        Request::Fetch(mut r) => {
            // A follower needs CLUSTER_ACTION; a consumer READ on each topic.
            let follower = r.replica_id >= 0;
            let follower_ok = follower && cluster(Op::ClusterAction);
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = if follower {
                    follower_ok
                } else {
                    may(Op::Read, Rt::Topic, &t.name)
                };
                if !ok {
                    denied.push(t.clone());
                }
                ok
            });
            let mut out = fetch::handle(shard, r).await;
            for t in denied {
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| crate::protocol::fetch_response::FetchPartitionOut {
                        partition: p.partition,
                        error: TOPIC_DENIED,
                        high_watermark: -1,
                        last_stable_offset: -1,
                        log_start_offset: -1,
                        records: crate::log::send_range::Records::Bytes(bytes::Bytes::new()),
                        diverging: None,
                        aborted: Vec::new(),
                    })
                    .collect();
                out.push((t.name, parts));
            }
            return Ok(Some(protocol::fetch_response::encode(v, c, out)));
        }
        Request::ListOffsets(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = may(Op::Describe, Rt::Topic, &t.name);
                if !ok {
                    denied.push((
                        t.name.clone(),
                        t.partitions.iter().map(|p| p.0).collect::<Vec<_>>(),
                    ));
                }
                ok
            });
            let mut resp = list_offsets::handle(shard, r).await;
            for (t, parts) in denied {
                resp.topics.push(
                    list_offsets_response::ListOffsetsTopicResponse::default()
                        .with_name(name(&t))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|p| {
                                    list_offsets_response::ListOffsetsPartitionResponse::default()
                                        .with_partition_index(p)
                                        .with_error_code(TOPIC_DENIED)
                                        .with_offset(-1)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        ),
                );
            }
            encode_response(k, v, c, &resp)?
        }
        Request::CreateTopics(mut r) => {
            let cluster_ok = cluster(Op::Create);
            let mut denied = Vec::new();
            r.topics.retain(|t| {
                let ok = cluster_ok || may(Op::Create, Rt::Topic, &t.name);
                if !ok {
                    denied.push(t.name.clone());
                }
                ok
            });
            let mut resp = admin::create_topics(shard, r).await;
            for t in denied {
                resp.topics.push(
                    create_topics_response::CreatableTopicResult::default()
                        .with_name(name(&t))
                        .with_error_code(TOPIC_DENIED)
                        .with_num_partitions(-1)
                        .with_replication_factor(-1),
                );
            }
            crate::protocol::legacy::create_topics(k, v, c, &resp)?
        }
        Request::DeleteTopics(mut r) => {
            let cat = shard.catalog();
            let mut denied = Vec::new();
            r.topics.retain(|(n, id)| {
                let topic = n.clone().or_else(|| {
                    cat.topics
                        .iter()
                        .find(|(_, m)| m.id == *id)
                        .map(|(n, _)| n.clone())
                });
                let ok = topic
                    .as_deref()
                    .is_none_or(|t| may(Op::Delete, Rt::Topic, t));
                if !ok {
                    denied.push((n.clone(), *id));
                }
                ok
            });
            let mut resp = admin::delete_topics(shard, r).await;
            for (n, id) in denied {
                resp.responses.push(
                    delete_topics_response::DeletableTopicResult::default()
                        .with_name(n.as_deref().map(name))
                        .with_topic_id(uuid::Uuid::from_bytes(id))
                        .with_error_code(TOPIC_DENIED),
                );
            }
            encode_response(k, v, c, &resp)?
        }
        Request::CreatePartitions(mut r) => {
            let mut denied = Vec::new();
            r.topics.retain(|(t, _)| {
                let ok = may(Op::Alter, Rt::Topic, t);
                if !ok {
                    denied.push(t.clone());
                }
                ok
            });
            let mut resp = admin::create_partitions(shard, r).await;
            for t in denied {
                resp.results.push(
                    create_partitions_response::CreatePartitionsTopicResult::default()
                        .with_name(name(&t))
                        .with_error_code(TOPIC_DENIED),
                );
            }
            encode_response(k, v, c, &resp)?
        }
        Request::DescribeConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|res| {
                let ok = if res.resource_type == CONFIG_TOPIC {
                    may(Op::DescribeConfigs, Rt::Topic, &res.name)
                } else {
                    cluster(Op::DescribeConfigs)
                };
                if !ok {
                    denied.push((res.resource_type, res.name.clone()));
                }
                ok
            });
            let mut resp = super::configs::describe_configs(shard, r);
            for (t, n) in denied {
                resp.results.push(
                    describe_configs_response::DescribeConfigsResult::default()
                        .with_resource_type(t)
                        .with_resource_name(StrBytes::from_string(n))
                        .with_error_code(if t == CONFIG_TOPIC {
                            TOPIC_DENIED
                        } else {
                            CLUSTER_DENIED
                        }),
                );
            }
            crate::protocol::legacy::describe_configs(k, v, c, &resp)?
        }
        Request::AlterConfigs(mut r) => {
            let mut denied = Vec::new();
            r.resources.retain(|res| {
                let ok = if res.resource_type == CONFIG_TOPIC {
                    may(Op::AlterConfigs, Rt::Topic, &res.name)
                } else {
                    cluster(Op::AlterConfigs)
                };
                if !ok {
                    denied.push((res.resource_type, res.name.clone()));
                }
                ok
            });
            let refused = |(t, n): (i8, String)| {
                alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(t)
                    .with_resource_name(StrBytes::from_string(n))
                    .with_error_code(if t == CONFIG_TOPIC {
                        TOPIC_DENIED
                    } else {
                        CLUSTER_DENIED
                    })
            };
            if r.incremental {
                let mut resp = super::configs::incremental_alter_configs(shard, r).await;
                for d in denied {
                    let x = refused(d);
                    resp.responses.push(
                        incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                            .with_resource_type(x.resource_type)
                            .with_resource_name(x.resource_name)
                            .with_error_code(x.error_code),
                    );
                }
                encode_response(k, v, c, &resp)?
            } else {
                let mut resp = super::configs::alter_configs_classic(shard, r).await;
                resp.responses.extend(denied.into_iter().map(refused));
                encode_response(k, v, c, &resp)?
            }
        }
        Request::DeleteRecords(mut r) => {
            let mut denied = Vec::new();
            r.partitions.retain(|(t, p, _)| {
                let ok = may(Op::Delete, Rt::Topic, t);
                if !ok {
                    denied.push((t.clone(), *p));
                }
                ok
            });
            let mut resp = list_offsets::delete_records(shard, r).await;
            for (t, p) in denied {
                let part = delete_records_response::DeleteRecordsPartitionResult::default()
                    .with_partition_index(p)
                    .with_low_watermark(-1)
                    .with_error_code(TOPIC_DENIED);
                match resp.topics.iter_mut().find(|x| x.name.0.as_str() == t) {
                    Some(x) => x.partitions.push(part),
                    None => resp.topics.push(
                        delete_records_response::DeleteRecordsTopicResult::default()
                            .with_name(name(&t))
                            .with_partitions(vec![part]),
                    ),
                }
            }
            encode_response(k, v, c, &resp)?
        }
        Request::OffsetForLeaderEpoch(mut r) => {
            let follower_ok = cluster(Op::ClusterAction);
            let mut denied = Vec::new();
            r.partitions.retain(|(t, p, ..)| {
                let ok = follower_ok || may(Op::Describe, Rt::Topic, t);
                if !ok {
                    denied.push((t.clone(), *p));
                }
                ok
            });
            let mut resp = crate::replication::leader::offsets_for_leader_epoch(shard, r);
            for (t, p) in denied {
                resp.topics.push(
                    offset_for_leader_epoch_response::OffsetForLeaderTopicResult::default()
                        .with_topic(name(&t))
                        .with_partitions(vec![
                            offset_for_leader_epoch_response::EpochEndOffset::default()
                                .with_partition(p)
                                .with_error_code(TOPIC_DENIED)
                                .with_leader_epoch(-1)
                                .with_end_offset(-1),
                        ]),
                );
            }
            encode_response(k, v, c, &resp)?
        }
        Request::AlterReassignments(r) => {
            if !cluster(Op::Alter) {
                let resp =
                    AlterPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED);
                encode_response(k, v, c, &resp)?
            } else {
                encode_response(k, v, c, &super::reassign::alter(shard, r).await)?
            }
        }
        Request::DescribeLogDirs(r) => {
            // Kafka's rule: DESCRIBE on the cluster.
            let resp = if cluster(Op::Describe) {
                super::log_dirs::describe(shard, r, v)
            } else {
                DescribeLogDirsResponse::default().with_error_code(CLUSTER_DENIED)
            };
            encode_response(k, v, c, &resp)?
        }
        Request::ListReassignments(r) => {
            if !cluster(Op::Describe) {
                let resp =
                    ListPartitionReassignmentsResponse::default().with_error_code(CLUSTER_DENIED);
                encode_response(k, v, c, &resp)?
            } else {
                encode_response(k, v, c, &super::reassign::list(shard, r))?
            }
        }
        r @ (Request::AddPartitionsToTxn(_)
        | Request::AddOffsetsToTxn(_)
        | Request::EndTxn(_)
        | Request::TxnOffsetCommit(_)
        | Request::DescribeProducers(_)
        | Request::DescribeTransactions(_)
        | Request::ListTransactions(_)
        | Request::WriteTxnMarkers(_)) => {
            return super::dispatch_txn::dispatch(shard, h, r, session).await
        }
        Request::InitProducerId(r)
            if r.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) =>
        {
            return super::dispatch_txn::dispatch(shard, h, Request::InitProducerId(r), session)
                .await
        }
        Request::InitProducerId(r) => {
            // Without a transactional id: IDEMPOTENT_WRITE on the cluster, or WRITE on any topic.
            if !cluster(Op::IdempotentWrite) && !session.may_any(shard, Op::Write, Rt::Topic) {
                let resp = InitProducerIdResponse::default()
                    .with_error_code(CLUSTER_DENIED)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1);
                encode_response(k, v, c, &resp)?
            } else {
                encode_response(k, v, c, &producer_id::handle(shard, r).await)?
            }
        }
        r @ (Request::JoinGroup(_)
        | Request::SyncGroup(_)
        | Request::Heartbeat(_)
        | Request::LeaveGroup(_)
        | Request::OffsetCommit(_)
        | Request::OffsetFetch(_)
        | Request::ListGroups(_)
        | Request::DescribeGroups(_)
        | Request::DeleteGroups(_)
        | Request::OffsetDelete(_)
        | Request::FindCoordinator(_)) => {
            return super::dispatch_groups::dispatch(shard, h, r, session).await
        }
        Request::DescribeScram(r) => {
            if !cluster(Op::Describe) {
                let resp =
                    DescribeUserScramCredentialsResponse::default().with_error_code(CLUSTER_DENIED);
                encode_response(k, v, c, &resp)?
            } else {
                encode_response(k, v, c, &users::describe(shard, r))?
            }
        }
        Request::AlterScram(r) => {
            if !cluster(Op::Alter) {
                let mut resp = AlterUserScramCredentialsResponse::default();
                let names = r
                    .deletions
                    .iter()
                    .map(|d| d.0.clone())
                    .chain(r.upsertions.iter().map(|u| u.name.clone()));
                let mut seen = std::collections::BTreeSet::new();
                for n in names.filter(|n| seen.insert(n.clone())) {
                    resp.results.push(
                        alter_user_scram_credentials_response::AlterUserScramCredentialsResult::default()
                            .with_user(StrBytes::from_string(n))
                            .with_error_code(CLUSTER_DENIED),
                    );
                }
                encode_response(k, v, c, &resp)?
            } else {
                encode_response(k, v, c, &users::alter(shard, r).await)?
            }
        }
        Request::DescribeAcls(r) => {
            if !cluster(Op::Describe) {
                encode_response(
                    k,
                    v,
                    c,
                    &DescribeAclsResponse::default().with_error_code(CLUSTER_DENIED),
                )?
            } else {
                encode_response(k, v, c, &acls::describe(shard, r))?
            }
        }
        Request::CreateAcls(r) => {
            if !cluster(Op::Alter) {
                let mut resp = CreateAclsResponse::default();
                resp.results = r
                    .creations
                    .iter()
                    .map(|_| {
                        create_acls_response::AclCreationResult::default()
                            .with_error_code(CLUSTER_DENIED)
                    })
                    .collect();
                encode_response(k, v, c, &resp)?
            } else {
                encode_response(k, v, c, &acls::create(shard, r).await)?
            }
        }
        Request::DeleteAcls(r) => {
            if !cluster(Op::Alter) {
                let mut resp = DeleteAclsResponse::default();
                resp.filter_results = r
                    .filters
                    .iter()
                    .map(|_| {
                        delete_acls_response::DeleteAclsFilterResult::default()
                            .with_error_code(CLUSTER_DENIED)
                    })
                    .collect();
                encode_response(k, v, c, &resp)?
            } else {
                encode_response(k, v, c, &acls::delete(shard, r).await)?
            }
        }
        // Answered by the connection itself (they change its session).
        Request::SaslHandshake(_) | Request::SaslAuthenticate(_) => {
            return Err(ProtocolError::Unsupported { key: k, version: v })
        }
    };
    Ok(pieces(bytes))
}
