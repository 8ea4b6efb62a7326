//! The image of a node's state in a snapshot file (rule S1): the session table, the marks of
//! retried entries readers may still see, then the application's state machine.
//!
//! Layout: `version u8` (1), the session table (`Sessions::write_to`, in eviction order), the
//! duplicate marks (`count u64`, then each index `u64`, ascending), then the state machine's own
//! image to the end. Invariants: both parts are frozen at the same
//! applied index (taken between two applications, on the apply thread), and the bytes are a
//! function of the entries applied up to it.

use std::collections::BTreeSet;
use std::io;
use std::path::Path;

use alpo_core::LogIndex;

use crate::error::Error;
use crate::image_io::{expect_end, get_u8, get_u64, invalid, put_u8, put_u64};
use crate::session::{FrozenSessions, Sessions};
use crate::state_machine::{SnapshotImage, StateMachine};

/// The version byte at the start of every node image.
const IMAGE_VERSION: u8 = 1;

/// A node's state frozen at one applied index, to be written on another thread.
pub(crate) struct NodeImage {
    sessions: FrozenSessions,
    duplicates: BTreeSet<LogIndex>,
    machine: Box<dyn SnapshotImage>,
}

/// What a snapshot restored besides the state machine itself.
#[derive(Debug, Default)]
pub(crate) struct RestoredState {
    /// The snapshot's last included index: the applied index after the restore.
    pub(crate) last: LogIndex,
    pub(crate) sessions: Sessions,
    pub(crate) duplicates: BTreeSet<LogIndex>,
}

impl std::fmt::Debug for NodeImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeImage").finish_non_exhaustive()
    }
}

impl NodeImage {
    /// Freezes `sessions` (copy-on-write shards, O(shards)), `duplicates` (a copy: the marks of
    /// retried entries in the retained log, rare and few) and `machine` (its own copy-on-write
    /// snapshot).
    pub(crate) fn take(
        sessions: &Sessions,
        duplicates: &BTreeSet<LogIndex>,
        machine: &dyn StateMachine,
    ) -> NodeImage {
        NodeImage {
            sessions: sessions.freeze(),
            duplicates: duplicates.clone(),
            machine: machine.snapshot(),
        }
    }

    /// Writes the image.
    pub(crate) fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
        put_u8(out, IMAGE_VERSION)?;
        self.sessions.write_to(out)?;
        put_u64(out, self.duplicates.len() as u64)?;
        for index in &self.duplicates {
            put_u64(out, index.0)?;
        }
        self.machine.write_to(out)
    }
}

/// Restores `machine` from the snapshot file at `path` (verified chunk by chunk as it is read).
pub(crate) fn restore_from_file(
    path: &Path,
    machine: &mut dyn StateMachine,
) -> Result<RestoredState, Error> {
    let file = alpo_log::SnapshotFile::open(path)?;
    let last = LogIndex(file.meta().last_index);
    let mut image = file.image()?;
    let (sessions, duplicates) = restore(&mut image, machine).map_err(|source| Error::Io {
        what: format!("restoring the state machine from {}", path.display()),
        source,
    })?;
    Ok(RestoredState {
        last,
        sessions,
        duplicates,
    })
}

/// Restores `machine` from an image; returns the session table and duplicate marks it held.
pub(crate) fn restore(
    input: &mut dyn io::Read,
    machine: &mut dyn StateMachine,
) -> io::Result<(Sessions, BTreeSet<LogIndex>)> {
    let version = get_u8(input, "the image version")?;
    if version != IMAGE_VERSION {
        return Err(invalid(format!(
            "image version {version}; this node reads version {IMAGE_VERSION}"
        )));
    }
    let sessions = Sessions::read_from(input)?;
    let count = get_u64(input, "the duplicate count")?;
    let mut duplicates = BTreeSet::new();
    for _ in 0..count {
        let index = LogIndex(get_u64(input, "a duplicate index")?);
        if duplicates.last().is_some_and(|last| index <= *last) {
            return Err(invalid(format!("duplicate index {index} is out of order")));
        }
        duplicates.insert(index);
    }
    machine.restore(input)?;
    expect_end(input, "the state machine's image")?;
    Ok((sessions, duplicates))
}
