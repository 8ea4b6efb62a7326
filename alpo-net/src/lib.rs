//! Thread-based TCP transport for ALPO: framing, handshake, codec and per-peer connections.
//!
//! Two services, one framing (`docs/formats.md`):
//!
//! - [`PeerTransport`] carries `alpo_core::Message`s between servers. Each node dials every peer
//!   and uses that connection only to send; it accepts inbound connections only to receive.
//!   [`PeerTransport::send`] never blocks (a full per-peer queue drops its oldest message and
//!   counts it).
//! - [`ClientListener`] (server side) and [`ClientConnection`] (blocking client side) carry
//!   opaque request and response bodies on a separate listener; alpo-node defines the bodies.
//! - [`Inbox`] is where both deliver: the node's own thread waits on it, and it reads every
//!   established inbound connection on that thread (epoll, through mio), so an arriving message
//!   wakes one thread, the one that handles it. [`InboxWaker`] lets other threads end a wait.
//!
//! Architecture invariants: alpo-net starts threads, never an async runtime; every queue is
//! bounded ([`limits`]); nothing that arrives from the network can panic a thread: the pure
//! [`frame::FrameDecoder`] and the [`codec`] turn any bytes into a value or a [`Rejection`], and a
//! rejected connection is closed with a [`CloseReason`] that is logged with the peer address and
//! counted ([`Counters`]), while the listener goes on serving everyone else. alpo-net knows the
//! core's message types and nothing of its rules.
//!
//! # Example
//!
//! Two nodes on loopback exchange a heartbeat, and a client talks to a client listener:
//!
//! ```
//! use std::net::TcpListener;
//! use std::time::Duration;
//!
//! use alpo_core::{Append, ClusterId, Incarnation, LogIndex, Message, MessageBody, NodeId, Term};
//! use alpo_net::{
//!     ClientConnection, ClientListener, ClientListenerConfig, Inbox, Incoming, PeerConfig,
//!     PeerTransport,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cluster = ClusterId(7);
//! let any_port = "127.0.0.1:0".parse()?;
//! // Bind both listeners first (port 0), so each node can be told the other's address.
//! let (listener_1, listener_2) = (TcpListener::bind(any_port)?, TcpListener::bind(any_port)?);
//! let peers_of_1 = vec![(NodeId(2), listener_2.local_addr()?)];
//! let peers_of_2 = vec![(NodeId(1), listener_1.local_addr()?)];
//! let config_1 = PeerConfig::new(cluster, NodeId(1), any_port, peers_of_1);
//! let config_2 = PeerConfig::new(cluster, NodeId(2), any_port, peers_of_2);
//! // Each node's thread reads its connections through its inbox.
//! let (inbox_1, mut inbox_2) = (Inbox::new()?, Inbox::new()?);
//! let node_1 = PeerTransport::start_with_listener(listener_1, config_1, &inbox_1)?;
//! let node_2 = PeerTransport::start_with_listener(listener_2, config_2, &inbox_2)?;
//!
//! let heartbeat = Message {
//!     from: NodeId(1),
//!     to: NodeId(2),
//!     term: Term(3),
//!     incarnation: Incarnation(1),
//!     body: MessageBody::Append(Append {
//!         prev_index: LogIndex(0),
//!         prev_term: Term(0),
//!         entries: Vec::new(),
//!         leader_commit: LogIndex(0),
//!         round: 0,
//!     }),
//! };
//! node_1.send(heartbeat.clone()); // Never blocks.
//! let timeout = Duration::from_secs(10);
//! let mut arrived = Vec::new();
//! while arrived.is_empty() {
//!     inbox_2.wait(Some(timeout), &mut arrived)?;
//! }
//! assert_eq!(arrived.pop(), Some(Incoming::Peer(heartbeat)));
//! assert_eq!(node_1.counters().messages_dropped_queue_full, 0);
//!
//! // The client protocol: opaque bodies on a separate listener, into the same inbox.
//! let config = ClientListenerConfig::new(cluster, NodeId(2), any_port);
//! let clients = ClientListener::start(config, &inbox_2)?;
//! let mut client = ClientConnection::connect(clients.local_addr(), cluster, timeout)?;
//! client.send(b"get x")?;
//! while arrived.is_empty() {
//!     inbox_2.wait(Some(timeout), &mut arrived)?;
//! }
//! let Some(Incoming::Client(request)) = arrived.pop() else {
//!     panic!("expected a client request");
//! };
//! assert_eq!(&request.body[..], b"get x");
//! clients.reply(request.connection, bytes::Bytes::from_static(b"x = 1"));
//! assert_eq!(&client.recv(timeout)?[..], b"x = 1");
//!
//! node_1.shutdown(); // Joins its threads; dropping does the same.
//! node_2.shutdown();
//! # Ok(())
//! # }
//! ```
//!
//! Module map: [`frame`] (header and pure decoder), [`codec`] (messages to bodies),
//! [`handshake`] (`Hello`, `Welcome`, `Close`), `inbox` ([`Inbox`]), `peer`
//! ([`PeerTransport`]), `client` ([`ClientListener`], [`ClientConnection`]), [`limits`], `error`
//! ([`Error`], [`Rejection`], [`CloseReason`]), `counters` ([`Counters`]), `stream`
//! ([`Stream`]: plain TCP or TLS), [`tls`] ([`TlsConfig`], the TLS handshakes and certificate
//! names, issue 16), [`certs`] (development certificates).

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod backoff;
pub mod certs;
mod client;
pub mod codec;
mod conn;
mod counters;
mod error;
pub mod frame;
pub mod handshake;
mod inbox;
mod kind;
pub mod limits;
mod link;
mod peer;
mod queue;
mod stream;
pub mod tls;

pub use client::{ClientConnection, ClientListener, ClientListenerConfig};
pub use counters::Counters;
pub use error::{CloseReason, Error, Rejection};
pub use inbox::{ClientRequest, ConnectionId, Inbox, InboxWaker, Incoming};
pub use peer::{PeerConfig, PeerTransport};
pub use stream::Stream;
pub use tls::{TlsConfig, TlsPaths};

// Handles the node keeps and moves between threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<PeerTransport>();
    assert_send_sync::<ClientListener>();
    assert_send_sync::<Counters>();
    assert_send_sync::<Error>();
};
