//! One test per protocol rule (E0–E8, R1–R11), each checking the coverage marks at the branches
//! that implement the rule; `docs/protocol.md` lists rule → function →
//! test. Single-node tests assert on the exact, ordered output list; multi-node tests drive a
//! [`crate::testkit::Cluster`] by hand.

use std::time::Duration;

use bytes::Bytes;

use crate::marks::check;
use crate::testkit::{Cluster, is_append};
use crate::*;

const MS: Duration = Duration::from_millis(1);

fn ids(size: u64) -> Vec<NodeId> {
    (1..=size).map(NodeId).collect()
}

fn config(id: u64, size: u64) -> Config {
    Config::lan(NodeId(id), ids(size), 42)
}

fn config_plain(id: u64, size: u64) -> Config {
    let mut config = config(id, size);
    config.pre_vote = false;
    config
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        payload: Bytes::from(format!("{index}.{term}")),
    }
}

fn log_of(terms: &[u64]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect()
}

fn node_with(config: Config, term: u64, entries: Vec<Entry>) -> Node {
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(term),
            voted_for: None,
        },
        snapshot: None,
        log: crate::types::PersistedLog::from_entries(entries),
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    Node::new(config, persisted, Instant(0)).unwrap()
}

fn message(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        incarnation: Incarnation(1),
        body,
    }
}

fn vote_request(last_index: u64, last_term: u64, pre_vote: bool) -> MessageBody {
    MessageBody::VoteRequest(VoteRequest {
        last_index: LogIndex(last_index),
        last_term: Term(last_term),
        pre_vote,
        transfer: false,
    })
}

fn vote_reply(reason: VoteReason, voter_rank: Option<Rank>, pre_vote: bool) -> MessageBody {
    MessageBody::VoteReply(VoteReply {
        reason,
        voter_rank,
        pre_vote,
    })
}

fn append(prev: (u64, u64), entries: Vec<Entry>, leader_commit: u64) -> MessageBody {
    MessageBody::Append(Append {
        prev_index: LogIndex(prev.0),
        prev_term: Term(prev.1),
        entries,
        leader_commit: LogIndex(leader_commit),
        round: 0,
    })
}

fn accepted(match_index: u64) -> MessageBody {
    MessageBody::AppendReply(AppendReply {
        result: AppendResult::Accepted {
            match_index: LogIndex(match_index),
        },
        round: 0,
        repair_from: None,
    })
}

fn send(from: u64, to: u64, term: u64, body: MessageBody) -> Output {
    Output::Send(message(from, to, term, body))
}

fn save(term: u64, voted_for: Option<u64>) -> Output {
    Output::SaveHardState(HardState {
        current_term: Term(term),
        voted_for: voted_for.map(NodeId),
    })
}

fn at(millis: u64) -> Instant {
    Instant::from_millis(millis)
}

fn position(index: u64, term: u64) -> LogPosition {
    LogPosition {
        index: LogIndex(index),
        term: Term(term),
    }
}

/// A node that became candidate in term `term + 1` (pre-vote off) at 600 ms.
fn candidate(id: u64, size: u64, term: u64, entries: Vec<Entry>) -> Node {
    let mut node = node_with(config_plain(id, size), term, entries);
    node.tick(at(600));
    let _ = node.take_outputs();
    assert_eq!(node.status().role, Role::Candidate);
    node
}

#[test]
fn e0_start_up_term_is_the_highest_persisted_term() {
    check!(e0_term_from_last_entry);
    let node = node_with(config(1, 3), 1, log_of(&[1, 3]));
    assert_eq!(node.status().term, Term(3));
    assert_eq!(node.hard_state().voted_for, None);
    assert_eq!(node.status().role, Role::Passive);
    assert_eq!(node.status().commit_index, LogIndex(0));
}

#[test]
fn e1_timeouts_start_elections() {
    check!(e1_passive_timeout_starts_election);
    check!(e1_election_cycle_ended);
    let mut node = node_with(config_plain(1, 3), 0, Vec::new());
    node.tick(at(299));
    assert!(node.take_outputs().is_empty(), "P is at least 300 ms");
    let deadline = node.next_timeout().unwrap();
    assert!(at(300) <= deadline && deadline < at(600));
    node.tick(deadline);
    assert_eq!(node.status().role, Role::Candidate);
    assert_eq!(node.status().term, Term(1));
    let cycle_end = node.next_timeout().unwrap();
    assert!(deadline + 150 * MS <= cycle_end && cycle_end < deadline + 300 * MS);
    node.tick(cycle_end);
    assert_eq!(
        node.status().term,
        Term(2),
        "a cycle without a majority starts a new term"
    );
}

#[test]
fn e2_pre_vote_changes_no_term_or_vote() {
    check!(e2_pre_vote_started);
    check!(e2_pre_vote_granted_without_state_change);
    check!(e2_pre_vote_majority_stands);
    check!(e2_stale_pre_candidate_learns_term);
    check!(e2_pre_vote_asker_behind_our_term);
    let mut node = node_with(config(1, 3), 0, Vec::new());
    node.tick(at(600));
    assert_eq!(
        node.take_outputs(),
        vec![
            send(1, 2, 1, vote_request(0, 0, true)),
            send(1, 3, 1, vote_request(0, 0, true)),
        ]
    );
    assert_eq!(node.status().term, Term(0));
    assert!(node.is_pre_candidate());
    let mut voter = node_with(config(2, 3), 0, Vec::new());
    voter.on_message(at(600), message(1, 2, 1, vote_request(0, 0, true)));
    assert_eq!(
        voter.take_outputs(),
        vec![send(2, 1, 1, vote_reply(VoteReason::Granted, None, true))]
    );
    assert_eq!(voter.hard_state(), HardState::default());
    node.on_message(
        at(601),
        message(2, 1, 1, vote_reply(VoteReason::Granted, None, true)),
    );
    assert_eq!(node.status().role, Role::Candidate);
    assert_eq!(node.status().term, Term(1));
    // A pre-candidate whose pre-vote asked about a term the voter has passed joins that term.
    let mut late = node_with(config(3, 3), 0, Vec::new());
    late.tick(at(600));
    let _ = late.take_outputs();
    late.on_message(
        at(601),
        message(1, 3, 5, vote_reply(VoteReason::StaleTerm, None, true)),
    );
    assert_eq!(late.status().term, Term(5));
    assert!(!late.is_pre_candidate());
    // A voter that voted in the asked term answers with that term, so the asker catches up.
    let mut voted = node_with(config(2, 3), 0, Vec::new());
    voted.on_message(at(1), message(3, 2, 1, vote_request(0, 0, false)));
    let _ = voted.take_outputs();
    voted.on_message(at(2), message(1, 2, 1, vote_request(0, 0, true)));
    assert_eq!(
        voted.take_outputs(),
        vec![send(2, 1, 1, vote_reply(VoteReason::StaleTerm, None, true))]
    );
}

#[test]
fn e3_candidacy_saves_term_and_vote_before_asking() {
    check!(e3_candidacy_started);
    let mut node = node_with(config_plain(1, 3), 2, log_of(&[1, 2]));
    node.tick(at(600));
    assert_eq!(
        node.take_outputs(),
        vec![
            // F8: the term ceiling (0 on this fresh disk) goes past term 3 first.
            Output::SaveTermCeiling {
                ceiling: Term(3 + crate::node::TERM_CEILING_STEP)
            },
            save(3, Some(1)),
            send(1, 2, 3, vote_request(2, 2, false)),
            send(1, 3, 3, vote_request(2, 2, false)),
        ]
    );
}

#[test]
fn e4_one_vote_per_term_for_a_complete_log() {
    check!(e4_vote_granted);
    check!(e4_vote_refused_already_voted);
    check!(e4_vote_refused_log_not_complete);
    let mut voter = node_with(config(2, 3), 1, log_of(&[1, 1]));
    // Equal last term and a longer log: complete. The vote is saved before the reply.
    voter.on_message(at(1), message(1, 2, 2, vote_request(3, 1, false)));
    assert_eq!(
        voter.take_outputs(),
        vec![
            Output::SaveTermCeiling {
                ceiling: Term(2 + crate::node::TERM_CEILING_STEP)
            },
            save(2, Some(1)),
            send(2, 1, 2, vote_reply(VoteReason::Granted, None, false))
        ]
    );
    voter.on_message(at(2), message(3, 2, 2, vote_request(9, 1, false)));
    assert_eq!(
        voter.take_outputs(),
        vec![send(
            2,
            3,
            2,
            vote_reply(VoteReason::AlreadyVoted, None, false)
        )]
    );
    // A repeated request from the same candidate is granted again, without a new save.
    voter.on_message(at(3), message(1, 2, 2, vote_request(3, 1, false)));
    assert_eq!(
        voter.take_outputs(),
        vec![send(2, 1, 2, vote_reply(VoteReason::Granted, None, false))]
    );
    // Term 3: a longer log of an older last term is not complete (last term compares first).
    voter.on_message(at(4), message(3, 2, 3, vote_request(9, 0, false)));
    assert_eq!(
        voter.take_outputs(),
        vec![
            save(3, None),
            send(2, 3, 3, vote_reply(VoteReason::LogNotComplete, None, false))
        ]
    );
}

#[test]
fn e5_leader_stickiness_and_check_quorum() {
    check!(e5_vote_request_ignored_leader_alive);
    check!(e5_pre_vote_ignored_leader_alive);
    check!(e5_leader_without_quorum_steps_down);
    let mut cluster = Cluster::new(3, 5);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    let follower = if leader == NodeId(1) { 2 } else { 1 };
    let term = cluster.node(follower).status().term.0;
    let other = 6 - leader.0 - follower;
    let node = cluster.nodes.get_mut(&NodeId(follower)).unwrap();
    let now = cluster.now;
    node.on_message(
        now,
        message(other, follower, term + 1, vote_request(99, term, false)),
    );
    node.on_message(
        now,
        message(other, follower, term + 1, vote_request(99, term, true)),
    );
    assert_eq!(
        node.take_outputs(),
        vec![
            send(
                follower,
                other,
                term,
                vote_reply(VoteReason::LeaderAlive, None, false)
            ),
            send(
                follower,
                other,
                term + 1,
                vote_reply(VoteReason::LeaderAlive, None, true)
            ),
        ]
    );
    assert_eq!(
        node.status().term,
        Term(term),
        "a sticky server does not adopt the term"
    );
    // Cut the leader off: within a passive timeout or two it steps down by itself.
    for _ in 0..100 {
        cluster.advance(10 * MS);
        cluster.deliver_where(|m| m.from != leader && m.to != leader);
        if cluster.node(leader.0).status().role != Role::Leader {
            break;
        }
    }
    assert_eq!(cluster.node(leader.0).status().role, Role::Passive);
    assert_eq!(cluster.node(leader.0).status().term, Term(term));
}

#[test]
fn e6_higher_terms_are_adopted_lower_terms_answered() {
    check!(e6_higher_term_adopted);
    check!(e6_stale_vote_request_answered);
    check!(e6_stale_append_answered);
    let mut node = candidate(1, 3, 0, Vec::new());
    node.on_message(at(601), message(2, 1, 3, append((0, 0), Vec::new(), 0)));
    assert_eq!(
        node.take_outputs(),
        vec![save(3, None), send(1, 2, 3, accepted(0))]
    );
    assert_eq!(node.status().role, Role::Passive);
    assert_eq!(node.status().leader, Some(NodeId(2)));
    node.on_message(at(602), message(3, 1, 2, vote_request(5, 2, false)));
    node.on_message(at(603), message(3, 1, 2, append((0, 0), Vec::new(), 0)));
    let hint = RejectHint {
        conflict_term: Term(0),
        conflict_first_index: LogIndex(0),
        last_index: LogIndex(0),
        last_term: Term(0),
    };
    assert_eq!(
        node.take_outputs(),
        vec![
            send(1, 3, 3, vote_reply(VoteReason::StaleTerm, None, false)),
            send(
                1,
                3,
                3,
                MessageBody::AppendReply(AppendReply {
                    result: AppendResult::Rejected(hint),
                    round: 0,
                    repair_from: None,
                })
            ),
        ]
    );
}

/// Node 1 leads term 5 over a log whose entries 3 and 4 are of term 3, with a proposal at 6
/// durable on its own disk; follower 2 has acknowledged nothing in term 5.
fn leader_of_term_5_with_a_pending_proposal() -> Node {
    let mut leader = node_with(config_plain(1, 3), 4, log_of(&[1, 1, 3, 3]));
    leader.tick(at(600));
    leader.on_message(
        at(601),
        message(2, 1, 5, vote_reply(VoteReason::Granted, None, false)),
    );
    assert_eq!(leader.status().role, Role::Leader);
    leader.propose(at(602), Bytes::from_static(b"six")).unwrap();
    leader.on_persisted(at(603), position(6, 5));
    let _ = leader.take_outputs();
    leader
}

#[test]
fn e6_a_stale_append_reply_is_not_counted() {
    check!(e6_stale_append_reply_ignored);
    // An acknowledgement of index 6 from node 2, sent in term 3 (when node 1 last led, with
    // another log). Counted, it would make a majority for index 6 and commit it.
    let mut leader = leader_of_term_5_with_a_pending_proposal();
    leader.on_message(at(604), message(2, 1, 3, accepted(6)));
    assert_eq!(leader.status().commit_index, LogIndex(0));
    assert_eq!(leader.take_outputs(), Vec::new());
    // The same acknowledgement in term 5 commits.
    leader.on_message(at(605), message(2, 1, 5, accepted(6)));
    assert_eq!(leader.status().commit_index, LogIndex(6));
}

/// The injected bug `CountStaleAppendReply` is the branch above removed: the stale reply commits.
#[test]
fn the_stale_append_reply_bug_commits_on_a_stale_reply() {
    let mut leader = leader_of_term_5_with_a_pending_proposal();
    leader.inject_bug(InjectedBug::CountStaleAppendReply);
    leader.on_message(at(604), message(2, 1, 3, accepted(6)));
    assert_eq!(leader.status().commit_index, LogIndex(6));
}

#[test]
fn e7_a_majority_of_votes_wins() {
    check!(e7_majority_wins);
    let mut node = candidate(1, 3, 0, Vec::new());
    node.on_message(
        at(601),
        message(3, 1, 1, vote_reply(VoteReason::Granted, None, false)),
    );
    assert_eq!(node.status().role, Role::Leader);
    assert_eq!(node.status().leader, Some(NodeId(1)));
    let noop = Entry {
        index: LogIndex(1),
        term: Term(1),
        kind: EntryKind::Noop,
        payload: Bytes::new(),
    };
    assert_eq!(
        node.take_outputs(),
        vec![
            Output::AppendLog {
                entries: vec![noop.clone()]
            },
            send(1, 2, 1, append((0, 0), vec![noop.clone()], 0)),
            send(1, 3, 1, append((0, 0), vec![noop], 0)),
        ]
    );
}

#[test]
fn e8_deferral_to_the_highest_rank() {
    check!(e8_candidate_defers_to_higher_rank);
    check!(e8_candidate_defers_to_higher_ranked_voter);
    check!(e8_candidate_drops_out_log_not_complete);
    check!(e8_deferred_server_waits);
    check!(e8_able_candidate_restarts_timer);
    // Candidates 1 and 2 with equal logs in term 2: 2 outranks 1 by id.
    let mut low = candidate(1, 3, 1, log_of(&[1]));
    let mut high = candidate(2, 3, 1, log_of(&[1]));
    high.on_message(at(601), message(1, 2, 2, vote_request(1, 1, false)));
    let rank = Rank {
        last_term: Term(1),
        last_index: LogIndex(1),
        id: NodeId(2),
    };
    assert_eq!(
        high.take_outputs(),
        vec![send(
            2,
            1,
            2,
            vote_reply(VoteReason::AlreadyVoted, Some(rank), false)
        )]
    );
    low.on_message(
        at(602),
        message(
            2,
            1,
            2,
            vote_reply(VoteReason::AlreadyVoted, Some(rank), false),
        ),
    );
    assert_eq!(low.status().role, Role::Passive);
    // Deferred: no candidacy before the deferral ends, however often time passes.
    let deadline = low.next_timeout().unwrap();
    assert!(at(602) + 300 * MS <= deadline);
    low.tick(Instant(deadline.0 - 1));
    assert!(low.take_outputs().is_empty());
    // The same by request: a lower-ranked candidate asked by a higher-ranked one gives up.
    let mut low = candidate(1, 3, 0, Vec::new());
    low.on_message(at(601), message(2, 1, 1, vote_request(1, 1, false)));
    assert_eq!(low.status().role, Role::Passive);
    low.tick(Instant(low.next_timeout().unwrap().0 - 1));
    let mut deferred = candidate(3, 3, 0, Vec::new());
    deferred.on_message(at(601), message(2, 3, 1, vote_request(1, 1, false)));
    deferred.tick(at(900));
    assert!(
        deferred
            .take_outputs()
            .iter()
            .all(|o| !matches!(o, Output::SaveHardState(_)))
    );
    // Told LogNotComplete, a candidate drops out.
    let mut behind = candidate(1, 3, 0, Vec::new());
    behind.on_message(
        at(601),
        message(2, 1, 1, vote_reply(VoteReason::LogNotComplete, None, false)),
    );
    assert_eq!(behind.status().role, Role::Passive);
    // A passive server asked by a candidate that could win restarts its timer.
    let mut passive = node_with(config(3, 3), 0, Vec::new());
    let before = passive.next_timeout().unwrap();
    passive.on_message(at(250), message(1, 3, 1, vote_request(0, 0, false)));
    assert!(passive.next_timeout().unwrap() > before.max(at(549)));
}

#[test]
fn r1_only_the_leader_accepts_bounded_proposals() {
    check!(r1_proposal_refused_not_leader);
    check!(r1_proposal_appended);
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = Config::lan(id, members, 3);
        config.pending_proposal_count_max = 2;
        config.pending_proposal_bytes_max = 10;
        config.entry_bytes_max = 8;
        config
    });
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    let follower = NodeId(if leader == NodeId(1) { 2 } else { 1 });
    assert_eq!(
        cluster.propose(follower, "x"),
        Err(ProposeError::NotLeader {
            leader_hint: Some(leader)
        })
    );
    let term = cluster.node(leader.0).status().term;
    // The no-op is committed; nothing is pending.
    assert_eq!(
        cluster.propose(leader, "abcdefgh!"),
        Err(ProposeError::EntryTooLarge { size: 9, limit: 8 })
    );
    let first = cluster.propose(leader, "abcdefgh").unwrap();
    assert_eq!(
        first,
        Proposal {
            index: LogIndex(2),
            term
        }
    );
    assert_eq!(
        cluster.propose(leader, "abc"),
        Err(ProposeError::TooManyPendingBytes { limit: 10 })
    );
    cluster.propose(leader, "ab").unwrap();
    assert_eq!(
        cluster.propose(leader, "a"),
        Err(ProposeError::TooManyPending { limit: 2 })
    );
    cluster.deliver_all();
    cluster.propose(leader, "a").unwrap();
}

#[test]
fn r2_probe_then_a_bounded_window_of_batches() {
    check!(r2_probe_sent);
    check!(r2_append_sent_in_window);
    check!(r2_reordered_rejection_resends_in_the_window);
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = Config::lan(id, members, 3);
        config.append_entry_count_max = 2;
        config.inflight_append_count_max = 2;
        config
    });
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    let node = cluster.nodes.get_mut(&leader).unwrap();
    for i in 0..7 {
        node.propose(cluster.now, Bytes::from(vec![b'p'; i]))
            .unwrap();
    }
    let outputs = node.take_outputs();
    // One write for all seven, then per follower two Appends of two entries (the window).
    assert!(matches!(&outputs[0], Output::AppendLog { entries } if entries.len() == 7));
    let appends: Vec<&Message> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(m) if is_append(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(appends.len(), 4);
    for m in &appends {
        let MessageBody::Append(a) = &m.body else {
            unreachable!()
        };
        assert_eq!(a.entries.len(), 2);
    }
    // The network reorders: a follower gets the window's second Append first and rejects it.
    // The leader resends at once, in the window (no probe).
    let second = (*appends.iter().rfind(|m| m.to == appends[0].to).unwrap()).clone();
    let follower = second.to;
    let now = cluster.now;
    let node = cluster.nodes.get_mut(&follower).unwrap();
    node.on_message(now, second);
    let reply = node.take_outputs().pop().unwrap();
    let Output::Send(reply) = reply else {
        panic!("expected a reply, got {reply:?}")
    };
    assert!(matches!(&reply.body, MessageBody::AppendReply(r)
        if matches!(r.result, AppendResult::Rejected(_))));
    let node = cluster.nodes.get_mut(&leader).unwrap();
    node.on_message(now, reply.clone());
    // The follower's log ends before the window: the whole window is sent again.
    let resent = node.take_outputs();
    assert_eq!(resent.len(), 2);
    assert!(
        resent
            .iter()
            .all(|o| matches!(o, Output::Send(m) if m.to == follower
        && matches!(&m.body, MessageBody::Append(a) if a.entries.len() == 2)))
    );
    // The same rejection, duplicated by the network, changes nothing.
    node.on_message(now, reply);
    assert!(node.take_outputs().is_empty());
}

#[test]
fn r3_mismatch_rejected_with_a_term_hint() {
    check!(r3_append_rejected_on_mismatch);
    check!(r3_leader_skips_back_a_term);
    let mut follower = node_with(config(2, 3), 2, log_of(&[1, 1, 2, 2]));
    follower.on_message(
        at(1),
        message(1, 2, 3, append((4, 3), vec![entry(5, 3)], 0)),
    );
    let hint = RejectHint {
        conflict_term: Term(2),
        conflict_first_index: LogIndex(3),
        last_index: LogIndex(4),
        last_term: Term(2),
    };
    let reject = MessageBody::AppendReply(AppendReply {
        result: AppendResult::Rejected(hint),
        round: 0,
        repair_from: None,
    });
    assert_eq!(
        follower.take_outputs(),
        vec![save(3, None), send(2, 1, 3, reject)]
    );
    // The leader side: node 3 holds a divergent term-1 suffix; nodes 1 and 2 hold term 2.
    let mut cluster = Cluster::new(3, 11);
    for id in 1..=3 {
        cluster.crash(id);
        let terms: &[u64] = if id == 3 { &[1, 1, 1] } else { &[1, 2] };
        let disk = cluster.disks.get_mut(&NodeId(id)).unwrap();
        disk.hard_state.current_term = Term(2);
        disk.log = log_of(terms);
        disk.synced = terms.len();
    }
    for id in 1..=3 {
        cluster.start(NodeId(id));
    }
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    assert_ne!(leader, NodeId(3));
    cluster.propose(leader, "c").unwrap();
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    assert_eq!(cluster.applied_payloads(3), vec!["1.1", "2.2", "c"]);
}

#[test]
fn r4_keep_matching_truncate_conflicts_ack_when_durable() {
    check!(r4_matching_entry_kept);
    check!(r4_conflicting_suffix_truncated);
    check!(r4_acknowledgement_waits_for_durability);
    let mut follower = node_with(config(2, 3), 2, log_of(&[1, 1, 2]));
    follower.on_message(
        at(1),
        message(1, 2, 3, append((1, 1), vec![entry(2, 1), entry(3, 3)], 0)),
    );
    assert_eq!(
        follower.take_outputs(),
        vec![
            save(3, None),
            Output::TruncateLog { from: LogIndex(3) },
            Output::AppendLog {
                entries: vec![entry(3, 3)]
            },
        ]
    );
    // A late duplicate of an older Append truncates nothing.
    follower.on_message(
        at(2),
        message(1, 2, 3, append((1, 1), vec![entry(2, 1)], 0)),
    );
    assert_eq!(follower.take_outputs(), vec![send(2, 1, 3, accepted(2))]);
    // A durability report for a position the log no longer holds is ignored.
    follower.on_persisted(at(3), position(3, 2));
    assert!(follower.take_outputs().is_empty());
    follower.on_persisted(at(4), position(3, 3));
    assert_eq!(follower.take_outputs(), vec![send(2, 1, 3, accepted(3))]);
    assert_eq!(follower.last_position(), position(3, 3));
}

#[test]
fn r5_only_current_term_entries_are_counted() {
    check!(r5_older_term_entry_not_counted);
    check!(r5_commit_by_current_term_entry);
    // Node 1 holds an entry of term 2 that nobody else has; it wins term 4.
    let mut leader = node_with(config_plain(1, 3), 3, log_of(&[2]));
    leader.tick(at(600));
    leader.on_message(
        at(601),
        message(2, 1, 4, vote_reply(VoteReason::Granted, None, false)),
    );
    assert_eq!(leader.status().role, Role::Leader);
    leader.on_persisted(at(602), position(2, 4));
    let _ = leader.take_outputs();
    // Follower 2 acknowledges the term-2 entry only: a majority holds it, yet it is not committed.
    leader.on_message(at(603), message(2, 1, 4, accepted(1)));
    assert_eq!(leader.status().commit_index, LogIndex(0));
    leader.on_message(at(604), message(2, 1, 4, accepted(2)));
    assert_eq!(leader.status().commit_index, LogIndex(2));
    let outputs = leader.take_outputs();
    let applied: Vec<&Output> = outputs
        .iter()
        .filter(|o| matches!(o, Output::Apply { .. }))
        .collect();
    assert_eq!(applied.len(), 1);
    assert!(matches!(applied[0], Output::Apply { entries } if entries.len() == 2));
}

#[test]
fn r6_followers_learn_the_commit_index_up_to_what_is_verified_and_durable() {
    check!(r6_follower_learns_commit);
    let mut follower = node_with(config(2, 3), 1, Vec::new());
    follower.on_message(
        at(1),
        message(1, 2, 1, append((0, 0), vec![entry(1, 1)], 5)),
    );
    assert_eq!(
        follower.status().commit_index,
        LogIndex(0),
        "not durable yet"
    );
    let _ = follower.take_outputs();
    follower.on_persisted(at(2), position(1, 1));
    assert_eq!(
        follower.take_outputs(),
        vec![
            send(2, 1, 1, accepted(1)),
            Output::Apply {
                entries: vec![entry(1, 1)]
            },
        ]
    );
    // A heartbeat verifies nothing beyond its previous index: the commit stays clamped there.
    let mut other = node_with(config(3, 3), 1, log_of(&[1, 1]));
    other.on_message(at(1), message(1, 3, 1, append((1, 1), Vec::new(), 2)));
    assert_eq!(other.status().commit_index, LogIndex(1));
}

#[test]
fn r7_idle_leaders_send_heartbeats() {
    check!(r7_heartbeat_sent);
    let mut cluster = Cluster::new(3, 21);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    cluster.advance(50 * MS);
    let heartbeats = cluster.count_in_flight(|m| {
        m.from == leader && matches!(&m.body, MessageBody::Append(a) if a.entries.is_empty())
    });
    assert_eq!(heartbeats, 2);
}

#[test]
fn r8_a_new_leader_appends_a_noop() {
    check!(r8_new_leader_appends_noop);
    let (cluster, leader) = {
        let mut cluster = Cluster::new(3, 8);
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        (cluster, leader)
    };
    let node = cluster.node(leader.0);
    let noop = node.entry(LogIndex(1)).unwrap();
    assert_eq!(noop.kind, EntryKind::Noop);
    assert_eq!(noop.term, node.status().term);
}

#[test]
fn r9_a_leader_steps_down_before_its_log_changes() {
    check!(r9_leader_steps_down_before_touching_its_log);
    let mut leader = candidate(1, 3, 0, Vec::new());
    leader.on_message(
        at(601),
        message(2, 1, 1, vote_reply(VoteReason::Granted, None, false)),
    );
    let _ = leader.take_outputs();
    leader.on_message(
        at(602),
        message(3, 1, 2, append((0, 0), vec![entry(1, 2)], 0)),
    );
    assert_eq!(leader.status().role, Role::Passive);
    assert_eq!(
        leader.take_outputs(),
        vec![
            save(2, None),
            Output::TruncateLog { from: LogIndex(1) },
            Output::AppendLog {
                entries: vec![entry(1, 2)]
            },
        ]
    );
}

#[test]
fn r10_a_leader_counts_itself_once_durable() {
    check!(r10_leader_counts_its_own_durable_write);
    let mut leader = candidate(1, 3, 0, Vec::new());
    leader.on_message(
        at(601),
        message(2, 1, 1, vote_reply(VoteReason::Granted, None, false)),
    );
    let _ = leader.take_outputs();
    leader.on_message(at(602), message(2, 1, 1, accepted(1)));
    assert_eq!(
        leader.status().commit_index,
        LogIndex(0),
        "own write of the no-op not durable"
    );
    leader.on_persisted(at(603), position(1, 1));
    assert_eq!(leader.status().commit_index, LogIndex(1));
}

#[test]
fn r11_committed_entries_are_applied_in_order_once() {
    check!(r11_committed_entries_applied);
    let mut cluster = Cluster::new(3, 13);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    for payload in ["a", "b", "c"] {
        cluster.propose(leader, payload).unwrap();
        cluster.deliver_all();
    }
    cluster.advance(60 * MS);
    cluster.deliver_all();
    for id in 1..=3 {
        assert_eq!(cluster.applied_payloads(id), vec!["a", "b", "c"]);
        let applied = &cluster.applied[&NodeId(id)];
        for (i, entry) in applied.iter().enumerate() {
            assert_eq!(entry.index, LogIndex(i as u64 + 1));
        }
    }
}

#[test]
fn a_restarted_follower_is_probed_again() {
    check!(follower_restart_resets_progress);
    let mut cluster = Cluster::new(3, 17);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    let follower = if leader == NodeId(1) { 2 } else { 1 };
    cluster.crash(follower);
    cluster.start(NodeId(follower));
    cluster.propose(leader, "after").unwrap();
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    assert_eq!(cluster.applied_payloads(follower), vec!["after"]);
}

// Negative cases: each test below fails when the branch it names is removed (each was tried:
// delete or invert the branch, run the tests, restore), where the rule tests above did not.

#[test]
fn e2_a_pre_vote_for_a_passed_term_is_refused_with_our_term() {
    // `on_pre_vote_request`'s first branch: the voter is in term 3, the asker asks for term 2.
    let mut voter = node_with(config(2, 3), 3, Vec::new());
    voter.on_message(at(1), message(1, 2, 2, vote_request(0, 0, true)));
    assert_eq!(
        voter.take_outputs(),
        vec![send(2, 1, 3, vote_reply(VoteReason::StaleTerm, None, true))]
    );
}

#[test]
fn e2_a_pre_vote_for_a_log_behind_ours_is_refused() {
    // `on_pre_vote_request`'s up-to-date check, as E4 would refuse.
    let mut voter = node_with(config(2, 3), 1, log_of(&[1, 1]));
    voter.on_message(at(1), message(1, 2, 2, vote_request(1, 1, true)));
    assert_eq!(
        voter.take_outputs(),
        vec![send(
            2,
            1,
            2,
            vote_reply(VoteReason::LogNotComplete, None, true)
        )]
    );
    assert_eq!(voter.hard_state().current_term, Term(1));
}

#[test]
fn e6_a_vote_reply_of_a_higher_term_makes_a_candidate_adopt_it() {
    // `on_vote_reply`'s E6 branch: a refusal in term 5 reaches a candidate of term 1.
    let mut node = candidate(1, 3, 0, Vec::new());
    node.on_message(
        at(601),
        message(2, 1, 5, vote_reply(VoteReason::AlreadyVoted, None, false)),
    );
    assert_eq!(node.take_outputs(), vec![save(5, None)]);
    assert_eq!(node.status().role, Role::Passive);
    assert_eq!(node.status().term, Term(5));
}

#[test]
fn e6_a_granted_vote_of_an_older_term_is_not_counted() {
    // `on_vote_reply`'s campaign-term check: a grant from the campaign of term 1 arrives
    // during the campaign of term 2; counted, it would make node 1 leader with one real vote.
    let mut node = candidate(1, 3, 1, Vec::new());
    assert_eq!(node.status().term, Term(2));
    node.on_message(
        at(601),
        message(2, 1, 1, vote_reply(VoteReason::Granted, None, false)),
    );
    assert_eq!(node.status().role, Role::Candidate);
    assert_eq!(node.take_outputs(), Vec::new());
}

#[test]
fn e8_a_deferred_server_reports_the_end_of_its_deferral_as_its_deadline() {
    // `reset_passive_timer` waits for the deferral: the deadline a deferred server reports is
    // one at which it does stand. (Without the wait, its timer may fall inside the deferral and
    // the tick at that deadline does nothing.) Timeouts are random: try several seeds.
    for seed in 0..16 {
        let mut config = config_plain(1, 3);
        config.seed = seed;
        let mut low = node_with(config, 1, log_of(&[1]));
        low.tick(at(600));
        let _ = low.take_outputs();
        low.on_message(at(601), message(2, 1, 2, vote_request(1, 1, false)));
        assert_eq!(low.status().role, Role::Passive, "seed {seed}");
        let _ = low.take_outputs();
        let deadline = low.next_timeout().unwrap();
        low.tick(deadline);
        assert_eq!(low.status().role, Role::Candidate, "seed {seed}");
    }
}

#[test]
fn e8_without_deferral_a_candidate_does_not_give_way() {
    // `defer_to_higher_rank`'s switch: with `deferral` off, a higher rank asking changes nothing.
    let mut config = config_plain(1, 3);
    config.deferral = false;
    let mut low = node_with(config, 0, Vec::new());
    low.tick(at(600));
    let _ = low.take_outputs();
    low.on_message(at(601), message(2, 1, 1, vote_request(1, 1, false)));
    assert_eq!(low.status().role, Role::Candidate);
    let rank = Rank {
        last_term: Term(0),
        last_index: LogIndex(0),
        id: NodeId(1),
    };
    assert_eq!(
        low.take_outputs(),
        vec![send(
            1,
            2,
            1,
            vote_reply(VoteReason::AlreadyVoted, Some(rank), false)
        )]
    );
}

#[test]
fn r2_an_append_carries_at_most_its_byte_budget() {
    // `build_append`'s byte bound: entries of 6 bytes, a budget of 10: one entry per Append.
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = Config::lan(id, members, 3);
        config.append_bytes_max = 10;
        config
    });
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    let node = cluster.nodes.get_mut(&leader).unwrap();
    for _ in 0..3 {
        node.propose(cluster.now, Bytes::from_static(b"sixsix"))
            .unwrap();
    }
    let sizes: Vec<usize> = node
        .take_outputs()
        .iter()
        .filter_map(|o| match o {
            Output::Send(Message {
                body: MessageBody::Append(a),
                ..
            }) => Some(a.entries.len()),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![1, 1, 1, 1, 1, 1]);
}

#[test]
fn r4_a_partly_durable_append_is_acknowledged_partly() {
    // `on_durable_advanced` acknowledges only what is durable: three entries arrive, the disk
    // reports the first one synced, and the follower acknowledges index 1, then 3.
    let mut follower = node_with(config(2, 3), 1, Vec::new());
    let entries = vec![entry(1, 1), entry(2, 1), entry(3, 1)];
    follower.on_message(at(1), message(1, 2, 1, append((0, 0), entries.clone(), 0)));
    assert_eq!(follower.take_outputs(), vec![Output::AppendLog { entries }]);
    follower.on_persisted(at(2), position(1, 1));
    assert_eq!(follower.take_outputs(), vec![send(2, 1, 1, accepted(1))]);
    follower.on_persisted(at(3), position(3, 1));
    assert_eq!(follower.take_outputs(), vec![send(2, 1, 1, accepted(3))]);
}

#[test]
fn r9_a_candidate_or_pre_candidate_follows_an_append_of_its_term() {
    // `on_append`'s step-down for an Append of the current term (no term change, so E6 does
    // not do it): the sender leads this term, so campaigning for it is over.
    let mut node = candidate(1, 3, 0, Vec::new());
    node.on_message(at(601), message(2, 1, 1, append((0, 0), Vec::new(), 0)));
    assert_eq!(node.status().role, Role::Passive);
    assert_eq!(node.status().leader, Some(NodeId(2)));
    assert_eq!(node.take_outputs(), vec![send(1, 2, 1, accepted(0))]);
    let mut pre = node_with(config(1, 3), 0, Vec::new());
    pre.tick(at(600));
    let _ = pre.take_outputs();
    assert!(pre.is_pre_candidate());
    pre.on_message(at(601), message(2, 1, 0, append((0, 0), Vec::new(), 0)));
    assert!(!pre.is_pre_candidate());
    assert_eq!(pre.status().leader, Some(NodeId(2)));
}

#[test]
fn r10_a_leader_does_not_count_its_unsynced_write_toward_commit() {
    // `leader_commit` counts the leader at its durable index, not its last: a follower's
    // acknowledgement alone is one of three, so the commit the leader announces stays 0.
    let mut leader = candidate(1, 3, 0, Vec::new());
    leader.on_message(
        at(601),
        message(2, 1, 1, vote_reply(VoteReason::Granted, None, false)),
    );
    let _ = leader.take_outputs();
    leader.on_message(at(602), message(2, 1, 1, accepted(1)));
    leader.tick(at(700));
    let commits: Vec<LogIndex> = leader
        .take_outputs()
        .iter()
        .filter_map(|o| match o {
            Output::Send(Message {
                body: MessageBody::Append(a),
                ..
            }) => Some(a.leader_commit),
            _ => None,
        })
        .collect();
    assert!(!commits.is_empty());
    assert!(commits.iter().all(|c| *c == LogIndex(0)), "{commits:?}");
}

/// Every mark hit in the engine is checked by exactly one test, and `docs/protocol.md` names it
/// (rule → branch → test, checkable).
#[test]
fn every_mark_is_checked_once_and_documented() {
    let sources = [
        include_str!("node/election.rs"),
        include_str!("node/replication.rs"),
        include_str!("node/snapshot.rs"),
        include_str!("node/log_read.rs"),
        include_str!("node/read.rs"),
        include_str!("node/members.rs"),
        include_str!("node/transfer.rs"),
        include_str!("node/vote_fence.rs"),
        include_str!("node/repair.rs"),
        include_str!("node/fetch.rs"),
        include_str!("node.rs"),
        include_str!("progress.rs"),
    ];
    let tests = [
        include_str!("rule_tests.rs"),
        include_str!("snapshot_tests.rs"),
        include_str!("log_read_tests.rs"),
        include_str!("read_tests.rs"),
        include_str!("membership_tests.rs"),
        include_str!("fault_tests.rs"),
        include_str!("repair_tests.rs"),
    ]
    .concat();
    let docs = include_str!("../../docs/protocol.md");
    let names = |text: &str, macro_name: &str| -> Vec<String> {
        let pattern = format!("{macro_name}!(");
        text.match_indices(&pattern)
            .map(|(at, _)| {
                let rest = &text[at + pattern.len()..];
                rest[..rest.find(')').unwrap()].to_string()
            })
            .filter(|name| !name.is_empty() && name != "name")
            .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .collect()
    };
    let mut hits: Vec<String> = sources.iter().flat_map(|s| names(s, "hit")).collect();
    hits.sort();
    hits.dedup();
    assert!(hits.len() >= 40, "found {} marks", hits.len());
    let checks = names(&tests, "check");
    for hit in &hits {
        let count = checks.iter().filter(|c| *c == hit).count();
        assert_eq!(count, 1, "mark `{hit}` is checked by {count} tests");
        assert!(
            docs.contains(hit.as_str()),
            "docs/protocol.md does not name mark `{hit}`"
        );
    }
    for check in &checks {
        assert!(
            hits.contains(check),
            "`check!({check})` names no mark in the engine"
        );
    }
}
