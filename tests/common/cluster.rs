//! A test cluster of node processes and what tests read from its nodes' views.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http_get, Broker};

pub struct Cluster {
    pub nodes: Vec<Broker>,
    /// `controller.quorum.voters` of the cluster.
    pub voters: String,
}

impl Cluster {
    /// `n` nodes of one shard each, voters all, with a 3 s session timeout.
    pub fn start(n: usize) -> Cluster {
        let (nodes, voters) = super::start_cluster_with_voters(n, 1);
        Cluster { nodes, voters }
    }

    /// Like [`Cluster::start`], with `extra` settings (TOML lines, e.g. a key overriding
    /// the 3 s session timeout) on every node.
    pub fn start_with(n: usize, extra: &str) -> Cluster {
        let (nodes, voters) = super::start_cluster_configured(n, 1, extra);
        Cluster { nodes, voters }
    }

    /// Starts a broker-only node (not a voter) with `node.id` = `id` and `cores` shards,
    /// its controller listener on a port of its own: its index in `nodes`.
    pub fn add_broker_only(&mut self, id: u64, cores: usize) -> usize {
        let toml = format!(
            "{}\"controller.listener\" = \"127.0.0.1:{}\"\n",
            super::node_toml(id, &self.voters),
            super::pick_controller_port()
        );
        self.nodes.push(Broker::start_configured(cores, &toml, &[]));
        self.nodes.len() - 1
    }

    pub fn view(&self, i: usize) -> Option<Value> {
        let addr = self.nodes[i].metrics_addr()?;
        let (head, body) = http_get(&addr, "/v1/cluster");
        if !head.contains("200") {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// Waits (bounded) until `ok` holds for the views of the nodes in `which`.
    pub fn wait_for(&self, which: &[usize], what: &str, ok: impl Fn(&[Value]) -> bool) -> Duration {
        let start = Instant::now();
        // Bounded by the deadline.
        while start.elapsed() < Duration::from_secs(30) {
            let views: Vec<Value> = which.iter().filter_map(|i| self.view(*i)).collect();
            if views.len() == which.len() && ok(&views) {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let views: Vec<Option<Value>> = which.iter().map(|i| self.view(*i)).collect();
        panic!("timed out waiting for {what}: {views:#?}");
    }
}

pub fn controller(v: &Value) -> Option<u64> {
    v["controller"].as_u64()
}

pub fn node_states(v: &Value) -> BTreeMap<u64, (bool, u64)> {
    v["image"]["nodes"]
        .as_object()
        .map(|m| {
            m.values()
                .map(|n| {
                    (
                        n["registration"]["id"].as_u64().unwrap_or(0),
                        (
                            n["fenced"].as_bool().unwrap_or(false),
                            n["epoch"].as_u64().unwrap_or(0),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn all_live(views: &[Value], n: usize) -> bool {
    views.iter().all(|v| {
        let s = node_states(v);
        s.len() == n && s.values().all(|(fenced, _)| !fenced)
    })
}

pub fn agree_on_controller(views: &[Value]) -> Option<u64> {
    let c = controller(views.first()?)?;
    views.iter().all(|v| controller(v) == Some(c)).then_some(c)
}

pub fn read_all(b: &Broker, topic: &str, partitions: i32, want: usize) -> BTreeMap<String, i32> {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::Message;
    let consumer: BaseConsumer = super::reader(b, topic, 0..partitions);
    let mut got = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Bounded by the deadline.
    while got.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            got.insert(v, m.partition());
        }
    }
    got
}

/// Polls `m` until `want` records arrived (bounded): their values, in arrival order.
pub fn poll_values(m: &rdkafka::consumer::BaseConsumer, want: usize) -> Vec<String> {
    use rdkafka::Message;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Bounded by the deadline.
    while got.len() < want && Instant::now() < deadline {
        if let Some(Ok(msg)) = m.poll(Duration::from_millis(200)) {
            got.push(String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string());
        }
    }
    got
}

/// Creates `topic` through `node` with `partitions` partitions of three replicas and
/// `min.insync.replicas` = `min_isr`.
pub fn create_replicated(node: &Broker, topic: &str, partitions: u32, min_isr: u32) {
    let (parts, min) = (
        partitions.to_string(),
        format!("min.insync.replicas={min_isr}"),
    );
    super::cli(
        node,
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            &parts,
            "--replication-factor",
            "3",
            "--config",
            &min,
        ],
    );
}

/// (error code, leader) of each partition of `topic` in a Metadata answer from `addr`.
pub fn leaders(addr: &str, topic: &str) -> Vec<(i16, i32)> {
    partition_meta(addr, topic)
        .iter()
        .map(|p| (p.error_code, p.leader_id.0))
        .collect()
}

/// Each partition of `topic` in a Metadata (v9) answer from `addr`, by partition index.
pub fn partition_meta(
    addr: &str,
    topic: &str,
) -> Vec<kafka_protocol::messages::metadata_response::MetadataResponsePartition> {
    use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
    let mut c = shardlog::admin::client::Client::connect(addr).expect("connect");
    let mut t = MetadataRequestTopic::default();
    t.name = Some(super::wire::name(topic));
    let mut req = MetadataRequest::default();
    req.topics = Some(vec![t]);
    let resp = c.call(&req, 9).expect("metadata");
    let mut parts = resp.topics[0].partitions.clone();
    parts.sort_by_key(|p| p.partition_index);
    parts
}

/// The cluster id a node's Metadata answer names.
pub fn cluster_id(addr: &str) -> String {
    use kafka_protocol::messages::metadata_request::MetadataRequest;
    let mut c = shardlog::admin::client::Client::connect(addr).expect("connect");
    let resp = c.call(&MetadataRequest::default(), 9).expect("metadata");
    resp.cluster_id.map(|s| s.to_string()).unwrap_or_default()
}

/// The bytes of a partition directory's `.log` segments in offset order (their names).
pub fn log_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map(|es| {
            es.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

/// Waits (bounded) until every node's replica of each partition of `topic` holds the same
/// log bytes as the others (and the topic some): followers store the leader's batches unchanged, at
/// the same offsets.
pub fn wait_replicas_identical(c: &Cluster, topic: &str, partitions: i32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline: followers fetch within a few hundred milliseconds.
    loop {
        let logs: Vec<Vec<Vec<u8>>> = c
            .nodes
            .iter()
            .map(|n| {
                (0..partitions)
                    .map(|p| log_bytes(&n.data_dir().join("topics").join(format!("{topic}-{p}"))))
                    .collect()
            })
            .collect();
        if logs.iter().all(|l| *l == logs[0]) && logs[0].iter().any(|b| !b.is_empty()) {
            return;
        }
        let sizes: Vec<Vec<usize>> = logs
            .iter()
            .map(|l| l.iter().map(Vec::len).collect())
            .collect();
        assert!(Instant::now() < deadline, "{what}: sizes {sizes:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
