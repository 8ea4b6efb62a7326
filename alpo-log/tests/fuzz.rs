//! Fuzz-style tests: arbitrary bytes as a segment file (raw, behind a valid header, or a valid
//! segment with random damage) never make `Log::open` or `LogReader` panic: always a log or an
//! error, and a log that opens reads back only records whose checksums hold.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use alpo_log::{Log, LogReader};
use common::{CLUSTER, NODE, build, options, segment_files};
use proptest::prelude::*;

fn header(first_index: u64) -> Vec<u8> {
    let mut out = b"\x89ALPOLOG\r\n\x1a\n".to_vec();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&CLUSTER.to_le_bytes());
    out.extend_from_slice(&NODE.to_le_bytes());
    out.extend_from_slice(&first_index.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    let crc = crc(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn crc(bytes: &[u8]) -> u32 {
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

/// Opens `bytes` as the only segment with both APIs; neither may panic.
fn open_both(bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("0000000000000001.alpolog"), bytes).unwrap();
    read_everything(dir.path());
}

fn read_everything(dir: &Path) {
    if let Ok(reader) = LogReader::open(dir) {
        for record in reader.entries(..) {
            let _ = record;
        }
        let _ = reader.summary();
    }
    if let Ok(log) = Log::open(dir, options(4096)) {
        for record in log.entries(..) {
            record.unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        open_both(&bytes);
    }

    #[test]
    fn arbitrary_records_behind_a_valid_header(
        first in 0u64..3,
        body in proptest::collection::vec(any::<u8>(), 0..700),
    ) {
        let mut bytes = header(first);
        bytes.extend_from_slice(&body);
        open_both(&bytes);
    }

    #[test]
    fn damaged_valid_segment(
        damage in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        drop(build(dir.path(), 4096, 12));
        let file = &segment_files(dir.path())[0];
        let mut bytes = fs::read(file).unwrap();
        bytes.truncate(700);
        for (at, value) in &damage {
            let at = at.index(bytes.len());
            bytes[at] = *value;
        }
        let cut = cut.index(bytes.len() + 1);
        bytes.truncate(cut);
        fs::write(file, &bytes).unwrap();
        read_everything(dir.path());
    }
}
