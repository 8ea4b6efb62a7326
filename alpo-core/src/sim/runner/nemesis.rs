//! The nemesis: during the fault phase, at a pace the scenario draws, it crashes and restarts
//! nodes, partitions the network, blocks links, pauses nodes and changes loss and duplication
//! (after the fault profile); at the end of the phase it heals everything.
//!
//! Invariant: every decision is drawn from the nemesis's own generator, so the network's and
//! the client's draws do not depend on it.

use crate::sim::checkers::Violation;
use crate::sim::scenario::FaultProfile;

use super::queue::Event;
use super::{MS, Phase, Simulation};

impl Simulation {
    pub(super) fn nemesis_gap(&mut self) -> u64 {
        let (low, high) = self.scenario.nemesis_gap_ns;
        self.now + self.nemesis_rng.range(low, high)
    }

    pub(super) fn nemesis(&mut self) -> Result<(), Violation> {
        if self.phase != Phase::Faults {
            return Ok(());
        }
        let action = match self.scenario.profile {
            FaultProfile::Standard => self.nemesis_rng.range(0, 10),
            FaultProfile::LeaderChurn | FaultProfile::HoldAcrossTerms => {
                [3, 3, 3, 3, 0, 0, 4, 6, 7, 8][self.nemesis_rng.index(10)]
            }
        };
        self.trace.word(action | 1 << 60);
        self.note(|| format!("nemesis action {action}"));
        self.nemesis_act(action);
        if self.options.membership && self.membership_rng.chance(500_000) {
            self.membership_act()?;
        }
        self.rot_hard_state_at_rest();
        let gap = self.nemesis_gap();
        self.schedule(gap, Event::Nemesis);
        Ok(())
    }

    /// Performs nemesis action `action` (0..10): crash a node, change the duplicate rate, crash
    /// the leader (or a candidate), partition in two, block one link one way and pause a node,
    /// repair links, change the loss rate.
    pub(super) fn nemesis_act(&mut self, action: u64) {
        self.cold_start_open = false;
        let n = self.slots.len();
        match action {
            0..=1 => {
                // Mostly keep a majority up, so that the fault phase also exercises replication;
                // one crash in ten may take the majority down.
                let live = self.live_slots();
                let keeps_majority = 2 * live.len().saturating_sub(1) > n;
                let victim = live.get(self.nemesis_rng.index(live.len())).copied();
                if keeps_majority || self.nemesis_rng.chance(100_000) {
                    self.crash_and_plan_restart(victim);
                }
            }
            2 => {
                let mut faults = self.network.faults();
                faults.duplicate_per_million = self.nemesis_rng.range(0, 100_000);
                self.network.set_faults(faults);
            }
            3 => {
                // The leader, or else a candidate: possibly the one the others deferred to (S7).
                let victim = self
                    .leader()
                    .or_else(|| self.candidate())
                    .map(|(slot, _)| slot);
                self.crash_and_plan_restart(victim);
            }
            4..=5 => {
                let sides: Vec<bool> = (0..n).map(|_| self.nemesis_rng.chance(500_000)).collect();
                self.network.partition(&sides);
            }
            6 => {
                let from = self.nemesis_rng.index(n);
                let to = self.nemesis_rng.index(n);
                self.network.set_link_blocked(from, to, true);
                // And pause a node (often the leader) for up to two passive timeouts.
                let leader = self.leader().map(|(slot, _)| slot);
                let victim = leader.filter(|_| self.nemesis_rng.chance(500_000));
                let victim = victim.unwrap_or_else(|| self.nemesis_rng.index(n));
                let pause = self
                    .nemesis_rng
                    .range(MS, self.scenario.liveness_bound_ns / 10);
                self.slots[victim].paused_until = self.now + pause;
            }
            7..=8 => self.network.partition(&vec![true; n]),
            _ => {
                let mut faults = self.scenario.faults;
                faults.drop_per_million =
                    self.nemesis_rng.range(0, 2 * faults.drop_per_million + 1);
                self.network.set_faults(faults);
            }
        }
    }

    pub(super) fn crash_and_plan_restart(&mut self, victim: Option<usize>) {
        let Some(slot) = victim else {
            return;
        };
        self.crash(slot);
        let downtime_max = match self.scenario.profile {
            FaultProfile::Standard => 1_500 * MS,
            FaultProfile::LeaderChurn | FaultProfile::HoldAcrossTerms => {
                2 * self.scenario.nemesis_gap_ns.0.max(10 * MS)
            }
        };
        let downtime = self.nemesis_rng.range(10 * MS, downtime_max);
        self.schedule(self.now + downtime, Event::Restart { slot });
    }

    pub(super) fn heal(&mut self) -> Result<(), Violation> {
        self.note(|| "heal: restart every node, repair the network".to_string());
        self.network.heal();
        for slot in 0..self.slots.len() {
            self.restart(slot)?;
        }
        self.phase = Phase::Healed {
            since: self.now,
            probe_counter: self.client.next_counter(),
        };
        self.schedule(self.now + self.scenario.liveness_bound_ns, Event::Deadline);
        Ok(())
    }
}
