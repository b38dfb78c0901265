//! Consumer groups with librdkafka: partition sharing, rebalances, expulsion, committed
//! offsets across broker restarts, at-least-once across a consumer crash.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use common::wire::create_topic;
use common::Broker;

const FAST: &[&str] = &[
    "--group-initial-rebalance-delay-ms",
    "300",
    "--group-min-session-timeout-ms",
    "1000",
];

fn consumer_config(bootstrap: &str, group: &str, strategy: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", "3000")
        .set("heartbeat.interval.ms", "300")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", strategy)
        .set("topic.metadata.refresh.interval.ms", "1000");
    c
}

fn produce(b: &Broker, topic: &str, partitions: i32, per_partition: usize) {
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let futs: Vec<_> = (0..partitions)
        .flat_map(|part| (0..per_partition).map(move |i| (part, i)))
        .map(|(part, i)| {
            let v = format!("{part}-{i}");
            p.send_result(FutureRecord::<(), _>::to(topic).partition(part).payload(&v))
                .map_err(|(e, _)| e)
                .expect("enqueue")
        })
        .collect();
    for f in futs {
        block_on(f).expect("not cancelled").expect("delivered");
    }
}

/// A consumer of `group` subscribed to `topic`.
fn subscribed(b: &Broker, group: &str, topic: &str, strategy: &str) -> BaseConsumer {
    let consumer: BaseConsumer = consumer_config(&b.bootstrap(), group, strategy)
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// A group member polling on its own thread, recording what it reads and holds.
struct Member {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    assigned: Arc<Mutex<HashSet<i32>>>,
    handle: Option<JoinHandle<()>>,
}

impl Member {
    fn start(b: &Broker, group: &str, topic: &str, strategy: &str) -> Member {
        let consumer = subscribed(b, group, topic, strategy);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let assigned = Arc::new(Mutex::new(HashSet::new()));
        let (s, v, a) = (stop.clone(), seen.clone(), assigned.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
                    let payload =
                        String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    v.lock().expect("lock").push(payload);
                }
                let now: HashSet<i32> = consumer
                    .assignment()
                    .map(|t| t.elements().iter().map(|e| e.partition()).collect())
                    .unwrap_or_default();
                *a.lock().expect("lock") = now;
            }
            // Dropping the consumer closes it: LeaveGroup.
            drop(consumer);
        });
        Member {
            stop,
            seen,
            assigned,
            handle: Some(handle),
        }
    }

    fn assigned(&self) -> HashSet<i32> {
        self.assigned.lock().expect("lock").clone()
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().expect("lock").clone()
    }

    fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().expect("member thread");
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.close();
    }
}

/// Waits until `check` holds, polling; panics with `what` after `secs`.
fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for: {what}");
}

fn sizes(members: &[&Member]) -> Vec<usize> {
    let mut v: Vec<usize> = members.iter().map(|m| m.assigned().len()).collect();
    v.sort_unstable();
    v
}

fn disjoint_cover(members: &[&Member], partitions: i32) -> bool {
    let mut all = HashSet::new();
    for m in members {
        for p in m.assigned() {
            if !all.insert(p) {
                return false;
            }
        }
    }
    all.len() == partitions as usize
}

/// A consumer in a child process (this test binary running `child_consumer`), so it can be
/// killed without a LeaveGroup.
fn spawn_child_consumer(b: &Broker, group: &str, topic: &str, delay_ms: u64) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["child_consumer", "--exact", "--ignored", "--nocapture"])
        .env("CHILD_BOOTSTRAP", b.bootstrap())
        .env("CHILD_GROUP", group)
        .env("CHILD_TOPIC", topic)
        .env("CHILD_DELAY_MS", delay_ms.to_string())
        .spawn()
        .expect("spawn child consumer")
}

#[test]
#[ignore = "helper: run as a child process by other tests"]
fn child_consumer() {
    let (Ok(bootstrap), Ok(group), Ok(topic)) = (
        std::env::var("CHILD_BOOTSTRAP"),
        std::env::var("CHILD_GROUP"),
        std::env::var("CHILD_TOPIC"),
    ) else {
        return;
    };
    let consumer: BaseConsumer = consumer_config(&bootstrap, &group, "range")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic.as_str()]).expect("subscribe");
    let delay = std::env::var("CHILD_DELAY_MS")
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    // Runs until killed (bounded at 10 minutes).
    let deadline = Instant::now() + Duration::from_secs(600);
    while Instant::now() < deadline {
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
            // "Process" the message, then commit it: a crash loses nothing committed.
            std::thread::sleep(Duration::from_millis(delay));
            let _ = consumer.commit_consumer_state(CommitMode::Sync);
        }
    }
}

#[test]
fn members_share_partitions_and_take_over_from_leavers_and_crashes() {
    let b = Broker::start_with(2, FAST);
    create_topic(&b, "shared", 6);
    produce(&b, "shared", 6, 100);

    let mut a = Member::start(&b, "g1", "shared", "range");
    let mut m2 = Member::start(&b, "g1", "shared", "range");
    wait_for(30, "two members with 3 partitions each", || {
        sizes(&[&a, &m2]) == vec![3, 3] && disjoint_cover(&[&a, &m2], 6)
    });
    wait_for(30, "all 600 messages read", || {
        a.seen().len() + m2.seen().len() >= 600
    });
    let mut all: Vec<String> = a.seen();
    all.extend(m2.seen());
    let unique: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 600, "each message read once");
    assert_eq!(unique.len(), 600);

    let mut c = Member::start(&b, "g1", "shared", "range");
    wait_for(30, "three members with 2 partitions each", || {
        sizes(&[&a, &m2, &c]) == vec![2, 2, 2] && disjoint_cover(&[&a, &m2, &c], 6)
    });

    // One leaves cleanly: the other two take its partitions.
    a.close();
    wait_for(30, "two members after a clean leave", || {
        sizes(&[&m2, &c]) == vec![3, 3] && disjoint_cover(&[&m2, &c], 6)
    });

    // One is killed (no LeaveGroup): it is expelled after its session timeout.
    let mut child = spawn_child_consumer(&b, "g1", "shared", 0);
    wait_for(30, "the child joined", || sizes(&[&m2, &c]) == vec![2, 2]);
    child.kill().expect("kill child");
    let _ = child.wait();
    wait_for(
        30,
        "survivors took over the crashed member's partitions",
        || sizes(&[&m2, &c]) == vec![3, 3] && disjoint_cover(&[&m2, &c], 6),
    );
    m2.close();
    c.close();
    assert!(
        b.log_text().contains("member session expired"),
        "{}",
        b.log_text()
    );
}

#[test]
fn committed_offsets_survive_a_broker_restart() {
    let mut b = Broker::start_with(2, FAST);
    create_topic(&b, "resume", 2);
    produce(&b, "resume", 2, 50);
    {
        let consumer = subscribed(&b, "g2", "resume", "range");
        let mut read = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while read < 60 && Instant::now() < deadline {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
            }
        }
        assert_eq!(read, 60);
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("resume", 0);
        tpl.add_partition("resume", 1);
        let committed = consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed");
        let total: i64 = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            })
            .sum();
        assert_eq!(total, 60);
    }
    b.restart();
    let consumer = subscribed(&b, "g2", "resume", "range");
    let mut rest = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while rest.len() < 40 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            rest.push((m.partition(), m.offset()));
        }
    }
    assert_eq!(
        rest.len(),
        40,
        "resumed exactly after the committed offsets"
    );
    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(1000)) {
        panic!("read past the end: {}:{}", m.partition(), m.offset());
    }
}

#[test]
fn at_least_once_across_a_consumer_crash() {
    let b = Broker::start_with(1, FAST);
    create_topic(&b, "alo", 1);
    produce(&b, "alo", 1, 200);
    let mut child = spawn_child_consumer(&b, "g3", "alo", 25);
    let consumer: BaseConsumer = consumer_config(&b.bootstrap(), "g3", "range")
        .create()
        .expect("consumer");
    let committed_now = || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition("alo", 0);
        match consumer
            .committed_offsets(tpl, Duration::from_secs(10))
            .expect("committed")
            .elements()[0]
            .offset()
        {
            Offset::Offset(o) => o,
            _ => 0,
        }
    };
    // Let it read and commit part of the stream (it takes 25 ms per message), then crash it.
    wait_for(60, "the child committed something", || committed_now() > 0);
    child.kill().expect("kill");
    let _ = child.wait();
    let committed = committed_now();
    consumer.subscribe(&["alo"]).expect("subscribe");
    let mut offsets = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while offsets.last().copied() != Some(199) && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            offsets.push(m.offset());
        }
    }
    // Nothing lost: the new member starts at the last commit and reads to the end.
    assert!(
        committed > 0 && committed < 200,
        "the crash came mid-stream: {committed}"
    );
    assert_eq!(
        offsets.first().copied(),
        Some(committed),
        "resumes at the commit"
    );
    assert_eq!(offsets, (committed..200).collect::<Vec<_>>());
}

#[test]
fn cooperative_sticky_assignment() {
    let b = Broker::start_with(2, FAST);
    create_topic(&b, "coop", 6);
    produce(&b, "coop", 6, 20);
    let mut a = Member::start(&b, "g4", "coop", "cooperative-sticky");
    wait_for(30, "first member owns all partitions", || {
        a.assigned().len() == 6
    });
    let before = a.assigned();
    let mut m2 = Member::start(&b, "g4", "coop", "cooperative-sticky");
    wait_for(40, "incremental rebalance to 3 + 3", || {
        sizes(&[&a, &m2]) == vec![3, 3] && disjoint_cover(&[&a, &m2], 6)
    });
    assert!(a.assigned().is_subset(&before));
    wait_for(30, "all 120 messages read", || {
        let all: HashSet<String> = a.seen().into_iter().chain(m2.seen()).collect();
        all.len() == 120
    });
    let by_member: HashMap<&str, usize> = [("a", a.seen().len()), ("b", m2.seen().len())]
        .into_iter()
        .collect();
    assert!(by_member["a"] > 0);
    a.close();
    m2.close();
}

fn cli(b: &Broker, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(args)
        .args(["--bootstrap", &b.bootstrap()])
        .output()
        .expect("run cli");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The row of `group describe` output for a partition, split on tabs.
fn row(out: &str, topic: &str, partition: i32) -> Vec<String> {
    out.lines()
        .map(|l| l.split('\t').map(str::to_string).collect::<Vec<_>>())
        .find(|r| r.len() >= 9 && r[0] == topic && r[1] == partition.to_string())
        .unwrap_or_else(|| panic!("no row for {topic}/{partition} in:\n{out}"))
}

#[test]
fn group_cli_shows_lag_and_resets_offsets() {
    let b = Broker::start_with(2, FAST);
    create_topic(&b, "lagging", 1);
    produce(&b, "lagging", 1, 100);
    {
        let consumer = subscribed(&b, "slow", "lagging", "range");
        let mut read = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while read < 40 && Instant::now() < deadline {
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
                if read == 40 {
                    let mut tpl = TopicPartitionList::new();
                    tpl.add_partition_offset("lagging", 0, Offset::Offset(m.offset() + 1))
                        .expect("tpl");
                    consumer.commit(&tpl, CommitMode::Sync).expect("commit");
                }
            }
        }
    }
    let (ok, out) = cli(&b, &["group", "list"]);
    assert!(ok && out.contains("slow\tEmpty"), "{out}");
    let (ok, out) = cli(&b, &["group", "describe", "slow", "--window", "1"]);
    assert!(ok, "{out}");
    let r = row(&out, "lagging", 0);
    assert_eq!(
        (r[2].as_str(), r[3].as_str(), r[4].as_str()),
        ("40", "100", "60"),
        "{out}"
    );
    assert_eq!(r[8], "STALLED", "commits not moving while lag > 0: {out}");

    // A reset is a dry run unless --execute: the plan is shown, nothing moves.
    let reset = ["group", "reset-offsets", "slow", "--topic", "lagging"];
    let (ok, out) = cli(&b, &[&reset[..], &["--to-offset", "10"]].concat());
    assert!(ok && out.contains("lagging\t0\t40\t10"), "{out}");
    let (_, out) = cli(&b, &["group", "describe", "slow"]);
    assert_eq!(
        row(&out, "lagging", 0)[2],
        "40",
        "a dry run changes nothing: {out}"
    );
    let (ok, out) = cli(
        &b,
        &[&reset[..], &["--to-offset", "10", "--execute"]].concat(),
    );
    assert!(ok, "{out}");
    let (_, out) = cli(&b, &["group", "describe", "slow"]);
    let r = row(&out, "lagging", 0);
    assert_eq!((r[2].as_str(), r[4].as_str()), ("10", "90"), "{out}");
    // Shifted back from the committed offset, clamped at the log start; every topic of the
    // group; one partition; a time before everything is the earliest offset.
    let shifted = [&reset[..], &["--shift-by", "-4", "--execute"]].concat();
    assert!(cli(&b, &shifted).0);
    assert!(cli(&b, &shifted).0);
    let (_, out) = cli(&b, &["group", "describe", "slow"]);
    assert_eq!(row(&out, "lagging", 0)[2], "2", "{out}");
    let all = [
        "group",
        "reset-offsets",
        "slow",
        "--all-topics",
        "--shift-by",
        "-9",
    ];
    let (ok, out) = cli(&b, &all);
    assert!(ok && out.contains("lagging\t0\t2\t0"), "{out}");
    let (ok, out) = cli(
        &b,
        &[
            "group",
            "reset-offsets",
            "slow",
            "--topic",
            "lagging:0",
            "--to-datetime",
            "1970-01-01T00:00:00Z",
        ],
    );
    assert!(ok && out.contains("lagging\t0\t2\t0"), "{out}");
    let (ok, out) = cli(
        &b,
        &[
            "group",
            "reset-offsets",
            "slow",
            "--topic",
            "lagging:7",
            "--to-earliest",
        ],
    );
    assert!(!ok && out.contains("no partition 7"), "{out}");

    // An active group cannot be reset, and describe names the member holding the partition.
    let mut m = Member::start(&b, "slow", "lagging", "range");
    wait_for(30, "member assigned", || m.assigned().len() == 1);
    let (_, out) = cli(&b, &["group", "describe", "slow"]);
    let r = row(&out, "lagging", 0);
    assert!(r[5].starts_with("rdkafka"), "consumer id shown: {out}");
    let (ok, out) = cli(
        &b,
        &[
            "group",
            "reset-offsets",
            "slow",
            "--topic",
            "lagging",
            "--to-earliest",
        ],
    );
    assert!(!ok && out.contains("active"), "{out}");
    // Nor deleted while it has a member; once empty it is, offsets and all.
    let (ok, out) = cli(&b, &["group", "delete", "slow"]);
    assert!(!ok && out.contains("has members"), "{out}");
    m.close();
    wait_for(30, "the group empty", || {
        cli(&b, &["group", "list"]).1.contains("slow\tEmpty")
    });
    let (ok, out) = cli(&b, &["group", "delete", "slow"]);
    assert!(ok && out.contains("deleted group slow"), "{out}");
    assert!(!cli(&b, &["group", "list"]).1.contains("slow"));
    let (ok, out) = cli(&b, &["group", "delete", "slow"]);
    assert!(!ok && out.contains("no such group"), "{out}");
}

#[test]
fn static_member_restart_keeps_its_partitions_without_a_rebalance() {
    let b = Broker::start_with(2, FAST);
    create_topic(&b, "static", 4);
    let start = |instance: &str| -> BaseConsumer {
        let c: BaseConsumer = consumer_config(&b.bootstrap(), "g5", "range")
            .set("group.instance.id", instance)
            .set("session.timeout.ms", "6000")
            .create()
            .expect("consumer");
        c.subscribe(&["static"]).expect("subscribe");
        c
    };
    let held = |c: &BaseConsumer| -> HashSet<i32> {
        c.assignment()
            .map(|t| t.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    };
    let a = start("instance-a");
    let other = start("instance-b");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && (held(&a).len() != 2 || held(&other).len() != 2) {
        a.poll(Duration::from_millis(50));
        other.poll(Duration::from_millis(50));
    }
    let (before_a, before_b) = (held(&a), held(&other));
    assert_eq!((before_a.len(), before_b.len()), (2, 2));
    // A static member does not leave the group when it closes (KIP-345)...
    drop(a);
    let a = start("instance-a");
    // ...and coming back within its session timeout it gets the same partitions, while the
    // other member keeps its own throughout (no rebalance).
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline && held(&a) != before_a {
        a.poll(Duration::from_millis(50));
        other.poll(Duration::from_millis(50));
        assert_eq!(
            held(&other),
            before_b,
            "the other member was not rebalanced"
        );
    }
    assert_eq!(held(&a), before_a);
}
