//! Sending fetch responses: their pieces in order, file ranges spliced from the page cache
//! to the socket through a pipe (`splice(2)` twice: file to pipe, pipe to socket) so record
//! bytes are never copied into or out of the broker's memory.
//!
//! Invariants:
//! - Bytes reach the socket in piece order: each piece is fully handed to the socket before
//!   the next one starts, whichever way it goes.
//! - Never blocks the shard: both splices are non-blocking. When the socket is full, a small
//!   chunk of what the pipe holds is read out and written by the runtime's waiting write,
//!   which resumes when the socket drains; then splicing goes on.
//! - Bounded: at most [`MAX_PIPES`] pipes per shard are in use (fewer if the shard's share
//!   of descriptors is small: [`set_pipe_limit`]; a range beyond that is read and copied), at
//!   most [`KEEP_PIPES`] are kept idle, and a pipe that may still hold bytes
//!   (a connection closed mid-send) is closed, never reused.
//! - A range the file no longer holds whole (it was truncated) fails the connection: the
//!   response's length was promised in its frame.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use futures::AsyncWriteExt;

use crate::log::send_range::{FileRange, Records};
use crate::protocol::fetch_response::{self, RecordSet};

/// A piece of a response on its way to the socket.
pub type Piece = fetch_response::Piece<Records>;

impl RecordSet for Records {
    fn len(&self) -> usize {
        Records::len(self)
    }
    fn in_memory(&self) -> Option<&[u8]> {
        match self {
            Records::Bytes(b) => Some(b),
            Records::File(_) => None,
        }
    }
}

/// Pipes one shard may have in use at once.
pub const MAX_PIPES: usize = 64;
/// Idle pipes one shard keeps for reuse.
const KEEP_PIPES: usize = 8;
/// Pipe capacity asked for (the kernel's `pipe-max-size` default); fewer rounds per range.
const PIPE_BYTES: libc::c_int = 1 << 20;
/// Bytes moved through memory when the socket is full (to wait for it to drain).
const WAIT_CHUNK: usize = 16 << 10;

thread_local! {
    static PIPES: RefCell<Pool> = const {
        RefCell::new(Pool { idle: Vec::new(), in_use: 0, limit: MAX_PIPES })
    };
    /// (bytes spliced, bytes of ranges copied instead) on this shard.
    static SENT: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// (bytes spliced to sockets, bytes of file ranges copied instead) by the calling shard.
pub fn send_stats() -> (u64, u64) {
    SENT.with(|s| s.get())
}

fn count(spliced: usize, copied: usize) {
    SENT.with(|s| {
        let (a, b) = s.get();
        s.set((a + spliced as u64, b + copied as u64));
    });
}

struct Pool {
    idle: Vec<Pipe>,
    in_use: usize,
    limit: usize,
}

/// Caps the calling shard's pipes in use at `n` (at most [`MAX_PIPES`], at least 1); returns
/// the cap (each pipe is two descriptors).
pub fn set_pipe_limit(n: usize) -> usize {
    let n = n.clamp(1, MAX_PIPES);
    PIPES.with(|p| p.borrow_mut().limit = n);
    n
}

struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` has room for the two descriptors pipe2 writes.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded; each descriptor is owned here only.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: fcntl on a descriptor we own; failure leaves the default size.
        let capacity = unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES);
            libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ)
        };
        Ok(Pipe {
            r,
            w,
            capacity: capacity.max(4096) as usize,
        })
    }
}

/// A pipe taken from the shard's pool; back to it on drop unless it may hold bytes.
struct Lease {
    pipe: Option<Pipe>,
    /// Bytes may be in the pipe.
    dirty: bool,
}

impl Lease {
    fn take() -> Option<Lease> {
        PIPES.with(|p| {
            let mut p = p.borrow_mut();
            if p.in_use >= p.limit {
                return None;
            }
            let pipe = match p.idle.pop() {
                Some(pipe) => pipe,
                None => Pipe::new().ok()?,
            };
            p.in_use += 1;
            Some(Lease {
                pipe: Some(pipe),
                dirty: false,
            })
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let pipe = self.pipe.take();
        let dirty = self.dirty;
        let _ = PIPES.try_with(|p| {
            if let Ok(mut p) = p.try_borrow_mut() {
                p.in_use = p.in_use.saturating_sub(1);
                if let Some(pipe) = pipe.filter(|_| !dirty) {
                    if p.idle.len() < KEEP_PIPES.min(p.limit) {
                        p.idle.push(pipe);
                    }
                }
            }
        });
    }
}

/// Writes `pieces` to the connection's socket `sock` (whose writing half is `wr`) in order.
/// `sock`: the socket to splice file ranges into; `None` (a TLS connection) reads them.
pub async fn write_pieces<W: futures::AsyncWrite + Unpin>(
    wr: &mut W,
    sock: Option<RawFd>,
    pieces: Vec<Piece>,
) -> io::Result<()> {
    for piece in pieces {
        match piece {
            Piece::Bytes(b) | Piece::Records(Records::Bytes(b)) => wr.write_all(&b).await?,
            Piece::Records(Records::File(range)) => send_range(wr, sock, range).await?,
        }
    }
    // A TLS stream keeps the last record's bytes until flushed: without this a response's
    // tail waits for the next response (a fetch long-poll later).
    wr.flush().await
}

async fn send_range<W: futures::AsyncWrite + Unpin>(
    wr: &mut W,
    sock: Option<RawFd>,
    range: FileRange,
) -> io::Result<()> {
    let lease = match sock {
        Some(sock) => Lease::take().map(|l| (l, sock)),
        None => None,
    };
    let Some((mut lease, sock)) = lease else {
        let buf = range.file.read_at(range.pos, range.len).await?;
        if buf.len() != range.len {
            return Err(shorter(&range, buf.len()));
        }
        count(0, buf.len());
        return wr.write_all(&buf).await;
    };
    let Some(pipe) = lease.pipe.as_ref() else {
        return Err(io::Error::other("pipe lease without a pipe"));
    };
    let (pipe_r, pipe_w, capacity) = (pipe.r.as_raw_fd(), pipe.w.as_raw_fd(), pipe.capacity);
    let mut chunk = Vec::new();
    let mut sent = 0usize;
    // Each round fills the empty pipe from the file and empties it into the socket.
    while sent < range.len {
        let want = (range.len - sent).min(capacity);
        let n = range
            .file
            .splice_into(pipe_w, range.pos + sent as u64, want)?;
        if n == 0 {
            return Err(shorter(&range, sent));
        }
        lease.dirty = true;
        let mut left = n;
        // Each iteration moves some of the pipe's bytes on, or waits for the socket once.
        while left > 0 {
            match crate::runtime::splice(pipe_r, None, sock, left) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(k) => {
                    left -= k;
                    count(k, 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    chunk.resize(WAIT_CHUNK.min(left), 0);
                    let m = read_pipe(pipe_r, &mut chunk)?;
                    if m == 0 {
                        return Err(io::Error::other("pipe emptied under a send"));
                    }
                    wr.write_all(&chunk[..m]).await?;
                    left -= m;
                    count(0, m);
                }
                Err(e) => return Err(e),
            }
        }
        lease.dirty = false;
        sent += n;
    }
    Ok(())
}

fn shorter(range: &FileRange, have: usize) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "segment file shorter than the fetch range sent from it ({have} of {} bytes at {})",
            range.len, range.pos
        ),
    )
}

fn read_pipe(pipe_r: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` bytes of writing.
    let n = unsafe { libc::read(pipe_r, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}
