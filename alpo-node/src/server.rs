//! The event loop: the one thread that owns the protocol core. It takes inputs (peer messages,
//! client requests, storage durability reports, time), feeds them to the core in batches, and
//! performs the core's outputs in order.
//!
//! Threads of a running node and what they own:
//! - event loop (this file): the `alpo_core::Node`, and the reading of every peer and client
//!   connection (alpo-net's `Inbox`, waited on here); never waits on disk or network, except the
//!   rare synchronous hard-state write the ordering contract demands (term or vote changed),
//!   and backpressure when the storage or apply queue is full (a disk or state machine that
//!   cannot keep up); reads never wait for room, they are answered `Retry` instead;
//! - storage (`storage.rs`): the log files; group commit, reports "durable up to N";
//! - apply (`apply.rs`): the state machine, the session table, waiting clients, reads (from
//!   the log files), freezing the state for a snapshot and restoring one;
//! - snapshot (`snapshot.rs`): the snapshot files: writing one, chunks for a transfer,
//!   receiving and installing one; reports to this loop through the inbox waker;
//! - alpo-net's threads: outbound peer connections (one writer each), accepting and handshakes.
//!   Replies to clients are written by the thread that answers (apply or event loop).
//!
//! Ordering (alpo-core's `output` contract): outputs are performed in list order;
//! `SaveHardState` is durable before any later output; log writes go to the storage thread in
//! order and may complete later (the leader's own write runs in parallel with replication, rule
//! R10); `Send` goes to the transport; `Apply` to the apply thread. A client's proposal is
//! registered with the apply thread before the outputs of its batch are performed, so its answer
//! can never be missed. Snapshots: `TakeSnapshot` goes to the apply thread in order with the
//! `Apply`s (it freezes the state right after the entry at `at`); `CompactLog` to the storage
//! thread in order with the log writes, followed by a removal of older snapshot files; a
//! `TruncateLog` at or below the newest snapshot's `L` (rule S7 step 1, after an install or at
//! a start) becomes a reset of the whole log continuing at `L + 1`; `ReadSnapshot` and
//! `WriteSnapshotChunk` go to the snapshot thread; `RestoreStateMachine` to the apply thread,
//! in order with the `Apply`s. Index relationships: `L ≤ applied ≤ commit ≤ durable ≤ last`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use alpo_core::{
    Configuration, HardState, LogIndex, LogPosition, LogReadId, LogReadResult, Message, Node,
    NodeId, Output, Persisted, ProposeError, ReadError, ReadId, Role, Term,
};

use crate::apply::{self, ApplyHandle, ApplyMsg, ApplyStart, EntrySource, PendingRequest};
use crate::apply::{QueryRequest, ReadRequest};
use crate::client_protocol::{
    Consistency, ErrorCode, LeaderHint, NodeStatus, Op, Request, RequestId, Response, ResponseBody,
    unsupported_version_response,
};
use crate::command::{CommandKind, LogCommand};
use crate::config::NodeConfig;
use crate::error::Error;
use crate::events::Watch;
use crate::limits::STORAGE_QUEUE_OP_COUNT_MAX;
use crate::limits::{SNAPSHOT_QUEUE_COUNT_MAX, SNAPSHOT_WAITER_COUNT_MAX};
use crate::metrics::{LoopProbe, Metrics};
use crate::node_image::RestoredState;
use crate::reads::{self, ClientReads, ReadWhat, WaitingRead};
use crate::recorder::Recorder;
use crate::service::{ConnectionId, Incoming, IncomingRequest, Inputs, Replier, Wake};
use crate::snapshot::{self, SnapshotHandle, SnapshotJob, SnapshotReport};
use crate::state_machine::StateMachine;
use crate::storage::{self, LogStore, StorageHandle, StorageOp};
use crate::wire::{DecodeError, DecodeProblem};

/// Makes term and vote durable (file written, synced, renamed, directory synced), and the term
/// ceiling (rule F8) in a file of its own, the same way.
pub(crate) trait HardStateStore: Send + 'static {
    fn save(&mut self, state: HardState) -> Result<(), Error>;
    fn save_term_ceiling(&mut self, ceiling: Term) -> Result<(), Error>;
}

/// Sends a message to a peer without blocking (the transport queues or drops it).
pub(crate) trait PeerSender: Send + 'static {
    fn send(&self, message: Message);
    /// Issue 12: links to exactly these peers from now on (`member_ops::peer_set`).
    fn set_peers(&self, peers: &[(NodeId, std::net::SocketAddr)]) -> Result<(), Error>;
}

/// What the event loop publishes for `Server::status` and the shutdown path.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) status: Mutex<NodeStatus>,
    /// The fatal error that ended the event loop, if one did (`Server::failure`).
    pub(crate) failure: Mutex<Option<Arc<Error>>>,
    pub(crate) storage: Arc<Mutex<storage::StorageState>>,
    /// Set by `Running::stop` (which then wakes the loop); the loop ends at its next batch.
    pub(crate) stop_requested: AtomicBool,
}

/// Everything the event loop talks to.
struct EventLoop {
    pub(crate) node: Node,
    pub(crate) origin: std::time::Instant,
    pub(crate) config: NodeConfig,
    pub(crate) hard_state: Box<dyn HardStateStore>,
    pub(crate) peers: Box<dyn PeerSender>,
    pub(crate) inputs: Box<dyn Inputs>,
    pub(crate) replier: Arc<dyn Replier>,
    pub(crate) storage: StorageHandle,
    pub(crate) apply: ApplyHandle,
    /// `None` when the node runs without snapshot files (the event loop's own tests).
    pub(crate) snapshots: Option<SnapshotHandle>,
    /// The newest snapshot's last position, `(0, 0)` without one.
    pub(crate) newest_snapshot: LogPosition,
    /// Where the snapshot installed last lies, for its `RestoreStateMachine`.
    pub(crate) installed: Option<(LogPosition, PathBuf)>,
    /// Clients waiting for a snapshot they asked for (`Op::Snapshot`) to be durable: the
    /// connection, the request's sequence number and the index it covers.
    pub(crate) snapshot_waiters: Vec<(ConnectionId, u64, LogIndex)>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) reported_durable: Option<LogPosition>,
    pub(crate) was_leader: bool,
    /// The metrics' event-loop side, when metrics are on (`metrics.rs`).
    pub(crate) probe: Option<LoopProbe>,
    /// The last batch's view, for the log lines of what changed (`events.rs`).
    pub(crate) watch: Watch,
    /// The flight recorder, when on (`recorder.rs`): the core records, this streams it.
    pub(crate) recorder: Option<Recorder>,
    /// Reads waiting for the core's read index (rules Q1–Q3).
    pub(crate) reads: ClientReads,
    /// Rule S9: where the core's `ReadLog`s are answered (a view of the log's durable records).
    pub(crate) log_reader: Box<dyn EntrySource>,
    /// `ReadLog`s performed and not yet answered; answered at the next turn of the loop.
    pub(crate) log_reads: Vec<LogRead>,
    /// Issue 12: clients waiting for a membership change or a leadership transfer.
    pub(crate) members: crate::member_ops::MemberOps,
    /// Issue 12: when a stop was asked while leading, the transfer's deadline (rule T5 ends it
    /// sooner); the loop ends once another node leads or at this deadline.
    pub(crate) leaving: Option<std::time::Instant>,
}

/// A `ReadLog` of the core, waiting for its turn (rule S9).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LogRead {
    id: LogReadId,
    from: LogIndex,
    to: LogIndex,
    max_bytes: u64,
}

impl LogRead {
    /// The read an `Output::ReadLog` asks for (`None` for any other output).
    fn of(output: Output) -> Option<LogRead> {
        match output {
            Output::ReadLog {
                id,
                from,
                to,
                max_bytes,
            } => Some(LogRead {
                id,
                from,
                to,
                max_bytes,
            }),
            _ => None,
        }
    }
}

/// How long the loop waits when the core names no deadline (it normally always has one).
const IDLE_WAIT: Duration = Duration::from_millis(100);

impl EventLoop {
    /// Runs until asked to stop or until a fatal error; then lets the other threads drain. A
    /// fatal error is published for `Server::failure` and returned as [`Error::Failed`].
    pub(crate) fn run(mut self) -> Result<(), Error> {
        self.book_changed(); // The snapshot thread's copy of the book at start (issue 12).
        let result = self.run_inner();
        // The last batch's inputs, and the whole trace, reach the file before the loop ends.
        if let Some(mut recorder) = self.recorder.take() {
            recorder.record(self.node.take_trace());
            recorder.finish();
        }
        let result = result.map_err(|error| {
            let error = Arc::new(error);
            let logged: &(dyn std::error::Error + 'static) = error.as_ref();
            tracing::error!(node = self.config.id, error = logged, "node stopping");
            *self.shared.failure.lock() = Some(Arc::clone(&error));
            Error::Failed(error)
        });
        // Reads still waiting for a read index are told to go elsewhere.
        for read in self.reads.drain() {
            let body = error_body(ErrorCode::Unavailable, "node stopping".into());
            self.reply(read.connection, read.seq, body);
        }
        let EventLoop {
            storage,
            apply,
            snapshots,
            ..
        } = self;
        drop(storage.ops);
        drop(apply.sender);
        let _ = storage.thread.join();
        let _ = apply.thread.join();
        // The snapshot thread's queue closes once the apply thread (which also feeds it) ended.
        if let Some(snapshots) = snapshots {
            drop(snapshots.jobs);
            let _ = snapshots.thread.join();
        }
        result
    }

    /// One batch per turn: wait for input (or the core's next deadline), feed everything that
    /// arrived to the core, take the storage thread's report, fire a due timer, and perform the
    /// outputs of the whole batch.
    fn run_inner(&mut self) -> Result<(), Error> {
        self.follow_configuration(self.node.configuration())?;
        self.perform_outputs()?;
        let mut arrived = Vec::new();
        loop {
            let timeout = match self.node.next_timeout() {
                // Reads waiting: take what arrived, then answer them at once.
                _ if !self.log_reads.is_empty() => Duration::ZERO,
                Some(deadline) => deadline.saturating_duration_since(self.now()),
                None => IDLE_WAIT,
            };
            arrived.clear();
            self.inputs.wait(timeout, &mut arrived)?;
            if self.shared.stop_requested.load(Ordering::Acquire) && self.may_stop() {
                return Ok(());
            }
            let input_count = arrived.len();
            for incoming in arrived.drain(..) {
                if let (Some(probe), Incoming::Peer(message)) = (&mut self.probe, &incoming) {
                    probe.on_message(message);
                }
                match incoming {
                    Incoming::Peer(message) => self.node.on_message(self.now(), message),
                    Incoming::Client(request) => self.on_client(request)?,
                }
            }
            self.on_storage_report()?;
            self.on_snapshot_reports()?;
            let now = self.now();
            if self
                .node
                .next_timeout()
                .is_some_and(|deadline| deadline <= now)
            {
                self.node.tick(now);
            }
            self.answer_log_reads()?;
            self.perform_outputs()?;
            self.after_batch(input_count)?;
        }
    }

    /// Rule S9: answers the `ReadLog`s of the last turn from the log's durable records, in the
    /// order they were asked (reads asked by these answers wait for the next turn, so other
    /// inputs go between). The core only reads committed entries, which are durable (contract
    /// (a)); an empty answer or a read error is a fault that stops the node, naming the index.
    fn answer_log_reads(&mut self) -> Result<(), Error> {
        for read in std::mem::take(&mut self.log_reads) {
            let result = match self.log_reader.read(read.from, read.to, read.max_bytes) {
                Ok(entries) if entries.first().is_some_and(|e| e.index == read.from) => {
                    LogReadResult::Entries(entries)
                }
                Err(Error::Log(alpo_log::Error::Compacted { .. })) => LogReadResult::Compacted,
                Ok(_) => LogReadResult::Fault(read.from),
                Err(error) => {
                    tracing::error!(
                        node = self.config.id,
                        index = read.from.0,
                        error = &error as &dyn std::error::Error,
                        "reading the log back failed"
                    );
                    LogReadResult::Fault(read.from)
                }
            };
            if let Err(fault) = self.node.on_log_read(self.now(), read.id, result) {
                return Err(Error::Stopped {
                    reason: fault.to_string(),
                });
            }
        }
        Ok(())
    }

    fn now(&self) -> alpo_core::Instant {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        alpo_core::Instant::from_nanos(nanos)
    }

    fn on_storage_report(&mut self) -> Result<(), Error> {
        let (durable, fatal) = {
            let mut state = self.storage.state.lock();
            (state.durable, state.fatal.take())
        };
        if let Some(error) = fatal {
            return Err(Error::Log(error));
        }
        if let Some(durable) = durable.filter(|d| Some(*d) != self.reported_durable) {
            self.reported_durable = Some(durable);
            self.node.on_persisted(self.now(), durable);
        }
        Ok(())
    }

    /// Feeds the snapshot thread's reports to the core, in the order they happened.
    fn on_snapshot_reports(&mut self) -> Result<(), Error> {
        let Some(snapshots) = &self.snapshots else {
            return Ok(());
        };
        let (reports, fatal) = {
            let mut state = snapshots.state.lock();
            (std::mem::take(&mut state.reports), state.fatal.take())
        };
        if let Some(error) = fatal {
            return Err(Error::Log(error));
        }
        for report in reports {
            let now = self.now();
            match report {
                SnapshotReport::Durable(meta) => {
                    if let Some(probe) = &self.probe {
                        probe.metrics.snapshot_taken();
                    }
                    self.newest_snapshot = self.newest_snapshot.max(meta.last);
                    self.node.on_snapshot_durable(now, meta);
                    self.answer_snapshot_waiters();
                }
                SnapshotReport::Read {
                    to,
                    snapshot,
                    offset,
                    result,
                } => self
                    .node
                    .on_snapshot_read(now, to, snapshot, offset, result),
                SnapshotReport::Installed { meta, path, book } => {
                    if let Some(book) = book
                        && self.members.book.merge(&book)
                    {
                        self.book_changed();
                        self.link_members(&self.members.linked())?;
                    }
                    let (node, index) = (self.config.id, meta.last.index.0);
                    tracing::info!(node, index, "snapshot from the leader installed (S7)");
                    if let Some(probe) = &self.probe {
                        probe.metrics.snapshot_installed();
                    }
                    self.newest_snapshot = self.newest_snapshot.max(meta.last);
                    self.installed = Some((meta.last, path));
                    self.node.on_snapshot_installed(now, meta);
                    self.answer_snapshot_waiters();
                }
                SnapshotReport::InstallFailed(meta) => {
                    self.node.on_snapshot_install_failed(now, meta);
                }
            }
        }
        Ok(())
    }

    /// Answers the clients whose snapshot the newest durable one covers.
    fn answer_snapshot_waiters(&mut self) {
        let newest = self.newest_snapshot.index;
        let waiters = std::mem::take(&mut self.snapshot_waiters);
        for (connection, seq, index) in waiters {
            if index <= newest {
                self.reply(connection, seq, ResponseBody::Snapshot { index: newest });
            } else {
                self.snapshot_waiters.push((connection, seq, index));
            }
        }
    }

    /// `Op::Snapshot`: asks the core for a snapshot now; answered once one is durable.
    fn request_snapshot(&mut self, connection: ConnectionId, seq: u64) {
        if self.snapshots.is_none() {
            let reason = "this node runs without snapshot files".to_string();
            self.reply(connection, seq, error_body(ErrorCode::Unavailable, reason));
            return;
        }
        match self.node.request_snapshot(self.now()) {
            // The newest durable snapshot covers every applied entry already.
            None => {
                let index = self.newest_snapshot.index;
                self.reply(connection, seq, ResponseBody::Snapshot { index });
            }
            Some(_) if SNAPSHOT_WAITER_COUNT_MAX <= self.snapshot_waiters.len() => {
                let reason = "too many snapshot requests waiting; retry".to_string();
                self.reply(connection, seq, error_body(ErrorCode::Retry, reason));
            }
            Some(at) => self.snapshot_waiters.push((connection, seq, at.index)),
        }
    }

    fn on_client(&mut self, incoming: IncomingRequest) -> Result<(), Error> {
        let connection = incoming.connection;
        let request = match Request::decode(incoming.body) {
            Ok(request) => request,
            Err(DecodeError {
                offset: 0,
                problem: DecodeProblem::UnsupportedVersion(version),
                ..
            }) => {
                // Answered in the layout every version shares, so the client can read it.
                let (node, connection_id) = (self.config.id, connection.0);
                let message = "client speaks another protocol version";
                tracing::warn!(node, connection = connection_id, version, message);
                self.replier
                    .reply(connection, unsupported_version_response(version));
                return Ok(());
            }
            Err(error) => {
                let (node, connection_id) = (self.config.id, connection.0);
                let message = "malformed client request";
                tracing::warn!(
                    node,
                    connection = connection_id,
                    error = &error as &dyn std::error::Error,
                    message
                );
                let body = error_body(ErrorCode::BadRequest, format!("malformed request: {error}"));
                self.reply(connection, 0, body);
                return Ok(());
            }
        };
        match request.op {
            Op::Status => {
                let body = ResponseBody::Status(self.status());
                self.reply(connection, request.id.seq, body);
                Ok(())
            }
            Op::Read {
                from,
                max_count,
                consistency,
            } => {
                let what = ReadWhat::Entries { from, max_count };
                self.start_read(connection, request.id.seq, what, consistency)
            }
            Op::Query {
                payload,
                consistency,
            } => {
                let what = ReadWhat::Query(payload);
                self.start_read(connection, request.id.seq, what, consistency)
            }
            Op::Snapshot => {
                self.request_snapshot(connection, request.id.seq);
                Ok(())
            }
            op @ (Op::Members | Op::ChangeMembers { .. } | Op::TransferLeader { .. }) => {
                self.on_member_op(connection, request.id.seq, op);
                Ok(())
            }
            op => self.propose(connection, request.id, op),
        }
    }

    /// Issue 12: the membership operations (`member_ops.rs`); changes and transfers are
    /// answered at once only if refused.
    fn on_member_op(&mut self, connection: ConnectionId, seq: u64, op: Op) {
        let now = self.now();
        let book = self.members.book.clone();
        let hint = |id| leader_hint_of(&book, id);
        let answer = match op {
            Op::ChangeMembers { change } => {
                let asked = (connection, seq);
                self.members
                    .ask_change(&mut self.node, now, asked, change, hint)
            }
            Op::TransferLeader { target } => {
                let asked = (connection, seq);
                self.members
                    .ask_transfer(&mut self.node, now, asked, target, hint)
            }
            _ => Some(ResponseBody::Members(crate::member_ops::members_of(
                &self.node,
                &self.members.book,
            ))),
        };
        if let Some(body) = answer {
            self.reply(connection, seq, body);
        }
        if self.members.book != book {
            self.book_changed();
        }
    }

    /// A read without a log write: stale at once, otherwise once the core's read index is
    /// ready (`read_ready`).
    fn start_read(
        &mut self,
        connection: ConnectionId,
        seq: u64,
        what: ReadWhat,
        consistency: Consistency,
    ) -> Result<(), Error> {
        let read = WaitingRead {
            connection,
            seq,
            what,
        };
        let Some(mode) = reads::read_mode(consistency) else {
            return self.serve_read(read);
        };
        match self.reads.start(read) {
            Some(id) => self.node.read_index(self.now(), id, mode),
            None => {
                let body = error_body(ErrorCode::Retry, "too many reads waiting; retry".into());
                self.reply(connection, seq, body);
            }
        }
        Ok(())
    }

    /// Hands a read whose index is applied (or a stale one) to the apply thread; a query is
    /// queued and goes with the turn's others (`send_queries`).
    fn serve_read(&mut self, read: WaitingRead) -> Result<(), Error> {
        let (connection, seq) = (read.connection, read.seq);
        match read.what {
            ReadWhat::Entries { from, max_count } => self.send_read(ReadRequest {
                connection,
                seq,
                from,
                max_count,
            }),
            ReadWhat::Query(payload) => {
                self.reads.queue_query(QueryRequest {
                    connection,
                    seq,
                    payload,
                });
                Ok(())
            }
        }
    }

    /// The core's answer to a read (`ReadReady`, `ReadFailed`).
    fn read_answered(
        &mut self,
        id: ReadId,
        result: Result<LogIndex, ReadError>,
    ) -> Result<(), Error> {
        let Some(read) = self.reads.finish(id) else {
            return Ok(());
        };
        match result {
            Ok(_) => self.serve_read(read),
            Err(ReadError::NotLeader { leader_hint }) => {
                let leader = leader_hint.map(|id| self.leader_hint(id));
                self.reply(
                    read.connection,
                    read.seq,
                    ResponseBody::NotLeader { leader },
                );
                Ok(())
            }
            Err(error) => {
                let body = error_body(ErrorCode::Retry, error.to_string());
                self.reply(read.connection, read.seq, body);
                Ok(())
            }
        }
    }

    fn leader_hint(&self, id: NodeId) -> LeaderHint {
        leader_hint_of(&self.members.book, id)
    }

    fn propose(&mut self, connection: ConnectionId, id: RequestId, op: Op) -> Result<(), Error> {
        let Some((kind, data)) = command_of(op) else {
            let body = error_body(ErrorCode::BadRequest, "not a proposal".into());
            self.reply(connection, id.seq, body);
            return Ok(());
        };
        let payload = LogCommand { id, kind, data }.encode();
        match self.node.propose(self.now(), payload) {
            Ok(proposal) => {
                let proposed_at = self.probe.as_ref().map(|probe| {
                    probe.on_proposal();
                    std::time::Instant::now()
                });
                let pending = PendingRequest {
                    index: proposal.index,
                    term: proposal.term,
                    connection,
                    seq: id.seq,
                    proposed_at,
                };
                return self.send_apply(ApplyMsg::Pending(pending));
            }
            Err(ProposeError::NotLeader { leader_hint }) => {
                let leader = leader_hint.map(|id| self.leader_hint(id));
                self.reply(connection, id.seq, ResponseBody::NotLeader { leader });
            }
            Err(
                error @ (ProposeError::TooManyPending { .. }
                | ProposeError::TooManyPendingBytes { .. }),
            ) => {
                self.reply(
                    connection,
                    id.seq,
                    error_body(ErrorCode::Retry, error.to_string()),
                );
            }
            Err(error @ ProposeError::EntryTooLarge { .. }) => {
                let (node, connection_id) = (self.config.id, connection.0);
                tracing::warn!(
                    node,
                    connection = connection_id,
                    error = &error as &dyn std::error::Error,
                    "client entry refused"
                );
                self.reply(
                    connection,
                    id.seq,
                    error_body(ErrorCode::TooLarge, error.to_string()),
                );
            }
            // A refusal newer than this code (`ProposeError` is non-exhaustive): nothing entered
            // the log, so the client may try another node.
            Err(error) => {
                let body = error_body(ErrorCode::Unavailable, error.to_string());
                self.reply(connection, id.seq, body);
            }
        }
        Ok(())
    }

    fn perform_outputs(&mut self) -> Result<(), Error> {
        let outputs = self.node.take_outputs();
        self.learn_addresses_of(&outputs)?;
        for output in outputs {
            match output {
                Output::SaveHardState(state) => self.hard_state.save(state)?,
                Output::SaveTermCeiling { ceiling } => {
                    self.hard_state.save_term_ceiling(ceiling)?;
                }
                // Rule S7 step 1: the log does not hold the snapshot's last entry, so all of it
                // goes (including entries below the core's first retained index).
                Output::TruncateLog { from } if from <= self.newest_snapshot.index => {
                    let snapshot = self.newest_snapshot;
                    self.send_storage(StorageOp::Reset { snapshot })?;
                }
                Output::TruncateLog { from } => self.send_storage(StorageOp::Truncate { from })?,
                Output::AppendLog { entries } => self.append_log(entries)?,
                Output::Send(message) => self.send(message),
                Output::ReadReady { id, index } => self.read_answered(id, Ok(index))?,
                Output::ReadFailed { id, error } => self.read_answered(id, Err(error))?,
                Output::Apply { entries } => self.send_apply(ApplyMsg::Entries(entries))?,
                read @ Output::ReadLog { .. } => self.log_reads.extend(LogRead::of(read)),
                Output::CompactLog { below } => {
                    self.send_storage(StorageOp::Compact { below })?;
                    let below = self.newest_snapshot.index;
                    self.send_snapshot_job(SnapshotJob::RemoveOlder { below })?;
                }
                Output::ReadSnapshot {
                    to,
                    snapshot,
                    offset,
                    len,
                } => {
                    self.queue_snapshot_read(SnapshotJob::Read {
                        to,
                        snapshot,
                        offset,
                        len,
                    })?;
                }
                Output::WriteSnapshotChunk {
                    snapshot,
                    offset,
                    data,
                    last,
                } => self.send_snapshot_job(SnapshotJob::Chunk {
                    snapshot,
                    offset,
                    data,
                    last,
                })?,
                Output::RestoreStateMachine { snapshot } => {
                    let Some((_, path)) = self
                        .installed
                        .take()
                        .filter(|(last, _)| *last == snapshot.last)
                    else {
                        let reason = format!(
                            "the core restores snapshot {} that was not installed here",
                            snapshot.last.index
                        );
                        return Err(Error::Stopped { reason });
                    };
                    let last = snapshot.last.index;
                    self.send_apply(ApplyMsg::Restore { last, path })?;
                }
                other => self.perform_other(other)?,
            }
        }
        self.send_queries()
    }

    /// `TakeSnapshot` (to the apply thread, in order with the entries) and the membership
    /// outputs (issue 12, `member_ops.rs`): the transport follows the configuration in force,
    /// and a change's client learns where its entry sits.
    fn perform_other(&mut self, output: Output) -> Result<(), Error> {
        match output {
            Output::TakeSnapshot { at, configuration } => {
                self.send_apply(ApplyMsg::TakeSnapshot { at, configuration })?;
            }
            Output::Membership { configuration } => {
                tracing::info!(%configuration, "configuration in force changed");
                self.follow_configuration(configuration)?;
            }
            Output::ConfigChange { change, result } => {
                tracing::info!(%change, ?result, "membership change");
                let book = self.members.book.clone();
                let hint = |id| leader_hint_of(&book, id);
                if let Some((connection, seq, body)) =
                    self.members.on_config_change(change, result, hint)
                {
                    self.reply(connection, seq, body);
                }
            }
            other => {
                let reason = format!("an output perform_outputs does not route: {other:?}");
                return Err(Error::Stopped { reason });
            }
        }
        Ok(())
    }

    /// Issue 12: the transport links to the members of `configuration` (and of the one before
    /// until the change commits: `MemberOps::on_configuration`).
    fn follow_configuration(&mut self, configuration: Configuration) -> Result<(), Error> {
        let last_index = self.node.last_position().index;
        match self.members.on_configuration(configuration, last_index) {
            Some(members) => self.link_members(&members),
            None => Ok(()),
        }
    }

    /// Issue 12: a `Config` entry's addresses are known before its `Membership` output links.
    fn learn_addresses_of(&mut self, outputs: &[Output]) -> Result<(), Error> {
        for output in outputs {
            if let Output::AppendLog { entries } = output {
                self.learn_addresses(entries)?;
            }
        }
        Ok(())
    }

    /// Issue 12: the address book of each `Config` entry appended (its annex) joins this
    /// node's; new addresses are linked at once (the entry's `Membership` output may have come
    /// first) and become the core's annex (`address_book.rs`).
    fn learn_addresses(&mut self, entries: &[alpo_core::Entry]) -> Result<(), Error> {
        let mut changed = false;
        for entry in entries
            .iter()
            .filter(|e| e.kind == alpo_core::EntryKind::Config)
        {
            let what = "a Config entry";
            if let Some(book) = crate::address_book::AddressBook::of_annex(&entry.payload, what) {
                changed |= self.members.book.merge(&book);
            }
        }
        if changed {
            self.book_changed();
            return self.link_members(&self.members.linked());
        }
        Ok(())
    }

    /// The book grew: the core's annex and the snapshot thread's copy follow it.
    fn book_changed(&mut self) {
        let encoded = self.members.book.encode();
        if let Some(snapshots) = &self.snapshots {
            snapshots.state.lock().book = encoded.clone();
        }
        self.node.set_config_annex(encoded);
    }

    /// Gives the transport the peers among `members`, at the addresses this node knows.
    fn link_members(&self, members: &[NodeId]) -> Result<(), Error> {
        let me = self.config.node_id();
        let (peers, unknown) = crate::member_ops::peer_set(members, me, &self.members.book);
        if !unknown.is_empty() {
            tracing::warn!(
                node = self.config.id,
                ?unknown,
                "members without a known peer address are not linked"
            );
        }
        self.peers.set_peers(&peers)
    }

    /// Issue 12, rule T1 at shutdown: a leader with another voter first hands over (bounded by
    /// `leaving`), so a rolling restart causes no election timeout. Whether the loop may end.
    fn may_stop(&mut self) -> bool {
        let now = std::time::Instant::now();
        match self.leaving {
            Some(deadline) => {
                let status = self.node.status();
                status.role != Role::Leader
                    || self.node.transfer_target().is_none()
                    || deadline <= now
            }
            None if self.node.status().role != Role::Leader => true,
            None => match self.node.transfer_leadership(self.now(), None) {
                Ok(target) => {
                    tracing::info!(node = self.config.id, %target, "stopping: handing over first");
                    let bound = Duration::from_millis(self.config.timeouts.election_cycle_ms_max);
                    self.leaving = Some(now + 2 * bound);
                    false
                }
                Err(error) => {
                    tracing::info!(node = self.config.id, %error, "stopping without a handover");
                    true
                }
            },
        }
    }

    /// Never waits: a read dropped here is asked again after the transfer's stall timeout
    /// (rule S5).
    fn queue_snapshot_read(&self, job: SnapshotJob) -> Result<(), Error> {
        let jobs = &self.snapshot_handle()?.jobs;
        if let Err(crossbeam_channel::TrySendError::Disconnected(_)) = jobs.try_send(job) {
            return Err(snapshot_thread_stopped());
        }
        Ok(())
    }

    fn append_log(&mut self, entries: Vec<alpo_core::Entry>) -> Result<(), Error> {
        if let Some(probe) = &self.probe {
            probe.on_append(entries.len());
        }
        self.send_storage(StorageOp::Append { entries })
    }

    fn send(&mut self, message: Message) {
        if let Some(probe) = &mut self.probe {
            probe.on_send(&message);
        }
        self.peers.send(message);
    }

    fn snapshot_handle(&self) -> Result<&SnapshotHandle, Error> {
        // Without snapshot files the core is configured never to take one, and a leader
        // never sends one; a snapshot output then is a configuration error: stop, loudly.
        self.snapshots.as_ref().ok_or_else(|| Error::Stopped {
            reason: "the core asked for a snapshot operation while snapshots are off".into(),
        })
    }

    fn send_snapshot_job(&self, job: SnapshotJob) -> Result<(), Error> {
        // Blocks only when the snapshot queue is full: backpressure on a slow disk.
        self.snapshot_handle()?
            .jobs
            .send(job)
            .map_err(|_| snapshot_thread_stopped())
    }

    /// Publishes status and metrics; streams the trace; tells waiting clients when leadership
    /// is lost.
    fn after_batch(&mut self, input_count: usize) -> Result<(), Error> {
        let now = self.now();
        for (connection, seq, body) in self.members.after_batch(&mut self.node, now) {
            self.reply(connection, seq, body);
        }
        if let Some(members) = self.members.on_commit(self.node.status().commit_index) {
            self.link_members(&members)?;
        }
        let status = self.status();
        if let Some(probe) = &mut self.probe {
            let queues = (self.storage.ops.len(), self.apply.sender.len());
            let core = (&self.node.status(), &self.node.counters());
            probe.after_batch(input_count, core, status.applied_index.0, queues);
        }
        if let Some(recorder) = &self.recorder {
            recorder.record(self.node.take_trace());
        }
        let is_leader = status.role == Role::Leader;
        self.watch
            .after_batch(&self.node.status(), self.node.counters());
        if self.was_leader && !is_leader {
            self.send_apply(ApplyMsg::LeadershipLost)?;
        }
        self.was_leader = is_leader;
        *self.shared.status.lock() = status;
        Ok(())
    }

    fn send_storage(&self, op: StorageOp) -> Result<(), Error> {
        // Blocks only when the storage queue is full: backpressure on a disk that cannot keep up.
        self.storage.ops.send(op).map_err(|_| Error::Stopped {
            reason: "the storage thread stopped".into(),
        })
    }

    fn send_apply(&self, message: ApplyMsg) -> Result<(), Error> {
        // The apply thread lives as long as the event loop holds its sender; it only ends early
        // if the application's state machine panicked. A node that cannot apply cannot answer
        // its clients, so it stops. Blocks only when the apply queue is full (backpressure).
        self.apply.sender.send(message).map_err(|_| Error::Stopped {
            reason: "the apply thread stopped (did the state machine panic?)".into(),
        })
    }

    /// Reads share the apply queue with committed entries but never wait for room in it: a
    /// client that floods reads gets `Retry` instead of stalling the event loop (and with it
    /// heartbeats and elections).
    fn send_read(&self, read: ReadRequest) -> Result<(), Error> {
        let (connection, seq) = (read.connection, read.seq);
        self.send_request_to_apply(ApplyMsg::Read(read), connection, seq)
    }

    /// The turn's queries, behind its `Apply`s, in one message (reads.rs); like reads of
    /// entries they never wait for room in the apply queue: a full queue answers each `Retry`.
    fn send_queries(&mut self) -> Result<(), Error> {
        let queries = self.reads.take_queries();
        if queries.is_empty() {
            return Ok(());
        }
        match self.apply.sender.try_send(ApplyMsg::Queries(queries)) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full(ApplyMsg::Queries(queries))) => {
                for query in queries {
                    let body =
                        error_body(ErrorCode::Retry, "too many requests queued; retry".into());
                    self.reply(query.connection, query.seq, body);
                }
                Ok(())
            }
            Err(_) => Err(Error::Stopped {
                reason: "the apply thread stopped (did the state machine panic?)".into(),
            }),
        }
    }

    /// Queues a client's read or query for the apply thread without waiting; a full queue
    /// answers the client `Retry`.
    fn send_request_to_apply(
        &self,
        message: ApplyMsg,
        connection: ConnectionId,
        seq: u64,
    ) -> Result<(), Error> {
        match self.apply.sender.try_send(message) {
            Ok(()) => Ok(()),
            Err(crossbeam_channel::TrySendError::Full(_)) => {
                let body = error_body(ErrorCode::Retry, "too many requests queued; retry".into());
                self.reply(connection, seq, body);
                Ok(())
            }
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => Err(Error::Stopped {
                reason: "the apply thread stopped (did the state machine panic?)".into(),
            }),
        }
    }

    fn status(&self) -> NodeStatus {
        let applied = LogIndex(self.apply.applied.load(Ordering::Acquire));
        node_status(&self.node, applied)
    }

    fn reply(&self, connection: ConnectionId, seq: u64, body: ResponseBody) {
        self.replier
            .reply(connection, Response { seq, body }.encode());
    }
}

/// The I/O a node's threads are wired to: files and sockets in a running node, memory and
/// channels in the event loop's own tests.
pub(crate) struct Parts {
    pub(crate) log: Box<dyn LogStore>,
    /// Reads of committed entries (a view of `log`).
    pub(crate) entry_source: Box<dyn EntrySource>,
    /// The core's reads of its log (rule S9; another view of `log`).
    pub(crate) log_reader: Box<dyn EntrySource>,
    /// The snapshot files; `None` runs without snapshots (the core must not take any).
    pub(crate) snapshots: Option<alpo_log::SnapshotStore>,
    /// What the newest snapshot restored at start, if any.
    pub(crate) restored: Option<RestoredState>,
    pub(crate) hard_state: Box<dyn HardStateStore>,
    pub(crate) peers: Box<dyn PeerSender>,
    /// Peer messages and client requests.
    pub(crate) inputs: Box<dyn Inputs>,
    /// Ends a wait of `inputs`.
    pub(crate) waker: Arc<dyn Wake>,
    pub(crate) replier: Arc<dyn Replier>,
    /// The node's metrics, when on.
    pub(crate) metrics: Option<Arc<Metrics>>,
}

/// A started event loop with its storage and apply threads.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) waker: Arc<dyn Wake>,
    pub(crate) thread: JoinHandle<Result<(), Error>>,
    pub(crate) shared: Arc<Shared>,
}

/// Starts the core from `persisted` and the node's threads over `parts`.
pub(crate) fn launch(
    config: NodeConfig,
    persisted: Persisted,
    parts: Parts,
    machine: Box<dyn StateMachine>,
) -> Result<Running, Error> {
    let origin = std::time::Instant::now();
    let (node, recorder, book) = start_member(&config, persisted, parts.snapshots.as_ref())?;
    let newest_snapshot = node.snapshot().map(|meta| meta.last).unwrap_or_default();
    let restored_index = parts.restored.as_ref().map_or(LogIndex(0), |r| r.last);
    // The core starts from the snapshot the state machine was restored from (rule S8).
    assert!(
        restored_index == newest_snapshot.index,
        "invariant: restored at the core's L"
    );
    let status = node_status(&node, restored_index);
    let start_commit = status.commit_index.0;
    let (node_core_status, node_core_counters) = (node.status(), node.counters());
    let storage = storage::spawn(
        parts.log,
        STORAGE_QUEUE_OP_COUNT_MAX,
        Arc::clone(&parts.waker),
        parts.metrics.clone(),
    )?;
    let (snapshots, apply) = spawn_snapshot_and_apply(
        &config,
        parts.snapshots,
        &parts.waker,
        machine,
        &parts.replier,
        (parts.entry_source, parts.restored),
        parts.metrics.clone(),
    )?;
    let shared = Arc::new(Shared {
        status: Mutex::new(status),
        failure: Mutex::new(None),
        storage: Arc::clone(&storage.state),
        stop_requested: AtomicBool::new(false),
    });
    let event_loop = EventLoop {
        node,
        origin,
        hard_state: parts.hard_state,
        peers: parts.peers,
        inputs: parts.inputs,
        replier: parts.replier,
        storage,
        apply,
        snapshots,
        newest_snapshot,
        installed: None,
        snapshot_waiters: Vec::new(),
        shared: Arc::clone(&shared),
        reported_durable: None,
        was_leader: false,
        reads: ClientReads::default(),
        log_reader: parts.log_reader,
        log_reads: Vec::new(),
        members: crate::member_ops::MemberOps::new(book),
        leaving: None,
        probe: parts.metrics.map(|m| LoopProbe::new(m, start_commit)),
        recorder,
        watch: Watch::new(&node_core_status, node_core_counters),
        config,
    };
    let thread = std::thread::Builder::new()
        .name(format!("alpo-node-{}", event_loop.config.id))
        .spawn(move || event_loop.run())
        .map_err(|source| Error::Io {
            what: "starting the event loop thread".into(),
            source,
        })?;
    Ok(Running {
        waker: parts.waker,
        thread,
        shared,
    })
}

/// Issue 12: the core started as a member: a joined directory with an empty bootstrap
/// configuration, a removed node refused (`join.rs`), the address book its annex.
fn start_member(
    config: &NodeConfig,
    persisted: Persisted,
    snapshots: Option<&alpo_log::SnapshotStore>,
) -> Result<(Node, Option<Recorder>, crate::address_book::AddressBook), Error> {
    let book = initial_book(config, &persisted, snapshots);
    let joined = config.data_dir.join(crate::join::JOINED_FILE_NAME).exists();
    let (node, recorder) = start_core(config, persisted, joined)?;
    crate::join::refuse_removed(config, node.configuration(), joined)?;
    Ok((node, recorder, book))
}

/// Issue 12: the address book at start: this node's flags, then the newest snapshot's and
/// every retained `Config` entry's annex (`address_book.rs`).
fn initial_book(
    config: &NodeConfig,
    persisted: &Persisted,
    snapshots: Option<&alpo_log::SnapshotStore>,
) -> crate::address_book::AddressBook {
    use crate::address_book::AddressBook;
    let mut book = AddressBook::from_config(config);
    if let Some(meta) = snapshots.and_then(alpo_log::SnapshotStore::newest)
        && !meta.membership.is_empty()
        && let Some(found) = AddressBook::of_annex(&meta.membership, "the newest snapshot")
    {
        book.merge(&found);
    }
    let entries = persisted.log.configs.iter().chain(&persisted.log.tail);
    for entry in entries.filter(|e| e.kind == alpo_core::EntryKind::Config) {
        if let Some(found) = AddressBook::of_annex(&entry.payload, "a retained Config entry") {
            book.merge(&found);
        }
    }
    book
}

/// The core, recording its inputs for the flight recorder (started here) when it is on.
fn start_core(
    config: &NodeConfig,
    persisted: Persisted,
    joined: bool,
) -> Result<(Node, Option<Recorder>), Error> {
    let seed = seed_for(config.id);
    let start = alpo_core::Instant::from_nanos(0);
    let recorder = config
        .recorder
        .enabled
        .then(|| {
            let incarnation = persisted.incarnation.0;
            Recorder::start(
                &config.data_dir,
                incarnation,
                config.recorder.disk_bytes_max,
            )
        })
        .transpose()?;
    let mut core_config = config.core_config(seed);
    if joined {
        // Issue 12, rule M11: a joined node's configuration comes from the log or a snapshot
        // only; its flags name the cluster it joined, not a configuration.
        core_config.members.clear();
    }
    let node = if recorder.is_some() {
        Node::new_recorded(core_config, persisted, start)
    } else {
        Node::new(core_config, persisted, start)
    }
    .map_err(|error| Error::Config {
        field: error.field.to_string(),
        problem: error.problem,
    })?;
    Ok((node, recorder))
}

/// Starts the snapshot thread over `store` (if any) and the apply thread, which reads entries
/// from `log`, starts from `restored`, and feeds the snapshot thread its frozen states.
fn spawn_snapshot_and_apply(
    config: &NodeConfig,
    store: Option<alpo_log::SnapshotStore>,
    waker: &Arc<dyn Wake>,
    machine: Box<dyn StateMachine>,
    replier: &Arc<dyn Replier>,
    (log, restored): (Box<dyn EntrySource>, Option<RestoredState>),
    metrics: Option<Arc<Metrics>>,
) -> Result<(Option<SnapshotHandle>, ApplyHandle), Error> {
    let snapshots = store
        .map(|store| snapshot::spawn(store, Arc::clone(waker)))
        .transpose()?;
    let snapshot_jobs = match &snapshots {
        Some(handle) => handle.jobs.clone(),
        // Nothing reads this queue: a frozen state sent to it is dropped (and never asked for).
        None => crossbeam_channel::bounded(SNAPSHOT_QUEUE_COUNT_MAX).0,
    };
    let apply = apply::spawn(ApplyStart {
        machine,
        replier: Arc::clone(replier),
        log,
        restored,
        snapshots: snapshot_jobs,
        retain_entries: config.snapshots.retain_entries,
        metrics,
    })?;
    Ok((snapshots, apply))
}

impl Running {
    /// Asks the event loop to stop and waits for every thread it owns.
    pub(crate) fn stop(self) -> Result<(), Error> {
        self.shared.stop_requested.store(true, Ordering::Release);
        self.waker.wake();
        self.join()
    }

    /// Waits for the event loop to end (after `stop` or a fatal error).
    pub(crate) fn join(self) -> Result<(), Error> {
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(Error::Stopped {
                reason: "the event loop panicked".into(),
            }),
        }
    }
}

/// A seed for the core's election timers: different per node and per start, so two nodes (or
/// two starts) do not draw the same timeouts. Determinism is for the simulator, not for here.
fn seed_for(id: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos());
    id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(nanos) ^ u64::from(std::process::id())
}

/// What a status request reports: the core's view, with the apply thread's applied index.
fn node_status(node: &Node, applied_index: LogIndex) -> NodeStatus {
    let core = node.status();
    NodeStatus {
        id: core.id,
        role: core.role,
        term: core.term,
        leader: core.leader,
        commit_index: core.commit_index,
        last_index: core.last_index,
        durable_index: core.durable_index,
        applied_index,
        snapshot_index: core.snapshot_index,
        first_index: core.first_index,
    }
}

fn snapshot_thread_stopped() -> Error {
    Error::Stopped {
        reason: "the snapshot thread stopped".into(),
    }
}

/// The entry command a proposal becomes; `None` for operations that are not proposals.
fn command_of(op: Op) -> Option<(CommandKind, Bytes)> {
    match op {
        Op::Append { value } => Some((CommandKind::Append, value)),
        Op::Command { payload } => Some((CommandKind::Command, payload)),
        // Reads never enter the log (rules Q1–Q3): `on_client` routes them.
        Op::Read { .. } | Op::Query { .. } | Op::Status | Op::Snapshot => None,
        // Membership goes through the core's own entries (issue 12): `on_client` routes it.
        Op::Members | Op::ChangeMembers { .. } | Op::TransferLeader { .. } => None,
    }
}

/// Where a client finds node `id`, as `book` knows it.
fn leader_hint_of(book: &crate::address_book::AddressBook, id: NodeId) -> LeaderHint {
    LeaderHint {
        id,
        client_addr: book
            .get(id)
            .map(|a| a.client_addr.to_string())
            .unwrap_or_default(),
    }
}

fn error_body(code: ErrorCode, reason: String) -> ResponseBody {
    ResponseBody::Error { code, reason }
}

#[cfg(test)]
mod tests {
    //! The event loop, storage and apply threads of three nodes, wired by in-memory channels
    //! instead of sockets and files: elections, commits and redirects without I/O.

    use std::collections::BTreeMap;

    use alpo_core::{Entry, NodeId};
    use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

    use super::*;
    use crate::config::Timeouts;
    use crate::error::WithCauses;
    use crate::kv::KvStateMachine;
    use crate::storage::memory::MemoryLog;

    struct MemoryHardState;

    impl HardStateStore for MemoryHardState {
        fn save(&mut self, _state: HardState) -> Result<(), Error> {
            Ok(())
        }

        fn save_term_ceiling(&mut self, _ceiling: Term) -> Result<(), Error> {
            Ok(())
        }
    }

    /// One channel carries a node's inputs; `None` is a wake.
    type InputSender = Sender<Option<Incoming>>;

    struct ChannelInputs(Receiver<Option<Incoming>>);

    impl Inputs for ChannelInputs {
        fn wait(&mut self, timeout: Duration, out: &mut Vec<Incoming>) -> Result<(), Error> {
            match self.0.recv_timeout(timeout) {
                Ok(item) => out.extend(item),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
            }
            while let Ok(item) = self.0.try_recv() {
                out.extend(item);
            }
            Ok(())
        }
    }

    #[derive(Debug)]
    struct ChannelWake(InputSender);

    impl Wake for ChannelWake {
        fn wake(&self) {
            let _ = self.0.try_send(None);
        }
    }

    /// A node's inputs over a channel, the waker of its wait, and the channel's sending side.
    fn channel_inputs() -> (Box<dyn Inputs>, Arc<dyn Wake>, InputSender) {
        let (sender, receiver) = crossbeam_channel::bounded(4096);
        let wake = Arc::new(ChannelWake(sender.clone()));
        (Box::new(ChannelInputs(receiver)), wake, sender)
    }

    #[derive(Clone)]
    struct Router {
        inboxes: Arc<Mutex<BTreeMap<NodeId, InputSender>>>,
    }

    impl PeerSender for Router {
        fn send(&self, message: Message) {
            if let Some(inbox) = self.inboxes.lock().get(&message.to) {
                let _ = inbox.try_send(Some(Incoming::Peer(message)));
            }
        }

        /// Routes by id to every node of the test: there are no links to follow.
        fn set_peers(&self, _peers: &[(NodeId, std::net::SocketAddr)]) -> Result<(), Error> {
            Ok(())
        }
    }

    struct ChannelReplier(Sender<(ConnectionId, Bytes)>);

    impl Replier for ChannelReplier {
        fn reply(&self, connection: ConnectionId, body: Bytes) {
            let _ = self.0.try_send((connection, body));
        }
    }

    struct TestNode {
        running: Running,
        requests: InputSender,
        replies: Receiver<(ConnectionId, Bytes)>,
        log: MemoryLog,
    }

    fn config(id: u64) -> NodeConfig {
        let addr = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let peers = (1..=3u16)
            .filter(|peer| u64::from(*peer) != id)
            .map(|peer| crate::config::PeerConfig {
                id: u64::from(peer),
                peer_addr: addr(7100 + peer),
                client_addr: addr(7200 + peer),
            })
            .collect();
        let port = u16::try_from(id).unwrap();
        NodeConfig {
            id,
            cluster_id: 1,
            data_dir: "unused".into(),
            peer_addr: addr(7100 + port),
            client_addr: addr(7200 + port),
            peers,
            snapshots: crate::config::Snapshots::default(),
            log: crate::config::LogSettings::default(),
            reads: crate::config::ReadSettings::default(),
            tls: None,
            metrics: crate::config::MetricsSettings::default(),
            // No data directory here: the in-memory nodes do not record.
            recorder: crate::config::RecorderSettings {
                enabled: false,
                ..Default::default()
            },
            timeouts: Timeouts {
                heartbeat_interval_ms: 10,
                passive_timeout_ms_min: 60,
                passive_timeout_ms_max: 120,
                election_cycle_ms_min: 30,
                election_cycle_ms_max: 60,
            },
        }
    }

    fn start_cluster() -> Vec<TestNode> {
        let router = Router {
            inboxes: Arc::new(Mutex::new(BTreeMap::new())),
        };
        let mut nodes = Vec::new();
        for id in 1..=3 {
            let (inputs, waker, input_tx) = channel_inputs();
            router.inboxes.lock().insert(NodeId(id), input_tx.clone());
            let (reply_tx, reply_rx) = crossbeam_channel::bounded(4096);
            let log = MemoryLog::default();
            let parts = Parts {
                log: Box::new(log.clone()),
                entry_source: Box::new(log.clone()),
                log_reader: Box::new(log.clone()),
                snapshots: None,
                restored: None,
                hard_state: Box::new(MemoryHardState),
                peers: Box::new(router.clone()),
                inputs,
                waker,
                replier: Arc::new(ChannelReplier(reply_tx)),
                metrics: None,
            };
            let machine = Box::new(KvStateMachine::new());
            let running = launch(config(id), Persisted::default(), parts, machine).unwrap();
            nodes.push(TestNode {
                running,
                requests: input_tx,
                replies: reply_rx,
                log,
            });
        }
        nodes
    }

    fn call(node: &TestNode, seq: u64, op: Op) -> ResponseBody {
        let id = RequestId { client: 9, seq };
        let body = Request { id, op }.encode();
        let connection = alpo_net::ConnectionId(1);
        let request = IncomingRequest { connection, body };
        node.requests.send(Some(Incoming::Client(request))).unwrap();
        loop {
            let (_, bytes) = node.replies.recv_timeout(Duration::from_secs(10)).unwrap();
            let response = Response::decode(bytes).unwrap();
            if response.seq == seq {
                return response.body;
            }
        }
    }

    fn wait_for_leader(nodes: &[TestNode]) -> usize {
        for _ in 0..1000 {
            for (i, node) in nodes.iter().enumerate() {
                if node.running.shared.status.lock().role == Role::Leader {
                    return i;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("no leader elected");
    }

    fn log_of(node: &TestNode) -> Vec<Entry> {
        node.log.entries.lock().clone()
    }

    #[test]
    fn three_nodes_elect_commit_and_redirect() {
        let nodes = start_cluster();
        let leader = wait_for_leader(&nodes);
        let mut seq = 0;
        for i in 0..100 {
            seq += 1;
            let value = Bytes::from(format!("v{i}"));
            let body = call(&nodes[leader], seq, Op::Append { value });
            assert!(matches!(body, ResponseBody::Appended { .. }), "{body:?}");
        }
        seq += 1;
        let put = crate::kv::KvOp::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        };
        let body = call(&nodes[leader], seq, put.to_op());
        let ResponseBody::Applied { index, .. } = body else {
            panic!("{body:?}")
        };
        // A retry with the same id is answered like the first time, not applied again.
        let body = call(&nodes[leader], seq, put.to_op());
        assert!(matches!(body, ResponseBody::Applied { index: again, .. } if again == index));
        let follower = (leader + 1) % 3;
        let body = call(
            &nodes[follower],
            seq + 1,
            Op::Append {
                value: Bytes::new(),
            },
        );
        let ResponseBody::NotLeader { leader: Some(hint) } = body else {
            panic!("{body:?}")
        };
        assert_eq!(hint.id.0, leader as u64 + 1);
        assert_eq!(hint.client_addr, format!("127.0.0.1:{}", 7201 + leader));
        // Every node's log converges to the leader's.
        let expected = log_of(&nodes[leader]);
        for _ in 0..1000 {
            if nodes.iter().all(|node| log_of(node) == expected) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for node in &nodes {
            assert_eq!(log_of(node), expected);
        }
        for node in nodes {
            node.running.stop().unwrap();
        }
    }

    /// The parts of a one-node cluster over `log`: no peers, replies on the given channel;
    /// the returned sender feeds its inputs.
    fn lone_node_parts(
        log: MemoryLog,
        replies: Sender<(alpo_net::ConnectionId, Bytes)>,
    ) -> (Parts, InputSender) {
        let (inputs, waker, input_sender) = channel_inputs();
        let parts = Parts {
            log: Box::new(log.clone()),
            entry_source: Box::new(log.clone()),
            log_reader: Box::new(log),
            snapshots: None,
            restored: None,
            hard_state: Box::new(MemoryHardState),
            peers: Box::new(Router {
                inboxes: Arc::new(Mutex::new(BTreeMap::new())),
            }),
            inputs,
            waker,
            replier: Arc::new(ChannelReplier(replies)),
            metrics: None,
        };
        (parts, input_sender)
    }

    #[test]
    fn a_failed_sync_stops_the_node_with_a_message_naming_the_file() {
        let mut config = config(1);
        config.peers.clear();
        let (reply_tx, _reply_rx) = crossbeam_channel::bounded(1);
        let log = MemoryLog {
            fail_sync: true,
            ..MemoryLog::default()
        };
        let (parts, _input_tx) = lone_node_parts(log, reply_tx);
        let machine = Box::new(KvStateMachine::new());
        // A one-node cluster elects itself and writes its no-op (rule R8): the sync fails.
        let running = launch(config, Persisted::default(), parts, machine).unwrap();
        let shared = Arc::clone(&running.shared);
        let error = running.join().unwrap_err();
        let text = WithCauses(&error).to_string();
        assert_eq!(text, "fatal: sync of memory/0001.alpolog failed: injected");
        // Typed all the way: the caller can tell a failed sync from any other stop.
        let failure = shared.failure.lock().clone().unwrap();
        let Error::Log(log_error) = failure.as_ref() else {
            panic!("expected a log error, got {failure:?}");
        };
        assert!(log_error.is_fatal());
        assert!(matches!(&error, Error::Failed(same) if Arc::ptr_eq(same, &failure)));
    }

    struct Panicking;

    impl StateMachine for Panicking {
        fn apply(&mut self, _index: LogIndex, _command: &[u8]) -> Vec<u8> {
            panic!("deliberate state-machine bug");
        }

        fn query(&self, _query: &[u8]) -> Vec<u8> {
            panic!("deliberate state-machine bug");
        }

        fn snapshot(&self) -> Box<dyn crate::state_machine::SnapshotImage> {
            panic!("deliberate state-machine bug");
        }

        fn restore(&mut self, _image: &mut dyn std::io::Read) -> std::io::Result<()> {
            panic!("deliberate state-machine bug");
        }
    }

    #[test]
    fn a_panicking_state_machine_stops_the_node_instead_of_hanging_clients() {
        let mut config = config(1);
        config.peers.clear();
        let (reply_tx, _reply_rx) = crossbeam_channel::bounded(16);
        let (parts, request_tx) = lone_node_parts(MemoryLog::default(), reply_tx);
        let running = launch(config, Persisted::default(), parts, Box::new(Panicking)).unwrap();
        // Commands until one is applied (the first may meet a node that is not leader yet).
        for seq in 1..=1000 {
            if running.thread.is_finished() {
                break;
            }
            let op = Op::Command {
                payload: Bytes::from_static(b"boom"),
            };
            let body = Request {
                id: RequestId { client: 1, seq },
                op,
            }
            .encode();
            let connection = alpo_net::ConnectionId(1);
            let request = IncomingRequest { connection, body };
            let _ = request_tx.send(Some(Incoming::Client(request)));
            std::thread::sleep(Duration::from_millis(10));
        }
        let error = running.join().unwrap_err().to_string();
        assert!(error.contains("the apply thread stopped"), "{error}");
    }

    #[test]
    fn malformed_requests_get_an_error_and_the_node_keeps_serving() {
        let nodes = start_cluster();
        let body = Bytes::from_static(&[crate::client_protocol::PROTOCOL_VERSION, 2, 3]);
        let connection = alpo_net::ConnectionId(7);
        let request = IncomingRequest { connection, body };
        nodes[0]
            .requests
            .send(Some(Incoming::Client(request)))
            .unwrap();
        let (connection, bytes) = nodes[0]
            .replies
            .recv_timeout(Duration::from_secs(10))
            .unwrap();
        assert_eq!(connection, alpo_net::ConnectionId(7));
        let response = Response::decode(bytes).unwrap();
        assert!(matches!(
            response.body,
            ResponseBody::Error {
                code: ErrorCode::BadRequest,
                ..
            }
        ));
        let body = call(&nodes[0], 1, Op::Status);
        assert!(matches!(body, ResponseBody::Status(status) if status.id == NodeId(1)));
        // A client of another protocol version is answered under its own version byte.
        let mut old = Request {
            id: RequestId { client: 9, seq: 2 },
            op: Op::Status,
        }
        .encode()
        .to_vec();
        old[0] = 1;
        let request = IncomingRequest {
            connection,
            body: Bytes::from(old),
        };
        nodes[0]
            .requests
            .send(Some(Incoming::Client(request)))
            .unwrap();
        let (_, bytes) = nodes[0]
            .replies
            .recv_timeout(Duration::from_secs(10))
            .unwrap();
        assert_eq!(bytes, unsupported_version_response(1));
        for node in nodes {
            node.running.stop().unwrap();
        }
    }
}
