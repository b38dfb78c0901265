//! End-to-end: librdkafka (the `rdkafka` crate) against the real broker binary.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use common::Broker;

fn admin(b: &Broker) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .create()
        .expect("admin client")
}

fn create_topic(b: &Broker, name: &str, partitions: i32) {
    let a = admin(b);
    let res = block_on(a.create_topics(
        &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("create_topics");
    for r in res {
        r.expect("topic created");
    }
}

fn producer(b: &Broker, extra: &[(&str, &str)]) -> FutureProducer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", b.bootstrap())
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "500000")
        .set("message.timeout.ms", "60000");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().expect("producer")
}

/// Reads every partition of `topic` from the beginning until `expected` messages arrived.
/// Returns (partition, offset, key, value) in arrival order.
fn consume_all(
    b: &Broker,
    topic: &str,
    partitions: i32,
    expected: usize,
) -> Vec<(i32, i64, Vec<u8>, Vec<u8>)> {
    let consumer = common::reader(b, topic, 0..partitions);
    let mut out = Vec::with_capacity(expected);
    let deadline = Instant::now() + Duration::from_secs(120);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("consume");
            out.push((
                m.partition(),
                m.offset(),
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    // Nothing beyond what was produced.
    if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
        panic!(
            "unexpected extra message at {}:{}",
            m.partition(),
            m.offset()
        );
    }
    out
}

fn check_keyed(msgs: &[(i32, i64, Vec<u8>, Vec<u8>)], n: usize) -> HashMap<Vec<u8>, i32> {
    assert_eq!(msgs.len(), n, "message count");
    let mut key_partition: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut last_offset: HashMap<i32, i64> = HashMap::new();
    let mut last_seq_per_key: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut seen = vec![false; n];
    for (p, off, key, value) in msgs {
        // Offsets within a partition are dense and in order.
        let prev = last_offset.insert(*p, *off);
        assert_eq!(
            *off,
            prev.map(|o| o + 1).unwrap_or(0),
            "partition {p} offsets"
        );
        // A key always lands on the same partition.
        let kp = *key_partition.entry(key.clone()).or_insert(*p);
        assert_eq!(
            kp,
            *p,
            "key {:?} on two partitions",
            String::from_utf8_lossy(key)
        );
        // Content matches the key, and per-key order is production order.
        let text = String::from_utf8(value.clone()).expect("utf8");
        let (k, seq) = text.split_once('|').expect("value format");
        assert_eq!(k.as_bytes(), key.as_slice());
        let seq: u64 = seq.parse().expect("seq");
        if let Some(prev) = last_seq_per_key.insert(key.clone(), seq) {
            assert!(seq > prev, "key order");
        }
        assert!(!seen[seq as usize], "duplicate {seq}");
        seen[seq as usize] = true;
    }
    assert!(seen.iter().all(|s| *s));
    key_partition
}

#[test]
fn keyed_produce_consume_and_restart() {
    let mut b = Broker::start(2);
    let topic = "events";
    create_topic(&b, topic, 8);
    let n = 100_000usize;
    let p = producer(&b, &[]);
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let key = format!("key-{}", i % 997);
        let value = format!("{key}|{i}");
        let rec = FutureRecord::to(topic).key(&key).payload(&value);
        let mut rec = rec;
        // Bounded retry: the local queue drains as deliveries complete.
        let mut tries = 0;
        loop {
            match p.send_result(rec) {
                Ok(f) => {
                    futs.push(f);
                    break;
                }
                Err((e, r)) => {
                    tries += 1;
                    assert!(tries < 10_000, "producer queue stuck: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    rec = r;
                }
            }
        }
    }
    for f in futs {
        block_on(f).expect("not cancelled").expect("delivered");
    }
    let msgs = consume_all(&b, topic, 8, n);
    let placement = check_keyed(&msgs, n);
    assert!(
        placement
            .values()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1
    );

    b.restart();
    let again = consume_all(&b, topic, 8, n);
    let placement2 = check_keyed(&again, n);
    assert_eq!(placement, placement2);
    assert!(
        !b.log_text().contains("cut "),
        "clean restart must need no repair:\n{}",
        b.log_text()
    );
}

#[test]
fn compressed_batches_round_trip() {
    let b = Broker::start(2);
    for codec in ["lz4", "zstd", "gzip", "snappy"] {
        let topic = format!("compressed-{codec}");
        create_topic(&b, &topic, 2);
        let p = producer(&b, &[("compression.type", codec), ("linger.ms", "50")]);
        let futs: Vec<_> = (0..2000)
            .map(|i| {
                let v = format!("{codec} value {i} {}", "x".repeat(100));
                let k = format!("k{}", i % 10);
                p.send_result(FutureRecord::to(&topic).key(&k).payload(&v))
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            })
            .collect();
        for f in futs {
            block_on(f).expect("not cancelled").expect("delivered");
        }
        let msgs = consume_all(&b, &topic, 2, 2000);
        assert_eq!(msgs.len(), 2000);
        for (_, _, _, v) in &msgs {
            assert!(String::from_utf8_lossy(v).starts_with(codec));
        }
    }
}
