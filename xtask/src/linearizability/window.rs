//! The smallest failing window of a violation: a short run of operations on one key that by
//! themselves cannot be linearized, so a person reads a dozen lines instead of thousands of ids.
//!
//! A window is a witness only if "the whole history is linearizable" implies "the window is", so
//! each candidate is built to keep that implication:
//! 1. The history is cut at the return of the operation the search could not linearize: an
//!    operation invoked later is left out, and one still running then becomes indeterminate (in a
//!    linearization of the whole history it may take effect after operations the cut removed).
//! 2. A window starts at a quiescent point `T`: no determinate operation invoked before `T` is
//!    still running at `T`. It holds every operation invoked at or after `T` and every
//!    indeterminate one invoked before (which may take effect after `T`, or never).
//! 3. Before `T` the key may hold any value, so a window counts only if no start value works:
//!    absent, each value its operations name, and one value none of them names (every other
//!    value behaves like that one).
//!
//! Candidates are tried from the latest quiescent point backwards, at exponentially growing
//! steps, then the cut history from its start (the key is absent there), then the whole
//! partition, which the search already found not linearizable. So a violation always has a
//! window, and for a key it is never longer than the partition.
//!
//! Invariant: the window contains the blocked operation, and its operations are copies of the
//! history's (original outcomes and times), listed in invocation order.

use std::collections::{BTreeSet, HashMap};

use super::{Search, Start, search_from};
use crate::history::{Command, Operation, Outcome, Reply};

/// The operations of a key's window, in invocation order, and whether the window starts at the
/// start of the history (the key absent) rather than at a quiescent point.
pub(super) fn key_window(
    ops: &[&Operation],
    blocked: usize,
    steps_max: u64,
) -> (Vec<Operation>, bool) {
    let cut_us = ops[blocked].complete_us().unwrap_or(u64::MAX);
    let cut = cut_history(ops, cut_us);
    for start in quiescent_starts(&cut, ops[blocked].invoke_us) {
        let window = window_from(&cut, start);
        if fails_from_any_value(&window, steps_max) {
            return (originals(ops, &window), false);
        }
    }
    let cut_refs: Vec<&Operation> = cut.iter().collect();
    if let Search::Blocked(_) = search_from(&cut_refs, steps_max, Start::Absent) {
        return (originals(ops, &cut), true);
    }
    let mut all: Vec<Operation> = ops.iter().map(|op| (*op).clone()).collect();
    all.sort_by_key(|op| (op.invoke_us, op.id));
    (all, true)
}

/// The operations invoked by `cut_us`, in invocation order; those that return after it become
/// indeterminate, and an indeterminate read is left out (it constrains nothing).
fn cut_history(ops: &[&Operation], cut_us: u64) -> Vec<Operation> {
    let mut cut: Vec<Operation> = ops
        .iter()
        .filter(|op| op.invoke_us <= cut_us)
        .filter_map(|op| {
            let mut op = (*op).clone();
            if op
                .complete_us()
                .is_some_and(|complete_us| cut_us < complete_us)
            {
                if matches!(op.command, Command::Get { .. }) {
                    return None;
                }
                op.outcome = Outcome::Indeterminate;
            }
            Some(op)
        })
        .collect();
    cut.sort_by_key(|op| (op.invoke_us, op.id));
    cut
}

/// Positions in `cut` (sorted by invocation) where a window may start, latest first, thinned
/// out exponentially: the 1st, 2nd, 4th, 8th, … quiescent point before `latest_us`.
fn quiescent_starts(cut: &[Operation], latest_us: u64) -> Vec<usize> {
    let mut points = Vec::new();
    // The latest return among determinate operations invoked before the current position.
    let mut running_until: Option<u64> = None;
    for (position, op) in cut.iter().enumerate() {
        if latest_us < op.invoke_us {
            break;
        }
        let quiet = running_until.is_none_or(|until| until < op.invoke_us);
        let new_start = position == 0 || cut[position - 1].invoke_us < op.invoke_us;
        if 0 < position && quiet && new_start {
            points.push(position);
        }
        if let Some(complete_us) = op.complete_us() {
            running_until = Some(running_until.map_or(complete_us, |u| u.max(complete_us)));
        }
    }
    let mut starts = Vec::new();
    let mut back = 1;
    while back <= points.len() {
        starts.push(points[points.len() - back]);
        back *= 2;
    }
    starts
}

/// The window from position `start`: everything invoked from there on, and the indeterminate
/// operations invoked before it.
fn window_from(cut: &[Operation], start: usize) -> Vec<Operation> {
    let earlier = cut[..start]
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Indeterminate));
    earlier.chain(&cut[start..]).cloned().collect()
}

/// Whether `window` has no linearization whatever value the key held before it.
fn fails_from_any_value(window: &[Operation], steps_max: u64) -> bool {
    let refs: Vec<&Operation> = window.iter().collect();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for op in window {
        named.extend(values_named(op));
    }
    let starts = [Start::Absent, Start::Unnamed]
        .into_iter()
        .chain(named.into_iter().map(Start::Value));
    let mut starts = starts;
    starts.all(|start| matches!(search_from(&refs, steps_max, start), Search::Blocked(_)))
}

/// The values an operation writes, expects or reads.
fn values_named(op: &Operation) -> Vec<&str> {
    let mut values = Vec::new();
    match &op.command {
        Command::Put { value, .. } => values.push(value.as_str()),
        Command::Cas { expected, new, .. } => {
            values.extend(expected.as_deref());
            values.push(new.as_str());
        }
        Command::Get { .. } | Command::Delete { .. } | Command::Append { .. } => {}
    }
    if let Outcome::Ok {
        reply: Reply::Read { value: Some(value) },
        ..
    } = &op.outcome
    {
        values.push(value.as_str());
    }
    values
}

/// The history's own copies of the window's operations (the cut changed some outcomes).
fn originals(ops: &[&Operation], window: &[Operation]) -> Vec<Operation> {
    let by_id: HashMap<_, _> = ops.iter().map(|op| (op.id, *op)).collect();
    let mut originals: Vec<Operation> = window
        .iter()
        .filter_map(|op| by_id.get(&op.id))
        .map(|op| (*op).clone())
        .collect();
    originals.sort_by_key(|op| (op.invoke_us, op.id));
    originals
}
