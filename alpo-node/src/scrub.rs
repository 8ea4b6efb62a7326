//! The background scrubber (issue 13): a thread that re-reads the durable log from its segment
//! files at a bounded rate (`[log] scrub_bytes_per_sec`) and reports damage it finds, so latent
//! damage is found before a read needs the entry.
//!
//! Each damaged record is reported once per start (a structured `error!` naming file, offset
//! and index; `alpo_scrub_faults_total`; `scrub_faults` in `alpo status`), however many passes
//! see it again. Until the core can repair entries from peers (protocol §18 F5/F6, issue 13's
//! core part) the node only reports: it keeps serving what verifies, and every read of the
//! damaged entry fails its checksum as before.
//!
//! Invariants: the scrubber only reads (through a `LogView`, alpo-log's `scrub_step`); it reads
//! at most `rate` bytes per second on average; it stops when its `Scrubber` is dropped.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Sender, bounded};

use crate::client_protocol::DiskStatus;
use crate::error::Error;
use crate::limits::{SCRUB_PASS_PAUSE_MS, SCRUB_STEPS_PER_SEC};
use crate::metrics::Metrics;

/// The scrubber's counters since start, read by the event loop for status.
#[derive(Debug, Default)]
pub(crate) struct ScrubStats {
    passes: AtomicU64,
    bytes: AtomicU64,
    faults: AtomicU64,
}

impl ScrubStats {
    /// The counters into a status's disk part.
    pub(crate) fn fill(&self, disk: &mut DiskStatus) {
        disk.scrub_passes = self.passes.load(Ordering::Relaxed);
        disk.scrub_bytes = self.bytes.load(Ordering::Relaxed);
        disk.scrub_faults = self.faults.load(Ordering::Relaxed);
    }
}

/// A running scrubber; dropping it stops the thread and waits for it.
#[derive(Debug)]
pub(crate) struct Scrubber {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts scrubbing `view` at `rate` bytes per second; `None` when `rate` is 0 (off).
pub(crate) fn spawn(
    node: u64,
    view: alpo_log::LogView,
    rate: u64,
    stats: Arc<ScrubStats>,
    metrics: Option<Arc<Metrics>>,
) -> Result<Option<Scrubber>, Error> {
    if rate == 0 {
        return Ok(None);
    }
    let (stop, stopped) = bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name(format!("alpo-scrub-{node}"))
        .spawn(move || {
            let mut scrub = Scrub {
                view,
                rate,
                stats,
                metrics,
                reported: BTreeSet::new(),
            };
            let mut next = scrub.view.first_index();
            // Bounded by the stop channel: each turn waits on it.
            loop {
                let (after, pause) = scrub.step(next);
                next = after;
                if !matches!(
                    stopped.recv_timeout(pause),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout)
                ) {
                    return;
                }
            }
        })
        .map_err(|source| Error::Io {
            what: "starting the scrub thread".into(),
            source,
        })?;
    Ok(Some(Scrubber {
        stop: Some(stop),
        thread: Some(thread),
    }))
}

struct Scrub {
    view: alpo_log::LogView,
    rate: u64,
    stats: Arc<ScrubStats>,
    metrics: Option<Arc<Metrics>>,
    /// Damage already reported: (file, offset).
    reported: BTreeSet<(PathBuf, u64)>,
}

impl Scrub {
    /// One step from `next`: the index to go on from and the pause that keeps the rate.
    fn step(&mut self, next: u64) -> (u64, Duration) {
        let step_bytes = (self.rate / SCRUB_STEPS_PER_SEC).max(4096);
        let step = self.view.scrub_step(next, step_bytes);
        self.stats.bytes.fetch_add(step.bytes, Ordering::Relaxed);
        if let Some(metrics) = &self.metrics {
            metrics.disk.scrub_read(step.bytes);
        }
        for finding in step.findings {
            let (path, offset) = match &finding.error {
                alpo_log::Error::Corruption { path, offset, .. } => (path.clone(), *offset),
                alpo_log::Error::Io { path, .. } => (path.clone(), u64::MAX - finding.index),
                _ => (PathBuf::new(), u64::MAX - finding.index),
            };
            if !self.reported.insert((path, offset)) {
                continue;
            }
            self.stats.faults.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.disk.scrub_fault();
            }
            tracing::error!(
                index = finding.index,
                error = &finding.error as &dyn std::error::Error,
                "scrub found a damaged log record (issue 13; not repaired: the entry's reads \
                 fail until a peer's copy replaces it)"
            );
        }
        let mut pause = Duration::from_secs_f64(step.bytes as f64 / self.rate as f64);
        if step.pass_complete {
            self.stats.passes.fetch_add(1, Ordering::Relaxed);
            if let Some(metrics) = &self.metrics {
                metrics.disk.scrub_pass();
            }
            pause = pause.max(Duration::from_millis(SCRUB_PASS_PAUSE_MS));
        } else if step.records == 0 {
            // Compaction moved the cursor: go on soon, without spinning.
            pause = pause.max(Duration::from_millis(10));
        }
        (step.next, pause)
    }
}
