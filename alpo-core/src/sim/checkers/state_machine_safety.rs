//! State-machine safety: no two servers apply different entries at one index, and each server
//! applies entries in index order, exactly once per incarnation (docs/protocol.md, Safety
//! properties; rule R11).
//!
//! Invariant kept: `applied[i - 1]` is the first entry any node applied at index `i`; per node,
//! the incarnation and index of its last apply. An applied entry must also equal the committed
//! entry at its index, when that is known.

use super::{Check, CommittedLog, Violation, describe, entry_at};
use crate::types::{Entry, Incarnation, LogIndex, NodeId};

/// The checker's name in reports.
pub const NAME: &str = "state_machine_safety";

/// The applied history of the run.
#[derive(Clone, Debug)]
pub struct StateMachineSafety {
    applied: Vec<Entry>,
    first_applier: Vec<NodeId>,
    last_applied: Vec<(Incarnation, LogIndex)>,
}

impl StateMachineSafety {
    /// A checker for `node_count` nodes.
    #[must_use]
    pub fn new(node_count: usize) -> StateMachineSafety {
        StateMachineSafety {
            applied: Vec::new(),
            first_applier: Vec::new(),
            last_applied: vec![(Incarnation(0), LogIndex(0)); node_count],
        }
    }

    /// Node `slot` (re)started or restored its state machine from a snapshot at `index`
    /// (rules S7, S8): its next apply is `index + 1`.
    pub fn observe_restore(&mut self, slot: usize, incarnation: Incarnation, index: LogIndex) {
        if let Some(last) = self.last_applied.get_mut(slot) {
            *last = (incarnation, index);
        }
    }

    /// Checks the entries of one `Apply` output of node `id` in slot `slot`.
    pub fn observe_apply(
        &mut self,
        (slot, id, incarnation): (usize, NodeId, Incarnation),
        entries: &[Entry],
        committed: &CommittedLog,
    ) -> Check {
        let Some(last) = self.last_applied.get_mut(slot) else {
            return Err(Violation::new(NAME, format!("unknown node slot {slot}")));
        };
        if last.0 != incarnation {
            *last = (incarnation, LogIndex(0));
        }
        let mut previous = last.1;
        if let Some(end) = entries.last() {
            last.1 = end.index;
        }
        for entry in entries {
            if entry.index != previous.next() {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "node {id} applied index {} right after index {previous}",
                        entry.index
                    ),
                ));
            }
            previous = entry.index;
            self.check_entry(id, entry, committed)?;
        }
        Ok(())
    }

    fn check_entry(&mut self, id: NodeId, entry: &Entry, committed: &CommittedLog) -> Check {
        if let Some(truth) = entry_at(committed.entries(), entry.index)
            && truth != entry
        {
            return Err(Violation::new(
                NAME,
                format!(
                    "node {id} applied {} but the committed entry is {}",
                    describe(Some(entry)),
                    describe(Some(truth))
                ),
            ));
        }
        match entry_at(&self.applied, entry.index) {
            Some(first) if first != entry => {
                let slot = usize::try_from(entry.index.0 - 1).unwrap_or(usize::MAX);
                let other = self.first_applier.get(slot).copied().unwrap_or(NodeId(0));
                Err(Violation::new(
                    NAME,
                    format!(
                        "node {id} applied {} but node {other} applied {} at that index",
                        describe(Some(entry)),
                        describe(Some(first))
                    ),
                ))
            }
            Some(_) => Ok(()),
            None => {
                self.applied.push(entry.clone());
                self.first_applier.push(id);
                Ok(())
            }
        }
    }

    /// Every entry applied so far, by index.
    #[must_use]
    pub fn applied(&self) -> &[Entry] {
        &self.applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::test_support::{entry, log};

    fn who(slot: usize) -> (usize, NodeId, Incarnation) {
        (
            slot,
            NodeId(u64::try_from(slot).unwrap() + 1),
            Incarnation(1),
        )
    }

    #[test]
    fn same_entries_in_order_and_reapply_after_restart_pass() {
        let mut checker = StateMachineSafety::new(3);
        let none = CommittedLog::default();
        let l = log(&[1, 1, 2]);
        checker.observe_apply(who(0), &l[..2], &none).unwrap();
        checker.observe_apply(who(0), &l[2..], &none).unwrap();
        checker.observe_apply(who(1), &l, &none).unwrap();
        let restarted = (0, NodeId(1), Incarnation(2));
        checker.observe_apply(restarted, &l[..1], &none).unwrap();
        assert_eq!(checker.applied().len(), 3);
    }

    #[test]
    fn different_entries_at_one_index_fail() {
        let mut checker = StateMachineSafety::new(3);
        let none = CommittedLog::default();
        checker.observe_apply(who(0), &log(&[1, 1]), &none).unwrap();
        let err = checker
            .observe_apply(who(2), &log(&[1, 2]), &none)
            .unwrap_err();
        assert_eq!(err.checker, NAME);
        assert!(
            err.details.contains("node 3 applied (index 2, term 2"),
            "{}",
            err.details
        );
        assert!(
            err.details.contains("node 1 applied (index 2, term 1"),
            "{}",
            err.details
        );
    }

    #[test]
    fn a_gap_or_a_repeat_fails() {
        let mut checker = StateMachineSafety::new(3);
        let none = CommittedLog::default();
        let err = checker
            .observe_apply(who(0), &[entry(2, 1)], &none)
            .unwrap_err();
        assert!(err.details.contains("applied index 2 right after index 0"));
        checker
            .observe_apply(who(1), &[entry(1, 1)], &none)
            .unwrap();
        assert!(
            checker
                .observe_apply(who(1), &[entry(1, 1)], &none)
                .is_err()
        );
    }
}
