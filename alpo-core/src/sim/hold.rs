//! Messages the network holds back across terms (fault profile `HoldAcrossTerms`).
//!
//! A held message waits until its recipient's term reaches the message's release term (the
//! runner asks for two terms past the message's own, and counts a leader as one term further
//! on, so that a leader gets its held messages as soon as it leads again), then is handed back
//! for delivery. Ordinary delays, even long ones, rarely outlast an election, so without this
//! fault a reply of an ended leadership almost never meets the same leader elected again; with
//! it, such meetings are routine.
//!
//! Invariants: a recipient's messages are released in `(release term, hold order)` order, each
//! at most once; the release depends only on the terms passed in, so a seed replays the same
//! releases.

use std::collections::BTreeMap;

use crate::message::Message;

/// Messages held back until their recipient reaches a term, in hold order.
#[derive(Clone, Debug, Default)]
pub struct HeldMessages {
    /// `(recipient, release term, hold sequence number)` → message.
    held: BTreeMap<(usize, u64, u64), Message>,
    seq: u64,
    /// Messages held so far.
    pub held_count: u64,
}

impl HeldMessages {
    /// Holds `message` to `recipient` until the recipient's term reaches `release_term`.
    pub fn hold(&mut self, recipient: usize, message: Message, release_term: u64) {
        self.seq += 1;
        self.held_count += 1;
        self.held
            .insert((recipient, release_term, self.seq), message);
    }

    /// Takes every message to `recipient` whose release term is at most `term`, in release
    /// order.
    pub fn release(&mut self, recipient: usize, term: u64) -> Vec<Message> {
        let due: Vec<(usize, u64, u64)> = self
            .held
            .range((recipient, 0, 0)..=(recipient, term, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        due.iter().filter_map(|key| self.held.remove(key)).collect()
    }

    /// Messages still held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no message is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::MessageBody;
    use crate::message::VoteRequest;
    use crate::types::{Incarnation, LogIndex, NodeId, Term};

    fn message(term: u64) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(term),
            incarnation: Incarnation(1),
            body: MessageBody::VoteRequest(VoteRequest {
                last_index: LogIndex(0),
                last_term: Term(0),
                pre_vote: false,
                transfer: false,
            }),
        }
    }

    #[test]
    fn messages_wait_for_their_term_and_leave_in_order_once() {
        let mut held = HeldMessages::default();
        held.hold(1, message(1), 4);
        held.hold(1, message(2), 3);
        held.hold(0, message(3), 3);
        held.hold(1, message(4), 4);
        assert!(held.release(1, 2).is_empty());
        let terms =
            |messages: Vec<Message>| -> Vec<u64> { messages.iter().map(|m| m.term.0).collect() };
        assert_eq!(terms(held.release(1, 3)), vec![2]);
        assert_eq!(held.len(), 3);
        assert_eq!(terms(held.release(1, 9)), vec![1, 4]);
        assert!(held.release(1, 9).is_empty());
        assert_eq!(terms(held.release(0, 3)), vec![3]);
        assert!(held.is_empty());
        assert_eq!(held.held_count, 4);
    }
}
