//! The disk's metrics (issue 13): the scrubber's progress and findings, and the vote fence of a
//! node that lost its hard state. Kept apart from `metrics.rs`'s list so that the issue's
//! additions merge as one block.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::client_protocol::DiskStatus;

/// `alpo_scrub_*` and `alpo_vote_fence`.
#[derive(Debug, Default)]
pub(crate) struct DiskMetrics {
    scrub_bytes: Counter,
    scrub_passes: Counter,
    scrub_faults: Counter,
    vote_fence: Gauge,
}

impl DiskMetrics {
    /// Registers every disk metric in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "scrub_bytes",
            "Bytes of log the background scrubber re-read from the segment files",
            self.scrub_bytes.clone(),
        );
        registry.register(
            "scrub_passes",
            "Complete passes of the background scrubber over the durable log",
            self.scrub_passes.clone(),
        );
        registry.register(
            "scrub_faults",
            "Damaged log records the scrubber found (each counted once per start)",
            self.scrub_faults.clone(),
        );
        registry.register(
            "vote_fence",
            "Rule F9: no vote or candidacy below this term after a hard-state loss (0: none)",
            self.vote_fence.clone(),
        );
    }

    pub(crate) fn scrub_read(&self, bytes: u64) {
        self.scrub_bytes.inc_by(bytes);
    }

    pub(crate) fn scrub_pass(&self) {
        self.scrub_passes.inc();
    }

    pub(crate) fn scrub_fault(&self) {
        self.scrub_faults.inc();
    }

    /// The fence gauge from a status (once per event-loop batch).
    pub(crate) fn observe(&self, disk: &DiskStatus) {
        let fence = disk.vote_fence.map_or(0, |term| term.0);
        self.vote_fence
            .set(i64::try_from(fence).unwrap_or(i64::MAX));
    }
}
