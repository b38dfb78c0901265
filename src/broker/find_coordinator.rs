//! FindCoordinator: which shard (advertised broker) coordinates a consumer group or a transactional id. Groups are
//! placed on shards by a stable hash of the group id, like partitions; transactional ids
//! (key type 1) likewise, on the partitions of `__transaction_state`.

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

/// The shard that coordinates `group`: the owner of its offsets partition.
pub fn group_shard(group: &str, shards: usize) -> usize {
    Catalog::owner(
        crate::group::OFFSETS_TOPIC,
        crate::group::offsets_partition(group),
        shards,
    )
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
        if req.key_type == GROUP && shard.proposer.is_some() {
            // In a cluster: the shard the quorum placed the group's offsets partition on.
            let cat = shard.catalog();
            let at = cat.cluster.as_ref().and_then(|cm| {
                let (node, s) = *cm
                    .groups
                    .get(crate::group::offsets_partition(key) as usize)?;
                cm.broker_on(node, s, listener)
                    .map(|(id, host, port)| (id, host.to_string(), port))
            });
            match at {
                Some((id, host, port)) => {
                    c.node_id = BrokerId(id);
                    c.host = StrBytes::from_string(host);
                    c.port = i32::from(port);
                }
                None => {
                    if cat.cluster.as_ref().is_some_and(|cm| cm.groups.is_empty()) {
                        super::cluster_link::request_group_placement(shard);
                    }
                    c.error_code = COORDINATOR_NOT_AVAILABLE;
                    c.error_message = Some(StrBytes::from_static_str(
                        "the group coordinator is not available yet",
                    ));
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
            }
        } else if req.key_type == GROUP
            || (req.key_type == TRANSACTION && !key.is_empty() && shard.proposer.is_none())
        {
            let node = if req.key_type == GROUP {
                group_shard(key, shard.nshards)
            } else {
                Catalog::owner(
                    crate::txn::TXN_TOPIC,
                    crate::txn::txn_partition(key),
                    shard.nshards,
                )
            };
            let cat = shard.catalog();
            let (id, host, port) = super::metadata::endpoint(shard, &cat, 0, node as u16, listener)
                .unwrap_or((node as i32, String::new(), 0));
            c.node_id = BrokerId(id);
            c.host = StrBytes::from_string(host);
            c.port = i32::from(port);
        } else {
            c.error_code = COORDINATOR_NOT_AVAILABLE;
            c.error_message = Some(StrBytes::from_static_str(if req.key_type == TRANSACTION {
                "transactions are not supported in a cluster yet"
            } else {
                "unknown coordinator key type"
            }));
            c.node_id = BrokerId(-1);
            c.port = -1;
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
