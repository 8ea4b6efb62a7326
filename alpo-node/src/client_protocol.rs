//! The client protocol: requests a client sends to a node and the responses it gets, with their
//! explicit binary encoding. Each message travels as the body of one alpo-net client frame.
//!
//! The protocol knows the log and the node, not what the state machine does: a `Command` goes
//! through the log and is applied by the node's `StateMachine`; a `Query` is answered by the
//! state machine without changing it. Both carry bytes only the state machine (and its client
//! helpers, such as the key-value machine's in `kv`) understand.
//!
//! Request layout (all integers little-endian, byte strings `u32` length + bytes):
//!
//! ```text
//! 1 byte  version (5)
//! 8 bytes client id        (the session, docs/protocol.md Clients)
//! 8 bytes sequence number  (per client; a retry reuses it)
//! 1 byte  operation tag    (1 append, 3 status, 4 command, 6 snapshot, 10 query, 11 read,
//!                           7 members, 8 change members, 9 transfer leader)
//! ...     the operation's fields, in the order of the `Op` variant's fields
//! ```
//!
//! Response layout: `version u8, sequence u64, tag u8` (1 appended, 2 entries, 3 status,
//! 4 applied, 5 not-leader, 6 error, 7 snapshot, 8 members, 9 members changed, 15 leader
//! moved), then the fields. The membership payloads are in `member_protocol.rs`.
//!
//! Versions: the layout of an error response (`version, sequence, 6, code u8, reason`) is the
//! same in every version. A node that receives a request of a version it does not speak answers
//! it with such an error under the request's own version byte (code `BadRequest`, sequence 0, a
//! reason naming both versions), so an older or newer client can read why. A client that
//! receives a response of another version reports both versions
//! (`Error::ProtocolVersion`). Version 1 (before 0.1's opaque commands) had operation tags
//! 4 put, 5 get, 6 delete, 7 cas, 8 command. Version 2 had no snapshot operation, no
//! `Compacted` error code, and no snapshot and first index in a status. Version 3 ordered every
//! query through the log (tag 5, no consistency) and read entries from whichever node answered
//! (tag 2); version 4 (issue 14) replaced them with tags 10 and 11, which end with a
//! consistency byte (`1` linearizable, `2` lease, `3` stale). Version 5 (issue 12) added the
//! membership operations 7–9, the answers 8, 9 and 15, and the error codes 7 (`ChangeRefused`)
//! and 8 (`Busy`). Version 6 (issue 12, `member_protocol.rs`) added the change `add` (with the
//! new member's addresses) and each member's peer address in the members answer.
//!
//! Invariants: `decode(encode(x)) == x` for every message; decoding never panics and rejects
//! trailing bytes, unknown tags and other versions with a `DecodeError` naming the field and the
//! byte offset.

use bytes::Bytes;

use alpo_core::{LogIndex, NodeId, Role, Term};

use crate::member_protocol::{MemberChange, Members};
use crate::wire::{DecodeError, DecodeProblem, Reader, Writer};

/// The version byte every request and response starts with.
pub const PROTOCOL_VERSION: u8 = 6;

/// Identifies a request for duplicate detection: a retry carries the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RequestId {
    /// The client's session id, chosen at random by the client (never 0).
    pub client: u64,
    /// The request's number within the session; grows by one per new request.
    pub seq: u64,
}

/// One client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// Who sent it, for duplicate detection.
    pub id: RequestId,
    /// What it asks.
    pub op: Op,
}

/// What a client asks a node to do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Op {
    /// Append `value` to the log; answered with its index once committed. Leader only.
    Append {
        /// The entry's content.
        value: Bytes,
    },
    /// Read committed entries from index `from`, at most `max_count`. Any node; with
    /// `Linearizable` (or `Lease`) the node first gets a read index (rules Q1, Q2), so the
    /// entries include every append acknowledged before the read was sent.
    Read {
        /// The first index to return (1 for the start of the log).
        from: LogIndex,
        /// How many entries at most (capped by the node's `READ_ENTRY_COUNT_MAX`).
        max_count: u32,
        /// How fresh the answer must be.
        consistency: Consistency,
    },
    /// The node's role, term, leader and indices. Any node.
    Status,
    /// A command for the node's state machine, opaque to ALPO: it goes through the log and
    /// `StateMachine::apply` answers it once committed. Leader only.
    Command {
        /// The command's bytes, handed to `StateMachine::apply`.
        payload: Bytes,
    },
    /// A query for the node's state machine, opaque to ALPO: `StateMachine::query` answers it
    /// against the applied state, without a log write. Any node: with `Linearizable` the node
    /// gets a read index (the leader by a heartbeat round, rule Q1; a follower from the leader,
    /// Q2) and answers once it has applied up to it; with `Lease` a leader holding its lease
    /// skips the round (Q3); with `Stale` the node answers at once from what it has applied.
    Query {
        /// The query's bytes, handed to `StateMachine::query`.
        payload: Bytes,
        /// How fresh the answer must be.
        consistency: Consistency,
    },
    /// Take a snapshot now (rule S2): answered once it is durable, with its last included
    /// index. Any node, for itself.
    Snapshot,
    /// Issue 12: the configuration in force, as this node knows it (with each member's match
    /// index when it leads). Any node.
    Members,
    /// Issue 12: one membership change (rules M2–M10): answered `MembersChanged` once its
    /// `Config` entry is committed. Leader only.
    ChangeMembers {
        /// The change.
        change: MemberChange,
    },
    /// Issue 12: hand leadership to `target`, or to the most up-to-date voter (rules T1–T5):
    /// answered `LeaderMoved` once another node leads. Leader only.
    TransferLeader {
        /// The voter to hand over to; `None` for the most up-to-date one.
        target: Option<NodeId>,
    },
}

/// How fresh a read (`Op::Query`, `Op::Read`) must be (docs/operations.md, Reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Consistency {
    /// Sees every write acknowledged before the read was sent (ReadIndex, rules Q1, Q2). The
    /// default.
    #[default]
    Linearizable = 1,
    /// Like `Linearizable`, without a heartbeat round while the leader holds its lease (rule
    /// Q3): correct only while every clock drifts within the configured bound.
    Lease = 2,
    /// Whatever the node has applied: may miss recent writes (a lagging follower, a deposed
    /// leader), never shows uncommitted ones.
    Stale = 3,
}

impl Consistency {
    /// The consistency a wire byte stands for, if any.
    #[must_use]
    pub fn from_u8(byte: u8) -> Option<Consistency> {
        match byte {
            1 => Some(Consistency::Linearizable),
            2 => Some(Consistency::Lease),
            3 => Some(Consistency::Stale),
            _ => None,
        }
    }
}

impl std::str::FromStr for Consistency {
    type Err = String;

    fn from_str(text: &str) -> Result<Consistency, String> {
        match text {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "stale" => Ok(Consistency::Stale),
            other => Err(format!(
                "unknown consistency {other:?}: expected linearizable, lease or stale"
            )),
        }
    }
}

/// One response, matched to its request by sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request's sequence number.
    pub seq: u64,
    /// The answer.
    pub body: ResponseBody,
}

/// The answer to a request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseBody {
    /// `Append` is committed at `index`.
    Appended {
        /// The entry's index.
        index: LogIndex,
    },
    /// Committed entries, in index order, answering `Read`.
    Entries {
        /// The entries (possibly none: the reader is at the end).
        entries: Vec<ReadEntry>,
        /// The node's commit index when it answered.
        commit_index: LogIndex,
    },
    /// The node's state, answering `Status`.
    Status(NodeStatus),
    /// A `Command` was committed at `index` and applied, or a `Query` was answered as of
    /// `index`; `output` is the state machine's answer (for the key-value machine, a
    /// `KvResult`).
    Applied {
        /// The entry's index.
        index: LogIndex,
        /// The state machine's answer.
        output: Bytes,
    },
    /// This node is not the leader; try the hinted one.
    NotLeader {
        /// The leader this node believes in, if it knows one.
        leader: Option<LeaderHint>,
    },
    /// The request failed.
    Error {
        /// What kind of failure, and so whether a retry may help.
        code: ErrorCode,
        /// A human-readable reason.
        reason: String,
    },
    /// A snapshot is durable, answering `Snapshot`: the newest, covering every entry applied
    /// when it was asked for.
    Snapshot {
        /// Its last included index.
        index: LogIndex,
    },
    /// Issue 12: the configuration in force, answering `Members`.
    Members(Members),
    /// Issue 12: the change asked for is committed, its `Config` entry at `index`.
    MembersChanged {
        /// The `Config` entry's index.
        index: LogIndex,
    },
    /// Issue 12: the leadership transfer asked for is over: `leader` leads now.
    LeaderMoved {
        /// The new leader.
        leader: NodeId,
    },
}

/// Where the leader is, as a follower knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    /// The leader's node id.
    pub id: NodeId,
    /// The leader's client address (`host:port`), or empty if this node does not know it.
    pub client_addr: String,
}

/// One committed entry as a reader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEntry {
    /// Its index.
    pub index: LogIndex,
    /// The term it was created in.
    pub term: Term,
    /// What it holds.
    pub kind: ReadEntryKind,
    /// For `Append`, the appended value; for `Command`, the state-machine command or query;
    /// empty for a no-op.
    pub data: Bytes,
}

/// What a committed entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ReadEntryKind {
    /// A leader's no-op (rule R8).
    Noop = 1,
    /// A value appended with `Op::Append`.
    Append = 2,
    /// A state-machine command or query.
    Command = 3,
    /// A retried request already applied at an earlier index; it changed nothing.
    Duplicate = 4,
}

/// A node's state, as `Status` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it believes in.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: LogIndex,
    /// Index of its last entry.
    pub last_index: LogIndex,
    /// Highest index durable on its disk.
    pub durable_index: LogIndex,
    /// Highest index its state machine has applied.
    pub applied_index: LogIndex,
    /// Last included index of its newest durable snapshot (0 without one).
    pub snapshot_index: LogIndex,
    /// First index its log still holds (below it, entries were compacted into a snapshot).
    pub first_index: LogIndex,
}

/// What kind of failure an `Error` response reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request is malformed; retrying it will not help.
    BadRequest = 1,
    /// The entry or key is larger than the node accepts; retrying will not help.
    TooLarge = 2,
    /// The node could not finish the request now (leader changed, too many pending requests);
    /// retry with the same request id.
    Retry = 3,
    /// The request's session was forgotten (too many clients) or the sequence number is older
    /// than the session's last; the outcome of the original request is unknown.
    SessionExpired = 4,
    /// The node is shutting down or failed; try another node.
    Unavailable = 5,
    /// A read asked for entries below the node's first retained index: they were compacted
    /// into a snapshot (rule S4). The reason names the first index still readable.
    Compacted = 6,
    /// Issue 12: the membership change or transfer is not possible as asked (the node is
    /// already a member, not a member, not a learner, the last voter, …); retrying will not
    /// help.
    ChangeRefused = 7,
    /// Issue 12: another change or a leadership transfer is in progress, or the new leader has
    /// not yet committed an entry of its term (rules M2, M3, T2); retry shortly.
    Busy = 8,
}

const OP_APPEND: u8 = 1;
const OP_STATUS: u8 = 3;
const OP_COMMAND: u8 = 4;
const OP_SNAPSHOT: u8 = 6;
/// Version 4 (issue 14): a query with its consistency (tag 5, through the log, is retired).
const OP_QUERY: u8 = 10;
/// Version 4 (issue 14): a read of entries with its consistency (tag 2 is retired).
const OP_READ: u8 = 11;
/// Version 5 (issue 12): membership.
const OP_MEMBERS: u8 = 7;
const OP_CHANGE_MEMBERS: u8 = 8;
const OP_TRANSFER_LEADER: u8 = 9;

const BODY_APPENDED: u8 = 1;
const BODY_ENTRIES: u8 = 2;
const BODY_STATUS: u8 = 3;
const BODY_APPLIED: u8 = 4;
const BODY_NOT_LEADER: u8 = 5;
const BODY_ERROR: u8 = 6;
const BODY_SNAPSHOT: u8 = 7;
const BODY_MEMBERS: u8 = 8;
const BODY_MEMBERS_CHANGED: u8 = 9;
const BODY_LEADER_MOVED: u8 = 15;

impl Request {
    /// Encodes the request as described in the module documentation.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        w.u8(PROTOCOL_VERSION).u64(self.id.client).u64(self.id.seq);
        match &self.op {
            Op::Append { value } => w.u8(OP_APPEND).bytes(value),
            Op::Read {
                from,
                max_count,
                consistency,
            } => w
                .u8(OP_READ)
                .u64(from.0)
                .u32(*max_count)
                .u8(*consistency as u8),
            Op::Status => w.u8(OP_STATUS),
            Op::Command { payload } => w.u8(OP_COMMAND).bytes(payload),
            Op::Query {
                payload,
                consistency,
            } => w.u8(OP_QUERY).bytes(payload).u8(*consistency as u8),
            Op::Snapshot => w.u8(OP_SNAPSHOT),
            Op::Members => w.u8(OP_MEMBERS),
            Op::ChangeMembers { change } => {
                crate::member_protocol::encode_change(w.u8(OP_CHANGE_MEMBERS), *change)
            }
            Op::TransferLeader { target } => {
                crate::member_protocol::encode_node(w.u8(OP_TRANSFER_LEADER), *target)
            }
        };
        w.finish()
    }

    /// Decodes a request; never panics.
    pub fn decode(buf: Bytes) -> Result<Request, DecodeError> {
        let mut r = Reader::new(buf);
        check_version(&mut r, "request")?;
        let id = RequestId {
            client: r.u64("client id")?,
            seq: r.u64("sequence number")?,
        };
        let op = match r.u8("operation")? {
            OP_APPEND => Op::Append {
                value: r.bytes("value")?,
            },
            OP_READ => Op::Read {
                from: LogIndex(r.u64("from")?),
                max_count: r.u32("max count")?,
                consistency: decode_consistency(&mut r)?,
            },
            OP_STATUS => Op::Status,
            OP_COMMAND => Op::Command {
                payload: r.bytes("payload")?,
            },
            OP_QUERY => Op::Query {
                payload: r.bytes("payload")?,
                consistency: decode_consistency(&mut r)?,
            },
            OP_SNAPSHOT => Op::Snapshot,
            OP_MEMBERS => Op::Members,
            OP_CHANGE_MEMBERS => Op::ChangeMembers {
                change: crate::member_protocol::decode_change(&mut r)?,
            },
            OP_TRANSFER_LEADER => Op::TransferLeader {
                target: crate::member_protocol::decode_node(&mut r, "target")?,
            },
            tag => return Err(r.unknown_tag("operation", tag)),
        };
        r.finish("request")?;
        Ok(Request { id, op })
    }
}

/// The answer to a request of a version this node does not speak (`request_version`, the
/// request's first byte): an error response in the layout every version shares, under the
/// request's own version byte so its client can read it (module documentation).
#[must_use]
pub fn unsupported_version_response(request_version: u8) -> Bytes {
    let reason = format!(
        "client protocol version {request_version} is not supported: this node speaks \
         version {PROTOCOL_VERSION}"
    );
    let mut w = Writer::default();
    w.u8(request_version).u64(0).u8(BODY_ERROR);
    w.u8(ErrorCode::BadRequest as u8).bytes(reason.as_bytes());
    w.finish()
}

impl Op {
    /// Whether only the leader can serve this operation (it goes through the log).
    #[must_use]
    pub fn needs_leader(&self) -> bool {
        !matches!(
            self,
            Op::Read { .. } | Op::Status | Op::Snapshot | Op::Query { .. } | Op::Members
        )
    }
}

impl Response {
    /// Encodes the response as described in the module documentation.
    #[must_use]
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        w.u8(PROTOCOL_VERSION).u64(self.seq);
        match &self.body {
            ResponseBody::Appended { index } => w.u8(BODY_APPENDED).u64(index.0),
            ResponseBody::Entries {
                entries,
                commit_index,
            } => {
                w.u8(BODY_ENTRIES).u64(commit_index.0);
                let count = u32::try_from(entries.len())
                    .expect("invariant: reads return at most READ_ENTRY_COUNT_MAX entries");
                w.u32(count);
                for entry in entries {
                    w.u64(entry.index.0).u64(entry.term.0).u8(entry.kind as u8);
                    w.bytes(&entry.data);
                }
                &mut w
            }
            ResponseBody::Status(status) => encode_status(w.u8(BODY_STATUS), status),
            ResponseBody::Applied { index, output } => {
                w.u8(BODY_APPLIED).u64(index.0).bytes(output)
            }
            ResponseBody::NotLeader { leader } => {
                w.u8(BODY_NOT_LEADER);
                match leader {
                    None => w.u8(0),
                    Some(hint) => w.u8(1).u64(hint.id.0).bytes(hint.client_addr.as_bytes()),
                }
            }
            ResponseBody::Error { code, reason } => {
                w.u8(BODY_ERROR).u8(*code as u8).bytes(reason.as_bytes())
            }
            ResponseBody::Snapshot { index } => w.u8(BODY_SNAPSHOT).u64(index.0),
            ResponseBody::Members(members) => {
                crate::member_protocol::encode_members(w.u8(BODY_MEMBERS), members)
            }
            ResponseBody::MembersChanged { index } => w.u8(BODY_MEMBERS_CHANGED).u64(index.0),
            ResponseBody::LeaderMoved { leader } => w.u8(BODY_LEADER_MOVED).u64(leader.0),
        };
        w.finish()
    }

    /// Decodes a response; never panics.
    pub fn decode(buf: Bytes) -> Result<Response, DecodeError> {
        let mut r = Reader::new(buf);
        check_version(&mut r, "response")?;
        let seq = r.u64("sequence number")?;
        let body = match r.u8("response")? {
            BODY_APPENDED => ResponseBody::Appended {
                index: LogIndex(r.u64("index")?),
            },
            BODY_ENTRIES => decode_entries(&mut r)?,
            BODY_STATUS => ResponseBody::Status(decode_status(&mut r)?),
            BODY_APPLIED => ResponseBody::Applied {
                index: LogIndex(r.u64("index")?),
                output: r.bytes("output")?,
            },
            BODY_NOT_LEADER => ResponseBody::NotLeader {
                leader: match r.u8("leader hint")? {
                    0 => None,
                    1 => Some(LeaderHint {
                        id: NodeId(r.u64("leader id")?),
                        client_addr: r.string("leader address")?,
                    }),
                    tag => return Err(r.unknown_tag("leader hint", tag)),
                },
            },
            BODY_ERROR => ResponseBody::Error {
                code: decode_error_code(&mut r)?,
                reason: r.string("reason")?,
            },
            BODY_SNAPSHOT => ResponseBody::Snapshot {
                index: LogIndex(r.u64("snapshot index")?),
            },
            BODY_MEMBERS => ResponseBody::Members(crate::member_protocol::decode_members(&mut r)?),
            BODY_MEMBERS_CHANGED => ResponseBody::MembersChanged {
                index: LogIndex(r.u64("config index")?),
            },
            BODY_LEADER_MOVED => ResponseBody::LeaderMoved {
                leader: NodeId(r.u64("new leader")?),
            },
            tag => return Err(r.unknown_tag("response", tag)),
        };
        r.finish("response")?;
        Ok(Response { seq, body })
    }
}

impl ErrorCode {
    /// Whether retrying the same request (same id) may succeed.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Retry | ErrorCode::Unavailable | ErrorCode::Busy
        )
    }
}

fn check_version(r: &mut Reader, what: &'static str) -> Result<(), DecodeError> {
    let version = r.u8(what)?;
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(DecodeError {
            what,
            offset: 0,
            problem: DecodeProblem::UnsupportedVersion(version),
        })
    }
}

fn encode_status<'w>(w: &'w mut Writer, status: &NodeStatus) -> &'w mut Writer {
    let role = match status.role {
        Role::Passive => 1,
        Role::Candidate => 2,
        Role::Leader => 3,
    };
    w.u64(status.id.0).u8(role).u64(status.term.0);
    w.u64(status.leader.map_or(0, |id| id.0));
    w.u64(status.commit_index.0).u64(status.last_index.0);
    w.u64(status.durable_index.0).u64(status.applied_index.0);
    w.u64(status.snapshot_index.0).u64(status.first_index.0)
}

fn decode_status(r: &mut Reader) -> Result<NodeStatus, DecodeError> {
    let id = NodeId(r.u64("node id")?);
    let role = match r.u8("role")? {
        1 => Role::Passive,
        2 => Role::Candidate,
        3 => Role::Leader,
        tag => return Err(r.unknown_tag("role", tag)),
    };
    let term = Term(r.u64("term")?);
    // Node id 0 is never assigned (config validation refuses it), so it encodes "no leader".
    let leader = Some(r.u64("leader")?).filter(|id| *id != 0).map(NodeId);
    Ok(NodeStatus {
        id,
        role,
        term,
        leader,
        commit_index: LogIndex(r.u64("commit index")?),
        last_index: LogIndex(r.u64("last index")?),
        durable_index: LogIndex(r.u64("durable index")?),
        applied_index: LogIndex(r.u64("applied index")?),
        snapshot_index: LogIndex(r.u64("snapshot index")?),
        first_index: LogIndex(r.u64("first index")?),
    })
}

fn decode_entries(r: &mut Reader) -> Result<ResponseBody, DecodeError> {
    let commit_index = LogIndex(r.u64("commit index")?);
    let count = r.u32("entry count")?;
    // Not trusted for allocation: the vector grows as entries actually decode.
    let mut entries = Vec::new();
    for _ in 0..count {
        let index = LogIndex(r.u64("entry index")?);
        let term = Term(r.u64("entry term")?);
        let kind = match r.u8("entry kind")? {
            1 => ReadEntryKind::Noop,
            2 => ReadEntryKind::Append,
            3 => ReadEntryKind::Command,
            4 => ReadEntryKind::Duplicate,
            tag => return Err(r.unknown_tag("entry kind", tag)),
        };
        let data = r.bytes("entry data")?;
        entries.push(ReadEntry {
            index,
            term,
            kind,
            data,
        });
    }
    Ok(ResponseBody::Entries {
        entries,
        commit_index,
    })
}

fn decode_consistency(r: &mut Reader) -> Result<Consistency, DecodeError> {
    let byte = r.u8("consistency")?;
    Consistency::from_u8(byte).ok_or_else(|| r.unknown_tag("consistency", byte))
}

fn decode_error_code(r: &mut Reader) -> Result<ErrorCode, DecodeError> {
    match r.u8("error code")? {
        1 => Ok(ErrorCode::BadRequest),
        2 => Ok(ErrorCode::TooLarge),
        3 => Ok(ErrorCode::Retry),
        4 => Ok(ErrorCode::SessionExpired),
        5 => Ok(ErrorCode::Unavailable),
        6 => Ok(ErrorCode::Compacted),
        7 => Ok(ErrorCode::ChangeRefused),
        8 => Ok(ErrorCode::Busy),
        tag => Err(r.unknown_tag("error code", tag)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn all_requests() -> Vec<Op> {
        vec![
            Op::Append { value: b("hello") },
            Op::Read {
                from: LogIndex(5),
                max_count: 10,
                consistency: Consistency::Stale,
            },
            Op::Status,
            Op::Command { payload: b("cmd") },
            Op::Query {
                payload: Bytes::new(),
                consistency: Consistency::Linearizable,
            },
            Op::Query {
                payload: b("q"),
                consistency: Consistency::Lease,
            },
            Op::Snapshot,
            Op::Members,
            Op::ChangeMembers {
                change: MemberChange::Promote(NodeId(4)),
            },
            Op::ChangeMembers {
                change: MemberChange::Remove(NodeId(2)),
            },
            Op::ChangeMembers {
                change: MemberChange::Add {
                    id: NodeId(5),
                    peer_addr: "127.0.0.1:7105".parse().unwrap(),
                    client_addr: "[::1]:7205".parse().unwrap(),
                    learner: true,
                },
            },
            Op::TransferLeader { target: None },
            Op::TransferLeader {
                target: Some(NodeId(3)),
            },
        ]
    }

    fn all_responses() -> Vec<ResponseBody> {
        let status = NodeStatus {
            id: NodeId(2),
            role: Role::Leader,
            term: Term(3),
            leader: Some(NodeId(2)),
            commit_index: LogIndex(10),
            last_index: LogIndex(12),
            durable_index: LogIndex(11),
            applied_index: LogIndex(9),
            snapshot_index: LogIndex(4),
            first_index: LogIndex(2),
        };
        let entry = |index, kind, data: &str| ReadEntry {
            index: LogIndex(index),
            term: Term(1),
            kind,
            data: b(data),
        };
        vec![
            ResponseBody::Appended { index: LogIndex(7) },
            ResponseBody::Entries {
                entries: vec![
                    entry(1, ReadEntryKind::Noop, ""),
                    entry(2, ReadEntryKind::Append, "a"),
                    entry(3, ReadEntryKind::Command, "c"),
                    entry(4, ReadEntryKind::Duplicate, "a"),
                ],
                commit_index: LogIndex(4),
            },
            ResponseBody::Status(status.clone()),
            ResponseBody::Status(NodeStatus {
                leader: None,
                role: Role::Candidate,
                ..status
            }),
            ResponseBody::Applied {
                index: LogIndex(3),
                output: b("out"),
            },
            ResponseBody::NotLeader { leader: None },
            ResponseBody::NotLeader {
                leader: Some(LeaderHint {
                    id: NodeId(3),
                    client_addr: "127.0.0.1:7203".into(),
                }),
            },
            ResponseBody::Error {
                code: ErrorCode::Retry,
                reason: "leader changed".into(),
            },
            ResponseBody::Error {
                code: ErrorCode::Compacted,
                reason: "compacted".into(),
            },
            ResponseBody::Snapshot {
                index: LogIndex(40),
            },
        ]
        .into_iter()
        .chain(membership_responses())
        .collect()
    }

    /// Version 5 (issue 12): the membership answers and error codes.
    fn membership_responses() -> Vec<ResponseBody> {
        vec![
            ResponseBody::Error {
                code: ErrorCode::ChangeRefused,
                reason: "node 9 is not a member".into(),
            },
            ResponseBody::Error {
                code: ErrorCode::Busy,
                reason: "a change is in progress".into(),
            },
            ResponseBody::Members(crate::member_protocol::Members {
                leader: Some(NodeId(1)),
                last_index: LogIndex(12),
                members: vec![
                    crate::member_protocol::MemberInfo {
                        id: NodeId(1),
                        role: crate::member_protocol::MemberRole::Voter,
                        match_index: Some(LogIndex(12)),
                        client_addr: "127.0.0.1:7201".into(),
                        peer_addr: "127.0.0.1:7101".into(),
                    },
                    crate::member_protocol::MemberInfo {
                        id: NodeId(4),
                        role: crate::member_protocol::MemberRole::Learner,
                        match_index: None,
                        client_addr: String::new(),
                        peer_addr: String::new(),
                    },
                ],
            }),
            ResponseBody::Members(crate::member_protocol::Members {
                leader: None,
                last_index: LogIndex(0),
                members: Vec::new(),
            }),
            ResponseBody::MembersChanged {
                index: LogIndex(13),
            },
            ResponseBody::LeaderMoved { leader: NodeId(3) },
        ]
    }

    #[test]
    fn requests_round_trip() {
        for (seq, op) in all_requests().into_iter().enumerate() {
            let request = Request {
                id: RequestId {
                    client: 42,
                    seq: seq as u64,
                },
                op,
            };
            assert_eq!(Request::decode(request.encode()).unwrap(), request);
        }
    }

    #[test]
    fn responses_round_trip() {
        for (seq, body) in all_responses().into_iter().enumerate() {
            let response = Response {
                seq: seq as u64,
                body,
            };
            assert_eq!(Response::decode(response.encode()).unwrap(), response);
        }
    }

    #[test]
    fn golden_request_bytes() {
        let request = Request {
            id: RequestId { client: 1, seq: 2 },
            op: Op::Command { payload: b("kv") },
        };
        let expected: &[u8] = &[
            6, // version
            1, 0, 0, 0, 0, 0, 0, 0, // client id
            2, 0, 0, 0, 0, 0, 0, 0, // sequence number
            4, // command
            2, 0, 0, 0, b'k', b'v', // payload
        ];
        assert_eq!(&request.encode()[..], expected);
        let request = Request {
            id: RequestId { client: 1, seq: 2 },
            op: Op::Snapshot,
        };
        assert_eq!(request.encode()[17], 6, "the snapshot operation's tag");
        // Version 4: a linearizable query of "k" (tag 10, payload, consistency 1).
        let request = Request {
            id: RequestId { client: 1, seq: 2 },
            op: Op::Query {
                payload: b("k"),
                consistency: Consistency::Linearizable,
            },
        };
        assert_eq!(&request.encode()[17..], &[10, 1, 0, 0, 0, b'k', 1]);
        let request = Request {
            id: RequestId { client: 1, seq: 2 },
            op: Op::Read {
                from: LogIndex(3),
                max_count: 5,
                consistency: Consistency::Stale,
            },
        };
        let read: &[u8] = &[11, 3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 3];
        assert_eq!(&request.encode()[17..], read);
        // Version 5 (issue 12): remove node 2 (tag 8, change 3, id), transfer to the best (9, 0).
        let request = Request {
            id: RequestId { client: 1, seq: 2 },
            op: Op::ChangeMembers {
                change: MemberChange::Remove(NodeId(2)),
            },
        };
        let remove: &[u8] = &[8, 3, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(&request.encode()[17..], remove);
        let request = Request {
            id: RequestId { client: 1, seq: 2 },
            op: Op::TransferLeader { target: None },
        };
        assert_eq!(&request.encode()[17..], &[9, 0, 0, 0, 0, 0, 0, 0, 0]);
        let response = Response {
            seq: 2,
            body: ResponseBody::Snapshot { index: LogIndex(9) },
        };
        let expected: &[u8] = &[6, 2, 0, 0, 0, 0, 0, 0, 0, 7, 9, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(&response.encode()[..], expected);
    }

    #[test]
    fn golden_member_add_bytes() {
        // Version 6 (issue 12): add node 4 as a learner (change 1, id, two addresses, 1).
        let request = Request {
            id: RequestId { client: 1, seq: 2 },
            op: Op::ChangeMembers {
                change: MemberChange::Add {
                    id: NodeId(4),
                    peer_addr: "1.2.3.4:5".parse().unwrap(),
                    client_addr: "1.2.3.4:6".parse().unwrap(),
                    learner: true,
                },
            },
        };
        let mut add = vec![8, 1, 4, 0, 0, 0, 0, 0, 0, 0];
        add.extend_from_slice(&[9, 0, 0, 0]);
        add.extend_from_slice(b"1.2.3.4:5");
        add.extend_from_slice(&[9, 0, 0, 0]);
        add.extend_from_slice(b"1.2.3.4:6");
        add.push(1);
        assert_eq!(&request.encode()[17..], &add[..]);
    }

    #[test]
    fn every_truncation_of_every_message_is_an_error() {
        let requests = all_requests().into_iter().map(|op| {
            Request {
                id: RequestId { client: 1, seq: 1 },
                op,
            }
            .encode()
        });
        for full in requests {
            for cut in 0..full.len() {
                assert!(Request::decode(full.slice(..cut)).is_err(), "cut at {cut}");
            }
        }
        for body in all_responses() {
            let full = Response { seq: 1, body }.encode();
            for cut in 0..full.len() {
                assert!(Response::decode(full.slice(..cut)).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn garbage_is_an_error_naming_the_field() {
        let error = Request::decode(Bytes::from_static(&[9, 0])).unwrap_err();
        assert_eq!(error.to_string(), "unsupported request version 9 at byte 0");
        let mut bytes = Request {
            id: RequestId { client: 1, seq: 1 },
            op: Op::Status,
        }
        .encode()
        .to_vec();
        bytes[17] = 99;
        let error = Request::decode(Bytes::from(bytes.clone())).unwrap_err();
        assert_eq!(error.to_string(), "unknown operation tag 99 at byte 17");
        bytes[17] = OP_STATUS;
        bytes.push(0);
        let error = Request::decode(Bytes::from(bytes)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unexpected bytes after request at byte 18"
        );
    }

    /// The error layout every version shares, as a version 1 client decodes it.
    fn decode_error_of_any_version(bytes: &[u8]) -> (u8, u64, ErrorCode, String) {
        let mut r = Reader::new(Bytes::copy_from_slice(bytes));
        let version = r.u8("version").unwrap();
        let seq = r.u64("sequence number").unwrap();
        assert_eq!(r.u8("response").unwrap(), BODY_ERROR);
        let code = decode_error_code(&mut r).unwrap();
        let reason = r.string("reason").unwrap();
        r.finish("response").unwrap();
        (version, seq, code, reason)
    }

    #[test]
    fn a_request_of_another_version_gets_an_error_its_client_can_read() {
        // A version 1 `get k` (tag 5), as a client of the first release sends it.
        let old: &[u8] = &[
            1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 1, 0, 0, 0, b'k',
        ];
        let error = Request::decode(Bytes::copy_from_slice(old)).unwrap_err();
        assert_eq!(error.problem, DecodeProblem::UnsupportedVersion(1));
        let (version, seq, code, reason) =
            decode_error_of_any_version(&unsupported_version_response(1));
        assert_eq!((version, seq, code), (1, 0, ErrorCode::BadRequest));
        assert_eq!(
            reason,
            "client protocol version 1 is not supported: this node speaks version 6"
        );
        let (version, _, _, reason) = decode_error_of_any_version(&unsupported_version_response(7));
        assert_eq!(version, 7);
        assert!(
            reason.contains("version 7") && reason.contains("version 6"),
            "{reason}"
        );
        // And a response of another version is refused by this version's decoder, naming it.
        let error = Response::decode(unsupported_version_response(1)).unwrap_err();
        assert_eq!(error.problem, DecodeProblem::UnsupportedVersion(1));
    }

    #[test]
    fn pseudo_random_bytes_never_panic() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for length in 0..2000 {
            let bytes: Vec<u8> = (0..length % 64)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % 11) as u8
                })
                .collect();
            let _ = Request::decode(Bytes::from(bytes.clone()));
            let _ = Response::decode(Bytes::from(bytes));
        }
    }
}
