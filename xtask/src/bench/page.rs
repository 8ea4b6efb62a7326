//! `cargo xtask page-test [--out DIR]` (issue 15): the live cluster page in a real headless
//! browser. Starts three `alpo node` processes with metrics on, loads a follower's page in
//! Debian's Chromium (`/usr/bin/chromium`; install it with `apt-get install -y chromium`, this
//! task installs nothing), checks from the DOM that it shows the leader, kills the leader
//! (`kill -9`), waits for the cluster to elect another, loads the page again and checks that
//! it shows the new leader and the old one as unreachable, and keeps a screenshot,
//! `DIR/page.png` (printed).
//!
//! Not part of `cargo test` (it needs a browser and a release build); exit code 0 when every
//! check held, 1 when one failed, 2 when it could not run (no Chromium).
//!
//! Invariant: every node process and the browser are ended before the task returns (the
//! cluster's `Drop`; Chromium runs to completion per load).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::local::LocalCluster;

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may run its scripts (virtual time) before the DOM is dumped: two polls.
const PAGE_BUDGET_MS: &str = "2500";
/// How long a new leader may take after the old one is killed.
const FAILOVER_WAIT: Duration = Duration::from_secs(20);

pub(crate) fn main(args: &[String]) -> ExitCode {
    let out = match args {
        [] => PathBuf::from("out"),
        [flag, dir] if flag == "--out" => PathBuf::from(dir),
        _ => {
            eprintln!("usage: cargo xtask page-test [--out DIR]");
            return ExitCode::from(2);
        }
    };
    if !Path::new(CHROMIUM).exists() {
        eprintln!("page-test: {CHROMIUM} not found; install it with `apt-get install -y chromium`");
        return ExitCode::from(2);
    }
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("page-test: FAILED: {error:#}");
            ExitCode::from(1)
        }
    }
}

fn run(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let alpo = super::build_release()?;
    let flags = ["--metrics-addr".to_string(), "127.0.0.1:0".to_string()];
    let mut cluster = LocalCluster::start(&alpo, 3, "page", &flags)?;
    let pages: Vec<String> = (0..cluster.len())
        .map(|index| metrics_addr(&cluster, index))
        .collect::<anyhow::Result<_>>()?;
    let leader = wait_for_leader(&pages[0], None)?;
    // Node ids are index + 1; watch from a node that stays up.
    let viewer = if leader == 1 { 1 } else { 0 };
    let url = format!("http://{}/", pages[viewer]);
    eprintln!("page-test: leader is node {leader}; loading {url}");
    let dom = dump_dom(&url, out)?;
    check_leader(&dom, leader)?;
    cluster.kill(usize::try_from(leader - 1)?);
    eprintln!("page-test: killed node {leader}");
    let new_leader = wait_for_leader(&pages[viewer], Some(leader))?;
    let dom = dump_dom(&url, out)?;
    check_leader(&dom, new_leader)?;
    let dead = format!("id=\"node-{leader}\" data-role=\"unreachable\"");
    if !dom.contains(&dead) {
        bail!("the page does not show node {leader} as unreachable: {dom}");
    }
    let shot = out.join("page.png");
    screenshot(&url, &shot, out)?;
    println!(
        "page-test: ok: the page showed node {leader}, then node {new_leader} after node \
         {leader} was killed; screenshot {}",
        shot.display()
    );
    Ok(())
}

/// The metrics address node `index` printed in its log.
fn metrics_addr(cluster: &LocalCluster, index: usize) -> anyhow::Result<String> {
    let log = cluster.dir.join(format!("node-{}.log", index + 1));
    let deadline = Instant::now() + FAILOVER_WAIT;
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let found = text.lines().find_map(|line| {
            let rest = line.strip_prefix("metrics: http://")?;
            rest.split('/').next().map(str::to_string)
        });
        if let Some(addr) = found {
            return Ok(addr);
        }
        if Instant::now() > deadline {
            bail!(
                "node {} printed no metrics address in {}",
                index + 1,
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The leader `/cluster.json` at `addr` shows, once there is one other than `not`.
fn wait_for_leader(addr: &str, not: Option<u64>) -> anyhow::Result<u64> {
    let deadline = Instant::now() + FAILOVER_WAIT;
    loop {
        if let Ok(json) = http_get(addr, "/cluster.json") {
            let value: Value = serde_json::from_str(&json).context("parsing /cluster.json")?;
            let leader = value["nodes"].as_array().and_then(|nodes| {
                nodes
                    .iter()
                    .find(|node| node["role"] == "leader")
                    .and_then(|node| node["id"].as_u64())
            });
            if let Some(leader) = leader.filter(|id| Some(*id) != not) {
                return Ok(leader);
            }
        }
        if Instant::now() > deadline {
            bail!("no new leader within {FAILOVER_WAIT:?} (asking {addr})");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (_, body) = text.split_once("\r\n\r\n").context("no HTTP body")?;
    Ok(body.to_string())
}

fn check_leader(dom: &str, leader: u64) -> anyhow::Result<()> {
    let shown = format!("id=\"leader\" data-id=\"{leader}\"");
    if !dom.contains(&shown) {
        bail!("the page does not show node {leader} as leader; its DOM: {dom}");
    }
    eprintln!("page-test: the page shows node {leader} as leader");
    Ok(())
}

/// Headless Chromium with a throw-away profile, as root allows it (no sandbox).
fn chromium(profile: &Path) -> Command {
    let mut command = Command::new(CHROMIUM);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={PAGE_BUDGET_MS}"));
    command
}

fn dump_dom(url: &str, out: &Path) -> anyhow::Result<String> {
    let output = chromium(&out.join("chromium-profile"))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .context("running chromium --dump-dom")?;
    if !output.status.success() {
        bail!(
            "chromium --dump-dom failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn screenshot(url: &str, path: &Path, out: &Path) -> anyhow::Result<()> {
    let status = chromium(&out.join("chromium-profile"))
        .arg(format!("--screenshot={}", path.display()))
        .arg("--window-size=1100,760")
        .arg(url)
        .output()
        .context("running chromium --screenshot")?
        .status;
    if !status.success() || !path.exists() {
        bail!("chromium --screenshot failed ({status})");
    }
    Ok(())
}
