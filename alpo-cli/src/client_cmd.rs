//! The client subcommands (`append`, `read`, `put`, `get`, `delete`, `cas`, `status`): each
//! builds an `alpo_node::Client` from `--endpoints` and prints the answer as text or, with
//! `--json`, as one JSON object per line.
//!
//! Invariants: results go to standard output, errors to standard error; the exit code follows
//! `main.rs` (0 done, 1 failed, 3 unavailable, 4 negative answer). By default the commands talk
//! to the `alpo dev` cluster (`dev::DEV_ENDPOINTS`, cluster id `dev::DEV_CLUSTER_ID`), so a
//! newcomer needs no flags.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use alpo_core::{ClusterId, LogIndex, Role, Term};
use alpo_node::client_protocol::{Consistency, NodeStatus, ReadEntry, ReadEntryKind};
use alpo_node::{Client, ClientOptions, KvOp};

use crate::EXIT_NEGATIVE;
use crate::dev::{DEV_CLUSTER_ID, DEV_ENDPOINTS};
use crate::json::Value;
use crate::member_cmd::MemberColumns;

/// Flags every client subcommand takes.
#[derive(Debug, Args)]
pub(crate) struct ClientFlags {
    /// Nodes to talk to: comma-separated client addresses (any nodes; the leader is found).
    /// Default: the `alpo dev` cluster.
    #[arg(long, env = "ALPO_ENDPOINTS", value_delimiter = ',', default_value = DEV_ENDPOINTS)]
    pub(crate) endpoints: Vec<SocketAddr>,
    /// The cluster's id (must match the nodes').
    #[arg(long, env = "ALPO_CLUSTER_ID", default_value_t = DEV_CLUSTER_ID)]
    pub(crate) cluster_id: u64,
    /// Print JSON (one object per line) instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Give up after this many milliseconds (retries included).
    #[arg(long, default_value_t = 10_000)]
    pub(crate) timeout_ms: u64,
    /// Connect over TLS, trusting only this CA certificate (PEM). `alpo dev --tls` prints the
    /// line that sets it.
    #[arg(long, env = "ALPO_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// The client certificate (PEM) to present over TLS (needs --tls-ca and --tls-key).
    #[arg(long, env = "ALPO_TLS_CERT", requires_all = ["tls_ca", "tls_key"])]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "ALPO_TLS_KEY", requires = "tls_cert")]
    pub(crate) tls_key: Option<PathBuf>,
}

/// `alpo append VALUE`.
#[derive(Debug, Args)]
pub(crate) struct AppendArgs {
    /// The value to append.
    value: String,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo read`.
#[derive(Debug, Args)]
pub(crate) struct ReadArgs {
    /// The first index to read.
    #[arg(long, default_value_t = 1)]
    from: u64,
    /// Keep waiting for new entries (stop with Ctrl-C).
    #[arg(long)]
    follow: bool,
    /// `linearizable` (the default: shows every append acknowledged before the read),
    /// `lease`, or `stale` (whatever the answering node applied; it may lag).
    #[arg(long, default_value = "linearizable")]
    consistency: Consistency,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo get KEY [--consistency linearizable|lease|stale]`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The key.
    key: String,
    /// `linearizable` (the default: sees every write acknowledged before the get, by a read
    /// index, no log write), `lease` (no heartbeat round while the leader holds its lease;
    /// needs `--lease-drift-ppm` on the nodes), or `stale` (whatever the answering node
    /// applied).
    #[arg(long, default_value = "linearizable")]
    consistency: Consistency,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo put KEY VALUE`.
#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// The key.
    key: String,
    /// The value.
    value: String,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo get KEY`, `alpo delete KEY`.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    /// The key.
    key: String,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo cas KEY [--expect OLD] [--new NEW]`.
#[derive(Debug, Args)]
pub(crate) struct CasArgs {
    /// The key.
    key: String,
    /// The value the key must hold now; without it, the key must be absent.
    #[arg(long)]
    expect: Option<String>,
    /// The value to set; without it, the key is removed.
    #[arg(long)]
    new: Option<String>,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo snapshot`.
#[derive(Debug, Args)]
pub(crate) struct TakeSnapshotArgs {
    #[command(flatten)]
    flags: ClientFlags,
}

/// Entries asked for per read request.
const READ_BATCH_COUNT: u32 = 1000;
/// Pause between polls of `read --follow` when there is nothing new.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

impl ClientFlags {
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let mut options = ClientOptions::new(ClusterId(self.cluster_id));
        options.request_timeout = Duration::from_millis(self.timeout_ms);
        options.attempt_timeout = options.attempt_timeout.min(options.request_timeout);
        Ok(Client::new(self.endpoints.clone(), options)?.with_tls(self.tls()?))
    }

    /// The TLS settings the flags (or `ALPO_TLS_*`) give; `None`: plain TCP.
    pub(crate) fn tls(&self) -> anyhow::Result<Option<alpo_node::tls::TlsConfig>> {
        let Some(ca) = &self.tls_ca else {
            return Ok(None);
        };
        let paths = alpo_node::tls::TlsPaths {
            ca: ca.clone(),
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
        };
        let tls = alpo_node::tls::TlsConfig::load(&paths).context("loading the TLS files")?;
        Ok(Some(tls))
    }
}

pub(crate) fn append(args: AppendArgs) -> anyhow::Result<ExitCode> {
    let index = args
        .flags
        .client()?
        .append(args.value)
        .context("append failed")?;
    let json = Value::Object(vec![("index", Value::Number(index.0))]);
    print(
        args.flags.json,
        &json,
        &format!("appended at index {index}"),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn read(args: ReadArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.flags.client()?;
    let mut from = LogIndex(args.from.max(1));
    loop {
        let (entries, _commit) = client
            .read_with(from, READ_BATCH_COUNT, args.consistency)
            .context("read failed")?;
        for entry in &entries {
            print(args.flags.json, &entry_json(entry), &entry_text(entry))?;
            from = entry.index.next();
        }
        if entries.is_empty() {
            if !args.follow {
                return Ok(ExitCode::SUCCESS);
            }
            std::thread::sleep(FOLLOW_POLL);
        }
    }
}

pub(crate) fn put(args: PutArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.flags.client()?;
    let index = client.put(args.key, args.value).context("put failed")?;
    let json = Value::Object(vec![("index", Value::Number(index.0))]);
    print(args.flags.json, &json, &format!("ok (index {index})"))?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let value = args
        .flags
        .client()?
        .get_with(args.key.clone(), args.consistency)
        .context("get failed")?;
    let json = Value::Object(vec![
        ("key", Value::String(args.key.clone())),
        ("value", value.as_deref().map_or(Value::Null, Value::bytes)),
    ]);
    match &value {
        Some(value) => print(args.flags.json, &json, &String::from_utf8_lossy(value))?,
        None if args.flags.json => print(true, &json, "")?,
        None => eprintln!("alpo: key {:?} not found", args.key),
    }
    Ok(if value.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NEGATIVE)
    })
}

pub(crate) fn delete(args: KeyArgs) -> anyhow::Result<ExitCode> {
    let existed = args
        .flags
        .client()?
        .delete(args.key.clone())
        .context("delete failed")?;
    let json = Value::Object(vec![
        ("key", Value::String(args.key.clone())),
        ("existed", Value::Bool(existed)),
    ]);
    let text = if existed {
        "deleted".to_string()
    } else {
        format!("key {:?} not found", args.key)
    };
    print(args.flags.json, &json, &text)?;
    Ok(if existed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NEGATIVE)
    })
}

pub(crate) fn cas(args: CasArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.flags.client()?;
    let expected = args.expect.map(Into::into);
    let new = args.new.map(Into::into);
    let outcome = client
        .compare_and_set(args.key.clone(), expected, new)
        .context("cas failed")?;
    let current = outcome.current.as_deref();
    let json = Value::Object(vec![
        ("key", Value::String(args.key)),
        ("swapped", Value::Bool(outcome.swapped)),
        ("current", current.map_or(Value::Null, Value::bytes)),
        ("index", Value::Number(outcome.index.0)),
    ]);
    let shown = current.map_or("(absent)".into(), |v| {
        format!("{:?}", String::from_utf8_lossy(v))
    });
    let text = if outcome.swapped {
        format!("swapped; the value is now {shown}")
    } else {
        format!("not swapped; the value is {shown}")
    };
    print(args.flags.json, &json, &text)?;
    Ok(if outcome.swapped {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_NEGATIVE)
    })
}

/// Asks every endpoint for its status, and the leader for its member list (issue 12: each
/// node's role in the configuration, match index and lag). Exit 0 when every node answered, 3
/// when any did not.
pub(crate) fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.flags.client()?;
    let mut all_answered = true;
    if !args.flags.json {
        print_line(&format!(
            "{:<5} {:<22} {:<10} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:<8} {:>8} {:>6}",
            "NODE",
            "ENDPOINT",
            "ROLE",
            "TERM",
            "LEADER",
            "COMMIT",
            "LAST",
            "APPLIED",
            "SNAPSHOT",
            "FIRST",
            "MEMBER",
            "MATCH",
            "LAG"
        ))?;
    }
    let answers: Vec<_> = args
        .flags
        .endpoints
        .iter()
        .map(|endpoint| (*endpoint, client.status_of(*endpoint)))
        .collect();
    let statuses: Vec<_> = answers
        .iter()
        .filter_map(|(endpoint, answer)| Some((*endpoint, answer.as_ref().ok()?.clone())))
        .collect();
    let members = crate::member_cmd::leader_members(&args.flags, &statuses);
    for (endpoint, answer) in answers {
        match answer {
            Ok(status) => {
                let columns = crate::member_cmd::member_columns(members.as_ref(), status.id);
                print(
                    args.flags.json,
                    &status_json(endpoint, &status, &columns),
                    &(status_text(endpoint, &status, &columns) + &disk_text(&status)),
                )?;
            }
            Err(error) => {
                all_answered = false;
                print_endpoint_failure(args.flags.json, endpoint, error, |error| {
                    format!("{:<5} {endpoint:<22} unreachable: {error}", "?")
                })?;
            }
        }
    }
    Ok(if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Asks every endpoint to take a snapshot now and prints each one's index once durable. Exit 0
/// when every node answered, 3 when any did not.
pub(crate) fn snapshot(args: TakeSnapshotArgs) -> anyhow::Result<ExitCode> {
    let mut client = args.flags.client()?;
    let mut all_answered = true;
    for endpoint in args.flags.endpoints.clone() {
        match client.snapshot_of(endpoint) {
            Ok(index) => {
                let json = Value::Object(vec![
                    ("endpoint", Value::String(endpoint.to_string())),
                    ("snapshot_index", Value::Number(index.0)),
                ]);
                let text = format!("{endpoint}: snapshot at index {index}");
                print(args.flags.json, &json, &text)?;
            }
            Err(error) => {
                all_answered = false;
                print_endpoint_failure(args.flags.json, endpoint, error, |error| {
                    format!("{endpoint}: failed: {error}")
                })?;
            }
        }
    }
    Ok(if all_answered {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Prints that `endpoint` did not answer: `{endpoint, error}` as JSON, else `text(error)`, the
/// error with all its causes.
fn print_endpoint_failure(
    json: bool,
    endpoint: SocketAddr,
    error: alpo_node::Error,
    text: impl FnOnce(&str) -> String,
) -> anyhow::Result<()> {
    let error = format!("{:#}", anyhow::Error::new(error));
    let value = Value::Object(vec![
        ("endpoint", Value::String(endpoint.to_string())),
        ("error", Value::String(error.clone())),
    ]);
    print(json, &value, &text(&error))
}

/// Prints `value` as one JSON line when `json`, else `text`.
pub(crate) fn print(json: bool, value: &Value, text: &str) -> anyhow::Result<()> {
    if json {
        print_line(&value.render())
    } else {
        print_line(text)
    }
}

/// Writes `line` and a newline to standard output and flushes it.
pub(crate) fn print_line(line: &str) -> anyhow::Result<()> {
    let mut stdout = crate::output::stdout();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .context("writing to standard output")
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Passive => "passive",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

fn status_text(endpoint: SocketAddr, s: &NodeStatus, member: &MemberColumns) -> String {
    let leader = s.leader.map_or("-".to_string(), |id| id.to_string());
    let known = |value: Option<u64>| value.map_or("-".to_string(), |v| v.to_string());
    format!(
        "{:<5} {:<22} {:<10} {:>5} {:>6} {:>8} {:>8} {:>8} {:>8} {:>8} {:<8} {:>8} {:>6}",
        s.id.0,
        endpoint.to_string(),
        role_name(s.role),
        s.term.0,
        leader,
        s.commit_index.0,
        s.last_index.0,
        s.applied_index.0,
        s.snapshot_index.0,
        s.first_index.0,
        member.role.unwrap_or("-"),
        known(member.match_index.map(|i| i.0)),
        known(member.lag),
    )
}

fn status_json(endpoint: SocketAddr, s: &NodeStatus, member: &MemberColumns) -> Value {
    let known = |value: Option<u64>| value.map_or(Value::Null, Value::Number);
    Value::Object(vec![
        ("node", Value::Number(s.id.0)),
        ("endpoint", Value::String(endpoint.to_string())),
        ("role", Value::String(role_name(s.role).into())),
        ("term", Value::Number(s.term.0)),
        (
            "leader",
            s.leader.map_or(Value::Null, |id| Value::Number(id.0)),
        ),
        ("commit_index", Value::Number(s.commit_index.0)),
        ("last_index", Value::Number(s.last_index.0)),
        ("durable_index", Value::Number(s.durable_index.0)),
        ("applied_index", Value::Number(s.applied_index.0)),
        ("snapshot_index", Value::Number(s.snapshot_index.0)),
        ("first_index", Value::Number(s.first_index.0)),
        (
            "member_role",
            member
                .role
                .map_or(Value::Null, |role| Value::String(role.into())),
        ),
        ("match_index", known(member.match_index.map(|i| i.0))),
        ("lag", known(member.lag)),
        ("vote_fence", known(s.disk.vote_fence.map(|term| term.0))),
        ("scrub_passes", Value::Number(s.disk.scrub_passes)),
        ("scrub_bytes", Value::Number(s.disk.scrub_bytes)),
        ("scrub_faults", Value::Number(s.disk.scrub_faults)),
    ])
}

/// Issue 13: a second line under a node whose disk needs the operator's eye (a vote fence after
/// a hard-state loss, damage the scrubber found); empty when there is none.
fn disk_text(s: &NodeStatus) -> String {
    let mut notes = Vec::new();
    match s.disk.vote_fence {
        Some(Term(u64::MAX)) => notes.push(
            "hard state and term ceiling lost: never votes again (rule F9); \
             replace it under a new id"
                .to_string(),
        ),
        Some(fence) => notes.push(format!(
            "hard state lost: no vote or candidacy below term {fence} (rule F9)"
        )),
        None => {}
    }
    if s.disk.scrub_faults > 0 {
        notes.push(format!(
            "scrub found {} damaged record(s); see the node's log for file, offset and index",
            s.disk.scrub_faults
        ));
    }
    notes
        .iter()
        .map(|note| format!("\n{:<5} disk: {note}", ""))
        .collect()
}

fn kind_name(kind: ReadEntryKind) -> &'static str {
    match kind {
        ReadEntryKind::Noop => "noop",
        ReadEntryKind::Append => "append",
        ReadEntryKind::Command => "command",
        ReadEntryKind::Duplicate => "duplicate",
        // A kind newer than this binary (`ReadEntryKind` is non-exhaustive).
        _ => "unknown",
    }
}

/// What an entry shows: the appended value, or a key-value command in words.
fn entry_value(entry: &ReadEntry) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    if entry.kind != ReadEntryKind::Command {
        return text(&entry.data);
    }
    match KvOp::decode(entry.data.clone()) {
        Ok(KvOp::Put { key, value }) => format!("put {}={}", text(&key), text(&value)),
        Ok(KvOp::Get { key }) => format!("get {}", text(&key)),
        Ok(KvOp::Delete { key }) => format!("delete {}", text(&key)),
        Ok(KvOp::Cas { key, .. }) => format!("cas {}", text(&key)),
        // An operation newer than this binary (`KvOp` is non-exhaustive): show its bytes.
        Ok(_) | Err(_) => text(&entry.data),
    }
}

fn entry_text(entry: &ReadEntry) -> String {
    format!(
        "{}\t{}\t{}\t{}",
        entry.index,
        entry.term,
        kind_name(entry.kind),
        entry_value(entry)
    )
}

fn entry_json(entry: &ReadEntry) -> Value {
    Value::Object(vec![
        ("index", Value::Number(entry.index.0)),
        ("term", Value::Number(entry.term.0)),
        ("kind", Value::String(kind_name(entry.kind).into())),
        ("value", Value::String(entry_value(entry))),
    ])
}
