//! `alpo bench`: a closed-loop load generator (like etcd's `benchmark`). Each of `--clients`
//! clients owns one connection and keeps exactly one request in flight (one driver thread per
//! core waits on all of its clients' sockets: `alpo_node::drive`): an `append` of a
//! `--value-size`-byte value, or with `--op put` a `put` of a fresh key, or with `--op get` a
//! `get` of the client's own key (`--consistency` linearizable, lease or stale; rules Q1–Q3),
//! mixed with puts of that key as `--read-percent` says. Gets are spread over every endpoint
//! (client `n` starts at endpoint `n mod count`: followers serve linearizable reads too, rule
//! Q2), unless `--pin-leader` sends every client to the leader; appends and puts always start at
//! the leader (a follower would only redirect them). With a mix, a client's first put is
//! redirected to the leader and the client stays there. The first `--warmup`
//! seconds load the cluster without being recorded; the next `--duration` seconds are measured.
//! The result is one JSON line with the same fields as the load generator of the etcd
//! comparison (docs/benchmarks.md): `clients, value_size, ops, seconds, throughput_ops_s, p50_us,
//! p90_us, p99_us, p999_us, max_us, errors` (plus `backend`, `op`, `mean_us`, `warmup_s`, and
//! for gets `read_percent` and `targets`: `all` or `leader`), or a small table without `--json`.
//!
//! Invariants: an operation is counted only once the cluster acknowledged it (committed; for
//! `put`, also applied); latency runs from just before the call to its answer. The measured
//! window runs from the end of the warm-up to the last measured answer, so every started
//! measured operation is waited for and counted (the in-flight tail is not dropped). Latencies
//! go into a log-bucketed histogram whose reported percentiles are at most 1/128 (0.8 %) above
//! the true value; `max_us` is exact. Clients stop starting requests at the end of the window;
//! each request is bounded by the client timeout, so a run ends at most that long after it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::client_cmd::{ClientFlags, print_line};
use alpo_core::{ClusterId, Role};
use alpo_node::client_protocol::{Consistency, Op, ResponseBody};
use alpo_node::{ClientOptions, DrivePlan, KvOp, Outcomes, Requests};

/// The longest warm-up or measured duration one run may ask for, in seconds.
const BENCH_SECONDS_MAX: f64 = 3600.0;
/// The most concurrent clients (a node accepts at most 256 client connections).
const BENCH_CLIENTS_MAX: u64 = 256;
/// How long one attempt may wait for its answer before the client reconnects elsewhere.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before retrying after an error (keeps a dead cluster from spinning).
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// Errors printed to standard error per client; the rest are only counted.
const ERRORS_PRINTED_PER_CLIENT: u64 = 3;
/// How long the run waits for a leader before its warm-up starts.
const LEADER_WAIT: Duration = Duration::from_secs(15);
/// Driver threads when the machine's parallelism is unknown.
const DRIVER_THREADS_DEFAULT: usize = 2;

/// The operation each client repeats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BenchOp {
    /// Append the value to the log (answered once committed).
    Append,
    /// Put the value under a fresh key in the key-value store (answered once applied).
    Put,
    /// Get the client's own key (no log write), mixed with puts of it by `--read-percent`.
    Get,
}

/// Arguments of `alpo bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Concurrent closed-loop clients (each with one connection and one request in flight).
    #[arg(
        long,
        default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..=BENCH_CLIENTS_MAX)
    )]
    clients: u64,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    duration: f64,
    /// Warm-up seconds: load runs, nothing is recorded.
    #[arg(long, default_value_t = 1.0, value_parser = parse_seconds)]
    warmup: f64,
    /// Bytes per value.
    #[arg(
        long,
        default_value_t = 128,
        value_parser = clap::value_parser!(u64).range(0..=1024 * 1024)
    )]
    value_size: u64,
    /// The operation: `append` to the log, or `put` a fresh key (PREFIX/CLIENT/SEQ).
    #[arg(long, value_enum, default_value_t = BenchOp::Append)]
    op: BenchOp,
    /// With `--op get`: the share of requests that are gets, in percent; the rest put the
    /// client's key (100: reads only; the key then holds nothing unless written before).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
    read_percent: u8,
    /// With `--op get`: `linearizable` (a read index), `lease` or `stale`.
    #[arg(long, default_value = "linearizable")]
    consistency: Consistency,
    /// With `--op get`: send every client to the leader instead of spreading them over all
    /// endpoints.
    #[arg(long)]
    pin_leader: bool,
    #[command(flatten)]
    flags: ClientFlags,
}

/// Parses a duration in seconds: a finite number in [0, `BENCH_SECONDS_MAX`].
fn parse_seconds(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if !seconds.is_finite() || !(0.0..=BENCH_SECONDS_MAX).contains(&seconds) {
        return Err(format!(
            "{text:?} is out of range: seconds must be between 0 and {BENCH_SECONDS_MAX}"
        ));
    }
    Ok(seconds)
}

/// What one driver thread measured for its clients.
#[derive(Debug)]
struct ThreadResult {
    histogram: Histogram,
    errors: u64,
    /// Errors printed so far, per client number.
    printed: BTreeMap<u64, u64>,
    last_done: Option<Instant>,
    /// Requests started before this are the warm-up: not recorded.
    measure_start: Instant,
}

impl Outcomes for ThreadResult {
    fn on_done(
        &mut self,
        client_no: u64,
        started: Instant,
        done: Instant,
        outcome: Result<ResponseBody, alpo_node::Error>,
    ) {
        if started < self.measure_start {
            return; // A warm-up request.
        }
        self.last_done = Some(done);
        let problem = match outcome {
            Ok(ResponseBody::Appended { .. } | ResponseBody::Applied { .. }) => {
                self.histogram.record(micros(done - started));
                return;
            }
            Ok(other) => format!("unexpected answer {other:?}"),
            Err(error) => format!("{:#}", anyhow::Error::new(error)),
        };
        self.errors += 1;
        let printed = self.printed.entry(client_no).or_default();
        if *printed < ERRORS_PRINTED_PER_CLIENT {
            *printed += 1;
            eprintln!("alpo bench: client {client_no}: {problem}");
        }
    }
}

/// What each client repeats: the operation and, for gets, the mix and the consistency.
#[derive(Clone, Copy, Debug)]
struct Load {
    op: BenchOp,
    read_percent: u8,
    consistency: Consistency,
}

/// The values (one per client, random bytes) and the operation each request carries.
#[derive(Debug)]
struct Values {
    op: BenchOp,
    read_percent: u64,
    consistency: Consistency,
    /// Each client's value, as the append that carries it (a clone shares the bytes).
    appends: BTreeMap<u64, Op>,
    key: String,
    /// Clients start no request at or after this.
    measure_end: Instant,
}

impl Requests for Values {
    fn next(&mut self, client_no: u64, seq: u64, now: Instant) -> Option<Op> {
        if self.measure_end <= now {
            return None;
        }
        let append = self.appends.get(&client_no)?.clone();
        match (self.op, append) {
            (BenchOp::Put, Op::Append { value }) => {
                self.key.clear();
                let _ = write!(self.key, "bench/{client_no:05}/{seq:012}");
                let key = self.key.clone().into_bytes().into();
                Some(KvOp::Put { key, value }.to_op())
            }
            (BenchOp::Get, Op::Append { value }) => {
                let key = format!("bench/{client_no:05}").into_bytes().into();
                // 37 is prime to 100: the puts spread evenly over each client's sequence.
                if seq.wrapping_mul(37) % 100 < self.read_percent {
                    Some(KvOp::Get { key }.to_op_with(self.consistency))
                } else {
                    Some(KvOp::Put { key, value }.to_op())
                }
            }
            (_, append) => Some(append),
        }
    }
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let leader = wait_for_leader(&args.flags)?;
    let started = Instant::now();
    let measure_start = started + Duration::from_secs_f64(args.warmup);
    let measure_end = measure_start + Duration::from_secs_f64(args.duration);
    let plan = drive_plan(&args, leader)?;
    let window = (measure_start, measure_end);
    let thread_count = std::thread::available_parallelism()
        .map_or(DRIVER_THREADS_DEFAULT, std::num::NonZero::get)
        .min(usize::try_from(args.clients).unwrap_or(usize::MAX));
    let size = usize::try_from(args.value_size)?;
    let results: Vec<anyhow::Result<ThreadResult>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..thread_count)
            .map(|thread_no| {
                let client_nos: Vec<u64> = (0..args.clients)
                    .filter(|client| {
                        usize::try_from(*client).unwrap_or(0) % thread_count == thread_no
                    })
                    .collect();
                let plan = &plan;
                let load = Load {
                    op: args.op,
                    read_percent: args.read_percent,
                    consistency: args.consistency,
                };
                std::thread::Builder::new()
                    .name(format!("bench-driver-{thread_no}"))
                    .spawn_scoped(scope, move || {
                        run_driver(plan, window, &client_nos, load, size)
                    })
            })
            .collect();
        handles
            .into_iter()
            .map(|spawned| match spawned {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a driver thread panicked"))),
                Err(error) => Err(anyhow::Error::new(error).context("starting a driver thread")),
            })
            .collect()
    });
    let mut total = Summary::new(&args);
    let mut last_done = measure_start;
    for result in results {
        let result = result?;
        total.histogram.add(&result.histogram);
        total.errors += result.errors;
        last_done = result
            .last_done
            .map_or(last_done, |done| last_done.max(done));
    }
    total.seconds = last_done
        .saturating_duration_since(measure_start)
        .as_secs_f64();
    if args.flags.json {
        print_line(&total.json_line())?;
    } else {
        print_line(&total.table())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the clients start at every endpoint (gets, unless `--pin-leader`) or at the leader.
fn spread(args: &BenchArgs) -> bool {
    args.op == BenchOp::Get && !args.pin_leader
}

/// Where the drivers connect first (the leader, or every endpoint: `spread`), and how
/// (timeouts, TLS).
fn drive_plan(args: &BenchArgs, leader: SocketAddr) -> anyhow::Result<DrivePlan> {
    let request_timeout = Duration::from_millis(args.flags.timeout_ms);
    let first_targets = if spread(args) {
        args.flags.endpoints.clone()
    } else {
        vec![leader]
    };
    Ok(DrivePlan {
        endpoints: args.flags.endpoints.clone(),
        first_targets,
        options: ClientOptions {
            cluster_id: ClusterId(args.flags.cluster_id),
            attempt_timeout: ATTEMPT_TIMEOUT.min(request_timeout),
            request_timeout,
            retry_pause: RETRY_PAUSE,
        },
        tls: args.flags.tls()?,
    })
}

/// One driver thread: its clients, their values, and what they measured.
fn run_driver(
    plan: &DrivePlan,
    (measure_start, measure_end): (Instant, Instant),
    client_nos: &[u64],
    load: Load,
    value_size: usize,
) -> anyhow::Result<ThreadResult> {
    let appends = client_nos
        .iter()
        .map(|&client_no| {
            let mut value = vec![0_u8; value_size];
            fill_random(&mut value, 0x9E37_79B9_7F4A_7C15 ^ (client_no + 1));
            let append = Op::Append {
                value: value.into(),
            };
            (client_no, append)
        })
        .collect();
    let mut workload = Values {
        op: load.op,
        read_percent: u64::from(load.read_percent),
        consistency: load.consistency,
        appends,
        key: String::new(),
        measure_end,
    };
    let mut result = ThreadResult {
        histogram: Histogram::new(),
        errors: 0,
        printed: BTreeMap::new(),
        last_done: None,
        measure_start,
    };
    alpo_node::drive(plan, client_nos, &mut workload, &mut result)
        .context("waiting on the clients' sockets")?;
    Ok(result)
}

/// Waits (up to `LEADER_WAIT`) until one of the endpoints says it is the leader, so the
/// warm-up does not start with an election; returns that endpoint.
fn wait_for_leader(flags: &ClientFlags) -> anyhow::Result<SocketAddr> {
    let mut probe = flags.client()?;
    let endpoints = probe.endpoints().to_vec();
    let deadline = Instant::now() + LEADER_WAIT;
    let mut last = String::from("no endpoint answered");
    while Instant::now() < deadline {
        for &endpoint in &endpoints {
            match probe.status_of(endpoint) {
                Ok(status) if status.role == Role::Leader => return Ok(endpoint),
                Ok(status) => {
                    last = format!("{endpoint} is {:?} in term {}", status.role, status.term.0)
                }
                Err(error) => last = format!("{endpoint}: {:#}", anyhow::Error::new(error)),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(alpo_node::Error::Unavailable {
        detail: format!("no leader among {endpoints:?}; last: {last}"),
    })?
}

/// Whole microseconds, at least 1 (a zero would hide in the histogram's first bucket).
fn micros(elapsed: Duration) -> u64 {
    u64::try_from(elapsed.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// Xorshift bytes, so values are not trivially compressible (the same as the anchor's loadgen).
fn fill_random(buf: &mut [u8], mut seed: u64) {
    for byte in buf.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *byte = seed.to_le_bytes()[0];
    }
}

/// The merged result of a run.
#[derive(Debug)]
struct Summary {
    op: BenchOp,
    consistency: Consistency,
    read_percent: u8,
    /// The clients started at every endpoint, not only at the leader.
    spread: bool,
    clients: u64,
    value_size: u64,
    warmup: f64,
    histogram: Histogram,
    errors: u64,
    seconds: f64,
}

impl Summary {
    fn new(args: &BenchArgs) -> Summary {
        Summary {
            op: args.op,
            consistency: args.consistency,
            read_percent: args.read_percent,
            spread: spread(args),
            clients: args.clients,
            value_size: args.value_size,
            warmup: args.warmup,
            histogram: Histogram::new(),
            errors: 0,
            seconds: 0.0,
        }
    }

    fn throughput(&self) -> f64 {
        if self.seconds > 0.0 {
            as_f64(self.histogram.count()) / self.seconds
        } else {
            0.0
        }
    }

    fn op_name(&self) -> &'static str {
        match self.op {
            BenchOp::Append => "append",
            BenchOp::Put => "put",
            BenchOp::Get => match self.consistency {
                Consistency::Linearizable => "get",
                Consistency::Lease => "get-lease",
                Consistency::Stale => "get-stale",
            },
        }
    }

    /// The latency columns, in the order both outputs give them: JSON field, table heading,
    /// microseconds.
    fn latencies(&self) -> [(&'static str, &'static str, u64); 5] {
        let h = &self.histogram;
        [
            ("p50_us", "p50 µs", h.quantile(0.50)),
            ("p90_us", "p90 µs", h.quantile(0.90)),
            ("p99_us", "p99 µs", h.quantile(0.99)),
            ("p999_us", "p99.9 µs", h.quantile(0.999)),
            ("max_us", "max µs", h.max()),
        ]
    }

    /// The JSON line, field for field as the anchor's loadgen prints it.
    fn json_line(&self) -> String {
        let mut line = format!(
            "{{\"backend\":\"alpo\",\"op\":\"{}\",\"clients\":{},\"value_size\":{},\"ops\":{},\
             \"seconds\":{:.3},\"throughput_ops_s\":{:.1}",
            self.op_name(),
            self.clients,
            self.value_size,
            self.histogram.count(),
            self.seconds,
            self.throughput(),
        );
        for (field, _, micros) in self.latencies() {
            let _ = write!(line, ",\"{field}\":{micros}");
        }
        let _ = write!(
            line,
            ",\"mean_us\":{:.1},\"errors\":{},\"warmup_s\":{}",
            self.histogram.mean(),
            self.errors,
            self.warmup,
        );
        if self.op == BenchOp::Get {
            let targets = if self.spread { "all" } else { "leader" };
            let _ = write!(
                line,
                ",\"read_percent\":{},\"targets\":\"{targets}\"",
                self.read_percent
            );
        }
        line.push('}');
        line
    }

    /// The human form: one header line and a two-row table.
    fn table(&self) -> String {
        let mut table = format!(
            "{} {}s of {} B by {} clients over {:.2} s (after {} s warm-up), {} errors\n{:>12}",
            self.histogram.count(),
            self.op_name(),
            self.value_size,
            self.clients,
            self.seconds,
            self.warmup,
            self.errors,
            "ops/s",
        );
        for (_, heading, _) in self.latencies() {
            let _ = write!(table, " {heading:>9}");
        }
        let _ = write!(table, " {:>9}\n{:>12.0}", "mean µs", self.throughput());
        for (_, _, micros) in self.latencies() {
            let _ = write!(table, " {micros:>9}");
        }
        let _ = write!(table, " {:>9.0}", self.histogram.mean());
        table
    }
}

/// A count as a float for ratios (exact below 2^53, which any run stays under).
fn as_f64(count: u64) -> f64 {
    count as f64
}

/// Exact below this many microseconds; above, `SUB_BUCKETS` buckets per power of two.
const SUB_BUCKETS: u64 = 128;
/// log2 of `SUB_BUCKETS`.
const SUB_BUCKET_BITS: u32 = 7;
/// Buckets: `2 * SUB_BUCKETS` exact ones, then `SUB_BUCKETS` per power of two up to 2^63.
const BUCKET_COUNT: usize = 2 * 128 + (63 - 8 + 1) * 128;

/// A log-bucketed latency histogram in the style of HDR histograms: values below 256 are exact;
/// above, each power of two is split into 128 buckets, so a bucket's width is at most 1/128 of
/// its values. Percentiles report a bucket's highest value, never below the true one.
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: u128,
    max: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKET_COUNT],
            count: 0,
            sum: 0,
            max: 0,
        }
    }

    /// The bucket of `value`.
    fn index(value: u64) -> usize {
        if value < 2 * SUB_BUCKETS {
            return usize::try_from(value).unwrap_or(usize::MAX);
        }
        let exponent = 63 - value.leading_zeros(); // >= SUB_BUCKET_BITS + 1
        let shift = exponent - SUB_BUCKET_BITS;
        let mantissa = (value >> shift) - SUB_BUCKETS; // in [0, SUB_BUCKETS)
        let bucket = 2 * SUB_BUCKETS + u64::from(exponent - SUB_BUCKET_BITS - 1) * SUB_BUCKETS;
        usize::try_from(bucket + mantissa).unwrap_or(usize::MAX)
    }

    /// The highest value that falls in bucket `index`.
    fn highest(index: usize) -> u64 {
        let index = u64::try_from(index).unwrap_or(u64::MAX);
        if index < 2 * SUB_BUCKETS {
            return index;
        }
        let above = index - 2 * SUB_BUCKETS;
        let shift = u32::try_from(above / SUB_BUCKETS).unwrap_or(u32::MAX) + 1;
        let mantissa = above % SUB_BUCKETS + SUB_BUCKETS;
        (mantissa << shift) + ((1 << shift) - 1)
    }

    fn record(&mut self, value: u64) {
        let index = Histogram::index(value);
        debug_assert!(index < BUCKET_COUNT, "invariant: every u64 has a bucket");
        if let Some(slot) = self.counts.get_mut(index) {
            *slot += 1;
        }
        self.count += 1;
        self.sum += u128::from(value);
        self.max = self.max.max(value);
    }

    fn add(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum += other.sum;
        self.max = self.max.max(other.max);
    }

    fn count(&self) -> u64 {
        self.count
    }

    fn max(&self) -> u64 {
        self.max
    }

    fn mean(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let sum = u64::try_from(self.sum).unwrap_or(u64::MAX);
        as_f64(sum) / as_f64(self.count)
    }

    /// The smallest bucket value `v` with at least `q * count` values at or below it (0 when
    /// empty), capped at the exact maximum.
    fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        // A float-to-integer `as` saturates; the rank is in [1, count].
        let rank = ((q.clamp(0.0, 1.0) * as_f64(self.count)).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Histogram::highest(index).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both outputs of one fixed run, byte for byte (the JSON fields are the anchor
    /// loadgen's, which `cargo xtask bench report` reads beside etcd's).
    #[test]
    fn json_line_and_table_of_a_fixed_run() {
        let mut summary = Summary {
            op: BenchOp::Put,
            consistency: Consistency::Linearizable,
            read_percent: 100,
            spread: false,
            clients: 4,
            value_size: 128,
            warmup: 1.0,
            histogram: Histogram::new(),
            errors: 2,
            seconds: 5.004,
        };
        for value in [90, 300, 301, 5000, 123_456] {
            summary.histogram.record(value);
        }
        assert_eq!(
            summary.json_line(),
            "{\"backend\":\"alpo\",\"op\":\"put\",\"clients\":4,\"value_size\":128,\"ops\":5,\
             \"seconds\":5.004,\"throughput_ops_s\":1.0,\"p50_us\":301,\"p90_us\":123456,\
             \"p99_us\":123456,\"p999_us\":123456,\"max_us\":123456,\"mean_us\":25829.4,\
             \"errors\":2,\"warmup_s\":1}"
        );
        assert_eq!(
            summary.table(),
            "5 puts of 128 B by 4 clients over 5.00 s (after 1 s warm-up), 2 errors\n       \
             ops/s    p50 µs    p90 µs    p99 µs  p99.9 µs    max µs   mean µs\n           \
             1       301    123456    123456    123456    123456     25829"
        );
    }

    /// Gets are spread over every endpoint unless pinned; appends and puts start at the
    /// leader; the get line says which.
    #[test]
    fn gets_spread_over_the_endpoints_unless_pinned() {
        #[derive(clap::Parser)]
        struct Line {
            #[command(flatten)]
            args: BenchArgs,
        }
        let endpoints = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3";
        let leader: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let plan_of = |extra: &[&str]| {
            let mut words = vec!["bench", "--endpoints", endpoints];
            words.extend_from_slice(extra);
            let line = <Line as clap::Parser>::try_parse_from(words).unwrap();
            let summary = Summary::new(&line.args);
            (
                drive_plan(&line.args, leader).unwrap().first_targets,
                summary,
            )
        };
        let (targets, summary) = plan_of(&["--op", "get"]);
        assert_eq!(targets.len(), 3);
        assert!(
            summary
                .json_line()
                .ends_with(",\"read_percent\":100,\"targets\":\"all\"}")
        );
        let (targets, summary) = plan_of(&["--op", "get", "--pin-leader"]);
        assert_eq!(targets, vec![leader]);
        assert!(summary.json_line().ends_with(",\"targets\":\"leader\"}"));
        for op in ["append", "put"] {
            let (targets, summary) = plan_of(&["--op", op]);
            assert_eq!(targets, vec![leader]);
            assert!(!summary.json_line().contains("targets"));
        }
    }

    #[test]
    fn buckets_are_exact_below_256_and_tight_above() {
        for value in [0, 1, 2, 127, 128, 255] {
            assert_eq!(Histogram::highest(Histogram::index(value)), value);
        }
        let mut previous = 0;
        for value in (256..2_000_000).step_by(7).chain([u64::MAX / 3, u64::MAX]) {
            let index = Histogram::index(value);
            assert!(index < BUCKET_COUNT, "{value} -> {index}");
            assert!(index >= previous, "buckets are monotonic");
            previous = index;
            let high = Histogram::highest(index);
            assert!(high >= value, "{value} -> bucket top {high}");
            assert!(high - value <= value / 128, "{value} -> bucket top {high}");
            if index > 0 {
                assert!(
                    Histogram::highest(index - 1) < value,
                    "{value} not in lower bucket"
                );
            }
        }
    }

    #[test]
    fn quantiles_of_a_uniform_run() {
        let mut h = Histogram::new();
        for value in 1..=10_000 {
            h.record(value);
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.max(), 10_000);
        for (q, exact) in [(0.5, 5_000), (0.9, 9_000), (0.99, 9_900), (0.999, 9_990)] {
            let got = h.quantile(q);
            assert!(
                got >= exact && got - exact <= exact / 128,
                "q {q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 10_000);
        assert!((h.mean() - 5_000.5).abs() < 1e-9);
    }

    #[test]
    fn merging_adds_counts_and_keeps_the_max() {
        let (mut a, mut b) = (Histogram::new(), Histogram::new());
        a.record(10);
        a.record(20);
        b.record(1_000_000);
        a.add(&b);
        assert_eq!(a.count(), 3);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(a.quantile(0.5), 20);
        assert_eq!(a.quantile(0.99), 1_000_000);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }

    #[test]
    fn seconds_are_checked() {
        assert_eq!(parse_seconds("2.5"), Ok(2.5));
        assert_eq!(parse_seconds("0"), Ok(0.0));
        assert!(parse_seconds("-1").unwrap_err().contains("out of range"));
        assert!(parse_seconds("NaN").unwrap_err().contains("out of range"));
        assert!(parse_seconds("soon").unwrap_err().contains("not a number"));
        assert!(parse_seconds("1e9").is_err());
    }

    #[test]
    fn values_differ_between_clients() {
        let (mut a, mut b) = ([0_u8; 16], [0_u8; 16]);
        fill_random(&mut a, 1);
        fill_random(&mut b, 2);
        assert_ne!(a, b);
        assert!(a.iter().any(|&x| x != a[0]), "not constant");
    }
}
