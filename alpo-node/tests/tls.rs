//! Issue 16 end to end: a 3-node cluster with `[tls]` on both ports elects a leader and commits
//! appends from a client holding a certificate, over the blocking client and the many-session
//! driver; a client without a certificate, or speaking plain TCP, is refused by name and the
//! cluster keeps serving; a node restarted with a new certificate (rotation) rejoins.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::wait_until;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use alpo_core::{ClusterId, LogIndex, Role};
use alpo_node::tls::certs::{self, Authority, Validity};
use alpo_node::tls::{TlsConfig, TlsPaths, TlsSettings};
use alpo_node::{Client, ClientOptions, Error, KvStateMachine, NodeConfig, PeerConfig, Server};

const CLUSTER: u64 = 0x7150;

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct TlsCluster {
    configs: Vec<NodeConfig>,
    servers: Vec<Option<Server>>,
    files: certs::InitFiles,
    dir: tempfile::TempDir,
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let dir = tempfile::tempdir().unwrap();
        let files =
            certs::init(&dir.path().join("certs"), &[1, 2, 3].map(alpo_core::NodeId)).unwrap();
        let members: Vec<PeerConfig> = (1..=3)
            .map(|id| PeerConfig {
                id,
                peer_addr: free_addr(),
                client_addr: free_addr(),
            })
            .collect();
        let mut configs = NodeConfig::for_members(CLUSTER, dir.path(), &members);
        for (config, (_, paths)) in configs.iter_mut().zip(&files.nodes) {
            config.tls = Some(TlsSettings {
                ca: paths.ca.clone(),
                cert: paths.cert.clone().unwrap(),
                key: paths.key.clone().unwrap(),
                require_client_cert: true,
            });
        }
        let servers = configs
            .iter()
            .map(|config| Some(Server::start(config.clone(), KvStateMachine::new()).unwrap()))
            .collect();
        TlsCluster {
            configs,
            servers,
            files,
            dir,
        }
    }

    fn endpoints(&self) -> Vec<SocketAddr> {
        self.configs.iter().map(|c| c.client_addr).collect()
    }

    fn client(&self, tls: Option<TlsConfig>, timeout: Duration) -> Client {
        let mut options = ClientOptions::new(ClusterId(CLUSTER));
        options.request_timeout = timeout;
        options.attempt_timeout = options.attempt_timeout.min(timeout);
        Client::new(self.endpoints(), options)
            .unwrap()
            .with_tls(tls)
    }

    fn client_tls(&self) -> TlsConfig {
        TlsConfig::load(&self.files.client).unwrap()
    }

    fn wait_for_leader(&self) -> usize {
        wait_until("a leader", || {
            let running: Vec<_> = self.servers.iter().flatten().map(Server::status).collect();
            let leaders: Vec<_> = running.iter().filter(|s| s.role == Role::Leader).collect();
            let [leader] = leaders[..] else { return None };
            let agreed = running.iter().all(|s| s.leader == Some(leader.id));
            agreed.then(|| (leader.id.0 - 1) as usize)
        })
    }
}

#[test]
fn a_tls_cluster_serves_clients_with_certificates_and_refuses_others() {
    let mut cluster = TlsCluster::start();
    cluster.wait_for_leader();
    let mut client = cluster.client(Some(cluster.client_tls()), Duration::from_secs(30));
    let mut last = LogIndex(0);
    for i in 0..200 {
        last = client.append(format!("over tls {i}")).unwrap();
    }

    // No certificate (but trusting the CA), and plain TCP: refused, never served.
    let anonymous = TlsConfig::load(&TlsPaths {
        ca: cluster.files.ca.clone(),
        cert: None,
        key: None,
    })
    .unwrap();
    let short = Duration::from_millis(1500);
    let refused = cluster
        .client(Some(anonymous), short)
        .append("no certificate");
    assert!(refused.is_err(), "{refused:?}");
    let refused = cluster.client(None, short).append("plain");
    assert!(
        matches!(
            refused,
            Err(Error::Unavailable { .. } | Error::Timeout { .. })
        ),
        "{refused:?}"
    );

    drive_over_tls(&cluster);

    // Rotation: node 3 restarts with a new certificate from the same CA and rejoins.
    rotate(&mut cluster, 2);
    let next = client.append("after rotation").unwrap();
    assert!(last < next);
    wait_until("node 3 to apply after rotation", || {
        let status = cluster.servers[2].as_ref().unwrap().status();
        (next <= status.applied_index).then_some(())
    });
}

/// The many-session driver over TLS: 4 sessions of 25 appends, all answered.
fn drive_over_tls(cluster: &TlsCluster) {
    let leader = cluster.wait_for_leader();
    let plan = alpo_node::DrivePlan {
        endpoints: cluster.endpoints(),
        first_targets: vec![cluster.configs[leader].client_addr],
        options: ClientOptions::new(ClusterId(CLUSTER)),
        tls: Some(cluster.client_tls()),
    };
    struct Appends(u64);
    impl alpo_node::Requests for Appends {
        fn next(
            &mut self,
            _: u64,
            count: u64,
            _: Instant,
        ) -> Option<alpo_node::client_protocol::Op> {
            (count <= self.0).then(|| alpo_node::client_protocol::Op::Append {
                value: bytes::Bytes::from(format!("driven {count}")),
            })
        }
    }
    #[derive(Default)]
    struct Count {
        ok: u64,
    }
    impl alpo_node::Outcomes for Count {
        fn on_done(
            &mut self,
            _: u64,
            _: Instant,
            _: Instant,
            outcome: Result<alpo_node::client_protocol::ResponseBody, Error>,
        ) {
            assert!(outcome.is_ok(), "{outcome:?}");
            self.ok += 1;
        }
    }
    let mut count = Count::default();
    alpo_node::drive(&plan, &[0, 1, 2, 3], &mut Appends(25), &mut count).unwrap();
    assert_eq!(count.ok, 100);
}

/// Stops node `index`, issues it a new certificate, restarts it with that certificate.
fn rotate(cluster: &mut TlsCluster, index: usize) {
    cluster.servers[index].take().unwrap().stop().unwrap();
    let ca_key = std::fs::read_to_string(&cluster.files.ca_key).unwrap();
    let authority = Authority::from_key_pem(certs::INIT_CA_NAME, &ca_key).unwrap();
    let id = cluster.configs[index].id;
    let issued = authority
        .issue_node(alpo_core::NodeId(id), Validity::Years10)
        .unwrap();
    let dir: &Path = cluster.dir.path();
    let paths = certs::write_issued(
        dir,
        &format!("node-{id}-rotated"),
        &cluster.files.ca,
        &issued,
    )
    .unwrap();
    let tls = cluster.configs[index].tls.as_mut().unwrap();
    tls.cert = paths.cert.unwrap();
    tls.key = paths.key.unwrap();
    let server = Server::start(cluster.configs[index].clone(), KvStateMachine::new()).unwrap();
    cluster.servers[index] = Some(server);
}
