//! ALPO's election and replication protocol as a deterministic, sans-IO state machine.
//!
//! The core opens no files and sockets, starts no threads, reads no clock and draws no OS
//! randomness: time and a random seed come in as inputs; messages to send, writes to persist and
//! entries to apply go out as an ordered list of [`Output`]s. The same inputs give the same
//! outputs, byte for byte, which is what lets the simulator in `sim` replay any run from a seed.
//!
//! The protocol's rules (E0–E8, R1–R11) are specified in `docs/protocol.md`.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod config;
mod election;
pub mod error;
pub mod limits;
mod log;
mod marks;
pub mod message;
pub mod node;
pub mod output;
mod progress;
mod replication;
mod rng;
pub mod sim;
pub mod testkit;
pub mod trace;
pub mod types;

#[cfg(test)]
mod rule_tests;

pub use config::{Config, InjectedBug};
pub use error::{ConfigError, ProposeError, TraceError};
pub use message::{
    Append, AppendReply, AppendResult, Message, MessageBody, RejectHint, VoteReason, VoteReply,
    VoteRequest,
};
pub use node::{Node, Persisted, Proposal, Role, Status};
pub use output::Output;
pub use types::{
    ClusterId, Entry, EntryKind, HardState, Incarnation, Instant, LogIndex, LogPosition, NodeId,
    Rank, Term,
};
