//! A server's protocol configuration: who is in the cluster, the timing ranges (docs/protocol.md,
//! Timing), the optional rules (deferral, pre-vote, check-quorum), limits, the snapshot policy
//! (rules S2, S4, S5), the entry cache (rule S9) and the random seed.
//! (rules S2, S4, S5), the read lease (rule Q3) and the random seed.
//!
//! Invariants after `validate`: `id` is one of `members` (unless they are empty: a server added
//! later); at most `MEMBERS_MAX` members; members are distinct; every range is non-empty
//! (`min < max`); `heartbeat_interval * 2 < passive_timeout_min` so that a healthy leader is
//! never mistaken for a dead one; limits are non-zero.
//! There is no `Default`: timing is a choice the caller makes, with `Config::lan` as the named one.

use std::time::Duration;

use crate::error::ConfigError;
use crate::limits;
use crate::types::NodeId;

/// A server's protocol configuration.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Config {
    /// This server's id; one of `members`.
    pub id: NodeId,
    /// The bootstrap configuration's voters (rules M1, M11): every server of a new cluster,
    /// this one included (N odd: 3, 5, 7 recommended), identical on all of them. Used until the
    /// log or a snapshot holds a configuration. Empty for a server added later, which learns
    /// its configuration from the leader.
    pub members: Vec<NodeId>,
    /// `H`: an idle leader's interval between heartbeats (rule R7).
    pub heartbeat_interval: Duration,
    /// `P` lower bound: silence after which a passive server stands (rule E1).
    pub passive_timeout_min: Duration,
    /// `P` upper bound (exclusive).
    pub passive_timeout_max: Duration,
    /// `C` lower bound: how long a candidate waits for votes before a new term (rule E1).
    pub election_cycle_min: Duration,
    /// `C` upper bound (exclusive).
    pub election_cycle_max: Duration,
    /// Rule E8: competing candidates defer to the highest rank.
    pub deferral: bool,
    /// Rule E2: ask "would you vote for me?" before raising the term.
    pub pre_vote: bool,
    /// Rule E5: a leader that has not heard from a majority for a passive timeout steps down, and
    /// servers that heard from a leader recently ignore vote requests.
    pub check_quorum: bool,
    /// Seed of the core's random generator (election timeouts). Same seed, same inputs: same
    /// outputs.
    pub seed: u64,
    /// Entries per Append message at most.
    pub append_entry_count_max: u64,
    /// Payload bytes per Append message at most (one entry is always sent).
    pub append_bytes_max: u64,
    /// Appends in flight per follower at most, in the replicate state (rule R2).
    pub inflight_append_count_max: u64,
    /// Proposals appended but not committed at most; beyond, `propose` refuses.
    pub pending_proposal_count_max: u64,
    /// Payload bytes appended but not committed at most; beyond, `propose` refuses.
    pub pending_proposal_bytes_max: u64,
    /// One entry's payload at most; beyond, `propose` refuses.
    pub entry_bytes_max: u64,
    /// Rule S2's trigger: take a snapshot once `applied - L ≥ N` entries were applied since the
    /// newest durable snapshot at `L`; `None` never takes one.
    pub snapshot_interval_entries: Option<u64>,
    /// Rule S4: entries kept below the newest snapshot when compacting, for followers that are
    /// only a little behind (they then catch up by Appends instead of an install).
    pub retain_entries: u64,
    /// Rule S5: bytes of the snapshot file per InstallSnapshot chunk at most.
    pub snapshot_chunk_bytes: u64,
    /// Rule S5: InstallSnapshot chunks in flight (read or sent, not acknowledged) per follower.
    pub snapshot_chunks_inflight_max: u64,
    /// Rule S9: payload bytes of recent entries the core caches at most, beyond the entries
    /// above the commit index that it always holds; older entries are read back with
    /// `ReadLog`.
    pub log_cache_bytes_max: u64,
    /// Rule S9: payload bytes asked for by `ReadLog`s in flight at most; each read asks for
    /// an equal share, `read_inflight_bytes_max / members.len()` (one read in flight for the
    /// apply and one per follower).
    pub read_inflight_bytes_max: u64,
    /// Rule Q3: lease reads, off (`None`) by default. Requires `check_quorum`. **Assumption:**
    /// every server's clock is monotonic and runs at a rate within `1 ± ρ` of real time.
    pub read_lease: Option<ReadLease>,
}

/// Rule Q3's lease: the clock-drift bound `ρ` it assumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadLease {
    /// `ρ` in parts per million: every clock runs at a rate within `1 ± ρ` of real time.
    pub drift_ppm: u32,
}

impl ReadLease {
    /// The lease a confirmed round gives, from the round's start (rule Q3):
    /// `L = P_min·(1−ρ)/(1+ρ) − one tick`, where one tick is `H / 10`, the granularity at which
    /// a driver is expected to read its clock. Zero when the drift bound leaves no lease.
    #[must_use]
    pub fn length(self, config: &Config) -> Duration {
        let ppm = u128::from(self.drift_ppm.min(999_999));
        let p_min = config.passive_timeout_min.as_nanos();
        let scaled = p_min * (1_000_000 - ppm) / (1_000_000 + ppm);
        let tick = config.heartbeat_interval.as_nanos() / 10;
        let nanos = scaled.saturating_sub(tick);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

impl Config {
    /// The LAN defaults (docs/protocol.md, Timing): `H` = 50 ms, `P` in [300, 600) ms,
    /// `C` in [150, 300) ms, deferral, pre-vote and check-quorum on, the limits in `limits`.
    #[must_use]
    pub fn lan(id: NodeId, members: Vec<NodeId>, seed: u64) -> Config {
        Config {
            id,
            members,
            heartbeat_interval: Duration::from_millis(50),
            passive_timeout_min: Duration::from_millis(300),
            passive_timeout_max: Duration::from_millis(600),
            election_cycle_min: Duration::from_millis(150),
            election_cycle_max: Duration::from_millis(300),
            deferral: true,
            pre_vote: true,
            check_quorum: true,
            seed,
            append_entry_count_max: limits::APPEND_ENTRY_COUNT_MAX,
            append_bytes_max: limits::APPEND_BYTES_MAX,
            inflight_append_count_max: limits::INFLIGHT_APPEND_COUNT_MAX,
            pending_proposal_count_max: limits::PENDING_PROPOSAL_COUNT_MAX,
            pending_proposal_bytes_max: limits::PENDING_PROPOSAL_BYTES_MAX,
            entry_bytes_max: limits::ENTRY_BYTES_MAX,
            snapshot_interval_entries: None,
            retain_entries: limits::RETAIN_ENTRIES,
            snapshot_chunk_bytes: limits::APPEND_BYTES_MAX,
            snapshot_chunks_inflight_max: limits::SNAPSHOT_CHUNKS_INFLIGHT_MAX,
            log_cache_bytes_max: limits::LOG_CACHE_BYTES_MAX,
            read_inflight_bytes_max: limits::READ_INFLIGHT_BYTES_MAX,
            read_lease: None,
        }
    }

    /// Checks the invariants in the module documentation; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |field: &'static str, problem: String| Err(ConfigError { field, problem });
        if !self.members.is_empty() && !self.members.contains(&self.id) {
            return fail("id", format!("node {} is not one of the members", self.id));
        }
        if self.members.len() > crate::membership::MEMBERS_MAX {
            return fail(
                "members",
                format!("at most {} members", crate::membership::MEMBERS_MAX),
            );
        }
        let mut sorted = self.members.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.members.len() {
            return fail("members", "a member is listed twice".to_string());
        }
        if self.passive_timeout_min >= self.passive_timeout_max {
            return fail(
                "passive_timeout_min",
                "must be below passive_timeout_max".into(),
            );
        }
        if self.election_cycle_min >= self.election_cycle_max {
            return fail(
                "election_cycle_min",
                "must be below election_cycle_max".into(),
            );
        }
        if self.heartbeat_interval.is_zero() {
            return fail("heartbeat_interval", "must be above zero".into());
        }
        if self.heartbeat_interval * 2 >= self.passive_timeout_min {
            return fail(
                "heartbeat_interval",
                "must be less than half of passive_timeout_min".into(),
            );
        }
        let limits = [
            ("append_entry_count_max", self.append_entry_count_max),
            ("append_bytes_max", self.append_bytes_max),
            ("inflight_append_count_max", self.inflight_append_count_max),
            (
                "pending_proposal_count_max",
                self.pending_proposal_count_max,
            ),
            (
                "pending_proposal_bytes_max",
                self.pending_proposal_bytes_max,
            ),
            ("entry_bytes_max", self.entry_bytes_max),
            ("snapshot_chunk_bytes", self.snapshot_chunk_bytes),
            (
                "snapshot_chunks_inflight_max",
                self.snapshot_chunks_inflight_max,
            ),
            ("read_inflight_bytes_max", self.read_inflight_bytes_max),
            (
                "snapshot_interval_entries",
                self.snapshot_interval_entries.unwrap_or(1),
            ),
        ];
        for (field, value) in limits {
            if value == 0 {
                return fail(field, "must be above zero".into());
            }
        }
        self.validate_read_lease()
    }

    /// Rule Q3: a lease needs check-quorum (a leader cut off steps down, and followers refuse
    /// other candidates while they hear from it) and a drift bound that leaves a lease.
    fn validate_read_lease(&self) -> Result<(), ConfigError> {
        let Some(lease) = self.read_lease else {
            return Ok(());
        };
        let fail = |problem: &str| {
            Err(ConfigError {
                field: "read_lease",
                problem: problem.to_string(),
            })
        };
        if !self.check_quorum {
            return fail("lease reads require check_quorum");
        }
        if lease.drift_ppm >= 1_000_000 {
            return fail("the drift bound must be below 1,000,000 ppm");
        }
        if lease.length(self).is_zero() {
            return fail("the drift bound leaves no lease within passive_timeout_min");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Config {
        Config::lan(NodeId(1), vec![NodeId(1), NodeId(2), NodeId(3)], 7)
    }

    #[test]
    fn lan_defaults_are_valid() {
        assert_eq!(three().validate(), Ok(()));
        let mut joining = three();
        joining.members.clear();
        assert_eq!(joining.validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_field() {
        let mut config = three();
        config.id = NodeId(9);
        assert_eq!(config.validate().unwrap_err().field, "id");
        let mut config = three();
        config.members.push(NodeId(2));
        assert_eq!(config.validate().unwrap_err().field, "members");
        let mut config = three();
        config.heartbeat_interval = config.passive_timeout_min;
        assert_eq!(config.validate().unwrap_err().field, "heartbeat_interval");
        let mut config = three();
        config.inflight_append_count_max = 0;
        assert_eq!(
            config.validate().unwrap_err().field,
            "inflight_append_count_max"
        );
    }

    #[test]
    fn a_read_lease_needs_check_quorum_and_a_drift_bound_below_one() {
        let mut config = three();
        config.read_lease = Some(ReadLease { drift_ppm: 20_000 });
        assert_eq!(config.validate(), Ok(()));
        // 300 ms · 0.98 / 1.02 − 5 ms
        let length = ReadLease { drift_ppm: 20_000 }.length(&config);
        assert_eq!(length.as_millis(), 283);
        config.check_quorum = false;
        assert_eq!(config.validate().unwrap_err().field, "read_lease");
        config.check_quorum = true;
        config.read_lease = Some(ReadLease {
            drift_ppm: 1_000_000,
        });
        assert_eq!(config.validate().unwrap_err().field, "read_lease");
    }
}
