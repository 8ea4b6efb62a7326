//! `alpo certs init DIR` (issue 16): a cluster CA, one certificate per node and a client
//! certificate, for development and tests (docs/operations.md, TLS). Production clusters may use
//! their own CA; only the names matter (`node-<id>.alpo` and `server.alpo` on a node's
//! certificate).
//!
//! Invariant: never overwrites a file (a second `init` in the same directory is refused, naming
//! the file), so a cluster's CA cannot be replaced by accident.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use alpo_core::NodeId;
use alpo_node::tls::certs;

/// Arguments of `alpo certs`.
#[derive(Debug, Args)]
pub(crate) struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(Debug, Subcommand)]
enum CertsCommand {
    /// Make a CA, node certificates and a client certificate in DIR.
    Init(InitArgs),
}

/// Arguments of `alpo certs init`.
#[derive(Debug, Args)]
struct InitArgs {
    /// Where to write the PEM files (created if missing).
    dir: PathBuf,
    /// The node ids to make certificates for, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<u64>,
}

pub(crate) fn run(args: CertsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CertsCommand::Init(args) => {
            let files = init(&args.dir, &args.nodes)?;
            say!(
                "CA: {} (key {})",
                files.ca.display(),
                files.ca_key.display()
            );
            for (id, paths) in &files.nodes {
                say!("node {id}: {}", describe(paths));
            }
            say!("client: {}", describe(&files.client));
            say!("{}", export_line(&files.client));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Makes the files; node ids must be non-zero.
pub(crate) fn init(dir: &Path, nodes: &[u64]) -> anyhow::Result<certs::InitFiles> {
    if let Some(zero) = nodes.iter().find(|id| **id == 0) {
        anyhow::bail!("--nodes: node id {zero} must be above zero");
    }
    let ids: Vec<NodeId> = nodes.iter().copied().map(NodeId).collect();
    certs::init(dir, &ids).with_context(|| format!("making certificates in {}", dir.display()))
}

fn describe(paths: &alpo_node::tls::TlsPaths) -> String {
    let show = |path: &Option<PathBuf>| {
        path.as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    };
    format!("{} (key {})", show(&paths.cert), show(&paths.key))
}

/// The one line after which the client commands reach a TLS cluster with these files.
pub(crate) fn export_line(client: &alpo_node::tls::TlsPaths) -> String {
    let show = |path: &Option<PathBuf>| {
        path.as_ref()
            .map_or(String::new(), |p| p.display().to_string())
    };
    format!(
        "export ALPO_TLS_CA={} ALPO_TLS_CERT={} ALPO_TLS_KEY={}",
        client.ca.display(),
        show(&client.cert),
        show(&client.key)
    )
}
