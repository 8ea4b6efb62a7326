//! Protocol quantities as newtypes: terms, log indices, node ids, logical time and log entries.
//!
//! Invariants: a `Term` or `LogIndex` only grows on a server (within an incarnation for volatile
//! values); index 0 and term 0 mean "before the first entry" and never name a real entry.
//! Newtypes keep a term from being passed where an index is expected.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use bytes::Bytes;

use crate::membership::Configuration;

/// A term: grows only; each term has at most one leader. Term 0 precedes every election.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Term(pub u64);

/// A log index: entries are numbered 1, 2, 3, … without gaps. Index 0 is "before the log".
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LogIndex(pub u64);

/// A server's id, unique within its cluster. Ids are chosen by the operator and never reused.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct NodeId(pub u64);

/// A cluster's id: every message and file carries it, and a foreign one is rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClusterId(pub u64);

/// A server's incarnation: bumped (and made durable by the driver) on every start, so peers can
/// tell a restarted server from a slow one.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Incarnation(pub u64);

/// A point in logical, monotonic time, in nanoseconds since an origin the driver chooses.
///
/// alpo-core never reads a clock: every input carries `now` as one of these.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Instant(pub u64);

/// What an entry carries: a client's command, a leader's no-op (rule R8), or a configuration
/// (rule M1).
///
/// Deliberately exhaustive: whoever applies entries must decide what each kind means, so a new
/// kind has to break that `match` instead of falling into a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u8)]
pub enum EntryKind {
    /// A client command; the payload is opaque to ALPO.
    Normal = 1,
    /// The empty entry a new leader appends in its own term (rule R8); its payload is empty.
    Noop = 2,
    /// A cluster configuration (rule M1), encoded by `Configuration::encode`; in force from
    /// the moment it is appended. A state machine skips it.
    Config = 3,
}

impl EntryKind {
    /// The byte that stands for this kind in the wire format, the log's records and the input
    /// trace (docs/formats.md); the one place that mapping is written.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// The kind a byte stands for, or `None` for a byte no kind uses (damaged or foreign input;
    /// the caller names where it was found).
    #[must_use]
    pub const fn from_byte(byte: u8) -> Option<EntryKind> {
        match byte {
            1 => Some(EntryKind::Normal),
            2 => Some(EntryKind::Noop),
            3 => Some(EntryKind::Config),
            _ => None,
        }
    }
}

/// One log entry: `(index, term, kind, payload)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Position in the log, starting at 1.
    pub index: LogIndex,
    /// Term of the leader that created the entry.
    pub term: Term,
    /// Client command or no-op.
    pub kind: EntryKind,
    /// The command's bytes; shared, not copied, as it moves through the node.
    pub payload: Bytes,
}

/// A position in a log: the index and term of one entry, or `(0, 0)` for the empty log.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct LogPosition {
    /// The entry's index.
    pub index: LogIndex,
    /// The entry's term.
    pub term: Term,
}

/// What identifies a snapshot and what the core needs to know about it (rule S1).
///
/// The image itself (the state machine after applying entries `1..=last.index`) is opaque to the
/// core: it lives in the driver's snapshot file, whose bytes the core only moves in chunks.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct SnapshotMeta {
    /// The last included position `(L, term_L)`; it also identifies the snapshot.
    pub last: LogPosition,
    /// Size in bytes of the snapshot file the driver holds (what an install transfers); at
    /// least 1, since the file has a header.
    pub size: u64,
    /// The configuration in force at `last` (rules S1, M1): the latest `Config` entry at or
    /// below it, else the previous snapshot's (or the bootstrap one).
    pub configuration: Configuration,
}

/// A candidate's claim `(last term, last index, id)`, compared lexicographically (rule E8).
///
/// The order of the fields is the vote rule's own order (E4) followed by the id as a tie-break,
/// so the candidate everyone defers to is one that can win.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Rank {
    /// Term of the candidate's last entry.
    pub last_term: Term,
    /// Index of the candidate's last entry.
    pub last_index: LogIndex,
    /// The candidate's id.
    pub id: NodeId,
}

/// What must survive a crash besides the log (docs/protocol.md, State): the current term and
/// the vote cast in it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct HardState {
    /// The latest term this server has seen.
    pub current_term: Term,
    /// The candidate this server voted for in `current_term`, if any.
    pub voted_for: Option<NodeId>,
}

impl Term {
    /// The next term.
    #[must_use]
    pub fn next(self) -> Term {
        Term(self.0 + 1)
    }

    /// The term before this one, saturating at 0.
    #[must_use]
    pub fn prev(self) -> Term {
        Term(self.0.saturating_sub(1))
    }
}

impl LogIndex {
    /// The index after this one.
    #[must_use]
    pub fn next(self) -> LogIndex {
        LogIndex(self.0 + 1)
    }

    /// The index before this one, saturating at 0.
    #[must_use]
    pub fn prev(self) -> LogIndex {
        LogIndex(self.0.saturating_sub(1))
    }
}

impl Instant {
    /// An instant `nanos` nanoseconds after the driver's origin.
    #[must_use]
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the driver's origin.
    #[must_use]
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis * 1_000_000)
    }

    /// Nanoseconds since the driver's origin.
    #[must_use]
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, rhs: Duration) -> Instant {
        let nanos = u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl Entry {
    /// This entry's position `(index, term)`.
    #[must_use]
    pub fn position(&self) -> LogPosition {
        LogPosition {
            index: self.index,
            term: self.term,
        }
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for LogIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// One run of the term index (rule S9): the entries from `first` up to the next run's first
/// index (or the log's last index) all have term `term`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TermRun {
    /// The run's first index.
    pub first: LogIndex,
    /// The term of every entry in the run.
    pub term: Term,
}

/// The durable log as the driver hands it to the core at start (rule S9): not the entries, but
/// the term index over them and, optionally, a suffix of them to warm the cache. A driver
/// derives the runs from the scan it makes anyway to recover its log, so a start never reads
/// the whole log into memory.
///
/// Invariants (checked by `Node::new`, since they come from disk): runs are in index order with
/// strictly increasing firsts and terms, terms above 0, the first run starting at index 1
/// or later; `last` is at least the last run's first (or 0 with no runs); `tail` is a gap-free
/// run of entries ending at `last` whose terms match the runs (it may be empty).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PersistedLog {
    /// The term index of the durable log, from its first index on (empty for an empty log).
    pub runs: Vec<TermRun>,
    /// The durable log's last index (0 for an empty log).
    pub last: LogIndex,
    /// A suffix of the durable log, for the entry cache (any length, empty included).
    pub tail: Vec<Entry>,
    /// Rule M1: the durable log's `Config` entries past the snapshot, in index order, whether
    /// or not the tail holds them (the membership is the latest of them; a driver collects
    /// them in its recovery scan). Those the tail holds may be left out.
    pub configs: Vec<Entry>,
    /// Issue 13, rules F3–F5: the entries whose identifier is valid but whose record is not
    /// (bad, missing or stale), in index order. Their positions are in `runs` like any
    /// other's; the tail holds only entries above the last of them. Contract on
    /// [`crate::faulty`].
    pub faulty: Vec<crate::faulty::FaultyEntry>,
}

impl PersistedLog {
    /// The persisted log made of these consecutive entries, all of them in the tail (for tests
    /// and small logs; a server derives the runs from its recovery scan instead).
    #[must_use]
    pub fn from_entries(entries: Vec<Entry>) -> PersistedLog {
        let mut builder = TermRunsBuilder::default();
        for entry in &entries {
            builder.push(entry.index, entry.term);
        }
        let (runs, last) = builder.finish();
        let configs = entries
            .iter()
            .filter(|entry| entry.kind == EntryKind::Config)
            .cloned()
            .collect();
        PersistedLog {
            runs,
            last,
            tail: entries,
            configs,
            faulty: Vec::new(),
        }
    }
}

/// Builds the term runs of a log from its positions, in index order (one pass, O(terms)
/// memory): what a driver's recovery scan feeds as it reads records.
#[derive(Clone, Debug, Default)]
pub struct TermRunsBuilder {
    runs: Vec<TermRun>,
    last: LogIndex,
}

impl TermRunsBuilder {
    /// The next entry of the log is at `index` with `term`. A position that does not continue
    /// the log (an index not one more than the last) starts the runs again from it, as a log
    /// truncated and rewritten there would.
    pub fn push(&mut self, index: LogIndex, term: Term) {
        if !self.runs.is_empty() && index != self.last.next() {
            let keep = self.runs.partition_point(|run| run.first < index);
            self.runs.truncate(keep);
        }
        if self.runs.last().is_none_or(|run| run.term != term) {
            self.runs.push(TermRun { first: index, term });
        }
        self.last = index;
    }

    /// The runs and the last index pushed.
    #[must_use]
    pub fn finish(self) -> (Vec<TermRun>, LogIndex) {
        (self.runs, self.last)
    }
}

/// What a server loaded from disk at start (the "restart from persisted state" input).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    /// Term and vote, as last made durable.
    pub hard_state: HardState,
    /// The newest valid durable snapshot, if any (rule S8); its state is what the driver
    /// restored its state machine from.
    pub snapshot: Option<SnapshotMeta>,
    /// The durable log (rule S9: its term index and a suffix): from index 1 without a
    /// snapshot; with one at `L`, from any index up to `L + 1` (entries up to `L` are covered
    /// by the snapshot; a log that holds another term at `L`, or ends below `L`, is discarded
    /// with a `TruncateLog` at start).
    pub log: PersistedLog,
    /// This start's incarnation: one more than the last start's, made durable by the driver.
    /// After a hard-state loss (`hard_state_lost`) the driver cannot know the last one: it
    /// picks one above any used before (rule F9; e.g. wall-clock nanoseconds).
    pub incarnation: Incarnation,
    /// Rule F8: the durable term ceiling, from its own file (not the hard state's): every term
    /// this server voted or stood in is below it. `Term(0)` when never written (a fresh disk).
    pub term_ceiling: Term,
    /// Rule F9: neither copy of the hard state was valid at start (`hard_state` is then
    /// ignored). The server starts at the last log term with no vote and grants no vote or
    /// pre-vote, and does not stand, in a term below `term_ceiling`; a driver whose ceiling
    /// file is unreadable too (or missing on a disk that holds a log) passes `Term(u64::MAX)`,
    /// and the server never votes again (replace it under a new id, M8, M11).
    pub hard_state_lost: bool,
}
