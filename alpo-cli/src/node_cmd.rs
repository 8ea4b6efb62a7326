//! `alpo node`: run one node of a cluster, configured by a TOML file (`--config`) or by flags,
//! with the built-in key-value store as its state machine.
//!
//! Issue 12: `--join ENDPOINTS` starts a new node into a running cluster (`Server::join`): it
//! asks the nodes at ENDPOINTS for the members and their addresses, needs its own id among them
//! (`alpo member add` first) and an empty data directory.
//!
//! Invariants: the configuration is validated before anything starts, and a bad one is refused
//! with the field and the problem; the node runs until Ctrl-C (SIGINT or SIGTERM), then stops
//! cleanly, or until a fatal storage error, which is reported (naming the file) with exit code 1.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use alpo_node::tls::TlsSettings;
use alpo_node::{
    KvStateMachine, LogSettings, MetricsSettings, NodeConfig, PeerConfig, ReadSettings,
    RecorderSettings, Server, Snapshots, Timeouts,
};

use crate::dev::DEV_CLUSTER_ID;
use crate::signal::stop_signal;

/// Arguments of `alpo node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// A TOML configuration file (see docs/operations.md); excludes the other flags.
    #[arg(
        long,
        conflicts_with_all = ["id", "data_dir", "peer_addr", "client_addr", "peers", "tls_ca"]
    )]
    config: Option<PathBuf>,
    /// This node's id (non-zero, unique in the cluster).
    #[arg(long)]
    id: Option<u64>,
    /// The cluster's id.
    #[arg(long, default_value_t = DEV_CLUSTER_ID)]
    cluster_id: u64,
    /// Where the node keeps its log and hard state.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on for other nodes.
    #[arg(long)]
    peer_addr: Option<SocketAddr>,
    /// Address to listen on for clients.
    #[arg(long)]
    client_addr: Option<SocketAddr>,
    /// Another node, as ID=PEER_ADDR,CLIENT_ADDR (repeat for each).
    #[arg(long = "peer")]
    peers: Vec<PeerConfig>,
    /// Heartbeat interval of an idle leader, in milliseconds.
    #[arg(long, default_value_t = Timeouts::lan().heartbeat_interval_ms)]
    heartbeat_interval_ms: u64,
    /// Shortest passive timeout, in milliseconds.
    #[arg(long, default_value_t = Timeouts::lan().passive_timeout_ms_min)]
    passive_timeout_ms_min: u64,
    /// Longest passive timeout (exclusive), in milliseconds.
    #[arg(long, default_value_t = Timeouts::lan().passive_timeout_ms_max)]
    passive_timeout_ms_max: u64,
    /// Shortest election cycle, in milliseconds.
    #[arg(long, default_value_t = Timeouts::lan().election_cycle_ms_min)]
    election_cycle_ms_min: u64,
    /// Longest election cycle (exclusive), in milliseconds.
    #[arg(long, default_value_t = Timeouts::lan().election_cycle_ms_max)]
    election_cycle_ms_max: u64,
    #[command(flatten)]
    snapshots: SnapshotArgs,
    /// Lease reads (rule Q3): the bound on every node's clock drift, in parts per million
    /// (20000 = 2%); 0 (the default) turns leases off. See docs/operations.md, Reads.
    #[arg(long, default_value_t = 0)]
    lease_drift_ppm: u32,
    #[command(flatten)]
    tls: TlsArgs,
    /// Serve Prometheus metrics at /metrics, and the live cluster page at /, on this address
    /// (overrides `[metrics] address` of --config); off unless set.
    #[arg(long)]
    metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    recorder: RecorderArgs,
    /// Join a running cluster (issue 12): client addresses of any of its nodes, comma
    /// separated. Add the node first with `alpo member add ID PEER_ADDR,CLIENT_ADDR`; the data
    /// directory must be empty. Restart a joined node later without --join.
    #[arg(long, value_delimiter = ',')]
    join: Vec<SocketAddr>,
}

/// The flight recorder's flags, shared by `alpo node` and `alpo dev`.
#[derive(Clone, Copy, Debug, Args)]
pub(crate) struct RecorderArgs {
    /// Do not record the core's inputs (the flight recorder is on by default; `alpo replay`
    /// replays what it recorded).
    #[arg(long)]
    no_recorder: bool,
    /// Disk the recorder's trace files may use together, in bytes; the oldest go first.
    #[arg(long, default_value_t = RecorderSettings::default().disk_bytes_max)]
    recorder_disk_bytes_max: u64,
}

impl RecorderArgs {
    /// The recorder settings these flags give.
    pub(crate) fn settings(self) -> RecorderSettings {
        RecorderSettings {
            enabled: !self.no_recorder,
            disk_bytes_max: self.recorder_disk_bytes_max,
        }
    }
}

/// Issue 16: the TLS flags of `alpo node` (the `[tls]` table of a configuration file).
#[derive(Clone, Debug, Args)]
pub(crate) struct TlsArgs {
    /// The cluster CA's certificate (PEM): with it, both ports speak TLS only.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM), naming `node-<ID>.alpo` and `server.alpo`.
    #[arg(long, requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// Let clients connect without a certificate (they still check the node's).
    #[arg(long, requires = "tls_ca")]
    tls_client_cert_optional: bool,
}

impl TlsArgs {
    fn settings(self) -> Option<TlsSettings> {
        Some(TlsSettings {
            ca: self.tls_ca?,
            cert: self.tls_cert?,
            key: self.tls_key?,
            require_client_cert: !self.tls_client_cert_optional,
        })
    }
}

/// The snapshot policy's flags and the core's entry cache, shared by `alpo node` and `alpo dev`.
#[derive(Clone, Copy, Debug, Args)]
pub(crate) struct SnapshotArgs {
    /// Take a snapshot after this many applied entries since the last one; 0 never does.
    #[arg(long, default_value_t = Snapshots::default().interval_entries)]
    snapshot_interval_entries: u64,
    /// Log entries kept below a snapshot for followers that are a little behind.
    #[arg(long, default_value_t = Snapshots::default().retain_entries)]
    snapshot_retain_entries: u64,
    /// Payload bytes of recent log entries kept in memory (rule S9); older ones are read back
    /// from the log files. Entries not yet committed are always kept.
    #[arg(long, default_value_t = LogSettings::default().cache_bytes_max)]
    log_cache_bytes_max: u64,
}

impl SnapshotArgs {
    /// The policy these flags give.
    pub(crate) fn policy(self) -> Snapshots {
        Snapshots {
            interval_entries: self.snapshot_interval_entries,
            retain_entries: self.snapshot_retain_entries,
        }
    }

    /// The log settings these flags give (the default segment size).
    pub(crate) fn log_settings(self) -> LogSettings {
        LogSettings {
            cache_bytes_max: self.log_cache_bytes_max,
            ..LogSettings::default()
        }
    }
}

pub(crate) fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let join = args.join.clone();
    let config = match &args.config {
        Some(path) => {
            let mut config = NodeConfig::load(path)?;
            if let Some(addr) = args.metrics_addr {
                config.metrics.address = Some(addr);
            }
            config
        }
        None => from_flags(args)?,
    };
    let stop = stop_signal()?;
    let server = if join.is_empty() {
        Server::start(config, KvStateMachine::new()).context("starting the node")?
    } else {
        let members = cluster_members(&config, join)?;
        Server::join(config, &members, KvStateMachine::new()).context("joining the cluster")?
    };
    say!(
        "node {} running: clients on {}, peers on {} (Ctrl-C stops it)",
        server.id(),
        server.client_addr(),
        server.peer_addr()
    );
    if let Some(addr) = server.metrics_addr() {
        say!("metrics: http://{addr}/metrics, live page: http://{addr}/");
    }
    while stop.recv_timeout(Duration::from_millis(200)).is_err() {
        if server.is_stopped() {
            let id = server.id();
            let failure = server.failure();
            let error = failure.map_or_else(|| anyhow::anyhow!("unknown"), anyhow::Error::new);
            return Err(error.context(format!("node {id}")));
        }
    }
    server.stop().context("stopping the node")?;
    say!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// The members of the cluster at `endpoints`, with their addresses, for a join.
fn cluster_members(
    config: &NodeConfig,
    endpoints: Vec<SocketAddr>,
) -> anyhow::Result<alpo_node::member_protocol::Members> {
    let options = alpo_node::ClientOptions::new(alpo_core::ClusterId(config.cluster_id));
    let tls = match &config.tls {
        Some(settings) => {
            let paths = alpo_node::tls::TlsPaths {
                ca: settings.ca.clone(),
                cert: Some(settings.cert.clone()),
                key: Some(settings.key.clone()),
            };
            Some(alpo_node::tls::TlsConfig::load(&paths).context("loading the TLS files")?)
        }
        None => None,
    };
    let mut client = alpo_node::Client::new(endpoints.clone(), options)?.with_tls(tls);
    let members = client.members().with_context(|| {
        let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
        format!(
            "asking the cluster {} at {} for its members",
            config.cluster_id,
            list.join(",")
        )
    })?;
    Ok(members)
}

fn from_flags(args: NodeArgs) -> anyhow::Result<NodeConfig> {
    let missing = |flag: &str| anyhow::anyhow!("{flag} is required (or give --config FILE)");
    let config = NodeConfig {
        id: args.id.ok_or_else(|| missing("--id"))?,
        cluster_id: args.cluster_id,
        data_dir: args.data_dir.ok_or_else(|| missing("--data-dir"))?,
        peer_addr: args.peer_addr.ok_or_else(|| missing("--peer-addr"))?,
        client_addr: args.client_addr.ok_or_else(|| missing("--client-addr"))?,
        peers: args.peers,
        timeouts: Timeouts {
            heartbeat_interval_ms: args.heartbeat_interval_ms,
            passive_timeout_ms_min: args.passive_timeout_ms_min,
            passive_timeout_ms_max: args.passive_timeout_ms_max,
            election_cycle_ms_min: args.election_cycle_ms_min,
            election_cycle_ms_max: args.election_cycle_ms_max,
        },
        snapshots: args.snapshots.policy(),
        log: args.snapshots.log_settings(),
        reads: ReadSettings {
            lease_drift_ppm: args.lease_drift_ppm,
        },
        tls: args.tls.settings(),
        metrics: MetricsSettings {
            address: args.metrics_addr,
        },
        recorder: args.recorder.settings(),
    };
    config.validate()?;
    Ok(config)
}
