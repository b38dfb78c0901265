//! Zero-copy fetch (`fetch.zero.copy`): large cached ranges are spliced from segment files to
//! sockets. What a client receives must be exactly what the copying path would send, a slow
//! or vanishing client must not stall the shard or leave a half-full pipe to corrupt someone
//! else's response, and the knob turns it off.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use rdkafka::consumer::BaseConsumer;
use rdkafka::Message;
use shardlog::admin::client::Client;
use shardlog::log::batch::BatchScan;
use shardlog::log::records::read_records;

use common::wire::{create_topic, fetch, name, produce};
use common::{http_get, metric_sample, record_batch, Broker};

/// Records per produced batch and the size of each value: batches of about 128 KiB.
const PER_BATCH: usize = 1000;
const VALUE_BYTES: usize = 120;

fn value(partition: i32, i: usize) -> Vec<u8> {
    let mut v = format!("p{partition}-{i:09}-").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    v
}

/// Produces `batches` batches of [`PER_BATCH`] records to `partition`.
fn fill(c: &mut Client, topic: &str, partition: i32, batches: usize) {
    for k in 0..batches {
        let values: Vec<Vec<u8>> = (0..PER_BATCH)
            .map(|j| value(partition, k * PER_BATCH + j))
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
        assert_eq!(
            produce(c, topic, partition, record_batch(&refs, 1_700_000_000_000)).0,
            0
        );
    }
}

/// Sum of a per-shard counter over `shards` shards.
fn counter(b: &Broker, metric: &str, shards: usize) -> f64 {
    let m = http_get(&b.metrics_addr().expect("metrics"), "/metrics").1;
    (0..shards)
        .filter_map(|s| metric_sample(&m, &format!("{metric}{{shard=\"{s}\"}}")))
        .sum()
}

/// Reads every record of `partitions` with librdkafka and checks each value and its order.
fn read_all(b: &Broker, topic: &str, partitions: i32, per_partition: usize) {
    let consumer: BaseConsumer = common::reader(b, topic, 0..partitions);
    let mut next = vec![0usize; partitions as usize];
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    // Bounded by the deadline.
    while next.iter().any(|n| *n < per_partition) {
        assert!(std::time::Instant::now() < deadline, "read {next:?}");
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.expect("message");
        let p = m.partition();
        let i = next[p as usize];
        assert_eq!(m.offset(), i as i64, "partition {p}");
        assert_eq!(
            m.payload(),
            Some(value(p, i).as_slice()),
            "partition {p} offset {i}"
        );
        next[p as usize] += 1;
    }
}

#[test]
fn spliced_fetches_carry_every_record_and_the_knob_turns_them_off() {
    let per_partition = 24 * PER_BATCH;
    let b = Broker::start(2);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    create_topic(&b, "zc", 4);
    for p in 0..4 {
        fill(&mut c, "zc", p, 24);
    }
    read_all(&b, "zc", 4, per_partition);
    let spliced = counter(&b, "shardlog_shard_fetch_spliced_bytes_total", 2);
    assert!(
        spliced > 8e6,
        "most of the ~12 MB read went by splice: {spliced}"
    );

    // A fetch through another shard's port crosses cores as bytes: the same records.
    for p in 0..4 {
        let (err, records) = fetch(&mut c, "zc", p, 0, 0);
        assert_eq!(err, 0);
        let batches: Vec<_> = BatchScan::new(&records, true).collect();
        assert!(!batches.is_empty());
        assert_eq!(batches[0].1.base_offset, 0);
    }

    let off = Broker::start_configured(2, "\"fetch.zero.copy\" = false\n", &[]);
    let mut c = Client::connect(&off.bootstrap()).expect("connect");
    create_topic(&off, "zc", 2);
    for p in 0..2 {
        fill(&mut c, "zc", p, 8);
    }
    read_all(&off, "zc", 2, 8 * PER_BATCH);
    assert_eq!(
        counter(&off, "shardlog_shard_fetch_spliced_bytes_total", 2),
        0.0,
        "fetch.zero.copy=false never splices"
    );
}

fn big_fetch(max: i32) -> FetchRequest {
    let mut fp = FetchPartition::default();
    fp.partition = 0;
    fp.fetch_offset = 0;
    fp.partition_max_bytes = max;
    let mut ft = FetchTopic::default();
    ft.topic = name("slow");
    ft.partitions = vec![fp];
    let mut req = FetchRequest::default();
    req.replica_id = kafka_protocol::messages::BrokerId(-1);
    req.max_wait_ms = 0;
    req.min_bytes = 1;
    req.max_bytes = 50 << 20;
    req.topics = vec![ft];
    req
}

fn connection(b: &Broker) -> TcpStream {
    let s = TcpStream::connect(b.bootstrap()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    s
}

/// Checks a fetch of the whole "slow" partition: every batch whole and CRC-checked, dense
/// offsets from 0, every value as produced.
fn check_whole(records: &[u8], batches: usize) {
    let mut expect = 0usize;
    let mut n = 0;
    for (at, h) in BatchScan::new(records, true) {
        assert_eq!(h.base_offset, expect as i64);
        let recs = read_records(&records[at..at + h.size]);
        assert_eq!(recs.len(), PER_BATCH);
        for (offset, _, v) in recs {
            assert_eq!(offset, expect as i64);
            assert_eq!(v, Some(value(0, expect).as_slice()));
            expect += 1;
        }
        n += 1;
    }
    assert_eq!(n, batches, "whole partition in one response");
    assert_eq!(expect, batches * PER_BATCH);
}

fn pipes_open(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fds")
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|l| l.to_string_lossy().starts_with("pipe:"))
        .count()
}

#[test]
fn slow_and_vanishing_readers_get_whole_batches_and_stall_no_one() {
    // 192 batches of ~128 KiB: 24 MiB, more than a loopback connection's send and receive
    // buffers hold together (4 + 6 MiB by default), so the broker's send must wait.
    let batches = 192;
    let b = Broker::start(1);
    let pid = b.pid().expect("pid");
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    create_topic(&b, "slow", 1);
    create_topic(&b, "other", 1);
    fill(&mut c, "slow", 0, batches);

    // A reader that does not read for a while: the broker fills the socket and waits.
    let mut slow = Client::from_stream(connection(&b));
    let corr = slow.send(&big_fetch(32 << 20), 11).expect("send");
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile the same shard answers other clients.
    assert_eq!(produce(&mut c, "other", 0, record_batch(&[b"x"], 1)).0, 0);
    let (err, records) = fetch(&mut c, "other", 0, 0, 0);
    assert_eq!(err, 0);
    assert_eq!(BatchScan::new(&records, true).count(), 1);
    let resp = slow
        .receive::<FetchRequest>(11, corr)
        .expect("slow response");
    let pd = &resp.responses[0].partitions[0];
    assert_eq!(pd.error_code, 0);
    check_whole(pd.records.as_deref().unwrap_or_default(), batches);
    assert!(counter(&b, "shardlog_shard_fetch_spliced_bytes_total", 1) > 0.0);
    assert!(
        counter(&b, "shardlog_shard_fetch_splice_copied_bytes_total", 1) > 0.0,
        "the socket filled up and the send waited for it"
    );

    // Readers that leave mid-response: their pipes may hold bytes and must never be reused.
    for _ in 0..10 {
        let mut s = connection(&b);
        let mut quitter = Client::from_stream(s.try_clone().expect("clone"));
        quitter.send(&big_fetch(32 << 20), 11).expect("send");
        let mut first = [0u8; 4096];
        s.read_exact(&mut first).expect("first bytes");
        drop(quitter);
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..3 {
        let mut reader = Client::from_stream(connection(&b));
        let resp = reader.call(&big_fetch(32 << 20), 11).expect("fetch");
        check_whole(
            resp.responses[0].partitions[0]
                .records
                .as_deref()
                .unwrap_or_default(),
            batches,
        );
    }
    assert!(
        pipes_open(pid) <= 2 * 8,
        "idle pipes are bounded: {} pipe descriptors",
        pipes_open(pid)
    );
    let log = b.log_text();
    assert!(!log.contains("panicked"), "{log}");
}
