//! The term ceiling (protocol rule F8): a bound above every term the node voted or stood in,
//! in a small checksummed file of its own, apart from the hard state, so that a node whose
//! hard state is lost still knows below which term it may have voted (rule F9).
//!
//! ```text
//! offset  size  field
//!      0    12  magic          89 'A' 'L' 'P' 'O' 'C' 'E' 'I' 'L' 0d 0a 1a
//!     12     4  version        TERM_CEILING_FORMAT_VERSION (1)
//!     16     8  ceiling        every term voted or stood in is below it
//!     24     4  reserved       zero
//!     28     4  crc32          CRC-32 of bytes 0 .. 28
//! ```
//!
//! Durability steps of `store` are the hard state's: 1. write `term_ceiling.tmp`; 2. fsync it;
//! 3. rename it over `term_ceiling`; 4. fsync the directory. A crash leaves the old file or the
//! new one, never a mix. The core raises the ceiling once per `W` terms, so the cost is one
//! extra sync per `W` elections.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{Corruption, Error};
use crate::record::{read_u32, read_u64};
use crate::segment::sync_directory;

/// The term-ceiling file's name inside the log directory.
pub const TERM_CEILING_FILE_NAME: &str = "term_ceiling";

/// The temporary file `store` writes before renaming it.
const TERM_CEILING_TEMP_NAME: &str = "term_ceiling.tmp";

/// The term-ceiling format version this build writes and reads.
const TERM_CEILING_FORMAT_VERSION: u32 = 1;

/// PNG-style magic (see `segment::SEGMENT_MAGIC`).
const TERM_CEILING_MAGIC: [u8; 12] = *b"\x89ALPOCEIL\r\n\x1a";

/// Bytes of the term-ceiling file.
const TERM_CEILING_BYTES: usize = 32;

const _: () = assert!(TERM_CEILING_MAGIC.len() + 4 + 8 + 4 + 4 == TERM_CEILING_BYTES);

/// The durable term ceiling (protocol rule F8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TermCeiling(pub u64);

impl TermCeiling {
    /// Loads the ceiling of `dir`: `None` if it was never stored. A damaged file is an
    /// [`Error::Corruption`] naming it.
    pub fn load(dir: &Path) -> Result<Option<TermCeiling>, Error> {
        let path = dir.join(TERM_CEILING_FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, "read term ceiling", e)),
        };
        TermCeiling::decode(&bytes)
            .map(Some)
            .map_err(|(offset, reason)| Error::corruption(&path, offset, reason))
    }

    /// Replaces the ceiling of `dir` atomically and durably (steps in the module doc). A
    /// failed fsync is [`Error::SyncFailed`], which is fatal for the node.
    pub fn store(&self, dir: &Path) -> Result<(), Error> {
        let temp = dir.join(TERM_CEILING_TEMP_NAME);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| Error::io(&temp, "create term ceiling", e))?;
        file.write_all(&self.encode())
            .map_err(|e| Error::io(&temp, "write term ceiling", e))?;
        file.sync_all().map_err(|source| Error::SyncFailed {
            path: temp.clone(),
            source,
        })?;
        let path = dir.join(TERM_CEILING_FILE_NAME);
        fs::rename(&temp, &path).map_err(|e| Error::io(&path, "rename term ceiling", e))?;
        sync_directory(dir)
    }

    /// The 32 bytes of the file.
    fn encode(self) -> [u8; TERM_CEILING_BYTES] {
        let mut out = [0; TERM_CEILING_BYTES];
        out[..12].copy_from_slice(&TERM_CEILING_MAGIC);
        out[12..16].copy_from_slice(&TERM_CEILING_FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.0.to_le_bytes());
        let crc = crc32fast::hash(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        debug_assert!(TermCeiling::decode(&out) == Ok(self));
        out
    }

    /// Decodes the file's bytes. Never panics.
    fn decode(bytes: &[u8]) -> Result<TermCeiling, (u64, Corruption)> {
        let length = bytes.len() as u64;
        if bytes.len() != TERM_CEILING_BYTES {
            return Err((0, Corruption::HeaderTruncated { length }));
        }
        if bytes[..12] != TERM_CEILING_MAGIC {
            return Err((0, Corruption::BadMagic));
        }
        let stored = read_u32(bytes, 28);
        let computed = crc32fast::hash(&bytes[..28]);
        if stored != computed {
            return Err((28, Corruption::HeaderChecksum { stored, computed }));
        }
        let version = read_u32(bytes, 12);
        if version != TERM_CEILING_FORMAT_VERSION {
            return Err((12, Corruption::UnsupportedVersion { found: version }));
        }
        Ok(TermCeiling(read_u64(bytes, 16)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let bytes = TermCeiling(23).encode();
        assert_eq!(&bytes[..12], b"\x89ALPOCEIL\r\n\x1a");
        assert_eq!(&bytes[12..16], &1u32.to_le_bytes());
        assert_eq!(&bytes[16..24], &23u64.to_le_bytes());
        assert_eq!(&bytes[24..28], &[0, 0, 0, 0]);
        assert_eq!(TermCeiling::decode(&bytes), Ok(TermCeiling(23)));
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let bytes = TermCeiling(23).encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(TermCeiling::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn store_load_replace_and_damage_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(TermCeiling::load(dir.path()).unwrap(), None);
        TermCeiling(17).store(dir.path()).unwrap();
        assert_eq!(
            TermCeiling::load(dir.path()).unwrap(),
            Some(TermCeiling(17))
        );
        TermCeiling(33).store(dir.path()).unwrap();
        assert_eq!(
            TermCeiling::load(dir.path()).unwrap(),
            Some(TermCeiling(33))
        );
        assert!(!dir.path().join(TERM_CEILING_TEMP_NAME).exists());
        let path = dir.path().join(TERM_CEILING_FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[17] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let error = TermCeiling::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("term_ceiling at byte 28"), "{error}");
    }
}
