//! Monotonicity: terms never decrease on a server (they are durable; except at a start after
//! a hard-state loss, rule F9), and commit and applied indices never decrease within an
//! incarnation (docs/protocol.md, Safety properties).
//!
//! Invariant kept: for each node, the last observed incarnation, term, commit index and applied
//! index. A restart (new incarnation) resets the volatile ones.

use super::{Check, NodeView, Violation};
use crate::types::{Incarnation, LogIndex, Term};

/// The checker's name in reports.
pub const NAME: &str = "monotonicity";

#[derive(Clone, Copy, Debug, Default)]
struct Last {
    incarnation: Incarnation,
    term: Term,
    commit: LogIndex,
    applied: LogIndex,
}

/// The last observed values per node.
#[derive(Clone, Debug)]
pub struct Monotonicity {
    last: Vec<Last>,
}

impl Monotonicity {
    /// A checker for `node_count` nodes.
    #[must_use]
    pub fn new(node_count: usize) -> Monotonicity {
        Monotonicity {
            last: vec![Last::default(); node_count],
        }
    }

    /// Rule F9: node `slot` starts with its hard state lost (neither copy valid), so its term
    /// restarts from its log and may be lower than before; within the new incarnation it must
    /// not decrease again. (The vote ledger, property 15, checks what a lower term could
    /// break: a second vote in a term.)
    pub fn forget_term(&mut self, slot: usize) {
        if let Some(last) = self.last.get_mut(slot) {
            last.term = Term(0);
        }
    }

    /// Checks a node observed after a step.
    pub fn observe(&mut self, view: &NodeView<'_>) -> Check {
        let s = &view.status;
        let Some(last) = self.last.get_mut(view.slot) else {
            return Err(Violation::new(
                NAME,
                format!("unknown node slot {}", view.slot),
            ));
        };
        let fail = |what: &str, before: u64, after: u64| {
            Err(Violation::new(
                NAME,
                format!(
                    "node {} (incarnation {}) {what} went from {before} down to {after}",
                    s.id, view.incarnation.0
                ),
            ))
        };
        if s.term < last.term {
            return fail("term", last.term.0, s.term.0);
        }
        if view.incarnation == last.incarnation {
            if s.commit_index < last.commit {
                return fail("commit index", last.commit.0, s.commit_index.0);
            }
            if s.applied_index < last.applied {
                return fail("applied index", last.applied.0, s.applied_index.0);
            }
        }
        *last = Last {
            incarnation: view.incarnation,
            term: s.term,
            commit: s.commit_index,
            applied: s.applied_index,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Role;
    use crate::sim::checkers::test_support::{log, status, view};

    #[test]
    fn growth_and_a_restart_reset_pass() {
        let mut checker = Monotonicity::new(3);
        let l = log(&[1, 1, 1]);
        checker
            .observe(&view(status(0, Role::Passive, 1, &l, 1), &l))
            .unwrap();
        checker
            .observe(&view(status(0, Role::Passive, 2, &l, 3), &l))
            .unwrap();
        let mut restarted = view(status(0, Role::Passive, 2, &l, 0), &l);
        restarted.incarnation = Incarnation(2);
        checker.observe(&restarted).unwrap();
    }

    #[test]
    fn a_decreasing_commit_index_fails() {
        let mut checker = Monotonicity::new(3);
        let l = log(&[1, 1, 1]);
        checker
            .observe(&view(status(1, Role::Leader, 1, &l, 3), &l))
            .unwrap();
        let err = checker
            .observe(&view(status(1, Role::Leader, 1, &l, 2), &l))
            .unwrap_err();
        assert!(
            err.details.contains("commit index went from 3 down to 2"),
            "{}",
            err.details
        );
    }

    #[test]
    fn a_decreasing_term_fails_even_across_a_restart() {
        let mut checker = Monotonicity::new(3);
        let l = log(&[1]);
        checker
            .observe(&view(status(2, Role::Passive, 5, &l, 0), &l))
            .unwrap();
        let mut restarted = view(status(2, Role::Passive, 4, &l, 0), &l);
        restarted.incarnation = Incarnation(2);
        let err = checker.observe(&restarted).unwrap_err();
        assert!(
            err.details.contains("term went from 5 down to 4"),
            "{}",
            err.details
        );
    }
}
