//! Embedding ALPO: a bank ledger (`ledger.rs`) replicated on three nodes in this process, and a
//! client that moves money, asks balances, and keeps going when the leader stops.
//!
//! Run it with `cargo run -p alpo-node --example bank`. The same ledger runs as a cluster in
//! `alpo-node/tests/bank.rs`, which checks what this example prints.

mod cluster;
mod ledger;

use alpo_core::{ClusterId, Role};
use alpo_node::{Client, ClientOptions};

use cluster::LocalCluster;
use ledger::{Command, Ledger, Query, ask, send};

/// Any number the nodes and the client agree on: a node refuses clients of another cluster.
const CLUSTER_ID: u64 = 7;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("alpo-bank-example-{}", std::process::id()));
    // Three nodes, each with an empty ledger; a node that restarts replays the log into one.
    let mut cluster = LocalCluster::start(&dir, 3, CLUSTER_ID, Ledger::default)?;
    println!("3 nodes running, clients on {:?}", cluster.endpoints());

    // A client needs any of the nodes; it finds the leader and retries for us.
    let mut client = Client::new(
        cluster.endpoints(),
        ClientOptions::new(ClusterId(CLUSTER_ID)),
    )?;
    let deposit = |account: &str, amount| Command::Deposit {
        account: account.into(),
        amount,
    };
    let transfer = |from: &str, to: &str, amount| Command::Transfer {
        from: from.into(),
        to: to.into(),
        amount,
    };
    for command in [
        deposit("alice", 100),
        deposit("bob", 50),
        transfer("alice", "bob", 30),
    ] {
        println!(
            "{:<28} -> {:?}",
            command.encode(),
            send(&mut client, &command)?
        );
    }
    // A transfer that would overdraw is refused by the ledger, on every node alike.
    let overdraw = transfer("bob", "carol", 500);
    println!(
        "{:<28} -> {:?}",
        overdraw.encode(),
        send(&mut client, &overdraw)?
    );

    // Stop the leader: the other two still form a majority, elect a new leader and go on.
    let leader = cluster.servers.iter().position(|server| {
        server
            .as_ref()
            .is_some_and(|s| s.status().role == Role::Leader)
    });
    if let Some(leader) = leader {
        cluster.stop_node(leader)?;
        println!("stopped node {}, the leader", leader + 1);
    }
    let command = transfer("bob", "carol", 20);
    println!(
        "{:<28} -> {:?}",
        command.encode(),
        send(&mut client, &command)?
    );

    for query in [
        Query::Balance {
            account: "alice".into(),
        },
        Query::Balance {
            account: "bob".into(),
        },
        Query::Balance {
            account: "carol".into(),
        },
        Query::Total,
    ] {
        println!("{:<28} -> {:?}", query.encode(), ask(&mut client, &query)?);
    }
    cluster.stop()?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
