//! What the core asks its driver to do, as one ordered list, and the ordering contract.
//!
//! # Ordering contract
//! The driver performs outputs in list order, with these rules (docs/protocol.md, The driving
//! contract):
//!
//! 1. [`Output::SaveHardState`] is synchronous: the term and vote must be durable (file written,
//!    fsync'd, renamed, directory fsync'd) **before** any later output in the list is performed.
//!    This is what makes a vote, or a VoteRequest of a new term, safe to send (rules E3, E4, E6).
//!    [`Output::SaveTermCeiling`] is synchronous in the same way (rule F8).
//! 2. [`Output::TruncateLog`] and [`Output::AppendLog`] go, in list order, to the log writer.
//!    They may become durable later (group commit); the driver then reports the durable end of the
//!    log with `Node::on_persisted`. Later outputs need **not** wait for them: the core never emits
//!    a message that acknowledges entries before `on_persisted` has reported them durable (R4), and
//!    a leader counts its own entries toward commit only once durable (R10).
//! 3. [`Output::Send`] may leave as soon as every `SaveHardState` before it is durable. Messages
//!    may be lost, delayed, duplicated or reordered: the protocol tolerates it.
//! 4. [`Output::Apply`] hands committed entries to the state machine in index order, each exactly
//!    once per incarnation (rule R11). Entries are durable locally before they are applied.
//! 5. [`Output::TakeSnapshot`] asks for a snapshot of the state machine as of `at`, which is the
//!    last entry of the `Apply` just before it: the driver freezes the state there (in apply
//!    order) and writes the file in the background while later `Apply`s go on (rules S2, S3).
//!    At most one is in progress; a crash loses it and the core asks again.
//! 6. [`Output::CompactLog`] comes only after `Node::on_snapshot_durable` reported a snapshot
//!    at `L` durable, with `below ≤ min(applied, L) + 1` (rules S3 step 6, S4); it never
//!    decreases within an incarnation, and the driver may drop less (whole segments only).
//! 7. [`Output::ReadSnapshot`] asks for bytes of the newest durable snapshot file; the driver
//!    answers with `Node::on_snapshot_read`, in any order, late or never (rule S5). The file
//!    must stay readable while an older answer may still be asked for; a replaced file is
//!    answered with an error.
//! 8. [`Output::WriteSnapshotChunk`] writes a received chunk at its offset into the partial
//!    file of that snapshot (rule S6); a chunk of another snapshot discards the partial file.
//!    On the last chunk the driver verifies the whole file, fsyncs it, renames it, fsyncs the
//!    directory, and then calls `Node::on_snapshot_installed` (or `on_snapshot_install_failed`
//!    if the file does not verify). Partial files need not be durable: a restart starts over.
//! 9. After an install is durable, in this order (rule S7): a `TruncateLog { from: 1 }` when the
//!    log does not hold the snapshot's last position (the whole log goes, including entries the
//!    driver still holds below the core's first retained index; the driver's log then
//!    continues at `L + 1`); then [`Output::RestoreStateMachine`], which replaces the
//!    state machine with the snapshot's image (entries up to `L` are never applied after it);
//!    then the `Installed` reply and, when the log was kept, a `CompactLog` (rule S4).
//! 10. [`Output::ReadLog`] reads entries back from the log, after every log write listed
//!     before it (rule S9); the driver answers every one with `Node::on_log_read`, in any
//!     order with other inputs. The full contract is on [`crate::log_read`].
//! 11. [`Output::ReadReady`] comes after the `Apply` that reached its index: the driver serves
//!     the read from the state machine as it stands after performing every earlier output (so
//!     a driver that applies on another thread passes the read along the same queue, in order).
//!     [`Output::ReadFailed`] may come at any point (rules Q1, Q2).
//!
//! 12. [`Output::RepairEntry`] (issue 13, rule F5) goes to the log writer in list order like
//!     `AppendLog`: the driver checks the payload against the identifier's CRC, rewrites the
//!     record (and its identifier) in place, makes it durable, and then reports it with
//!     `Node::on_entry_repaired` (or `Node::on_entry_repair_failed` when the CRC differs).
//!     Until then the entry stays faulty: nothing from its index on is acknowledged or applied.
//!
//! Index relationships kept by the core:
//! `base ≤ L ≤ applied ≤ commit ≤ durable ≤ last`, where `base + 1` is the first retained index
//! and `L` the newest durable snapshot's last index (0 without one).

use crate::message::Message;
use bytes::Bytes;

use crate::log_read::LogReadId;
use crate::membership::{ConfigChange, ConfigChangeError, Configuration};
use crate::node::{Proposal, ReadError, ReadId};
use crate::types::{Entry, HardState, LogIndex, LogPosition, NodeId, SnapshotMeta, Term};

/// One thing for the driver to do. See the module documentation for the ordering contract.
///
/// Deliberately exhaustive (not `#[non_exhaustive]`): a driver must perform every output, so a
/// new kind of output has to break every driver's `match` rather than fall into a wildcard arm
/// that silently skips it.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Output {
    /// Make this hard state durable before performing any later output.
    SaveHardState(HardState),
    /// Rule F8: make this term ceiling durable, in its own file (not the hard state's), before
    /// performing any later output. It comes before the vote or candidacy it allows; a restart
    /// that finds no valid hard state hands it back in `Persisted::term_ceiling`.
    SaveTermCeiling {
        /// Every term this server votes or stands in until the next `SaveTermCeiling` is
        /// below this one.
        ceiling: Term,
    },
    /// Remove every log entry at index `from` or above (a new leader overwrote them, rule R4).
    /// Never below the commit index, except after an installed snapshot covers them (rule S7).
    TruncateLog {
        /// The first index to remove.
        from: LogIndex,
    },
    /// Append these consecutive entries at the end of the log (after any truncation before it).
    /// Report durability with `Node::on_persisted`.
    AppendLog {
        /// The entries, in index order, continuing the log without a gap.
        entries: Vec<Entry>,
    },
    /// Issue 13, rule F5: rewrite the faulty entry at `entry.index` in place (record and
    /// identifier) with this copy of the same position, if its payload CRC is the
    /// identifier's (F12), make it durable, and report it with `Node::on_entry_repaired`;
    /// report a CRC mismatch with `Node::on_entry_repair_failed`. Contract on
    /// [`crate::faulty`].
    RepairEntry {
        /// The verified entry.
        entry: Entry,
    },
    /// Send a message to another server.
    Send(Message),
    /// Hand these committed entries to the state machine, in order (rule R11). Leaders' no-op
    /// entries (`EntryKind::Noop`, rule R8) are included, so the applied index stays contiguous;
    /// a state machine skips them.
    Apply {
        /// Consecutive committed entries, starting at the previous applied index + 1.
        entries: Vec<Entry>,
    },
    /// Snapshot the state machine as of `at` (the last applied entry) and report the durable
    /// file with `Node::on_snapshot_durable` (rules S2, S3).
    TakeSnapshot {
        /// The snapshot's last included position.
        at: LogPosition,
        /// The configuration in force at `at`, for the snapshot's meta (rule S1).
        configuration: Configuration,
    },
    /// Drop the log entries below `below` (whole segments; rules S3 step 6, S4).
    CompactLog {
        /// The first index that must stay in the log.
        below: LogIndex,
    },
    /// Read `len` bytes at `offset` of the snapshot file `snapshot` for follower `to`, and
    /// answer with `Node::on_snapshot_read` (rule S5).
    ReadSnapshot {
        /// The follower the bytes are for.
        to: NodeId,
        /// The snapshot (its last position).
        snapshot: LogPosition,
        /// Where to read in the file.
        offset: u64,
        /// How many bytes (at most `Config::snapshot_chunk_bytes`, within the file).
        len: u64,
    },
    /// Write a received chunk into the partial file of `snapshot` at `offset` (rule S6); on
    /// `last`, verify, make durable and report (rule S7).
    WriteSnapshotChunk {
        /// The snapshot being received.
        snapshot: SnapshotMeta,
        /// Where `data` goes in the file (the bytes held so far).
        offset: u64,
        /// The chunk.
        data: Bytes,
        /// Whether it completes the file.
        last: bool,
    },
    /// Read log entries `from..=to` (at most `max_bytes` of payload, at least one entry) and
    /// answer with `Node::on_log_read` (rule S9; contract on `crate::log_read`).
    ReadLog {
        /// The read, echoed in the answer.
        id: LogReadId,
        /// The first index to read.
        from: LogIndex,
        /// The last index to read at most.
        to: LogIndex,
        /// Payload bytes at most, unless the first entry alone is larger.
        max_bytes: u64,
    },
    /// Replace the state machine with the image of this durable snapshot (rule S7 step 2).
    RestoreStateMachine {
        /// The snapshot installed.
        snapshot: SnapshotMeta,
    },
    /// Serve read `id` now, from the state machine as it stands at this point of the output
    /// list: every entry up to `index` is applied (rules Q1 (d), Q2).
    ReadReady {
        /// The read (`Node::read_index`).
        id: ReadId,
        /// Its read index; the state machine has applied at least this far.
        index: LogIndex,
    },
    /// Read `id` cannot be confirmed (rules Q1 (e), Q2); the client may retry.
    ReadFailed {
        /// The read (`Node::read_index`).
        id: ReadId,
        /// Why.
        error: ReadError,
    },
    /// The configuration in force changed (rule M1: a `Config` entry appended, truncated, or
    /// an installed snapshot's): the driver connects to added members and drops removed ones
    /// (M7). Nothing waits for it.
    Membership {
        /// The configuration now in force.
        configuration: Configuration,
    },
    /// The outcome of a `Node::propose_config_change`: the `Config` entry's position (it is
    /// committed when an `Apply` carries an entry of that index and term), or why it failed
    /// (a promotion whose catch-up failed, M8, or was abandoned).
    ConfigChange {
        /// The change asked for.
        change: ConfigChange,
        /// Where its entry sits, or why there is none.
        result: Result<Proposal, ConfigChangeError>,
    },
}
