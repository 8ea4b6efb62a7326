//! Little-endian fields of snapshot images, written to an `io::Write` and read from an
//! `io::Read`: what the node's image framing, the session table and the key-value machine use.
//!
//! Invariants: a reader never allocates more than the limit the caller names for a field, so a
//! damaged length cannot make it allocate gigabytes; every failure is
//! `io::ErrorKind::InvalidData` (or the reader's own error) with a message naming the field.

use std::io::{self, Read, Write};

use bytes::Bytes;

/// Writes a `u8`.
pub(crate) fn put_u8(out: &mut dyn Write, value: u8) -> io::Result<()> {
    out.write_all(&[value])
}

/// Writes a `u64`, little-endian.
pub(crate) fn put_u64(out: &mut dyn Write, value: u64) -> io::Result<()> {
    out.write_all(&value.to_le_bytes())
}

/// Writes a byte string: a `u32` length, then the bytes.
pub(crate) fn put_bytes(out: &mut dyn Write, value: &[u8]) -> io::Result<()> {
    let length = u32::try_from(value.len())
        .map_err(|_| invalid(format!("a field of {} bytes is too long", value.len())))?;
    out.write_all(&length.to_le_bytes())?;
    out.write_all(value)
}

/// Reads a `u8` named `what`.
pub(crate) fn get_u8(input: &mut dyn Read, what: &str) -> io::Result<u8> {
    let mut buf = [0; 1];
    read_exact(input, &mut buf, what)?;
    Ok(buf[0])
}

/// Reads a little-endian `u64` named `what`.
pub(crate) fn get_u64(input: &mut dyn Read, what: &str) -> io::Result<u64> {
    let mut buf = [0; 8];
    read_exact(input, &mut buf, what)?;
    Ok(u64::from_le_bytes(buf))
}

/// Reads a byte string named `what` of at most `length_max` bytes.
pub(crate) fn get_bytes(input: &mut dyn Read, what: &str, length_max: usize) -> io::Result<Bytes> {
    let mut buf = [0; 4];
    read_exact(input, &mut buf, what)?;
    let length = u32::from_le_bytes(buf) as usize;
    if length_max < length {
        let message = format!("{what} of {length} bytes is longer than the limit {length_max}");
        return Err(invalid(message));
    }
    let mut value = vec![0; length];
    read_exact(input, &mut value, what)?;
    Ok(Bytes::from(value))
}

/// Checks that `input` has nothing left: an image with trailing bytes is malformed.
pub(crate) fn expect_end(input: &mut dyn Read, what: &str) -> io::Result<()> {
    let mut buf = [0; 1];
    match input.read(&mut buf)? {
        0 => Ok(()),
        _ => Err(invalid(format!("{what} has trailing bytes"))),
    }
}

/// An `InvalidData` error with `message`.
pub(crate) fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn read_exact(input: &mut dyn Read, buf: &mut [u8], what: &str) -> io::Result<()> {
    input.read_exact(buf).map_err(|error| {
        if error.kind() == io::ErrorKind::UnexpectedEof {
            invalid(format!("the image ends inside {what}"))
        } else {
            error
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_damage_is_an_error() {
        let mut out = Vec::new();
        put_u8(&mut out, 7).unwrap();
        put_u64(&mut out, u64::MAX - 1).unwrap();
        put_bytes(&mut out, b"key").unwrap();
        let mut input = out.as_slice();
        assert_eq!(get_u8(&mut input, "a").unwrap(), 7);
        assert_eq!(get_u64(&mut input, "b").unwrap(), u64::MAX - 1);
        assert_eq!(&get_bytes(&mut input, "c", 3).unwrap()[..], b"key");
        expect_end(&mut input, "the image").unwrap();
        // A length over the limit is refused before anything is allocated.
        let mut input = &out[9..];
        let error = get_bytes(&mut input, "the key", 2).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the key of 3 bytes is longer than the limit 2"
        );
        // A cut image names the field it ends in.
        let mut input = &out[..12];
        let mut cut = &out[9..12];
        let error = get_bytes(&mut cut, "the key", 9).unwrap_err();
        assert_eq!(error.to_string(), "the image ends inside the key");
        let error = get_u64(&mut input, "x").and_then(|_| get_u64(&mut input, "y"));
        assert_eq!(error.unwrap_err().to_string(), "the image ends inside y");
    }
}
