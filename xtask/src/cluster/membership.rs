//! Issue 12: the `membership` nemesis's operations ([`MemberOp`]) against the running cluster,
//! through the real client API (`Client::transfer_leader`) and real signals (SIGTERM).
//!
//! - A transfer asks any node to move the leadership (to a named node, or to the best voter);
//!   a refusal (the target is the leader itself, is down, or another change is in progress) or
//!   an abort (rule T5) is logged, not judged: the checks judge what the cluster did meanwhile.
//! - A rolling restart, for each node that is up, in index order: SIGTERM, wait for it to exit
//!   (a leader hands over first, rule T1), start it again with the same config and data, and
//!   wait until it has applied the commit index the cluster had when it came back. A node that
//!   does not exit within [`STOP_WAIT`] of its SIGTERM is a violation (then killed), and so is
//!   one that exits with a failure status.
//! - A replacement removes a node (the leader hands over first, rule M9), stops it, moves its
//!   data directory aside (its traces are still replayed), adds it back under the next unused
//!   id as a learner at the same addresses (`Client::add_member`), starts it with `--join`
//!   (an empty data directory: it learns everything from the leader, by install-snapshot when
//!   the log is compacted), waits until it has caught up and promotes it (rule M8). Once the
//!   removal is done, a failed add or promotion is a violation. Links to a re-added member go
//!   directly to its peer port, not through the proxies: its address is replicated, one for
//!   every node, while the proxies are one per directed link.
//!
//! Invariant: every operation leaves each node it touched running, so the membership and the
//! processes are as the operation found them.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Result;

use alpo_core::{NodeId, Role};
use alpo_node::client_protocol::NodeStatus;
use alpo_node::member_protocol::MemberChange;
use xtask::nemesis::{self, MemberOp, NodeIndex};

use super::Cluster;
use super::workload;

/// How long a node may take to stop after SIGTERM (a leader transfers first: at most two
/// election cycles, then it exits).
const STOP_WAIT: Duration = Duration::from_secs(20);
/// How long a restarted node may take to answer and catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(20);
/// How long a membership change may be retried.
const CHANGE_WAIT: Duration = Duration::from_secs(20);

/// Carries out `op`; returns what was done, for the nemesis log. Violations go to
/// `cluster.crashed`.
pub(super) fn run(
    cluster: &mut Cluster,
    op: MemberOp,
    leader: Option<NodeIndex>,
) -> Result<String> {
    match op {
        MemberOp::TransferLeader(target) => Ok(transfer(cluster, target)),
        MemberOp::RollingRestart => rolling_restart(cluster),
        MemberOp::Replace(target) => {
            if cluster.tls {
                // The run's certificates name the ids it started with.
                return Ok(format!("{op}: skipped under --tls"));
            }
            let down = cluster.nodes.down();
            match nemesis::resolve_target(target, leader, &down) {
                Some(node) if !down[node.0] => replace(cluster, node.0),
                _ => Ok(format!("{op}: every node is down, skipped")),
            }
        }
    }
}

/// Removes node `index`, stops it, moves its data aside and brings it back as a new member
/// under the next unused id (module doc). A step the cluster refuses is a violation once the
/// removal is done: the operation must leave as many voters as it found.
fn replace(cluster: &mut Cluster, index: usize) -> Result<String> {
    let started = Instant::now();
    let old_id = cluster.nodes.specs()[index].id;
    let mut client = admin_client(cluster)?;
    let mut log = format!("replace n{index} (id {old_id}):");
    if let Err(error) = client.change_members(MemberChange::Remove(NodeId(old_id))) {
        // "Retry": it may or may not have taken effect; the members say.
        let still = client
            .members()
            .map(|members| members.members.iter().any(|m| m.id.0 == old_id));
        if !matches!(still, Ok(false)) {
            return Ok(format!("{log} remove not done ({error})"));
        }
    }
    let _ = write!(log, " removed at {} ms;", started.elapsed().as_millis());
    match cluster.nodes.terminate(index, STOP_WAIT)? {
        Some(_) => {}
        None => cluster.crashed.push(format!(
            "removed node n{index} (id {old_id}) did not stop within {STOP_WAIT:?} of SIGTERM"
        )),
    }
    let new_id = cluster.next_id;
    cluster.next_id += 1;
    cluster.nodes.renumber(
        index,
        new_id,
        &super::process::data_dir(&cluster.dir, index),
    )?;
    let spec = cluster.nodes.specs()[index].clone();
    let added = retry(|| client.add_member(NodeId(new_id), spec.peer_addr, spec.client_addr, true));
    if let Err(error) = added {
        cluster.crashed.push(format!(
            "replace n{index}: adding id {new_id} back failed: {error}"
        ));
        return Ok(format!("{log} add {new_id} failed ({error})"));
    }
    let _ = write!(
        log,
        " added as id {new_id} at {} ms;",
        started.elapsed().as_millis()
    );
    let others: Vec<SocketAddr> = cluster
        .endpoints
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, endpoint)| *endpoint)
        .collect();
    cluster.nodes.start_joining(index, &others)?;
    match wait_caught_up(cluster, index) {
        Some(took) => {
            let _ = write!(log, " caught up {} ms after its start;", took.as_millis());
        }
        None => {
            let _ = write!(log, " not caught up within {CATCH_UP_WAIT:?};");
        }
    }
    match retry(|| client.change_members(MemberChange::Promote(NodeId(new_id)))) {
        Ok(_) => {
            let _ = write!(log, " promoted at {} ms", started.elapsed().as_millis());
        }
        Err(error) => {
            cluster.crashed.push(format!(
                "replace n{index}: promoting id {new_id} failed: {error}"
            ));
            let _ = write!(log, " promotion failed ({error})");
        }
    }
    Ok(log)
}

/// Calls `step` until it succeeds or [`CHANGE_WAIT`] has passed (a change refused for now, a
/// learner not caught up yet, a leader being elected); returns the last result.
fn retry<T>(mut step: impl FnMut() -> Result<T, alpo_node::Error>) -> Result<T, alpo_node::Error> {
    let started = Instant::now();
    loop {
        let result = step();
        if result.is_ok() || CHANGE_WAIT < started.elapsed() {
            return result;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The options of the nemesis's own client: patient enough for a change, short attempts.
fn admin_client(cluster: &Cluster) -> Result<alpo_node::Client> {
    let mut options = workload::client_options();
    options.attempt_timeout = Duration::from_millis(500);
    options.request_timeout = Duration::from_secs(5);
    Ok(workload::new_client(cluster.endpoints.clone(), options)?)
}

fn transfer(cluster: &Cluster, target: Option<NodeIndex>) -> String {
    let target_id = target.map(|node| NodeId(cluster.nodes.specs()[node.0].id));
    let started = Instant::now();
    let result = admin_client(cluster)
        .map_err(|error| error.to_string())
        .and_then(|mut client| {
            client
                .transfer_leader(target_id)
                .map_err(|error| error.to_string())
        });
    let took = started.elapsed().as_millis();
    let to = target.map_or_else(
        || "the best voter".to_owned(),
        |node| format!("n{}", node.0),
    );
    match result {
        Ok(leader) => {
            let index = index_of(cluster, leader).map_or("?".to_owned(), |i| format!("n{i}"));
            format!("transfer leader to {to}: {index} leads now ({took} ms)")
        }
        Err(error) => format!("transfer leader to {to}: not done ({error}; {took} ms)"),
    }
}

fn index_of(cluster: &Cluster, id: NodeId) -> Option<usize> {
    cluster
        .nodes
        .specs()
        .iter()
        .position(|spec| spec.id == id.0)
}

fn rolling_restart(cluster: &mut Cluster) -> Result<String> {
    let mut log = String::from("rolling restart:");
    let term_before = highest_term(cluster);
    for (index, down) in cluster.nodes.down().into_iter().enumerate() {
        if down {
            let _ = write!(log, " n{index} down, skipped;");
            continue;
        }
        let leading = status_of(cluster.endpoints[index]).is_some_and(|s| s.role == Role::Leader);
        let started = Instant::now();
        match cluster.nodes.terminate(index, STOP_WAIT)? {
            Some(status) if status.contains("exit status: 0") => {}
            Some(status) => cluster.crashed.push(format!(
                "node n{index} stopped by SIGTERM (rolling restart) exited with {status}"
            )),
            None => cluster.crashed.push(format!(
                "node n{index} did not stop within {STOP_WAIT:?} of SIGTERM (rolling restart)"
            )),
        }
        let stopped_ms = started.elapsed().as_millis();
        cluster.nodes.start(index)?;
        let caught_up = wait_caught_up(cluster, index);
        let _ = write!(
            log,
            " n{index}{} stopped in {stopped_ms} ms, {};",
            if leading { " (leader)" } else { "" },
            match caught_up {
                Some(at) => format!("caught up {} ms after", at.as_millis()),
                None => format!("not caught up within {CATCH_UP_WAIT:?}"),
            }
        );
    }
    // Each stop of the leader costs one term (its transfer's); an election timeout would show
    // as more. Reported, not judged (real clocks on a shared machine).
    let _ = write!(
        log,
        " terms {} -> {}",
        term_before.map_or("?".to_owned(), |t| t.to_string()),
        highest_term(cluster).map_or("?".to_owned(), |t| t.to_string())
    );
    Ok(log)
}

/// The highest term any node answering its status reports.
fn highest_term(cluster: &Cluster) -> Option<u64> {
    cluster
        .endpoints
        .iter()
        .filter_map(|endpoint| status_of(*endpoint))
        .map(|status| status.term.0)
        .max()
}

/// Waits until node `index` answers and has applied the highest commit index a leader reports
/// once it answers; `None` on timeout (logged: a later check judges convergence).
fn wait_caught_up(cluster: &Cluster, index: usize) -> Option<Duration> {
    let started = Instant::now();
    let mut target = None;
    while started.elapsed() < CATCH_UP_WAIT {
        let own = status_of(cluster.endpoints[index]);
        if target.is_none() && own.is_some() {
            target = cluster
                .endpoints
                .iter()
                .filter_map(|endpoint| status_of(*endpoint))
                .filter(|status| status.role == Role::Leader)
                .map(|status| status.commit_index.0)
                .max();
        }
        if let (Some(target), Some(own)) = (target, own)
            && target <= own.applied_index.0
        {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// The status of the node at `endpoint`, from a fresh connection, if it answers soon.
fn status_of(endpoint: SocketAddr) -> Option<NodeStatus> {
    let mut options = workload::client_options();
    options.attempt_timeout = Duration::from_millis(300);
    options.request_timeout = Duration::from_millis(600);
    workload::new_client(vec![endpoint], options)
        .ok()?
        .status_of(endpoint)
        .ok()
}
