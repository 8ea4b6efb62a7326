//! What the core asks its driver to do, as one ordered list, and the ordering contract.
//!
//! # Ordering contract
//! The driver performs outputs in list order, with these rules (docs/protocol.md, The driving
//! contract):
//!
//! 1. [`Output::SaveHardState`] is synchronous: the term and vote must be durable (file written,
//!    fsync'd, renamed, directory fsync'd) **before** any later output in the list is performed.
//!    This is what makes a vote, or a VoteRequest of a new term, safe to send (rules E3, E4, E6).
//! 2. [`Output::TruncateLog`] and [`Output::AppendLog`] go, in list order, to the log writer.
//!    They may become durable later (group commit); the driver then reports the durable end of the
//!    log with `Node::on_persisted`. Later outputs need **not** wait for them: the core never emits
//!    a message that acknowledges entries before `on_persisted` has reported them durable (R4), and
//!    a leader counts its own entries toward commit only once durable (R10).
//! 3. [`Output::Send`] may leave as soon as every `SaveHardState` before it is durable. Messages
//!    may be lost, delayed, duplicated or reordered: the protocol tolerates it.
//! 4. [`Output::Apply`] hands committed entries to the state machine in index order, each exactly
//!    once per incarnation (rule R11). Entries are durable locally before they are applied.
//!
//! Index relationships kept by the core: `applied ≤ commit ≤ durable ≤ last`.

use crate::message::Message;
use crate::types::{Entry, HardState, LogIndex};

/// One thing for the driver to do. See the module documentation for the ordering contract.
///
/// Deliberately exhaustive (not `#[non_exhaustive]`): a driver must perform every output, so a
/// new kind of output has to break every driver's `match` rather than fall into a wildcard arm
/// that silently skips it.
#[must_use]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Make this hard state durable before performing any later output.
    SaveHardState(HardState),
    /// Remove every log entry at index `from` or above (a new leader overwrote them, rule R4).
    /// Never below the commit index.
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
    /// Send a message to another server.
    Send(Message),
    /// Hand these committed entries to the state machine, in order (rule R11). Leaders' no-op
    /// entries (`EntryKind::Noop`, rule R8) are included, so the applied index stays contiguous;
    /// a state machine skips them.
    Apply {
        /// Consecutive committed entries, starting at the previous applied index + 1.
        entries: Vec<Entry>,
    },
}
