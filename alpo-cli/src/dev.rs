//! `alpo dev`: a local cluster on loopback in one command, with the built-in key-value store.
//!
//! Default layout (three nodes, base port 7100, cluster id 1): node `i` listens for peers on
//! `127.0.0.1:(7100 + i)` and for clients on `127.0.0.1:(7200 + i)`, so the client subcommands'
//! default `--endpoints` (`DEV_ENDPOINTS`) reach it with no flags. Data lives in
//! `<temp dir>/alpo-dev/node-<i>` unless `--dir` says otherwise, and survives restarts: running
//! `alpo dev` again recovers the same log. `--base-port 0` picks free ports instead (for tests
//! and for running two dev clusters); the endpoints line then says what to pass. Each node
//! serves metrics and the live cluster page on `127.0.0.1:(7300 + i)` (a free port with
//! `--base-port 0`; `--no-metrics` turns them off), and records its core's inputs for
//! `alpo replay` (`--no-recorder` turns that off).
//!
//! Invariants: the command prints every node's addresses, then a `ready` line once a leader is
//! elected, and on Ctrl-C (or if a node fails) stops every node, joining its threads, before it
//! exits.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use alpo_core::Role;
use alpo_node::{KvStateMachine, NodeConfig, PeerConfig, Server};

use crate::node_cmd::{RecorderArgs, SnapshotArgs};
use crate::signal::stop_signal;

/// The cluster id `alpo dev` uses and client subcommands assume by default.
pub(crate) const DEV_CLUSTER_ID: u64 = 1;

/// The client addresses of the default `alpo dev` cluster.
pub(crate) const DEV_ENDPOINTS: &str = "127.0.0.1:7201,127.0.0.1:7202,127.0.0.1:7203";

/// Node `i`'s peer port is `base + i`; its client port `base + CLIENT_PORT_OFFSET + i`.
const CLIENT_PORT_OFFSET: u16 = 100;

/// How long `alpo dev` waits for the first leader before saying so.
const LEADER_WAIT: Duration = Duration::from_secs(10);

/// Arguments of `alpo dev`.
#[derive(Debug, Args)]
pub(crate) struct DevArgs {
    /// How many nodes (1 to 9; odd numbers make sense).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Where the nodes keep their data (default: alpo-dev in the system temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Node i listens for peers on BASE+i and for clients on BASE+100+i; 0 picks free ports.
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// The cluster id.
    #[arg(long, default_value_t = DEV_CLUSTER_ID)]
    cluster_id: u64,
    #[command(flatten)]
    snapshots: SnapshotArgs,
    /// Issue 16: TLS with client certificates on both ports; certificates are made in
    /// DIR/certs on first use (`alpo certs init`) and reused after. Prints the `export` line
    /// for the client commands.
    #[arg(long)]
    tls: bool,
    /// Serve no metrics and no live page (on by default in `alpo dev`, at BASE+200+i).
    #[arg(long)]
    no_metrics: bool,
    #[command(flatten)]
    recorder: RecorderArgs,
}

/// Node `i`'s metrics port is `base + METRICS_PORT_OFFSET + i`.
const METRICS_PORT_OFFSET: u16 = 200;

pub(crate) fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    let stop = stop_signal()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("alpo-dev"));
    let (configs, listeners) = layout(&args, &dir)?;
    let servers = start_all(configs, listeners)?;
    say!(
        "alpo dev: {} nodes of cluster {}, data in {}",
        args.nodes,
        args.cluster_id,
        dir.display()
    );
    for server in &servers {
        say!(
            "  node {}  clients {}  peers {}",
            server.id(),
            server.client_addr(),
            server.peer_addr()
        );
        if let Some(addr) = server.metrics_addr() {
            say!("          metrics http://{addr}/metrics  live page http://{addr}/");
        }
    }
    let endpoints: Vec<String> = servers
        .iter()
        .map(|s| s.client_addr().to_string())
        .collect();
    say!("endpoints: {}", endpoints.join(","));
    if endpoints.join(",") != DEV_ENDPOINTS {
        say!(
            "(client commands need --endpoints {} --cluster-id {})",
            endpoints.join(","),
            args.cluster_id
        );
    }
    if args.tls {
        say!("TLS on both ports; for the client commands:");
        say!("{}", crate::certs_cmd::export_line(&dev_client_tls(&dir)));
    }
    say!("try: alpo append hello; alpo read; alpo put greeting hi; alpo get greeting; alpo status");
    match wait_for_leader(&servers) {
        Some(id) => say!("ready: node {id} is leader; Ctrl-C stops the cluster"),
        None => say!("no leader after {LEADER_WAIT:?}; still trying (ALPO_LOG=info shows why)"),
    }
    let failed = wait_for_stop(&stop, &servers);
    for server in &servers {
        let stats = server.storage_stats();
        let id = server.id();
        say!(
            "node {id}: {} entries written with {} syncs",
            stats.entry_count,
            stats.sync_count
        );
    }
    for server in servers {
        if let Err(error) = server.stop() {
            eprintln!("alpo: {:#}", anyhow::Error::new(error));
        }
    }
    say!("stopped");
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Every node's configuration, and its bound peer listener.
fn layout(
    args: &DevArgs,
    dir: &std::path::Path,
) -> anyhow::Result<(Vec<NodeConfig>, Vec<TcpListener>)> {
    let mut listeners = Vec::new();
    let mut client_addrs = Vec::new();
    for id in 1..=args.nodes {
        let offset = u16::try_from(id).context("node id")?;
        let (peer, client) = if args.base_port == 0 {
            (0, free_port()?)
        } else {
            let peer = args
                .base_port
                .checked_add(offset)
                .context("--base-port is too high")?;
            let client = peer
                .checked_add(CLIENT_PORT_OFFSET)
                .context("--base-port is too high")?;
            (peer, client)
        };
        let listener = TcpListener::bind(("127.0.0.1", peer)).with_context(|| {
            format!("port {peer} is taken: is another alpo dev running? (try --base-port 0)")
        })?;
        listeners.push(listener);
        client_addrs.push(SocketAddr::from(([127, 0, 0, 1], client)));
    }
    let peer_addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    let members: Vec<PeerConfig> = (0..listeners.len())
        .map(|i| PeerConfig {
            id: i as u64 + 1,
            peer_addr: peer_addrs[i],
            client_addr: client_addrs[i],
        })
        .collect();
    let mut configs = NodeConfig::for_members(args.cluster_id, dir, &members);
    for config in &mut configs {
        config.snapshots = args.snapshots.policy();
        let log = args.snapshots.log_settings();
        config.log.cache_bytes_max = log.cache_bytes_max;
        config.log.scrub_bytes_per_sec = log.scrub_bytes_per_sec;
        config.recorder = args.recorder.settings();
        if !args.no_metrics {
            let port = match args.base_port {
                0 => 0,
                base => u16::try_from(config.id)
                    .ok()
                    .and_then(|id| base.checked_add(METRICS_PORT_OFFSET + id))
                    .context("--base-port is too high")?,
            };
            config.metrics.address = Some(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    if args.tls {
        let certs_dir = dir.join("certs");
        let ids: Vec<u64> = configs.iter().map(|config| config.id).collect();
        if !certs_dir.join("ca.pem").exists() {
            crate::certs_cmd::init(&certs_dir, &ids)?;
        }
        for config in &mut configs {
            config.tls = Some(alpo_node::tls::TlsSettings {
                ca: certs_dir.join("ca.pem"),
                cert: certs_dir.join(format!("node-{}.pem", config.id)),
                key: certs_dir.join(format!("node-{}-key.pem", config.id)),
                require_client_cert: true,
            });
        }
    }
    Ok((configs, listeners))
}

/// The client files of a `--tls` dev cluster in `dir`.
fn dev_client_tls(dir: &std::path::Path) -> alpo_node::tls::TlsPaths {
    let certs_dir = dir.join("certs");
    alpo_node::tls::TlsPaths {
        ca: certs_dir.join("ca.pem"),
        cert: Some(certs_dir.join("client.pem")),
        key: Some(certs_dir.join("client-key.pem")),
    }
}

/// Starts every node at once (each recovers its own log, which takes a moment).
fn start_all(configs: Vec<NodeConfig>, listeners: Vec<TcpListener>) -> anyhow::Result<Vec<Server>> {
    let started: Vec<anyhow::Result<Server>> = std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .into_iter()
            .zip(listeners)
            .map(|(config, listener)| {
                scope.spawn(move || {
                    let id = config.id;
                    Server::start_with_listener(config, listener, KvStateMachine::new())
                        .with_context(|| format!("starting node {id}"))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a node panicked while starting")))
            })
            .collect()
    });
    started.into_iter().collect()
}

/// A free loopback port: bound, read and released (another process could take it in between,
/// which `alpo dev` then reports as a bind error).
fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_for_leader(servers: &[Server]) -> Option<u64> {
    let deadline = Instant::now() + LEADER_WAIT;
    while Instant::now() < deadline {
        if let Some(leader) = servers.iter().find(|s| s.status().role == Role::Leader) {
            return Some(leader.id().0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Waits for Ctrl-C or a node failure; `true` if a node failed.
fn wait_for_stop(stop: &std::sync::mpsc::Receiver<()>, servers: &[Server]) -> bool {
    loop {
        if stop.recv_timeout(Duration::from_millis(200)).is_ok() {
            say!("stopping");
            return false;
        }
        if let Some(server) = servers.iter().find(|s| s.is_stopped()) {
            let failure = server.failure();
            let error = failure.map_or_else(|| anyhow::anyhow!("unknown"), anyhow::Error::new);
            eprintln!("alpo: node {}: {error:#}", server.id());
            return true;
        }
    }
}
