//! The Java client (kafka-clients 3.9) against the real broker: a group member's commit
//! before it rejoins a rebalance is accepted, as Kafka's coordinator does, so no record is
//! delivered twice across the rebalance; and a three-node cluster serves the Java producer
//! and a consumer group through different nodes. Jars come from tests/setup.sh
//! (target/java-clients); the program is tests/java/RebalanceCommit.java.

mod common;

use shardlog::admin::client::Client;

use common::wire::{create_topic, produce};
use common::{record_batch, Broker};

#[test]
fn java_auto_commit_before_rejoin_is_kept_and_nothing_is_delivered_twice() {
    let b = Broker::start(1);
    create_topic(&b, "rejoin", 2);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    for i in 0..100 {
        let v = format!("record {i}");
        assert_eq!(
            produce(&mut c, "rejoin", i % 2, record_batch(&[v.as_bytes()], 1)).0,
            0
        );
    }
    let stdout = common::java::run(
        "RebalanceCommit",
        &[&b.bootstrap(), "rejoin", "rejoiners", "100"],
    );
    assert!(
        stdout.contains("first=100 first-after=0 second=0"),
        "every record delivered exactly once across the rebalance: {stdout}"
    );
}

#[test]
fn java_produces_through_one_node_and_a_group_reads_through_another() {
    let nodes = common::start_cluster(3, 1);
    common::cli(
        &nodes[0],
        &[
            "topic",
            "create",
            "javacluster",
            "--partitions",
            "6",
            "--replication-factor",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
    );
    let stdout = common::java::run(
        "ClusterRoundTrip",
        &[
            &nodes[1].bootstrap(),
            &nodes[2].bootstrap(),
            "javacluster",
            "javagroup",
            "300",
        ],
    );
    assert!(
        stdout.contains("produced=300 consumed=300 distinct=300"),
        "every record once through the cluster (three replicas each): {stdout}"
    );
}
