//! The hard state: what a node must remember across a crash besides its log (current term,
//! vote, incarnation), in one small checksummed file replaced atomically.
//!
//! ```text
//! offset  size  field
//!      0    12  magic          89 'A' 'L' 'P' 'O' 'H' 'A' 'R' 'D' 0d 0a 1a
//!     12     4  version        HARD_STATE_FORMAT_VERSION (1)
//!     16     8  current_term
//!     24     8  voted_for      node id, or 0 when vote_flag is 0
//!     32     1  vote_flag      1 = voted_for holds a vote, 0 = no vote
//!     33     3  reserved       zero
//!     36     8  incarnation
//!     44     4  crc32          CRC-32 of bytes 0 .. 44
//! ```
//!
//! Durability steps of `store`: 1. write `hard_state.tmp` (truncating any older one); 2. fsync
//! it; 3. rename it over `hard_state`; 4. fsync the directory. A crash at any point leaves
//! either the old file or the new one under the name `hard_state`, never a mix: rename is
//! atomic, and the new file's bytes were durable before the rename.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{Corruption, Error};
use crate::record::{read_u32, read_u64};
use crate::segment::sync_directory;

/// The hard-state file's name inside the log directory.
pub const HARD_STATE_FILE_NAME: &str = "hard_state";

/// The temporary file `store` writes before renaming it.
const HARD_STATE_TEMP_NAME: &str = "hard_state.tmp";

/// The hard-state format version this build writes and reads.
const HARD_STATE_FORMAT_VERSION: u32 = 1;

/// PNG-style magic (see `segment::SEGMENT_MAGIC`).
const HARD_STATE_MAGIC: [u8; 12] = *b"\x89ALPOHARD\r\n\x1a";

/// Bytes of the hard-state file.
const HARD_STATE_BYTES: usize = 48;

const _: () = assert!(HARD_STATE_MAGIC.len() + 4 + 8 + 8 + 1 + 3 + 8 + 4 == HARD_STATE_BYTES);

/// What a node must not forget across a crash (protocol rules E0, E3, E4, E6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HardState {
    /// The latest term this node has seen.
    pub current_term: u64,
    /// The node it voted for in `current_term`, if any.
    pub voted_for: Option<u64>,
    /// Bumped by the node on every start, so peers can tell a restart.
    pub incarnation: u64,
}

impl HardState {
    /// Loads the hard state of `dir`: `None` if it was never stored. A damaged file is an
    /// [`Error::Corruption`] naming it.
    pub fn load(dir: &Path) -> Result<Option<HardState>, Error> {
        let path = dir.join(HARD_STATE_FILE_NAME);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, "read hard state", e)),
        };
        HardState::decode(&bytes)
            .map(Some)
            .map_err(|(offset, reason)| Error::corruption(&path, offset, reason))
    }

    /// Replaces the hard state of `dir` atomically and durably (steps in the module doc).
    /// A failed fsync is [`Error::SyncFailed`], which is fatal for the node.
    pub fn store(&self, dir: &Path) -> Result<(), Error> {
        let temp = dir.join(HARD_STATE_TEMP_NAME);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp)
            .map_err(|e| Error::io(&temp, "create hard state", e))?;
        file.write_all(&self.encode())
            .map_err(|e| Error::io(&temp, "write hard state", e))?;
        file.sync_all().map_err(|source| Error::SyncFailed {
            path: temp.clone(),
            source,
        })?;
        let path = dir.join(HARD_STATE_FILE_NAME);
        fs::rename(&temp, &path).map_err(|e| Error::io(&path, "rename hard state", e))?;
        sync_directory(dir)
    }

    /// The 48 bytes of the file.
    fn encode(&self) -> [u8; HARD_STATE_BYTES] {
        let mut out = [0; HARD_STATE_BYTES];
        out[..12].copy_from_slice(&HARD_STATE_MAGIC);
        out[12..16].copy_from_slice(&HARD_STATE_FORMAT_VERSION.to_le_bytes());
        out[16..24].copy_from_slice(&self.current_term.to_le_bytes());
        out[24..32].copy_from_slice(&self.voted_for.unwrap_or(0).to_le_bytes());
        out[32] = u8::from(self.voted_for.is_some());
        out[36..44].copy_from_slice(&self.incarnation.to_le_bytes());
        let crc = crc32fast::hash(&out[..44]);
        out[44..48].copy_from_slice(&crc.to_le_bytes());
        debug_assert!(HardState::decode(&out) == Ok(*self));
        out
    }

    /// Decodes the file's bytes. Never panics.
    fn decode(bytes: &[u8]) -> Result<HardState, (u64, Corruption)> {
        let length = bytes.len() as u64;
        if bytes.len() != HARD_STATE_BYTES {
            return Err((0, Corruption::HeaderTruncated { length }));
        }
        if bytes[..12] != HARD_STATE_MAGIC {
            return Err((0, Corruption::BadMagic));
        }
        let stored = read_u32(bytes, 44);
        let computed = crc32fast::hash(&bytes[..44]);
        if stored != computed {
            return Err((44, Corruption::HeaderChecksum { stored, computed }));
        }
        let version = read_u32(bytes, 12);
        if version != HARD_STATE_FORMAT_VERSION {
            return Err((12, Corruption::UnsupportedVersion { found: version }));
        }
        let voted_for = match bytes[32] {
            0 => None,
            1 => Some(read_u64(bytes, 24)),
            found => return Err((32, Corruption::BadVoteFlag { found })),
        };
        Ok(HardState {
            current_term: read_u64(bytes, 16),
            voted_for,
            incarnation: read_u64(bytes, 36),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HardState {
        HardState {
            current_term: 7,
            voted_for: Some(3),
            incarnation: 2,
        }
    }

    #[test]
    fn golden_bytes() {
        let bytes = sample().encode();
        assert_eq!(&bytes[..12], b"\x89ALPOHARD\r\n\x1a");
        assert_eq!(&bytes[16..24], &7u64.to_le_bytes());
        assert_eq!(&bytes[24..33], &[3, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(&bytes[36..44], &2u64.to_le_bytes());
        assert_eq!(HardState::decode(&bytes), Ok(sample()));
    }

    #[test]
    fn every_bit_flip_is_caught() {
        let bytes = sample().encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes;
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(HardState::decode(&damaged).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn store_load_replace() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(HardState::load(dir.path()).unwrap(), None);
        sample().store(dir.path()).unwrap();
        assert_eq!(HardState::load(dir.path()).unwrap(), Some(sample()));
        let next = HardState {
            current_term: 8,
            voted_for: None,
            incarnation: 3,
        };
        next.store(dir.path()).unwrap();
        assert_eq!(HardState::load(dir.path()).unwrap(), Some(next));
        assert!(!dir.path().join(HARD_STATE_TEMP_NAME).exists());
    }

    #[test]
    fn damaged_file_names_path_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        sample().store(dir.path()).unwrap();
        let path = dir.path().join(HARD_STATE_FILE_NAME);
        let mut bytes = fs::read(&path).unwrap();
        bytes[20] ^= 4;
        fs::write(&path, &bytes).unwrap();
        let error = HardState::load(dir.path()).unwrap_err().to_string();
        assert!(error.contains("hard_state at byte 44"), "{error}");
        fs::write(&path, &bytes[..10]).unwrap();
        assert!(HardState::load(dir.path()).is_err());
    }
}
