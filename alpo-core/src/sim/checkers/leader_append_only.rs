//! Leader append-only: a leader never deletes or overwrites entries of its own log (rule R9,
//! docs/protocol.md, Safety properties).
//!
//! The disk model only appends at the end of the log, so an overwrite needs a `TruncateLog`.
//! Invariant checked: no `TruncateLog` is emitted by a step that begins and ends with the node
//! leader of the same term. (A leader that steps down in a step may truncate in that step.)

use super::{Check, Violation};
use crate::node::{Role, Status};
use crate::types::LogIndex;

/// The checker's name in reports.
pub const NAME: &str = "leader_append_only";

/// Stateless: judges each truncation against the statuses around the step.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaderAppendOnly;

impl LeaderAppendOnly {
    /// Checks a `TruncateLog { from }` emitted by a step from status `before` to `after`.
    pub fn observe_truncate(&self, before: &Status, after: &Status, from: LogIndex) -> Check {
        let leader_throughout =
            before.role == Role::Leader && after.role == Role::Leader && before.term == after.term;
        if !leader_throughout {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!(
                "leader {} of term {} truncated its log from index {from}",
                after.id, after.term
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::test_support::{log, status};

    #[test]
    fn a_follower_or_a_deposed_leader_may_truncate() {
        let l = log(&[1, 1]);
        let follower = status(1, Role::Passive, 2, &l, 0);
        let leader = status(1, Role::Leader, 1, &l, 0);
        let checker = LeaderAppendOnly;
        checker
            .observe_truncate(&follower, &follower, LogIndex(2))
            .unwrap();
        checker
            .observe_truncate(&leader, &follower, LogIndex(2))
            .unwrap();
    }

    #[test]
    fn a_leader_truncating_fails() {
        let l = log(&[1, 1]);
        let leader = status(1, Role::Leader, 1, &l, 0);
        let err = LeaderAppendOnly
            .observe_truncate(&leader, &leader, LogIndex(2))
            .unwrap_err();
        assert!(
            err.details.contains("leader 2 of term 1"),
            "{}",
            err.details
        );
    }
}
