//! The trait an embedding application implements to receive the committed log, in order, and
//! to answer queries about its state.
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

    /// Answers `query` from the current state, without changing it, and returns the answer for
    /// the client that asked.
    ///
    /// # Correctness
    /// - The node orders a query through the log like a command, and calls this method when
    ///   the query's entry is applied: the state is exactly the one after every command before
    ///   the query's index and before none after it, so the answer is linearizable.
    /// - Must be deterministic and free of side effects (it takes `&self`): every node answers
    ///   the same query at the same index alike, and a retried query is answered from the
    ///   session table with the first answer.
    /// - Must not panic on any input, like `apply`.
    fn query(&self, query: &[u8]) -> Vec<u8>;
}
