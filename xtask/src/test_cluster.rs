//! `cargo xtask test-cluster`: a real cluster of `alpo node` processes on loopback, concurrent
//! clients recording a history, a seeded nemesis (kill -9, SIGSTOP/SIGCONT, network faults
//! through a fault-injecting proxy on every peer link, crash-restart), then the checks of
//! issue 6 on the healed, converged cluster:
//! 1. every acknowledged append is committed exactly once at its acknowledged index and every
//!    node's committed log is the same sequence wherever two nodes still hold an index, with no
//!    hole between a node's snapshot and its log (`lost_acks`, `duplicates`, `log_problems`);
//! 2. the key-value history is linearizable, indeterminate operations possibly applied;
//! 3. progress during faults: throughput per second and the longest window without a successful
//!    write (`max_unavailable_ms`, reported, not judged: no wall-clock pass/fail here).
//!
//! Also judged: no two nodes ever said they lead the same term, no node exited on its own, the
//! cluster converged after healing, and it accepted writes again after the last fault.
//!
//! Snapshots (issue 11): when the binary takes them (`alpo node --help` lists the flags), every
//! node's config gets `[snapshots] interval_entries / retain_entries` (2000 / 500 unless
//! `--snapshot-interval` / `--snapshot-retain` say otherwise; interval 0 turns them off), and the
//! `lag` nemesis keeps a follower down long enough to need an install. Check 1 then reads the
//! committed log through a tailer during the run and the stopped nodes' data directories after
//! it (`cluster::logs`); the summary adds the snapshots taken and installed (snapshot files seen
//! in the data directories) and the committed indices no node could be asked for before they
//! were compacted (`unchecked_indices`, not judged).
//!
//! Reads (issue 14): every node gets a read lease (`[reads] lease_drift_ppm`, 20,000 unless
//! `--lease-drift-ppm` says otherwise; 0 turns leases off). Gets are ReadIndex or lease reads
//! served by leader and followers alike, and one pinned reader per node keeps sending gets to
//! that node only, so a leader the `partition` nemesis isolates (`isolate leader`) or the
//! `pause` nemesis stops keeps receiving reads; check 2 holds them all to linearizability. No
//! nemesis drifts a clock (real clocks stay within the bound; drift beyond it is a simulator
//! fault, `drift_beyond_lease`).
//!
//! The run directory (`--keep DIR`, else a temporary one, deleted on success and printed on
//! failure) holds `history.jsonl`, `faults.txt`, `leaders.txt`, `throughput.txt`,
//! `timeline.svg`, `run.txt` (seed and the command that replays it), node configs, node logs
//! and data directories. The last line printed is the summary; the exit code is 1 on any
//! violation, 2 on a usage or setup error.
//!
//! Invariant: every process started is killed on every exit path (see `cluster::process`).

#[path = "cluster/checks.rs"]
mod checks;
#[path = "cluster/disk_damage.rs"]
mod disk_damage;
#[path = "cluster/logs.rs"]
mod logs;
#[path = "cluster/membership.rs"]
mod membership;
#[path = "cluster/process.rs"]
pub(crate) mod process;
#[path = "cluster/traces.rs"]
mod traces;
#[path = "cluster/workload.rs"]
mod workload;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use xtask::history::{History, Outcome, Recorder, Reply};
use xtask::linearizability::{self, STEPS_MAX_DEFAULT, Verdict};
use xtask::nemesis::{
    self, Action, FaultId, FaultKind, NemesisConfig, NetworkFault, NodeIndex, Schedule,
};
use xtask::proxy::Mesh;
use xtask::timeline::{FaultBand, LeaderSpan, OpSample, Timeline, write_svg};

use logs::{Disk, SnapshotCount, Tail, Tailer};
use process::{NodeSpec, Nodes, Snapshots};
use workload::LeaderLog;

/// The usage text.
pub(crate) const USAGE: &str = "usage: cargo xtask test-cluster [--nodes 3|5] [--duration SECS] \
[--clients N] [--nemesis kill,pause,partition,restart,lag,disk,membership|all|none] [--seed S] \
[--keep DIR] [--snapshot-interval N] [--snapshot-retain N] [--log-cache-bytes N] [--tls] \
[--lease-drift-ppm PPM] [--trace-file-bytes N]";

/// Each node's trace file size unless `--trace-file-bytes` says otherwise (issue 15): small, so
/// every run cuts traces into files that begin with checkpoints, which the replay must start
/// from and cross.
const TRACE_FILE_BYTES_DEFAULT: u64 = 256 * 1024;
/// Each node's trace budget: a few files, so a busy node's ring drops its oldest files and the
/// replay starts from a checkpoint.
const TRACE_FILES_KEPT: u64 = 32;

/// Snapshot interval (entries) when the binary takes snapshots and none is given: small, so
/// snapshots, compaction and installs happen under every nemesis of a short run.
const SNAPSHOT_INTERVAL_DEFAULT: u64 = 2_000;
/// Entries retained below a snapshot by default: small, so a lagging follower needs a snapshot.
const SNAPSHOT_RETAIN_DEFAULT: u64 = 500;
/// The core's entry cache (rule S9) when the binary has one and none is given: smaller than the
/// entries retained below a snapshot (a few hundred of the workload's entries), so replication
/// to a lagging follower and apply after a restart read entries back from the log files under
/// every nemesis, not only from memory (256 KiB gave 4 such reads in a 30 s run, 8 KiB 64).
const LOG_CACHE_BYTES_DEFAULT: u64 = 8 * 1024;
/// How often the data directories are scanned for new snapshot files.
const SNAPSHOT_SCAN_EVERY: Duration = Duration::from_millis(200);

/// The clock drift bound of the nodes' read leases unless `--lease-drift-ppm` says otherwise
/// (the operations guide's safe bound for ordinary clocks).
const LEASE_DRIFT_PPM_DEFAULT: u32 = 20_000;

/// How long the healed cluster may take to agree on one committed log.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the nodes may take to answer their first status and elect a first leader.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The command-line options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Options {
    nodes: usize,
    duration_s: u64,
    clients: u64,
    kinds: Vec<FaultKind>,
    seed: u64,
    keep: Option<PathBuf>,
    /// `--snapshot-interval`: `None` picks by what the binary supports (see [`snapshots_for`]).
    snapshot_interval: Option<u64>,
    /// `--snapshot-retain`.
    snapshot_retain: Option<u64>,
    /// `--log-cache-bytes` (rule S9): `None` picks by what the binary supports (see
    /// [`log_cache_for`]).
    log_cache_bytes: Option<u64>,
    /// `--tls` (issue 16): TLS with client certificates on every port; the proxies forward the
    /// TLS bytes unchanged.
    tls: bool,
    /// `--lease-drift-ppm` (issue 14): the nodes' read-lease drift bound; 0 turns leases off
    /// (then every get is a ReadIndex read).
    lease_drift_ppm: u32,
    /// `--trace-file-bytes` (issue 15): the nodes' trace file size; the budget holds
    /// [`TRACE_FILES_KEPT`] files.
    trace_file_bytes: u64,
}

/// Parses the arguments after `test-cluster`.
pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        nodes: 3,
        duration_s: 60,
        clients: 4,
        kinds: FaultKind::ALL.to_vec(),
        seed: default_seed(),
        keep: None,
        snapshot_interval: None,
        snapshot_retain: None,
        log_cache_bytes: None,
        tls: false,
        lease_drift_ppm: LEASE_DRIFT_PPM_DEFAULT,
        trace_file_bytes: TRACE_FILE_BYTES_DEFAULT,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "--tls" {
            options.tls = true;
            continue;
        }
        let value = rest.next().ok_or_else(|| format!("{flag} wants a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} wants a number, found {value:?}"))
        };
        match flag.as_str() {
            "--nodes" => {
                options.nodes = usize::try_from(number()?).map_err(|e| e.to_string())?;
            }
            "--duration" => options.duration_s = number()?,
            "--clients" => options.clients = number()?,
            "--seed" => options.seed = number()?,
            "--keep" => options.keep = Some(PathBuf::from(value)),
            "--nemesis" => options.kinds = parse_kinds(value)?,
            "--snapshot-interval" => options.snapshot_interval = Some(number()?),
            "--snapshot-retain" => options.snapshot_retain = Some(number()?),
            "--log-cache-bytes" => options.log_cache_bytes = Some(number()?),
            "--trace-file-bytes" => options.trace_file_bytes = number()?,
            "--lease-drift-ppm" => {
                options.lease_drift_ppm = u32::try_from(number()?)
                    .ok()
                    .filter(|ppm| *ppm < 1_000_000)
                    .ok_or_else(|| {
                        format!("--lease-drift-ppm must be below 1000000, found {value}")
                    })?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if !(1..=9).contains(&options.nodes) {
        return Err(format!("--nodes must be 1..=9, found {}", options.nodes));
    }
    if options.duration_s < 5 {
        return Err(format!(
            "--duration must be at least 5 s, found {}",
            options.duration_s
        ));
    }
    if options.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    Ok(options)
}

fn parse_kinds(text: &str) -> Result<Vec<FaultKind>, String> {
    match text {
        "all" => Ok(FaultKind::ALL.to_vec()),
        "none" => Ok(Vec::new()),
        list => list
            .split(',')
            .map(|name| {
                FaultKind::parse(name.trim()).ok_or_else(|| {
                    format!(
                        "unknown nemesis {name:?} (kill, pause, partition, restart, lag, disk, \
                         membership, all, none)"
                    )
                })
            })
            .collect(),
    }
}

/// The `[snapshots]` table the nodes get. A binary that takes snapshots (`supported`) gets
/// the given or default interval and retention (interval 0 turns them off); one that does not
/// gets no table, and asking it for snapshots is an error.
fn snapshots_for(options: &Options, supported: bool) -> Result<Option<Snapshots>, String> {
    if !supported {
        return match options.snapshot_interval {
            Some(interval) if 0 < interval => Err(format!(
                "--snapshot-interval {interval}: this alpo binary takes no snapshots (its \
                 `alpo node --help` lists no {})",
                process::SNAPSHOT_FLAG
            )),
            _ => Ok(None),
        };
    }
    Ok(Some(Snapshots {
        interval_entries: options
            .snapshot_interval
            .unwrap_or(SNAPSHOT_INTERVAL_DEFAULT),
        retain_entries: options.snapshot_retain.unwrap_or(SNAPSHOT_RETAIN_DEFAULT),
    }))
}

/// The `[log] cache_bytes_max` the nodes get: the given or default size when the binary's
/// core has an entry cache (`supported`), none otherwise (and asking for one is an error).
fn log_cache_for(options: &Options, supported: bool) -> Result<Option<u64>, String> {
    match (options.log_cache_bytes, supported) {
        (Some(bytes), false) => Err(format!(
            "--log-cache-bytes {bytes}: this alpo binary has no entry cache (its `alpo node \
             --help` lists no {})",
            process::LOG_CACHE_FLAG
        )),
        (_, false) => Ok(None),
        (given, true) => Ok(Some(given.unwrap_or(LOG_CACHE_BYTES_DEFAULT))),
    }
}

fn default_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| u64::try_from(since.as_micros()).unwrap_or(1))
}

/// Runs `test-cluster` with `args`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let options = match parse(args) {
        Ok(options) => options,
        Err(problem) => {
            eprintln!("xtask test-cluster: {problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dir = options.keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "alpo-test-cluster-{}-{}",
            options.seed,
            std::process::id()
        ))
    });
    eprintln!(
        "test-cluster: seed {} nodes {} duration {}s, run directory {}",
        options.seed,
        options.nodes,
        options.duration_s,
        dir.display()
    );
    let outcome = prepare_dir(&dir).and_then(|()| run(&options, &dir));
    match outcome {
        Ok(report) => {
            println!("{}", report.line);
            if report.violations.is_empty() {
                if options.keep.is_none() {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                ExitCode::SUCCESS
            } else {
                for violation in &report.violations {
                    eprintln!("test-cluster: VIOLATION: {violation}");
                }
                eprintln!(
                    "test-cluster: failed; seed {}, history, node logs and timeline kept in {}",
                    options.seed,
                    dir.display()
                );
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!(
                "test-cluster: error: {error:#}\nrun directory kept in {}",
                dir.display()
            );
            ExitCode::from(2)
        }
    }
}

fn prepare_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stale = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .next()
        .is_some();
    if stale {
        bail!(
            "run directory {} is not empty; give a fresh --keep DIR",
            dir.display()
        );
    }
    Ok(())
}

/// The result of a run that got as far as the checks.
#[derive(Debug)]
struct Report {
    line: String,
    violations: Vec<String>,
}

/// Everything a running test owns. Dropping it stops the threads' loops and kills every node.
struct Cluster {
    nodes: Nodes,
    mesh: Mesh,
    endpoints: Vec<std::net::SocketAddr>,
    recorder: Arc<Recorder>,
    leaders: Arc<Mutex<LeaderLog>>,
    stop_clients: Arc<AtomicBool>,
    stop_pollers: Arc<AtomicBool>,
    /// Nodes that exited without being killed (a violation: see their logs).
    crashed: Vec<String>,
    /// Issue 13: each node's data directory (the disk nemesis damages it while it is down).
    data_dirs: Vec<PathBuf>,
    /// Issue 13: draws the disk nemesis's bytes (seeded from the run's seed).
    damage_rng: nemesis::SplitMix64,
    /// Issue 12: TLS on (the membership nemesis then replaces no node: the certificates name
    /// the ids the run started with).
    tls: bool,
    /// Issue 12: the id the next node added under a new id gets.
    next_id: u64,
    /// The run directory (node configs, data directories).
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_clients.store(true, Ordering::SeqCst);
        self.stop_pollers.store(true, Ordering::SeqCst);
        self.nodes.kill_all();
    }
}

/// The snapshot policy the nodes run with, in words.
fn describe_snapshots(snapshots: Option<process::Snapshots>) -> String {
    match snapshots {
        Some(s) => format!(
            "snapshots every {} entries, {} retained below each",
            s.interval_entries, s.retain_entries
        ),
        None => "snapshots off".to_string(),
    }
}

/// The snapshot policy and entry cache the nodes get (issue 11), said on standard error.
fn bounded_state_for(options: &Options, binary: &Path) -> Result<(Option<Snapshots>, Option<u64>)> {
    let snapshots =
        snapshots_for(options, process::supports_snapshots(binary)?).map_err(anyhow::Error::msg)?;
    eprintln!("test-cluster: {}", describe_snapshots(snapshots));
    let log_cache =
        log_cache_for(options, process::supports_log_cache(binary)?).map_err(anyhow::Error::msg)?;
    if let Some(bytes) = log_cache {
        eprintln!("test-cluster: entry cache of {bytes} bytes per node (rule S9)");
    }
    Ok((snapshots, log_cache))
}

fn run(options: &Options, dir: &Path) -> Result<Report> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has no parent directory")?;
    eprintln!("test-cluster: building alpo (release)");
    let binary = process::build_alpo(workspace)?;
    let (snapshots, log_cache) = bounded_state_for(options, &binary)?;
    let duration_ms = options.duration_s * 1_000;
    let config = NemesisConfig::new(options.seed, options.nodes, duration_ms, &options.kinds);
    let schedule = nemesis::schedule(&config).map_err(anyhow::Error::new)?;
    write_run_files(options, dir, &schedule)?;
    let mut cluster = start_cluster(options, dir, binary, snapshots, log_cache)?;
    wait_for_leader(&cluster)?;
    let start_us = cluster.recorder.now_us();
    let clients = start_clients(&cluster, options)?;
    let pollers = start_pollers(&cluster)?;
    let tailer = Tailer::new(cluster.endpoints.clone()).spawn(Arc::clone(&cluster.stop_pollers))?;
    let data_dirs = (0..options.nodes)
        .map(|i| process::data_dir(dir, i))
        .collect();
    let watcher = logs::spawn_snapshot_watcher(
        data_dirs,
        SNAPSHOT_SCAN_EVERY,
        Arc::clone(&cluster.stop_pollers),
    )?;
    let nemesis_result = run_nemesis(&mut cluster, &schedule, start_us, duration_ms);
    cluster.stop_clients.store(true, Ordering::SeqCst);
    let client_result = join_clients(clients);
    let end_us = cluster.recorder.now_us();
    heal_all(&mut cluster)?;
    nemesis_result?;
    client_result?;
    let history = cluster.recorder.snapshot();
    history
        .save(&dir.join("history.jsonl"))
        .map_err(anyhow::Error::new)?;
    let converged = checks::converge(&cluster.endpoints, CONVERGE_TIMEOUT);
    cluster.stop_pollers.store(true, Ordering::SeqCst);
    for poller in pollers {
        let _ = poller.join();
    }
    let tailer = tailer
        .join()
        .map_err(|_| anyhow::anyhow!("the log tailer panicked"))?;
    let snapshot_count = watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the snapshot watcher panicked"))?;
    let converged = converged.and_then(|commit| {
        let tail = tailer.finish(commit, CONVERGE_TIMEOUT)?;
        Ok((commit, tail))
    });
    let window = Window {
        start_us,
        end_us,
        healed_by_us: start_us + schedule.healed_by_ms * 1_000,
    };
    let end = End {
        converged,
        snapshots,
        snapshot_count,
        log_cache,
    };
    let report = judge(&mut cluster, options, &history, end, window, dir)?;
    draw(&cluster, options, &history, &schedule, window, dir)?;
    Ok(report)
}

fn write_run_files(options: &Options, dir: &Path, schedule: &Schedule) -> Result<()> {
    let kinds: Vec<&str> = options.kinds.iter().map(|kind| kind.name()).collect();
    let nemesis = if kinds.is_empty() {
        "none".to_owned()
    } else {
        kinds.join(",")
    };
    let snapshots = match (options.snapshot_interval, options.snapshot_retain) {
        (None, None) => String::new(),
        (interval, retain) => {
            let flag = |name: &str, value: Option<u64>| {
                value.map_or(String::new(), |v| format!(" --snapshot-{name} {v}"))
            };
            flag("interval", interval) + &flag("retain", retain)
        }
    };
    let snapshots = match options.log_cache_bytes {
        Some(bytes) => format!("{snapshots} --log-cache-bytes {bytes}"),
        None => snapshots,
    };
    let snapshots = if options.lease_drift_ppm == LEASE_DRIFT_PPM_DEFAULT {
        snapshots
    } else {
        format!("{snapshots} --lease-drift-ppm {}", options.lease_drift_ppm)
    };
    let run = format!(
        "seed = {}\nreplay: cargo xtask test-cluster --nodes {} --duration {} --clients {} \
         --nemesis {nemesis} --seed {}{snapshots} --keep NEW_DIR\n",
        options.seed, options.nodes, options.duration_s, options.clients, options.seed
    );
    write(dir, "run.txt", &run)?;
    let mut faults = String::new();
    for span in &schedule.faults {
        let _ = writeln!(
            faults,
            "{:>7} ms .. {:>7} ms  {:?}  {}",
            span.start_ms, span.end_ms, span.kind, span.label
        );
    }
    write(dir, "faults.txt", &faults)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn start_cluster(
    options: &Options,
    dir: &Path,
    binary: PathBuf,
    snapshots: Option<Snapshots>,
    log_cache: Option<u64>,
) -> Result<Cluster> {
    let count = options.nodes;
    // Hold every reserved port until the proxies are bound, so no proxy takes a node's port.
    let reserved = process::reserve_ports(2 * count, options.seed)?;
    let addrs: Vec<_> = reserved
        .iter()
        .map(std::net::TcpListener::local_addr)
        .collect::<Result<_, _>>()
        .context("reading a reserved port")?;
    let specs: Vec<NodeSpec> = (0..count)
        .map(|i| NodeSpec {
            id: u64::try_from(i).unwrap_or(u64::MAX - 1) + 1,
            peer_addr: addrs[2 * i],
            client_addr: addrs[2 * i + 1],
            config_path: dir.join(format!("n{i}.toml")),
            log_path: dir.join(format!("n{i}.log")),
        })
        .collect();
    let certs = options.tls.then(|| make_certs(dir, count)).transpose()?;
    let peer_addrs: Vec<_> = specs.iter().map(|spec| spec.peer_addr).collect();
    let mesh = Mesh::start(&peer_addrs).context("starting the proxies")?;
    for i in 0..count {
        let via: Vec<_> = (0..count)
            .map(|j| {
                mesh.addr(NodeIndex(i), NodeIndex(j))
                    .unwrap_or(peer_addrs[j])
            })
            .collect();
        process::write_config(dir, &specs, i, &via, snapshots)?;
        if let Some(bytes) = log_cache {
            process::append_log_cache(&specs[i], bytes)?;
        }
        if let Some(certs) = &certs {
            process::append_tls(&specs[i], &certs.nodes[i].1)?;
        }
        if options.lease_drift_ppm != 0 {
            process::append_reads(&specs[i], options.lease_drift_ppm)?;
        }
        let trace_budget = (options.trace_file_bytes * TRACE_FILES_KEPT)
            .max(alpo_node::limits::RECORDER_DISK_BYTES_MIN);
        process::append_recorder(&specs[i], trace_budget, options.trace_file_bytes)?;
        process::create_empty(&specs[i].log_path)?;
    }
    drop(reserved);
    let endpoints = specs.iter().map(|spec| spec.client_addr).collect();
    let mut nodes = Nodes::new(binary, specs);
    for i in 0..count {
        nodes.start(i)?;
    }
    Ok(Cluster {
        nodes,
        mesh,
        endpoints,
        recorder: Arc::new(Recorder::new()),
        leaders: Arc::new(Mutex::new(LeaderLog::default())),
        stop_clients: Arc::new(AtomicBool::new(false)),
        stop_pollers: Arc::new(AtomicBool::new(false)),
        crashed: Vec::new(),
        data_dirs: (0..count).map(|i| process::data_dir(dir, i)).collect(),
        damage_rng: nemesis::SplitMix64::new(options.seed ^ 0xd15c),
        tls: options.tls,
        next_id: u64::try_from(count)? + 1,
        dir: dir.to_path_buf(),
    })
}

/// Issue 16: certificates for a `--tls` run in `dir/certs`, and every client of the run set to
/// use the client certificate.
fn make_certs(dir: &Path, count: usize) -> Result<alpo_node::tls::certs::InitFiles> {
    let ids: Vec<alpo_core::NodeId> = (1..=u64::try_from(count)?).map(alpo_core::NodeId).collect();
    let files = alpo_node::tls::certs::init(&dir.join("certs"), &ids)?;
    workload::use_tls(alpo_node::tls::TlsConfig::load(&files.client)?);
    eprintln!(
        "test-cluster: TLS on every port (certificates in {})",
        dir.join("certs").display()
    );
    Ok(files)
}

/// Waits until one node says it leads, so the run starts from a working cluster.
fn wait_for_leader(cluster: &Cluster) -> Result<()> {
    let mut client = workload::new_client(cluster.endpoints.clone(), workload::client_options())?;
    let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
    while std::time::Instant::now() < deadline {
        for endpoint in &cluster.endpoints {
            if let Ok(status) = client.status_of(*endpoint)
                && status.role == alpo_core::Role::Leader
            {
                return Ok(());
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    bail!("no leader within {STARTUP_TIMEOUT:?} of starting the nodes (see the n*.log files)")
}

/// The workload clients `1..=clients`, then one pinned reader per node (ids after them), so
/// every node, an isolated or deposed leader included, keeps receiving reads (issue 14).
fn start_clients(cluster: &Cluster, options: &Options) -> Result<Vec<JoinHandle<Result<()>>>> {
    let leases = options.lease_drift_ppm != 0;
    let mut handles = (1..=options.clients)
        .map(|id| {
            workload::spawn_client(
                id,
                options.seed,
                leases,
                cluster.endpoints.clone(),
                Arc::clone(&cluster.recorder),
                Arc::clone(&cluster.stop_clients),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    for (index, endpoint) in cluster.endpoints.iter().enumerate() {
        handles.push(workload::spawn_pinned_reader(
            options.clients + 1 + u64::try_from(index)?,
            options.seed,
            leases,
            *endpoint,
            Arc::clone(&cluster.recorder),
            Arc::clone(&cluster.stop_clients),
        )?);
    }
    Ok(handles)
}

fn start_pollers(cluster: &Cluster) -> Result<Vec<JoinHandle<()>>> {
    cluster
        .endpoints
        .iter()
        .enumerate()
        .map(|(index, endpoint)| {
            workload::spawn_poller(
                index,
                *endpoint,
                Arc::clone(&cluster.recorder),
                Arc::clone(&cluster.leaders),
                Arc::clone(&cluster.stop_pollers),
            )
        })
        .collect()
}

fn join_clients(clients: Vec<JoinHandle<Result<()>>>) -> Result<()> {
    for client in clients {
        match client.join() {
            Ok(result) => result?,
            Err(_) => bail!("a client thread panicked"),
        }
    }
    Ok(())
}

/// Executes the schedule in real time, then waits for the end of the run.
fn run_nemesis(
    cluster: &mut Cluster,
    schedule: &Schedule,
    start_us: u64,
    duration_ms: u64,
) -> Result<()> {
    let mut hit: std::collections::BTreeMap<FaultId, usize> = Default::default();
    let log_path = cluster.nodes.specs()[0]
        .log_path
        .with_file_name("nemesis.txt");
    let mut log = String::new();
    for timed in &schedule.actions {
        sleep_until(&cluster.recorder, start_us + timed.at_ms * 1_000);
        let done = execute(cluster, &timed.action, &mut hit)?;
        let now_ms = (cluster.recorder.now_us() - start_us) / 1_000;
        let _ = writeln!(log, "{now_ms:>7} ms  {done}");
        for (index, status) in cluster.nodes.exited() {
            let _ = writeln!(log, "{now_ms:>7} ms  n{index} exited on its own ({status})");
            cluster.crashed.push(format!(
                "node n{index} exited on its own ({status}) near {now_ms} ms"
            ));
        }
    }
    sleep_until(&cluster.recorder, start_us + duration_ms * 1_000);
    std::fs::write(&log_path, log).with_context(|| format!("writing {}", log_path.display()))
}

fn sleep_until(recorder: &Recorder, at_us: u64) {
    let now = recorder.now_us();
    if now < at_us {
        thread::sleep(Duration::from_micros(at_us - now));
    }
}

/// Runs one nemesis action; returns what was done, for the log.
fn execute(
    cluster: &mut Cluster,
    action: &Action,
    hit: &mut std::collections::BTreeMap<FaultId, usize>,
) -> Result<String> {
    let now_ms = cluster.recorder.now_us() / 1_000;
    let leader = cluster
        .leaders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .current(now_ms);
    let down = cluster.nodes.down();
    Ok(match action {
        Action::Kill { fault, target } | Action::Pause { fault, target } => {
            let Some(node) = nemesis::resolve_target(*target, leader, &down) else {
                return Ok(format!("{action:?}: every node is down, skipped"));
            };
            hit.insert(*fault, node.0);
            if matches!(action, Action::Kill { .. }) {
                cluster.nodes.kill(node.0)?;
                format!("kill -9 n{} ({target})", node.0)
            } else {
                cluster.nodes.signal_pause(node.0, true)?;
                format!("SIGSTOP n{} ({target})", node.0)
            }
        }
        Action::Start { fault } => match hit.get(fault) {
            Some(&node) => {
                cluster.nodes.start(node)?;
                format!("start n{node}")
            }
            None => "start: nothing was killed".into(),
        },
        Action::DamageAndStart { fault, damage } => match hit.get(fault) {
            Some(&node) => {
                let dir = cluster.data_dirs[node].clone();
                let done = disk_damage::damage(&dir, *damage, &mut cluster.damage_rng)?;
                cluster.nodes.start(node)?;
                format!("n{node}: {done}; start n{node}")
            }
            None => "damage: nothing was killed".into(),
        },
        Action::Resume { fault } => match hit.get(fault) {
            Some(&node) => {
                cluster.nodes.signal_pause(node, false)?;
                format!("SIGCONT n{node}")
            }
            None => "resume: nothing was paused".into(),
        },
        Action::Network { shape, .. } => {
            let isolated = match shape {
                NetworkFault::IsolateLeader => {
                    nemesis::resolve_target(nemesis::Target::Leader, leader, &down)
                }
                _ => None,
            };
            let applied = cluster.mesh.apply(shape, isolated);
            format!("network {shape} (isolated {isolated:?}, applied {applied})")
        }
        Action::HealNetwork { .. } => {
            cluster.mesh.heal();
            "heal network".into()
        }
        Action::Member { op, .. } => membership::run(cluster, *op, leader)?,
        Action::MemberDone { .. } => "membership operation over".into(),
    })
}

/// Ends every fault: resumes paused nodes, starts killed ones, heals every link.
fn heal_all(cluster: &mut Cluster) -> Result<()> {
    cluster.mesh.heal();
    for (index, down) in cluster.nodes.down().into_iter().enumerate() {
        if down {
            cluster.nodes.signal_pause(index, false)?;
            cluster.nodes.start(index)?;
        }
    }
    Ok(())
}

/// The run's time window, in recorder microseconds.
#[derive(Debug, Clone, Copy)]
struct Window {
    start_us: u64,
    end_us: u64,
    healed_by_us: u64,
}

/// How the run ended, for the judge.
struct End {
    /// The converged commit index and the committed log read up to it, or why not.
    converged: Result<(u64, Tail)>,
    /// The nodes' `[snapshots]` table, if they had one.
    snapshots: Option<Snapshots>,
    /// The snapshot files seen in the data directories during the run.
    snapshot_count: SnapshotCount,
    /// The nodes' `[log] cache_bytes_max`, if they had one.
    log_cache: Option<u64>,
}

fn judge(
    cluster: &mut Cluster,
    options: &Options,
    history: &History,
    end: End,
    window: Window,
    dir: &Path,
) -> Result<Report> {
    let node_ids: Vec<u64> = cluster.nodes.specs().iter().map(|spec| spec.id).collect();
    let mut violations = cluster.crashed.clone();
    for (index, status) in cluster.nodes.exited() {
        violations.push(format!("node n{index} exited on its own ({status})"));
    }
    let two_leaders = cluster
        .leaders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .two_leader_terms();
    for (term, a, b) in two_leaders {
        violations.push(format!("term {term} had two leaders: n{a} and n{b}"));
    }
    let log_summary = match end.converged {
        Ok((commit, tail)) => check_logs(cluster, dir, history, (commit, &tail), &mut violations)?,
        Err(error) => {
            violations.push(format!("{error:#}"));
            LogSummary::default()
        }
    };
    let traces::TraceSummary {
        replayed,
        torn_at_start,
        checkpoints_replayed,
        inputs,
        log_reads,
    } = replay_traces(cluster, dir, &mut violations)?;
    let linearizable = judge_linearizability(history, &mut violations)?;
    let after_heal = checks::throughput(history, window.healed_by_us, window.end_us, 1_000_000);
    if after_heal.iter().sum::<u64>() == 0 {
        violations.push("no write succeeded after the last fault was healed".into());
    }
    let per_second = checks::throughput(history, window.start_us, window.end_us, 1_000);
    write(
        dir,
        "throughput.txt",
        &format!("writes per second: {per_second:?}\n"),
    )?;
    let counts = checks::counts(history);
    let max_unavailable = checks::max_unavailable_ms(history, window.start_us, window.end_us);
    let line = format!(
        "nodes={} duration={}s seed={} ok={} failed={} indeterminate={} lost_acks={} \
         duplicates={} log_problems={} linearizable={linearizable} \
         max_unavailable_ms={max_unavailable} snapshot_interval={} snapshots_taken={} \
         installs={} unchecked_indices={} traces_replayed={replayed} \
         traces_torn_at_start={torn_at_start} checkpoints_replayed={checkpoints_replayed} \
         trace_inputs={inputs} log_cache_bytes={} \
         log_reads={log_reads}",
        options.nodes,
        options.duration_s,
        options.seed,
        counts.ok,
        counts.failed,
        counts.indeterminate,
        log_summary.lost_acks,
        log_summary.duplicates,
        log_summary.other,
        end.snapshots
            .map_or_else(|| "off".to_owned(), |s| s.interval_entries.to_string()),
        end.snapshot_count.taken(&node_ids),
        end.snapshot_count.installed(&node_ids),
        log_summary.unchecked,
        end.log_cache
            .map_or_else(|| "default".to_owned(), |bytes| bytes.to_string()),
    );
    Ok(Report { line, violations })
}

/// The history checker's verdict as the run's line says it; a failure is a violation.
fn judge_linearizability(history: &History, violations: &mut Vec<String>) -> Result<String> {
    let verdict = match linearizability::check_history(history, STEPS_MAX_DEFAULT)
        .map_err(anyhow::Error::new)?
    {
        Verdict::Linearizable => "true".to_owned(),
        Verdict::NotLinearizable(violation) => {
            violations.push(violation.to_string());
            "false".to_owned()
        }
        Verdict::Unknown { partition, steps } => {
            violations.push(format!(
                "linearizability of {partition} undecided in {steps} steps"
            ));
            "unknown".to_owned()
        }
    };
    Ok(verdict)
}

/// Kills every node (check_logs may have already), so their traces are complete, and replays
/// them all (`cluster::traces`).
fn replay_traces(
    cluster: &mut Cluster,
    dir: &Path,
    violations: &mut Vec<String>,
) -> Result<traces::TraceSummary> {
    cluster.nodes.kill_all();
    let mut data_dirs: Vec<PathBuf> = (0..cluster.endpoints.len())
        .map(|index| process::data_dir(dir, index))
        .collect();
    // Issue 12: the old incarnations of replaced nodes ran too.
    data_dirs.extend(cluster.nodes.retired().iter().cloned());
    traces::check_traces(&data_dirs, violations)
}

/// Counts of the append-log problems, by the summary line's names.
#[derive(Debug, Default)]
struct LogSummary {
    lost_acks: usize,
    duplicates: usize,
    other: usize,
    /// Committed indices compacted on every node before the tailer read them.
    unchecked: u64,
}

/// Checks the committed log: the tail (read through the client API during the run) against
/// the history, and every node's data directory, read after killing every node, against the
/// others and the tail (`cluster::logs`). An acknowledged append whose index nobody could be
/// asked for before compaction is not judged; the summary counts those indices.
fn check_logs(
    cluster: &mut Cluster,
    dir: &Path,
    history: &History,
    (commit, tail): (u64, &Tail),
    violations: &mut Vec<String>,
) -> Result<LogSummary> {
    cluster.nodes.kill_all();
    let disks = (0..cluster.endpoints.len())
        .map(|index| {
            Disk::read(&process::data_dir(dir, index))
                .with_context(|| format!("reading node n{index}'s data directory"))
        })
        .collect::<Result<Vec<_>>>()?;
    violations.extend(logs::check_disks(&disks, tail, commit));
    let mut summary = LogSummary {
        unchecked: tail.unchecked(),
        ..LogSummary::default()
    };
    let acknowledged_at = |op| {
        history
            .ops
            .iter()
            .find(|o| o.id == op)
            .and_then(|o| match o.outcome {
                Outcome::Ok {
                    reply: Reply::Appended { index },
                    ..
                } => Some(index),
                _ => None,
            })
    };
    let log = checks::committed_appends("the committed log".to_owned(), &tail.entries);
    for problem in linearizability::check_append_log(history, &[log]) {
        use linearizability::AppendLogProblem as P;
        match problem {
            P::AcknowledgedMissing { op, .. }
                if acknowledged_at(op).is_some_and(|index| tail.in_gap(index)) =>
            {
                continue;
            }
            P::AcknowledgedMissing { .. } | P::WrongIndex { .. } => summary.lost_acks += 1,
            P::Duplicate { .. } => summary.duplicates += 1,
            _ => summary.other += 1,
        }
        violations.push(problem.to_string());
    }
    Ok(summary)
}

fn draw(
    cluster: &Cluster,
    options: &Options,
    history: &History,
    schedule: &Schedule,
    window: Window,
    dir: &Path,
) -> Result<()> {
    let start_ms = window.start_us / 1_000;
    let shift = |at_ms: u64| at_ms.saturating_sub(start_ms);
    let seen = cluster
        .leaders
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .seen
        .clone();
    let mut leaders_text = String::new();
    let shifted: Vec<_> = seen
        .iter()
        .map(|s| {
            let mut s = *s;
            s.at_ms = shift(s.at_ms);
            s
        })
        .collect();
    let duration_ms = (window.end_us - window.start_us) / 1_000;
    let leaders = LeaderSpan::from_observations(&shifted, duration_ms);
    for span in &leaders {
        let _ = writeln!(
            leaders_text,
            "{:>7} ms .. {:>7} ms  term {}  n{}",
            span.start_ms, span.end_ms, span.term, span.node
        );
    }
    write(dir, "leaders.txt", &leaders_text)?;
    let mut ops = OpSample::from_history(history);
    for op in &mut ops {
        op.invoke_us = op.invoke_us.saturating_sub(window.start_us);
        op.complete_us = op.complete_us.map(|t| t.saturating_sub(window.start_us));
    }
    let timeline = Timeline {
        title: format!(
            "alpo test-cluster: {} nodes, {} s, seed {}",
            options.nodes, options.duration_s, options.seed
        ),
        duration_ms,
        node_count: options.nodes,
        faults: schedule.faults.iter().map(FaultBand::from).collect(),
        leaders,
        ops,
    };
    let path = dir.join("timeline.svg");
    write_svg(&timeline, &path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_follow_the_binary_and_the_flags() {
        let defaults = parse(&args("")).unwrap();
        assert_eq!(snapshots_for(&defaults, false), Ok(None));
        assert_eq!(
            snapshots_for(&defaults, true),
            Ok(Some(Snapshots {
                interval_entries: SNAPSHOT_INTERVAL_DEFAULT,
                retain_entries: SNAPSHOT_RETAIN_DEFAULT,
            }))
        );
        let given = parse(&args("--snapshot-interval 100 --snapshot-retain 7")).unwrap();
        assert_eq!(
            snapshots_for(&given, true),
            Ok(Some(Snapshots {
                interval_entries: 100,
                retain_entries: 7,
            }))
        );
        assert!(
            snapshots_for(&given, false)
                .unwrap_err()
                .contains("takes no snapshots")
        );
        let off = parse(&args("--snapshot-interval 0")).unwrap();
        assert_eq!(snapshots_for(&off, false), Ok(None));
        assert_eq!(
            snapshots_for(&off, true)
                .unwrap()
                .map(|s| s.interval_entries),
            Some(0)
        );
    }

    #[test]
    fn the_entry_cache_follows_the_binary_and_the_flag() {
        let defaults = parse(&args("")).unwrap();
        assert_eq!(log_cache_for(&defaults, false), Ok(None));
        assert_eq!(
            log_cache_for(&defaults, true),
            Ok(Some(LOG_CACHE_BYTES_DEFAULT))
        );
        let given = parse(&args("--log-cache-bytes 1000")).unwrap();
        assert_eq!(log_cache_for(&given, true), Ok(Some(1000)));
        assert!(
            log_cache_for(&given, false)
                .unwrap_err()
                .contains("no entry cache")
        );
    }

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_parse_and_bad_ones_are_named() {
        let options = parse(&args(
            "--nodes 5 --duration 600 --nemesis kill,pause --seed 7",
        ))
        .unwrap();
        assert_eq!(options.nodes, 5);
        assert_eq!(options.duration_s, 600);
        assert_eq!(options.kinds, vec![FaultKind::Kill, FaultKind::Pause]);
        assert_eq!(options.seed, 7);
        assert!(parse(&args("--nemesis none")).unwrap().kinds.is_empty());
        assert!(parse(&args("--nemesis fire")).unwrap_err().contains("fire"));
        assert!(parse(&args("--nodes")).unwrap_err().contains("--nodes"));
        assert!(
            parse(&args("--duration 2"))
                .unwrap_err()
                .contains("duration")
        );
        assert_eq!(
            parse(&args("--nemesis lag")).unwrap().kinds,
            vec![FaultKind::Lag]
        );
        assert!(
            parse(&args("--nemesis all"))
                .unwrap()
                .kinds
                .contains(&FaultKind::Lag)
        );
        assert_eq!(
            parse(&args("--nemesis membership")).unwrap().kinds,
            vec![FaultKind::Membership]
        );
        assert!(
            parse(&args("--nemesis all"))
                .unwrap()
                .kinds
                .contains(&FaultKind::Membership)
        );
        assert!(
            parse(&args("--colour red"))
                .unwrap_err()
                .contains("--colour")
        );
        assert_eq!(options.lease_drift_ppm, LEASE_DRIFT_PPM_DEFAULT);
        assert_eq!(
            parse(&args("--lease-drift-ppm 0")).unwrap().lease_drift_ppm,
            0
        );
        assert!(
            parse(&args("--lease-drift-ppm 1000000"))
                .unwrap_err()
                .contains("--lease-drift-ppm")
        );
    }
}
