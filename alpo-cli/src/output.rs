//! Standard output for commands whose reader may go away early (`alpo read | head`,
//! `alpo log dump | head`): a closed pipe ends the command quietly and successfully, as it does
//! for `cat` and `grep`, instead of printing "Broken pipe".
//!
//! Invariants: only a write to standard output can be taken for a closed reader; a broken pipe
//! anywhere else (a socket to a node) stays an error. The writer marks its own broken-pipe
//! errors with `OutputClosed`, and `main` looks for that mark in an error's chain.

use std::fmt;
use std::io::{self, StdoutLock, Write};

/// The mark on a write error meaning "whoever read standard output has gone".
#[derive(Debug)]
pub(crate) struct OutputClosed;

impl fmt::Display for OutputClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for OutputClosed {}

/// Standard output, locked; a broken pipe comes back marked with `OutputClosed`.
pub(crate) struct Stdout(StdoutLock<'static>);

/// Locks standard output for writing.
pub(crate) fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(mark)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(mark)
    }
}

fn mark(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, OutputClosed)
    } else {
        error
    }
}

/// Whether `error` is (caused by) a write to a standard output nobody reads any more.
pub(crate) fn is_output_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause.is::<OutputClosed>()
            || cause
                .downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<OutputClosed>())
    })
}

#[cfg(test)]
mod tests {
    use anyhow::Context;

    use super::*;

    #[test]
    fn only_a_marked_broken_pipe_counts_as_closed_output() {
        let closed = anyhow::Error::new(mark(io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(is_output_closed(
            &closed.context("writing to standard output")
        ));
        let socket = anyhow::Error::new(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(!is_output_closed(&socket));
        let other = anyhow::Error::new(mark(io::Error::from(io::ErrorKind::Other)));
        assert!(!is_output_closed(&other));
        let result: Result<(), io::Error> = Err(mark(io::ErrorKind::BrokenPipe.into()));
        assert!(is_output_closed(&result.context("dump").unwrap_err()));
    }
}
