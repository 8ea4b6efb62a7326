//! The `alpo` command: run ALPO nodes, talk to a cluster and inspect logs.
//!
//! Each subcommand lives in its own module; this file only parses arguments and dispatches.
//! Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage (clap).

mod log_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ALPO: a replicated log built on distributed consensus.
#[derive(Debug, Parser)]
#[command(name = "alpo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Inspect log directories offline (dump, verify).
    Log(log_cmd::LogArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Log(args) => log_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("alpo: {error:#}");
            ExitCode::from(1)
        }
    }
}
