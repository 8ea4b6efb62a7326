//! ALPO's election and replication protocol as a deterministic, sans-IO state machine.
//!
//! The core opens no files and sockets, starts no threads, reads no clock and draws no OS
//! randomness: time and a random seed come in as inputs; messages to send, writes to persist and
//! entries to apply go out as an ordered list of [`Output`]s. The same inputs give the same
//! outputs, byte for byte, which is what lets the simulator in `sim` replay any run from a seed.
//!
//! The protocol's rules (E0–E8, R1–R11, and S2–S8 for snapshots) are specified in
//! `docs/protocol.md`.
//!
//! # Driving a node
//! A driver owns the clock, the disk and the network. It feeds each [`Node`] its inputs —
//! [`Node::tick`] when [`Node::next_timeout`] comes, [`Node::on_message`],
//! [`Node::propose`], [`Node::on_persisted`] — and after each input performs
//! [`Node::take_outputs`] in order, as [`output`] documents. Here is the whole loop for three
//! servers in one process, with a perfect network and a disk that syncs at once:
//!
//! ```
//! use std::collections::VecDeque;
//! use std::time::Duration;
//!
//! use alpo_core::{Config, Instant, LogPosition, Node, NodeId, Output, Persisted, Role};
//!
//! let members = vec![NodeId(1), NodeId(2), NodeId(3)];
//! let mut now = Instant::from_millis(0);
//! let mut nodes: Vec<Node> = members
//!     .iter()
//!     .map(|id| {
//!         let config = Config::lan(*id, members.clone(), 2024);
//!         Node::new(config, Persisted::default(), now).expect("valid configuration")
//!     })
//!     .collect();
//! let mut network: VecDeque<alpo_core::Message> = VecDeque::new();
//! let mut applied: Vec<Vec<bytes::Bytes>> = vec![Vec::new(); 3];
//!
//! // Performs one node's outputs in order. A real driver would fsync the hard state before
//! // going on, hand log writes to a group-commit thread and report back with `on_persisted`;
//! // this one pretends every write is durable at once.
//! fn perform(node: &mut Node, now: Instant, network: &mut VecDeque<alpo_core::Message>,
//!            applied: &mut Vec<bytes::Bytes>) {
//!     let mut written: Option<LogPosition> = None;
//!     for output in node.take_outputs() {
//!         match output {
//!             Output::SaveHardState(_)
//!             | Output::SaveTermCeiling { .. }
//!             | Output::TruncateLog { .. } => {}
//!             Output::AppendLog { entries } => {
//!                 written = entries.last().map(|entry| entry.position());
//!             }
//!             Output::Send(message) => network.push_back(message),
//!             Output::Apply { entries } => {
//!                 applied.extend(entries.into_iter().map(|entry| entry.payload));
//!             }
//!             // Snapshots are off (`Config::snapshot_interval_entries` is `None`), so the core
//!             // never asks to take, compact, transfer or restore one.
//!             other => unreachable!("snapshots are off: {other:?}"),
//!         }
//!     }
//!     if let Some(position) = written {
//!         node.on_persisted(now, position);
//!         perform(node, now, network, applied);
//!     }
//! }
//!
//! let slot = |id: NodeId| usize::try_from(id.0 - 1).expect("small id");
//! let mut proposed = false;
//! for _ in 0..1_000 {
//!     // Time passes; nodes whose deadline came are ticked.
//!     now = now + Duration::from_millis(10);
//!     for (i, node) in nodes.iter_mut().enumerate() {
//!         if node.next_timeout().is_some_and(|due| due <= now) {
//!             node.tick(now);
//!             perform(node, now, &mut network, &mut applied[i]);
//!         }
//!     }
//!     // Messages are delivered (here: all, in order).
//!     while let Some(message) = network.pop_front() {
//!         let to = slot(message.to);
//!         nodes[to].on_message(now, message);
//!         perform(&mut nodes[to], now, &mut network, &mut applied[to]);
//!     }
//!     // Once there is a leader, a client proposes a command to it.
//!     if let Some(leader) = nodes.iter().position(|n| n.status().role == Role::Leader) {
//!         if !proposed {
//!             nodes[leader].propose(now, bytes::Bytes::from_static(b"hello")).expect("leader");
//!             perform(&mut nodes[leader], now, &mut network, &mut applied[leader]);
//!             proposed = true;
//!         }
//!     }
//!     if applied.iter().all(|log| log.iter().any(|payload| &payload[..] == b"hello")) {
//!         break;
//!     }
//! }
//! // Every server applied the command (after its leader's no-op, which has no payload).
//! for log in &applied {
//!     assert_eq!(log.iter().filter(|p| !p.is_empty()).collect::<Vec<_>>(), [&b"hello"[..]]);
//! }
//! ```
//!
//! The core keeps the log's term index and a bounded cache of recent entries, and reads older
//! entries back from the driver (`Output::ReadLog`, rule S9, [`log_read`]); with snapshots on
//! (`Config::snapshot_interval_entries`), the driver also takes snapshots, compacts its log and
//! transfers snapshots when the core asks (see [`output`]).
//!
//! # Features
//! - `sim` (off by default): the deterministic simulator (`sim`, which drives nodes at random
//!   through this public API and checks the safety properties after every step), `testkit`
//!   (this loop packaged with crash and message control, for hand-driven tests) and
//!   `InjectedBug` with `Node::inject_bug` (deliberate protocol bugs that prove the checkers
//!   bite). ALPO's own tests, xtask and benchmarks turn it on; a server does not need it.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod checkpoint;
pub mod config;
pub mod counters;
pub mod error;
pub mod faulty;
mod injected;
pub mod limits;
mod log;
pub mod log_read;
mod marks;
pub mod membership;
pub mod message;
pub mod node;
pub mod output;
mod progress;
pub mod replay;
mod rng;
#[cfg(feature = "sim")]
pub mod sim;
mod term_index;
#[cfg(feature = "sim")]
pub mod testkit;
pub mod trace;
pub mod types;

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
mod log_read_tests;
#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod read_tests;
#[cfg(test)]
mod repair_tests;
#[cfg(test)]
mod rule_tests;
#[cfg(test)]
mod snapshot_tests;

pub use checkpoint::Checkpoint;
pub use config::{Config, ReadLease};
pub use counters::Counters;
pub use error::{ConfigError, ProposeError, SnapshotReadError, TraceError, TransferError};
pub use faulty::FaultyEntry;
#[cfg(feature = "sim")]
pub use injected::InjectedBug;
pub use log_read::{LogCacheStatus, LogFault, LogReadId, LogReadResult};
pub use membership::{ConfigChange, ConfigChangeError, Configuration};
pub use message::{
    Append, AppendReply, AppendResult, FetchAnswer, FetchEntry, FetchReply, InstallSnapshot,
    Message, MessageBody, ReadIndexReply, ReadIndexRequest, ReadIndexResult, RejectHint,
    SnapshotReply, SnapshotResult, VoteReason, VoteReply, VoteRequest,
};
pub use node::{Node, Proposal, ReadError, ReadId, ReadMode, Role, Status, TraceCut};
pub use output::Output;
pub use types::{
    ClusterId, Entry, EntryKind, HardState, Incarnation, Instant, LogIndex, LogPosition, NodeId,
    Persisted, PersistedLog, Rank, SnapshotMeta, Term, TermRun, TermRunsBuilder,
};
