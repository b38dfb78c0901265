//! Many partitions and few file descriptors: 10,000 partitions on one shard under
//! `ulimit -n 1024`, produced to, read back, and restarted under an even smaller limit; the
//! per-shard partition limit refuses creates up front; a limit too small to run names the
//! limit needed.

mod common;

use std::process::Command;

use bytes::Bytes;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use shardlog::admin::client::Client;

use common::wire::{create_topic_with, fetch, latest, name};
use common::{http_get, metric_sample, record_batch, Broker};

const POLICY_VIOLATION: i16 = 44;

/// One Produce request with one record for each of `partitions` partitions of `topic`.
fn produce_everywhere(c: &mut Client, topic: &str, partitions: i32) -> Vec<i16> {
    let mut t = TopicProduceData::default();
    t.name = name(topic);
    t.partition_data = (0..partitions)
        .map(|p| {
            let mut d = PartitionProduceData::default();
            d.index = p;
            d.records = Some(Bytes::from(record_batch(&[format!("p{p}").as_bytes()], 1)));
            d
        })
        .collect();
    let mut req = ProduceRequest::default();
    req.acks = 1;
    req.timeout_ms = 60_000;
    req.topic_data = vec![t];
    let resp = c.call(&req, 9).expect("produce");
    resp.responses[0]
        .partition_responses
        .iter()
        .map(|p| p.error_code)
        .collect()
}

#[test]
fn ten_thousand_partitions_under_ulimit_1024_and_restart_under_256() {
    let toml = "\"topic.partitions.per.shard\" = 10000\n";
    let mut b = Broker::start_limited(1, toml, &["--flush", "never"], Some(1024));
    create_topic_with(&b, "wide", 10_000, &["segment.bytes=1048576"]);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let errors = produce_everywhere(&mut c, "wide", 10_000);
    assert_eq!(errors.len(), 10_000);
    let failed = errors.iter().filter(|e| **e != 0).count();
    assert_eq!(failed, 0, "{:?}\n{}", errors.iter().find(|e| **e != 0), {
        let log = b.log_text();
        log.lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .take(10)
            .collect::<Vec<_>>()
            .join("\n")
    });
    let m = http_get(&b.metrics_addr().expect("metrics"), "/metrics").1;
    let open = metric_sample(&m, "shardlog_shard_open_log_files{shard=\"0\"}").expect("gauge");
    assert!(open < 1024.0, "log files held open: {open}");
    let fds = std::fs::read_dir(format!("/proc/{}/fd", b.pid().expect("pid")))
        .expect("fds")
        .count();
    assert!(fds < 1024, "{fds} descriptors");

    b.nofile = Some(256);
    b.stop();
    b.start_again();
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    for p in (0..10_000).step_by(997) {
        assert_eq!(latest(&mut c, "wide", p), 1, "partition {p} after restart");
        let (err, records) = fetch(&mut c, "wide", p, 0, 0);
        assert_eq!(err, 0);
        assert!(!records.is_empty());
    }
    let errors = produce_everywhere(&mut c, "wide", 10_000);
    assert!(
        errors.iter().all(|e| *e == 0),
        "produce after a restart under ulimit 256"
    );
    assert_eq!(latest(&mut c, "wide", 9_999), 2);
    b.stop();

    // Too few descriptors to run at all: a clear error naming what is needed.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_shardlog"));
    cmd.args([
        "serve",
        "--cores",
        "2",
        "--listen",
        "127.0.0.1:1",
        "--data-dir",
    ])
    .arg(b.data_dir())
    .args(["--metrics-listen", "off"]);
    common::limit_nofile(&mut cmd, 100);
    let out = cmd.output().expect("run shardlog");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ulimit -n") && err.contains("needs at least 192"),
        "{err}"
    );
}

#[test]
fn the_partition_limit_refuses_creates_up_front() {
    let b = Broker::start_configured(2, "\"topic.partitions.per.shard\" = 20\n", &[]);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let create = |c: &mut Client, topic: &str, n: i32| {
        let mut t = CreatableTopic::default();
        t.name = name(topic);
        t.num_partitions = n;
        t.replication_factor = -1;
        let mut req = CreateTopicsRequest::default();
        req.topics = vec![t];
        req.timeout_ms = 10_000;
        let r = c.call(&req, 5).expect("create topics");
        let t = &r.topics[0];
        (
            t.error_code,
            t.error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        )
    };
    let (err, msg) = create(&mut c, "huge", 60);
    assert_eq!(err, POLICY_VIOLATION, "{msg}");
    assert!(msg.contains("topic.partitions.per.shard = 20"), "{msg}");
    assert_eq!(create(&mut c, "fits", 30).0, 0);
    // Growing past the limit is refused too, and nothing changes.
    let mut t = CreatePartitionsTopic::default();
    t.name = name("fits");
    t.count = 60;
    let mut req = CreatePartitionsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let r = c.call(&req, 3).expect("create partitions");
    assert_eq!(r.results[0].error_code, POLICY_VIOLATION);
    let md = shardlog::admin::topic::metadata(&mut c, Some(vec!["fits".into()])).expect("md");
    assert_eq!(md.topics[0].partitions.len(), 30);
    assert!(!b.data_dir().join("topics").join("huge-0").exists());
}
