//! A 3-node cluster in one process over real loopback TCP and real log files: elections,
//! 10,000 committed appends with identical logs, leader failover without losing acknowledged
//! entries, catch-up after a restart, redirects from followers, many client sessions driven from
//! one thread, and bad input (including clients of other protocol versions).

// Helpers shared by the tests fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::wait_until;

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::{Duration, Instant};

use alpo_core::{ClusterId, LogIndex, NodeId, Role};
use alpo_node::client_protocol::{Consistency, Op, Request, RequestId, Response, ResponseBody};
use alpo_node::member_protocol::{MemberChange, MemberRole};
use alpo_node::{Client, ClientOptions, KvStateMachine, NodeConfig, PeerConfig, Server};

const CLUSTER: u64 = 0xa1b0;

struct Cluster {
    configs: Vec<NodeConfig>,
    servers: Vec<Option<Server>>,
    _dir: tempfile::TempDir,
}

fn free_client_addr() -> SocketAddr {
    // Bound and released at once: the small race with another process is acceptable in tests.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

impl Cluster {
    fn start(size: u64) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let peer_listeners: Vec<TcpListener> = (0..size)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let peer_addrs: Vec<SocketAddr> = peer_listeners
            .iter()
            .map(|l| l.local_addr().unwrap())
            .collect();
        let client_addrs: Vec<SocketAddr> = (0..size).map(|_| free_client_addr()).collect();
        let members: Vec<PeerConfig> = (0..size)
            .map(|i| PeerConfig {
                id: i + 1,
                peer_addr: peer_addrs[i as usize],
                client_addr: client_addrs[i as usize],
            })
            .collect();
        let configs = NodeConfig::for_members(CLUSTER, dir.path(), &members);
        let servers = configs
            .iter()
            .zip(peer_listeners)
            .map(|(config, listener)| {
                let server =
                    Server::start_with_listener(config.clone(), listener, KvStateMachine::new());
                Some(server.unwrap())
            })
            .collect();
        Cluster {
            configs,
            servers,
            _dir: dir,
        }
    }

    fn endpoints(&self) -> Vec<SocketAddr> {
        self.configs.iter().map(|c| c.client_addr).collect()
    }

    fn client(&self) -> Client {
        let mut options = ClientOptions::new(ClusterId(CLUSTER));
        options.request_timeout = Duration::from_secs(30);
        Client::new(self.endpoints(), options).unwrap()
    }

    /// Waits until exactly one running node is leader and every running node agrees.
    fn wait_for_leader(&self) -> usize {
        wait_until("a leader", || {
            let running: Vec<_> = self.servers.iter().flatten().map(Server::status).collect();
            let leaders: Vec<_> = running.iter().filter(|s| s.role == Role::Leader).collect();
            let [leader] = leaders[..] else { return None };
            let agreed = running.iter().all(|s| s.leader == Some(leader.id));
            agreed.then(|| (leader.id.0 - 1) as usize)
        })
    }

    fn wait_applied(&self, index: LogIndex) {
        wait_until("every node to apply", || {
            let statuses: Vec<_> = self.servers.iter().flatten().map(Server::status).collect();
            statuses
                .iter()
                .all(|s| index <= s.applied_index)
                .then_some(())
        });
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
}

/// Every record of a stopped node's log, as `(index, term, kind, payload)`.
fn records(dir: &Path) -> Vec<(u64, u64, u8, Vec<u8>)> {
    let reader = alpo_log::LogReader::open(dir).unwrap();
    let last = reader.last_index();
    (1..=last)
        .map(|i| {
            let record = reader.entry(i).unwrap().unwrap();
            (
                record.index,
                record.term,
                record.kind,
                record.payload.to_vec(),
            )
        })
        .collect()
}

#[test]
fn ten_thousand_appends_commit_and_every_log_is_identical() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader();
    let thread_count = 20;
    let per_thread = 500;
    let indices: Vec<Vec<LogIndex>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..thread_count)
            .map(|t| {
                let mut client = cluster.client();
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|i| client.append(format!("t{t}-{i}")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<LogIndex> = indices.into_iter().flatten().collect();
    assert_eq!(all.len(), thread_count * per_thread);
    all.sort();
    all.dedup();
    assert_eq!(
        all.len(),
        thread_count * per_thread,
        "every append got its own index"
    );
    let leader = cluster.wait_for_leader();
    let last = cluster.servers[leader]
        .as_ref()
        .unwrap()
        .status()
        .last_index;
    cluster.wait_applied(last);
    for i in 0..3 {
        cluster.stop(i);
    }
    let logs: Vec<_> = cluster
        .configs
        .iter()
        .map(|c| records(&c.data_dir))
        .collect();
    assert!(logs[0].len() > thread_count * per_thread);
    // Issue 12: the leader hands over when it is stopped, so the node that leads next may
    // write the no-op of its term after others stopped; everything up to `last` is everywhere.
    let last = usize::try_from(last.0).unwrap();
    for log in &logs {
        assert!(last <= log.len());
        assert!(
            log[last..].iter().all(|record| record.2 == 2),
            "only no-ops after"
        );
    }
    assert_eq!(logs[0][..last], logs[1][..last]);
    assert_eq!(logs[0][..last], logs[2][..last]);
}

#[test]
fn leader_failover_loses_nothing_and_a_restarted_node_catches_up() {
    let mut cluster = Cluster::start(3);
    let old_leader = cluster.wait_for_leader();
    let mut client = cluster.client();
    let mut acknowledged = Vec::new();
    for i in 0..50 {
        let value = format!("before-{i}");
        acknowledged.push((client.append(value.clone()).unwrap(), value));
    }
    client.put("k", "v1").unwrap();
    // A client that asked the old leader for its status before it went down keeps working
    // once the node is back: a broken connection is dropped, not reused.
    let old_leader_addr = cluster.configs[old_leader].client_addr;
    let mut watcher = cluster.client();
    watcher.status_of(old_leader_addr).unwrap();
    cluster.stop(old_leader);
    assert!(watcher.status_of(old_leader_addr).is_err());
    let new_leader = cluster.wait_for_leader();
    assert_ne!(new_leader, old_leader);
    for i in 0..50 {
        let value = format!("after-{i}");
        acknowledged.push((client.append(value.clone()).unwrap(), value));
    }
    assert_eq!(client.get("k").unwrap().as_deref(), Some(&b"v1"[..]));
    // The node that was down restarts from its files and catches up.
    cluster.restart(old_leader);
    wait_until("the restarted node's status", || {
        watcher.status_of(old_leader_addr).ok()
    });
    let last = cluster.servers[new_leader]
        .as_ref()
        .unwrap()
        .status()
        .last_index;
    cluster.wait_applied(last);
    for server in cluster.servers.iter().flatten() {
        let mut reader = Client::new(
            vec![server.client_addr()],
            ClientOptions::new(ClusterId(CLUSTER)),
        )
        .unwrap();
        let mut entries = Vec::new();
        while (entries.len() as u64) < last.0 {
            let from = LogIndex(entries.len() as u64 + 1);
            entries.extend(reader.read(from, 1000).unwrap().0);
        }
        for (index, value) in &acknowledged {
            let entry = &entries[(index.0 - 1) as usize];
            assert_eq!(entry.index, *index);
            assert_eq!(
                &entry.data[..],
                value.as_bytes(),
                "node {} index {index}",
                server.id()
            );
        }
    }
    for i in 0..3 {
        cluster.stop(i);
    }
}

#[test]
fn a_node_whose_hard_state_is_lost_refuses_to_start() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader();
    cluster.client().append("x").unwrap();
    cluster.stop(0);
    let dir = cluster.configs[0].data_dir.clone();
    std::fs::remove_file(dir.join(alpo_log::HARD_STATE_FILE_NAME)).unwrap();
    let Err(error) = Server::start(cluster.configs[0].clone(), KvStateMachine::new()) else {
        panic!("a node without its hard state must not start");
    };
    let message = error.to_string();
    assert!(message.contains("hard_state is missing"), "{message}");
    for i in 1..3 {
        cluster.stop(i);
    }
}

/// Rule F8 end to end: every node that voted wrote a term ceiling above its vote's term, in a
/// file of its own; a damaged ceiling refuses the start, naming the file.
#[test]
fn every_node_that_voted_keeps_a_term_ceiling_above_it() {
    let mut cluster = Cluster::start(3);
    cluster.wait_for_leader();
    cluster.client().append("x").unwrap();
    for i in 0..3 {
        cluster.stop(i);
    }
    let mut voters = 0;
    for config in &cluster.configs {
        let dir = &config.data_dir;
        let hard_state = alpo_log::HardState::load(dir).unwrap().unwrap();
        let ceiling = alpo_log::TermCeiling::load(dir).unwrap();
        if hard_state.voted_for.is_some() {
            voters += 1;
            let ceiling = ceiling.expect("a node that voted wrote a ceiling").0;
            assert!(
                ceiling > hard_state.current_term,
                "{ceiling} {hard_state:?}"
            );
        }
    }
    assert!(voters >= 2, "a leader was elected by a majority of votes");
    let dir = cluster.configs[0].data_dir.clone();
    let path = dir.join(alpo_log::TERM_CEILING_FILE_NAME);
    if path.exists() {
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[16] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let Err(error) = Server::start(cluster.configs[0].clone(), KvStateMachine::new()) else {
            panic!("a node with a damaged term ceiling must not start (yet)");
        };
        let message = error.to_string();
        assert!(message.contains("term_ceiling"), "{message}");
    }
}

#[test]
fn a_follower_redirects_clients_to_the_leader() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    let follower_addr = cluster.configs[follower].client_addr;
    let options = ClientOptions::new(ClusterId(CLUSTER));
    let mut raw = alpo_net::ClientConnection::connect(
        follower_addr,
        ClusterId(CLUSTER),
        Duration::from_secs(5),
    )
    .unwrap();
    let request = Request {
        id: RequestId { client: 5, seq: 1 },
        op: Op::Append { value: "x".into() },
    };
    raw.send(&request.encode()).unwrap();
    let response = Response::decode(raw.recv(Duration::from_secs(5)).unwrap()).unwrap();
    let ResponseBody::NotLeader { leader: Some(hint) } = response.body else {
        panic!("expected a redirect, got {:?}", response.body)
    };
    assert_eq!(hint.id, NodeId(leader as u64 + 1));
    assert_eq!(
        hint.client_addr,
        cluster.configs[leader].client_addr.to_string()
    );
    // A client that only knows the follower finds the leader through the hint.
    let mut client = Client::new(vec![follower_addr], options).unwrap();
    let index = client.append("via follower").unwrap();
    assert!(LogIndex(1) < index);
    // Reads and status are served by the follower itself.
    let status = client.status_of(follower_addr).unwrap();
    assert_eq!(status.id, NodeId(follower as u64 + 1));
    assert_eq!(status.role, Role::Passive);
}

/// Sessions of `alpo_node::drive`: each appends `count` values tagged with its number.
struct Tagged {
    count: u64,
}

impl alpo_node::Requests for Tagged {
    fn next(&mut self, session: u64, count: u64, _now: Instant) -> Option<Op> {
        (count <= self.count).then(|| Op::Append {
            value: format!("{session}/{count}").into(),
        })
    }
}

/// Every session's answers, in the order they came.
#[derive(Default)]
struct Answers(std::collections::BTreeMap<u64, Vec<LogIndex>>);

impl alpo_node::Outcomes for Answers {
    fn on_done(
        &mut self,
        session: u64,
        started: Instant,
        done: Instant,
        outcome: Result<ResponseBody, alpo_node::Error>,
    ) {
        assert!(started <= done);
        match outcome {
            Ok(ResponseBody::Appended { index }) => self.0.entry(session).or_default().push(index),
            other => panic!("session {session}: {other:?}"),
        }
    }
}

#[test]
fn many_sessions_on_one_thread_find_the_leader_and_each_append_once() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower = (leader + 1) % 3;
    let mut options = ClientOptions::new(ClusterId(CLUSTER));
    options.request_timeout = Duration::from_secs(30);
    // Every session starts at a follower, which redirects it.
    let plan = alpo_node::DrivePlan {
        endpoints: cluster.endpoints(),
        first_targets: vec![cluster.configs[follower].client_addr],
        options,
        tls: None,
    };
    let mut answers = Answers::default();
    alpo_node::drive(
        &plan,
        &[0, 1, 2, 3, 4],
        &mut Tagged { count: 40 },
        &mut answers,
    )
    .unwrap();
    assert_eq!(answers.0.len(), 5);
    let mut all: Vec<LogIndex> = answers.0.values().flatten().copied().collect();
    assert!(answers.0.values().all(|indices| indices.len() == 40));
    // Each session's appends commit in its order, and no two share an index.
    assert!(answers.0.values().all(|indices| indices.is_sorted()));
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 200);
}

#[test]
fn bad_input_gets_an_error_and_the_node_keeps_serving() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let addr = cluster.configs[leader].client_addr;
    let timeout = Duration::from_secs(5);
    let mut raw = alpo_net::ClientConnection::connect(addr, ClusterId(CLUSTER), timeout).unwrap();
    let garbage = [
        &[alpo_node::client_protocol::PROTOCOL_VERSION][..],
        b"garbage",
    ]
    .concat();
    raw.send(&garbage).unwrap();
    let response = Response::decode(raw.recv(timeout).unwrap()).unwrap();
    assert!(
        matches!(response.body, ResponseBody::Error { .. }),
        "{:?}",
        response.body
    );
    // A client of another protocol version gets an answer in its own version naming both.
    for version in [1u8, alpo_node::client_protocol::PROTOCOL_VERSION + 1] {
        raw.send(&[version, 0, 0]).unwrap();
        let answer = raw.recv(timeout).unwrap();
        assert_eq!(answer[0], version);
        let text = String::from_utf8_lossy(&answer);
        let expected = format!(
            "client protocol version {version} is not supported: this node speaks version {}",
            alpo_node::client_protocol::PROTOCOL_VERSION
        );
        assert!(text.ends_with(&expected), "{text}");
    }
    // An oversized entry is refused with a reason.
    let mut client = cluster.client();
    let huge = vec![0u8; 5 * 1024 * 1024];
    let error = client.append(huge).unwrap_err().to_string();
    assert!(error.contains("larger than"), "{error}");
    // A client of another cluster is refused at the handshake.
    assert!(alpo_net::ClientConnection::connect(addr, ClusterId(CLUSTER + 1), timeout).is_err());
    // The node still serves.
    assert!(client.append("still here").is_ok());
}

/// Issue 14: a read that starts after an acknowledged write sees it, at a follower too (rules
/// Q1, Q2), for state-machine queries and for reads of log entries; stale reads are served from
/// whatever the node applied; lease reads (Q3) see the write as well.
#[test]
fn reads_at_a_follower_see_every_acknowledged_write() {
    let cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let follower_addr = cluster.configs[(leader + 1) % 3].client_addr;
    let mut options = ClientOptions::new(ClusterId(CLUSTER));
    options.request_timeout = Duration::from_secs(30);
    let mut writer = cluster.client();
    // This client only knows the follower: its reads are served there (Q2).
    let mut reader = Client::new(vec![follower_addr], options).unwrap();
    for i in 0..50u32 {
        let value = i.to_string();
        writer.put("k", value.clone()).unwrap();
        let read = reader.get("k").unwrap();
        assert_eq!(read.as_deref(), Some(value.as_bytes()), "read {i}");
        let index = writer.append(format!("entry {i}")).unwrap();
        let (entries, applied) = reader.read(index, 1).unwrap();
        assert!(index <= applied, "read {i}: applied {applied} < {index}");
        assert_eq!(entries.first().map(|e| e.index), Some(index), "read {i}");
    }
    let status = reader.status_of(follower_addr).unwrap();
    assert_eq!(status.role, Role::Passive, "the reads went to the follower");
    // Stale: answered from what the follower applied, without a read index.
    let stale = reader.get_with("k", Consistency::Stale).unwrap();
    assert!(stale.is_some());
    let (_, applied) = reader
        .read_with(LogIndex(1), 1, Consistency::Stale)
        .unwrap();
    assert!(LogIndex(1) <= applied);
}

#[test]
fn lease_reads_see_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let member = PeerConfig {
        id: 1,
        peer_addr: listener.local_addr().unwrap(),
        client_addr: free_client_addr(),
    };
    let mut config = NodeConfig::for_members(CLUSTER, dir.path(), &[member])
        .pop()
        .unwrap();
    config.reads.lease_drift_ppm = 20_000;
    let server =
        Server::start_with_listener(config.clone(), listener, KvStateMachine::new()).unwrap();
    let mut options = ClientOptions::new(ClusterId(CLUSTER));
    options.request_timeout = Duration::from_secs(30);
    let mut client = Client::new(vec![config.client_addr], options).unwrap();
    for i in 0..20u32 {
        client.put("k", i.to_string()).unwrap();
        let read = client.get_with("k", Consistency::Lease).unwrap();
        assert_eq!(read.as_deref(), Some(i.to_string().as_bytes()));
    }
    server.stop().unwrap();
    // A lease without check-quorum's partner, a drift bound of 100%, is refused by name.
    config.reads.lease_drift_ppm = 1_000_000;
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("reads.lease_drift_ppm"), "{error}");
}

// Issue 12: membership in the running node.

/// The configuration as the node at `i` lists it: `(id, voter?)` per member.
fn member_roles(cluster: &Cluster, i: usize) -> Vec<(u64, bool)> {
    let mut client = cluster.client();
    let members = client.members_of(cluster.configs[i].client_addr).unwrap();
    members
        .members
        .iter()
        .map(|m| (m.id.0, m.role == MemberRole::Voter))
        .collect()
}

#[test]
fn transfer_leader_moves_the_leadership_and_member_list_shows_roles_and_matches() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let mut client = cluster.client();
    client.append("before").unwrap();
    let members = client
        .members_of(cluster.configs[leader].client_addr)
        .unwrap();
    assert_eq!(members.leader, Some(NodeId(leader as u64 + 1)));
    assert_eq!(members.members.len(), 3);
    for member in &members.members {
        assert_eq!(member.role, MemberRole::Voter);
        assert!(member.match_index.is_some(), "the leader knows every match");
        assert!(!member.client_addr.is_empty());
    }
    let target = NodeId(((leader + 1) % 3) as u64 + 1);
    let term = cluster.servers[leader].as_ref().unwrap().status().term;
    assert_eq!(client.transfer_leader(Some(target)).unwrap(), target);
    let new_leader = cluster.wait_for_leader();
    assert_eq!(new_leader as u64 + 1, target.0);
    let status = cluster.servers[new_leader].as_ref().unwrap().status();
    assert_eq!(status.term.0, term.0 + 1, "one election, no timeout race");
    // Refusals are typed: to itself is refused for good (not retried).
    assert!(client.transfer_leader(Some(target)).is_err());
    client.append("after").unwrap();
    for i in 0..3 {
        cluster.stop(i);
    }
}

#[test]
fn a_removed_follower_is_dropped_and_does_not_disturb_the_cluster() {
    let mut cluster = Cluster::start(3);
    let leader = cluster.wait_for_leader();
    let removed = (leader + 1) % 3;
    let mut client = cluster.client();
    client.append("before").unwrap();
    let removed_id = NodeId(removed as u64 + 1);
    client
        .change_members(MemberChange::Remove(removed_id))
        .unwrap();
    assert!(
        member_roles(&cluster, leader)
            .iter()
            .all(|(id, _)| *id != removed_id.0)
    );
    // Removing it again is refused for good (not a member).
    assert!(
        client
            .change_members(MemberChange::Remove(removed_id))
            .is_err()
    );
    let term = cluster.servers[leader].as_ref().unwrap().status().term;
    // The removed node keeps running, cut off: the others refuse its handshakes, and it
    // raises no one's term (pre-vote, check-quorum: rule M10).
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        client.append("while removed").unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = cluster.servers[leader].as_ref().unwrap().status();
    assert_eq!(status.role, Role::Leader);
    assert_eq!(status.term, term, "the removed node disturbed the cluster");
    // The leader no longer replicates to it: it misses what was appended since.
    let leader_last = status.last_index;
    let removed_last = cluster.servers[removed]
        .as_ref()
        .unwrap()
        .status()
        .last_index;
    assert!(
        removed_last < leader_last,
        "the removed node still receives the log ({removed_last} of {leader_last})"
    );
    cluster.stop(removed);
    // The two left commit alone.
    client.append("after").unwrap();
    for i in 0..3 {
        cluster.stop(i);
    }
}

#[test]
fn stopping_a_leader_transfers_first_and_removing_the_leader_hands_over() {
    let mut cluster = Cluster::start(3);
    let first = cluster.wait_for_leader();
    let mut client = cluster.client();
    client.append("before").unwrap();
    // A leader asked to stop hands over first (rule T1 at shutdown): another voter leads in
    // the next term, by one election, while the old leader still answers its vote request.
    let term = cluster.servers[first].as_ref().unwrap().status().term;
    cluster.stop(first);
    let status = wait_until("another voter to lead", || {
        let statuses: Vec<_> = cluster
            .servers
            .iter()
            .flatten()
            .map(Server::status)
            .collect();
        statuses.into_iter().find(|s| s.role == Role::Leader)
    });
    assert_eq!(status.term.0, term.0 + 1, "one election, no timeout race");
    client.append("during the restart").unwrap();
    cluster.restart(first);
    let leader = cluster.wait_for_leader();
    client.append("after the restart").unwrap();

    let leader_id = NodeId(leader as u64 + 1);
    client
        .change_members(MemberChange::Remove(leader_id))
        .unwrap();
    // Rule M9: it commits the change without itself, hands over and steps down.
    let next = wait_until("a leader among the two left", || {
        let statuses: Vec<_> = (0..3)
            .filter(|i| *i != leader)
            .map(|i| cluster.servers[i].as_ref().unwrap().status())
            .collect();
        statuses
            .iter()
            .find(|s| s.role == Role::Leader)
            .map(|s| (s.id.0 - 1) as usize)
    });
    assert_ne!(next, leader);
    assert!(
        member_roles(&cluster, next)
            .iter()
            .all(|(id, _)| *id != leader_id.0)
    );
    cluster.stop(leader);
    client.append("after removal").unwrap();
    for i in 0..3 {
        cluster.stop(i);
    }
}
