//! `cargo xtask`: ALPO's project automation, as a workspace member behind a cargo alias.
//!
//! Tasks are subcommands; with no arguments it prints the list. Tidy checks are `#[test]`s in
//! `tidy.rs`, so `cargo test --workspace` runs them and nothing lives only in CI.

mod bench;
mod sim;
mod test_cluster;

use std::path::Path;
use std::process::ExitCode;

use xtask::history::History;
use xtask::linearizability::{self, STEPS_MAX_DEFAULT, Verdict};

const HELP: &str = "\
cargo xtask <task>

tasks:
  help            print this list
  bench           cluster benchmarks: bench cluster [--clients 1,8,64,256] [--duration 5] …;
                  [--variant NAME=NODE-FLAGS]… [--variant-bench NAME=BENCH-FLAGS]…
                  [--variant-alpo NAME=PATH]… [--client-flags FLAGS];
                  bench report FILE.jsonl… (markdown table + SVG plot);
                  bench memory|restart|catchup (issue 11: RSS and disk over 10M appends,
                  restart time, catch-up MiB/s) [--alpo PATH] [--snapshot-interval N] …
  check-history   re-check a kept history (JSON lines) for linearizability:
                  check-history FILE [--steps N]; exit 0 linearizable, 1 not, 3 unknown
  page-test       the live cluster page in headless Chromium (/usr/bin/chromium): shows the
                  leader, then the new one after a kill; keeps a screenshot [--out DIR]
  sim             simulator soak: --seeds N [--seed S] [--nodes K] [--deferral on|off] …
  test-cluster    real `alpo node` processes under a seeded nemesis, then safety checks:
                  [--nodes 3|5] [--duration SECS] [--clients N] [--seed S] [--keep DIR]
                  [--nemesis kill,pause,partition,restart,lag,disk|all|none]
                  [--snapshot-interval N] [--snapshot-retain N] (default 2000/500 when the
                  binary takes snapshots, none otherwise)
                  [--lease-drift-ppm PPM] (read leases on every node, default 20000; 0 off)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("sim") => sim::main(&args[1..]),
        Some("bench") => bench::main(&args[1..]),
        Some("test-cluster") => test_cluster::main(&args[1..]),
        Some("page-test") => bench::page::main(&args[1..]),
        Some("check-history") => check_history(&args[1..]),
        Some(other) => {
            eprintln!("xtask: unknown task {other:?}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}

/// `check-history FILE [--steps N]`: runs the linearizability checker on a history kept by a
/// cluster test run and prints the verdict.
fn check_history(args: &[String]) -> ExitCode {
    let usage = "usage: cargo xtask check-history FILE [--steps N]";
    let (path, steps_max) = match args {
        [path] => (path, STEPS_MAX_DEFAULT),
        [path, flag, steps] if flag == "--steps" => match steps.parse() {
            Ok(steps) => (path, steps),
            Err(_) => {
                eprintln!("xtask: --steps wants a number, found {steps:?}\n{usage}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("xtask: {usage}");
            return ExitCode::from(2);
        }
    };
    let verdict = History::load(Path::new(path)).and_then(|history| {
        Ok((
            history.ops.len(),
            linearizability::check_history(&history, steps_max)?,
        ))
    });
    match verdict {
        Ok((count, Verdict::Linearizable)) => {
            println!("{path}: {count} operations, linearizable");
            ExitCode::SUCCESS
        }
        Ok((_, Verdict::NotLinearizable(violation))) => {
            println!("{path}: {violation}");
            ExitCode::FAILURE
        }
        Ok((_, Verdict::Unknown { partition, steps })) => {
            println!(
                "{path}: unknown: {partition} was not decided in {steps} steps (raise --steps)"
            );
            ExitCode::from(3)
        }
        Err(error) => {
            eprintln!("xtask: {:#}", anyhow::Error::new(error));
            ExitCode::from(2)
        }
    }
}
