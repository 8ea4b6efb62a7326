//! What a run reports, how a failure is printed, and soak statistics.
//!
//! A failure prints as two lines, the first naming the seed and the broken property, the second
//! the one command that replays it:
//!
//! ```text
//! sim: seed=0x00000000000004d2 violated election_safety: nodes 1 and 3 are both leaders
//!      of term 4 (at 1234.567 ms)
//! replay: ALPO_SEED=0x00000000000004d2 cargo test -p alpo-core --test sim -- sim_replay \
//!      --nocapture
//! ```

use std::collections::BTreeMap;
use std::fmt;

use crate::sim::checkers::Violation;
use crate::sim::scenario::SimOptions;

/// One leader-loss measurement: from the crash of a stable leader to the next leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionSample {
    /// Whether deferral (rule E8) was on.
    pub deferral: bool,
    /// Terms started from the loss to the new leader's term (1 = elected at the first try).
    pub round_count: u64,
    /// Simulated milliseconds from the loss to the new leader ("ticks" of 1 ms).
    pub ticks_ms: u64,
}

/// The outcome of one seeded run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunReport {
    /// The run seed.
    pub seed: u64,
    /// The options the run used (needed to replay it).
    pub options: SimOptions,
    /// Cluster size.
    pub node_count: usize,
    /// Whether deferral was on.
    pub deferral: bool,
    /// The first broken property, if any, and the simulated time it was seen at.
    pub violation: Option<(Violation, u64)>,
    /// Hash of the full trace.
    pub trace_hash: u64,
    /// Simulated steps (node inputs) taken.
    pub step_count: u64,
    /// Messages handed to the network.
    pub message_count: u64,
    /// Messages delivered to a live node.
    pub delivered_count: u64,
    /// Simulated nanoseconds the run lasted.
    pub simulated_ns: u64,
    /// Node crashes.
    pub crash_count: u64,
    /// Highest term any node reached.
    pub term_max: u64,
    /// Proposals accepted by a leader.
    pub proposal_count: u64,
    /// Accepted proposals that were applied somewhere.
    pub committed_count: u64,
    /// Reads served (rules Q1–Q3), each checked by `read_linearizability`.
    pub read_served_count: u64,
    /// Reads that failed or were lost with a crashed node.
    pub read_failed_count: u64,
    /// The leader-loss measurement of the healed phase, if the run got that far.
    pub election: Option<ElectionSample>,
    /// The first election of the run (all nodes start at once), if no fault came before it:
    /// terms from 0 to the first leader's and milliseconds from the start.
    pub cold_start: Option<ElectionSample>,
    /// Sends, starts, crashes, nemesis actions, one per line (only with
    /// `SimOptions::event_log`).
    pub event_log: Vec<String>,
}

impl RunReport {
    /// Whether every checker passed.
    #[must_use]
    pub fn passed(&self) -> bool {
        self.violation.is_none()
    }

    /// The command that replays this run.
    #[must_use]
    pub fn replay_command(&self) -> String {
        replay_command(self.seed, &self.options)
    }
}

/// The command that replays `seed` under `options`.
#[must_use]
pub fn replay_command(seed: u64, options: &SimOptions) -> String {
    let logless = SimOptions {
        event_log: false,
        ..options.clone()
    };
    if logless == SimOptions::quick() {
        return format!(
            "ALPO_SEED={seed:#018x} cargo test -p alpo-core --test sim -- sim_replay --nocapture"
        );
    }
    if logless == SimOptions::quick_snapshots() {
        return format!(
            "ALPO_SEED={seed:#018x} cargo test -p alpo-core --test sim -- sim_snapshot_replay \
             --nocapture"
        );
    }
    let mut command = format!("cargo xtask sim --seed {seed:#018x}");
    if options.fault_phase_ms != SimOptions::soak().fault_phase_ms {
        command.push_str(&format!(" --fault-ms {}", options.fault_phase_ms));
    }
    if let Some(k) = options.node_count {
        command.push_str(&format!(" --nodes {k}"));
    }
    if let Some(d) = options.deferral {
        command.push_str(if d {
            " --deferral on"
        } else {
            " --deferral off"
        });
    }
    if let Some(profile) = options.profile {
        command.push_str(&format!(" --profile {profile:?}"));
    }
    if options.snapshots {
        command.push_str(" --snapshots on");
    }
    if options.drift_beyond_lease {
        command.push_str(" --drift-beyond-lease on");
    }
    if options.membership {
        command.push_str(" --membership on");
    }
    if options.disk_faults {
        command.push_str(" --disk-faults on");
    }
    if let Some(bug) = options.injected_bug {
        command.push_str(&format!(" --inject {bug:?}"));
    }
    command
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.violation {
            Some((violation, at_ns)) => {
                let ms = *at_ns / 1_000_000;
                let micros = (*at_ns / 1_000) % 1_000;
                writeln!(
                    f,
                    "sim: seed={:#018x} {violation} (at {ms}.{micros:03} ms)",
                    self.seed
                )?;
                write!(f, "replay: {}", self.replay_command())
            }
            None => write!(
                f,
                "sim: seed={:#018x} ok nodes={} deferral={} simulated_ms={} crashes={} steps={} \
                 messages={} terms={} committed={} trace={:#018x}",
                self.seed,
                self.node_count,
                self.deferral,
                self.simulated_ns / 1_000_000,
                self.crash_count,
                self.step_count,
                self.message_count,
                self.term_max,
                self.committed_count,
                self.trace_hash
            ),
        }
    }
}

/// Aggregated statistics of a soak.
#[derive(Clone, Debug, Default)]
pub struct SoakSummary {
    /// Runs.
    pub seed_count: u64,
    /// Runs with a violation.
    pub violation_count: u64,
    /// Runs with a violation, by the name of the checker that saw it.
    pub violations_by_checker: BTreeMap<&'static str, u64>,
    /// Messages over all runs.
    pub message_count: u64,
    /// Steps over all runs.
    pub step_count: u64,
    /// Committed proposals over all runs.
    pub committed_count: u64,
    /// Reads served over all runs.
    pub read_served_count: u64,
    /// Election samples, deferral on.
    pub with_deferral: Vec<ElectionSample>,
    /// Election samples, deferral off.
    pub without_deferral: Vec<ElectionSample>,
    /// Cold-start samples (both deferral settings).
    pub cold_starts: Vec<ElectionSample>,
}

impl SoakSummary {
    /// Adds one run.
    pub fn add(&mut self, report: &RunReport) {
        self.seed_count += 1;
        self.violation_count += u64::from(!report.passed());
        if let Some((violation, _)) = &report.violation {
            *self
                .violations_by_checker
                .entry(violation.checker)
                .or_default() += 1;
        }
        self.message_count += report.message_count;
        self.step_count += report.step_count;
        self.committed_count += report.committed_count;
        self.read_served_count += report.read_served_count;
        match report.election {
            Some(s) if s.deferral => self.with_deferral.push(s),
            Some(s) => self.without_deferral.push(s),
            None => {}
        }
        self.cold_starts.extend(report.cold_start);
    }

    /// `checker=count` pairs, or `none`.
    #[must_use]
    pub fn violations_line(&self) -> String {
        if self.violations_by_checker.is_empty() {
            return "none".to_string();
        }
        let pairs: Vec<String> = self
            .violations_by_checker
            .iter()
            .map(|(checker, count)| format!("{checker}={count}"))
            .collect();
        pairs.join(" ")
    }

    /// Two lines per deferral setting, `rounds` (terms started) and `ticks_ms` (simulated
    /// milliseconds) as p50/p99/max: from the crash of a stable leader to the next leader
    /// (`failover`), and from a cold start to the first leader (`cold-start`).
    #[must_use]
    pub fn election_lines(&self) -> Vec<String> {
        let cold = |deferral: bool| -> Vec<ElectionSample> {
            let all = self.cold_starts.iter().copied();
            all.filter(|s| s.deferral == deferral).collect()
        };
        [
            ("failover", "on", self.with_deferral.clone()),
            ("failover", "off", self.without_deferral.clone()),
            ("cold-start", "on", cold(true)),
            ("cold-start", "off", cold(false)),
        ]
        .iter()
        .map(|(what, label, samples)| election_line(what, label, samples))
        .collect()
    }
}

fn election_line(what: &str, label: &str, samples: &[ElectionSample]) -> String {
    let mut rounds: Vec<u64> = samples.iter().map(|s| s.round_count).collect();
    let mut ticks: Vec<u64> = samples.iter().map(|s| s.ticks_ms).collect();
    format!(
        "election {what} deferral={label} samples={} rounds p50={} p99={} max={} \
         ticks_ms p50={} p99={} max={}",
        samples.len(),
        percentile(&mut rounds, 50),
        percentile(&mut rounds, 99),
        rounds.last().copied().unwrap_or(0),
        percentile(&mut ticks, 50),
        percentile(&mut ticks, 99),
        ticks.last().copied().unwrap_or(0),
    )
}

/// The `pct`-th percentile (nearest rank) of `values`, which it sorts; 0 when empty.
pub fn percentile(values: &mut [u64], pct: u64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let len = u64::try_from(values.len()).unwrap_or(u64::MAX);
    let rank = (pct * len).div_ceil(100).clamp(1, len);
    usize::try_from(rank - 1)
        .ok()
        .and_then(|i| values.get(i))
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50), 50);
        assert_eq!(percentile(&mut v, 99), 99);
        assert_eq!(percentile(&mut [7], 99), 7);
        assert_eq!(percentile(&mut [], 50), 0);
    }

    #[test]
    fn violations_are_counted_by_checker() {
        let mut summary = SoakSummary::default();
        assert_eq!(summary.violations_line(), "none");
        let report = RunReport {
            seed: 1,
            options: SimOptions::quick(),
            node_count: 3,
            deferral: true,
            violation: Some((Violation::new("log_matching", "x".into()), 5)),
            trace_hash: 0,
            step_count: 0,
            message_count: 0,
            delivered_count: 0,
            simulated_ns: 0,
            crash_count: 0,
            term_max: 0,
            proposal_count: 0,
            committed_count: 0,
            read_served_count: 0,
            read_failed_count: 0,
            election: None,
            cold_start: None,
            event_log: Vec::new(),
        };
        summary.add(&report);
        summary.add(&report);
        assert_eq!(summary.violations_line(), "log_matching=2");
        assert_eq!(summary.violation_count, 2);
        let printed = report.to_string();
        assert!(printed.starts_with("sim: seed=0x0000000000000001 violated log_matching: x"));
        assert!(printed.contains("\nreplay: ALPO_SEED=0x0000000000000001 cargo test"));
    }

    #[test]
    fn replay_commands_name_the_seed_and_options() {
        let quick = replay_command(0x4d2, &SimOptions::quick());
        assert!(
            quick.starts_with("ALPO_SEED=0x00000000000004d2 cargo test"),
            "{quick}"
        );
        let options = SimOptions {
            node_count: Some(5),
            deferral: Some(false),
            ..SimOptions::soak()
        };
        assert_eq!(
            replay_command(1, &options),
            "cargo xtask sim --seed 0x0000000000000001 --nodes 5 --deferral off"
        );
    }
}
