//! Named maxima for every batch, window and queue in the core, and the defaults built from them.
//!
//! Each limit says what happens when it is reached. The values are defaults for
//! [`crate::Config`]; a driver may choose smaller or larger ones within `Config::validate`.

/// Default cap on entries in one Append message. At the limit the leader sends the rest in the
/// next Append of the window.
pub const APPEND_ENTRY_COUNT_MAX: u64 = 1024;

/// Default cap on payload bytes in one Append message (one entry is always sent, even if larger).
/// At the limit the leader sends the rest in the next Append of the window.
pub const APPEND_BYTES_MAX: u64 = 1024 * 1024;

/// Default cap on Appends in flight to one follower in the replicate state (rule R2). At the limit
/// the leader waits for replies (or the next heartbeat) before sending more.
pub const INFLIGHT_APPEND_COUNT_MAX: u64 = 64;

/// Default cap on proposals appended by the leader but not yet committed. Beyond it `propose`
/// refuses with `ProposeError::TooManyPending`.
pub const PENDING_PROPOSAL_COUNT_MAX: u64 = 65_536;

/// Default cap on payload bytes of proposals not yet committed. Beyond it `propose` refuses with
/// `ProposeError::TooManyPendingBytes`.
pub const PENDING_PROPOSAL_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Default cap on one entry's payload. Beyond it `propose` refuses with
/// `ProposeError::EntryTooLarge`. Must fit in one wire frame with room for headers.
pub const ENTRY_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Default number of entries kept below the newest snapshot when compacting (rule S4). A
/// follower further behind than this when the leader compacts is caught up by an install.
pub const RETAIN_ENTRIES: u64 = 10_000;

/// Default cap on InstallSnapshot chunks in flight to one follower (rule S5). At the limit the
/// leader waits for the follower's replies (or resends after a stall) before reading more.
pub const SNAPSHOT_CHUNKS_INFLIGHT_MAX: u64 = 4;

/// Rounds a learner gets to catch up before its promotion fails (rule M8): each round replicates
/// the entries the leader held at its start; one shorter than `P_min` appends the promotion.
pub const CATCHUP_ROUNDS_MAX: u64 = 10;

// One entry must always fit in one Append, or a large entry could never be replicated.
const _: () = assert!(ENTRY_BYTES_MAX <= 4 * APPEND_BYTES_MAX);

/// Rule S9: payload bytes of the core's entry cache at most (beyond the entries it must hold:
/// those above the commit index).
pub const LOG_CACHE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Rule S9: payload bytes asked for by `ReadLog`s in flight at most.
pub const READ_INFLIGHT_BYTES_MAX: u64 = 4 * 1024 * 1024;
