//! The session table: for each client, the last request applied and its outcome, so a retried
//! request (same client id and sequence number) is applied once and answered like the first time
//! (docs/protocol.md, Clients).
//!
//! Invariants: the table is a pure function of the committed commands applied so far, so every
//! node holds the same table at the same applied index and makes the same duplicate decisions;
//! eviction is ordered by log index (never by hash order or time) for the same reason.
//! At most `SESSION_COUNT_MAX` sessions are kept.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;

use alpo_core::LogIndex;

use crate::client_protocol::RequestId;
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

#[derive(Debug)]
struct Session {
    seq: u64,
    index: LogIndex,
    outcome: Outcome,
}

/// Every client's last applied request.
#[derive(Debug, Default)]
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
}
