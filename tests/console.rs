//! `shardlog produce` and `shardlog consume` against the real broker: keys, headers,
//! compression and idempotence round trip; kcat reads what `produce` wrote and `consume`
//! reads what librdkafka wrote in transactions (aborted ones left out); the starting
//! points (offset, -N, time), counts and formats; and what a user gets wrong.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::Broker;

/// Runs `shardlog ARGS --bootstrap B` with `input` on stdin: (success, stdout, stderr).
fn shardlog(b: &Broker, args: &[&str], input: &str) -> (bool, String, String) {
    let mut cmd = Command::new("timeout");
    cmd.arg("60")
        .arg(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .args(["--bootstrap", &b.bootstrap()]);
    common::run_with_input(cmd, input)
}

fn ok(b: &Broker, args: &[&str], input: &str) -> String {
    let (good, out, err) = shardlog(b, args, input);
    assert!(good, "shardlog {args:?}: {err}");
    out
}

#[test]
fn produce_and_consume_round_trip_keys_headers_compression_and_idempotence() {
    let b = Broker::start(2);
    common::cli(&b, &["topic", "create", "lines", "--partitions", "3"]);
    let input: String = (0..300)
        .map(|i| format!("user{}:event {i}\n", i % 7))
        .collect();
    let (good, _, err) = shardlog(
        &b,
        &[
            "produce",
            "lines",
            "-K",
            ":",
            "-H",
            "source=cli",
            "-H",
            "flag",
            "-z",
            "lz4",
            "--idempotent",
            "--batch-size",
            "50",
        ],
        &input,
    );
    assert!(good && err.contains("produced 300 record(s)"), "{err}");

    let out = ok(
        &b,
        &["consume", "lines", "-e", "-f", "%p|%o|%k|%s|%h\\n"],
        "",
    );
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('|').collect()).collect();
    assert_eq!(rows.len(), 300, "{out}");
    // Every record once, each key on one partition (the key's hash), headers kept.
    let values: BTreeSet<&str> = rows.iter().map(|r| r[3]).collect();
    assert_eq!(values.len(), 300);
    let mut key_partition: BTreeMap<&str, &str> = BTreeMap::new();
    for r in &rows {
        assert_eq!(*key_partition.entry(r[2]).or_insert(r[0]), r[0], "{r:?}");
        assert_eq!(r[4], "source=cli,flag=NULL");
    }
    assert_eq!(key_partition.len(), 7);
    // The Java client's partitioner (murmur2) puts key "user0" where produce did.
    let want = (shardlog::admin::produce::murmur2(b"user0") & i32::MAX) % 3;
    assert_eq!(key_partition["user0"], want.to_string());

    // kcat (librdkafka) reads the same keys, values and headers.
    let kcat = Command::new("timeout")
        .args([
            "20",
            "kcat",
            "-C",
            "-e",
            "-q",
            "-b",
            &b.bootstrap(),
            "-t",
            "lines",
        ])
        .args(["-f", "%k|%s|%h\\n"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .expect("kcat");
    let seen = String::from_utf8_lossy(&kcat.stdout);
    assert_eq!(seen.lines().count(), 300, "{seen}");
    assert!(
        seen.lines()
            .any(|l| l == "user3|event 3|source=cli,flag=NULL"),
        "{seen}"
    );

    // One partition, from an offset, from N before the end, a count, JSON lines.
    let p0 = ok(
        &b,
        &["consume", "lines", "-p", "0", "-e", "-f", "%o\\n"],
        "",
    );
    let offsets: Vec<i64> = p0.lines().map(|l| l.parse().expect("offset")).collect();
    let n0 = offsets.len() as i64;
    assert_eq!(offsets, (0..n0).collect::<Vec<_>>());
    let tail = ok(
        &b,
        &[
            "consume", "lines", "-p", "0", "-o", "-2", "-e", "-f", "%o\\n",
        ],
        "",
    );
    assert_eq!(tail, format!("{}\n{}\n", n0 - 2, n0 - 1));
    let from = ok(
        &b,
        &[
            "consume", "lines", "-p", "0", "-o", "3", "-c", "2", "-f", "%o\\n",
        ],
        "",
    );
    assert_eq!(from, "3\n4\n");
    let json = ok(
        &b,
        &["consume", "lines", "-p", "1", "-c", "1", "--json"],
        "",
    );
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON line");
    assert_eq!(v["partition"], 1);
    assert_eq!(v["headers"]["source"], "cli");
    assert!(v["headers"]["flag"].is_null());
    assert!(v["value"].as_str().is_some_and(|s| s.starts_with("event ")));

    // From a time: records written after it only.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let t = shardlog::log::now_ms();
    ok(&b, &["produce", "lines", "-p", "2"], "late-1\nlate-2\n");
    let after = ok(
        &b,
        &["consume", "lines", "--timestamp", &t.to_string(), "-e"],
        "",
    );
    assert_eq!(after, "late-1\nlate-2\n");
}

#[test]
fn consume_leaves_out_aborted_transactions_unless_reading_uncommitted() {
    let b = Broker::start(2);
    common::cli(&b, &["topic", "create", "ctx", "--partitions", "4"]);
    // librdkafka: two committed transactions, an aborted one, and one left open and then
    // committed (tests/py/txn_client.py).
    let r = common::txn::py(&["commit_abort", &b.bootstrap(), "ctx", "4"]);
    assert!(r["after"].as_array().is_some(), "{r}");
    let committed = ok(&b, &["consume", "ctx", "-e"], "");
    let mut got: Vec<&str> = committed.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..20)
        .flat_map(|i| [format!("c1-{i}"), format!("c2-{i}")])
        .chain((0..4).map(|i| format!("open-{i}")))
        .collect();
    want.sort();
    assert_eq!(got, want);
    let all = ok(
        &b,
        &["consume", "ctx", "-e", "--isolation", "read_uncommitted"],
        "",
    );
    assert_eq!(all.lines().count(), 64);
    assert_eq!(all.lines().filter(|l| l.starts_with("a1-")).count(), 20);
}

#[test]
fn mistakes_get_one_clear_error() {
    let b = Broker::start(1);
    common::cli(&b, &["topic", "create", "two", "--partitions", "2"]);
    let cases: &[(&[&str], &str)] = &[
        (&["produce", "nope"], "topic nope does not exist"),
        (&["consume", "nope", "-e"], "topic nope does not exist"),
        (&["produce", "two", "-p", "2"], "no partition 2"),
        (&["consume", "two", "-p", "5", "-e"], "no partition 5"),
        (&["produce", "two", "--acks", "2"], "use all, 1 or 0"),
        (
            &["produce", "two", "-z", "brotli"],
            "use none, gzip, snappy, lz4 or zstd",
        ),
        (
            &["produce", "two", "--idempotent", "--acks", "1"],
            "--idempotent needs --acks all",
        ),
        (
            &["consume", "two", "-o", "middle"],
            "use beginning, end, an offset or -N",
        ),
        (
            &["consume", "two", "--timestamp", "yesterday"],
            "neither milliseconds nor a date-time",
        ),
        (
            &["consume", "two", "--isolation", "dirty"],
            "use read_committed or read_uncommitted",
        ),
    ];
    for (args, want) in cases {
        let (good, _, err) = shardlog(&b, args, "x\n");
        assert!(!good && err.contains(want), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    // A record larger than the broker takes: the broker's refusal, named.
    let big = "v".repeat(2 << 20) + "\n";
    let (good, _, err) = shardlog(&b, &["produce", "two", "-p", "0"], &big);
    assert!(!good && err.contains("error 10"), "{err}");
    // acks=0 writes without waiting; the records are there.
    ok(&b, &["produce", "two", "-p", "1", "--acks", "0"], "a\nb\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(ok(&b, &["consume", "two", "-p", "1", "-e"], ""), "a\nb\n");
}

#[test]
fn consume_as_a_group_member_commits_resumes_and_shares_with_librdkafka() {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use std::time::{Duration, Instant};

    let b = Broker::start(2);
    common::cli(&b, &["topic", "create", "grp", "--partitions", "4"]);
    let first: String = (0..200).map(|i| format!("m{i}\n")).collect();
    ok(&b, &["produce", "grp"], &first);
    let out = ok(&b, &["consume", "grp", "--group", "g1", "-e"], "");
    let got: BTreeSet<&str> = out.lines().collect();
    assert_eq!((out.lines().count(), got.len()), (200, 200), "{out}");
    // The group committed what it printed: no lag, and a second run reads only what is new.
    let described = common::cli(&b, &["group", "describe", "g1"]);
    let rows: Vec<Vec<&str>> = described
        .lines()
        .filter(|l| l.starts_with("grp\t"))
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows.len(), 4, "{described}");
    assert!(rows.iter().all(|r| r[4] == "0"), "no lag: {described}");
    let more: String = (0..50).map(|i| format!("n{i}\n")).collect();
    ok(&b, &["produce", "grp"], &more);
    let out = ok(&b, &["consume", "grp", "--group", "g1", "-e"], "");
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want: Vec<String> = (0..50).map(|i| format!("n{i}")).collect();
    want.sort();
    assert_eq!(got, want);
    // A member stopped by a count commits exactly what it printed: the next run of the
    // group goes on from there, nothing skipped, nothing twice.
    let head = ok(&b, &["consume", "grp", "--group", "g3", "-c", "7"], "");
    let tail = ok(&b, &["consume", "grp", "--group", "g3", "-e"], "");
    let both: Vec<&str> = head.lines().chain(tail.lines()).collect();
    let distinct: BTreeSet<&str> = both.iter().copied().collect();
    assert_eq!(
        (head.lines().count(), both.len(), distinct.len()),
        (7, 250, 250)
    );

    // A member that keeps reading holds every partition, until a librdkafka consumer
    // joins the group: the range assignor then gives each two.
    let mut member = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args([
            "consume",
            "grp",
            "--group",
            "g2",
            "--bootstrap",
            &b.bootstrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("shardlog");
    let held = |who: &str| -> usize {
        common::cli(&b, &["group", "describe", "g2"])
            .lines()
            .filter(|l| {
                l.starts_with("grp\t") && l.split('\t').nth(7).is_some_and(|c| c.starts_with(who))
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while held("shardlog") != 4 {
        assert!(
            Instant::now() < deadline,
            "the member never held the partitions"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let c: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("group.id", "g2")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    c.subscribe(&["grp"]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let _ = c.poll(Duration::from_millis(200));
        let mine = c.assignment().map(|a| a.count()).unwrap_or(0);
        if mine == 2 && held("shardlog") == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "partitions never shared (librdkafka has {mine})"
        );
    }
    let _ = member.kill();
    let _ = member.wait();
}
