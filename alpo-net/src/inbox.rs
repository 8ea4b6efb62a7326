//! The receiving side of a node: an [`Inbox`] that the node's own thread waits on. It reads every
//! established inbound connection (peer and client) itself, so a message costs one wake-up, that
//! of the thread that handles it, and no thread per connection sits blocked in `read`.
//!
//! How it works: handshakes run on short-lived threads (`peer.rs`, `client.rs`); a connection that
//! passed its handshake is made non-blocking and handed over as an [`Arrival`] (with whatever its
//! decoder already buffered), and the [`InboxWaker`] wakes the inbox. [`Inbox::wait`] registers
//! arrivals with one epoll instance (through mio, edge-triggered), waits for readiness or a
//! wake-up, reads each ready socket, feeds the pure [`FrameDecoder`], and turns every checked
//! frame into an [`Incoming`] through the connection's [`FrameSink`]. Other threads (the storage
//! thread, a stop request) call [`InboxWaker::wake`] to end a wait early.
//!
//! Invariants: only the thread that owns the `Inbox` reads an inbound socket, so frames from one
//! connection are delivered in order and never interleaved; one wait reads at most
//! `INBOX_READ_BYTES_MAX` from each connection (a connection with more is read first at the next
//! wait, which then does not sleep), so one busy peer cannot starve the others or grow a batch
//! without bound; a frame that fails its checks closes the connection with a named reason
//! (logged with the peer address and counted) and nothing of it is delivered; a connection is
//! removed, deregistered and closed exactly once. Wakes are coalesced: at most one wake-up system
//! call is made between two waits.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use alpo_core::Message;
use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;

use crate::conn::Registration;
use crate::counters::{CounterCells, add, add_usize};
use crate::error::{Error, Rejection};
use crate::frame::{Frame, FrameDecoder, FrameKind, encode_frame};
use crate::handshake::encode_close_body;
use crate::limits::{INBOX_EVENT_COUNT_MAX, INBOX_READ_BYTES_MAX, READ_CHUNK_BYTES};
use crate::stream::Stream;

/// The token of the inbox's own waker; connection tokens count up from zero.
const WAKE: Token = Token(usize::MAX);

/// Something that arrived for the node.
///
/// Deliberately exhaustive: the node must handle everything that arrives, so a new kind has to
/// break its `match` rather than be dropped by a wildcard arm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A message from a peer, checked against the connection's handshake.
    Peer(Message),
    /// A request from a client.
    Client(ClientRequest),
}

/// Names one client connection on a [`crate::ClientListener`]; never reused by that listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// A request from a client: an opaque body whose frame was checked, and where to reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// The connection it came on; pass it to [`crate::ClientListener::reply`].
    pub connection: ConnectionId,
    /// The request body, as the client sent it.
    pub body: Bytes,
}

/// The receiving side of a node's connections. Pass it to [`crate::PeerTransport::start`] and
/// [`crate::ClientListener::start`], then call [`Inbox::wait`] from the node's thread.
#[derive(Debug)]
pub struct Inbox {
    poll: Poll,
    events: Events,
    handoff: Arc<Handoff>,
    streams: HashMap<Token, Inbound>,
    /// Connections whose last read stopped at the per-wait budget, not at "would block".
    unfinished: Vec<Token>,
    /// Scratch list of readiness taken from one poll.
    ready: Vec<Readiness>,
    chunk: Vec<u8>,
}

/// Ends an [`Inbox::wait`] early, from any thread. Cheap to clone; wakes are coalesced.
#[derive(Clone, Debug)]
pub struct InboxWaker {
    handoff: Arc<Handoff>,
}

/// What other threads hand to the inbox: new connections, requests to watch for writability,
/// and wake-ups.
#[derive(Debug)]
pub(crate) struct Handoff {
    waker: Waker,
    /// Set from the first wake after a wait began until the inbox takes the handoffs.
    woken: AtomicBool,
    arrivals: Mutex<Vec<Arrival>>,
    want_writable: Mutex<Vec<Token>>,
    next_token: AtomicUsize,
    /// Set when the inbox is dropped (under the `arrivals` lock's protection for `arrive`).
    closed: AtomicBool,
}

/// A connection that passed its handshake, ready to be read by the inbox.
pub(crate) struct Arrival {
    /// Its token, from [`Handoff::next_token`].
    pub(crate) token: Token,
    /// The stream, already non-blocking.
    pub(crate) stream: Stream,
    pub(crate) peer: SocketAddr,
    /// The handshake's decoder, with any bytes that came after the handshake.
    pub(crate) decoder: FrameDecoder,
    /// Keeps the stream in its transport's registry (so shutdown closes it).
    pub(crate) registration: Registration,
    /// What the connection's frames become.
    pub(crate) sink: Box<dyn FrameSink>,
}

/// What one kind of connection (peer or client) does with its frames.
pub(crate) trait FrameSink: Send {
    /// What a checked frame becomes: an item for the node, nothing (dropped and counted here),
    /// or the end of the connection (`Some` rejection to tell the other side why).
    fn on_frame(&mut self, frame: Frame) -> Result<Option<Incoming>, Option<Rejection>>;
    /// The counters of the transport the connection belongs to.
    fn counters(&self) -> &CounterCells;
    /// The sender id this side writes in frames (for a `Close`).
    fn sender(&self) -> u64;
    /// The socket can take more bytes; returns whether bytes are still waiting to be written.
    fn on_writable(&self) -> bool {
        false
    }
    /// The connection is being closed.
    fn on_close(&self) {}
}

/// An established connection owned by the inbox.
struct Inbound {
    stream: Stream,
    peer: SocketAddr,
    decoder: FrameDecoder,
    registration: Registration,
    sink: Box<dyn FrameSink>,
    watching_writable: bool,
}

/// What one poll reported for one connection.
#[derive(Clone, Copy, Debug)]
struct Readiness {
    token: Token,
    readable: bool,
    writable: bool,
    /// The other side closed (or the socket failed): read until the end is seen.
    closed: bool,
}

/// How reading a connection ended.
enum ReadEnd {
    /// The socket has nothing more for now.
    Drained,
    /// The per-wait budget ran out; read again at the next wait.
    Budget,
    /// The connection is over, with a rejection to report if it broke a rule.
    Close(Option<Rejection>),
}

impl std::fmt::Debug for Arrival {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Arrival")
            .field("token", &self.token)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Inbox {
    /// Creates an inbox with its epoll instance and waker.
    pub fn new() -> Result<Inbox, Error> {
        let poll_error = |operation| move |source| Error::Poll { operation, source };
        let poll = Poll::new().map_err(poll_error("create"))?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(poll_error("create waker"))?;
        let handoff = Handoff {
            waker,
            woken: AtomicBool::new(false),
            arrivals: Mutex::new(Vec::new()),
            want_writable: Mutex::new(Vec::new()),
            next_token: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        };
        Ok(Inbox {
            poll,
            events: Events::with_capacity(INBOX_EVENT_COUNT_MAX),
            handoff: Arc::new(handoff),
            streams: HashMap::new(),
            unfinished: Vec::new(),
            ready: Vec::new(),
            chunk: vec![0; READ_CHUNK_BYTES],
        })
    }

    /// A handle that ends a wait from another thread.
    #[must_use]
    pub fn waker(&self) -> InboxWaker {
        InboxWaker {
            handoff: Arc::clone(&self.handoff),
        }
    }

    pub(crate) fn handoff(&self) -> Arc<Handoff> {
        Arc::clone(&self.handoff)
    }

    /// Waits until something arrives, a waker fires, or `timeout` passes (`None`: no limit),
    /// and appends every message and request that arrived to `out`, in order per connection.
    /// Returns at once if input is already waiting. An error means the poll itself failed
    /// (not a connection: a bad connection is closed and counted, and the wait goes on).
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Incoming>,
    ) -> Result<(), Error> {
        let before = out.len();
        self.take_handoffs(out);
        let busy = !self.unfinished.is_empty() || out.len() > before;
        let timeout = if busy { Some(Duration::ZERO) } else { timeout };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(source) => {
                let operation = "wait";
                return Err(Error::Poll { operation, source });
            }
        }
        self.handoff.woken.store(false, Ordering::SeqCst);
        self.take_handoffs(out);
        self.ready.clear();
        // Connections left unfinished by the last wait come first, each once: an event for one
        // of them is merged into its entry, so no connection is read twice in one wait.
        for token in self.unfinished.drain(..) {
            let (readable, writable, closed) = (true, false, true);
            let readiness = Readiness {
                token,
                readable,
                writable,
                closed,
            };
            self.ready.push(readiness);
        }
        let unfinished_count = self.ready.len();
        for event in &self.events {
            if event.token() == WAKE {
                continue;
            }
            let closed = event.is_read_closed() || event.is_error();
            let readiness = Readiness {
                token: event.token(),
                readable: event.is_readable() || closed,
                writable: event.is_writable(),
                closed,
            };
            let earlier = self.ready[..unfinished_count]
                .iter_mut()
                .find(|earlier| earlier.token == readiness.token);
            match earlier {
                Some(earlier) => earlier.writable |= readiness.writable,
                None => self.ready.push(readiness),
            }
        }
        let ready = std::mem::take(&mut self.ready);
        for readiness in &ready {
            if readiness.writable {
                self.on_writable(readiness.token);
            }
            if readiness.readable {
                self.read_ready(readiness.token, readiness.closed, out);
            }
        }
        self.ready = ready;
        Ok(())
    }

    /// Registers new connections and delivers the frames their decoders already hold; starts
    /// watching for writability where a reply could not be written whole.
    fn take_handoffs(&mut self, out: &mut Vec<Incoming>) {
        let arrivals = std::mem::take(&mut *self.handoff.arrivals.lock());
        for arrival in arrivals {
            self.admit(arrival, out);
        }
        let want_writable = std::mem::take(&mut *self.handoff.want_writable.lock());
        for token in want_writable {
            let Some(inbound) = self.streams.get_mut(&token) else {
                continue;
            };
            if inbound.watching_writable {
                continue;
            }
            let fd = inbound.stream.as_raw_fd();
            let interest = Interest::READABLE | Interest::WRITABLE;
            match self
                .poll
                .registry()
                .reregister(&mut SourceFd(&fd), token, interest)
            {
                Ok(()) => inbound.watching_writable = true,
                Err(error) => {
                    tracing::warn!(
                        peer = %inbound.peer,
                        error = &error as &dyn std::error::Error,
                        "cannot watch a socket for room"
                    );
                    self.close(token, None);
                }
            }
        }
    }

    fn admit(&mut self, arrival: Arrival, out: &mut Vec<Incoming>) {
        let Arrival {
            token,
            stream,
            peer,
            decoder,
            registration,
            sink,
        } = arrival;
        let fd = stream.as_raw_fd();
        if let Err(error) =
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), token, Interest::READABLE)
        {
            tracing::warn!(
                peer = %peer,
                error = &error as &dyn std::error::Error,
                "cannot watch a new connection; closing it"
            );
            sink.on_close();
            let _ = stream.shutdown();
            return;
        }
        // A TLS stream may hold records read during its handshake that epoll will not report:
        // read it at the next wait without sleeping.
        let buffers_input = stream.is_tls();
        let inbound = Inbound {
            stream,
            peer,
            decoder,
            registration,
            sink,
            watching_writable: false,
        };
        self.streams.insert(token, inbound);
        if buffers_input {
            self.unfinished.push(token);
        }
        // Frames that came right behind the handshake are already in the decoder; epoll reports
        // the socket readable at registration if more is waiting, so a read is not needed here.
        match self.deliver_decoded(token, out) {
            Ok(()) => {}
            Err(rejection) => self.close(token, rejection),
        }
    }

    fn on_writable(&mut self, token: Token) {
        let Some(inbound) = self.streams.get_mut(&token) else {
            return;
        };
        if !inbound.watching_writable || inbound.sink.on_writable() {
            return;
        }
        let fd = inbound.stream.as_raw_fd();
        let registry = self.poll.registry();
        match registry.reregister(&mut SourceFd(&fd), token, Interest::READABLE) {
            Ok(()) => inbound.watching_writable = false,
            Err(error) => {
                tracing::warn!(
                    peer = %inbound.peer,
                    error = &error as &dyn std::error::Error,
                    "cannot stop watching for room"
                );
                self.close(token, None);
            }
        }
    }

    fn read_ready(&mut self, token: Token, closed: bool, out: &mut Vec<Incoming>) {
        match self.read_some(token, closed, out) {
            ReadEnd::Drained => {}
            ReadEnd::Budget => self.unfinished.push(token),
            ReadEnd::Close(rejection) => self.close(token, rejection),
        }
    }

    /// Reads up to the budget from one connection, delivering each whole frame. Unless `closed`
    /// (the poll saw the other side's end), a short read is taken to mean the socket is empty.
    fn read_some(&mut self, token: Token, closed: bool, out: &mut Vec<Incoming>) -> ReadEnd {
        let mut budget = INBOX_READ_BYTES_MAX;
        loop {
            let Some(inbound) = self.streams.get_mut(&token) else {
                return ReadEnd::Drained;
            };
            if budget == 0 {
                return ReadEnd::Budget;
            }
            match (&inbound.stream).read(&mut self.chunk) {
                Ok(0) => {
                    let shutting_down = inbound.registration.shared().is_closed();
                    let truncated = inbound.decoder.finish().err();
                    return ReadEnd::Close(truncated.filter(|_| !shutting_down));
                }
                Ok(length) => {
                    add_usize(&inbound.sink.counters().bytes_received, length);
                    inbound.decoder.feed(&self.chunk[..length]);
                    budget = budget.saturating_sub(length);
                    // (For TLS, only if nothing is buffered above the socket either.)
                    if length < self.chunk.len()
                        && !closed
                        && inbound.stream.drained_after_short_read()
                    {
                        // A short read emptied the socket's queue; anything arriving later
                        // (data or the end) raises a new edge. This saves the read that would
                        // say "would block". An end the poll already reported raises none, so
                        // then the loop reads on until it sees it.
                        return match self.deliver_decoded(token, out) {
                            Ok(()) => ReadEnd::Drained,
                            Err(rejection) => ReadEnd::Close(rejection),
                        };
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return ReadEnd::Drained,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    tracing::debug!(
                        peer = %inbound.peer,
                        error = &error as &dyn std::error::Error,
                        "connection ended"
                    );
                    return ReadEnd::Close(None);
                }
            }
            if let Err(rejection) = self.deliver_decoded(token, out) {
                return ReadEnd::Close(rejection);
            }
        }
    }

    /// Turns every whole frame the connection's decoder holds into output.
    fn deliver_decoded(
        &mut self,
        token: Token,
        out: &mut Vec<Incoming>,
    ) -> Result<(), Option<Rejection>> {
        let Some(inbound) = self.streams.get_mut(&token) else {
            return Ok(());
        };
        while let Some(frame) = inbound.decoder.next_frame().map_err(Some)? {
            add(&inbound.sink.counters().frames_received, 1);
            if let Some(item) = inbound.sink.on_frame(frame)? {
                out.push(item);
            }
        }
        Ok(())
    }

    /// Removes a connection: deregisters it, tells the other side why if it broke a rule, and
    /// closes it.
    fn close(&mut self, token: Token, rejection: Option<Rejection>) {
        let Some(inbound) = self.streams.remove(&token) else {
            return;
        };
        self.unfinished.retain(|unfinished| *unfinished != token);
        let fd = inbound.stream.as_raw_fd();
        if let Err(error) = self.poll.registry().deregister(&mut SourceFd(&fd)) {
            tracing::debug!(
                peer = %inbound.peer,
                error = &error as &dyn std::error::Error,
                "deregistering a closed connection"
            );
        }
        if let Some(rejection) = rejection {
            reject_nonblocking(&inbound, &rejection);
        }
        inbound.sink.on_close();
        let _ = inbound.stream.shutdown();
    }
}

impl Drop for Inbox {
    /// Closes every connection the inbox reads, and makes later arrivals close at once, so
    /// that clients and peers of a node whose event loop has ended see their connections end
    /// (and retry elsewhere) instead of waiting for answers that cannot come.
    fn drop(&mut self) {
        self.handoff.closed.store(true, Ordering::SeqCst);
        let arrivals = std::mem::take(&mut *self.handoff.arrivals.lock());
        for arrival in arrivals {
            arrival.sink.on_close();
            let _ = arrival.stream.shutdown();
        }
        for (_, inbound) in self.streams.drain() {
            inbound.sink.on_close();
            let _ = inbound.stream.shutdown();
        }
    }
}

impl InboxWaker {
    /// Ends the inbox's current or next wait. Never blocks.
    pub fn wake(&self) {
        self.handoff.wake();
    }
}

impl Handoff {
    /// A token for a new connection; never reused by this inbox.
    pub(crate) fn next_token(&self) -> Token {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        assert!(token < WAKE.0, "inbox connection tokens exhausted");
        Token(token)
    }

    /// Hands a connection to the inbox (or closes it, if the inbox is gone).
    pub(crate) fn arrive(&self, arrival: Arrival) {
        {
            let mut arrivals = self.arrivals.lock();
            if !self.closed.load(Ordering::SeqCst) {
                arrivals.push(arrival);
                drop(arrivals);
                self.wake();
                return;
            }
        }
        arrival.sink.on_close();
        let _ = arrival.stream.shutdown();
    }

    /// Asks the inbox to tell the connection's sink when its socket has room again.
    pub(crate) fn want_writable(&self, token: Token) {
        self.want_writable.lock().push(token);
        self.wake();
    }

    fn wake(&self) {
        // The first wake since the inbox took its handoffs makes the system call; later ones
        // find the flag set and know a wake-up is already on its way.
        if !self.woken.swap(true, Ordering::SeqCst)
            && let Err(error) = self.waker.wake()
        {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "cannot wake the inbox"
            );
        }
    }
}

/// Logs and counts a rejection and tells the other side why, best effort (a non-blocking write
/// of one small frame; if the socket has no room the reason is still logged and counted here).
fn reject_nonblocking(inbound: &Inbound, rejection: &Rejection) {
    let reason = rejection.reason();
    let counters = inbound.sink.counters();
    tracing::warn!(peer = %inbound.peer, %reason, "closing connection: {rejection}");
    counters.rejected(reason);
    let mut frame = Vec::new();
    let cluster = inbound.decoder.cluster_id();
    let body = encode_close_body(reason);
    if encode_frame(
        &mut frame,
        FrameKind::Close,
        cluster,
        inbound.sink.sender(),
        &body,
    )
    .is_ok()
        && (&inbound.stream).write_all(&frame).is_ok()
    {
        add(&counters.frames_sent, 1);
        add_usize(&counters.bytes_sent, frame.len());
    }
}
