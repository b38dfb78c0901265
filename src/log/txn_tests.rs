//! Transactions on one log: transactional batches, markers, the last stable offset, the
//! aborted-transactions index, and all of it rebuilt after a restart and a truncation.

use super::batch::test_support::make_producer_batch;
use super::batch::{self, ATTR_TRANSACTIONAL};
use super::tests::run;
use super::txn_index::Marker;
use super::*;

/// Batch `b` marked transactional.
fn transactional(mut b: Vec<u8>) -> Vec<u8> {
    // attributes sit at bytes 21..23 of the header; the CRC covers them.
    let attrs = i16::from_be_bytes([b[21], b[22]]) | ATTR_TRANSACTIONAL;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch::seal(&mut b);
    b
}

/// A transactional batch of `count` records of producer `pid`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, count: i32) -> Vec<u8> {
    transactional(make_producer_batch(0, count, 1, 10, pid, epoch, seq))
}

#[test]
fn markers_move_the_last_stable_offset_and_survive_restarts() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let (log, _) = Log::open(&path, LogConfig::default()).await.expect("open");
        log.append(&make_producer_batch(0, 2, 1, 10, -1, -1, -1))
            .await
            .expect("plain");
        let a = log.append(&txn_batch(7, 0, 0, 3)).await.expect("txn 7");
        assert_eq!(a.base_offset, 2);
        log.append(&txn_batch(8, 0, 0, 2)).await.expect("txn 8");
        log.append(&make_producer_batch(0, 1, 1, 10, -1, -1, -1))
            .await
            .expect("plain");
        assert_eq!(log.high_watermark(), 8);
        assert_eq!(log.last_stable_offset(), 2);
        // read_committed stops at the LSO; read_uncommitted does not.
        let rc = log
            .read_as(0, 1 << 20, true, Isolation::Committed)
            .await
            .expect("read");
        assert_eq!(rc.record_count, 2);
        // A non-transactional batch of a producer with an open transaction is refused.
        assert!(matches!(
            log.append(&make_producer_batch(0, 1, 1, 10, 7, 0, 3)).await,
            Err(LogError::Sequence(
                producer_state::SequenceError::InvalidTxnState { .. }
            ))
        ));
        // 7 aborts at 8; 8 is still open from 5.
        log.append_marker(7, 0, Marker::Abort, 0, true)
            .await
            .expect("abort");
        assert_eq!(log.last_stable_offset(), 5);
        log.append_marker(8, 0, Marker::Commit, 0, true)
            .await
            .expect("commit");
        assert_eq!(log.last_stable_offset(), 10);
        assert_eq!(log.aborted_txns(0, 10), vec![(7, 2)]);
        assert_eq!(log.aborted_txns(9, 10), vec![]);
        // A marker of an older epoch than the producer's is refused.
        log.append(&txn_batch(7, 1, 0, 1)).await.expect("epoch 1");
        assert!(log
            .append_marker(7, 0, Marker::Commit, 0, true)
            .await
            .is_err());
        assert_eq!(log.last_stable_offset(), 10);
        drop(log);

        // Rebuilt from the log alone (no snapshot)…
        let (log, _) = Log::open(&path, LogConfig::default())
            .await
            .expect("reopen");
        assert_eq!(log.last_stable_offset(), 10);
        assert_eq!(log.aborted_txns(0, 11), vec![(7, 2)]);
        // …and from a snapshot.
        log.snapshot_producers().await.expect("snapshot");
        drop(log);
        let (log, _) = Log::open(&path, LogConfig::default())
            .await
            .expect("reopen");
        assert_eq!(log.last_stable_offset(), 10);
        assert_eq!(log.aborted_txns(0, 11), vec![(7, 2)]);
        // A truncation below the commit marker re-opens 8's transaction.
        log.truncate_to(9).await.expect("truncate");
        assert_eq!(log.last_stable_offset(), 5);
        assert_eq!(log.aborted_txns(0, 9), vec![(7, 2)]);
    });
}

/// A transactional batch of one keyed record.
fn keyed_txn(pid: i64, seq: i32, key: &[u8], value: &[u8]) -> Vec<u8> {
    transactional(super::records::build_producer_batch(
        &[(Some(key), Some(value))],
        1,
        pid,
        0,
        seq,
    ))
}

#[test]
fn compaction_keeps_markers_ignores_aborted_records_and_stops_at_the_lso() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().to_path_buf();
    run(move || async move {
        let cfg = LogConfig {
            segment_bytes: 200,
            cleanup: CleanupPolicy {
                delete: false,
                compact: true,
            },
            min_cleanable_dirty_ratio: 0.0,
            ..LogConfig::default()
        };
        let (log, _) = Log::open(&path, cfg).await.expect("open");
        // Committed "good" for k, then an aborted "bad" for k, then an open transaction.
        log.append(&keyed_txn(7, 0, b"k", b"good"))
            .await
            .expect("7");
        log.append_marker(7, 0, Marker::Commit, 0, true)
            .await
            .expect("commit");
        log.append(&keyed_txn(8, 0, b"k", b"bad")).await.expect("8");
        log.append_marker(8, 0, Marker::Abort, 0, true)
            .await
            .expect("abort");
        log.append(&keyed_txn(9, 0, b"j", b"open"))
            .await
            .expect("9");
        for i in 0..6 {
            log.append(&super::records::build_batch(
                &[(Some(b"x"), Some(&[i; 50]))],
                1,
            ))
            .await
            .expect("filler");
        }
        assert_eq!(log.last_stable_offset(), 4);
        log.clean(now_ms(), 1 << 20).await.expect("clean");
        let mut seen = Vec::new();
        let mut markers = 0;
        let mut at = log.log_start_offset();
        while at < log.high_watermark() {
            let r = log.read(at, 1 << 20, true).await.expect("read");
            for (pos, h) in batch::BatchScan::new(&r.records, true) {
                let b = &r.records[pos..pos + h.size];
                if h.attributes & batch::ATTR_CONTROL != 0 {
                    markers += 1;
                }
                for (_, k, v) in super::records::read_records(b) {
                    if k == Some(b"k".as_slice()) {
                        seen.push(v.map(<[u8]>::to_vec));
                    }
                }
                at = h.last_offset() + 1;
            }
        }
        assert_eq!(markers, 2, "both markers kept");
        assert!(
            seen.contains(&Some(b"good".to_vec())),
            "the committed value survives the aborted one: {seen:?}"
        );
        assert_eq!(log.aborted_txns(0, 100), vec![(8, 2)]);
    });
}
