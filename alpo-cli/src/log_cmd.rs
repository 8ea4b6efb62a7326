//! `alpo log dump|verify`: offline inspection of a log directory and its snapshot files.
//!
//! Both commands read through `alpo_log::LogReader` and `alpo_log::scan_snapshots`, which run
//! the same scans and recovery decision tables as `Log::open` and `SnapshotStore::open` but
//! never change the directory and take no lock, so they must be run on a log no node is using.
//! Output goes to a writer passed in, so tests can read it. Exit codes: 0 clean (or
//! recoverable: a torn tail `Log::open` would truncate, or a snapshot file left by a crash, is
//! printed as a note), 1 damage, with file, byte offset and reason: a log `Log::open` would
//! refuse, a snapshot file that does not verify, or a compacted log that no valid snapshot
//! covers. Either command also takes one snapshot file instead of a directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alpo_log::{
    LogReader, Record, SnapshotAction, SnapshotMeta, SnapshotSituation, Summary, scan_snapshots,
    verify_snapshot_file,
};
use clap::{Args, Subcommand};

use crate::json::Value;

/// How many payload bytes `dump` shows per record.
const DUMP_PAYLOAD_BYTES_MAX: usize = 16;

/// Arguments of `alpo log`.
#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    #[command(subcommand)]
    command: LogCommand,
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Print snapshot headers, then records: index, term, kind, size and the first payload
    /// bytes.
    Dump(DumpArgs),
    /// Check every record and every snapshot file of a log directory (or one snapshot file);
    /// exit 1 naming the first damage.
    Verify {
        /// The log directory, or one snapshot file (`snap-<L>-<T>.alposnap`).
        dir: PathBuf,
        /// Print one JSON object per line (each with a `verdict`: `snapshot`, `note`, `torn`,
        /// `damaged` or `clean`) instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `alpo log dump`.
#[derive(Debug, Args)]
struct DumpArgs {
    /// The log directory, or one snapshot file.
    dir: PathBuf,
    /// First index to print (default: the log's first).
    #[arg(long)]
    from: Option<u64>,
    /// Last index to print, inclusive (default: the log's last).
    #[arg(long)]
    to: Option<u64>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `alpo log …`.
pub(crate) fn run(args: LogArgs) -> anyhow::Result<ExitCode> {
    let mut out = crate::output::stdout();
    match args.command {
        LogCommand::Dump(dump_args) => dump(&mut out, &dump_args),
        LogCommand::Verify { dir, json } => verify(&mut out, &dir, json),
    }
}

/// `alpo log dump`: prints the records in range; an error names the first damage.
fn dump(out: &mut impl Write, args: &DumpArgs) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && to < from
    {
        anyhow::bail!("--to {to} is below --from {from}");
    }
    if args.dir.is_file() {
        let meta = verify_snapshot_file(&args.dir)?;
        writeln!(out, "{}", snapshot_line(&meta, &args.dir, args.json))?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.from.is_none() && args.to.is_none() {
        for (path, meta) in scan_snapshots(&args.dir, None)?.snapshots {
            writeln!(out, "{}", snapshot_line(&meta, &path, args.json))?;
        }
    }
    let reader = LogReader::open(&args.dir)?;
    let from = args.from.unwrap_or(reader.first_index());
    let to = args.to.unwrap_or(reader.last_index());
    for record in reader.entries(from..=to) {
        let line = if args.json {
            json_line(&record?)
        } else {
            text_line(&record?)
        };
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `alpo log verify`: a summary and exit 0 when clean, the first damage and exit 1 otherwise.
fn verify(out: &mut impl Write, dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    if dir.is_file() {
        return verify_snapshot(out, dir, json);
    }
    let Some(covered_to) = verify_snapshots(out, dir, json)? else {
        return Ok(ExitCode::from(1));
    };
    let reader = match LogReader::open(dir) {
        Ok(reader) => reader,
        Err(error) => {
            write_damage(out, error, json)?;
            return Ok(ExitCode::from(1));
        }
    };
    // The scan checked every CRC already; read every record once more as the node would.
    for record in reader.entries(..) {
        if let Err(error) = record {
            write_damage(out, error, json)?;
            return Ok(ExitCode::from(1));
        }
    }
    for event in reader.pending_repairs() {
        writeln!(out, "{}", torn_line(event, json))?;
    }
    let summary = reader.summary();
    if covered_to.saturating_add(1) < summary.first_index {
        writeln!(out, "{}", uncovered_line(dir, &summary, covered_to, json))?;
        return Ok(ExitCode::from(1));
    }
    writeln!(out, "{}", clean_line(&summary, json))?;
    Ok(ExitCode::SUCCESS)
}

/// A torn tail (or other repair `Log::open` would make) as a note.
fn torn_line(event: &alpo_log::RecoveryEvent, json: bool) -> String {
    let (action, why) = event.situation.action();
    if json {
        return Value::Object(vec![
            ("verdict", Value::String("torn".into())),
            ("file", Value::String(event.path.display().to_string())),
            ("offset", Value::Number(event.offset)),
            ("situation", Value::String(format!("{:?}", event.situation))),
            ("action", Value::String(format!("{action:?}"))),
            ("why", Value::String(why.to_string())),
        ])
        .render();
    }
    format!(
        "note: {} at byte {}: {:?}; opening the log would {:?} ({why})",
        event.path.display(),
        event.offset,
        event.situation,
        action
    )
}

/// A compacted log that no valid snapshot covers: damage.
fn uncovered_line(dir: &Path, summary: &Summary, covered_to: u64, json: bool) -> String {
    let text = format!(
        "the log starts at index {} but no valid snapshot covers index {} \
         (newest valid snapshot ends at index {covered_to})",
        summary.first_index,
        summary.first_index - 1
    );
    if json {
        return Value::Object(vec![
            ("verdict", Value::String("damaged".into())),
            ("file", Value::String(dir.display().to_string())),
            ("offset", Value::Null),
            ("error", Value::String(text)),
        ])
        .render();
    }
    format!("damaged: {text}")
}

/// The summary of a clean log.
fn clean_line(summary: &Summary, json: bool) -> String {
    if json {
        let known = |value: Option<u64>| value.map_or(Value::Null, Value::Number);
        return Value::Object(vec![
            ("verdict", Value::String("clean".into())),
            ("segments", Value::Number(summary.segment_count)),
            ("records", Value::Number(summary.record_count)),
            ("first_index", Value::Number(summary.first_index)),
            ("last_index", Value::Number(summary.last_index)),
            ("bytes", Value::Number(summary.record_bytes)),
            ("cluster", known(summary.cluster_id)),
            ("node", known(summary.node_id)),
        ])
        .render();
    }
    format!(
        "clean: {} segments, {} records, index {}..={}, {} bytes, cluster {}, node {}",
        summary.segment_count,
        summary.record_count,
        summary.first_index,
        summary.last_index,
        summary.record_bytes,
        optional(summary.cluster_id),
        optional(summary.node_id),
    )
}

/// Prints the first damage `verify` found, with its causes (an I/O error's operating-system
/// error is the `source()` of alpo-log's error, not part of its message); as JSON, with the
/// file and byte offset as fields when the error names them.
fn write_damage(out: &mut impl Write, error: alpo_log::Error, json: bool) -> std::io::Result<()> {
    if !json {
        return writeln!(out, "damaged: {:#}", anyhow::Error::new(error));
    }
    let (file, offset) = match &error {
        alpo_log::Error::Corruption { path, offset, .. } => (
            Value::String(path.display().to_string()),
            Value::Number(*offset),
        ),
        alpo_log::Error::Io { path, .. } => {
            (Value::String(path.display().to_string()), Value::Null)
        }
        _ => (Value::Null, Value::Null),
    };
    let line = Value::Object(vec![
        ("verdict", Value::String("damaged".into())),
        ("file", file),
        ("offset", offset),
        (
            "error",
            Value::String(format!("{:#}", anyhow::Error::new(error))),
        ),
    ]);
    writeln!(out, "{}", line.render())
}

/// Verifies every snapshot file of `dir` in full, printing one line each and a note per file a
/// crash left; returns the newest valid snapshot's last index (0 if none), or `None` after
/// printing the first damage.
fn verify_snapshots(out: &mut impl Write, dir: &Path, json: bool) -> anyhow::Result<Option<u64>> {
    let scan = match scan_snapshots(dir, None) {
        Ok(scan) => scan,
        Err(error) => {
            write_damage(out, error, json)?;
            return Ok(None);
        }
    };
    for event in &scan.events {
        let (action, why) = event.situation.action();
        if action == SnapshotAction::RemoveFile {
            let line = if json {
                Value::Object(vec![
                    ("verdict", Value::String("note".into())),
                    ("file", Value::String(event.path.display().to_string())),
                    ("situation", Value::String(format!("{:?}", event.situation))),
                    ("action", Value::String(format!("{action:?}"))),
                    ("why", Value::String(why.to_string())),
                ])
                .render()
            } else {
                format!(
                    "note: {}: {:?}; opening the snapshots would {action:?} ({why})",
                    event.path.display(),
                    event.situation
                )
            };
            writeln!(out, "{line}")?;
        }
    }
    for event in &scan.events {
        if matches!(
            event.situation,
            SnapshotSituation::Newest | SnapshotSituation::Older | SnapshotSituation::Damaged
        ) {
            match verify_snapshot_file(&event.path) {
                Ok(meta) => writeln!(out, "{}", snapshot_line(&meta, &event.path, json))?,
                Err(error) => {
                    write_damage(out, error, json)?;
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(
        scan.snapshots.last().map_or(0, |(_, meta)| meta.last_index),
    ))
}

/// `alpo log verify FILE`: one snapshot file.
fn verify_snapshot(out: &mut impl Write, path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    match verify_snapshot_file(path) {
        Ok(meta) => {
            writeln!(out, "{}", snapshot_line(&meta, path, json))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            write_damage(out, error, json)?;
            Ok(ExitCode::from(1))
        }
    }
}

/// One snapshot's header as text or a JSON object on one line.
fn snapshot_line(meta: &SnapshotMeta, path: &Path, json: bool) -> String {
    if json {
        return Value::Object(vec![
            ("snapshot", Value::String(path.display().to_string())),
            ("last_index", Value::Number(meta.last_index)),
            ("last_term", Value::Number(meta.last_term)),
            ("image_bytes", Value::Number(meta.image_bytes)),
            ("chunk_bytes", Value::Number(u64::from(meta.chunk_bytes))),
            (
                "image_checksum",
                Value::String(format!("{:016x}", meta.image_checksum)),
            ),
            ("cluster", Value::Number(meta.cluster_id)),
            ("node", Value::Number(meta.node_id)),
            ("membership", Value::String(hex(&meta.membership))),
        ])
        .render();
    }
    format!(
        "snapshot {}: index {} term {}, image {} bytes in chunks of {}, checksum {:016x}, \
         cluster {}, node {}, membership {} bytes",
        path.display(),
        meta.last_index,
        meta.last_term,
        meta.image_bytes,
        meta.chunk_bytes,
        meta.image_checksum,
        meta.cluster_id,
        meta.node_id,
        meta.membership.len()
    )
}

fn optional(value: Option<u64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// One record as text: `index 7 term 3 kind 1 size 5 bytes 68656c6c6f "hello"`.
fn text_line(record: &Record) -> String {
    let shown = &record.payload[..record.payload.len().min(DUMP_PAYLOAD_BYTES_MAX)];
    let printable: String = shown
        .iter()
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '.'
            }
        })
        .collect();
    format!(
        "index {} term {} kind {} size {} bytes {} {printable:?}",
        record.index,
        record.term,
        record.kind,
        record.payload.len(),
        hex(shown)
    )
}

/// One record as a JSON object on one line; `first_bytes` is hex.
fn json_line(record: &Record) -> String {
    let shown = &record.payload[..record.payload.len().min(DUMP_PAYLOAD_BYTES_MAX)];
    format!(
        "{{\"index\":{},\"term\":{},\"kind\":{},\"size\":{},\"first_bytes\":\"{}\"}}",
        record.index,
        record.term,
        record.kind,
        record.payload.len(),
        hex(shown)
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use alpo_log::{Log, LogOptions, SnapshotOptions, SnapshotStore};

    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: AtomicU64 = AtomicU64::new(0);
            let name = format!(
                "alpo-log-cmd-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn log_with(dir: &Path, count: u64) {
        let mut options = LogOptions::new(5, 2);
        options.segment_bytes_max = 4096;
        let mut log = Log::open(dir, options).unwrap();
        for index in 1..=count {
            log.append(
                index,
                1 + index / 50,
                1,
                format!("value {index}").as_bytes(),
            )
            .unwrap();
        }
        log.sync().unwrap();
    }

    fn output(run: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<ExitCode>) -> (ExitCode, String) {
        let mut out = Vec::new();
        let code = run(&mut out).unwrap();
        (code, String::from_utf8(out).unwrap())
    }

    fn dump_args(dir: &Path, from: Option<u64>, to: Option<u64>, json: bool) -> DumpArgs {
        DumpArgs {
            dir: dir.to_path_buf(),
            from,
            to,
            json,
        }
    }

    #[test]
    fn verify_clean_log_prints_summary() {
        let dir = TempDir::new();
        log_with(&dir.0, 300);
        let (code, text) = output(|out| verify(out, &dir.0, false));
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(text.contains("clean: "), "{text}");
        assert!(text.contains("300 records, index 1..=300"), "{text}");
        assert!(text.contains("cluster 5, node 2"), "{text}");
    }

    #[test]
    fn verify_names_file_and_offset_of_damage() {
        let dir = TempDir::new();
        log_with(&dir.0, 10);
        let file = dir.0.join("0000000000000001.alpolog");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[48 + 30] ^= 1; // Inside the first record (it starts at byte 48).
        std::fs::write(&file, bytes).unwrap();
        let (code, text) = output(|out| verify(out, &dir.0, false));
        assert_eq!(code, ExitCode::from(1));
        assert!(
            text.contains("0000000000000001.alpolog at byte 48"),
            "{text}"
        );
        assert!(text.contains("checksum"), "{text}");
    }

    #[test]
    fn verify_json_names_file_and_offset_and_says_clean() {
        let dir = TempDir::new();
        log_with(&dir.0, 10);
        let (code, text) = output(|out| verify(out, &dir.0, true));
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(text.starts_with("{\"verdict\":\"clean\""), "{text}");
        assert!(text.contains("\"records\":10"), "{text}");
        let file = dir.0.join("0000000000000001.alpolog");
        let mut bytes = std::fs::read(&file).unwrap();
        bytes[48 + 30] ^= 1;
        std::fs::write(&file, bytes).unwrap();
        let (code, text) = output(|out| verify(out, &dir.0, true));
        assert_eq!(code, ExitCode::from(1));
        assert!(text.starts_with("{\"verdict\":\"damaged\""), "{text}");
        assert!(
            text.contains("0000000000000001.alpolog\",\"offset\":48,"),
            "{text}"
        );
        assert!(text.contains("checksum"), "{text}");
    }

    #[test]
    fn verify_notes_a_torn_tail() {
        let dir = TempDir::new();
        log_with(&dir.0, 3);
        let file = dir.0.join("0000000000000001.alpolog");
        let bytes = std::fs::read(&file).unwrap();
        // Three records of 25 + 7 bytes after the 48-byte header: cut the third in half.
        std::fs::write(&file, &bytes[..48 + 32 * 2 + 10]).unwrap();
        let (code, text) = output(|out| verify(out, &dir.0, false));
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(text.contains("TornTail"), "{text}");
        assert!(text.contains("2 records"), "{text}");
    }

    #[test]
    fn dump_text_and_json_with_range() {
        let dir = TempDir::new();
        log_with(&dir.0, 20);
        let (_, text) = output(|out| dump(out, &dump_args(&dir.0, Some(7), Some(8), false)));
        assert_eq!(
            text,
            "index 7 term 1 kind 1 size 7 bytes 76616c75652037 \"value 7\"\n\
             index 8 term 1 kind 1 size 7 bytes 76616c75652038 \"value 8\"\n"
        );
        let (_, json) = output(|out| dump(out, &dump_args(&dir.0, None, Some(1), true)));
        assert_eq!(
            json,
            "{\"index\":1,\"term\":1,\"kind\":1,\"size\":7,\"first_bytes\":\"76616c75652031\"}\n"
        );
        let (_, all) = output(|out| dump(out, &dump_args(&dir.0, None, None, false)));
        assert_eq!(all.lines().count(), 20);
    }

    #[test]
    fn dump_refuses_a_backwards_range() {
        let dir = TempDir::new();
        log_with(&dir.0, 2);
        let mut out = Vec::new();
        let error = dump(&mut out, &dump_args(&dir.0, Some(2), Some(1), false)).unwrap_err();
        assert!(error.to_string().contains("below --from"), "{error}");
    }

    #[test]
    fn a_snapshot_that_cannot_be_opened_is_reported_with_its_cause() {
        let dir = TempDir::new();
        let path = dir.0.join("missing.alposnap");
        let (code, text) = output(|out| verify_snapshot(out, &path, false));
        assert_eq!(code, ExitCode::from(1));
        // alpo-log's message names the file; the operating system's error is its source.
        assert!(text.contains("missing.alposnap"), "{text}");
        let os = std::io::Error::from(std::io::ErrorKind::NotFound).to_string();
        assert!(
            text.contains("No such file") || text.contains(&os),
            "{text}"
        );
    }

    /// Takes a snapshot at `last_index` of a 100-byte image in `dir`; returns its path.
    fn snapshot_at(dir: &Path, last_index: u64) -> PathBuf {
        let mut store = SnapshotStore::open(dir, SnapshotOptions::new(5, 2)).unwrap();
        let mut writer = store.begin(last_index, 1, b"members").unwrap();
        writer.write_all(&[7u8; 100]).unwrap();
        let finished = writer.finish().unwrap();
        let path = finished.path().to_path_buf();
        store.adopt(finished);
        path
    }

    #[test]
    fn verify_lists_snapshots_and_a_compacted_log_they_cover() {
        let dir = TempDir::new();
        log_with(&dir.0, 300);
        snapshot_at(&dir.0, 150);
        let mut options = LogOptions::new(5, 2);
        options.segment_bytes_max = 4096;
        let mut log = Log::open(&dir.0, options).unwrap();
        log.compact_prefix(alpo_log::compaction_bound(150, 10))
            .unwrap();
        let first = log.first_index();
        drop(log);
        assert!(1 < first);
        let (code, text) = output(|out| verify(out, &dir.0, false));
        assert_eq!(code, ExitCode::SUCCESS, "{text}");
        assert!(
            text.contains(
                "00000000000000000150-00000000000000000001.alposnap: index 150 term 1, \
                 image 100 bytes in chunks of 65536"
            ),
            "{text}"
        );
        assert!(
            text.contains("cluster 5, node 2, membership 7 bytes"),
            "{text}"
        );
        assert!(text.contains(&format!("index {first}..=300")), "{text}");
    }

    #[test]
    fn verify_refuses_a_compacted_log_without_a_covering_snapshot() {
        let dir = TempDir::new();
        log_with(&dir.0, 300);
        let mut options = LogOptions::new(5, 2);
        options.segment_bytes_max = 4096;
        let mut log = Log::open(&dir.0, options).unwrap();
        log.compact_prefix(200).unwrap();
        drop(log);
        let (code, text) = output(|out| verify(out, &dir.0, false));
        assert_eq!(code, ExitCode::from(1));
        assert!(text.contains("no valid snapshot covers index"), "{text}");
    }

    #[test]
    fn verify_names_file_and_offset_of_a_damaged_snapshot() {
        let dir = TempDir::new();
        log_with(&dir.0, 10);
        let path = snapshot_at(&dir.0, 5);
        let mut bytes = std::fs::read(&path).unwrap();
        // The header is 72 + 7 + 4 = 83 bytes; the first chunk's body starts at 91.
        bytes[95] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let (code, text) = output(|out| verify(out, &dir.0, false));
        assert_eq!(code, ExitCode::from(1));
        assert!(
            text.contains("alposnap at byte 83: chunk checksum"),
            "{text}"
        );
        // The file alone gives the same answer.
        let (code, alone) = output(|out| verify(out, &path, false));
        assert_eq!(code, ExitCode::from(1));
        assert!(alone.contains("at byte 83"), "{alone}");
    }

    #[test]
    fn verify_notes_a_snapshot_left_by_a_crash() {
        let dir = TempDir::new();
        log_with(&dir.0, 10);
        let temp = dir
            .0
            .join("snap-00000000000000000009-00000000000000000001.tmp");
        std::fs::write(&temp, b"torn").unwrap();
        let (code, text) = output(|out| verify(out, &dir.0, false));
        assert_eq!(code, ExitCode::SUCCESS);
        assert!(
            text.contains("TempFile; opening the snapshots would RemoveFile"),
            "{text}"
        );
    }

    #[test]
    fn dump_lists_snapshot_headers_before_records() {
        let dir = TempDir::new();
        log_with(&dir.0, 3);
        let path = snapshot_at(&dir.0, 2);
        let (_, text) = output(|out| dump(out, &dump_args(&dir.0, None, None, false)));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("snapshot "), "{text}");
        assert!(lines[1].starts_with("index 1 "), "{text}");
        let (_, json) = output(|out| dump(out, &dump_args(&path, None, None, true)));
        assert!(json.starts_with("{\"snapshot\":\""), "{json}");
        assert!(
            json.contains("\"last_index\":2,\"last_term\":1,\"image_bytes\":100,"),
            "{json}"
        );
        assert!(
            json.contains("\"membership\":\"6d656d62657273\"}"),
            "{json}"
        );
        // A range prints records only.
        let (_, ranged) = output(|out| dump(out, &dump_args(&dir.0, Some(1), Some(1), false)));
        assert_eq!(ranged.lines().count(), 1);
    }
}
