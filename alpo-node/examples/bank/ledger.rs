//! A bank ledger as an ALPO state machine: accounts with balances, deposits and transfers as
//! commands (through the log), balances and the bank's total as queries.
//!
//! Commands and queries travel as short lines of text, so a log dump stays readable:
//! `deposit ACCOUNT AMOUNT`, `transfer FROM TO AMOUNT`, `balance ACCOUNT`, `total`. Answers are
//! text too: `ok`, a number, or `refused: REASON`.
//!
//! Invariants: money is neither made nor lost except by deposits (the total is the sum of every
//! deposit); a transfer that would overdraw its source changes nothing; every answer is a
//! pure function of the commands before it, so every node gives the same one; no input makes
//! it panic.
//!
//! Snapshots: the balances sit behind an `Arc`, so a snapshot is an `Arc` clone and the first
//! transfer after it copies the map once (`Arc::make_mut`) — fine for a ledger of modest size;
//! a large one would shard it as alpo-node's key-value machine does. The image is one line per
//! account, `ACCOUNT BALANCE`, in account order.

use std::collections::BTreeMap;
use std::io::{self, BufRead};
use std::sync::Arc;

use alpo_core::LogIndex;
use alpo_node::{Client, Error, SnapshotImage, StateMachine};

/// A change to the ledger: a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    /// Adds `amount` to `account` (opening it if new).
    Deposit {
        /// The account.
        account: String,
        /// How much.
        amount: u64,
    },
    /// Moves `amount` from `from` to `to`, if `from` holds at least that much.
    Transfer {
        /// The account paying.
        from: String,
        /// The account paid.
        to: String,
        /// How much.
        amount: u64,
    },
}

/// A question about the ledger: a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Query {
    /// What `account` holds (0 if it was never opened).
    Balance {
        /// The account.
        account: String,
    },
    /// What all accounts hold together.
    Total,
}

/// The ledger: balances by account name.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    balances: Arc<BTreeMap<String, u64>>,
}

/// The balances frozen at a snapshot.
struct LedgerImage(Arc<BTreeMap<String, u64>>);

impl Command {
    /// The command as it travels: one line of text.
    #[must_use]
    pub(crate) fn encode(&self) -> String {
        match self {
            Command::Deposit { account, amount } => format!("deposit {account} {amount}"),
            Command::Transfer { from, to, amount } => format!("transfer {from} {to} {amount}"),
        }
    }

    /// Reads a command; a clear reason if it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Command, String> {
        let words = words(bytes)?;
        match words[..] {
            ["deposit", account, amount] => Ok(Command::Deposit {
                account: account.to_string(),
                amount: number(amount)?,
            }),
            ["transfer", from, to, amount] => Ok(Command::Transfer {
                from: from.to_string(),
                to: to.to_string(),
                amount: number(amount)?,
            }),
            _ => Err(format!("not a ledger command: {words:?}")),
        }
    }
}

impl Query {
    /// The query as it travels: one line of text.
    #[must_use]
    pub(crate) fn encode(&self) -> String {
        match self {
            Query::Balance { account } => format!("balance {account}"),
            Query::Total => "total".to_string(),
        }
    }

    /// Reads a query; a clear reason if it is not one.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Query, String> {
        let words = words(bytes)?;
        match words[..] {
            ["balance", account] => Ok(Query::Balance {
                account: account.to_string(),
            }),
            ["total"] => Ok(Query::Total),
            _ => Err(format!("not a ledger query: {words:?}")),
        }
    }
}

impl Ledger {
    fn execute(&mut self, command: Command) -> Result<(), String> {
        match command {
            Command::Deposit { account, amount } => {
                let balance = self.balance(&account).checked_add(amount);
                let balance = balance.ok_or(format!("{account}'s balance would overflow"))?;
                Arc::make_mut(&mut self.balances).insert(account, balance);
            }
            Command::Transfer { from, to, amount } => {
                let held = self.balance(&from);
                if held < amount {
                    return Err(format!("{from} holds {held}, less than {amount}"));
                }
                if from != to {
                    let received = self.balance(&to).checked_add(amount);
                    let received = received.ok_or(format!("{to}'s balance would overflow"))?;
                    let balances = Arc::make_mut(&mut self.balances);
                    balances.insert(from, held - amount);
                    balances.insert(to, received);
                }
            }
        }
        Ok(())
    }

    fn balance(&self, account: &str) -> u64 {
        self.balances.get(account).copied().unwrap_or(0)
    }

    fn total(&self) -> u128 {
        self.balances
            .values()
            .map(|&balance| u128::from(balance))
            .sum()
    }
}

impl StateMachine for Ledger {
    fn apply(&mut self, _index: LogIndex, command: &[u8]) -> Vec<u8> {
        let outcome = Command::decode(command).and_then(|command| self.execute(command));
        match outcome {
            Ok(()) => b"ok".to_vec(),
            Err(reason) => format!("refused: {reason}").into_bytes(),
        }
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        let answer = match Query::decode(query) {
            Ok(Query::Balance { account }) => self.balance(&account).to_string(),
            Ok(Query::Total) => self.total().to_string(),
            Err(reason) => format!("refused: {reason}"),
        };
        answer.into_bytes()
    }

    fn snapshot(&self) -> Box<dyn SnapshotImage> {
        Box::new(LedgerImage(Arc::clone(&self.balances)))
    }

    fn restore(&mut self, image: &mut dyn io::Read) -> io::Result<()> {
        let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidData, message);
        let mut balances = BTreeMap::new();
        for line in io::BufReader::new(image).lines() {
            let line = line?;
            let Some((account, balance)) = line.split_once(' ') else {
                return Err(invalid(format!("not an `ACCOUNT BALANCE` line: {line:?}")));
            };
            let balance = balance
                .parse()
                .map_err(|_| invalid(format!("bad balance: {line:?}")))?;
            balances.insert(account.to_string(), balance);
        }
        self.balances = Arc::new(balances);
        Ok(())
    }
}

impl SnapshotImage for LedgerImage {
    fn write_to(&self, out: &mut dyn io::Write) -> io::Result<()> {
        for (account, balance) in self.0.iter() {
            writeln!(out, "{account} {balance}")?;
        }
        Ok(())
    }
}

/// What the ledger answered a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The command took effect.
    Ok,
    /// The query's answer: a balance or the total.
    Amount(u128),
    /// The ledger refused, and why (nothing changed).
    Refused(String),
}

/// Sends `command` through the log; the ledger's answer once it is applied.
pub(crate) fn send(client: &mut Client, command: &Command) -> Result<Answer, Error> {
    let (_index, answer) = client.command(command.encode())?;
    Ok(read_answer(&answer))
}

/// Asks `query`; the ledger answers it as of the query's place in the log (linearizable).
pub(crate) fn ask(client: &mut Client, query: &Query) -> Result<Answer, Error> {
    let (_index, answer) = client.query(query.encode())?;
    Ok(read_answer(&answer))
}

fn read_answer(answer: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(answer);
    if text == "ok" {
        return Answer::Ok;
    }
    match text.strip_prefix("refused: ") {
        Some(reason) => Answer::Refused(reason.to_string()),
        None => text.parse().map_or_else(
            |_| Answer::Refused(format!("unreadable answer {text:?}")),
            Answer::Amount,
        ),
    }
}

fn words(bytes: &[u8]) -> Result<Vec<&str>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    Ok(text.split_whitespace().collect())
}

fn number(word: &str) -> Result<u64, String> {
    word.parse()
        .map_err(|_| format!("{word:?} is not an amount"))
}
