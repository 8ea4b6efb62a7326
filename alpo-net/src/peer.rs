//! The peer transport: how a node sends `alpo_core::Message`s to its peers and receives theirs.
//!
//! Connection scheme: every node dials every peer and uses that outbound connection only to
//! send; it accepts inbound connections only to receive. So each ordered pair of nodes has its
//! own connection, written at the sender by `send` or the peer's writer thread and read at the
//! receiver by the thread that owns the node's [`Inbox`], and messages from one node to another
//! arrive in the order they were sent while the connection lasts. Per peer, a [`Link`] holds a
//! bounded drop-oldest queue and the socket: while the link is idle (connected, nothing queued),
//! `send` writes the frame to the socket itself with a non-blocking write, so a message costs one
//! wake-up (the receiver's) instead of a hand-off to the writer thread. Otherwise (the socket's
//! buffer is full, a frame was written only in part, messages are queued, or the link is down)
//! `send` queues, and the peer's writer thread drains everything queued into one buffer and
//! writes it with one blocking `write_all`; on failure it redials with capped exponential backoff
//! and jitter. `link.rs` states who may write when. An inbound connection's handshake runs on a
//! short-lived thread; then the connection is handed to the node's [`Inbox`], whose owner reads
//! it (`inbox.rs`).
//!
//! The peer set follows the cluster's configuration (issue 12): [`PeerTransport::set_peers`]
//! starts a writer for each added peer, retires the writer of each removed one (it closes its
//! connection and exits at its next wake-up, at the latest after its backoff delay), and from then
//! on only the listed peers may dial in. Connections a removed peer already has open stay until
//! they break: the core accepts messages from any server of its cluster (rule M11) and the
//! protocol keeps a removed server harmless (M10), so the transport need not cut them.
//!
//! Invariants: `send` never blocks; a message reaches the node only from a connection whose
//! handshake named a peer configured when it was made, and only if its frame's sender is that
//! peer and its receiver is this node (others are dropped and counted); frames are delivered
//! whole and checksum-verified, never partially. After `shutdown` returns, every thread has been
//! joined.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use alpo_core::{ClusterId, Message, NodeId};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, select};
use parking_lot::RwLock;

use crate::link::{Link, Outbound};

use crate::backoff::Backoff;
use crate::codec::{EncodeError, decode_message, encode_message};
use crate::conn::{Connection, Direction, Registration, Shared, Threads, wake_listener};
use crate::counters::CounterCells;
use crate::counters::{Counters, add, add_usize};
use crate::error::{Error, Rejection};
use crate::frame::{Frame, FrameKind};
use crate::handshake::{Hello, HelloPolicy, Role, decode_close};
use crate::inbox::{Arrival, FrameSink, Handoff, Inbox, Incoming};
use crate::limits::{
    CONNECT_TIMEOUT_MS, HANDSHAKE_TIMEOUT_MS, PEER_CONNECTION_COUNT_MAX,
    PEER_QUEUE_MESSAGE_COUNT_MAX, RECONNECT_BACKOFF_MS_MAX, RECONNECT_BACKOFF_MS_MIN,
    WRITE_BATCH_BYTES_MAX, WRITE_BATCH_FRAME_COUNT_MAX,
};

/// How a [`PeerTransport`] is set up. [`PeerConfig::new`] fills the limits with the defaults
/// from `limits.rs`.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// This node's cluster; frames of other clusters are refused.
    pub cluster_id: ClusterId,
    /// This node's id.
    pub node_id: NodeId,
    /// Where to listen for peers (port 0 picks a free port; see `PeerTransport::local_addr`).
    pub listen: SocketAddr,
    /// The other nodes and their peer-listener addresses (not this node).
    pub peers: Vec<(NodeId, SocketAddr)>,
    /// Messages queued per peer before the oldest is dropped.
    pub peer_queue_message_count_max: usize,
    /// Inbound connections served at once.
    pub inbound_connection_count_max: usize,
    /// First reconnect delay, in milliseconds.
    pub reconnect_backoff_ms_min: u64,
    /// Largest reconnect delay, in milliseconds.
    pub reconnect_backoff_ms_max: u64,
    /// Issue 16: mutual TLS with the cluster CA on every peer connection (both ways), or plain
    /// TCP if `None`. The certificate must name this node (`node-<id>.alpo`).
    pub tls: Option<crate::TlsConfig>,
}

/// A running peer transport. Dropping it shuts it down (see [`PeerTransport::shutdown`]).
#[derive(Debug)]
pub struct PeerTransport {
    node_id: NodeId,
    local_addr: SocketAddr,
    /// One link per peer, with the address its writer dials; replaced whole by `set_peers`.
    links: RwLock<BTreeMap<NodeId, PeerLink>>,
    /// What a writer started later (by `set_peers`) needs.
    writer_setup: WriterSetup,
    /// The peers that may dial in, shared with the accept side.
    inbound: Arc<InboundContext>,
    shared: Arc<Shared>,
    shutdown_sender: Option<Sender<()>>,
    threads: Arc<Threads>,
}

/// One peer's link and the address its writer dials.
#[derive(Clone, Debug)]
struct PeerLink {
    addr: SocketAddr,
    link: Arc<Link>,
}

/// The settings every writer is started with.
#[derive(Debug)]
struct WriterSetup {
    cluster_id: ClusterId,
    queue_message_count_max: usize,
    backoff_ms_min: u64,
    backoff_ms_max: u64,
    /// Jitter only needs peers and restarts to differ, not unpredictability.
    seed: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// What the inbound connections share.
#[derive(Debug)]
struct InboundContext {
    shared: Arc<Shared>,
    node_id: NodeId,
    /// The peers allowed to dial in (issue 12: changed by `set_peers`).
    peers: RwLock<Vec<NodeId>>,
    /// Where established connections go to be read.
    handoff: Arc<Handoff>,
    /// Issue 16: the TLS listener side (client certificates required), if TLS is on.
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// How the inbox turns one peer connection's frames into messages.
#[derive(Debug)]
struct PeerSink {
    hello: Hello,
    context: Arc<InboundContext>,
}

/// What one writer thread owns.
#[derive(Debug)]
struct WriterContext {
    shared: Arc<Shared>,
    node_id: NodeId,
    peer_id: NodeId,
    peer_addr: SocketAddr,
    link: Arc<Link>,
    /// What `send` queued for this writer.
    queue: Receiver<Outbound>,
    backoff: Backoff,
    /// Issue 16: the TLS dialler side, if TLS is on.
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// Why a writer's connection ended.
enum PumpEnd {
    Shutdown,
    Lost(Error),
    /// A direct write from `send` failed (it logged why).
    Broken,
}

impl PeerConfig {
    /// A configuration with the default limits.
    #[must_use]
    pub fn new(
        cluster_id: ClusterId,
        node_id: NodeId,
        listen: SocketAddr,
        peers: Vec<(NodeId, SocketAddr)>,
    ) -> PeerConfig {
        PeerConfig {
            cluster_id,
            node_id,
            listen,
            peers,
            peer_queue_message_count_max: PEER_QUEUE_MESSAGE_COUNT_MAX,
            inbound_connection_count_max: PEER_CONNECTION_COUNT_MAX,
            reconnect_backoff_ms_min: RECONNECT_BACKOFF_MS_MIN,
            reconnect_backoff_ms_max: RECONNECT_BACKOFF_MS_MAX,
            tls: None,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        let problem = |field: &'static str, problem: String| Err(Error::Config { field, problem });
        let mut ids: Vec<NodeId> = self.peers.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        if let Some(pair) = ids.windows(2).find(|pair| pair[0] == pair[1]) {
            return problem("peers", format!("node {} is listed twice", pair[0]));
        }
        if ids.contains(&self.node_id) {
            return problem("peers", format!("lists this node ({})", self.node_id));
        }
        if self.peer_queue_message_count_max == 0 {
            return problem("peer_queue_message_count_max", "must be at least 1".into());
        }
        if self.reconnect_backoff_ms_max < self.reconnect_backoff_ms_min {
            let found = self.reconnect_backoff_ms_max;
            return problem(
                "reconnect_backoff_ms_max",
                format!("{found} is below the minimum"),
            );
        }
        Ok(())
    }
}

impl PeerTransport {
    /// Binds `config.listen`, starts the accept thread and one writer thread per peer. Inbound
    /// messages arrive through `inbox` ([`Inbox::wait`] yields them as [`Incoming::Peer`]).
    pub fn start(config: PeerConfig, inbox: &Inbox) -> Result<PeerTransport, Error> {
        config.validate()?;
        let listener = TcpListener::bind(config.listen).map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        PeerTransport::start_with_listener(listener, config, inbox)
    }

    /// Like [`PeerTransport::start`], on a listener the caller bound already (`config.listen` is
    /// not used). This lets a test bind every node on port 0 first, then give each node the
    /// others' real addresses.
    pub fn start_with_listener(
        listener: TcpListener,
        config: PeerConfig,
        inbox: &Inbox,
    ) -> Result<PeerTransport, Error> {
        config.validate()?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let (server_tls, client_tls) = match &config.tls {
            Some(tls) => (Some(tls.server_config(true)?), Some(tls.client_config()?)),
            None => (None, None),
        };
        let (shared, shutdown_sender) = Shared::new(config.cluster_id);
        let context = Arc::new(InboundContext {
            shared: Arc::clone(&shared),
            node_id: config.node_id,
            peers: RwLock::new(config.peers.iter().map(|(id, _)| *id).collect()),
            handoff: inbox.handoff(),
            tls: server_tls,
        });
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                elapsed.as_secs() ^ u64::from(elapsed.subsec_nanos()) << 20
            });
        let transport = PeerTransport {
            node_id: config.node_id,
            local_addr,
            links: RwLock::new(BTreeMap::new()),
            writer_setup: WriterSetup {
                cluster_id: config.cluster_id,
                queue_message_count_max: config.peer_queue_message_count_max,
                backoff_ms_min: config.reconnect_backoff_ms_min,
                backoff_ms_max: config.reconnect_backoff_ms_max,
                seed,
                tls: client_tls,
            },
            inbound: Arc::clone(&context),
            shared,
            shutdown_sender: Some(shutdown_sender),
            threads: Arc::new(Threads::default()),
        };
        // On an error below, dropping `transport` stops and joins what was started.
        let threads = Arc::clone(&transport.threads);
        let connection_count_max = config.inbound_connection_count_max;
        transport
            .threads
            .spawn(format!("alpo-net-accept-{}", config.node_id), move || {
                accept_loop(&listener, &context, &threads, connection_count_max);
            })?;
        {
            let mut links = transport.links.write();
            for (peer_id, peer_addr) in &config.peers {
                let link = transport.start_writer(*peer_id, *peer_addr)?;
                links.insert(*peer_id, link);
            }
        }
        Ok(transport)
    }

    /// The address the listener is bound to (with the real port when `listen` had port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Sends `message` to `message.to`: written to the socket at once (non-blocking) if that
    /// peer's link is idle, else queued. Never blocks on the network: if that peer's queue is
    /// full, the oldest queued message is dropped and counted. A message to an unknown node or to
    /// this node, or not from this node, is dropped and counted.
    pub fn send(&self, message: Message) {
        let counters = &self.shared.counters;
        let links = self.links.read();
        let link = links.get(&message.to);
        let Some(peer) = link.filter(|_| message.from == self.node_id) else {
            tracing::debug!(to = %message.to, from = %message.from, "unroutable message dropped");
            add(&counters.messages_dropped_unroutable, 1);
            return;
        };
        peer.link.send(message, counters);
    }

    /// Issue 12: makes `peers` this node's peer set (the members of the configuration in force,
    /// but this node). A peer not linked yet, or linked at another address, gets a new writer;
    /// the writer of a peer no longer listed is retired (its queued messages are dropped and
    /// its connection closed); from now on only `peers` may dial in. Messages to a removed peer
    /// are dropped as unroutable.
    pub fn set_peers(&self, peers: &[(NodeId, SocketAddr)]) -> Result<(), Error> {
        if peers.iter().any(|(id, _)| *id == self.node_id) {
            let problem = format!("lists this node ({})", self.node_id);
            return Err(Error::Config {
                field: "peers",
                problem,
            });
        }
        let mut links = self.links.write();
        let mut next = BTreeMap::new();
        for (peer_id, peer_addr) in peers {
            let kept = links
                .get(peer_id)
                .filter(|peer| peer.addr == *peer_addr)
                .cloned();
            let peer = match kept {
                Some(peer) => peer,
                None => {
                    tracing::info!(node = %peer_id, addr = %peer_addr, "peer added");
                    self.start_writer(*peer_id, *peer_addr)?
                }
            };
            next.insert(*peer_id, peer);
        }
        for (peer_id, peer) in links.iter() {
            if next.get(peer_id).is_none_or(|kept| kept.addr != peer.addr) {
                tracing::info!(node = %peer_id, addr = %peer.addr, "peer removed");
                peer.link.retire(&self.shared.counters);
            }
        }
        *links = next;
        *self.inbound.peers.write() = peers.iter().map(|(id, _)| *id).collect();
        Ok(())
    }

    /// The peers this node links to now, with the addresses their writers dial.
    #[must_use]
    pub fn peers(&self) -> Vec<(NodeId, SocketAddr)> {
        let links = self.links.read();
        links.iter().map(|(id, peer)| (*id, peer.addr)).collect()
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.shared.counters.snapshot()
    }

    /// Stops listening, closes every connection and joins every thread. Messages still queued
    /// are dropped. Dropping the transport does the same.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Starts the writer thread of one peer; its link is the caller's to insert.
    fn start_writer(&self, peer_id: NodeId, peer_addr: SocketAddr) -> Result<PeerLink, Error> {
        let setup = &self.writer_setup;
        let (link, queue) = Link::new(setup.queue_message_count_max, setup.cluster_id);
        let link = Arc::new(link);
        let backoff_seed = setup.seed ^ self.node_id.0.rotate_left(32) ^ peer_id.0;
        let context = WriterContext {
            shared: Arc::clone(&self.shared),
            node_id: self.node_id,
            peer_id,
            peer_addr,
            link: Arc::clone(&link),
            queue,
            backoff: Backoff::new(setup.backoff_ms_min, setup.backoff_ms_max, backoff_seed),
            tls: setup.tls.clone(),
        };
        let name = format!("alpo-net-writer-{}-{}", self.node_id, peer_id);
        self.threads.spawn(name, move || run_writer(context))?;
        Ok(PeerLink {
            addr: peer_addr,
            link,
        })
    }

    fn stop(&mut self) {
        let Some(shutdown_sender) = self.shutdown_sender.take() else {
            return;
        };
        drop(shutdown_sender);
        self.shared.close_all();
        self.links.write().clear();
        wake_listener(self.local_addr);
        self.threads.join_all();
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(
    listener: &TcpListener,
    context: &Arc<InboundContext>,
    threads: &Threads,
    connection_count_max: usize,
) {
    let counters = &context.shared.counters;
    loop {
        let accepted = listener.accept();
        if context.shared.is_closed() {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "accept on the peer listener failed"
                );
                // Back off briefly (file descriptors may be exhausted) unless shutting down.
                let pause = Duration::from_millis(RECONNECT_BACKOFF_MS_MIN);
                if context.shared.shutdown.recv_timeout(pause)
                    == Err(RecvTimeoutError::Disconnected)
                {
                    return;
                }
                continue;
            }
        };
        let connection = Connection::new(stream, peer, context.shared.cluster_id);
        if connection_count_max <= context.shared.inbound_count() {
            let max = u64::try_from(connection_count_max).unwrap_or(u64::MAX);
            let rejection = Rejection::TooManyConnections { max };
            connection.reject(&rejection, context.node_id.0, counters);
            continue;
        }
        let context = Arc::clone(context);
        let name = format!("alpo-net-handshake-{}-{}", context.node_id, peer);
        if let Err(error) = threads.spawn(name, move || serve_inbound(connection, context)) {
            tracing::error!(
                peer = %peer,
                error = &error as &dyn std::error::Error,
                "cannot serve an inbound connection"
            );
        }
    }
}

/// Runs the listener's side of the handshake, then hands the connection to the inbox.
fn serve_inbound(connection: Connection, context: Arc<InboundContext>) {
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
    let peers = context.peers.read().clone();
    let policy = HelloPolicy {
        role: Role::Peer,
        node_id: context.node_id,
        peers: &peers,
    };
    let Some(hello) = connection.accept_hello(policy, counters) else {
        return;
    };
    if let Err(error) = connection.stream.set_nonblocking(true) {
        let peer = connection.peer;
        tracing::warn!(
            %peer,
            error = &error as &dyn std::error::Error,
            "cannot make a peer connection non-blocking"
        );
        return;
    }
    tracing::debug!(peer = %connection.peer, node = hello.sender, "peer connected");
    let handoff = Arc::clone(&context.handoff);
    let Connection {
        stream,
        peer,
        decoder,
        ..
    } = connection;
    handoff.arrive(Arrival {
        token: handoff.next_token(),
        stream,
        peer,
        decoder,
        registration,
        sink: Box::new(PeerSink { hello, context }),
    });
}

impl FrameSink for PeerSink {
    fn on_frame(&mut self, frame: Frame) -> Result<Option<Incoming>, Option<Rejection>> {
        Ok(inbound_message(frame, &self.hello, &self.context)?.map(Incoming::Peer))
    }

    fn counters(&self) -> &CounterCells {
        &self.context.shared.counters
    }

    fn sender(&self) -> u64 {
        self.context.node_id.0
    }
}

fn inbound_message(
    frame: Frame,
    hello: &Hello,
    context: &InboundContext,
) -> Result<Option<Message>, Option<Rejection>> {
    let counters = &context.shared.counters;
    let kind = frame.header.kind;
    if kind == FrameKind::Close {
        let reason = decode_close(&frame);
        tracing::info!(node = hello.sender, ?reason, "peer closed its connection");
        return Err(None);
    }
    if !kind.is_peer_message() {
        let connection = Role::Peer;
        return Err(Some(Rejection::KindNotAllowed {
            found: kind,
            connection,
        }));
    }
    if frame.header.sender != hello.sender {
        add(&counters.messages_dropped_identity, 1);
        return Ok(None);
    }
    let message = decode_message(&frame.header, frame.body).map_err(Some)?;
    if message.to != context.node_id {
        add(&counters.messages_dropped_identity, 1);
        return Ok(None);
    }
    Ok(Some(message))
}

/// Hands a message to the node, waiting while its channel is full; false once the node is gone
/// or the transport is shutting down.
fn run_writer(mut context: WriterContext) {
    let mut batch = Vec::with_capacity(2 * WRITE_BATCH_BYTES_MAX);
    let mut connected_before = false;
    let counters = &context.shared.counters;
    while !context.shared.is_closed() && !context.link.is_retired() {
        match dial(&context) {
            Ok((connection, _registration)) => {
                add(&counters.connections_established, 1);
                if connected_before {
                    add(&counters.reconnects, 1);
                }
                connected_before = true;
                context.backoff.reset();
                tracing::info!(peer = %context.peer_addr, node = %context.peer_id, "connected");
                let end = pump(&connection, &context, &mut batch);
                if context.link.lock().disconnected() {
                    add(&counters.messages_dropped_link_lost, 1);
                }
                match end {
                    PumpEnd::Shutdown => return,
                    PumpEnd::Broken if context.link.is_retired() => {
                        tracing::info!(node = %context.peer_id, "connection closed (peer removed)");
                        return;
                    }
                    PumpEnd::Lost(error) => {
                        tracing::info!(
                            node = %context.peer_id,
                            error = &error as &dyn std::error::Error,
                            "connection lost"
                        );
                    }
                    PumpEnd::Broken => {
                        tracing::info!(node = %context.peer_id, "connection lost (direct write)");
                    }
                }
            }
            Err(error) => {
                add(&counters.connect_failures, 1);
                match error {
                    Error::Io { .. } | Error::Timeout { .. } => {
                        tracing::debug!(
                            node = %context.peer_id,
                            error = &error as &dyn std::error::Error,
                            "cannot connect"
                        );
                    }
                    _ => {
                        tracing::warn!(
                            node = %context.peer_id,
                            error = &error as &dyn std::error::Error,
                            "cannot connect"
                        )
                    }
                }
            }
        }
        let delay = context.backoff.next_delay();
        if context.shared.shutdown.recv_timeout(delay) == Err(RecvTimeoutError::Disconnected) {
            return;
        }
    }
}

fn dial(context: &WriterContext) -> Result<(Connection, Registration), Error> {
    let peer = context.peer_addr;
    let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
    let stream = TcpStream::connect_timeout(&peer, timeout).map_err(|source| Error::Io {
        peer,
        operation: "connect",
        source,
    })?;
    let Some(registration) = context.shared.register(&stream, Direction::Outbound) else {
        let reason = Some(crate::CloseReason::ShuttingDown);
        return Err(Error::Closed { peer, reason });
    };
    let mut connection = Connection::new(stream, peer, context.shared.cluster_id);
    let timeout = Duration::from_millis(HANDSHAKE_TIMEOUT_MS);
    let counters = &context.shared.counters;
    if let Some(tls) = &context.tls {
        // The listener's certificate must name the node dialled.
        let name = crate::tls::node_dns_name(context.peer_id);
        connection = connection.connect_tls(tls, &name, timeout, counters)?;
    }
    let hello = Hello {
        role: Role::Peer,
        sender: context.node_id.0,
        receiver: context.peer_id.0,
    };
    connection.dial_hello(hello, Some(context.peer_id), timeout, counters)?;
    let direct = connection.stream.try_clone().map_err(|source| Error::Io {
        peer,
        operation: "clone",
        source,
    })?;
    context.link.lock().connected(direct);
    Ok((connection, registration))
}

/// Writes what `send` queued (and the tail of a frame it wrote in part) in batches until the
/// connection fails or the transport stops. The writer owns the socket while it has work (and
/// while a burst of sends is on) and hands it back to `send`, non-blocking, when it has none.
fn pump(connection: &Connection, context: &WriterContext, batch: &mut Vec<u8>) -> PumpEnd {
    let counters = &context.shared.counters;
    let io_error = |operation, source| Error::Io {
        peer: connection.peer,
        operation,
        source,
    };
    // The stream is blocking after the handshake; it is non-blocking whenever `send` owns it.
    let mut blocking = true;
    loop {
        let hold = {
            let mut state = context.link.lock();
            if state.is_broken() || context.link.is_retired() {
                return PumpEnd::Broken;
            }
            let idle = state.pending.is_empty() && context.link.unsent() == 0;
            let hold = state.burst_time_left(Instant::now()).filter(|_| idle);
            if idle && hold.is_none() {
                if let Err(source) = state.release_socket(blocking) {
                    return PumpEnd::Lost(io_error("set_nonblocking", source));
                }
                blocking = false;
            }
            hold
        };
        let first = match next_item(context, hold) {
            Next::Item(item) => item,
            Next::Again => continue,
            Next::Shutdown => return PumpEnd::Shutdown,
        };
        batch.clear();
        let mut frame_count = 0;
        {
            let mut state = context.link.lock();
            state.take_socket();
            if !state.pending.is_empty() {
                // The tail of a frame `send` wrote in part goes first, on this connection.
                batch.append(&mut state.pending);
                frame_count = 1;
            }
        }
        if !blocking {
            if let Err(source) = connection.stream.set_nonblocking(false) {
                context.link.done(1);
                return PumpEnd::Lost(io_error("set_nonblocking", source));
            }
            blocking = true;
        }
        let (frames, taken) = fill_batch(batch, first, context);
        frame_count += frames;
        let written = if batch.is_empty() {
            // A wake-up only: TLS records a direct write left waiting go out now.
            connection.flush()
        } else {
            connection.write(batch, frame_count, counters)
        };
        context.link.done(taken);
        if let Err(error) = written {
            add_usize(&counters.messages_dropped_link_lost, frame_count);
            return PumpEnd::Lost(error);
        }
    }
}

/// What the writer's wait ended with.
enum Next {
    Item(Outbound),
    /// The hold time passed with nothing queued.
    Again,
    Shutdown,
}

/// Waits for the next queued item: up to `hold` if given, else until one comes.
fn next_item(context: &WriterContext, hold: Option<Duration>) -> Next {
    let shutdown = &context.shared.shutdown;
    let received = match hold {
        Some(hold) => select! {
            recv(context.queue) -> item => item,
            recv(shutdown) -> _ => return Next::Shutdown,
            default(hold) => return Next::Again,
        },
        None => select! {
            recv(context.queue) -> item => item,
            recv(shutdown) -> _ => return Next::Shutdown,
        },
    };
    // The link (and so the queue's sender) lives as long as this writer.
    received.map_or(Next::Shutdown, Next::Item)
}

/// Encodes `first` and whatever else is queued into `batch` until it is full or the queue is
/// empty: the frames added and the items taken.
fn fill_batch(batch: &mut Vec<u8>, first: Outbound, context: &WriterContext) -> (usize, usize) {
    let mut frame_count = encode_item(batch, first, context);
    let mut taken = 1;
    while batch.len() < WRITE_BATCH_BYTES_MAX && frame_count < WRITE_BATCH_FRAME_COUNT_MAX {
        let Ok(item) = context.queue.try_recv() else {
            break;
        };
        taken += 1;
        frame_count += encode_item(batch, item, context);
    }
    (frame_count, taken)
}

/// Appends a queued message's frame to the batch: 1 if it was, 0 for a wake-up or a message
/// dropped as unencodable.
fn encode_item(batch: &mut Vec<u8>, item: Outbound, context: &WriterContext) -> usize {
    match item {
        Outbound::Message(message) => encode_into(batch, &message, context),
        Outbound::Wake => 0,
    }
}

/// Appends one message's frame to the batch; 1 if it was encoded, 0 if dropped (and counted).
fn encode_into(batch: &mut Vec<u8>, message: &Message, context: &WriterContext) -> usize {
    match encode_message(message, context.shared.cluster_id, batch) {
        Ok(()) => 1,
        Err(error) => {
            let counters = &context.shared.counters;
            add(&counters.messages_dropped_unencodable, 1);
            match error {
                EncodeError::TooLarge { bytes } => {
                    tracing::warn!(node = %context.peer_id, bytes, "message too large to send");
                }
                EncodeError::EntriesNotConsecutive { position } => {
                    let node = context.peer_id;
                    tracing::error!(%node, position, "append entries are not consecutive");
                }
            }
            0
        }
    }
}
