//! The core's view of a server's log (rule S9): its term index, its marks, and a bounded cache
//! of recent entries — not the log itself, which only the driver's disk holds.
//!
//! The *base* is the position `(index, term)` just before the first retained entry: `(0, 0)`
//! until the log is compacted, then the last entry dropped by compaction (rule S4) or the last
//! position of an installed snapshot (rule S7). Entries at or below the base are *compacted*:
//! a durable snapshot covers them, so they are committed (rule S8). The term index
//! (`term_index`) knows the term of every retained entry in O(terms) memory.
//!
//! The cache is a gap-free suffix of the log, `cached_from ..= last` (payloads are `Bytes`,
//! shared not copied). It **always holds every entry above the eviction floor** the node
//! passes (its commit index, hence every entry not yet durable, every entry not yet written
//! and every proposal not yet committed); `evict` drops the oldest entries at or below the floor
//! while the cache holds more than `cache_bytes_max` payload bytes. So the cache's bytes stay
//! within `max(cache_bytes_max, bytes above the floor)` after every `evict`. Older entries
//! are read from the driver (`Output::ReadLog`, module `log_read`).
//!
//! Invariants: `base.index ≤ durable ≤ written ≤ last`, where `written` is the last index
//! handed to the driver in an `AppendLog` output and `durable` the last index the driver
//! reported durable (or the base: compacted entries are durable in a snapshot);
//! `base.index < cached_from ≤ written + 1` (every unwritten entry is cached);
//! `cache[i].index == cached_from + i` with the term index's term; `cache_totals[i]` is a
//! running payload total up to `cache[i]`, `total_before_cache` the total before the first.

use std::collections::VecDeque;

use crate::term_index::TermIndex;
use crate::types::{Entry, LogIndex, LogPosition, PersistedLog, SnapshotMeta, Term};

/// A server's log as the core sees it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Log {
    terms: TermIndex,
    /// In a checkpoint with opaque payloads by length, as in the trace (`checkpoint`).
    #[serde(with = "crate::checkpoint::opaque_entries")]
    cache: VecDeque<Entry>,
    cache_totals: VecDeque<u64>,
    total_before_cache: u64,
    cache_bytes_max: u64,
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
    /// The log loaded at start from its term index (rule S9): every entry is durable and
    /// written. Checks the invariants, since the runs come from disk. With a snapshot at `L`,
    /// the log may start at any index up to `L + 1`; entries up to `L` are covered by the
    /// snapshot (rule S8) and only kept as retained entries when they reach `L` with the
    /// snapshot's term. The tail's entries above the base warm the cache.
    pub(crate) fn load(
        snapshot: Option<SnapshotMeta>,
        persisted: PersistedLog,
        cache_bytes_max: u64,
    ) -> Result<Loaded, LogLoadError> {
        check_runs(&persisted)?;
        let snapshot_last = snapshot.map_or(LogPosition::default(), |meta| meta.last);
        let first = persisted
            .runs
            .first()
            .map_or(snapshot_last.index.next(), |run| run.first);
        if first > snapshot_last.index.next() {
            return Err(LogLoadError(format!(
                "the log starts at index {first}, after the snapshot's last index {} + 1: \
                 entries {}..{first} are missing",
                snapshot_last.index,
                snapshot_last.index.next()
            )));
        }
        let mut discard_from = None;
        let mut base = snapshot_last;
        let mut keep = !persisted.runs.is_empty();
        match term_in(&persisted, snapshot_last.index) {
            Some(term) if term != snapshot_last.term => {
                discard_from = Some(first);
                keep = false;
            }
            // Keep the retained entries below the snapshot: the first loaded entry becomes
            // the base, since the term before it is not known.
            Some(_) if first < snapshot_last.index => {
                base = LogPosition {
                    index: first,
                    term: persisted.runs[0].term,
                };
            }
            None if keep && first <= snapshot_last.index => {
                // The log ends below the snapshot (an install's truncation was lost in a
                // crash, or the log lagged): the snapshot covers it all, and the driver must
                // drop it, or its log would have a gap below the next entry, L + 1.
                discard_from = Some(first);
                keep = false;
            }
            Some(_) | None => {}
        }
        let mut log = Log::with_base(base, cache_bytes_max);
        if keep && persisted.last > base.index {
            log.fill(persisted)?;
        }
        log.written = log.last_index();
        log.durable = log.last_index();
        Ok(Loaded { log, discard_from })
    }

    /// Loads the persisted positions above the base: terms only below the tail, then the
    /// tail's entries into the cache.
    fn fill(&mut self, persisted: PersistedLog) -> Result<(), LogLoadError> {
        let base = self.base();
        let first_term = term_in(&persisted, base.index.next()).unwrap_or(Term(0));
        if first_term < base.term {
            return Err(LogLoadError(format!(
                "entry {} has term {first_term} below the snapshot's term {}",
                base.index.next(),
                base.term
            )));
        }
        let tail_first = persisted
            .tail
            .first()
            .map_or(persisted.last.next(), |entry| entry.index);
        // Positions above the base and below the tail: terms only, one run at a time.
        let terms_end = tail_first.prev().min(persisted.last);
        let runs = &persisted.runs;
        for (i, run) in runs.iter().enumerate() {
            let run_end = runs
                .get(i + 1)
                .map_or(persisted.last, |next| next.first.prev());
            let end = run_end.min(terms_end);
            if end > self.terms.last_index() {
                self.terms.extend_to(run.term, end);
            }
        }
        let known: Vec<Option<Term>> = persisted
            .tail
            .iter()
            .map(|entry| term_in(&persisted, entry.index))
            .collect();
        for (entry, known) in persisted.tail.into_iter().zip(known) {
            if entry.index <= base.index {
                continue;
            }
            if known != Some(entry.term) {
                return Err(LogLoadError(format!(
                    "tail entry {} has term {}, the term index says {known:?}",
                    entry.index, entry.term
                )));
            }
            self.push(entry);
        }
        Ok(())
    }

    /// An empty log whose base is `base`.
    fn with_base(base: LogPosition, cache_bytes_max: u64) -> Log {
        Log {
            terms: TermIndex::with_base(base),
            cache: VecDeque::new(),
            cache_totals: VecDeque::new(),
            total_before_cache: 0,
            cache_bytes_max,
            written: base.index,
            durable: base.index,
        }
    }

    /// The position just before the first retained entry (`(0, 0)` if nothing was compacted).
    pub(crate) fn base(&self) -> LogPosition {
        self.terms.base()
    }

    /// The first index the log holds an entry for (or would, once appended).
    pub(crate) fn first_index(&self) -> LogIndex {
        self.base().index.next()
    }

    /// Index of the last entry (the base when no entry is retained).
    pub(crate) fn last_index(&self) -> LogIndex {
        self.terms.last_index()
    }

    /// Term of the last entry (the base's when no entry is retained).
    pub(crate) fn last_term(&self) -> Term {
        self.terms.last_term()
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

    /// The first index the cache holds (`last + 1` when it is empty): entries from here to the
    /// last are in memory, older ones must be read (`Output::ReadLog`).
    pub(crate) fn cached_from(&self) -> LogIndex {
        LogIndex(self.last_index().0 + 1 - self.cache.len() as u64)
    }

    /// Payload bytes in the cache.
    pub(crate) fn cache_bytes(&self) -> u64 {
        self.cache_totals
            .back()
            .map_or(0, |total| total - self.total_before_cache)
    }

    /// Number of runs in the term index.
    pub(crate) fn term_run_count(&self) -> usize {
        self.terms.run_count()
    }

    /// Whether `index` is compacted so far that its term is no longer known: strictly below
    /// the base (whose term is kept), and not index 0. Such an entry is covered by a durable
    /// snapshot, hence committed (rule S8).
    pub(crate) fn is_compacted(&self, index: LogIndex) -> bool {
        LogIndex(0) < index && index < self.base().index
    }

    /// The entry at `index`, if the cache holds it.
    pub(crate) fn entry(&self, index: LogIndex) -> Option<&Entry> {
        let offset = index.0.checked_sub(self.cached_from().0)?;
        self.cache.get(usize::try_from(offset).ok()?)
    }

    /// Term at `index`: `Some(0)` for index 0, the base's term at the base, `None` past the end
    /// or below the base (compacted: see [`Log::is_compacted`]).
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        self.terms.term_at(index)
    }

    /// Whether the log holds `entry`'s position (log matching: then it holds the entry).
    pub(crate) fn holds(&self, entry: &Entry) -> bool {
        entry.index > self.base().index && self.term_at(entry.index) == Some(entry.term)
    }

    /// The cached entries in `from..=to` (clamped to the cache).
    pub(crate) fn cached(&self, from: LogIndex, to: LogIndex) -> impl Iterator<Item = &Entry> {
        let cached_from = self.cached_from();
        let start = from.max(cached_from);
        let end = to.min(self.last_index());
        let (a, b) = if start > end {
            (0, 0)
        } else {
            (
                usize::try_from(start.0 - cached_from.0).unwrap_or(usize::MAX),
                usize::try_from(end.0 - cached_from.0 + 1).unwrap_or(usize::MAX),
            )
        };
        self.cache.range(a..b)
    }

    /// Payload bytes of the cached entries `from..=to` (clamped to the cache).
    pub(crate) fn bytes_between(&self, from: LogIndex, to: LogIndex) -> u64 {
        let from = from.max(self.cached_from());
        let to = to.min(self.last_index());
        if from > to {
            return 0;
        }
        let total_through = |index: LogIndex| -> u64 {
            if index < self.cached_from() {
                return self.total_before_cache;
            }
            let offset = usize::try_from(index.0 - self.cached_from().0).unwrap_or(usize::MAX);
            self.cache_totals[offset]
        };
        total_through(to) - total_through(from.prev())
    }

    /// The first index of the run of entries that share the term of the entry at `index`, as
    /// far down as the log knows (the base, if the run reaches it).
    pub(crate) fn first_index_of_term_at(&self, index: LogIndex) -> LogIndex {
        self.terms.first_index_of_term_at(index)
    }

    /// The last index holding an entry of `term`, if any (the base counts).
    pub(crate) fn last_index_of_term(&self, term: Term) -> Option<LogIndex> {
        self.terms.last_index_of_term(term)
    }

    /// Appends `entry`, which must continue the log with a term no lower than the last; it
    /// enters the cache.
    pub(crate) fn push(&mut self, entry: Entry) {
        assert!(
            entry.index == self.last_index().next(),
            "invariant: the log has no gaps"
        );
        assert!(
            self.last_term() <= entry.term,
            "invariant: terms never decrease in the log"
        );
        if self.cache.is_empty() && entry.index != self.cached_from() {
            unreachable!("an empty cache starts at last + 1");
        }
        let before = self
            .cache_totals
            .back()
            .copied()
            .unwrap_or(self.total_before_cache);
        self.cache_totals
            .push_back(before + entry.payload.len() as u64);
        self.terms.push(entry.term);
        self.cache.push_back(entry);
    }

    /// Removes entries `from..` (never at or below the base); the written and durable marks
    /// fall back accordingly.
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        assert!(
            self.base().index < from,
            "invariant: compacted entries are never truncated"
        );
        let cached_from = self.cached_from();
        let keep = usize::try_from(from.0.saturating_sub(cached_from.0)).unwrap_or(usize::MAX);
        if keep < self.cache.len() {
            self.cache.truncate(keep);
            self.cache_totals.truncate(keep);
        }
        if from < cached_from {
            // Truncated below the cache: the cache is empty and starts at the new last + 1.
            self.cache.clear();
            self.cache_totals.clear();
        }
        self.terms.truncate_from(from);
        self.written = self.written.min(self.last_index());
        self.durable = self.durable.min(self.last_index());
    }

    /// Rule S9's eviction: drops the oldest cached entries at or below `floor` (and durable)
    /// while the cache holds more than `cache_bytes_max` bytes. Returns how many it dropped.
    pub(crate) fn evict(&mut self, floor: LogIndex) -> usize {
        let floor = floor.min(self.durable);
        let mut dropped = 0;
        while self.cache_bytes() > self.cache_bytes_max
            && self.cache.front().is_some_and(|entry| entry.index <= floor)
        {
            self.drop_front();
            dropped += 1;
        }
        dropped
    }

    fn drop_front(&mut self) {
        if self.cache.pop_front().is_some()
            && let Some(total) = self.cache_totals.pop_front()
        {
            self.total_before_cache = total;
        }
    }

    /// Rule S4: drops the entries below `below`; the entry at `below - 1` becomes the base.
    /// `below - 1` must be durable (it is at most the applied index).
    pub(crate) fn compact_below(&mut self, below: LogIndex) {
        let new_base = below.prev();
        if new_base <= self.base().index {
            return;
        }
        assert!(
            new_base <= self.durable,
            "invariant: only durable entries are compacted"
        );
        while self
            .cache
            .front()
            .is_some_and(|entry| entry.index <= new_base)
        {
            self.drop_front();
        }
        self.terms.compact_to(new_base);
    }

    /// Rule S7 step 1, when the log does not hold the snapshot's last position: the whole log
    /// is discarded and the snapshot's last position becomes the base.
    pub(crate) fn reset_to(&mut self, base: LogPosition) {
        *self = Log::with_base(base, self.cache_bytes_max);
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

    /// Marks every entry as handed to the driver; returns the entries not yet written (all
    /// cached: the cache holds every unwritten entry).
    pub(crate) fn take_unwritten(&mut self) -> Vec<Entry> {
        let unwritten: Vec<Entry> = self
            .cached(self.written.next(), self.last_index())
            .cloned()
            .collect();
        debug_assert_eq!(unwritten.len() as u64, self.last_index().0 - self.written.0);
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

    /// Checks the invariants in the module documentation that cost O(1) or O(terms).
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
            self.base().index <= self.durable,
            "invariant: base <= durable"
        );
        self.terms.invariants();
        assert!(
            self.cache.len() == self.cache_totals.len(),
            "invariant: one byte total per cached entry"
        );
        assert!(
            self.base().index < self.cached_from() && self.cached_from() <= self.written.next(),
            "invariant: the cache holds every unwritten entry and nothing compacted"
        );
        if let Some(first) = self.cache.front() {
            debug_assert!(
                first.index == self.cached_from(),
                "invariant: the cache is a suffix of the log"
            );
            debug_assert!(
                self.term_at(first.index) == Some(first.term),
                "invariant: the cache agrees with the term index"
            );
        }
    }

    /// Checks every cached entry and the term index (O(n)); for tests.
    #[cfg(test)]
    pub(crate) fn invariants_full(&self) {
        self.invariants();
        for (offset, entry) in self.cache.iter().enumerate() {
            assert_eq!(entry.index, LogIndex(self.cached_from().0 + offset as u64));
            assert_eq!(self.term_at(entry.index), Some(entry.term));
        }
    }
}

/// The term of the persisted log's entry at `index`, if it holds one.
fn term_in(persisted: &PersistedLog, index: LogIndex) -> Option<Term> {
    let runs = &persisted.runs;
    if runs.first().is_none_or(|run| index < run.first) || index > persisted.last {
        return None;
    }
    let run = runs
        .partition_point(|run| run.first <= index)
        .checked_sub(1)?;
    Some(runs[run].term)
}

/// The persisted runs are in order with increasing terms above 0, and `last` ends the last.
fn check_runs(persisted: &PersistedLog) -> Result<(), LogLoadError> {
    for pair in persisted.runs.windows(2) {
        if pair[1].first <= pair[0].first {
            return Err(LogLoadError(format!(
                "the term run at index {} follows the run at index {}: the log must be in order",
                pair[1].first, pair[0].first
            )));
        }
        if pair[1].term <= pair[0].term {
            return Err(LogLoadError(format!(
                "entry {} has term {} after term {}",
                pair[1].first, pair[1].term, pair[0].term
            )));
        }
    }
    if let Some(run) = persisted.runs.iter().find(|run| run.term == Term(0)) {
        return Err(LogLoadError(format!("entry {} has term 0", run.first)));
    }
    match persisted.runs.first() {
        Some(first) if first.first == LogIndex(0) => {
            return Err(LogLoadError("an entry has index 0".into()));
        }
        Some(_) => {}
        None if persisted.last != LogIndex(0) || !persisted.tail.is_empty() => {
            return Err(LogLoadError(format!(
                "the log ends at index {} but has no term runs",
                persisted.last
            )));
        }
        None => {}
    }
    if let Some(run) = persisted.runs.last()
        && run.first > persisted.last
    {
        return Err(LogLoadError(format!(
            "the last term run starts at index {}, after the log's last index {}",
            run.first, persisted.last
        )));
    }
    for pair in persisted.tail.windows(2) {
        if pair[1].index != pair[0].index.next() {
            return Err(LogLoadError(format!(
                "entry at index {} follows index {}: the log must have no gaps",
                pair[1].index, pair[0].index
            )));
        }
    }
    if let Some(last) = persisted.tail.last()
        && last.index != persisted.last
    {
        return Err(LogLoadError(format!(
            "the tail ends at index {}, the log at index {}",
            last.index, persisted.last
        )));
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

    fn load(snapshot: Option<SnapshotMeta>, entries: Vec<Entry>) -> Result<Loaded, LogLoadError> {
        Log::load(snapshot, PersistedLog::from_entries(entries), u64::MAX)
    }

    fn log_of(terms: &[u64]) -> Log {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| entry(i as u64 + 1, *t, "ab"))
            .collect();
        load(None, entries).unwrap().log
    }

    #[test]
    fn load_checks_indices_and_terms() {
        assert!(load(None, vec![entry(2, 1, "")]).is_err());
        assert!(load(None, vec![entry(1, 2, ""), entry(2, 1, "")]).is_err());
        assert!(load(None, vec![entry(1, 0, "")]).is_err());
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
        assert!(load(snapshot_at(5, 1), entries(7, 9, 1)).is_err());
        // Retained entries reaching the snapshot are kept; the first one is the base.
        let loaded = load(snapshot_at(5, 1), entries(3, 9, 1)).unwrap();
        assert_eq!(loaded.discard_from, None);
        assert_eq!(loaded.log.base().index, LogIndex(3));
        assert_eq!(loaded.log.last_index(), LogIndex(9));
        assert_eq!(loaded.log.term_at(LogIndex(2)), None);
        assert!(loaded.log.is_compacted(LogIndex(2)));
        loaded.log.invariants_full();
        // A log that ends below the snapshot is all covered by it, and discarded, so that the
        // driver's log continues at 6 without a gap.
        let loaded = load(snapshot_at(5, 1), entries(1, 4, 1)).unwrap();
        assert_eq!(loaded.discard_from, Some(LogIndex(1)));
        assert_eq!(loaded.log.last_position(), snapshot_at(5, 1).unwrap().last);
        assert_eq!(loaded.log.durable_index(), LogIndex(5));
        // A log that starts right after the snapshot is kept whole.
        let loaded = load(snapshot_at(5, 1), entries(6, 7, 1)).unwrap();
        assert_eq!(loaded.discard_from, None);
        assert_eq!(loaded.log.last_index(), LogIndex(7));
        // A log with another term at the snapshot's index is discarded (S7 step 1 redone).
        let loaded = load(snapshot_at(5, 2), entries(2, 8, 1)).unwrap();
        assert_eq!(loaded.discard_from, Some(LogIndex(2)));
        assert_eq!(loaded.log.last_position(), snapshot_at(5, 2).unwrap().last);
        // Entries after the snapshot may not have a lower term.
        assert!(load(snapshot_at(5, 3), entries(6, 8, 2)).is_err());
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
        assert_eq!(log.cached(LogIndex(1), LogIndex(9)).count(), 2);
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
