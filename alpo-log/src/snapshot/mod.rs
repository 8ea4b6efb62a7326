//! Snapshot files: a node's state-machine image at a log position, written, verified, listed,
//! transferred and received as whole files.
//!
//! The log knows nothing of what the image means: a snapshot is `(meta, image)` where the meta
//! holds the cluster, the node that took it, the last included position `(L, term_L)`, the
//! configuration in force as opaque bytes, and the image's size and CRC-64; the image is the
//! state machine's bytes in chunks, each with a CRC-32. `docs/formats.md` describes every byte.
//!
//! Parts: `format` (bytes and names), `crc64` (the image checksum), `writer` (taking one:
//! tmp, fsync, rename, fsync directory), `reader` (streaming a verified image), `store` (the
//! directory: open per the decision table in `recovery`, list, remove older, read byte ranges
//! for a transfer), `receive` (install-snapshot on a follower).
//!
//! Invariant across them: a file under a final name `snap-<L>-<T>.alposnap` was complete and
//! synced before it got that name; every byte handed to a state machine or written by a
//! receiver's `finish` has been verified against its chunk CRC and the image checksum.

mod crc64;
mod format;
mod reader;
mod receive;
mod recovery;
mod store;
mod writer;

pub use self::format::SnapshotMeta;
pub use self::reader::{ImageReader, verify_snapshot_file};
pub use self::receive::{ChunkOutcome, SnapshotReceiver};
pub use self::recovery::{SnapshotAction, SnapshotEvent, SnapshotSituation};
pub use self::store::{SnapshotFile, SnapshotOptions, SnapshotScan, SnapshotStore, scan_snapshots};
pub use self::writer::{FinishedSnapshot, SnapshotWriter};

/// The `below` bound for `Log::compact_prefix` after a durable snapshot at `snapshot_last_index`
/// (protocol S4): compact only below `L + 1`, keeping `retain_entries` entries at and below `L`
/// for followers that are only a little behind (hashicorp/raft `TrailingLogs`). Never below 1.
///
/// S4's `min(applied, L)` is `L` here: a snapshot is taken at an applied index (S1: `L <=
/// applied`), and a follower's `applied` is `L` right after an install (S7), so the node passes
/// the newest durable snapshot's `L`.
pub fn compaction_bound(snapshot_last_index: u64, retain_entries: u64) -> u64 {
    snapshot_last_index
        .saturating_add(1)
        .saturating_sub(retain_entries)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_bound_keeps_retained_entries_and_never_passes_the_snapshot() {
        assert_eq!(compaction_bound(100, 0), 101);
        assert_eq!(compaction_bound(100, 10), 91);
        assert_eq!(compaction_bound(100, 100), 1);
        assert_eq!(compaction_bound(100, 1000), 1);
        assert_eq!(compaction_bound(0, 0), 1);
        assert_eq!(compaction_bound(u64::MAX, 0), u64::MAX);
        for (l, retain) in [(5, 2), (1 << 40, 77), (3, 9)] {
            assert!(compaction_bound(l, retain) <= l + 1);
        }
    }
}
