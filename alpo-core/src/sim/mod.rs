//! The deterministic simulator: a whole ALPO cluster in one thread, driven from one `u64` seed,
//! with every safety property checked after every step.
//!
//! # What a run does
//! The seed picks the cluster size (3, 5 or 7), the protocol timing and options (deferral,
//! pre-vote, check-quorum), each node's clock offset and drift, the network's delay, loss,
//! duplication and reordering, fsync latency, the client's pace and the nemesis's pace
//! (`scenario.rs`). The run is a discrete-event simulation (`runner.rs`): events are ordered by
//! `(time, sequence number)` and every random choice comes from one seeded SplitMix64
//! (`rng.rs`), so the same seed replays the same run, step for step; `RunReport::trace_hash`
//! proves it.
//!
//! 1. **Fault phase** (`SimOptions::fault_phase_ms`): the nemesis crashes nodes (losing their
//!    unsynced writes, `disk.rs`) and restarts them, crashes the leader, pauses a node
//!    (SIGSTOP-like: its inputs wait, scenario S8), cuts the network into two sides, blocks
//!    single links one way, and changes the loss and duplication rates (`network.rs`). A client
//!    proposes unique payloads to the node it believes leads, following `NotLeader` hints and
//!    staying at most 256 entries ahead of what is applied (`client.rs`).
//!    The seed picks one of two nemesis profiles (`FaultProfile`): `Standard` (every kind of
//!    fault above) for three seeds in four, `LeaderChurn` (lossy links, one-entry Appends, new
//!    leaders crashed soon after election or their first commit, the raw material of S1) for
//!    the fourth. A third profile, `HoldAcrossTerms`, is chosen only by `SimOptions::profile`
//!    (`cargo xtask sim --profile HoldAcrossTerms`): leader churn on slow disks, with a network
//!    that holds messages back until their recipient has moved on by terms (`hold.rs`), so
//!    that stale messages meet the same leader elected again.
//! 2. **Healed phase**: every crashed node restarts and the network becomes perfect. Within
//!    `Scenario::liveness_bound_ns` (20 passive timeouts) a proposal made after the heal must be
//!    applied on every node.
//! 3. **Failover**: the leader is crashed; a new leader must be elected within the same bound.
//!    The terms started and the simulated milliseconds this took are the run's election sample
//!    (`ElectionSample`), which `cargo xtask sim` aggregates with deferral on and off, with
//!    the cold-start sample (all nodes start at once; the first leader's term and time), taken
//!    when no fault came before the first leader.
//!
//! # The checkers
//! After every step (`checkers/`, one file per property): `election_safety` (one leader per
//! term), `leader_append_only`, `log_matching`, `leader_completeness`, `state_machine_safety`
//! (same entry applied at each index, in order, once per incarnation), `durability` (a
//! committed entry never changes and stays in the synced logs of a majority), `monotonicity`
//! (terms; commit and applied index per incarnation), `index_order`
//! (`applied ≤ commit ≤ synced ≤ last`, and the engine's log equals the one its outputs wrote),
//! `client_proposals` (an accepted proposal is applied with its payload),
//! `snapshot_equivalence` (property 9: every state machine and every durable snapshot at index
//! `i` holds the state of applying entries `1..=i`), `compaction_bound` (property 10: no disk
//! starts its log past its snapshot's last index + 1; a start is at its snapshot), plus
//! `liveness`, `output_contract` (an output the driver cannot perform) and `panic` (an
//! assertion failed during a step, usually one of the engine's own).
//!
//! # The snapshot profile
//! With `SimOptions::snapshots` every node takes a snapshot every few entries, keeps few
//! entries when it compacts, and sends snapshots in small chunks (`scenario.rs`), so that
//! ordinary seeds take, compact, transfer and install snapshots while the nemesis crashes nodes
//! at every step of taking and installing (`runner/snapshots.rs`: a snapshot is durable only
//! after a random delay, partial files are lost on a crash, one received chunk in fifty is
//! damaged). The state machine is a digest of the applied entries (`state_machine.rs`); the
//! disk keeps, for the checkers, logical logs in which a snapshot stands for the entries it
//! covers (`disk.rs`). The profile's draws come from a generator of their own, so a seed
//! without it runs exactly as before.
//!
//! The checkers are shown to bite in `tests/sim.rs`: with `InjectedBug::GrantTwoVotesPerTerm`
//! `election_safety` fires within a few dozen seeds, and with
//! `InjectedBug::CommitOlderTermByCount` (scenario S1) `leader_completeness` or `durability`
//! fires within a few hundred three-node leader-churn seeds, and with
//! `InjectedBug::CountStaleAppendReply` (rule E6) `durability` fires within a few hundred
//! three-node `HoldAcrossTerms` seeds (and in none of thousands of the other profiles); in the
//! snapshot profile, `InjectedBug::SnapshotBeyondApplied` trips `snapshot_equivalence` and
//! `InjectedBug::CompactPastSnapshot` trips `compaction_bound`, each on the first seed;
//! `InjectedBug::NeverEvictCache` (rule S9) trips `cache_bound` in every seed (ordinary seeds
//! run with an entry cache of a few entries, so the core reads its log back all the time).
//!
//! # Reading a failure and replaying it
//! A failed run prints two lines:
//!
//! ```text
//! sim: seed=0x00000000000004d2 violated log_matching: node 2 wrote (index 7, term 3, …) …
//!      (at 812.004 ms)
//! replay: ALPO_SEED=0x00000000000004d2 cargo test -p alpo-core --test sim -- sim_replay \
//!      --nocapture
//! ```
//!
//! The first line names the seed, the property, the evidence (nodes, terms, indices, entries)
//! and the simulated time. Run the second line to replay exactly that run (seeds from
//! `cargo xtask sim` print a `cargo xtask sim --seed … [--nodes K] …` line instead, which
//! replays it with the soak's options). To see what happened, replay with the event log on:
//! `ALPO_SIM_LOG=1` for the test, `--log` for `cargo xtask sim --seed …`, which print every
//! send (with terms and indices), start, crash and nemesis action with its simulated time.
//! The run is deterministic, so every replay takes the same path to the violation, at the same
//! simulated time, and temporary prints in the engine show the same run.

pub mod checkers;
pub mod client;
pub mod clock;
pub mod disk;
pub mod hold;
pub mod network;
pub mod report;
pub mod rng;
pub mod runner;
pub mod scenario;
pub mod state_machine;
pub mod trace;

pub use report::{ElectionSample, RunReport, SoakSummary};
pub use runner::run_seed;
pub use scenario::{FaultProfile, Scenario, SimOptions};
