//! The messages servers exchange (docs/protocol.md, Messages): vote requests and replies, appends
//! (heartbeats are appends without entries) and append replies, the snapshot transfer's
//! chunks and replies (rules S5–S7), and follower reads' read-index requests and replies (Q2).
//!
//! Invariants: every message names its sender, its receiver, the sender's term and incarnation.
//! The cluster id is not here: alpo-net checks it once per connection in the handshake and on
//! every frame, so a message from a foreign cluster never reaches the core. These types are the
//! wire protocol's content: alpo-net's codec encodes every field, so a change here is a wire
//! format change (bump the codec version, update the golden bytes).

use bytes::Bytes;

use crate::types::{Entry, Incarnation, LogIndex, LogPosition, NodeId, Rank, SnapshotMeta, Term};

/// One message from one server to another.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Message {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The sender's current term; for a pre-vote request, the term it would stand in
    /// (`current_term + 1`, rule E2), and for a pre-vote reply the term asked about.
    pub term: Term,
    /// The sender's incarnation, bumped on each start, so a receiver can tell it restarted.
    pub incarnation: Incarnation,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of message.
///
/// Deliberately exhaustive: every transport must carry every message, so a new one has to break
/// the codec's `match` (a wildcard arm would drop it), and it is a wire change anyway.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MessageBody {
    /// A candidate asks for a vote (rules E2, E3).
    VoteRequest(VoteRequest),
    /// A server answers a vote request (rules E4, E5, E8).
    VoteReply(VoteReply),
    /// The leader sends entries, or a heartbeat when `entries` is empty (rules R2, R7).
    Append(Append),
    /// A follower answers an append (rules R3, R4).
    AppendReply(AppendReply),
    /// The leader sends a chunk of its snapshot file (rule S5).
    InstallSnapshot(InstallSnapshot),
    /// A follower answers a chunk (rules S6, S7).
    SnapshotReply(SnapshotReply),
    /// A follower asks its leader for a read index (rule Q2).
    ReadIndexRequest(ReadIndexRequest),
    /// The leader answers a read-index request (rule Q2).
    ReadIndexReply(ReadIndexReply),
    /// The leader tells the target of a leadership transfer to stand at once (rule T4).
    TimeoutNow,
    /// Issue 13, rule F6: a server with a faulty entry asks a peer for a copy of it.
    FetchEntry(FetchEntry),
    /// Issue 13, rules F6, F7: the answer to a `FetchEntry`.
    FetchReply(FetchReply),
}

/// "Do you hold the entry at `position`?" (rule F6). It changes nothing at the receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FetchEntry {
    /// The faulty entry's position.
    pub position: LogPosition,
}

/// The answer to a `FetchEntry` (rules F6, F7); its message term is the responder's current
/// term.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FetchReply {
    /// The position asked about.
    pub position: LogPosition,
    /// What the responder knows of it.
    pub answer: FetchAnswer,
}

/// What a responder knows of the entry at a position (CTRL's have / dontHave / haveFaulty).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FetchAnswer {
    /// It holds the entry, intact: here it is (the requester's driver checks the CRC, F12).
    Have(Entry),
    /// Its verified log proves it does not hold that position (F7): an intact entry of
    /// another term there, or an intact log ending below it.
    DontHave,
    /// It cannot tell (faulty there itself, fenced after a hard-state loss, an empty disk, or
    /// a read failed): counts for neither side.
    Unknown,
    /// A snapshot at this position `(L, term_L)`, with `L ≥` the index asked about, covers it:
    /// the responder holds the committed prefix through `L`.
    Covered(LogPosition),
}

/// `requestVote`: "vote for me in `Message::term`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VoteRequest {
    /// Index of the candidate's last entry.
    pub last_index: LogIndex,
    /// Term of the candidate's last entry.
    pub last_term: Term,
    /// A pre-vote (rule E2): "would you vote for me?" — changes nobody's term or vote.
    pub pre_vote: bool,
    /// Sent by the target of a leadership transfer (rule T4): voters skip E5 for it.
    pub transfer: bool,
}

/// Why a vote was granted or refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VoteReason {
    /// The vote is granted (rule E4).
    Granted = 1,
    /// The voter already voted for another candidate in this term (rule E4).
    AlreadyVoted = 2,
    /// The candidate's log is less up to date than the voter's (rule E4).
    LogNotComplete = 3,
    /// The request's term is below the voter's current term (rule E6).
    StaleTerm = 4,
    /// The voter heard from a live leader within the shortest passive timeout (rule E5).
    LeaderAlive = 5,
    /// The receiver is not a voter of its configuration, and the candidate's log is no more
    /// complete than its own, so the candidate cannot count it either (rule M7).
    NotVoter = 6,
    /// The voter lost its hard state and the request's term is below its vote fence: it may
    /// have voted in that term already (rule F9).
    Abstaining = 7,
}

/// The answer to a `VoteRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VoteReply {
    /// Granted, or why not.
    pub reason: VoteReason,
    /// The voter's rank, when the voter is itself a candidate of the requested term, so that a
    /// lower-ranked requester defers (rule E8).
    pub voter_rank: Option<Rank>,
    /// Whether this answers a pre-vote (rule E2).
    pub pre_vote: bool,
}

/// `appendEntry` / `heartbeat`: entries after `prev_index`, and the leader's commit index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Append {
    /// Index of the entry just before `entries` (0 when they start the log).
    pub prev_index: LogIndex,
    /// Term of the entry at `prev_index` (0 when `prev_index` is 0).
    pub prev_term: Term,
    /// Consecutive entries starting at `prev_index + 1`; empty for a heartbeat.
    pub entries: Vec<Entry>,
    /// The leader's commit index (rule R6).
    pub leader_commit: LogIndex,
    /// The leader's read round in its term when it sent this Append (rule Q1(c)); 0 before
    /// its first round.
    pub round: u64,
}

/// The answer to an `Append`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AppendReply {
    /// Accepted up to a match index, or rejected with a hint.
    pub result: AppendResult,
    /// The highest `Append::round` this follower received in the reply's term (rule Q1(c)).
    pub round: u64,
    /// Issue 13, rule F5: the follower's lowest faulty index `f`, if it has one. Its match
    /// index stays below `f`, and the leader sends from `f` (the follower replaces the payload
    /// of an entry of the same position instead of keeping it).
    pub repair_from: Option<LogIndex>,
}

/// The outcome of an `Append` at a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AppendResult {
    /// The follower holds the leader's log, durably, up to `match_index` (rule R4).
    Accepted {
        /// `prev_index + entries.len()` of the acknowledged Append; durable on the follower.
        match_index: LogIndex,
    },
    /// The consistency check failed (rule R3), or the append came from a stale term (rule E6).
    Rejected(RejectHint),
}

/// What a follower tells the leader when it rejects an Append, so the leader can move
/// `next_index` back past a whole conflicting term at once (rule R3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RejectHint {
    /// Term of the follower's entry at the Append's `prev_index` (0 if it has none there).
    pub conflict_term: Term,
    /// First index the follower holds of `conflict_term` (0 if `conflict_term` is 0).
    pub conflict_first_index: LogIndex,
    /// Index of the follower's last entry.
    pub last_index: LogIndex,
    /// Term of the follower's last entry.
    pub last_term: Term,
}

/// One chunk of the leader's snapshot file: bytes `offset..offset + data.len()` (rule S5).
///
/// The bytes are opaque to the core. They carry no checksum of their own: the wire frame is
/// checksummed, and the file has its own chunk checksums and image checksum, which the follower's
/// driver verifies in full before it installs the file (rule S7).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InstallSnapshot {
    /// The snapshot: its last position identifies it, its size is the whole file's.
    pub snapshot: SnapshotMeta,
    /// Where `data` starts in the file.
    pub offset: u64,
    /// The chunk, at least one byte, at most `Config::snapshot_chunk_bytes`.
    pub data: Bytes,
    /// Whether this chunk ends the file (`offset + data.len() == snapshot.size`).
    pub last: bool,
}

/// The answer to an `InstallSnapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnapshotReply {
    /// The snapshot the answer is about (its last position).
    pub snapshot: LogPosition,
    /// Where the transfer stands.
    pub result: SnapshotResult,
}

/// Where a follower's snapshot transfer stands (rules S6, S7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SnapshotResult {
    /// The follower holds this many bytes of the file: send from there (after a lost,
    /// duplicated or reordered chunk, a restart, or a bad image: 0).
    NextOffset(u64),
    /// The follower installed the snapshot (or had applied past it): it holds the leader's log
    /// up to this index durably.
    Installed(LogIndex),
}

impl VoteReply {
    /// Whether the vote (or pre-vote) was granted.
    #[must_use]
    pub fn granted(&self) -> bool {
        self.reason == VoteReason::Granted
    }
}

/// "Give me a read index": a follower's read (rule Q2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadIndexRequest {
    /// The follower's name for the read, echoed in the reply.
    pub read_id: u64,
}

/// The leader's answer to a `ReadIndexRequest` (rule Q2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReadIndexReply {
    /// The `ReadIndexRequest::read_id` answered.
    pub read_id: u64,
    /// The read index, or why there is none.
    pub result: ReadIndexResult,
}

/// What a leader answers to a `ReadIndexRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReadIndexResult {
    /// The leader confirmed it led after the request arrived (Q1 (a)–(c)); serve the read once
    /// applied up to this index.
    Ready(LogIndex),
    /// The receiver does not lead (any more) in the request's term, or lost the role before
    /// the read was confirmed (Q1 (e)).
    NotLeader,
}
