//! Hand-driven tests of §18's entry rules (issue 13: F4 positions count, F5 faulty follower, F7
//! honest acknowledgements, F12 verified repairs), each checking the coverage marks at the
//! branches that implement them, negative cases included; `docs/protocol.md` (§18, "F1–F7,
//! F10–F12 as built") lists rule → function → test.

use bytes::Bytes;

use crate::faulty::{FaultyEntry, payload_crc};
use crate::marks::check;
use crate::testkit::entry;
use crate::*;

fn config(id: u64) -> Config {
    Config::lan(NodeId(id), vec![NodeId(1), NodeId(2), NodeId(3)], 42)
}

/// The persisted log of `entries` (term per index, from 1) with the entries at `faulty`
/// damaged: their positions and CRCs known, the tail only above the last of them.
fn persisted_log(terms: &[u64], faulty: &[u64]) -> PersistedLog {
    let entries: Vec<Entry> = terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect();
    let damaged: Vec<FaultyEntry> = faulty
        .iter()
        .map(|index| FaultyEntry::of(&entries[usize::try_from(*index).unwrap() - 1]))
        .collect();
    let above = faulty.iter().copied().max().unwrap_or(0);
    let mut log = PersistedLog::from_entries(entries);
    log.tail.retain(|entry| entry.index.0 > above);
    log.faulty = damaged;
    log
}

/// Server `id` of three in term `term`, started with `log`.
fn node_with(id: u64, term: u64, log: PersistedLog) -> Node {
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(term),
            voted_for: None,
        },
        log,
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    let mut node = Node::new(config(id), persisted, Instant(0)).unwrap();
    let _ = node.take_outputs();
    node
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

fn append(prev: (u64, u64), entries: Vec<Entry>, leader_commit: u64) -> MessageBody {
    MessageBody::Append(Append {
        prev_index: LogIndex(prev.0),
        prev_term: Term(prev.1),
        entries,
        leader_commit: LogIndex(leader_commit),
        round: 0,
    })
}

/// The AppendReplies in `outputs`: (match index or `None` for a rejection, repair_from).
fn append_replies(outputs: &[Output]) -> Vec<(Option<u64>, Option<u64>)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send(Message {
                body: MessageBody::AppendReply(reply),
                ..
            }) => Some((
                match reply.result {
                    AppendResult::Accepted { match_index } => Some(match_index.0),
                    AppendResult::Rejected(_) => None,
                },
                reply.repair_from.map(|index| index.0),
            )),
            _ => None,
        })
        .collect()
}

fn repairs(outputs: &[Output]) -> Vec<Entry> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::RepairEntry { entry } => Some(entry.clone()),
            _ => None,
        })
        .collect()
}

fn vote_request(from: u64, to: u64, term: u64, last: (u64, u64)) -> Message {
    message(
        from,
        to,
        term,
        MessageBody::VoteRequest(VoteRequest {
            last_index: LogIndex(last.0),
            last_term: Term(last.1),
            pre_vote: false,
            transfer: false,
        }),
    )
}

fn position(index: u64, term: u64) -> LogPosition {
    LogPosition {
        index: LogIndex(index),
        term: Term(term),
    }
}

#[test]
fn f4_a_faulty_entry_keeps_its_position_for_votes() {
    // S2 holds 1..5 of term 1 with 5 faulty; S3 holds 1..4: S2 refuses S3 (S17's required
    // outcome), since its acknowledgement of 5 promised to.
    let mut voter = node_with(2, 1, persisted_log(&[1, 1, 1, 1, 1], &[5]));
    assert_eq!(voter.last_position(), position(5, 1));
    assert_eq!(voter.status().repair_from, Some(LogIndex(5)));
    voter.on_message(Instant(1), vote_request(3, 2, 2, (4, 1)));
    assert_eq!(
        crate::testkit::vote_reasons(voter.take_outputs()),
        vec![VoteReason::LogNotComplete]
    );
    // A candidate that holds the position gets the vote: faulty nodes are not barred.
    voter.on_message(Instant(2), vote_request(1, 2, 3, (5, 1)));
    assert_eq!(
        crate::testkit::vote_reasons(voter.take_outputs()),
        vec![VoteReason::Granted]
    );
}

#[test]
fn f5_a_faulty_follower_acknowledges_below_its_first_faulty_entry() {
    check!(f5_acknowledgement_stops_below_faulty_entry);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1, 1, 1, 1, 1], &[4]));
    follower.on_message(Instant(1), message(1, 2, 2, append((6, 1), vec![], 0)));
    let outputs = follower.take_outputs();
    assert_eq!(append_replies(&outputs), vec![(Some(3), Some(4))]);
}

#[test]
fn f5_a_verified_copy_replaces_the_faulty_payload_and_releases_the_acknowledgement() {
    check!(f5_faulty_entry_repaired_from_append);
    check!(f5_faulty_entry_repaired);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1, 1, 1, 1, 1], &[4]));
    follower.on_message(
        Instant(1),
        message(1, 2, 2, append((3, 1), vec![entry(4, 1), entry(5, 1)], 0)),
    );
    let outputs = follower.take_outputs();
    assert_eq!(repairs(&outputs), vec![entry(4, 1)], "{outputs:?}");
    assert!(
        !outputs
            .iter()
            .any(|output| matches!(output, Output::TruncateLog { .. })),
        "F1: the faulty entry is never truncated: {outputs:?}"
    );
    assert_eq!(append_replies(&outputs), vec![(Some(3), Some(4))]);
    // Until the repair is durable the entry stays faulty.
    assert_eq!(follower.status().repair_from, Some(LogIndex(4)));
    follower.on_entry_repaired(Instant(2), position(4, 1));
    let outputs = follower.take_outputs();
    assert_eq!(append_replies(&outputs), vec![(Some(5), None)]);
    assert_eq!(follower.status().faulty_count, 0);
}

#[test]
fn f12_a_copy_whose_crc_differs_is_not_written_and_a_later_one_repairs() {
    check!(f12_unverified_repair_refused);
    let log = persisted_log(&[1, 1, 1, 1], &[4]);
    let damaged = log.faulty[0];
    let mut follower = node_with(2, 1, log);
    let mut forged = entry(4, 1);
    forged.payload = Bytes::from_static(b"not the committed bytes");
    follower.on_message(
        Instant(1),
        message(1, 2, 2, append((3, 1), vec![forged], 0)),
    );
    let outputs = follower.take_outputs();
    // The driver checks the copy against the identifier's CRC (F12) and writes nothing.
    let [copy] = repairs(&outputs).try_into().unwrap();
    assert!(!damaged.repaired_by(&copy));
    assert_eq!(append_replies(&outputs), vec![(Some(3), Some(4))]);
    follower.on_entry_repair_failed(Instant(2), copy.position());
    assert_eq!(follower.status().repair_from, Some(LogIndex(4)));
    // The leader's next copy is written.
    follower.on_message(
        Instant(3),
        message(1, 2, 2, append((3, 1), vec![entry(4, 1)], 0)),
    );
    let [copy] = repairs(&follower.take_outputs()).try_into().unwrap();
    assert!(damaged.repaired_by(&copy));
}

#[test]
fn f5_a_stale_repair_report_changes_nothing() {
    check!(f5_stale_repair_report_ignored);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1, 1, 1], &[4]));
    // No repair was written: a report cannot clear the fault.
    follower.on_entry_repaired(Instant(1), position(4, 1));
    assert_eq!(follower.status().repair_from, Some(LogIndex(4)));
}

#[test]
fn f5_an_entry_of_another_term_at_a_faulty_position_truncates_as_in_r4() {
    check!(f5_faulty_entry_truncated_by_conflict);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1, 1, 1], &[4]));
    follower.on_message(
        Instant(1),
        message(1, 2, 2, append((3, 1), vec![entry(4, 2)], 0)),
    );
    let outputs = follower.take_outputs();
    assert!(outputs.contains(&Output::TruncateLog { from: LogIndex(4) }));
    assert_eq!(follower.status().faulty_count, 0);
    follower.on_persisted(Instant(2), position(4, 2));
    let outputs = follower.take_outputs();
    assert_eq!(append_replies(&outputs), vec![(Some(4), None)]);
}

#[test]
fn f5_apply_stops_before_the_first_faulty_entry() {
    check!(f5_apply_stops_before_faulty_entry);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1, 1, 1, 1, 1], &[4]));
    follower.on_message(Instant(1), message(1, 2, 2, append((6, 1), vec![], 6)));
    let outputs = follower.take_outputs();
    // Entries 1..3 are below the cache (the tail starts at 5): read back, then applied.
    let reads: Vec<_> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::ReadLog { id, from, to, .. } => Some((*id, *from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(reads.len(), 1, "{outputs:?}");
    let (id, from, to) = reads[0];
    assert_eq!((from, to), (LogIndex(1), LogIndex(3)));
    let answer = LogReadResult::Entries(crate::testkit::entries(1, 3, 1));
    follower.on_log_read(Instant(2), id, answer).unwrap();
    let outputs = follower.take_outputs();
    let applied: Vec<u64> = outputs
        .iter()
        .filter_map(|output| match output {
            Output::Apply { entries } => Some(entries.iter().map(|e| e.index.0)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(applied, vec![1, 2, 3]);
    assert_eq!(follower.status().applied_index, LogIndex(3));
    assert_eq!(follower.status().commit_index, LogIndex(6));
}

#[test]
fn f5_a_read_that_finds_a_faulty_entry_marks_it_instead_of_stopping_the_node() {
    check!(f5_runtime_fault_marks_entry_faulty);
    check!(f5_read_of_faulty_entry_ends_the_read);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1, 1, 1], &[]));
    // The tail holds everything: evict nothing; commit 4 applies from the cache. Instead use
    // an explicit read: learn commit 2 with an empty cache below.
    let mut log = persisted_log(&[1, 1, 1, 1], &[]);
    log.tail.clear();
    follower = {
        let _ = follower;
        node_with(2, 1, log)
    };
    follower.on_message(Instant(1), message(1, 2, 2, append((4, 1), vec![], 4)));
    let outputs = follower.take_outputs();
    let id = outputs
        .iter()
        .find_map(|output| match output {
            Output::ReadLog { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    let damaged = FaultyEntry::of(&entry(2, 1));
    follower.on_entry_faulty(Instant(2), damaged);
    follower
        .on_log_read(Instant(3), id, LogReadResult::Fault(LogIndex(2)))
        .expect("F5: a known faulty entry does not stop the node");
    assert_eq!(follower.fault(), None);
    assert_eq!(follower.status().repair_from, Some(LogIndex(2)));
    let _ = follower.take_outputs();
    // A read that fails at an index nobody reported still stops the node (rule S9).
    let mut other = node_with(2, 1, {
        let mut log = persisted_log(&[1, 1, 1, 1], &[]);
        log.tail.clear();
        log
    });
    other.on_message(Instant(1), message(1, 2, 2, append((4, 1), vec![], 4)));
    let id = other
        .take_outputs()
        .iter()
        .find_map(|output| match output {
            Output::ReadLog { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    assert!(
        other
            .on_log_read(Instant(2), id, LogReadResult::Fault(LogIndex(2)))
            .is_err()
    );
}

#[test]
fn f5_a_fault_report_for_a_position_the_log_no_longer_holds_is_ignored() {
    check!(f5_stale_fault_report_ignored);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1], &[]));
    follower.on_entry_faulty(Instant(1), FaultyEntry::of(&entry(2, 7)));
    follower.on_entry_faulty(Instant(1), FaultyEntry::of(&entry(9, 1)));
    assert_eq!(follower.status().faulty_count, 0);
}

#[test]
fn f5_a_fault_on_a_cached_entry_is_repaired_from_the_cache() {
    check!(f5_faulty_entry_repaired_from_cache);
    let mut follower = node_with(2, 1, persisted_log(&[1, 1, 1], &[]));
    follower.on_entry_faulty(Instant(1), FaultyEntry::of(&entry(3, 1)));
    let outputs = follower.take_outputs();
    assert_eq!(repairs(&outputs), vec![entry(3, 1)]);
    follower.on_entry_repaired(Instant(2), position(3, 1));
    assert_eq!(follower.status().faulty_count, 0);
}

/// Server 1 of three, leader of term 2 (pre-vote off), started with `log` in term 1.
fn leader_with(log: PersistedLog) -> Node {
    let mut node = leader_with_snapshot(log, None);
    let _ = node.take_outputs();
    node
}

fn snapshot_meta(index: u64, term: u64) -> SnapshotMeta {
    SnapshotMeta {
        last: position(index, term),
        size: 10,
        configuration: Configuration::new(&[NodeId(1), NodeId(2), NodeId(3)], &[]).unwrap(),
    }
}

/// [`leader_with`], with a durable snapshot.
fn leader_with_snapshot(log: PersistedLog, snapshot: Option<SnapshotMeta>) -> Node {
    let mut config = config(1);
    config.pre_vote = false;
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(1),
            voted_for: None,
        },
        snapshot,
        log,
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    let mut node = Node::new(config, persisted, Instant(0)).unwrap();
    let deadline = node.next_timeout().unwrap();
    node.tick(deadline);
    let granted = MessageBody::VoteReply(VoteReply {
        reason: VoteReason::Granted,
        voter_rank: None,
        pre_vote: false,
    });
    node.on_message(deadline, message(2, 1, 2, granted));
    assert_eq!(node.status().role, Role::Leader);
    node
}

#[test]
fn f12_a_leader_sends_nothing_at_a_faulty_entry() {
    check!(f12_leader_sends_nothing_at_a_faulty_entry);
    // The leader's entry 2 is faulty (below its cache); follower 2 lacks everything from 2.
    let mut leader = leader_with(persisted_log(&[1, 1, 1], &[2]));
    let term = leader.status().term.0;
    let hint = RejectHint {
        conflict_term: Term(0),
        conflict_first_index: LogIndex(0),
        last_index: LogIndex(1),
        last_term: Term(1),
    };
    let reject = MessageBody::AppendReply(AppendReply {
        result: AppendResult::Rejected(hint),
        round: 0,
        repair_from: None,
    });
    leader.on_message(Instant(10_000_000_000), message(2, 1, term, reject));
    let outputs = leader.take_outputs();
    let to_follower: Vec<&Output> = outputs
        .iter()
        .filter(|output| {
            matches!(output, Output::Send(Message { to, body: MessageBody::Append(_), .. })
                if *to == NodeId(2))
                || matches!(output, Output::ReadLog { from, .. } if *from <= LogIndex(2))
        })
        .collect();
    assert!(to_follower.is_empty(), "{outputs:?}");
}

fn accepted(match_index: u64, repair_from: Option<u64>) -> MessageBody {
    MessageBody::AppendReply(AppendReply {
        result: AppendResult::Accepted {
            match_index: LogIndex(match_index),
        },
        round: 0,
        repair_from: repair_from.map(LogIndex),
    })
}

/// The Appends to `to` in `outputs`, as (prev index, first entry's index).
fn appends_to(outputs: &[Output], to: u64) -> Vec<(u64, Option<u64>)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send(Message {
                to: receiver,
                body: MessageBody::Append(append),
                ..
            }) if *receiver == NodeId(to) => Some((
                append.prev_index.0,
                append.entries.first().map(|entry| entry.index.0),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn f5_the_leader_probes_from_the_followers_repair_from() {
    check!(f5_leader_probes_from_repair_from);
    let mut leader = leader_with(persisted_log(&[1, 1, 1, 1], &[]));
    let term = leader.status().term.0;
    // The probe at prev (5, 2) is answered: follower 2 holds 1..5 but 3 is faulty.
    leader.on_message(Instant(1), message(2, 1, term, accepted(2, Some(3))));
    let outputs = leader.take_outputs();
    assert_eq!(appends_to(&outputs, 2), vec![(2, Some(3))]);
    // The repair is not durable yet: it acknowledges 2 again; the leader resends from 3 once
    // more instead of streaming on from 6.
    leader.on_message(Instant(2), message(2, 1, term, accepted(2, Some(3))));
    let outputs = leader.take_outputs();
    assert_eq!(appends_to(&outputs, 2), vec![(2, Some(3))]);
}

#[test]
fn f3_a_faulty_entry_a_snapshot_covers_is_dropped_at_start() {
    check!(f3_faulty_entry_below_snapshot_dropped);
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(1),
            voted_for: None,
        },
        snapshot: Some(snapshot_meta(3, 1)),
        log: persisted_log(&[1, 1, 1, 1, 1], &[2]),
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    let node = Node::new(config(2), persisted, Instant(0)).unwrap();
    assert_eq!(node.status().faulty_count, 0);
}

#[test]
fn f3_a_follower_that_needs_a_faulty_entry_a_snapshot_covers_gets_the_snapshot() {
    check!(f3_faulty_entry_below_snapshot_sent_as_snapshot);
    let mut log = persisted_log(&[1, 1, 1, 1, 1], &[]);
    log.tail.retain(|entry| entry.index.0 > 3);
    let mut leader = leader_with_snapshot(log, Some(snapshot_meta(3, 1)));
    let _ = leader.take_outputs();
    // Entry 2 (retained, below the snapshot) turns out damaged at runtime.
    leader.on_entry_faulty(Instant(1), FaultyEntry::of(&entry(2, 1)));
    let _ = leader.take_outputs();
    let term = leader.status().term.0;
    let hint = RejectHint {
        conflict_term: Term(0),
        conflict_first_index: LogIndex(0),
        last_index: LogIndex(1),
        last_term: Term(1),
    };
    let reject = MessageBody::AppendReply(AppendReply {
        result: AppendResult::Rejected(hint),
        round: 0,
        repair_from: None,
    });
    leader.on_message(Instant(2), message(2, 1, term, reject));
    let outputs = leader.take_outputs();
    assert!(
        outputs.iter().any(|output| matches!(
            output,
            Output::ReadSnapshot { to, .. } if *to == NodeId(2)
        )),
        "{outputs:?}"
    );
}

#[test]
fn f3_faulty_entries_that_are_not_log_positions_are_refused_at_start() {
    let mut log = persisted_log(&[1, 1], &[]);
    log.faulty = vec![FaultyEntry {
        index: LogIndex(2),
        term: Term(5),
        payload_crc: payload_crc(b"x"),
    }];
    let persisted = Persisted {
        log,
        ..Persisted::default()
    };
    let error = Node::new(config(2), persisted, Instant(0)).unwrap_err();
    assert_eq!(error.field, "persisted.log.faulty");
    // A faulty entry inside the tail is refused too: the tail is read, not damaged.
    let mut log = persisted_log(&[1, 1], &[]);
    log.faulty = vec![FaultyEntry::of(&entry(2, 1))];
    let persisted = Persisted {
        log,
        ..Persisted::default()
    };
    let error = Node::new(config(2), persisted, Instant(0)).unwrap_err();
    assert_eq!(error.field, "persisted.log.tail");
}

/// Scenario S17 (PAR FAST'18 Fig. 2) with the injected bug: S2 drops its faulty entry 5 and
/// votes for S3, which lacks it; with the rule, S2 refuses S3.
#[cfg(feature = "sim")]
#[test]
fn s17_the_injected_truncate_reaction_votes_for_a_candidate_lacking_a_committed_entry() {
    let mut voter = node_with(2, 1, persisted_log(&[1, 1, 1, 1, 1], &[5]));
    voter.inject_bug(crate::injected::InjectedBug::TruncateFaultyEntries);
    let outputs = voter.take_outputs();
    assert!(outputs.contains(&Output::TruncateLog { from: LogIndex(5) }));
    voter.on_message(Instant(1), vote_request(3, 2, 2, (4, 1)));
    assert_eq!(
        crate::testkit::vote_reasons(voter.take_outputs()),
        vec![VoteReason::Granted]
    );
}

#[test]
fn a_trace_with_faulty_entries_and_repairs_replays() {
    let persisted = Persisted {
        log: persisted_log(&[1, 1, 1, 1, 1, 1], &[4]),
        incarnation: Incarnation(1),
        hard_state: HardState {
            current_term: Term(1),
            voted_for: None,
        },
        ..Persisted::default()
    };
    let mut node = Node::new_recorded(config(2), persisted, Instant(0)).unwrap();
    let _ = node.take_outputs();
    node.on_message(
        Instant(1),
        message(1, 2, 2, append((3, 1), vec![entry(4, 1)], 0)),
    );
    let _ = node.take_outputs();
    node.on_entry_repaired(Instant(2), position(4, 1));
    node.on_entry_faulty(Instant(3), FaultyEntry::of(&entry(6, 1)));
    node.on_entry_repair_failed(Instant(4), position(6, 1));
    let _ = node.take_outputs();
    let trace = node.trace().unwrap().to_vec();
    let replayed = crate::replay::replay(&trace).unwrap();
    assert_eq!(replayed.node.status(), node.status());
}

/// The messages in `outputs`, as (receiver, body).
fn sent(outputs: &[Output]) -> Vec<(u64, MessageBody)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Send(message) => Some((message.to.0, message.body.clone())),
            _ => None,
        })
        .collect()
}

fn fetch_entry(index: u64, term: u64) -> MessageBody {
    MessageBody::FetchEntry(FetchEntry {
        position: position(index, term),
    })
}

fn fetch_reply(index: u64, term: u64, answer: FetchAnswer) -> MessageBody {
    MessageBody::FetchReply(FetchReply {
        position: position(index, term),
        answer,
    })
}

/// Server 1, leader of term 2 after winning with entry 5 (of `1..=5`, term 1) faulty; the
/// outputs of its win.
fn recovering_leader() -> (Node, Vec<Output>) {
    let mut leader = leader_with_snapshot(persisted_log(&[1, 1, 1, 1, 1], &[5]), None);
    let outputs = leader.take_outputs();
    (leader, outputs)
}

fn appended(outputs: &[Output]) -> Vec<Entry> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::AppendLog { entries } => Some(entries.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn f6_a_winner_with_faulty_entries_repairs_before_its_noop() {
    check!(f6_winner_with_faulty_entries_recovers_first);
    check!(f6_fetch_entry_sent);
    check!(f6_proposal_refused_while_recovering);
    check!(f6_fetched_copy_written);
    check!(f6_recovered_leader_appends_noop);
    let (mut leader, outputs) = recovering_leader();
    assert!(appended(&outputs).is_empty(), "no no-op yet: {outputs:?}");
    let fetches: Vec<u64> = sent(&outputs)
        .into_iter()
        .filter(|(_, body)| *body == fetch_entry(5, 1))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(fetches, vec![2, 3]);
    assert_eq!(
        leader.propose(Instant(1), Bytes::from_static(b"x")),
        Err(ProposeError::Repairing { from: LogIndex(5) })
    );
    let now = Instant(2_000_000_000);
    leader.on_message(
        now,
        message(3, 1, 2, fetch_reply(5, 1, FetchAnswer::Have(entry(5, 1)))),
    );
    let outputs = leader.take_outputs();
    assert_eq!(repairs(&outputs), vec![entry(5, 1)]);
    assert!(appended(&outputs).is_empty(), "still no no-op: {outputs:?}");
    leader.on_entry_repaired(now, position(5, 1));
    let outputs = leader.take_outputs();
    let noop = appended(&outputs);
    assert_eq!(noop.len(), 1, "{outputs:?}");
    assert_eq!(
        (noop[0].position(), noop[0].kind),
        (position(6, 2), EntryKind::Noop)
    );
    assert!(leader.propose(now, Bytes::from_static(b"x")).is_ok());
}

#[test]
fn f6_a_dont_have_majority_proves_the_entry_uncommitted() {
    check!(f6_dont_have_minority_waits);
    check!(f6_unknown_counts_for_neither);
    check!(f6_dont_have_majority_truncates);
    let (mut leader, _) = recovering_leader();
    let now = Instant(2_000_000_000);
    // S17 with S1 down: S3 lacks 5 (DontHave), one answer is not a majority of the voters
    // without the leader: it waits, and Unknown counts for neither side.
    leader.on_message(
        now,
        message(3, 1, 2, fetch_reply(5, 1, FetchAnswer::DontHave)),
    );
    leader.on_message(
        now,
        message(2, 1, 2, fetch_reply(5, 1, FetchAnswer::Unknown)),
    );
    let outputs = leader.take_outputs();
    assert!(
        !outputs
            .iter()
            .any(|output| matches!(output, Output::TruncateLog { .. })),
        "{outputs:?}"
    );
    // A DontHave of an older term does not count either.
    leader.on_message(
        now,
        message(2, 1, 1, fetch_reply(5, 1, FetchAnswer::DontHave)),
    );
    assert!(leader.take_outputs().is_empty());
    leader.on_message(
        now,
        message(2, 1, 2, fetch_reply(5, 1, FetchAnswer::DontHave)),
    );
    let outputs = leader.take_outputs();
    assert!(outputs.contains(&Output::TruncateLog { from: LogIndex(5) }));
    let noop = appended(&outputs);
    assert_eq!(noop.first().map(Entry::position), Some(position(5, 2)));
    assert_eq!(leader.status().faulty_count, 0);
}

#[test]
fn f6_a_covered_answer_hands_leadership_to_the_voter_with_the_committed_prefix() {
    check!(f6_covered_leader_steps_down);
    let (mut leader, _) = recovering_leader();
    let covered = FetchAnswer::Covered(position(5, 1));
    leader.on_message(Instant(1), message(3, 1, 2, fetch_reply(5, 1, covered)));
    let outputs = leader.take_outputs();
    assert_eq!(leader.status().role, Role::Passive);
    assert!(
        sent(&outputs).contains(&(3, MessageBody::TimeoutNow)),
        "{outputs:?}"
    );
    // A snapshot position its log does not hold proves nothing: no step-down.
    let (mut leader, _) = recovering_leader();
    let covered = FetchAnswer::Covered(position(5, 7));
    leader.on_message(Instant(1), message(3, 1, 2, fetch_reply(5, 1, covered)));
    assert_eq!(leader.status().role, Role::Leader);
}

#[test]
fn f6_a_reply_about_a_position_that_is_not_faulty_is_ignored() {
    check!(f6_stale_fetch_reply_ignored);
    let (mut leader, _) = recovering_leader();
    let answer = FetchAnswer::Have(entry(4, 1));
    leader.on_message(Instant(1), message(3, 1, 2, fetch_reply(4, 1, answer)));
    assert!(repairs(&leader.take_outputs()).is_empty());
}

/// The answers a server with `log` gives to a FetchEntry of each position.
fn answers(node: &mut Node, positions: &[(u64, u64)]) -> Vec<FetchAnswer> {
    positions
        .iter()
        .map(|(index, term)| {
            node.on_message(Instant(1), message(1, 2, 1, fetch_entry(*index, *term)));
            let outputs = node.take_outputs();
            match sent(&outputs).as_slice() {
                [(1, MessageBody::FetchReply(reply))] => reply.answer.clone(),
                other => panic!("one reply expected: {other:?}"),
            }
        })
        .collect()
}

#[test]
fn f7_a_server_nacks_only_what_its_verified_log_proves_it_lacks() {
    check!(f6_fetch_answered_have);
    check!(f7_fetch_answered_dont_have);
    check!(f7_fetch_answered_unknown);
    let mut node = node_with(2, 1, persisted_log(&[1, 1, 2, 2], &[4]));
    // A server whose log is all cached: Have, another term there, a log ending below.
    let mut cached = node_with(2, 1, persisted_log(&[1, 1, 2], &[]));
    assert_eq!(
        answers(&mut cached, &[(2, 1), (3, 1), (9, 1)]),
        vec![
            FetchAnswer::Have(entry(2, 1)),
            FetchAnswer::DontHave,
            FetchAnswer::DontHave
        ]
    );
    // Faulty at the index: Unknown, never DontHave (F7).
    assert_eq!(
        answers(&mut node, &[(4, 2), (4, 1)]),
        vec![FetchAnswer::Unknown; 2]
    );
    // An empty disk (maybe reformatted) proves nothing.
    let mut empty = node_with(2, 0, PersistedLog::default());
    assert_eq!(answers(&mut empty, &[(1, 1)]), vec![FetchAnswer::Unknown]);
    // Fenced after a hard-state loss (F9): Unknown.
    let persisted = Persisted {
        log: persisted_log(&[1, 1], &[]),
        incarnation: Incarnation(1),
        term_ceiling: Term(20),
        hard_state_lost: true,
        ..Persisted::default()
    };
    let mut fenced = Node::new(config(2), persisted, Instant(0)).unwrap();
    let _ = fenced.take_outputs();
    assert_eq!(answers(&mut fenced, &[(9, 1)]), vec![FetchAnswer::Unknown]);
}

#[test]
fn f6_a_snapshot_covers_an_asked_position() {
    check!(f6_fetch_answered_covered);
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(1),
            voted_for: None,
        },
        snapshot: Some(snapshot_meta(3, 1)),
        log: persisted_log(&[1, 1, 1, 1], &[]),
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    let mut node = Node::new(config(2), persisted, Instant(0)).unwrap();
    let _ = node.take_outputs();
    assert_eq!(
        answers(&mut node, &[(2, 1)]),
        vec![FetchAnswer::Covered(position(3, 1))]
    );
}

#[test]
fn f6_an_entry_only_on_disk_is_answered_from_a_read() {
    check!(f6_fetch_answered_from_a_read);
    let mut log = persisted_log(&[1, 1, 1], &[]);
    log.tail.clear();
    let mut node = node_with(2, 1, log);
    node.on_message(Instant(1), message(1, 2, 1, fetch_entry(2, 1)));
    let outputs = node.take_outputs();
    let id = outputs
        .iter()
        .find_map(|output| match output {
            Output::ReadLog { id, from, to, .. } if *from == LogIndex(2) && *to == LogIndex(2) => {
                Some(*id)
            }
            _ => None,
        })
        .expect("a read of entry 2");
    node.on_log_read(Instant(2), id, LogReadResult::Entries(vec![entry(2, 1)]))
        .unwrap();
    let outputs = node.take_outputs();
    assert_eq!(
        sent(&outputs),
        vec![(1, fetch_reply(2, 1, FetchAnswer::Have(entry(2, 1))))]
    );
    // A read that fails answers Unknown and does not stop the node.
    node.on_message(Instant(3), message(1, 2, 1, fetch_entry(3, 1)));
    let id = node
        .take_outputs()
        .iter()
        .find_map(|output| match output {
            Output::ReadLog { id, .. } => Some(*id),
            _ => None,
        })
        .unwrap();
    node.on_log_read(Instant(4), id, LogReadResult::Fault(LogIndex(3)))
        .unwrap();
    assert_eq!(
        sent(&node.take_outputs()),
        vec![(1, fetch_reply(3, 1, FetchAnswer::Unknown))]
    );
}

/// Server 1 leading term 2 past its no-op, with entry 2 of `1..=3` only on disk.
fn leader_past_noop() -> Node {
    let mut log = persisted_log(&[1, 1, 1], &[]);
    log.tail.retain(|entry| entry.index.0 > 2);
    let mut leader = leader_with_snapshot(log, None);
    let _ = leader.take_outputs();
    assert!(leader.status().repair_from.is_none());
    leader
}

#[test]
fn f6_a_leader_past_its_noop_steps_down_when_a_majority_lacks_its_faulty_entry() {
    check!(f6_leading_with_unrepairable_entry_steps_down);
    let mut leader = leader_past_noop();
    leader.on_entry_faulty(Instant(1), FaultyEntry::of(&entry(2, 1)));
    let outputs = leader.take_outputs();
    assert!(
        sent(&outputs).contains(&(2, fetch_entry(2, 1))),
        "{outputs:?}"
    );
    for from in [2, 3] {
        leader.on_message(
            Instant(2),
            message(from, 1, 2, fetch_reply(2, 1, FetchAnswer::DontHave)),
        );
    }
    let outputs = leader.take_outputs();
    assert_eq!(leader.status().role, Role::Passive);
    assert!(
        !outputs
            .iter()
            .any(|output| matches!(output, Output::TruncateLog { .. })),
        "R9: it never truncates past its no-op: {outputs:?}"
    );
}

#[test]
fn f6_a_leader_past_its_noop_steps_down_when_its_repair_fails_within_p_min() {
    check!(f6_leading_with_unrepairable_entry_steps_down_after_p_min);
    let mut leader = leader_past_noop();
    leader.on_entry_faulty(Instant(1), FaultyEntry::of(&entry(2, 1)));
    let _ = leader.take_outputs();
    let mut now = Instant(1);
    for _ in 0..100 {
        now = leader.next_timeout().unwrap();
        leader.tick(now);
        let _ = leader.take_outputs();
        if leader.status().role != Role::Leader {
            break;
        }
    }
    assert_eq!(leader.status().role, Role::Passive);
    assert!(now.saturating_duration_since(Instant(1)) >= config(1).passive_timeout_min);
}

/// Scenario S17's setting on a hand-driven cluster: entry `k` ("five") is committed on the
/// leader `a` and on `b`, `c` lacks it; `b`'s record `k` rots, `a` crashes, `b` restarts.
/// Returns the cluster, `(a, b, c)` and `k`.
fn s17_setting() -> (crate::testkit::Cluster, (u64, u64, u64), u64) {
    use std::time::Duration;
    let mut cluster = crate::testkit::Cluster::new(3, 17);
    let a = cluster.elect(Duration::from_secs(5)).unwrap().0;
    for payload in ["one", "two", "three"] {
        cluster.propose(NodeId(a), payload).unwrap();
    }
    for _ in 0..10 {
        cluster.deliver_all();
    }
    let (b, c) = match a {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    let five = cluster.propose(NodeId(a), "five").unwrap();
    for _ in 0..10 {
        cluster.deliver_where(|m| m.to.0 != c && m.from.0 != c);
    }
    cluster.drop_all();
    assert!(
        cluster.commit_index(a) >= five.index,
        "committed on a and b"
    );
    assert!(cluster.disks[&NodeId(c)].log.len() < usize::try_from(five.index.0).unwrap());
    let k = five.index.0;
    cluster.crash(a);
    cluster.crash(b);
    cluster.damage_entry(b, k);
    cluster.start(NodeId(b));
    (cluster, (a, b, c), k)
}

/// Scenario S17 (PAR, FAST'18 Fig. 2), required outcome: `b` keeps `(k, t)` as faulty and
/// refuses `c`; it wins with `c`'s vote, asks for `k`, gets `DontHave` from `c` only and
/// waits, applying nothing past `k − 1`; when `a` returns (`Have`) `k` is repaired, `b`
/// appends its no-op, and every server applies the committed "five".
#[test]
fn s17_corruption_is_not_truncation() {
    use std::time::Duration;
    let (mut cluster, (a, b, c), k) = s17_setting();
    assert_eq!(cluster.node(b).status().repair_from, Some(LogIndex(k)));
    for _ in 0..300 {
        cluster.advance(Duration::from_millis(10));
        cluster.deliver_all();
    }
    // Only b can win (c lacks k); it waits for a copy, appending and applying nothing.
    assert_eq!(cluster.leader(), Some(NodeId(b)));
    assert_eq!(cluster.node(b).status().last_index, LogIndex(k));
    assert!(cluster.node(b).status().applied_index < LogIndex(k));
    assert!(cluster.node(c).status().applied_index < LogIndex(k));
    assert!(!cluster.applied_payloads(b).contains(&"five".to_string()));
    cluster.start(NodeId(a));
    for _ in 0..300 {
        cluster.advance(Duration::from_millis(10));
        cluster.deliver_all();
    }
    for id in [a, b, c] {
        let status = cluster.node(id).status();
        assert_eq!(status.faulty_count, 0, "{status:?}");
        assert!(status.applied_index > LogIndex(k), "{status:?}");
    }
    assert!(cluster.applied_payloads(b).contains(&"five".to_string()));
    assert!(cluster.applied_payloads(c).contains(&"five".to_string()));
    assert!(cluster.disks[&NodeId(b)].faulty.is_empty());
}

/// Scenario S17 with injected bug 10 (the Truncate reaction): `b` drops `k` and votes for `c`,
/// which wins; when `a` returns, `c` overwrites the committed `k` on it: a committed entry is
/// lost (what the simulator's durability checker reports).
#[cfg(feature = "sim")]
#[test]
fn s17_the_truncate_reaction_loses_a_committed_entry() {
    use std::time::Duration;
    let (mut cluster, (a, b, c), k) = s17_setting();
    cluster
        .node_mut(b)
        .inject_bug(crate::injected::InjectedBug::TruncateFaultyEntries);
    cluster.perform(NodeId(b));
    cluster.timeout(c);
    for _ in 0..300 {
        cluster.advance(Duration::from_millis(10));
        cluster.deliver_all();
    }
    cluster.start(NodeId(a));
    for _ in 0..300 {
        cluster.advance(Duration::from_millis(10));
        cluster.deliver_all();
    }
    let lost = cluster.disks[&NodeId(a)]
        .log
        .iter()
        .find(|entry| entry.index == LogIndex(k))
        .is_none_or(|entry| entry.payload != Bytes::from_static(b"five"));
    assert!(lost, "the committed entry {k} was overwritten on a");
    assert!(!cluster.applied_payloads(c).contains(&"five".to_string()));
}
