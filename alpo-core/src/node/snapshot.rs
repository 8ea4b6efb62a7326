//! Snapshots, log compaction and install-snapshot: rules S2–S8 of the protocol (taking a
//! snapshot, its durability order, the compaction bound, the leader's fallback to sending the
//! snapshot, receiving chunks, finishing an install; S8's restart is in `Log::load`).
//!
//! Invariants kept here: at most one `TakeSnapshot` is in progress; a `CompactLog` follows the
//! report of a durable snapshot at `L` and never drops entries at or above
//! `min(applied, L) + 1 - retain_entries` (S4), so the first retained index is at most `L + 1`;
//! the newest durable snapshot only moves forward; a follower writes a chunk only at the offset
//! it already holds for that snapshot (S6); the state machine is replaced only after the
//! install is durable, and only by a snapshot past the applied index (S7); entries up to an
//! installed `L` are never applied after it.

use bytes::Bytes;

use super::{Install, MessageMeta, Node, Role};
use crate::error::SnapshotReadError;
use crate::injected::injected;
use crate::marks::hit;
use crate::message::{InstallSnapshot, MessageBody, SnapshotReply, SnapshotResult};
use crate::output::Output;
use crate::trace::SnapshotRead;
use crate::types::{Instant, LogIndex, LogPosition, NodeId, SnapshotMeta, Term};

impl Node {
    /// The last index of the newest durable snapshot (0 without one).
    pub(super) fn snapshot_index(&self) -> LogIndex {
        self.snapshot.map_or(LogIndex(0), |meta| meta.last.index)
    }

    /// Rule S2: right after an `Apply`, ask for a snapshot at the applied index once
    /// `snapshot_interval_entries` were applied since the newest one, if none is in progress.
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub(super) fn maybe_take_snapshot(&mut self) {
        let Some(interval) = self.config.snapshot_interval_entries else {
            return;
        };
        if self.snapshot_taking.is_some() {
            return;
        }
        if self.applied_index.0 - self.snapshot_index().0 < interval {
            return;
        }
        let mut index = self.applied_index;
        if injected!(self, SnapshotBeyondApplied) && self.log.term_at(index.next()).is_some() {
            index = index.next();
        }
        let term = self
            .log
            .term_at(index)
            .expect("invariant: the applied entry is at or above the base");
        let at = LogPosition { index, term };
        hit!(s2_snapshot_taken_after_interval);
        self.snapshot_taking = Some(at);
        let configuration = self.membership.at(index);
        self.outputs
            .push(Output::TakeSnapshot { at, configuration });
    }

    /// Rule S2 on request: a snapshot at the applied index now, unless one is in progress
    /// (its position is returned) or the newest durable one covers every applied entry.
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub(super) fn take_snapshot_now(&mut self) -> Option<LogPosition> {
        if let Some(at) = self.snapshot_taking {
            return Some(at);
        }
        if self.applied_index <= self.snapshot_index() {
            hit!(s2_requested_snapshot_already_covered);
            return None;
        }
        let index = self.applied_index;
        let term = self
            .log
            .term_at(index)
            .expect("invariant: the applied entry is at or above the base");
        let at = LogPosition { index, term };
        hit!(s2_snapshot_requested);
        self.snapshot_taking = Some(at);
        let configuration = self.membership.at(index);
        self.outputs
            .push(Output::TakeSnapshot { at, configuration });
        Some(at)
    }

    /// Rule S3 step 5: the driver made a snapshot durable. A newer one replaces the newest,
    /// restarts transfers of the old one (S5), and allows compaction (S4).
    pub(super) fn snapshot_durable(&mut self, meta: SnapshotMeta) {
        if self.snapshot_taking == Some(meta.last) {
            self.snapshot_taking = None;
        }
        if meta.last.index <= self.snapshot_index() || meta.size == 0 {
            hit!(s3_stale_snapshot_report_ignored);
            return;
        }
        let beyond_applied = self.applied_index < meta.last.index;
        let known_term = self.log.term_at(meta.last.index);
        let configuration = self.membership.at(meta.last.index);
        let foreign = beyond_applied
            || known_term != Some(meta.last.term)
            || meta.configuration != configuration;
        if !injected!(self) && foreign {
            // S1: a snapshot covers applied entries only. A driver that reports another one is
            // wrong; the core does not build on it.
            debug_assert!(
                false,
                "snapshot {meta:?} is not of this server's applied log"
            );
            return;
        }
        hit!(s3_snapshot_durable);
        self.snapshot = Some(meta);
        // S1: the snapshot carries the configuration at L; `Config` entries up to L may go.
        let changed = self
            .membership
            .on_snapshot(meta.last.index, meta.configuration);
        debug_assert!(
            !changed || injected!(self),
            "a snapshot below the log's last entry"
        );
        for progress in self.progress.values_mut() {
            if progress.transfer().is_some_and(|t| t.snapshot != meta) {
                hit!(s5_new_snapshot_restarts_transfer);
                progress.become_snapshot(meta);
            }
        }
        self.maybe_compact();
        self.maybe_take_snapshot();
    }

    /// Rule S4: compact below `min(applied, L) + 1 - retain_entries`, if that is past the
    /// first retained index.
    pub(super) fn maybe_compact(&mut self) {
        let Some(snapshot) = self.snapshot else {
            return;
        };
        let bound = self.applied_index.min(snapshot.last.index).next();
        let mut below = LogIndex(bound.0.saturating_sub(self.config.retain_entries).max(1));
        if injected!(self, CompactPastSnapshot) {
            below = LogIndex(snapshot.last.index.0 + 2).min(self.log.durable_index().next());
        }
        if below <= self.log.first_index() {
            return;
        }
        hit!(s4_log_compacted_below_snapshot);
        self.outputs.push(Output::CompactLog { below });
        self.log.compact_below(below);
        // F3: entries a durable snapshot covers are dropped, not faulty.
        self.faulty.drop_through(self.log.base().index);
    }

    /// Rule S5: a follower needs an entry this leader compacted: send it the newest snapshot.
    pub(super) fn start_snapshot_transfer(&mut self, peer: NodeId) {
        let Some(snapshot) = self.snapshot else {
            // Unreachable: the log is compacted only below a durable snapshot.
            debug_assert!(false, "a compacted log without a snapshot");
            return;
        };
        let Some(progress) = self.progress.get_mut(&peer) else {
            return;
        };
        hit!(s5_follower_needs_compacted_entry);
        progress.become_snapshot(snapshot);
    }

    /// Rule S5: ask the driver for the chunks the follower's window allows.
    pub(super) fn read_snapshot_chunks(&mut self, peer: NodeId) {
        let chunk_bytes = self.config.snapshot_chunk_bytes;
        let chunks_max = self.config.snapshot_chunks_inflight_max;
        let Some(progress) = self.progress.get_mut(&peer) else {
            return;
        };
        let mut reads = Vec::new();
        // Bounded: each read takes a slot of the window, which has `chunks_max` slots.
        for _ in 0..chunks_max {
            let Some(read) = progress.next_chunk(chunk_bytes, chunks_max) else {
                break;
            };
            reads.push(read);
        }
        for read in reads {
            self.outputs.push(Output::ReadSnapshot {
                to: peer,
                snapshot: read.snapshot,
                offset: read.offset,
                len: read.len,
            });
        }
    }

    /// Rule S5: the driver answers a `ReadSnapshot`; the chunk goes to the follower if it is
    /// still wanted (answers may be late, out of order, or for a replaced snapshot).
    pub(super) fn snapshot_read(
        &mut self,
        read: SnapshotRead,
        result: Result<Bytes, SnapshotReadError>,
    ) {
        let Ok(data) = result else {
            // The stall timer resends (S5); a replaced file restarted the transfer already.
            hit!(s5_failed_snapshot_read_ignored);
            return;
        };
        if self.role != Role::Leader {
            return;
        }
        let Some(progress) = self.progress.get(&read.to) else {
            return;
        };
        let Some(transfer) = progress.transfer() else {
            return;
        };
        let meta = transfer.snapshot;
        let end = read.offset.saturating_add(data.len() as u64);
        if !progress.wants_chunk(read.snapshot, read.offset) || data.is_empty() || end > meta.size {
            hit!(s5_stale_snapshot_read_ignored);
            return;
        }
        hit!(s5_snapshot_chunk_sent);
        let chunk = InstallSnapshot {
            snapshot: meta,
            offset: read.offset,
            data,
            last: end == meta.size,
        };
        let term = self.hard_state.current_term;
        self.send(read.to, term, MessageBody::InstallSnapshot(chunk));
    }

    /// Rules S5 (leader side) and E6: a follower reports where its transfer stands.
    pub(super) fn on_snapshot_reply(
        &mut self,
        now: Instant,
        meta: &MessageMeta,
        reply: SnapshotReply,
    ) {
        if meta.term > self.hard_state.current_term {
            self.adopt_term(now, meta.term);
            return;
        }
        if meta.term < self.hard_state.current_term {
            hit!(e6_stale_snapshot_reply_ignored);
            return;
        }
        let last = self.log.last_index();
        let Some(progress) = self.follower_replied(meta) else {
            return;
        };
        match reply.result {
            SnapshotResult::Installed(index) => {
                hit!(s5_installed_snapshot_resumes_appends);
                progress.on_installed(index, last);
                self.leader_commit(now);
                self.check_catch_up(now);
                self.check_transfer(now);
            }
            SnapshotResult::NextOffset(held) => {
                if progress.on_snapshot_offset(reply.snapshot, held) {
                    hit!(s5_lost_chunk_resent);
                }
            }
        }
    }

    /// Rules S6 and S7 (follower side): a chunk of the leader's snapshot arrives.
    pub(super) fn on_install_snapshot(
        &mut self,
        now: Instant,
        from: NodeId,
        term: Term,
        chunk: InstallSnapshot,
    ) {
        let current = self.hard_state.current_term;
        let snapshot = chunk.snapshot.last;
        if term < current {
            hit!(e6_stale_install_snapshot_answered);
            self.reply_snapshot(from, snapshot, SnapshotResult::NextOffset(0));
            return;
        }
        if !chunk_is_well_formed(&chunk) {
            return;
        }
        // S6: a chunk is leader contact (E1, E5), after E6.
        self.accept_leader(now, from, term);
        if snapshot.index <= self.applied_index {
            // S7: our committed prefix already covers it, and equals the leader's.
            hit!(s7_snapshot_already_applied);
            self.reply_snapshot(from, snapshot, SnapshotResult::Installed(snapshot.index));
            return;
        }
        let held = self.install_held(&chunk);
        if chunk.offset != held {
            hit!(s6_chunk_out_of_order_answered);
            self.reply_snapshot(from, snapshot, SnapshotResult::NextOffset(held));
            return;
        }
        let Some(install) = self
            .install
            .as_mut()
            .filter(|i| i.snapshot == chunk.snapshot)
        else {
            return;
        };
        hit!(s6_chunk_written);
        install.held += chunk.data.len() as u64;
        install.finishing = chunk.last;
        let held = install.held;
        self.outputs.push(Output::WriteSnapshotChunk {
            snapshot: chunk.snapshot,
            offset: chunk.offset,
            data: chunk.data,
            last: chunk.last,
        });
        if !chunk.last {
            self.reply_snapshot(from, snapshot, SnapshotResult::NextOffset(held));
        }
    }

    /// The bytes held of `chunk`'s snapshot (S6). A chunk at offset 0 of another snapshot
    /// starts a new transfer (the driver discards the other partial file), unless that one is
    /// being verified: a leader sends one snapshot at a time, and a new leader may send an older
    /// one than its predecessor did, so the newest chunk at 0 wins (a late one costs a restart
    /// of the transfer, which the leader's stall handling repairs).
    fn install_held(&mut self, chunk: &InstallSnapshot) -> u64 {
        match &self.install {
            Some(install) if install.snapshot == chunk.snapshot => return install.held,
            // Nothing is held of this one, and it does not interrupt a verification (a chunk
            // at 0 is then dropped unanswered; the leader resends after a stall).
            Some(install) if install.finishing => return 0,
            _ => {}
        }
        if chunk.offset != 0 {
            return 0;
        }
        hit!(s6_transfer_started);
        self.install = Some(Install {
            snapshot: chunk.snapshot,
            held: 0,
            finishing: false,
        });
        0
    }

    /// Rule S7: the driver verified and made durable the installed snapshot `meta`.
    pub(super) fn snapshot_installed(&mut self, meta: SnapshotMeta) {
        let finishing = self
            .install
            .is_some_and(|i| i.snapshot == meta && i.finishing);
        if !finishing {
            return;
        }
        self.install = None;
        let last = meta.last;
        if last.index > self.snapshot_index() {
            self.snapshot = Some(meta);
        }
        if last.index <= self.applied_index {
            // Apply passed it while the file was being verified: nothing to restore.
            hit!(s7_install_overtaken_by_apply);
        } else {
            self.install_over_log(meta);
        }
        if let Some(leader) = self.leader {
            self.reply_snapshot(leader, last, SnapshotResult::Installed(last.index));
        }
        self.maybe_compact();
        self.advance_commit();
    }

    /// Rule S7 steps 1 and 2: keep a matching suffix or discard the log, then restore.
    fn install_over_log(&mut self, meta: SnapshotMeta) {
        let last = meta.last;
        let changed;
        if self.log.term_at(last.index) == Some(last.term) {
            // Log matching: the entries after L are the leader's too (or a suffix R4 fixes).
            hit!(s7_matching_log_suffix_kept);
            self.log.mark_durable_through_snapshot(last.index);
            // F3: entries the snapshot covers are dropped, not faulty (F11's image replaces
            // them).
            self.faulty.drop_through(last.index);
            changed = self.membership.on_snapshot(last.index, meta.configuration);
        } else {
            // The entries after L conflict with the snapshot's, so they are uncommitted.
            // The whole log goes: from index 1, since the driver may still hold entries below
            // the core's first retained index (it compacts whole segments, and a restart makes
            // the first loaded entry the core's base).
            hit!(s7_log_without_snapshot_position_discarded);
            self.outputs.push(Output::TruncateLog { from: LogIndex(1) });
            self.log.reset_to(last);
            self.faulty.truncate_from(LogIndex(1));
            self.pending_ack = None;
            changed = self.membership.on_reset(meta.configuration);
        }
        if changed {
            // M1, S7 step 2: the configuration is the kept suffix's latest, else the meta's.
            hit!(m1_installed_snapshot_sets_configuration);
            self.configuration_changed();
        }
        hit!(s7_state_machine_restored);
        self.outputs
            .push(Output::RestoreStateMachine { snapshot: meta });
        self.applied_index = last.index;
        self.commit_known = self.commit_known.max(last.index);
        self.commit_index = self.commit_index.max(last.index);
    }

    /// Rule S7: the driver found the received file damaged: receive it again from 0.
    pub(super) fn snapshot_install_failed(&mut self, meta: SnapshotMeta) {
        let Some(install) = self.install.as_mut() else {
            return;
        };
        if install.snapshot != meta || !install.finishing {
            return;
        }
        hit!(s7_damaged_snapshot_received_again);
        install.held = 0;
        install.finishing = false;
        if let Some(leader) = self.leader {
            self.reply_snapshot(leader, meta.last, SnapshotResult::NextOffset(0));
        }
    }

    fn reply_snapshot(&mut self, to: NodeId, snapshot: LogPosition, result: SnapshotResult) {
        let term = self.hard_state.current_term;
        let reply = SnapshotReply { snapshot, result };
        self.send(to, term, MessageBody::SnapshotReply(reply));
    }
}

/// Network input is checked before it is written: a non-empty chunk within the file, `last`
/// exactly when it ends the file, of a snapshot of a real position.
fn chunk_is_well_formed(chunk: &InstallSnapshot) -> bool {
    let end = chunk.offset.checked_add(chunk.data.len() as u64);
    !chunk.data.is_empty()
        && end.is_some_and(|end| {
            end <= chunk.snapshot.size && chunk.last == (end == chunk.snapshot.size)
        })
        && chunk.snapshot.last.index > LogIndex(0)
        && chunk.snapshot.last.term > Term(0)
}
