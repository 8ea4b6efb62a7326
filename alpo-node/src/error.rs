//! The one error type of alpo-node: configuration, I/O, storage, network and client failures.
//!
//! Messages are lower case without a trailing period and name what is wrong and where: the field
//! of a configuration, the file of a storage failure, the address of a peer or node.
//!
//! Convention (the same in every crate, docs/ARCHITECTURE.md "Errors"): `Display` describes this
//! level only; an error from a lower layer (an `io::Error`, alpo-log's or alpo-net's `Error`, the
//! error that stopped the node) is returned by `source()` and never printed by this level, so
//! `{:#}` (anyhow) or a walk over `source()` prints each cause exactly once. A variant that only
//! wraps another error without adding context (`Log`, `Net`, `Decode`, `Failed`) is transparent:
//! it displays the wrapped error and forwards its `source()`, so the variant can be matched on
//! and the text is the same as the wrapped error's.

use std::fmt;
use std::sync::Arc;

use crate::client_protocol::ErrorCode;
use crate::wire::DecodeError;

/// What went wrong in a node or a client.
#[derive(Debug)]
#[non_exhaustive]
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
    /// The node stopped, or a thread it needs is gone.
    Stopped {
        /// Why it stopped.
        reason: String,
    },
    /// A fatal error ended the node's event loop: a failed log write or sync (never retried,
    /// docs/operations.md), a failed hard-state save, a broken inbox. `Server::stop` returns it
    /// and `Server::failure` shares it. Transparent: it displays the error that ended the loop
    /// (match on it, e.g. [`Error::Log`] whose `is_fatal()` is true for a failed sync).
    Failed(Arc<Error>),
}

/// Displays an error followed by each of its causes, `": "` between them: what anyhow's `{:#}`
/// prints, for a message built inside this crate (which has no anyhow).
#[derive(Clone, Copy, Debug)]
pub(crate) struct WithCauses<'a>(pub(crate) &'a (dyn std::error::Error + 'static));

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config { field, problem } => {
                write!(f, "invalid configuration: {field}: {problem}")
            }
            Error::Io { what, .. } => write!(f, "{what}"),
            Error::Log(error) => error.fmt(f),
            Error::Net(error) => error.fmt(f),
            Error::Decode(error) => error.fmt(f),
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
            Error::Failed(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            // Transparent wrappers: their Display is the wrapped error's, so is their source.
            Error::Log(error) => error.source(),
            Error::Net(error) => error.source(),
            Error::Decode(error) => error.source(),
            Error::Failed(error) => error.source(),
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

impl fmt::Display for WithCauses<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        // Bounded by the chain's length: each error owns its source, so the chain ends.
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    fn count(text: &str, part: &str) -> usize {
        text.matches(part).count()
    }

    #[test]
    fn a_nested_chain_prints_each_cause_once() {
        let sync = alpo_log::Error::SyncFailed {
            path: "/data/0000000000000001.alpolog".into(),
            source: io::Error::other("disk on fire"),
        };
        let error = Error::Failed(Arc::new(Error::Log(sync)));
        let text = WithCauses(&error).to_string();
        assert_eq!(
            text,
            "fatal: sync of /data/0000000000000001.alpolog failed: disk on fire"
        );
        assert_eq!(count(&text, "0000000000000001.alpolog"), 1, "{text}");
        assert_eq!(count(&text, "disk on fire"), 1, "{text}");
    }

    #[test]
    fn a_context_variant_names_its_cause_only_through_source() {
        let error = Error::Io {
            what: "reading config file /etc/alpo.toml".into(),
            source: io::Error::other("permission denied"),
        };
        assert_eq!(error.to_string(), "reading config file /etc/alpo.toml");
        let text = WithCauses(&error).to_string();
        assert_eq!(
            text,
            "reading config file /etc/alpo.toml: permission denied"
        );
        let net = Error::Net(alpo_net::Error::Spawn {
            source: io::Error::other("no threads left"),
        });
        let text = WithCauses(&net).to_string();
        assert_eq!(text, "cannot start a thread: no threads left");
    }
}
