//! `shardlog cluster info`: the cluster as one node sees it (its `/v1/cluster` view), as a
//! table: nodes with their addresses, shards, rack, epoch, partitions and state, the
//! controller and the quorum. `cluster decommission` and `cluster unregister` ask a node's
//! HTTP port to propose the change to the quorum.

use std::io::{Read, Write};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// Sends `METHOD path` to the node's HTTP address: its JSON answer, or the error it names.
fn call(http: &str, method: &str, path: &str) -> Result<Value> {
    let mut s = super::client::connect_http(http)?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {http}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    s.flush()?;
    let mut resp = Vec::new();
    // A TLS peer closing without close_notify ends the answer too (Connection: close).
    if let Err(e) = s.take(16 << 20).read_to_end(&mut resp) {
        if resp.is_empty() {
            return Err(e.into());
        }
    }
    let text = String::from_utf8_lossy(&resp);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("{http} sent no HTTP response");
    };
    let value: Option<Value> = serde_json::from_str(body).ok();
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or_default();
        match value.as_ref().and_then(|v| v["error"].as_str()) {
            Some(why) => bail!("{why} ({status})"),
            None => bail!("{http} answered {status}"),
        }
    }
    value.with_context(|| format!("{http} sent an unreadable answer"))
}

fn fetch(http: &str) -> Result<Value> {
    call(http, "GET", "/v1/cluster")
}

/// Starts (or with `cancel`, ends) decommissioning node `node`.
pub fn decommission(http: &str, node: u64, cancel: bool) -> Result<()> {
    let method = if cancel { "DELETE" } else { "POST" };
    let v = call(
        http,
        method,
        &format!("/v1/cluster/nodes/{node}/decommission"),
    )?;
    let held = v["partitions"].as_u64().unwrap_or(0);
    if cancel {
        println!("node {node} is no longer being decommissioned");
    } else {
        println!("node {node} is being decommissioned: no new partitions or coordinators go to it");
        if held > 0 {
            println!(
                "it still holds {held} partition(s); the controller moves them to other nodes: once it holds none, stop it and `shardlog cluster unregister {node}`"
            );
        } else {
            println!("it holds no partitions: stop it, then `shardlog cluster unregister {node}`");
        }
    }
    Ok(())
}

/// Removes stopped, empty node `node` from the cluster.
pub fn unregister(http: &str, node: u64) -> Result<()> {
    call(http, "DELETE", &format!("/v1/cluster/nodes/{node}"))?;
    println!("node {node} unregistered");
    Ok(())
}

/// Prints the cluster view of the node at `http`.
pub fn info(http: &str) -> Result<()> {
    let v = fetch(http)?;
    let voters = v["voters"].as_array().cloned().unwrap_or_default();
    if voters.is_empty() {
        println!("single node (no controller.quorum.voters): no metadata quorum");
        return Ok(());
    }
    let controller = v["controller"]
        .as_u64()
        .map_or("none (election under way)".to_string(), |c| c.to_string());
    println!(
        "node {} ({}), controller {controller}, term {}, metadata log {} applied {}",
        v["node_id"],
        v["role"].as_str().unwrap_or("?"),
        v["term"],
        v["last_log_index"],
        v["applied_index"]
    );
    let voter_list: Vec<String> = voters.iter().map(|x| x.to_string()).collect();
    println!("voters: {}", voter_list.join(", "));
    if let Some(lag) = v["voter_lag"].as_object().filter(|l| !l.is_empty()) {
        let parts: Vec<String> = lag.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        println!("voter lag (entries): {}", parts.join(", "));
    }
    // Replicas and leaders (the internal offsets log included) per node.
    let mut per_node: std::collections::BTreeMap<u64, usize> = Default::default();
    let mut leaders: std::collections::BTreeMap<u64, usize> = Default::default();
    for t in v["image"]["topics"]
        .as_object()
        .map(|m| m.values().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
    {
        for p in t["partitions"].as_array().cloned().unwrap_or_default() {
            for r in p["replicas"].as_array().cloned().unwrap_or_default() {
                *per_node.entry(r["node"].as_u64().unwrap_or(0)).or_default() += 1;
            }
            if let Some(l) = p["leader"].as_u64() {
                *leaders.entry(l).or_default() += 1;
            }
        }
    }
    println!(
        "{:>6}  {:<22} {:>6}  {:<10} {:>6}  {:>10}  {:>7}  {:<7}",
        "NODE", "KAFKA", "SHARDS", "RACK", "EPOCH", "PARTITIONS", "LEADERS", "STATE"
    );
    for (_, n) in v["image"]["nodes"].as_object().cloned().unwrap_or_default() {
        let r = &n["registration"];
        let id = r["id"].as_u64().unwrap_or(0);
        let partitions = per_node.get(&id).copied().unwrap_or(0);
        let led = leaders.get(&id).copied().unwrap_or(0);
        println!(
            "{:>6}  {:<22} {:>6}  {:<10} {:>6}  {:>10}  {:>7}  {:<7}",
            r["id"],
            format!("{}:{}", r["host"].as_str().unwrap_or("?"), r["kafka_port"]),
            r["shards"],
            r["rack"].as_str().unwrap_or("?"),
            n["epoch"],
            partitions,
            led,
            match (
                n["fenced"].as_bool().unwrap_or(false),
                n["draining"].as_bool().unwrap_or(false),
            ) {
                (true, false) => "fenced",
                (true, true) => "fenced,draining",
                (false, true) => "draining",
                (false, false) => "live",
            }
        );
    }
    Ok(())
}
