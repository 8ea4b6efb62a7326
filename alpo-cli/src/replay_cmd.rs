//! `alpo replay DIR`: replays a node's flight-recorder traces (issue 15) into a fresh core,
//! checks that every output is the one the real node produced (the trace's digests), and
//! prints the node's history in the protocol's words: term changes, votes, role and leader
//! changes, commits.
//!
//! DIR is a node's data directory, its `trace` directory, or one trace file. A start of the node
//! left a run of files (`trace-<incarnation>-<ms>-<piece>`): the first begins with the core's
//! `start` record, each later one with a checkpoint of the core (trace format 5), and the ring
//! may have dropped the oldest. Each start replays from the newest file beginning at or before
//! `--from` (else from its oldest file present) to its last, each cut checked: the state
//! replayed up to it must be the recorded checkpoint. Times are the core's: seconds since that
//! start (the file name carries the start's wall-clock time). `--from`/`--to` also select what
//! is printed.
//!
//! Invariants: exit code 0 only when every file replayed with identical outputs and every cut
//! matched (a final record torn by a crash while recording is accepted and said); a
//! divergence or a damaged trace is an error naming the file and the byte offset.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use alpo_core::replay::{Replay, Step, check_continues, replay_watched};
use alpo_core::trace::trace_head;
use alpo_core::{LogIndex, NodeId, Role, Term};
use alpo_node::recorder::{TRACE_EXTENSION, start_of, trace_dir, trace_files};

use crate::json::Value;
use crate::output::stdout;

/// Arguments of `alpo replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// A node's data directory, its trace directory, or one trace file.
    path: PathBuf,
    /// Replay from the newest checkpoint at or before this many seconds since the start, and
    /// print only what happened from then on.
    #[arg(long, default_value_t = 0.0)]
    from: f64,
    /// Print only what happened before this many seconds since the start.
    #[arg(long)]
    to: Option<f64>,
    /// One JSON object a line instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let files = traces_of(&args.path)?;
    anyhow::ensure!(
        !files.is_empty(),
        "no trace files (*.{TRACE_EXTENSION}) in {}",
        args.path.display()
    );
    let mut out = stdout();
    let mut rest = files.as_slice();
    while let Some(first) = rest.first() {
        let start = start_of(first);
        let count = rest
            .iter()
            .take_while(|file| start_of(file) == start)
            .count();
        replay_start(&rest[..count], &args, &mut out)?;
        rest = &rest[count..];
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Replays one start's files (oldest first): from the newest beginning at or before `--from`,
/// else from the oldest, each next file checked to go on from the state replayed so far.
fn replay_start(files: &[PathBuf], args: &ReplayArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let from_ns = seconds_to_ns(args.from);
    let mut traces = Vec::new();
    let mut first = 0;
    for (index, path) in files.iter().enumerate() {
        let trace = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if let Ok(head) = trace_head(&trace)
            && head.now.as_nanos() <= from_ns
        {
            first = index;
        }
        traces.push(trace);
    }
    let mut previous: Option<Replay> = None;
    for (path, trace) in files.iter().zip(&traces).skip(first) {
        if let Some(previous) = &previous {
            check_continues(&previous.node, trace)
                .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        }
        let replay = replay_file(path, trace, args, previous.is_none(), out)?;
        previous = Some(replay);
    }
    Ok(())
}

/// The trace files `path` names, oldest start first.
fn traces_of(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let dir = if trace_dir(path).is_dir() {
        trace_dir(path)
    } else {
        path.to_path_buf()
    };
    let files = trace_files(&dir).with_context(|| format!("listing {}", dir.display()))?;
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

/// One thing that happened, in the protocol's words.
#[derive(Debug)]
enum Event {
    Term { from: Term, to: Term },
    Vote { term: Term, candidate: NodeId },
    Role { from: Role, to: Role, term: Term },
    Leader { leader: Option<NodeId>, term: Term },
    Commit { index: LogIndex },
}

/// What the node looked like after the last input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct View {
    term: Term,
    voted_for: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    commit: LogIndex,
}

fn view(step: &Step<'_>) -> View {
    let status = step.node.status();
    View {
        term: status.term,
        voted_for: step.node.hard_state().voted_for,
        role: status.role,
        leader: status.leader,
        commit: status.commit_index,
    }
}

/// What changed from `before` to `after`, in the order an operator reads it.
fn events(before: &View, after: &View) -> Vec<Event> {
    let mut events = Vec::new();
    if after.term != before.term {
        events.push(Event::Term {
            from: before.term,
            to: after.term,
        });
    }
    if let Some(candidate) = after.voted_for
        && (after.voted_for != before.voted_for || after.term != before.term)
    {
        events.push(Event::Vote {
            term: after.term,
            candidate,
        });
    }
    if after.role != before.role {
        events.push(Event::Role {
            from: before.role,
            to: after.role,
            term: after.term,
        });
    }
    if after.leader != before.leader {
        events.push(Event::Leader {
            leader: after.leader,
            term: after.term,
        });
    }
    if after.commit != before.commit {
        events.push(Event::Commit {
            index: after.commit,
        });
    }
    events
}

fn role_word(role: Role) -> &'static str {
    match role {
        Role::Passive => "passive",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

fn text_of(event: &Event) -> String {
    match event {
        Event::Term { from, to } => format!("term {} -> {}", from.0, to.0),
        Event::Vote { term, candidate } => {
            format!("voted for node {} in term {}", candidate.0, term.0)
        }
        Event::Role { from, to, term } => format!(
            "role {} -> {} (term {})",
            role_word(*from),
            role_word(*to),
            term.0
        ),
        Event::Leader {
            leader: Some(leader),
            term,
        } => format!("leader is node {} (term {})", leader.0, term.0),
        Event::Leader { leader: None, term } => format!("no leader known (term {})", term.0),
        Event::Commit { index } => format!("committed up to {}", index.0),
    }
}

fn json_of(event: &Event, at_ns: u64, file: &str) -> Value {
    let mut fields = vec![
        ("file", Value::String(file.to_string())),
        ("at_ns", Value::Number(at_ns)),
    ];
    let kind = match event {
        Event::Term { from, to } => {
            fields.push(("from", Value::Number(from.0)));
            fields.push(("to", Value::Number(to.0)));
            "term"
        }
        Event::Vote { term, candidate } => {
            fields.push(("term", Value::Number(term.0)));
            fields.push(("candidate", Value::Number(candidate.0)));
            "vote"
        }
        Event::Role { from, to, term } => {
            fields.push(("from", Value::String(role_word(*from).into())));
            fields.push(("to", Value::String(role_word(*to).into())));
            fields.push(("term", Value::Number(term.0)));
            "role"
        }
        Event::Leader { leader, term } => {
            let leader = leader.map_or(Value::Null, |id| Value::Number(id.0));
            fields.push(("leader", leader));
            fields.push(("term", Value::Number(term.0)));
            "leader"
        }
        Event::Commit { index } => {
            fields.push(("index", Value::Number(index.0)));
            "commit"
        }
    };
    fields.insert(0, ("event", Value::String(kind.into())));
    Value::Object(fields)
}

/// Commits are many: one line per this much trace time at most (and before any other event).
const COMMIT_LINE_NS: u64 = 1_000_000_000;

/// Replays one file; `first`: the first of its start replayed here (its beginning is said).
fn replay_file(
    path: &Path,
    trace: &[u8],
    args: &ReplayArgs,
    first: bool,
    out: &mut impl Write,
) -> anyhow::Result<Replay> {
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let from_ns = seconds_to_ns(args.from);
    let to_ns = args.to.map_or(u64::MAX, seconds_to_ns);
    let mut before: Option<View> = None;
    let mut at_ns = 0u64;
    let mut inputs = 0u64;
    let mut lines: Vec<(u64, Event)> = Vec::new();
    // A commit not printed yet, and when the last commit line was.
    let mut pending_commit: Option<(u64, Event)> = None;
    let mut last_commit_line = 0u64;
    let result = replay_watched(trace, true, &mut |step| {
        inputs += 1;
        if let Some(now) = step.now {
            at_ns = now.as_nanos();
        }
        let after = view(step);
        let Some(previous) = before.replace(after) else {
            return;
        };
        for event in events(&previous, &after) {
            if let Event::Commit { .. } = event {
                if at_ns.saturating_sub(last_commit_line) < COMMIT_LINE_NS {
                    pending_commit = Some((at_ns, event));
                    continue;
                }
                last_commit_line = at_ns;
                pending_commit = None;
            } else if let Some(commit) = pending_commit.take() {
                lines.push(commit);
            }
            lines.push((at_ns, event));
        }
    })
    .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    lines.extend(pending_commit);
    let in_window = |at: u64| from_ns <= at && at < to_ns;
    if !args.json {
        writeln!(out, "{name}:")?;
    }
    began(out, &name, &result, first, args.json)?;
    for (at, event) in lines.iter().filter(|(at, _)| in_window(*at)) {
        if args.json {
            writeln!(out, "{}", json_of(event, *at, &name).render())?;
        } else {
            writeln!(out, "  {:>10.3}s  {}", *at as f64 / 1e9, text_of(event))?;
        }
    }
    summary(out, &name, inputs, &result, args.json)?;
    Ok(result)
}

/// Where a file's replay began: the node's start, or a checkpoint (said with its time, index
/// and term), and whether it was the replay's first or went on from the file before.
fn began(
    out: &mut impl Write,
    name: &str,
    result: &Replay,
    first: bool,
    json: bool,
) -> anyhow::Result<()> {
    let began = &result.began;
    let status = &began.status;
    if json {
        let line = Value::Object(vec![
            ("event", Value::String("began".into())),
            ("file", Value::String(name.to_string())),
            ("checkpoint", Value::Bool(began.checkpoint)),
            ("continued", Value::Bool(!first)),
            ("at_ns", Value::Number(began.now.as_nanos())),
            ("last_index", Value::Number(status.last_index.0)),
            ("term", Value::Number(status.term.0)),
            ("commit_index", Value::Number(status.commit_index.0)),
        ]);
        writeln!(out, "{}", line.render())?;
        return Ok(());
    }
    let at = began.now.as_nanos() as f64 / 1e9;
    let place = format!(
        "index {}, term {}, commit index {}",
        status.last_index.0, status.term.0, status.commit_index.0
    );
    match (began.checkpoint, first) {
        (false, _) => writeln!(out, "  began at the node's start ({at:.3}s)")?,
        (true, true) => writeln!(out, "  began at the checkpoint at {at:.3}s: {place}")?,
        (true, false) => writeln!(
            out,
            "  went on across the checkpoint at {at:.3}s ({place}): the replayed state matches it"
        )?,
    }
    Ok(())
}

/// The last line for one file: what was replayed and how it ended.
fn summary(
    out: &mut impl Write,
    name: &str,
    inputs: u64,
    result: &alpo_core::replay::Replay,
    json: bool,
) -> anyhow::Result<()> {
    let status = result.node.status();
    let outputs = result.outputs.len();
    if json {
        let summary = Value::Object(vec![
            ("event", Value::String("replayed".into())),
            ("file", Value::String(name.to_string())),
            ("inputs", Value::Number(inputs)),
            ("outputs", Value::Number(outputs as u64)),
            ("identical", Value::Bool(true)),
            (
                "torn_tail",
                result.torn_tail.map_or(Value::Null, Value::Number),
            ),
            ("term", Value::Number(status.term.0)),
            ("commit_index", Value::Number(status.commit_index.0)),
        ]);
        writeln!(out, "{}", summary.render())?;
        return Ok(());
    }
    let ending = match result.torn_tail {
        Some(offset) => {
            format!("ends with a record torn at byte {offset} (a crash while recording)")
        }
        None => "ends whole".to_string(),
    };
    writeln!(
        out,
        "  replayed {inputs} inputs: all {outputs} outputs identical to the recording; the \
         trace {ending}; final term {}, commit index {}",
        status.term.0, status.commit_index.0
    )?;
    Ok(())
}

fn seconds_to_ns(seconds: f64) -> u64 {
    // Negative or NaN: from the start; huge: to the end.
    (seconds.max(0.0) * 1e9) as u64
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alpo_core::{Config, Instant, LogPosition, Node, Output, Persisted};

    use super::*;

    /// A one-node cluster's trace, cut every `every` batches as the flight recorder cuts its
    /// files, written into `dir` as one start's files; the times of the cuts.
    fn write_start(dir: &Path, batches: u64, every: u64) -> Vec<u64> {
        let config = Config::lan(NodeId(1), vec![NodeId(1)], 5);
        let mut now = Instant::from_nanos(0);
        let mut node = Node::new_recorded(config, Persisted::default(), now).unwrap();
        let mut pieces = vec![node.take_trace()];
        let mut cuts = Vec::new();
        for batch in 1..=batches {
            now =
                Instant::from_nanos(now.as_nanos() + Duration::from_millis(100).as_nanos() as u64);
            if node.next_timeout().is_some_and(|deadline| deadline <= now) {
                node.tick(now);
            }
            let _ = node.propose(now, bytes::Bytes::from_static(b"x"));
            for _ in 0..3 {
                for output in node.take_outputs() {
                    if let Output::AppendLog { entries } = output
                        && let Some(last) = entries.last()
                    {
                        let durable = LogPosition {
                            index: last.index,
                            term: last.term,
                        };
                        node.on_persisted(now, durable);
                    }
                }
            }
            if batch % every == 0 {
                let cut = node.cut_trace(now).unwrap();
                pieces.last_mut().unwrap().extend(cut.tail);
                pieces.push(cut.head);
                cuts.push(now.as_nanos());
            } else {
                pieces.last_mut().unwrap().extend(node.take_trace());
            }
        }
        for (piece, bytes) in pieces.iter().enumerate() {
            let name = format!("trace-0000000001-1700000000000-{piece:06}.{TRACE_EXTENSION}");
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        cuts
    }

    fn replay_text(dir: &Path, from: f64) -> anyhow::Result<String> {
        let args = ReplayArgs {
            path: dir.to_path_buf(),
            from,
            to: None,
            json: false,
        };
        let files = traces_of(dir)?;
        let mut out = Vec::new();
        replay_start(&files, &args, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_start_replays_across_its_cuts_from_the_checkpoint_from_names() {
        let dir = tempfile::tempdir().unwrap();
        let cuts = write_start(dir.path(), 60, 20);
        assert_eq!(cuts.len(), 3);
        let text = replay_text(dir.path(), 0.0).unwrap();
        assert!(text.contains("began at the node's start"), "{text}");
        assert_eq!(
            text.matches("went on across the checkpoint").count(),
            3,
            "{text}"
        );
        // From the second cut on: that checkpoint, and only the files from there.
        let from = cuts[1] as f64 / 1e9 + 0.05;
        let text = replay_text(dir.path(), from).unwrap();
        assert!(
            text.contains(&format!(
                "began at the checkpoint at {:.3}s: index ",
                cuts[1] as f64 / 1e9
            )),
            "{text}"
        );
        assert!(!text.contains("-000001.alpotrc:"), "{text}");
        assert_eq!(
            text.matches("went on across the checkpoint").count(),
            1,
            "{text}"
        );
        // The ring dropped the oldest files: the replay begins at the oldest left.
        std::fs::remove_file(dir.path().join(format!(
            "trace-0000000001-1700000000000-000000.{TRACE_EXTENSION}"
        )))
        .unwrap();
        let text = replay_text(dir.path(), 0.0).unwrap();
        assert!(text.contains("began at the checkpoint at "), "{text}");
    }

    #[test]
    fn a_damaged_checkpoint_names_the_file_and_the_byte() {
        let dir = tempfile::tempdir().unwrap();
        write_start(dir.path(), 40, 20);
        let path = dir.path().join(format!(
            "trace-0000000001-1700000000000-000001.{TRACE_EXTENSION}"
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let error = replay_text(dir.path(), 0.0).unwrap_err().to_string();
        assert!(
            error.contains(
                "-000001.alpotrc: corrupt trace at byte 20: checkpoint: the state's checksum \
                 does not match"
            ),
            "{error}"
        );
    }
}
