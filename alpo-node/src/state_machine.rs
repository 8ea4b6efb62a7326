//! The trait an embedding application implements to receive the committed log, in order, to
//! answer queries about its state, and to freeze and restore that state for snapshots.
//!
//! Invariants: on every node, the state machine sees the same commands at the same indices in the
//! same order (state-machine safety, docs/protocol.md), so replicas that start empty
//! and apply the same commands reach the same state; a snapshot image is a function of that
//! state only (rule S2), so replicas at the same applied index write the same image.

use std::io;

use alpo_core::LogIndex;

/// An application's deterministic state machine, fed committed commands by the node.
///
/// A node starts (each *incarnation*) with the state machine the application hands to
/// `Server::start` — normally empty — restores it from the newest snapshot if there is one
/// ([`StateMachine::restore`]), and applies the committed commands after it. To take a snapshot
/// the apply thread calls [`StateMachine::snapshot`] between two `apply` calls and hands the
/// frozen image to a background thread, which streams it into a snapshot file while `apply`
/// goes on (rules S1, S2).
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

    /// Issue 14: whether `query` is quick enough (a lookup: no scan of the state, no I/O, no
    /// waiting) for the node's event loop to call it itself. Reads without a log write
    /// (`Consistency`) are then answered by the event loop as soon as their read index is
    /// applied, saving the hand-off to the apply thread; otherwise (the default) every such
    /// read is answered on the apply thread.
    ///
    /// # Correctness
    /// - When this returns `true`, `query` may run on the event loop thread, never at the same
    ///   time as `apply`, `snapshot` or `restore` (the node holds a lock around each), on a
    ///   state that holds every entry up to the read's index. A slow `query` then delays the
    ///   node's heartbeats and elections, not just its answers.
    /// - Asked once, when the node starts.
    fn queries_are_quick(&self) -> bool {
        false
    }

    /// Freezes the current state — the state after every command applied so far and none
    /// after — as an image that another thread writes out later, while `apply` goes on.
    ///
    /// # Correctness
    /// - Must be cheap: O(1) or O(changed data), e.g. persistent or copy-on-write structures
    ///   (clone an `Arc` now, copy on the next write). It runs on the apply thread, which does
    ///   not apply while it runs.
    /// - The image must not change when later commands are applied, and what it writes must be
    ///   a deterministic function of the commands applied (no hash-map order, no clock), so
    ///   every replica writes the same bytes at the same index.
    fn snapshot(&self) -> Box<dyn SnapshotImage>;

    /// Replaces the whole state with the image `image` yields, as written by a
    /// [`SnapshotImage::write_to`] of this kind of state machine.
    ///
    /// # Correctness
    /// - Reads the image as a stream (never needs it in one buffer) and consumes all of it.
    /// - The bytes were checksummed by the snapshot file, but come from disk or from another
    ///   node: a malformed image is an error (`io::ErrorKind::InvalidData`, saying what is
    ///   wrong), never a panic. The node refuses to continue with a state machine that failed
    ///   to restore.
    fn restore(&mut self, image: &mut dyn io::Read) -> io::Result<()>;
}

/// A state machine's frozen state, to be written to a snapshot file on another thread.
pub trait SnapshotImage: Send + 'static {
    /// Writes the image to `out`, piece by piece (the node's writer cuts it into checksummed
    /// chunks; the image is never held in one buffer).
    fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()>;
}
