//! The free-space floor (`storage.min.free.bytes`): produce is refused with
//! KAFKA_STORAGE_ERROR before the data directory's file system is full, so catalog writes,
//! topic deletion, config changes, committed offsets and retention always find room, and
//! produce resumes by itself once space returns.
//!
//! A second line of defence for when the file system fills up anyway (another process, a
//! floor set to 0): a space reserve file, `space.reserve` in the data directory, is given up
//! when a catalog write fails for lack of space, so deleting a topic or changing retention
//! still works at 0 bytes free; it is recreated once space returns.
//!
//! Invariants: each shard keeps its own view (no shared state); between two measurements a
//! shard assumes every shard wrote as much as it did, so the estimate errs towards refusing
//! early, never late. Only shard 0 logs the transitions (the file system is the same for all).

use std::cell::Cell;
use std::path::Path;

use tracing::{info, warn};

/// One shard's view of the data directory's free space.
pub struct DiskSpace {
    floor: u64,
    shards: u64,
    /// Free bytes at the last measurement (`u64::MAX` until the first).
    free_at_check: Cell<u64>,
    /// Bytes this shard appended since then.
    appended: Cell<u64>,
    low: Cell<bool>,
    logs: bool,
}

/// Bytes kept in `space.reserve` for catalog writes on a full file system.
pub const RESERVE_BYTES: u64 = 8 << 20;
const RESERVE_FILE: &str = "space.reserve";

/// Creates the space reserve in `data_dir` if it is missing and `free` leaves room for it
/// above `floor`. Failures are harmless (tried again later).
pub fn ensure_reserve(data_dir: &Path, free: u64, floor: u64) {
    let path = data_dir.join(RESERVE_FILE);
    if path.exists() || free < floor.saturating_add(2 * RESERVE_BYTES) {
        return;
    }
    let made = std::fs::File::create(&path).and_then(|f| {
        use std::io::Write;
        // Written, not sparse: the blocks must really be taken.
        let chunk = vec![0u8; 1 << 20];
        let mut f = std::io::BufWriter::new(f);
        for _ in 0..RESERVE_BYTES / chunk.len() as u64 {
            f.write_all(&chunk)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        warn!(path = %path.display(), "cannot create the space reserve: {e}");
    }
}

/// Runs `write`; if it fails for lack of space, gives up the space reserve in `data_dir`
/// and runs it once more.
pub fn with_reserve<T>(
    data_dir: &Path,
    mut write: impl FnMut() -> std::io::Result<T>,
) -> std::io::Result<T> {
    match write() {
        Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
            let path = data_dir.join(RESERVE_FILE);
            if std::fs::remove_file(&path).is_err() {
                return Err(e);
            }
            warn!(
                path = %path.display(),
                "file system full: gave up the {RESERVE_BYTES}-byte space reserve for a catalog write (recreated once space returns)"
            );
            write()
        }
        r => r,
    }
}

/// Free bytes for unprivileged writers on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    space(dir).map(|(_, free)| free)
}

/// Size of the file system holding `dir`.
pub fn total_bytes(dir: &Path) -> std::io::Result<u64> {
    space(dir).map(|(total, _)| total)
}

/// (size, free bytes for unprivileged writers) of the file system holding `dir`: one
/// statvfs.
fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes into the zeroed struct we own; `c` is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = st.f_frsize as u64;
    Ok((st.f_blocks as u64 * unit, st.f_bavail as u64 * unit))
}

impl DiskSpace {
    pub fn new(floor: u64, shards: usize, logs: bool) -> Self {
        DiskSpace {
            floor,
            shards: shards.max(1) as u64,
            free_at_check: Cell::new(u64::MAX),
            appended: Cell::new(0),
            low: Cell::new(false),
            logs,
        }
    }

    /// Whether produce must be refused now.
    pub fn low(&self) -> bool {
        if self.floor == 0 {
            return false;
        }
        self.estimate() < self.floor
    }

    fn estimate(&self) -> u64 {
        self.free_at_check
            .get()
            .saturating_sub(self.appended.get().saturating_mul(self.shards))
    }

    /// Free bytes at the last measurement.
    pub fn free(&self) -> u64 {
        self.free_at_check.get()
    }

    /// Counts `bytes` appended by this shard.
    pub fn appended(&self, bytes: u64) {
        self.appended.set(self.appended.get() + bytes);
    }

    /// Measures the free space of `dir` again; logs a change of state.
    pub fn measure(&self, dir: &Path) {
        let free = match free_bytes(dir) {
            Ok(f) => f,
            Err(e) => {
                if self.logs {
                    warn!(dir = %dir.display(), "cannot measure free space: {e}");
                }
                return;
            }
        };
        self.free_at_check.set(free);
        self.appended.set(0);
        if self.logs {
            ensure_reserve(dir, free, self.floor);
        }
        let low = self.floor > 0 && free < self.floor;
        if low != self.low.replace(low) && self.logs {
            if low {
                warn!(
                    free_bytes = free,
                    floor = self.floor,
                    "free space below storage.min.free.bytes: refusing produce (KAFKA_STORAGE_ERROR) until space returns; deletes, retention and config changes still work"
                );
            } else {
                info!(
                    free_bytes = free,
                    floor = self.floor,
                    "free space back above storage.min.free.bytes: accepting produce"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_refuses_early_and_measure_resets() {
        let dir = tempfile::tempdir().expect("tmp");
        let free = free_bytes(dir.path()).expect("statvfs");
        assert!(free > 0);
        let s = DiskSpace::new(free / 2, 2, false);
        assert!(!s.low(), "unmeasured: not low");
        s.measure(dir.path());
        assert!(!s.low());
        // Two shards: a quarter of the free space appended here counts as half.
        s.appended(free / 4 + 4096);
        assert!(s.low(), "estimate crosses the floor between measurements");
        s.measure(dir.path());
        assert!(!s.low(), "measured again: not low");
        let off = DiskSpace::new(0, 1, false);
        off.appended(u64::MAX / 2);
        assert!(!off.low(), "floor 0 is off");
    }
}
