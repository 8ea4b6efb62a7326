//! Behaviour tests of the client protocol's carriage: request and response bodies between
//! `ClientConnection`s and a `ClientListener`, and the named rejections that keep peer and client
//! traffic apart.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

mod common;

use std::thread;

use alpo_core::{ClusterId, NodeId};
use alpo_net::frame::{CLIENT_SENDER_ID, FrameKind};
use alpo_net::handshake::{ANY_RECEIVER, Role};
use alpo_net::{
    ClientConnection, ClientListener, ClientListenerConfig, CloseReason, ConnectionId, Error, Inbox,
};
use bytes::Bytes;
use common::*;

fn start_listener() -> (ClientListener, Received<alpo_net::ClientRequest>) {
    let inbox = Inbox::new().unwrap();
    let config = ClientListenerConfig::new(CLUSTER, NodeId(4), loopback());
    let listener = ClientListener::start(config, &inbox).unwrap();
    (listener, pump_clients(inbox))
}

#[test]
fn clients_get_their_own_replies_in_order() {
    let (listener, requests) = start_listener();
    let address = listener.local_addr();
    thread::scope(|scope| {
        // The "node": echoes every request body back, upper-cased.
        scope.spawn(|| {
            for _ in 0..3 * 200 {
                let request = requests.recv_timeout(TIMEOUT).unwrap();
                let reply = Bytes::from(request.body.to_ascii_uppercase());
                listener.reply(request.connection, reply);
            }
        });
        for client in 0..3 {
            scope.spawn(move || {
                let mut connection = ClientConnection::connect(address, CLUSTER, TIMEOUT).unwrap();
                assert_eq!(connection.server_node_id(), NodeId(4));
                for request in 0..200 {
                    let body = format!("client {client} request {request}");
                    connection.send(body.as_bytes()).unwrap();
                    let reply = connection.recv(TIMEOUT).unwrap();
                    assert_eq!(&reply[..], body.to_ascii_uppercase().as_bytes());
                }
            });
        }
    });
    let counters = listener.counters();
    assert_eq!(counters.connections_accepted, 3);
    assert_eq!(counters.rejections, 0);
    assert_eq!(counters.messages_dropped_unroutable, 0);
}

#[test]
fn a_reply_to_a_gone_connection_is_dropped_and_counted() {
    let (listener, _requests) = start_listener();
    listener.reply(ConnectionId(12345), Bytes::from_static(b"nobody"));
    assert_eq!(listener.counters().messages_dropped_unroutable, 1);
}

#[test]
fn wrong_cluster_is_refused_with_both_ids_named() {
    let (listener, _requests) = start_listener();
    let error =
        ClientConnection::connect(listener.local_addr(), ClusterId(9), TIMEOUT).unwrap_err();
    // The listener answers with a Close frame of its own cluster, which the client names.
    match error {
        Error::Rejected { rejection, .. } => {
            assert_eq!(
                rejection,
                alpo_net::Rejection::WrongClusterId {
                    expected: ClusterId(9),
                    found: CLUSTER,
                }
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert_eq!(
        listener
            .counters()
            .rejections_for(CloseReason::WrongClusterId),
        1
    );
}

#[test]
fn peer_traffic_on_the_client_listener_is_rejected_and_clients_are_unaffected() {
    let (listener, requests) = start_listener();
    let address = listener.local_addr();
    let mut good = ClientConnection::connect(address, CLUSTER, TIMEOUT).unwrap();

    let mut peer_hello = RawClient::connect(address);
    peer_hello.send(&hello(Role::Peer, CLUSTER, 2, 4));
    assert_eq!(peer_hello.close_reason(), CloseReason::WrongRole);

    let mut peer_frame = RawClient::connect(address);
    peer_frame.send(&hello(
        Role::Client,
        CLUSTER,
        CLIENT_SENDER_ID,
        ANY_RECEIVER,
    ));
    peer_frame.expect_welcome();
    let mut message = Vec::new();
    alpo_net::codec::encode_message(&ack(2, 4, 1), CLUSTER, &mut message).unwrap();
    peer_frame.send(&message);
    assert_eq!(peer_frame.close_reason(), CloseReason::KindNotAllowed);

    let mut garbage = RawClient::connect(address);
    garbage.send(&[0xFF; 64]);
    assert_eq!(garbage.close_reason(), CloseReason::BadMagic);

    let mut response_from_client = RawClient::connect(address);
    response_from_client.send(&hello(
        Role::Client,
        CLUSTER,
        CLIENT_SENDER_ID,
        ANY_RECEIVER,
    ));
    response_from_client.send(&frame(
        FrameKind::ClientResponse,
        CLUSTER,
        CLIENT_SENDER_ID,
        b"x",
    ));
    assert_eq!(
        response_from_client.close_reason(),
        CloseReason::KindNotAllowed
    );

    good.send(b"still here").unwrap();
    let request = requests.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(&request.body[..], b"still here");
    listener.reply(request.connection, Bytes::from_static(b"yes"));
    assert_eq!(&good.recv(TIMEOUT).unwrap()[..], b"yes");
    assert_eq!(listener.counters().rejections, 4);
}

#[test]
fn recv_times_out_and_a_closed_listener_is_reported() {
    let (listener, _requests) = start_listener();
    let mut client = ClientConnection::connect(listener.local_addr(), CLUSTER, TIMEOUT).unwrap();
    let error = client
        .recv(std::time::Duration::from_millis(20))
        .unwrap_err();
    assert!(
        matches!(error, Error::Timeout { waited_ms: 20, .. }),
        "{error}"
    );
    listener.shutdown();
    let error = client.recv(TIMEOUT).unwrap_err();
    assert!(
        matches!(error, Error::Closed { .. } | Error::Io { .. }),
        "{error}"
    );
}

#[test]
fn a_listener_bound_by_the_caller_serves_clients_on_its_address() {
    let bound = std::net::TcpListener::bind(loopback()).unwrap();
    let address = bound.local_addr().unwrap();
    // `listen` is ignored: the listener the caller bound is the one served.
    let config = ClientListenerConfig::new(CLUSTER, NodeId(5), "127.0.0.1:1".parse().unwrap());
    let inbox = Inbox::new().unwrap();
    let listener = ClientListener::start_with_listener(bound, config, &inbox).unwrap();
    let requests = pump_clients(inbox);
    assert_eq!(listener.local_addr(), address);
    let mut client = ClientConnection::connect(address, CLUSTER, TIMEOUT).unwrap();
    assert_eq!(client.server_node_id(), NodeId(5));
    client.send(b"ping").unwrap();
    let request = requests.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(&request.body[..], b"ping");
    listener.reply(request.connection, Bytes::from_static(b"pong"));
    assert_eq!(&client.recv(TIMEOUT).unwrap()[..], b"pong");
    listener.shutdown();
}

#[test]
fn a_caller_bound_listener_with_a_zero_reply_buffer_is_refused() {
    let bound = std::net::TcpListener::bind(loopback()).unwrap();
    let mut config = ClientListenerConfig::new(CLUSTER, NodeId(5), loopback());
    config.reply_buffer_bytes_max = 0;
    let inbox = Inbox::new().unwrap();
    let error = ClientListener::start_with_listener(bound, config, &inbox).unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error}");
}

#[test]
fn replies_to_a_client_that_stops_reading_wait_then_are_dropped_and_counted() {
    let inbox = Inbox::new().unwrap();
    let mut config = ClientListenerConfig::new(CLUSTER, NodeId(4), loopback());
    config.reply_buffer_bytes_max = 64 * 1024;
    let listener = ClientListener::start(config, &inbox).unwrap();
    let requests = pump_clients(inbox);
    let mut stalled = ClientConnection::connect(listener.local_addr(), CLUSTER, TIMEOUT).unwrap();
    stalled.send(b"first").unwrap();
    let request = requests.recv_timeout(TIMEOUT).unwrap();
    // 32 MiB of replies to a client that reads nothing yet: the sockets take a few MiB, the
    // reply buffer 64 KiB more, and `reply` drops (and counts) the rest instead of blocking.
    const SENT: u64 = 2000;
    let body = Bytes::from(vec![7u8; 16 * 1024]);
    for _ in 0..SENT {
        listener.reply(request.connection, body.clone());
    }
    let dropped = listener.counters().messages_dropped_queue_full;
    assert!(dropped > 0, "{:?}", listener.counters());
    // Another client is served meanwhile.
    let mut other = ClientConnection::connect(listener.local_addr(), CLUSTER, TIMEOUT).unwrap();
    other.send(b"second").unwrap();
    let second = requests.recv_timeout(TIMEOUT).unwrap();
    listener.reply(second.connection, Bytes::from_static(b"ok"));
    assert_eq!(&other.recv(TIMEOUT).unwrap()[..], b"ok");
    // Reading at last, the stalled client gets every reply that was not dropped, whole: the
    // inbox writes the buffered rest as the socket drains.
    let mut received = 0;
    while let Ok(reply) = stalled.recv(std::time::Duration::from_secs(2)) {
        assert_eq!(reply, body);
        received += 1;
    }
    assert_eq!(received + dropped, SENT, "{:?}", listener.counters());
    listener.shutdown();
}

#[test]
fn connections_end_when_the_inbox_is_dropped() {
    let inbox = Inbox::new().unwrap();
    let config = ClientListenerConfig::new(CLUSTER, NodeId(4), loopback());
    let listener = ClientListener::start(config, &inbox).unwrap();
    let requests = pump_clients(inbox);
    let mut client = ClientConnection::connect(listener.local_addr(), CLUSTER, TIMEOUT).unwrap();
    client.send(b"x").unwrap();
    requests.recv_timeout(TIMEOUT).unwrap();
    // The node's thread is gone (its inbox with it): the client hears the end at once instead
    // of waiting out its timeout.
    drop(requests);
    let error = client.recv(TIMEOUT).unwrap_err();
    assert!(!matches!(error, Error::Timeout { .. }), "{error}");
    // So does a client that arrives afterwards, right after its handshake.
    let mut late = ClientConnection::connect(listener.local_addr(), CLUSTER, TIMEOUT).unwrap();
    let error = late.recv(TIMEOUT).unwrap_err();
    assert!(!matches!(error, Error::Timeout { .. }), "{error}");
    listener.shutdown();
}

#[test]
fn one_wait_reads_a_bounded_amount_from_a_flooding_connection_and_others_get_their_turn() {
    use alpo_net::Incoming;
    use alpo_net::limits::INBOX_READ_BYTES_MAX;
    let mut inbox = Inbox::new().unwrap();
    let config = ClientListenerConfig::new(CLUSTER, NodeId(4), loopback());
    let listener = ClientListener::start(config, &inbox).unwrap();
    let address = listener.local_addr();
    let mut flood = ClientConnection::connect(address, CLUSTER, TIMEOUT).unwrap();
    let mut other = ClientConnection::connect(address, CLUSTER, TIMEOUT).unwrap();
    const BODY: usize = 4096;
    const FLOOD: usize = 2048; // 8 MiB of requests
    let body = vec![b'f'; BODY];
    let mut waits: Vec<(usize, bool)> = Vec::new(); // (flood requests, other's request) per wait
    let mut arrived = Vec::new();
    thread::scope(|scope| {
        scope.spawn(|| {
            for _ in 0..FLOOD {
                flood.send(&body).unwrap();
            }
        });
        other.send(b"me too").unwrap();
        // Let the flood fill the socket buffers (megabytes on loopback) before the first wait
        // admits the connections, so an unbounded read would take it all at once.
        thread::sleep(std::time::Duration::from_millis(300));
        let (mut flood_seen, mut other_seen) = (0, false);
        while flood_seen < FLOOD || !other_seen {
            arrived.clear();
            inbox.wait(Some(TIMEOUT), &mut arrived).unwrap();
            let mut this_wait = (0, false);
            for incoming in &arrived {
                let Incoming::Client(request) = incoming else {
                    panic!("{incoming:?}")
                };
                if request.body.len() == BODY {
                    this_wait.0 += 1;
                } else {
                    this_wait.1 = true;
                }
            }
            flood_seen += this_wait.0;
            other_seen |= this_wait.1;
            waits.push(this_wait);
        }
    });
    // A wait takes at most the budget from one connection, plus one read and the frames its
    // decoder held from before: never the whole flood.
    let frame = BODY + alpo_net::limits::FRAME_HEADER_BYTES;
    let most = (INBOX_READ_BYTES_MAX + 2 * alpo_net::limits::READ_CHUNK_BYTES) / frame + 1;
    assert!(
        waits.iter().all(|(flood, _)| *flood <= most),
        "more than {most} requests of one connection in one wait: {waits:?}"
    );
    assert!(1 < waits.iter().filter(|(flood, _)| 0 < *flood).count());
    // The quiet client's request came in one of the first waits, not after the flood.
    let other_at = waits.iter().position(|(_, other)| *other).unwrap();
    assert!(other_at <= 2, "{waits:?}");
    listener.shutdown();
}
