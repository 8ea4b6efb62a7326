//! The scrubber (issue 13): a pass over a clean log finds nothing and reads every record; a
//! flipped bit in a durable record, in a sealed segment or the active one, is found with its
//! file, offset and index while the log stays open; steps stay within their byte budget.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileExt;

use alpo_log::{Error, Log, LogOptions, LogView};

fn log_with(dir: &std::path::Path, count: u64) -> Log {
    let mut options = LogOptions::new(7, 1);
    options.segment_bytes_max = 4096;
    let mut log = Log::open(dir, options).unwrap();
    for index in 1..=count {
        log.append(index, 1, 1, format!("value {index:04}").as_bytes())
            .unwrap();
    }
    log.sync().unwrap();
    log
}

/// One whole pass from the first index, in steps of `max_bytes`.
fn pass(view: &LogView, max_bytes: u64) -> (u64, u64, Vec<alpo_log::ScrubFinding>) {
    let (mut next, mut records, mut steps, mut findings) = (view.first_index(), 0, 0, Vec::new());
    loop {
        let step = view.scrub_step(next, max_bytes);
        records += step.records;
        steps += 1;
        findings.extend(step.findings);
        next = step.next;
        if step.pass_complete {
            return (records, steps, findings);
        }
        assert!(steps < 10_000, "a pass must end");
    }
}

#[test]
fn a_clean_log_scrubs_clean_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 500);
    let view = log.view();
    let (records, steps, findings) = pass(&view, 256);
    assert_eq!(records, 500);
    assert!(findings.is_empty(), "{findings:?}");
    // 35-byte records: at most 8 per 256-byte step, so more than 500 / 8 steps.
    assert!(steps > 60, "{steps} steps");
    let step = view.scrub_step(1, 256);
    assert!(step.bytes <= 256 + 64, "{}", step.bytes);
}

#[test]
fn a_flipped_bit_is_found_with_file_offset_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 500);
    let view = log.view();
    let mut segments: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "alpolog"))
        .collect();
    segments.sort();
    assert!(segments.len() > 2);
    // The third record of the first (sealed) segment and of the last (active) one.
    for segment in [&segments[0], &segments[segments.len() - 1]] {
        let offset = 48 + 2 * 35 + 30;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(segment)
            .unwrap();
        let mut byte = [0];
        file.read_exact_at(&mut byte, offset).unwrap();
        file.write_all_at(&[byte[0] ^ 0x04], offset).unwrap();
    }
    let (_, _, findings) = pass(&view, 1024);
    assert_eq!(findings.len(), 2, "{findings:?}");
    for (finding, segment) in findings
        .iter()
        .zip([&segments[0], &segments[segments.len() - 1]])
    {
        let Error::Corruption { path, offset, .. } = &finding.error else {
            panic!("{finding:?}")
        };
        assert_eq!((path, *offset), (segment, 48 + 2 * 35));
    }
    assert_eq!(findings[0].index, 3);
    let text = format!("{}", findings[1].error);
    assert!(text.contains("alpolog"), "{text}");
}

#[test]
fn an_empty_log_completes_a_pass_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(dir.path(), 0);
    let step = log.view().scrub_step(1, 1024);
    assert!(step.pass_complete);
    assert_eq!((step.records, step.bytes), (0, 0));
}
