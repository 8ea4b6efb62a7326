//! The storage thread: writes log operations in order and makes them durable in batches (group
//! commit), then reports "durable up to this position" to the event loop.
//!
//! Durability sequence for each batch:
//! 1. take every operation queued (at most `STORAGE_BATCH_OP_COUNT_MAX`), in arrival order;
//! 2. perform each: a truncation removes a suffix, an append writes entries at the end, a
//!    compaction drops whole segments below a durable snapshot (rule S4), a reset starts an
//!    empty log after an installed snapshot (rule S7 step 1);
//! 3. one `sync()` (fdatasync) covers every entry of the batch;
//! 4. publish the log's last position as durable and wake the event loop (its inbox).
//!
//! Invariants: operations are performed in the order the core emitted them; a position is
//! published only after the sync that covers it returned; the published position only moves
//! forward within a term's log (a truncation can move it back, to a shorter prefix that was
//! durable already). A failed write or sync is fatal (docs/operations.md): the thread publishes the
//! typed `alpo_log::Error`, which names the file, and stops; it never retries.

use std::sync::Arc;

use crate::metrics::Metrics;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::service::Wake;
use parking_lot::Mutex;

use alpo_core::{Entry, LogIndex, LogPosition};

use crate::error::Error;
use crate::limits::STORAGE_BATCH_OP_COUNT_MAX;

/// A log the storage thread can write: alpo-log's `Log` in a running node.
pub(crate) trait LogStore: Send + 'static {
    /// Removes every entry at `from` and above.
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), alpo_log::Error>;
    /// Appends `entry` after the last entry (its index is last + 1).
    fn append(&mut self, entry: &Entry) -> Result<(), alpo_log::Error>;
    /// Makes every write so far durable (fdatasync). A failure is fatal.
    fn sync(&mut self) -> Result<(), alpo_log::Error>;
    /// Index and term of the last entry; after a reset, the snapshot's position; `(0, 0)`
    /// when empty from the start.
    fn last_position(&self) -> LogPosition;
    /// Drops entries below `below`, whole segments only (a durable snapshot covers them).
    fn compact_prefix(&mut self, below: LogIndex) -> Result<(), alpo_log::Error>;
    /// Discards the whole log, which continues after `snapshot` (durable on return).
    fn reset(&mut self, snapshot: LogPosition) -> Result<(), alpo_log::Error>;
}

/// One log operation, as the core emitted it.
#[derive(Debug)]
pub(crate) enum StorageOp {
    Truncate { from: LogIndex },
    Append { entries: Vec<Entry> },
    Compact { below: LogIndex },
    Reset { snapshot: LogPosition },
}

/// What the storage thread publishes for the event loop.
#[derive(Debug, Default)]
pub(crate) struct StorageState {
    /// The last position covered by a completed sync, if any sync completed since start.
    pub(crate) durable: Option<LogPosition>,
    /// Set once when a write or sync failed; the node must stop. The event loop takes it.
    pub(crate) fatal: Option<alpo_log::Error>,
    /// Batches synced and entries written, for status and benchmarks.
    pub(crate) sync_count: u64,
    pub(crate) entry_count: u64,
}

/// The event loop's view of the storage thread.
#[derive(Debug)]
pub(crate) struct StorageHandle {
    pub(crate) ops: Sender<StorageOp>,
    pub(crate) state: Arc<Mutex<StorageState>>,
    pub(crate) thread: JoinHandle<()>,
}

/// Starts the storage thread over `store`; it calls `wake` after each change of its state.
pub(crate) fn spawn(
    store: Box<dyn LogStore>,
    queue_count_max: usize,
    wake: Arc<dyn Wake>,
    metrics: Option<Arc<Metrics>>,
) -> Result<StorageHandle, Error> {
    let (ops_tx, ops_rx) = crossbeam_channel::bounded(queue_count_max);
    let state = Arc::new(Mutex::new(StorageState::default()));
    let thread_state = Arc::clone(&state);
    let thread = std::thread::Builder::new()
        .name("alpo-storage".into())
        .spawn(move || {
            run(
                store,
                &ops_rx,
                wake.as_ref(),
                &thread_state,
                metrics.as_deref(),
            )
        })
        .map_err(|source| Error::Io {
            what: "starting the storage thread".into(),
            source,
        })?;
    Ok(StorageHandle {
        ops: ops_tx,
        state,
        thread,
    })
}

fn run(
    mut store: Box<dyn LogStore>,
    ops: &Receiver<StorageOp>,
    wake: &dyn Wake,
    state: &Mutex<StorageState>,
    metrics: Option<&Metrics>,
) {
    // Ends when the event loop drops its sender (node stopping) or on a fatal error.
    while let Ok(first) = ops.recv() {
        let batch = drain(first, ops);
        match write_batch(store.as_mut(), batch, metrics) {
            Ok(entry_count) => {
                let mut state = state.lock();
                state.durable = Some(store.last_position());
                state.sync_count += 1;
                state.entry_count += entry_count;
            }
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "log write failed; the node stops"
                );
                state.lock().fatal = Some(error);
                wake.wake();
                return;
            }
        }
        wake.wake();
    }
}

/// Takes `first` and everything queued behind it, up to the batch limit.
fn drain(first: StorageOp, ops: &Receiver<StorageOp>) -> Vec<StorageOp> {
    let mut batch = vec![first];
    while batch.len() < STORAGE_BATCH_OP_COUNT_MAX {
        match ops.try_recv() {
            Ok(op) => batch.push(op),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    batch
}

fn write_batch(
    store: &mut dyn LogStore,
    batch: Vec<StorageOp>,
    metrics: Option<&Metrics>,
) -> Result<u64, alpo_log::Error> {
    let mut entry_count = 0;
    for op in batch {
        match op {
            StorageOp::Truncate { from } => store.truncate_suffix(from)?,
            StorageOp::Compact { below } => store.compact_prefix(below)?,
            StorageOp::Reset { snapshot } => store.reset(snapshot)?,
            StorageOp::Append { entries } => {
                for entry in &entries {
                    debug_assert!(entry.index == store.last_position().index.next());
                    store.append(entry)?;
                }
                // A usize always fits in a u64 on the platforms alpo builds for.
                entry_count += u64::try_from(entries.len()).unwrap_or(u64::MAX);
            }
        }
    }
    let started = metrics.map(|_| std::time::Instant::now());
    store.sync()?;
    if let (Some(metrics), Some(started)) = (metrics, started) {
        metrics
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    Ok(entry_count)
}

#[cfg(test)]
pub(crate) mod memory {
    //! An in-memory log for event-loop tests; never shipped.

    use super::*;

    /// Entries in a shared vector, so a test can look at them; `base` is the position before
    /// the first entry (moved by a reset).
    #[derive(Debug, Default, Clone)]
    pub(crate) struct MemoryLog {
        pub(crate) entries: Arc<Mutex<Vec<Entry>>>,
        pub(crate) base: Arc<Mutex<LogPosition>>,
        pub(crate) fail_sync: bool,
    }

    impl crate::apply::EntrySource for MemoryLog {
        fn read(&self, from: LogIndex, to: LogIndex, _max_bytes: u64) -> Result<Vec<Entry>, Error> {
            let entries = self.entries.lock();
            if let Some(first) = entries.first().filter(|first| from < first.index) {
                return Err(Error::Log(alpo_log::Error::Compacted {
                    index: from.0,
                    first_retained: first.index.0,
                }));
            }
            let run = entries.iter().filter(|e| from <= e.index && e.index <= to);
            Ok(run.cloned().collect())
        }
    }

    impl LogStore for MemoryLog {
        fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), alpo_log::Error> {
            self.entries.lock().retain(|entry| entry.index < from);
            Ok(())
        }

        fn compact_prefix(&mut self, below: LogIndex) -> Result<(), alpo_log::Error> {
            let mut entries = self.entries.lock();
            // Like alpo-log: the last entry stays, so the log never empties by compaction.
            let last = entries.last().map(|entry| entry.index);
            entries.retain(|entry| below <= entry.index || Some(entry.index) == last);
            Ok(())
        }

        fn reset(&mut self, snapshot: LogPosition) -> Result<(), alpo_log::Error> {
            self.entries.lock().clear();
            *self.base.lock() = snapshot;
            Ok(())
        }

        fn append(&mut self, entry: &Entry) -> Result<(), alpo_log::Error> {
            self.entries.lock().push(entry.clone());
            Ok(())
        }

        fn sync(&mut self) -> Result<(), alpo_log::Error> {
            if self.fail_sync {
                return Err(alpo_log::Error::SyncFailed {
                    path: "memory/0001.alpolog".into(),
                    source: std::io::Error::other("injected"),
                });
            }
            Ok(())
        }

        fn last_position(&self) -> LogPosition {
            let base = *self.base.lock();
            self.entries.lock().last().map_or(base, Entry::position)
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use alpo_core::{EntryKind, Term};

    use super::memory::MemoryLog;
    use super::*;

    /// Turns each wake into a message the test can wait for.
    #[derive(Debug)]
    struct ChannelWake(Sender<()>);

    impl Wake for ChannelWake {
        fn wake(&self) {
            let _ = self.0.try_send(());
        }
    }

    fn spawn_with_wakes(log: MemoryLog) -> (StorageHandle, Receiver<()>) {
        let (wake_tx, wakes) = crossbeam_channel::bounded(1);
        let handle = spawn(Box::new(log), 16, Arc::new(ChannelWake(wake_tx)), None).unwrap();
        (handle, wakes)
    }

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload: Bytes::from_static(b"x"),
        }
    }

    fn wait_durable(handle: &StorageHandle, wakes: &Receiver<()>, index: u64) -> LogPosition {
        loop {
            wakes.recv().unwrap();
            let state = handle.state.lock();
            if let Some(durable) = state.durable.filter(|d| d.index.0 == index) {
                return durable;
            }
        }
    }

    #[test]
    fn appends_and_truncations_are_performed_in_order_and_reported() {
        let log = MemoryLog::default();
        let (handle, wakes) = spawn_with_wakes(log.clone());
        let entries = (1..=3).map(|i| entry(i, 1)).collect();
        handle.ops.send(StorageOp::Append { entries }).unwrap();
        assert_eq!(wait_durable(&handle, &wakes, 3).term, Term(1));
        handle
            .ops
            .send(StorageOp::Truncate { from: LogIndex(2) })
            .unwrap();
        let entries = vec![entry(2, 2)];
        handle.ops.send(StorageOp::Append { entries }).unwrap();
        let durable = wait_durable(&handle, &wakes, 2);
        assert_eq!(durable.term, Term(2));
        assert_eq!(log.entries.lock().len(), 2);
        drop(handle.ops);
        handle.thread.join().unwrap();
    }

    #[test]
    fn a_failed_sync_is_published_as_fatal() {
        let log = MemoryLog {
            fail_sync: true,
            ..MemoryLog::default()
        };
        let (handle, wakes) = spawn_with_wakes(log);
        let entries = vec![entry(1, 1)];
        handle.ops.send(StorageOp::Append { entries }).unwrap();
        wakes.recv().unwrap();
        let fatal = handle.state.lock().fatal.take().unwrap();
        let alpo_log::Error::SyncFailed { path, .. } = &fatal else {
            panic!("expected a failed sync, got {fatal:?}");
        };
        assert_eq!(path.to_str(), Some("memory/0001.alpolog"));
        assert!(fatal.is_fatal());
        assert!(handle.state.lock().durable.is_none());
        handle.thread.join().unwrap();
    }
}
