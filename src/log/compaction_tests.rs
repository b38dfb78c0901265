//! Compaction tests: the cleaner against a model, tombstones, compressed batches, and a swap
//! interrupted by a crash.

use std::collections::BTreeMap;

use super::batch::{parse_header, BatchScan, HEADER_LEN};
use super::cleaner::{filter_batch, Filtered};
use super::codec::{self, Codec};
use super::records::{build_batch, RecordWalk};
use super::tests::{run, small};
use super::*;

/// (key, value) of a record; `None` value is a tombstone.
type Kv = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A batch of `records` compressed with `codec`.
fn keyed_batch(records: &[Kv], timestamp: i64, codec: Codec) -> Vec<u8> {
    let refs: Vec<_> = records
        .iter()
        .map(|(k, v)| (k.as_deref(), v.as_deref()))
        .collect();
    let plain = build_batch(&refs, timestamp);
    if codec == Codec::None {
        return plain;
    }
    let section = codec::compress(codec, &plain[HEADER_LEN..]).expect("compress");
    let mut b = plain[..HEADER_LEN].to_vec();
    b.extend(section);
    b[21..23].copy_from_slice(&codec.attributes().to_be_bytes());
    batch::seal(&mut b);
    b
}

/// Every record the log serves from its start: offset -> (key, value).
async fn read_all(log: &Log) -> BTreeMap<i64, Kv> {
    let mut out = BTreeMap::new();
    let mut at = log.log_start_offset();
    // Bounded: each read returns at least one batch past `at` until the end.
    for _ in 0..100_000 {
        if at >= log.high_watermark() {
            break;
        }
        let r = log.read(at, 1 << 16, true).await.expect("read");
        let mut last = at;
        for (pos, h) in BatchScan::new(&r.records, true) {
            let b = &r.records[pos..pos + h.size];
            let (_, section) = codec::batch_records(b, &h, 1 << 24).expect("section");
            let mut walk = RecordWalk::new(&section, &h);
            for rec in walk.by_ref() {
                let o = h.base_offset + rec.offset_delta;
                assert!(
                    o >= h.base_offset && o <= h.last_offset(),
                    "offset inside its batch"
                );
                let prev = out.insert(
                    o,
                    (rec.key.map(<[u8]>::to_vec), rec.value.map(<[u8]>::to_vec)),
                );
                assert!(prev.is_none() || o < at, "offset {o} served twice");
            }
            assert!(walk.complete(), "batch at {} decodes whole", h.base_offset);
            last = h.last_offset() + 1;
        }
        assert!(last > at, "read at {at} made progress");
        at = last;
    }
    out
}

/// What compaction must leave: records below `active_base` whose key has a later record below
/// `active_base` are gone; everything else stays at its offset.
fn compact_model(model: &mut BTreeMap<i64, Kv>, active_base: i64) {
    let mut latest: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (o, (k, _)) in model.range(..active_base) {
        if let Some(k) = k {
            latest.insert(k.clone(), *o);
        }
    }
    model.retain(|o, (k, _)| {
        *o >= active_base || k.as_ref().is_none_or(|k| latest.get(k) == Some(o))
    });
}

fn compacting(segment_bytes: u64) -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy {
            delete: false,
            compact: true,
        },
        min_cleanable_dirty_ratio: 0.0,
        ..small(segment_bytes)
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Records with keys from a small set (None: no key; tombstones when the value is None).
    Append(Vec<(Option<u8>, bool)>, usize),
    Compact,
    Reopen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    let rec = (
        proptest::option::weighted(0.9, 0..12u8),
        proptest::bool::weighted(0.9),
    );
    prop_oneof![
        6 => (proptest::collection::vec(rec, 1..6), 0..5usize).prop_map(|(r, c)| Op::Append(r, c)),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Random keyed appends (every codec), compactions and restarts: the log always serves
    /// exactly what the model keeps, at the same offsets.
    #[test]
    fn compaction_matches_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().to_path_buf();
        run(move || async move {
            let cfg = compacting(600);
            let (mut log, _) = Log::open(&path, cfg.clone()).await.expect("open");
            let mut model: BTreeMap<i64, Kv> = BTreeMap::new();
            for (step, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Append(recs, c) => {
                        let kvs: Vec<Kv> = recs
                            .iter()
                            .map(|(k, live)| {
                                let key = k.map(|k| vec![b'k', k]);
                                let value = live.then(|| format!("v{step}-{}", k.unwrap_or(0)).repeat(8).into_bytes());
                                (key, value)
                            })
                            .collect();
                        let info = log.append(&keyed_batch(&kvs, now_ms(), Codec::ALL[c])).await.expect("append");
                        for (i, kv) in kvs.into_iter().enumerate() {
                            model.insert(info.base_offset + i as i64, kv);
                        }
                    }
                    Op::Compact => {
                        log.clean(now_ms(), 1 << 20).await.expect("clean");
                        compact_model(&mut model, log.active_base());
                    }
                    Op::Reopen => {
                        drop(log);
                        log = Log::open(&path, cfg.clone()).await.expect("reopen").0;
                    }
                }
                let end = model.keys().next_back().map(|o| o + 1).unwrap_or(0);
                assert_eq!(log.high_watermark(), end, "offsets never renumbered");
                assert_eq!(read_all(&log).await, model);
            }
        });
    }
}

#[test]
fn tombstones_go_after_delete_retention_and_recent_ones_stay() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            delete_retention_ms: 60_000,
            ..compacting(400)
        };
        let (log, _) = Log::open(&path, cfg).await.expect("open");
        let now = now_ms();
        let old = now - 3_600_000;
        let k = |s: &str| Some(s.as_bytes().to_vec());
        let v = |s: &str| Some(s.repeat(50).into_bytes());
        log.append(&keyed_batch(
            &[(k("a"), v("1")), (k("b"), v("1"))],
            old,
            Codec::None,
        ))
        .await
        .expect("append");
        log.append(&keyed_batch(&[(k("a"), None)], old, Codec::None))
            .await
            .expect("old tombstone");
        log.append(&keyed_batch(&[(k("c"), v("1"))], old, Codec::Gzip))
            .await
            .expect("append");
        log.append(&keyed_batch(&[(k("b"), None)], now, Codec::None))
            .await
            .expect("recent tombstone");
        // Roll so that everything above is in closed segments.
        for _ in 0..3 {
            log.append(&keyed_batch(&[(k("z"), v("z"))], now, Codec::None))
                .await
                .expect("append");
        }
        let stats = log
            .clean(now, 1 << 20)
            .await
            .expect("clean")
            .expect("a pass ran");
        assert!(stats.tombstones_removed >= 1, "{stats:?}");
        let left = read_all(&log).await;
        let keys: Vec<Option<Vec<u8>>> = left.values().map(|(k, _)| k.clone()).collect();
        assert!(
            !keys.contains(&k("a")),
            "key a and its old tombstone are gone: {left:?}"
        );
        assert_eq!(left.get(&3), Some(&(k("c"), v("1"))), "c keeps offset 3");
        assert_eq!(
            left.get(&4),
            Some(&(k("b"), None)),
            "recent tombstone for b stays"
        );
        assert!(
            !left.contains_key(&1),
            "b's value is superseded by its tombstone"
        );
    });
}

#[test]
fn filter_rewrites_a_compressed_batch_keeping_offsets() {
    let recs: Vec<Kv> = (0..5u8)
        .map(|i| (Some(vec![i % 2]), Some(vec![i; 30])))
        .collect();
    for codec in Codec::ALL {
        let mut b = keyed_batch(&recs, 7, codec);
        batch::stamp(&mut b, 100, 0);
        let h = parse_header(&b).expect("header");
        let (out, removed) = filter_batch(&b, &h, |o, _| o % 2 == 0);
        assert_eq!(removed, 2);
        let Filtered::Rewritten(nb) = out else {
            panic!("expected a rewrite for {codec:?}");
        };
        let nh = batch::validate(&nb).expect("valid CRC");
        assert_eq!(
            (nh.base_offset, nh.last_offset(), nh.record_count),
            (100, 104, 3)
        );
        assert_eq!(nh.attributes, h.attributes, "codec kept");
        let (_, section) = (
            (),
            codec::decompress(codec, &nb[HEADER_LEN..], 1 << 20).expect("section"),
        );
        let offs: Vec<i64> = RecordWalk::new(&section, &nh)
            .map(|r| 100 + r.offset_delta)
            .collect();
        assert_eq!(offs, vec![100, 102, 104]);
        assert_eq!(filter_batch(&b, &h, |_, _| true), (Filtered::Unchanged, 0));
        assert_eq!(filter_batch(&b, &h, |_, _| false), (Filtered::Empty, 5));
    }
    // A batch whose records do not decode is kept as it is.
    let mut junk = keyed_batch(&recs, 7, Codec::Gzip);
    junk[HEADER_LEN + 12] ^= 0xff;
    let h = parse_header(&junk).expect("header");
    assert_eq!(
        filter_batch(&junk, &h, |_, _| false),
        (Filtered::Unchanged, 0)
    );
}

#[test]
fn a_swap_interrupted_by_a_crash_is_finished_on_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let crashed = tempfile::tempdir().expect("tmp");
    let (path, crashed_path) = (dir.path().to_path_buf(), crashed.path().to_path_buf());
    run(move || async move {
        let cfg = compacting(400);
        let (log, _) = Log::open(&path, cfg.clone()).await.expect("open");
        for i in 0..40u8 {
            let kv = (Some(vec![i % 3]), Some(vec![i; 60]));
            log.append(&keyed_batch(&[kv], 1, Codec::None))
                .await
                .expect("append");
        }
        drop(log);
        // The crashed copy: the log before compaction.
        for e in std::fs::read_dir(&path).expect("dir") {
            let e = e.expect("entry");
            std::fs::copy(e.path(), crashed_path.join(e.file_name())).expect("copy");
        }
        let (log, _) = Log::open(&path, cfg.clone()).await.expect("open");
        // Large groups: every closed segment is rewritten into one.
        log.set_config(compacting(1 << 20));
        let active = log.active_base();
        let stats = log
            .clean(now_ms(), 1 << 20)
            .await
            .expect("clean")
            .expect("ran");
        assert_eq!(stats.segments_after, 1, "{stats:?}");
        let want = read_all(&log).await;
        drop(log);
        // Crash after the commit point: the cleaned segment is a swap file beside the old
        // segments, plus an unfinished `.cleaned` leftover.
        std::fs::copy(
            path.join(segment::file_name(0, "log")),
            crashed_path.join(format!("{:020}-{:020}.swap", 0, active)),
        )
        .expect("copy swap");
        std::fs::write(
            crashed_path.join(segment::file_name(active, "log.cleaned")),
            b"x",
        )
        .expect("leftover");
        let (log, report) = Log::open(&crashed_path, cfg).await.expect("recover");
        assert!(
            report.iter().any(|l| l.contains("interrupted compaction")),
            "{report:?}"
        );
        assert_eq!(read_all(&log).await, want);
        assert_eq!(log.segment_count(), 2);
        let names: Vec<String> = std::fs::read_dir(&crashed_path)
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".cleaned") || n.ends_with(".swap")),
            "{names:?}"
        );
    });
}

#[test]
fn crafted_offset_deltas_on_disk_never_cost_a_key_its_latest_value() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let cfg = compacting(400);
        let (log, _) = Log::open(&path, cfg.clone()).await.expect("open");
        let kv = |k: &[u8], v: &[u8]| (Some(k.to_vec()), Some(v.to_vec()));
        log.append(&keyed_batch(&[kv(b"K", b"first")], 1, Codec::None))
            .await
            .expect("append");
        let active = log.active_base();
        drop(log);
        // A batch written before produce validated records (or by a damaged client that
        // slipped past it): one record for key K claiming offset delta 10^6.
        let mut crafted = keyed_batch(&[kv(b"K", b"evil")], 1, Codec::None);
        let delta_at = HEADER_LEN + 3; // length, attributes, timestamp delta
        assert_eq!(crafted[delta_at], 0);
        let mut tail = crafted[delta_at + 1..].to_vec();
        crafted.truncate(delta_at);
        records::put_varint(&mut crafted, 1_000_000);
        let grew = crafted.len() - delta_at - 1;
        crafted.append(&mut tail);
        crafted[HEADER_LEN] += 2 * grew as u8; // record length varint (small)
        batch::stamp(&mut crafted, 1, 0);
        batch::seal(&mut crafted);
        assert!(batch::validate(&crafted).is_ok(), "valid header and CRC");
        let seg = path.join(segment::file_name(active, "log"));
        let mut bytes = std::fs::read(&seg).expect("segment");
        bytes.extend_from_slice(&crafted);
        std::fs::write(&seg, bytes).expect("write");

        let (log, _) = Log::open(&path, cfg.clone()).await.expect("reopen");
        assert_eq!(log.high_watermark(), 2, "the crafted batch was recovered");
        let latest = log
            .append(&keyed_batch(&[kv(b"K", b"latest")], 1, Codec::None))
            .await
            .expect("append")
            .base_offset;
        for i in 0..30u8 {
            log.append(&keyed_batch(
                &[kv(&[b'f', i % 4], &[i; 60])],
                1,
                Codec::None,
            ))
            .await
            .expect("filler");
        }
        log.set_config(compacting(1 << 20));
        log.clean(now_ms(), 1 << 20)
            .await
            .expect("clean")
            .expect("ran");
        assert!(
            latest < log.active_base(),
            "K's latest value was in a cleaned segment"
        );
        let r = log.read(0, 1 << 20, true).await.expect("read");
        let bases: Vec<i64> = BatchScan::new(&r.records, true)
            .map(|(_, h)| h.base_offset)
            .collect();
        assert!(bases.contains(&latest), "latest value of K kept: {bases:?}");
        assert!(!bases.contains(&0), "older value of K removed: {bases:?}");
    });
}
