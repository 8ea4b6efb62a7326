//! The membership profile (`SimOptions::membership`, issue 12): during the fault phase the
//! nemesis asks the current leader for a random membership change or a leadership transfer,
//! so that configurations change under crashes, partitions and message loss; after each step
//! the configuration checker looks at what the leader did.
//!
//! Invariant: every draw comes from `membership_rng`, so runs without the profile draw exactly
//! what they drew before it existed. Every slot is a possible member: the initial configuration
//! holds them all as voters, and removed servers keep running (rule M10: they must stay
//! harmless), so clusters shrink to one voter and grow back.

use crate::membership::{ConfigChange, Configuration};
use crate::node::Role;
use crate::sim::checkers::{Violation, configuration_safety};
use crate::types::{EntryKind, NodeId};

use super::Simulation;

/// Mixed into the run seed for `membership_rng`.
pub(super) const MEMBERSHIP_RNG_SALT: u64 = 0x4D45_4D42_3132;

impl Simulation {
    /// Asks the leader, if any, for one membership change or a transfer, drawn at random.
    pub(super) fn membership_act(&mut self) -> Result<(), Violation> {
        let Some((slot, _)) = self.leader() else {
            return Ok(());
        };
        let local = self.slots[slot].clock.to_local(self.now);
        let n = self.slots.len();
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Ok(());
        };
        let configuration = node.configuration();
        let me = node.status().id;
        let outsiders: Vec<NodeId> = (1..=n as u64)
            .map(NodeId)
            .filter(|id| !configuration.contains(*id))
            .collect();
        let learners: Vec<NodeId> = configuration.learners().collect();
        let members: Vec<NodeId> = configuration.members().collect();
        let rng = &mut self.membership_rng;
        let pick = |rng: &mut crate::sim::rng::SimRng, list: &[NodeId]| {
            (!list.is_empty()).then(|| list[rng.index(list.len())])
        };
        let change = match rng.range(0, 6) {
            0 | 1 => pick(rng, &outsiders).map(ConfigChange::AddLearner),
            2 => pick(rng, &learners).map(ConfigChange::Promote),
            3 => pick(rng, &members).map(ConfigChange::Remove),
            4 => Some(ConfigChange::Remove(me)),
            _ => None,
        };
        let before = node.status();
        match change {
            Some(change) => {
                let _ = node.propose_config_change(local, change);
                self.note(|| format!("membership: leader {me} asked to {change}"));
            }
            None => {
                let _ = node.transfer_leadership(local, None);
                self.note(|| format!("membership: leader {me} asked to transfer"));
            }
        }
        self.trace.word(self.now);
        self.trace.word(9);
        self.after_input(slot, &before)
    }

    /// Property 11 at a leader that just appended a `Config` entry (membership profile): the
    /// step from its previous configuration is single (M4) and their quorums intersect; its
    /// previous `Config` entry is committed (M2); an entry of its term is committed (M3).
    pub(super) fn check_configuration(
        &mut self,
        slot: usize,
        before_role: Role,
        before: Configuration,
    ) -> Result<(), Violation> {
        let Some(node) = self.slots[slot].node.as_ref() else {
            return Ok(());
        };
        let after = node.configuration();
        let status = node.status();
        if before_role != Role::Leader || status.role != Role::Leader || after == before {
            return Ok(());
        }
        let log = self.slots[slot].disk.log();
        let configs: Vec<_> = log
            .iter()
            .rev()
            .filter(|e| e.kind == EntryKind::Config)
            .take(2)
            .map(|e| e.index)
            .collect();
        let committed = self.checkers.durability.committed();
        let term_committed = committed
            .entries()
            .iter()
            .rev()
            .take_while(|e| e.term >= status.term)
            .any(|e| e.term == status.term);
        configuration_safety::check_step(configuration_safety::Step {
            leader: status.id,
            term: status.term,
            before,
            after,
            previous_config_index: configs.get(1).copied(),
            committed_index: committed.last_index(),
            term_committed,
        })
    }
}
