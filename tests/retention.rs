//! Retention through the broker: old segments go, consumers behind the log start get
//! OFFSET_OUT_OF_RANGE and clients reset.

mod common;

use std::time::{Duration, Instant};

use futures::executor::block_on;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use shardlog::admin::client::Client;
use shardlog::admin::topic::list_offset;

use common::Broker;

#[test]
fn retention_bytes_advances_the_log_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("shardlog.toml");
    std::fs::write(&cfg, "\"log.retention.check.interval.ms\" = 200\n").expect("write");
    let b = Broker::start_with(1, &["--config", cfg.to_str().expect("utf8")]);
    common::wire::create_topic_with(
        &b,
        "short",
        1,
        &["segment.bytes=1024", "retention.bytes=4096"],
    );
    let p: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", b.bootstrap())
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for i in 0..200 {
        let v = format!("{i:0100}");
        block_on(
            p.send_result(FutureRecord::<(), _>::to("short").partition(0).payload(&v))
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        )
        .expect("not cancelled")
        .expect("delivered");
    }
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut earliest = 0;
    while Instant::now() < deadline && earliest == 0 {
        earliest = list_offset(&mut c, "short", 0, -2).expect("earliest").1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(earliest > 0, "retention advanced the log start");
    assert_eq!(list_offset(&mut c, "short", 0, -1).expect("latest").1, 200);
    let (err, _) = common::wire::fetch(&mut c, "short", 0, 0, 0);
    assert_eq!(err, 1, "OFFSET_OUT_OF_RANGE below the log start");
    assert!(b.log_text().contains("retention deleted segments"));
}

#[test]
fn delete_records_moves_the_log_start_and_survives_restart() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsRequest, DeleteRecordsTopic,
    };
    let mut b = Broker::start(2);
    common::wire::create_topic(&b, "trim", 2);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    for p in 0..2 {
        for _ in 0..5 {
            let (err, _) =
                common::wire::produce(&mut c, "trim", p, common::record_batch(&[b"a", b"b"], 1));
            assert_eq!(err, 0);
        }
    }
    let delete = |c: &mut Client, p: i32, offset: i64| {
        let mut dp = DeleteRecordsPartition::default();
        dp.partition_index = p;
        dp.offset = offset;
        let mut dt = DeleteRecordsTopic::default();
        dt.name = common::wire::name("trim");
        dt.partitions = vec![dp];
        let mut req = DeleteRecordsRequest::default();
        req.topics = vec![dt];
        req.timeout_ms = 10_000;
        let resp = c.call(&req, 1).expect("delete records");
        let r = &resp.topics[0].partitions[0];
        (r.error_code, r.low_watermark)
    };
    // Sent to shard 0 for both partitions: the router takes each to its owner.
    assert_eq!(delete(&mut c, 0, 3), (0, 3));
    assert_eq!(
        delete(&mut c, 1, -1),
        (0, 10),
        "-1 deletes up to the high watermark"
    );
    assert_eq!(
        delete(&mut c, 0, 99).0,
        1,
        "beyond the end: OFFSET_OUT_OF_RANGE"
    );
    assert_eq!(list_offset(&mut c, "trim", 0, -2).expect("earliest").1, 3);
    assert_eq!(common::wire::fetch(&mut c, "trim", 0, 2, 0).0, 1);
    let (err, records) = common::wire::fetch(&mut c, "trim", 0, 3, 0);
    assert!(err == 0 && !records.is_empty());
    b.restart();
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    assert_eq!(
        list_offset(&mut c, "trim", 0, -2).expect("earliest").1,
        3,
        "persisted"
    );
    assert_eq!(list_offset(&mut c, "trim", 1, -2).expect("earliest").1, 10);
}
