//! An ALPO server: wires alpo-core, alpo-log and alpo-net together behind a state-machine trait.
//!
//! SKELETON: the node is built under issue 5.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]
