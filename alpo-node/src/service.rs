//! The seam between the client transport and the node's threads: a connection id, an incoming
//! request, and a way to answer it from any thread.
//!
//! Invariants: a connection id names one client connection for its lifetime; answering a
//! connection that has closed is not an error (the client is gone and will retry elsewhere);
//! answering never blocks (alpo-net queues the reply or drops and counts it).

use bytes::Bytes;

pub(crate) use alpo_net::{ClientRequest as IncomingRequest, ConnectionId};

/// Sends an answer to a client connection; never blocks on the network.
pub(crate) trait Replier: Send + Sync + 'static {
    fn reply(&self, connection: ConnectionId, body: Bytes);
}

impl Replier for alpo_net::ClientListener {
    fn reply(&self, connection: ConnectionId, body: Bytes) {
        alpo_net::ClientListener::reply(self, connection, body);
    }
}
