//! `alpo log dump|verify`: offline inspection of a log directory.
//!
//! Both commands read through `alpo_log::LogReader`, which runs the same scan and recovery
//! decision table as `Log::open` but never changes the directory and takes no lock, so they
//! must be run on a log no node is using. Output goes to a writer passed in, so tests can read
//! it. Exit codes: 0 clean (or recoverable: a torn tail `Log::open` would truncate is printed as
//! a note), 1 damage that `Log::open` would refuse, with file, byte offset and reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alpo_log::{LogReader, Record};
use clap::{Args, Subcommand};

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
    /// Print records: index, term, kind, size and the first payload bytes.
    Dump(DumpArgs),
    /// Check every record of a log directory; exit 1 naming the first damage.
    Verify {
        /// The log directory.
        dir: PathBuf,
    },
}

/// Arguments of `alpo log dump`.
#[derive(Debug, Args)]
struct DumpArgs {
    /// The log directory.
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
        LogCommand::Verify { dir } => verify(&mut out, &dir),
    }
}

/// `alpo log dump`: prints the records in range; an error names the first damage.
fn dump(out: &mut impl Write, args: &DumpArgs) -> anyhow::Result<ExitCode> {
    if let (Some(from), Some(to)) = (args.from, args.to)
        && to < from
    {
        anyhow::bail!("--to {to} is below --from {from}");
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
fn verify(out: &mut impl Write, dir: &Path) -> anyhow::Result<ExitCode> {
    let reader = match LogReader::open(dir) {
        Ok(reader) => reader,
        Err(error) => {
            writeln!(out, "damaged: {error}")?;
            return Ok(ExitCode::from(1));
        }
    };
    // The scan checked every CRC already; read every record once more as the node would.
    for record in reader.entries(..) {
        if let Err(error) = record {
            writeln!(out, "damaged: {error}")?;
            return Ok(ExitCode::from(1));
        }
    }
    for event in reader.pending_repairs() {
        let (action, why) = event.situation.action();
        writeln!(
            out,
            "note: {} at byte {}: {:?}; opening the log would {:?} ({why})",
            event.path.display(),
            event.offset,
            event.situation,
            action
        )?;
    }
    let summary = reader.summary();
    writeln!(
        out,
        "clean: {} segments, {} records, index {}..={}, {} bytes, cluster {}, node {}",
        summary.segment_count,
        summary.record_count,
        summary.first_index,
        summary.last_index,
        summary.record_bytes,
        optional(summary.cluster_id),
        optional(summary.node_id),
    )?;
    Ok(ExitCode::SUCCESS)
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

    use alpo_log::{Log, LogOptions};

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
        let (code, text) = output(|out| verify(out, &dir.0));
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
        let (code, text) = output(|out| verify(out, &dir.0));
        assert_eq!(code, ExitCode::from(1));
        assert!(
            text.contains("0000000000000001.alpolog at byte 48"),
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
        let (code, text) = output(|out| verify(out, &dir.0));
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
}
