//! The flight recorder (issue 15): streams the core's input trace (alpo-core's `trace` format,
//! recorded by `Node::new_recorded` and taken with `Node::take_trace` after every event-loop
//! batch) into a bounded ring of files under `data_dir/trace`, for `alpo replay`.
//!
//! One file per start of the node: `trace-<incarnation>-<unix ms at start>.alpotrc`, a whole
//! trace from the core's `start` record on (a trace cannot be cut later: the core's volatile
//! state at a cut is not in the format). A thread of its own writes, so the event loop never
//! waits on the trace disk except when the queue is full (backpressure, as for the log).
//!
//! Invariants:
//! - every file is a whole trace, or one whose last record is torn (the process died while the
//!   writer was behind); `alpo replay` accepts exactly that;
//! - the files together stay within `disk_bytes_max`: the oldest starts are removed first; when
//!   the current start alone reaches the budget, recording stops at a record boundary for the
//!   rest of this start (logged once) and the file stays replayable up to there;
//! - writes are not synced: the trace is a diagnosis aid, not a durability promise (the log is).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::error::Error;

/// Trace chunks waiting for the writer; a full queue makes the event loop wait.
const QUEUE_CHUNK_COUNT_MAX: usize = 1024;

/// The file extension of trace files.
pub const TRACE_EXTENSION: &str = "alpotrc";

/// The folder of a node's trace files.
#[must_use]
pub fn trace_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("trace")
}

/// The event loop's handle on the recorder thread.
#[derive(Debug)]
pub(crate) struct Recorder {
    chunks: Option<Sender<Vec<u8>>>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Creates this start's trace file (making room in the ring) and starts the writer.
    pub(crate) fn start(
        data_dir: &Path,
        incarnation: u64,
        disk_bytes_max: u64,
    ) -> Result<Recorder, Error> {
        let dir = trace_dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: format!("creating the trace directory {}", dir.display()),
            source,
        })?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let path = dir.join(format!(
            "trace-{incarnation:010}-{millis}.{TRACE_EXTENSION}"
        ));
        let file = File::create(&path).map_err(|source| Error::Io {
            what: format!("creating the trace file {}", path.display()),
            source,
        })?;
        let mut ring = Ring::new(&dir, path, disk_bytes_max);
        ring.make_room(0);
        let (chunks, receiver) = crossbeam_channel::bounded(QUEUE_CHUNK_COUNT_MAX);
        let thread = std::thread::Builder::new()
            .name("alpo-recorder".into())
            .spawn(move || write_chunks(&receiver, BufWriter::new(file), ring))
            .map_err(|source| Error::Io {
                what: "starting the flight recorder thread".into(),
                source,
            })?;
        Ok(Recorder {
            chunks: Some(chunks),
            thread: Some(thread),
        })
    }

    /// Queues trace bytes for the writer (waits only while the queue is full).
    pub(crate) fn record(&self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(chunks) = &self.chunks {
            // A writer that stopped (out of budget, or a failed write, both logged) drops them.
            let _ = chunks.send(bytes);
        }
    }

    /// Writes what is queued and ends the writer.
    pub(crate) fn finish(&mut self) {
        drop(self.chunks.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The ring of trace files and the budget.
#[derive(Debug)]
struct Ring {
    current: PathBuf,
    written: u64,
    /// The earlier starts' files, oldest first, with their sizes (listed once, at start).
    others: std::collections::VecDeque<(PathBuf, u64)>,
    disk_bytes_max: u64,
}

impl Ring {
    fn new(dir: &Path, current: PathBuf, disk_bytes_max: u64) -> Ring {
        let mut others = trace_files(dir).unwrap_or_else(|error| {
            tracing::warn!(dir = %dir.display(), %error, "flight recorder: listing traces failed");
            Vec::new()
        });
        others.retain(|(path, _)| *path != current);
        Ring {
            current,
            written: 0,
            others: others.into(),
            disk_bytes_max,
        }
    }

    /// Removes the oldest other starts' files until `more` bytes fit the budget; `false` when
    /// even the current file alone would not fit.
    fn make_room(&mut self, more: u64) -> bool {
        loop {
            let others: u64 = self.others.iter().map(|(_, size)| size).sum();
            if others + self.written + more <= self.disk_bytes_max {
                return true;
            }
            let Some((path, _)) = self.others.pop_front() else {
                return false;
            };
            if let Err(error) = std::fs::remove_file(&path) {
                let file = path.display();
                tracing::warn!(%file, %error, "flight recorder: removing an old trace failed");
            }
        }
    }
}

/// The trace files in `dir`, oldest start first, with their sizes.
pub fn trace_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == TRACE_EXTENSION) {
            files.push((path, entry.metadata()?.len()));
        }
    }
    // Names start with the zero-padded incarnation: name order is start order.
    files.sort();
    Ok(files)
}

fn write_chunks(chunks: &Receiver<Vec<u8>>, mut file: BufWriter<File>, mut ring: Ring) {
    let mut stopped = false;
    while let Ok(chunk) = chunks.recv() {
        if stopped {
            continue;
        }
        let size = chunk.len() as u64;
        if !ring.make_room(size) {
            tracing::warn!(
                file = %ring.current.display(),
                budget = ring.disk_bytes_max,
                "flight recorder: this start's trace reached the disk budget; recording stops \
                 (the file replays up to here; raise [recorder] disk_bytes_max to keep more)"
            );
            stopped = true;
            let _ = file.flush();
            continue;
        }
        if let Err(error) = file.write_all(&chunk) {
            write_failed(&ring.current, &error);
            stopped = true;
            continue;
        }
        ring.written += size;
        // Hands the bytes to the kernel whenever the writer caught up, so a crash loses little.
        if chunks.is_empty()
            && let Err(error) = file.flush()
        {
            write_failed(&ring.current, &error);
            stopped = true;
        }
    }
    let _ = file.flush();
}

fn write_failed(file: &Path, error: &std::io::Error) {
    let file = file.display();
    tracing::warn!(%file, %error, "flight recorder: write failed; recording stops");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_starts_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        for incarnation in 1..=3 {
            let mut recorder = Recorder::start(dir.path(), incarnation, 1000).unwrap();
            recorder.record(vec![incarnation as u8; 400]);
            recorder.finish();
        }
        let files = trace_files(&trace_dir(dir.path())).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(files.len(), 2, "{names:?}");
        assert!(names[0].starts_with("trace-0000000002-"), "{names:?}");
        assert!(names[1].starts_with("trace-0000000003-"), "{names:?}");
        assert!(files.iter().all(|(_, size)| *size == 400));
    }

    #[test]
    fn a_start_that_outgrows_the_budget_stops_at_a_chunk_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::start(dir.path(), 1, 1000).unwrap();
        for byte in 0..5u8 {
            recorder.record(vec![byte; 300]);
        }
        recorder.finish();
        let files = trace_files(&trace_dir(dir.path())).unwrap();
        assert_eq!(files.len(), 1);
        let bytes = std::fs::read(&files[0].0).unwrap();
        assert_eq!(bytes.len(), 900, "three whole chunks");
        assert_eq!(bytes[600..], [2u8; 300]);
    }
}
