//! The load of a cluster test: client threads doing appends and key-value operations through
//! the real client protocol, recording each logical operation once, and status pollers that
//! watch who leads in which term.
//!
//! Outcome semantics (what the checkers rely on): an answer is `ok` (a refused compare-and-set
//! is an ok answer with `swapped: false`); a non-retryable refusal that proves the request was
//! never applied (`BadRequest`, `TooLarge`) is `failed`; everything else — request timeout,
//! lost connection, session expired, an unexpected answer — is `indeterminate`, because an
//! earlier attempt of the request (the client retries with the same request id) may have been
//! proposed and may still commit.
//!
//! Keys are independent registers that live for [`KEY_EPOCH_MS`] each (`k3@7` is key 3 in the
//! 8th epoch), so every linearizability partition stays small however long the run.
//!
//! Reads (issue 14): gets are linearizable, or with leases on half of them (at random) are
//! lease reads (rule Q3); the checker holds both to the same standard. Besides the workload
//! clients, one pinned reader per node sends gets to that node only (no failover), so a
//! leader the nemesis isolates or pauses keeps receiving reads: it must serve them only while
//! its lease holds, or confirm them by a round it cannot get, and anything it answers must be
//! linearizable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use alpo_core::{ClusterId, Role};
use alpo_node::client_protocol::{Consistency, ErrorCode};
use alpo_node::{Client, ClientOptions, Error};
use xtask::history::{ClientId, Command, Completion, Recorder, Reply};
use xtask::nemesis::{NodeIndex, SplitMix64};
use xtask::timeline::LeaderObservation;

use super::process::CLUSTER_ID;

/// How long one key is used before the clients move on to a fresh one.
pub(crate) const KEY_EPOCH_MS: u64 = 4_000;
/// Keys in use at a time.
const KEYS: u64 = 4;
/// How often each node's status is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// A pinned reader's pause between gets (it adds reads to every key's history without
/// swamping the checker).
const PINNED_READ_PAUSE: Duration = Duration::from_millis(20);

/// The options of the workload clients: short timeouts, so a client stuck on a dead or paused
/// node moves on (its operation is then indeterminate).
pub(crate) fn client_options() -> ClientOptions {
    let mut options = ClientOptions::new(ClusterId(CLUSTER_ID));
    options.attempt_timeout = Duration::from_millis(1_000);
    options.request_timeout = Duration::from_millis(4_000);
    options.retry_pause = Duration::from_millis(50);
    options
}

/// Issue 16: the TLS settings of every client of a `--tls` run (set once, before any client).
static CLIENT_TLS: std::sync::OnceLock<alpo_node::tls::TlsConfig> = std::sync::OnceLock::new();

/// Makes every client this run creates from now on connect over TLS with `tls`.
pub(crate) fn use_tls(tls: alpo_node::tls::TlsConfig) {
    // A run sets it once; a second call (none today) would keep the first.
    let _ = CLIENT_TLS.set(tls);
}

/// A client of the run's cluster: every test-cluster client is made here, so a `--tls` run's
/// clients all use TLS.
pub(crate) fn new_client(
    endpoints: Vec<SocketAddr>,
    options: ClientOptions,
) -> Result<Client, Error> {
    Ok(Client::new(endpoints, options)?.with_tls(CLIENT_TLS.get().cloned()))
}

/// Maps a client error to the recorded outcome (module doc).
pub(crate) fn completion_of_error(error: &Error) -> Completion {
    match error {
        Error::Refused {
            code: ErrorCode::BadRequest | ErrorCode::TooLarge,
            ..
        } => Completion::Failed,
        _ => Completion::Indeterminate,
    }
}

/// Runs client `id` until `stop`: one operation at a time, each recorded once.
pub(crate) fn spawn_client(
    id: u64,
    seed: u64,
    leases: bool,
    endpoints: Vec<SocketAddr>,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    // Gets go to a node of their own (client `id` starts at endpoint `id mod n`), where a
    // follower serves them by asking the leader for a read index (rule Q2): linearizable reads
    // spread over the cluster, leader and followers alike (issue 14).
    let mut readers = endpoints.clone();
    readers.rotate_left(usize::try_from(id).unwrap_or(0) % endpoints.len().max(1));
    let mut reader = new_client(readers, client_options())?;
    let mut client = new_client(endpoints, client_options())?;
    let handle = thread::Builder::new()
        .name(format!("client-{id}"))
        .spawn(move || {
            let mut rng = SplitMix64::new(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut count = 0u64;
            // The last value this client saw or wrote per key: a likely compare-and-set guess.
            let mut last: HashMap<String, Option<String>> = HashMap::new();
            while !stop.load(Ordering::SeqCst) {
                count += 1;
                let value = format!("c{id}-{count}");
                let epoch = recorder.now_us() / 1_000 / KEY_EPOCH_MS;
                let key = format!("k{}@{epoch}", rng.below(KEYS));
                let guess = last.get(&key).cloned().flatten();
                let command = pick_command(&mut rng, key, value, guess);
                let op = recorder.invoke(ClientId(id), command.clone());
                let completion = match command {
                    Command::Get { .. } => {
                        let consistency = read_consistency(&mut rng, leases);
                        execute_with(&mut reader, &command, consistency)
                    }
                    _ => execute(&mut client, &command),
                };
                remember(&mut last, &command, &completion);
                recorder.complete(op, completion)?;
            }
            Ok(())
        })?;
    Ok(handle)
}

/// Runs pinned reader `id` until `stop`: gets of the workload's keys at `endpoint` only.
pub(crate) fn spawn_pinned_reader(
    id: u64,
    seed: u64,
    leases: bool,
    endpoint: SocketAddr,
    recorder: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<anyhow::Result<()>>> {
    let mut reader = new_client(vec![endpoint], client_options())?;
    let handle = thread::Builder::new()
        .name(format!("reader-{id}"))
        .spawn(move || {
            let mut rng = SplitMix64::new(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            while !stop.load(Ordering::SeqCst) {
                let epoch = recorder.now_us() / 1_000 / KEY_EPOCH_MS;
                let command = Command::Get {
                    key: format!("k{}@{epoch}", rng.below(KEYS)),
                };
                let op = recorder.invoke(ClientId(id), command.clone());
                let consistency = read_consistency(&mut rng, leases);
                recorder.complete(op, execute_with(&mut reader, &command, consistency))?;
                thread::sleep(PINNED_READ_PAUSE);
            }
            Ok(())
        })?;
    Ok(handle)
}

/// A get's consistency: with leases on, lease or linearizable at even odds.
fn read_consistency(rng: &mut SplitMix64, leases: bool) -> Consistency {
    if leases && rng.chance(1, 2) {
        Consistency::Lease
    } else {
        Consistency::Linearizable
    }
}

fn remember(
    last: &mut HashMap<String, Option<String>>,
    command: &Command,
    completion: &Completion,
) {
    match (command, completion) {
        (Command::Put { key, value }, _)
        | (
            Command::Cas {
                key, new: value, ..
            },
            _,
        ) => {
            last.insert(key.clone(), Some(value.clone()));
        }
        (Command::Get { key }, Completion::Ok(Reply::Read { value })) => {
            last.insert(key.clone(), value.clone());
        }
        _ => {}
    }
}

fn pick_command(
    rng: &mut SplitMix64,
    key: String,
    value: String,
    guess: Option<String>,
) -> Command {
    match rng.below(10) {
        0..=3 => Command::Append { value },
        4 | 5 => Command::Put { key, value },
        6 | 7 => Command::Get { key },
        _ => {
            // Expect the last value this client saw (or absent): some swaps succeed.
            let expected = if rng.chance(1, 4) { None } else { guess };
            Command::Cas {
                key,
                expected,
                new: value,
            }
        }
    }
}

/// Sends `command` through the client (which retries internally with the same request id).
pub(crate) fn execute(client: &mut Client, command: &Command) -> Completion {
    execute_with(client, command, Consistency::Linearizable)
}

/// As [`execute`], a get with `consistency` (never `Stale`: the checker wants every read
/// linearizable).
pub(crate) fn execute_with(
    client: &mut Client,
    command: &Command,
    consistency: Consistency,
) -> Completion {
    debug_assert!(consistency != Consistency::Stale);
    let result = match command {
        Command::Append { value } => client
            .append(value.clone().into_bytes())
            .map(|index| Reply::Appended { index: index.0 }),
        Command::Put { key, value } => client
            .put(key.clone().into_bytes(), value.clone().into_bytes())
            .map(|_| Reply::Written),
        Command::Get { key } => {
            client
                .get_with(key.clone().into_bytes(), consistency)
                .map(|value| Reply::Read {
                    value: value.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()),
                })
        }
        Command::Cas { key, expected, new } => client
            .compare_and_set(
                key.clone().into_bytes(),
                expected.clone().map(|value| value.into_bytes().into()),
                Some(new.clone().into_bytes().into()),
            )
            .map(|outcome| Reply::Cas {
                swapped: outcome.swapped,
            }),
        Command::Delete { key } => client
            .delete(key.clone().into_bytes())
            .map(|_| Reply::Written),
    };
    match result {
        Ok(reply) => Completion::Ok(reply),
        Err(error) => completion_of_error(&error),
    }
}

/// What the status pollers saw: every (time, node, term) at which a node said it leads.
#[derive(Debug, Default)]
pub(crate) struct LeaderLog {
    /// Observations in arrival order.
    pub(crate) seen: Vec<LeaderObservation>,
}

impl LeaderLog {
    /// The leader of the highest term seen in the last second, if any.
    pub(crate) fn current(&self, now_ms: u64) -> Option<NodeIndex> {
        self.seen
            .iter()
            .filter(|seen| seen.at_ms + 1_000 >= now_ms)
            .max_by_key(|seen| (seen.term, seen.at_ms))
            .map(|seen| NodeIndex(seen.node))
    }

    /// Terms in which two different nodes said they lead: a violation of election safety.
    pub(crate) fn two_leader_terms(&self) -> Vec<(u64, usize, usize)> {
        let mut by_term: std::collections::BTreeMap<u64, usize> = Default::default();
        let mut problems = Vec::new();
        for seen in &self.seen {
            match by_term.get(&seen.term) {
                Some(&node) if node != seen.node => problems.push((seen.term, node, seen.node)),
                Some(_) => {}
                None => {
                    by_term.insert(seen.term, seen.node);
                }
            }
        }
        problems
    }
}

/// Polls node `index`'s status every [`POLL_INTERVAL`] until `stop`, recording leadership.
pub(crate) fn spawn_poller(
    index: usize,
    endpoint: SocketAddr,
    recorder: Arc<Recorder>,
    leaders: Arc<Mutex<LeaderLog>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let mut options = client_options();
    options.attempt_timeout = Duration::from_millis(300);
    let mut client = new_client(vec![endpoint], options)?;
    let handle = thread::Builder::new()
        .name(format!("status-n{index}"))
        .spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let status = client.status_of(endpoint);
                if status.is_err() {
                    // `Client::status_of` keeps a broken connection after an error (a killed or
                    // restarted node): start over with a fresh client.
                    if let Ok(fresh) = new_client(vec![endpoint], options) {
                        client = fresh;
                    }
                }
                if let Ok(status) = status
                    && status.role == Role::Leader
                {
                    let seen = LeaderObservation {
                        at_ms: recorder.now_us() / 1_000,
                        node: index,
                        term: status.term.0,
                    };
                    let mut log = leaders.lock().unwrap_or_else(PoisonError::into_inner);
                    log.seen.push(seen);
                }
                thread::sleep(POLL_INTERVAL);
            }
        })?;
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_that_prove_nothing_was_applied_are_failed_others_indeterminate() {
        let refused = |code| Error::Refused {
            code,
            reason: String::new(),
        };
        assert_eq!(
            completion_of_error(&refused(ErrorCode::BadRequest)),
            Completion::Failed
        );
        assert_eq!(
            completion_of_error(&refused(ErrorCode::TooLarge)),
            Completion::Failed
        );
        for code in [
            ErrorCode::SessionExpired,
            ErrorCode::Retry,
            ErrorCode::Unavailable,
        ] {
            assert_eq!(
                completion_of_error(&refused(code)),
                Completion::Indeterminate
            );
        }
        let timeout = Error::Unavailable {
            detail: String::new(),
        };
        assert_eq!(completion_of_error(&timeout), Completion::Indeterminate);
    }

    #[test]
    fn two_leaders_in_one_term_are_reported() {
        let seen = |node, term| LeaderObservation {
            at_ms: 0,
            node,
            term,
        };
        let log = LeaderLog {
            seen: vec![seen(0, 1), seen(0, 1), seen(1, 2), seen(2, 2)],
        };
        assert_eq!(log.two_leader_terms(), vec![(2, 1, 2)]);
        assert_eq!(log.current(0), Some(NodeIndex(2)));
    }
}
