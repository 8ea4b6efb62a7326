//! The handshake: the dialler's `Hello` (its cluster id and node id in the frame header, its
//! role and the node it wants in the body), the listener's `Welcome`, and the `Close` frame that
//! carries a [`CloseReason`]. Pure encoding and checking; the socket work is in `conn`.
//!
//! Invariants: a connection carries nothing before the listener has accepted a `Hello` whose
//! cluster id, version (both checked by the frame decoder), role, sender and receiver are right;
//! each refusal has its own `CloseReason`.

use alpo_core::NodeId;

use crate::error::{CloseReason, Rejection};
use crate::frame::{CLIENT_SENDER_ID, Frame, FrameKind};
pub use crate::kind::Role;

/// The receiver id a client puts in its `Hello`: any server will do.
pub const ANY_RECEIVER: u64 = u64::MAX;

/// Bytes in a `Hello` body: role, seven reserved bytes, receiver.
pub const HELLO_BODY_BYTES: usize = 16;

/// A decoded `Hello`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The dialler's role.
    pub role: Role,
    /// The dialler's node id (`CLIENT_SENDER_ID` for a client), from the frame header.
    pub sender: u64,
    /// The node the dialler wants (`ANY_RECEIVER` for a client that does not care).
    pub receiver: u64,
}

/// What a listener accepts.
#[derive(Clone, Copy, Debug)]
pub struct HelloPolicy<'a> {
    /// The role this listener serves.
    pub role: Role,
    /// This node's id.
    pub node_id: NodeId,
    /// The peers allowed to dial in (ignored for clients).
    pub peers: &'a [NodeId],
}

impl Hello {
    /// The body of this `Hello`.
    #[must_use]
    pub fn encode_body(&self) -> [u8; HELLO_BODY_BYTES] {
        let mut body = [0; HELLO_BODY_BYTES];
        body[0] = self.role as u8;
        body[8..16].copy_from_slice(&self.receiver.to_le_bytes());
        body
    }
}

/// Checks the first frame of an inbound connection against the listener's policy.
pub fn check_hello(frame: &Frame, policy: HelloPolicy<'_>) -> Result<Hello, Rejection> {
    if frame.header.kind != FrameKind::Hello {
        return Err(Rejection::HandshakeMissing {
            found: frame.header.kind,
        });
    }
    let hello = decode_hello(frame)?;
    if hello.role != policy.role {
        return Err(Rejection::WrongRole {
            expected: policy.role,
            found: hello.role,
        });
    }
    match hello.role {
        Role::Peer => {
            if !policy.peers.contains(&NodeId(hello.sender)) || hello.sender == policy.node_id.0 {
                return Err(Rejection::UnknownNode {
                    found: NodeId(hello.sender),
                });
            }
            if hello.receiver != policy.node_id.0 {
                return Err(wrong_receiver(policy.node_id, hello.receiver));
            }
        }
        Role::Client => {
            if hello.sender != CLIENT_SENDER_ID {
                return Err(malformed(
                    0,
                    "a client hello must carry the client sender id",
                ));
            }
            if hello.receiver != ANY_RECEIVER && hello.receiver != policy.node_id.0 {
                return Err(wrong_receiver(policy.node_id, hello.receiver));
            }
        }
    }
    Ok(hello)
}

/// Decodes a `Hello` frame's body.
pub fn decode_hello(frame: &Frame) -> Result<Hello, Rejection> {
    let body = &frame.body[..];
    if body.len() != HELLO_BODY_BYTES {
        return Err(malformed(0, "a hello body is 16 bytes"));
    }
    let role = match body[0] {
        1 => Role::Peer,
        2 => Role::Client,
        _ => return Err(malformed(0, "unknown role")),
    };
    if body[1..8].iter().any(|byte| *byte != 0) {
        return Err(malformed(1, "reserved bytes are not zero"));
    }
    let Some(receiver) = body.last_chunk::<8>() else {
        return Err(malformed(8, "a hello body is 16 bytes"));
    };
    let receiver = u64::from_le_bytes(*receiver);
    Ok(Hello {
        role,
        sender: frame.header.sender,
        receiver,
    })
}

/// The body of a `Close` frame.
#[must_use]
pub fn encode_close_body(reason: CloseReason) -> [u8; 1] {
    [reason as u8]
}

/// The reason a `Close` frame gives; `None` if the body is not one known reason byte.
#[must_use]
pub fn decode_close(frame: &Frame) -> Option<CloseReason> {
    match frame.body[..] {
        [byte] => CloseReason::from_u8(byte),
        _ => None,
    }
}

fn wrong_receiver(expected: NodeId, found: u64) -> Rejection {
    Rejection::WrongReceiver {
        expected,
        found: NodeId(found),
    }
}

fn malformed(offset: u32, problem: &'static str) -> Rejection {
    Rejection::MalformedBody {
        kind: FrameKind::Hello,
        offset,
        problem,
    }
}

#[cfg(test)]
mod tests {
    use alpo_core::ClusterId;
    use bytes::Bytes;

    use super::*;
    use crate::frame::FrameHeader;

    fn hello_frame(sender: u64, body: &[u8]) -> Frame {
        Frame {
            header: FrameHeader {
                kind: FrameKind::Hello,
                cluster_id: ClusterId(1),
                sender,
                body_bytes: 16,
                body_checksum: 0,
            },
            body: Bytes::copy_from_slice(body),
        }
    }

    const PEERS: [NodeId; 2] = [NodeId(1), NodeId(2)];

    fn policy(role: Role) -> HelloPolicy<'static> {
        HelloPolicy {
            role,
            node_id: NodeId(1),
            peers: &PEERS,
        }
    }

    #[test]
    fn peer_hello_checks_role_sender_and_receiver() {
        let hello = Hello {
            role: Role::Peer,
            sender: 2,
            receiver: 1,
        };
        let frame = hello_frame(2, &hello.encode_body());
        assert_eq!(check_hello(&frame, policy(Role::Peer)), Ok(hello));
        let expected = Rejection::WrongRole {
            expected: Role::Client,
            found: Role::Peer,
        };
        assert_eq!(check_hello(&frame, policy(Role::Client)), Err(expected));

        let frame = hello_frame(9, &hello.encode_body());
        let expected = Rejection::UnknownNode { found: NodeId(9) };
        assert_eq!(check_hello(&frame, policy(Role::Peer)), Err(expected));

        let other = Hello {
            receiver: 3,
            ..hello
        };
        let frame = hello_frame(2, &other.encode_body());
        let expected = Rejection::WrongReceiver {
            expected: NodeId(1),
            found: NodeId(3),
        };
        assert_eq!(check_hello(&frame, policy(Role::Peer)), Err(expected));
    }

    #[test]
    fn client_hello_and_malformed_bodies() {
        let hello = Hello {
            role: Role::Client,
            sender: CLIENT_SENDER_ID,
            receiver: ANY_RECEIVER,
        };
        let frame = hello_frame(CLIENT_SENDER_ID, &hello.encode_body());
        assert_eq!(check_hello(&frame, policy(Role::Client)), Ok(hello));
        let mut body = hello.encode_body();
        body[3] = 1;
        let frame = hello_frame(CLIENT_SENDER_ID, &body);
        let error = check_hello(&frame, policy(Role::Client)).unwrap_err();
        assert_eq!(error.reason(), CloseReason::MalformedBody);
        let frame = hello_frame(CLIENT_SENDER_ID, &body[..3]);
        let error = check_hello(&frame, policy(Role::Client)).unwrap_err();
        assert_eq!(error.reason(), CloseReason::MalformedBody);
    }
}
