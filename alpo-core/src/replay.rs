//! Replaying an input trace (see `trace`) into a fresh node, to reproduce a recorded run.
//!
//! Invariant: replaying a trace gives the same outputs and the same state as the recorded run
//! (tested below), and the replayed node, which records again, ends with the same trace bytes.

use crate::error::{ProposeError, TraceError};
use crate::node::{Node, Proposal};
use crate::output::Output;
use crate::trace::{Decoder, Record};

/// The result of replaying a trace.
#[derive(Debug)]
pub struct Replay {
    /// The node, in the state the recorded node reached.
    pub node: Node,
    /// Every output the replayed node produced, concatenated in `take_outputs` order.
    pub outputs: Vec<Output>,
    /// What each `propose` returned, in order.
    pub proposals: Vec<Result<Proposal, ProposeError>>,
}

/// Replays a recorded trace into a fresh node; the node records again, so its own trace equals
/// `trace` afterwards.
pub fn replay(trace: &[u8]) -> Result<Replay, TraceError> {
    let (mut decoder, start) = Decoder::start(trace)?;
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
    let mut outputs = Vec::new();
    let mut proposals = Vec::new();
    while let Some(record) = decoder.next_record()? {
        match record {
            Record::Tick(now) => node.tick(now),
            Record::Message(now, message) => node.on_message(now, message),
            Record::Propose(now, payload) => proposals.push(node.propose(now, payload)),
            Record::Persisted(now, position) => node.on_persisted(now, position),
            Record::TakeOutputs => outputs.extend(node.take_outputs()),
            Record::SnapshotDurable(now, meta) => node.on_snapshot_durable(now, meta),
            Record::SnapshotRead(now, read, result) => {
                node.on_snapshot_read(now, read.to, read.snapshot, read.offset, result);
            }
            Record::SnapshotInstalled(now, meta, true) => node.on_snapshot_installed(now, meta),
            Record::SnapshotInstalled(now, meta, false) => {
                node.on_snapshot_install_failed(now, meta);
            }
            Record::ReadIndex(now, id, mode) => node.read_index(now, id, mode),
            Record::SnapshotRequested(now) => {
                let _ = node.request_snapshot(now);
            }
            Record::LogRead(now, id, result) => {
                // A fault answer is the recorded run's too: the node keeps it (`Node::fault`).
                let _ = node.on_log_read(now, id, result);
            }
            Record::ConfigChange(now, change) => {
                let _ = node.propose_config_change(now, change);
            }
            Record::Transfer(now, target) => {
                let _ = node.transfer_leadership(now, target);
            }
        }
    }
    Ok(Replay {
        node,
        outputs,
        proposals,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::testkit::Cluster;
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
            assert_eq!(replay.outputs, cluster.outputs[&NodeId(id)], "node {id}");
            assert_eq!(replay.node.status(), node.status());
            assert_eq!(replay.node.hard_state(), node.hard_state());
            assert_eq!(replay.node.next_timeout(), node.next_timeout());
            let last = node.status().last_index.0;
            for index in 1..=last {
                assert_eq!(
                    replay.node.entry(LogIndex(index)),
                    node.entry(LogIndex(index))
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
            "corrupt trace at byte 8: trace version 9, expected 3"
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
            assert_eq!(replay.outputs, tail, "node {id}");
            assert_eq!(replay.node.status(), node.status(), "node {id}");
            assert_eq!(replay.node.snapshot(), node.snapshot(), "node {id}");
        }
    }
}
