//! Several node processes form one cluster: a metadata quorum (openraft) elects a
//! controller, every node registers and heartbeats, a dead node is fenced and comes back,
//! and a paused controller never leaves two leaders in one term.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::{
    agree_on_controller, all_live, cluster_id, leaders, node_states, partition_meta, read_all,
    Cluster,
};
use common::{http_get, metric_sample, Broker};

#[test]
fn three_nodes_elect_a_controller_fence_a_dead_node_and_take_it_back() {
    let mut c = Cluster::start(3);
    let formed = c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    eprintln!("cluster formed in {formed:?}");
    let views: Vec<Value> = (0..3).filter_map(|i| c.view(i)).collect();
    let old = agree_on_controller(&views).expect("a controller");
    // The quorum's own metrics: every node names the same leader, exactly one is it.
    let leaders: Vec<f64> = (0..3)
        .map(|i| {
            let m = http_get(&c.nodes[i].metrics_addr().expect("metrics"), "/metrics").1;
            assert_eq!(
                metric_sample(&m, "shardlog_quorum_leader"),
                Some(old as f64)
            );
            metric_sample(&m, "shardlog_quorum_is_leader").expect("is_leader")
        })
        .collect();
    assert_eq!(leaders.iter().sum::<f64>(), 1.0, "{leaders:?}");
    let old_epoch = node_states(&views[0])[&old].1;

    // kill -9 the controller: the others elect another and fence it.
    let dead = (old - 1) as usize;
    c.nodes[dead].kill();
    let rest: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let elected = c.wait_for(&rest, "a new controller", |v| {
        agree_on_controller(v).is_some_and(|n| n != old)
    });
    let fenced = c.wait_for(&rest, "the dead node fenced", |v| {
        v.iter()
            .all(|v| node_states(v).get(&old).is_some_and(|(f, _)| *f))
    });
    eprintln!("new controller after {elected:?}; dead node fenced after {fenced:?} more");
    let http = c.nodes[rest[0]].metrics_addr().expect("metrics");
    let info = common::shardlog(&["cluster", "info", "--http", &http]);
    assert!(info.contains("fenced"), "{info}");
    assert!(info.contains("controller"), "{info}");

    // It comes back as a new incarnation: a new epoch, unfenced.
    c.nodes[dead].start_again();
    c.wait_for(&[0, 1, 2], "the node back and live everywhere", |v| {
        all_live(v, 3)
            && v.iter().all(|v| {
                node_states(v)
                    .get(&old)
                    .is_some_and(|(_, e)| *e > old_epoch)
            })
    });
}

#[test]
fn a_paused_controller_never_leaves_two_leaders_in_one_term() {
    let c = Cluster::start(3);
    c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    let views: Vec<Value> = (0..3).filter_map(|i| c.view(i)).collect();
    let old = agree_on_controller(&views).expect("controller");
    let paused = (old - 1) as usize;
    let pid = c.nodes[paused].pid().expect("pid") as i32;
    // Leaders seen per term, sampled from every node's own view through the pause.
    let mut leaders: BTreeMap<u64, std::collections::BTreeSet<u64>> = BTreeMap::new();
    let mut sample = |c: &Cluster, who: &[usize]| {
        for i in who {
            if let Some(v) = c.view(*i) {
                if v["role"] == "leader" {
                    leaders
                        .entry(v["term"].as_u64().unwrap_or(0))
                        .or_default()
                        .insert(v["node_id"].as_u64().unwrap_or(0));
                }
            }
        }
    };
    sample(&c, &[0, 1, 2]);
    // SAFETY: signalling a child process we started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let rest: Vec<usize> = (0..3).filter(|i| *i != paused).collect();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        sample(&c, &rest);
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        sample(&c, &[0, 1, 2]);
        std::thread::sleep(Duration::from_millis(50));
    }
    c.wait_for(&[0, 1, 2], "one controller again, all live", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    sample(&c, &[0, 1, 2]);
    let views: Vec<Value> = (0..3).filter_map(|i| c.view(i)).collect();
    let now = agree_on_controller(&views).expect("controller");
    assert_ne!(
        now, old,
        "a new controller was elected while the old one was paused"
    );
    assert!(
        leaders.values().all(|l| l.len() == 1),
        "two leaders in one term: {leaders:?}"
    );
    assert!(leaders.len() >= 2, "terms with a leader: {leaders:?}");
}

/// Reads every record of `topic` (partitions `0..partitions`) through `b` with librdkafka:
/// value → partition.
#[test]
fn a_topic_created_on_one_node_is_produced_through_another_and_read_through_a_third() {
    use common::wire::{produce, try_produce};
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use shardlog::admin::client::Client;

    let mut c = Cluster::start(3);
    c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    common::cli(
        &c.nodes[0],
        &["topic", "create", "spread", "--partitions", "6"],
    );
    c.wait_for(&[0, 1, 2], "the topic on every node", |v| {
        v.iter().all(|v| v["image"]["topics"]["spread"].is_object())
    });
    let view = c.view(0).expect("view");
    let placement: Vec<(u64, u64)> = view["image"]["topics"]["spread"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| {
            (
                p["replicas"][0]["node"].as_u64().unwrap_or(0),
                p["replicas"][0]["shard"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    for node in 1..=3u64 {
        assert_eq!(
            placement.iter().filter(|(n, _)| *n == node).count(),
            2,
            "balanced: {placement:?}"
        );
    }

    // One cluster id, whichever node answers.
    let ids: Vec<String> = c.nodes.iter().map(|n| cluster_id(&n.bootstrap())).collect();
    assert!(ids.iter().all(|i| *i == ids[0] && !i.is_empty()), "{ids:?}");

    // `cluster info` counts two partitions on each node.
    let http = c.nodes[1].metrics_addr().expect("metrics");
    let info = common::shardlog(&["cluster", "info", "--http", &http]);
    let rows: Vec<Vec<&str>> = info
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.len() == 8 && cols[0].parse::<u64>().is_ok())
        .collect();
    assert_eq!(rows.len(), 3, "{info}");
    assert!(
        rows.iter()
            .all(|cols| cols[5] == "2" && cols[6] == "2" && cols[7] == "live"),
        "{info}"
    );

    // librdkafka bootstrapped at node 2 finds every partition's leader through Metadata.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", c.nodes[1].bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let sends: Vec<_> = (0..600)
        .map(|i| {
            let v = format!("v{i}");
            let k = format!("k{i}");
            producer
                .send_result(FutureRecord::to("spread").payload(&v).key(&k))
                .map_err(|(e, _)| e)
        })
        .collect();
    for s in sends {
        let report = futures::executor::block_on(s.expect("queued")).expect("delivery report");
        report.expect("delivered");
    }
    let got = read_all(&c.nodes[2], "spread", 6, 600);
    assert_eq!(got.len(), 600, "all read back through node 3");
    for (i, (node, _)) in placement.iter().enumerate() {
        let dir = c.nodes[(*node - 1) as usize]
            .data_dir()
            .join("topics")
            .join(format!("spread-{i}"));
        assert!(dir.is_dir(), "partition {i} on node {node}");
    }

    // A partition led by another node is refused with NOT_LEADER_OR_FOLLOWER.
    let elsewhere = placement.iter().position(|(n, _)| *n != 1).expect("one") as i32;
    let mut raw = Client::connect(&c.nodes[0].bootstrap()).expect("connect");
    let (code, _) = try_produce(
        &mut raw,
        "spread",
        elsewhere,
        common::record_batch(&[b"x"], 1),
    )
    .expect("produce answered");
    assert_eq!(code, 6, "NOT_LEADER_OR_FOLLOWER");
    // Produce v10+ names the leader and its address (KIP-951).
    {
        use kafka_protocol::messages::produce_request::{
            PartitionProduceData, ProduceRequest, TopicProduceData,
        };
        let mut p = PartitionProduceData::default();
        p.index = elsewhere;
        p.records = Some(common::record_batch(&[b"x"], 1).into());
        let mut t = TopicProduceData::default();
        t.name = common::wire::name("spread");
        t.partition_data = vec![p];
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 10_000;
        req.topic_data = vec![t];
        let resp = raw.call(&req, 10).expect("produce v10");
        let pr = &resp.responses[0].partition_responses[0];
        assert_eq!(pr.error_code, 6);
        let (node, shard) = placement[elsewhere as usize];
        let want = (node * 1024 + shard) as i32;
        assert_eq!(pr.current_leader.leader_id.0, want, "{resp:?}");
        assert_eq!(resp.node_endpoints.len(), 1, "{resp:?}");
        let ep = &resp.node_endpoints[0];
        assert_eq!(ep.node_id.0, want);
        let addr = c.nodes[(node - 1) as usize].bootstrap();
        let port: u16 = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port");
        assert_eq!(ep.port, i32::from(port + shard as u16), "{resp:?}");
        assert_eq!(ep.rack.as_deref(), Some(node.to_string().as_str()));
    }
    let mine = placement.iter().position(|(n, _)| *n == 1).expect("one") as i32;
    assert_eq!(
        produce(
            &mut raw,
            "spread",
            mine,
            common::record_batch(&[b"mine"], 1)
        )
        .0,
        0
    );

    // Each partition: one replica, in sync, leading at epoch 0.
    for (i, p) in partition_meta(&c.nodes[1].bootstrap(), "spread")
        .iter()
        .enumerate()
    {
        let (node, shard) = placement[i];
        let id = (node * 1024 + shard) as i32;
        assert_eq!(p.leader_id.0, id);
        assert_eq!(p.leader_epoch, 0);
        assert_eq!(
            p.replica_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![id]
        );
        assert_eq!(
            p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![id]
        );
    }

    // Node 3 dies: its partitions are leaderless (their replica offline, the leader
    // epoch bumped); it returns with its data, leading at a newer epoch.
    c.nodes[2].kill();
    c.wait_for(&[0, 1], "node 3 fenced", |v| {
        v.iter()
            .all(|v| node_states(v).get(&3).is_some_and(|(f, _)| *f))
    });
    let meta = leaders(&c.nodes[0].bootstrap(), "spread");
    for (i, (node, _)) in placement.iter().enumerate() {
        assert_eq!(
            meta[i].0 == 5,
            *node == 3,
            "partition {i} on node {node}: {meta:?}"
        );
    }
    // Offline: node 3's partitions of every topic (the internal offsets one included), as
    // the view counts them, and at least the two of "spread".
    let view = c.view(0).expect("view");
    let offline = view["image"]["topics"]
        .as_object()
        .map(|ts| {
            ts.values()
                .flat_map(|t| t["partitions"].as_array().cloned().unwrap_or_default())
                .filter(|p| p["leader"].is_null())
                .count()
        })
        .unwrap_or(0) as f64;
    assert!(offline >= 2.0, "{view}");
    let m = http_get(&c.nodes[0].metrics_addr().expect("metrics"), "/metrics").1;
    assert_eq!(
        metric_sample(&m, "shardlog_offline_partitions"),
        Some(offline),
        "{m}"
    );
    for (i, p) in partition_meta(&c.nodes[0].bootstrap(), "spread")
        .iter()
        .enumerate()
    {
        let on_3 = placement[i].0 == 3;
        assert_eq!(p.offline_replicas.len(), usize::from(on_3), "{p:?}");
        assert_eq!(p.leader_epoch, i32::from(on_3), "{p:?}");
    }
    c.nodes[2].start_again();
    c.wait_for(&[0, 1, 2], "node 3 back", |v| all_live(v, 3));
    for (i, p) in partition_meta(&c.nodes[0].bootstrap(), "spread")
        .iter()
        .enumerate()
    {
        if placement[i].0 == 3 {
            assert!(p.leader_epoch >= 2 && p.error_code == 0, "{p:?}");
        }
    }
    // What node 3 appends now carries its new leader epoch; what it held keeps epoch 0.
    {
        use shardlog::log::batch::BatchScan;
        let i = placement.iter().position(|(n, _)| *n == 3).expect("one") as i32;
        let epoch = partition_meta(&c.nodes[2].bootstrap(), "spread")[i as usize].leader_epoch;
        let mut raw3 = Client::connect(&c.nodes[2].bootstrap()).expect("connect");
        let (code, at) = produce(&mut raw3, "spread", i, common::record_batch(&[b"new"], 1));
        assert_eq!(code, 0);
        let (code, records) = common::wire::fetch(&mut raw3, "spread", i, 0, 100);
        assert_eq!(code, 0);
        let epochs: Vec<(i64, i32)> = BatchScan::new(&records, true)
            .map(|(_, h)| (h.base_offset, h.leader_epoch))
            .collect();
        assert!(
            epochs
                .iter()
                .all(|(o, e)| *e == if *o == at { epoch } else { 0 }),
            "{epochs:?}"
        );
        assert_eq!(epochs.last().map(|(o, _)| *o), Some(at));
    }
    let got = read_all(&c.nodes[0], "spread", 6, 602);
    assert_eq!(got.len(), 602, "every record, node 3's included");
}

#[test]
fn a_single_node_data_dir_starts_as_a_one_node_cluster_with_its_topics() {
    use common::wire::{create_topic, fetch, produce};
    use shardlog::admin::client::Client;
    use shardlog::log::batch::BatchScan;

    let mut old = Broker::start(2);
    create_topic(&old, "kept", 3);
    let mut c = Client::connect(&old.bootstrap()).expect("connect");
    for p in 0..3 {
        assert_eq!(
            produce(&mut c, "kept", p, common::record_batch(&[b"a", b"b"], 1)).0,
            0
        );
    }
    old.stop();
    let data = old.data_dir().display().to_string();
    let port = common::pick_controller_port();
    let b = Broker::start_configured(
        2,
        &format!("\"node.id\" = 0\n\"controller.quorum.voters\" = \"0@127.0.0.1:{port}\"\n"),
        &["--data-dir", &data],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    // Bounded by the deadline: the import is proposed once the quorum has a leader.
    loop {
        let ok = (0..3).all(|p| {
            let (err, records) = fetch(&mut c, "kept", p, 0, 0);
            err == 0
                && BatchScan::new(&records, true)
                    .map(|(_, h)| h.record_count)
                    .sum::<i32>()
                    == 2
        });
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "topic not served:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, body) = http_get(&b.metrics_addr().expect("metrics"), "/v1/cluster");
    let v: Value = serde_json::from_str(&body).expect("view");
    assert_eq!(
        v["image"]["topics"]["kept"]["partitions"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert!(b.log_text().contains("imported a single-node topic"));
    // Imported once: deleted through the quorum, it stays deleted across a restart, and the
    // cluster keeps the single node's cluster id.
    let old_id = cluster_id(&b.bootstrap());
    common::cli(&b, &["topic", "delete", "kept"]);
    let mut b = b;
    b.restart();
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline: the quorum's log is applied again after the restart.
    while Instant::now() < deadline
        && b.log_text()
            .matches("this node is now the controller")
            .count()
            < 2
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let listed = common::cli(&b, &["topic", "list"]);
    assert!(
        !listed.contains("kept"),
        "deleted topic came back: {listed}"
    );
    assert_eq!(cluster_id(&b.bootstrap()), old_id);
}

#[test]
fn restarting_every_node_keeps_the_topics_and_their_records() {
    use common::wire::produce;
    use shardlog::admin::client::Client;

    let mut c = Cluster::start(3);
    c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    common::cli(
        &c.nodes[2],
        &["topic", "create", "durable", "--partitions", "3"],
    );
    c.wait_for(&[0, 1, 2], "the topic on every node", |v| {
        v.iter()
            .all(|v| v["image"]["topics"]["durable"].is_object())
    });
    let view = c.view(0).expect("view");
    let owners: Vec<u64> = view["image"]["topics"]["durable"]["partitions"]
        .as_array()
        .expect("partitions")
        .iter()
        .map(|p| p["replicas"][0]["node"].as_u64().unwrap_or(0))
        .collect();
    for (p, node) in owners.iter().enumerate() {
        let mut raw = Client::connect(&c.nodes[(*node - 1) as usize].bootstrap()).expect("connect");
        let v = format!("r{p}");
        assert_eq!(
            produce(
                &mut raw,
                "durable",
                p as i32,
                common::record_batch(&[v.as_bytes()], 1)
            )
            .0,
            0
        );
    }
    for n in c.nodes.iter_mut() {
        n.stop();
    }
    for n in c.nodes.iter_mut() {
        n.start_again();
    }
    c.wait_for(&[0, 1, 2], "the cluster back with its topic", |v| {
        all_live(v, 3)
            && v.iter()
                .all(|v| v["image"]["topics"]["durable"].is_object())
    });
    let got = read_all(&c.nodes[1], "durable", 3, 3);
    assert_eq!(got.len(), 3, "{got:?}");
}

#[test]
fn a_consumer_group_keeps_its_offsets_whichever_node_its_members_ask() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let c = Cluster::start(3);
    c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    common::cli(
        &c.nodes[0],
        &["topic", "create", "grouped", "--partitions", "3"],
    );
    c.wait_for(&[0, 1, 2], "the topic on every node", |v| {
        v.iter()
            .all(|v| v["image"]["topics"]["grouped"].is_object())
    });
    let produce = |from: usize, range: std::ops::Range<i32>| {
        let p: BaseProducer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", c.nodes[from].bootstrap())
            .create()
            .expect("producer");
        for i in range {
            let v = format!("m{i}");
            p.send(BaseRecord::<(), _>::to("grouped").payload(&v))
                .expect("queued");
        }
        p.flush(Duration::from_secs(30)).expect("flushed");
    };
    let member = |at: usize| -> BaseConsumer {
        let m: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", c.nodes[at].bootstrap())
            .set("group.id", "spanning")
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        m.subscribe(&["grouped"]).expect("subscribe");
        m
    };
    let drain = common::cluster::poll_values;
    produce(1, 0..90);
    // A member bootstrapped at node 3 reads everything and commits.
    let first = member(2);
    assert_eq!(drain(&first, 90).len(), 90);
    first
        .commit_consumer_state(CommitMode::Sync)
        .expect("commit");
    drop(first);
    // A member of the same group bootstrapped at node 1 finds the same coordinator and
    // starts from the committed offsets: only what was produced since.
    let second = member(0);
    produce(1, 90..100);
    let got = drain(&second, 10);
    let expected: Vec<String> = (90..100).map(|i| format!("m{i}")).collect();
    let mut sorted = got.clone();
    sorted.sort();
    let mut want = expected.clone();
    want.sort();
    assert_eq!(sorted, want, "only the new records: {got:?}");
    assert!(
        second.poll(Duration::from_secs(2)).is_none(),
        "nothing read twice"
    );
}

#[test]
fn partitions_and_configs_change_through_the_quorum_from_any_node() {
    use rdkafka::admin::{
        AdminClient, AdminOptions, AlterConfig, NewPartitions, ResourceSpecifier,
    };
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let c = Cluster::start(3);
    c.wait_for(&[0, 1, 2], "3 live nodes and one controller", |v| {
        all_live(v, 3) && agree_on_controller(v).is_some()
    });
    common::cli(
        &c.nodes[0],
        &["topic", "create", "grows", "--partitions", "2"],
    );
    let admin: AdminClient<DefaultClientContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", c.nodes[1].bootstrap())
        .create()
        .expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let r = futures::executor::block_on(
        admin.create_partitions(&[NewPartitions::new("grows", 5)], &opts),
    )
    .expect("create partitions");
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    let alter = AlterConfig::new(ResourceSpecifier::Topic("grows")).set("retention.ms", "3600000");
    let r =
        futures::executor::block_on(admin.alter_configs(&[alter], &opts)).expect("alter configs");
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    c.wait_for(&[0, 1, 2], "5 partitions and the config everywhere", |v| {
        v.iter().all(|v| {
            let t = &v["image"]["topics"]["grows"];
            t["partitions"].as_array().map(Vec::len) == Some(5)
                && t["configs"]["retention.ms"] == "3600000"
        })
    });
    // A new partition takes records through any node.
    let p: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", c.nodes[2].bootstrap())
        .create()
        .expect("producer");
    let payloads: Vec<String> = (0..5).map(|part| format!("x{part}")).collect();
    for (part, v) in payloads.iter().enumerate() {
        p.send(
            BaseRecord::<(), _>::to("grows")
                .partition(part as i32)
                .payload(v),
        )
        .expect("queued");
    }
    assert_eq!(
        p.flush(Duration::from_secs(30)).map_err(|e| e.to_string()),
        Ok(())
    );
    let got = read_all(&c.nodes[0], "grows", 5, 5);
    for (part, v) in payloads.iter().enumerate() {
        assert_eq!(got.get(v), Some(&(part as i32)), "{got:?}");
    }
    let described = common::cli(&c.nodes[2], &["topic", "describe", "grows"]);
    assert!(described.contains("partitions 5"), "{described}");

    // Dynamic broker settings go through the quorum too: cluster-wide from one node, for
    // one node from another; each broker reports what it runs with.
    common::cli(&c.nodes[1], &["config", "set", "log.retention.ms=7200000"]);
    common::cli(
        &c.nodes[0],
        &[
            "config",
            "set",
            "--broker",
            "3072",
            "log.retention.ms=60000",
        ],
    );
    c.wait_for(&[0, 1, 2], "the dynamic settings everywhere", |v| {
        v.iter().all(|v| {
            let d = &v["image"]["broker_configs"];
            d["cluster"]["log.retention.ms"] == "7200000"
                && d["nodes"]["3"]["log.retention.ms"] == "60000"
        })
    });
    let node1 = common::cli(
        &c.nodes[2],
        &["config", "get", "--broker", "1024", "log.retention.ms"],
    );
    assert!(
        node1.contains("log.retention.ms\t7200000\tcluster (dynamic)"),
        "{node1}"
    );
    let node3 = common::cli(
        &c.nodes[0],
        &["config", "get", "--broker", "3072", "log.retention.ms"],
    );
    assert!(
        node3.contains("log.retention.ms\t60000\tbroker (dynamic)"),
        "{node3}"
    );
}

#[test]
fn hostile_clients_on_the_controller_port_do_not_stop_the_quorum() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let c = Cluster::start(3);
    let log = c.nodes[0].log_text();
    let addr = log
        .split("listener=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("controller listener in the log")
        .to_string();
    let closed = |s: &mut TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut b = [0u8; 16];
        matches!(s.read(&mut b), Ok(0) | Err(_))
    };
    // A frame length far past the limit, and a frame that is not a request: closed.
    let mut huge = TcpStream::connect(&addr).expect("connect");
    huge.write_all(&(1u32 << 31).to_be_bytes()).expect("write");
    assert!(closed(&mut huge), "oversized frame closes the connection");
    let mut junk = TcpStream::connect(&addr).expect("connect");
    let body = b"{\"NotARequest\":1}";
    junk.write_all(&(body.len() as u32).to_be_bytes())
        .expect("write");
    junk.write_all(body).expect("write");
    assert!(
        closed(&mut junk),
        "a frame that is not a request closes the connection"
    );
    // More idle connections than the listener serves: the quorum still commits.
    let idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    common::cli(
        &c.nodes[1],
        &["topic", "create", "still", "--partitions", "3"],
    );
    c.wait_for(&[0, 1, 2], "the topic committed everywhere", |v| {
        v.iter().all(|v| v["image"]["topics"]["still"].is_object())
    });
    drop(idle);
    assert!(!c.nodes[0].log_text().contains("panicked"));
}
