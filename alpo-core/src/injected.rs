//! Deliberate protocol bugs, for proving that the simulator's checkers bite (feature `sim`).
//!
//! A test or `cargo xtask sim --inject BUG` switches one on with `Node::inject_bug`; the rule's
//! branch asks `injected!(self, Bug)`. Invariant: without the `sim` feature `InjectedBug` does
//! not exist, `Node` has no field for it and `injected!` is the constant `false`, so a default
//! build carries no trace of the bugs and the protocol's branches are the only ones compiled.

/// A deliberate protocol violation that tests switch on to prove the checkers catch it.
#[cfg(feature = "sim")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// Commit an entry of an older term by counting replicas (breaks R5; scenario S1).
    CommitOlderTermByCount,
    /// Grant a vote to every candidate, even after voting in this term (breaks E4).
    GrantTwoVotesPerTerm,
    /// A leader counts an `AppendReply` of an older term as if it were of its own (breaks E6:
    /// a reply from before a change of term may acknowledge entries the follower no longer has).
    CountStaleAppendReply,
    /// Ask for a snapshot at `applied + 1`: the snapshot claims an index its image does not
    /// contain (breaks S1, S2; property 9 must catch it).
    SnapshotBeyondApplied,
    /// Compact the log up to two entries past the newest snapshot (breaks S3, S4: an entry
    /// neither the log nor a snapshot holds; property 10 must catch it).
    CompactPastSnapshot,
    /// The entry cache never evicts (breaks S9: the core's memory grows with the log; the
    /// simulator's cache bound must catch it).
    NeverEvictCache,
    /// A leader serves a read at its commit index without confirming a round (breaks Q1 (c):
    /// a deposed leader serves stale reads; property 14 must catch it).
    ReadWithoutRound,
    /// A leader appends a `Config` entry before it has committed an entry of its term (breaks
    /// M3, the 2015 fix; scenario S11 loses a committed entry).
    ConfigChangeBeforeTermCommit,
    /// A server that lost its hard state votes and stands as if it were fresh, ignoring its
    /// vote fence (breaks F9: it may grant a second vote in a term it voted in before the loss;
    /// the vote ledger, property 15, must catch it).
    IgnoreVoteFence,
    /// A server drops its log from its first faulty entry and carries on (issue 13: the PAR
    /// "Truncate" reaction, FAST'18 Fig. 2; breaks F1, F5): it then votes for a candidate that
    /// lacks an entry it acknowledged, and a committed entry can be lost (scenario S17).
    TruncateFaultyEntries,
}

#[cfg(feature = "sim")]
impl InjectedBug {
    /// Every injected bug, in the order of their trace codes.
    pub const ALL: [InjectedBug; 10] = [
        InjectedBug::CommitOlderTermByCount,
        InjectedBug::GrantTwoVotesPerTerm,
        InjectedBug::CountStaleAppendReply,
        InjectedBug::SnapshotBeyondApplied,
        InjectedBug::CompactPastSnapshot,
        InjectedBug::NeverEvictCache,
        InjectedBug::ReadWithoutRound,
        InjectedBug::ConfigChangeBeforeTermCommit,
        InjectedBug::IgnoreVoteFence,
        InjectedBug::TruncateFaultyEntries,
    ];

    /// This bug's byte in an input trace (0 is "none").
    #[must_use]
    pub fn code(self) -> u8 {
        match self {
            InjectedBug::CommitOlderTermByCount => 1,
            InjectedBug::GrantTwoVotesPerTerm => 2,
            InjectedBug::CountStaleAppendReply => 3,
            InjectedBug::SnapshotBeyondApplied => 4,
            InjectedBug::CompactPastSnapshot => 5,
            InjectedBug::NeverEvictCache => 6,
            InjectedBug::ReadWithoutRound => 7,
            InjectedBug::ConfigChangeBeforeTermCommit => 8,
            InjectedBug::IgnoreVoteFence => 9,
            InjectedBug::TruncateFaultyEntries => 10,
        }
    }

    /// The bug with trace byte `code`, if any.
    #[must_use]
    pub fn from_code(code: u8) -> Option<InjectedBug> {
        InjectedBug::ALL.into_iter().find(|bug| bug.code() == code)
    }
}

/// Whether the node `$node` runs with injected bug `$bug`, or with any bug when no bug is
/// named (always `false` without `sim`).
#[cfg(feature = "sim")]
macro_rules! injected {
    ($node:expr, $bug:ident) => {
        $node.injected_bug == Some($crate::injected::InjectedBug::$bug)
    };
    ($node:expr) => {
        $node.injected_bug.is_some()
    };
}

/// Whether the node `$node` runs with injected bug `$bug`, or with any bug when no bug is
/// named (always `false` without `sim`).
#[cfg(not(feature = "sim"))]
macro_rules! injected {
    ($node:expr, $bug:ident) => {
        false
    };
    ($node:expr) => {
        false
    };
}

pub(crate) use injected;
