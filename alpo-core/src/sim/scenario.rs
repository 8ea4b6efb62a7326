//! What one run looks like, derived from its seed: cluster size, protocol timing and options,
//! clock drift, network and disk fault rates, nemesis pace, client load and phase lengths.
//!
//! Invariant: `Scenario::from_seed` draws from a generator seeded only by the run seed, in a
//! fixed order, and makes every draw whether or not `SimOptions` overrides it, so forcing the
//! value the seed would have picked anyway gives exactly the same run.

use std::time::Duration;

use crate::config::{Config, ReadLease};
use crate::injected::InjectedBug;
use crate::sim::clock::Clock;
use crate::sim::network::NetworkFaults;
use crate::sim::rng::SimRng;
use crate::types::NodeId;

const MS: u64 = 1_000_000;

/// Mixed into the run seed for the reads' generator.
const READ_SALT: u64 = 0x0EAD_5A17_1EA5;

/// The lease's drift bound `ρ` in the simulator: the clocks' own drift bound (±20,000 ppm).
pub const LEASE_DRIFT_PPM: u32 = 20_000;

/// Knobs chosen by the caller, the same for every seed of a soak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimOptions {
    /// Force the cluster size (3, 5 or 7); otherwise the seed picks it.
    pub node_count: Option<usize>,
    /// Force deferral (rule E8) on or off; otherwise the seed picks it.
    pub deferral: Option<bool>,
    /// Length of the fault phase, in simulated milliseconds.
    pub fault_phase_ms: u64,
    /// A deliberate engine bug, to prove the checkers bite.
    pub injected_bug: Option<InjectedBug>,
    /// Most simulated steps a run may take before it is reported as stuck.
    pub step_count_max: u64,
    /// Force the nemesis's fault profile; otherwise the seed picks it.
    pub profile: Option<FaultProfile>,
    /// Keep a human-readable log of sends, starts, crashes and nemesis actions in the report
    /// (slow: for replaying one seed).
    pub event_log: bool,
    /// The snapshot profile: every node takes a snapshot every few entries, compacts its log
    /// keeping few entries, and sends snapshots in small chunks (rules S2–S8), so snapshots,
    /// compaction and installs happen in ordinary seeds. Its draws come from a generator of
    /// their own: with it off, a seed runs exactly as it did before snapshots existed.
    pub snapshots: bool,
    /// The lease-drift profile: leases on (ρ = 2%) in every run whose check-quorum is on, and
    /// clocks drifting up to 25 times that bound (±50%), so that lease reads may break property 14
    /// on purpose (rule Q3's assumption violated). Off: clocks stay within ρ.
    pub drift_beyond_lease: bool,
    /// The membership profile (issue 12): the nemesis also asks the leader for membership
    /// changes (add a learner, promote, remove a member or the leader itself) and leadership
    /// transfers, so clusters shrink and grow between 1 voter and all the slots. Its draws come
    /// from a generator of their own: with it off, a seed runs exactly as before.
    pub membership: bool,
    /// The storage-fault profile (issue 13, rules F8, F9): hard-state copies rot at rest on
    /// any node, at crashes and while running, so servers restart with one copy or none (then
    /// fenced). Its draws come from a generator of their own: with it off, a seed runs exactly
    /// as before.
    pub disk_faults: bool,
}

/// How the nemesis behaves during the fault phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultProfile {
    /// Every kind of fault, at a pace of one action per 10 to 800 ms, nodes down for up to 1.5 s.
    Standard,
    /// Leader churn: mostly leader crashes, about one per election (every half to three shortest
    /// passive timeouts), crashes of new leaders right after the election or their first commit,
    /// quick restarts, at least 10 % message loss, and Appends of one or two entries, so that
    /// logs diverge across many terms (scenario S1 and its kin).
    LeaderChurn,
    /// Leader churn (its nemesis and lossy links, with Appends of ordinary size) on slow disks,
    /// and a network that holds messages back across terms: one message in ten of the fault
    /// phase waits until its recipient's term is two past the message's (a leader's: until it
    /// leads in any later term), then arrives after up to a longest passive timeout; an
    /// acknowledgement of entries its leader has not yet made durable is always held, and half
    /// the time the leader crashes at once (losing those entries). So replies and requests of
    /// an ended leadership arrive after the servers changed roles, often at the same leader
    /// elected again with another log, which is where a stale-message bug of any kind shows.
    /// The seed never picks this profile: only `SimOptions::profile` does, so the runs of the
    /// other profiles are unchanged.
    HoldAcrossTerms,
}

impl FaultProfile {
    /// Whether the nemesis follows the leader-churn pattern (crash leaders about once per
    /// election, quick restarts, lossy links).
    #[must_use]
    pub fn churns(self) -> bool {
        matches!(
            self,
            FaultProfile::LeaderChurn | FaultProfile::HoldAcrossTerms
        )
    }

    /// Whether the network holds messages back across terms.
    #[must_use]
    pub fn holds_across_terms(self) -> bool {
        self == FaultProfile::HoldAcrossTerms
    }
}

/// Everything about one run that the seed decides.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The run seed.
    pub seed: u64,
    /// Servers in the cluster.
    pub node_count: usize,
    /// Per-node protocol configuration (ids 1..=node_count).
    pub configs: Vec<Config>,
    /// Per-node clocks.
    pub clocks: Vec<Clock>,
    /// The nemesis's behaviour.
    pub profile: FaultProfile,
    /// Network fault rates during the fault phase.
    pub faults: NetworkFaults,
    /// Shortest and longest (exclusive) fsync, in nanoseconds.
    pub fsync_ns: (u64, u64),
    /// Shortest and longest (exclusive) pause between nemesis actions, in nanoseconds.
    pub nemesis_gap_ns: (u64, u64),
    /// Pause between client proposals, in nanoseconds.
    pub client_gap_ns: u64,
    /// Pause between client reads, in nanoseconds.
    pub read_gap_ns: u64,
    /// End of the fault phase, in global nanoseconds.
    pub fault_phase_ns: u64,
    /// Shortest and longest (exclusive) delay before a `ReadLog` is answered, in nanoseconds
    /// (rule S9): answers arrive late and out of order with every other input.
    pub log_read_ns: (u64, u64),
    /// Liveness bound: after the heal (and after the failover), a leader must be elected and a
    /// new proposal applied on every live node within this many nanoseconds.
    pub liveness_bound_ns: u64,
}

impl SimOptions {
    /// The runs `cargo test` uses: short fault phases so that 1,000 seeds stay fast.
    #[must_use]
    pub fn quick() -> SimOptions {
        SimOptions {
            node_count: None,
            deferral: None,
            fault_phase_ms: 5_000,
            injected_bug: None,
            step_count_max: 2_000_000,
            profile: None,
            event_log: false,
            snapshots: false,
            drift_beyond_lease: false,
            membership: false,
            disk_faults: false,
        }
    }

    /// [`SimOptions::quick`] with the membership profile on.
    #[must_use]
    pub fn quick_membership() -> SimOptions {
        SimOptions {
            membership: true,
            ..SimOptions::quick()
        }
    }

    /// [`SimOptions::quick`] with the snapshot profile on.
    #[must_use]
    pub fn quick_snapshots() -> SimOptions {
        SimOptions {
            snapshots: true,
            ..SimOptions::quick()
        }
    }

    /// The runs of `cargo xtask sim`: longer fault phases.
    #[must_use]
    pub fn soak() -> SimOptions {
        SimOptions {
            fault_phase_ms: 15_000,
            step_count_max: 10_000_000,
            ..SimOptions::quick()
        }
    }
}

impl Scenario {
    /// The run that `seed` describes, with `options` applied.
    #[must_use]
    pub fn from_seed(seed: u64, options: &SimOptions) -> Scenario {
        let mut rng = SimRng::new(seed);
        let node_count = options.node_count.unwrap_or([3, 3, 5, 5, 7][rng.index(5)]);
        let churn = rng.chance(250_000);
        let profile = options.profile.unwrap_or(if churn {
            FaultProfile::LeaderChurn
        } else {
            FaultProfile::Standard
        });
        let mut configs = configs(&mut rng, node_count, options);
        if profile == FaultProfile::LeaderChurn {
            for config in &mut configs {
                config.append_entry_count_max = 1;
            }
        }
        if options.snapshots {
            snapshot_policy(seed, &mut configs);
        }
        let log_read_ns = cache_policy(seed, &mut configs);
        let read_gap_ns = read_policy(seed, options, &mut configs);
        let drift_scale = if options.drift_beyond_lease { 25 } else { 1 };
        let clocks = (0..node_count)
            .map(|_| Clock {
                offset_ns: rng.range(0, 1_000 * MS),
                drift_ppm: (i64::try_from(rng.range(0, 40_001)).unwrap_or(0) - 20_000)
                    * drift_scale,
            })
            .collect();
        let mut faults = network_faults(&mut rng);
        if profile.churns() {
            // Lossy links leave entries on a minority: the raw material of scenario S1.
            faults.drop_per_million = faults.drop_per_million.max(300_000);
        }
        let mut fsync_max = rng.range(MS / 2, 5 * MS);
        if profile.holds_across_terms() {
            // Slow disks: a leader's tail is often acknowledged by a follower before it is
            // durable on the leader, and lost when the leader crashes.
            fsync_max *= 10;
        }
        let passive_min = configs
            .first()
            .map_or(0, |c| duration_ns(c.passive_timeout_min));
        let nemesis_gap_ns = match profile {
            FaultProfile::Standard => (10 * MS, rng.range(100 * MS, 800 * MS)),
            // About one leader crash per election: leaders live briefly, logs diverge.
            FaultProfile::LeaderChurn | FaultProfile::HoldAcrossTerms => {
                (passive_min / 2, 3 * passive_min)
            }
        };
        let client_gap_ns = rng.range(MS, 30 * MS);
        let passive_max = configs
            .first()
            .map_or(Duration::ZERO, |c| c.passive_timeout_max);
        Scenario {
            seed,
            node_count,
            configs,
            clocks,
            profile,
            faults,
            fsync_ns: (MS / 20, fsync_max),
            nemesis_gap_ns,
            client_gap_ns,
            log_read_ns,
            read_gap_ns,
            fault_phase_ns: options.fault_phase_ms * MS,
            liveness_bound_ns: 20 * duration_ns(passive_max),
        }
    }
}

/// Rules Q1–Q3: half the seeds give check-quorum servers a read lease (all of them with
/// `drift_beyond_lease`); returns the gap between client reads. Reads draw from a stream of
/// their own, so the other draws stay as they were.
fn read_policy(seed: u64, options: &SimOptions, configs: &mut [Config]) -> u64 {
    let mut read_rng = SimRng::new(seed ^ READ_SALT);
    let lease = options.drift_beyond_lease || read_rng.chance(500_000);
    for config in configs.iter_mut() {
        if lease && config.check_quorum {
            config.read_lease = Some(ReadLease {
                drift_ppm: LEASE_DRIFT_PPM,
            });
        }
    }
    read_rng.range(MS, 20 * MS)
}

fn configs(rng: &mut SimRng, node_count: usize, options: &SimOptions) -> Vec<Config> {
    let members: Vec<NodeId> = (1..=node_count)
        .map(|i| NodeId(u64::try_from(i).unwrap_or(0)))
        .collect();
    let heartbeat_ms = rng.range(20, 80);
    let passive_min_ms = rng.range(3 * heartbeat_ms, 8 * heartbeat_ms);
    let cycle_min_ms = rng.range(passive_min_ms / 3, passive_min_ms);
    let deferral = options.deferral.unwrap_or(rng.chance(500_000));
    let pre_vote = rng.chance(750_000);
    let check_quorum = rng.chance(750_000);
    members
        .iter()
        .map(|&id| {
            let mut config = Config::lan(id, members.clone(), rng.next_u64());
            config.heartbeat_interval = Duration::from_millis(heartbeat_ms);
            config.passive_timeout_min = Duration::from_millis(passive_min_ms);
            config.passive_timeout_max = Duration::from_millis(2 * passive_min_ms);
            config.election_cycle_min = Duration::from_millis(cycle_min_ms);
            config.election_cycle_max = Duration::from_millis(2 * cycle_min_ms);
            config.deferral = deferral;
            config.pre_vote = pre_vote;
            config.check_quorum = check_quorum;
            config.append_entry_count_max = rng.range(1, 64);
            config.inflight_append_count_max = rng.range(1, 16);
            config
        })
        .collect()
}

/// The snapshot profile's policy, drawn from its own generator (`SimOptions::snapshots`): a
/// snapshot every 4 to 48 entries, 0 to 15 entries retained, chunks of 16 to 127 bytes (an
/// image spans several), 1 to 4 chunks in flight.
fn snapshot_policy(seed: u64, configs: &mut [Config]) {
    let mut rng = SimRng::new(seed ^ 0x5A4B_5407_5011_C7E5);
    let interval = rng.range(4, 48);
    let retain = rng.range(0, 16);
    let chunk_bytes = rng.range(16, 128);
    let inflight = rng.range(1, 5);
    for config in configs {
        config.snapshot_interval_entries = Some(interval);
        config.retain_entries = retain;
        config.snapshot_chunk_bytes = chunk_bytes;
        config.snapshot_chunks_inflight_max = inflight;
    }
}

/// Rule S9's policy, drawn from its own generator in every seed: an entry cache of 0 to 255
/// payload bytes (0 to 15 of the client's 16-byte payloads), 64 to 2047 read bytes in flight
/// (4 to 127 entries per read), and read answers delayed by up to 0.1 to 5 ms, so that the
/// core reads its log back all the time and the answers race every other input.
fn cache_policy(seed: u64, configs: &mut [Config]) -> (u64, u64) {
    let mut rng = SimRng::new(seed ^ 0x0CAC_11E5_5E9D_0009);
    let cache_bytes = rng.range(0, 256);
    let read_bytes = rng.range(64, 2048);
    let read_delay_max = rng.range(MS / 10, 5 * MS);
    for config in configs {
        config.log_cache_bytes_max = cache_bytes;
        config.read_inflight_bytes_max = read_bytes;
    }
    (0, read_delay_max)
}

fn network_faults(rng: &mut SimRng) -> NetworkFaults {
    let delay_ns_max = rng.range(MS, 10 * MS);
    NetworkFaults {
        delay_ns_min: MS / 10,
        delay_ns_max,
        long_delay_per_million: rng.range(0, 50_000),
        long_delay_ns_max: rng.range(delay_ns_max + 1, 300 * MS),
        drop_per_million: rng.range(0, 200_000),
        duplicate_per_million: rng.range(0, 50_000),
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_gives_a_valid_configuration() {
        for seed in 0..500 {
            let scenario = Scenario::from_seed(seed, &SimOptions::quick());
            assert!([3, 5, 7].contains(&scenario.node_count));
            assert_eq!(scenario.configs.len(), scenario.node_count);
            for config in &scenario.configs {
                assert_eq!(config.validate(), Ok(()), "seed {seed}");
            }
        }
    }

    #[test]
    fn overrides_change_only_what_they_override() {
        let plain = Scenario::from_seed(11, &SimOptions::quick());
        let options = SimOptions {
            node_count: Some(plain.node_count),
            ..SimOptions::quick()
        };
        let forced = Scenario::from_seed(11, &options);
        assert_eq!(plain.configs, forced.configs);
        assert_eq!(plain.clocks, forced.clocks);
        let seven = SimOptions {
            node_count: Some(7),
            deferral: Some(false),
            ..SimOptions::quick()
        };
        let forced = Scenario::from_seed(11, &seven);
        assert_eq!(forced.node_count, 7);
        assert!(forced.configs.iter().all(|c| !c.deferral));
    }
}
