//! The registry's storage: the compacted, single-partition `_schemas` topic, read and
//! written through the broker's own Kafka listener with the calling thread's client
//! identity (`admin::client::with_security`).
//!
//! Invariants: every answer is given from a state caught up with the log's end at the time
//! of the call; one node's writers take turns (one lock), and a write is answered only once
//! it has been read back. Writers on different nodes can race for the same version number:
//! the later record wins (as compaction would keep it) and the loser, reading back, finds
//! it lost and plans again.

use std::sync::{Mutex, MutexGuard};

use crate::admin::batch::OutRecord;
use crate::admin::consume::read_range;
use crate::admin::produce::produce_one;
use crate::admin::topic::create_topic;

use super::parsed::Parsed;
use super::state::{Plan, Record, State};
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

/// The registry of one broker process.
#[derive(Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

impl Registry {
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
        catch_up(&mut inner, bootstrap)?;
        f(&inner.state)
    }

    /// Appends the records `f` decides on (with what to answer), then reads them back.
    pub fn write<T>(
        &self,
        bootstrap: &str,
        f: impl FnOnce(&State) -> Result<(Vec<Record>, T), RegistryError>,
    ) -> Result<T, RegistryError> {
        let mut inner = self.lock();
        catch_up(&mut inner, bootstrap)?;
        let (records, answer) = f(&inner.state)?;
        for r in records {
            append(bootstrap, r)?;
        }
        catch_up(&mut inner, bootstrap)?;
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
            catch_up(&mut inner, bootstrap)?;
            let (record, id, version) = match inner.state.plan_register(subject, schema)? {
                Plan::Exists { id, version } => return Ok((id, version)),
                Plan::Write {
                    record,
                    id,
                    version,
                } => (record, id, version),
            };
            append(bootstrap, record)?;
            catch_up(&mut inner, bootstrap)?;
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
    match create_topic(bootstrap, TOPIC, 1, -1, &configs) {
        Ok(_) => tracing::info!("created the schema registry's topic {TOPIC}"),
        Err(e) if format!("{e:#}").contains("error 36") => {}
        Err(e) => return Err(store_err(e)),
    }
    inner.ready = true;
    Ok(())
}

/// Applies the records of `_schemas` not applied yet, up to its end.
fn catch_up(inner: &mut Inner, bootstrap: &str) -> Result<(), RegistryError> {
    ensure_topic(inner, bootstrap)?;
    for _ in 0..MAX_ROUNDS {
        let (records, earliest, latest) =
            read_range(bootstrap, TOPIC, 0, Some(inner.next), READ_BATCH).map_err(store_err)?;
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

fn append(bootstrap: &str, (key, value): Record) -> Result<i64, RegistryError> {
    let record = OutRecord {
        key: Some(key),
        value,
        headers: Vec::new(),
    };
    produce_one(bootstrap, TOPIC, Some(0), record)
        .map(|(_, offset)| offset)
        .map_err(store_err)
}
