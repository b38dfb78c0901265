//! The console's JSON API: each call is answered with the admin client the CLI uses,
//! speaking the Kafka protocol to this broker's own listener, on a blocking thread.
//!
//! Invariant: every list is bounded (pages of topics, a capped number of messages) and
//! every input is checked before it reaches the broker; a failure is a JSON error with a
//! message, never a panic.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::admin::batch::{InRecord, OutRecord};
use crate::admin::client::Client;
use crate::admin::topic::{metadata, offsets};
use crate::admin::{configs, consume, group, produce, topic};

/// Topics per page, at most.
pub const MAX_PAGE: usize = 200;
/// Messages one view shows, at most.
pub const MAX_MESSAGES: usize = 500;
/// Partitions one topic view lists (more are paged with `first`).
pub const MAX_PARTITIONS: usize = 1000;

/// A request the API answers: method, path below `/api/`, query pairs, body.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: BTreeMap<String, String>,
    pub body: &'a [u8],
    /// The broker's lag samples of each group (the group page's past).
    pub history: Option<&'a super::lag_history::LagHistory>,
}

impl Call<'_> {
    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    fn num<T: std::str::FromStr>(&self, k: &str) -> Result<Option<T>> {
        match self.q(k) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| anyhow::anyhow!("{k}={v:?} is not a number")),
        }
    }
}

/// The answer: HTTP status and JSON body. `writable` is false in read-only mode.
pub fn answer(bootstrap: &str, call: &Call<'_>, writable: bool) -> (u16, Value) {
    let writes = matches!(call.method, "POST" | "DELETE");
    if writes && !writable {
        return (
            403,
            json!({"error": "the console is read-only (ui = read-only)"}),
        );
    }
    match route(bootstrap, call) {
        Ok(Some(v)) => (200, v),
        Ok(None) => (404, json!({"error": "no such API"})),
        // The login the browser sent was refused by the broker: ask again.
        Err(e) if format!("{e:#}").contains("SASL authentication") => {
            (401, json!({"error": format!("{e:#}")}))
        }
        Err(e) => (400, json!({"error": format!("{e:#}")})),
    }
}

fn route(bootstrap: &str, call: &Call<'_>) -> Result<Option<Value>> {
    let parts: Vec<&str> = call.path.split('/').filter(|p| !p.is_empty()).collect();
    Ok(Some(match (call.method, parts.as_slice()) {
        ("GET", ["cluster"]) => cluster(bootstrap)?,
        ("GET", ["topics"]) => topics(bootstrap, call)?,
        ("POST", ["topics"]) => create_topic(bootstrap, call)?,
        ("GET", ["topics", name]) => topic_view(bootstrap, name, call)?,
        ("DELETE", ["topics", name]) => {
            topic::delete_topic(bootstrap, name)?;
            json!({"deleted": name})
        }
        ("GET", ["topics", name, "messages"]) => messages(bootstrap, name, call)?,
        ("POST", ["topics", name, "messages"]) => produce_message(bootstrap, name, call)?,
        ("GET", ["groups"]) => {
            let groups: Vec<Value> = group::list_groups(bootstrap)?
                .into_iter()
                .map(|(g, st)| json!({"group": g, "state": st}))
                .collect();
            json!({ "groups": groups })
        }
        ("GET", ["groups", name]) => {
            let s = group::snapshot(bootstrap, name)?;
            let rows: Vec<Value> = s
                .rows
                .iter()
                .map(|r| {
                    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
                    v["lag"] = r.lag().map_or(Value::Null, Value::from);
                    v
                })
                .collect();
            let history = call.history.map(|h| h.samples(name)).unwrap_or_default();
            json!({"group": name, "state": s.state, "protocol": s.protocol,
                   "members": s.members, "partitions": rows, "at": crate::log::now_ms(),
                   "history": history})
        }
        _ => return Ok(None),
    }))
}

fn cluster(bootstrap: &str) -> Result<Value> {
    let mut c = Client::connect(bootstrap)?;
    let md = metadata(&mut c, None)?;
    let mut per_broker: BTreeMap<i32, usize> = BTreeMap::new();
    let mut partitions = 0;
    for t in &md.topics {
        for p in &t.partitions {
            partitions += 1;
            *per_broker.entry(p.leader_id.0).or_default() += 1;
        }
    }
    let leaderless = per_broker.get(&-1).copied().unwrap_or(0);
    let sizes = topic::partition_sizes(bootstrap)?;
    let bytes = |id: i32| -> i64 { sizes.get(&id).map_or(0, |m| m.values().sum()) };
    let brokers: Vec<Value> = md
        .brokers
        .iter()
        .map(|b| {
            json!({"id": b.node_id.0, "host": b.host.to_string(), "port": b.port,
                   "rack": b.rack.as_ref().map(|r| r.to_string()),
                   "leads": per_broker.get(&b.node_id.0).copied().unwrap_or(0),
                   "bytes": bytes(b.node_id.0)})
        })
        .collect();
    Ok(json!({
        "cluster_id": md.cluster_id.as_ref().map(|c| c.to_string()),
        "controller": md.controller_id.0,
        "brokers": brokers,
        "topics": md.topics.len(),
        "partitions": partitions,
        "leaderless_partitions": leaderless,
        "health": if leaderless == 0 { "ok" } else { "degraded" },
    }))
}

fn topics(bootstrap: &str, call: &Call<'_>) -> Result<Value> {
    let search = call.q("search").unwrap_or("").to_lowercase();
    let page: usize = call.num("page")?.unwrap_or(0);
    let size: usize = call.num::<usize>("size")?.unwrap_or(50).clamp(1, MAX_PAGE);
    let mut c = Client::connect(bootstrap)?;
    let md = metadata(&mut c, None)?;
    let mut rows: Vec<(String, usize, bool)> = md
        .topics
        .iter()
        .filter_map(|t| {
            let n = t.name.as_ref()?.to_string();
            n.to_lowercase()
                .contains(&search)
                .then_some((n, t.partitions.len(), t.is_internal))
        })
        .collect();
    rows.sort();
    let total = rows.len();
    let shown: Vec<Value> = rows
        .into_iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .map(|(n, p, internal)| json!({"name": n, "partitions": p, "internal": internal}))
        .collect();
    Ok(json!({"total": total, "page": page, "size": size, "topics": shown}))
}

fn create_topic(bootstrap: &str, call: &Call<'_>) -> Result<Value> {
    let v: Value = serde_json::from_slice(call.body).context("the body is not JSON")?;
    let name = v["name"].as_str().context("a topic needs a name")?;
    let partitions = v["partitions"].as_i64().unwrap_or(1);
    if !(1..=100_000).contains(&partitions) {
        bail!("partitions must be between 1 and 100000");
    }
    let rf = v["replication_factor"].as_i64().unwrap_or(-1);
    topic::create_topic(
        bootstrap,
        name,
        partitions as i32,
        rf.clamp(-1, 16) as i16,
        &[],
    )?;
    Ok(json!({"created": name}))
}

fn topic_view(bootstrap: &str, name: &str, call: &Call<'_>) -> Result<Value> {
    let first: usize = call.num("first")?.unwrap_or(0);
    let mut c = Client::connect(bootstrap)?;
    let md = metadata(&mut c, Some(vec![name.to_string()]))?;
    let t = md.topics.first().context("no metadata")?;
    match t.error_code {
        0 => {}
        3 => bail!("topic {name} does not exist"),
        code => bail!("topic {name}: error {code}"),
    }
    let mut parts: Vec<&kafka_protocol::messages::metadata_response::MetadataResponsePartition> =
        t.partitions.iter().collect();
    parts.sort_by_key(|p| p.partition_index);
    let total = parts.len();
    let page: Vec<_> = parts.into_iter().skip(first).take(MAX_PARTITIONS).collect();
    let leaders: Vec<(i32, i32)> = page
        .iter()
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect();
    let earliest = offsets(&md, name, &leaders, -2)?;
    let latest = offsets(&md, name, &leaders, -1)?;
    let sizes = topic::partition_sizes(bootstrap)?;
    let size = |p: i32, leader: i32| -> i64 {
        sizes
            .get(&leader)
            .and_then(|m| m.get(&(name.to_string(), p)))
            .copied()
            .unwrap_or(-1)
    };
    let rows: Vec<Value> = page
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids = |v: &[kafka_protocol::messages::BrokerId]| -> Vec<i32> {
                v.iter().map(|b| b.0).collect()
            };
            json!({"partition": p.partition_index, "leader": p.leader_id.0,
                   "earliest": earliest.get(i).map_or(-1, |x| x.1),
                   "latest": latest.get(i).map_or(-1, |x| x.1),
                   "size": size(p.partition_index, p.leader_id.0),
                   "replicas": ids(&p.replica_nodes), "isr": ids(&p.isr_nodes)})
        })
        .collect();
    let configs: Vec<Value> = configs::topic_configs(bootstrap, name)?
        .into_iter()
        .map(|(k, v, src)| json!({"name": k, "value": v, "source": src}))
        .collect();
    Ok(
        json!({"name": name, "internal": t.is_internal, "total_partitions": total,
              "first": first, "partitions": rows, "configs": configs}),
    )
}

fn record_json(r: &InRecord) -> Value {
    let show = |b: &Option<Vec<u8>>| -> Value {
        match b.as_deref() {
            None => Value::Null,
            Some(v) => json!({
                "text": std::str::from_utf8(v).ok(),
                "hex": v.iter().map(|x| format!("{x:02x}")).collect::<String>(),
            }),
        }
    };
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v.as_deref().map(|v| String::from_utf8_lossy(v).into_owned())}))
        .collect();
    json!({"offset": r.offset, "timestamp": r.timestamp, "key": show(&r.key),
           "value": show(&r.value), "headers": headers})
}

fn messages(bootstrap: &str, name: &str, call: &Call<'_>) -> Result<Value> {
    let partition: i32 = call.num("partition")?.unwrap_or(0);
    let limit: usize = call
        .num::<usize>("limit")?
        .unwrap_or(50)
        .clamp(1, MAX_MESSAGES);
    let offset: Option<i64> = match (call.num::<i64>("offset")?, call.q("time")) {
        (Some(o), _) => Some(o),
        (None, Some(t)) if !t.is_empty() => {
            let ms = crate::admin::format::parse_time(t)?;
            let mut c = Client::connect(bootstrap)?;
            let md = metadata(&mut c, Some(vec![name.to_string()]))?;
            let leader = md
                .topics
                .first()
                .and_then(|t| t.partitions.iter().find(|p| p.partition_index == partition))
                .map(|p| p.leader_id.0)
                .context("no such partition")?;
            let at = offsets(&md, name, &[(partition, leader)], ms)?;
            at.first().map(|x| x.1).filter(|o| *o >= 0)
        }
        _ => None,
    };
    let (records, earliest, latest) =
        consume::read_range(bootstrap, name, partition, offset, limit)?;
    let rows: Vec<Value> = records.iter().map(record_json).collect();
    Ok(
        json!({"topic": name, "partition": partition, "earliest": earliest,
              "latest": latest, "messages": rows}),
    )
}

fn produce_message(bootstrap: &str, name: &str, call: &Call<'_>) -> Result<Value> {
    let v: Value = serde_json::from_slice(call.body).context("the body is not JSON")?;
    let text = |k: &str| v[k].as_str().map(|s| s.as_bytes().to_vec());
    let headers = v["headers"]
        .as_object()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.clone(), v.as_str().map(|s| s.as_bytes().to_vec())))
                .collect()
        })
        .unwrap_or_default();
    let partition = match &v["partition"] {
        Value::Null => None,
        p => Some(i32::try_from(p.as_i64().context("partition is a number")?)?),
    };
    let record = OutRecord {
        key: text("key").filter(|k| !k.is_empty()),
        value: text("value"),
        headers,
    };
    let (p, offset) = produce::produce_one(bootstrap, name, partition, record)?;
    Ok(json!({"topic": name, "partition": p, "offset": offset}))
}
