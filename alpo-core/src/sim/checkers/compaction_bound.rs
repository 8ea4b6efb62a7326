//! Compaction bound (protocol §10a, property 10): on every disk the first retained log index
//! is at most `L + 1` of the newest durable snapshot, so no entry is held by neither the log nor
//! a snapshot; and a server starts with commit and applied indices at least that `L`
//! (monotonicity within an incarnation is the `monotonicity` checker's).
//!
//! Stateless: each observation is judged on its own.

use super::{Check, Violation};
use crate::node::Status;
use crate::sim::disk::Disk;
use crate::types::NodeId;

/// The checker's name in reports.
pub const NAME: &str = "compaction_bound";

/// Checks node `id`'s disk: its stored and running logs start at most one past its snapshot.
pub fn check_disk(id: NodeId, disk: &Disk) -> Check {
    let bound = disk.snapshot_index().next();
    for (which, log) in [("synced", disk.stored_log()), ("running", disk.live_log())] {
        if let Some(first) = log.first()
            && first.index > bound
        {
            return Err(Violation::new(
                NAME,
                format!(
                    "node {id}'s {which} log starts at index {} but its newest snapshot ends at \
                     {}: entries {}..{} are held nowhere",
                    first.index,
                    disk.snapshot_index(),
                    bound,
                    first.index
                ),
            ));
        }
    }
    Ok(())
}

/// Checks a node that just started from `disk`: it starts at its snapshot, not below.
pub fn check_start(status: &Status, disk: &Disk) -> Check {
    let snapshot = disk.snapshot_index();
    if status.applied_index < snapshot || status.commit_index < snapshot {
        return Err(Violation::new(
            NAME,
            format!(
                "node {} started with applied {} and commit {} below its snapshot at {snapshot}",
                status.id, status.applied_index, status.commit_index
            ),
        ));
    }
    Ok(())
}
