//! `cargo xtask bench …`: cluster benchmarks on loopback.
//!
//! - `bench cluster [--nodes 3] [--clients 1,8,64,256] [--duration 5] [--warmup 1]
//!   [--value-size 128] [--op append|put] [--reps 1] [--out DIR] [--compare FILE.jsonl]…`
//!   builds the release `alpo`, and for each repetition and client count starts a fresh cluster
//!   of `alpo node` processes (free loopback ports, a fresh data directory), waits for a leader,
//!   runs `alpo bench --json` against it, and adds the CPU seconds the node processes used
//!   (utime + stime from `/proc/PID/stat`) per committed write, and those `alpo bench` used
//!   (`bench_cpu_s`, as the etcd sweep's `loadgen_cpu_s`: the load generator shares the
//!   cores). It writes `DIR/bench-<unix seconds>.jsonl`, then the report below. `--alpo PATH`
//!   uses a prebuilt binary instead of building (to interleave points with another system's
//!   runs).
//!   `--tls off|on|both` (issue 16): with `on`, the nodes and `alpo bench` use TLS with client
//!   certificates (made once per run in a temporary directory; the lines say backend
//!   `alpo+tls`); `both` runs each point without and then with TLS, interleaved, so the two are
//!   compared under the same machine load.
//!   `--variant NAME=FLAGS` (repeatable) runs every point once per variant, interleaved, with
//!   FLAGS (space-separated) added to every `alpo node`, and names the line's backend
//!   `alpo-NAME`: on/off comparisons side by side in one run (issue 15's metrics and recorder
//!   costs: `--variant off=--no-recorder --variant metrics='--no-recorder --metrics-addr
//!   127.0.0.1:0'`).
//!   Issue 14: `--client-flags FLAGS` adds FLAGS to every `alpo bench` run (e.g. `--op get
//!   --consistency stale --read-percent 90`), and `--variant-bench NAME=FLAGS` gives variant
//!   NAME (made if new, with no node flags) its own `alpo bench` flags, after `--client-flags`;
//!   a variant whose bench flags hold `--op` replaces the plan's `--op`. So writes, linearizable,
//!   lease and stale reads run side by side, interleaved (docs/benchmarks.md, Reads, has the
//!   command). `--variant-alpo NAME=PATH` runs variant NAME (made if new) with another prebuilt
//!   `alpo` binary, for its nodes and its `alpo bench` alike: two builds (main's and a
//!   branch's) compared point by point in one run, interleaved. Every line adds
//!   `cpu_us_per_op` (node CPU over the run, warm-up included, per operation, counting the
//!   warm-up at the measured rate) beside `cpu_us_per_write`; the report takes the former for
//!   reads (a read commits no write).
//! - `bench memory|restart|catchup …` (`bench/bounded.rs`): issue 11's benchmarks — resident
//!   memory and data directory size sampled every second over a fixed number of appends, the
//!   time a killed node takes to serve again, and a restarted follower's catch-up rate.
//! - `bench checkpoint …` (`bench/checkpoint.rs`): issue 15's trace checkpoint, its size and
//!   the time to take it and to rebuild a node from it, on a one-node core with a large log.
//! - `bench transfer …` (`bench/transfer.rs`): issue 12's leader unavailability per leadership
//!   transfer against a leader kill, and the write throughput around a membership change.
//! - `bench report FILE.jsonl…` renders JSON lines (ours, and the etcd reference kit's sweep
//!   output, from outside this repository) as a markdown table of medians and an SVG plot of
//!   throughput and latency against the client count, next to the first file (`.md`, `.svg`).
//!   Ratios are against `etcd` lines; a TLS line (`alpo+tls`) is compared with `etcd+tls` lines
//!   (etcd with TLS on both ports, from `xtask/etcd-tls/etcd-tls.sh sweep`) where there are any.
//!
//! Invariants: every node process started is killed and waited for, and its data directory
//! removed, before the next point starts (also when the point fails); CPU is sampled from just
//! before `alpo bench` starts to just after it ends, and divided by the commit index advance
//! over the same interval (warm-up included), so the ratio covers the same writes as the CPU.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::Value;

#[path = "bench/add_member.rs"]
mod add_member;
#[path = "bench/bounded.rs"]
mod bounded;
#[path = "bench/checkpoint.rs"]
mod checkpoint;
#[path = "bench/load.rs"]
mod load;
#[path = "bench/local.rs"]
mod local;
#[path = "bench/page.rs"]
pub(crate) mod page;
#[path = "bench/transfer.rs"]
mod transfer;

use local::{CLUSTER_ID, LocalCluster};

/// How long a fresh cluster may take to elect its first leader.
const LEADER_WAIT: Duration = Duration::from_secs(20);

const USAGE: &str = "\
usage: cargo xtask bench cluster [--nodes 3] [--clients 1,8,64,256] [--duration 5] [--warmup 1]
                                 [--value-size 128] [--op append|put] [--reps 1] [--out DIR]
                                 [--compare FILE.jsonl]... [--alpo PATH] [--tls off|on|both]
                                 [--variant NAME=FLAGS]... [--client-flags FLAGS]
                                 [--variant-bench NAME=FLAGS]... [--variant-alpo NAME=PATH]...
       cargo xtask bench report FILE.jsonl...";

/// Options of `bench cluster`.
#[derive(Debug, Clone)]
struct Plan {
    nodes: u16,
    clients: Vec<u64>,
    duration: String,
    warmup: String,
    value_size: String,
    op: String,
    reps: u32,
    out: PathBuf,
    compare: Vec<PathBuf>,
    /// A prebuilt `alpo` binary: skips the release build.
    alpo: Option<PathBuf>,
    /// `--tls`: run each point without TLS, with TLS, or both (interleaved).
    tls_modes: Vec<bool>,
    /// Named variants, each point run once per variant (interleaved).
    variants: Vec<Variant>,
    /// Extra `alpo bench` flags of every run.
    client_flags: Vec<String>,
}

/// One variant of a point: extra `alpo node` flags and extra `alpo bench` flags, under a name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Variant {
    /// Names the line's backend `alpo-NAME` (empty: plain `alpo`).
    name: String,
    /// Added to every `alpo node` of the point.
    node_flags: Vec<String>,
    /// Added to `alpo bench`, after the plan's `--client-flags`.
    bench_flags: Vec<String>,
    /// Another `alpo` binary for this variant's nodes and `alpo bench` (`--variant-alpo`).
    alpo: Option<PathBuf>,
}

impl Plan {
    /// The variant named `name`, made (without flags) if new, keeping the order of first
    /// mention.
    fn variant(&mut self, name: &str) -> &mut Variant {
        let index = match self.variants.iter().position(|v| v.name == name) {
            Some(index) => index,
            None => {
                self.variants.push(Variant {
                    name: name.to_string(),
                    ..Variant::default()
                });
                self.variants.len() - 1
            }
        };
        &mut self.variants[index]
    }

    /// `--variant NAME=FLAGS` (node flags), `--variant-bench NAME=FLAGS` (bench flags) or
    /// `--variant-alpo NAME=PATH` (another binary) for variant NAME, made if new.
    fn variant_flag(&mut self, flag: &str, value: &str) -> anyhow::Result<()> {
        let (name, rest) = value
            .split_once('=')
            .with_context(|| format!("{flag} wants NAME=VALUE, found {value:?}"))?;
        if name.is_empty() {
            bail!("{flag} wants a name before '=', found {value:?}");
        }
        let words = rest.split_whitespace().map(str::to_string);
        let variant = self.variant(name);
        match flag {
            "--variant" => variant.node_flags.extend(words),
            "--variant-bench" => variant.bench_flags.extend(words),
            _ if rest.is_empty() => bail!("{flag} wants a path after '=', found {value:?}"),
            _ => variant.alpo = Some(PathBuf::from(rest)),
        }
        Ok(())
    }

    /// The `alpo bench` flags of a point of `variant`: `--op` (unless the variant's own flags
    /// name one), `--client-flags`, then the variant's.
    fn bench_flags(&self, variant: &Variant) -> Vec<String> {
        let mut flags = Vec::new();
        let own_op = variant
            .bench_flags
            .iter()
            .chain(&self.client_flags)
            .any(|flag| flag == "--op");
        if !own_op {
            flags.extend(["--op".to_string(), self.op.clone()]);
        }
        flags.extend(self.client_flags.iter().cloned());
        flags.extend(variant.bench_flags.iter().cloned());
        flags
    }
}

/// Entry point of `cargo xtask bench …`.
pub(crate) fn main(args: &[String]) -> ExitCode {
    let first = args.first().map(String::as_str);
    let result = match (first, first.and_then(bounded::Bench::parse)) {
        (Some("cluster"), _) => parse_plan(&args[1..]).and_then(|plan| cluster(&plan)),
        (Some("checkpoint"), _) => checkpoint::run(&args[1..]),
        (Some("add-member"), _) => add_member::main(&args[1..]),
        (Some("transfer"), _) => transfer::parse(&args[1..]).and_then(|plan| transfer::run(&plan)),
        (Some("report"), _) if args.len() > 1 => {
            let files: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
            report(&files)
        }
        (_, Some(bench)) => bounded::parse(bench, &args[1..]).and_then(|plan| bounded::run(&plan)),
        _ => {
            eprintln!(
                "{USAGE}\n{}\n{}\n{}\n{}",
                bounded::USAGE,
                checkpoint::USAGE,
                add_member::USAGE,
                transfer::USAGE
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_plan(args: &[String]) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        nodes: 3,
        clients: vec![1, 8, 64, 256],
        duration: "5".into(),
        warmup: "1".into(),
        value_size: "128".into(),
        op: "append".into(),
        reps: 1,
        out: PathBuf::from("out"),
        compare: Vec::new(),
        alpo: None,
        tls_modes: vec![false],
        variants: Vec::new(),
        client_flags: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} wants a value\n{USAGE}"))?;
        let number = |what: &str| -> anyhow::Result<u64> {
            value
                .parse()
                .with_context(|| format!("{what} wants a number, found {value:?}"))
        };
        match flag.as_str() {
            "--nodes" => plan.nodes = u16::try_from(number("--nodes")?)?,
            "--clients" => plan.clients = parse_clients(value)?,
            "--duration" => plan.duration.clone_from(value),
            "--warmup" => plan.warmup.clone_from(value),
            "--value-size" => plan.value_size.clone_from(value),
            "--op" => plan.op.clone_from(value),
            "--reps" => plan.reps = u32::try_from(number("--reps")?)?,
            "--out" => plan.out = PathBuf::from(value),
            "--compare" => plan.compare.push(PathBuf::from(value)),
            "--alpo" => plan.alpo = Some(PathBuf::from(value)),
            "--tls" => {
                plan.tls_modes = match value.as_str() {
                    "off" => vec![false],
                    "on" => vec![true],
                    "both" => vec![false, true],
                    other => bail!("--tls wants off, on or both, found {other:?}"),
                }
            }
            "--variant" | "--variant-bench" | "--variant-alpo" => {
                plan.variant_flag(flag, value)?;
            }
            "--client-flags" => plan
                .client_flags
                .extend(value.split_whitespace().map(str::to_string)),
            other => bail!("unknown flag {other:?}\n{USAGE}"),
        }
    }
    if plan.nodes == 0 || plan.nodes > 9 {
        bail!("--nodes must be between 1 and 9, found {}", plan.nodes);
    }
    Ok(plan)
}

/// Parses `1,8,64,256`.
fn parse_clients(text: &str) -> anyhow::Result<Vec<u64>> {
    let clients = text
        .split(',')
        .map(|part| {
            let n: u64 = part
                .trim()
                .parse()
                .with_context(|| format!("--clients: {part:?} is not a number"))?;
            if n == 0 {
                bail!("--clients: a client count must be above zero");
            }
            Ok(n)
        })
        .collect::<anyhow::Result<Vec<u64>>>()?;
    if clients.is_empty() {
        bail!("--clients: give at least one count");
    }
    Ok(clients)
}

fn cluster(plan: &Plan) -> anyhow::Result<()> {
    let alpo = match &plan.alpo {
        Some(path) => path.clone(),
        None => build_release()?,
    };
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let jsonl = plan.out.join(format!("bench-{stamp}.jsonl"));
    let certs = if plan.tls_modes.contains(&true) {
        Some(local::BenchCerts::make(plan.nodes)?)
    } else {
        None
    };
    for rep in 1..=plan.reps {
        for &clients in &plan.clients {
            let plain = [Variant::default()];
            let variants = if plan.variants.is_empty() {
                &plain[..]
            } else {
                &plan.variants[..]
            };
            for (variant, &tls) in variants
                .iter()
                .flat_map(|variant| plan.tls_modes.iter().map(move |tls| (variant, tls)))
            {
                let certs = certs.as_ref().filter(|_| tls);
                let alpo = variant.alpo.as_ref().unwrap_or(&alpo);
                let line = run_point(alpo, plan, clients, rep, certs, variant)?;
                println!("{line}");
                let mut text = std::fs::read_to_string(&jsonl).unwrap_or_default();
                text.push_str(&line);
                text.push('\n');
                std::fs::write(&jsonl, text)
                    .with_context(|| format!("writing {}", jsonl.display()))?;
            }
        }
    }
    if let Some(certs) = &certs {
        certs.remove();
    }
    let mut files = vec![jsonl];
    files.extend(plan.compare.iter().cloned());
    report(&files)
}

/// Builds the release binary; returns its path.
fn build_release() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "alpo-cli"])
        .current_dir(&root)
        .status()
        .context("running cargo build --release")?;
    if !status.success() {
        bail!("cargo build --release -p alpo-cli failed ({status})");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release").join("alpo"))
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or(manifest.clone(), Path::to_path_buf)
}

/// The highest commit index any node reports, once some node is the leader.
fn leader_commit(alpo: &Path, cluster: &LocalCluster) -> anyhow::Result<Option<u64>> {
    let output = Command::new(alpo)
        .args([
            "status",
            "--json",
            "--timeout-ms",
            "1000",
            "--cluster-id",
            CLUSTER_ID,
        ])
        .args(["--endpoints", &cluster.endpoints])
        .args(cluster.client_tls_flags())
        .output()
        .context("running alpo status")?;
    let mut leader = false;
    let mut commit = 0;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(status) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        leader |= status["role"] == "leader";
        commit = commit.max(status["commit_index"].as_u64().unwrap_or(0));
    }
    Ok(leader.then_some(commit))
}

fn wait_for_leader(alpo: &Path, cluster: &LocalCluster) -> anyhow::Result<u64> {
    let deadline = Instant::now() + LEADER_WAIT;
    while Instant::now() < deadline {
        if let Some(commit) = leader_commit(alpo, cluster)? {
            return Ok(commit);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!(
        "no leader within {LEADER_WAIT:?}; node logs in {}",
        cluster.dir.display()
    )
}

/// utime + stime of the running processes, in clock ticks.
fn cpu_ticks(pids: &[Option<u32>]) -> anyhow::Result<u64> {
    let mut ticks = 0;
    for pid in pids.iter().flatten() {
        // utime and stime.
        ticks += stat_ticks(&format!("/proc/{pid}/stat"), [11, 12])?;
    }
    Ok(ticks)
}

/// CPU ticks of this process's children that it has waited for (cutime + cstime): read
/// before and after `alpo bench` runs, the difference is the load generator's CPU (the
/// nodes are waited for only after the point).
fn waited_children_ticks() -> anyhow::Result<u64> {
    stat_ticks("/proc/self/stat", [13, 14])
}

/// The sum of the given fields of a `/proc/…/stat` file, counted after the command name.
fn stat_ticks(path: &str, indices: [usize; 2]) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let mut ticks = 0;
    for index in indices {
        let field = fields
            .get(index)
            .with_context(|| format!("{path}: too few fields"))?;
        ticks += field
            .parse::<u64>()
            .with_context(|| format!("{path}: field {index}"))?;
    }
    Ok(ticks)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100)
}

/// One point: a fresh cluster, `alpo bench`, CPU per committed write; returns the JSON line.
/// The `alpo bench` run of one point against `cluster`.
fn bench_command(
    alpo: &Path,
    plan: &Plan,
    clients: u64,
    cluster: &LocalCluster,
    variant: &Variant,
) -> Command {
    let mut command = Command::new(alpo);
    command
        .args(["bench", "--json", "--cluster-id", CLUSTER_ID])
        .args(["--endpoints", &cluster.endpoints])
        .args([
            "--clients",
            &clients.to_string(),
            "--duration",
            &plan.duration,
        ])
        .args(["--warmup", &plan.warmup, "--value-size", &plan.value_size])
        .args(plan.bench_flags(variant))
        .args(cluster.client_tls_flags());
    command
}

fn run_point(
    alpo: &Path,
    plan: &Plan,
    clients: u64,
    rep: u32,
    certs: Option<&local::BenchCerts>,
    variant: &Variant,
) -> anyhow::Result<String> {
    let point = format!(
        "{rep}-{clients}{}-{}",
        variant.name,
        if certs.is_some() { "tls" } else { "plain" }
    );
    let cluster =
        LocalCluster::start_with_tls(alpo, plan.nodes, &point, &variant.node_flags, certs)?;
    let commit_before = wait_for_leader(alpo, &cluster)?;
    let ticks_before = cpu_ticks(&cluster.pids())?;
    let bench_ticks_before = waited_children_ticks()?;
    let output = bench_command(alpo, plan, clients, &cluster, variant)
        .output()
        .context("running alpo bench")?;
    let ticks_after = cpu_ticks(&cluster.pids())?;
    let bench_ticks = waited_children_ticks()?.saturating_sub(bench_ticks_before);
    let commit_after = leader_commit(alpo, &cluster)?.unwrap_or(commit_before);
    if !output.status.success() {
        bail!(
            "alpo bench failed ({}): {}; node logs in {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            cluster.dir.display()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut line: Value = serde_json::from_str(stdout.trim())
        .with_context(|| format!("alpo bench printed {stdout:?}, not one JSON line"))?;
    let cpu_s = to_f64(ticks_after - ticks_before) / to_f64(clock_ticks_per_second());
    let writes = commit_after.saturating_sub(commit_before);
    // Operations over the whole run, the warm-up counted at the measured rate (as the etcd
    // kit's summary does).
    let ops = line["throughput_ops_s"].as_f64().unwrap_or(0.0)
        * (line["warmup_s"].as_f64().unwrap_or(0.0) + line["seconds"].as_f64().unwrap_or(0.0));
    let extra = [
        ("rep", Value::from(rep)),
        ("nodes", Value::from(plan.nodes)),
        ("node_cpu_s", Value::from(cpu_s)),
        ("committed_writes", Value::from(writes)),
        (
            "cpu_us_per_write",
            Value::from(round1(cpu_s * 1e6 / to_f64(writes.max(1)))),
        ),
        (
            "cpu_us_per_op",
            Value::from(round1(cpu_s * 1e6 / ops.max(1.0))),
        ),
        ("load_avg_1m", Value::from(load_average())),
        (
            "bench_cpu_s",
            Value::from(to_f64(bench_ticks) / to_f64(clock_ticks_per_second())),
        ),
    ];
    if let Value::Object(fields) = &mut line {
        for (key, value) in extra {
            fields.insert(key.into(), value);
        }
        // TLS and each variant are series of their own in the report, next to plain `alpo`.
        let mut backend = if certs.is_some() { "alpo+tls" } else { "alpo" }.to_string();
        if !variant.name.is_empty() {
            backend = format!("{backend}-{}", variant.name);
        }
        if backend != "alpo" {
            fields.insert("backend".into(), Value::from(backend));
        }
    }
    Ok(line.to_string())
}

fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// A count as a float for ratios (exact below 2^53).
fn to_f64(count: u64) -> f64 {
    count as f64
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

/// Medians of one backend at one client count.
#[derive(Debug, Clone, Default, PartialEq)]
struct Row {
    runs: usize,
    throughput: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    errors: f64,
    cpu_us_per_op: Option<f64>,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

/// Whether a line measured reads (`op` get, get-lease, get-stale, get-serializable).
fn is_read(line: &Value) -> bool {
    line["op"].as_str().is_some_and(|op| op.starts_with("get"))
}

/// The series a line belongs to: its backend, and for reads also the op (`alpo get`,
/// `etcd get-serializable`), so etcd's two read kinds and its writes stay apart.
fn series(line: &Value) -> String {
    let backend = line["backend"].as_str().unwrap_or("?");
    match line["op"].as_str() {
        Some(op) if is_read(line) => format!("{backend} {op}"),
        _ => backend.to_string(),
    }
}

/// The etcd series a line of ours is compared with: etcd's linearizable reads for reads,
/// etcd with TLS for a TLS series when the run has one (else plain etcd), plain etcd otherwise.
fn reference_series(series: &str, clients: u64, rows: &BTreeMap<(String, u64), Row>) -> String {
    if series.contains(" get") {
        return "etcd get".to_string();
    }
    let tls = "etcd+tls".to_string();
    if series.contains("+tls") && rows.contains_key(&(tls.clone(), clients)) {
        tls
    } else {
        "etcd".to_string()
    }
}

/// CPU µs per operation of a line: ours directly (per committed write for writes, per
/// operation for reads, which commit nothing); the etcd sweep's `etcd_cpu_s` covers warm-up and
/// measured window, so it is divided by throughput × (warm-up + seconds), as the etcd kit's
/// summary does.
fn cpu_per_op(line: &Value) -> Option<f64> {
    let ours = if is_read(line) {
        "cpu_us_per_op"
    } else {
        "cpu_us_per_write"
    };
    if let Some(value) = line[ours].as_f64() {
        return Some(value);
    }
    let cpu = line["etcd_cpu_s"].as_f64()?;
    let wall = line["warmup_s"].as_f64()? + line["seconds"].as_f64()?;
    let throughput = line["throughput_ops_s"].as_f64()?;
    (throughput > 0.0).then(|| cpu * 1e6 / (throughput * wall))
}

/// Groups lines by (series, clients) and takes medians.
fn summarize(lines: &[Value]) -> BTreeMap<(String, u64), Row> {
    let mut groups: BTreeMap<(String, u64), Vec<&Value>> = BTreeMap::new();
    for line in lines {
        let clients = line["clients"].as_u64().unwrap_or(0);
        groups
            .entry((series(line), clients))
            .or_default()
            .push(line);
    }
    groups
        .into_iter()
        .map(|(key, group)| {
            let field =
                |name: &str| median(group.iter().filter_map(|l| l[name].as_f64()).collect());
            let cpu: Vec<f64> = group.iter().filter_map(|l| cpu_per_op(l)).collect();
            let row = Row {
                runs: group.len(),
                throughput: field("throughput_ops_s"),
                p50: field("p50_us"),
                p90: field("p90_us"),
                p99: field("p99_us"),
                p999: field("p999_us"),
                max: field("max_us"),
                errors: group.iter().filter_map(|l| l["errors"].as_f64()).sum(),
                cpu_us_per_op: (!cpu.is_empty()).then(|| median(cpu)),
            };
            (key, row)
        })
        .collect()
}

fn markdown(rows: &BTreeMap<(String, u64), Row>) -> String {
    let mut out = String::from(
        "| backend | clients | runs | ops/s | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs | \
         errors | CPU µs/op | ops/s vs etcd | p99 vs etcd |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for ((backend, clients), row) in rows {
        let etcd = rows.get(&(reference_series(backend, *clients, rows), *clients));
        let ratio = |f: fn(&Row) -> f64| {
            etcd.filter(|_| !backend.starts_with("etcd"))
                .map_or_else(|| "".to_string(), |e| format!("{:.2}×", f(row) / f(e)))
        };
        let cpu = row
            .cpu_us_per_op
            .map_or_else(|| "".into(), |c| format!("{c:.0}"));
        let _ = writeln!(
            out,
            "| {backend} | {clients} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} \
             | {cpu} | {} | {} |",
            row.runs,
            row.throughput,
            row.p50,
            row.p90,
            row.p99,
            row.p999,
            row.max,
            row.errors,
            ratio(|r| r.throughput),
            ratio(|r| r.p99),
        );
    }
    out
}

fn report(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    for file in files {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for (number, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim_start().starts_with('{'))
        {
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", file.display(), number + 1))?;
            lines.push(value);
        }
    }
    let rows = summarize(&lines);
    let table = markdown(&rows);
    print!("{table}");
    let first = files.first().context("no input file")?;
    let md = first.with_extension("md");
    let plot = first.with_extension("svg");
    std::fs::write(&md, &table).with_context(|| format!("writing {}", md.display()))?;
    std::fs::write(&plot, svg(&rows_by_backend(&rows)))
        .with_context(|| format!("writing {}", plot.display()))?;
    println!("wrote {} and {}", md.display(), plot.display());
    Ok(())
}

/// Per backend: (clients, throughput, p50, p99), in client order.
fn rows_by_backend(rows: &BTreeMap<(String, u64), Row>) -> BTreeMap<String, Vec<[f64; 4]>> {
    let mut out: BTreeMap<String, Vec<[f64; 4]>> = BTreeMap::new();
    for ((backend, clients), row) in rows {
        out.entry(backend.clone()).or_default().push([
            to_f64(*clients),
            row.throughput,
            row.p50,
            row.p99,
        ]);
    }
    out
}

/// Panel geometry of the plot, in SVG user units.
const PANEL_W: f64 = 380.0;
const PANEL_H: f64 = 260.0;
const MARGIN: f64 = 60.0;
/// Line colours, one per backend in name order.
const COLOURS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

/// An SVG of two panels against clients (log scale): throughput (linear), and p50 (solid) and
/// p99 (dashed) latency (log scale), one colour per backend.
fn svg(series: &BTreeMap<String, Vec<[f64; 4]>>) -> String {
    let points = || series.values().flatten();
    let x_max = points().map(|p| p[0]).fold(1.0, f64::max).log10().max(0.1);
    let t_max = points().map(|p| p[1]).fold(1.0, f64::max) * 1.1;
    let l_min = points()
        .map(|p| p[2])
        .fold(f64::INFINITY, f64::min)
        .max(1.0)
        .log10()
        .floor();
    let l_max = points()
        .map(|p| p[3])
        .fold(1.0, f64::max)
        .log10()
        .ceil()
        .max(l_min + 1.0);
    let width = 2.0 * PANEL_W + 3.0 * MARGIN;
    let height = PANEL_H + 2.5 * MARGIN;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let x_of = |left: f64, clients: f64| left + clients.max(1.0).log10() / x_max * PANEL_W;
    let y_lin = |v: f64| MARGIN + PANEL_H - v / t_max * PANEL_H;
    let y_log =
        |v: f64| MARGIN + PANEL_H - (v.max(1.0).log10() - l_min) / (l_max - l_min) * PANEL_H;
    let mut ticks: Vec<f64> = points().map(|p| p[0]).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    panel_frames(&mut out, &ticks, &x_of);
    axis_labels(&mut out, t_max, l_min, l_max, &y_lin, &y_log);
    for (i, (backend, rows)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path = |left: f64, y: &dyn Fn(f64) -> f64, k: usize| {
            rows.iter()
                .map(|p| format!("{:.1},{:.1}", x_of(left, p[0]), y(p[k])))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let right = 2.0 * MARGIN + PANEL_W;
        for (left, k, dash) in [
            (MARGIN, 1, ""),
            (right, 2, ""),
            (right, 3, " stroke-dasharray=\"6 4\""),
        ] {
            let y: &dyn Fn(f64) -> f64 = if k == 1 { &y_lin } else { &y_log };
            let _ = writeln!(
                out,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"{dash} \
                 points=\"{}\"/>",
                path(left, y, k)
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{backend}</text>",
            MARGIN + 10.0 + to_f64(u64::try_from(i).unwrap_or(0)) * 80.0,
            height - 10.0
        );
    }
    out.push_str("</svg>\n");
    out
}

/// The two panels' frames, titles and client-count ticks.
fn panel_frames(out: &mut String, ticks: &[f64], x_of: &dyn Fn(f64, f64) -> f64) {
    for (panel, title) in ["throughput ops/s", "latency µs (p50 solid, p99 dashed)"]
        .iter()
        .enumerate()
    {
        let left = MARGIN + to_f64(u64::try_from(panel).unwrap_or(0)) * (PANEL_W + MARGIN);
        let _ = writeln!(
            out,
            "<rect x=\"{left}\" y=\"{MARGIN}\" width=\"{PANEL_W}\" height=\"{PANEL_H}\" \
             fill=\"none\" stroke=\"#888\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{title}</text>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">clients</text>",
            left + PANEL_W / 2.0,
            MARGIN - 10.0,
            left + PANEL_W / 2.0,
            MARGIN + PANEL_H + 35.0
        );
        for &clients in ticks {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{clients}</text>",
                x_of(left, clients),
                MARGIN + PANEL_H + 15.0
            );
        }
    }
}

/// Tick labels: throughput at quarters of the range, latency at powers of ten.
fn axis_labels(
    out: &mut String,
    t_max: f64,
    l_min: f64,
    l_max: f64,
    y_lin: &dyn Fn(f64) -> f64,
    y_log: &dyn Fn(f64) -> f64,
) {
    for quarter in 0..=4_u32 {
        let value = t_max * f64::from(quarter) / 4.0;
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value:.0}</text>",
            MARGIN - 5.0,
            y_lin(value) + 4.0
        );
    }
    let mut exponent = l_min;
    while exponent <= l_max {
        let value = 10_f64.powf(exponent);
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{value:.0}</text>",
            2.0 * MARGIN + PANEL_W - 5.0,
            y_log(value) + 4.0
        );
        exponent += 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_list_parses_and_is_checked() {
        assert_eq!(parse_clients("1, 8,64").unwrap(), vec![1, 8, 64]);
        assert!(
            parse_clients("1,x")
                .unwrap_err()
                .to_string()
                .contains("\"x\"")
        );
        assert!(parse_clients("0").is_err());
    }

    #[test]
    fn plan_flags_and_errors() {
        let args: Vec<String> = ["--clients", "2,4", "--reps", "3", "--op", "put"]
            .map(String::from)
            .to_vec();
        let plan = parse_plan(&args).unwrap();
        assert_eq!(
            (plan.clients, plan.reps, plan.op.as_str()),
            (vec![2, 4], 3, "put")
        );
        assert!(parse_plan(&["--bogus".into(), "1".into()]).is_err());
        assert!(parse_plan(&["--nodes".into()]).is_err());
        assert!(parse_plan(&["--nodes".into(), "0".into()]).is_err());
    }

    #[test]
    fn medians_and_etcd_ratios() {
        let lines: Vec<Value> = [
            concat!(
                r#"{"backend":"alpo","clients":8,"throughput_ops_s":100.0,"#,
                r#""p50_us":10,"p99_us":40,"errors":0,"cpu_us_per_write":5.0}"#
            ),
            concat!(
                r#"{"backend":"alpo","clients":8,"throughput_ops_s":300.0,"#,
                r#""p50_us":30,"p99_us":60,"errors":1,"cpu_us_per_write":7.0}"#
            ),
            concat!(
                r#"{"backend":"alpo","clients":8,"throughput_ops_s":200.0,"#,
                r#""p50_us":20,"p99_us":50,"errors":0,"cpu_us_per_write":6.0}"#
            ),
            concat!(
                r#"{"backend":"etcd","clients":8,"throughput_ops_s":50.0,"#,
                r#""p50_us":90,"p99_us":100,"errors":0,"#,
                r#""etcd_cpu_s":2.0,"warmup_s":1.0,"seconds":3.0}"#
            ),
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let rows = summarize(&lines);
        let alpo = &rows[&("alpo".to_string(), 8)];
        assert_eq!(
            (alpo.runs, alpo.throughput, alpo.p50, alpo.errors),
            (3, 200.0, 20.0, 1.0)
        );
        assert_eq!(alpo.cpu_us_per_op, Some(6.0));
        let etcd = &rows[&("etcd".to_string(), 8)];
        assert_eq!(etcd.cpu_us_per_op, Some(2.0 * 1e6 / (50.0 * 4.0)));
        let table = markdown(&rows);
        assert!(table.contains("| 4.00× | 0.50× |"), "{table}");
        assert_eq!(median(vec![1.0, 4.0]), 2.5);
    }

    #[test]
    fn tls_lines_are_compared_with_etcd_with_tls() {
        let line = |backend: &str, throughput: f64| -> Value {
            serde_json::json!({
                "backend": backend, "clients": 64, "throughput_ops_s": throughput,
                "p50_us": 10, "p99_us": 40, "errors": 0,
            })
        };
        let lines = [
            line("alpo", 600.0),
            line("alpo+tls", 500.0),
            line("etcd", 100.0),
            line("etcd+tls", 50.0),
        ];
        let table = markdown(&summarize(&lines));
        let row = |backend: &str| {
            let start = format!("| {backend} | 64 |");
            table
                .lines()
                .find(|l| l.starts_with(&start))
                .unwrap()
                .to_string()
        };
        assert!(row("alpo").contains("| 6.00× |"), "{table}");
        assert!(row("alpo+tls").contains("| 10.00× |"), "{table}");
        assert!(row("etcd+tls").ends_with("|  |  |"), "{table}");
        // Without an etcd+tls line, a TLS line falls back to plain etcd.
        let table = markdown(&summarize(&lines[..3]));
        assert!(table.contains("| 5.00× |"), "{table}");
    }

    /// Issue 14: node flags and bench flags gather per variant name, in order of first mention;
    /// a variant's own `--op` replaces the plan's.
    #[test]
    fn variants_carry_node_and_bench_flags() {
        let args: Vec<String> = [
            "--client-flags",
            "--read-percent 100",
            "--variant-bench",
            "lin=--op get",
            "--variant",
            "lease=--lease-drift-ppm 20000",
            "--variant-bench",
            "lease=--op get --consistency lease",
            "--variant",
            "writes=",
        ]
        .map(String::from)
        .to_vec();
        let plan = parse_plan(&args).unwrap();
        let names: Vec<&str> = plan.variants.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["lin", "lease", "writes"]);
        assert_eq!(plan.variants[1].node_flags, ["--lease-drift-ppm", "20000"]);
        let words = |v: &Variant| plan.bench_flags(v).join(" ");
        assert_eq!(words(&plan.variants[0]), "--read-percent 100 --op get");
        assert_eq!(
            words(&plan.variants[1]),
            "--read-percent 100 --op get --consistency lease"
        );
        assert_eq!(words(&plan.variants[2]), "--op append --read-percent 100");
        assert!(parse_plan(&["--variant-bench".into(), "=--op get".into()]).is_err());
        // Another build per variant, beside its flags; the others keep the plan's binary.
        let args = [
            "--variant-alpo",
            "main=/tmp/main-alpo",
            "--variant-bench",
            "main=--op get",
        ];
        let other = parse_plan(&args.map(String::from)).unwrap();
        assert_eq!(
            other.variants[0].alpo,
            Some(PathBuf::from("/tmp/main-alpo"))
        );
        assert_eq!(other.bench_flags(&other.variants[0]).join(" "), "--op get");
        assert!(parse_plan(&["--variant-alpo".into(), "main=".into()]).is_err());
        assert!(parse_plan(&["--variant-bench".into(), "x".into()]).is_err());
    }

    /// Reads are series of their own (backend and op), compared with etcd's linearizable
    /// reads, with CPU per operation rather than per committed write.
    #[test]
    fn reads_are_series_compared_with_etcd_reads() {
        let lines: Vec<Value> = [
            concat!(
                r#"{"backend":"alpo-lin","op":"get","clients":64,"throughput_ops_s":600.0,"#,
                r#""p50_us":10,"p99_us":40,"errors":0,"cpu_us_per_write":9e6,"cpu_us_per_op":7.0}"#
            ),
            concat!(
                r#"{"backend":"etcd","op":"get","clients":64,"throughput_ops_s":100.0,"#,
                r#""p50_us":90,"p99_us":80,"errors":0}"#
            ),
            concat!(
                r#"{"backend":"etcd","op":"get-serializable","clients":64,"#,
                r#""throughput_ops_s":300.0,"p50_us":9,"p99_us":20,"errors":0}"#
            ),
            concat!(
                r#"{"backend":"etcd","op":"put","clients":64,"throughput_ops_s":50.0,"#,
                r#""p50_us":900,"p99_us":2000,"errors":0}"#
            ),
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        let rows = summarize(&lines);
        let keys: Vec<&str> = rows.keys().map(|(series, _)| series.as_str()).collect();
        assert_eq!(
            keys,
            ["alpo-lin get", "etcd", "etcd get", "etcd get-serializable"]
        );
        assert_eq!(
            rows[&("alpo-lin get".to_string(), 64)].cpu_us_per_op,
            Some(7.0)
        );
        let table = markdown(&rows);
        assert!(
            table.contains("| alpo-lin get | 64 | 1 | 600 |")
                && table.contains("| 6.00× | 0.50× |"),
            "{table}"
        );
    }
}
