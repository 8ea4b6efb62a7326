//! The key-value machine's client helpers: `Client::put`, `get`, `delete` and
//! `compare_and_set` encode a `KvOp` as the payload of a command or query, and decode the
//! machine's `KvResult`. The client protocol itself knows nothing of keys.
//!
//! Invariants: a get travels as a query, every other operation as a command (`KvOp::to_op`);
//! an `Invalid` answer becomes `Error::Refused` with `BadRequest` (the operation changed
//! nothing, so retrying it will not help); any other answer than the one an operation expects
//! becomes `Error::UnexpectedResponse`.

use bytes::Bytes;

use alpo_core::LogIndex;

use crate::client::Client;
use crate::client_protocol::{Consistency, ErrorCode, Op};
use crate::error::Error;
use crate::kv::{KvOp, KvResult};

/// The outcome of a compare-and-set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasOutcome {
    /// Whether the key held the expected value and now holds the new one.
    pub swapped: bool,
    /// The key's value after the operation.
    pub current: Option<Bytes>,
    /// The log index the operation took effect at.
    pub index: LogIndex,
}

impl Client {
    /// Key-value machine: sets `key` to `value` (through the log); returns the index it took
    /// effect at.
    pub fn put(
        &mut self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
    ) -> Result<LogIndex, Error> {
        let op = KvOp::Put {
            key: key.into(),
            value: value.into(),
        };
        match self.kv(&op)? {
            (index, KvResult::Written) => Ok(index),
            (_, other) => Err(unexpected(&other)),
        }
    }

    /// Key-value machine: reads `key`, linearizably (a read index, no log write; rules Q1,
    /// Q2); `None` if absent.
    pub fn get(&mut self, key: impl Into<Bytes>) -> Result<Option<Bytes>, Error> {
        self.get_with(key, Consistency::Linearizable)
    }

    /// Key-value machine: reads `key` with the given consistency (docs/operations.md, Reads);
    /// `None` if absent.
    pub fn get_with(
        &mut self,
        key: impl Into<Bytes>,
        consistency: Consistency,
    ) -> Result<Option<Bytes>, Error> {
        let op = KvOp::Get { key: key.into() };
        match self.kv_op(op.to_op_with(consistency))?.1 {
            KvResult::Value(value) => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    /// Key-value machine: removes `key`; returns whether it existed.
    pub fn delete(&mut self, key: impl Into<Bytes>) -> Result<bool, Error> {
        match self.kv(&KvOp::Delete { key: key.into() })?.1 {
            KvResult::Deleted { existed } => Ok(existed),
            other => Err(unexpected(&other)),
        }
    }

    /// Key-value machine: sets `key` to `new` (removes it when `None`) iff it holds `expected`
    /// (`None`: absent).
    pub fn compare_and_set(
        &mut self,
        key: impl Into<Bytes>,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<CasOutcome, Error> {
        let op = KvOp::Cas {
            key: key.into(),
            expected,
            new,
        };
        match self.kv(&op)? {
            (index, KvResult::Cas { swapped, current }) => Ok(CasOutcome {
                swapped,
                current,
                index,
            }),
            (_, other) => Err(unexpected(&other)),
        }
    }

    fn kv(&mut self, op: &KvOp) -> Result<(LogIndex, KvResult), Error> {
        self.kv_op(op.to_op())
    }

    fn kv_op(&mut self, op: Op) -> Result<(LogIndex, KvResult), Error> {
        let (index, output) = self.applied(op)?;
        match KvResult::decode(output)? {
            KvResult::Invalid(reason) => Err(Error::Refused {
                code: ErrorCode::BadRequest,
                reason,
            }),
            result => Ok((index, result)),
        }
    }
}

fn unexpected(result: &KvResult) -> Error {
    Error::UnexpectedResponse {
        endpoint: "key-value machine".into(),
        response: format!("{result:?}"),
    }
}
