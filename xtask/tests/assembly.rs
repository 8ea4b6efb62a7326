//! The cluster test's pieces assembled around a toy server, the way `test-cluster` will assemble
//! them around real nodes: clients record a history through a fault-injecting proxy, the link
//! is broken and healed while they run, and the checkers judge the result. A correct server
//! must pass; a server that serves stale reads must be caught.
//!
//! The toy server is one process-local key-value store with an append log, speaking one line
//! per request (`put k v`, `get k`, `cas k expected|- new`, `del k`, `append v`).

// The toy server and client are test code: they panic on setup failures like the tests do.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use xtask::history::{ClientId, Command, Completion, History, Recorder, Reply};
use xtask::linearizability::{
    CommittedLog, STEPS_MAX_DEFAULT, Verdict, check_append_log, check_history,
};
use xtask::nemesis::SplitMix64;
use xtask::proxy::{LinkHandle, Proxy};

#[derive(Default)]
struct Store {
    values: BTreeMap<String, String>,
    log: Vec<String>,
}

struct Server {
    addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl Server {
    /// `stale_reads`: each connection answers `get` from its own cache of what it last saw.
    fn start(stale_reads: bool) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Arc::new(Mutex::new(Store::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (acceptor_store, acceptor_stop) = (Arc::clone(&store), Arc::clone(&stop));
        let acceptor = thread::spawn(move || {
            let mut connections = Vec::new();
            while !acceptor_stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let store = Arc::clone(&acceptor_store);
                        connections.push(thread::spawn(move || serve(stream, &store, stale_reads)));
                    }
                    Err(_) => thread::sleep(Duration::from_millis(2)),
                }
            }
            // Connections end when their clients (or the proxy) close them.
            drop(connections);
        });
        Server {
            addr,
            store,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn committed_log(&self) -> CommittedLog {
        let store = self.store.lock().unwrap();
        let entries = (1..).zip(store.log.iter().cloned()).collect();
        CommittedLog {
            node: "toy".into(),
            entries,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.acceptor.take().unwrap().join().unwrap();
    }
}

fn serve(stream: TcpStream, store: &Mutex<Store>, stale_reads: bool) {
    stream.set_nonblocking(false).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut cache: BTreeMap<String, Option<String>> = BTreeMap::new();
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let words: Vec<&str> = line.split(' ').collect();
        let mut store = store.lock().unwrap();
        let reply = match words.as_slice() {
            ["put", key, value] => {
                store.values.insert((*key).into(), (*value).into());
                cache.insert((*key).into(), Some((*value).into()));
                "ok".to_owned()
            }
            ["get", key] => {
                let value = match cache.get(*key) {
                    Some(cached) if stale_reads => cached.clone(),
                    _ => store.values.get(*key).cloned(),
                };
                cache.insert((*key).into(), value.clone());
                value.map_or("none".into(), |value| format!("value {value}"))
            }
            ["cas", key, expected, new] => {
                let expected = (*expected != "-").then(|| (*expected).to_owned());
                if store.values.get(*key) == expected.as_ref() {
                    store.values.insert((*key).into(), (*new).into());
                    "swapped".to_owned()
                } else {
                    "refused".to_owned()
                }
            }
            ["del", key] => {
                store.values.remove(*key);
                "ok".to_owned()
            }
            ["append", value] => {
                store.log.push((*value).into());
                format!("index {}", store.log.len())
            }
            _ => "error".to_owned(),
        };
        drop(store);
        // One write per reply, so that a reply is one chunk for the proxy.
        if writer.write_all(format!("{reply}\n").as_bytes()).is_err() {
            return;
        }
    }
}

/// A client connection that records every request in the history.
struct Client {
    id: ClientId,
    addr: SocketAddr,
    connection: Option<(TcpStream, BufReader<TcpStream>)>,
    /// How long a reply may take before the request counts as indeterminate.
    reply_timeout: Duration,
}

impl Client {
    /// A client for runs through the faulty proxy: a lost reply is given up on quickly.
    fn new(id: u64, addr: SocketAddr) -> Client {
        Client {
            id: ClientId(id),
            addr,
            connection: None,
            reply_timeout: Duration::from_millis(50),
        }
    }

    /// A client on a direct link, which waits for every reply: a slow machine must not turn a
    /// reply into a timeout, because a reconnect would empty the stale server's per-connection
    /// cache and make the run it is meant to catch linearizable.
    fn patient(id: u64, addr: SocketAddr) -> Client {
        Client {
            reply_timeout: Duration::from_secs(30),
            ..Client::new(id, addr)
        }
    }

    fn run(&mut self, recorder: &Recorder, command: Command) {
        let request = match &command {
            Command::Put { key, value } => format!("put {key} {value}"),
            Command::Get { key } => format!("get {key}"),
            Command::Cas { key, expected, new } => {
                format!("cas {key} {} {new}", expected.as_deref().unwrap_or("-"))
            }
            Command::Delete { key } => format!("del {key}"),
            Command::Append { value } => format!("append {value}"),
        };
        let op = recorder.invoke(self.id, command.clone());
        let completion = match self
            .exchange(&request)
            .map(|line| parse_reply(&command, &line))
        {
            Ok(Some(completion)) => completion,
            Err(ErrorKind::ConnectionRefused) => Completion::Failed,
            Ok(None) | Err(_) => {
                // Timeout, a broken connection, or a reply mangled by the link (the toy
                // protocol has no checksums): the request may have been applied.
                self.connection = None;
                Completion::Indeterminate
            }
        };
        recorder.complete(op, completion).unwrap();
    }

    fn exchange(&mut self, request: &str) -> Result<String, ErrorKind> {
        if self.connection.is_none() {
            let stream = TcpStream::connect(self.addr).map_err(|_| ErrorKind::ConnectionRefused)?;
            stream.set_read_timeout(Some(self.reply_timeout)).unwrap();
            let reader = BufReader::new(stream.try_clone().unwrap());
            self.connection = Some((stream, reader));
        }
        let (stream, reader) = self.connection.as_mut().unwrap();
        let request = format!("{request}\n");
        stream.write_all(request.as_bytes()).map_err(|e| e.kind())?;
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) => Err(ErrorKind::UnexpectedEof),
            Ok(_) => Ok(line.trim_end().to_owned()),
            Err(error) => Err(error.kind()),
        }
    }
}

/// The completion a reply line means, or `None` for a line that is not a reply to `command`.
fn parse_reply(command: &Command, line: &str) -> Option<Completion> {
    let reply = match (command, line) {
        (_, "error") => return Some(Completion::Failed),
        (Command::Put { .. } | Command::Delete { .. }, "ok") => Reply::Written,
        (Command::Get { .. }, "none") => Reply::Read { value: None },
        (Command::Get { .. }, line) => Reply::Read {
            value: Some(line.strip_prefix("value ")?.to_owned()),
        },
        (Command::Cas { .. }, "swapped" | "refused") => Reply::Cas {
            swapped: line == "swapped",
        },
        (Command::Append { .. }, line) => Reply::Appended {
            index: line.strip_prefix("index ")?.parse().ok()?,
        },
        _ => return None,
    };
    Some(Completion::Ok(reply))
}

fn random_command(rng: &mut SplitMix64, client: u64, n: u64) -> Command {
    let key = ["a", "b", "c"][rng.index(3)].to_owned();
    let value = format!("c{client}-{n}");
    match rng.below(6) {
        0 => Command::Put { key, value },
        1 => Command::Delete { key },
        2 => Command::Cas {
            key,
            expected: rng.chance(1, 2).then(|| "x".into()),
            new: value,
        },
        3 => Command::Append { value },
        _ => Command::Get { key },
    }
}

/// Breaks the link in turn in every way the proxy knows, until told to stop.
/// Rounds of faults before the clients may stop: twice through every kind.
const NEMESIS_ROUNDS: u64 = 8;
/// Upper bound on each client's operations, whatever the nemesis does.
const CLIENT_OPS_MAX: u64 = 5_000;

fn nemesis(link: &LinkHandle, stop: &AtomicBool, rounds: &AtomicU64) {
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        match round % 4 {
            0 => link.blackhole(),
            1 => link.cut(),
            2 => link.set_latency(Duration::from_millis(10)),
            _ => link.set_lost(xtask::proxy::Direction::Backward, true),
        }
        thread::sleep(Duration::from_millis(15));
        link.heal();
        thread::sleep(Duration::from_millis(15));
        round += 1;
        rounds.store(round, Ordering::SeqCst);
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

fn run_clients(addr: SocketAddr, recorder: &Recorder, rounds: &AtomicU64) {
    thread::scope(|scope| {
        for client in 0..4 {
            scope.spawn(move || {
                let mut rng = SplitMix64::new(client);
                let mut connection = Client::new(client, addr);
                for n in 0..CLIENT_OPS_MAX {
                    if 100 <= n && NEMESIS_ROUNDS <= rounds.load(Ordering::SeqCst) {
                        break;
                    }
                    connection.run(recorder, random_command(&mut rng, client, n));
                }
            });
        }
    });
}

#[test]
fn a_correct_server_passes_through_link_faults() {
    let server = Server::start(false);
    let proxy = Proxy::start(server.addr).unwrap();
    let recorder = Recorder::new();
    let (stop, rounds) = (AtomicBool::new(false), AtomicU64::new(0));
    thread::scope(|scope| {
        let link = proxy.handle();
        let stop = &stop;
        let rounds = &rounds;
        scope.spawn(move || nemesis(&link, stop, rounds));
        // Stops the nemesis even if a client panics, so a failure cannot hang the test.
        let _stop_on_exit = StopOnDrop(stop);
        run_clients(proxy.listen_addr(), &recorder, rounds);
    });
    let history = recorder.snapshot();
    let indeterminate = history
        .ops
        .iter()
        .filter(|op| op.complete_us().is_none())
        .count();
    assert!(
        0 < indeterminate,
        "the faults made some operations indeterminate"
    );
    eprintln!(
        "{} operations, {indeterminate} indeterminate",
        history.ops.len()
    );
    assert_eq!(
        check_history(&history, STEPS_MAX_DEFAULT).unwrap(),
        Verdict::Linearizable
    );
    assert_eq!(
        check_append_log(&history, &[server.committed_log()]),
        vec![]
    );
    let mut kept = Vec::new();
    history.write_jsonl(&mut kept).unwrap();
    assert_eq!(History::read_jsonl(kept.as_slice()).unwrap(), history);
}

#[test]
fn stale_reads_are_caught() {
    let server = Server::start(true);
    let recorder = Recorder::new();
    let (mut first, mut second) = (
        Client::patient(1, server.addr),
        Client::patient(2, server.addr),
    );
    let put = |value: &str| Command::Put {
        key: "a".into(),
        value: value.into(),
    };
    first.run(&recorder, put("1"));
    first.run(&recorder, Command::Get { key: "a".into() });
    second.run(&recorder, put("2"));
    first.run(&recorder, Command::Get { key: "a".into() });
    let verdict = check_history(&recorder.snapshot(), STEPS_MAX_DEFAULT).unwrap();
    let Verdict::NotLinearizable(violation) = verdict else {
        panic!("a stale read passed: {verdict:?}");
    };
    assert_eq!(violation.partition, "key \"a\"");
}
