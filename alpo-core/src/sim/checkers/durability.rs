//! Committed entries are never lost or changed (docs/protocol.md, Safety properties:
//! durability), and the committed prefix the other checkers compare against.
//!
//! `CommittedLog` is the truth: whenever a node reports commit index `c`, the entries of its log
//! up to `c` are committed. The first report of an index records the entry; every later report
//! must agree, compared at `min(c, known)` (log matching, checked separately, extends agreement
//! at one index to the whole prefix below it). It also records, per term, the highest commit
//! index reported by a node of that term, for leader completeness.
//!
//! A `TruncateLog` may not remove the committed entry at its index, nor go below the node's own
//! commit index (output.rs). "Never lost" is checked after every step: the last committed entry
//! is in the synced log of a majority of nodes. That holds in a correct run because a leader
//! counts a replica only once it is durable, and no later leader can truncate a committed entry.

use std::collections::BTreeMap;

use super::{Check, NodeView, Violation, describe, entry_at};
use crate::membership::Configuration;
use crate::node::Status;
use crate::types::{Entry, LogIndex, NodeId, Term};

/// The checker's name in reports.
pub const NAME: &str = "durability";

/// The committed prefix of the run's log, as reported by the nodes.
#[derive(Clone, Debug, Default)]
pub struct CommittedLog {
    entries: Vec<Entry>,
    commit_by_term: BTreeMap<Term, LogIndex>,
}

/// Records and checks the committed prefix.
#[derive(Clone, Debug, Default)]
pub struct Durability {
    committed: CommittedLog,
}

impl CommittedLog {
    /// Every entry known committed, from index 1.
    #[must_use]
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The highest index known committed.
    #[must_use]
    pub fn last_index(&self) -> LogIndex {
        self.entries.last().map_or(LogIndex(0), |e| e.index)
    }

    /// The highest commit index reported by any node whose term was below `term`: every leader
    /// of `term` must hold the committed prefix up to it (leader completeness).
    #[must_use]
    pub fn committed_before_term(&self, term: Term) -> LogIndex {
        self.commit_by_term
            .range(..term)
            .map(|(_, index)| *index)
            .max()
            .unwrap_or(LogIndex(0))
    }
}

impl Durability {
    /// The committed prefix built so far.
    #[must_use]
    pub fn committed(&self) -> &CommittedLog {
        &self.committed
    }

    /// Records a node's commit index, checking it against the prefix known so far. Returns
    /// whether the highest commit index recorded for a term changed.
    pub fn observe_commit(&mut self, view: &NodeView<'_>) -> Result<bool, Violation> {
        let commit = view.status.commit_index;
        if commit.0 == 0 {
            return Ok(false);
        }
        let known = self.committed.last_index();
        let compare_at = commit.min(known);
        if compare_at.0 > 0 {
            let truth = entry_at(&self.committed.entries, compare_at);
            let theirs = entry_at(view.log, compare_at);
            if truth != theirs {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "committed entry changed: index {compare_at} was committed as {} but \
                         node {} (term {}, commit {commit}) holds {}",
                        describe(truth),
                        view.status.id,
                        view.status.term,
                        describe(theirs)
                    ),
                ));
            }
        }
        self.extend(view, known, commit)?;
        Ok(self.record_term(view.status.term, commit))
    }

    fn extend(&mut self, view: &NodeView<'_>, known: LogIndex, commit: LogIndex) -> Check {
        let mut index = known.next();
        while index <= commit {
            let Some(entry) = entry_at(view.log, index) else {
                return Err(Violation::new(
                    NAME,
                    format!(
                        "node {} reports commit index {commit} but its log ends at index {}",
                        view.status.id,
                        view.log.len()
                    ),
                ));
            };
            self.committed.entries.push(entry.clone());
            index = index.next();
        }
        Ok(())
    }

    fn record_term(&mut self, term: Term, commit: LogIndex) -> bool {
        let slot = self.committed.commit_by_term.entry(term).or_default();
        if commit <= *slot {
            return false;
        }
        *slot = commit;
        true
    }

    /// Checks a `TruncateLog { from }` emitted by a node whose status before the step was
    /// `before` and whose log is `log`: it must not remove an entry the node knew committed,
    /// nor the committed entry at `from` (a divergent uncommitted entry there is fine).
    pub fn observe_truncate(&self, before: &Status, log: &[Entry], from: LogIndex) -> Check {
        let truth = entry_at(&self.committed.entries, from);
        let removes_committed = truth.is_some() && truth == entry_at(log, from);
        if before.commit_index < from && !removes_committed {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!(
                "node {} (term {}, commit {}) truncated its log from index {from}, removing \
                 committed entry {}",
                before.id,
                before.term,
                before.commit_index,
                describe(entry_at(log, from))
            ),
        ))
    }

    /// Membership profile (issue 12): checks that the last committed entry is in the synced
    /// log of a majority of the voters of `quorum`, the configuration of the leader that
    /// committed it (rule M5: learners and non-members never count).
    pub fn check_majority_durable_among<'a>(
        &self,
        durable_logs: impl Iterator<Item = (NodeId, &'a [Entry])>,
        quorum: &Configuration,
    ) -> Check {
        let last = self.committed.last_index();
        let Some(truth) = entry_at(&self.committed.entries, last) else {
            return Ok(());
        };
        let holders: Vec<NodeId> = durable_logs
            .filter(|(_, log)| entry_at(log, last).is_some_and(|e| e.term == truth.term))
            .map(|(id, _)| id)
            .collect();
        if quorum.is_quorum(holders.iter().copied()) {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!(
                "committed entry lost: {} is in the synced log of only nodes {holders:?}, no \
                 majority of {quorum}",
                describe(Some(truth)),
            ),
        ))
    }

    /// Checks that the last committed entry is in the synced log of a majority of the
    /// `durable_logs` (one per node, crashed nodes included).
    pub fn check_majority_durable<'a>(
        &self,
        durable_logs: impl ExactSizeIterator<Item = &'a [Entry]>,
    ) -> Check {
        let last = self.committed.last_index();
        let Some(truth) = entry_at(&self.committed.entries, last) else {
            return Ok(());
        };
        let node_count = durable_logs.len();
        let holders = durable_logs
            .filter(|log| entry_at(log, last).is_some_and(|e| e.term == truth.term))
            .count();
        if 2 * holders > node_count {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!(
                "committed entry lost: {} is in the synced log of only {holders} of \
                 {node_count} nodes",
                describe(Some(truth)),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Role;
    use crate::sim::checkers::test_support::{log, status, view};

    #[test]
    fn growing_agreeing_commits_pass() {
        let mut checker = Durability::default();
        let l = log(&[1, 1, 2, 2]);
        assert!(
            checker
                .observe_commit(&view(status(0, Role::Leader, 2, &l, 3), &l))
                .unwrap()
        );
        let f = log(&[1, 1]);
        assert!(
            !checker
                .observe_commit(&view(status(1, Role::Passive, 2, &f, 2), &f))
                .unwrap()
        );
        assert_eq!(checker.committed().last_index(), LogIndex(3));
        assert_eq!(
            checker.committed().committed_before_term(Term(3)),
            LogIndex(3)
        );
        assert_eq!(
            checker.committed().committed_before_term(Term(2)),
            LogIndex(0)
        );
        checker
            .check_majority_durable([&l[..], &l, &f].into_iter())
            .unwrap();
    }

    #[test]
    fn a_changed_committed_entry_fails() {
        let mut checker = Durability::default();
        let l = log(&[1, 1]);
        checker
            .observe_commit(&view(status(0, Role::Leader, 1, &l, 2), &l))
            .unwrap();
        let other = log(&[1, 3, 3]);
        let err = checker
            .observe_commit(&view(status(1, Role::Leader, 3, &other, 3), &other))
            .unwrap_err();
        assert_eq!(err.checker, NAME);
        assert!(
            err.details.contains("index 2 was committed"),
            "{}",
            err.details
        );
    }

    #[test]
    fn truncating_a_committed_entry_fails() {
        let mut checker = Durability::default();
        let l = log(&[1, 1, 1]);
        checker
            .observe_commit(&view(status(0, Role::Leader, 1, &l, 2), &l))
            .unwrap();
        let follower = status(1, Role::Passive, 2, &l, 0);
        checker
            .observe_truncate(&follower, &l, LogIndex(3))
            .unwrap();
        // A divergent entry at a committed index is not the committed one: it may go.
        let divergent = log(&[1, 2]);
        checker
            .observe_truncate(&follower, &divergent, LogIndex(2))
            .unwrap();
        let err = checker
            .observe_truncate(&follower, &l, LogIndex(2))
            .unwrap_err();
        let expected = "removing committed entry (index 2";
        assert!(err.details.contains(expected), "{}", err.details);
        let knows = status(1, Role::Passive, 2, &l, 2);
        assert!(
            checker
                .observe_truncate(&knows, &divergent, LogIndex(2))
                .is_err()
        );
    }

    #[test]
    fn commit_beyond_the_log_fails() {
        let mut checker = Durability::default();
        let l = log(&[1]);
        let err = checker
            .observe_commit(&view(status(0, Role::Leader, 1, &l, 2), &l))
            .unwrap_err();
        assert!(
            err.details.contains("log ends at index 1"),
            "{}",
            err.details
        );
    }

    #[test]
    fn a_committed_entry_on_a_minority_of_synced_logs_fails() {
        let mut checker = Durability::default();
        let l = log(&[1, 1]);
        checker
            .observe_commit(&view(status(0, Role::Leader, 1, &l, 2), &l))
            .unwrap();
        let short = log(&[1]);
        let overwritten = log(&[1, 2]);
        checker
            .check_majority_durable([&l[..], &l, &short].into_iter())
            .unwrap();
        let err = checker
            .check_majority_durable([&l[..], &overwritten, &short].into_iter())
            .unwrap_err();
        assert!(err.details.contains("only 1 of 3"), "{}", err.details);
    }
}
