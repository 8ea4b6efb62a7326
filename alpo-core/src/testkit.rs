//! A hand-driven cluster of nodes for tests and examples: it performs each node's outputs in
//! order, as a real driver must, and lets the test choose which messages arrive, when storage
//! reports durability, and when servers crash.
//!
//! It is deliberately simple and fully deterministic: messages wait in one FIFO list until the
//! test delivers or drops them; a disk holds a synced prefix and an unsynced tail that a crash
//! loses. The seeded simulator (module `sim`) drives nodes at random; this kit drives them by
//! hand, for the scenarios of the protocol and the rule tests.
//!
//! Invariant: every output is performed in list order, per the contract in [`crate::output`]:
//! a `SaveHardState` is durable at once, log writes are durable only after [`Cluster::sync`]
//! (or at once with [`Cluster::auto_sync`]), messages go to the in-flight list.
//!
//! Snapshots (rules S2–S8): the state machine is the list of applied entries, and a snapshot's
//! image is that list encoded ([`encode_image`]). A `TakeSnapshot` becomes durable at once, or,
//! with [`Cluster::hold_snapshots`], when the test calls [`Cluster::finish_snapshot`]; a crash
//! loses a held one. `ReadSnapshot` is answered from the disk's snapshot right after the
//! outputs are performed; received chunks go to a partial file, lost on a crash, and the last
//! one installs the file (or fails verification once, with [`Cluster::damage_next_install`]).
//! A `ReadLog` (rule S9) is answered from the disk's log as it stands after the output list,
//! or, with [`Cluster::hold_log_reads`], when the test calls [`Cluster::answer_log_read`].
//! A start hands the node its whole log as the persisted tail.
//!
//! Test support: a call naming a server that is not in the cluster (or not running) is a bug in
//! the test and panics with a message saying so.

#![allow(clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use crate::config::Config;
use crate::error::ProposeError;
use crate::faulty::FaultyEntry;
use crate::log_read::{LogFault, LogReadId, LogReadResult};
use crate::membership::{ConfigChange, ConfigChangeError, Configuration};
use crate::message::{Message, MessageBody};
use crate::node::{Node, Proposal, ReadError, ReadId, ReadMode, Role};
use crate::output::Output;
use crate::types::{
    Entry, EntryKind, HardState, Incarnation, Instant, LogIndex, LogPosition, NodeId, SnapshotMeta,
    Term,
};
use crate::types::{Persisted, PersistedLog};

/// Deliveries per `deliver_all` call at most, so a livelock fails a test instead of hanging it.
pub const DELIVERY_COUNT_MAX: usize = 100_000;

/// A normal entry at `(index, term)` whose payload names its position (`"index.term"`), so a
/// test can tell every entry apart by its bytes.
#[must_use]
pub fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index: LogIndex(index),
        term: Term(term),
        kind: EntryKind::Normal,
        payload: Bytes::from(format!("{index}.{term}")),
    }
}

/// [`entry`] for every index of `from..=to`, all of term `term`.
#[must_use]
pub fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to).map(|index| entry(index, term)).collect()
}

/// One server's disk: the hard state (always durable), a log with a synced prefix, and the
/// newest durable snapshot file.
#[derive(Clone, Debug, Default)]
pub struct Disk {
    /// The durable term and vote.
    pub hard_state: HardState,
    /// The log as written, synced or not; it starts at the first retained index.
    pub log: Vec<Entry>,
    /// How many entries of `log` are synced (survive a crash).
    pub synced: usize,
    /// The last start's incarnation.
    pub incarnation: Incarnation,
    /// The newest durable snapshot: its meta and file bytes.
    pub snapshot: Option<(SnapshotMeta, Bytes)>,
    /// A snapshot file being received (lost on a crash): its meta and the bytes so far.
    pub partial: Option<(SnapshotMeta, Vec<u8>)>,
    /// The durable term ceiling (rule F8), kept apart from the hard state.
    pub term_ceiling: Term,
    /// Both hard-state copies are damaged (rule F9): set by a test between a crash and a
    /// start; cleared by the next `SaveHardState`.
    pub hard_state_lost: bool,
    /// Issue 13: records damaged at rest ([`Cluster::damage_entry`]), by index, with what
    /// their identifiers still say; the record itself holds other bytes until repaired.
    pub faulty: BTreeMap<LogIndex, FaultyEntry>,
}

/// A hand-driven cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Logical time.
    pub now: Instant,
    /// The running nodes (a crashed node is absent).
    pub nodes: BTreeMap<NodeId, Node>,
    /// Every server's disk.
    pub disks: BTreeMap<NodeId, Disk>,
    /// Messages sent and not yet delivered or dropped, in send order.
    pub in_flight: Vec<Message>,
    /// Entries each server applied, in order, across restarts (reset by a restart).
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Whether log writes become durable (and are reported) as soon as they are performed.
    pub auto_sync: bool,
    /// Whether nodes (re)started from now on record an input trace ([`Node::new_recorded`]).
    pub record: bool,
    /// Every output each server's node produced, in order, across restarts.
    pub outputs: BTreeMap<NodeId, Vec<Output>>,
    /// Whether `TakeSnapshot`s wait for [`Cluster::finish_snapshot`] instead of becoming
    /// durable at once.
    pub hold_snapshots: bool,
    /// Snapshots taken and not yet durable (with `hold_snapshots`), per server.
    pub held_snapshots: BTreeMap<NodeId, Vec<(SnapshotMeta, Bytes)>>,
    /// Whether `ReadLog`s wait in `held_log_reads` for [`Cluster::answer_log_read`] instead of
    /// being answered from the disk right after the output list (rule S9).
    pub hold_log_reads: bool,
    /// `ReadLog`s not yet answered (with `hold_log_reads`), per server, in output order.
    pub held_log_reads: BTreeMap<NodeId, Vec<HeldLogRead>>,
    /// Servers whose next received snapshot file fails verification once.
    pub damage_next_install: Vec<NodeId>,
    configs: BTreeMap<NodeId, Config>,
    /// Every read's outcome (rules Q1–Q3), in the order nodes produced them.
    pub reads: Vec<ReadOutcome>,
}

/// How one read ended: `ReadReady` or `ReadFailed`, and the node's applied index when its
/// driver performed the output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The node that answered.
    pub node: NodeId,
    /// The read.
    pub id: ReadId,
    /// The read index, or why the read failed.
    pub result: Result<LogIndex, ReadError>,
    /// The last index the node's state machine held when the output was performed.
    pub applied: LogIndex,
}

/// A `ReadLog` held for [`Cluster::answer_log_read`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldLogRead {
    /// The read.
    pub id: LogReadId,
    /// The first index asked for.
    pub from: LogIndex,
    /// The last index asked for at most.
    pub to: LogIndex,
    /// Payload bytes at most.
    pub max_bytes: u64,
}

/// What performing one output leaves for the node to hear after the whole list is performed.
enum Report {
    LogRead(LogReadId, LogReadResult),
    /// Issue 13: a read met a damaged record (`Node::on_entry_faulty`, then the answer).
    FaultyRead(FaultyEntry, LogReadId, LogIndex),
    /// Issue 13: a `RepairEntry` was checked against the identifier and written (`true`) or
    /// refused (`false`).
    Repair(LogPosition, bool),
    SnapshotDurable(SnapshotMeta),
    SnapshotRead {
        to: NodeId,
        snapshot: LogPosition,
        offset: u64,
        result: Result<Bytes, crate::error::SnapshotReadError>,
    },
    Installed(SnapshotMeta),
    InstallFailed(SnapshotMeta),
}

/// The image of a state machine that applied `entries`: each entry as index, term (`u64`
/// little-endian), kind (`u8`), payload length (`u32`) and payload.
pub fn encode_image(entries: &[Entry]) -> Bytes {
    let mut bytes = Vec::new();
    for entry in entries {
        bytes.extend_from_slice(&entry.index.0.to_le_bytes());
        bytes.extend_from_slice(&entry.term.0.to_le_bytes());
        bytes.push(entry.kind as u8);
        let length = u32::try_from(entry.payload.len()).expect("test: small payload");
        bytes.extend_from_slice(&length.to_le_bytes());
        bytes.extend_from_slice(&entry.payload);
    }
    Bytes::from(bytes)
}

/// The applied entries an image holds; `None` if the bytes are not a whole image.
pub fn decode_image(mut bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut entries = Vec::new();
    while !bytes.is_empty() {
        let header = bytes.get(..21)?;
        let index = LogIndex(u64::from_le_bytes(header[..8].try_into().ok()?));
        let term = Term(u64::from_le_bytes(header[8..16].try_into().ok()?));
        let kind = EntryKind::from_byte(header[16])?;
        let length = u32::from_le_bytes(header[17..21].try_into().ok()?) as usize;
        let payload = bytes.get(21..21 + length)?;
        entries.push(Entry {
            index,
            term,
            kind,
            payload: Bytes::copy_from_slice(payload),
        });
        bytes = &bytes[21 + length..];
    }
    Some(entries)
}

impl Disk {
    fn perform(&mut self, output: &Output) {
        match output {
            Output::SaveHardState(hard_state) => {
                self.hard_state = *hard_state;
                self.hard_state_lost = false;
            }
            Output::SaveTermCeiling { ceiling } => self.term_ceiling = *ceiling,
            Output::TruncateLog { from } => {
                self.log.retain(|entry| entry.index < *from);
                self.synced = self.synced.min(self.log.len());
                self.faulty.retain(|index, _| index < from);
            }
            Output::AppendLog { entries } => self.log.extend(entries.iter().cloned()),
            Output::CompactLog { below } => {
                let dropped = self.log.iter().take_while(|e| e.index < *below).count();
                self.log.drain(..dropped);
                self.synced = self.synced.saturating_sub(dropped);
                self.faulty.retain(|index, _| index >= below);
            }
            _ => {}
        }
    }

    /// Issue 13, rule F12 at the driver: checks `entry` against the damaged record's
    /// identifier and rewrites it in place (durable at once); whether it was written.
    fn repair(&mut self, entry: &Entry) -> bool {
        let Some(faulty) = self.faulty.get(&entry.index) else {
            return false;
        };
        if !faulty.repaired_by(entry) {
            return false;
        }
        self.faulty.remove(&entry.index);
        if let Some(slot) = self.log.iter_mut().find(|e| e.index == entry.index) {
            *slot = entry.clone();
        }
        true
    }

    /// Rule S9 at the driver: the disk's answer to `read` now.
    pub fn read(&self, read: HeldLogRead) -> LogReadResult {
        if let Some((index, _)) = self.faulty.range(read.from..=read.to).next() {
            if *index == read.from {
                return LogReadResult::Fault(*index);
            }
            // The records before the damaged one.
            let read = HeldLogRead {
                to: index.prev(),
                ..read
            };
            return self.read(read);
        }
        if self
            .log
            .first()
            .is_some_and(|first| read.from < first.index)
        {
            return LogReadResult::Compacted;
        }
        let mut bytes = 0;
        let mut entries = Vec::new();
        for entry in self
            .log
            .iter()
            .filter(|e| e.index >= read.from && e.index <= read.to)
        {
            let size = entry.payload.len() as u64;
            if !entries.is_empty() && bytes + size > read.max_bytes {
                break;
            }
            bytes += size;
            entries.push(entry.clone());
        }
        assert!(!entries.is_empty(), "test: a read within the log");
        LogReadResult::Entries(entries)
    }

    fn last_position(&self) -> LogPosition {
        self.log
            .last()
            .map_or(LogPosition::default(), Entry::position)
    }

    /// Makes `meta` the newest snapshot, unless a newer one is already there.
    fn keep_snapshot(&mut self, meta: SnapshotMeta, image: Bytes) {
        let newer = self
            .snapshot
            .as_ref()
            .is_none_or(|(old, _)| old.last.index < meta.last.index);
        if newer {
            self.snapshot = Some((meta, image));
        }
    }

    /// Rule S6 at the driver: writes a chunk into the partial file of `meta` (another
    /// snapshot's partial file is discarded). Returns the whole file after the last chunk.
    fn write_chunk(&mut self, meta: SnapshotMeta, offset: u64, data: &[u8]) -> Vec<u8> {
        if self.partial.as_ref().is_none_or(|(held, _)| *held != meta) {
            self.partial = Some((meta, Vec::new()));
        }
        let (_, bytes) = self.partial.as_mut().expect("test: just set");
        bytes.truncate(usize::try_from(offset).expect("test: small offset"));
        bytes.extend_from_slice(data);
        bytes.clone()
    }
}

impl Cluster {
    /// `size` servers with ids 1..=size, LAN timing, the given seed, all started at time 0.
    pub fn new(size: u64, seed: u64) -> Cluster {
        Cluster::with_config(size, |id, members| Config::lan(id, members, seed))
    }

    /// `size` servers configured by `make(id, members)`.
    pub fn with_config(size: u64, make: impl Fn(NodeId, Vec<NodeId>) -> Config) -> Cluster {
        Cluster::build(size, false, make)
    }

    /// Like [`Cluster::with_config`], with every node recording its input trace.
    pub fn with_config_recorded(
        size: u64,
        make: impl Fn(NodeId, Vec<NodeId>) -> Config,
    ) -> Cluster {
        Cluster::build(size, true, make)
    }

    /// Like [`Cluster::new`], with every node recording its input trace.
    pub fn new_recorded(size: u64, seed: u64) -> Cluster {
        Cluster::build(size, true, |id, members| Config::lan(id, members, seed))
    }

    fn build(size: u64, record: bool, make: impl Fn(NodeId, Vec<NodeId>) -> Config) -> Cluster {
        let members: Vec<NodeId> = (1..=size).map(NodeId).collect();
        let mut cluster = Cluster {
            now: Instant(0),
            nodes: BTreeMap::new(),
            disks: BTreeMap::new(),
            in_flight: Vec::new(),
            applied: BTreeMap::new(),
            auto_sync: true,
            record,
            outputs: BTreeMap::new(),
            hold_snapshots: false,
            held_snapshots: BTreeMap::new(),
            hold_log_reads: false,
            held_log_reads: BTreeMap::new(),
            damage_next_install: Vec::new(),
            configs: BTreeMap::new(),
            reads: Vec::new(),
        };
        for id in &members {
            let config = make(*id, members.clone());
            cluster.configs.insert(*id, config);
            cluster.disks.insert(*id, Disk::default());
            cluster.start(*id);
        }
        cluster
    }

    /// The node `id` (panics if it is down: a test bug).
    pub fn node(&self, id: u64) -> &Node {
        &self.nodes[&NodeId(id)]
    }

    /// Server `id`, to call what a driver calls between inputs (`Node::take_trace`).
    pub fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&NodeId(id)).expect("test: running")
    }

    /// Starts (or restarts) server `id` from its disk, with a new incarnation.
    pub fn start(&mut self, id: NodeId) {
        let disk = self.disks.get_mut(&id).expect("test: known server");
        disk.incarnation = Incarnation(disk.incarnation.0 + 1);
        // Issue 13: damaged records start faulty; the tail holds only what lies above them.
        let mut log = PersistedLog::from_entries(disk.log.clone());
        if let Some((last_faulty, _)) = disk.faulty.last_key_value() {
            log.tail.retain(|entry| entry.index > *last_faulty);
        }
        log.faulty = disk.faulty.values().copied().collect();
        let persisted = Persisted {
            hard_state: disk.hard_state,
            snapshot: disk.snapshot.as_ref().map(|(meta, _)| *meta),
            log,
            incarnation: disk.incarnation,
            term_ceiling: disk.term_ceiling,
            hard_state_lost: disk.hard_state_lost,
        };
        // S8: the state machine starts from the newest snapshot's image.
        let restored = disk
            .snapshot
            .as_ref()
            .map(|(_, image)| decode_image(image).expect("test: a valid image"))
            .unwrap_or_default();
        let config = self.configs[&id].clone();
        let node = if self.record {
            Node::new_recorded(config, persisted, self.now)
        } else {
            Node::new(config, persisted, self.now)
        };
        let node = node.expect("test: valid configuration");
        self.nodes.insert(id, node);
        self.applied.insert(id, restored);
        // A start may ask the driver to redo an install's truncation (S7 step 1).
        self.perform(id);
    }

    /// Issue 13: the synced record at `index` on server `id`'s disk rots at rest (its
    /// identifier stays intact): its payload becomes other bytes, and it is faulty from the
    /// next read or start on.
    pub fn damage_entry(&mut self, id: u64, index: u64) {
        let disk = self.disks.get_mut(&NodeId(id)).expect("test: known server");
        let position = disk
            .log
            .iter()
            .position(|entry| entry.index == LogIndex(index))
            .expect("test: a record on the disk");
        assert!(position < disk.synced, "test: damage a synced record");
        let record = &mut disk.log[position];
        disk.faulty.insert(record.index, FaultyEntry::of(record));
        record.payload = Bytes::from(format!("rotten {index}"));
    }

    /// Crashes server `id`: it stops, and its unsynced log writes are lost.
    pub fn crash(&mut self, id: u64) {
        let id = NodeId(id);
        self.nodes.remove(&id);
        let disk = self.disks.get_mut(&id).expect("test: known server");
        disk.log.truncate(disk.synced);
        disk.partial = None;
        self.held_snapshots.remove(&id);
    }

    /// Takes and performs the outputs of node `id`, in order, then reports what the driver
    /// finished (snapshots durable, snapshot reads, installs) and performs again.
    pub fn perform(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        let outputs = node.take_outputs();
        let seen = self.outputs.entry(id).or_default();
        seen.extend(outputs.iter().cloned());
        let mut reports = Vec::new();
        for output in outputs {
            self.disks
                .get_mut(&id)
                .expect("test: known server")
                .perform(&output);
            match output {
                Output::Send(message) => self.in_flight.push(message),
                Output::ReadReady { id: read, index } => self.record_read(id, read, Ok(index)),
                Output::ReadFailed { id: read, error } => self.record_read(id, read, Err(error)),
                Output::Apply { entries } => {
                    self.applied
                        .get_mut(&id)
                        .expect("test: known server")
                        .extend(entries);
                }
                other => reports.extend(self.perform_snapshot_output(id, other)),
            }
        }
        if self.auto_sync {
            self.sync(id.0);
        }
        for report in reports {
            self.report(id, report);
        }
    }

    fn record_read(&mut self, node: NodeId, id: ReadId, result: Result<LogIndex, ReadError>) {
        let applied = self.applied[&node]
            .last()
            .map_or(LogIndex(0), |entry| entry.index);
        self.reads.push(ReadOutcome {
            node,
            id,
            result,
            applied,
        });
    }

    /// Asks server `id` for a read (`Node::read_index`) and performs its outputs.
    pub fn read(&mut self, id: u64, read: u64, mode: ReadMode) {
        let now = self.now;
        let node = self
            .nodes
            .get_mut(&NodeId(id))
            .expect("test: the server is up");
        node.read_index(now, ReadId(read), mode);
        self.perform(NodeId(id));
    }

    /// The outcome of read `read` on server `id`, if it ended.
    #[must_use]
    pub fn read_outcome(&self, id: u64, read: u64) -> Option<&ReadOutcome> {
        self.reads
            .iter()
            .find(|outcome| outcome.node == NodeId(id) && outcome.id == ReadId(read))
    }

    /// Performs the snapshot outputs (rules S2–S7) of server `id`.
    fn perform_snapshot_output(&mut self, id: NodeId, output: Output) -> Option<Report> {
        let disk = self.disks.get_mut(&id).expect("test: known server");
        match output {
            Output::TakeSnapshot { at, configuration } => self.take_snapshot(id, at, configuration),
            Output::ReadSnapshot {
                to,
                snapshot,
                offset,
                len,
            } => {
                let result = match &disk.snapshot {
                    Some((meta, image)) if meta.last == snapshot => {
                        let start = usize::try_from(offset).expect("test: small");
                        let end = usize::try_from(offset + len).expect("test: small");
                        Ok(image.slice(start..end))
                    }
                    _ => Err(crate::error::SnapshotReadError::Replaced),
                };
                Some(Report::SnapshotRead {
                    to,
                    snapshot,
                    offset,
                    result,
                })
            }
            Output::WriteSnapshotChunk {
                snapshot,
                offset,
                data,
                last,
            } => {
                let file = disk.write_chunk(snapshot, offset, &data);
                if !last {
                    return None;
                }
                disk.partial = None;
                let damaged = self.damage_next_install.contains(&id);
                self.damage_next_install.retain(|d| *d != id);
                if damaged || decode_image(&file).is_none() {
                    return Some(Report::InstallFailed(snapshot));
                }
                disk.keep_snapshot(snapshot, Bytes::from(file));
                Some(Report::Installed(snapshot))
            }
            output @ (Output::ReadLog { .. } | Output::RepairEntry { .. }) => {
                self.perform_log_output(id, output)
            }
            Output::RestoreStateMachine { snapshot } => {
                let (meta, image) = disk.snapshot.as_ref().expect("test: installed snapshot");
                assert_eq!(*meta, snapshot, "test: restore the newest snapshot");
                let restored = decode_image(image).expect("test: a valid image");
                self.applied.insert(id, restored);
                None
            }
            _ => None,
        }
    }

    /// Rule S9 and issue 13 at the driver: a `ReadLog` (answered now or held), a
    /// `RepairEntry` (checked against the identifier, written at once).
    fn perform_log_output(&mut self, id: NodeId, output: Output) -> Option<Report> {
        let disk = self.disks.get_mut(&id).expect("test: known server");
        match output {
            Output::ReadLog {
                id: read,
                from,
                to,
                max_bytes,
            } => {
                let held = HeldLogRead {
                    id: read,
                    from,
                    to,
                    max_bytes,
                };
                if self.hold_log_reads {
                    self.held_log_reads.entry(id).or_default().push(held);
                    return None;
                }
                match disk.read(held) {
                    LogReadResult::Fault(index) if disk.faulty.contains_key(&index) => {
                        Some(Report::FaultyRead(disk.faulty[&index], read, index))
                    }
                    result => Some(Report::LogRead(read, result)),
                }
            }
            Output::RepairEntry { entry } => {
                let written = disk.repair(&entry);
                Some(Report::Repair(entry.position(), written))
            }
            _ => None,
        }
    }

    /// Rule S2 at the driver: the image of the applied entries up to `at`, durable at once or
    /// held for [`Cluster::finish_snapshot`].
    fn take_snapshot(
        &mut self,
        id: NodeId,
        at: LogPosition,
        configuration: Configuration,
    ) -> Option<Report> {
        let applied = &self.applied[&id];
        let covered: Vec<Entry> = applied
            .iter()
            .filter(|e| e.index <= at.index)
            .cloned()
            .collect();
        let image = encode_image(&covered);
        let meta = SnapshotMeta {
            last: at,
            size: image.len() as u64,
            configuration,
        };
        if self.hold_snapshots {
            self.held_snapshots
                .entry(id)
                .or_default()
                .push((meta, image));
            return None;
        }
        let disk = self.disks.get_mut(&id).expect("test: known server");
        disk.keep_snapshot(meta, image);
        Some(Report::SnapshotDurable(meta))
    }

    fn report(&mut self, id: NodeId, report: Report) {
        let now = self.now;
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        match report {
            Report::LogRead(read, result) => {
                node.on_log_read(now, read, result)
                    .expect("test: the disk answers without faults");
            }
            Report::FaultyRead(faulty, read, index) => {
                node.on_entry_faulty(now, faulty);
                node.on_log_read(now, read, LogReadResult::Fault(index))
                    .expect("test: a reported faulty entry does not stop the node");
            }
            Report::Repair(position, true) => node.on_entry_repaired(now, position),
            Report::Repair(position, false) => node.on_entry_repair_failed(now, position),
            Report::SnapshotDurable(meta) => node.on_snapshot_durable(now, meta),
            Report::SnapshotRead {
                to,
                snapshot,
                offset,
                result,
            } => node.on_snapshot_read(now, to, snapshot, offset, result),
            Report::Installed(meta) => node.on_snapshot_installed(now, meta),
            Report::InstallFailed(meta) => node.on_snapshot_install_failed(now, meta),
        }
        self.perform(id);
    }

    /// Asks server `id` for a snapshot now (`Node::request_snapshot`) and performs its outputs.
    pub fn request_snapshot(&mut self, id: u64) -> Option<LogPosition> {
        let now = self.now;
        let node = self
            .nodes
            .get_mut(&NodeId(id))
            .expect("test: the server is up");
        let at = node.request_snapshot(now);
        self.perform(NodeId(id));
        at
    }

    /// Makes the oldest held snapshot of server `id` durable and reports it (S3 step 5).
    pub fn finish_snapshot(&mut self, id: u64) {
        let id = NodeId(id);
        let held = self.held_snapshots.entry(id).or_default();
        if held.is_empty() {
            return;
        }
        let (meta, image) = held.remove(0);
        let disk = self.disks.get_mut(&id).expect("test: known server");
        disk.keep_snapshot(meta, image);
        self.report(id, Report::SnapshotDurable(meta));
    }

    /// Answers the `position`th held `ReadLog` of server `id` with `result` (its disk's answer
    /// now when `None`), and performs the outputs; returns the node's verdict.
    pub fn answer_log_read(
        &mut self,
        id: u64,
        position: usize,
        result: Option<LogReadResult>,
    ) -> Result<(), LogFault> {
        let id = NodeId(id);
        let held = self
            .held_log_reads
            .get_mut(&id)
            .expect("test: a held read")
            .remove(position);
        let result = result.unwrap_or_else(|| self.disks[&id].read(held));
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("test: the server is up");
        let verdict = node.on_log_read(now, held.id, result);
        self.perform(id);
        verdict
    }

    /// Makes server `id`'s log writes durable and tells the node.
    pub fn sync(&mut self, id: u64) {
        let id = NodeId(id);
        let disk = self.disks.get_mut(&id).expect("test: known server");
        if disk.synced == disk.log.len() {
            return;
        }
        disk.synced = disk.log.len();
        let position = disk.last_position();
        let now = self.now;
        if let Some(node) = self.nodes.get_mut(&id) {
            node.on_persisted(now, position);
            self.perform(id);
        }
    }

    /// Moves time forward by `by` and ticks every running node whose deadline has come.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.nodes.get_mut(&id).expect("test: running");
            if node.next_timeout().is_some_and(|due| due <= self.now) {
                node.tick(self.now);
                self.perform(id);
            }
        }
    }

    /// Moves time to server `id`'s next deadline (if later than now) and ticks only that node,
    /// so a test chooses who times out first.
    pub fn timeout(&mut self, id: u64) {
        let id = NodeId(id);
        let node = self.nodes.get_mut(&id).expect("test: running");
        if let Some(due) = node.next_timeout() {
            self.now = self.now.max(due);
        }
        node.tick(self.now);
        self.perform(id);
    }

    /// Delivers the in-flight message at `position` (to a running node; else it is lost).
    pub fn deliver_at(&mut self, position: usize) {
        let message = self.in_flight.remove(position);
        let to = message.to;
        if let Some(node) = self.nodes.get_mut(&to) {
            node.on_message(self.now, message);
            self.perform(to);
        }
    }

    /// Delivers every in-flight message accepted by `keep` (dropping the others), including
    /// those sent in reply, until none is left.
    pub fn deliver_where(&mut self, keep: impl Fn(&Message) -> bool) {
        for _ in 0..DELIVERY_COUNT_MAX {
            if self.in_flight.is_empty() {
                return;
            }
            if keep(&self.in_flight[0]) {
                self.deliver_at(0);
            } else {
                self.in_flight.remove(0);
            }
        }
        panic!("test: messages still flowing after {DELIVERY_COUNT_MAX} deliveries");
    }

    /// Delivers everything, including replies, until the network is quiet.
    pub fn deliver_all(&mut self) {
        self.deliver_where(|_| true);
    }

    /// Drops every in-flight message.
    pub fn drop_all(&mut self) {
        self.in_flight.clear();
    }

    /// Advances time in steps of 10 ms, delivering everything after each, until some server
    /// leads, and returns it; `None` after `limit`.
    pub fn elect(&mut self, limit: Duration) -> Option<NodeId> {
        let step = Duration::from_millis(10);
        let mut waited = Duration::ZERO;
        while waited < limit {
            self.advance(step);
            self.deliver_all();
            if let Some(leader) = self.leader() {
                return Some(leader);
            }
            waited += step;
        }
        None
    }

    /// The running server that is leader in the highest term, if any.
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|node| node.status().role == Role::Leader)
            .max_by_key(|node| node.status().term)
            .map(|node| node.status().id)
    }

    /// Proposes `payload` at server `id` and performs its outputs.
    pub fn propose(&mut self, id: NodeId, payload: &'static str) -> Result<Proposal, ProposeError> {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("test: running");
        let result = node.propose(now, Bytes::from_static(payload.as_bytes()));
        self.perform(id);
        result
    }

    /// Adds server `id` with an empty disk and no configuration (rule M11: a server added later
    /// learns its configuration from the leader), configured like server 1 otherwise, and starts
    /// it.
    pub fn add_server(&mut self, id: u64) {
        let id = NodeId(id);
        let mut config = self.configs[&NodeId(1)].clone();
        config.id = id;
        config.members.clear();
        self.configs.insert(id, config);
        self.disks.insert(id, Disk::default());
        self.start(id);
    }

    /// Asks server `id` for a membership change and performs its outputs.
    pub fn change(&mut self, id: NodeId, change: ConfigChange) -> Result<(), ConfigChangeError> {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("test: running");
        let result = node.propose_config_change(now, change);
        self.perform(id);
        result
    }

    /// Asks server `id` to transfer its leadership and performs its outputs.
    pub fn transfer(
        &mut self,
        id: NodeId,
        target: Option<NodeId>,
    ) -> Result<NodeId, crate::error::TransferError> {
        let now = self.now;
        let node = self.nodes.get_mut(&id).expect("test: running");
        let result = node.transfer_leadership(now, target);
        self.perform(id);
        result
    }

    /// The payloads server `id` applied, as strings (no-ops left out).
    pub fn applied_payloads(&self, id: u64) -> Vec<String> {
        self.applied[&NodeId(id)]
            .iter()
            .filter(|entry| entry.kind == crate::types::EntryKind::Normal)
            .map(|entry| String::from_utf8_lossy(&entry.payload).into_owned())
            .collect()
    }

    /// Messages in flight of one kind from `from` to `to`, for assertions.
    pub fn count_in_flight(&self, matches: impl Fn(&Message) -> bool) -> usize {
        self.in_flight.iter().filter(|m| matches(m)).count()
    }

    /// The newest durable snapshot's meta on server `id`'s disk.
    pub fn snapshot_on_disk(&self, id: u64) -> Option<SnapshotMeta> {
        self.disks[&NodeId(id)]
            .snapshot
            .as_ref()
            .map(|(meta, _)| *meta)
    }

    /// The commit index of server `id`.
    pub fn commit_index(&self, id: u64) -> LogIndex {
        self.node(id).status().commit_index
    }
}

/// The reasons of the vote replies among `outputs`, in order (what a server answered).
#[must_use]
pub fn vote_reasons(outputs: Vec<Output>) -> Vec<crate::message::VoteReason> {
    outputs
        .into_iter()
        .filter_map(|output| match output {
            Output::Send(Message {
                body: MessageBody::VoteReply(reply),
                ..
            }) => Some(reply.reason),
            _ => None,
        })
        .collect()
}

/// Whether `message` is an Append (heartbeats included).
pub fn is_append(message: &Message) -> bool {
    matches!(message.body, MessageBody::Append(_))
}
