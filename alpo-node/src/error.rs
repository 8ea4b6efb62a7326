//! The one error type of alpo-node: configuration, I/O, storage, network and client failures.
//!
//! Messages are lower case without a trailing period and name what is wrong and where: the field
//! of a configuration, the file of a storage failure, the address of a peer or node.

use std::fmt;

use crate::client_protocol::ErrorCode;
use crate::wire::DecodeError;

/// What went wrong in a node or a client.
#[derive(Debug)]
pub enum Error {
    /// A configuration value is invalid.
    Config {
        /// The field, as the operator wrote it (`peers[1].id`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An operating-system call failed.
    Io {
        /// What the node was doing, naming the file or address.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The log failed. A failed fsync is fatal: the node stops (see docs/operations.md).
    Log(alpo_log::Error),
    /// The transport failed to start or to connect.
    Net(alpo_net::Error),
    /// A message could not be decoded.
    Decode(DecodeError),
    /// Data read from disk is not what this node writes.
    Corrupt {
        /// What is wrong and where (file, entry).
        what: String,
    },
    /// No node answered in time.
    Timeout {
        /// What the client was waiting for.
        what: String,
    },
    /// No node could serve the request: every endpoint was unreachable or had no leader.
    Unavailable {
        /// The endpoints tried and what each answered.
        detail: String,
    },
    /// A node refused the request.
    Refused {
        /// The kind of refusal.
        code: ErrorCode,
        /// The node's reason.
        reason: String,
    },
    /// A node speaks another version of the client protocol.
    ProtocolVersion {
        /// The node's client address.
        endpoint: String,
        /// The version this client speaks.
        client: u8,
        /// The version the node answered in.
        node: u8,
    },
    /// A node answered with something that does not answer the request.
    UnexpectedResponse {
        /// The endpoint that answered.
        endpoint: String,
        /// What it answered.
        response: String,
    },
    /// The node stopped.
    Stopped {
        /// Why it stopped.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { field, problem } => {
                write!(f, "invalid configuration: {field}: {problem}")
            }
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Log(error) => write!(f, "log: {error}"),
            Error::Net(error) => write!(f, "network: {error}"),
            Error::Decode(error) => write!(f, "{error}"),
            Error::Corrupt { what } => write!(f, "corrupt data: {what}"),
            Error::Timeout { what } => write!(f, "timed out {what}"),
            Error::Unavailable { detail } => write!(f, "cluster unavailable: {detail}"),
            Error::Refused { code, reason } => write!(f, "request refused ({code:?}): {reason}"),
            Error::ProtocolVersion {
                endpoint,
                client,
                node,
            } => write!(
                f,
                "{endpoint} speaks client protocol version {node}; this client speaks version \
                 {client}"
            ),
            Error::UnexpectedResponse { endpoint, response } => {
                write!(f, "unexpected response from {endpoint}: {response}")
            }
            Error::Stopped { reason } => write!(f, "node stopped: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Log(error) => Some(error),
            Error::Net(error) => Some(error),
            Error::Decode(error) => Some(error),
            _ => None,
        }
    }
}

impl From<alpo_log::Error> for Error {
    fn from(error: alpo_log::Error) -> Error {
        Error::Log(error)
    }
}

impl From<alpo_net::Error> for Error {
    fn from(error: alpo_net::Error) -> Error {
        Error::Net(error)
    }
}

impl From<DecodeError> for Error {
    fn from(error: DecodeError) -> Error {
        Error::Decode(error)
    }
}
