//! `alpo log dump|verify`: offline inspection of a log directory.
//!
//! SKELETON: filled in under issue 2.

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Arguments of `alpo log`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Check every record of a log directory.
    Verify {
        /// The log directory.
        dir: std::path::PathBuf,
    },
}

/// Runs `alpo log …`.
pub(crate) fn run(args: LogArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LogCommand::Verify { dir } => anyhow::bail!("log verify is not built yet: {}", dir.display()),
    }
}
