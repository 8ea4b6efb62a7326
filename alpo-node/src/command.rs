//! What a normal entry's payload holds when a client request put it there: the request id (for
//! duplicate detection, docs/protocol.md Clients) and either an appended value, a
//! state-machine command or a state-machine query.
//!
//! Layout (little-endian):
//!
//! ```text
//! 1 byte  version (1)
//! 8 bytes client id
//! 8 bytes sequence number
//! 1 byte  kind (1 append: a value for the log; 2 command: bytes for `StateMachine::apply`;
//!         3 query: bytes for `StateMachine::query`, answered as of this entry's index)
//! ...     the value, command or query, to the end of the payload
//! ```
//!
//! Invariants: only the node writes these payloads, so a payload that does not decode was
//! written by something else (another program, another version); applying it yields an error
//! answer on every node alike, never a panic.

use bytes::Bytes;

use crate::client_protocol::RequestId;
use crate::wire::{DecodeError, DecodeProblem, Reader, Writer};

/// The version byte of an entry payload.
const COMMAND_VERSION: u8 = 1;

/// Bytes a command adds around the client's data.
pub(crate) const COMMAND_HEADER_BYTES: u64 = 18;

/// What an entry carries for the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogCommand {
    pub(crate) id: RequestId,
    pub(crate) kind: CommandKind,
    pub(crate) data: Bytes,
}

/// Whether the data is for the log only, or a command or query for the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CommandKind {
    /// A value appended to the log; the state machine does not see it.
    Append = 1,
    /// A command for `StateMachine::apply`.
    Command = 2,
    /// A query for `StateMachine::query`: ordered by the log, changes nothing.
    Query = 3,
}

impl LogCommand {
    pub(crate) fn encode(&self) -> Bytes {
        let mut w = Writer::default();
        w.u8(COMMAND_VERSION).u64(self.id.client).u64(self.id.seq);
        w.u8(self.kind as u8).tail(&self.data);
        let bytes = w.finish();
        debug_assert!(bytes.len() as u64 == COMMAND_HEADER_BYTES + self.data.len() as u64);
        bytes
    }

    pub(crate) fn decode(payload: Bytes) -> Result<LogCommand, DecodeError> {
        let mut r = Reader::new(payload);
        let version = r.u8("entry payload")?;
        if version != COMMAND_VERSION {
            return Err(DecodeError {
                what: "entry payload",
                offset: 0,
                problem: DecodeProblem::UnsupportedVersion(version),
            });
        }
        let id = RequestId {
            client: r.u64("client id")?,
            seq: r.u64("sequence number")?,
        };
        let kind = match r.u8("command kind")? {
            1 => CommandKind::Append,
            2 => CommandKind::Command,
            3 => CommandKind::Query,
            tag => return Err(r.unknown_tag("command kind", tag)),
        };
        Ok(LogCommand {
            id,
            kind,
            data: r.tail(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        for kind in [
            CommandKind::Append,
            CommandKind::Command,
            CommandKind::Query,
        ] {
            let command = LogCommand {
                id: RequestId { client: 3, seq: 4 },
                kind,
                data: Bytes::from_static(b"put"),
            };
            let bytes = command.encode();
            assert_eq!(LogCommand::decode(bytes.clone()).unwrap(), command);
            for cut in 0..COMMAND_HEADER_BYTES as usize {
                assert!(LogCommand::decode(bytes.slice(..cut)).is_err());
            }
        }
    }
}
