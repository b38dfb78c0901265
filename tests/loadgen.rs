//! The load generator against the real broker: what it reports matches what a librdkafka
//! consumer reads back, and `--find-limit` produces a limit, a curve and JSON.

mod common;

use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;

use common::Broker;

fn loadgen(b: &Broker, dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let json = dir.join("out.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog-loadgen"))
        .args(["--bootstrap", &b.bootstrap(), "--quiet"])
        .args(["--json", json.to_str().expect("utf8")])
        .args(extra)
        .output()
        .expect("run loadgen");
    assert!(
        out.status.success(),
        "loadgen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("valid json")
}

/// Messages in `topic` read by librdkafka from the beginning of every partition.
fn count_with_librdkafka(b: &Broker, topic: &str, partitions: i32) -> u64 {
    let c = common::reader(b, topic, 0..partitions);
    let mut end = 0;
    for p in 0..partitions {
        end += c
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks")
            .1;
    }
    let mut n = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while n < end as u64 && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            m.expect("message");
            n += 1;
        }
    }
    n
}

#[test]
fn reported_counts_match_what_a_consumer_reads() {
    let b = Broker::start(2);
    let dir = tempfile::tempdir().expect("tmp");
    let report = loadgen(
        &b,
        dir.path(),
        &[
            "--topic",
            "lg",
            "--partitions",
            "4",
            "--duration",
            "2",
            "--rate",
            "5000",
            "--keys",
            "zipf:50",
            "--size",
            "100-300",
            "--compression",
            "lz4",
            "--acks",
            "all",
            "--plot",
            dir.path().join("timeline.svg").to_str().expect("utf8"),
        ],
    );
    // Settings are reported as given, not as Rust debug strings.
    assert_eq!(report["message_size"], "100-300");
    assert_eq!(report["keys"], "zipf:50:1");
    assert_eq!(report["compression"], "lz4");
    let run = &report["run"];
    // One point per second from the first message: no empty first second.
    let timeline = run["timeline"].as_array().expect("timeline");
    assert!(!timeline.is_empty());
    assert!(
        timeline[0]["sent_msgs_per_sec"].as_f64().expect("rate") > 1000.0,
        "{timeline:?}"
    );
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg"))
        .expect("--plot without --find-limit");
    assert!(svg.contains("seconds (produce-ack latency)") && svg.contains("compression lz4"));
    let acked = run["acked"].as_u64().expect("acked");
    assert!(acked >= 9_000, "2 s at 5000 msg/s: {run}");
    assert_eq!(run["failed"], 0);
    assert_eq!(run["sent"].as_u64(), Some(acked));
    assert_eq!(
        run["consumed"].as_u64(),
        Some(acked),
        "loadgen's own consumer read all"
    );
    assert!(run["ack_latency_ms"]["count"].as_u64() == Some(acked));
    assert!(run["e2e_latency_ms"]["p99"].as_f64().expect("p99") > 0.0);
    assert_eq!(count_with_librdkafka(&b, "lg", 4), acked);
}

#[test]
fn find_limit_reports_a_limit_a_curve_and_json() {
    let b = Broker::start(1);
    let dir = tempfile::tempdir().expect("tmp");
    let plot = dir.path().join("curve.svg");
    let report = loadgen(
        &b,
        dir.path(),
        &[
            "--topic",
            "fl",
            "--partitions",
            "2",
            "--duration",
            "1",
            "--find-limit",
            "--max-steps",
            "3",
            "--slo",
            "1000",
            "--consumers",
            "0",
            "--size",
            "200",
            "--plot",
            plot.to_str().expect("utf8"),
        ],
    );
    let probe_rate = report["probe"]["acked_msgs_per_sec"]
        .as_f64()
        .expect("probe");
    assert!(probe_rate > 0.0);
    let steps = report["steps"].as_array().expect("steps");
    let plain = steps.iter().filter(|s| s["phase"] == "step").count();
    assert!((1..=3).contains(&plain), "{steps:?}");
    let first = steps[0]["offered_msgs_per_sec"].as_f64().expect("offered");
    assert!(
        (first - probe_rate / 10.0).abs() < 1.0,
        "first step at 10% of the probe"
    );
    let limit = &report["limit"];
    assert_eq!(limit["partitions"], 2);
    let per_partition = limit["per_partition_msgs_per_sec"].as_f64().expect("limit");
    assert!((per_partition * 2.0 - limit["msgs_per_sec"].as_f64().expect("total")).abs() < 1e-6);
    assert!(limit["runs"].as_u64().expect("runs") >= 1);
    let svg = std::fs::read_to_string(&plot).expect("curve written");
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));
    assert!(svg.contains("latency, ms (log scale)") && svg.contains("compression none"));

    // The planner reads the same JSON: partitions = target / (per-partition limit x headroom).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shardlog-plan"))
        .args([
            "plan",
            "--limit",
            dir.path().join("out.json").to_str().expect("utf8"),
        ])
        .args([
            "--target-mbps",
            "50",
            "--headroom",
            "0.5",
            "--measured-cores",
            "1",
            "--json",
        ])
        .output()
        .expect("run planner");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan json");
    let per_partition_mb = limit["per_partition_mb_per_sec"].as_f64().expect("mb");
    let want = (50.0 / (per_partition_mb * 0.5)).ceil();
    let got = plan["plan"]["partitions"].as_f64().expect("partitions");
    let cores = plan["plan"]["cores"].as_f64().expect("cores");
    assert!(
        got >= want && got < want + cores,
        "{got} partitions for {want} needed"
    );
}

#[test]
fn the_comparison_script_prints_both_brokers_and_their_ratios() {
    let (a, b) = (Broker::start(1), Broker::start(1));
    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new("python3")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/loadgen/compare.py"))
        .args([&a.bootstrap(), &b.bootstrap(), "--duration", "0.5"])
        .args(["--loadgen", env!("CARGO_BIN_EXE_shardlog-loadgen")])
        .current_dir(dir.path())
        .output()
        .expect("run compare.py");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("A/B"), "{text}");
    for row in [
        "closed acks=1 msgs/s",
        "closed acks=all p99 ms",
        "open loop p99 ms",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("{row} missing: {text}"));
        let ratio: f64 = line
            .split_whitespace()
            .last()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no ratio in {line:?}"));
        assert!(ratio > 0.0, "{line}");
    }
}
