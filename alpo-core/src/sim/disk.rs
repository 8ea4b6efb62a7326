//! One node's simulated disk: a durable hard state, a synced log, and unsynced log writes.
//!
//! The driver performs the engine's outputs here (output.rs): `SaveHardState` is durable at once;
//! `TruncateLog` and `AppendLog` go to an unsynced buffer, in order. A sync (group commit) covers
//! every write made before it started and makes them durable when it completes; writes made
//! while it is in flight wait for the next sync. A crash keeps the hard state and the synced log
//! and loses every unsynced write and the sync in flight.
//!
//! Invariants: `log` (what the running node believes it holds) is always the synced log with the
//! unsynced writes replayed on it; both logs are gap-free from index 1; a write that would leave
//! a gap is refused with an error naming the indices.

use std::collections::VecDeque;

use crate::types::{Entry, HardState, LogIndex, LogPosition};

/// A simulated disk.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    hard_state: HardState,
    durable: Vec<Entry>,
    pending: VecDeque<(u64, Write)>,
    log: Vec<Entry>,
    next_write_seq: u64,
    sync_cover: Option<u64>,
}

#[derive(Clone, Debug)]
enum Write {
    Truncate(LogIndex),
    Append(Vec<Entry>),
}

/// A sync in flight: it covers the writes numbered below `cover`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncToken {
    cover: u64,
}

impl Disk {
    /// An empty disk.
    #[must_use]
    pub fn new() -> Disk {
        Disk::default()
    }

    /// The durable term and vote.
    #[must_use]
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// The log as the running node sees it: synced entries plus unsynced writes.
    #[must_use]
    pub fn log(&self) -> &[Entry] {
        &self.log
    }

    /// The synced log: what survives a crash.
    #[must_use]
    pub fn durable_log(&self) -> &[Entry] {
        &self.durable
    }

    /// The position of the last synced entry, `(0, 0)` when the synced log is empty.
    #[must_use]
    pub fn durable_last(&self) -> LogPosition {
        self.durable.last().map(Entry::position).unwrap_or_default()
    }

    /// Writes the hard state durably, at once (output.rs rule 1).
    pub fn save_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Removes entries at `from` and above from the log, unsynced.
    pub fn write_truncate(&mut self, from: LogIndex) -> Result<(), String> {
        if from.0 == 0 {
            return Err("truncate from index 0".to_string());
        }
        truncate(&mut self.log, from);
        self.push(Write::Truncate(from));
        Ok(())
    }

    /// Appends consecutive entries at the end of the log, unsynced.
    pub fn write_append(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        let mut expected = LogIndex(u64::try_from(self.log.len()).unwrap_or(u64::MAX)).next();
        for entry in &entries {
            if entry.index != expected {
                return Err(format!(
                    "append of index {} where the log expects index {expected}",
                    entry.index
                ));
            }
            expected = expected.next();
        }
        self.log.extend(entries.iter().cloned());
        self.push(Write::Append(entries));
        Ok(())
    }

    /// Whether there are unsynced writes and no sync in flight to cover them.
    #[must_use]
    pub fn needs_sync(&self) -> bool {
        self.sync_cover.is_none() && !self.pending.is_empty()
    }

    /// Starts a sync covering every write made so far.
    pub fn start_sync(&mut self) -> SyncToken {
        self.sync_cover = Some(self.next_write_seq);
        SyncToken {
            cover: self.next_write_seq,
        }
    }

    /// Completes a sync: the writes it covers become durable. Returns the last durable position.
    pub fn complete_sync(&mut self, token: SyncToken) -> LogPosition {
        while let Some((seq, _)) = self.pending.front() {
            if *seq >= token.cover {
                break;
            }
            if let Some((_, write)) = self.pending.pop_front() {
                match write {
                    Write::Truncate(from) => truncate(&mut self.durable, from),
                    Write::Append(entries) => self.durable.extend(entries),
                }
            }
        }
        if self.sync_cover == Some(token.cover) {
            self.sync_cover = None;
        }
        self.durable_last()
    }

    /// A crash: unsynced writes and the sync in flight are lost; the running view of the log
    /// falls back to the synced log.
    pub fn crash(&mut self) {
        self.pending.clear();
        self.sync_cover = None;
        self.log.clone_from(&self.durable);
    }

    fn push(&mut self, write: Write) {
        self.pending.push_back((self.next_write_seq, write));
        self.next_write_seq += 1;
    }
}

fn truncate(log: &mut Vec<Entry>, from: LogIndex) {
    let keep = usize::try_from(from.0.saturating_sub(1)).unwrap_or(usize::MAX);
    log.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EntryKind, NodeId, Term};
    use bytes::Bytes;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload: Bytes::from(vec![u8::try_from(index).unwrap()]),
        }
    }

    fn terms(log: &[Entry]) -> Vec<u64> {
        log.iter().map(|e| e.term.0).collect()
    }

    #[test]
    fn crash_loses_unsynced_writes_and_keeps_synced_ones() {
        let mut disk = Disk::new();
        disk.write_append(vec![entry(1, 1), entry(2, 1)]).unwrap();
        let token = disk.start_sync();
        disk.write_append(vec![entry(3, 1)]).unwrap();
        assert_eq!(disk.complete_sync(token).index, LogIndex(2));
        assert_eq!(terms(disk.log()), vec![1, 1, 1]);
        assert!(disk.needs_sync());
        disk.crash();
        assert_eq!(terms(disk.log()), vec![1, 1]);
        assert_eq!(terms(disk.durable_log()), vec![1, 1]);
        assert!(!disk.needs_sync());
    }

    #[test]
    fn unsynced_truncation_is_undone_by_a_crash() {
        let mut disk = Disk::new();
        disk.write_append(vec![entry(1, 1), entry(2, 1), entry(3, 1)])
            .unwrap();
        let token = disk.start_sync();
        disk.complete_sync(token);
        disk.write_truncate(LogIndex(2)).unwrap();
        disk.write_append(vec![entry(2, 2)]).unwrap();
        assert_eq!(terms(disk.log()), vec![1, 2]);
        disk.crash();
        assert_eq!(terms(disk.log()), vec![1, 1, 1]);
    }

    #[test]
    fn a_sync_covers_the_truncation_and_append_written_before_it() {
        let mut disk = Disk::new();
        disk.write_append(vec![entry(1, 1), entry(2, 1)]).unwrap();
        disk.write_truncate(LogIndex(2)).unwrap();
        disk.write_append(vec![entry(2, 3)]).unwrap();
        let token = disk.start_sync();
        assert!(!disk.needs_sync());
        let last = disk.complete_sync(token);
        assert_eq!((last.index, last.term), (LogIndex(2), Term(3)));
        assert_eq!(terms(disk.durable_log()), vec![1, 3]);
    }

    #[test]
    fn a_crash_voids_the_sync_in_flight_and_hard_state_survives() {
        let mut disk = Disk::new();
        let hard_state = HardState {
            current_term: Term(4),
            voted_for: Some(NodeId(2)),
        };
        disk.save_hard_state(hard_state);
        disk.write_append(vec![entry(1, 4)]).unwrap();
        let token = disk.start_sync();
        disk.crash();
        assert_eq!(disk.complete_sync(token).index, LogIndex(0));
        assert!(disk.durable_log().is_empty());
        assert_eq!(disk.hard_state(), hard_state);
    }

    #[test]
    fn gaps_are_refused_with_the_indices() {
        let mut disk = Disk::new();
        let err = disk.write_append(vec![entry(2, 1)]).unwrap_err();
        assert!(err.contains("index 2") && err.contains("index 1"), "{err}");
        assert!(disk.write_truncate(LogIndex(0)).is_err());
    }
}
