//! One test per membership and transfer rule (M1–M11, T1–T5), each checking the coverage marks
//! at the branches that implement it, and scenario S11 (the 2015 single-server-change bug) with
//! and without rule M3. `docs/protocol.md` lists rule → mark → test.

use std::time::Duration;

use bytes::Bytes;

use crate::marks::check;
use crate::testkit::{Cluster, is_append};
use crate::*;

const MS: Duration = Duration::from_millis(1);

fn ids(list: &[u64]) -> Vec<NodeId> {
    list.iter().copied().map(NodeId).collect()
}

fn voters(list: &[u64]) -> Configuration {
    Configuration::new(&ids(list), &[]).unwrap()
}

fn with_learners(list: &[u64], learners: &[u64]) -> Configuration {
    Configuration::new(&ids(list), &ids(learners)).unwrap()
}

fn touches(message: &Message, id: u64) -> bool {
    message.from == NodeId(id) || message.to == NodeId(id)
}

/// A three-server cluster with a leader that has committed its no-op everywhere.
fn settled(size: u64) -> (Cluster, NodeId) {
    let mut cluster = Cluster::new(size, 12);
    let leader = cluster.elect(Duration::from_secs(5)).expect("a leader");
    cluster.advance(60 * MS);
    cluster.deliver_all();
    assert!(cluster.node(leader.0).status().commit_index >= LogIndex(1));
    (cluster, leader)
}

/// Lets heartbeats and replies flow for `millis`.
fn run(cluster: &mut Cluster, millis: u64) {
    for _ in 0..millis / 10 {
        cluster.advance(10 * MS);
        cluster.deliver_all();
    }
}

fn config_changes(
    cluster: &Cluster,
    id: NodeId,
) -> Vec<(ConfigChange, Result<Proposal, ConfigChangeError>)> {
    cluster.outputs[&id]
        .iter()
        .filter_map(|output| match output {
            Output::ConfigChange { change, result } => Some((*change, *result)),
            _ => None,
        })
        .collect()
}

#[test]
fn m1_m7_a_learner_receives_the_log_and_never_counts() {
    check!(m1_configuration_in_force_when_appended);
    let (mut cluster, leader) = settled(3);
    cluster.add_server(4);
    assert!(cluster.node(4).configuration().is_empty());
    cluster
        .change(leader, ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    // M1: in force on the leader from the moment it is appended, committed or not.
    let expected = with_learners(&[1, 2, 3], &[4]);
    assert_eq!(cluster.node(leader.0).configuration(), expected);
    assert!(cluster.outputs[&leader].contains(&Output::Membership {
        configuration: expected
    }));
    let [(change, Ok(proposal))] = config_changes(&cluster, leader)[..] else {
        panic!("one reported change")
    };
    assert_eq!(change, ConfigChange::AddLearner(NodeId(4)));
    // M11: the new server accepts the Appends of a leader it did not know.
    run(&mut cluster, 100);
    assert_eq!(cluster.node(4).configuration(), expected);
    assert!(cluster.commit_index(4) >= proposal.index);
    assert!(
        cluster.applied[&NodeId(4)]
            .iter()
            .any(|e| e.kind == EntryKind::Config)
    );
    // M5, M7: with two voters down the leader and the learner are no majority of {1,2,3}.
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|id| *id != leader.0).collect();
    for id in &others {
        cluster.crash(*id);
    }
    let stuck = cluster.propose(leader, "stuck").unwrap();
    run(&mut cluster, 200);
    assert!(cluster.commit_index(leader.0) < stuck.index);
    assert!(cluster.commit_index(4) < stuck.index);
}

#[test]
fn m7_a_learner_answers_not_voter_to_a_candidate_with_its_own_log() {
    check!(m7_learner_answers_not_voter);
    let (mut cluster, leader) = settled(3);
    cluster.add_server(4);
    cluster
        .change(leader, ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    run(&mut cluster, 100);
    let learner_last = cluster.node(4).last_position();
    let term = cluster.node(4).status().term;
    let request = |last: LogPosition| Message {
        from: NodeId(9),
        to: NodeId(4),
        term: term.next(),
        incarnation: Incarnation(1),
        body: MessageBody::VoteRequest(VoteRequest {
            last_index: last.index,
            last_term: last.term,
            pre_vote: false,
            transfer: false,
        }),
    };
    let now = cluster.now + Duration::from_secs(1);
    let node = cluster.nodes.get_mut(&NodeId(4)).unwrap();
    node.on_message(now, request(learner_last));
    let replies = crate::testkit::vote_reasons(node.take_outputs());
    assert_eq!(replies, [VoteReason::NotVoter]);
    // A candidate with a longer log may hold our promotion: E4 answers it as usual.
    let longer = LogPosition {
        index: learner_last.index.next(),
        term: term.next(),
    };
    node.on_message(now, request(longer));
    let granted = node.take_outputs().into_iter().any(|output| match output {
        Output::Send(Message {
            body: MessageBody::VoteReply(reply),
            ..
        }) => reply.granted(),
        _ => false,
    });
    assert!(granted);
}

#[test]
fn m6_learners_and_servers_without_configuration_never_stand() {
    check!(m6_non_voter_never_stands);
    let mut cluster = Cluster::new(3, 5);
    cluster.add_server(4);
    // A server added later has no configuration: however long it waits, it never stands.
    for _ in 0..50 {
        cluster.timeout(4);
        assert!(cluster.in_flight.iter().all(|m| m.from != NodeId(4)));
        assert_eq!(cluster.node(4).status().term, Term(0));
    }
}

#[test]
fn m6_a_server_whose_removal_is_not_committed_may_still_stand() {
    check!(m6_removed_server_stands_until_its_removal_commits);
    let (mut cluster, leader) = settled(3);
    cluster
        .change(leader, ConfigChange::Remove(leader))
        .unwrap();
    // The removal reaches nobody; the leader restarts with it uncommitted in its log.
    cluster.drop_all();
    cluster.crash(leader.0);
    cluster.start(leader);
    assert!(!cluster.node(leader.0).configuration().is_voter(leader));
    cluster.advance(Duration::from_secs(1));
    cluster.timeout(leader.0);
    let asked = cluster
        .count_in_flight(|m| m.from == leader && matches!(m.body, MessageBody::VoteRequest(_)));
    assert!(
        asked >= 2,
        "it asks the voters of its configuration: {asked}"
    );
}

#[test]
fn m6_deferral_only_to_voters() {
    check!(m6_non_voter_candidate_not_deferred_to);
    let mut config = Config::lan(NodeId(1), ids(&[1, 2, 3]), 42);
    config.pre_vote = false;
    let mut node = Node::new(config, Persisted::default(), Instant(0)).unwrap();
    node.tick(Instant::from_millis(600));
    let _ = node.take_outputs();
    assert_eq!(node.status().role, Role::Candidate);
    let term = node.status().term;
    // Node 9, unknown to our configuration, asks with a higher rank: we do not defer to it.
    node.on_message(
        Instant::from_millis(601),
        Message {
            from: NodeId(9),
            to: NodeId(1),
            term,
            incarnation: Incarnation(1),
            body: MessageBody::VoteRequest(VoteRequest {
                last_index: LogIndex(5),
                last_term: Term(1),
                pre_vote: false,
                transfer: false,
            }),
        },
    );
    let _ = node.take_outputs();
    assert_eq!(node.status().role, Role::Candidate);
}

#[test]
fn m2_m3_one_change_at_a_time_after_a_commit_of_the_term() {
    check!(m3_change_waits_for_a_commit_of_the_term);
    check!(m2_one_change_at_a_time);
    let mut cluster = Cluster::new(3, 12);
    cluster.auto_sync = false;
    let leader = cluster.elect(Duration::from_secs(5)).expect("a leader");
    // The new leader's no-op is not durable anywhere, so not committed.
    assert_eq!(
        cluster.change(leader, ConfigChange::AddLearner(NodeId(4))),
        Err(ConfigChangeError::LeaderNotReady)
    );
    cluster.auto_sync = true;
    for id in 1..=3 {
        cluster.sync(id);
    }
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    cluster
        .change(leader, ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    assert_eq!(
        cluster.change(leader, ConfigChange::AddLearner(NodeId(5))),
        Err(ConfigChangeError::ChangeInProgress)
    );
    // M4: a change that is no single step is refused whatever the state.
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    assert_eq!(
        cluster.change(leader, ConfigChange::Promote(NodeId(2))),
        Err(ConfigChangeError::NotLearner(NodeId(2)))
    );
    let follower = NodeId(if leader.0 == 1 { 2 } else { 1 });
    assert!(matches!(
        cluster.change(follower, ConfigChange::Remove(NodeId(3))),
        Err(ConfigChangeError::NotLeader { .. })
    ));
}

#[test]
fn m10_changes_need_pre_vote_or_check_quorum() {
    check!(m10_change_refused_without_protection);
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = Config::lan(id, members, 3);
        config.pre_vote = false;
        config.check_quorum = false;
        config
    });
    let leader = cluster.elect(Duration::from_secs(5)).expect("a leader");
    run(&mut cluster, 100);
    assert_eq!(
        cluster.change(leader, ConfigChange::Remove(NodeId(leader.0 % 3 + 1))),
        Err(ConfigChangeError::Unprotected)
    );
}

#[test]
fn m8_a_caught_up_learner_is_promoted_and_counts() {
    check!(m8_promotion_starts_catch_up);
    check!(m8_learner_promoted_after_a_short_round);
    let (mut cluster, leader) = settled(3);
    cluster.add_server(4);
    cluster
        .change(leader, ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    run(&mut cluster, 100);
    cluster
        .change(leader, ConfigChange::Promote(NodeId(4)))
        .unwrap();
    run(&mut cluster, 100);
    let four = voters(&[1, 2, 3, 4]);
    assert_eq!(cluster.node(leader.0).configuration(), four);
    assert_eq!(cluster.node(4).configuration(), four);
    let promoted = config_changes(&cluster, leader);
    assert!(matches!(
        promoted.last(),
        Some((ConfigChange::Promote(NodeId(4)), Ok(_)))
    ));
    // Now a voter, it counts: with one of the old voters down, 3 of 4 still commit.
    let other = (1..=3).find(|id| *id != leader.0).unwrap();
    cluster.crash(other);
    let proposal = cluster.propose(leader, "counted").unwrap();
    run(&mut cluster, 50);
    assert!(cluster.commit_index(leader.0) >= proposal.index);
}

#[test]
fn m8_a_learner_that_cannot_catch_up_is_not_promoted() {
    check!(m8_catch_up_fails_after_slow_rounds);
    let (mut cluster, leader) = settled(3);
    cluster.add_server(4);
    cluster
        .change(leader, ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    run(&mut cluster, 100);
    cluster.crash(4);
    for _ in 0..5 {
        cluster.propose(leader, "more").unwrap();
    }
    cluster
        .change(leader, ConfigChange::Promote(NodeId(4)))
        .unwrap();
    // Ten rounds, each longer than P_min: the change fails and the learner stays.
    run(&mut cluster, 10 * 300 + 100);
    assert_eq!(
        config_changes(&cluster, leader).last(),
        Some(&(
            ConfigChange::Promote(NodeId(4)),
            Err(ConfigChangeError::CatchUpFailed(NodeId(4)))
        ))
    );
    assert_eq!(
        cluster.node(leader.0).configuration(),
        with_learners(&[1, 2, 3], &[4])
    );
    assert_eq!(cluster.node(leader.0).status().role, Role::Leader);
}

#[test]
fn m9_a_removed_leader_commits_without_itself_then_hands_over() {
    check!(m9_removed_leader_steps_down_after_commit);
    let (mut cluster, leader) = settled(3);
    cluster
        .change(leader, ConfigChange::Remove(leader))
        .unwrap();
    let rest: Vec<u64> = (1..=3).filter(|id| *id != leader.0).collect();
    assert_eq!(cluster.node(leader.0).configuration(), voters(&rest));
    cluster.deliver_all();
    // It stepped down once the entry committed (on the two others, without counting itself),
    // and sent TimeoutNow to an up-to-date voter, which won at once.
    assert_ne!(cluster.node(leader.0).status().role, Role::Leader);
    let new_leader = cluster.leader().expect("the TimeoutNow target leads");
    assert!(rest.contains(&new_leader.0));
    // The removed server never stands again, and refuses proposals.
    for _ in 0..20 {
        cluster.timeout(leader.0);
        assert!(
            cluster
                .in_flight
                .iter()
                .all(|m| m.from != leader || !matches!(m.body, MessageBody::VoteRequest(_)))
        );
        cluster.deliver_all();
    }
    assert!(matches!(
        cluster.propose(leader, "refused"),
        Err(ProposeError::NotLeader { .. })
    ));
    let proposal = cluster.propose(new_leader, "after").unwrap();
    run(&mut cluster, 50);
    assert!(cluster.commit_index(new_leader.0) >= proposal.index);
}

/// An Append from leader `from` of `term` with entries `(index, term, kind)` after `prev`.
fn append_message(from: u64, term: u64, prev: (u64, u64), entries: Vec<Entry>) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(2),
        term: Term(term),
        incarnation: Incarnation(1),
        body: MessageBody::Append(Append {
            prev_index: LogIndex(prev.0),
            prev_term: Term(prev.1),
            entries,
            leader_commit: LogIndex(0),
            round: 0,
        }),
    }
}

#[test]
fn m1_a_truncated_configuration_reverts_to_the_previous_one() {
    check!(m1_truncated_configuration_reverts);
    let config = Config::lan(NodeId(2), ids(&[1, 2, 3]), 1);
    let mut node = Node::new(config, Persisted::default(), Instant(0)).unwrap();
    let grown = with_learners(&[1, 2, 3], &[4]);
    let config_entry = Entry {
        index: LogIndex(1),
        term: Term(1),
        kind: EntryKind::Config,
        payload: grown.encode(),
    };
    node.on_message(Instant(1), append_message(1, 1, (0, 0), vec![config_entry]));
    assert_eq!(node.configuration(), grown);
    let other = Entry {
        index: LogIndex(1),
        term: Term(2),
        kind: EntryKind::Noop,
        payload: Bytes::new(),
    };
    node.on_message(Instant(2), append_message(3, 2, (0, 0), vec![other]));
    assert_eq!(node.configuration(), voters(&[1, 2, 3]));
    let outputs = node.take_outputs();
    assert!(outputs.contains(&Output::Membership {
        configuration: voters(&[1, 2, 3])
    }));
    // A restart finds the configuration in the log again (M1 at start): from the tail when it
    // holds the entry, and from the recovery scan's `configs` when it does not (rule S9).
    let config_entry = Entry {
        index: LogIndex(1),
        term: Term(1),
        kind: EntryKind::Config,
        payload: grown.encode(),
    };
    let persisted = Persisted {
        log: PersistedLog::from_entries(vec![config_entry.clone()]),
        ..Persisted::default()
    };
    let restarted =
        Node::new(Config::lan(NodeId(2), Vec::new(), 1), persisted, Instant(0)).unwrap();
    assert_eq!(restarted.configuration(), grown);
    let mut scanned = PersistedLog::from_entries(vec![config_entry]);
    scanned.tail.clear();
    let persisted = Persisted {
        log: scanned,
        ..Persisted::default()
    };
    let restarted =
        Node::new(Config::lan(NodeId(2), Vec::new(), 1), persisted, Instant(0)).unwrap();
    assert_eq!(restarted.configuration(), grown);
}

#[test]
fn m1_a_new_member_takes_its_configuration_from_an_installed_snapshot() {
    check!(m1_installed_snapshot_sets_configuration);
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = Config::lan(id, members, 42);
        config.snapshot_interval_entries = Some(4);
        config.retain_entries = 1;
        config.snapshot_chunk_bytes = 64;
        config
    });
    let leader = cluster.elect(Duration::from_secs(5)).expect("a leader");
    run(&mut cluster, 100);
    for _ in 0..10 {
        cluster.propose(leader, "entry").unwrap();
        run(&mut cluster, 20);
    }
    assert!(cluster.node(leader.0).status().first_index > LogIndex(1));
    cluster.add_server(4);
    cluster
        .change(leader, ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    run(&mut cluster, 300);
    // S1: the snapshot carried the configuration at its last index.
    let snapshot = cluster.snapshot_on_disk(4).expect("an installed snapshot");
    assert!(snapshot.configuration.is_voter(leader));
    assert_eq!(
        cluster.node(4).configuration(),
        with_learners(&[1, 2, 3], &[4])
    );
    assert_eq!(
        cluster.applied_payloads(4).len(),
        cluster.applied_payloads(leader.0).len()
    );
}

/// S11: `{S1..S4}` hold `1:1`; S1 (term 1) holds `C_a = +S5` at 2, given to S5 only; S1 is down.
/// S2 wins term 2 with S2, S3, S4 and, if `bug`, appends `C_b = −S1` before committing its
/// no-op. Returns the cluster with S2 leading term 2.
fn s11_setup(bug: bool) -> Cluster {
    let mut cluster = Cluster::with_config(5, |id, _| {
        let mut config = Config::lan(id, ids(&[1, 2, 3, 4]), 11);
        config.pre_vote = false;
        if id == NodeId(5) {
            config.members.clear();
        }
        config
    });
    for id in 1..=5 {
        cluster.crash(id);
    }
    let noop = Entry {
        index: LogIndex(1),
        term: Term(1),
        kind: EntryKind::Noop,
        payload: Bytes::new(),
    };
    let c_a = Entry {
        index: LogIndex(2),
        term: Term(1),
        kind: EntryKind::Config,
        payload: voters(&[1, 2, 3, 4, 5]).encode(),
    };
    for id in 1..=5 {
        let disk = cluster.disks.get_mut(&NodeId(id)).unwrap();
        disk.hard_state = HardState {
            current_term: Term(1),
            voted_for: Some(NodeId(1)),
        };
        disk.log = if id == 1 || id == 5 {
            vec![noop.clone(), c_a.clone()]
        } else {
            vec![noop.clone()]
        };
        disk.synced = disk.log.len();
    }
    for id in 2..=5 {
        cluster.start(NodeId(id));
        if bug {
            cluster
                .nodes
                .get_mut(&NodeId(id))
                .unwrap()
                .inject_bug(InjectedBug::ConfigChangeBeforeTermCommit);
        }
    }
    // S2 stands; S3 and S4 vote; its first Appends are lost.
    cluster.timeout(2);
    cluster.deliver_where(|m| !touches(m, 1) && !touches(m, 5) && !is_append(m));
    assert_eq!(cluster.node(2).status().role, Role::Leader);
    assert_eq!(cluster.node(2).status().term, Term(2));
    cluster
}

/// S1 returns and stands against S4 and S5 (S2 and S3 cut off); returns whether it won.
fn s11_s1_returns(cluster: &mut Cluster, bug: bool) -> bool {
    cluster.start(NodeId(1));
    if bug {
        cluster
            .nodes
            .get_mut(&NodeId(1))
            .unwrap()
            .inject_bug(InjectedBug::ConfigChangeBeforeTermCommit);
    }
    let cut = |m: &Message| !touches(m, 2) && !touches(m, 3);
    for _ in 0..6 {
        cluster.advance(700 * MS);
        cluster.timeout(1);
        cluster.deliver_where(cut);
        if cluster.node(1).status().role == Role::Leader {
            run_where(cluster, cut);
            return true;
        }
    }
    false
}

fn run_where(cluster: &mut Cluster, keep: impl Fn(&Message) -> bool + Copy) {
    for _ in 0..10 {
        cluster.advance(10 * MS);
        cluster.deliver_where(keep);
    }
}

#[test]
fn s11_the_2015_bug_loses_a_committed_configuration_without_m3() {
    let mut cluster = s11_setup(true);
    // M3 off: S2 appends C_b = {2,3,4} at once and commits it with S3 (a majority of C_b).
    cluster
        .change(NodeId(2), ConfigChange::Remove(NodeId(1)))
        .unwrap();
    run_where(&mut cluster, |m| touches(m, 2) && touches(m, 3));
    assert!(cluster.commit_index(2) >= LogIndex(3));
    let committed = cluster.node(2).entry(LogIndex(3)).unwrap().clone();
    assert_eq!(committed.kind, EntryKind::Config);
    // S1 wins term 3 with S4 and S5 (a majority of C_a) and overwrites it: durability broken.
    // S2 either asserts its own invariant (its commit index above what its log holds) or, if
    // it survives, holds another entry at the committed index.
    assert!(s11_s1_returns(&mut cluster, true));
    let healed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run(&mut cluster, 200);
        cluster.node(2).entry(LogIndex(3)).map(|e| e.term)
    }));
    match healed {
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_default();
            assert!(message.contains("invariant"), "{message}");
        }
        Ok(term) => assert_ne!(term, Some(committed.term), "the committed C_b was lost"),
    }
}

#[test]
fn s11_with_m3_the_new_leader_commits_first_and_s1_cannot_win() {
    let mut cluster = s11_setup(false);
    assert_eq!(
        cluster.change(NodeId(2), ConfigChange::Remove(NodeId(1))),
        Err(ConfigChangeError::LeaderNotReady)
    );
    // The no-op commits on S2, S3, S4 (three of C = {1,2,3,4}); then C_b, on S2 and S3.
    run_where(&mut cluster, |m| !touches(m, 1) && !touches(m, 5));
    cluster
        .change(NodeId(2), ConfigChange::Remove(NodeId(1)))
        .unwrap();
    run_where(&mut cluster, |m| touches(m, 2) && touches(m, 3));
    let committed_at = cluster.commit_index(2);
    assert!(committed_at >= LogIndex(3));
    // S4 holds the term-2 no-op and refuses S1 (LogNotComplete): S1 never wins.
    assert!(!s11_s1_returns(&mut cluster, false));
    run(&mut cluster, 200);
    assert_eq!(cluster.node(2).configuration(), voters(&[2, 3, 4]));
}

#[test]
fn t1_t2_t4_a_transfer_freezes_proposals_and_elects_the_target() {
    check!(t1_transfer_started);
    check!(t2_proposal_refused_while_transferring);
    check!(t2_change_refused_while_transferring);
    check!(t3_transfer_waits_for_catch_up);
    check!(t4_timeout_now_sent);
    check!(t4_timeout_now_starts_candidacy);
    check!(t4_transfer_vote_skips_stickiness);
    let (mut cluster, leader) = settled(3);
    let target = NodeId(leader.0 % 3 + 1);
    let other = NodeId(target.0 % 3 + 1);
    // The target lags: it misses a proposal.
    cluster.propose(leader, "missed").unwrap();
    cluster.deliver_where(|m| !touches(m, target.0));
    assert_eq!(cluster.transfer(leader, Some(target)), Ok(target));
    assert_eq!(cluster.node(leader.0).transfer_target(), Some(target));
    assert_eq!(
        cluster.propose(leader, "frozen"),
        Err(ProposeError::Transferring { target })
    );
    assert_eq!(
        cluster.change(leader, ConfigChange::AddLearner(NodeId(9))),
        Err(ConfigChangeError::Transferring { target })
    );
    let term = cluster.node(leader.0).status().term;
    // Catch-up, TimeoutNow, and the target wins term + 1 although `other` heard the leader.
    run(&mut cluster, 250);
    assert_eq!(cluster.leader(), Some(target));
    assert_eq!(cluster.node(target.0).status().term, term.next());
    assert_ne!(cluster.node(other.0).status().role, Role::Leader);
    assert_eq!(
        cluster.applied_payloads(target.0),
        cluster.applied_payloads(leader.0)
    );
}

#[test]
fn t1_t5_a_transfer_to_a_dead_target_aborts_after_p_min() {
    check!(t1_transfer_refused_not_leader);
    check!(t5_transfer_aborted_after_p_min);
    let (mut cluster, leader) = settled(3);
    let target = NodeId(leader.0 % 3 + 1);
    assert!(matches!(
        cluster.transfer(target, None),
        Err(TransferError::NotLeader { .. })
    ));
    assert_eq!(
        cluster.transfer(leader, Some(leader)),
        Err(TransferError::ToSelf)
    );
    cluster.crash(target.0);
    cluster.propose(leader, "missed").unwrap();
    cluster.transfer(leader, Some(target)).unwrap();
    assert!(cluster.propose(leader, "frozen").is_err());
    run(&mut cluster, 310);
    assert_eq!(cluster.node(leader.0).transfer_target(), None);
    assert_eq!(cluster.node(leader.0).status().role, Role::Leader);
    assert!(cluster.propose(leader, "accepted again").is_ok());
}

#[test]
fn t4_timeout_now_counts_only_from_the_leader_in_its_term() {
    check!(t4_timeout_now_ignored);
    let (mut cluster, leader) = settled(3);
    let follower = NodeId(leader.0 % 3 + 1);
    let other = NodeId(follower.0 % 3 + 1);
    let term = cluster.node(follower.0).status().term;
    let now = cluster.now;
    let node = cluster.nodes.get_mut(&follower).unwrap();
    // From a server that is not its leader: ignored.
    node.on_message(
        now,
        Message {
            from: other,
            to: follower,
            term,
            incarnation: Incarnation(1),
            body: MessageBody::TimeoutNow,
        },
    );
    assert_eq!(node.status().role, Role::Passive);
    assert_eq!(node.status().term, term);
}

/// Issue 12: the driver's annex rides on every `Config` entry the leader appends, reaches the
/// followers with it, is ignored by the configuration, and a replay of the recorded leader
/// reproduces it (trace record `config_annex`).
#[test]
fn m1_a_config_entry_carries_the_drivers_annex_to_every_member() {
    let mut cluster = Cluster::new_recorded(3, 12);
    let leader = cluster.elect(Duration::from_secs(5)).expect("a leader");
    run(&mut cluster, 60);
    cluster.add_server(4);
    cluster
        .node_mut(leader.0)
        .set_config_annex(Bytes::from_static(b"book"));
    cluster
        .change(leader, ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    run(&mut cluster, 200);
    let [(_, Ok(proposal))] = config_changes(&cluster, leader)[..] else {
        panic!("one reported change")
    };
    for id in 1..=4 {
        let entry = cluster.node(id).entry(proposal.index).expect("replicated");
        let (configuration, annex) = Configuration::decode_with_annex(&entry.payload).unwrap();
        assert_eq!(configuration, with_learners(&[1, 2, 3], &[4]), "node {id}");
        assert_eq!(annex, b"book", "node {id}");
        assert_eq!(cluster.node(id).configuration(), configuration, "node {id}");
    }
    let trace = cluster.node(leader.0).trace().unwrap();
    let replayed = crate::replay::replay(trace).unwrap();
    assert_eq!(
        replayed
            .node
            .entry(proposal.index)
            .map(|e| e.payload.clone()),
        cluster
            .node(leader.0)
            .entry(proposal.index)
            .map(|e| e.payload.clone())
    );
}
