//! The simulated client: proposes unique payloads to the node it believes leads, follows
//! `NotLeader` hints, and checks that what was accepted at `(index, term)` is what is applied
//! there.
//!
//! A payload is 16 bytes: the run seed and a counter, both little-endian, so every payload of
//! every run is unique and a payload names the proposal that made it. Invariant: `accepted`
//! maps each `(index, term)` a leader gave a proposal to that proposal's counter; a leader of a
//! term assigns each index once, so the key is never reused by a correct engine.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::sim::checkers::{Check, Violation, describe};
use crate::types::{Entry, EntryKind, LogIndex, Term};

/// The checker's name for a proposal applied with another payload than it was accepted with.
pub const NAME: &str = "client_proposals";

/// Proposals the client lets run ahead of the highest index applied anywhere: a real client
/// waits for its requests. At the limit it skips its turn.
pub const PENDING_PROPOSAL_COUNT_MAX: u64 = 256;

/// The client's state.
#[derive(Clone, Debug)]
pub struct Client {
    seed: u64,
    next_counter: u64,
    /// The node slot the client sends to next.
    pub target: usize,
    accepted: BTreeMap<(LogIndex, Term), u64>,
    /// Proposals a leader accepted.
    pub accepted_count: u64,
    /// Accepted proposals that some node applied.
    pub committed_count: u64,
    last_accepted_index: LogIndex,
    applied_index_max: LogIndex,
    blocked_since_ns: Option<u64>,
}

impl Client {
    /// A client for the run of `seed`, sending first to slot 0.
    #[must_use]
    pub fn new(seed: u64) -> Client {
        Client {
            seed,
            next_counter: 0,
            target: 0,
            accepted: BTreeMap::new(),
            accepted_count: 0,
            committed_count: 0,
            last_accepted_index: LogIndex(0),
            applied_index_max: LogIndex(0),
            blocked_since_ns: None,
        }
    }

    /// The counter the next payload will carry.
    #[must_use]
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    /// A fresh unique payload.
    pub fn next_payload(&mut self) -> Bytes {
        let mut bytes = Vec::with_capacity(16);
        bytes.extend_from_slice(&self.seed.to_le_bytes());
        bytes.extend_from_slice(&self.next_counter.to_le_bytes());
        self.next_counter += 1;
        Bytes::from(bytes)
    }

    /// The counter carried by a payload of this run, if it is one.
    #[must_use]
    pub fn counter_of(&self, payload: &[u8]) -> Option<u64> {
        let (seed, counter) = payload.split_at_checked(8)?;
        if seed != self.seed.to_le_bytes() {
            return None;
        }
        Some(u64::from_le_bytes(counter.try_into().ok()?))
    }

    /// Whether the client may propose at `now_ns`: yes while its last accepted proposal is less
    /// than `PENDING_PROPOSAL_COUNT_MAX` entries ahead of the highest index applied anywhere;
    /// when it has waited longer than `patience_ns`, it gives up on its outstanding proposals
    /// (they may have been lost with a deposed leader) and proposes again.
    pub fn may_propose(&mut self, now_ns: u64, patience_ns: u64) -> bool {
        if self.last_accepted_index.0 < self.applied_index_max.0 + PENDING_PROPOSAL_COUNT_MAX {
            self.blocked_since_ns = None;
            return true;
        }
        let since = *self.blocked_since_ns.get_or_insert(now_ns);
        if now_ns.saturating_sub(since) < patience_ns {
            return false;
        }
        self.blocked_since_ns = None;
        self.last_accepted_index = self.applied_index_max;
        true
    }

    /// A leader accepted `payload` at `(index, term)`.
    pub fn accepted(&mut self, index: LogIndex, term: Term, payload: &[u8]) {
        self.last_accepted_index = index;
        if let Some(counter) = self.counter_of(payload) {
            self.accepted.insert((index, term), counter);
            self.accepted_count += 1;
        }
    }

    /// A node applied `entry`: if a proposal was accepted at its position, the payload must be
    /// that proposal's.
    pub fn applied(&mut self, entry: &Entry) -> Check {
        self.applied_index_max = self.applied_index_max.max(entry.index);
        let Some(&counter) = self.accepted.get(&(entry.index, entry.term)) else {
            return Ok(());
        };
        let matches =
            entry.kind == EntryKind::Normal && self.counter_of(&entry.payload) == Some(counter);
        if matches {
            return Ok(());
        }
        Err(Violation::new(
            NAME,
            format!(
                "proposal {counter} was accepted at (index {}, term {}) but {} was applied there",
                entry.index,
                entry.term,
                describe(Some(entry))
            ),
        ))
    }

    /// Notes that an accepted proposal was applied for the first time anywhere.
    pub fn first_applied(&mut self, entry: &Entry) {
        if self.accepted.contains_key(&(entry.index, entry.term)) {
            self.committed_count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, payload: Bytes) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload,
        }
    }

    #[test]
    fn payloads_are_unique_and_name_their_counter() {
        let mut client = Client::new(0xfeed);
        let a = client.next_payload();
        let b = client.next_payload();
        assert_ne!(a, b);
        assert_eq!(client.counter_of(&b), Some(1));
        assert_eq!(Client::new(1).counter_of(&a), None);
        assert_eq!(client.counter_of(b"short"), None);
    }

    #[test]
    fn the_client_waits_when_too_far_ahead_of_the_applied_index() {
        let mut client = Client::new(5);
        assert!(client.may_propose(0, 100));
        let p = client.next_payload();
        client.accepted(LogIndex(PENDING_PROPOSAL_COUNT_MAX), Term(1), &p);
        assert!(!client.may_propose(10, 100));
        client.applied(&entry(1, 1, Bytes::new())).unwrap();
        assert!(client.may_propose(20, 100));
        client.accepted(LogIndex(PENDING_PROPOSAL_COUNT_MAX + 1), Term(1), &p);
        assert!(!client.may_propose(30, 100));
        assert!(!client.may_propose(129, 100));
        // Waited 100: gives up on the outstanding proposals and proposes again.
        assert!(client.may_propose(130, 100));
        assert!(client.may_propose(131, 100));
    }

    #[test]
    fn applying_what_was_accepted_passes_and_anything_else_fails() {
        let mut client = Client::new(3);
        let a = client.next_payload();
        let b = client.next_payload();
        client.accepted(LogIndex(4), Term(2), &a);
        client.applied(&entry(4, 2, a.clone())).unwrap();
        // The proposal was lost with its leader: another term at that index is fine.
        client.applied(&entry(4, 3, b.clone())).unwrap();
        let err = client.applied(&entry(4, 2, b)).unwrap_err();
        assert!(
            err.details
                .contains("proposal 0 was accepted at (index 4, term 2)")
        );
    }
}
