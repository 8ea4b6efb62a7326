//! `alpo bench`: a closed-loop append benchmark against a running cluster. Each of `--clients`
//! threads appends values of `--size` bytes one at a time until `--count` appends are done in
//! all; the command prints throughput and latency percentiles.
//!
//! Invariants: the run is bounded by `--count` (at most `BENCH_COUNT_MAX`) and each request by
//! the client timeout; every append is acknowledged (committed) before it is counted.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::client_cmd::ClientFlags;
use crate::json::Value;

/// The most appends one run may make.
const BENCH_COUNT_MAX: u64 = 10_000_000;

/// Arguments of `alpo bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Concurrent clients (each with one request in flight).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=1024))]
    clients: u64,
    /// Appends in all.
    #[arg(long, default_value_t = 10_000, value_parser = count_range())]
    count: u64,
    /// Bytes per appended value.
    #[arg(long, default_value_t = 64)]
    size: usize,
    #[command(flatten)]
    flags: ClientFlags,
}

fn count_range() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(1..=BENCH_COUNT_MAX)
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let next = AtomicU64::new(0);
    let value = vec![b'x'; args.size];
    let started = Instant::now();
    let results: Vec<anyhow::Result<Vec<Duration>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..args.clients)
            .map(|_| {
                let (next, value, flags) = (&next, &value, &args.flags);
                scope.spawn(move || -> anyhow::Result<Vec<Duration>> {
                    let mut client = flags.client()?;
                    let mut latencies = Vec::new();
                    while next.fetch_add(1, Ordering::Relaxed) < args.count {
                        let sent = Instant::now();
                        client.append(value.clone()).context("append failed")?;
                        latencies.push(sent.elapsed());
                    }
                    Ok(latencies)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a client thread panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut latencies = Vec::new();
    for result in results {
        latencies.extend(result?);
    }
    latencies.sort();
    report(&args, elapsed, &latencies)?;
    Ok(ExitCode::SUCCESS)
}

fn report(args: &BenchArgs, elapsed: Duration, latencies: &[Duration]) -> anyhow::Result<()> {
    let percentile = |p: usize| {
        latencies.get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
    };
    let micros =
        |d: Option<&Duration>| d.map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let count = latencies.len() as u64;
    let per_second = (count as f64 / elapsed.as_secs_f64()).round() as u64;
    let json = Value::Object(vec![
        ("appends", Value::Number(count)),
        ("clients", Value::Number(args.clients)),
        ("value_bytes", Value::Number(args.size as u64)),
        (
            "elapsed_ms",
            Value::Number(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)),
        ),
        ("appends_per_second", Value::Number(per_second)),
        ("latency_us_p50", Value::Number(micros(percentile(50)))),
        ("latency_us_p90", Value::Number(micros(percentile(90)))),
        ("latency_us_p99", Value::Number(micros(percentile(99)))),
        ("latency_us_max", Value::Number(micros(latencies.last()))),
    ]);
    let text = format!(
        "{count} appends of {} bytes by {} clients in {:.2} s: {per_second} appends/s; \
         latency p50 {} us, p90 {} us, p99 {} us, max {} us",
        args.size,
        args.clients,
        elapsed.as_secs_f64(),
        micros(percentile(50)),
        micros(percentile(90)),
        micros(percentile(99)),
        micros(latencies.last()),
    );
    crate::client_cmd::print(args.flags.json, &json, &text)
}
