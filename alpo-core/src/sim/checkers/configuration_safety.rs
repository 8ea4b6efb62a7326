//! Configuration safety (property 11 of docs/protocol.md, issue 12): whenever a leader appends
//! a `Config` entry, the new configuration is a single step from the one it replaces (M4) and
//! every majority of one meets every majority of the other (enumerated exactly,
//! `Configuration::quorums_intersect`); the leader's previous `Config` entry is committed (M2);
//! and an entry of the leader's term is committed (M3, the 2015 fix).
//!
//! Invariant: the committed prefix and term come from the durability checker's own record of
//! commits (`CommittedLog`), never from the engine's view; the leader's previous `Config` entry
//! is found in the log its outputs wrote.

use super::{Check, Violation};
use crate::membership::Configuration;
use crate::types::{LogIndex, NodeId, Term};

/// The checker's name in reports.
pub const NAME: &str = "configuration_safety";

/// What a leader did when its configuration changed in one step.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// The leader.
    pub leader: NodeId,
    /// Its term.
    pub term: Term,
    /// Its configuration before the step.
    pub before: Configuration,
    /// Its configuration after the step (in force from its `Config` entry, M1).
    pub after: Configuration,
    /// Index of the `Config` entry before the new one in its log, if any.
    pub previous_config_index: Option<LogIndex>,
    /// The highest index known committed (by the checkers).
    pub committed_index: LogIndex,
    /// Whether an entry of `term` is known committed.
    pub term_committed: bool,
}

/// Checks one leader step that changed its configuration.
pub fn check_step(step: Step) -> Check {
    let fail = |what: String| {
        Err(Violation::new(
            NAME,
            format!(
                "leader {} of term {} went from {} to {}: {what}",
                step.leader, step.term, step.before, step.after
            ),
        ))
    };
    if !step.after.is_single_step_from(&step.before) {
        return fail("more than one voter changed (M4)".into());
    }
    if !step.after.quorums_intersect(&step.before) {
        return fail("majorities of the two configurations need not meet".into());
    }
    if let Some(previous) = step.previous_config_index
        && previous > step.committed_index
    {
        return fail(format!(
            "its previous Config entry at {previous} is not committed (commit {}) (M2)",
            step.committed_index
        ));
    }
    if !step.term_committed {
        return fail("no entry of its term is committed yet (M3, the 2015 fix)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voters(ids: &[u64]) -> Configuration {
        let ids: Vec<NodeId> = ids.iter().copied().map(NodeId).collect();
        Configuration::new(&ids, &[]).unwrap()
    }

    fn step(before: &[u64], after: &[u64]) -> Step {
        Step {
            leader: NodeId(2),
            term: Term(2),
            before: voters(before),
            after: voters(after),
            previous_config_index: Some(LogIndex(3)),
            committed_index: LogIndex(4),
            term_committed: true,
        }
    }

    #[test]
    fn single_committed_steps_pass_and_each_rule_bites() {
        assert!(check_step(step(&[1, 2, 3], &[1, 2, 3, 4])).is_ok());
        assert!(check_step(step(&[1, 2, 3, 4], &[2, 3, 4])).is_ok());
        assert!(check_step(step(&[1, 2, 3], &[1, 4, 5])).is_err());
        let mut pending = step(&[1, 2, 3], &[1, 2]);
        pending.committed_index = LogIndex(2);
        assert!(check_step(pending).is_err());
        let mut early = step(&[1, 2, 3], &[1, 2]);
        early.term_committed = false;
        let violation = check_step(early).unwrap_err();
        assert!(violation.details.contains("M3"), "{violation}");
    }
}
