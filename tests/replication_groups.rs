//! Committed offsets are replicated like any partition: the internal offsets topic has
//! three replicas, a group's coordinator moves with its offsets partition's leader, and a
//! group resumes from its committed offsets after the coordinator's node is killed and
//! again after leadership returns. Clients cannot write into, delete or grow that topic.

mod common;

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use serde_json::Value;

use common::cluster::{create_replicated, poll_values as drain, Cluster};

const GROUP: &str = "survivors";

/// (replica nodes, leader) of offsets partition `p` in a node's view.
fn offsets_partition(v: &Value, p: i32) -> (Vec<u64>, Option<u64>) {
    let part = &v["image"]["topics"]["__consumer_offsets"]["partitions"][p as usize];
    let replicas = part["replicas"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["node"].as_u64()).collect())
        .unwrap_or_default();
    (replicas, part["leader"].as_u64())
}

fn member(bootstrap: &str) -> BaseConsumer {
    let m: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    m.subscribe(&["kept"]).expect("subscribe");
    m
}

/// Commits synchronously, retrying (bounded) while the coordinator moves.
fn commit(m: &BaseConsumer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    // Bounded by the deadline.
    loop {
        match m.commit_consumer_state(CommitMode::Sync) {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("commit retried: {e}");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("commit failed: {e}"),
        }
    }
}

fn produce(bootstrap: &str, range: std::ops::Range<i32>) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let p: BaseProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in range {
        let v = format!("m{i}");
        p.send(BaseRecord::<(), _>::to("kept").payload(&v))
            .expect("queued");
    }
    p.flush(Duration::from_secs(30)).expect("flushed");
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn expected(range: std::ops::Range<i32>) -> Vec<String> {
    sorted(range.map(|i| format!("m{i}")).collect())
}

#[test]
fn committed_offsets_survive_the_coordinators_node_and_follow_its_leadership() {
    let mut c = Cluster::start(3);
    create_replicated(&c.nodes[0], "kept", 3, 2);
    let all = c
        .nodes
        .iter()
        .map(|n| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    produce(&all, 0..100);

    // The first member reads everything and commits; the offsets topic it caused to be
    // created has three replicas per partition.
    let first = member(&all);
    assert_eq!(sorted(drain(&first, 100)), expected(0..100));
    commit(&first);
    drop(first);
    let p = shardlog::group::offsets_partition(GROUP) as i32;
    let (replicas, leader) = offsets_partition(&c.view(0).expect("view"), p);
    assert_eq!(replicas.len(), 3, "three replicas: {replicas:?}");
    let leader = leader.expect("a leader");
    let preferred = replicas[0];
    assert_eq!(leader, preferred);

    // The coordinator's node dies: another replica leads the offsets partition, and a new
    // member resumes after the committed offsets.
    c.nodes[(leader - 1) as usize].kill();
    let killed = Instant::now();
    let survivor = c
        .nodes
        .iter()
        .enumerate()
        .find(|(i, _)| *i as u64 != leader - 1)
        .map(|(i, _)| i)
        .expect("a survivor");
    c.wait_for(&[survivor], "a new leader of the offsets partition", |v| {
        offsets_partition(&v[0], p).1.is_some_and(|l| l != leader)
    });
    let bootstrap_live = c
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i as u64 != leader - 1)
        .map(|(_, n)| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    produce(&bootstrap_live, 100..110);
    let second = member(&bootstrap_live);
    let got = drain(&second, 10);
    eprintln!(
        "group resumed {:?} after its coordinator's node was killed",
        killed.elapsed()
    );
    assert_eq!(sorted(got.clone()), expected(100..110), "{got:?}");
    assert!(
        second.poll(Duration::from_secs(2)).is_none(),
        "nothing twice"
    );
    commit(&second);
    drop(second);

    // The node returns, catches up, and leads its offsets partition again (preferred
    // leader): it loads the commit made while it was away.
    c.nodes[(leader - 1) as usize].start_again();
    c.wait_for(&[0, 1, 2], "the preferred leader back", |v| {
        v.iter()
            .all(|v| offsets_partition(v, p).1 == Some(preferred))
    });
    produce(&all, 110..115);
    let third = member(&all);
    let got = drain(&third, 5);
    assert_eq!(sorted(got.clone()), expected(110..115), "{got:?}");
    assert!(
        third.poll(Duration::from_secs(2)).is_none(),
        "nothing twice"
    );
    commit(&third);
    drop(third);

    // The group's committed offsets, as the CLI reads them from the coordinator: 115 over
    // the three partitions.
    let described = common::cli(&c.nodes[2], &["group", "describe", GROUP]);
    let committed: i64 = described
        .lines()
        .filter(|l| l.starts_with("kept"))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<i64>().ok())
        .sum();
    assert_eq!(committed, 115, "{described}");
}

#[test]
fn clients_cannot_write_delete_or_grow_the_offsets_topic() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let c = Cluster::start(3);
    create_replicated(&c.nodes[0], "kept", 1, 1);
    // A group member makes the brokers create the offsets topic.
    let m = member(&c.nodes[1].bootstrap());
    let _ = m.poll(Duration::from_secs(3));
    c.wait_for(&[0], "the offsets topic", |v| {
        offsets_partition(&v[0], 0).1.is_some()
    });
    drop(m);

    let producer: FutureProducer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", c.nodes[0].bootstrap())
        .set("message.timeout.ms", "5000")
        .create()
        .expect("producer");
    let sent = futures::executor::block_on(
        producer.send(
            FutureRecord::to("__consumer_offsets")
                .partition(0)
                .key("k")
                .payload("forged commit"),
            Duration::from_secs(5),
        ),
    );
    assert!(sent.is_err(), "a client wrote into the offsets topic");

    let admin: AdminClient<DefaultClientContext> = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", c.nodes[1].bootstrap())
        .create()
        .expect("admin");
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deleted = futures::executor::block_on(admin.delete_topics(&["__consumer_offsets"], &opts))
        .expect("answered");
    assert!(deleted[0].is_err(), "{deleted:?}");
    let grown = futures::executor::block_on(
        admin.create_partitions(&[NewPartitions::new("__consumer_offsets", 60)], &opts),
    )
    .expect("answered");
    assert!(grown[0].is_err(), "{grown:?}");
    let created = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(
            "__consumer_offsets",
            3,
            TopicReplication::Fixed(1),
        )],
        &opts,
    ))
    .expect("answered");
    assert!(created[0].is_err(), "{created:?}");
    // Still 50 partitions, each led.
    let v = c.view(2).expect("view");
    let parts = v["image"]["topics"]["__consumer_offsets"]["partitions"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(parts, 50);
    // Metadata marks it internal.
    let mut client =
        shardlog::admin::client::Client::connect(&c.nodes[0].bootstrap()).expect("connect");
    let mut all_topics = kafka_protocol::messages::metadata_request::MetadataRequest::default();
    all_topics.topics = None;
    let resp = client.call(&all_topics, 9).expect("metadata");
    let t = resp
        .topics
        .iter()
        .find(|t| {
            t.name
                .as_ref()
                .is_some_and(|n| n.0.as_str() == "__consumer_offsets")
        })
        .expect("listed");
    assert!(t.is_internal);
    let user = resp
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "kept"))
        .expect("listed");
    assert!(!user.is_internal);
}
