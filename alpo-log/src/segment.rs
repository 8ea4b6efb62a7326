//! Segment files: the header layout, file names, creation with its durability steps, and the
//! memory map every read goes through.
//!
//! ```text
//! offset  size  field
//!      0    12  magic        89 'A' 'L' 'P' 'O' 'L' 'O' 'G' 0d 0a 1a 0a
//!     12     4  version      SEGMENT_FORMAT_VERSION (1)
//!     16     8  cluster_id
//!     24     8  node_id
//!     32     8  first_index  index of the first record this segment holds (or will hold)
//!     40     4  reserved     zero
//!     44     4  header_crc   CRC-32 of bytes 0 .. 44
//!     48        records, back to back, then zeros up to the preallocated length
//! ```
//!
//! Invariants: a segment's records carry `first_index, first_index + 1, …` with no gap; a segment
//! file is never shrunk while mapped (truncation overwrites with zeros instead), so every byte a
//! mapping covers stays backed by the file; a segment is durable (header written, file synced,
//! directory synced) before any record is appended to it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{Corruption, Error};
use crate::record::read_u64;

/// Bytes of the segment header.
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 48;

/// The segment format version this build writes and reads.
pub(crate) const SEGMENT_FORMAT_VERSION: u32 = 1;

/// PNG-style magic: a high-bit byte (catches 7-bit transfers), a printable name, then CR LF,
/// Ctrl-Z and LF (catch line-ending conversion and `type` on DOS).
pub(crate) const SEGMENT_MAGIC: [u8; 12] = *b"\x89ALPOLOG\r\n\x1a\n";

/// File name suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".alpolog";

const HEADER: usize = 48;
const _: () = assert!(HEADER as u64 == SEGMENT_HEADER_BYTES);
const _: () = assert!(SEGMENT_MAGIC.len() + 4 + 8 + 8 + 8 + 4 + 4 == HEADER);

/// The decoded fields of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The cluster the segment belongs to.
    pub(crate) cluster_id: u64,
    /// The node the segment belongs to.
    pub(crate) node_id: u64,
    /// Index of the segment's first record.
    pub(crate) first_index: u64,
}

impl SegmentHeader {
    /// The 48 header bytes.
    pub(crate) fn encode(&self) -> [u8; HEADER] {
        let mut out = [0; HEADER];
        out[..12].copy_from_slice(&SEGMENT_MAGIC);
        out[12..16].copy_from_slice(&SEGMENT_FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.cluster_id.to_le_bytes());
        out[24..32].copy_from_slice(&self.node_id.to_le_bytes());
        out[32..40].copy_from_slice(&self.first_index.to_le_bytes());
        let crc = crc32fast::hash(&out[..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
        debug_assert!(Self::decode(&out) == Ok(*self));
        out
    }

    /// Decodes a header from the start of `bytes`. Never panics. The error's offset is the byte
    /// of the header at which the problem lies.
    pub(crate) fn decode(bytes: &[u8]) -> Result<SegmentHeader, (u64, Corruption)> {
        let length = bytes.len() as u64;
        let header = bytes
            .get(..HEADER)
            .ok_or((0, Corruption::HeaderTruncated { length }))?;
        if header[..12] != SEGMENT_MAGIC {
            return Err((0, Corruption::BadMagic));
        }
        let stored = crate::record::read_u32(header, 44);
        let computed = crc32fast::hash(&header[..44]);
        if stored != computed {
            return Err((44, Corruption::HeaderChecksum { stored, computed }));
        }
        let version = crate::record::read_u32(header, 12);
        if version != SEGMENT_FORMAT_VERSION {
            return Err((12, Corruption::UnsupportedVersion { found: version }));
        }
        Ok(SegmentHeader {
            cluster_id: read_u64(header, 16),
            node_id: read_u64(header, 24),
            first_index: read_u64(header, 32),
        })
    }
}

/// The file name of segment `sequence`: 16 zero-padded digits, so lexical order is log order.
pub(crate) fn segment_file_name(sequence: u64) -> String {
    format!("{sequence:016}{SEGMENT_SUFFIX}")
}

/// The sequence number of a segment file name, or `None` if the name is not one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 16 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Lists the segment files of `dir` as `(sequence, path)` in sequence order.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "read directory", e))?;
        let name = entry.file_name();
        let Some(sequence) = name.to_str().and_then(parse_segment_file_name) else {
            continue;
        };
        segments.push((sequence, entry.path()));
        if crate::limits::SEGMENT_COUNT_MAX < segments.len() {
            return Err(Error::InvalidOptions {
                field: "directory",
                problem: format!(
                    "more than {} segment files",
                    crate::limits::SEGMENT_COUNT_MAX
                ),
            });
        }
    }
    segments.sort_unstable();
    Ok(segments)
}

/// Maps `file` read-only.
pub(crate) fn map_file(file: &File, path: &Path) -> Result<Arc<Mmap>, Error> {
    // SAFETY: memmap2 requires that the mapped file is not modified in a way that changes bytes
    // the program reads through the map, and is not shrunk below the mapped length. alpo-log
    // (1) holds the directory's LOCK for a writable `Log`, so no other ALPO process writes the
    // file; (2) only appends to a segment, writing bytes after every record it has handed out;
    // (3) never shrinks a segment file while it is mapped: truncation overwrites with zeros
    // bytes of records the log has removed, which a caller may still hold only if it kept an
    // entry across `truncate_suffix` (documented there); (4) removes files only by unlinking,
    // which keeps the mapped pages alive. The read-only `LogReader` maps files of a log that is
    // expected to be offline; the `alpo log` tools document this. (5) A `LogView` on another
    // thread reads only records published as durable; a truncation unpublishes records before
    // it overwrites them, and a view that raced it sees a CRC or index mismatch and a new
    // generation, and drops the bytes it read (`view.rs`).
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(file) }.map_err(|e| Error::io(path, "map", e))?;
    Ok(Arc::new(map))
}

/// How a new segment's file is extended to its full size before use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preallocation {
    /// Extend with `set_len` (a sparse file): fast to create, but each append allocates
    /// blocks, so `fdatasync` also writes file-system metadata.
    Sparse,
    /// Write zeros over the whole segment when it is created: slower to create, but appends
    /// then overwrite allocated blocks and `fdatasync` writes only data.
    Zeroed,
}

/// fsyncs a directory, so that names created, renamed or removed in it are durable.
pub(crate) fn sync_directory(dir: &Path) -> Result<(), Error> {
    let handle = File::open(dir).map_err(|e| Error::io(dir, "open directory", e))?;
    handle.sync_all().map_err(|source| Error::SyncFailed {
        path: dir.to_path_buf(),
        source,
    })
}

/// Creates segment `sequence` durably and returns its open file.
///
/// Durability steps: 1. create the file (it must not exist); 2. write the header; 3. extend it
/// to `length` bytes per `preallocation`; 4. fsync the file; 5. fsync the directory. Only then
/// may records be appended. A crash before step 5 leaves either no file or a file whose header
/// is incomplete or zero and whose body is zero, which recovery removes (row
/// `InterruptedCreation`); a crash after it leaves an empty segment.
pub(crate) fn create_segment(
    dir: &Path,
    sequence: u64,
    header: SegmentHeader,
    length: u64,
    preallocation: Preallocation,
) -> Result<(PathBuf, File), Error> {
    let path = dir.join(segment_file_name(sequence));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| Error::io(&path, "create segment", e))?;
    file.write_all(&header.encode())
        .map_err(|e| Error::io(&path, "write header", e))?;
    extend(
        &mut file,
        &path,
        SEGMENT_HEADER_BYTES,
        length,
        preallocation,
    )?;
    file.sync_all().map_err(|source| Error::SyncFailed {
        path: path.clone(),
        source,
    })?;
    sync_directory(dir)?;
    Ok((path, file))
}

/// Extends `file` from `from` (its current data end) to `length` bytes with zeros.
pub(crate) fn extend(
    file: &mut File,
    path: &Path,
    from: u64,
    length: u64,
    preallocation: Preallocation,
) -> Result<(), Error> {
    match preallocation {
        Preallocation::Sparse => file
            .set_len(length)
            .map_err(|e| Error::io(path, "extend segment", e)),
        Preallocation::Zeroed => write_zeros(file, path, from, length),
    }
}

/// Writes zeros over `[from, to)` of `file` (no sync).
pub(crate) fn write_zeros(file: &File, path: &Path, from: u64, to: u64) -> Result<(), Error> {
    use std::os::unix::fs::FileExt;
    let zeros = vec![0u8; 1024 * 1024];
    let mut at = from;
    // Bounded: each pass advances `at` by at least one byte until it reaches `to`.
    while at < to {
        let count = usize::try_from(to - at).map_or(zeros.len(), |rest| rest.min(zeros.len()));
        file.write_all_at(&zeros[..count], at)
            .map_err(|e| Error::io(path, "write zeros", e))?;
        at += count as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_golden_bytes() {
        let header = SegmentHeader {
            cluster_id: 0x0102,
            node_id: 3,
            first_index: 1,
        };
        let bytes = header.encode();
        assert_eq!(&bytes[..12], b"\x89ALPOLOG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], &[1, 0, 0, 0]);
        assert_eq!(&bytes[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[24..32], &[3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[32..40], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[40..44], &[0, 0, 0, 0]);
        assert_eq!(SegmentHeader::decode(&bytes), Ok(header));
    }

    #[test]
    fn every_header_bit_flip_is_caught() {
        let bytes = SegmentHeader {
            cluster_id: 9,
            node_id: 2,
            first_index: 100,
        }
        .encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn file_names_sort_in_log_order() {
        assert_eq!(segment_file_name(1), "0000000000000001.alpolog");
        assert_eq!(
            parse_segment_file_name("0000000000000042.alpolog"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.alpolog"), None);
        assert_eq!(parse_segment_file_name("000000000000004x.alpolog"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }
}
