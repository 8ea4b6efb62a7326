//! The engine of `alpo bench`: many closed-loop clients driven from a few threads. Each client
//! owns one connection and keeps one request in flight; a driver thread waits on all of its
//! clients' sockets at once (epoll, through mio), so an answer costs the load generator one
//! wake-up per batch of ready connections instead of one thread switch per request. The anchor's
//! load generator for etcd works the same way (tokio tasks on one worker thread per core).
//!
//! A client's life: send request `seq`; on `Appended`/`Applied` record the latency and send
//! `seq + 1`. Like `alpo_node::Client`, it follows "not the leader" hints and retries the same
//! request id (so the node's session table applies it once) after a closed connection, a
//! retryable error or an attempt timeout, and gives up on a request (one error) only after the
//! request timeout; a request's latency runs from its first attempt to its answer.
//!
//! Invariants: at most one request per client is in flight; a client starts no request at or
//! after the window's end, and every started measured request is waited for (answered or timed
//! out) before its thread ends. Connects and handshakes are blocking (short, and rare after the
//! start); everything else is non-blocking.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use alpo_core::ClusterId;
use alpo_net::frame::{CLIENT_SENDER_ID, FrameDecoder, FrameKind, encode_frame};
use alpo_net::{ClientConnection, Rejection};
use alpo_node::client_protocol::{Op, Request, RequestId, Response, ResponseBody};
use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

/// How long one attempt may wait for its answer before the client reconnects and retries.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before retrying after an error (keeps a dead cluster from spinning).
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// The longest a driver sleeps in one poll, so timeouts are checked at least this often.
const POLL_WAIT_MAX: Duration = Duration::from_millis(50);
/// Bytes read from a socket per call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// What every client of a run shares.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) endpoints: Vec<SocketAddr>,
    /// Where clients connect first (the leader found before the run).
    pub(crate) first_target: SocketAddr,
    pub(crate) cluster_id: ClusterId,
    pub(crate) request_timeout: Duration,
    pub(crate) measure_start: Instant,
    pub(crate) measure_end: Instant,
}

/// What one request needs: the client number, the request's sequence number and where the
/// value goes.
pub(crate) trait Workload: Send {
    /// The operation for request `seq` of client `client_no`.
    fn op(&mut self, client_no: u64, seq: u64) -> Op;
}

/// What a client saw: each measured request's outcome, through `on_answer`/`on_error`.
pub(crate) trait Recorder: Send {
    /// A measured request was answered after `latency`, at `done`.
    fn on_answer(&mut self, latency: Duration, done: Instant);
    /// A measured request failed (timed out or was refused) at `done`.
    fn on_error(&mut self, done: Instant, client_no: u64, problem: &str);
}

/// One closed-loop client.
struct BenchClient {
    client_no: u64,
    client_id: u64,
    seq: u64,
    target: SocketAddr,
    next_endpoint: usize,
    connection: Option<(TcpStream, FrameDecoder)>,
    /// The current request as a frame, and when its first and latest attempts were sent.
    request: Option<InFlight>,
    /// When to send (or resend) the current request; `None` while an attempt is in flight.
    due: Option<Instant>,
    finished: bool,
}

struct InFlight {
    frame: Vec<u8>,
    first_sent: Instant,
    attempt_sent: Instant,
}

/// Runs `clients` (their numbers) on this thread until each has finished its last request.
pub(crate) fn drive(
    plan: &Plan,
    client_nos: &[u64],
    workload: &mut dyn Workload,
    recorder: &mut dyn Recorder,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let now = Instant::now();
    let mut clients: Vec<BenchClient> = client_nos
        .iter()
        .map(|&client_no| BenchClient {
            client_no,
            client_id: random_client_id(client_no),
            seq: 0,
            target: plan.first_target,
            next_endpoint: usize::try_from(client_no).unwrap_or(0),
            connection: None,
            request: None,
            due: Some(now),
            finished: false,
        })
        .collect();
    let mut chunk = vec![0; READ_CHUNK_BYTES];
    while clients.iter().any(|client| !client.finished) {
        let now = Instant::now();
        for (index, client) in clients.iter_mut().enumerate() {
            client.check_timeouts(now, plan, &poll, recorder);
            if client.due.is_some_and(|due| due <= now) {
                client.send(Token(index), plan, &poll, workload, recorder);
            }
        }
        let next_due = clients.iter().filter_map(|client| client.due).min();
        let wait = next_due.map_or(POLL_WAIT_MAX, |due| {
            due.saturating_duration_since(Instant::now())
                .min(POLL_WAIT_MAX)
        });
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        }
        for event in &events {
            let Some(client) = clients.get_mut(event.token().0) else {
                continue;
            };
            client.on_readable(&mut chunk, plan, &poll, recorder);
            if client.due.is_some_and(|due| due <= Instant::now()) {
                client.send(event.token(), plan, &poll, workload, recorder);
            }
        }
    }
    Ok(())
}

impl BenchClient {
    /// Sends the current request (or starts the next one); reconnects first if needed.
    fn send(
        &mut self,
        token: Token,
        plan: &Plan,
        poll: &Poll,
        workload: &mut dyn Workload,
        recorder: &mut dyn Recorder,
    ) {
        let now = Instant::now();
        if self.request.is_none() {
            if now >= plan.measure_end {
                self.finish(poll);
                return;
            }
            self.seq += 1;
            let request = Request {
                id: RequestId {
                    client: self.client_id,
                    seq: self.seq,
                },
                op: workload.op(self.client_no, self.seq),
            };
            let mut frame = Vec::new();
            let body = request.encode();
            let kind = FrameKind::ClientRequest;
            if let Err(error) =
                encode_frame(&mut frame, kind, plan.cluster_id, CLIENT_SENDER_ID, &body)
            {
                let problem = format!("request {} cannot be framed: {error:?}", self.seq);
                self.give_up(now, plan, poll, recorder, &problem);
                return;
            }
            self.request = Some(InFlight {
                frame,
                first_sent: now,
                attempt_sent: now,
            });
        }
        self.due = None;
        if let Err(problem) = self.write_attempt(token, plan, poll, now) {
            self.retry_elsewhere(plan, poll, &problem);
        }
    }

    fn write_attempt(
        &mut self,
        token: Token,
        plan: &Plan,
        poll: &Poll,
        now: Instant,
    ) -> Result<(), String> {
        if self.connection.is_none() {
            self.connect(token, plan, poll)?;
        }
        let (Some((stream, _)), Some(request)) = (&mut self.connection, &mut self.request) else {
            return Err("no connection".into());
        };
        request.attempt_sent = now;
        // A request is a few hundred bytes and the socket holds nothing else of this client's
        // (one request in flight), so it is written whole or the connection is in trouble.
        match stream.write(&request.frame) {
            Ok(written) if written == request.frame.len() => Ok(()),
            Ok(written) => Err(format!("only {written} bytes of a request were written")),
            Err(error) => Err(format!("write to {}: {error}", self.target)),
        }
    }

    fn connect(&mut self, token: Token, plan: &Plan, poll: &Poll) -> Result<(), String> {
        let target = self.target;
        let connection = ClientConnection::connect(target, plan.cluster_id, ATTEMPT_TIMEOUT)
            .map_err(|error| format!("connect to {target}: {error}"))?;
        let (stream, decoder) = connection.into_parts();
        stream
            .set_nonblocking(true)
            .map_err(|error| format!("set_nonblocking on {target}: {error}"))?;
        let fd = stream.as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&fd), token, Interest::READABLE)
            .map_err(|error| format!("register {target}: {error}"))?;
        self.connection = Some((stream, decoder));
        Ok(())
    }

    fn on_readable(
        &mut self,
        chunk: &mut [u8],
        plan: &Plan,
        poll: &Poll,
        recorder: &mut dyn Recorder,
    ) {
        loop {
            let Some((stream, decoder)) = &mut self.connection else {
                return;
            };
            match decoder.next_frame() {
                Ok(Some(frame)) if frame.header.kind == FrameKind::ClientResponse => {
                    self.on_response(frame.body, plan, poll, recorder);
                    continue;
                }
                Ok(Some(frame)) => {
                    let problem = format!("{} sent a {:?} frame", self.target, frame.header.kind);
                    self.retry_elsewhere(plan, poll, &problem);
                    return;
                }
                Ok(None) => {}
                Err(rejection) => {
                    self.retry_elsewhere(plan, poll, &rejection_problem(self.target, &rejection));
                    return;
                }
            }
            match stream.read(chunk) {
                Ok(0) => {
                    let problem = format!("{} closed the connection", self.target);
                    self.retry_elsewhere(plan, poll, &problem);
                    return;
                }
                Ok(length) => decoder.feed(&chunk[..length]),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let problem = format!("read from {}: {error}", self.target);
                    self.retry_elsewhere(plan, poll, &problem);
                    return;
                }
            }
        }
    }

    fn on_response(&mut self, body: Bytes, plan: &Plan, poll: &Poll, recorder: &mut dyn Recorder) {
        let response = match Response::decode(body) {
            Ok(response) => response,
            Err(error) => {
                let problem = format!("{} sent an unreadable response: {error}", self.target);
                self.retry_elsewhere(plan, poll, &problem);
                return;
            }
        };
        if response.seq != self.seq || self.request.is_none() || self.due.is_some() {
            return; // An answer to an earlier attempt; the current one is still waited for.
        }
        let now = Instant::now();
        match response.body {
            ResponseBody::Appended { .. } | ResponseBody::Applied { .. } => {
                if let Some(request) = self.request.take()
                    && request.first_sent >= plan.measure_start
                {
                    recorder.on_answer(now - request.first_sent, now);
                }
                self.due = Some(now);
            }
            ResponseBody::NotLeader { leader: Some(hint) } => {
                match hint.client_addr.parse::<SocketAddr>() {
                    Ok(leader) if leader != self.target => {
                        self.drop_connection(poll);
                        self.target = leader;
                        self.due = Some(now);
                    }
                    _ => self.retry_elsewhere(plan, poll, "a node pointed to itself as leader"),
                }
            }
            ResponseBody::NotLeader { leader: None } => {
                self.retry_elsewhere(plan, poll, "no leader known (election in progress?)");
            }
            ResponseBody::Error { code, .. } if code.is_retryable() => {
                self.due = Some(now + RETRY_PAUSE);
            }
            ResponseBody::Error { code, reason } => {
                let problem = format!("refused ({code:?}): {reason}");
                self.give_up(now, plan, poll, recorder, &problem);
            }
            other => {
                let problem = format!("unexpected answer {other:?}");
                self.give_up(now, plan, poll, recorder, &problem);
            }
        }
    }

    /// Gives up on a request whose attempt or whole request timed out.
    fn check_timeouts(
        &mut self,
        now: Instant,
        plan: &Plan,
        poll: &Poll,
        recorder: &mut dyn Recorder,
    ) {
        let Some(request) = &self.request else {
            return;
        };
        if now.saturating_duration_since(request.first_sent) >= plan.request_timeout {
            let problem = format!("no answer within {:?}", plan.request_timeout);
            self.give_up(now, plan, poll, recorder, &problem);
        } else if self.due.is_none()
            && now.saturating_duration_since(request.attempt_sent) >= ATTEMPT_TIMEOUT
        {
            let problem = format!("{} did not answer within {ATTEMPT_TIMEOUT:?}", self.target);
            self.retry_elsewhere(plan, poll, &problem);
        }
    }

    /// Counts the current request as failed and moves on to the next one.
    fn give_up(
        &mut self,
        now: Instant,
        plan: &Plan,
        poll: &Poll,
        recorder: &mut dyn Recorder,
        problem: &str,
    ) {
        if let Some(request) = self.request.take()
            && request.first_sent >= plan.measure_start
        {
            recorder.on_error(now, self.client_no, problem);
        }
        self.drop_connection(poll);
        self.due = Some(now + RETRY_PAUSE);
    }

    /// Drops the connection and retries the current request at the next endpoint after a pause.
    fn retry_elsewhere(&mut self, plan: &Plan, poll: &Poll, problem: &str) {
        tracing::debug!(client = self.client_no, %problem, "bench client retries");
        self.drop_connection(poll);
        self.next_endpoint = self.next_endpoint.wrapping_add(1);
        self.target = plan.endpoints[self.next_endpoint % plan.endpoints.len()];
        self.due = Some(Instant::now() + RETRY_PAUSE);
    }

    fn drop_connection(&mut self, poll: &Poll) {
        if let Some((stream, _)) = self.connection.take() {
            let fd = stream.as_raw_fd();
            // Closing the socket removes it from epoll anyway; deregistering first is tidy.
            let _ = poll.registry().deregister(&mut SourceFd(&fd));
        }
    }

    fn finish(&mut self, poll: &Poll) {
        self.drop_connection(poll);
        self.due = None;
        self.finished = true;
    }
}

fn rejection_problem(target: SocketAddr, rejection: &Rejection) -> String {
    format!("{target} sent a bad frame: {rejection}")
}

/// A random, non-zero session id per client (the standard library's per-process random keys,
/// mixed with the time and the client's number).
fn random_client_id(client_no: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u64(client_no);
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}
