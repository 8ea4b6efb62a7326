//! `cargo xtask`: ALPO's project automation, as a workspace member behind a cargo alias.
//!
//! Tasks are subcommands; with no arguments it prints the list. Tidy checks are `#[test]`s in
//! `tidy.rs`, so `cargo test --workspace` runs them and nothing lives only in CI.

mod sim;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <task>

tasks:
  help            print this list
  sim             simulator soak: --seeds N [--seed S] [--nodes K] [--deferral on|off] …
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help" | "--help" | "-h") => {
            print!("{HELP}");
            ExitCode::SUCCESS
        }
        Some("sim") => sim::main(&args[1..]),
        Some(other) => {
            eprintln!("xtask: unknown task {other:?}\n\n{HELP}");
            ExitCode::from(2)
        }
    }
}
