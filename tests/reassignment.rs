//! Moving partitions between nodes while the data stays readable: a reassignment copies a
//! partition to its new replicas, switches once they are in sync and removes the old copy;
//! decommissioning a node moves every replica off it so it can leave.

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::{node_states, read_all, Cluster};

/// (replica nodes, reassignment running) of each partition of `topic` in a node's view.
fn replicas(v: &Value, topic: &str) -> Vec<(Vec<u64>, bool)> {
    v["image"]["topics"][topic]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let nodes = p["replicas"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|r| r["node"].as_u64()).collect())
                        .unwrap_or_default();
                    (nodes, p["reassignment"].is_object())
                })
                .collect()
        })
        .unwrap_or_default()
}

fn produce(bootstrap: &str, topic: &str, prefix: &str, n: usize) {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends: Vec<_> = (0..n)
        .map(|i| {
            let v = format!("{prefix}{i}");
            producer
                .send_result(FutureRecord::to(topic).payload(&v).key(&v))
                .map_err(|(e, _)| e)
        })
        .collect();
    for s in sends {
        let r = futures::executor::block_on(s.expect("queued")).expect("report");
        r.expect("delivered");
    }
}

#[test]
fn a_partition_moves_to_other_nodes_and_a_decommissioned_node_is_drained() {
    let mut c = Cluster::start(3);
    // Groups' offsets partitions are placed now, on the three voters (they cannot move yet).
    common::cli(
        &c.nodes[0],
        &[
            "topic",
            "create",
            "move",
            "--partitions",
            "2",
            "--replication-factor",
            "1",
        ],
    );
    produce(&c.nodes[0].bootstrap(), "move", "a", 200);
    assert_eq!(read_all(&c.nodes[0], "move", 2, 200).len(), 200);

    // Partition 0 moves to another node: copied, switched, the old copy removed.
    let before = replicas(&c.view(0).expect("view"), "move");
    let from = before[0].0[0];
    let to = (1..=3u64).find(|n| *n != from).expect("another node");
    common::cli(
        &c.nodes[1],
        &[
            "topic",
            "reassign",
            "move",
            "--partition",
            "0",
            "--replicas",
            &to.to_string(),
        ],
    );
    let moved = c.wait_for(&[0, 1, 2], "partition 0 moved", |v| {
        v.iter()
            .all(|v| replicas(v, "move")[0] == (vec![to], false))
    });
    eprintln!("partition moved in {moved:?}");
    let old_dir = c.nodes[(from - 1) as usize]
        .data_dir()
        .join("topics/move-0");
    let deadline = Instant::now() + Duration::from_secs(10);
    // Bounded by the deadline.
    while old_dir.exists() {
        assert!(Instant::now() < deadline, "the old replica was not removed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(c.nodes[(to - 1) as usize]
        .data_dir()
        .join("topics/move-0")
        .is_dir());
    produce(&c.nodes[2].bootstrap(), "move", "b", 100);
    assert_eq!(
        read_all(&c.nodes[1], "move", 2, 300).len(),
        300,
        "nothing lost in the move"
    );

    // Partition 1 grows to three replicas (a replication factor change).
    common::cli(
        &c.nodes[0],
        &[
            "topic",
            "reassign",
            "move",
            "--partition",
            "1",
            "--replicas",
            "1,2,3",
        ],
    );
    c.wait_for(&[0, 1, 2], "partition 1 on three nodes", |v| {
        v.iter()
            .all(|v| replicas(v, "move")[1] == (vec![1, 2, 3], false))
    });
    // Refusals: two replicas on one node, an unknown node, an unknown topic.
    for (topic, reps) in [("move", "2,2"), ("move", "9"), ("nowhere", "1")] {
        let (ok, _, err) = common::shardlog_try(&[
            "topic",
            "reassign",
            topic,
            "--partition",
            "0",
            "--replicas",
            reps,
            "--bootstrap",
            &c.nodes[0].bootstrap(),
        ]);
        assert!(!ok, "{topic} {reps} accepted");
        assert!(!err.is_empty());
    }

    // A broker-only node joins and takes replicas; decommissioned, it is drained: every
    // replica moves off it, it can then stop and leave.
    let four = c.add_broker_only(4, 1);
    c.wait_for(&[0, 1, 2, four], "node 4 live", |v| {
        v.iter()
            .all(|v| node_states(v).get(&4).is_some_and(|(f, _)| !f))
    });
    common::cli(
        &c.nodes[0],
        &[
            "topic",
            "create",
            "drain",
            "--partitions",
            "4",
            "--replication-factor",
            "2",
        ],
    );
    let on_four = |v: &Value| -> usize {
        ["move", "drain"]
            .iter()
            .map(|t| {
                replicas(v, t)
                    .iter()
                    .filter(|(r, _)| r.contains(&4))
                    .count()
            })
            .sum()
    };
    c.wait_for(&[0], "drain placed", |v| {
        replicas(&v[0], "drain").len() == 4
    });
    assert!(
        on_four(&c.view(0).expect("view")) > 0,
        "node 4 holds some replicas"
    );
    produce(&c.nodes[3].bootstrap(), "drain", "d", 200);
    let http = c.nodes[0].metrics_addr().expect("http");
    common::shardlog(&["cluster", "decommission", "4", "--http", &http]);
    let drained = c.wait_for(&[0, 1, 2], "node 4 drained", |v| {
        v.iter().all(|v| {
            on_four(v) == 0
                && replicas(v, "drain")
                    .iter()
                    .all(|(r, moving)| r.len() == 2 && !moving)
        })
    });
    eprintln!("node 4 drained in {drained:?}");
    c.nodes[four].stop();
    c.wait_for(&[0, 1, 2], "node 4 fenced", |v| {
        v.iter().all(|v| node_states(v)[&4].0)
    });
    // A move to the stopped node cannot finish: it is listed, then cancelled.
    {
        // (The CLI takes only live nodes; the Kafka API takes broker ids.)
        use kafka_protocol::messages::alter_partition_reassignments_request::{
            AlterPartitionReassignmentsRequest, ReassignablePartition, ReassignableTopic,
        };
        use kafka_protocol::messages::BrokerId;
        let mut p = ReassignablePartition::default();
        p.partition_index = 0;
        p.replicas = Some(vec![BrokerId((to * 1024) as i32), BrokerId(4096)]);
        let mut t = ReassignableTopic::default();
        t.name = common::wire::name("move");
        t.partitions = vec![p];
        let mut req = AlterPartitionReassignmentsRequest::default();
        req.timeout_ms = 10_000;
        req.topics = vec![t];
        let mut client =
            shardlog::admin::client::Client::connect(&c.nodes[0].bootstrap()).expect("connect");
        let resp = client.call(&req, 0).expect("alter reassignments");
        assert_eq!(resp.responses[0].partitions[0].error_code, 0, "{resp:?}");
    }
    let listed = common::cli(&c.nodes[1], &["topic", "reassignments"]);
    let want = format!("move-0\t{},4096\t4096\t", to * 1024);
    assert!(listed.contains(&want), "{listed}");
    common::cli(
        &c.nodes[0],
        &["topic", "reassign", "move", "--partition", "0", "--cancel"],
    );
    c.wait_for(&[0, 1, 2], "the move cancelled", |v| {
        v.iter()
            .all(|v| replicas(v, "move")[0] == (vec![to], false))
    });
    let listed = common::cli(&c.nodes[1], &["topic", "reassignments"]);
    assert_eq!(listed.lines().count(), 1, "nothing under way: {listed}");
    common::shardlog(&["cluster", "unregister", "4", "--http", &http]);
    assert_eq!(
        read_all(&c.nodes[2], "drain", 4, 200).len(),
        200,
        "nothing lost draining"
    );
}
