//! The spare segment: the file the next roll-over turns into a segment, zero-filled and synced
//! by a background thread, so that a roll-over does not stall appends while a whole segment of
//! zeros is written (with the default 64 MiB segments, tens to hundreds of milliseconds, on
//! every node at about the same log position).
//!
//! Durability steps. Background thread: 1. remove a leftover spare; 2. create the spare file;
//! 3. write zeros over `[0, length)`, in steps of `SPARE_STEP_BYTES`, each followed by an
//! `fdatasync` and a short pause (so its write-back never queues much in front of the
//! foreground's small syncs); 4. fsync the file; 5. fsync the directory. At roll-over
//! (`Log`): 6. write the segment header at offset 0; 7. `fdatasync`; 8. rename the spare to the
//! segment's name; 9. fsync the directory. Only then are records appended to it.
//!
//! Invariants: at most one spare exists, and it never holds a record, so a spare found at open
//! (left by a crash, or by a log closed before its next roll-over) is simply removed. A crash in
//! steps 6 to 9 leaves either the spare (removed at open) or a segment whose header is durable
//! and whose body is zeros: an empty last segment, which recovery accepts. A spare that could
//! not be prepared is not fatal: the roll-over then creates its segment in line, as without one.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;
use crate::limits::{SPARE_STEP_BYTES, SPARE_STEP_PAUSE_MS};
use crate::segment::{self, SegmentHeader};

/// The spare's file name; it does not parse as a segment name, so scans never see it.
pub(crate) const SPARE_FILE_NAME: &str = "next-segment.alpolog-spare";

/// A spare being prepared (or ready) in the background.
#[derive(Debug)]
pub(crate) struct Spare {
    path: PathBuf,
    preparing: JoinHandle<Result<File, Error>>,
}

impl Spare {
    /// Starts preparing a spare of `length` bytes in `dir`. `None` if no thread could be
    /// started (the next roll-over creates its segment in line).
    pub(crate) fn start(dir: &Path, length: u64) -> Option<Spare> {
        let path = dir.join(SPARE_FILE_NAME);
        let (thread_dir, thread_path) = (dir.to_path_buf(), path.clone());
        let spawned = std::thread::Builder::new()
            .name("alpo-log-spare".into())
            .spawn(move || prepare(&thread_dir, &thread_path, length));
        match spawned {
            Ok(preparing) => Some(Spare { path, preparing }),
            Err(error) => {
                tracing::warn!(%error, "cannot start the spare-segment thread");
                None
            }
        }
    }

    /// Waits for the spare (usually long ready) and turns it into segment `sequence` with
    /// `header` (steps 6 to 9). `Ok(None)` if the spare could not be prepared: the caller then
    /// creates the segment itself. An error here (the header write, sync or rename failed) is
    /// an I/O failure on the log's own directory, as fatal as in an in-line creation.
    pub(crate) fn install(
        self,
        dir: &Path,
        sequence: u64,
        header: &SegmentHeader,
    ) -> Result<Option<(PathBuf, File)>, Error> {
        let file = match self.preparing.join() {
            Ok(Ok(file)) => file,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the spare segment could not be prepared");
                return Ok(None);
            }
            Err(_) => {
                tracing::error!("the spare-segment thread panicked");
                return Ok(None);
            }
        };
        file.write_all_at(&header.encode(), 0)
            .map_err(|e| Error::io(&self.path, "write header", e))?;
        file.sync_data().map_err(|source| Error::SyncFailed {
            path: self.path.clone(),
            source,
        })?;
        let path = dir.join(segment::segment_file_name(sequence));
        fs::rename(&self.path, &path).map_err(|e| Error::io(&path, "rename the spare to", e))?;
        segment::sync_directory(dir)?;
        Ok(Some((path, file)))
    }

    /// Waits for the preparation to end and leaves the spare on disk (removed at next open).
    pub(crate) fn abandon(self) {
        if self.preparing.join().is_err() {
            tracing::error!("the spare-segment thread panicked");
        }
    }
}

/// Removes a spare left in `dir`; returns whether there was one.
pub(crate) fn remove_leftover(dir: &Path) -> Result<bool, Error> {
    let path = dir.join(SPARE_FILE_NAME);
    match fs::remove_file(&path) {
        Ok(()) => {
            segment::sync_directory(dir)?;
            Ok(true)
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(Error::io(&path, "remove spare", error)),
    }
}

/// Steps 1 to 5.
fn prepare(dir: &Path, path: &Path, length: u64) -> Result<File, Error> {
    remove_leftover(dir)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, "create spare", e))?;
    let sync_error = |source| Error::SyncFailed {
        path: path.to_path_buf(),
        source,
    };
    // Bounded: each step advances `at` by `SPARE_STEP_BYTES` until it reaches `length`.
    let mut at = 0;
    while at < length {
        let to = length.min(at + SPARE_STEP_BYTES);
        segment::write_zeros(&file, path, at, to)?;
        file.sync_data().map_err(sync_error)?;
        at = to;
        std::thread::sleep(Duration::from_millis(SPARE_STEP_PAUSE_MS));
    }
    file.sync_all().map_err(sync_error)?;
    segment::sync_directory(dir)?;
    Ok(file)
}
