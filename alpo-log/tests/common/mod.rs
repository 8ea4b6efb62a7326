//! Helpers shared by the crate's behaviour tests.

// Test helpers panic on failure like the tests that call them.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use alpo_log::{Log, LogOptions, Preallocation};

/// Cluster and node ids every test log uses.
pub(crate) const CLUSTER: u64 = 0xA1B0;
/// See [`CLUSTER`].
pub(crate) const NODE: u64 = 3;

/// Options with small segments, so tests roll over and compact.
pub(crate) fn options(segment_bytes_max: u64) -> LogOptions {
    LogOptions {
        segment_bytes_max,
        preallocation: Preallocation::Zeroed,
        ..LogOptions::new(CLUSTER, NODE)
    }
}

/// A deterministic payload for `index`, of varying length and never all zero.
pub(crate) fn payload(index: u64) -> Vec<u8> {
    let length = 10 + (index * 37 % 60) as usize;
    (0..length)
        .map(|i| (index as u8).wrapping_mul(31).wrapping_add(i as u8) | 1)
        .collect()
}

/// Term of `index` in the test logs: rises every 10 records.
pub(crate) fn term(index: u64) -> u64 {
    1 + index / 10
}

/// Writes records `1..=count` and syncs; returns the log.
pub(crate) fn build(dir: &Path, segment_bytes_max: u64, count: u64) -> Log {
    let mut log = Log::open(dir, options(segment_bytes_max)).unwrap();
    for index in 1..=count {
        log.append(index, term(index), 1, &payload(index)).unwrap();
    }
    assert_eq!(log.sync().unwrap(), count);
    log
}

/// The segment files of `dir`, in order.
pub(crate) fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "alpolog"))
        .collect();
    files.sort();
    files
}

/// Byte offsets of the records of a segment file, found by walking the lengths.
pub(crate) fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 48;
    while at + 25 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if bytes[at..at + 25].iter().all(|b| *b == 0) {
            break;
        }
        offsets.push(at);
        at += 25 + length;
    }
    offsets
}

/// Checks that `log` holds exactly records `first..=last` as written by [`build`].
pub(crate) fn assert_holds(log: &Log, first: u64, last: u64) {
    assert_eq!(log.first_index(), first);
    assert_eq!(log.last_index(), last);
    for index in first..=last {
        let record = log.entry(index).unwrap().unwrap();
        assert_eq!(record.index, index);
        assert_eq!(record.term, term(index));
        assert_eq!(
            record.payload.as_ref(),
            payload(index).as_slice(),
            "index {index}"
        );
        assert_eq!(log.term_at(index), Some(term(index)));
    }
    assert!(log.entry(last + 1).unwrap().is_none());
}
