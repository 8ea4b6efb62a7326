//! The client engine: every decision a client of the cluster makes, with no I/O. It numbers
//! requests, picks the endpoint each attempt goes to, says what an answer, a "not the leader"
//! hint, a timeout or a lost connection means, and when to give up. Time comes in as an
//! argument; the driver (the blocking `Client`, or `drive` in `client_driver.rs` with many
//! sessions on one thread) owns the sockets, sends what `poll` asks and reports back what
//! happened.
//!
//! The driving loop: `begin` a request, then repeat `poll(now)` and act on the `Action` —
//! `Send` (drop the connection first if `reconnect` says so or it goes elsewhere; connect if
//! needed; write the request, then report a failure with `on_failure`), `Wait` (read the
//! connection until `until` if an answer is expected and report it with `on_response`, or just
//! pause) — until `Done` hands back the outcome.
//!
//! Invariants: one request is in flight per engine at a time; every new request gets the next
//! sequence number and every attempt of it reuses that number, so the node's session table
//! applies it once however often it is sent (docs/protocol.md, Clients); an answer whose
//! sequence number is not the one awaited (a late answer to an earlier attempt) is skipped; each
//! attempt is bounded by `ClientOptions::attempt_timeout` and the whole request by
//! `request_timeout`; after a failed attempt the connection is opened afresh.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use crate::client::ClientOptions;
use crate::client_protocol::{Op, PROTOCOL_VERSION, Request, RequestId, Response, ResponseBody};
use crate::error::{Error, WithCauses};
use crate::wire::{DecodeError, DecodeProblem};

/// One client session's decisions.
#[derive(Debug)]
pub(crate) struct Engine {
    endpoints: Vec<SocketAddr>,
    options: ClientOptions,
    client_id: u64,
    seq: u64,
    /// Where requests go: the last leader seen, or an endpoint.
    target: SocketAddr,
    /// The endpoint tried after the next failure (modulo their count).
    next_endpoint: usize,
    /// An attempt failed: the driver must not reuse its connection.
    reconnect: bool,
    request: Option<Pending>,
    done: Option<Result<ResponseBody, Error>>,
}

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send `request` to `target`, on a fresh connection if `reconnect`; the attempt (connect
    /// included) may take until `until`.
    Send {
        target: SocketAddr,
        reconnect: bool,
        request: Bytes,
        until: Instant,
    },
    /// Nothing to send until `until`: read the connection for the answer if
    /// `answer_expected`, otherwise just pause.
    Wait {
        until: Instant,
        answer_expected: bool,
    },
    /// The request is over: the node's answer, or why there is none.
    Done(Result<ResponseBody, Error>),
    /// No request is in progress.
    Idle,
}

/// Where a request may go.
#[derive(Clone, Copy, Debug)]
enum Route {
    /// To the leader, following hints and trying every endpoint.
    Leader,
    /// To this node only, one attempt (a node's status).
    Only(SocketAddr),
}

#[derive(Debug)]
enum Phase {
    /// The next attempt is sent at this time.
    Due(Instant),
    /// An attempt went to `target`; its answer is awaited until `until`.
    Waiting { target: SocketAddr, until: Instant },
}

#[derive(Debug)]
struct Pending {
    request: Bytes,
    route: Route,
    deadline: Instant,
    phase: Phase,
    /// What went wrong last, for the message if the request gives up (none yet: nothing is
    /// allocated for a request that goes well).
    last_problem: Option<String>,
}

impl Engine {
    /// An engine for the cluster reachable at `endpoints`, with session id `client_id`
    /// (non-zero; `random_client_id` draws one). The first request goes to the first endpoint.
    pub(crate) fn new(
        endpoints: Vec<SocketAddr>,
        options: ClientOptions,
        client_id: u64,
    ) -> Result<Engine, Error> {
        let Some(first) = endpoints.first().copied() else {
            return Err(Error::Config {
                field: "endpoints".into(),
                problem: "at least one endpoint is needed".into(),
            });
        };
        debug_assert!(client_id != 0, "client id 0 is never a session");
        Ok(Engine {
            endpoints,
            options,
            client_id,
            seq: 0,
            target: first,
            next_endpoint: 1,
            reconnect: false,
            request: None,
            done: None,
        })
    }

    /// Sends the first request to `target` (a leader found earlier), and after a failure tries
    /// the endpoints from number `rotation` on (so many sessions spread over them).
    pub(crate) fn start_at(&mut self, target: SocketAddr, rotation: usize) {
        self.target = target;
        self.next_endpoint = rotation;
    }

    /// The endpoints this engine was given.
    pub(crate) fn endpoints(&self) -> &[SocketAddr] {
        &self.endpoints
    }

    /// Where the next request goes first.
    pub(crate) fn target(&self) -> SocketAddr {
        self.target
    }

    /// Starts a request for the leader: `op` under the next sequence number.
    pub(crate) fn begin(&mut self, now: Instant, op: Op) {
        let deadline = now + self.options.request_timeout;
        self.begin_route(now, op, Route::Leader, deadline);
    }

    /// Starts a request for the node at `endpoint` only: one attempt, no redirection (every
    /// node answers a status for itself).
    pub(crate) fn begin_to(&mut self, now: Instant, op: Op, endpoint: SocketAddr) {
        let deadline = now + self.options.attempt_timeout;
        self.begin_route(now, op, Route::Only(endpoint), deadline);
    }

    fn begin_route(&mut self, now: Instant, op: Op, route: Route, deadline: Instant) {
        debug_assert!(self.request.is_none(), "one request in flight at a time");
        self.done = None;
        self.seq += 1;
        let id = RequestId {
            client: self.client_id,
            seq: self.seq,
        };
        self.request = Some(Pending {
            request: Request { id, op }.encode(),
            route,
            deadline,
            phase: Phase::Due(now),
            last_problem: None,
        });
    }

    /// What to do now.
    pub(crate) fn poll(&mut self, now: Instant) -> Action {
        loop {
            if let Some(done) = self.done.take() {
                return Action::Done(done);
            }
            let Some(pending) = &mut self.request else {
                return Action::Idle;
            };
            if pending.deadline <= now {
                if let Phase::Waiting { .. } = pending.phase {
                    self.reconnect = true; // The node may be gone: do not reuse the connection.
                }
                let last = pending.last_problem.as_deref();
                let error = match pending.route {
                    Route::Leader => Error::Unavailable {
                        detail: format!(
                            "no answer within {:?}; last: {}",
                            self.options.request_timeout,
                            last.unwrap_or("no endpoint answered")
                        ),
                    },
                    Route::Only(endpoint) => Error::Timeout {
                        what: format!("waiting for {endpoint}"),
                    },
                };
                self.request = None;
                return Action::Done(Err(error));
            }
            match pending.phase {
                Phase::Due(at) if now < at => {
                    return Action::Wait {
                        until: at.min(pending.deadline),
                        answer_expected: false,
                    };
                }
                Phase::Due(_) => {
                    let target = match pending.route {
                        Route::Leader => self.target,
                        Route::Only(endpoint) => endpoint,
                    };
                    let until = pending.deadline.min(now + self.options.attempt_timeout);
                    pending.phase = Phase::Waiting { target, until };
                    return Action::Send {
                        target,
                        reconnect: std::mem::take(&mut self.reconnect),
                        request: pending.request.clone(),
                        until,
                    };
                }
                Phase::Waiting { until, .. } if now < until => {
                    return Action::Wait {
                        until,
                        answer_expected: true,
                    };
                }
                Phase::Waiting { target, .. } => {
                    let what = format!("waiting for {target}");
                    self.on_failure(now, Error::Timeout { what });
                }
            }
        }
    }

    /// The attempt in flight failed: the connection could not be opened, written or read, or
    /// it closed. The connection is not to be used again.
    pub(crate) fn on_failure(&mut self, now: Instant, error: Error) {
        self.reconnect = true;
        let Some(pending) = &mut self.request else {
            return;
        };
        let Phase::Waiting { target, .. } = pending.phase else {
            return; // Between attempts: the next one opens a fresh connection anyway.
        };
        match pending.route {
            Route::Only(_) => self.finish(Err(error)),
            Route::Leader => {
                tracing::debug!(
                    %target,
                    error = &error as &dyn std::error::Error,
                    "attempt failed; trying another node"
                );
                pending.last_problem = Some(format!("{target}: {}", WithCauses(&error)));
                pending.phase = Phase::Due(now + self.options.retry_pause);
                self.rotate();
            }
        }
    }

    /// A response body arrived on the connection to the attempt's target.
    pub(crate) fn on_response(&mut self, now: Instant, body: Bytes) {
        let Some(pending) = &mut self.request else {
            return; // Nothing awaited: a late answer.
        };
        let Phase::Waiting { target, .. } = pending.phase else {
            return; // An answer to an earlier attempt, while pausing before the next.
        };
        let response = match Response::decode(body) {
            Ok(response) => response,
            Err(DecodeError {
                offset: 0,
                problem: DecodeProblem::UnsupportedVersion(version),
                ..
            }) => {
                let error = Error::ProtocolVersion {
                    endpoint: target.to_string(),
                    client: PROTOCOL_VERSION,
                    node: version,
                };
                return self.finish(Err(error));
            }
            Err(error) => return self.on_failure(now, Error::Decode(error)),
        };
        if response.seq == 0
            && let ResponseBody::Error { code, reason } = response.body
        {
            // The node could not read the request at all: sending it again will not help.
            return self.finish(Err(Error::Refused { code, reason }));
        }
        if response.seq != self.seq {
            return; // A late answer to an earlier request.
        }
        let pause = now + self.options.retry_pause;
        match (pending.route, response.body) {
            (Route::Leader, ResponseBody::NotLeader { leader: Some(hint) }) => {
                pending.last_problem = Some(format!(
                    "{target} is not the leader; it points to node {}",
                    hint.id
                ));
                match hint.client_addr.parse::<SocketAddr>() {
                    Ok(leader) if leader != target => {
                        self.target = leader;
                        pending.phase = Phase::Due(now);
                    }
                    _ => {
                        pending.phase = Phase::Due(pause);
                        self.rotate();
                    }
                }
            }
            (Route::Leader, ResponseBody::NotLeader { leader: None }) => {
                pending.last_problem =
                    Some(format!("{target} knows no leader (election in progress?)"));
                pending.phase = Phase::Due(pause);
                self.rotate();
            }
            (Route::Leader, ResponseBody::Error { code, reason }) if code.is_retryable() => {
                pending.last_problem = Some(format!("{target}: {reason}"));
                pending.phase = Phase::Due(pause);
            }
            (_, ResponseBody::Error { code, reason }) => {
                self.finish(Err(Error::Refused { code, reason }));
            }
            (_, body) => self.finish(Ok(body)),
        }
    }

    fn finish(&mut self, outcome: Result<ResponseBody, Error>) {
        self.request = None;
        self.done = Some(outcome);
    }

    fn rotate(&mut self) {
        self.target = self.endpoints[self.next_endpoint % self.endpoints.len()];
        self.next_endpoint = self.next_endpoint.wrapping_add(1);
    }
}

/// A random, non-zero session id: the standard library's per-process random hash keys, mixed
/// with the time, the process and `salt` (a session's number), so two clients started together
/// do not share a session.
pub(crate) fn random_client_id(salt: u64) -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u64(salt);
    hasher.write_u32(std::process::id());
    hasher.finish().max(1)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alpo_core::{ClusterId, LogIndex, NodeId};

    use super::*;
    use crate::client_protocol::{ErrorCode, LeaderHint, unsupported_version_response};

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn options() -> ClientOptions {
        ClientOptions {
            cluster_id: ClusterId(1),
            attempt_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            retry_pause: Duration::from_millis(50),
        }
    }

    fn engine() -> Engine {
        Engine::new(vec![addr(1), addr(2), addr(3)], options(), 77).unwrap()
    }

    fn append() -> Op {
        Op::Append {
            value: Bytes::from_static(b"x"),
        }
    }

    /// Polls once, expecting a send; returns its target, reconnect flag and request.
    fn expect_send(engine: &mut Engine, now: Instant) -> (SocketAddr, bool, Request) {
        match engine.poll(now) {
            Action::Send {
                target,
                reconnect,
                request,
                ..
            } => (target, reconnect, Request::decode(request).unwrap()),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn answer(engine: &mut Engine, now: Instant, seq: u64, body: ResponseBody) {
        engine.on_response(now, Response { seq, body }.encode());
    }

    fn appended(index: u64) -> ResponseBody {
        ResponseBody::Appended {
            index: LogIndex(index),
        }
    }

    #[test]
    fn requests_are_numbered_and_an_answer_ends_them() {
        let mut engine = engine();
        let now = Instant::now();
        assert!(matches!(engine.poll(now), Action::Idle));
        engine.begin(now, append());
        let (target, reconnect, request) = expect_send(&mut engine, now);
        assert_eq!((target, reconnect), (addr(1), false));
        assert_eq!(request.id, RequestId { client: 77, seq: 1 });
        assert!(matches!(
            engine.poll(now),
            Action::Wait {
                answer_expected: true,
                ..
            }
        ));
        answer(&mut engine, now, 1, appended(5));
        assert!(matches!(engine.poll(now), Action::Done(Ok(body)) if body == appended(5)));
        assert!(matches!(engine.poll(now), Action::Idle));
        engine.begin(now, append());
        assert_eq!(expect_send(&mut engine, now).2.id.seq, 2);
    }

    #[test]
    fn a_hint_redirects_at_once_and_the_leader_is_remembered() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin(now, append());
        expect_send(&mut engine, now);
        let hint = LeaderHint {
            id: NodeId(3),
            client_addr: addr(3).to_string(),
        };
        let not_leader = ResponseBody::NotLeader { leader: Some(hint) };
        answer(&mut engine, now, 1, not_leader);
        let (target, _, request) = expect_send(&mut engine, now);
        assert_eq!(target, addr(3));
        assert_eq!(request.id.seq, 1, "a retry reuses the sequence number");
        answer(&mut engine, now, 1, appended(6));
        assert!(matches!(engine.poll(now), Action::Done(Ok(_))));
        engine.begin(now, append());
        assert_eq!(expect_send(&mut engine, now).0, addr(3));
    }

    #[test]
    fn no_leader_or_a_self_hint_pauses_then_rotates() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin(now, append());
        expect_send(&mut engine, now);
        answer(
            &mut engine,
            now,
            1,
            ResponseBody::NotLeader { leader: None },
        );
        let pause_end = now + options().retry_pause;
        assert!(matches!(
            engine.poll(now),
            Action::Wait { until, answer_expected: false } if until == pause_end
        ));
        assert_eq!(expect_send(&mut engine, pause_end).0, addr(2));
        let hint = LeaderHint {
            id: NodeId(2),
            client_addr: addr(2).to_string(),
        };
        answer(
            &mut engine,
            pause_end,
            1,
            ResponseBody::NotLeader { leader: Some(hint) },
        );
        let later = pause_end + options().retry_pause;
        assert_eq!(expect_send(&mut engine, later).0, addr(3));
    }

    #[test]
    fn a_failure_reconnects_elsewhere_and_a_timeout_is_a_failure() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin(now, append());
        expect_send(&mut engine, now);
        let what = "connection closed".to_string();
        engine.on_failure(now, Error::Stopped { reason: what });
        let next = now + options().retry_pause;
        let (target, reconnect, _) = expect_send(&mut engine, next);
        assert_eq!((target, reconnect), (addr(2), true));
        // No answer within the attempt timeout: the next endpoint, on a fresh connection.
        let silent = next + options().attempt_timeout;
        assert!(matches!(
            engine.poll(silent),
            Action::Wait {
                answer_expected: false,
                ..
            }
        ));
        let (target, reconnect, _) = expect_send(&mut engine, silent + options().retry_pause);
        assert_eq!((target, reconnect), (addr(3), true));
    }

    #[test]
    fn retryable_errors_wait_and_retry_the_same_node_others_end_the_request() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin(now, append());
        expect_send(&mut engine, now);
        let busy = ResponseBody::Error {
            code: ErrorCode::Retry,
            reason: "busy".into(),
        };
        answer(&mut engine, now, 1, busy);
        let (target, reconnect, _) = expect_send(&mut engine, now + options().retry_pause);
        assert_eq!((target, reconnect), (addr(1), false));
        let refused = ResponseBody::Error {
            code: ErrorCode::TooLarge,
            reason: "too big".into(),
        };
        answer(&mut engine, now, 1, refused);
        let done = engine.poll(now);
        assert!(
            matches!(
                &done,
                Action::Done(Err(Error::Refused {
                    code: ErrorCode::TooLarge,
                    ..
                }))
            ),
            "{done:?}"
        );
    }

    #[test]
    fn late_answers_are_skipped() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin(now, append());
        expect_send(&mut engine, now);
        answer(&mut engine, now, 1, appended(1));
        assert!(matches!(engine.poll(now), Action::Done(Ok(_))));
        engine.begin(now, append());
        expect_send(&mut engine, now);
        answer(&mut engine, now, 1, appended(1));
        assert!(matches!(
            engine.poll(now),
            Action::Wait {
                answer_expected: true,
                ..
            }
        ));
    }

    #[test]
    fn the_request_gives_up_at_its_deadline_naming_the_last_problem() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin(now, append());
        expect_send(&mut engine, now);
        engine.on_failure(
            now,
            Error::Stopped {
                reason: "gone".into(),
            },
        );
        let done = engine.poll(now + options().request_timeout);
        let Action::Done(Err(Error::Unavailable { detail })) = done else {
            panic!("{done:?}")
        };
        assert!(
            detail.contains("127.0.0.1:1: node stopped: gone"),
            "{detail}"
        );
    }

    #[test]
    fn a_single_node_request_takes_one_attempt() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin_to(now, Op::Status, addr(2));
        assert_eq!(expect_send(&mut engine, now).0, addr(2));
        engine.on_failure(
            now,
            Error::Stopped {
                reason: "gone".into(),
            },
        );
        assert!(matches!(
            engine.poll(now),
            Action::Done(Err(Error::Stopped { .. }))
        ));
        engine.begin_to(now, Op::Status, addr(3));
        expect_send(&mut engine, now);
        let done = engine.poll(now + options().attempt_timeout);
        assert!(
            matches!(done, Action::Done(Err(Error::Timeout { .. }))),
            "{done:?}"
        );
        assert_eq!(
            engine.target(),
            addr(1),
            "a status does not move the leader target"
        );
    }

    #[test]
    fn a_node_of_another_protocol_version_is_named_with_both_versions() {
        let mut engine = engine();
        let now = Instant::now();
        engine.begin(now, append());
        expect_send(&mut engine, now);
        // A version 1 node answers a request it cannot read in its own version.
        engine.on_response(now, unsupported_version_response(1));
        let Action::Done(Err(error)) = engine.poll(now) else {
            panic!("expected an error")
        };
        assert_eq!(
            error.to_string(),
            "127.0.0.1:1 speaks client protocol version 1; this client speaks version 6"
        );
    }
}
