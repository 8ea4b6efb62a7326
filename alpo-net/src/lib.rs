//! Thread-based TCP transport for ALPO: framing, handshake, codec and per-peer connections.
//!
//! SKELETON: the transport is built under issue 4.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
