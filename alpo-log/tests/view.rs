//! `LogView`: reads of durable entries from other threads while the storage thread appends,
//! truncates and compacts.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use alpo_log::{Error, Log};
use common::{build, options, payload, term};

#[test]
fn a_view_serves_durable_entries_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 100);
    let view = log.view();
    assert_eq!((view.first_index(), view.durable_index()), (1, 100));
    assert_eq!(view.entry(7).unwrap().unwrap().payload.as_ref(), payload(7));
    log.append(101, term(101), 1, &payload(101)).unwrap();
    assert_eq!(view.entry(101).unwrap(), None);
    log.sync().unwrap();
    assert_eq!(view.entry(101).unwrap().unwrap().term, term(101));
    // A range: gap-free from `from`, across segments, cut by `max_bytes` after at least one.
    let run = view.read(1, 101, u64::MAX).unwrap();
    assert_eq!(run.len(), 101);
    assert!(run.iter().enumerate().all(|(i, r)| r.index == i as u64 + 1));
    let small = view.read(10, 101, 1).unwrap();
    assert_eq!(small.len(), 1);
    assert!(view.read(102, 200, u64::MAX).unwrap().is_empty());
}

#[test]
fn a_read_below_the_first_index_names_the_first_index_still_readable() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 300);
    let view = log.view();
    let held = view.entry(5).unwrap().unwrap();
    log.compact_prefix(200).unwrap();
    let first = log.first_index();
    assert!(5 < first);
    assert_eq!(view.first_index(), first);
    match view.entry(5) {
        Err(Error::Compacted {
            index: 5,
            first_retained,
        }) => assert_eq!(first_retained, first),
        other => panic!("{other:?}"),
    }
    let text = view.read(1, 10, 100).unwrap_err().to_string();
    assert!(
        text.contains(&format!("the first index still readable is {first}")),
        "{text}"
    );
    // A record read before the compaction keeps its bytes.
    assert_eq!(held.payload.as_ref(), payload(5));
    assert_eq!(view.read(first, first, 0).unwrap()[0].index, first);
}

#[test]
fn a_truncation_unpublishes_before_it_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 100);
    let view = log.view();
    log.truncate_suffix(60).unwrap();
    assert_eq!(view.durable_index(), 59);
    assert_eq!(view.entry(60).unwrap(), None);
    log.append(60, 99, 1, b"new").unwrap();
    log.sync().unwrap();
    assert_eq!(view.entry(60).unwrap().unwrap().payload.as_ref(), b"new");
    // A view made after a reopen sees the same.
    drop(log);
    let log = Log::open(dir.path(), options(4096)).unwrap();
    assert_eq!(log.view().entry(60).unwrap().unwrap().term, 99);
}

/// The payload a record at `(index, term)` carries in the concurrent test.
fn tagged(index: u64, term: u64) -> Vec<u8> {
    let mut bytes = payload(index);
    bytes.extend_from_slice(&term.to_le_bytes());
    bytes
}

#[test]
fn concurrent_append_truncate_compact_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), options(4096)).unwrap();
    let view = log.view();
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for reader in 0..2u64 {
            let view = view.clone();
            let (done, reads) = (&done, &reads);
            scope.spawn(move || {
                let mut at = 1 + reader;
                // Bounded by the writer: it sets `done` after a fixed number of steps.
                while !done.load(Ordering::Acquire) {
                    let durable = view.durable_index();
                    if durable == 0 {
                        continue;
                    }
                    at = at % durable + 1;
                    match view.read(at, at + 40, 2000) {
                        Ok(records) => {
                            for (i, record) in records.iter().enumerate() {
                                assert_eq!(record.index, at + i as u64);
                                assert_eq!(record.payload, tagged(record.index, record.term));
                            }
                            reads.fetch_add(records.len() as u64, Ordering::Relaxed);
                        }
                        Err(Error::Compacted { first_retained, .. }) => {
                            assert!(at < first_retained);
                            at = first_retained;
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
            });
        }
        let mut term = 1;
        for step in 0..400u64 {
            for _ in 0..10 {
                let index = log.last_index() + 1;
                log.append(index, term, 1, &tagged(index, term)).unwrap();
            }
            log.sync().unwrap();
            if step % 7 == 6 {
                // A new leader overwrites the last few entries.
                term += 1;
                log.truncate_suffix(log.last_index() - 4).unwrap();
            }
            if step % 50 == 49 {
                log.compact_prefix(log.last_index() / 2).unwrap();
            }
        }
        done.store(true, Ordering::Release);
    });
    assert!(1 < view.first_index());
    assert!(0 < reads.load(Ordering::Relaxed));
}
