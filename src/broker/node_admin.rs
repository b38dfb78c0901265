//! Node membership operations on the HTTP port, for `shardlog cluster decommission` and
//! `shardlog cluster unregister`: each is one command proposed to the metadata quorum.
//!
//! - `POST /v1/cluster/nodes/{id}/decommission` marks the node draining: no new partitions
//!   or coordinators are placed on it. (Moving the partitions it holds needs their data
//!   copied: that is replication's reassignment; until then they stay.)
//! - `DELETE /v1/cluster/nodes/{id}/decommission` cancels it.
//! - `DELETE /v1/cluster/nodes/{id}` unregisters a stopped node that holds no partitions;
//!   a broker-only node also stops receiving the metadata log.
//!
//! Invariant: nothing here changes state itself; the quorum decides, and refuses what would
//! strand data (a running node, a node still holding partitions, a voter).

use std::rc::Rc;
use std::time::Duration;

use serde_json::json;

use super::shard::Shard;
use crate::cluster::state::{Command, NodeId, Outcome};

const DEADLINE: Duration = Duration::from_secs(10);

/// An HTTP answer: status line, body (JSON).
pub type Answer = (&'static str, String);

/// Answers a request under `/v1/cluster/nodes/`; `None` when the path is not one of ours.
pub async fn handle(shard: &Rc<Shard>, method: &str, path: &str) -> Option<Answer> {
    let rest = path.strip_prefix("/v1/cluster/nodes/")?;
    let (id, action) = match rest.split_once('/') {
        Some((id, a)) => (id, a),
        None => (rest, ""),
    };
    let id: NodeId = id.parse().ok()?;
    let cmd = match (method, action) {
        ("POST", "decommission") => Command::SetDraining { id, draining: true },
        ("DELETE", "decommission") => Command::SetDraining {
            id,
            draining: false,
        },
        ("DELETE", "") => Command::Unregister { id },
        _ => return None,
    };
    Some(propose(shard, id, cmd).await)
}

fn error(status: &'static str, msg: String) -> Answer {
    (status, json!({ "error": msg }).to_string() + "\n")
}

async fn propose(shard: &Rc<Shard>, id: NodeId, cmd: Command) -> Answer {
    let Some(proposer) = shard.proposer.as_ref() else {
        return error(
            "400 Bad Request",
            "not in a cluster (no controller.quorum.voters)".into(),
        );
    };
    let unregister = matches!(cmd, Command::Unregister { .. });
    if unregister && shard.cluster.get().voters.contains(&id) {
        return error(
            "409 Conflict",
            format!("node {id} is a voter of the metadata quorum; voters do not leave while the quorum runs (only broker-only nodes can be unregistered)"),
        );
    }
    let what = format!("{cmd:?}");
    match proposer.propose(cmd, DEADLINE).await {
        Ok(Outcome::Done) => {
            tracing::info!(node = id, "{what} committed");
            let view = shard.cluster.get();
            let held = view.image.partitions_of(id);
            let body = json!({
                "node": id,
                "registered": view.image.nodes.contains_key(&id),
                "draining": view.image.nodes.get(&id).is_some_and(|n| n.draining),
                "partitions": held.len(),
                "some_partitions": held.iter().take(20).collect::<Vec<_>>(),
            });
            ("200 OK", body.to_string() + "\n")
        }
        Ok(Outcome::NoSuchNode) => error("404 Not Found", format!("no node {id} is registered")),
        Ok(Outcome::Refused(why)) => error("409 Conflict", why),
        Ok(other) => error("500 Internal Server Error", format!("{other:?}")),
        Err(e) => error("503 Service Unavailable", e),
    }
}
