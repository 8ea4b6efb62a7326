//! The byte layout of one log record, its encoder and its never-panicking decoder.
//!
//! ```text
//! offset  size  field
//!      0     4  crc32    CRC-32 (crc32fast, IEEE) of bytes 4 .. 25 + length
//!      4     4  length   payload bytes (not counting this 25-byte header)
//!      8     1  kind     opaque to the log (the core uses 1 = normal, 2 = no-op)
//!      9     8  index
//!     17     8  term
//!     25     n  payload  `length` bytes
//! ```
//!
//! All integers are little-endian. The CRC covers everything after itself, the length field
//! included, so a damaged length is caught by the checksum (unless it points past the end of
//! the file or above `RECORD_PAYLOAD_BYTES_MAX`, which the decoder reports before reading).
//! Invariant: `encode` then `decode` gives back the same fields; `encode` checks this in debug
//! builds (a paired assertion), and every read of a record verifies its CRC again.

use crate::error::Corruption;
use crate::limits::RECORD_PAYLOAD_BYTES_MAX;

/// Bytes before the payload: crc32, length, kind, index, term.
pub(crate) const RECORD_HEADER_BYTES: u64 = 25;

/// [`RECORD_HEADER_BYTES`] as a `usize`, for slicing.
const HEADER: usize = 25;

const _: () = assert!(RECORD_HEADER_BYTES == 4 + 4 + 1 + 8 + 8);
const _: () = assert!(HEADER as u64 == RECORD_HEADER_BYTES);

/// The fields of a record that decoded cleanly, with where its payload lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RecordView {
    /// The record's index.
    pub(crate) index: u64,
    /// The record's term.
    pub(crate) term: u64,
    /// The record's kind byte.
    pub(crate) kind: u8,
    /// Payload length in bytes.
    pub(crate) payload_bytes: u32,
}

impl RecordView {
    /// Header plus payload: the bytes this record takes in the file.
    pub(crate) fn record_bytes(&self) -> u64 {
        RECORD_HEADER_BYTES + u64::from(self.payload_bytes)
    }
}

/// Why bytes do not decode to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// Fewer bytes than a record header.
    HeaderIncomplete,
    /// The length field is above the limit or runs past the end of the bytes.
    BadLength {
        /// The length field.
        length: u32,
    },
    /// The CRC does not match.
    BadChecksum {
        /// The stored CRC.
        stored: u32,
        /// The computed CRC.
        computed: u32,
    },
}

/// Appends the encoding of one record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, view: RecordView, payload: &[u8]) {
    debug_assert!(u64::from(view.payload_bytes) == payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&view.payload_bytes.to_le_bytes());
    out.push(view.kind);
    out.extend_from_slice(&view.index.to_le_bytes());
    out.extend_from_slice(&view.term.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    debug_assert!(decode(&out[start..]) == Ok(view));
}

/// Decodes the record at the start of `bytes` (which may run past it). Never panics.
pub(crate) fn decode(bytes: &[u8]) -> Result<RecordView, DecodeError> {
    let header = bytes.get(..HEADER).ok_or(DecodeError::HeaderIncomplete)?;
    let stored = read_u32(header, 0);
    let length = read_u32(header, 4);
    if length > RECORD_PAYLOAD_BYTES_MAX {
        return Err(DecodeError::BadLength { length });
    }
    // Cannot overflow: length <= 16 MiB.
    let end = HEADER + usize::try_from(length).map_err(|_| DecodeError::BadLength { length })?;
    let covered = bytes.get(4..end).ok_or(DecodeError::BadLength { length })?;
    let computed = crc32fast::hash(covered);
    if computed != stored {
        return Err(DecodeError::BadChecksum { stored, computed });
    }
    Ok(RecordView {
        index: read_u64(header, 9),
        term: read_u64(header, 17),
        kind: header[8],
        payload_bytes: length,
    })
}

/// Decodes the record `bytes` start with and checks that it is record `index`: a read by index
/// (`Log`'s and `LogView`'s) finds a record the log had indexed, so any failure is damage.
pub(crate) fn decode_indexed(bytes: &[u8], index: u64) -> Result<RecordView, Corruption> {
    let view = match decode(bytes) {
        Ok(view) => view,
        Err(DecodeError::BadChecksum { stored, computed }) => {
            return Err(Corruption::RecordChecksum { stored, computed });
        }
        Err(_) => return Err(Corruption::RecordLength { length: 0 }),
    };
    if view.index != index {
        return Err(Corruption::IndexGap {
            expected: index,
            found: view.index,
        });
    }
    Ok(view)
}

/// Reads a little-endian `u32` at `at`; the caller has checked `bytes` is long enough.
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut buf = [0; 4];
    buf.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(buf)
}

/// Reads a little-endian `u64` at `at`; the caller has checked `bytes` is long enough.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut buf = [0; 8];
    buf.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = Vec::new();
        let view = RecordView {
            index: 7,
            term: 3,
            kind: 1,
            payload_bytes: 5,
        };
        encode(&mut out, view, b"hello");
        out
    }

    #[test]
    fn golden_bytes() {
        // A format change must change this test and bump SEGMENT_FORMAT_VERSION.
        let bytes = sample();
        let mut expected = vec![0, 0, 0, 0, 5, 0, 0, 0, 1];
        expected.extend_from_slice(&7u64.to_le_bytes());
        expected.extend_from_slice(&3u64.to_le_bytes());
        expected.extend_from_slice(b"hello");
        let crc = crc32fast::hash(&expected[4..]);
        expected[..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(bytes, expected);
        // Cross-checked with Python: zlib.crc32(struct.pack("<IBQQ", 5, 1, 7, 3) + b"hello").
        assert_eq!(crc, 0x5152_51b6, "crc of the golden record");
    }

    #[test]
    fn round_trip_and_every_bit_flip_is_caught() {
        let bytes = sample();
        assert_eq!(decode(&bytes).map(|v| v.index), Ok(7));
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit} not caught");
        }
    }

    #[test]
    fn every_prefix_is_an_error() {
        let bytes = sample();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn length_above_limit_is_refused_before_reading() {
        let mut bytes = sample();
        bytes[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode(&bytes),
            Err(DecodeError::BadLength { length: u32::MAX })
        );
    }
}
