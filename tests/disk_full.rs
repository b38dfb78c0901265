//! A full disk: produce fails with KAFKA_STORAGE_ERROR, reads keep working, nothing
//! half-written is served, and appends resume once space returns.

mod common;

use std::process::Command;

use shardlog::admin::client::Client;

use common::wire::{create_topic, fetch, latest, produce};
use common::{record_batch, Broker};

struct Tmpfs(std::path::PathBuf);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn disk_full_fails_appends_cleanly_and_recovers() {
    let base = tempfile::tempdir().expect("tmp");
    let mnt = base.path().join("small");
    std::fs::create_dir_all(&mnt).expect("mkdir");
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "this test needs to mount a small tmpfs (run as root)");
    let _guard = Tmpfs(mnt.clone());
    // Ballast to free later, so space "returns".
    std::fs::write(mnt.join("ballast"), vec![7u8; 3 << 20]).expect("ballast");
    let data = mnt.join("data");
    let mut b = Broker::start_with(
        1,
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
