//! Cache bound (rule S9): after every step, a node's entry cache holds at most
//! `max(log_cache_bytes_max, bytes above its commit index)` payload bytes, the state every
//! eviction leaves (`LogCacheStatus::is_bounded`). So the core's memory for entries is bounded
//! by its configuration and by what it must hold (entries not yet committed, which the
//! proposal limits bound), never by the log's length. The term index's runs are also bounded:
//! at most one per term of the retained log, so at most the node's current term.
//!
//! Stateless: each observation is judged on its own.

use super::{Check, Violation};
use crate::log_read::LogCacheStatus;
use crate::node::Status;

/// The checker's name in reports.
pub const NAME: &str = "cache_bound";

/// Checks the cache of the node whose status is `status`.
pub fn check(status: &Status, cache: &LogCacheStatus) -> Check {
    if !cache.is_bounded() {
        return Err(Violation::new(
            NAME,
            format!(
                "node {} caches {} payload bytes (from index {}), above its budget {} and the \
                 {} bytes above its commit index {}",
                status.id,
                cache.bytes,
                cache.cached_from,
                cache.bytes_max,
                cache.pinned_bytes,
                status.commit_index
            ),
        ));
    }
    let runs = u64::try_from(cache.term_runs).unwrap_or(u64::MAX);
    if runs > status.term.0 {
        return Err(Violation::new(
            NAME,
            format!(
                "node {}'s term index has {runs} runs, more than its term {}",
                status.id, status.term
            ),
        ));
    }
    Ok(())
}
