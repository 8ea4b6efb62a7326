//! One ALPO server's protocol state and its entry points: one method per kind of input.
//!
//! SKELETON: the public API the rest of the workspace builds against. The engine (election,
//! replication, progress, trace) replaces the bodies; the signatures are the contract.

use bytes::Bytes;

use crate::config::Config;
use crate::error::{ConfigError, ProposeError};
use crate::message::Message;
use crate::output::Output;
use crate::types::{Entry, HardState, Incarnation, Instant, LogIndex, LogPosition, NodeId, Term};

/// What a server loaded from disk at start (the "restart from persisted state" input).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persisted {
    /// Term and vote, as last made durable.
    pub hard_state: HardState,
    /// The durable log, in index order from index 1 (or from the first retained index).
    pub entries: Vec<Entry>,
    /// This start's incarnation: one more than the last start's, made durable by the driver.
    pub incarnation: Incarnation,
}

/// A proposal the leader accepted: where it sits in the log. It is committed when an `Apply`
/// output carries an entry with this index **and** this term; an entry with this index and
/// another term means the proposal was lost with its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The index the proposal was given.
    pub index: LogIndex,
    /// The leader's term when it accepted the proposal.
    pub term: Term,
}

/// A server's role (section 2 of the protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader and votes (ALPO's "passive").
    Passive,
    /// Asks for votes.
    Candidate,
    /// Accepts proposals and replicates them.
    Leader,
}

/// A snapshot of a server's protocol state, for status reports and checkers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    /// This server.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: Term,
    /// The leader it believes in, if any (itself when leader).
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: LogIndex,
    /// Index of its last entry.
    pub last_index: LogIndex,
    /// Highest index durable on its disk.
    pub durable_index: LogIndex,
    /// Highest index handed to the state machine.
    pub applied_index: LogIndex,
}

/// One ALPO server's protocol state machine.
#[derive(Debug)]
pub struct Node {
    config: Config,
    persisted: Persisted,
    outputs: Vec<Output>,
}

impl Node {
    /// Starts a server from what it loaded from disk (rule E0): passive, commit index 0.
    pub fn new(config: Config, persisted: Persisted, now: Instant) -> Result<Node, ConfigError> {
        config.validate()?;
        let _ = now;
        Ok(Node {
            config,
            persisted,
            outputs: Vec::new(),
        })
    }

    /// Time passes: fire the election timer, heartbeats, check-quorum, as due at `now`.
    pub fn tick(&mut self, now: Instant) {
        let _ = now;
    }

    /// A message from a peer arrives.
    pub fn on_message(&mut self, now: Instant, message: Message) {
        let _ = (now, message);
    }

    /// A client proposes a command (rule R1). On the leader, appends it and returns where it sits.
    pub fn propose(&mut self, now: Instant, payload: Bytes) -> Result<Proposal, ProposeError> {
        let _ = (now, payload);
        Err(ProposeError::NotLeader { leader_hint: None })
    }

    /// Storage reports that the log is durable up to and including `durable` (group commit).
    pub fn on_persisted(&mut self, now: Instant, durable: LogPosition) {
        let _ = (now, durable);
    }

    /// Takes the outputs produced by the inputs since the last call, in the order to perform
    /// them (see [`crate::output`] for the ordering contract).
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// The next instant at which `tick` has something to do.
    #[must_use]
    pub fn next_timeout(&self) -> Option<Instant> {
        None
    }

    /// A snapshot of this server's protocol state.
    #[must_use]
    pub fn status(&self) -> Status {
        Status {
            id: self.config.id,
            role: Role::Passive,
            term: self.persisted.hard_state.current_term,
            leader: None,
            commit_index: LogIndex(0),
            last_index: LogIndex(0),
            durable_index: LogIndex(0),
            applied_index: LogIndex(0),
        }
    }

    /// Asserts every invariant of this server's state; called after each input.
    pub fn invariants(&self) {}
}
