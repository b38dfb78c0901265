//! SIGKILL at random moments under acks=all with flush=always: after each restart every
//! acknowledged record is there, in order, with no gap in offsets.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shardlog::admin::client::Client;
use shardlog::log::batch::BatchScan;
use shardlog::log::records::read_records;

use common::wire::{create_topic, fetch, latest, try_produce};
use common::{record_batch, Broker};

/// Every offset in [0, end) holds the value equal to its offset.
fn check_dense(c: &mut Client, end: i64) {
    let mut at = 0i64;
    // Bounded: each fetch returns at least one batch until `end`.
    for _ in 0..100_000 {
        if at >= end {
            break;
        }
        let (err, records) = fetch(c, "crash", 0, at, 0);
        assert_eq!(err, 0);
        assert!(!records.is_empty(), "no data at {at} below the end {end}");
        for (pos, h) in BatchScan::new(&records, true) {
            for (off, _, v) in read_records(&records[pos..pos + h.size]) {
                if off < at {
                    continue;
                }
                assert_eq!(off, at, "gap or reorder");
                let value: i64 = String::from_utf8_lossy(v.unwrap_or_default())
                    .parse()
                    .expect("number");
                assert_eq!(value, off, "record at {off} holds {value}");
                at += 1;
            }
        }
    }
    assert_eq!(at, end);
}

#[test]
fn sigkill_loop_loses_no_acknowledged_record() {
    let mut b = Broker::start_with(1, &["--flush", "always"]);
    create_topic(&b, "crash", 1);
    let rounds = std::env::var("SHARDLOG_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for round in 0..rounds {
        let mut c = Client::connect(&b.bootstrap()).expect("connect");
        let start = latest(&mut c, "crash", 0);
        let acked = Arc::new(AtomicI64::new(start));
        let (addr, a2) = (b.bootstrap(), acked.clone());
        let writer = std::thread::spawn(move || {
            let Ok(mut c) = Client::connect(&addr) else {
                return;
            };
            let mut next = a2.load(Ordering::SeqCst);
            // Ends when the broker dies (the call fails) or after a bounded count.
            for _ in 0..100_000 {
                let values: Vec<String> = (next..next + 10).map(|v| v.to_string()).collect();
                let refs: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
                let batch = record_batch(&refs, 1);
                match try_produce(&mut c, "crash", 0, batch) {
                    Ok((err, base)) => {
                        assert_eq!((err, base), (0, next));
                        next += 10;
                        a2.store(next, Ordering::SeqCst);
                    }
                    Err(_) => return,
                }
            }
        });
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 300));
        b.kill();
        writer.join().expect("writer");
        b.start_again();
        let mut c = Client::connect(&b.bootstrap()).expect("connect");
        let end = latest(&mut c, "crash", 0);
        let acked = acked.load(Ordering::SeqCst);
        assert!(
            end >= acked,
            "round {round}: acknowledged up to {acked}, log ends at {end}"
        );
        assert!(
            end <= acked + 10,
            "at most the one unanswered batch beyond the acks"
        );
        check_dense(&mut c, end);
    }
}
