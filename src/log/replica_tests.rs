//! The log's replica side: epochs stamped and remembered across restarts, a follower's
//! append of the leader's bytes, and what a follower append refuses.

use super::batch::test_support::make_batch;
use super::batch::{self, BatchScan};
use super::tests::run;
use super::*;

/// (base offset, leader epoch) of every batch in `buf`.
fn epochs_in(buf: &[u8]) -> Vec<(i64, i32)> {
    BatchScan::new(buf, true)
        .map(|(_, h)| (h.base_offset, h.leader_epoch))
        .collect()
}

/// The whole log from `from` to its end, segment after segment.
async fn read_all(log: &Log, mut from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    // Bounded: each read returns at least one batch until the end.
    while from < log.high_watermark() {
        let r = log.read(from, 1 << 20, true).await.expect("read").records;
        let last = BatchScan::new(&r, true)
            .last()
            .map(|(_, h)| h.last_offset());
        let Some(last) = last else { break };
        out.extend_from_slice(&r);
        from = last + 1;
    }
    out
}

#[test]
fn appends_carry_the_leader_epoch_and_the_cache_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
        log.append(&make_batch(0, 2, 1, 10)).await.expect("append");
        // Epoch 0 alone needs no file: a single node writes none.
        assert!(!path.join(epochs::FILE).exists());
        log.set_leader_epoch(3);
        log.append(&make_batch(0, 3, 2, 10)).await.expect("append");
        log.append(&make_batch(0, 1, 3, 10)).await.expect("append");
        log.set_leader_epoch(1);
        assert_eq!(log.leader_epoch(), 3, "epochs never go backwards");
        log.set_leader_epoch(5);
        log.append(&make_batch(0, 2, 4, 10)).await.expect("append");
        let all = log.read(0, 1 << 20, true).await.expect("read");
        assert_eq!(
            epochs_in(&all.records),
            vec![(0, 0), (2, 3), (5, 3), (6, 5)]
        );
        assert_eq!(log.end_offset_for_epoch(0), Some((0, 2)));
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 6)));
        assert_eq!(log.end_offset_for_epoch(5), Some((5, 8)));
        assert_eq!(log.end_offset_for_epoch(-1), None);
        drop(log);

        let (log, _) = Log::open(&path, LogConfig::default())
            .await
            .expect("reopen");
        assert_eq!(log.latest_epoch(), Some(5));
        assert_eq!(
            log.leader_epoch(),
            5,
            "a restarted leader keeps stamping its epoch"
        );
        assert_eq!(log.end_offset_for_epoch(4), Some((3, 6)));
        drop(log);

        // A damaged cache is rebuilt from the batches; one that runs ahead of the log
        // (written before a batch that never landed) is trimmed.
        std::fs::write(path.join(epochs::FILE), "0\n9\n").expect("damage");
        let (log, report) = Log::open(&path, LogConfig::default())
            .await
            .expect("reopen");
        assert!(
            report.iter().any(|l| l.contains("rebuilding")),
            "{report:?}"
        );
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 6)));
        assert_eq!(log.latest_epoch(), Some(5));
        drop(log);
        std::fs::write(path.join(epochs::FILE), "0\n3\n0 0\n3 2\n9 8\n").expect("ahead");
        let (log, _) = Log::open(&path, LogConfig::default())
            .await
            .expect("reopen");
        assert_eq!(
            log.latest_epoch(),
            Some(3),
            "the entry at the log end is dropped"
        );
        assert_eq!(log.end_offset_for_epoch(9), Some((3, 8)));
    });
}

#[test]
fn a_follower_stores_the_leaders_bytes_at_their_offsets() {
    let dir = tempfile::tempdir().expect("tmp");
    let (lpath, fpath) = (dir.path().join("leader"), dir.path().join("follower"));
    run(move || async move {
        let (leader, _) = Log::open(&lpath, LogConfig::default()).await.expect("open");
        leader.set_leader_epoch(2);
        for i in 0..4 {
            leader
                .append(&make_batch(0, 3, i, 50))
                .await
                .expect("append");
        }
        leader.set_leader_epoch(4);
        leader
            .append(&make_batch(0, 2, 9, 50))
            .await
            .expect("append");
        let all = leader.read(0, 1 << 20, true).await.expect("read").records;

        let (follower, _) = Log::open(&fpath, LogConfig::default()).await.expect("open");
        // In two fetches, the second starting where the first ended.
        let split = BatchScan::new(&all, true)
            .nth(2)
            .map(|(at, _)| at)
            .expect("third batch");
        let first = follower
            .append_replica(&all[..split], true)
            .await
            .expect("replica append");
        assert_eq!((first.base_offset, first.last_offset), (0, 5));
        // A fetch that does not start at the follower's end is refused whole.
        let again = follower.append_replica(&all[..split], false).await;
        assert!(
            matches!(again, Err(LogError::NotAtEnd { base: 0, end: 6 })),
            "{again:?}"
        );
        follower
            .append_replica(&all[split..], false)
            .await
            .expect("replica append");
        let copy = follower.read(0, 1 << 20, true).await.expect("read").records;
        assert_eq!(copy, all, "byte for byte the leader's log");
        assert_eq!(follower.end_offset_for_epoch(2), Some((2, 12)));
        assert_eq!(follower.latest_epoch(), Some(4));
        assert_eq!(follower.log_end_offset(), 14);
    });
}

#[test]
fn a_follower_append_refuses_damage_gaps_and_overlaps_without_writing() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
        let a = make_batch(0, 3, 1, 20);
        let gap = make_batch(5, 2, 1, 20);
        let mut two = a.clone();
        two.extend_from_slice(&gap);
        assert!(matches!(
            log.append_replica(&two, false).await,
            Err(LogError::NotAtEnd { base: 5, end: 3 })
        ));
        let mut bad_crc = a.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(matches!(
            log.append_replica(&bad_crc, false).await,
            Err(LogError::Corrupt(_))
        ));
        assert!(log.append_replica(&a[..a.len() - 4], false).await.is_err());
        assert!(log.append_replica(&[], false).await.is_err());
        assert_eq!(log.log_end_offset(), 0, "nothing written");
        log.append_replica(&a, false).await.expect("append");
        assert_eq!(log.log_end_offset(), 3);
        // Starting below the end (overlap) or above it (gap): refused.
        assert!(log
            .append_replica(&make_batch(2, 2, 1, 20), false)
            .await
            .is_err());
        assert!(log
            .append_replica(&make_batch(4, 2, 1, 20), false)
            .await
            .is_err());
        assert_eq!(log.read(0, 1 << 20, true).await.expect("read").records, a);
    });
}

#[test]
fn truncation_cuts_at_a_batch_boundary_across_segments_and_survives_a_restart() {
    use super::batch::test_support::make_producer_batch;
    use super::tests::small;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, small(600)).await.expect("open");
        log.set_leader_epoch(1);
        for i in 0..4 {
            log.append(&make_batch(0, 3, i, 60)).await.expect("append");
        }
        log.set_leader_epoch(2);
        // An idempotent producer's batch that the truncation will remove.
        let pb = make_producer_batch(0, 2, 9, 60, 77, 0, 0);
        for i in 0..3 {
            log.append(&make_batch(0, 3, 10 + i, 60))
                .await
                .expect("append");
        }
        let info = log.append(&pb).await.expect("producer batch");
        assert_eq!(info.base_offset, 21);
        let end = log.log_end_offset();
        assert_eq!(end, 23);
        assert!(log.segment_count() > 3, "several segments");

        // Offset 13 sits in the batch at 12: the log ends at 12, epoch 2 starts at 12.
        let new_end = log.truncate_to(13).await.expect("truncate");
        assert_eq!(new_end, 12);
        assert_eq!(log.log_end_offset(), 12);
        assert_eq!(log.high_watermark(), 12);
        assert_eq!(
            log.end_offset_for_epoch(2),
            Some((1, 12)),
            "epoch 2 is gone"
        );
        let all = read_all(&log, 0).await;
        let batches = epochs_in(&all);
        assert_eq!(batches.last(), Some(&(9, 1)));
        assert!(matches!(
            log.read(13, 1 << 20, true).await,
            Err(LogError::OffsetOutOfRange { .. })
        ));
        // The producer's batch went with it: sent again (to this replica, now leading
        // epoch 3), it is new, not a duplicate.
        log.set_leader_epoch(3);
        let again = log.append(&pb).await.expect("producer batch again");
        assert_eq!(again.base_offset, 12);
        log.append(&make_batch(0, 1, 20, 60)).await.expect("append");
        let before_restart = read_all(&log, 0).await;
        let files_before = std::fs::read_dir(&path).expect("dir").count();
        drop(log);

        let (log, report) = Log::open(&path, small(600)).await.expect("reopen");
        assert!(report.is_empty(), "clean after truncation: {report:?}");
        assert_eq!(log.log_end_offset(), 15);
        assert_eq!(read_all(&log, 0).await, before_restart);
        assert_eq!(log.end_offset_for_epoch(2), Some((1, 12)));
        assert_eq!(log.end_offset_for_epoch(3), Some((3, 15)));
        assert_eq!(epochs_in(&read_all(&log, 12).await), vec![(12, 3), (14, 3)]);
        assert!(std::fs::read_dir(&path).expect("dir").count() <= files_before);
        // Truncating at or past the end does nothing; below the log start is refused.
        assert_eq!(log.truncate_to(15).await.expect("noop"), 15);
        assert_eq!(log.truncate_to(99).await.expect("noop"), 15);
        log.delete_records(3).expect("delete records");
        assert!(log.truncate_to(2).await.is_err());
        // To the very start of a segment, and to the log start.
        assert_eq!(log.truncate_to(3).await.expect("to start"), 3);
        assert_eq!(log.log_end_offset(), 3);
        log.append(&make_batch(0, 2, 30, 60)).await.expect("append");
        assert_eq!(log.log_end_offset(), 5);
    });
}

#[test]
fn a_reset_replica_starts_empty_at_the_leaders_log_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, super::tests::small(600))
            .await
            .expect("open");
        log.set_leader_epoch(2);
        for i in 0..6 {
            log.append(&make_batch(0, 3, i, 60)).await.expect("append");
        }
        log.reset_to(40).await.expect("reset");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 40));
        assert_eq!(log.segment_count(), 1);
        assert_eq!(log.latest_epoch(), None);
        let mut leaders = make_batch(40, 2, 9, 60);
        batch::stamp(&mut leaders, 40, 5);
        log.append_replica(&leaders, false)
            .await
            .expect("replica append");
        assert_eq!(log.log_end_offset(), 42);
        drop(log);
        let (log, _) = Log::open(&path, super::tests::small(600))
            .await
            .expect("reopen");
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (40, 42));
        assert_eq!(log.latest_epoch(), Some(5));
        assert_eq!(epochs_in(&read_all(&log, 40).await), vec![(40, 5)]);
    });
}

#[test]
fn bytes_from_counts_the_log_after_an_offset_across_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 4096,
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(&path, cfg).await.expect("open");
        let mut sizes = Vec::new();
        for i in 0..40 {
            let b = make_batch(0, 1, i, 300);
            sizes.push(b.len() as u64);
            log.append(&b).await.expect("append");
        }
        assert!(log.segment_count() > 2, "several segments");
        let total: u64 = sizes.iter().sum();
        assert_eq!(log.bytes_from(0), total);
        assert_eq!(log.bytes_from(40), 0);
        assert_eq!(log.bytes_from(99), 0);
        // Every batch is indexed here: exact at every batch boundary.
        for k in [1usize, 13, 25, 39] {
            let after: u64 = sizes[k..].iter().sum();
            assert_eq!(log.bytes_from(k as i64), after, "from offset {k}");
        }
    });
}

#[test]
fn appends_wait_for_a_truncation_and_a_retry_found_before_it_is_not_answered_with_cut_offsets() {
    use super::batch::test_support::make_producer_batch;
    use super::tests::small;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, small(600)).await.expect("open");
        for i in 0..4 {
            log.append(&make_batch(0, 3, i, 60)).await.expect("append");
        }
        let pb = make_producer_batch(0, 2, 9, 60, 77, 0, 0);
        assert_eq!(
            log.append(&pb).await.expect("producer batch").base_offset,
            12
        );
        // A retry of that batch, found to be a duplicate before the truncation cuts it.
        let retry = log.enqueue(&pb, false).await.expect("retry");
        assert!(matches!(retry, Enqueued::Duplicate(..)));
        // The truncation starts first; an append (this replica leads by now) and the retry's
        // answer come while it runs.
        let more = make_batch(0, 3, 20, 60);
        let (cut, appended, retried) =
            futures::join!(log.truncate_to(12), log.append(&more), log.finish(retry));
        assert_eq!(cut.expect("truncate"), 12);
        assert_eq!(
            appended.expect("append").base_offset,
            12,
            "appended after the truncation, at the new end"
        );
        assert!(
            retried.is_err(),
            "the retry is not answered with offsets the truncation cut: {:?}",
            retried.map(|i| i.base_offset)
        );
        let all = read_all(&log, 0).await;
        let offsets: Vec<i64> = BatchScan::new(&all, true)
            .flat_map(|(_, h)| h.base_offset..=h.last_offset())
            .collect();
        assert_eq!(offsets, (0..15).collect::<Vec<i64>>());
        // Sent again, the producer's batch is new to the rebuilt state.
        assert_eq!(log.append(&pb).await.expect("again").base_offset, 15);
    });
}
