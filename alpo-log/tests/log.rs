//! Behaviour of `Log` through its public API: append, sync, reads, roll-over, truncation,
//! compaction, reopen and the lock.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use alpo_log::{Error, Log, LogReader};
use common::{assert_holds, build, options, payload, segment_files, term};

#[test]
fn append_sync_read_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 1 << 20, 50);
    assert_eq!(log.durable_index(), 50);
    assert_eq!(log.last_term(), term(50));
    assert_holds(&log, 1, 50);
    let range: Vec<u64> = log.entries(10..=12).map(|r| r.unwrap().index).collect();
    assert_eq!(range, vec![10, 11, 12]);
    assert_eq!(log.entries(45..).count(), 6);
    // Appended but not synced: readable, not durable.
    log.append(51, term(51), 2, &payload(51)).unwrap();
    assert_eq!(log.durable_index(), 50);
    assert_eq!(log.entry(51).unwrap().unwrap().kind, 2);
    assert_eq!(log.sync().unwrap(), 51);
    drop(log);
    let log = Log::open(dir.path(), options(1 << 20)).unwrap();
    assert_holds(&log, 1, 51);
    assert_eq!(log.durable_index(), 51);
}

#[test]
fn append_checks_index_term_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 8192, 3);
    assert!(matches!(
        log.append(5, 9, 1, b"x"),
        Err(Error::IndexNotNext {
            expected: 4,
            found: 5
        })
    ));
    assert!(matches!(
        log.append(4, 0, 1, b"x"),
        Err(Error::TermDecreased { .. })
    ));
    let large = vec![7u8; 9000];
    assert!(matches!(
        log.append(4, 9, 1, &large),
        Err(Error::RecordTooLarge { .. })
    ));
    // Errors of the caller do not poison the log.
    log.append(4, 9, 1, b"x").unwrap();
    assert_eq!(log.sync().unwrap(), 4);
}

#[test]
fn roll_over_and_read_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 4096, 200);
    assert!(2 < segment_files(dir.path()).len());
    assert_holds(&log, 1, 200);
    drop(log);
    let log = Log::open(dir.path(), options(4096)).unwrap();
    assert_holds(&log, 1, 200);
}

#[test]
fn truncate_suffix_then_append_other_terms() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 200);
    log.truncate_suffix(120).unwrap();
    assert_holds(&log, 1, 119);
    assert_eq!(log.last_term(), term(119));
    for index in 120..=130 {
        log.append(index, 100, 1, b"new leader").unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let log = Log::open(dir.path(), options(4096)).unwrap();
    assert_eq!(log.last_index(), 130);
    assert_eq!(
        log.entry(125).unwrap().unwrap().payload.as_ref(),
        b"new leader"
    );
    assert_eq!(log.term_at(119), Some(term(119)));
}

#[test]
fn truncate_within_unsynced_buffer_and_everything() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 10);
    log.append(11, term(11), 1, &payload(11)).unwrap();
    log.truncate_suffix(11).unwrap();
    assert_holds(&log, 1, 10);
    log.truncate_suffix(1).unwrap();
    assert_eq!(log.last_index(), 0);
    assert_eq!(log.last_term(), 0);
    log.append(1, 5, 1, b"again").unwrap();
    log.sync().unwrap();
    drop(log);
    let log = Log::open(dir.path(), options(4096)).unwrap();
    assert_eq!(log.entry(1).unwrap().unwrap().term, 5);
}

#[test]
fn compact_prefix_drops_whole_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 200);
    let before = segment_files(dir.path()).len();
    log.compact_prefix(100).unwrap();
    let first = log.first_index();
    assert!(1 < first && first <= 100, "first index {first}");
    assert!(segment_files(dir.path()).len() < before);
    assert_holds(&log, first, 200);
    assert!(matches!(
        log.truncate_suffix(first - 1),
        Err(Error::TruncateBelowFirst { .. })
    ));
    // Compacting past the end keeps the active segment.
    log.compact_prefix(10_000).unwrap();
    assert_eq!(segment_files(dir.path()).len(), 1);
    assert_eq!(log.last_index(), 200);
    drop(log);
    let log = Log::open(dir.path(), options(4096)).unwrap();
    let first = log.first_index();
    assert_holds(&log, first, 200);
}

#[test]
fn lock_stops_a_second_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 4096, 1);
    assert!(matches!(
        Log::open(dir.path(), options(4096)),
        Err(Error::Locked { .. })
    ));
    drop(log);
    Log::open(dir.path(), options(4096)).unwrap();
}

#[test]
fn wrong_cluster_or_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), 4096, 3));
    let mut other = options(4096);
    other.cluster_id += 1;
    let error = Log::open(dir.path(), other).unwrap_err().to_string();
    assert!(
        error.contains("0000000000000001.alpolog at byte 16"),
        "{error}"
    );
    assert!(error.contains("cluster id"), "{error}");
    let mut other = options(4096);
    other.node_id += 1;
    let error = Log::open(dir.path(), other).unwrap_err().to_string();
    assert!(error.contains("at byte 24: node id"), "{error}");
}

#[test]
fn payloads_are_zero_copy_from_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let log = build(dir.path(), 4096, 5);
    let first = log.entry(3).unwrap().unwrap().payload;
    let again = log.entry(3).unwrap().unwrap().payload;
    // Two reads of a written record point into the same mapped memory.
    assert_eq!(first.as_ptr(), again.as_ptr());
}

#[test]
fn reader_summarises_without_changing() {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), 4096, 100));
    let reader = LogReader::open(dir.path()).unwrap();
    let summary = reader.summary();
    assert_eq!(summary.record_count, 100);
    assert_eq!((summary.first_index, summary.last_index), (1, 100));
    assert_eq!(summary.cluster_id, Some(common::CLUSTER));
    assert_eq!(reader.entries(..).count(), 100);
    assert_eq!(reader.pending_repairs().count(), 0);
}

#[test]
fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Log::open(dir.path(), options(100)),
        Err(Error::InvalidOptions { .. })
    ));
}

#[test]
fn a_failed_mutation_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 5);
    // Occupy the next segment's name, so the roll-over cannot create it.
    std::fs::create_dir(dir.path().join("0000000000000002.alpolog")).unwrap();
    let (error, index) = append_until_error(&mut log, 6);
    assert!(
        error.to_string().contains("0000000000000002.alpolog"),
        "{error}"
    );
    assert!(matches!(log.sync(), Err(Error::Poisoned)));
    assert!(matches!(
        log.append(index, 9, 1, b"x"),
        Err(Error::Poisoned)
    ));
    assert!(Error::Poisoned.is_fatal());
    // Records before the failure stayed readable and durable.
    assert_eq!(
        log.entry(5).unwrap().unwrap().payload.as_ref(),
        payload(5).as_slice()
    );
}

#[test]
fn roll_overs_use_a_spare_prepared_ahead_and_a_leftover_spare_is_removed_at_open() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let spare = dir.path().join("next-segment.alpolog-spare");
    // A log that has not filled a quarter of its segment prepares no spare.
    drop(build(dir.path(), 4096, 1));
    assert!(!spare.exists());
    let mut log = Log::open(dir.path(), options(4096)).unwrap();
    let mut index = 1;
    let append = |log: &mut Log, index: &mut u64| {
        *index += 1;
        log.append(*index, term(*index), 1, &payload(*index))
            .unwrap();
        log.sync().unwrap();
    };
    // Past a quarter of the segment, the spare is prepared in the background, at full length.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let spare_inode = loop {
        match std::fs::metadata(&spare) {
            Ok(metadata) if metadata.len() == 4096 => break metadata.ino(),
            _ => assert!(std::time::Instant::now() < deadline, "no spare prepared"),
        }
        if segment_files(dir.path()).len() == 1 && index < 20 {
            append(&mut log, &mut index);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    // The roll-over turns that very file into the next segment.
    while segment_files(dir.path()).len() < 2 {
        append(&mut log, &mut index);
    }
    let newest = segment_files(dir.path()).pop().unwrap();
    assert_eq!(std::fs::metadata(&newest).unwrap().ino(), spare_inode);
    // The next spare starts right after the roll-over; closing the log stops it after its
    // current step, and it stays on disk until the next open.
    for _ in 0..20 {
        append(&mut log, &mut index);
    }
    drop(log);
    assert!(spare.exists());
    // A spare cut short (a crash, or a stopped preparation) is removed at open, never read.
    std::fs::write(&spare, b"half-written spare").unwrap();
    let log = Log::open(dir.path(), options(4096)).unwrap();
    assert_holds(&log, 1, index);
    drop(log);
    // What is there now is the new spare this open started (the segment is past a quarter).
    let spare_bytes = std::fs::read(&spare).unwrap_or_default();
    assert!(spare_bytes.iter().all(|byte| *byte == 0));
}

#[test]
fn a_roll_over_never_replaces_a_file_in_the_next_segments_place() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 5);
    let occupied = dir.path().join("0000000000000002.alpolog");
    std::fs::write(&occupied, b"not ours").unwrap();
    let (error, _) = append_until_error(&mut log, 6);
    assert!(
        error.to_string().contains("0000000000000002.alpolog"),
        "{error}"
    );
    assert_eq!(std::fs::read(&occupied).unwrap(), b"not ours");
}

/// Appends records from `index` on until an append fails (a roll-over, in these tests); returns
/// the error and the index that failed.
fn append_until_error(log: &mut Log, mut index: u64) -> (Error, u64) {
    loop {
        match log.append(index, term(index), 1, &payload(index)) {
            Ok(()) => index += 1,
            Err(error) => return (error, index),
        }
        assert!(index < 1000, "the segment never filled");
    }
}

/// A crash in the middle of `compact_prefix` leaves the newest segments (removals go oldest
/// first, each made durable before the next): every such suffix opens, reports
/// `CompactedPrefix`, reads from its first index and takes appends.
#[test]
fn compaction_interrupted_after_each_removal_opens() {
    let source = tempfile::tempdir().unwrap();
    drop(build(source.path(), 4096, 200));
    let files = segment_files(source.path());
    assert!(3 < files.len());
    for removed in 0..files.len() {
        let dir = tempfile::tempdir().unwrap();
        for file in &files[removed..] {
            std::fs::copy(file, dir.path().join(file.file_name().unwrap())).unwrap();
        }
        let mut log = Log::open(dir.path(), options(4096)).unwrap();
        let first = log.first_index();
        assert_eq!(first == 1, removed == 0, "removed {removed}");
        let compacted = log
            .recovery_events()
            .iter()
            .any(|e| e.situation == alpo_log::Situation::CompactedPrefix);
        assert_eq!(compacted, 0 < removed, "removed {removed}");
        assert_holds(&log, first, 200);
        assert!(log.entry(first - 1).unwrap().is_none());
        log.append(201, term(201), 1, &payload(201)).unwrap();
        log.sync().unwrap();
    }
}

/// Compaction with a snapshot at `L` and `retain_entries` behind it (protocol S4): whole
/// segments below the bound go, the retained entries stay readable, and a reopen agrees.
#[test]
fn compaction_to_a_snapshot_bound_keeps_the_retained_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 400);
    let bound = alpo_log::compaction_bound(300, 50);
    assert_eq!(bound, 251);
    log.compact_prefix(bound).unwrap();
    let first = log.first_index();
    assert!(1 < first && first <= bound, "first index {first}");
    assert_holds(&log, first, 400);
    // Entries above the snapshot, which followers and the state machine still need, stay.
    assert_eq!(log.entry(301).unwrap().unwrap().index, 301);
    // Compacting again to the same bound removes nothing more.
    let files = segment_files(dir.path()).len();
    log.compact_prefix(bound).unwrap();
    assert_eq!(segment_files(dir.path()).len(), files);
    drop(log);
    let log = Log::open(dir.path(), options(4096)).unwrap();
    assert_eq!(log.first_index(), first);
    assert_holds(&log, first, 400);
}

/// After an install whose last entry the log does not hold, the log starts over after the
/// snapshot (protocol S7 step 1): appends continue at `L + 1`, a reopen agrees, and a crash
/// in the middle leaves a prefix of the old log or an empty directory, both of which open.
#[test]
fn reset_starts_an_empty_log_after_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 200);
    let view = log.view();
    log.append(201, term(201), 1, &payload(201)).unwrap();
    log.reset(1000).unwrap();
    assert_eq!(
        (log.first_index(), log.last_index(), log.durable_index()),
        (1000, 999, 999)
    );
    assert_eq!(log.last_term(), 0);
    assert!(log.entry(5).unwrap().is_none());
    assert!(matches!(
        view.entry(5),
        Err(Error::Compacted {
            first_retained: 1000,
            ..
        })
    ));
    assert_eq!(segment_files(dir.path()).len(), 1);
    log.append(1000, 9, 1, b"after the snapshot").unwrap();
    log.sync().unwrap();
    assert_eq!(view.entry(1000).unwrap().unwrap().term, 9);
    drop(log);
    let log = Log::open(dir.path(), options(4096)).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (1000, 1000));
    assert!(
        log.recovery_events()
            .iter()
            .any(|e| e.situation == alpo_log::Situation::CompactedPrefix)
    );
    // Crashes during step 1: a prefix of the old log, or nothing.
    let source = tempfile::tempdir().unwrap();
    drop(build(source.path(), 4096, 200));
    let files = segment_files(source.path());
    for kept in 0..files.len() {
        let crashed = tempfile::tempdir().unwrap();
        for file in &files[..kept] {
            std::fs::copy(file, crashed.path().join(file.file_name().unwrap())).unwrap();
        }
        let mut log = Log::open(crashed.path(), options(4096)).unwrap();
        assert_eq!(log.first_index(), 1);
        log.reset(1000).unwrap();
        assert_eq!(log.first_index(), 1000);
    }
}

/// The runs `term_runs` must give: `(first index, term)` of `first..=last` by `term(i)`.
fn runs_of(first: u64, last: u64) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for index in first..=last {
        if runs.last().is_none_or(|(_, t)| *t != term(index)) {
            runs.push((index, term(index)));
        }
    }
    runs
}

#[test]
fn term_runs_follow_appends_truncation_compaction_reopen_and_reset() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = build(dir.path(), 4096, 300);
    assert_eq!(log.term_runs(), runs_of(1, 300).as_slice());
    log.truncate_suffix(251).unwrap();
    assert_eq!(log.term_runs(), runs_of(1, 250).as_slice());
    log.compact_prefix(120).unwrap();
    let first = log.first_index();
    assert!(first > 1, "whole segments were dropped");
    assert_eq!(log.term_runs(), runs_of(first, 250).as_slice());
    log.sync().unwrap();
    drop(log);
    // Reopened: the same runs, from the recovery scan.
    let mut log = Log::open(dir.path(), options(4096)).unwrap();
    assert_eq!(log.term_runs(), runs_of(first, 250).as_slice());
    log.append(251, term(250) + 5, 1, b"x").unwrap();
    assert_eq!(log.term_runs().last(), Some(&(251, term(250) + 5)));
    log.reset(400).unwrap();
    assert!(log.term_runs().is_empty());
}
