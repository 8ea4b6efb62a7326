//! A benchmark cluster of `alpo node` processes on free loopback ports, each with a fresh data
//! directory under one temporary directory, started from command-line flags (no config file).
//!
//! Invariants: a node keeps its addresses, flags and data directory across a kill and a
//! restart; dropping the cluster kills and reaps every node and removes the directory, also
//! when the benchmark fails.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// The cluster id the benchmark clusters use.
pub(super) const CLUSTER_ID: &str = "77";

/// A running benchmark cluster; dropping it kills the nodes and removes their data.
#[derive(Debug)]
pub(super) struct LocalCluster {
    alpo: PathBuf,
    /// Peer addresses, then client addresses.
    addrs: Vec<SocketAddr>,
    /// Flags every node gets after its own (the snapshot options).
    node_flags: Vec<String>,
    children: Vec<Option<Child>>,
    /// Each node's id (index + 1, until issue 12's `start_joining` gives it another).
    ids: Vec<u64>,
    /// The directory holding every node's data directory and log.
    pub(super) dir: PathBuf,
    /// The client addresses, comma-separated, for `alpo bench` and `alpo status`.
    pub(super) endpoints: String,
    /// Issue 16: the certificates the nodes and clients use, if TLS is on.
    tls: Option<BenchCerts>,
}

/// Issue 16: certificates for a benchmark's TLS points (a CA, one per node, a client), made
/// once per run with `alpo_node::tls::certs::init`; removed when dropped.
#[derive(Debug, Clone)]
pub(super) struct BenchCerts {
    dir: PathBuf,
    files: alpo_node::tls::certs::InitFiles,
}

impl BenchCerts {
    /// Makes certificates for nodes 1..=`nodes` in a fresh temporary directory.
    pub(super) fn make(nodes: u16) -> anyhow::Result<BenchCerts> {
        let dir = std::env::temp_dir().join(format!("alpo-bench-certs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let ids: Vec<alpo_core::NodeId> = (1..=u64::from(nodes)).map(alpo_core::NodeId).collect();
        let files = alpo_node::tls::certs::init(&dir, &ids)
            .with_context(|| format!("making certificates in {}", dir.display()))?;
        Ok(BenchCerts { dir, files })
    }

    /// The `alpo node` flags of node `index` (from 0).
    fn node_flags(&self, index: usize) -> Vec<String> {
        let Some((_, paths)) = self.files.nodes.get(index) else {
            return Vec::new();
        };
        tls_flags(paths)
    }

    /// The client commands' flags.
    fn client_flags(&self) -> Vec<String> {
        tls_flags(&self.files.client)
    }

    /// Removes the certificates (a clone shares the directory: call once, at the end).
    pub(super) fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn tls_flags(paths: &alpo_node::tls::TlsPaths) -> Vec<String> {
    let mut flags = vec!["--tls-ca".to_string(), paths.ca.display().to_string()];
    if let (Some(cert), Some(key)) = (&paths.cert, &paths.key) {
        flags.extend([
            "--tls-cert".to_string(),
            cert.display().to_string(),
            "--tls-key".to_string(),
            key.display().to_string(),
        ]);
    }
    flags
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for index in 0..self.children.len() {
            self.kill(index);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Free loopback addresses: bound to port 0, then released (another process could take one in
/// between; the node then fails to start and the point fails with its log named).
fn free_addrs(count: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .context("binding a free loopback port")?;
    listeners
        .iter()
        .map(|l| l.local_addr().context("reading a bound port"))
        .collect()
}

impl LocalCluster {
    /// Starts `nodes` nodes of `alpo`, each also given `node_flags`; `point` names the
    /// directory.
    pub(super) fn start(
        alpo: &Path,
        nodes: u16,
        point: &str,
        node_flags: &[String],
    ) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with_tls(alpo, nodes, point, node_flags, None)
    }

    /// Like [`LocalCluster::start`], with TLS on both ports if `certs` is given.
    pub(super) fn start_with_tls(
        alpo: &Path,
        nodes: u16,
        point: &str,
        node_flags: &[String],
        certs: Option<&BenchCerts>,
    ) -> anyhow::Result<LocalCluster> {
        let n = usize::from(nodes);
        let addrs = free_addrs(2 * n)?;
        let dir = std::env::temp_dir().join(format!("alpo-bench-{}-{point}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut cluster = LocalCluster {
            alpo: alpo.to_path_buf(),
            endpoints: addrs[n..]
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            addrs,
            node_flags: node_flags.to_vec(),
            children: (0..n).map(|_| None).collect(),
            ids: (1..=u64::from(nodes)).collect(),
            dir,
            tls: certs.cloned(),
        };
        for i in 0..n {
            cluster.start_node(i)?;
        }
        Ok(cluster)
    }

    /// The flags a client command (`alpo status`, `alpo bench`) needs to reach this cluster.
    pub(super) fn client_tls_flags(&self) -> Vec<String> {
        self.tls
            .as_ref()
            .map_or_else(Vec::new, BenchCerts::client_flags)
    }

    /// The number of nodes.
    pub(super) fn len(&self) -> usize {
        self.children.len()
    }

    /// Node `index`'s client address.
    pub(super) fn client_addr(&self, index: usize) -> SocketAddr {
        self.addrs[self.len() + index]
    }

    /// Every node's client address.
    pub(super) fn client_addrs(&self) -> Vec<SocketAddr> {
        self.addrs[self.len()..].to_vec()
    }

    /// Node `index`'s data directory.
    pub(super) fn data_dir(&self, index: usize) -> PathBuf {
        self.dir.join(format!("node-{}", self.ids[index]))
    }

    /// Node `index`'s peer and client addresses.
    pub(super) fn addrs_of(&self, index: usize) -> (SocketAddr, SocketAddr) {
        (self.addrs[index], self.addrs[self.len() + index])
    }

    /// Node `index`'s id.
    pub(super) fn id(&self, index: usize) -> u64 {
        self.ids[index]
    }

    /// Issue 12: node `index` (stopped) comes back as the new member `id`, with a fresh data
    /// directory, started with `--join` and the other nodes' client addresses (add it first).
    pub(super) fn start_joining(&mut self, index: usize, id: u64) -> anyhow::Result<()> {
        assert!(
            self.children[index].is_none(),
            "invariant: a node joins under a new id only while stopped"
        );
        self.ids[index] = id;
        let others: Vec<String> = (0..self.len())
            .filter(|&j| j != index)
            .map(|j| self.client_addr(j).to_string())
            .collect();
        self.spawn(index, &["--join".to_string(), others.join(",")])
    }

    /// The process ids of the running nodes, by node index.
    pub(super) fn pids(&self) -> Vec<Option<u32>> {
        self.children
            .iter()
            .map(|child| child.as_ref().map(Child::id))
            .collect()
    }

    /// Starts node `index` (no-op if it runs); its output is appended to `node-N.log`.
    pub(super) fn start_node(&mut self, index: usize) -> anyhow::Result<()> {
        self.spawn(index, &[])
    }

    fn spawn(&mut self, index: usize, extra: &[String]) -> anyhow::Result<()> {
        if self.children[index].is_some() {
            return Ok(());
        }
        let n = self.len();
        let mut command = Command::new(&self.alpo);
        command
            .args([
                "node",
                "--cluster-id",
                CLUSTER_ID,
                "--id",
                &self.ids[index].to_string(),
            ])
            .arg("--data-dir")
            .arg(self.data_dir(index))
            .args(["--peer-addr", &self.addrs[index].to_string()])
            .args(["--client-addr", &self.addrs[n + index].to_string()]);
        for j in (0..n).filter(|&j| j != index) {
            command.args([
                "--peer",
                &format!("{}={},{}", self.ids[j], self.addrs[j], self.addrs[n + j]),
            ]);
        }
        command.args(&self.node_flags).args(extra);
        if let Some(certs) = &self.tls {
            command.args(certs.node_flags(index));
        }
        let log_path = self.dir.join(format!("node-{}.log", self.ids[index]));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.alpo.display()))?;
        self.children[index] = Some(child);
        Ok(())
    }

    /// `kill -9` node `index` and reaps it (no-op if it is not running).
    pub(super) fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Nodes whose process ended on its own, with the exit status (they are forgotten).
    pub(super) fn exited(&mut self) -> Vec<(usize, String)> {
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
}
