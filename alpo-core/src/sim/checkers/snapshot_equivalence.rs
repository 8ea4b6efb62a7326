//! Snapshot equivalence (docs/protocol.md, property 9): every snapshot taken or installed at `L`
//! holds the state of applying the committed entries `1..=L`, and every server's state at
//! applied index `i` is the state of applying entries `1..=i`.
//!
//! Invariant kept: `reference[i]` is the state hash after applying the first entries ever
//! applied at `1..=i` (which state-machine safety makes the committed ones), extended as the run
//! applies more; a state or image is compared with it at its index.

use super::{Check, Violation};
use crate::sim::state_machine::{StateMachine, hash_after};
use crate::types::{Entry, LogIndex, NodeId, SnapshotMeta};

/// The checker's name in reports.
pub const NAME: &str = "snapshot_equivalence";

/// Reference state hashes of the applied history.
#[derive(Clone, Debug)]
pub struct SnapshotEquivalence {
    reference: Vec<u64>,
}

impl Default for SnapshotEquivalence {
    fn default() -> SnapshotEquivalence {
        SnapshotEquivalence {
            reference: vec![StateMachine::default().hash],
        }
    }
}

impl SnapshotEquivalence {
    /// Extends the reference over `applied`, the first entry applied at each index so far.
    pub fn extend(&mut self, applied: &[Entry]) {
        while self.reference.len() <= applied.len() {
            let next = &applied[self.reference.len() - 1];
            let hash = self.reference[self.reference.len() - 1];
            self.reference.push(hash_after(hash, next));
        }
    }

    /// Node `id`'s state machine after an `Apply` or a restore.
    pub fn observe_state(&self, id: NodeId, state: &StateMachine) -> Check {
        let index = state.applied.index;
        match self.reference_at(index) {
            Some(hash) if hash != state.hash => Err(Violation::new(
                NAME,
                format!(
                    "node {id} has state hash {:#018x} at applied index {index}, but applying the \
                     committed entries 1..={index} gives {hash:#018x}",
                    state.hash
                ),
            )),
            _ => Ok(()),
        }
    }

    /// A snapshot file of node `id` became durable (taken, or installed after a transfer).
    pub fn observe_snapshot(&self, id: NodeId, meta: SnapshotMeta, image: &[u8]) -> Check {
        let fail = |problem: String| {
            Err(Violation::new(
                NAME,
                format!(
                    "node {id}: snapshot at (index {}, term {}) {problem}",
                    meta.last.index, meta.last.term
                ),
            ))
        };
        let Some(state) = StateMachine::from_image(image) else {
            return fail("has an image that does not decode".to_string());
        };
        if state.applied != meta.last {
            return fail(format!(
                "holds the state at (index {}, term {}): it claims entries it does not contain",
                state.applied.index, state.applied.term
            ));
        }
        self.observe_state(id, &state)
    }

    fn reference_at(&self, index: LogIndex) -> Option<u64> {
        let slot = usize::try_from(index.0).ok()?;
        self.reference.get(slot).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::test_support::log;

    #[test]
    fn a_state_or_snapshot_off_the_applied_history_fails() {
        let entries = log(&[1, 1, 2]);
        let mut checker = SnapshotEquivalence::default();
        checker.extend(&entries);
        let mut state = StateMachine::default();
        for entry in &entries[..2] {
            state.apply(entry);
        }
        checker.observe_state(NodeId(1), &state).unwrap();
        let meta = SnapshotMeta {
            last: entries[1].position(),
            size: 0,
            ..SnapshotMeta::default()
        };
        checker
            .observe_snapshot(NodeId(1), meta, &state.image())
            .unwrap();
        // A snapshot that claims index 3 but holds the state at 2.
        let beyond = SnapshotMeta {
            last: entries[2].position(),
            size: 0,
            ..SnapshotMeta::default()
        };
        let error = checker
            .observe_snapshot(NodeId(1), beyond, &state.image())
            .unwrap_err();
        assert_eq!(error.checker, NAME);
        // A state that applied another entry at 2.
        let mut other = StateMachine::default();
        other.apply(&entries[0]);
        other.apply(&entries[2]);
        other.applied.index = LogIndex(2);
        assert!(checker.observe_state(NodeId(2), &other).is_err());
    }
}
