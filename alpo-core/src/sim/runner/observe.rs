//! After every step: run every checker on the node just stepped, note the phase bookkeeping,
//! and the queries over the cluster's state (live nodes, the leader, the highest term).
//!
//! Invariant: every checker sees every step of every node, in step order.

use crate::node::{Role, Status};
use crate::sim::checkers::{
    Durability, ElectionSafety, LeaderAppendOnly, LeaderCompleteness, LogMatching, Monotonicity,
    NodeView, ReadLinearizability, SnapshotEquivalence, StateMachineSafety, Violation, VoteLedger,
    cache_bound, index_order,
};

use super::queue::Event;
use super::{Phase, Simulation};

/// One instance of every safety checker.
#[derive(Debug)]
pub(super) struct Checkers {
    pub(super) election_safety: ElectionSafety,
    pub(super) leader_append_only: LeaderAppendOnly,
    pub(super) log_matching: LogMatching,
    pub(super) leader_completeness: LeaderCompleteness,
    pub(super) durability: Durability,
    pub(super) monotonicity: Monotonicity,
    pub(super) state_machine: StateMachineSafety,
    pub(super) snapshot_equivalence: SnapshotEquivalence,
    pub(super) reads: ReadLinearizability,
    pub(super) vote_ledger: VoteLedger,
}

impl Checkers {
    pub(super) fn new(node_count: usize) -> Checkers {
        Checkers {
            election_safety: ElectionSafety::default(),
            leader_append_only: LeaderAppendOnly,
            log_matching: LogMatching::default(),
            leader_completeness: LeaderCompleteness::default(),
            durability: Durability::default(),
            monotonicity: Monotonicity::new(node_count),
            state_machine: StateMachineSafety::new(node_count),
            snapshot_equivalence: SnapshotEquivalence::default(),
            reads: ReadLinearizability::default(),
            vote_ledger: VoteLedger::default(),
        }
    }
}

impl Simulation {
    /// Runs every checker on the node just stepped, then the phase bookkeeping.
    pub(super) fn observe(&mut self, slot: usize) -> Result<(), Violation> {
        let s = &self.slots[slot];
        let Some(node) = s.node.as_ref() else {
            return Ok(());
        };
        // A leader removed by the entry it just committed steps down in the same step (M9):
        // its configuration still names the quorum of that commit.
        let leading = node.status().role == Role::Leader || s.observed.1 == Role::Leader;
        let leader_configuration = leading.then(|| node.configuration());
        let known_before = self.checkers.durability.committed().last_index();
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
        cache_bound::check(&view.status, &node.log_cache())?;
        if view.status.role == Role::Leader {
            self.leader_term_max = self.leader_term_max.max(view.status.term.0);
        }
        let raised = c.durability.observe_commit(&view)?;
        let extended = c.durability.committed().last_index() > known_before;
        if extended && self.options.membership && leader_configuration.is_some() {
            self.commit_quorum = leader_configuration;
        }
        if raised && view.status.term.0 < self.leader_term_max {
            c.leader_completeness.commit_recorded();
        }
        c.leader_completeness
            .observe(&view, c.durability.committed())?;
        let status = view.status;
        self.maybe_crash_on_commit(slot, &status);
        if let Some(quorum) = &self.commit_quorum {
            let durable_logs =
                (self.slots.iter().enumerate()).map(|(i, s)| (slot_id(i), s.disk.durable_log()));
            self.checkers
                .durability
                .check_majority_durable_among(durable_logs, quorum)?;
        } else {
            let durable_logs = self.slots.iter().map(|s| s.disk.durable_log());
            self.checkers
                .durability
                .check_majority_durable(durable_logs)?;
        }
        self.track_cold_start(slot, &status);
        self.track_failover(slot, &status);
        Ok(())
    }

    /// In the leader-churn profile, a new leader is crashed right after it is elected (one time
    /// in four: its no-op may not have left) or right after its first commit index advance (one
    /// time in two): crashes "at every step of R2–R5" (scenario S5), at the moments where
    /// committing by the wrong rule shows (scenario S1).
    pub(super) fn maybe_crash_on_commit(&mut self, slot: usize, status: &Status) {
        let churn = self.scenario.profile.churns();
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

    pub(super) fn live_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].node.is_some())
            .collect()
    }

    /// The live node that leads the highest term, if any.
    pub(super) fn leader(&self) -> Option<(usize, Status)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n.status())))
            .filter(|(_, status)| status.role == Role::Leader)
            .max_by_key(|(_, status)| status.term)
    }

    /// The live candidate of the highest term, if any.
    pub(super) fn candidate(&self) -> Option<(usize, Status)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n.status())))
            .filter(|(_, status)| status.role == Role::Candidate)
            .max_by_key(|(_, status)| status.term)
    }

    pub(super) fn term_max(&self) -> u64 {
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

/// The node id of `slot` (ids are slots plus one).
fn slot_id(slot: usize) -> crate::types::NodeId {
    crate::types::NodeId(u64::try_from(slot).unwrap_or(u64::MAX) + 1)
}
