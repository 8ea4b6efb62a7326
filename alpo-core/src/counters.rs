//! Counters of the protocol's election events, for a driver's metrics (issue 15).
//!
//! Invariant: each field only grows, by one at the single place in `node/election.rs` where its
//! event happens; counters never influence the protocol (they are not inputs, outputs or state a
//! rule reads), so a replayed node counts the same as the recorded one.

/// How often each election event happened since this node started (volatile: a restart
/// starts from zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Pre-vote rounds started (rule E2).
    pub pre_votes_started: u64,
    /// Candidacies started: a new term with a vote for ourselves (rule E3).
    pub elections_started: u64,
    /// Elections won: a majority voted for us (rule E7).
    pub elections_won: u64,
    /// Campaigns given up for a higher-ranked candidate, then staying passive for a
    /// deferral period (rule E8).
    pub elections_deferred: u64,
    /// Pre-votes this node refused to another candidate (rules E2, E4, E5, E6).
    pub pre_votes_refused: u64,
    /// Votes this node refused to another candidate (rules E4, E5, E6).
    pub votes_refused: u64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::message::{Message, MessageBody, VoteRequest};
    use crate::testkit::Cluster;
    use crate::types::{Incarnation, LogIndex, NodeId, Term};

    #[test]
    fn an_election_is_counted_by_the_winner_and_no_other_event_is() {
        let mut cluster = Cluster::new(3, 7);
        let before: Vec<_> = (1..=3).map(|id| cluster.node(id).counters()).collect();
        assert!(before.iter().all(|c| *c == super::Counters::default()));
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        let counters = cluster.node(leader.0).counters();
        assert_eq!(counters.elections_won, 1);
        assert!(counters.elections_started >= 1, "{counters:?}");
        // Pre-vote is on by default: the winner's candidacy followed a pre-vote round.
        assert!(counters.pre_votes_started >= 1, "{counters:?}");
        let won: u64 = (1..=3)
            .map(|id| cluster.node(id).counters().elections_won)
            .sum();
        assert_eq!(won, 1, "one election, one winner");
    }

    #[test]
    fn refused_pre_votes_and_votes_are_counted_by_the_voter() {
        let mut cluster = Cluster::new(3, 11);
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        let voter = (1..=3).find(|id| *id != leader.0).unwrap();
        let other = 6 - leader.0 - voter;
        let term = cluster.node(voter).status().term;
        let now = cluster.now;
        let before = cluster.node(voter).counters();
        // The voter heard from a live leader just now: it refuses both (rule E5).
        for pre_vote in [true, false] {
            let request = Message {
                from: NodeId(other),
                to: NodeId(voter),
                term: term.next(),
                incarnation: Incarnation(1),
                body: MessageBody::VoteRequest(VoteRequest {
                    last_index: LogIndex(0),
                    last_term: Term(0),
                    pre_vote,
                    transfer: false,
                }),
            };
            cluster.node_mut(voter).on_message(now, request);
        }
        let after = cluster.node(voter).counters();
        assert_eq!(after.pre_votes_refused, before.pre_votes_refused + 1);
        assert_eq!(after.votes_refused, before.votes_refused + 1);
        assert_eq!(after.elections_started, before.elections_started);
    }
}
