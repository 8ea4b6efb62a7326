//! Rules F6 and F7 (docs/protocol.md §18; issue 13): fetching a copy of a faulty entry from
//! peers (`FetchEntry` / `FetchReply`), answering such requests honestly, and the recovering
//! leader.
//!
//! Invariants kept here: a server answers `DontHave(i, t)` only when its verified log proves it
//! does not hold `(i, t)` — an intact entry of another term at `i`, or a log that ends below
//! `i` — never while faulty at `i`, fenced after a hard-state loss (F9) or on an empty disk
//! (F7); a `Have` copy is sent only from the cache or a read that verified its position. A
//! leader *recovers* while it has no entry of its own term (`recovering`): it won with faulty
//! entries, so it appended no no-op (R8 waits) and accepts no proposal (R1) and no `Config`
//! entry (M3 already refuses one before an entry of the term is committed). It leaves that state
//! by repairing every faulty entry or by truncating from one that a majority of the voters
//! (itself excluded) proved it does not hold — the only truncation of a leader's own log, and
//! only before its no-op (R9 binds from the no-op on). Only replies of the leader's current
//! term count toward that majority. A `Covered` answer whose snapshot position the leader's log
//! holds means that voter holds the committed prefix: the leader steps down and sends it
//! TimeoutNow. A leader that finds one of its entries faulty after its no-op steps down when a
//! `DontHave` majority answers, or after `P_min` without a repair (R9: it never truncates then).

use std::collections::BTreeSet;

use super::log_read::ReadPurpose;
use super::{Node, Role};
use crate::marks::hit;
use crate::message::{FetchAnswer, FetchEntry, FetchReply, MessageBody};
use crate::types::{Entry, Instant, LogIndex, LogPosition, NodeId, Term};

/// The fetch of one faulty entry in progress.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(super) struct Fetch {
    /// The faulty entry asked for.
    position: LogPosition,
    /// Voters that answered `DontHave` in our current term.
    dont_have: BTreeSet<NodeId>,
    /// When this entry's fetch began.
    started: Instant,
    /// When the requests were last sent.
    sent_at: Instant,
    /// The term the requests were sent in (a `DontHave` counts only in it).
    term: Term,
}

impl Node {
    /// Rule F6: a leader with no entry of its term yet (it won with faulty entries).
    pub(super) fn recovering(&self) -> bool {
        self.role == Role::Leader && self.log.last_term() < self.hard_state.current_term
    }

    /// Rules F5, F6: ask for a copy of the lowest faulty entry not being repaired: a leader asks
    /// every other voter, a follower its leader; at most once per heartbeat interval.
    pub(super) fn fetch_faulty(&mut self, now: Instant) {
        let Some(position) = self
            .faulty
            .iter()
            .find(|entry| !self.faulty.is_repairing(entry.index))
            .map(|entry| entry.position())
        else {
            self.fetch = None;
            return;
        };
        let term = self.hard_state.current_term;
        let (started, dont_have) = match self.fetch.take() {
            Some(fetch) if fetch.position == position && fetch.term == term => {
                if now < fetch.sent_at + self.config.heartbeat_interval {
                    self.fetch = Some(fetch);
                    return;
                }
                (fetch.started, fetch.dont_have)
            }
            _ => (now, BTreeSet::new()),
        };
        self.fetch = Some(Fetch {
            position,
            dont_have,
            started,
            sent_at: now,
            term,
        });
        let me = self.config.id;
        let targets: Vec<NodeId> = if self.role == Role::Leader {
            self.membership
                .current()
                .voters()
                .filter(|id| *id != me)
                .collect()
        } else {
            self.leader.into_iter().collect()
        };
        hit!(f6_fetch_entry_sent);
        for target in targets {
            self.send(
                target,
                term,
                MessageBody::FetchEntry(FetchEntry { position }),
            );
        }
    }

    /// Rule F7: answer a `FetchEntry`; from a read when the cache no longer holds the entry.
    pub(super) fn on_fetch_entry(&mut self, from: NodeId, request: FetchEntry) {
        let position = request.position;
        let answer = match self.fetch_answer(position) {
            Some(answer) => answer,
            None => {
                let purpose = ReadPurpose::Fetch(from, position);
                if self.request_log_read(purpose, position.index, position.index) {
                    hit!(f6_fetch_answered_from_a_read);
                    return;
                }
                // Another fetch read is in flight: the requester asks again.
                FetchAnswer::Unknown
            }
        };
        self.send_fetch_reply(from, position, answer);
    }

    /// Sends the answer to a `FetchEntry` of `position`.
    pub(super) fn send_fetch_reply(
        &mut self,
        to: NodeId,
        position: LogPosition,
        answer: FetchAnswer,
    ) {
        let term = self.hard_state.current_term;
        let reply = FetchReply { position, answer };
        self.send(to, term, MessageBody::FetchReply(reply));
    }

    /// Rule F7: what this server can say about `position` without a read (`None`: the entry is
    /// held, intact, but only on disk).
    fn fetch_answer(&self, position: LogPosition) -> Option<FetchAnswer> {
        let index = position.index;
        if let Some(snapshot) = self.snapshot
            && index <= snapshot.last.index
            && index > LogIndex(0)
        {
            hit!(f6_fetch_answered_covered);
            return Some(FetchAnswer::Covered(snapshot.last));
        }
        let empty_disk = self.log.last_index() == LogIndex(0) && self.snapshot.is_none();
        if index == LogIndex(0)
            || index <= self.log.base().index
            || self.fenced(self.hard_state.current_term)
            || self.faulty.contains(index)
            || empty_disk
        {
            // F7: never a nack from a log that cannot prove it.
            hit!(f7_fetch_answered_unknown);
            return Some(FetchAnswer::Unknown);
        }
        match self.log.term_at(index) {
            Some(term) if term == position.term => {
                hit!(f6_fetch_answered_have);
                self.log.entry(index).cloned().map(FetchAnswer::Have)
            }
            Some(_) | None => {
                hit!(f7_fetch_answered_dont_have);
                Some(FetchAnswer::DontHave)
            }
        }
    }

    /// The read for a `FetchEntry` from `peer` came back: `Have` if it gave the entry at
    /// `position`, else `Unknown` (F7: a read that failed proves nothing).
    pub(super) fn answer_fetch_from_read(
        &mut self,
        peer: NodeId,
        position: LogPosition,
        entries: Option<Vec<Entry>>,
    ) {
        let entry = entries
            .into_iter()
            .flatten()
            .find(|entry| entry.position() == position && self.log.holds(entry));
        let answer = entry.map_or(FetchAnswer::Unknown, FetchAnswer::Have);
        self.send_fetch_reply(peer, position, answer);
    }

    /// Rules F6, F12: a `FetchReply` arrives.
    pub(super) fn on_fetch_reply(
        &mut self,
        now: Instant,
        from: NodeId,
        term: Term,
        reply: FetchReply,
    ) {
        if term > self.hard_state.current_term {
            self.adopt_term(now, term);
            return;
        }
        let position = reply.position;
        if self.faulty.get(position.index).map(|f| f.position()) != Some(position) {
            hit!(f6_stale_fetch_reply_ignored);
            return;
        }
        match reply.answer {
            FetchAnswer::Have(entry) if entry.position() == position => {
                if !self.faulty.is_repairing(position.index) {
                    hit!(f6_fetched_copy_written);
                    self.write_repair(entry);
                }
            }
            FetchAnswer::Have(_) | FetchAnswer::Unknown => {
                hit!(f6_unknown_counts_for_neither);
            }
            FetchAnswer::DontHave => self.on_dont_have(now, from, term, position),
            FetchAnswer::Covered(snapshot) => {
                let leads = self.role == Role::Leader && term == self.hard_state.current_term;
                if leads && self.log.term_at(snapshot.index) == Some(snapshot.term) {
                    // F6: that voter holds the committed prefix through L: it should lead.
                    hit!(f6_covered_leader_steps_down);
                    self.step_down(now);
                    let current = self.hard_state.current_term;
                    self.send(from, current, MessageBody::TimeoutNow);
                }
            }
        }
    }

    /// Rule F6: a `DontHave` for the entry being fetched; a majority of the voters (ourselves
    /// excluded) proves it uncommitted.
    fn on_dont_have(&mut self, now: Instant, from: NodeId, term: Term, position: LogPosition) {
        if self.role != Role::Leader || term != self.hard_state.current_term {
            return;
        }
        let Some(fetch) = self
            .fetch
            .as_mut()
            .filter(|f| f.position == position && f.term == term)
        else {
            return;
        };
        fetch.dont_have.insert(from);
        let me = self.config.id;
        let others = fetch.dont_have.iter().copied().filter(|id| *id != me);
        if !self.membership.current().is_quorum(others) {
            hit!(f6_dont_have_minority_waits);
            return;
        }
        if self.recovering() {
            hit!(f6_dont_have_majority_truncates);
            self.truncate_unrepairable(position.index);
            self.finish_recovery(now);
        } else {
            // R9: a leader past its no-op never truncates: it steps down instead.
            hit!(f6_leading_with_unrepairable_entry_steps_down);
            self.step_down(now);
        }
    }

    /// Rule F6: a recovering leader drops its log from `from`, which a majority proved
    /// uncommitted (R9 binds from the no-op on, which it has not appended yet).
    fn truncate_unrepairable(&mut self, from: LogIndex) {
        assert!(
            self.recovering(),
            "invariant: a leader truncates only before its no-op (F6, R9)"
        );
        assert!(
            self.commit_known < from,
            "invariant: committed entries are never removed"
        );
        self.outputs
            .push(crate::output::Output::TruncateLog { from });
        self.log.truncate_from(from);
        self.faulty.truncate_from(from);
        self.fetch = None;
        if self.membership.on_truncate(from) {
            self.configuration_changed();
        }
        let last = self.log.last_index();
        for progress in self.progress.values_mut() {
            progress.on_leader_truncated(last);
        }
    }

    /// Rule F6: a recovering leader with no faulty entry left appends its no-op (R8).
    pub(super) fn finish_recovery(&mut self, now: Instant) {
        if self.recovering() && self.faulty.first().is_none() {
            hit!(f6_recovered_leader_appends_noop);
            self.append_noop();
        } else if self.role == Role::Leader {
            self.fetch_faulty(now);
        }
    }

    /// Rule F6 at each heartbeat: ask again; a leader past its no-op whose repair has not
    /// succeeded within `P_min` steps down (R9). Returns whether it stepped down.
    pub(super) fn fetch_tick(&mut self, now: Instant) -> bool {
        if self.faulty.first().is_none() {
            self.fetch = None;
            return false;
        }
        if let Some(fetch) = &self.fetch {
            let late = now >= fetch.started + self.config.passive_timeout_min;
            if late && self.role == Role::Leader && !self.recovering() {
                hit!(f6_leading_with_unrepairable_entry_steps_down_after_p_min);
                self.step_down(now);
                return true;
            }
        }
        self.fetch_faulty(now);
        false
    }
}
