//! The scenarios S1–S8 of the protocol (docs/protocol.md names each), each a deterministic,
//! hand-driven test: several nodes, with the test choosing which messages arrive, who times out
//! first, when disks sync, and who crashes.

// The helpers below are test code too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use alpo_core::testkit::{Cluster, is_append};
use alpo_core::{
    Config, Entry, EntryKind, HardState, LogIndex, Message, MessageBody, NodeId, ProposeError,
    Role, Term,
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
