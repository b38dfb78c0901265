//! Transactions end to end with a real client (confluent-kafka / librdkafka,
//! tests/py/txn_client.py): commit and abort across partitions on both shards, what
//! read_committed and read_uncommitted consumers see, a zombie fenced, an abandoned
//! transaction aborted after its timeout, a broker restarted mid-transaction, and a
//! consume-transform-produce loop killed (client and broker, kill -9) at random points that
//! still writes each input exactly once.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{cli, Broker};
use serde_json::Value;

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/py/txn_client.py")
}

fn py_cmd(args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.arg(script()).args(args).env_remove("LD_LIBRARY_PATH");
    c
}

/// Runs a mode to its end and returns its JSON line.
fn py(args: &[&str]) -> Value {
    let out = py_cmd(args).output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?} failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

fn values(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|x| x.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// (partition, offset, value) triples → values per partition in offset order.
fn by_partition(v: &Value) -> BTreeMap<i64, Vec<(i64, String)>> {
    let mut out: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    for x in v.as_array().into_iter().flatten() {
        let p = x[0].as_i64().unwrap_or(-1);
        let o = x[1].as_i64().unwrap_or(-1);
        out.entry(p)
            .or_default()
            .push((o, x[2].as_str().unwrap_or_default().to_string()));
    }
    out
}

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
}

#[test]
fn consume_transform_produce_is_exactly_once_across_client_and_broker_kills() {
    let mut b = Broker::start(2);
    create(&b, "ctp-in", 2);
    create(&b, "ctp-out", 2);
    const N: usize = 3000;
    let fill = format!(
        "from confluent_kafka import Producer\n\
         p = Producer({{'bootstrap.servers': '{}', 'enable.idempotence': True}})\n\
         for i in range({N}):\n    p.produce('ctp-in', f'v{{i}}'.encode(), partition=i % 2)\n\
         assert p.flush(30) == 0\n",
        b.bootstrap()
    );
    let st = Command::new("python3")
        .args(["-c", &fill])
        .env_remove("LD_LIBRARY_PATH")
        .status()
        .expect("python3");
    assert!(st.success());
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
    let r = py(&[
        "read",
        &b.bootstrap(),
        "ctp-out",
        "read_committed",
        &N.to_string(),
    ]);
    let got = values(&r["values"]);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &got {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(
        dups.is_empty(),
        "written more than once: {:?}",
        &dups[..dups.len().min(10)]
    );
    assert_eq!(counts.len(), N, "every input transformed");
    assert!((0..N).all(|i| counts.contains_key(format!("out-v{i}").as_str())));
}
