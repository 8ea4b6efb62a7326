//! The simulator's event queue: events ordered by `(global time, sequence number)`.
//!
//! Invariant: `seq` is unique and grows with every push, so the order is total, equal times
//! keep their scheduling order, and a seed always replays the same order. The events wait in a
//! slab so that the heap moves small keys only; a popped event's slot is reused.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::message::Message;
use crate::sim::disk::SyncToken;
use crate::types::Incarnation;

/// Something that happens at a simulated instant.
#[derive(Debug)]
pub(super) enum Event {
    Deliver(Message),
    Timer {
        slot: usize,
    },
    SyncDone {
        slot: usize,
        incarnation: Incarnation,
        token: SyncToken,
    },
    Restart {
        slot: usize,
    },
    Crash {
        slot: usize,
    },
    Nemesis,
    Client,
    /// The client invokes a read (rules Q1–Q3).
    Read,
    Heal,
    Failover,
    Deadline,
    /// The driver finishes a snapshot operation of the node in `slot` (if it did not crash).
    Snapshot {
        slot: usize,
        incarnation: Incarnation,
        input: super::snapshots::SnapshotDone,
    },
    /// The driver answers a `ReadLog` of the node in `slot` (if it did not crash).
    LogRead {
        slot: usize,
        incarnation: Incarnation,
        answer: super::log_reads::LogReadAnswer,
    },
}

/// A queue entry: the event itself waits in `EventQueue::slab`, so the heap moves 24 bytes.
#[derive(Debug, PartialEq, Eq)]
struct Scheduled {
    at: u64,
    seq: u64,
    slot: usize,
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest event first; `seq` is
    /// unique, so the order is total and ties in time keep their scheduling order.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// Events by `(time, sequence number)`.
#[derive(Debug, Default)]
pub(super) struct EventQueue {
    heap: BinaryHeap<Scheduled>,
    slab: Vec<Option<Event>>,
    free: Vec<usize>,
    seq: u64,
}

impl EventQueue {
    pub(super) fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot] = Some(event);
                slot
            }
            None => {
                self.slab.push(Some(event));
                self.slab.len() - 1
            }
        };
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            slot,
        });
    }

    pub(super) fn pop(&mut self) -> Option<(u64, Event)> {
        let next = self.heap.pop()?;
        let event = self.slab.get_mut(next.slot)?.take()?;
        self.free.push(next.slot);
        Some((next.at, event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn the_queue_pops_by_time_then_scheduling_order() {
        let mut queue = EventQueue::default();
        queue.push(20, Event::Nemesis);
        queue.push(10, Event::Client);
        queue.push(10, Event::Heal);
        queue.push(5, Event::Deadline);
        let order: Vec<(u64, String)> = std::iter::from_fn(|| queue.pop())
            .map(|(at, event)| (at, format!("{event:?}")))
            .collect();
        let expected = [
            (5, "Deadline"),
            (10, "Client"),
            (10, "Heal"),
            (20, "Nemesis"),
        ];
        let expected: Vec<(u64, String)> = expected
            .iter()
            .map(|(t, e)| (*t, (*e).to_string()))
            .collect();
        assert_eq!(order, expected);
        // Slots are reused after a pop, and reuse does not disturb the order.
        queue.push(3, Event::Failover);
        assert_eq!(queue.slab.len(), 4);
        assert!(matches!(queue.pop(), Some((3, Event::Failover))));
    }
}
