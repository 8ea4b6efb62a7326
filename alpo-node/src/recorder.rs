//! The flight recorder (issue 15): streams the core's input trace (alpo-core's `trace` format,
//! recorded by `Node::new_recorded` and taken with `Node::take_trace` after every event-loop
//! batch) into a bounded ring of files under `data_dir/trace`, for `alpo replay`.
//!
//! A start of the node writes a run of files
//! `trace-<incarnation>-<unix ms at start>-<piece>.alpotrc` (piece 0, 1, …): the first begins
//! with the core's `start` record; when the records after a file's head reach `file_bytes_max`,
//! the event loop cuts the core's trace (`Node::cut_trace`) and the next file begins with a
//! checkpoint of the core (trace format 5), so every file replays from its own beginning. A
//! thread of its own writes, so the event loop never waits on the trace disk except when the
//! queue is full (backpressure, as for the log).
//!
//! Invariants:
//! - every file is a whole trace piece from its `start` or `checkpoint` record on, or one whose
//!   last record is torn (the process died while the writer was behind); `alpo replay` accepts
//!   exactly that. A file's header and first record are written and handed to the kernel when
//!   the file is created (the first file's by the caller of `Recorder::start`, before the
//!   event loop runs), so that a crash leaves a torn `start` only in a very short window;
//! - the files together stay within `disk_bytes_max`: the oldest files go first, of earlier
//!   starts or of this one, so the budget always holds the newest history. Only when the
//!   current file alone reaches the budget does recording stop, until the next cut;
//! - writes are not synced: the trace is a diagnosis aid, not a durability promise (the log is).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use crate::config::RecorderSettings;
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

/// What the event loop hands the writer.
#[derive(Debug)]
enum Chunk {
    /// Trace bytes for the current file.
    Records(Vec<u8>),
    /// Close the current file and begin the next with these bytes (a header and checkpoint).
    Cut(Vec<u8>),
}

/// The event loop's handle on the recorder thread.
#[derive(Debug)]
pub(crate) struct Recorder {
    chunks: Option<Sender<Chunk>>,
    thread: Option<JoinHandle<()>>,
    /// Record bytes handed over for the current file after its head (so that a checkpoint
    /// larger than `file_bytes_max` cannot make every batch cut).
    file_bytes: u64,
    file_bytes_max: u64,
}

impl Recorder {
    /// Creates this start's first trace file, writes `head` to it (the trace's header and
    /// `start` record, `Node::take_trace` right after `Node::new_recorded`) before returning,
    /// makes room in the ring, and starts the writer.
    pub(crate) fn start(
        data_dir: &Path,
        incarnation: u64,
        settings: RecorderSettings,
        head: &[u8],
    ) -> Result<Recorder, Error> {
        let dir = trace_dir(data_dir);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            what: format!("creating the trace directory {}", dir.display()),
            source,
        })?;
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let start_name = format!("trace-{incarnation:010}-{millis}");
        let mut ring = Ring::new(&dir, start_name, settings.disk_bytes_max);
        let file = ring.create(head).map_err(|(path, source)| Error::Io {
            what: format!("creating the trace file {}", path.display()),
            source,
        })?;
        let (chunks, receiver) = crossbeam_channel::bounded(QUEUE_CHUNK_COUNT_MAX);
        let thread = std::thread::Builder::new()
            .name("alpo-recorder".into())
            .spawn(move || write_chunks(&receiver, file, ring))
            .map_err(|source| Error::Io {
                what: "starting the flight recorder thread".into(),
                source,
            })?;
        Ok(Recorder {
            chunks: Some(chunks),
            thread: Some(thread),
            file_bytes: 0,
            file_bytes_max: settings.file_bytes(),
        })
    }

    /// Whether the current file's records after its head reached `file_bytes_max`: the event
    /// loop should cut the trace (`Node::cut_trace`) and hand the cut to [`Recorder::cut`].
    pub(crate) fn wants_cut(&self) -> bool {
        self.file_bytes >= self.file_bytes_max
    }

    /// Streams what `node` recorded since the last call (after an event-loop batch, with no
    /// output pending), cutting the trace into the next file when this one is full.
    pub(crate) fn stream(&mut self, node: &mut alpo_core::Node, now: alpo_core::Instant) {
        if self.wants_cut()
            && let Some(cut) = node.cut_trace(now)
        {
            self.cut(cut.tail, cut.head);
        } else {
            self.record(node.take_trace());
        }
    }

    /// Queues trace bytes for the writer (waits only while the queue is full).
    pub(crate) fn record(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        self.file_bytes += bytes.len() as u64;
        self.send(Chunk::Records(bytes));
    }

    /// Ends the current file with `tail` and begins the next with `head` (a cut of the core's
    /// trace: the end of this piece, then the next piece's header and checkpoint).
    pub(crate) fn cut(&mut self, tail: Vec<u8>, head: Vec<u8>) {
        self.record(tail);
        self.file_bytes = 0;
        self.send(Chunk::Cut(head));
    }

    fn send(&self, chunk: Chunk) {
        if let Some(chunks) = &self.chunks {
            // A writer that failed (logged) drops them.
            let _ = chunks.send(chunk);
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
    dir: PathBuf,
    /// `trace-<incarnation>-<unix ms>`: this start's files' names, before the piece number.
    start_name: String,
    /// The current file's piece number.
    piece: u64,
    current: PathBuf,
    written: u64,
    /// The closed files, of earlier starts and of this one, oldest first, with their sizes.
    closed: VecDeque<(PathBuf, u64)>,
    disk_bytes_max: u64,
}

impl Ring {
    fn new(dir: &Path, start_name: String, disk_bytes_max: u64) -> Ring {
        let closed = trace_files(dir).unwrap_or_else(|error| {
            tracing::warn!(dir = %dir.display(), %error, "flight recorder: listing traces failed");
            Vec::new()
        });
        Ring {
            dir: dir.to_path_buf(),
            start_name,
            piece: 0,
            current: PathBuf::new(),
            written: 0,
            closed: closed.into(),
            disk_bytes_max,
        }
    }

    /// Creates the file of the current piece, writes `head` to it and hands it to the kernel,
    /// then makes room for it.
    fn create(&mut self, head: &[u8]) -> Result<BufWriter<File>, (PathBuf, std::io::Error)> {
        let name = format!("{}-{:06}.{TRACE_EXTENSION}", self.start_name, self.piece);
        let path = self.dir.join(name);
        let mut file = File::create(&path)
            .and_then(|mut file| file.write_all(head).map(|()| file))
            .map(BufWriter::new)
            .map_err(|error| (path.clone(), error))?;
        self.current = path;
        self.written = head.len() as u64;
        if !self.make_room(0) {
            budget_reached(self);
        }
        file.flush()
            .map_err(|error| (self.current.clone(), error))?;
        Ok(file)
    }

    /// Closes the current file and begins the next piece with `head`.
    fn cut(&mut self, head: &[u8]) -> Result<BufWriter<File>, (PathBuf, std::io::Error)> {
        let current = std::mem::take(&mut self.current);
        self.closed.push_back((current, self.written));
        self.piece += 1;
        self.create(head)
    }

    /// Removes the oldest closed files until `more` bytes fit the budget; `false` when even
    /// the current file alone would not fit.
    fn make_room(&mut self, more: u64) -> bool {
        loop {
            let closed: u64 = self.closed.iter().map(|(_, size)| size).sum();
            if closed + self.written + more <= self.disk_bytes_max {
                return true;
            }
            let Some((path, _)) = self.closed.pop_front() else {
                return false;
            };
            if let Err(error) = std::fs::remove_file(&path) {
                let file = path.display();
                tracing::warn!(%file, %error, "flight recorder: removing an old trace failed");
            }
        }
    }
}

/// The trace files in `dir`, oldest first (by start, then piece), with their sizes.
pub fn trace_files(dir: &Path) -> std::io::Result<Vec<(PathBuf, u64)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == TRACE_EXTENSION) {
            files.push((path, entry.metadata()?.len()));
        }
    }
    // Names start with the zero-padded incarnation, then the start's time in milliseconds
    // (13 digits until the year 2286), then the zero-padded piece: name order is time order.
    files.sort();
    Ok(files)
}

/// The start a trace file belongs to: its name without the piece number
/// (`trace-<incarnation>-<unix ms>`), so that the files of one start replay as one run.
#[must_use]
pub fn start_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    // A start's files are `trace-<incarnation>-<ms>-<piece>`; a name with fewer parts (trace
    // format 4's one file per start) is a start of its own.
    match stem.rsplit_once('-') {
        Some((start, piece))
            if stem.matches('-').count() == 3 && piece.bytes().all(|b| b.is_ascii_digit()) =>
        {
            start.to_string()
        }
        _ => stem,
    }
}

fn write_chunks(chunks: &Receiver<Chunk>, mut file: BufWriter<File>, mut ring: Ring) {
    // Recording stopped: the current file reached the budget alone (until the next cut), or a
    // write failed (for good).
    let mut stopped = false;
    let mut failed = false;
    while let Ok(chunk) = chunks.recv() {
        match chunk {
            Chunk::Records(_) | Chunk::Cut(_) if failed => {}
            Chunk::Cut(head) => {
                let _ = file.flush();
                match ring.cut(&head) {
                    Ok(next) => {
                        file = next;
                        stopped = false;
                    }
                    Err((path, error)) => {
                        write_failed(&path, &error);
                        failed = true;
                    }
                }
            }
            Chunk::Records(_) if stopped => {}
            Chunk::Records(bytes) => {
                let size = bytes.len() as u64;
                if !ring.make_room(size) {
                    budget_reached(&ring);
                    stopped = true;
                    let _ = file.flush();
                    continue;
                }
                if let Err(error) = file.write_all(&bytes) {
                    write_failed(&ring.current, &error);
                    failed = true;
                    continue;
                }
                ring.written += size;
            }
        }
        // Hands the bytes to the kernel whenever the writer caught up, so a crash loses little.
        if !failed
            && chunks.is_empty()
            && let Err(error) = file.flush()
        {
            write_failed(&ring.current, &error);
            failed = true;
        }
    }
    let _ = file.flush();
}

fn budget_reached(ring: &Ring) {
    tracing::warn!(
        file = %ring.current.display(),
        budget = ring.disk_bytes_max,
        "flight recorder: this trace file alone reached the disk budget; recording stops until \
         the next file (the file replays up to here; lower [recorder] file_bytes_max or raise \
         disk_bytes_max)"
    );
}

fn write_failed(file: &Path, error: &std::io::Error) {
    let file = file.display();
    tracing::warn!(%file, %error, "flight recorder: write failed; recording stops");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alpo_core::replay::{check_continues, replay_watched};
    use alpo_core::trace::trace_head;
    use alpo_core::{Config, Instant, LogPosition, Node, NodeId, Output, Persisted};
    use bytes::Bytes;

    use super::*;

    fn settings(disk_bytes_max: u64, file_bytes_max: u64) -> RecorderSettings {
        RecorderSettings {
            enabled: true,
            disk_bytes_max,
            file_bytes_max: Some(file_bytes_max),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        trace_files(&trace_dir(dir))
            .unwrap()
            .iter()
            .map(|(path, _)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// A one-node cluster's core, recording, driven as the event loop drives it: `rounds`
    /// batches of a proposal, its log write reported durable, then the trace streamed.
    fn run_node(dir: &Path, incarnation: u64, settings: RecorderSettings, rounds: u64) -> Node {
        let mut config = Config::lan(NodeId(1), vec![NodeId(1)], 7);
        // The cache is in every checkpoint: small here, so that files hold many records.
        config.log_cache_bytes_max = 1024;
        let persisted = Persisted {
            incarnation: alpo_core::Incarnation(incarnation),
            ..Persisted::default()
        };
        let mut now = Instant::from_nanos(0);
        let mut node = Node::new_recorded(config, persisted, now).unwrap();
        let mut recorder = Recorder::start(dir, incarnation, settings, &node.take_trace()).unwrap();
        for round in 0..rounds {
            now = Instant::from_nanos(now.0 + Duration::from_millis(10).as_nanos() as u64);
            if node.next_timeout().is_some_and(|deadline| deadline <= now) {
                node.tick(now);
            }
            let _ = node.propose(now, Bytes::from(format!("command {round}")));
            for _ in 0..3 {
                for output in node.take_outputs() {
                    if let Output::AppendLog { entries } = output
                        && let Some(last) = entries.last()
                    {
                        let position = LogPosition {
                            index: last.index,
                            term: last.term,
                        };
                        node.on_persisted(now, position);
                    }
                }
            }
            recorder.stream(&mut node, now);
        }
        recorder.finish();
        node
    }

    #[test]
    fn the_ring_keeps_the_newest_starts_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        for incarnation in 1..=3 {
            let mut recorder =
                Recorder::start(dir.path(), incarnation, settings(1000, 500), &[9; 100]).unwrap();
            recorder.record(vec![incarnation as u8; 300]);
            recorder.finish();
        }
        let names = names(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].starts_with("trace-0000000002-"), "{names:?}");
        assert!(names[1].starts_with("trace-0000000003-"), "{names:?}");
        assert!(names[1].ends_with("-000000.alpotrc"), "{names:?}");
    }

    #[test]
    fn a_file_that_outgrows_the_budget_alone_stops_at_a_chunk_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder = Recorder::start(dir.path(), 1, settings(1000, 5000), &[9; 100]).unwrap();
        for byte in 0..5u8 {
            recorder.record(vec![byte; 300]);
        }
        recorder.finish();
        let files = trace_files(&trace_dir(dir.path())).unwrap();
        assert_eq!(files.len(), 1);
        let bytes = std::fs::read(&files[0].0).unwrap();
        assert_eq!(bytes.len(), 1000, "the head and three whole chunks");
        assert_eq!(bytes[700..], [2u8; 300]);
    }

    #[test]
    fn a_file_is_cut_after_file_bytes_max_of_records_whatever_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let mut recorder =
            Recorder::start(dir.path(), 1, settings(1 << 20, 500), &[9; 100]).unwrap();
        recorder.record(vec![1; 499]);
        assert!(!recorder.wants_cut());
        recorder.record(vec![1; 1]);
        assert!(recorder.wants_cut());
        // A checkpoint larger than a file's records does not make the next batch cut again.
        recorder.cut(vec![2; 10], vec![3; 2000]);
        assert!(!recorder.wants_cut());
        recorder.record(vec![4; 500]);
        assert!(recorder.wants_cut());
        recorder.finish();
        let names = names(dir.path());
        assert_eq!(names.len(), 2, "{names:?}");
        let sizes: Vec<u64> = trace_files(&trace_dir(dir.path()))
            .unwrap()
            .iter()
            .map(|f| f.1)
            .collect();
        assert_eq!(sizes, vec![610, 2500]);
    }

    #[test]
    fn the_header_and_start_record_are_on_disk_before_the_loop_runs() {
        let dir = tempfile::tempdir().unwrap();
        let _recorder =
            Recorder::start(dir.path(), 1, settings(1 << 20, 1 << 18), b"head").unwrap();
        let files = trace_files(&trace_dir(dir.path())).unwrap();
        assert_eq!(std::fs::read(&files[0].0).unwrap(), b"head");
    }

    /// Under a tiny budget, a long start keeps its newest files (the oldest, its `start`
    /// among them, are dropped, with an earlier start's), and they replay from the oldest
    /// kept checkpoint to the recorded node's state, each cut checked.
    #[test]
    fn a_long_start_keeps_its_newest_files_and_they_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (budget, file) = (64 << 10, 8 << 10);
        run_node(dir.path(), 1, settings(budget, file), 50);
        let node = run_node(dir.path(), 2, settings(budget, file), 3000);
        let files = trace_files(&trace_dir(dir.path())).unwrap();
        let names = names(dir.path());
        assert!(
            names
                .iter()
                .all(|name| name.starts_with("trace-0000000002-")),
            "{names:?}"
        );
        assert!(
            !names[0].ends_with("-000000.alpotrc"),
            "the start was dropped: {names:?}"
        );
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        assert!(total <= budget, "{total} bytes in {names:?}");
        assert!(files.len() >= 4, "{names:?}");
        let mut previous: Option<Node> = None;
        let mut checkpoints = 0;
        for (path, _) in &files {
            let trace = std::fs::read(path).unwrap();
            assert!(trace_head(&trace).unwrap().checkpoint.is_some());
            if let Some(previous) = &previous {
                check_continues(previous, &trace).unwrap();
            }
            let replay = replay_watched(&trace, false, &mut |_| {}).unwrap();
            assert!(replay.began.checkpoint);
            checkpoints += 1;
            previous = Some(replay.node);
        }
        assert_eq!(checkpoints, files.len());
        let replayed = previous.unwrap();
        assert_eq!(replayed.status(), node.status());
        assert_eq!(replayed.hard_state(), node.hard_state());
        assert!(node.status().commit_index.0 >= 2900);
    }

    #[test]
    fn start_of_names_the_start_of_a_piece() {
        let piece = Path::new("/x/trace-0000000002-1700000000000-000004.alpotrc");
        assert_eq!(start_of(piece), "trace-0000000002-1700000000000");
        let old = Path::new("/x/trace-0000000002-1700000000000.alpotrc");
        assert_eq!(start_of(old), "trace-0000000002-1700000000000");
    }
}
