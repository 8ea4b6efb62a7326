//! Checkpoints (issue 15): the core's complete volatile state at one point of a recorded run,
//! so that a replay can start there instead of at the node's `start` (trace format 5, tag 18).
//!
//! The flight recorder cuts its trace into files; each file after a start's first begins with
//! a checkpoint of the node as it was after the last input of the file before
//! ([`Node::cut_trace`](crate::Node::cut_trace)). Replay rebuilds the node from it
//! ([`Node::from_checkpoint`](crate::Node::from_checkpoint)) and feeds the file's inputs, so a
//! ring of files that lost its oldest files still replays, and a replay that runs on across a
//! cut checks that the state it reached is the recorded checkpoint.
//!
//! # What is in it, and why by derive
//! The state is the `Node` struct serialised whole with `serde`'s derive in `postcard`'s
//! encoding, every field in declaration order, but for three: the outputs (a checkpoint is taken
//! only when none is pending), the recorder (the rebuilt node records anew) and the injected bug
//! (kept beside the state by its code, so that the state's layout does not depend on the `sim`
//! feature). Deriving makes the checkpoint complete by construction: a field added to the node
//! enters it, or the crate does not build (its type must be serialisable), where a hand-kept
//! encoder could silently forget it and a replay from a checkpoint would then diverge.
//! Opaque payloads (a `Normal` entry's command in the log's cache) are kept by their length
//! only and come back as zeros, exactly as in the trace's other records (format 4).
//!
//! Invariants: `Node::from_checkpoint(node.checkpoint())` behaves as `node` for every input
//! sequence (tested: replaying from every checkpoint of a run gives the recorded outputs); the
//! state is covered by a checksum, so a damaged checkpoint is refused before it is decoded.

use std::collections::VecDeque;

use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::types::{Entry, EntryKind, Instant, LogIndex, Term};

/// The core's complete volatile state at one point of a recorded run (see the module comment):
/// what [`Node::checkpoint`](crate::Node::checkpoint) gives and
/// [`Node::from_checkpoint`](crate::Node::from_checkpoint) rebuilds a node from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The time of the checkpoint (the core's clock, as every input's `now`).
    pub now: Instant,
    /// The injected bug's code (0: none; `InjectedBug::code`, feature `sim`).
    pub(crate) bug_code: u8,
    /// The node's state: `postcard`'s encoding of `Node` (see the module comment).
    pub(crate) state: Vec<u8>,
}

impl Checkpoint {
    /// The size of the encoded state in bytes.
    #[must_use]
    pub fn state_len(&self) -> usize {
        self.state.len()
    }

    /// The checksum the trace keeps after the state (64-bit FNV-1a of its bytes).
    pub(crate) fn checksum(state: &[u8]) -> u64 {
        state.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
            (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
}

/// The log cache's entries as a checkpoint keeps them (`serde(with)` on `Log::cache`, which
/// holds consecutive entries): the first index, then per entry its term, kind and payload
/// length, and the payload's bytes but for a `Normal` entry's (opaque: zeros come back).
pub(crate) mod opaque_entries {
    use super::*;

    /// One entry as stored: `(term, kind byte, length, bytes)`, the bytes empty for a `Normal`
    /// entry.
    type Stored = (u64, u8, u64, Vec<u8>);

    pub(crate) fn serialize<S: Serializer>(
        entries: &VecDeque<Entry>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let first = entries.front().map_or(0, |entry| entry.index.0);
        let mut tuple = serializer.serialize_tuple(2)?;
        tuple.serialize_element(&first)?;
        tuple.serialize_element(&CacheTail { entries })?;
        tuple.end()
    }

    /// The entries after the first index, serialised without copying their payloads.
    struct CacheTail<'a> {
        entries: &'a VecDeque<Entry>,
    }

    impl Serialize for CacheTail<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_seq(self.entries.iter().map(|entry| {
                let bytes: &[u8] = match entry.kind {
                    EntryKind::Normal => &[],
                    EntryKind::Noop | EntryKind::Config => &entry.payload,
                };
                (
                    entry.term.0,
                    entry.kind.to_byte(),
                    entry.payload.len() as u64,
                    serde_bytes(bytes),
                )
            }))
        }
    }

    /// A byte slice as a sequence of bytes (postcard: a length, then the bytes).
    fn serde_bytes(bytes: &[u8]) -> impl Serialize + '_ {
        struct Slice<'a>(&'a [u8]);
        impl Serialize for Slice<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(self.0)
            }
        }
        Slice(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<VecDeque<Entry>, D::Error> {
        use serde::de::Error as _;
        let (first, stored) = <(u64, Vec<Stored>)>::deserialize(deserializer)?;
        stored
            .into_iter()
            .zip(first..)
            .map(|((term, kind, length, bytes), index)| {
                let kind = EntryKind::from_byte(kind)
                    .ok_or_else(|| D::Error::custom(format!("entry kind {kind}")))?;
                let payload = match kind {
                    EntryKind::Normal => {
                        if length > crate::trace::OPAQUE_BYTES_MAX {
                            return Err(D::Error::custom(format!("entry length {length}")));
                        }
                        Bytes::from(vec![0; usize::try_from(length).unwrap_or(0)])
                    }
                    EntryKind::Noop | EntryKind::Config => Bytes::from(bytes),
                };
                Ok(Entry {
                    index: LogIndex(index),
                    term: Term(term),
                    kind,
                    payload,
                })
            })
            .collect()
    }
}

/// Encodes `value` (the node) as a checkpoint's state.
#[allow(clippy::expect_used, reason = "the message states the invariant")]
pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising into memory fails only for types serde cannot express, which the node's
    // derive rules out (every field's type is serialisable).
    postcard::to_allocvec(value).expect("invariant: the node's state serialises")
}

/// Decodes a checkpoint's state; the error says what is wrong.
pub(crate) fn decode<'a, T: Deserialize<'a>>(state: &'a [u8]) -> Result<T, String> {
    let (value, rest) = postcard::take_from_bytes(state).map_err(|error| error.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes after the state", rest.len()));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crate::config::Config;
    use crate::error::TraceError;
    use crate::node::ReadMode;
    use crate::replay::{Replay, check_continues, replay};
    use crate::testkit::Cluster;
    use crate::trace::{as_replayed, trace_head};
    use crate::types::NodeId;

    /// A recorded run of three nodes (elections, proposals, snapshots, a follower catching up
    /// by an install and by log reads, reads, a leader change), each node's trace cut into
    /// pieces after every phase as the flight recorder cuts its files.
    fn cut_run(seed: u64) -> (Cluster, BTreeMap<NodeId, Vec<Vec<u8>>>) {
        let mut cluster = Cluster::with_config_recorded(3, |id, members| {
            let mut config = Config::lan(id, members, seed);
            config.snapshot_interval_entries = Some(5);
            config.retain_entries = 2;
            config.snapshot_chunk_bytes = 16;
            config.log_cache_bytes_max = 8;
            config
        });
        let mut pieces: BTreeMap<NodeId, Vec<Vec<u8>>> = BTreeMap::new();
        let cut = |cluster: &mut Cluster, pieces: &mut BTreeMap<NodeId, Vec<Vec<u8>>>| {
            let now = cluster.now;
            for (id, node) in &mut cluster.nodes {
                let cut = node
                    .cut_trace(now)
                    .expect("no output pending between steps");
                let node_pieces = pieces.entry(*id).or_insert_with(|| vec![Vec::new()]);
                node_pieces.last_mut().unwrap().extend(cut.tail);
                node_pieces.push(cut.head);
            }
        };
        cut(&mut cluster, &mut pieces);
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        cut(&mut cluster, &mut pieces);
        let behind = if leader == NodeId(3) { 2 } else { 3 };
        cluster.drop_all();
        for payload in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            cluster.propose(leader, payload).unwrap();
            cluster.deliver_where(|message| message.to != NodeId(behind));
            cluster.drop_all();
        }
        cut(&mut cluster, &mut pieces);
        for payload in ["i", "j"] {
            cluster.propose(leader, payload).unwrap();
        }
        cut(&mut cluster, &mut pieces);
        cluster.advance(Duration::from_millis(60));
        cluster.deliver_all();
        cut(&mut cluster, &mut pieces);
        for id in 1..=3 {
            cluster.read(id, id, ReadMode::Linearizable);
        }
        cluster.deliver_all();
        cut(&mut cluster, &mut pieces);
        assert_eq!(cluster.applied[&NodeId(behind)], cluster.applied[&leader]);
        cluster.timeout(behind);
        cluster.deliver_all();
        cluster.advance(Duration::from_millis(60));
        cluster.deliver_all();
        cut(&mut cluster, &mut pieces);
        cluster.propose(cluster.leader().unwrap(), "k").unwrap();
        cluster.deliver_all();
        for (id, node) in &mut cluster.nodes {
            pieces
                .get_mut(id)
                .unwrap()
                .last_mut()
                .unwrap()
                .extend(node.take_trace());
        }
        (cluster, pieces)
    }

    /// `pieces[from..]` as one trace: the first whole, the others' records after their head.
    fn joined(pieces: &[Vec<u8>]) -> Vec<u8> {
        let mut trace = pieces[0].clone();
        for piece in &pieces[1..] {
            let end = usize::try_from(trace_head(piece).unwrap().end).unwrap();
            trace.extend_from_slice(&piece[end..]);
        }
        trace
    }

    fn same_state(a: &Replay, b: &Replay, what: &str) {
        assert_eq!(a.node.status(), b.node.status(), "{what}");
        assert_eq!(a.node.hard_state(), b.node.hard_state(), "{what}");
        assert_eq!(a.node.next_timeout(), b.node.next_timeout(), "{what}");
        assert_eq!(a.node.snapshot(), b.node.snapshot(), "{what}");
        assert_eq!(
            a.node.checkpoint(a.began.now),
            b.node.checkpoint(a.began.now),
            "{what}"
        );
    }

    /// The test that would fail if a field were missing from the checkpoint (leaving
    /// `Node::progress` out, once, made it fail with a divergence): replaying from each
    /// checkpoint to the end gives the outputs and the state of the whole replay from the start.
    #[test]
    fn replaying_from_each_checkpoint_gives_what_the_whole_replay_gives() {
        for seed in [3, 41, 77] {
            let (cluster, pieces) = cut_run(seed);
            for (id, pieces) in &pieces {
                assert!(pieces.len() >= 7, "node {id}: {} pieces", pieces.len());
                let whole = replay(&joined(pieces)).unwrap();
                assert_eq!(
                    whole.outputs,
                    as_replayed(&cluster.outputs[id]),
                    "node {id}"
                );
                assert_eq!(whole.node.status(), cluster.nodes[id].status());
                for from in 1..pieces.len() {
                    let what = format!("seed {seed} node {id} from piece {from}");
                    let tail = replay(&joined(&pieces[from..])).unwrap();
                    assert!(tail.began.checkpoint, "{what}");
                    let skipped: usize = (0..from)
                        .map(|k| replay(&pieces[k]).unwrap().outputs.len())
                        .sum();
                    assert_eq!(tail.outputs, whole.outputs[skipped..], "{what}");
                    same_state(&tail, &whole, &what);
                    // Piece by piece, each from its own checkpoint, checking each cut.
                    let before = replay(&pieces[from - 1]).unwrap();
                    check_continues(&before.node, &pieces[from]).unwrap();
                    let piece = replay(&pieces[from]).unwrap();
                    assert_eq!(
                        piece.node.trace().unwrap(),
                        pieces[from],
                        "{what}: re-recorded"
                    );
                }
            }
        }
    }

    #[test]
    fn a_checkpoint_of_another_state_is_a_divergence_at_the_cut() {
        let (_, pieces) = cut_run(3);
        let pieces = &pieces[&NodeId(1)];
        let early = replay(&pieces[1]).unwrap();
        match check_continues(&early.node, &pieces[4]) {
            Err(TraceError::CheckpointDiffers { offset: 10 }) => {}
            other => panic!("expected a divergence at the checkpoint, got {other:?}"),
        }
        assert!(matches!(
            check_continues(&early.node, &pieces[0]),
            Err(TraceError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_damaged_checkpoint_is_refused_with_its_offset() {
        let (_, pieces) = cut_run(3);
        let piece = &pieces[&NodeId(2)][3];
        // Header (10), tag, `now` (8), bug code: the state's length starts at byte 20, the
        // state at 28; its checksum is the head's last 8 bytes.
        let end = usize::try_from(trace_head(piece).unwrap().end).unwrap();
        for at in [30, (28 + end) / 2, end - 3] {
            let mut bad = piece.clone();
            bad[at] ^= 0x40;
            let error = replay(&bad).unwrap_err().to_string();
            assert_eq!(
                error, "corrupt trace at byte 20: checkpoint: the state's checksum does not match",
                "byte {at}"
            );
        }
        let mut long = piece.clone();
        long[27] = 0x7f; // the length's high byte
        let error = replay(&long).unwrap_err();
        assert!(matches!(error, TraceError::TornStart { .. }), "{error}");
        // Every prefix of the head is torn, never a panic.
        for length in (0..end).step_by(7) {
            assert!(matches!(
                replay(&piece[..length]),
                Err(TraceError::TornStart { .. })
            ));
        }
    }
}

/// Bytes the core keeps in full (`serde(with)` on `Node::config_annex`, issue 12: the driver's
/// annex travels in every `Config` entry, which replay checks byte for byte).
pub(crate) mod bytes_in_full {
    use bytes::Bytes;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(
        bytes: &Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        Ok(Bytes::from(Vec::<u8>::deserialize(deserializer)?))
    }
}
