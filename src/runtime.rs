//! The thin waist between shardlog and its async runtime (glommio): spawning shard-local
//! tasks and timers. Code outside `broker/` and `log/file.rs` reaches the runtime only here,
//! so swapping the runtime touches a handful of modules.

use std::future::Future;
use std::time::Duration;

/// Runs `fut` on the current shard, detached; it must not panic.
pub fn spawn_local<F>(fut: F)
where
    F: Future<Output = ()> + 'static,
{
    glommio::spawn_local(fut).detach();
}

/// Runs `f` on the runtime's blocking thread pool, detached: for slow syscalls (unlinking
/// large files) that would stall the shard.
pub fn spawn_blocking_detached<F>(f: F)
where
    F: FnOnce() + Send + 'static,
{
    let done = glommio::executor().spawn_blocking(f);
    spawn_local(done);
}

/// Runs blocking `f` on a thread of its own and waits for its result (the shard's executor
/// stays free meanwhile). Not glommio's blocking pool: `f` may wait on work the shards do
/// there (the web console's calls wait on a broker that may fsync through that pool).
/// `None` if the thread could not be started or `f` panicked.
pub async fn on_thread<F, T>(f: F) -> Option<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("shardlog-ui".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.await.ok()
}

/// Sleeps on the current shard's timer wheel.
pub async fn sleep(d: Duration) {
    glommio::timer::sleep(d).await;
}

/// Runs `fut` with a deadline; `None` when the deadline passed first.
pub async fn timeout<F, T>(d: Duration, fut: F) -> Option<T>
where
    F: Future<Output = T>,
{
    use futures::future::{select, Either};
    let fut = std::pin::pin!(fut);
    let timer = std::pin::pin!(sleep(d));
    match select(fut, timer).await {
        Either::Left((v, _)) => Some(v),
        Either::Right(_) => None,
    }
}

/// File I/O the current shard's rings performed since the last call:
/// ((reads, bytes read), (writes, bytes written)).
pub fn take_io_counts() -> ((u64, u64), (u64, u64)) {
    let stats = glommio::executor().io_stats().all_rings();
    let r = stats.file_buffered_reads();
    let w = stats.file_buffered_writes();
    let dr = stats.file_reads();
    let dw = stats.file_writes();
    ((r.0 + dr.0, r.1 + dr.1), (w.0 + dw.0, w.1 + dw.1))
}

/// Lets other tasks of the shard run if this one has used up its time slice.
pub async fn yield_now() {
    glommio::yield_if_needed().await;
}

/// `splice(2)` of up to `len` bytes from `from` (at `offset`, for a file; `None` for a pipe)
/// to `to`, never waiting on a pipe (`SPLICE_F_NONBLOCK`; a socket waits only if it is
/// blocking). The number of bytes moved; 0 at the end of a file.
pub fn splice(
    from: std::os::fd::RawFd,
    offset: Option<u64>,
    to: std::os::fd::RawFd,
    len: usize,
) -> std::io::Result<usize> {
    let mut off = offset.map(|o| o as libc::loff_t);
    let off_ptr = off
        .as_mut()
        .map_or(std::ptr::null_mut(), |o| o as *mut libc::loff_t);
    // SAFETY: plain descriptors and, if any, a live offset; the kernel checks the rest.
    let n = unsafe {
        libc::splice(
            from,
            off_ptr,
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// An outgoing TCP connection of the current shard (a follower's fetcher to its leader).
pub struct Conn {
    stream: glommio::net::TcpStream,
}

impl Conn {
    /// Connects to `addr` within `timeout`, with Nagle off.
    pub async fn connect(addr: std::net::SocketAddr, timeout: Duration) -> std::io::Result<Conn> {
        let stream = glommio::net::TcpStream::connect_timeout(addr, timeout).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream })
    }

    pub async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        use futures::AsyncWriteExt;
        self.stream.write_all(buf).await
    }

    pub async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        use futures::AsyncReadExt;
        self.stream.read_exact(buf).await
    }
}
