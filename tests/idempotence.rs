//! Idempotent producer: retries never duplicate or reorder a partition.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::ProducerId;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use shardlog::admin::client::Client;

use common::wire::{create_topic as create, latest, produce};
use common::{producer_batch, Broker};

fn init_producer_id(c: &mut Client, current: Option<(i64, i16)>) -> (i16, i64, i16) {
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = 60_000;
    let (id, epoch) = current.unwrap_or((-1, -1));
    req.producer_id = ProducerId(id);
    req.producer_epoch = epoch;
    let resp = c.call(&req, 4).expect("init producer id");
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

/// Reads every partition from the beginning until `expected` messages or a quiet period.
fn read_all(b: &Broker, topic: &str, partitions: i32, expected: usize) -> Vec<(i32, i64, String)> {
    let consumer = common::reader(b, topic, 0..partitions);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut quiet = 0;
    while Instant::now() < deadline && quiet < 10 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                quiet = if out.len() + 1 >= expected { quiet } else { 0 };
                out.push((
                    m.partition(),
                    m.offset(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).to_string(),
                ));
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {
                if out.len() >= expected {
                    quiet += 1;
                }
            }
        }
    }
    out
}

#[test]
fn idempotent_librdkafka_producer_exactly_once_in_order() {
    let b = Broker::start(2);
    create(&b, "idem", 4);
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    let n = 100_000usize;
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let v = i.to_string();
        let mut rec = FutureRecord::<(), _>::to("idem")
            .partition((i % 4) as i32)
            .payload(&v);
        for _ in 0..100_000 {
            match p.send_result(rec) {
                Ok(f) => {
                    futs.push(f);
                    break;
                }
                Err((_, r)) => {
                    rec = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    for f in futs {
        block_on(f).expect("not cancelled").expect("delivered");
    }
    let msgs = read_all(&b, "idem", 4, n);
    assert_eq!(msgs.len(), n);
    let mut last: HashMap<i32, usize> = HashMap::new();
    let mut seen = vec![false; n];
    for (p, _, v) in msgs {
        let i: usize = v.parse().expect("number");
        assert!(!seen[i], "duplicate {i}");
        seen[i] = true;
        if let Some(prev) = last.insert(p, i) {
            assert!(i > prev, "partition {p} out of order: {prev} then {i}");
        }
    }
}

#[test]
fn replayed_batches_are_stored_once_and_sequence_errors_are_reported() {
    let mut b = Broker::start(1);
    create(&b, "replay", 1);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let (err, pid, epoch) = init_producer_id(&mut c, None);
    assert_eq!((err, epoch), (0, 0));
    let (err2, pid2, _) = init_producer_id(&mut c, None);
    assert_eq!(err2, 0);
    assert_ne!(pid, pid2, "fresh ids");

    let first = producer_batch(&[b"a", b"b", b"c"], 1, pid, 0, 0);
    assert_eq!(produce(&mut c, "replay", 0, first.clone()), (0, 0));
    // The same request again (a retry after a lost response).
    assert_eq!(produce(&mut c, "replay", 0, first.clone()), (0, 0));
    assert_eq!(latest(&mut c, "replay", 0), 3, "stored once");
    // A gap in the sequence.
    let gap = producer_batch(&[b"x"], 1, pid, 0, 7);
    assert_eq!(
        produce(&mut c, "replay", 0, gap).0,
        45,
        "OUT_OF_ORDER_SEQUENCE_NUMBER"
    );
    // A producer the partition keeps no state for is taken at any sequence (as Kafka since
    // 2.5: its state expired, or a new leader never saw it), and tracked from there.
    let stranger = producer_batch(&[b"x"], 1, pid2 + 1000, 0, 5);
    assert_eq!(produce(&mut c, "replay", 0, stranger.clone()), (0, 3));
    assert_eq!(produce(&mut c, "replay", 0, stranger), (0, 3), "its retry");

    // Epoch bump (KIP-360): same id, epoch 1; epoch 0 is now fenced.
    let (err, same, bumped) = init_producer_id(&mut c, Some((pid, 0)));
    assert_eq!((err, same, bumped), (0, pid, 1));
    let e1 = producer_batch(&[b"d"], 1, pid, 1, 0);
    assert_eq!(produce(&mut c, "replay", 0, e1.clone()), (0, 4));
    let stale = producer_batch(&[b"e"], 1, pid, 0, 3);
    assert_eq!(
        produce(&mut c, "replay", 0, stale).0,
        47,
        "INVALID_PRODUCER_EPOCH"
    );

    // After a clean restart the retry is still recognised.
    b.restart();
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    assert_eq!(produce(&mut c, "replay", 0, e1.clone()), (0, 4));
    let e1b = producer_batch(&[b"f"], 1, pid, 1, 1);
    assert_eq!(produce(&mut c, "replay", 0, e1b.clone()), (0, 5));
    // And after a crash (no snapshot at shutdown).
    b.kill();
    b.start_again();
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    assert_eq!(produce(&mut c, "replay", 0, e1b), (0, 5));
    assert_eq!(latest(&mut c, "replay", 0), 6);
    // Producer ids stay unique across restarts.
    let (_, pid3, _) = init_producer_id(&mut c, None);
    assert!(pid3 > pid2, "{pid3} after {pid2}");
}

#[test]
fn crash_during_idempotent_produce_loses_and_duplicates_nothing() {
    let mut b = Broker::start(2);
    create(&b, "crashy", 2);
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("enable.idempotence", "true")
        .set("linger.ms", "2")
        .set("message.timeout.ms", "60000")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .expect("producer");
    let n = 20_000usize;
    let acked: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let mut futs = Vec::with_capacity(n);
    for i in 0..n {
        let v = i.to_string();
        let f = p
            .send_result(
                FutureRecord::<(), _>::to("crashy")
                    .partition((i % 2) as i32)
                    .payload(&v),
            )
            .map_err(|(e, _)| e)
            .expect("enqueue");
        futs.push((i, f));
        if i == n / 2 {
            // Let part of the stream be acknowledged, then pull the plug mid-flight.
            std::thread::sleep(Duration::from_millis(100));
            b.kill();
            std::thread::sleep(Duration::from_millis(300));
            b.start_again();
        }
    }
    for (i, f) in futs {
        if let Ok(Ok(_)) = block_on(f) {
            acked.lock().expect("lock").push(i);
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > n / 2,
        "most messages acknowledged: {}",
        acked.len()
    );
    let msgs = read_all(&b, "crashy", 2, acked.len());
    let mut count: HashMap<usize, usize> = HashMap::new();
    for (_, _, v) in &msgs {
        *count.entry(v.parse().expect("number")).or_default() += 1;
    }
    for (v, c) in &count {
        assert_eq!(*c, 1, "message {v} stored {c} times");
    }
    for i in &acked {
        assert!(count.contains_key(i), "acknowledged message {i} lost");
    }
}

#[test]
fn pipelined_idempotent_produces_land_in_order_and_are_answered_in_order() {
    use bytes::Bytes;
    use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
    use kafka_protocol::messages::produce_request::{
        PartitionProduceData, ProduceRequest, TopicProduceData,
    };
    // Two shards; every request goes to shard 0's port, so half the partitions are strays
    // routed to shard 1 and the other half appended locally.
    let b = Broker::start(2);
    create(&b, "pipe", 4);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let (err, pid, epoch) = init_producer_id(&mut c, None);
    assert_eq!(err, 0);
    const N: i32 = 30;
    let mut sent = Vec::new();
    for i in 0..N {
        let mut t = TopicProduceData::default();
        t.name = common::wire::name("pipe");
        t.partition_data = (0..4)
            .map(|p| {
                let mut d = PartitionProduceData::default();
                d.index = p;
                let v = format!("p{p} #{i}");
                d.records = Some(Bytes::from(producer_batch(
                    &[v.as_bytes()],
                    1,
                    pid,
                    epoch,
                    i,
                )));
                d
            })
            .collect();
        let mut req = ProduceRequest::default();
        req.acks = -1;
        req.timeout_ms = 10_000;
        req.topic_data = vec![t];
        // Every request is written before any response is read (a producer's in-flight
        // window, here far past its usual 5); one ListOffsets in the middle.
        sent.push((true, c.send(&req, 9).expect("send produce")));
        if i == N / 2 {
            let req = ListOffsetsRequest::default();
            sent.push((false, c.send(&req, 6).expect("send list offsets")));
        }
    }
    let mut i = 0i64;
    for (is_produce, corr) in sent {
        if !is_produce {
            c.receive::<ListOffsetsRequest>(6, corr)
                .expect("list offsets answered in its place");
            continue;
        }
        let resp = c
            .receive::<ProduceRequest>(9, corr)
            .expect("responses come back in request order");
        for p in &resp.responses[0].partition_responses {
            assert_eq!(p.error_code, 0, "request {i} partition {}", p.index);
            assert_eq!(
                p.base_offset, i,
                "request {i} partition {}: appended in order",
                p.index
            );
        }
        i += 1;
    }
    for p in 0..4 {
        assert_eq!(latest(&mut c, "pipe", p), i64::from(N));
    }
}
