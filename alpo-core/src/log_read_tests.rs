//! One test per branch of rule S9 (the core reads evicted entries back from the driver) and its
//! negative cases, each checking the coverage marks at the branches that implement it, as
//! `rule_tests.rs` and `snapshot_tests.rs` do; `docs/protocol.md` lists rule → function → test.
//! Single-node tests assert on the exact, ordered output list; multi-node tests drive a
//! [`crate::testkit::Cluster`] by hand, holding the reads to answer them when the test chooses.

use std::time::Duration;

use bytes::Bytes;

use crate::marks::check;
use crate::testkit::{Cluster, entries};
use crate::*;

const MS: Duration = Duration::from_millis(1);

fn ids() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

/// An empty cache (every committed entry is evicted) and 300 read bytes in flight: one read
/// of 100 bytes per purpose.
fn cacheless(id: NodeId, members: Vec<NodeId>) -> Config {
    let mut config = Config::lan(id, members, 42);
    config.log_cache_bytes_max = 0;
    config.read_inflight_bytes_max = 300;
    config
}

/// Follower 2 in term 1 whose durable log is 1..=4 of term 1, handed over as its term index
/// only (no tail): every entry must be read back before it is applied.
fn follower_without_tail() -> Node {
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(1),
            voted_for: None,
        },
        snapshot: None,
        log: PersistedLog {
            runs: vec![TermRun {
                first: LogIndex(1),
                term: Term(1),
            }],
            last: LogIndex(4),
            tail: Vec::new(),
            configs: Vec::new(),
            faulty: Vec::new(),
        },
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    Node::new(cacheless(NodeId(2), ids()), persisted, Instant(0)).unwrap()
}

/// An Append from leader 1 of term `term` that carries no entry and commits `commit`.
fn commit_message(term: u64, prev: (u64, u64), commit: u64) -> Message {
    Message {
        from: NodeId(1),
        to: NodeId(2),
        term: Term(term),
        incarnation: Incarnation(1),
        body: MessageBody::Append(Append {
            prev_index: LogIndex(prev.0),
            prev_term: Term(prev.1),
            entries: Vec::new(),
            leader_commit: LogIndex(commit),
            round: 0,
        }),
    }
}

fn reads(outputs: &[Output]) -> Vec<(LogReadId, LogIndex, LogIndex)> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::ReadLog { id, from, to, .. } => Some((*id, *from, *to)),
            _ => None,
        })
        .collect()
}

fn applies(outputs: &[Output]) -> Vec<Vec<Entry>> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Apply { entries } => Some(entries.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn s9_entries_not_cached_are_read_back_and_applied_in_order() {
    check!(s9_apply_reads_evicted_entries);
    check!(s9_apply_from_read_entries);
    let mut node = follower_without_tail();
    assert_eq!(node.log_cache().bytes, 0, "the start loaded no payload");
    node.on_message(Instant(0), commit_message(1, (4, 1), 4));
    let outputs = node.take_outputs();
    assert_eq!(
        outputs,
        vec![
            Output::ReadLog {
                id: LogReadId(0),
                from: LogIndex(1),
                to: LogIndex(4),
                max_bytes: 100,
            },
            Output::Send(Message {
                from: NodeId(2),
                to: NodeId(1),
                term: Term(1),
                incarnation: Incarnation(1),
                body: MessageBody::AppendReply(AppendReply {
                    result: AppendResult::Accepted {
                        match_index: LogIndex(4)
                    },
                    round: 0,
                    repair_from: None,
                }),
            }),
        ]
    );
    // A shorter answer (contract (b)): apply what came, read on from there.
    node.on_log_read(
        Instant(1),
        LogReadId(0),
        LogReadResult::Entries(entries(1, 2, 1)),
    )
    .unwrap();
    let outputs = node.take_outputs();
    assert_eq!(applies(&outputs), vec![entries(1, 2, 1)]);
    assert_eq!(
        reads(&outputs),
        vec![(LogReadId(1), LogIndex(3), LogIndex(4))]
    );
    node.on_log_read(
        Instant(2),
        LogReadId(1),
        LogReadResult::Entries(entries(3, 4, 1)),
    )
    .unwrap();
    assert_eq!(applies(&node.take_outputs()), vec![entries(3, 4, 1)]);
    assert_eq!(node.status().applied_index, LogIndex(4));
}

#[test]
fn s9_a_stale_answer_after_the_log_was_truncated_is_ignored() {
    check!(s9_stale_read_entries_ignored);
    check!(s9_stale_apply_read_ignored);
    let mut node = follower_without_tail();
    node.on_message(Instant(0), commit_message(1, (4, 1), 2));
    assert_eq!(
        reads(&node.take_outputs()),
        vec![(LogReadId(0), LogIndex(1), LogIndex(2))]
    );
    // Before the answer, an install at (6, 2) discards the whole log (S7 step 1: a
    // `TruncateLog` from 1) and moves applied to 6.
    let image = Bytes::from_static(b"image");
    let meta = SnapshotMeta {
        last: LogPosition {
            index: LogIndex(6),
            term: Term(2),
        },
        size: image.len() as u64,
        ..SnapshotMeta::default()
    };
    let chunk = MessageBody::InstallSnapshot(InstallSnapshot {
        snapshot: meta,
        offset: 0,
        data: image,
        last: true,
    });
    let mut message = commit_message(2, (0, 0), 0);
    message.body = chunk;
    node.on_message(Instant(1), message);
    let _ = node.take_outputs();
    node.on_snapshot_installed(Instant(2), meta);
    let outputs = node.take_outputs();
    assert!(outputs.contains(&Output::TruncateLog { from: LogIndex(1) }));
    assert_eq!(node.status().applied_index, LogIndex(6));
    // The old answer's entries are no longer in the log: nothing is applied from them.
    node.on_log_read(
        Instant(3),
        LogReadId(0),
        LogReadResult::Entries(entries(1, 2, 1)),
    )
    .unwrap();
    let outputs = node.take_outputs();
    assert!(applies(&outputs).is_empty(), "{outputs:?}");
    assert!(reads(&outputs).is_empty(), "{outputs:?}");
    assert_eq!(node.status().applied_index, LogIndex(6));
}

#[test]
fn s9_a_fault_answer_stops_the_node_and_an_unknown_answer_is_ignored() {
    check!(s9_read_fault_stops_the_node);
    check!(s9_unknown_read_answer_ignored);
    let mut node = follower_without_tail();
    assert_eq!(
        node.on_log_read(Instant(0), LogReadId(7), LogReadResult::Compacted),
        Ok(())
    );
    assert!(node.take_outputs().is_empty());
    node.on_message(Instant(0), commit_message(1, (4, 1), 4));
    let _ = node.take_outputs();
    let fault = node
        .on_log_read(Instant(1), LogReadId(0), LogReadResult::Fault(LogIndex(3)))
        .unwrap_err();
    assert_eq!(
        fault,
        LogFault {
            read: LogReadId(0),
            index: LogIndex(3)
        }
    );
    assert_eq!(node.fault(), Some(fault));
    assert!(fault.to_string().contains("index 3"), "{fault}");
    assert_eq!(node.status().applied_index, LogIndex(0), "nothing applied");
    // Compacted below the applied index + 1 breaks S4 at the driver: a fault too.
    let mut node = follower_without_tail();
    node.on_message(Instant(0), commit_message(1, (4, 1), 4));
    let _ = node.take_outputs();
    let fault = node
        .on_log_read(Instant(1), LogReadId(0), LogReadResult::Compacted)
        .unwrap_err();
    assert_eq!(fault.index, LogIndex(1));
}

/// A cacheless cluster whose follower `behind` missed entries 3..=5 (committed by the other
/// two, so evicted from the leader's cache), restarted, with the leader's reads held.
fn cluster_with_a_follower_behind(snapshots: bool) -> (Cluster, NodeId, u64) {
    let mut cluster = Cluster::with_config_recorded(3, cacheless);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.propose(leader, "a").unwrap();
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    let behind = if leader == NodeId(3) { 2 } else { 3 };
    cluster.crash(behind);
    for payload in ["b", "c", "d"] {
        cluster.propose(leader, payload).unwrap();
    }
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    let cache = cluster.node(leader.0).log_cache();
    assert_eq!(cache.bytes, 0, "committed entries are evicted: {cache:?}");
    assert_eq!(cluster.node(leader.0).status().commit_index, LogIndex(5));
    if snapshots {
        assert!(cluster.request_snapshot(leader.0).is_some());
    }
    cluster.hold_log_reads = true;
    cluster.start(NodeId(behind));
    cluster.advance(60 * MS);
    cluster.deliver_all();
    (cluster, leader, behind)
}

#[test]
fn s9_a_follower_behind_the_cache_is_sent_entries_read_back() {
    check!(s9_cache_evicts_committed_entries);
    check!(s9_append_reads_evicted_entries);
    check!(s9_append_from_read_entries);
    let (mut cluster, leader, behind) = cluster_with_a_follower_behind(false);
    let held = cluster.held_log_reads[&leader].clone();
    assert_eq!(held.len(), 1, "one read per follower: {held:?}");
    assert_eq!(held[0].from, LogIndex(3));
    cluster.hold_log_reads = false;
    cluster.answer_log_read(leader.0, 0, None).unwrap();
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    assert_eq!(cluster.applied_payloads(behind), vec!["a", "b", "c", "d"]);
    // Read answers are traced inputs: the leader's run replays exactly.
    let node = cluster.node(leader.0);
    let replayed = crate::replay::replay(node.trace().unwrap()).unwrap();
    assert_eq!(
        replayed.outputs,
        crate::trace::as_replayed(&cluster.outputs[&leader])
    );
    assert_eq!(replayed.node.status(), node.status());
    assert_eq!(replayed.node.log_cache(), node.log_cache());
}

#[test]
fn s9_a_read_answer_for_a_follower_that_moved_on_is_not_sent() {
    check!(s9_stale_read_for_follower_ignored);
    let (mut cluster, leader, behind) = cluster_with_a_follower_behind(false);
    // Before the answer, the leader hears of a higher term and steps down (E6): nobody's
    // progress asks for the read's entries any more.
    let term = cluster.node(leader.0).status().term;
    let other = (1..=3).find(|id| *id != leader.0 && *id != behind).unwrap();
    let reply = Message {
        from: NodeId(other),
        to: leader,
        term: term.next(),
        incarnation: Incarnation(1),
        body: MessageBody::AppendReply(AppendReply {
            result: AppendResult::Accepted {
                match_index: LogIndex(0),
            },
            round: 0,
            repair_from: None,
        }),
    };
    let now = cluster.now;
    cluster
        .nodes
        .get_mut(&leader)
        .unwrap()
        .on_message(now, reply);
    cluster.perform(leader);
    assert_eq!(cluster.node(leader.0).status().role, Role::Passive);
    cluster.drop_all();
    cluster.answer_log_read(leader.0, 0, None).unwrap();
    let from_the_read = cluster.count_in_flight(
        |m| matches!(&m.body, MessageBody::Append(a) if a.prev_index == LogIndex(2)),
    );
    assert_eq!(from_the_read, 0, "no Append from the stale read");
}

#[test]
fn s9_a_compacted_answer_switches_the_follower_to_a_snapshot() {
    check!(s9_compacted_read_falls_back_to_snapshot);
    let (mut cluster, leader, behind) = cluster_with_a_follower_behind(true);
    assert!(cluster.node(leader.0).snapshot().is_some());
    assert_eq!(cluster.held_log_reads[&leader].len(), 1);
    cluster.hold_log_reads = false;
    cluster
        .answer_log_read(leader.0, 0, Some(LogReadResult::Compacted))
        .unwrap();
    assert!(
        cluster.outputs[&leader]
            .iter()
            .any(|o| matches!(o, Output::ReadSnapshot { to, .. } if to.0 == behind)),
        "the leader sends its snapshot"
    );
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    let status = cluster.node(behind).status();
    assert_eq!(status.snapshot_index, LogIndex(5));
    assert_eq!(status.applied_index, LogIndex(5));
}
