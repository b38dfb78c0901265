//! What one client, or all of them, can hold of a broker: connections (in all, and per
//! client address) and bytes of requests being read or handled (per shard).
//!
//! Invariants:
//! - A request frame's bytes are reserved from its shard's [`RequestBudget`] before they
//!   are read and given back when its response is written; the budget never goes negative,
//!   so the bytes a shard holds for requests in flight are bounded by it. A frame waits for
//!   its whole size at once (as Kafka's `queued.max.request.bytes` pool does), so partly
//!   read frames can never starve each other into a deadlock.
//! - [`ConnLimits`] counts every open connection of one listener kind (Kafka port or HTTP
//!   port) across all shards; a [`ConnSlot`] gives its place back when dropped, so counts
//!   cannot leak. It is touched on accept and close only, never per request.
//! - Refusals are logged at most once per [`LOG_EVERY`], with how many were refused since.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::notify::Notify;

/// Shortest time between two log lines about refusals of one kind.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// Bytes of request frames a shard reads and handles at once.
pub struct RequestBudget {
    available: Cell<usize>,
    capacity: usize,
    released: Notify,
}

/// Bytes taken from a [`RequestBudget`]; given back on drop.
pub struct Reservation<'a> {
    budget: &'a RequestBudget,
    bytes: usize,
}

impl RequestBudget {
    pub fn new(capacity: usize) -> Self {
        RequestBudget {
            available: Cell::new(capacity),
            capacity,
            released: Notify::new(),
        }
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> usize {
        self.capacity - self.available.get()
    }

    /// Waits until `bytes` (at most the capacity) are free and takes them. Returns whether
    /// it had to wait.
    pub async fn reserve(&self, bytes: usize) -> (Reservation<'_>, bool) {
        let bytes = bytes.min(self.capacity);
        let mut waited = false;
        // Each wait ends at the next release; the loop ends once enough is free.
        loop {
            let released = self.released.notified();
            let free = self.available.get();
            if free >= bytes {
                self.available.set(free - bytes);
                return (
                    Reservation {
                        budget: self,
                        bytes,
                    },
                    waited,
                );
            }
            waited = true;
            released.await;
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let b = self.budget;
        b.available.set(b.available.get() + self.bytes);
        b.released.notify_all();
    }
}

/// Rate-limits one kind of log line: at most one per [`LOG_EVERY`], counting the rest.
#[derive(Default)]
pub struct Throttle {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Throttle {
    /// Some(number suppressed since the last line) if a line may be logged now.
    pub fn allow(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Connection limits of one listener kind, shared by all shards.
pub struct ConnLimits {
    /// `"kafka"` or `"http"`, for log lines.
    kind: &'static str,
    max_total: usize,
    max_per_ip: usize,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    refused_log: Throttle,
    refused: AtomicU64,
}

/// One open connection's place in its [`ConnLimits`].
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    pub fn new(kind: &'static str, max_total: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnLimits {
            kind,
            max_total,
            max_per_ip,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            refused_log: Throttle::default(),
            refused: AtomicU64::new(0),
        })
    }

    pub fn open(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A slot for a new connection from `ip`, or `None` (logged, rate-limited) if either
    /// limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ConnSlot> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let mine = per_ip.get(&ip).copied().unwrap_or(0);
        let total = self.total.load(Ordering::Relaxed);
        let why = if total >= self.max_total {
            Some(("max.connections", self.max_total))
        } else if mine >= self.max_per_ip {
            Some(("max.connections.per.ip", self.max_per_ip))
        } else {
            None
        };
        if let Some((setting, limit)) = why {
            drop(per_ip);
            self.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(suppressed) = self.refused_log.allow() {
                warn!(
                    listener = self.kind, %ip, setting, limit, refused_since_last_line = suppressed,
                    "connection refused: limit reached"
                );
            }
            return None;
        }
        per_ip.insert(ip, mine + 1);
        self.total.fetch_add(1, Ordering::Relaxed);
        Some(ConnSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let l = &self.limits;
        let mut per_ip = l.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        match per_ip.get_mut(&self.ip) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                per_ip.remove(&self.ip);
            }
        }
        l.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Descriptors kept for everything but log files and client sockets: stdio, io_uring rings
/// and their eventfds, listeners, the data directory lock, catalog and snapshot writes.
const RESERVED_FDS: u64 = 64;
/// Fewest log-file descriptors a shard can work with.
const MIN_FILES_PER_SHARD: u64 = 32;
/// Most log-file descriptors a shard keeps, however high the limit.
const MAX_FILES_PER_SHARD: u64 = 100_000;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, logs both, and returns how many log-file
/// descriptors each of `shards` shards may keep open: what is left after the reserve and the
/// client sockets (`max_connections`, at most half). Fails, naming the limit needed, if even
/// the minimum does not fit.
pub fn file_descriptor_budget(shards: usize, max_connections: usize) -> anyhow::Result<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        anyhow::bail!(
            "cannot read the open file limit: {}",
            std::io::Error::last_os_error()
        );
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = lim.rlim_max;
        }
    }
    let limit = lim.rlim_cur;
    let shards = shards.max(1) as u64;
    let needed = RESERVED_FDS + 2 * MIN_FILES_PER_SHARD * shards;
    if limit < needed {
        anyhow::bail!(
            "the open file limit (ulimit -n) is {limit} (hard {}); shardlog with {shards} shard(s) needs at least {needed}: \
             raise it (ulimit -n, or LimitNOFILE= in the systemd unit)",
            lim.rlim_max
        );
    }
    let left = limit - RESERVED_FDS;
    let sockets = (max_connections as u64).min(left / 2);
    let per_shard = ((left - sockets) / shards).clamp(MIN_FILES_PER_SHARD, MAX_FILES_PER_SHARD);
    tracing::info!(
        soft_before = before,
        soft = limit,
        hard = lim.rlim_max,
        log_files_per_shard = per_shard,
        "open file limit"
    );
    Ok(per_shard as usize)
}

/// Backs off an accept loop after a failure (EMFILE, ENFILE, ENOMEM...): 10 ms doubling to
/// one second while failures repeat, reset by a success; logs at most once per
/// [`LOG_EVERY`].
pub struct AcceptBackoff {
    delay: Cell<Duration>,
    log: Throttle,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        AcceptBackoff {
            delay: Cell::new(Duration::from_millis(10)),
            log: Throttle::default(),
        }
    }
}

impl AcceptBackoff {
    pub fn succeeded(&self) {
        self.delay.set(Duration::from_millis(10));
    }

    /// The delay to sleep after a failure `e` on listener `kind`.
    pub fn failed(&self, kind: &str, e: &dyn std::fmt::Display) -> Duration {
        let d = self.delay.get();
        self.delay.set((d * 2).min(Duration::from_secs(1)));
        if let Some(suppressed) = self.log.allow() {
            warn!(
                listener = kind,
                failures_since_last_line = suppressed,
                "accept failed: {e}; backing off"
            );
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_and_return() {
        let l = ConnLimits::new("kafka", 3, 2);
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let s1 = l.admit(a).expect("first");
        let s2 = l.admit(a).expect("second");
        assert!(l.admit(a).is_none(), "per-ip limit");
        let s3 = l.admit(b).expect("other ip");
        assert!(l.admit(b).is_none(), "total limit");
        assert_eq!((l.open(), l.refused()), (3, 2));
        drop(s1);
        let _s4 = l.admit(a).expect("freed");
        drop((s2, s3));
        assert_eq!(l.open(), 1);
    }

    #[test]
    fn budget_waits_for_release() {
        let budget = RequestBudget::new(100);
        futures::executor::block_on(async {
            let (r1, waited) = budget.reserve(70).await;
            assert!(!waited);
            assert_eq!(budget.in_use(), 70);
            let mut second = Box::pin(budget.reserve(50));
            assert!(futures::poll!(second.as_mut()).is_pending());
            drop(r1);
            let (r2, waited) = second.await;
            assert!(waited);
            assert_eq!(budget.in_use(), 50);
            // Larger than the whole budget: clamped, so it can always be had.
            drop(r2);
            let (_r3, _) = budget.reserve(1000).await;
            assert_eq!(budget.in_use(), 100);
        });
    }
}
