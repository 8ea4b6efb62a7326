//! The Rust client: finds the leader, sends requests, retries with the same request id, and
//! gives up after a deadline. The `alpo` command-line tool is built on it.
//!
//! Invariants: one request is in flight per client at a time; every new request gets the next
//! sequence number and every retry of it reuses that number, so the node's session table applies
//! it once however often it is sent (section 9 of the protocol); a response whose sequence
//! number is not the one awaited (a late answer to an earlier attempt) is skipped; every wait is
//! bounded by `ClientOptions::attempt_timeout` and the whole request by `request_timeout`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use alpo_core::{ClusterId, LogIndex};
use alpo_net::ClientConnection;

use crate::client_protocol::{
    NodeStatus, Op, ReadEntry, Request, RequestId, Response, ResponseBody,
};
use crate::error::Error;

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
    endpoints: Vec<SocketAddr>,
    options: ClientOptions,
    client_id: u64,
    seq: u64,
    /// The open connection and the endpoint it goes to.
    connection: Option<(SocketAddr, ClientConnection)>,
    /// Where the next request goes first: the last leader seen, or an endpoint.
    target: SocketAddr,
    next_endpoint: usize,
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
        let Some(first) = endpoints.first().copied() else {
            return Err(Error::Config {
                field: "endpoints".into(),
                problem: "at least one endpoint is needed".into(),
            });
        };
        Ok(Client {
            endpoints,
            options,
            client_id: random_client_id(),
            seq: 0,
            connection: None,
            target: first,
            next_endpoint: 1,
        })
    }

    /// Appends `value` to the log; returns its index once committed.
    pub fn append(&mut self, value: impl Into<Bytes>) -> Result<LogIndex, Error> {
        let value = value.into();
        match self.call(Op::Append { value })? {
            ResponseBody::Appended { index } => Ok(index),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Reads up to `max_count` committed entries from index `from`, from whichever node
    /// answers (a follower may lag behind the leader). Returns the entries and that node's
    /// commit index.
    pub fn read(
        &mut self,
        from: LogIndex,
        max_count: u32,
    ) -> Result<(Vec<ReadEntry>, LogIndex), Error> {
        match self.call(Op::Read { from, max_count })? {
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

    /// Asks the cluster's state machine a query (linearizable: answered as of the query's place
    /// in the log); returns that index and the state machine's answer.
    pub fn query(&mut self, payload: impl Into<Bytes>) -> Result<(LogIndex, Bytes), Error> {
        let op = Op::Query {
            payload: payload.into(),
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
        self.seq += 1;
        let request = Request {
            id: self.request_id(),
            op: Op::Status,
        };
        let deadline = Instant::now() + self.options.attempt_timeout;
        let answer = self.attempt(endpoint, &request.encode(), deadline);
        if answer.is_err() {
            // The connection may be broken (the node restarted): dial afresh next time.
            self.connection = None;
        }
        match answer? {
            ResponseBody::Status(status) => Ok(status),
            other => Err(self.unexpected(&other)),
        }
    }

    /// The endpoints this client was given.
    #[must_use]
    pub fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// Sends `op` and returns the answer: follows "not the leader" hints, retries (same request
    /// id) on timeouts, closed connections and retryable errors until `request_timeout`.
    pub fn call(&mut self, op: Op) -> Result<ResponseBody, Error> {
        self.seq += 1;
        let request = Request {
            id: self.request_id(),
            op,
        }
        .encode();
        let deadline = Instant::now() + self.options.request_timeout;
        let mut last_problem = String::from("no endpoint answered");
        while Instant::now() < deadline {
            let target = self.target;
            let attempt_deadline = deadline.min(Instant::now() + self.options.attempt_timeout);
            match self.attempt(target, &request, attempt_deadline) {
                Ok(ResponseBody::NotLeader { leader: Some(hint) }) => {
                    last_problem =
                        format!("{target} is not the leader; it points to node {}", hint.id);
                    match hint.client_addr.parse::<SocketAddr>() {
                        Ok(leader) if leader != target => self.target = leader,
                        _ => self.pause_and_rotate(),
                    }
                }
                Ok(ResponseBody::NotLeader { leader: None }) => {
                    last_problem = format!("{target} knows no leader (election in progress?)");
                    self.pause_and_rotate();
                }
                Ok(ResponseBody::Error { code, reason }) if code.is_retryable() => {
                    last_problem = format!("{target}: {reason}");
                    std::thread::sleep(self.options.retry_pause);
                }
                Ok(ResponseBody::Error { code, reason }) => {
                    return Err(Error::Refused { code, reason });
                }
                Ok(body) => return Ok(body),
                Err(error) => {
                    tracing::debug!(%target, %error, "attempt failed; trying another node");
                    last_problem = format!("{target}: {error}");
                    self.connection = None;
                    self.pause_and_rotate();
                }
            }
        }
        Err(Error::Unavailable {
            detail: format!(
                "no answer within {:?}; last: {last_problem}",
                self.options.request_timeout
            ),
        })
    }

    /// One exchange with `target`: connect if needed, send, wait for the answer to this request.
    fn attempt(
        &mut self,
        target: SocketAddr,
        request: &[u8],
        deadline: Instant,
    ) -> Result<ResponseBody, Error> {
        let seq = self.seq;
        let connection = self.connection_to(target, deadline)?;
        connection.send(request)?;
        // Answers to earlier attempts of other requests may still arrive: skip them. The loop
        // ends at the deadline.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout {
                    what: format!("waiting for {target}"),
                });
            }
            let bytes = connection.recv(left)?;
            let response = Response::decode(bytes)?;
            if response.seq == seq {
                return Ok(response.body);
            }
            if response.seq == 0 {
                // The node could not read our request at all.
                if let ResponseBody::Error { code, reason } = response.body {
                    return Err(Error::Refused { code, reason });
                }
            }
        }
    }

    fn connection_to(
        &mut self,
        target: SocketAddr,
        deadline: Instant,
    ) -> Result<&mut ClientConnection, Error> {
        if self
            .connection
            .as_ref()
            .is_some_and(|(addr, _)| *addr != target)
        {
            self.connection = None;
        }
        if self.connection.is_none() {
            let timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let connection = ClientConnection::connect(target, self.options.cluster_id, timeout)?;
            self.connection = Some((target, connection));
        }
        match &mut self.connection {
            Some((_, connection)) => Ok(connection),
            None => Err(Error::Timeout {
                what: format!("connecting to {target}"),
            }),
        }
    }

    fn pause_and_rotate(&mut self) {
        std::thread::sleep(self.options.retry_pause);
        self.target = self.endpoints[self.next_endpoint % self.endpoints.len()];
        self.next_endpoint = self.next_endpoint.wrapping_add(1);
    }

    fn request_id(&self) -> RequestId {
        RequestId {
            client: self.client_id,
            seq: self.seq,
        }
    }

    fn unexpected(&self, body: &ResponseBody) -> Error {
        Error::UnexpectedResponse {
            endpoint: self.target.to_string(),
            response: format!("{body:?}"),
        }
    }
}

/// A random, non-zero session id: the standard library's per-process random hash keys, mixed
/// with the time, so two clients started together do not share a session.
fn random_client_id() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}
