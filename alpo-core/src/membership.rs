//! Cluster membership: configurations `(voters, learners)`, single-step changes, quorums, and the
//! tracker of the configuration in force (rules M1–M5, M7 of docs/protocol.md).
//!
//! # Invariants
//! - A [`Configuration`] holds at most [`MEMBERS_MAX`] distinct ids, sorted, each either a voter
//!   or a learner (disjoint sets, M1). It is `Copy` so that it can travel inside `SnapshotMeta`.
//! - Every majority the core counts (votes, pre-votes, commit, check-quorum) is
//!   [`Configuration::is_quorum`] or [`Configuration::quorum_index`] of the counting server's
//!   configuration in force: only voters count, a learner never does (M5, M7).
//! - A change ([`ConfigChange`]) moves the voter set by exactly one id (M4).
//! - `Membership` (crate-private) knows the configuration of the newest snapshot (or the
//!   bootstrap one) and every `Config` entry of the retained log, as `(index, configuration)`
//!   in index order. It is told of every append, truncation, compaction and install by small
//!   hook calls and never scans the log; the configuration in force is the last of its list,
//!   else the base one (M1).

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::types::{Entry, EntryKind, LogIndex, NodeId};

/// Most members (voters and learners together) one configuration may hold. Beyond it a change
/// is refused with [`ConfigChangeError::TooManyMembers`].
pub const MEMBERS_MAX: usize = 9;

/// Version byte at the start of an encoded configuration (docs/formats.md, issue 12).
const ENCODING_VERSION: u8 = 1;

/// A cluster configuration: who votes and who only learns (rule M1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Configuration {
    /// Member ids in ascending order; only the first `len` are meaningful (the rest are 0).
    ids: [u64; MEMBERS_MAX],
    /// Bit `i` set: member `i` is a learner.
    learner_bits: u16,
    /// How many members.
    len: u8,
}

/// One single-step membership change (rule M4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigChange {
    /// Add a new server as a learner (it receives the log, never votes: M7).
    AddLearner(NodeId),
    /// Make a learner a voter, once it has caught up (M8).
    Promote(NodeId),
    /// Remove a voter or a learner, the leader included (M9).
    Remove(NodeId),
}

/// Why a membership change was refused or failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConfigChangeError {
    /// This server is not the leader (rule R1); `leader_hint` is the leader it last heard from.
    NotLeader {
        /// The leader this server believes in, if any.
        leader_hint: Option<NodeId>,
    },
    /// A `Config` entry above the commit index is still pending (rule M2); retry later.
    ChangeInProgress,
    /// The leader has not yet committed an entry of its term (rule M3); retry shortly.
    LeaderNotReady,
    /// A leadership transfer is in progress (rule T2); retry after it.
    Transferring {
        /// The transfer's target.
        target: NodeId,
    },
    /// The server to add is already a member.
    AlreadyMember(NodeId),
    /// The server named is not a member (or, for a promotion, not a learner).
    NotMember(NodeId),
    /// The server to promote is not a learner.
    NotLearner(NodeId),
    /// The change would remove the last voter.
    LastVoter(NodeId),
    /// The configuration would exceed [`MEMBERS_MAX`] members.
    TooManyMembers,
    /// The learner did not catch up within `catchup_rounds_max` rounds (rule M8).
    CatchUpFailed(NodeId),
    /// Neither pre-vote nor check-quorum is on: a removed server could disrupt (rule M10).
    Unprotected,
    /// Leadership changed before the change could be appended (M8's catch-up was abandoned).
    Abandoned,
}

impl Configuration {
    /// A configuration of these voters and learners; `None` if an id is listed twice, in both
    /// sets, or there are more than [`MEMBERS_MAX`].
    #[must_use]
    pub fn new(voters: &[NodeId], learners: &[NodeId]) -> Option<Configuration> {
        let mut all: Vec<(u64, bool)> = voters
            .iter()
            .map(|id| (id.0, false))
            .chain(learners.iter().map(|id| (id.0, true)))
            .collect();
        if all.len() > MEMBERS_MAX {
            return None;
        }
        all.sort_unstable();
        if all.windows(2).any(|pair| pair[0].0 == pair[1].0) {
            return None;
        }
        let mut configuration = Configuration::default();
        for (slot, (id, learner)) in all.into_iter().enumerate() {
            configuration.ids[slot] = id;
            if learner {
                configuration.learner_bits |= 1 << slot;
            }
        }
        configuration.len = u8::try_from(voters.len() + learners.len()).ok()?;
        Some(configuration)
    }

    /// Whether the configuration has no member at all (a server added later starts so, M11).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slots(&self) -> impl Iterator<Item = (NodeId, bool)> + '_ {
        (0..usize::from(self.len))
            .map(|slot| (NodeId(self.ids[slot]), self.learner_bits & (1 << slot) != 0))
    }

    /// Every member, voters and learners, in id order.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slots().map(|(id, _)| id)
    }

    /// The voters, in id order.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slots()
            .filter(|(_, learner)| !learner)
            .map(|(id, _)| id)
    }

    /// The learners, in id order.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.slots()
            .filter(|(_, learner)| *learner)
            .map(|(id, _)| id)
    }

    /// Whether `id` is a voter.
    #[must_use]
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.slots()
            .any(|(member, learner)| member == id && !learner)
    }

    /// Whether `id` is a learner.
    #[must_use]
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.slots()
            .any(|(member, learner)| member == id && learner)
    }

    /// Whether `id` is a voter or a learner.
    #[must_use]
    pub fn contains(&self, id: NodeId) -> bool {
        self.members().any(|member| member == id)
    }

    /// The number of voters.
    #[must_use]
    pub fn voter_count(&self) -> usize {
        self.voters().count()
    }

    /// How many voters make a majority (rule M5); 1 for a configuration without voters, so that
    /// no empty set is ever a quorum.
    #[must_use]
    pub fn majority(&self) -> usize {
        self.voter_count() / 2 + 1
    }

    /// Rule M5, the one place a majority is counted: whether the voters among `ids` (each
    /// counted once, learners and strangers never) are a majority of this configuration.
    #[must_use]
    pub fn is_quorum(&self, ids: impl IntoIterator<Item = NodeId>) -> bool {
        let mut counted: Vec<NodeId> = ids.into_iter().filter(|id| self.is_voter(*id)).collect();
        counted.sort_unstable();
        counted.dedup();
        self.voter_count() > 0 && counted.len() >= self.majority()
    }

    /// Rule M5 for commit (R5): the highest index that a majority of the voters hold, given each
    /// voter's match index (`match_of`); 0 if there are no voters.
    #[must_use]
    pub fn quorum_index(&self, match_of: impl Fn(NodeId) -> LogIndex) -> LogIndex {
        let mut matches: Vec<LogIndex> = self.voters().map(match_of).collect();
        if matches.is_empty() {
            return LogIndex(0);
        }
        matches.sort_unstable_by(|a, b| b.cmp(a));
        matches[self.majority() - 1]
    }

    /// The configuration after `change`, or why it is not a valid single step (rule M4).
    pub fn apply(&self, change: ConfigChange) -> Result<Configuration, ConfigChangeError> {
        let voters: Vec<NodeId> = self.voters().collect();
        let learners: Vec<NodeId> = self.learners().collect();
        let (voters, learners) = match change {
            ConfigChange::AddLearner(id) => {
                if self.contains(id) {
                    return Err(ConfigChangeError::AlreadyMember(id));
                }
                (voters, [learners, vec![id]].concat())
            }
            ConfigChange::Promote(id) => {
                if !self.is_learner(id) {
                    return Err(if self.contains(id) {
                        ConfigChangeError::NotLearner(id)
                    } else {
                        ConfigChangeError::NotMember(id)
                    });
                }
                let learners = learners.into_iter().filter(|l| *l != id).collect();
                ([voters, vec![id]].concat(), learners)
            }
            ConfigChange::Remove(id) => {
                if !self.contains(id) {
                    return Err(ConfigChangeError::NotMember(id));
                }
                if self.is_voter(id) && self.voter_count() == 1 {
                    return Err(ConfigChangeError::LastVoter(id));
                }
                let keep = |list: Vec<NodeId>| list.into_iter().filter(|m| *m != id).collect();
                (keep(voters), keep(learners))
            }
        };
        Configuration::new(&voters, &learners).ok_or(ConfigChangeError::TooManyMembers)
    }

    /// Rule M4 between two consecutive configurations: the voter sets differ by at most one id.
    #[must_use]
    pub fn is_single_step_from(&self, previous: &Configuration) -> bool {
        let added = self.voters().filter(|id| !previous.is_voter(*id)).count();
        let removed = previous.voters().filter(|id| !self.is_voter(*id)).count();
        added + removed <= 1
    }

    /// Whether every majority of `self`'s voters meets every majority of `other`'s (property 11,
    /// enumerated: for at most [`MEMBERS_MAX`] voters the check is exact, not a formula).
    #[must_use]
    pub fn quorums_intersect(&self, other: &Configuration) -> bool {
        // Two majorities fail to meet iff some majority A of `self` and some majority B of
        // `other` are disjoint: choose A among the voters `other` lacks first, then shared ones;
        // B takes what A left. Counting is exact for set systems of this shape.
        let shared = self.voters().filter(|id| other.is_voter(*id)).count();
        let only_self = self.voter_count() - shared;
        let only_other = other.voter_count() - shared;
        // A uses `only_self` first, then `need_a` shared voters; B needs its majority from the
        // rest of the shared voters plus `only_other`.
        let need_a = self.majority().saturating_sub(only_self);
        if need_a > shared {
            return true;
        }
        let left_for_b = (shared - need_a) + only_other;
        left_for_b < other.majority() || self.voter_count() == 0 || other.voter_count() == 0
    }

    /// The payload of a `Config` entry: version, count, then per member its id and role.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(2 + 9 * usize::from(self.len));
        out.put_u8(ENCODING_VERSION);
        out.put_u8(self.len);
        for (id, learner) in self.slots() {
            out.put_u64_le(id.0);
            out.put_u8(u8::from(learner));
        }
        out.freeze()
    }

    /// Decodes a `Config` entry's payload; the error says what is wrong. Bytes after the
    /// members are the driver's annex and are ignored here ([`Configuration::decode_with_annex`]).
    pub fn decode(bytes: &[u8]) -> Result<Configuration, String> {
        let (&version, rest) = bytes.split_first().ok_or("configuration: empty payload")?;
        if version != ENCODING_VERSION {
            return Err(format!("configuration: unknown encoding version {version}"));
        }
        let (&count, mut rest) = rest.split_first().ok_or("configuration: no member count")?;
        let mut voters = Vec::new();
        let mut learners = Vec::new();
        for member in 0..count {
            if rest.len() < 9 {
                return Err(format!("configuration: member {member} is cut short"));
            }
            let mut id = [0; 8];
            id.copy_from_slice(&rest[..8]);
            let id = NodeId(u64::from_le_bytes(id));
            match rest[8] {
                0 => voters.push(id),
                1 => learners.push(id),
                role => return Err(format!("configuration: member {id} has role byte {role}")),
            }
            rest = &rest[9..];
        }
        Configuration::new(&voters, &learners)
            .ok_or_else(|| "configuration: a member is listed twice, or too many".to_string())
    }

    /// Decodes a `Config` entry's payload (or a snapshot's membership bytes) and returns the
    /// bytes after the configuration: the driver's annex (`Node::set_config_annex`), which
    /// the core carries but never reads. `decode` is this without the annex.
    pub fn decode_with_annex(bytes: &[u8]) -> Result<(Configuration, &[u8]), String> {
        let configuration = Configuration::decode(bytes)?;
        let encoded = 2 + 9 * usize::from(configuration.len);
        Ok((configuration, &bytes[encoded..]))
    }
}

/// Every field, each id one by one: not derived, because std hashes an integer array as one
/// byte slice, which the trace's output digest counts by its length only (`trace::outputs_digest`).
impl std::hash::Hash for Configuration {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        for id in &self.ids {
            state.write_u64(*id);
        }
        state.write_u16(self.learner_bits);
        state.write_u8(self.len);
    }
}

impl fmt::Debug for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |ids: Vec<NodeId>| {
            ids.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        write!(
            f,
            "voters {{{}}} learners {{{}}}",
            list(self.voters().collect()),
            list(self.learners().collect())
        )
    }
}

impl fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigChange::AddLearner(id) => write!(f, "add node {id} as a learner"),
            ConfigChange::Promote(id) => write!(f, "promote node {id} to voter"),
            ConfigChange::Remove(id) => write!(f, "remove node {id}"),
        }
    }
}

impl ConfigChange {
    /// The server the change is about.
    #[must_use]
    pub fn node(self) -> NodeId {
        match self {
            ConfigChange::AddLearner(id) | ConfigChange::Promote(id) | ConfigChange::Remove(id) => {
                id
            }
        }
    }
}

impl fmt::Display for ConfigChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigChangeError::NotLeader {
                leader_hint: Some(id),
            } => write!(f, "not the leader; the leader is node {id}"),
            ConfigChangeError::NotLeader { leader_hint: None } => {
                write!(f, "not the leader; no leader is known")
            }
            ConfigChangeError::ChangeInProgress => {
                write!(f, "another membership change is not committed yet")
            }
            ConfigChangeError::LeaderNotReady => {
                write!(f, "the leader has not committed an entry of its term yet")
            }
            ConfigChangeError::Transferring { target } => {
                write!(f, "leadership is being transferred to node {target}")
            }
            ConfigChangeError::AlreadyMember(id) => write!(f, "node {id} is already a member"),
            ConfigChangeError::NotMember(id) => write!(f, "node {id} is not a member"),
            ConfigChangeError::NotLearner(id) => write!(f, "node {id} is not a learner"),
            ConfigChangeError::LastVoter(id) => {
                write!(f, "node {id} is the last voter and cannot be removed")
            }
            ConfigChangeError::TooManyMembers => {
                write!(f, "a configuration holds at most {MEMBERS_MAX} members")
            }
            ConfigChangeError::CatchUpFailed(id) => {
                write!(f, "learner {id} did not catch up with the leader's log")
            }
            ConfigChangeError::Unprotected => write!(
                f,
                "membership changes need pre_vote or check_quorum (a removed server could disrupt)"
            ),
            ConfigChangeError::Abandoned => {
                write!(f, "leadership changed before the change was appended")
            }
        }
    }
}

impl std::error::Error for ConfigChangeError {}

/// The configuration in force and the history it can revert to (rule M1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Membership {
    /// The configuration below every listed entry: the newest snapshot's, else the bootstrap
    /// one (`Config::members`, empty for a server added later).
    base: Configuration,
    /// `Config` entries of the retained log, in index order.
    entries: Vec<(LogIndex, Configuration)>,
}

impl Membership {
    /// A tracker whose configuration in force is `base` until a `Config` entry arrives.
    pub(crate) fn new(base: Configuration) -> Membership {
        Membership {
            base,
            entries: Vec::new(),
        }
    }

    /// The configuration in force: the latest in the log, else the base (M1).
    pub(crate) fn current(&self) -> Configuration {
        self.entries.last().map_or(self.base, |(_, config)| *config)
    }

    /// Index of the latest `Config` entry, if the log holds one.
    pub(crate) fn latest_index(&self) -> Option<LogIndex> {
        self.entries.last().map(|(index, _)| *index)
    }

    /// The configuration in force at `index` (for a snapshot's meta, S1).
    pub(crate) fn at(&self, index: LogIndex) -> Configuration {
        self.entries
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .map_or(self.base, |(_, config)| *config)
    }

    /// Hook: an entry was appended. Returns whether the configuration in force changed. A
    /// `Config` entry whose payload does not decode is ignored here; `Node` checks payloads of
    /// network input before appending them.
    pub(crate) fn on_append(&mut self, entry: &Entry) -> bool {
        if entry.kind != EntryKind::Config {
            return false;
        }
        let Ok(config) = Configuration::decode(&entry.payload) else {
            debug_assert!(false, "an undecodable Config entry reached the log");
            return false;
        };
        debug_assert!(self.latest_index().is_none_or(|at| at < entry.index));
        let before = self.current();
        self.entries.push((entry.index, config));
        before != config
    }

    /// Hook: the log was truncated from `from` (R4); reverts to the latest remaining (M1).
    pub(crate) fn on_truncate(&mut self, from: LogIndex) -> bool {
        let before = self.current();
        self.entries.retain(|(index, _)| *index < from);
        before != self.current()
    }

    /// Hook: entries up to `through` are now covered by a snapshot whose configuration is
    /// `snapshot`; entries after it stay (S7 keeping a suffix, or compaction, S4).
    pub(crate) fn on_snapshot(&mut self, through: LogIndex, snapshot: Configuration) -> bool {
        let before = self.current();
        self.base = snapshot;
        self.entries.retain(|(index, _)| *index > through);
        before != self.current()
    }

    /// Hook: the whole log was discarded for a snapshot (S7).
    pub(crate) fn on_reset(&mut self, snapshot: Configuration) -> bool {
        let before = self.current();
        self.base = snapshot;
        self.entries.clear();
        before != self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[u64]) -> Vec<NodeId> {
        list.iter().copied().map(NodeId).collect()
    }

    fn conf(voters: &[u64], learners: &[u64]) -> Configuration {
        Configuration::new(&ids(voters), &ids(learners)).unwrap()
    }

    #[test]
    fn encoding_round_trips_and_refuses_garbage() {
        let config = conf(&[3, 1, 2], &[9]);
        assert_eq!(Configuration::decode(&config.encode()), Ok(config));
        assert_eq!(config.to_string(), "voters {1,2,3} learners {9}");
        assert!(Configuration::decode(&[]).is_err());
        assert!(Configuration::decode(&[2, 0]).is_err());
        // Bytes after the members are the driver's annex: carried, not read.
        let mut annexed = config.encode().to_vec();
        annexed.extend_from_slice(b"addresses");
        assert_eq!(Configuration::decode(&annexed), Ok(config));
        let (decoded, annex) = Configuration::decode_with_annex(&annexed).unwrap();
        assert_eq!((decoded, annex), (config, &b"addresses"[..]));
        let mut short = config.encode().to_vec();
        short.pop();
        assert!(Configuration::decode(&short).is_err());
        let mut bad_role = config.encode().to_vec();
        bad_role[10] = 7;
        assert!(Configuration::decode(&bad_role).is_err());
        assert!(Configuration::new(&ids(&[1, 2]), &ids(&[2])).is_none());
    }

    #[test]
    fn quorums_count_voters_only() {
        let config = conf(&[1, 2, 3], &[4, 5]);
        assert_eq!(config.majority(), 2);
        assert!(!config.is_quorum(ids(&[1, 4, 5])));
        assert!(config.is_quorum(ids(&[1, 3, 4])));
        assert!(!config.is_quorum(ids(&[1, 1])));
        let matches = |id: NodeId| LogIndex(10 * id.0);
        // Voters hold 10, 20, 30: a majority holds 20; learners (40, 50) do not count.
        assert_eq!(config.quorum_index(matches), LogIndex(20));
        assert!(!Configuration::default().is_quorum(ids(&[1])));
    }

    #[test]
    fn changes_are_single_steps() {
        let three = conf(&[1, 2, 3], &[]);
        let with_learner = three.apply(ConfigChange::AddLearner(NodeId(4))).unwrap();
        assert_eq!(with_learner, conf(&[1, 2, 3], &[4]));
        let four = with_learner
            .apply(ConfigChange::Promote(NodeId(4)))
            .unwrap();
        assert_eq!(four, conf(&[1, 2, 3, 4], &[]));
        assert!(four.is_single_step_from(&with_learner));
        assert!(four.quorums_intersect(&three));
        assert_eq!(
            three.apply(ConfigChange::Promote(NodeId(2))),
            Err(ConfigChangeError::NotLearner(NodeId(2)))
        );
        assert_eq!(
            three.apply(ConfigChange::AddLearner(NodeId(2))),
            Err(ConfigChangeError::AlreadyMember(NodeId(2)))
        );
        assert_eq!(
            conf(&[1], &[]).apply(ConfigChange::Remove(NodeId(1))),
            Err(ConfigChangeError::LastVoter(NodeId(1)))
        );
    }

    #[test]
    fn quorum_intersection_is_exact() {
        // The 2015 bug's two configurations: {1..4}+5 and {1..4}-1 are two voters apart.
        let plus = conf(&[1, 2, 3, 4, 5], &[]);
        let minus = conf(&[2, 3, 4], &[]);
        assert!(!plus.quorums_intersect(&minus));
        assert!(!plus.is_single_step_from(&minus));
        for n in 1..=7u64 {
            let all: Vec<u64> = (1..=n).collect();
            let config = conf(&all, &[]);
            let grown = conf(&[all.clone(), vec![n + 1]].concat(), &[]);
            assert!(config.quorums_intersect(&grown), "{n}");
            assert!(grown.quorums_intersect(&config), "{n}");
            assert!(config.quorums_intersect(&config), "{n}");
        }
        // Disjoint voter sets never intersect.
        assert!(!conf(&[1, 2, 3], &[]).quorums_intersect(&conf(&[4, 5, 6], &[])));
    }

    #[test]
    fn the_tracker_reverts_on_truncation() {
        let base = conf(&[1, 2, 3], &[]);
        let mut membership = Membership::new(base);
        let next = conf(&[1, 2, 3], &[4]);
        let entry = Entry {
            index: LogIndex(5),
            term: crate::types::Term(2),
            kind: EntryKind::Config,
            payload: next.encode(),
        };
        assert!(membership.on_append(&entry));
        assert_eq!(membership.current(), next);
        assert_eq!(membership.at(LogIndex(4)), base);
        assert!(!membership.on_truncate(LogIndex(6)));
        assert!(membership.on_truncate(LogIndex(5)));
        assert_eq!(membership.current(), base);
        assert!(membership.on_append(&entry));
        assert!(!membership.on_snapshot(LogIndex(5), next));
        assert_eq!(membership.latest_index(), None);
        assert!(membership.on_reset(base));
    }
}
