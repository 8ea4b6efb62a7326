//! The errors the core returns to its caller.
//!
//! The core does no I/O, so it cannot fail on I/O; and it does not fail on bad protocol input,
//! which it ignores or answers per the protocol. What remains are caller errors a user can act on:
//! proposing to a server that is not the leader, exceeding a limit, or an invalid configuration.

use std::fmt;

use crate::types::NodeId;

/// Why a proposal was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProposeError {
    /// This server is not the leader (rule R1); `leader_hint` is the leader it last heard from.
    NotLeader {
        /// The leader this server believes in, if any.
        leader_hint: Option<NodeId>,
    },
    /// Too many proposals are waiting to commit; retry after some commit.
    TooManyPending {
        /// The limit that was reached (`Config::pending_proposal_count_max`).
        limit: u64,
    },
    /// Too many bytes of proposals are waiting to commit; retry after some commit.
    TooManyPendingBytes {
        /// The limit that was reached (`Config::pending_proposal_bytes_max`).
        limit: u64,
    },
    /// The payload is larger than one entry may be.
    EntryTooLarge {
        /// The payload's size in bytes.
        size: u64,
        /// The limit (`Config::entry_bytes_max`).
        limit: u64,
    },
    /// Leadership is being transferred (rule T2); retry shortly (at the new leader).
    Transferring {
        /// The transfer's target.
        target: NodeId,
    },
    /// Issue 13, rule F6: the leader won with faulty entries and accepts nothing until it has
    /// repaired them (or proved them uncommitted); retry shortly.
    Repairing {
        /// Its lowest faulty index.
        from: crate::types::LogIndex,
    },
}

/// Why a leadership transfer was refused (rule T1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferError {
    /// This server is not the leader; `leader_hint` is the leader it last heard from.
    NotLeader {
        /// The leader this server believes in, if any.
        leader_hint: Option<NodeId>,
    },
    /// A transfer is already in progress.
    InProgress {
        /// Its target.
        target: NodeId,
    },
    /// The target is not a voter of the configuration in force.
    NotVoter(NodeId),
    /// The target is this server, which leads already.
    ToSelf,
    /// There is no other voter to hand over to.
    NoOtherVoter,
}

/// Why the driver could not read bytes of a snapshot file for `Node::on_snapshot_read`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotReadError {
    /// The file is gone: a newer snapshot replaced it.
    Replaced,
    /// Reading failed; the driver logs the cause. The leader retries after a stall.
    Failed,
}

/// Why a configuration was refused; names the field and the problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field that is wrong.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader {
                leader_hint: Some(id),
            } => write!(f, "not the leader; the leader is node {id}"),
            ProposeError::NotLeader { leader_hint: None } => {
                write!(f, "not the leader; no leader is known")
            }
            ProposeError::TooManyPending { limit } => {
                write!(f, "too many pending proposals (limit {limit})")
            }
            ProposeError::TooManyPendingBytes { limit } => {
                write!(f, "too many pending proposal bytes (limit {limit})")
            }
            ProposeError::EntryTooLarge { size, limit } => {
                write!(
                    f,
                    "entry of {size} bytes is larger than the limit of {limit} bytes"
                )
            }
            ProposeError::Transferring { target } => {
                write!(f, "leadership is being transferred to node {target}; retry")
            }
            ProposeError::Repairing { from } => write!(
                f,
                "the leader is repairing its damaged log entry {from} from its peers; retry"
            ),
        }
    }
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader {
                leader_hint: Some(id),
            } => write!(f, "not the leader; the leader is node {id}"),
            TransferError::NotLeader { leader_hint: None } => {
                write!(f, "not the leader; no leader is known")
            }
            TransferError::InProgress { target } => {
                write!(f, "a transfer to node {target} is in progress")
            }
            TransferError::NotVoter(id) => write!(f, "node {id} is not a voter"),
            TransferError::ToSelf => write!(f, "this node leads already"),
            TransferError::NoOtherVoter => write!(f, "there is no other voter to hand over to"),
        }
    }
}

impl std::error::Error for TransferError {}

impl std::error::Error for ProposeError {}

impl fmt::Display for SnapshotReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotReadError::Replaced => write!(f, "the snapshot file was replaced"),
            SnapshotReadError::Failed => write!(f, "reading the snapshot file failed"),
        }
    }
}

impl std::error::Error for SnapshotReadError {}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

/// Why an input trace could not be replayed (see `crate::replay`; the format is in `crate::trace`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TraceError {
    /// The bytes are not a well-formed trace of this version.
    Corrupt {
        /// Byte offset in the trace where the problem was found.
        offset: u64,
        /// What is wrong there.
        problem: String,
    },
    /// The trace ends inside its header or `start` record: the process died before its
    /// recorder had written that much, so the trace holds nothing to replay.
    TornStart {
        /// The trace's length in bytes.
        length: u64,
    },
    /// The recorded configuration or persisted state is refused by `Node::new`.
    Config(ConfigError),
    /// Replaying gave other outputs than the recorded node's (their digest differs): the
    /// core is not the one that recorded, or it is not deterministic.
    Diverged {
        /// Byte offset of the `take_outputs` record whose outputs differ.
        offset: u64,
        /// The replayed outputs (`Debug`), to compare with what the recorded node did.
        outputs: String,
    },
    /// Replaying the previous trace piece reached another state than the checkpoint this
    /// piece begins with (trace format 5): the core is not the one that recorded, or not
    /// deterministic, or the checkpoint leaves something out.
    CheckpointDiffers {
        /// Byte offset of the `checkpoint` record.
        offset: u64,
    },
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceError::Corrupt { offset, problem } => {
                write!(f, "corrupt trace at byte {offset}: {problem}")
            }
            TraceError::TornStart { length } => write!(
                f,
                "the trace ends at byte {length}, inside its header or `start` record (the \
                 process died before its recorder wrote them): nothing to replay"
            ),
            TraceError::Config(_) => write!(f, "trace start refused"),
            TraceError::Diverged { offset, outputs } => write!(
                f,
                "replay diverged at byte {offset}: the replayed outputs differ from the \
                 recorded ones; replayed: {outputs}"
            ),
            TraceError::CheckpointDiffers { offset } => write!(
                f,
                "replay diverged at the checkpoint at byte {offset}: the state replayed up to \
                 it differs from the recorded one"
            ),
        }
    }
}

/// `Display` describes this level only; the refused configuration is the `source()`, so `{:#}`
/// prints each cause once (the workspace's convention, docs/ARCHITECTURE.md "Errors").
impl std::error::Error for TraceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TraceError::Config(error) => Some(error),
            TraceError::Corrupt { .. }
            | TraceError::TornStart { .. }
            | TraceError::Diverged { .. }
            | TraceError::CheckpointDiffers { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `{:#}` prints in a binary (anyhow itself, a dev-dependency): the error, then each
    /// `source()`, `": "` between them.
    fn with_causes(error: impl std::error::Error + Send + Sync + 'static) -> String {
        format!("{:#}", anyhow::Error::new(error))
    }

    #[test]
    fn a_chain_prints_each_cause_once() {
        let refused = TraceError::Config(ConfigError {
            field: "members",
            problem: "a member is listed twice".into(),
        });
        let text = with_causes(refused);
        assert_eq!(
            text,
            "trace start refused: invalid configuration: members: a member is listed twice"
        );
        let corrupt = TraceError::Corrupt {
            offset: 9,
            problem: "entry kind 7".into(),
        };
        assert_eq!(
            with_causes(corrupt),
            "corrupt trace at byte 9: entry kind 7"
        );
    }
}
