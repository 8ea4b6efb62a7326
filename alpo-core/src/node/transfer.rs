//! Leadership transfer: rules T1–T5 of the protocol (the request, the freeze, catch-up,
//! TimeoutNow, the abort).
//!
//! Invariants kept here: at most one transfer at a time, only on a leader (T1); while one runs
//! the leader accepts no proposal and no `Config` entry (T2); TimeoutNow goes to the target at
//! most once per request, and only once the target holds the leader's whole log (T3, T4); a
//! transfer still running `P_min` after its request is aborted (T5); once TimeoutNow is sent
//! the leader serves no lease read for the rest of its term (T6, `void_lease_for_transfer`).

use super::{Node, Role};
use crate::error::TransferError;
use crate::marks::hit;
use crate::message::MessageBody;
use crate::types::{Instant, NodeId, Term};

/// A leadership transfer in progress (rule T1); volatile, leader only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Transfer {
    /// The voter that should take over.
    pub(super) target: NodeId,
    /// When the request came (T5 counts from here).
    pub(super) started: Instant,
    /// TimeoutNow was sent (never twice, T5).
    pub(super) timeout_now_sent: bool,
}

impl Node {
    /// The target of the leadership transfer in progress, if any (rule T2).
    #[must_use]
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|transfer| transfer.target)
    }

    /// Rule T1: starts a transfer to `target`, or to the voter with the highest match index.
    pub(super) fn start_transfer(
        &mut self,
        now: Instant,
        target: Option<NodeId>,
    ) -> Result<NodeId, TransferError> {
        if self.role != Role::Leader {
            hit!(t1_transfer_refused_not_leader);
            return Err(TransferError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some(transfer) = self.transfer {
            return Err(TransferError::InProgress {
                target: transfer.target,
            });
        }
        let configuration = self.membership.current();
        let target = match target {
            Some(target) if target == self.config.id => return Err(TransferError::ToSelf),
            Some(target) if !configuration.is_voter(target) => {
                return Err(TransferError::NotVoter(target));
            }
            Some(target) => target,
            None => configuration
                .voters()
                .filter_map(|id| self.progress.get(&id).map(|p| (p.match_index, id)))
                .max()
                .map(|(_, id)| id)
                .ok_or(TransferError::NoOtherVoter)?,
        };
        hit!(t1_transfer_started);
        self.transfer = Some(Transfer {
            target,
            started: now,
            timeout_now_sent: false,
        });
        self.check_transfer(now);
        Ok(target)
    }

    /// Rules T3–T5 at each reply and tick: send TimeoutNow once the target holds our whole
    /// log; abort after `P_min`.
    pub(super) fn check_transfer(&mut self, now: Instant) {
        let Some(mut transfer) = self.transfer else {
            return;
        };
        if now >= transfer.started + self.config.passive_timeout_min {
            hit!(t5_transfer_aborted_after_p_min);
            self.transfer = None;
            return;
        }
        if transfer.timeout_now_sent {
            return;
        }
        let last = self.log.last_index();
        let caught_up = self
            .progress
            .get(&transfer.target)
            .is_some_and(|p| p.match_index == last);
        if !caught_up {
            hit!(t3_transfer_waits_for_catch_up);
            return;
        }
        transfer.timeout_now_sent = true;
        self.transfer = Some(transfer);
        self.send_timeout_now(transfer.target);
    }

    /// Rule T4 (leader side).
    pub(super) fn send_timeout_now(&mut self, target: NodeId) {
        hit!(t4_timeout_now_sent);
        // T6: the target may be elected before our lease would end; serve no lease read now.
        hit!(t6_lease_void_on_timeout_now);
        self.void_lease_for_transfer();
        self.send(
            target,
            self.hard_state.current_term,
            MessageBody::TimeoutNow,
        );
    }

    /// Rule T4 (target side): a voter told by its leader, in its term, stands at once, without
    /// pre-vote and ignoring deferral, with `transfer` set in its requests.
    pub(super) fn on_timeout_now(&mut self, now: Instant, from: NodeId, term: Term) {
        let obeys = term == self.hard_state.current_term
            && self.leader == Some(from)
            && self.role == Role::Passive
            && self.membership.current().is_voter(self.config.id);
        if !obeys {
            hit!(t4_timeout_now_ignored);
            return;
        }
        hit!(t4_timeout_now_starts_candidacy);
        self.start_candidacy_for_transfer(now);
    }
}
