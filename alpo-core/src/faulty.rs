//! Faulty log entries (docs/protocol.md §18, rules F3–F5; issue 13): entries whose position
//! `(index, term)` and payload CRC the driver knows from the record's identifier, but whose
//! record it cannot read or verify (a bit flip at rest, a lost or misdirected write, a latent
//! read error). This module holds the types a driver hands the core and the set the node keeps.
//!
//! # What a driver does (the API the node wiring is written against)
//! 1. **At start**, the driver's recovery scan classifies every record (F3). An entry whose
//!    identifier is valid but whose record is bad, missing or stale is *faulty*: its position
//!    goes into [`crate::types::PersistedLog::runs`] like any other (F4: positions count) and
//!    its `(index, term, payload_crc)` into [`crate::types::PersistedLog::faulty`]. The tail
//!    (the cache's warm-up) holds only entries above the highest faulty index. A record that
//!    cannot be placed (position unknown) is not faulty but a conflict: the driver truncates
//!    from it as for a torn tail only when F3 says so, else it refuses to start (F10 is not
//!    built yet).
//! 2. **At runtime**, a log read (`Output::ReadLog`) whose record fails verification while its
//!    identifier is valid: the driver first calls `Node::on_entry_faulty(now, FaultyEntry)`,
//!    then answers the read with `LogReadResult::Fault(index)`. The node then ends the read
//!    without stopping (a `Fault` for an index it was not told of still stops it, rule S9).
//! 3. **Repair**: the node emits `Output::RepairEntry { entry }` with a copy at the faulty
//!    position (from the leader's Append, or from its own entry cache). The driver checks the
//!    copy's [`payload_crc`] against the identifier's (F12: a receiver verifies before
//!    writing; the core leaves byte checks to the driver, as its trace does not record
//!    payloads). If it matches, the driver rewrites the record (and its identifier) in place
//!    at `entry.index`, after every log write listed before it, makes it durable, and calls
//!    `Node::on_entry_repaired(now, entry.position())`; if not, it writes nothing and calls
//!    `Node::on_entry_repair_failed(now, entry.position())`, and the entry stays faulty.
//!
//! # Invariants
//! Every faulty entry lies above the log's base and within its last index, at a position the
//! term index holds; the cache never holds a faulty index (the cache is a suffix above every
//! faulty index, or the entry is repaired from it). A faulty entry leaves the set only by a
//! durable repair of the same position, a truncation (R4, rule F5's other term) or a snapshot
//! that covers it (F3: entries ≤ `L` are dropped, not faulty). While an index `f` is faulty the
//! node applies nothing from `f` on, acknowledges nothing from `f` on (F5) and sends nothing at
//! `f` (F12).

use std::collections::BTreeMap;

use crate::types::{Entry, LogIndex, LogPosition, Term};

/// A faulty entry: its position and its payload's CRC, as the record's identifier states them
/// (rule F2). The payload itself is lost until repaired.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FaultyEntry {
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
    /// [`payload_crc`] of the entry's payload.
    pub payload_crc: u32,
}

impl FaultyEntry {
    /// The faulty entry at `entry`'s position with `entry`'s CRC (for tests and simulators that
    /// damage an entry they hold).
    #[must_use]
    pub fn of(entry: &Entry) -> FaultyEntry {
        FaultyEntry {
            index: entry.index,
            term: entry.term,
            payload_crc: payload_crc(&entry.payload),
        }
    }

    /// The entry's position `(index, term)`.
    #[must_use]
    pub fn position(&self) -> LogPosition {
        LogPosition {
            index: self.index,
            term: self.term,
        }
    }

    /// Whether `entry` is a verified copy of this entry: same position, same payload CRC
    /// (rules F5, F12).
    #[must_use]
    pub fn repaired_by(&self, entry: &Entry) -> bool {
        entry.position() == self.position() && payload_crc(&entry.payload) == self.payload_crc
    }
}

/// The CRC a record's identifier keeps of its payload (rule F2): CRC-32 (IEEE, `crc32fast`) of
/// the payload bytes alone. A driver's identifiers must use this same function.
#[must_use]
pub fn payload_crc(payload: &[u8]) -> u32 {
    crc32fast::hash(payload)
}

/// The node's faulty entries, by index, and which of them have a repair written but not yet
/// reported durable.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct FaultySet {
    entries: BTreeMap<LogIndex, Faulty>,
}

/// One faulty entry and its repair's state.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
struct Faulty {
    entry: FaultyEntry,
    /// A `RepairEntry` for it was emitted; it stays faulty until reported durable.
    repairing: bool,
}

impl FaultySet {
    /// The lowest faulty index, if any (`f` of rule F5).
    pub(crate) fn first(&self) -> Option<LogIndex> {
        self.entries.keys().next().copied()
    }

    /// Whether `index` is faulty.
    pub(crate) fn contains(&self, index: LogIndex) -> bool {
        self.entries.contains_key(&index)
    }

    /// The faulty entry at `index`, if any.
    pub(crate) fn get(&self, index: LogIndex) -> Option<FaultyEntry> {
        self.entries.get(&index).map(|faulty| faulty.entry)
    }

    /// How many entries are faulty.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The faulty entries, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = FaultyEntry> + '_ {
        self.entries.values().map(|faulty| faulty.entry)
    }

    /// The lowest faulty index at or above `from`, if any.
    pub(crate) fn first_from(&self, from: LogIndex) -> Option<LogIndex> {
        self.entries.range(from..).next().map(|(index, _)| *index)
    }

    /// Marks `entry` faulty; returns whether it was new.
    pub(crate) fn insert(&mut self, entry: FaultyEntry) -> bool {
        if self.entries.contains_key(&entry.index) {
            return false;
        }
        self.entries.insert(
            entry.index,
            Faulty {
                entry,
                repairing: false,
            },
        );
        true
    }

    /// Whether a repair of `index` is written and not yet durable.
    pub(crate) fn is_repairing(&self, index: LogIndex) -> bool {
        self.entries
            .get(&index)
            .is_some_and(|faulty| faulty.repairing)
    }

    /// A repair of `index` was handed to the driver.
    pub(crate) fn set_repairing(&mut self, index: LogIndex) {
        if let Some(faulty) = self.entries.get_mut(&index) {
            faulty.repairing = true;
        }
    }

    /// The repair of `position` is durable: it is no longer faulty. Returns whether it was.
    pub(crate) fn repaired(&mut self, position: LogPosition) -> bool {
        match self.entries.get(&position.index) {
            Some(faulty) if faulty.repairing && faulty.entry.position() == position => {
                self.entries.remove(&position.index);
                true
            }
            _ => false,
        }
    }

    /// The repair of `position` was not written (its copy failed the CRC check): the entry
    /// stays faulty and may be repaired again. Returns whether a repair was under way.
    pub(crate) fn repair_failed(&mut self, position: LogPosition) -> bool {
        match self.entries.get_mut(&position.index) {
            Some(faulty) if faulty.repairing && faulty.entry.position() == position => {
                faulty.repairing = false;
                true
            }
            _ => false,
        }
    }

    /// Entries `from..` left the log (R4 truncation): they are no longer faulty.
    pub(crate) fn truncate_from(&mut self, from: LogIndex) {
        self.entries.split_off(&from);
    }

    /// Entries `..=through` are covered by a durable snapshot: dropped, not faulty (F3).
    pub(crate) fn drop_through(&mut self, through: LogIndex) {
        self.entries = self.entries.split_off(&through.next());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;
    use bytes::Bytes;

    fn entry(index: u64, term: u64, payload: &'static [u8]) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn a_repair_must_match_position_and_crc() {
        let faulty = FaultyEntry::of(&entry(5, 2, b"five"));
        assert!(faulty.repaired_by(&entry(5, 2, b"five")));
        assert!(
            !faulty.repaired_by(&entry(5, 2, b"fivf")),
            "another payload"
        );
        assert!(!faulty.repaired_by(&entry(5, 3, b"five")), "another term");
        assert!(!faulty.repaired_by(&entry(6, 2, b"five")), "another index");
    }

    #[test]
    fn the_set_leaves_only_by_durable_repair_truncation_or_snapshot() {
        let mut set = FaultySet::default();
        for index in [3, 5, 8] {
            assert!(set.insert(FaultyEntry::of(&entry(index, 1, b"x"))));
        }
        assert!(!set.insert(FaultyEntry::of(&entry(5, 1, b"x"))));
        assert_eq!(set.first(), Some(LogIndex(3)));
        assert_eq!(set.first_from(LogIndex(4)), Some(LogIndex(5)));
        let five = LogPosition {
            index: LogIndex(5),
            term: Term(1),
        };
        assert!(!set.repaired(five), "no repair was written");
        set.set_repairing(LogIndex(5));
        assert!(set.is_repairing(LogIndex(5)));
        assert!(set.repaired(five));
        assert!(!set.contains(LogIndex(5)));
        set.drop_through(LogIndex(3));
        assert_eq!(set.first(), Some(LogIndex(8)));
        set.truncate_from(LogIndex(8));
        assert_eq!(set.len(), 0);
    }
}
