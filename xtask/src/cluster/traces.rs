//! test-cluster's flight-recorder check (issue 15): after a run, every start of every node
//! (`data_dir/trace/*.alpotrc`, written by the real processes under the run's faults) is
//! replayed into a fresh core, and every batch of outputs must be the recorded one.
//!
//! Invariant: a divergence or a damaged trace is a violation naming the node, the file and the
//! byte; a final record torn by a kill is accepted (the nodes are killed at the end of a run),
//! and so is a file torn inside its `start` record (a kill right after the node created it); a
//! node that left no trace at all is a violation (the recorder is on by default).

use std::path::Path;

use anyhow::{Context, Result};

use alpo_node::recorder::{trace_dir, trace_files};

/// What the replays found.
#[derive(Debug, Default)]
pub(crate) struct TraceSummary {
    /// Trace files replayed with identical outputs.
    pub(crate) replayed: usize,
    /// Trace files that end inside their `start` record: the node was killed before its
    /// recorder wrote it (nothing to replay; not a violation).
    pub(crate) torn_at_start: usize,
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
        for (path, _) in files {
            replay_one(index, &path, &mut summary, violations)?;
        }
    }
    Ok(summary)
}

fn replay_one(
    index: usize,
    path: &Path,
    summary: &mut TraceSummary,
    violations: &mut Vec<String>,
) -> Result<()> {
    let trace = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut inputs = 0;
    let mut log_reads = 0;
    let mut count = |step: &alpo_core::replay::Step<'_>| {
        inputs += 1;
        if step.input == "log_read" {
            log_reads += 1;
        }
    };
    match alpo_core::replay::replay_watched(&trace, true, &mut count) {
        Ok(_) => {
            summary.replayed += 1;
            summary.inputs += inputs;
            summary.log_reads += log_reads;
        }
        Err(alpo_core::TraceError::TornStart { .. }) => summary.torn_at_start += 1,
        Err(error) => violations.push(format!(
            "node n{index}'s trace {} does not replay: {error}",
            path.display()
        )),
    }
    Ok(())
}
