//! `cargo xtask bench transfer` (issue 12): how long the cluster cannot write while its
//! leadership moves, by a transfer (rules T1–T5) and, for comparison, by killing the leader;
//! and the write throughput around a membership change.
//!
//! A fresh cluster of `--nodes` (3) runs a closed-loop write load of `--clients` (16) sessions
//! (log appends of `--value-size` bytes, through `alpo_node::drive`, as `alpo bench`) for the
//! whole run; every acknowledgement's time is kept. Then:
//! - `--count` (100) transfers: `Client::transfer_leader(None)` (the most up-to-date voter),
//!   each followed by `--settle-ms` (300) of quiet; interleaved with them (one after every
//!   `count / kills` transfers, so both kinds see the same machine load)
//! - `--kills` (5) leader kills: `kill -9` the leader, start it again at once, then
//!   `--kill-settle-ms` (2000) of quiet, so the next event finds the restarted node caught up;
//! - then one membership change (`--change replace`, the default: replace a follower under a
//!   new id, by remove, `member add` as a learner, `--join`, promote; `remove`: only remove it;
//!   `none` skips it): the writes per second in the `--window-ms` (1000) before the request,
//!   while it is outstanding, and in the window after its answer.
//!
//! Leader unavailability of an event = the longest gap between consecutive acknowledgements
//! from the last one before the event starts to the start of the next event (so the gap that
//! the event opens, however long, is inside its window; with the load's thousands of writes per
//! second an ordinary gap is well below a millisecond). The summary gives p50/p99 per kind and
//! the node's heartbeat interval and passive timeout for the goals (transfer ≤ 2 heartbeats,
//! kill ≥ the shortest passive timeout).
//!
//! Writes `DIR/transfer-<unix seconds>.jsonl`: one line per event (`kind`, `unavailable_ms`,
//! `answer_ms`: how long the transfer call or the restart took to answer), one `change` line and
//! one `summary` line, which is also printed.
//!
//! Invariants: the load runs from before the first event to after the last one's window; every
//! node started is killed and its data removed when the benchmark ends (`LocalCluster`'s drop).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use serde_json::Value;

use alpo_core::{ClusterId, NodeId, Role};
use alpo_node::client_protocol::{Op, ResponseBody};
use alpo_node::member_protocol::MemberChange;
use alpo_node::{Client, ClientOptions, DrivePlan, Error, Outcomes, Requests, drive};

use super::local::{CLUSTER_ID, LocalCluster};

pub(super) const USAGE: &str = "\
       cargo xtask bench transfer [--count 100] [--kills 5] [--clients 16] [--value-size 128]
                                  [--settle-ms 300] [--kill-settle-ms 2000] [--window-ms 1000]
                                  [--change replace|remove|none] [--nodes 3] [--out DIR]
                                  [--alpo PATH] [--node-flag FLAGS]...";

/// How long a fresh cluster may take to elect a leader, or the load to see a first write.
const WAIT: Duration = Duration::from_secs(60);
/// The load's warm-up before the first event.
const WARMUP: Duration = Duration::from_secs(1);

/// The membership change measured for throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// Skip it.
    None,
    /// Remove a follower.
    Remove,
    /// Replace a follower under a new id: remove it, stop it, add the new id as a learner at
    /// the same addresses, start it with `--join` and an empty data directory, promote it once
    /// caught up.
    Replace,
}

/// Options of `bench transfer`.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    nodes: u16,
    count: u32,
    kills: u32,
    clients: u64,
    value_size: usize,
    settle: Duration,
    kill_settle: Duration,
    window: Duration,
    change: Change,
    out: PathBuf,
    alpo: Option<PathBuf>,
    node_flags: Vec<String>,
}

/// Parses the arguments after `bench transfer`.
pub(super) fn parse(args: &[String]) -> anyhow::Result<Plan> {
    let mut plan = Plan {
        nodes: 3,
        count: 100,
        kills: 5,
        clients: 16,
        value_size: 128,
        settle: Duration::from_millis(300),
        kill_settle: Duration::from_millis(2_000),
        window: Duration::from_millis(1_000),
        change: Change::Replace,
        out: PathBuf::from("out"),
        alpo: None,
        node_flags: Vec::new(),
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} wants a value"))?;
        let number = || -> anyhow::Result<u64> {
            value
                .parse()
                .with_context(|| format!("{flag} wants a number, found {value:?}"))
        };
        match flag.as_str() {
            "--nodes" => plan.nodes = u16::try_from(number()?)?,
            "--count" => plan.count = u32::try_from(number()?)?,
            "--kills" => plan.kills = u32::try_from(number()?)?,
            "--clients" => plan.clients = number()?,
            "--value-size" => plan.value_size = usize::try_from(number()?)?,
            "--settle-ms" => plan.settle = Duration::from_millis(number()?),
            "--kill-settle-ms" => plan.kill_settle = Duration::from_millis(number()?),
            "--window-ms" => plan.window = Duration::from_millis(number()?),
            "--change" => {
                plan.change = match value.as_str() {
                    "replace" => Change::Replace,
                    "remove" => Change::Remove,
                    "none" => Change::None,
                    other => bail!("--change wants replace, remove or none, found {other:?}"),
                }
            }
            "--out" => plan.out = PathBuf::from(value),
            "--alpo" => plan.alpo = Some(PathBuf::from(value)),
            "--node-flag" => plan
                .node_flags
                .extend(value.split_whitespace().map(str::to_string)),
            other => bail!("unknown flag {other:?} for bench transfer"),
        }
    }
    if !(3..=9).contains(&plan.nodes) {
        bail!(
            "--nodes must be between 3 and 9 (a transfer needs another caught-up voter, a \
             removal a majority left), found {}",
            plan.nodes
        );
    }
    if plan.clients == 0 || plan.value_size == 0 || plan.window.is_zero() {
        bail!("--clients, --value-size and --window-ms must be above zero");
    }
    if plan.count == 0 && plan.kills == 0 && plan.change == Change::None {
        bail!("nothing to measure: --count 0, --kills 0 and --change none");
    }
    Ok(plan)
}

/// What moved the leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transfer,
    Kill,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Transfer => "transfer",
            Kind::Kill => "kill",
        }
    }
}

/// One event: when it started and how long its call took to answer.
#[derive(Debug, Clone, Copy)]
struct Event {
    kind: Kind,
    /// Microseconds since the load's base instant.
    at_us: u64,
    answer_us: u64,
}

/// Runs `plan`.
pub(super) fn run(plan: &Plan) -> anyhow::Result<()> {
    let alpo = match &plan.alpo {
        Some(path) => path.clone(),
        None => super::build_release()?,
    };
    std::fs::create_dir_all(&plan.out)
        .with_context(|| format!("creating {}", plan.out.display()))?;
    let stamp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let jsonl = plan.out.join(format!("transfer-{stamp}.jsonl"));
    let mut cluster = LocalCluster::start(&alpo, plan.nodes, "transfer", &plan.node_flags)?;
    let leader = wait_for_leader(&cluster)?;
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let load = spawn_load(plan, &cluster, leader, base, Arc::clone(&stop))?;
    let measured = measure(plan, &mut cluster, base);
    stop.store(true, Ordering::SeqCst);
    let acks = join_load(load)?;
    let (events, change) = measured?;
    if let Some((index, status)) = cluster.exited().first() {
        bail!(
            "node {} exited on its own ({status}); logs in {}",
            index + 1,
            cluster.dir.display()
        );
    }
    let timeouts = node_timeouts(&plan.node_flags);
    let mut lines = event_lines(&events, &acks);
    if let Some(change) = change {
        lines.push(change.line(&acks));
    }
    lines.push(summary(plan, &lines, timeouts));
    let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
    std::fs::write(&jsonl, text).with_context(|| format!("writing {}", jsonl.display()))?;
    for line in lines
        .iter()
        .filter(|l| l["kind"] != "transfer" && l["kind"] != "kill")
    {
        println!("{line}");
    }
    println!("wrote {}", jsonl.display());
    Ok(())
}

/// The transfers, the kills and the change, in that order.
fn measure(
    plan: &Plan,
    cluster: &mut LocalCluster,
    base: Instant,
) -> anyhow::Result<(Vec<Event>, Option<ChangeWindows>)> {
    let since = |at: Instant| u64::try_from(at.duration_since(base).as_micros()).unwrap_or(0);
    std::thread::sleep(WARMUP);
    let mut client = Client::new(cluster.client_addrs(), admin_options())?;
    let mut events = Vec::new();
    // The kills are spread evenly among the transfers (interleaved: both kinds see the same
    // machine load), one after every `every` transfers, the rest at the end.
    let every = plan.count.checked_div(plan.kills).unwrap_or(0).max(1);
    let mut kills = 0;
    for i in 0..plan.count.max(plan.kills) {
        if i < plan.count {
            let started = Instant::now();
            client
                .transfer_leader(None)
                .with_context(|| format!("transfer {i}"))?;
            events.push(Event {
                kind: Kind::Transfer,
                at_us: since(started),
                answer_us: since(Instant::now()) - since(started),
            });
            std::thread::sleep(plan.settle);
        }
        let due = (i + 1) % every == 0 || plan.count <= i + 1;
        if kills < plan.kills && due {
            kills += 1;
            let leader = wait_for_leader(cluster)?;
            let started = Instant::now();
            cluster.kill(leader);
            cluster.start_node(leader)?;
            wait_for_leader(cluster).with_context(|| format!("kill {kills}"))?;
            events.push(Event {
                kind: Kind::Kill,
                at_us: since(started),
                answer_us: since(Instant::now()) - since(started),
            });
            std::thread::sleep(plan.kill_settle);
        }
    }
    let change = change(plan, cluster, &mut client, base)?;
    Ok((events, change))
}

/// The membership change `plan.change` asks for, with its throughput windows.
fn change(
    plan: &Plan,
    cluster: &mut LocalCluster,
    client: &mut Client,
    base: Instant,
) -> anyhow::Result<Option<ChangeWindows>> {
    let since = |at: Instant| u64::try_from(at.duration_since(base).as_micros()).unwrap_or(0);
    Ok(match plan.change {
        Change::None => None,
        Change::Remove | Change::Replace => {
            let leader = wait_for_leader(cluster)?;
            let follower = (leader + 1) % cluster.len();
            let id = NodeId(cluster.id(follower));
            std::thread::sleep(plan.window);
            let asked = Instant::now();
            client
                .change_members(MemberChange::Remove(id))
                .with_context(|| format!("removing node {}", id.0))?;
            let what = if plan.change == Change::Replace {
                let new_id =
                    NodeId(1 + (0..cluster.len()).map(|i| cluster.id(i)).max().unwrap_or(0));
                cluster.kill(follower);
                let (peer_addr, client_addr) = cluster.addrs_of(follower);
                client
                    .add_member(new_id, peer_addr, client_addr, true)
                    .with_context(|| format!("adding node {}", new_id.0))?;
                cluster.start_joining(follower, new_id.0)?;
                promote(client, new_id)?;
                format!("replace {} by {}", id.0, new_id.0)
            } else {
                format!("remove {}", id.0)
            };
            let answered = Instant::now();
            std::thread::sleep(plan.window);
            Some(ChangeWindows {
                what,
                asked_us: since(asked),
                answered_us: since(answered),
                window_us: u64::try_from(plan.window.as_micros())?,
            })
        }
    })
}

/// Promotes learner `id` once it has caught up: asks again while the leader refuses (not caught
/// up yet) for up to [`WAIT`].
fn promote(client: &mut Client, id: NodeId) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        match client.change_members(MemberChange::Promote(id)) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() < deadline => {
                let _ = error;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => return Err(error).with_context(|| format!("promoting node {}", id.0)),
        }
    }
}

/// The write throughput around one membership change.
#[derive(Debug, Clone)]
struct ChangeWindows {
    what: String,
    asked_us: u64,
    answered_us: u64,
    window_us: u64,
}

impl ChangeWindows {
    fn line(&self, acks: &[u64]) -> Value {
        let before = rate(
            acks,
            self.asked_us.saturating_sub(self.window_us),
            self.asked_us,
        );
        let during = rate(acks, self.asked_us, self.answered_us);
        let after = rate(acks, self.answered_us, self.answered_us + self.window_us);
        serde_json::json!({
            "kind": "change",
            "change": self.what,
            "during_ms": round1(micros_to_ms(self.answered_us - self.asked_us)),
            "before_wps": before.round(),
            "during_wps": during.round(),
            "after_wps": after.round(),
            "during_over_before": round2(during / before),
            "after_over_before": round2(after / before),
        })
    }
}

/// Acknowledgements per second in `[from_us, to_us)` (the acks sorted); 0 for an empty window.
fn rate(acks: &[u64], from_us: u64, to_us: u64) -> f64 {
    if to_us <= from_us {
        return 0.0;
    }
    let count = acks.partition_point(|&t| t < to_us) - acks.partition_point(|&t| t < from_us);
    super::to_f64(u64::try_from(count).unwrap_or(u64::MAX)) * 1e6 / super::to_f64(to_us - from_us)
}

/// The longest gap between consecutive acknowledgements from the last one at or before
/// `from_us` up to `to_us` (sorted acks); the gap still open at `to_us` counts up to it.
fn longest_gap_us(acks: &[u64], from_us: u64, to_us: u64) -> u64 {
    let before = acks.partition_point(|&t| t <= from_us);
    let last = acks.partition_point(|&t| t <= to_us);
    // The gap's first edge: the last ack at or before the event, else the event itself.
    let mut edge = before.checked_sub(1).map_or(from_us, |i| acks[i]);
    let mut longest = 0;
    for &t in &acks[before.min(last)..last] {
        longest = longest.max(t - edge);
        edge = t;
    }
    longest.max(to_us.saturating_sub(edge))
}

/// One line per event: its unavailability, up to the next event's start (the last one's: to
/// the end of the acknowledgements).
fn event_lines(events: &[Event], acks: &[u64]) -> Vec<Value> {
    let end_us = acks.last().copied().unwrap_or(0);
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let to_us = events.get(i + 1).map_or(end_us, |next| next.at_us);
            serde_json::json!({
                "kind": event.kind.name(),
                "i": i,
                "at_ms": round1(micros_to_ms(event.at_us)),
                "unavailable_ms": round1(micros_to_ms(longest_gap_us(acks, event.at_us, to_us))),
                "answer_ms": round1(micros_to_ms(event.answer_us)),
            })
        })
        .collect()
}

/// The nodes' heartbeat interval and shortest passive timeout, in milliseconds: the node's
/// defaults unless `--node-flag` set them.
fn node_timeouts(flags: &[String]) -> (u64, u64) {
    let lan = alpo_node::Timeouts::lan();
    let given = |name: &str, default: u64| {
        flags
            .iter()
            .position(|flag| flag == name)
            .and_then(|at| flags.get(at + 1))
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    };
    (
        given("--heartbeat-interval-ms", lan.heartbeat_interval_ms),
        given("--passive-timeout-ms-min", lan.passive_timeout_ms_min),
    )
}

/// The `summary` line: p50/p99 of each kind's unavailability against the goals.
fn summary(plan: &Plan, lines: &[Value], (heartbeat_ms, passive_ms): (u64, u64)) -> Value {
    let of = |kind: &str| -> Vec<f64> {
        lines
            .iter()
            .filter(|line| line["kind"] == kind)
            .filter_map(|line| line["unavailable_ms"].as_f64())
            .collect()
    };
    let (transfers, kills) = (of("transfer"), of("kill"));
    let transfer_p50 = percentile(&transfers, 50);
    let transfer_p99 = percentile(&transfers, 99);
    let kill_p50 = percentile(&kills, 50);
    serde_json::json!({
        "kind": "summary",
        "nodes": plan.nodes,
        "clients": plan.clients,
        "value_size": plan.value_size,
        "node_flags": plan.node_flags.join(" "),
        "heartbeat_ms": heartbeat_ms,
        "passive_timeout_min_ms": passive_ms,
        "transfers": transfers.len(),
        "transfer_p50_ms": transfer_p50,
        "transfer_p99_ms": transfer_p99,
        "transfer_max_ms": percentile(&transfers, 100),
        "transfer_p99_in_heartbeats": round2(transfer_p99 / super::to_f64(heartbeat_ms)),
        "kills": kills.len(),
        "kill_p50_ms": kill_p50,
        "kill_p99_ms": percentile(&kills, 99),
        "kill_over_transfer_p50": round2(kill_p50 / transfer_p50),
    })
}

/// The nearest-rank `pct`-th percentile (NaN for none).
fn percentile(values: &[f64], pct: usize) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (pct * sorted.len()).div_ceil(100).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn micros_to_ms(us: u64) -> f64 {
    super::to_f64(us) / 1e3
}

fn round1(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// The options of the benchmark's own client (transfers, changes, status).
fn admin_options() -> ClientOptions {
    let mut options = ClientOptions::new(cluster_id());
    options.attempt_timeout = Duration::from_millis(1_000);
    options.request_timeout = Duration::from_secs(10);
    options
}

fn cluster_id() -> ClusterId {
    ClusterId(CLUSTER_ID.parse().unwrap_or(0))
}

/// The index of the node that says it leads, once one does.
fn wait_for_leader(cluster: &LocalCluster) -> anyhow::Result<usize> {
    let deadline = Instant::now() + WAIT;
    let mut options = admin_options();
    options.attempt_timeout = Duration::from_millis(200);
    while Instant::now() < deadline {
        for index in 0..cluster.len() {
            let endpoint = cluster.client_addr(index);
            let leads = Client::new(vec![endpoint], options)
                .and_then(|mut client| client.status_of(endpoint))
                .is_ok_and(|status| status.role == Role::Leader);
            if leads {
                return Ok(index);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!(
        "no leader within {WAIT:?}; node logs in {}",
        cluster.dir.display()
    )
}

/// Appends until `stop`, from every session.
struct UntilStopped {
    stop: Arc<AtomicBool>,
    value: Bytes,
}

impl Requests for UntilStopped {
    fn next(&mut self, _session: u64, _count: u64, _now: Instant) -> Option<Op> {
        (!self.stop.load(Ordering::Relaxed)).then(|| Op::Append {
            value: self.value.clone(),
        })
    }
}

/// Keeps each acknowledgement's time, in microseconds since `base`.
struct AckTimes {
    base: Instant,
    acks: Vec<u64>,
}

impl Outcomes for AckTimes {
    fn on_done(
        &mut self,
        _session: u64,
        _started: Instant,
        done: Instant,
        outcome: Result<ResponseBody, Error>,
    ) {
        if let Ok(ResponseBody::Appended { .. }) = outcome {
            let at = done.saturating_duration_since(self.base).as_micros();
            self.acks.push(u64::try_from(at).unwrap_or(u64::MAX));
        }
    }
}

type LoadThread = JoinHandle<anyhow::Result<Vec<u64>>>;

/// Starts the closed-loop load: `plan.clients` sessions over at most two driver threads.
fn spawn_load(
    plan: &Plan,
    cluster: &LocalCluster,
    leader: usize,
    base: Instant,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Vec<LoadThread>> {
    let drive_plan = Arc::new(DrivePlan {
        endpoints: cluster.client_addrs(),
        first_targets: vec![cluster.client_addr(leader)],
        options: ClientOptions {
            cluster_id: cluster_id(),
            attempt_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            retry_pause: Duration::from_millis(5),
        },
        tls: None,
    });
    let threads = plan.clients.min(2);
    let value = Bytes::from(vec![b'x'; plan.value_size]);
    (0..threads)
        .map(|thread_no| {
            let sessions: Vec<u64> = (0..plan.clients)
                .filter(|s| s % threads == thread_no)
                .collect();
            let (drive_plan, stop, value) =
                (Arc::clone(&drive_plan), Arc::clone(&stop), value.clone());
            std::thread::Builder::new()
                .name(format!("transfer-load-{thread_no}"))
                .spawn(move || {
                    let mut requests = UntilStopped { stop, value };
                    let mut times = AckTimes {
                        base,
                        acks: Vec::new(),
                    };
                    drive(&drive_plan, &sessions, &mut requests, &mut times)
                        .context("driving the load")?;
                    Ok(times.acks)
                })
                .context("starting a load thread")
        })
        .collect()
}

/// Waits for the load threads; returns every acknowledgement's time, sorted.
fn join_load(threads: Vec<LoadThread>) -> anyhow::Result<Vec<u64>> {
    let mut acks = Vec::new();
    for thread in threads {
        let times = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        acks.extend(times);
    }
    acks.sort_unstable();
    Ok(acks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_parse_and_bad_ones_are_named() {
        assert_eq!(parse(&[]).unwrap().change, Change::Replace);
        assert_eq!(
            parse(&args("--change remove")).unwrap().change,
            Change::Remove
        );
        let plan = parse(&args("--count 7 --kills 2 --clients 4 --change none")).unwrap();
        assert_eq!((plan.count, plan.kills, plan.clients), (7, 2, 4));
        assert_eq!(plan.change, Change::None);
        assert_eq!(parse(&[]).unwrap().count, 100);
        let bad = |text: &str| parse(&args(text)).unwrap_err().to_string();
        assert!(bad("--nodes 2").contains("--nodes"));
        assert!(bad("--change add").contains("--change"));
        assert!(bad("--count x").contains("--count"));
        assert!(bad("--count 0 --kills 0 --change none").contains("nothing to measure"));
        assert!(bad("--colour red").contains("--colour"));
    }

    #[test]
    fn the_gap_an_event_opens_is_found_up_to_the_next_event() {
        // Acks every 1 ms, a 40 ms hole after 10 ms, then every 1 ms again.
        let mut acks: Vec<u64> = (0..=10).map(|ms| ms * 1_000).collect();
        acks.extend((50..=60).map(|ms| ms * 1_000));
        // The event at 9.5 ms: the last ack before it is 9 ms; the hole 10..50 ms is its gap.
        assert_eq!(longest_gap_us(&acks, 9_500, 60_000), 40_000);
        // An event after the hole sees only 1 ms gaps.
        assert_eq!(longest_gap_us(&acks, 51_000, 60_000), 1_000);
        // A gap still open at the window's end counts up to it.
        assert_eq!(longest_gap_us(&acks, 9_500, 30_000), 20_000);
        // No ack before the event: from the event on.
        assert_eq!(longest_gap_us(&[5_000, 6_000], 1_000, 6_000), 4_000);
        assert_eq!(longest_gap_us(&[], 1_000, 6_000), 5_000);
    }

    #[test]
    fn events_get_their_own_windows_and_rates_count_acks() {
        let acks: Vec<u64> = (0..100).map(|ms| ms * 1_000).collect();
        let events = [
            Event {
                kind: Kind::Transfer,
                at_us: 10_000,
                answer_us: 500,
            },
            Event {
                kind: Kind::Kill,
                at_us: 50_000,
                answer_us: 9_000,
            },
        ];
        let lines = event_lines(&events, &acks);
        assert_eq!(lines[0]["kind"], "transfer");
        assert_eq!(lines[0]["unavailable_ms"], 1.0);
        assert_eq!(lines[1]["answer_ms"], 9.0);
        assert!((rate(&acks, 0, 1_000_000) - 100.0).abs() < 1e-9);
        assert!((rate(&acks, 0, 10_000) - 1_000.0).abs() < 1e-9);
        assert!(rate(&acks, 5, 5).abs() < 1e-9);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((percentile(&values, 50) - 50.0).abs() < 1e-9);
        assert!((percentile(&values, 99) - 99.0).abs() < 1e-9);
        assert!((percentile(&values, 100) - 100.0).abs() < 1e-9);
        assert!((percentile(&[3.0], 99) - 3.0).abs() < 1e-9);
        assert!(percentile(&[], 50).is_nan());
        assert_eq!(
            node_timeouts(&args("--heartbeat-interval-ms 20")),
            (20, alpo_node::Timeouts::lan().passive_timeout_ms_min)
        );
    }
}
