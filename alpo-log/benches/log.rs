//! Benchmarks of `alpo-log` (`cargo bench -p alpo-log`):
//! - appends/s for 128 B and 4 KiB payloads with a sync every 1, 16 and 256 appends (criterion
//!   reports appends/s as elements/s; MiB/s = appends/s × payload size);
//! - the baseline: a bare `write` + `fdatasync` loop of the same records on the same disk;
//! - the same with sparse instead of zeroed preallocation, to show what preallocation buys;
//! - `Log::open` (recovery scan) of a clean 1 GiB log.
//!
//! Set `ALPO_BENCH_DIR` to benchmark another disk (default: the system temp dir).

// A benchmark harness panics on setup failure, like a test.
#![allow(clippy::unwrap_used, missing_docs)]

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use alpo_log::{Log, LogOptions, Preallocation};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

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

/// The same record bytes (25-byte header + payload) appended to a plain file, one
/// `fdatasync` per batch: what the disk can do with no log around it.
fn baseline(c: &mut Criterion) {
    let mut group = c.benchmark_group("baseline_write_fdatasync");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (size, label) in SIZES {
        let record = vec![0x5Au8; size + 25];
        for batch in BATCHES {
            let dir = bench_dir();
            let path = dir.path().join("baseline");
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            group.throughput(Throughput::Elements(batch));
            let id = BenchmarkId::new(label, format!("sync_every_{batch}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    for _ in 0..iters {
                        for _ in 0..batch {
                            file.write_all(&record).unwrap();
                        }
                        file.sync_data().unwrap();
                    }
                    let elapsed = start.elapsed();
                    if LOG_BYTES_KEEP < file.metadata().unwrap().len() {
                        file.set_len(0).unwrap();
                    }
                    elapsed
                });
            });
        }
    }
    group.finish();
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

criterion_group!(benches, log_appends, baseline, recovery);
criterion_main!(benches);
