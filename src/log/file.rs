//! The one place the storage engine touches the I/O runtime: a segment-sized file whose reads
//! and writes are io_uring operations issued by the current shard's glommio executor, and a
//! bounded per-shard cache of open file descriptors behind those files.
//!
//! Invariants:
//! - A `LogFile` is used only by the shard that opened it (it is `!Send`). Writes go through
//!   the page cache (small ones by an inline `pwrite`, large ones by buffered io_uring), so
//!   fetches can be served from it.
//! - A `LogFile` is a name, not a descriptor: it holds an open descriptor only while it sits
//!   in its shard's cache, which keeps at most [`set_open_file_limit`] of them (least
//!   recently used closed first). An operation reopens its file when it was closed, so a
//!   broker with any number of partitions runs within any `ulimit -n` it is given; an
//!   operation in flight keeps its descriptor until it ends, and a new one is opened only
//!   when the count of open and opening descriptors is under the limit (else an idle one is
//!   closed first, or the operation waits for one to become idle).
//! - A file is created only by [`LogFile::open`]; a reopen never creates one, so a file
//!   deleted meanwhile (retention, a topic deletion) fails the operation instead of coming
//!   back empty.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};
use std::time::Instant;

use glommio::io::{BufferedFile, OpenOptions};

/// Writes up to this size go to the page cache with an inline `pwrite` on the shard thread
/// (measured: 13–35% less broker CPU and a 2–3× lower produce p99 than io_uring's worker
/// hand-off, docs/benchmarks.md); larger ones, which would hold the shard for longer, through
/// io_uring.
pub const INLINE_WRITE_MAX: usize = 256 << 10;
/// An inline write slower than this (the kernel had to reclaim memory or wait for a journal)
/// turns inline writes off for [`INLINE_WRITE_BACKOFF`] on that shard.
const INLINE_WRITE_SLOW: std::time::Duration = std::time::Duration::from_millis(2);
const INLINE_WRITE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

fn inline_write_allowed(len: usize) -> bool {
    len <= INLINE_WRITE_MAX
        && INLINE_OFF_UNTIL.with(|c| match c.get() {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                c.set(None);
                true
            }
            None => true,
        })
}

/// (writes, bytes) written inline by this shard since the last call (io_uring's own counts
/// miss them).
pub fn take_inline_writes() -> (u64, u64) {
    INLINE_WRITES.with(|c| c.replace((0, 0)))
}

/// Inline writes that were slow (each turned inline writes off for a while) on this shard.
pub fn slow_inline_writes() -> u64 {
    INLINE_SLOW.with(|c| c.get())
}

/// Open descriptors a shard's cache keeps unless told otherwise.
const DEFAULT_OPEN_FILES: usize = 4096;

thread_local! {
    /// fsyncs issued on this thread (shard) and the microseconds they took in total.
    static FSYNCS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    /// Inline writes are off until then (one was slow).
    static INLINE_OFF_UNTIL: Cell<Option<Instant>> = const { Cell::new(None) };
    static INLINE_SLOW: Cell<u64> = const { Cell::new(0) };
    /// (inline writes, bytes) since the last [`take_inline_writes`].
    static INLINE_WRITES: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    static CACHE: RefCell<FdCache> = const { RefCell::new(FdCache {
        open: BTreeMap::new(),
        opening: 0,
        closing: 0,
        busy: 0,
        pinned: 0,
        waiters: VecDeque::new(),
        tick: 0,
        capacity: DEFAULT_OPEN_FILES,
        opens: 0,
    }) };
}

/// (fsyncs, total microseconds) issued by the calling shard so far.
pub fn fsync_stats() -> (u64, u64) {
    FSYNCS.with(|c| c.get())
}

/// Sets how many descriptors the calling shard keeps open for log files (at least 8).
pub fn set_open_file_limit(n: usize) {
    CACHE.with(|c| c.borrow_mut().capacity = n.max(8));
}

/// (descriptors open now, opens so far) in the calling shard's cache.
pub fn open_file_stats() -> (usize, u64) {
    CACHE.with(|c| {
        let c = c.borrow();
        (c.open.len() + c.closing, c.opens)
    })
}

/// The calling shard's open log-file descriptors. Every descriptor is in `open` (idle or
/// busy), being opened (`opening`) or being closed (`closing`); together at most `capacity`.
struct FdCache {
    /// Open descriptors by last use; an entry's key is its slot's `used`.
    open: BTreeMap<u64, Weak<Slot>>,
    opening: usize,
    closing: usize,
    /// Open descriptors with an operation in flight (never closed by the cache).
    busy: usize,
    /// [`Pinned`] holds alive (each also counted in `busy` while it holds).
    pinned: usize,
    /// Operations waiting for a descriptor, first come first served.
    waiters: VecDeque<Waker>,
    tick: u64,
    capacity: usize,
    opens: u64,
}

impl FdCache {
    fn wake_one(&mut self) {
        if let Some(w) = self.waiters.pop_front() {
            w.wake();
        }
    }

    fn touch(&mut self, slot: &Rc<Slot>) {
        self.tick += 1;
        if let Some(w) = self.open.remove(&slot.used.get()) {
            self.open.insert(self.tick, w);
        }
        slot.used.set(self.tick);
    }
}

struct Slot {
    path: RefCell<PathBuf>,
    file: RefCell<Option<Rc<BufferedFile>>>,
    /// Cache key while `file` is open.
    used: Cell<u64>,
    /// Operations in flight on `file`.
    holders: Cell<usize>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.file.get_mut().is_some() {
            let key = self.used.get();
            // Not while the cache itself is borrowed (an eviction upgrading then dropping
            // the last handle): the eviction then removes the dead entry itself.
            let _ = CACHE.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    c.open.remove(&key);
                    c.wake_one();
                }
            });
        }
    }
}

/// An operation's hold on an open descriptor: while one exists the cache never closes it.
struct Held {
    slot: Rc<Slot>,
    file: Rc<BufferedFile>,
}

impl Held {
    fn new(slot: &Rc<Slot>, file: Rc<BufferedFile>, c: &mut FdCache) -> Held {
        let n = slot.holders.get();
        if n == 0 {
            c.busy += 1;
        }
        slot.holders.set(n + 1);
        Held {
            slot: slot.clone(),
            file,
        }
    }
}

impl Held {
    /// Up to `len` bytes at `pos` (fewer at the end of the file), copied out of io_uring's
    /// buffer.
    async fn read_vec(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let r = self.file.read_at(pos, len).await.map_err(io_err)?;
        Ok(r.to_vec())
    }
}

impl std::ops::Deref for Held {
    type Target = BufferedFile;
    fn deref(&self) -> &BufferedFile {
        &self.file
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let n = self.slot.holders.get().saturating_sub(1);
        self.slot.holders.set(n);
        if n == 0 {
            let _ = CACHE.try_with(|c| {
                if let Ok(mut c) = c.try_borrow_mut() {
                    c.busy = c.busy.saturating_sub(1);
                    c.wake_one();
                }
            });
        }
    }
}

/// An open file of a log segment or index.
#[derive(Clone)]
pub struct LogFile {
    slot: Rc<Slot>,
}

fn io_err(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(e)
}

async fn open_file(path: &Path, create: bool) -> io::Result<BufferedFile> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .buffered_open(path)
        .await
        .map_err(io_err)
}

/// Waits until one more descriptor fits (closing idle ones, least recently used first, or
/// waiting in line for an operation in flight to end) and counts it as being opened.
async fn reserve_descriptor() {
    let to_close = std::future::poll_fn(|cx| {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.busy + c.opening + c.closing >= c.capacity {
                c.waiters.push_back(cx.waker().clone());
                return Poll::Pending;
            }
            // Room is made from idle descriptors: there are some, since not all are busy.
            let mut to_close = Vec::new();
            while c.open.len() + c.opening + c.closing >= c.capacity {
                let victim = c.open.iter().find_map(|(k, w)| match w.upgrade() {
                    None => Some((*k, None)),
                    Some(slot) if slot.holders.get() == 0 => Some((*k, Some(slot))),
                    Some(_) => None,
                });
                let Some((k, slot)) = victim else { break };
                c.open.remove(&k);
                if let Some(f) = slot.and_then(|s| s.file.borrow_mut().take()) {
                    c.closing += 1;
                    to_close.push(f);
                }
            }
            c.opening += 1;
            Poll::Ready(to_close)
        })
    })
    .await;
    for f in to_close {
        close_counted(f).await;
    }
}

/// Closes a descriptor the cache took out of its slot (counted in `closing`); one still held
/// by an operation closes when that operation ends.
async fn close_counted(f: Rc<BufferedFile>) {
    if let Ok(f) = Rc::try_unwrap(f) {
        let _ = f.close().await;
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.closing = c.closing.saturating_sub(1);
        c.wake_one();
    });
}

impl LogFile {
    /// Opens `path` for reading and writing, creating it when missing.
    pub async fn open(path: &Path) -> io::Result<LogFile> {
        let f = LogFile {
            slot: Rc::new(Slot {
                path: RefCell::new(path.to_path_buf()),
                file: RefCell::new(None),
                used: Cell::new(0),
                holders: Cell::new(0),
            }),
        };
        drop(f.reopen(true).await?);
        Ok(f)
    }

    /// The same file (one `LogFile` and its clones).
    pub fn same(&self, other: &LogFile) -> bool {
        Rc::ptr_eq(&self.slot, &other.slot)
    }

    pub fn path(&self) -> PathBuf {
        self.slot.path.borrow().clone()
    }

    /// The file was renamed to `path` (the cleaner's swap): reopens use the new name.
    pub fn renamed(&self, path: &Path) {
        *self.slot.path.borrow_mut() = path.to_path_buf();
    }

    /// Opens the file within the cache's limit, puts it in this slot and holds it.
    async fn reopen(&self, create: bool) -> io::Result<Held> {
        reserve_descriptor().await;
        let path = self.path();
        let opened = open_file(&path, create).await;
        let (held, extra) = CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.opening = c.opening.saturating_sub(1);
            let file = match opened {
                Ok(f) => Rc::new(f),
                Err(e) => {
                    c.wake_one();
                    return (Err(e), None);
                }
            };
            c.opens += 1;
            let old = self.slot.file.borrow_mut().replace(file.clone());
            if old.is_some() {
                // Two operations reopened at once: the newer descriptor replaces the other.
                c.open.remove(&self.slot.used.get());
                c.closing += 1;
            }
            c.tick += 1;
            let key = c.tick;
            self.slot.used.set(key);
            c.open.insert(key, Rc::downgrade(&self.slot));
            (Ok(Held::new(&self.slot, file, &mut c)), old)
        });
        if let Some(old) = extra {
            close_counted(old).await;
        }
        held
    }

    /// The open descriptor, held for one operation; reopens the file if the cache closed it.
    async fn handle(&self) -> io::Result<Held> {
        let open = self.slot.file.borrow().clone();
        if let Some(f) = open {
            return Ok(CACHE.with(|c| {
                let mut c = c.borrow_mut();
                c.touch(&self.slot);
                Held::new(&self.slot, f, &mut c)
            }));
        }
        self.reopen(false).await
    }

    /// Writes all of `buf` at `pos`: inline with `pwrite(2)` when it is small and inline
    /// writes are fast (see [`INLINE_WRITE_MAX`]), else in one io_uring write. A short write
    /// (the file system ran out of space part way) is reported as an error: the caller treats
    /// the append as failed and cuts the file back.
    pub async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        let len = buf.len();
        if inline_write_allowed(len) {
            return self.write_inline(&buf, pos).await;
        }
        let n = self
            .handle()
            .await?
            .write_at(buf, pos)
            .await
            .map_err(io_err)?;
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write at {pos}: {n} of {len} bytes"),
            ));
        }
        Ok(())
    }

    /// `pwrite(2)` on the shard's thread: a copy into the page cache, without the hand-off to
    /// and from an io_uring worker thread (buffered writes to ext4 cannot be issued without
    /// blocking, so io_uring punts each one to a worker). A write that took longer than
    /// [`INLINE_WRITE_SLOW`] (page reclaim, a journal wait) turns inline writes off for
    /// [`INLINE_WRITE_BACKOFF`].
    async fn write_inline(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        let f = self.handle().await?;
        let started = Instant::now();
        let mut done = 0usize;
        // Each iteration writes some bytes or returns; a short count means no space left.
        while done < buf.len() {
            let rest = &buf[done..];
            // SAFETY: `rest` is valid for reading `rest.len()` bytes; the descriptor is held.
            let n = unsafe {
                libc::pwrite(
                    f.as_raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    (pos + done as u64) as libc::off_t,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("short write at {pos}: {done} of {} bytes", buf.len()),
                ));
            }
            done += n as usize;
        }
        INLINE_WRITES.with(|c| {
            let (n, b) = c.get();
            c.set((n + 1, b + buf.len() as u64));
        });
        if started.elapsed() > INLINE_WRITE_SLOW {
            INLINE_OFF_UNTIL.with(|c| c.set(Some(Instant::now() + INLINE_WRITE_BACKOFF)));
            INLINE_SLOW.with(|c| c.set(c.get() + 1));
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `pos` (fewer at end of file).
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.handle().await?.read_vec(pos, len).await
    }

    pub async fn size(&self) -> io::Result<u64> {
        self.handle().await?.file_size().await.map_err(io_err)
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        self.handle().await?.truncate(len).await.map_err(io_err)
    }

    /// fdatasync through io_uring. On a reopened descriptor it still flushes every dirty page
    /// of the file (Linux syncs the inode, whichever descriptor wrote).
    pub async fn sync(&self) -> io::Result<()> {
        let f = self.handle().await?;
        let started = Instant::now();
        let r = f.fdatasync().await.map_err(io_err);
        let us = started.elapsed().as_micros() as u64;
        FSYNCS.with(|c| {
            let (n, t) = c.get();
            c.set((n + 1, t + us));
        });
        r
    }
}

/// A log file's descriptor held open from a fetch until its response is written, so the
/// bytes sent are those of the file as it was read (a cleaner swap or a deletion meanwhile
/// only unlinks the name). At most a quarter of the shard's descriptor limit is pinned at a
/// time ([`LogFile::pin`] says no beyond it), so a client that stops reading cannot take the
/// descriptors the log writers need.
pub struct Pinned {
    held: Held,
}

impl Drop for Pinned {
    fn drop(&mut self) {
        let _ = CACHE.try_with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.pinned = c.pinned.saturating_sub(1);
            }
        });
    }
}

impl LogFile {
    /// Holds this file's descriptor open for a later send; `None` when the shard already
    /// pins its share of descriptors, or the file cannot be reopened (the caller copies).
    pub async fn pin(&self) -> Option<Pinned> {
        let full = CACHE.with(|c| {
            let c = c.borrow();
            c.pinned >= c.capacity / 4
        });
        if full {
            return None;
        }
        let held = self.handle().await.ok()?;
        CACHE.with(|c| c.borrow_mut().pinned += 1);
        Some(Pinned { held })
    }
}

impl Pinned {
    /// How much of `[pos, pos + len)` is in the page cache: `Some(true)` when all of it,
    /// `None` when the kernel cannot tell (no `cachestat`, before Linux 6.5).
    pub fn cached(&self, pos: u64, len: u64) -> Option<bool> {
        #[repr(C)]
        struct Range {
            off: u64,
            len: u64,
        }
        #[repr(C)]
        #[derive(Default)]
        struct Stat {
            nr_cache: u64,
            nr_dirty: u64,
            nr_writeback: u64,
            nr_evicted: u64,
            nr_recently_evicted: u64,
        }
        /// `cachestat(2)`: one number on every architecture (the unified syscall table).
        const SYS_CACHESTAT: libc::c_long = 451;
        if len == 0 {
            return Some(true);
        }
        let page = 4096u64;
        let first = pos / page;
        let last = (pos + len - 1) / page;
        let range = Range {
            off: first * page,
            len: (last - first + 1) * page,
        };
        let mut stat = Stat::default();
        // SAFETY: both pointers are to live, properly laid out structs for the call's length.
        let r = unsafe {
            libc::syscall(
                SYS_CACHESTAT,
                self.held.as_raw_fd(),
                &range as *const Range,
                &mut stat as *mut Stat,
                0u32,
            )
        };
        if r != 0 {
            return None;
        }
        Some(stat.nr_cache > last - first)
    }

    /// Moves up to `len` bytes at `pos` of the file into the pipe `pipe_w` without copying
    /// them (`splice(2)`); 0 at the end of the file. Never waits for the pipe (it must have
    /// room), and reads only pages already cached when the caller checked [`Pinned::cached`].
    pub fn splice_into(&self, pipe_w: RawFd, pos: u64, len: usize) -> io::Result<usize> {
        crate::runtime::splice(self.held.as_raw_fd(), Some(pos), pipe_w, len)
    }

    /// Reads `len` bytes at `pos` (fewer at the end of the file), copying.
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        self.held.read_vec(pos, len).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_keeps_at_most_its_limit_and_reopens() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().to_path_buf();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                set_open_file_limit(8);
                let mut files = Vec::new();
                for i in 0..40u8 {
                    let f = LogFile::open(&path.join(format!("f{i}")))
                        .await
                        .expect("open");
                    f.write_all_at(vec![i; 10], 0).await.expect("write");
                    files.push(f);
                    assert!(open_file_stats().0 <= 8);
                }
                for (i, f) in files.iter().enumerate() {
                    assert_eq!(f.read_at(0, 10).await.expect("read"), vec![i as u8; 10]);
                    f.write_all_at(vec![1], 10)
                        .await
                        .expect("append after reopen");
                    assert_eq!(f.size().await.expect("size"), 11);
                }
                assert!(open_file_stats().0 <= 8);
                let fds = std::fs::read_dir("/proc/self/fd").expect("fds").count();
                // A deleted file is not recreated by a reopen.
                std::fs::remove_file(path.join("f0")).expect("rm");
                for f in &files[1..10] {
                    f.read_at(0, 1).await.expect("evict f0");
                }
                assert!(files[0].read_at(0, 1).await.is_err());
                assert!(!path.join("f0").exists());
                // Renamed: reopens follow.
                std::fs::rename(path.join("f1"), path.join("g1")).expect("mv");
                files[1].renamed(&path.join("g1"));
                for f in &files[2..12] {
                    f.read_at(0, 1).await.expect("evict f1");
                }
                assert_eq!(
                    files[1].read_at(0, 1).await.expect("reopen renamed"),
                    vec![1]
                );
                drop(files);
                assert_eq!(open_file_stats().0, 0, "dropped files leave the cache");
                assert!(fds < 64, "descriptors stay bounded: {fds}");
            })
            .expect("executor")
            .join()
            .expect("join");
    }
}
