//! `cargo xtask bench checkpoint [--entries N] [--value-size B] [--reps R]` (issue 15): the
//! size of one trace checkpoint (`Node::cut_trace`) and the time to take it and to rebuild a
//! node from it, on a one-node core holding a large log.
//!
//! The core is driven as the event loop drives it (batches of proposals, each log write
//! reported durable, outputs taken), without disk or network, so the figures are the core's
//! own: what a cut adds to the event loop's turn, and what `alpo replay` pays to start from a
//! checkpoint. The entry cache keeps its default bound (`alpo_core::limits::LOG_CACHE_BYTES_MAX`
//! of payload): the state's size follows the cached entries' count, not their bytes.
//!
//! Invariant: every repetition measures the same node (the state does not change between
//! them); the result is one JSON line per repetition and a median line.

use std::time::{Duration, Instant as WallInstant};

use anyhow::{Context, bail};
use bytes::Bytes;

use alpo_core::{Config, Instant, LogPosition, Node, NodeId, Output, Persisted};

/// Usage of `bench checkpoint`.
pub(crate) const USAGE: &str =
    "usage: cargo xtask bench checkpoint [--entries N] [--value-size B] [--reps R]";

/// Runs `bench checkpoint` with its arguments (after `checkpoint`).
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let (mut entries, mut value_size, mut reps) = (1_000_000u64, 128usize, 5usize);
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} wants a value\n{USAGE}"))?;
        let number: u64 = value
            .parse()
            .with_context(|| format!("{flag} wants a number, found {value:?}"))?;
        match flag.as_str() {
            "--entries" => entries = number,
            "--value-size" => value_size = usize::try_from(number)?,
            "--reps" => reps = usize::try_from(number)?.max(1),
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    let (mut node, now) = node_with_log(entries, value_size)?;
    let status = node.status();
    let mut takes = Vec::new();
    let mut rebuilds = Vec::new();
    let mut size = 0;
    for rep in 0..reps {
        let started = WallInstant::now();
        let cut = node
            .cut_trace(now)
            .context("a cut with no output pending")?;
        let take = started.elapsed();
        let started = WallInstant::now();
        let rebuilt = Node::from_checkpoint(&cut.checkpoint)?;
        let rebuild = started.elapsed();
        anyhow::ensure!(
            rebuilt.status() == status,
            "the rebuilt node's status differs"
        );
        size = cut.head.len();
        println!(
            "{{\"bench\":\"checkpoint\",\"rep\":{rep},\"entries\":{entries},\
             \"value_size\":{value_size},\"last_index\":{},\"first_cached\":{},\
             \"checkpoint_bytes\":{size},\"take_ms\":{:.3},\"rebuild_ms\":{:.3}}}",
            status.last_index.0,
            node.log_cache().cached_from.0,
            millis(take),
            millis(rebuild),
        );
        takes.push(take);
        rebuilds.push(rebuild);
    }
    takes.sort();
    rebuilds.sort();
    println!(
        "checkpoint of a node with {entries} entries of {value_size} bytes (cache from index \
         {}): {size} bytes; take median {:.2} ms, rebuild median {:.2} ms ({reps} reps)",
        node.log_cache().cached_from.0,
        millis(takes[reps / 2]),
        millis(rebuilds[reps / 2]),
    );
    Ok(())
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// A one-node cluster's leader after `entries` committed and applied proposals.
fn node_with_log(entries: u64, value_size: usize) -> anyhow::Result<(Node, Instant)> {
    let config = Config::lan(NodeId(1), vec![NodeId(1)], 1);
    let mut now = Instant::from_nanos(0);
    let mut node = Node::new_recorded(config, Persisted::default(), now)?;
    let value = Bytes::from(vec![b'v'; value_size]);
    let mut proposed = 0;
    while proposed < entries || node.status().applied_index.0 < node.status().last_index.0 {
        now = Instant::from_nanos(now.as_nanos() + 1_000_000);
        if node.next_timeout().is_some_and(|deadline| deadline <= now) {
            node.tick(now);
        }
        if node.status().role == alpo_core::Role::Leader {
            for _ in 0..1000.min(entries - proposed) {
                if node.propose(now, value.clone()).is_ok() {
                    proposed += 1;
                }
            }
        }
        for _ in 0..3 {
            for output in node.take_outputs() {
                if let Output::AppendLog { entries } = output
                    && let Some(last) = entries.last()
                {
                    let durable = LogPosition {
                        index: last.index,
                        term: last.term,
                    };
                    node.on_persisted(now, durable);
                }
            }
        }
        // The trace is not what is measured: drop it as the run goes.
        drop(node.take_trace());
    }
    Ok((node, now))
}
