//! The driver's side of snapshots (rules S2–S8), as a real driver would do it, with the delays
//! and failures a real one has: a snapshot is written "in the background" and becomes durable
//! after a random delay (a crash in between loses it); reads of the snapshot file answer after
//! a short delay; received chunks go to a partial file that a crash loses, and one in fifty is
//! damaged on its way to disk, so that the file fails verification; an installed file becomes
//! durable after an fsync-like delay. The state machine is `sim::state_machine`.
//!
//! Invariants: every completion carries the incarnation that asked for it and is dropped if
//! the node crashed since; a file is checked by `snapshot_equivalence` whenever it becomes
//! durable, a disk by `compaction_bound` after every compaction and start.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::SnapshotReadError;
use crate::membership::Configuration;
use crate::output::Output;
use crate::sim::checkers::{Violation, compaction_bound};
use crate::sim::disk::SnapshotFile;
use crate::sim::state_machine::StateMachine;
use crate::types::{Entry, Incarnation, LogPosition, NodeId, SnapshotMeta};

use super::queue::Event;
use super::{Input, OUTPUT_CONTRACT, Simulation};

/// Salt of the snapshot draws' generator (`Simulation::snapshot_rng`).
pub(super) const SNAPSHOT_RNG_SALT: u64 = 0x5A4B_5407_0000_0011;

/// Chance per million that a received chunk is damaged on its way to the partial file.
const CHUNK_DAMAGE_PER_MILLION: u64 = 20_000;

/// The driver's answer to a `ReadSnapshot`.
#[derive(Debug)]
pub(super) struct ReadAnswer {
    pub(super) to: NodeId,
    pub(super) snapshot: LogPosition,
    pub(super) offset: u64,
    pub(super) result: Result<Bytes, SnapshotReadError>,
}

/// A snapshot operation the driver finishes later.
#[derive(Debug)]
pub(super) enum SnapshotDone {
    /// A `TakeSnapshot`'s file is durable.
    Taken(SnapshotFile),
    /// A `ReadSnapshot` is answered.
    Read(ReadAnswer),
    /// A received file was verified (`Some`: durable and installed) or failed verification.
    Installed(SnapshotMeta, Option<Bytes>),
}

impl Simulation {
    /// Performs one of the snapshot outputs (output.rs rules 5–9).
    pub(super) fn perform_snapshot_output(
        &mut self,
        slot: usize,
        id: NodeId,
        output: Output,
    ) -> Result<(), Violation> {
        let contract =
            |problem: String| Violation::new(OUTPUT_CONTRACT, format!("node {id}: {problem}"));
        match output {
            Output::TakeSnapshot { at, configuration } => {
                self.take_snapshot(slot, at, configuration);
            }
            Output::CompactLog { below } => {
                self.trace.word(below.0 | 1 << 60);
                let disk = &mut self.slots[slot].disk;
                disk.compact(below);
                compaction_bound::check_disk(id, disk)?;
            }
            Output::ReadSnapshot {
                to,
                snapshot,
                offset,
                len,
            } => self.read_snapshot(slot, to, snapshot, (offset, len)),
            Output::WriteSnapshotChunk {
                snapshot,
                offset,
                data,
                last,
            } => self
                .write_chunk(slot, snapshot, (offset, data, last))
                .map_err(contract)?,
            Output::RestoreStateMachine { snapshot } => {
                self.restore(slot, id, snapshot).map_err(contract)?;
            }
            other => return Err(contract(format!("not a snapshot output: {other:?}"))),
        }
        Ok(())
    }

    /// Rule S2 at the driver: freeze the state machine now (it is at `at`, the last apply) and
    /// write the file in the background.
    fn take_snapshot(&mut self, slot: usize, at: LogPosition, configuration: Configuration) {
        let s = &self.slots[slot];
        let image = s.state_machine.image();
        let covered_count = usize::try_from(at.index.0).unwrap_or(usize::MAX);
        let log = s.disk.log();
        let covered: Arc<[Entry]> = log[..covered_count.min(log.len())].into();
        self.covered.entry(at).or_insert_with(|| covered.clone());
        let file = SnapshotFile {
            meta: SnapshotMeta {
                last: at,
                size: image.len() as u64,
                configuration,
            },
            image,
            covered,
        };
        let (low, high) = self.scenario.fsync_ns;
        let delay = self.snapshot_rng.range(low, 4 * high);
        self.finish_later(slot, delay, SnapshotDone::Taken(file));
    }

    fn read_snapshot(&mut self, slot: usize, to: NodeId, snapshot: LogPosition, at: (u64, u64)) {
        let (offset, len) = at;
        let file = self.slots[slot].disk.snapshot();
        let result = match file {
            Some(file) if file.meta.last == snapshot => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = usize::try_from(offset.saturating_add(len)).unwrap_or(usize::MAX);
                file.image
                    .get(start..end)
                    .map(|_| file.image.slice(start..end))
                    .ok_or(SnapshotReadError::Failed)
            }
            _ => Err(SnapshotReadError::Replaced),
        };
        let answer = ReadAnswer {
            to,
            snapshot,
            offset,
            result,
        };
        let delay = self.snapshot_rng.range(0, self.scenario.fsync_ns.0 + 1);
        self.finish_later(slot, delay, SnapshotDone::Read(answer));
    }

    /// Rule S6 at the driver; on the last chunk, S7's verification and durability steps.
    fn write_chunk(
        &mut self,
        slot: usize,
        meta: SnapshotMeta,
        chunk: (u64, Bytes, bool),
    ) -> Result<(), String> {
        let (offset, data, last) = chunk;
        let mut data = data.to_vec();
        if self.snapshot_rng.chance(CHUNK_DAMAGE_PER_MILLION) && !data.is_empty() {
            let at = self.snapshot_rng.index(data.len());
            data[at] ^= 0x40;
        }
        let disk = &mut self.slots[slot].disk;
        let Some(file) = disk.write_chunk(meta, offset, &data, last)? else {
            return Ok(());
        };
        let verified = StateMachine::from_image(&file)
            .is_some_and(|state| state.applied == meta.last && file.len() as u64 == meta.size);
        let image = verified.then(|| Bytes::from(file));
        let (low, high) = self.scenario.fsync_ns;
        let delay = self.snapshot_rng.range(low, high);
        self.finish_later(slot, delay, SnapshotDone::Installed(meta, image));
        Ok(())
    }

    /// Rule S7 step 2 at the driver: the state machine becomes the installed snapshot's image.
    fn restore(&mut self, slot: usize, id: NodeId, meta: SnapshotMeta) -> Result<(), String> {
        let s = &mut self.slots[slot];
        let Some(file) = s.disk.snapshot().filter(|file| file.meta == meta) else {
            return Err(format!(
                "restore from {meta:?}, which is not the newest snapshot"
            ));
        };
        let Some(state) = StateMachine::from_image(&file.image) else {
            return Err(format!(
                "restore from {meta:?}, whose image does not decode"
            ));
        };
        s.state_machine = state;
        let incarnation = s.incarnation;
        self.checkers
            .state_machine
            .observe_restore(slot, incarnation, meta.last.index);
        self.note(|| format!("node {id} restores its state machine from {meta:?}"));
        self.restored_probes(slot, meta);
        Ok(())
    }

    /// Liveness counts a proposal a restore covered as applied on that node.
    fn restored_probes(&mut self, slot: usize, meta: SnapshotMeta) {
        let applied = self.checkers.state_machine.applied();
        let count = usize::try_from(meta.last.index.0).unwrap_or(usize::MAX);
        let covered: Vec<Entry> = applied[..count.min(applied.len())].to_vec();
        for entry in &covered {
            self.note_probe(slot, entry);
        }
    }

    /// Rule S8 at the driver: a start restores the state machine from the newest snapshot.
    pub(super) fn restore_at_start(&mut self, slot: usize) -> Result<(), Violation> {
        let s = &mut self.slots[slot];
        let state = match s.disk.snapshot() {
            Some(file) => StateMachine::from_image(&file.image).ok_or_else(|| {
                Violation::new(OUTPUT_CONTRACT, "a durable snapshot does not decode".into())
            })?,
            None => StateMachine::default(),
        };
        let index = state.applied.index;
        s.state_machine = state;
        let incarnation = s.incarnation;
        let Some(node) = s.node.as_ref() else {
            return Ok(());
        };
        compaction_bound::check_start(&node.status(), &s.disk)?;
        self.checkers
            .state_machine
            .observe_restore(slot, incarnation, index);
        Ok(())
    }

    /// Applies committed entries to the node's state machine and checks its state (property 9).
    pub(super) fn apply_to_state_machine(
        &mut self,
        slot: usize,
        id: NodeId,
        entries: &[Entry],
    ) -> Result<(), Violation> {
        let state_machine = &mut self.slots[slot].state_machine;
        for entry in entries {
            state_machine.apply(entry);
        }
        let equivalence = &mut self.checkers.snapshot_equivalence;
        equivalence.extend(self.checkers.state_machine.applied());
        equivalence.observe_state(id, &self.slots[slot].state_machine)
    }

    fn finish_later(&mut self, slot: usize, delay: u64, input: SnapshotDone) {
        let incarnation = self.slots[slot].incarnation;
        let event = Event::Snapshot {
            slot,
            incarnation,
            input,
        };
        self.schedule(self.now + delay, event);
    }

    /// A snapshot operation finishes, unless the node crashed since it began.
    pub(super) fn snapshot_event(
        &mut self,
        slot: usize,
        incarnation: Incarnation,
        done: SnapshotDone,
    ) -> Result<(), Violation> {
        let s = &self.slots[slot];
        if s.incarnation != incarnation || s.node.is_none() {
            return Ok(());
        }
        let id = s.config.id;
        match done {
            SnapshotDone::Taken(file) => {
                let meta = file.meta;
                self.keep_snapshot(slot, id, file)?;
                self.step(slot, Input::SnapshotDurable(meta))
            }
            SnapshotDone::Read(answer) => self.step(slot, Input::SnapshotRead(answer)),
            SnapshotDone::Installed(meta, None) => {
                self.note(|| format!("node {id}: received snapshot {meta:?} is damaged"));
                self.step(slot, Input::SnapshotInstallFailed(meta))
            }
            SnapshotDone::Installed(meta, Some(image)) => {
                let Some(covered) = self.covered.get(&meta.last).cloned() else {
                    let problem = format!("node {id} installed {meta:?}, which nobody took");
                    return Err(Violation::new(OUTPUT_CONTRACT, problem));
                };
                let file = SnapshotFile {
                    meta,
                    image,
                    covered,
                };
                self.keep_snapshot(slot, id, file)?;
                self.step(slot, Input::SnapshotInstalled(meta))
            }
        }
    }

    /// The file is durable: property 9 judges it, and it becomes the disk's newest snapshot.
    fn keep_snapshot(
        &mut self,
        slot: usize,
        id: NodeId,
        file: SnapshotFile,
    ) -> Result<(), Violation> {
        self.trace.word(file.meta.last.index.0 | 1 << 59);
        self.note(|| format!("node {id}: snapshot {:?} durable", file.meta));
        let equivalence = &mut self.checkers.snapshot_equivalence;
        equivalence.extend(self.checkers.state_machine.applied());
        equivalence.observe_snapshot(id, file.meta, &file.image)?;
        let disk = &mut self.slots[slot].disk;
        disk.keep_snapshot(file);
        compaction_bound::check_disk(id, disk)
    }
}
