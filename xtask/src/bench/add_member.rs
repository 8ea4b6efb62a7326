//! Issue 12: `cargo xtask bench add-member --bytes SIZE`: the time to add a member to a cluster
//! holding SIZE bytes of state, from `member add` to the new learner caught up.
//!
//! A fresh 3-node cluster (snapshots every `--snapshot-interval` entries, so the state is in a
//! snapshot and the log is compacted) receives SIZE bytes of key-value puts of distinct keys
//! (`--value-size` bytes each, from `--clients` client threads), so the state machine — and the
//! snapshot image the new member installs — holds every byte. Then, timed from just before
//! `Client::add_member(4, …, learner)`: the add is committed (`add_ms`), the operator starts
//! `alpo node --join` at once, and the learner's applied index reaches the commit index the
//! cluster had before the add (`caught_up_ms`, dominated by install-snapshot). One JSON line
//! per repetition in `--out DIR/add-member-<stamp>.jsonl`, printed too.
//!
//! Invariants: every process started is killed and the cluster's directory removed at the
//! end (`LocalCluster`'s drop; the joined node is killed here), also on failure.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};

use alpo_core::{ClusterId, NodeId};
use alpo_node::{Client, ClientOptions};

use super::bounded::parse_size;
use super::local::{CLUSTER_ID, LocalCluster};

pub(super) const USAGE: &str = "\
       cargo xtask bench add-member [--bytes 256MiB] [--value-size 65536] [--clients 8]
                 [--snapshot-interval 256] [--reps 1] [--out DIR] [--alpo PATH]";

/// How long the load, the add or the catch-up may take.
const WAIT: Duration = Duration::from_secs(600);

/// The options.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    bytes: u64,
    value_size: u64,
    clients: u64,
    snapshot_interval: u64,
    reps: u32,
    out: PathBuf,
    alpo: Option<PathBuf>,
}

fn parse(args: &[String]) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        bytes: 256 << 20,
        value_size: 64 << 10,
        clients: 8,
        snapshot_interval: 256,
        reps: 1,
        out: PathBuf::from("out"),
        alpo: None,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || -> anyhow::Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} wants a number, found {value:?}"))
        };
        match flag.as_str() {
            "--bytes" => plan.bytes = parse_size(value)?,
            "--value-size" => plan.value_size = parse_size(value)?,
            "--clients" => plan.clients = number()?,
            "--snapshot-interval" => plan.snapshot_interval = number()?,
            "--reps" => plan.reps = u32::try_from(number()?)?,
            "--out" => plan.out = PathBuf::from(value),
            "--alpo" => plan.alpo = Some(PathBuf::from(value)),
            other => bail!("unknown flag {other:?}\n{USAGE}"),
        }
    }
    if plan.value_size == 0 || plan.clients == 0 || plan.reps == 0 || plan.snapshot_interval == 0 {
        bail!("--value-size, --clients, --reps and --snapshot-interval must be above 0");
    }
    Ok(plan)
}

/// `cargo xtask bench add-member ARGS`.
pub(super) fn main(args: &[String]) -> anyhow::Result<()> {
    let plan = parse(args)?;
    let alpo = match &plan.alpo {
        Some(path) => path.clone(),
        None => super::build_release()?,
    };
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let jsonl = plan.out.join(format!("add-member-{stamp}.jsonl"));
    let mut lines = String::new();
    for rep in 0..plan.reps {
        let line = once(&plan, &alpo, rep)?;
        println!("{line}");
        lines.push_str(&line.to_string());
        lines.push('\n');
        std::fs::write(&jsonl, &lines).with_context(|| format!("writing {}", jsonl.display()))?;
    }
    eprintln!("wrote {}", jsonl.display());
    Ok(())
}

fn client(endpoints: Vec<SocketAddr>) -> anyhow::Result<Client> {
    let mut options = ClientOptions::new(ClusterId(CLUSTER_ID.parse()?));
    options.request_timeout = WAIT;
    Ok(Client::new(endpoints, options)?)
}

/// The joined node, killed when dropped.
struct Joined(Child);

impl Drop for Joined {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn once(plan: &Plan, alpo: &std::path::Path, rep: u32) -> anyhow::Result<serde_json::Value> {
    let node_flags: Vec<String> = [
        "--snapshot-interval-entries".to_string(),
        plan.snapshot_interval.to_string(),
        "--snapshot-retain-entries".to_string(),
        "16".to_string(),
        "--no-recorder".to_string(),
    ]
    .to_vec();
    let point = format!("add-member-{rep}");
    let cluster = LocalCluster::start(alpo, 3, &point, &node_flags)?;
    let endpoints = cluster.client_addrs();
    let written = load(plan, &endpoints)?;
    let mut client = client(endpoints.clone())?;
    let target = endpoints
        .iter()
        .filter_map(|at| client.status_of(*at).ok())
        .map(|s| s.commit_index.0)
        .max()
        .context("no node answered its status")?;
    let listeners: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    let (peer_addr, client_addr) = (listeners[0].local_addr()?, listeners[1].local_addr()?);
    drop(listeners);
    let started = Instant::now();
    client.add_member(NodeId(4), peer_addr, client_addr, true)?;
    let add_ms = started.elapsed().as_millis();
    let data_dir = cluster.dir.join("node-4");
    let log = std::fs::File::create(cluster.dir.join("node-4.log"))?;
    let joined = Joined(
        Command::new(alpo)
            .args(["node", "--id", "4", "--cluster-id", CLUSTER_ID])
            .args(["--peer-addr", &peer_addr.to_string()])
            .args(["--client-addr", &client_addr.to_string()])
            .args(["--data-dir", &data_dir.display().to_string()])
            .args(["--join", &cluster.endpoints])
            .args(&node_flags)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the joining node")?,
    );
    loop {
        let applied = client.status_of(client_addr).map(|s| s.applied_index.0);
        if applied.is_ok_and(|applied| target <= applied) {
            break;
        }
        if WAIT < started.elapsed() {
            bail!("node 4 did not catch up to index {target} within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let caught_up_ms = started.elapsed().as_millis();
    drop(joined);
    let seconds = (caught_up_ms.max(1) as f64) / 1e3;
    let mib = written as f64 / f64::from(1 << 20);
    Ok(serde_json::json!({
        "bench": "add-member",
        "rep": rep,
        "bytes": written,
        "value_size": plan.value_size,
        "target_index": target,
        "add_ms": add_ms,
        "caught_up_ms": caught_up_ms,
        "mib_per_s": (mib / seconds * 10.0).round() / 10.0,
    }))
}

/// Puts `plan.bytes` of distinct keys from `plan.clients` threads; the bytes written.
fn load(plan: &Plan, endpoints: &[SocketAddr]) -> anyhow::Result<u64> {
    let count = plan.bytes.div_ceil(plan.value_size);
    let value = vec![b'v'; usize::try_from(plan.value_size)?];
    std::thread::scope(|scope| -> anyhow::Result<u64> {
        let workers: Vec<_> = (0..plan.clients)
            .map(|worker| {
                let (endpoints, value) = (endpoints.to_vec(), value.clone());
                scope.spawn(move || -> anyhow::Result<u64> {
                    let mut client = client(endpoints)?;
                    let mut done = 0;
                    for key in (worker..count).step_by(usize::try_from(plan.clients)?) {
                        client.put(format!("key-{key:012}"), value.clone())?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker
                .join()
                .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        }
        Ok(total * plan.value_size)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_and_bad_ones_are_named() {
        let args =
            |text: &str| -> Vec<String> { text.split_whitespace().map(String::from).collect() };
        let plan = parse(&args("--bytes 20MiB --clients 2 --reps 3")).unwrap();
        assert_eq!((plan.bytes, plan.clients, plan.reps), (20 << 20, 2, 3));
        assert!(parse(&args("--clients 0")).is_err());
        assert!(parse(&args("--bytes")).is_err());
        let error = parse(&args("--nodes 5")).unwrap_err().to_string();
        assert!(error.contains("--nodes"), "{error}");
    }
}
