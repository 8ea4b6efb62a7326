//! The named safety checkers, one file per property in docs/protocol.md, Safety properties
//! (and `snapshot_equivalence`, property 9, and `compaction_bound`, property 10, of its snapshot
//! section; `cache_bound`, rule S9; `read_linearizability`, property 14, of its reads section;
//! `vote_ledger`, property 15, of its storage-faults section).
//!
//! The runner feeds every checker what it observes after each simulated step: the stepped
//! node's status and logs (`NodeView`), the log writes and applies it performed, and every
//! node's synced log. A checker returns `Err(Violation)` naming itself and the evidence.
//! Checkers are incremental so that checking after every step stays cheap: each one keeps the
//! summary of the history it needs (leaders per term, fingerprints per `(index, term)`, the
//! committed prefix) instead of rescanning all logs.
//!
//! Invariant: a checker never trusts the engine's view of the committed log; the committed
//! prefix (`CommittedLog`) is rebuilt from what nodes reported and the entries they wrote.

pub mod cache_bound;
pub mod compaction_bound;
pub mod configuration_safety;
pub mod durability;
pub mod election_safety;
pub mod index_order;
pub mod leader_append_only;
pub mod leader_completeness;
pub mod log_matching;
pub mod monotonicity;
pub mod read_linearizability;
pub mod snapshot_equivalence;
pub mod state_machine_safety;
pub mod vote_ledger;

use std::fmt;

use crate::node::Status;
use crate::types::{Entry, Incarnation, LogIndex};

pub use durability::{CommittedLog, Durability};
pub use election_safety::ElectionSafety;
pub use leader_append_only::LeaderAppendOnly;
pub use leader_completeness::LeaderCompleteness;
pub use log_matching::LogMatching;
pub use monotonicity::Monotonicity;
pub use read_linearizability::ReadLinearizability;
pub use snapshot_equivalence::SnapshotEquivalence;
pub use state_machine_safety::StateMachineSafety;
pub use vote_ledger::VoteLedger;

/// A broken property: which checker saw it and the evidence, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The checker's name (`election_safety`, `log_matching`, …).
    pub checker: &'static str,
    /// What was seen: nodes, terms, indices, entries.
    pub details: String,
}

/// What a checker may return.
pub type Check = Result<(), Violation>;

/// One node as observed right after a step.
#[derive(Clone, Copy, Debug)]
pub struct NodeView<'a> {
    /// Position of the node in the cluster (node id minus one).
    pub slot: usize,
    /// The node's current incarnation.
    pub incarnation: Incarnation,
    /// `Node::status()` after the step.
    pub status: Status,
    /// The node's log as its outputs built it: synced entries plus unsynced writes.
    pub log: &'a [Entry],
    /// The node's synced log: what would survive a crash now.
    pub durable_log: &'a [Entry],
}

impl Violation {
    /// A violation seen by `checker`.
    #[must_use]
    pub fn new(checker: &'static str, details: String) -> Violation {
        Violation { checker, details }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "violated {}: {}", self.checker, self.details)
    }
}

/// The entry at `index` in a gap-free log starting at index 1.
#[must_use]
pub fn entry_at(log: &[Entry], index: LogIndex) -> Option<&Entry> {
    let slot = usize::try_from(index.0.checked_sub(1)?).ok()?;
    log.get(slot)
}

/// A short description of an entry for violation reports.
#[must_use]
pub fn describe(entry: Option<&Entry>) -> String {
    match entry {
        None => "no entry".to_string(),
        Some(e) => format!(
            "(index {}, term {}, {:?}, {} payload bytes {:02x?})",
            e.index,
            e.term,
            e.kind,
            e.payload.len(),
            &e.payload[..e.payload.len().min(16)]
        ),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Hand-built entries and views for the checkers' unit tests.

    use bytes::Bytes;

    use super::NodeView;
    use crate::node::{Role, Status};
    use crate::types::{Entry, EntryKind, Incarnation, LogIndex, NodeId, Term};

    /// Entry `(index, term)` whose payload names both, so equal positions mean equal entries.
    pub(crate) fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload: Bytes::from(format!("{index}/{term}")),
        }
    }

    /// A log from its entries' terms, indices 1, 2, 3, …
    pub(crate) fn log(terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, t)| entry(u64::try_from(i).unwrap() + 1, *t))
            .collect()
    }

    /// A status with these fields and everything else consistent with `log`.
    pub(crate) fn status(slot: usize, role: Role, term: u64, log: &[Entry], commit: u64) -> Status {
        let last = LogIndex(u64::try_from(log.len()).unwrap());
        Status {
            id: NodeId(u64::try_from(slot).unwrap() + 1),
            role,
            term: Term(term),
            leader: None,
            commit_index: LogIndex(commit),
            last_index: last,
            durable_index: last,
            applied_index: LogIndex(commit),
            snapshot_index: LogIndex(0),
            first_index: LogIndex(1),
            repair_from: None,
            faulty_count: 0,
        }
    }

    /// A view of a node whose whole log is durable.
    pub(crate) fn view<'a>(status: Status, log: &'a [Entry]) -> NodeView<'a> {
        NodeView {
            slot: usize::try_from(status.id.0 - 1).unwrap(),
            incarnation: Incarnation(1),
            status,
            log,
            durable_log: log,
        }
    }
}
