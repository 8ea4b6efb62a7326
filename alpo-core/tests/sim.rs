//! The simulator as `cargo test` runs it: 1,000 seeds, 200 more with messages held across
//! terms, replay of one seed, determinism, and proof that the checkers catch deliberately broken
//! engines.
//!
//! Replay a failing seed with
//! `ALPO_SEED=0x… cargo test -p alpo-core --test sim -- sim_replay --nocapture`.

use alpo_core::InjectedBug;
use alpo_core::sim::{FaultProfile, RunReport, SimOptions, SoakSummary, run_seed};

/// Seeds run by `sim_seeds`; the seeds are `SEED_BASE + i`.
const SEED_COUNT: u64 = 1_000;
const SEED_BASE: u64 = 0xA1B0_0000;

/// Seeds run by `sim_seeds_hold_across_terms`.
const HOLD_SEED_COUNT: u64 = 200;

/// Seeds within which an injected bug must be caught (the search stops at the first catch).
const BUG_SEED_COUNT_MAX: u64 = 2_000;

fn failures(reports: &[RunReport]) -> String {
    reports
        .iter()
        .filter(|r| !r.passed())
        .take(5)
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn sim_seeds() {
    let options = SimOptions::quick();
    let reports: Vec<RunReport> = (0..SEED_COUNT)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .collect();
    let mut summary = SoakSummary::default();
    reports.iter().for_each(|r| summary.add(r));
    eprintln!(
        "seeds={} violations={} messages={} committed={} reads={}",
        summary.seed_count,
        summary.violation_count,
        summary.message_count,
        summary.committed_count,
        summary.read_served_count
    );
    eprintln!("violations by checker: {}", summary.violations_line());
    for line in summary.election_lines() {
        eprintln!("{line}");
    }
    assert_eq!(summary.violation_count, 0, "\n{}", failures(&reports));
    // The runs must exercise the protocol, not idle: proposals commit and leaders fail over.
    assert!(summary.committed_count > SEED_COUNT * 10);
    // Reads are part of every seed's load, and are served (property 14 checks each one).
    assert!(summary.read_served_count > SEED_COUNT * 10);
    let sampled = summary.with_deferral.len() + summary.without_deferral.len();
    assert_eq!(u64::try_from(sampled).unwrap(), SEED_COUNT);
}

#[test]
fn sim_replay() {
    // The replay command sets ALPO_SEED; without it, replay a fixed seed so the test still runs.
    #[allow(clippy::disallowed_methods)] // Tests may read the environment; the library may not.
    let seed = std::env::var("ALPO_SEED").ok();
    let seed = match seed.as_deref() {
        None => SEED_BASE,
        Some(text) => parse_seed(text).unwrap_or_else(|| panic!("ALPO_SEED={text:?} is not a u64")),
    };
    // ALPO_SIM_LOG=1 prints the run's event log (sends, starts, crashes, nemesis actions).
    #[allow(clippy::disallowed_methods)] // Tests may read the environment; the library may not.
    let event_log = std::env::var("ALPO_SIM_LOG").is_ok();
    #[allow(clippy::disallowed_methods)] // Tests may read the environment; the library may not.
    let membership = std::env::var("ALPO_SIM_MEMBERSHIP").is_ok();
    let options = SimOptions {
        event_log,
        membership,
        ..SimOptions::quick()
    };
    let report = run_seed(seed, &options);
    for line in &report.event_log {
        eprintln!("{line}");
    }
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
}

fn parse_seed(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[test]
fn same_seed_same_trace() {
    for seed in [1, 2, SEED_BASE + 7] {
        let first = run_seed(seed, &SimOptions::quick());
        let second = run_seed(seed, &SimOptions::quick());
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed:#x}");
        assert_eq!(first, second);
        assert!(first.step_count > 300, "seed {seed:#x} barely ran: {first}");
        assert!(
            first.committed_count > 0,
            "seed {seed:#x} committed nothing: {first}"
        );
    }
    let a = run_seed(1, &SimOptions::quick());
    let b = run_seed(2, &SimOptions::quick());
    assert_ne!(a.trace_hash, b.trace_hash);
}

/// Runs seeds with `bug` injected (`options` as given, leader-churn faults unless they name a
/// profile) until a safety checker reports it; returns that report. Runs that end in an engine
/// assertion or a liveness failure are skipped.
fn first_caught(bug: InjectedBug, options: SimOptions) -> Option<RunReport> {
    let options = SimOptions {
        injected_bug: Some(bug),
        profile: options.profile.or(Some(FaultProfile::LeaderChurn)),
        ..options
    };
    (0..BUG_SEED_COUNT_MAX)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .find(|r| {
            // A run stopped by the engine's own assertions, or one that stalled, proves nothing
            // about the checkers: keep looking.
            let checker = r.violation.as_ref().map(|(v, _)| v.checker);
            checker.is_some_and(|c| c != "liveness" && c != "panic")
        })
}

#[test]
fn checkers_catch_two_votes_in_one_term() {
    let report = first_caught(InjectedBug::GrantTwoVotesPerTerm, SimOptions::quick())
        .expect("no checker caught GrantTwoVotesPerTerm within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    // The vote ledger (property 15) sees the second vote itself, before any second leader.
    assert!(
        ["vote_ledger", "election_safety"].contains(&violation.checker),
        "{report}"
    );
}

/// Seeds run by `sim_disk_fault_seeds`.
const DISK_FAULT_SEED_COUNT: u64 = 200;

#[test]
fn sim_disk_fault_seeds() {
    // The storage-fault profile (issue 13, rules F8, F9): hard-state copies rot at crashes and
    // at rest; servers restart from one copy or, with none, fenced below their term ceiling.
    // Every checker holds, the vote ledger (property 15) included, and liveness too.
    let options = SimOptions {
        disk_faults: true,
        ..SimOptions::quick()
    };
    let reports: Vec<RunReport> = (0..DISK_FAULT_SEED_COUNT)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .collect();
    let mut summary = SoakSummary::default();
    reports.iter().for_each(|r| summary.add(r));
    eprintln!(
        "disk-fault seeds={} violations={} committed={}",
        summary.seed_count, summary.violation_count, summary.committed_count
    );
    eprintln!("violations by checker: {}", summary.violations_line());
    assert_eq!(summary.violation_count, 0, "\n{}", failures(&reports));
    assert!(summary.committed_count > DISK_FAULT_SEED_COUNT * 10);
}

#[test]
fn checkers_catch_a_vote_below_the_fence() {
    // Rule F9 off: a server that lost its hard state votes and stands as if fresh. It may have
    // voted in that term before the loss; the vote ledger (or election safety) must see the
    // second vote.
    let options = SimOptions {
        disk_faults: true,
        ..SimOptions::quick()
    };
    let report = first_caught(InjectedBug::IgnoreVoteFence, options)
        .expect("no checker caught IgnoreVoteFence within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    assert!(
        ["vote_ledger", "election_safety"].contains(&violation.checker),
        "{report}"
    );
}

#[test]
fn checkers_catch_commit_of_an_older_term_by_count() {
    // Scenario S1 needs three nodes' worth of diverging logs and unlucky crashes: leader churn
    // on three nodes finds it in about one seed in a hundred.
    let options = SimOptions {
        node_count: Some(3),
        fault_phase_ms: 10_000,
        ..SimOptions::quick()
    };
    let report = first_caught(InjectedBug::CommitOlderTermByCount, options)
        .expect("no checker caught CommitOlderTermByCount within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    let expected = ["leader_completeness", "durability", "state_machine_safety"];
    assert!(expected.contains(&violation.checker), "{report}");
}

#[test]
fn checkers_catch_a_counted_stale_append_reply() {
    // Rule E6's reply branch: a leader that counts an acknowledgement of an ended term. It
    // harms only when the acknowledged index holds another entry by the time the leader, elected
    // again, hears it: the network must hold the reply across terms (HoldAcrossTerms). The
    // other profiles do not find it in thousands of seeds.
    let options = SimOptions {
        node_count: Some(3),
        fault_phase_ms: 10_000,
        profile: Some(FaultProfile::HoldAcrossTerms),
        ..SimOptions::quick()
    };
    let report = first_caught(InjectedBug::CountStaleAppendReply, options)
        .expect("no checker caught CountStaleAppendReply within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    let expected = ["leader_completeness", "durability", "state_machine_safety"];
    assert!(expected.contains(&violation.checker), "{report}");
}

#[test]
fn checkers_catch_a_read_served_without_a_round() {
    // Rule Q1 (c): a leader that serves reads at its commit index without confirming that it
    // still leads serves stale reads once deposed (cut off with a minority while a new leader
    // commits). The standard profile's partitions find it.
    let options = SimOptions {
        profile: Some(FaultProfile::Standard),
        ..SimOptions::quick()
    };
    let report = first_caught(InjectedBug::ReadWithoutRound, options)
        .expect("no checker caught ReadWithoutRound within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    assert_eq!(violation.checker, "read_linearizability", "{report}");
}

#[test]
fn sim_seeds_hold_across_terms() {
    // The correct engine survives messages held across terms, on every cluster size.
    let options = SimOptions {
        profile: Some(FaultProfile::HoldAcrossTerms),
        ..SimOptions::quick()
    };
    let reports: Vec<RunReport> = (0..HOLD_SEED_COUNT)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .collect();
    let mut summary = SoakSummary::default();
    reports.iter().for_each(|r| summary.add(r));
    assert_eq!(summary.violation_count, 0, "\n{}", failures(&reports));
    assert!(summary.committed_count > HOLD_SEED_COUNT * 10);
}

/// Seeds of the snapshot profile run by `sim_snapshot_seeds`.
const SNAPSHOT_SEED_COUNT: u64 = 300;

#[test]
fn sim_snapshot_seeds() {
    // The snapshot profile (`SimOptions::snapshots`): snapshots every few entries, compaction,
    // installs in small chunks, crashes while taking and installing, damaged chunks.
    let options = SimOptions::quick_snapshots();
    let reports: Vec<RunReport> = (0..SNAPSHOT_SEED_COUNT)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .collect();
    let mut summary = SoakSummary::default();
    reports.iter().for_each(|r| summary.add(r));
    eprintln!(
        "snapshot profile: seeds={} violations={} committed={}",
        summary.seed_count, summary.violation_count, summary.committed_count
    );
    eprintln!("violations by checker: {}", summary.violations_line());
    assert_eq!(summary.violation_count, 0, "\n{}", failures(&reports));
    assert!(summary.committed_count > SNAPSHOT_SEED_COUNT * 10);
}

#[test]
fn sim_snapshot_replay() {
    // As `sim_replay`, for a seed of the snapshot profile (ALPO_SEED, ALPO_SIM_LOG=1).
    #[allow(clippy::disallowed_methods)] // Tests may read the environment; the library may not.
    let seed = std::env::var("ALPO_SEED").ok();
    let seed = seed.as_deref().and_then(parse_seed).unwrap_or(SEED_BASE);
    #[allow(clippy::disallowed_methods)] // Tests may read the environment; the library may not.
    let event_log = std::env::var("ALPO_SIM_LOG").is_ok();
    let options = SimOptions {
        event_log,
        ..SimOptions::quick_snapshots()
    };
    let report = run_seed(seed, &options);
    for line in &report.event_log {
        eprintln!("{line}");
    }
    eprintln!("{report}");
    assert!(report.passed(), "{report}");
}

/// The first snapshot-profile run with `bug` injected that a checker (not an engine assertion,
/// not liveness) reports.
fn first_caught_with_snapshots(bug: InjectedBug) -> Option<RunReport> {
    let options = SimOptions {
        injected_bug: Some(bug),
        ..SimOptions::quick_snapshots()
    };
    (0..BUG_SEED_COUNT_MAX)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .find(|r| {
            let checker = r.violation.as_ref().map(|(v, _)| v.checker);
            checker.is_some_and(|c| c != "liveness" && c != "panic")
        })
}

#[test]
fn checkers_catch_a_snapshot_that_claims_an_index_it_does_not_contain() {
    let report = first_caught_with_snapshots(InjectedBug::SnapshotBeyondApplied)
        .expect("no checker caught SnapshotBeyondApplied within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    assert_eq!(violation.checker, "snapshot_equivalence", "{report}");
}

#[test]
fn checkers_catch_compaction_past_the_snapshot() {
    let report = first_caught_with_snapshots(InjectedBug::CompactPastSnapshot)
        .expect("no checker caught CompactPastSnapshot within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    assert_eq!(violation.checker, "compaction_bound", "{report}");
}

#[test]
fn checkers_catch_a_cache_that_never_evicts() {
    // Rule S9: ordinary seeds run with a cache of a few entries, so a core that keeps every
    // entry grows past its bound as soon as a few entries commit.
    let options = SimOptions {
        profile: Some(FaultProfile::Standard),
        ..SimOptions::quick()
    };
    let report = first_caught(InjectedBug::NeverEvictCache, options)
        .expect("no checker caught NeverEvictCache within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    assert_eq!(violation.checker, "cache_bound", "{report}");
}

/// Rule Q3's assumption violated on purpose: clocks drift 25 times the lease's bound `ρ`.
/// `read_linearizability` must catch a lease read of a leader whose lease outlived its
/// followers' promise; with the drift within `ρ` (every other test here) it never fires.
#[test]
fn checkers_catch_lease_reads_only_when_drift_exceeds_the_bound() {
    let options = SimOptions {
        drift_beyond_lease: true,
        profile: Some(FaultProfile::Standard),
        ..SimOptions::quick()
    };
    let report = (0..BUG_SEED_COUNT_MAX)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .find(|r| !r.passed())
        .expect("no checker caught a lease read beyond the drift bound within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    assert_eq!(violation.checker, "read_linearizability", "{report}");
}

/// Seeds run by `sim_membership_seeds`.
const MEMBERSHIP_SEED_COUNT: u64 = 300;

#[test]
fn sim_membership_seeds() {
    // The membership profile (issue 12): random membership changes and transfers at the leader
    // among crashes, partitions and loss; every checker, configuration safety included.
    // Replay one with ALPO_SEED=… and `SimOptions::quick_membership()` in `sim_replay`'s way.
    let options = SimOptions::quick_membership();
    let reports: Vec<RunReport> = (0..MEMBERSHIP_SEED_COUNT)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .collect();
    let mut summary = SoakSummary::default();
    reports.iter().for_each(|r| summary.add(r));
    eprintln!(
        "membership seeds={} violations={} committed={}",
        summary.seed_count, summary.violation_count, summary.committed_count
    );
    eprintln!("violations by checker: {}", summary.violations_line());
    assert_eq!(summary.violation_count, 0, "\n{}", failures(&reports));
    assert!(summary.committed_count > MEMBERSHIP_SEED_COUNT * 10);
}

#[test]
fn checkers_catch_a_config_change_before_a_commit_of_the_term() {
    // M3 off (the 2015 bug): the configuration checker, or durability when a committed entry
    // is lost, reports it.
    let options = SimOptions {
        injected_bug: Some(InjectedBug::ConfigChangeBeforeTermCommit),
        ..SimOptions::quick_membership()
    };
    let report = (0..BUG_SEED_COUNT_MAX)
        .map(|i| run_seed(SEED_BASE + i, &options))
        .find(|r| {
            let checker = r.violation.as_ref().map(|(v, _)| v.checker);
            checker.is_some_and(|c| c != "liveness" && c != "panic")
        })
        .expect("no checker caught ConfigChangeBeforeTermCommit within the seed bound");
    eprintln!("{report}");
    let (violation, _) = report.violation.as_ref().unwrap();
    assert!(
        ["configuration_safety", "durability", "leader_completeness"].contains(&violation.checker),
        "{report}"
    );
}
