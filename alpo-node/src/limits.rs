//! Named maxima for every queue, batch and table in a running node.
//!
//! Each limit says what happens when it is reached. Protocol limits (entries per Append, pending
//! proposals, entry size) live in `alpo_core::limits`; these are the driver's own.

/// Log operations (truncate or append batches) queued for the storage thread at most. At the
/// limit the event loop waits for the storage thread (backpressure on proposals).
pub const STORAGE_QUEUE_OP_COUNT_MAX: usize = 4096;

/// Log operations written before one `sync()` at most (one group commit). At the limit the
/// storage thread syncs, reports, and starts the next batch.
pub const STORAGE_BATCH_OP_COUNT_MAX: usize = 4096;

/// Messages queued for the apply thread at most. At the limit the event loop waits for the
/// apply thread (backpressure).
pub const APPLY_QUEUE_COUNT_MAX: usize = 4096;

/// Jobs (a snapshot to write, chunks to read or write) queued for the snapshot thread at most.
/// At the limit the event loop waits for the snapshot thread for a chunk to write or a snapshot
/// to take (backpressure), and drops a chunk read (the leader asks again after its stall
/// timeout, rule S5).
pub const SNAPSHOT_QUEUE_COUNT_MAX: usize = 64;

/// Clients waiting at once for a snapshot they asked for (`alpo snapshot`) at most. Beyond,
/// a request is answered `Retry`.
pub const SNAPSHOT_WAITER_COUNT_MAX: usize = 1024;

/// Entries returned by one `Read` request at most; the client asks again from where it stopped.
pub const READ_ENTRY_COUNT_MAX: u32 = 1024;

/// Payload bytes returned by one `Read` request at most (one entry is always returned, so a
/// reader cannot get stuck behind one large entry).
pub const READ_BYTES_MAX: u64 = 1024 * 1024;

/// Client sessions remembered for duplicate detection at most. At the limit the session used
/// least recently (lowest log index) is forgotten, on every node alike; a late retry from that
/// client would then be applied again. With one request in flight per client this needs more
/// than this many other clients to write between a request and its retry.
pub const SESSION_COUNT_MAX: usize = 100_000;

/// Bytes of one key in the built-in key-value machine at most. Beyond, the request is refused.
pub const KV_KEY_BYTES_MAX: usize = 64 * 1024;

// A Read reply must fit well inside one key-value-sized entry budget; a larger read cap than the
// largest entry would be pointless because one entry is always returned.
const _: () = assert!(READ_BYTES_MAX <= alpo_core::limits::ENTRY_BYTES_MAX);
// A key must fit in an entry, or it could never be written.
const _: () = assert!((KV_KEY_BYTES_MAX as u64) < alpo_core::limits::ENTRY_BYTES_MAX);

/// The flight recorder's default disk budget (`[recorder] disk_bytes_max`): all trace files of
/// a node together (issue 15).
pub const RECORDER_DISK_BYTES_DEFAULT: u64 = 512 * 1024 * 1024;

/// The smallest flight-recorder budget accepted: below it a start's trace would stop within
/// seconds of load.
pub const RECORDER_DISK_BYTES_MIN: u64 = 1024 * 1024;

/// Issue 13: the background scrubber's default rate, bytes of log re-read per second (a
/// 64 MiB segment in 16 s; about 1 % of a disk's sequential bandwidth).
pub const SCRUB_BYTES_PER_SEC_DEFAULT: u64 = 4 * 1024 * 1024;

/// Issue 13: the scrubber's steps per second at full rate (each step reads `rate / this`
/// bytes, at least one record), so its reads come in small slices between the log's syncs.
pub const SCRUB_STEPS_PER_SEC: u64 = 20;

/// Issue 13: the scrubber's pause after a complete pass, before it starts the next.
pub const SCRUB_PASS_PAUSE_MS: u64 = 1000;
/// The flight recorder's default trace file size (`[recorder] file_bytes_max`): each file after
/// a start's first begins with a checkpoint of the core, and the ring drops whole files, so the
/// budget holds the newest `disk_bytes_max - file_bytes_max` bytes of history at least.
pub const RECORDER_FILE_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// The smallest trace file size accepted: a file should hold far more than its checkpoint.
pub const RECORDER_FILE_BYTES_MIN: u64 = 64 * 1024;
