//! Wire-level behaviour: version negotiation, bad input, routing, long-poll, stored bytes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use shardlog::admin::client::Client;

use common::wire::{create_topic as create, fetch, latest, produce};
use common::{record_batch, Broker};

/// True if the peer closed the connection (EOF or reset) within a few seconds.
fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn api_versions_negotiation() {
    let b = Broker::start(1);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let resp = c
        .call(&ApiVersionsRequest::default(), 3)
        .expect("api versions v3");
    assert_eq!(resp.error_code, 0);
    let produce = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == 0)
        .expect("produce");
    assert_eq!((produce.min_version, produce.max_version), (0, 11));
    assert!(resp.api_keys.iter().any(|k| k.api_key == 1));

    // An unknown ApiVersions version gets error 35 in a v0 body, listing ApiVersions.
    let mut s = TcpStream::connect(b.bootstrap()).expect("connect");
    let mut frame = Vec::new();
    frame.extend(18i16.to_be_bytes());
    frame.extend(99i16.to_be_bytes());
    frame.extend(7i32.to_be_bytes());
    frame.extend((-1i16).to_be_bytes());
    let mut msg = (frame.len() as i32).to_be_bytes().to_vec();
    msg.extend(frame);
    s.write_all(&msg).expect("write");
    let mut len = [0u8; 4];
    s.read_exact(&mut len).expect("len");
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).expect("body");
    assert_eq!(i32::from_be_bytes([body[0], body[1], body[2], body[3]]), 7);
    assert_eq!(i16::from_be_bytes([body[4], body[5]]), 35);
}

#[test]
fn bad_frames_close_only_their_connection() {
    let b = Broker::start_with(1, &["--max-frame-bytes", "1048576"]);
    create(&b, "safe", 1);
    let mut good = Client::connect(&b.bootstrap()).expect("connect");
    let (err, _) = produce(&mut good, "safe", 0, record_batch(&[b"before"], 1));
    assert_eq!(err, 0);

    // Oversized frame.
    let mut s = TcpStream::connect(b.bootstrap()).expect("connect");
    s.write_all(&(200_000_000i32).to_be_bytes()).expect("write");
    assert!(closed_by_peer(&mut s));
    // Negative length.
    let mut s = TcpStream::connect(b.bootstrap()).expect("connect");
    s.write_all(&(-5i32).to_be_bytes()).expect("write");
    assert!(closed_by_peer(&mut s));
    // Unknown API key.
    let mut s = TcpStream::connect(b.bootstrap()).expect("connect");
    let mut f = Vec::new();
    f.extend(12i32.to_be_bytes());
    f.extend(999i16.to_be_bytes());
    f.extend(0i16.to_be_bytes());
    f.extend(1i32.to_be_bytes());
    f.extend((-1i16).to_be_bytes());
    f.extend([0u8, 0]);
    s.write_all(&f).expect("write");
    assert!(closed_by_peer(&mut s));
    // Garbage Produce bodies of every length: truncated and random.
    let mut seed = 0x9e37_79b9u32;
    for len in 0..300usize {
        let mut s = TcpStream::connect(b.bootstrap()).expect("connect");
        let mut body = Vec::new();
        body.extend(0i16.to_be_bytes());
        body.extend(9i16.to_be_bytes());
        body.extend(1i32.to_be_bytes());
        body.extend((-1i16).to_be_bytes());
        for _ in 0..len {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            body.push(seed as u8);
        }
        let mut msg = (body.len() as i32).to_be_bytes().to_vec();
        msg.extend(body);
        s.write_all(&msg).expect("write");
        // Either an error response or a closed connection; never a crash.
        let _ = closed_by_peer(&mut s);
    }
    // Truncated frame: header says 100 bytes, 10 arrive, then the client hangs up.
    let mut s = TcpStream::connect(b.bootstrap()).expect("connect");
    s.write_all(&100i32.to_be_bytes()).expect("write");
    s.write_all(&[0u8; 10]).expect("write");
    drop(s);

    // The broker is alive, the earlier connection still works, and the log is intact.
    let (err, off) = produce(&mut good, "safe", 0, record_batch(&[b"after"], 2));
    assert_eq!((err, off), (0, 1));
    assert_eq!(latest(&mut good, "safe", 0), 2);
    let log = b.log_text();
    assert!(log.contains("frame size out of bounds"), "{log}");
    assert!(log.contains("closing connection"), "{log}");
}

#[test]
fn corrupt_crc_is_refused_and_nothing_written() {
    let b = Broker::start(1);
    create(&b, "crc", 1);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let mut bad = record_batch(&[b"hello", b"world"], 1000);
    let n = bad.len();
    bad[n - 2] ^= 0x55;
    let (err, _) = produce(&mut c, "crc", 0, bad);
    assert_eq!(err, 2, "CORRUPT_MESSAGE");
    assert_eq!(latest(&mut c, "crc", 0), 0);
    let (err, _) = produce(&mut c, "no-such-topic", 0, record_batch(&[b"x"], 1));
    assert_eq!(err, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let (err, _) = produce(&mut c, "crc", 7, record_batch(&[b"x"], 1));
    assert_eq!(err, 3, "unknown partition");
    let (err, base) = produce(&mut c, "crc", 0, record_batch(&[b"ok"], 1));
    assert_eq!((err, base), (0, 0));
    let (err, _) = fetch(&mut c, "crc", 0, 5, 0);
    assert_eq!(err, 1, "OFFSET_OUT_OF_RANGE");
}

#[test]
fn stray_requests_are_routed_to_the_owning_shard() {
    let b = Broker::start(2);
    create(&b, "routed", 4);
    // Send every partition's traffic to shard 0's port, whichever shard owns it.
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    for p in 0..4 {
        let (err, base) = produce(&mut c, "routed", p, record_batch(&[b"a", b"b"], 1));
        assert_eq!((err, base), (0, 0), "partition {p}");
        let (err, base) = produce(&mut c, "routed", p, record_batch(&[b"c"], 1));
        assert_eq!((err, base), (0, 2), "partition {p}");
        assert_eq!(latest(&mut c, "routed", p), 3);
        let (err, records) = fetch(&mut c, "routed", p, 0, 0);
        assert_eq!(err, 0);
        assert!(records.windows(1).len() > 0);
    }
}

#[test]
fn long_poll_fetch_returns_when_data_arrives() {
    let b = Broker::start(1);
    create(&b, "poll", 1);
    let addr = b.bootstrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let mut c = Client::connect(&addr).expect("connect");
        produce(&mut c, "poll", 0, record_batch(&[b"wake up"], 1))
    });
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let start = Instant::now();
    // Asks to wait up to 30 s; must come back once the record lands, not at the deadline.
    let (err, records) = fetch(&mut c, "poll", 0, 0, 30_000);
    let waited = start.elapsed();
    assert_eq!(writer.join().expect("writer").0, 0);
    assert_eq!(err, 0);
    assert!(!records.is_empty(), "fetch returned without the record");
    assert!(
        waited < Duration::from_secs(25),
        "long-poll waited for its deadline: {waited:?}"
    );
    // And an empty poll with a short wait returns empty at its deadline.
    let (err, records) = fetch(&mut c, "poll", 0, 1, 200);
    assert_eq!(err, 0);
    assert!(records.is_empty());
}

#[test]
fn compressed_batches_are_stored_as_sent() {
    use futures::executor::block_on;
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let b = Broker::start(1);
    create(&b, "zipped", 1);
    for (codec, id) in [("lz4", 3u8), ("zstd", 4)] {
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", b.bootstrap())
            .set("compression.type", codec)
            .set("linger.ms", "100")
            .create()
            .expect("producer");
        let futs: Vec<_> = (0..50)
            .map(|i| {
                let v = format!("value {i} {}", "z".repeat(200));
                p.send_result(FutureRecord::<(), _>::to("zipped").partition(0).payload(&v))
                    .map_err(|(e, _)| e)
                    .expect("enqueue")
            })
            .collect();
        let first = block_on(futs.into_iter().next().expect("one"))
            .expect("not cancelled")
            .expect("delivered");
        let mut c = Client::connect(&b.bootstrap()).expect("connect");
        let (err, records) = fetch(&mut c, "zipped", 0, first.offset, 0);
        assert_eq!(err, 0);
        let attributes = i16::from_be_bytes([records[21], records[22]]);
        assert_eq!(
            (attributes & 7) as u8,
            id,
            "{codec} batch stored with its compression"
        );
    }
}
