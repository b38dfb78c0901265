//! Faults under load, checked like Jepsen checks a log. While three acks=all producers
//! (librdkafka idempotent and not, the Java client idempotent) write numbered streams to a
//! three-replica topic (`min.insync.replicas=2`) and a consumer group reads it and
//! commits, the node leading a
//! partition is killed (`kill -9`) or paused (SIGSTOP) and brought back, one round at a
//! time. Afterwards: every acknowledged record is at the offset it was acknowledged at,
//! with its content; no offset ever held two records; the idempotent stream holds nothing
//! twice; the group's committed offsets are at least what it last committed; the replicas'
//! logs are identical byte for byte. `SHARDLOG_CHAOS_ROUNDS` sets the kill rounds (default
//! 20; a pause round follows every third).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::Cluster;

const TOPIC: &str = "chaos";
const GROUP: &str = "chaos-readers";
/// Acknowledgements this soon after a fault were answered before it.
const IN_FLIGHT: Duration = Duration::from_millis(50);

/// (ISR size, leader) of every partition of the topic in a node's view.
fn partitions(v: &Value) -> Vec<(usize, Option<u64>)> {
    v["image"]["topics"][TOPIC]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p["isr"].as_array().map_or(0, Vec::len),
                        p["leader"].as_u64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A small xorshift for picking victims (no extra dependency; seeded from the clock and
/// printed, so a failing run can be told apart).
struct Pick(u64);

impl Pick {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An acknowledged record: its value, where the broker said it is, and when it said so.
#[derive(Clone)]
struct Ack {
    value: String,
    partition: i32,
    offset: i64,
    at: Instant,
}

/// Before failing on an offset acknowledged for two records: what the partition holds there
/// and where each of the two is stored, when each was acknowledged (ms on the rounds' clock),
/// and what the brokers logged about truncations and the producers of that partition.
fn explain_double_ack(
    nodes: &[common::Broker],
    stored: &BTreeMap<(i32, i64), String>,
    acks: &[Ack],
    (partition, offset): (i32, i64),
    first: &str,
    second: &str,
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let now = Instant::now();
    eprintln!(
        "offset {partition}/{offset} holds {:?}",
        stored.get(&(partition, offset))
    );
    for v in [first, second] {
        let at: Vec<_> = stored
            .iter()
            .filter(|(_, s)| s.as_str() == v)
            .map(|(k, _)| *k)
            .collect();
        let when: Vec<i64> = acks
            .iter()
            .filter(|a| a.value == v)
            .map(|a| now_ms - now.duration_since(a.at).as_millis() as i64)
            .collect();
        eprintln!("{v}: stored at {at:?}, acknowledged at {when:?} ms");
    }
    for (i, n) in nodes.iter().enumerate() {
        for l in n.log_text().lines().filter(|l| {
            l.contains("truncated the log")
                || l.contains("emptied to start")
                || l.contains("has no state for is taken")
                || l.contains("produce refused")
        }) {
            eprintln!("node {}: {l}", i + 1);
        }
    }
}

/// Notes every acknowledgement when librdkafka delivers it (its own thread, so the time is
/// when the answer arrived).
struct Noted(Arc<Mutex<Vec<Ack>>>);

impl rdkafka::ClientContext for Noted {}

impl rdkafka::producer::ProducerContext for Noted {
    type DeliveryOpaque = ();

    fn delivery(&self, r: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        use rdkafka::Message;
        if let Ok(m) = r {
            let at = Instant::now();
            let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
            self.0.lock().expect("lock").push(Ack {
                value,
                partition: m.partition(),
                offset: m.offset(),
                at,
            });
        }
    }
}

/// Writes `prefix`-numbered values with acks=all until `stop`, noting every acknowledgement.
fn writer(
    bootstrap: String,
    prefix: &'static str,
    idempotent: bool,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use rdkafka::config::ClientConfig;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
    std::thread::spawn(move || {
        let producer: ThreadedProducer<Noted> = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set(
                "enable.idempotence",
                if idempotent { "true" } else { "false" },
            )
            .set("retries", "1000")
            .set("linger.ms", "2")
            .set("queue.buffering.max.messages", "2000")
            .set("message.timeout.ms", "60000")
            .create_with_context(Noted(acks))
            .expect("producer");
        let mut n: u64 = 0;
        // Bounded by the stop flag; about 2,000 records a second (the check reads them all
        // back), a full queue waits for acknowledgements.
        while !stop.load(Ordering::Relaxed) {
            let v = format!("{prefix}{n:09}");
            match producer.send(BaseRecord::to(TOPIC).payload(&v).key(&v)) {
                Ok(()) => {
                    n += 1;
                    if n % 10 == 0 {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err((e, _)) => panic!("send: {e}"),
            }
        }
        let _ = producer.flush(Duration::from_secs(60));
    })
}

/// The Java client's idempotent producer (tests/java/ChaosProducer.java) writing
/// `j`-numbered values until its standard input closes; its acknowledgements are noted as
/// its lines arrive.
struct JavaWriter {
    child: std::process::Child,
    /// (values sent, sends that failed).
    lines: std::thread::JoinHandle<(Option<u64>, u64)>,
    _classes: tempfile::TempDir,
}

impl JavaWriter {
    fn start(bootstrap: &str, acks: Arc<Mutex<Vec<Ack>>>) -> JavaWriter {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let classes = tempfile::tempdir().expect("tmp");
        let cp = common::java::compile("ChaosProducer", classes.path());
        let mut child = Command::new("java")
            .args(["-cp", &cp, "ChaosProducer", bootstrap, TOPIC, "j"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run java");
        let stdout = child.stdout.take().expect("stdout");
        let lines = std::thread::spawn(move || {
            let mut failed = 0;
            let mut infos = std::collections::VecDeque::new();
            // Bounded by the program's output, which ends when it exits.
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let f: Vec<&str> = line.split(' ').collect();
                match f.as_slice() {
                    ["ack", p, o, v] => {
                        if let (Ok(partition), Ok(offset)) = (p.parse(), o.parse()) {
                            acks.lock().expect("lock").push(Ack {
                                value: v.to_string(),
                                partition,
                                offset,
                                at: Instant::now(),
                            });
                        }
                    }
                    ["done", n] => {
                        if failed > 0 {
                            for l in &infos {
                                eprintln!("Java producer: {l}");
                            }
                        }
                        return (n.parse().ok(), failed);
                    }
                    ["info", ..] => {
                        if infos.len() == 40 {
                            infos.pop_front();
                        }
                        infos.push_back(line.clone());
                    }
                    ["err", ..] => {
                        failed += 1;
                        if failed <= 20 {
                            eprintln!("Java producer: {line}");
                        }
                    }
                    _ => {}
                }
            }
            (None, failed)
        });
        JavaWriter {
            child,
            lines,
            _classes: classes,
        }
    }

    /// Closes its input (it flushes and exits): how many values it sent, how many sends
    /// failed.
    fn finish(mut self) -> (u64, u64) {
        drop(self.child.stdin.take());
        let (sent, failed) = self.lines.join().expect("java output");
        let _ = self.child.wait();
        (sent.expect("the Java producer finished"), failed)
    }
}

/// A group member reading the topic until `stop`, committing after every record it reads:
/// the offsets of its last successful commit per partition.
fn group_reader(
    bootstrap: String,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeMap<i32, i64>> {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::Message;
    std::thread::spawn(move || {
        let m: BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", GROUP)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "10000")
            .create()
            .expect("consumer");
        m.subscribe(&[TOPIC]).expect("subscribe");
        let mut committed = BTreeMap::new();
        // Bounded by the stop flag.
        while !stop.load(Ordering::Relaxed) {
            let Some(Ok(msg)) = m.poll(Duration::from_millis(200)) else {
                continue;
            };
            let (p, next) = (msg.partition(), msg.offset() + 1);
            if m.commit_message(&msg, CommitMode::Sync).is_ok() {
                let e = committed.entry(p).or_insert(next);
                *e = (*e).max(next);
            }
        }
        committed
    })
}

/// The group's committed offset per partition, as `group describe` reads it.
fn committed_offsets(b: &common::Broker) -> BTreeMap<i32, i64> {
    let out = common::cli(b, &["group", "describe", GROUP]);
    out.lines()
        .filter(|l| l.starts_with(TOPIC))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            Some((cols.get(1)?.parse().ok()?, cols.get(2)?.parse().ok()?))
        })
        .collect()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn acknowledged_records_survive_killed_and_paused_nodes() {
    // Kill rounds (a pause round follows every third).
    let rounds: usize = std::env::var("SHARDLOG_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // Pauses of 2-4 s outlast the lag timeout: a paused follower leaves the ISR by lag.
    let mut c = Cluster::start_with(3, "\"replica.lag.time.max.ms\" = 1000\n");
    common::cluster::create_replicated(&c.nodes[0], TOPIC, 3, 2);
    let whole = |v: &[Value]| {
        common::cluster::all_live(v, 3)
            && v.iter()
                .all(|v| partitions(v).iter().map(|p| p.0).collect::<Vec<_>>() == [3, 3, 3])
    };
    c.wait_for(&[0, 1, 2], "the topic everywhere", whole);

    let bootstrap = c
        .nodes
        .iter()
        .map(|n| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers = [
        writer(bootstrap.clone(), "i", true, acks.clone(), stop.clone()),
        writer(bootstrap.clone(), "n", false, acks.clone(), stop.clone()),
    ];
    let java = JavaWriter::start(&bootstrap, acks.clone());
    let reader = group_reader(bootstrap, stop.clone());

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("chaos seed {seed}");
    let mut pick = Pick(seed);
    // (when, partitions the victim led, whether it was the controller)
    let mut kills: Vec<(Instant, Vec<i32>, bool)> = Vec::new();
    let mut pauses: Vec<(Instant, Vec<i32>, bool)> = Vec::new();
    // Every third kill is followed by a pause.
    let faults: Vec<bool> = (0..rounds)
        .flat_map(|k| {
            if k % 3 == 2 {
                vec![false, true]
            } else {
                vec![false]
            }
        })
        .collect();
    for (round, pause) in faults.into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(1500));
        // The victim leads at least one partition.
        let view = c.view(0).expect("view");
        let led = partitions(&view);
        let leaders: BTreeSet<u64> = led.iter().filter_map(|p| p.1).collect();
        let leaders: Vec<u64> = leaders.into_iter().collect();
        let node = leaders[pick.next(leaders.len() as u64) as usize];
        let victim = (node - 1) as usize;
        let its: Vec<i32> = (0..led.len() as i32)
            .filter(|p| led[*p as usize].1 == Some(node))
            .collect();
        let controller = view["controller"].as_u64() == Some(node);
        eprintln!(
            "round {round} at {} ms: {} node {node}, leader of {its:?} ({} acknowledged so far)",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis()),
            if pause { "pausing" } else { "killing" },
            acks.lock().expect("lock").len()
        );
        let down_for = Duration::from_millis(2000 + pick.next(2000));
        if pause {
            let pid = c.nodes[victim].pid().expect("pid") as i32;
            // SAFETY: signalling a child process this test started.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            pauses.push((Instant::now(), its, controller));
            std::thread::sleep(down_for);
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        } else {
            c.nodes[victim].kill();
            kills.push((Instant::now(), its, controller));
            std::thread::sleep(down_for);
            c.nodes[victim].start_again();
        }
        // Healed: every node live, every ISR whole again, before the next fault.
        c.wait_for(&[0, 1, 2], "the cluster whole again", whole);
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let (java_sent, java_failed) = java.finish();
    let last_commits = reader.join().expect("reader");
    let acks = acks.lock().expect("lock").clone();

    // Failover: from the fault to the first acknowledgement on each partition the victim
    // led (the round's figure is the slowest of them). Answers arriving within 50 ms of
    // the fault were on their way before it.
    let failover = |faults: &[(Instant, Vec<i32>, bool)], what: &str| -> Vec<Duration> {
        let mut out: Vec<Duration> = faults
            .iter()
            .filter_map(|(at, parts, controller)| {
                let took = parts
                    .iter()
                    .map(|p| {
                        acks.iter()
                            .filter(|a| !a.value.starts_with('j'))
                            .filter(|a| a.partition == *p && a.at > *at + IN_FLIGHT)
                            .map(|a| a.at - *at)
                            .min()
                    })
                    .collect::<Option<Vec<Duration>>>()?
                    .into_iter()
                    .max()?;
                let role = if *controller { " (the controller)" } else { "" };
                eprintln!("{what}{role}: first acknowledgement after {took:?}");
                Some(took)
            })
            .collect();
        out.sort();
        out
    };
    let (killed, paused) = (failover(&kills, "kill -9"), failover(&pauses, "SIGSTOP"));
    eprintln!(
        "failover after kill -9: {} rounds, p50 {:?}, max {:?}; after SIGSTOP: {} rounds, p50 {:?}, max {:?}",
        killed.len(),
        percentile(&killed, 0.5),
        killed.last().copied().unwrap_or_default(),
        paused.len(),
        percentile(&paused, 0.5),
        paused.last().copied().unwrap_or_default(),
    );

    assert!(
        acks.len() >= 1000,
        "the producers made progress: {}",
        acks.len()
    );
    let java_acked = acks.iter().filter(|a| a.value.starts_with('j')).count();
    assert!(
        java_acked > 100,
        "the Java producer made progress: {java_acked}"
    );
    // Read everything back, by offset.
    let ends: BTreeMap<i32, i64> = acks.iter().fold(BTreeMap::new(), |mut m, a| {
        let e = m.entry(a.partition).or_insert(0);
        *e = (*e).max(a.offset + 1);
        m
    });
    let mut stored: BTreeMap<(i32, i64), String> = BTreeMap::new();
    {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::Message;
        let consumer: BaseConsumer = common::reader(&c.nodes[0], TOPIC, 0..3);
        let deadline = Instant::now() + Duration::from_secs(90);
        let done = |s: &BTreeMap<(i32, i64), String>| {
            ends.iter()
                .all(|(p, end)| s.range((*p, *end - 1)..(*p, i64::MAX)).next().is_some())
        };
        // Bounded by the deadline: reads until every partition is read past its last
        // acknowledged offset and the stream has been quiet for a while.
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    let prev = stored.insert((m.partition(), m.offset()), v.clone());
                    assert!(
                        prev.as_ref().is_none_or(|p| *p == v),
                        "offset {}/{} held {prev:?} and {v}",
                        m.partition(),
                        m.offset()
                    );
                    quiet_since = Instant::now();
                }
                _ if done(&stored) && quiet_since.elapsed() > Duration::from_secs(2) => break,
                _ => {}
            }
        }
    }
    // Every acknowledgement names the offset its record is at, with its content; no two
    // acknowledgements name one offset.
    let mut at_offset: BTreeMap<(i32, i64), &str> = BTreeMap::new();
    let mut wrong = Vec::new();
    // A retry of a batch written earlier may be answered DUPLICATE_SEQUENCE_NUMBER (its
    // offsets no longer remembered): the client reports offset -1, and the record must be
    // in its partition.
    let held: std::collections::HashSet<(i32, &str)> =
        stored.iter().map(|((p, _), v)| (*p, v.as_str())).collect();
    let mut without_offset = 0usize;
    for a in &acks {
        if a.offset < 0 {
            without_offset += 1;
            if !held.contains(&(a.partition, a.value.as_str())) {
                wrong.push((a.partition, a.offset, a.value.clone()));
            }
            continue;
        }
        if let Some(other) = at_offset.insert((a.partition, a.offset), &a.value) {
            explain_double_ack(
                &c.nodes,
                &stored,
                &acks,
                (a.partition, a.offset),
                other,
                &a.value,
            );
            panic!(
                "offset {}/{} acknowledged for {other} and {}",
                a.partition, a.offset, a.value
            );
        }
        if stored.get(&(a.partition, a.offset)) != Some(&a.value) {
            wrong.push((a.partition, a.offset, a.value.clone()));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} acknowledged records not at their offsets (first 10): {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    // The idempotent streams hold each value once; the other may hold retried duplicates.
    // (A Java producer whose sends failed by delivery.timeout.ms bumps its epoch and sends
    // its in-flight batches again under it (KIP-360): one of those may then be stored
    // twice, as on Kafka. Only then are its duplicates counted instead of refused, and the
    // brokers' refusals printed to tell why it could not deliver.)
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in stored.values() {
        *counts.entry(v.as_str()).or_default() += 1;
    }
    let twice = |prefix: char| -> Vec<&str> {
        counts
            .iter()
            .filter(|(v, n)| v.starts_with(prefix) && **n > 1)
            .map(|(v, _)| *v)
            .collect()
    };
    let (i_twice, j_twice) = (twice('i'), twice('j'));
    assert!(
        i_twice.is_empty(),
        "idempotent records stored twice: {:?}",
        &i_twice[..i_twice.len().min(10)]
    );
    if java_failed == 0 {
        assert!(
            j_twice.is_empty(),
            "Java idempotent records stored twice: {:?}",
            &j_twice[..j_twice.len().min(10)]
        );
    } else {
        eprintln!(
            "the Java producer failed {java_failed} sends (delivery timeout); {} of its values stored twice: {:?}",
            j_twice.len(),
            &j_twice[..j_twice.len().min(10)]
        );
        for (i, n) in c.nodes.iter().enumerate() {
            for l in n
                .log_text()
                .lines()
                .filter(|l| l.contains("produce refused") || l.contains("produce failed"))
                .take(20)
            {
                eprintln!("node {}: {l}", i + 1);
            }
            if let Some(addr) = n.metrics_addr() {
                let m = common::http_get(&addr, "/metrics").1;
                for l in m
                    .lines()
                    .filter(|l| l.starts_with("shardlog_produce_partition_errors_total"))
                {
                    eprintln!("node {}: {l}", i + 1);
                }
            }
        }
    }
    let dup_plain = counts
        .iter()
        .filter(|(v, n)| v.starts_with('n') && **n > 1)
        .count();

    // For the record: leaders that met a producer they had no state for (taken at its
    // sequence, as Kafka does; each one is worth explaining).
    for (i, n) in c.nodes.iter().enumerate() {
        for l in n
            .log_text()
            .lines()
            .filter(|l| l.contains("has no state for is taken at its sequence"))
            .take(5)
        {
            eprintln!("node {}: {l}", i + 1);
        }
    }

    // The group's offsets survived every fault.
    let committed = committed_offsets(&c.nodes[1]);
    for (p, last) in &last_commits {
        assert!(
            committed.get(p).is_some_and(|c| c >= last),
            "partition {p}: committed {:?}, last successful commit {last}",
            committed.get(p)
        );
    }
    assert!(!last_commits.is_empty(), "the group committed");

    // Healed, the three replicas of each partition are the same bytes.
    common::cluster::wait_replicas_identical(&c, TOPIC, 3, "replicas differ once healed");
    eprintln!(
        "{} rounds ({} kills, {} pauses): {} acknowledged ({java_acked} of {java_sent} sent by the Java client, {without_offset} as written earlier), {} records stored, none lost, none at a wrong offset, librdkafka idempotent none twice, Java idempotent {} twice ({java_failed} failed sends), non-idempotent {dup_plain} retried duplicates; group committed {:?}",
        kills.len() + pauses.len(),
        kills.len(),
        pauses.len(),
        acks.len(),
        stored.len(),
        j_twice.len(),
        committed
    );
}
