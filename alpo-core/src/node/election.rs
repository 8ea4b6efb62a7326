//! Leader election: rules E0–E8 of the protocol (start-up term, timeouts, pre-vote, candidacy,
//! granting votes, leader stickiness and check-quorum, higher terms, winning, deferral).
//!
//! Invariants kept here: a server votes at most once per term, and the vote and term are handed
//! to the driver in a `SaveHardState` before the reply or request that depends on them (the
//! output list is ordered); a pre-vote changes nobody's term or vote; a candidate's campaign is
//! for its current term, a pre-candidate's for the term after it.

use std::collections::BTreeSet;

use super::{Campaign, Node, Role};
use crate::injected::injected;
use crate::log::Log;
use crate::marks::hit;
use crate::message::{MessageBody, VoteReason, VoteReply, VoteRequest};
use crate::progress::Progress;
use crate::types::{HardState, Instant, NodeId, Rank, Term};

/// Rule E0: the start-up term is the highest of the persisted term and the last entry's term.
/// (The vote is persisted with its term, so its term is the persisted term.) A vote cast in an
/// older term than the log's last entry is void in the newer term.
pub(super) fn startup_hard_state(persisted: HardState, log: &Log) -> HardState {
    if log.last_term() > persisted.current_term {
        hit!(e0_term_from_last_entry);
        return HardState {
            current_term: log.last_term(),
            voted_for: None,
        };
    }
    persisted
}

impl Node {
    /// A passive server's fresh timeout `P` (E1), never before the end of a deferral (E8).
    pub(super) fn reset_passive_timer(&mut self, now: Instant) {
        let timeout = self.rng.duration_in(
            self.config.passive_timeout_min,
            self.config.passive_timeout_max,
        );
        if now + timeout < self.timers.deferred_until {
            hit!(e8_deferred_server_waits);
        }
        self.timers.election_deadline = (now + timeout).max(self.timers.deferred_until);
    }

    fn reset_campaign_timer(&mut self, now: Instant) {
        let cycle = self.rng.duration_in(
            self.config.election_cycle_min,
            self.config.election_cycle_max,
        );
        self.timers.election_deadline = now + cycle;
    }

    /// Rule E1: a passive server's timeout, or a (pre-)candidate's cycle, ran out.
    pub(super) fn election_tick(&mut self, now: Instant) {
        if now < self.timers.election_deadline {
            return;
        }
        if now < self.timers.deferred_until {
            // Defensive: every timer reset already waits for the deferral to end.
            self.timers.election_deadline = self.timers.deferred_until;
            return;
        }
        if !self.may_stand() {
            // M6: learners, removed servers and servers without a configuration never stand.
            hit!(m6_non_voter_never_stands);
            self.campaign = None;
            self.reset_passive_timer(now);
            return;
        }
        if !self.step_over_fence() {
            self.campaign = None;
            self.reset_passive_timer(now);
            return;
        }
        if self.campaign.is_none() {
            hit!(e1_passive_timeout_starts_election);
        }
        if self.campaign.is_some() {
            hit!(e1_election_cycle_ended);
        }
        if self.config.pre_vote {
            self.start_pre_vote(now);
        } else {
            self.start_candidacy(now, false);
        }
    }

    /// Rule E2: ask "would you vote for me in `current_term + 1`?" without changing the term.
    fn start_pre_vote(&mut self, now: Instant) {
        hit!(e2_pre_vote_started);
        self.counters.pre_votes_started += 1;
        let term = self.hard_state.current_term.next();
        self.role = Role::Passive;
        self.leader = None;
        self.timers.leader_contact = None;
        self.campaign = Some(Campaign {
            pre_vote: true,
            term,
            granted: BTreeSet::from([self.config.id]),
        });
        self.reset_campaign_timer(now);
        self.request_votes(term, true, false);
        self.check_campaign(now);
    }

    /// Rule M6: whether this server may stand: it is a voter of its configuration, or
    /// *[decided]* the `Config` entry that removed it is not known committed and it was a voter
    /// before it. Until that entry commits it may be needed: a leader that removed itself and
    /// crashed may hold the only copy, and the remaining voters cannot elect anyone without it
    /// (Raft thesis §4.2.2; found by the simulator's membership profile, seed 0xa1b00033).
    fn may_stand(&self) -> bool {
        let me = self.config.id;
        if self.membership.current().is_voter(me) {
            return true;
        }
        let removed_uncommitted = self.membership.latest_index().is_some_and(|index| {
            index > self.commit_known && self.membership.at(index.prev()).is_voter(me)
        });
        if removed_uncommitted {
            hit!(m6_removed_server_stands_until_its_removal_commits);
        }
        removed_uncommitted
    }

    /// Rule T4: the target of a transfer stands at once, without pre-vote or deferral.
    pub(super) fn start_candidacy_for_transfer(&mut self, now: Instant) {
        if !self.step_over_fence() {
            return;
        }
        self.timers.deferred_until = now;
        self.start_candidacy(now, true);
    }

    /// Rule E3: new term, vote for ourselves, durably, then ask everyone (with `transfer` set
    /// when a TimeoutNow asked for it, T4).
    fn start_candidacy(&mut self, now: Instant, transfer: bool) {
        hit!(e3_candidacy_started);
        self.counters.elections_started += 1;
        let term = self.hard_state.current_term.next();
        debug_assert!(!self.fenced(term), "F9: a candidacy below the vote fence");
        self.raise_ceiling_for(term);
        self.hard_state = HardState {
            current_term: term,
            voted_for: Some(self.config.id),
        };
        self.save_hard_state();
        self.pending_ack = None;
        self.role = Role::Candidate;
        self.leader = None;
        self.timers.leader_contact = None;
        self.campaign = Some(Campaign {
            pre_vote: false,
            term,
            granted: BTreeSet::from([self.config.id]),
        });
        self.reset_campaign_timer(now);
        self.request_votes(term, false, transfer);
        self.check_campaign(now);
    }

    /// Asks the other voters of our configuration (M5: only their votes count).
    fn request_votes(&mut self, term: Term, pre_vote: bool, transfer: bool) {
        let request = VoteRequest {
            last_index: self.log.last_index(),
            last_term: self.log.last_term(),
            pre_vote,
            transfer,
        };
        let me = self.config.id;
        let voters: Vec<NodeId> = self
            .membership
            .current()
            .voters()
            .filter(|id| *id != me)
            .collect();
        for peer in voters {
            self.send(peer, term, MessageBody::VoteRequest(request));
        }
    }

    /// With a majority of grants, a pre-candidate stands (E3) and a candidate wins (E7).
    fn check_campaign(&mut self, now: Instant) {
        let Some(campaign) = &self.campaign else {
            return;
        };
        // M5: a majority of the voters of our configuration, learners never counted.
        if !self
            .membership
            .current()
            .is_quorum(campaign.granted.iter().copied())
        {
            return;
        }
        if campaign.pre_vote {
            hit!(e2_pre_vote_majority_stands);
            self.start_candidacy(now, false);
        } else {
            self.become_leader(now);
        }
    }

    /// Rule E7: a majority voted for us in our term: lead, append a no-op (R8), send to all.
    fn become_leader(&mut self, now: Instant) {
        hit!(e7_majority_wins);
        self.counters.elections_won += 1;
        let last = self.log.last_index();
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        self.campaign = None;
        self.progress = self
            .peers()
            .into_iter()
            .map(|peer| (peer, Progress::new(last)))
            .collect();
        self.timers.heartbeat_due = now + self.config.heartbeat_interval;
        self.timers.quorum_check_due = now + self.config.passive_timeout_min;
        if self.faulty.first().is_some() {
            // F6: no no-op (and so no proposal) until the faulty entries are repaired.
            hit!(f6_winner_with_faulty_entries_recovers_first);
            self.fetch_faulty(now);
            return;
        }
        self.append_noop();
    }

    /// Back to passive in the same term (lost an election, deferred, or lost the quorum).
    pub(super) fn step_down(&mut self, now: Instant) {
        self.transfer = None;
        self.end_catch_up(Err(crate::membership::ConfigChangeError::Abandoned));
        self.role = Role::Passive;
        self.campaign = None;
        self.progress.clear();
        self.leader = None;
        self.reset_passive_timer(now);
    }

    /// Rule E6: a message of a higher term: adopt it, forget the vote (durably), be passive.
    /// A passive server keeps its timer (only a candidate that could win restarts it, E8).
    pub(super) fn adopt_term(&mut self, now: Instant, term: Term) {
        hit!(e6_higher_term_adopted);
        debug_assert!(self.hard_state.current_term < term);
        self.hard_state = HardState {
            current_term: term,
            voted_for: None,
        };
        self.save_hard_state();
        self.pending_ack = None;
        self.leader = None;
        self.timers.leader_contact = None;
        if self.role != Role::Passive || self.campaign.is_some() {
            self.step_down(now);
        }
    }

    /// Rule E5 (receiver side): with check-quorum on, a leader, or a server that heard from its
    /// leader within the shortest passive timeout, ignores other servers' vote requests.
    /// A pre-vote is refused this way even with check-quorum off, as E2 requires.
    fn leader_is_alive(&self, now: Instant, from: NodeId, request: VoteRequest) -> bool {
        if request.transfer && !request.pre_vote {
            // T4: the leader itself asked this candidate to stand.
            hit!(t4_transfer_vote_skips_stickiness);
            return false;
        }
        if !self.config.check_quorum && !request.pre_vote {
            return false;
        }
        if self.role == Role::Leader {
            return true;
        }
        if self.sticky_after_start(now) {
            // Q3a: with leases on, a start counts as a leader contact.
            hit!(q3a_votes_refused_after_start);
            return true;
        }
        let heard = self.timers.leader_contact;
        self.leader.is_some_and(|leader| leader != from)
            && heard.is_some_and(|at| now < at + self.config.passive_timeout_min)
    }

    /// The up-to-date check of E4: the candidate's last term is higher, or equal with a last
    /// index at least ours.
    fn candidate_log_is_complete(&self, request: VoteRequest) -> bool {
        (request.last_term, request.last_index) >= (self.log.last_term(), self.log.last_index())
    }

    /// Rules E4, E5, E6, E8 for a VoteRequest (a pre-vote goes to E2's handler).
    pub(super) fn on_vote_request(
        &mut self,
        now: Instant,
        from: NodeId,
        term: Term,
        request: VoteRequest,
    ) {
        if request.pre_vote {
            self.on_pre_vote_request(now, from, term, request);
            return;
        }
        if term < self.hard_state.current_term {
            hit!(e6_stale_vote_request_answered);
            self.reply_vote(
                from,
                self.hard_state.current_term,
                VoteReason::StaleTerm,
                false,
            );
            return;
        }
        if self.leader_is_alive(now, from, request) {
            hit!(e5_vote_request_ignored_leader_alive);
            self.reply_vote(
                from,
                self.hard_state.current_term,
                VoteReason::LeaderAlive,
                false,
            );
            return;
        }
        self.defer_to_higher_rank(now, from, term, request);
        if term > self.hard_state.current_term {
            self.adopt_term(now, term);
        }
        if self.not_a_voter_for(request) {
            self.reply_vote(from, term, VoteReason::NotVoter, false);
            return;
        }
        if self.fenced(term) {
            hit!(f9_fenced_server_abstains);
            self.reply_vote(from, self.abstain_term(term), VoteReason::Abstaining, false);
            return;
        }
        let complete = self.candidate_log_is_complete(request);
        let voted = self.hard_state.voted_for;
        let may_vote =
            voted.is_none() || voted == Some(from) || injected!(self, GrantTwoVotesPerTerm);
        let reason = if !complete {
            hit!(e4_vote_refused_log_not_complete);
            VoteReason::LogNotComplete
        } else if !may_vote {
            hit!(e4_vote_refused_already_voted);
            VoteReason::AlreadyVoted
        } else {
            hit!(e4_vote_granted);
            VoteReason::Granted
        };
        let from_voter = self.membership.current().is_voter(from);
        if complete && self.role == Role::Passive && self.campaign.is_none() && from_voter {
            hit!(e8_able_candidate_restarts_timer);
            self.reset_passive_timer(now);
        }
        if reason == VoteReason::Granted && voted != Some(from) {
            self.raise_ceiling_for(term);
            self.hard_state.voted_for = Some(from);
            self.save_hard_state();
        }
        self.reply_vote(from, term, reason, false);
    }

    /// Rule E2 (receiver side): answer as E4 would, changing nothing.
    fn on_pre_vote_request(
        &mut self,
        now: Instant,
        from: NodeId,
        term: Term,
        request: VoteRequest,
    ) {
        let current = self.hard_state.current_term;
        if term < current {
            self.reply_vote(from, current, VoteReason::StaleTerm, true);
            return;
        }
        if self.leader_is_alive(now, from, request) {
            hit!(e5_pre_vote_ignored_leader_alive);
            self.reply_vote(from, term, VoteReason::LeaderAlive, true);
            return;
        }
        self.defer_to_higher_rank(now, from, term, request);
        if self.not_a_voter_for(request) {
            self.reply_vote(from, term, VoteReason::NotVoter, true);
            return;
        }
        if self.fenced(term) {
            hit!(f9_fenced_server_abstains_from_pre_vote);
            self.reply_vote(from, self.abstain_term(term), VoteReason::Abstaining, true);
            return;
        }
        let voted = self.hard_state.voted_for;
        let may_vote = term > current || voted.is_none() || voted == Some(from);
        let reason = if !self.candidate_log_is_complete(request) {
            VoteReason::LogNotComplete
        } else if !may_vote {
            // We are already in the asked term and voted in it: the asker's term is behind.
            // Answer with our term so it catches up; otherwise a server whose peers voted in
            // a term it never saw would ask for that same term forever (found writing S1).
            hit!(e2_pre_vote_asker_behind_our_term);
            self.reply_vote(from, current, VoteReason::StaleTerm, true);
            return;
        } else {
            hit!(e2_pre_vote_granted_without_state_change);
            VoteReason::Granted
        };
        self.reply_vote(from, term, reason, true);
    }

    /// Rule M7: a server that is not a voter of its configuration answers `NotVoter` when the
    /// candidate's log is exactly ours (log matching: it then holds our configuration, in which
    /// we do not vote). A candidate with a more complete log may know of our promotion first,
    /// so E4 answers it as usual (M6: votes go to whoever E4 allows; counting is M5's business).
    fn not_a_voter_for(&self, request: VoteRequest) -> bool {
        let same_log = (request.last_term, request.last_index)
            == (self.log.last_term(), self.log.last_index());
        let voter = self.membership.current().is_voter(self.config.id);
        if !voter && same_log {
            hit!(m7_learner_answers_not_voter);
        }
        !voter && same_log
    }

    /// Sends a VoteReply; carries our rank when we are ourselves campaigning for `term` (E8).
    fn reply_vote(&mut self, to: NodeId, term: Term, reason: VoteReason, pre_vote: bool) {
        let campaigning = self.campaign.as_ref().is_some_and(|c| c.term == term);
        let voter_rank = (campaigning && reason != VoteReason::Granted).then(|| self.rank());
        match (reason, pre_vote) {
            (VoteReason::Granted, _) => {}
            (_, true) => self.counters.pre_votes_refused += 1,
            (_, false) => self.counters.votes_refused += 1,
        }
        let reply = VoteReply {
            reason,
            voter_rank,
            pre_vote,
        };
        self.send(to, term, MessageBody::VoteReply(reply));
    }

    /// Rule E8: a (pre-)candidate asked for a vote, for a term at least its own, by a candidate
    /// of higher rank gives up and stays passive for a deferral period.
    fn defer_to_higher_rank(&mut self, now: Instant, from: NodeId, term: Term, req: VoteRequest) {
        if !self.config.deferral {
            return;
        }
        let Some(campaign) = &self.campaign else {
            return;
        };
        if !self.membership.current().is_voter(from) {
            // M6: only voters of our configuration make us defer.
            hit!(m6_non_voter_candidate_not_deferred_to);
            return;
        }
        let theirs = Rank {
            last_term: req.last_term,
            last_index: req.last_index,
            id: from,
        };
        if term < campaign.term || theirs <= self.rank() {
            return;
        }
        hit!(e8_candidate_defers_to_higher_rank);
        self.defer(now);
    }

    fn defer(&mut self, now: Instant) {
        self.counters.elections_deferred += 1;
        let period = self.rng.duration_in(
            self.config.passive_timeout_min,
            self.config.passive_timeout_max,
        );
        self.timers.deferred_until = now + period;
        self.step_down(now);
    }

    /// Rules E2, E6, E7, E8 for a VoteReply.
    pub(super) fn on_vote_reply(
        &mut self,
        now: Instant,
        from: NodeId,
        term: Term,
        reply: VoteReply,
    ) {
        let current = self.hard_state.current_term;
        if reply.pre_vote && reply.reason == VoteReason::StaleTerm && term > current {
            // Our pre-vote asked about a term the voter has passed: join its term, as a real
            // message would make us (a pre-vote changes the *voter's* state never).
            hit!(e2_stale_pre_candidate_learns_term);
            self.adopt_term(now, term);
            return;
        }
        if reply.pre_vote && reply.reason == VoteReason::Abstaining && term > current {
            // F9: the voter's fence (the reply's term) is the first term it may vote in; with
            // pre-vote on, a majority of fenced voters would otherwise never see a term rise.
            hit!(f9_abstaining_reply_raises_term);
            self.adopt_term(now, term);
            return;
        }
        if !reply.pre_vote && term > current {
            self.adopt_term(now, term);
            return;
        }
        let Some(campaign) = &mut self.campaign else {
            return;
        };
        if campaign.pre_vote != reply.pre_vote || campaign.term != term {
            return;
        }
        match reply.reason {
            VoteReason::Granted => {
                campaign.granted.insert(from);
                self.check_campaign(now);
            }
            VoteReason::LogNotComplete if self.config.deferral => {
                hit!(e8_candidate_drops_out_log_not_complete);
                self.step_down(now);
            }
            _ => {
                let higher = reply.voter_rank.is_some_and(|rank| rank > self.rank());
                if self.config.deferral && higher {
                    hit!(e8_candidate_defers_to_higher_ranked_voter);
                    self.defer(now);
                }
            }
        }
    }

    /// Rule E5 (leader side) and R7: check-quorum, then heartbeats, as due.
    pub(super) fn leader_tick(&mut self, now: Instant) {
        self.check_transfer(now);
        self.check_catch_up(now);
        if self.config.check_quorum && now >= self.timers.quorum_check_due {
            let me = self.config.id;
            let active = self
                .progress
                .iter()
                .filter(|(_, p)| p.recently_active)
                .map(|(id, _)| *id)
                .chain(std::iter::once(me));
            // M5: a majority of our configuration's voters (we count only if we are one).
            if !self.membership.current().is_quorum(active) {
                hit!(e5_leader_without_quorum_steps_down);
                self.step_down(now);
                return;
            }
            for progress in self.progress.values_mut() {
                progress.recently_active = false;
            }
            self.timers.quorum_check_due = now + self.config.passive_timeout_min;
        }
        if now >= self.timers.heartbeat_due {
            if self.fetch_tick(now) {
                return;
            }
            self.heartbeat_round(now);
            self.heartbeat();
            self.timers.heartbeat_due = now + self.config.heartbeat_interval;
        }
    }
}
