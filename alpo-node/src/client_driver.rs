//! Many client sessions driven from one thread: each session owns one connection and keeps one
//! request in flight, and the thread waits on all of their sockets at once (epoll, through mio),
//! so an answer costs one wake-up per batch of ready connections instead of one thread switch
//! per request. `alpo bench` runs one such thread per core; a load generator or a proxy that
//! embeds the client would do the same.
//!
//! Every decision (numbering, leader hints, retries, rotation, deadlines) is the client
//! engine's (`client_engine.rs`), as for the blocking `Client`; this file owns the sockets and
//! the frames. The caller says what each request is (`Requests`) and hears how each ended
//! (`Outcomes`); a request's time runs from its first attempt to its end.
//!
//! Invariants: at most one request per session is in flight; a session starts no request once
//! `Requests::next` said it is done, and every started request ends (answered, refused or timed
//! out) before `drive` returns; after a request fails, its session pauses `retry_pause` and
//! reconnects before the next one. Connects and handshakes are blocking (short, and rare after
//! the start); everything else is non-blocking. Per request the driver allocates only what the
//! engine's encoding does; frames are built in one reused buffer.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use alpo_net::frame::{CLIENT_SENDER_ID, FrameDecoder, FrameKind, encode_frame};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::client::ClientOptions;
use crate::client_engine::{Action, Engine, random_client_id};
use crate::client_protocol::{Op, ResponseBody};
use crate::error::Error;

/// The longest one wait lasts, so deadlines are checked at least this often.
const POLL_WAIT_MAX: Duration = Duration::from_millis(50);
/// Bytes read from a socket per call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Where the sessions of a `drive` call go and how they wait and retry.
#[derive(Clone, Debug)]
pub struct DrivePlan {
    /// The cluster's client addresses (any nodes; the leader is found).
    pub endpoints: Vec<SocketAddr>,
    /// Where the sessions send their first request: session `n` starts at
    /// `first_targets[n % len]` (one leader found beforehand pins them all there; every
    /// endpoint spreads them, e.g. reads over followers). Must not be empty.
    pub first_targets: Vec<SocketAddr>,
    /// Cluster id, timeouts and retry pause, as for the blocking `Client`.
    pub options: ClientOptions,
    /// Issue 16: connect over TLS with these settings (plain TCP if `None`).
    pub tls: Option<alpo_net::TlsConfig>,
}

/// Says what each session asks next.
pub trait Requests {
    /// The `count`-th request (from 1) of session `session`, or `None` when that session is
    /// done.
    fn next(&mut self, session: u64, count: u64, now: Instant) -> Option<Op>;
}

/// Hears how each request ended.
pub trait Outcomes {
    /// The request of `session` that started at `started` ended at `done` with `outcome`: the
    /// node's answer, or why there is none (refused, or no answer within the request timeout).
    fn on_done(
        &mut self,
        session: u64,
        started: Instant,
        done: Instant,
        outcome: Result<ResponseBody, Error>,
    );
}

/// Runs the sessions numbered `sessions` on this thread until `requests` has said each is done
/// and its last request has ended. Fails only if the readiness poll itself fails.
pub fn drive(
    plan: &DrivePlan,
    sessions: &[u64],
    requests: &mut dyn Requests,
    outcomes: &mut dyn Outcomes,
) -> Result<(), Error> {
    let poll_error =
        |operation| move |source| Error::Net(alpo_net::Error::Poll { operation, source });
    let mut poll = Poll::new().map_err(poll_error("create"))?;
    let mut events = Events::with_capacity(1024);
    let mut sessions = sessions
        .iter()
        .map(|&number| Session::new(number, plan))
        .collect::<Result<Vec<_>, Error>>()?;
    let mut buffers = Buffers {
        frame: Vec::new(),
        chunk: vec![0; READ_CHUNK_BYTES],
    };
    while sessions.iter().any(|session| !session.finished) {
        let mut wake = Instant::now() + POLL_WAIT_MAX;
        for (index, session) in sessions.iter_mut().enumerate() {
            let io = Io {
                token: Token(index),
                registry: poll.registry(),
                plan,
            };
            // A fresh time per session: a request's latency starts when it is really sent.
            let now = Instant::now();
            if let Some(until) = session.step(&io, now, &mut buffers, requests, outcomes) {
                wake = wake.min(until);
            }
        }
        let wait = wake.saturating_duration_since(Instant::now());
        match poll.poll(&mut events, Some(wait)) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(poll_error("wait")(error)),
        }
        for event in &events {
            let Some(session) = sessions.get_mut(event.token().0) else {
                continue;
            };
            let io = Io {
                token: event.token(),
                registry: poll.registry(),
                plan,
            };
            let closed = event.is_read_closed() || event.is_error();
            session.on_readable(&io, &mut buffers.chunk, closed);
            session.step(&io, Instant::now(), &mut buffers, requests, outcomes);
        }
    }
    Ok(())
}

/// Buffers every session of the thread reuses.
struct Buffers {
    /// The frame being written.
    frame: Vec<u8>,
    /// Bytes read from a socket.
    chunk: Vec<u8>,
}

/// What a session needs to reach its socket's registration and the plan.
struct Io<'a> {
    token: Token,
    registry: &'a mio::Registry,
    plan: &'a DrivePlan,
}

/// One session: its engine and its connection.
struct Session {
    number: u64,
    engine: Engine,
    connection: Option<Connection>,
    /// How many requests the session has started.
    count: u64,
    /// When the request in progress started.
    started: Instant,
    /// After a failed request: when the next may start.
    resume_at: Option<Instant>,
    finished: bool,
}

struct Connection {
    target: SocketAddr,
    stream: alpo_net::Stream,
    decoder: FrameDecoder,
}

impl Session {
    fn new(number: u64, plan: &DrivePlan) -> Result<Session, Error> {
        let mut engine = Engine::new(
            plan.endpoints.clone(),
            plan.options,
            random_client_id(number),
        )?;
        let rotation = usize::try_from(number).unwrap_or(0);
        // No first targets: the engine's own first endpoint.
        let first = plan
            .first_targets
            .get(rotation % plan.first_targets.len().max(1))
            .copied()
            .unwrap_or_else(|| engine.target());
        engine.start_at(first, rotation);
        Ok(Session {
            number,
            engine,
            connection: None,
            count: 0,
            started: Instant::now(),
            resume_at: None,
            finished: false,
        })
    }

    /// Does what the engine asks until it waits; returns when it wants to be asked again
    /// (`None`: only when its socket is readable, or never once finished).
    fn step(
        &mut self,
        io: &Io<'_>,
        now: Instant,
        buffers: &mut Buffers,
        requests: &mut dyn Requests,
        outcomes: &mut dyn Outcomes,
    ) -> Option<Instant> {
        while !self.finished {
            match self.engine.poll(now) {
                Action::Idle => {
                    if let Some(resume_at) = self.resume_at.filter(|at| now < *at) {
                        return Some(resume_at);
                    }
                    self.resume_at = None;
                    match requests.next(self.number, self.count + 1, now) {
                        Some(op) => {
                            self.count += 1;
                            self.started = now;
                            self.engine.begin(now, op);
                        }
                        None => {
                            self.drop_connection(io.registry);
                            self.finished = true;
                        }
                    }
                }
                Action::Send {
                    target,
                    reconnect,
                    request,
                    until,
                } => {
                    if reconnect
                        || self
                            .connection
                            .as_ref()
                            .is_some_and(|connection| connection.target != target)
                    {
                        self.drop_connection(io.registry);
                    }
                    if let Err(error) = self.send(io, target, &request, until, &mut buffers.frame) {
                        self.drop_connection(io.registry);
                        self.engine.on_failure(now, error);
                    }
                }
                Action::Wait { until, .. } => return Some(until),
                Action::Done(outcome) => {
                    if outcome.is_err() {
                        // Do not spin on a cluster that refuses or does not answer.
                        self.drop_connection(io.registry);
                        self.resume_at = Some(now + io.plan.options.retry_pause);
                    }
                    outcomes.on_done(self.number, self.started, now, outcome);
                }
            }
        }
        None
    }

    fn send(
        &mut self,
        io: &Io<'_>,
        target: SocketAddr,
        request: &[u8],
        until: Instant,
        frame: &mut Vec<u8>,
    ) -> Result<(), Error> {
        let cluster_id = io.plan.options.cluster_id;
        frame.clear();
        let kind = FrameKind::ClientRequest;
        encode_frame(frame, kind, cluster_id, CLIENT_SENDER_ID, request).map_err(|error| {
            Error::Net(alpo_net::Error::BodyTooLarge {
                bytes: error.bytes,
                max: alpo_net::limits::FRAME_BODY_BYTES_MAX as u64,
            })
        })?;
        let connection = match &mut self.connection {
            Some(connection) => connection,
            None => self.connection.insert(connect(io, target, until)?),
        };
        // A request is small and the socket holds nothing else of this session's (one request
        // in flight), so it is written whole or the connection is in trouble.
        match (&connection.stream).write(frame) {
            Ok(written) if written == frame.len() => Ok(()),
            Ok(written) => Err(io_error(
                target,
                "write",
                io::Error::new(
                    io::ErrorKind::WriteZero,
                    format!("only {written} bytes of a request were written"),
                ),
            )),
            Err(source) => Err(io_error(target, "write", source)),
        }
    }

    /// Reads what arrived and hands every response to the engine; a broken connection is a
    /// failed attempt. Unless `closed` (the poll saw the other side's end), a short read is
    /// taken to mean the socket is empty, as in alpo-net's inbox: anything arriving later raises
    /// a new edge, so the read that would only say "would block" is saved (one system call per
    /// answer instead of two).
    fn on_readable(&mut self, io: &Io<'_>, chunk: &mut [u8], closed: bool) {
        let mut drained = false;
        loop {
            let Some(connection) = &mut self.connection else {
                return;
            };
            let target = connection.target;
            let failure = match connection.decoder.next_frame() {
                Ok(Some(frame)) if frame.header.kind == FrameKind::ClientResponse => {
                    self.engine.on_response(Instant::now(), frame.body);
                    continue;
                }
                Ok(Some(frame)) if frame.header.kind == FrameKind::Close => {
                    alpo_net::Error::Closed {
                        peer: target,
                        reason: None,
                    }
                }
                Ok(Some(frame)) => alpo_net::Error::Rejected {
                    peer: target,
                    rejection: alpo_net::Rejection::KindNotAllowed {
                        found: frame.header.kind,
                        connection: alpo_net::handshake::Role::Client,
                    },
                },
                Err(rejection) => alpo_net::Error::Rejected {
                    peer: target,
                    rejection,
                },
                Ok(None) if drained => return,
                Ok(None) => match (&connection.stream).read(chunk) {
                    Ok(0) => alpo_net::Error::Closed {
                        peer: target,
                        reason: None,
                    },
                    Ok(length) => {
                        connection.decoder.feed(&chunk[..length]);
                        drained = length < chunk.len()
                            && !closed
                            && connection.stream.drained_after_short_read();
                        continue;
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(source) => alpo_net::Error::Io {
                        peer: target,
                        operation: "read",
                        source,
                    },
                },
            };
            self.drop_connection(io.registry);
            self.engine.on_failure(Instant::now(), Error::Net(failure));
            return;
        }
    }

    fn drop_connection(&mut self, registry: &mio::Registry) {
        if let Some(connection) = self.connection.take() {
            let fd = connection.stream.as_raw_fd();
            // Closing the socket removes it from epoll anyway; deregistering first is tidy.
            let _ = registry.deregister(&mut SourceFd(&fd));
        }
    }
}

/// Connects and completes the handshake (blocking, within `until`), then makes the socket
/// non-blocking and registers it for reading.
fn connect(io: &Io<'_>, target: SocketAddr, until: Instant) -> Result<Connection, Error> {
    let timeout = until
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let cluster_id = io.plan.options.cluster_id;
    let (stream, decoder) = alpo_net::ClientConnection::connect_with(
        target,
        cluster_id,
        timeout,
        io.plan.tls.as_ref(),
    )?
    .into_parts();
    stream
        .set_nonblocking(true)
        .map_err(|source| io_error(target, "set_nonblocking", source))?;
    let fd = stream.as_raw_fd();
    io.registry
        .register(&mut SourceFd(&fd), io.token, Interest::READABLE)
        .map_err(|source| io_error(target, "register", source))?;
    Ok(Connection {
        target,
        stream,
        decoder,
    })
}

fn io_error(peer: SocketAddr, operation: &'static str, source: io::Error) -> Error {
    Error::Net(alpo_net::Error::Io {
        peer,
        operation,
        source,
    })
}
