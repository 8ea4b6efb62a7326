//! [`SnapshotWriter`]: takes a snapshot by streaming the image into `snap-<L>-<T>.tmp`, then
//! makes it durable under its final name.
//!
//! Durability steps (protocol S3 1–4; `docs/formats.md`): 1. write the header (image size and
//! checksum still zero), the chunks as the image arrives, the trailer, then the header again
//! with the image's size and checksum; 2. fsync the file; 3. rename it to
//! `snap-<L>-<T>.alposnap`; 4. fsync the directory. Only after step 4 does `finish` return, and
//! only then may the node report the snapshot durable and compact the log (S3 5–6).
//!
//! Invariants: memory is one chunk; the file is never renamed before it is synced, so a file
//! under a final name is always complete unless the disk damaged it; a rename replaces an
//! existing file only of the same position (the name is the position), whose image is the same
//! deterministic state (S2). A writer dropped before `finish` removes its temporary file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::segment::sync_directory;
use crate::snapshot::crc64::Crc64;
use crate::snapshot::format::{self, CHUNK_FRAME_BYTES, SnapshotMeta};

/// Streams one snapshot's image to disk; `Send`, so it can run on a background thread.
#[derive(Debug)]
pub struct SnapshotWriter {
    dir: PathBuf,
    temp_path: PathBuf,
    file: File,
    /// The header; `image_bytes` and `image_checksum` are filled in by `finish`.
    meta: SnapshotMeta,
    /// Where the next chunk's frame goes.
    offset: u64,
    /// The frame (8 bytes) and the body of the chunk being filled.
    chunk: Vec<u8>,
    crc: Crc64,
    failed: bool,
    finished: bool,
}

/// A snapshot made durable by [`SnapshotWriter::finish`] or `SnapshotReceiver::finish`; hand
/// it to `SnapshotStore::adopt`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinishedSnapshot {
    pub(crate) path: PathBuf,
    pub(crate) meta: SnapshotMeta,
}

impl FinishedSnapshot {
    /// The snapshot's header.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The snapshot's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

// The node takes snapshots on a background thread (protocol S2).
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<SnapshotWriter>();
};

impl SnapshotWriter {
    /// Creates `snap-<L>-<T>.tmp` in `dir` (truncating a leftover one) and writes a provisional
    /// header. `meta`'s image size and checksum are ignored.
    pub(crate) fn create(dir: &Path, mut meta: SnapshotMeta) -> Result<SnapshotWriter, Error> {
        meta.image_bytes = 0;
        meta.image_checksum = 0;
        let temp_path = dir.join(format::temp_file_name(meta.last_index, meta.last_term));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&temp_path)
            .map_err(|e| Error::io(&temp_path, "create snapshot", e))?;
        let header = meta.encode_header();
        file.write_all_at(&header, 0)
            .map_err(|e| Error::io(&temp_path, "write snapshot", e))?;
        let chunk_capacity = usize::try_from(meta.chunk_bytes).unwrap_or(0) + 8;
        let mut chunk = Vec::with_capacity(chunk_capacity);
        chunk.resize(8, 0);
        Ok(SnapshotWriter {
            dir: dir.to_path_buf(),
            temp_path,
            file,
            offset: header.len() as u64,
            meta,
            chunk,
            crc: Crc64::new(),
            failed: false,
            finished: false,
        })
    }

    /// The temporary file being written.
    pub fn temp_path(&self) -> &Path {
        &self.temp_path
    }

    /// Image bytes written so far.
    pub fn image_bytes(&self) -> u64 {
        self.meta.image_bytes
    }

    /// Appends `bytes` to the image; full chunks go to the file (not synced).
    pub fn write_image(&mut self, mut bytes: &[u8]) -> Result<(), Error> {
        if self.failed {
            return Err(Error::Poisoned);
        }
        let chunk_bytes = usize::try_from(self.meta.chunk_bytes).unwrap_or(usize::MAX);
        // Bounded: each pass consumes at least one byte of `bytes` or writes a full chunk.
        while !bytes.is_empty() {
            let room = chunk_bytes + 8 - self.chunk.len();
            let take = room.min(bytes.len());
            self.crc.update(&bytes[..take]);
            self.chunk.extend_from_slice(&bytes[..take]);
            self.meta.image_bytes += take as u64;
            bytes = &bytes[take..];
            if self.chunk.len() == chunk_bytes + 8 {
                self.write_chunk()?;
            }
        }
        Ok(())
    }

    /// Writes the chunk being filled, if it holds any image bytes.
    fn write_chunk(&mut self) -> Result<(), Error> {
        if self.chunk.len() == 8 {
            return Ok(());
        }
        let frame = format::chunk_frame(&self.chunk[8..]);
        self.chunk[..8].copy_from_slice(&frame);
        let written = self.file.write_all_at(&self.chunk, self.offset);
        if let Err(e) = written {
            self.failed = true;
            return Err(Error::io(&self.temp_path, "write snapshot", e));
        }
        self.offset += self.chunk.len() as u64;
        self.chunk.truncate(8);
        Ok(())
    }

    /// Makes the snapshot durable under its final name (steps 1–4 of the module doc).
    ///
    /// # Correctness
    /// On `Ok`, the snapshot survives a crash and a later `SnapshotStore::open` finds it. A
    /// failed fsync is [`Error::SyncFailed`], fatal for the node (as for the log).
    pub fn finish(mut self) -> Result<FinishedSnapshot, Error> {
        if self.failed {
            return Err(Error::Poisoned);
        }
        self.failed = true;
        self.write_chunk()?;
        self.meta.image_checksum = self.crc.value();
        debug_assert!(Some(self.offset + format::TRAILER_BYTES) == self.meta.file_bytes());
        let io = |e| Error::io(&self.temp_path, "write snapshot", e);
        self.file
            .write_all_at(&self.meta.encode_trailer(), self.offset)
            .map_err(io)?;
        self.file
            .write_all_at(&self.meta.encode_header(), 0)
            .map_err(io)?;
        self.file.sync_all().map_err(|source| Error::SyncFailed {
            path: self.temp_path.clone(),
            source,
        })?;
        let path = self.dir.join(self.meta.file_name());
        fs::rename(&self.temp_path, &path).map_err(|e| Error::io(&path, "rename snapshot", e))?;
        self.finished = true;
        sync_directory(&self.dir)?;
        tracing::info!(file = %path.display(), index = self.meta.last_index,
            bytes = self.meta.image_bytes, "snapshot durable");
        Ok(FinishedSnapshot {
            path,
            meta: self.meta.clone(),
        })
    }
}

impl io::Write for SnapshotWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_image(bytes).map_err(io::Error::other)?;
        Ok(bytes.len())
    }

    /// A no-op: durability comes only from [`SnapshotWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SnapshotWriter {
    /// Removes the temporary file of an unfinished snapshot (best effort: `open` removes any
    /// leftover one too).
    fn drop(&mut self) {
        if !self.finished {
            let _ = fs::remove_file(&self.temp_path);
        }
    }
}

// The frame is 8 bytes; `write_chunk` reserves them at the head of the chunk buffer.
const _: () = assert!(CHUNK_FRAME_BYTES == 8);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::reader::verify_snapshot_file;

    /// Cluster 1, node 2, `L` 3, term 4, membership "m", chunks of 8, image "hello snapshot".
    const GOLDEN_HEX: &str = concat!(
        "89414c504f534e41500d0a1a01000000010000000000000002000000000000000300000000000000",
        "04000000000000000e00000000000000a3ae281be636c6c308000000010000006d5a6220f2080000",
        "006ffabd7168656c6c6f20736e06000000a673ad5e617073686f74414c504f454e440a0300000000",
        "000000a3ae281be636c6c302000000000000009d670215",
    );

    fn write_golden(dir: &Path) -> FinishedSnapshot {
        let meta = SnapshotMeta {
            cluster_id: 1,
            node_id: 2,
            last_index: 3,
            last_term: 4,
            membership: b"m".to_vec(),
            image_bytes: 0,
            image_checksum: 0,
            chunk_bytes: 8,
        };
        let mut writer = SnapshotWriter::create(dir, meta).unwrap();
        writer.write_image(b"hello ").unwrap();
        writer.write_image(b"snapshot").unwrap();
        writer.finish().unwrap()
    }

    #[test]
    fn golden_file_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let finished = write_golden(dir.path());
        let bytes = fs::read(finished.path()).unwrap();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN_HEX);
        let meta = verify_snapshot_file(finished.path()).unwrap();
        assert_eq!(meta.image_bytes, 14);
        assert_eq!(meta.chunk_count(), 2);
        assert_eq!(&bytes[77..81], &8u32.to_le_bytes());
        assert_eq!(&bytes[85..93], b"hello sn");
        assert_eq!(&bytes[93..97], &6u32.to_le_bytes());
        assert_eq!(&bytes[101..107], b"apshot");
        assert_eq!(&bytes[107..115], b"ALPOEND\n");
    }

    #[test]
    fn a_dropped_writer_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SnapshotMeta {
            cluster_id: 1,
            node_id: 2,
            last_index: 3,
            last_term: 4,
            membership: Vec::new(),
            image_bytes: 0,
            image_checksum: 0,
            chunk_bytes: 8,
        };
        let mut writer = SnapshotWriter::create(dir.path(), meta).unwrap();
        writer.write_image(&[1; 100]).unwrap();
        let temp = writer.temp_path().to_path_buf();
        assert!(temp.exists());
        drop(writer);
        assert!(!temp.exists());
    }
}
