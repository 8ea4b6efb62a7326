//! The in-memory copy of a server's log above its base, with its durable and written marks.
//!
//! The core keeps every entry above the log's *base* in memory (`Vec<Entry>`; payloads are
//! `Bytes`, shared not copied). The base is the position `(index, term)` just before the first
//! retained entry: `(0, 0)` until the log is compacted, then the last entry dropped by
//! compaction (rule S4) or the last position of an installed snapshot (rule S7). Entries at or
//! below the base are *compacted*: a durable snapshot covers them, so they are committed (rule
//! S8). Memory is therefore bounded by what compaction keeps, not by the log's length.
//!
//! Invariants: `entries[i].index == base.index + 1 + i` (no gaps); terms never decrease along
//! the log, starting at `base.term`; `base.index ≤ durable ≤ written ≤ last`, where `written` is
//! the last index handed to the driver in an `AppendLog` output and `durable` the last index the
//! driver reported durable (or the base: compacted entries are durable in a snapshot);
//! `cumulative_bytes[i]` is the payload size of the retained entries up to `entries[i]`.

use std::ops::RangeInclusive;

use crate::types::{Entry, LogIndex, LogPosition, SnapshotMeta, Term};

/// A server's log as the core sees it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Log {
    base: LogPosition,
    entries: Vec<Entry>,
    cumulative_bytes: Vec<u64>,
    written: LogIndex,
    durable: LogIndex,
}

/// Why a persisted log cannot be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogLoadError(pub(crate) String);

/// A log loaded at start, and what the driver must still do to its disk to match it.
#[derive(Debug)]
pub(crate) struct Loaded {
    /// The log in memory.
    pub(crate) log: Log,
    /// Rule S7 step 1 redone at start: the disk's log holds an entry at the snapshot's last
    /// index with another term, so it is an uncommitted suffix to discard from this index on
    /// (a crash fell between an install and its `TruncateLog`).
    pub(crate) discard_from: Option<LogIndex>,
}

impl Log {
    /// The log loaded at start: every entry is durable and written. Checks the invariants, since
    /// the entries come from disk. With a snapshot at `L`, the entries may start at any index up
    /// to `L + 1`; entries up to `L` are covered by the snapshot (rule S8) and only kept as
    /// retained entries when they reach `L` with the snapshot's term.
    pub(crate) fn load(
        snapshot: Option<SnapshotMeta>,
        entries: Vec<Entry>,
    ) -> Result<Loaded, LogLoadError> {
        check_loaded_entries(&entries)?;
        let snapshot_last = snapshot.map_or(LogPosition::default(), |meta| meta.last);
        let first = entries
            .first()
            .map_or(snapshot_last.index.next(), |e| e.index);
        if first > snapshot_last.index.next() {
            return Err(LogLoadError(format!(
                "the log starts at index {first}, after the snapshot's last index {} + 1: \
                 entries {}..{first} are missing",
                snapshot_last.index,
                snapshot_last.index.next()
            )));
        }
        let at_snapshot = entries
            .iter()
            .find(|e| e.index == snapshot_last.index)
            .map(|e| e.term);
        let mut discard_from = None;
        let mut base = snapshot_last;
        let mut kept = entries;
        match at_snapshot {
            Some(term) if term != snapshot_last.term => {
                discard_from = Some(first);
                kept = Vec::new();
            }
            Some(_) => {
                // Keep the retained entries below the snapshot: the first loaded entry becomes
                // the base, since the term before it is not known.
                if first < snapshot_last.index {
                    base = kept[0].position();
                }
                kept.retain(|entry| entry.index > base.index);
            }
            None if first <= snapshot_last.index => {
                // The log ends below the snapshot (an install's truncation was lost in a
                // crash, or the log lagged): the snapshot covers it all, and the driver must
                // drop it, or its log would have a gap below the next entry, L + 1.
                discard_from = Some(first);
                kept = Vec::new();
            }
            None => {}
        }
        if kept.first().is_some_and(|entry| entry.term < base.term) {
            return Err(LogLoadError(format!(
                "entry {} has term {} below the snapshot's term {}",
                kept[0].index, kept[0].term, base.term
            )));
        }
        let mut log = Log::with_base(base);
        for entry in kept {
            log.push(entry);
        }
        log.written = log.last_index();
        log.durable = log.last_index();
        Ok(Loaded { log, discard_from })
    }

    /// An empty log whose base is `base`.
    fn with_base(base: LogPosition) -> Log {
        Log {
            base,
            entries: Vec::new(),
            cumulative_bytes: Vec::new(),
            written: base.index,
            durable: base.index,
        }
    }

    /// The position just before the first retained entry (`(0, 0)` if nothing was compacted).
    pub(crate) fn base(&self) -> LogPosition {
        self.base
    }

    /// The first index the log holds an entry for (or would, once appended).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.base.index.next()
    }

    /// Index of the last entry (the base when no entry is retained).
    pub(crate) fn last_index(&self) -> LogIndex {
        LogIndex(self.base.index.0 + self.entries.len() as u64)
    }

    /// Term of the last entry (the base's when no entry is retained).
    pub(crate) fn last_term(&self) -> Term {
        self.entries
            .last()
            .map_or(self.base.term, |entry| entry.term)
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

    /// Whether `index` is compacted so far that its term is no longer known: strictly below
    /// the base (whose term is kept), and not index 0. Such an entry is covered by a durable
    /// snapshot, hence committed (rule S8).
    pub(crate) fn is_compacted(&self, index: LogIndex) -> bool {
        LogIndex(0) < index && index < self.base.index
    }

    /// The entry at `index`, if the log holds one (compacted entries are not held).
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let position = self.position_of(index)?;
        self.entries.get(position)
    }

    /// Position in `entries` of `index`, if above the base.
    fn position_of(&self, index: LogIndex) -> Option<usize> {
        let offset = index.0.checked_sub(self.base.index.0)?.checked_sub(1)?;
        usize::try_from(offset).ok()
    }

    /// Term at `index`: `Some(0)` for index 0, the base's term at the base, `None` past the end
    /// or below the base (compacted: see [`Log::is_compacted`]).
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == LogIndex(0) {
            return Some(Term(0));
        }
        if index == self.base.index {
            return Some(self.base.term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    /// Retained entries in `range` (clamped to the log).
    pub(crate) fn slice(&self, range: RangeInclusive<LogIndex>) -> &[Entry] {
        let first = self.first_index();
        let start = (*range.start()).max(first);
        let end = (*range.end()).min(self.last_index());
        if start > end {
            return &[];
        }
        let from = self.position_of(start).unwrap_or(usize::MAX);
        let to = self.position_of(end).unwrap_or(0);
        &self.entries[from..=to]
    }

    /// Payload bytes of the retained entries `from..=to` (clamped to the log).
    pub(crate) fn bytes_between(&self, from: LogIndex, to: LogIndex) -> u64 {
        let from = from.max(self.first_index());
        let to = to.min(self.last_index());
        if from > to {
            return 0;
        }
        let total = |index: LogIndex| -> u64 {
            match self.position_of(index) {
                Some(position) => self.cumulative_bytes[position],
                None => 0,
            }
        };
        total(to) - total(from.prev())
    }

    /// The first index of the run of entries that share the term of the entry at `index`, as
    /// far down as the log knows (the base, if the run reaches it).
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        let Some(term) = self.term_at(index) else {
            return LogIndex(0);
        };
        if term == self.base.term && self.base.index > LogIndex(0) {
            return self.base.index;
        }
        // Terms never decrease: the first entry with a term >= `term` starts the run.
        let position = self.entries.partition_point(|entry| entry.term < term);
        LogIndex(self.base.index.0 + position as u64 + 1).min(index)
    }

    /// The last index holding an entry of `term`, if any (the base counts).
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        let after = self.entries.partition_point(|entry| entry.term <= term);
        match after.checked_sub(1).and_then(|last| self.entries.get(last)) {
            Some(last) => (last.term == term).then_some(last.index),
            None => {
                (self.base.term == term && self.base.index > LogIndex(0)).then_some(self.base.index)
            }
        }
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

    /// Removes entries `from..` (never at or below the base); the written and durable marks
    /// fall back accordingly.
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        assert!(
            self.base.index < from,
            "invariant: compacted entries are never truncated"
        );
        let keep = self.position_of(from).unwrap_or(0);
        self.entries.truncate(keep);
        self.cumulative_bytes.truncate(keep);
        self.written = self.written.min(self.last_index());
        self.durable = self.durable.min(self.last_index());
    }

    /// Rule S4: drops the entries below `below` from memory; the entry at `below - 1` becomes
    /// the base. `below - 1` must be durable (it is at most the applied index).
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub(crate) fn compact_below(&mut self, below: LogIndex) {
        let new_base = below.prev();
        if new_base <= self.base.index {
            return;
        }
        assert!(
            new_base <= self.durable,
            "invariant: only durable entries are compacted"
        );
        let term = self
            .term_at(new_base)
            .expect("invariant: the new base is held");
        let drop = self.position_of(new_base).map_or(0, |p| p + 1);
        self.entries.drain(..drop);
        let dropped_bytes = drop
            .checked_sub(1)
            .map_or(0, |last| self.cumulative_bytes[last]);
        self.cumulative_bytes.drain(..drop);
        for total in &mut self.cumulative_bytes {
            *total -= dropped_bytes;
        }
        self.base = LogPosition {
            index: new_base,
            term,
        };
    }

    /// Rule S7 step 1, when the log does not hold the snapshot's last position: the whole log
    /// is discarded and the snapshot's last position becomes the base.
    pub(crate) fn reset_to(&mut self, base: LogPosition) {
        *self = Log::with_base(base);
    }

    /// Rule S7, when the log holds the snapshot's last position `at`: the snapshot makes
    /// everything up to `at` durable, whatever the log's own writes did.
    pub(crate) fn mark_durable_through_snapshot(&mut self, at: LogIndex) {
        assert!(
            at <= self.written,
            "invariant: the snapshot's last is written"
        );
        self.durable = self.durable.max(at);
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
            self.base.index <= self.durable,
            "invariant: base <= durable"
        );
        assert!(
            self.entries.len() == self.cumulative_bytes.len(),
            "invariant: one byte total per entry"
        );
        if let Some(first) = self.entries.first() {
            assert!(
                first.index == self.first_index(),
                "invariant: the first entry follows the base"
            );
            assert!(
                self.base.term <= first.term,
                "invariant: terms never decrease from the base"
            );
        }
    }

    /// Checks every entry (O(n)); for tests.
    #[cfg(test)]
    pub(crate) fn invariants_full(&self) {
        self.invariants();
        let mut term = self.base.term;
        for (position, entry) in self.entries.iter().enumerate() {
            assert_eq!(
                entry.index,
                LogIndex(self.base.index.0 + position as u64 + 1)
            );
            assert!(term <= entry.term);
            term = entry.term;
        }
    }
}

/// The loaded entries are consecutive, with terms above 0 that never decrease.
fn check_loaded_entries(entries: &[Entry]) -> Result<(), LogLoadError> {
    for pair in entries.windows(2) {
        if pair[1].index != pair[0].index.next() {
            return Err(LogLoadError(format!(
                "entry at index {} follows index {}: the log must have no gaps",
                pair[1].index, pair[0].index
            )));
        }
        if pair[1].term < pair[0].term {
            return Err(LogLoadError(format!(
                "entry {} has term {} after term {}",
                pair[1].index, pair[1].term, pair[0].term
            )));
        }
    }
    if let Some(entry) = entries.iter().find(|entry| entry.term == Term(0)) {
        return Err(LogLoadError(format!("entry {} has term 0", entry.index)));
    }
    if entries
        .first()
        .is_some_and(|first| first.index == LogIndex(0))
    {
        return Err(LogLoadError("an entry has index 0".into()));
    }
    Ok(())
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
        Log::load(None, entries).unwrap().log
    }

    #[test]
    fn load_checks_indices_and_terms() {
        assert!(Log::load(None, vec![entry(2, 1, "")]).is_err());
        assert!(Log::load(None, vec![entry(1, 2, ""), entry(2, 1, "")]).is_err());
        assert!(Log::load(None, vec![entry(1, 0, "")]).is_err());
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

    fn snapshot_at(index: u64, term: u64) -> Option<SnapshotMeta> {
        Some(SnapshotMeta {
            last: LogPosition {
                index: LogIndex(index),
                term: Term(term),
            },
            size: 10,
            ..SnapshotMeta::default()
        })
    }

    #[test]
    fn load_with_a_snapshot_keeps_what_reaches_it() {
        let entries = |from: u64, to: u64, term: u64| -> Vec<Entry> {
            (from..=to).map(|i| entry(i, term, "ab")).collect()
        };
        // A gap between the snapshot and the log is refused.
        assert!(Log::load(snapshot_at(5, 1), entries(7, 9, 1)).is_err());
        // Retained entries reaching the snapshot are kept; the first one is the base.
        let loaded = Log::load(snapshot_at(5, 1), entries(3, 9, 1)).unwrap();
        assert_eq!(loaded.discard_from, None);
        assert_eq!(loaded.log.base().index, LogIndex(3));
        assert_eq!(loaded.log.last_index(), LogIndex(9));
        assert_eq!(loaded.log.term_at(LogIndex(2)), None);
        assert!(loaded.log.is_compacted(LogIndex(2)));
        loaded.log.invariants_full();
        // A log that ends below the snapshot is all covered by it, and discarded, so that the
        // driver's log continues at 6 without a gap.
        let loaded = Log::load(snapshot_at(5, 1), entries(1, 4, 1)).unwrap();
        assert_eq!(loaded.discard_from, Some(LogIndex(1)));
        assert_eq!(loaded.log.last_position(), snapshot_at(5, 1).unwrap().last);
        assert_eq!(loaded.log.durable_index(), LogIndex(5));
        // A log that starts right after the snapshot is kept whole.
        let loaded = Log::load(snapshot_at(5, 1), entries(6, 7, 1)).unwrap();
        assert_eq!(loaded.discard_from, None);
        assert_eq!(loaded.log.last_index(), LogIndex(7));
        // A log with another term at the snapshot's index is discarded (S7 step 1 redone).
        let loaded = Log::load(snapshot_at(5, 2), entries(2, 8, 1)).unwrap();
        assert_eq!(loaded.discard_from, Some(LogIndex(2)));
        assert_eq!(loaded.log.last_position(), snapshot_at(5, 2).unwrap().last);
        // Entries after the snapshot may not have a lower term.
        assert!(Log::load(snapshot_at(5, 3), entries(6, 8, 2)).is_err());
    }

    #[test]
    fn compaction_moves_the_base_and_keeps_the_rest() {
        let mut log = log_of(&[1, 1, 2, 2, 3]);
        log.compact_below(LogIndex(4));
        assert_eq!(
            log.base(),
            LogPosition {
                index: LogIndex(3),
                term: Term(2)
            }
        );
        assert_eq!(log.first_index(), LogIndex(4));
        assert_eq!(log.term_at(LogIndex(3)), Some(Term(2)));
        assert_eq!(log.term_at(LogIndex(2)), None);
        assert_eq!(log.entry(LogIndex(3)), None);
        assert_eq!(log.slice(LogIndex(1)..=LogIndex(9)).len(), 2);
        assert_eq!(log.bytes_between(LogIndex(1), LogIndex(5)), 4);
        assert_eq!(log.first_index_of_term_at(LogIndex(4)), LogIndex(3));
        assert_eq!(log.last_index_of_term(Term(2)), Some(LogIndex(4)));
        assert_eq!(log.last_index_of_term(Term(1)), None);
        log.compact_below(LogIndex(2));
        assert_eq!(log.base().index, LogIndex(3), "compaction never goes back");
        log.truncate_from(LogIndex(5));
        log.push(entry(5, 4, "x"));
        log.invariants_full();
        log.reset_to(LogPosition {
            index: LogIndex(9),
            term: Term(4),
        });
        assert_eq!(log.last_index(), LogIndex(9));
        assert_eq!(log.durable_index(), LogIndex(9));
        log.invariants_full();
    }
}
