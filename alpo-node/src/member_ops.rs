//! Issue 12 in the node: the peer set follows the configuration in force, and clients change
//! the membership and move the leadership (`Op::Members`, `Op::ChangeMembers`,
//! `Op::TransferLeader`).
//!
//! - **Peers.** On every `Output::Membership` (and at start) the event loop gives the transport
//!   [`peer_set`] of the members of the configuration in force and, until the change to it is
//!   committed, of the one before ([`MemberOps::on_configuration`]): a removed leader keeps
//!   replicating its removal until it commits (rule M9), so the others must still hear it and
//!   answer it; a removed follower should receive its removal. Members are linked at the
//!   addresses of the node's [`AddressBook`] (its flags, the annex of every `Config` entry and
//!   snapshot). A removed member is dropped once its removal commits (its link retired, its
//!   handshakes refused); a configuration that names a member whose address this node does
//!   not know is logged, and that member is left out.
//! - **Adds.** `member add` puts the new member's addresses in the book the leader hands the
//!   core as its `Config` annex, so they travel in the entry that adds it. An id the book
//!   knows that is not in the configuration was a member before (an old incarnation) and is
//!   refused; so is an address another member uses. Unless asked for a learner, the waiter
//!   then asks the promotion (rule M8's catch-up) once the add is committed, asking again
//!   while the catch-up fails, until [`ADD_PROMOTE_WAIT`].
//! - **Changes.** A change the core accepts waits in [`MemberOps`] for its
//!   `Output::ConfigChange` (the `Config` entry's position, or why there is none), then for the
//!   commit of that entry; it is answered `MembersChanged`, or `Retry` if the leadership was
//!   lost first (the change may or may not take effect: the client lists the members).
//! - **Transfers.** A transfer the core started waits until another node leads (answered
//!   `LeaderMoved`), or until the core aborts it (rule T5, answered `Busy`).
//!
//! Invariants: every waiter is answered exactly once (or dropped with its connection when the
//! node stops); a change waiter holds the position of its own `Config` entry only after the
//! core reported it; refusals map to `NotLeader`, `Busy` (retryable: M2, M3, T2) or
//! `ChangeRefused` (not retryable).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::service::ConnectionId;
use alpo_core::{
    ConfigChange, ConfigChangeError, Configuration, LogIndex, Node, NodeId, Proposal, Role,
    TransferError,
};

use crate::address_book::{AddressBook, Addresses};
use crate::client_protocol::{ErrorCode, LeaderHint, ResponseBody};
use crate::member_protocol::{MemberChange, MemberInfo, MemberRole, Members};

/// How long a transfer's client waits for the new leader to be known once this node stepped
/// down; past it the client is told `Busy` (the cluster elects on its own).
const TRANSFER_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// How long a change's client waits, once this node stopped leading, to learn the change's
/// entry committed; past it the client is told to check (`Retry`).
const CHANGE_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// How long `member add` (without `--learner`) keeps asking the new member's promotion while
/// its catch-up fails (a large snapshot to install first, rule M8).
pub(crate) const ADD_PROMOTE_WAIT: Duration = Duration::from_secs(600);

/// The clients waiting for a membership change or a leadership transfer.
#[derive(Debug, Default)]
pub(crate) struct MemberOps {
    /// Every id this node knows, with its addresses.
    pub(crate) book: AddressBook,
    changes: Vec<ChangeWaiter>,
    transfers: Vec<TransferWaiter>,
    /// The configuration in force, as last reported.
    current: Configuration,
    /// The configuration before it, still linked until the index given is committed.
    previous: Option<(LogIndex, Configuration)>,
}

/// A client waiting for its change.
#[derive(Debug)]
struct ChangeWaiter {
    connection: ConnectionId,
    seq: u64,
    change: ConfigChange,
    /// Where its `Config` entry sits, once the core reported it.
    entry: Option<Proposal>,
    /// When this node was seen not leading in the entry's term any more: it waits a while
    /// longer, as a follower, to learn the entry committed (a leader that removed itself
    /// steps down at the commit, rule M9, possibly before its own disk let it apply).
    deposed: Option<Instant>,
    /// `member add` without `--learner`: promote once the add is committed.
    then_promote: bool,
    /// The promotion phase of such an add.
    promotion: Option<Promotion>,
}

/// The promotion that follows an add (rule M8).
#[derive(Debug, Clone, Copy)]
struct Promotion {
    /// The committed entry that added the learner.
    added_at: LogIndex,
    /// Until when a failed catch-up is asked again.
    deadline: Instant,
    /// Whether the core accepted the current ask (its catch-up runs).
    asked: bool,
}

/// A client waiting for its transfer.
#[derive(Debug)]
struct TransferWaiter {
    connection: ConnectionId,
    seq: u64,
    target: NodeId,
    /// When this node was seen not leading any more (the answer waits for the new leader).
    stepped_down: Option<Instant>,
}

/// One answer for a waiting client.
pub(crate) type Answer = (ConnectionId, u64, ResponseBody);

/// The peers the transport should link to for `members`: each but this node (`me`), at the
/// addresses `book` knows. Members without a known address are returned apart.
pub(crate) fn peer_set(
    members: &[NodeId],
    me: NodeId,
    book: &AddressBook,
) -> (Vec<(NodeId, SocketAddr)>, Vec<NodeId>) {
    let mut peers = Vec::new();
    let mut unknown = Vec::new();
    for member in members.iter().copied().filter(|id| *id != me) {
        match book.get(member) {
            Some(addresses) => peers.push((member, addresses.peer_addr)),
            None => unknown.push(member),
        }
    }
    (peers, unknown)
}

/// `Op::Members`: the configuration in force at `node`, with match indexes when it leads.
pub(crate) fn members_of(node: &Node, book: &AddressBook) -> Members {
    let status = node.status();
    let matches = node.match_indexes();
    let members = node
        .configuration()
        .members()
        .map(|id| {
            let role = if node.configuration().is_learner(id) {
                MemberRole::Learner
            } else {
                MemberRole::Voter
            };
            let match_index = if id == status.id && status.role == Role::Leader {
                Some(status.last_index)
            } else {
                matches.iter().find(|(peer, _)| *peer == id).map(|m| m.1)
            };
            let addresses = book.get(id);
            MemberInfo {
                id,
                role,
                match_index,
                client_addr: addresses
                    .map(|a| a.client_addr.to_string())
                    .unwrap_or_default(),
                peer_addr: addresses
                    .map(|a| a.peer_addr.to_string())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Members {
        leader: status.leader,
        last_index: status.last_index,
        members,
    }
}

impl MemberOps {
    /// Waiting for nothing yet, with this address book.
    pub(crate) fn new(book: AddressBook) -> MemberOps {
        MemberOps {
            book,
            ..MemberOps::default()
        }
    }

    /// `Output::Membership` (or the start): the members to link to, those of `configuration`
    /// and, until `last_index` (at or past the entry that brought it) is committed, those of
    /// the configuration before. An empty configuration (a server added later) links to
    /// nobody new: `None`, the transport keeps its `--peer` flags.
    pub(crate) fn on_configuration(
        &mut self,
        configuration: Configuration,
        last_index: LogIndex,
    ) -> Option<Vec<NodeId>> {
        if configuration.is_empty() {
            return None;
        }
        if !self.current.is_empty() && self.current != configuration {
            self.previous = Some((last_index, self.current));
        }
        self.current = configuration;
        Some(self.linked())
    }

    /// After each batch: once the change is committed, the members to link to without the
    /// configuration before it (`None`: nothing changed).
    pub(crate) fn on_commit(&mut self, commit_index: LogIndex) -> Option<Vec<NodeId>> {
        let (until, _) = self.previous?;
        if commit_index < until {
            return None;
        }
        self.previous = None;
        Some(self.linked())
    }

    /// The members linked now: those of the configuration in force and, until its change
    /// commits, of the one before.
    pub(crate) fn linked(&self) -> Vec<NodeId> {
        let mut members: Vec<NodeId> = self.current.members().collect();
        if let Some((_, previous)) = &self.previous {
            members.extend(previous.members());
        }
        members.sort_unstable();
        members.dedup();
        members
    }

    /// `Op::ChangeMembers`: asks the core; the answer now if it refused, else later. The
    /// same change asked again while it waits (a client's retry after an attempt timeout)
    /// moves the waiter to the new request.
    pub(crate) fn ask_change(
        &mut self,
        node: &mut Node,
        now: alpo_core::Instant,
        (connection, seq): (ConnectionId, u64),
        change: MemberChange,
        hint: impl Fn(NodeId) -> LeaderHint,
    ) -> Option<ResponseBody> {
        let core_change = change.to_core();
        if let Some(waiter) = self.changes.iter_mut().find(|waiter| {
            waiter.change == core_change
                || waiter.promotion.is_some()
                    && core_change == ConfigChange::AddLearner(waiter.change.node())
        }) {
            waiter.connection = connection;
            waiter.seq = seq;
            return None;
        }
        let mut then_promote = false;
        if let MemberChange::Add {
            id,
            peer_addr,
            client_addr,
            learner,
        } = change
            && node.status().role == Role::Leader
        {
            let addresses = Addresses {
                peer_addr,
                client_addr,
            };
            if let Some(refusal) = self.refuse_add(node, id, addresses) {
                return Some(error(ErrorCode::ChangeRefused, refusal));
            }
            // The new member's addresses ride on the entry that adds it (the annex).
            let mut with = self.book.clone();
            with.insert(id, addresses);
            node.set_config_annex(with.encode());
            then_promote = !learner;
            if let Err(refused) = node.propose_config_change(now, core_change) {
                node.set_config_annex(self.book.encode());
                return Some(change_refused(refused, hint));
            }
            self.book = with;
        } else if let Err(refused) = node.propose_config_change(now, core_change) {
            return Some(change_refused(refused, hint));
        }
        self.changes.push(ChangeWaiter {
            connection,
            seq,
            change: core_change,
            entry: None,
            deposed: None,
            then_promote,
            promotion: None,
        });
        None
    }

    /// Why `member add` of `id` at `addresses` is refused before the core sees it, if it is.
    fn refuse_add(&self, node: &Node, id: NodeId, addresses: Addresses) -> Option<String> {
        let configuration = node.configuration();
        if configuration.contains(id) {
            return None; // The core refuses it: already a member.
        }
        if self.book.get(id).is_some() {
            return Some(format!(
                "node {id} was a member of this cluster before (an old incarnation, removed since); \
                 node ids are never reused: add the machine under a new id with an empty data \
                 directory"
            ));
        }
        for addr in [addresses.peer_addr, addresses.client_addr] {
            if let Some(user) = self.book.user_of(addr)
                && configuration.contains(user)
            {
                return Some(format!(
                    "address {addr} is member {user}'s; remove node {user} first"
                ));
            }
        }
        None
    }

    /// `Op::TransferLeader`: asks the core; the answer now if it refused, else later.
    pub(crate) fn ask_transfer(
        &mut self,
        node: &mut Node,
        now: alpo_core::Instant,
        (connection, seq): (ConnectionId, u64),
        target: Option<NodeId>,
        hint: impl Fn(NodeId) -> LeaderHint,
    ) -> Option<ResponseBody> {
        match node.transfer_leadership(now, target) {
            Ok(target) => {
                self.transfers.push(TransferWaiter {
                    connection,
                    seq,
                    target,
                    stepped_down: None,
                });
                None
            }
            Err(error) => Some(transfer_refused(error, hint)),
        }
    }

    /// `Output::ConfigChange`: the waiter of `change` learns its entry, or is answered why
    /// there is none.
    pub(crate) fn on_config_change(
        &mut self,
        change: ConfigChange,
        result: Result<Proposal, ConfigChangeError>,
        hint: impl Fn(NodeId) -> LeaderHint,
    ) -> Option<Answer> {
        let position = self
            .changes
            .iter()
            .position(|waiter| waiter.change == change && waiter.entry.is_none())?;
        let waiter = &mut self.changes[position];
        match result {
            Ok(proposal) => {
                waiter.entry = Some(proposal);
                None
            }
            Err(ConfigChangeError::CatchUpFailed(_))
                if waiter
                    .promotion
                    .is_some_and(|p| Instant::now() < p.deadline) =>
            {
                // Still installing or catching up: ask again after this batch.
                if let Some(promotion) = &mut waiter.promotion {
                    promotion.asked = false;
                }
                None
            }
            Err(refused) => {
                let waiter = self.changes.remove(position);
                let body = match waiter.promotion {
                    Some(promotion) => not_promoted(waiter.change.node(), promotion, refused),
                    None => change_refused(refused, hint),
                };
                Some((waiter.connection, waiter.seq, body))
            }
        }
    }

    /// After each batch: answers the changes whose entry is committed (or whose leader was
    /// deposed first) and the transfers that are over; asks the promotions that follow adds.
    pub(crate) fn after_batch(&mut self, node: &mut Node, at: alpo_core::Instant) -> Vec<Answer> {
        let mut answers = self.ask_promotions(node, at);
        let node = &*node;
        let status = node.status();
        let now = Instant::now();
        self.changes.retain_mut(|waiter| {
            let Some(entry) = waiter.entry else {
                if status.role == Role::Leader {
                    return true;
                }
                // A promotion's catch-up abandoned with the leadership reports `Abandoned`;
                // this covers a waiter the core never reported on.
                answers.push((waiter.connection, waiter.seq, leadership_lost()));
                return false;
            };
            // Log matching: the entry of its term at its index is the change's own.
            let ours = node.entry(entry.index).map(|e| e.term == entry.term);
            let same_term = status.term == entry.term;
            if ours == Some(false) {
                answers.push((waiter.connection, waiter.seq, leadership_lost()));
                return false;
            }
            if status.commit_index >= entry.index {
                // Not in memory any more (compacted or evicted): ours if no other leader came.
                let body = if ours == Some(true) || same_term {
                    if waiter.then_promote && status.role == Role::Leader {
                        // The add is committed: now the promotion (rule M8).
                        waiter.then_promote = false;
                        waiter.change = ConfigChange::Promote(waiter.change.node());
                        waiter.entry = None;
                        waiter.promotion = Some(Promotion {
                            added_at: entry.index,
                            deadline: now + ADD_PROMOTE_WAIT,
                            asked: false,
                        });
                        return true;
                    }
                    ResponseBody::MembersChanged { index: entry.index }
                } else {
                    leadership_lost()
                };
                answers.push((waiter.connection, waiter.seq, body));
                return false;
            }
            if status.role == Role::Leader && same_term {
                return true;
            }
            let since = *waiter.deposed.get_or_insert(now);
            if CHANGE_ANSWER_WAIT <= now.duration_since(since) {
                answers.push((waiter.connection, waiter.seq, leadership_lost()));
                return false;
            }
            true
        });
        self.answer_transfers(node, now, &mut answers);
        answers
    }
}

impl MemberOps {
    /// The transfers that are over: another node leads, or the core aborted (rule T5).
    fn answer_transfers(&mut self, node: &Node, now: Instant, answers: &mut Vec<Answer>) {
        let status = node.status();
        self.transfers.retain_mut(|waiter| {
            if status.role == Role::Leader {
                if node.transfer_target().is_some() {
                    return true;
                }
                let reason = format!(
                    "the transfer to node {} was aborted: it did not win in time (rule T5); \
                     this node leads on",
                    waiter.target
                );
                let body = error(ErrorCode::Busy, reason);
                answers.push((waiter.connection, waiter.seq, body));
                return false;
            }
            if let Some(leader) = status.leader.filter(|leader| *leader != status.id) {
                let body = ResponseBody::LeaderMoved { leader };
                answers.push((waiter.connection, waiter.seq, body));
                return false;
            }
            let since = *waiter.stepped_down.get_or_insert(now);
            if TRANSFER_ANSWER_WAIT <= now.duration_since(since) {
                let reason = "this node stepped down but no new leader is known yet".to_string();
                answers.push((
                    waiter.connection,
                    waiter.seq,
                    error(ErrorCode::Busy, reason),
                ));
                return false;
            }
            true
        });
    }

    /// Asks the core for each promotion that follows an add and is not running.
    fn ask_promotions(&mut self, node: &mut Node, at: alpo_core::Instant) -> Vec<Answer> {
        let mut answers = Vec::new();
        let now = Instant::now();
        if node.status().role != Role::Leader {
            return answers;
        }
        self.changes.retain_mut(|waiter| {
            let Some(promotion) = &mut waiter.promotion else {
                return true;
            };
            if promotion.asked || waiter.entry.is_some() {
                return true;
            }
            match node.propose_config_change(at, waiter.change) {
                Ok(()) => {
                    promotion.asked = true;
                    true
                }
                Err(
                    ConfigChangeError::ChangeInProgress
                    | ConfigChangeError::LeaderNotReady
                    | ConfigChangeError::Transferring { .. },
                ) if now < promotion.deadline => true,
                Err(refused) => {
                    let body = not_promoted(waiter.change.node(), *promotion, refused);
                    answers.push((waiter.connection, waiter.seq, body));
                    false
                }
            }
        });
        answers
    }
}

/// The answer to an add whose promotion failed: the learner stays.
fn not_promoted(id: NodeId, promotion: Promotion, refused: ConfigChangeError) -> ResponseBody {
    let reason = format!(
        "node {id} was added as a learner (entry {}) but not promoted: {refused}; once it has \
         caught up, run `alpo member promote {id}`",
        promotion.added_at
    );
    error(ErrorCode::ChangeRefused, reason)
}

fn error(code: ErrorCode, reason: String) -> ResponseBody {
    ResponseBody::Error { code, reason }
}

fn leadership_lost() -> ResponseBody {
    let reason = "leadership changed before the change was committed; it may or may not take \
                  effect: list the members"
        .to_string();
    error(ErrorCode::Retry, reason)
}

/// The answer to a change the core refused.
fn change_refused(error_: ConfigChangeError, hint: impl Fn(NodeId) -> LeaderHint) -> ResponseBody {
    match error_ {
        ConfigChangeError::NotLeader { leader_hint } => ResponseBody::NotLeader {
            leader: leader_hint.map(hint),
        },
        ConfigChangeError::ChangeInProgress
        | ConfigChangeError::LeaderNotReady
        | ConfigChangeError::Transferring { .. }
        | ConfigChangeError::CatchUpFailed(_) => error(ErrorCode::Busy, error_.to_string()),
        ConfigChangeError::Abandoned => leadership_lost(),
        other => error(ErrorCode::ChangeRefused, other.to_string()),
    }
}

/// The answer to a transfer the core refused.
fn transfer_refused(error_: TransferError, hint: impl Fn(NodeId) -> LeaderHint) -> ResponseBody {
    match error_ {
        TransferError::NotLeader { leader_hint } => ResponseBody::NotLeader {
            leader: leader_hint.map(hint),
        },
        TransferError::InProgress { .. } => error(ErrorCode::Busy, error_.to_string()),
        other => error(ErrorCode::ChangeRefused, other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hint(id: NodeId) -> LeaderHint {
        LeaderHint {
            id,
            client_addr: String::new(),
        }
    }

    #[test]
    fn refusals_are_typed_retryable_or_not() {
        let busy = [
            ConfigChangeError::ChangeInProgress,
            ConfigChangeError::LeaderNotReady,
            ConfigChangeError::Transferring { target: NodeId(2) },
        ];
        for refusal in busy {
            let body = change_refused(refusal, hint);
            assert!(
                matches!(
                    body,
                    ResponseBody::Error {
                        code: ErrorCode::Busy,
                        ..
                    }
                ),
                "{refusal:?} → {body:?}"
            );
            assert!(ErrorCode::Busy.is_retryable());
        }
        let body = change_refused(ConfigChangeError::NotMember(NodeId(9)), hint);
        assert!(matches!(
            body,
            ResponseBody::Error {
                code: ErrorCode::ChangeRefused,
                ..
            }
        ));
        assert!(!ErrorCode::ChangeRefused.is_retryable());
        let not_leader = ConfigChangeError::NotLeader {
            leader_hint: Some(NodeId(3)),
        };
        let ResponseBody::NotLeader {
            leader: Some(leader),
        } = change_refused(not_leader, hint)
        else {
            panic!("a follower's refusal names the leader");
        };
        assert_eq!(leader.id, NodeId(3));
        let body = transfer_refused(TransferError::ToSelf, hint);
        assert!(matches!(
            body,
            ResponseBody::Error {
                code: ErrorCode::ChangeRefused,
                ..
            }
        ));
        let body = transfer_refused(TransferError::InProgress { target: NodeId(2) }, hint);
        assert!(matches!(
            body,
            ResponseBody::Error {
                code: ErrorCode::Busy,
                ..
            }
        ));
    }

    #[test]
    fn the_peer_set_is_the_configuration_but_this_node_at_known_addresses() {
        let dir = std::path::Path::new("/nonexistent");
        let members: Vec<crate::config::PeerConfig> = (1..=3u16)
            .map(|id| crate::config::PeerConfig {
                id: u64::from(id),
                peer_addr: SocketAddr::from(([127, 0, 0, 1], 7100 + id)),
                client_addr: SocketAddr::from(([127, 0, 0, 1], 7200 + id)),
            })
            .collect();
        let config = crate::config::NodeConfig::for_members(1, dir, &members).remove(0);
        let book = AddressBook::from_config(&config);
        let two_and_nine = Configuration::new(&[NodeId(1), NodeId(2)], &[NodeId(9)]).unwrap();
        let mut ops = MemberOps::default();
        let linked = ops.on_configuration(two_and_nine, LogIndex(4)).unwrap();
        let (peers, unknown) = peer_set(&linked, NodeId(1), &book);
        assert_eq!(peers, vec![(NodeId(2), members[1].peer_addr)]);
        assert_eq!(unknown, vec![NodeId(9)]);
        // A removal keeps the removed member linked until it commits (rule M9).
        let without_two = Configuration::new(&[NodeId(1)], &[NodeId(9)]).unwrap();
        let linked = ops.on_configuration(without_two, LogIndex(5)).unwrap();
        assert_eq!(linked, vec![NodeId(1), NodeId(2), NodeId(9)]);
        assert_eq!(ops.on_commit(LogIndex(4)), None);
        assert_eq!(ops.on_commit(LogIndex(5)), Some(vec![NodeId(1), NodeId(9)]));
        assert_eq!(ops.on_commit(LogIndex(6)), None);
        assert_eq!(
            ops.on_configuration(Configuration::default(), LogIndex(7)),
            None
        );
        let members_list = Members {
            leader: None,
            last_index: LogIndex(5),
            members: vec![MemberInfo {
                id: NodeId(2),
                role: MemberRole::Voter,
                match_index: Some(LogIndex(3)),
                client_addr: String::new(),
                peer_addr: String::new(),
            }],
        };
        assert_eq!(
            members_list.members[0].lag(members_list.last_index),
            Some(2)
        );
    }
}
