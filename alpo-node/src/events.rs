//! Structured log events of the protocol's history (issue 15): the event loop compares the
//! core's view after each batch with the one before, and says what changed and why, in the
//! protocol's words (`tracing`, target `alpo_node::events`).
//!
//! Reasons come from the core's election counters (`alpo_core::Counters`), which name exactly
//! which election event happened in the batch, and from the term: a term that rose without a
//! candidacy of ours came with a message of a higher term (rule E6).
//!
//! Invariant: watching never changes the node; one batch gives at most one line per kind of
//! change (term, role, leader, election events).

use alpo_core::{Counters, NodeId, Role, Status};

/// What the last batch left.
#[derive(Debug)]
pub(crate) struct Watch {
    node: u64,
    role: Role,
    term: u64,
    leader: Option<NodeId>,
    counters: Counters,
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Passive => "passive",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

impl Watch {
    pub(crate) fn new(status: &Status, counters: Counters) -> Watch {
        Watch {
            node: status.id.0,
            role: status.role,
            term: status.term.0,
            leader: status.leader,
            counters,
        }
    }

    /// Logs what changed since the last batch.
    pub(crate) fn after_batch(&mut self, status: &Status, counters: Counters) {
        let before = self.counters;
        let node = self.node;
        let term = status.term.0;
        let started = counters.elections_started > before.elections_started;
        if counters.pre_votes_started > before.pre_votes_started {
            tracing::info!(
                node,
                term,
                "pre-vote started: the election timeout ran out (E1, E2)"
            );
        }
        if counters.elections_deferred > before.elections_deferred {
            tracing::info!(
                node,
                term,
                "election deferred to a higher-ranked candidate (E8)"
            );
        }
        let refused = counters.pre_votes_refused - before.pre_votes_refused;
        if refused > 0 {
            tracing::debug!(node, term, refused, "pre-votes refused");
        }
        if term != self.term {
            let reason = if started {
                "own candidacy (E3)"
            } else {
                "a message of a higher term (E6)"
            };
            tracing::info!(node, from = self.term, to = term, reason, "term changed");
        }
        if status.role != self.role {
            let reason = self.role_reason(status, before, counters);
            tracing::info!(
                node,
                term,
                from = role_name(self.role),
                to = role_name(status.role),
                reason,
                "role changed"
            );
        }
        if status.leader != self.leader {
            match status.leader {
                Some(leader) => tracing::info!(node, term, leader = leader.0, "leader known"),
                None => tracing::info!(node, term, "no leader known"),
            }
        }
        *self = Watch::new(status, counters);
    }

    fn role_reason(&self, status: &Status, before: Counters, after: Counters) -> &'static str {
        let term_rose = status.term.0 != self.term;
        match (self.role, status.role) {
            (_, Role::Leader) => "won the election: a majority voted for it (E7)",
            (_, Role::Candidate) => "stood for election: a majority granted its pre-vote (E3)",
            _ if after.elections_deferred > before.elections_deferred => {
                "deferred to a higher-ranked candidate (E8)"
            }
            _ if term_rose => "a message of a higher term (E6)",
            (Role::Leader, _) => "lost the quorum: too few followers answered (E5)",
            _ => "the election did not succeed in its cycle (E1)",
        }
    }
}

#[cfg(test)]
mod tests {
    use alpo_core::{LogIndex, Term};

    use super::*;

    fn status(role: Role, term: u64) -> Status {
        Status {
            id: NodeId(1),
            role,
            term: Term(term),
            leader: None,
            commit_index: LogIndex(0),
            last_index: LogIndex(0),
            durable_index: LogIndex(0),
            applied_index: LogIndex(0),
            snapshot_index: LogIndex(0),
            first_index: LogIndex(1),
            repair_from: None,
            faulty_count: 0,
        }
    }

    #[test]
    fn each_role_change_gets_its_rule() {
        let none = Counters::default();
        let deferred = Counters {
            elections_deferred: 1,
            ..none
        };
        let reason = |from: Role, from_term, to: Role, to_term, after| {
            let watch = Watch::new(&status(from, from_term), none);
            watch.role_reason(&status(to, to_term), none, after)
        };
        let cases = [
            (reason(Role::Candidate, 2, Role::Leader, 2, none), "(E7)"),
            (reason(Role::Passive, 1, Role::Candidate, 2, none), "(E3)"),
            (
                reason(Role::Candidate, 2, Role::Passive, 2, deferred),
                "(E8)",
            ),
            (reason(Role::Leader, 2, Role::Passive, 3, none), "(E6)"),
            (reason(Role::Leader, 2, Role::Passive, 2, none), "(E5)"),
            (reason(Role::Candidate, 2, Role::Passive, 2, none), "(E1)"),
        ];
        for (reason, rule) in cases {
            assert!(reason.ends_with(rule), "{reason} should cite {rule}");
        }
    }
}
