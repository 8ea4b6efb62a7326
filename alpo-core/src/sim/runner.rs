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
//!
//! The loop lives here; its concerns live in child modules: `queue` (the event queue), `step`
//! (one node input and its outputs), `observe` (the checkers after every step), `nemesis` (the
//! fault phase and the heal), `phases` (the client, liveness, failover and the report) and
//! `snapshots` (the driver's side of snapshots: taking, compacting, transferring, installing).

mod disk_faults;
mod log_reads;
mod membership;
mod nemesis;
mod observe;
mod phases;
mod queue;
mod reads;
mod snapshots;
mod step;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::message::Message;
use crate::node::Node;
use crate::sim::checkers::Violation;
use crate::sim::client::Client;
use crate::sim::disk::{Disk, SyncToken};
use crate::sim::hold::HeldMessages;
use crate::sim::network::Network;
use crate::sim::report::{ElectionSample, RunReport};
use crate::sim::rng::SimRng;
use crate::sim::scenario::{Scenario, SimOptions};
use crate::sim::state_machine::StateMachine;
use crate::sim::trace::TraceHash;
use crate::types::{Entry, Incarnation, LogIndex, LogPosition, NodeId, SnapshotMeta, Term};

use observe::Checkers;
use queue::{Event, EventQueue};

const MS: u64 = 1_000_000;

/// Mixed into the run seed for the generator of `hold_rng`.
const HOLD_SEED: u64 = 0x401D_AC20_55E5;

/// Mixed into the run seed for the generator of `read_rng`.
const READ_SEED: u64 = 0x8EAD_1DE5_0F14;

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
    SnapshotDurable(SnapshotMeta),
    SnapshotRead(snapshots::ReadAnswer),
    SnapshotInstalled(SnapshotMeta),
    SnapshotInstallFailed(SnapshotMeta),
    LogRead(log_reads::LogReadAnswer),
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
    /// The node's state machine (a digest of what it applied, or restored from a snapshot).
    state_machine: StateMachine,
    /// The node's configuration and role observed after its last step (membership profile).
    observed: (crate::membership::Configuration, crate::node::Role),
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
    /// Messages held back across terms (`FaultProfile::HoldAcrossTerms` only).
    held: HeldMessages,
    /// Draws for holding messages; a stream of its own, so that the other profiles' runs do not
    /// depend on it.
    hold_rng: SimRng,
    disk_rng: SimRng,
    nemesis_rng: SimRng,
    client_rng: SimRng,
    client: Client,
    /// Draws for the client's reads: a stream of its own.
    read_rng: SimRng,
    /// The next read's id (unique in the run).
    next_read_id: u64,
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
    /// Draws for snapshot delays and damage: a stream of its own, so that runs without
    /// snapshots draw exactly what they drew before snapshots existed.
    snapshot_rng: SimRng,
    /// Draws for log read delays (rule S9): a stream of its own.
    log_read_rng: SimRng,
    /// For the checkers: the log entries each snapshot ever taken covers, by last position.
    covered: BTreeMap<LogPosition, std::sync::Arc<[Entry]>>,
    /// Draws of the membership profile (`SimOptions::membership`): a stream of its own.
    membership_rng: SimRng,
    /// The configuration of the leader that last advanced the commit index (membership
    /// profile): the committed entry must be durable on a majority of its voters.
    commit_quorum: Option<crate::membership::Configuration>,
    /// Draws of the storage-fault profile (`SimOptions::disk_faults`): a stream of its own.
    disk_fault_rng: SimRng,
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
                state_machine: StateMachine::default(),
                observed: (
                    crate::membership::Configuration::default(),
                    crate::node::Role::Passive,
                ),
            })
            .collect();
        let n = scenario.node_count;
        let scenario_seed = scenario.seed;
        Simulation {
            network: Network::new(n, scenario.faults),
            net_rng: rng.fork(),
            held: HeldMessages::default(),
            hold_rng: SimRng::new(scenario.seed ^ HOLD_SEED),
            disk_rng: rng.fork(),
            nemesis_rng: rng.fork(),
            client_rng: rng.fork(),
            client: Client::new(scenario.seed),
            read_rng: SimRng::new(scenario.seed ^ READ_SEED),
            next_read_id: 1,
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
            snapshot_rng: SimRng::new(scenario_seed ^ snapshots::SNAPSHOT_RNG_SALT),
            log_read_rng: SimRng::new(scenario_seed ^ log_reads::READ_RNG_SALT),
            covered: BTreeMap::new(),
            membership_rng: SimRng::new(scenario_seed ^ membership::MEMBERSHIP_RNG_SALT),
            commit_quorum: None,
            disk_fault_rng: SimRng::new(scenario_seed ^ disk_faults::DISK_RNG_SALT),
        }
    }

    fn run(&mut self) {
        for slot in 0..self.slots.len() {
            self.schedule(0, Event::Restart { slot });
        }
        self.schedule(self.scenario.client_gap_ns, Event::Client);
        self.schedule(self.scenario.read_gap_ns, Event::Read);
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
            Event::Read => self.client_reads(),
            Event::Heal => self.heal(),
            Event::Failover => self.start_failover(),
            Event::Deadline => self.deadline(),
            Event::Snapshot {
                slot,
                incarnation,
                input,
            } => self.snapshot_event(slot, incarnation, input),
            Event::LogRead {
                slot,
                incarnation,
                answer,
            } => self.log_read_event(slot, incarnation, answer),
        }
    }

    /// Holds back an input to a paused node until it resumes; returns the event otherwise.
    fn defer_if_paused(&mut self, event: Event) -> Option<Event> {
        let slot = match &event {
            Event::Deliver(message) => slot_of(message.to),
            Event::Timer { slot }
            | Event::SyncDone { slot, .. }
            | Event::Snapshot { slot, .. }
            | Event::LogRead { slot, .. } => *slot,
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

fn slot_of(id: NodeId) -> usize {
    usize::try_from(id.0.wrapping_sub(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            body: crate::message::MessageBody::VoteRequest(crate::message::VoteRequest {
                last_index: LogIndex(0),
                last_term: Term(0),
                pre_vote: true,
                transfer: false,
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
