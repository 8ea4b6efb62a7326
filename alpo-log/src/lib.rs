//! Checksummed, append-only segment files that store ALPO's log and hard state.
//!
//! The log stores opaque records `(index, term, kind, payload)`: it knows nothing about
//! elections, and treats `kind` and `payload` as bytes. A directory holds segment files
//! (`0000000000000001.alpolog`, …, lexical order = log order), a `LOCK` file, the
//! `hard_state` file, and the spare: the next segment's file, zero-filled by a background
//! thread so a roll-over does not pause appends. `docs/formats.md` describes every byte, the
//! disk assumptions, the durability steps and the recovery decision table.
//!
//! Invariants (`Log`): indices are contiguous from `first_index` to `last_index`;
//! `first_index - 1 <= durable_index <= last_index`; terms never decrease along the log;
//! every record on disk carries a CRC over all its bytes after the CRC field; nothing that
//! `sync` reported durable is ever dropped by recovery (damage to it makes `open` refuse).
//!
//! ```
//! # fn main() -> Result<(), alpo_log::Error> {
//! # let dir = tempfile::tempdir().map_err(|e| alpo_log::Error::Io {
//! #     path: "tmp".into(), operation: "tempdir", source: e })?;
//! use alpo_log::{Log, LogOptions};
//! let mut log = Log::open(dir.path(), LogOptions::new(7, 1))?;
//! log.append(1, 1, 1, b"x = 1")?;
//! log.append(2, 1, 1, b"y = 2")?;
//! assert_eq!(log.sync()?, 2); // one fdatasync for both appends
//! assert_eq!(log.entry(2)?.map(|r| r.payload), Some(bytes::Bytes::from_static(b"y = 2")));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap
)]

mod error;
mod hard_state;
pub mod limits;
mod log;
mod reader;
mod record;
mod recovery;
mod scrub;
mod segment;
mod snapshot;
mod spare;
mod term_ceiling;
mod view;

pub use crate::error::{Corruption, Error};
pub use crate::hard_state::{HARD_STATE_FILE_NAME, HardState};
pub use crate::log::{Entries, LOCK_FILE_NAME, Log, LogOptions, Record};
pub use crate::reader::{LogReader, Summary};
pub use crate::recovery::{Action, RecoveryEvent, Situation};
pub use crate::scrub::{ScrubFinding, ScrubStep};
pub use crate::segment::Preallocation;
pub use crate::snapshot::{
    ChunkOutcome, FinishedSnapshot, ImageReader, SnapshotAction, SnapshotEvent, SnapshotFile,
    SnapshotMeta, SnapshotOptions, SnapshotReceiver, SnapshotScan, SnapshotSituation,
    SnapshotStore, SnapshotWriter, compaction_bound, scan_snapshots, verify_snapshot_file,
};
pub use crate::term_ceiling::{TERM_CEILING_FILE_NAME, TermCeiling};
pub use crate::view::LogView;
