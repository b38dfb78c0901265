//! Nodes joining and leaving a running cluster: a broker-only node (not a voter) joins,
//! receives the metadata log as a learner, takes partitions and serves them; it is then
//! decommissioned (placement passes it by, the controller moves every replica off it,
//! the internal offsets partitions included) and unregistered once stopped; a dead node
//! holding replicas cannot leave until it is drained too.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::{agree_on_controller, all_live, node_states, read_all, Cluster};

/// The node each partition of `topic` is placed on, in a node's view.
fn placement(v: &Value, topic: &str) -> Vec<u64> {
    v["image"]["topics"][topic]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["replicas"][0]["node"].as_u64().unwrap_or(0))
                .collect()
        })
        .unwrap_or_default()
}

/// Replicas (of any topic, the internal offsets topic included) placed on `node`.
fn replicas_on(v: &Value, node: u64) -> usize {
    let topics = v["image"]["topics"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    topics
        .values()
        .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
        .filter(|p| {
            p["replicas"]
                .as_array()
                .is_some_and(|rs| rs.iter().any(|r| r["node"].as_u64() == Some(node)))
        })
        .count()
}

/// Sends `METHOD path` with no body: (status line, body).
fn http(addr: &str, method: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let (head, body) = out.split_once("\r\n\r\n").expect("http response");
    (head.lines().next().unwrap_or("").to_string(), body.into())
}

#[test]
fn a_broker_only_node_joins_serves_partitions_and_is_decommissioned() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let mut c = Cluster::start(3);
    let four = c.add_broker_only(4, 2);
    let joined = c.wait_for(&[0, 1, 2, four], "4 live nodes, one controller", |v| {
        all_live(v, 4) && agree_on_controller(v).is_some()
    });
    eprintln!("broker-only node live on every node {joined:?} after it listened");
    // It receives the log as a learner, and the voters stay the three.
    c.wait_for(&[four], "node 4 a learner with the log", |v| {
        v[0]["role"] == "learner" && v[0]["voters"] == serde_json::json!([1, 2, 3])
    });

    // A topic created through node 4 (its proposal goes to the controller) spreads over
    // five shards, node 4's two included.
    common::cli(
        &c.nodes[four],
        &["topic", "create", "grow", "--partitions", "10"],
    );
    c.wait_for(&[0, 1, 2, four], "the topic everywhere", |v| {
        v.iter().all(|v| placement(v, "grow").len() == 10)
    });
    let placed = placement(&c.view(0).expect("view"), "grow");
    assert_eq!(
        placed.iter().filter(|n| **n == 4).count(),
        4,
        "two per shard: {placed:?}"
    );
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", c.nodes[four].bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends: Vec<_> = (0..500)
        .map(|i| {
            let v = format!("v{i}");
            producer
                .send_result(FutureRecord::to("grow").payload(&v).key(&v))
                .map_err(|(e, _)| e)
        })
        .collect();
    for s in sends {
        let report = futures::executor::block_on(s.expect("queued")).expect("report");
        report.expect("delivered");
    }
    drop(producer);
    assert_eq!(read_all(&c.nodes[0], "grow", 10, 500).len(), 500);

    // Restarted, it registers a new incarnation and serves its partitions again.
    let epoch = node_states(&c.view(0).expect("view"))[&4].1;
    c.nodes[four].restart();
    c.wait_for(&[0, 1, 2, four], "node 4 back", |v| {
        all_live(v, 4) && v.iter().all(|v| node_states(v)[&4].1 > epoch)
    });
    assert_eq!(read_all(&c.nodes[four], "grow", 10, 500).len(), 500);

    // Decommissioned: nothing new lands on it; it still serves what it holds (its
    // partitions of "grow" and of the internal offsets log).
    let held = replicas_on(&c.view(0).expect("view"), 4);
    assert!(held > 4, "grow's and some offsets partitions: {held}");
    let http1 = c.nodes[0].metrics_addr().expect("http");
    let (ok, out, err) = common::shardlog_try(&["cluster", "decommission", "4", "--http", &http1]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("still holds {held} partition(s)")),
        "{out}"
    );
    common::cli(
        &c.nodes[1],
        &["topic", "create", "after", "--partitions", "6"],
    );
    c.wait_for(&[0], "the second topic", |v| {
        placement(&v[0], "after").len() == 6
    });
    let after = placement(&c.view(0).expect("view"), "after");
    assert!(after.iter().all(|n| *n != 4), "{after:?}");
    let info = common::shardlog(&["cluster", "info", "--http", &http1]);
    assert!(info.contains("draining"), "{info}");
    assert_eq!(read_all(&c.nodes[four], "grow", 10, 500).len(), 500);

    // Unregistering is refused while it runs, while it holds partitions, and for voters.
    let (ok, _, err) = common::shardlog_try(&["cluster", "unregister", "4", "--http", &http1]);
    assert!(!ok && err.contains("is running"), "{err}");
    let (ok, _, err) = common::shardlog_try(&["cluster", "unregister", "2", "--http", &http1]);
    assert!(!ok && err.contains("voter"), "{err}");
    c.nodes[four].stop();
    c.wait_for(&[0, 1, 2], "node 4 fenced", |v| {
        v.iter().all(|v| node_states(v)[&4].0)
    });
    // Everything it held was moved off (drained), its offsets partitions too: it can leave.
    c.wait_for(&[0, 1, 2], "node 4 drained", |v| {
        v.iter().all(|v| replicas_on(v, 4) == 0)
    });
    let (ok, out, err) = common::shardlog_try(&["cluster", "unregister", "4", "--http", &http1]);
    assert!(ok && out.contains("node 4 unregistered"), "{out}{err}");

    // A node that joined, took replicas and died cannot leave while it holds them; once
    // decommissioned its replicas are rebuilt on the live nodes and it is unregistered,
    // gone from every node's view, its learner dropped.
    let five = c.add_broker_only(5, 1);
    c.wait_for(&[0, 1, 2, five], "node 5 live", |v| {
        v.iter()
            .all(|v| node_states(v).get(&5).is_some_and(|(f, _)| !f))
    });
    common::cli(
        &c.nodes[five],
        &[
            "topic",
            "create",
            "five",
            "--partitions",
            "4",
            "--replication-factor",
            "3",
        ],
    );
    c.wait_for(&[0, 1, 2, five], "five placed", |v| {
        v.iter().all(|v| placement(v, "five").len() == 4)
    });
    let on_five = replicas_on(&c.view(0).expect("view"), 5);
    assert!(
        on_five >= 3,
        "4 partitions x 3 replicas over 4 nodes: {on_five}"
    );
    c.nodes[five].stop();
    c.wait_for(&[0, 1, 2], "node 5 fenced", |v| {
        v.iter().all(|v| node_states(v)[&5].0)
    });
    let (ok, _, err) = common::shardlog_try(&["cluster", "unregister", "5", "--http", &http1]);
    assert!(!ok && err.contains("still holds"), "{err}");
    let (ok, out, err) = common::shardlog_try(&["cluster", "decommission", "5", "--http", &http1]);
    assert!(ok && out.contains("still holds"), "{out}{err}");
    c.wait_for(&[0, 1, 2], "node 5 drained", |v| {
        v.iter().all(|v| replicas_on(v, 5) == 0)
    });
    let (ok, out, err) = common::shardlog_try(&["cluster", "unregister", "5", "--http", &http1]);
    assert!(ok, "{err}");
    assert!(out.contains("node 5 unregistered"), "{out}");
    c.wait_for(&[0, 1, 2], "nodes 4 and 5 gone", |v| {
        v.iter().all(|v| {
            let s = node_states(v);
            !s.contains_key(&4) && !s.contains_key(&5)
        })
    });
    let (ok, _, err) = common::shardlog_try(&["cluster", "decommission", "5", "--http", &http1]);
    assert!(!ok && err.contains("no node 5"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Bounded by the deadline.
    while !c.nodes[..3].iter().any(|n| {
        n.log_text()
            .contains("removing an unregistered node's learner")
    }) {
        assert!(Instant::now() < deadline, "learner never removed");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Hostile or mistaken paths and methods get 404, never a change.
    for (m, p) in [
        ("POST", "/v1/cluster/nodes/abc/decommission"),
        ("GET", "/v1/cluster/nodes/1/decommission"),
        ("PUT", "/v1/cluster/nodes/1"),
        ("DELETE", "/v1/cluster/nodes/1/other"),
        (
            "POST",
            "/v1/cluster/nodes/99999999999999999999999/decommission",
        ),
    ] {
        let (status, _) = http(&http1, m, p);
        assert!(status.contains("404"), "{m} {p}: {status}");
    }
    let v = c.view(0).expect("view");
    assert_eq!(node_states(&v).len(), 3, "nodes 1-3 remain");
    assert!(v["image"]["nodes"]["1"]["draining"] == false);
}
