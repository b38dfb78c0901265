//! Poison batches: a batch with a valid header and CRC whose records are garbage is refused
//! on produce (CORRUPT_MESSAGE or INVALID_RECORD), nothing of it is stored, and a librdkafka
//! consumer reads straight past the place it was sent.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;
use rdkafka::Message;
use shardlog::admin::client::Client;
use shardlog::log::batch;
use shardlog::log::codec::{self, Codec};
use shardlog::log::records::put_varint;

use common::wire::{create_topic_with, latest, produce};
use common::{record_batch, Broker};

const CORRUPT_MESSAGE: i16 = 2;
const INVALID_RECORD: i16 = 87;

/// A batch claiming `count` records: `compressed` sent as it is, codec attribute `codec_id`.
fn raw_batch(compressed: &[u8], count: i32, codec_id: i16) -> Vec<u8> {
    batch::assemble(compressed, count, codec_id)
}

fn batch_of(section: &[u8], count: i32, codec: Codec) -> Vec<u8> {
    let z = codec::compress(codec, section).expect("compress");
    raw_batch(&z, count, codec.attributes())
}

/// One record: offset delta, key, value, no headers.
fn record(delta: i64, key: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8];
    put_varint(&mut r, 0);
    put_varint(&mut r, delta);
    match key {
        Some(k) => {
            put_varint(&mut r, k.len() as i64);
            r.extend_from_slice(k);
        }
        None => put_varint(&mut r, -1),
    }
    put_varint(&mut r, value.len() as i64);
    r.extend_from_slice(value);
    put_varint(&mut r, 0);
    let mut out = Vec::new();
    put_varint(&mut out, r.len() as i64);
    out.extend(r);
    out
}

/// A gzip batch of one record whose value is `size` zero bytes: a few hundred KiB on the
/// wire, `size` bytes decompressed. Built in chunks, never whole in memory.
fn gzip_bomb(size: usize) -> Vec<u8> {
    let mut head = vec![0u8];
    put_varint(&mut head, 0);
    put_varint(&mut head, 0);
    put_varint(&mut head, -1);
    put_varint(&mut head, size as i64);
    let body_len = head.len() + size + 1;
    let mut framed = Vec::new();
    put_varint(&mut framed, body_len as i64);
    framed.extend(head);
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&framed).expect("gzip");
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        e.write_all(&zeros[..n]).expect("gzip");
        left -= n;
    }
    e.write_all(&[0]).expect("gzip"); // no headers
    raw_batch(&e.finish().expect("gzip"), 1, Codec::Gzip.attributes())
}

/// Polls until `want` messages arrived or 20 s passed; panics on a consumer error.
fn read_values(c: &BaseConsumer, want: usize) -> Vec<(i64, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < want && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push((m.offset(), m.payload().unwrap_or_default().to_vec())),
            Some(Err(e)) => panic!("consumer error after {} messages: {e}", out.len()),
            None => {}
        }
    }
    out
}

#[test]
fn poison_batches_are_refused_and_consumers_read_past_them() {
    let b = Broker::start(1);
    create_topic_with(&b, "poison", 1, &["cleanup.policy=compact"]);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    assert_eq!(
        produce(&mut c, "poison", 0, record_batch(&[b"good 0"], 1)),
        (0, 0)
    );

    let one = record(0, Some(b"K"), b"v");
    let cases: Vec<(&str, Vec<u8>, i16)> = vec![
        (
            "count says 3, one record",
            batch_of(&one, 3, Codec::None),
            INVALID_RECORD,
        ),
        (
            "count says 1, two records",
            batch_of(
                &[one.clone(), record(1, Some(b"K"), b"w")].concat(),
                1,
                Codec::None,
            ),
            INVALID_RECORD,
        ),
        (
            "offset delta 10^6 on a compacted topic",
            batch_of(&record(1_000_000, Some(b"K"), b"evil"), 1, Codec::None),
            INVALID_RECORD,
        ),
        (
            "second record repeats delta 0",
            batch_of(&[one.clone(), one.clone()].concat(), 2, Codec::Lz4),
            INVALID_RECORD,
        ),
        (
            "varint that never ends",
            batch_of(&[0xff; 16], 1, Codec::None),
            INVALID_RECORD,
        ),
        (
            "value longer than the record",
            batch_of(&[0x0c, 0, 0, 0, 1, 0x7e, 0, 0], 1, Codec::Zstd),
            INVALID_RECORD,
        ),
        ("codec 5", raw_batch(&one, 1, 5), CORRUPT_MESSAGE),
        ("codec 6", raw_batch(&one, 1, 6), CORRUPT_MESSAGE),
        ("codec 7", raw_batch(&one, 1, 7), CORRUPT_MESSAGE),
        (
            "gzip that is not gzip",
            raw_batch(&[0x1f; 64], 1, 1),
            CORRUPT_MESSAGE,
        ),
        (
            "lz4 that is not lz4",
            raw_batch(&one, 1, 3),
            CORRUPT_MESSAGE,
        ),
        (
            "zstd that is not zstd",
            raw_batch(&[9; 40], 1, 4),
            CORRUPT_MESSAGE,
        ),
        (
            "gzip bomb: 200 KiB to 200 MiB",
            gzip_bomb(200 << 20),
            CORRUPT_MESSAGE,
        ),
    ];
    for (what, poison, code) in cases {
        assert!(
            batch::validate_incoming(&poison).is_ok(),
            "{what}: valid header"
        );
        let (err, _) = produce(&mut c, "poison", 0, poison);
        assert_eq!(err, code, "{what}");
        assert_eq!(latest(&mut c, "poison", 0), 1, "{what}: nothing stored");
    }
    let mut good = batch_of(&record(0, Some(b"K"), b"good 1"), 1, Codec::Zstd);
    batch::seal(&mut good);
    assert_eq!(produce(&mut c, "poison", 0, good), (0, 1));

    let consumer = common::reader(&b, "poison", 0..1);
    let got = read_values(&consumer, 2);
    assert_eq!(
        got,
        vec![(0, b"good 0".to_vec()), (1, b"good 1".to_vec())],
        "consumer reads every good record and nothing else"
    );
    let log = b.log_text();
    assert!(
        log.contains("invalid records"),
        "refusals are logged: {log}"
    );
}
