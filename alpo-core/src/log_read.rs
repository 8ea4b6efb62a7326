//! Reading the log back from the driver (rule S9): the core's half of `Output::ReadLog` and
//! `Node::on_log_read`, and what a driver hands the core at start instead of the whole log.
//!
//! The core keeps no copy of the whole log: it keeps the term index (runs of
//! `(first index, term)`), its marks, and a bounded cache of recent entries that always holds
//! every entry above the commit index (so every entry not yet durable). Older payloads, for an
//! Append to a follower that lags behind the cache or for applying entries after a restart, it
//! asks the driver for with `Output::ReadLog`.
//!
//! # Ordering contract (rule S9 (a)–(d))
//! (a) A `ReadLog` sees the log left by every `TruncateLog`, `AppendLog` and `CompactLog`
//!     emitted before it in the output list (the driver performs it after them, e.g. on the
//!     same storage thread). The core only ever asks for entries at or below its commit index,
//!     which are durable, since the cache holds every entry above it.
//! (b) The answer, [`LogReadResult`], is a gap-free run of entries starting at `from`: at least
//!     one entry, ending at `to` or earlier, and no more than `max_bytes` of payload unless its
//!     first entry alone is larger; or `Compacted` when `from` is below the first index the
//!     driver's log still holds (rule S5 then sends the follower a snapshot); or `Fault(i)`
//!     when the driver cannot read entry `i` (a damaged record: the node stops with a
//!     [`LogFault`]; repair is §18's, a later issue).
//! (c) Answers may arrive in any order with other inputs, and late. An entry of an answer is
//!     used only if its `(index, term)` still matches the term index (a truncation or an
//!     installed snapshot may have raced the read; the same position is the same entry, by log
//!     matching), the rule `on_persisted` already follows.
//! (d) The payload bytes asked for by reads in flight (their `max_bytes`) stay within
//!     `Config::read_inflight_bytes_max`. The consumers are the Append to a follower whose
//!     next index lies below the cache, and the in-order `Apply`. The driver answers every
//!     `ReadLog` of an incarnation exactly once.

use crate::types::{Entry, LogIndex};

/// Identifies a `ReadLog` within an incarnation; answers carry it back.
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
pub struct LogReadId(pub u64);

/// The driver's answer to a `ReadLog` (contract (b) in the module documentation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogReadResult {
    /// A gap-free run of entries starting at the read's `from` (at least one).
    Entries(Vec<Entry>),
    /// `from` is below the first index the driver's log holds.
    Compacted,
    /// The driver could not read the entry at this index (a damaged record).
    Fault(LogIndex),
}

/// A read answer the node cannot go on from: the driver could not read an entry it must hold.
/// `Node::on_log_read` returns it (and `Node::fault` keeps it); the driver must stop the node
/// and report it, naming the index (no panic: the input came from disk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogFault {
    /// The read that failed.
    pub read: LogReadId,
    /// The entry that could not be read.
    pub index: LogIndex,
}

impl std::fmt::Display for LogFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the log could not be read at index {} (read {}): the record is damaged or missing",
            self.index, self.read.0
        )
    }
}

impl std::error::Error for LogFault {}

/// The entry cache's state (rule S9), from `Node::log_cache`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCacheStatus {
    /// The first index the cache holds (the last index + 1 when it is empty).
    pub cached_from: LogIndex,
    /// Payload bytes it holds.
    pub bytes: u64,
    /// Its budget, `Config::log_cache_bytes_max`.
    pub bytes_max: u64,
    /// Payload bytes of the entries it must hold: those above the commit index.
    pub pinned_bytes: u64,
    /// Runs in the term index (one per term in the retained log).
    pub term_runs: usize,
    /// Payload bytes asked for by `ReadLog`s in flight.
    pub reads_inflight_bytes: u64,
}

impl LogCacheStatus {
    /// Whether the cache is within its bound: `bytes ≤ max(bytes_max, pinned_bytes)`, the
    /// state every eviction leaves.
    #[must_use]
    pub fn is_bounded(&self) -> bool {
        self.bytes <= self.bytes_max.max(self.pinned_bytes)
    }
}
