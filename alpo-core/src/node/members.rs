//! Membership changes at the node: rules M1–M11 of the protocol (the configuration in force,
//! one change at a time, the 2015 fix, single steps, quorums of voters, who stands, learners,
//! catch-up before promotion, removing the leader, non-members' messages).
//!
//! Invariants kept here: every entry enters the log through `append_entry`, every truncation
//! through `truncate_log`, so `Membership` sees every `Config` entry come and go (M1); a leader
//! appends a `Config` entry only with no other above its commit index (M2), after committing an
//! entry of its term (M3), never during a transfer (T2), and only a single step (M4); the
//! leader's progress map always holds exactly the other members of its configuration in force;
//! a learner is promoted only after a catch-up round shorter than `P_min` (M8).

use super::{Node, Role};
use std::collections::BTreeMap;

use crate::error::ConfigError;
use crate::injected::injected;
use crate::limits;
use crate::marks::hit;
use crate::membership::{ConfigChange, ConfigChangeError, Configuration, Membership};
use crate::node::Proposal;
use crate::output::Output;
use crate::progress::Progress;
use crate::types::{Entry, EntryKind, Instant, LogIndex, NodeId, Persisted};

/// A `Config` entry's payload: the configuration, then the driver's annex (issue 12).
fn with_annex(next: Configuration, annex: &[u8]) -> bytes::Bytes {
    if annex.is_empty() {
        return next.encode();
    }
    let mut payload = next.encode().to_vec();
    payload.extend_from_slice(annex);
    payload.into()
}

/// A learner's catch-up before its promotion (rule M8); volatile, leader only.
#[derive(Clone, Copy, Debug)]
pub(super) struct CatchUp {
    /// The learner to promote.
    pub(super) learner: NodeId,
    /// The leader's last index when the round started: the round ends when the learner holds it.
    pub(super) round_end: LogIndex,
    /// When the round started.
    pub(super) round_started: Instant,
    /// Rounds started so far, this one included.
    pub(super) rounds: u64,
}

impl Node {
    /// The configuration in force (rule M1): the latest in the log, else the snapshot's (or the
    /// bootstrap one, `Config::members`; empty for a server added later).
    #[must_use]
    pub fn configuration(&self) -> Configuration {
        self.membership.current()
    }

    /// On the leader, each other member's match index (rule R4's `match[j]`), for status and
    /// `alpo member list`; empty on any other server.
    #[must_use]
    pub fn match_indexes(&self) -> Vec<(NodeId, LogIndex)> {
        if self.role != Role::Leader {
            return Vec::new();
        }
        let progress = self.progress.iter();
        progress.map(|(id, p)| (*id, p.match_index)).collect()
    }

    /// Every entry enters the log here, so the configuration follows the log (M1).
    pub(super) fn append_entry(&mut self, entry: Entry) {
        let changed = self.membership.on_append(&entry);
        if entry.kind == EntryKind::Config && self.role == Role::Leader {
            // Q3: no lease read until a round started after this entry confirms.
            self.void_lease_for_config_change();
        }
        self.log.push(entry);
        if changed {
            hit!(m1_configuration_in_force_when_appended);
            self.configuration_changed();
        }
    }

    /// The configuration in force changed (an append, a truncation or an install): tell the
    /// driver and keep the leader's progress map equal to the other members (M7). (A campaign
    /// never sees a change: the Append or chunk that brings one ends it first, E6/E8.)
    pub(super) fn configuration_changed(&mut self) {
        let configuration = self.membership.current();
        self.outputs.push(Output::Membership { configuration });
        let me = self.config.id;
        if self.role == Role::Leader {
            let last = self.log.last_index();
            self.progress.retain(|id, _| configuration.contains(*id));
            for member in configuration.members().filter(|id| *id != me) {
                self.progress
                    .entry(member)
                    .or_insert_with(|| Progress::new(last));
            }
            if let Some(catch_up) = self.catch_up
                && !configuration.is_learner(catch_up.learner)
            {
                self.end_catch_up(Err(ConfigChangeError::NotLearner(catch_up.learner)));
            }
            if let Some(transfer) = self.transfer
                && !configuration.is_voter(transfer.target)
            {
                self.transfer = None;
            }
        }
    }

    /// Whether this leader has committed an entry of its current term (rule M3; Q1a).
    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit_known) == Some(self.hard_state.current_term)
    }

    /// Rules M2–M4, M8, M10, T2: checks a change and appends it, or starts a learner's catch-up.
    pub(super) fn start_config_change(
        &mut self,
        now: Instant,
        change: ConfigChange,
    ) -> Result<(), ConfigChangeError> {
        if self.role != Role::Leader {
            return Err(ConfigChangeError::NotLeader {
                leader_hint: self.leader,
            });
        }
        if let Some(transfer) = self.transfer {
            hit!(t2_change_refused_while_transferring);
            return Err(ConfigChangeError::Transferring {
                target: transfer.target,
            });
        }
        if !self.config.pre_vote && !self.config.check_quorum {
            hit!(m10_change_refused_without_protection);
            return Err(ConfigChangeError::Unprotected);
        }
        if !self.committed_in_term() && !injected!(self, ConfigChangeBeforeTermCommit) {
            hit!(m3_change_waits_for_a_commit_of_the_term);
            return Err(ConfigChangeError::LeaderNotReady);
        }
        let pending = self
            .membership
            .latest_index()
            .is_some_and(|index| index > self.commit_known);
        if pending || self.catch_up.is_some() {
            hit!(m2_one_change_at_a_time);
            return Err(ConfigChangeError::ChangeInProgress);
        }
        let next = self.membership.current().apply(change)?;
        if let ConfigChange::Promote(learner) = change {
            // M8: catch up in rounds first; the promotion is appended when a round is short.
            hit!(m8_promotion_starts_catch_up);
            self.catch_up = Some(CatchUp {
                learner,
                round_end: self.log.last_index(),
                round_started: now,
                rounds: 1,
            });
            self.check_catch_up(now);
            return Ok(());
        }
        self.append_config(change, next);
        Ok(())
    }

    /// Appends the `Config` entry of `change` (in force at once, M1) and reports it.
    fn append_config(&mut self, change: ConfigChange, next: Configuration) {
        debug_assert!(next.is_single_step_from(&self.membership.current()));
        let term = self.hard_state.current_term;
        let index = self.log.last_index().next();
        self.append_entry(Entry {
            index,
            term,
            kind: EntryKind::Config,
            payload: with_annex(next, &self.config_annex),
        });
        self.outputs.push(Output::ConfigChange {
            change,
            result: Ok(Proposal { index, term }),
        });
    }

    /// Rule M8: at each reply and tick, see whether the learner finished its round: a round
    /// shorter than `P_min` appends the promotion; a round longer than `P_min` (finished or
    /// not) starts the next one, until `CATCHUP_ROUNDS_MAX` rounds failed.
    pub(super) fn check_catch_up(&mut self, now: Instant) {
        let Some(mut catch_up) = self.catch_up else {
            return;
        };
        let matched = self
            .progress
            .get(&catch_up.learner)
            .map_or(LogIndex(0), |p| p.match_index);
        let elapsed = now.saturating_duration_since(catch_up.round_started);
        let short = elapsed < self.config.passive_timeout_min;
        if matched >= catch_up.round_end && short {
            hit!(m8_learner_promoted_after_a_short_round);
            self.catch_up = None;
            let change = ConfigChange::Promote(catch_up.learner);
            match self.membership.current().apply(change) {
                Ok(next) => self.append_config(change, next),
                Err(error) => self.report_change(change, Err(error)),
            }
            return;
        }
        if matched < catch_up.round_end && short {
            return;
        }
        if catch_up.rounds >= limits::CATCHUP_ROUNDS_MAX {
            hit!(m8_catch_up_fails_after_slow_rounds);
            self.end_catch_up(Err(ConfigChangeError::CatchUpFailed(catch_up.learner)));
            return;
        }
        catch_up.rounds += 1;
        catch_up.round_end = self.log.last_index();
        catch_up.round_started = now;
        self.catch_up = Some(catch_up);
    }

    /// Ends a catch-up without a promotion and reports why.
    pub(super) fn end_catch_up(&mut self, result: Result<Proposal, ConfigChangeError>) {
        if let Some(catch_up) = self.catch_up.take() {
            self.report_change(ConfigChange::Promote(catch_up.learner), result);
        }
    }

    fn report_change(&mut self, change: ConfigChange, result: Result<Proposal, ConfigChangeError>) {
        self.outputs.push(Output::ConfigChange { change, result });
    }

    /// Rule M9: a leader whose configuration without itself has committed hands over (T4 to the
    /// most up-to-date voter, if it holds our whole log) and steps down; it never stands again
    /// while not a voter (M6).
    pub(super) fn maybe_leave_after_removal(&mut self, now: Instant) {
        if self.role != Role::Leader {
            return;
        }
        let configuration = self.membership.current();
        if configuration.is_voter(self.config.id) {
            return;
        }
        let committed = self
            .membership
            .latest_index()
            .is_none_or(|index| index <= self.commit_known);
        if !committed {
            return;
        }
        hit!(m9_removed_leader_steps_down_after_commit);
        let last = self.log.last_index();
        let best = configuration
            .voters()
            .filter_map(|id| self.progress.get(&id).map(|p| (p.match_index, id)))
            .max();
        if let Some((matched, target)) = best
            && matched == last
        {
            self.send_timeout_now(target);
        }
        self.step_down(now);
    }
}

/// The configuration a server starts with (rule M1): the latest `Config` entry of its log
/// above its snapshot, else its snapshot's, else the bootstrap one from `Config::members` (all
/// voters; empty for a server added later, M11). A `Config` entry that does not decode is
/// refused, naming its index.
pub(super) fn load_membership(
    members: &[NodeId],
    persisted: &Persisted,
) -> Result<Membership, ConfigError> {
    let snapshot = persisted.snapshot.map(|meta| meta.configuration);
    let base = match snapshot {
        Some(configuration) if !configuration.is_empty() => configuration,
        _ => Configuration::new(members, &[]).unwrap_or_default(),
    };
    let mut membership = Membership::new(base);
    let covered = persisted
        .snapshot
        .map_or(LogIndex(0), |meta| meta.last.index);
    // The recovery scan's Config entries and the tail's, once each, in index order.
    let mut configs: BTreeMap<LogIndex, &Entry> = BTreeMap::new();
    for entry in persisted.log.configs.iter().chain(&persisted.log.tail) {
        if entry.kind == EntryKind::Config && entry.index > covered {
            configs.insert(entry.index, entry);
        }
    }
    for entry in configs.into_values() {
        if Configuration::decode(&entry.payload).is_err() {
            return Err(ConfigError {
                field: "persisted.log.configs",
                problem: format!("the Config entry at {} does not decode", entry.index),
            });
        }
        let _ = membership.on_append(entry);
    }
    Ok(membership)
}
