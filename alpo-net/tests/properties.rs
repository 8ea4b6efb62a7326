//! Property tests: the frame decoder and the codec, fed arbitrary bytes in
//! arbitrary pieces, never panic and always give a value or an error; every message survives an
//! encode/decode round trip; decoding is canonical (what decodes re-encodes to the same bytes);
//! and any one damaged byte in a frame is caught.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail loudly"
)]

use alpo_core::{
    Append, AppendReply, AppendResult, ClusterId, Entry, EntryKind, Incarnation, LogIndex, Message,
    MessageBody, NodeId, Rank, RejectHint, Term, VoteReason, VoteReply, VoteRequest,
};
use alpo_core::{
    Configuration, InstallSnapshot, LogPosition, SnapshotMeta, SnapshotReply, SnapshotResult,
};
use alpo_core::{FetchAnswer, FetchEntry, FetchReply};
use alpo_core::{ReadIndexReply, ReadIndexRequest, ReadIndexResult};
use alpo_net::codec::{decode_message, encode_message};
use alpo_net::frame::{Frame, FrameDecoder, FrameKind, encode_frame};
use alpo_net::handshake::{decode_close, decode_hello};
use bytes::Bytes;
use proptest::prelude::*;

const CLUSTER: ClusterId = ClusterId(77);

/// Decodes whatever frames `stream` holds, fed in pieces of the given sizes, and every body as
/// its kind says. Returns the frames decoded before the end or the first error.
fn decode_everything(stream: &[u8], pieces: &[usize]) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new(CLUSTER);
    let mut frames = Vec::new();
    let mut rest = stream;
    let mut sizes = pieces.iter().copied().cycle();
    while !rest.is_empty() {
        let size = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
        decoder.feed(&rest[..size]);
        rest = &rest[size..];
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => return frames,
            }
        }
    }
    let _ = decoder.finish();
    for frame in &frames {
        match frame.header.kind {
            FrameKind::Hello => drop(decode_hello(frame)),
            FrameKind::Close => drop(decode_close(frame)),
            kind if kind.is_peer_message() => {
                drop(decode_message(&frame.header, frame.body.clone()));
            }
            _ => {}
        }
    }
    frames
}

fn peer_kind() -> impl Strategy<Value = FrameKind> {
    prop_oneof![
        Just(FrameKind::VoteRequest),
        Just(FrameKind::VoteReply),
        Just(FrameKind::Append),
        Just(FrameKind::AppendReply),
        Just(FrameKind::InstallSnapshot),
        Just(FrameKind::SnapshotReply),
        Just(FrameKind::TimeoutNow),
        Just(FrameKind::ReadIndexRequest),
        Just(FrameKind::ReadIndexReply),
    ]
}

fn vote_reason() -> impl Strategy<Value = VoteReason> {
    prop_oneof![
        Just(VoteReason::Granted),
        Just(VoteReason::AlreadyVoted),
        Just(VoteReason::LogNotComplete),
        Just(VoteReason::StaleTerm),
        Just(VoteReason::LeaderAlive),
        Just(VoteReason::NotVoter),
    ]
}

fn vote_request_body() -> impl Strategy<Value = MessageBody> {
    (any::<u64>(), any::<u64>(), any::<bool>(), any::<bool>()).prop_map(|(i, t, pre, transfer)| {
        MessageBody::VoteRequest(VoteRequest {
            last_index: LogIndex(i),
            last_term: Term(t),
            pre_vote: pre,
            transfer,
        })
    })
}

fn body() -> impl Strategy<Value = MessageBody> {
    let vote_request = vote_request_body();
    let rank = (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(t, i, id)| Rank {
        last_term: Term(t),
        last_index: LogIndex(i),
        id: NodeId(id),
    });
    let vote_reply = (vote_reason(), proptest::option::of(rank), any::<bool>()).prop_map(
        |(reason, voter_rank, pre_vote)| {
            MessageBody::VoteReply(VoteReply {
                reason,
                voter_rank,
                pre_vote,
            })
        },
    );
    prop_oneof![
        vote_request,
        vote_reply,
        append_body(),
        snapshot_body(),
        read_body(),
        fetch_body(),
        Just(MessageBody::TimeoutNow)
    ]
}

/// Issue 13: FetchEntry and FetchReply with every answer.
fn fetch_body() -> impl Strategy<Value = MessageBody> {
    let position = (any::<u64>(), any::<u64>()).prop_map(|(index, term)| LogPosition {
        index: LogIndex(index),
        term: Term(term),
    });
    let request = position
        .clone()
        .prop_map(|position| MessageBody::FetchEntry(FetchEntry { position }));
    let answer = (
        0u8..4,
        position.clone(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    let reply = (position, answer).prop_map(|(position, (tag, other, noop, payload))| {
        let answer = match tag {
            0 => FetchAnswer::Have(Entry {
                index: position.index,
                term: other.term,
                kind: if noop {
                    EntryKind::Noop
                } else {
                    EntryKind::Normal
                },
                payload: payload.into(),
            }),
            1 => FetchAnswer::DontHave,
            2 => FetchAnswer::Unknown,
            _ => FetchAnswer::Covered(other),
        };
        MessageBody::FetchReply(FetchReply { position, answer })
    });
    prop_oneof![request, reply]
}

fn append_body() -> impl Strategy<Value = MessageBody> {
    let entry = (
        any::<u64>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
    );
    let append = (
        0..u64::MAX - 16,
        any::<[u64; 2]>(),
        any::<u64>(),
        proptest::collection::vec(entry, 0..8),
    )
        .prop_map(|(prev_index, [prev_term, round], commit, entries)| {
            let entries = entries
                .into_iter()
                .zip(prev_index + 1..)
                .map(|((term, noop, payload), index)| Entry {
                    index: LogIndex(index),
                    term: Term(term),
                    kind: if noop {
                        EntryKind::Noop
                    } else {
                        EntryKind::Normal
                    },
                    payload: Bytes::from(payload),
                })
                .collect();
            MessageBody::Append(Append {
                prev_index: LogIndex(prev_index),
                prev_term: Term(prev_term),
                entries,
                leader_commit: LogIndex(commit),
                round,
            })
        });
    let accepted = any::<u64>().prop_map(|m| AppendResult::Accepted {
        match_index: LogIndex(m),
    });
    let rejected = any::<[u64; 4]>().prop_map(|[a, b, c, d]| {
        AppendResult::Rejected(RejectHint {
            conflict_term: Term(a),
            conflict_first_index: LogIndex(b),
            last_index: LogIndex(c),
            last_term: Term(d),
        })
    });
    let append_reply = (
        prop_oneof![accepted, rejected],
        any::<u64>(),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(result, round, repair_from)| {
            MessageBody::AppendReply(AppendReply {
                result,
                round,
                repair_from: repair_from.map(LogIndex),
            })
        });
    prop_oneof![append, append_reply]
}

fn read_body() -> impl Strategy<Value = MessageBody> {
    let request = any::<u64>()
        .prop_map(|read_id| MessageBody::ReadIndexRequest(ReadIndexRequest { read_id }));
    let result = prop_oneof![
        any::<u64>().prop_map(|index| ReadIndexResult::Ready(LogIndex(index))),
        Just(ReadIndexResult::NotLeader),
    ];
    let reply = (any::<u64>(), result).prop_map(|(read_id, result)| {
        MessageBody::ReadIndexReply(ReadIndexReply { read_id, result })
    });
    prop_oneof![request, reply]
}

fn snapshot_body() -> impl Strategy<Value = MessageBody> {
    let position = (any::<u64>(), any::<u64>()).prop_map(|(index, term)| LogPosition {
        index: LogIndex(index),
        term: Term(term),
    });
    let chunk = (
        position.clone(),
        any::<[u64; 2]>(),
        any::<bool>(),
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::btree_set(any::<u64>(), 0..6),
    )
        .prop_map(|(last, [size, offset], is_last, data, members)| {
            let ids: Vec<NodeId> = members.into_iter().map(NodeId).collect();
            let (voters, learners) = ids.split_at(ids.len() / 2);
            let configuration = Configuration::new(voters, learners).expect("distinct ids");
            MessageBody::InstallSnapshot(InstallSnapshot {
                snapshot: SnapshotMeta {
                    last,
                    size,
                    configuration,
                },
                offset,
                data: Bytes::from(data),
                last: is_last,
            })
        });
    let result = prop_oneof![
        any::<u64>().prop_map(SnapshotResult::NextOffset),
        any::<u64>().prop_map(|index| SnapshotResult::Installed(LogIndex(index))),
    ];
    let reply = (position, result).prop_map(|(snapshot, result)| {
        MessageBody::SnapshotReply(SnapshotReply { snapshot, result })
    });
    prop_oneof![chunk, reply]
}

fn message() -> impl Strategy<Value = Message> {
    (any::<[u64; 4]>(), body()).prop_map(|([from, to, term, incarnation], body)| Message {
        from: NodeId(from),
        to: NodeId(to),
        term: Term(term),
        incarnation: Incarnation(incarnation),
        body,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        pieces in proptest::collection::vec(1usize..300, 1..8),
    ) {
        decode_everything(&bytes, &pieces);
    }

    #[test]
    fn arbitrary_bodies_in_valid_frames_decode_canonically_or_fail(
        kind in peer_kind(),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut frame_bytes = Vec::new();
        encode_frame(&mut frame_bytes, kind, CLUSTER, 5, &body).unwrap();
        let frames = decode_everything(&frame_bytes, &[frame_bytes.len()]);
        prop_assert_eq!(frames.len(), 1);
        if let Ok(message) = decode_message(&frames[0].header, frames[0].body.clone()) {
            let mut again = Vec::new();
            encode_message(&message, CLUSTER, &mut again).unwrap();
            prop_assert_eq!(again, frame_bytes);
        }
    }

    #[test]
    fn messages_round_trip_through_frames(
        messages in proptest::collection::vec(message(), 1..6),
        pieces in proptest::collection::vec(1usize..100, 1..5),
    ) {
        let mut stream = Vec::new();
        for message in &messages {
            encode_message(message, CLUSTER, &mut stream).unwrap();
        }
        let frames = decode_everything(&stream, &pieces);
        let decoded: Vec<Message> = frames
            .into_iter()
            .map(|frame| decode_message(&frame.header, frame.body).unwrap())
            .collect();
        prop_assert_eq!(decoded, messages);
    }

    #[test]
    fn any_damaged_byte_is_caught(message in message(), position in any::<usize>(), xor in 1u8..) {
        let mut bytes = Vec::new();
        encode_message(&message, CLUSTER, &mut bytes).unwrap();
        let position = position % bytes.len();
        bytes[position] ^= xor;
        let mut decoder = FrameDecoder::new(CLUSTER);
        decoder.feed(&bytes);
        prop_assert!(decoder.next_frame().is_err(), "damage at byte {} not caught", position);
    }
}
