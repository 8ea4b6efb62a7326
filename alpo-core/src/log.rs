//! The in-memory copy of a server's log, with its durable and written marks.
//!
//! The core keeps the whole log in memory (`Vec<Entry>`; payloads are `Bytes`, shared not
//! copied). Known limit: there are no snapshots yet, so memory grows with the log.
//!
//! Invariants: `entries[i].index == i + 1` (no gaps, starting at 1); terms never decrease along
//! the log; `durable ≤ written ≤ last`, where `written` is the last index handed to the driver in
//! an `AppendLog` output and `durable` the last index the driver reported durable;
//! `cumulative_bytes[i]` is the payload size of entries `1..=i + 1`.

use std::ops::RangeInclusive;

use crate::types::{Entry, LogIndex, LogPosition, Term};

/// A server's log as the core sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    entries: Vec<Entry>,
    cumulative_bytes: Vec<u64>,
    written: LogIndex,
    durable: LogIndex,
}

/// Why a persisted log cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogLoadError(pub(crate) String);

impl Log {
    /// The log loaded at start: every entry is durable and written. Checks the invariants, since
    /// the entries come from disk.
    pub(crate) fn load(entries: Vec<Entry>) -> Result<Log, LogLoadError> {
        let mut log = Log::default();
        let mut previous_term = Term(0);
        for entry in entries {
            let expected = log.last_index().next();
            if entry.index != expected {
                return Err(LogLoadError(format!(
                    "entry at position {} has index {}, expected {expected} (no snapshots yet: \
                     the log must start at index 1 without gaps)",
                    expected.0 - 1,
                    entry.index
                )));
            }
            if entry.term < previous_term || entry.term == Term(0) {
                return Err(LogLoadError(format!(
                    "entry {} has term {} after term {previous_term}",
                    entry.index, entry.term
                )));
            }
            previous_term = entry.term;
            log.push(entry);
        }
        log.written = log.last_index();
        log.durable = log.last_index();
        Ok(log)
    }

    /// Index of the last entry (0 when empty).
    pub(crate) fn last_index(&self) -> LogIndex {
        LogIndex(self.entries.len() as u64)
    }

    /// Term of the last entry (0 when empty).
    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(Term(0), |entry| entry.term)
    }

    /// Position of the last entry.
    pub(crate) fn last_position(&self) -> LogPosition {
        LogPosition {
            index: self.last_index(),
            term: self.last_term(),
        }
    }

    /// Highest index the driver reported durable.
    pub(crate) fn durable_index(&self) -> LogIndex {
        self.durable
    }

    /// Highest index handed to the driver in an `AppendLog`.
    pub(crate) fn written_index(&self) -> LogIndex {
        self.written
    }

    /// The entry at `index`, if the log holds one.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let position = usize::try_from(index.0.checked_sub(1)?).ok()?;
        self.entries.get(position)
    }

    /// Term at `index`: `Some(0)` for index 0, `None` past the end.
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex(0) {
            return Some(Term(0));
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// Entries `range` (clamped to the log), cloned (payloads are shared).
    pub(crate) fn slice(&self, range: RangeInclusive<LogIndex>) -> &[Entry] {
        let start = usize::try_from(range.start().0.max(1) - 1).unwrap_or(usize::MAX);
        let end = usize::try_from(range.end().0).unwrap_or(usize::MAX);
        let end = end.min(self.entries.len());
        if start >= end {
            return &[];
        }
        &self.entries[start..end]
    }

    /// Payload bytes of entries `from..=to` (clamped to the log).
    pub(crate) fn bytes_between(&self, from: LogIndex, to: LogIndex) -> u64 {
        let to = to.min(self.last_index());
        if from > to || to == LogIndex(0) {
            return 0;
        }
        let total = |index: LogIndex| -> u64 {
            match usize::try_from(index.0).ok().and_then(|i| i.checked_sub(1)) {
                Some(position) => self.cumulative_bytes[position],
                None => 0,
            }
        };
        total(to) - total(from.prev())
    }

    /// The first index of the run of entries that share the term of the entry at `index`.
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else {
            return LogIndex(0);
        };
        // Terms never decrease: the first entry with a term >= `term` starts the run.
        let position = self.entries.partition_point(|entry| entry.term < term);
        LogIndex(position as u64 + 1).min(index)
    }

    /// The last index holding an entry of `term`, if any.
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let after = self.entries.partition_point(|entry| entry.term <= term);
        let last = self.entries.get(after.checked_sub(1)?)?;
        (last.term == term).then_some(last.index)
    }

    /// Appends `entry`, which must continue the log with a term no lower than the last.
    pub(crate) fn push(&mut self, entry: Entry) {
        assert!(
            entry.index == self.last_index().next(),
            "invariant: the log has no gaps"
        );
        assert!(
            self.last_term() <= entry.term,
            "invariant: terms never decrease in the log"
        );
        let before = self.cumulative_bytes.last().copied().unwrap_or(0);
        self.cumulative_bytes
            .push(before + entry.payload.len() as u64);
        self.entries.push(entry);
    }

    /// Removes entries `from..`; the written and durable marks fall back accordingly.
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        let keep = usize::try_from(from.0.saturating_sub(1)).unwrap_or(usize::MAX);
        self.entries.truncate(keep);
        self.cumulative_bytes.truncate(keep);
        self.written = self.written.min(self.last_index());
        self.durable = self.durable.min(self.last_index());
    }

    /// Marks every entry as handed to the driver; returns the entries not yet written.
    pub(crate) fn take_unwritten(&mut self) -> Vec<Entry> {
        let unwritten = self.slice(self.written.next()..=self.last_index()).to_vec();
        self.written = self.last_index();
        unwritten
    }

    /// The driver reports the log durable up to `position`. Ignored (returns false) if the log no
    /// longer holds that position: a truncation raced the write. By log matching, holding
    /// `(index, term)` means holding the driver's whole prefix up to `index`.
    pub(crate) fn mark_durable(&mut self, position: LogPosition) -> bool {
        if position.index > self.written || self.term_at(position.index) != Some(position.term) {
            return false;
        }
        if position.index <= self.durable {
            return false;
        }
        self.durable = position.index;
        true
    }

    /// Checks the invariants in the module documentation that cost O(1).
    pub(crate) fn invariants(&self) {
        assert!(
            self.durable <= self.written,
            "invariant: durable <= written"
        );
        assert!(
            self.written <= self.last_index(),
            "invariant: written <= last"
        );
        assert!(
            self.entries.len() == self.cumulative_bytes.len(),
            "invariant: one byte total per entry"
        );
        if let Some(last) = self.entries.last() {
            assert!(
                last.index == self.last_index(),
                "invariant: entry i sits at i - 1"
            );
        }
    }

    /// Checks every entry (O(n)); for tests.
    #[cfg(test)]
    pub(crate) fn invariants_full(&self) {
        self.invariants();
        let mut term = Term(0);
        for (position, entry) in self.entries.iter().enumerate() {
            assert_eq!(entry.index, LogIndex(position as u64 + 1));
            assert!(term <= entry.term);
            term = entry.term;
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::EntryKind;

    fn entry(index: u64, term: u64, payload: &'static str) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload: Bytes::from_static(payload.as_bytes()),
        }
    }

    fn log_of(terms: &[u64]) -> Log {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| entry(i as u64 + 1, *t, "ab"))
            .collect();
        Log::load(entries).unwrap()
    }

    #[test]
    fn load_checks_indices_and_terms() {
        assert!(Log::load(vec![entry(2, 1, "")]).is_err());
        assert!(Log::load(vec![entry(1, 2, ""), entry(2, 1, "")]).is_err());
        assert!(Log::load(vec![entry(1, 0, "")]).is_err());
        let log = log_of(&[1, 1, 2]);
        assert_eq!(
            log.last_position(),
            LogPosition {
                index: LogIndex(3),
                term: Term(2)
            }
        );
        assert_eq!(log.durable_index(), LogIndex(3));
        log.invariants_full();
    }

    #[test]
    fn term_runs_are_found() {
        let log = log_of(&[1, 1, 3, 3, 3, 5]);
        assert_eq!(log.first_index_of_term_at(LogIndex(5)), LogIndex(3));
        assert_eq!(log.first_index_of_term_at(LogIndex(2)), LogIndex(1));
        assert_eq!(log.first_index_of_term_at(LogIndex(9)), LogIndex(0));
        assert_eq!(log.last_index_of_term(Term(3)), Some(LogIndex(5)));
        assert_eq!(log.last_index_of_term(Term(2)), None);
        assert_eq!(log.last_index_of_term(Term(5)), Some(LogIndex(6)));
        assert_eq!(log.term_at(LogIndex(0)), Some(Term(0)));
        assert_eq!(log.term_at(LogIndex(7)), None);
    }

    #[test]
    fn bytes_and_truncation_and_durability() {
        let mut log = log_of(&[1, 1, 1]);
        assert_eq!(log.bytes_between(LogIndex(2), LogIndex(3)), 4);
        assert_eq!(log.bytes_between(LogIndex(1), LogIndex(9)), 6);
        log.truncate_from(LogIndex(2));
        assert_eq!(log.durable_index(), LogIndex(1));
        log.push(entry(2, 2, "xyz"));
        assert_eq!(log.take_unwritten(), vec![entry(2, 2, "xyz")]);
        assert!(!log.mark_durable(LogPosition {
            index: LogIndex(2),
            term: Term(1)
        }));
        assert!(log.mark_durable(LogPosition {
            index: LogIndex(2),
            term: Term(2)
        }));
        assert_eq!(log.durable_index(), LogIndex(2));
        assert_eq!(log.bytes_between(LogIndex(1), LogIndex(2)), 5);
        log.invariants_full();
    }
}
