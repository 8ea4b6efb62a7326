//! Drives the `alpo` binary as a user would: `alpo dev` on free ports in a temporary directory,
//! then the client subcommands against it, checking their output and exit codes, then Ctrl-C.

// Helpers fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

const ALPO: &str = env!("CARGO_BIN_EXE_alpo");

/// An `alpo dev` process and the lines it printed.
struct Dev {
    child: Child,
    lines: Receiver<String>,
    endpoints: String,
}

impl Dev {
    fn start(dir: &std::path::Path) -> Dev {
        let dir = dir.to_str().unwrap();
        let (child, lines) =
            spawn_reading(&["dev", "--nodes", "3", "--base-port", "0", "--dir", dir]);
        let mut dev = Dev {
            child,
            lines,
            endpoints: String::new(),
        };
        let endpoints_line = dev.wait_for_line("endpoints: ");
        dev.endpoints = endpoints_line.trim_start_matches("endpoints: ").to_string();
        dev.wait_for_line("ready: ");
        dev
    }

    fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => panic!("alpo dev printed no {prefix:?} line"),
                Err(RecvTimeoutError::Disconnected) => panic!("alpo dev exited before {prefix:?}"),
            }
        }
    }

    /// Runs `alpo ARGS --endpoints <this cluster>`.
    fn alpo(&self, args: &[&str]) -> Output {
        Command::new(ALPO)
            .args(args)
            .args(["--endpoints", &self.endpoints])
            .output()
            .unwrap()
    }

    /// Ctrl-C, as a terminal sends it; the cluster must stop cleanly.
    fn interrupt(self) {
        self.signal("-INT");
    }

    /// Sends a signal (`-INT` as Ctrl-C does, `-TERM` as a service manager does); the process
    /// must stop its nodes cleanly and exit 0.
    fn signal(mut self, signal: &str) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args([signal, &pid]).status().unwrap();
        assert!(killed.success());
        self.wait_for_line("stopped");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "alpo dev exited with {status}");
    }
}

/// Spawns `alpo ARGS` with its standard output read line by line on a thread.
fn spawn_reading(args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(ALPO)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (sender, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    (child, lines)
}

impl Drop for Dev {
    fn drop(&mut self) {
        // A failed test must not leave the cluster running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Retries `check` until it gives a value (bounded by a deadline, not a sleep count).
fn wait_for<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn dev_cluster_serves_the_client_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev::start(dir.path());
    check_append_and_read(&dev);
    check_read_follow(&dev);
    check_key_value(&dev);
    check_status(&dev);
    check_snapshot(&dev);
    check_bench(&dev);
    check_members(&dev);
    check_closed_output(&["read", "--endpoints", &dev.endpoints]);
    dev.interrupt();
    let log_dir = dir.path().join("node-1");
    check_closed_output(&["log", "dump", log_dir.to_str().unwrap()]);
    check_replay(&log_dir);
}

/// `alpo replay` on a node of the dev cluster that just stopped: its history, outputs checked;
/// a torn trace replays up to the tear; a damaged one is refused naming the file and byte.
fn check_replay(data_dir: &std::path::Path) {
    let run = |args: &[&str]| Command::new(ALPO).args(args).output().unwrap();
    let out = run(&["replay", data_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("term 0 -> 1"), "{text}");
    assert!(text.contains("leader is node "), "{text}");
    assert!(
        text.contains("outputs identical to the recording"),
        "{text}"
    );
    let json = run(&["replay", data_dir.to_str().unwrap(), "--json"]);
    let last = stdout(&json).lines().last().unwrap().to_string();
    assert!(last.starts_with("{\"event\":\"replayed\""), "{last}");
    assert!(last.contains("\"identical\":true"), "{last}");
    let trace_dir = data_dir.join("trace");
    let file = std::fs::read_dir(&trace_dir)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&file).unwrap();
    let torn = trace_dir.join("torn.alpotrc");
    std::fs::write(&torn, &bytes[..bytes.len() - 5]).unwrap();
    let out = run(&["replay", torn.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("torn at byte"), "{}", stdout(&out));
    let mut damaged = bytes.clone();
    damaged[10] = 0xee;
    std::fs::write(&torn, &damaged).unwrap();
    let out = run(&["replay", torn.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let error = stderr(&out);
    assert!(
        error.contains("torn.alpotrc: corrupt trace at byte 10"),
        "{error}"
    );
}

/// `alpo ARGS | head` where `head` has already gone: the command's first write meets a closed
/// pipe, and it must end quietly and successfully rather than print "Broken pipe".
fn check_closed_output(args: &[&str]) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(ALPO)
        .args(args)
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "{args:?}");
}

fn check_append_and_read(dev: &Dev) {
    let out = dev.alpo(&["append", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("appended at index "),
        "{}",
        stdout(&out)
    );
    let out = dev.alpo(&["append", "world", "--json"]);
    assert!(stdout(&out).starts_with("{\"index\":"), "{}", stdout(&out));

    // The first endpoint may be a follower that has not applied the latest entry yet: a read
    // from a follower may lag. Ask until it has caught up.
    let text = wait_for(|| {
        let out = dev.alpo(&["read"]);
        assert!(out.status.success(), "{}", stderr(&out));
        Some(stdout(&out)).filter(|text| text.contains("world"))
    });
    assert!(text.contains("\tappend\thello\n"), "{text}");
    assert!(
        text.find("hello").unwrap() < text.find("world").unwrap(),
        "{text}"
    );
    let out = dev.alpo(&["read", "--json"]);
    assert!(
        stdout(&out).contains("\"kind\":\"append\",\"value\":\"hello\""),
        "{}",
        stdout(&out)
    );
}

/// `read --follow` prints entries appended after it started.
fn check_read_follow(dev: &Dev) {
    let endpoints = [
        "--endpoints",
        dev.endpoints.as_str(),
        "--from",
        "1",
        "--follow",
    ];
    let (mut follower, lines) = spawn_reading(&[&["read"][..], &endpoints[..]].concat());
    dev.alpo(&["append", "followed"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|line: &String| line.ends_with("\tfollowed"))
    {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.push(
            lines
                .recv_timeout(left)
                .expect("read --follow printed the new entry"),
        );
    }
    follower.kill().unwrap();
    follower.wait().unwrap();
}

fn check_key_value(dev: &Dev) {
    let out = dev.alpo(&["put", "greeting", "hi"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("ok (index "), "{}", stdout(&out));
    let out = dev.alpo(&["get", "greeting"]);
    assert_eq!(stdout(&out), "hi\n");
    let out = dev.alpo(&["get", "greeting", "--json"]);
    assert_eq!(stdout(&out), "{\"key\":\"greeting\",\"value\":\"hi\"}\n");
    let out = dev.alpo(&["get", "missing"]);
    assert_eq!(out.status.code(), Some(4), "a missing key exits 4");
    assert!(stderr(&out).contains("not found"), "{}", stderr(&out));
    let out = dev.alpo(&["cas", "greeting", "--expect", "hi", "--new", "bye"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = dev.alpo(&["cas", "greeting", "--expect", "hi", "--new", "again"]);
    assert_eq!(out.status.code(), Some(4), "{}", stdout(&out));
    assert!(stdout(&out).contains("not swapped"), "{}", stdout(&out));
}

fn check_status(dev: &Dev) {
    let out = dev.alpo(&["status"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text}");
    assert_eq!(
        text.lines().count(),
        4,
        "a header and one line per node: {text}"
    );
    assert_eq!(text.matches(" leader ").count(), 1, "{text}");
    let out = dev.alpo(&["status", "--json"]);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(text.matches("\"role\":\"leader\"").count(), 1, "{text}");
    assert_eq!(text.matches("\"role\":\"passive\"").count(), 2, "{text}");
}

/// `alpo snapshot` makes every node take one now; `alpo status` then shows its index.
fn check_snapshot(dev: &Dev) {
    let out = dev.alpo(&["snapshot", "--json"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    let indices: Vec<f64> = text
        .lines()
        .map(|line| json_number(line, "snapshot_index"))
        .collect();
    assert_eq!(indices.len(), 3, "one line per node: {text}");
    assert!(indices.iter().all(|index| 1.0 <= *index), "{text}");
    let out = dev.alpo(&["status", "--json"]);
    let text = stdout(&out);
    for (line, index) in text.lines().zip(&indices) {
        assert!(*index <= json_number(line, "snapshot_index"), "{line}");
        assert_eq!(
            json_number(line, "first_index"),
            1.0,
            "nothing compacted yet: {line}"
        );
    }
    let out = dev.alpo(&["snapshot"]);
    let text = stdout(&out);
    assert_eq!(text.matches(": snapshot at index ").count(), 3, "{text}");
}

/// Issue 12: `alpo member list` (one JSON object per member, with `id` and `role`), `alpo
/// transfer-leader` (the named voter leads afterwards), `alpo status`'s member columns, and a
/// change refused for good (removing a node that is not a member).
fn check_members(dev: &Dev) {
    let out = dev.alpo(&["member", "list", "--json"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert_eq!(text.lines().count(), 3, "one line per member: {text}");
    assert_eq!(text.matches("\"role\":\"voter\"").count(), 3, "{text}");
    let ids: Vec<f64> = text.lines().map(|line| json_number(line, "id")).collect();
    assert_eq!(ids, [1.0, 2.0, 3.0], "{text}");
    let leader = text
        .lines()
        .find(|line| line.contains("\"leader\":true"))
        .map(|line| json_number(line, "id"))
        .expect("the leader's member list marks it");
    let target = if leader == 1.0 { "2" } else { "1" };
    let out = dev.alpo(&["transfer-leader", target, "--json"]);
    let text = stdout(&out);
    assert!(out.status.success(), "{text} {}", stderr(&out));
    assert_eq!(json_number(&text, "leader").to_string(), target, "{text}");
    let out = dev.alpo(&["status"]);
    let text = stdout(&out);
    assert_eq!(text.matches(" voter ").count(), 3, "{text}");
    let out = dev.alpo(&["member", "remove", "9"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains("not a member"), "{}", stderr(&out));
}

/// A number field of a one-line JSON object.
fn json_number(line: &str, field: &str) -> f64 {
    let start = line.find(&format!("\"{field}\":")).unwrap() + field.len() + 3;
    let end = line[start..].find([',', '}']).unwrap() + start;
    line[start..end].parse().unwrap()
}

/// `alpo bench` drives several clients from its driver threads; every answer is counted, and
/// a `put` run leaves its keys behind.
fn check_bench(dev: &Dev) {
    let run = [
        "bench",
        "--clients",
        "5",
        "--duration",
        "0.5",
        "--warmup",
        "0.1",
    ];
    let out = dev.alpo(&[&run[..], &["--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out);
    assert!(json_number(&line, "ops") >= 5.0, "{line}");
    assert_eq!(json_number(&line, "errors"), 0.0, "{line}");
    assert_eq!(json_number(&line, "clients"), 5.0, "{line}");
    assert!(json_number(&line, "p50_us") > 0.0, "{line}");
    let out = dev.alpo(&[&run[..], &["--op", "put"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ops/s"), "{}", stdout(&out));
    // Client 4's first put (a warm-up one) is there; a follower may take a moment to apply it.
    wait_for(|| {
        let out = dev.alpo(&["get", "bench/00004/000000000001"]);
        out.status.success().then_some(())
    });
}

#[test]
fn a_single_node_runs_from_flags_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "node",
        "--id",
        "1",
        "--cluster-id",
        "9",
        "--peer-addr",
        "127.0.0.1:0",
    ];
    let data_dir = dir.path().join("node-1");
    let data_dir = [
        "--client-addr",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    let (child, lines) = spawn_reading(&[&args[..], &data_dir[..]].concat());
    let mut node = Dev {
        child,
        lines,
        endpoints: String::new(),
    };
    let running = node.wait_for_line("node 1 running: clients on ");
    let rest = running.trim_start_matches("node 1 running: clients on ");
    node.endpoints = rest.split(',').next().unwrap().to_string();
    let out = wait_for(|| {
        let out = node.alpo(&["append", "solo", "--cluster-id", "9"]);
        out.status.success().then_some(out)
    });
    assert!(
        stdout(&out).starts_with("appended at index "),
        "{}",
        stdout(&out)
    );
    let out = node.alpo(&["status", "--cluster-id", "9"]);
    assert!(stdout(&out).contains(" leader "), "{}", stdout(&out));
    node.signal("-TERM");
}

#[test]
fn errors_name_the_problem_and_exit_codes_say_what_kind() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("node.toml");
    let toml = "id = 1\ncluster_id = 1\ndata_dir = \"d\"\npeer_addr = \"127.0.0.1:1\"\n\
                client_addr = \"127.0.0.1:2\"\n[[peers]]\nid = 1\n\
                peer_addr = \"127.0.0.1:3\"\nclient_addr = \"127.0.0.1:4\"\n";
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(ALPO)
        .arg("node")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("peers[0].id: node id 1 is used twice"),
        "{}",
        stderr(&out)
    );

    let out = Command::new(ALPO)
        .args(["node", "--id", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--data-dir is required"),
        "{}",
        stderr(&out)
    );

    let out = Command::new(ALPO).args(["append"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");

    // Nobody listens on this endpoint: the cluster is unavailable.
    let unused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = unused.to_string();
    let args = ["get", "k", "--timeout-ms", "300", "--endpoints", &endpoint];
    let out = Command::new(ALPO).args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cluster unavailable"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_consistency_or_lease_bound_is_named() {
    // An unknown consistency is named with the three that exist (issue 14).
    let out = Command::new(ALPO)
        .args(["get", "k", "--consistency", "eventual"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    assert!(
        stderr(&out).contains("expected linearizable, lease or stale"),
        "{}",
        stderr(&out)
    );
    let out = Command::new(ALPO)
        .args([
            "node",
            "--id",
            "1",
            "--data-dir",
            "d",
            "--peer-addr",
            "127.0.0.1:1",
        ])
        .args([
            "--client-addr",
            "127.0.0.1:2",
            "--lease-drift-ppm",
            "1000000",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("reads.lease_drift_ppm"),
        "{}",
        stderr(&out)
    );
}

/// Issue 16: `alpo dev --tls` in one command, then the client commands after its one `export`
/// line (here: its variables set on the command); without them, refused by name.
#[test]
fn dev_tls_cluster_is_reached_after_its_export_line() {
    let dir = tempfile::tempdir().unwrap();
    let dir_text = dir.path().to_str().unwrap();
    let (child, lines) = spawn_reading(&[
        "dev",
        "--nodes",
        "3",
        "--base-port",
        "0",
        "--dir",
        dir_text,
        "--tls",
    ]);
    let mut dev = Dev {
        child,
        lines,
        endpoints: String::new(),
    };
    let endpoints_line = dev.wait_for_line("endpoints: ");
    dev.endpoints = endpoints_line.trim_start_matches("endpoints: ").to_string();
    let export = dev.wait_for_line("export ");
    dev.wait_for_line("ready: ");
    let variables: Vec<(String, String)> = export
        .trim_start_matches("export ")
        .split(' ')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect();
    let names: Vec<&str> = variables.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["ALPO_TLS_CA", "ALPO_TLS_CERT", "ALPO_TLS_KEY"]);

    let with_tls = Command::new(ALPO)
        .args(["append", "over tls", "--endpoints", &dev.endpoints])
        .envs(variables.iter().map(|(name, value)| (name, value)))
        .output()
        .unwrap();
    assert!(with_tls.status.success(), "{}", stderr(&with_tls));
    assert!(stdout(&with_tls).starts_with("appended at index "));

    let plain = Command::new(ALPO)
        .args(["append", "plain", "--timeout-ms", "1500"])
        .args(["--endpoints", &dev.endpoints])
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(3), "{}", stderr(&plain));
    assert!(
        stderr(&plain).contains("plain_on_tls_port"),
        "{}",
        stderr(&plain)
    );
    dev.interrupt();

    // `alpo certs init` never overwrites: the dev cluster's CA is refused by name.
    let certs_dir = dir.path().join("certs");
    let again = Command::new(ALPO)
        .args(["certs", "init", certs_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("ca.pem"), "{}", stderr(&again));
}
