//! Leader completeness: a committed entry is in the log of every leader of a later term
//! (docs/protocol.md, Safety properties).
//!
//! With `CommittedLog::committed_before_term(T)` = the highest index committed as reported by
//! nodes of terms below `T`, a leader of term `T` must hold the committed entry at that index
//! (log matching extends this to the whole prefix). Checked when a node is first seen leading a
//! term, and again whenever a commit of an older term is reported while it leads.

use std::collections::BTreeMap;

use super::{Check, CommittedLog, NodeView, Violation, describe, entry_at};
use crate::node::Role;
use crate::types::{Entry, Incarnation, NodeId, Term};

/// The checker's name in reports.
pub const NAME: &str = "leader_completeness";

/// Remembers which leaderships were already checked against which commit generation.
#[derive(Clone, Debug, Default)]
pub struct LeaderCompleteness {
    checked: BTreeMap<(NodeId, Incarnation, Term), u64>,
    generation: u64,
}

impl LeaderCompleteness {
    /// Notes that a node of `term` raised the highest commit index of its term: leaders of
    /// later terms must be checked again.
    pub fn commit_recorded(&mut self) {
        self.generation += 1;
    }

    /// Checks a node observed after a step.
    pub fn observe(&mut self, view: &NodeView<'_>, committed: &CommittedLog) -> Check {
        if view.status.role != Role::Leader {
            return Ok(());
        }
        let key = (view.status.id, view.incarnation, view.status.term);
        if self.checked.insert(key, self.generation) == Some(self.generation) {
            return Ok(());
        }
        let term = view.status.term;
        let required = committed.committed_before_term(term);
        if required.0 == 0 {
            return Ok(());
        }
        let truth = entry_at(committed.entries(), required);
        let theirs = entry_at(view.log, required);
        if truth.map(|e| e.term) == theirs.map(|e| e.term) {
            return Ok(());
        }
        Err(missing(view.status.id, term, truth, theirs))
    }
}

fn missing(id: NodeId, term: Term, truth: Option<&Entry>, theirs: Option<&Entry>) -> Violation {
    Violation::new(
        NAME,
        format!(
            "leader {id} of term {term} lacks committed entry {}: it holds {}",
            describe(truth),
            describe(theirs)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::Durability;
    use crate::sim::checkers::test_support::{log, status, view};

    #[test]
    fn a_later_leader_with_the_committed_prefix_passes() {
        let mut durability = Durability::default();
        let old = log(&[1, 1]);
        durability
            .observe_commit(&view(status(0, Role::Leader, 1, &old, 2), &old))
            .unwrap();
        let mut checker = LeaderCompleteness::default();
        let new = log(&[1, 1, 2]);
        checker
            .observe(
                &view(status(1, Role::Leader, 2, &new, 0), &new),
                durability.committed(),
            )
            .unwrap();
        // The old leader of term 1 itself is not required to hold anything newer.
        checker
            .observe(
                &view(status(0, Role::Leader, 1, &old, 2), &old),
                durability.committed(),
            )
            .unwrap();
    }

    #[test]
    fn a_later_leader_missing_a_committed_entry_fails() {
        let mut durability = Durability::default();
        let old = log(&[1, 1]);
        durability
            .observe_commit(&view(status(0, Role::Leader, 1, &old, 2), &old))
            .unwrap();
        let mut checker = LeaderCompleteness::default();
        let new = log(&[1, 2]);
        let err = checker
            .observe(
                &view(status(1, Role::Leader, 2, &new, 0), &new),
                durability.committed(),
            )
            .unwrap_err();
        assert_eq!(err.checker, NAME);
        assert!(
            err.details.contains("leader 2 of term 2 lacks"),
            "{}",
            err.details
        );
    }

    #[test]
    fn a_late_commit_report_of_an_older_term_rechecks_the_current_leader() {
        let mut durability = Durability::default();
        let mut checker = LeaderCompleteness::default();
        let new = log(&[1, 2]);
        let leader = view(status(1, Role::Leader, 2, &new, 0), &new);
        checker.observe(&leader, durability.committed()).unwrap();
        let old = log(&[1, 1]);
        let changed = durability
            .observe_commit(&view(status(0, Role::Passive, 1, &old, 2), &old))
            .unwrap();
        assert!(changed);
        checker.commit_recorded();
        assert!(checker.observe(&leader, durability.committed()).is_err());
    }
}
