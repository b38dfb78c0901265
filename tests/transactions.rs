//! Transactions end to end with a real client (confluent-kafka / librdkafka,
//! tests/py/txn_client.py): commit and abort across partitions on both shards, what
//! read_committed and read_uncommitted consumers see, a zombie fenced, an abandoned
//! transaction aborted after its timeout, a broker restarted mid-transaction, and a
//! consume-transform-produce loop killed (client and broker, kill -9) at random points that
//! still writes each input exactly once. The Java client 3.9 (tests/java/TxnClient.java)
//! and kafkajs (tests/js/txn_client.js) run commits, aborts, fencing and offsets sent in a
//! transaction too; raw requests show what a hostile or buggy client gets.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::txn::{assert_transformed_exactly_once, by_partition, fill_inputs, py, py_cmd, values};
use common::{cli, Broker};

fn create(b: &Broker, topic: &str, partitions: u32) {
    cli(
        b,
        &[
            "topic",
            "create",
            topic,
            "--partitions",
            &partitions.to_string(),
        ],
    );
}

#[test]
fn commit_and_abort_across_shards_with_read_committed_and_uncommitted_readers() {
    let b = Broker::start(2);
    create(&b, "tx", 4);
    let r = py(&["commit_abort", &b.bootstrap(), "tx", "4"]);
    let label = |v: &str| v.split('-').next().unwrap_or("").to_string();
    // read_committed: the two committed transactions, nothing aborted, nothing open.
    let committed = by_partition(&r["committed"]);
    assert_eq!(committed.len(), 4, "all four partitions (both shards)");
    let mut n = 0;
    for (p, recs) in &committed {
        let labels: Vec<String> = recs.iter().map(|(_, v)| label(v)).collect();
        assert_eq!(
            labels,
            vec!["c1"; 5]
                .into_iter()
                .chain(vec!["c2"; 5])
                .collect::<Vec<_>>(),
            "partition {p}: {recs:?}"
        );
        assert!(recs.windows(2).all(|w| w[0].0 < w[1].0), "offsets ascend");
        n += recs.len();
    }
    assert_eq!(n, 40);
    // read_uncommitted: everything written, in order: c1, a1, c2, open per partition.
    let all = by_partition(&r["uncommitted"]);
    for (p, recs) in &all {
        let labels: Vec<String> = recs.iter().map(|(_, v)| label(v)).collect();
        let want: Vec<&str> = ["c1"; 5]
            .into_iter()
            .chain(["a1"; 5])
            .chain(["c2"; 5])
            .chain(["open"; 1])
            .collect();
        assert_eq!(labels, want, "partition {p}");
    }
    // Once the open transaction commits, read_committed readers see it too.
    let after = by_partition(&r["after"]);
    assert_eq!(after.values().map(Vec::len).sum::<usize>(), 44);
    assert!(after
        .values()
        .all(|recs| recs.last().is_some_and(|(_, v)| v.starts_with("open-"))));
}

#[test]
fn zombies_are_fenced_and_abandoned_transactions_abort_after_their_timeout() {
    let b = Broker::start_configured(
        2,
        "\"transaction.abort.timed.out.transaction.cleanup.interval.ms\" = 500\n",
        &[],
    );
    create(&b, "fz", 2);
    let r = py(&["fenced", &b.bootstrap(), "fz"]);
    assert!(
        r["zombie_error"].as_str().unwrap_or("").contains("FENCED"),
        "the first instance is fenced: {r}"
    );
    assert_eq!(values(&r["committed"]), vec!["new-0"]);

    create(&b, "ab", 1);
    py(&["abandon", &b.bootstrap(), "ab"]);
    py(&[
        "produce_committed",
        &b.bootstrap(),
        "ab",
        "txn-later",
        "after",
        "3",
    ]);
    // The abandoned transaction (timeout 3 s) holds read_committed readers until the
    // coordinator aborts it; then they see the later committed records only.
    let r = py(&["read", &b.bootstrap(), "ab", "read_committed", "3"]);
    assert_eq!(values(&r["values"]), vec!["after-0", "after-1", "after-2"]);
    assert!(b.log_text().contains("transaction timed out: aborted"));
    let r = py(&["read", &b.bootstrap(), "ab", "read_uncommitted", "8"]);
    assert_eq!(values(&r["values"]).len(), 8);
}

/// Starts `begin_only` and waits for its transaction to be open and flushed.
fn open_transaction(b: &Broker, topic: &str, txn: &str, label: &str) -> Child {
    let mut child = py_cmd(&["begin_only", &b.bootstrap(), topic, txn, label, "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        BufReader::new(out).read_line(&mut line).expect("read");
    }
    assert!(line.contains("ok"), "transaction opened: {line}");
    child
}

#[test]
fn a_broker_restarted_mid_transaction_recovers_it() {
    let mut b = Broker::start(2);
    create(&b, "rs", 1);
    let mut client = open_transaction(&b, "rs", "txn-restart", "lost");
    // The CLI shows the open transaction from the coordinator's and the partition's side.
    let listed = cli(&b, &["txn", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("txn-restart\t") && l.ends_with("\tOngoing")),
        "{listed}"
    );
    let described = cli(&b, &["txn", "describe", "txn-restart"]);
    assert!(
        described.contains("state:             Ongoing")
            && described.contains("partitions:        rs-0"),
        "{described}"
    );
    let producers = cli(&b, &["txn", "producers", "--topic", "rs"]);
    let row: Vec<&str> = producers
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split('\t')
        .collect();
    assert_eq!(
        row.get(4),
        Some(&"0"),
        "the open transaction starts at 0: {producers}"
    );
    let (ok, _, err) =
        common::shardlog_try(&["txn", "describe", "nobody", "--bootstrap", &b.bootstrap()]);
    assert!(!ok && err.contains("not known"), "{err}");
    b.kill();
    let _ = client.kill();
    let _ = client.wait();
    b.start_again();
    // The coordinator reloaded the open transaction: a new instance of the producer aborts
    // it (so the partition's last stable offset moves past it) and commits its own.
    py(&[
        "produce_committed",
        &b.bootstrap(),
        "rs",
        "txn-restart",
        "kept",
        "3",
    ]);
    let r = py(&["read", &b.bootstrap(), "rs", "read_committed", "3"]);
    assert_eq!(values(&r["values"]), vec!["kept-0", "kept-1", "kept-2"]);
    let r = py(&["read", &b.bootstrap(), "rs", "read_uncommitted", "7"]);
    assert_eq!(values(&r["values"]).len(), 7);
    let listed = cli(&b, &["txn", "list", "--state", "CompleteCommit"]);
    assert!(listed.contains("txn-restart\t"), "{listed}");
    assert!(!cli(&b, &["txn", "list", "--state", "Ongoing"]).contains("txn-restart"));
}

#[test]
fn consume_transform_produce_is_exactly_once_across_client_and_broker_kills() {
    let mut b = Broker::start(2);
    create(&b, "ctp-in", 2);
    create(&b, "ctp-out", 2);
    const N: usize = 3000;
    fill_inputs(&b.bootstrap(), "ctp-in", N);
    let args = |b: &Broker| {
        vec![
            "transform".to_string(),
            b.bootstrap(),
            "ctp-in".into(),
            "ctp-out".into(),
            "ctp-group".into(),
            "txn-ctp".into(),
            N.to_string(),
        ]
    };
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    // Six rounds: the client is killed at a random moment; every third round the broker too.
    for round in 0..6 {
        let a = args(&b);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let mut child = py_cmd(&refs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3");
        std::thread::sleep(Duration::from_millis(1500 + rand(2500)));
        let _ = child.kill();
        let _ = child.wait();
        if round % 3 == 2 {
            b.kill();
            b.start_again();
        }
    }
    // Then to the end (bounded: each run exits once the group has committed everything,
    // or with an error after which it is run again).
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let a = args(&b);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let st = py_cmd(&refs)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("python3");
        if st.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the transform never finished");
    }
    assert_transformed_exactly_once(&b.bootstrap(), "ctp-out", N);
}

mod wire {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;
    use shardlog::admin::client::Client;

    pub fn txn_id(s: &str) -> TransactionalId {
        TransactionalId(StrBytes::from_string(s.to_string()))
    }

    /// InitProducerId v4 with a transactional id: (error, producer id, epoch).
    pub fn init(c: &mut Client, id: &str, timeout_ms: i32) -> (i16, i64, i16) {
        let mut req = InitProducerIdRequest::default();
        req.transactional_id = Some(txn_id(id));
        req.transaction_timeout_ms = timeout_ms;
        req.producer_id = ProducerId(-1);
        req.producer_epoch = -1;
        let r = c.call(&req, 4).expect("init producer id");
        (r.error_code, r.producer_id.0, r.producer_epoch)
    }

    /// AddPartitionsToTxn at `version`: each partition's error code.
    pub fn add(
        c: &mut Client,
        version: i16,
        id: &str,
        (pid, epoch): (i64, i16),
        parts: &[(&str, i32)],
    ) -> Vec<i16> {
        let mut req = AddPartitionsToTxnRequest::default();
        req.v3_and_below_transactional_id = txn_id(id);
        req.v3_and_below_producer_id = ProducerId(pid);
        req.v3_and_below_producer_epoch = epoch;
        for (t, p) in parts {
            let mut topic = AddPartitionsToTxnTopic::default();
            topic.name = super::common::wire::name(t);
            topic.partitions = vec![*p];
            req.v3_and_below_topics.push(topic);
        }
        let r = c.call(&req, version).expect("add partitions");
        r.results_by_topic_v3_and_below
            .iter()
            .flat_map(|t| {
                t.results_by_partition
                    .iter()
                    .map(|p| p.partition_error_code)
            })
            .collect()
    }

    /// WriteTxnMarkers v1, an abort of `pid`'s transaction: each partition's code.
    pub fn markers(c: &mut Client, (pid, epoch): (i64, i16), parts: &[(&str, i32)]) -> Vec<i16> {
        use kafka_protocol::messages::write_txn_markers_request::*;
        let mut m = WritableTxnMarker::default();
        m.producer_id = ProducerId(pid);
        m.producer_epoch = epoch;
        m.transaction_result = false;
        for (t, p) in parts {
            match m.topics.last_mut() {
                Some(last) if last.name.0.as_str() == *t => last.partition_indexes.push(*p),
                _ => {
                    let mut topic = WritableTxnMarkerTopic::default();
                    topic.name = super::common::wire::name(t);
                    topic.partition_indexes = vec![*p];
                    m.topics.push(topic);
                }
            }
        }
        let mut req = WriteTxnMarkersRequest::default();
        req.markers = vec![m];
        let r = c.call(&req, 1).expect("write txn markers");
        r.markers
            .iter()
            .flat_map(|m| {
                m.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
            })
            .collect()
    }

    /// AddOffsetsToTxn v3: its error code.
    pub fn add_offsets(c: &mut Client, id: &str, (pid, epoch): (i64, i16), group: &str) -> i16 {
        let mut req = AddOffsetsToTxnRequest::default();
        req.transactional_id = txn_id(id);
        req.producer_id = ProducerId(pid);
        req.producer_epoch = epoch;
        req.group_id = GroupId(StrBytes::from_string(group.to_string()));
        c.call(&req, 3).expect("add offsets").error_code
    }

    /// TxnOffsetCommit v3 of one offset (no group membership): its error code.
    pub fn txn_commit(
        c: &mut Client,
        id: &str,
        (pid, epoch): (i64, i16),
        group: &str,
        (topic, partition, offset): (&str, i32, i64),
    ) -> i16 {
        use kafka_protocol::messages::txn_offset_commit_request::*;
        let mut part = TxnOffsetCommitRequestPartition::default();
        part.partition_index = partition;
        part.committed_offset = offset;
        let mut t = TxnOffsetCommitRequestTopic::default();
        t.name = super::common::wire::name(topic);
        t.partitions = vec![part];
        let mut req = TxnOffsetCommitRequest::default();
        req.transactional_id = txn_id(id);
        req.group_id = GroupId(StrBytes::from_string(group.to_string()));
        req.producer_id = ProducerId(pid);
        req.producer_epoch = epoch;
        req.generation_id = -1;
        req.topics = vec![t];
        let r = c.call(&req, 3).expect("txn offset commit");
        r.topics[0].partitions[0].error_code
    }

    /// OffsetFetch v8 of one partition: (error code, committed offset).
    pub fn committed(
        c: &mut Client,
        group: &str,
        (topic, partition): (&str, i32),
        require_stable: bool,
    ) -> (i16, i64) {
        use kafka_protocol::messages::offset_fetch_request::*;
        let mut t = OffsetFetchRequestTopics::default();
        t.name = super::common::wire::name(topic);
        t.partition_indexes = vec![partition];
        let mut g = OffsetFetchRequestGroup::default();
        g.group_id = GroupId(StrBytes::from_string(group.to_string()));
        g.topics = Some(vec![t]);
        let mut req = OffsetFetchRequest::default();
        req.groups = vec![g];
        req.require_stable = require_stable;
        let r = c.call(&req, 8).expect("offset fetch");
        let p = &r.groups[0].topics[0].partitions[0];
        (p.error_code, p.committed_offset)
    }

    /// EndTxn v3: its error code.
    pub fn end(c: &mut Client, id: &str, (pid, epoch): (i64, i16), commit: bool) -> i16 {
        let mut req = EndTxnRequest::default();
        req.transactional_id = txn_id(id);
        req.producer_id = ProducerId(pid);
        req.producer_epoch = epoch;
        req.committed = commit;
        c.call(&req, 3).expect("end txn").error_code
    }

    /// ListTransactions v1 filtered by state: the ids listed.
    pub fn list(c: &mut Client, states: &[&str]) -> Vec<String> {
        let mut req = ListTransactionsRequest::default();
        req.state_filters = states
            .iter()
            .map(|s| StrBytes::from_string(s.to_string()))
            .collect();
        req.duration_filter = -1;
        let r = c.call(&req, 1).expect("list transactions");
        assert_eq!(r.error_code, 0);
        r.transaction_states
            .iter()
            .map(|t| t.transactional_id.0.to_string())
            .collect()
    }

    /// DescribeProducers v0 of one partition: (error, [(producer id, txn start offset)]).
    pub fn producers(c: &mut Client, topic: &str, partition: i32) -> (i16, Vec<(i64, i64)>) {
        let mut t = describe_producers_request::TopicRequest::default();
        t.name = super::common::wire::name(topic);
        t.partition_indexes = vec![partition];
        let mut req = DescribeProducersRequest::default();
        req.topics = vec![t];
        let r = c.call(&req, 0).expect("describe producers");
        let p = &r.topics[0].partitions[0];
        (
            p.error_code,
            p.active_producers
                .iter()
                .map(|x| (x.producer_id.0, x.current_txn_start_offset))
                .collect(),
        )
    }

    /// DescribeTransactions v0 of one id: (error, state, partitions).
    pub fn describe(c: &mut Client, id: &str) -> (i16, String, usize) {
        let mut req = DescribeTransactionsRequest::default();
        req.transactional_ids = vec![txn_id(id)];
        let r = c.call(&req, 0).expect("describe transactions");
        let t = &r.transaction_states[0];
        (
            t.error_code,
            t.transaction_state.to_string(),
            t.topics.iter().map(|x| x.partitions.len()).sum(),
        )
    }
}

/// `b` marked transactional (attributes at bytes 21..23; the CRC is recomputed).
fn transactional(mut b: Vec<u8>) -> Vec<u8> {
    let attrs = i16::from_be_bytes([b[21], b[22]]) | shardlog::log::batch::ATTR_TRANSACTIONAL;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    shardlog::log::batch::seal(&mut b);
    b
}

#[test]
fn hostile_and_buggy_transaction_requests_get_kafka_errors() {
    use common::producer_batch;
    use common::wire::{create_topic, produce};
    use shardlog::admin::client::Client;
    use shardlog::log::txn_index::{marker_batch, Marker};

    let b = Broker::start(1);
    create_topic(&b, "hx", 2);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    // Timeouts outside (0, transaction.max.timeout.ms]: INVALID_TRANSACTION_TIMEOUT.
    assert_eq!(wire::init(&mut c, "h1", 0).0, 50);
    assert_eq!(wire::init(&mut c, "h1", 16 * 60 * 1000).0, 50);
    let (code, pid, epoch) = wire::init(&mut c, "h1", 60_000);
    assert_eq!((code, epoch), (0, 0));
    // Unknown id, wrong producer id, stale epoch (old and new request versions).
    assert_eq!(wire::end(&mut c, "nobody", (pid, 0), true), 49);
    assert_eq!(
        wire::add(&mut c, 3, "h1", (pid + 1, 0), &[("hx", 0)]),
        vec![49]
    );
    assert_eq!(wire::add(&mut c, 3, "h1", (pid, 5), &[("hx", 0)]), vec![90]);
    assert_eq!(wire::add(&mut c, 0, "h1", (pid, 5), &[("hx", 0)]), vec![47]);
    // An unknown partition: refused, and the others of the request not attempted.
    assert_eq!(
        wire::add(&mut c, 3, "h1", (pid, 0), &[("hx", 0), ("hx", 9)]),
        vec![55, 3]
    );
    // Committing with nothing open is an invalid state; aborting it is harmless.
    assert_eq!(wire::end(&mut c, "h1", (pid, 0), true), 48);
    assert_eq!(wire::end(&mut c, "h1", (pid, 0), false), 0);
    // A producer may not write markers, nor a transactional batch without a producer id.
    let marker = marker_batch(pid, 0, Marker::Commit, 0, 1);
    assert_eq!(produce(&mut c, "hx", 0, marker).0, 87);
    let anonymous = transactional(producer_batch(&[b"x"], 1, -1, -1, -1));
    assert_eq!(produce(&mut c, "hx", 0, anonymous).0, 87);
    // Open a transaction on hx/0; a non-transactional write of the same producer there is
    // refused while it is open.
    assert_eq!(wire::add(&mut c, 3, "h1", (pid, 0), &[("hx", 0)]), vec![0]);
    let t0 = transactional(producer_batch(&[b"t0"], 1, pid, 0, 0));
    assert_eq!(produce(&mut c, "hx", 0, t0).0, 0);
    let plain = producer_batch(&[b"p1"], 1, pid, 0, 1);
    assert_eq!(produce(&mut c, "hx", 0, plain).0, 48);
    assert_eq!(wire::describe(&mut c, "h1"), (0, "Ongoing".to_string(), 1));
    assert_eq!(wire::describe(&mut c, "nobody").0, 105);
    assert_eq!(wire::list(&mut c, &["Ongoing"]), vec!["h1".to_string()]);
    assert!(wire::list(&mut c, &["CompleteCommit"]).is_empty());
    // The partition shows the producer with its transaction open from offset 0.
    assert_eq!(wire::producers(&mut c, "hx", 0), (0, vec![(pid, 0)]));
    // A second instance fences the first: its EndTxn is refused, the transaction aborted.
    let (code, pid2, epoch2) = wire::init(&mut c, "h1", 60_000);
    assert_eq!((code, pid2), (0, pid));
    assert_eq!(epoch2, 2, "the abort took epoch 1");
    assert_eq!(wire::end(&mut c, "h1", (pid, 0), true), 90);
    assert_eq!(wire::describe(&mut c, "h1"), (0, "Empty".to_string(), 0));
    assert_eq!(wire::producers(&mut c, "hx", 0), (0, vec![(pid, -1)]));
    // The zombie's late write to the partition is refused (the abort marker's epoch is newer).
    let late = transactional(producer_batch(&[b"late"], 1, pid, 0, 1));
    assert_eq!(produce(&mut c, "hx", 0, late).0, 47);
    // WriteTxnMarkers (what another node's coordinator sends): a stale epoch, an unknown
    // partition, and more partitions than a transaction may span are refused.
    let stale = wire::markers(&mut c, (pid, 0), &[("hx", 0), ("nowhere", 0), ("hx", 7)]);
    assert_eq!(stale, vec![47, 3, 3]);
    let many: Vec<(&str, i32)> = (0..10_001).map(|i| ("hx", i)).collect();
    let refused = wire::markers(&mut c, (pid, 2), &many);
    assert!(
        refused.iter().all(|code| *code == 42),
        "{:?}",
        &refused[..3]
    );
    // KIP-447: an offset a transaction staged is UNSTABLE_OFFSET_COMMIT to a fetch that
    // requires stable offsets (a read_committed consumer) until the transaction ends.
    let (code, pid3, _) = wire::init(&mut c, "h3", 60_000);
    assert_eq!(code, 0);
    assert_eq!(wire::add_offsets(&mut c, "h3", (pid3, 0), "hg"), 0);
    assert_eq!(
        wire::txn_commit(&mut c, "h3", (pid3, 0), "hg", ("hx", 1, 5)),
        0
    );
    assert_eq!(wire::committed(&mut c, "hg", ("hx", 1), true), (88, -1));
    assert_eq!(wire::committed(&mut c, "hg", ("hx", 1), false), (0, -1));
    assert_eq!(wire::end(&mut c, "h3", (pid3, 0), true), 0);
    assert_eq!(wire::committed(&mut c, "hg", ("hx", 1), true), (0, 5));
    // The broker is still serving.
    assert_eq!(wire::init(&mut c, "h2", 60_000).0, 0);
}

#[test]
fn the_java_client_commits_aborts_is_fenced_and_sends_offsets_in_transactions() {
    let b = Broker::start(2);
    create(&b, "jtx", 4);
    create(&b, "jtx-out", 4);
    let out = common::java::run("TxnClient", &[&b.bootstrap(), "jtx", "4"]);
    assert!(
        out.contains(
            "committed=40 aborted-seen=0 uncommitted=60 fenced=ProducerFenced copied=41 \
             output=41 offsets-kept=true"
        ),
        "{out}"
    );
}

#[test]
fn kafkajs_commits_aborts_is_fenced_and_sends_offsets_in_transactions() {
    let b = Broker::start(2);
    create(&b, "jstx", 4);
    create(&b, "jstx-out", 4);
    let js =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/js-clients/node_modules");
    assert!(
        js.join("kafkajs").exists(),
        "kafkajs missing: run tests/setup.sh"
    );
    let out = std::process::Command::new("node")
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js/txn_client.js"))
        .args([b.bootstrap().as_str(), "jstx", "4"])
        .env("NODE_PATH", &js)
        .output()
        .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("json");
    let mut committed = values(&v["committed"]);
    committed.sort();
    let mut want: Vec<String> = (0..20)
        .flat_map(|i| [format!("c1-{i}"), format!("c2-{i}")])
        .collect();
    want.sort();
    assert_eq!(committed, want, "read_committed: the two commits only");
    assert_eq!(v["uncommitted"], 60, "{v}");
    assert_eq!(v["output"], 40, "{v}");
    assert_eq!(v["offsetsKept"], true, "{v}");
    let fenced = v["fenced"].as_str().unwrap_or_default();
    assert!(
        fenced == "INVALID_PRODUCER_EPOCH" || fenced == "PRODUCER_FENCED",
        "the zombie is fenced: {v}"
    );
}
