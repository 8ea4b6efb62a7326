//! The bank ledger of `examples/bank` (the same code, not a copy) as a 3-node cluster: money
//! moves, an overdraft is refused, the leader stops and the cluster goes on, and every answer
//! read through the public client matches a model of the ledger kept by the test.

// Helpers fail the test on any error, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../examples/bank/cluster.rs"]
mod cluster;
#[path = "../examples/bank/ledger.rs"]
mod ledger;

use std::collections::BTreeMap;
use std::time::Duration;

use alpo_core::{ClusterId, LogIndex, Role};
use alpo_node::{Client, ClientOptions, StateMachine};

use cluster::LocalCluster;
use ledger::{Answer, Command, Ledger, Query, ask, send};

const CLUSTER_ID: u64 = 0xba4c;
const ACCOUNTS: [&str; 4] = ["alice", "bob", "carol", "dave"];

/// What the ledger should answer, computed without it.
#[derive(Default)]
struct Model {
    balances: BTreeMap<String, u64>,
}

impl Model {
    fn answer(&mut self, command: &Command) -> Answer {
        match command {
            Command::Deposit { account, amount } => {
                *self.balances.entry(account.clone()).or_default() += amount;
                Answer::Ok
            }
            Command::Transfer { from, to, amount } => {
                let held = self.balances.get(from).copied().unwrap_or(0);
                if held < *amount {
                    return Answer::Refused(format!("{from} holds {held}, less than {amount}"));
                }
                *self.balances.entry(from.clone()).or_default() -= amount;
                *self.balances.entry(to.clone()).or_default() += amount;
                Answer::Ok
            }
        }
    }

    fn balance(&self, account: &str) -> Answer {
        Answer::Amount(u128::from(self.balances.get(account).copied().unwrap_or(0)))
    }
}

/// A deterministic mix of deposits and transfers, some of which overdraw.
fn commands(count: u64) -> Vec<Command> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |bound: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % bound
    };
    (0..count)
        .map(|_| {
            let account = |n: u64| ACCOUNTS[n as usize].to_string();
            if next(3) == 0 {
                Command::Deposit {
                    account: account(next(4)),
                    amount: next(100),
                }
            } else {
                Command::Transfer {
                    from: account(next(4)),
                    to: account(next(4)),
                    amount: next(80),
                }
            }
        })
        .collect()
}

fn leader_of(cluster: &LocalCluster) -> Option<usize> {
    cluster.servers.iter().position(|server| {
        server
            .as_ref()
            .is_some_and(|s| s.status().role == Role::Leader)
    })
}

#[test]
fn the_ledger_as_a_three_node_cluster_answers_like_its_model_across_a_leader_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = LocalCluster::start(dir.path(), 3, CLUSTER_ID, Ledger::default).unwrap();
    let mut options = ClientOptions::new(ClusterId(CLUSTER_ID));
    options.request_timeout = Duration::from_secs(30);
    let mut client = Client::new(cluster.endpoints(), options).unwrap();
    let mut model = Model::default();
    let commands = commands(120);
    let (before, after) = commands.split_at(60);
    let mut refused = 0;
    for command in before {
        let answer = send(&mut client, command).unwrap();
        refused += usize::from(matches!(answer, Answer::Refused(_)));
        assert_eq!(answer, model.answer(command), "{}", command.encode());
    }
    assert!(0 < refused, "the mix should overdraw sometimes");

    // The leader stops; the two others elect a new one and the same client carries on.
    let leader = leader_of(&cluster).expect("a leader served the commands");
    cluster.stop_node(leader).unwrap();
    for command in after {
        let answer = send(&mut client, command).unwrap();
        assert_eq!(answer, model.answer(command), "{}", command.encode());
    }

    let mut total = 0;
    for account in ACCOUNTS {
        let query = Query::Balance {
            account: account.into(),
        };
        let answer = ask(&mut client, &query).unwrap();
        assert_eq!(answer, model.balance(account), "{account}");
        let Answer::Amount(balance) = answer else {
            panic!("{account}: {answer:?}")
        };
        total += balance;
    }
    assert_eq!(
        ask(&mut client, &Query::Total).unwrap(),
        Answer::Amount(total)
    );
    // A query is no command: the ledger refuses one sent the wrong way, and changes nothing.
    let (_, answer) = client.command("total").unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("refused: not a ledger command"));
    assert_eq!(
        ask(&mut client, &Query::Total).unwrap(),
        Answer::Amount(total)
    );
    cluster.stop().unwrap();
}

#[test]
fn the_ledger_restores_from_its_snapshot_and_the_snapshot_stays_frozen() {
    let mut ledger = Ledger::default();
    let deposit = |account: &str, amount| Command::Deposit {
        account: account.into(),
        amount,
    };
    ledger.apply(LogIndex(1), deposit("alice", 10).encode().as_bytes());
    ledger.apply(LogIndex(2), deposit("bob", 5).encode().as_bytes());
    let frozen = ledger.snapshot();
    ledger.apply(LogIndex(3), deposit("alice", 100).encode().as_bytes());
    let mut image = Vec::new();
    frozen.write_to(&mut image).unwrap();
    assert_eq!(
        image, b"alice 10\nbob 5\n",
        "the image is as of the snapshot"
    );
    let mut restored = Ledger::default();
    restored.restore(&mut image.as_slice()).unwrap();
    let total = Query::Total.encode();
    assert_eq!(restored.query(total.as_bytes()), b"15");
    assert_eq!(ledger.query(total.as_bytes()), b"115");
    // A damaged image is an error, not a panic.
    let error = restored.restore(&mut &b"alice ten\n"[..]).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
}
