//! A full disk: produce fails with KAFKA_STORAGE_ERROR, reads keep working, nothing
//! half-written is served, and appends resume once space returns. With the free-space floor
//! (`storage.min.free.bytes`), produce is refused before the disk is full, so the operator can
//! still create and delete topics, and produce resumes by itself.

mod common;

use std::process::Command;

use shardlog::admin::client::Client;

use common::wire::{create_topic, fetch, latest, produce};
use common::{http_get, metric_sample, record_batch, Broker};

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A small tmpfs at a fresh mount point, unmounted on drop.
fn small_tmpfs(base: &std::path::Path, size: &str) -> Tmpfs {
    let mnt = base.join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "this test needs to mount a small tmpfs (run as root)");
    Tmpfs(mnt)
}

#[test]
fn disk_full_fails_appends_cleanly_and_recovers() {
    let base = tempfile::tempdir().expect("tmp");
    let guard = small_tmpfs(base.path(), "6m");
    let mnt = guard.0.clone();
    // Ballast to free later, so space "returns".
    std::fs::write(mnt.join("ballast"), vec![7u8; 3 << 20]).expect("ballast");
    let data = mnt.join("data");
    // The floor off: the file system really fills up.
    let mut b = Broker::start_configured(
        1,
        "\"storage.min.free.bytes\" = 0\n",
        &[
            "--data-dir",
            data.to_str().expect("utf8"),
            "--flush",
            "never",
        ],
    );
    create_topic(&b, "full", 1);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let value = vec![b'v'; 60_000];
    let mut acked = 0i64;
    let mut refused = None;
    for _ in 0..200 {
        let (err, base_offset) = produce(&mut c, "full", 0, record_batch(&[&value, &value], 1));
        if err == 0 {
            assert_eq!(base_offset, acked, "offsets stay dense");
            acked += 2;
        } else {
            refused = Some(err);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(56),
        "KAFKA_STORAGE_ERROR once the disk is full"
    );
    assert!(acked > 0);
    // Reads still work and serve exactly what was acknowledged.
    assert_eq!(latest(&mut c, "full", 0), acked);
    let (err, records) = fetch(&mut c, "full", 0, 0, 0);
    assert_eq!(err, 0);
    assert!(!records.is_empty());
    // Space returns: appends resume at the next offset, with no gap.
    std::fs::remove_file(mnt.join("ballast")).expect("free space");
    let (err, base_offset) = produce(&mut c, "full", 0, record_batch(&[b"after"], 1));
    assert_eq!((err, base_offset), (0, acked));
    assert!(b.log_text().contains("failed"), "{}", b.log_text());
    b.kill();
}

#[test]
fn the_free_space_floor_refuses_produce_early_and_keeps_the_operator_in() {
    let base = tempfile::tempdir().expect("tmp");
    let guard = small_tmpfs(base.path(), "8m");
    let mnt = guard.0.clone();
    std::fs::write(mnt.join("ballast"), vec![7u8; 3 << 20]).expect("ballast");
    let data = mnt.join("data");
    let b = Broker::start_configured(
        1,
        "\"storage.min.free.bytes\" = 2097152\n",
        &[
            "--data-dir",
            data.to_str().expect("utf8"),
            "--flush",
            "never",
        ],
    );
    create_topic(&b, "fill", 1);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    let value = vec![b'v'; 60_000];
    let mut refused = None;
    for _ in 0..200 {
        let (err, _) = produce(&mut c, "fill", 0, record_batch(&[&value, &value], 1));
        if err != 0 {
            refused = Some(err);
            break;
        }
    }
    assert_eq!(refused, Some(56), "KAFKA_STORAGE_ERROR below the floor");
    let free = shardlog::broker::disk_space::free_bytes(&mnt).expect("statvfs");
    assert!(
        free >= 1 << 20,
        "refused before the disk filled: {free} bytes free"
    );
    let metrics_addr = b.metrics_addr().expect("metrics");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let m = http_get(&metrics_addr, "/metrics").1;
    assert_eq!(
        metric_sample(&m, "shardlog_storage_low_space"),
        Some(1.0),
        "{m}"
    );
    assert!(b.log_text().contains("below storage.min.free.bytes"));

    // The operator is not locked out: a topic can be created and one deleted.
    create_topic(&b, "other", 1);
    common::cli(&b, &["topic", "delete", "fill"]);
    // Space returned: produce resumes by itself within a measurement or two.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut last = -1;
    while std::time::Instant::now() < deadline {
        last = produce(&mut c, "other", 0, record_batch(&[b"again"], 1)).0;
        if last == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(last, 0, "produce resumed after the delete freed space");
    let m = http_get(&metrics_addr, "/metrics").1;
    assert_eq!(
        metric_sample(&m, "shardlog_storage_low_space"),
        Some(0.0),
        "{m}"
    );
    assert!(b.log_text().contains("back above storage.min.free.bytes"));
}

#[test]
fn at_zero_bytes_free_a_topic_can_still_be_deleted() {
    let base = tempfile::tempdir().expect("tmp");
    let guard = small_tmpfs(base.path(), "32m");
    let mnt = guard.0.clone();
    let data = mnt.join("data");
    // The floor off: something else fills the file system.
    let b = Broker::start_configured(
        1,
        "\"storage.min.free.bytes\" = 0\n",
        &["--data-dir", data.to_str().expect("utf8")],
    );
    assert!(data.join("space.reserve").exists(), "reserve made at start");
    create_topic(&b, "doomed", 2);
    let mut c = Client::connect(&b.bootstrap()).expect("connect");
    assert_eq!(produce(&mut c, "doomed", 0, record_batch(&[b"x"], 1)).0, 0);
    // Fill the file system to the last byte.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(mnt.join("ballast")).expect("ballast");
        let chunk = vec![1u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        while f.write_all(&[1u8]).is_ok() {}
    }
    assert_eq!(
        shardlog::broker::disk_space::free_bytes(&mnt).expect("statvfs"),
        0
    );
    common::cli(&b, &["topic", "delete", "doomed"]);
    let log = b.log_text();
    assert!(
        log.contains("gave up the"),
        "the reserve paid for the catalog write: {log}"
    );
    assert!(!data.join("topics").join("doomed-0").exists());
}
