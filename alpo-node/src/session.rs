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

use std::collections::{BTreeMap, HashMap};
use std::io;

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

/// Every client's last applied request.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sessions {
    by_client: HashMap<u64, Session>,
    /// Index of each session's last request → client id, for eviction in index order.
    by_index: BTreeMap<LogIndex, u64>,
}

impl Sessions {
    pub(crate) fn check(&self, id: RequestId) -> Check {
        match self.by_client.get(&id.client) {
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
        if let Some(old) = self.by_client.insert(id.client, session) {
            self.by_index.remove(&old.index);
        }
        self.by_index.insert(index, id.client);
        while SESSION_COUNT_MAX < self.by_client.len() {
            let Some((_, client)) = self.by_index.pop_first() else {
                break;
            };
            self.by_client.remove(&client);
        }
        debug_assert!(self.by_index.len() == self.by_client.len());
    }

    /// Writes the table to a snapshot image: the count, then per session in eviction order
    /// `index u64, client u64, seq u64`, the outcome's tag (1 appended, 2 applied) and for an
    /// application its output.
    pub(crate) fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
        put_u64(out, self.by_index.len() as u64)?;
        for (index, client) in &self.by_index {
            let session = &self.by_client[client];
            put_u64(out, index.0)?;
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
            if index <= previous || sessions.by_client.contains_key(&client) {
                let message =
                    format!("session of client {client} at index {index} is out of order");
                return Err(invalid(message));
            }
            previous = index;
            sessions.by_index.insert(index, client);
            sessions.by_client.insert(
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

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_client.len()
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
}
