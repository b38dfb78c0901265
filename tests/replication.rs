//! Replication across node processes: every partition on three nodes, followers storing
//! the leader's bytes, acks=all answered once the in-sync replicas have a batch, and no
//! acknowledged record lost when a leader is killed.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::{
    create_replicated, partition_meta, read_all, wait_replicas_identical, Cluster,
};

/// (replica nodes, ISR, leader) of each partition of `topic` in a node's view.
fn placement(v: &Value, topic: &str) -> Vec<(Vec<u64>, Vec<u64>, Option<u64>)> {
    v["image"]["topics"][topic]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let nodes = |k: &str| -> Vec<u64> {
                        p[k].as_array()
                            .map(|a| {
                                a.iter()
                                    .filter_map(|x| x.as_u64().or_else(|| x["node"].as_u64()))
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    (nodes("replicas"), nodes("isr"), p["leader"].as_u64())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Produces `values` with acks=all through `bootstrap`: the values acknowledged.
fn produce_all(bootstrap: &str, topic: &str, values: &[String]) -> Vec<String> {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    let sends: Vec<_> = values
        .iter()
        .map(|v| {
            (
                v.clone(),
                producer
                    .send_result(FutureRecord::to(topic).payload(v).key(v))
                    .map_err(|(e, _)| e),
            )
        })
        .collect();
    let mut acked = Vec::new();
    for (v, s) in sends {
        if let Ok(Ok(Ok(_))) = s.map(futures::executor::block_on) {
            acked.push(v);
        }
    }
    acked
}

#[test]
fn three_replicas_keep_every_acknowledged_record_when_the_leader_dies() {
    let mut c = Cluster::start(3);
    create_replicated(&c.nodes[0], "safe", 3, 2);
    c.wait_for(&[0, 1, 2], "the topic everywhere", |v| {
        v.iter().all(|v| placement(v, "safe").len() == 3)
    });
    let placed = placement(&c.view(0).expect("view"), "safe");
    for (replicas, isr, leader) in &placed {
        assert_eq!(
            replicas.iter().collect::<BTreeSet<_>>().len(),
            3,
            "{placed:?}"
        );
        assert_eq!(isr.len(), 3);
        assert_eq!(*leader, Some(replicas[0]));
    }
    let leaders: BTreeSet<u64> = placed.iter().filter_map(|p| p.2).collect();
    assert_eq!(
        leaders.len(),
        3,
        "one partition led by each node: {placed:?}"
    );
    // Metadata names three replicas, all in sync; so does `topic describe`.
    for p in partition_meta(&c.nodes[1].bootstrap(), "safe") {
        assert_eq!(p.replica_nodes.len(), 3, "{p:?}");
        assert_eq!(p.isr_nodes.len(), 3, "{p:?}");
    }
    let described = common::cli(&c.nodes[2], &["topic", "describe", "safe"]);
    // The partition rows, up to the blank line before the configs.
    for line in described.lines().skip(2).take_while(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 6, "{described}");
        assert_eq!(cols[4].split(',').count(), 3, "{described}");
        assert_eq!(cols[5].split(',').count(), 3, "{described}");
    }

    let first: Vec<String> = (0..300).map(|i| format!("a{i}")).collect();
    let acked = produce_all(&c.nodes[1].bootstrap(), "safe", &first);
    assert_eq!(
        acked.len(),
        300,
        "all acknowledged with three replicas in sync"
    );

    // A client posing as a replica: a broker id that is not a follower of the partition
    // (or is its leader), or a follower's id with a leader epoch the leader does not have
    // yet, gets UNKNOWN_LEADER_EPOCH and no records.
    {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
        let (replicas, _, leader) = &placed[0];
        let leader = leader.expect("leader");
        let follower = *replicas.iter().find(|n| **n != leader).expect("follower");
        let fetch_as = |replica_id: i32, epoch: i32| {
            let mut fp = FetchPartition::default();
            fp.partition = 0;
            fp.current_leader_epoch = epoch;
            fp.fetch_offset = 0;
            fp.last_fetched_epoch = -1;
            fp.partition_max_bytes = 1 << 20;
            let mut ft = FetchTopic::default();
            ft.topic = common::wire::name("safe");
            ft.partitions = vec![fp];
            let mut req = FetchRequest::default();
            req.replica_id = kafka_protocol::messages::BrokerId(replica_id);
            req.max_wait_ms = 10;
            req.min_bytes = 1;
            req.max_bytes = 1 << 20;
            req.session_epoch = -1;
            req.topics = vec![ft];
            let mut client = shardlog::admin::client::Client::connect(
                &c.nodes[(leader - 1) as usize].bootstrap(),
            )
            .expect("connect");
            let resp = client.call(&req, 12).expect("fetch");
            let p = &resp.responses[0].partitions[0];
            (p.error_code, p.records.as_ref().map_or(0, |r| r.len()))
        };
        assert_eq!(fetch_as(99 * 1024, -1), (75, 0), "not a replica");
        assert_eq!(
            fetch_as(leader as i32 * 1024, -1),
            (75, 0),
            "the leader itself"
        );
        let stale = fetch_as(follower as i32 * 1024, 5);
        assert_eq!(stale, (75, 0), "a future epoch is unknown");
    }

    // Every replica holds the same bytes: each node's partition directories match.
    wait_replicas_identical(&c, "safe", 3, "replicas differ");

    // kill -9 the leader of partition 0: its partitions move to an in-sync replica.
    let dead = placed[0].2.expect("leader");
    let dead_i = (dead - 1) as usize;
    c.nodes[dead_i].kill();
    let rest: Vec<usize> = (0..3).filter(|i| *i != dead_i).collect();
    let moved = c.wait_for(&rest, "new leaders from the ISR", |v| {
        v.iter().all(|v| {
            placement(v, "safe")
                .iter()
                .all(|(_, isr, l)| l.is_some_and(|l| l != dead) && !isr.contains(&dead))
        })
    });
    eprintln!("leadership moved {moved:?} after the controller noticed");

    // Writes go on (two in sync ≥ min.insync.replicas) and nothing acknowledged is lost.
    let second: Vec<String> = (0..300).map(|i| format!("b{i}")).collect();
    let bootstrap = c.nodes[rest[0]].bootstrap();
    let acked2 = produce_all(&bootstrap, "safe", &second);
    assert_eq!(acked2.len(), 300, "acks=all with two of three in sync");
    // OffsetsForLeaderEpoch at the new leader of partition 0: epoch 0 ends where the new
    // leader's epoch began; a stale current epoch is fenced; a non-leader says so.
    {
        let meta = &partition_meta(&c.nodes[rest[0]].bootstrap(), "safe")[0];
        let (leader_node, leader_shard) = (meta.leader_id.0 / 1024, meta.leader_id.0 % 1024);
        assert_eq!(leader_shard, 0);
        let leader_i = (leader_node - 1) as usize;
        let ask = |node: usize, current: i32, epoch: i32| {
            use kafka_protocol::messages::offset_for_leader_epoch_request::{
                OffsetForLeaderPartition, OffsetForLeaderTopic,
            };
            use kafka_protocol::messages::OffsetForLeaderEpochRequest;
            let mut p = OffsetForLeaderPartition::default();
            p.partition = 0;
            p.current_leader_epoch = current;
            p.leader_epoch = epoch;
            let mut t = OffsetForLeaderTopic::default();
            t.topic = common::wire::name("safe");
            t.partitions = vec![p];
            let mut req = OffsetForLeaderEpochRequest::default();
            req.replica_id = kafka_protocol::messages::BrokerId(-1);
            req.topics = vec![t];
            let mut client = shardlog::admin::client::Client::connect(&c.nodes[node].bootstrap())
                .expect("connect");
            let resp = client.call(&req, 4).expect("offsets for leader epoch");
            let r = &resp.topics[0].partitions[0];
            (r.error_code, r.leader_epoch, r.end_offset)
        };
        let (code, epoch, end) = ask(leader_i, meta.leader_epoch, 0);
        assert_eq!((code, epoch), (0, 0), "epoch 0 is in the new leader's log");
        assert!(
            end > 0,
            "epoch 0 ended where the new leader took over: {end}"
        );
        let (code, epoch, newest_end) = ask(leader_i, meta.leader_epoch, meta.leader_epoch);
        assert_eq!((code, epoch), (0, meta.leader_epoch));
        assert!(newest_end > end, "the new epoch has the new records");
        assert_eq!(
            ask(leader_i, meta.leader_epoch - 1, 0).0,
            74,
            "FENCED_LEADER_EPOCH"
        );
        let other = rest
            .iter()
            .copied()
            .find(|i| *i != leader_i)
            .expect("a follower");
        assert_eq!(ask(other, -1, 0).0, 6, "NOT_LEADER_OR_FOLLOWER");
    }
    let got = read_all(&c.nodes[rest[1]], "safe", 3, 600);
    for v in acked.iter().chain(&acked2) {
        assert!(got.contains_key(v), "acknowledged {v} lost");
    }
    assert_eq!(got.len(), 600);

    // The killed node returns as a follower and catches up with the new leaders.
    c.nodes[dead_i].start_again();
    wait_replicas_identical(&c, "safe", 3, "the returned replica did not catch up");

    // In sync again: the returned replica rejoined every ISR, and the partitions it is the
    // preferred replica of are led by it again.
    c.wait_for(&[0, 1, 2], "all three in sync again", |v| {
        v.iter().all(|v| {
            placement(v, "safe")
                .iter()
                .all(|(_, isr, _)| isr.len() == 3)
        })
    });
    let back = c.wait_for(&[0, 1, 2], "preferred leaders again", |v| {
        v.iter().all(|v| {
            placement(v, "safe")
                .iter()
                .all(|(r, _, l)| *l == Some(r[0]))
        })
    });
    eprintln!("preferred leaders restored {back:?} after the ISR was whole");
    // Each node checkpoints its replicas' high watermarks (every 5 s).
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bounded by the deadline.
    while !c.nodes.iter().all(|n| {
        std::fs::read_to_string(n.data_dir().join("replication-offsets-0"))
            .is_ok_and(|t| t.lines().filter(|l| l.ends_with(" safe")).count() == 3)
    }) {
        assert!(Instant::now() < deadline, "no high watermark checkpoint");
        std::thread::sleep(Duration::from_millis(200));
    }
    let more: Vec<String> = (0..100).map(|i| format!("c{i}")).collect();
    assert_eq!(
        produce_all(&c.nodes[dead_i].bootstrap(), "safe", &more).len(),
        100
    );
    let got = read_all(&c.nodes[dead_i], "safe", 3, 700);
    assert_eq!(
        got.len(),
        700,
        "every acknowledged record, read through the returned node"
    );
    // Exactly once: the idempotent producer's retries across the failover left no
    // duplicate (the partitions hold 700 records in all).
    let total = records_in(&c.nodes[dead_i].bootstrap(), "safe", 3);
    assert_eq!(total, 700, "duplicates or gaps in the logs");
}

/// Records in `topic`'s partitions (high watermark minus log start, summed).
fn records_in(bootstrap: &str, topic: &str, partitions: i32) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum()
}

#[test]
fn a_stalled_follower_leaves_the_isr_and_rejoins_once_caught_up() {
    // Followers fall out of the ISR after 1 s behind; nodes are fenced only after 20 s.
    let c = Cluster::start_with(
        3,
        "\"replica.lag.time.max.ms\" = 1000\n\"broker.session.timeout.ms\" = 20000\n\"default.replication.factor\" = 3\n",
    );
    // A topic created without a replication factor gets default.replication.factor.
    common::cli(&c.nodes[1], &["topic", "create", "defaulted"]);
    c.wait_for(&[0], "the defaulted topic", |v| {
        placement(&v[0], "defaulted")
            .first()
            .is_some_and(|p| p.0.len() == 3)
    });
    for (topic, min_isr) in [("lag", 2), ("strict", 3)] {
        create_replicated(&c.nodes[0], topic, 1, min_isr);
    }
    c.wait_for(&[0, 1, 2], "the topics everywhere", |v| {
        v.iter()
            .all(|v| placement(v, "lag").len() == 1 && placement(v, "strict").len() == 1)
    });
    let view = c.view(0).expect("view");
    let leaders = [
        placement(&view, "lag")[0].2,
        placement(&view, "strict")[0].2,
    ];
    let follower = (1..=3u64)
        .find(|n| !leaders.contains(&Some(*n)))
        .expect("a node leading neither");
    let strict_leader = leaders[1].expect("leader");
    let acked = produce_all(&c.nodes[0].bootstrap(), "lag", &["one".to_string()]);
    assert_eq!(acked.len(), 1);

    // The follower stops (SIGSTOP): it is not fenced, but it leaves the ISR, and acks=all
    // goes on with the two left.
    let pid = c.nodes[(follower - 1) as usize].pid().expect("pid") as i32;
    // SAFETY: signalling a child process this test started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let others: Vec<usize> = (0..3).filter(|i| *i as u64 + 1 != follower).collect();
    let shrunk = c.wait_for(&others, "the stalled follower out of the ISR", |v| {
        v.iter().all(|v| {
            let p = &placement(v, "lag")[0];
            !p.1.contains(&follower) && p.1.len() == 2
        })
    });
    let v = c.view(others[0]).expect("view");
    assert_eq!(
        v["image"]["nodes"][follower.to_string()]["fenced"],
        false,
        "left the ISR by lag, not by fencing"
    );
    eprintln!("ISR shrank {shrunk:?} after the follower stopped");
    // The leader of "lag" reports it under-replicated while the follower is out.
    let lag_leader = leaders[0].expect("leader");
    let metrics = || {
        let addr = c.nodes[(lag_leader - 1) as usize]
            .metrics_addr()
            .expect("metrics");
        common::http_get(&addr, "/metrics").1
    };
    let m = metrics();
    assert!(
        common::metric_sample(&m, "shardlog_under_replicated_partitions").unwrap_or(0.0) >= 1.0,
        "{m}"
    );
    // With min.insync.replicas=3, acks=all is now refused (two in sync).
    c.wait_for(&others, "strict shrunk too", |v| {
        v.iter().all(|v| placement(v, "strict")[0].1.len() == 2)
    });
    let mut raw = shardlog::admin::client::Client::connect(
        &c.nodes[(strict_leader - 1) as usize].bootstrap(),
    )
    .expect("connect");
    let (code, _) =
        common::wire::try_produce(&mut raw, "strict", 0, common::record_batch(&[b"x"], 1))
            .expect("answered");
    assert_eq!(code, 19, "NOT_ENOUGH_REPLICAS");
    let strict_metrics = common::http_get(
        &c.nodes[(strict_leader - 1) as usize]
            .metrics_addr()
            .expect("metrics"),
        "/metrics",
    )
    .1;
    assert!(
        common::metric_sample(&strict_metrics, "shardlog_under_min_isr_partitions").unwrap_or(0.0)
            >= 1.0,
        "{strict_metrics}"
    );
    assert!(
        common::metric_sample(
            &strict_metrics,
            "shardlog_produce_partition_errors_total{error=\"19\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "the refusal is counted: {strict_metrics}"
    );
    let more: Vec<String> = (0..50).map(|i| format!("m{i}")).collect();
    assert_eq!(
        produce_all(&c.nodes[others[0]].bootstrap(), "lag", &more).len(),
        50
    );
    // The leader reports how far behind the stopped follower is, in bytes and in time.
    let m = metrics();
    for gauge in [
        "shardlog_shard_replica_max_lag_bytes",
        "shardlog_shard_replica_max_lag_ms",
    ] {
        let n = m
            .lines()
            .filter(|l| l.starts_with(gauge))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, f64::max);
        assert!(n > 0.0, "{gauge}: {m}");
    }

    // Resumed, it catches up and is back in the ISR.
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let grown = c.wait_for(&[0, 1, 2], "the follower back in the ISR", |v| {
        v.iter().all(|v| placement(v, "lag")[0].1.len() == 3)
    });
    eprintln!("ISR grew back {grown:?} after the follower resumed");
    wait_replicas_identical(&c, "lag", 1, "the follower did not catch up");
    let m = metrics();
    for counter in [
        "shardlog_shard_isr_shrinks_total",
        "shardlog_shard_isr_expands_total",
    ] {
        let n: f64 = m
            .lines()
            .filter(|l| l.starts_with(counter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert!(n >= 1.0, "{counter}: {m}");
    }
    let follower_metrics = common::http_get(
        &c.nodes[(follower - 1) as usize]
            .metrics_addr()
            .expect("metrics"),
        "/metrics",
    )
    .1;
    assert!(
        common::metric_sample(
            &follower_metrics,
            "shardlog_shard_replica_fetched_bytes_total"
        )
        .unwrap_or(0.0)
            > 0.0,
        "{follower_metrics}"
    );
    let got = read_all(&c.nodes[(follower - 1) as usize], "lag", 1, 51);
    assert_eq!(got.len(), 51);

    // DeleteRecords on the leader: every replica's log start follows.
    common::cli(
        &c.nodes[(lag_leader - 1) as usize],
        &[
            "records",
            "delete",
            "lag",
            "--partition",
            "0",
            "--before",
            "20",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    // Bounded by the deadline.
    while !c.nodes.iter().all(|n| {
        std::fs::read_to_string(n.data_dir().join("topics/lag-0/log-start-offset"))
            .is_ok_and(|s| s.trim() == "20")
    }) {
        assert!(
            Instant::now() < deadline,
            "a replica's log start did not follow"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
