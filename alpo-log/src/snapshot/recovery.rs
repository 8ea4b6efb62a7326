//! Snapshot recovery on open: what each file in a snapshot directory means after a crash, and
//! what the store does about it. The decision table is [`SnapshotSituation::action`]; each row
//! is reached by a test in `tests/snapshot_crash.rs`.
//!
//! Crash analysis of taking a snapshot (steps in `writer.rs`) and of receiving one (steps in
//! `receive.rs`):
//!
//! | crash after | the directory holds | row |
//! | --- | --- | --- |
//! | take 1 (writing the tmp) | a torn or partly unwritten `snap-L-T.tmp` | `TempFile` |
//! | take 2 (tmp synced) | a complete `snap-L-T.tmp` | `TempFile` |
//! | take 3 (renamed, directory not synced) | the tmp, or the new name | `TempFile`, `Newest` |
//! | take 4 (directory synced) | the new snapshot and the older ones | `Newest`, `Older` |
//! | `remove_older` (part) | some older snapshots still there | `Older` |
//! | receive (chunks written) | `install.alposnap-partial`, never synced | `PartialInstall` |
//! | receive finish (renamed) | as take 3 and 4 | `Newest`, `Older` |
//!
//! A final name always holds a file synced before its rename, so a final-named file that does
//! not verify was damaged by the disk (protocol F0), never by a crash: row `Damaged`.

use std::path::PathBuf;

use crate::error::Corruption;

/// One situation the snapshot store can meet at open: a row of the decision table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SnapshotSituation {
    /// The directory holds no valid snapshot.
    NoSnapshot,
    /// The newest snapshot that verifies completely (every chunk and the image checksum).
    Newest,
    /// A snapshot older than `Newest` whose header, length and name check.
    Older,
    /// A `snap-L-T.tmp` left by a crash while a snapshot was taken.
    TempFile,
    /// An `install.alposnap-partial` left by a crash while a snapshot was received.
    PartialInstall,
    /// A snapshot under a final name that does not verify (or whose name and header disagree).
    Damaged,
    /// A snapshot of another cluster.
    ForeignCluster,
}

/// What the store does in a [`SnapshotSituation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Start with no snapshot: the state is empty at index 0.
    StartEmpty,
    /// Restore from this snapshot.
    Use,
    /// Keep the file until `remove_older` removes it.
    Keep,
    /// Remove the file and fsync the directory.
    RemoveFile,
    /// Report it, leave the file for the operator, and fall back to the next older snapshot.
    SkipDamaged,
    /// Refuse to open with an error naming the file and byte offset.
    Refuse,
}

/// One thing the snapshot store found at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotEvent {
    /// The file (or the directory, for `NoSnapshot`).
    pub path: PathBuf,
    /// Byte offset of the damage, or 0.
    pub offset: u64,
    /// The row of the decision table.
    pub situation: SnapshotSituation,
    /// What is wrong, for `Damaged` and `ForeignCluster`.
    pub damage: Option<Corruption>,
}

impl SnapshotSituation {
    /// Every row of the table, in the order of `docs/formats.md`.
    pub const ALL: [SnapshotSituation; 7] = [
        SnapshotSituation::NoSnapshot,
        SnapshotSituation::Newest,
        SnapshotSituation::Older,
        SnapshotSituation::TempFile,
        SnapshotSituation::PartialInstall,
        SnapshotSituation::Damaged,
        SnapshotSituation::ForeignCluster,
    ];

    /// The decision table: the action for this situation and why it is safe.
    pub fn action(self) -> (SnapshotAction, &'static str) {
        match self {
            SnapshotSituation::NoSnapshot => (
                SnapshotAction::StartEmpty,
                "the state is empty at index 0; the log holds index 1 onward unless a damaged \
                 snapshot was its only cover (the node checks: F11)",
            ),
            SnapshotSituation::Newest => (
                SnapshotAction::Use,
                "synced before its rename and verified in full: the newest durable state",
            ),
            SnapshotSituation::Older => (
                SnapshotAction::Keep,
                "kept until a newer one is durable; remove_older deletes it",
            ),
            SnapshotSituation::TempFile => (
                SnapshotAction::RemoveFile,
                "never renamed, so never reported durable: the log was not compacted for it",
            ),
            SnapshotSituation::PartialInstall => (
                SnapshotAction::RemoveFile,
                "a receive is not synced before it finishes: the leader resends from offset 0",
            ),
            SnapshotSituation::Damaged => (
                SnapshotAction::SkipDamaged,
                "renamed only after its sync, so the disk damaged it: fall back to an older \
                 snapshot if the log still covers it (F11), else the node needs a new one",
            ),
            SnapshotSituation::ForeignCluster => (
                SnapshotAction::Refuse,
                "another cluster's state in this directory: an operator must decide",
            ),
        }
    }
}
