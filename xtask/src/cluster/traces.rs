//! test-cluster's flight-recorder check (issue 15): after a run, every start of every node
//! (`data_dir/trace/*.alpotrc`, written by the real processes under the run's faults) is
//! replayed into a fresh core, and every batch of outputs must be the recorded one. A start is
//! a run of files cut at checkpoints (trace format 5), of which the ring may have dropped the
//! oldest: it replays from its oldest file present, and at each later file the state replayed
//! so far must be that file's checkpoint.
//!
//! Invariant: a divergence or a damaged trace is a violation naming the node, the file and the
//! byte; a final record torn by a kill is accepted (the nodes are killed at the end of a run),
//! and so is a file torn inside its `start` record (a kill right after the node created it); a
//! node that left no trace at all is a violation (the recorder is on by default).

use std::path::Path;

use anyhow::{Context, Result};

use alpo_core::replay::{Replay, check_continues};
use alpo_node::recorder::{start_of, trace_dir, trace_files};

/// What the replays found.
#[derive(Debug, Default)]
pub(crate) struct TraceSummary {
    /// Trace files replayed with identical outputs.
    pub(crate) replayed: usize,
    /// Trace files that end inside their `start` record: the node was killed before its
    /// recorder wrote it (nothing to replay; not a violation).
    pub(crate) torn_at_start: usize,
    /// Trace files replayed from the checkpoint they begin with (the first file of a start
    /// whose oldest files the ring dropped) or across it (the state replayed up to it matched).
    pub(crate) checkpoints_replayed: usize,
    /// Inputs fed to the replayed cores, all files together.
    pub(crate) inputs: u64,
    /// Of those, answers to the core's reads of entries no longer in its cache (rule S9): how
    /// often the real nodes went to their log files for replication or apply.
    pub(crate) log_reads: u64,
}

/// Replays every trace of the nodes whose data directories are `data_dirs`; problems go to
/// `violations`.
pub(crate) fn check_traces(
    data_dirs: &[std::path::PathBuf],
    violations: &mut Vec<String>,
) -> Result<TraceSummary> {
    let mut summary = TraceSummary::default();
    for (index, data_dir) in data_dirs.iter().enumerate() {
        let files = match trace_files(&trace_dir(data_dir)) {
            Ok(files) => files,
            Err(error) => {
                violations.push(format!(
                    "node n{index} left no flight-recorder trace: {error}"
                ));
                continue;
            }
        };
        if files.is_empty() {
            violations.push(format!("node n{index} left no flight-recorder trace"));
        }
        let mut previous: Option<(String, Replay)> = None;
        for (path, _) in files {
            let start = start_of(&path);
            let before = previous
                .take()
                .filter(|(last_start, _)| *last_start == start)
                .map(|(_, replay)| replay);
            let replay = replay_one(index, &path, before, &mut summary, violations)?;
            previous = replay.map(|replay| (start, replay));
        }
    }
    Ok(summary)
}

/// Replays one file, after `previous` (the replay of the file before it of the same start, if
/// any); the replay, for the next file.
fn replay_one(
    index: usize,
    path: &Path,
    previous: Option<Replay>,
    summary: &mut TraceSummary,
    violations: &mut Vec<String>,
) -> Result<Option<Replay>> {
    let trace = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Some(previous) = &previous
        && let Err(error) = check_continues(&previous.node, &trace)
    {
        violations.push(format!(
            "node n{index}'s trace {} does not go on from the file before: {error}",
            path.display()
        ));
        return Ok(None);
    }
    let mut inputs = 0;
    let mut log_reads = 0;
    let mut count = |step: &alpo_core::replay::Step<'_>| {
        inputs += 1;
        if step.input == "log_read" {
            log_reads += 1;
        }
    };
    match alpo_core::replay::replay_watched(&trace, true, &mut count) {
        Ok(replay) => {
            summary.replayed += 1;
            summary.inputs += inputs;
            summary.log_reads += log_reads;
            if replay.began.checkpoint {
                summary.checkpoints_replayed += 1;
            }
            return Ok(Some(replay));
        }
        Err(alpo_core::TraceError::TornStart { .. }) => summary.torn_at_start += 1,
        Err(error) => violations.push(format!(
            "node n{index}'s trace {} does not replay: {error}",
            path.display()
        )),
    }
    Ok(None)
}
