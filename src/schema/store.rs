//! The registry's storage: the compacted, single-partition `_schemas` topic, read and
//! written through the broker's own Kafka listener with the calling thread's client
//! identity (`admin::client::with_security`).
//!
//! Invariants: every answer is given from a state caught up with the log's end at the time
//! of the call; one node's writers take turns (one lock), and a write is answered only once
//! it has been read back. Writers on different nodes can race for the same version number:
//! the later record wins (as compaction would keep it) and the loser, reading back, finds
//! it lost and plans again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crate::admin::batch::OutRecord;
use crate::admin::consume::read_range;
use crate::admin::produce::produce_one;
use crate::admin::topic::create_topic;

use super::parsed::Parsed;
use super::state::{Plan, Record, State};
use super::validate::Snapshot;
use super::RegistryError;

/// The topic the registry keeps its records in.
pub const TOPIC: &str = "_schemas";

/// Records read per fetch round while catching up.
const READ_BATCH: usize = 1000;

/// Rounds one catch-up may take (a bound: 100 million records).
const MAX_ROUNDS: usize = 100_000;

/// Times a registration is planned again after losing a race with another node.
const MAX_ATTEMPTS: usize = 5;

#[derive(Default)]
struct Inner {
    state: State,
    /// The next `_schemas` offset to apply.
    next: i64,
    /// `_schemas` is known to exist.
    ready: bool,
}

/// The least time between two reads of `_schemas` by the loader.
const MIN_LOAD_GAP: Duration = Duration::from_millis(100);

/// How often the loader reads `_schemas` without being asked (schemas registered through
/// other nodes arrive at least this often).
const LOAD_INTERVAL: Duration = Duration::from_secs(30);

/// The registry of one broker process.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
    /// What record validation reads: replaced whole after a change, never edited.
    published: RwLock<Arc<Snapshot>>,
    /// Bumped with each new snapshot: a shard re-reads `published` only when it moved.
    generation: AtomicU64,
    /// A shard met a schema id it does not know: the loader reads `_schemas` now.
    wanted: Mutex<bool>,
    wake: Condvar,
}

impl Registry {
    /// The snapshot validation uses, and its generation.
    pub fn snapshot(&self) -> (u64, Arc<Snapshot>) {
        let g = self.generation.load(Ordering::Acquire);
        let s = match self.published.read() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        (g, s)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Asks the loader to read `_schemas` now (a record named an id not in the snapshot).
    pub fn nudge(&self) {
        let mut w = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        *w = true;
        self.wake.notify_one();
    }

    fn publish(&self, state: &State) {
        let snap = Arc::new(state.snapshot());
        match self.published.write() {
            Ok(mut p) => *p = snap,
            Err(p) => *p.into_inner() = snap,
        }
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Keeps the snapshot current until `stop`: reads `_schemas` (if it exists; never
    /// creating it) at start, when nudged, and every [`LOAD_INTERVAL`]. `reach` gives the
    /// listener and identity to read with (`None`: none the broker can use unattended).
    pub fn run_loader(
        &self,
        reach: impl Fn() -> Option<(String, crate::admin::client_config::ClientSecurity)>,
        stop: &AtomicBool,
    ) {
        // Bounded by `stop`; each round waits for a nudge or the interval.
        while !stop.load(Ordering::Relaxed) {
            if let Some((bootstrap, security)) = reach() {
                let r = crate::admin::client::with_security(security, || self.load(&bootstrap));
                if let Err(e) = r {
                    tracing::debug!("schema registry not loaded: {e}");
                }
            }
            // At most ten reads a second, however often shards ask.
            std::thread::sleep(MIN_LOAD_GAP);
            let w = self.wanted.lock().unwrap_or_else(|p| p.into_inner());
            let (mut w, _) = self
                .wake
                .wait_timeout_while(w, LOAD_INTERVAL, |w| !*w && !stop.load(Ordering::Relaxed))
                .unwrap_or_else(|p| p.into_inner());
            *w = false;
        }
    }

    /// Stops [`Registry::run_loader`] promptly once `stop` is set.
    pub fn wake_loader(&self) {
        self.wake.notify_all();
    }

    /// Reads what `_schemas` has beyond the state, if the topic exists.
    fn load(&self, bootstrap: &str) -> Result<(), RegistryError> {
        let mut inner = self.lock();
        if !inner.ready {
            let mut c = crate::admin::client::Client::connect(bootstrap).map_err(store_err)?;
            let md = crate::admin::topic::metadata(&mut c, Some(vec![TOPIC.to_string()]))
                .map_err(store_err)?;
            let exists = md.topics.iter().any(|t| t.error_code == 0);
            if !exists {
                if !self.snapshot().1.loaded {
                    // Nothing registered yet: validation may refuse with certainty.
                    self.publish(&inner.state);
                }
                return Ok(());
            }
            inner.ready = true;
        }
        self.catch_up(&mut inner, bootstrap)
    }

    /// [`catch_up`], publishing a new snapshot if anything changed.
    fn catch_up(&self, inner: &mut Inner, bootstrap: &str) -> Result<(), RegistryError> {
        let before = inner.next;
        catch_up(inner, bootstrap)?;
        if inner.next != before || !self.snapshot().1.loaded {
            self.publish(&inner.state);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A call that panicked left the state as it was between records: still valid.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `f` on the state caught up with `_schemas`.
    pub fn read<T>(
        &self,
        bootstrap: &str,
        f: impl FnOnce(&State) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut inner = self.lock();
        self.catch_up(&mut inner, bootstrap)?;
        f(&inner.state)
    }

    /// Appends the records `f` decides on (with what to answer), then reads them back.
    pub fn write<T>(
        &self,
        bootstrap: &str,
        f: impl FnOnce(&State) -> Result<(Vec<Record>, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut inner = self.lock();
        self.catch_up(&mut inner, bootstrap)?;
        let (records, answer) = f(&inner.state)?;
        for r in records {
            append(bootstrap, r)?;
        }
        self.catch_up(&mut inner, bootstrap)?;
        Ok(answer)
    }

    /// Registers `schema` under `subject`: (id, version), the existing ones if it is there.
    pub fn register(
        &self,
        bootstrap: &str,
        subject: &str,
        schema: &Parsed,
    ) -> Result<(u32, u32), RegistryError> {
        let mut inner = self.lock();
        for _ in 0..MAX_ATTEMPTS {
            self.catch_up(&mut inner, bootstrap)?;
            let (records, id, version) = match inner.state.plan_register(subject, schema)? {
                Plan::Exists { id, version } => return Ok((id, version)),
                Plan::Write {
                    records,
                    id,
                    version,
                } => (records, id, version),
            };
            for r in records {
                append(bootstrap, r)?;
            }
            self.catch_up(&mut inner, bootstrap)?;
            if inner.state.find(subject, schema, false) == Some((version, id)) {
                return Ok((id, version));
            }
            tracing::info!(
                subject,
                "a registration raced another node's; planning again"
            );
        }
        Err(RegistryError::store(
            "registration kept racing other writers; try again",
        ))
    }
}

fn store_err(e: anyhow::Error) -> RegistryError {
    let text = format!("{e:#}");
    // The broker refused the call as this user: an authorization failure, not a fault.
    if text.contains("error 29") || text.contains("authoriz") || text.contains("denied") {
        return RegistryError {
            http: 403,
            code: 40301,
            message: format!("not allowed on {TOPIC}: {text}"),
        };
    }
    RegistryError::store(text)
}

/// Creates `_schemas` (one partition, compacted, never expired) unless it exists.
fn ensure_topic(inner: &mut Inner, bootstrap: &str) -> Result<(), RegistryError> {
    if inner.ready {
        return Ok(());
    }
    let configs = [
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("retention.ms".to_string(), "-1".to_string()),
    ];
    // Three replicas where the cluster has three nodes (as Confluent's registry asks), else
    // the broker's default.
    let created = match create_topic(bootstrap, TOPIC, 1, 3, &configs) {
        Err(e) if format!("{e:#}").contains("error 38") => {
            create_topic(bootstrap, TOPIC, 1, -1, &configs)
        }
        other => other,
    };
    match created {
        Ok(_) => {
            tracing::info!("created the schema registry's topic {TOPIC}");
            // In a cluster its leader opens it a moment after the quorum agreed on it.
            let deadline = std::time::Instant::now() + NEW_TOPIC_WAIT;
            // Bounded by the deadline.
            while read_range(bootstrap, TOPIC, 0, Some(0), 1).is_err()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Err(e) if format!("{e:#}").contains("error 36") => {}
        Err(e) => return Err(store_err(e)),
    }
    inner.ready = true;
    Ok(())
}

/// How long a newly created `_schemas` may take to be served by its leader.
const NEW_TOPIC_WAIT: Duration = Duration::from_secs(10);

/// Applies the records of `_schemas` not applied yet, up to its end.
fn catch_up(inner: &mut Inner, bootstrap: &str) -> Result<(), RegistryError> {
    ensure_topic(inner, bootstrap)?;
    for _ in 0..MAX_ROUNDS {
        let (records, earliest, latest) = read_settled(bootstrap, inner.next)?;
        if inner.next < earliest || inner.next > latest {
            // Records were deleted under us (DeleteRecords) or the topic was recreated:
            // start over from what is there.
            tracing::warn!(
                next = inner.next,
                earliest,
                latest,
                "{TOPIC} changed under the registry; reloading it"
            );
            inner.state = State::default();
            inner.next = earliest;
            continue;
        }
        let full = records.len() >= READ_BATCH;
        for r in records {
            inner.next = r.offset + 1;
            let Some(key) = r.key else { continue };
            if let Err(e) = inner.state.apply(&key, r.value.as_deref()) {
                tracing::warn!(offset = r.offset, "{TOPIC} record skipped: {e}");
            }
        }
        if !full {
            inner.next = inner.next.max(latest);
            return Ok(());
        }
    }
    Err(RegistryError::store(format!("{TOPIC} is too long to read")))
}

/// Reads `_schemas` from `from`, retrying for a while what a partition just created or
/// whose leader just moved answers (no leader yet, not the leader, an offset its new
/// leader does not serve yet).
fn read_settled(
    bootstrap: &str,
    from: i64,
) -> Result<(Vec<crate::admin::batch::InRecord>, i64, i64), RegistryError> {
    let deadline = std::time::Instant::now() + NEW_TOPIC_WAIT;
    // Bounded by the deadline.
    loop {
        match read_range(bootstrap, TOPIC, 0, Some(from), READ_BATCH) {
            Ok(r) => return Ok(r),
            Err(e) if transient(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(store_err(e)),
        }
    }
}

/// An error a moment later may not give: a partition not served yet, a leader moving.
fn transient(e: &anyhow::Error) -> bool {
    let text = format!("{e:#}");
    ["error 1", "error 3", "error 6", "no leader", "leaders of"]
        .iter()
        .any(|t| text.contains(t))
}

fn append(bootstrap: &str, (key, value): Record) -> Result<i64, RegistryError> {
    let record = OutRecord {
        key: Some(key),
        value,
        headers: Vec::new(),
    };
    let deadline = std::time::Instant::now() + NEW_TOPIC_WAIT;
    // Bounded by the deadline: a partition its leader has not opened yet answers 3.
    loop {
        match produce_one(bootstrap, TOPIC, Some(0), record.clone()) {
            Ok((_, offset)) => return Ok(offset),
            Err(e)
                if format!("{e:#}").contains("error 3") && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => return Err(store_err(e)),
        }
    }
}
