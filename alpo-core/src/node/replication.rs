//! Log replication and commit: rules R1–R11 of the protocol (proposals, sending, the consistency
//! check, accepting, commit, learning the commit, heartbeats, the no-op, the append-only leader,
//! parallel durability, apply).
//!
//! Invariants kept here: a leader never truncates its own log (R9); a follower acknowledges an
//! Append only once the entries it acknowledges are durable (R4), and only up to the index the
//! Append verified; a leader counts itself toward commit only up to its own durable index (R10)
//! and commits by counting only entries of its current term (R5); entries are applied in order,
//! once, and only once committed and durable locally (R11).

use bytes::Bytes;

use super::log_read::ReadPurpose;
use super::{MessageMeta, Node, Proposal, Role};
use crate::error::ProposeError;
use crate::injected::injected;
use crate::marks::hit;
use crate::message::{Append, AppendReply, AppendResult, MessageBody, RejectHint};
use crate::output::Output;
use crate::progress::{Progress, Rejection, SendPlan};
use crate::types::{Entry, EntryKind, Incarnation, Instant, LogIndex, NodeId, Term};

impl Node {
    /// Rule R1: only the leader accepts proposals; it appends them to its log in its term.
    pub(super) fn accept_proposal(&mut self, payload: Bytes) -> Result<Proposal, ProposeError> {
        if self.role != Role::Leader {
            hit!(r1_proposal_refused_not_leader);
            return Err(ProposeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let (true, Some(from)) = (self.recovering(), self.first_faulty()) {
            // F6: a recovering leader accepts nothing until its faulty entries are repaired.
            hit!(f6_proposal_refused_while_recovering);
            return Err(ProposeError::Repairing { from });
        }
        if let Some(target) = self.transfer_target() {
            // T2: the target can only catch up with a log that stops growing.
            hit!(t2_proposal_refused_while_transferring);
            return Err(ProposeError::Transferring { target });
        }
        let size = payload.len() as u64;
        if size > self.config.entry_bytes_max {
            return Err(ProposeError::EntryTooLarge {
                size,
                limit: self.config.entry_bytes_max,
            });
        }
        let last = self.log.last_index();
        let pending_count = last.0 - self.commit_index.0;
        if pending_count >= self.config.pending_proposal_count_max {
            return Err(ProposeError::TooManyPending {
                limit: self.config.pending_proposal_count_max,
            });
        }
        let pending_bytes = self.log.bytes_between(self.commit_index.next(), last);
        if pending_bytes + size > self.config.pending_proposal_bytes_max {
            return Err(ProposeError::TooManyPendingBytes {
                limit: self.config.pending_proposal_bytes_max,
            });
        }
        hit!(r1_proposal_appended);
        let term = self.hard_state.current_term;
        let index = last.next();
        self.append_entry(Entry {
            index,
            term,
            kind: EntryKind::Normal,
            payload,
        });
        Ok(Proposal { index, term })
    }

    /// Rule R8: a new leader appends a no-op of its term at once.
    pub(super) fn append_noop(&mut self) {
        hit!(r8_new_leader_appends_noop);
        let entry = Entry {
            index: self.log.last_index().next(),
            term: self.hard_state.current_term,
            kind: EntryKind::Noop,
            payload: Bytes::new(),
        };
        self.append_entry(entry);
    }

    /// Rule R2: send each follower what its progress state and window allow.
    pub(super) fn replicate(&mut self) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for peer in peers {
            self.replicate_to(peer);
            self.read_snapshot_chunks(peer);
        }
    }

    fn replicate_to(&mut self, peer: NodeId) {
        let last = self.log.last_index();
        let window = self.config.inflight_append_count_max;
        // Bounded: each pass sends one Append and fills one window slot (or ends the probe).
        for _ in 0..=window {
            let Some(progress) = self.progress.get(&peer) else {
                return;
            };
            let SendPlan::From(next) = progress.plan(last, window) else {
                return;
            };
            if next <= self.log.base().index {
                // S5: entry `next` is compacted away (and maybe the term before it).
                self.start_snapshot_transfer(peer);
                return;
            }
            let cached_from = self.log.cached_from();
            if next < cached_from && self.faulty.contains(next) {
                if next <= self.snapshot_index() {
                    // F3, S5: a snapshot covers the faulty entry: send it instead.
                    hit!(f3_faulty_entry_below_snapshot_sent_as_snapshot);
                    self.start_snapshot_transfer(peer);
                    return;
                }
                // F12: a faulty entry cannot be sent; the follower waits for its repair.
                hit!(f12_leader_sends_nothing_at_a_faulty_entry);
                return;
            }
            if next < cached_from {
                // S9: the cache evicted entry `next`: read it back (a window's worth at most);
                // the answer sends the Appends.
                let span = self.config.append_entry_count_max.saturating_mul(window);
                let end = LogIndex(next.0.saturating_add(span - 1));
                // F12: the read stops before the next faulty entry.
                let end = self
                    .faulty
                    .first_from(next)
                    .map_or(end, |faulty| end.min(faulty.prev()));
                let to = end.min(cached_from.prev());
                if self.request_log_read(ReadPurpose::Replicate(peer), next, to) {
                    hit!(s9_append_reads_evicted_entries);
                }
                return;
            }
            let append = self.build_append(next);
            if !self.send_append(peer, append) {
                return;
            }
        }
    }

    /// Sends `append` to `peer` and records it in its progress; returns whether the follower
    /// streams (so that more may follow in its window).
    pub(super) fn send_append(&mut self, peer: NodeId, append: Append) -> bool {
        let sent_last = LogIndex(append.prev_index.0 + append.entries.len() as u64);
        let Some(progress) = self.progress.get_mut(&peer) else {
            return false;
        };
        let replicating = progress.is_replicating();
        if replicating {
            hit!(r2_append_sent_in_window);
        } else {
            hit!(r2_probe_sent);
        }
        progress.on_sent(sent_last);
        self.send(
            peer,
            self.hard_state.current_term,
            MessageBody::Append(append),
        );
        replicating
    }

    /// An Append from `next`: the previous entry's position, then a batch of entries bounded
    /// by count and bytes (at least one entry, if any remain).
    fn build_append(&self, next: LogIndex) -> Append {
        let prev_index = next.prev();
        // A follower's next index is at most the leader's last + 1, so the term is known.
        let prev_term = self.log.term_at(prev_index).unwrap_or(Term(0));
        debug_assert!(self.log.term_at(prev_index).is_some());
        let count_max = self.config.append_entry_count_max;
        let end = LogIndex(next.0.saturating_add(count_max - 1));
        let mut bytes = 0;
        let mut entries = Vec::new();
        debug_assert!(next >= self.log.cached_from());
        for entry in self.log.cached(next, end) {
            let size = entry.payload.len() as u64;
            if !entries.is_empty() && bytes + size > self.config.append_bytes_max {
                break;
            }
            bytes += size;
            entries.push(entry.clone());
        }
        Append {
            prev_index,
            prev_term,
            entries,
            leader_commit: self.commit_known,
            round: self.append_round(),
        }
    }

    /// Rule R7: an empty Append to each streaming follower (probing followers get their probe
    /// resent by the next flush instead).
    pub(super) fn heartbeat(&mut self) {
        hit!(r7_heartbeat_sent);
        let last = self.log.last_index();
        for progress in self.progress.values_mut() {
            progress.on_heartbeat_tick(last);
        }
        self.send_empty_appends();
    }

    /// Empty Appends to each streaming follower, carrying the current round (R7, Q1 (c)).
    pub(super) fn send_empty_appends(&mut self) {
        let mut heartbeats = Vec::new();
        for (peer, progress) in &self.progress {
            if progress.is_replicating() {
                heartbeats.push((*peer, progress.match_index));
            } else if progress.is_snapshotting() {
                // S5: an empty Append at prev (0, 0), always accepted (R3), keeps the leader's
                // contact (E1, E5) alive during a transfer; its reply does not end the transfer.
                hit!(s5_heartbeat_during_transfer);
                heartbeats.push((*peer, LogIndex(0)));
            }
        }
        for (peer, match_index) in heartbeats {
            // A follower's match index is at most the leader's last; below the base its term is
            // compacted away, and the heartbeat goes at (0, 0), which always matches.
            let prev = match self.log.term_at(match_index) {
                Some(term) => (match_index, term),
                None => (LogIndex(0), Term(0)),
            };
            let append = Append {
                prev_index: prev.0,
                prev_term: prev.1,
                entries: Vec::new(),
                leader_commit: self.commit_known,
                round: self.append_round(),
            };
            self.send(
                peer,
                self.hard_state.current_term,
                MessageBody::Append(append),
            );
        }
    }

    /// Rules R3, R4, R6 (and E6) at a follower.
    pub(super) fn on_append(&mut self, now: Instant, from: NodeId, term: Term, append: Append) {
        let current = self.hard_state.current_term;
        if term < current {
            hit!(e6_stale_append_answered);
            let hint = self.reject_hint(append.prev_index);
            self.send(
                from,
                current,
                self.append_reply(AppendResult::Rejected(hint)),
            );
            return;
        }
        if !append_is_well_formed(term, &append) {
            return;
        }
        if self.role == Role::Leader {
            // R9: a leader's log changes only after it stepped down (by E6 just below; an
            // Append of its own term cannot come from another leader, one leader per term).
            hit!(r9_leader_steps_down_before_touching_its_log);
        }
        self.accept_leader(now, from, term);
        self.note_append_round(term, append.round);
        if self.log.is_compacted(append.prev_index) {
            // S8: below our base, the log is covered by a durable snapshot, so committed: it
            // matches the log of every leader of a current term.
            hit!(s8_compacted_prev_index_matches);
        } else if self.log.term_at(append.prev_index) != Some(append.prev_term) {
            hit!(r3_append_rejected_on_mismatch);
            let hint = self.reject_hint(append.prev_index);
            self.send(from, term, self.append_reply(AppendResult::Rejected(hint)));
            return;
        }
        let verified = LogIndex(append.prev_index.0 + append.entries.len() as u64);
        self.accept_entries(append.entries);
        if append.leader_commit > self.commit_known {
            hit!(r6_follower_learns_commit);
        }
        self.learn_commit(append.leader_commit.min(verified));
        self.acknowledge(from, verified);
        // F5: a fault the leader's Appends do not reach (below our match) is fetched.
        self.fetch_faulty(now);
    }

    /// A message of the leader of `term` (≥ ours) arrived: rules E6 (adopt its term), E1 and E5
    /// (leader contact).
    pub(super) fn accept_leader(&mut self, now: Instant, from: NodeId, term: Term) {
        if term > self.hard_state.current_term {
            self.adopt_term(now, term);
        }
        if self.role != Role::Passive || self.campaign.is_some() {
            self.step_down(now);
        }
        self.leader = Some(from);
        self.timers.leader_contact = Some(now);
        self.reset_passive_timer(now);
    }

    /// Rule R3's hint: the term at `prev_index` and where that term starts, or our last entry.
    fn reject_hint(&self, prev_index: LogIndex) -> RejectHint {
        let last = self.log.last_position();
        let (conflict_term, conflict_first_index) = match self.log.term_at(prev_index) {
            Some(term) if prev_index > LogIndex(0) => {
                (term, self.log.first_index_of_term_at(prev_index))
            }
            _ => (Term(0), LogIndex(0)),
        };
        RejectHint {
            conflict_term,
            conflict_first_index,
            last_index: last.index,
            last_term: last.term,
        }
    }

    /// Rule R4: keep matching entries, truncate at the first conflict, append the rest.
    fn accept_entries(&mut self, entries: Vec<Entry>) {
        let mut new_from = entries.len();
        let base = self.log.base().index;
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index <= base {
                // S8: the snapshot covers it (and it is committed, so it matches).
                hit!(s8_compacted_entries_skipped);
                continue;
            }
            match self.log.term_at(entry.index) {
                Some(term) if term == entry.term && self.faulty.contains(entry.index) => {
                    // F5 (amends R4): the same position replaces a faulty entry's payload.
                    self.repair_from_leader(entry);
                }
                Some(term) if term == entry.term => hit!(r4_matching_entry_kept),
                Some(_) => {
                    hit!(r4_conflicting_suffix_truncated);
                    self.truncate_log(entry.index);
                    new_from = offset;
                    break;
                }
                None => {
                    new_from = offset;
                    break;
                }
            }
        }
        for entry in entries.into_iter().skip(new_from) {
            self.append_entry(entry);
        }
    }

    fn truncate_log(&mut self, from: LogIndex) {
        assert!(
            self.role != Role::Leader,
            "invariant: a leader never truncates its log (R9)"
        );
        if !injected!(self) {
            assert!(
                self.commit_known < from,
                "invariant: committed entries are never removed"
            );
        }
        self.outputs.push(Output::TruncateLog { from });
        self.log.truncate_from(from);
        if self.faulty.first_from(from).is_some() {
            // F5: a faulty entry of another term than the leader's is a conflict like any.
            hit!(f5_faulty_entry_truncated_by_conflict);
        }
        self.faulty.truncate_from(from);
        if self.membership.on_truncate(from) {
            // M1: the server reverts to the latest configuration that remains.
            hit!(m1_truncated_configuration_reverts);
            self.configuration_changed();
        }
    }

    /// Rule R4's ordering: acknowledge up to `verified` once it is durable; now if it already is.
    fn acknowledge(&mut self, leader: NodeId, verified: LogIndex) {
        let intact = self.intact_through(verified);
        if intact < verified {
            // F5: what lies past the first faulty entry is acknowledged once it is repaired.
            self.pending_ack = Some(self.pending_ack.map_or(verified, |p| p.max(verified)));
        }
        if verified <= self.log.durable_index() {
            let reply = AppendResult::Accepted {
                match_index: intact,
            };
            self.send(
                leader,
                self.hard_state.current_term,
                self.append_reply(reply),
            );
        } else {
            hit!(r4_acknowledgement_waits_for_durability);
            self.pending_ack = Some(self.pending_ack.map_or(verified, |p| p.max(verified)));
        }
    }

    /// The log became durable further: release acknowledgements (follower), count ourselves
    /// (leader, R10), and advance the commit index.
    pub(super) fn on_durable_advanced(&mut self, now: Instant) {
        if self.role == Role::Leader {
            hit!(r10_leader_counts_its_own_durable_write);
            self.leader_commit(now);
        } else if let (Some(pending), Some(leader)) = (self.pending_ack, self.leader) {
            let match_index = self.intact_through(pending.min(self.log.durable_index()));
            if match_index == pending {
                self.pending_ack = None;
            }
            let reply = AppendResult::Accepted { match_index };
            self.send(
                leader,
                self.hard_state.current_term,
                self.append_reply(reply),
            );
        }
        self.advance_commit();
    }

    /// The leader hears back from a follower (R2, R3, R5; E6 for a higher term).
    pub(super) fn on_append_reply(&mut self, now: Instant, meta: &MessageMeta, reply: AppendReply) {
        if meta.term > self.hard_state.current_term {
            self.adopt_term(now, meta.term);
            return;
        }
        if meta.term < self.hard_state.current_term && !injected!(self, CountStaleAppendReply) {
            // E6: a reply of an older term answers an Append of a leadership that ended; the
            // follower's log may have changed since, so its match index means nothing now.
            hit!(e6_stale_append_reply_ignored);
            return;
        }
        let last = self.log.last_index();
        if self.follower_replied(meta).is_none() {
            return;
        }
        self.on_round_echo(now, meta.from, reply.round);
        let Some(progress) = self.progress.get_mut(&meta.from) else {
            return;
        };
        match reply.result {
            AppendResult::Accepted { match_index } if match_index <= last => {
                progress.on_accepted(match_index);
                if let Some(from) = reply.repair_from {
                    // F5: probe from the follower's first faulty entry.
                    if progress.on_repair_from(from, last) {
                        hit!(f5_leader_probes_from_repair_from);
                    }
                }
                self.leader_commit(now);
                self.check_catch_up(now);
                self.check_transfer(now);
            }
            AppendResult::Accepted { .. } => {}
            AppendResult::Rejected(hint) => match progress.on_rejected(hint, &self.log) {
                Rejection::Probe => hit!(r3_leader_skips_back_a_term),
                Rejection::Resend => hit!(r2_reordered_rejection_resends_in_the_window),
                Rejection::Stale => {}
            },
        }
    }

    /// A reply of our term from a follower, at the leader: it is active (E5), and a new
    /// incarnation means a restart that may have lost unacknowledged writes. Returns its
    /// progress, or `None` if we do not lead.
    pub(super) fn follower_replied(&mut self, meta: &MessageMeta) -> Option<&mut Progress> {
        // Returns the progress so that callers which need nothing else from `self` can go on.
        if self.role != Role::Leader {
            return None;
        }
        let last = self.log.last_index();
        let progress = self.progress.get_mut(&meta.from)?;
        progress.recently_active = true;
        if progress.incarnation == Incarnation(0) {
            progress.incarnation = meta.incarnation;
        } else if meta.incarnation > progress.incarnation {
            hit!(follower_restart_resets_progress);
            progress.on_restart(meta.incarnation, last);
        }
        Some(progress)
    }

    /// Rule R5: the highest index a majority holds durably (ourselves up to our durable index,
    /// R10), if it is of our term; earlier entries commit with it.
    pub(super) fn leader_commit(&mut self, now: Instant) {
        // M5: a majority of the voters of the configuration in force; we count ourselves only
        // if we are one of them (M9), a learner never.
        let me = self.config.id;
        let durable = self.intact_through(self.log.durable_index());
        let quorum_index = self.membership.current().quorum_index(|id| {
            if id == me {
                durable
            } else {
                self.progress
                    .get(&id)
                    .map_or(LogIndex(0), |p| p.match_index)
            }
        });
        if quorum_index <= self.commit_known {
            return;
        }
        let current = self.log.term_at(quorum_index) == Some(self.hard_state.current_term);
        if current {
            hit!(r5_commit_by_current_term_entry);
            self.commit_known = quorum_index;
        } else if injected!(self, CommitOlderTermByCount) {
            self.commit_known = quorum_index;
        } else {
            hit!(r5_older_term_entry_not_counted);
        }
        self.advance_commit();
        self.maybe_leave_after_removal(now);
    }

    /// Rule R6: a follower learns an index known committed.
    fn learn_commit(&mut self, index: LogIndex) {
        if index > self.commit_known {
            self.commit_known = index;
        }
        self.advance_commit();
    }

    /// `commit = min(known commit, durable)`, never decreasing; then rule R11: apply.
    pub(super) fn advance_commit(&mut self) {
        let target = self.commit_known.min(self.log.durable_index());
        if target > self.commit_index {
            self.commit_index = target;
        }
        // F5 (amends R11): the apply stops before the first faulty entry.
        let limit = self.apply_limit();
        if limit > self.applied_index {
            let from = self.applied_index.next();
            let cached_from = self.log.cached_from();
            if from < cached_from {
                // S9: the cache evicted entries to apply: read them back, in order.
                let to = limit.min(cached_from.prev());
                if self.request_log_read(ReadPurpose::Apply, from, to) {
                    hit!(s9_apply_reads_evicted_entries);
                }
                return;
            }
            hit!(r11_committed_entries_applied);
            let entries: Vec<Entry> = self.log.cached(from, limit).cloned().collect();
            self.applied_index = limit;
            self.outputs.push(Output::Apply { entries });
            self.maybe_take_snapshot();
        }
    }
}

impl Node {
    /// An AppendReply, echoing the highest round received in our term (Q1 (c)).
    fn append_reply(&self, result: AppendResult) -> MessageBody {
        let round = self.echo_round();
        MessageBody::AppendReply(AppendReply {
            result,
            round,
            // F5: the leader sends from our first faulty entry.
            repair_from: self.first_faulty(),
        })
    }
}

/// Network input is checked before it touches the log: consecutive indices after `prev_index`,
/// terms never decreasing, none above the message's term and none below `prev_term`.
fn append_is_well_formed(term: Term, append: &Append) -> bool {
    let mut expected = append.prev_index.next();
    let mut previous_term = append.prev_term;
    for entry in &append.entries {
        if entry.index != expected || entry.term < previous_term || entry.term > term {
            return false;
        }
        if entry.term == Term(0) {
            return false;
        }
        expected = expected.next();
        previous_term = entry.term;
    }
    append.prev_term <= term && (append.prev_index > LogIndex(0) || append.prev_term == Term(0))
}
