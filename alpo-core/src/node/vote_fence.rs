//! Hard-state faults: the term ceiling (rule F8) and the vote fence after a hard-state loss
//! (rule F9).
//!
//! F8: every term this server votes or stands in is below its durable *term ceiling*, a third
//! file besides the two hard-state copies. Before voting or standing in a term `x ≥ ceiling`
//! the server first makes `ceiling := x + W` durable (`Output::SaveTermCeiling`, synchronous
//! like `SaveHardState`, listed before it): one extra sync per `W` terms.
//!
//! F9: a server whose hard state is lost (neither copy valid, `Persisted::hard_state_lost`)
//! starts at its last log term with no vote and a *vote fence* at the ceiling: it grants no vote
//! or pre-vote (`VoteReason::Abstaining`) and does not stand in a term below the fence, since it
//! may have voted in any of them. Its log is intact, so its acknowledgements still count. Below
//! the fence it makes no hard state durable either: a crash must bring it back fenced, and a
//! hard state written below the fence would hide the loss from the next start (it would load as
//! valid, with no vote, in a term it may have voted in). The fence lifts once the server's term
//! reaches it (learned from a peer); from there on it votes, stands and saves as usual.
//!
//! Invariants: when the server has voted in `current_term`, `current_term < term_ceiling`
//! (checked after every input); no vote is granted and no candidacy starts in a term below
//! `vote_fence`; no `SaveHardState` is listed while `current_term < vote_fence`.

use super::Node;
use crate::injected::injected;
use crate::marks::hit;
use crate::output::Output;
use crate::types::{HardState, Persisted, Term};

/// Rule F8's ceiling step `W` (an open design choice, docs/protocol.md §18): a larger step
/// means fewer ceiling syncs but a longer vote fence after a hard-state loss.
pub const TERM_CEILING_STEP: u64 = 16;

/// The ceiling and fence a server starts with (rules F8, F9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Fences {
    /// F8: the durable term ceiling as the core last made (or found) it.
    pub(super) term_ceiling: Term,
    /// F9: no vote, pre-vote or candidacy in a term below this (`Term(0)`: no fence).
    pub(super) vote_fence: Term,
}

/// Rule F9 at start: with the hard state lost, the persisted term and vote are void (the
/// start-up term then comes from the log, E0) and the fence is the ceiling.
pub(super) fn startup_fences(persisted: &Persisted) -> (HardState, Fences) {
    if persisted.hard_state_lost {
        hit!(f9_hard_state_lost_fences_votes);
        let fences = Fences {
            term_ceiling: persisted.term_ceiling,
            vote_fence: persisted.term_ceiling,
        };
        return (HardState::default(), fences);
    }
    let fences = Fences {
        term_ceiling: persisted.term_ceiling,
        vote_fence: Term(0),
    };
    (persisted.hard_state, fences)
}

impl Node {
    /// Rule F8 at start: a hard state with a vote at or above the ceiling (a disk written before
    /// the ceiling existed) raises it at once, so the invariant holds from the first input.
    pub(super) fn raise_ceiling_at_start(&mut self) {
        let voted_term = self.hard_state.current_term;
        if self.hard_state.voted_for.is_some() && voted_term >= self.fences.term_ceiling {
            hit!(f8_ceiling_raised_at_start);
            self.raise_ceiling_for(voted_term);
        }
    }

    /// Rule F8: before voting or standing in `term`, make the ceiling exceed it (listed before
    /// the `SaveHardState` of the vote).
    pub(super) fn raise_ceiling_for(&mut self, term: Term) {
        if term < self.fences.term_ceiling {
            return;
        }
        hit!(f8_ceiling_raised_before_vote);
        let ceiling = Term(term.0.saturating_add(TERM_CEILING_STEP));
        self.fences.term_ceiling = ceiling;
        // A `SaveHardState` just listed (a term adopted by this same input) goes after the
        // ceiling, where the vote's `SaveHardState` replaces it: one hard-state sync, not two.
        let adopted = match self.outputs.last() {
            Some(Output::SaveHardState(_)) => self.outputs.pop(),
            _ => None,
        };
        self.outputs.push(Output::SaveTermCeiling { ceiling });
        self.outputs.extend(adopted);
    }

    /// Rule F9: whether a vote or candidacy in `term` is fenced off (the server may have voted
    /// in it before its hard state was lost).
    pub(super) fn fenced(&self, term: Term) -> bool {
        term < self.fences.vote_fence && !injected!(self, IgnoreVoteFence)
    }

    /// Rule F9: the term an `Abstaining` reply to a request of `term` carries: the fence, the
    /// first term this server may vote in, so that a pre-candidate can move past it
    /// (`f9_abstaining_reply_raises_term`); `term` itself when the fence is unbounded (the
    /// ceiling was unreadable too: no term is safe, and no peer should jump to `u64::MAX`).
    pub(super) fn abstain_term(&self, term: Term) -> Term {
        if self.fences.vote_fence == Term(u64::MAX) {
            return term;
        }
        self.fences.vote_fence
    }

    /// Rule F9 before standing: a fenced server may not stand in a term below its fence, but
    /// the fence itself is a term it never voted in, so it moves its term to just below it
    /// (in memory: nothing is saved below the fence) and stands in the fence. Without this a
    /// cluster whose live voters are all fenced would never raise its term again. Returns
    /// whether it may stand: not with an unbounded fence (the ceiling was unreadable too).
    pub(super) fn step_over_fence(&mut self) -> bool {
        let next = self.hard_state.current_term.next();
        if !self.fenced(next) {
            return true;
        }
        if self.fences.vote_fence == Term(u64::MAX) {
            hit!(f9_fenced_server_never_stands);
            return false;
        }
        hit!(f9_fenced_server_stands_at_its_fence);
        self.hard_state = HardState {
            current_term: self.fences.vote_fence.prev(),
            voted_for: None,
        };
        true
    }

    /// Rule F9: whether the current hard state may be made durable (not below the fence).
    pub(super) fn hard_state_savable(&self) -> bool {
        let savable = !self.fenced(self.hard_state.current_term);
        if !savable {
            hit!(f9_hard_state_not_saved_below_fence);
        }
        savable
    }

    /// Rule F9: the vote fence while it holds (the server's term is below it), for status.
    #[must_use]
    pub fn vote_fence(&self) -> Option<Term> {
        (self.hard_state.current_term < self.fences.vote_fence).then_some(self.fences.vote_fence)
    }

    /// The term ceiling as last made durable (rule F8).
    #[must_use]
    pub fn term_ceiling(&self) -> Term {
        self.fences.term_ceiling
    }

    /// Invariants of F8 and F9 (see the module documentation).
    pub(super) fn fence_invariants(&self) {
        if injected!(self) {
            return;
        }
        assert!(
            self.hard_state.voted_for.is_none()
                || self.hard_state.current_term < self.fences.term_ceiling,
            "invariant: a vote in term {} below the term ceiling {} (F8)",
            self.hard_state.current_term,
            self.fences.term_ceiling
        );
        assert!(
            self.hard_state.voted_for.is_none() || !self.fenced(self.hard_state.current_term),
            "invariant: no vote below the vote fence (F9)"
        );
    }
}
