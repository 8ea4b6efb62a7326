//! [`ImageReader`]: streams a snapshot's image out of its file, verifying as it goes.
//!
//! Invariants: memory is one chunk (`chunk_bytes`, at most `SNAPSHOT_CHUNK_BYTES_MAX`) whatever
//! the image's size; a chunk is handed out only after its CRC-32 verified; the end of the image
//! is reported only after the trailer and the CRC-64 of the whole image verified, so a state
//! machine that restores until the end sees either every byte of a good image or an error.
//! Errors name the file and the byte offset of the damaged header field, chunk frame or trailer.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Error};
use crate::snapshot::crc64::Crc64;
use crate::snapshot::format::{
    self, CHUNK_FRAME, CHUNK_FRAME_BYTES, HEADER_FIXED_BYTES, SnapshotMeta, TRAILER,
};

/// Reads and verifies the image of one snapshot file, one chunk at a time.
#[derive(Debug)]
pub struct ImageReader {
    path: PathBuf,
    file: File,
    meta: SnapshotMeta,
    /// Offset of the next chunk's frame (or of the trailer once every chunk is read).
    offset: u64,
    /// Image bytes handed out so far.
    image_read: u64,
    crc: Crc64,
    chunk: Vec<u8>,
    /// Bytes of `chunk` not yet returned by `io::Read`.
    unread: usize,
    done: bool,
}

impl ImageReader {
    /// Reads and checks the header of `file` (at `path`, for messages) and its length.
    pub(crate) fn new(path: &Path, file: File) -> Result<ImageReader, Error> {
        let meta = read_meta(path, &file)?;
        let offset = meta.header_bytes();
        Ok(ImageReader {
            path: path.to_path_buf(),
            file,
            chunk: Vec::with_capacity(usize::try_from(meta.chunk_bytes).unwrap_or(0)),
            meta,
            offset,
            image_read: 0,
            crc: Crc64::new(),
            unread: 0,
            done: false,
        })
    }

    /// The snapshot's header.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The next chunk of the image, verified; `Ok(None)` once the whole image is read and its
    /// checksum and trailer verified.
    #[allow(clippy::expect_used, reason = "the messages state the invariants")]
    pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, Error> {
        if self.done {
            return Ok(None);
        }
        let rest = self.meta.image_bytes - self.image_read;
        if rest == 0 {
            self.finish()?;
            return Ok(None);
        }
        let expected = u32::try_from(rest.min(u64::from(self.meta.chunk_bytes)))
            .expect("invariant: at most chunk_bytes, a u32");
        let frame_at = self.offset;
        let mut frame = [0u8; CHUNK_FRAME];
        self.read_exact_at(&mut frame, frame_at)?;
        let found = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
        if found != expected {
            return Err(self.damage(frame_at, Corruption::ChunkLength { found, expected }));
        }
        let stored = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let body_bytes = usize::try_from(expected).expect("invariant: a chunk fits in memory");
        self.chunk.resize(body_bytes, 0);
        let mut chunk = std::mem::take(&mut self.chunk);
        let read = self.read_exact_at(&mut chunk, frame_at + CHUNK_FRAME_BYTES);
        self.chunk = chunk;
        read?;
        let computed = format::chunk_crc(expected, &self.chunk);
        if stored != computed {
            return Err(self.damage(frame_at, Corruption::ChunkChecksum { stored, computed }));
        }
        self.crc.update(&self.chunk);
        self.image_read += u64::from(expected);
        self.offset = frame_at + CHUNK_FRAME_BYTES + u64::from(expected);
        Ok(Some(&self.chunk))
    }

    /// Reads every remaining chunk, for a check of the whole file.
    pub fn verify_to_end(&mut self) -> Result<(), Error> {
        // Bounded: each pass consumes one chunk of a file whose length the header fixed.
        while self.next_chunk()?.is_some() {}
        Ok(())
    }

    /// Checks the trailer and the image checksum after the last chunk.
    fn finish(&mut self) -> Result<(), Error> {
        let mut trailer = [0u8; TRAILER];
        self.read_exact_at(&mut trailer, self.offset)?;
        if !self.meta.trailer_matches(&trailer) {
            return Err(self.damage(self.offset, Corruption::TrailerMismatch));
        }
        let computed = self.crc.value();
        let stored = self.meta.image_checksum;
        if stored != computed {
            return Err(self.damage(56, Corruption::ImageChecksum { stored, computed }));
        }
        self.done = true;
        Ok(())
    }

    fn read_exact_at(&self, buffer: &mut [u8], offset: u64) -> Result<(), Error> {
        self.file
            .read_exact_at(buffer, offset)
            .map_err(|e| Error::io(&self.path, "read snapshot", e))
    }

    fn damage(&self, offset: u64, reason: Corruption) -> Error {
        Error::corruption(&self.path, offset, reason)
    }
}

/// `io::Read` over the verified image: returns 0 only after the whole image verified; damage
/// is an `io::Error` of kind `InvalidData` wrapping the [`Error`].
impl io::Read for ImageReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.unread == 0 {
            match self.next_chunk() {
                Ok(Some(chunk)) => self.unread = chunk.len(),
                Ok(None) => return Ok(0),
                Err(error) => return Err(io::Error::new(io::ErrorKind::InvalidData, error)),
            }
        }
        let start = self.chunk.len() - self.unread;
        let count = self.unread.min(buffer.len());
        buffer[..count].copy_from_slice(&self.chunk[start..start + count]);
        self.unread -= count;
        Ok(count)
    }
}

/// Reads the header of a snapshot file and checks the file's length against it.
pub(crate) fn read_meta(path: &Path, file: &File) -> Result<SnapshotMeta, Error> {
    let length = file
        .metadata()
        .map_err(|e| Error::io(path, "stat snapshot", e))?
        .len();
    let damage = |(offset, reason)| Error::corruption(path, offset, reason);
    let mut prefix = vec![0u8; usize::try_from(HEADER_FIXED_BYTES.min(length)).unwrap_or(0)];
    file.read_exact_at(&mut prefix, 0)
        .map_err(|e| Error::io(path, "read snapshot", e))?;
    let header_bytes = format::header_length(&prefix).map_err(damage)?;
    let mut header = vec![0u8; usize::try_from(header_bytes.min(length)).unwrap_or(0)];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| Error::io(path, "read snapshot", e))?;
    let meta = format::decode_header(&header).map_err(damage)?;
    let expected = meta.file_bytes().unwrap_or(u64::MAX);
    if expected != length {
        let reason = Corruption::FileLength {
            expected,
            found: length,
        };
        return Err(Error::corruption(path, length.min(expected), reason));
    }
    Ok(meta)
}

/// Opens `path` read-only and verifies the whole file: header, length, every chunk, trailer and
/// image checksum. Returns the header.
pub fn verify_snapshot_file(path: &Path) -> Result<SnapshotMeta, Error> {
    let file = File::open(path).map_err(|e| Error::io(path, "open snapshot", e))?;
    let mut reader = ImageReader::new(path, file)?;
    reader.verify_to_end()?;
    Ok(reader.meta)
}
