//! The end of a cluster test: wait until every node has applied the same committed prefix, turn
//! the committed log (read by `logs`) into what the append check reads, and measure progress
//! from the history.
//!
//! Invariants: the cluster counts as converged only with every node up, one leader, the same
//! commit index applied everywhere, unchanged across two polls. Entries of kind `duplicate` (a
//! retried request the session table recognised) are in the log but were not applied: the
//! append check counts only entries of kind `append`.

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use alpo_core::Role;
use alpo_node::client_protocol::{ReadEntry, ReadEntryKind};
use xtask::history::{Command, History, Outcome, Reply};
use xtask::linearizability::CommittedLog;

use super::workload::{client_options, new_client};

/// Waits until every node reports the same commit index, fully applied, with one leader, twice
/// in a row; returns that index. Fails after `timeout`, naming what each node last said.
pub(crate) fn converge(endpoints: &[SocketAddr], timeout: Duration) -> Result<u64> {
    let deadline = Instant::now() + timeout;
    let mut client = new_client(endpoints.to_vec(), client_options())?;
    let mut previous: Option<u64> = None;
    let mut last_seen = String::new();
    while Instant::now() < deadline {
        let mut commits = Vec::new();
        let mut leaders = 0;
        let mut seen = Vec::new();
        for endpoint in endpoints {
            match client.status_of(*endpoint) {
                Ok(status) => {
                    leaders += usize::from(status.role == Role::Leader);
                    seen.push(format!(
                        "{endpoint}: {:?} term {} commit {} applied {}",
                        status.role, status.term.0, status.commit_index.0, status.applied_index.0
                    ));
                    if status.applied_index == status.commit_index {
                        commits.push(status.commit_index.0);
                    }
                }
                Err(error) => {
                    seen.push(format!("{endpoint}: {error}"));
                    // A failed status call leaves the connection broken: start afresh.
                    client = new_client(endpoints.to_vec(), client_options())?;
                }
            }
        }
        last_seen = seen.join("; ");
        let agreed = commits.len() == endpoints.len() && commits.windows(2).all(|w| w[0] == w[1]);
        if agreed && leaders == 1 {
            if previous == commits.first().copied() {
                return Ok(commits[0]);
            }
            previous = commits.first().copied();
        } else {
            previous = None;
        }
        thread::sleep(Duration::from_millis(300));
    }
    bail!("the cluster did not converge within {timeout:?}; last statuses: {last_seen}")
}

/// The append entries of one node's log, as the append checker reads them.
pub(crate) fn committed_appends(node: String, entries: &[ReadEntry]) -> CommittedLog {
    let entries = entries
        .iter()
        .filter(|entry| entry.kind == ReadEntryKind::Append)
        .map(|entry| {
            let value = String::from_utf8_lossy(&entry.data).into_owned();
            (entry.index.0, value)
        })
        .collect();
    CommittedLog { node, entries }
}

/// Counts of the history's outcomes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) ok: usize,
    pub(crate) failed: usize,
    pub(crate) indeterminate: usize,
}

/// Counts each outcome.
pub(crate) fn counts(history: &History) -> Counts {
    let mut counts = Counts::default();
    for op in &history.ops {
        match op.outcome {
            Outcome::Ok { .. } => counts.ok += 1,
            Outcome::Failed { .. } => counts.failed += 1,
            Outcome::Indeterminate => counts.indeterminate += 1,
        }
    }
    counts
}

/// Completion times (µs) of the successful writes: acknowledged appends, puts, deletes and
/// compare-and-sets that swapped.
fn write_completions(history: &History) -> Vec<u64> {
    let mut times: Vec<u64> = history
        .ops
        .iter()
        .filter_map(|op| match (&op.command, &op.outcome) {
            (
                Command::Append { .. } | Command::Put { .. } | Command::Delete { .. },
                Outcome::Ok { complete_us, .. },
            )
            | (
                Command::Cas { .. },
                Outcome::Ok {
                    complete_us,
                    reply: Reply::Cas { swapped: true },
                },
            ) => Some(*complete_us),
            _ => None,
        })
        .collect();
    times.sort_unstable();
    times
}

/// The longest time (ms) in `[start_us, end_us]` without a successful write completing.
pub(crate) fn max_unavailable_ms(history: &History, start_us: u64, end_us: u64) -> u64 {
    let mut previous = start_us;
    let mut longest = 0;
    for time in write_completions(history) {
        if time < start_us || end_us < time {
            continue;
        }
        longest = longest.max(time - previous);
        previous = time;
    }
    longest.max(end_us.saturating_sub(previous)) / 1_000
}

/// Successful writes per `bucket_ms` from `start_us`, for the report.
pub(crate) fn throughput(
    history: &History,
    start_us: u64,
    end_us: u64,
    bucket_ms: u64,
) -> Vec<u64> {
    let bucket_us = bucket_ms.max(1) * 1_000;
    let buckets = usize::try_from(end_us.saturating_sub(start_us).div_ceil(bucket_us)).unwrap_or(0);
    let mut counts = vec![0u64; buckets];
    for time in write_completions(history) {
        if (start_us..end_us).contains(&time) {
            let bucket = usize::try_from((time - start_us) / bucket_us).unwrap_or(usize::MAX);
            if let Some(count) = counts.get_mut(bucket) {
                *count += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpo_core::{LogIndex, Term};
    use xtask::history::{ClientId, OpId, Operation};

    fn append(id: u64, complete_us: Option<u64>) -> Operation {
        Operation {
            id: OpId(id),
            client: ClientId(0),
            invoke_us: 0,
            command: Command::Append {
                value: format!("v{id}"),
            },
            outcome: match complete_us {
                Some(complete_us) => Outcome::Ok {
                    reply: Reply::Appended { index: id },
                    complete_us,
                },
                None => Outcome::Indeterminate,
            },
        }
    }

    #[test]
    fn the_longest_gap_counts_from_the_start_and_to_the_end() {
        let history = History {
            ops: vec![
                append(1, Some(2_000_000)),
                append(2, None),
                append(3, Some(2_500_000)),
            ],
        };
        assert_eq!(max_unavailable_ms(&history, 1_000_000, 3_000_000), 1_000);
        assert_eq!(max_unavailable_ms(&history, 1_000_000, 9_000_000), 6_500);
        assert_eq!(throughput(&history, 0, 3_000_000, 1_000), vec![0, 0, 2]);
        let counts = counts(&history);
        assert_eq!((counts.ok, counts.indeterminate), (2, 1));
    }

    #[test]
    fn only_append_entries_count() {
        let entry = |index, kind, data: &'static str| ReadEntry {
            index: LogIndex(index),
            term: Term(1),
            kind,
            data: data.into(),
        };
        let a = vec![
            entry(1, ReadEntryKind::Noop, ""),
            entry(2, ReadEntryKind::Append, "x"),
            entry(3, ReadEntryKind::Duplicate, "x"),
        ];
        let log = committed_appends("n0".into(), &a);
        assert_eq!(log.entries, vec![(2, "x".to_owned())]);
    }
}
