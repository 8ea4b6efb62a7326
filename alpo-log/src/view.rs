//! [`LogView`]: a cheap, cloneable handle through which other threads of the node's process read
//! durable entries while the storage thread appends, truncates and compacts (the apply thread,
//! `alpo read`, replication reads: protocol S9's `ReadLog`).
//!
//! The storage thread's `Log` publishes, after every change, what is readable: the first index,
//! the durable index, and per segment its map and the offsets of its durable records. A read
//! takes the lock only to copy a map handle and a run of offsets, and decodes outside it, so a
//! read never holds up an append for longer than that copy. Payloads are copied out of the map,
//! so a record handed to another thread never changes under it.
//!
//! Index relationships seen by a view: `first_index - 1 <= durable_index`; a view serves exactly
//! `first_index ..= durable_index`. Below `first_index` it answers [`Error::Compacted`] naming
//! the first index still readable; above `durable_index` it has nothing (the entry is not yet
//! durable, or not yet written).
//!
//! Races, and why each is safe:
//! - Compaction under a read: the reader holds its own handle on the segment's map, which stays
//!   valid after the file is unlinked, so the read completes with the old, correct bytes.
//! - Truncation under a read: `Log::truncate_suffix` publishes the cut before it overwrites any
//!   byte, and bumps a generation. A reader that copied offsets before the cut may then decode
//!   zeros or a new record at an old offset: the CRC or the index check fails, the reader sees
//!   the generation moved and stops its run there (returning the entries before it). Only
//!   uncommitted entries are ever truncated, and callers check `(index, term)` (S9 (c)).

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use memmap2::Mmap;

use crate::error::{Corruption, Error};
use crate::log::Record;
use crate::record::{self, RECORD_HEADER_BYTES};

/// Largest number of record offsets a read copies under the lock at once. A longer read takes
/// the lock again for the next run, so an append waits for at most this many copies.
const VIEW_RUN_ENTRIES_MAX: usize = 1024;

/// A read-only handle on a live [`crate::Log`], for other threads. `Clone + Send + Sync`.
#[derive(Clone, Debug)]
pub struct LogView {
    shared: Arc<RwLock<Published>>,
}

/// What the storage thread has published as readable.
#[derive(Debug, Default)]
pub(crate) struct Published {
    pub(crate) first_index: u64,
    pub(crate) durable_index: u64,
    /// Bumped by every truncation, before it overwrites bytes.
    pub(crate) generation: u64,
    pub(crate) segments: Vec<PublishedSegment>,
}

/// One segment as readers see it: durable records only.
#[derive(Debug)]
pub(crate) struct PublishedSegment {
    pub(crate) sequence: u64,
    pub(crate) path: PathBuf,
    pub(crate) map: Arc<Mmap>,
    pub(crate) first_index: u64,
    pub(crate) offsets: Vec<u32>,
}

/// A run of offsets copied under the lock.
pub(crate) struct Run {
    map: Arc<Mmap>,
    pub(crate) path: PathBuf,
    pub(crate) first_index: u64,
    pub(crate) offsets: Vec<u32>,
    pub(crate) generation: u64,
}

// Readers live on other threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LogView>();
};

impl LogView {
    pub(crate) fn new(shared: Arc<RwLock<Published>>) -> LogView {
        LogView { shared }
    }

    /// The first index still readable (after compaction, the first kept).
    pub fn first_index(&self) -> u64 {
        self.read_lock().first_index
    }

    /// The highest durable index: the last one a view serves.
    pub fn durable_index(&self) -> u64 {
        self.read_lock().durable_index
    }

    /// Entry `index` if it is durable; `Ok(None)` above the durable index;
    /// [`Error::Compacted`] below the first index.
    pub fn entry(&self, index: u64) -> Result<Option<Record>, Error> {
        Ok(self.read(index, index, 0)?.pop())
    }

    /// A gap-free run of durable entries from `from` to at most `to` (inclusive), stopping
    /// once their payloads reach `max_bytes` (at least one entry is returned if `from` is
    /// durable). Empty if `from` is above the durable index; [`Error::Compacted`] if `from` is
    /// below the first index. Damage is an [`Error::Corruption`] naming file and offset.
    pub fn read(&self, from: u64, to: u64, max_bytes: u64) -> Result<Vec<Record>, Error> {
        let mut records = Vec::new();
        let mut bytes = 0u64;
        let mut next = from;
        // Bounded: each pass returns at least one record or ends the read.
        while next <= to && (records.is_empty() || bytes < max_bytes) {
            let run = match self.run(next, to) {
                Ok(Some(run)) => run,
                Ok(None) => break,
                // Compaction overtook a long read: the run so far is still gap-free from `from`.
                Err(Error::Compacted { .. }) if !records.is_empty() => break,
                Err(error) => return Err(error),
            };
            let count = records.len();
            for (position, offset) in run.offsets.iter().enumerate() {
                let index = run.first_index + position as u64;
                match decode(&run, index, *offset) {
                    Ok(record) => {
                        bytes += record.payload.len() as u64;
                        records.push(record);
                    }
                    Err(error) if self.read_lock().generation != run.generation => {
                        tracing::debug!(
                            error = &error as &dyn std::error::Error,
                            index,
                            "log view read raced a truncation"
                        );
                        return Ok(records);
                    }
                    Err(error) => return Err(error),
                }
                if !records.is_empty() && max_bytes <= bytes {
                    break;
                }
            }
            if records.len() == count {
                break;
            }
            next = from + records.len() as u64;
        }
        Ok(records)
    }

    /// Copies, under the lock, the map and offsets of the durable records `from ..` in the
    /// segment that holds `from` (at most `VIEW_RUN_ENTRIES_MAX`, not past `to`).
    pub(crate) fn run(&self, from: u64, to: u64) -> Result<Option<Run>, Error> {
        let published = self.read_lock();
        if from < published.first_index {
            return Err(Error::Compacted {
                index: from,
                first_retained: published.first_index,
            });
        }
        let last = to.min(published.durable_index);
        if last < from {
            return Ok(None);
        }
        let after = published
            .segments
            .partition_point(|s| s.first_index <= from);
        let Some(segment) = after.checked_sub(1).and_then(|i| published.segments.get(i)) else {
            return Ok(None);
        };
        let start = usize::try_from(from - segment.first_index).unwrap_or(usize::MAX);
        let wanted = usize::try_from(last - from).map_or(usize::MAX, |n| n.saturating_add(1));
        let end = segment
            .offsets
            .len()
            .min(start.saturating_add(wanted.min(VIEW_RUN_ENTRIES_MAX)));
        let Some(offsets) = segment.offsets.get(start..end) else {
            return Ok(None);
        };
        Ok(Some(Run {
            map: Arc::clone(&segment.map),
            path: segment.path.clone(),
            first_index: from,
            offsets: offsets.to_vec(),
            generation: published.generation,
        }))
    }

    /// The truncation generation now (a scrub drops what it found across a truncation).
    pub(crate) fn generation(&self) -> u64 {
        self.read_lock().generation
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, Published> {
        // A panic while publishing leaves whole values behind (each field is assigned, never
        // half-written), so a poisoned lock's data is still consistent enough to read.
        self.shared.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Decodes record `index` at `offset` of a run's map, copying its payload.
fn decode(run: &Run, index: u64, offset: u32) -> Result<Record, Error> {
    let damage = |reason| Error::corruption(&run.path, u64::from(offset), reason);
    let start =
        usize::try_from(offset).map_err(|_| damage(Corruption::RecordLength { length: 0 }))?;
    let bytes = run.map.get(start..).unwrap_or(&[]);
    let view = record::decode_indexed(bytes, index).map_err(damage)?;
    let header = usize::try_from(RECORD_HEADER_BYTES).unwrap_or(usize::MAX);
    let payload_bytes = usize::try_from(view.payload_bytes).unwrap_or(usize::MAX);
    let payload = bytes
        .get(header..header.saturating_add(payload_bytes))
        .ok_or_else(|| {
            damage(Corruption::RecordLength {
                length: view.payload_bytes,
            })
        })?;
    Ok(Record {
        index,
        term: view.term,
        kind: view.kind,
        payload: Bytes::copy_from_slice(payload),
    })
}

/// Updates `published` to what `segments` hold up to `durable_index` (called by `Log` after
/// every change). `cut` is set by a truncation, before it overwrites bytes.
pub(crate) fn publish<'a>(
    shared: &RwLock<Published>,
    first_index: u64,
    durable_index: u64,
    segments: impl ExactSizeIterator<Item = SegmentState<'a>>,
    cut: bool,
) {
    let mut published = shared.write().unwrap_or_else(PoisonError::into_inner);
    published.first_index = first_index;
    published.durable_index = durable_index;
    if cut {
        published.generation += 1;
    }
    let mut kept = Vec::with_capacity(segments.len());
    let mut old = std::mem::take(&mut published.segments)
        .into_iter()
        .peekable();
    for state in segments {
        // Bounded by the published segments: each pass of the inner loop drops one.
        while old.peek().is_some_and(|s| s.sequence < state.sequence) {
            old.next();
        }
        let mut segment = match old.next_if(|s| s.sequence == state.sequence) {
            Some(segment) => segment,
            None => PublishedSegment {
                sequence: state.sequence,
                path: state.path.clone(),
                map: Arc::clone(state.map),
                first_index: state.first_index,
                offsets: Vec::new(),
            },
        };
        segment.map = Arc::clone(state.map);
        let durable = durable_index
            .saturating_add(1)
            .saturating_sub(state.first_index);
        let count =
            usize::try_from(durable).map_or(state.offsets.len(), |d| d.min(state.offsets.len()));
        if count < segment.offsets.len() {
            segment.offsets.truncate(count);
        } else {
            segment
                .offsets
                .extend_from_slice(&state.offsets[segment.offsets.len()..count]);
        }
        kept.push(segment);
    }
    published.segments = kept;
}

/// What `publish` needs of one of the log's segments.
pub(crate) struct SegmentState<'a> {
    pub(crate) sequence: u64,
    pub(crate) path: &'a PathBuf,
    pub(crate) map: &'a Arc<Mmap>,
    pub(crate) first_index: u64,
    pub(crate) offsets: &'a [u32],
}
