//! One test per snapshot rule (S2–S8) and its negative cases, each checking the coverage marks
//! at the branches that implement it, as `rule_tests.rs` does for E0–E8 and R1–R11;
//! `docs/protocol.md` lists rule → function → test. Single-node tests assert on the exact,
//! ordered output list; multi-node tests drive a [`crate::testkit::Cluster`] by hand.

use std::time::Duration;

use bytes::Bytes;

use crate::marks::check;
use crate::testkit::{Cluster, decode_image, entries, entry};
use crate::*;

const MS: Duration = Duration::from_millis(1);

fn position(index: u64, term: u64) -> LogPosition {
    LogPosition {
        index: LogIndex(index),
        term: Term(term),
    }
}

fn meta(index: u64, term: u64, size: u64) -> SnapshotMeta {
    SnapshotMeta {
        last: position(index, term),
        size,
        configuration: Configuration::new(&[NodeId(1), NodeId(2), NodeId(3)], &[]).unwrap(),
    }
}

/// Snapshots every 4 applied entries, 1 entry retained, chunks of 16 bytes, 2 in flight.
fn snapshot_config(id: NodeId, members: Vec<NodeId>) -> Config {
    let mut config = Config::lan(id, members, 42);
    config.snapshot_interval_entries = Some(4);
    config.retain_entries = 1;
    config.snapshot_chunk_bytes = 16;
    config.snapshot_chunks_inflight_max = 2;
    config
}

fn follower(term: u64, snapshot: Option<SnapshotMeta>, log: Vec<Entry>) -> Node {
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(term),
            voted_for: None,
        },
        snapshot,
        log: crate::types::PersistedLog::from_entries(log),
        incarnation: Incarnation(1),
        ..Persisted::default()
    };
    Node::new(snapshot_config(NodeId(2), ids()), persisted, Instant(0)).unwrap()
}

fn ids() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
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

fn chunk(snapshot: SnapshotMeta, offset: u64, data: &'static [u8]) -> MessageBody {
    MessageBody::InstallSnapshot(InstallSnapshot {
        snapshot,
        offset,
        data: Bytes::from_static(data),
        last: offset + data.len() as u64 == snapshot.size,
    })
}

fn snapshot_reply(
    from: u64,
    to: u64,
    term: u64,
    at: LogPosition,
    result: SnapshotResult,
) -> Output {
    Output::Send(message(
        from,
        to,
        term,
        MessageBody::SnapshotReply(SnapshotReply {
            snapshot: at,
            result,
        }),
    ))
}

fn save(term: u64) -> Output {
    Output::SaveHardState(HardState {
        current_term: Term(term),
        voted_for: None,
    })
}

fn cluster() -> Cluster {
    Cluster::with_config(3, snapshot_config)
}

fn propose_all(cluster: &mut Cluster, leader: NodeId, count: u64) {
    for i in 0..count {
        let payload: &'static str = Box::leak(format!("p{i}").into_boxed_str());
        cluster.propose(leader, payload).unwrap();
        cluster.deliver_all();
    }
    cluster.advance(60 * MS);
    cluster.deliver_all();
}

fn other_than(leader: NodeId) -> (u64, u64) {
    let others: Vec<u64> = (1..=3).filter(|id| NodeId(*id) != leader).collect();
    (others[0], others[1])
}

#[test]
fn s2_s3_s4_a_snapshot_is_taken_after_the_interval_and_compaction_waits_for_it() {
    check!(s2_snapshot_taken_after_interval);
    check!(s3_snapshot_durable);
    check!(s3_stale_snapshot_report_ignored);
    check!(s4_log_compacted_below_snapshot);
    let mut cluster = cluster();
    cluster.hold_snapshots = true;
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    propose_all(&mut cluster, leader, 7);
    let outputs = &cluster.outputs[&leader];
    let takes: Vec<&Output> = outputs
        .iter()
        .filter(|o| matches!(o, Output::TakeSnapshot { .. }))
        .collect();
    // S2: one snapshot in progress at a time, although 8 entries (no-op included) applied.
    assert_eq!(takes.len(), 1);
    let Output::TakeSnapshot { at, configuration } = *takes[0] else {
        unreachable!()
    };
    assert_eq!(at.index, LogIndex(4));
    // Right after the Apply that reached the interval.
    let take_at = outputs.iter().position(|o| o == takes[0]).unwrap();
    assert!(matches!(&outputs[take_at - 1], Output::Apply { entries }
        if entries.last().unwrap().index == LogIndex(4)));
    // S3 step 6: no compaction before the snapshot is durable.
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::CompactLog { .. }))
    );
    assert_eq!(cluster.node(leader.0).status().first_index, LogIndex(1));
    cluster.finish_snapshot(leader.0);
    let outputs = &cluster.outputs[&leader];
    // S4: below = min(applied, L) + 1 - retain = 4 + 1 - 1.
    assert!(outputs.contains(&Output::CompactLog { below: LogIndex(4) }));
    let status = cluster.node(leader.0).status();
    assert_eq!(status.snapshot_index, LogIndex(4));
    assert_eq!(status.first_index, LogIndex(4));
    // The next snapshot was asked for at once: 8 applied, 4 since the newest.
    assert!(outputs.contains(&Output::TakeSnapshot {
        at: position(8, at.term.0),
        configuration
    }));
    // A stale or repeated report changes nothing.
    let meta = cluster.snapshot_on_disk(leader.0).unwrap();
    let node = cluster.nodes.get_mut(&leader).unwrap();
    node.on_snapshot_durable(cluster.now, meta);
    assert_eq!(node.take_outputs(), vec![]);
    assert_eq!(node.snapshot(), Some(meta));
}

#[test]
fn s8_a_restart_starts_from_the_snapshot_and_redoes_an_install_truncation() {
    check!(s8_conflicting_log_discarded_at_start);
    // The log reaches the snapshot with its term: retained entries are kept above the first.
    let mut node = follower(2, Some(meta(5, 2, 10)), entries(3, 8, 2));
    let status = node.status();
    assert_eq!(status.applied_index, LogIndex(5));
    assert_eq!(status.commit_index, LogIndex(5));
    assert_eq!(status.first_index, LogIndex(4));
    assert_eq!(status.last_index, LogIndex(8));
    assert_eq!(node.take_outputs(), vec![]);
    // A crash fell between an install at (5, 2) and its TruncateLog: the log's term-1 entries
    // are an uncommitted suffix, discarded at start.
    let mut node = follower(2, Some(meta(5, 2, 10)), entries(2, 7, 1));
    assert_eq!(
        node.take_outputs(),
        vec![Output::TruncateLog { from: LogIndex(2) }]
    );
    assert_eq!(node.last_position(), position(5, 2));
    // A gap between the snapshot and the log is corruption, refused with the field named.
    let persisted = Persisted {
        snapshot: Some(meta(5, 2, 10)),
        log: crate::types::PersistedLog::from_entries(entries(8, 9, 2)),
        ..Persisted::default()
    };
    let error = Node::new(snapshot_config(NodeId(2), ids()), persisted, Instant(0)).unwrap_err();
    assert_eq!(error.field, "persisted.log");
}

#[test]
fn s8_appends_below_the_base_match_and_their_covered_entries_are_skipped() {
    check!(s8_compacted_prev_index_matches);
    check!(s8_compacted_entries_skipped);
    let mut node = follower(1, Some(meta(5, 1, 10)), vec![]);
    let append = MessageBody::Append(Append {
        prev_index: LogIndex(2),
        prev_term: Term(1),
        entries: entries(3, 7, 1),
        leader_commit: LogIndex(7),
        round: 0,
    });
    node.on_message(Instant(0), message(1, 2, 2, append));
    assert_eq!(
        node.take_outputs(),
        vec![
            save(2),
            Output::AppendLog {
                entries: entries(6, 7, 1)
            },
        ]
    );
    node.on_persisted(Instant(0), position(7, 1));
    let outputs = node.take_outputs();
    assert_eq!(
        outputs[0],
        Output::Send(message(
            2,
            1,
            2,
            MessageBody::AppendReply(AppendReply {
                result: AppendResult::Accepted {
                    match_index: LogIndex(7)
                },
                round: 0,
                repair_from: None,
            }),
        ))
    );
    assert_eq!(
        outputs[1],
        Output::Apply {
            entries: entries(6, 7, 1)
        }
    );
    // Negative case: an Append at the base with another term is rejected (R3 still holds).
    let append = MessageBody::Append(Append {
        prev_index: LogIndex(5),
        prev_term: Term(2),
        entries: vec![],
        leader_commit: LogIndex(7),
        round: 0,
    });
    node.on_message(Instant(0), message(1, 2, 2, append));
    let outputs = node.take_outputs();
    assert!(matches!(
        &outputs[..],
        [Output::Send(Message {
            body: MessageBody::AppendReply(AppendReply {
                result: AppendResult::Rejected(_),
                ..
            }),
            ..
        })]
    ));
}

#[test]
fn s5_s6_s7_a_follower_behind_the_compaction_gets_the_snapshot() {
    check!(s5_follower_needs_compacted_entry);
    check!(s5_snapshot_chunk_sent);
    check!(s6_transfer_started);
    check!(s6_chunk_written);
    check!(s7_log_without_snapshot_position_discarded);
    check!(s7_state_machine_restored);
    check!(s5_installed_snapshot_resumes_appends);
    let mut cluster = cluster();
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    let (other, behind) = other_than(leader);
    cluster.crash(behind);
    propose_all(&mut cluster, leader, 10);
    assert!(cluster.node(leader.0).status().first_index > LogIndex(2));
    cluster.start(NodeId(behind));
    cluster.advance(60 * MS);
    cluster.deliver_all();
    let leader_state = &cluster.applied[&leader];
    assert_eq!(cluster.applied[&NodeId(behind)], *leader_state);
    assert_eq!(cluster.applied[&NodeId(other)], *leader_state);
    let status = cluster.node(behind).status();
    assert!(status.snapshot_index > LogIndex(0));
    assert_eq!(
        status.applied_index,
        cluster.node(leader.0).status().applied_index
    );
    // It was a transfer of the whole file in chunks of at most 16 bytes.
    let chunks = cluster.outputs[&NodeId(behind)]
        .iter()
        .filter(|o| matches!(o, Output::WriteSnapshotChunk { data, .. } if data.len() <= 16))
        .count();
    assert!(chunks > 2, "{chunks} chunks");
    // Appends carry on after the install.
    cluster.propose(leader, "after").unwrap();
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    assert_eq!(cluster.applied_payloads(behind).last().unwrap(), "after");
}

#[test]
fn s5_s6_a_lost_chunk_is_resent_from_the_offset_the_follower_holds() {
    check!(s5_lost_chunk_resent);
    check!(s6_chunk_out_of_order_answered);
    let mut cluster = cluster();
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    let (_, behind) = other_than(leader);
    cluster.crash(behind);
    propose_all(&mut cluster, leader, 10);
    cluster.start(NodeId(behind));
    cluster.advance(60 * MS);
    // Deliver everything but the first chunk at offset 16.
    let mut dropped = false;
    for _ in 0..1_000 {
        let Some(next) = cluster.in_flight.first() else {
            break;
        };
        let is_second_chunk = matches!(&next.body,
            MessageBody::InstallSnapshot(chunk) if chunk.offset == 16);
        if is_second_chunk && !dropped {
            dropped = true;
            cluster.in_flight.remove(0);
        } else {
            cluster.deliver_at(0);
        }
    }
    assert!(dropped);
    assert_eq!(cluster.applied[&NodeId(behind)], cluster.applied[&leader]);
}

#[test]
fn s5_a_transfer_keeps_heartbeats_and_ignores_stale_reads_and_restarts_on_a_new_snapshot() {
    check!(s5_heartbeat_during_transfer);
    check!(s5_failed_snapshot_read_ignored);
    check!(s5_stale_snapshot_read_ignored);
    check!(s5_new_snapshot_restarts_transfer);
    let mut cluster = cluster();
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    let (_, behind) = other_than(leader);
    let to_behind = NodeId(behind);
    cluster.crash(behind);
    propose_all(&mut cluster, leader, 6);
    cluster.start(to_behind);
    cluster.advance(60 * MS);
    // The probe and its rejection pass; every chunk is lost.
    cluster.deliver_where(|m| !matches!(m.body, MessageBody::InstallSnapshot(_)));
    let old = cluster.node(leader.0).snapshot().unwrap();
    cluster.advance(60 * MS);
    let heartbeat = cluster.in_flight.iter().any(|m| {
        m.to == to_behind
            && matches!(&m.body, MessageBody::Append(a) if a.prev_index == LogIndex(0)
                && a.entries.is_empty())
    });
    assert!(heartbeat, "{:?}", cluster.in_flight);
    cluster.deliver_where(|m| !matches!(m.body, MessageBody::InstallSnapshot(_)));
    // Late or failed answers to reads send nothing.
    let now = cluster.now;
    let node = cluster.nodes.get_mut(&leader).unwrap();
    node.on_snapshot_read(now, to_behind, old.last, 0, Err(SnapshotReadError::Failed));
    assert_eq!(node.take_outputs(), vec![]);
    let other_snapshot = position(old.last.index.0 - 1, old.last.term.0);
    node.on_snapshot_read(
        now,
        to_behind,
        other_snapshot,
        0,
        Ok(Bytes::from_static(b"x")),
    );
    assert_eq!(node.take_outputs(), vec![]);
    // A newer snapshot replaces the file: the transfer starts over with it, at 0.
    propose_all(&mut cluster, leader, 4);
    let new = cluster.node(leader.0).snapshot().unwrap();
    assert!(old.last < new.last);
    assert!(cluster.outputs[&leader].contains(&Output::ReadSnapshot {
        to: to_behind,
        snapshot: new.last,
        offset: 0,
        len: 16,
    }));
}

#[test]
fn s7_a_matching_suffix_is_kept_and_a_damaged_file_is_received_again() {
    check!(s7_matching_log_suffix_kept);
    check!(s7_damaged_snapshot_received_again);
    let mut node = follower(1, None, entries(1, 10, 1));
    let snapshot = meta(8, 1, 4);
    node.on_message(Instant(0), message(1, 2, 2, chunk(snapshot, 0, b"imag")));
    let write = Output::WriteSnapshotChunk {
        snapshot,
        offset: 0,
        data: Bytes::from_static(b"imag"),
        last: true,
    };
    assert_eq!(node.take_outputs(), vec![save(2), write.clone()]);
    // The driver finds the file damaged: the transfer restarts at 0.
    node.on_snapshot_install_failed(Instant(0), snapshot);
    let restart = SnapshotResult::NextOffset(0);
    assert_eq!(
        node.take_outputs(),
        vec![snapshot_reply(2, 1, 2, snapshot.last, restart)]
    );
    node.on_message(Instant(0), message(1, 2, 2, chunk(snapshot, 0, b"imag")));
    assert_eq!(node.take_outputs(), vec![write]);
    node.on_snapshot_installed(Instant(0), snapshot);
    let installed = SnapshotResult::Installed(LogIndex(8));
    assert_eq!(
        node.take_outputs(),
        vec![
            Output::RestoreStateMachine { snapshot },
            snapshot_reply(2, 1, 2, snapshot.last, installed),
            // S4 with one retained entry: min(applied, L) + 1 - 1.
            Output::CompactLog { below: LogIndex(8) },
        ]
    );
    let status = node.status();
    assert_eq!(status.applied_index, LogIndex(8));
    assert_eq!(status.last_index, LogIndex(10), "the suffix after L stays");
    assert_eq!(node.entry(LogIndex(10)), Some(&entry(10, 1)));
}

#[test]
fn s7_a_snapshot_already_applied_is_acknowledged_without_a_restore() {
    check!(s7_snapshot_already_applied);
    check!(s7_install_overtaken_by_apply);
    let mut node = follower(1, Some(meta(8, 1, 10)), entries(8, 10, 1));
    node.on_message(
        Instant(0),
        message(1, 2, 2, chunk(meta(6, 1, 4), 0, b"imag")),
    );
    let installed = SnapshotResult::Installed(LogIndex(6));
    assert_eq!(
        node.take_outputs(),
        vec![save(2), snapshot_reply(2, 1, 2, position(6, 1), installed)]
    );
    // The whole file of (9, 1) arrives; while it is verified, Appends commit 9 and 10.
    let snapshot = meta(9, 1, 4);
    node.on_message(Instant(0), message(1, 2, 2, chunk(snapshot, 0, b"imag")));
    let append = MessageBody::Append(Append {
        prev_index: LogIndex(10),
        prev_term: Term(1),
        entries: vec![],
        leader_commit: LogIndex(10),
        round: 0,
    });
    node.on_message(Instant(0), message(1, 2, 2, append));
    assert_eq!(node.status().applied_index, LogIndex(10));
    let _ = node.take_outputs();
    node.on_snapshot_installed(Instant(0), snapshot);
    let outputs = node.take_outputs();
    assert!(
        !outputs
            .iter()
            .any(|o| matches!(o, Output::RestoreStateMachine { .. }))
    );
    assert_eq!(node.status().applied_index, LogIndex(10));
    assert_eq!(node.snapshot(), Some(snapshot));
}

#[test]
fn e6_stale_snapshot_messages_are_answered_or_ignored() {
    check!(e6_stale_install_snapshot_answered);
    check!(e6_stale_snapshot_reply_ignored);
    let mut node = follower(5, None, entries(1, 3, 1));
    let snapshot = meta(3, 1, 4);
    node.on_message(Instant(0), message(1, 2, 3, chunk(snapshot, 0, b"imag")));
    let stale = SnapshotResult::NextOffset(0);
    assert_eq!(
        node.take_outputs(),
        vec![snapshot_reply(2, 1, 5, snapshot.last, stale)]
    );
    let mut cluster = cluster();
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    let (other, _) = other_than(leader);
    let now = cluster.now;
    let node = cluster.nodes.get_mut(&leader).unwrap();
    let term = node.status().term.0;
    let reply = MessageBody::SnapshotReply(SnapshotReply {
        snapshot: position(1, 1),
        result: SnapshotResult::Installed(LogIndex(1)),
    });
    node.on_message(now, message(other, leader.0, term - 1, reply));
    assert_eq!(node.take_outputs(), vec![]);
}

#[test]
fn the_testkit_image_round_trips() {
    let applied = entries(1, 3, 1);
    let image = testkit::encode_image(&applied);
    assert_eq!(decode_image(&image), Some(applied));
    assert_eq!(decode_image(&image[..image.len() - 1]), None);
}

#[test]
fn s6_a_new_leader_may_send_an_older_snapshot_than_the_one_under_way() {
    let mut node = follower(1, None, entries(1, 3, 1));
    let newer = meta(9, 1, 8);
    node.on_message(Instant(0), message(1, 2, 2, chunk(newer, 0, b"part")));
    let _ = node.take_outputs();
    // Leader 1 is gone; leader 3 of term 3 holds an older snapshot, and sends it from 0.
    let older = meta(6, 1, 4);
    node.on_message(Instant(0), message(3, 2, 3, chunk(older, 0, b"imag")));
    let write = Output::WriteSnapshotChunk {
        snapshot: older,
        offset: 0,
        data: Bytes::from_static(b"imag"),
        last: true,
    };
    assert_eq!(node.take_outputs(), vec![save(3), write]);
}

#[test]
fn s2_a_requested_snapshot_is_taken_at_the_applied_index_once() {
    check!(s2_snapshot_requested);
    check!(s2_requested_snapshot_already_covered);
    // No interval: only the request takes a snapshot.
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = snapshot_config(id, members);
        config.snapshot_interval_entries = None;
        config
    });
    cluster.hold_snapshots = true;
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    propose_all(&mut cluster, leader, 2);
    let takes = |cluster: &Cluster| {
        let outputs = &cluster.outputs[&leader];
        let take = |o: &&Output| matches!(o, Output::TakeSnapshot { .. });
        outputs.iter().filter(take).count()
    };
    assert_eq!(takes(&cluster), 0, "no interval, no snapshot");
    let applied = cluster.node(leader.0).status().applied_index;
    let at = cluster.request_snapshot(leader.0).unwrap();
    assert_eq!(at.index, applied);
    let configuration = cluster.node(leader.0).configuration();
    assert!(cluster.outputs[&leader].contains(&Output::TakeSnapshot { at, configuration }));
    // Asked again while it is taken: the same position, no second snapshot.
    assert_eq!(cluster.request_snapshot(leader.0), Some(at));
    assert_eq!(takes(&cluster), 1);
    cluster.finish_snapshot(leader.0);
    assert_eq!(cluster.node(leader.0).status().snapshot_index, at.index);
    // Nothing applied since: nothing to take.
    assert_eq!(cluster.request_snapshot(leader.0), None);
    assert_eq!(takes(&cluster), 1);
}
