//! One node input and its outputs: call the node at its local time, perform the outputs in
//! list order as output.rs requires (hard state durable at once, log writes to the disk
//! model's unsynced buffer with a group-commit sync scheduled, sends to the network model,
//! applies to the checkers), then check and reschedule the node's timer; and the node's start
//! and crash.
//!
//! Invariant: every output is performed in the order the node listed it, and every send and
//! write enters the run's trace hash.

use crate::message::{AppendResult, Message, MessageBody};
use crate::node::{Node, Role, Status};
use crate::output::Output;
use crate::sim::checkers::Violation;
use crate::sim::trace::TraceHash;
use crate::types::{Entry, EntryKind, Incarnation, LogIndex, NodeId};
use crate::types::{Persisted, PersistedLog, TermRunsBuilder};

use super::queue::Event;
use super::{Input, MS, OUTPUT_CONTRACT, Phase, Simulation, slot_of};

/// Chance, per million messages sent in the fault phase, that the network holds one back
/// across terms (`FaultProfile::HoldAcrossTerms`).
const HOLD_PER_MILLION: u64 = 100_000;

/// Chance, per million acknowledgements of entries their leader has not yet made durable, that
/// the leader crashes at once (`FaultProfile::HoldAcrossTerms`; the acknowledgement is held).
const CRASH_ON_EARLY_ACK_PER_MILLION: u64 = 500_000;

impl Simulation {
    /// One node input, its outputs and the checks after it.
    pub(super) fn step(&mut self, slot: usize, input: Input) -> Result<(), Violation> {
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
            Input::SnapshotDurable(meta) => {
                node.on_snapshot_durable(local, meta);
                4
            }
            Input::SnapshotRead(answer) => {
                let (to, snapshot, offset) = (answer.to, answer.snapshot, answer.offset);
                node.on_snapshot_read(local, to, snapshot, offset, answer.result);
                5
            }
            Input::SnapshotInstalled(meta) => {
                node.on_snapshot_installed(local, meta);
                6
            }
            Input::SnapshotInstallFailed(meta) => {
                node.on_snapshot_install_failed(local, meta);
                7
            }
            Input::LogRead(answer) => {
                self.trace.word(answer.id.0);
                // The simulated disk is never damaged, so a fault is the core's bug.
                if let Err(fault) = node.on_log_read(local, answer.id, answer.result) {
                    let problem = format!("node {}: {fault}", before.id);
                    return Err(Violation::new(OUTPUT_CONTRACT, problem));
                }
                8
            }
        };
        self.trace.word(self.now);
        self.trace.word(tag);
        self.trace.word(u64::try_from(slot).unwrap_or(0));
        self.after_input(slot, &before)
    }

    pub(super) fn after_input(&mut self, slot: usize, before: &Status) -> Result<(), Violation> {
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
        if self.options.membership {
            let (configuration, role) = self.slots[slot].observed;
            self.check_configuration(slot, role, configuration)?;
        }
        // `observed` still holds the role before this step while the checkers run.
        self.observe(slot)?;
        if let Some(node) = self.slots[slot].node.as_ref() {
            self.slots[slot].observed = (node.configuration(), node.status().role);
        }
        self.release_held(slot);
        self.reschedule_timer(slot);
        Ok(())
    }

    pub(super) fn perform(
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
                self.checkers
                    .vote_ledger
                    .observe_hard_state(after.id, hard_state)?;
                self.slots[slot].disk.save_hard_state(hard_state);
            }
            Output::SaveTermCeiling { ceiling } => {
                self.trace.word(ceiling.0 | 1 << 58);
                self.slots[slot].disk.save_term_ceiling(ceiling);
            }
            Output::TruncateLog { from } => {
                self.trace.word(from.0 | 1 << 63);
                self.checkers
                    .leader_append_only
                    .observe_truncate(before, after, from)?;
                let disk = &self.slots[slot].disk;
                // Entries a durable snapshot covers stay (rule S7: an install's truncation).
                let kept_from = from.max(disk.snapshot_index().next());
                self.checkers
                    .durability
                    .observe_truncate(before, disk.log(), kept_from)?;
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
            Output::Send(message) => {
                self.checkers.vote_ledger.observe_send(&message)?;
                self.send(slot, message).map_err(contract)?;
            }
            Output::Apply { entries } => self.apply(slot, after.id, &entries)?,
            Output::ReadLog {
                id,
                from,
                to,
                max_bytes,
            } => self.read_log(slot, after.id, (id, from, to, max_bytes))?,
            Output::ReadReady { id, index } => {
                self.read_served(slot, id, index, after.commit_index)?;
            }
            Output::ReadFailed { id, .. } => self.read_failed(slot, id),
            // Issue 13: the simulated disk damages no entry yet, so no node has a faulty entry
            // to repair: a repair is a contract breach.
            Output::RepairEntry { entry } => {
                return Err(contract(format!(
                    "RepairEntry at {} while the simulated disk damaged no entry",
                    entry.index
                )));
            }
            // The simulated network reaches every slot; membership is observed after the step.
            Output::Membership { .. } | Output::ConfigChange { .. } => {}
            other => self.perform_snapshot_output(slot, after.id, other)?,
        }
        Ok(())
    }

    pub(super) fn send(&mut self, slot: usize, message: Message) -> Result<(), String> {
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
        let ahead = self.acknowledges_past_leader_durable(target, &message);
        if ahead && self.hold_rng.chance(CRASH_ON_EARLY_ACK_PER_MILLION) {
            self.schedule(self.now, Event::Crash { slot: target });
        }
        if !delays.is_empty() && (ahead || self.holds_now()) {
            let release = message.term.0 + 2;
            self.trace.word(release | 1 << 59);
            self.note(|| format!("hold until term {release}: {}", describe_message(&message)));
            self.held.hold(target, message, release);
            return Ok(());
        }
        if let [first, second] = delays {
            self.schedule(self.now + second, Event::Deliver(message.clone()));
            self.schedule(self.now + first, Event::Deliver(message));
        } else if let [only] = delays {
            self.schedule(self.now + only, Event::Deliver(message));
        }
        Ok(())
    }

    /// Whether this run's network holds messages across terms now (in the fault phase).
    fn holds_across_terms(&self) -> bool {
        self.scenario.profile.holds_across_terms() && self.phase == Phase::Faults
    }

    /// Whether the network holds the message being sent back across terms.
    fn holds_now(&mut self) -> bool {
        self.holds_across_terms() && self.hold_rng.chance(HOLD_PER_MILLION)
    }

    /// Whether `message` acknowledges entries its recipient leads with but has not yet made
    /// durable itself: the moment when a crash of the leader loses entries a follower holds.
    fn acknowledges_past_leader_durable(&self, target: usize, message: &Message) -> bool {
        let MessageBody::AppendReply(reply) = &message.body else {
            return false;
        };
        let AppendResult::Accepted { match_index } = reply.result else {
            return false;
        };
        let status = self.slots[target].node.as_ref().map(Node::status);
        self.holds_across_terms()
            && status.is_some_and(|s| s.role == Role::Leader && s.durable_index < match_index)
    }

    /// Delivers the held messages to the node in `slot` whose release term its term reached,
    /// each after a random delay of up to a longest passive timeout.
    fn release_held(&mut self, slot: usize) {
        if self.held.is_empty() {
            return;
        }
        let Some(status) = self.slots[slot].node.as_ref().map(Node::status) else {
            return;
        };
        // A leader gets its held messages as soon as it leads again in a later term; other
        // servers two terms later.
        let term = if status.role == Role::Leader {
            status.term.0 + 1
        } else {
            status.term.0
        };
        for message in self.held.release(slot, term) {
            let delay = self
                .hold_rng
                .range(MS, self.scenario.liveness_bound_ns / 20);
            self.trace.word(delay | 1 << 58);
            self.note(|| format!("release at term {term}: {}", describe_message(&message)));
            self.schedule(self.now + delay, Event::Deliver(message));
        }
    }

    pub(super) fn apply(
        &mut self,
        slot: usize,
        id: NodeId,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        let incarnation = self.slots[slot].incarnation;
        let state_machine = &mut self.checkers.state_machine;
        let applied_before = state_machine.applied().len();
        let committed = self.checkers.durability.committed();
        state_machine.observe_apply((slot, id, incarnation), entries, committed)?;
        self.apply_to_state_machine(slot, id, entries)?;
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
        if let Some(last) = entries.last() {
            self.checkers.reads.observe_applied(last.index);
        }
        Ok(())
    }

    pub(super) fn start_sync_if_needed(&mut self, slot: usize) {
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
    pub(super) fn timer(&mut self, slot: usize) -> Result<(), Violation> {
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
    pub(super) fn deadline_of(&self, slot: usize) -> Option<u64> {
        let s = &self.slots[slot];
        let local = s.node.as_ref()?.next_timeout()?;
        Some(s.clock.to_global(local).max(self.now))
    }

    /// Makes sure a timer event fires no later than the node's deadline. A pending event that
    /// fires earlier is kept (it re-checks the deadline when it fires), so deadlines that move
    /// later, as they do on every heartbeat, cost no queue push.
    pub(super) fn reschedule_timer(&mut self, slot: usize) {
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

    pub(super) fn restart(&mut self, slot: usize) -> Result<(), Violation> {
        let local = self.slots[slot].clock.to_local(self.now);
        let s = &mut self.slots[slot];
        if s.node.is_some() {
            return Ok(());
        }
        s.incarnation = Incarnation(s.incarnation.0 + 1);
        // S9: the term index of the stored log, and no entries: the node reads what it needs.
        let mut runs = TermRunsBuilder::default();
        for entry in s.disk.stored_log() {
            runs.push(entry.index, entry.term);
        }
        let (runs, last) = runs.finish();
        // M1: the Config entries past the snapshot, as a driver's recovery scan collects them.
        let covered = s
            .disk
            .snapshot()
            .map_or(LogIndex(0), |file| file.meta.last.index);
        let configs = s
            .disk
            .stored_log()
            .iter()
            .filter(|entry| entry.kind == EntryKind::Config && entry.index > covered)
            .cloned()
            .collect();
        // F8, F9: a valid copy of the hard state, or none (then the ceiling fences votes).
        let (hard_state, term_ceiling) = s.disk.load_hard_state();
        if hard_state.is_none() {
            self.checkers.monotonicity.forget_term(slot);
        }
        let s = &mut self.slots[slot];
        let persisted = Persisted {
            hard_state: hard_state.unwrap_or_default(),
            snapshot: s.disk.snapshot().map(|file| file.meta),
            log: PersistedLog {
                runs,
                last,
                tail: Vec::new(),
                configs,
                faulty: Vec::new(),
            },
            incarnation: s.incarnation,
            term_ceiling,
            hard_state_lost: hard_state.is_none(),
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
        self.restore_at_start(slot)?;
        self.note(|| format!("start node {id} incarnation {incarnation}"));
        self.trace.word(u64::try_from(slot).unwrap_or(0) | 1 << 62);
        self.step(slot, Input::Start)
    }

    pub(super) fn crash(&mut self, slot: usize) {
        let s = &mut self.slots[slot];
        if s.node.take().is_some() {
            self.reads_lost(slot);
            let s = &mut self.slots[slot];
            s.disk.crash();
            s.timer_at = None;
            self.rot_hard_state_at_crash(slot);
            self.crash_count += 1;
            self.note(|| format!("crash node {}", slot + 1));
            self.trace.word(u64::try_from(slot).unwrap_or(0) | 1 << 61);
        }
    }
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
            trace.word(a.round);
        }
        MessageBody::AppendReply(r) => trace.word(match r.result {
            crate::message::AppendResult::Accepted { match_index } => match_index.0 << 2 | 3,
            crate::message::AppendResult::Rejected(h) => h.last_index.0 << 3 | 7,
        }),
        MessageBody::InstallSnapshot(chunk) => {
            trace.word(chunk.snapshot.last.index.0 << 3 | 4);
            trace.word(chunk.offset);
        }
        MessageBody::SnapshotReply(reply) => trace.word(match reply.result {
            crate::message::SnapshotResult::NextOffset(held) => held << 3 | 5,
            crate::message::SnapshotResult::Installed(index) => index.0 << 3 | 6,
        }),
        MessageBody::ReadIndexRequest(request) => trace.word(request.read_id << 3 | 1),
        MessageBody::ReadIndexReply(reply) => trace.word(match reply.result {
            crate::message::ReadIndexResult::Ready(index) => index.0 << 3 | 2,
            crate::message::ReadIndexResult::NotLeader => reply.read_id << 3 | 3,
        }),
        MessageBody::TimeoutNow => trace.word(7),
        MessageBody::FetchEntry(fetch) => trace.word(fetch.position.index.0 << 3 | 4),
        MessageBody::FetchReply(reply) => trace.word(reply.position.index.0 << 3 | 5),
    }
}
