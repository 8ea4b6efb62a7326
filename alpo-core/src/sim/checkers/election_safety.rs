//! Election safety: at most one leader per term, over the whole run (docs/protocol.md, Safety
//! properties).
//!
//! Invariant kept: `leaders` maps every term in which a leader was observed to that leader.
//! A second node observed as leader of a recorded term is a violation; the same node again
//! (also after a restart, which cannot happen correctly but is reported as the same leader) is
//! not.

use std::collections::BTreeMap;

use super::{Check, NodeView, Violation};
use crate::node::Role;
use crate::types::{NodeId, Term};

/// The checker's name in reports.
pub const NAME: &str = "election_safety";

/// Remembers the leader of every term.
#[derive(Clone, Debug, Default)]
pub struct ElectionSafety {
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// Checks a node observed after a step.
    pub fn observe(&mut self, view: &NodeView<'_>) -> Check {
        if view.status.role != Role::Leader {
            return Ok(());
        }
        let leader = *self
            .leaders
            .entry(view.status.term)
            .or_insert(view.status.id);
        if leader == view.status.id {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!(
                "nodes {leader} and {} are both leaders of term {}",
                view.status.id, view.status.term
            ),
        ))
    }

    /// The leader observed in `term`, if any.
    #[must_use]
    pub fn leader_of(&self, term: Term) -> Option<NodeId> {
        self.leaders.get(&term).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::test_support::{log, status, view};

    #[test]
    fn one_leader_per_term_passes() {
        let mut checker = ElectionSafety::default();
        let l = log(&[1]);
        checker
            .observe(&view(status(0, Role::Leader, 1, &l, 0), &l))
            .unwrap();
        checker
            .observe(&view(status(0, Role::Leader, 1, &l, 0), &l))
            .unwrap();
        checker
            .observe(&view(status(1, Role::Passive, 1, &l, 0), &l))
            .unwrap();
        checker
            .observe(&view(status(1, Role::Leader, 2, &l, 0), &l))
            .unwrap();
        assert_eq!(checker.leader_of(Term(2)), Some(NodeId(2)));
    }

    #[test]
    fn two_leaders_in_one_term_fail() {
        let mut checker = ElectionSafety::default();
        let l = log(&[3]);
        checker
            .observe(&view(status(0, Role::Leader, 3, &l, 0), &l))
            .unwrap();
        let err = checker
            .observe(&view(status(2, Role::Leader, 3, &l, 0), &l))
            .unwrap_err();
        assert_eq!(err.checker, NAME);
        assert!(err.details.contains("nodes 1 and 3"), "{}", err.details);
    }
}
