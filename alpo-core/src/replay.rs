//! Replaying an input trace (see `trace`) into a fresh node, to reproduce a recorded run.
//!
//! Invariant: replaying a trace gives the same outputs and the same state as the recorded run
//! (tested below), but for the bytes of opaque payloads, which are zeros of the recorded length
//! (trace format 4: `trace::as_replayed` is the recorded outputs in that form), and the replayed
//! node, which records again, ends with the same trace bytes.

use crate::error::{ProposeError, TraceError};
use crate::message::Message;
use crate::node::{Node, Proposal};
use crate::output::Output;
use crate::trace::{Decoder, Record, Start, outputs_digest};
use crate::types::Instant;

/// The result of replaying a trace.
#[derive(Debug)]
pub struct Replay {
    /// The node, in the state the recorded node reached.
    pub node: Node,
    /// Every output the replayed node produced, concatenated in `take_outputs` order.
    pub outputs: Vec<Output>,
    /// What each `propose` returned, in order.
    pub proposals: Vec<Result<Proposal, ProposeError>>,
    /// Where an incomplete final record starts, when `replay_watched` was told to accept one
    /// (the trace of a process that died while recording); `None` when the trace ends whole.
    pub torn_tail: Option<u64>,
}

/// One replayed input, as [`replay_watched`] shows it to its watcher.
#[derive(Debug)]
pub struct Step<'a> {
    /// Where the input's record starts in the trace.
    pub offset: u64,
    /// The input's time (`None` for the taking of outputs, which has none).
    pub now: Option<Instant>,
    /// The input, in the core's words: `tick`, `message`, `propose`, `persisted`,
    /// `take_outputs`, `snapshot_durable`, `snapshot_read`, `snapshot_installed`,
    /// `snapshot_install_failed`, `snapshot_requested`.
    pub input: &'static str,
    /// The message, for a `message` input.
    pub message: Option<&'a Message>,
    /// The node after the input.
    pub node: &'a Node,
    /// The outputs taken, for a `take_outputs` input (checked against the recorded digest).
    pub outputs: &'a [Output],
}

/// Replays a recorded trace into a fresh node; the node records again, so its own trace equals
/// `trace` afterwards. Every batch of outputs is checked against the recorded digest: a
/// difference is [`TraceError::Diverged`].
pub fn replay(trace: &[u8]) -> Result<Replay, TraceError> {
    replay_watched(trace, false, &mut |_| {})
}

/// Like [`replay`], showing each input to `watch` after the node took it. With
/// `torn_tail_ok`, a trace whose last record is incomplete (for want of bytes: what a crash
/// while recording leaves) replays up to it, and [`Replay::torn_tail`] says where it starts.
pub fn replay_watched(
    trace: &[u8],
    torn_tail_ok: bool,
    watch: &mut dyn FnMut(&Step<'_>),
) -> Result<Replay, TraceError> {
    let (mut decoder, start) = Decoder::start(trace)?;
    let mut node = fresh_node(&decoder, start)?;
    let mut outputs = Vec::new();
    let mut proposals = Vec::new();
    let mut torn_tail = None;
    loop {
        let offset = decoder.offset();
        let record = match decoder.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(_) if torn_tail_ok && decoder.ran_out() => {
                torn_tail = Some(offset as u64);
                break;
            }
            Err(error) => return Err(error),
        };
        let fed = feed(&mut node, record, &mut proposals);
        if fed.diverged {
            return Err(TraceError::Diverged {
                offset: offset as u64,
                outputs: format!("{:?}", fed.taken),
            });
        }
        watch(&Step {
            offset: offset as u64,
            now: fed.now,
            input: fed.input,
            message: fed.message.as_ref(),
            node: &node,
            outputs: &fed.taken,
        });
        outputs.extend(fed.taken);
    }
    Ok(Replay {
        node,
        outputs,
        proposals,
        torn_tail,
    })
}

/// The node a trace's `start` record describes, with the injected bug it names, if any.
fn fresh_node(decoder: &Decoder<'_>, start: Start) -> Result<Node, TraceError> {
    #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
    let mut node =
        Node::new_recorded(start.config, start.persisted, start.now).map_err(TraceError::Config)?;
    if start.bug_code != 0 {
        #[cfg(feature = "sim")]
        match crate::injected::InjectedBug::from_code(start.bug_code) {
            Some(bug) => node.inject_bug(bug),
            None => {
                let problem = format!("injected bug {}", start.bug_code);
                return Err(decoder.error(start.bug_offset, &problem));
            }
        }
        #[cfg(not(feature = "sim"))]
        return Err(decoder.error(
            start.bug_offset,
            &format!(
                "injected bug {} (replay it with alpo-core's `sim` feature)",
                start.bug_code
            ),
        ));
    }
    Ok(node)
}

/// What feeding one record did.
struct Fed {
    now: Option<Instant>,
    input: &'static str,
    message: Option<Message>,
    /// The outputs taken, for a `take_outputs` record.
    taken: Vec<Output>,
    /// They differ from the recorded digest.
    diverged: bool,
}

/// Gives `record` to `node`, as the recorded driver did.
fn feed(
    node: &mut Node,
    record: Record,
    proposals: &mut Vec<Result<Proposal, ProposeError>>,
) -> Fed {
    let mut fed = Fed {
        now: None,
        input: "",
        message: None,
        taken: Vec::new(),
        diverged: false,
    };
    let (now, input) = match record {
        Record::Tick(now) => {
            node.tick(now);
            (Some(now), "tick")
        }
        Record::Message(now, received) => {
            fed.message = Some(received.clone());
            node.on_message(now, received);
            (Some(now), "message")
        }
        Record::Propose(now, payload) => {
            proposals.push(node.propose(now, payload));
            (Some(now), "propose")
        }
        Record::Persisted(now, position) => {
            node.on_persisted(now, position);
            (Some(now), "persisted")
        }
        Record::TakeOutputs(digest) => {
            fed.taken = node.take_outputs();
            fed.diverged = outputs_digest(&fed.taken) != digest;
            (None, "take_outputs")
        }
        Record::SnapshotDurable(now, meta) => {
            node.on_snapshot_durable(now, meta);
            (Some(now), "snapshot_durable")
        }
        Record::SnapshotRead(now, read, result) => {
            node.on_snapshot_read(now, read.to, read.snapshot, read.offset, result);
            (Some(now), "snapshot_read")
        }
        Record::SnapshotInstalled(now, meta, true) => {
            node.on_snapshot_installed(now, meta);
            (Some(now), "snapshot_installed")
        }
        Record::SnapshotInstalled(now, meta, false) => {
            node.on_snapshot_install_failed(now, meta);
            (Some(now), "snapshot_install_failed")
        }
        Record::SnapshotRequested(now) => {
            let _ = node.request_snapshot(now);
            (Some(now), "snapshot_requested")
        }
        Record::ReadIndex(now, id, mode) => {
            node.read_index(now, id, mode);
            (Some(now), "read_index")
        }
        Record::LogRead(now, id, result) => {
            // A fault answer is the recorded run's too: the node keeps it (`Node::fault`).
            let _ = node.on_log_read(now, id, result);
            (Some(now), "log_read")
        }
        other => feed_membership(node, other),
    };
    fed.now = now;
    fed.input = input;
    fed
}

/// The membership records (issue 12): `now` and the input's name.
fn feed_membership(node: &mut Node, record: Record) -> (Option<Instant>, &'static str) {
    match record {
        Record::ConfigChange(now, change) => {
            let _ = node.propose_config_change(now, change);
            (Some(now), "config_change")
        }
        Record::Transfer(now, target) => {
            let _ = node.transfer_leadership(now, target);
            (Some(now), "transfer")
        }
        Record::ConfigAnnex(annex) => {
            node.set_config_annex(annex);
            (None, "config_annex")
        }
        other => unreachable!("invariant: feed routes only membership records here: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::testkit::Cluster;
    use crate::trace::{as_replayed, entry_as_replayed};
    use crate::types::{LogIndex, NodeId};

    fn recorded_run() -> Cluster {
        let mut cluster = Cluster::new_recorded(3, 99);
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        for payload in ["a", "b", "c"] {
            cluster.propose(leader, payload).unwrap();
        }
        cluster.deliver_all();
        cluster.advance(Duration::from_millis(60));
        cluster.deliver_all();
        assert_eq!(cluster.applied_payloads(1), vec!["a", "b", "c"]);
        // Reads (rules Q1, Q2) are inputs too: one at the leader, one at each follower.
        for id in 1..=3 {
            cluster.read(id, id, crate::node::ReadMode::Linearizable);
        }
        cluster.deliver_all();
        assert_eq!(cluster.reads.len(), 3);
        assert!(cluster.reads.iter().all(|read| read.result.is_ok()));
        cluster
    }

    #[test]
    fn replay_reproduces_state_and_outputs() {
        let cluster = recorded_run();
        for id in 1..=3 {
            let node = cluster.node(id);
            let trace = node.trace().unwrap();
            let replay = replay(trace).unwrap();
            assert_eq!(
                replay.outputs,
                as_replayed(&cluster.outputs[&NodeId(id)]),
                "node {id}"
            );
            assert_eq!(replay.node.status(), node.status());
            assert_eq!(replay.node.hard_state(), node.hard_state());
            assert_eq!(replay.node.next_timeout(), node.next_timeout());
            let last = node.status().last_index.0;
            for index in 1..=last {
                assert_eq!(
                    replay.node.entry(LogIndex(index)).cloned(),
                    node.entry(LogIndex(index)).map(entry_as_replayed)
                );
            }
            assert_eq!(
                replay.node.trace().unwrap(),
                trace,
                "re-recording gives the same bytes"
            );
        }
    }

    #[test]
    fn a_trace_taken_in_pieces_is_the_whole_trace() {
        let mut cluster = Cluster::new_recorded(3, 5);
        let whole_before = cluster.node(1).trace().unwrap().to_vec();
        let mut pieces = cluster.node_mut(1).take_trace();
        assert_eq!(pieces, whole_before, "the first piece is everything so far");
        assert!(cluster.node(1).trace().unwrap().is_empty());
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        cluster.propose(leader, "x").unwrap();
        cluster.deliver_all();
        pieces.extend(cluster.node_mut(1).take_trace());
        cluster.advance(Duration::from_millis(60));
        cluster.deliver_all();
        pieces.extend(cluster.node_mut(1).take_trace());
        let replay = replay(&pieces).unwrap();
        assert_eq!(replay.node.status(), cluster.node(1).status());
        assert_eq!(replay.outputs, as_replayed(&cluster.outputs[&NodeId(1)]));
    }

    #[test]
    fn other_outputs_than_the_recorded_ones_are_a_divergence() {
        let cluster = recorded_run();
        let mut trace = cluster.node(1).trace().unwrap().to_vec();
        let mut takes = Vec::new();
        replay_watched(&trace, false, &mut |step| {
            if step.input == "take_outputs" && !step.outputs.is_empty() {
                takes.push(step.offset);
            }
        })
        .unwrap();
        let offset = takes[takes.len() / 2];
        // The digest follows the record's tag byte.
        trace[usize::try_from(offset).unwrap() + 1] ^= 1;
        match replay(&trace).unwrap_err() {
            TraceError::Diverged { offset: at, .. } => assert_eq!(at, offset),
            other => panic!("expected a divergence, got {other}"),
        }
    }

    #[test]
    fn a_torn_tail_replays_up_to_it_when_allowed() {
        let cluster = recorded_run();
        let trace = cluster.node(2).trace().unwrap();
        let torn = &trace[..trace.len() - 3];
        assert!(replay(torn).is_err());
        let replay = replay_watched(torn, true, &mut |_| {}).unwrap();
        let tail = replay.torn_tail.unwrap();
        assert!(
            tail < torn.len() as u64 && torn.len() as u64 - tail < 64,
            "{tail}"
        );
        let whole = replay_watched(trace, true, &mut |_| {}).unwrap();
        assert_eq!(whole.torn_tail, None);
    }

    /// A process killed before its recorder wrote the header and `start` record leaves a trace
    /// that ends inside them (down to an empty file): nothing to replay, said as such, whether
    /// torn tails are allowed or not; a wrong magic is still corruption.
    #[test]
    fn a_trace_torn_inside_its_start_record_is_told_apart() {
        let cluster = recorded_run();
        let trace = cluster.node(1).trace().unwrap();
        for cut in [0, 5, 10, 40] {
            for torn_tail_ok in [false, true] {
                let error = replay_watched(&trace[..cut], torn_tail_ok, &mut |_| {}).unwrap_err();
                assert!(
                    matches!(error, TraceError::TornStart { length } if length == cut as u64),
                    "{error}"
                );
            }
        }
        let mut bad = trace[..10].to_vec();
        bad[0] ^= 0xff;
        assert!(matches!(
            replay_watched(&bad, true, &mut |_| {}),
            Err(TraceError::Corrupt { .. })
        ));
    }

    #[test]
    fn damaged_traces_are_refused_with_the_offset() {
        let cluster = recorded_run();
        let trace = cluster.node(1).trace().unwrap().to_vec();
        let error = replay(&trace[..trace.len() - 3]).unwrap_err();
        assert!(matches!(error, TraceError::Corrupt { .. }), "{error}");
        let mut bad_magic = trace.clone();
        bad_magic[0] = b'X';
        assert_eq!(
            replay(&bad_magic).unwrap_err().to_string(),
            "corrupt trace at byte 0: not an ALPO trace: bad magic"
        );
        let mut bad_version = trace.clone();
        bad_version[8] = 9;
        assert_eq!(
            replay(&bad_version).unwrap_err().to_string(),
            "corrupt trace at byte 8: trace version 9, expected 5"
        );
        // Every prefix either replays or is refused: no panic on a torn trace.
        for length in 0..trace.len().min(600) {
            let _ = replay(&trace[..length]);
        }
    }

    #[test]
    fn replay_reproduces_a_run_with_snapshots_and_an_install() {
        let mut cluster = Cluster::with_config(3, |id, members| {
            let mut config = Config::lan(id, members, 77);
            config.snapshot_interval_entries = Some(3);
            config.retain_entries = 0;
            config.snapshot_chunk_bytes = 16;
            config
        });
        cluster.record = true;
        for id in 1..=3 {
            cluster.crash(id);
            cluster.start(NodeId(id));
        }
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        let behind = if leader == NodeId(3) { 2 } else { 3 };
        cluster.crash(behind);
        for payload in ["a", "b", "c", "d", "e", "f", "g"] {
            cluster.propose(leader, payload).unwrap();
            cluster.deliver_all();
        }
        let before_start = cluster.outputs.get(&NodeId(behind)).map_or(0, Vec::len);
        cluster.start(NodeId(behind));
        cluster.advance(Duration::from_millis(60));
        cluster.deliver_all();
        assert_eq!(cluster.applied[&NodeId(behind)], cluster.applied[&leader]);
        let installed = &cluster.outputs[&NodeId(behind)][before_start..];
        assert!(
            installed
                .iter()
                .any(|o| matches!(o, Output::RestoreStateMachine { .. }))
        );
        for (id, skip) in [(leader, 0), (NodeId(behind), before_start)] {
            let node = &cluster.nodes[&id];
            let replay = replay(node.trace().unwrap()).unwrap();
            // The leader's trace starts at its restart above, like its outputs' tail.
            let all = &cluster.outputs[&id];
            let tail = &all[all.len() - replay.outputs.len()..];
            assert!(skip <= all.len() - replay.outputs.len(), "node {id}");
            assert_eq!(replay.outputs, as_replayed(tail), "node {id}");
            assert_eq!(replay.node.status(), node.status(), "node {id}");
            assert_eq!(replay.node.snapshot(), node.snapshot(), "node {id}");
        }
    }
}
