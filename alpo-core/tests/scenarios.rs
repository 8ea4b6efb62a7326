//! The scenarios S1–S10 of the protocol (docs/protocol.md names each), each a deterministic,
//! hand-driven test: several nodes, with the test choosing which messages arrive, who times out
//! first, when disks sync, and who crashes.

// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use alpo_core::testkit::{Cluster, is_append};
use alpo_core::{
    Config, Entry, EntryKind, HardState, LogIndex, LogPosition, Message, MessageBody, NodeId,
    ProposeError, Role, SnapshotMeta, Term,
};
use bytes::Bytes;

const MS: Duration = Duration::from_millis(1);

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        payload: Bytes::from(format!("{index}.{term}")),
    }
}

/// Replaces server `id`'s disk: term, vote and log (all synced). The server must be down.
fn set_disk(cluster: &mut Cluster, id: u64, term: u64, voted_for: Option<u64>, terms: &[u64]) {
    let disk = cluster.disks.get_mut(&NodeId(id)).unwrap();
    disk.hard_state = HardState {
        current_term: Term(term),
        voted_for: voted_for.map(NodeId),
    };
    disk.log = terms
        .iter()
        .enumerate()
        .map(|(i, t)| entry(i as u64 + 1, *t))
        .collect();
    disk.synced = terms.len();
}

fn touches(message: &Message, id: u64) -> bool {
    message.from == NodeId(id) || message.to == NodeId(id)
}

fn role(cluster: &Cluster, id: u64) -> Role {
    cluster.node(id).status().role
}

/// Figure 8 of the Raft paper, in ALPO's words: S1 led term 2 and gave index 2 to S2 only; S5
/// led term 3 and wrote its own index 2; now S1 returns and wins term 4.
fn s1_setup() -> Cluster {
    let mut cluster = Cluster::with_config(5, |id, members| {
        let mut config = Config::lan(id, members, 1);
        // One entry per Append, so S1 can place its term-2 entry without its term-4 no-op.
        config.append_entry_count_max = 1;
        config
    });
    for id in 1..=5 {
        cluster.crash(id);
    }
    set_disk(&mut cluster, 1, 2, Some(1), &[1, 2]);
    set_disk(&mut cluster, 2, 2, Some(1), &[1, 2]);
    set_disk(&mut cluster, 3, 3, Some(5), &[1]);
    set_disk(&mut cluster, 4, 3, Some(5), &[1]);
    set_disk(&mut cluster, 5, 3, Some(5), &[1, 3]);
    for id in 1..=4 {
        cluster.start(NodeId(id));
    }
    // S1 times out first; its first pre-vote asks for term 3, which S3 and S4 voted in: they
    // answer with their term, S1 catches up and asks again for term 4.
    for _ in 0..3 {
        cluster.timeout(1);
        cluster.deliver_where(|m| !is_append(m));
        if role(&cluster, 1) == Role::Leader {
            break;
        }
    }
    assert_eq!(role(&cluster, 1), Role::Leader);
    assert_eq!(cluster.node(1).status().term, Term(4));
    // The first Appends were dropped above; the next heartbeat interval sends the probes again.
    assert!(cluster.in_flight.is_empty());
    cluster.advance(50 * MS);
    cluster
}

#[test]
fn s1_an_older_term_entry_on_a_majority_is_not_committed() {
    let mut cluster = s1_setup();
    // S1 copies its term-2 entry to S3, one entry per Append; the no-op (index 3) goes nowhere
    // but in S1's first probe, which S3 rejects (it lacks index 2).
    let noops_let_through = std::cell::Cell::new(0);
    cluster.deliver_where(|m| {
        let to_s3 = m.to == NodeId(3) || m.from == NodeId(3);
        let carries_noop = matches!(&m.body, MessageBody::Append(a)
            if a.entries.iter().any(|e| e.index == LogIndex(3)));
        if to_s3 && carries_noop && noops_let_through.get() == 0 {
            noops_let_through.set(1);
            return true;
        }
        to_s3 && !carries_noop
    });
    assert_eq!(cluster.node(3).entry(LogIndex(2)).unwrap().term, Term(2));
    // Index 2 is on S1, S2 and S3 — a majority — yet not committed (R5).
    assert_eq!(cluster.commit_index(1), LogIndex(0));
    // Rightly so: S5 can still win term 5 (votes of S3, S4 and its own) and overwrite it.
    cluster.crash(1);
    cluster.start(NodeId(5));
    for _ in 0..5 {
        cluster.timeout(5);
        cluster.deliver_all();
        if role(&cluster, 5) == Role::Leader {
            break;
        }
    }
    assert_eq!(role(&cluster, 5), Role::Leader);
    cluster.advance(60 * MS);
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    for id in 2..=5 {
        assert_eq!(
            cluster.node(id).entry(LogIndex(2)).unwrap().term,
            Term(3),
            "node {id}"
        );
        assert!(cluster.commit_index(id) >= LogIndex(2));
    }
}

#[test]
fn s1_an_entry_of_the_current_term_commits_the_older_one() {
    let mut cluster = s1_setup();
    cluster.deliver_where(|m| [2, 3].iter().any(|id| touches(m, *id)));
    cluster.advance(60 * MS);
    cluster.deliver_where(|m| [2, 3].iter().any(|id| touches(m, *id)));
    // The no-op of term 4 is on S1, S2, S3: it commits, and index 2 (term 2) with it.
    assert_eq!(cluster.commit_index(1), LogIndex(3));
    // Now S5 cannot win: S3's log (last term 4) is more complete than S5's (last term 3).
    cluster.crash(1);
    cluster.start(NodeId(5));
    for _ in 0..5 {
        cluster.timeout(5);
        cluster.deliver_where(|m| !touches(m, 2));
    }
    assert_ne!(role(&cluster, 5), Role::Leader);
    assert_eq!(cluster.node(3).entry(LogIndex(2)).unwrap().term, Term(2));
}

#[test]
fn s2_split_vote_converges_within_two_cycles() {
    let mut cluster = Cluster::with_config(5, |id, members| {
        let mut config = Config::lan(id, members, 2);
        config.pre_vote = false;
        config
    });
    // Everyone times out at the same instant: five candidates in term 1.
    let start = cluster.now + 600 * MS;
    cluster.now = start;
    for id in 1..=5 {
        cluster.nodes.get_mut(&NodeId(id)).unwrap().tick(start);
        cluster.perform(NodeId(id));
    }
    cluster.deliver_all();
    assert!(
        cluster.leader().is_none(),
        "a split vote: each voted for itself"
    );
    // Deferral: everyone deferred to the highest rank (equal logs: the highest id).
    for id in 1..=4 {
        assert_eq!(role(&cluster, id), Role::Passive, "node {id} deferred");
    }
    let leader = cluster.elect(Duration::from_secs(2)).unwrap();
    assert_eq!(leader, NodeId(5));
    assert_eq!(cluster.node(5).status().term, Term(2));
    let elapsed = cluster.now.saturating_duration_since(start);
    assert!(
        elapsed < 2 * 300 * MS,
        "converged in {elapsed:?}, two cycles at most"
    );
}

#[test]
fn s3_a_stale_leader_in_a_minority_commits_nothing() {
    let mut cluster = Cluster::new(5, 3);
    let old = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    let buddy = if old == NodeId(1) { 2 } else { 1 };
    let minority = [old.0, buddy];
    let cut = move |m: &Message| minority.contains(&m.from.0) != minority.contains(&m.to.0);
    let old_term = cluster.node(old.0).status().term;
    let commit_before = cluster.commit_index(old.0);
    cluster.propose(old, "lost-1").unwrap();
    cluster.propose(old, "lost-2").unwrap();
    let mut new = None;
    for _ in 0..300 {
        cluster.advance(10 * MS);
        cluster.deliver_where(|m| !cut(m));
        new = cluster
            .leader()
            .filter(|leader| !minority.contains(&leader.0));
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the majority side elects a leader");
    assert_eq!(
        cluster.commit_index(old.0),
        commit_before,
        "the stale leader committed nothing"
    );
    cluster.propose(new, "kept").unwrap();
    // Heal.
    for _ in 0..20 {
        cluster.advance(10 * MS);
        cluster.deliver_all();
    }
    assert_ne!(role(&cluster, old.0), Role::Leader);
    assert!(cluster.node(old.0).status().term > old_term);
    for id in 1..=5 {
        assert_eq!(cluster.applied_payloads(id), vec!["kept"], "node {id}");
    }
}

#[test]
fn s4_duplicated_and_reordered_appends_never_truncate_newer_entries() {
    let mut cluster = Cluster::new(3, 4);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    let follower = if leader == NodeId(1) { 2 } else { 1 };
    let node = cluster.nodes.get_mut(&leader).unwrap();
    node.propose(cluster.now, Bytes::from_static(b"a")).unwrap();
    node.propose(cluster.now, Bytes::from_static(b"b")).unwrap();
    cluster.perform(leader);
    let to_follower: Vec<Message> = cluster
        .in_flight
        .iter()
        .filter(|m| m.to == NodeId(follower) && is_append(m))
        .cloned()
        .collect();
    assert_eq!(to_follower.len(), 1, "both proposals in one batch");
    // A stale copy of an Append carrying only "a" (as an older batch would have).
    let mut stale = to_follower[0].clone();
    if let MessageBody::Append(append) = &mut stale.body {
        append.entries.truncate(1);
    }
    cluster.deliver_all();
    let last = cluster.node(follower).status().last_index;
    // The late, shorter Append and a duplicate of the full one arrive after the fact.
    cluster.in_flight.push(stale);
    cluster.in_flight.push(to_follower[0].clone());
    cluster.deliver_all();
    assert_eq!(
        cluster.node(follower).status().last_index,
        last,
        "nothing was truncated"
    );
    cluster.advance(60 * MS);
    cluster.deliver_all();
    assert_eq!(cluster.applied_payloads(follower), vec!["a", "b"]);
}

/// S5: a crash that loses unsynced writes, of the follower or the leader, after each step of
/// one replication round; committed entries always survive, and the cluster recovers.
#[test]
fn s5_crashes_losing_unsynced_writes_at_every_step() {
    for victim_is_leader in [false, true] {
        for crash_step in 0..6 {
            s5_run(victim_is_leader, crash_step);
        }
    }
}

type Step = Box<dyn FnMut(&mut Cluster)>;

fn s5_run(victim_is_leader: bool, crash_step: usize) {
    let mut cluster = Cluster::new(3, 5);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    cluster.propose(leader, "before").unwrap();
    cluster.deliver_all();
    cluster.advance(60 * MS);
    cluster.deliver_all();
    cluster.auto_sync = false;
    let follower = if leader == NodeId(1) { 2 } else { 1 };
    let victim = if victim_is_leader { leader.0 } else { follower };
    let mut steps: Vec<Step> = vec![
        Box::new(move |c| {
            let _ = c.propose(leader, "during");
        }),
        Box::new(move |c| c.deliver_where(|m| !is_append(m) || m.to == NodeId(follower))),
        Box::new(move |c| c.sync(follower)),
        Box::new(|c| c.deliver_all()),
        Box::new(move |c| c.sync(leader.0)),
        Box::new(|c| c.deliver_all()),
    ];
    let mut committed: Vec<Entry> = Vec::new();
    for (step, action) in steps.iter_mut().enumerate() {
        action(&mut cluster);
        if step == crash_step {
            let knows = (1..=3).max_by_key(|id| cluster.commit_index(*id)).unwrap();
            let commit = cluster.commit_index(knows);
            committed = (1..=commit.0)
                .map(|i| cluster.node(knows).entry(LogIndex(i)).unwrap().clone())
                .collect();
            cluster.crash(victim);
            break;
        }
    }
    cluster.auto_sync = true;
    for id in 1..=3 {
        cluster.sync(id);
    }
    cluster.advance(700 * MS);
    cluster.start(NodeId(victim));
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.propose(leader, "after").unwrap();
    for _ in 0..10 {
        cluster.advance(60 * MS);
        cluster.deliver_all();
    }
    let what = format!("victim leader={victim_is_leader} step={crash_step}");
    for id in 1..=3 {
        for entry in &committed {
            assert_eq!(
                cluster.node(id).entry(entry.index),
                Some(entry),
                "{what}: node {id}"
            );
        }
        let applied = cluster.applied_payloads(id);
        assert_eq!(
            applied.last().map(String::as_str),
            Some("after"),
            "{what}: node {id}"
        );
    }
}

#[test]
fn s6_a_returning_server_does_not_depose_a_healthy_leader() {
    let mut cluster = Cluster::new(3, 6);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    let loner = if leader == NodeId(3) { 1 } else { 3 };
    let term = cluster.node(leader.0).status().term;
    // The loner is cut off for ten seconds: its pre-votes fail, its term does not climb.
    for _ in 0..1000 {
        cluster.advance(10 * MS);
        cluster.deliver_where(|m| !touches(m, loner));
    }
    assert_eq!(cluster.node(loner).status().term, term);
    cluster.propose(leader, "while-away").unwrap();
    for _ in 0..20 {
        cluster.advance(10 * MS);
        cluster.deliver_all();
    }
    assert_eq!(cluster.leader(), Some(leader));
    assert_eq!(
        cluster.node(leader.0).status().term,
        term,
        "no election happened"
    );
    assert_eq!(cluster.applied_payloads(loner), vec!["while-away"]);
}

#[test]
fn s7_the_highest_ranked_candidate_crashes_after_the_others_deferred() {
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = Config::lan(id, members, 7);
        config.pre_vote = false;
        config
    });
    let start = cluster.now + 600 * MS;
    cluster.now = start;
    for id in 1..=3 {
        cluster.nodes.get_mut(&NodeId(id)).unwrap().tick(start);
        cluster.perform(NodeId(id));
    }
    // Only node 3's requests arrive: 1 and 2 defer to it; then it crashes.
    cluster.deliver_where(|m| m.from == NodeId(3));
    assert_eq!(role(&cluster, 1), Role::Passive);
    assert_eq!(role(&cluster, 2), Role::Passive);
    cluster.crash(3);
    let leader = cluster.elect(Duration::from_secs(3)).unwrap();
    assert_ne!(leader, NodeId(3));
    let elapsed = cluster.now.saturating_duration_since(start);
    // Within the deferral period (at most P max) plus an election.
    assert!(
        elapsed < 600 * MS + 2 * 300 * MS + 600 * MS,
        "elected after {elapsed:?}"
    );
}

#[test]
fn s8_a_paused_leader_resumes_and_commits_nothing() {
    let mut cluster = Cluster::new(3, 8);
    let old = cluster.elect(Duration::from_secs(5)).unwrap();
    cluster.deliver_all();
    // Pause: the old leader is taken out of the cluster, state intact.
    let mut paused = cluster.nodes.remove(&old).unwrap();
    let mut new = None;
    for _ in 0..300 {
        cluster.advance(10 * MS);
        cluster.deliver_where(|m| m.to != old);
        new = cluster.leader();
        if new.is_some() {
            break;
        }
    }
    let new = new.expect("the others elect a new leader");
    cluster.propose(new, "new").unwrap();
    cluster.deliver_where(|m| m.to != old);
    // Resume: the old leader still thinks it leads and accepts a proposal at once.
    assert_eq!(paused.status().role, Role::Leader);
    let proposal = paused.propose(cluster.now, Bytes::from_static(b"old"));
    assert!(proposal.is_ok() || matches!(proposal, Err(ProposeError::NotLeader { .. })));
    cluster.nodes.insert(old, paused);
    cluster.perform(old);
    for _ in 0..20 {
        cluster.advance(10 * MS);
        cluster.deliver_all();
    }
    assert_ne!(role(&cluster, old.0), Role::Leader);
    for id in 1..=3 {
        assert_eq!(cluster.applied_payloads(id), vec!["new"], "node {id}");
    }
}

/// The log entries 1..=40 of term 1 and 41..=`last` of `term`.
fn history(last: u64, term: u64) -> Vec<Entry> {
    (1..=last)
        .map(|i| entry(i, if i <= 40 { 1 } else { term }))
        .collect()
}

/// S9: leader S1 holds a snapshot at (100, 3) and no log; S3 holds 1..40 and a conflicting
/// 41..45 of term 2. The transfer takes eight chunks: chunk 3 is lost, chunk 5 duplicated, and
/// S3 crashes after chunk 6. S3 resumes, discards its whole log, applies nothing below 100 (its
/// state is S1's at 100), then takes the entries after 100 by Appends.
#[test]
fn s9_snapshot_install_over_a_conflicting_log() {
    let committed = history(100, 3);
    let (mut cluster, chunk_bytes) = s9_setup(&committed);
    cluster.timeout(1);
    let (lost, duplicated, crashed) = s9_transfer(&mut cluster, chunk_bytes);
    assert!(lost && duplicated && crashed);
    let status = cluster.node(3).status();
    assert!(status.applied_index >= LogIndex(100), "{status:?}");
    assert!(status.commit_index >= LogIndex(100), "{status:?}");
    assert_eq!(cluster.applied[&NodeId(3)][..100], committed[..]);
    let disk = &cluster.disks[&NodeId(3)];
    assert!(
        disk.log.iter().all(|e| e.term != Term(2)),
        "41..45 of term 2 are gone"
    );
    assert!(disk.log.iter().all(|e| e.index > LogIndex(100)));
    let leader = cluster.leader().unwrap();
    cluster.propose(leader, "after").unwrap();
    for _ in 0..5 {
        cluster.advance(60 * MS);
        cluster.deliver_all();
    }
    assert_eq!(cluster.applied_payloads(3).last().unwrap(), "after");
    assert_eq!(cluster.applied[&NodeId(3)], cluster.applied[&leader]);
}

/// S9's disks: S1 a snapshot at (100, 3) and no log, S2 the whole log, S3 a conflicting log;
/// chunks of an eighth of the snapshot.
fn s9_setup(committed: &[Entry]) -> (Cluster, u64) {
    let image = alpo_core::testkit::encode_image(committed);
    let chunk_bytes = (image.len() as u64).div_ceil(8);
    let mut cluster = Cluster::with_config(3, |id, members| {
        let mut config = Config::lan(id, members, 9);
        config.snapshot_chunk_bytes = chunk_bytes;
        config.snapshot_chunks_inflight_max = 4;
        config
    });
    let snapshot = SnapshotMeta {
        last: LogPosition {
            index: LogIndex(100),
            term: Term(3),
        },
        size: image.len() as u64,
        configuration: alpo_core::Configuration::new(&[NodeId(1), NodeId(2), NodeId(3)], &[])
            .unwrap(),
    };
    for id in 1..=3 {
        cluster.crash(id);
    }
    set_disk(&mut cluster, 1, 3, None, &[]);
    cluster.disks.get_mut(&NodeId(1)).unwrap().snapshot = Some((snapshot, image));
    let s2: Vec<u64> = committed.iter().map(|e| e.term.0).collect();
    set_disk(&mut cluster, 2, 3, None, &s2);
    let mut s3 = vec![1; 40];
    s3.extend([2; 5]);
    set_disk(&mut cluster, 3, 2, None, &s3);
    for id in 1..=3 {
        cluster.start(NodeId(id));
    }
    (cluster, chunk_bytes)
}

/// Delivers everything, losing chunk 3 to S3 once, duplicating chunk 5 once and crashing S3
/// (and restarting it) after chunk 6, until S3 applied 100. Returns whether each fault happened.
fn s9_transfer(cluster: &mut Cluster, chunk_bytes: u64) -> (bool, bool, bool) {
    let (mut lost, mut duplicated, mut crashed) = (false, false, false);
    let mut commit_seen = LogIndex(0);
    for _ in 0..200 {
        while !cluster.in_flight.is_empty() {
            let message = cluster.in_flight[0].clone();
            let chunk = match &message.body {
                MessageBody::InstallSnapshot(chunk) if message.to == NodeId(3) => {
                    Some(chunk.offset / chunk_bytes)
                }
                _ => None,
            };
            match chunk {
                Some(2) if !lost => {
                    lost = true;
                    cluster.in_flight.remove(0);
                }
                Some(4) if !duplicated => {
                    duplicated = true;
                    cluster.in_flight.insert(1, message);
                    cluster.deliver_at(0);
                }
                Some(5) if !crashed => {
                    crashed = true;
                    cluster.deliver_at(0);
                    cluster.crash(3);
                    commit_seen = LogIndex(0);
                    cluster.start(NodeId(3));
                }
                _ => cluster.deliver_at(0),
            }
            // No index decreases within an incarnation.
            let commit = cluster.commit_index(3);
            assert!(
                commit_seen <= commit,
                "S3's commit went from {commit_seen} to {commit}"
            );
            commit_seen = commit;
        }
        if cluster.node(3).status().applied_index >= LogIndex(100) {
            break;
        }
        cluster.advance(10 * MS);
    }
    (lost, duplicated, crashed)
}

/// Snapshots every 4 entries, one entry retained.
fn snapshot_cluster(seed: u64) -> Cluster {
    Cluster::with_config(3, move |id, members| {
        let mut config = Config::lan(id, members, seed);
        config.snapshot_interval_entries = Some(4);
        config.retain_entries = 1;
        config.snapshot_chunk_bytes = 32;
        config
    })
}

fn propose_and_settle(cluster: &mut Cluster, leader: NodeId, payloads: &[&'static str]) {
    for payload in payloads {
        cluster.propose(leader, payload).unwrap();
        cluster.deliver_all();
    }
    cluster.advance(60 * MS);
    cluster.deliver_all();
}

/// S10: a crash of the leader or a follower after each step of taking a snapshot (asked for,
/// durable and compacted) and of installing one (transfer under way, installed): after each
/// restart the snapshot and the log cover `1..=last` without a gap, applied starts at the
/// snapshot, no committed entry is lost, and a repeated install is a no-op.
#[test]
fn s10_crash_at_every_snapshot_step() {
    for victim_is_leader in [false, true] {
        for crash_step in 0..3 {
            s10_run(victim_is_leader, crash_step);
        }
    }
}

/// The follower `behind` misses entries past the compaction, restarts, and receives the first
/// chunk of a snapshot: a transfer is under way.
fn s10_transfer_under_way(cluster: &mut Cluster, behind: u64, what: &str) {
    cluster.crash(behind);
    let leader = cluster.leader().unwrap();
    propose_and_settle(cluster, leader, &["f", "g", "h", "i", "j"]);
    cluster.start(NodeId(behind));
    cluster.advance(60 * MS);
    for _ in 0..1_000 {
        let Some(message) = cluster.in_flight.first() else {
            break;
        };
        let chunk = matches!(message.body, MessageBody::InstallSnapshot(_));
        cluster.deliver_at(0);
        if chunk {
            break;
        }
    }
    assert!(
        cluster.outputs[&NodeId(behind)]
            .iter()
            .any(|o| matches!(o, alpo_core::Output::WriteSnapshotChunk { .. })),
        "{what}: no transfer under way"
    );
}

fn s10_run(victim_is_leader: bool, crash_step: usize) {
    let what = format!("victim leader={victim_is_leader} step={crash_step}");
    let mut cluster = snapshot_cluster(10);
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    let follower = if leader == NodeId(1) { 2 } else { 1 };
    let victim = if victim_is_leader { leader.0 } else { follower };
    cluster.hold_snapshots = crash_step == 0;
    propose_and_settle(&mut cluster, leader, &["a", "b", "c", "d", "e"]);
    if crash_step == 2 {
        let behind = if victim_is_leader { follower } else { victim };
        s10_transfer_under_way(&mut cluster, behind, &what);
    }
    let snapshot_before = cluster.snapshot_on_disk(victim);
    cluster.crash(victim);
    cluster.hold_snapshots = false;
    cluster.start(NodeId(victim));
    for id in 1..=3 {
        cluster.finish_snapshot(id);
    }
    // Applied starts at the newest durable snapshot; the log continues it without a gap.
    let disk = &cluster.disks[&NodeId(victim)];
    let snapshot_index = disk
        .snapshot
        .as_ref()
        .map_or(0, |(meta, _)| meta.last.index.0);
    assert_eq!(cluster.snapshot_on_disk(victim), snapshot_before, "{what}");
    assert_eq!(
        cluster.node(victim).status().applied_index,
        LogIndex(snapshot_index),
        "{what}"
    );
    if let Some(first) = disk.log.first() {
        assert!(first.index.0 <= snapshot_index + 1, "{what}: a gap");
    }
    let leader = cluster.elect(Duration::from_secs(5)).unwrap();
    propose_and_settle(&mut cluster, leader, &["k", "l", "m", "n"]);
    for _ in 0..5 {
        cluster.advance(60 * MS);
        cluster.deliver_all();
    }
    let expected = cluster.applied_payloads(leader.0);
    assert!(expected.ends_with(&["k".into(), "l".into(), "m".into(), "n".into()]));
    for id in 1..=3 {
        assert_eq!(cluster.applied_payloads(id), expected, "{what}: node {id}");
    }
    // A repeated install of a snapshot the victim already applied past is a no-op.
    if NodeId(victim) != leader {
        s10_repeated_install_is_a_no_op(&mut cluster, leader, victim, &what);
    }
}

fn s10_repeated_install_is_a_no_op(cluster: &mut Cluster, leader: NodeId, victim: u64, what: &str) {
    let meta = cluster.snapshot_on_disk(leader.0).unwrap();
    let term = cluster.node(victim).status().term;
    let chunk = MessageBody::InstallSnapshot(alpo_core::InstallSnapshot {
        snapshot: meta,
        offset: 0,
        data: Bytes::from_static(b"x"),
        last: meta.size == 1,
    });
    let message = Message {
        from: leader,
        to: NodeId(victim),
        term,
        incarnation: alpo_core::Incarnation(1),
        body: chunk,
    };
    let now = cluster.now;
    let node = cluster.nodes.get_mut(&NodeId(victim)).unwrap();
    node.on_message(now, message);
    let outputs = node.take_outputs();
    assert!(
        outputs
            .iter()
            .all(|o| matches!(o, alpo_core::Output::Send(_))),
        "{what}: {outputs:?}"
    );
}
