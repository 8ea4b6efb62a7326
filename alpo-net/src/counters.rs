//! Counters of frames, bytes, drops, connections and rejections, shared by a transport's
//! threads as relaxed atomics and read by the node as a [`Counters`] snapshot.
//!
//! Invariant: counters only grow. A snapshot is not atomic across fields (each field is exact on
//! its own), which is all monitoring needs.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::CloseReason;

/// A snapshot of a transport's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames written to sockets, handshake frames included.
    pub frames_sent: u64,
    /// Bytes written to sockets.
    pub bytes_sent: u64,
    /// Frames received whole and checksum-verified, handshake frames included.
    pub frames_received: u64,
    /// Bytes read from sockets.
    pub bytes_received: u64,
    /// Messages dropped because their queue was full (the oldest queued message goes).
    pub messages_dropped_queue_full: u64,
    /// Messages dropped because their receiver is unknown, is this node, or the sender is not.
    pub messages_dropped_unroutable: u64,
    /// Messages dropped because they do not fit one frame or cannot be encoded.
    pub messages_dropped_unencodable: u64,
    /// Messages dropped because the connection failed while they were being written.
    pub messages_dropped_link_lost: u64,
    /// Inbound messages dropped because their sender or receiver did not match the handshake.
    pub messages_dropped_identity: u64,
    /// Outbound connections established (handshake completed), the first to each peer included.
    pub connections_established: u64,
    /// Outbound connections re-established after a previous one to the same peer was lost.
    pub reconnects: u64,
    /// Outbound connection attempts that failed (connect, handshake or refusal).
    pub connect_failures: u64,
    /// Inbound connections accepted (handshake completed).
    pub connections_accepted: u64,
    /// Connections this side closed for a named reason, all reasons together.
    pub rejections: u64,
    /// Connections this side closed, per reason, indexed by `CloseReason as u8 - 1`.
    pub rejections_by_reason: [u64; CloseReason::ALL.len()],
}

impl Counters {
    /// Connections this side closed for `reason`.
    #[must_use]
    pub fn rejections_for(&self, reason: CloseReason) -> u64 {
        self.rejections_by_reason[reason_slot(reason)]
    }
}

/// The live counters behind [`Counters`].
#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    pub(crate) frames_sent: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    pub(crate) frames_received: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) messages_dropped_queue_full: AtomicU64,
    pub(crate) messages_dropped_unroutable: AtomicU64,
    pub(crate) messages_dropped_unencodable: AtomicU64,
    pub(crate) messages_dropped_link_lost: AtomicU64,
    pub(crate) messages_dropped_identity: AtomicU64,
    pub(crate) connections_established: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    rejections_by_reason: [AtomicU64; CloseReason::ALL.len()],
}

impl CounterCells {
    pub(crate) fn rejected(&self, reason: CloseReason) {
        self.rejections_by_reason[reason_slot(reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Counters {
        let load = |cell: &AtomicU64| cell.load(Ordering::Relaxed);
        let rejections_by_reason = self.rejections_by_reason.each_ref().map(load);
        Counters {
            frames_sent: load(&self.frames_sent),
            bytes_sent: load(&self.bytes_sent),
            frames_received: load(&self.frames_received),
            bytes_received: load(&self.bytes_received),
            messages_dropped_queue_full: load(&self.messages_dropped_queue_full),
            messages_dropped_unroutable: load(&self.messages_dropped_unroutable),
            messages_dropped_unencodable: load(&self.messages_dropped_unencodable),
            messages_dropped_link_lost: load(&self.messages_dropped_link_lost),
            messages_dropped_identity: load(&self.messages_dropped_identity),
            connections_established: load(&self.connections_established),
            reconnects: load(&self.reconnects),
            connect_failures: load(&self.connect_failures),
            connections_accepted: load(&self.connections_accepted),
            rejections: rejections_by_reason.iter().sum(),
            rejections_by_reason,
        }
    }
}

/// Adds `amount` to a counter.
pub(crate) fn add(cell: &AtomicU64, amount: u64) {
    cell.fetch_add(amount, Ordering::Relaxed);
}

/// Adds a `usize` amount (a length or a count) to a counter.
pub(crate) fn add_usize(cell: &AtomicU64, amount: usize) {
    add(cell, u64::try_from(amount).unwrap_or(u64::MAX));
}

fn reason_slot(reason: CloseReason) -> usize {
    usize::from(reason as u8) - 1
}
