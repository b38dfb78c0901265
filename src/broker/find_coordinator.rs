//! FindCoordinator: which shard (advertised broker) coordinates a consumer group or a
//! transactional id. Groups are placed by a stable hash of the group id onto the
//! partitions of `__consumer_offsets`, transactional ids (key type 1) onto those of
//! `__transaction_state`; the coordinator is the shard owning (in a cluster: leading) that
//! partition. In a cluster the first lookup has the quorum create the internal topic.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::BrokerId;
use kafka_protocol::protocol::StrBytes;

use super::catalog::Catalog;
use super::shard::Shard;
use crate::protocol::FindCoordinatorRequest;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const INVALID_REQUEST: i16 = 42;

/// The shard that coordinates `group`: the owner of its offsets partition.
pub fn group_shard(group: &str, shards: usize) -> usize {
    Catalog::owner(
        crate::group::OFFSETS_TOPIC,
        crate::group::offsets_partition(group),
        shards,
    )
}

/// Where the coordinator of `key` is, as (broker id, host, port), or why not.
fn locate(
    shard: &Rc<Shard>,
    key_type: i8,
    key: &str,
    listener: &str,
) -> Result<(i32, String, u16), &'static str> {
    if key_type != GROUP && key_type != TRANSACTION {
        return Err("unknown coordinator key type");
    }
    if key_type == TRANSACTION && key.is_empty() {
        return Err("a transactional id is not empty");
    }
    let cat = shard.catalog();
    let Some(cm) = cat.cluster.as_ref().filter(|_| shard.proposer.is_some()) else {
        // One node: the shard owning the key's partition of the internal log.
        let node = if key_type == GROUP {
            group_shard(key, shard.nshards)
        } else {
            Catalog::owner(
                crate::txn::TXN_TOPIC,
                crate::txn::txn_partition(key),
                shard.nshards,
            )
        };
        return Ok(
            super::metadata::endpoint(shard, &cat, 0, node as u16, listener).unwrap_or((
                node as i32,
                String::new(),
                0,
            )),
        );
    };
    // A cluster: the shard the quorum placed the key's internal partition's leader on.
    let leader = if key_type == GROUP {
        cm.groups
            .get(crate::group::offsets_partition(key) as usize)
            .copied()
    } else {
        cat.place(crate::txn::TXN_TOPIC, crate::txn::txn_partition(key))
            .and_then(|p| p.leader_replica())
    };
    let at = leader.and_then(|(node, s)| {
        cm.broker_on(node, s, listener)
            .map(|(id, host, port)| (id, host.to_string(), port))
    });
    match at {
        Some(at) => Ok(at),
        None if key_type == GROUP => {
            if cm.groups.is_empty() {
                super::cluster_link::request_group_placement(shard);
            }
            Err("the group coordinator is not available yet")
        }
        None => {
            if !cat.topics.contains_key(crate::txn::TXN_TOPIC) {
                super::cluster_link::request_txn_placement(shard);
            }
            Err("the transaction coordinator is not available yet")
        }
    }
}

pub fn handle(
    shard: &Rc<Shard>,
    req: FindCoordinatorRequest,
    version: i16,
    listener: &str,
) -> FindCoordinatorResponse {
    let answer = |key: &str| {
        let mut c = Coordinator::default();
        c.key = StrBytes::from_string(key.to_string());
        match locate(shard, req.key_type, key, listener) {
            Ok((id, host, port)) => {
                c.node_id = BrokerId(id);
                c.host = StrBytes::from_string(host);
                c.port = i32::from(port);
            }
            Err(why) => {
                c.error_code = if req.key_type == GROUP || req.key_type == TRANSACTION {
                    COORDINATOR_NOT_AVAILABLE
                } else {
                    INVALID_REQUEST
                };
                c.error_message = Some(StrBytes::from_static_str(why));
                c.node_id = BrokerId(-1);
                c.port = -1;
            }
        }
        c
    };
    let mut resp = FindCoordinatorResponse::default();
    if version >= 4 {
        resp.coordinators = req.keys.iter().map(|k| answer(k)).collect();
    } else {
        let c = answer(req.keys.first().map(String::as_str).unwrap_or(""));
        resp.error_code = c.error_code;
        resp.error_message = c.error_message;
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    resp
}
