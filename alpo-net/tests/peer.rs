//! Behaviour tests of the peer transport on loopback: ordered delivery of many messages, a
//! connection cut mid-frame, every rejection reason with a well-behaved peer unaffected, identity
//! checks, and `send` never blocking on a dead peer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use alpo_core::{ClusterId, Message, NodeId};
use alpo_net::frame::{CLIENT_SENDER_ID, FrameKind, PROTOCOL_VERSION};
use alpo_net::handshake::{ANY_RECEIVER, Role};
use alpo_net::limits::FRAME_HEADER_BYTES;
use alpo_net::{CloseReason, PeerConfig, PeerTransport};
use common::*;
use crossbeam_channel::{Receiver, bounded};

/// Messages each node sends the other in `many_messages_arrive_in_order_without_loss`.
const MESSAGE_COUNT_PER_DIRECTION: u64 = 1_000_000;
/// Messages a sender may have in flight; below the queue length, so nothing is dropped.
const WINDOW: u64 = 2048;
/// The receiver grants credit back in steps of this many messages.
const CREDIT_STEP: u64 = 256;

fn encoded(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    alpo_net::codec::encode_message(message, CLUSTER, &mut out).unwrap();
    out
}

/// Sends `count` acks from `from` to `to`, never more than `WINDOW` ahead of the receiver.
fn paced_sender(transport: &PeerTransport, from: u64, to: u64, credit: &Receiver<u64>) {
    let mut allowed = WINDOW;
    for seq in 0..MESSAGE_COUNT_PER_DIRECTION {
        while seq >= allowed {
            allowed += credit.recv_timeout(TIMEOUT).expect("receiver stalled");
        }
        transport.send(ack(from, to, seq));
    }
}

/// Receives `count` acks and checks they arrive in order, granting credit as it goes.
fn ordered_receiver(inbox: &Receiver<Message>, from: u64, credit: &crossbeam_channel::Sender<u64>) {
    for expected in 0..MESSAGE_COUNT_PER_DIRECTION {
        let message = inbox
            .recv_timeout(TIMEOUT)
            .expect("message lost or link stalled");
        assert_eq!(message.from, NodeId(from));
        assert_eq!(seq_of(&message), expected, "out of order or lost");
        if (expected + 1) % CREDIT_STEP == 0 {
            // The sender may have finished and gone; credit is then not needed.
            let _ = credit.send(CREDIT_STEP);
        }
    }
}

#[test]
fn many_messages_arrive_in_order_without_loss() {
    let mut nodes = start_cluster(&[1, 2], |_| {});
    let (two, inbox_2) = nodes.pop().unwrap();
    let (one, inbox_1) = nodes.pop().unwrap();
    let (credit_to_1, credit_1) = bounded(1024);
    let (credit_to_2, credit_2) = bounded(1024);
    thread::scope(|scope| {
        scope.spawn(|| paced_sender(&one, 1, 2, &credit_1));
        scope.spawn(|| paced_sender(&two, 2, 1, &credit_2));
        scope.spawn(|| ordered_receiver(&inbox_2, 1, &credit_to_1));
        ordered_receiver(&inbox_1, 2, &credit_to_2);
    });
    for node in [&one, &two] {
        let counters = node.counters();
        assert_eq!(counters.messages_dropped_queue_full, 0);
        assert_eq!(counters.messages_dropped_link_lost, 0);
        assert_eq!(counters.rejections, 0);
        // Each node also sent and received one Hello and one Welcome.
        assert_eq!(counters.frames_received, MESSAGE_COUNT_PER_DIRECTION + 2);
        assert_frames_sent(node, MESSAGE_COUNT_PER_DIRECTION + 2);
    }
    one.shutdown();
    two.shutdown();
}

/// Asserts that `node` has counted exactly `expected` frames sent, once its writer has counted
/// its last write: a writer counts a batch after writing it, so the receiver may hold the frames
/// a moment before the count includes them.
fn assert_frames_sent(node: &PeerTransport, expected: u64) {
    let deadline = Instant::now() + TIMEOUT;
    while node.counters().frames_sent < expected && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(
        node.counters().frames_sent,
        expected,
        "{:?}",
        node.counters()
    );
}

/// Copies bytes from `source` to `target`; with a limit, stops after exactly that many bytes
/// and cuts both connections.
fn pipe(mut source: TcpStream, mut target: TcpStream, limit: Option<usize>) {
    let mut chunk = [0; 4096];
    let mut copied = 0;
    loop {
        let wanted = limit.map_or(chunk.len(), |limit| (limit - copied).min(chunk.len()));
        if wanted == 0 {
            let _ = source.shutdown(Shutdown::Both);
            let _ = target.shutdown(Shutdown::Both);
            return;
        }
        match source.read(&mut chunk[..wanted]) {
            Ok(0) | Err(_) => {
                let _ = target.shutdown(Shutdown::Both);
                return;
            }
            Ok(length) => {
                if target.write_all(&chunk[..length]).is_err() {
                    let _ = source.shutdown(Shutdown::Both);
                    return;
                }
                copied += length;
            }
        }
    }
}

/// A TCP proxy whose first connection is cut after `cut_after` bytes from dialler to listener;
/// later connections pass everything.
fn start_cutting_proxy(target: SocketAddr, cut_after: usize) -> SocketAddr {
    let listener = TcpListener::bind(loopback()).unwrap();
    let address = listener.local_addr().unwrap();
    thread::spawn(move || {
        for (connection, client) in listener.incoming().enumerate() {
            let Ok(client) = client else { return };
            let Ok(server) = TcpStream::connect(target) else {
                return;
            };
            let limit = (connection == 0).then_some(cut_after);
            let (client_read, server_write) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || pipe(client_read, server_write, limit));
            thread::spawn(move || pipe(server, client, None));
        }
    });
    address
}

#[test]
fn connection_cut_mid_frame_reconnects_and_delivers_only_whole_messages() {
    let listener_2 = TcpListener::bind(loopback()).unwrap();
    let address_2 = listener_2.local_addr().unwrap();
    let hello_bytes = FRAME_HEADER_BYTES + alpo_net::handshake::HELLO_BODY_BYTES;
    let frame_bytes = encoded(&append(1, 2, 0)).len();
    // Ten whole messages, then half of the eleventh.
    let cut_after = hello_bytes + 10 * frame_bytes + frame_bytes / 2;
    let proxy = start_cutting_proxy(address_2, cut_after);
    let listener_1 = TcpListener::bind(loopback()).unwrap();
    let address_1 = listener_1.local_addr().unwrap();
    let config_2 = PeerConfig::new(CLUSTER, NodeId(2), loopback(), vec![(NodeId(1), address_1)]);
    let (two, inbox_2) = start_peer(listener_2, config_2);
    // Node 1 reaches node 2 only through the proxy.
    let config_1 = PeerConfig::new(CLUSTER, NodeId(1), loopback(), vec![(NodeId(2), proxy)]);
    let (one, _inbox_1) = start_peer(listener_1, config_1);

    let deadline = Instant::now() + TIMEOUT;
    let mut received = Vec::new();
    let mut seq = 0;
    // Keep sending until messages sent after the cut arrive over the new connection.
    while received.last().is_none_or(|last| *last < 100) {
        assert!(
            Instant::now() < deadline,
            "no delivery after the cut; got {received:?}"
        );
        one.send(append(1, 2, seq));
        seq += 1;
        while let Ok(message) = inbox_2.recv_timeout(Duration::from_millis(1)) {
            let got = match &message.body {
                alpo_core::MessageBody::Append(append) => append.prev_index.0,
                other => panic!("unexpected {other:?}"),
            };
            assert_eq!(message, append(1, 2, got), "corrupt message delivered");
            received.push(got);
        }
    }
    assert!(
        received.windows(2).all(|pair| pair[0] < pair[1]),
        "out of order: {received:?}"
    );
    assert_eq!(&received[..10], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    let counters = two.counters();
    assert_eq!(
        counters.rejections_for(CloseReason::TruncatedFrame),
        1,
        "{counters:?}"
    );
    assert!(one.counters().reconnects >= 1);
}

/// One bad connection: what the raw client sends, whether it then stops writing, and the reason
/// the listener must give.
struct BadCase {
    name: &'static str,
    bytes: Vec<u8>,
    finish_writing: bool,
    reason: CloseReason,
}

#[allow(clippy::too_many_lines, reason = "one table of cases")]
fn bad_cases() -> Vec<BadCase> {
    let good_hello = hello(Role::Peer, CLUSTER, 2, 1);
    let after_hello = |bytes: Vec<u8>| [good_hello.clone(), bytes].concat();
    let mut oversized = frame(FrameKind::VoteRequest, CLUSTER, 2, &[]);
    oversized[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal_header(&mut oversized);
    let mut bad_header_crc = encoded(&ack(2, 1, 5));
    bad_header_crc[20] ^= 0x01;
    let mut bad_body_crc = encoded(&ack(2, 1, 5));
    let last = bad_body_crc.len() - 1;
    bad_body_crc[last] ^= 0x80;
    let mut new_version = hello(Role::Peer, CLUSTER, 2, 1);
    new_version[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
    reseal_header(&mut new_version);
    let whole = encoded(&append(2, 1, 7));
    let half_frame = whole[..whole.len() / 2].to_vec();
    let malformed = frame(FrameKind::VoteRequest, CLUSTER, 2, &[0; 5]);
    let case = |name, bytes, reason| BadCase {
        name,
        bytes,
        finish_writing: false,
        reason,
    };
    vec![
        case(
            "garbage",
            b"GET / HTTP/1.1\r\nHost: alpo\r\n\r\n and more".to_vec(),
            CloseReason::BadMagic,
        ),
        case(
            "oversized length",
            after_hello(oversized),
            CloseReason::FrameTooLarge,
        ),
        case(
            "bad header crc",
            after_hello(bad_header_crc),
            CloseReason::HeaderChecksum,
        ),
        case(
            "bad body crc",
            after_hello(bad_body_crc),
            CloseReason::BodyChecksum,
        ),
        BadCase {
            name: "truncated frame",
            bytes: after_hello(half_frame),
            finish_writing: true,
            reason: CloseReason::TruncatedFrame,
        },
        case(
            "wrong cluster id",
            hello(Role::Peer, ClusterId(666), 2, 1),
            CloseReason::WrongClusterId,
        ),
        case(
            "unknown node id",
            hello(Role::Peer, CLUSTER, 9, 1),
            CloseReason::UnknownNode,
        ),
        case(
            "wrong receiver",
            hello(Role::Peer, CLUSTER, 2, 3),
            CloseReason::WrongReceiver,
        ),
        case(
            "unsupported version",
            new_version,
            CloseReason::VersionUnsupported,
        ),
        case(
            "client on the peer listener",
            hello(Role::Client, CLUSTER, CLIENT_SENDER_ID, ANY_RECEIVER),
            CloseReason::WrongRole,
        ),
        case(
            "no hello",
            encoded(&ack(2, 1, 1)),
            CloseReason::HandshakeMissing,
        ),
        case(
            "client frame on a peer connection",
            after_hello(frame(FrameKind::ClientRequest, CLUSTER, 2, b"get")),
            CloseReason::KindNotAllowed,
        ),
        case(
            "malformed body",
            after_hello(malformed),
            CloseReason::MalformedBody,
        ),
    ]
}

#[test]
fn bad_input_closes_with_the_named_reason_and_other_peers_are_unaffected() {
    let mut nodes = start_cluster(&[1, 2], |_| {});
    let (two, _inbox_2) = nodes.pop().unwrap();
    let (one, inbox_1) = nodes.pop().unwrap();
    let mut seq = 0;
    let check_peer_unaffected = |seq: &mut u64| {
        two.send(ack(2, 1, *seq));
        let message = inbox_1
            .recv_timeout(TIMEOUT)
            .expect("well-behaved peer affected");
        assert_eq!(seq_of(&message), *seq);
        *seq += 1;
    };
    check_peer_unaffected(&mut seq);
    for case in bad_cases() {
        let before = one.counters().rejections_for(case.reason);
        let mut raw = RawClient::connect(one.local_addr());
        raw.send(&case.bytes);
        if case.finish_writing {
            raw.finish_writing();
        }
        assert_eq!(raw.close_reason(), case.reason, "case {}", case.name);
        assert!(
            raw.next_frame().is_none(),
            "case {}: connection not closed",
            case.name
        );
        let after = one.counters().rejections_for(case.reason);
        assert_eq!(
            after,
            before + 1,
            "case {}: rejection not counted",
            case.name
        );
        check_peer_unaffected(&mut seq);
    }
    assert_eq!(one.counters().rejections, bad_cases().len() as u64);
    assert_eq!(
        two.counters().reconnects,
        0,
        "the good peer's connection was disturbed"
    );
}

#[test]
fn messages_not_matching_the_handshake_identity_are_dropped_and_counted() {
    let mut nodes = start_cluster(&[1, 2], |_| {});
    let (one, inbox_1) = nodes.remove(0);
    let mut raw = RawClient::connect(one.local_addr());
    raw.send(&hello(Role::Peer, CLUSTER, 2, 1));
    raw.expect_welcome();
    raw.send(&encoded(&ack(2, 3, 1))); // For node 3, not this node.
    raw.send(&encoded(&ack(3, 1, 2))); // Sender 3 on node 2's connection.
    raw.send(&encoded(&ack(2, 1, 3))); // Fine.
    let message = inbox_1.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(seq_of(&message), 3);
    assert_eq!(one.counters().messages_dropped_identity, 2);
    assert!(inbox_1.try_recv().is_err());
}

#[test]
fn send_never_blocks_on_a_dead_peer_and_drops_the_oldest() {
    // A port with nothing listening: bind, learn the port, close.
    let dead = TcpListener::bind(loopback()).unwrap().local_addr().unwrap();
    let mut config = PeerConfig::new(CLUSTER, NodeId(1), loopback(), vec![(NodeId(2), dead)]);
    config.peer_queue_message_count_max = 100;
    let (one, _inbox) = start_peer_on(config);
    for seq in 0..10_000 {
        one.send(ack(1, 2, seq));
    }
    one.send(ack(1, 9, 0)); // Unknown node.
    one.send(ack(1, 1, 0)); // This node.
    let counters = one.counters();
    assert_eq!(counters.messages_dropped_queue_full, 9_900);
    assert_eq!(counters.messages_dropped_unroutable, 2);
    one.shutdown(); // Joins the writer, which is backing off.
}

#[test]
fn a_restarted_peer_is_redialled() {
    let listener_2 = TcpListener::bind(loopback()).unwrap();
    let address_2 = listener_2.local_addr().unwrap();
    let peers_2 = vec![(NodeId(1), loopback())];
    let config_2 = PeerConfig::new(CLUSTER, NodeId(2), loopback(), peers_2.clone());
    let (two, inbox_2) = start_peer(listener_2, config_2);
    let config_1 = PeerConfig::new(CLUSTER, NodeId(1), loopback(), vec![(NodeId(2), address_2)]);
    let (one, _inbox_1) = start_peer_on(config_1);
    one.send(ack(1, 2, 0));
    assert_eq!(seq_of(&inbox_2.recv_timeout(TIMEOUT).unwrap()), 0);
    two.shutdown();
    // Restart node 2 on the same address; node 1's writer must notice and redial.
    let config_2 = PeerConfig::new(CLUSTER, NodeId(2), address_2, peers_2);
    let (two, inbox_2) = start_peer_on(config_2);
    let deadline = Instant::now() + TIMEOUT;
    let mut seq = 1;
    // Early messages die with the old connection (the protocol tolerates loss): keep sending.
    while inbox_2.recv_timeout(Duration::from_millis(5)).is_err() {
        assert!(Instant::now() < deadline, "never redialled");
        one.send(ack(1, 2, seq));
        seq += 1;
    }
    assert!(one.counters().reconnects >= 1);
    drop(two);
}

#[test]
fn connections_beyond_the_limit_are_refused_by_name() {
    let mut nodes = start_cluster(&[1, 2, 3], |config| config.inbound_connection_count_max = 2);
    let (one, inbox_1) = nodes.remove(0);
    // Nodes 2 and 3 hold the two allowed inbound connections once their messages arrive.
    for (from, _) in [(2, ()), (3, ())] {
        let (transport, _) = &nodes[from as usize - 2];
        transport.send(ack(from, 1, from));
        assert_eq!(seq_of(&inbox_1.recv_timeout(TIMEOUT).unwrap()), from);
    }
    let mut third = RawClient::connect(one.local_addr());
    third.send(&hello(Role::Peer, CLUSTER, 2, 1));
    assert_eq!(third.close_reason(), CloseReason::TooManyConnections);
    assert_eq!(
        one.counters()
            .rejections_for(CloseReason::TooManyConnections),
        1
    );
}

/// An Append whose one entry is `bytes` long and starts with `seq`, so a torn or misplaced frame
/// shows.
fn big_append(seq: u64, bytes: usize) -> Message {
    let mut message = append(1, 2, seq);
    if let alpo_core::MessageBody::Append(body) = &mut message.body {
        let mut payload = vec![0x5A; bytes];
        payload[..8].copy_from_slice(&seq.to_le_bytes());
        body.entries[0].payload = bytes::Bytes::from(payload);
    }
    message
}

#[test]
fn a_stalled_receiver_gets_whole_frames_in_order_after_direct_writes_back_up() {
    // Node 2 buffers one message and then stops reading until the test drains it, so node 1's
    // socket fills: direct writes from `send` hit WouldBlock and partial writes, fall back to the
    // queue, and the queue drops its oldest.
    let mut nodes = start_cluster_with_capacity(&[1, 2], 1, |config| {
        config.peer_queue_message_count_max = 16;
    });
    let (two, inbox_2) = nodes.pop().unwrap();
    let (one, inbox_1) = nodes.pop().unwrap();
    // Node 2's connection to node 1 is up (so node 1 has sent its Welcome, counted below).
    two.send(ack(2, 1, 0));
    assert_eq!(seq_of(&inbox_1.recv_timeout(TIMEOUT).unwrap()), 0);
    const BYTES: usize = 128 * 1024;
    const SENT: u64 = 400;
    one.send(big_append(0, BYTES));
    assert_eq!(inbox_2.recv_timeout(TIMEOUT).unwrap(), big_append(0, BYTES));
    for seq in 1..SENT {
        one.send(big_append(seq, BYTES)); // Never blocks, however full the socket is.
    }
    let mut received = vec![0];
    while received.last() != Some(&(SENT - 1)) {
        let message = inbox_2.recv_timeout(TIMEOUT).unwrap();
        let seq = match &message.body {
            alpo_core::MessageBody::Append(append) => append.prev_index.0,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(message, big_append(seq, BYTES), "corrupt message delivered");
        received.push(seq);
    }
    assert!(
        received.windows(2).all(|pair| pair[0] < pair[1]),
        "out of order: {received:?}"
    );
    let (sender, receiver) = (one.counters(), two.counters());
    assert!(
        sender.messages_dropped_queue_full > 0,
        "the socket never backed up"
    );
    let delivered = u64::try_from(received.len()).unwrap();
    assert_eq!(
        sender.messages_dropped_queue_full + delivered,
        SENT,
        "{sender:?}"
    );
    assert_eq!(sender.messages_dropped_link_lost, 0);
    // Node 1 also sent a Hello (dialling node 2) and a Welcome (to node 2's dial).
    assert_frames_sent(&one, delivered + 2);
    assert_eq!(receiver.rejections, 0, "{receiver:?}");
    one.shutdown();
    two.shutdown();
}

/// Sends acks from `from` to `to` until one arrives (early ones may die while the link dials).
/// Only acks numbered from `base` count, so that a leftover of an earlier phase does not.
fn send_until_received(
    transport: &PeerTransport,
    inbox: &Received<Message>,
    (from, to): (u64, u64),
    base: u64,
) {
    let deadline = Instant::now() + TIMEOUT;
    let mut seq = base;
    loop {
        transport.send(ack(from, to, seq));
        if let Ok(message) = inbox.recv_timeout(Duration::from_millis(20)) {
            assert_eq!(message.from, NodeId(from));
            if seq_of(&message) >= base {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{from} never reached {to}");
        seq += 1;
    }
}

/// Issue 12: the peer set follows the configuration. A peer added by `set_peers` is dialled
/// and may dial in; a removed one gets nothing more (dropped as unroutable) and is no longer
/// listed; adding it back links it again.
#[test]
fn set_peers_adds_and_removes_links() {
    let listener_1 = TcpListener::bind(loopback()).unwrap();
    let address_1 = listener_1.local_addr().unwrap();
    let listener_2 = TcpListener::bind(loopback()).unwrap();
    let address_2 = listener_2.local_addr().unwrap();
    // Node 1 starts knowing nobody (a server added later, rule M11); node 2 knows node 1.
    let (one, inbox_1) = start_peer(
        listener_1,
        PeerConfig::new(CLUSTER, NodeId(1), loopback(), vec![]),
    );
    let config_2 = PeerConfig::new(CLUSTER, NodeId(2), loopback(), vec![(NodeId(1), address_1)]);
    let (two, inbox_2) = start_peer(listener_2, config_2);
    one.send(ack(1, 2, 0));
    assert_eq!(one.counters().messages_dropped_unroutable, 1);
    assert!(
        one.set_peers(&[(NodeId(1), address_2)]).is_err(),
        "itself as a peer"
    );

    one.set_peers(&[(NodeId(2), address_2)]).unwrap();
    assert_eq!(one.peers(), vec![(NodeId(2), address_2)]);
    send_until_received(&one, &inbox_2, (1, 2), 0);
    // Node 2's writer was refused while node 1 did not know it; it redials and is accepted now.
    send_until_received(&two, &inbox_1, (2, 1), 0);

    one.set_peers(&[]).unwrap();
    assert!(one.peers().is_empty());
    let dropped = one.counters().messages_dropped_unroutable;
    one.send(ack(1, 2, 1_000));
    assert_eq!(one.counters().messages_dropped_unroutable, dropped + 1);

    one.set_peers(&[(NodeId(2), address_2)]).unwrap();
    send_until_received(&one, &inbox_2, (1, 2), 1_000_000);
    drop((one, two));
}
