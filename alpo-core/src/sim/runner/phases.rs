//! The client's load and the phases after the faults: the heal's liveness probe (a proposal
//! made after the heal applied on every node), the failover (crash the leader, time the next
//! election), the cold-start sample, the liveness deadline and the run's report.
//!
//! Invariant: a run's phases only move forward: faults, healed, liveness met, failover, done.

use bytes::Bytes;

use crate::error::ProposeError;
use crate::node::{Proposal, Role, Status};
use crate::sim::checkers::Violation;
use crate::sim::report::{ElectionSample, RunReport};
use crate::types::Entry;

use super::queue::Event;
use super::{LIVENESS, MS, Phase, Simulation, slot_of};

impl Simulation {
    pub(super) fn client_proposes(&mut self) -> Result<(), Violation> {
        if self.phase == Phase::Done {
            return Ok(());
        }
        self.schedule(self.now + self.scenario.client_gap_ns, Event::Client);
        let live = self.live_slots();
        let patience = self.scenario.liveness_bound_ns / 20;
        if live.is_empty() || !self.client.may_propose(self.now, patience) {
            return Ok(());
        }
        if self.slots[self.client.target].node.is_none() {
            self.client.target = live[self.client_rng.index(live.len())];
        }
        let target = self.client.target;
        if self.slots[target].paused_until > self.now {
            // A paused server does not answer: the client times out and tries another.
            self.client.target = self.client_rng.index(self.slots.len());
            return Ok(());
        }
        let payload = self.client.next_payload();
        match self.propose(target, payload.clone())? {
            Ok(proposal) => self
                .client
                .accepted(proposal.index, proposal.term, &payload),
            Err(ProposeError::NotLeader {
                leader_hint: Some(id),
            }) if slot_of(id) < self.slots.len() => {
                self.client.target = slot_of(id);
            }
            Err(ProposeError::NotLeader { .. }) => {
                self.client.target = self.client_rng.index(self.slots.len());
            }
            Err(_) => {}
        }
        Ok(())
    }

    pub(super) fn propose(
        &mut self,
        slot: usize,
        payload: Bytes,
    ) -> Result<Result<Proposal, ProposeError>, Violation> {
        let local = self.slots[slot].clock.to_local(self.now);
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Ok(Err(ProposeError::NotLeader { leader_hint: None }));
        };
        let before = node.status();
        let result = node.propose(local, payload);
        self.trace.word(self.now);
        self.trace.word(4);
        self.trace.word(result.as_ref().map_or(0, |p| p.index.0));
        self.after_input(slot, &before)?;
        Ok(result)
    }
    /// In the healed phase, notes which nodes applied a proposal made after the heal; once one
    /// such proposal is applied everywhere, liveness is met and the failover begins.
    pub(super) fn note_probe(&mut self, slot: usize, entry: &Entry) {
        let Phase::Healed { probe_counter, .. } = self.phase else {
            return;
        };
        let Some(counter) = self.client.counter_of(&entry.payload) else {
            return;
        };
        if counter < probe_counter {
            return;
        }
        let everyone = self.liveness_mask();
        let mask = self.probe_masks.entry(counter).or_insert(0);
        *mask |= 1 << slot;
        if *mask == everyone {
            self.phase = Phase::LivenessMet { since: self.now };
            self.schedule(self.now, Event::Failover);
        }
    }

    /// The slots that must apply a probe: all, or (membership profile) the voters of the
    /// leader's configuration: removed servers learn nothing more, by design (M10), and
    /// learners are caught up without a bound (a one-voter leader commits alone and can outrun
    /// them under lossy links and two-entry Appends: soak seed 0x050001a9).
    fn liveness_mask(&self) -> u64 {
        let all = (1u64 << self.slots.len()) - 1;
        if !self.options.membership {
            return all;
        }
        let Some((slot, _)) = self.leader() else {
            return all;
        };
        let Some(node) = self.slots[slot].node.as_ref() else {
            return all;
        };
        node.configuration()
            .voters()
            .map(|id| 1u64 << slot_of(id))
            .fold(0, |mask, bit| mask | bit)
    }

    pub(super) fn start_failover(&mut self) -> Result<(), Violation> {
        let Phase::LivenessMet { since } = self.phase else {
            return Ok(());
        };
        let voters = self
            .leader()
            .and_then(|(slot, _)| self.slots[slot].node.as_ref())
            .map(|node| node.configuration().voter_count());
        if self.options.membership && voters.is_some_and(|count| count < 3) {
            // Membership profile: with fewer than three voters no election can follow the
            // leader's crash; the run ends without a failover sample.
            self.phase = Phase::Done;
            return Ok(());
        }
        let Some((lost, leader)) = self.leader() else {
            if self.now > since + self.scenario.liveness_bound_ns {
                return Err(self.liveness_violation("no leader to crash after liveness was met"));
            }
            self.schedule(self.now + MS, Event::Failover);
            return Ok(());
        };
        self.crash(lost);
        self.phase = Phase::Failover {
            since: self.now,
            term_before: leader.term.0,
            lost,
        };
        self.schedule(self.now + self.scenario.liveness_bound_ns, Event::Deadline);
        Ok(())
    }

    /// Records the first leader of the run, if no fault came before it: the cold-start sample.
    pub(super) fn track_cold_start(&mut self, slot: usize, status: &Status) {
        if !self.cold_start_open || status.role != Role::Leader {
            return;
        }
        self.cold_start_open = false;
        self.cold_start = Some(ElectionSample {
            deferral: self.slots[slot].config.deferral,
            round_count: status.term.0,
            ticks_ms: self.now / MS,
        });
    }

    pub(super) fn track_failover(&mut self, slot: usize, status: &Status) {
        let Phase::Failover {
            since,
            term_before,
            lost,
        } = self.phase
        else {
            return;
        };
        if status.role != Role::Leader || status.term.0 <= term_before || slot == lost {
            return;
        }
        self.election = Some(ElectionSample {
            deferral: self.slots[slot].config.deferral,
            round_count: status.term.0 - term_before,
            ticks_ms: (self.now - since) / MS,
        });
        self.phase = Phase::Done;
    }

    pub(super) fn deadline(&mut self) -> Result<(), Violation> {
        let bound = self.scenario.liveness_bound_ns;
        match self.phase {
            Phase::Healed { since, .. } if self.now >= since + bound => Err(self
                .liveness_violation("no proposal made after the heal was applied on every node")),
            Phase::Failover { since, .. } if self.now >= since + bound => {
                Err(self.liveness_violation("no new leader after the leader crashed"))
            }
            _ => Ok(()),
        }
    }

    pub(super) fn liveness_violation(&self, what: &str) -> Violation {
        let nodes: Vec<String> = self
            .slots
            .iter()
            .map(|s| match &s.node {
                None => format!("node {} down", s.config.id),
                Some(node) => {
                    let st = node.status();
                    format!(
                        "node {} {:?} term {} commit {} applied {} last {}",
                        st.id, st.role, st.term, st.commit_index, st.applied_index, st.last_index
                    )
                }
            })
            .collect();
        Violation::new(
            LIVENESS,
            format!(
                "{what} within {} ms; {}",
                self.scenario.liveness_bound_ns / MS,
                nodes.join("; ")
            ),
        )
    }

    pub(super) fn report(&self) -> RunReport {
        RunReport {
            seed: self.scenario.seed,
            options: self.options.clone(),
            node_count: self.scenario.node_count,
            deferral: self.scenario.configs.first().is_some_and(|c| c.deferral),
            violation: self.violation.clone(),
            event_log: self.event_log.clone(),
            trace_hash: self.trace.value(),
            step_count: self.step_count,
            message_count: self.network.sent_count,
            delivered_count: self.delivered_count,
            simulated_ns: self.now,
            crash_count: self.crash_count,
            term_max: self.term_max(),
            proposal_count: self.client.accepted_count,
            committed_count: self.client.committed_count,
            read_served_count: self.checkers.reads.served_count,
            read_failed_count: self.checkers.reads.failed_count,
            election: self.election,
            cold_start: self.cold_start,
        }
    }
}
