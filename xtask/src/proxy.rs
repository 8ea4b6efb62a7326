//! A fault-injecting TCP proxy for loopback cluster tests, one per directed link, on threads.
//!
//! A [`Proxy`] listens on `127.0.0.1:0` and forwards every accepted connection to one target
//! address. A cloneable [`LinkHandle`] changes its behaviour while it runs:
//! - pass (the healed state): bytes flow unchanged, in order;
//! - cut: existing connections are closed and new ones are closed at once (refused);
//! - blackhole: connections stay open, every byte in both directions is discarded;
//! - one-way loss: every byte in one direction is discarded;
//! - latency: every chunk is delivered no earlier than `D` after it was read.
//!
//! [`Mesh`] runs a proxy for every ordered pair of nodes and applies the nemesis' network faults.
//!
//! Invariants: bytes that are forwarded are forwarded intact and in order (discarding is the only
//! change); memory per connection is bounded (`CHUNKS_IN_FLIGHT` chunks of `CHUNK_BYTES` per
//! direction, backpressure beyond); a proxy holds at most `CONNECTIONS_MAX` connections; dropping
//! a [`Proxy`] closes its connections and joins every thread it started before returning.
//! Every blocking call has a timeout of `POLL`, which bounds how long a thread takes to notice a
//! cut or shutdown.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::nemesis::{NetworkFault, NodeIndex};

/// Largest read, hence largest chunk, in bytes.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Chunks queued per direction of a connection; a full queue stops reading (backpressure).
pub const CHUNKS_IN_FLIGHT: usize = 16;
/// Connections a proxy holds at once; beyond, new connections are closed at once.
pub const CONNECTIONS_MAX: usize = 64;
/// Longest a proxy thread blocks before it looks at its controls again.
pub const POLL: Duration = Duration::from_millis(10);
/// Longest the proxy waits to connect to its target; on failure the client connection closes.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a link does with connections and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkMode {
    /// Forward bytes (subject to loss and latency settings).
    Pass,
    /// Close every connection, existing and new.
    Cut,
    /// Keep connections, discard every byte.
    Blackhole,
}

/// The two directions of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the side that connected to the proxy to the target.
    Forward,
    /// From the target back to the side that connected.
    Backward,
}

/// A link's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Pass, cut or blackhole.
    pub mode: LinkMode,
    /// Discard every byte going forward.
    pub forward_lost: bool,
    /// Discard every byte going backward.
    pub backward_lost: bool,
    /// Delay added to every chunk, both directions.
    pub latency: Duration,
}

impl LinkState {
    /// The healed state: pass everything, no loss, no latency.
    pub const HEALED: LinkState = LinkState {
        mode: LinkMode::Pass,
        forward_lost: false,
        backward_lost: false,
        latency: Duration::ZERO,
    };

    fn discards(&self, direction: Direction) -> bool {
        self.mode == LinkMode::Blackhole
            || match direction {
                Direction::Forward => self.forward_lost,
                Direction::Backward => self.backward_lost,
            }
    }
}

/// Counters of what a link did, for reports and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Connections accepted and connected to the target.
    pub connections_accepted: u64,
    /// Connections closed at once (cut, limit, or target unreachable).
    pub connections_refused: u64,
    /// Bytes read and queued for delivery.
    pub forwarded_bytes: u64,
    /// Bytes read and discarded (blackhole or loss).
    pub discarded_bytes: u64,
}

/// A running proxy. Dropping it stops it and joins its threads.
#[derive(Debug)]
pub struct Proxy {
    listen_addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// Controls a proxy from any thread.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    target: SocketAddr,
    state: Mutex<LinkState>,
    /// Incremented by every cut; a connection made in an older epoch closes.
    cut_epoch: AtomicU64,
    shutdown: AtomicBool,
    live_connections: AtomicUsize,
    threads: Mutex<Vec<JoinHandle<()>>>,
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    forwarded_bytes: AtomicU64,
    discarded_bytes: AtomicU64,
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:0` that forwards to `target`, in the healed state.
    pub fn start(target: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let listen_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            state: Mutex::new(LinkState::HEALED),
            cut_epoch: AtomicU64::new(0),
            shutdown: AtomicBool::new(false),
            live_connections: AtomicUsize::new(0),
            threads: Mutex::new(Vec::new()),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            forwarded_bytes: AtomicU64::new(0),
            discarded_bytes: AtomicU64::new(0),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("proxy-accept-{listen_addr}"))
            .spawn(move || accept_loop(&listener, &acceptor_shared))?;
        Ok(Proxy {
            listen_addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address to connect to instead of the target.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// A handle that controls this proxy.
    pub fn handle(&self) -> LinkHandle {
        LinkHandle {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            // A panic in the acceptor has already been reported on stderr; nothing to add.
            let _ = acceptor.join();
        }
        let threads = std::mem::take(&mut *self.shared.lock_threads());
        for pump in threads {
            let _ = pump.join();
        }
    }
}

impl LinkHandle {
    /// Back to the healed state: pass everything, no loss, no latency.
    pub fn heal(&self) {
        *self.shared.lock_state() = LinkState::HEALED;
    }

    /// Closes every connection and closes new ones at once, until healed.
    pub fn cut(&self) {
        let mut state = self.shared.lock_state();
        state.mode = LinkMode::Cut;
        self.shared.cut_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Keeps connections but discards every byte, until healed.
    pub fn blackhole(&self) {
        self.shared.lock_state().mode = LinkMode::Blackhole;
    }

    /// Discards (`lost = true`) or passes every byte in one direction.
    pub fn set_lost(&self, direction: Direction, lost: bool) {
        let mut state = self.shared.lock_state();
        match direction {
            Direction::Forward => state.forward_lost = lost,
            Direction::Backward => state.backward_lost = lost,
        }
    }

    /// Delays every chunk read from now on by `latency`, both directions.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock_state().latency = latency;
    }

    /// The current settings.
    pub fn state(&self) -> LinkState {
        *self.shared.lock_state()
    }

    /// What the link has done so far.
    pub fn stats(&self) -> LinkStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::SeqCst);
        LinkStats {
            connections_accepted: load(&self.shared.connections_accepted),
            connections_refused: load(&self.shared.connections_refused),
            forwarded_bytes: load(&self.shared.forwarded_bytes),
            discarded_bytes: load(&self.shared.discarded_bytes),
        }
    }

    /// Connections open right now.
    pub fn live_connections(&self) -> usize {
        self.shared.live_connections.load(Ordering::SeqCst)
    }
}

/// A proxy for every ordered pair of nodes: node `source` reaches node `target` through
/// `addr(source, target)`, and only through it, so faults can be set per directed link.
#[derive(Debug)]
pub struct Mesh {
    node_count: usize,
    /// Row-major `source * node_count + target`; `None` on the diagonal.
    proxies: Vec<Option<Proxy>>,
}

impl Mesh {
    /// Starts `n * (n - 1)` proxies for nodes listening at `targets[0..n]`.
    pub fn start(targets: &[SocketAddr]) -> io::Result<Mesh> {
        let node_count = targets.len();
        let mut proxies = Vec::with_capacity(node_count * node_count);
        for source in 0..node_count {
            for (target, addr) in targets.iter().enumerate() {
                proxies.push(if source == target {
                    None
                } else {
                    Some(Proxy::start(*addr)?)
                });
            }
        }
        Ok(Mesh {
            node_count,
            proxies,
        })
    }

    /// The address node `source` must use to reach node `target`; `None` when they are the
    /// same node or out of range.
    pub fn addr(&self, source: NodeIndex, target: NodeIndex) -> Option<SocketAddr> {
        self.proxy(source, target).map(Proxy::listen_addr)
    }

    /// The handle of the link `source → target`.
    pub fn link(&self, source: NodeIndex, target: NodeIndex) -> Option<LinkHandle> {
        self.proxy(source, target).map(Proxy::handle)
    }

    /// Heals every link.
    pub fn heal(&self) {
        self.links().for_each(|(_, _, link)| link.heal());
    }

    /// Cuts every link between a node in `side` and a node outside it, both ways.
    pub fn split(&self, side: &[NodeIndex]) {
        for (source, target, link) in self.links() {
            if side.contains(&source) != side.contains(&target) {
                link.cut();
            }
        }
    }

    /// Applies a nemesis network fault. `isolated` names the node [`NetworkFault::IsolateLeader`]
    /// cuts off (the leader resolved by the caller); with `None` that fault does nothing and the
    /// call returns false.
    pub fn apply(&self, fault: &NetworkFault, isolated: Option<NodeIndex>) -> bool {
        match fault {
            NetworkFault::Split { minority } => self.split(minority),
            NetworkFault::IsolateLeader => match isolated {
                Some(node) => self.split(&[node]),
                None => return false,
            },
            NetworkFault::OneWayLoss { source, target } => {
                // Bytes from `source` to `target` travel forward on source's connections to
                // target and backward on target's connections to source.
                if let Some(link) = self.link(*source, *target) {
                    link.set_lost(Direction::Forward, true);
                }
                if let Some(link) = self.link(*target, *source) {
                    link.set_lost(Direction::Backward, true);
                }
            }
            NetworkFault::SlowLink {
                source,
                target,
                latency_ms,
            } => {
                let latency = Duration::from_millis(*latency_ms);
                for (a, b) in [(*source, *target), (*target, *source)] {
                    if let Some(link) = self.link(a, b) {
                        link.set_latency(latency);
                    }
                }
            }
        }
        true
    }

    fn proxy(&self, source: NodeIndex, target: NodeIndex) -> Option<&Proxy> {
        if self.node_count <= source.0 || self.node_count <= target.0 {
            return None;
        }
        self.proxies[source.0 * self.node_count + target.0].as_ref()
    }

    fn links(&self) -> impl Iterator<Item = (NodeIndex, NodeIndex, LinkHandle)> + '_ {
        self.proxies
            .iter()
            .enumerate()
            .filter_map(|(position, proxy)| {
                let (source, target) = (position / self.node_count, position % self.node_count);
                proxy
                    .as_ref()
                    .map(|proxy| (NodeIndex(source), NodeIndex(target), proxy.handle()))
            })
    }
}

impl Shared {
    fn lock_state(&self) -> std::sync::MutexGuard<'_, LinkState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_threads(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when a connection made in `epoch` must close.
    fn must_close(&self, epoch: u64) -> bool {
        self.shutdown.load(Ordering::SeqCst) || self.cut_epoch.load(Ordering::SeqCst) != epoch
    }
}

/// One direction of one connection, as seen by its two threads.
struct Pump {
    shared: Arc<Shared>,
    direction: Direction,
    epoch: u64,
    source: TcpStream,
    target: TcpStream,
}

/// A chunk of bytes and the earliest time it may be delivered.
struct Chunk {
    due: Instant,
    bytes: Vec<u8>,
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    // Bounded by the shutdown flag, checked every POLL.
    while !shared.shutdown.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                if admit(client, shared).is_err() {
                    shared.connections_refused.fetch_add(1, Ordering::SeqCst);
                }
            }
            // WouldBlock: nobody is connecting. Other errors (a connection reset before it was
            // accepted, out of descriptors) are transient for a test proxy: try again.
            Err(_) => thread::sleep(POLL),
        }
        shared.lock_threads().retain(|pump| !pump.is_finished());
    }
}

/// Connects an accepted client to the target and starts its four pump threads, or closes it.
fn admit(client: TcpStream, shared: &Arc<Shared>) -> io::Result<()> {
    let refuse = |why: &str| Err(io::Error::other(why.to_owned()));
    let epoch = shared.cut_epoch.load(Ordering::SeqCst);
    if shared.lock_state().mode == LinkMode::Cut {
        return refuse("link is cut");
    }
    if CONNECTIONS_MAX <= shared.live_connections.load(Ordering::SeqCst) {
        return refuse("connection limit reached");
    }
    client.set_nonblocking(false)?;
    let server = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT)?;
    for stream in [&client, &server] {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(POLL))?;
        stream.set_write_timeout(Some(POLL))?;
    }
    shared.connections_accepted.fetch_add(1, Ordering::SeqCst);
    // Two directions, each a reader and a writer thread; the last thread out decrements this.
    shared.live_connections.fetch_add(1, Ordering::SeqCst);
    let alive = Arc::new(AtomicUsize::new(4));
    let forward = (client.try_clone()?, server.try_clone()?, Direction::Forward);
    let backward = (server, client, Direction::Backward);
    for (source, target, direction) in [forward, backward] {
        let pump = Pump {
            shared: Arc::clone(shared),
            direction,
            epoch,
            source,
            target,
        };
        spawn_pump(pump, &alive)?;
    }
    Ok(())
}

fn spawn_pump(pump: Pump, alive: &Arc<AtomicUsize>) -> io::Result<()> {
    let (sender, receiver) = mpsc::sync_channel::<Chunk>(CHUNKS_IN_FLIGHT);
    let writer_pump = Pump {
        shared: Arc::clone(&pump.shared),
        direction: pump.direction,
        epoch: pump.epoch,
        source: pump.source.try_clone()?,
        target: pump.target.try_clone()?,
    };
    let shared = Arc::clone(&pump.shared);
    let (reader_alive, writer_alive) = (Arc::clone(alive), Arc::clone(alive));
    let reader = thread::Builder::new()
        .name("proxy-read".into())
        .spawn(move || {
            read_loop(&pump, &sender);
            leave(&pump.shared, &reader_alive);
        })?;
    let writer = thread::Builder::new()
        .name("proxy-write".into())
        .spawn(move || {
            write_loop(&writer_pump, &receiver);
            leave(&writer_pump.shared, &writer_alive);
        })?;
    shared.lock_threads().extend([reader, writer]);
    Ok(())
}

fn leave(shared: &Shared, alive: &AtomicUsize) {
    if alive.fetch_sub(1, Ordering::SeqCst) == 1 {
        shared.live_connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes both sockets of a connection, so the other three threads stop too.
fn abort(pump: &Pump) {
    let _ = pump.source.shutdown(Shutdown::Both);
    let _ = pump.target.shutdown(Shutdown::Both);
}

/// Reads from `source`, drops or queues each chunk. Ends on end of stream (the writer then
/// passes the end on), on error, cut or shutdown (closing the whole connection).
fn read_loop(pump: &Pump, sender: &SyncSender<Chunk>) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    // Bounded by the connection: ends on end of stream, error, cut or shutdown.
    loop {
        if pump.shared.must_close(pump.epoch) {
            return abort(pump);
        }
        let count = match (&pump.source).read(&mut buffer) {
            Ok(0) => return,
            Ok(count) => count,
            Err(error) if is_timeout(&error) => continue,
            Err(_) => return abort(pump),
        };
        let state = *pump.shared.lock_state();
        let bytes = u64::try_from(count).unwrap_or(u64::MAX);
        if pump.shared.must_close(pump.epoch) {
            return abort(pump);
        }
        if state.discards(pump.direction) {
            pump.shared
                .discarded_bytes
                .fetch_add(bytes, Ordering::SeqCst);
            continue;
        }
        pump.shared
            .forwarded_bytes
            .fetch_add(bytes, Ordering::SeqCst);
        let chunk = Chunk {
            due: Instant::now() + state.latency,
            bytes: buffer[..count].to_vec(),
        };
        if sender.send(chunk).is_err() {
            return abort(pump);
        }
    }
}

/// Delivers queued chunks to `target` no earlier than their due time. When the reader has
/// ended cleanly and the queue is drained, passes the end of stream on.
fn write_loop(pump: &Pump, receiver: &Receiver<Chunk>) {
    // Bounded by the connection: ends when the reader ends, on error, cut or shutdown.
    loop {
        match receiver.recv_timeout(POLL) {
            Ok(chunk) => {
                if !wait_until(pump, chunk.due) || !write_all(pump, &chunk.bytes) {
                    return abort(pump);
                }
            }
            Err(RecvTimeoutError::Timeout) if pump.shared.must_close(pump.epoch) => {
                return abort(pump);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                let _ = pump.target.shutdown(Shutdown::Write);
                return;
            }
        }
    }
}

/// Sleeps until `due` in steps of at most `POLL`; false if the connection must close first.
fn wait_until(pump: &Pump, due: Instant) -> bool {
    loop {
        if pump.shared.must_close(pump.epoch) {
            return false;
        }
        let now = Instant::now();
        if due <= now {
            return true;
        }
        thread::sleep((due - now).min(POLL));
    }
}

/// Writes all of `bytes`, retrying on write timeouts; false on error, cut or shutdown.
fn write_all(pump: &Pump, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        if pump.shared.must_close(pump.epoch) {
            return false;
        }
        match (&pump.target).write(bytes) {
            Ok(0) => return false,
            Ok(count) => bytes = &bytes[count..],
            Err(error) if is_timeout(&error) || error.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loopback echo server; dropping it stops accepting (connections end with their clients).
    struct Echo {
        addr: SocketAddr,
        stop: Arc<AtomicBool>,
        acceptor: Option<JoinHandle<()>>,
    }

    impl Echo {
        fn start() -> Echo {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let addr = listener.local_addr().unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let stop_flag = Arc::clone(&stop);
            let acceptor = thread::spawn(move || {
                let mut connections = Vec::new();
                while !stop_flag.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => connections.push(thread::spawn(move || {
                            stream.set_nonblocking(false).unwrap();
                            let mut reader = stream.try_clone().unwrap();
                            let mut writer = stream;
                            let _ = io::copy(&mut reader, &mut writer);
                        })),
                        Err(_) => thread::sleep(Duration::from_millis(2)),
                    }
                }
                // Connections end when their clients close, which every test does.
                drop(connections);
            });
            Echo {
                addr,
                stop,
                acceptor: Some(acceptor),
            }
        }
    }

    impl Drop for Echo {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            self.acceptor.take().unwrap().join().unwrap();
        }
    }

    fn connect(addr: SocketAddr) -> TcpStream {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    fn round_trip(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
        stream.write_all(message).unwrap();
        let mut reply = vec![0u8; message.len()];
        stream.read_exact(&mut reply).unwrap();
        reply
    }

    /// Waits (bounded) until `condition` holds; the proxy's threads act asynchronously.
    fn eventually(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Reads until end of stream or error; true if the connection closed (not a timeout).
    fn closed(stream: &mut TcpStream) -> bool {
        let mut buffer = [0u8; 64];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error) => return !is_timeout(&error),
            }
        }
    }

    #[test]
    fn bytes_pass_intact_and_in_order() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr).unwrap();
        let mut stream = connect(proxy.listen_addr());
        let message: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = stream.try_clone().unwrap();
        let sent = message.clone();
        let sender = thread::spawn(move || writer.write_all(&sent).unwrap());
        let mut received = vec![0u8; message.len()];
        stream.read_exact(&mut received).unwrap();
        sender.join().unwrap();
        assert!(received == message, "bytes changed or reordered");
        let stats = proxy.handle().stats();
        assert_eq!(stats.forwarded_bytes, 2 * 1_000_000);
        assert_eq!(stats.discarded_bytes, 0);
        assert_eq!(stats.connections_accepted, 1);
    }

    #[test]
    fn cut_closes_and_refuses_until_healed() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr).unwrap();
        let link = proxy.handle();
        let mut stream = connect(proxy.listen_addr());
        assert_eq!(round_trip(&mut stream, b"hello"), b"hello");
        link.cut();
        assert!(closed(&mut stream), "a cut closes existing connections");
        let mut refused = connect(proxy.listen_addr());
        assert!(closed(&mut refused), "a cut link closes new connections");
        eventually("the refusal to be counted", || {
            link.stats().connections_refused == 1
        });
        link.heal();
        let mut fresh = connect(proxy.listen_addr());
        assert_eq!(round_trip(&mut fresh, b"again"), b"again");
        eventually("the cut connection to be gone", || {
            link.live_connections() == 1
        });
    }

    #[test]
    fn blackhole_discards_bytes_but_keeps_the_connection() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr).unwrap();
        let link = proxy.handle();
        let mut stream = connect(proxy.listen_addr());
        assert_eq!(round_trip(&mut stream, b"before"), b"before");
        link.blackhole();
        stream.write_all(b"lost").unwrap();
        eventually("the bytes to be discarded", || {
            link.stats().discarded_bytes == 4
        });
        link.heal();
        // The same connection works again; the discarded bytes never arrive.
        assert_eq!(round_trip(&mut stream, b"after"), b"after");
    }

    #[test]
    fn one_way_loss_discards_one_direction_only() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr).unwrap();
        let link = proxy.handle();
        let mut stream = connect(proxy.listen_addr());
        link.set_lost(Direction::Backward, true);
        stream.write_all(b"ping").unwrap();
        // Forwarded to the echo server (4 bytes), its echo discarded on the way back.
        eventually("the echo to be discarded", || {
            link.stats().discarded_bytes == 4
        });
        assert_eq!(link.stats().forwarded_bytes, 4);
        link.set_lost(Direction::Backward, false);
        link.set_lost(Direction::Forward, true);
        stream.write_all(b"gone").unwrap();
        eventually("the request to be discarded", || {
            link.stats().discarded_bytes == 8
        });
        assert!(link.state().forward_lost);
        link.heal();
        assert_eq!(round_trip(&mut stream, b"pong"), b"pong");
        assert_eq!(link.state(), LinkState::HEALED);
    }

    #[test]
    fn latency_delays_each_direction_by_at_least_the_setting() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr).unwrap();
        let latency = Duration::from_millis(50);
        proxy.handle().set_latency(latency);
        let mut stream = connect(proxy.listen_addr());
        let start = Instant::now();
        assert_eq!(round_trip(&mut stream, b"slow"), b"slow");
        // There and back through the proxy: delayed twice. A lower bound only, so the test
        // cannot fail on a slow machine.
        assert!(2 * latency <= start.elapsed(), "{:?}", start.elapsed());
    }

    #[test]
    fn drop_closes_connections_and_joins_every_thread() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr).unwrap();
        let mut streams: Vec<TcpStream> = (0..3).map(|_| connect(proxy.listen_addr())).collect();
        for stream in &mut streams {
            assert_eq!(round_trip(stream, b"x"), b"x");
        }
        proxy.handle().set_latency(Duration::from_secs(3600));
        streams[0].write_all(b"stuck in the delay line").unwrap();
        let shared = Arc::downgrade(&proxy.shared);
        eventually("three connections", || {
            proxy.handle().live_connections() == 3
        });
        drop(proxy);
        // Every thread held a reference to the shared state; all are gone after drop.
        assert!(
            shared.upgrade().is_none(),
            "a proxy thread outlived the proxy"
        );
        for stream in &mut streams {
            assert!(closed(stream));
        }
    }

    #[test]
    fn connections_beyond_the_limit_are_refused() {
        let echo = Echo::start();
        let proxy = Proxy::start(echo.addr).unwrap();
        let link = proxy.handle();
        let mut streams: Vec<TcpStream> = (0..CONNECTIONS_MAX)
            .map(|_| connect(proxy.listen_addr()))
            .collect();
        eventually("the limit", || link.live_connections() == CONNECTIONS_MAX);
        let mut extra = connect(proxy.listen_addr());
        assert!(closed(&mut extra));
        assert_eq!(round_trip(&mut streams[0], b"ok"), b"ok");
        eventually("the refusal to be counted", || {
            link.stats().connections_refused == 1
        });
    }

    #[test]
    fn unreachable_target_closes_the_client_connection() {
        let unused = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = unused.local_addr().unwrap();
        drop(unused);
        let proxy = Proxy::start(target).unwrap();
        let mut stream = connect(proxy.listen_addr());
        assert!(closed(&mut stream));
    }

    #[test]
    fn mesh_routes_each_pair_and_applies_faults() {
        let echoes: Vec<Echo> = (0..3).map(|_| Echo::start()).collect();
        let targets: Vec<SocketAddr> = echoes.iter().map(|echo| echo.addr).collect();
        let mesh = Mesh::start(&targets).unwrap();
        let n = |i| NodeIndex(i);
        assert_eq!(mesh.addr(n(0), n(0)), None);
        assert_eq!(mesh.addr(n(0), n(3)), None);
        let mut to_two = connect(mesh.addr(n(0), n(2)).unwrap());
        assert_eq!(round_trip(&mut to_two, b"a"), b"a");
        assert!(mesh.apply(
            &NetworkFault::Split {
                minority: vec![n(2)]
            },
            None
        ));
        for (a, b, cut) in [(0, 1, false), (1, 0, false), (0, 2, true), (2, 1, true)] {
            let mode = mesh.link(n(a), n(b)).unwrap().state().mode;
            assert_eq!(mode == LinkMode::Cut, cut, "{a} -> {b}");
        }
        assert!(closed(&mut to_two));
        mesh.heal();
        assert!(!mesh.apply(&NetworkFault::IsolateLeader, None));
        let one_way = NetworkFault::OneWayLoss {
            source: n(1),
            target: n(0),
        };
        assert!(mesh.apply(&one_way, Some(n(0))));
        assert!(mesh.link(n(1), n(0)).unwrap().state().forward_lost);
        assert!(mesh.link(n(0), n(1)).unwrap().state().backward_lost);
        assert!(!mesh.link(n(0), n(1)).unwrap().state().forward_lost);
        let slow = NetworkFault::SlowLink {
            source: n(1),
            target: n(2),
            latency_ms: 7,
        };
        mesh.apply(&slow, None);
        assert_eq!(
            mesh.link(n(2), n(1)).unwrap().state().latency,
            Duration::from_millis(7)
        );
        mesh.heal();
        assert_eq!(mesh.link(n(2), n(1)).unwrap().state(), LinkState::HEALED);
        let mut again = connect(mesh.addr(n(0), n(2)).unwrap());
        assert_eq!(round_trip(&mut again, b"b"), b"b");
    }
}
