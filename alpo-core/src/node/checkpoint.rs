//! Taking a checkpoint of the node and rebuilding one from it (issue 15; the format and why it
//! is complete: `crate::checkpoint`).
//!
//! Invariant: a checkpoint is taken only with no output pending, so the outputs, which it
//! leaves out, are empty on both sides; the rebuilt node is the checkpointed one in every other
//! field.

use super::Node;
use crate::checkpoint::{self, Checkpoint};
use crate::error::TraceError;
use crate::trace::Recorder;
use crate::types::Instant;

/// A cut of a recorded node's trace ([`Node::cut_trace`]): the end of the current piece, and
/// the beginning of the next, which starts with a checkpoint.
#[derive(Clone, Debug)]
pub struct TraceCut {
    /// The trace recorded since the last [`Node::take_trace`]: the end of the current piece.
    pub tail: Vec<u8>,
    /// The next piece's header and checkpoint record; the node records on after it.
    pub head: Vec<u8>,
    /// The checkpoint the head holds.
    pub checkpoint: Checkpoint,
}

impl Node {
    /// The node's complete volatile state at `now` (the time of its last input or later), or
    /// `None` while outputs are pending: take them first ([`Node::take_outputs`]).
    #[must_use]
    pub fn checkpoint(&self, now: Instant) -> Option<Checkpoint> {
        if !self.outputs.is_empty() {
            return None;
        }
        #[cfg(feature = "sim")]
        let bug_code = self
            .injected_bug
            .map_or(0, crate::injected::InjectedBug::code);
        #[cfg(not(feature = "sim"))]
        let bug_code = 0;
        Some(Checkpoint {
            now,
            bug_code,
            state: checkpoint::encode(self),
        })
    }

    /// A node in the state `checkpoint` holds, not recording. A checkpoint that names an
    /// injected bug needs alpo-core's `sim` feature.
    pub fn from_checkpoint(checkpoint: &Checkpoint) -> Result<Node, TraceError> {
        let corrupt = |problem: String| TraceError::Corrupt {
            offset: 0,
            problem: format!("checkpoint: {problem}"),
        };
        #[cfg_attr(not(feature = "sim"), allow(unused_mut))]
        let mut node: Node = checkpoint::decode(&checkpoint.state).map_err(corrupt)?;
        node.config.validate().map_err(TraceError::Config)?;
        if checkpoint.bug_code != 0 {
            #[cfg(feature = "sim")]
            {
                let bug = crate::injected::InjectedBug::from_code(checkpoint.bug_code)
                    .ok_or_else(|| corrupt(format!("injected bug {}", checkpoint.bug_code)))?;
                node.injected_bug = Some(bug);
            }
            #[cfg(not(feature = "sim"))]
            return Err(corrupt(format!(
                "injected bug {} (replay it with alpo-core's `sim` feature)",
                checkpoint.bug_code
            )));
        }
        Ok(node)
    }

    /// Like [`Node::from_checkpoint`], recording its inputs from there: its trace begins with
    /// the checkpoint.
    pub fn from_checkpoint_recorded(checkpoint: &Checkpoint) -> Result<Node, TraceError> {
        let mut node = Node::from_checkpoint(checkpoint)?;
        node.recorder = Some(Recorder::resume(checkpoint));
        Ok(node)
    }

    /// Cuts a recorded node's trace at `now` (the flight recorder's file rotation): the trace so
    /// far, and the next piece's beginning, a checkpoint, after which the node records on.
    /// `None` (and nothing taken) when the node does not record or has outputs pending.
    pub fn cut_trace(&mut self, now: Instant) -> Option<TraceCut> {
        self.recorder.as_ref()?;
        let checkpoint = self.checkpoint(now)?;
        let recorder = self.recorder.as_mut()?;
        let tail = recorder.take();
        let mut next = Recorder::resume(&checkpoint);
        let head = next.take();
        *recorder = next;
        Some(TraceCut {
            tail,
            head,
            checkpoint,
        })
    }
}
