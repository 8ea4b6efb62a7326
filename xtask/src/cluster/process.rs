//! The nodes of a cluster test as real `alpo node` processes: the release build, free ports,
//! one TOML config and data directory per node, start, `kill -9`, `SIGSTOP`/`SIGCONT`.
//!
//! Invariants: each node keeps its listen addresses and data directory for the whole run (a
//! restart reuses its config file); node `i` reaches node `j` only through the proxy address
//! given for that link; every process started here is killed and reaped when the [`Nodes`] value
//! is dropped, also when the run fails or panics, so no `alpo` process outlives the test.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result, bail};

use alpo_node::{NodeConfig, Timeouts};
use xtask::nemesis::SplitMix64;

/// The cluster id every node of a test run uses.
pub(crate) const CLUSTER_ID: u64 = 0x7e57;

/// Builds the `alpo` binary in release mode and returns its path (from cargo's own report, so
/// `CARGO_TARGET_DIR` and the profile directory need not be guessed).
pub(crate) fn build_alpo(workspace: &Path) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut child = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "--release", "-p", "alpo-cli", "--bin", "alpo"])
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cargo build --release -p alpo-cli")?;
    let stdout = child
        .stdout
        .take()
        .context("cargo build: no standard output")?;
    let mut executable = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo build output")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let is_alpo =
            message["reason"] == "compiler-artifact" && message["target"]["name"] == "alpo";
        if let (true, Some(path)) = (is_alpo, message["executable"].as_str()) {
            executable = Some(PathBuf::from(path));
        }
    }
    let status = child.wait().context("waiting for cargo build")?;
    if !status.success() {
        bail!("cargo build --release -p alpo-cli failed ({status})");
    }
    executable.context("cargo build did not report the alpo executable")
}

/// The `[snapshots]` table of a node's config (names in the brief shared with the node
/// wiring): take a snapshot every `interval_entries` applied entries, keep `retain_entries`
/// log entries below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Snapshots {
    /// Entries applied since the last snapshot that trigger the next; 0 = never.
    pub(crate) interval_entries: u64,
    /// Log entries kept below the snapshot index for slow followers.
    pub(crate) retain_entries: u64,
}

/// Whether `binary`'s `alpo node` knows snapshots: its help lists the snapshot flags. A node
/// without them refuses a config with a `[snapshots]` table (unknown fields are errors), so
/// the table is written only when this is true.
pub(crate) fn supports_snapshots(binary: &Path) -> Result<bool> {
    node_help_lists(binary, SNAPSHOT_FLAG)
}

/// Whether `binary`'s `alpo node --help` lists `flag` (how xtask tells what an older binary
/// can do).
fn node_help_lists(binary: &Path, flag: &str) -> Result<bool> {
    let output = Command::new(binary)
        .args(["node", "--help"])
        .output()
        .with_context(|| format!("running {} node --help", binary.display()))?;
    Ok(String::from_utf8_lossy(&output.stdout).contains(flag))
}

/// The `alpo node` flag whose presence says the binary takes snapshots.
pub(crate) const SNAPSHOT_FLAG: &str = "--snapshot-interval-entries";

/// The `alpo node` flag whose presence says the binary's core has a bounded entry cache (rule
/// S9) and reads a `[log]` table.
pub(crate) const LOG_CACHE_FLAG: &str = "--log-cache-bytes-max";

/// Whether `binary`'s `alpo node` has an entry cache: its help lists [`LOG_CACHE_FLAG`].
pub(crate) fn supports_log_cache(binary: &Path) -> Result<bool> {
    node_help_lists(binary, LOG_CACHE_FLAG)
}

/// Reserves `count` distinct free loopback ports by binding them all at once; the caller drops
/// the listeners right before the node that needs the ports starts.
///
/// The ports are taken below the kernel's ephemeral range when it can be read: a node's port is
/// free while the node is killed, and a connection attempt to it (a peer's proxy redialling, a
/// client) could otherwise be given that very port as its local port — a self-connected socket
/// that keeps the port busy so the restarted node cannot bind it. Elsewhere `127.0.0.1:0`.
pub(crate) fn reserve_ports(count: usize, seed: u64) -> Result<Vec<TcpListener>> {
    if let Some(low) = ephemeral_low() {
        let mut rng = SplitMix64::new(seed ^ u64::from(std::process::id()));
        let mut listeners = Vec::with_capacity(count);
        // Bounded: at most 64 tries per port wanted.
        for _ in 0..count * 64 {
            if listeners.len() == count {
                break;
            }
            let port = rng.range_inclusive(PORT_LOW, low - 1);
            let Ok(port) = u16::try_from(port) else {
                continue;
            };
            if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
                listeners.push(listener);
            }
        }
        if listeners.len() == count {
            return Ok(listeners);
        }
    }
    (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("reserving a loopback port"))
        .collect()
}

/// The lowest port reserved ports are drawn from.
const PORT_LOW: u64 = 10_000;

/// The first port of the kernel's ephemeral range, if readable and above [`PORT_LOW`] + 1000.
fn ephemeral_low() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let low: u64 = text.split_whitespace().next()?.parse().ok()?;
    (PORT_LOW + 1_000 <= low).then_some(low)
}

/// Where one node listens and keeps its files.
#[derive(Debug, Clone)]
pub(crate) struct NodeSpec {
    /// Node id (index + 1).
    pub(crate) id: u64,
    /// Where it listens for peers (the proxies' target).
    pub(crate) peer_addr: SocketAddr,
    /// Where it listens for clients (not proxied).
    pub(crate) client_addr: SocketAddr,
    /// Its config file.
    pub(crate) config_path: PathBuf,
    /// Its standard output and error, appended across restarts.
    pub(crate) log_path: PathBuf,
}

/// Writes node `index`'s config: its own addresses, and for each peer `j` the proxy address
/// `peer_via[j]` in place of `j`'s peer address. `peer_via[index]` is ignored. With
/// `snapshots`, the config gains a `[snapshots]` table.
pub(crate) fn write_config(
    dir: &Path,
    specs: &[NodeSpec],
    index: usize,
    peer_via: &[SocketAddr],
    snapshots: Option<Snapshots>,
) -> Result<()> {
    let me = &specs[index];
    let peers: Vec<serde_json::Value> = specs
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != index)
        .map(|(j, peer)| {
            serde_json::json!({
                "id": peer.id,
                "peer_addr": peer_via[j],
                "client_addr": peer.client_addr,
            })
        })
        .collect();
    // Built through serde rather than a struct literal, so fields the node adds later with
    // defaults (its `[snapshots]` table) need no change here.
    let config: NodeConfig = serde_json::from_value(serde_json::json!({
        "id": me.id,
        "cluster_id": CLUSTER_ID,
        "data_dir": data_dir(dir, index),
        "peer_addr": me.peer_addr,
        "client_addr": me.client_addr,
        "peers": peers,
        "timeouts": Timeouts::lan(),
    }))
    .with_context(|| format!("building the config of node n{index}"))?;
    config
        .validate()
        .with_context(|| format!("config of node n{index}"))?;
    let mut text = to_toml(&config)?;
    if let Some(snapshots) = snapshots {
        text.push_str(&snapshots_toml(snapshots));
    }
    std::fs::write(&me.config_path, text)
        .with_context(|| format!("writing {}", me.config_path.display()))
}

/// The running (or killed, or paused) node processes of a run.
#[derive(Debug)]
pub(crate) struct Nodes {
    binary: PathBuf,
    specs: Vec<NodeSpec>,
    children: Vec<Option<Child>>,
    paused: Vec<bool>,
    /// Issue 12: the data directories of old incarnations, moved aside by
    /// [`Nodes::renumber`] (kept for trace replay).
    retired: Vec<PathBuf>,
}

impl Nodes {
    /// No node running yet.
    pub(crate) fn new(binary: PathBuf, specs: Vec<NodeSpec>) -> Nodes {
        let count = specs.len();
        Nodes {
            binary,
            specs,
            children: (0..count).map(|_| None).collect(),
            paused: vec![false; count],
            retired: Vec::new(),
        }
    }

    /// Issue 12: node `index` (stopped) becomes a new member with id `id`: its data directory
    /// `data` is moved aside to `data-n<index>-id<old id>` (listed by [`Nodes::retired`]) and
    /// its config file names the new id, and so do the other nodes' peer lists; the same
    /// addresses and the rest of the configs stay.
    pub(crate) fn renumber(&mut self, index: usize, id: u64, data: &Path) -> Result<()> {
        assert!(
            self.children[index].is_none(),
            "invariant: a node is renumbered only while stopped"
        );
        let spec = &mut self.specs[index];
        let parked = data.with_file_name(format!("data-n{index}-id{}", spec.id));
        if data.exists() {
            std::fs::rename(data, &parked)
                .with_context(|| format!("moving {} to {}", data.display(), parked.display()))?;
            self.retired.push(parked);
        }
        let text = std::fs::read_to_string(&spec.config_path)
            .with_context(|| format!("reading {}", spec.config_path.display()))?;
        let old_line = format!("id = {}\n", spec.id);
        let Some(rest) = text.strip_prefix(&old_line) else {
            bail!(
                "{} does not start with {old_line:?}",
                spec.config_path.display()
            );
        };
        std::fs::write(&spec.config_path, format!("id = {id}\n{rest}"))
            .with_context(|| format!("writing {}", spec.config_path.display()))?;
        let old_id = spec.id;
        spec.id = id;
        // The others' peer lists name the new id at the same (proxy) addresses, as an operator
        // updates the `--peer` flags: a node restarted with a removed id at an address a new
        // member now uses refuses to start ("address used twice").
        let (old_entry, new_entry) = (
            format!("[[peers]]\nid = {old_id}\n"),
            format!("[[peers]]\nid = {id}\n"),
        );
        for (other, spec) in self.specs.iter().enumerate().filter(|(j, _)| *j != index) {
            let text = std::fs::read_to_string(&spec.config_path)
                .with_context(|| format!("reading {}", spec.config_path.display()))?;
            if !text.contains(&old_entry) {
                bail!("n{other}'s config names no peer {old_id}");
            }
            std::fs::write(&spec.config_path, text.replace(&old_entry, &new_entry))
                .with_context(|| format!("writing {}", spec.config_path.display()))?;
        }
        Ok(())
    }

    /// Issue 12: the data directories of the nodes' old incarnations.
    pub(crate) fn retired(&self) -> &[PathBuf] {
        &self.retired
    }

    /// Issue 12: starts node `index` with `--join ENDPOINTS` (a new member with an empty data
    /// directory; later starts go without it).
    pub(crate) fn start_joining(&mut self, index: usize, endpoints: &[SocketAddr]) -> Result<()> {
        let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
        self.start_with(index, &["--join".to_owned(), list.join(",")])
    }

    /// The nodes' specs.
    pub(crate) fn specs(&self) -> &[NodeSpec] {
        &self.specs
    }

    /// True when node `index` is killed or paused.
    pub(crate) fn down(&self) -> Vec<bool> {
        (0..self.specs.len())
            .map(|i| self.children[i].is_none() || self.paused[i])
            .collect()
    }

    /// Starts node `index` from its config file (no-op if it runs).
    pub(crate) fn start(&mut self, index: usize) -> Result<()> {
        self.start_with(index, &[])
    }

    fn start_with(&mut self, index: usize, extra: &[String]) -> Result<()> {
        if self.children[index].is_some() {
            return Ok(());
        }
        let spec = &self.specs[index];
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log_path)
            .with_context(|| format!("opening {}", spec.log_path.display()))?;
        let log_err = log.try_clone().context("duplicating a node log handle")?;
        let child = Command::new(&self.binary)
            .arg("node")
            .arg("--config")
            .arg(&spec.config_path)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .with_context(|| format!("starting node n{index} ({})", self.binary.display()))?;
        self.children[index] = Some(child);
        self.paused[index] = false;
        Ok(())
    }

    /// `kill -9` node `index` and reaps it (no-op if it is not running).
    pub(crate) fn kill(&mut self, index: usize) -> Result<()> {
        if let Some(mut child) = self.children[index].take() {
            // SIGKILL also ends a stopped process.
            let _ = child.kill();
            child
                .wait()
                .with_context(|| format!("reaping node n{index}"))?;
        }
        self.paused[index] = false;
        Ok(())
    }

    /// `SIGSTOP` (pause) or `SIGCONT` (resume) node `index`.
    pub(crate) fn signal_pause(&mut self, index: usize, pause: bool) -> Result<()> {
        let Some(child) = &self.children[index] else {
            return Ok(());
        };
        let signal = if pause { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill {signal} of node n{index} failed ({status})");
        }
        self.paused[index] = pause;
        Ok(())
    }

    /// Issue 12: SIGTERM node `index` and waits up to `wait` for it to exit (a leader hands over
    /// first). Returns its exit status, or `None` if it did not exit in time: it is then killed
    /// (`kill -9`) and reaped. A node that is not running returns `Some("not running")`.
    pub(crate) fn terminate(
        &mut self,
        index: usize,
        wait: std::time::Duration,
    ) -> Result<Option<String>> {
        let Some(child) = &mut self.children[index] else {
            return Ok(Some("not running".into()));
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM of node n{index} failed ({status})");
        }
        let deadline = std::time::Instant::now() + wait;
        while std::time::Instant::now() < deadline {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for node n{index}"))?
            {
                self.children[index] = None;
                self.paused[index] = false;
                return Ok(Some(status.to_string()));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.kill(index)?;
        Ok(None)
    }

    /// Nodes whose process ended on its own (not killed by us), with the exit status.
    pub(crate) fn exited(&mut self) -> Vec<(usize, String)> {
        let mut exited = Vec::new();
        for (index, slot) in self.children.iter_mut().enumerate() {
            if let Some(child) = slot
                && let Ok(Some(status)) = child.try_wait()
            {
                exited.push((index, status.to_string()));
                *slot = None;
            }
        }
        exited
    }

    /// Kills every node; used at the end of a run and on drop.
    pub(crate) fn kill_all(&mut self) {
        for index in 0..self.children.len() {
            let _ = self.kill(index);
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Creates a fresh, empty file (truncating an old one).
pub(crate) fn create_empty(path: &Path) -> Result<()> {
    File::create(path)
        .map(drop)
        .with_context(|| format!("creating {}", path.display()))
}

/// The config as TOML, in the form `NodeConfig::load` reads (written here to keep xtask's
/// dependencies to its allow-list). Strings are JSON-quoted, which TOML basic strings accept.
fn to_toml(config: &NodeConfig) -> Result<String> {
    let quote = |text: &str| serde_json::to_string(text).context("quoting a config string");
    let data_dir = config
        .data_dir
        .to_str()
        .context("the data directory path is not UTF-8")?;
    let mut text = format!(
        "id = {}\ncluster_id = {}\ndata_dir = {}\npeer_addr = {}\nclient_addr = {}\n",
        config.id,
        config.cluster_id,
        quote(data_dir)?,
        quote(&config.peer_addr.to_string())?,
        quote(&config.client_addr.to_string())?,
    );
    for peer in &config.peers {
        text.push_str(&format!(
            "\n[[peers]]\nid = {}\npeer_addr = {}\nclient_addr = {}\n",
            peer.id,
            quote(&peer.peer_addr.to_string())?,
            quote(&peer.client_addr.to_string())?,
        ));
    }
    let t = config.timeouts;
    text.push_str(&format!(
        "\n[timeouts]\nheartbeat_interval_ms = {}\npassive_timeout_ms_min = {}\n\
         passive_timeout_ms_max = {}\nelection_cycle_ms_min = {}\nelection_cycle_ms_max = {}\n",
        t.heartbeat_interval_ms,
        t.passive_timeout_ms_min,
        t.passive_timeout_ms_max,
        t.election_cycle_ms_min,
        t.election_cycle_ms_max,
    ));
    Ok(text)
}

/// The `[snapshots]` table, as `alpo node --config` reads it.
pub(crate) fn snapshots_toml(snapshots: Snapshots) -> String {
    format!(
        "\n[snapshots]\ninterval_entries = {}\nretain_entries = {}\n",
        snapshots.interval_entries, snapshots.retain_entries
    )
}

/// Appends a `[log]` table with the entry cache's size (rule S9) to the config of `spec`.
pub(crate) fn append_log_cache(spec: &NodeSpec, cache_bytes_max: u64) -> Result<()> {
    append_table(
        spec,
        "[log]",
        &format!("\n[log]\ncache_bytes_max = {cache_bytes_max}\n"),
    )
}

/// Issue 16: appends a `[tls]` table naming `paths` (a node's CA, certificate and key) to the
/// config of `spec`.
pub(crate) fn append_tls(spec: &NodeSpec, paths: &alpo_node::tls::TlsPaths) -> Result<()> {
    let quote = |path: Option<&Path>| -> Result<String> {
        let text = path
            .and_then(Path::to_str)
            .context("a certificate path is missing or not UTF-8")?;
        serde_json::to_string(text).context("quoting a path")
    };
    let table = format!(
        "\n[tls]\nca = {}\ncert = {}\nkey = {}\nrequire_client_cert = true\n",
        quote(Some(&paths.ca))?,
        quote(paths.cert.as_deref())?,
        quote(paths.key.as_deref())?,
    );
    append_table(spec, "[tls]", &table)
}

/// Appends `table` (TOML text) to the config of `spec` and checks the node reads it back.
fn append_table(spec: &NodeSpec, name: &str, table: &str) -> Result<()> {
    let mut text = std::fs::read_to_string(&spec.config_path)
        .with_context(|| format!("reading {}", spec.config_path.display()))?;
    text.push_str(table);
    std::fs::write(&spec.config_path, text)
        .with_context(|| format!("writing {}", spec.config_path.display()))?;
    // The node must read it back as written.
    NodeConfig::load(&spec.config_path)
        .with_context(|| format!("config of node {} with {name}", spec.id))?;
    Ok(())
}

/// Issue 15: appends a `[recorder]` table cutting the node's trace into files of
/// `file_bytes_max` within `disk_bytes_max`, so that a run's traces begin with checkpoints and
/// the ring drops the oldest files.
pub(crate) fn append_recorder(
    spec: &NodeSpec,
    disk_bytes_max: u64,
    file_bytes_max: u64,
) -> Result<()> {
    append_table(
        spec,
        "[recorder]",
        &format!(
            "\n[recorder]\ndisk_bytes_max = {disk_bytes_max}\nfile_bytes_max = {file_bytes_max}\n"
        ),
    )
}

/// Issue 14: appends a `[reads]` table giving the node of `spec` read leases under the clock
/// drift bound `drift_ppm` (rule Q3; the nemesis never drifts a clock, so the bound holds).
pub(crate) fn append_reads(spec: &NodeSpec, drift_ppm: u32) -> Result<()> {
    append_table(
        spec,
        "[reads]",
        &format!("\n[reads]\nlease_drift_ppm = {drift_ppm}\n"),
    )?;
    let config = NodeConfig::load(&spec.config_path)
        .with_context(|| format!("config of node {} with [reads]", spec.id))?;
    anyhow::ensure!(
        config.reads.lease_drift_ppm == drift_ppm,
        "config of node {}: [reads] did not load back",
        spec.id
    );
    Ok(())
}

/// The data directory of node `index` of a run in `dir`.
pub(crate) fn data_dir(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("data-n{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_and_outside_the_ephemeral_range() {
        let listeners = reserve_ports(10, 1).unwrap();
        let ports: std::collections::BTreeSet<u16> = listeners
            .iter()
            .map(|listener| listener.local_addr().unwrap().port())
            .collect();
        assert_eq!(ports.len(), 10);
        if let Some(low) = ephemeral_low() {
            assert!(ports.iter().all(|port| u64::from(*port) < low), "{ports:?}");
        }
    }

    #[test]
    fn the_written_config_loads_back_equal() {
        let dir = std::env::temp_dir().join(format!("xtask-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let specs: Vec<NodeSpec> = (0..3u16)
            .map(|i| NodeSpec {
                id: u64::from(i) + 1,
                peer_addr: addr(9000 + i),
                client_addr: addr(9100 + i),
                config_path: dir.join(format!("n{i}.toml")),
                log_path: dir.join(format!("n{i}.log")),
            })
            .collect();
        let via = vec![addr(9200), addr(9201), addr(9202)];
        write_config(&dir, &specs, 1, &via, None).unwrap();
        let loaded = NodeConfig::load(&specs[1].config_path).unwrap();
        assert_eq!(loaded.id, 2);
        assert_eq!(loaded.client_addr, addr(9101));
        assert_eq!(loaded.data_dir, dir.join("data-n1"));
        let peers: Vec<_> = loaded
            .peers
            .iter()
            .map(|p| (p.id, p.peer_addr, p.client_addr))
            .collect();
        assert_eq!(
            peers,
            vec![(1, addr(9200), addr(9100)), (3, addr(9202), addr(9102))]
        );
        assert_eq!(loaded.timeouts, Timeouts::lan());
        let snapshots = Snapshots {
            interval_entries: 2_000,
            retain_entries: 500,
        };
        write_config(&dir, &specs, 1, &via, Some(snapshots)).unwrap();
        let text = std::fs::read_to_string(&specs[1].config_path).unwrap();
        assert!(
            text.ends_with("\n[snapshots]\ninterval_entries = 2000\nretain_entries = 500\n"),
            "{text}"
        );
        append_log_cache(&specs[1], 4096).unwrap();
        let loaded = NodeConfig::load(&specs[1].config_path).unwrap();
        assert_eq!(loaded.log.cache_bytes_max, 4096);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
