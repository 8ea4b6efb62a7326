//! The trait an embedding application implements to receive the committed log, in order.
//!
//! Invariants: on every node, the state machine sees the same commands at the same indices in the
//! same order (state-machine safety, docs/protocol.md), so replicas that start empty
//! and apply the same commands reach the same state.

use alpo_core::LogIndex;

/// An application's deterministic state machine, fed committed commands by the node.
///
/// The node keeps no snapshots: each start of the node (each *incarnation*) begins with the
/// state machine the application hands to `Server::start` — normally empty — and replays every
/// committed command from the start of the log.
pub trait StateMachine: Send + 'static {
    /// Applies the command committed at `index` and returns the answer for the client that
    /// proposed it.
    ///
    /// # Correctness
    /// - Called exactly once per committed command, in strictly increasing index order, within
    ///   one incarnation. Indices may skip entries that are not commands for the state machine
    ///   (no-ops, plain log appends, retried duplicates), never a committed command.
    /// - The command is committed and durable on this node before this call: it will never be
    ///   undone, so the state machine may expose its effects at once.
    /// - Must be deterministic: the same commands in the same order must give the same state and
    ///   the same answers on every node, with no clock, randomness or environment involved.
    /// - Runs on the node's apply thread; a slow `apply` delays answers to clients and, once the
    ///   apply queue is full, the node's event loop.
    /// - Must not panic on any input: a malformed command should produce an error answer that
    ///   the application's client understands.
    fn apply(&mut self, index: LogIndex, command: &[u8]) -> Vec<u8>;
}
