//! An ALPO server: wires alpo-core (the protocol), alpo-log (the files) and alpo-net (the
//! sockets) together behind a state-machine trait, and the client that talks to it.
//!
//! A running node has five kinds of thread, each with one job:
//! - the **event loop** owns the protocol core; it batches inputs (peer messages, client
//!   requests, durability reports, timeouts) and performs the core's outputs in order, and
//!   never waits on the disk except for the rare synchronous term/vote write;
//! - the **storage** thread appends and truncates the log and syncs in batches (group commit:
//!   one fdatasync covers every entry that arrived meanwhile), then reports "durable up to N";
//!   the leader's own write runs in parallel with replication;
//! - the **apply** thread feeds committed entries, in index order, to the [`StateMachine`],
//!   answers the clients waiting for them, serves reads of committed entries from the log files,
//!   and freezes the state for a snapshot (copy-on-write, a short pause) or restores one;
//! - the **snapshot** thread writes snapshot files in the background, compaction following
//!   once one is durable, and sends and receives them for followers far behind;
//! - alpo-net's threads carry peer messages and client requests.
//!
//! Index relationships on every node: `L ≤ applied ≤ commit ≤ durable ≤ last`, with `L` the
//! newest durable snapshot's last index; a start restores from it and applies only what follows.
//!
//! Clients speak the [`client_protocol`]: append, read and status for the log, and opaque
//! commands and queries for the state machine, which are ordered through the log and so are
//! linearizable; a follower answers them with the leader's address. [`Client`] finds the
//! leader, retries with the same request id (the node applies a retried request once) and
//! times out. The built-in key-value store ([`KvStateMachine`]) is one state machine among
//! others: its put, get, delete and compare-and-set are `Client` helpers that encode a
//! [`KvOp`] as a command or query.
//!
//! # Embedding
//!
//! Run a node with your own state machine and talk to it (here a one-node cluster; a real
//! cluster lists its other nodes in `peers`; `examples/bank` runs three in one process):
//!
//! ```
//! use std::io;
//!
//! use alpo_core::{ClusterId, LogIndex};
//! use alpo_node::{Client, ClientOptions, NodeConfig, Server, SnapshotImage, StateMachine};
//! use alpo_node::{
//!     LogSettings, MetricsSettings, ReadSettings, RecorderSettings, Snapshots, Timeouts,
//! };
//!
//! /// Counts bytes: every command adds its length; the answer (and any query's) is the total.
//! struct ByteCounter {
//!     total: u64,
//! }
//!
//! impl StateMachine for ByteCounter {
//!     fn apply(&mut self, _index: LogIndex, command: &[u8]) -> Vec<u8> {
//!         self.total += command.len() as u64;
//!         self.total.to_le_bytes().to_vec()
//!     }
//!
//!     fn query(&self, _query: &[u8]) -> Vec<u8> {
//!         self.total.to_le_bytes().to_vec()
//!     }
//!
//!     // A snapshot of a number is a copy of it; a large state would use copy-on-write.
//!     fn snapshot(&self) -> Box<dyn SnapshotImage> {
//!         Box::new(Total(self.total))
//!     }
//!
//!     fn restore(&mut self, image: &mut dyn io::Read) -> io::Result<()> {
//!         let mut bytes = [0; 8];
//!         image.read_exact(&mut bytes)?;
//!         self.total = u64::from_le_bytes(bytes);
//!         Ok(())
//!     }
//! }
//!
//! /// A frozen total.
//! struct Total(u64);
//!
//! impl SnapshotImage for Total {
//!     fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
//!         out.write_all(&self.0.to_le_bytes())
//!     }
//! }
//!
//! # fn main() -> Result<(), alpo_node::Error> {
//! let dir = tempfile::tempdir().map_err(|source| alpo_node::Error::Io {
//!     what: "creating a temporary directory".into(),
//!     source,
//! })?;
//! let config = NodeConfig {
//!     id: 1,
//!     cluster_id: 42,
//!     data_dir: dir.path().join("node-1"),
//!     peer_addr: "127.0.0.1:0".parse().expect("an address"),
//!     client_addr: "127.0.0.1:0".parse().expect("an address"),
//!     peers: Vec::new(),
//!     timeouts: Timeouts::lan(),
//!     snapshots: Snapshots::default(),
//!     log: LogSettings::default(),
//!     reads: ReadSettings::default(),
//!     tls: None,
//!     metrics: MetricsSettings::default(),
//!     recorder: RecorderSettings::default(),
//! };
//! let server = Server::start(config, ByteCounter { total: 0 })?;
//!
//! let mut client = Client::new(vec![server.client_addr()], ClientOptions::new(ClusterId(42)))?;
//! let (_, answer) = client.command("hello")?;
//! assert_eq!(answer[..], 5u64.to_le_bytes());
//! let (index, answer) = client.command("world")?;
//! assert_eq!(answer[..], 10u64.to_le_bytes());
//! let (_, answer) = client.query("")?;
//! assert_eq!(answer[..], 10u64.to_le_bytes());
//! // Plain appends go to the log only; the state machine does not see them.
//! let appended = client.append("just a log record")?;
//! assert!(index < appended);
//! let (entries, _commit) = client.read(appended, 10)?;
//! assert_eq!(&entries[0].data[..], b"just a log record");
//!
//! server.stop()?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]
#![warn(unreachable_pub)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod address_book;
mod apply;
mod client;
mod client_driver;
mod client_engine;
pub mod client_protocol;
mod command;
pub mod config;
mod error;
mod events;
mod http;
mod image_io;
mod join;
pub mod kv;
mod kv_client;
pub mod limits;
mod member_ops;
pub mod member_protocol;
pub mod metrics;
mod node;
mod node_image;
mod observe;
mod page;
mod reads;
pub mod recorder;
mod server;
mod service;
mod session;
mod snapshot;
mod state_machine;
mod storage;
pub mod tls;
mod wire;

pub use client::{Client, ClientOptions};
pub use client_driver::{DrivePlan, Outcomes, Requests, drive};
pub use config::{
    LogSettings, MetricsSettings, NodeConfig, PeerConfig, ReadSettings, RecorderSettings,
    Snapshots, Timeouts,
};
pub use error::Error;
pub use kv::{KvOp, KvResult, KvStateMachine};
pub use kv_client::CasOutcome;
pub use node::{Server, StorageStats};
pub use state_machine::{SnapshotImage, StateMachine};
pub use wire::{DecodeError, DecodeProblem};

// Handles an application keeps and moves between threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Server>();
    assert_send::<Client>();
    assert_send::<Error>();
};
