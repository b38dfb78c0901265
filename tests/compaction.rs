//! Log compaction through the broker: a compacted topic written by librdkafka with zstd keeps
//! the latest value of every key at its original offset, drops superseded records and
//! expired tombstones, and survives a restart.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use common::Broker;

const KEYS: usize = 20;
const ROUNDS: usize = 40;

/// Every record of partition 0 from the start: (offset, key, value).
fn read_all(b: &Broker, topic: &str) -> Vec<(i64, String, Option<String>)> {
    let c = common::reader(b, topic, 0..1);
    let (_, high) = c
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.last().is_none_or(|(o, _, _)| *o + 1 < high) && Instant::now() < deadline {
        if let Some(m) = c.poll(Duration::from_millis(200)) {
            let m = m.expect("message");
            let key = String::from_utf8_lossy(m.key().expect("keyed")).to_string();
            let value = m.payload().map(|v| String::from_utf8_lossy(v).to_string());
            out.push((m.offset(), key, value));
        }
    }
    out
}

/// The table a changelog reader rebuilds: latest value per key, tombstones delete.
fn table(records: &[(i64, String, Option<String>)]) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    for (_, k, v) in records {
        match v {
            Some(v) => t.insert(k.clone(), v.clone()),
            None => t.remove(k),
        };
    }
    t
}

#[test]
fn compacted_topic_keeps_the_latest_value_per_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("shardlog.toml");
    std::fs::write(&cfg, "\"log.cleaner.backoff.ms\" = 200\n").expect("write");
    let mut b = Broker::start_with(1, &["--config", cfg.to_str().expect("utf8")]);
    common::wire::create_topic_with(
        &b,
        "table",
        1,
        &[
            "cleanup.policy=compact",
            "segment.bytes=2048",
            "min.cleanable.dirty.ratio=0.01",
            "delete.retention.ms=0",
        ],
    );
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("compression.type", "zstd")
        .set("linger.ms", "5")
        .set("batch.num.messages", "20")
        .create()
        .expect("producer");
    let send = |key: String, value: Option<String>| {
        let mut r = FutureRecord::to("table").partition(0).key(&key);
        if let Some(v) = &value {
            r = r.payload(v);
        }
        let f = p.send_result(r).map_err(|(e, _)| e).expect("enqueue");
        (key, value, f)
    };
    let mut pending = Vec::new();
    for round in 0..ROUNDS {
        for k in 0..KEYS {
            pending.push(send(
                format!("key-{k}"),
                Some(format!("{k}-{round}-{}", "x".repeat(40))),
            ));
        }
    }
    // Key 0 is deleted; later filler rolls the tombstone's segment closed.
    pending.push(send("key-0".into(), None));
    for i in 0..60 {
        pending.push(send(format!("filler-{}", i % 2), Some("f".repeat(60))));
    }
    // What was written, at the offsets the broker acknowledged (the cleaner may already be
    // running, so this comes from the delivery reports, not from a read).
    let mut before: Vec<(i64, String, Option<String>)> = pending
        .into_iter()
        .map(|(k, v, f)| {
            let d = block_on(f).expect("not cancelled").expect("delivered");
            (d.offset, k, v)
        })
        .collect();
    before.sort();
    let produced = ROUNDS * KEYS + 61;
    assert_eq!(
        before.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..produced as i64).collect::<Vec<_>>(),
        "every record acknowledged at its own offset"
    );
    let expected = table(&before);
    assert_eq!(expected.len(), KEYS - 1 + 2);

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = before.clone();
    while Instant::now() < deadline && after.len() >= produced / 2 {
        std::thread::sleep(Duration::from_millis(300));
        after = read_all(&b, "table");
    }
    assert!(
        after.len() < produced / 2,
        "compaction removed superseded records: {} of {produced} left",
        after.len(),
    );
    assert_eq!(table(&after), expected, "every key keeps its latest value");
    // Offsets are never renumbered: each kept record has the offset it was written at.
    let by_offset: BTreeMap<i64, _> = before.iter().map(|r| (r.0, r)).collect();
    for r in &after {
        assert_eq!(
            by_offset.get(&r.0),
            Some(&r),
            "record at offset {} unchanged",
            r.0
        );
    }
    assert!(b.log_text().contains("compacted log"));

    b.restart();
    let again = read_all(&b, "table");
    assert_eq!(table(&again), expected, "compacted log survives a restart");
    assert!(again.len() <= after.len());
}
