//! Issue 12: docs/operations.md's membership runbook, step by step, with real `alpo node`
//! processes and the `alpo` client commands an operator types: grow 3→5 (`member add`, then
//! `alpo node --join`; the new members catch up by install-snapshot, the log being compacted),
//! replace a dead node, remove the leader, shrink back to 3, and a rolling restart. After each
//! step a key written at the start is read back, and a removed id cannot come back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const ALPO: &str = env!("CARGO_BIN_EXE_alpo");
const CLUSTER_ID: &str = "4242";

/// A free loopback address: bound on port 0, then released (the small race with another
/// process taking it is acceptable in tests).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Node {
    child: Child,
    peer: SocketAddr,
    client: SocketAddr,
    dir: PathBuf,
}

/// The processes of the cluster, by node id.
struct Runbook {
    nodes: BTreeMap<u64, Node>,
    root: tempfile::TempDir,
}

impl Drop for Runbook {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Ok(None) = node.child.try_wait() {
                let _ = node.child.kill();
                let _ = node.child.wait();
            }
        }
    }
}

fn spawn(args: &[String]) -> Child {
    let mut child = Command::new(ALPO)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {});
    child
}

fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `alpo node` with this node's flags (no `--peer`, no `--join`).
fn node_args(id: u64, peer: SocketAddr, client: SocketAddr, dir: &Path) -> Vec<String> {
    [
        "node",
        "--id",
        &id.to_string(),
        "--cluster-id",
        CLUSTER_ID,
        "--peer-addr",
        &peer.to_string(),
        "--client-addr",
        &client.to_string(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--snapshot-interval-entries",
        "20",
        "--snapshot-retain-entries",
        "5",
        "--no-recorder",
    ]
    .iter()
    .map(ToString::to_string)
    .collect()
}

impl Runbook {
    /// Step 0: three nodes started from flags.
    fn bootstrap() -> Runbook {
        let mut runbook = Runbook {
            nodes: BTreeMap::new(),
            root: tempfile::tempdir().unwrap(),
        };
        let addrs: Vec<(u64, SocketAddr, SocketAddr)> =
            (1..=3).map(|id| (id, free_addr(), free_addr())).collect();
        for (id, peer, client) in &addrs {
            let dir = runbook.root.path().join(format!("node-{id}"));
            let mut args = node_args(*id, *peer, *client, &dir);
            for (other, p, c) in addrs.iter().filter(|(other, _, _)| other != id) {
                args.push("--peer".into());
                args.push(format!("{other}={p},{c}"));
            }
            let child = spawn(&args);
            let node = Node {
                child,
                peer: *peer,
                client: *client,
                dir,
            };
            runbook.nodes.insert(*id, node);
        }
        runbook
    }

    fn endpoints(&self) -> String {
        let list: Vec<String> = self.nodes.values().map(|n| n.client.to_string()).collect();
        list.join(",")
    }

    /// `alpo ARGS --endpoints <running nodes> --cluster-id …`.
    fn alpo(&self, args: &[&str]) -> Output {
        Command::new(ALPO)
            .args(args)
            .args(["--endpoints", &self.endpoints(), "--cluster-id", CLUSTER_ID])
            .args(["--timeout-ms", "20000"])
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.alpo(args);
        assert!(output.status.success(), "alpo {args:?}: {}", text(&output));
        text(&output)
    }

    /// The members as `alpo member list --json` prints them: `(id, role, leader?)`.
    fn members(&self) -> Vec<(u64, String, bool)> {
        let out = self.ok(&["member", "list", "--json"]);
        out.lines()
            .filter(|l| l.starts_with('{'))
            .map(|line| {
                let field = |name: &str| {
                    let at = line.find(&format!("\"{name}\":")).unwrap() + name.len() + 3;
                    let rest = &line[at..];
                    let end = rest.find([',', '}']).unwrap();
                    rest[..end].trim_matches('"').to_string()
                };
                (
                    field("id").parse().unwrap(),
                    field("role"),
                    field("leader") == "true",
                )
            })
            .collect()
    }

    fn leader(&self) -> u64 {
        wait_for("a leader", || {
            let out = self.alpo(&["member", "list", "--json"]);
            if !out.status.success() {
                return None;
            }
            self.members()
                .into_iter()
                .find(|(_, _, leader)| *leader)
                .map(|m| m.0)
        })
    }

    /// The key written at the start is readable (linearizably, through the leader).
    fn check_key(&self, step: &str) {
        let out = self.alpo(&["get", "runbook"]);
        assert!(
            out.status.success() && text(&out).contains("kept"),
            "after {step}: {}",
            text(&out)
        );
    }

    fn fill(&self, count: usize) {
        for i in 0..count {
            self.ok(&["append", &format!("fill {i}")]);
        }
    }

    /// Runbook "Grow": `alpo member add ID PEER,CLIENT` (waits for the promotion), and the new
    /// node started with `--join` as soon as the add is listed.
    fn grow(&mut self, id: u64) {
        let (peer, client) = (free_addr(), free_addr());
        let addrs = format!("{peer},{client}");
        let mut add = Command::new(ALPO)
            .args(["member", "add", &id.to_string(), &addrs])
            .args(["--endpoints", &self.endpoints(), "--cluster-id", CLUSTER_ID])
            .args(["--timeout-ms", "30000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for("the new member listed", || {
            self.members().iter().any(|m| m.0 == id).then_some(())
        });
        let dir = self.root.path().join(format!("node-{id}"));
        let mut args = node_args(id, peer, client, &dir);
        args.push("--join".into());
        args.push(self.endpoints());
        let child = spawn(&args);
        let added = wait_for("member add to finish", || add.try_wait().unwrap());
        let mut output = String::new();
        std::io::Read::read_to_string(&mut add.stdout.take().unwrap(), &mut output).unwrap();
        std::io::Read::read_to_string(&mut add.stderr.take().unwrap(), &mut output).unwrap();
        assert!(added.success(), "member add {id}: {output}");
        assert!(output.contains("committed at index"), "{output}");
        self.nodes.insert(
            id,
            Node {
                child,
                peer,
                client,
                dir,
            },
        );
        let role = self.members().into_iter().find(|m| m.0 == id).unwrap().1;
        assert_eq!(role, "voter", "node {id} promoted");
    }

    fn stop(&mut self, id: u64, signal: &str) {
        let mut node = self.nodes.remove(&id).unwrap();
        let pid = node.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        node.child.wait().unwrap();
    }

    fn remove(&mut self, id: u64) {
        let out = self.ok(&["member", "remove", &id.to_string()]);
        assert!(out.contains("committed at index"), "{out}");
        assert!(self.members().iter().all(|m| m.0 != id));
    }

    /// Runbook "Rolling restart": each node in turn, SIGTERM (a leader hands over first),
    /// then the same command without --join, and the cluster serves before the next.
    fn rolling_restart(&mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            let (peer, client, dir) = {
                let node = &self.nodes[&id];
                (node.peer, node.client, node.dir.clone())
            };
            self.stop(id, "-TERM");
            let args = node_args(id, peer, client, &dir);
            let child = spawn(&args);
            self.nodes.insert(
                id,
                Node {
                    child,
                    peer,
                    client,
                    dir,
                },
            );
            wait_for("the restarted node to serve", || {
                let out = self.alpo(&["get", "runbook"]);
                out.status.success().then_some(())
            });
        }
    }
}

fn has_snapshot(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "alposnap"))
}

#[test]
fn the_membership_runbook_works_step_by_step() {
    let mut runbook = Runbook::bootstrap();
    runbook.leader();
    runbook.ok(&["put", "runbook", "kept"]);
    runbook.fill(40);

    // Grow from 3 to 5; each new member is caught up by install-snapshot.
    runbook.grow(4);
    runbook.grow(5);
    for id in [4, 5] {
        assert!(has_snapshot(&runbook.nodes[&id].dir), "node {id} installed");
    }
    runbook.check_key("growing to 5");

    // Replace a dead node: it dies for good, is removed, a new one (new id) takes its place.
    let dead = (1..=3).find(|id| *id != runbook.leader()).unwrap();
    runbook.stop(dead, "-KILL");
    runbook.remove(dead);
    runbook.fill(25);
    runbook.grow(6);
    runbook.check_key("replacing a dead node");
    let reused = format!("{},{}", free_addr(), free_addr());
    let out = runbook.alpo(&["member", "add", &dead.to_string(), &reused]);
    assert!(!out.status.success());
    assert!(text(&out).contains("old incarnation"), "{}", text(&out));

    // Remove the leader: it hands over, then it is stopped.
    let leader = runbook.leader();
    runbook.remove(leader);
    runbook.stop(leader, "-TERM");
    runbook.check_key("removing the leader");

    // Shrink back to 3.
    let extra = *runbook.nodes.keys().max().unwrap();
    runbook.remove(extra);
    runbook.stop(extra, "-TERM");
    assert_eq!(runbook.members().len(), 3);
    runbook.check_key("shrinking to 3");

    runbook.rolling_restart();
    runbook.check_key("the rolling restart");
    let ids: Vec<u64> = runbook.nodes.keys().copied().collect();
    for id in ids {
        runbook.stop(id, "-TERM");
    }
}
