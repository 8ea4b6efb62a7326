//! The bytes of a snapshot file: header, chunk frames, trailer, and the file names.
//!
//! ```text
//! header (76 + m bytes)
//! offset  size  field
//!      0    12  magic             89 'A' 'L' 'P' 'O' 'S' 'N' 'A' 'P' 0d 0a 1a
//!     12     4  version           SNAPSHOT_FORMAT_VERSION (1)
//!     16     8  cluster_id
//!     24     8  node_id           the node that took the snapshot
//!     32     8  last_index        L, the last included index
//!     40     8  last_term         the term of entry L
//!     48     8  image_bytes       size of the state machine's image
//!     56     8  image_checksum    CRC-64/XZ of the image's bytes
//!     64     4  chunk_bytes       image bytes per chunk (every chunk but the last is full)
//!     68     4  membership_bytes  m
//!     72     m  membership        opaque bytes (the configuration in force at L)
//!   72+m     4  header_crc        CRC-32 of bytes 0 .. 72+m
//! chunks, back to back; chunk k holds image bytes k·chunk_bytes .. min((k+1)·chunk_bytes, size)
//!      0     4  length            image bytes in this chunk (1 ..= chunk_bytes)
//!      4     4  chunk_crc         CRC-32 of the length field's 4 bytes and the body
//!      8     n  body
//! trailer (36 bytes)
//!      0     8  magic             'A' 'L' 'P' 'O' 'E' 'N' 'D' 0a
//!      8     8  last_index        as in the header
//!     16     8  image_checksum    as in the header
//!     24     8  chunk_count
//!     32     4  trailer_crc       CRC-32 of trailer bytes 0 .. 32
//! ```
//!
//! Invariants: the header alone determines the file's length (`file_bytes`), so truncation and
//! trailing garbage are caught before any chunk is read; every length is checked against a
//! limit before it sizes a buffer; decoding never panics on any input.

use crate::error::Corruption;
use crate::limits::{SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_MEMBERSHIP_BYTES_MAX};
use crate::record::{read_u32, read_u64};

/// The snapshot format version this build writes and reads.
pub(crate) const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// PNG-style magic (see `segment::SEGMENT_MAGIC`).
pub(crate) const SNAPSHOT_MAGIC: [u8; 12] = *b"\x89ALPOSNAP\r\n\x1a";

/// Bytes of the header before the membership.
pub(crate) const HEADER_FIXED_BYTES: u64 = HEADER_FIXED as u64;
const HEADER_FIXED: usize = 72;

/// Bytes of a chunk's frame (length and CRC) before its body.
pub(crate) const CHUNK_FRAME_BYTES: u64 = CHUNK_FRAME as u64;
pub(crate) const CHUNK_FRAME: usize = 8;

/// Bytes of the trailer.
pub(crate) const TRAILER_BYTES: u64 = TRAILER as u64;
pub(crate) const TRAILER: usize = 36;

/// The trailer's magic.
const TRAILER_MAGIC: [u8; 8] = *b"ALPOEND\n";

/// Prefix and suffix of a snapshot file's name: `snap-<L>-<T>.alposnap`, 20 digits each.
const NAME_PREFIX: &str = "snap-";
/// See [`NAME_PREFIX`].
pub(crate) const SNAPSHOT_SUFFIX: &str = ".alposnap";
/// The temporary name a snapshot is written under before its rename: `snap-<L>-<T>.tmp`.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";
/// The one file a snapshot being received is written to.
pub(crate) const PARTIAL_FILE_NAME: &str = "install.alposnap-partial";

const _: () = assert!(SNAPSHOT_MAGIC.len() + 4 + 8 * 6 + 4 + 4 == HEADER_FIXED);
const _: () = assert!(TRAILER_MAGIC.len() + 8 * 3 + 4 == TRAILER);

/// What a snapshot file says about itself: its header (protocol rule S1's meta).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotMeta {
    /// The cluster the snapshot belongs to.
    pub cluster_id: u64,
    /// The node that took the snapshot (a follower keeps its leader's file byte for byte).
    pub node_id: u64,
    /// `L`: the image is the state after applying exactly entries `1 ..= L`.
    pub last_index: u64,
    /// The term of entry `L`.
    pub last_term: u64,
    /// The configuration in force at `L`, opaque to the log.
    pub membership: Vec<u8>,
    /// Size of the image in bytes.
    pub image_bytes: u64,
    /// CRC-64/XZ of the image's bytes.
    pub image_checksum: u64,
    /// Image bytes per chunk.
    pub chunk_bytes: u32,
}

impl SnapshotMeta {
    /// Bytes of this snapshot's header.
    pub fn header_bytes(&self) -> u64 {
        HEADER_FIXED_BYTES + self.membership.len() as u64 + 4
    }

    /// Number of chunks the image is framed in.
    pub fn chunk_count(&self) -> u64 {
        self.image_bytes
            .div_ceil(u64::from(self.chunk_bytes.max(1)))
    }

    /// Bytes of the whole file; `None` if the header's figures overflow (damage).
    pub fn file_bytes(&self) -> Option<u64> {
        self.chunk_count()
            .checked_mul(CHUNK_FRAME_BYTES)?
            .checked_add(self.image_bytes)?
            .checked_add(self.header_bytes())?
            .checked_add(TRAILER_BYTES)
    }

    /// The file name of this snapshot.
    pub fn file_name(&self) -> String {
        snapshot_file_name(self.last_index, self.last_term)
    }

    /// The header's bytes.
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub(crate) fn encode_header(&self) -> Vec<u8> {
        let membership_bytes = u32::try_from(self.membership.len())
            .expect("invariant: membership length checked against the limit at begin");
        let mut out = Vec::with_capacity(usize::try_from(self.header_bytes()).unwrap_or(0));
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
        for field in [
            self.cluster_id,
            self.node_id,
            self.last_index,
            self.last_term,
            self.image_bytes,
            self.image_checksum,
        ] {
            out.extend_from_slice(&field.to_le_bytes());
        }
        out.extend_from_slice(&self.chunk_bytes.to_le_bytes());
        out.extend_from_slice(&membership_bytes.to_le_bytes());
        out.extend_from_slice(&self.membership);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert!(decode_header(&out).as_ref() == Ok(self));
        out
    }

    /// The trailer's bytes.
    pub(crate) fn encode_trailer(&self) -> [u8; TRAILER] {
        let mut out = [0; TRAILER];
        out[..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..16].copy_from_slice(&self.last_index.to_le_bytes());
        out[16..24].copy_from_slice(&self.image_checksum.to_le_bytes());
        out[24..32].copy_from_slice(&self.chunk_count().to_le_bytes());
        let crc = crc32fast::hash(&out[..32]);
        out[32..36].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Whether `bytes` are this snapshot's trailer.
    pub(crate) fn trailer_matches(&self, bytes: &[u8]) -> bool {
        bytes == self.encode_trailer()
    }
}

/// The header's length from its first `HEADER_FIXED_BYTES` bytes, after checking the magic and
/// the membership length. The error carries the offset of the problem inside the file.
pub(crate) fn header_length(prefix: &[u8]) -> Result<u64, (u64, Corruption)> {
    let length = prefix.len() as u64;
    let fixed = prefix
        .get(..HEADER_FIXED)
        .ok_or((0, Corruption::HeaderTruncated { length }))?;
    if fixed[..12] != SNAPSHOT_MAGIC {
        return Err((0, Corruption::BadMagic));
    }
    let membership = read_u32(fixed, 68);
    if SNAPSHOT_MEMBERSHIP_BYTES_MAX < membership {
        return Err((68, Corruption::MembershipLength { length: membership }));
    }
    Ok(HEADER_FIXED_BYTES + u64::from(membership) + 4)
}

/// Decodes a header from the start of `bytes`. Never panics; the CRC is checked before any
/// field but the membership length is trusted.
pub(crate) fn decode_header(bytes: &[u8]) -> Result<SnapshotMeta, (u64, Corruption)> {
    let total = header_length(bytes)?;
    let length = bytes.len() as u64;
    let total_usize =
        usize::try_from(total).map_err(|_| (0, Corruption::HeaderTruncated { length }))?;
    let header = bytes
        .get(..total_usize)
        .ok_or((0, Corruption::HeaderTruncated { length }))?;
    let crc_at = total_usize - 4;
    let stored = read_u32(header, crc_at);
    let computed = crc32fast::hash(&header[..crc_at]);
    if stored != computed {
        return Err((total - 4, Corruption::HeaderChecksum { stored, computed }));
    }
    let version = read_u32(header, 12);
    if version != SNAPSHOT_FORMAT_VERSION {
        return Err((12, Corruption::UnsupportedVersion { found: version }));
    }
    let chunk_bytes = read_u32(header, 64);
    if chunk_bytes == 0 || SNAPSHOT_CHUNK_BYTES_MAX < chunk_bytes {
        return Err((64, Corruption::ChunkSize { chunk_bytes }));
    }
    Ok(SnapshotMeta {
        cluster_id: read_u64(header, 16),
        node_id: read_u64(header, 24),
        last_index: read_u64(header, 32),
        last_term: read_u64(header, 40),
        image_bytes: read_u64(header, 48),
        image_checksum: read_u64(header, 56),
        chunk_bytes,
        membership: header[HEADER_FIXED..crc_at].to_vec(),
    })
}

/// The 8-byte frame of a chunk with `body`.
#[allow(clippy::expect_used, reason = "the message states the invariant")]
pub(crate) fn chunk_frame(body: &[u8]) -> [u8; CHUNK_FRAME] {
    let length = u32::try_from(body.len()).expect("invariant: a chunk is at most 4 MiB");
    let mut out = [0; CHUNK_FRAME];
    out[..4].copy_from_slice(&length.to_le_bytes());
    out[4..].copy_from_slice(&chunk_crc(length, body).to_le_bytes());
    out
}

/// The CRC a chunk's frame carries: over the length field's bytes, then the body.
pub(crate) fn chunk_crc(length: u32, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&length.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// `snap-<L>-<T>.alposnap`, 20 digits each, so lexical order is position order.
pub(crate) fn snapshot_file_name(last_index: u64, last_term: u64) -> String {
    format!("{NAME_PREFIX}{last_index:020}-{last_term:020}{SNAPSHOT_SUFFIX}")
}

/// `snap-<L>-<T>.tmp`.
pub(crate) fn temp_file_name(last_index: u64, last_term: u64) -> String {
    format!("{NAME_PREFIX}{last_index:020}-{last_term:020}{TEMP_SUFFIX}")
}

/// What a file name in a snapshot directory is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A renamed snapshot at `(last_index, last_term)`.
    Snapshot { last_index: u64, last_term: u64 },
    /// A snapshot being taken (or left by a crash while taken).
    Temp,
    /// A snapshot being received (or left by a crash while received).
    Partial,
}

/// The kind of a file name, or `None` for a name the snapshot store does not own.
pub(crate) fn parse_file_name(name: &str) -> Option<FileKind> {
    if name == PARTIAL_FILE_NAME {
        return Some(FileKind::Partial);
    }
    let rest = name.strip_prefix(NAME_PREFIX)?;
    let (position, kind) = if let Some(position) = rest.strip_suffix(SNAPSHOT_SUFFIX) {
        (position, None)
    } else {
        (rest.strip_suffix(TEMP_SUFFIX)?, Some(FileKind::Temp))
    };
    let (index, term) = position.split_once('-')?;
    let digits = |s: &str| s.len() == 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(index) || !digits(term) {
        return None;
    }
    let last_index = index.parse().ok()?;
    let last_term = term.parse().ok()?;
    Some(kind.unwrap_or(FileKind::Snapshot {
        last_index,
        last_term,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SnapshotMeta {
        SnapshotMeta {
            cluster_id: 0x0102,
            node_id: 3,
            last_index: 42,
            last_term: 7,
            membership: b"abc".to_vec(),
            image_bytes: 100,
            image_checksum: 0x1122_3344_5566_7788,
            chunk_bytes: 64,
        }
    }

    #[test]
    fn header_golden_bytes() {
        let bytes = sample().encode_header();
        assert_eq!(bytes.len(), 79);
        assert_eq!(&bytes[..12], b"\x89ALPOSNAP\r\n\x1a");
        assert_eq!(&bytes[12..16], &[1, 0, 0, 0]);
        assert_eq!(&bytes[16..24], &[2, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[32..40], &42u64.to_le_bytes());
        assert_eq!(&bytes[40..48], &7u64.to_le_bytes());
        assert_eq!(&bytes[48..56], &100u64.to_le_bytes());
        assert_eq!(&bytes[56..64], &0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(&bytes[64..68], &64u32.to_le_bytes());
        assert_eq!(&bytes[68..72], &3u32.to_le_bytes());
        assert_eq!(&bytes[72..75], b"abc");
        assert_eq!(&bytes[75..79], &crc32fast::hash(&bytes[..75]).to_le_bytes());
        assert_eq!(decode_header(&bytes), Ok(sample()));
        // Two chunks (64 + 36) with their frames, then the trailer.
        assert_eq!(sample().file_bytes(), Some(79 + 100 + 16 + 36));
    }

    #[test]
    fn every_header_bit_flip_is_caught() {
        let bytes = sample().encode_header();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_header(&damaged).is_err(), "bit {bit}");
        }
        for length in 0..bytes.len() {
            assert!(decode_header(&bytes[..length]).is_err(), "length {length}");
        }
    }

    #[test]
    fn trailer_binds_to_the_header() {
        let meta = sample();
        let trailer = meta.encode_trailer();
        assert!(meta.trailer_matches(&trailer));
        assert_eq!(&trailer[..8], b"ALPOEND\n");
        let mut other = meta.clone();
        other.last_index += 1;
        assert!(!other.trailer_matches(&trailer));
    }

    #[test]
    fn file_names_sort_in_position_order_and_parse_back() {
        let name = snapshot_file_name(42, 7);
        assert_eq!(
            name,
            "snap-00000000000000000042-00000000000000000007.alposnap"
        );
        assert_eq!(
            parse_file_name(&name),
            Some(FileKind::Snapshot {
                last_index: 42,
                last_term: 7
            })
        );
        assert_eq!(
            parse_file_name(&temp_file_name(42, 7)),
            Some(FileKind::Temp)
        );
        assert_eq!(parse_file_name(PARTIAL_FILE_NAME), Some(FileKind::Partial));
        assert_eq!(parse_file_name("snap-42-7.alposnap"), None);
        assert_eq!(parse_file_name("0000000000000001.alpolog"), None);
        assert!(snapshot_file_name(9, 1) < snapshot_file_name(10, 1));
        assert!(snapshot_file_name(u64::MAX, u64::MAX).len() < 64);
    }
}
