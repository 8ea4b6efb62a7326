//! The history of a cluster test: every client operation with its invoke time, completion time
//! and outcome, as the linearizability and append-log checkers read it.
//!
//! Times are monotonic microseconds since the [`Recorder`] was created. An operation's outcome is
//! one of: `ok` (the cluster answered; the reply is what it answered), `failed` (the cluster said
//! it was definitely not applied, e.g. "not leader" before anything was proposed) or
//! `indeterminate` (no answer: a timeout or a lost connection; it may or may not have been
//! applied, at any time after its invocation, so its completion time is +∞).
//!
//! Invariants a valid history keeps (checked by [`History::validate`]): operation ids are
//! unique; `invoke_us <= complete_us`; the reply kind matches the command kind (a `get` gets a
//! read reply, a `cas` a swapped flag, an `append` an index, `put` and `delete` a plain ack).
//!
//! A history is stored as JSON lines, one operation per line, so a kept run directory
//! (`--keep DIR`) can be re-checked or inspected with ordinary tools.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Identifies one client (one logical thread of operations).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ClientId(pub u64);

/// Identifies one operation within a history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OpId(pub u64);

/// What a client asked the cluster to do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: String,
    },
    /// Read `key`.
    Get {
        /// The key.
        key: String,
    },
    /// Set `key` to `new` if its current value is `expected` (`None`: the key is absent).
    Cas {
        /// The key.
        key: String,
        /// The value the key must have for the swap to happen.
        expected: Option<String>,
        /// The value it gets if it does.
        new: String,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Append `value` to the replicated log; the reply is its log index.
    Append {
        /// The payload; unique within a history, so the log can be matched to the appends.
        value: String,
    },
}

/// What the cluster answered to a command that completed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// `put` or `delete` was applied.
    Written,
    /// `get` read this value (`None`: the key is absent).
    Read {
        /// The value read.
        value: Option<String>,
    },
    /// `cas` swapped (`true`) or found another value and did nothing (`false`).
    Cas {
        /// Whether the swap happened.
        swapped: bool,
    },
    /// `append` was committed at this log index.
    Appended {
        /// The entry's log index.
        index: u64,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The cluster answered with `reply` at `complete_us`.
    Ok {
        /// The answer.
        reply: Reply,
        /// When the answer arrived.
        complete_us: u64,
    },
    /// The operation was definitely not applied.
    Failed {
        /// When the client learned it.
        complete_us: u64,
    },
    /// No answer: the operation may have been applied at any time after its invocation, or
    /// never. Its completion time is +∞.
    Indeterminate,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Operation {
    /// Unique within the history.
    pub id: OpId,
    /// Which client issued it.
    pub client: ClientId,
    /// When the client sent it, in monotonic microseconds.
    pub invoke_us: u64,
    /// What was asked.
    pub command: Command,
    /// How it ended.
    pub outcome: Outcome,
}

impl Operation {
    /// The completion time, or `None` for an indeterminate operation (+∞).
    pub fn complete_us(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Ok { complete_us, .. } | Outcome::Failed { complete_us } => Some(complete_us),
            Outcome::Indeterminate => None,
        }
    }
}

/// A recorded run: operations in the order they were invoked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The operations.
    pub ops: Vec<Operation>,
}

/// How a client reports the end of an operation to the [`Recorder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// The cluster answered.
    Ok(Reply),
    /// Definitely not applied.
    Failed,
    /// No answer (timeout, lost connection).
    Indeterminate,
}

/// What is wrong with a history or its file.
#[derive(Debug)]
pub enum HistoryError {
    /// Reading or writing the file failed.
    Io {
        /// The file (empty when not reading a file).
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A line is not a valid JSON operation.
    Json {
        /// The file (empty when not reading a file).
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What serde said.
        message: String,
    },
    /// Two operations share an id.
    DuplicateId(OpId),
    /// An operation completes before it is invoked.
    CompletesBeforeInvoke(OpId),
    /// The reply kind does not match the command kind.
    ReplyMismatch {
        /// The operation.
        id: OpId,
        /// The reply kind expected for its command.
        expected: &'static str,
    },
    /// The recorder was told to complete an operation it is not waiting for.
    NotPending(OpId),
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HistoryError::Io { path, .. } => write!(f, "history file {}", path.display()),
            HistoryError::Json {
                path,
                line,
                message,
            } => {
                write!(f, "history file {} line {line}: {message}", path.display())
            }
            HistoryError::DuplicateId(id) => write!(f, "history: operation id {} repeats", id.0),
            HistoryError::CompletesBeforeInvoke(id) => {
                write!(
                    f,
                    "history: operation {} completes before it is invoked",
                    id.0
                )
            }
            HistoryError::ReplyMismatch { id, expected } => {
                write!(f, "history: operation {} expected a {expected} reply", id.0)
            }
            HistoryError::NotPending(id) => {
                write!(
                    f,
                    "history: operation {} is not pending, cannot complete it",
                    id.0
                )
            }
        }
    }
}

/// The workspace's convention (docs/ARCHITECTURE.md, Errors): `Display` describes this level
/// only and the I/O error is the `source()`, so `{:#}` prints each cause once.
impl std::error::Error for HistoryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HistoryError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl History {
    /// Checks the invariants in the module doc.
    pub fn validate(&self) -> Result<(), HistoryError> {
        let mut ids = std::collections::BTreeSet::new();
        for op in &self.ops {
            if !ids.insert(op.id) {
                return Err(HistoryError::DuplicateId(op.id));
            }
            if op
                .complete_us()
                .is_some_and(|complete_us| complete_us < op.invoke_us)
            {
                return Err(HistoryError::CompletesBeforeInvoke(op.id));
            }
            if let Outcome::Ok { reply, .. } = &op.outcome {
                let expected = expected_reply(&op.command);
                if reply_kind(reply) != expected {
                    return Err(HistoryError::ReplyMismatch {
                        id: op.id,
                        expected,
                    });
                }
            }
        }
        Ok(())
    }

    /// Writes one JSON object per line.
    pub fn write_jsonl(&self, out: &mut impl Write) -> Result<(), HistoryError> {
        let io_error = |source| HistoryError::Io {
            path: PathBuf::new(),
            source,
        };
        for op in &self.ops {
            serde_json::to_writer(&mut *out, op).map_err(|e| io_error(io::Error::other(e)))?;
            out.write_all(b"\n").map_err(io_error)?;
        }
        out.flush().map_err(io_error)
    }

    /// Reads what [`History::write_jsonl`] wrote; blank lines are skipped. Errors name the line.
    pub fn read_jsonl(input: impl BufRead) -> Result<History, HistoryError> {
        let mut ops = Vec::new();
        for (line_index, line) in input.lines().enumerate() {
            let line = line.map_err(|source| HistoryError::Io {
                path: PathBuf::new(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let op = serde_json::from_str(&line).map_err(|e| HistoryError::Json {
                path: PathBuf::new(),
                line: line_index + 1,
                message: e.to_string(),
            })?;
            ops.push(op);
        }
        Ok(History { ops })
    }

    /// Writes the history to `path` as JSON lines.
    pub fn save(&self, path: &Path) -> Result<(), HistoryError> {
        let file = File::create(path).map_err(|source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        self.write_jsonl(&mut BufWriter::new(file))
            .map_err(|e| with_path(e, path))
    }

    /// Reads a history from a JSON-lines file.
    pub fn load(path: &Path) -> Result<History, HistoryError> {
        let file = File::open(path).map_err(|source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        History::read_jsonl(BufReader::new(file)).map_err(|e| with_path(e, path))
    }
}

/// Records operations from many client threads. Times come from one monotonic clock started in
/// [`Recorder::new`].
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    state: Mutex<RecorderState>,
}

#[derive(Debug, Default)]
struct RecorderState {
    next_id: u64,
    ops: Vec<Operation>,
    /// Position in `ops` of each operation still waiting for its completion.
    pending: BTreeMap<OpId, usize>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            state: Mutex::new(RecorderState::default()),
        }
    }

    /// Microseconds since the recorder was created.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Records that `client` is about to send `command`; call right before sending.
    pub fn invoke(&self, client: ClientId, command: Command) -> OpId {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let id = OpId(state.next_id);
        state.next_id += 1;
        let invoke_us = self.now_us();
        let position = state.ops.len();
        state.ops.push(Operation {
            id,
            client,
            invoke_us,
            command,
            outcome: Outcome::Indeterminate,
        });
        state.pending.insert(id, position);
        id
    }

    /// Records how operation `id` ended; call right after the reply (or the timeout).
    pub fn complete(&self, id: OpId, completion: Completion) -> Result<(), HistoryError> {
        let complete_us = self.now_us();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let position = state
            .pending
            .remove(&id)
            .ok_or(HistoryError::NotPending(id))?;
        state.ops[position].outcome = match completion {
            Completion::Ok(reply) => Outcome::Ok { reply, complete_us },
            Completion::Failed => Outcome::Failed { complete_us },
            Completion::Indeterminate => Outcome::Indeterminate,
        };
        Ok(())
    }

    /// The history so far; operations still pending are indeterminate.
    pub fn snapshot(&self) -> History {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        History {
            ops: state.ops.clone(),
        }
    }
}

fn expected_reply(command: &Command) -> &'static str {
    match command {
        Command::Put { .. } | Command::Delete { .. } => "written",
        Command::Get { .. } => "read",
        Command::Cas { .. } => "cas",
        Command::Append { .. } => "appended",
    }
}

fn reply_kind(reply: &Reply) -> &'static str {
    match reply {
        Reply::Written => "written",
        Reply::Read { .. } => "read",
        Reply::Cas { .. } => "cas",
        Reply::Appended { .. } => "appended",
    }
}

fn with_path(error: HistoryError, path: &Path) -> HistoryError {
    match error {
        HistoryError::Io { source, .. } => HistoryError::Io {
            path: path.to_path_buf(),
            source,
        },
        HistoryError::Json { line, message, .. } => HistoryError::Json {
            path: path.to_path_buf(),
            line,
            message,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> History {
        let recorder = Recorder::new();
        let a = recorder.invoke(
            ClientId(1),
            Command::Put {
                key: "k".into(),
                value: "1".into(),
            },
        );
        let b = recorder.invoke(ClientId(2), Command::Get { key: "k".into() });
        let c = recorder.invoke(
            ClientId(3),
            Command::Cas {
                key: "k".into(),
                expected: None,
                new: "2".into(),
            },
        );
        let d = recorder.invoke(ClientId(4), Command::Append { value: "x".into() });
        let _e = recorder.invoke(ClientId(5), Command::Delete { key: "k".into() });
        recorder
            .complete(a, Completion::Ok(Reply::Written))
            .unwrap();
        recorder
            .complete(
                b,
                Completion::Ok(Reply::Read {
                    value: Some("1".into()),
                }),
            )
            .unwrap();
        recorder.complete(c, Completion::Failed).unwrap();
        recorder
            .complete(d, Completion::Ok(Reply::Appended { index: 7 }))
            .unwrap();
        recorder.snapshot()
    }

    #[test]
    fn recorder_keeps_order_times_and_pending_ops_are_indeterminate() {
        let history = sample();
        history.validate().unwrap();
        assert_eq!(history.ops.len(), 5);
        assert!(
            history
                .ops
                .windows(2)
                .all(|w| w[0].invoke_us <= w[1].invoke_us)
        );
        assert_eq!(history.ops[4].outcome, Outcome::Indeterminate);
        assert!(matches!(history.ops[2].outcome, Outcome::Failed { .. }));
        for op in &history.ops {
            assert!(op.complete_us().is_none_or(|c| op.invoke_us <= c));
        }
    }

    #[test]
    fn recorder_refuses_to_complete_twice() {
        let recorder = Recorder::new();
        let a = recorder.invoke(ClientId(1), Command::Get { key: "k".into() });
        recorder.complete(a, Completion::Indeterminate).unwrap();
        let error = recorder.complete(a, Completion::Failed).unwrap_err();
        assert_eq!(
            error.to_string(),
            "history: operation 0 is not pending, cannot complete it"
        );
    }

    #[test]
    fn json_lines_round_trip() {
        let history = sample();
        let mut bytes = Vec::new();
        history.write_jsonl(&mut bytes).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(text.lines().count(), 5);
        assert!(text.contains(r#""op":"cas""#), "{text}");
        assert!(text.contains(r#""status":"indeterminate""#), "{text}");
        assert_eq!(History::read_jsonl(bytes.as_slice()).unwrap(), history);
    }

    #[test]
    fn json_errors_name_the_file_and_line() {
        let dir = std::env::temp_dir().join(format!("xtask-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("history.jsonl");
        let history = sample();
        history.save(&path).unwrap();
        assert_eq!(History::load(&path).unwrap(), history);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n{\"id\": 9, \"garbage\n");
        std::fs::write(&path, text).unwrap();
        let error = History::load(&path).unwrap_err().to_string();
        assert!(error.contains("history.jsonl line 7"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_io_error_prints_its_cause_once_in_a_chain() {
        let error = HistoryError::Io {
            path: PathBuf::from("run/history.jsonl"),
            source: io::Error::other("disk on fire"),
        };
        assert_eq!(error.to_string(), "history file run/history.jsonl");
        let text = format!("{:#}", anyhow::Error::new(error));
        assert_eq!(text, "history file run/history.jsonl: disk on fire");
    }

    #[test]
    fn validate_names_the_bad_operation() {
        let mut history = sample();
        history.ops[1].outcome = Outcome::Ok {
            reply: Reply::Written,
            complete_us: u64::MAX,
        };
        let error = history.validate().unwrap_err().to_string();
        assert_eq!(error, "history: operation 1 expected a read reply");
        let mut history = sample();
        history.ops[0].outcome = Outcome::Failed { complete_us: 0 };
        history.ops[0].invoke_us = 5;
        assert!(matches!(
            history.validate(),
            Err(HistoryError::CompletesBeforeInvoke(OpId(0)))
        ));
        let mut history = sample();
        history.ops[1].id = OpId(0);
        assert!(matches!(
            history.validate(),
            Err(HistoryError::DuplicateId(OpId(0)))
        ));
    }
}
