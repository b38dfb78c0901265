//! Damage on disk: a wrong index entry is never followed (the index is rebuilt), a corrupt
//! batch is logged once and counted, `shardlog log check` finds both offline, and the
//! operator's procedure (DeleteRecords past the damaged range) gets consumers going again.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::Message;
use shardlog::admin::client::Client;
use shardlog::log::batch::BatchScan;
use shardlog::log::index::OffsetIndex;
use shardlog::log::segment::file_name;

use common::wire::{create_topic_with, fetch, produce};
use common::{cli, http_get, metric_sample, record_batch, Broker};

fn segment_bases(dir: &Path) -> Vec<i64> {
    let mut v: Vec<i64> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| {
            let n = e.expect("entry").file_name().to_string_lossy().to_string();
            n.strip_suffix(".log").and_then(|b| b.parse().ok())
        })
        .collect();
    v.sort_unstable();
    v
}

/// (position, base offset) of every batch in a segment file.
fn batches(path: &PathBuf) -> Vec<(usize, i64)> {
    let bytes = std::fs::read(path).expect("segment");
    BatchScan::new(&bytes, true)
        .map(|(at, h)| (at, h.base_offset))
        .collect()
}

fn log_check(data: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shardlog"))
        .args(["log", "check"])
        .arg(data)
        .output()
        .expect("run log check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
    )
}

#[test]
fn damaged_index_and_batches_are_handled_and_the_operator_gets_past_them() {
    let mut b = Broker::start(1);
    create_topic_with(
        &b,
        "hurt",
        1,
        &["segment.bytes=2000", "index.interval.bytes=300"],
    );
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    for i in 0..120 {
        let v = format!("value {i:04} {}", "x".repeat(60));
        assert_eq!(
            produce(&mut c, "hurt", 0, record_batch(&[v.as_bytes()], 1)).0,
            0
        );
    }
    b.stop();
    let data = b.data_dir();
    let (ok, report) = log_check(&data);
    assert!(ok, "a healthy data dir checks clean:\n{report}");
    let dir = data.join("topics").join("hurt-0");
    let bases = segment_bases(&dir);
    assert!(bases.len() >= 5, "{bases:?}");

    // Segment 1: an index entry now points at the batch after the one it names.
    let seg1 = dir.join(file_name(bases[1], "log"));
    let idx_path = dir.join(file_name(bases[1], "index"));
    let idx_bytes = std::fs::read(&idx_path).expect("index");
    let idx = OffsetIndex::decode(&idx_bytes, 1 << 30).expect("index decodes");
    let entry = *idx.entries().first().expect("an entry");
    let named = bases[1] + i64::from(entry.rel_offset);
    let in_seg1 = batches(&seg1);
    let k = in_seg1
        .iter()
        .position(|(at, _)| *at as u32 == entry.position)
        .expect("entry at a batch");
    let neighbour = in_seg1[k + 1].0 as u32;
    let mut damaged = idx_bytes.clone();
    damaged[4..8].copy_from_slice(&neighbour.to_be_bytes());
    std::fs::write(&idx_path, damaged).expect("write index");
    // Segment 2: a bit flip inside its second batch's value.
    let seg2 = dir.join(file_name(bases[2], "log"));
    let in_seg2 = batches(&seg2);
    let mut bytes = std::fs::read(&seg2).expect("segment 2");
    bytes[in_seg2[1].0 + 70] ^= 0x10;
    std::fs::write(&seg2, bytes).expect("write segment 2");

    let (ok, report) = log_check(&data);
    assert!(!ok, "log check fails on damage:\n{report}");
    assert!(report.contains("hurt-0: 2 PROBLEM(S)"), "{report}");
    assert!(
        report.contains(&format!("index entry for offset {named}")),
        "{report}"
    );
    assert!(report.contains("CRC mismatch"), "{report}");
    assert!(
        report.contains(&format!(
            "shardlog records delete hurt --partition 0 --before {}",
            bases[3]
        )),
        "{report}"
    );

    b.start_again();
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    // The wrong entry is not followed: a fetch at the offset it names starts at that batch.
    let (err, records) = fetch(&mut c, "hurt", 0, named, 0);
    assert_eq!(err, 0);
    let first = BatchScan::new(&records, true).next().expect("a batch").1;
    assert_eq!(first.base_offset, named, "no records skipped");
    // The corrupt batch: every fetch of it fails, but it is logged and counted once.
    let bad_offset = in_seg2[1].1;
    for _ in 0..5 {
        assert_eq!(
            fetch(&mut c, "hurt", 0, bad_offset, 0).0,
            2,
            "CORRUPT_MESSAGE"
        );
    }
    let log = b.log_text();
    assert_eq!(log.matches("corrupt batch on disk").count(), 1, "{log}");
    assert_eq!(
        log.matches("rebuilding the segment's indexes").count(),
        1,
        "{log}"
    );
    let m = http_get(&b.metrics_addr().expect("metrics"), "/metrics").1;
    assert_eq!(
        metric_sample(&m, "shardlog_shard_corrupt_batches_total{shard=\"0\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric_sample(&m, "shardlog_shard_index_repairs_total{shard=\"0\"}"),
        Some(1.0)
    );

    // The documented procedure: move the partition past the damaged segment.
    let out = cli(
        &b,
        &[
            "records",
            "delete",
            "hurt",
            "--partition",
            "0",
            "--before",
            &bases[3].to_string(),
        ],
    );
    assert!(
        out.contains(&format!("log start offset now {}", bases[3])),
        "{out}"
    );
    let consumer = common::reader(&b, "hurt", 0..1);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < (120 - bases[3]) as usize && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => got.push(m.offset()),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    assert_eq!(
        got,
        (bases[3]..120).collect::<Vec<_>>(),
        "everything after the damage"
    );
}
