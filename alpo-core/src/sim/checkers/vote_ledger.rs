//! Vote ledger (property 15 of docs/protocol.md §18): a server id grants at most one candidate
//! per term, across all its incarnations. Stronger than election safety: a second vote that
//! elects nobody (rules F8, F9: a server that lost its hard state) is caught too.
//!
//! Invariant kept: `granted` maps every `(voter, term)` in which a real (not pre-) vote was
//! cast to the candidate it went to. It is fed from the `VoteReply`s the voters *send* (so a
//! vote lost on the network still counts as cast) and from the hard states they make durable
//! (so a candidacy, a vote for oneself, counts too).

use std::collections::BTreeMap;

use super::{Check, Violation};
use crate::message::{Message, MessageBody};
use crate::types::{HardState, NodeId, Term};

/// The checker's name in reports.
pub const NAME: &str = "vote_ledger";

/// Every real vote ever granted, by voter and term.
#[derive(Clone, Debug, Default)]
pub struct VoteLedger {
    granted: BTreeMap<(NodeId, Term), NodeId>,
}

impl VoteLedger {
    /// Checks a message a server sends: a granted (real) vote.
    pub fn observe_send(&mut self, message: &Message) -> Check {
        let MessageBody::VoteReply(reply) = &message.body else {
            return Ok(());
        };
        if reply.pre_vote || !reply.granted() {
            return Ok(());
        }
        self.record(message.from, message.term, message.to)
    }

    /// Checks a hard state a server makes durable: a vote, for itself (a candidacy) or for
    /// another, before the reply that grants it.
    pub fn observe_hard_state(&mut self, voter: NodeId, hard_state: HardState) -> Check {
        match hard_state.voted_for {
            Some(candidate) => self.record(voter, hard_state.current_term, candidate),
            None => Ok(()),
        }
    }

    fn record(&mut self, voter: NodeId, term: Term, candidate: NodeId) -> Check {
        let first = *self.granted.entry((voter, term)).or_insert(candidate);
        if first == candidate {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!("node {voter} voted in term {term} for node {first} and for node {candidate}"),
        ))
    }

    /// How many real votes were granted so far.
    #[must_use]
    pub fn votes(&self) -> usize {
        self.granted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{VoteReason, VoteReply};
    use crate::types::Incarnation;

    fn vote(from: u64, to: u64, term: u64, reason: VoteReason, pre_vote: bool) -> Message {
        Message {
            from: NodeId(from),
            to: NodeId(to),
            term: Term(term),
            incarnation: Incarnation(from),
            body: MessageBody::VoteReply(VoteReply {
                reason,
                voter_rank: None,
                pre_vote,
            }),
        }
    }

    #[test]
    fn one_candidate_per_voter_and_term_passes() {
        let mut ledger = VoteLedger::default();
        for message in [
            vote(2, 1, 3, VoteReason::Granted, false),
            vote(2, 1, 3, VoteReason::Granted, false),
            vote(2, 3, 3, VoteReason::AlreadyVoted, false),
            vote(2, 3, 3, VoteReason::Granted, true),
            vote(2, 3, 4, VoteReason::Granted, false),
            vote(3, 3, 3, VoteReason::Granted, false),
        ] {
            ledger.observe_send(&message).unwrap();
        }
        assert_eq!(ledger.votes(), 3);
    }

    #[test]
    fn a_candidacy_after_a_vote_for_another_in_its_term_fails() {
        let mut ledger = VoteLedger::default();
        ledger
            .observe_send(&vote(2, 1, 7, VoteReason::Granted, false))
            .unwrap();
        let own = HardState {
            current_term: Term(7),
            voted_for: Some(NodeId(2)),
        };
        let err = ledger.observe_hard_state(NodeId(2), own).unwrap_err();
        assert!(
            err.details.contains("for node 1 and for node 2"),
            "{}",
            err.details
        );
        let no_vote = HardState {
            current_term: Term(8),
            voted_for: None,
        };
        ledger.observe_hard_state(NodeId(2), no_vote).unwrap();
    }

    #[test]
    fn a_second_candidate_in_one_term_fails() {
        let mut ledger = VoteLedger::default();
        ledger
            .observe_send(&vote(2, 1, 7, VoteReason::Granted, false))
            .unwrap();
        let err = ledger
            .observe_send(&vote(2, 3, 7, VoteReason::Granted, false))
            .unwrap_err();
        assert_eq!(err.checker, NAME);
        assert!(
            err.details
                .contains("node 2 voted in term 7 for node 1 and for node 3"),
            "{}",
            err.details
        );
    }
}
