//! Checksummed, append-only segment files that store ALPO's log and hard state.
//!
//! SKELETON: the log is built under issue 2.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
