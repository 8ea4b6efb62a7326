//! Named maxima for the log, each with what happens when it is reached.
//!
//! Every buffer the log keeps and every length it reads from disk is bounded by one of these.

use crate::record::RECORD_HEADER_BYTES;
use crate::segment::SEGMENT_HEADER_BYTES;

/// Default size at which the active segment is sealed and a new one is started (64 MiB).
/// An append whose record does not fit in the rest of the active segment goes to a new segment.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Largest segment size a log may be opened with. Offsets inside a segment are kept as `u32`,
/// so a segment must stay below 4 GiB; `Log::open` refuses a larger `segment_bytes_max`.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// Smallest segment size a log may be opened with: room for the header and one small record.
/// `Log::open` refuses a smaller `segment_bytes_max`.
pub const SEGMENT_BYTES_MIN: u64 = 4096;

/// Largest payload of one record (16 MiB). `append` refuses a larger payload with
/// `Error::RecordTooLarge`; the decoder treats a larger length field as damage before reading it.
pub const RECORD_PAYLOAD_BYTES_MAX: u32 = 16 * 1024 * 1024;

/// Bytes of appended records kept in memory before they are written (not synced) to the file.
/// At the limit `append` writes the buffer to the active segment; `sync` still decides durability.
pub const WRITE_BUFFER_BYTES_MAX: usize = 1024 * 1024;

/// Sector size the recovery logic assumes the disk writes atomically (see `docs/formats.md`).
/// A hole of at least one zero sector inside damage marks unsynced write-back, not rot.
pub const SECTOR_BYTES: u64 = 512;

/// Largest number of segment files a directory may hold (64 MiB × 2^20 = 64 TiB at the
/// default size). `Log::open` refuses a directory with more.
pub const SEGMENT_COUNT_MAX: usize = 1 << 20;

/// The spare segment is zero-filled in steps of this many bytes, each followed by an `fdatasync`
/// and a pause of `SPARE_STEP_PAUSE_MS`, so the preparation never holds much unsynced data whose
/// write-back would delay the foreground's small syncs; 64 MiB take 256 steps (about two
/// seconds), under the time between roll-overs at full load.
pub const SPARE_STEP_BYTES: u64 = 256 * 1024;

/// After an open, the log starts preparing the spare once the active segment holds
/// `1 / SPARE_START_FRACTION` of its capacity (after a roll-over it starts at once): with 64 MiB
/// segments, after 16 MiB, leaving 48 MiB of appends for the paced preparation (about two
/// seconds) to finish before the roll-over needs it.
pub const SPARE_START_FRACTION: u64 = 4;

/// The pause between two steps of the spare's zero-fill, in milliseconds (see
/// `SPARE_STEP_BYTES`).
pub const SPARE_STEP_PAUSE_MS: u64 = 4;

/// Image bytes per chunk of a snapshot file written by this build (64 KiB). The writer and the
/// image reader each hold one chunk in memory; the chunk's CRC-32 localises damage to 64 KiB,
/// and its 8-byte frame costs 0.01% of the image. See `docs/formats.md` for the choice.
pub const SNAPSHOT_CHUNK_BYTES: u32 = 64 * 1024;

/// Largest chunk size a snapshot header may announce (4 MiB). A reader refuses a larger one as
/// damage before allocating its chunk buffer.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u32 = 4 * 1024 * 1024;

/// Largest opaque membership a snapshot header holds (64 KiB). `SnapshotStore::begin` refuses
/// a larger one with `Error::MembershipTooLarge`; a reader treats a larger length as damage.
pub const SNAPSHOT_MEMBERSHIP_BYTES_MAX: u32 = 64 * 1024;

/// Largest number of snapshot files (valid or damaged) a directory may hold. `SnapshotStore`
/// refuses to open a directory with more; `remove_older` keeps the count at one or two.
pub const SNAPSHOT_COUNT_MAX: usize = 1024;

// The writer's chunks must be readable by every reader.
const _: () = assert!(SNAPSHOT_CHUNK_BYTES <= SNAPSHOT_CHUNK_BYTES_MAX);

// The smallest segment must hold its header and one empty record, or no append could succeed.
const _: () = assert!(SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES < SEGMENT_BYTES_MIN);
// Offsets inside a segment are u32 (see `SEGMENT_BYTES_MAX`).
const _: () = assert!(SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX);
// The largest record must fit in a default segment, or a maximal append could never succeed.
const _: () = assert!(
    SEGMENT_HEADER_BYTES + RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX as u64
        <= SEGMENT_BYTES_DEFAULT
);
