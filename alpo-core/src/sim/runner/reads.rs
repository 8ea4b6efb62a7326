//! The client's reads (rules Q1–Q3): at its own pace, the client asks a random live node for a
//! read (the leader, or a follower that asks the leader, Q2), in lease mode half of the time
//! when the run has leases on, and `read_linearizability` (property 14) checks every answer.
//!
//! Invariant: every read id is unique in the run; a read is invoked at one node and answered,
//! failed or lost with that node's crash.

use crate::node::{ReadId, ReadMode};
use crate::sim::checkers::Violation;
use crate::types::{LogIndex, NodeId};

use super::queue::Event;
use super::{Phase, Simulation};

impl Simulation {
    /// The client invokes one read, and schedules the next.
    pub(super) fn client_reads(&mut self) -> Result<(), Violation> {
        if self.phase == Phase::Done {
            return Ok(());
        }
        self.schedule(self.now + self.scenario.read_gap_ns, Event::Read);
        let live = self.live_slots();
        if live.is_empty() {
            return Ok(());
        }
        let slot = live[self.read_rng.index(live.len())];
        if self.slots[slot].paused_until > self.now {
            return Ok(());
        }
        let lease = self.slots[slot].config.read_lease.is_some();
        let mode = if lease && self.read_rng.chance(500_000) {
            ReadMode::Lease
        } else {
            ReadMode::Linearizable
        };
        let id = ReadId(self.next_read_id);
        self.next_read_id += 1;
        let node_id = self.slots[slot].config.id;
        self.checkers.reads.observe_invoked(id, node_id);
        let local = self.slots[slot].clock.to_local(self.now);
        let Some(node) = self.slots[slot].node.as_mut() else {
            return Ok(());
        };
        let before = node.status();
        node.read_index(local, id, mode);
        self.note(|| format!("read {} at node {node_id} ({mode:?})", id.0));
        self.trace.word(self.now);
        self.trace.word(8);
        self.trace.word(id.0);
        self.after_input(slot, &before)
    }

    /// The node in `slot` performs `ReadReady`: check it against property 14.
    pub(super) fn read_served(
        &mut self,
        slot: usize,
        id: ReadId,
        index: LogIndex,
        commit: LogIndex,
    ) -> Result<(), Violation> {
        let node = self.slots[slot].config.id;
        let applied = self.slots[slot].state_machine.applied.index;
        self.trace.word(index.0 | 1 << 57);
        self.note(|| format!("node {node} serves read {} at index {index}", id.0));
        self.checkers
            .reads
            .observe_served(id, node, index, commit, applied)
    }

    /// The node in `slot` performs `ReadFailed`.
    pub(super) fn read_failed(&mut self, slot: usize, id: ReadId) {
        let node = self.slots[slot].config.id;
        self.note(|| format!("node {node} fails read {}", id.0));
        self.checkers.reads.observe_failed(id);
    }

    /// The node in `slot` crashed: its reads are lost.
    pub(super) fn reads_lost(&mut self, slot: usize) {
        let node = NodeId(u64::try_from(slot).unwrap_or(0) + 1);
        self.checkers.reads.observe_crash(node);
    }
}
