//! Property test: random sequences of append, sync, truncate, compact, reset, reopen and crash
//! against an in-memory model; every read (through the `Log` and through a `LogView`) is
//! compared with the model after every step.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use alpo_log::Log;
use common::options;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append `count` records, raising the term by `term_step`.
    Append {
        count: u8,
        size: u16,
        term_step: u8,
    },
    Sync,
    /// Truncate from `last_index - back` (clamped to the log).
    Truncate {
        back: u8,
    },
    /// Compact below `first_index + forward`.
    Compact {
        forward: u16,
    },
    /// Start over at `last_index + 1 + forward` (after an installed snapshot).
    Reset {
        forward: u16,
    },
    /// Close cleanly and reopen.
    Reopen,
    /// Drop without a sync (a process crash: written bytes survive in the page cache, buffered
    /// ones are lost) and reopen.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..8, 0u16..400, 0u8..2).prop_map(|(count, size, term_step)| Op::Append {
            count,
            size,
            term_step
        }),
        3 => Just(Op::Sync),
        1 => (0u8..12).prop_map(|back| Op::Truncate { back }),
        1 => (0u16..60).prop_map(|forward| Op::Compact { forward }),
        1 => (0u16..300).prop_map(|forward| Op::Reset { forward }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// The model: records from `first` on, and how far they are durable.
struct Model {
    first: u64,
    records: Vec<(u64, u8, Vec<u8>)>,
    durable: u64,
}

impl Model {
    fn last(&self) -> u64 {
        self.first + self.records.len() as u64 - 1
    }

    fn last_term(&self) -> u64 {
        self.records.last().map_or(0, |r| r.0)
    }
}

const SEGMENT: u64 = 4096;

fn payload(index: u64, size: u16) -> Vec<u8> {
    (0..size).map(|i| (index as u8) ^ (i as u8)).collect()
}

fn apply(log: &mut Log, model: &mut Model, op: &Op, dir: &Path) {
    match *op {
        Op::Append {
            count,
            size,
            term_step,
        } => {
            let term = model.last_term().max(1) + u64::from(term_step);
            for _ in 0..count {
                let index = model.last() + 1;
                let kind = (index % 3) as u8;
                let bytes = payload(index, size);
                log.append(index, term, kind, &bytes).unwrap();
                model.records.push((term, kind, bytes));
            }
        }
        Op::Sync => {
            model.durable = log.sync().unwrap();
            assert_eq!(model.durable, model.last());
        }
        Op::Truncate { back } => {
            let from = model
                .last()
                .saturating_sub(u64::from(back))
                .max(model.first);
            log.truncate_suffix(from).unwrap();
            model.records.truncate((from - model.first) as usize);
            model.durable = model.durable.min(model.last());
        }
        Op::Compact { forward } => {
            log.compact_prefix(model.first + u64::from(forward))
                .unwrap();
            let first = log.first_index();
            assert!(model.first <= first);
            assert!(first <= (model.first + u64::from(forward)).max(model.first));
            model.records.drain(..(first - model.first) as usize);
            model.first = first;
        }
        Op::Reset { forward } => {
            let first = model.last() + 1 + u64::from(forward);
            log.reset(first).unwrap();
            model.first = first;
            model.records.clear();
            model.durable = first - 1;
        }
        Op::Reopen => {
            model.durable = log.sync().unwrap();
            reopen(log, dir);
        }
        Op::Crash => {
            reopen(log, dir);
            // Durable records survive; unsynced ones may or may not.
            let last = log.last_index();
            assert!(model.durable <= last, "lost durable records");
            assert!(last <= model.last());
            model.records.truncate((last + 1 - model.first) as usize);
            model.durable = last;
        }
    }
}

fn reopen(log: &mut Log, dir: &Path) {
    // Replace the log in place: the old one (and its lock) is dropped first.
    let placeholder = tempfile::tempdir().unwrap();
    let old = std::mem::replace(
        log,
        Log::open(placeholder.path(), options(SEGMENT)).unwrap(),
    );
    drop(old);
    *log = Log::open(dir, options(SEGMENT)).unwrap();
}

fn check(log: &Log, model: &mut Model) {
    assert_eq!(log.first_index(), model.first);
    assert_eq!(log.last_index(), model.last());
    assert_eq!(log.last_term(), model.last_term());
    // A roll-over syncs the sealed segment, so durability may run ahead of `sync` calls.
    assert!(model.durable <= log.durable_index());
    assert!(log.durable_index() <= model.last());
    model.durable = log.durable_index();
    for (offset, (term, kind, bytes)) in model.records.iter().enumerate() {
        let index = model.first + offset as u64;
        let record = log.entry(index).unwrap().unwrap();
        assert_eq!((record.term, record.kind), (*term, *kind), "index {index}");
        assert_eq!(record.payload.as_ref(), bytes.as_slice(), "index {index}");
        assert_eq!(log.term_at(index), Some(*term));
    }
    assert!(log.entry(model.last() + 1).unwrap().is_none());
    assert_eq!(log.entries(..).count(), model.records.len());
    // A view serves exactly the durable records.
    let view = log.view();
    assert_eq!(view.first_index(), model.first);
    assert_eq!(view.durable_index(), model.durable);
    let durable = view.read(model.first, u64::MAX, u64::MAX).unwrap();
    assert_eq!(durable.len() as u64, model.durable + 1 - model.first);
    for (record, (term, _, bytes)) in durable.iter().zip(&model.records) {
        assert_eq!(record.term, *term);
        assert_eq!(record.payload.as_ref(), bytes.as_slice());
    }
    if 1 < model.first {
        let below = view.entry(model.first - 1);
        assert!(matches!(below, Err(alpo_log::Error::Compacted { .. })));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), options(SEGMENT)).unwrap();
        let mut model = Model { first: 1, records: Vec::new(), durable: 0 };
        for op in &ops {
            apply(&mut log, &mut model, op, dir.path());
            check(&log, &mut model);
        }
    }
}
