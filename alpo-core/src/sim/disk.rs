//! One node's simulated disk: a durable hard state, a synced log, unsynced log writes, the
//! newest durable snapshot file and a partial file being received.
//!
//! The driver performs the engine's outputs here (output.rs): `SaveHardState` is durable at once;
//! `TruncateLog` and `AppendLog` go to an unsynced buffer, in order. A sync (group commit) covers
//! every write made before it started and makes them durable when it completes; writes made
//! while it is in flight wait for the next sync. A crash keeps the hard state, the synced log and
//! the durable snapshot, and loses every unsynced write, the sync in flight and the partial
//! snapshot file. `CompactLog` drops whole entries from the front of both logs at once (it
//! only ever drops entries a durable snapshot covers).
//!
//! For the checkers, the disk also keeps *logical* logs (`log`, `durable_log`): the entries the
//! newest snapshot covers (as its taker's log held them), followed by the real log's entries
//! after the snapshot. They are gap-free from index 1, whatever was compacted, so the checkers
//! of docs/protocol.md (Safety properties) judge a compacted disk by what it holds, log and
//! snapshot together.
//!
//! Invariants: the running log (`live`) is always the synced log with the unsynced writes
//! replayed on it; both are gap-free, starting anywhere up to the snapshot's last index + 1;
//! a write that would leave a gap is refused with an error naming the indices.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::types::{Entry, HardState, LogIndex, LogPosition, SnapshotMeta, Term};

/// A simulated disk.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    hard_state: HardState,
    durable: Vec<Entry>,
    pending: VecDeque<(u64, Write)>,
    live: Vec<Entry>,
    next_write_seq: u64,
    sync_cover: Option<u64>,
    snapshot: Option<SnapshotFile>,
    partial: Option<(SnapshotMeta, Vec<u8>)>,
    logical: Vec<Entry>,
    logical_durable: Vec<Entry>,
    hard_state_faults: HardStateFaults,
}

/// Rules F8, F9: the hard state is kept as two copies (A and B, written together, each
/// replaced atomically) and a term ceiling in a third file; the storage-fault profile damages
/// them at rest. `hard_state` above is what both copies hold when valid.
#[derive(Clone, Copy, Debug, Default)]
struct HardStateFaults {
    /// Copy A and copy B fail their checksum.
    copy_bad: [bool; 2],
    /// The durable term ceiling (F8).
    term_ceiling: Term,
    /// The ceiling file fails its checksum.
    ceiling_bad: bool,
}

/// A durable snapshot file: its meta, its bytes, and (for the checkers only) the log entries
/// its taker held up to its last index.
#[derive(Clone, Debug)]
pub struct SnapshotFile {
    /// The snapshot's meta (`size` is `image.len()`).
    pub meta: SnapshotMeta,
    /// The file's bytes: a `StateMachine` image.
    pub image: Bytes,
    /// Entries `1..=meta.last.index` as the taker's log held them (fewer if it held fewer).
    pub covered: Arc<[Entry]>,
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

    /// The logical log as the running node sees it: what the snapshot covers, then the synced
    /// entries plus unsynced writes after it.
    #[must_use]
    pub fn log(&self) -> &[Entry] {
        &self.logical
    }

    /// The logical synced log: what survives a crash now (snapshot and synced entries).
    #[must_use]
    pub fn durable_log(&self) -> &[Entry] {
        &self.logical_durable
    }

    /// The synced log entries themselves, from the first retained index: what a restart loads.
    #[must_use]
    pub fn stored_log(&self) -> &[Entry] {
        &self.durable
    }

    /// The running log entries themselves (synced and unsynced), from the first retained index.
    #[must_use]
    pub fn live_log(&self) -> &[Entry] {
        &self.live
    }

    /// The newest durable snapshot file.
    #[must_use]
    pub fn snapshot(&self) -> Option<&SnapshotFile> {
        self.snapshot.as_ref()
    }

    /// The newest durable snapshot's last index (0 without one).
    #[must_use]
    pub fn snapshot_index(&self) -> LogIndex {
        self.snapshot
            .as_ref()
            .map_or(LogIndex(0), |file| file.meta.last.index)
    }

    /// The position of the last synced entry, logically (`(0, 0)` when nothing is synced).
    #[must_use]
    pub fn durable_last(&self) -> LogPosition {
        self.logical_durable
            .last()
            .map(Entry::position)
            .unwrap_or_default()
    }

    /// Writes the hard state durably, at once (output.rs rule 1): both copies (F8).
    pub fn save_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
        self.hard_state_faults.copy_bad = [false; 2];
    }

    /// Writes the term ceiling durably, at once (rule F8).
    pub fn save_term_ceiling(&mut self, ceiling: Term) {
        self.hard_state_faults.term_ceiling = ceiling;
        self.hard_state_faults.ceiling_bad = false;
    }

    /// Rots hard-state copy `copy` (0 for A, 1 for B) at rest (rule F8).
    pub fn damage_hard_state_copy(&mut self, copy: usize) {
        self.hard_state_faults.copy_bad[copy % 2] = true;
    }

    /// Rots the term-ceiling file at rest (rule F9's "ceiling unreadable").
    pub fn damage_term_ceiling(&mut self) {
        self.hard_state_faults.ceiling_bad = true;
    }

    /// What a start loads (rules F8, F9): the hard state from a valid copy (both hold the same
    /// state: they are written together), or `None` when neither copy is valid; and the term
    /// ceiling, `u64::MAX` when its file is unreadable.
    #[must_use]
    pub fn load_hard_state(&self) -> (Option<HardState>, Term) {
        let faults = self.hard_state_faults;
        let hard_state = (!faults.copy_bad[0] || !faults.copy_bad[1]).then_some(self.hard_state);
        let ceiling = if faults.ceiling_bad {
            Term(u64::MAX)
        } else {
            faults.term_ceiling
        };
        (hard_state, ceiling)
    }

    /// Removes entries at `from` and above from the log, unsynced. Logically, the snapshot's
    /// entries stay: it is durable.
    pub fn write_truncate(&mut self, from: LogIndex) -> Result<(), String> {
        if from.0 == 0 {
            return Err("truncate from index 0".to_string());
        }
        truncate(&mut self.live, from);
        let kept = from.max(self.snapshot_index().next());
        truncate(&mut self.logical, kept);
        self.push(Write::Truncate(from));
        Ok(())
    }

    /// Appends consecutive entries at the end of the log, unsynced.
    pub fn write_append(&mut self, entries: Vec<Entry>) -> Result<(), String> {
        let mut expected = self
            .live
            .last()
            .map_or(self.snapshot_index().next(), |last| last.index.next());
        for entry in &entries {
            if entry.index != expected {
                return Err(format!(
                    "append of index {} where the log expects index {expected}",
                    entry.index
                ));
            }
            expected = expected.next();
        }
        let logical_next = LogIndex(self.logical.len() as u64).next();
        if entries
            .first()
            .is_some_and(|first| first.index != logical_next)
        {
            return Err(format!(
                "append at index {} leaves a gap after the snapshot and log ending at {}",
                entries[0].index,
                logical_next.prev()
            ));
        }
        self.live.extend(entries.iter().cloned());
        self.logical.extend(entries.iter().cloned());
        self.push(Write::Append(entries));
        Ok(())
    }

    /// Rule S4 at the driver: drops the entries below `below` from the stored log.
    pub fn compact(&mut self, below: LogIndex) {
        self.durable.retain(|entry| entry.index >= below);
        self.live.retain(|entry| entry.index >= below);
    }

    /// Makes `file` the newest durable snapshot (rules S3, S7), unless a newer one is there.
    /// The logical logs take the snapshot's entries up to its last index and keep what followed
    /// only if they hold its last position (S7 step 1, as a restart would redo it).
    pub fn keep_snapshot(&mut self, file: SnapshotFile) {
        if file.meta.last.index <= self.snapshot_index() {
            return;
        }
        self.logical = covered_then(&file, &self.logical);
        self.logical_durable = covered_then(&file, &self.logical_durable);
        self.snapshot = Some(file);
    }

    /// Rule S6 at the driver: writes a received chunk into the partial file of `meta` (the
    /// partial file of another snapshot is discarded). Returns the whole file after the last
    /// chunk, and forgets it.
    pub fn write_chunk(
        &mut self,
        meta: SnapshotMeta,
        offset: u64,
        data: &[u8],
        last: bool,
    ) -> Result<Option<Vec<u8>>, String> {
        if self.partial.as_ref().is_none_or(|(held, _)| *held != meta) {
            self.partial = Some((meta, Vec::new()));
        }
        let Some((_, bytes)) = self.partial.as_mut() else {
            return Ok(None);
        };
        if offset != bytes.len() as u64 {
            return Err(format!(
                "chunk written at offset {offset} of a partial file of {} bytes",
                bytes.len()
            ));
        }
        bytes.extend_from_slice(data);
        if !last {
            return Ok(None);
        }
        Ok(self.partial.take().map(|(_, bytes)| bytes))
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
                    Write::Truncate(from) => {
                        truncate(&mut self.durable, from);
                        let kept = from.max(self.snapshot_index().next());
                        truncate(&mut self.logical_durable, kept);
                    }
                    Write::Append(entries) => {
                        // After an install the synced log may still end below the snapshot.
                        let next = LogIndex(self.logical_durable.len() as u64).next();
                        let after = entries.iter().filter(|entry| entry.index >= next);
                        self.logical_durable.extend(after.cloned());
                        self.durable.extend(entries);
                    }
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
        self.live.clone_from(&self.durable);
        self.logical.clone_from(&self.logical_durable);
        self.partial = None;
    }

    fn push(&mut self, write: Write) {
        self.pending.push_back((self.next_write_seq, write));
        self.next_write_seq += 1;
    }
}

/// Removes the entries at `from` and above.
fn truncate(log: &mut Vec<Entry>, from: LogIndex) {
    let keep = log.partition_point(|entry| entry.index < from);
    log.truncate(keep);
}

/// The logical log after `file` became durable: its covered entries, then those of `log` after
/// its last index if `log` holds its last position (else they conflict and are discarded).
fn covered_then(file: &SnapshotFile, log: &[Entry]) -> Vec<Entry> {
    let last = file.meta.last;
    let mut logical = file.covered.to_vec();
    let at = usize::try_from(last.index.0).unwrap_or(usize::MAX);
    let holds = at
        .checked_sub(1)
        .and_then(|slot| log.get(slot))
        .is_some_and(|entry| entry.position() == last);
    if holds && logical.len() == at {
        logical.extend(log[at..].iter().cloned());
    }
    logical
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EntryKind, NodeId};
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
    fn hard_state_loads_from_either_copy_and_is_lost_with_both() {
        let mut disk = Disk::new();
        let hard_state = HardState {
            current_term: Term(7),
            voted_for: Some(NodeId(1)),
        };
        disk.save_term_ceiling(Term(23));
        disk.save_hard_state(hard_state);
        disk.damage_hard_state_copy(0);
        assert_eq!(disk.load_hard_state(), (Some(hard_state), Term(23)));
        disk.damage_hard_state_copy(1);
        assert_eq!(disk.load_hard_state(), (None, Term(23)));
        disk.damage_term_ceiling();
        assert_eq!(disk.load_hard_state(), (None, Term(u64::MAX)));
        disk.save_hard_state(hard_state);
        disk.save_term_ceiling(Term(39));
        assert_eq!(disk.load_hard_state(), (Some(hard_state), Term(39)));
    }

    #[test]
    fn gaps_are_refused_with_the_indices() {
        let mut disk = Disk::new();
        let err = disk.write_append(vec![entry(2, 1)]).unwrap_err();
        assert!(err.contains("index 2") && err.contains("index 1"), "{err}");
        assert!(disk.write_truncate(LogIndex(0)).is_err());
    }
}
