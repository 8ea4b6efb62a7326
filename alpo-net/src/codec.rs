//! The codec: every `alpo_core::Message` to and from one frame body (format version 3, laid out
//! byte by byte in `docs/formats.md`).
//!
//! Invariants: the frame kind says which message the body holds, the frame's sender field is the
//! message's `from`, and the body is consumed exactly (trailing bytes are malformed). Entry
//! indices are not sent: an Append's entries are consecutive from `prev_index + 1` (as
//! `alpo_core::Append` requires), so the decoder derives them and a gap cannot be expressed on the
//! wire. Decoding never panics and never allocates more than the body's size justifies; entry
//! payloads are `Bytes::slice`s of the frame body, not copies.

use alpo_core::{
    Append, AppendReply, AppendResult, ClusterId, Entry, EntryKind, Incarnation, LogIndex, Message,
    MessageBody, NodeId, Rank, RejectHint, Term, VoteReason, VoteReply, VoteRequest,
};
use alpo_core::{
    Configuration, InstallSnapshot, LogPosition, SnapshotMeta, SnapshotReply, SnapshotResult,
};
use alpo_core::{FetchAnswer, FetchEntry, FetchReply};
use alpo_core::{ReadIndexReply, ReadIndexRequest, ReadIndexResult};
use bytes::Bytes;

use crate::error::Rejection;
use crate::frame::{FrameHeader, FrameKind, begin_frame, finish_frame};
use crate::limits::ENTRY_HEADER_BYTES;

/// Flag bit in VoteRequest and VoteReply bodies: this is a pre-vote (rule E2).
/// FetchReply answer tags (issue 13).
const FETCH_HAVE: u8 = 1;
const FETCH_DONT_HAVE: u8 = 2;
const FETCH_UNKNOWN: u8 = 3;
const FETCH_COVERED: u8 = 4;
const FLAG_PRE_VOTE: u8 = 0b01;
/// Flag bit in VoteRequest bodies: the candidate stands for a leadership transfer (rule T4).
const FLAG_TRANSFER: u8 = 0b10;
/// Flag bit in VoteReply bodies: the voter's rank follows (rule E8).
const FLAG_VOTER_RANK: u8 = 0b10;
/// AppendReply result tag: accepted.
const RESULT_ACCEPTED: u8 = 1;
/// AppendReply result tag: rejected with a hint.
const RESULT_REJECTED: u8 = 2;
/// Flag bit in InstallSnapshot bodies: this chunk ends the file (rule S5).
const FLAG_LAST_CHUNK: u8 = 0b01;
/// SnapshotReply result tag: the bytes the follower holds (rule S6).
const RESULT_NEXT_OFFSET: u8 = 1;
/// SnapshotReply result tag: the snapshot is installed (rule S7).
const RESULT_INSTALLED: u8 = 2;
/// ReadIndexReply result tag: the read index follows (rule Q2).
const RESULT_READ_READY: u8 = 1;
/// ReadIndexReply result tag: the receiver does not lead.
const RESULT_READ_NOT_LEADER: u8 = 2;

/// Why a message could not be encoded; the transport drops it and counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// An Append's entries are not consecutive from `prev_index + 1`: an ALPO bug.
    EntriesNotConsecutive {
        /// Position in `entries` of the first entry out of sequence.
        position: u64,
    },
    /// The message does not fit in one frame.
    TooLarge {
        /// The body's size in bytes.
        bytes: u64,
    },
}

/// The frame kind that carries a message body.
#[must_use]
pub fn frame_kind(body: &MessageBody) -> FrameKind {
    match body {
        MessageBody::VoteRequest(_) => FrameKind::VoteRequest,
        MessageBody::VoteReply(_) => FrameKind::VoteReply,
        MessageBody::Append(_) => FrameKind::Append,
        MessageBody::AppendReply(_) => FrameKind::AppendReply,
        MessageBody::InstallSnapshot(_) => FrameKind::InstallSnapshot,
        MessageBody::SnapshotReply(_) => FrameKind::SnapshotReply,
        MessageBody::TimeoutNow => FrameKind::TimeoutNow,
        MessageBody::ReadIndexRequest(_) => FrameKind::ReadIndexRequest,
        MessageBody::ReadIndexReply(_) => FrameKind::ReadIndexReply,
        MessageBody::FetchEntry(_) => FrameKind::FetchEntry,
        MessageBody::FetchReply(_) => FrameKind::FetchReply,
    }
}

/// Appends `message` as one whole frame of `cluster_id` to `out`. On error `out` is unchanged.
pub fn encode_message(
    message: &Message,
    cluster_id: ClusterId,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let rollback = out.len();
    let start = begin_frame(out);
    if let Err(error) = encode_body(message, out) {
        out.truncate(rollback);
        return Err(error);
    }
    let kind = frame_kind(&message.body);
    finish_frame(out, start, kind, cluster_id, message.from.0).map_err(|too_large| {
        EncodeError::TooLarge {
            bytes: too_large.bytes,
        }
    })
}

/// Decodes the body of a peer-message frame; `from` is the frame's sender.
pub fn decode_message(header: &FrameHeader, body: Bytes) -> Result<Message, Rejection> {
    let mut reader = BodyReader {
        kind: header.kind,
        body,
        offset: 0,
    };
    let to = NodeId(reader.u64("body ends inside the receiver")?);
    let term = Term(reader.u64("body ends inside the term")?);
    let incarnation = Incarnation(reader.u64("body ends inside the incarnation")?);
    let body = match header.kind {
        FrameKind::VoteRequest => MessageBody::VoteRequest(decode_vote_request(&mut reader)?),
        FrameKind::VoteReply => MessageBody::VoteReply(decode_vote_reply(&mut reader)?),
        FrameKind::Append => MessageBody::Append(decode_append(&mut reader)?),
        FrameKind::AppendReply => MessageBody::AppendReply(decode_append_reply(&mut reader)?),
        FrameKind::InstallSnapshot => {
            MessageBody::InstallSnapshot(decode_install_snapshot(&mut reader)?)
        }
        FrameKind::SnapshotReply => MessageBody::SnapshotReply(decode_snapshot_reply(&mut reader)?),
        FrameKind::TimeoutNow => MessageBody::TimeoutNow,
        FrameKind::ReadIndexRequest => MessageBody::ReadIndexRequest(ReadIndexRequest {
            read_id: reader.u64("body ends inside the read id")?,
        }),
        FrameKind::ReadIndexReply => {
            MessageBody::ReadIndexReply(decode_read_index_reply(&mut reader)?)
        }
        FrameKind::FetchEntry => MessageBody::FetchEntry(FetchEntry {
            position: decode_position(&mut reader)?,
        }),
        FrameKind::FetchReply => MessageBody::FetchReply(decode_fetch_reply(&mut reader)?),
        _ => return Err(reader.malformed("not a peer message kind")),
    };
    reader.finish()?;
    Ok(Message {
        from: NodeId(header.sender),
        to,
        term,
        incarnation,
        body,
    })
}

fn encode_body(message: &Message, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    put_u64(out, message.to.0);
    put_u64(out, message.term.0);
    put_u64(out, message.incarnation.0);
    match &message.body {
        MessageBody::VoteRequest(request) => {
            put_u64(out, request.last_index.0);
            put_u64(out, request.last_term.0);
            let mut flags = 0;
            if request.pre_vote {
                flags |= FLAG_PRE_VOTE;
            }
            if request.transfer {
                flags |= FLAG_TRANSFER;
            }
            out.push(flags);
        }
        MessageBody::VoteReply(reply) => encode_vote_reply(reply, out),
        MessageBody::Append(append) => encode_append(append, out)?,
        MessageBody::AppendReply(reply) => encode_append_reply(reply, out),
        MessageBody::InstallSnapshot(chunk) => encode_install_snapshot(chunk, out)?,
        MessageBody::SnapshotReply(reply) => encode_snapshot_reply(reply, out),
        MessageBody::TimeoutNow => {}
        MessageBody::ReadIndexRequest(request) => put_u64(out, request.read_id),
        MessageBody::ReadIndexReply(reply) => {
            put_u64(out, reply.read_id);
            match reply.result {
                ReadIndexResult::Ready(index) => {
                    out.push(RESULT_READ_READY);
                    put_u64(out, index.0);
                }
                ReadIndexResult::NotLeader => out.push(RESULT_READ_NOT_LEADER),
            }
        }
        MessageBody::FetchEntry(fetch) => put_position(out, fetch.position),
        MessageBody::FetchReply(reply) => encode_fetch_reply(reply, out)?,
    }
    Ok(())
}

fn put_position(out: &mut Vec<u8>, position: LogPosition) {
    put_u64(out, position.index.0);
    put_u64(out, position.term.0);
}

/// Issue 13 (version 5): the position, then a tag: 1 `Have` and the entry (term, kind, payload
/// length, payload: its index is the position's), 2 `DontHave`, 3 `Unknown`, 4 `Covered` and
/// the snapshot's position.
fn encode_fetch_reply(reply: &FetchReply, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    put_position(out, reply.position);
    match &reply.answer {
        FetchAnswer::Have(entry) => {
            out.push(FETCH_HAVE);
            put_u64(out, entry.term.0);
            out.push(entry.kind.to_byte());
            let payload_bytes =
                u32::try_from(entry.payload.len()).map_err(|_| EncodeError::TooLarge {
                    bytes: u64::try_from(entry.payload.len()).unwrap_or(u64::MAX),
                })?;
            put_u32(out, payload_bytes);
            out.extend_from_slice(&entry.payload);
        }
        FetchAnswer::DontHave => out.push(FETCH_DONT_HAVE),
        FetchAnswer::Unknown => out.push(FETCH_UNKNOWN),
        FetchAnswer::Covered(snapshot) => {
            out.push(FETCH_COVERED);
            put_position(out, *snapshot);
        }
    }
    Ok(())
}

fn decode_position(reader: &mut BodyReader) -> Result<LogPosition, Rejection> {
    Ok(LogPosition {
        index: LogIndex(reader.u64("body ends inside a position's index")?),
        term: Term(reader.u64("body ends inside a position's term")?),
    })
}

fn decode_fetch_reply(reader: &mut BodyReader) -> Result<FetchReply, Rejection> {
    let position = decode_position(reader)?;
    let answer = match reader.u8("body ends inside the fetch answer tag")? {
        FETCH_HAVE => {
            let term = Term(reader.u64("body ends inside the entry term")?);
            let kind = EntryKind::from_byte(reader.u8("body ends inside the entry kind")?)
                .ok_or_else(|| reader.malformed_before(1, "unknown entry kind"))?;
            let payload_bytes = reader.u32("body ends inside the entry payload length")?;
            let payload = reader.bytes(payload_bytes, "body ends inside the entry payload")?;
            FetchAnswer::Have(Entry {
                index: position.index,
                term,
                kind,
                payload,
            })
        }
        FETCH_DONT_HAVE => FetchAnswer::DontHave,
        FETCH_UNKNOWN => FetchAnswer::Unknown,
        FETCH_COVERED => FetchAnswer::Covered(decode_position(reader)?),
        _ => return Err(reader.malformed_before(1, "unknown fetch answer tag")),
    };
    Ok(FetchReply { position, answer })
}

fn encode_vote_reply(reply: &VoteReply, out: &mut Vec<u8>) {
    let mut flags = 0;
    if reply.pre_vote {
        flags |= FLAG_PRE_VOTE;
    }
    if reply.voter_rank.is_some() {
        flags |= FLAG_VOTER_RANK;
    }
    out.push(reply.reason as u8);
    out.push(flags);
    let rank = reply.voter_rank.unwrap_or(Rank {
        last_term: Term(0),
        last_index: LogIndex(0),
        id: NodeId(0),
    });
    put_u64(out, rank.last_term.0);
    put_u64(out, rank.last_index.0);
    put_u64(out, rank.id.0);
}

fn encode_append(append: &Append, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    put_u64(out, append.prev_index.0);
    put_u64(out, append.prev_term.0);
    put_u64(out, append.leader_commit.0);
    put_u64(out, append.round);
    let too_large = |bytes: usize| EncodeError::TooLarge {
        bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
    };
    let count = u32::try_from(append.entries.len()).map_err(|_| too_large(usize::MAX))?;
    put_u32(out, count);
    let mut expected = append.prev_index;
    for (position, entry) in append.entries.iter().enumerate() {
        expected = expected.next();
        if entry.index != expected {
            return Err(EncodeError::EntriesNotConsecutive {
                position: u64::try_from(position).unwrap_or(u64::MAX),
            });
        }
        let payload_bytes =
            u32::try_from(entry.payload.len()).map_err(|_| too_large(entry.payload.len()))?;
        put_u64(out, entry.term.0);
        out.push(entry.kind.to_byte());
        put_u32(out, payload_bytes);
        out.extend_from_slice(&entry.payload);
    }
    Ok(())
}

fn encode_append_reply(reply: &AppendReply, out: &mut Vec<u8>) {
    match reply.result {
        AppendResult::Accepted { match_index } => {
            out.push(RESULT_ACCEPTED);
            put_u64(out, match_index.0);
        }
        AppendResult::Rejected(hint) => {
            out.push(RESULT_REJECTED);
            put_u64(out, hint.conflict_term.0);
            put_u64(out, hint.conflict_first_index.0);
            put_u64(out, hint.last_index.0);
            put_u64(out, hint.last_term.0);
        }
    }
    put_u64(out, reply.round);
    // Issue 13 (wire version 5): `repair_from`, a presence byte then the index.
    match reply.repair_from {
        Some(from) => {
            out.push(1);
            put_u64(out, from.0);
        }
        None => out.push(0),
    }
}

fn decode_vote_request(reader: &mut BodyReader) -> Result<VoteRequest, Rejection> {
    let last_index = LogIndex(reader.u64("body ends inside last_index")?);
    let last_term = Term(reader.u64("body ends inside last_term")?);
    let flags = reader.u8("body ends inside the flags")?;
    if flags & !(FLAG_PRE_VOTE | FLAG_TRANSFER) != 0 {
        return Err(reader.malformed_before(1, "unknown flag bits"));
    }
    Ok(VoteRequest {
        last_index,
        last_term,
        pre_vote: flags & FLAG_PRE_VOTE != 0,
        transfer: flags & FLAG_TRANSFER != 0,
    })
}

fn decode_vote_reply(reader: &mut BodyReader) -> Result<VoteReply, Rejection> {
    let reason = match reader.u8("body ends inside the reason")? {
        1 => VoteReason::Granted,
        2 => VoteReason::AlreadyVoted,
        3 => VoteReason::LogNotComplete,
        4 => VoteReason::StaleTerm,
        5 => VoteReason::LeaderAlive,
        6 => VoteReason::NotVoter,
        7 => VoteReason::Abstaining,
        _ => return Err(reader.malformed_before(1, "unknown vote reason")),
    };
    let flags = reader.u8("body ends inside the flags")?;
    if flags & !(FLAG_PRE_VOTE | FLAG_VOTER_RANK) != 0 {
        return Err(reader.malformed_before(1, "unknown flag bits"));
    }
    let rank = Rank {
        last_term: Term(reader.u64("body ends inside the voter rank")?),
        last_index: LogIndex(reader.u64("body ends inside the voter rank")?),
        id: NodeId(reader.u64("body ends inside the voter rank")?),
    };
    let voter_rank = if flags & FLAG_VOTER_RANK != 0 {
        Some(rank)
    } else if rank.last_term.0 == 0 && rank.last_index.0 == 0 && rank.id.0 == 0 {
        None
    } else {
        return Err(reader.malformed_before(24, "voter rank present without its flag"));
    };
    Ok(VoteReply {
        reason,
        voter_rank,
        pre_vote: flags & FLAG_PRE_VOTE != 0,
    })
}

fn decode_append(reader: &mut BodyReader) -> Result<Append, Rejection> {
    let prev_index = LogIndex(reader.u64("body ends inside prev_index")?);
    let prev_term = Term(reader.u64("body ends inside prev_term")?);
    let leader_commit = LogIndex(reader.u64("body ends inside leader_commit")?);
    let round = reader.u64("body ends inside the round")?;
    let count = reader.u32("body ends inside the entry count")?;
    let count = usize::try_from(count).map_err(|_| reader.malformed("entry count too large"))?;
    // Every entry takes at least ENTRY_HEADER_BYTES, so the body bounds the allocation.
    if reader.remaining() / ENTRY_HEADER_BYTES < count {
        return Err(reader.malformed_before(4, "entry count exceeds what the body can hold"));
    }
    let mut entries = Vec::with_capacity(count);
    let mut index = prev_index;
    for _ in 0..count {
        index = LogIndex(
            index
                .0
                .checked_add(1)
                .ok_or_else(|| reader.malformed("entry index overflows u64"))?,
        );
        let term = Term(reader.u64("body ends inside an entry term")?);
        let kind = EntryKind::from_byte(reader.u8("body ends inside an entry kind")?)
            .ok_or_else(|| reader.malformed_before(1, "unknown entry kind"))?;
        let payload_bytes = reader.u32("body ends inside an entry payload length")?;
        let payload = reader.bytes(payload_bytes, "body ends inside an entry payload")?;
        entries.push(Entry {
            index,
            term,
            kind,
            payload,
        });
    }
    Ok(Append {
        prev_index,
        prev_term,
        entries,
        leader_commit,
        round,
    })
}

fn decode_read_index_reply(reader: &mut BodyReader) -> Result<ReadIndexReply, Rejection> {
    let read_id = reader.u64("body ends inside the read id")?;
    let result = match reader.u8("body ends inside the result tag")? {
        RESULT_READ_READY => {
            ReadIndexResult::Ready(LogIndex(reader.u64("body ends inside the read index")?))
        }
        RESULT_READ_NOT_LEADER => ReadIndexResult::NotLeader,
        _ => return Err(reader.malformed_before(1, "unknown read index result tag")),
    };
    Ok(ReadIndexReply { read_id, result })
}

fn decode_append_reply(reader: &mut BodyReader) -> Result<AppendReply, Rejection> {
    let result = match reader.u8("body ends inside the result tag")? {
        RESULT_ACCEPTED => AppendResult::Accepted {
            match_index: LogIndex(reader.u64("body ends inside match_index")?),
        },
        RESULT_REJECTED => AppendResult::Rejected(RejectHint {
            conflict_term: Term(reader.u64("body ends inside conflict_term")?),
            conflict_first_index: LogIndex(reader.u64("body ends inside conflict_first_index")?),
            last_index: LogIndex(reader.u64("body ends inside last_index")?),
            last_term: Term(reader.u64("body ends inside last_term")?),
        }),
        _ => return Err(reader.malformed_before(1, "unknown append result tag")),
    };
    let round = reader.u64("body ends inside the round")?;
    let repair_from = match reader.u8("body ends inside repair_from")? {
        0 => None,
        1 => Some(LogIndex(reader.u64("body ends inside repair_from")?)),
        _ => return Err(reader.malformed_before(1, "unknown repair_from presence byte")),
    };
    Ok(AppendReply {
        result,
        round,
        repair_from,
    })
}

fn encode_install_snapshot(chunk: &InstallSnapshot, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let data_bytes = u32::try_from(chunk.data.len()).map_err(|_| EncodeError::TooLarge {
        bytes: u64::try_from(chunk.data.len()).unwrap_or(u64::MAX),
    })?;
    put_u64(out, chunk.snapshot.last.index.0);
    put_u64(out, chunk.snapshot.last.term.0);
    put_u64(out, chunk.snapshot.size);
    let configuration = chunk.snapshot.configuration.encode();
    // At most 2 + 9 × MEMBERS_MAX bytes.
    put_u32(out, u32::try_from(configuration.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(&configuration);
    put_u64(out, chunk.offset);
    out.push(if chunk.last { FLAG_LAST_CHUNK } else { 0 });
    put_u32(out, data_bytes);
    out.extend_from_slice(&chunk.data);
    Ok(())
}

fn encode_snapshot_reply(reply: &SnapshotReply, out: &mut Vec<u8>) {
    put_u64(out, reply.snapshot.index.0);
    put_u64(out, reply.snapshot.term.0);
    match reply.result {
        SnapshotResult::NextOffset(held) => {
            out.push(RESULT_NEXT_OFFSET);
            put_u64(out, held);
        }
        SnapshotResult::Installed(index) => {
            out.push(RESULT_INSTALLED);
            put_u64(out, index.0);
        }
    }
}

fn decode_install_snapshot(reader: &mut BodyReader) -> Result<InstallSnapshot, Rejection> {
    let index = LogIndex(reader.u64("body ends inside the snapshot's last index")?);
    let term = Term(reader.u64("body ends inside the snapshot's last term")?);
    let size = reader.u64("body ends inside the snapshot size")?;
    let configuration_bytes = reader.u32("body ends inside the configuration length")?;
    let configuration = reader.bytes(configuration_bytes, "body ends inside the configuration")?;
    let configuration = Configuration::decode(&configuration)
        .map_err(|_| reader.malformed("the snapshot's configuration does not decode"))?;
    let offset = reader.u64("body ends inside the chunk offset")?;
    let flags = reader.u8("body ends inside the flags")?;
    if flags & !FLAG_LAST_CHUNK != 0 {
        return Err(reader.malformed_before(1, "unknown flag bits"));
    }
    let data_bytes = reader.u32("body ends inside the chunk length")?;
    let data = reader.bytes(data_bytes, "body ends inside the chunk")?;
    Ok(InstallSnapshot {
        snapshot: SnapshotMeta {
            last: LogPosition { index, term },
            size,
            configuration,
        },
        offset,
        data,
        last: flags & FLAG_LAST_CHUNK != 0,
    })
}

fn decode_snapshot_reply(reader: &mut BodyReader) -> Result<SnapshotReply, Rejection> {
    let index = LogIndex(reader.u64("body ends inside the snapshot's last index")?);
    let term = Term(reader.u64("body ends inside the snapshot's last term")?);
    let result = match reader.u8("body ends inside the result tag")? {
        RESULT_NEXT_OFFSET => {
            SnapshotResult::NextOffset(reader.u64("body ends inside the offset")?)
        }
        RESULT_INSTALLED => {
            SnapshotResult::Installed(LogIndex(reader.u64("body ends inside the index")?))
        }
        _ => return Err(reader.malformed_before(1, "unknown snapshot result tag")),
    };
    Ok(SnapshotReply {
        snapshot: LogPosition { index, term },
        result,
    })
}

fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// A cursor over a body that turns every short read into a named `MalformedBody`.
struct BodyReader {
    kind: FrameKind,
    body: Bytes,
    offset: usize,
}

impl BodyReader {
    fn remaining(&self) -> usize {
        self.body.len() - self.offset
    }

    fn take<const N: usize>(&mut self, problem: &'static str) -> Result<[u8; N], Rejection> {
        let end = self
            .offset
            .checked_add(N)
            .ok_or_else(|| self.malformed(problem))?;
        let bytes = self
            .body
            .get(self.offset..end)
            .ok_or_else(|| self.malformed(problem))?;
        let array = <[u8; N]>::try_from(bytes).map_err(|_| self.malformed(problem))?;
        self.offset = end;
        Ok(array)
    }

    fn u8(&mut self, problem: &'static str) -> Result<u8, Rejection> {
        Ok(self.take::<1>(problem)?[0])
    }

    fn u32(&mut self, problem: &'static str) -> Result<u32, Rejection> {
        Ok(u32::from_le_bytes(self.take(problem)?))
    }

    fn u64(&mut self, problem: &'static str) -> Result<u64, Rejection> {
        Ok(u64::from_le_bytes(self.take(problem)?))
    }

    fn bytes(&mut self, length: u32, problem: &'static str) -> Result<Bytes, Rejection> {
        let length = usize::try_from(length).map_err(|_| self.malformed(problem))?;
        if self.remaining() < length {
            return Err(self.malformed(problem));
        }
        let slice = self.body.slice(self.offset..self.offset + length);
        self.offset += length;
        Ok(slice)
    }

    fn finish(&self) -> Result<(), Rejection> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(self.malformed("trailing bytes after the message"))
        }
    }

    fn malformed(&self, problem: &'static str) -> Rejection {
        self.malformed_at(self.offset, problem)
    }

    fn malformed_before(&self, field_bytes: usize, problem: &'static str) -> Rejection {
        self.malformed_at(self.offset.saturating_sub(field_bytes), problem)
    }

    fn malformed_at(&self, offset: usize, problem: &'static str) -> Rejection {
        Rejection::MalformedBody {
            kind: self.kind,
            offset: u32::try_from(offset).unwrap_or(u32::MAX),
            problem,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameDecoder;

    const CLUSTER: ClusterId = ClusterId(3);

    fn append(entries: Vec<Entry>) -> Message {
        Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(5),
            incarnation: Incarnation(1),
            body: MessageBody::Append(Append {
                prev_index: LogIndex(9),
                prev_term: Term(4),
                entries,
                leader_commit: LogIndex(8),
                round: 0,
            }),
        }
    }

    fn entry(index: u64, payload: &'static [u8]) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(5),
            kind: EntryKind::Normal,
            payload: Bytes::from_static(payload),
        }
    }

    fn decode_frame(bytes: &[u8]) -> Result<Message, Rejection> {
        let mut decoder = FrameDecoder::new(CLUSTER);
        decoder.feed(bytes);
        let frame = decoder.next_frame()?.expect("a whole frame");
        decode_message(&frame.header, frame.body)
    }

    #[test]
    fn append_payloads_are_slices_of_the_frame_body() {
        let message = append(vec![entry(10, b"abc"), entry(11, b"defg")]);
        let mut out = Vec::new();
        encode_message(&message, CLUSTER, &mut out).unwrap();
        let mut decoder = FrameDecoder::new(CLUSTER);
        decoder.feed(&out);
        let frame = decoder.next_frame().unwrap().unwrap();
        let body_range = frame.body.as_ptr_range();
        let decoded = decode_message(&frame.header, frame.body.clone()).unwrap();
        assert_eq!(decoded, message);
        let MessageBody::Append(append) = &decoded.body else {
            panic!("not an append")
        };
        for entry in &append.entries {
            assert!(
                body_range.contains(&entry.payload.as_ptr()),
                "payload was copied"
            );
        }
    }

    #[test]
    fn gap_in_entries_is_not_encoded() {
        let message = append(vec![entry(10, b"a"), entry(12, b"b")]);
        let mut out = vec![7];
        let error = encode_message(&message, CLUSTER, &mut out).unwrap_err();
        assert_eq!(error, EncodeError::EntriesNotConsecutive { position: 1 });
        assert_eq!(out, vec![7]);
    }

    #[test]
    fn huge_entry_count_is_refused_without_allocating() {
        let message = append(Vec::new());
        let mut out = Vec::new();
        encode_message(&message, CLUSTER, &mut out).unwrap();
        // The entry count is the last field of an empty Append: claim u32::MAX entries.
        let length = out.len();
        out[length - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        let body_checksum = crc32fast::hash(&out[36..]);
        out[28..32].copy_from_slice(&body_checksum.to_le_bytes());
        let header_checksum = crc32fast::hash(&out[0..32]);
        out[32..36].copy_from_slice(&header_checksum.to_le_bytes());
        let error = decode_frame(&out).unwrap_err();
        assert_eq!(
            error,
            Rejection::MalformedBody {
                kind: FrameKind::Append,
                offset: 56,
                problem: "entry count exceeds what the body can hold",
            }
        );
    }

    #[test]
    fn trailing_bytes_and_unknown_tags_are_malformed() {
        let message = Message {
            from: NodeId(1),
            to: NodeId(2),
            term: Term(5),
            incarnation: Incarnation(1),
            body: MessageBody::AppendReply(AppendReply {
                result: AppendResult::Accepted {
                    match_index: LogIndex(3),
                },
                round: 0,
                repair_from: None,
            }),
        };
        let mut body = Vec::new();
        encode_body(&message, &mut body).unwrap();
        let header = FrameHeader {
            kind: FrameKind::AppendReply,
            cluster_id: CLUSTER,
            sender: 1,
            body_bytes: 0,
            body_checksum: 0,
        };
        let mut trailing = body.clone();
        trailing.push(0);
        let error = decode_message(&header, Bytes::from(trailing)).unwrap_err();
        assert_eq!(error.reason(), crate::CloseReason::MalformedBody);
        let mut bad_tag = body.clone();
        bad_tag[24] = 9;
        let error = decode_message(&header, Bytes::from(bad_tag)).unwrap_err();
        assert_eq!(
            error,
            Rejection::MalformedBody {
                kind: FrameKind::AppendReply,
                offset: 24,
                problem: "unknown append result tag",
            }
        );
    }
}
