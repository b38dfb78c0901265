//! Faults under load, checked like Jepsen checks a log: while an idempotent acks=all
//! producer writes a numbered stream to a three-replica topic, nodes are killed (`kill -9`)
//! or paused (SIGSTOP) and brought back, one at a time. Afterwards every acknowledged
//! record must be in the topic, none twice. `SHARDLOG_CHAOS_ROUNDS` sets the rounds
//! (default 3; a soak runs many more).

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cluster::Cluster;

/// ISR sizes of every partition of `topic` in a node's view.
fn isr_sizes(v: &Value, topic: &str) -> Vec<usize> {
    v["image"]["topics"][topic]["partitions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| p["isr"].as_array().map_or(0, Vec::len))
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

#[test]
fn acknowledged_records_survive_killed_and_paused_nodes() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let rounds: usize = std::env::var("SHARDLOG_CHAOS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut c = Cluster::start(3);
    common::cluster::create_replicated(&c.nodes[0], "chaos", 3, 2);
    c.wait_for(&[0, 1, 2], "the topic everywhere", |v| {
        v.iter().all(|v| isr_sizes(v, "chaos") == vec![3, 3, 3])
    });

    // The producer: numbered values, acks=all, idempotent, bootstrapped at every node.
    let bootstrap = c
        .nodes
        .iter()
        .map(|n| n.bootstrap())
        .collect::<Vec<_>>()
        .join(",");
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("enable.idempotence", "true")
                .set("linger.ms", "2")
                .set("message.timeout.ms", "60000")
                .create()
                .expect("producer");
            let mut i: u64 = 0;
            // Bounded by the stop flag; each pass sends 50 and waits for their reports.
            while !stop.load(Ordering::Relaxed) {
                let sends: Vec<_> = (i..i + 50)
                    .map(|n| {
                        let v = format!("{n:09}");
                        (
                            n,
                            producer
                                .send_result(FutureRecord::to("chaos").payload(&v).key(&v))
                                .map_err(|(e, _)| e),
                        )
                    })
                    .collect();
                for (n, s) in sends {
                    if let Ok(f) = s {
                        if let Ok(Ok(_)) = futures::executor::block_on(f) {
                            acked.lock().expect("lock").insert(n);
                        }
                    }
                }
                i += 50;
            }
        })
    };

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        | 1;
    eprintln!("chaos seed {seed}");
    let mut pick = Pick(seed);
    for round in 0..rounds {
        std::thread::sleep(Duration::from_millis(1500));
        let victim = pick.next(3) as usize;
        let pause = pick.next(2) == 0;
        let before = acked.lock().expect("lock").len();
        eprintln!(
            "round {round}: {} node {} ({before} acknowledged so far)",
            if pause { "pausing" } else { "killing" },
            victim + 1
        );
        let down_for = Duration::from_millis(2000 + pick.next(2000));
        if pause {
            let pid = c.nodes[victim].pid().expect("pid") as i32;
            // SAFETY: signalling a child process this test started.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            std::thread::sleep(down_for);
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGCONT) };
        } else {
            c.nodes[victim].kill();
            std::thread::sleep(down_for);
            c.nodes[victim].start_again();
        }
        // Healed: every node live, every ISR whole again, before the next fault.
        c.wait_for(&[0, 1, 2], "the cluster whole again", |v| {
            common::cluster::all_live(v, 3)
                && v.iter().all(|v| isr_sizes(v, "chaos") == vec![3, 3, 3])
        });
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");

    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 500,
        "the producer made progress: {}",
        acked.len()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut records = 0usize;
    {
        use rdkafka::consumer::BaseConsumer;
        use rdkafka::Message;
        let consumer: BaseConsumer = common::reader(&c.nodes[0], "chaos", 0..3);
        // Bounded by the deadline: reads until every acknowledged record is seen and the
        // stream has been quiet for a while.
        let mut quiet_since = Instant::now();
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string();
                    if let Ok(n) = v.parse::<u64>() {
                        records += 1;
                        seen.insert(n);
                    }
                    quiet_since = Instant::now();
                }
                _ => {
                    if acked.is_subset(&seen) && quiet_since.elapsed() > Duration::from_secs(2) {
                        break;
                    }
                }
            }
        }
    }
    let lost: Vec<&u64> = acked.difference(&seen).take(10).collect();
    assert!(
        lost.is_empty(),
        "acknowledged records lost (first 10): {lost:?}"
    );
    assert_eq!(
        records,
        seen.len(),
        "{} duplicate records",
        records - seen.len()
    );
    eprintln!(
        "{} acknowledged, {} in the topic, none lost, none twice",
        acked.len(),
        seen.len()
    );
}
