//! Rule S9 at the node: asking the driver for entries the cache no longer holds
//! (`Output::ReadLog`) and using its answers (`Node::on_log_read`). The contract is on
//! `crate::log_read`.
//!
//! Invariants kept here: at most one read in flight per purpose (the in-order `Apply`, or one
//! follower's next Appends); each read asks for `read_inflight_bytes_max / members` bytes, so
//! the reads in flight sum to at most `Config::read_inflight_bytes_max` and no follower starves
//! another; an answer's entries are used only from the read's `from`
//! on, gap-free, and only while the term index still holds their positions (contract (c));
//! an `Apply` from an answer starts exactly at `applied + 1` and stops at the commit index; an
//! Append from an answer goes only to a follower whose progress still asks for `from`.

use std::collections::BTreeMap;

use super::{Node, Role};
use crate::log_read::{LogFault, LogReadId, LogReadResult};
use crate::marks::hit;
use crate::message::Append;
use crate::output::Output;
use crate::progress::SendPlan;
use crate::types::{Entry, LogIndex, NodeId};

/// The reads in flight.
#[derive(Clone, Debug, Default)]
pub(super) struct LogReads {
    next_id: u64,
    pending: BTreeMap<LogReadId, PendingRead>,
    inflight_bytes: u64,
}

/// A `ReadLog` not yet answered.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    purpose: ReadPurpose,
    from: LogIndex,
    max_bytes: u64,
}

/// What a read's entries are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ReadPurpose {
    /// The in-order `Apply` (rule R11) of entries the cache evicted.
    Apply,
    /// The next Append to this follower (rule R2).
    Replicate(NodeId),
}

impl LogReads {
    /// Payload bytes asked for by the reads in flight.
    pub(super) fn inflight_bytes(&self) -> u64 {
        self.inflight_bytes
    }
}

impl Node {
    /// Asks the driver for entries `from..=to` for `purpose`, unless a read for it is already
    /// in flight or the reads in flight use the budget (contract (d)). Returns whether it asked.
    pub(super) fn request_log_read(
        &mut self,
        purpose: ReadPurpose,
        from: LogIndex,
        to: LogIndex,
    ) -> bool {
        debug_assert!(from <= to && to < self.log.cached_from());
        if self
            .log_reads
            .pending
            .values()
            .any(|read| read.purpose == purpose)
        {
            return false;
        }
        // Each purpose (the apply and every follower) gets an equal share of the budget, so
        // that one far-behind follower cannot starve the others; the shares sum to at most
        // the budget, and one read per purpose keeps the reads in flight within it.
        // A server added later (issue 12, rule M11) has no bootstrap members: one share.
        let purposes = (self.config.members.len() as u64).max(1);
        let max_bytes = (self.config.read_inflight_bytes_max / purposes).max(1);
        debug_assert!(
            self.log_reads.inflight_bytes + max_bytes
                <= self.config.read_inflight_bytes_max.max(purposes)
        );
        let id = LogReadId(self.log_reads.next_id);
        self.log_reads.next_id += 1;
        self.log_reads.inflight_bytes += max_bytes;
        self.log_reads.pending.insert(
            id,
            PendingRead {
                purpose,
                from,
                max_bytes,
            },
        );
        self.outputs.push(Output::ReadLog {
            id,
            from,
            to,
            max_bytes,
        });
        true
    }

    /// The driver answers read `id` (contract (b), (c)).
    pub(super) fn log_read(
        &mut self,
        id: LogReadId,
        result: LogReadResult,
    ) -> Result<(), LogFault> {
        let Some(read) = self.log_reads.pending.remove(&id) else {
            hit!(s9_unknown_read_answer_ignored);
            return Ok(());
        };
        self.log_reads.inflight_bytes -= read.max_bytes;
        let entries = match result {
            LogReadResult::Entries(entries) => entries,
            LogReadResult::Fault(index) => return Err(self.log_fault(id, index)),
            LogReadResult::Compacted => {
                return match read.purpose {
                    ReadPurpose::Replicate(peer) => {
                        if self.wants_append_from(peer, read.from) {
                            // S5: the follower needs an entry the driver compacted away.
                            hit!(s9_compacted_read_falls_back_to_snapshot);
                            self.start_snapshot_transfer(peer);
                        }
                        Ok(())
                    }
                    // Compaction never passes applied + 1 (S4): the driver lost entries.
                    ReadPurpose::Apply if read.from == self.applied_index.next() => {
                        Err(self.log_fault(id, read.from))
                    }
                    ReadPurpose::Apply => Ok(()),
                };
            }
        };
        let usable = self.usable_prefix(read.from, entries);
        match read.purpose {
            ReadPurpose::Apply => self.apply_read_entries(read.from, usable),
            ReadPurpose::Replicate(peer) => self.send_read_append(peer, read.from, usable),
        }
        Ok(())
    }

    fn log_fault(&mut self, read: LogReadId, index: LogIndex) -> LogFault {
        hit!(s9_read_fault_stops_the_node);
        let fault = LogFault { read, index };
        self.fault = Some(fault);
        fault
    }

    /// Contract (c): the answer's entries from `from` on, gap-free, while the term index still
    /// holds their positions.
    fn usable_prefix(&self, from: LogIndex, entries: Vec<Entry>) -> Vec<Entry> {
        let count = entries.len();
        let usable: Vec<Entry> = entries
            .into_iter()
            .enumerate()
            .take_while(|(offset, entry)| {
                entry.index == LogIndex(from.0 + *offset as u64) && self.log.holds(entry)
            })
            .map(|(_, entry)| entry)
            .collect();
        if usable.len() < count {
            hit!(s9_stale_read_entries_ignored);
        }
        usable
    }

    /// Rule R11 from read entries: apply those from `applied + 1` up to the commit index.
    fn apply_read_entries(&mut self, from: LogIndex, entries: Vec<Entry>) {
        if from != self.applied_index.next() {
            hit!(s9_stale_apply_read_ignored);
            return;
        }
        let commit = self.commit_index;
        let entries: Vec<Entry> = entries
            .into_iter()
            .take_while(|entry| entry.index <= commit)
            .collect();
        let Some(last) = entries.last().map(|entry| entry.index) else {
            return;
        };
        hit!(s9_apply_from_read_entries);
        self.applied_index = last;
        self.outputs.push(Output::Apply { entries });
        self.maybe_take_snapshot();
    }

    /// Whether follower `peer`'s progress asks for an Append from `from` now.
    fn wants_append_from(&self, peer: NodeId, from: LogIndex) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let last = self.log.last_index();
        let window = self.config.inflight_append_count_max;
        self.progress
            .get(&peer)
            .is_some_and(|progress| progress.plan(last, window) == SendPlan::From(from))
    }

    /// Rule R2 from read entries: Appends from `from` to `peer` while it still wants them
    /// (a streaming follower's window takes several batches of one answer).
    fn send_read_append(&mut self, peer: NodeId, from: LogIndex, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        if !self.wants_append_from(peer, from) {
            hit!(s9_stale_read_for_follower_ignored);
            return;
        }
        hit!(s9_append_from_read_entries);
        let count_max = usize::try_from(self.config.append_entry_count_max).unwrap_or(usize::MAX);
        let mut rest = entries.into_iter().peekable();
        let mut next = from;
        // Bounded: each pass sends at least one entry of the answer.
        while rest.peek().is_some() && self.wants_append_from(peer, next) {
            let Some(prev_term) = self.log.term_at(next.prev()) else {
                // Unreachable: `holds` kept only entries above the base.
                return;
            };
            let mut bytes = 0;
            let mut batch = Vec::new();
            while let Some(entry) = rest.peek() {
                let size = entry.payload.len() as u64;
                if batch.len() == count_max
                    || (!batch.is_empty() && bytes + size > self.config.append_bytes_max)
                {
                    break;
                }
                bytes += size;
                batch.extend(rest.next());
            }
            let append = Append {
                prev_index: next.prev(),
                prev_term,
                entries: batch,
                leader_commit: self.commit_known,
                round: self.append_round(),
            };
            next = LogIndex(next.0 + append.entries.len() as u64);
            if !self.send_append(peer, append) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_compare_by_follower() {
        assert_ne!(
            ReadPurpose::Replicate(NodeId(2)),
            ReadPurpose::Replicate(NodeId(3))
        );
        assert_eq!(LogReads::default().inflight_bytes(), 0);
    }
}
