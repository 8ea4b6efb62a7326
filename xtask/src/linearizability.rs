//! Checkers for a cluster test's history: linearizability of the key-value operations and the
//! appends, and the append-log check (every acknowledged append committed exactly once, the same
//! committed log on every node).
//!
//! The linearizability search is Wing & Gong's, with Lowe's memoization as in Porcupine: the
//! history becomes a doubly linked list of call and return events in time order; the search
//! repeatedly linearizes a pending call whose effect the sequential model accepts, and
//! backtracks when it meets the return of an operation it has not linearized. A set of
//! (linearized operations, model state) pairs already explored prunes repeated work. A history is
//! linearizable iff it is for each key separately (linearizability is compositional), so the
//! search runs per key, with all appends forming one more partition.
//!
//! Outcomes: `failed` operations were definitely not applied and are left out. `indeterminate`
//! operations return at +∞, so the search may linearize them at any point after their invocation
//! or after everything else (which is the same as never, since their reply is unknown).
//! Indeterminate reads and appends constrain nothing and are left out.
//!
//! A violation is reported as its smallest failing window (see `window`): the few operations on
//! the key around the one that cannot take effect, with their times and results.
//!
//! Invariant: the search is bounded by a step limit per partition; when the limit is reached the
//! verdict is [`Verdict::Unknown`], never a hang and never a guess.

mod window;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::history::{Command, History, HistoryError, OpId, Operation, Outcome, Reply};

/// The default step limit per partition: a few seconds of search at most.
pub const STEPS_MAX_DEFAULT: u64 = 5_000_000;

/// The result of a linearizability check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every partition has a linearization.
    Linearizable,
    /// A partition has none; the first such partition, in key order.
    NotLinearizable(Violation),
    /// No violation found, but the search hit its step limit on this partition.
    Unknown {
        /// The partition (`key "k"` or `appends`).
        partition: String,
        /// Steps spent on it.
        steps: u64,
    },
}

/// The most operations of a window that a violation's message lists; the rest are counted.
pub const WINDOW_ROWS_MAX: usize = 30;

/// Evidence that a partition has no linearization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The partition (`key "k"` or `appends`).
    pub partition: String,
    /// The operation whose return the search reached without being able to linearize it:
    /// every way of ordering the operations before it failed.
    pub blocked_on: OpId,
    /// The smallest failing window found: operations of the partition, in invocation order,
    /// that cannot be linearized by themselves; `blocked_on` is one of them.
    pub window: Vec<Operation>,
    /// Whether the window starts at the start of the history (the key absent) rather than at a
    /// point where nothing was in flight (any state before it).
    pub window_from_start: bool,
    /// How many operations the partition has.
    pub partition_op_count: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = if self.window_from_start {
            "from the start of the history"
        } else {
            "whatever came before them"
        };
        writeln!(
            f,
            "{} is not linearizable: operation {} cannot take effect before it returns",
            self.partition, self.blocked_on.0
        )?;
        writeln!(
            f,
            "smallest failing window: {} of the {} operations on {}, which cannot be linearized \
             by themselves, {since}:",
            self.window.len(),
            self.partition_op_count,
            self.partition
        )?;
        let blocked = self
            .window
            .iter()
            .position(|op| op.id == self.blocked_on)
            .unwrap_or(0);
        // Rows around the blocked operation, most of them before it (they set the state).
        let after = (self.window.len() - blocked - 1).min(WINDOW_ROWS_MAX / 4);
        let first = (blocked + after + 1).saturating_sub(WINDOW_ROWS_MAX);
        let end = (first + WINDOW_ROWS_MAX).min(self.window.len());
        if 0 < first {
            writeln!(
                f,
                "  ... {first} earlier operations of the window not shown"
            )?;
        }
        writeln!(
            f,
            "  {:>8} {:>6} {:>12} {:>12}  {:<28} result",
            "id", "client", "invoke_us", "complete_us", "command"
        )?;
        for op in &self.window[first..end] {
            let mark = if op.id == self.blocked_on { '>' } else { ' ' };
            let complete = op
                .complete_us()
                .map_or_else(|| "-".to_owned(), |us| us.to_string());
            writeln!(
                f,
                "{mark} {:>8} {:>6} {:>12} {complete:>12}  {:<28} {}",
                op.id.0,
                op.client.0,
                op.invoke_us,
                command_text(&op.command),
                outcome_text(&op.outcome)
            )?;
        }
        if end < self.window.len() {
            writeln!(
                f,
                "  ... {} later operations of the window not shown",
                self.window.len() - end
            )?;
        }
        write!(f, "(> marks the operation that cannot take effect)")
    }
}

/// A command as one short line: `put "a"`, `cas absent -> "b"`, `get`.
fn command_text(command: &Command) -> String {
    let value =
        |value: Option<&String>| value.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"));
    match command {
        Command::Put { value: new, .. } => format!("put {new:?}"),
        Command::Get { .. } => "get".to_owned(),
        Command::Cas { expected, new, .. } => {
            format!("cas {} -> {new:?}", value(expected.as_ref()))
        }
        Command::Delete { .. } => "delete".to_owned(),
        Command::Append { value: new } => format!("append {new:?}"),
    }
}

/// An outcome as one short word or phrase: `written`, `read "a"`, `not swapped`.
fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Ok { reply, .. } => match reply {
            Reply::Written => "written".to_owned(),
            Reply::Read { value: Some(value) } => format!("read {value:?}"),
            Reply::Read { value: None } => "read absent".to_owned(),
            Reply::Cas { swapped: true } => "swapped".to_owned(),
            Reply::Cas { swapped: false } => "not swapped".to_owned(),
            Reply::Appended { index } => format!("appended at index {index}"),
        },
        Outcome::Failed { .. } => "failed".to_owned(),
        Outcome::Indeterminate => "indeterminate (no answer)".to_owned(),
    }
}

/// Checks `history` for linearizability against a key-value store with an append-only log,
/// spending at most `steps_max` search steps per partition.
pub fn check_history(history: &History, steps_max: u64) -> Result<Verdict, HistoryError> {
    history.validate()?;
    let mut partitions: BTreeMap<Partition, Vec<&Operation>> = BTreeMap::new();
    for op in &history.ops {
        if let Some(partition) = partition_of(op) {
            partitions.entry(partition).or_default().push(op);
        }
    }
    let mut unknown = None;
    for (partition, ops) in &partitions {
        match check_partition(partition, ops, steps_max) {
            Verdict::Linearizable => {}
            violation @ Verdict::NotLinearizable(_) => return Ok(violation),
            unknown_verdict @ Verdict::Unknown { .. } => {
                unknown.get_or_insert(unknown_verdict);
            }
        }
    }
    Ok(unknown.unwrap_or(Verdict::Linearizable))
}

/// One node's committed log, restricted to the entries that are client appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedLog {
    /// The node's name, for messages.
    pub node: String,
    /// `(log index, appended value)` for each committed append entry, in log order.
    pub entries: Vec<(u64, String)>,
}

/// Something wrong with the committed logs relative to the history (issue 6 check 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendLogProblem {
    /// Two appends in the history carry the same value, so the log cannot be matched to them.
    AmbiguousValue(String),
    /// A node's log indices do not strictly increase.
    IndexNotIncreasing {
        /// The node.
        node: String,
        /// Position in its entry list.
        position: usize,
    },
    /// A node's committed log differs from the first node's.
    LogsDiffer {
        /// The first node.
        reference: String,
        /// The node that differs.
        node: String,
        /// First position where they differ (or where the shorter one ends).
        position: usize,
    },
    /// A value is in the committed log more than once.
    Duplicate {
        /// The value.
        value: String,
        /// Every index it appears at.
        indices: Vec<u64>,
    },
    /// An acknowledged append is not in the committed log.
    AcknowledgedMissing {
        /// The operation.
        op: OpId,
        /// Its value.
        value: String,
    },
    /// An acknowledged append is in the log at another index than the one acknowledged.
    WrongIndex {
        /// The operation.
        op: OpId,
        /// The index in the reply.
        acknowledged: u64,
        /// The index in the log.
        committed: u64,
    },
    /// An append that failed (definitely not applied) is in the log.
    FailedButCommitted {
        /// The operation.
        op: OpId,
        /// Its index in the log.
        index: u64,
    },
    /// The log holds a value no client appended.
    NeverAppended {
        /// The value.
        value: String,
        /// Its index in the log.
        index: u64,
    },
}

impl fmt::Display for AppendLogProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendLogProblem::AmbiguousValue(value) => {
                write!(f, "two appends in the history carry the value {value:?}")
            }
            AppendLogProblem::IndexNotIncreasing { node, position } => {
                write!(f, "{node}: log index does not increase at entry {position}")
            }
            AppendLogProblem::LogsDiffer {
                reference,
                node,
                position,
            } => {
                write!(
                    f,
                    "{node}'s committed log differs from {reference}'s at entry {position}"
                )
            }
            AppendLogProblem::Duplicate { value, indices } => {
                write!(
                    f,
                    "value {value:?} is committed more than once, at indices {indices:?}"
                )
            }
            AppendLogProblem::AcknowledgedMissing { op, value } => {
                write!(
                    f,
                    "acknowledged append {} ({value:?}) is not committed",
                    op.0
                )
            }
            AppendLogProblem::WrongIndex {
                op,
                acknowledged,
                committed,
            } => write!(
                f,
                "append {} was acknowledged at index {acknowledged} but committed at {committed}",
                op.0
            ),
            AppendLogProblem::FailedButCommitted { op, index } => {
                write!(
                    f,
                    "append {} failed but is committed at index {index}",
                    op.0
                )
            }
            AppendLogProblem::NeverAppended { value, index } => {
                write!(f, "index {index} holds {value:?}, which no client appended")
            }
        }
    }
}

/// Checks the committed logs against the history's appends: the same log on every node, each
/// value at most once, every acknowledged append present once at its acknowledged index, no
/// failed append present, nothing present that no client appended. Indeterminate appends may be
/// present (once) or absent. An empty result means the check passed.
pub fn check_append_log(history: &History, logs: &[CommittedLog]) -> Vec<AppendLogProblem> {
    let mut problems = Vec::new();
    let mut appends: HashMap<&str, &Operation> = HashMap::new();
    for op in &history.ops {
        if let Command::Append { value } = &op.command
            && appends.insert(value.as_str(), op).is_some()
        {
            problems.push(AppendLogProblem::AmbiguousValue(value.clone()));
        }
    }
    // With no node's log at all, nothing is committed: every acknowledged append is missing.
    let nothing = CommittedLog {
        node: "no node".to_owned(),
        entries: Vec::new(),
    };
    let reference = logs.first().unwrap_or(&nothing);
    compare_logs(reference, logs, &mut problems);
    let mut committed: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for (index, value) in &reference.entries {
        committed.entry(value.as_str()).or_default().push(*index);
    }
    for (value, indices) in &committed {
        if 1 < indices.len() {
            let value = (*value).to_owned();
            problems.push(AppendLogProblem::Duplicate {
                value,
                indices: indices.clone(),
            });
        }
        match appends.get(value) {
            None => problems.push(AppendLogProblem::NeverAppended {
                value: (*value).to_owned(),
                index: indices[0],
            }),
            Some(op) if matches!(op.outcome, Outcome::Failed { .. }) => {
                problems.push(AppendLogProblem::FailedButCommitted {
                    op: op.id,
                    index: indices[0],
                })
            }
            Some(_) => {}
        }
    }
    let mut acknowledged: Vec<&&Operation> = appends.values().collect();
    acknowledged.sort_by_key(|op| op.id);
    for op in acknowledged {
        let (
            Command::Append { value },
            Outcome::Ok {
                reply: Reply::Appended { index },
                ..
            },
        ) = (&op.command, &op.outcome)
        else {
            continue;
        };
        match committed.get(value.as_str()) {
            None => problems.push(AppendLogProblem::AcknowledgedMissing {
                op: op.id,
                value: value.clone(),
            }),
            Some(indices) if !indices.contains(index) => {
                problems.push(AppendLogProblem::WrongIndex {
                    op: op.id,
                    acknowledged: *index,
                    committed: indices[0],
                })
            }
            Some(_) => {}
        }
    }
    problems
}

/// A partition of the history: one key, or the appends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Partition {
    Key(String),
    Appends,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Partition::Key(key) => write!(f, "key {key:?}"),
            Partition::Appends => write!(f, "appends"),
        }
    }
}

/// The model's view of one operation. Values are interned per partition: 0 is "absent", so the
/// model state of a key is one `u64` (and for the appends, the last index handed out).
#[derive(Debug, Clone, Copy)]
enum Step {
    Put(u64),
    Delete,
    Read(u64),
    CasSwapped { expected: u64, new: u64 },
    CasRefused { expected: u64 },
    CasUnknown { expected: u64, new: u64 },
    Append(u64),
}

impl Step {
    /// The sequential model: the state after this step, or `None` if the step's observed reply
    /// is impossible in `state`.
    fn apply(self, state: u64) -> Option<u64> {
        match self {
            Step::Put(value) => Some(value),
            Step::Delete => Some(0),
            Step::Read(value) => (value == state).then_some(state),
            Step::CasSwapped { expected, new } => (expected == state).then_some(new),
            Step::CasRefused { expected } => (expected != state).then_some(state),
            Step::CasUnknown { expected, new } => Some(if expected == state { new } else { state }),
            Step::Append(index) => (state < index).then_some(index),
        }
    }
}

fn partition_of(op: &Operation) -> Option<Partition> {
    let indeterminate = matches!(op.outcome, Outcome::Indeterminate);
    match (&op.command, &op.outcome) {
        (_, Outcome::Failed { .. }) => None,
        (Command::Get { .. } | Command::Append { .. }, _) if indeterminate => None,
        (Command::Append { .. }, _) => Some(Partition::Appends),
        (
            Command::Put { key, .. }
            | Command::Get { key }
            | Command::Cas { key, .. }
            | Command::Delete { key },
            _,
        ) => Some(Partition::Key(key.clone())),
    }
}

/// Interns values of one partition: `None` is 0, each distinct value gets the next number.
#[derive(Default)]
struct Interner<'a> {
    ids: HashMap<&'a str, u64>,
}

impl<'a> Interner<'a> {
    fn id(&mut self, value: Option<&'a str>) -> u64 {
        let Some(value) = value else { return 0 };
        let next = u64::try_from(self.ids.len()).unwrap_or(u64::MAX) + 1;
        *self.ids.entry(value).or_insert(next)
    }
}

/// The key's state before the first operation of a search.
#[derive(Debug, Clone, Copy)]
enum Start<'a> {
    /// Absent: the start of the history.
    Absent,
    /// A value no operation of the search names (all such values behave alike).
    Unnamed,
    /// This value.
    Value(&'a str),
}

/// What a search found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Search {
    Linearizable,
    /// No linearization: the return of this operation was reached before it could take effect.
    Blocked(OpId),
    /// The step limit was reached after this many steps.
    Unknown(u64),
}

/// The model step of `op`; `None` for an operation that constrains nothing (which
/// `partition_of` has already left out).
fn step_of<'a>(op: &'a Operation, interner: &mut Interner<'a>) -> Option<Step> {
    let reply = match &op.outcome {
        Outcome::Ok { reply, .. } => Some(reply),
        Outcome::Failed { .. } | Outcome::Indeterminate => None,
    };
    Some(match (&op.command, reply) {
        (Command::Put { value, .. }, _) => Step::Put(interner.id(Some(value))),
        (Command::Delete { .. }, _) => Step::Delete,
        (Command::Get { .. }, Some(Reply::Read { value })) => {
            Step::Read(interner.id(value.as_deref()))
        }
        (Command::Cas { expected, new, .. }, reply) => {
            let expected = interner.id(expected.as_deref());
            let new = interner.id(Some(new));
            match reply {
                Some(Reply::Cas { swapped: true }) => Step::CasSwapped { expected, new },
                Some(_) => Step::CasRefused { expected },
                None => Step::CasUnknown { expected, new },
            }
        }
        (Command::Append { .. }, Some(Reply::Appended { index })) => Step::Append(*index),
        (Command::Get { .. } | Command::Append { .. }, _) => return None,
    })
}

const END: usize = usize::MAX;

/// The event list of one partition as a doubly linked list over arrays. Node 0 is the head
/// sentinel; nodes `1..` are events in time order. Lifting an operation removes its call and
/// return; unlifting in reverse (LIFO) order restores them, since removed nodes keep their links.
struct EventList {
    next: Vec<usize>,
    prev: Vec<usize>,
    /// For each node: the operation (index into the partition's ops) it belongs to.
    op: Vec<usize>,
    /// For each call node: its return node; `END` for return nodes and the head.
    return_of: Vec<usize>,
}

impl EventList {
    fn new(ops: &[&Operation]) -> Self {
        // (time, 0 for call / 1 for return, op): calls sort before returns at equal times, which
        // treats touching operations as concurrent (the permissive choice, as Porcupine does).
        let mut events: Vec<(u64, u8, usize)> = Vec::with_capacity(2 * ops.len());
        for (index, op) in ops.iter().enumerate() {
            events.push((op.invoke_us, 0, index));
            events.push((op.complete_us().unwrap_or(u64::MAX), 1, index));
        }
        events.sort_unstable();
        let count = events.len() + 1;
        let mut list = EventList {
            next: (1..=count)
                .map(|n| if n == count { END } else { n })
                .collect(),
            prev: (0..count).map(|n| n.wrapping_sub(1)).collect(),
            op: vec![END; count],
            return_of: vec![END; count],
        };
        let mut call_node = vec![END; ops.len()];
        for (position, &(_, kind, op)) in events.iter().enumerate() {
            let node = position + 1;
            list.op[node] = op;
            if kind == 0 {
                call_node[op] = node;
            } else {
                list.return_of[call_node[op]] = node;
            }
        }
        list
    }

    fn unlink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = next;
        if next != END {
            self.prev[next] = prev;
        }
    }

    fn relink(&mut self, node: usize) {
        let (prev, next) = (self.prev[node], self.next[node]);
        self.next[prev] = node;
        if next != END {
            self.prev[next] = node;
        }
    }

    fn lift(&mut self, call: usize) {
        self.unlink(call);
        self.unlink(self.return_of[call]);
    }

    fn unlift(&mut self, call: usize) {
        self.relink(self.return_of[call]);
        self.relink(call);
    }
}

/// Checks one partition: the appends directly (see [`check_appends`]), a key by the search,
/// which for a violation then looks for the smallest failing window.
fn check_partition(partition: &Partition, ops: &[&Operation], steps_max: u64) -> Verdict {
    if let Partition::Appends = partition {
        return check_appends(partition, ops);
    }
    match search_from(ops, steps_max, Start::Absent) {
        Search::Linearizable => Verdict::Linearizable,
        Search::Unknown(steps) => Verdict::Unknown {
            partition: partition.to_string(),
            steps,
        },
        Search::Blocked(blocked_on) => {
            let blocked = ops.iter().position(|op| op.id == blocked_on).unwrap_or(0);
            let (window, window_from_start) = window::key_window(ops, blocked, steps_max);
            Verdict::NotLinearizable(Violation {
                partition: partition.to_string(),
                blocked_on,
                window,
                window_from_start,
                partition_op_count: ops.len(),
            })
        }
    }
}

/// The appends partition without a search: every acknowledged append sets the model's state to
/// its index and needs a higher index than the state, so the only order the model accepts is by
/// index, and the history is linearizable iff that order fits real time: greedily placing each
/// append at the latest of its invocation and the previous append's point never passes its
/// completion (touching operations count as concurrent, as in the search). Linear in the
/// number of appends after sorting, where the search's memo of linearized sets is quadratic in
/// memory on a long run's single appends partition.
fn check_appends(partition: &Partition, ops: &[&Operation]) -> Verdict {
    let mut ordered: Vec<(u64, usize)> = ops
        .iter()
        .enumerate()
        .filter_map(|(position, op)| match op.outcome {
            Outcome::Ok {
                reply: Reply::Appended { index },
                ..
            } => Some((index, position)),
            _ => None,
        })
        .collect();
    ordered.sort_unstable();
    let mut point = 0u64;
    let mut last_index = None;
    for (rank, &(index, position)) in ordered.iter().enumerate() {
        let op = ops[position];
        point = point.max(op.invoke_us);
        let too_late = op
            .complete_us()
            .is_some_and(|complete_us| complete_us < point);
        if too_late || last_index == Some(index) {
            // Two appends witness it: this one, and the one before it in index order (same
            // index) or the one whose invocation set `point` (it began after this one ended).
            let other = if too_late {
                ordered[..rank]
                    .iter()
                    .map(|&(_, p)| p)
                    .max_by_key(|&p| ops[p].invoke_us)
            } else {
                rank.checked_sub(1).map(|previous| ordered[previous].1)
            };
            let mut window: Vec<Operation> = other
                .into_iter()
                .chain([position])
                .map(|p| ops[p].clone())
                .collect();
            window.sort_by_key(|op| (op.invoke_us, op.id));
            return Verdict::NotLinearizable(Violation {
                partition: partition.to_string(),
                blocked_on: op.id,
                window,
                window_from_start: false,
                partition_op_count: ops.len(),
            });
        }
        last_index = Some(index);
    }
    Verdict::Linearizable
}

/// Runs the bounded search on the operations of one key, from the state `start`.
fn search_from(ops: &[&Operation], steps_max: u64, start: Start<'_>) -> Search {
    let mut interner = Interner::default();
    let initial = match start {
        Start::Absent => 0,
        Start::Unnamed => u64::MAX,
        Start::Value(value) => interner.id(Some(value)),
    };
    let (ops, steps): (Vec<&Operation>, Vec<Step>) = ops
        .iter()
        .filter_map(|op| Some((*op, step_of(op, &mut interner)?)))
        .unzip();
    let ops = ops.as_slice();
    let mut list = EventList::new(ops);
    let mut linearized = vec![0u64; ops.len().div_ceil(64)];
    let mut seen: HashSet<(Vec<u64>, u64)> = HashSet::new();
    let mut stack: Vec<(usize, u64)> = Vec::new();
    // The deepest point the search reached: how many operations were linearized, and the
    // operation whose return stopped it there. That operation is the one reported.
    let mut deepest: Option<(usize, usize)> = None;
    let mut state = initial;
    let mut entry = list.next[0];
    let mut spent = 0u64;
    while list.next[0] != END {
        spent += 1;
        if steps_max < spent {
            return Search::Unknown(spent - 1);
        }
        let op = list.op[entry];
        if list.return_of[entry] != END {
            if let Some(next_state) = steps[op].apply(state) {
                linearized[op / 64] |= 1 << (op % 64);
                if seen.insert((linearized.clone(), next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    list.lift(entry);
                    entry = list.next[0];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            entry = list.next[entry];
        } else {
            // The return of an operation not yet linearized: undo the last choice. With nothing
            // to undo, every order has failed.
            if deepest.is_none_or(|(depth, _)| depth < stack.len()) {
                deepest = Some((stack.len(), op));
            }
            let Some((call, previous)) = stack.pop() else {
                let (_, blocked) = deepest.unwrap_or((0, op));
                return Search::Blocked(ops[blocked].id);
            };
            state = previous;
            let undone = list.op[call];
            linearized[undone / 64] &= !(1 << (undone % 64));
            list.unlift(call);
            entry = list.next[call];
        }
    }
    Search::Linearizable
}

/// Compares every node's log with the reference (the first), and checks index order.
fn compare_logs(
    reference: &CommittedLog,
    logs: &[CommittedLog],
    problems: &mut Vec<AppendLogProblem>,
) {
    for log in logs {
        let increasing = log
            .entries
            .windows(2)
            .position(|pair| pair[1].0 <= pair[0].0);
        if let Some(position) = increasing {
            let node = log.node.clone();
            problems.push(AppendLogProblem::IndexNotIncreasing {
                node,
                position: position + 1,
            });
        }
        if log.entries != reference.entries {
            let position = reference
                .entries
                .iter()
                .zip(&log.entries)
                .position(|(a, b)| a != b)
                .unwrap_or(reference.entries.len().min(log.entries.len()));
            problems.push(AppendLogProblem::LogsDiffer {
                reference: reference.node.clone(),
                node: log.node.clone(),
                position,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{ClientId, Completion};
    use crate::nemesis::SplitMix64;

    /// Builds histories by hand: `op(invoke, complete, command, reply)`.
    #[derive(Default)]
    struct Builder {
        ops: Vec<Operation>,
    }

    impl Builder {
        fn push(&mut self, invoke_us: u64, end: Option<u64>, command: Command, done: Completion) {
            let outcome = match (done, end) {
                (Completion::Ok(reply), Some(complete_us)) => Outcome::Ok { reply, complete_us },
                (Completion::Failed, Some(complete_us)) => Outcome::Failed { complete_us },
                _ => Outcome::Indeterminate,
            };
            let id = OpId(self.ops.len() as u64);
            let client = ClientId(id.0);
            self.ops.push(Operation {
                id,
                client,
                invoke_us,
                command,
                outcome,
            });
        }
        fn put(&mut self, at: (u64, u64), value: &str) -> &mut Self {
            let command = Command::Put {
                key: "k".into(),
                value: value.into(),
            };
            self.push(at.0, Some(at.1), command, Completion::Ok(Reply::Written));
            self
        }
        fn put_indeterminate(&mut self, invoke_us: u64, value: &str) -> &mut Self {
            let command = Command::Put {
                key: "k".into(),
                value: value.into(),
            };
            self.push(invoke_us, None, command, Completion::Indeterminate);
            self
        }
        fn put_failed(&mut self, at: (u64, u64), value: &str) -> &mut Self {
            let command = Command::Put {
                key: "k".into(),
                value: value.into(),
            };
            self.push(at.0, Some(at.1), command, Completion::Failed);
            self
        }
        fn get(&mut self, at: (u64, u64), value: Option<&str>) -> &mut Self {
            let reply = Reply::Read {
                value: value.map(String::from),
            };
            self.push(
                at.0,
                Some(at.1),
                Command::Get { key: "k".into() },
                Completion::Ok(reply),
            );
            self
        }
        fn delete(&mut self, at: (u64, u64)) -> &mut Self {
            let command = Command::Delete { key: "k".into() };
            self.push(at.0, Some(at.1), command, Completion::Ok(Reply::Written));
            self
        }
        fn cas(
            &mut self,
            at: (u64, u64),
            from: Option<&str>,
            to: &str,
            swapped: bool,
        ) -> &mut Self {
            let command = Command::Cas {
                key: "k".into(),
                expected: from.map(String::from),
                new: to.into(),
            };
            self.push(
                at.0,
                Some(at.1),
                command,
                Completion::Ok(Reply::Cas { swapped }),
            );
            self
        }
        fn append(&mut self, at: (u64, u64), value: &str, index: u64) -> &mut Self {
            let command = Command::Append {
                value: value.into(),
            };
            let reply = Reply::Appended { index };
            self.push(at.0, Some(at.1), command, Completion::Ok(reply));
            self
        }
        fn verdict(&self) -> Verdict {
            check_history(
                &History {
                    ops: self.ops.clone(),
                },
                STEPS_MAX_DEFAULT,
            )
            .unwrap()
        }
    }

    fn ok(builder: &Builder) {
        assert_eq!(
            builder.verdict(),
            Verdict::Linearizable,
            "{:#?}",
            builder.ops
        );
    }

    fn bad(builder: &Builder) -> Violation {
        match builder.verdict() {
            Verdict::NotLinearizable(violation) => violation,
            other => panic!("expected a violation, got {other:?} for {:#?}", builder.ops),
        }
    }

    #[test]
    fn sequential_register_is_linearizable() {
        ok(Builder::default()
            .get((0, 1), None)
            .put((2, 3), "a")
            .get((4, 5), Some("a"))
            .delete((6, 7))
            .get((8, 9), None));
    }

    #[test]
    fn stale_read_is_caught_and_explained() {
        let violation = bad(Builder::default()
            .put((0, 10), "a")
            .put((20, 30), "b")
            .get((40, 50), Some("a")));
        assert_eq!(violation.partition, "key \"k\"");
        assert_eq!(violation.blocked_on, OpId(2));
        let ids: Vec<OpId> = violation.window.iter().map(|op| op.id).collect();
        // From the quiescent point before `put "b"`: whatever the key held, the read is stale.
        assert_eq!(ids, vec![OpId(1), OpId(2)]);
        assert!(!violation.window_from_start);
        let text = violation.to_string();
        assert!(text.contains("operation 2 cannot take effect"), "{text}");
        assert!(text.contains("put \"b\""), "{text}");
        assert!(text.contains("read \"a\""), "{text}");
    }

    /// A long, healthy history of one key with one stale read near its end: the message names
    /// the few operations that show it, with their times and results, not thousands of ids.
    #[test]
    fn a_violation_prints_its_smallest_failing_window() {
        let mut builder = Builder::default();
        for round in 0..2_000u64 {
            let at = round * 100;
            let value = format!("v{round}");
            builder.put((at, at + 10), &value);
            builder.get((at + 20, at + 30), Some(&value));
        }
        // A write is acknowledged, then a read that starts after it sees the value before it.
        builder.put((200_000, 200_050), "x");
        builder.get((200_070, 200_080), Some("v1999"));
        let violation = bad(&builder);
        assert_eq!(violation.blocked_on, OpId(4_001));
        assert_eq!(violation.partition_op_count, 4_002);
        let ids: Vec<u64> = violation.window.iter().map(|op| op.id.0).collect();
        assert_eq!(ids, vec![4_000, 4_001]);
        let text = format!("{violation}");
        assert!(text.lines().count() <= 8, "{text}");
        for expected in [
            "operation 4001 cannot take effect",
            "2 of the 4002 operations",
            "put \"x\"",
            "200000",
            "200050",
            "written",
            "200070",
            "200080",
            "read \"v1999\"",
        ] {
            assert!(
                text.contains(expected),
                "{expected:?} missing from:\n{text}"
            );
        }
        assert!(
            text.lines()
                .any(|line| line.starts_with("> ") && line.contains("4001"))
        );
        assert!(!text.contains("3999"), "{text}");
    }

    #[test]
    fn a_window_too_long_to_list_is_cut_around_the_blocked_operation() {
        // A chain of overlapping reads leaves no quiescent point: the window is the whole
        // history up to the read that cannot take effect.
        let mut builder = Builder::default();
        builder.put((0, 20), "a");
        for round in 0..100u64 {
            let at = 10 + round * 10;
            builder.get((at, at + 15), Some("a"));
        }
        builder.get((1_010, 1_020), None);
        let violation = bad(&builder);
        assert_eq!(violation.window.len(), 102);
        assert!(violation.window_from_start);
        let text = violation.to_string();
        assert!(text.lines().count() <= WINDOW_ROWS_MAX + 6, "{text}");
        assert!(
            text.contains("earlier operations of the window not shown"),
            "{text}"
        );
        let blocked = violation.blocked_on.0.to_string();
        let marked = text.lines().find(|line| line.starts_with("> ")).unwrap();
        assert!(marked.contains(&blocked), "{text}");
    }

    #[test]
    fn lost_write_and_phantom_value_are_caught() {
        // A write acknowledged before the read began, then the read sees the old state.
        bad(Builder::default().put((0, 10), "a").get((20, 30), None));
        // A value nobody wrote.
        bad(Builder::default().put((0, 10), "a").get((5, 30), Some("z")));
        // A deleted value comes back.
        bad(Builder::default()
            .put((0, 1), "a")
            .delete((2, 3))
            .get((4, 5), Some("a")));
    }

    #[test]
    fn concurrent_overlapping_operations_may_take_effect_in_either_order() {
        // Both writes overlap both reads: a then b, reads see b then... any order consistent.
        ok(Builder::default()
            .put((0, 100), "a")
            .put((10, 90), "b")
            .get((20, 110), Some("a"))
            .get((30, 120), Some("b")));
        ok(Builder::default()
            .put((0, 100), "a")
            .put((10, 90), "b")
            .get((20, 110), Some("b"))
            .get((30, 120), Some("a")));
        // But two reads that do not overlap each other cannot flip back.
        bad(Builder::default()
            .put((0, 100), "a")
            .put((0, 100), "b")
            .get((10, 20), Some("a"))
            .get((30, 40), Some("b"))
            .get((50, 60), Some("a")));
        // Touching intervals count as concurrent.
        ok(Builder::default().put((0, 10), "a").get((10, 20), None));
    }

    #[test]
    fn cas_anomalies_are_caught() {
        ok(Builder::default()
            .cas((0, 1), None, "a", true)
            .cas((2, 3), None, "b", false)
            .cas((4, 5), Some("a"), "c", true)
            .get((6, 7), Some("c")));
        // Two sequential creations both succeed.
        bad(Builder::default()
            .cas((0, 1), None, "a", true)
            .cas((2, 3), None, "b", true));
        // A refused cas while the expected value was in place and nobody else wrote.
        bad(Builder::default()
            .put((0, 1), "a")
            .cas((2, 3), Some("a"), "b", false));
        // A successful cas whose effect is not seen afterwards.
        bad(Builder::default()
            .put((0, 1), "a")
            .cas((2, 3), Some("a"), "b", true)
            .get((4, 5), Some("a")));
    }

    #[test]
    fn indeterminate_operations_may_take_effect_or_not() {
        ok(Builder::default()
            .put((0, 1), "a")
            .put_indeterminate(2, "b")
            .get((10, 11), Some("b")));
        ok(Builder::default()
            .put((0, 1), "a")
            .put_indeterminate(2, "b")
            .get((10, 11), Some("a")));
        // Once seen, it cannot be undone...
        bad(Builder::default()
            .put((0, 1), "a")
            .put_indeterminate(2, "b")
            .get((10, 11), Some("b"))
            .get((12, 13), Some("a")));
        // ...and it cannot take effect before it was invoked.
        bad(Builder::default()
            .put((0, 1), "a")
            .get((2, 3), Some("b"))
            .put_indeterminate(4, "b"));
        // A failed write never takes effect.
        ok(Builder::default()
            .put((0, 1), "a")
            .put_failed((2, 3), "b")
            .get((4, 5), Some("a")));
        bad(Builder::default()
            .put((0, 1), "a")
            .put_failed((2, 3), "b")
            .get((4, 5), Some("b")));
    }

    #[test]
    fn keys_are_independent() {
        let mut builder = Builder::default();
        builder.put((0, 1), "a");
        let command = Command::Get {
            key: "other".into(),
        };
        builder.push(
            2,
            Some(3),
            command,
            Completion::Ok(Reply::Read { value: None }),
        );
        ok(&builder);
        let command = Command::Get {
            key: "other".into(),
        };
        let reply = Reply::Read {
            value: Some("a".into()),
        };
        builder.push(4, Some(5), command, Completion::Ok(reply));
        assert_eq!(bad(&builder).partition, "key \"other\"");
    }

    #[test]
    fn append_indices_follow_real_time_order() {
        ok(Builder::default()
            .append((0, 1), "a", 3)
            .append((2, 3), "b", 7));
        ok(Builder::default()
            .append((0, 10), "a", 7)
            .append((2, 9), "b", 3));
        bad(Builder::default()
            .append((0, 1), "a", 7)
            .append((2, 3), "b", 3));
        bad(Builder::default()
            .append((0, 5), "a", 3)
            .append((1, 6), "b", 3));
    }

    #[test]
    fn the_direct_append_check_agrees_with_the_search() {
        let mut rng = crate::nemesis::SplitMix64::new(6);
        for _ in 0..2_000 {
            let mut builder = Builder::default();
            for op in 0..rng.range_inclusive(1, 6) {
                let invoke = rng.below(20);
                let complete = invoke + rng.below(10);
                let index = rng.range_inclusive(1, 8);
                builder.append((invoke, complete), &format!("v{op}"), index);
            }
            let ops: Vec<&Operation> = builder.ops.iter().collect();
            let direct = check_appends(&Partition::Appends, &ops);
            let searched = search_from(&ops, STEPS_MAX_DEFAULT, Start::Absent);
            assert_eq!(
                matches!(direct, Verdict::Linearizable),
                searched == Search::Linearizable,
                "{:?}",
                builder.ops
            );
        }
    }

    #[test]
    fn the_step_limit_gives_unknown_not_a_hang() {
        // Many overlapping writes and a read at the end that nothing explains: the search must
        // try every order before giving up, which the limit cuts short.
        let mut builder = Builder::default();
        for i in 0..40 {
            builder.put((i, 1_000), &format!("v{i}"));
        }
        builder.get((2_000, 2_001), Some("never"));
        let history = History {
            ops: builder.ops.clone(),
        };
        match check_history(&history, 1_000).unwrap() {
            Verdict::Unknown { partition, steps } => {
                assert_eq!(partition, "key \"k\"");
                assert_eq!(steps, 1_000);
            }
            other => panic!("expected unknown, got {other:?}"),
        }
    }

    /// A history from a sequential execution of random operations on a few keys, where each
    /// operation's interval is stretched around its linearization point so that neighbours
    /// overlap. Linearizable by construction.
    fn random_history(rng: &mut SplitMix64, op_count: u64) -> History {
        let mut state: BTreeMap<String, String> = BTreeMap::new();
        let mut last_index = 0u64;
        let mut ops = Vec::new();
        for n in 0..op_count {
            let point = 1_000 + 10 * n;
            let invoke_us = point - rng.below(40);
            let complete_us = point + rng.below(40);
            let (command, reply, apply) = random_step(rng, &state, n, &mut last_index);
            let (outcome, apply) = match rng.below(20) {
                0 => (Outcome::Failed { complete_us }, false),
                1 => (Outcome::Indeterminate, apply && rng.chance(1, 2)),
                _ => (Outcome::Ok { reply, complete_us }, apply),
            };
            if apply {
                match &command {
                    Command::Delete { key } => state.remove(key),
                    Command::Put { key, value }
                    | Command::Cas {
                        key, new: value, ..
                    } => state.insert(key.clone(), value.clone()),
                    _ => None,
                };
            }
            let client = ClientId(n % 8);
            ops.push(Operation {
                id: OpId(n),
                client,
                invoke_us,
                command,
                outcome,
            });
        }
        History { ops }
    }

    /// One random operation `n` against `state`: the command, its reply if it takes effect at
    /// once, and whether it changes the store.
    fn random_step(
        rng: &mut SplitMix64,
        state: &BTreeMap<String, String>,
        n: u64,
        last_index: &mut u64,
    ) -> (Command, Reply, bool) {
        let keys = ["a", "b", "c"];
        let key = keys[rng.index(keys.len())].to_owned();
        let current = state.get(&key).cloned();
        let fresh = format!("v{n}");
        match rng.below(5) {
            0 => (Command::Put { key, value: fresh }, Reply::Written, true),
            1 => (Command::Delete { key }, Reply::Written, true),
            2 => {
                let expected = if rng.chance(1, 2) {
                    current.clone()
                } else {
                    Some("x".into())
                };
                let swapped = expected == current;
                (
                    Command::Cas {
                        key,
                        expected,
                        new: fresh,
                    },
                    Reply::Cas { swapped },
                    swapped,
                )
            }
            3 => {
                *last_index += 1 + rng.below(3);
                let reply = Reply::Appended { index: *last_index };
                (Command::Append { value: fresh }, reply, false)
            }
            _ => (Command::Get { key }, Reply::Read { value: current }, false),
        }
    }

    #[test]
    fn random_sequential_histories_are_linearizable() {
        let mut rng = SplitMix64::new(0x5EED);
        for round in 0..100 {
            let history = random_history(&mut rng, 200);
            let verdict = check_history(&history, STEPS_MAX_DEFAULT).unwrap();
            assert_eq!(verdict, Verdict::Linearizable, "round {round}");
        }
    }

    #[test]
    fn mutated_reads_are_usually_caught() {
        let mut rng = SplitMix64::new(0xBAD);
        let (mut phantom_caught, mut swapped_caught, mut trials) = (0, 0, 0);
        for _ in 0..100 {
            let history = random_history(&mut rng, 200);
            let reads: Vec<usize> = (0..history.ops.len())
                .filter(|&i| {
                    matches!(
                        history.ops[i].outcome,
                        Outcome::Ok {
                            reply: Reply::Read { .. },
                            ..
                        }
                    )
                })
                .collect();
            let target = reads[rng.index(reads.len())];
            // A value that was never written must always be caught.
            let mut phantom = history.clone();
            set_read(&mut phantom.ops[target], Some("never-written".into()));
            if matches!(
                check_history(&phantom, STEPS_MAX_DEFAULT).unwrap(),
                Verdict::NotLinearizable(_)
            ) {
                phantom_caught += 1;
            }
            // A value from far away in the history (or absence) usually is.
            let mut swapped = history.clone();
            let Outcome::Ok {
                reply: Reply::Read { value },
                ..
            } = &history.ops[target].outcome
            else {
                unreachable!()
            };
            let other = if value.is_some() {
                None
            } else {
                Some(format!("v{}", rng.below(200)))
            };
            set_read(&mut swapped.ops[target], other);
            trials += 1;
            if matches!(
                check_history(&swapped, STEPS_MAX_DEFAULT).unwrap(),
                Verdict::NotLinearizable(_)
            ) {
                swapped_caught += 1;
            }
        }
        assert_eq!(phantom_caught, trials);
        // Some mutations are legal (the read overlaps a write of the new value); with this
        // generator about 70% are not, and all of those must be caught (the oracle test below
        // checks exactness on small histories).
        assert!(
            60 <= swapped_caught,
            "only {swapped_caught} of {trials} mutations caught"
        );
    }

    /// A brute-force oracle: tries every order of the operations that respects real time, with
    /// every subset of the indeterminate ones, against a sequential store with several keys.
    fn oracle(history: &History) -> bool {
        let ops: Vec<&Operation> = history
            .ops
            .iter()
            .filter(|op| !matches!(op.outcome, Outcome::Failed { .. }))
            .collect();
        let mut placed = vec![false; ops.len()];
        oracle_search(&ops, &mut placed, &BTreeMap::new(), 0)
    }

    fn oracle_search(
        ops: &[&Operation],
        placed: &mut [bool],
        store: &BTreeMap<String, String>,
        last_index: u64,
    ) -> bool {
        let all_definite_placed = ops
            .iter()
            .zip(placed.iter())
            .all(|(op, &placed)| placed || matches!(op.outcome, Outcome::Indeterminate));
        if all_definite_placed {
            return true;
        }
        for i in 0..ops.len() {
            let blocked = (0..ops.len()).any(|j| {
                !placed[j] && j != i && ops[j].complete_us().is_some_and(|c| c < ops[i].invoke_us)
            });
            if placed[i] || blocked {
                continue;
            }
            let Some((store, last_index)) = oracle_step(ops[i], store, last_index) else {
                continue;
            };
            placed[i] = true;
            let found = oracle_search(ops, placed, &store, last_index);
            placed[i] = false;
            if found {
                return true;
            }
        }
        false
    }

    fn oracle_step(
        op: &Operation,
        store: &BTreeMap<String, String>,
        last_index: u64,
    ) -> Option<(BTreeMap<String, String>, u64)> {
        let reply = match &op.outcome {
            Outcome::Ok { reply, .. } => Some(reply),
            _ => None,
        };
        let mut store = store.clone();
        match (&op.command, reply) {
            (Command::Put { key, value }, _) => {
                store.insert(key.clone(), value.clone());
            }
            (Command::Delete { key }, _) => {
                store.remove(key);
            }
            (Command::Get { key }, Some(Reply::Read { value })) => {
                if store.get(key) != value.as_ref() {
                    return None;
                }
            }
            (Command::Get { .. }, _) => {}
            (Command::Cas { key, expected, new }, reply) => {
                let matches = store.get(key) == expected.as_ref();
                if let Some(Reply::Cas { swapped }) = reply
                    && *swapped != matches
                {
                    return None;
                }
                if matches {
                    store.insert(key.clone(), new.clone());
                }
            }
            (Command::Append { .. }, Some(Reply::Appended { index })) => {
                if *index <= last_index {
                    return None;
                }
                return Some((store, *index));
            }
            (Command::Append { .. }, _) => {}
        }
        Some((store, last_index))
    }

    /// Small random histories that are often not linearizable: random intervals, values from a
    /// small set, two keys.
    fn small_random_history(rng: &mut SplitMix64) -> History {
        let values = ["1", "2", "3"];
        let value = |rng: &mut SplitMix64| values[rng.index(values.len())].to_owned();
        let mut ops = Vec::new();
        for n in 0..rng.range_inclusive(2, 7) {
            let key = if rng.chance(1, 4) { "b" } else { "a" }.to_owned();
            let invoke_us = rng.below(50);
            let complete_us = invoke_us + rng.below(25);
            let maybe = |rng: &mut SplitMix64| rng.chance(2, 3).then(|| value(rng));
            let (command, reply) = match rng.below(6) {
                0 | 1 => (
                    Command::Put {
                        key,
                        value: value(rng),
                    },
                    Reply::Written,
                ),
                2 => (Command::Delete { key }, Reply::Written),
                3 => {
                    let command = Command::Cas {
                        key,
                        expected: maybe(rng),
                        new: value(rng),
                    };
                    (
                        command,
                        Reply::Cas {
                            swapped: rng.chance(1, 2),
                        },
                    )
                }
                4 => (
                    Command::Append {
                        value: format!("e{n}"),
                    },
                    Reply::Appended {
                        index: rng.range_inclusive(1, 4),
                    },
                ),
                _ => (Command::Get { key }, Reply::Read { value: maybe(rng) }),
            };
            let outcome = match rng.below(8) {
                0 => Outcome::Indeterminate,
                1 => Outcome::Failed { complete_us },
                _ => Outcome::Ok { reply, complete_us },
            };
            ops.push(Operation {
                id: OpId(n),
                client: ClientId(n),
                invoke_us,
                command,
                outcome,
            });
        }
        History { ops }
    }

    #[test]
    fn checker_agrees_with_a_brute_force_oracle_on_small_histories() {
        let mut rng = SplitMix64::new(42);
        let mut counts = [0usize; 2];
        for round in 0..3_000 {
            let history = small_random_history(&mut rng);
            let expected = oracle(&history);
            let verdict = check_history(&history, STEPS_MAX_DEFAULT).unwrap();
            assert_eq!(
                verdict == Verdict::Linearizable,
                expected,
                "round {round}: {history:#?}"
            );
            counts[usize::from(expected)] += 1;
            // The window is a witness on its own: the oracle finds it not linearizable either.
            if let Verdict::NotLinearizable(violation) = &verdict {
                let ops = violation.window.clone();
                assert!(ops.iter().any(|op| op.id == violation.blocked_on));
                assert!(!oracle(&History { ops }), "round {round}: {violation}");
            }
        }
        // Both kinds occur often, so the comparison means something both ways.
        assert!(500 < counts[0] && 500 < counts[1], "{counts:?}");
    }

    fn set_read(op: &mut Operation, new: Option<String>) {
        if let Outcome::Ok {
            reply: Reply::Read { value },
            ..
        } = &mut op.outcome
        {
            *value = new;
        }
    }

    fn log(node: &str, entries: &[(u64, &str)]) -> CommittedLog {
        let entries = entries.iter().map(|&(i, v)| (i, v.to_owned())).collect();
        CommittedLog {
            node: node.into(),
            entries,
        }
    }

    fn appends() -> History {
        let mut builder = Builder::default();
        builder.append((0, 1), "a", 2).append((2, 3), "b", 4);
        let command = Command::Append { value: "c".into() };
        builder.push(4, None, command, Completion::Indeterminate);
        let command = Command::Append { value: "d".into() };
        builder.push(5, Some(6), command, Completion::Failed);
        History { ops: builder.ops }
    }

    #[test]
    fn append_log_accepts_a_correct_run_with_or_without_indeterminate_appends() {
        let with_c = [(2, "a"), (4, "b"), (5, "c")];
        let logs = [log("n0", &with_c), log("n1", &with_c), log("n2", &with_c)];
        assert_eq!(check_append_log(&appends(), &logs), vec![]);
        let without_c = [(2, "a"), (4, "b")];
        assert_eq!(
            check_append_log(&appends(), &[log("n0", &without_c)]),
            vec![]
        );
    }

    #[test]
    fn append_log_names_each_problem() {
        let history = appends();
        let problems = |logs: &[CommittedLog]| -> Vec<String> {
            check_append_log(&history, logs)
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(
            problems(&[]),
            [
                "acknowledged append 0 (\"a\") is not committed",
                "acknowledged append 1 (\"b\") is not committed",
            ]
        );
        assert_eq!(
            problems(&[log("n0", &[(2, "a")])]),
            ["acknowledged append 1 (\"b\") is not committed"]
        );
        assert_eq!(
            problems(&[log("n0", &[(2, "a"), (3, "b")])]),
            ["append 1 was acknowledged at index 4 but committed at 3"]
        );
        assert_eq!(
            problems(&[log("n0", &[(2, "a"), (4, "b"), (5, "a")])]),
            ["value \"a\" is committed more than once, at indices [2, 5]"]
        );
        assert_eq!(
            problems(&[log("n0", &[(2, "a"), (4, "b"), (6, "d"), (7, "z")])]),
            [
                "append 3 failed but is committed at index 6",
                "index 7 holds \"z\", which no client appended",
            ]
        );
        let good = [(2, "a"), (4, "b")];
        assert_eq!(
            problems(&[log("n0", &good), log("n1", &[(2, "a")])]),
            ["n1's committed log differs from n0's at entry 1"]
        );
        assert_eq!(
            problems(&[log("n0", &[(4, "b"), (2, "a")])]),
            ["n0: log index does not increase at entry 1"]
        );
        let mut ambiguous = appends();
        ambiguous.ops[1].command = Command::Append { value: "a".into() };
        let found = check_append_log(&ambiguous, &[log("n0", &good)]);
        assert!(
            found.contains(&AppendLogProblem::AmbiguousValue("a".into())),
            "{found:?}"
        );
    }
}
