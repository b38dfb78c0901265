//! Transactions on one log: transactional batches, markers, the last stable offset, the
//! aborted-transactions index, and all of it rebuilt after a restart and a truncation.

use super::batch::test_support::make_producer_batch;
use super::batch::{self, ATTR_TRANSACTIONAL};
use super::tests::run;
use super::txn_index::Marker;
use super::*;

/// A transactional batch of `count` records of producer `pid`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, count: i32) -> Vec<u8> {
    let mut b = make_producer_batch(0, count, 1, 10, pid, epoch, seq);
    // attributes sit at bytes 21..23 of the header; the CRC covers them.
    let attrs = i16::from_be_bytes([b[21], b[22]]) | ATTR_TRANSACTIONAL;
    b[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch::seal(&mut b);
    b
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
