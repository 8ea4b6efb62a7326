//! The event loop's side of reads without a log write (rules Q1–Q3, docs/operations.md,
//! Reads): a linearizable or lease `Query` or `Read` gets a read id, the core is asked for a
//! read index (`Node::read_index`), and the read waits here until the core's `ReadReady` or
//! `ReadFailed`. On `ReadReady` the read goes down the apply queue behind the `Apply` that
//! reached its index, so the apply thread serves it from a state that holds every entry up to
//! the index. A stale read skips the core and goes to the apply queue at once.
//!
//! Queries ready to be served (linearizable ones once their index is applied, stale ones at
//! once) are queued here during a turn of the event loop and handed to the apply thread
//! together at the end of the turn's outputs (`take_queries`), behind every `Apply` of the turn:
//! one channel send and wake-up per turn instead of one per query. A query whose index the
//! apply thread has already applied is not queued at all: the event loop answers it at once
//! from the shared state machine (`query_now.rs`); only the others wait here.
//!
//! Invariants: every read id is used once; at most `READS_WAITING_MAX` reads wait; a read that
//! waits is answered exactly once (served, refused, or failed when the node stops); a queued
//! query is handed over (or refused) in the turn it was queued.

use std::collections::BTreeMap;

use bytes::Bytes;

use alpo_core::{LogIndex, ReadId, ReadMode};

use crate::apply::QueryRequest;
use crate::client_protocol::Consistency;
use crate::service::ConnectionId;

/// Reads waiting for the core's answer at most; beyond, a read is refused with `Retry`.
pub(crate) const READS_WAITING_MAX: usize = 65_536;

/// What a read asks for once its index is ready.
#[derive(Debug)]
pub(crate) enum ReadWhat {
    /// `StateMachine::query` with these bytes.
    Query(Bytes),
    /// Committed entries from `from`, at most `max_count`.
    Entries { from: LogIndex, max_count: u32 },
}

/// A read waiting for its read index.
#[derive(Debug)]
pub(crate) struct WaitingRead {
    pub(crate) connection: ConnectionId,
    pub(crate) seq: u64,
    pub(crate) what: ReadWhat,
}

/// The reads waiting for the core.
#[derive(Debug, Default)]
pub(crate) struct ClientReads {
    next_id: u64,
    waiting: BTreeMap<ReadId, WaitingRead>,
    /// Queries ready to be served, in the order they became ready.
    queries: Vec<QueryRequest>,
}

impl ClientReads {
    /// Registers a read; `None` when too many wait.
    pub(crate) fn start(&mut self, read: WaitingRead) -> Option<ReadId> {
        if self.waiting.len() >= READS_WAITING_MAX {
            return None;
        }
        self.next_id += 1;
        let id = ReadId(self.next_id);
        self.waiting.insert(id, read);
        Some(id)
    }

    /// The read the core answered, if it still waits.
    pub(crate) fn finish(&mut self, id: ReadId) -> Option<WaitingRead> {
        self.waiting.remove(&id)
    }

    /// Queues a query that may be served now.
    pub(crate) fn queue_query(&mut self, query: QueryRequest) {
        self.queries.push(query);
    }

    /// The queued queries, in order (the queue is left empty).
    pub(crate) fn take_queries(&mut self) -> Vec<QueryRequest> {
        std::mem::take(&mut self.queries)
    }

    /// Every waiting read (the node stops).
    pub(crate) fn drain(&mut self) -> Vec<WaitingRead> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }
}

/// The core's read mode for a consistency; `None` for `Stale`, which needs no read index.
pub(crate) fn read_mode(consistency: Consistency) -> Option<ReadMode> {
    match consistency {
        Consistency::Linearizable => Some(ReadMode::Linearizable),
        Consistency::Lease => Some(ReadMode::Lease),
        Consistency::Stale => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(seq: u64) -> WaitingRead {
        WaitingRead {
            connection: ConnectionId(1),
            seq,
            what: ReadWhat::Query(Bytes::new()),
        }
    }

    #[test]
    fn each_read_gets_its_own_id_and_is_finished_once() {
        let mut reads = ClientReads::default();
        let a = reads.start(read(1)).unwrap();
        let b = reads.start(read(2)).unwrap();
        assert_ne!(a, b);
        assert_eq!(reads.finish(a).unwrap().seq, 1);
        assert!(reads.finish(a).is_none());
        assert_eq!(reads.drain().len(), 1);
        assert_eq!(read_mode(Consistency::Stale), None);
    }

    #[test]
    fn queued_queries_are_taken_in_order_once() {
        let mut reads = ClientReads::default();
        for seq in [3, 1, 2] {
            reads.queue_query(QueryRequest {
                connection: ConnectionId(1),
                seq,
                payload: Bytes::new(),
            });
        }
        let seqs: Vec<u64> = reads.take_queries().iter().map(|q| q.seq).collect();
        assert_eq!(seqs, [3, 1, 2]);
        assert!(reads.take_queries().is_empty());
    }
}
