//! Crash tests: a cut at every byte of the last record, every bit flip of a middle record, and
//! one test per row of the recovery decision table.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use alpo_log::{Corruption, Error, Log, LogReader, Situation};
use common::{assert_holds, build, options, payload, record_offsets, segment_files};

const COUNT: u64 = 30;
const SEGMENT: u64 = 8192;

/// Writes a fresh directory whose only segment holds `bytes`.
fn with_segment(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("0000000000000001.alpolog"), bytes).unwrap();
    dir
}

fn original() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), SEGMENT, COUNT));
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    fs::read(&files[0]).unwrap()
}

#[test]
fn cut_at_every_byte_of_the_last_record() {
    let bytes = original();
    let offsets = record_offsets(&bytes);
    assert_eq!(offsets.len() as u64, COUNT);
    let start = offsets[offsets.len() - 1];
    let end = start + 25 + payload(COUNT).len();
    for cut in start..end {
        for zero_fill in [false, true] {
            let mut damaged = bytes[..cut].to_vec();
            if zero_fill {
                damaged.resize(bytes.len(), 0);
            }
            let dir = with_segment(&damaged);
            let mut log = Log::open(dir.path(), options(SEGMENT)).unwrap();
            assert_holds(&log, 1, COUNT - 1);
            let events = log.recovery_events();
            let expected = if cut == start {
                Situation::ZeroTail
            } else {
                Situation::TornTail
            };
            if zero_fill || cut != start {
                assert_eq!(events.last().unwrap().situation, expected, "cut {cut}");
            }
            // The torn bytes are gone: a new record written over them reads back after reopen.
            log.append(COUNT, 99, 1, b"rewritten").unwrap();
            log.sync().unwrap();
            drop(log);
            let mut log = Log::open(dir.path(), options(SEGMENT)).unwrap();
            assert_eq!(
                log.entry(COUNT).unwrap().unwrap().payload.as_ref(),
                b"rewritten"
            );
            log.truncate_suffix(COUNT).unwrap();
            assert_holds(&log, 1, COUNT - 1);
        }
    }
}

fn assert_refused_at(error: &Error, offset: u64) {
    match error {
        Error::Corruption {
            offset: found,
            reason,
            path,
        } => {
            assert_eq!(*found, offset, "{error}");
            assert!(path.ends_with("0000000000000001.alpolog"));
            assert!(
                matches!(
                    reason,
                    Corruption::RecordChecksum { .. } | Corruption::RecordLength { .. }
                ),
                "{error}"
            );
        }
        other => panic!("expected corruption, got {other}"),
    }
}

#[test]
fn every_bit_flip_of_a_middle_record_is_reported() {
    let bytes = original();
    let offsets = record_offsets(&bytes);
    let middle = offsets.len() / 2;
    let (start, end) = (offsets[middle], offsets[middle + 1]);
    for bit in start * 8..end * 8 {
        let mut damaged = bytes.clone();
        damaged[bit / 8] ^= 1 << (bit % 8);
        let dir = with_segment(&damaged);
        let error = Log::open(dir.path(), options(SEGMENT)).unwrap_err();
        assert_refused_at(&error, start as u64);
        let error = LogReader::open(dir.path()).unwrap_err();
        assert_refused_at(&error, start as u64);
        let (events, _) = LogReader::diagnose(dir.path());
        assert_eq!(
            events.last().unwrap().situation,
            Situation::DamageBeforeValidRecord
        );
    }
}

#[test]
fn bit_flips_in_a_sealed_segment_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), 4096, 150));
    let first = &segment_files(dir.path())[0];
    let bytes = fs::read(first).unwrap();
    let offsets = record_offsets(&bytes);
    // The last record of a sealed segment too: nothing after it in the file, yet refused.
    for record in [offsets.len() / 2, offsets.len() - 1] {
        let start = offsets[record];
        for bit in (start * 8..(start + 40) * 8).step_by(7) {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            fs::write(first, &damaged).unwrap();
            let error = Log::open(dir.path(), options(4096)).unwrap_err();
            assert_refused_at(&error, start as u64);
            let (events, _) = LogReader::diagnose(dir.path());
            assert_eq!(
                events.last().unwrap().situation,
                Situation::SealedSegmentDamage
            );
        }
    }
}

/// Builds the situation for each row and returns the row the scan reports last.
fn reach(row: Situation) -> Situation {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    match row {
        Situation::EmptyDirectory => {}
        Situation::CleanEnd => {
            drop(build(path, 4096, 20));
            let last = segment_files(path).pop().unwrap();
            let bytes = fs::read(&last).unwrap();
            let end = *record_offsets(&bytes).last().unwrap() + 25 + payload(20).len();
            fs::write(&last, &bytes[..end]).unwrap();
        }
        Situation::ZeroTail => drop(build(path, 4096, 20)),
        Situation::TornTail => cut_last(path, 10),
        Situation::WriteBackHole => write_back_hole(path),
        Situation::InterruptedCreation => {
            drop(build(path, 4096, 20));
            let next = segment_files(path).len() + 1;
            // A crash after create and before the header write reached the disk.
            let mut bytes = vec![0u8; 4096];
            bytes[..4].copy_from_slice(b"\x89ALP");
            fs::write(path.join(format!("{next:016}.alpolog")), bytes).unwrap();
        }
        Situation::DamageBeforeValidRecord => flip(path, 20),
        Situation::SealedSegmentDamage => flip(path, 200),
        Situation::HeaderMismatch => {
            drop(build(path, 4096, 200));
            let first = &segment_files(path)[0];
            let mut bytes = fs::read(first).unwrap();
            bytes[3] ^= 1;
            fs::write(first, bytes).unwrap();
        }
        Situation::MissingSegment => {
            drop(build(path, 4096, 300));
            fs::remove_file(&segment_files(path)[1]).unwrap();
        }
        Situation::IndexGap => index_gap(path),
        Situation::CompactedPrefix => {
            let mut log = build(path, 4096, 200);
            log.compact_prefix(100).unwrap();
        }
    }
    let (events, error) = LogReader::diagnose(path);
    let last = events.last().unwrap().situation;
    let found = if events.iter().any(|e| e.situation == row) {
        row
    } else {
        last
    };
    let (action, _) = found.action();
    assert_eq!(
        error.is_some(),
        action == alpo_log::Action::Refuse,
        "{row:?}: {error:?}"
    );
    if error.is_none() {
        // Log::open carries out the action and the log opens.
        let log = Log::open(path, options(4096)).unwrap();
        assert!(log.recovery_events().iter().any(|e| e.situation == found));
        if row == Situation::WriteBackHole {
            // Records wholly before the hole survive (1 at byte 48, then 75-byte records from
            // byte 79: 2..=6 end at 454); record 7 crosses into the hole; the rest is dropped.
            assert_eq!(log.last_index(), 6);
            assert_eq!(log.entry(1).unwrap().unwrap().payload.as_ref(), b"synced");
            assert_eq!(log.entry(6).unwrap().unwrap().payload.as_ref(), &[0xAB; 50]);
        } else {
            let first = log.first_index();
            assert_holds(&log, first, log.last_index());
        }
    }
    found
}

fn cut_last(path: &Path, cut_bytes: usize) {
    drop(build(path, 4096, 20));
    let last = segment_files(path).pop().unwrap();
    let bytes = fs::read(&last).unwrap();
    let end = *record_offsets(&bytes).last().unwrap() + 25 + payload(20).len();
    fs::write(&last, &bytes[..end - cut_bytes]).unwrap();
}

/// Flips a bit in the third record of the first segment of a log of `count` records.
fn flip(path: &Path, count: u64) {
    drop(build(path, 4096, count));
    let first = &segment_files(path)[0];
    let mut bytes = fs::read(first).unwrap();
    let offsets = record_offsets(&bytes);
    bytes[offsets[2] + 30] ^= 0x10;
    fs::write(first, bytes).unwrap();
}

/// An unsynced batch whose second sector reached the disk before its first.
fn write_back_hole(path: &Path) {
    let mut log = Log::open(path, options(8192)).unwrap();
    let mut index = 1;
    log.append(index, 1, 1, b"synced").unwrap();
    log.sync().unwrap();
    // A batch of records spanning more than three sectors.
    while index < 40 {
        index += 1;
        log.append(index, 1, 1, &[0xAB; 50]).unwrap();
    }
    log.sync().unwrap();
    drop(log);
    let file = &segment_files(path)[0];
    let mut bytes = fs::read(file).unwrap();
    // Zero sectors 1 and 2 as if their write-back never happened; sector 3 on is intact.
    bytes[512..1536].fill(0);
    fs::write(file, bytes).unwrap();
}

/// A valid record with the wrong index: rewrite record 5's index and fix its CRC.
fn index_gap(path: &Path) {
    rewrite_record(path, 9, 77);
}

/// Rewrites 8 bytes at `field` (9 = index, 17 = term) of record 5 and fixes its CRC.
fn rewrite_record(path: &Path, field: usize, value: u64) {
    drop(build(path, 4096, 20));
    let file = &segment_files(path)[0];
    let mut bytes = fs::read(file).unwrap();
    let at = record_offsets(&bytes)[4];
    let length = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    bytes[at + field..at + field + 8].copy_from_slice(&value.to_le_bytes());
    let crc = crc32fast_hash(&bytes[at + 4..at + 25 + length]);
    bytes[at..at + 4].copy_from_slice(&crc.to_le_bytes());
    fs::write(file, bytes).unwrap();
}

/// CRC-32 (IEEE), bit by bit, so the test does not share the crate's CRC code.
fn crc32fast_hash(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn every_row_of_the_decision_table_is_reached() {
    let mut reached = HashSet::new();
    for row in Situation::ALL {
        let found = reach(row);
        assert_eq!(found, row);
        reached.insert(found);
    }
    assert_eq!(reached.len(), Situation::ALL.len());
}

#[test]
fn a_segment_missing_between_others_is_named() {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), 4096, 300));
    let missing = segment_files(dir.path())[1].clone();
    fs::remove_file(&missing).unwrap();
    let error = Log::open(dir.path(), options(4096))
        .unwrap_err()
        .to_string();
    assert!(error.contains(&missing.display().to_string()), "{error}");
    assert!(error.contains("missing"), "{error}");
}

#[test]
fn a_valid_record_whose_term_goes_down_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Record 5 has term 1 in the test logs; records 1..=4 too, so give 5 term 0.
    rewrite_record(dir.path(), 17, 0);
    let error = Log::open(dir.path(), options(4096))
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("term 0 below the previous record's term 1"),
        "{error}"
    );
}

#[test]
fn an_empty_last_segment_file_is_an_interrupted_creation() {
    let dir = tempfile::tempdir().unwrap();
    drop(build(dir.path(), 4096, 20));
    let next = segment_files(dir.path()).len() + 1;
    let empty = dir.path().join(format!("{next:016}.alpolog"));
    fs::write(&empty, b"").unwrap();
    let mut log = Log::open(dir.path(), options(4096)).unwrap();
    assert_eq!(
        log.recovery_events()[0].situation,
        Situation::InterruptedCreation
    );
    assert_holds(&log, 1, 20);
    // The next roll-over creates the file again.
    for index in 21..=200 {
        log.append(index, common::term(index), 1, &payload(index))
            .unwrap();
    }
    log.sync().unwrap();
    assert!(empty.exists());
}

/// A crash between the two zeroing steps of `truncate_suffix` (after the zeros from the first
/// sector boundary past the cut are durable, before the rest of that sector is zeroed) opens
/// without refusing, holding a prefix of the old log.
#[test]
fn truncation_interrupted_between_its_zeroing_steps() {
    for from in 5..=25u64 {
        let dir = tempfile::tempdir().unwrap();
        drop(build(dir.path(), SEGMENT, COUNT));
        let file = &segment_files(dir.path())[0];
        let mut bytes = fs::read(file).unwrap();
        let cut = record_offsets(&bytes)[from as usize - 1];
        let boundary = cut.next_multiple_of(512);
        bytes[boundary..].fill(0);
        fs::write(file, &bytes).unwrap();
        let log = Log::open(dir.path(), options(SEGMENT)).unwrap();
        assert!(
            from - 1 <= log.last_index() && log.last_index() <= COUNT,
            "from {from}"
        );
        assert_holds(&log, 1, log.last_index());
    }
}
