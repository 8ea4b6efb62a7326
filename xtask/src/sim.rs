//! `cargo xtask sim`: a soak of the deterministic simulator in `alpo_core::sim`.
//!
//! `cargo xtask sim --seeds N [--start S] [--seed S] [--nodes K] [--deferral on|off]
//! [--fault-ms MS] [--profile Standard|LeaderChurn|HoldAcrossTerms] [--snapshots on|off]
//! [--drift-beyond-lease on|off] [--membership on|off] [--disk-faults on|off] [--inject BUG]
//! [--jobs J] [--log]`
//!
//! `--snapshots on` runs the snapshot profile (`SimOptions::snapshots`: snapshots every few
//! entries, compaction, installs in small chunks); it is off by default, so the seeds of the
//! other profiles give the results they always gave. `--drift-beyond-lease on` turns lease reads
//! on and lets clocks drift 25 times their bound (`SimOptions::drift_beyond_lease`, issue 14):
//! `read_linearizability` is expected to fire there, and only there. `--membership on` runs
//! the membership profile (`SimOptions::membership`, issue 12: random membership changes and
//! leadership transfers at the leader, and the configuration checker), off by default likewise.
//! `--disk-faults on` runs the storage-fault profile (`SimOptions::disk_faults`, issue 13:
//! hard-state copies rot at crashes and at rest, rules F8 and F9), off by default likewise.
//!
//! Runs seeds `S .. S + N` (or the one `--seed`) on `J` threads (default: every core), prints
//! each failure with its replay command, then one summary line
//! `seeds=N violations=V messages=… msgs_per_sec_per_core=…` and the election statistics (terms
//! started and simulated milliseconds from the loss of a leader to the next leader, p50/p99,
//! with deferral on and off). Exits 1 if any seed violated a property. Results do not depend on
//! `--jobs`: each seed's run is independent and deterministic. With `--seed S --log` it prints
//! the run's event log (sends, starts, crashes, nemesis actions) before the result.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alpo_core::InjectedBug;
use alpo_core::sim::{FaultProfile, RunReport, SimOptions, SoakSummary, run_seed};
use anyhow::{Context, Result, bail};

/// Failures printed in full; the rest are counted.
const FAILURE_PRINT_COUNT_MAX: usize = 20;

/// What the command line asked for.
#[derive(Debug)]
struct Args {
    seed_count: u64,
    start: u64,
    single: Option<u64>,
    job_count: usize,
    options: SimOptions,
}

/// Entry point: `args` are the words after `sim`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    match parse(args).map(|a| run(&a)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtask sim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn parse(args: &[String]) -> Result<Args> {
    let mut parsed = Args {
        seed_count: 1_000,
        start: 0x5EED_0000_0000,
        single: None,
        job_count: std::thread::available_parallelism().map_or(1, |n| n.get()),
        options: SimOptions::soak(),
    };
    let mut words = args.iter();
    while let Some(flag) = words.next() {
        if flag == "--log" {
            parsed.options.event_log = true;
            continue;
        }
        let value = words
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        let o = &mut parsed.options;
        match flag.as_str() {
            "--seeds" => parsed.seed_count = number(flag, value)?,
            "--start" => parsed.start = number(flag, value)?,
            "--seed" => parsed.single = Some(number(flag, value)?),
            "--jobs" => parsed.job_count = usize::try_from(number(flag, value)?.max(1))?,
            "--nodes" => o.node_count = Some(usize::try_from(number(flag, value)?)?),
            "--fault-ms" => o.fault_phase_ms = number(flag, value)?,
            "--deferral" => o.deferral = Some(on_off(flag, value)?),
            "--profile" => o.profile = Some(profile(value)?),
            "--inject" => o.injected_bug = Some(bug(value)?),
            "--snapshots" => o.snapshots = on_off(flag, value)?,
            "--drift-beyond-lease" => o.drift_beyond_lease = on_off(flag, value)?,
            "--membership" => o.membership = on_off(flag, value)?,
            "--disk-faults" => o.disk_faults = on_off(flag, value)?,
            other => bail!("unknown flag {other:?} (see the doc of xtask/src/sim.rs)"),
        }
    }
    if let Some(k) = parsed.options.node_count
        && ![3, 5, 7].contains(&k)
    {
        bail!("--nodes {k}: the simulator runs clusters of 3, 5 or 7 nodes");
    }
    Ok(parsed)
}

fn number(flag: &str, value: &str) -> Result<u64> {
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.replace('_', "").parse(),
    };
    parsed.with_context(|| format!("{flag} {value:?}: expected a number (decimal or 0x hex)"))
}

fn on_off(flag: &str, value: &str) -> Result<bool> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => bail!("{flag} {value:?}: expected on or off"),
    }
}

fn profile(value: &str) -> Result<FaultProfile> {
    match value {
        "Standard" | "standard" => Ok(FaultProfile::Standard),
        "LeaderChurn" | "leader-churn" => Ok(FaultProfile::LeaderChurn),
        "HoldAcrossTerms" | "hold-across-terms" => Ok(FaultProfile::HoldAcrossTerms),
        _ => bail!("--profile {value:?}: expected Standard, LeaderChurn or HoldAcrossTerms"),
    }
}

fn bug(value: &str) -> Result<InjectedBug> {
    InjectedBug::ALL
        .into_iter()
        .find(|bug| format!("{bug:?}") == value)
        .with_context(|| {
            let names: Vec<String> = InjectedBug::ALL.iter().map(|b| format!("{b:?}")).collect();
            format!("--inject {value:?}: expected one of {}", names.join(", "))
        })
}

/// Runs the soak (or the single seed) and prints the results; true when every seed passed.
fn run(args: &Args) -> bool {
    if let Some(seed) = args.single {
        let report = run_seed(seed, &args.options);
        for line in &report.event_log {
            println!("{line}");
        }
        println!("{report}");
        if let Some(e) = report.election {
            println!(
                "election deferral={} rounds={} ticks_ms={}",
                e.deferral, e.round_count, e.ticks_ms
            );
        }
        return report.passed();
    }
    let wall = Instant::now();
    let (reports, busy) = run_all(args);
    let wall = wall.elapsed();
    let mut summary = SoakSummary::default();
    for report in &reports {
        summary.add(report);
    }
    for report in reports
        .iter()
        .filter(|r| !r.passed())
        .take(FAILURE_PRINT_COUNT_MAX)
    {
        println!("{report}");
    }
    print_summary(&summary, wall, busy);
    summary.violation_count == 0
}

/// Runs every seed on `job_count` threads; returns the reports in seed order and the summed
/// CPU time the threads spent inside runs.
fn run_all(args: &Args) -> (Vec<RunReport>, Duration) {
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::new());
    let busy_ns = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..args.job_count {
            scope.spawn(|| {
                let started = Instant::now();
                let cpu_started = thread_cpu_ns();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= args.seed_count {
                        break;
                    }
                    mine.push(run_seed(args.start.wrapping_add(i), &args.options));
                }
                // CPU time when the OS reports it (the machine may be shared), else wall time.
                let spent = match (cpu_started, thread_cpu_ns()) {
                    (Some(a), Some(b)) => b.saturating_sub(a),
                    _ => u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
                };
                busy_ns.fetch_add(spent, Ordering::Relaxed);
                results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(mine);
            });
        }
    });
    let mut reports = results.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|r| r.seed);
    (reports, Duration::from_nanos(busy_ns.into_inner()))
}

/// CPU time of the calling thread in nanoseconds, from Linux's `/proc/thread-self/schedstat`
/// (first field: time spent running); `None` elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn print_summary(summary: &SoakSummary, wall: Duration, busy: Duration) {
    let busy_secs = busy.as_secs_f64().max(1e-9);
    // Precision loss converting counts to f64 is irrelevant for a rate printed with no decimals.
    #[allow(clippy::cast_precision_loss)]
    let per_core = summary.message_count as f64 / busy_secs;
    println!(
        "seeds={} violations={} messages={} steps={} committed={} wall_s={:.1} cpu_s={:.1} \
         msgs_per_sec_per_core={:.0}",
        summary.seed_count,
        summary.violation_count,
        summary.message_count,
        summary.step_count,
        summary.committed_count,
        wall.as_secs_f64(),
        busy_secs,
        per_core
    );
    println!("violations by checker: {}", summary.violations_line());
    for line in summary.election_lines() {
        println!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn flags_parse_into_options() {
        let a = parse(&words(
            "--seeds 10 --nodes 5 --deferral off --seed 0x2a --jobs 1",
        ))
        .unwrap();
        assert_eq!(a.seed_count, 10);
        assert_eq!(a.single, Some(42));
        assert_eq!(a.job_count, 1);
        assert_eq!(a.options.node_count, Some(5));
        assert_eq!(a.options.deferral, Some(false));
        let a = parse(&words(
            "--inject GrantTwoVotesPerTerm --profile LeaderChurn",
        ))
        .unwrap();
        assert_eq!(
            a.options.injected_bug,
            Some(InjectedBug::GrantTwoVotesPerTerm)
        );
        assert_eq!(a.options.profile, Some(FaultProfile::LeaderChurn));
        let a = parse(&words(
            "--inject CountStaleAppendReply --profile HoldAcrossTerms",
        ))
        .unwrap();
        assert_eq!(
            a.options.injected_bug,
            Some(InjectedBug::CountStaleAppendReply)
        );
        assert_eq!(a.options.profile, Some(FaultProfile::HoldAcrossTerms));
        assert!(!a.options.snapshots);
        let a = parse(&words("--snapshots on")).unwrap();
        assert!(a.options.snapshots);
        assert!(!a.options.membership);
        let a = parse(&words("--membership on")).unwrap();
        assert!(a.options.membership);
    }

    #[test]
    fn bad_flags_are_named() {
        let err = parse(&words("--nodes 4")).unwrap_err().to_string();
        assert!(err.contains("--nodes 4"), "{err}");
        let err = parse(&words("--seeds ten")).unwrap_err().to_string();
        assert!(err.contains("--seeds \"ten\""), "{err}");
        let err = parse(&words("--seeds")).unwrap_err().to_string();
        assert!(err.contains("needs a value"), "{err}");
        assert!(parse(&words("--frobnicate 1")).is_err());
        let err = parse(&words("--inject Typo")).unwrap_err().to_string();
        assert!(err.contains("CountStaleAppendReply"), "{err}");
    }

    #[test]
    fn a_small_soak_runs_and_counts() {
        let args = parse(&words("--seeds 4 --jobs 2 --fault-ms 500")).unwrap();
        let (reports, _) = run_all(&args);
        let seeds: Vec<u64> = reports.iter().map(|r| r.seed).collect();
        assert_eq!(seeds, (0..4).map(|i| args.start + i).collect::<Vec<_>>());
    }
}
