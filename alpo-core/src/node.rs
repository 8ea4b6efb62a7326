//! One ALPO server's protocol state and its entry points: one method per kind of input.
//!
//! Each entry point (`tick`, `on_message`, `propose`, `on_persisted`, and the snapshot driver's
//! reports `on_snapshot_durable`, `on_snapshot_read`, `on_snapshot_installed`,
//! `on_snapshot_install_failed`) mutates the state and pushes outputs onto an internal list,
//! which the driver takes with [`Node::take_outputs`]. The rules themselves live in the child
//! modules `election` (E0–E8), `replication` (R1–R11), `snapshot` (S2–S7, S9 in `log_read`),
//! `members` (M1–M11), `transfer` (T1–T5) and `read` (Q1–Q3a, with its own entry point
//! `read_index`), which alone share the state; this file dispatches and keeps the invariants.
//!
//! # Batching
//! `propose` only appends to the in-memory log. The `AppendLog` for new entries and the Appends
//! that carry them to followers are generated at the next flush: at the start and end of every
//! other input, and in `take_outputs`. So a driver that proposes many commands and then calls
//! `take_outputs` once gets one `AppendLog` and one Append per follower window slot. A flush
//! depends only on the node's state, so it is deterministic; `take_outputs` is recorded in the
//! input trace because it may flush.
//!
//! # Invariants
//! `base ≤ L ≤ applied ≤ commit ≤ durable ≤ last` (indices; `base` is the log's, `L` the newest
//! durable snapshot's last index, 0 without one), `commit ≤ commit_known` (the highest index
//! known committed, which may run ahead of the local durable index), every log term is at most
//! `current_term`, a leader has voted for itself in its term and believes in itself as leader.

mod election;
mod log_read;
mod members;
mod read;
mod replication;
mod snapshot;
mod transfer;
mod vote_fence;

pub use read::{ReadError, ReadId, ReadMode};
pub use vote_fence::TERM_CEILING_STEP;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::config::Config;
use crate::counters::Counters;
use crate::error::{ConfigError, ProposeError, SnapshotReadError, TransferError};
use crate::injected::injected;
use crate::log::Log;
use crate::log_read::{LogFault, LogReadId, LogReadResult};
use crate::marks::hit;
use crate::membership::{ConfigChange, ConfigChangeError, Membership};
use crate::message::{Message, MessageBody};
use crate::output::Output;
use crate::progress::Progress;
use crate::rng::Rng;
use crate::trace::{Recorder, SnapshotRead};
use crate::types::{
    Entry, HardState, Incarnation, Instant, LogIndex, LogPosition, NodeId, Persisted, Rank,
    SnapshotMeta, Term,
};

/// A proposal the leader accepted: where it sits in the log. It is committed when an `Apply`
/// output carries an entry with this index **and** this term; an entry with this index and
/// another term means the proposal was lost with its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// The index the proposal was given.
    pub index: LogIndex,
    /// The leader's term when it accepted the proposal.
    pub term: Term,
}

/// A server's role (docs/protocol.md, Glossary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader and votes (ALPO's "passive").
    Passive,
    /// Asks for votes.
    Candidate,
    /// Accepts proposals and replicates them.
    Leader,
}

/// A snapshot of a server's protocol state, for status reports and checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This server.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it believes in, if any (itself when leader).
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: LogIndex,
    /// Index of its last entry.
    pub last_index: LogIndex,
    /// Highest index durable on its disk.
    pub durable_index: LogIndex,
    /// Highest index handed to the state machine.
    pub applied_index: LogIndex,
    /// Last index of the newest durable snapshot (0 without one).
    pub snapshot_index: LogIndex,
    /// First index of the log the core still holds (1 until compacted).
    pub first_index: LogIndex,
}

/// One ALPO server's protocol state machine.
#[derive(Debug)]
pub struct Node {
    config: Config,
    incarnation: Incarnation,
    rng: Rng,
    hard_state: HardState,
    log: Log,
    role: Role,
    leader: Option<NodeId>,
    /// Highest index known committed (learned or counted); may exceed the durable index.
    commit_known: LogIndex,
    /// `min(commit_known, durable)`, never decreasing: what may be applied.
    commit_index: LogIndex,
    applied_index: LogIndex,
    timers: Timers,
    /// The pre-vote or vote round in progress, if any.
    campaign: Option<Campaign>,
    /// Per follower, when leader (empty otherwise).
    progress: BTreeMap<NodeId, Progress>,
    /// Follower: highest index verified by an Append of this term, not yet acknowledged.
    pending_ack: Option<LogIndex>,
    /// The newest durable snapshot (rule S3), taken or installed.
    snapshot: Option<SnapshotMeta>,
    /// The `TakeSnapshot` in progress (rule S2), if any.
    snapshot_taking: Option<LogPosition>,
    /// Follower: the snapshot being received (rules S6, S7), if any.
    install: Option<Install>,
    /// Rule S9: the `ReadLog`s in flight.
    log_reads: log_read::LogReads,
    /// Rule S9: a read answer this node cannot go on from; the driver must stop it.
    fault: Option<LogFault>,
    /// Reads in progress and the leader's rounds (rules Q1–Q3a).
    reads: read::Reads,
    /// The configuration in force and the `Config` entries it can revert to (rule M1).
    membership: Membership,
    /// Leader: the learner being caught up before its promotion (rule M8), if any.
    catch_up: Option<members::CatchUp>,
    /// Leader: the leadership transfer in progress (rules T1–T5), if any.
    transfer: Option<transfer::Transfer>,
    /// Issue 12: the driver's bytes every `Config` entry this node appends carries after its
    /// configuration (`set_config_annex`); never read by the core.
    config_annex: Bytes,
    /// The term ceiling and the vote fence (rules F8, F9).
    fences: vote_fence::Fences,
    outputs: Vec<Output>,
    recorder: Option<Recorder>,
    /// Election events so far (`Node::counters`).
    counters: Counters,
    /// A deliberate protocol bug the simulator switched on (`Node::inject_bug`).
    #[cfg(feature = "sim")]
    injected_bug: Option<crate::injected::InjectedBug>,
}

/// A snapshot being received (rule S6); volatile: a restart starts the transfer over.
#[derive(Clone, Copy, Debug)]
struct Install {
    /// The snapshot.
    snapshot: SnapshotMeta,
    /// Bytes written so far (the next chunk's offset).
    held: u64,
    /// The last chunk was written: the driver is verifying and installing the file.
    finishing: bool,
}

/// The node's deadlines.
#[derive(Clone, Copy, Debug)]
struct Timers {
    /// Passive: when to stand (E1). Candidate: when the election cycle ends.
    election_deadline: Instant,
    /// Not a candidate again before this instant (E8).
    deferred_until: Instant,
    /// When we last heard from the leader we follow (E5).
    leader_contact: Option<Instant>,
    /// Leader: next heartbeat round (R7).
    heartbeat_due: Instant,
    /// Leader: next check-quorum (E5).
    quorum_check_due: Instant,
}

/// A round of pre-votes (E2) or votes (E3) in progress.
#[derive(Clone, Debug)]
struct Campaign {
    /// Pre-vote round (no term change yet) or real candidacy.
    pre_vote: bool,
    /// The term asked for.
    term: Term,
    /// Servers that granted, this one included.
    granted: BTreeSet<NodeId>,
}

impl Node {
    /// Starts a server from what it loaded from disk (rule E0): passive, commit index 0.
    pub fn new(config: Config, persisted: Persisted, now: Instant) -> Result<Node, ConfigError> {
        config.validate()?;
        let mut membership = members::load_membership(&config.members, &persisted)?;
        let (hard_state, fences) = vote_fence::startup_fences(&persisted);
        let loaded = Log::load(
            persisted.snapshot,
            persisted.log,
            config.log_cache_bytes_max,
        )
        .map_err(|error| ConfigError {
            field: "persisted.log",
            problem: error.0,
        })?;
        let log = loaded.log;
        let hard_state = election::startup_hard_state(hard_state, &log);
        // S8: the snapshot's entries are applied (its state restored) and committed.
        let snapshot_index = persisted
            .snapshot
            .map_or(LogIndex(0), |meta| meta.last.index);
        let mut outputs = Vec::new();
        if let Some(from) = loaded.discard_from {
            // S7 step 1, redone at start: a crash fell between an install and its truncation.
            hit!(s8_conflicting_log_discarded_at_start);
            outputs.push(Output::TruncateLog { from });
            let _ = membership.on_truncate(from);
        }
        // Q3a: with leases on, a start counts as a leader contact.
        let reads = read::Reads::new(now, config.read_lease.is_some(), config.passive_timeout_min);
        let mut node = Node {
            rng: Rng::new(config.seed, config.id),
            config,
            incarnation: persisted.incarnation,
            hard_state,
            log,
            role: Role::Passive,
            leader: None,
            commit_known: snapshot_index,
            commit_index: snapshot_index,
            applied_index: snapshot_index,
            timers: Timers {
                election_deadline: now,
                deferred_until: now,
                leader_contact: None,
                heartbeat_due: now,
                quorum_check_due: now,
            },
            campaign: None,
            progress: BTreeMap::new(),
            pending_ack: None,
            snapshot: persisted.snapshot,
            snapshot_taking: None,
            install: None,
            log_reads: log_read::LogReads::default(),
            fault: None,
            reads,
            membership,
            catch_up: None,
            transfer: None,
            config_annex: Bytes::new(),
            fences,
            outputs,
            recorder: None,
            counters: Counters::default(),
            #[cfg(feature = "sim")]
            injected_bug: None,
        };
        node.raise_ceiling_at_start();
        node.reset_passive_timer(now);
        node.evict_cache();
        node.invariants();
        Ok(node)
    }

    /// Like [`Node::new`], and records every later input into a trace (see [`crate::trace`]).
    pub fn new_recorded(
        config: Config,
        persisted: Persisted,
        now: Instant,
    ) -> Result<Node, ConfigError> {
        let recorder = Recorder::start(&config, &persisted, now);
        let mut node = Node::new(config, persisted, now)?;
        node.recorder = Some(recorder);
        Ok(node)
    }

    /// Switches on a deliberate protocol bug, to prove that the simulator's checkers catch it
    /// (feature `sim`; never in a real server). A recorded trace records the bug.
    #[cfg(feature = "sim")]
    pub fn inject_bug(&mut self, bug: crate::injected::InjectedBug) {
        self.injected_bug = Some(bug);
        if let Some(recorder) = &mut self.recorder {
            recorder.injected_bug(bug.code());
        }
    }

    /// Time passes: fire the election timer, heartbeats, check-quorum, as due at `now`.
    pub fn tick(&mut self, now: Instant) {
        if let Some(recorder) = &mut self.recorder {
            recorder.tick(now);
        }
        self.flush_log_writes();
        if self.role == Role::Leader {
            self.leader_tick(now);
        } else {
            self.election_tick(now);
        }
        self.expire_reads(now);
        self.finish_input();
    }

    /// A message from a peer arrives.
    pub fn on_message(&mut self, now: Instant, message: Message) {
        if let Some(recorder) = &mut self.recorder {
            recorder.message(now, &message);
        }
        self.flush_log_writes();
        // M11: messages from any server of the cluster count, members or not: a new server
        // must accept its first Append from a leader it does not know yet.
        if message.to == self.config.id && message.from != self.config.id {
            self.dispatch(now, message);
        }
        self.finish_input();
    }

    /// A client proposes a command (rule R1). On the leader, appends it and returns where it sits.
    pub fn propose(&mut self, now: Instant, payload: Bytes) -> Result<Proposal, ProposeError> {
        if let Some(recorder) = &mut self.recorder {
            recorder.propose(now, &payload);
        }
        let result = self.accept_proposal(payload);
        self.invariants();
        result
    }

    /// Asks the leader for a membership change (rules M2–M10). `Ok` means it was appended or,
    /// for a promotion, that the learner's catch-up started (M8); either way the outcome comes
    /// as an [`Output::ConfigChange`] (with the entry's position, to wait for its commit like
    /// a proposal's, or why it failed).
    pub fn propose_config_change(
        &mut self,
        now: Instant,
        change: ConfigChange,
    ) -> Result<(), ConfigChangeError> {
        if let Some(recorder) = &mut self.recorder {
            recorder.config_change(now, change);
        }
        self.flush_log_writes();
        let result = self.start_config_change(now, change);
        self.finish_input();
        result
    }

    /// Issue 12: bytes that every `Config` entry this node appends as leader from now on
    /// carries after its configuration (`Configuration::decode_with_annex` splits them off).
    /// The core never reads them; alpo-node puts its address book there, so that a new
    /// member's addresses travel with the entry that adds it. Not persisted: a driver sets it
    /// again after a restart.
    pub fn set_config_annex(&mut self, annex: Bytes) {
        if let Some(recorder) = &mut self.recorder {
            recorder.config_annex(&annex);
        }
        self.config_annex = annex;
    }

    /// Asks the leader to hand leadership to `target`, or to the most up-to-date voter
    /// (rules T1–T5). Returns the target. Proposals are refused with
    /// `ProposeError::Transferring` until the transfer ends: a new leader, or an abort after
    /// `P_min` (the node leads on, see `transfer_target`).
    pub fn transfer_leadership(
        &mut self,
        now: Instant,
        target: Option<NodeId>,
    ) -> Result<NodeId, TransferError> {
        if let Some(recorder) = &mut self.recorder {
            recorder.transfer(now, target);
        }
        self.flush_log_writes();
        let result = self.start_transfer(now, target);
        self.finish_input();
        result
    }

    /// Storage reports that the log is durable up to and including `durable` (group commit).
    pub fn on_persisted(&mut self, now: Instant, durable: LogPosition) {
        if let Some(recorder) = &mut self.recorder {
            recorder.persisted(now, durable);
        }
        self.flush_log_writes();
        if self.log.mark_durable(durable) {
            self.on_durable_advanced(now);
        }
        self.finish_input();
    }

    /// The driver made a snapshot durable (rule S3 step 5): one this node asked for with
    /// `TakeSnapshot`. Allows compaction (`CompactLog`, rule S4).
    pub fn on_snapshot_durable(&mut self, now: Instant, meta: SnapshotMeta) {
        if let Some(recorder) = &mut self.recorder {
            recorder.snapshot_durable(now, meta);
        }
        self.flush_log_writes();
        self.snapshot_durable(meta);
        self.finish_input();
    }

    /// The driver answers a `ReadSnapshot` for follower `to`: `len` bytes at `offset` of the
    /// snapshot file `snapshot`, or why not (rule S5). Late or stale answers are ignored.
    pub fn on_snapshot_read(
        &mut self,
        now: Instant,
        to: NodeId,
        snapshot: LogPosition,
        offset: u64,
        result: Result<Bytes, SnapshotReadError>,
    ) {
        let read = SnapshotRead {
            to,
            snapshot,
            offset,
        };
        if let Some(recorder) = &mut self.recorder {
            recorder.snapshot_read(now, read, &result);
        }
        self.flush_log_writes();
        self.snapshot_read(read, result);
        self.finish_input();
    }

    /// The driver verified, made durable (file and directory fsynced) and installed as its
    /// newest snapshot the file received for `meta` (rule S7). The node then restores the
    /// state machine from it (`RestoreStateMachine`) unless it already applied past it.
    pub fn on_snapshot_installed(&mut self, now: Instant, meta: SnapshotMeta) {
        if let Some(recorder) = &mut self.recorder {
            recorder.snapshot_installed(now, meta, true);
        }
        self.flush_log_writes();
        self.snapshot_installed(meta);
        self.finish_input();
    }

    /// The file received for `meta` failed verification (rule S7): it is discarded and the
    /// transfer starts again at 0.
    pub fn on_snapshot_install_failed(&mut self, now: Instant, meta: SnapshotMeta) {
        if let Some(recorder) = &mut self.recorder {
            recorder.snapshot_installed(now, meta, false);
        }
        self.flush_log_writes();
        self.snapshot_install_failed(meta);
        self.finish_input();
    }

    /// The driver answers the `ReadLog` `id` (rule S9; contract on [`crate::log_read`]).
    /// Stale answers are ignored entry by entry. A `Fault` answer, or `Compacted` for entries
    /// this node must apply, returns the [`LogFault`]: the driver must stop the node and
    /// report it (the node keeps it in [`Node::fault`]).
    pub fn on_log_read(
        &mut self,
        now: Instant,
        id: LogReadId,
        result: LogReadResult,
    ) -> Result<(), LogFault> {
        if let Some(recorder) = &mut self.recorder {
            recorder.log_read(now, id, &result);
        }
        self.flush_log_writes();
        let outcome = self.log_read(id, result);
        self.advance_commit();
        self.finish_input();
        outcome
    }

    /// The read fault that stopped this node, if any (rule S9).
    #[must_use]
    pub fn fault(&self) -> Option<LogFault> {
        self.fault
    }

    /// The entry cache's state (rule S9), for status reports and the simulator's memory check.
    #[must_use]
    pub fn log_cache(&self) -> crate::log_read::LogCacheStatus {
        crate::log_read::LogCacheStatus {
            cached_from: self.log.cached_from(),
            bytes: self.log.cache_bytes(),
            bytes_max: self.config.log_cache_bytes_max,
            pinned_bytes: self
                .log
                .bytes_between(self.commit_index.next(), self.log.last_index()),
            term_runs: self.log.term_run_count(),
            reads_inflight_bytes: self.log_reads.inflight_bytes(),
        }
    }

    /// An operator asks for a snapshot now, whatever the interval (rule S2; `alpo snapshot`).
    /// Returns the position the next durable snapshot will cover: the one in progress, or a
    /// new `TakeSnapshot { at: applied }`; `None` when the newest durable snapshot already
    /// covers every applied entry.
    pub fn request_snapshot(&mut self, now: Instant) -> Option<LogPosition> {
        if let Some(recorder) = &mut self.recorder {
            recorder.snapshot_requested(now);
        }
        self.flush_log_writes();
        let at = self.take_snapshot_now();
        self.finish_input();
        at
    }

    /// Takes the outputs produced by the inputs since the last call, in the order to perform
    /// them (see [`crate::output`] for the ordering contract).
    #[must_use = "the outputs must be performed, in order"]
    pub fn take_outputs(&mut self) -> Vec<Output> {
        self.flush();
        self.invariants();
        let outputs = std::mem::take(&mut self.outputs);
        if let Some(recorder) = &mut self.recorder {
            recorder.take_outputs(&outputs);
        }
        outputs
    }

    /// The next instant at which `tick` has something to do.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        let due = if self.role == Role::Leader {
            if self.config.check_quorum {
                self.timers.heartbeat_due.min(self.timers.quorum_check_due)
            } else {
                self.timers.heartbeat_due
            }
        } else {
            self.timers.election_deadline
        };
        Some(self.read_deadline().map_or(due, |read| read.min(due)))
    }

    /// A snapshot of this server's protocol state.
    #[must_use]
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: self.role,
            term: self.hard_state.current_term,
            leader: self.leader,
            commit_index: self.commit_index,
            last_index: self.log.last_index(),
            durable_index: self.log.durable_index(),
            applied_index: self.applied_index,
            snapshot_index: self.snapshot_index(),
            first_index: self.log.first_index(),
        }
    }

    /// The newest durable snapshot, if any (rule S3).
    #[must_use]
    pub fn snapshot(&self) -> Option<SnapshotMeta> {
        self.snapshot
    }

    /// The entry at `index`, if this server's entry cache holds it (rule S9: older entries
    /// are only on the driver's disk).
    #[must_use]
    pub fn entry(&self, index: LogIndex) -> Option<&Entry> {
        self.log.entry(index)
    }

    /// Index and term of this server's last entry.
    #[must_use]
    pub fn last_position(&self) -> LogPosition {
        self.log.last_position()
    }

    /// The current term and vote (as last handed out in a `SaveHardState`, or loaded at start).
    #[must_use]
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// This server's configuration.
    #[must_use]
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether this server is running a pre-vote round (E2); its role is then still passive.
    #[must_use]
    pub fn is_pre_candidate(&self) -> bool {
        self.campaign
            .as_ref()
            .is_some_and(|campaign| campaign.pre_vote)
    }

    /// How often each election event happened since this node started.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Takes the trace bytes recorded since the last call (the first call's start with the
    /// trace's header and `start` record), so a driver can stream a long trace to files instead
    /// of keeping it in memory; `trace` then holds only what was not taken yet. Empty for a
    /// node that does not record.
    pub fn take_trace(&mut self) -> Vec<u8> {
        self.recorder
            .as_mut()
            .map(Recorder::take)
            .unwrap_or_default()
    }

    /// The input trace recorded so far (since the last [`Node::take_trace`], if any), if this
    /// node was made with [`Node::new_recorded`].
    #[must_use]
    pub fn trace(&self) -> Option<&[u8]> {
        self.recorder.as_ref().map(Recorder::bytes)
    }

    /// Asserts every invariant of this server's state; called after each input.
    pub fn invariants(&self) {
        self.log.invariants();
        let durable = self.log.durable_index();
        assert!(
            self.applied_index <= self.commit_index,
            "invariant: applied <= commit"
        );
        assert!(self.commit_index <= durable, "invariant: commit <= durable");
        assert!(
            self.commit_index <= self.commit_known,
            "invariant: commit <= known commit"
        );
        assert!(
            self.log.last_term() <= self.hard_state.current_term,
            "invariant: no log entry from a future term"
        );
        self.snapshot_invariants();
        self.fence_invariants();
        let leader_state = self.transfer.is_some() || self.catch_up.is_some();
        assert!(
            self.role == Role::Leader || (self.progress.is_empty() && !leader_state),
            "invariant: only a leader tracks followers, transfers or catches up learners"
        );
        match self.role {
            Role::Leader => {
                assert!(
                    self.leader == Some(self.config.id),
                    "invariant: a leader follows itself"
                );
                assert!(
                    self.hard_state.voted_for == Some(self.config.id),
                    "invariant: a leader voted for itself"
                );
                assert!(
                    self.campaign.is_none(),
                    "invariant: a leader does not campaign"
                );
                let configuration = self.membership.current();
                assert!(
                    self.progress.keys().copied().eq(self.peers()),
                    "invariant: a leader tracks every other member of {configuration}"
                );
                for progress in self.progress.values() {
                    progress.invariants(self.log.last_index());
                }
            }
            Role::Candidate => {
                assert!(
                    self.campaign
                        .as_ref()
                        .is_some_and(|c| !c.pre_vote && c.term == self.hard_state.current_term),
                    "invariant: a candidate campaigns for its current term"
                );
                assert!(
                    self.leader.is_none(),
                    "invariant: a candidate knows no leader"
                );
            }
            Role::Passive => {
                if let Some(campaign) = &self.campaign {
                    assert!(
                        campaign.pre_vote,
                        "invariant: a passive server only pre-votes"
                    );
                }
            }
        }
    }

    /// `base ≤ L ≤ applied` (rules S1, S4), except under an injected bug that breaks them on
    /// purpose for the simulator's checkers to catch.
    fn snapshot_invariants(&self) {
        if injected!(self) {
            return;
        }
        assert!(
            self.log.base().index <= self.snapshot_index(),
            "invariant: the log is compacted only below a durable snapshot (S4)"
        );
        assert!(
            self.snapshot_index() <= self.applied_index,
            "invariant: a snapshot covers applied entries only (S1)"
        );
        if let Some(install) = &self.install {
            assert!(
                install.held <= install.snapshot.size,
                "invariant: a transfer holds at most the file (S6)"
            );
            assert!(
                !install.finishing || install.held == install.snapshot.size,
                "invariant: a transfer finishes with the whole file (S7)"
            );
        }
    }

    /// This server's rank (E8): its log's last position, then its id.
    fn rank(&self) -> Rank {
        Rank {
            last_term: self.log.last_term(),
            last_index: self.log.last_index(),
            id: self.config.id,
        }
    }

    /// Queues a message to `to`, carrying `term`.
    fn send(&mut self, to: NodeId, term: Term, body: MessageBody) {
        self.outputs.push(Output::Send(Message {
            from: self.config.id,
            to,
            term,
            incarnation: self.incarnation,
            body,
        }));
    }

    /// Queues a `SaveHardState` of the current hard state; a directly preceding one is replaced,
    /// since the newer state supersedes it and nothing was ordered between them.
    /// Below the vote fence nothing is saved (rule F9, `vote_fence`).
    fn save_hard_state(&mut self) {
        if !self.hard_state_savable() {
            return;
        }
        if let Some(Output::SaveHardState(_)) = self.outputs.last() {
            self.outputs.pop();
        }
        self.outputs.push(Output::SaveHardState(self.hard_state));
    }

    /// The other members (voters and learners) of the configuration in force, in id order.
    fn peers(&self) -> Vec<NodeId> {
        let me = self.config.id;
        self.membership
            .current()
            .members()
            .filter(|id| *id != me)
            .collect()
    }

    fn dispatch(&mut self, now: Instant, message: Message) {
        let (from, term) = (message.from, message.term);
        match message.body {
            MessageBody::VoteRequest(request) => self.on_vote_request(now, from, term, request),
            MessageBody::VoteReply(reply) => self.on_vote_reply(now, from, term, reply),
            MessageBody::Append(append) => self.on_append(now, from, term, append),
            MessageBody::AppendReply(reply) => {
                self.on_append_reply(now, &message_meta(from, term, message.incarnation), reply);
            }
            MessageBody::InstallSnapshot(chunk) => self.on_install_snapshot(now, from, term, chunk),
            MessageBody::SnapshotReply(reply) => {
                self.on_snapshot_reply(now, &message_meta(from, term, message.incarnation), reply);
            }
            MessageBody::ReadIndexRequest(request) => {
                self.on_read_index_request(now, from, term, request);
            }
            MessageBody::ReadIndexReply(reply) => self.on_read_index_reply(now, term, reply),
            MessageBody::TimeoutNow => self.on_timeout_now(now, from, term),
        }
    }

    /// Hands the log entries appended since the last flush to the driver (one `AppendLog`).
    fn flush_log_writes(&mut self) {
        if self.log.written_index() < self.log.last_index() {
            let entries = self.log.take_unwritten();
            self.outputs.push(Output::AppendLog { entries });
        }
    }

    /// Log writes, then (leader) the Appends the windows allow, then the reads that can go on,
    /// then the cache's eviction.
    fn flush(&mut self) {
        self.flush_log_writes();
        if self.role == Role::Leader {
            self.replicate();
        }
        self.flush_reads();
        self.evict_cache();
    }

    /// Rule S9: the cache drops its oldest committed entries beyond its budget.
    fn evict_cache(&mut self) {
        if injected!(self, NeverEvictCache) {
            return;
        }
        if self.log.evict(self.commit_index) > 0 {
            hit!(s9_cache_evicts_committed_entries);
        }
    }

    fn finish_input(&mut self) {
        self.flush();
        self.invariants();
    }
}

/// Who sent a reply, for the leader's bookkeeping.
#[derive(Clone, Copy, Debug)]
struct MessageMeta {
    from: NodeId,
    term: Term,
    incarnation: Incarnation,
}

fn message_meta(from: NodeId, term: Term, incarnation: Incarnation) -> MessageMeta {
    MessageMeta {
        from,
        term,
        incarnation,
    }
}
