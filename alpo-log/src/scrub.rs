//! Scrubbing (issue 13): re-reading the durable log from its files, a bounded step at a time,
//! to find latent damage (a flipped bit, a lost or misdirected write, an unreadable sector)
//! before a read needs the entry.
//!
//! A step reads with `pread` from the segment file, not through the shared memory map, so a
//! page the kernel evicted is read from the disk again (a page still cached is checked as
//! cached: the scrubber does not bypass the page cache). Each record is checked as every read
//! checks it (CRC, and that it carries the index it was indexed under); an I/O error is a
//! finding too, never fatal to the caller.
//!
//! Invariants: a step reads only durable records (`first_index ..= durable_index` as the view
//! publishes them); a finding read across a truncation (the view's generation moved) is
//! dropped, since the truncated bytes were never committed and the reader raced their zeroing;
//! a segment removed by compaction while it is scrubbed ends the step without a finding.

use std::fs::File;
use std::os::unix::fs::FileExt;

use crate::error::{Corruption, Error};
use crate::limits::RECORD_PAYLOAD_BYTES_MAX;
use crate::record::{self, RECORD_HEADER_BYTES, read_u32};
use crate::view::LogView;

/// What one scrub step read and found.
#[derive(Debug)]
pub struct ScrubStep {
    /// The index the next step should start from (the first index after a complete pass).
    pub next: u64,
    /// Bytes read from segment files.
    pub bytes: u64,
    /// Records checked.
    pub records: u64,
    /// This step reached the durable end: a pass over the log is complete.
    pub pass_complete: bool,
    /// Damage found, in index order.
    pub findings: Vec<ScrubFinding>,
}

/// A damaged record the scrubber found.
#[derive(Debug)]
pub struct ScrubFinding {
    /// The index the log holds at that position.
    pub index: u64,
    /// What is wrong: an [`Error::Corruption`] naming the file, the record's byte offset and
    /// the reason, or an [`Error::Io`] for a read the disk refused.
    pub error: Error,
}

impl ScrubStep {
    fn empty(next: u64, pass_complete: bool) -> ScrubStep {
        ScrubStep {
            next,
            bytes: 0,
            records: 0,
            pass_complete,
            findings: Vec::new(),
        }
    }
}

impl LogView {
    /// Reads and checks durable records from `from` on, in one segment, at least one record and
    /// then no more than `max_bytes` (module doc). Start a pass at [`LogView::first_index`].
    pub fn scrub_step(&self, from: u64, max_bytes: u64) -> ScrubStep {
        let first = self.first_index();
        let from = from.max(first);
        let durable = self.durable_index();
        if durable < from {
            return ScrubStep::empty(first, true);
        }
        let run = match self.run(from, durable) {
            Ok(Some(run)) => run,
            Ok(None) => return ScrubStep::empty(first, true),
            // Compaction overtook the cursor: go on from the new first index.
            Err(_) => return ScrubStep::empty(self.first_index(), false),
        };
        let start = run.offsets.first().copied().map_or(0, u64::from);
        let count = run
            .offsets
            .iter()
            .skip(1)
            .position(|offset| max_bytes < u64::from(*offset) - start)
            .map_or(run.offsets.len(), |past| past + 1);
        let offsets = &run.offsets[..count];
        let mut step = ScrubStep::empty(from + count as u64, false);
        let file = match File::open(&run.path) {
            Ok(file) => file,
            // Removed by compaction since the run was copied.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return ScrubStep::empty(self.first_index(), false);
            }
            Err(e) => {
                step.findings.push(ScrubFinding {
                    index: from,
                    error: Error::io(&run.path, "open segment to scrub", e),
                });
                return step;
            }
        };
        let end = match run.offsets.get(count) {
            Some(next) => Ok(u64::from(*next)),
            None => last_record_end(&file, &run.path, offsets[count - 1]),
        };
        let bytes = end.and_then(|end| {
            let length = usize::try_from(end.saturating_sub(start)).unwrap_or(usize::MAX);
            let mut bytes = vec![0; length];
            file.read_exact_at(&mut bytes, start)
                .map_err(|e| Error::io(&run.path, "read segment to scrub", e))?;
            Ok(bytes)
        });
        match bytes {
            Ok(bytes) => {
                step.bytes = bytes.len() as u64;
                for (position, offset) in offsets.iter().enumerate() {
                    let index = run.first_index + position as u64;
                    let at = usize::try_from(u64::from(*offset) - start).unwrap_or(usize::MAX);
                    let checked = record::decode_indexed(bytes.get(at..).unwrap_or(&[]), index);
                    if let Err(reason) = checked {
                        step.findings.push(ScrubFinding {
                            index,
                            error: Error::corruption(&run.path, u64::from(*offset), reason),
                        });
                    }
                }
                step.records = count as u64;
            }
            Err(error) => step.findings.push(ScrubFinding { index: from, error }),
        }
        if !step.findings.is_empty() && self.generation() != run.generation {
            tracing::debug!(
                from,
                "scrub step raced a truncation; its findings are dropped"
            );
            step.findings.clear();
        }
        step
    }
}

/// Where the record at `offset` ends, from its length field (bounded by the payload limit;
/// the CRC check that follows catches a damaged length).
fn last_record_end(file: &File, path: &std::path::Path, offset: u32) -> Result<u64, Error> {
    let mut header = [0; 8];
    file.read_exact_at(&mut header, u64::from(offset))
        .map_err(|e| Error::io(path, "read segment to scrub", e))?;
    let length = read_u32(&header, 4);
    if RECORD_PAYLOAD_BYTES_MAX < length {
        return Err(Error::corruption(
            path,
            u64::from(offset),
            Corruption::RecordLength { length },
        ));
    }
    Ok(u64::from(offset) + RECORD_HEADER_BYTES + u64::from(length))
}
