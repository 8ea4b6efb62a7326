//! The seam between the transport and the node's threads: where the event loop's inputs come
//! from and how other threads end its wait, a connection id, an incoming request, and a way to
//! answer it from any thread. A running node uses alpo-net's `Inbox`; the event loop's own tests
//! use channels.
//!
//! Invariants: a connection id names one client connection for its lifetime; answering a
//! connection that has closed is not an error (the client is gone and will retry elsewhere);
//! answering never blocks (alpo-net writes the reply or buffers it, or drops and counts it); a
//! wake is never lost (a wake before the wait makes the wait return at once).

use std::time::Duration;

use bytes::Bytes;

use crate::error::Error;

pub(crate) use alpo_net::{ClientRequest as IncomingRequest, ConnectionId, Incoming};

/// Where the event loop waits for peer messages and client requests.
pub(crate) trait Inputs: Send + 'static {
    /// Waits up to `timeout` for input, appending what arrived to `out`; returns early when
    /// something arrives or a [`Wake`] fires.
    fn wait(&mut self, timeout: Duration, out: &mut Vec<Incoming>) -> Result<(), Error>;
}

/// Ends the event loop's wait from another thread (storage reports, stop requests).
pub(crate) trait Wake: Send + Sync + std::fmt::Debug + 'static {
    fn wake(&self);
}

impl Inputs for alpo_net::Inbox {
    fn wait(&mut self, timeout: Duration, out: &mut Vec<Incoming>) -> Result<(), Error> {
        Ok(alpo_net::Inbox::wait(self, Some(timeout), out)?)
    }
}

impl Wake for alpo_net::InboxWaker {
    fn wake(&self) {
        alpo_net::InboxWaker::wake(self);
    }
}

/// Sends an answer to a client connection; never blocks on the network.
pub(crate) trait Replier: Send + Sync + 'static {
    fn reply(&self, connection: ConnectionId, body: Bytes);
}

impl Replier for alpo_net::ClientListener {
    fn reply(&self, connection: ConnectionId, body: Bytes) {
        alpo_net::ClientListener::reply(self, connection, body);
    }
}
