//! The client protocol's carriage: a server-side [`ClientListener`] that hands opaque,
//! checksum-verified request bodies to the node (through its [`Inbox`]) and sends its response
//! bodies back, and a blocking [`ClientConnection`] for clients. alpo-node defines what the
//! bodies mean.
//!
//! Threads: one accept thread; a short-lived thread per new connection for its handshake; then
//! the connection belongs to the node's inbox, which reads its requests on the node's thread.
//! Replies are written by whichever thread calls [`ClientListener::reply`], straight into the
//! non-blocking socket; only bytes the socket cannot take at once wait in the connection's reply
//! buffer, and the inbox writes them when the socket has room again.
//!
//! Invariants: the client listener is separate from the peer listener and speaks the same
//! framing and handshake with role `Client`; only `ClientRequest` frames (and `Close`) are
//! accepted from a client, only `ClientResponse` frames are sent to one, and anything else closes
//! the connection with a named reason. `reply` never blocks: a reply to a connection that is gone
//! is dropped and counted, and so is a reply that would overfill a connection's reply buffer.
//! Frames of one connection are written whole and in `reply` order (the buffer's lock orders
//! them).

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use crate::stream::Stream;
use crate::tls::{SERVER_DNS_NAME, TlsConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alpo_core::{ClusterId, NodeId};
use bytes::Bytes;
use crossbeam_channel::{RecvTimeoutError, Sender};
use mio::Token;
use parking_lot::Mutex;

use crate::conn::{Connection, Direction, Shared, Threads, wake_listener};
use crate::counters::{CounterCells, Counters, add, add_usize};
use crate::error::{Error, Rejection};
use crate::frame::{CLIENT_SENDER_ID, Frame, FrameKind, encode_frame};
use crate::handshake::{ANY_RECEIVER, Hello, HelloPolicy, Role, decode_close};
use crate::inbox::{Arrival, ClientRequest, ConnectionId, FrameSink, Handoff, Inbox, Incoming};
use crate::limits::{
    CLIENT_CONNECTION_COUNT_MAX, CLIENT_REPLY_BUFFER_BYTES_MAX, RECONNECT_BACKOFF_MS_MIN,
};

/// How a [`ClientListener`] is set up. [`ClientListenerConfig::new`] fills the limits with the
/// defaults from `limits.rs`.
#[derive(Clone, Debug)]
pub struct ClientListenerConfig {
    /// This node's cluster; clients of other clusters are refused.
    pub cluster_id: ClusterId,
    /// This node's id, sent in `Welcome` and response frames.
    pub node_id: NodeId,
    /// Where to listen for clients (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Client connections served at once.
    pub connection_count_max: usize,
    /// Bytes of replies that may wait for room in one connection's socket.
    pub reply_buffer_bytes_max: usize,
    /// Issue 16: TLS on the client port (the node's certificate; clients must present one
    /// from the CA if [`TlsConfig::requires_client_certificate`]), or plain TCP if `None`.
    pub tls: Option<TlsConfig>,
}

/// A running client listener. Dropping it shuts it down.
#[derive(Debug)]
pub struct ClientListener {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
    node_id: NodeId,
    shutdown_sender: Option<Sender<()>>,
    threads: Arc<Threads>,
}

/// A blocking client connection to a server's client listener.
#[derive(Debug)]
pub struct ClientConnection {
    connection: Connection,
    server_node_id: NodeId,
    counters: CounterCells,
}

/// The reply sides of open client connections.
#[derive(Debug, Default)]
struct Sessions {
    replies: Mutex<HashMap<ConnectionId, Arc<ReplyOut>>>,
    next_id: AtomicU64,
}

/// Where replies to one connection are written.
#[derive(Debug)]
struct ReplyOut {
    /// A clone of the connection's (non-blocking) stream.
    stream: Stream,
    peer: SocketAddr,
    /// The connection's inbox token, to ask for a writability wake-up.
    token: Token,
    handoff: Arc<Handoff>,
    /// `ClientListenerConfig::reply_buffer_bytes_max`.
    buffer_bytes_max: usize,
    buffer: Mutex<ReplyBuffer>,
}

/// Reply bytes the socket has not taken yet.
#[derive(Debug, Default)]
struct ReplyBuffer {
    bytes: Vec<u8>,
    /// How much of `bytes` is written already.
    written: usize,
    /// A write failed: the connection is finished and replies are dropped.
    broken: bool,
}

#[derive(Debug)]
struct ListenerContext {
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
    threads: Arc<Threads>,
    handoff: Arc<Handoff>,
    node_id: NodeId,
    connection_count_max: usize,
    reply_buffer_bytes_max: usize,
    /// Issue 16: the TLS listener side, if TLS is on.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// How the inbox turns one client connection's frames into requests.
#[derive(Debug)]
struct ClientSink {
    id: ConnectionId,
    out: Arc<ReplyOut>,
    context: Arc<ListenerContext>,
}

impl ClientListenerConfig {
    /// A configuration with the default limits.
    #[must_use]
    pub fn new(cluster_id: ClusterId, node_id: NodeId, listen: SocketAddr) -> ClientListenerConfig {
        ClientListenerConfig {
            cluster_id,
            node_id,
            listen,
            connection_count_max: CLIENT_CONNECTION_COUNT_MAX,
            reply_buffer_bytes_max: CLIENT_REPLY_BUFFER_BYTES_MAX,
            tls: None,
        }
    }
}

impl ClientListenerConfig {
    fn validate(&self) -> Result<(), Error> {
        if self.reply_buffer_bytes_max == 0 {
            let field = "reply_buffer_bytes_max";
            let problem = "must be at least 1".to_string();
            return Err(Error::Config { field, problem });
        }
        Ok(())
    }
}

impl ClientListener {
    /// Binds the listener and starts accepting clients; their requests arrive through `inbox`
    /// ([`Inbox::wait`] yields them as [`Incoming::Client`]).
    pub fn start(config: ClientListenerConfig, inbox: &Inbox) -> Result<ClientListener, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        ClientListener::start_with_listener(listener, config, inbox)
    }

    /// Like [`ClientListener::start`], on a listener the caller bound already (`config.listen` is
    /// not used). This lets a node bind every listener first (port 0 included) and learn the
    /// real addresses before it starts serving.
    pub fn start_with_listener(
        listener: TcpListener,
        config: ClientListenerConfig,
        inbox: &Inbox,
    ) -> Result<ClientListener, Error> {
        config.validate()?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let tls = match &config.tls {
            Some(tls) => Some(tls.server_config(tls.requires_client_certificate())?),
            None => None,
        };
        let (shared, shutdown_sender) = Shared::new(config.cluster_id);
        let client_listener = ClientListener {
            local_addr,
            shared: Arc::clone(&shared),
            sessions: Arc::new(Sessions::default()),
            node_id: config.node_id,
            shutdown_sender: Some(shutdown_sender),
            threads: Arc::new(Threads::default()),
        };
        let context = Arc::new(ListenerContext {
            shared,
            sessions: Arc::clone(&client_listener.sessions),
            threads: Arc::clone(&client_listener.threads),
            handoff: inbox.handoff(),
            node_id: config.node_id,
            connection_count_max: config.connection_count_max,
            reply_buffer_bytes_max: config.reply_buffer_bytes_max,
            tls,
        });
        let name = format!("alpo-net-client-accept-{}", config.node_id);
        client_listener
            .threads
            .spawn(name, move || accept_loop(&listener, &context))?;
        Ok(client_listener)
    }

    /// The address the listener is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends `body` as a response on `connection`, writing it to the socket from this thread if
    /// the socket has room. Never blocks: if the connection is gone the reply is dropped and
    /// counted (`messages_dropped_unroutable`); if its reply buffer is full, the reply is dropped
    /// and counted (`messages_dropped_queue_full`).
    pub fn reply(&self, connection: ConnectionId, body: Bytes) {
        let counters = &self.shared.counters;
        let out = self.sessions.replies.lock().get(&connection).cloned();
        let Some(out) = out else {
            add(&counters.messages_dropped_unroutable, 1);
            return;
        };
        let mut frame = Vec::new();
        let cluster = self.shared.cluster_id;
        let kind = FrameKind::ClientResponse;
        if encode_frame(&mut frame, kind, cluster, self.node_id.0, &body).is_err() {
            add(&counters.messages_dropped_unencodable, 1);
            return;
        }
        out.send(&frame, &self.shared.counters);
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Stops listening, closes every client connection and joins every thread.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(shutdown_sender) = self.shutdown_sender.take() else {
            return;
        };
        drop(shutdown_sender);
        self.shared.close_all();
        self.sessions.replies.lock().clear();
        wake_listener(self.local_addr);
        self.threads.join_all();
    }
}

impl Drop for ClientListener {
    fn drop(&mut self) {
        self.stop();
    }
}

impl ReplyOut {
    /// Writes one encoded frame after whatever is waiting, or buffers it if the socket is full.
    fn send(&self, frame: &[u8], counters: &CounterCells) {
        let mut buffer = self.buffer.lock();
        if buffer.broken {
            add(&counters.messages_dropped_link_lost, 1);
            return;
        }
        let waiting = buffer.bytes.len() - buffer.written;
        if waiting > 0 && self.buffer_limit_reached(waiting, frame.len()) {
            add(&counters.messages_dropped_queue_full, 1);
            return;
        }
        add(&counters.frames_sent, 1);
        if waiting > 0 {
            // The inbox is already watching for room; it writes these bytes in order.
            buffer.bytes.extend_from_slice(frame);
            return;
        }
        let written = self.write_some(frame, &mut buffer, counters);
        // TLS records the socket did not take wait in the stream; the inbox flushes them too.
        let unflushed = self.stream.has_pending_output();
        if (written < frame.len() || unflushed) && !buffer.broken {
            buffer.bytes.clear();
            buffer.written = 0;
            buffer.bytes.extend_from_slice(&frame[written..]);
            drop(buffer);
            self.handoff.want_writable(self.token);
        }
    }

    fn buffer_limit_reached(&self, waiting: usize, more: usize) -> bool {
        // A single frame always fits an empty buffer, so every reply can be sent eventually.
        waiting + more > self.buffer_bytes_max.max(more)
    }

    /// Writes what the buffer holds; returns whether bytes are still waiting.
    fn flush(&self, counters: &CounterCells) -> bool {
        let mut buffer = self.buffer.lock();
        if buffer.broken {
            return false;
        }
        // TLS records left by an earlier write go first.
        match (&self.stream).flush() {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                add(&counters.messages_dropped_link_lost, 1);
                buffer.broken = true;
                let _ = self.stream.shutdown();
                return false;
            }
        }
        let pending = std::mem::take(&mut buffer.bytes);
        let start = buffer.written;
        let written = self.write_some(&pending[start..], &mut buffer, counters);
        buffer.bytes = pending;
        buffer.written += written;
        if buffer.written == buffer.bytes.len() || buffer.broken {
            buffer.bytes.clear();
            buffer.written = 0;
            return !buffer.broken && self.stream.has_pending_output();
        }
        // Drop what was written, so a client that reads steadily but slower than it is answered
        // cannot make the buffer hold more than its cap of unwritten bytes.
        let written = buffer.written;
        buffer.bytes.drain(..written);
        buffer.written = 0;
        true
    }

    /// Writes as much of `bytes` as the socket takes now; marks the buffer broken on an error.
    fn write_some(&self, bytes: &[u8], buffer: &mut ReplyBuffer, counters: &CounterCells) -> usize {
        let mut written = 0;
        while written < bytes.len() {
            match (&self.stream).write(&bytes[written..]) {
                Ok(0) => break,
                Ok(count) => written += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => {
                    tracing::debug!(
                        peer = %self.peer,
                        error = &error as &dyn std::error::Error,
                        "client connection lost"
                    );
                    add(&counters.messages_dropped_link_lost, 1);
                    buffer.broken = true;
                    // The inbox sees the connection end and removes it.
                    let _ = self.stream.shutdown();
                    break;
                }
            }
        }
        add_usize(&counters.bytes_sent, written);
        written
    }
}

impl FrameSink for ClientSink {
    fn on_frame(&mut self, frame: Frame) -> Result<Option<Incoming>, Option<Rejection>> {
        match frame.header.kind {
            FrameKind::ClientRequest => Ok(Some(Incoming::Client(ClientRequest {
                connection: self.id,
                body: frame.body,
            }))),
            FrameKind::Close => Err(None),
            found => Err(Some(Rejection::KindNotAllowed {
                found,
                connection: Role::Client,
            })),
        }
    }

    fn counters(&self) -> &CounterCells {
        &self.context.shared.counters
    }

    fn sender(&self) -> u64 {
        self.context.node_id.0
    }

    fn on_writable(&self) -> bool {
        self.out.flush(&self.context.shared.counters)
    }

    fn on_close(&self) {
        self.context.sessions.replies.lock().remove(&self.id);
    }
}

impl ClientConnection {
    /// Connects to a client listener and completes the handshake within `timeout` (each of the
    /// connect and the handshake gets up to `timeout`).
    pub fn connect(
        addr: SocketAddr,
        cluster_id: ClusterId,
        timeout: Duration,
    ) -> Result<ClientConnection, Error> {
        ClientConnection::connect_with(addr, cluster_id, timeout, None)
    }

    /// Like [`ClientConnection::connect`], over TLS if `tls` is given (issue 16): the server's
    /// certificate must come from `tls`'s CA and name `server.alpo`; the client presents its
    /// own certificate if `tls` has one.
    pub fn connect_with(
        addr: SocketAddr,
        cluster_id: ClusterId,
        timeout: Duration,
        tls: Option<&TlsConfig>,
    ) -> Result<ClientConnection, Error> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|source| Error::Io {
            peer: addr,
            operation: "connect",
            source,
        })?;
        let mut connection = Connection::new(stream, addr, cluster_id);
        let counters = CounterCells::default();
        if let Some(tls) = tls {
            let config = tls.client_config()?;
            connection = connection.connect_tls(&config, SERVER_DNS_NAME, timeout, &counters)?;
        }
        let hello = Hello {
            role: Role::Client,
            sender: CLIENT_SENDER_ID,
            receiver: ANY_RECEIVER,
        };
        let server_node_id = connection.dial_hello(hello, None, timeout, &counters)?;
        Ok(ClientConnection {
            connection,
            server_node_id,
            counters,
        })
    }

    /// Sends one request body (blocking until it is written).
    pub fn send(&mut self, body: &[u8]) -> Result<(), Error> {
        let kind = FrameKind::ClientRequest;
        self.connection
            .write_frame(kind, CLIENT_SENDER_ID, body, &self.counters)
    }

    /// Waits up to `timeout` for the next response body.
    pub fn recv(&mut self, timeout: Duration) -> Result<Bytes, Error> {
        let frame = self.connection.read_frame(Some(timeout), &self.counters)?;
        let peer = self.connection.peer;
        match frame.header.kind {
            FrameKind::ClientResponse => Ok(frame.body),
            FrameKind::Close => Err(Error::Closed {
                peer,
                reason: decode_close(&frame),
            }),
            found => {
                let connection = Role::Client;
                let rejection = Rejection::KindNotAllowed { found, connection };
                self.connection
                    .reject(&rejection, CLIENT_SENDER_ID, &self.counters);
                Err(Error::Rejected { peer, rejection })
            }
        }
    }

    /// The node id the server gave in its `Welcome`.
    #[must_use]
    pub fn server_node_id(&self) -> NodeId {
        self.server_node_id
    }

    /// The server's address.
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.connection.peer
    }

    /// The connected stream and a decoder holding whatever arrived after the handshake, for a
    /// caller that drives the connection itself (non-blocking, with its own poll: `alpo bench`
    /// drives hundreds of connections from two threads this way). Requests go out as frames of
    /// kind [`FrameKind::ClientRequest`] from sender [`CLIENT_SENDER_ID`]
    /// ([`crate::frame::encode_frame`]); the decoder checks what comes back.
    #[must_use]
    pub fn into_parts(self) -> (Stream, crate::frame::FrameDecoder) {
        (self.connection.stream, self.connection.decoder)
    }
}

fn accept_loop(listener: &TcpListener, context: &Arc<ListenerContext>) {
    let shared = &context.shared;
    loop {
        let accepted = listener.accept();
        if shared.is_closed() {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "accept on the client listener failed"
                );
                let pause = Duration::from_millis(RECONNECT_BACKOFF_MS_MIN);
                if shared.shutdown.recv_timeout(pause) == Err(RecvTimeoutError::Disconnected) {
                    return;
                }
                continue;
            }
        };
        let connection = Connection::new(stream, peer, shared.cluster_id);
        if context.connection_count_max <= shared.inbound_count() {
            let max = u64::try_from(context.connection_count_max).unwrap_or(u64::MAX);
            let rejection = Rejection::TooManyConnections { max };
            connection.reject(&rejection, context.node_id.0, &shared.counters);
            continue;
        }
        let serving = Arc::clone(context);
        let name = format!("alpo-net-client-handshake-{peer}");
        let spawned = context
            .threads
            .spawn(name, move || serve_client(connection, serving));
        if let Err(error) = spawned {
            tracing::error!(
                peer = %peer,
                error = &error as &dyn std::error::Error,
                "cannot serve a client connection"
            );
        }
    }
}

/// Runs the listener's side of the handshake, then hands the connection to the inbox.
fn serve_client(connection: Connection, context: Arc<ListenerContext>) {
    let shared = &context.shared;
    let counters = &shared.counters;
    let Some(registration) = shared.register(connection.stream.tcp(), Direction::Inbound) else {
        return;
    };
    let mut connection = match &context.tls {
        Some(tls) => match connection.accept_tls(tls, context.node_id.0, counters) {
            Some(connection) => connection,
            None => return,
        },
        None => connection,
    };
    let policy = HelloPolicy {
        role: Role::Client,
        node_id: context.node_id,
        peers: &[],
    };
    if connection.accept_hello(policy, counters).is_none() {
        return;
    }
    let peer = connection.peer;
    let prepared = connection
        .stream
        .set_nonblocking(true)
        .and_then(|()| connection.stream.try_clone());
    let reply_stream = match prepared {
        Ok(stream) => stream,
        Err(error) => {
            tracing::warn!(
                peer = %peer,
                error = &error as &dyn std::error::Error,
                "cannot prepare a client connection"
            );
            return;
        }
    };
    let id = ConnectionId(context.sessions.next_id.fetch_add(1, Ordering::Relaxed));
    let handoff = Arc::clone(&context.handoff);
    let token = handoff.next_token();
    let out = Arc::new(ReplyOut {
        stream: reply_stream,
        peer,
        token,
        handoff: Arc::clone(&handoff),
        buffer_bytes_max: context.reply_buffer_bytes_max,
        buffer: Mutex::new(ReplyBuffer::default()),
    });
    context.sessions.replies.lock().insert(id, Arc::clone(&out));
    let Connection {
        stream, decoder, ..
    } = connection;
    handoff.arrive(Arrival {
        token,
        stream,
        peer,
        decoder,
        registration,
        sink: Box::new(ClientSink { id, out, context }),
    });
}
