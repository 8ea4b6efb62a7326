//! The term index (rule S9): the terms of a log's entries as runs of `(first index, term)`, so
//! that the core knows every retained entry's term in O(terms) memory without its payload.
//!
//! Invariants: the runs cover exactly `base.index + 1 ..= last`, in order, with strictly
//! increasing first indices and terms (consecutive runs differ in term, and terms never
//! decrease along a log); no run is empty; every term is at least the base's.

use std::collections::VecDeque;

use crate::types::{LogIndex, LogPosition, Term, TermRun};

/// The terms of the entries above a base position.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct TermIndex {
    base: LogPosition,
    runs: VecDeque<TermRun>,
    last: LogIndex,
}

impl TermIndex {
    /// An empty index above `base`.
    pub(crate) fn with_base(base: LogPosition) -> TermIndex {
        TermIndex {
            base,
            runs: VecDeque::new(),
            last: base.index,
        }
    }

    /// The position before the first entry.
    pub(crate) fn base(&self) -> LogPosition {
        self.base
    }

    /// The last index (the base's with no entry).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.last
    }

    /// The last entry's term (the base's with no entry).
    pub(crate) fn last_term(&self) -> Term {
        self.runs.back().map_or(self.base.term, |run| run.term)
    }

    /// Number of runs (for tests and memory accounting).
    pub(crate) fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The run holding `index`, if `base < index ≤ last`.
    fn run_of(&self, index: LogIndex) -> Option<usize> {
        if index <= self.base.index || index > self.last {
            return None;
        }
        self.runs
            .partition_point(|run| run.first <= index)
            .checked_sub(1)
    }

    /// The term at `index`: 0 at index 0, the base's at the base, `None` below the base or past
    /// the end.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex(0) {
            return Some(Term(0));
        }
        if index == self.base.index {
            return Some(self.base.term);
        }
        self.run_of(index).map(|run| self.runs[run].term)
    }

    /// The first index of the run holding `index` (the base if the term is the base's).
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else {
            return LogIndex(0);
        };
        if term == self.base.term && self.base.index > LogIndex(0) {
            return self.base.index;
        }
        self.run_of(index).map_or(index, |run| self.runs[run].first)
    }

    /// The last index holding an entry of `term`, if any (the base counts).
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let after = self.runs.partition_point(|run| run.term <= term);
        match after.checked_sub(1) {
            Some(run) if self.runs[run].term == term => Some(
                self.runs
                    .get(run + 1)
                    .map_or(self.last, |next| next.first.prev()),
            ),
            Some(_) => None,
            None => {
                (self.base.term == term && self.base.index > LogIndex(0)).then_some(self.base.index)
            }
        }
    }

    /// The entry at `last + 1` has `term` (no lower than the last term).
    pub(crate) fn push(&mut self, term: Term) {
        debug_assert!(self.last_term() <= term, "terms never decrease");
        let index = self.last.next();
        if self.runs.back().is_none_or(|run| run.term != term) {
            self.runs.push_back(TermRun { first: index, term });
        }
        self.last = index;
    }

    /// The entries `last + 1 ..= to` all have `term` (no lower than the last term).
    pub(crate) fn extend_to(&mut self, term: Term, to: LogIndex) {
        if to <= self.last {
            return;
        }
        self.push(term);
        self.last = to;
    }

    /// Forgets the entries at `from` and above (`from` above the base).
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        debug_assert!(self.base.index < from);
        while self.runs.back().is_some_and(|run| run.first >= from) {
            self.runs.pop_back();
        }
        self.last = self.last.min(from.prev());
    }

    /// Makes the entry at `new_base` (held) the base.
    pub(crate) fn compact_to(&mut self, new_base: LogIndex) {
        let Some(term) = self.term_at(new_base) else {
            return;
        };
        if new_base <= self.base.index {
            return;
        }
        while self.runs.len() >= 2 && self.runs[1].first <= new_base.next() {
            self.runs.pop_front();
        }
        if let Some(front) = self.runs.front_mut() {
            if new_base >= self.last {
                self.runs.clear();
            } else {
                front.first = front.first.max(new_base.next());
            }
        }
        self.base = LogPosition {
            index: new_base,
            term,
        };
    }

    /// Checks the invariants in the module documentation (O(runs)).
    pub(crate) fn invariants(&self) {
        let mut expected_first = self.base.index.next();
        let mut term = self.base.term;
        for (i, run) in self.runs.iter().enumerate() {
            if i == 0 {
                assert!(
                    run.first == expected_first,
                    "invariant: runs start after the base"
                );
            } else {
                assert!(run.first > expected_first, "invariant: runs are not empty");
                assert!(term < run.term, "invariant: run terms increase");
            }
            assert!(
                term <= run.term,
                "invariant: terms never decrease from the base"
            );
            expected_first = run.first;
            term = run.term;
        }
        assert!(
            self.runs.is_empty() == (self.last == self.base.index),
            "invariant: the runs cover base + 1 ..= last"
        );
        if let Some(run) = self.runs.back() {
            assert!(
                run.first <= self.last,
                "invariant: the last run is not empty"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_of(terms: &[u64]) -> TermIndex {
        let mut index = TermIndex::default();
        for term in terms {
            index.push(Term(*term));
        }
        index.invariants();
        index
    }

    #[test]
    fn runs_answer_terms_and_bounds() {
        let index = index_of(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(index.run_count(), 3);
        assert_eq!(index.term_at(LogIndex(4)), Some(Term(3)));
        assert_eq!(index.term_at(LogIndex(7)), None);
        assert_eq!(index.first_index_of_term_at(LogIndex(5)), LogIndex(3));
        assert_eq!(index.last_index_of_term(Term(3)), Some(LogIndex(5)));
        assert_eq!(index.last_index_of_term(Term(2)), None);
        assert_eq!(index.last_index_of_term(Term(5)), Some(LogIndex(6)));
    }

    #[test]
    fn truncation_and_compaction_keep_the_runs_exact() {
        let mut index = index_of(&[1, 1, 3, 3, 3, 5]);
        index.truncate_from(LogIndex(4));
        index.invariants();
        assert_eq!(index.last_index(), LogIndex(3));
        assert_eq!(index.last_term(), Term(3));
        index.push(Term(6));
        index.compact_to(LogIndex(3));
        index.invariants();
        assert_eq!(index.base().term, Term(3));
        assert_eq!(index.term_at(LogIndex(4)), Some(Term(6)));
        assert_eq!(index.term_at(LogIndex(2)), None);
        index.compact_to(LogIndex(4));
        index.invariants();
        assert_eq!(index.last_index(), LogIndex(4));
        assert_eq!(index.run_count(), 0);
    }
}
