//! The one place the storage engine touches the I/O runtime: a segment-sized file whose reads
//! and writes are io_uring operations issued by the current shard's glommio executor.
//!
//! Invariant: a `LogFile` is used only by the shard that opened it (it is `!Send`). Writes go
//! through the page cache (buffered io_uring), so fetches can be served from it.

use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use std::cell::Cell;
use std::time::Instant;

use glommio::io::{BufferedFile, OpenOptions};

thread_local! {
    /// fsyncs issued on this thread (shard) and the microseconds they took in total.
    static FSYNCS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// (fsyncs, total microseconds) issued by the calling shard so far.
pub fn fsync_stats() -> (u64, u64) {
    FSYNCS.with(|c| c.get())
}

/// An open file of a log segment or index.
#[derive(Clone)]
pub struct LogFile {
    inner: Rc<BufferedFile>,
    path: Rc<PathBuf>,
}

fn io_err(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(e)
}

impl LogFile {
    /// Opens `path` for reading and writing, creating it when missing.
    pub async fn open(path: &Path) -> io::Result<LogFile> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .buffered_open(path)
            .await
            .map_err(io_err)?;
        Ok(LogFile {
            inner: Rc::new(f),
            path: Rc::new(path.to_path_buf()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes all of `buf` at `pos` in one io_uring write. A short write (the file system ran
    /// out of space part way) is reported as an error: the caller treats the append as failed
    /// and cuts the file back.
    pub async fn write_all_at(&self, buf: Vec<u8>, pos: u64) -> io::Result<()> {
        let len = buf.len();
        let n = self.inner.write_at(buf, pos).await.map_err(io_err)?;
        if n != len {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write at {pos}: {n} of {len} bytes"),
            ));
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `pos` (fewer at end of file).
    pub async fn read_at(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let r = self.inner.read_at(pos, len).await.map_err(io_err)?;
        Ok(r.to_vec())
    }

    pub async fn size(&self) -> io::Result<u64> {
        self.inner.file_size().await.map_err(io_err)
    }

    pub async fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len).await.map_err(io_err)
    }

    /// fdatasync through io_uring.
    pub async fn sync(&self) -> io::Result<()> {
        let started = Instant::now();
        let r = self.inner.fdatasync().await.map_err(io_err);
        let us = started.elapsed().as_micros() as u64;
        FSYNCS.with(|c| {
            let (n, t) = c.get();
            c.set((n + 1, t + us));
        });
        r
    }
}
