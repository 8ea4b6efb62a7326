//! Issue 13, the node's side with real files: a node whose hard-state file is damaged starts
//! fenced (rule F9), serves its log, and grants no vote below its fence.

// Helpers shared by the tests fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::wait_until;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use alpo_core::{ClusterId, LogIndex, Role, Term};
use alpo_node::{Client, ClientOptions, KvStateMachine, NodeConfig, PeerConfig, Server};

const CLUSTER: u64 = 0xd15c;

struct Cluster {
    configs: Vec<NodeConfig>,
    servers: Vec<Option<Server>>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(size: u64) -> Cluster {
        Cluster::start_with(size, |_| {})
    }

    fn start_with(size: u64, adjust: impl Fn(&mut NodeConfig)) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let peer_listeners: Vec<TcpListener> = (0..size)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let members: Vec<PeerConfig> = peer_listeners
            .iter()
            .zip(1..)
            .map(|(listener, id)| PeerConfig {
                id,
                peer_addr: listener.local_addr().unwrap(),
                client_addr: TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap(),
            })
            .collect();
        let mut configs = NodeConfig::for_members(CLUSTER, dir.path(), &members);
        configs.iter_mut().for_each(&adjust);
        let servers = configs
            .iter()
            .zip(peer_listeners)
            .map(|(config, listener)| {
                Some(
                    Server::start_with_listener(config.clone(), listener, KvStateMachine::new())
                        .unwrap(),
                )
            })
            .collect();
        Cluster {
            configs,
            servers,
            _dir: dir,
        }
    }

    fn client(&self) -> Client {
        let endpoints: Vec<SocketAddr> = self.configs.iter().map(|c| c.client_addr).collect();
        let mut options = ClientOptions::new(ClusterId(CLUSTER));
        options.request_timeout = Duration::from_secs(30);
        Client::new(endpoints, options).unwrap()
    }

    fn wait_for_leader(&self) -> usize {
        wait_until("a leader", || {
            let running: Vec<_> = self.servers.iter().flatten().map(Server::status).collect();
            let leaders: Vec<_> = running.iter().filter(|s| s.role == Role::Leader).collect();
            let [leader] = leaders[..] else { return None };
            let agreed = running.iter().all(|s| s.leader == Some(leader.id));
            agreed.then(|| usize::try_from(leader.id.0 - 1).unwrap())
        })
    }

    fn stop(&mut self, i: usize) {
        if let Some(server) = self.servers[i].take() {
            server.stop().unwrap();
        }
    }

    fn restart(&mut self, i: usize) {
        let server = Server::start(self.configs[i].clone(), KvStateMachine::new()).unwrap();
        self.servers[i] = Some(server);
    }

    fn status(&self, i: usize) -> alpo_node::client_protocol::NodeStatus {
        self.servers[i].as_ref().unwrap().status()
    }
}

fn flip_byte(path: &std::path::Path, offset: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

/// Rule F9 end to end: damage the hard state of a stopped follower, restart it: it starts with
/// its vote fence at the ceiling (and stores no hard state below it), catches up and applies
/// like the others; once the leader is stopped, the two survivors elect no leader below the
/// fence (the fenced node abstains, the other cannot win alone), and the fenced node votes from
/// the fence on and stores a valid hard state again, so its next start is not fenced.
#[test]
fn a_node_with_a_damaged_hard_state_starts_fenced_and_votes_only_from_its_fence() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let mut client = cluster.client();
    for i in 0..20 {
        client.append(format!("before {i}")).unwrap();
    }
    let fenced = (leader + 1) % 3;
    cluster.stop(fenced);
    let dir = cluster.configs[fenced].data_dir.clone();
    let ceiling = alpo_log::TermCeiling::load(&dir).unwrap().unwrap();
    let hard_state = dir.join(alpo_log::HARD_STATE_FILE_NAME);
    flip_byte(&hard_state, 17);
    let damaged = std::fs::read(&hard_state).unwrap();
    let last = client.append("while down").unwrap();

    cluster.restart(fenced);
    let status = cluster.status(fenced);
    assert_eq!(status.disk.vote_fence, Some(Term(ceiling.0)));
    assert!(status.term < Term(ceiling.0), "{status:?}");
    wait_until("the fenced node to apply what it missed", || {
        (cluster.status(fenced).applied_index >= last).then_some(())
    });
    assert_eq!(
        std::fs::read(&hard_state).unwrap(),
        damaged,
        "no hard state is stored below the fence"
    );

    // The other follower stops, then the leader (a stopping leader hands over to its best
    // follower, which is now the fenced one); the other comes back. Any leader from here on was
    // elected with the fenced node's vote or by it, and must be at or above the fence.
    let current = cluster.wait_for_leader();
    assert_ne!(current, fenced, "the fenced node led below its fence");
    let before = cluster.status(current).term;
    assert!(before < Term(ceiling.0), "{before:?}");
    let other = 3 - current - fenced;
    cluster.stop(other);
    cluster.stop(current);
    cluster.restart(other);
    let new_leader = cluster.wait_for_leader();
    let term = cluster.status(new_leader).term;
    assert!(
        term >= Term(ceiling.0),
        "a leader at term {term} was elected with the vote of a node fenced below {} \
         (before: leader {current} at {before}; now {:?} / {:?})",
        ceiling.0,
        cluster.status(fenced),
        cluster.status(new_leader),
    );
    let index = client.append("after the fence").unwrap();
    assert!(index > last);
    wait_until("the fence to lift", || {
        cluster
            .status(fenced)
            .disk
            .vote_fence
            .is_none()
            .then_some(())
    });
    wait_until("a valid hard state at or above the fence", || {
        let stored = alpo_log::HardState::load(&dir).ok()??;
        (stored.current_term >= ceiling.0).then_some(())
    });

    cluster.stop(fenced);
    cluster.restart(fenced);
    assert_eq!(cluster.status(fenced).disk.vote_fence, None);
    wait_until("the restarted node to apply", || {
        (cluster.status(fenced).applied_index >= index).then_some(())
    });
    assert!(cluster.status(fenced).applied_index >= LogIndex(21));
}

/// Rule F9 with the ceiling unreadable too: the node starts fenced for ever (it never votes
/// again) and still serves its log.
#[test]
fn a_node_with_hard_state_and_ceiling_damaged_never_votes_but_serves() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let mut client = cluster.client();
    for i in 0..5 {
        client.append(format!("v {i}")).unwrap();
    }
    let fenced = (leader + 1) % 3;
    cluster.stop(fenced);
    let dir = cluster.configs[fenced].data_dir.clone();
    flip_byte(&dir.join(alpo_log::HARD_STATE_FILE_NAME), 40);
    flip_byte(&dir.join(alpo_log::TERM_CEILING_FILE_NAME), 18);
    let last = client.append("while down").unwrap();
    cluster.restart(fenced);
    assert_eq!(cluster.status(fenced).disk.vote_fence, Some(Term(u64::MAX)));
    wait_until("the fenced node to apply", || {
        (cluster.status(fenced).applied_index >= last).then_some(())
    });
}

/// The scrubber finds a flipped bit in a sealed segment of a running node, reports it once
/// (status), and keeps passing over the log.
#[test]
fn the_scrubber_finds_damage_in_a_running_node() {
    let cluster = Cluster::start_with(3, |config| {
        config.log.segment_bytes_max = 4096;
        config.log.scrub_bytes_per_sec = 1 << 20;
    });
    cluster.wait_for_leader();
    let mut client = cluster.client();
    for i in 0..300 {
        client.append(format!("value {i:05}")).unwrap();
    }
    let node = 0;
    wait_until("a clean scrub pass over the written log", || {
        let status = cluster.status(node);
        (status.disk.scrub_passes >= 2 && status.disk.scrub_bytes > 4096).then_some(())
    });
    assert_eq!(cluster.status(node).disk.scrub_faults, 0);
    let dir = cluster.configs[node].data_dir.clone();
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "alpolog"))
        .collect();
    segments.sort();
    assert!(segments.len() > 2, "{segments:?}");
    // A payload byte of the first record of the first segment.
    flip_byte(&segments[0], 48 + 30);
    let passes = cluster.status(node).disk.scrub_passes;
    wait_until("the scrubber to find the damage", || {
        (cluster.status(node).disk.scrub_faults == 1).then_some(())
    });
    wait_until("two more passes", || {
        (cluster.status(node).disk.scrub_passes >= passes + 2).then_some(())
    });
    assert_eq!(
        cluster.status(node).disk.scrub_faults,
        1,
        "reported once, however many passes see it"
    );
}
