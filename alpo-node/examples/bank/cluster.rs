//! A cluster of nodes in one process, on loopback ports the system picks, each with its own
//! data directory under one parent: what the bank example and its test run.
//!
//! Invariants: peer ports are bound before any node starts (each node is handed its bound
//! listener), so nodes know each other's addresses; client ports are picked free just before
//! (another process could take one in between, which `Server::start_with_listener` reports);
//! `stop` stops every node, joining its threads.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;

use alpo_node::{
    Error, LogSettings, NodeConfig, PeerConfig, Server, Snapshots, StateMachine, Timeouts,
};

/// Running nodes and their configurations.
#[derive(Debug)]
pub(crate) struct LocalCluster {
    /// Each node's configuration, node `i + 1` at position `i`.
    pub(crate) configs: Vec<NodeConfig>,
    /// Each node's server, `None` once stopped.
    pub(crate) servers: Vec<Option<Server>>,
}

impl LocalCluster {
    /// Starts `size` nodes of cluster `cluster_id`, node `i` keeping its data in
    /// `dir/node-<i>`, each with the state machine `machine()` returns.
    pub(crate) fn start<M: StateMachine>(
        dir: &Path,
        size: u64,
        cluster_id: u64,
        machine: impl Fn() -> M,
    ) -> Result<LocalCluster, Error> {
        let bind = || {
            TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
                what: "binding a loopback port".into(),
                source,
            })
        };
        let address = |listener: &TcpListener| {
            listener.local_addr().map_err(|source| Error::Io {
                what: "reading a bound port".into(),
                source,
            })
        };
        let peer_listeners = (0..size).map(|_| bind()).collect::<Result<Vec<_>, _>>()?;
        let peer_addrs = peer_listeners
            .iter()
            .map(address)
            .collect::<Result<Vec<_>, _>>()?;
        // Bound and released: the node binds its client port itself.
        let client_addrs = (0..size)
            .map(|_| bind().and_then(|listener| address(&listener)))
            .collect::<Result<Vec<SocketAddr>, _>>()?;
        let configs: Vec<NodeConfig> = (0..peer_addrs.len())
            .map(|i| NodeConfig {
                id: i as u64 + 1,
                cluster_id,
                data_dir: dir.join(format!("node-{}", i + 1)),
                peer_addr: peer_addrs[i],
                client_addr: client_addrs[i],
                peers: (0..peer_addrs.len())
                    .filter(|j| *j != i)
                    .map(|j| PeerConfig {
                        id: j as u64 + 1,
                        peer_addr: peer_addrs[j],
                        client_addr: client_addrs[j],
                    })
                    .collect(),
                timeouts: Timeouts::lan(),
                snapshots: Snapshots::default(),
                log: LogSettings::default(),
            })
            .collect();
        let mut servers = Vec::new();
        for (config, listener) in configs.iter().zip(peer_listeners) {
            servers.push(Some(Server::start_with_listener(
                config.clone(),
                listener,
                machine(),
            )?));
        }
        Ok(LocalCluster { configs, servers })
    }

    /// Every node's client address: what a `Client` is given.
    #[must_use]
    pub(crate) fn endpoints(&self) -> Vec<SocketAddr> {
        self.configs
            .iter()
            .map(|config| config.client_addr)
            .collect()
    }

    /// Stops node `i` (position in `configs`), if it runs.
    pub(crate) fn stop_node(&mut self, i: usize) -> Result<(), Error> {
        match self.servers.get_mut(i).and_then(Option::take) {
            Some(server) => server.stop(),
            None => Ok(()),
        }
    }

    /// Stops every node.
    pub(crate) fn stop(mut self) -> Result<(), Error> {
        for i in 0..self.servers.len() {
            self.stop_node(i)?;
        }
        Ok(())
    }
}
