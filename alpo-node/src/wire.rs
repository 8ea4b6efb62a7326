//! Little-endian field encoding shared by the client protocol, entry payloads and the
//! key-value machine: a writer that appends fields and a reader that never panics.
//!
//! Invariants: every integer is little-endian and fixed-width (`u8`, `u32`, `u64`); byte strings
//! are a `u32` length followed by the bytes; an optional value is a `u8` tag (0 none, 1 some)
//! followed by the value. The reader checks every length against the bytes left *before* it
//! slices, so truncated or random input yields a `DecodeError`, never a panic or a huge
//! allocation.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Why bytes could not be decoded: what was being read and at which byte offset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError {
    /// What the decoder was reading (a field or structure name).
    pub what: &'static str,
    /// Byte offset in the decoded buffer where the problem was found.
    pub offset: usize,
    /// What was wrong.
    pub problem: DecodeProblem,
}

/// The kind of decoding failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeProblem {
    /// The buffer ended before the field did.
    Truncated,
    /// A tag byte had a value outside its enum.
    UnknownTag(u8),
    /// Bytes were left over after a complete structure.
    TrailingBytes,
    /// A text field was not valid UTF-8.
    InvalidUtf8,
    /// The format version is not one this build reads.
    UnsupportedVersion(u8),
    /// A text field that must be an `IP:PORT` address is not one (issue 12).
    BadAddress,
}

/// Appends fields to a buffer.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    buf: BytesMut,
}

/// Reads fields from a buffer, front to back.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    offset: usize,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.what;
        let offset = self.offset;
        match self.problem {
            DecodeProblem::Truncated => write!(f, "truncated {what} at byte {offset}"),
            DecodeProblem::UnknownTag(tag) => {
                write!(f, "unknown {what} tag {tag} at byte {offset}")
            }
            DecodeProblem::TrailingBytes => {
                write!(f, "unexpected bytes after {what} at byte {offset}")
            }
            DecodeProblem::InvalidUtf8 => write!(f, "{what} is not utf-8 at byte {offset}"),
            DecodeProblem::UnsupportedVersion(version) => {
                write!(f, "unsupported {what} version {version} at byte {offset}")
            }
            DecodeProblem::BadAddress => {
                write!(f, "{what} at byte {offset} is not an IP:PORT address")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl Writer {
    pub(crate) fn u8(&mut self, value: u8) -> &mut Self {
        self.buf.put_u8(value);
        self
    }

    pub(crate) fn u32(&mut self, value: u32) -> &mut Self {
        self.buf.put_u32_le(value);
        self
    }

    pub(crate) fn u64(&mut self, value: u64) -> &mut Self {
        self.buf.put_u64_le(value);
        self
    }

    /// A byte string: `u32` length, then the bytes. Lengths above `u32::MAX` cannot occur
    /// because every payload is capped far below it (`alpo_core::limits::ENTRY_BYTES_MAX`).
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub(crate) fn bytes(&mut self, value: &[u8]) -> &mut Self {
        let length =
            u32::try_from(value.len()).expect("invariant: payloads are capped below 4 GiB");
        self.buf.put_u32_le(length);
        self.buf.put_slice(value);
        self
    }

    pub(crate) fn optional_bytes(&mut self, value: Option<&[u8]>) -> &mut Self {
        match value {
            None => self.u8(0),
            Some(value) => self.u8(1).bytes(value),
        }
    }

    /// The rest of the buffer, without a length prefix (only as the last field).
    pub(crate) fn tail(&mut self, value: &[u8]) -> &mut Self {
        self.buf.put_slice(value);
        self
    }

    pub(crate) fn finish(&mut self) -> Bytes {
        std::mem::take(&mut self.buf).freeze()
    }
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf, offset: 0 }
    }

    fn error(&self, what: &'static str, problem: DecodeProblem) -> DecodeError {
        DecodeError {
            what,
            offset: self.offset,
            problem,
        }
    }

    pub(crate) fn unknown_tag(&self, what: &'static str, tag: u8) -> DecodeError {
        let mut error = self.error(what, DecodeProblem::UnknownTag(tag));
        error.offset = self.offset.saturating_sub(1);
        error
    }

    fn take(&mut self, what: &'static str, count: usize) -> Result<Bytes, DecodeError> {
        let left = self.buf.len() - self.offset;
        if left < count {
            return Err(self.error(what, DecodeProblem::Truncated));
        }
        let slice = self.buf.slice(self.offset..self.offset + count);
        self.offset += count;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let slice = self.take(what, N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(&slice);
        Ok(array)
    }

    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A byte string; the length is checked against the bytes left before anything is sliced.
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        let length = self.u32(what)?;
        let length =
            usize::try_from(length).map_err(|_| self.error(what, DecodeProblem::Truncated))?;
        self.take(what, length)
    }

    pub(crate) fn optional_bytes(
        &mut self,
        what: &'static str,
    ) -> Result<Option<Bytes>, DecodeError> {
        match self.u8(what)? {
            0 => Ok(None),
            1 => Ok(Some(self.bytes(what)?)),
            tag => Err(self.unknown_tag(what, tag)),
        }
    }

    pub(crate) fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let start = self.offset;
        let bytes = self.bytes(what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError {
            what,
            offset: start,
            problem: DecodeProblem::InvalidUtf8,
        })
    }

    /// Everything not read yet (only as the last field).
    /// A string that must be an `IP:PORT` address (issue 12).
    pub(crate) fn socket_addr(
        &mut self,
        what: &'static str,
    ) -> Result<std::net::SocketAddr, DecodeError> {
        let at = self.offset;
        let text = self.string(what)?;
        text.parse().map_err(|_| DecodeError {
            what,
            offset: at,
            problem: DecodeProblem::BadAddress,
        })
    }

    pub(crate) fn tail(&mut self) -> Bytes {
        let rest = self.buf.slice(self.offset..);
        self.offset = self.buf.len();
        rest
    }

    /// Checks that every byte was read.
    pub(crate) fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        if self.offset == self.buf.len() {
            Ok(())
        } else {
            Err(self.error(what, DecodeProblem::TrailingBytes))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let mut writer = Writer::default();
        writer
            .u8(7)
            .u32(9)
            .u64(u64::MAX)
            .bytes(b"abc")
            .optional_bytes(None);
        writer.optional_bytes(Some(b"x"));
        let mut reader = Reader::new(writer.finish());
        assert_eq!(reader.u8("a").unwrap(), 7);
        assert_eq!(reader.u32("b").unwrap(), 9);
        assert_eq!(reader.u64("c").unwrap(), u64::MAX);
        assert_eq!(&reader.bytes("d").unwrap()[..], b"abc");
        assert_eq!(reader.optional_bytes("e").unwrap(), None);
        assert_eq!(
            reader.optional_bytes("f").unwrap().as_deref(),
            Some(&b"x"[..])
        );
        reader.finish("all").unwrap();
    }

    #[test]
    fn a_huge_length_is_an_error_not_an_allocation() {
        let mut writer = Writer::default();
        writer.u32(u32::MAX).u8(1);
        let mut reader = Reader::new(writer.finish());
        let error = reader.bytes("key").unwrap_err();
        assert_eq!(error.problem, DecodeProblem::Truncated);
        assert_eq!(error.to_string(), "truncated key at byte 4");
    }
}
