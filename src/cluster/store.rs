//! Durable storage of the metadata quorum's Raft log, vote and snapshots, for openraft's
//! storage-v2 traits, in `<data-dir>/cluster/`.
//!
//! Invariants:
//! - `raft.log` is an append-only file of checksummed records (an entry appended, the log cut
//!   back from an index, the log purged up to an id); replaying it gives the log openraft
//!   last saw. A torn or damaged tail (a crash mid-write) ends the replay and is cut off.
//! - An append is reported durable (openraft's callback) only after the file's fdatasync; the
//!   vote is written to a temporary file, fsynced and renamed before `save_vote` returns.
//! - The state machine is the in-memory [`Image`]; every snapshot built or installed is
//!   written the same way (temp, fsync, rename) before it is used, and on start the image
//!   is the last snapshot's, with the log's later entries applied again by openraft.
//! - This runs on the control plane's own thread: its blocking file I/O never touches a shard.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StorageIOError, StoredMembership, Vote,
};
use serde::{Deserialize, Serialize};

use super::state::{Image, NodeId, Outcome};
use super::TypeConfig;

/// Largest record accepted when replaying the log file.
const MAX_RECORD: usize = 64 << 20;
/// The log file is rewritten without purged entries once it is this large.
const COMPACT_AT: u64 = 16 << 20;

#[derive(Serialize, Deserialize)]
enum Record {
    Append(Entry<TypeConfig>),
    /// Entries at and after this index were removed.
    Truncate(u64),
    /// Entries up to and including this id were purged.
    Purge(LogId<NodeId>),
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn store_err(e: &io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(e).into()
}

fn frame(rec: &Record) -> io::Result<Vec<u8>> {
    let body = serde_json::to_vec(rec).map_err(io_err)?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

struct LogInner {
    path: PathBuf,
    file: File,
    size: u64,
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    vote_path: PathBuf,
}

impl LogInner {
    fn write(&mut self, recs: &[Record], sync: bool) -> io::Result<()> {
        let mut buf = Vec::new();
        for r in recs {
            buf.extend_from_slice(&frame(r)?);
        }
        self.file.write_all(&buf)?;
        self.size += buf.len() as u64;
        if sync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Rewrites the file with only what the log holds now (after purges).
    fn compact(&mut self) -> io::Result<()> {
        let mut recs = Vec::new();
        if let Some(p) = self.purged {
            recs.push(Record::Purge(p));
        }
        recs.extend(self.entries.values().cloned().map(Record::Append));
        let mut buf = Vec::new();
        for r in &recs {
            buf.extend_from_slice(&frame(r)?);
        }
        crate::durable::write_atomic(&self.path, &buf)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.size = buf.len() as u64;
        Ok(())
    }
}

/// The Raft log and vote. Cheap to clone (one shared file).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, replaying its file; returns a line per repair.
    pub fn open(dir: &Path) -> io::Result<(LogStore, Vec<String>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("raft.log");
        let mut report = Vec::new();
        let mut bytes = Vec::new();
        if path.exists() {
            File::open(&path)?.read_to_end(&mut bytes)?;
        }
        let mut entries = BTreeMap::new();
        let mut purged = None;
        let mut pos = 0usize;
        // Each iteration replays one record or stops at the first bad one.
        while pos + 8 <= bytes.len() {
            let len =
                u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
                    as usize;
            let crc = u32::from_be_bytes([
                bytes[pos + 4],
                bytes[pos + 5],
                bytes[pos + 6],
                bytes[pos + 7],
            ]);
            let Some(body) = bytes
                .get(pos + 8..pos + 8 + len)
                .filter(|_| len <= MAX_RECORD)
            else {
                break;
            };
            if crc32c::crc32c(body) != crc {
                break;
            }
            let Ok(rec) = serde_json::from_slice::<Record>(body) else {
                break;
            };
            match rec {
                Record::Append(e) => {
                    entries.insert(e.log_id.index, e);
                }
                Record::Truncate(from) => {
                    entries.retain(|i, _| *i < from);
                }
                Record::Purge(id) => {
                    entries.retain(|i, _| *i > id.index);
                    purged = Some(id);
                }
            }
            pos += 8 + len;
        }
        if pos < bytes.len() {
            report.push(format!(
                "metadata log {}: cut {} bytes of a torn or damaged tail",
                path.display(),
                bytes.len() - pos
            ));
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
        }
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let vote_path = dir.join("vote.json");
        let vote = match std::fs::read(&vote_path) {
            Ok(b) => Some(serde_json::from_slice(&b).map_err(io_err)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let inner = LogInner {
            path,
            file,
            size: pos as u64,
            entries,
            purged,
            vote,
            vote_path,
        };
        Ok((
            LogStore {
                inner: Arc::new(Mutex::new(inner)),
            },
            report,
        ))
    }

    /// The log's state (a panic while it was held leaves it as the last write left it:
    /// every change to it is made after the file write it mirrors).
    fn lock(&self) -> std::sync::MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        let bytes = serde_json::to_vec(vote).map_err(|e| store_err(&io_err(e)))?;
        crate::durable::write_atomic(&inner.vote_path, &bytes).map_err(|e| store_err(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.lock().vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        let mut inner = self.lock();
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let recs: Vec<Record> = entries.iter().cloned().map(Record::Append).collect();
        let r = inner.write(&recs, true);
        if r.is_ok() {
            for e in entries {
                inner.entries.insert(e.log_id.index, e);
            }
        }
        let failed = r.as_ref().err().map(store_err);
        callback.log_io_completed(r);
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner
            .write(&[Record::Truncate(log_id.index)], true)
            .map_err(|e| store_err(&e))?;
        inner.entries.retain(|i, _| *i < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut inner = self.lock();
        inner
            .write(&[Record::Purge(log_id)], false)
            .map_err(|e| store_err(&e))?;
        inner.entries.retain(|i, _| *i > log_id.index);
        inner.purged = Some(log_id);
        if inner.size > COMPACT_AT {
            inner.compact().map_err(|e| store_err(&e))?;
        }
        Ok(())
    }
}

/// What a snapshot file holds.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<NodeId, openraft::BasicNode>,
    image: Image,
}

struct MachineInner {
    dir: PathBuf,
    image: Image,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, openraft::BasicNode>,
    snapshot: Option<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>)>,
    snapshots_built: u64,
}

/// Called with the image and the last applied index after every change.
pub type OnChange = Arc<dyn Fn(&Image, Option<u64>) + Send + Sync>;

/// The state machine: the metadata [`Image`], shared with the node's view of it.
#[derive(Clone)]
pub struct StateMachine {
    inner: Arc<Mutex<MachineInner>>,
    /// Called with the image after every change.
    on_change: OnChange,
}

impl StateMachine {
    /// The state machine of `dir`, starting from its last snapshot if there is one.
    pub fn open(dir: &Path, on_change: OnChange) -> io::Result<StateMachine> {
        let path = dir.join("snapshot.json");
        let mut inner = MachineInner {
            dir: dir.to_path_buf(),
            image: Image::default(),
            last_applied: None,
            membership: StoredMembership::default(),
            snapshot: None,
            snapshots_built: 0,
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let snap: SnapshotFile = serde_json::from_slice(&bytes).map_err(io_err)?;
                inner.image = snap.image;
                inner.last_applied = snap.meta.last_log_id;
                inner.membership = snap.meta.last_membership.clone();
                inner.snapshot = Some((snap.meta, bytes));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        on_change(&inner.image, inner.last_applied.map(|l| l.index));
        Ok(StateMachine {
            inner: Arc::new(Mutex::new(inner)),
            on_change,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MachineInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MachineInner {
    /// Writes the current image as a snapshot file and keeps it.
    fn save_snapshot(
        &mut self,
    ) -> io::Result<(SnapshotMeta<NodeId, openraft::BasicNode>, Vec<u8>)> {
        self.snapshots_built += 1;
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.last_applied.map_or(0, |l| l.index),
                self.snapshots_built
            ),
        };
        let bytes = serde_json::to_vec(&SnapshotFile {
            meta: meta.clone(),
            image: self.image.clone(),
        })
        .map_err(io_err)?;
        crate::durable::write_atomic(&self.dir.join("snapshot.json"), &bytes)?;
        self.snapshot = Some((meta.clone(), bytes.clone()));
        Ok((meta, bytes))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let mut inner = self.lock();
        let (meta, bytes) = inner
            .save_snapshot()
            .map_err(|e| StorageError::from(StorageIOError::write_snapshot(None, &e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<
        (
            Option<LogId<NodeId>>,
            StoredMembership<NodeId, openraft::BasicNode>,
        ),
        StorageError<NodeId>,
    > {
        let inner = self.lock();
        Ok((inner.last_applied, inner.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Outcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
    {
        let mut inner = self.lock();
        let mut out = Vec::new();
        for e in entries {
            inner.last_applied = Some(e.log_id);
            match &e.payload {
                EntryPayload::Blank => out.push(Outcome::Done),
                EntryPayload::Normal(cmd) => {
                    let r = inner.image.apply(cmd, e.log_id.index);
                    out.push(r);
                }
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(e.log_id), m.clone());
                    out.push(Outcome::Done);
                }
            }
        }
        (self.on_change)(&inner.image, inner.last_applied.map(|l| l.index));
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                &io_err(e),
            ))
        })?;
        let mut inner = self.lock();
        crate::durable::write_atomic(&inner.dir.join("snapshot.json"), &bytes).map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(Some(meta.signature()), &e))
        })?;
        inner.image = file.image;
        inner.last_applied = meta.last_log_id;
        inner.membership = meta.last_membership.clone();
        inner.snapshot = Some((meta.clone(), bytes));
        (self.on_change)(&inner.image, inner.last_applied.map(|l| l.index));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let inner = self.lock();
        Ok(inner.snapshot.as_ref().map(|(meta, bytes)| Snapshot {
            meta: meta.clone(),
            snapshot: Box::new(Cursor::new(bytes.clone())),
        }))
    }
}
