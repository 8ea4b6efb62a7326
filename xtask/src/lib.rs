//! The library half of `cargo xtask`: the pieces of the cluster test that do not need a running
//! cluster, each testable on its own, and the tidy checks.
//!
//! - `history`: operations recorded by clients (invoke, complete, outcome), JSON lines;
//! - `linearizability`: the per-key linearizability checker and the append-log checker;
//! - `proxy`: a thread-based fault-injecting TCP proxy per directed link;
//! - `nemesis`: a seeded, deterministic schedule of faults;
//! - `timeline`: a self-contained SVG picture of a run.
//!
//! The binary (`main.rs`) only parses arguments and dispatches to these modules. Nothing here
//! starts a process or opens a socket beyond loopback.

#![warn(missing_docs)]
#![warn(unreachable_pub)]

pub mod history;
pub mod linearizability;
pub mod nemesis;
pub mod proxy;
pub mod timeline;

#[cfg(test)]
mod msrv;
#[cfg(test)]
mod tidy;
