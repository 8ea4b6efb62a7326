//! [`LogReader`]: read-only access to a log directory for the offline `alpo log` tools.
//!
//! It runs the same scan and decision table as `Log::open` but changes nothing: it takes no
//! lock, truncates no torn tail and removes no file; it reports what `Log::open` would do.
//! The log should be offline (no node running on it): a running node may extend the active
//! segment while it is read, which the reader would report as a torn tail.

use std::ops::RangeBounds;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::log::{Record, Segment, clip, find_segment, read_record};
use crate::recovery::{self, Access, RecoveryEvent, Situation};

/// A read-only view of a log directory.
#[derive(Debug)]
pub struct LogReader {
    dir: PathBuf,
    segments: Vec<Segment>,
    events: Vec<RecoveryEvent>,
    cluster_id: Option<u64>,
    node_id: Option<u64>,
}

/// What a [`LogReader`] found: the figures `alpo log verify` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Segment files holding records (or empty but valid).
    pub segment_count: u64,
    /// Valid records.
    pub record_count: u64,
    /// Index of the first record (`last_index + 1` when there is none).
    pub first_index: u64,
    /// Index of the last record.
    pub last_index: u64,
    /// Bytes of headers and valid records (not counting preallocated zeros).
    pub record_bytes: u64,
    /// The cluster id in the headers, if there is a segment.
    pub cluster_id: Option<u64>,
    /// The node id in the headers, if there is a segment.
    pub node_id: Option<u64>,
}

impl LogReader {
    /// Scans `dir` without changing it. Damage that `Log::open` would refuse is an
    /// [`Error::Corruption`] naming the file and byte offset of the first damage.
    pub fn open(dir: &Path) -> Result<LogReader, Error> {
        let mut events = Vec::new();
        let scan = recovery::scan_directory(dir, None, Access::ReadOnly, &mut events)?;
        let cluster_id = scan.segments.first().map(|s| s.header.cluster_id);
        let node_id = scan.segments.first().map(|s| s.header.node_id);
        let segments = scan
            .segments
            .into_iter()
            .map(|scan| Segment {
                sequence: scan.sequence,
                path: scan.path,
                file: scan.file,
                map: scan.map,
                first_index: scan.header.first_index,
                offsets: scan.offsets,
                written_end: scan.valid_end,
            })
            .collect();
        Ok(LogReader {
            dir: dir.to_path_buf(),
            segments,
            events,
            cluster_id,
            node_id,
        })
    }

    /// Scans `dir` like [`LogReader::open`] and returns every event met, in order, with the
    /// refusal if there is one: the last event is then the refused row.
    pub fn diagnose(dir: &Path) -> (Vec<RecoveryEvent>, Option<Error>) {
        let mut events = Vec::new();
        let error = recovery::scan_directory(dir, None, Access::ReadOnly, &mut events).err();
        (events, error)
    }

    /// The directory read.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One event per segment (and per interrupted file, and one `CompactedPrefix` when the log
    /// starts above index 1), in order: what `Log::open` would do.
    pub fn events(&self) -> &[RecoveryEvent] {
        &self.events
    }

    /// Events whose action changes the directory (a torn tail, a write-back hole, an
    /// interrupted segment): `Log::open` would truncate or remove these bytes.
    pub fn pending_repairs(&self) -> impl Iterator<Item = &RecoveryEvent> {
        self.events.iter().filter(|e| {
            matches!(
                e.situation,
                Situation::TornTail | Situation::WriteBackHole | Situation::InterruptedCreation
            )
        })
    }

    /// Index of the first record (`last_index + 1` when there is none).
    pub fn first_index(&self) -> u64 {
        self.segments.first().map_or(1, |s| s.first_index)
    }

    /// Index of the last valid record.
    pub fn last_index(&self) -> u64 {
        self.segments
            .last()
            .map_or(0, |s| s.first_index + s.offsets.len() as u64 - 1)
    }

    /// Figures for `alpo log verify`.
    pub fn summary(&self) -> Summary {
        Summary {
            segment_count: self.segments.len() as u64,
            record_count: self.segments.iter().map(|s| s.offsets.len() as u64).sum(),
            first_index: self.first_index(),
            last_index: self.last_index(),
            record_bytes: self.segments.iter().map(|s| s.written_end).sum(),
            cluster_id: self.cluster_id,
            node_id: self.node_id,
        }
    }

    /// Record `index`, or `None` if the log does not hold it; the CRC is checked again.
    pub fn entry(&self, index: u64) -> Result<Option<Record>, Error> {
        find_segment(&self.segments, index)
            .map(|segment| read_record(segment, index, &[]))
            .transpose()
    }

    /// The valid records with indices in `range`, in order.
    pub fn entries(
        &self,
        range: impl RangeBounds<u64>,
    ) -> impl Iterator<Item = Result<Record, Error>> {
        let (next, end) = clip(range, self.first_index(), self.last_index());
        (next..end).filter_map(|index| self.entry(index).transpose())
    }

    /// The segment file that holds `index`, for messages.
    pub fn segment_path(&self, index: u64) -> Option<&Path> {
        find_segment(&self.segments, index).map(|s| s.path.as_path())
    }
}
