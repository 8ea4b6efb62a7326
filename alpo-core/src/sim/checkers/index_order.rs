//! Index order: `applied ≤ commit ≤ synced ≤ last` on every node (the engine commits locally
//! only what its own disk holds, so entries are durable before they are applied), and a node
//! never believes more of its log is durable than its disk holds (docs/protocol.md, Glossary;
//! output.rs).
//! `last` must also equal the length of the log the node's own outputs built, so the
//! simulator's mirror of each log is the engine's log.
//!
//! Stateless: each observation is judged on its own.

use super::{Check, NodeView, Violation};
use crate::types::LogIndex;

/// The checker's name in reports.
pub const NAME: &str = "index_order";

/// Checks the index relationships of one observation.
pub fn check(view: &NodeView<'_>) -> Check {
    let s = &view.status;
    let written = LogIndex(u64::try_from(view.log.len()).unwrap_or(u64::MAX));
    let synced = LogIndex(u64::try_from(view.durable_log.len()).unwrap_or(u64::MAX));
    let fail = |relation: String| {
        Err(Violation::new(
            NAME,
            format!("node {} (term {}): {relation}", s.id, s.term),
        ))
    };
    if s.applied_index > s.commit_index {
        return fail(format!(
            "applied {} > commit {}",
            s.applied_index, s.commit_index
        ));
    }
    if s.commit_index > s.last_index {
        return fail(format!("commit {} > last {}", s.commit_index, s.last_index));
    }
    if s.applied_index > synced {
        return fail(format!("applied {} > synced {synced}", s.applied_index));
    }
    if s.commit_index > synced {
        return fail(format!("commit {} > synced {synced}", s.commit_index));
    }
    if s.durable_index > synced {
        return fail(format!(
            "reports durable {} > synced {synced}",
            s.durable_index
        ));
    }
    if s.last_index != written {
        return fail(format!(
            "reports last {} but its outputs wrote {written}",
            s.last_index
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Role;
    use crate::sim::checkers::test_support::{log, status, view};

    #[test]
    fn consistent_indices_pass() {
        let l = log(&[1, 1, 2]);
        check(&view(status(0, Role::Leader, 2, &l, 2), &l)).unwrap();
    }

    #[test]
    fn each_broken_relation_fails() {
        let l = log(&[1, 1, 2]);
        let good = status(0, Role::Leader, 2, &l, 2);
        let mut s = good;
        s.applied_index = LogIndex(3);
        assert!(
            check(&view(s, &l))
                .unwrap_err()
                .details
                .contains("applied 3 > commit 2")
        );
        let mut s = good;
        s.commit_index = LogIndex(4);
        assert!(
            check(&view(s, &l))
                .unwrap_err()
                .details
                .contains("commit 4 > last 3")
        );
        let mut unsynced = view(good, &l);
        unsynced.durable_log = &l[..1];
        let err = check(&unsynced).unwrap_err();
        assert!(
            err.details.contains("applied 2 > synced 1"),
            "{}",
            err.details
        );
        let mut s = good;
        s.last_index = LogIndex(2);
        s.durable_index = LogIndex(2);
        assert!(
            check(&view(s, &l))
                .unwrap_err()
                .details
                .contains("outputs wrote 3")
        );
    }
}
