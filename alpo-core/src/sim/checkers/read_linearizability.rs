//! Property 14, read linearizability (rules Q1–Q3): every read index is at least every index
//! committed (and so possibly acknowledged to a client) before the read was invoked, in
//! simulated real time, and at most the serving node's commit index when it is served; and the
//! serving node's state machine has applied the read index by then.
//!
//! "Committed before the read was invoked" is taken as "applied by some node before": a node
//! applies only committed entries, and no client learns of a commit before the first node
//! applies it (the leader applies before it answers), so this is the strongest bound a client
//! could observe. Invariant: a read is checked once, against the bound recorded when it was
//! invoked; reads lost with a crashed node are forgotten.

use std::collections::BTreeMap;

use crate::node::ReadId;
use crate::sim::checkers::{Check, Violation};
use crate::types::{LogIndex, NodeId};

/// The checker's name.
pub const NAME: &str = "read_linearizability";

/// The reads in flight and the highest index applied anywhere so far.
#[derive(Clone, Debug, Default)]
pub struct ReadLinearizability {
    /// The highest index any node applied so far.
    applied_anywhere: LogIndex,
    /// Per read in flight: the node asked, and `applied_anywhere` when it was invoked.
    pending: BTreeMap<ReadId, (NodeId, LogIndex)>,
    /// Reads served (for the run's report and for tests).
    pub served_count: u64,
    /// Reads that failed (`ReadFailed`) or were lost with their node.
    pub failed_count: u64,
}

impl ReadLinearizability {
    /// A node applied entries up to `index`.
    pub fn observe_applied(&mut self, index: LogIndex) {
        self.applied_anywhere = self.applied_anywhere.max(index);
    }

    /// A client invoked read `id` at `node`.
    pub fn observe_invoked(&mut self, id: ReadId, node: NodeId) {
        self.pending.insert(id, (node, self.applied_anywhere));
    }

    /// `node` served read `id` at `index`, with `commit` and `applied` its commit and applied
    /// indices at that moment.
    pub fn observe_served(
        &mut self,
        id: ReadId,
        node: NodeId,
        index: LogIndex,
        commit: LogIndex,
        applied: LogIndex,
    ) -> Check {
        let Some((asked, bound)) = self.pending.remove(&id) else {
            return Err(Violation::new(
                NAME,
                format!("node {node} served read {} that was not pending", id.0),
            ));
        };
        self.served_count += 1;
        let problem = if asked != node {
            Some(format!("read asked of node {asked}"))
        } else if index < bound {
            Some(format!(
                "index {index} is below index {bound}, applied by some node before the read was \
                 invoked: a stale read"
            ))
        } else if index > commit {
            Some(format!("index {index} is above its commit index {commit}"))
        } else if applied < index {
            Some(format!("its state machine had applied only {applied}"))
        } else {
            None
        };
        match problem {
            None => Ok(()),
            Some(problem) => Err(Violation::new(
                NAME,
                format!(
                    "node {node} served read {} at index {index}: {problem}",
                    id.0
                ),
            )),
        }
    }

    /// Read `id` failed, or its node crashed with it.
    pub fn observe_failed(&mut self, id: ReadId) {
        if self.pending.remove(&id).is_some() {
            self.failed_count += 1;
        }
    }

    /// `node` crashed: its reads are lost.
    pub fn observe_crash(&mut self, node: NodeId) {
        let before = self.pending.len();
        self.pending.retain(|_, (asked, _)| *asked != node);
        self.failed_count += (before - self.pending.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_below_what_was_applied_before_it_fires() {
        let mut checker = ReadLinearizability::default();
        checker.observe_applied(LogIndex(5));
        checker.observe_invoked(ReadId(1), NodeId(2));
        checker.observe_applied(LogIndex(9));
        // Served at 5: everything applied before the invocation is covered.
        checker
            .observe_served(ReadId(1), NodeId(2), LogIndex(5), LogIndex(5), LogIndex(5))
            .unwrap();
        checker.observe_invoked(ReadId(2), NodeId(1));
        let err = checker
            .observe_served(ReadId(2), NodeId(1), LogIndex(7), LogIndex(7), LogIndex(7))
            .unwrap_err();
        assert!(err.details.contains("a stale read"), "{err}");
    }

    #[test]
    fn a_read_past_commit_or_apply_fires_and_a_lost_read_is_forgotten() {
        let mut checker = ReadLinearizability::default();
        checker.observe_invoked(ReadId(1), NodeId(1));
        let err = checker
            .observe_served(ReadId(1), NodeId(1), LogIndex(3), LogIndex(2), LogIndex(3))
            .unwrap_err();
        assert!(err.details.contains("above its commit index"), "{err}");
        checker.observe_invoked(ReadId(2), NodeId(1));
        let err = checker
            .observe_served(ReadId(2), NodeId(1), LogIndex(3), LogIndex(3), LogIndex(2))
            .unwrap_err();
        assert!(err.details.contains("had applied only 2"), "{err}");
        checker.observe_invoked(ReadId(3), NodeId(1));
        checker.observe_crash(NodeId(1));
        assert!(
            checker
                .observe_served(ReadId(3), NodeId(1), LogIndex(0), LogIndex(0), LogIndex(0))
                .is_err()
        );
    }
}
