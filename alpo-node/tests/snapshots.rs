//! Snapshots in a 3-node cluster in one process, over real loopback TCP and real files, with a
//! small snapshot interval: snapshots are taken and the logs compacted; a read below the first
//! retained index is refused naming it; a follower stopped long enough is caught up by
//! install-snapshot and then holds the same state; a restart from a snapshot applies nothing
//! up to it again (rules S2–S8).

// Helpers shared by the tests fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::wait_until;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use alpo_core::{ClusterId, LogIndex, Role};
use alpo_node::client_protocol::{ErrorCode, NodeStatus};
use alpo_node::{
    Client, ClientOptions, Error, KvStateMachine, LogSettings, MetricsSettings, NodeConfig,
    PeerConfig, RecorderSettings, Server, SnapshotImage, Snapshots, StateMachine, Timeouts,
};

const CLUSTER: u64 = 0x5a0b;

/// The key-value machine, recording every index it is asked to apply.
struct Recording {
    kv: KvStateMachine,
    applied: Arc<Mutex<Vec<u64>>>,
}

impl StateMachine for Recording {
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Vec<u8> {
        self.applied.lock().push(index.0);
        self.kv.apply(index, command)
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        self.kv.query(query)
    }

    fn snapshot(&self) -> Box<dyn SnapshotImage> {
        self.kv.snapshot()
    }

    fn restore(&mut self, image: &mut dyn io::Read) -> io::Result<()> {
        self.kv.restore(image)
    }
}

struct Cluster {
    configs: Vec<NodeConfig>,
    servers: Vec<Option<Server>>,
    /// Per node, the indices its state machine applied since its last start.
    applied: Vec<Arc<Mutex<Vec<u64>>>>,
    _dir: tempfile::TempDir,
}

fn free_addr() -> SocketAddr {
    // Bound and released at once: the small race with another process is acceptable in tests.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl Cluster {
    fn start(snapshots: Snapshots) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let listeners: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let peer_addrs: Vec<SocketAddr> =
            listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let client_addrs: Vec<SocketAddr> = (0..3).map(|_| free_addr()).collect();
        let configs: Vec<NodeConfig> = (0..3usize)
            .map(|i| NodeConfig {
                id: i as u64 + 1,
                cluster_id: CLUSTER,
                data_dir: dir.path().join(format!("node-{}", i + 1)),
                peer_addr: peer_addrs[i],
                client_addr: client_addrs[i],
                peers: (0..3usize)
                    .filter(|j| *j != i)
                    .map(|j| PeerConfig {
                        id: j as u64 + 1,
                        peer_addr: peer_addrs[j],
                        client_addr: client_addrs[j],
                    })
                    .collect(),
                timeouts: Timeouts::lan(),
                snapshots,
                // A cache of a few entries: the core reads its log back (rule S9) whenever
                // a follower lags or a restarted node applies.
                log: LogSettings {
                    segment_bytes_max: 4096,
                    cache_bytes_max: 256,
                    ..LogSettings::default()
                },
                reads: alpo_node::ReadSettings::default(),
                tls: None,
                metrics: MetricsSettings::default(),
                recorder: RecorderSettings::default(),
            })
            .collect();
        let mut cluster = Cluster {
            configs,
            servers: Vec::new(),
            applied: Vec::new(),
            _dir: dir,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let (machine, applied) = recording();
            let config = cluster.configs[i].clone();
            let server = Server::start_with_listener(config, listener, machine).unwrap();
            cluster.servers.push(Some(server));
            cluster.applied.push(applied);
        }
        cluster
    }

    fn client(&self) -> Client {
        let mut options = ClientOptions::new(ClusterId(CLUSTER));
        options.request_timeout = Duration::from_secs(30);
        let endpoints = self.configs.iter().map(|c| c.client_addr).collect();
        Client::new(endpoints, options).unwrap()
    }

    fn statuses(&self) -> Vec<NodeStatus> {
        self.servers.iter().flatten().map(Server::status).collect()
    }

    fn wait_for_leader(&self) -> usize {
        wait_until("a leader", || {
            let statuses = self.statuses();
            let leaders: Vec<_> = statuses.iter().filter(|s| s.role == Role::Leader).collect();
            let [leader] = leaders[..] else { return None };
            let agreed = statuses.iter().all(|s| s.leader == Some(leader.id));
            agreed.then(|| (leader.id.0 - 1) as usize)
        })
    }

    /// Waits until every running node applied everything the leader committed.
    fn wait_converged(&self) -> LogIndex {
        wait_until("every node to apply the leader's commit", || {
            let statuses = self.statuses();
            let leader = statuses.iter().find(|s| s.role == Role::Leader)?;
            let commit = leader.commit_index;
            let all = statuses
                .iter()
                .all(|s| s.applied_index == commit && s.commit_index == commit);
            all.then_some(commit)
        })
    }

    fn stop(&mut self, i: usize) {
        self.servers[i].take().unwrap().stop().unwrap();
    }

    fn restart(&mut self, i: usize) {
        let (machine, applied) = recording();
        let mut machine = Some(machine);
        // The freed ports may be taken for a moment by an outgoing connection's ephemeral port.
        let server = wait_until("the node's ports", || {
            let config = self.configs[i].clone();
            match Server::start(config, machine.take().unwrap()) {
                Ok(server) => Some(server),
                Err(Error::Net(_)) => {
                    machine = Some(recording_with(Arc::clone(&applied)));
                    None
                }
                Err(error) => panic!("restart failed: {error}"),
            }
        });
        self.servers[i] = Some(server);
        self.applied[i] = applied;
    }

    fn put_many(&self, client: &mut Client, from: u64, count: u64) {
        for i in from..from + count {
            client
                .put(format!("key-{}", i % 97), format!("value-{i}"))
                .unwrap();
        }
    }
}

fn recording() -> (Recording, Arc<Mutex<Vec<u64>>>) {
    let applied = Arc::new(Mutex::new(Vec::new()));
    (recording_with(Arc::clone(&applied)), applied)
}

fn recording_with(applied: Arc<Mutex<Vec<u64>>>) -> Recording {
    Recording {
        kv: KvStateMachine::new(),
        applied,
    }
}

/// The image bytes of the snapshot at `index` in a node's data directory.
fn image_at(dir: &Path, index: LogIndex) -> Vec<u8> {
    // The node's snapshot thread may be removing an older file while the directory is read.
    let path = wait_until("the snapshot file", || {
        let scan = alpo_log::scan_snapshots(dir, None).ok()?;
        let found = scan
            .snapshots
            .into_iter()
            .find(|(_, m)| m.last_index == index.0);
        found.map(|(path, _)| path)
    });
    let file = alpo_log::SnapshotFile::open(&path).unwrap();
    let mut image = Vec::new();
    file.image().unwrap().read_to_end(&mut image).unwrap();
    image
}

const SMALL: Snapshots = Snapshots {
    interval_entries: 40,
    retain_entries: 10,
};

#[test]
fn snapshots_compact_logs_and_a_read_below_the_first_index_names_it() {
    let cluster = Cluster::start(SMALL);
    cluster.wait_for_leader();
    let mut client = cluster.client();
    cluster.put_many(&mut client, 0, 200);
    cluster.wait_converged();
    for status in cluster.statuses() {
        assert!(40 <= status.snapshot_index.0, "{status:?}");
        assert!(1 < status.first_index.0, "compacted: {status:?}");
        // S4: the first retained index is at most L + 1 of the newest snapshot.
        assert!(
            status.first_index.0 <= status.snapshot_index.0 + 1,
            "{status:?}"
        );
    }
    let error = client.read(LogIndex(1), 10).unwrap_err();
    let Error::Refused { code, reason } = &error else {
        panic!("expected a refusal, got {error:?}");
    };
    assert_eq!(*code, ErrorCode::Compacted);
    assert!(
        reason.contains("the first index still readable is"),
        "{reason}"
    );
    // Reads from the first retained index on still work.
    let first = cluster
        .statuses()
        .iter()
        .map(|s| s.first_index)
        .max()
        .unwrap();
    let (entries, _) = client.read(first, 5).unwrap();
    assert_eq!(entries[0].index, first);
}

#[test]
fn a_follower_far_behind_is_caught_up_by_install_snapshot_and_holds_the_same_state() {
    let mut cluster = Cluster::start(SMALL);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    let mut client = cluster.client();
    cluster.put_many(&mut client, 0, 20);
    let held = cluster.wait_converged();
    cluster.stop(follower);
    // Long enough that the two others compact past everything the follower holds.
    cluster.put_many(&mut client, 20, 200);
    let statuses = cluster.statuses();
    let first = statuses.iter().map(|s| s.first_index).min().unwrap();
    assert!(30 < first.0, "the others compacted: {statuses:?}");
    cluster.restart(follower);
    let commit = cluster.wait_converged();
    let status = cluster.servers[follower].as_ref().unwrap().status();
    assert!(
        first.0 <= status.snapshot_index.0 + 1,
        "installed: {status:?}"
    );
    // Its state machine was restored, not fed the compacted entries: after replaying its own
    // log (up to `held`) it applied nothing below the others' first retained index.
    let applied = cluster.applied[follower].lock().clone();
    let gap = |i: &u64| held.0 < *i && *i < first.0;
    assert!(!applied.iter().any(gap), "{applied:?}");
    assert!(applied.iter().any(|i| first.0 <= *i), "{applied:?}");
    // Every node snapshots at the same applied index now: the images are byte for byte equal.
    let mut images = Vec::new();
    for i in 0..3 {
        let index = client.snapshot_of(cluster.configs[i].client_addr).unwrap();
        assert_eq!(index, commit);
        images.push(image_at(&cluster.configs[i].data_dir, index));
    }
    assert_eq!(images[0], images[1]);
    assert_eq!(images[0], images[2]);
}

#[test]
fn a_restart_from_a_snapshot_applies_nothing_up_to_it_again() {
    let mut cluster = Cluster::start(SMALL);
    cluster.wait_for_leader();
    let mut client = cluster.client();
    cluster.put_many(&mut client, 0, 100);
    cluster.wait_converged();
    let node = 2;
    let before = cluster.servers[node].as_ref().unwrap().status();
    assert!(0 < before.snapshot_index.0, "{before:?}");
    cluster.stop(node);
    cluster.restart(node);
    let status = cluster.servers[node].as_ref().unwrap().status();
    assert!(before.snapshot_index <= status.snapshot_index, "{status:?}");
    let snapshot = status.snapshot_index;
    cluster.put_many(&mut client, 100, 5);
    cluster.wait_converged();
    let applied = cluster.applied[node].lock().clone();
    assert!(!applied.is_empty());
    assert!(
        applied.iter().all(|i| snapshot.0 < *i),
        "re-applied: {applied:?}"
    );
    // The restored state answers like the others: every key holds its last value.
    for i in 100..105 {
        let value = client.get(format!("key-{}", i % 97)).unwrap().unwrap();
        assert_eq!(&value[..], format!("value-{i}").as_bytes());
    }
    let value = client.get("key-50").unwrap().unwrap();
    assert_eq!(&value[..], b"value-50");
}

#[test]
fn a_damaged_newest_snapshot_that_the_log_does_not_continue_stops_the_start_naming_files() {
    let mut cluster = Cluster::start(SMALL);
    cluster.wait_for_leader();
    let mut client = cluster.client();
    cluster.put_many(&mut client, 0, 200);
    cluster.wait_converged();
    let node = 1;
    cluster.stop(node);
    let dir = cluster.configs[node].data_dir.clone();
    // Damage the image of every snapshot file: none is left to restore from, and the log was
    // compacted past index 1.
    let scan = alpo_log::scan_snapshots(&dir, None).unwrap();
    assert!(!scan.snapshots.is_empty());
    for (path, _) in &scan.snapshots {
        let mut bytes = std::fs::read(path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(path, bytes).unwrap();
    }
    let error = wait_until("a refusal to start", || {
        let (machine, _) = recording();
        match Server::start(cluster.configs[node].clone(), machine) {
            Ok(_) => panic!("started without a snapshot covering its compacted log"),
            // A freed port taken for a moment by another connection: try again.
            Err(Error::Net(_)) => None,
            Err(error) => Some(error),
        }
    });
    let text = error.to_string();
    assert!(text.contains("no valid snapshot covers"), "{text}");
    assert!(text.contains("damaged snapshot files: "), "{text}");
    assert!(text.contains(&dir.display().to_string()), "{text}");
}
