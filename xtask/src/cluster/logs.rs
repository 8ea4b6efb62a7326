//! The committed log of a cluster test, as it can still be checked once nodes compact: a tailer
//! that reads committed entries through the client API while the run goes on (before a
//! snapshot lets the nodes drop them), a watcher that counts the snapshots the nodes take and
//! install, and the check of every node's data directory after the run.
//!
//! Invariants: the tail holds committed entries in index order with no index twice; an index
//! the tailer could not read from any node before it was compacted everywhere is recorded in
//! `gaps`, never guessed. The data directories are read only after every node was killed, so
//! no node is writing them. The disk check compares each index only between nodes that still
//! hold it, and requires of each node: its newest snapshot is at most the commit index, its log
//! starts no later than right after its snapshot, and snapshot and log together reach the
//! commit index.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use alpo_core::{ClusterId, LogIndex};
use alpo_node::client_protocol::ReadEntry;
use alpo_node::{Client, ClientOptions};

use super::process::CLUSTER_ID;
use super::workload::new_client;

/// Entries asked for per read request.
const READ_BATCH: u32 = 1_000;
/// Pause when the tail has caught up with the commit index, or every node failed.
const IDLE_PAUSE: Duration = Duration::from_millis(20);

/// The committed entries read so far, and the index ranges that could not be read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tail {
    /// Committed entries, by strictly increasing index.
    pub(crate) entries: Vec<ReadEntry>,
    /// Inclusive index ranges compacted on every node the tailer asked before it read them.
    pub(crate) gaps: Vec<(u64, u64)>,
}

impl Tail {
    /// The next index to read.
    pub(crate) fn next(&self) -> u64 {
        let last_entry = self.entries.last().map_or(0, |entry| entry.index.0);
        let last_gap = self.gaps.last().map_or(0, |gap| gap.1);
        last_entry.max(last_gap) + 1
    }

    /// Adds a batch read from `next()`: entries beyond a hole are preceded by a gap.
    pub(crate) fn push(&mut self, batch: Vec<ReadEntry>) {
        for entry in batch {
            let next = self.next();
            if entry.index.0 < next {
                continue;
            }
            if next < entry.index.0 {
                self.gaps.push((next, entry.index.0 - 1));
            }
            self.entries.push(entry);
        }
    }

    /// Marks `next()..until` as unreadable.
    pub(crate) fn skip_to(&mut self, until: u64) {
        let next = self.next();
        if next < until {
            self.gaps.push((next, until - 1));
        }
    }

    /// How many indices fall in a gap.
    pub(crate) fn unchecked(&self) -> u64 {
        self.gaps.iter().map(|(from, to)| to - from + 1).sum()
    }

    /// True when `index` is in a gap.
    pub(crate) fn in_gap(&self, index: u64) -> bool {
        self.gaps
            .iter()
            .any(|(from, to)| (*from..=*to).contains(&index))
    }
}

/// Reads committed entries from whichever node answers.
pub(crate) struct Tailer {
    endpoints: Vec<SocketAddr>,
    clients: Vec<Option<Client>>,
    current: usize,
    failures: usize,
    tail: Tail,
}

fn tail_options() -> ClientOptions {
    let mut options = ClientOptions::new(ClusterId(CLUSTER_ID));
    options.attempt_timeout = Duration::from_millis(300);
    options.request_timeout = Duration::from_millis(600);
    options.retry_pause = Duration::from_millis(20);
    options
}

impl Tailer {
    /// A tailer starting at index 1.
    pub(crate) fn new(endpoints: Vec<SocketAddr>) -> Tailer {
        Tailer {
            clients: endpoints.iter().map(|_| None).collect(),
            endpoints,
            current: 0,
            failures: 0,
            tail: Tail::default(),
        }
    }

    /// Reads on until `stop`, then returns itself for the final catch-up.
    pub(crate) fn spawn(mut self, stop: Arc<AtomicBool>) -> Result<JoinHandle<Tailer>> {
        thread::Builder::new()
            .name("log-tailer".into())
            .spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if !self.step() {
                        thread::sleep(IDLE_PAUSE);
                    }
                }
                self
            })
            .context("starting the log tailer")
    }

    /// Reads until the tail reaches `commit` (the converged cluster's); fails after `timeout`.
    pub(crate) fn finish(mut self, commit: u64, timeout: Duration) -> Result<Tail> {
        let deadline = Instant::now() + timeout;
        while self.tail.next() <= commit {
            if deadline < Instant::now() {
                anyhow::bail!(
                    "the log tailer could not read index {} of {commit} within {timeout:?}",
                    self.tail.next()
                );
            }
            if !self.step() {
                thread::sleep(IDLE_PAUSE);
            }
        }
        Ok(self.tail)
    }

    fn client(&mut self, at: usize) -> Option<&mut Client> {
        if self.clients[at].is_none() {
            self.clients[at] = new_client(vec![self.endpoints[at]], tail_options()).ok();
        }
        self.clients[at].as_mut()
    }

    fn read(&mut self, at: usize, from: u64) -> Option<(Vec<ReadEntry>, u64)> {
        let result = self.client(at)?.read(LogIndex(from), READ_BATCH);
        match result {
            Ok((batch, commit)) => Some((batch, commit.0)),
            Err(_) => {
                // A failed call leaves the connection broken: start afresh next time.
                self.clients[at] = None;
                None
            }
        }
    }

    /// One read; true if it made progress.
    fn step(&mut self) -> bool {
        let next = self.tail.next();
        let at = self.current;
        if let Some((batch, _)) = self.read(at, next) {
            self.failures = 0;
            let progressed = !batch.is_empty();
            self.tail.push(batch);
            return progressed;
        }
        self.failures += 1;
        self.current = (self.current + 1) % self.endpoints.len();
        if self.failures < self.endpoints.len() {
            return false;
        }
        // Every node failed at `next`: those that answer above it have compacted it away.
        self.failures = 0;
        for at in 0..self.endpoints.len() {
            if let Some(lowest) = self.lowest_readable(at, next) {
                self.tail.skip_to(lowest);
                self.current = at;
                return true;
            }
        }
        false
    }

    /// The lowest index above `next` node `at` reads, if it reads its commit index but not
    /// `next` (readable indices are one range, first retained to applied).
    fn lowest_readable(&mut self, at: usize, next: u64) -> Option<u64> {
        let endpoint = self.endpoints[at];
        let Ok(status) = self.client(at)?.status_of(endpoint) else {
            self.clients[at] = None;
            return None;
        };
        let commit = status.applied_index.0;
        if commit <= next || self.read(at, next).is_some() || self.read(at, commit).is_none() {
            return None;
        }
        let (mut low, mut high) = (next, commit);
        // Invariant: `low` unreadable, `high` readable.
        while low + 1 < high {
            let middle = low + (high - low) / 2;
            if self.read(at, middle).is_some() {
                high = middle;
            } else {
                low = middle;
            }
        }
        Some(high)
    }
}

/// Counts the snapshots that appear in the nodes' data directories while the run goes on.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotCount {
    /// Snapshot files seen, per node, by last included index: the id of the node that took it.
    seen: BTreeMap<(usize, u64), u64>,
}

impl SnapshotCount {
    /// Snapshots a node took itself.
    pub(crate) fn taken(&self, ids: &[u64]) -> usize {
        self.seen
            .iter()
            .filter(|((node, _), taker)| ids.get(*node) == Some(*taker))
            .count()
    }

    /// Snapshots a node installed from another (the file names another node as its taker).
    pub(crate) fn installed(&self, ids: &[u64]) -> usize {
        self.seen.len() - self.taken(ids)
    }

    /// Records the snapshot files now in `data_dirs`.
    pub(crate) fn scan(&mut self, data_dirs: &[PathBuf]) {
        for (node, dir) in data_dirs.iter().enumerate() {
            let Ok(listing) = std::fs::read_dir(dir) else {
                continue;
            };
            for file in listing.flatten() {
                let path = file.path();
                let Some(last_index) = snapshot_index_of(&path) else {
                    continue;
                };
                if self.seen.contains_key(&(node, last_index)) {
                    continue;
                }
                // The file may be removed between the listing and here: then it is not counted.
                if let Ok(snapshot) = alpo_log::SnapshotFile::open(&path) {
                    self.seen
                        .insert((node, last_index), snapshot.meta().node_id);
                }
            }
        }
    }
}

/// The last included index in a durable snapshot's file name (`snap-<L>-<T>.alposnap`).
pub(crate) fn snapshot_index_of(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_prefix("snap-")?.strip_suffix(".alposnap")?;
    stem.split_once('-')?.0.parse().ok()
}

/// Scans the data directories every `every` until `stop`.
pub(crate) fn spawn_snapshot_watcher(
    data_dirs: Vec<PathBuf>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<SnapshotCount>> {
    thread::Builder::new()
        .name("snapshot-watcher".into())
        .spawn(move || {
            let mut count = SnapshotCount::default();
            while !stop.load(Ordering::SeqCst) {
                count.scan(&data_dirs);
                thread::sleep(every);
            }
            count.scan(&data_dirs);
            count
        })
        .context("starting the snapshot watcher")
}

/// One record as held on disk: `(index, term, kind, payload)`.
pub(crate) type HeldRecord = (u64, u64, u8, Vec<u8>);

/// What one node's data directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Disk {
    /// Last included index of the newest valid snapshot, 0 if none.
    pub(crate) snapshot_index: u64,
    /// First log index held (`last_index + 1` when the log is empty).
    pub(crate) first_index: u64,
    /// `(index, term, kind, payload)` of every record held, by index.
    pub(crate) records: Vec<HeldRecord>,
}

impl Disk {
    /// Reads the data directory `dir` of a stopped node.
    pub(crate) fn read(dir: &Path) -> Result<Disk> {
        let scan = alpo_log::scan_snapshots(dir, Some(CLUSTER_ID))
            .with_context(|| format!("scanning the snapshots of {}", dir.display()))?;
        let snapshot_index = scan.snapshots.last().map_or(0, |(_, meta)| meta.last_index);
        let reader = alpo_log::LogReader::open(dir)
            .with_context(|| format!("reading the log of {}", dir.display()))?;
        let records = reader
            .entries(..)
            .map(|record| record.map(|r| (r.index, r.term, r.kind, r.payload.to_vec())))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("reading the records of {}", dir.display()))?;
        Ok(Disk {
            snapshot_index,
            first_index: reader.first_index(),
            records,
        })
    }

    /// Index of the last record, or of the snapshot if the log is empty.
    fn last_index(&self) -> u64 {
        self.records
            .last()
            .map_or(self.first_index.saturating_sub(1), |r| r.0)
    }
}

/// Checks the stopped nodes' disks against each other, the tail and the commit index `commit`;
/// returns the problems found, each naming the node and index.
pub(crate) fn check_disks(disks: &[Disk], tail: &Tail, commit: u64) -> Vec<String> {
    let mut problems = Vec::new();
    let terms: BTreeMap<u64, u64> = tail
        .entries
        .iter()
        .map(|entry| (entry.index.0, entry.term.0))
        .collect();
    // Per index: the first node holding it, and what it holds.
    let mut reference: BTreeMap<u64, (usize, &HeldRecord)> = BTreeMap::new();
    let mut reported = BTreeSet::new();
    for (node, disk) in disks.iter().enumerate() {
        let snapshot = disk.snapshot_index;
        if commit < snapshot {
            problems.push(format!(
                "n{node}'s snapshot at index {snapshot} is beyond the commit index {commit}"
            ));
        }
        if snapshot + 1 < disk.first_index {
            problems.push(format!(
                "n{node}'s log starts at index {} but its snapshot ends at {snapshot}: \
                 indices {}..{} are in neither",
                disk.first_index,
                snapshot + 1,
                disk.first_index - 1
            ));
        }
        if snapshot.max(disk.last_index()) < commit {
            problems.push(format!(
                "n{node} holds only up to index {} (snapshot {snapshot}), below the commit \
                 index {commit}",
                disk.last_index()
            ));
        }
        for record in disk.records.iter().filter(|r| r.0 <= commit) {
            if let Some(term) = terms.get(&record.0)
                && *term != record.1
                && reported.insert(node)
            {
                problems.push(format!(
                    "n{node}'s entry {} has term {} but term {term} was read as committed",
                    record.0, record.1
                ));
            }
            match reference.get(&record.0) {
                None => {
                    reference.insert(record.0, (node, record));
                }
                Some((other, held)) if *held != record && reported.insert(node) => {
                    problems.push(format!(
                        "n{node}'s committed log differs from n{other}'s at index {}",
                        record.0
                    ));
                }
                Some(_) => {}
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use alpo_core::Term;
    use alpo_node::client_protocol::ReadEntryKind;

    fn entry(index: u64) -> ReadEntry {
        ReadEntry {
            index: LogIndex(index),
            term: Term(1),
            kind: ReadEntryKind::Append,
            data: format!("v{index}").into_bytes().into(),
        }
    }

    #[test]
    fn the_tail_records_holes_as_gaps() {
        let mut tail = Tail::default();
        assert_eq!(tail.next(), 1);
        tail.push(vec![entry(1), entry(2)]);
        tail.push(vec![entry(2), entry(5)]);
        assert_eq!(tail.gaps, vec![(3, 4)]);
        tail.skip_to(9);
        tail.skip_to(9);
        assert_eq!(tail.gaps, vec![(3, 4), (6, 8)]);
        assert_eq!((tail.next(), tail.unchecked()), (9, 5));
        assert!(tail.in_gap(7) && !tail.in_gap(5));
        let indices: Vec<u64> = tail.entries.iter().map(|e| e.index.0).collect();
        assert_eq!(indices, vec![1, 2, 5]);
    }

    #[test]
    fn snapshot_file_names_give_their_index() {
        let name = "snap-00000000000000002000-00000000000000000003.alposnap";
        assert_eq!(snapshot_index_of(Path::new(name)), Some(2_000));
        assert_eq!(snapshot_index_of(Path::new("snap-1-2.tmp")), None);
        assert_eq!(snapshot_index_of(Path::new("hard_state")), None);
        let mut count = SnapshotCount::default();
        count.seen.insert((0, 10), 1);
        count.seen.insert((1, 10), 1);
        count.seen.insert((1, 20), 2);
        assert_eq!((count.taken(&[1, 2]), count.installed(&[1, 2])), (2, 1));
    }

    /// A disk with a snapshot at `snapshot_index` and records `range` (may be empty).
    fn disk(snapshot_index: u64, range: std::ops::Range<u64>) -> Disk {
        let first_index = range.start;
        Disk {
            snapshot_index,
            first_index,
            records: range
                .map(|i| (i, 1, 0, vec![u8::try_from(i % 7).unwrap()]))
                .collect(),
        }
    }

    #[test]
    fn disks_compare_only_where_both_hold_and_bite_otherwise() {
        let tail = Tail {
            entries: (1..11).map(entry).collect(),
            gaps: Vec::new(),
        };
        let good = [disk(0, 1..11), disk(6, 4..11), disk(10, 11..11)];
        assert_eq!(check_disks(&good, &tail, 10), Vec::<String>::new());
        let hole = [disk(0, 1..11), disk(3, 6..11)];
        assert!(check_disks(&hole, &tail, 10)[0].contains("are in neither"));
        let beyond = [disk(12, 13..13)];
        assert!(check_disks(&beyond, &tail, 10)[0].contains("beyond the commit"));
        let short = [disk(2, 3..9)];
        assert!(check_disks(&short, &tail, 10)[0].contains("below the commit"));
        let mut differs = [disk(0, 1..11), disk(5, 6..11)];
        differs[1].records[2].3 = vec![99];
        let problems = check_disks(&differs, &tail, 10);
        assert_eq!(
            problems,
            vec!["n1's committed log differs from n0's at index 8".to_owned()]
        );
        let mut wrong_term = [disk(0, 1..11)];
        wrong_term[0].records[4].1 = 2;
        assert!(check_disks(&wrong_term, &tail, 10)[0].contains("term 2"));
    }
}
