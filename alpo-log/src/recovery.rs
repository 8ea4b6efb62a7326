//! Recovery on open: what each on-disk situation means and what the log does about it.
//!
//! The decision table is [`Situation::action`]: one row per situation, each with its action and
//! the reason the action is safe. The scan here is read-only; `Log::open` carries out the
//! actions (zero a torn tail and fdatasync it, remove an interrupted segment and fsync the
//! directory), and the offline `LogReader` only reports them.
//!
//! Telling a torn tail from damage. Records reach the disk only through `sync`, which writes a
//! batch and then calls `fdatasync`; a sync is acknowledged only after `fdatasync` returns. So
//! a crash can leave, after the last acknowledged record, any mix of the unsynced batch's
//! sectors: written, still zero (segments are preallocated with zeros and truncation writes
//! zeros), or torn inside one sector. Three facts follow:
//! 1. A segment that is not the last was synced completely before the next one was created,
//!    so any bad byte in it is damage to acknowledged data: refuse.
//! 2. In the last segment, bad bytes with no valid record after them are the unsynced tail of
//!    the last batch: truncate them. (Damage confined to the very last record cannot be told
//!    from a torn write; the disk assumptions in `docs/formats.md` exclude silent rot of synced
//!    data.)
//! 3. In the last segment, bad bytes followed by a valid record with a later index are either
//!    damage to acknowledged data (a flipped bit in the middle) or unsynced write-back that
//!    reached the disk out of order (a later page written, an earlier one not). Write-back
//!    leaves a whole zero sector in the gap, because unwritten sectors of a preallocated file
//!    read as zero; a flipped bit or a torn length does not. So: a zero sector in the gap means
//!    write-back (truncate); none means damage (refuse and name the offset).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Corruption, Error};
use crate::limits::{SECTOR_BYTES, SEGMENT_BYTES_MAX};
use crate::record::{self, DecodeError, RECORD_HEADER_BYTES};
use crate::segment::{self, SEGMENT_HEADER_BYTES, SegmentHeader};

/// One on-disk situation recovery can meet: a row of the decision table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Situation {
    /// The directory holds no segment: a new log.
    EmptyDirectory,
    /// A segment's last record ends exactly at the end of the file.
    CleanEnd,
    /// A segment's records are followed by zeros only (preallocation, or an empty segment).
    ZeroTail,
    /// The last segment ends with bytes that are not a valid record and no valid record follows.
    TornTail,
    /// The last segment has bad bytes, a whole zero sector, then valid records: write-back of an
    /// unsynced batch reached the disk out of order.
    WriteBackHole,
    /// The last segment's header is incomplete or zero and its body is all zero: a crash during
    /// segment creation, before any record could be appended.
    InterruptedCreation,
    /// The last segment has a bad record followed by a valid one, with no zero sector between.
    DamageBeforeValidRecord,
    /// A segment that is not the last has a bad record (or non-zero bytes after its records).
    SealedSegmentDamage,
    /// A segment header is damaged, of another version, or of another cluster or node.
    HeaderMismatch,
    /// A segment sequence number between two others is missing.
    MissingSegment,
    /// A valid record or segment does not carry the next index, or its term went down.
    IndexGap,
    /// The first segment starts above index 1: compaction removed the segments before it
    /// (all of them, or, after a crash in the middle, the oldest ones).
    CompactedPrefix,
}

/// What recovery does in a [`Situation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the first segment (first index 1).
    CreateFirstSegment,
    /// Keep every record; appends continue after the last one.
    Accept,
    /// Zero the bytes from the first bad record to the last non-zero byte, fdatasync, keep the
    /// records before it.
    TruncateTail,
    /// Remove the segment file and fsync the directory.
    RemoveSegment,
    /// Refuse to open with an error naming the file and byte offset.
    Refuse,
}

/// One thing recovery found, for the node's log and the `alpo log` tools.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryEvent {
    /// The segment file (or the directory, for `EmptyDirectory`).
    pub path: PathBuf,
    /// Byte offset in the file where the situation starts (the first bad byte, or the end).
    pub offset: u64,
    /// The row of the decision table.
    pub situation: Situation,
}

impl Situation {
    /// Every row of the table, in the order of `docs/formats.md`.
    pub const ALL: [Situation; 12] = [
        Situation::EmptyDirectory,
        Situation::CleanEnd,
        Situation::ZeroTail,
        Situation::TornTail,
        Situation::WriteBackHole,
        Situation::InterruptedCreation,
        Situation::DamageBeforeValidRecord,
        Situation::SealedSegmentDamage,
        Situation::HeaderMismatch,
        Situation::MissingSegment,
        Situation::IndexGap,
        Situation::CompactedPrefix,
    ];

    /// The decision table: the action for this situation and why it is safe.
    pub fn action(self) -> (Action, &'static str) {
        match self {
            Situation::EmptyDirectory => (Action::CreateFirstSegment, "nothing was ever stored"),
            Situation::CleanEnd | Situation::ZeroTail => {
                (Action::Accept, "every record is complete and checksummed")
            }
            Situation::CompactedPrefix => (
                Action::Accept,
                "compaction removes whole segments oldest first, each durably, so a suffix \
                 remains; the node checks a snapshot covers first_index - 1 (S3)",
            ),
            Situation::TornTail => (
                Action::TruncateTail,
                "bytes after the last valid record were never synced, so never acknowledged",
            ),
            Situation::WriteBackHole => (
                Action::TruncateTail,
                "a zero sector after the last valid record shows an unsynced batch",
            ),
            Situation::InterruptedCreation => (
                Action::RemoveSegment,
                "records are appended only after the header is durable, so none were",
            ),
            Situation::DamageBeforeValidRecord
            | Situation::SealedSegmentDamage
            | Situation::HeaderMismatch
            | Situation::MissingSegment
            | Situation::IndexGap => (
                Action::Refuse,
                "acknowledged data may be damaged or missing: an operator must decide",
            ),
        }
    }
}

/// One segment as recovery found it, mapped read-only, with its records indexed.
#[derive(Debug)]
pub(crate) struct ScannedSegment {
    /// Sequence number from the file name.
    pub(crate) sequence: u64,
    /// The file.
    pub(crate) path: PathBuf,
    /// The open file (read-write for `Log`, read-only for `LogReader`).
    pub(crate) file: File,
    /// The whole file, mapped.
    pub(crate) map: Arc<Mmap>,
    /// The decoded header.
    pub(crate) header: SegmentHeader,
    /// Byte offset of each valid record.
    pub(crate) offsets: Vec<u32>,
    /// `(index, term)` of each valid record whose term differs from the record before it
    /// (the previous segment's last, for the first): the segment's term runs, found by the
    /// same walk, so a log's term index costs no second read.
    pub(crate) term_starts: Vec<(u64, u64)>,
    /// Term of the last valid record (or of the previous segment's, if none).
    pub(crate) last_term: u64,
    /// Offset just after the last valid record.
    pub(crate) valid_end: u64,
    /// Offset just after the last non-zero byte at or after `valid_end`.
    pub(crate) dirty_end: u64,
    /// The row this segment's end fell in (`CleanEnd`, `ZeroTail`, `TornTail`, `WriteBackHole`).
    pub(crate) situation: Situation,
}

/// What a read-only scan of a directory found.
#[derive(Debug, Default)]
pub(crate) struct DirectoryScan {
    /// Segments to keep, in order; indices are contiguous across them.
    pub(crate) segments: Vec<ScannedSegment>,
    /// Interrupted segment files to remove (at most one: the last).
    pub(crate) remove: Vec<PathBuf>,
}

/// The cluster and node ids a log expects in its headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub(crate) cluster_id: u64,
    pub(crate) node_id: u64,
}

/// How a scan opens files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    ReadOnly,
    ReadWrite,
}

/// Scans `dir` without changing it. With `ids` `None`, the first header's ids are expected of
/// the rest. On a refusal the error names file and offset, and the last event is the row.
pub(crate) fn scan_directory(
    dir: &Path,
    ids: Option<Ids>,
    access: Access,
    events: &mut Vec<RecoveryEvent>,
) -> Result<DirectoryScan, Error> {
    let mut scan = DirectoryScan::default();
    let mut files = segment::list_segments(dir)?;
    if let Some((_, path)) = files.last() {
        let (file, map) = open_and_map(path, access)?;
        if is_interrupted_creation(&map) {
            events.push(event(path, 0, Situation::InterruptedCreation));
            scan.remove.push(path.clone());
            files.pop();
        }
        drop(file);
    }
    if files.is_empty() {
        events.push(event(dir, 0, Situation::EmptyDirectory));
    }
    let mut ids = ids;
    let count = files.len();
    for (position, (sequence, path)) in files.into_iter().enumerate() {
        let previous = scan.segments.last();
        if let Some(previous) = previous
            && previous.sequence + 1 != sequence
        {
            events.push(event(&path, 0, Situation::MissingSegment));
            let reason = Corruption::MissingSegment {
                expected_sequence: previous.sequence + 1,
            };
            let missing = dir.join(segment::segment_file_name(previous.sequence + 1));
            return Err(Error::corruption(missing, 0, reason));
        }
        let is_last = position + 1 == count;
        let segment = scan_segment(&path, sequence, is_last, previous, &mut ids, access, events)?;
        scan.segments.push(segment);
    }
    Ok(scan)
}

fn event(path: &Path, offset: u64, situation: Situation) -> RecoveryEvent {
    RecoveryEvent {
        path: path.to_path_buf(),
        offset,
        situation,
    }
}

fn open_and_map(path: &Path, access: Access) -> Result<(File, Arc<Mmap>), Error> {
    let file = OpenOptions::new()
        .read(true)
        .write(access == Access::ReadWrite)
        .open(path)
        .map_err(|e| Error::io(path, "open segment", e))?;
    let length = file
        .metadata()
        .map_err(|e| Error::io(path, "stat segment", e))?
        .len();
    if SEGMENT_BYTES_MAX < length {
        return Err(Error::corruption(
            path,
            0,
            Corruption::SegmentTooLarge { length },
        ));
    }
    let map = segment::map_file(&file, path)?;
    Ok((file, map))
}

/// A header that does not decode (short, bad magic, bad CRC) over a body of zeros.
fn is_interrupted_creation(bytes: &[u8]) -> bool {
    let header_bad = matches!(
        SegmentHeader::decode(bytes),
        Err((
            _,
            Corruption::HeaderTruncated { .. }
                | Corruption::BadMagic
                | Corruption::HeaderChecksum { .. }
        ))
    );
    let body = bytes.get(48..).unwrap_or(&[]);
    header_bad && all_zero(body)
}

fn scan_segment(
    path: &Path,
    sequence: u64,
    is_last: bool,
    previous: Option<&ScannedSegment>,
    ids: &mut Option<Ids>,
    access: Access,
    events: &mut Vec<RecoveryEvent>,
) -> Result<ScannedSegment, Error> {
    let (file, map) = open_and_map(path, access)?;
    let header = check_header(path, &map, ids).inspect_err(|_| {
        events.push(event(path, 0, Situation::HeaderMismatch));
    })?;
    let (expected_first, previous_term) = match previous {
        Some(p) => (p.header.first_index + p.offsets.len() as u64, p.last_term),
        None => (header.first_index.max(1), 0),
    };
    if previous.is_none() && 1 < header.first_index {
        events.push(event(path, 32, Situation::CompactedPrefix));
    }
    if header.first_index != expected_first {
        events.push(event(path, 32, Situation::IndexGap));
        let reason = Corruption::IndexGap {
            expected: expected_first,
            found: header.first_index,
        };
        return Err(Error::corruption(path, 32, reason));
    }
    let records = scan_records(&map, header.first_index, previous_term, is_last);
    let situation = classify(&records.tail, is_last);
    let offset = records.valid_end;
    events.push(event(path, offset, situation));
    if situation.action().0 == Action::Refuse {
        let reason = match records.tail {
            Tail::Damaged { reason, .. } | Tail::OutOfOrder { reason } => reason,
            Tail::Clean | Tail::Zero => Corruption::SealedSegmentDamage,
        };
        return Err(Error::corruption(path, offset, reason));
    }
    Ok(ScannedSegment {
        sequence,
        path: path.to_path_buf(),
        file,
        map,
        header,
        offsets: records.offsets,
        term_starts: records.term_starts,
        last_term: records.last_term.unwrap_or(previous_term),
        valid_end: records.valid_end,
        dirty_end: records.dirty_end,
        situation,
    })
}

fn check_header(path: &Path, bytes: &[u8], ids: &mut Option<Ids>) -> Result<SegmentHeader, Error> {
    let header =
        SegmentHeader::decode(bytes).map_err(|(at, reason)| Error::corruption(path, at, reason))?;
    let expected = *ids.get_or_insert(Ids {
        cluster_id: header.cluster_id,
        node_id: header.node_id,
    });
    if header.cluster_id != expected.cluster_id {
        let reason = Corruption::ClusterIdMismatch {
            expected: expected.cluster_id,
            found: header.cluster_id,
        };
        return Err(Error::corruption(path, 16, reason));
    }
    if header.node_id != expected.node_id {
        let reason = Corruption::NodeIdMismatch {
            expected: expected.node_id,
            found: header.node_id,
        };
        return Err(Error::corruption(path, 24, reason));
    }
    Ok(header)
}

fn classify(tail: &Tail, is_last: bool) -> Situation {
    match *tail {
        Tail::Clean => Situation::CleanEnd,
        Tail::Zero => Situation::ZeroTail,
        Tail::OutOfOrder { .. } => Situation::IndexGap,
        Tail::Damaged { .. } if !is_last => Situation::SealedSegmentDamage,
        Tail::Damaged {
            later_record: None, ..
        } => Situation::TornTail,
        Tail::Damaged {
            zero_sector: true, ..
        } => Situation::WriteBackHole,
        Tail::Damaged { .. } => Situation::DamageBeforeValidRecord,
    }
}

/// How the records of a segment end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last record ends at the end of the bytes.
    Clean,
    /// Only zeros follow the last record.
    Zero,
    /// A record does not decode.
    Damaged {
        /// Why.
        reason: Corruption,
        /// Offset of a later valid record with an index at or above the expected one (searched
        /// only in the last segment).
        later_record: Option<u64>,
        /// Whether a whole, aligned zero sector lies between the damage and that record.
        zero_sector: bool,
    },
    /// A record decodes but has the wrong index or a lower term.
    OutOfOrder {
        /// Which.
        reason: Corruption,
    },
}

/// The records of one segment, as far as they are valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RecordScan {
    /// Offset of each valid record.
    pub(crate) offsets: Vec<u32>,
    /// `(index, term)` of each valid record whose term differs from the one before it.
    pub(crate) term_starts: Vec<(u64, u64)>,
    /// Term of the last valid record.
    pub(crate) last_term: Option<u64>,
    /// Offset after the last valid record.
    pub(crate) valid_end: u64,
    /// Offset after the last non-zero byte (at least `valid_end`).
    pub(crate) dirty_end: u64,
    /// How the records end.
    pub(crate) tail: Tail,
}

/// Walks the records of a whole segment file (`bytes` includes the header). Never panics.
pub(crate) fn scan_records(
    bytes: &[u8],
    first_index: u64,
    previous_term: u64,
    search_later: bool,
) -> RecordScan {
    let mut scan = RecordScan {
        offsets: Vec::new(),
        term_starts: Vec::new(),
        last_term: None,
        valid_end: SEGMENT_HEADER_BYTES.min(bytes.len() as u64),
        dirty_end: 0,
        tail: Tail::Clean,
    };
    let mut at = usize::try_from(scan.valid_end).unwrap_or(bytes.len());
    let mut expected = first_index;
    let mut term = previous_term;
    // Bounded: each pass advances `at` by at least RECORD_HEADER_BYTES or ends the loop.
    while at < bytes.len() {
        let rest = &bytes[at..];
        let view = match record::decode(rest) {
            Ok(view) => view,
            Err(error) => {
                scan.tail = damaged_tail(bytes, at, error, expected, search_later);
                break;
            }
        };
        if let Some(reason) = out_of_order(view, expected, term) {
            scan.tail = Tail::OutOfOrder { reason };
            break;
        }
        let Ok(offset) = u32::try_from(at) else { break };
        scan.offsets.push(offset);
        if view.term != term {
            scan.term_starts.push((expected, view.term));
        }
        scan.last_term = Some(view.term);
        term = view.term;
        expected += 1;
        at += usize::try_from(view.record_bytes()).unwrap_or(usize::MAX);
        scan.valid_end = at as u64;
    }
    let rest = bytes.get(at..).unwrap_or(&[]);
    let nonzero = rest.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1);
    scan.dirty_end = (at + nonzero) as u64;
    if matches!(scan.tail, Tail::Damaged { .. }) && nonzero == 0 {
        scan.tail = Tail::Zero;
    }
    scan
}

fn out_of_order(view: record::RecordView, expected: u64, term: u64) -> Option<Corruption> {
    if view.index != expected {
        return Some(Corruption::IndexGap {
            expected,
            found: view.index,
        });
    }
    if view.term < term {
        return Some(Corruption::TermDecreased {
            previous: term,
            found: view.term,
        });
    }
    None
}

fn damaged_tail(
    bytes: &[u8],
    at: usize,
    error: DecodeError,
    expected: u64,
    search_later: bool,
) -> Tail {
    let reason = match error {
        DecodeError::HeaderIncomplete => Corruption::RecordLength { length: 0 },
        DecodeError::BadLength { length } => Corruption::RecordLength { length },
        DecodeError::BadChecksum { stored, computed } => {
            Corruption::RecordChecksum { stored, computed }
        }
    };
    let later_record = if search_later {
        find_later_record(bytes, at + 1, expected)
    } else {
        None
    };
    let zero_sector = later_record
        .and_then(|end| bytes.get(at..usize::try_from(end).ok()?))
        .is_some_and(|gap| has_zero_sector(gap, at as u64));
    Tail::Damaged {
        reason,
        later_record,
        zero_sector,
    }
}

/// The offset of the first valid record at or after `from` whose index is at least `expected`.
fn find_later_record(bytes: &[u8], from: usize, expected: u64) -> Option<u64> {
    let header = usize::try_from(RECORD_HEADER_BYTES).unwrap_or(usize::MAX);
    let mut at = from;
    // Bounded by bytes.len(): `at` grows every pass.
    while at + header <= bytes.len() {
        let window = &bytes[at..at + header];
        if all_zero(window) {
            // A record header is never all zero (its CRC would be of zeros), so skip ahead to
            // the first window that can hold a non-zero byte.
            let next = bytes[at..].iter().position(|b| *b != 0)?;
            at = (at + next).saturating_sub(header - 1).max(at + 1);
            continue;
        }
        if let Ok(view) = record::decode(&bytes[at..])
            && expected <= view.index
        {
            return Some(at as u64);
        }
        at += 1;
    }
    None
}

/// Whether `gap`, which starts at file offset `start`, holds a whole aligned zero sector.
fn has_zero_sector(gap: &[u8], start: u64) -> bool {
    let sector = usize::try_from(SECTOR_BYTES).unwrap_or(usize::MAX);
    let misalignment = usize::try_from(start % SECTOR_BYTES).unwrap_or(0);
    let first = (sector - misalignment) % sector;
    gap.get(first..)
        .is_some_and(|aligned| aligned.chunks_exact(sector).any(all_zero))
}

/// Whether every byte is zero.
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{RecordView, encode};

    /// A header-sized prefix of zeros, then records `first..first + count` of `size` bytes.
    fn segment(first: u64, count: u64, size: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 48];
        for index in first..first + count {
            let view = RecordView {
                index,
                term: 1,
                kind: 1,
                payload_bytes: size,
            };
            encode(&mut bytes, view, &vec![0x77; size as usize]);
        }
        bytes
    }

    #[test]
    fn clean_zero_and_torn_ends() {
        let bytes = segment(1, 3, 10);
        let clean = scan_records(&bytes, 1, 0, true);
        assert_eq!((clean.offsets.len(), clean.tail.clone()), (3, Tail::Clean));
        let mut padded = bytes.clone();
        padded.resize(4096, 0);
        assert_eq!(scan_records(&padded, 1, 0, true).tail, Tail::Zero);
        let torn = scan_records(&bytes[..bytes.len() - 1], 1, 0, true);
        assert_eq!(torn.offsets.len(), 2);
        assert_eq!(classify(&torn.tail, true), Situation::TornTail);
        assert_eq!(classify(&torn.tail, false), Situation::SealedSegmentDamage);
    }

    #[test]
    fn damage_then_valid_record_needs_a_zero_sector_to_be_write_back() {
        let mut bytes = segment(1, 40, 50);
        bytes[48 + 75 * 2 + 3] ^= 1;
        let scan = scan_records(&bytes, 1, 0, true);
        assert_eq!(scan.offsets.len(), 2);
        assert_eq!(
            classify(&scan.tail, true),
            Situation::DamageBeforeValidRecord
        );
        let mut hole = segment(1, 40, 50);
        hole[1024..1536].fill(0);
        let scan = scan_records(&hole, 1, 0, true);
        assert_eq!(classify(&scan.tail, true), Situation::WriteBackHole);
        // 511 zero bytes, or 512 not aligned to a sector, are not a hole.
        assert!(!has_zero_sector(&[0; 511], 0));
        assert!(!has_zero_sector(&[0; 512], 1));
        assert!(has_zero_sector(&[0; 1023], 1));
    }

    #[test]
    fn later_record_must_not_go_back_in_index() {
        let bytes = segment(1, 3, 10);
        assert_eq!(find_later_record(&bytes, 49, 2), Some(48 + 35));
        assert_eq!(find_later_record(&bytes, 49, 9), None);
    }

    #[test]
    fn every_row_has_an_action() {
        for row in Situation::ALL {
            let (_, why) = row.action();
            assert!(!why.is_empty());
        }
    }
}
