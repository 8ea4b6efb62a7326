//! The nemesis: a seeded, deterministic schedule of faults for a cluster test run.
//!
//! `schedule(&config)` is a pure function of its input: the same seed, node count, duration and
//! fault kinds always give the same list of timed actions, so a failing cluster run can be
//! replayed with the same fault sequence. The schedule never touches a process or a socket; the
//! runner executes each [`Action`] at its time (with the proxy and process handles it owns).
//!
//! Invariants the schedule keeps (and its tests check):
//! - every fault it starts is healed (node started again, resumed, network healed) no later than
//!   `duration_ms - settle_ms`, so the run ends with a quiet period with every node up;
//! - at any moment the nodes taken out (killed, paused, or on the minority side of a partition or
//!   isolated) number at most a minority, `(node_count - 1) / 2`, counted as if disjoint;
//! - at most one network fault (partition, isolation, one-way loss, slow link) is active at once,
//!   so healing the network never undoes another fault; at most one membership operation
//!   ([`MemberOp`]) at once, as the protocol allows one change at a time;
//! - the actions are sorted by time, and a fault's heal comes strictly after its start.
//!
//! "The leader" is resolved when the action runs ([`resolve_target`]), because the schedule is
//! made before the cluster exists; later actions refer to the fault by its [`FaultId`].

use std::fmt;

/// A small seeded PRNG (splitmix64): fast, good enough for schedules and test generators, and
/// identical on every platform, which is what replay needs.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`; `bound` must be positive. The modulo bias is below 2^-32 for the
    /// small bounds used here, which is irrelevant for test schedules.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(0 < bound, "invariant: below() needs a positive bound");
        self.next_u64() % bound
    }

    /// A number in `low..=high`; `low <= high`.
    pub fn range_inclusive(&mut self, low: u64, high: u64) -> u64 {
        assert!(low <= high, "invariant: range_inclusive needs low <= high");
        low + self.below(high - low + 1)
    }

    /// An index into a slice of `len` elements; `len` must be positive.
    pub fn index(&mut self, len: usize) -> usize {
        // Neither conversion can fail: usize is at most 64 bits here, and the draw is below `len`.
        let bound = u64::try_from(len).unwrap_or(u64::MAX);
        usize::try_from(self.below(bound)).unwrap_or(0)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }
}

/// The kinds of fault the nemesis can inject; a run enables a subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// `kill -9` a node (a named one or the leader) and start it again after a hold time.
    Kill,
    /// `SIGSTOP` a node (a named one or the leader), `SIGCONT` it after a hold time (S8).
    Pause,
    /// Network faults through the proxies: majority/minority split, isolate the leader, one-way
    /// loss between a pair, slow link between a pair.
    Partition,
    /// Crash-restart: `kill -9` and start again almost at once, exercising recovery from disk.
    Restart,
    /// Keep a follower killed for a long time (`lag_hold_ms`) while the others go on writing, so
    /// the leader compacts its log past the follower's and must catch it up by install-snapshot.
    Lag,
    /// Issue 13: `kill -9` a node, damage its files while it is down ([`DiskDamage`]), start it
    /// again: it must come back (fenced after a lost hard state, rule F9) and catch up.
    Disk,
    /// Issue 12: a membership operation ([`MemberOp`]): a leadership transfer, a rolling
    /// restart (SIGTERM each node in turn), and whatever else [`MemberOp`] lists.
    Membership,
}

/// What a [`FaultKind::Disk`] fault does to the killed node's files (issue 13), limited to
/// damage the node recovers from without its peers' help (repair of faulty entries, F5/F6, and
/// of a damaged snapshot whose log does not cover the older one, F11, need the core's part).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskDamage {
    /// Flip a byte of the `hard_state` file: the node starts fenced at its term ceiling (F9).
    HardState,
    /// Write garbage after the last record of the last segment, as a crash during an unsynced
    /// write leaves it: recovery truncates it (row `TornTail`), nothing durable is lost.
    TornTail,
}

impl fmt::Display for DiskDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskDamage::HardState => write!(f, "damage hard_state"),
            DiskDamage::TornTail => write!(f, "tear the log's tail"),
        }
    }
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Restart,
        FaultKind::Lag,
        FaultKind::Disk,
        FaultKind::Membership,
    ];

    /// Parses the names used on the command line (`kill`, `pause`, `partition`, `restart`,
    /// `lag`, `membership`).
    pub fn parse(name: &str) -> Option<FaultKind> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Restart => "restart",
            FaultKind::Lag => "lag",
            FaultKind::Disk => "disk",
            FaultKind::Membership => "membership",
        }
    }
}

/// A node's position in the cluster, `0..node_count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIndex(pub usize);

/// Names one fault of a schedule, so its heal action can refer to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FaultId(pub u32);

/// Which node a node fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// This node.
    Node(NodeIndex),
    /// Whichever node is leader when the action runs (see [`resolve_target`]).
    Leader,
    /// A node that is up and not the leader when the action runs (see [`resolve_target`]).
    Follower,
}

/// The shape of a network fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkFault {
    /// Cut every link between `minority` and the other nodes, both ways.
    Split {
        /// The nodes on the minority side (at most `(node_count - 1) / 2`).
        minority: Vec<NodeIndex>,
    },
    /// Cut every link to and from the node that is leader when the action runs.
    IsolateLeader,
    /// Lose every byte sent from `source` to `target`; the other direction still works.
    OneWayLoss {
        /// The sending side.
        source: NodeIndex,
        /// The receiving side.
        target: NodeIndex,
    },
    /// Delay every chunk on the links between `source` and `target` (both ways) by `latency_ms`.
    SlowLink {
        /// One end.
        source: NodeIndex,
        /// The other end.
        target: NodeIndex,
        /// Added delay per chunk, in milliseconds.
        latency_ms: u64,
    },
}

/// Issue 12: one membership operation of the `membership` nemesis. The runner carries it out
/// whole when its [`Action::Member`] runs (it blocks the schedule until done) and leaves the
/// membership as it found it: the same number of voters, every one of them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOp {
    /// `transfer_leader` to this node, or to the most up-to-date voter (`None`); the target
    /// may be the leader itself or down, and the refusal is then logged, not judged.
    TransferLeader(Option<NodeIndex>),
    /// SIGTERM each node in turn (a leader hands over first, rule T1), start it again, and
    /// wait until it has caught up before the next.
    RollingRestart,
    /// Remove the target (the leader hands over, rule M9), stop it, move its data aside, add
    /// it back under a new id as a learner at the same addresses, start it with `--join`, and
    /// promote it once it has caught up (rule M8).
    Replace(Target),
}

impl MemberOp {
    /// How many nodes the operation takes out at once (for the minority bound).
    pub fn nodes_out(self) -> usize {
        match self {
            MemberOp::TransferLeader(_) => 0,
            MemberOp::RollingRestart | MemberOp::Replace(_) => 1,
        }
    }

    /// The span the schedule plans for it: [`NemesisConfig::transfer_hold_ms`] for a transfer,
    /// [`NemesisConfig::member_hold_ms`] for the others.
    pub fn hold_ms(self, config: &NemesisConfig) -> u64 {
        match self {
            MemberOp::TransferLeader(_) => config.transfer_hold_ms,
            MemberOp::RollingRestart | MemberOp::Replace(_) => config.member_hold_ms,
        }
    }
}

impl fmt::Display for MemberOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemberOp::TransferLeader(None) => write!(f, "transfer leader"),
            MemberOp::TransferLeader(Some(node)) => write!(f, "transfer leader to n{}", node.0),
            MemberOp::RollingRestart => write!(f, "rolling restart"),
            MemberOp::Replace(target) => write!(f, "replace {target} under a new id"),
        }
    }
}

/// One thing the runner does at a point of the schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `kill -9` the target; the node stays down until the matching [`Action::Start`].
    Kill {
        /// The fault this action begins.
        fault: FaultId,
        /// Which node.
        target: Target,
    },
    /// Start again the node that fault `fault` killed (same data directory, same address).
    Start {
        /// The fault this action ends.
        fault: FaultId,
    },
    /// Issue 13: damage the files of the node that fault `fault` killed, then start it again.
    DamageAndStart {
        /// The fault this action ends.
        fault: FaultId,
        /// What to damage.
        damage: DiskDamage,
    },
    /// `SIGSTOP` the target.
    Pause {
        /// The fault this action begins.
        fault: FaultId,
        /// Which node.
        target: Target,
    },
    /// `SIGCONT` the node that fault `fault` paused.
    Resume {
        /// The fault this action ends.
        fault: FaultId,
    },
    /// Apply a network fault through the proxies.
    Network {
        /// The fault this action begins.
        fault: FaultId,
        /// What to break.
        shape: NetworkFault,
    },
    /// Heal every proxy (pass all bytes, no loss, no latency).
    HealNetwork {
        /// The fault this action ends.
        fault: FaultId,
    },
    /// Issue 12: carry out a membership operation, whole.
    Member {
        /// The fault this action begins.
        fault: FaultId,
        /// What to do.
        op: MemberOp,
    },
    /// The end of a membership operation's span (nothing left to undo: [`Action::Member`]
    /// leaves the membership as it found it).
    MemberDone {
        /// The fault this action ends.
        fault: FaultId,
    },
}

impl Action {
    /// The fault this action begins or ends.
    pub fn fault(&self) -> FaultId {
        match self {
            Action::Kill { fault, .. }
            | Action::Start { fault }
            | Action::DamageAndStart { fault, .. }
            | Action::Pause { fault, .. }
            | Action::Resume { fault }
            | Action::Network { fault, .. }
            | Action::HealNetwork { fault }
            | Action::Member { fault, .. }
            | Action::MemberDone { fault } => *fault,
        }
    }

    /// True for the actions that end a fault.
    pub fn is_heal(&self) -> bool {
        matches!(
            self,
            Action::Start { .. }
                | Action::DamageAndStart { .. }
                | Action::Resume { .. }
                | Action::HealNetwork { .. }
                | Action::MemberDone { .. }
        )
    }
}

/// An action and the time it runs, in milliseconds from the start of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedAction {
    /// When, in milliseconds after the run started.
    pub at_ms: u64,
    /// What.
    pub action: Action,
}

/// One fault from start to heal, for reports and the timeline's fault bands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSpan {
    /// Its id.
    pub fault: FaultId,
    /// Its kind.
    pub kind: FaultKind,
    /// When it starts, in milliseconds after the run started.
    pub start_ms: u64,
    /// When it is healed; `start_ms < end_ms`.
    pub end_ms: u64,
    /// A short human description (`kill leader`, `split {n1,n3} | rest`).
    pub label: String,
}

/// The inputs of a schedule. Every timing choice is explicit; [`NemesisConfig::new`] fills in
/// the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NemesisConfig {
    /// The seed; the schedule is a function of this config only.
    pub seed: u64,
    /// Number of nodes in the cluster.
    pub node_count: usize,
    /// Length of the run in milliseconds.
    pub duration_ms: u64,
    /// Quiet period at the end of the run with every fault healed; `settle_ms < duration_ms`.
    pub settle_ms: u64,
    /// Enabled kinds; empty means a fault-free run.
    pub kinds: Vec<FaultKind>,
    /// Time before the first fault and between fault starts, drawn uniformly, milliseconds.
    pub gap_ms_min: u64,
    /// Upper end of the gap range.
    pub gap_ms_max: u64,
    /// How long a kill, pause or network fault holds, drawn uniformly, milliseconds.
    pub hold_ms_min: u64,
    /// Upper end of the hold range.
    pub hold_ms_max: u64,
    /// Downtime of a crash-restart ([`FaultKind::Restart`]), milliseconds.
    pub restart_downtime_ms: u64,
    /// Downtime of a lagging follower ([`FaultKind::Lag`]), milliseconds: long enough for the
    /// others to write more than a snapshot interval plus the retained entries.
    pub lag_hold_ms: u64,
    /// Largest latency of a slow link, milliseconds (drawn from `1..=slow_link_ms_max`).
    pub slow_link_ms_max: u64,
    /// The span planned for a membership operation ([`FaultKind::Membership`]), milliseconds:
    /// the time a rolling restart of every node usually takes. The runner blocks until the
    /// operation is done, so a slower one only delays the actions after it.
    pub member_hold_ms: u64,
    /// The span planned for a leadership transfer, milliseconds.
    pub transfer_hold_ms: u64,
}

impl NemesisConfig {
    /// A config with the default timings: settle for a fifth of the run (at least 2 s, at most
    /// half the run), gaps of 0.3–2 s, holds of 0.5–3 s (shorter for short runs), 100 ms
    /// crash-restart downtime, a lagging follower down for a quarter of the run (0.5–8 s),
    /// slow links of up to 200 ms, 0.5 s for a leadership transfer and 1.5 s per node for the
    /// other membership operations.
    pub fn new(seed: u64, node_count: usize, duration_ms: u64, kinds: &[FaultKind]) -> Self {
        let settle_ms = (duration_ms / 5).max(2_000).min(duration_ms / 2);
        let hold_ms_max = 3_000.min((duration_ms / 4).max(500));
        Self {
            seed,
            node_count,
            duration_ms,
            settle_ms,
            kinds: kinds.to_vec(),
            gap_ms_min: 300,
            gap_ms_max: 2_000,
            hold_ms_min: 500.min(hold_ms_max),
            hold_ms_max,
            restart_downtime_ms: 100,
            lag_hold_ms: (duration_ms / 4).clamp(500, 8_000),
            slow_link_ms_max: 200,
            member_hold_ms: 1_500 * u64::try_from(node_count).unwrap_or(1),
            transfer_hold_ms: 500,
        }
    }

    /// The largest number of nodes that may be out at once: a minority.
    pub fn minority(&self) -> usize {
        self.node_count.saturating_sub(1) / 2
    }
}

/// A generated schedule: the actions in time order and the faults they make up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Actions sorted by `at_ms` (ties keep generation order; a fault's start precedes its heal).
    pub actions: Vec<TimedAction>,
    /// One entry per fault, sorted by start time.
    pub faults: Vec<FaultSpan>,
    /// Time by which every fault is healed: `duration_ms - settle_ms`.
    pub healed_by_ms: u64,
}

/// Why a config cannot produce a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NemesisError {
    /// `node_count` is zero.
    NoNodes,
    /// `settle_ms` is not below `duration_ms`.
    SettleTooLong {
        /// The configured settle time.
        settle_ms: u64,
        /// The configured duration.
        duration_ms: u64,
    },
    /// A `min > max` range.
    BadRange {
        /// Which field pair.
        field: &'static str,
    },
}

impl fmt::Display for NemesisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NemesisError::NoNodes => write!(f, "nemesis: node count must be at least 1"),
            NemesisError::SettleTooLong {
                settle_ms,
                duration_ms,
            } => write!(
                f,
                "nemesis: settle time {settle_ms} ms must be below the run duration \
                 {duration_ms} ms"
            ),
            NemesisError::BadRange { field } => {
                write!(
                    f,
                    "nemesis: {field}_min must not exceed {field}_max, and be positive"
                )
            }
        }
    }
}

impl std::error::Error for NemesisError {}

/// Generates the schedule for `config`. Pure: same config, same schedule.
pub fn schedule(config: &NemesisConfig) -> Result<Schedule, NemesisError> {
    validate(config)?;
    let healed_by_ms = config.duration_ms - config.settle_ms;
    let mut rng = SplitMix64::new(config.seed);
    let mut faults: Vec<(FaultSpan, Action, Action)> = Vec::new();
    let mut kinds = config.kinds.clone();
    kinds.sort();
    kinds.dedup();
    let mut at_ms = rng.range_inclusive(config.gap_ms_min, config.gap_ms_max);
    // Bounded: `at_ms` grows by at least `gap_ms_min >= 1` per iteration.
    while !kinds.is_empty() && at_ms < healed_by_ms {
        let kind = kinds[rng.index(kinds.len())];
        let id = FaultId(u32::try_from(faults.len()).unwrap_or(u32::MAX));
        let fault = plan_fault(
            config,
            &mut rng,
            Planned {
                kind,
                id,
                at_ms,
                healed_by_ms,
            },
        );
        if let Some(fault) = fault {
            let active: Vec<&(FaultSpan, Action, Action)> = faults
                .iter()
                .filter(|(span, _, _)| {
                    span.start_ms < fault.0.end_ms && fault.0.start_ms < span.end_ms
                })
                .collect();
            if fits(config, &active, &fault) {
                faults.push(fault);
            }
        }
        at_ms += rng.range_inclusive(config.gap_ms_min, config.gap_ms_max);
    }
    Ok(assemble(faults, healed_by_ms))
}

/// Picks the node a [`Target`] names when its action runs: the leader if it is known and up,
/// otherwise the lowest-numbered node that is up; a follower is the lowest-numbered node that is
/// up and not the known leader (the leader itself only if it is the one node up). `down[i]` says
/// node `i` is killed or paused. Returns `None` if every node is down.
pub fn resolve_target(
    target: Target,
    leader: Option<NodeIndex>,
    down: &[bool],
) -> Option<NodeIndex> {
    let is_up = |node: NodeIndex| down.get(node.0).is_some_and(|down| !down);
    match target {
        Target::Node(node) => Some(node),
        Target::Leader => match leader {
            Some(node) if is_up(node) => Some(node),
            _ => (0..down.len()).map(NodeIndex).find(|node| is_up(*node)),
        },
        Target::Follower => (0..down.len())
            .map(NodeIndex)
            .filter(|node| is_up(*node))
            .min_by_key(|node| Some(*node) == leader),
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Node(node) => write!(f, "n{}", node.0),
            Target::Leader => write!(f, "leader"),
            Target::Follower => write!(f, "a follower"),
        }
    }
}

impl fmt::Display for NetworkFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetworkFault::Split { minority } => {
                let names: Vec<String> = minority.iter().map(|n| format!("n{}", n.0)).collect();
                write!(f, "split {{{}}} | rest", names.join(","))
            }
            NetworkFault::IsolateLeader => write!(f, "isolate leader"),
            NetworkFault::OneWayLoss { source, target } => {
                write!(f, "lose n{} -> n{}", source.0, target.0)
            }
            NetworkFault::SlowLink {
                source,
                target,
                latency_ms,
            } => {
                write!(f, "slow n{} <-> n{} +{latency_ms}ms", source.0, target.0)
            }
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Kill { fault, target } => write!(f, "f{} kill -9 {target}", fault.0),
            Action::Start { fault } => write!(f, "f{} start the killed node", fault.0),
            Action::DamageAndStart { fault, damage } => {
                write!(f, "f{} {damage} of the killed node, start it", fault.0)
            }
            Action::Pause { fault, target } => write!(f, "f{} SIGSTOP {target}", fault.0),
            Action::Resume { fault } => write!(f, "f{} SIGCONT the paused node", fault.0),
            Action::Network { fault, shape } => write!(f, "f{} {shape}", fault.0),
            Action::HealNetwork { fault } => write!(f, "f{} heal the network", fault.0),
            Action::Member { fault, op } => write!(f, "f{} {op}", fault.0),
            Action::MemberDone { fault } => write!(f, "f{} membership operation over", fault.0),
        }
    }
}

/// What [`plan_fault`] is asked to plan.
struct Planned {
    kind: FaultKind,
    id: FaultId,
    at_ms: u64,
    healed_by_ms: u64,
}

fn validate(config: &NemesisConfig) -> Result<(), NemesisError> {
    if config.node_count == 0 {
        return Err(NemesisError::NoNodes);
    }
    if config.duration_ms <= config.settle_ms {
        return Err(NemesisError::SettleTooLong {
            settle_ms: config.settle_ms,
            duration_ms: config.duration_ms,
        });
    }
    let ranges = [
        ("gap_ms", config.gap_ms_min, config.gap_ms_max),
        ("hold_ms", config.hold_ms_min, config.hold_ms_max),
        ("slow_link_ms", 1, config.slow_link_ms_max),
    ];
    for (field, min, max) in ranges {
        if min == 0 || max < min {
            return Err(NemesisError::BadRange { field });
        }
    }
    Ok(())
}

/// Draws one fault of `kind` starting at `at_ms`; `None` if it cannot heal in time.
fn plan_fault(
    config: &NemesisConfig,
    rng: &mut SplitMix64,
    planned: Planned,
) -> Option<(FaultSpan, Action, Action)> {
    let Planned {
        kind,
        id: fault,
        at_ms,
        healed_by_ms,
    } = planned;
    let member = (kind == FaultKind::Membership).then(|| member_op(config, rng));
    let hold_ms = hold_ms(config, rng, kind, member);
    let end_ms = (at_ms + hold_ms).min(healed_by_ms);
    if end_ms <= at_ms {
        return None;
    }
    let target = if kind == FaultKind::Lag {
        Target::Follower
    } else if rng.chance(1, 2) {
        Target::Leader
    } else {
        Target::Node(NodeIndex(rng.index(config.node_count)))
    };
    let (begin, end, label) = match kind {
        FaultKind::Kill => (
            Action::Kill { fault, target },
            Action::Start { fault },
            format!("kill {target}"),
        ),
        FaultKind::Restart => (
            Action::Kill { fault, target },
            Action::Start { fault },
            format!("restart {target}"),
        ),
        FaultKind::Lag => (
            Action::Kill { fault, target },
            Action::Start { fault },
            format!("lag {target}"),
        ),
        FaultKind::Disk => disk_fault(fault, target, rng),
        FaultKind::Pause => (
            Action::Pause { fault, target },
            Action::Resume { fault },
            format!("pause {target}"),
        ),
        FaultKind::Membership => {
            let op = member?;
            (
                Action::Member { fault, op },
                Action::MemberDone { fault },
                op.to_string(),
            )
        }
        FaultKind::Partition => {
            let shape = network_fault(config, rng)?;
            let label = shape.to_string();
            (
                Action::Network { fault, shape },
                Action::HealNetwork { fault },
                label,
            )
        }
    };
    Some((
        FaultSpan {
            fault,
            kind,
            start_ms: at_ms,
            end_ms,
            label,
        },
        begin,
        end,
    ))
}

/// Issue 13: kill `target`, damage its files, start it again.
fn disk_fault(fault: FaultId, target: Target, rng: &mut SplitMix64) -> (Action, Action, String) {
    let damage = if rng.chance(1, 2) {
        DiskDamage::HardState
    } else {
        DiskDamage::TornTail
    };
    (
        Action::Kill { fault, target },
        Action::DamageAndStart { fault, damage },
        format!("disk {target}: {damage}"),
    )
}

/// Draws a network fault; `None` when the cluster is too small for any.
fn network_fault(config: &NemesisConfig, rng: &mut SplitMix64) -> Option<NetworkFault> {
    if config.node_count < 2 {
        return None;
    }
    let source = NodeIndex(rng.index(config.node_count));
    let offset = 1 + rng.index(config.node_count - 1);
    let target = NodeIndex((source.0 + offset) % config.node_count);
    Some(match rng.below(4) {
        0 if 0 < config.minority() => {
            let size = 1 + rng.index(config.minority());
            let mut nodes: Vec<NodeIndex> = (0..config.node_count).map(NodeIndex).collect();
            // Partial Fisher-Yates: the first `size` entries are a uniform random subset.
            for i in 0..size {
                let j = i + rng.index(nodes.len() - i);
                nodes.swap(i, j);
            }
            let mut minority = nodes[..size].to_vec();
            minority.sort();
            NetworkFault::Split { minority }
        }
        1 if 0 < config.minority() => NetworkFault::IsolateLeader,
        2 => NetworkFault::OneWayLoss { source, target },
        _ => {
            let latency_ms = rng.range_inclusive(1, config.slow_link_ms_max);
            NetworkFault::SlowLink {
                source,
                target,
                latency_ms,
            }
        }
    })
}

/// How long a fault of `kind` holds (a membership operation: `member`'s span).
fn hold_ms(
    config: &NemesisConfig,
    rng: &mut SplitMix64,
    kind: FaultKind,
    member: Option<MemberOp>,
) -> u64 {
    match kind {
        FaultKind::Restart | FaultKind::Disk => config.restart_downtime_ms.max(1),
        FaultKind::Lag => config.lag_hold_ms.max(1),
        FaultKind::Membership => member.map_or(1, |op| op.hold_ms(config).max(1)),
        _ => rng.range_inclusive(config.hold_ms_min, config.hold_ms_max),
    }
}

/// Draws a membership operation: a transfer (to the best voter, or a named node) one time in
/// two, else a rolling restart, or the replacement of a follower or of the leader.
fn member_op(config: &NemesisConfig, rng: &mut SplitMix64) -> MemberOp {
    match rng.below(8) {
        0 | 1 => MemberOp::TransferLeader(None),
        2 | 3 => MemberOp::TransferLeader(Some(NodeIndex(rng.index(config.node_count)))),
        4 | 5 => MemberOp::RollingRestart,
        6 => MemberOp::Replace(Target::Follower),
        _ => MemberOp::Replace(Target::Leader),
    }
}

/// How many nodes a fault takes out of the cluster, counted as if disjoint from other faults.
fn nodes_out(span: &FaultSpan, begin: &Action) -> usize {
    match begin {
        Action::Network {
            shape: NetworkFault::Split { minority },
            ..
        } => minority.len(),
        Action::Network {
            shape: NetworkFault::IsolateLeader,
            ..
        } => 1,
        Action::Network { .. } => 0,
        Action::Member { op, .. } => op.nodes_out(),
        _ => {
            debug_assert!(span.kind != FaultKind::Partition);
            1
        }
    }
}

/// Whether `candidate` may overlap the faults in `active` (those whose span intersects it):
/// the nodes out stay within a minority at every instant, and network faults do not overlap.
fn fits(
    config: &NemesisConfig,
    active: &[&(FaultSpan, Action, Action)],
    candidate: &(FaultSpan, Action, Action),
) -> bool {
    let (span, begin, _) = candidate;
    // One network fault at a time, and one membership operation at a time.
    for exclusive in [FaultKind::Partition, FaultKind::Membership] {
        if span.kind == exclusive && active.iter().any(|(other, _, _)| other.kind == exclusive) {
            return false;
        }
    }
    // Upper bound on the overlap: count every intersecting fault as out at once. This is
    // conservative (two faults may not overlap each other) but never under-counts.
    let out: usize = nodes_out(span, begin)
        + active
            .iter()
            .map(|(other, other_begin, _)| nodes_out(other, other_begin))
            .sum::<usize>();
    out <= config.minority()
}

fn assemble(faults: Vec<(FaultSpan, Action, Action)>, healed_by_ms: u64) -> Schedule {
    let mut actions = Vec::with_capacity(faults.len() * 2);
    let mut spans = Vec::with_capacity(faults.len());
    for (span, begin, end) in faults {
        actions.push(TimedAction {
            at_ms: span.start_ms,
            action: begin,
        });
        actions.push(TimedAction {
            at_ms: span.end_ms,
            action: end,
        });
        spans.push(span);
    }
    // Stable sort by time; at equal times heals go first, so a fault that starts at the instant
    // another ends never sees both active.
    actions.sort_by_key(|timed| (timed.at_ms, !timed.action.is_heal()));
    spans.sort_by_key(|span| span.start_ms);
    Schedule {
        actions,
        faults: spans,
        healed_by_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn config(seed: u64, node_count: usize) -> NemesisConfig {
        NemesisConfig::new(seed, node_count, 60_000, &FaultKind::ALL)
    }

    #[test]
    fn splitmix64_matches_the_reference_output() {
        // First outputs of the reference splitmix64 for seed 0 (Vigna's splitmix64.c).
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_schedule_and_different_seed_differs() {
        let a = schedule(&config(7, 5)).unwrap();
        let b = schedule(&config(7, 5)).unwrap();
        let c = schedule(&config(8, 5)).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.actions.is_empty());
    }

    #[test]
    fn every_fault_heals_before_the_settle_period() {
        for seed in 0..200 {
            for node_count in [1, 2, 3, 5, 7] {
                let config = config(seed, node_count);
                let schedule = schedule(&config).unwrap();
                assert_eq!(schedule.healed_by_ms, 60_000 - config.settle_ms);
                let mut open: BTreeMap<FaultId, u64> = BTreeMap::new();
                for timed in &schedule.actions {
                    assert!(
                        timed.at_ms <= schedule.healed_by_ms,
                        "seed {seed}: {timed:?}"
                    );
                    let fault = timed.action.fault();
                    if timed.action.is_heal() {
                        let start = open.remove(&fault).expect("heal of an open fault");
                        assert!(start < timed.at_ms, "seed {seed}: heal not after start");
                    } else {
                        assert!(open.insert(fault, timed.at_ms).is_none());
                    }
                }
                assert!(open.is_empty(), "seed {seed}: faults left open: {open:?}");
                assert!(
                    schedule
                        .actions
                        .windows(2)
                        .all(|w| w[0].at_ms <= w[1].at_ms)
                );
            }
        }
    }

    #[test]
    fn at_most_a_minority_is_out_and_one_network_fault_at_a_time() {
        for seed in 0..200 {
            for node_count in [1, 2, 3, 4, 5, 7] {
                let config = config(seed, node_count);
                let schedule = schedule(&config).unwrap();
                let mut out = 0usize;
                let mut network = 0usize;
                let mut begins: BTreeMap<FaultId, &Action> = BTreeMap::new();
                for timed in &schedule.actions {
                    let fault = timed.action.fault();
                    let begin = if timed.action.is_heal() {
                        begins.remove(&fault).unwrap()
                    } else {
                        begins.insert(fault, &timed.action);
                        &timed.action
                    };
                    let span = schedule.faults.iter().find(|s| s.fault == fault).unwrap();
                    let (n, w) = (
                        nodes_out(span, begin),
                        usize::from(span.kind == FaultKind::Partition),
                    );
                    if timed.action.is_heal() {
                        out -= n;
                        network -= w;
                    } else {
                        out += n;
                        network += w;
                    }
                    assert!(
                        out <= config.minority(),
                        "seed {seed} n {node_count}: {out} out"
                    );
                    assert!(network <= 1, "seed {seed}: two network faults at once");
                }
            }
        }
    }

    /// Issue 13: a disk fault kills its node, then damages it and starts it again; both kinds
    /// of damage are drawn.
    #[test]
    fn a_disk_fault_kills_then_damages_and_starts_with_both_damages_drawn() {
        let mut damages = std::collections::BTreeSet::new();
        for seed in 0..20 {
            let config = NemesisConfig::new(seed, 3, 40_000, &[FaultKind::Disk]);
            let schedule = schedule(&config).unwrap();
            assert!(!schedule.faults.is_empty());
            let mut killed = BTreeMap::new();
            for timed in &schedule.actions {
                match &timed.action {
                    Action::Kill { fault, .. } => {
                        killed.insert(*fault, timed.at_ms);
                    }
                    Action::DamageAndStart { fault, damage } => {
                        let at = killed.remove(fault).expect("damaged after its kill");
                        assert!(at < timed.at_ms);
                        damages.insert(format!("{damage}"));
                    }
                    other => panic!("a disk-only schedule holds {other}"),
                }
            }
            assert!(killed.is_empty(), "every killed node is started again");
        }
        assert_eq!(damages.len(), 2, "{damages:?}");
    }

    #[test]
    fn only_enabled_kinds_appear_and_all_enabled_kinds_can_appear() {
        let mut seen = BTreeMap::new();
        for seed in 0..50 {
            let only = NemesisConfig::new(seed, 5, 60_000, &[FaultKind::Pause]);
            for span in schedule(&only).unwrap().faults {
                assert_eq!(span.kind, FaultKind::Pause);
            }
            for timed in schedule(&config(seed, 5)).unwrap().actions {
                let name = match timed.action {
                    Action::Network {
                        shape: NetworkFault::Split { .. },
                        ..
                    } => "split",
                    Action::Network {
                        shape: NetworkFault::IsolateLeader,
                        ..
                    } => "isolate",
                    Action::Network {
                        shape: NetworkFault::OneWayLoss { .. },
                        ..
                    } => "one-way",
                    Action::Network {
                        shape: NetworkFault::SlowLink { .. },
                        ..
                    } => "slow",
                    Action::Kill {
                        target: Target::Leader,
                        ..
                    } => "kill-leader",
                    Action::Kill { .. } => "kill-node",
                    Action::Pause { .. } => "pause",
                    Action::Member {
                        op: MemberOp::TransferLeader(_),
                        ..
                    } => "transfer",
                    Action::Member {
                        op: MemberOp::RollingRestart,
                        ..
                    } => "rolling-restart",
                    Action::Member {
                        op: MemberOp::Replace(_),
                        ..
                    } => "replace",
                    _ => "heal",
                };
                *seen.entry(name).or_insert(0) += 1;
            }
        }
        assert_eq!(seen.len(), 11, "{seen:?}");
        let none = NemesisConfig::new(1, 5, 60_000, &[]);
        assert!(schedule(&none).unwrap().actions.is_empty());
    }

    #[test]
    fn a_lagging_follower_is_killed_for_the_lag_hold() {
        let mut lags = 0;
        for seed in 0..50 {
            let config = NemesisConfig::new(seed, 3, 60_000, &[FaultKind::Lag]);
            assert_eq!(config.lag_hold_ms, 8_000);
            let schedule = schedule(&config).unwrap();
            for span in &schedule.faults {
                lags += 1;
                assert_eq!(span.label, "lag a follower");
                assert!(span.end_ms - span.start_ms <= config.lag_hold_ms);
                assert!(
                    span.end_ms - span.start_ms == config.lag_hold_ms
                        || span.end_ms == schedule.healed_by_ms
                );
            }
            for timed in &schedule.actions {
                assert!(matches!(
                    timed.action,
                    Action::Kill {
                        target: Target::Follower,
                        ..
                    } | Action::Start { .. }
                ));
            }
        }
        assert!(0 < lags);
        assert_eq!(FaultKind::parse("lag"), Some(FaultKind::Lag));
        assert!(
            FaultKind::ALL
                .iter()
                .all(|k| FaultKind::parse(k.name()) == Some(*k))
        );
    }

    #[test]
    fn membership_operations_hold_their_span_and_count_against_the_minority() {
        let mut ops = 0;
        for seed in 0..50 {
            let config = NemesisConfig::new(seed, 3, 60_000, &[FaultKind::Membership]);
            assert_eq!(config.member_hold_ms, 4_500);
            let schedule = schedule(&config).unwrap();
            for pair in schedule.faults.windows(2) {
                assert!(pair[0].end_ms <= pair[1].start_ms, "seed {seed}: overlap");
            }
            for span in &schedule.faults {
                assert_eq!(span.kind, FaultKind::Membership);
                let hold = span.end_ms - span.start_ms;
                if span.label.starts_with("transfer") {
                    assert!(hold <= config.transfer_hold_ms);
                } else {
                    assert!(hold <= config.member_hold_ms);
                }
            }
            for timed in &schedule.actions {
                match timed.action {
                    Action::Member { op, .. } => {
                        ops += 1;
                        if let MemberOp::TransferLeader(Some(node)) = op {
                            assert!(node.0 < 3);
                        }
                    }
                    Action::MemberDone { .. } => assert!(timed.action.is_heal()),
                    ref other => panic!("seed {seed}: {other:?} in a membership-only run"),
                }
            }
        }
        assert!(0 < ops);
        assert_eq!(MemberOp::RollingRestart.nodes_out(), 1);
        assert_eq!(MemberOp::Replace(Target::Leader).nodes_out(), 1);
        assert_eq!(
            MemberOp::Replace(Target::Follower).to_string(),
            "replace a follower under a new id"
        );
        assert_eq!(MemberOp::TransferLeader(None).nodes_out(), 0);
        assert_eq!(FaultKind::parse("membership"), Some(FaultKind::Membership));
        assert_eq!(
            MemberOp::TransferLeader(Some(NodeIndex(2))).to_string(),
            "transfer leader to n2"
        );
    }

    #[test]
    fn bad_configs_are_rejected_with_a_reason() {
        let mut bad = config(1, 3);
        bad.node_count = 0;
        assert_eq!(schedule(&bad), Err(NemesisError::NoNodes));
        let mut bad = config(1, 3);
        bad.settle_ms = bad.duration_ms;
        assert!(
            schedule(&bad)
                .unwrap_err()
                .to_string()
                .contains("settle time")
        );
        let mut bad = config(1, 3);
        bad.gap_ms_min = 0;
        assert_eq!(
            schedule(&bad),
            Err(NemesisError::BadRange { field: "gap_ms" })
        );
    }

    #[test]
    fn leader_targets_resolve_to_an_up_node() {
        let down = [false, true, false];
        assert_eq!(
            resolve_target(Target::Leader, Some(NodeIndex(2)), &down),
            Some(NodeIndex(2))
        );
        assert_eq!(
            resolve_target(Target::Leader, Some(NodeIndex(1)), &down),
            Some(NodeIndex(0))
        );
        assert_eq!(
            resolve_target(Target::Leader, None, &[true, false]),
            Some(NodeIndex(1))
        );
        assert_eq!(resolve_target(Target::Leader, None, &[true, true]), None);
        let up = [false, false, false];
        assert_eq!(
            resolve_target(Target::Follower, Some(NodeIndex(0)), &up),
            Some(NodeIndex(1))
        );
        assert_eq!(
            resolve_target(Target::Follower, Some(NodeIndex(1)), &up),
            Some(NodeIndex(0))
        );
        assert_eq!(
            resolve_target(Target::Follower, Some(NodeIndex(2)), &down),
            Some(NodeIndex(0))
        );
        assert_eq!(
            resolve_target(Target::Follower, Some(NodeIndex(0)), &[false, true]),
            Some(NodeIndex(0)),
            "the leader only when it is the one node up"
        );
        assert_eq!(
            resolve_target(Target::Node(NodeIndex(1)), None, &down),
            Some(NodeIndex(1))
        );
    }

    #[test]
    fn actions_print_readably() {
        let schedule = schedule(&config(3, 5)).unwrap();
        for timed in &schedule.actions {
            assert!(
                timed
                    .action
                    .to_string()
                    .starts_with(&format!("f{}", timed.action.fault().0))
            );
        }
        let split = NetworkFault::Split {
            minority: vec![NodeIndex(1), NodeIndex(3)],
        };
        assert_eq!(split.to_string(), "split {n1,n3} | rest");
    }
}
