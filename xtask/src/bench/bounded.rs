//! The benchmarks of issue 11 (bounded state): what a node costs after much has been written.
//!
//! - `bench memory`: `--appends` (10,000,000) appends of `--value-size` (128) bytes at full
//!   speed through a fresh cluster; every `--sample-ms` (1,000) each node's resident memory
//!   (`VmRSS` of `/proc/PID/status`), its data directory's size on disk and its `alpo status`
//!   figures are sampled. Writes `memory-<stamp>.jsonl` (one line per node per sample), and a
//!   `.md` summary (max RSS, final and max data directory per node) and `.svg` curve beside it.
//! - `bench restart`: the same load (`--appends`), then per `--kill leader|follower|both`: `kill
//!   -9` that node, start it again at once, and time from the kill until it answers its status
//!   (`up_ms`), a leader is known (`leader_ms`), a first write is committed (`write_ms`) and the
//!   restarted node has applied it (`caught_up_ms`); `serving_ms` is the later of the last two.
//! - `bench catchup`: kill a follower, write `--bytes` (1 GiB) of appends, start it again, and
//!   time until its applied index reaches the leader's commit index: MiB/s of values written.
//!   With `--op put` the writes are KV puts of distinct keys, so the state machine — and the
//!   snapshot image the follower installs — holds every byte written (appends live in the log
//!   alone, so their snapshot images are small).
//!
//! Every benchmark takes `--alpo PATH` (a prebuilt binary, to run builds side by side) and
//! `--snapshot-interval N` / `--snapshot-retain N`, passed to every node as
//! `--snapshot-interval-entries` / `--snapshot-retain-entries` (refused, with a clear error, by
//! a binary without snapshots; without them a node uses its defaults, none on such a binary).
//! `--node-flag FLAGS` (repeatable; FLAGS split at spaces) adds flags to every node, e.g.
//! `--node-flag --no-recorder` to measure a catch-up without the flight recorder (issue 15);
//! the lines name them (`node_flags`).
//!
//! Invariants: the load is driven from this process (`load`), so the nodes' figures are the
//! nodes' alone; every node started is killed and its data removed when the benchmark ends
//! (`LocalCluster`'s drop), also on failure.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

use alpo_core::{ClusterId, Role};
use alpo_node::{Client, ClientOptions};

use super::load::{self, Load};
use super::local::{CLUSTER_ID, LocalCluster};

/// How long a fresh or restarted cluster may take to elect a leader, or a node to catch up.
const WAIT: Duration = Duration::from_secs(120);
/// How often the restart and catch-up benchmarks poll.
const POLL_EVERY: Duration = Duration::from_millis(10);

pub(super) const USAGE: &str = "\
       cargo xtask bench memory  [--appends 10000000] [--sample-ms 1000] [COMMON]
       cargo xtask bench restart [--appends 10000000] [--kill leader|follower|both] [COMMON]
       cargo xtask bench catchup [--bytes 1GiB] [COMMON]
         COMMON: [--nodes 3] [--clients 64] [--value-size 128] [--out DIR] [--alpo PATH]
                 [--snapshot-interval N] [--snapshot-retain N] [--op append|put]
                 [--node-flag FLAGS]...";

/// Which benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bench {
    /// `bench memory`.
    Memory,
    /// `bench restart`.
    Restart,
    /// `bench catchup`.
    Catchup,
}

impl Bench {
    /// The subcommand's name.
    pub(super) fn parse(name: &str) -> Option<Bench> {
        match name {
            "memory" => Some(Bench::Memory),
            "restart" => Some(Bench::Restart),
            "catchup" => Some(Bench::Catchup),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Bench::Memory => "memory",
            Bench::Restart => "restart",
            Bench::Catchup => "catchup",
        }
    }
}

/// Which node `bench restart` kills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Victim {
    /// The leader.
    Leader,
    /// A follower.
    Follower,
}

/// The options of the three benchmarks.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    bench: Bench,
    nodes: u16,
    appends: u64,
    bytes: u64,
    value_size: u64,
    clients: u64,
    sample_ms: u64,
    kill: Vec<Victim>,
    out: PathBuf,
    alpo: Option<PathBuf>,
    snapshot_interval: Option<u64>,
    snapshot_retain: Option<u64>,
    write: load::Write,
    /// `--node-flag`s, split at spaces, for every node.
    extra_flags: Vec<String>,
}

/// Parses `1073741824`, `20MiB`, `1GiB`, `512KiB`.
pub(super) fn parse_size(text: &str) -> anyhow::Result<u64> {
    let units = [
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("", 1),
    ];
    for (suffix, scale) in units {
        if let Some(number) = text.strip_suffix(suffix) {
            let number: u64 = number
                .trim()
                .parse()
                .with_context(|| format!("{text:?} is not a size (like 1GiB, 20MiB, 4096)"))?;
            return number
                .checked_mul(scale)
                .with_context(|| format!("{text:?} is too large"));
        }
    }
    bail!("{text:?} is not a size")
}

/// Parses the arguments after `bench memory|restart|catchup`.
pub(super) fn parse(bench: Bench, args: &[String]) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        bench,
        nodes: 3,
        appends: 10_000_000,
        bytes: 1 << 30,
        value_size: 128,
        clients: 64,
        sample_ms: 1_000,
        kill: vec![Victim::Leader, Victim::Follower],
        out: PathBuf::from("out"),
        alpo: None,
        snapshot_interval: None,
        snapshot_retain: None,
        write: load::Write::Append,
        extra_flags: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} wants a value"))?;
        let number = || -> anyhow::Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} wants a number, found {value:?}"))
        };
        match flag.as_str() {
            "--nodes" => plan.nodes = u16::try_from(number()?)?,
            "--appends" => plan.appends = number()?,
            "--bytes" => plan.bytes = parse_size(value)?,
            "--value-size" => plan.value_size = number()?,
            "--clients" => plan.clients = number()?,
            "--sample-ms" => plan.sample_ms = number()?,
            "--kill" => {
                plan.kill = match value.as_str() {
                    "leader" => vec![Victim::Leader],
                    "follower" => vec![Victim::Follower],
                    "both" => vec![Victim::Leader, Victim::Follower],
                    other => bail!("--kill wants leader, follower or both, found {other:?}"),
                }
            }
            "--out" => plan.out = PathBuf::from(value),
            "--alpo" => plan.alpo = Some(PathBuf::from(value)),
            "--snapshot-interval" => plan.snapshot_interval = Some(number()?),
            "--snapshot-retain" => plan.snapshot_retain = Some(number()?),
            "--op" => plan.write = load::Write::parse(value)?,
            "--node-flag" => plan
                .extra_flags
                .extend(value.split_whitespace().map(str::to_string)),
            other => bail!("unknown flag {other:?} for bench {}", bench.name()),
        }
    }
    if !(1..=9).contains(&plan.nodes) {
        bail!("--nodes must be between 1 and 9, found {}", plan.nodes);
    }
    if bench == Bench::Catchup && plan.nodes < 3 {
        bail!("bench catchup needs at least 3 nodes (a majority stays up while one is down)");
    }
    if plan.appends == 0 || plan.value_size == 0 || plan.clients == 0 || plan.sample_ms == 0 {
        bail!("--appends, --value-size, --clients and --sample-ms must be above zero");
    }
    if plan.bytes < plan.value_size {
        bail!("--bytes must be at least one value (--value-size)");
    }
    Ok(plan)
}

impl Plan {
    /// The flags every node gets.
    fn node_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if let Some(interval) = self.snapshot_interval {
            flags.extend(["--snapshot-interval-entries".into(), interval.to_string()]);
        }
        if let Some(retain) = self.snapshot_retain {
            flags.extend(["--snapshot-retain-entries".into(), retain.to_string()]);
        }
        flags.extend(self.extra_flags.iter().cloned());
        flags
    }

    /// The node settings as JSON fields (`null`: the node's default; `node_flags`: the
    /// `--node-flag`s).
    fn node_fields(&self) -> [(&'static str, Value); 3] {
        [
            ("snapshot_interval", self.snapshot_interval.into()),
            ("snapshot_retain", self.snapshot_retain.into()),
            ("node_flags", self.extra_flags.join(" ").into()),
        ]
    }
}

/// Runs `plan`.
pub(super) fn run(plan: &Plan) -> anyhow::Result<()> {
    let alpo = match &plan.alpo {
        Some(path) => path.clone(),
        None => super::build_release()?,
    };
    let flags = plan.node_flags();
    let snapshot_flags = plan.snapshot_interval.is_some() || plan.snapshot_retain.is_some();
    if snapshot_flags && !crate::test_cluster::process::supports_snapshots(&alpo)? {
        bail!(
            "{} takes no snapshots (`alpo node --help` lists no {}): drop --snapshot-*",
            alpo.display(),
            crate::test_cluster::process::SNAPSHOT_FLAG
        );
    }
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let jsonl = plan
        .out
        .join(format!("{}-{stamp}.jsonl", plan.bench.name()));
    let mut cluster = LocalCluster::start(&alpo, plan.nodes, plan.bench.name(), &flags)?;
    let lines = match plan.bench {
        Bench::Memory => memory(plan, &alpo, &cluster)?,
        Bench::Restart => restart(plan, &mut cluster)?,
        Bench::Catchup => vec![catchup(plan, &mut cluster)?],
    };
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&jsonl, text).with_context(|| format!("writing {}", jsonl.display()))?;
    if plan.bench == Bench::Memory {
        memory_report(&jsonl, &lines)?;
    } else {
        for line in &lines {
            println!("{line}");
        }
    }
    println!("wrote {}", jsonl.display());
    Ok(())
}

fn client_options() -> ClientOptions {
    let mut options = ClientOptions::new(ClusterId(CLUSTER_ID.parse().unwrap_or(0)));
    options.attempt_timeout = Duration::from_millis(500);
    options.request_timeout = Duration::from_secs(5);
    options
}

/// The node that says it leads, with its status, if any answers so.
fn find_leader(cluster: &LocalCluster) -> Option<(usize, alpo_node::client_protocol::NodeStatus)> {
    (0..cluster.len()).find_map(|index| {
        let mut client = Client::new(vec![cluster.client_addr(index)], client_options()).ok()?;
        let status = client.status_of(cluster.client_addr(index)).ok()?;
        (status.role == Role::Leader).then_some((index, status))
    })
}

fn wait_for_leader(
    cluster: &LocalCluster,
) -> anyhow::Result<(usize, alpo_node::client_protocol::NodeStatus)> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(found) = find_leader(cluster) {
            return Ok(found);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "no leader within {WAIT:?}; node logs in {}",
        cluster.dir.display()
    )
}

/// Drives `count` appends through the cluster's leader.
fn drive(plan: &Plan, cluster: &LocalCluster, count: u64) -> anyhow::Result<load::Done> {
    let (leader, _) = wait_for_leader(cluster)?;
    let done = load::run(&Load {
        endpoints: cluster.client_addrs(),
        first_target: cluster.client_addr(leader),
        cluster_id: CLUSTER_ID.parse()?,
        count,
        clients: plan.clients,
        value_size: usize::try_from(plan.value_size)?,
        write: plan.write,
    })?;
    eprintln!(
        "bench: {} {}s acknowledged ({} errors) in {:.1} s",
        done.acked,
        plan.write.name(),
        done.errors,
        done.seconds
    );
    Ok(done)
}

/// The resident set size of process `pid` in KiB, from its `/proc/PID/status` text.
pub(super) fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Bytes on disk (allocated blocks) of the files under `dir`, recursively; 0 if it is gone.
pub(super) fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(listing) = std::fs::read_dir(dir) else {
        return 0;
    };
    listing
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => disk_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// `alpo status --json` of every node, by endpoint (only the nodes that answered).
fn status_json(alpo: &Path, cluster: &LocalCluster) -> Vec<Value> {
    let Ok(output) = Command::new(alpo)
        .args(["status", "--json", "--timeout-ms", "500"])
        .args([
            "--cluster-id",
            CLUSTER_ID,
            "--endpoints",
            &cluster.endpoints,
        ])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// One sample of every node, as JSON lines.
fn sample(alpo: &Path, cluster: &LocalCluster, pids: &[Option<u32>], t_s: f64) -> Vec<Value> {
    let statuses = status_json(alpo, cluster);
    (0..cluster.len())
        .map(|index| {
            let rss = pids[index]
                .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
                .and_then(|text| vm_rss_kib(&text));
            let endpoint = cluster.client_addr(index).to_string();
            let status = statuses
                .iter()
                .find(|s| s["endpoint"] == endpoint.as_str())
                .cloned()
                .unwrap_or(Value::Null);
            let mut line = serde_json::json!({
                "bench": "memory",
                "t_s": (t_s * 10.0).round() / 10.0,
                "node": index + 1,
                "rss_kib": rss,
                "data_bytes": disk_bytes(&cluster.data_dir(index)),
            });
            for field in [
                "commit_index",
                "applied_index",
                "snapshot_index",
                "first_index",
            ] {
                line[field] = status[field].clone();
            }
            line
        })
        .collect()
}

fn memory(plan: &Plan, alpo: &Path, cluster: &LocalCluster) -> anyhow::Result<Vec<Value>> {
    let pids = cluster.pids();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let every = Duration::from_millis(plan.sample_ms);
    let (done, mut lines) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut lines = Vec::new();
            let mut next = started;
            while !stop.load(Ordering::SeqCst) {
                lines.extend(sample(
                    alpo,
                    cluster,
                    &pids,
                    started.elapsed().as_secs_f64(),
                ));
                next += every;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            lines
        });
        let done = drive(plan, cluster, plan.appends);
        stop.store(true, Ordering::SeqCst);
        (done, sampler.join().unwrap_or_default())
    });
    let done = done?;
    // One last sample after the load, once the nodes have applied it.
    std::thread::sleep(every);
    lines.extend(sample(
        alpo,
        cluster,
        &pids,
        started.elapsed().as_secs_f64(),
    ));
    let mut summary = serde_json::json!({
        "bench": "memory-load",
        "appends": plan.appends,
        "acked": done.acked,
        "errors": done.errors,
        "seconds": done.seconds,
        "value_size": plan.value_size,
        "clients": plan.clients,
        "nodes": plan.nodes,
    });
    for (key, value) in plan.node_fields() {
        summary[key] = value;
    }
    lines.push(summary);
    Ok(lines)
}

/// Per node: (max RSS KiB, final data bytes, max data bytes, final snapshot index, final first
/// index).
pub(super) type NodeSummary = (u64, u64, u64, Option<u64>, Option<u64>);

/// Summarises the memory samples per node (in node order).
pub(super) fn summarize_memory(lines: &[Value]) -> Vec<(u64, NodeSummary)> {
    let mut nodes: std::collections::BTreeMap<u64, NodeSummary> = Default::default();
    for line in lines.iter().filter(|l| l["bench"] == "memory") {
        let Some(node) = line["node"].as_u64() else {
            continue;
        };
        let entry = nodes.entry(node).or_default();
        entry.0 = entry.0.max(line["rss_kib"].as_u64().unwrap_or(0));
        let data = line["data_bytes"].as_u64().unwrap_or(0);
        entry.1 = data;
        entry.2 = entry.2.max(data);
        entry.3 = line["snapshot_index"].as_u64().or(entry.3);
        entry.4 = line["first_index"].as_u64().or(entry.4);
    }
    nodes.into_iter().collect()
}

fn mib(bytes: u64) -> f64 {
    super::to_f64(bytes) / f64::from(1 << 20)
}

/// The markdown table of [`summarize_memory`].
pub(super) fn memory_markdown(lines: &[Value]) -> String {
    let mut out = String::from(
        "| node | max RSS MiB | final data dir MiB | max data dir MiB | snapshot index | \
         first index |\n|---:|---:|---:|---:|---:|---:|\n",
    );
    let or_dash = |value: Option<u64>| value.map_or_else(|| "–".to_owned(), |v| v.to_string());
    for (node, (rss, data, data_max, snapshot, first)) in summarize_memory(lines) {
        let _ = writeln!(
            out,
            "| {node} | {:.1} | {:.1} | {:.1} | {} | {} |",
            mib(rss * 1024),
            mib(data),
            mib(data_max),
            or_dash(snapshot),
            or_dash(first)
        );
    }
    if let Some(load) = lines.iter().find(|l| l["bench"] == "memory-load") {
        let _ = writeln!(
            out,
            "\n{} of {} appends of {} B acknowledged ({} errors) in {:.1} s; snapshot interval \
             {}, retain {}.",
            load["acked"],
            load["appends"],
            load["value_size"],
            load["errors"],
            load["seconds"].as_f64().unwrap_or(0.0),
            load["snapshot_interval"],
            load["snapshot_retain"]
        );
    }
    out
}

fn memory_report(jsonl: &Path, lines: &[Value]) -> anyhow::Result<()> {
    let table = memory_markdown(lines);
    print!("{table}");
    let md = jsonl.with_extension("md");
    let plot = jsonl.with_extension("svg");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    std::fs::write(&plot, memory_svg(lines))
        .with_context(|| format!("writing {}", plot.display()))?;
    println!("wrote {} and {}", md.display(), plot.display());
    Ok(())
}

/// Two panels against time: RSS MiB and data directory MiB, one line per node.
pub(super) fn memory_svg(lines: &[Value]) -> String {
    let (width, height, margin) = (420.0, 240.0, 60.0);
    let samples: Vec<&Value> = lines.iter().filter(|l| l["bench"] == "memory").collect();
    let t_max = samples
        .iter()
        .filter_map(|l| l["t_s"].as_f64())
        .fold(1.0, f64::max);
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        2.0 * width + 3.0 * margin,
        height + 2.5 * margin
    );
    let panels = [
        ("RSS MiB", "rss_kib", 1024.0),
        ("data dir MiB", "data_bytes", 1.0),
    ];
    for (panel, (title, field, scale)) in panels.iter().enumerate() {
        let left = margin + if panel == 0 { 0.0 } else { width + margin };
        let value = |l: &Value| l[*field].as_f64().map(|v| v * scale / f64::from(1 << 20));
        let y_max = samples.iter().filter_map(|l| value(l)).fold(1.0, f64::max) * 1.1;
        let _ = writeln!(
            out,
            "<rect x=\"{left}\" y=\"{margin}\" width=\"{width}\" height=\"{height}\" \
             fill=\"none\" stroke=\"#888\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{title} (max {y_max:.0}) over \
             {t_max:.0} s</text>",
            left + width / 2.0,
            margin - 10.0
        );
        let mut nodes: Vec<u64> = samples.iter().filter_map(|l| l["node"].as_u64()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        for (i, node) in nodes.iter().enumerate() {
            let points: Vec<String> = samples
                .iter()
                .filter(|l| l["node"].as_u64() == Some(*node))
                .filter_map(|l| {
                    let (t, v) = (l["t_s"].as_f64()?, value(l)?);
                    let x = left + t / t_max * width;
                    Some(format!(
                        "{x:.1},{:.1}",
                        margin + height - v / y_max * height
                    ))
                })
                .collect();
            let colour = super::COLOURS[i % super::COLOURS.len()];
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
                 points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{colour}\">node {node}</text>",
                points.join(" "),
                left + 10.0 + 70.0 * super::to_f64(u64::try_from(i).unwrap_or(0)),
                margin + height + 30.0
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

/// Polls `until` every [`POLL_EVERY`] for at most [`WAIT`]; returns the milliseconds since
/// `since` at which it first held.
fn time_until(since: Instant, what: &str, mut until: impl FnMut() -> bool) -> anyhow::Result<u64> {
    let deadline = Instant::now() + WAIT;
    while !until() {
        if deadline < Instant::now() {
            bail!("{what} did not happen within {WAIT:?}");
        }
        std::thread::sleep(POLL_EVERY);
    }
    Ok(u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX))
}

/// The status of the node at `endpoint`, if it answers.
fn status_of(endpoint: SocketAddr) -> Option<alpo_node::client_protocol::NodeStatus> {
    Client::new(vec![endpoint], client_options())
        .ok()?
        .status_of(endpoint)
        .ok()
}

fn restart(plan: &Plan, cluster: &mut LocalCluster) -> anyhow::Result<Vec<Value>> {
    let done = drive(plan, cluster, plan.appends)?;
    let mut lines = Vec::new();
    for victim in &plan.kill {
        let (leader, _) = wait_for_leader(cluster)?;
        let index = match victim {
            Victim::Leader => leader,
            Victim::Follower => (leader + 1) % cluster.len(),
        };
        let endpoint = cluster.client_addr(index);
        let killed = Instant::now();
        cluster.kill(index);
        cluster.start_node(index)?;
        let up_ms = time_until(killed, "the restarted node's status", || {
            status_of(endpoint).is_some()
        })?;
        let leader_ms = time_until(killed, "a leader", || find_leader(cluster).is_some())?;
        let mut client = Client::new(cluster.client_addrs(), client_options())?;
        let mut written = None;
        let write_ms = time_until(killed, "a first write", || {
            written = client.append(b"restart".to_vec()).ok();
            written.is_some()
        })?;
        let written = written.map_or(0, |index| index.0);
        let caught_up_ms = time_until(killed, "the restarted node applying it", || {
            status_of(endpoint).is_some_and(|s| written <= s.applied_index.0)
        })?;
        let mut line = serde_json::json!({
            "bench": "restart",
            "kill": if *victim == Victim::Leader { "leader" } else { "follower" },
            "appends": plan.appends,
            "acked": done.acked,
            "value_size": plan.value_size,
            "nodes": plan.nodes,
            "up_ms": up_ms,
            "leader_ms": leader_ms,
            "write_ms": write_ms,
            "caught_up_ms": caught_up_ms,
            "serving_ms": write_ms.max(caught_up_ms),
        });
        for (key, value) in plan.node_fields() {
            line[key] = value;
        }
        lines.push(line);
    }
    check_alive(cluster)?;
    Ok(lines)
}

fn check_alive(cluster: &mut LocalCluster) -> anyhow::Result<()> {
    if let Some((index, status)) = cluster.exited().first() {
        bail!(
            "node {} exited on its own ({status}); logs in {}",
            index + 1,
            cluster.dir.display()
        );
    }
    Ok(())
}

fn catchup(plan: &Plan, cluster: &mut LocalCluster) -> anyhow::Result<Value> {
    let (leader, _) = wait_for_leader(cluster)?;
    let follower = (leader + 1) % cluster.len();
    cluster.kill(follower);
    let done = drive(plan, cluster, plan.bytes / plan.value_size)?;
    let (_, status) = wait_for_leader(cluster)?;
    let target = status.commit_index.0;
    let endpoint = cluster.client_addr(follower);
    let started = Instant::now();
    cluster.start_node(follower)?;
    let caught_up_ms = time_until(started, "the follower catching up", || {
        status_of(endpoint).is_some_and(|s| target <= s.applied_index.0)
    })?;
    check_alive(cluster)?;
    // The follower's log says when the snapshot transfer started and ended; keep it beside
    // the figures (the cluster's directory is removed when the benchmark ends).
    let log_name = format!("node-{}.log", follower + 1);
    let kept = plan.out.join(format!("catchup-follower-{log_name}"));
    std::fs::copy(cluster.dir.join(&log_name), &kept)
        .with_context(|| format!("keeping {log_name} as {}", kept.display()))?;
    let written = done.acked * plan.value_size;
    let seconds = super::to_f64(caught_up_ms.max(1)) / 1e3;
    let mut line = serde_json::json!({
        "bench": "catchup",
        "op": plan.write.name(),
        "bytes": written,
        "entries": done.acked,
        "target_index": target,
        "value_size": plan.value_size,
        "nodes": plan.nodes,
        "caught_up_ms": caught_up_ms,
        "mib_per_s": (mib(written) / seconds * 10.0).round() / 10.0,
        "entries_per_s": (super::to_f64(done.acked) / seconds).round(),
    });
    for (key, value) in plan.node_fields() {
        line[key] = value;
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn sizes_and_flags_parse_and_bad_ones_are_named() {
        assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("20MiB").unwrap(), 20 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("2TB").unwrap_err().to_string().contains("2TB"));
        let plan = parse(
            Bench::Restart,
            &args("--appends 20000 --kill follower --snapshot-interval 1000"),
        )
        .unwrap();
        assert_eq!(plan.appends, 20_000);
        assert_eq!(plan.kill, vec![Victim::Follower]);
        assert_eq!(plan.node_flags(), args("--snapshot-interval-entries 1000"));
        let plan = parse(Bench::Catchup, &args("--bytes 20MiB")).unwrap();
        assert_eq!((plan.bytes, plan.kill.len()), (20 << 20, 2));
        assert!(plan.node_flags().is_empty());
        assert_eq!(plan.write, load::Write::Append);
        let plan = parse(
            Bench::Catchup,
            &args("--node-flag --no-recorder --snapshot-retain 5"),
        )
        .unwrap();
        assert_eq!(
            plan.node_flags(),
            args("--snapshot-retain-entries 5 --no-recorder")
        );
        let plan = parse(
            Bench::Catchup,
            &["--node-flag", "--metrics-addr 127.0.0.1:0"].map(String::from),
        )
        .unwrap();
        assert_eq!(plan.node_flags(), args("--metrics-addr 127.0.0.1:0"));
        let plan = parse(Bench::Catchup, &args("--op put")).unwrap();
        assert_eq!(plan.write, load::Write::Put);
        assert!(parse(Bench::Catchup, &args("--op delete")).is_err());
        assert!(parse(Bench::Memory, &args("--kill everyone")).is_err());
        assert!(parse(Bench::Memory, &args("--appends 0")).is_err());
        assert!(parse(Bench::Catchup, &args("--nodes 1")).is_err());
        assert!(parse(Bench::Memory, &args("--sample-ms")).is_err());
        assert!(
            parse(Bench::Memory, &args("--bytes 1 --value-size 128"))
                .unwrap_err()
                .to_string()
                .contains("--bytes")
        );
        assert_eq!(Bench::parse("catchup"), Some(Bench::Catchup));
    }

    #[test]
    fn rss_is_read_from_proc_status() {
        let status = "Name:\talpo\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nThreads:\t9\n";
        assert_eq!(vm_rss_kib(status), Some(12_345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(0 < vm_rss_kib(&own).unwrap());
    }

    #[test]
    fn disk_bytes_counts_nested_files() {
        let dir = std::env::temp_dir().join(format!("xtask-du-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), vec![1; 10_000]).unwrap();
        std::fs::write(dir.join("sub/b"), vec![1; 10_000]).unwrap();
        let bytes = disk_bytes(&dir);
        assert!((20_000..=40_000).contains(&bytes), "{bytes}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(disk_bytes(&dir), 0);
    }

    #[test]
    fn memory_summary_takes_maxima_and_final_values() {
        let lines: Vec<Value> = [
            r#"{"bench":"memory","t_s":0,"node":1,"rss_kib":1024,"data_bytes":100}"#,
            r#"{"bench":"memory","t_s":1,"node":1,"rss_kib":4096,"data_bytes":300,
               "snapshot_index":2000,"first_index":1501}"#,
            r#"{"bench":"memory","t_s":2,"node":1,"rss_kib":2048,"data_bytes":200}"#,
            r#"{"bench":"memory","t_s":2,"node":2,"rss_kib":null,"data_bytes":50}"#,
            r#"{"bench":"memory-load","appends":3,"acked":3,"errors":0,"seconds":1.5,
               "value_size":128,"snapshot_interval":null,"snapshot_retain":null}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let summary = summarize_memory(&lines);
        assert_eq!(
            summary,
            vec![
                (1, (4096, 200, 300, Some(2000), Some(1501))),
                (2, (0, 50, 50, None, None))
            ]
        );
        let table = memory_markdown(&lines);
        assert!(
            table.contains("| 1 | 4.0 | 0.0 | 0.0 | 2000 | 1501 |"),
            "{table}"
        );
        assert!(table.contains("3 of 3 appends of 128 B"), "{table}");
        let svg = memory_svg(&lines);
        assert_eq!(svg.matches("<polyline").count(), 4, "{svg}");
        assert!(svg.contains("node 2"));
    }
}
