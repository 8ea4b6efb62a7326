//! Faulty entries at the node (docs/protocol.md §18, rules F4, F5, F7 in part, F12; issue 13):
//! learning them (at start, `Node::on_entry_faulty`), repairing them from a leader's Append or
//! from the entry cache (`Output::RepairEntry`, `Node::on_entry_repaired`), and the limits they
//! put on acknowledging, applying and sending. The driver's contract is on [`crate::faulty`].
//!
//! Invariants kept here: a faulty entry's position is one the term index holds (F4: positions
//! count, so rank and the up-to-date check use them unchanged); a faulty entry leaves the set
//! only by a durable repair of its very position, a truncation or a covering snapshot; while
//! `f` is the lowest faulty index, no acknowledgement reaches `f` (F5, F7: an `Accepted{m}` is
//! backed by an intact durable log through `m`), no entry from `f` on is applied (R11 as
//! amended), the node counts itself toward commit only below `f` (R10), and a leader sends
//! nothing at a faulty index it cannot read (F12).

use super::Node;
use crate::error::ConfigError;
use crate::faulty::{FaultyEntry, FaultySet};
use crate::injected::injected;
use crate::log::Log;
use crate::marks::hit;
use crate::output::Output;
use crate::types::{Entry, LogIndex, LogPosition, SnapshotMeta};

/// Checks the faulty entries a driver passed at start against the loaded log (they come from
/// disk): each at a position the log holds, not in the cache's warm-up. Entries at or below the
/// snapshot's last index `L` are covered by it: dropped, not faulty (F3).
pub(super) fn load_faulty(
    log: &Log,
    snapshot: Option<SnapshotMeta>,
    faulty: &[FaultyEntry],
) -> Result<FaultySet, ConfigError> {
    let snapshot_index = snapshot.map_or(LogIndex(0), |meta| meta.last.index);
    let mut set = FaultySet::default();
    for entry in faulty {
        if entry.index <= log.base().index.max(snapshot_index) {
            hit!(f3_faulty_entry_below_snapshot_dropped);
            continue;
        }
        if log.term_at(entry.index) != Some(entry.term) {
            return Err(ConfigError {
                field: "persisted.log.faulty",
                problem: format!(
                    "faulty entry ({}, {}) is not a position of the log (last {}, term there {:?})",
                    entry.index,
                    entry.term,
                    log.last_index(),
                    log.term_at(entry.index)
                ),
            });
        }
        if entry.index >= log.cached_from() {
            return Err(ConfigError {
                field: "persisted.log.tail",
                problem: format!(
                    "the tail holds entry {}, which is faulty: the tail must start above every \
                     faulty entry",
                    entry.index
                ),
            });
        }
        set.insert(*entry);
    }
    Ok(set)
}

impl Node {
    /// The lowest faulty index, if any (`f` of rule F5).
    pub(super) fn first_faulty(&self) -> Option<LogIndex> {
        self.faulty.first()
    }

    /// Rule F5: the highest index this node may acknowledge or count as held intact, given
    /// that it verified its log up to `verified`.
    pub(super) fn intact_through(&self, verified: LogIndex) -> LogIndex {
        match self.faulty.first() {
            Some(first) if first <= verified => {
                hit!(f5_acknowledgement_stops_below_faulty_entry);
                first.prev()
            }
            _ => verified,
        }
    }

    /// Rule F5 (R11 amended): the highest index that may be applied now.
    pub(super) fn apply_limit(&self) -> LogIndex {
        match self.faulty.first() {
            Some(first) if first <= self.commit_index => {
                hit!(f5_apply_stops_before_faulty_entry);
                first.prev().max(self.applied_index)
            }
            _ => self.commit_index,
        }
    }

    /// A read at runtime found the entry at `entry`'s position faulty (`Node::on_entry_faulty`).
    pub(super) fn entry_faulty(&mut self, entry: FaultyEntry) {
        if entry.index <= self.log.base().index || self.log.term_at(entry.index) != Some(entry.term)
        {
            // The log no longer holds that position (a truncation or a snapshot raced the
            // read): nothing of ours is faulty.
            hit!(f5_stale_fault_report_ignored);
            return;
        }
        if !self.faulty.insert(entry) {
            return;
        }
        hit!(f5_runtime_fault_marks_entry_faulty);
        if let Some(cached) = self.log.entry(entry.index).cloned() {
            // The cache holds the entry as it was written: repair from it at once (the driver
            // checks the copy against the identifier's CRC before writing, F12).
            hit!(f5_faulty_entry_repaired_from_cache);
            self.write_repair(cached);
        }
        self.truncate_faulty_on_injected_bug();
    }

    /// The driver made the repair of `position` durable (`Node::on_entry_repaired`).
    pub(super) fn entry_repaired(&mut self, now: crate::types::Instant, position: LogPosition) {
        if !self.faulty.repaired(position) {
            hit!(f5_stale_repair_report_ignored);
            return;
        }
        hit!(f5_faulty_entry_repaired);
        // The acknowledgement held back by the fault may go now, and the apply go on.
        self.on_durable_advanced(now);
        // F6: a recovering leader may now append its no-op, or fetch the next entry.
        self.finish_recovery(now);
    }

    /// The driver found the copy it was to write for `position` not matching the identifier's
    /// CRC (F12): nothing was written, the entry stays faulty and a later copy may repair it.
    pub(super) fn entry_repair_failed(&mut self, position: LogPosition) {
        if self.faulty.repair_failed(position) {
            hit!(f12_unverified_repair_refused);
            // Ask again at once (F6): another peer's copy may be intact.
            self.fetch = None;
        } else {
            hit!(f5_stale_repair_report_ignored);
        }
    }

    /// Rule F5 at a follower: `entry` came from the leader at the position of a faulty entry:
    /// its payload replaces the faulty one (the driver checks the identifier's CRC first,
    /// F12), unless a repair is already being written.
    pub(super) fn repair_from_leader(&mut self, entry: &Entry) {
        debug_assert!(self.faulty.get(entry.index).map(|f| f.position()) == Some(entry.position()));
        if self.faulty.is_repairing(entry.index) {
            return;
        }
        hit!(f5_faulty_entry_repaired_from_append);
        self.write_repair(entry.clone());
    }

    /// Hands a copy at a faulty position to the driver to check and rewrite in place.
    pub(super) fn write_repair(&mut self, entry: Entry) {
        debug_assert!(
            self.faulty
                .get(entry.index)
                .is_some_and(|faulty| faulty.position() == entry.position())
        );
        self.faulty.set_repairing(entry.index);
        self.flush_log_writes();
        self.outputs.push(Output::RepairEntry { entry });
    }

    /// Injected bug 10 (`TruncateFaultyEntries`, the PAR "Truncate" reaction, FAST'18 Fig. 2):
    /// the node drops its log from the first faulty entry and carries on as if it never had
    /// it, so it votes for candidates that lack an entry it acknowledged.
    pub(super) fn truncate_faulty_on_injected_bug(&mut self) {
        if !injected!(self, TruncateFaultyEntries) {
            return;
        }
        let Some(first) = self.faulty.first() else {
            return;
        };
        if first <= self.commit_index || self.role == super::Role::Leader {
            return;
        }
        self.outputs.push(Output::TruncateLog { from: first });
        self.log.truncate_from(first);
        self.faulty.truncate_from(first);
        if self.membership.on_truncate(first) {
            self.configuration_changed();
        }
    }

    /// Invariants of the faulty set (module documentation).
    pub(super) fn faulty_invariants(&self) {
        for entry in self.faulty.iter() {
            assert!(
                entry.index > self.log.base().index
                    && self.log.term_at(entry.index) == Some(entry.term),
                "invariant: a faulty entry is a position of the log (F4)"
            );
        }
    }
}
