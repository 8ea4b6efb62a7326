//! Socket plumbing shared by the peer transport and the client protocol: the registry of open
//! streams (so shutdown can unblock every blocked read and write), blocking frame reads with a
//! deadline, the dialler's and the listener's side of the handshake, and closing a connection
//! with a named reason.
//!
//! Invariants: once `Shared::close_all` has run, no stream can be registered, and every
//! registered stream has been shut down, so no thread stays blocked on a socket; a rejection is
//! always logged with the peer address and counted before the connection closes.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use alpo_core::{ClusterId, NodeId};
use crossbeam_channel::{Receiver, Sender, bounded};
use parking_lot::Mutex;

use crate::counters::{CounterCells, add, add_usize};
use crate::error::{Error, Rejection};
use crate::frame::{Frame, FrameDecoder, FrameKind, encode_frame};
use crate::handshake::{Hello, HelloPolicy, check_hello, decode_close, encode_close_body};
use crate::limits::{HANDSHAKE_TIMEOUT_MS, WRITE_TIMEOUT_MS};
use crate::stream::Stream;
use crate::tls::{self, HandshakeFailure, TLS_HANDSHAKE_RECORD};

/// State shared by all threads of one transport or listener.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) counters: CounterCells,
    pub(crate) cluster_id: ClusterId,
    /// Never carries a value: it disconnects at shutdown, which wakes every `select!` on it.
    pub(crate) shutdown: Receiver<()>,
    registry: Mutex<Registry>,
}

#[derive(Debug, Default)]
struct Registry {
    closed: bool,
    next_id: u64,
    streams: BTreeMap<u64, (TcpStream, Direction)>,
}

/// Which way a registered stream was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    Inbound,
    Outbound,
}

/// Keeps a stream in the registry; removes it when dropped.
#[derive(Debug)]
pub(crate) struct Registration {
    shared: Arc<Shared>,
    id: u64,
}

/// Join handles of a transport's threads.
#[derive(Debug, Default)]
pub(crate) struct Threads {
    handles: Mutex<Vec<JoinHandle<()>>>,
}

/// One end of a connection: its stream, its address and the decoder of what it sends.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) stream: Stream,
    pub(crate) peer: SocketAddr,
    pub(crate) decoder: FrameDecoder,
    pub(crate) chunk: Vec<u8>,
}

impl Shared {
    /// Shared state and the sender whose drop signals shutdown.
    pub(crate) fn new(cluster_id: ClusterId) -> (Arc<Shared>, Sender<()>) {
        let (shutdown_sender, shutdown) = bounded(0);
        let shared = Shared {
            counters: CounterCells::default(),
            cluster_id,
            shutdown,
            registry: Mutex::new(Registry::default()),
        };
        (Arc::new(shared), shutdown_sender)
    }

    /// Registers a stream so shutdown can close it; `None` once shutdown has begun.
    pub(crate) fn register(
        self: &Arc<Self>,
        stream: &TcpStream,
        direction: Direction,
    ) -> Option<Registration> {
        let clone = stream.try_clone().ok()?;
        let mut registry = self.registry.lock();
        if registry.closed {
            return None;
        }
        let id = registry.next_id;
        registry.next_id += 1;
        registry.streams.insert(id, (clone, direction));
        Some(Registration {
            shared: Arc::clone(self),
            id,
        })
    }

    /// Open inbound streams.
    pub(crate) fn inbound_count(&self) -> usize {
        let registry = self.registry.lock();
        let inbound = registry.streams.values();
        inbound
            .filter(|(_, direction)| *direction == Direction::Inbound)
            .count()
    }

    /// Whether shutdown has begun.
    pub(crate) fn is_closed(&self) -> bool {
        self.registry.lock().closed
    }

    /// Begins shutdown: refuses new registrations and shuts every registered stream down.
    pub(crate) fn close_all(&self) {
        let mut registry = self.registry.lock();
        registry.closed = true;
        for (stream, _) in registry.streams.values() {
            // Already-closed sockets fail here; either way the stream is done.
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Registration {
    /// The transport or listener the stream belongs to.
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.registry.lock().streams.remove(&self.id);
    }
}

impl Threads {
    /// Starts a named thread and keeps its handle (forgetting those already finished).
    pub(crate) fn spawn(
        &self,
        name: String,
        body: impl FnOnce() + Send + 'static,
    ) -> Result<(), Error> {
        let handle = std::thread::Builder::new()
            .name(name)
            .spawn(body)
            .map_err(|source| Error::Spawn { source })?;
        let mut handles = self.handles.lock();
        handles.retain(|handle| !handle.is_finished());
        handles.push(handle);
        Ok(())
    }

    /// Joins every thread, including any started while joining.
    pub(crate) fn join_all(&self) {
        loop {
            let handles = std::mem::take(&mut *self.handles.lock());
            if handles.is_empty() {
                return;
            }
            for handle in handles {
                if handle.join().is_err() {
                    tracing::error!("an alpo-net thread panicked");
                }
            }
        }
    }
}

impl Connection {
    /// Wraps a connected stream: sets TCP_NODELAY and the write timeout.
    pub(crate) fn new(stream: TcpStream, peer: SocketAddr, cluster_id: ClusterId) -> Connection {
        // Small messages must leave at once; batching is done by the writer, not by Nagle.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(
                peer = %peer,
                error = &error as &dyn std::error::Error,
                "cannot set TCP_NODELAY"
            );
        }
        if let Err(error) = stream.set_write_timeout(Some(Duration::from_millis(WRITE_TIMEOUT_MS)))
        {
            tracing::debug!(
                peer = %peer,
                error = &error as &dyn std::error::Error,
                "cannot set the write timeout"
            );
        }
        Connection {
            stream: Stream::plain(stream),
            peer,
            decoder: FrameDecoder::new(cluster_id),
            chunk: vec![0; crate::limits::READ_CHUNK_BYTES],
        }
    }

    /// The listener's side of TLS (issue 16): runs the TLS handshake before the `Hello`. On a
    /// refusal the connection is logged, counted and closed here (a plain ALPO dialler gets a
    /// plain `Close` naming `plain_on_tls_port`), and `None` returned.
    pub(crate) fn accept_tls(
        self,
        config: &Arc<rustls::ServerConfig>,
        sender: u64,
        counters: &CounterCells,
    ) -> Option<Connection> {
        let Connection {
            stream,
            peer,
            decoder,
            chunk,
        } = self;
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        match tls::accept(stream.into_tcp(), peer, config, timeout) {
            Ok(stream) => Some(Connection {
                stream,
                peer,
                decoder,
                chunk,
            }),
            Err((tcp, failure)) => {
                let plain = Connection {
                    stream: Stream::plain(tcp),
                    peer,
                    decoder,
                    chunk,
                };
                match failure {
                    HandshakeFailure::Rejected(rejection @ Rejection::PlainOnTlsPort) => {
                        plain.reject(&rejection, sender, counters);
                    }
                    HandshakeFailure::Rejected(rejection) => {
                        log_refusal(peer, &rejection, counters);
                        let _ = plain.stream.shutdown();
                    }
                    HandshakeFailure::Io(error) => {
                        tracing::debug!(
                            peer = %peer,
                            error = &error as &dyn std::error::Error,
                            "connection ended during its TLS handshake"
                        );
                    }
                }
                None
            }
        }
    }

    /// The dialler's side of TLS (issue 16): runs the TLS handshake, checking that the
    /// listener's certificate names `server_name`. A refusal is logged and counted here.
    pub(crate) fn connect_tls(
        self,
        config: &Arc<rustls::ClientConfig>,
        server_name: &str,
        timeout: Duration,
        counters: &CounterCells,
    ) -> Result<Connection, Error> {
        let Connection {
            stream,
            peer,
            decoder,
            chunk,
        } = self;
        match tls::connect(stream.into_tcp(), peer, config, server_name, timeout) {
            Ok(stream) => Ok(Connection {
                stream,
                peer,
                decoder,
                chunk,
            }),
            Err((tcp, HandshakeFailure::Rejected(rejection))) => {
                log_refusal(peer, &rejection, counters);
                let _ = tcp.shutdown(Shutdown::Both);
                Err(Error::Rejected { peer, rejection })
            }
            Err((_, HandshakeFailure::Io(error))) => Err(error),
        }
    }

    /// Writes whatever TLS records a non-blocking write left waiting (blocking mode).
    pub(crate) fn flush(&self) -> Result<(), Error> {
        (&self.stream)
            .flush()
            .map_err(|source| self.io_error("write", source))
    }

    /// The next frame, reading as needed for up to `timeout` (or forever without one).
    pub(crate) fn read_frame(
        &mut self,
        timeout: Option<Duration>,
        counters: &CounterCells,
    ) -> Result<Frame, Error> {
        let peer = self.peer;
        let deadline = timeout.map(|timeout| (Instant::now() + timeout, timeout));
        let rejected = |rejection| Error::Rejected { peer, rejection };
        loop {
            if let Some(frame) = self.decoder.next_frame().map_err(rejected)? {
                add(&counters.frames_received, 1);
                return Ok(frame);
            }
            self.set_read_deadline(deadline)?;
            match (&self.stream).read(&mut self.chunk) {
                Ok(0) => {
                    self.decoder.finish().map_err(rejected)?;
                    return Err(Error::Closed { peer, reason: None });
                }
                Ok(length) => {
                    add_usize(&counters.bytes_received, length);
                    self.decoder.feed(&self.chunk[..length]);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if is_timeout(&error) => return Err(self.timeout(deadline)),
                Err(source) => return Err(self.io_error("read", source)),
            }
        }
    }

    /// Writes `bytes` (whole frames) and counts them.
    pub(crate) fn write(
        &self,
        bytes: &[u8],
        frame_count: usize,
        counters: &CounterCells,
    ) -> Result<(), Error> {
        (&self.stream)
            .write_all(bytes)
            .map_err(|source| self.io_error("write", source))?;
        add_usize(&counters.frames_sent, frame_count);
        add_usize(&counters.bytes_sent, bytes.len());
        Ok(())
    }

    /// Writes one frame with the given body.
    pub(crate) fn write_frame(
        &self,
        kind: FrameKind,
        sender: u64,
        body: &[u8],
        counters: &CounterCells,
    ) -> Result<(), Error> {
        let mut out = Vec::new();
        let cluster_id = self.decoder.cluster_id();
        if encode_frame(&mut out, kind, cluster_id, sender, body).is_err() {
            return Err(Error::BodyTooLarge {
                bytes: u64::try_from(body.len()).unwrap_or(u64::MAX),
                max: u64::from(crate::limits::FRAME_BODY_BYTES_MAX),
            });
        }
        self.write(&out, 1, counters)
    }

    /// Logs and counts `rejection`, tells the peer why (best effort) and closes the stream.
    pub(crate) fn reject(&self, rejection: &Rejection, sender: u64, counters: &CounterCells) {
        log_refusal(self.peer, rejection, counters);
        let reason = rejection.reason();
        // The peer may be gone already; the reason is logged here either way.
        let _ = self.write_frame(
            FrameKind::Close,
            sender,
            &encode_close_body(reason),
            counters,
        );
        let _ = self.stream.shutdown();
    }

    /// The listener's side of the handshake: reads and checks the `Hello` and answers `Welcome`.
    /// On a bad `Hello` the connection is rejected here and `None` returned.
    pub(crate) fn accept_hello(
        &mut self,
        policy: HelloPolicy<'_>,
        counters: &CounterCells,
    ) -> Option<Hello> {
        let sender = policy.node_id.0;
        let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
        let checked = match self.read_frame(Some(timeout), counters) {
            Ok(frame) => check_hello(&frame, policy).and_then(|hello| {
                // Issue 16: a peer's certificate must name the node its `Hello` claims.
                if hello.role == crate::handshake::Role::Peer {
                    tls::check_peer_identity(&self.stream, NodeId(hello.sender))?;
                }
                Ok(hello)
            }),
            Err(Error::Rejected {
                rejection: Rejection::BadMagic { found },
                ..
            }) if found[0] == TLS_HANDSHAKE_RECORD && !self.stream.is_tls() => {
                Err(Rejection::TlsOnPlainPort)
            }
            Err(Error::Rejected { rejection, .. }) => Err(rejection),
            Err(Error::Timeout { waited_ms, .. }) => Err(Rejection::HandshakeTimeout { waited_ms }),
            Err(error) => {
                tracing::debug!(
                    peer = %self.peer,
                    error = &error as &dyn std::error::Error,
                    "connection ended before its hello"
                );
                return None;
            }
        };
        match checked {
            Ok(hello) => {
                if let Err(error) = self.stream.set_read_timeout(None) {
                    tracing::debug!(
                        peer = %self.peer,
                        error = &error as &dyn std::error::Error,
                        "cannot clear the read timeout"
                    );
                }
                self.write_frame(FrameKind::Welcome, sender, &[], counters)
                    .ok()?;
                add(&counters.connections_accepted, 1);
                Some(hello)
            }
            Err(rejection) => {
                self.reject(&rejection, sender, counters);
                None
            }
        }
    }

    /// The dialler's side of the handshake: sends `hello`, waits for `Welcome` from
    /// `expected_sender` (any sender if `None`) and returns the welcomer's id.
    pub(crate) fn dial_hello(
        &mut self,
        hello: Hello,
        expected_sender: Option<NodeId>,
        timeout: Duration,
        counters: &CounterCells,
    ) -> Result<NodeId, Error> {
        self.write_frame(
            FrameKind::Hello,
            hello.sender,
            &hello.encode_body(),
            counters,
        )?;
        let frame = self.read_frame(Some(timeout), counters)?;
        let peer = self.peer;
        match frame.header.kind {
            FrameKind::Welcome => {}
            FrameKind::Close => {
                let reason = decode_close(&frame);
                return Err(Error::Closed { peer, reason });
            }
            found => {
                let rejection = Rejection::HandshakeMissing { found };
                self.reject(&rejection, hello.sender, counters);
                return Err(Error::Rejected { peer, rejection });
            }
        }
        let welcomer = NodeId(frame.header.sender);
        if let Some(expected) = expected_sender.filter(|expected| *expected != welcomer) {
            let rejection = Rejection::WrongReceiver {
                expected,
                found: welcomer,
            };
            self.reject(&rejection, hello.sender, counters);
            return Err(Error::Rejected { peer, rejection });
        }
        self.stream
            .set_read_timeout(None)
            .map_err(|source| self.io_error("set_read_timeout", source))?;
        Ok(welcomer)
    }

    fn set_read_deadline(&self, deadline: Option<(Instant, Duration)>) -> Result<(), Error> {
        let Some((at, _)) = deadline else {
            return Ok(());
        };
        let remaining = at.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.timeout(deadline));
        }
        self.stream
            .set_read_timeout(Some(remaining))
            .map_err(|source| self.io_error("set_read_timeout", source))
    }

    fn timeout(&self, deadline: Option<(Instant, Duration)>) -> Error {
        let waited = deadline.map_or(Duration::ZERO, |(_, timeout)| timeout);
        Error::Timeout {
            peer: self.peer,
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        }
    }

    fn io_error(&self, operation: &'static str, source: io::Error) -> Error {
        Error::Io {
            peer: self.peer,
            operation,
            source,
        }
    }
}

/// Logs and counts a refused connection, by its named reason.
pub(crate) fn log_refusal(peer: SocketAddr, rejection: &Rejection, counters: &CounterCells) {
    let reason = rejection.reason();
    tracing::warn!(peer = %peer, %reason, "closing connection: {rejection}");
    counters.rejected(reason);
}

/// Wakes a listener blocked in `accept` (after shutdown began) by connecting to it.
pub(crate) fn wake_listener(address: SocketAddr) {
    let mut address = address;
    if address.ip().is_unspecified() {
        let loopback = match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        };
        address.set_ip(loopback);
    }
    // If this fails the listener is already gone, which is what we want.
    let _ = TcpStream::connect_timeout(&address, Duration::from_millis(WRITE_TIMEOUT_MS));
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
