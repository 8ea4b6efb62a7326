//! Benchmark of the peer transport on loopback (run with `cargo bench -p alpo-net`): throughput
//! in messages/s and MiB/s of entry payload for 128 B and 4 KiB payloads, and ping-pong latency
//! percentiles compared with a bare TCP ping-pong of the same frame size, measured in the same
//! run. Each figure is the median of several runs. Bounded in count; it stops by itself.

#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "a benchmark fails loudly and reports floating-point rates"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use alpo_core::{
    Append, ClusterId, Entry, EntryKind, Incarnation, LogIndex, Message, MessageBody, NodeId, Term,
};
use std::collections::VecDeque;

use alpo_net::{Inbox, Incoming, PeerConfig, PeerTransport};
use bytes::Bytes;

const CLUSTER: ClusterId = ClusterId(1);
const TIMEOUT: Duration = Duration::from_secs(30);
const RUN_COUNT: usize = 5;
/// Messages in flight in the throughput runs: below the queue length, so nothing is dropped.
const WINDOW: u64 = 2048;
const CREDIT_STEP: u64 = 256;
const ROUND_TRIP_COUNT: usize = 20_000;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A node's inbox, waited on by the thread that handles its messages (as a node's event loop
/// does), with what one wait delivered beyond the message asked for.
struct Receiver {
    inbox: Inbox,
    arrived: Vec<Incoming>,
    ready: VecDeque<Message>,
}

impl Receiver {
    fn new(inbox: Inbox) -> Receiver {
        Receiver {
            inbox,
            arrived: Vec::new(),
            ready: VecDeque::new(),
        }
    }

    /// The next message, waiting up to `timeout` for it.
    fn recv_timeout(&mut self, timeout: Duration) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        while self.ready.is_empty() {
            let left = deadline.checked_duration_since(Instant::now())?;
            self.inbox
                .wait(Some(left), &mut self.arrived)
                .expect("inbox wait");
            for incoming in self.arrived.drain(..) {
                if let Incoming::Peer(message) = incoming {
                    self.ready.push_back(message);
                }
            }
        }
        self.ready.pop_front()
    }
}

fn pair() -> [(PeerTransport, Receiver); 2] {
    let listeners = [(); 2].map(|()| TcpListener::bind(loopback()).expect("bind"));
    let addrs = [0, 1].map(|i| listeners[i].local_addr().expect("address"));
    let mut listeners = listeners.into_iter();
    [1u64, 2].map(|id| {
        let other = if id == 1 { 2 } else { 1 };
        let peers = vec![(
            NodeId(other),
            addrs[usize::try_from(other - 1).expect("small")],
        )];
        let config = PeerConfig::new(CLUSTER, NodeId(id), loopback(), peers);
        let listener = listeners.next().expect("two listeners");
        let inbox = Inbox::new().expect("inbox");
        let transport =
            PeerTransport::start_with_listener(listener, config, &inbox).expect("start");
        (transport, Receiver::new(inbox))
    })
}

fn append(from: u64, to: u64, seq: u64, payload: &Bytes) -> Message {
    Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(1),
        incarnation: Incarnation(1),
        body: MessageBody::Append(Append {
            prev_index: LogIndex(seq),
            prev_term: Term(1),
            entries: vec![Entry {
                index: LogIndex(seq + 1),
                term: Term(1),
                kind: EntryKind::Normal,
                payload: payload.clone(),
            }],
            leader_commit: LogIndex(seq),
            round: 0,
        }),
    }
}

/// One throughput run: seconds to move `count` messages of `payload_bytes` from node 1 to 2.
fn throughput_run(count: u64, payload_bytes: usize) -> f64 {
    let [(one, _inbox_1), (two, mut inbox_2)] = pair();
    let payload = Bytes::from(vec![0xAB; payload_bytes]);
    let (credit_sender, credit) = crossbeam_channel::bounded(1024);
    // Warm the connection up so connecting is not measured.
    one.send(append(1, 2, 0, &payload));
    inbox_2.recv_timeout(TIMEOUT).expect("warm-up message");
    let started = Instant::now();
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut allowed = WINDOW;
            for seq in 0..count {
                while seq >= allowed {
                    allowed += credit.recv_timeout(TIMEOUT).expect("receiver stalled");
                }
                one.send(append(1, 2, seq, &payload));
            }
        });
        for received in 1..=count {
            inbox_2.recv_timeout(TIMEOUT).expect("message lost");
            if received % CREDIT_STEP == 0 {
                let _ = credit_sender.send(CREDIT_STEP);
            }
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(one.counters().messages_dropped_queue_full, 0);
    drop(two);
    seconds
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let position = (fraction * (sorted.len() - 1) as f64).round() as usize;
    sorted[position]
}

/// Round-trip times through two transports: node 2 echoes what node 1 sends.
fn transport_ping_pong(payload_bytes: usize) -> Vec<Duration> {
    let [(one, mut inbox_1), (two, mut inbox_2)] = pair();
    let payload = Bytes::from(vec![0xCD; payload_bytes]);
    let mut round_trips = Vec::with_capacity(ROUND_TRIP_COUNT);
    thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..ROUND_TRIP_COUNT + 100 {
                let Some(mut message) = inbox_2.recv_timeout(TIMEOUT) else {
                    return;
                };
                (message.from, message.to) = (message.to, message.from);
                two.send(message);
            }
        });
        for seq in 0..ROUND_TRIP_COUNT + 100 {
            let started = Instant::now();
            one.send(append(1, 2, u64::try_from(seq).expect("small"), &payload));
            inbox_1.recv_timeout(TIMEOUT).expect("echo");
            if 100 <= seq {
                round_trips.push(started.elapsed()); // The first 100 warm up.
            }
        }
    });
    round_trips
}

/// Round-trip times of a bare TCP ping-pong with `frame_bytes` each way, NODELAY, one thread
/// per side, blocking reads and writes.
fn bare_tcp_ping_pong(frame_bytes: usize) -> Vec<Duration> {
    let listener = TcpListener::bind(loopback()).expect("bind");
    let address = listener.local_addr().expect("address");
    let echo = thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buffer = vec![0; frame_bytes];
        while stream.read_exact(&mut buffer).is_ok() {
            stream.write_all(&buffer).expect("echo write");
        }
    });
    let mut stream = TcpStream::connect(address).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buffer = vec![0xEF; frame_bytes];
    let mut round_trips = Vec::with_capacity(ROUND_TRIP_COUNT);
    for round in 0..ROUND_TRIP_COUNT + 100 {
        let started = Instant::now();
        stream.write_all(&buffer).expect("write");
        stream.read_exact(&mut buffer).expect("read");
        if 100 <= round {
            round_trips.push(started.elapsed());
        }
    }
    drop(stream);
    echo.join().expect("echo thread");
    round_trips
}

fn report_throughput(payload_bytes: usize, count: u64) {
    let runs: Vec<f64> = (0..RUN_COUNT)
        .map(|_| throughput_run(count, payload_bytes))
        .collect();
    let seconds = median(runs);
    let messages_per_second = count as f64 / seconds;
    let mib_per_second = messages_per_second * payload_bytes as f64 / (1024.0 * 1024.0);
    println!(
        "throughput {payload_bytes:>5} B payload: {messages_per_second:>10.0} messages/s \
         {mib_per_second:>8.1} MiB/s (median of {RUN_COUNT} runs of {count} messages)"
    );
}

fn report_latency(payload_bytes: usize) {
    let frame_bytes = {
        let mut out = Vec::new();
        let message = append(1, 2, 0, &Bytes::from(vec![0; payload_bytes]));
        alpo_net::codec::encode_message(&message, CLUSTER, &mut out).expect("encode");
        out.len()
    };
    let mut transport_p50 = Vec::new();
    let mut bare_p50 = Vec::new();
    let mut transport_p99 = Vec::new();
    let mut bare_p99 = Vec::new();
    for _ in 0..RUN_COUNT {
        let mut transport = transport_ping_pong(payload_bytes);
        let mut bare = bare_tcp_ping_pong(frame_bytes);
        transport.sort();
        bare.sort();
        transport_p50.push(percentile(&transport, 0.5).as_secs_f64() * 1e6);
        transport_p99.push(percentile(&transport, 0.99).as_secs_f64() * 1e6);
        bare_p50.push(percentile(&bare, 0.5).as_secs_f64() * 1e6);
        bare_p99.push(percentile(&bare, 0.99).as_secs_f64() * 1e6);
    }
    let (transport_p50, bare_p50) = (median(transport_p50), median(bare_p50));
    let (transport_p99, bare_p99) = (median(transport_p99), median(bare_p99));
    println!(
        "ping-pong {payload_bytes:>5} B payload ({frame_bytes} B frame): transport p50 \
         {transport_p50:.1} us p99 {transport_p99:.1} us; bare TCP p50 {bare_p50:.1} us p99 \
         {bare_p99:.1} us; p50 ratio {:.2}x (medians of {RUN_COUNT} runs of {ROUND_TRIP_COUNT})",
        transport_p50 / bare_p50
    );
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|argument| argument == "--bench");
    if quick {
        throughput_run(1000, 128);
        println!("transport bench: smoke run passed (use `cargo bench` for figures)");
        return;
    }
    // `cargo bench -p alpo-net -- latency` measures only the 128 B ping-pong.
    if std::env::args().any(|argument| argument == "latency") {
        report_latency(128);
        return;
    }
    report_throughput(128, 200_000);
    report_throughput(4096, 50_000);
    report_latency(128);
    report_latency(4096);
}
