//! The discrete-event loop: one seeded run of a simulated cluster, checked after every step.
//!
//! Events (message deliveries, node timers, fsync completions, crashes and restarts, client
//! proposals, nemesis actions, the heal, deadlines) wait in a priority queue ordered by
//! `(global time, sequence number)`, so equal times keep their scheduling order and a seed
//! always replays the same order. Each node input is one step: call the node at its local time,
//! take its outputs, perform them in list order as output.rs requires (hard state durable at
//! once, log writes to the disk model's unsynced buffer with a group-commit sync scheduled,
//! sends to the network model, applies to the checkers), then run every checker and reschedule
//! the node's timer at `next_timeout()`.
//!
//! Phases: faults (nemesis active) until `Scenario::fault_phase_ns`; then the heal restarts every
//! crashed node and repairs the network, and within `liveness_bound_ns` some proposal made after
//! the heal must be applied on every node; then the leader is crashed and a new leader must be
//! elected within the bound again (this is the election measurement). Invariant: a run ends
//! after at most `SimOptions::step_count_max` steps.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;

use crate::error::ProposeError;
use crate::message::{Message, MessageBody};
use crate::node::{Node, Persisted, Proposal, Role, Status};
use crate::output::Output;
use crate::sim::checkers::{
    Durability, ElectionSafety, LeaderAppendOnly, LeaderCompleteness, LogMatching, Monotonicity,
    NodeView, StateMachineSafety, Violation, index_order,
};
use crate::sim::client::Client;
use crate::sim::disk::{Disk, SyncToken};
use crate::sim::network::Network;
use crate::sim::report::{ElectionSample, RunReport};
use crate::sim::rng::SimRng;
use crate::sim::scenario::{FaultProfile, Scenario, SimOptions};
use crate::sim::trace::TraceHash;
use crate::types::{Entry, Incarnation, LogIndex, LogPosition, NodeId, Term};

const MS: u64 = 1_000_000;

/// Name of the pseudo-checker for runs that do not recover after the heal.
pub const LIVENESS: &str = "liveness";
/// Name of the pseudo-checker for outputs that break output.rs's contract.
pub const OUTPUT_CONTRACT: &str = "output_contract";
/// Name of the pseudo-checker for a panic during a step: an engine assertion (the usual case)
/// or a simulator bug; the message says which assertion.
pub const PANIC: &str = "panic";

/// Runs the seed under these options and reports the outcome. Never panics: a panic in the
/// engine (a failed assertion) is reported as a `panic` violation at its simulated time.
#[must_use]
pub fn run_seed(seed: u64, options: &SimOptions) -> RunReport {
    let mut sim = Simulation::new(Scenario::from_seed(seed, options), options.clone());
    sim.run();
    sim.report()
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[derive(Debug)]
enum Event {
    Deliver(Message),
    Timer {
        slot: usize,
    },
    SyncDone {
        slot: usize,
        incarnation: Incarnation,
        token: SyncToken,
    },
    Restart {
        slot: usize,
    },
    Crash {
        slot: usize,
    },
    Nemesis,
    Client,
    Heal,
    Failover,
    Deadline,
}

/// A queue entry: the event itself waits in `EventQueue::slab`, so the heap moves 24 bytes.
#[derive(Debug, PartialEq, Eq)]
struct Scheduled {
    at: u64,
    seq: u64,
    slot: usize,
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event first; `seq` is
    /// unique, so the order is total and ties in time keep their scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events by `(time, sequence number)`.
#[derive(Debug, Default)]
struct EventQueue {
    heap: BinaryHeap<Scheduled>,
    slab: Vec<Option<Event>>,
    free: Vec<usize>,
    seq: u64,
}

impl EventQueue {
    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                self.slab.len() - 1
            }
        };
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            slot,
        });
    }

    fn pop(&mut self) -> Option<(u64, Event)> {
        let next = self.heap.pop()?;
        let event = self.slab.get_mut(next.slot)?.take()?;
        self.free.push(next.slot);
        Some((next.at, event))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Faults,
    Healed {
        since: u64,
        probe_counter: u64,
    },
    LivenessMet {
        since: u64,
    },
    Failover {
        since: u64,
        term_before: u64,
        lost: usize,
    },
    Done,
}

enum Input {
    Start,
    Tick,
    Message(Message),
    Persisted(LogPosition),
}

#[derive(Debug)]
struct Slot {
    config: crate::config::Config,
    clock: crate::sim::clock::Clock,
    node: Option<Node>,
    disk: Disk,
    incarnation: Incarnation,
    timer_at: Option<u64>,
    /// A paused node (SIGSTOP-like, scenario S8) takes no input before this global time;
    /// its deliveries, timers and fsync reports wait.
    paused_until: u64,
    /// The commit index observed after the node's last step.
    commit_index: LogIndex,
    /// The last term in which the node, as leader, was seen advancing its commit index.
    first_commit_term: Term,
    /// The last term in which the node was seen leading.
    leader_term: Term,
}

#[derive(Debug)]
struct Checkers {
    election_safety: ElectionSafety,
    leader_append_only: LeaderAppendOnly,
    log_matching: LogMatching,
    leader_completeness: LeaderCompleteness,
    durability: Durability,
    monotonicity: Monotonicity,
    state_machine: StateMachineSafety,
}

impl Checkers {
    fn new(node_count: usize) -> Checkers {
        Checkers {
            election_safety: ElectionSafety::default(),
            leader_append_only: LeaderAppendOnly,
            log_matching: LogMatching::default(),
            leader_completeness: LeaderCompleteness::default(),
            durability: Durability::default(),
            monotonicity: Monotonicity::new(node_count),
            state_machine: StateMachineSafety::new(node_count),
        }
    }
}

#[derive(Debug)]
struct Simulation {
    scenario: Scenario,
    options: SimOptions,
    now: u64,
    queue: EventQueue,
    slots: Vec<Slot>,
    network: Network,
    net_rng: SimRng,
    disk_rng: SimRng,
    nemesis_rng: SimRng,
    client_rng: SimRng,
    client: Client,
    checkers: Checkers,
    phase: Phase,
    probe_masks: BTreeMap<u64, u64>,
    leader_term_max: u64,
    trace: TraceHash,
    step_count: u64,
    delivered_count: u64,
    crash_count: u64,
    violation: Option<(Violation, u64)>,
    election: Option<ElectionSample>,
    /// The first election from a cold start, unless a fault came before it.
    cold_start: Option<ElectionSample>,
    cold_start_open: bool,
    /// Human-readable event log, kept only when `SimOptions::event_log` is on.
    event_log: Vec<String>,
}

impl Simulation {
    fn new(scenario: Scenario, options: SimOptions) -> Simulation {
        let mut rng = SimRng::new(scenario.seed ^ 0x5EED_0FA1_F0F0);
        let slots = scenario
            .configs
            .iter()
            .zip(&scenario.clocks)
            .map(|(config, clock)| Slot {
                config: config.clone(),
                clock: *clock,
                node: None,
                disk: Disk::new(),
                incarnation: Incarnation(0),
                timer_at: None,
                paused_until: 0,
                commit_index: LogIndex(0),
                first_commit_term: Term(0),
                leader_term: Term(0),
            })
            .collect();
        let n = scenario.node_count;
        Simulation {
            network: Network::new(n, scenario.faults),
            net_rng: rng.fork(),
            disk_rng: rng.fork(),
            nemesis_rng: rng.fork(),
            client_rng: rng.fork(),
            client: Client::new(scenario.seed),
            checkers: Checkers::new(n),
            scenario,
            options,
            now: 0,
            queue: EventQueue::default(),
            slots,
            phase: Phase::Faults,
            probe_masks: BTreeMap::new(),
            leader_term_max: 0,
            trace: TraceHash::default(),
            step_count: 0,
            delivered_count: 0,
            crash_count: 0,
            violation: None,
            election: None,
            cold_start: None,
            cold_start_open: true,
            event_log: Vec::new(),
        }
    }

    fn run(&mut self) {
        for slot in 0..self.slots.len() {
            self.schedule(0, Event::Restart { slot });
        }
        self.schedule(self.scenario.client_gap_ns, Event::Client);
        let gap = self.nemesis_gap();
        self.schedule(gap, Event::Nemesis);
        self.schedule(self.scenario.fault_phase_ns, Event::Heal);
        while let Some((at, event)) = self.queue.pop() {
            self.now = at;
            let outcome = catch_unwind(AssertUnwindSafe(|| self.handle(event)))
                .unwrap_or_else(|panic| Err(Violation::new(PANIC, panic_message(&*panic))));
            if let Err(violation) = outcome.and_then(|()| self.check_step_bound()) {
                self.violation = Some((violation, self.now));
                return;
            }
            if self.phase == Phase::Done {
                return;
            }
        }
    }

    fn check_step_bound(&self) -> Result<(), Violation> {
        if self.step_count <= self.options.step_count_max {
            return Ok(());
        }
        Err(Violation::new(
            LIVENESS,
            format!(
                "no progress: {} steps taken (limit {}), the engine may be spinning on a timer",
                self.step_count, self.options.step_count_max
            ),
        ))
    }

    /// Adds a line to the event log when it is on; `line` is only built then.
    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.options.event_log {
            let at = self.now;
            self.event_log.push(format!(
                "{:>6}.{:03} ms {}",
                at / MS,
                at / 1_000 % 1_000,
                line()
            ));
        }
    }

    fn schedule(&mut self, at: u64, event: Event) {
        self.queue.push(at, event);
    }

    fn nemesis_gap(&mut self) -> u64 {
        let (low, high) = self.scenario.nemesis_gap_ns;
        self.now + self.nemesis_rng.range(low, high)
    }

    fn handle(&mut self, event: Event) -> Result<(), Violation> {
        let Some(event) = self.defer_if_paused(event) else {
            return Ok(());
        };
        match event {
            Event::Deliver(message) => self.deliver(message),
            Event::Timer { slot } => self.timer(slot),
            Event::SyncDone {
                slot,
                incarnation,
                token,
            } => self.sync_done(slot, incarnation, token),
            // Restarts planned in the fault phase are void once the heal restarted everyone.
            Event::Restart { slot } if self.phase == Phase::Faults => self.restart(slot),
            Event::Restart { .. } => Ok(()),
            Event::Crash { slot } if self.phase == Phase::Faults => {
                self.crash_and_plan_restart(Some(slot));
                Ok(())
            }
            Event::Crash { .. } => Ok(()),
            Event::Nemesis => self.nemesis(),
            Event::Client => self.client_proposes(),
            Event::Heal => self.heal(),
            Event::Failover => self.start_failover(),
            Event::Deadline => self.deadline(),
        }
    }

    /// Holds back an input to a paused node until it resumes; returns the event otherwise.
    fn defer_if_paused(&mut self, event: Event) -> Option<Event> {
        let slot = match &event {
            Event::Deliver(message) => slot_of(message.to),
            Event::Timer { slot } | Event::SyncDone { slot, .. } => *slot,
            _ => return Some(event),
        };
        let resume = self.slots.get(slot)?.paused_until;
        if resume <= self.now {
            return Some(event);
        }
        if let Event::Timer { .. } = event {
            if self.slots[slot].timer_at != Some(self.now) {
                return None;
            }
            self.slots[slot].timer_at = Some(resume);
        }
        self.schedule(resume, event);
        None
    }

    fn deliver(&mut self, message: Message) -> Result<(), Violation> {
        let slot = slot_of(message.to);
        if self.slots.get(slot).is_some_and(|s| s.node.is_some()) {
            self.delivered_count += 1;
            return self.step(slot, Input::Message(message));
        }
        Ok(())
    }

    fn sync_done(
        &mut self,
        slot: usize,
        incarnation: Incarnation,
        token: SyncToken,
    ) -> Result<(), Violation> {
        let s = &mut self.slots[slot];
        if s.incarnation != incarnation || s.node.is_none() {
            return Ok(());
        }
        let durable = s.disk.complete_sync(token);
        self.step(slot, Input::Persisted(durable))
    }
}

impl Simulation {
    /// One node input, its outputs and the checks after it.
    fn step(&mut self, slot: usize, input: Input) -> Result<(), Violation> {
        let local = self.slots[slot].clock.to_local(self.now);
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Ok(());
        };
        let before = node.status();
        let tag = match input {
            Input::Start => 0,
            Input::Tick => {
                node.tick(local);
                1
            }
            Input::Message(message) => {
                hash_message(&mut self.trace, &message);
                node.on_message(local, message);
                2
            }
            Input::Persisted(position) => {
                self.trace.word(position.index.0);
                node.on_persisted(local, position);
                3
            }
        };
        self.trace.word(self.now);
        self.trace.word(tag);
        self.trace.word(u64::try_from(slot).unwrap_or(0));
        self.after_input(slot, &before)
    }

    fn after_input(&mut self, slot: usize, before: &Status) -> Result<(), Violation> {
        self.step_count += 1;
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Ok(());
        };
        node.invariants();
        let outputs = node.take_outputs();
        let after = node.status();
        for output in outputs {
            self.perform(slot, before, &after, output)?;
        }
        self.start_sync_if_needed(slot);
        self.observe(slot)?;
        self.reschedule_timer(slot);
        Ok(())
    }

    fn perform(
        &mut self,
        slot: usize,
        before: &Status,
        after: &Status,
        output: Output,
    ) -> Result<(), Violation> {
        let contract = |problem: String| {
            Violation::new(OUTPUT_CONTRACT, format!("node {}: {problem}", after.id))
        };
        match output {
            Output::SaveHardState(hard_state) => {
                self.trace.word(hard_state.current_term.0);
                self.slots[slot].disk.save_hard_state(hard_state);
            }
            Output::TruncateLog { from } => {
                self.trace.word(from.0 | 1 << 63);
                self.checkers
                    .leader_append_only
                    .observe_truncate(before, after, from)?;
                let log = self.slots[slot].disk.log();
                self.checkers
                    .durability
                    .observe_truncate(before, log, from)?;
                self.slots[slot]
                    .disk
                    .write_truncate(from)
                    .map_err(contract)?;
            }
            Output::AppendLog { entries } => {
                for entry in &entries {
                    self.trace.word(entry.index.0);
                    self.trace.word(entry.term.0);
                }
                let disk = &mut self.slots[slot].disk;
                self.checkers
                    .log_matching
                    .observe_append(after.id, disk.log(), &entries)?;
                disk.write_append(entries).map_err(contract)?;
            }
            Output::Send(message) => self.send(slot, message).map_err(contract)?,
            Output::Apply { entries } => self.apply(slot, after.id, &entries)?,
        }
        Ok(())
    }

    fn send(&mut self, slot: usize, message: Message) -> Result<(), String> {
        let target = slot_of(message.to);
        if slot_of(message.from) != slot || target == slot || target >= self.slots.len() {
            return Err(format!(
                "sent a message from node {} to node {}",
                message.from, message.to
            ));
        }
        hash_message(&mut self.trace, &message);
        self.note(|| describe_message(&message));
        let deliveries = self.network.route(&mut self.net_rng, slot, target);
        let delays = deliveries.delays_ns();
        if let [first, second] = delays {
            self.schedule(self.now + second, Event::Deliver(message.clone()));
            self.schedule(self.now + first, Event::Deliver(message));
        } else if let [only] = delays {
            self.schedule(self.now + only, Event::Deliver(message));
        }
        Ok(())
    }

    fn apply(&mut self, slot: usize, id: NodeId, entries: &[Entry]) -> Result<(), Violation> {
        let incarnation = self.slots[slot].incarnation;
        let state_machine = &mut self.checkers.state_machine;
        let applied_before = state_machine.applied().len();
        let committed = self.checkers.durability.committed();
        state_machine.observe_apply((slot, id, incarnation), entries, committed)?;
        for entry in entries {
            self.trace.word(entry.index.0);
            // State-machine safety makes every later apply at this index equal the first, so
            // the client checks the first one only.
            if usize::try_from(entry.index.0).unwrap_or(0) > applied_before {
                self.client.applied(entry)?;
                self.client.first_applied(entry);
            }
            self.note_probe(slot, entry);
        }
        Ok(())
    }

    fn start_sync_if_needed(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if !s.disk.needs_sync() {
            return;
        }
        let token = s.disk.start_sync();
        let incarnation = s.incarnation;
        let (low, high) = self.scenario.fsync_ns;
        let at = self.now + self.disk_rng.range(low, high);
        self.schedule(
            at,
            Event::SyncDone {
                slot,
                incarnation,
                token,
            },
        );
    }

    /// A node's timer event fired: tick it if its deadline has come, else wait for the deadline.
    fn timer(&mut self, slot: usize) -> Result<(), Violation> {
        if self.slots[slot].timer_at != Some(self.now) {
            return Ok(()); // Superseded by an earlier timer event, or the node crashed.
        }
        self.slots[slot].timer_at = None;
        if self.deadline_of(slot).is_some_and(|at| at <= self.now) {
            return self.step(slot, Input::Tick);
        }
        self.reschedule_timer(slot);
        Ok(())
    }

    /// The global time of the node's next deadline, if it has one.
    fn deadline_of(&self, slot: usize) -> Option<u64> {
        let s = &self.slots[slot];
        let local = s.node.as_ref()?.next_timeout()?;
        Some(s.clock.to_global(local).max(self.now))
    }

    /// Makes sure a timer event fires no later than the node's deadline. A pending event that
    /// fires earlier is kept (it re-checks the deadline when it fires), so deadlines that move
    /// later, as they do on every heartbeat, cost no queue push.
    fn reschedule_timer(&mut self, slot: usize) {
        let Some(at) = self.deadline_of(slot) else {
            return;
        };
        if self.slots[slot]
            .timer_at
            .is_some_and(|pending| pending <= at)
        {
            return;
        }
        self.slots[slot].timer_at = Some(at);
        self.schedule(at, Event::Timer { slot });
    }
}

fn slot_of(id: NodeId) -> usize {
    usize::try_from(id.0.wrapping_sub(1)).unwrap_or(usize::MAX)
}

fn describe_message(message: &Message) -> String {
    let body = match &message.body {
        MessageBody::Append(a) => format!(
            "Append prev=({}, {}) entries={} commit={}",
            a.prev_index,
            a.prev_term,
            a.entries.len(),
            a.leader_commit
        ),
        other => format!("{other:?}"),
    };
    format!(
        "send {} -> {} term {}: {body}",
        message.from, message.to, message.term
    )
}

fn hash_message(trace: &mut TraceHash, message: &Message) {
    trace.word(message.from.0 << 32 | message.to.0);
    trace.word(message.term.0);
    match &message.body {
        MessageBody::VoteRequest(r) => trace.word(r.last_index.0 << 2 | u64::from(r.pre_vote)),
        MessageBody::VoteReply(r) => trace.word(u64::from(r.reason as u8) << 2 | 1),
        MessageBody::Append(a) => {
            trace.word(a.prev_index.0 << 2 | 2);
            trace.word(u64::try_from(a.entries.len()).unwrap_or(0) << 32 | a.leader_commit.0);
        }
        MessageBody::AppendReply(r) => trace.word(match r.result {
            crate::message::AppendResult::Accepted { match_index } => match_index.0 << 2 | 3,
            crate::message::AppendResult::Rejected(h) => h.last_index.0 << 3 | 7,
        }),
    }
}

impl Simulation {
    /// Runs every checker on the node just stepped, then the phase bookkeeping.
    fn observe(&mut self, slot: usize) -> Result<(), Violation> {
        let s = &self.slots[slot];
        let Some(node) = s.node.as_ref() else {
            return Ok(());
        };
        let view = NodeView {
            slot,
            incarnation: s.incarnation,
            status: node.status(),
            log: s.disk.log(),
            durable_log: s.disk.durable_log(),
        };
        self.trace
            .word(view.status.term.0 << 2 | role_tag(view.status.role));
        self.trace.word(view.status.commit_index.0);
        let c = &mut self.checkers;
        c.election_safety.observe(&view)?;
        c.monotonicity.observe(&view)?;
        index_order::check(&view)?;
        if view.status.role == Role::Leader {
            self.leader_term_max = self.leader_term_max.max(view.status.term.0);
        }
        let raised = c.durability.observe_commit(&view)?;
        if raised && view.status.term.0 < self.leader_term_max {
            c.leader_completeness.commit_recorded();
        }
        c.leader_completeness
            .observe(&view, c.durability.committed())?;
        let status = view.status;
        self.maybe_crash_on_commit(slot, &status);
        let durable_logs = self.slots.iter().map(|s| s.disk.durable_log());
        self.checkers
            .durability
            .check_majority_durable(durable_logs)?;
        self.track_cold_start(slot, &status);
        self.track_failover(slot, &status);
        Ok(())
    }

    /// In the leader-churn profile, a new leader is crashed right after it is elected (one time
    /// in four: its no-op may not have left) or right after its first commit index advance (one
    /// time in two): crashes "at every step of R2–R5" (scenario S5), at the moments where
    /// committing by the wrong rule shows (scenario S1).
    fn maybe_crash_on_commit(&mut self, slot: usize, status: &Status) {
        let churn = self.scenario.profile == FaultProfile::LeaderChurn;
        let s = &mut self.slots[slot];
        let advanced = status.commit_index > s.commit_index;
        s.commit_index = status.commit_index;
        if !churn || status.role != Role::Leader || self.phase != Phase::Faults {
            return;
        }
        let elected = s.leader_term < status.term;
        s.leader_term = status.term;
        let first_commit = advanced && s.first_commit_term < status.term;
        if first_commit {
            s.first_commit_term = status.term;
        }
        if elected && self.nemesis_rng.chance(500_000) {
            // After its no-op is likely synced, before its Appends are likely all delivered.
            let at = self.now + self.scenario.fsync_ns.1;
            self.schedule(at, Event::Crash { slot });
        } else if first_commit && self.nemesis_rng.chance(500_000) {
            self.schedule(self.now, Event::Crash { slot });
        }
    }

    fn restart(&mut self, slot: usize) -> Result<(), Violation> {
        let local = self.slots[slot].clock.to_local(self.now);
        let s = &mut self.slots[slot];
        if s.node.is_some() {
            return Ok(());
        }
        s.incarnation = Incarnation(s.incarnation.0 + 1);
        let persisted = Persisted {
            hard_state: s.disk.hard_state(),
            entries: s.disk.durable_log().to_vec(),
            incarnation: s.incarnation,
        };
        let mut node = Node::new(s.config.clone(), persisted, local)
            .map_err(|e| Violation::new(OUTPUT_CONTRACT, format!("node {}: {e}", s.config.id)))?;
        if let Some(bug) = self.options.injected_bug {
            node.inject_bug(bug);
        }
        s.node = Some(node);
        s.timer_at = None;
        s.paused_until = 0;
        s.commit_index = LogIndex(0);
        let (id, incarnation) = (s.config.id, s.incarnation.0);
        self.note(|| format!("start node {id} incarnation {incarnation}"));
        self.trace.word(u64::try_from(slot).unwrap_or(0) | 1 << 62);
        self.step(slot, Input::Start)
    }

    fn crash(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if s.node.take().is_some() {
            s.disk.crash();
            s.timer_at = None;
            self.crash_count += 1;
            self.note(|| format!("crash node {}", slot + 1));
            self.trace.word(u64::try_from(slot).unwrap_or(0) | 1 << 61);
        }
    }

    fn live_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].node.is_some())
            .collect()
    }

    /// The live node that leads the highest term, if any.
    fn leader(&self) -> Option<(usize, Status)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n.status())))
            .filter(|(_, status)| status.role == Role::Leader)
            .max_by_key(|(_, status)| status.term)
    }

    /// The live candidate of the highest term, if any.
    fn candidate(&self) -> Option<(usize, Status)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n.status())))
            .filter(|(_, status)| status.role == Role::Candidate)
            .max_by_key(|(_, status)| status.term)
    }

    fn term_max(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.disk.hard_state().current_term.0)
            .max()
            .unwrap_or(0)
    }
}

fn role_tag(role: Role) -> u64 {
    match role {
        Role::Passive => 0,
        Role::Candidate => 1,
        Role::Leader => 2,
    }
}

impl Simulation {
    fn nemesis(&mut self) -> Result<(), Violation> {
        if self.phase != Phase::Faults {
            return Ok(());
        }
        let action = match self.scenario.profile {
            FaultProfile::Standard => self.nemesis_rng.range(0, 10),
            FaultProfile::LeaderChurn => [3, 3, 3, 3, 0, 0, 4, 6, 7, 8][self.nemesis_rng.index(10)],
        };
        self.trace.word(action | 1 << 60);
        self.note(|| format!("nemesis action {action}"));
        self.nemesis_act(action);
        let gap = self.nemesis_gap();
        self.schedule(gap, Event::Nemesis);
        Ok(())
    }

    /// Performs nemesis action `action` (0..10): crash a node, change the duplicate rate, crash
    /// the leader (or a candidate), partition in two, block one link one way and pause a node,
    /// repair links, change the loss rate.
    fn nemesis_act(&mut self, action: u64) {
        self.cold_start_open = false;
        let n = self.slots.len();
        match action {
            0..=1 => {
                // Mostly keep a majority up, so that the fault phase also exercises replication;
                // one crash in ten may take the majority down.
                let live = self.live_slots();
                let keeps_majority = 2 * live.len().saturating_sub(1) > n;
                let victim = live.get(self.nemesis_rng.index(live.len())).copied();
                if keeps_majority || self.nemesis_rng.chance(100_000) {
                    self.crash_and_plan_restart(victim);
                }
            }
            2 => {
                let mut faults = self.network.faults();
                faults.duplicate_per_million = self.nemesis_rng.range(0, 100_000);
                self.network.set_faults(faults);
            }
            3 => {
                // The leader, or else a candidate: possibly the one the others deferred to (S7).
                let victim = self
                    .leader()
                    .or_else(|| self.candidate())
                    .map(|(slot, _)| slot);
                self.crash_and_plan_restart(victim);
            }
            4..=5 => {
                let sides: Vec<bool> = (0..n).map(|_| self.nemesis_rng.chance(500_000)).collect();
                self.network.partition(&sides);
            }
            6 => {
                let from = self.nemesis_rng.index(n);
                let to = self.nemesis_rng.index(n);
                self.network.set_link_blocked(from, to, true);
                // And pause a node (often the leader) for up to two passive timeouts.
                let leader = self.leader().map(|(slot, _)| slot);
                let victim = leader.filter(|_| self.nemesis_rng.chance(500_000));
                let victim = victim.unwrap_or_else(|| self.nemesis_rng.index(n));
                let pause = self
                    .nemesis_rng
                    .range(MS, self.scenario.liveness_bound_ns / 10);
                self.slots[victim].paused_until = self.now + pause;
            }
            7..=8 => self.network.partition(&vec![true; n]),
            _ => {
                let mut faults = self.scenario.faults;
                faults.drop_per_million =
                    self.nemesis_rng.range(0, 2 * faults.drop_per_million + 1);
                self.network.set_faults(faults);
            }
        }
    }

    fn crash_and_plan_restart(&mut self, victim: Option<usize>) {
        let Some(slot) = victim else {
            return;
        };
        self.crash(slot);
        let downtime_max = match self.scenario.profile {
            FaultProfile::Standard => 1_500 * MS,
            FaultProfile::LeaderChurn => 2 * self.scenario.nemesis_gap_ns.0.max(10 * MS),
        };
        let downtime = self.nemesis_rng.range(10 * MS, downtime_max);
        self.schedule(self.now + downtime, Event::Restart { slot });
    }

    fn heal(&mut self) -> Result<(), Violation> {
        self.note(|| "heal: restart every node, repair the network".to_string());
        self.network.heal();
        for slot in 0..self.slots.len() {
            self.restart(slot)?;
        }
        self.phase = Phase::Healed {
            since: self.now,
            probe_counter: self.client.next_counter(),
        };
        self.schedule(self.now + self.scenario.liveness_bound_ns, Event::Deadline);
        Ok(())
    }

    fn client_proposes(&mut self) -> Result<(), Violation> {
        if self.phase == Phase::Done {
            return Ok(());
        }
        self.schedule(self.now + self.scenario.client_gap_ns, Event::Client);
        let live = self.live_slots();
        let patience = self.scenario.liveness_bound_ns / 20;
        if live.is_empty() || !self.client.may_propose(self.now, patience) {
            return Ok(());
        }
        if self.slots[self.client.target].node.is_none() {
            self.client.target = live[self.client_rng.index(live.len())];
        }
        let target = self.client.target;
        if self.slots[target].paused_until > self.now {
            // A paused server does not answer: the client times out and tries another.
            self.client.target = self.client_rng.index(self.slots.len());
            return Ok(());
        }
        let payload = self.client.next_payload();
        match self.propose(target, payload.clone())? {
            Ok(proposal) => self
                .client
                .accepted(proposal.index, proposal.term, &payload),
            Err(ProposeError::NotLeader {
                leader_hint: Some(id),
            }) if slot_of(id) < self.slots.len() => {
                self.client.target = slot_of(id);
            }
            Err(ProposeError::NotLeader { .. }) => {
                self.client.target = self.client_rng.index(self.slots.len());
            }
            Err(_) => {}
        }
        Ok(())
    }

    fn propose(
        &mut self,
        slot: usize,
        payload: Bytes,
    ) -> Result<Result<Proposal, ProposeError>, Violation> {
        let local = self.slots[slot].clock.to_local(self.now);
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Ok(Err(ProposeError::NotLeader { leader_hint: None }));
        };
        let before = node.status();
        let result = node.propose(local, payload);
        self.trace.word(self.now);
        self.trace.word(4);
        self.trace.word(result.as_ref().map_or(0, |p| p.index.0));
        self.after_input(slot, &before)?;
        Ok(result)
    }
}

impl Simulation {
    /// In the healed phase, notes which nodes applied a proposal made after the heal; once one
    /// such proposal is applied everywhere, liveness is met and the failover begins.
    fn note_probe(&mut self, slot: usize, entry: &Entry) {
        let Phase::Healed { probe_counter, .. } = self.phase else {
            return;
        };
        let Some(counter) = self.client.counter_of(&entry.payload) else {
            return;
        };
        if counter < probe_counter {
            return;
        }
        let everyone = (1u64 << self.slots.len()) - 1;
        let mask = self.probe_masks.entry(counter).or_insert(0);
        *mask |= 1 << slot;
        if *mask == everyone {
            self.phase = Phase::LivenessMet { since: self.now };
            self.schedule(self.now, Event::Failover);
        }
    }

    fn start_failover(&mut self) -> Result<(), Violation> {
        let Phase::LivenessMet { since } = self.phase else {
            return Ok(());
        };
        let Some((lost, leader)) = self.leader() else {
            if self.now > since + self.scenario.liveness_bound_ns {
                return Err(self.liveness_violation("no leader to crash after liveness was met"));
            }
            self.schedule(self.now + MS, Event::Failover);
            return Ok(());
        };
        self.crash(lost);
        self.phase = Phase::Failover {
            since: self.now,
            term_before: leader.term.0,
            lost,
        };
        self.schedule(self.now + self.scenario.liveness_bound_ns, Event::Deadline);
        Ok(())
    }

    /// Records the first leader of the run, if no fault came before it: the cold-start sample.
    fn track_cold_start(&mut self, slot: usize, status: &Status) {
        if !self.cold_start_open || status.role != Role::Leader {
            return;
        }
        self.cold_start_open = false;
        self.cold_start = Some(ElectionSample {
            deferral: self.slots[slot].config.deferral,
            round_count: status.term.0,
            ticks_ms: self.now / MS,
        });
    }

    fn track_failover(&mut self, slot: usize, status: &Status) {
        let Phase::Failover {
            since,
            term_before,
            lost,
        } = self.phase
        else {
            return;
        };
        if status.role != Role::Leader || status.term.0 <= term_before || slot == lost {
            return;
        }
        self.election = Some(ElectionSample {
            deferral: self.slots[slot].config.deferral,
            round_count: status.term.0 - term_before,
            ticks_ms: (self.now - since) / MS,
        });
        self.phase = Phase::Done;
    }

    fn deadline(&mut self) -> Result<(), Violation> {
        let bound = self.scenario.liveness_bound_ns;
        match self.phase {
            Phase::Healed { since, .. } if self.now >= since + bound => Err(self
                .liveness_violation("no proposal made after the heal was applied on every node")),
            Phase::Failover { since, .. } if self.now >= since + bound => {
                Err(self.liveness_violation("no new leader after the leader crashed"))
            }
            _ => Ok(()),
        }
    }

    fn liveness_violation(&self, what: &str) -> Violation {
        let nodes: Vec<String> = self
            .slots
            .iter()
            .map(|s| match &s.node {
                None => format!("node {} down", s.config.id),
                Some(node) => {
                    let st = node.status();
                    format!(
                        "node {} {:?} term {} commit {} applied {} last {}",
                        st.id, st.role, st.term, st.commit_index, st.applied_index, st.last_index
                    )
                }
            })
            .collect();
        Violation::new(
            LIVENESS,
            format!(
                "{what} within {} ms; {}",
                self.scenario.liveness_bound_ns / MS,
                nodes.join("; ")
            ),
        )
    }

    fn report(&self) -> RunReport {
        RunReport {
            seed: self.scenario.seed,
            options: self.options.clone(),
            node_count: self.scenario.node_count,
            deferral: self.scenario.configs.first().is_some_and(|c| c.deferral),
            violation: self.violation.clone(),
            event_log: self.event_log.clone(),
            trace_hash: self.trace.value(),
            step_count: self.step_count,
            message_count: self.network.sent_count,
            delivered_count: self.delivered_count,
            simulated_ns: self.now,
            crash_count: self.crash_count,
            term_max: self.term_max(),
            proposal_count: self.client.accepted_count,
            committed_count: self.client.committed_count,
            election: self.election,
            cold_start: self.cold_start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_pops_by_time_then_scheduling_order() {
        let mut queue = EventQueue::default();
        queue.push(20, Event::Nemesis);
        queue.push(10, Event::Client);
        queue.push(10, Event::Heal);
        queue.push(5, Event::Deadline);
        let order: Vec<(u64, String)> = std::iter::from_fn(|| queue.pop())
            .map(|(at, event)| (at, format!("{event:?}")))
            .collect();
        let expected = [
            (5, "Deadline"),
            (10, "Client"),
            (10, "Heal"),
            (20, "Nemesis"),
        ];
        let expected: Vec<(u64, String)> = expected
            .iter()
            .map(|(t, e)| (*t, (*e).to_string()))
            .collect();
        assert_eq!(order, expected);
        // Slots are reused after a pop, and reuse does not disturb the order.
        queue.push(3, Event::Failover);
        assert_eq!(queue.slab.len(), 4);
        assert!(matches!(queue.pop(), Some((3, Event::Failover))));
    }

    #[test]
    fn a_paused_node_gets_its_messages_when_it_resumes() {
        let options = SimOptions {
            node_count: Some(3),
            ..SimOptions::quick()
        };
        let mut sim = Simulation::new(Scenario::from_seed(9, &options), options);
        sim.slots[1].paused_until = 50 * MS;
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(1),
            incarnation: Incarnation(1),
            body: MessageBody::VoteRequest(crate::message::VoteRequest {
                last_index: LogIndex(0),
                last_term: Term(0),
                pre_vote: true,
            }),
        };
        assert!(
            sim.defer_if_paused(Event::Deliver(message.clone()))
                .is_none()
        );
        let popped = sim.queue.pop();
        assert!(matches!(popped, Some((at, Event::Deliver(m))) if at == 50 * MS && m == message));
        sim.now = 50 * MS;
        assert!(sim.defer_if_paused(Event::Deliver(message)).is_some());
    }

    #[test]
    fn every_run_ends_within_its_bounds() {
        let report = run_seed(3, &SimOptions::quick());
        assert!(report.passed(), "{report}");
        let scenario = Scenario::from_seed(3, &SimOptions::quick());
        let bound = scenario.fault_phase_ns + 2 * scenario.liveness_bound_ns;
        assert!(report.simulated_ns <= bound);
        assert!(report.election.is_some());
    }
}
