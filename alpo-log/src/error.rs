//! The one error type of `alpo-log`.
//!
//! Errors from disk name the file and, for damage, the byte offset inside it. A failed `fsync` or
//! `fdatasync` is its own variant, [`Error::SyncFailed`], and is fatal: the log refuses every
//! later mutation with [`Error::Poisoned`] rather than retry and pretend the data is durable.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in `alpo-log`.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call other than a sync failed.
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What the log was doing (`"open"`, `"write"`, `"map"`, …).
        operation: &'static str,
        /// The error from the operating system.
        source: io::Error,
    },
    /// `fsync`/`fdatasync` failed. Fatal: the data written since the last good sync may or may
    /// not be on disk, and the kernel may have dropped the dirty pages. The node must stop.
    SyncFailed {
        /// The file or directory whose sync failed.
        path: PathBuf,
        /// The error from the operating system.
        source: io::Error,
    },
    /// An earlier fatal error left the log in an unknown state; reopen it (restart the node).
    Poisoned,
    /// Another process (or another `Log` in this one) holds the directory's `LOCK` file.
    Locked {
        /// The `LOCK` file.
        path: PathBuf,
    },
    /// Bytes on disk are damaged, or do not belong to this log.
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damage inside the file.
        offset: u64,
        /// What is wrong.
        reason: Corruption,
    },
    /// `append` was called with an index that is not `last_index + 1`.
    IndexNotNext {
        /// The index the log expected (`last_index + 1`).
        expected: u64,
        /// The index that was given.
        found: u64,
    },
    /// `append` was called with a term below the last entry's term.
    TermDecreased {
        /// The last entry's term.
        last_term: u64,
        /// The term that was given.
        found: u64,
    },
    /// A payload is larger than one record may be.
    RecordTooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The largest payload the log accepts with these options.
        limit: u64,
    },
    /// `truncate_suffix` would remove entries below `first_index` (already compacted, so
    /// committed: no leader may overwrite them).
    TruncateBelowFirst {
        /// The index given to `truncate_suffix`.
        from: u64,
        /// The log's first index.
        first_index: u64,
    },
    /// A `LogOptions` field is out of range.
    InvalidOptions {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },

    // Snapshot files and shared reads (issue 11). Kept together so the block merges cleanly.
    /// A read asked for an index that compaction removed (a snapshot covers it).
    Compacted {
        /// The index asked for.
        index: u64,
        /// The first index still readable.
        first_retained: u64,
    },
    /// A snapshot's membership bytes are larger than a snapshot header may hold.
    MembershipTooLarge {
        /// The membership's size in bytes.
        size: u64,
        /// The largest size accepted (`SNAPSHOT_MEMBERSHIP_BYTES_MAX`).
        limit: u64,
    },
    /// A received snapshot was finished before all of its bytes arrived.
    SnapshotIncomplete {
        /// The partial file.
        path: PathBuf,
        /// Bytes held.
        held: u64,
        /// Bytes the header announces (0 while the header itself is incomplete).
        expected: u64,
    },
    /// A snapshot call named a snapshot id other than the one being received.
    SnapshotIdMismatch {
        /// The id being received, if any.
        receiving: Option<u64>,
        /// The id given.
        found: u64,
    },
}

/// What is wrong with damaged bytes on disk; part of [`Error::Corruption`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Corruption {
    /// The file is shorter than a segment or hard-state header.
    HeaderTruncated {
        /// The file's length.
        length: u64,
    },
    /// The file is larger than any segment may be (`SEGMENT_BYTES_MAX`).
    SegmentTooLarge {
        /// The file's length.
        length: u64,
    },
    /// The file does not start with the expected magic bytes.
    BadMagic,
    /// The header's format version is not one this build reads.
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The header's CRC does not match its bytes.
    HeaderChecksum {
        /// The CRC stored in the header.
        stored: u32,
        /// The CRC of the header bytes.
        computed: u32,
    },
    /// The segment belongs to another cluster.
    ClusterIdMismatch {
        /// The cluster id the log was opened with.
        expected: u64,
        /// The cluster id in the header.
        found: u64,
    },
    /// The segment belongs to another node.
    NodeIdMismatch {
        /// The node id the log was opened with.
        expected: u64,
        /// The node id in the header.
        found: u64,
    },
    /// A record's CRC does not match its bytes.
    RecordChecksum {
        /// The CRC stored in the record.
        stored: u32,
        /// The CRC of the bytes it covers.
        computed: u32,
    },
    /// A record's length field is larger than the limit or runs past the end of the file.
    RecordLength {
        /// The payload length in the record's length field.
        length: u32,
    },
    /// A record or segment does not carry the index that follows its predecessor.
    IndexGap {
        /// The index that should come next.
        expected: u64,
        /// The index found.
        found: u64,
    },
    /// A segment file between two others is missing.
    MissingSegment {
        /// The sequence number that should exist.
        expected_sequence: u64,
    },
    /// A sealed segment (not the last) has bytes after its last record that are not zero.
    SealedSegmentDamage,
    /// A record's term is below the term of the record before it.
    TermDecreased {
        /// The previous record's term.
        previous: u64,
        /// The term found.
        found: u64,
    },
    /// The hard-state file has a vote flag other than 0 or 1.
    BadVoteFlag {
        /// The flag byte found.
        found: u8,
    },

    // Snapshot files (issue 11).
    /// A snapshot header's membership length is larger than `SNAPSHOT_MEMBERSHIP_BYTES_MAX`.
    MembershipLength {
        /// The length found.
        length: u32,
    },
    /// A snapshot header's chunk size is 0 or larger than `SNAPSHOT_CHUNK_BYTES_MAX`.
    ChunkSize {
        /// The chunk size found.
        chunk_bytes: u32,
    },
    /// A snapshot file's length is not the one its header implies.
    FileLength {
        /// The length the header implies (`u64::MAX` if it overflows).
        expected: u64,
        /// The file's length.
        found: u64,
    },
    /// A snapshot chunk's length field is not the length its position implies.
    ChunkLength {
        /// The length field found.
        found: u32,
        /// The length the header implies for this chunk.
        expected: u32,
    },
    /// A snapshot chunk's CRC does not match its length and body.
    ChunkChecksum {
        /// The CRC stored in the chunk.
        stored: u32,
        /// The CRC of the bytes it covers.
        computed: u32,
    },
    /// The CRC-64 of a snapshot's whole image does not match the header's.
    ImageChecksum {
        /// The checksum in the header.
        stored: u64,
        /// The checksum of the image read.
        computed: u64,
    },
    /// A snapshot's trailer is damaged or does not match its header.
    TrailerMismatch,
    /// A snapshot file's name does not carry the position its header holds.
    SnapshotNameMismatch {
        /// The last included index in the header.
        last_index: u64,
        /// The last included term in the header.
        last_term: u64,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                path, operation, ..
            } => write!(f, "{operation} {}", path.display()),
            Error::SyncFailed { path, .. } => {
                write!(f, "fatal: sync of {} failed", path.display())
            }
            Error::Poisoned => write!(f, "log is unusable after an earlier fatal error"),
            Error::Locked { path } => {
                write!(
                    f,
                    "log directory is locked by another process: {}",
                    path.display()
                )
            }
            Error::Corruption {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corrupt log file {} at byte {offset}: {reason}",
                path.display()
            ),
            Error::IndexNotNext { expected, found } => {
                write!(f, "append of index {found}, expected index {expected}")
            }
            Error::TermDecreased { last_term, found } => {
                write!(f, "append of term {found} below the last term {last_term}")
            }
            Error::RecordTooLarge { size, limit } => {
                write!(
                    f,
                    "payload of {size} bytes is larger than the limit of {limit} bytes"
                )
            }
            Error::TruncateBelowFirst { from, first_index } => write!(
                f,
                "truncate from index {from} is below the first index {first_index}"
            ),
            Error::InvalidOptions { field, problem } => {
                write!(f, "invalid log options: {field}: {problem}")
            }
            Error::Compacted { .. }
            | Error::MembershipTooLarge { .. }
            | Error::SnapshotIncomplete { .. }
            | Error::SnapshotIdMismatch { .. } => self.fmt_snapshot(f),
        }
    }
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::HeaderTruncated { length } => {
                write!(f, "file of {length} bytes is shorter than its header")
            }
            Corruption::SegmentTooLarge { length } => {
                write!(
                    f,
                    "file of {length} bytes is larger than any segment may be"
                )
            }
            Corruption::BadMagic => write!(f, "bad magic bytes"),
            Corruption::UnsupportedVersion { found } => {
                write!(f, "unsupported format version {found}")
            }
            Corruption::HeaderChecksum { stored, computed } => write!(
                f,
                "header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Corruption::ClusterIdMismatch { expected, found } => {
                write!(f, "cluster id {found}, expected {expected}")
            }
            Corruption::NodeIdMismatch { expected, found } => {
                write!(f, "node id {found}, expected {expected}")
            }
            Corruption::RecordChecksum { stored, computed } => write!(
                f,
                "record checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Corruption::RecordLength { length } => {
                write!(
                    f,
                    "record length {length} is too large or runs past the end"
                )
            }
            Corruption::IndexGap { expected, found } => {
                write!(f, "index gap: expected index {expected}, found {found}")
            }
            Corruption::MissingSegment { expected_sequence } => {
                write!(f, "segment {expected_sequence:016} is missing")
            }
            Corruption::SealedSegmentDamage => {
                write!(
                    f,
                    "non-zero bytes after the last record of a sealed segment"
                )
            }
            Corruption::TermDecreased { previous, found } => {
                write!(
                    f,
                    "term {found} below the previous record's term {previous}"
                )
            }
            Corruption::BadVoteFlag { found } => write!(f, "vote flag {found}, expected 0 or 1"),
            Corruption::MembershipLength { .. }
            | Corruption::ChunkSize { .. }
            | Corruption::FileLength { .. }
            | Corruption::ChunkLength { .. }
            | Corruption::ChunkChecksum { .. }
            | Corruption::ImageChecksum { .. }
            | Corruption::TrailerMismatch
            | Corruption::SnapshotNameMismatch { .. } => self.fmt_snapshot(f),
        }
    }
}

/// The workspace's convention (docs/ARCHITECTURE.md, Errors): `Display` describes this level
/// only, and the operating system's error is the `source()`, so `{:#}` prints each cause once.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::SyncFailed { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// True for [`Error::SyncFailed`] and [`Error::Poisoned`]: the node must stop. Any other
    /// I/O error in the middle of a mutation also poisons the log, so the next call returns
    /// [`Error::Poisoned`]; caller errors (`IndexNotNext`, `RecordTooLarge`, …) do not.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::SyncFailed { .. } | Error::Poisoned)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, operation: &'static str, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            operation,
            source,
        }
    }

    pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, reason: Corruption) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason,
        }
    }
}

// Snapshot files and shared reads (issue 11): their messages, kept apart for clean merges.
impl Error {
    fn fmt_snapshot(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Compacted {
                index,
                first_retained,
            } => write!(
                f,
                "index {index} is compacted away; the first index still readable is \
             {first_retained}"
            ),
            Error::MembershipTooLarge { size, limit } => write!(
                f,
                "membership of {size} bytes is larger than the limit of {limit} bytes"
            ),
            Error::SnapshotIncomplete {
                path,
                held,
                expected,
            } => write!(
                f,
                "snapshot {} is incomplete: {held} of {expected} bytes received",
                path.display()
            ),
            Error::SnapshotIdMismatch { receiving, found } => match receiving {
                Some(id) => write!(f, "snapshot id {found}, but receiving snapshot id {id}"),
                None => write!(f, "snapshot id {found}, but no snapshot is being received"),
            },
            _ => Ok(()),
        }
    }
}

impl Corruption {
    fn fmt_snapshot(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Corruption::MembershipLength { length } => {
                write!(f, "membership length {length} is larger than the limit")
            }
            Corruption::ChunkSize { chunk_bytes } => {
                write!(
                    f,
                    "chunk size {chunk_bytes} is zero or larger than the limit"
                )
            }
            Corruption::FileLength { expected, found } => {
                write!(f, "file of {found} bytes, its header implies {expected}")
            }
            Corruption::ChunkLength { found, expected } => {
                write!(f, "chunk length {found}, expected {expected}")
            }
            Corruption::ChunkChecksum { stored, computed } => write!(
                f,
                "chunk checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            ),
            Corruption::ImageChecksum { stored, computed } => write!(
                f,
                "image checksum mismatch: stored {stored:#018x}, computed {computed:#018x}"
            ),
            Corruption::TrailerMismatch => {
                write!(f, "trailer damaged or not matching the header")
            }
            Corruption::SnapshotNameMismatch {
                last_index,
                last_term,
            } => write!(
                f,
                "header holds index {last_index} term {last_term}, not the file name's"
            ),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `{:#}` prints in a binary (anyhow itself, a dev-dependency): the error, then each
    /// `source()`, `": "` between them.
    fn with_causes(error: impl std::error::Error + Send + Sync + 'static) -> String {
        format!("{:#}", anyhow::Error::new(error))
    }

    #[test]
    fn a_chain_prints_each_cause_once() {
        let error = Error::io("/data/LOCK", "open", io::Error::other("permission denied"));
        assert_eq!(error.to_string(), "open /data/LOCK");
        assert_eq!(with_causes(error), "open /data/LOCK: permission denied");
        let sync = Error::SyncFailed {
            path: "/data/0000000000000001.alpolog".into(),
            source: io::Error::other("disk on fire"),
        };
        let text = with_causes(sync);
        assert_eq!(
            text,
            "fatal: sync of /data/0000000000000001.alpolog failed: disk on fire"
        );
        // Damage is this level's own account, printed here, and no source.
        let damage = Error::corruption("/data/x.alpolog", 16, Corruption::BadMagic);
        assert_eq!(
            with_causes(damage),
            "corrupt log file /data/x.alpolog at byte 16: bad magic bytes"
        );
    }
}
