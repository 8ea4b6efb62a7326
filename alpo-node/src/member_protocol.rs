//! Issue 12: the membership part of the client protocol (version 6): the payloads of
//! `Op::Members`, `Op::ChangeMembers`, `Op::TransferLeader` and of their answers, with their
//! encoding. `client_protocol.rs` owns the tags and calls the functions here.
//!
//! Layouts (after the request or response header of `client_protocol.rs`):
//!
//! ```text
//! op 7  members            (nothing)
//! op 8  change members     change u8 (1 add, 2 promote, 3 remove), node id u64;
//!                          for add: peer address string, client address string,
//!                          learner u8 (1: stay a learner, 0: promote once caught up)
//! op 9  transfer leader    target u64 (0: the most up-to-date voter)
//! body 8  members          leader u64 (0: none known), last index u64, count u32,
//!                          then per member: id u64, role u8 (1 voter, 2 learner),
//!                          match known u8 (0/1), match index u64, client address string,
//!                          peer address string (version 6; empty if unknown)
//! body 9  members changed  index u64 (the committed `Config` entry)
//! body 15 leader moved     leader u64 (the new leader)
//! ```
//!
//! Version 6 added change tag 1 (`member add`: the addresses travel in the `Config` entry's
//! annex, `address_book.rs`) and each member's peer address (for `alpo node --join`).
//!
//! Invariants: `decode(encode(x)) == x`; decoding never panics and names the field that is
//! wrong (through `wire::Reader`).

use std::net::SocketAddr;

use alpo_core::{LogIndex, NodeId};

use crate::wire::{DecodeError, Reader, Writer};

/// One single-step membership change a client may ask for (rule M4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MemberChange {
    /// Add a new server at these addresses as a learner (rule M7); unless `learner`, the
    /// leader then promotes it once it has caught up (rule M8) and answers after that.
    Add {
        /// Its id: never used in this cluster before.
        id: NodeId,
        /// Where it listens for other nodes.
        peer_addr: SocketAddr,
        /// Where it listens for clients.
        client_addr: SocketAddr,
        /// Stay a learner (no promotion).
        learner: bool,
    },
    /// Make a learner a voter once it has caught up (rule M8).
    Promote(NodeId),
    /// Remove a voter or a learner, the leader included (rule M9).
    Remove(NodeId),
}

/// A member's role in the configuration in force (rule M1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MemberRole {
    /// Votes and counts for commit.
    Voter = 1,
    /// Receives the log, never votes nor counts (rule M7).
    Learner = 2,
}

/// One member as `alpo member list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its id.
    pub id: NodeId,
    /// Voter or learner.
    pub role: MemberRole,
    /// How far its log matches the leader's: known when the answering node leads (itself: its
    /// last index), `None` otherwise.
    pub match_index: Option<LogIndex>,
    /// Its client address as the answering node knows it (empty if unknown).
    pub client_addr: String,
    /// Its peer address as the answering node knows it (empty if unknown; version 6).
    pub peer_addr: String,
}

/// The configuration in force at the answering node, answering `Op::Members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Members {
    /// The leader the answering node believes in.
    pub leader: Option<NodeId>,
    /// The answering node's last log index (a member's lag is this minus its match index).
    pub last_index: LogIndex,
    /// Every member, in id order.
    pub members: Vec<MemberInfo>,
}

impl MemberInfo {
    /// How many entries it lags behind `last_index`, when its match index is known.
    #[must_use]
    pub fn lag(&self, last_index: LogIndex) -> Option<u64> {
        self.match_index
            .map(|matched| last_index.0.saturating_sub(matched.0))
    }
}

impl MemberRole {
    /// `voter` or `learner`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            MemberRole::Voter => "voter",
            MemberRole::Learner => "learner",
        }
    }
}

impl std::fmt::Display for MemberChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemberChange::Add {
                id,
                peer_addr,
                client_addr,
                learner,
            } => {
                let as_what = if *learner { "a learner" } else { "a voter" };
                write!(f, "add {id} at {peer_addr},{client_addr} as {as_what}")
            }
            MemberChange::Promote(id) => write!(f, "promote {id}"),
            MemberChange::Remove(id) => write!(f, "remove {id}"),
        }
    }
}

const CHANGE_ADD: u8 = 1;
const CHANGE_PROMOTE: u8 = 2;
const CHANGE_REMOVE: u8 = 3;

impl MemberChange {
    /// The core's change (rule M4).
    #[must_use]
    pub fn to_core(self) -> alpo_core::ConfigChange {
        match self {
            MemberChange::Add { id, .. } => alpo_core::ConfigChange::AddLearner(id),
            MemberChange::Promote(id) => alpo_core::ConfigChange::Promote(id),
            MemberChange::Remove(id) => alpo_core::ConfigChange::Remove(id),
        }
    }
}

pub(crate) fn encode_change(w: &mut Writer, change: MemberChange) -> &mut Writer {
    match change {
        MemberChange::Add {
            id,
            peer_addr,
            client_addr,
            learner,
        } => w
            .u8(CHANGE_ADD)
            .u64(id.0)
            .bytes(peer_addr.to_string().as_bytes())
            .bytes(client_addr.to_string().as_bytes())
            .u8(u8::from(learner)),
        MemberChange::Promote(id) => w.u8(CHANGE_PROMOTE).u64(id.0),
        MemberChange::Remove(id) => w.u8(CHANGE_REMOVE).u64(id.0),
    }
}

pub(crate) fn decode_change(r: &mut Reader) -> Result<MemberChange, DecodeError> {
    let tag = r.u8("member change")?;
    let id = NodeId(r.u64("member id")?);
    match tag {
        CHANGE_ADD => {
            let peer_addr = r.socket_addr("member peer address")?;
            let client_addr = r.socket_addr("member client address")?;
            let learner = match r.u8("member learner")? {
                0 => false,
                1 => true,
                tag => return Err(r.unknown_tag("member learner", tag)),
            };
            Ok(MemberChange::Add {
                id,
                peer_addr,
                client_addr,
                learner,
            })
        }
        CHANGE_PROMOTE => Ok(MemberChange::Promote(id)),
        CHANGE_REMOVE => Ok(MemberChange::Remove(id)),
        tag => Err(r.unknown_tag("member change", tag)),
    }
}

/// `0` stands for "no node": node ids are never 0 (config validation refuses it).
pub(crate) fn encode_node(w: &mut Writer, id: Option<NodeId>) -> &mut Writer {
    w.u64(id.map_or(0, |id| id.0))
}

pub(crate) fn decode_node(
    r: &mut Reader,
    what: &'static str,
) -> Result<Option<NodeId>, DecodeError> {
    Ok(Some(r.u64(what)?).filter(|id| *id != 0).map(NodeId))
}

#[allow(clippy::expect_used, reason = "the message states the invariant")]
pub(crate) fn encode_members<'w>(w: &'w mut Writer, members: &Members) -> &'w mut Writer {
    encode_node(w, members.leader).u64(members.last_index.0);
    let count = u32::try_from(members.members.len())
        .expect("invariant: a configuration holds at most MEMBERS_MAX members");
    w.u32(count);
    for member in &members.members {
        w.u64(member.id.0).u8(member.role as u8);
        match member.match_index {
            Some(index) => w.u8(1).u64(index.0),
            None => w.u8(0).u64(0),
        };
        w.bytes(member.client_addr.as_bytes());
        w.bytes(member.peer_addr.as_bytes());
    }
    w
}

pub(crate) fn decode_members(r: &mut Reader) -> Result<Members, DecodeError> {
    let leader = decode_node(r, "leader")?;
    let last_index = LogIndex(r.u64("last index")?);
    let count = r.u32("member count")?;
    // Not trusted for allocation: the vector grows as members actually decode.
    let mut members = Vec::new();
    for _ in 0..count {
        let id = NodeId(r.u64("member id")?);
        let role = match r.u8("member role")? {
            1 => MemberRole::Voter,
            2 => MemberRole::Learner,
            tag => return Err(r.unknown_tag("member role", tag)),
        };
        let known = r.u8("match known")?;
        let index = LogIndex(r.u64("match index")?);
        let match_index = match known {
            0 => None,
            1 => Some(index),
            tag => return Err(r.unknown_tag("match known", tag)),
        };
        let client_addr = r.string("client address")?;
        let peer_addr = r.string("peer address")?;
        members.push(MemberInfo {
            id,
            role,
            match_index,
            client_addr,
            peer_addr,
        });
    }
    Ok(Members {
        leader,
        last_index,
        members,
    })
}
