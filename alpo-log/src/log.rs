//! [`Log`]: the writable log of one node, with group commit, mmap reads, truncation and
//! compaction.
//!
//! Index relationships, always: `first_index - 1 <= durable_index <= last_index`, and the log
//! holds exactly the records `first_index ..= last_index` (none when `last_index < first_index`).
//!
//! Durability steps, as numbered in `docs/formats.md`:
//! - append → `sync`: 1. write the buffered records at the end of the active segment (one
//!   `pwrite`); 2. `fdatasync` the segment; 3. report `last_index` as durable.
//! - roll over: 1. write the buffer; 2. `fdatasync` the full segment; 3. turn the spare into the
//!   next segment (`spare.rs`: header, `fdatasync`, rename, fsync directory); without a spare,
//!   create the segment in line (`segment::create_segment`: header, preallocate, fsync file,
//!   fsync directory); 4. start preparing the next spare (after open, the first spare starts
//!   only once the active segment is a quarter full).
//! - `truncate_suffix`: 1. write the buffer; 2. remove whole segments above `from`, last first,
//!   each followed by an fsync of the directory; in the segment holding `from`, with `cut` the
//!   record's offset and `boundary` the first sector boundary at or after it: 3. overwrite
//!   `[boundary, written end)` with zeros; 4. `fdatasync`; 5. overwrite `[cut, boundary)` with
//!   zeros (less than one sector, so atomic); 6. `fdatasync`. A crash in step 4 leaves only
//!   whole zero sectors before any old record (recovery row `WriteBackHole`); a crash in step
//!   6 leaves old records only inside the sector of `cut`, followed by zeros (`TornTail`).
//! - `compact_prefix`: remove whole segments below `below`, oldest first, each followed by an
//!   fsync of the directory; the active segment and the one holding the last record stay.
//! - `reset`: 1. remove every segment, newest first, each followed by an fsync of the directory;
//!   2. create a segment starting at the new first index (header, fsync, fsync directory).
//! - After every change the log republishes what [`LogView`]s may read (`view.rs`).

use std::fmt;
use std::fs::{self, File, OpenOptions, TryLockError};
use std::ops::{Bound, RangeBounds};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use memmap2::Mmap;

use crate::error::{Corruption, Error};
use crate::limits::{
    RECORD_PAYLOAD_BYTES_MAX, SECTOR_BYTES, SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MAX,
    SEGMENT_BYTES_MIN, SPARE_START_FRACTION, WRITE_BUFFER_BYTES_MAX,
};
use crate::record::{self, RECORD_HEADER_BYTES, RecordView};
use crate::recovery::{self, Access, Ids, RecoveryEvent, ScannedSegment, Situation};
use crate::segment::{self, Preallocation, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::spare::{self, Spare};
use crate::view::{self, LogView, Published, SegmentState};

/// The name of the lock file in a log directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// How to open a [`Log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// The cluster every segment header must name.
    pub cluster_id: u64,
    /// The node every segment header must name.
    pub node_id: u64,
    /// Size at which a segment is sealed and the next one started; also the size each segment
    /// is preallocated to. Between `SEGMENT_BYTES_MIN` and `SEGMENT_BYTES_MAX`.
    pub segment_bytes_max: u64,
    /// How new segments are extended to `segment_bytes_max`.
    pub preallocation: Preallocation,
}

impl LogOptions {
    /// Options for `cluster_id` and `node_id` with 64 MiB segments, preallocated with zeros.
    pub fn new(cluster_id: u64, node_id: u64) -> Self {
        LogOptions {
            cluster_id,
            node_id,
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            preallocation: Preallocation::Zeroed,
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes_max) {
            return Err(Error::InvalidOptions {
                field: "segment_bytes_max",
                problem: format!(
                    "{} is outside {SEGMENT_BYTES_MIN} ..= {SEGMENT_BYTES_MAX}",
                    self.segment_bytes_max
                ),
            });
        }
        Ok(())
    }

    fn ids(&self) -> Ids {
        Ids {
            cluster_id: self.cluster_id,
            node_id: self.node_id,
        }
    }
}

/// One record read back from the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record's index.
    pub index: u64,
    /// The record's term.
    pub term: u64,
    /// The record's kind (opaque to the log).
    pub kind: u8,
    /// The payload; for a record already written to its segment this shares the memory map
    /// instead of copying.
    pub payload: Bytes,
}

/// The writable log of one node. `Send`, not `Sync`: one storage thread owns it.
pub struct Log {
    dir: PathBuf,
    options: LogOptions,
    /// Holds the directory's lock while open; closing the file releases it.
    _lock: File,
    /// At least one; the last is the active segment.
    segments: Vec<Segment>,
    /// Encoded records appended but not yet written; they belong at the active segment's
    /// `written_end`.
    buffer: Vec<u8>,
    first_index: u64,
    last_index: u64,
    last_term: u64,
    /// The term runs of the records held: `(first index, term)` in order, one per term,
    /// derived from the recovery scan at open and kept up by append, truncation, compaction
    /// and reset (O(terms) memory).
    term_runs: Vec<(u64, u64)>,
    durable_index: u64,
    poisoned: bool,
    recovery: Vec<RecoveryEvent>,
    /// The next segment's file, being zero-filled in the background (`Zeroed` preallocation).
    spare: Option<Spare>,
    /// What [`LogView`]s may read: republished after every change (`view.rs`).
    published: Arc<RwLock<Published>>,
}

/// A segment in use: its file, its map and the offsets of its records.
pub(crate) struct Segment {
    pub(crate) sequence: u64,
    pub(crate) path: PathBuf,
    pub(crate) file: File,
    pub(crate) map: Arc<Mmap>,
    pub(crate) first_index: u64,
    /// Byte offset of each record, including records still in the write buffer.
    pub(crate) offsets: Vec<u32>,
    /// Bytes written to the file (header plus records); buffered records start here.
    pub(crate) written_end: u64,
}

// Debug output summarises: the buffer and the offsets can hold megabytes.
impl Drop for Log {
    /// Lets a spare being prepared finish before the directory's lock is released, so the next
    /// open of this directory never meets a half-written spare still being written.
    fn drop(&mut self) {
        if let Some(spare) = self.spare.take() {
            spare.abandon();
        }
    }
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.dir)
            .field("segments", &self.segments)
            .field("buffer_bytes", &self.buffer.len())
            .field("first_index", &self.first_index)
            .field("last_index", &self.last_index)
            .field("last_term", &self.last_term)
            .field("durable_index", &self.durable_index)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("first_index", &self.first_index)
            .field("record_count", &self.offsets.len())
            .field("written_end", &self.written_end)
            .finish_non_exhaustive()
    }
}

// The node moves the log to its storage thread.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Log>();
};

impl Log {
    /// Opens the log in `dir`, creating the directory and the first segment if there is none,
    /// and recovering per the decision table (`Situation::action`) otherwise.
    ///
    /// # Correctness
    /// Every record returned by reads after `open` is durable: `open` fdatasyncs the active
    /// segment before returning, so `durable_index() == last_index()`.
    pub fn open(dir: &Path, options: LogOptions) -> Result<Log, Error> {
        options.validate()?;
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
        let lock = lock_directory(dir)?;
        if spare::remove_leftover(dir)? {
            tracing::debug!(dir = %dir.display(), "removed the spare segment of the last run");
        }
        let mut recovery = Vec::new();
        let scan =
            recovery::scan_directory(dir, Some(options.ids()), Access::ReadWrite, &mut recovery)?;
        for path in &scan.remove {
            fs::remove_file(path).map_err(|e| Error::io(path, "remove segment", e))?;
            segment::sync_directory(dir)?;
        }
        let mut log = Log {
            dir: dir.to_path_buf(),
            options,
            _lock: lock,
            segments: Vec::new(),
            buffer: Vec::new(),
            first_index: 1,
            last_index: 0,
            last_term: 0,
            term_runs: Vec::new(),
            durable_index: 0,
            poisoned: false,
            recovery,
            spare: None,
            published: Arc::default(),
        };
        log.adopt(scan.segments)?;
        log.publish(log.durable_index, false);
        log.start_spare_when_due();
        Ok(log)
    }

    fn adopt(&mut self, scanned: Vec<ScannedSegment>) -> Result<(), Error> {
        if scanned.is_empty() {
            let segment = self.create_segment(1, 1)?;
            self.segments.push(segment);
            return Ok(());
        }
        self.first_index = scanned[0].header.first_index;
        let count = scanned.len();
        for (position, scan) in scanned.into_iter().enumerate() {
            self.last_index = scan.header.first_index + scan.offsets.len() as u64 - 1;
            self.last_term = scan.last_term;
            self.term_runs.extend_from_slice(&scan.term_starts);
            let mut segment = Segment {
                sequence: scan.sequence,
                path: scan.path,
                file: scan.file,
                map: scan.map,
                first_index: scan.header.first_index,
                offsets: scan.offsets,
                written_end: scan.valid_end,
            };
            if position + 1 == count {
                self.prepare_active(&mut segment, scan.situation, scan.dirty_end)?;
            }
            self.segments.push(segment);
        }
        self.durable_index = self.last_index;
        Ok(())
    }

    /// Zeroes a torn tail, extends the active segment to its capacity, fdatasyncs and remaps it.
    fn prepare_active(
        &self,
        segment: &mut Segment,
        situation: Situation,
        dirty_end: u64,
    ) -> Result<(), Error> {
        let path = segment.path.clone();
        if matches!(situation, Situation::TornTail | Situation::WriteBackHole) {
            tracing::warn!(file = %path.display(), offset = segment.written_end, ?situation,
                "truncating the unsynced tail of the log");
            segment::write_zeros(&segment.file, &path, segment.written_end, dirty_end)?;
        }
        let length = segment.map.len() as u64;
        if length < self.options.segment_bytes_max {
            segment::extend(
                &mut segment.file,
                &path,
                length,
                self.options.segment_bytes_max,
                self.options.preallocation,
            )?;
        }
        segment
            .file
            .sync_data()
            .map_err(|source| Error::SyncFailed {
                path: path.clone(),
                source,
            })?;
        segment.map = segment::map_file(&segment.file, &path)?;
        Ok(())
    }

    fn create_segment(&self, sequence: u64, first_index: u64) -> Result<Segment, Error> {
        let header = self.segment_header(first_index);
        let (path, file) = segment::create_segment(
            &self.dir,
            sequence,
            header,
            self.options.segment_bytes_max,
            self.options.preallocation,
        )?;
        Self::segment_of(path, file, sequence, first_index)
    }

    fn segment_header(&self, first_index: u64) -> SegmentHeader {
        SegmentHeader {
            cluster_id: self.options.cluster_id,
            node_id: self.options.node_id,
            first_index,
        }
    }

    /// Starts preparing the next segment's file once the active segment is a quarter full
    /// (`SPARE_START_FRACTION`), where creating one in line would write a whole segment of
    /// zeros. Early enough for the paced preparation to finish first, late enough that a log
    /// which never rolls over never writes a spare.
    fn start_spare_when_due(&mut self) {
        let due = self.options.segment_bytes_max / SPARE_START_FRACTION;
        if due <= self.active().written_end {
            self.start_spare();
        }
    }

    /// Starts preparing the next segment's file (with `Zeroed` preallocation), unless one is
    /// being prepared already.
    fn start_spare(&mut self) {
        if self.options.preallocation == Preallocation::Zeroed && self.spare.is_none() {
            self.spare = Spare::start(&self.dir, self.options.segment_bytes_max);
        }
    }

    fn segment_of(
        path: PathBuf,
        file: File,
        sequence: u64,
        first_index: u64,
    ) -> Result<Segment, Error> {
        let map = segment::map_file(&file, &path)?;
        Ok(Segment {
            sequence,
            path,
            file,
            map,
            first_index,
            offsets: Vec::new(),
            written_end: SEGMENT_HEADER_BYTES,
        })
    }

    /// What recovery found when this log was opened, one event per segment (and per removed
    /// file, and a `CompactedPrefix` event when the log starts above index 1), in order.
    pub fn recovery_events(&self) -> &[RecoveryEvent] {
        &self.recovery
    }

    /// The directory the log lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the first record held (after compaction, the first kept); `last_index + 1`
    /// when the log is empty.
    pub fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Index of the last record appended (durable or not); `first_index - 1` when empty.
    pub fn last_index(&self) -> u64 {
        self.last_index
    }

    /// Term of the last record appended; 0 when the log is empty (the node then uses its
    /// snapshot's term).
    pub fn last_term(&self) -> u64 {
        self.last_term
    }

    /// Highest index made durable by `sync` (or found on disk at open).
    pub fn durable_index(&self) -> u64 {
        self.durable_index
    }

    /// Appends a record to the write buffer. Not durable until [`Log::sync`] returns.
    ///
    /// `index` must be `last_index + 1` and `term` at least `last_term`. A full buffer
    /// (`WRITE_BUFFER_BYTES_MAX`) is written to the file, without a sync; a record that does
    /// not fit in the active segment seals it (with an fdatasync) and starts the next.
    pub fn append(&mut self, index: u64, term: u64, kind: u8, payload: &[u8]) -> Result<(), Error> {
        self.check_usable()?;
        if index != self.last_index + 1 {
            return Err(Error::IndexNotNext {
                expected: self.last_index + 1,
                found: index,
            });
        }
        if term < self.last_term {
            return Err(Error::TermDecreased {
                last_term: self.last_term,
                found: term,
            });
        }
        let payload_bytes = self.check_payload(payload)?;
        let view = RecordView {
            index,
            term,
            kind,
            payload_bytes,
        };
        if self.options.segment_bytes_max < self.active_end() + view.record_bytes() {
            self.fatal(|log| log.roll_over())?;
        }
        let offset = u32::try_from(self.active_end()).map_err(|_| Error::RecordTooLarge {
            size: payload.len() as u64,
            limit: self.payload_bytes_max(),
        })?;
        record::encode(&mut self.buffer, view, payload);
        if self.term_runs.last().is_none_or(|(_, last)| *last != term) {
            self.term_runs.push((index, term));
        }
        self.active_mut().offsets.push(offset);
        self.last_index = index;
        self.last_term = term;
        if WRITE_BUFFER_BYTES_MAX <= self.buffer.len() {
            self.fatal(Log::write_buffer)?;
        }
        Ok(())
    }

    fn check_payload(&self, payload: &[u8]) -> Result<u32, Error> {
        let limit = self.payload_bytes_max();
        let size = payload.len() as u64;
        if limit < size {
            return Err(Error::RecordTooLarge { size, limit });
        }
        u32::try_from(size).map_err(|_| Error::RecordTooLarge { size, limit })
    }

    /// The largest payload `append` accepts with these options.
    pub fn payload_bytes_max(&self) -> u64 {
        let room = self.options.segment_bytes_max - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES;
        room.min(u64::from(RECORD_PAYLOAD_BYTES_MAX))
    }

    /// Makes every record appended so far durable and returns the durable index.
    ///
    /// # Correctness
    /// When this returns `Ok(i)`, records `..= i` survive a crash. Many appends share one sync
    /// (one write, one `fdatasync`). If the sync fails the error is [`Error::SyncFailed`], the
    /// log is poisoned, and the caller must stop: the kernel may have dropped the dirty pages,
    /// so retrying could report data durable that is not.
    pub fn sync(&mut self) -> Result<u64, Error> {
        self.check_usable()?;
        if self.durable_index < self.last_index {
            self.fatal(Log::write_buffer)?;
            self.fatal(Log::sync_active)?;
        }
        Ok(self.durable_index)
    }

    fn sync_active(&mut self) -> Result<(), Error> {
        let active = self.active();
        active
            .file
            .sync_data()
            .map_err(|source| Error::SyncFailed {
                path: active.path.clone(),
                source,
            })?;
        self.durable_index = self.last_index;
        self.publish(self.durable_index, false);
        Ok(())
    }

    /// A handle through which other threads read durable entries while this log changes.
    pub fn view(&self) -> LogView {
        LogView::new(Arc::clone(&self.published))
    }

    /// Publishes to [`LogView`]s the records up to `durable_index`; `cut` marks a truncation
    /// about to overwrite bytes.
    fn publish(&self, durable_index: u64, cut: bool) {
        let segments = self.segments.iter().map(|s| SegmentState {
            sequence: s.sequence,
            path: &s.path,
            map: &s.map,
            first_index: s.first_index,
            offsets: &s.offsets,
        });
        view::publish(
            &self.published,
            self.first_index,
            durable_index,
            segments,
            cut,
        );
    }

    /// Writes the buffer at the end of the active segment (no sync).
    fn write_buffer(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let active = self.active_mut();
        active
            .file
            .write_all_at(&buffer, active.written_end)
            .map_err(|e| Error::io(&active.path, "write", e))?;
        active.written_end += buffer.len() as u64;
        self.buffer = buffer;
        self.buffer.clear();
        self.start_spare_when_due();
        Ok(())
    }

    fn roll_over(&mut self) -> Result<(), Error> {
        self.write_buffer()?;
        self.sync_active()?;
        let sequence = self.active().sequence + 1;
        let first_index = self.last_index + 1;
        let header = self.segment_header(first_index);
        let installed = match self.spare.take() {
            Some(spare) => spare.install(&self.dir, sequence, &header)?,
            None => None,
        };
        let segment = match installed {
            Some((path, file)) => Self::segment_of(path, file, sequence, first_index)?,
            None => self.create_segment(sequence, first_index)?,
        };
        tracing::debug!(file = %segment.path.display(), index = first_index,
            "started a new segment");
        self.segments.push(segment);
        // A log that rolled over is writing fast enough to need the next spare: give its paced
        // preparation the whole segment's time.
        self.start_spare();
        Ok(())
    }

    /// Removes every record with index `from` or above (a new leader overwrites them).
    /// A no-op when `from > last_index`; an error when `from < first_index`.
    ///
    /// # Correctness
    /// Durable on return (steps in the module doc). A crash before the return leaves the log
    /// ending below `from` or holding a prefix of the old records; recovery never refuses it.
    /// A caller must not keep a [`Record`] of a removed index across this call: its payload
    /// may share memory with bytes this call overwrites with zeros.
    pub fn truncate_suffix(&mut self, from: u64) -> Result<(), Error> {
        self.check_usable()?;
        if self.last_index < from {
            return Ok(());
        }
        if from < self.first_index {
            return Err(Error::TruncateBelowFirst {
                from,
                first_index: self.first_index,
            });
        }
        self.fatal(|log| log.truncate_steps(from))
    }

    fn truncate_steps(&mut self, from: u64) -> Result<(), Error> {
        // Views stop serving the removed records before any of their bytes change.
        self.publish(self.durable_index.min(from - 1), true);
        self.write_buffer()?;
        // Step 2: whole segments above `from`, last first.
        // Bounded by the segment count: each pass removes one segment.
        while 1 < self.segments.len() && from <= self.active().first_index {
            let Some(removed) = self.segments.pop() else {
                break;
            };
            fs::remove_file(&removed.path).map_err(|e| Error::io(&removed.path, "remove", e))?;
            segment::sync_directory(&self.dir)?;
        }
        // Steps 3 to 6 in the segment that holds `from`.
        let active = self.active_mut();
        let position = usize::try_from(from - active.first_index).unwrap_or(usize::MAX);
        let cut = active
            .offsets
            .get(position)
            .map_or(active.written_end, |o| u64::from(*o));
        let boundary = cut.next_multiple_of(SECTOR_BYTES).min(active.written_end);
        zero_and_sync(active, boundary, active.written_end)?;
        zero_and_sync(active, cut, boundary)?;
        active.offsets.truncate(position);
        active.written_end = cut;
        self.last_index = from - 1;
        self.last_term = self.term_at(from - 1).unwrap_or(0);
        let kept = self.term_runs.partition_point(|(first, _)| *first < from);
        self.term_runs.truncate(kept);
        self.durable_index = self.durable_index.min(self.last_index);
        self.publish(self.durable_index, false);
        Ok(())
    }

    /// Removes whole segments whose records all lie below `below` (a snapshot covers them).
    /// Keeps the active segment and the segment holding the last record, so `first_index` may
    /// stay below `below` and the log never becomes empty through compaction.
    ///
    /// # Correctness
    /// Each removal is made durable (directory fsync) before the next, oldest first, so a
    /// crash leaves a contiguous suffix of segments.
    pub fn compact_prefix(&mut self, below: u64) -> Result<(), Error> {
        self.check_usable()?;
        self.fatal(|log| log.compact_steps(below))
    }

    fn compact_steps(&mut self, below: u64) -> Result<(), Error> {
        // A segment goes only if the next one starts at or below `below` (all its records are
        // covered) and at or below `last_index` (it does not hold the last record, whose term
        // `last_term` must still be readable after a reopen).
        let limit = below.min(self.last_index);
        // Bounded by the segment count: each pass removes one segment.
        while 1 < self.segments.len() && self.segments[1].first_index <= limit {
            let removed = self.segments.remove(0);
            fs::remove_file(&removed.path).map_err(|e| Error::io(&removed.path, "remove", e))?;
            segment::sync_directory(&self.dir)?;
            self.first_index = self.segments[0].first_index;
        }
        let first = self.first_index;
        let dropped = self
            .term_runs
            .partition_point(|(start, _)| *start <= first)
            .saturating_sub(1);
        self.term_runs.drain(..dropped);
        if let Some(run) = self.term_runs.first_mut() {
            run.0 = run.0.max(first);
        }
        self.publish(self.durable_index, false);
        Ok(())
    }

    /// Removes every record and starts an empty log whose next index is `first_index` (at least
    /// 1): a follower that installed a snapshot at `L` whose entry its log does not hold discards
    /// its whole log and continues at `L + 1` (protocol S7 step 1).
    ///
    /// # Correctness
    /// Durable on return. Steps: 1. remove every segment, the newest first, each followed by an
    /// fsync of the directory; 2. create a segment whose first index is `first_index` (header,
    /// fsync, directory fsync). A crash before step 2 is durable leaves a prefix of the old log
    /// or an empty directory (which opens as an empty log at index 1); either way the node
    /// redoes this call at open, as S7 step 1 is a function of (newest snapshot, log).
    pub fn reset(&mut self, first_index: u64) -> Result<(), Error> {
        self.check_usable()?;
        self.fatal(|log| log.reset_steps(first_index.max(1)))
    }

    fn reset_steps(&mut self, first_index: u64) -> Result<(), Error> {
        // Views stop serving the old records before any file goes.
        self.publish(self.first_index - 1, true);
        self.buffer.clear();
        let sequence = self.active().sequence + 1;
        // Step 1, newest first. Bounded by the segment count: each pass removes one.
        while let Some(removed) = self.segments.pop() {
            fs::remove_file(&removed.path).map_err(|e| Error::io(&removed.path, "remove", e))?;
            segment::sync_directory(&self.dir)?;
        }
        // Step 2.
        let segment = self.create_segment(sequence, first_index)?;
        self.segments.push(segment);
        self.first_index = first_index;
        self.last_index = first_index - 1;
        self.last_term = 0;
        self.term_runs.clear();
        self.durable_index = self.last_index;
        self.publish(self.durable_index, false);
        Ok(())
    }

    /// The term runs of the records held, `(first index, term)` in index order, one per term
    /// (the last run ends at [`Log::last_index`]): a log's term index in O(terms) memory, taken
    /// from the scan `open` makes anyway, so a node can start without reading its records.
    pub fn term_runs(&self) -> &[(u64, u64)] {
        &self.term_runs
    }

    /// The term of record `index`, or `None` if the log does not hold it.
    pub fn term_at(&self, index: u64) -> Option<u64> {
        let segment = find_segment(&self.segments, index)?;
        let offset = record_offset(segment, index)?;
        let bytes = self.record_bytes(segment, offset)?;
        let term = bytes.get(17..25)?;
        Some(record::read_u64(term, 0))
    }

    /// Record `index`, or `None` if the log does not hold it. Its CRC is checked again; a
    /// mismatch (damage since open) is an [`Error::Corruption`].
    pub fn entry(&self, index: u64) -> Result<Option<Record>, Error> {
        let Some(segment) = find_segment(&self.segments, index) else {
            return Ok(None);
        };
        let buffer = if std::ptr::eq(segment, self.active()) {
            &self.buffer[..]
        } else {
            &[]
        };
        read_record(segment, index, buffer).map(Some)
    }

    /// The records with indices in `range` that the log holds, in order.
    pub fn entries(&self, range: impl RangeBounds<u64>) -> Entries<'_> {
        let (next, end) = clip(range, self.first_index, self.last_index);
        Entries {
            log: self,
            next,
            end,
        }
    }

    fn record_bytes<'a>(&'a self, segment: &'a Segment, offset: u64) -> Option<&'a [u8]> {
        if offset < segment.written_end {
            segment.map.get(usize::try_from(offset).ok()?..)
        } else {
            self.buffer
                .get(usize::try_from(offset - segment.written_end).ok()?..)
        }
    }

    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("invariant: a log has at least one segment")
    }

    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("invariant: a log has at least one segment")
    }

    fn active_end(&self) -> u64 {
        self.active().written_end + self.buffer.len() as u64
    }

    fn check_usable(&self) -> Result<(), Error> {
        if self.poisoned {
            return Err(Error::Poisoned);
        }
        Ok(())
    }

    /// Runs a mutation; any error in it leaves the files in an unknown state, so it poisons.
    fn fatal<T>(&mut self, step: impl FnOnce(&mut Log) -> Result<T, Error>) -> Result<T, Error> {
        let result = step(self);
        if let Err(error) = &result {
            tracing::error!(
                error = error as &dyn std::error::Error,
                dir = %self.dir.display(),
                "log failed; it is now unusable"
            );
            self.poisoned = true;
        }
        result
    }
}

/// Overwrites `[from, to)` of `segment` with zeros and fdatasyncs it.
fn zero_and_sync(segment: &Segment, from: u64, to: u64) -> Result<(), Error> {
    segment::write_zeros(&segment.file, &segment.path, from, to)?;
    segment
        .file
        .sync_data()
        .map_err(|source| Error::SyncFailed {
            path: segment.path.clone(),
            source,
        })
}

/// Iterator over records of a [`Log`], from [`Log::entries`].
#[derive(Debug)]
pub struct Entries<'a> {
    log: &'a Log,
    next: u64,
    end: u64,
}

impl Iterator for Entries<'_> {
    type Item = Result<Record, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.end <= self.next {
            return None;
        }
        let index = self.next;
        self.next += 1;
        self.log.entry(index).transpose()
    }
}

/// Clips `range` to `first ..= last` as a half-open `(next, end)`.
pub(crate) fn clip(range: impl RangeBounds<u64>, first: u64, last: u64) -> (u64, u64) {
    let start = match range.start_bound() {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => first,
    };
    let end = match range.end_bound() {
        Bound::Included(i) => i.saturating_add(1),
        Bound::Excluded(i) => *i,
        Bound::Unbounded => last.saturating_add(1),
    };
    (start.max(first), end.min(last.saturating_add(1)))
}

/// The segment that holds `index`, if any.
pub(crate) fn find_segment(segments: &[Segment], index: u64) -> Option<&Segment> {
    let after = segments.partition_point(|s| s.first_index <= index);
    let segment = segments.get(after.checked_sub(1)?)?;
    record_offset(segment, index).map(|_| segment)
}

fn record_offset(segment: &Segment, index: u64) -> Option<u64> {
    let position = usize::try_from(index.checked_sub(segment.first_index)?).ok()?;
    segment.offsets.get(position).map(|o| u64::from(*o))
}

/// Reads record `index` of `segment`, from its map or (past `written_end`) from `buffer`.
pub(crate) fn read_record(segment: &Segment, index: u64, buffer: &[u8]) -> Result<Record, Error> {
    let offset = record_offset(segment, index).ok_or(Error::corruption(
        &segment.path,
        segment.written_end,
        Corruption::IndexGap {
            expected: index,
            found: segment.first_index + segment.offsets.len() as u64,
        },
    ))?;
    let in_map = offset < segment.written_end;
    let start = if in_map {
        offset
    } else {
        offset - segment.written_end
    };
    let bytes: &[u8] = if in_map { &segment.map } else { buffer };
    let damage = |reason| Error::corruption(&segment.path, offset, reason);
    let start_usize =
        usize::try_from(start).map_err(|_| damage(Corruption::RecordLength { length: 0 }))?;
    let view =
        record::decode_indexed(bytes.get(start_usize..).unwrap_or(&[]), index).map_err(damage)?;
    let payload_start = start_usize + usize::try_from(RECORD_HEADER_BYTES).unwrap_or(usize::MAX);
    let payload_end = payload_start + usize::try_from(view.payload_bytes).unwrap_or(0);
    let payload = if in_map {
        Bytes::from_owner(MapSlice {
            map: Arc::clone(&segment.map),
            start: payload_start,
            end: payload_end,
        })
    } else {
        Bytes::copy_from_slice(&buffer[payload_start..payload_end])
    };
    Ok(Record {
        index,
        term: view.term,
        kind: view.kind,
        payload,
    })
}

/// A byte range of a shared map: the owner behind a zero-copy [`Bytes`] payload.
struct MapSlice {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

fn lock_directory(dir: &Path) -> Result<File, Error> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, "open lock file", e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked { path }),
        Err(TryLockError::Error(e)) => Err(Error::io(&path, "lock", e)),
    }
}
