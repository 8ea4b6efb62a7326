//! An ALPO server: wires alpo-core, alpo-log and alpo-net together behind a state-machine trait,
//! and the client that talks to it.

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod apply;
mod client;
pub mod client_protocol;
mod command;
pub mod config;
mod error;
pub mod kv;
pub mod limits;
mod node;
mod server;
mod service;
mod session;
mod state_machine;
mod storage;
mod wire;

pub use client::{CasOutcome, Client, ClientOptions};
pub use config::{NodeConfig, PeerConfig, Timeouts};
pub use error::Error;
pub use kv::{KvOp, KvResult, KvStateMachine};
pub use node::Server;
pub use state_machine::StateMachine;
pub use wire::{DecodeError, DecodeProblem};
