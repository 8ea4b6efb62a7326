//! A fixed amount of load: `count` writes of `value_size` bytes from `clients` closed-loop
//! sessions at full speed — log appends, or puts of distinct keys into the KV state machine, so
//! that its state (and every snapshot image) holds every byte written — through
//! `alpo_node::drive` (the engine `alpo bench` uses), one driver thread per core.
//!
//! Invariants: exactly `count` requests are started over all sessions (a shared counter hands
//! them out); every started request ends before `run` returns, acknowledged or counted as an
//! error (the engine has retried it until its request timeout).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;

use alpo_core::ClusterId;
use alpo_node::client_protocol::{Op, ResponseBody};
use alpo_node::kv::KvOp;
use alpo_node::{ClientOptions, DrivePlan, Error, Outcomes, Requests, drive};

/// How long one attempt may wait for its answer before the client reconnects elsewhere.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one request may take, retries included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which write the load makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Write {
    /// `Op::Append`: the value goes into the log only.
    Append,
    /// A KV put of key `k<n>` (the n-th request): the value goes into the state machine too.
    Put,
}

impl Write {
    /// Parses `append` or `put`.
    pub(super) fn parse(text: &str) -> anyhow::Result<Write> {
        match text {
            "append" => Ok(Write::Append),
            "put" => Ok(Write::Put),
            other => anyhow::bail!("--op wants append or put, found {other:?}"),
        }
    }

    /// The word [`Write::parse`] takes.
    pub(super) fn name(self) -> &'static str {
        match self {
            Write::Append => "append",
            Write::Put => "put",
        }
    }
}

/// What to drive.
#[derive(Debug, Clone)]
pub(super) struct Load {
    /// The cluster's client addresses.
    pub(super) endpoints: Vec<SocketAddr>,
    /// Where the sessions send first (the leader, if known).
    pub(super) first_target: SocketAddr,
    /// The cluster id.
    pub(super) cluster_id: u64,
    /// Writes to make in all.
    pub(super) count: u64,
    /// Concurrent sessions.
    pub(super) clients: u64,
    /// Bytes per written value.
    pub(super) value_size: usize,
    /// Which write.
    pub(super) write: Write,
}

/// How the load went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Done {
    /// Acknowledged appends.
    pub(super) acked: u64,
    /// Requests that ended without an acknowledgement.
    pub(super) errors: u64,
    /// Wall-clock seconds from the first request to the last answer.
    pub(super) seconds: f64,
}

struct Counter<'a> {
    issued: &'a AtomicU64,
    count: u64,
    write: Write,
    value: Bytes,
}

impl Requests for Counter<'_> {
    fn next(&mut self, _session: u64, _count: u64, _now: Instant) -> Option<Op> {
        let number = self.issued.fetch_add(1, Ordering::Relaxed);
        (number < self.count).then(|| match self.write {
            Write::Append => Op::Append {
                value: self.value.clone(),
            },
            Write::Put => KvOp::Put {
                key: Bytes::from(format!("k{number}")),
                value: self.value.clone(),
            }
            .to_op(),
        })
    }
}

#[derive(Default)]
struct Tally {
    acked: u64,
    errors: u64,
}

impl Outcomes for Tally {
    fn on_done(
        &mut self,
        _session: u64,
        _started: Instant,
        _done: Instant,
        outcome: Result<ResponseBody, Error>,
    ) {
        match outcome {
            Ok(ResponseBody::Appended { .. } | ResponseBody::Applied { .. }) => self.acked += 1,
            _ => self.errors += 1,
        }
    }
}

/// Drives `load` to the end.
pub(super) fn run(load: &Load) -> anyhow::Result<Done> {
    let plan = DrivePlan {
        endpoints: load.endpoints.clone(),
        first_targets: vec![load.first_target],
        options: ClientOptions {
            cluster_id: ClusterId(load.cluster_id),
            attempt_timeout: ATTEMPT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            retry_pause: Duration::from_millis(10),
        },
        tls: None,
    };
    let threads = std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .min(usize::try_from(load.clients.max(1)).unwrap_or(1));
    let issued = AtomicU64::new(0);
    let value = Bytes::from(vec![b'x'; load.value_size]);
    let started = Instant::now();
    let results: Vec<anyhow::Result<Tally>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|thread_no| {
                let sessions: Vec<u64> = (0..load.clients)
                    .filter(|s| usize::try_from(*s).unwrap_or(0) % threads == thread_no)
                    .collect();
                let (plan, issued, value) = (&plan, &issued, value.clone());
                std::thread::Builder::new()
                    .name(format!("load-driver-{thread_no}"))
                    .spawn_scoped(scope, move || {
                        let mut requests = Counter {
                            issued,
                            count: load.count,
                            write: load.write,
                            value,
                        };
                        let mut tally = Tally::default();
                        drive(plan, &sessions, &mut requests, &mut tally)
                            .context("driving the load")?;
                        Ok(tally)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|spawned| match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a load thread panicked"))),
                Err(error) => Err(anyhow::anyhow!("starting a load thread: {error}")),
            })
            .collect()
    });
    let mut done = Done::default();
    for result in results {
        let tally = result?;
        done.acked += tally.acked;
        done.errors += tally.errors;
    }
    done.seconds = started.elapsed().as_secs_f64();
    Ok(done)
}
