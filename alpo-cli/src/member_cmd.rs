//! Issue 12: `alpo member list | add ID PEER_ADDR,CLIENT_ADDR [--learner] | promote ID |
//! remove ID` and `alpo transfer-leader [ID]`, and
//! the membership columns of `alpo status` (`member_columns`).
//!
//! Invariants: like every client subcommand (`client_cmd.rs`), results go to standard output as
//! text or, with `--json`, one JSON object per line (`member list --json`: one object per
//! member, with at least `id` and `role`); a change or a transfer is printed only once it took
//! effect (its `Config` entry committed; another node leads).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use alpo_core::{LogIndex, NodeId, Role};
use alpo_node::client_protocol::NodeStatus;
use alpo_node::member_protocol::{MemberChange, MemberInfo, Members};

use crate::client_cmd::{ClientFlags, print, print_line};
use crate::json::Value;

/// `alpo member …`.
#[derive(Debug, Args)]
pub(crate) struct MemberArgs {
    #[command(subcommand)]
    command: MemberCommand,
}

#[derive(Debug, Subcommand)]
enum MemberCommand {
    /// List the members of the configuration in force: id, role (voter or learner), client
    /// address, and (from the leader) match index and lag.
    List(ListArgs),
    /// Add a new node (its addresses travel in the entry that adds it); unless --learner, the
    /// leader promotes it to voter once it has caught up. Start the node with `alpo node
    /// --join` (before or after; without --learner this waits for it, --timeout-ms).
    Add(AddArgs),
    /// Make a learner a voter once it has caught up (rule M8).
    Promote(ChangeArgs),
    /// Remove a member, voter or learner, the leader included (it hands over, rule M9).
    Remove(ChangeArgs),
}

/// `alpo member list`.
#[derive(Debug, Args)]
struct ListArgs {
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo member promote ID`, `alpo member remove ID`.
#[derive(Debug, Args)]
struct ChangeArgs {
    /// The member's node id.
    id: u64,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo member add ID PEER_ADDR,CLIENT_ADDR [--learner]`.
#[derive(Debug, Args)]
struct AddArgs {
    /// The new node's id: never used in this cluster before.
    id: u64,
    /// Where the new node listens: PEER_ADDR,CLIENT_ADDR (as its --listen flag).
    addrs: String,
    /// Keep it a learner (it receives the log, never votes); promote it later.
    #[arg(long)]
    learner: bool,
    #[command(flatten)]
    flags: ClientFlags,
}

/// `alpo transfer-leader [ID]`.
#[derive(Debug, Args)]
pub(crate) struct TransferArgs {
    /// The voter to hand the leadership to; without it, the most up-to-date voter.
    id: Option<u64>,
    #[command(flatten)]
    flags: ClientFlags,
}

pub(crate) fn member(args: MemberArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MemberCommand::List(args) => list(&args.flags),
        MemberCommand::Add(args) => {
            let (peer_addr, client_addr) = parse_addrs(&args.addrs)?;
            let add = MemberChange::Add {
                id: NodeId(args.id),
                peer_addr,
                client_addr,
                learner: args.learner,
            };
            change(&args.flags, add)
        }
        MemberCommand::Promote(args) => change(&args.flags, MemberChange::Promote(NodeId(args.id))),
        MemberCommand::Remove(args) => change(&args.flags, MemberChange::Remove(NodeId(args.id))),
    }
}

/// `PEER_ADDR,CLIENT_ADDR`, each `IP:PORT`.
fn parse_addrs(text: &str) -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let form = "expected PEER_ADDR,CLIENT_ADDR (each IP:PORT)";
    let (peer, client) = text
        .split_once(',')
        .ok_or_else(|| anyhow::anyhow!("{form}, got {text:?}"))?;
    let parse = |addr: &str, which: &str| {
        addr.trim().parse::<SocketAddr>().map_err(|_| {
            anyhow::anyhow!("the {which} address {addr:?} is not of the form IP:PORT ({form})")
        })
    };
    Ok((parse(peer, "peer")?, parse(client, "client")?))
}

/// Lists the members as the leader knows them (with match indexes), else as the first node
/// that answers knows them.
fn list(flags: &ClientFlags) -> anyhow::Result<ExitCode> {
    let mut client = flags.client()?;
    let mut members = client.members()?;
    if let Some(leader) = members.leader {
        let leader_addr = members
            .members
            .iter()
            .find(|m| m.id == leader)
            .and_then(|m| m.client_addr.parse::<SocketAddr>().ok());
        if let Some(from_leader) = leader_addr.and_then(|addr| client.members_of(addr).ok()) {
            members = from_leader;
        }
    }
    if !flags.json {
        print_line(&format!(
            "{:<5} {:<8} {:<22} {:>8} {:>6}",
            "ID", "ROLE", "CLIENT", "MATCH", "LAG"
        ))?;
    }
    for member in &members.members {
        let text = format!(
            "{:<5} {:<8} {:<22} {:>8} {:>6}{}",
            member.id.0,
            member.role.name(),
            member.client_addr,
            member.match_index.map_or("-".into(), |i| i.0.to_string()),
            member
                .lag(members.last_index)
                .map_or("-".into(), |lag| lag.to_string()),
            if members.leader == Some(member.id) {
                "  (leader)"
            } else {
                ""
            },
        );
        print(flags.json, &member_json(member, &members), &text)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn member_json(member: &MemberInfo, members: &Members) -> Value {
    let number = |value: Option<u64>| value.map_or(Value::Null, Value::Number);
    Value::Object(vec![
        ("id", Value::Number(member.id.0)),
        ("role", Value::String(member.role.name().into())),
        ("client_addr", Value::String(member.client_addr.clone())),
        ("peer_addr", Value::String(member.peer_addr.clone())),
        ("leader", Value::Bool(members.leader == Some(member.id))),
        ("match_index", number(member.match_index.map(|i| i.0))),
        ("lag", number(member.lag(members.last_index))),
    ])
}

fn change(flags: &ClientFlags, change: MemberChange) -> anyhow::Result<ExitCode> {
    let index = flags.client()?.change_members(change)?;
    let json = Value::Object(vec![
        ("change", Value::String(change.to_string())),
        ("config_index", Value::Number(index.0)),
    ]);
    print(
        flags.json,
        &json,
        &format!("{change}: committed at index {index}"),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn transfer_leader(args: TransferArgs) -> anyhow::Result<ExitCode> {
    let target = args.id.map(NodeId);
    let leader = args.flags.client()?.transfer_leader(target)?;
    let json = Value::Object(vec![("leader", Value::Number(leader.0))]);
    print(args.flags.json, &json, &format!("node {leader} leads now"))?;
    Ok(ExitCode::SUCCESS)
}

/// `alpo status`'s membership view of node `status.id`: its role in the configuration and,
/// from the leader's member list, its match index and lag.
pub(crate) struct MemberColumns {
    pub(crate) role: Option<&'static str>,
    pub(crate) match_index: Option<LogIndex>,
    pub(crate) lag: Option<u64>,
}

/// The leader's member list, asked of the node that says it leads among `statuses` (`None`
/// if none does or it does not answer).
pub(crate) fn leader_members(
    flags: &ClientFlags,
    statuses: &[(SocketAddr, NodeStatus)],
) -> Option<Members> {
    let (endpoint, _) = statuses.iter().find(|(_, s)| s.role == Role::Leader)?;
    flags.client().ok()?.members_of(*endpoint).ok()
}

/// The membership columns of node `id`, from `members` (the leader's list).
pub(crate) fn member_columns(members: Option<&Members>, id: NodeId) -> MemberColumns {
    let member = members.and_then(|list| list.members.iter().find(|m| m.id == id));
    MemberColumns {
        role: Some(member.map_or("removed", |m| m.role.name())).filter(|_| members.is_some()),
        match_index: member.and_then(|m| m.match_index),
        lag: member.and_then(|m| m.lag(members?.last_index)),
    }
}
