//! [`SnapshotReceiver`]: the follower's side of install-snapshot (protocol S6, S7), writing a
//! leader's snapshot file byte for byte into `install.alposnap-partial`.
//!
//! Rules: a write is accepted only at `offset == held` (the bytes already held for that
//! snapshot id); any other offset is answered with the held count, so the sender resumes from
//! there after a lost, duplicated or reordered chunk. A write for another id discards the
//! partial file and starts over at 0. As soon as the header has arrived it is checked (magic,
//! CRC, version, cluster), and bytes beyond the length it implies are refused, so a bad sender
//! cannot fill the disk.
//!
//! Durability steps of `finish`: 1. verify the whole file (header, length, every chunk CRC,
//! trailer, image checksum), one chunk in memory; 2. fsync it; 3. rename it to
//! `snap-<L>-<T>.alposnap`; 4. fsync the directory. The partial file is never synced before
//! step 2, so a crash loses an unknown part of it: `SnapshotStore::open` removes it (row
//! `PartialInstall`) and the receiver starts at 0, which the sender learns from the first
//! `held` it is told (S6: "a partial file not fsynced before a crash restarts at 0").
//!
//! Invariants: memory is the caller's chunk plus one image chunk during `finish`;
//! `held <= file_bytes` of the header once it is known; one partial file per directory.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Error};
use crate::segment::sync_directory;
use crate::snapshot::format::{self, HEADER_FIXED_BYTES, PARTIAL_FILE_NAME, SnapshotMeta};
use crate::snapshot::reader::ImageReader;
use crate::snapshot::writer::FinishedSnapshot;

/// Receives snapshot files chunk by chunk; get one from `SnapshotStore::receiver`.
#[derive(Debug)]
pub struct SnapshotReceiver {
    dir: PathBuf,
    path: PathBuf,
    cluster_id: u64,
    partial: Option<Partial>,
}

/// The answer to a chunk: either way `held` is what the sender should send next (the
/// protocol's `NextOffset(held)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkOutcome {
    /// The chunk was written; `held` bytes are now held.
    Accepted {
        /// Bytes held after the chunk.
        held: u64,
    },
    /// The chunk's offset was not the bytes held; nothing was written.
    Resume {
        /// Bytes held: the offset the sender must resume from.
        held: u64,
    },
}

#[derive(Debug)]
struct Partial {
    id: u64,
    file: File,
    held: u64,
    /// The header, once it has arrived and checked.
    meta: Option<SnapshotMeta>,
}

impl SnapshotReceiver {
    pub(crate) fn new(dir: &Path, cluster_id: u64) -> SnapshotReceiver {
        SnapshotReceiver {
            dir: dir.to_path_buf(),
            path: dir.join(PARTIAL_FILE_NAME),
            cluster_id,
            partial: None,
        }
    }

    /// The partial file's path.
    pub fn partial_path(&self) -> &Path {
        &self.path
    }

    /// Bytes held for snapshot `id` (0 for any other id).
    pub fn held(&self, id: u64) -> u64 {
        self.partial
            .as_ref()
            .filter(|p| p.id == id)
            .map_or(0, |p| p.held)
    }

    /// The header of snapshot `id`, once its bytes have arrived.
    pub fn meta(&self, id: u64) -> Option<&SnapshotMeta> {
        self.partial
            .as_ref()
            .filter(|p| p.id == id)
            .and_then(|p| p.meta.as_ref())
    }

    /// Writes `bytes` of snapshot `id` at `offset` if `offset` is the count held (rules in
    /// the module doc). A header that does not check, or bytes past the length the header
    /// implies, discard the partial file and are an [`Error::Corruption`] naming it.
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub fn write_at(&mut self, id: u64, offset: u64, bytes: &[u8]) -> Result<ChunkOutcome, Error> {
        if self.partial.as_ref().is_none_or(|p| p.id != id) {
            self.discard()?;
            self.partial = Some(self.create(id)?);
        }
        let partial = self
            .partial
            .as_mut()
            .expect("invariant: created above for this id");
        if offset != partial.held {
            return Ok(ChunkOutcome::Resume { held: partial.held });
        }
        let end = offset + bytes.len() as u64;
        if let Some(expected) = partial.meta.as_ref().and_then(SnapshotMeta::file_bytes)
            && expected < end
        {
            let reason = Corruption::FileLength {
                expected,
                found: end,
            };
            return Err(self.fail(expected, reason));
        }
        partial
            .file
            .write_all_at(bytes, offset)
            .map_err(|e| Error::io(&self.path, "write snapshot", e))?;
        partial.held = end;
        if partial.meta.is_none()
            && let Err((at, reason)) = self.check_header()
        {
            return Err(self.fail(at, reason));
        }
        Ok(ChunkOutcome::Accepted { held: end })
    }

    /// Verifies snapshot `id` in full and makes it durable under its final name (steps in the
    /// module doc). Incomplete: [`Error::SnapshotIncomplete`], the partial file stays. Damaged:
    /// the partial file is discarded and the error names it and the offset.
    pub fn finish(&mut self, id: u64) -> Result<FinishedSnapshot, Error> {
        let Some(partial) = self.partial.as_ref().filter(|p| p.id == id) else {
            return Err(Error::SnapshotIdMismatch {
                receiving: self.partial.as_ref().map(|p| p.id),
                found: id,
            });
        };
        let expected = partial.meta.as_ref().and_then(SnapshotMeta::file_bytes);
        if expected != Some(partial.held) {
            return Err(Error::SnapshotIncomplete {
                path: self.path.clone(),
                held: partial.held,
                expected: expected.unwrap_or(0),
            });
        }
        let file = partial
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, "open snapshot", e))?;
        let verified = ImageReader::new(&self.path, file).and_then(|mut reader| {
            reader.verify_to_end()?;
            Ok(reader.meta().clone())
        });
        let meta = match verified {
            Ok(meta) => meta,
            Err(error) => {
                self.discard()?;
                return Err(error);
            }
        };
        partial
            .file
            .sync_all()
            .map_err(|source| Error::SyncFailed {
                path: self.path.clone(),
                source,
            })?;
        let path = self.dir.join(meta.file_name());
        fs::rename(&self.path, &path).map_err(|e| Error::io(&path, "rename snapshot", e))?;
        self.partial = None;
        sync_directory(&self.dir)?;
        tracing::info!(file = %path.display(), index = meta.last_index, "snapshot installed");
        Ok(FinishedSnapshot { path, meta })
    }

    /// Drops the partial file, if any.
    pub fn discard(&mut self) -> Result<(), Error> {
        if self.partial.take().is_none() {
            return Ok(());
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.path, "remove snapshot", e)),
        }
    }

    fn create(&self, id: u64) -> Result<Partial, Error> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, "create snapshot", e))?;
        Ok(Partial {
            id,
            file,
            held: 0,
            meta: None,
        })
    }

    /// Decodes and checks the header once all of its bytes are held.
    fn check_header(&mut self) -> Result<(), (u64, Corruption)> {
        let Some(partial) = self.partial.as_mut() else {
            return Ok(());
        };
        if partial.held < HEADER_FIXED_BYTES {
            return Ok(());
        }
        let read = |length: u64| {
            let mut bytes = vec![0u8; usize::try_from(length).unwrap_or(0)];
            let length = bytes.len() as u64;
            partial
                .file
                .read_exact_at(&mut bytes, 0)
                .map(|()| bytes)
                .map_err(|_| (0, Corruption::HeaderTruncated { length }))
        };
        let header_bytes = format::header_length(&read(HEADER_FIXED_BYTES)?)?;
        if partial.held < header_bytes {
            return Ok(());
        }
        let meta = format::decode_header(&read(header_bytes)?)?;
        if meta.cluster_id != self.cluster_id {
            let reason = Corruption::ClusterIdMismatch {
                expected: self.cluster_id,
                found: meta.cluster_id,
            };
            return Err((16, reason));
        }
        let expected = meta.file_bytes().unwrap_or(u64::MAX);
        partial.meta = Some(meta);
        if expected < partial.held {
            let found = partial.held;
            return Err((expected, Corruption::FileLength { expected, found }));
        }
        Ok(())
    }

    /// Discards the partial file and returns the damage as an error naming it.
    fn fail(&mut self, offset: u64, reason: Corruption) -> Error {
        let error = Error::corruption(&self.path, offset, reason);
        if let Err(remove) = self.discard() {
            return remove;
        }
        error
    }
}
