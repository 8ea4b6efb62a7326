//! The `alpo` command: run ALPO nodes, talk to a cluster and inspect logs.
//!
//! Each subcommand lives in its own module; this file only parses arguments and dispatches.
//! Exit codes (stable, for scripts):
//! - 0: success;
//! - 1: the operation failed (the message says why: a refused request, a bad file, a fatal
//!   storage error);
//! - 2: bad usage (clap's own code for an invalid argument);
//! - 3: the cluster is unavailable (no node answered in time, no leader);
//! - 4: a negative answer: `get` found no such key, `cas` found another value, `delete` found
//!   nothing to delete.
//!
//! Logging goes to standard error through `tracing`, filtered by `ALPO_LOG` (or `RUST_LOG`;
//! default `warn`), as text or, with `--log-format json`, one JSON object a line.

/// Prints a progress line to standard output, ignoring a closed pipe: a long-running command
/// (`alpo dev`, `alpo node`) must still stop its nodes cleanly when nobody reads its output.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

mod bench;
mod certs_cmd;
mod client_cmd;
mod dev;
mod json;
mod log_cmd;
mod member_cmd;
mod node_cmd;
mod output;
mod replay_cmd;
mod signal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// ALPO: a replicated log built on distributed consensus.
#[derive(Debug, Parser)]
#[command(name = "alpo", version, about)]
struct Cli {
    /// How log lines on stderr look: `text` for people, `json` (one object a line) for tools.
    /// Which lines: the `ALPO_LOG` filter (`RUST_LOG` syntax, e.g. `info` or
    /// `alpo_node=debug`); default `warn`.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The `--log-format` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The environment variable holding the log filter.
const LOG_FILTER_VAR: &str = "ALPO_LOG";

/// Sets up `tracing`'s subscriber: `ALPO_LOG` (or `RUST_LOG`, the older name) filters, stderr
/// receives, `format` shapes each line.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env(LOG_FILTER_VAR)
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one node of a cluster (from a TOML file or flags).
    Node(node_cmd::NodeArgs),
    /// Run a local cluster on loopback for development (Ctrl-C stops it).
    Dev(dev::DevArgs),
    /// Append a value to the log; prints its index once committed.
    Append(client_cmd::AppendArgs),
    /// Read committed entries.
    Read(client_cmd::ReadArgs),
    /// Set a key in the built-in key-value store.
    Put(client_cmd::PutArgs),
    /// Read a key from the built-in key-value store (linearizable by default, no log write).
    Get(client_cmd::GetArgs),
    /// Remove a key from the built-in key-value store.
    Delete(client_cmd::KeyArgs),
    /// Compare-and-set a key in the built-in key-value store.
    Cas(client_cmd::CasArgs),
    /// Show each node's role, term, leader and indices (snapshot and first retained included).
    Status(client_cmd::StatusArgs),
    /// Ask each node to take a snapshot now; prints its index once durable.
    Snapshot(client_cmd::TakeSnapshotArgs),
    /// List the cluster's members, add a member, promote a learner, remove a member (issue 12).
    Member(member_cmd::MemberArgs),
    /// Hand the leadership to a voter (the most up-to-date one by default); prints the new
    /// leader once it leads.
    TransferLeader(member_cmd::TransferArgs),
    /// Measure append throughput and latency against a running cluster.
    Bench(bench::BenchArgs),
    /// Inspect log directories offline (dump, verify).
    Log(log_cmd::LogArgs),
    /// Make TLS certificates for development and tests (a CA, nodes, a client).
    Certs(certs_cmd::CertsArgs),
    /// Replay a node's flight-recorder traces, check the outputs, print its history.
    Replay(replay_cmd::ReplayArgs),
}

/// Exit code: the operation failed.
const EXIT_FAILED: u8 = 1;
/// Exit code: no node answered in time, or no leader.
const EXIT_UNAVAILABLE: u8 = 3;
/// Exit code: a negative answer (no such key, compare-and-set mismatch).
pub(crate) const EXIT_NEGATIVE: u8 = 4;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let result = match cli.command {
        Command::Node(args) => node_cmd::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Append(args) => client_cmd::append(args),
        Command::Read(args) => client_cmd::read(args),
        Command::Put(args) => client_cmd::put(args),
        Command::Get(args) => client_cmd::get(args),
        Command::Delete(args) => client_cmd::delete(args),
        Command::Cas(args) => client_cmd::cas(args),
        Command::Status(args) => client_cmd::status(args),
        Command::Snapshot(args) => client_cmd::snapshot(args),
        Command::Member(args) => member_cmd::member(args),
        Command::TransferLeader(args) => member_cmd::transfer_leader(args),
        Command::Bench(args) => bench::run(args),
        Command::Log(args) => log_cmd::run(args),
        Command::Certs(args) => certs_cmd::run(args),
        Command::Replay(args) => replay_cmd::run(args),
    };
    match result {
        Ok(code) => code,
        // `alpo read | head`: the reader has what it wanted; ending quietly is success.
        Err(error) if output::is_output_closed(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("alpo: {error:#}");
            ExitCode::from(exit_code_of(&error))
        }
    }
}

/// 3 when the cluster could not be reached or had no leader, 1 otherwise.
fn exit_code_of(error: &anyhow::Error) -> u8 {
    let unavailable = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<alpo_node::Error>(),
            Some(alpo_node::Error::Unavailable { .. } | alpo_node::Error::Timeout { .. })
        )
    });
    if unavailable {
        EXIT_UNAVAILABLE
    } else {
        EXIT_FAILED
    }
}
