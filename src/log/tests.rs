//! Storage engine tests: append, read by offset and time, roll, recovery from torn tails.

use std::future::Future;

use super::batch::test_support::{make_batch, make_producer_batch};
use super::batch::{parse_header, BatchScan};
use super::producer_state::SequenceError;
use super::*;

pub(super) fn run<F: Future<Output = ()> + 'static>(f: impl FnOnce() -> F + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move { f().await })
        .expect("executor")
        .join()
        .expect("join");
}

pub(super) fn small(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn offsets_in(buf: &[u8]) -> Vec<i64> {
    BatchScan::new(buf, true)
        .flat_map(|(_, h)| h.base_offset..=h.last_offset())
        .collect()
}

#[test]
fn append_and_read_by_offset() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
        for i in 0..5 {
            let info = log
                .append(&make_batch(999, 3, 1000 + i, 20))
                .await
                .expect("append");
            assert_eq!(info.base_offset, i * 3);
            assert_eq!(info.last_offset, i * 3 + 2);
        }
        assert_eq!(log.high_watermark(), 15);
        let all = log.read(0, 1 << 20, true).await.expect("read");
        assert_eq!(offsets_in(&all.records), (0..15).collect::<Vec<_>>());
        // A read in the middle of a batch starts with that batch.
        let mid = log.read(7, 1 << 20, true).await.expect("read");
        assert_eq!(offsets_in(&mid.records)[0], 6);
        // At the end: empty; past it: out of range.
        assert!(log
            .read(15, 1 << 20, true)
            .await
            .expect("read")
            .records
            .is_empty());
        assert!(matches!(
            log.read(16, 1 << 20, true).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // max_bytes smaller than one batch still returns one batch when min_one.
        let one = log.read(0, 1, true).await.expect("read");
        assert_eq!(offsets_in(&one.records), vec![0, 1, 2]);
        assert!(log
            .read(0, 1, false)
            .await
            .expect("read")
            .records
            .is_empty());
    });
}

#[test]
fn corrupt_batch_is_refused_and_nothing_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
        let good = make_batch(0, 2, 1, 10);
        let mut bad = make_batch(0, 2, 1, 10);
        let n = bad.len();
        bad[n - 1] ^= 1;
        let mut both = good.clone();
        both.extend_from_slice(&bad);
        assert!(matches!(log.append(&both).await, Err(LogError::Corrupt(_))));
        assert_eq!(log.high_watermark(), 0);
        assert_eq!(log.size_bytes(), 0);
        log.append(&good).await.expect("good append");
        assert_eq!(log.high_watermark(), 2);
    });
}

#[test]
fn rolls_segments_and_reopens() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        {
            let (log, _) = Log::open(&path, small(1024)).await.expect("open");
            for i in 0..40 {
                log.append(&make_batch(0, 2, 1000 + i, 50))
                    .await
                    .expect("append");
            }
            assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
            let r = log.read(33, 1 << 20, true).await.expect("read");
            assert_eq!(offsets_in(&r.records)[0], 32);
        }
        let (log, report) = Log::open(&path, small(1024)).await.expect("reopen");
        assert!(
            report.is_empty(),
            "clean reopen needs no repair: {report:?}"
        );
        assert_eq!(log.high_watermark(), 80);
        let mut next = 0;
        // Read everything back across segment boundaries, one batch at a time.
        for _ in 0..100 {
            if next == 80 {
                break;
            }
            let r = log.read(next, 1, true).await.expect("read");
            let offs = offsets_in(&r.records);
            assert_eq!(offs[0], next);
            next = offs.last().copied().expect("nonempty") + 1;
        }
        assert_eq!(next, 80);
    });
}

#[test]
fn recovery_cuts_torn_tail() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
        for _ in 0..4 {
            log.append(&make_batch(0, 1, 5, 30)).await.expect("append");
        }
        let seg = path.join(segment::file_name(0, "log"));
        drop(log);
        // Tear the last batch in half and add garbage after a valid prefix.
        let len = std::fs::metadata(&seg).expect("meta").len();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&seg)
            .expect("open");
        f.set_len(len - 10).expect("truncate");
        drop(f);
        let (log, report) = Log::open(&path, LogConfig::default())
            .await
            .expect("reopen");
        assert_eq!(log.high_watermark(), 3);
        assert_eq!(report.len(), 1, "{report:?}");
        assert!(report[0].contains("cut"), "{report:?}");
        // The log accepts appends after the cut, at the next offset.
        let info = log.append(&make_batch(0, 1, 5, 30)).await.expect("append");
        assert_eq!(info.base_offset, 3);
    });
}

#[test]
fn recovery_cuts_corrupt_tail_and_rebuilds_index() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, small(1 << 20)).await.expect("open");
        for _ in 0..30 {
            log.append(&make_batch(0, 1, 5, 40)).await.expect("append");
        }
        drop(log);
        let seg = path.join(segment::file_name(0, "log"));
        let mut bytes = std::fs::read(&seg).expect("read");
        let n = bytes.len();
        bytes[n - 5] ^= 0xff; // flip a byte in the last batch
        std::fs::write(&seg, &bytes).expect("write");
        std::fs::remove_file(path.join(segment::file_name(0, "index"))).expect("rm index");
        let (log, report) = Log::open(&path, small(1 << 20)).await.expect("reopen");
        assert_eq!(log.high_watermark(), 29);
        assert!(report.iter().any(|l| l.contains("CRC")), "{report:?}");
        let r = log.read(20, 1 << 20, true).await.expect("read");
        assert_eq!(offsets_in(&r.records)[0], 20);
    });
}

#[test]
fn offset_for_timestamp_finds_first_batch_at_or_after() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, small(2048)).await.expect("open");
        for i in 0..50i64 {
            log.append(&make_batch(0, 2, 10_000 + i * 100, 30))
                .await
                .expect("append");
        }
        assert_eq!(
            log.offset_for_timestamp(0).await.expect("ts"),
            Some((0, 10_000))
        );
        assert_eq!(
            log.offset_for_timestamp(12_050).await.expect("ts"),
            Some((42, 12_100))
        );
        assert_eq!(
            log.offset_for_timestamp(14_900).await.expect("ts"),
            Some((98, 14_900))
        );
        assert_eq!(log.offset_for_timestamp(99_999).await.expect("ts"), None);
        drop(log);
        let (log, _) = Log::open(&path, small(2048)).await.expect("reopen");
        assert_eq!(
            log.offset_for_timestamp(12_050).await.expect("ts"),
            Some((42, 12_100))
        );
    });
}

#[test]
fn concurrent_appends_get_dense_offsets() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, small(4096)).await.expect("open");
        let futs = (0..64).map(|i| {
            let log = log.clone();
            async move {
                log.append(&make_batch(0, 1 + i % 3, 1, 16))
                    .await
                    .expect("append")
            }
        });
        let mut infos = futures::future::join_all(futs).await;
        infos.sort_by_key(|i| i.base_offset);
        let mut next = 0;
        for i in &infos {
            assert_eq!(i.base_offset, next);
            next = i.last_offset + 1;
        }
        assert_eq!(log.high_watermark(), next);
        let r = log.read(0, 1 << 20, true).await.expect("read");
        let first = parse_header(&r.records).expect("header");
        assert_eq!(first.base_offset, 0);
    });
}

#[test]
fn idempotent_retries_are_not_written_twice_even_after_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let b0 = make_producer_batch(0, 3, 1, 10, 42, 0, 0);
        let b1 = make_producer_batch(0, 2, 1, 10, 42, 0, 3);
        {
            let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
            log.append(&make_batch(0, 1, 1, 5)).await.expect("plain");
            assert_eq!(log.append(&b0).await.expect("b0").base_offset, 1);
            assert_eq!(log.append(&b1).await.expect("b1").base_offset, 4);
            let dup = log.append(&b0).await.expect("retry");
            assert_eq!((dup.base_offset, dup.last_offset), (1, 3));
            assert_eq!(log.high_watermark(), 6);
            let gap = make_producer_batch(0, 1, 1, 10, 42, 0, 9);
            assert!(matches!(
                log.append(&gap).await,
                Err(LogError::Sequence(SequenceError::OutOfOrder {
                    expected: 5,
                    ..
                }))
            ));
            // A producer this log keeps no state for is taken at any sequence (as Kafka
            // since 2.5): its state went with retention, or this replica never saw it.
            let stranger = make_producer_batch(0, 1, 1, 10, 77, 0, 4);
            assert_eq!(
                log.append(&stranger).await.expect("stranger").base_offset,
                6
            );
            // Dropped without a snapshot: like a crash.
        }
        let (log, _) = Log::open(&path, LogConfig::default())
            .await
            .expect("reopen");
        let dup = log.append(&b1).await.expect("retry after reopen");
        assert_eq!(dup.base_offset, 4);
        assert_eq!(log.high_watermark(), 7);
        // A bumped epoch starts again at 0; the old epoch is fenced.
        let e1 = make_producer_batch(0, 1, 1, 10, 42, 1, 0);
        assert_eq!(log.append(&e1).await.expect("epoch 1").base_offset, 7);
        let old = make_producer_batch(0, 1, 1, 10, 42, 0, 5);
        assert!(matches!(
            log.append(&old).await,
            Err(LogError::Sequence(SequenceError::InvalidEpoch { .. }))
        ));
    });
}

#[test]
fn producer_state_recovers_from_snapshots_across_rolls() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let batch = |seq: i32| make_producer_batch(0, 2, 1, 100, 9, 0, seq);
        {
            let (log, _) = Log::open(&path, small(2048)).await.expect("open");
            for i in 0..60 {
                log.append(&batch(i * 2)).await.expect("append");
            }
            assert!(log.segment_count() > 3);
        }
        let snapshots = std::fs::read_dir(&path)
            .expect("dir")
            .filter(|e| {
                e.as_ref()
                    .map(|e| e.file_name().to_string_lossy().ends_with(".snapshot"))
                    .unwrap_or(false)
            })
            .count();
        assert_eq!(snapshots, 2, "two newest snapshots kept");
        let (log, _) = Log::open(&path, small(2048)).await.expect("reopen");
        // The last five batches are recognised; the next sequence is accepted.
        for i in 55..60 {
            let dup = log.append(&batch(i * 2)).await.expect("dup");
            assert_eq!(dup.base_offset, i64::from(i) * 2);
        }
        assert_eq!(log.high_watermark(), 120);
        assert_eq!(
            log.append(&batch(120)).await.expect("next").base_offset,
            120
        );
        log.snapshot_producers().await.expect("snapshot");
        drop(log);
        let (log, _) = Log::open(&path, small(2048)).await.expect("reopen 2");
        assert_eq!(log.append(&batch(120)).await.expect("dup").base_offset, 120);
    });
}

#[test]
fn clean_reopen_scans_only_the_tail_and_matches_a_full_scan() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        {
            let (log, _) = Log::open(&path, small(1 << 20)).await.expect("open");
            for i in 0..100 {
                log.append(&make_batch(0, 2, 1000 + i, 40))
                    .await
                    .expect("append");
            }
            log.sync().await.expect("sync");
        }
        let (clean, report) = Log::open_with(&path, small(1 << 20), true)
            .await
            .expect("clean open");
        assert!(report.is_empty(), "{report:?}");
        assert_eq!(clean.high_watermark(), 200);
        let r = clean.read(150, 1 << 20, true).await.expect("read");
        assert_eq!(offsets_in(&r.records)[0], 150);
        assert_eq!(
            clean.offset_for_timestamp(1050).await.expect("ts"),
            Some((100, 1050))
        );
        assert_eq!(
            clean
                .append(&make_batch(0, 1, 5, 5))
                .await
                .expect("append")
                .base_offset,
            200
        );
    });
}

#[test]
fn durable_appends_share_one_fdatasync() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
        let before = super::file::fsync_stats().0;
        let futs = (0..50).map(|_| {
            let log = log.clone();
            async move {
                log.append_with(&make_batch(0, 1, 1, 10), true)
                    .await
                    .expect("append")
            }
        });
        futures::future::join_all(futs).await;
        let synced = super::file::fsync_stats().0 - before;
        assert!(
            (1..=3).contains(&synced),
            "50 durable appends took {synced} fdatasyncs"
        );
        // Non-durable appends do not wait for one.
        let before = super::file::fsync_stats().0;
        log.append(&make_batch(0, 1, 1, 10)).await.expect("append");
        assert_eq!(super::file::fsync_stats().0 - before, 0);
        // The background flush picks it up once flush.ms has passed.
        assert!(log.flush_if_due(now_ms() + 5_000).await.expect("flush"));
        assert!(!log
            .flush_if_due(now_ms() + 10_000)
            .await
            .expect("nothing left"));
    });
}

#[test]
fn retention_by_size_and_time_deletes_whole_closed_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            retention_bytes: 3000,
            retention_ms: -1,
            ..small(1024)
        };
        let (log, _) = Log::open(&path, cfg.clone()).await.expect("open");
        for i in 0..60 {
            log.append(&make_batch(0, 1, 1_000 + i, 100))
                .await
                .expect("append");
        }
        let segments = log.segment_count();
        let deleted = log.apply_retention(now_ms()).expect("retention");
        assert!(deleted > 0 && log.segment_count() == segments - deleted);
        assert!(log.size_bytes() < 3000 + 1200, "size {}", log.size_bytes());
        let start = log.log_start_offset();
        assert!(start > 0);
        assert!(matches!(
            log.read(0, 1 << 20, true).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            offsets_in(&log.read(start, 1 << 20, true).await.expect("read").records)[0],
            start
        );
        // By time: every closed segment's newest record is ancient.
        log.set_config(LogConfig {
            retention_bytes: -1,
            retention_ms: 60_000,
            ..cfg
        });
        log.apply_retention(now_ms()).expect("retention");
        assert_eq!(log.segment_count(), 1, "only the active segment is kept");
        // Deleted segments' names are gone at once; their unlinks finish off the shard.
        let names = |p: &std::path::Path| -> Vec<String> {
            std::fs::read_dir(p)
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
                .collect()
        };
        assert_eq!(
            names(&path).iter().filter(|n| n.ends_with(".log")).count(),
            1
        );
        for _ in 0..200 {
            if !names(&path).iter().any(|n| n.ends_with(".deleted")) {
                break;
            }
            crate::runtime::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(
            !names(&path).iter().any(|n| n.ends_with(".deleted")),
            "{:?}",
            names(&path)
        );
        // A crash between rename and unlink: the leftover is cleared on open.
        std::fs::write(path.join("00000000000000000000.log.deleted"), b"x").expect("leftover");
        drop(log);
        let (log, report) = Log::open(&path, small(1024)).await.expect("reopen");
        assert!(
            report.iter().any(|l| l.contains("deleted segments")),
            "{report:?}"
        );
        assert!(!path.join("00000000000000000000.log.deleted").exists());
        assert!(
            log.log_start_offset() > start,
            "log start survives a restart"
        );
        assert_eq!(log.high_watermark(), 60);
    });
}

#[derive(Debug, Clone)]
enum Op {
    Append { count: i32, size: usize },
    Retain { bytes: i64 },
    Reopen,
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        6 => (1..5i32, 0..300usize).prop_map(|(count, size)| Op::Append { count, size }),
        1 => (500..5000i64).prop_map(|bytes| Op::Retain { bytes }),
        1 => Just(Op::Reopen),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Random appends, rolls, retention and restarts: the log always serves exactly the
    /// offsets from its start to its end, in order, and never loses an offset above its start.
    #[test]
    fn log_matches_a_model(ops in proptest::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().to_path_buf();
        run(move || async move {
            let cfg = small(700);
            let (mut log, _) = Log::open(&path, cfg.clone()).await.expect("open");
            let mut next = 0i64;
            for op in ops {
                match op {
                    Op::Append { count, size } => {
                        let info = log.append(&make_batch(0, count, 1, size)).await.expect("append");
                        assert_eq!(info.base_offset, next);
                        next += i64::from(count);
                    }
                    Op::Retain { bytes } => {
                        log.set_config(LogConfig { retention_bytes: bytes, retention_ms: -1, ..cfg.clone() });
                        log.apply_retention(now_ms()).expect("retention");
                        log.set_config(cfg.clone());
                    }
                    Op::Reopen => {
                        drop(log);
                        log = Log::open(&path, cfg.clone()).await.expect("reopen").0;
                    }
                }
                assert_eq!(log.high_watermark(), next);
                let start = log.log_start_offset();
                assert!(start <= next);
                let mut at = start;
                // Bounded: every read returns at least one batch until the end.
                for _ in 0..10_000 {
                    if at == next {
                        break;
                    }
                    let r = log.read(at, 2048, true).await.expect("read");
                    let offs = offsets_in(&r.records);
                    assert!(!offs.is_empty());
                    let from = offs.iter().position(|o| *o == at).expect("requested offset present");
                    for (k, o) in offs[from..].iter().enumerate() {
                        assert_eq!(*o, at + k as i64);
                    }
                    at = offs[offs.len() - 1] + 1;
                }
                assert_eq!(at, next);
            }
        });
    }
}
