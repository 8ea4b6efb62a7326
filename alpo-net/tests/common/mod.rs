//! Helpers shared by alpo-net's behaviour tests: starting nodes on loopback port 0, building
//! messages, and a raw socket client that speaks (or deliberately mangles) the framing.

#![allow(dead_code, unreachable_pub)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use alpo_core::{
    Append, AppendReply, AppendResult, ClusterId, Entry, EntryKind, Incarnation, LogIndex, Message,
    MessageBody, NodeId, Term,
};
use alpo_net::frame::{Frame, FrameDecoder, FrameKind, encode_frame};
use alpo_net::handshake::{Hello, Role, decode_close};
use alpo_net::{
    ClientRequest, CloseReason, Inbox, InboxWaker, Incoming, PeerConfig, PeerTransport,
};
use bytes::Bytes;
use crossbeam_channel::Receiver;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

pub const CLUSTER: ClusterId = ClusterId(0xC0FFEE);
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Binds one listener per node id on port 0, then starts every node with all the others as
/// peers, with `configure` applied to each configuration.
pub fn start_cluster(
    ids: &[u64],
    configure: impl Fn(&mut PeerConfig),
) -> Vec<(PeerTransport, Received<Message>)> {
    start_cluster_with_capacity(ids, RECEIVED_CAPACITY, configure)
}

/// Like `start_cluster`, with `capacity` messages between each inbox and the test: with a small
/// one, a test that stops taking messages stalls the inbox and so the sender's socket.
pub fn start_cluster_with_capacity(
    ids: &[u64],
    capacity: usize,
    configure: impl Fn(&mut PeerConfig),
) -> Vec<(PeerTransport, Received<Message>)> {
    let listeners: Vec<TcpListener> = ids
        .iter()
        .map(|_| TcpListener::bind(loopback()).unwrap())
        .collect();
    let addrs: Vec<(NodeId, SocketAddr)> = ids
        .iter()
        .zip(&listeners)
        .map(|(id, listener)| (NodeId(*id), listener.local_addr().unwrap()))
        .collect();
    ids.iter()
        .zip(listeners)
        .map(|(id, listener)| {
            let peers = addrs
                .iter()
                .filter(|(peer, _)| peer.0 != *id)
                .copied()
                .collect();
            let mut config = PeerConfig::new(CLUSTER, NodeId(*id), loopback(), peers);
            configure(&mut config);
            let inbox = Inbox::new().unwrap();
            let transport = PeerTransport::start_with_listener(listener, config, &inbox).unwrap();
            (transport, pump(inbox, capacity, peer_message))
        })
        .collect()
}

/// Messages a `Received` channel holds by default.
pub const RECEIVED_CAPACITY: usize = 16_384;

/// Starts a transport on `listener` with its own inbox, read by a thread into a channel.
pub fn start_peer(listener: TcpListener, config: PeerConfig) -> (PeerTransport, Received<Message>) {
    let inbox = Inbox::new().unwrap();
    let transport = PeerTransport::start_with_listener(listener, config, &inbox).unwrap();
    (transport, pump(inbox, RECEIVED_CAPACITY, peer_message))
}

/// Like `start_peer`, binding `config.listen`.
pub fn start_peer_on(config: PeerConfig) -> (PeerTransport, Received<Message>) {
    let listener = TcpListener::bind(config.listen).unwrap();
    start_peer(listener, config)
}

/// What an inbox received, moved into a channel by a thread that waits on the inbox (so a test
/// can use `recv_timeout`). Dropping it stops the thread and closes the inbox's connections.
pub struct Received<T> {
    receiver: Receiver<T>,
    stop: Arc<AtomicBool>,
    waker: InboxWaker,
    thread: Option<JoinHandle<()>>,
}

impl<T> std::ops::Deref for Received<T> {
    type Target = Receiver<T>;

    fn deref(&self) -> &Receiver<T> {
        &self.receiver
    }
}

impl<T> Drop for Received<T> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.waker.wake();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn peer_message(incoming: Incoming) -> Option<Message> {
    match incoming {
        Incoming::Peer(message) => Some(message),
        Incoming::Client(_) => None,
    }
}

/// Client requests from `inbox`.
pub fn pump_clients(inbox: Inbox) -> Received<ClientRequest> {
    let pick = |incoming| match incoming {
        Incoming::Client(request) => Some(request),
        Incoming::Peer(_) => None,
    };
    pump(inbox, RECEIVED_CAPACITY, pick)
}

fn pump<T: Send + 'static>(
    mut inbox: Inbox,
    capacity: usize,
    pick: impl Fn(Incoming) -> Option<T> + Send + 'static,
) -> Received<T> {
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    let stop = Arc::new(AtomicBool::new(false));
    let waker = inbox.waker();
    let stopping = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        let mut batch = Vec::new();
        while !stopping.load(Ordering::SeqCst) {
            inbox
                .wait(Some(Duration::from_millis(50)), &mut batch)
                .unwrap();
            for mut item in batch.drain(..).filter_map(&pick) {
                // Waits while the test is slow to take messages (TCP pushes back meanwhile);
                // gives up once the test dropped the receiving side.
                while let Err(crossbeam_channel::SendTimeoutError::Timeout(back)) =
                    sender.send_timeout(item, Duration::from_millis(50))
                {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    item = back;
                }
            }
        }
    });
    Received {
        receiver,
        stop,
        waker,
        thread: Some(thread),
    }
}

/// A small message carrying `seq` in its match index.
pub fn ack(from: u64, to: u64, seq: u64) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        incarnation: Incarnation(1),
        body: MessageBody::AppendReply(AppendReply {
            result: AppendResult::Accepted {
                match_index: LogIndex(seq),
            },
            round: 0,
            repair_from: None,
        }),
    }
}

/// The sequence number `ack` put in a message.
pub fn seq_of(message: &Message) -> u64 {
    match message.body {
        MessageBody::AppendReply(AppendReply {
            result: AppendResult::Accepted { match_index },
            ..
        }) => match_index.0,
        ref other => panic!("not an ack: {other:?}"),
    }
}

/// An Append with one entry whose payload is derived from `seq`, so corruption shows.
pub fn append(from: u64, to: u64, seq: u64) -> Message {
    let payload: Vec<u8> = (0..64).map(|i| (seq.wrapping_mul(31) + i) as u8).collect();
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(2),
        incarnation: Incarnation(3),
        body: MessageBody::Append(Append {
            prev_index: LogIndex(seq),
            prev_term: Term(2),
            entries: vec![Entry {
                index: LogIndex(seq + 1),
                term: Term(2),
                kind: EntryKind::Normal,
                payload: Bytes::from(payload),
            }],
            leader_commit: LogIndex(seq),
            round: 0,
        }),
    }
}

/// A raw connection for sending hand-made bytes and reading what comes back.
pub struct RawClient {
    pub stream: TcpStream,
    decoder: FrameDecoder,
}

impl RawClient {
    pub fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        RawClient {
            stream,
            decoder: FrameDecoder::new(CLUSTER),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn finish_writing(&mut self) {
        self.stream.shutdown(Shutdown::Write).unwrap();
    }

    /// The next frame from the server, or `None` at the end of the stream.
    pub fn next_frame(&mut self) -> Option<Frame> {
        let mut chunk = [0; 4096];
        loop {
            if let Some(frame) = self.decoder.next_frame().unwrap() {
                return Some(frame);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(length) => self.decoder.feed(&chunk[..length]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(error) => panic!("read failed: {error}"),
            }
        }
    }

    /// Reads until a `Close` frame and returns its reason (skipping a `Welcome`).
    pub fn close_reason(&mut self) -> CloseReason {
        loop {
            let frame = self
                .next_frame()
                .expect("a close frame before the end of the stream");
            match frame.header.kind {
                FrameKind::Welcome => {}
                FrameKind::Close => return decode_close(&frame).expect("a known reason"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    pub fn expect_welcome(&mut self) {
        let frame = self.next_frame().expect("a welcome");
        assert_eq!(frame.header.kind, FrameKind::Welcome);
    }
}

/// A whole frame as bytes.
pub fn frame(kind: FrameKind, cluster: ClusterId, sender: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(&mut out, kind, cluster, sender, body).unwrap();
    out
}

/// A `Hello` frame.
pub fn hello(role: Role, cluster: ClusterId, sender: u64, receiver: u64) -> Vec<u8> {
    let body = Hello {
        role,
        sender,
        receiver,
    }
    .encode_body();
    frame(FrameKind::Hello, cluster, sender, &body)
}

/// Recomputes the header checksum after a test edited the header.
pub fn reseal_header(bytes: &mut [u8]) {
    let checksum = crc32fast::hash(&bytes[0..32]);
    bytes[32..36].copy_from_slice(&checksum.to_le_bytes());
}
