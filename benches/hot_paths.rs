//! Criterion micro-benchmarks of the broker's hot paths, each on the data a 1 KiB-message
//! workload produces (64 KiB batches of 64 records):
//! - `batch/validate_crc`: header parse + CRC-32C check of an incoming batch (every produce);
//! - `batch/check_records_{none,lz4,zstd}`: the record-by-record walk of an incoming batch
//!   (every produce), the compressed ones decompressed through the streaming validator;
//! - `batch/stamp_offset`: writing the broker's base offset into a batch (every produce);
//! - `log/append`: a whole append through the writer task into a segment (page cache, no
//!   fsync), on a glommio executor;
//! - `index/lookup`: offset index lookup in a full 1 GiB segment's index (every fetch);
//! - `protocol/decode_produce`: decoding a Produce request of 8 partitions x 64 KiB;
//! - `protocol/encode_fetch`: assembling a Fetch response of 8 partitions x 64 KiB.
//!
//! `cargo bench --bench hot_paths`; see docs/benchmarks.md for the figures.

#[path = "../tests/common/mod.rs"]
mod common;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::{RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use shardlog::log::batch::{self, HEADER_LEN};
use shardlog::log::codec::{self, Codec};
use shardlog::log::index::{OffsetEntry, OffsetIndex};
use shardlog::log::records::build_batch;
use shardlog::log::validate::check_records;
use shardlog::log::{Log, LogConfig};
use shardlog::protocol::fetch_response::{encode, FetchPartitionOut, Piece};

fn batch_64k() -> Vec<u8> {
    let value = vec![b'x'; 1000];
    let records: Vec<_> = (0..64).map(|_| (None, Some(value.as_slice()))).collect();
    build_batch(&records, 1_700_000_000_000)
}

/// 64 records of 1,000 text-like bytes (compressing about 2:1), as a batch.
fn text_batch_64k() -> Vec<u8> {
    let text = common::text_bytes(64_000);
    let records: Vec<_> = text.chunks(1000).map(|v| (None, Some(v))).collect();
    build_batch(&records, 1_700_000_000_000)
}

fn batch_paths(c: &mut Criterion) {
    let b = batch_64k();
    let text = text_batch_64k();
    let mut g = c.benchmark_group("batch");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("validate_crc", |bn| {
        bn.iter(|| batch::validate_incoming(std::hint::black_box(&b)))
    });
    for codec in [Codec::None, Codec::Lz4, Codec::Zstd] {
        let section = codec::compress(codec, &text[HEADER_LEN..]).expect("compress");
        let mut z = text[..HEADER_LEN].to_vec();
        z.extend(section);
        z[21..23].copy_from_slice(&codec.attributes().to_be_bytes());
        batch::seal(&mut z);
        let h = batch::validate_incoming(&z).expect("valid");
        // Throughput in uncompressed bytes, as produced.
        g.bench_function(format!("check_records_{codec:?}").to_lowercase(), |bn| {
            bn.iter(|| check_records(std::hint::black_box(&z), &h))
        });
    }
    let mut m = b.clone();
    let mut off = 0i64;
    g.bench_function("stamp_offset", |bn| {
        bn.iter(|| {
            off += 64;
            batch::stamp(std::hint::black_box(&mut m), off, 0)
        })
    });
    g.finish();
}

fn log_append(c: &mut Criterion) {
    let b = batch_64k();
    let dir = tempfile::tempdir().expect("tmp");
    let ex = glommio::LocalExecutorBuilder::default()
        .make()
        .expect("executor");
    let cfg = LogConfig {
        segment_bytes: 256 << 20,
        ..LogConfig::default()
    };
    let log = ex.run(Log::open(dir.path(), cfg)).expect("open").0;
    let mut g = c.benchmark_group("log");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.sample_size(30);
    g.bench_function("append", |bn| {
        bn.iter(|| ex.run(log.append(&b)).expect("append"))
    });
    g.finish();
}

fn index_lookup(c: &mut Criterion) {
    // 1 GiB segment, an entry every 4 KiB: 262,144 entries.
    let mut idx = OffsetIndex::default();
    for i in 0..262_144u32 {
        idx.push(OffsetEntry {
            rel_offset: i * 4,
            position: i * 4096,
        });
    }
    let mut k = 0u32;
    c.bench_function("index/lookup", |bn| {
        bn.iter(|| {
            k = k.wrapping_mul(1_103_515_245).wrapping_add(12_345) % (262_144 * 4);
            idx.lookup(std::hint::black_box(k))
        })
    });
}

fn produce_frame(b: &[u8]) -> Bytes {
    let mut req = ProduceRequest::default();
    req.acks = 1;
    req.timeout_ms = 30_000;
    let mut t = TopicProduceData::default();
    t.name = TopicName(StrBytes::from_static_str("bench"));
    t.partition_data = (0..8)
        .map(|p| {
            let mut pd = PartitionProduceData::default();
            pd.index = p;
            pd.records = Some(Bytes::copy_from_slice(b));
            pd
        })
        .collect();
    req.topic_data = vec![t];
    let mut header = RequestHeader::default();
    header.request_api_key = 0;
    header.request_api_version = 9;
    header.correlation_id = 1;
    header.client_id = Some(StrBytes::from_static_str("bench"));
    let mut buf = BytesMut::new();
    header.encode(&mut buf, 2).expect("header");
    req.encode(&mut buf, 9).expect("request");
    buf.freeze()
}

fn protocol_paths(c: &mut Criterion) {
    let b = batch_64k();
    let frame = produce_frame(&b);
    let mut g = c.benchmark_group("protocol");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode_produce", |bn| {
        bn.iter(|| shardlog::protocol::decode_request(frame.clone()).expect("decode"))
    });
    let records = Bytes::from(b.clone());
    let parts: Vec<FetchPartitionOut> = (0..8)
        .map(|p| FetchPartitionOut {
            partition: p,
            error: 0,
            high_watermark: 1_000_000,
            last_stable_offset: 1_000_000,
            log_start_offset: 0,
            records: records.clone(),
            diverging: None,
            aborted: Vec::new(),
        })
        .collect();
    let topics = vec![("bench".to_string(), parts)];
    g.throughput(Throughput::Bytes(8 * b.len() as u64));
    g.bench_function("encode_fetch", |bn| {
        bn.iter(|| {
            let pieces = encode(12, 7, std::hint::black_box(topics.clone()));
            let mut n = BytesMut::new();
            n.put_u64(
                pieces
                    .iter()
                    .map(|p| match p {
                        Piece::Bytes(b) | Piece::Records(b) => b.len() as u64,
                    })
                    .sum(),
            );
            n
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    batch_paths,
    log_append,
    index_lookup,
    protocol_paths
);
criterion_main!(benches);
