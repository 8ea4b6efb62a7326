//! The session table: for each client, the last request applied and its outcome, so a retried
//! request (same client id and sequence number) is applied once and answered like the first time
//! (docs/protocol.md, Clients).
//!
//! Invariants: the table is a pure function of the committed commands applied so far, so every
//! node holds the same table at the same applied index and makes the same duplicate decisions;
//! eviction is ordered by log index (never by hash order or time) for the same reason.
//! At most `SESSION_COUNT_MAX` sessions are kept.
//!
//! The table is part of every snapshot image (rule S1), written in eviction order (by the index
//! of each session's last request), so a retry after a restore is still answered once and the
//! restored table evicts in the same order as the original would have.
//!
//! Freezing it for a snapshot (rule S2) is copy-on-write: the sessions live in `SHARD_COUNT`
//! shards behind `Arc`s, [`Sessions::freeze`] clones the `Arc`s (O(shards), not O(sessions)),
//! and the apply thread's next change to a shard copies that shard alone (`Arc::make_mut`). The
//! eviction order (`by_index`) is not frozen: every session carries its index, so the frozen
//! table sorts itself when the snapshot thread writes it.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use bytes::Bytes;

use alpo_core::LogIndex;

use crate::client_protocol::RequestId;
use crate::image_io::{get_bytes, get_u8, get_u64, invalid, put_bytes, put_u8, put_u64};
use crate::limits::SESSION_COUNT_MAX;

/// What a request's first application produced, to answer its retries alike.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A value was appended at `index`.
    Appended { index: LogIndex },
    /// A command was applied at `index` and answered `output`.
    Applied { index: LogIndex, output: Bytes },
}

/// Whether a request is new, a retry of the last one, or older than the last one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    New,
    Duplicate(Outcome),
    Stale,
}

#[derive(Clone, Debug)]
struct Session {
    seq: u64,
    index: LogIndex,
    outcome: Outcome,
}

/// Shards of the table; a power of two, so a client id's low bits pick its shard.
const SHARD_COUNT: usize = 64;

/// One shard: client id → its session.
type Shard = HashMap<u64, Session>;

/// Every client's last applied request.
#[derive(Clone, Debug)]
pub(crate) struct Sessions {
    /// `shards[client % SHARD_COUNT]` holds the client's session; shared with frozen copies.
    shards: Vec<Arc<Shard>>,
    /// Index of each session's last request → client id, for eviction in index order.
    by_index: BTreeMap<LogIndex, u64>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            shards: (0..SHARD_COUNT).map(|_| Arc::new(Shard::new())).collect(),
            by_index: BTreeMap::new(),
        }
    }
}

/// The session table frozen at one applied index for a snapshot (rule S2), written by the
/// snapshot thread while the apply thread changes the live table.
#[derive(Debug)]
pub(crate) struct FrozenSessions {
    shards: Vec<Arc<Shard>>,
}

fn shard_of(client: u64) -> usize {
    // Client ids are random (chosen by clients), so their low bits spread evenly.
    (client % SHARD_COUNT as u64) as usize
}

impl Sessions {
    pub(crate) fn check(&self, id: RequestId) -> Check {
        match self.shards[shard_of(id.client)].get(&id.client) {
            None => Check::New,
            Some(session) if session.seq < id.seq => Check::New,
            Some(session) if session.seq == id.seq => Check::Duplicate(session.outcome.clone()),
            Some(_) => Check::Stale,
        }
    }

    /// Records that request `id` was applied at `index` with `outcome`.
    pub(crate) fn record(&mut self, id: RequestId, index: LogIndex, outcome: Outcome) {
        let session = Session {
            seq: id.seq,
            index,
            outcome,
        };
        let shard = Arc::make_mut(&mut self.shards[shard_of(id.client)]);
        if let Some(old) = shard.insert(id.client, session) {
            self.by_index.remove(&old.index);
        }
        self.by_index.insert(index, id.client);
        while SESSION_COUNT_MAX < self.by_index.len() {
            let Some((_, client)) = self.by_index.pop_first() else {
                break;
            };
            Arc::make_mut(&mut self.shards[shard_of(client)]).remove(&client);
        }
        debug_assert!(self.by_index.len() == self.len());
    }

    /// The table as it is now, for a snapshot: O(shards); later changes copy the shards they
    /// touch and leave the frozen table as it was.
    pub(crate) fn freeze(&self) -> FrozenSessions {
        FrozenSessions {
            shards: self.shards.clone(),
        }
    }

    /// How many sessions the table holds.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }

    /// Writes the table to a snapshot image, as [`FrozenSessions::write_to`] does.
    #[cfg(test)]
    pub(crate) fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
        self.freeze().write_to(out)
    }

    /// Reads a table written by [`Sessions::write_to`]; a malformed one is `InvalidData`.
    pub(crate) fn read_from(input: &mut dyn io::Read) -> io::Result<Sessions> {
        let count = get_u64(input, "the session count")?;
        if (SESSION_COUNT_MAX as u64) < count {
            let limit = SESSION_COUNT_MAX;
            return Err(invalid(format!(
                "{count} sessions, more than the limit {limit}"
            )));
        }
        let output_bytes_max =
            usize::try_from(alpo_core::limits::ENTRY_BYTES_MAX).unwrap_or(usize::MAX);
        let mut sessions = Sessions::default();
        let mut previous = LogIndex(0);
        for _ in 0..count {
            let index = LogIndex(get_u64(input, "a session's index")?);
            let client = get_u64(input, "a session's client")?;
            let seq = get_u64(input, "a session's sequence number")?;
            let tag = get_u8(input, "an outcome's tag")?;
            let at = LogIndex(get_u64(input, "an outcome's index")?);
            let outcome = match tag {
                1 => Outcome::Appended { index: at },
                2 => Outcome::Applied {
                    index: at,
                    output: get_bytes(input, "an outcome's output", output_bytes_max)?,
                },
                tag => return Err(invalid(format!("unknown session outcome tag {tag}"))),
            };
            if index <= previous || sessions.shards[shard_of(client)].contains_key(&client) {
                let message =
                    format!("session of client {client} at index {index} is out of order");
                return Err(invalid(message));
            }
            previous = index;
            sessions.by_index.insert(index, client);
            Arc::make_mut(&mut sessions.shards[shard_of(client)]).insert(
                client,
                Session {
                    seq,
                    index,
                    outcome,
                },
            );
        }
        Ok(sessions)
    }
}

impl FrozenSessions {
    /// Writes the table to a snapshot image: the count, then per session in eviction order
    /// (ascending index of its last request) `index u64, client u64, seq u64`, the outcome's
    /// tag (1 appended, 2 applied) and for an application its output. Sorting happens here, on
    /// the snapshot thread, not on the apply thread.
    pub(crate) fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
        let mut ordered: Vec<(&u64, &Session)> =
            self.shards.iter().flat_map(|shard| shard.iter()).collect();
        ordered.sort_unstable_by_key(|(_, session)| session.index);
        put_u64(out, ordered.len() as u64)?;
        for (client, session) in ordered {
            put_u64(out, session.index.0)?;
            put_u64(out, *client)?;
            put_u64(out, session.seq)?;
            match &session.outcome {
                Outcome::Appended { index: at } => {
                    put_u8(out, 1)?;
                    put_u64(out, at.0)?;
                }
                Outcome::Applied { index: at, output } => {
                    put_u8(out, 2)?;
                    put_u64(out, at.0)?;
                    put_bytes(out, output)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: u64, seq: u64) -> RequestId {
        RequestId { client, seq }
    }

    #[test]
    fn retry_is_a_duplicate_with_the_first_outcome() {
        let mut sessions = Sessions::default();
        assert_eq!(sessions.check(id(1, 1)), Check::New);
        let outcome = Outcome::Appended { index: LogIndex(5) };
        sessions.record(id(1, 1), LogIndex(5), outcome.clone());
        assert_eq!(sessions.check(id(1, 1)), Check::Duplicate(outcome));
        assert_eq!(sessions.check(id(1, 2)), Check::New);
        assert_eq!(sessions.check(id(2, 1)), Check::New);
        sessions.record(
            id(1, 2),
            LogIndex(6),
            Outcome::Appended { index: LogIndex(6) },
        );
        assert_eq!(sessions.check(id(1, 1)), Check::Stale);
        assert_eq!(sessions.len(), 1);
    }

    #[test]
    fn eviction_forgets_the_least_recent_session() {
        let mut sessions = Sessions::default();
        let count = SESSION_COUNT_MAX as u64 + 1;
        for client in 1..=count {
            let index = LogIndex(client);
            sessions.record(id(client, 1), index, Outcome::Appended { index });
        }
        assert_eq!(sessions.len(), SESSION_COUNT_MAX);
        assert_eq!(sessions.check(id(1, 1)), Check::New);
        assert!(matches!(sessions.check(id(2, 1)), Check::Duplicate(_)));
    }

    #[test]
    fn the_table_round_trips_through_an_image_with_its_eviction_order() {
        let mut sessions = Sessions::default();
        let count = SESSION_COUNT_MAX as u64;
        for client in 1..=count {
            let index = LogIndex(client);
            let outcome = if client % 2 == 0 {
                Outcome::Appended { index }
            } else {
                Outcome::Applied {
                    index,
                    output: Bytes::from(client.to_string()),
                }
            };
            sessions.record(id(client, 1), index, outcome);
        }
        let mut image = Vec::new();
        sessions.write_to(&mut image).unwrap();
        let mut restored = Sessions::read_from(&mut image.as_slice()).unwrap();
        for client in [1, 2, count] {
            assert_eq!(restored.check(id(client, 1)), sessions.check(id(client, 1)));
        }
        // One more session evicts the oldest, as in the original.
        let index = LogIndex(count + 1);
        restored.record(id(count + 1, 1), index, Outcome::Appended { index });
        assert_eq!(restored.check(id(1, 1)), Check::New);
        assert!(matches!(restored.check(id(2, 1)), Check::Duplicate(_)));
        let cut = &image[..image.len() - 1];
        assert!(Sessions::read_from(&mut &cut[..]).is_err());
    }

    #[test]
    fn a_frozen_table_keeps_its_sessions_while_the_live_one_changes() {
        let mut sessions = Sessions::default();
        for client in 1..=1_000 {
            let index = LogIndex(client);
            sessions.record(id(client, 1), index, Outcome::Appended { index });
        }
        let frozen = sessions.freeze();
        let mut before = Vec::new();
        frozen.write_to(&mut before).unwrap();
        // Changes after the freeze: a new request of every client, and new clients.
        for client in 1..=2_000 {
            let index = LogIndex(1_000 + client);
            sessions.record(id(client, 2), index, Outcome::Appended { index });
        }
        let mut after = Vec::new();
        frozen.write_to(&mut after).unwrap();
        assert_eq!(
            before, after,
            "the frozen image changed with the live table"
        );
        let restored = Sessions::read_from(&mut before.as_slice()).unwrap();
        assert_eq!(restored.len(), 1_000);
        assert!(matches!(restored.check(id(7, 1)), Check::Duplicate(_)));
        assert_eq!(sessions.check(id(7, 1)), Check::Stale);
    }
}
