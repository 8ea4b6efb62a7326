//! One test per read rule (Q1, Q2, Q3, Q3a) and its negative cases, each checking the coverage
//! marks at the branches that implement it, as `rule_tests.rs` does for E0–E8 and R1–R11;
//! `docs/protocol.md` lists rule → function → test. Every test drives a
//! [`crate::testkit::Cluster`] by hand.

use std::time::Duration;

use crate::marks::check;
use crate::testkit::{Cluster, is_append};
use crate::*;

const MS: Duration = Duration::from_millis(1);

/// A three-server cluster with an elected leader whose no-op is committed everywhere.
fn settled(cluster: &mut Cluster) -> u64 {
    let leader = cluster.elect(2_000 * MS).expect("a leader").0;
    cluster.deliver_all();
    leader
}

fn other_than(leader: u64, size: u64) -> Vec<u64> {
    (1..=size).filter(|id| *id != leader).collect()
}

/// The rounds carried by the Appends in flight.
fn rounds_in_flight(cluster: &Cluster) -> Vec<u64> {
    cluster
        .in_flight
        .iter()
        .filter_map(|message| match &message.body {
            MessageBody::Append(append) => Some(append.round),
            _ => None,
        })
        .collect()
}

fn with_lease(size: u64) -> Cluster {
    Cluster::with_config(size, |id, members| {
        let mut config = Config::lan(id, members, 5);
        config.read_lease = Some(ReadLease { drift_ppm: 20_000 });
        config
    })
}

#[test]
fn q1_a_read_is_served_after_a_majority_confirms_a_later_round_and_its_index_is_applied() {
    check!(q1_round_started);
    check!(q1_round_confirmed_by_majority);
    check!(q1_read_served_once_applied);
    let mut cluster = Cluster::new(3, 7);
    let leader = settled(&mut cluster);
    cluster.propose(NodeId(leader), "w").unwrap();
    cluster.deliver_all();
    let commit = cluster.commit_index(leader);
    cluster.read(leader, 1, ReadMode::Linearizable);
    // Negative: nothing is served before a majority answered the round started after the read.
    assert_eq!(cluster.read_outcome(leader, 1), None);
    assert_eq!(rounds_in_flight(&cluster), vec![1, 1]);
    cluster.drop_all();
    assert_eq!(cluster.read_outcome(leader, 1), None);
    // The next heartbeat carries the round again; one reply makes a majority of three.
    cluster.advance(50 * MS);
    let follower = other_than(leader, 3)[0];
    cluster.deliver_where(|m| m.to.0 == follower || m.from.0 == follower);
    let outcome = cluster.read_outcome(leader, 1).expect("served");
    assert_eq!(outcome.result, Ok(commit));
    assert!(outcome.applied >= commit);
}

#[test]
fn q1_a_new_leader_reads_only_after_an_entry_of_its_term_commits() {
    check!(q1_read_waits_for_term_commit);
    check!(q1_read_indexed_once_term_commits);
    let mut cluster = Cluster::new(3, 7);
    cluster.timeout(1);
    // Votes flow, the new leader's Appends (its no-op) are lost.
    cluster.deliver_where(|m| !is_append(m));
    assert_eq!(cluster.leader(), Some(NodeId(1)));
    cluster.read(1, 1, ReadMode::Linearizable);
    cluster.deliver_all();
    // The no-op is not committed: the read waits.
    assert_eq!(cluster.read_outcome(1, 1), None);
    cluster.advance(50 * MS);
    cluster.deliver_all();
    let noop = cluster.commit_index(1);
    assert!(noop >= LogIndex(1));
    assert_eq!(cluster.read_outcome(1, 1).expect("served").result, Ok(noop));
}

#[test]
fn q1_reads_arriving_while_a_round_is_in_flight_share_the_next_round() {
    check!(q1_read_shares_next_round);
    let mut cluster = Cluster::new(3, 7);
    let leader = settled(&mut cluster);
    cluster.read(leader, 1, ReadMode::Linearizable);
    cluster.read(leader, 2, ReadMode::Linearizable);
    cluster.read(leader, 3, ReadMode::Linearizable);
    // One round in flight (to each follower), none started for reads 2 and 3 yet.
    assert_eq!(rounds_in_flight(&cluster), vec![1, 1]);
    cluster.deliver_all();
    for read in 1..=3 {
        assert!(cluster.read_outcome(leader, read).unwrap().result.is_ok());
    }
    // Three reads, two rounds.
    let rounds: Vec<u64> = cluster.outputs[&NodeId(leader)]
        .iter()
        .filter_map(|output| match output {
            Output::Send(Message {
                body: MessageBody::Append(append),
                ..
            }) => Some(append.round),
            _ => None,
        })
        .collect();
    assert_eq!(rounds.iter().max(), Some(&2));
}

#[test]
fn q1_a_deposed_leader_never_serves_and_fails_its_reads_when_it_steps_down() {
    check!(q1_reads_fail_when_leadership_ends);
    // Scenario S16: five servers, {1, 2} cut from {3, 4, 5}.
    let mut cluster = Cluster::new(5, 3);
    cluster.timeout(1);
    cluster.deliver_all();
    assert_eq!(cluster.leader(), Some(NodeId(1)));
    let side = |id: NodeId| id.0 <= 2;
    let same_side = move |m: &Message| side(m.from) == side(m.to);
    cluster.read(1, 1, ReadMode::Linearizable);
    cluster.deliver_where(same_side);
    // Two replies of five (itself included): no majority, no read.
    assert_eq!(cluster.read_outcome(1, 1), None);
    // The majority side elects a leader and commits a write.
    let mut new_leader = None;
    for _ in 0..200 {
        cluster.advance(10 * MS);
        cluster.deliver_where(same_side);
        new_leader = (3..=5).find(|id| cluster.node(*id).status().role == Role::Leader);
        if new_leader.is_some() {
            break;
        }
    }
    let new_leader = new_leader.expect("the majority side elects");
    let w = cluster.propose(NodeId(new_leader), "w").unwrap();
    cluster.deliver_where(same_side);
    assert!(cluster.commit_index(new_leader) >= w.index);
    assert_eq!(cluster.read_outcome(1, 1), None);
    // A follower read on the majority side sees the write (Q2).
    cluster.read(4, 2, ReadMode::Linearizable);
    cluster.deliver_where(same_side);
    let follower_read = cluster.read_outcome(4, 2).expect("served");
    assert!(follower_read.result.unwrap() >= w.index);
    // Node 1 steps down by check-quorum (E5): its read fails, never served.
    for _ in 0..100 {
        cluster.advance(10 * MS);
        cluster.deliver_where(same_side);
    }
    assert_ne!(cluster.node(1).status().role, Role::Leader);
    assert!(matches!(
        cluster.read_outcome(1, 1).unwrap().result,
        Err(ReadError::NotLeader { .. })
    ));
}

#[test]
fn q2_a_follower_read_takes_the_leaders_index_and_waits_for_its_own_apply() {
    check!(q2_follower_asks_leader_for_read_index);
    check!(q2_leader_answers_read_index);
    check!(q2_follower_waits_for_its_apply);
    let mut cluster = Cluster::new(3, 7);
    let leader = settled(&mut cluster);
    let behind = other_than(leader, 3)[1];
    let w = cluster.propose(NodeId(leader), "w").unwrap();
    let cut = move |m: &Message| !(is_append(m) && m.to.0 == behind);
    cluster.deliver_where(cut);
    cluster.read(behind, 1, ReadMode::Linearizable);
    cluster.deliver_where(cut);
    // The leader answered with an index that covers `w`; the follower has not applied it.
    assert!(cluster.node(behind).status().applied_index < w.index);
    assert_eq!(cluster.read_outcome(behind, 1), None);
    // The leader resends `w` once it sees the follower stalled.
    for _ in 0..10 {
        cluster.advance(50 * MS);
        cluster.deliver_all();
    }
    let outcome = cluster.read_outcome(behind, 1).expect("served");
    assert!(outcome.result.unwrap() >= w.index);
    assert!(outcome.applied >= w.index);
}

#[test]
fn q2_without_a_leader_a_read_fails_with_not_leader() {
    check!(q1_read_refused_no_leader);
    check!(q2_read_index_refused_not_leader);
    let mut cluster = Cluster::new(3, 7);
    cluster.read(2, 1, ReadMode::Linearizable);
    assert_eq!(
        cluster.read_outcome(2, 1).unwrap().result,
        Err(ReadError::NotLeader { leader_hint: None })
    );
    // A read-index request to a server that does not lead is refused.
    let request = Message {
        from: NodeId(1),
        to: NodeId(3),
        term: Term(0),
        incarnation: Incarnation(1),
        body: MessageBody::ReadIndexRequest(ReadIndexRequest { read_id: 9 }),
    };
    cluster.in_flight.push(request);
    cluster.deliver_at(0);
    assert!(cluster.in_flight.iter().any(|m| matches!(
        m.body,
        MessageBody::ReadIndexReply(ReadIndexReply {
            read_id: 9,
            result: ReadIndexResult::NotLeader
        })
    )));
}

#[test]
fn q2_an_unanswered_follower_read_times_out() {
    check!(q2_unanswered_read_times_out);
    let mut cluster = Cluster::new(3, 7);
    let leader = settled(&mut cluster);
    let follower = other_than(leader, 3)[0];
    cluster.read(follower, 1, ReadMode::Linearizable);
    let lost = |m: &Message| !matches!(m.body, MessageBody::ReadIndexRequest(_));
    cluster.deliver_where(lost);
    assert_eq!(cluster.read_outcome(follower, 1), None);
    for _ in 0..31 {
        cluster.advance(10 * MS);
        cluster.deliver_where(lost);
    }
    assert_eq!(
        cluster.read_outcome(follower, 1).unwrap().result,
        Err(ReadError::TimedOut)
    );
}

#[test]
fn q3_a_leader_holding_its_lease_serves_without_a_round_and_not_after_it() {
    check!(q3_lease_read_without_round);
    let mut cluster = with_lease(3);
    let leader = settled(&mut cluster);
    cluster.advance(50 * MS);
    cluster.deliver_all();
    assert!(cluster.node(leader).holds_read_lease(cluster.now));
    cluster.read(leader, 1, ReadMode::Lease);
    // Served at once: no message needed.
    assert!(cluster.in_flight.is_empty());
    assert!(cluster.read_outcome(leader, 1).unwrap().result.is_ok());
    // Negative: a linearizable read still takes a round.
    cluster.read(leader, 2, ReadMode::Linearizable);
    assert_eq!(cluster.read_outcome(leader, 2), None);
    cluster.deliver_all();
    // Negative: once no round is confirmed for L, the lease is gone and a lease read waits.
    for _ in 0..29 {
        cluster.advance(10 * MS);
        cluster.drop_all();
    }
    assert!(!cluster.node(leader).holds_read_lease(cluster.now));
    cluster.read(leader, 3, ReadMode::Lease);
    assert_eq!(cluster.read_outcome(leader, 3), None);
    // The round in flight was lost: the next heartbeat starts the read's round.
    cluster.advance(50 * MS);
    cluster.deliver_all();
    assert!(cluster.read_outcome(leader, 3).unwrap().result.is_ok());
    // Negative (T6's hook): after TimeoutNow the lease is void for the rest of the term.
    cluster
        .nodes
        .get_mut(&NodeId(leader))
        .unwrap()
        .void_lease_for_transfer();
    cluster.advance(50 * MS);
    cluster.deliver_all();
    assert!(!cluster.node(leader).holds_read_lease(cluster.now));
}

#[test]
fn q3a_with_leases_on_a_started_server_refuses_votes_for_the_shortest_passive_timeout() {
    check!(q3a_votes_refused_after_start);
    let ids = vec![NodeId(1), NodeId(2), NodeId(3)];
    let mut config = Config::lan(NodeId(1), ids.clone(), 5);
    config.read_lease = Some(ReadLease { drift_ppm: 20_000 });
    let persisted = Persisted {
        hard_state: HardState::default(),
        snapshot: None,
        log: crate::types::PersistedLog::default(),
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    let request = Message {
        from: NodeId(2),
        to: NodeId(1),
        term: Term(1),
        incarnation: Incarnation(1),
        body: MessageBody::VoteRequest(VoteRequest {
            last_index: LogIndex(0),
            last_term: Term(0),
            pre_vote: false,
            transfer: false,
        }),
    };
    let reason = |node: &mut Node, at: u64| {
        node.on_message(Instant::from_millis(at), request.clone());
        node.take_outputs()
            .into_iter()
            .find_map(|output| match output {
                Output::Send(Message {
                    body: MessageBody::VoteReply(reply),
                    ..
                }) => Some(reply.reason),
                _ => None,
            })
            .unwrap()
    };
    let mut node = Node::new(config.clone(), persisted.clone(), Instant(0)).unwrap();
    assert_eq!(reason(&mut node, 100), VoteReason::LeaderAlive);
    // After P_min the start no longer counts.
    assert_eq!(reason(&mut node, 300), VoteReason::Granted);
    // Negative: without leases a started server votes at once.
    config.read_lease = None;
    let mut node = Node::new(config, persisted, Instant(0)).unwrap();
    assert_eq!(reason(&mut node, 100), VoteReason::Granted);
}

#[test]
fn t6_a_leader_that_sends_timeout_now_serves_no_lease_read() {
    check!(t6_lease_void_on_timeout_now);
    let mut cluster = with_lease(3);
    let leader = settled(&mut cluster);
    cluster.advance(50 * MS);
    cluster.deliver_all();
    assert!(cluster.node(leader).holds_read_lease(cluster.now));
    let target = other_than(leader, 3)[0];
    // The target holds the whole log: TimeoutNow goes at once (T3, T4), and the lease with it.
    cluster
        .transfer(NodeId(leader), Some(NodeId(target)))
        .unwrap();
    assert!(cluster.in_flight.iter().any(|m| m.from == NodeId(leader)
        && m.to == NodeId(target)
        && m.body == MessageBody::TimeoutNow));
    assert!(!cluster.node(leader).holds_read_lease(cluster.now));
    // Negative: a lease read no longer skips the round.
    cluster.read(leader, 1, ReadMode::Lease);
    assert_eq!(cluster.read_outcome(leader, 1), None);
}

#[test]
fn q3_a_config_entry_voids_the_lease_until_a_later_round_confirms() {
    check!(q3_lease_void_on_config_entry);
    let mut cluster = with_lease(3);
    let leader = settled(&mut cluster);
    cluster.advance(50 * MS);
    cluster.deliver_all();
    assert!(cluster.node(leader).holds_read_lease(cluster.now));
    cluster
        .change(NodeId(leader), ConfigChange::AddLearner(NodeId(4)))
        .unwrap();
    assert!(!cluster.node(leader).holds_read_lease(cluster.now));
    // Negative: a lease read waits for a round now.
    cluster.read(leader, 1, ReadMode::Lease);
    assert_eq!(cluster.read_outcome(leader, 1), None);
    // The round started after the append confirms: the read is served and the lease is back.
    cluster.advance(50 * MS);
    cluster.deliver_all();
    assert!(cluster.read_outcome(leader, 1).unwrap().result.is_ok());
    cluster.advance(50 * MS);
    cluster.deliver_all();
    assert!(cluster.node(leader).holds_read_lease(cluster.now));
}

/// Q1 with one voter: the leader alone is a majority, so the round a heartbeat starts (with
/// leases on, every heartbeat starts one to renew the lease) is confirmed at once. Before this,
/// nothing confirmed such a round (no AppendReply ever comes), the lease ran out, and every
/// later read waited for a round that never completed (a real node's lease read hung).
#[test]
fn q1_a_single_voter_confirms_its_heartbeat_rounds_itself() {
    check!(q1_round_confirmed_alone);
    let mut cluster = with_lease(1);
    let leader = settled(&mut cluster);
    cluster.propose(NodeId(leader), "w").unwrap();
    cluster.deliver_all();
    // Many heartbeats, far longer than the lease.
    for _ in 0..100 {
        cluster.advance(10 * MS);
    }
    assert!(cluster.node(leader).holds_read_lease(cluster.now));
    cluster.read(leader, 1, ReadMode::Lease);
    assert!(cluster.read_outcome(leader, 1).unwrap().result.is_ok());
    cluster.read(leader, 2, ReadMode::Linearizable);
    assert!(cluster.read_outcome(leader, 2).unwrap().result.is_ok());
}
