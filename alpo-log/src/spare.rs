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
//! segment's name; 9. fsync the directory. Only then are records appended to it. The log starts
//! the next preparation right after each roll-over, and after an open once its active segment is
//! a quarter full (`SPARE_START_FRACTION`), so a log that never rolls over never writes a spare;
//! a roll-over that finds the spare unfinished tells the thread to hurry (no more pauses) and
//! waits; a log that closes tells it to stop after the current step.
//!
//! Invariants: at most one spare exists, and it never holds a record, so a spare found at open
//! (left by a crash, or by a log closed before its next roll-over) is simply removed. A crash in
//! steps 6 to 9 leaves either the spare (removed at open) or a segment whose header is durable
//! and whose body is zeros: an empty last segment, which recovery accepts. A spare that could
//! not be prepared is not fatal: the roll-over then creates its segment in line, as without one.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
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
    /// The prepared file, or `None` if the preparation was told to stop.
    preparing: JoinHandle<Result<Option<File>, Error>>,
    pace: Arc<AtomicU8>,
}

/// How the preparing thread goes on (a `Pace` as `u8`, shared with the `Spare`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Pace {
    /// Small steps with pauses: the roll-over is far away.
    Gentle = 0,
    /// No more pauses: the roll-over is waiting for the spare.
    Hurry = 1,
    /// Stop after the current step: the log is closing (the partial spare is removed at open).
    Stop = 2,
}

impl Spare {
    /// Starts preparing a spare of `length` bytes in `dir`. `None` if no thread could be
    /// started (the next roll-over creates its segment in line).
    pub(crate) fn start(dir: &Path, length: u64) -> Option<Spare> {
        let path = dir.join(SPARE_FILE_NAME);
        let (thread_dir, thread_path) = (dir.to_path_buf(), path.clone());
        let pace = Arc::new(AtomicU8::new(Pace::Gentle as u8));
        let thread_pace = Arc::clone(&pace);
        let spawned = std::thread::Builder::new()
            .name("alpo-log-spare".into())
            .spawn(move || prepare(&thread_dir, &thread_path, length, &thread_pace));
        match spawned {
            Ok(preparing) => Some(Spare {
                path,
                preparing,
                pace,
            }),
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "cannot start the spare-segment thread"
                );
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
        self.pace.store(Pace::Hurry as u8, Ordering::Relaxed);
        let file = match self.preparing.join() {
            Ok(Ok(Some(file))) => file,
            // Only `abandon` stops a preparation, and it consumes the spare.
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(error)) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "the spare segment could not be prepared"
                );
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
        // `rename` would replace a file of that name, where an in-line creation refuses one.
        if path.exists() {
            let exists = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err(Error::io(&path, "rename the spare to", exists));
        }
        fs::rename(&self.path, &path).map_err(|e| Error::io(&path, "rename the spare to", e))?;
        segment::sync_directory(dir)?;
        Ok(Some((path, file)))
    }

    /// Stops the preparation after its current step and waits for that; the spare stays on
    /// disk, complete or not, and is removed at the next open.
    pub(crate) fn abandon(self) {
        self.pace.store(Pace::Stop as u8, Ordering::Relaxed);
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

/// Steps 1 to 5, in paced steps (see `Pace`); `None` if told to stop.
fn prepare(dir: &Path, path: &Path, length: u64, pace: &AtomicU8) -> Result<Option<File>, Error> {
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
        at = to;
        match pace.load(Ordering::Relaxed) {
            p if p == Pace::Stop as u8 => return Ok(None),
            p if p == Pace::Hurry as u8 => {}
            _ => {
                file.sync_data().map_err(sync_error)?;
                std::thread::sleep(Duration::from_millis(SPARE_STEP_PAUSE_MS));
            }
        }
    }
    file.sync_all().map_err(sync_error)?;
    segment::sync_directory(dir)?;
    Ok(Some(file))
}
