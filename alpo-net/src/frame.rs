//! Framing: the 36-byte frame header, the frame encoder, and [`FrameDecoder`], a pure struct fed
//! bytes (no socket) that yields whole, checksum-verified frames.
//!
//! Invariants: the decoder trusts nothing it has not checked, in this order: the magic, then the
//! header checksum (so a damaged length is never believed), then version, reserved byte and the
//! body length against `FRAME_BODY_BYTES_MAX` (before any space is reserved for the body), then
//! kind and cluster id, and finally the body checksum before a frame is handed out. A frame that
//! fails a check poisons the decoder: the stream is out of sync, and the connection must close.
//! The decoder never panics, whatever it is fed. Bodies are slices of one shared buffer
//! (`Bytes`), so entry payloads reach the node without another copy.

use alpo_core::ClusterId;
use bytes::{Buf, Bytes, BytesMut};

use crate::error::Rejection;
pub use crate::kind::FrameKind;
use crate::limits::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES};

/// The first four bytes of every frame: a byte with the high bit set (catches 7-bit channels),
/// `"AN"` (ALPO net) and a line feed (catches line-ending conversion).
pub const MAGIC: [u8; 4] = [0xA1, b'A', b'N', b'\n'];

/// The protocol version this build speaks; frames with another version are refused.
pub const PROTOCOL_VERSION: u16 = 5;

/// The sender id a client puts in its frames (clients have no node id).
pub const CLIENT_SENDER_ID: u64 = u64::MAX;

/// A frame header, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the body is.
    pub kind: FrameKind,
    /// The sender's cluster (equal to the decoder's, once checked).
    pub cluster_id: ClusterId,
    /// The sender's node id, or `CLIENT_SENDER_ID`.
    pub sender: u64,
    /// Body length in bytes, at most `FRAME_BODY_BYTES_MAX`.
    pub body_bytes: u32,
    /// CRC-32 (IEEE, as `crc32fast` computes it) of the body.
    pub body_checksum: u32,
}

/// A whole frame whose header and body checksums were verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub header: FrameHeader,
    /// The body, a slice of the decoder's buffer.
    pub body: Bytes,
}

/// Turns a byte stream into frames. Pure: feed it bytes, ask it for frames.
#[derive(Debug)]
pub struct FrameDecoder {
    cluster_id: ClusterId,
    buffer: BytesMut,
    header: Option<FrameHeader>,
    poisoned: Option<Rejection>,
}

/// Where a frame being encoded starts in an output buffer; see [`begin_frame`].
#[derive(Debug)]
#[must_use]
pub struct FrameStart(usize);

/// The frame would exceed `FRAME_BODY_BYTES_MAX`; the output was rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyTooLarge {
    /// The body's size in bytes.
    pub bytes: u64,
}

/// Starts a frame at the end of `out`: reserves the header, which [`finish_frame`] fills in
/// once the body has been appended after it.
pub fn begin_frame(out: &mut Vec<u8>) -> FrameStart {
    let start = out.len();
    out.resize(start + FRAME_HEADER_BYTES, 0);
    FrameStart(start)
}

/// Finishes the frame begun at `start`: everything appended to `out` since the header is the
/// body. Writes the header with both checksums; if the body is too large, removes the whole frame
/// from `out` and says so.
pub fn finish_frame(
    out: &mut Vec<u8>,
    start: FrameStart,
    kind: FrameKind,
    cluster_id: ClusterId,
    sender: u64,
) -> Result<(), BodyTooLarge> {
    let body_start = start.0 + FRAME_HEADER_BYTES;
    debug_assert!(body_start <= out.len());
    let body_bytes = out.len() - body_start;
    let Some(body_length) = u32::try_from(body_bytes)
        .ok()
        .filter(|length| *length <= FRAME_BODY_BYTES_MAX)
    else {
        out.truncate(start.0);
        return Err(BodyTooLarge {
            bytes: u64::try_from(body_bytes).unwrap_or(u64::MAX),
        });
    };
    let body_checksum = crc32fast::hash(&out[body_start..]);
    let header = &mut out[start.0..body_start];
    header[0..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    header[6] = kind as u8;
    header[7] = 0;
    header[8..16].copy_from_slice(&cluster_id.0.to_le_bytes());
    header[16..24].copy_from_slice(&sender.to_le_bytes());
    header[24..28].copy_from_slice(&body_length.to_le_bytes());
    header[28..32].copy_from_slice(&body_checksum.to_le_bytes());
    let header_checksum = crc32fast::hash(&header[0..32]);
    header[32..36].copy_from_slice(&header_checksum.to_le_bytes());
    Ok(())
}

/// Appends a whole frame with the given body to `out`.
pub fn encode_frame(
    out: &mut Vec<u8>,
    kind: FrameKind,
    cluster_id: ClusterId,
    sender: u64,
    body: &[u8],
) -> Result<(), BodyTooLarge> {
    let start = begin_frame(out);
    out.extend_from_slice(body);
    finish_frame(out, start, kind, cluster_id, sender)
}

/// Checks a frame header, in the order the module doc gives.
pub fn decode_header(
    bytes: &[u8; FRAME_HEADER_BYTES],
    cluster_id: ClusterId,
) -> Result<FrameHeader, Rejection> {
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(Rejection::BadMagic { found: magic });
    }
    let mut fields = &bytes[4..];
    let version = fields.get_u16_le();
    let kind_byte = fields.get_u8();
    let reserved = fields.get_u8();
    let found_cluster = ClusterId(fields.get_u64_le());
    let sender = fields.get_u64_le();
    let body_bytes = fields.get_u32_le();
    let body_checksum = fields.get_u32_le();
    let header_checksum = fields.get_u32_le();
    let computed = crc32fast::hash(&bytes[0..32]);
    if computed != header_checksum {
        return Err(Rejection::HeaderChecksum {
            expected: computed,
            found: header_checksum,
        });
    }
    if version != PROTOCOL_VERSION {
        return Err(Rejection::VersionUnsupported {
            expected: PROTOCOL_VERSION,
            found: version,
        });
    }
    if reserved != 0 {
        return Err(Rejection::ReservedNotZero { found: reserved });
    }
    if body_bytes > FRAME_BODY_BYTES_MAX {
        return Err(Rejection::FrameTooLarge {
            length: body_bytes,
            max: FRAME_BODY_BYTES_MAX,
        });
    }
    let kind = FrameKind::from_u8(kind_byte).ok_or(Rejection::UnknownKind { found: kind_byte })?;
    if found_cluster != cluster_id {
        return Err(Rejection::WrongClusterId {
            expected: cluster_id,
            found: found_cluster,
        });
    }
    Ok(FrameHeader {
        kind,
        cluster_id: found_cluster,
        sender,
        body_bytes,
        body_checksum,
    })
}

impl FrameDecoder {
    /// A decoder for frames of `cluster_id`; frames of other clusters are rejected.
    #[must_use]
    pub fn new(cluster_id: ClusterId) -> FrameDecoder {
        FrameDecoder {
            cluster_id,
            buffer: BytesMut::new(),
            header: None,
            poisoned: None,
        }
    }

    /// Appends bytes received from the stream.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.poisoned.is_none() {
            self.buffer.extend_from_slice(bytes);
        }
    }

    /// The next whole frame, `None` if more bytes are needed, or why the stream is bad. After an
    /// error, every later call returns the same error.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Rejection> {
        if let Some(rejection) = &self.poisoned {
            return Err(rejection.clone());
        }
        match self.next_frame_unpoisoned() {
            Ok(frame) => Ok(frame),
            Err(rejection) => {
                self.buffer = BytesMut::new();
                self.header = None;
                self.poisoned = Some(rejection.clone());
                Err(rejection)
            }
        }
    }

    /// Called when the stream ends: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), Rejection> {
        if let Some(rejection) = &self.poisoned {
            return Err(rejection.clone());
        }
        if self.buffer.is_empty() {
            Ok(())
        } else {
            Err(Rejection::TruncatedFrame {
                received: u64::try_from(self.buffer.len()).unwrap_or(u64::MAX),
            })
        }
    }

    /// The cluster whose frames this decoder accepts.
    #[must_use]
    pub fn cluster_id(&self) -> ClusterId {
        self.cluster_id
    }

    /// Bytes received but not yet handed out as frames.
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.len()
    }

    fn next_frame_unpoisoned(&mut self) -> Result<Option<Frame>, Rejection> {
        let header = match self.header {
            Some(header) => header,
            None => {
                let Some(bytes) = self.buffer.first_chunk::<FRAME_HEADER_BYTES>() else {
                    return Ok(None);
                };
                let header = decode_header(bytes, self.cluster_id)?;
                // The length is now checked against FRAME_BODY_BYTES_MAX: reserve for the body.
                let frame_bytes = FRAME_HEADER_BYTES + body_len(header)?;
                self.buffer
                    .reserve(frame_bytes.saturating_sub(self.buffer.len()));
                self.header = Some(header);
                header
            }
        };
        let frame_bytes = FRAME_HEADER_BYTES + body_len(header)?;
        if self.buffer.len() < frame_bytes {
            return Ok(None);
        }
        let mut frame = self.buffer.split_to(frame_bytes).freeze();
        let body = frame.split_off(FRAME_HEADER_BYTES);
        self.header = None;
        let computed = crc32fast::hash(&body);
        if computed != header.body_checksum {
            return Err(Rejection::BodyChecksum {
                expected: computed,
                found: header.body_checksum,
            });
        }
        Ok(Some(Frame { header, body }))
    }
}

/// The body length as a `usize`; it fits on every platform with 32-bit or wider pointers.
fn body_len(header: FrameHeader) -> Result<usize, Rejection> {
    usize::try_from(header.body_bytes).map_err(|_| Rejection::FrameTooLarge {
        length: header.body_bytes,
        max: FRAME_BODY_BYTES_MAX,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: ClusterId = ClusterId(0xA1B0);

    fn frame_bytes(kind: FrameKind, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_frame(&mut out, kind, CLUSTER, 7, body).unwrap();
        out
    }

    fn reseal_header(bytes: &mut [u8]) {
        let checksum = crc32fast::hash(&bytes[0..32]);
        bytes[32..36].copy_from_slice(&checksum.to_le_bytes());
    }

    #[test]
    fn round_trip_one_byte_at_a_time() {
        let mut stream = frame_bytes(FrameKind::ClientRequest, b"hello");
        stream.extend(frame_bytes(FrameKind::ClientResponse, b""));
        let mut decoder = FrameDecoder::new(CLUSTER);
        let mut frames = Vec::new();
        for byte in &stream {
            decoder.feed(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        decoder.finish().unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].header.kind, FrameKind::ClientRequest);
        assert_eq!(frames[0].header.sender, 7);
        assert_eq!(&frames[0].body[..], b"hello");
        assert_eq!(frames[1].header.kind, FrameKind::ClientResponse);
        assert!(frames[1].body.is_empty());
    }

    fn decode_all(bytes: &[u8]) -> Result<Option<Frame>, Rejection> {
        let mut decoder = FrameDecoder::new(CLUSTER);
        decoder.feed(bytes);
        decoder.next_frame()
    }

    #[test]
    fn garbage_is_bad_magic() {
        let error = decode_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789").unwrap_err();
        assert_eq!(error, Rejection::BadMagic { found: *b"GET " });
    }

    #[test]
    fn flipped_header_bit_is_a_header_checksum_error() {
        let mut bytes = frame_bytes(FrameKind::ClientRequest, b"x");
        bytes[25] ^= 0x40; // In the body length: must not be trusted.
        let error = decode_all(&bytes).unwrap_err();
        assert!(
            matches!(error, Rejection::HeaderChecksum { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let mut bytes = frame_bytes(FrameKind::ClientRequest, b"");
        bytes[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        reseal_header(&mut bytes);
        let mut decoder = FrameDecoder::new(CLUSTER);
        decoder.feed(&bytes);
        let error = decoder.next_frame().unwrap_err();
        assert_eq!(
            error,
            Rejection::FrameTooLarge {
                length: u32::MAX,
                max: FRAME_BODY_BYTES_MAX
            }
        );
        assert_eq!(decoder.buffered_bytes(), 0);
        // Poisoned: the same error again, whatever follows.
        decoder.feed(&frame_bytes(FrameKind::ClientRequest, b""));
        assert_eq!(decoder.next_frame().unwrap_err(), error);
    }

    #[test]
    fn flipped_body_bit_is_a_body_checksum_error() {
        let mut bytes = frame_bytes(FrameKind::ClientRequest, b"payload");
        bytes[FRAME_HEADER_BYTES + 3] ^= 1;
        let error = decode_all(&bytes).unwrap_err();
        assert!(matches!(error, Rejection::BodyChecksum { .. }), "{error:?}");
    }

    #[test]
    fn wrong_version_reserved_kind_and_cluster_are_named() {
        let mut bytes = frame_bytes(FrameKind::ClientRequest, b"");
        bytes[4] = 9;
        reseal_header(&mut bytes);
        let expected = Rejection::VersionUnsupported {
            expected: PROTOCOL_VERSION,
            found: 9,
        };
        assert_eq!(decode_all(&bytes).unwrap_err(), expected);

        let mut bytes = frame_bytes(FrameKind::ClientRequest, b"");
        bytes[7] = 1;
        reseal_header(&mut bytes);
        let expected = Rejection::ReservedNotZero { found: 1 };
        assert_eq!(decode_all(&bytes).unwrap_err(), expected);

        let mut bytes = frame_bytes(FrameKind::ClientRequest, b"");
        bytes[6] = 0x7f;
        reseal_header(&mut bytes);
        let expected = Rejection::UnknownKind { found: 0x7f };
        assert_eq!(decode_all(&bytes).unwrap_err(), expected);

        let bytes = frame_bytes(FrameKind::ClientRequest, b"");
        let mut decoder = FrameDecoder::new(ClusterId(1));
        decoder.feed(&bytes);
        let expected = Rejection::WrongClusterId {
            expected: ClusterId(1),
            found: CLUSTER,
        };
        assert_eq!(decoder.next_frame().unwrap_err(), expected);
    }

    #[test]
    fn truncated_frame_is_reported_at_the_end_of_the_stream() {
        let bytes = frame_bytes(FrameKind::ClientRequest, b"payload");
        let mut decoder = FrameDecoder::new(CLUSTER);
        decoder.feed(&bytes[..bytes.len() - 1]);
        assert_eq!(decoder.next_frame().unwrap(), None);
        let expected = Rejection::TruncatedFrame {
            received: u64::try_from(bytes.len() - 1).unwrap(),
        };
        assert_eq!(decoder.finish().unwrap_err(), expected);
    }

    #[test]
    fn too_large_body_is_not_encoded() {
        let mut out = vec![1, 2, 3];
        let body = vec![0; usize::try_from(FRAME_BODY_BYTES_MAX).unwrap() + 1];
        let error = encode_frame(&mut out, FrameKind::ClientRequest, CLUSTER, 1, &body);
        assert_eq!(
            error,
            Err(BodyTooLarge {
                bytes: u64::from(FRAME_BODY_BYTES_MAX) + 1
            })
        );
        assert_eq!(out, vec![1, 2, 3]);
    }
}
