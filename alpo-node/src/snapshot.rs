//! The snapshot thread: the disk work of snapshots, off the event loop (rules S3, S5–S7).
//!
//! It owns alpo-log's `SnapshotStore` (the snapshot files in the data directory) and its
//! `SnapshotReceiver`, and does, in the order the jobs arrive:
//! - `Take`: streams a frozen image from the apply thread into `SnapshotStore::begin(..)`
//!   (temporary file, chunks with CRCs), `finish` (fsync, rename, directory fsync: S3 steps
//!   1–4), lists it, and reports it durable (step 5);
//! - `Read`: reads a byte range of the newest snapshot file for a transfer to a follower (S5);
//!   a file that is no longer the newest is answered `Replaced`;
//! - `Chunk`: writes a received chunk at its offset (S6); on the last, verifies, fsyncs,
//!   renames and fsyncs the directory, then reports it installed or failed (S7);
//! - `RemoveOlder`: once the log was compacted below the newest snapshot, deletes older ones
//!   (S3 step 7). A transfer reads only the newest file, and an open file stays readable after
//!   its name is removed, so no transfer loses its file.
//!
//! Every result goes to the event loop as a `SnapshotReport` in a shared list, followed by a
//! wake of its inbox. Invariants: memory is one chunk per job (the image is streamed, never held
//! whole); a failed fsync or write of a snapshot we take is fatal, like the log's; a received
//! file that does not verify is only a failed install (the leader sends it again).

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use alpo_core::{
    Configuration, LogIndex, LogPosition, NodeId, SnapshotMeta, SnapshotReadError, Term,
};
use alpo_log::{ChunkOutcome, SnapshotFile, SnapshotReceiver, SnapshotStore};

use crate::apply::FrozenState;
use crate::error::Error;
use crate::limits::SNAPSHOT_QUEUE_COUNT_MAX;
use crate::service::Wake;

/// Work for the snapshot thread.
#[derive(Debug)]
pub(crate) enum SnapshotJob {
    /// Write this frozen state as a snapshot file.
    Take(FrozenState),
    /// Read `len` bytes at `offset` of snapshot `snapshot` for follower `to`.
    Read {
        to: NodeId,
        snapshot: LogPosition,
        offset: u64,
        len: u64,
    },
    /// Write a received chunk; `last` completes the file.
    Chunk {
        snapshot: SnapshotMeta,
        offset: u64,
        data: Bytes,
        last: bool,
    },
    /// Remove snapshot files older than the newest, whose last index is below `below`.
    RemoveOlder { below: LogIndex },
}

/// What the snapshot thread tells the event loop.
#[derive(Debug)]
pub(crate) enum SnapshotReport {
    /// A snapshot this node took is durable (for `Node::on_snapshot_durable`).
    Durable(SnapshotMeta),
    /// The answer to a `Read` (for `Node::on_snapshot_read`).
    Read {
        to: NodeId,
        snapshot: LogPosition,
        offset: u64,
        result: Result<Bytes, SnapshotReadError>,
    },
    /// A received snapshot is verified and durable at `path` (for `on_snapshot_installed`),
    /// with the address book of its membership bytes (issue 12).
    Installed {
        meta: SnapshotMeta,
        path: PathBuf,
        book: Option<crate::address_book::AddressBook>,
    },
    /// A received snapshot did not verify (for `on_snapshot_install_failed`).
    InstallFailed(SnapshotMeta),
}

/// What the snapshot thread publishes.
#[derive(Debug, Default)]
pub(crate) struct SnapshotState {
    /// Reports not yet taken by the event loop, in the order they happened.
    pub(crate) reports: Vec<SnapshotReport>,
    /// Set once when writing a snapshot failed; the node must stop.
    pub(crate) fatal: Option<alpo_log::Error>,
    /// Last index of the newest snapshot file (0 without one), for status.
    pub(crate) newest_index: u64,
    /// Issue 12: the event loop's address book, encoded: a snapshot taken here carries it
    /// after its configuration in the header's membership bytes.
    pub(crate) book: Bytes,
}

/// The event loop's view of the snapshot thread.
#[derive(Debug)]
pub(crate) struct SnapshotHandle {
    pub(crate) jobs: Sender<SnapshotJob>,
    pub(crate) state: Arc<Mutex<SnapshotState>>,
    pub(crate) thread: JoinHandle<()>,
}

/// The newest snapshot's position, size and configuration (the header's `membership` bytes,
/// `Configuration::encode` then the address book, issue 12; empty in files written before), as the core knows
/// snapshots. Undecodable membership bytes (the header's CRC passed, so a foreign writer) are
/// reported and read as no configuration: the core then falls back to the bootstrap one.
pub(crate) fn core_meta(meta: &alpo_log::SnapshotMeta, file_bytes: u64) -> SnapshotMeta {
    let configuration = if meta.membership.is_empty() {
        Configuration::default()
    } else {
        Configuration::decode(&meta.membership).unwrap_or_else(|problem| {
            tracing::error!(
                index = meta.last_index,
                problem,
                "snapshot membership unreadable"
            );
            Configuration::default()
        })
    };
    SnapshotMeta {
        last: LogPosition {
            index: LogIndex(meta.last_index),
            term: Term(meta.last_term),
        },
        size: file_bytes,
        configuration,
    }
}

/// Starts the snapshot thread over `store`; it calls `wake` after each report.
pub(crate) fn spawn(store: SnapshotStore, wake: Arc<dyn Wake>) -> Result<SnapshotHandle, Error> {
    let (jobs, receiver) = crossbeam_channel::bounded(SNAPSHOT_QUEUE_COUNT_MAX);
    let state = Arc::new(Mutex::new(SnapshotState {
        newest_index: store.newest().map_or(0, |meta| meta.last_index),
        ..SnapshotState::default()
    }));
    let mut worker = Worker {
        receiver: store.receiver(),
        store,
        newest: None,
        state: Arc::clone(&state),
        wake,
    };
    let thread = std::thread::Builder::new()
        .name("alpo-snapshot".into())
        .spawn(move || worker.run(&receiver))
        .map_err(|source| Error::Io {
            what: "starting the snapshot thread".into(),
            source,
        })?;
    Ok(SnapshotHandle {
        jobs,
        state,
        thread,
    })
}

struct Worker {
    store: SnapshotStore,
    receiver: SnapshotReceiver,
    /// The newest snapshot file, open for transfers.
    newest: Option<SnapshotFile>,
    state: Arc<Mutex<SnapshotState>>,
    wake: Arc<dyn Wake>,
}

impl Worker {
    fn run(&mut self, jobs: &Receiver<SnapshotJob>) {
        // Ends when the event loop and the apply thread drop their senders (node stopping).
        while let Ok(job) = jobs.recv() {
            let result = match job {
                SnapshotJob::Take(frozen) => self.take(frozen),
                SnapshotJob::Read {
                    to,
                    snapshot,
                    offset,
                    len,
                } => {
                    let result = self.read(to, snapshot, offset, len);
                    self.report(SnapshotReport::Read {
                        to,
                        snapshot,
                        offset,
                        result,
                    });
                    Ok(())
                }
                SnapshotJob::Chunk {
                    snapshot,
                    offset,
                    data,
                    last,
                } => self.chunk(snapshot, offset, &data, last),
                SnapshotJob::RemoveOlder { below } => self.remove_older(below),
            };
            if let Err(error) = result {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "snapshot write failed; the node stops"
                );
                self.state.lock().fatal = Some(error);
                self.wake.wake();
                return;
            }
        }
    }

    fn report(&self, report: SnapshotReport) {
        self.state.lock().reports.push(report);
        self.wake.wake();
    }

    /// S3 steps 1–5.
    fn take(&mut self, frozen: FrozenState) -> Result<(), alpo_log::Error> {
        let FrozenState {
            at,
            configuration,
            image,
        } = frozen;
        let mut membership = configuration.encode().to_vec();
        membership.extend_from_slice(&self.state.lock().book);
        let mut writer = self.store.begin(at.index.0, at.term.0, &membership)?;
        if let Err(source) = image.write_to(&mut writer) {
            // A write into the file failed (the writer reports the file and the cause).
            return Err(alpo_log::Error::Io {
                path: self.store.dir().to_path_buf(),
                operation: "write snapshot image",
                source,
            });
        }
        let finished = writer.finish()?;
        let path = finished.path().to_path_buf();
        self.store.adopt(finished);
        let file = SnapshotFile::open(&path)?;
        let meta = core_meta(file.meta(), file.file_bytes());
        self.set_newest(file);
        tracing::info!(index = at.index.0, file = %path.display(), "snapshot taken");
        self.report(SnapshotReport::Durable(meta));
        Ok(())
    }

    fn set_newest(&mut self, file: SnapshotFile) {
        self.state.lock().newest_index = file.meta().last_index;
        self.newest = Some(file);
    }

    /// S5: bytes of the newest snapshot file.
    fn read(
        &mut self,
        to: NodeId,
        snapshot: LogPosition,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, SnapshotReadError> {
        if self.newest.is_none() {
            self.newest = self.store.open_newest().map_err(|error| {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "snapshot open failed"
                );
                SnapshotReadError::Failed
            })?;
        }
        let Some(file) = &self.newest else {
            return Err(SnapshotReadError::Replaced);
        };
        let position = (file.meta().last_index, file.meta().last_term);
        if position != (snapshot.index.0, snapshot.term.0) {
            return Err(SnapshotReadError::Replaced);
        }
        if offset == 0 {
            tracing::info!(
                follower = to.0,
                index = snapshot.index.0,
                bytes = file.file_bytes(),
                "sending a snapshot to a follower"
            );
        }
        let length = usize::try_from(len).map_err(|_| SnapshotReadError::Failed)?;
        let mut buffer = vec![0; length];
        match file.read_at(offset, &mut buffer) {
            Ok(read) => {
                buffer.truncate(read);
                Ok(Bytes::from(buffer))
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "snapshot read failed"
                );
                Err(SnapshotReadError::Failed)
            }
        }
    }

    /// S6 and S7: a received chunk, and on the last one the install.
    fn chunk(
        &mut self,
        snapshot: SnapshotMeta,
        offset: u64,
        data: &[u8],
        last: bool,
    ) -> Result<(), alpo_log::Error> {
        let id = transfer_id(snapshot.last);
        if offset == 0 {
            tracing::info!(
                index = snapshot.last.index.0,
                term = snapshot.last.term.0,
                "receiving a snapshot from the leader"
            );
        }
        match self.receiver.write_at(id, offset, data) {
            Ok(ChunkOutcome::Accepted { .. }) => {}
            // The core writes only at the offset it holds; a mismatch means the partial file
            // was lost (not durable): the core learns it from the failed install below.
            Ok(ChunkOutcome::Resume { held }) => {
                tracing::warn!(offset, held, "snapshot chunk at an unexpected offset");
            }
            Err(error) if error.is_fatal() => return Err(error),
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "snapshot chunk refused"
                );
                self.report(SnapshotReport::InstallFailed(snapshot));
                return Ok(());
            }
        }
        if !last {
            return Ok(());
        }
        match self.receiver.finish(id) {
            Ok(finished) => {
                let path = finished.path().to_path_buf();
                self.store.adopt(finished);
                let file = SnapshotFile::open(&path)?;
                tracing::info!(
                    index = snapshot.last.index.0,
                    bytes = file.file_bytes(),
                    file = %path.display(),
                    "snapshot received and verified"
                );
                let what = "an installed snapshot";
                let book =
                    crate::address_book::AddressBook::of_annex(&file.meta().membership, what);
                self.set_newest(file);
                self.report(SnapshotReport::Installed {
                    meta: snapshot,
                    path,
                    book,
                });
            }
            Err(error) if error.is_fatal() => return Err(error),
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "received snapshot does not verify"
                );
                self.report(SnapshotReport::InstallFailed(snapshot));
            }
        }
        Ok(())
    }

    /// S3 step 7.
    fn remove_older(&mut self, below: LogIndex) -> Result<(), alpo_log::Error> {
        let Some(newest) = self.store.newest().map(|meta| meta.last_index) else {
            return Ok(());
        };
        let removed = self.store.remove_older(below.0.min(newest))?;
        if 0 < removed {
            tracing::debug!(removed, "older snapshots removed");
        }
        Ok(())
    }
}

/// The receiver's id for the transfer of the snapshot at `last`: a mix of index and term, so
/// chunks of another snapshot start another partial file.
fn transfer_id(last: LogPosition) -> u64 {
    last.index.0.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ last.term.0.rotate_left(32)
}
