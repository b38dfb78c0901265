//! Lifecycle and configuration: data-dir lock, SIGTERM under load, clean restarts,
//! layered settings and their errors.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use common::wire::create_topic;
use common::Broker;

fn shardlog() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shardlog"))
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let b = Broker::start(1);
    let out = shardlog()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:1",
            "--metrics-listen",
            "off",
            "--data-dir",
        ])
        .arg(b.data_dir())
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another shardlog process"), "{err}");
    // And the port of a running broker cannot be taken either.
    let other = tempfile::tempdir().expect("tmp");
    let out = shardlog()
        .args([
            "serve",
            "--listen",
            &b.bootstrap(),
            "--metrics-listen",
            "off",
            "--data-dir",
        ])
        .arg(other.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"));
}

#[test]
fn sigterm_under_load_loses_nothing_acknowledged_and_restart_needs_no_recovery() {
    let mut b = Broker::start(2);
    create_topic(&b, "busy", 4);
    let acked: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (bootstrap, a2, s2) = (b.bootstrap(), acked.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "3000")
            .set("retries", "0")
            .create()
            .expect("producer");
        let mut i = 0usize;
        // Bounded by the stop flag and a hard cap.
        while !s2.load(Ordering::Relaxed) && i < 2_000_000 {
            let values: Vec<(usize, String)> = (i..i + 200).map(|n| (n, n.to_string())).collect();
            let batch: Vec<_> = values
                .iter()
                .map(|(n, v)| {
                    let rec = FutureRecord::<(), _>::to("busy")
                        .partition((n % 4) as i32)
                        .payload(v);
                    (*n, p.send_result(rec).map_err(|(e, _)| e))
                })
                .collect();
            for (n, f) in batch {
                if let Ok(f) = f {
                    if let Ok(Ok(_)) = block_on(f) {
                        a2.lock().expect("lock").push(n);
                    }
                }
            }
            i += 200;
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    b.stop(); // SIGTERM while the producer is busy; asserts a clean exit
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 1000, "load was running: {}", acked.len());
    assert!(b.log_text().contains("stopped cleanly"), "{}", b.log_text());

    b.start_again();
    let log = b.log_text();
    let restart = log.rsplit("listening on").nth(1).unwrap_or(&log);
    assert!(restart.contains("no recovery needed"), "{log}");
    assert!(!log.contains("cut "), "{log}");

    let consumer = common::reader(&b, "busy", 0..4);
    let mut seen = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet = 0;
    while Instant::now() < deadline && quiet < 10 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet = 0;
                let n: usize = String::from_utf8_lossy(m.payload().unwrap_or_default())
                    .parse()
                    .expect("number");
                seen.insert(n);
            }
            _ => quiet += 1,
        }
    }
    for n in &acked {
        assert!(seen.contains(n), "acknowledged record {n} lost");
    }
}

#[test]
fn settings_precedence_and_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("shardlog.toml");
    std::fs::write(
        &file,
        "num.partitions = 3\n\"log.segment.bytes\" = 2000000\n",
    )
    .expect("write");
    let print = |env: &[(&str, &str)], flags: &[&str]| {
        let mut c = shardlog();
        c.args(["config", "print", "--config"])
            .arg(&file)
            .args(flags);
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = print(&[], &[]);
    assert!(out.contains("num.partitions = \"3\"  # file"), "{out}");
    assert!(
        out.contains("log.segment.bytes = \"2000000\"  # file"),
        "{out}"
    );
    let out = print(&[("SHARDLOG_NUM_PARTITIONS", "5")], &[]);
    assert!(
        out.contains("num.partitions = \"5\"  # env SHARDLOG_NUM_PARTITIONS"),
        "{out}"
    );
    let out = print(
        &[("SHARDLOG_NUM_PARTITIONS", "5")],
        &["--num-partitions", "7"],
    );
    assert!(
        out.contains("num.partitions = \"7\"  # flag --num-partitions"),
        "{out}"
    );

    std::fs::write(&file, "log.retention.hourz = 5\n").expect("write");
    let out = shardlog()
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown setting `log.retention.hourz`"),
        "{err}"
    );
    let out = shardlog()
        .args(["serve", "--segment-bytes", "lots"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.segment.bytes"));
}
