//! Named maxima for every frame, queue, batch, retry and connection count in alpo-net.
//!
//! Each limit says what happens when it is reached. Queue lengths and backoff bounds are defaults
//! for [`crate::PeerConfig`] and [`crate::ClientListenerConfig`]; the frame limits are part of the
//! wire format and fixed.

use alpo_core::limits::{APPEND_BYTES_MAX, APPEND_ENTRY_COUNT_MAX, ENTRY_BYTES_MAX};

/// Bytes in a frame header (see `docs/formats.md`). Fixed by the wire format.
pub const FRAME_HEADER_BYTES: usize = 36;

/// Largest frame body accepted or sent. A received header announcing more closes the connection
/// with `CloseReason::FrameTooLarge` before anything is allocated; a message that would encode to
/// more is not sent, and counted in `Counters::messages_dropped_too_large`.
pub const FRAME_BODY_BYTES_MAX: u32 = 8 * 1024 * 1024;

/// Bytes every message body starts with: receiver, term and incarnation (three `u64`).
pub const MESSAGE_PREFIX_BYTES: usize = 24;

/// Bytes of an Append body before its entries: prefix, prev index, prev term, leader commit and
/// entry count.
pub const APPEND_HEADER_BYTES: usize = MESSAGE_PREFIX_BYTES + 8 + 8 + 8 + 4;

/// Bytes of one encoded entry before its payload: term, kind and payload length.
pub const ENTRY_HEADER_BYTES: usize = 8 + 1 + 4;

/// Default length of each peer's outbound queue, in messages. When it is full, `send` drops the
/// oldest queued message and counts it in `Counters::messages_dropped_queue_full`: the protocol
/// tolerates loss, and the node's event loop must never block on a slow or dead peer.
pub const PEER_QUEUE_MESSAGE_COUNT_MAX: usize = 4096;

/// Bytes the inbox reads from one connection in one wait. A connection with more waiting is read
/// first at the next wait (which then does not sleep), so one busy peer cannot starve the others,
/// and what one wait hands the node stays bounded. TCP pushes back on senders while the node is
/// busy with what it has.
pub const INBOX_READ_BYTES_MAX: usize = 256 * 1024;

/// Readiness events the inbox takes from one epoll wait; more stay queued for the next wait.
pub const INBOX_EVENT_COUNT_MAX: usize = 1024;

/// Default cap on the bytes of replies waiting for room in one client connection's socket. A
/// reply that would go beyond it is dropped and counted in `Counters::messages_dropped_queue_full`;
/// the client times out and retries. Replies are written straight from `reply` while the socket
/// has room, so this fills only when a client stops reading.
pub const CLIENT_REPLY_BUFFER_BYTES_MAX: usize = 4 * 1024 * 1024;

/// A writer stops adding queued frames to a batch once it holds this many bytes, and writes it.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 * 1024;

/// A writer stops adding queued frames to a batch once it holds this many frames, and writes it.
pub const WRITE_BATCH_FRAME_COUNT_MAX: usize = 1024;

/// `PeerTransport::send` writes a message to an idle peer's socket itself only if the previous
/// `send` to that peer was at least this many nanoseconds earlier. Closer sends are a burst: they
/// are queued, and the writer thread coalesces them into one write, so a burst costs the caller
/// no system calls. Below any round trip (a lone request or reply is written at once, saving a
/// thread hand-off), above the spacing of back-to-back sends.
pub const DIRECT_WRITE_GAP_NS_MIN: u64 = 5_000;

/// Bytes a reader asks the socket for per `read` call.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Default first reconnect delay after a failed or lost outbound connection, in milliseconds.
/// Each further failure doubles it, up to the maximum below; a successful handshake resets it.
pub const RECONNECT_BACKOFF_MS_MIN: u64 = 10;

/// Default cap on the reconnect delay, in milliseconds. Jitter draws the actual delay uniformly
/// from the upper half of the current delay, so peers that failed together do not retry together.
pub const RECONNECT_BACKOFF_MS_MAX: u64 = 1000;

/// How long an outbound connect may take before it counts as failed, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 1000;

/// How long either side waits for the other's handshake frame before closing the connection with
/// `CloseReason::HandshakeTimeout`, in milliseconds.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 5000;

/// How long a blocked socket write may take before the connection is dropped (and, for a peer,
/// redialled), in milliseconds. A dead peer therefore ties up its writer thread at most this long.
pub const WRITE_TIMEOUT_MS: u64 = 5000;

/// Default cap on inbound connections to the peer listener. Beyond it a new connection is closed
/// with `CloseReason::TooManyConnections`.
pub const PEER_CONNECTION_COUNT_MAX: usize = 64;

/// Default cap on connections to the client listener. Beyond it a new connection is closed with
/// `CloseReason::TooManyConnections`.
pub const CLIENT_CONNECTION_COUNT_MAX: usize = 256;

// The header layout in docs/formats.md: magic 4, version 2, kind 1, reserved 1, cluster id 8,
// sender 8, body length 4, body CRC 4, header CRC 4.
const _: () = assert!(FRAME_HEADER_BYTES == 4 + 2 + 1 + 1 + 8 + 8 + 4 + 4 + 4);

// The largest Append the core sends by default must fit one frame, or it could never be
// replicated: up to APPEND_BYTES_MAX of payload in APPEND_ENTRY_COUNT_MAX entries, plus one entry
// of up to ENTRY_BYTES_MAX (the core always sends one entry, even if it is larger).
const _: () = assert!(
    (APPEND_HEADER_BYTES as u64)
        + (APPEND_ENTRY_COUNT_MAX + 1) * (ENTRY_HEADER_BYTES as u64)
        + APPEND_BYTES_MAX
        + ENTRY_BYTES_MAX
        <= FRAME_BODY_BYTES_MAX as u64
);

// A frame's total size must fit a u32 and the batch buffer must hold at least one header.
const _: () =
    assert!((FRAME_BODY_BYTES_MAX as u64) + (FRAME_HEADER_BYTES as u64) < u32::MAX as u64);
const _: () = assert!(FRAME_HEADER_BYTES < WRITE_BATCH_BYTES_MAX);
const _: () = assert!(RECONNECT_BACKOFF_MS_MIN <= RECONNECT_BACKOFF_MS_MAX);
