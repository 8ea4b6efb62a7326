//! The outbound side of one peer connection: a bounded drop-oldest queue and a socket that the
//! caller of `send` writes to directly while the link is idle.
//!
//! Two writers share one socket: the caller of [`Link::send`] (the node's event loop) and the
//! peer's writer thread. Who may write is decided under the link's lock, which `send` only ever
//! *tries* to take (if it is held, `send` queues):
//!
//! - **Idle** (connected, writer thread not owning the socket, nothing unsent, no partly written
//!   frame, and no burst on): `send` encodes the message and writes it with non-blocking writes
//!   while holding the lock. A whole write is done; if nothing was written (`WouldBlock`) the
//!   message is queued; if only a prefix was written, the unwritten tail of that frame is kept as
//!   `pending` and the writer thread takes over. So `send` never waits on the network.
//! - **Busy** (disconnected, or the writer thread owns the socket, or messages are unsent):
//!   `send` queues, and the writer thread coalesces what is queued into one write per batch.
//! - **Bursting** (the previous `send` was less than `DIRECT_WRITE_GAP_NS_MIN` ago): `send`
//!   queues too, so a burst costs the caller no system calls and is coalesced; the writer thread
//!   keeps the socket until the burst is over rather than switch its mode after every batch.
//!
//! The writer thread takes the socket (under the lock) before it writes, writes in blocking mode
//! (with the write timeout), sends `pending` before any queued message, and switches the socket
//! back to non-blocking under the lock before it lets `send` write again.
//!
//! Invariants: at any instant at most one of the two writes to the socket, and only the writer
//! thread blocks; `unsent` counts items queued or taken but not yet written or dropped, so a
//! direct write (which needs `unsent == 0`) never overtakes a queued message; a partly written
//! frame is completed on the same connection before anything else or, if that connection is
//! lost, discarded with it (never continued on a new connection), so the peer never sees a torn
//! frame followed by more data; the queue holds at most `capacity` items, a full queue drops its
//! oldest. With TLS, a direct write whose records the socket did not take whole leaves them in
//! the stream (`Stream::has_pending_output`); the link then hands the socket to the writer
//! thread exactly as for a torn frame, and the writer flushes them first.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use alpo_core::{ClusterId, Message};
use crossbeam_channel::Receiver;
use parking_lot::{Mutex, MutexGuard};

use crate::codec::encode_message;
use crate::counters::{CounterCells, add, add_usize};
use crate::limits::DIRECT_WRITE_GAP_NS_MIN;
use crate::queue::{DropOldestSender, Pushed, drop_oldest_queue};
use crate::stream::Stream;

/// What the queue carries to the writer thread.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// A message to encode and write.
    Message(Message),
    /// Nothing to write: `send` left the writer work in the link's state (a torn frame's tail,
    /// or a broken connection).
    Wake,
}

/// One peer's outbound queue and shared socket.
#[derive(Debug)]
pub(crate) struct Link {
    state: Mutex<LinkState>,
    queue: DropOldestSender<Outbound>,
    /// Items pushed to the queue and not yet written or dropped (see the module invariants).
    unsent: AtomicUsize,
    cluster_id: ClusterId,
    /// Issue 12: the peer left the configuration; the writer closes and exits (never unset).
    retired: AtomicBool,
}

/// What the lock protects.
#[derive(Debug)]
pub(crate) struct LinkState {
    /// A clone of the connected stream, for direct writes; `None` while disconnected.
    stream: Option<Stream>,
    /// The writer thread owns the socket (or there is none): `send` must queue.
    writer_owns: bool,
    /// A direct write failed: the writer thread must drop the connection and redial.
    broken: bool,
    /// The unwritten tail of a frame a direct write wrote only in part.
    pub(crate) pending: Vec<u8>,
    /// Reused buffer for direct writes.
    scratch: Vec<u8>,
    /// When `send` last held the lock.
    last_send: Option<Instant>,
}

/// What a direct write did with the message.
enum Direct {
    /// Written whole, or dropped and counted (unencodable, or the connection failed).
    Done,
    /// Nothing was written: the socket's buffer is full. Queue it.
    Queue,
}

impl Link {
    /// A disconnected link with a queue of `capacity` items, and the writer's end of the queue.
    pub(crate) fn new(capacity: usize, cluster_id: ClusterId) -> (Link, Receiver<Outbound>) {
        let (queue, receiver) = drop_oldest_queue(capacity);
        let state = LinkState {
            stream: None,
            writer_owns: true,
            broken: false,
            pending: Vec::new(),
            scratch: Vec::new(),
            last_send: None,
        };
        let link = Link {
            state: Mutex::new(state),
            queue,
            unsent: AtomicUsize::new(0),
            cluster_id,
            retired: AtomicBool::new(false),
        };
        (link, receiver)
    }

    /// Sends `message`: writes it now if the link is idle, else queues it (dropping and counting
    /// the oldest queued message if the queue is full). Never blocks.
    pub(crate) fn send(&self, message: Message, counters: &CounterCells) {
        if let Some(mut state) = self.state.try_lock() {
            let now = Instant::now();
            let bursting = state.burst_time_left(now).is_some();
            state.last_send = Some(now);
            if !bursting && state.is_idle() && self.unsent.load(Ordering::Acquire) == 0 {
                match self.write_directly(&mut state, &message, counters) {
                    Direct::Done => return,
                    Direct::Queue => {}
                }
            }
        }
        self.push(Outbound::Message(message), counters);
    }

    /// The lock, for the writer thread.
    pub(crate) fn lock(&self) -> MutexGuard<'_, LinkState> {
        self.state.lock()
    }

    /// Items queued or taken and not yet written or dropped.
    pub(crate) fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Acquire)
    }

    /// Issue 12: the peer was removed from the configuration. Direct writes stop at once; the
    /// writer thread, woken here, drops its connection and exits at its next wake-up.
    pub(crate) fn retire(&self, counters: &CounterCells) {
        self.retired.store(true, Ordering::Release);
        {
            let mut state = self.state.lock();
            state.broken = true;
            state.writer_owns = true;
        }
        self.push(Outbound::Wake, counters);
    }

    /// Whether `retire` was called.
    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The writer thread wrote or dropped `count` items it took from the queue.
    pub(crate) fn done(&self, count: usize) {
        let before = self.unsent.fetch_sub(count, Ordering::AcqRel);
        debug_assert!(count <= before, "invariant: only taken items are done");
    }

    fn push(&self, item: Outbound, counters: &CounterCells) {
        self.unsent.fetch_add(1, Ordering::AcqRel);
        let pushed = self.queue.push_with(item, |dropped| {
            if matches!(dropped, Outbound::Message(_)) {
                add(&counters.messages_dropped_queue_full, 1);
            }
        });
        match pushed {
            Pushed::Queued => {}
            Pushed::QueuedDropping(count) => {
                self.done(usize::try_from(count).unwrap_or(usize::MAX));
            }
            Pushed::Disconnected => {
                self.done(1);
                add(&counters.messages_dropped_unroutable, 1);
            }
        }
    }

    /// Encodes `message` and writes it with non-blocking writes (the socket is non-blocking
    /// whenever the writer thread does not own it).
    fn write_directly(
        &self,
        state: &mut LinkState,
        message: &Message,
        counters: &CounterCells,
    ) -> Direct {
        let mut scratch = std::mem::take(&mut state.scratch);
        scratch.clear();
        if encode_message(message, self.cluster_id, &mut scratch).is_err() {
            // Rare: let the writer thread's encoder log why and count it.
            state.scratch = scratch;
            return Direct::Queue;
        }
        let direct = match state.write_nonblocking(&scratch) {
            Ok(written) if written == scratch.len() => {
                add(&counters.frames_sent, 1);
                add_usize(&counters.bytes_sent, written);
                if state.has_pending_output() {
                    // TLS records the socket did not take: the writer thread writes them.
                    state.writer_owns = true;
                    self.push(Outbound::Wake, counters);
                }
                Direct::Done
            }
            Ok(0) => Direct::Queue,
            Ok(written) => {
                // A torn frame: its tail must go next, on this connection, by the writer.
                add_usize(&counters.bytes_sent, written);
                state.pending.extend_from_slice(&scratch[written..]);
                state.writer_owns = true;
                self.push(Outbound::Wake, counters);
                Direct::Done
            }
            Err(error) => {
                tracing::debug!(
                    error = &error as &dyn std::error::Error,
                    "direct write to a peer failed"
                );
                add(&counters.messages_dropped_link_lost, 1);
                state.broken = true;
                state.writer_owns = true;
                self.push(Outbound::Wake, counters);
                Direct::Done
            }
        };
        state.scratch = scratch;
        direct
    }
}

impl LinkState {
    /// Whether `send` may write to the socket itself, as far as the state shows.
    fn is_idle(&self) -> bool {
        !self.writer_owns && self.stream.is_some() && self.pending.is_empty()
    }

    /// Whether TLS records of a direct write still wait to be written.
    fn has_pending_output(&self) -> bool {
        self.stream.as_ref().is_some_and(Stream::has_pending_output)
    }

    /// Writes as much of `bytes` as the socket takes without blocking: the count written, or the
    /// error that broke the connection.
    fn write_nonblocking(&self, bytes: &[u8]) -> io::Result<usize> {
        let Some(mut stream) = self.stream.as_ref() else {
            return Ok(0);
        };
        let mut written = 0;
        while written < bytes.len() {
            match stream.write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        Ok(written)
    }

    /// If the last `send` was less than `DIRECT_WRITE_GAP_NS_MIN` before `now` (a burst is on),
    /// how long until that gap has passed.
    pub(crate) fn burst_time_left(&self, now: Instant) -> Option<Duration> {
        let gap = Duration::from_nanos(DIRECT_WRITE_GAP_NS_MIN);
        let since = now.saturating_duration_since(self.last_send?);
        gap.checked_sub(since).filter(|left| !left.is_zero())
    }

    /// The writer thread connected: it owns `stream` until it first finds nothing to write.
    pub(crate) fn connected(&mut self, stream: Stream) {
        debug_assert!(
            self.pending.is_empty(),
            "invariant: a torn tail never survives its link"
        );
        self.stream = Some(stream);
        self.writer_owns = true;
        self.broken = false;
    }

    /// The connection is gone: direct writes stop, and a torn frame's tail is dropped with it.
    /// Returns whether a torn frame was dropped.
    pub(crate) fn disconnected(&mut self) -> bool {
        self.stream = None;
        self.writer_owns = true;
        self.broken = false;
        let torn = !self.pending.is_empty();
        self.pending.clear();
        torn
    }

    /// Whether a direct write found the connection broken.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken
    }

    /// The writer thread takes the socket (so `send` queues behind it).
    pub(crate) fn take_socket(&mut self) {
        self.writer_owns = true;
    }

    /// The writer thread hands the socket back to `send`, first switching it to non-blocking
    /// if it is `blocking`.
    pub(crate) fn release_socket(&mut self, blocking: bool) -> io::Result<()> {
        debug_assert!(
            self.pending.is_empty(),
            "invariant: released only with nothing to write"
        );
        if let Some(stream) = self.stream.as_ref().filter(|_| blocking) {
            stream.set_nonblocking(true)?;
        }
        self.writer_owns = false;
        Ok(())
    }
}
