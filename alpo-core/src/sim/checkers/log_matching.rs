//! Log matching: two logs with an entry of the same index and term are identical up to that
//! index (docs/protocol.md, Safety properties).
//!
//! Checked incrementally and over the whole run, not only between logs alive at one instant:
//! every `(index, term)` ever written by any node must always carry the same entry (kind and
//! payload) and follow an entry of the same term. By induction on the index, that is log
//! matching for every pair of logs at every instant, at the cost of one map lookup per written
//! entry. It holds in a correct run because only the leader of a term creates entries of that
//! term, once per index, on top of its own append-only log.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Check, Violation, describe, entry_at};
use crate::types::{Entry, EntryKind, LogIndex, NodeId, Term};

/// The checker's name in reports.
pub const NAME: &str = "log_matching";

/// What every copy of one `(index, term)` must agree on.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Fingerprint {
    kind: EntryKind,
    payload: Bytes,
    prev_term: Term,
    first_writer: NodeId,
}

/// Fingerprints of every `(index, term)` written so far.
#[derive(Clone, Debug, Default)]
pub struct LogMatching {
    seen: BTreeMap<(LogIndex, Term), Fingerprint>,
}

impl LogMatching {
    /// Checks entries that `writer` appended to `log_before` (its log just before the append).
    pub fn observe_append(&mut self, writer: NodeId, log_before: &[Entry], new: &[Entry]) -> Check {
        let mut prev_term = new
            .first()
            .and_then(|e| entry_at(log_before, e.index.prev()))
            .map_or(Term(0), |e| e.term);
        for entry in new {
            self.check_one(writer, entry, prev_term)?;
            prev_term = entry.term;
        }
        Ok(())
    }

    fn check_one(&mut self, writer: NodeId, entry: &Entry, prev_term: Term) -> Check {
        let key = (entry.index, entry.term);
        let Some(known) = self.seen.get(&key) else {
            let print = Fingerprint {
                kind: entry.kind,
                payload: entry.payload.clone(),
                prev_term,
                first_writer: writer,
            };
            self.seen.insert(key, print);
            return Ok(());
        };
        let same = known.kind == entry.kind
            && known.payload == entry.payload
            && known.prev_term == prev_term;
        if same {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!(
                "node {writer} wrote {} after an entry of term {prev_term}, but node {} wrote \
                 (index {}, term {}) as {:?} with {} payload bytes after an entry of term {}",
                describe(Some(entry)),
                known.first_writer,
                entry.index,
                entry.term,
                known.kind,
                known.payload.len(),
                known.prev_term
            ),
        ))
    }
}

/// Direct pairwise check of two logs, for tests and for reports: the first index at which two
/// logs that agree on `(index, term)` somewhere above differ.
#[must_use]
pub fn first_mismatch(a: &[Entry], b: &[Entry]) -> Option<LogIndex> {
    let common = a.len().min(b.len());
    let top = (0..common).rev().find(|&i| a[i].term == b[i].term)?;
    (0..=top).find(|&i| a[i] != b[i]).map(|i| a[i].index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::checkers::test_support::{entry, log};

    #[test]
    fn agreeing_logs_and_overwritten_suffixes_pass() {
        let mut checker = LogMatching::default();
        let leader = log(&[1, 1, 2]);
        checker.observe_append(NodeId(1), &[], &leader).unwrap();
        // A follower receives a prefix, then a later batch.
        checker
            .observe_append(NodeId(2), &[], &leader[..2])
            .unwrap();
        checker
            .observe_append(NodeId(2), &leader[..2], &leader[2..])
            .unwrap();
        // A follower with a stale suffix gets it replaced by a new leader's entry of term 3.
        checker
            .observe_append(NodeId(3), &[], &log(&[1, 1]))
            .unwrap();
        checker
            .observe_append(NodeId(3), &log(&[1, 1]), &[entry(3, 3)])
            .unwrap();
        assert_eq!(first_mismatch(&leader, &log(&[1, 1, 3])), None);
    }

    #[test]
    fn same_position_different_payload_fails() {
        let mut checker = LogMatching::default();
        checker
            .observe_append(NodeId(1), &[], &log(&[1, 2]))
            .unwrap();
        let mut forged = entry(2, 2);
        forged.payload = Bytes::from_static(b"other");
        let err = checker
            .observe_append(NodeId(2), &log(&[1]), &[forged])
            .unwrap_err();
        assert_eq!(err.checker, NAME);
        assert!(
            err.details.contains("node 2 wrote (index 2, term 2"),
            "{}",
            err.details
        );
    }

    #[test]
    fn same_position_after_a_different_term_fails() {
        // Node 1 holds [1, 2]; node 2 holds [3, 2]: equal at index 2, different at index 1.
        let mut checker = LogMatching::default();
        checker
            .observe_append(NodeId(1), &[], &log(&[1, 2]))
            .unwrap();
        let err = checker
            .observe_append(NodeId(2), &[], &[entry(1, 3), entry(2, 2)])
            .unwrap_err();
        assert!(
            err.details.contains("after an entry of term 3"),
            "{}",
            err.details
        );
        assert_eq!(
            first_mismatch(&log(&[1, 2]), &[entry(1, 3), entry(2, 2)]),
            Some(LogIndex(1))
        );
    }
}
