//! Hand-driven tests of §18's hard-state rules (F8 term ceiling, F9 hard-state amnesia), each
//! checking the coverage marks at the branches that implement them, negative cases included;
//! `docs/protocol.md` (§18 storage faults) lists rule → function → test.

use crate::marks::check;
use crate::testkit::entry;
use crate::*;

const W: u64 = crate::node::TERM_CEILING_STEP;

fn config(id: u64) -> Config {
    Config::lan(NodeId(id), vec![NodeId(1), NodeId(2), NodeId(3)], 42)
}

/// Server 2 of three with a log of entries of `terms`, started from `persisted`'s other fields.
fn node(hard_state: HardState, ceiling: u64, lost: bool, terms: &[u64]) -> Node {
    let entries = terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect();
    let persisted = Persisted {
        hard_state,
        log: PersistedLog::from_entries(entries),
        incarnation: Incarnation(1),
        term_ceiling: Term(ceiling),
        hard_state_lost: lost,
        ..Persisted::default()
    };
    Node::new(config(2), persisted, Instant(0)).unwrap()
}

/// Server 2 after losing both hard-state copies, its ceiling at `ceiling`, log terms `[1, 3]`.
fn amnesiac(ceiling: u64) -> Node {
    let mut node = node(HardState::default(), ceiling, true, &[1, 3]);
    let _ = node.take_outputs();
    node
}

fn hard_state(term: u64, voted_for: Option<u64>) -> HardState {
    HardState {
        current_term: Term(term),
        voted_for: voted_for.map(NodeId),
    }
}

fn vote_request(from: u64, term: u64, last: (u64, u64), pre_vote: bool) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(2),
        term: Term(term),
        incarnation: Incarnation(1),
        body: MessageBody::VoteRequest(VoteRequest {
            last_index: LogIndex(last.0),
            last_term: Term(last.1),
            pre_vote,
            transfer: false,
        }),
    }
}

fn reply(to: u64, term: u64, reason: VoteReason, pre_vote: bool) -> Output {
    Output::Send(Message {
        from: NodeId(2),
        to: NodeId(to),
        term: Term(term),
        incarnation: Incarnation(1),
        body: MessageBody::VoteReply(VoteReply {
            reason,
            voter_rank: None,
            pre_vote,
        }),
    })
}

fn ceiling(term: u64) -> Output {
    Output::SaveTermCeiling {
        ceiling: Term(term),
    }
}

#[test]
fn f8_the_ceiling_is_raised_before_a_vote_once_per_w_terms() {
    check!(f8_ceiling_raised_before_vote);
    let mut voter = node(hard_state(1, None), 0, false, &[1]);
    assert!(voter.take_outputs().is_empty());
    // Term 2 ≥ ceiling 0: the ceiling goes to 2 + W first, then the vote, then the reply.
    voter.on_message(Instant(1), vote_request(1, 2, (1, 1), false));
    assert_eq!(
        voter.take_outputs(),
        vec![
            ceiling(2 + W),
            Output::SaveHardState(hard_state(2, Some(1))),
            reply(1, 2, VoteReason::Granted, false),
        ]
    );
    assert_eq!(voter.term_ceiling(), Term(2 + W));
    // Negative case: a vote in a term below the ceiling writes no ceiling.
    voter.on_message(Instant(2), vote_request(3, 3, (1, 1), false));
    assert_eq!(
        voter.take_outputs(),
        vec![
            Output::SaveHardState(hard_state(3, Some(3))),
            reply(3, 3, VoteReason::Granted, false),
        ]
    );
    // A term at the ceiling raises it again.
    voter.on_message(Instant(3), vote_request(1, 2 + W, (1, 1), false));
    assert_eq!(voter.take_outputs()[0], ceiling(2 + 2 * W));
}

#[test]
fn f8_a_vote_at_or_above_the_ceiling_at_start_raises_it_at_once() {
    check!(f8_ceiling_raised_at_start);
    // A disk written before the ceiling existed: a vote in term 5, ceiling 0.
    let mut voter = node(hard_state(5, Some(3)), 0, false, &[1]);
    assert_eq!(voter.take_outputs(), vec![ceiling(5 + W)]);
    // Negative case: a vote below the ceiling needs nothing.
    let mut voter = node(hard_state(5, Some(3)), 9, false, &[1]);
    assert!(voter.take_outputs().is_empty());
}

#[test]
fn f9_a_lost_hard_state_fences_votes_below_the_ceiling() {
    check!(f9_hard_state_lost_fences_votes);
    check!(f9_fenced_server_abstains);
    check!(f9_hard_state_not_saved_below_fence);
    let mut voter = amnesiac(20);
    // The term comes from the log (E0); no vote; fenced up to the ceiling.
    assert_eq!(voter.hard_state(), hard_state(3, None));
    assert_eq!(voter.vote_fence(), Some(Term(20)));
    // Term 7 < 20: it may have voted in 7 before the loss. It abstains, telling the fence, and
    // saves nothing (a hard state written below the fence would hide the loss after a crash).
    voter.on_message(Instant(1), vote_request(1, 7, (2, 3), false));
    assert_eq!(
        voter.take_outputs(),
        vec![reply(1, 20, VoteReason::Abstaining, false)]
    );
    assert_eq!(voter.hard_state(), hard_state(7, None));
    // Negative case: at the fence the vote is granted as usual, and the fence is gone.
    voter.on_message(Instant(2), vote_request(1, 20, (2, 3), false));
    assert_eq!(
        voter.take_outputs(),
        vec![
            ceiling(20 + W),
            Output::SaveHardState(hard_state(20, Some(1))),
            reply(1, 20, VoteReason::Granted, false),
        ]
    );
    assert_eq!(voter.vote_fence(), None);
}

#[test]
fn f9_a_fenced_server_abstains_from_pre_votes_and_stands_only_at_its_fence() {
    check!(f9_fenced_server_stands_at_its_fence);
    check!(f9_fenced_server_abstains_from_pre_vote);
    let mut voter = amnesiac(20);
    voter.on_message(Instant(1), vote_request(3, 4, (2, 3), true));
    assert_eq!(
        voter.take_outputs(),
        vec![reply(3, 20, VoteReason::Abstaining, true)]
    );
    // Its timeout runs out: it may not stand in 4..20 (it may have voted there), so it stands
    // in the fence itself, a term it never voted in: a pre-vote for term 20, nothing saved.
    voter.tick(Instant::from_millis(1_000));
    assert!(voter.is_pre_candidate());
    let outputs = voter.take_outputs();
    assert!(
        outputs.iter().all(|output| matches!(
            output,
            Output::Send(Message {
                term: Term(20),
                body: MessageBody::VoteRequest(VoteRequest { pre_vote: true, .. }),
                ..
            })
        )),
        "{outputs:?}"
    );
    assert_eq!(outputs.len(), 2);
    assert_eq!(voter.hard_state(), hard_state(19, None));
}

#[test]
fn f9_an_abstaining_pre_vote_reply_moves_the_pre_candidate_to_the_fence() {
    check!(f9_abstaining_reply_raises_term);
    let mut candidate = node(hard_state(3, None), 0, false, &[1, 3]);
    candidate.tick(Instant::from_millis(1_000));
    assert!(candidate.is_pre_candidate());
    let _ = candidate.take_outputs();
    let abstain = |term: u64, from: u64| Message {
        from: NodeId(from),
        to: NodeId(2),
        term: Term(term),
        incarnation: Incarnation(1),
        body: MessageBody::VoteReply(VoteReply {
            reason: VoteReason::Abstaining,
            voter_rank: None,
            pre_vote: true,
        }),
    };
    candidate.on_message(Instant::from_millis(1_001), abstain(20, 1));
    assert_eq!(candidate.hard_state(), hard_state(20, None));
    assert!(!candidate.is_pre_candidate());
    // Negative case: an Abstaining reply at or below our term changes nothing.
    candidate.on_message(Instant::from_millis(1_002), abstain(20, 3));
    assert_eq!(candidate.hard_state(), hard_state(20, None));
}

#[test]
fn f9_with_the_ceiling_unreadable_too_the_server_never_votes_or_stands() {
    check!(f9_fenced_server_never_stands);
    let mut voter = amnesiac(u64::MAX);
    for second in 1..=10 {
        voter.tick(Instant::from_millis(second * 1_000));
    }
    let outputs = voter.take_outputs();
    assert!(outputs.is_empty(), "{outputs:?}");
    assert!(!voter.is_pre_candidate());
    voter.on_message(
        Instant::from_millis(10_001),
        vote_request(1, 1_000, (2, 3), false),
    );
    // The reply carries the request's term, not u64::MAX: no peer jumps to the last term.
    assert_eq!(
        voter.take_outputs(),
        vec![reply(1, 1_000, VoteReason::Abstaining, false)]
    );
    assert_eq!(voter.vote_fence(), Some(Term(u64::MAX)));
}

/// Scenario S18 (f): a follower voted for S1 in term `t`, crashed and lost both hard-state
/// copies; restarted, it refuses S3 in term `t` (the vote ledger stays clean), yet its log
/// still counts toward commits.
#[test]
fn s18f_a_follower_that_lost_its_hard_state_grants_no_second_vote_and_still_acknowledges() {
    let mut cluster = crate::testkit::Cluster::new(3, 7);
    let leader = cluster.elect(std::time::Duration::from_secs(5)).unwrap();
    let term = cluster.node(leader.0).status().term;
    let follower = (1..=3).find(|id| NodeId(*id) != leader).unwrap();
    let voted = cluster.node(follower).hard_state().voted_for;
    cluster.crash(follower);
    let disk = cluster.disks.get_mut(&NodeId(follower)).unwrap();
    assert!(
        disk.term_ceiling > term,
        "F8: the ceiling is above every voted term"
    );
    disk.hard_state_lost = true;
    cluster.start(NodeId(follower));
    let now = cluster.now;
    let restarted = cluster.node_mut(follower);
    assert_eq!(restarted.vote_fence(), Some(restarted.term_ceiling()));
    let other = (1..=3)
        .find(|id| NodeId(*id) != leader && *id != follower)
        .unwrap();
    let last = restarted.last_position();
    let request = Message {
        from: NodeId(other),
        to: NodeId(follower),
        term,
        incarnation: Incarnation(9),
        body: MessageBody::VoteRequest(VoteRequest {
            last_index: last.index,
            last_term: last.term,
            pre_vote: false,
            transfer: false,
        }),
    };
    restarted.on_message(now, request);
    let replies = crate::testkit::vote_reasons(restarted.take_outputs());
    assert_ne!(voted, Some(NodeId(other)));
    assert_eq!(replies, vec![VoteReason::Abstaining]);
    // Its acknowledgements still count: the leader commits with it while the third is down.
    cluster.crash(other);
    let proposal = cluster.propose(leader, "after the loss").unwrap();
    for _ in 0..20 {
        for id in [leader.0, follower] {
            cluster.sync(id);
        }
        cluster.deliver_all();
        cluster.advance(std::time::Duration::from_millis(10));
    }
    let status = cluster.node(leader.0).status();
    assert!(status.commit_index >= proposal.index, "{status:?}");
}

#[cfg(feature = "sim")]
#[test]
fn f9_the_injected_bug_ignores_the_fence() {
    let mut voter = amnesiac(20);
    voter.inject_bug(crate::injected::InjectedBug::IgnoreVoteFence);
    voter.on_message(Instant(1), vote_request(1, 7, (2, 3), false));
    let outputs = voter.take_outputs();
    assert!(
        outputs.contains(&reply(1, 7, VoteReason::Granted, false)),
        "{outputs:?}"
    );
}
