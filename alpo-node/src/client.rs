//! The Rust client: finds the leader, sends requests, retries with the same request id, and
//! gives up after a deadline. The `alpo` command-line tool is built on it.
//!
//! `Client` is the blocking driver of the client engine (`client_engine.rs`), which makes every
//! decision (numbering, endpoint, retries, deadlines); this file only owns the one connection
//! and blocks on it. Invariants: those of the engine (one request in flight, retries reuse the
//! request id, every wait bounded); the connection is dropped whenever the engine says an
//! attempt failed, and replaced when the engine sends elsewhere.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use alpo_core::{ClusterId, LogIndex, NodeId};
use alpo_net::ClientConnection;

use crate::client_engine::{Action, Engine, random_client_id};
use crate::client_protocol::{Consistency, NodeStatus, Op, ReadEntry, ResponseBody};
use crate::error::Error;
use crate::member_protocol::{MemberChange, Members};

/// How a client waits and retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// The cluster to talk to; a node of another cluster refuses the connection.
    pub cluster_id: ClusterId,
    /// How long one attempt (connect, send, wait for the answer) may take.
    pub attempt_timeout: Duration,
    /// How long one request may take, all retries included.
    pub request_timeout: Duration,
    /// Pause before retrying when no leader is known or the node asked to retry.
    pub retry_pause: Duration,
}

/// A client of an ALPO cluster.
#[derive(Debug)]
pub struct Client {
    engine: Engine,
    cluster_id: ClusterId,
    /// The open connection and the endpoint it goes to.
    connection: Option<(SocketAddr, ClientConnection)>,
    /// Issue 16: connect over TLS with these settings (plain TCP if `None`).
    tls: Option<alpo_net::TlsConfig>,
}

impl ClientOptions {
    /// Defaults for a cluster: 2 s per attempt, 10 s per request, 50 ms between retries.
    #[must_use]
    pub fn new(cluster_id: ClusterId) -> ClientOptions {
        ClientOptions {
            cluster_id,
            attempt_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            retry_pause: Duration::from_millis(50),
        }
    }
}

impl Client {
    /// A client of the cluster reachable at `endpoints` (any nodes; the leader is found). Does
    /// not connect until the first request.
    pub fn new(endpoints: Vec<SocketAddr>, options: ClientOptions) -> Result<Client, Error> {
        Ok(Client {
            engine: Engine::new(endpoints, options, random_client_id(0))?,
            cluster_id: options.cluster_id,
            connection: None,
            tls: None,
        })
    }

    /// Connects over TLS (issue 16): the nodes' certificates must come from `tls`'s CA, and
    /// the client presents its own certificate if `tls` has one. `None`: plain TCP.
    #[must_use]
    pub fn with_tls(mut self, tls: Option<alpo_net::TlsConfig>) -> Client {
        self.tls = tls;
        self.connection = None;
        self
    }

    /// Appends `value` to the log; returns its index once committed.
    pub fn append(&mut self, value: impl Into<Bytes>) -> Result<LogIndex, Error> {
        let value = value.into();
        match self.call(Op::Append { value })? {
            ResponseBody::Appended { index } => Ok(index),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Reads up to `max_count` committed entries from index `from`, linearizably: they include
    /// every append acknowledged before the read was sent (rules Q1, Q2). Returns the entries
    /// and the answering node's applied index.
    pub fn read(
        &mut self,
        from: LogIndex,
        max_count: u32,
    ) -> Result<(Vec<ReadEntry>, LogIndex), Error> {
        self.read_with(from, max_count, Consistency::Linearizable)
    }

    /// Like [`Client::read`], with the consistency chosen; `Stale` reads whatever the answering
    /// node has applied (a follower may lag behind the leader).
    pub fn read_with(
        &mut self,
        from: LogIndex,
        max_count: u32,
        consistency: Consistency,
    ) -> Result<(Vec<ReadEntry>, LogIndex), Error> {
        let op = Op::Read {
            from,
            max_count,
            consistency,
        };
        match self.call(op)? {
            ResponseBody::Entries {
                entries,
                commit_index,
            } => Ok((entries, commit_index)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Sends a command to the cluster's state machine (through the log); returns the index it
    /// was applied at and the state machine's answer.
    pub fn command(&mut self, payload: impl Into<Bytes>) -> Result<(LogIndex, Bytes), Error> {
        let op = Op::Command {
            payload: payload.into(),
        };
        self.applied(op)
    }

    /// Asks the cluster's state machine a query, linearizably and without a log write (a read
    /// index, rules Q1, Q2); returns the applied index it was answered at and the state
    /// machine's answer.
    pub fn query(&mut self, payload: impl Into<Bytes>) -> Result<(LogIndex, Bytes), Error> {
        self.query_with(payload, Consistency::Linearizable)
    }

    /// Like [`Client::query`], with the consistency chosen (docs/operations.md, Reads).
    pub fn query_with(
        &mut self,
        payload: impl Into<Bytes>,
        consistency: Consistency,
    ) -> Result<(LogIndex, Bytes), Error> {
        let op = Op::Query {
            payload: payload.into(),
            consistency,
        };
        self.applied(op)
    }

    /// Sends a command or query; returns the index and the state machine's answer.
    pub(crate) fn applied(&mut self, op: Op) -> Result<(LogIndex, Bytes), Error> {
        match self.call(op)? {
            ResponseBody::Applied { index, output } => Ok((index, output)),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The status of the node at `endpoint` (no redirection: every node answers for itself).
    pub fn status_of(&mut self, endpoint: SocketAddr) -> Result<NodeStatus, Error> {
        self.engine.begin_to(Instant::now(), Op::Status, endpoint);
        match self.run()? {
            ResponseBody::Status(status) => Ok(status),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Asks the node at `endpoint` to take a snapshot now and waits until one is durable;
    /// returns its last included index (no redirection: every node snapshots for itself).
    pub fn snapshot_of(&mut self, endpoint: SocketAddr) -> Result<LogIndex, Error> {
        self.engine.begin_to(Instant::now(), Op::Snapshot, endpoint);
        match self.run()? {
            ResponseBody::Snapshot { index } => Ok(index),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Issue 12: the configuration in force, as the node that answers knows it (the leader's
    /// answer carries each member's match index). Any node.
    pub fn members(&mut self) -> Result<Members, Error> {
        match self.call(Op::Members)? {
            ResponseBody::Members(members) => Ok(members),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Issue 12: the configuration in force as the node at `endpoint` knows it (no
    /// redirection).
    pub fn members_of(&mut self, endpoint: SocketAddr) -> Result<Members, Error> {
        self.engine.begin_to(Instant::now(), Op::Members, endpoint);
        match self.run()? {
            ResponseBody::Members(members) => Ok(members),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Issue 12: one membership change (rules M2–M10); returns the index of its `Config` entry
    /// once committed. A change refused as asked (`ErrorCode::ChangeRefused`) is not retried;
    /// one refused for now (`ErrorCode::Busy`: another change or a transfer in progress, a
    /// new leader not ready) is retried until the request timeout.
    pub fn change_members(&mut self, change: MemberChange) -> Result<LogIndex, Error> {
        match self.call(Op::ChangeMembers { change })? {
            ResponseBody::MembersChanged { index } => Ok(index),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Issue 12: `member add`: adds node `id`, listening at `peer_addr` and `client_addr`, as a
    /// learner; unless `learner`, the leader then promotes it once it has caught up (rule M8)
    /// and answers after the promotion is committed (start the new node with
    /// [`crate::Server::join`] meanwhile). Returns the index of the last `Config` entry. An id
    /// used before in this cluster, or an address a member uses, is refused
    /// (`ErrorCode::ChangeRefused`).
    pub fn add_member(
        &mut self,
        id: NodeId,
        peer_addr: SocketAddr,
        client_addr: SocketAddr,
        learner: bool,
    ) -> Result<LogIndex, Error> {
        self.change_members(MemberChange::Add {
            id,
            peer_addr,
            client_addr,
            learner,
        })
    }

    /// Issue 12: hands the leadership to `target`, or to the most up-to-date voter (rules
    /// T1–T5); returns the new leader once it leads.
    pub fn transfer_leader(&mut self, target: Option<NodeId>) -> Result<NodeId, Error> {
        match self.call(Op::TransferLeader { target })? {
            ResponseBody::LeaderMoved { leader } => Ok(leader),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The endpoints this client was given.
    #[must_use]
    pub fn endpoints(&self) -> &[SocketAddr] {
        self.engine.endpoints()
    }

    /// Sends `op` and returns the answer: follows "not the leader" hints, retries (same request
    /// id) on timeouts, closed connections and retryable errors until `request_timeout`.
    pub fn call(&mut self, op: Op) -> Result<ResponseBody, Error> {
        self.engine.begin(Instant::now(), op);
        self.run()
    }

    /// Drives the engine's request to its end, blocking on the connection.
    fn run(&mut self) -> Result<ResponseBody, Error> {
        loop {
            let now = Instant::now();
            match self.engine.poll(now) {
                Action::Send {
                    target,
                    reconnect,
                    request,
                    until,
                } => {
                    if reconnect {
                        self.connection = None;
                    }
                    if let Err(error) = self.send(target, &request, until) {
                        self.connection = None;
                        self.engine.on_failure(Instant::now(), error);
                    }
                }
                Action::Wait {
                    until,
                    answer_expected: true,
                } => {
                    let left = until.saturating_duration_since(now);
                    let received = match &mut self.connection {
                        Some((_, connection)) => connection.recv(left).map_err(Error::from),
                        None => Err(Error::Stopped {
                            reason: "no connection to read".into(),
                        }),
                    };
                    match received {
                        Ok(body) => self.engine.on_response(Instant::now(), body),
                        Err(error) => {
                            self.connection = None;
                            self.engine.on_failure(Instant::now(), error);
                        }
                    }
                }
                Action::Wait { until, .. } => {
                    std::thread::sleep(until.saturating_duration_since(now));
                }
                Action::Done(outcome) => return outcome,
                Action::Idle => {
                    return Err(Error::Stopped {
                        reason: "the client has no request in progress".into(),
                    });
                }
            }
        }
    }

    /// Sends `request` to `target`, connecting first if needed (within `until`).
    fn send(&mut self, target: SocketAddr, request: &[u8], until: Instant) -> Result<(), Error> {
        if self
            .connection
            .as_ref()
            .is_some_and(|(addr, _)| *addr != target)
        {
            self.connection = None;
        }
        let connection = match &mut self.connection {
            Some((_, connection)) => connection,
            None => {
                let timeout = until
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let tls = self.tls.as_ref();
                let connection =
                    ClientConnection::connect_with(target, self.cluster_id, timeout, tls)?;
                &mut self.connection.insert((target, connection)).1
            }
        };
        Ok(connection.send(request)?)
    }

    /// The answer did not fit the request; names the node that gave it (the connection's).
    fn unexpected(&self, body: &ResponseBody) -> Error {
        let endpoint = self
            .connection
            .as_ref()
            .map_or(self.engine.target(), |(addr, _)| *addr);
        Error::UnexpectedResponse {
            endpoint: endpoint.to_string(),
            response: format!("{body:?}"),
        }
    }
}
