//! The storage-fault profile (`SimOptions::disk_faults`, issue 13), hard-state part: rules F8
//! and F9. Hard-state copies rot at rest, on any node (the leader included), running or down:
//! at every crash a draw rots copy A, copy B or both (the last is hard-state amnesia, F9), and
//! now and then the nemesis rots a copy of a running node, which its next start finds unless
//! a `SaveHardState` rewrote both copies first. The term ceiling (F8's third file) stays
//! readable: with it unreadable too the server never votes again (beyond the fault model's
//! "one object, one copy" scope, and a liveness loss the simulator's liveness phase would
//! report; the hand-driven test `f9_with_the_ceiling_unreadable_too_the_server_never_votes`
//! covers it).
//!
//! Invariant: every draw comes from `disk_fault_rng`, a stream of its own, so with the profile
//! off a seed runs exactly as before it existed.

use super::Simulation;

/// Mixed into the run seed for the generator of `disk_fault_rng`.
pub(super) const DISK_RNG_SALT: u64 = 0xD15C_FA17_0013;

/// Chance, per million crashes, that the crashed node's hard state rots while it is down.
const ROT_AT_CRASH_PER_MILLION: u64 = 600_000;

/// Chance, per million nemesis actions, that a copy of some node's hard state rots at rest.
const ROT_AT_REST_PER_MILLION: u64 = 200_000;

impl Simulation {
    /// A crash in the storage-fault profile: maybe rot copy A, copy B, or both (F8, F9).
    pub(super) fn rot_hard_state_at_crash(&mut self, slot: usize) {
        if !self.options.disk_faults || !self.disk_fault_rng.chance(ROT_AT_CRASH_PER_MILLION) {
            return;
        }
        let copies: &[usize] = match self.disk_fault_rng.index(3) {
            0 => &[0],
            1 => &[1],
            _ => &[0, 1],
        };
        for copy in copies {
            self.slots[slot].disk.damage_hard_state_copy(*copy);
        }
        self.trace.word(copies.len() as u64 | 1 << 57);
        let id = slot + 1;
        self.note(|| format!("disk fault: node {id} hard-state copies {copies:?} rot"));
    }

    /// A nemesis action in the storage-fault profile: maybe rot one hard-state copy of any
    /// node, running or not.
    pub(super) fn rot_hard_state_at_rest(&mut self) {
        if !self.options.disk_faults || !self.disk_fault_rng.chance(ROT_AT_REST_PER_MILLION) {
            return;
        }
        let slot = self.disk_fault_rng.index(self.slots.len());
        let copy = self.disk_fault_rng.index(2);
        self.slots[slot].disk.damage_hard_state_copy(copy);
        self.trace.word(copy as u64 | 1 << 56);
        let id = slot + 1;
        self.note(|| format!("disk fault: node {id} hard-state copy {copy} rots at rest"));
    }
}
