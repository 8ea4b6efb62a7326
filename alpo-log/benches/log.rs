//! Benchmarks of `alpo-log` (`cargo bench -p alpo-log`):
//! - appends/s for 128 B and 4 KiB payloads with a sync every 1, 16 and 256 appends (criterion
//!   reports appends/s as elements/s; MiB/s = appends/s × payload size);
//! - the baseline: a bare `write` + `fdatasync` loop of the same records on the same disk;
//! - the same with sparse instead of zeroed preallocation, to show what preallocation buys;
//! - `Log::open` (recovery scan) of a clean 1 GiB log;
//! - before criterion runs, an interleaved comparison of the log with one sync per append
//!   against both baselines, printed as medians and ratios (`compare …` lines on stderr).
//!
//! Set `ALPO_BENCH_DIR` to benchmark another disk (default: the system temp dir).

// A benchmark harness panics on setup failure, like a test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alpo_log::{Log, LogOptions, Preallocation};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

const SIZES: [(usize, &str); 2] = [(128, "128B"), (4096, "4KiB")];
const BATCHES: [u64; 3] = [1, 16, 256];
/// Beyond this many bytes appended the benchmark compacts the log (outside the timing).
const LOG_BYTES_KEEP: u64 = 512 * 1024 * 1024;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("ALPO_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i as u8).wrapping_mul(151) | 1).collect()
}

/// Appends `iters` batches of `batch` records, each batch followed by one sync.
fn run_log(log: &mut Log, bytes: &[u8], batch: u64, iters: u64) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        for _ in 0..batch {
            let index = log.last_index() + 1;
            log.append(index, 1, 1, bytes).unwrap();
        }
        log.sync().unwrap();
    }
    let elapsed = start.elapsed();
    let kept = (log.last_index() - log.first_index()) * bytes.len() as u64;
    if LOG_BYTES_KEEP < kept {
        log.compact_prefix(log.last_index()).unwrap();
    }
    elapsed
}

fn appends(c: &mut Criterion, name: &str, preallocation: Preallocation, batches: &[u64]) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (size, label) in SIZES {
        let bytes = payload(size);
        for &batch in batches {
            let dir = bench_dir();
            let mut options = LogOptions::new(1, 1);
            options.preallocation = preallocation;
            let mut log = Log::open(dir.path(), options).unwrap();
            group.throughput(Throughput::Elements(batch));
            let id = BenchmarkId::new(label, format!("sync_every_{batch}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| run_log(&mut log, &bytes, batch, iters));
            });
        }
    }
    group.finish();
}

fn log_appends(c: &mut Criterion) {
    appends(c, "append_zeroed", Preallocation::Zeroed, &BATCHES);
    appends(c, "append_sparse", Preallocation::Sparse, &[1]);
}

/// How the baseline file is written.
#[derive(Clone, Copy)]
enum BaselineFile {
    /// `write` with `O_APPEND` to a growing file: each `fdatasync` also commits the new size
    /// and block allocation.
    Growing,
    /// `pwrite` into a file of zeros written beforehand: the floor for an overwrite.
    Prezeroed,
}

/// The same record bytes (25-byte header + payload) written to a plain file, one `fdatasync`
/// per batch: what the disk can do with no log around it.
fn baseline(c: &mut Criterion) {
    baseline_group(
        c,
        "baseline_write_fdatasync",
        BaselineFile::Growing,
        &BATCHES,
    );
    baseline_group(
        c,
        "baseline_prezeroed_pwrite_fdatasync",
        BaselineFile::Prezeroed,
        &[1],
    );
}

fn baseline_group(c: &mut Criterion, name: &str, mode: BaselineFile, batches: &[u64]) {
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (size, label) in SIZES {
        let record = vec![0x5Au8; size + 25];
        for &batch in batches {
            let dir = bench_dir();
            let mut file = BaselineWriter::new(&dir.path().join("baseline"), mode);
            group.throughput(Throughput::Elements(batch));
            let id = BenchmarkId::new(label, format!("sync_every_{batch}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..batch {
                            file.write(&record);
                        }
                        file.file.sync_data().unwrap();
                    }
                    let elapsed = start.elapsed();
                    file.wrap_if_large();
                    elapsed
                });
            });
        }
    }
    group.finish();
}

struct BaselineWriter {
    file: std::fs::File,
    mode: BaselineFile,
    at: u64,
}

impl BaselineWriter {
    fn new(path: &Path, mode: BaselineFile) -> Self {
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .append(matches!(mode, BaselineFile::Growing))
            .open(path)
            .unwrap();
        if let BaselineFile::Prezeroed = mode {
            let zeros = vec![0u8; 1 << 20];
            for _ in 0..(LOG_BYTES_KEEP >> 20) / 4 {
                file.write_all(&zeros).unwrap();
            }
            file.sync_all().unwrap();
        }
        BaselineWriter { file, mode, at: 0 }
    }

    fn write(&mut self, record: &[u8]) {
        use std::os::unix::fs::FileExt;
        match self.mode {
            BaselineFile::Growing => self.file.write_all(record).unwrap(),
            BaselineFile::Prezeroed => self.file.write_all_at(record, self.at).unwrap(),
        }
        self.at += record.len() as u64;
    }

    fn wrap_if_large(&mut self) {
        match self.mode {
            BaselineFile::Growing if LOG_BYTES_KEEP < self.at => {
                self.file.set_len(0).unwrap();
                self.at = 0;
            }
            BaselineFile::Prezeroed if LOG_BYTES_KEEP / 8 < self.at => self.at = 0,
            _ => {}
        }
    }
}

/// Writes a clean log of about 1 GiB (4 KiB payloads) into `dir`.
fn build_gib(dir: &Path) {
    let mut log = Log::open(dir, LogOptions::new(1, 1)).unwrap();
    let bytes = payload(4096);
    let count = (1u64 << 30) / (4096 + 25);
    for index in 1..=count {
        log.append(index, 1 + index / 1000, 1, &bytes).unwrap();
        if index % 4096 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
}

fn recovery(c: &mut Criterion) {
    let dir = bench_dir();
    build_gib(dir.path());
    let mut group = c.benchmark_group("open");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("clean_1GiB", |b| {
        b.iter(|| {
            let log = Log::open(dir.path(), LogOptions::new(1, 1)).unwrap();
            assert!(200_000 < log.last_index());
            log
        });
    });
    group.finish();
}

/// Appends (each with its own sync) per writer in the interleaved comparison.
const COMPARE_OPS: usize = 1000;

/// One sync per append: the log against both baselines, interleaved op by op (log, bare,
/// prezeroed, log, …) so that load from other processes on a shared disk hits all three
/// alike. Prints the median latency of each and the ratios the target is about.
fn compare_interleaved() {
    for (size, label) in SIZES {
        let bytes = payload(size);
        let record = vec![0x5Au8; size + 25];
        let dir = bench_dir();
        let mut log = Log::open(&dir.path().join("log"), LogOptions::new(1, 1)).unwrap();
        let mut growing = BaselineWriter::new(&dir.path().join("growing"), BaselineFile::Growing);
        let mut zeroed = BaselineWriter::new(&dir.path().join("zeroed"), BaselineFile::Prezeroed);
        let mut times: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..COMPARE_OPS {
            times[0].push(micros(run_log(&mut log, &bytes, 1, 1)));
            times[1].push(micros(run_baseline(&mut growing, &record)));
            times[2].push(micros(run_baseline(&mut zeroed, &record)));
        }
        let [log_us, growing_us, zeroed_us] = times.map(median);
        eprintln!(
            "compare {label} sync_every_1 (median of {COMPARE_OPS} interleaved appends): \
             log {log_us:.1} µs, bare write+fdatasync {growing_us:.1} µs \
             (log/bare = {:.2}), prezeroed pwrite+fdatasync {zeroed_us:.1} µs \
             (log/prezeroed = {:.2})",
            log_us / growing_us,
            log_us / zeroed_us
        );
    }
}

/// One write and one `fdatasync`.
fn run_baseline(file: &mut BaselineWriter, record: &[u8]) -> Duration {
    let start = Instant::now();
    file.write(record);
    file.file.sync_data().unwrap();
    let elapsed = start.elapsed();
    file.wrap_if_large();
    elapsed
}

fn micros(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64() * 1e6
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

criterion_group!(benches, log_appends, baseline, recovery);

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and skips the comparison.
    if std::env::args().any(|arg| arg == "--bench") {
        compare_interleaved();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
