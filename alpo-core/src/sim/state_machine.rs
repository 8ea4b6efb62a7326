//! The simulated state machine and its snapshot image: a deterministic digest of the applied
//! entries (a running 64-bit hash, the applied index, and the last few payloads, so that an
//! image spans several chunks), and the image's byte framing.
//!
//! Invariants: the digest after applying entries `1..=i` depends only on those entries, so two
//! servers at the same applied index that applied the same entries have equal digests (property
//! 9); an image decodes only if its checksum (the last 8 bytes, a hash of the bytes before them)
//! matches, so a damaged transfer is caught before it is installed. The core never parses these
//! bytes: to it, a snapshot file is opaque.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::types::{Entry, LogIndex, LogPosition, Term};

/// Payloads kept in the digest, so images are larger than one small chunk.
const RECENT_PAYLOAD_COUNT_MAX: usize = 4;

/// First bytes of every simulated snapshot image.
const IMAGE_MAGIC: &[u8; 8] = b"SIMSNAP1";

/// A digest of the state after applying entries `1..=applied.index`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateMachine {
    /// The last applied position.
    pub applied: LogPosition,
    /// The running hash over every applied entry.
    pub hash: u64,
    recent: VecDeque<Bytes>,
}

impl StateMachine {
    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) {
        self.hash = hash_after(self.hash, entry);
        self.applied = entry.position();
        if !entry.payload.is_empty() {
            if self.recent.len() == RECENT_PAYLOAD_COUNT_MAX {
                self.recent.pop_front();
            }
            self.recent.push_back(entry.payload.clone());
        }
    }

    /// The image of this state, as the snapshot file holds it.
    #[must_use]
    pub fn image(&self) -> Bytes {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(IMAGE_MAGIC);
        bytes.extend_from_slice(&self.applied.index.0.to_le_bytes());
        bytes.extend_from_slice(&self.applied.term.0.to_le_bytes());
        bytes.extend_from_slice(&self.hash.to_le_bytes());
        bytes.extend_from_slice(&(self.recent.len() as u64).to_le_bytes());
        for payload in &self.recent {
            bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            bytes.extend_from_slice(payload);
        }
        let checksum = hash_bytes(&bytes);
        bytes.extend_from_slice(&checksum.to_le_bytes());
        Bytes::from(bytes)
    }

    /// The state an image holds; `None` if the bytes are damaged or not an image.
    #[must_use]
    pub fn from_image(image: &[u8]) -> Option<StateMachine> {
        let (body, checksum) = image.split_at_checked(image.len().checked_sub(8)?)?;
        if hash_bytes(body) != u64::from_le_bytes(checksum.try_into().ok()?) {
            return None;
        }
        let mut reader = body.strip_prefix(IMAGE_MAGIC)?;
        let index = LogIndex(take_u64(&mut reader)?);
        let term = Term(take_u64(&mut reader)?);
        let hash = take_u64(&mut reader)?;
        let count = take_u64(&mut reader)?;
        let mut recent = VecDeque::new();
        for _ in 0..count.min(RECENT_PAYLOAD_COUNT_MAX as u64) {
            let length = usize::try_from(take_u64(&mut reader)?).ok()?;
            let (payload, rest) = reader.split_at_checked(length)?;
            recent.push_back(Bytes::copy_from_slice(payload));
            reader = rest;
        }
        reader.is_empty().then_some(StateMachine {
            applied: LogPosition { index, term },
            hash,
            recent,
        })
    }
}

/// Takes a little-endian `u64` off the front of `reader`.
fn take_u64(reader: &mut &[u8]) -> Option<u64> {
    let (value, rest) = reader.split_at_checked(8)?;
    *reader = rest;
    Some(u64::from_le_bytes(value.try_into().ok()?))
}

/// The running hash after applying `entry` to a state whose hash is `hash`.
#[must_use]
pub fn hash_after(hash: u64, entry: &Entry) -> u64 {
    let mut h = mix(hash ^ entry.index.0);
    h = mix(h ^ entry.term.0);
    h = mix(h ^ entry.kind as u64);
    h ^ hash_bytes(&entry.payload)
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = mix(bytes.len() as u64);
    for chunk in bytes.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(word));
    }
    h
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::EntryKind;

    fn entry(index: u64, payload: &'static str) -> Entry {
        Entry {
            index: LogIndex(index),
            term: Term(1),
            kind: EntryKind::Normal,
            payload: Bytes::from_static(payload.as_bytes()),
        }
    }

    #[test]
    fn an_image_round_trips_and_damage_is_caught() {
        let mut state = StateMachine::default();
        for (i, payload) in ["a", "bb", "ccc", "dddd", "eeeee"].iter().enumerate() {
            state.apply(&entry(i as u64 + 1, payload));
        }
        let image = state.image();
        assert_eq!(StateMachine::from_image(&image), Some(state.clone()));
        for at in 0..image.len() {
            let mut damaged = image.to_vec();
            damaged[at] ^= 0x10;
            assert_eq!(StateMachine::from_image(&damaged), None, "byte {at}");
        }
        assert_eq!(StateMachine::from_image(&image[..image.len() - 1]), None);
        let mut other = StateMachine::default();
        other.apply(&entry(1, "x"));
        assert_ne!(other.hash, state.hash);
    }
}
