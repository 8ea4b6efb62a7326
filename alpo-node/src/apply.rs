//! The apply thread: feeds committed entries, in index order, to the state machine; answers the
//! client requests waiting for them; serves reads of committed entries.
//!
//! Invariants: entries arrive in strictly increasing index order without gaps, each once per
//! incarnation (the core's `Apply` contract), and are applied in that order; a waiting request
//! is answered with its outcome only when the entry at its index has the term it was proposed
//! in, otherwise (the entry was lost with its leader) with a retryable error; the session table
//! turns a retried request into the first application's outcome; `applied` (shared with the
//! event loop) is the index of the last entry applied, and reads return only entries at or
//! below it — committed entries only (docs/protocol.md, Clients).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

use alpo_core::{Entry, EntryKind, LogIndex, Term};

use crate::client_protocol::{ErrorCode, ReadEntry, ReadEntryKind, Response, ResponseBody};
use crate::command::{CommandKind, LogCommand};
use crate::error::Error;
use crate::limits::{APPLY_QUEUE_COUNT_MAX, READ_BYTES_MAX, READ_ENTRY_COUNT_MAX};
use crate::service::{ConnectionId, Replier};
use crate::session::{Check, Outcome, Sessions};
use crate::state_machine::StateMachine;

/// What the event loop tells the apply thread.
#[derive(Debug)]
pub(crate) enum ApplyMsg {
    /// Committed entries, in order, from the core's `Apply` output.
    Entries(Vec<Entry>),
    /// A client waits for the proposal at `index` (proposed in `term`) to be applied.
    Pending(PendingRequest),
    /// A client reads committed entries.
    Read(ReadRequest),
    /// This node stopped being leader: its waiting clients should retry elsewhere.
    LeadershipLost,
}

/// A client waiting for its proposal.
#[derive(Debug)]
pub(crate) struct PendingRequest {
    pub(crate) index: LogIndex,
    pub(crate) term: Term,
    pub(crate) connection: ConnectionId,
    pub(crate) seq: u64,
}

/// A read of committed entries.
#[derive(Debug)]
pub(crate) struct ReadRequest {
    pub(crate) connection: ConnectionId,
    pub(crate) seq: u64,
    pub(crate) from: LogIndex,
    pub(crate) max_count: u32,
}

/// The event loop's view of the apply thread.
#[derive(Debug)]
pub(crate) struct ApplyHandle {
    pub(crate) sender: Sender<ApplyMsg>,
    pub(crate) applied: Arc<AtomicU64>,
    pub(crate) thread: JoinHandle<()>,
}

struct Applier {
    machine: Box<dyn StateMachine>,
    sessions: Sessions,
    pending: BTreeMap<LogIndex, PendingRequest>,
    /// Every applied entry, as readers see it; entry `i` sits at position `i - 1`.
    entries: Vec<ReadEntry>,
    applied: Arc<AtomicU64>,
    replier: Arc<dyn Replier>,
}

/// Starts the apply thread over `machine`.
pub(crate) fn spawn(
    machine: Box<dyn StateMachine>,
    replier: Arc<dyn Replier>,
) -> Result<ApplyHandle, Error> {
    let (sender, receiver) = crossbeam_channel::bounded(APPLY_QUEUE_COUNT_MAX);
    let applied = Arc::new(AtomicU64::new(0));
    let mut applier = Applier {
        machine,
        sessions: Sessions::default(),
        pending: BTreeMap::new(),
        entries: Vec::new(),
        applied: Arc::clone(&applied),
        replier,
    };
    let thread = std::thread::Builder::new()
        .name("alpo-apply".into())
        .spawn(move || applier.run(&receiver))
        .map_err(|source| Error::Io {
            what: "starting the apply thread".into(),
            source,
        })?;
    Ok(ApplyHandle {
        sender,
        applied,
        thread,
    })
}

impl Applier {
    fn run(&mut self, receiver: &Receiver<ApplyMsg>) {
        // Ends when the event loop drops its sender (node stopping).
        while let Ok(message) = receiver.recv() {
            match message {
                ApplyMsg::Entries(entries) => {
                    for entry in entries {
                        self.apply(entry);
                    }
                }
                ApplyMsg::Pending(pending) => self.add_pending(pending),
                ApplyMsg::Read(read) => self.read(&read),
                ApplyMsg::LeadershipLost => self.fail_all_pending("leadership lost"),
            }
        }
        self.fail_all_pending("node stopping");
    }

    fn add_pending(&mut self, pending: PendingRequest) {
        if pending.index.0 <= self.applied.load(Ordering::Acquire) {
            // Proposals are registered before their entry can commit; an index already applied
            // means the proposal was overwritten by another leader's entry.
            self.answer_error(
                pending.connection,
                pending.seq,
                ErrorCode::Retry,
                "entry lost",
            );
            return;
        }
        if let Some(old) = self.pending.insert(pending.index, pending) {
            self.answer_error(old.connection, old.seq, ErrorCode::Retry, "entry replaced");
        }
    }

    fn apply(&mut self, entry: Entry) {
        let index = entry.index;
        let term = entry.term;
        let applied = self.applied.load(Ordering::Acquire);
        assert!(
            index.0 == applied + 1,
            "invariant: entries are applied in order without gaps"
        );
        let (read, outcome) = self.execute(&entry);
        self.entries.push(read);
        self.applied.store(index.0, Ordering::Release);
        // Older waiting requests cannot exist (each index gets its entry), but if they did, their
        // entries are gone: answer them so no client waits forever.
        while let Some(entry) = self.pending.first_entry() {
            if index < *entry.key() {
                break;
            }
            let pending = entry.remove();
            if pending.index == index && pending.term == term {
                let body = match &outcome {
                    Ok(outcome) => response_body(outcome),
                    Err((code, reason)) => error_body(*code, reason),
                };
                self.replier.reply(
                    pending.connection,
                    Response {
                        seq: pending.seq,
                        body,
                    }
                    .encode(),
                );
            } else {
                let reason = "entry lost in a leader change";
                self.answer_error(pending.connection, pending.seq, ErrorCode::Retry, reason);
            }
        }
    }

    /// Applies one entry: what readers see of it, and what its proposer is answered.
    fn execute(&mut self, entry: &Entry) -> (ReadEntry, Result<Outcome, (ErrorCode, String)>) {
        let read = |kind, data| ReadEntry {
            index: entry.index,
            term: entry.term,
            kind,
            data,
        };
        if entry.kind == EntryKind::Noop {
            let reason = "no-op entry".to_string();
            return (
                read(ReadEntryKind::Noop, Bytes::new()),
                Err((ErrorCode::Retry, reason)),
            );
        }
        let command = match LogCommand::decode(entry.payload.clone()) {
            Ok(command) => command,
            Err(error) => {
                tracing::warn!(
                    index = entry.index.0,
                    error = &error as &dyn std::error::Error,
                    "entry payload is not a command"
                );
                let reason = format!("entry {} is not a command: {error}", entry.index);
                let data = entry.payload.clone();
                return (
                    read(ReadEntryKind::Command, data),
                    Err((ErrorCode::BadRequest, reason)),
                );
            }
        };
        match self.sessions.check(command.id) {
            Check::New => {}
            Check::Duplicate(outcome) => {
                return (read(ReadEntryKind::Duplicate, command.data), Ok(outcome));
            }
            Check::Stale => {
                let reason = "request is older than its session's last request".to_string();
                let result = Err((ErrorCode::SessionExpired, reason));
                return (read(ReadEntryKind::Duplicate, command.data), result);
            }
        }
        let (kind, outcome) = match command.kind {
            CommandKind::Append => (
                ReadEntryKind::Append,
                Outcome::Appended { index: entry.index },
            ),
            CommandKind::Command => {
                let output = Bytes::from(self.machine.apply(entry.index, &command.data));
                let outcome = Outcome::Applied {
                    index: entry.index,
                    output,
                };
                (ReadEntryKind::Command, outcome)
            }
            CommandKind::Query => {
                let output = Bytes::from(self.machine.query(&command.data));
                let outcome = Outcome::Applied {
                    index: entry.index,
                    output,
                };
                (ReadEntryKind::Command, outcome)
            }
        };
        self.sessions
            .record(command.id, entry.index, outcome.clone());
        (read(kind, command.data), Ok(outcome))
    }

    fn read(&self, request: &ReadRequest) {
        let first = usize::try_from(request.from.0.max(1) - 1).unwrap_or(usize::MAX);
        let count_max = request.max_count.clamp(1, READ_ENTRY_COUNT_MAX) as usize;
        let mut bytes = 0u64;
        let mut entries = Vec::new();
        for entry in self.entries.iter().skip(first).take(count_max) {
            bytes += entry.data.len() as u64;
            if !entries.is_empty() && READ_BYTES_MAX < bytes {
                break;
            }
            entries.push(entry.clone());
        }
        let body = ResponseBody::Entries {
            entries,
            commit_index: LogIndex(self.applied.load(Ordering::Acquire)),
        };
        let response = Response {
            seq: request.seq,
            body,
        };
        self.replier.reply(request.connection, response.encode());
    }

    fn fail_all_pending(&mut self, reason: &str) {
        for (_, pending) in std::mem::take(&mut self.pending) {
            self.answer_error(pending.connection, pending.seq, ErrorCode::Retry, reason);
        }
    }

    fn answer_error(&self, connection: ConnectionId, seq: u64, code: ErrorCode, reason: &str) {
        let body = error_body(code, reason);
        self.replier
            .reply(connection, Response { seq, body }.encode());
    }
}

fn response_body(outcome: &Outcome) -> ResponseBody {
    match outcome {
        Outcome::Appended { index } => ResponseBody::Appended { index: *index },
        Outcome::Applied { index, output } => ResponseBody::Applied {
            index: *index,
            output: output.clone(),
        },
    }
}

fn error_body(code: ErrorCode, reason: &str) -> ResponseBody {
    ResponseBody::Error {
        code,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use crossbeam_channel::Receiver;
    use parking_lot::Mutex;

    use super::*;
    use crate::client_protocol::RequestId;
    use crate::kv::{KvOp, KvResult, KvStateMachine};

    struct Replies(Mutex<Vec<(ConnectionId, Response)>>);

    impl Replier for Replies {
        fn reply(&self, connection: ConnectionId, body: Bytes) {
            self.0
                .lock()
                .push((connection, Response::decode(body).unwrap()));
        }
    }

    fn applier() -> (Applier, Arc<Replies>) {
        let replies = Arc::new(Replies(Mutex::new(Vec::new())));
        let applier = Applier {
            machine: Box::new(KvStateMachine::new()),
            sessions: Sessions::default(),
            pending: BTreeMap::new(),
            entries: Vec::new(),
            applied: Arc::new(AtomicU64::new(0)),
            replier: replies.clone(),
        };
        (applier, replies)
    }

    fn entry(index: u64, term: u64, seq: u64, kind: CommandKind, data: Bytes) -> Entry {
        let command = LogCommand {
            id: RequestId { client: 7, seq },
            kind,
            data,
        };
        Entry {
            index: LogIndex(index),
            term: Term(term),
            kind: EntryKind::Normal,
            payload: command.encode(),
        }
    }

    fn pending(index: u64, term: u64, seq: u64) -> ApplyMsg {
        ApplyMsg::Pending(PendingRequest {
            index: LogIndex(index),
            term: Term(term),
            connection: ConnectionId(1),
            seq,
        })
    }

    fn run(applier: &mut Applier, messages: Vec<ApplyMsg>) {
        let (sender, receiver): (_, Receiver<ApplyMsg>) = crossbeam_channel::bounded(64);
        for message in messages {
            sender.send(message).unwrap();
        }
        drop(sender);
        applier.run(&receiver);
    }

    #[test]
    fn a_retry_applies_once_and_gets_the_first_answer() {
        let (mut applier, replies) = applier();
        let put = KvOp::Put {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        };
        let first = entry(1, 1, 1, CommandKind::Command, put.encode());
        let retry = entry(2, 1, 1, CommandKind::Command, put.encode());
        let messages = vec![
            pending(1, 1, 1),
            pending(2, 1, 1),
            ApplyMsg::Entries(vec![first, retry]),
        ];
        run(&mut applier, messages);
        let replies = replies.0.lock();
        assert_eq!(replies.len(), 2);
        for (_, response) in replies.iter() {
            let ResponseBody::Applied { index, output } = &response.body else {
                panic!("{response:?}")
            };
            assert_eq!(
                *index,
                LogIndex(1),
                "the retry is answered with the first index"
            );
            assert_eq!(KvResult::decode(output.clone()).unwrap(), KvResult::Written);
        }
        assert_eq!(applier.entries[1].kind, ReadEntryKind::Duplicate);
    }

    #[test]
    fn a_proposal_overwritten_by_another_term_is_told_to_retry() {
        let (mut applier, replies) = applier();
        let value = Bytes::from_static(b"x");
        let other = entry(1, 2, 9, CommandKind::Append, value);
        run(
            &mut applier,
            vec![pending(1, 1, 5), ApplyMsg::Entries(vec![other])],
        );
        let replies = replies.0.lock();
        let (_, response) = &replies[0];
        assert_eq!(response.seq, 5);
        assert!(matches!(
            response.body,
            ResponseBody::Error {
                code: ErrorCode::Retry,
                ..
            }
        ));
    }

    #[test]
    fn leadership_loss_answers_every_waiting_client() {
        let (mut applier, replies) = applier();
        run(
            &mut applier,
            vec![pending(1, 1, 1), pending(2, 1, 2), ApplyMsg::LeadershipLost],
        );
        assert_eq!(replies.0.lock().len(), 2);
        assert!(applier.pending.is_empty());
    }

    #[test]
    fn reads_return_applied_entries_only_within_the_limit() {
        let (mut applier, replies) = applier();
        let noop = Entry {
            index: LogIndex(1),
            term: Term(1),
            kind: EntryKind::Noop,
            payload: Bytes::new(),
        };
        let appends =
            (2..=4).map(|i| entry(i, 1, i, CommandKind::Append, Bytes::from(format!("v{i}"))));
        let mut entries = vec![noop];
        entries.extend(appends);
        let read = |from, max_count| {
            ApplyMsg::Read(ReadRequest {
                connection: ConnectionId(3),
                seq: 1,
                from: LogIndex(from),
                max_count,
            })
        };
        run(
            &mut applier,
            vec![ApplyMsg::Entries(entries), read(2, 2), read(9, 10)],
        );
        let replies = replies.0.lock();
        let ResponseBody::Entries {
            entries,
            commit_index,
        } = &replies[0].1.body
        else {
            panic!("{:?}", replies[0])
        };
        assert_eq!(*commit_index, LogIndex(4));
        let data: Vec<&[u8]> = entries.iter().map(|e| &e.data[..]).collect();
        assert_eq!(data, vec![&b"v2"[..], &b"v3"[..]]);
        assert!(
            matches!(&replies[1].1.body, ResponseBody::Entries { entries, .. }
                if entries.is_empty())
        );
    }
}
