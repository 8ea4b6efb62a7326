//! Input traces: record every input a node receives, in a compact versioned binary form, so that
//! `replay.rs` can feed them into a fresh node and reproduce its exact state and outputs.
//!
//! The core is a pure function of its inputs (configuration, persisted state, time, messages,
//! proposals, durability reports, and the points where the driver took outputs, since a flush
//! may batch work there). So a trace of those inputs is a complete description of a run.
//!
//! # Format (version 5)
//! All integers are little-endian. A trace is the 8-byte magic `ALPOTRC\x01`, a `u16` version,
//! then records, each a one-byte tag followed by its fields:
//! - tag 0 `start`: config, persisted state, `now` (the `Node::new_recorded` call);
//! - tag 1 `tick`: `now`;
//! - tag 2 `message`: `now`, message;
//! - tag 3 `propose`: `now`, an opaque payload (below);
//! - tag 4 `persisted`: `now`, index, term;
//! - tag 5 `take_outputs`: a `u64` digest of the outputs taken (`outputs_digest`, a word-wise
//!   hash of their derived `Hash`, a byte slice by its length only), so that a replay checks
//!   every output is the recorded one (version 3, issue 15's flight recorder);
//! - tag 6 `snapshot_durable`: `now`, snapshot meta;
//! - tag 7 `snapshot_read`: `now`, to, snapshot index, term, offset, then `u8` 0 and an
//!   opaque payload (the chunk), or 1 `Replaced`, 2 `Failed`;
//! - tag 8 `snapshot_installed`: `now`, snapshot meta, `u8` 1 installed or 0 failed;
//! - tag 9 `snapshot_requested`: `now`;
//! - tag 10 `log_read` (rule S9): `now`, read id, then `u8` 0 and entries (`u64` count, then
//!   each entry), or 1 `Compacted`, or 2 `Fault` and the index.
//! - tag 11 `read_index`: `now`, read id, `u8` mode (0 linearizable, 1 lease);
//! - tag 12 `config_change` (rules M1–M11): `now`, change (`u8` 1 add learner, 2 promote,
//!   3 remove; node id);
//! - tag 13 `transfer` (rules T1–T5): `now`, target as an option;
//! - tag 17 `config_annex` (issue 12, `Node::set_config_annex`): the annex as a payload.
//!
//! A message is from, to, term, incarnation (`u64` each), a body tag (1 VoteRequest, 2 VoteReply,
//! 3 Append, 4 AppendReply, 5 InstallSnapshot, 6 SnapshotReply, 7 ReadIndexRequest,
//! 8 ReadIndexReply: read id, then 1 and the index or 2 for `NotLeader`, 9 TimeoutNow: no field)
//! and the body's fields in declaration order (InstallSnapshot's chunk an opaque payload); an
//! `Option` is a `u8` presence flag then the value; an entry is index, term, kind (`u8`), and
//! its payload: opaque for a `Normal` entry, a payload for the others (a `Config` entry's is
//! parsed by the core, rule M1; a `Noop`'s is empty); a snapshot meta is last index, last
//! term, size, and its configuration as a payload (`Configuration::encode`). The persisted
//! state has an optional snapshot meta after the incarnation, then the persisted log (rule S9):
//! the run count, each run's first index and term, the last index, the tail's entry count and
//! entries, then the `Config` entries' count and entries (rule M1). The configuration ends with
//! the snapshot policy (interval as an option, retained entries, chunk bytes, chunks in
//! flight), the cache limits (cache bytes, read bytes in flight) and the read lease (an option
//! of its drift in ppm) before the injected-bug byte.
//! Version 3 added the persisted log, the cache limits and the `log_read` record (rule S9); the
//! read lease, the `round` of Append and AppendReply (last field of each), the read messages
//! and the `read_index` record (rules Q1–Q3); and the membership and transfer records,
//! TimeoutNow, VoteRequest's `transfer` flag and the snapshot meta's configuration (rules
//! M1–M11, T1–T5), all in this one version.
//! Version 4 (issue 13) ends the persisted state with the term ceiling (`u64`) and the
//! hard-state-lost flag (`u8`), and adds vote reason 7 `Abstaining` (rules F8, F9).
//!
//! A payload is a `u32` length then the bytes. An *opaque* payload is the `u32` length alone
//! (version 4, issue 15's recorder cost): the bytes the core never reads, a `Normal` entry's
//! command and a snapshot chunk, are not recorded, and replay feeds zeros of the recorded
//! length (slices of one shared zero buffer). Version 3 recorded them: every proposal, Append,
//! log read and snapshot chunk was copied a second time, and the digest hashed every byte
//! (byte-wise FNV-1a; version 4 hashes a word per integer).
//!
//! # What a replay proves, and what it cannot (version 4)
//! The core's decisions depend on an opaque payload's length (limits, batching, chunk
//! offsets), never on its bytes, so a replay still checks every decision, every output's kind,
//! order and fields, and every payload's length and position. It cannot show that the bytes
//! the recorded node sent, wrote, applied or installed were the bytes it received: that is the
//! checksums' job (the log's records, the wire's frames, the snapshot file's verification),
//! and the replayed node's entries and outputs carry zeros where a command was (`as_replayed`
//! gives the recorded outputs in that form, for comparisons).
//!
//! Invariant: replaying a trace (`replay.rs`) gives the same outputs and the same state as the
//! recorded run. Recording is opt-in and keeps the whole trace in memory. This module knows the
//! bytes only: it names no `Node`, so the node can record without a circle between the two.
//!
//! The `start` record's config ends with one byte for the injected bug (0: none; see
//! `InjectedBug::code`, feature `sim`); a trace with a bug replays only with that feature.

use bytes::Bytes;

use crate::config::{Config, ReadLease};
use crate::error::{SnapshotReadError, TraceError};
use crate::log_read::{LogReadId, LogReadResult};
use crate::membership::{ConfigChange, Configuration};
use crate::message::{
    Append, AppendReply, AppendResult, InstallSnapshot, Message, MessageBody, ReadIndexReply,
    ReadIndexRequest, ReadIndexResult, RejectHint, SnapshotReply, SnapshotResult, VoteReason,
    VoteReply, VoteRequest,
};
use crate::node::{ReadId, ReadMode};
use crate::output::Output;
use crate::types::{
    Entry, EntryKind, HardState, Incarnation, Instant, LogIndex, LogPosition, NodeId, Persisted,
    PersistedLog, Rank, SnapshotMeta, Term, TermRun,
};

/// The trace format's version; bump it with every change to the layout above.
pub const TRACE_VERSION: u16 = 5;

const MAGIC: &[u8; 8] = b"ALPOTRC\x01";

/// The longest opaque payload a trace may name (a damaged length beyond it is refused before
/// any zeros are allocated); entries and chunks are bounded by far less in practice.
const OPAQUE_BYTES_MAX: u64 = 1 << 30;

const TAG_START: u8 = 0;
const TAG_TICK: u8 = 1;
const TAG_MESSAGE: u8 = 2;
const TAG_PROPOSE: u8 = 3;
const TAG_PERSISTED: u8 = 4;
const TAG_TAKE_OUTPUTS: u8 = 5;
const TAG_SNAPSHOT_DURABLE: u8 = 6;
const TAG_SNAPSHOT_READ: u8 = 7;
const TAG_SNAPSHOT_INSTALLED: u8 = 8;
const TAG_SNAPSHOT_REQUESTED: u8 = 9;
const TAG_LOG_READ: u8 = 10;
const TAG_READ_INDEX: u8 = 11;
const TAG_CONFIG_CHANGE: u8 = 12;
const TAG_TRANSFER: u8 = 13;
const TAG_CONFIG_ANNEX: u8 = 17;

/// A digest of `outputs`: a word-at-a-time hash (below) of what their derived `Hash` feeds a
/// hasher (every field, in order), so equal outputs give equal digests and any difference a
/// replay could show (a field, an order) changes it but by accident. A byte slice (a payload, a
/// chunk) enters by its length only: replay feeds zeros for the bytes a trace leaves out (format
/// version 4), and hashing every payload byte on the event loop was most of the recorder's
/// cost. Deriving `Hash` covers every output kind, present and future, without a second
/// encoder to keep.
#[must_use]
pub fn outputs_digest(outputs: &[Output]) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = Digest(0xcbf2_9ce4_8422_2325);
    outputs.hash(&mut hasher);
    hasher.finish()
}

/// The output digest's hasher: per integer (as a `u64` word; a `u128` as two), `h = (h rotated
/// left by 5 ^ word) * K` (FxHash's step, `K` odd), and a byte slice by its length (see
/// `outputs_digest`). Each step is a bijection of `h` for a given word, so two output lists
/// that differ in exactly one word always get different digests; one step per word, not per
/// byte, keeps it cheap on the event loop (version 3 used byte-wise FNV-1a). Not
/// `DefaultHasher`: its algorithm may change between Rust releases, and a trace must replay
/// with the digest it was recorded with. Every integer method is overridden so that `write`
/// sees byte slices only (a `[u8]`'s length prefix comes through `write_usize` first, so the
/// length is hashed once more here: harmless).
struct Digest(u64);

impl Digest {
    fn word(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

macro_rules! digest_integers {
    ($($method:ident: $type:ty as $word:ty),*) => {
        $(
            fn $method(&mut self, value: $type) {
                #[allow(clippy::cast_sign_loss, clippy::cast_lossless)]
                self.word(value as $word as u64);
            }
        )*
    };
}

impl std::hash::Hasher for Digest {
    /// A byte slice: its length only (the payloads a trace records by length).
    fn write(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
    }

    digest_integers!(
        write_u8: u8 as u8, write_u16: u16 as u16, write_u32: u32 as u32, write_u64: u64 as u64,
        write_usize: usize as usize, write_i8: i8 as u8, write_i16: i16 as u16,
        write_i32: i32 as u32, write_i64: i64 as u64, write_isize: isize as usize
    );

    fn write_u128(&mut self, value: u128) {
        self.word(value as u64);
        self.word((value >> 64) as u64);
    }

    fn write_i128(&mut self, value: i128) {
        self.write_u128(value as u128);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// `outputs` as a replay of their trace gives them: every opaque payload (a `Normal` entry's, a
/// snapshot chunk's) replaced by zeros of its length (format version 4). For comparing a
/// recorded run's outputs with a replay's.
#[must_use]
pub fn as_replayed(outputs: &[Output]) -> Vec<Output> {
    outputs.iter().cloned().map(output_as_replayed).collect()
}

/// `entry` as a replay gives it: a `Normal` entry's payload replaced by zeros of its length.
#[must_use]
pub fn entry_as_replayed(entry: &Entry) -> Entry {
    let mut entry = entry.clone();
    if entry.kind == EntryKind::Normal {
        entry.payload = Bytes::from(vec![0; entry.payload.len()]);
    }
    entry
}

fn output_as_replayed(output: Output) -> Output {
    let entries = |entries: Vec<Entry>| entries.iter().map(entry_as_replayed).collect();
    match output {
        Output::AppendLog { entries: list } => Output::AppendLog {
            entries: entries(list),
        },
        Output::Apply { entries: list } => Output::Apply {
            entries: entries(list),
        },
        Output::WriteSnapshotChunk {
            snapshot,
            offset,
            data,
            last,
        } => Output::WriteSnapshotChunk {
            snapshot,
            offset,
            data: Bytes::from(vec![0; data.len()]),
            last,
        },
        Output::Send(mut message) => {
            match &mut message.body {
                MessageBody::Append(append) => {
                    append.entries = entries(std::mem::take(&mut append.entries));
                }
                MessageBody::InstallSnapshot(chunk) => {
                    chunk.data = Bytes::from(vec![0; chunk.data.len()]);
                }
                _ => {}
            }
            Output::Send(message)
        }
        other => other,
    }
}

/// A trace being recorded (inside a node made with `Node::new_recorded`).
#[derive(Clone, Debug, Default)]
pub(crate) struct Recorder {
    bytes: Vec<u8>,
    /// Where the `start` record's injected-bug byte sits.
    #[cfg(feature = "sim")]
    bug_offset: usize,
}

impl Recorder {
    pub(crate) fn start(config: &Config, persisted: &Persisted, now: Instant) -> Recorder {
        let mut writer = Writer::default();
        writer.bytes.extend_from_slice(MAGIC);
        writer.bytes.extend_from_slice(&TRACE_VERSION.to_le_bytes());
        writer.u8(TAG_START);
        writer.config(config);
        #[cfg(feature = "sim")]
        let bug_offset = writer.bytes.len() - 1;
        writer.persisted(persisted);
        writer.u64(now.0);
        Recorder {
            bytes: writer.bytes,
            #[cfg(feature = "sim")]
            bug_offset,
        }
    }

    /// Records the injected bug's code in the `start` record (the simulator injects a bug
    /// right after start, before any input).
    #[cfg(feature = "sim")]
    pub(crate) fn injected_bug(&mut self, code: u8) {
        assert!(
            self.bug_offset < self.bytes.len(),
            "invariant: a bug is injected before any trace bytes are taken"
        );
        self.bytes[self.bug_offset] = code;
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes the bytes recorded so far; recording goes on after them (the taker concatenates).
    pub(crate) fn take(&mut self) -> Vec<u8> {
        // The simulator's injected bug is set right after start, before anything is taken.
        #[cfg(feature = "sim")]
        {
            self.bug_offset = usize::MAX;
        }
        std::mem::take(&mut self.bytes)
    }

    fn writer(&mut self, tag: u8) -> Writer {
        let mut writer = Writer {
            bytes: std::mem::take(&mut self.bytes),
        };
        writer.u8(tag);
        writer
    }

    pub(crate) fn tick(&mut self, now: Instant) {
        let mut writer = self.writer(TAG_TICK);
        writer.u64(now.0);
        self.bytes = writer.bytes;
    }

    pub(crate) fn message(&mut self, now: Instant, message: &Message) {
        let mut writer = self.writer(TAG_MESSAGE);
        writer.u64(now.0);
        writer.message(message);
        self.bytes = writer.bytes;
    }

    pub(crate) fn propose(&mut self, now: Instant, payload: &Bytes) {
        let mut writer = self.writer(TAG_PROPOSE);
        writer.u64(now.0);
        writer.opaque(payload);
        self.bytes = writer.bytes;
    }

    pub(crate) fn persisted(&mut self, now: Instant, position: LogPosition) {
        let mut writer = self.writer(TAG_PERSISTED);
        writer.u64(now.0);
        writer.u64(position.index.0);
        writer.u64(position.term.0);
        self.bytes = writer.bytes;
    }

    pub(crate) fn take_outputs(&mut self, outputs: &[Output]) {
        self.bytes.push(TAG_TAKE_OUTPUTS);
        self.bytes
            .extend_from_slice(&outputs_digest(outputs).to_le_bytes());
    }

    pub(crate) fn snapshot_durable(&mut self, now: Instant, meta: SnapshotMeta) {
        let mut writer = self.writer(TAG_SNAPSHOT_DURABLE);
        writer.u64(now.0);
        writer.snapshot_meta(meta);
        self.bytes = writer.bytes;
    }

    pub(crate) fn snapshot_read(
        &mut self,
        now: Instant,
        read: SnapshotRead,
        result: &Result<Bytes, SnapshotReadError>,
    ) {
        let mut writer = self.writer(TAG_SNAPSHOT_READ);
        writer.u64(now.0);
        writer.u64(read.to.0);
        writer.u64(read.snapshot.index.0);
        writer.u64(read.snapshot.term.0);
        writer.u64(read.offset);
        match result {
            Ok(data) => {
                writer.u8(0);
                writer.opaque(data);
            }
            Err(SnapshotReadError::Replaced) => writer.u8(1),
            Err(SnapshotReadError::Failed) => writer.u8(2),
        }
        self.bytes = writer.bytes;
    }

    pub(crate) fn snapshot_requested(&mut self, now: Instant) {
        let mut writer = self.writer(TAG_SNAPSHOT_REQUESTED);
        writer.u64(now.0);
        self.bytes = writer.bytes;
    }

    pub(crate) fn log_read(&mut self, now: Instant, id: LogReadId, result: &LogReadResult) {
        let mut writer = self.writer(TAG_LOG_READ);
        writer.u64(now.0);
        writer.u64(id.0);
        match result {
            LogReadResult::Entries(entries) => {
                writer.u8(0);
                writer.entries(entries);
            }
            LogReadResult::Compacted => writer.u8(1),
            LogReadResult::Fault(index) => {
                writer.u8(2);
                writer.u64(index.0);
            }
        }
        self.bytes = writer.bytes;
    }

    pub(crate) fn read_index(&mut self, now: Instant, id: ReadId, mode: ReadMode) {
        let mut writer = self.writer(TAG_READ_INDEX);
        writer.u64(now.0);
        writer.u64(id.0);
        writer.u8(match mode {
            ReadMode::Linearizable => 0,
            ReadMode::Lease => 1,
        });
        self.bytes = writer.bytes;
    }

    pub(crate) fn config_change(&mut self, now: Instant, change: ConfigChange) {
        let mut writer = self.writer(TAG_CONFIG_CHANGE);
        writer.u64(now.0);
        let (code, id) = match change {
            ConfigChange::AddLearner(id) => (1, id),
            ConfigChange::Promote(id) => (2, id),
            ConfigChange::Remove(id) => (3, id),
        };
        writer.u8(code);
        writer.u64(id.0);
        self.bytes = writer.bytes;
    }

    pub(crate) fn config_annex(&mut self, annex: &[u8]) {
        let mut writer = self.writer(TAG_CONFIG_ANNEX);
        writer.payload(annex);
        self.bytes = writer.bytes;
    }

    pub(crate) fn transfer(&mut self, now: Instant, target: Option<NodeId>) {
        let mut writer = self.writer(TAG_TRANSFER);
        writer.u64(now.0);
        writer.option_id(target);
        self.bytes = writer.bytes;
    }

    pub(crate) fn snapshot_installed(&mut self, now: Instant, meta: SnapshotMeta, ok: bool) {
        let mut writer = self.writer(TAG_SNAPSHOT_INSTALLED);
        writer.u64(now.0);
        writer.snapshot_meta(meta);
        writer.bool(ok);
        self.bytes = writer.bytes;
    }
}

/// What a `ReadSnapshot` asked for, as the driver answers it (`Node::on_snapshot_read`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct SnapshotRead {
    pub(crate) to: NodeId,
    pub(crate) snapshot: LogPosition,
    pub(crate) offset: u64,
}

/// The `start` record: what `Node::new_recorded` was called with.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) config: Config,
    pub(crate) persisted: Persisted,
    pub(crate) now: Instant,
    /// The injected bug's code (0: none).
    pub(crate) bug_code: u8,
    /// Where that code sits in the trace.
    pub(crate) bug_offset: usize,
}

/// One input record after `start`, in the order the node received them.
#[derive(Debug)]
pub(crate) enum Record {
    Tick(Instant),
    Message(Instant, Message),
    Propose(Instant, Bytes),
    Persisted(Instant, LogPosition),
    /// With the digest of the outputs the recorded node gave.
    TakeOutputs(u64),
    SnapshotDurable(Instant, SnapshotMeta),
    SnapshotRead(Instant, SnapshotRead, Result<Bytes, SnapshotReadError>),
    /// `true`: installed; `false`: the install failed verification.
    SnapshotInstalled(Instant, SnapshotMeta, bool),
    /// An operator asked for a snapshot now (`Node::request_snapshot`).
    SnapshotRequested(Instant),
    /// The driver answered a `ReadLog` (`Node::on_log_read`).
    LogRead(Instant, LogReadId, LogReadResult),
    /// A client asked for a read (`Node::read_index`).
    ReadIndex(Instant, ReadId, ReadMode),
    /// `Node::propose_config_change`.
    ConfigChange(Instant, ConfigChange),
    /// `Node::transfer_leadership`.
    Transfer(Instant, Option<NodeId>),
    /// `Node::set_config_annex`.
    ConfigAnnex(Bytes),
}

/// Reads a trace: the header and the `start` record, then one input record at a time.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    reader: Reader<'a>,
}

impl<'a> Decoder<'a> {
    /// Checks the header and reads the `start` record; a trace that ends inside them is
    /// [`TraceError::TornStart`].
    pub(crate) fn start(trace: &'a [u8]) -> Result<(Decoder<'a>, Start), TraceError> {
        let mut reader = Reader {
            bytes: trace,
            offset: 0,
            ran_out: false,
            zeros: Bytes::new(),
        };
        match Decoder::read_start(&mut reader) {
            Ok(start) => Ok((Decoder { reader }, start)),
            Err(_) if reader.ran_out => Err(TraceError::TornStart {
                length: trace.len() as u64,
            }),
            Err(error) => Err(error),
        }
    }

    fn read_start(reader: &mut Reader<'a>) -> Result<Start, TraceError> {
        let magic = reader.take(8)?;
        if magic != MAGIC {
            return Err(reader.error(0, "not an ALPO trace: bad magic"));
        }
        let version = u16::from_le_bytes([reader.u8()?, reader.u8()?]);
        if version != TRACE_VERSION {
            return Err(reader.error(
                8,
                &format!("trace version {version}, expected {TRACE_VERSION}"),
            ));
        }
        if reader.u8()? != TAG_START {
            return Err(reader.error(10, "the first record is not `start`"));
        }
        let (config, bug_code) = reader.config()?;
        let bug_offset = reader.offset - 1;
        let persisted = reader.persisted()?;
        let now = Instant(reader.u64()?);
        Ok(Start {
            config,
            persisted,
            now,
            bug_code,
            bug_offset,
        })
    }

    /// The next input record, or `None` at the end of the trace.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record>, TraceError> {
        let reader = &mut self.reader;
        if reader.is_empty() {
            return Ok(None);
        }
        let at = reader.offset;
        let record = match reader.u8()? {
            TAG_TICK => Record::Tick(Instant(reader.u64()?)),
            TAG_MESSAGE => {
                let now = Instant(reader.u64()?);
                Record::Message(now, reader.message()?)
            }
            TAG_PROPOSE => {
                let now = Instant(reader.u64()?);
                Record::Propose(now, reader.opaque()?)
            }
            TAG_PERSISTED => {
                let now = Instant(reader.u64()?);
                let index = LogIndex(reader.u64()?);
                let term = Term(reader.u64()?);
                Record::Persisted(now, LogPosition { index, term })
            }
            TAG_TAKE_OUTPUTS => Record::TakeOutputs(reader.u64()?),
            TAG_SNAPSHOT_DURABLE => {
                let now = Instant(reader.u64()?);
                Record::SnapshotDurable(now, reader.snapshot_meta()?)
            }
            TAG_SNAPSHOT_READ => reader.snapshot_read()?,
            TAG_SNAPSHOT_INSTALLED => {
                let now = Instant(reader.u64()?);
                let meta = reader.snapshot_meta()?;
                Record::SnapshotInstalled(now, meta, reader.bool()?)
            }
            TAG_SNAPSHOT_REQUESTED => Record::SnapshotRequested(Instant(reader.u64()?)),
            TAG_LOG_READ => reader.log_read()?,
            TAG_READ_INDEX => {
                let now = Instant(reader.u64()?);
                let id = ReadId(reader.u64()?);
                let at = reader.offset;
                let mode = match reader.u8()? {
                    0 => ReadMode::Linearizable,
                    1 => ReadMode::Lease,
                    other => return Err(reader.error(at, &format!("read mode {other}"))),
                };
                Record::ReadIndex(now, id, mode)
            }
            TAG_CONFIG_CHANGE => {
                let now = Instant(reader.u64()?);
                let code_at = reader.offset;
                let code = reader.u8()?;
                let id = NodeId(reader.u64()?);
                let change = match code {
                    1 => ConfigChange::AddLearner(id),
                    2 => ConfigChange::Promote(id),
                    3 => ConfigChange::Remove(id),
                    other => {
                        return Err(reader.error(code_at, &format!("config change kind {other}")));
                    }
                };
                Record::ConfigChange(now, change)
            }
            TAG_TRANSFER => {
                let now = Instant(reader.u64()?);
                Record::Transfer(now, reader.option_id()?)
            }
            TAG_CONFIG_ANNEX => Record::ConfigAnnex(reader.payload()?),
            tag => return Err(reader.error(at, &format!("unknown record tag {tag}"))),
        };
        Ok(Some(record))
    }

    /// Where the next record starts.
    pub(crate) fn offset(&self) -> usize {
        self.reader.offset
    }

    /// Whether decoding failed for want of bytes (a torn tail, as a crash while recording
    /// leaves) rather than for bytes that make no sense.
    pub(crate) fn ran_out(&self) -> bool {
        self.reader.ran_out
    }

    /// A corruption error at `offset`.
    pub(crate) fn error(&self, offset: usize, problem: &str) -> TraceError {
        self.reader.error(offset, problem)
    }
}

#[derive(Default)]
struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }

    fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn bool(&mut self, value: bool) {
        self.u8(u8::from(value));
    }

    fn nanos(&mut self, value: std::time::Duration) {
        self.u64(u64::try_from(value.as_nanos()).unwrap_or(u64::MAX));
    }

    fn payload(&mut self, payload: &[u8]) {
        self.length(payload);
        self.bytes.extend_from_slice(payload);
    }

    /// An opaque payload: its length only (format version 4).
    fn opaque(&mut self, payload: &[u8]) {
        self.length(payload);
    }

    fn length(&mut self, payload: &[u8]) {
        // Payloads are bounded by `Config::entry_bytes_max` and chunks by
        // `Config::snapshot_chunk_bytes`, far below 4 GiB.
        debug_assert!(payload.len() as u64 <= OPAQUE_BYTES_MAX);
        let length = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&length.to_le_bytes());
    }

    fn config(&mut self, config: &Config) {
        self.u64(config.id.0);
        self.u64(config.members.len() as u64);
        for member in &config.members {
            self.u64(member.0);
        }
        self.nanos(config.heartbeat_interval);
        self.nanos(config.passive_timeout_min);
        self.nanos(config.passive_timeout_max);
        self.nanos(config.election_cycle_min);
        self.nanos(config.election_cycle_max);
        self.bool(config.deferral);
        self.bool(config.pre_vote);
        self.bool(config.check_quorum);
        self.u64(config.seed);
        self.u64(config.append_entry_count_max);
        self.u64(config.append_bytes_max);
        self.u64(config.inflight_append_count_max);
        self.u64(config.pending_proposal_count_max);
        self.u64(config.pending_proposal_bytes_max);
        self.u64(config.entry_bytes_max);
        self.bool(config.snapshot_interval_entries.is_some());
        self.u64(config.snapshot_interval_entries.unwrap_or(0));
        self.u64(config.retain_entries);
        self.u64(config.snapshot_chunk_bytes);
        self.u64(config.snapshot_chunks_inflight_max);
        self.u64(config.log_cache_bytes_max);
        self.u64(config.read_inflight_bytes_max);
        self.bool(config.read_lease.is_some());
        self.u64(
            config
                .read_lease
                .map_or(0, |lease| u64::from(lease.drift_ppm)),
        );
        // The injected bug (0: none), set by `Recorder::injected_bug` when the simulator injects
        // one; kept in `Config`'s place in the layout since the bugs left `Config`.
        self.u8(0);
    }

    fn persisted(&mut self, persisted: &Persisted) {
        self.u64(persisted.hard_state.current_term.0);
        self.option_id(persisted.hard_state.voted_for);
        self.u64(persisted.incarnation.0);
        self.bool(persisted.snapshot.is_some());
        if let Some(meta) = persisted.snapshot {
            self.snapshot_meta(meta);
        }
        self.u64(persisted.log.runs.len() as u64);
        for run in &persisted.log.runs {
            self.u64(run.first.0);
            self.u64(run.term.0);
        }
        self.u64(persisted.log.last.0);
        self.entries(&persisted.log.tail);
        self.entries(&persisted.log.configs);
        self.u64(persisted.term_ceiling.0);
        self.bool(persisted.hard_state_lost);
    }

    fn entries(&mut self, entries: &[Entry]) {
        self.u64(entries.len() as u64);
        for entry in entries {
            self.entry(entry);
        }
    }

    fn option_id(&mut self, id: Option<NodeId>) {
        self.bool(id.is_some());
        if let Some(id) = id {
            self.u64(id.0);
        }
    }

    fn snapshot_meta(&mut self, meta: SnapshotMeta) {
        self.u64(meta.last.index.0);
        self.u64(meta.last.term.0);
        self.u64(meta.size);
        self.payload(&meta.configuration.encode());
    }

    fn entry(&mut self, entry: &Entry) {
        self.u64(entry.index.0);
        self.u64(entry.term.0);
        self.u8(entry.kind.to_byte());
        match entry.kind {
            EntryKind::Normal => self.opaque(&entry.payload),
            EntryKind::Noop | EntryKind::Config => self.payload(&entry.payload),
        }
    }

    fn message(&mut self, message: &Message) {
        self.u64(message.from.0);
        self.u64(message.to.0);
        self.u64(message.term.0);
        self.u64(message.incarnation.0);
        match &message.body {
            MessageBody::VoteRequest(request) => {
                self.u8(1);
                self.u64(request.last_index.0);
                self.u64(request.last_term.0);
                self.bool(request.pre_vote);
                self.bool(request.transfer);
            }
            MessageBody::VoteReply(reply) => {
                self.u8(2);
                self.u8(reply.reason as u8);
                self.bool(reply.voter_rank.is_some());
                if let Some(rank) = reply.voter_rank {
                    self.u64(rank.last_term.0);
                    self.u64(rank.last_index.0);
                    self.u64(rank.id.0);
                }
                self.bool(reply.pre_vote);
            }
            MessageBody::Append(append) => self.append(append),
            MessageBody::AppendReply(reply) => self.append_reply(reply),
            MessageBody::InstallSnapshot(chunk) => {
                self.u8(5);
                self.snapshot_meta(chunk.snapshot);
                self.u64(chunk.offset);
                self.opaque(&chunk.data);
                self.bool(chunk.last);
            }
            MessageBody::SnapshotReply(reply) => {
                self.u8(6);
                self.u64(reply.snapshot.index.0);
                self.u64(reply.snapshot.term.0);
                match reply.result {
                    SnapshotResult::NextOffset(offset) => {
                        self.u8(1);
                        self.u64(offset);
                    }
                    SnapshotResult::Installed(index) => {
                        self.u8(2);
                        self.u64(index.0);
                    }
                }
            }
            MessageBody::ReadIndexRequest(request) => {
                self.u8(7);
                self.u64(request.read_id);
            }
            MessageBody::ReadIndexReply(reply) => {
                self.u8(8);
                self.u64(reply.read_id);
                match reply.result {
                    ReadIndexResult::Ready(index) => {
                        self.u8(1);
                        self.u64(index.0);
                    }
                    ReadIndexResult::NotLeader => self.u8(2),
                }
            }
            MessageBody::TimeoutNow => self.u8(9),
        }
    }

    fn append(&mut self, append: &Append) {
        self.u8(3);
        self.u64(append.prev_index.0);
        self.u64(append.prev_term.0);
        self.u64(append.entries.len() as u64);
        for entry in &append.entries {
            self.entry(entry);
        }
        self.u64(append.leader_commit.0);
        self.u64(append.round);
    }

    fn append_reply(&mut self, reply: &AppendReply) {
        self.u8(4);
        match reply.result {
            AppendResult::Accepted { match_index } => {
                self.u8(1);
                self.u64(match_index.0);
            }
            AppendResult::Rejected(hint) => {
                self.u8(2);
                self.u64(hint.conflict_term.0);
                self.u64(hint.conflict_first_index.0);
                self.u64(hint.last_index.0);
                self.u64(hint.last_term.0);
            }
        }
        self.u64(reply.round);
    }
}

#[derive(Debug)]
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    /// A read wanted more bytes than are left.
    ran_out: bool,
    /// Zeros that opaque payloads are slices of (grown to the longest one seen).
    zeros: Bytes,
}

impl<'a> Reader<'a> {
    fn error(&self, offset: usize, problem: &str) -> TraceError {
        TraceError::Corrupt {
            offset: offset as u64,
            problem: problem.to_string(),
        }
    }

    fn is_empty(&self) -> bool {
        self.offset >= self.bytes.len()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], TraceError> {
        let end = self
            .offset
            .checked_add(count)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            self.ran_out = true;
            let problem = format!("truncated: {count} bytes expected, {} left", self.left());
            return Err(self.error(self.offset, &problem));
        };
        let slice = &self.bytes[self.offset..end];
        self.offset = end;
        Ok(slice)
    }

    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn u8(&mut self) -> Result<u8, TraceError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, TraceError> {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(buffer))
    }

    fn bool(&mut self) -> Result<bool, TraceError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(self.offset - 1, &format!("boolean byte {other}"))),
        }
    }

    fn nanos(&mut self) -> Result<std::time::Duration, TraceError> {
        Ok(std::time::Duration::from_nanos(self.u64()?))
    }

    /// A count of items each at least `item_bytes_min` long: checked against the bytes left
    /// before anything is allocated.
    fn count(&mut self, item_bytes_min: usize) -> Result<usize, TraceError> {
        let at = self.offset;
        let count = self.u64()?;
        let fits = usize::try_from(count)
            .ok()
            .filter(|count| count.saturating_mul(item_bytes_min) <= self.left());
        if fits.is_none() {
            self.ran_out = true;
        }
        fits.ok_or_else(|| self.error(at, &format!("count {count} exceeds the bytes left")))
    }

    fn payload(&mut self) -> Result<Bytes, TraceError> {
        let length = self.length()?;
        Ok(Bytes::copy_from_slice(self.take(length)?))
    }

    /// An opaque payload: zeros of the recorded length, a slice of one shared buffer.
    fn opaque(&mut self) -> Result<Bytes, TraceError> {
        let at = self.offset;
        let length = self.length()?;
        if length as u64 > OPAQUE_BYTES_MAX {
            let problem = format!("payload length {length} beyond {OPAQUE_BYTES_MAX}");
            return Err(self.error(at, &problem));
        }
        if length > self.zeros.len() {
            // Zeroed memory is cheap (the allocator maps it lazily); grow by doubling.
            self.zeros = Bytes::from(vec![0; length.max(2 * self.zeros.len()).max(4096)]);
        }
        Ok(self.zeros.slice(..length))
    }

    fn length(&mut self) -> Result<usize, TraceError> {
        let mut buffer = [0u8; 4];
        buffer.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(buffer) as usize)
    }

    /// The configuration and the injected bug's code (0: none).
    fn config(&mut self) -> Result<(Config, u8), TraceError> {
        let id = NodeId(self.u64()?);
        let member_count = self.count(8)?;
        let members = (0..member_count)
            .map(|_| self.u64().map(NodeId))
            .collect::<Result<Vec<_>, _>>()?;
        let mut config = Config::lan(id, members, 0);
        config.heartbeat_interval = self.nanos()?;
        config.passive_timeout_min = self.nanos()?;
        config.passive_timeout_max = self.nanos()?;
        config.election_cycle_min = self.nanos()?;
        config.election_cycle_max = self.nanos()?;
        config.deferral = self.bool()?;
        config.pre_vote = self.bool()?;
        config.check_quorum = self.bool()?;
        config.seed = self.u64()?;
        config.append_entry_count_max = self.u64()?;
        config.append_bytes_max = self.u64()?;
        config.inflight_append_count_max = self.u64()?;
        config.pending_proposal_count_max = self.u64()?;
        config.pending_proposal_bytes_max = self.u64()?;
        config.entry_bytes_max = self.u64()?;
        let has_interval = self.bool()?;
        let interval = self.u64()?;
        config.snapshot_interval_entries = has_interval.then_some(interval);
        config.retain_entries = self.u64()?;
        config.snapshot_chunk_bytes = self.u64()?;
        config.snapshot_chunks_inflight_max = self.u64()?;
        config.log_cache_bytes_max = self.u64()?;
        config.read_inflight_bytes_max = self.u64()?;
        let has_lease = self.bool()?;
        let drift = self.u64()?;
        let drift_ppm = u32::try_from(drift)
            .map_err(|_| self.error(self.offset - 8, &format!("lease drift {drift} ppm")))?;
        config.read_lease = has_lease.then_some(ReadLease { drift_ppm });
        let bug_code = self.u8()?;
        Ok((config, bug_code))
    }

    fn persisted(&mut self) -> Result<Persisted, TraceError> {
        let current_term = Term(self.u64()?);
        let voted_for = self.option_id()?;
        let incarnation = Incarnation(self.u64()?);
        let snapshot = if self.bool()? {
            Some(self.snapshot_meta()?)
        } else {
            None
        };
        let run_count = self.count(16)?;
        let runs = (0..run_count)
            .map(|_| {
                let first = LogIndex(self.u64()?);
                let term = Term(self.u64()?);
                Ok(TermRun { first, term })
            })
            .collect::<Result<Vec<_>, TraceError>>()?;
        let last = LogIndex(self.u64()?);
        let tail = self.entries()?;
        let configs = self.entries()?;
        let term_ceiling = Term(self.u64()?);
        let hard_state_lost = self.bool()?;
        Ok(Persisted {
            hard_state: HardState {
                current_term,
                voted_for,
            },
            snapshot,
            log: PersistedLog {
                runs,
                last,
                tail,
                configs,
            },
            incarnation,
            term_ceiling,
            hard_state_lost,
        })
    }

    fn entries(&mut self) -> Result<Vec<Entry>, TraceError> {
        let entry_count = self.count(21)?;
        (0..entry_count).map(|_| self.entry()).collect()
    }

    /// The fields of a `log_read` record, after its tag.
    fn log_read(&mut self) -> Result<Record, TraceError> {
        let now = Instant(self.u64()?);
        let id = LogReadId(self.u64()?);
        let at = self.offset;
        let result = match self.u8()? {
            0 => LogReadResult::Entries(self.entries()?),
            1 => LogReadResult::Compacted,
            2 => LogReadResult::Fault(LogIndex(self.u64()?)),
            other => return Err(self.error(at, &format!("log read result {other}"))),
        };
        Ok(Record::LogRead(now, id, result))
    }

    fn snapshot_meta(&mut self) -> Result<SnapshotMeta, TraceError> {
        let index = LogIndex(self.u64()?);
        let term = Term(self.u64()?);
        let size = self.u64()?;
        let at = self.offset;
        let configuration =
            Configuration::decode(&self.payload()?).map_err(|problem| self.error(at, &problem))?;
        Ok(SnapshotMeta {
            last: LogPosition { index, term },
            size,
            configuration,
        })
    }

    /// The fields of a `snapshot_read` record, after its tag.
    fn snapshot_read(&mut self) -> Result<Record, TraceError> {
        let now = Instant(self.u64()?);
        let to = NodeId(self.u64()?);
        let index = LogIndex(self.u64()?);
        let term = Term(self.u64()?);
        let offset = self.u64()?;
        let at = self.offset;
        let result = match self.u8()? {
            0 => Ok(self.opaque()?),
            1 => Err(SnapshotReadError::Replaced),
            2 => Err(SnapshotReadError::Failed),
            other => return Err(self.error(at, &format!("snapshot read result {other}"))),
        };
        let read = SnapshotRead {
            to,
            snapshot: LogPosition { index, term },
            offset,
        };
        Ok(Record::SnapshotRead(now, read, result))
    }

    fn option_id(&mut self) -> Result<Option<NodeId>, TraceError> {
        Ok(if self.bool()? {
            Some(NodeId(self.u64()?))
        } else {
            None
        })
    }

    fn entry(&mut self) -> Result<Entry, TraceError> {
        let index = LogIndex(self.u64()?);
        let term = Term(self.u64()?);
        let byte = self.u8()?;
        let kind = EntryKind::from_byte(byte)
            .ok_or_else(|| self.error(self.offset - 1, &format!("entry kind {byte}")))?;
        let payload = match kind {
            EntryKind::Normal => self.opaque()?,
            EntryKind::Noop | EntryKind::Config => self.payload()?,
        };
        Ok(Entry {
            index,
            term,
            kind,
            payload,
        })
    }

    fn message(&mut self) -> Result<Message, TraceError> {
        let from = NodeId(self.u64()?);
        let to = NodeId(self.u64()?);
        let term = Term(self.u64()?);
        let incarnation = Incarnation(self.u64()?);
        let at = self.offset;
        let body = match self.u8()? {
            1 => MessageBody::VoteRequest(VoteRequest {
                last_index: LogIndex(self.u64()?),
                last_term: Term(self.u64()?),
                pre_vote: self.bool()?,
                transfer: self.bool()?,
            }),
            2 => MessageBody::VoteReply(self.vote_reply()?),
            3 => MessageBody::Append(self.append()?),
            4 => MessageBody::AppendReply(self.append_reply()?),
            5 => MessageBody::InstallSnapshot(InstallSnapshot {
                snapshot: self.snapshot_meta()?,
                offset: self.u64()?,
                data: self.opaque()?,
                last: self.bool()?,
            }),
            6 => MessageBody::SnapshotReply(self.snapshot_reply()?),
            7 => MessageBody::ReadIndexRequest(ReadIndexRequest {
                read_id: self.u64()?,
            }),
            8 => MessageBody::ReadIndexReply(self.read_index_reply()?),
            9 => MessageBody::TimeoutNow,
            other => return Err(self.error(at, &format!("message kind {other}"))),
        };
        Ok(Message {
            from,
            to,
            term,
            incarnation,
            body,
        })
    }

    fn vote_reply(&mut self) -> Result<VoteReply, TraceError> {
        let at = self.offset;
        let reason = match self.u8()? {
            1 => VoteReason::Granted,
            2 => VoteReason::AlreadyVoted,
            3 => VoteReason::LogNotComplete,
            4 => VoteReason::StaleTerm,
            5 => VoteReason::LeaderAlive,
            6 => VoteReason::NotVoter,
            7 => VoteReason::Abstaining,
            other => return Err(self.error(at, &format!("vote reason {other}"))),
        };
        let voter_rank = if self.bool()? {
            Some(Rank {
                last_term: Term(self.u64()?),
                last_index: LogIndex(self.u64()?),
                id: NodeId(self.u64()?),
            })
        } else {
            None
        };
        Ok(VoteReply {
            reason,
            voter_rank,
            pre_vote: self.bool()?,
        })
    }

    fn append(&mut self) -> Result<Append, TraceError> {
        let prev_index = LogIndex(self.u64()?);
        let prev_term = Term(self.u64()?);
        let entry_count = self.count(21)?;
        let entries = (0..entry_count)
            .map(|_| self.entry())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Append {
            prev_index,
            prev_term,
            entries,
            leader_commit: LogIndex(self.u64()?),
            round: self.u64()?,
        })
    }

    fn read_index_reply(&mut self) -> Result<ReadIndexReply, TraceError> {
        let read_id = self.u64()?;
        let at = self.offset;
        let result = match self.u8()? {
            1 => ReadIndexResult::Ready(LogIndex(self.u64()?)),
            2 => ReadIndexResult::NotLeader,
            other => return Err(self.error(at, &format!("read index result {other}"))),
        };
        Ok(ReadIndexReply { read_id, result })
    }

    fn snapshot_reply(&mut self) -> Result<SnapshotReply, TraceError> {
        let index = LogIndex(self.u64()?);
        let term = Term(self.u64()?);
        let at = self.offset;
        let result = match self.u8()? {
            1 => SnapshotResult::NextOffset(self.u64()?),
            2 => SnapshotResult::Installed(LogIndex(self.u64()?)),
            other => return Err(self.error(at, &format!("snapshot result {other}"))),
        };
        Ok(SnapshotReply {
            snapshot: LogPosition { index, term },
            result,
        })
    }

    fn append_reply(&mut self) -> Result<AppendReply, TraceError> {
        let at = self.offset;
        let result = match self.u8()? {
            1 => AppendResult::Accepted {
                match_index: LogIndex(self.u64()?),
            },
            2 => AppendResult::Rejected(RejectHint {
                conflict_term: Term(self.u64()?),
                conflict_first_index: LogIndex(self.u64()?),
                last_index: LogIndex(self.u64()?),
                last_term: Term(self.u64()?),
            }),
            other => return Err(self.error(at, &format!("append result {other}"))),
        };
        Ok(AppendReply {
            result,
            round: self.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::testkit::Cluster;

    fn normal(payload: &'static [u8]) -> Entry {
        Entry {
            index: LogIndex(7),
            term: Term(2),
            kind: EntryKind::Normal,
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn the_digest_counts_a_payload_by_its_length_and_everything_else_whole() {
        let apply = |entries| vec![Output::Apply { entries }];
        let digest = outputs_digest(&apply(vec![normal(b"abc")]));
        assert_eq!(digest, outputs_digest(&apply(vec![normal(b"xyz")])));
        assert_ne!(digest, outputs_digest(&apply(vec![normal(b"abcd")])));
        let mut later = normal(b"abc");
        later.index = LogIndex(8);
        assert_ne!(digest, outputs_digest(&apply(vec![later])));
        // A configuration's ids are integers, hashed one by one, not a byte slice's length.
        let membership = |ids: Vec<u64>| {
            let ids: Vec<NodeId> = ids.into_iter().map(NodeId).collect();
            vec![Output::Membership {
                configuration: Configuration::new(&ids, &[]).unwrap(),
            }]
        };
        assert_ne!(
            outputs_digest(&membership(vec![1, 2, 3])),
            outputs_digest(&membership(vec![1, 2, 4]))
        );
    }

    #[test]
    fn a_command_is_recorded_by_its_length_and_replayed_as_zeros() {
        let mut cluster = Cluster::new_recorded(3, 11);
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        let before = cluster.node(leader.0).trace().unwrap().len();
        static COMMAND: [u8; 10_000] = [b'x'; 10_000];
        let command = std::str::from_utf8(&COMMAND).unwrap();
        cluster.propose(leader, command).unwrap();
        let after = cluster.node(leader.0).trace().unwrap().len();
        assert!(after - before < 100, "{} trace bytes", after - before);
        cluster.deliver_all();
        let replay = crate::replay::replay(cluster.node(leader.0).trace().unwrap()).unwrap();
        let proposed = replay.node.entry(replay.node.status().last_index).unwrap();
        assert_eq!(proposed.payload.len(), 10_000);
        assert!(proposed.payload.iter().all(|byte| *byte == 0));
    }

    #[test]
    fn a_damaged_opaque_length_is_refused_before_allocating() {
        let mut cluster = Cluster::new_recorded(3, 11);
        let leader = cluster.elect(Duration::from_secs(5)).unwrap();
        let mut trace = cluster.node(leader.0).trace().unwrap().to_vec();
        let at = trace.len();
        cluster.propose(leader, "abc").unwrap();
        trace.extend_from_slice(&cluster.node(leader.0).trace().unwrap()[at..]);
        // The propose record: tag, `now`, then the length.
        assert_eq!(trace[at], TAG_PROPOSE);
        trace[at + 9..at + 13].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = crate::replay::replay(&trace).unwrap_err().to_string();
        assert!(
            error.contains("payload length 4294967295 beyond"),
            "{error}"
        );
    }
}
