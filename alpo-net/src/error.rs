//! Errors: why a connection was closed ([`CloseReason`], one byte on the wire), what exactly was
//! wrong with what a peer sent ([`Rejection`], expected versus found), and the crate's [`Error`].
//!
//! Invariant: every way a connection can be refused or closed for bad input has exactly one
//! `CloseReason`, and every `Rejection` maps to one; nothing that arrives from the network panics,
//! it becomes a `Rejection` instead.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use alpo_core::{ClusterId, NodeId};

use crate::kind::{FrameKind, Role};

/// Why a connection was closed, as carried in a `Close` frame (one byte) and counted.
///
/// The numbers are part of the wire format; never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum CloseReason {
    /// The frame did not start with the magic bytes: not ALPO, or the stream lost sync.
    BadMagic = 1,
    /// The header's checksum did not match its bytes.
    HeaderChecksum = 2,
    /// The frame's protocol version is one this build cannot speak.
    VersionUnsupported = 3,
    /// The header's reserved byte was not zero.
    ReservedNotZero = 4,
    /// The announced body length exceeds `FRAME_BODY_BYTES_MAX`.
    FrameTooLarge = 5,
    /// The frame kind is not one this version defines.
    UnknownKind = 6,
    /// The frame carried another cluster's id.
    WrongClusterId = 7,
    /// The body's checksum did not match its bytes.
    BodyChecksum = 8,
    /// The connection ended in the middle of a frame.
    TruncatedFrame = 9,
    /// The first frame was not a `Hello`.
    HandshakeMissing = 10,
    /// The `Hello` named a role this listener does not serve (a client on the peer listener, or
    /// a peer on the client listener).
    WrongRole = 11,
    /// A frame kind that is not allowed on this connection (a peer message on a client
    /// connection, a second `Hello`, a client request on a peer connection, …).
    KindNotAllowed = 12,
    /// The `Hello` came from a node id that is not in this node's peer list.
    UnknownNode = 13,
    /// The `Hello` was meant for another node id than this one.
    WrongReceiver = 14,
    /// A frame's body did not decode as its kind says.
    MalformedBody = 15,
    /// No `Hello` (or `Welcome`) arrived in time.
    HandshakeTimeout = 16,
    /// The listener already serves its maximum number of connections.
    TooManyConnections = 17,
    /// The listener is shutting down.
    ShuttingDown = 18,
    /// Issue 16: plain ALPO arrived on a port that requires TLS.
    PlainOnTlsPort = 19,
    /// Issue 16: a TLS handshake arrived on a port that speaks plain ALPO.
    TlsOnPlainPort = 20,
    /// Issue 16: the certificate was not issued by the cluster CA.
    CertificateUnknownCa = 21,
    /// Issue 16: the certificate does not name the node id its holder claims (or dialled).
    CertificateWrongNode = 22,
    /// Issue 16: the certificate has expired (or is not valid yet).
    CertificateExpired = 23,
    /// Issue 16: no certificate was presented where one is required.
    CertificateMissing = 24,
    /// Issue 16: the TLS handshake failed for another reason (named in the log).
    TlsHandshake = 25,
}

/// What exactly was wrong with what a peer sent, with expected and found values.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rejection {
    /// The first four bytes of a frame were not the magic.
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// The header checksum did not match.
    HeaderChecksum {
        /// The checksum computed over the header bytes.
        expected: u32,
        /// The checksum the header carried.
        found: u32,
    },
    /// The protocol version is not ours.
    VersionUnsupported {
        /// The version this build speaks.
        expected: u16,
        /// The version the frame carried.
        found: u16,
    },
    /// The reserved header byte was not zero.
    ReservedNotZero {
        /// The byte found.
        found: u8,
    },
    /// The body length exceeds the maximum.
    FrameTooLarge {
        /// The announced body length.
        length: u32,
        /// `FRAME_BODY_BYTES_MAX`.
        max: u32,
    },
    /// The frame kind is unknown.
    UnknownKind {
        /// The kind byte found.
        found: u8,
    },
    /// The frame's cluster id is not ours.
    WrongClusterId {
        /// Our cluster id.
        expected: ClusterId,
        /// The cluster id the frame carried.
        found: ClusterId,
    },
    /// The body checksum did not match.
    BodyChecksum {
        /// The checksum computed over the body.
        expected: u32,
        /// The checksum the header carried.
        found: u32,
    },
    /// The stream ended inside a frame.
    TruncatedFrame {
        /// Bytes of the frame that had arrived.
        received: u64,
    },
    /// The first frame was not a `Hello`.
    HandshakeMissing {
        /// The kind that arrived instead.
        found: FrameKind,
    },
    /// The `Hello` named the wrong role for this listener.
    WrongRole {
        /// The role this listener serves.
        expected: Role,
        /// The role the `Hello` named.
        found: Role,
    },
    /// A frame kind not allowed on this connection.
    KindNotAllowed {
        /// The kind that arrived.
        found: FrameKind,
        /// What this connection carries.
        connection: Role,
    },
    /// The `Hello` came from a node that is not a configured peer.
    UnknownNode {
        /// The sender id the `Hello` carried.
        found: NodeId,
    },
    /// The `Hello` was addressed to another node.
    WrongReceiver {
        /// This node's id.
        expected: NodeId,
        /// The receiver id the `Hello` carried.
        found: NodeId,
    },
    /// A body did not decode.
    MalformedBody {
        /// The frame's kind.
        kind: FrameKind,
        /// Byte offset in the body where decoding failed.
        offset: u32,
        /// What was wrong there.
        problem: &'static str,
    },
    /// The handshake did not complete in time.
    HandshakeTimeout {
        /// How long we waited, in milliseconds.
        waited_ms: u64,
    },
    /// The listener is full.
    TooManyConnections {
        /// The connection limit.
        max: u64,
    },
    /// The listener is shutting down.
    ShuttingDown,
    /// Plain ALPO on a TLS port.
    PlainOnTlsPort,
    /// A TLS handshake on a plain port.
    TlsOnPlainPort,
    /// The certificate was not issued by the cluster CA.
    CertificateUnknownCa {
        /// What the TLS library said.
        detail: String,
    },
    /// The certificate does not name the node id claimed (or dialled).
    CertificateWrongNode {
        /// Which name was expected, or what the TLS library said.
        detail: String,
    },
    /// The certificate has expired or is not valid yet.
    CertificateExpired {
        /// What the TLS library said.
        detail: String,
    },
    /// No certificate where one is required.
    CertificateMissing,
    /// Another TLS handshake failure.
    TlsHandshake {
        /// What the TLS library said.
        detail: String,
    },
}

/// An error from alpo-net: it names the peer address and what was expected versus found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not bind its address.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// A configuration value is invalid.
    Config {
        /// The field that is wrong.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// A socket operation with a peer failed.
    Io {
        /// The peer's address.
        peer: SocketAddr,
        /// What was being done (`"connect"`, `"write"`, `"read"`, …).
        operation: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
    /// The peer sent something invalid; we closed the connection.
    Rejected {
        /// The peer's address.
        peer: SocketAddr,
        /// What was wrong.
        rejection: Rejection,
    },
    /// The peer closed the connection, with the reason from its `Close` frame if it sent one.
    Closed {
        /// The peer's address.
        peer: SocketAddr,
        /// The reason the peer gave, if any (an unknown reason byte reads as `None`).
        reason: Option<CloseReason>,
    },
    /// Nothing arrived from the peer in time.
    Timeout {
        /// The peer's address.
        peer: SocketAddr,
        /// How long we waited, in milliseconds.
        waited_ms: u64,
    },
    /// A body is larger than one frame may carry.
    BodyTooLarge {
        /// The body's size in bytes.
        bytes: u64,
        /// `FRAME_BODY_BYTES_MAX`.
        max: u64,
    },
    /// A thread could not be started.
    Spawn {
        /// The operating system's error.
        source: io::Error,
    },
    /// A TLS file (CA, certificate or key) is missing or unusable.
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The inbox's readiness poll (epoll) failed.
    Poll {
        /// What was being done (`"create"`, `"wait"`, …).
        operation: &'static str,
        /// The operating system's error.
        source: io::Error,
    },
}

impl CloseReason {
    /// Every reason, in wire order.
    pub const ALL: [CloseReason; 25] = [
        CloseReason::BadMagic,
        CloseReason::HeaderChecksum,
        CloseReason::VersionUnsupported,
        CloseReason::ReservedNotZero,
        CloseReason::FrameTooLarge,
        CloseReason::UnknownKind,
        CloseReason::WrongClusterId,
        CloseReason::BodyChecksum,
        CloseReason::TruncatedFrame,
        CloseReason::HandshakeMissing,
        CloseReason::WrongRole,
        CloseReason::KindNotAllowed,
        CloseReason::UnknownNode,
        CloseReason::WrongReceiver,
        CloseReason::MalformedBody,
        CloseReason::HandshakeTimeout,
        CloseReason::TooManyConnections,
        CloseReason::ShuttingDown,
        CloseReason::PlainOnTlsPort,
        CloseReason::TlsOnPlainPort,
        CloseReason::CertificateUnknownCa,
        CloseReason::CertificateWrongNode,
        CloseReason::CertificateExpired,
        CloseReason::CertificateMissing,
        CloseReason::TlsHandshake,
    ];

    /// The reason a wire byte stands for, if any.
    #[must_use]
    pub fn from_u8(byte: u8) -> Option<CloseReason> {
        CloseReason::ALL
            .into_iter()
            .find(|reason| *reason as u8 == byte)
    }

    /// The reason's name in snake case, as logged.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::BadMagic => "bad_magic",
            CloseReason::HeaderChecksum => "header_checksum",
            CloseReason::VersionUnsupported => "version_unsupported",
            CloseReason::ReservedNotZero => "reserved_not_zero",
            CloseReason::FrameTooLarge => "frame_too_large",
            CloseReason::UnknownKind => "unknown_kind",
            CloseReason::WrongClusterId => "wrong_cluster_id",
            CloseReason::BodyChecksum => "body_checksum",
            CloseReason::TruncatedFrame => "truncated_frame",
            CloseReason::HandshakeMissing => "handshake_missing",
            CloseReason::WrongRole => "wrong_role",
            CloseReason::KindNotAllowed => "kind_not_allowed",
            CloseReason::UnknownNode => "unknown_node",
            CloseReason::WrongReceiver => "wrong_receiver",
            CloseReason::MalformedBody => "malformed_body",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::TooManyConnections => "too_many_connections",
            CloseReason::ShuttingDown => "shutting_down",
            CloseReason::PlainOnTlsPort => "plain_on_tls_port",
            CloseReason::TlsOnPlainPort => "tls_on_plain_port",
            CloseReason::CertificateUnknownCa => "certificate_unknown_ca",
            CloseReason::CertificateWrongNode => "certificate_wrong_node",
            CloseReason::CertificateExpired => "certificate_expired",
            CloseReason::CertificateMissing => "certificate_missing",
            CloseReason::TlsHandshake => "tls_handshake",
        }
    }
}

impl Rejection {
    /// The close reason this rejection is reported under.
    #[must_use]
    pub fn reason(&self) -> CloseReason {
        match self {
            Rejection::BadMagic { .. } => CloseReason::BadMagic,
            Rejection::HeaderChecksum { .. } => CloseReason::HeaderChecksum,
            Rejection::VersionUnsupported { .. } => CloseReason::VersionUnsupported,
            Rejection::ReservedNotZero { .. } => CloseReason::ReservedNotZero,
            Rejection::FrameTooLarge { .. } => CloseReason::FrameTooLarge,
            Rejection::UnknownKind { .. } => CloseReason::UnknownKind,
            Rejection::WrongClusterId { .. } => CloseReason::WrongClusterId,
            Rejection::BodyChecksum { .. } => CloseReason::BodyChecksum,
            Rejection::TruncatedFrame { .. } => CloseReason::TruncatedFrame,
            Rejection::HandshakeMissing { .. } => CloseReason::HandshakeMissing,
            Rejection::WrongRole { .. } => CloseReason::WrongRole,
            Rejection::KindNotAllowed { .. } => CloseReason::KindNotAllowed,
            Rejection::UnknownNode { .. } => CloseReason::UnknownNode,
            Rejection::WrongReceiver { .. } => CloseReason::WrongReceiver,
            Rejection::MalformedBody { .. } => CloseReason::MalformedBody,
            Rejection::HandshakeTimeout { .. } => CloseReason::HandshakeTimeout,
            Rejection::TooManyConnections { .. } => CloseReason::TooManyConnections,
            Rejection::ShuttingDown => CloseReason::ShuttingDown,
            Rejection::PlainOnTlsPort => CloseReason::PlainOnTlsPort,
            Rejection::TlsOnPlainPort => CloseReason::TlsOnPlainPort,
            Rejection::CertificateUnknownCa { .. } => CloseReason::CertificateUnknownCa,
            Rejection::CertificateWrongNode { .. } => CloseReason::CertificateWrongNode,
            Rejection::CertificateExpired { .. } => CloseReason::CertificateExpired,
            Rejection::CertificateMissing => CloseReason::CertificateMissing,
            Rejection::TlsHandshake { .. } => CloseReason::TlsHandshake,
        }
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.reason();
        match self {
            Rejection::BadMagic { found } => write!(f, "{reason}: found bytes {found:02x?}"),
            Rejection::HeaderChecksum { expected, found }
            | Rejection::BodyChecksum { expected, found } => {
                write!(
                    f,
                    "{reason}: expected {expected:#010x}, found {found:#010x}"
                )
            }
            Rejection::VersionUnsupported { expected, found } => {
                write!(f, "{reason}: expected version {expected}, found {found}")
            }
            Rejection::ReservedNotZero { found } => write!(f, "{reason}: found {found:#04x}"),
            Rejection::FrameTooLarge { length, max } => {
                write!(
                    f,
                    "{reason}: body length {length} exceeds the maximum {max}"
                )
            }
            Rejection::UnknownKind { found } => write!(f, "{reason}: found kind {found:#04x}"),
            Rejection::WrongClusterId { expected, found } => {
                write!(f, "{reason}: expected cluster {expected}, found {found}")
            }
            Rejection::TruncatedFrame { received } => {
                write!(
                    f,
                    "{reason}: stream ended after {received} bytes of a frame"
                )
            }
            Rejection::HandshakeMissing { found } => {
                write!(f, "{reason}: expected hello, found {found:?}")
            }
            Rejection::WrongRole { expected, found } => {
                write!(f, "{reason}: expected role {expected:?}, found {found:?}")
            }
            Rejection::KindNotAllowed { found, connection } => {
                write!(f, "{reason}: {found:?} on a {connection:?} connection")
            }
            Rejection::UnknownNode { found } => write!(f, "{reason}: node {found} is not a peer"),
            Rejection::WrongReceiver { expected, found } => {
                write!(f, "{reason}: expected node {expected}, found {found}")
            }
            Rejection::MalformedBody {
                kind,
                offset,
                problem,
            } => write!(f, "{reason}: {kind:?} body at offset {offset}: {problem}"),
            Rejection::HandshakeTimeout { waited_ms } => {
                write!(f, "{reason}: no handshake after {waited_ms} ms")
            }
            Rejection::TooManyConnections { max } => {
                write!(f, "{reason}: already serving {max} connections")
            }
            Rejection::ShuttingDown | Rejection::CertificateMissing => write!(f, "{reason}"),
            Rejection::PlainOnTlsPort => {
                write!(f, "{reason}: plain ALPO on a port that requires TLS")
            }
            Rejection::TlsOnPlainPort => {
                write!(
                    f,
                    "{reason}: a TLS handshake on a port that speaks plain ALPO"
                )
            }
            Rejection::CertificateUnknownCa { detail }
            | Rejection::CertificateWrongNode { detail }
            | Rejection::CertificateExpired { detail }
            | Rejection::TlsHandshake { detail } => write!(f, "{reason}: {detail}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { addr, .. } => write!(f, "cannot listen on {addr}"),
            Error::Config { field, problem } => {
                write!(f, "invalid configuration: {field}: {problem}")
            }
            Error::Io {
                peer, operation, ..
            } => write!(f, "{operation} with peer {peer} failed"),
            Error::Rejected { peer, rejection } => {
                write!(f, "closed connection with peer {peer}: {rejection}")
            }
            Error::Closed {
                peer,
                reason: Some(reason),
            } => write!(f, "peer {peer} closed the connection: {reason}"),
            Error::Closed { peer, reason: None } => {
                write!(f, "peer {peer} closed the connection")
            }
            Error::Timeout { peer, waited_ms } => {
                write!(f, "nothing from peer {peer} after {waited_ms} ms")
            }
            Error::BodyTooLarge { bytes, max } => {
                write!(
                    f,
                    "body of {bytes} bytes exceeds the frame maximum of {max} bytes"
                )
            }
            Error::Spawn { .. } => write!(f, "cannot start a thread"),
            Error::Tls { path, problem } => write!(f, "TLS file {}: {problem}", path.display()),
            Error::Poll { operation, .. } => write!(f, "inbox poll ({operation}) failed"),
        }
    }
}

/// The workspace's convention (docs/ARCHITECTURE.md, Errors): `Display` describes this level
/// only and the operating system's error is the `source()`, so `{:#}` prints each cause once. A
/// [`Rejection`] is this crate's own account of the same failure, so `Rejected` prints it and
/// returns no source.
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Bind { source, .. }
            | Error::Io { source, .. }
            | Error::Spawn { source }
            | Error::Poll { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `{:#}` prints in a binary (anyhow itself, a dev-dependency): the error, then each
    /// `source()`, `": "` between them.
    fn with_causes(error: impl std::error::Error + Send + Sync + 'static) -> String {
        format!("{:#}", anyhow::Error::new(error))
    }

    #[test]
    fn a_chain_prints_each_cause_once() {
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let bind = Error::Bind {
            addr,
            source: io::Error::other("address in use"),
        };
        assert_eq!(bind.to_string(), "cannot listen on 127.0.0.1:7001");
        assert_eq!(
            with_causes(bind),
            "cannot listen on 127.0.0.1:7001: address in use"
        );
        let io = Error::Io {
            peer: addr,
            operation: "connect",
            source: io::Error::other("connection refused"),
        };
        let text = with_causes(io);
        assert_eq!(
            text,
            "connect with peer 127.0.0.1:7001 failed: connection refused"
        );
        // A rejection is this crate's own account of the failure: printed once, no source.
        let rejected = Error::Rejected {
            peer: addr,
            rejection: Rejection::UnknownKind { found: 0x7f },
        };
        assert!(std::error::Error::source(&rejected).is_none());
        let text = with_causes(rejected);
        assert_eq!(text.matches("unknown_kind").count(), 1, "{text}");
    }

    #[test]
    fn close_reason_bytes_round_trip_and_are_distinct() {
        for (position, reason) in CloseReason::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(reason as u8), position + 1);
            assert_eq!(CloseReason::from_u8(reason as u8), Some(reason));
        }
        assert_eq!(CloseReason::from_u8(0), None);
        assert_eq!(CloseReason::from_u8(200), None);
    }
}
