//! The apply thread: feeds committed entries, in index order, to the state machine; answers the
//! client requests waiting for them; serves reads of committed entries from the log files;
//! freezes the state for a snapshot and restores it from one.
//!
//! Invariants: entries arrive in strictly increasing index order without gaps, each once per
//! incarnation (the core's `Apply` contract), and are applied in that order; a waiting request
//! is answered with its outcome only when the entry at its index has the term it was proposed
//! in, otherwise (the entry was lost with its leader) with a retryable error; the session table
//! turns a retried request into the first application's outcome; `applied` (shared with the
//! event loop) is the index of the last entry applied, and reads return only entries at or
//! below it — committed entries only (docs/protocol.md, Clients).
//!
//! The thread keeps no entries: a read goes to the log files (`EntrySource`, alpo-log's
//! `LogView`), bounded by `applied`; below the first retained index it is answered
//! `ErrorCode::Compacted` naming the first index still readable. What the log cannot tell —
//! which entries were retries, not applied again — is kept as the set of their indices, for
//! the indices a reader may still see (those above the newest snapshot's `L - retain`), and
//! goes into the snapshot image with the session table. Reads below `marks_from` (where the
//! marks end) are answered `Compacted` too, even while the log files still hold the entries:
//! a retry read without its mark would look like a second application.
//!
//! Snapshots (rules S2, S7): `TakeSnapshot { at }` arrives in order with the entries, right
//! after the one at `at`; the thread freezes sessions and state machine there (`NodeImage`,
//! a copy-on-write clone: a short pause) and hands the image to the snapshot thread, which
//! writes it while this thread applies on. `Restore` replaces state machine, sessions and
//! `applied` with a snapshot's; entries up to its `L` are never applied after it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use alpo_core::{Configuration, Entry, EntryKind, LogIndex, LogPosition, Term};

use crate::client_protocol::{ErrorCode, ReadEntry, ReadEntryKind, Response, ResponseBody};
use crate::command::{CommandKind, LogCommand};
use crate::error::Error;
use crate::limits::{APPLY_QUEUE_COUNT_MAX, READ_BYTES_MAX, READ_ENTRY_COUNT_MAX};
use crate::metrics::Metrics;
use crate::node_image::{self, NodeImage, RestoredState};
use crate::query_now::SharedMachine;
use crate::service::{ConnectionId, Replier};
use crate::session::{Check, Outcome, Sessions};
use crate::snapshot::SnapshotJob;
use crate::state_machine::StateMachine;

/// Where the apply thread reads committed entries for clients: the log files in a running node
/// (alpo-log's `LogView`).
pub(crate) trait EntrySource: Send + 'static {
    /// A gap-free run of durable entries from `from` to at most `to` (inclusive), stopping once
    /// their payloads reach `max_bytes` (at least one if `from` is durable); empty above the
    /// durable index; `alpo_log::Error::Compacted` below the first index.
    fn read(&self, from: LogIndex, to: LogIndex, max_bytes: u64) -> Result<Vec<Entry>, Error>;
}

/// A state frozen by the apply thread for the snapshot thread to write.
#[derive(Debug)]
pub(crate) struct FrozenState {
    /// The snapshot's last included position.
    pub(crate) at: LogPosition,
    /// The configuration in force at `at` (rule S1), for the file's header.
    pub(crate) configuration: Configuration,
    /// The image as of `at`.
    pub(crate) image: NodeImage,
}

/// How the apply thread starts.
pub(crate) struct ApplyStart {
    pub(crate) machine: Box<dyn StateMachine>,
    pub(crate) replier: Arc<dyn Replier>,
    /// Where reads of committed entries go.
    pub(crate) log: Box<dyn EntrySource>,
    /// The state restored from the newest snapshot at start (rule S8), if any.
    pub(crate) restored: Option<RestoredState>,
    /// Where frozen states go (the snapshot thread); dropped ones are lost, and the core asks
    /// again.
    pub(crate) snapshots: Sender<SnapshotJob>,
    /// Log entries kept below a snapshot (rule S4), so that duplicate marks are kept as long as
    /// their entries can be read.
    pub(crate) retain_entries: u64,
    /// The node's metrics, when on (request latency).
    pub(crate) metrics: Option<Arc<Metrics>>,
}

/// What the event loop tells the apply thread.
#[derive(Debug)]
pub(crate) enum ApplyMsg {
    /// Committed entries, in order, from the core's `Apply` output.
    Entries(Vec<Entry>),
    /// A client waits for the proposal at `index` (proposed in `term`) to be applied.
    Pending(PendingRequest),
    /// A client reads committed entries.
    Read(ReadRequest),
    /// Clients' queries, answered in order by `StateMachine::query` against the state as it
    /// stands (after every `Entries` before it: a linearizable query comes after the entries
    /// up to its read index, rules Q1 (d), Q2). The event loop hands over every query of one
    /// turn at once: one wake-up of this thread per turn, not per query.
    Queries(Vec<QueryRequest>),
    /// This node stopped being leader: its waiting clients should retry elsewhere.
    LeadershipLost,
    /// Freeze the state as of `at`, the last entry sent before this message (rule S2).
    TakeSnapshot {
        at: LogPosition,
        configuration: Configuration,
    },
    /// Replace the state with that of the installed snapshot file at `path`, whose last
    /// included index is `last` (rule S7 step 2).
    Restore { last: LogIndex, path: PathBuf },
}

/// A client waiting for its proposal.
#[derive(Debug)]
pub(crate) struct PendingRequest {
    pub(crate) index: LogIndex,
    pub(crate) term: Term,
    pub(crate) connection: ConnectionId,
    pub(crate) seq: u64,
    /// When the event loop proposed it, when metrics are on (for `alpo_request_seconds`).
    pub(crate) proposed_at: Option<std::time::Instant>,
}

/// A read of committed entries.
#[derive(Debug)]
pub(crate) struct ReadRequest {
    pub(crate) connection: ConnectionId,
    pub(crate) seq: u64,
    pub(crate) from: LogIndex,
    pub(crate) max_count: u32,
}

/// A query against the applied state (no log write).
#[derive(Debug)]
pub(crate) struct QueryRequest {
    pub(crate) connection: ConnectionId,
    pub(crate) seq: u64,
    pub(crate) payload: Bytes,
}

/// The event loop's view of the apply thread.
pub(crate) struct ApplyHandle {
    pub(crate) sender: Sender<ApplyMsg>,
    pub(crate) applied: Arc<AtomicU64>,
    /// The state machine, for queries the event loop answers itself (`query_now.rs`).
    pub(crate) machine: SharedMachine,
    /// `StateMachine::queries_are_quick`, asked at start: whether the event loop may query.
    pub(crate) quick_queries: bool,
    pub(crate) thread: JoinHandle<()>,
}

struct Applier {
    /// Changed only under its lock, together with `applied` (`query_now.rs`).
    machine: SharedMachine,
    sessions: Sessions,
    pending: BTreeMap<LogIndex, PendingRequest>,
    /// Indices of applied entries that were retries or stale requests (not applied again), at
    /// or above the newest snapshot's `L + 1 - retain_entries`: what readers may still see.
    duplicates: BTreeSet<LogIndex>,
    /// The lowest index whose mark (or its absence) `duplicates` still tells: reads start at or
    /// above it, since the log files may hold entries below it after their marks were dropped
    /// (a snapshot is frozen before it is durable and compacts the log; a restart or an install
    /// may keep older entries than the image's marks cover).
    marks_from: LogIndex,
    log: Box<dyn EntrySource>,
    snapshots: Sender<SnapshotJob>,
    retain_entries: u64,
    applied: Arc<AtomicU64>,
    replier: Arc<dyn Replier>,
    metrics: Option<Arc<Metrics>>,
}

impl std::fmt::Debug for ApplyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyHandle")
            .field("applied", &self.applied)
            .field("quick_queries", &self.quick_queries)
            .field("thread", &self.thread)
            .finish_non_exhaustive()
    }
}

/// Starts the apply thread.
pub(crate) fn spawn(start: ApplyStart) -> Result<ApplyHandle, Error> {
    let (sender, receiver) = crossbeam_channel::bounded(APPLY_QUEUE_COUNT_MAX);
    let quick_queries = start.machine.queries_are_quick();
    let mut applier = Applier::new(start);
    let applied = Arc::clone(&applier.applied);
    let machine = Arc::clone(&applier.machine);
    let thread = std::thread::Builder::new()
        .name("alpo-apply".into())
        .spawn(move || applier.run(&receiver))
        .map_err(|source| Error::Io {
            what: "starting the apply thread".into(),
            source,
        })?;
    Ok(ApplyHandle {
        sender,
        applied,
        machine,
        quick_queries,
        thread,
    })
}

impl Applier {
    fn new(start: ApplyStart) -> Applier {
        let ApplyStart {
            machine,
            replier,
            log,
            restored,
            snapshots,
            retain_entries,
            metrics,
        } = start;
        let restored = restored.unwrap_or_default();
        Applier {
            machine: Arc::new(parking_lot::Mutex::new(machine)),
            sessions: restored.sessions,
            pending: BTreeMap::new(),
            duplicates: restored.duplicates,
            marks_from: marks_bound(restored.last, retain_entries),
            log,
            snapshots,
            retain_entries,
            applied: Arc::new(AtomicU64::new(restored.last.0)),
            replier,
            metrics,
        }
    }

    fn run(&mut self, receiver: &Receiver<ApplyMsg>) {
        // Ends when the event loop drops its sender (node stopping).
        while let Ok(message) = receiver.recv() {
            match message {
                ApplyMsg::Entries(entries) => {
                    for entry in entries {
                        self.apply(entry);
                    }
                }
                ApplyMsg::Pending(pending) => self.add_pending(pending),
                ApplyMsg::Read(read) => self.read(&read),
                ApplyMsg::Queries(queries) => {
                    for query in &queries {
                        self.query(query);
                    }
                }
                ApplyMsg::LeadershipLost => self.fail_all_pending("leadership lost"),
                ApplyMsg::TakeSnapshot { at, configuration } => {
                    self.take_snapshot(at, configuration);
                }
                ApplyMsg::Restore { last, path } => {
                    if let Err(error) = self.restore(last, &path) {
                        // The node cannot go on with a state it could not restore: ending this
                        // thread stops the event loop at its next hand-off.
                        tracing::error!(
                            error = &error as &dyn std::error::Error,
                            "restoring the state machine from a snapshot failed; the node stops"
                        );
                        break;
                    }
                }
            }
        }
        self.fail_all_pending("node stopping");
    }

    /// Freezes the state as of `at` (rule S2) and hands it to the snapshot thread.
    fn take_snapshot(&mut self, at: LogPosition, configuration: Configuration) {
        let applied = self.applied.load(Ordering::Acquire);
        assert!(
            at.index.0 == applied,
            "invariant: TakeSnapshot follows the Apply of its entry (at {}, applied {applied})",
            at.index
        );
        // Marks of entries that compaction below this snapshot will drop are not needed again.
        let keep_from = marks_bound(at.index, self.retain_entries);
        self.duplicates = self.duplicates.split_off(&keep_from);
        self.marks_from = self.marks_from.max(keep_from);
        let image = NodeImage::take(
            &self.sessions,
            &self.duplicates,
            self.machine.lock().as_ref(),
        );
        if self
            .snapshots
            .send(SnapshotJob::Take(FrozenState {
                at,
                configuration,
                image,
            }))
            .is_err()
        {
            tracing::warn!(
                index = at.index.0,
                "the snapshot thread stopped; snapshot dropped"
            );
        }
    }

    /// Replaces state machine, sessions and applied index with the snapshot's (rule S7).
    fn restore(&mut self, last: LogIndex, path: &std::path::Path) -> Result<(), Error> {
        let restored = {
            // The machine and `applied` change together, under the lock (`query_now.rs`).
            let mut machine = self.machine.lock();
            let restored = node_image::restore_from_file(path, machine.as_mut())?;
            self.applied.store(last.0, Ordering::Release);
            restored
        };
        debug_assert!(
            restored.last == last,
            "the file is the snapshot the core installed"
        );
        self.sessions = restored.sessions;
        self.duplicates = restored.duplicates;
        self.marks_from = marks_bound(last, self.retain_entries);
        // Proposals at or below `L` will never be applied here: their outcome is in the
        // snapshot's session table, which a retry reaches. Later ones still wait.
        let later = self.pending.split_off(&last.next());
        for (_, pending) in std::mem::replace(&mut self.pending, later) {
            let reason = "state replaced by a snapshot; retry";
            self.answer_error(pending.connection, pending.seq, ErrorCode::Retry, reason);
        }
        tracing::info!(index = last.0, "state machine restored from a snapshot");
        Ok(())
    }

    fn add_pending(&mut self, pending: PendingRequest) {
        if pending.index.0 <= self.applied.load(Ordering::Acquire) {
            // Proposals are registered before their entry can commit; an index already applied
            // means the proposal was overwritten by another leader's entry.
            self.answer_error(
                pending.connection,
                pending.seq,
                ErrorCode::Retry,
                "entry lost",
            );
            return;
        }
        if let Some(old) = self.pending.insert(pending.index, pending) {
            self.answer_error(old.connection, old.seq, ErrorCode::Retry, "entry replaced");
        }
    }

    fn apply(&mut self, entry: Entry) {
        let index = entry.index;
        let term = entry.term;
        let applied = self.applied.load(Ordering::Acquire);
        assert!(
            index.0 == applied + 1,
            "invariant: entries are applied in order without gaps"
        );
        let outcome = {
            // The entry and `applied` change together, under the lock (`query_now.rs`); the
            // answers below are written after it is released.
            let machine = Arc::clone(&self.machine);
            let mut machine = machine.lock();
            let outcome = self.execute(&entry, machine.as_mut());
            self.applied.store(index.0, Ordering::Release);
            outcome
        };
        // Older waiting requests cannot exist (each index gets its entry), but if they did, their
        // entries are gone: answer them so no client waits forever.
        while let Some(entry) = self.pending.first_entry() {
            if index < *entry.key() {
                break;
            }
            let pending = entry.remove();
            if pending.index == index && pending.term == term {
                let body = match &outcome {
                    Ok(outcome) => response_body(outcome),
                    Err((code, reason)) => error_body(*code, reason),
                };
                if let (Some(metrics), Some(at)) = (&self.metrics, pending.proposed_at) {
                    metrics.request_seconds.observe(at.elapsed().as_secs_f64());
                }
                self.replier.reply(
                    pending.connection,
                    Response {
                        seq: pending.seq,
                        body,
                    }
                    .encode(),
                );
            } else {
                let reason = "entry lost in a leader change";
                self.answer_error(pending.connection, pending.seq, ErrorCode::Retry, reason);
            }
        }
    }

    /// Applies one entry; returns what its proposer is answered.
    fn execute(
        &mut self,
        entry: &Entry,
        machine: &mut dyn StateMachine,
    ) -> Result<Outcome, (ErrorCode, String)> {
        match entry.kind {
            EntryKind::Noop => return Err((ErrorCode::Retry, "no-op entry".to_string())),
            // A configuration (rule M1) is the core's business: the state machine skips it.
            EntryKind::Config => return Err((ErrorCode::Retry, "configuration entry".to_string())),
            EntryKind::Normal => {}
        }
        let command = match LogCommand::decode(entry.payload.clone()) {
            Ok(command) => command,
            Err(error) => {
                tracing::warn!(
                    index = entry.index.0,
                    error = &error as &dyn std::error::Error,
                    "entry payload is not a command"
                );
                let reason = format!("entry {} is not a command: {error}", entry.index);
                return Err((ErrorCode::BadRequest, reason));
            }
        };
        match self.sessions.check(command.id) {
            Check::New => {}
            Check::Duplicate(outcome) => {
                self.duplicates.insert(entry.index);
                return Ok(outcome);
            }
            Check::Stale => {
                self.duplicates.insert(entry.index);
                let reason = "request is older than its session's last request".to_string();
                return Err((ErrorCode::SessionExpired, reason));
            }
        }
        let outcome = match command.kind {
            CommandKind::Append => Outcome::Appended { index: entry.index },
            CommandKind::Command => Outcome::Applied {
                index: entry.index,
                output: Bytes::from(machine.apply(entry.index, &command.data)),
            },
            CommandKind::Query => Outcome::Applied {
                index: entry.index,
                output: Bytes::from(machine.query(&command.data)),
            },
        };
        self.sessions
            .record(command.id, entry.index, outcome.clone());
        Ok(outcome)
    }

    /// What a reader sees of an applied entry.
    fn read_entry(&self, entry: Entry) -> ReadEntry {
        let read = |kind, data| ReadEntry {
            index: entry.index,
            term: entry.term,
            kind,
            data,
        };
        if entry.kind != EntryKind::Normal {
            // No-ops and configuration entries carry no client data; they read as no-ops.
            return read(ReadEntryKind::Noop, Bytes::new());
        }
        match LogCommand::decode(entry.payload.clone()) {
            Err(_) => read(ReadEntryKind::Command, entry.payload.clone()),
            Ok(command) if self.duplicates.contains(&entry.index) => {
                read(ReadEntryKind::Duplicate, command.data)
            }
            Ok(command) => match command.kind {
                CommandKind::Append => read(ReadEntryKind::Append, command.data),
                CommandKind::Command | CommandKind::Query => {
                    read(ReadEntryKind::Command, command.data)
                }
            },
        }
    }

    /// Answers a query from the state as applied now; the index is the applied index.
    fn query(&self, request: &QueryRequest) {
        let (applied, output) = {
            let machine = self.machine.lock();
            let applied = LogIndex(self.applied.load(Ordering::Acquire));
            (applied, Bytes::from(machine.query(&request.payload)))
        };
        let body = ResponseBody::Applied {
            index: applied,
            output,
        };
        let response = Response {
            seq: request.seq,
            body,
        };
        self.replier.reply(request.connection, response.encode());
    }

    /// Serves a read from the log files, bounded by the applied index.
    fn read(&self, request: &ReadRequest) {
        let applied = self.applied.load(Ordering::Acquire);
        let from = request.from.0.max(1);
        if from < self.marks_from.0 {
            // The entry may still be in the log files, but whether it was a retry is forgotten:
            // answered as compacted, like an entry the files no longer hold.
            let body = compacted_body(self.marks_from);
            let response = Response {
                seq: request.seq,
                body,
            };
            self.replier.reply(request.connection, response.encode());
            return;
        }
        let count_max = u64::from(request.max_count.clamp(1, READ_ENTRY_COUNT_MAX));
        let to = applied.min(from.saturating_add(count_max - 1));
        let read = if applied < from {
            Ok(Vec::new())
        } else {
            self.log.read(LogIndex(from), LogIndex(to), READ_BYTES_MAX)
        };
        let body = match read {
            Ok(found) => {
                let mut bytes = 0u64;
                let mut entries = Vec::with_capacity(found.len());
                for entry in found {
                    bytes += entry.payload.len() as u64;
                    if !entries.is_empty() && READ_BYTES_MAX < bytes {
                        break;
                    }
                    entries.push(self.read_entry(entry));
                }
                ResponseBody::Entries {
                    entries,
                    commit_index: LogIndex(applied),
                }
            }
            Err(Error::Log(alpo_log::Error::Compacted { first_retained, .. })) => {
                compacted_body(self.marks_from.max(LogIndex(first_retained)))
            }
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "reading committed entries failed"
                );
                let reason = format!("reading the log failed: {error}");
                error_body(ErrorCode::Unavailable, &reason)
            }
        };
        let response = Response {
            seq: request.seq,
            body,
        };
        self.replier.reply(request.connection, response.encode());
    }

    fn fail_all_pending(&mut self, reason: &str) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            self.answer_error(pending.connection, pending.seq, ErrorCode::Retry, reason);
        }
    }

    fn answer_error(&self, connection: ConnectionId, seq: u64, code: ErrorCode, reason: &str) {
        let body = error_body(code, reason);
        self.replier
            .reply(connection, Response { seq, body }.encode());
    }
}

fn response_body(outcome: &Outcome) -> ResponseBody {
    match outcome {
        Outcome::Appended { index } => ResponseBody::Appended { index: *index },
        Outcome::Applied { index, output } => ResponseBody::Applied {
            index: *index,
            output: output.clone(),
        },
    }
}

/// The lowest index whose duplicate mark a state as of `last` keeps: `last + 1 - retain`
/// (rule S4's compaction bound), at least 1. An image restored from another node is assumed
/// taken with the same `retain_entries` (the cluster's configuration).
fn marks_bound(last: LogIndex, retain_entries: u64) -> LogIndex {
    LogIndex((last.0 + 1).saturating_sub(retain_entries).max(1))
}

/// The answer to a read below `first_readable`.
fn compacted_body(first_readable: LogIndex) -> ResponseBody {
    error_body(
        ErrorCode::Compacted,
        &format!(
            "entries below index {first_readable} were compacted into a snapshot; \
             the first index still readable is {first_readable}"
        ),
    )
}

fn error_body(code: ErrorCode, reason: &str) -> ResponseBody {
    ResponseBody::Error {
        code,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crossbeam_channel::Receiver;
    use parking_lot::Mutex;

    use super::*;
    use crate::client_protocol::RequestId;
    use crate::kv::{KvOp, KvResult, KvStateMachine};
    use crate::storage::memory::MemoryLog;

    struct Replies(Mutex<Vec<(ConnectionId, Response)>>);

    impl Replier for Replies {
        fn reply(&self, connection: ConnectionId, body: Bytes) {
            self.0
                .lock()
                .push((connection, Response::decode(body).unwrap()));
        }
    }

    /// An applier over an in-memory log (which `run` fills with the entries it applies) and
    /// the queue its frozen states go to.
    fn applier() -> (Applier, Arc<Replies>, Harness) {
        let replies = Arc::new(Replies(Mutex::new(Vec::new())));
        let log = MemoryLog::default();
        let (snapshots, frozen) = crossbeam_channel::bounded(16);
        let applier = Applier::new(ApplyStart {
            machine: Box::new(KvStateMachine::new()),
            replier: replies.clone(),
            log: Box::new(log.clone()),
            restored: None,
            snapshots,
            retain_entries: 2,
            metrics: None,
        });
        (applier, replies, Harness { log, frozen })
    }

    struct Harness {
        log: MemoryLog,
        frozen: Receiver<SnapshotJob>,
    }

    fn entry(index: u64, term: u64, seq: u64, kind: CommandKind, data: Bytes) -> Entry {
        let command = LogCommand {
            id: RequestId { client: 7, seq },
            kind,
            data,
        };
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload: command.encode(),
        }
    }

    fn pending(index: u64, term: u64, seq: u64) -> ApplyMsg {
        ApplyMsg::Pending(PendingRequest {
            index: LogIndex(index),
            term: Term(term),
            connection: ConnectionId(1),
            seq,
            proposed_at: None,
        })
    }

    /// Runs `messages` through the applier, writing the entries it is given to the log first
    /// (a node's entries are durable before they are applied).
    fn run(applier: &mut Applier, harness: &Harness, messages: Vec<ApplyMsg>) {
        let (sender, receiver): (_, Receiver<ApplyMsg>) = crossbeam_channel::bounded(64);
        for message in messages {
            if let ApplyMsg::Entries(entries) = &message {
                harness.log.entries.lock().extend(entries.iter().cloned());
            }
            sender.send(message).unwrap();
        }
        drop(sender);
        applier.run(&receiver);
    }

    #[test]
    fn a_retry_applies_once_and_gets_the_first_answer() {
        let (mut applier, replies, harness) = applier();
        let put = KvOp::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        };
        let first = entry(1, 1, 1, CommandKind::Command, put.encode());
        let retry = entry(2, 1, 1, CommandKind::Command, put.encode());
        let messages = vec![
            pending(1, 1, 1),
            pending(2, 1, 1),
            ApplyMsg::Entries(vec![first, retry]),
        ];
        run(&mut applier, &harness, messages);
        let replies = replies.0.lock();
        assert_eq!(replies.len(), 2);
        for (_, response) in replies.iter() {
            let ResponseBody::Applied { index, output } = &response.body else {
                panic!("{response:?}")
            };
            assert_eq!(
                *index,
                LogIndex(1),
                "the retry is answered with the first index"
            );
            assert_eq!(KvResult::decode(output.clone()).unwrap(), KvResult::Written);
        }
        drop(replies);
        let entries = harness.log.entries.lock().clone();
        let kinds: Vec<_> = entries
            .into_iter()
            .map(|e| applier.read_entry(e).kind)
            .collect();
        assert_eq!(
            kinds,
            vec![ReadEntryKind::Command, ReadEntryKind::Duplicate]
        );
    }

    #[test]
    fn a_proposal_overwritten_by_another_term_is_told_to_retry() {
        let (mut applier, replies, harness) = applier();
        let value = Bytes::from_static(b"x");
        let other = entry(1, 2, 9, CommandKind::Append, value);
        run(
            &mut applier,
            &harness,
            vec![pending(1, 1, 5), ApplyMsg::Entries(vec![other])],
        );
        let replies = replies.0.lock();
        let (_, response) = &replies[0];
        assert_eq!(response.seq, 5);
        assert!(matches!(
            response.body,
            ResponseBody::Error {
                code: ErrorCode::Retry,
                ..
            }
        ));
    }

    #[test]
    fn leadership_loss_answers_every_waiting_client() {
        let (mut applier, replies, harness) = applier();
        run(
            &mut applier,
            &harness,
            vec![pending(1, 1, 1), pending(2, 1, 2), ApplyMsg::LeadershipLost],
        );
        assert_eq!(replies.0.lock().len(), 2);
        assert!(applier.pending.is_empty());
    }

    #[test]
    fn reads_return_applied_entries_only_within_the_limit() {
        let (mut applier, replies, harness) = applier();
        let noop = Entry {
            index: LogIndex(1),
            term: Term(1),
            kind: EntryKind::Noop,
            payload: Bytes::new(),
        };
        let appends =
            (2..=4).map(|i| entry(i, 1, i, CommandKind::Append, Bytes::from(format!("v{i}"))));
        let mut entries = vec![noop];
        entries.extend(appends);
        let read = |from, max_count| {
            ApplyMsg::Read(ReadRequest {
                connection: ConnectionId(3),
                seq: 1,
                from: LogIndex(from),
                max_count,
            })
        };
        run(
            &mut applier,
            &harness,
            vec![ApplyMsg::Entries(entries), read(2, 2), read(9, 10)],
        );
        let replies = replies.0.lock();
        let ResponseBody::Entries {
            entries,
            commit_index,
        } = &replies[0].1.body
        else {
            panic!("{:?}", replies[0])
        };
        assert_eq!(*commit_index, LogIndex(4));
        let data: Vec<&[u8]> = entries.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b"v2"[..], &b"v3"[..]]);
        assert!(
            matches!(&replies[1].1.body, ResponseBody::Entries { entries, .. }
                if entries.is_empty())
        );
    }

    fn put(index: u64, seq: u64, key: &'static str) -> Entry {
        let put = KvOp::Put {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(b"v"),
        };
        entry(index, 1, seq, CommandKind::Command, put.encode())
    }

    #[test]
    fn a_retry_after_a_restore_from_a_snapshot_still_applies_once() {
        let (mut original, _replies, harness) = applier();
        let first = put(1, 1, "a");
        let retry = put(2, 1, "a");
        let at = LogPosition {
            index: LogIndex(2),
            term: Term(1),
        };
        let messages = vec![
            ApplyMsg::Entries(vec![first, retry]),
            ApplyMsg::TakeSnapshot {
                at,
                configuration: Configuration::default(),
            },
            ApplyMsg::Entries(vec![put(3, 2, "b")]),
        ];
        run(&mut original, &harness, messages);
        let Ok(SnapshotJob::Take(frozen)) = harness.frozen.try_recv() else {
            panic!("no frozen state");
        };
        assert_eq!(frozen.at, at);
        let mut image = Vec::new();
        frozen.image.write_to(&mut image).unwrap();
        // A new node restores the image: the session table and the duplicate mark come back,
        // the write after the snapshot does not.
        let (mut restored, replies, harness) = applier();
        let (sessions, duplicates) =
            node_image::restore(&mut image.as_slice(), restored.machine.lock().as_mut()).unwrap();
        restored.sessions = sessions;
        restored.duplicates = duplicates;
        restored.applied.store(2, Ordering::Release);
        harness
            .log
            .entries
            .lock()
            .extend([put(1, 1, "a"), put(2, 1, "a")]);
        let get_b = KvOp::Get {
            key: Bytes::from_static(b"b"),
        };
        let answer = restored.machine.lock().query(&get_b.encode());
        assert_eq!(
            KvResult::decode(Bytes::from(answer)).unwrap(),
            KvResult::Value(None)
        );
        let read = |from| {
            ApplyMsg::Read(ReadRequest {
                connection: ConnectionId(3),
                seq: 9,
                from: LogIndex(from),
                max_count: 10,
            })
        };
        let messages = vec![
            pending(3, 1, 1),
            ApplyMsg::Entries(vec![put(3, 1, "a")]),
            read(2),
        ];
        run(&mut restored, &harness, messages);
        {
            let replies = replies.0.lock();
            let ResponseBody::Applied { index, .. } = &replies[0].1.body else {
                panic!("{:?}", replies[0]);
            };
            assert_eq!(index, &LogIndex(1), "answered with the first application");
            let ResponseBody::Entries { entries, .. } = &replies[1].1.body else {
                panic!("{:?}", replies[1]);
            };
            let kinds: Vec<_> = entries.iter().map(|e| e.kind).collect();
            assert_eq!(
                kinds,
                vec![ReadEntryKind::Duplicate, ReadEntryKind::Duplicate]
            );
        }
    }

    /// A snapshot drops the marks below `L + 1 - retain` when it is frozen, but the log keeps
    /// those entries until the snapshot is durable and compacted (or, after a restart, as long
    /// as the files hold them): a read in between must not call a retry an append.
    #[test]
    fn a_retry_whose_mark_a_snapshot_dropped_is_never_read_as_applied() {
        let (mut applier, replies, harness) = applier();
        let value = Bytes::from_static(b"c2-2411");
        let first = entry(1, 1, 1, CommandKind::Append, value.clone());
        let retry = entry(2, 1, 1, CommandKind::Append, value);
        let later =
            (3..=5).map(|i| entry(i, 1, i, CommandKind::Append, Bytes::from(format!("v{i}"))));
        let mut entries = vec![first, retry];
        entries.extend(later);
        let at = LogPosition {
            index: LogIndex(5),
            term: Term(1),
        };
        let read = ApplyMsg::Read(ReadRequest {
            connection: ConnectionId(3),
            seq: 9,
            from: LogIndex(1),
            max_count: 10,
        });
        // Frozen at 5 with retain 2: marks below 4 go; the log is not compacted yet.
        let messages = vec![
            ApplyMsg::Entries(entries),
            ApplyMsg::TakeSnapshot {
                at,
                configuration: Configuration::default(),
            },
            read,
        ];
        run(&mut applier, &harness, messages);
        let replies = replies.0.lock();
        let ResponseBody::Error { code, reason } = &replies[0].1.body else {
            panic!(
                "index 2 was read without its duplicate mark: {:?}",
                replies[0]
            );
        };
        assert_eq!(code, &ErrorCode::Compacted);
        assert!(
            reason.contains("the first index still readable is 4"),
            "{reason}"
        );
    }

    /// After a restart from a snapshot at `L` the log files may start below `L + 1 - retain`
    /// (compaction had not happened, S8), where the image holds no marks.
    #[test]
    fn after_a_restore_reads_start_where_the_images_marks_start() {
        let (_, replies, harness) = applier();
        let (snapshots, _frozen) = crossbeam_channel::bounded(16);
        let mut restored = Applier::new(ApplyStart {
            machine: Box::new(KvStateMachine::new()),
            replier: replies.clone(),
            log: Box::new(harness.log.clone()),
            restored: Some(RestoredState {
                last: LogIndex(5),
                ..RestoredState::default()
            }),
            snapshots,
            retain_entries: 2,
            metrics: None,
        });
        harness
            .log
            .entries
            .lock()
            .extend((1..=5).map(|i| put(i, 1, "a")));
        let read = |from| {
            ApplyMsg::Read(ReadRequest {
                connection: ConnectionId(3),
                seq: 9,
                from: LogIndex(from),
                max_count: 10,
            })
        };
        run(&mut restored, &harness, vec![read(1), read(4)]);
        let replies = replies.0.lock();
        assert!(
            matches!(&replies[0].1.body, ResponseBody::Error { code: ErrorCode::Compacted, reason }
                if reason.contains("the first index still readable is 4")),
            "{:?}",
            replies[0]
        );
        let ResponseBody::Entries { entries, .. } = &replies[1].1.body else {
            panic!("{:?}", replies[1]);
        };
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn a_read_below_the_first_retained_index_names_the_first_readable() {
        let (mut applier, replies, harness) = applier();
        let entries = (1..=4).map(|i| put(i, i, "k")).collect();
        run(&mut applier, &harness, vec![ApplyMsg::Entries(entries)]);
        // The log was compacted below 3 (by the storage thread, after a snapshot).
        harness.log.entries.lock().retain(|e| e.index.0 >= 3);
        let read = ApplyMsg::Read(ReadRequest {
            connection: ConnectionId(3),
            seq: 9,
            from: LogIndex(1),
            max_count: 10,
        });
        run(&mut applier, &harness, vec![read]);
        let replies = replies.0.lock();
        let ResponseBody::Error { code, reason } = &replies[0].1.body else {
            panic!("{:?}", replies[0]);
        };
        assert_eq!(code, &ErrorCode::Compacted);
        assert!(
            reason.contains("the first index still readable is 3"),
            "{reason}"
        );
    }
}
