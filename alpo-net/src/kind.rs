//! The one-byte vocabularies of the wire format that the other modules name: what a frame
//! carries ([`FrameKind`]) and what a connection carries ([`Role`]).
//!
//! They sit below `frame`, `handshake` and `error` (which all name them) so that none of those
//! modules imports another in a circle. Invariant: each number is part of the wire format
//! (docs/formats.md) and is never reused.

/// What a frame carries. The numbers are part of the wire format.
///
/// Ranges: `0x01..=0x0f` connection control (both listeners), `0x10..=0x1f` peer messages (peer
/// connections only), `0x20..=0x2f` the client protocol (client connections only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum FrameKind {
    /// The dialler's handshake: who it is and whom it wants.
    Hello = 0x01,
    /// The listener's answer to an accepted `Hello`.
    Welcome = 0x02,
    /// The sender is closing the connection; the body says why.
    Close = 0x03,
    /// An `alpo_core::VoteRequest` message.
    VoteRequest = 0x10,
    /// An `alpo_core::VoteReply` message.
    VoteReply = 0x11,
    /// An `alpo_core::Append` message.
    Append = 0x12,
    /// An `alpo_core::AppendReply` message.
    AppendReply = 0x13,
    /// An `alpo_core::InstallSnapshot` message (a chunk of a snapshot file).
    InstallSnapshot = 0x14,
    /// An `alpo_core::SnapshotReply` message.
    SnapshotReply = 0x15,
    /// An `alpo_core::MessageBody::TimeoutNow` message (leadership transfer, rule T4).
    TimeoutNow = 0x16,
    /// An `alpo_core::ReadIndexRequest` message (a follower read, rule Q2; version 3).
    ReadIndexRequest = 0x17,
    /// An `alpo_core::ReadIndexReply` message (rule Q2; version 3).
    ReadIndexReply = 0x18,
    /// An `alpo_core::FetchEntry` message (issue 13, rule F6; version 5).
    FetchEntry = 0x19,
    /// An `alpo_core::FetchReply` message (issue 13, rules F6, F7; version 5).
    FetchReply = 0x1A,
    /// A client's request; the body is opaque to alpo-net.
    ClientRequest = 0x20,
    /// A server's response to a client; the body is opaque to alpo-net.
    ClientResponse = 0x21,
}

impl FrameKind {
    /// The kind a wire byte stands for, if any.
    #[must_use]
    pub fn from_u8(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            0x01 => FrameKind::Hello,
            0x02 => FrameKind::Welcome,
            0x03 => FrameKind::Close,
            0x10 => FrameKind::VoteRequest,
            0x11 => FrameKind::VoteReply,
            0x12 => FrameKind::Append,
            0x13 => FrameKind::AppendReply,
            0x14 => FrameKind::InstallSnapshot,
            0x15 => FrameKind::SnapshotReply,
            0x16 => FrameKind::TimeoutNow,
            0x17 => FrameKind::ReadIndexRequest,
            0x18 => FrameKind::ReadIndexReply,
            0x19 => FrameKind::FetchEntry,
            0x1A => FrameKind::FetchReply,
            0x20 => FrameKind::ClientRequest,
            0x21 => FrameKind::ClientResponse,
            _ => return None,
        })
    }

    /// Whether this kind carries an `alpo_core::Message`.
    #[must_use]
    pub fn is_peer_message(self) -> bool {
        (0x10..=0x1f).contains(&(self as u8))
    }
}

/// What a connection carries, declared in the `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Role {
    /// A server dialling a server: peer messages flow from dialler to listener.
    Peer = 1,
    /// A client dialling a server's client listener: requests one way, responses the other.
    Client = 2,
}
