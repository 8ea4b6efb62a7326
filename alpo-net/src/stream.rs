//! [`Stream`]: one connected socket, plain TCP or TLS (issue 16), behind one interface, so the
//! framing, the handshake, the links and the inbox do not care which.
//!
//! A `Stream` is a handle: [`Stream::try_clone`] gives another handle to the same connection
//! (the socket is duplicated, the TLS state is shared), as `TcpStream::try_clone` does. Reads
//! and writes go through `Read`/`Write` for `&Stream`, in blocking or non-blocking mode as the
//! socket is set.
//!
//! With TLS (rustls is sans-IO): ciphertext read from the socket is kept in the stream's own
//! buffer (one large read per system call, not rustls's 4 KiB) and fed to rustls; a write hands
//! plaintext to rustls and writes the records it makes. In non-blocking mode a write first
//! writes any records still waiting and says `WouldBlock` if it cannot, then accepts plaintext
//! and writes what the socket takes: records it could not write stay in the TLS state
//! ([`Stream::has_pending_output`]) and the caller must have them flushed (the link's writer
//! thread, the inbox's writability watch) before it treats the connection as idle.
//!
//! Invariants: one lock guards the TLS state, so records of two writers never interleave; a
//! blocking read holds that lock while it waits, so blocking reads happen only where no other
//! thread writes (handshakes, the blocking client); a read returns `Ok(0)` only at the end of
//! the stream (a TCP end without `close_notify` included: frames carry their length, so a
//! truncated frame is still caught by the frame decoder); a read returns `WouldBlock` only when
//! the socket had nothing more and no plaintext is buffered.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// Bytes of ciphertext read from the socket per system call.
const CIPHERTEXT_READ_BYTES: usize = 64 * 1024;

/// A connected socket, plain or TLS. Read and write it through `&Stream`.
#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    tls: Option<Arc<TlsState>>,
}

/// The TLS side of a connection, shared by every handle.
pub(crate) struct TlsState {
    inner: Mutex<TlsInner>,
    /// Whether the socket is in non-blocking mode (shared by every duplicate of the socket).
    nonblocking: AtomicBool,
}

struct TlsInner {
    connection: rustls::Connection,
    /// Ciphertext read from the socket and not yet given to rustls: `buffer[start..end]`.
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// The last socket read returned less than the buffer holds (the socket was emptied).
    last_read_short: bool,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState").finish_non_exhaustive()
    }
}

impl Stream {
    /// A plain TCP stream.
    pub(crate) fn plain(tcp: TcpStream) -> Stream {
        Stream { tcp, tls: None }
    }

    /// A TLS stream over `tcp`, whose handshake `connection` has completed.
    pub(crate) fn tls(tcp: TcpStream, connection: rustls::Connection) -> Stream {
        let inner = TlsInner {
            connection,
            buffer: vec![0; CIPHERTEXT_READ_BYTES].into_boxed_slice(),
            start: 0,
            end: 0,
            last_read_short: false,
        };
        let state = TlsState {
            inner: Mutex::new(inner),
            nonblocking: AtomicBool::new(false),
        };
        Stream {
            tcp,
            tls: Some(Arc::new(state)),
        }
    }

    /// The TCP stream of a plain stream (a TLS stream's state is dropped: only for a stream
    /// about to begin its TLS handshake).
    pub(crate) fn into_tcp(self) -> TcpStream {
        debug_assert!(
            self.tls.is_none(),
            "invariant: only a plain stream starts TLS"
        );
        self.tcp
    }

    /// Another handle to the same connection.
    pub fn try_clone(&self) -> io::Result<Stream> {
        Ok(Stream {
            tcp: self.tcp.try_clone()?,
            tls: self.tls.clone(),
        })
    }

    /// The TCP socket underneath (for socket options and the shutdown registry).
    pub(crate) fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether the connection is TLS.
    #[must_use]
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether TLS records accepted by a non-blocking write still wait to be written (always
    /// false for plain TCP). Write them with `flush` (in blocking mode, or when the socket has
    /// room).
    #[must_use]
    pub fn has_pending_output(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|tls| tls.inner.lock().connection.wants_write())
    }

    /// After a read that filled less than its buffer: whether the socket was emptied, so that
    /// nothing is left to read until the poll reports new input. Always true for plain TCP (a
    /// short read means the socket's queue was emptied); for TLS, only if rustls holds no more
    /// plaintext (implied by the short read: its reader fills the buffer while it has any), the
    /// stream holds no unread ciphertext, and its last socket read was short. This spares the
    /// inbox the read that would only say "would block".
    #[must_use]
    pub fn drained_after_short_read(&self) -> bool {
        self.tls.as_ref().is_none_or(|tls| {
            let inner = tls.inner.lock();
            inner.start == inner.end && inner.last_read_short
        })
    }

    /// Moves the socket into or out of non-blocking mode.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.tcp.set_nonblocking(nonblocking)?;
        if let Some(tls) = &self.tls {
            tls.nonblocking.store(nonblocking, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Sets the socket's read timeout (blocking mode).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(timeout)
    }

    /// Shuts the socket down (both directions); other handles see the end.
    pub fn shutdown(&self) -> io::Result<()> {
        self.tcp.shutdown(Shutdown::Both)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }

    /// The end-entity certificate the other side presented in the TLS handshake, if any.
    pub(crate) fn peer_certificate(&self) -> Option<rustls_pki_types::CertificateDer<'static>> {
        let tls = self.tls.as_ref()?;
        let inner = tls.inner.lock();
        let chain = inner.connection.peer_certificates()?;
        chain.first().map(|cert| cert.clone().into_owned())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }
}

impl Read for &Stream {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.tcp).read(out),
            Some(tls) => tls.inner.lock().read(&self.tcp, out),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match &self.tls {
            None => (&self.tcp).write(bytes),
            Some(tls) => {
                let nonblocking = tls.nonblocking.load(Ordering::SeqCst);
                tls.inner.lock().write(&self.tcp, bytes, nonblocking)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &self.tls {
            None => Ok(()),
            Some(tls) => tls.inner.lock().write_records(&self.tcp),
        }
    }
}

impl TlsInner {
    fn read(&mut self, mut tcp: &TcpStream, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.connection.reader().read(out) {
                Ok(length) => return Ok(length),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // The TCP end without `close_notify`: an end like any other (see the invariants).
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(error) => return Err(error),
            }
            if self.start == self.end {
                let length = tcp.read(&mut self.buffer)?;
                self.start = 0;
                self.end = length;
                self.last_read_short = length < self.buffer.len();
                if length == 0 {
                    // Tell rustls the stream ended; its reader then reports the end.
                    self.connection.read_tls(&mut io::empty())?;
                    continue;
                }
            }
            let mut ciphertext = &self.buffer[self.start..self.end];
            let before = ciphertext.len();
            self.connection.read_tls(&mut ciphertext)?;
            let taken = before - ciphertext.len();
            if taken == 0 {
                // Never spin: rustls took nothing although it had no plaintext to give.
                return Err(io::Error::other("the TLS layer accepts no more input"));
            }
            self.start += taken;
            if let Err(error) = self.connection.process_new_packets() {
                // Best effort: tell the other side why (the alert rustls queued).
                let _ = self.connection.write_tls(&mut tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
            if self.connection.wants_write() {
                // A post-handshake message (a key update): answer it as far as the socket takes.
                match self.connection.write_tls(&mut tcp) {
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Err(error),
                }
            }
        }
    }

    fn write(&mut self, tcp: &TcpStream, bytes: &[u8], nonblocking: bool) -> io::Result<usize> {
        // Records of earlier writes go first; in non-blocking mode, if they cannot, nothing new
        // is accepted.
        self.write_records(tcp)?;
        let accepted = self.connection.writer().write(bytes)?;
        match self.write_records(tcp) {
            Ok(()) => {}
            Err(error) if nonblocking && error.kind() == io::ErrorKind::WouldBlock => {}
            Err(error) => return Err(error),
        }
        Ok(accepted)
    }

    /// Writes every record waiting in the TLS state (`WouldBlock` if the socket is full).
    fn write_records(&mut self, mut tcp: &TcpStream) -> io::Result<()> {
        while self.connection.wants_write() {
            if self.connection.write_tls(&mut tcp)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}
