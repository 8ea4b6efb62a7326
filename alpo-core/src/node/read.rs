//! Linearizable reads without a log write: rules Q1 (ReadIndex on the leader), Q2 (follower
//! reads), Q3 (lease reads, opt-in) and Q3a (stickiness after a start) of the protocol.
//!
//! A driver asks with [`Node::read_index`]; the answer is always an output, never a return
//! value: [`Output::ReadReady`] once the read may be served from the state machine, or
//! [`Output::ReadFailed`]. The core decides when a read is served (Q1 (d)): `ReadReady` comes
//! only once `applied ≥ index`, after the `Apply` that reached the index in the output list, so
//! a driver that performs outputs in order serves the read from a state machine that holds
//! every entry up to `index`.
//!
//! # Rounds
//! Every Append a leader sends carries its current `round` (a counter per term, 0 before the
//! first round), and every AppendReply echoes the highest round its sender received in the
//! reply's term. A round is *confirmed* when a quorum of the voters of the configuration in
//! force (M5, `Configuration::is_quorum`; the leader counts with its own round only if it is a
//! voter) echoed it or a later one in the leader's term. A read that arrives
//! waits for the round after the current one: that round starts at once when no round is in
//! flight, else when the round in flight is confirmed (or at the next heartbeat, should its
//! replies be lost). So reads arriving while a round is in flight share the next one
//! (batching), and at most one round is in flight for reads.
//!
//! # Invariants
//! - A read's index is the leader's commit index at a moment after the read arrived and after
//!   an entry of the leader's term committed (Q1 (a), (b)); it is released only when a round
//!   started after its arrival is confirmed in the same term (Q1 (c)), and served only when
//!   `applied ≥ index` (Q1 (d)).
//! - Leader state (`round`, echoes, lease, waiting reads) belongs to one term: on leaving the
//!   role or the term every waiting read fails with `NotLeader` (Q1 (e)) and the state is reset.
//! - The lease (Q3) extends only from a confirmed round's start time, `s_r + L`; it is void when
//!   off, outside the leader's term, after TimeoutNow (T6, `void_lease_for_transfer`), and from
//!   the append of a `Config` entry until a round started after it is confirmed (Q3,
//!   `void_lease_for_config_change`).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

use super::{Node, Role};
use crate::injected::injected;
use crate::marks::hit;
use crate::message::{MessageBody, ReadIndexReply, ReadIndexRequest, ReadIndexResult};
use crate::output::Output;
use crate::types::{Instant, LogIndex, NodeId, Term};

/// The driver's name for one read; unique among the reads pending on one node.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ReadId(pub u64);

/// How a read is confirmed (docs/protocol.md, Reads).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadMode {
    /// ReadIndex (Q1, Q2): a round of heartbeats confirms leadership after the read arrived.
    Linearizable,
    /// Lease (Q3): served without a round while the leader's lease holds; falls back to a round
    /// when it does not (or when `Config::read_lease` is off, or on a follower).
    Lease,
}

/// Why a read failed; the client retries, at the leader if a hint is given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadError {
    /// No leader could confirm the read: this server is not the leader and knows none, or the
    /// leader lost its role or term before confirming (Q1 (e)).
    NotLeader {
        /// The leader this server believes in now, if any.
        leader_hint: Option<NodeId>,
    },
    /// A follower's request for a read index was not answered within the shortest passive
    /// timeout (Q2): the request or its answer was lost, or the leader is gone.
    TimedOut,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotLeader {
                leader_hint: Some(id),
            } => write!(f, "no read index: not the leader; the leader is node {id}"),
            ReadError::NotLeader { leader_hint: None } => {
                write!(f, "no read index: not the leader; no leader is known")
            }
            ReadError::TimedOut => write!(f, "no read index: the leader did not answer in time"),
        }
    }
}

impl std::error::Error for ReadError {}

/// Rounds whose start times are kept for the lease at most; older ones are dropped (which only
/// shortens the lease).
const ROUND_STARTS_MAX: usize = 1024;

/// Who asked for a read the leader confirms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Origin {
    /// The leader's own driver.
    Local(ReadId),
    /// A follower's `ReadIndexRequest` (Q2).
    Remote { from: NodeId, read_id: u64 },
}

/// A read at the leader, waiting for Q1 (a) and (c).
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Waiting {
    origin: Origin,
    /// `None` until an entry of the leader's term is committed (Q1 (a)).
    index: Option<LogIndex>,
    /// The round that must be confirmed (started after the read arrived).
    round: u64,
}

/// The read state of one node (see the module documentation).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Reads {
    /// The term the leader state below belongs to (0: none).
    leader_term: Term,
    /// Leader: the last round started in `leader_term`.
    round: u64,
    /// Leader: the highest round confirmed by a majority.
    confirmed: u64,
    /// Leader: the highest round each follower echoed in `leader_term`.
    echoed: BTreeMap<NodeId, u64>,
    /// Leader: when each unconfirmed round started (leader time), for the lease.
    round_starts: VecDeque<(u64, Instant)>,
    /// Leader: the lease's end (Q3), if a confirmed round gave one.
    lease_until: Option<Instant>,
    /// Leader: TimeoutNow was sent in `leader_term`: no lease read for the rest of the term
    /// (rule T6; set by leadership transfer through `Node::void_lease_for_transfer`).
    lease_void_by_transfer: bool,
    /// Leader: reads waiting for Q1 (a) and (c).
    waiting: Vec<Waiting>,
    /// Local reads with a confirmed index, waiting for `applied ≥ index` (Q1 (d)).
    applying: Vec<(ReadId, LogIndex)>,
    /// Follower: reads whose index was asked of the leader, with their deadline (Q2).
    asked: BTreeMap<ReadId, Instant>,
    /// Follower: the highest round received from the leader of this term, echoed in replies.
    follower_round: (Term, u64),
    /// Q3a: with leases on, votes and pre-votes are refused until this instant after a start.
    sticky_until: Option<Instant>,
}

impl Reads {
    /// Q3a: with leases on, a server starts as if it had just heard from a leader.
    pub(super) fn new(
        now: Instant,
        lease: bool,
        passive_timeout_min: std::time::Duration,
    ) -> Reads {
        Reads {
            sticky_until: lease.then(|| now + passive_timeout_min),
            ..Reads::default()
        }
    }
}

impl Node {
    /// A client asks for a linearizable read (rules Q1, Q2, Q3). The answer comes as an output:
    /// `ReadReady { id, index }` once the state machine has applied up to `index` (serve the
    /// read when performing that output), or `ReadFailed { id, error }`.
    ///
    /// On the leader the read is confirmed by a round (or, in `ReadMode::Lease`, by its lease);
    /// on a follower the leader is asked for the index (Q2). `id` must not be pending already.
    pub fn read_index(&mut self, now: Instant, id: ReadId, mode: ReadMode) {
        if let Some(recorder) = &mut self.recorder {
            recorder.read_index(now, id, mode);
        }
        self.flush_log_writes();
        self.start_read(now, id, mode);
        self.finish_input();
    }

    /// Rule T6's hook for leadership transfer: once this leader has sent TimeoutNow it serves
    /// no lease read for the rest of its term.
    pub fn void_lease_for_transfer(&mut self) {
        self.enter_read_term();
        self.reads.lease_void_by_transfer = true;
        self.reads.lease_until = None;
    }

    /// Rule Q3's configuration clause: a leader that appends a `Config` entry serves no lease
    /// read until a round started after the append is confirmed (the new voters must back it).
    pub(super) fn void_lease_for_config_change(&mut self) {
        self.enter_read_term();
        if self.reads.lease_until.is_some() {
            hit!(q3_lease_void_on_config_entry);
        }
        self.reads.lease_until = None;
        // Rounds already started were sent to the old voters: none of them may extend it.
        self.reads.round_starts.clear();
    }

    /// Whether the lease (Q3) lets this leader serve a read at `now` without a round.
    #[must_use]
    pub fn holds_read_lease(&self, now: Instant) -> bool {
        self.config.read_lease.is_some()
            && self.role == Role::Leader
            && self.reads.leader_term == self.hard_state.current_term
            && !self.reads.lease_void_by_transfer
            && self.reads.lease_until.is_some_and(|until| now < until)
    }

    fn start_read(&mut self, now: Instant, id: ReadId, mode: ReadMode) {
        if self.role == Role::Leader {
            self.leader_read(now, Origin::Local(id), mode);
            return;
        }
        match self.leader {
            Some(leader) => {
                hit!(q2_follower_asks_leader_for_read_index);
                let deadline = now + self.config.passive_timeout_min;
                self.reads.asked.insert(id, deadline);
                let request = ReadIndexRequest { read_id: id.0 };
                let term = self.hard_state.current_term;
                self.send(leader, term, MessageBody::ReadIndexRequest(request));
            }
            None => {
                hit!(q1_read_refused_no_leader);
                self.fail_read(id, ReadError::NotLeader { leader_hint: None });
            }
        }
    }

    /// Resets the leader state when it belongs to another term than the current one.
    fn enter_read_term(&mut self) {
        let term = self.hard_state.current_term;
        if self.reads.leader_term != term {
            let kept = Reads {
                applying: std::mem::take(&mut self.reads.applying),
                asked: std::mem::take(&mut self.reads.asked),
                follower_round: self.reads.follower_round,
                sticky_until: self.reads.sticky_until,
                leader_term: term,
                ..Reads::default()
            };
            self.reads = kept;
        }
    }

    /// Q1 (a): an entry of the leader's current term is committed.
    fn term_committed(&self) -> bool {
        self.log.term_at(self.commit_known) == Some(self.hard_state.current_term)
    }

    /// Rule Q1 (and Q3) at the leader, for its own read or a follower's (Q2).
    fn leader_read(&mut self, now: Instant, origin: Origin, mode: ReadMode) {
        self.enter_read_term();
        let committed = self.term_committed();
        if mode == ReadMode::Lease && committed && self.holds_read_lease(now) {
            hit!(q3_lease_read_without_round);
            self.read_confirmed(origin, self.commit_known);
            return;
        }
        if self.injected_read_without_round(committed) {
            self.read_confirmed(origin, self.commit_known);
            return;
        }
        if !committed {
            hit!(q1_read_waits_for_term_commit);
        }
        let round = self.reads.round + 1;
        self.reads.waiting.push(Waiting {
            origin,
            index: committed.then_some(self.commit_known),
            round,
        });
        if self.reads.confirmed >= self.reads.round {
            self.start_round(now);
        } else {
            hit!(q1_read_shares_next_round);
        }
    }

    /// `InjectedBug::ReadWithoutRound`: serve at the commit index without Q1 (c).
    fn injected_read_without_round(&self, committed: bool) -> bool {
        committed && injected!(self, ReadWithoutRound)
    }

    /// Starts a round: every follower the leader streams to gets an empty Append carrying it.
    fn start_round(&mut self, now: Instant) {
        hit!(q1_round_started);
        self.bump_round(now);
        self.send_empty_appends();
        self.confirm_rounds(now);
    }

    fn bump_round(&mut self, now: Instant) {
        self.enter_read_term();
        self.reads.round += 1;
        if self.reads.round_starts.len() == ROUND_STARTS_MAX {
            self.reads.round_starts.pop_front();
        }
        self.reads.round_starts.push_back((self.reads.round, now));
    }

    /// Called before a heartbeat (R7): the heartbeat starts a new round when reads wait for one
    /// (their round's replies may be lost) or when leases are on (it renews the lease).
    pub(super) fn heartbeat_round(&mut self, now: Instant) {
        self.enter_read_term();
        let wanted = self
            .reads
            .waiting
            .iter()
            .any(|read| read.round > self.reads.round);
        if wanted || self.config.read_lease.is_some() {
            self.bump_round(now);
            // A leader that is a majority by itself (one voter) confirms the round at once: no
            // AppendReply will (without this, its reads waited for the round forever).
            if self.confirm_rounds_alone(now) {
                hit!(q1_round_confirmed_alone);
            }
        }
    }

    /// Confirms the rounds the leader's own echo makes a quorum for; true if it confirmed one.
    fn confirm_rounds_alone(&mut self, now: Instant) -> bool {
        let before = self.reads.confirmed;
        self.confirm_rounds(now);
        self.reads.confirmed > before
    }

    /// The round an Append sent now carries (0 outside the leader's read term).
    pub(super) fn append_round(&self) -> u64 {
        if self.reads.leader_term == self.hard_state.current_term {
            self.reads.round
        } else {
            0
        }
    }

    /// Follower: an Append of the leader of `term` (our current term) carried `round`.
    pub(super) fn note_append_round(&mut self, term: Term, round: u64) {
        let (seen_term, seen) = self.reads.follower_round;
        self.reads.follower_round = if seen_term == term {
            (term, seen.max(round))
        } else {
            (term, round)
        };
    }

    /// The round an AppendReply sent now echoes: the highest received in our current term.
    pub(super) fn echo_round(&self) -> u64 {
        let (term, round) = self.reads.follower_round;
        if term == self.hard_state.current_term {
            round
        } else {
            0
        }
    }

    /// Leader: a follower's reply of our term echoed `round` (Q1 (c)).
    pub(super) fn on_round_echo(&mut self, now: Instant, from: NodeId, round: u64) {
        if self.reads.leader_term != self.hard_state.current_term || round == 0 {
            return;
        }
        let echoed = self.reads.echoed.entry(from).or_insert(0);
        if round <= *echoed {
            return;
        }
        *echoed = round;
        self.confirm_rounds(now);
    }

    /// Q1 (c): the highest round echoed by a quorum of voters (M5; the leader counts with its own
    /// round if it is a voter);
    /// extends the lease (Q3), releases the reads it confirms and starts the next round if
    /// reads wait for it.
    fn confirm_rounds(&mut self, now: Instant) {
        // M5: the voters of the configuration in force confirm; the leader counts (with its own
        // round) only if it is one of them.
        let me = self.config.id;
        let configuration = self.membership.current();
        let round_of = |id: NodeId| {
            if id == me {
                self.reads.round
            } else {
                self.reads.echoed.get(&id).copied().unwrap_or(0)
            }
        };
        let mut rounds: Vec<u64> = configuration.voters().map(round_of).collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds.dedup();
        let confirmed = rounds
            .into_iter()
            .find(|&round| {
                configuration.is_quorum(configuration.voters().filter(|&id| round_of(id) >= round))
            })
            .unwrap_or(0);
        if confirmed <= self.reads.confirmed {
            return;
        }
        hit!(q1_round_confirmed_by_majority);
        self.reads.confirmed = confirmed;
        let mut started = None;
        while let Some(&(round, at)) = self.reads.round_starts.front() {
            if round > confirmed {
                break;
            }
            started = Some(at);
            self.reads.round_starts.pop_front();
        }
        if let (Some(lease), Some(at)) = (self.config.read_lease, started)
            && !self.reads.lease_void_by_transfer
        {
            let until = at + lease.length(&self.config);
            self.reads.lease_until = Some(self.reads.lease_until.map_or(until, |u| u.max(until)));
        }
        self.release_confirmed_reads();
        let wanted = self
            .reads
            .waiting
            .iter()
            .any(|read| read.round > self.reads.round);
        if wanted {
            self.start_round(now);
        }
    }

    /// Reads whose round is confirmed and whose index is known go on to Q1 (d).
    fn release_confirmed_reads(&mut self) {
        let confirmed = self.reads.confirmed;
        let (ready, waiting): (Vec<Waiting>, Vec<Waiting>) =
            std::mem::take(&mut self.reads.waiting)
                .into_iter()
                .partition(|read| read.round <= confirmed && read.index.is_some());
        self.reads.waiting = waiting;
        for read in ready {
            if let Some(index) = read.index {
                self.read_confirmed(read.origin, index);
            }
        }
    }

    /// A read is confirmed at `index`: the leader's own waits for its apply; a follower's gets
    /// its index (Q2).
    fn read_confirmed(&mut self, origin: Origin, index: LogIndex) {
        match origin {
            Origin::Local(id) => self.reads.applying.push((id, index)),
            Origin::Remote { from, read_id } => {
                hit!(q2_leader_answers_read_index);
                let reply = ReadIndexReply {
                    read_id,
                    result: ReadIndexResult::Ready(index),
                };
                let term = self.hard_state.current_term;
                self.send(from, term, MessageBody::ReadIndexReply(reply));
            }
        }
    }

    fn fail_read(&mut self, id: ReadId, error: ReadError) {
        self.outputs.push(Output::ReadFailed { id, error });
    }

    /// Rule Q2 at the leader: a follower asks for a read index.
    pub(super) fn on_read_index_request(
        &mut self,
        now: Instant,
        from: NodeId,
        term: Term,
        request: ReadIndexRequest,
    ) {
        if term > self.hard_state.current_term {
            self.adopt_term(now, term);
        }
        let current = self.hard_state.current_term;
        if self.role != Role::Leader || term != current {
            hit!(q2_read_index_refused_not_leader);
            let reply = ReadIndexReply {
                read_id: request.read_id,
                result: ReadIndexResult::NotLeader,
            };
            self.send(from, current, MessageBody::ReadIndexReply(reply));
            return;
        }
        let origin = Origin::Remote {
            from,
            read_id: request.read_id,
        };
        self.leader_read(now, origin, ReadMode::Linearizable);
    }

    /// Rule Q2 at the follower: the leader's answer. A `Ready` index is valid whatever our term
    /// now: the leader confirmed it led after our request arrived.
    pub(super) fn on_read_index_reply(&mut self, now: Instant, term: Term, reply: ReadIndexReply) {
        if term > self.hard_state.current_term {
            self.adopt_term(now, term);
        }
        let id = ReadId(reply.read_id);
        if self.reads.asked.remove(&id).is_none() {
            return;
        }
        match reply.result {
            ReadIndexResult::Ready(index) => {
                hit!(q2_follower_waits_for_its_apply);
                self.reads.applying.push((id, index));
            }
            ReadIndexResult::NotLeader => {
                let leader_hint = self.leader.filter(|leader| *leader != self.config.id);
                self.fail_read(id, ReadError::NotLeader { leader_hint });
            }
        }
    }

    /// Follower reads whose leader did not answer in time fail (Q2).
    pub(super) fn expire_reads(&mut self, now: Instant) {
        let expired: Vec<ReadId> = self
            .reads
            .asked
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            hit!(q2_unanswered_read_times_out);
            self.reads.asked.remove(&id);
            self.fail_read(id, ReadError::TimedOut);
        }
    }

    /// The earliest deadline of a follower read, if any.
    pub(super) fn read_deadline(&self) -> Option<Instant> {
        self.reads.asked.values().min().copied()
    }

    /// Rule Q3a: with leases on, a server refuses votes and pre-votes for `P_min` after a start.
    pub(super) fn sticky_after_start(&self, now: Instant) -> bool {
        self.reads.sticky_until.is_some_and(|until| now < until)
    }

    /// At the end of every input: Q1 (e) (a leader that lost its role or term fails its
    /// waiting reads), Q1 (a) (reads get their index once the term's entry commits) and
    /// Q1 (d) (reads whose index is applied are served, after the `Apply` that reached it).
    pub(super) fn flush_reads(&mut self) {
        let leading =
            self.role == Role::Leader && self.reads.leader_term == self.hard_state.current_term;
        if !leading && !self.reads.waiting.is_empty() {
            hit!(q1_reads_fail_when_leadership_ends);
            let leader_hint = self.leader.filter(|leader| *leader != self.config.id);
            let term = self.hard_state.current_term;
            for read in std::mem::take(&mut self.reads.waiting) {
                match read.origin {
                    Origin::Local(id) => self.fail_read(id, ReadError::NotLeader { leader_hint }),
                    Origin::Remote { from, read_id } => {
                        let reply = ReadIndexReply {
                            read_id,
                            result: ReadIndexResult::NotLeader,
                        };
                        self.send(from, term, MessageBody::ReadIndexReply(reply));
                    }
                }
            }
        }
        if leading && self.term_committed() {
            let commit = self.commit_known;
            let mut indexed = false;
            for read in &mut self.reads.waiting {
                if read.index.is_none() {
                    read.index = Some(commit);
                    indexed = true;
                }
            }
            if indexed {
                hit!(q1_read_indexed_once_term_commits);
                self.release_confirmed_reads();
            }
        }
        if self.reads.applying.is_empty() {
            return;
        }
        let applied = self.applied_index;
        let (ready, applying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads.applying)
            .into_iter()
            .partition(|(_, index)| *index <= applied);
        self.reads.applying = applying;
        for (id, index) in ready {
            hit!(q1_read_served_once_applied);
            self.outputs.push(Output::ReadReady { id, index });
        }
    }
}
