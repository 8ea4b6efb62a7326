//! The client protocol's carriage: a server-side [`ClientListener`] that hands opaque,
//! checksum-verified request bodies to the node and sends its response bodies back, and a
//! blocking [`ClientConnection`] for clients. alpo-node defines what the bodies mean.
//!
//! Invariants: the client listener is separate from the peer listener and speaks the same
//! framing and handshake with role `Client`; only `ClientRequest` frames (and `Close`) are
//! accepted from a client, only `ClientResponse` frames are sent to one, and anything else closes
//! the connection with a named reason. `reply` never blocks: a reply to a connection that is gone
//! is dropped and counted, and a full reply queue drops its oldest reply.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use alpo_core::{ClusterId, NodeId};
use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded, select};
use parking_lot::Mutex;

use crate::conn::{Connection, Direction, Shared, Threads, wake_listener};
use crate::counters::{CounterCells, Counters, add, add_usize};
use crate::error::{Error, Rejection};
use crate::frame::{CLIENT_SENDER_ID, FrameKind, encode_frame};
use crate::handshake::{ANY_RECEIVER, Hello, HelloPolicy, Role, decode_close};
use crate::limits::{
    CLIENT_CONNECTION_COUNT_MAX, CLIENT_REPLY_QUEUE_COUNT_MAX, INBOUND_QUEUE_MESSAGE_COUNT_MAX,
    RECONNECT_BACKOFF_MS_MIN, WRITE_BATCH_BYTES_MAX, WRITE_BATCH_FRAME_COUNT_MAX,
};
use crate::queue::{DropOldestSender, Pushed, drop_oldest_queue};

/// Names one client connection on a [`ClientListener`]; never reused by that listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

/// A request from a client: an opaque body whose frame was checked, and where to reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientRequest {
    /// The connection it came on; pass it to [`ClientListener::reply`].
    pub connection: ConnectionId,
    /// The request body, as the client sent it.
    pub body: Bytes,
}

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
    /// Requests buffered for the node before readers wait.
    pub request_queue_count_max: usize,
    /// Replies queued per connection before the oldest is dropped.
    pub reply_queue_count_max: usize,
}

/// A running client listener. Dropping it shuts it down.
#[derive(Debug)]
pub struct ClientListener {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
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

/// The reply queues of open client connections.
#[derive(Debug, Default)]
struct Sessions {
    replies: Mutex<BTreeMap<ConnectionId, DropOldestSender<Bytes>>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct ListenerContext {
    shared: Arc<Shared>,
    sessions: Arc<Sessions>,
    threads: Arc<Threads>,
    node_id: NodeId,
    requests: Sender<ClientRequest>,
    connection_count_max: usize,
    reply_queue_count_max: usize,
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
            request_queue_count_max: INBOUND_QUEUE_MESSAGE_COUNT_MAX,
            reply_queue_count_max: CLIENT_REPLY_QUEUE_COUNT_MAX,
        }
    }
}

impl ClientListenerConfig {
    fn validate(&self) -> Result<(), Error> {
        if self.request_queue_count_max == 0 || self.reply_queue_count_max == 0 {
            let field = "request_queue_count_max or reply_queue_count_max";
            let problem = "must be at least 1".to_string();
            return Err(Error::Config { field, problem });
        }
        Ok(())
    }
}

impl ClientListener {
    /// Binds the listener and starts accepting clients; requests arrive on the returned channel.
    pub fn start(
        config: ClientListenerConfig,
    ) -> Result<(ClientListener, Receiver<ClientRequest>), Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        ClientListener::start_with_listener(listener, config)
    }

    /// Like [`ClientListener::start`], on a listener the caller bound already (`config.listen` is
    /// not used). This lets a node bind every listener first (port 0 included) and learn the
    /// real addresses before it starts serving.
    pub fn start_with_listener(
        listener: TcpListener,
        config: ClientListenerConfig,
    ) -> Result<(ClientListener, Receiver<ClientRequest>), Error> {
        config.validate()?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let (shared, shutdown_sender) = Shared::new(config.cluster_id);
        let (requests, receiver) = bounded(config.request_queue_count_max);
        let client_listener = ClientListener {
            local_addr,
            shared: Arc::clone(&shared),
            sessions: Arc::new(Sessions::default()),
            shutdown_sender: Some(shutdown_sender),
            threads: Arc::new(Threads::default()),
        };
        let context = Arc::new(ListenerContext {
            shared,
            sessions: Arc::clone(&client_listener.sessions),
            threads: Arc::clone(&client_listener.threads),
            node_id: config.node_id,
            requests,
            connection_count_max: config.connection_count_max,
            reply_queue_count_max: config.reply_queue_count_max,
        });
        let name = format!("alpo-net-client-accept-{}", config.node_id);
        client_listener
            .threads
            .spawn(name, move || accept_loop(&listener, &context))?;
        Ok((client_listener, receiver))
    }

    /// The address the listener is bound to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends `body` as a response on `connection`. Never blocks: if the connection is gone the
    /// reply is dropped and counted (`messages_dropped_unroutable`); if its queue is full, the
    /// oldest queued reply is dropped and counted (`messages_dropped_queue_full`).
    pub fn reply(&self, connection: ConnectionId, body: Bytes) {
        let counters = &self.shared.counters;
        let pushed = match self.sessions.replies.lock().get(&connection) {
            Some(queue) => queue.push(body),
            None => Pushed::Disconnected,
        };
        match pushed {
            Pushed::Queued => {}
            Pushed::QueuedDropping(count) => add(&counters.messages_dropped_queue_full, count),
            Pushed::Disconnected => add(&counters.messages_dropped_unroutable, 1),
        }
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

impl ClientConnection {
    /// Connects to a client listener and completes the handshake within `timeout` (each of the
    /// connect and the handshake gets up to `timeout`).
    pub fn connect(
        addr: SocketAddr,
        cluster_id: ClusterId,
        timeout: Duration,
    ) -> Result<ClientConnection, Error> {
        let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|source| Error::Io {
            peer: addr,
            operation: "connect",
            source,
        })?;
        let mut connection = Connection::new(stream, addr, cluster_id);
        let counters = CounterCells::default();
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
                tracing::warn!(%error, "accept on the client listener failed");
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
        let name = format!("alpo-net-client-reader-{peer}");
        let spawned = context
            .threads
            .spawn(name, move || serve_client(connection, &serving));
        if let Err(error) = spawned {
            tracing::error!(peer = %peer, %error, "cannot serve a client connection");
        }
    }
}

fn serve_client(mut connection: Connection, context: &ListenerContext) {
    let shared = &context.shared;
    let counters = &shared.counters;
    let Some(_registration) = shared.register(&connection.stream, Direction::Inbound) else {
        return;
    };
    let policy = HelloPolicy {
        role: Role::Client,
        node_id: context.node_id,
        peers: &[],
    };
    if connection.accept_hello(policy, counters).is_none() {
        return;
    }
    let id = ConnectionId(context.sessions.next_id.fetch_add(1, Ordering::Relaxed));
    if let Err(error) = start_client_writer(&connection, id, context) {
        tracing::error!(peer = %connection.peer, %error, "cannot start a client writer");
        return;
    }
    read_requests(&mut connection, id, context);
    context.sessions.replies.lock().remove(&id);
    let _ = connection.stream.shutdown(std::net::Shutdown::Both);
}

fn read_requests(connection: &mut Connection, id: ConnectionId, context: &ListenerContext) {
    let shared = &context.shared;
    let counters = &shared.counters;
    loop {
        let frame = match connection.read_frame(None, counters) {
            Ok(frame) => frame,
            Err(Error::Rejected { rejection, .. }) if !shared.is_closed() => {
                connection.reject(&rejection, context.node_id.0, counters);
                return;
            }
            Err(error) => {
                tracing::debug!(peer = %connection.peer, %error, "client connection ended");
                return;
            }
        };
        match frame.header.kind {
            FrameKind::ClientRequest => {
                let request = ClientRequest {
                    connection: id,
                    body: frame.body,
                };
                if !deliver(request, context) {
                    return;
                }
            }
            FrameKind::Close => return,
            found => {
                let rejection = Rejection::KindNotAllowed {
                    found,
                    connection: Role::Client,
                };
                connection.reject(&rejection, context.node_id.0, counters);
                return;
            }
        }
    }
}

fn deliver(request: ClientRequest, context: &ListenerContext) -> bool {
    match context.requests.try_send(request) {
        Ok(()) => true,
        Err(TrySendError::Disconnected(_)) => false,
        Err(TrySendError::Full(request)) => select! {
            send(context.requests, request) -> sent => sent.is_ok(),
            recv(context.shared.shutdown) -> _ => false,
        },
    }
}

fn start_client_writer(
    connection: &Connection,
    id: ConnectionId,
    context: &ListenerContext,
) -> Result<(), Error> {
    let writer = connection.writer_clone()?;
    let (producer, replies) = drop_oldest_queue(context.reply_queue_count_max);
    context.sessions.replies.lock().insert(id, producer);
    let shared = Arc::clone(&context.shared);
    let node_id = context.node_id;
    let name = format!("alpo-net-client-writer-{}", connection.peer);
    let started = context.threads.spawn(name, move || {
        write_replies(&writer, &replies, &shared, node_id);
    });
    if started.is_err() {
        context.sessions.replies.lock().remove(&id);
    }
    started
}

/// Writes queued replies in batches until the connection's queue is removed or a write fails.
fn write_replies(writer: &Connection, replies: &Receiver<Bytes>, shared: &Shared, node: NodeId) {
    let counters = &shared.counters;
    let mut batch = Vec::new();
    // The queue disconnects when the session is removed (connection ended or shutdown).
    while let Ok(first) = replies.recv() {
        batch.clear();
        let mut frame_count = 0;
        let mut next = Some(first);
        while let Some(body) = next.take() {
            let kind = FrameKind::ClientResponse;
            match encode_frame(&mut batch, kind, shared.cluster_id, node.0, &body) {
                Ok(()) => frame_count += 1,
                Err(_) => add(&counters.messages_dropped_unencodable, 1),
            }
            if batch.len() < WRITE_BATCH_BYTES_MAX && frame_count < WRITE_BATCH_FRAME_COUNT_MAX {
                next = replies.try_recv().ok();
            }
        }
        if frame_count == 0 {
            continue;
        }
        if let Err(error) = writer.write(&batch, frame_count, counters) {
            add_usize(&counters.messages_dropped_link_lost, frame_count);
            tracing::debug!(peer = %writer.peer, %error, "client connection lost");
            return;
        }
    }
}
