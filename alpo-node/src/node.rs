//! A running node: opens the log and hard state from the data directory, starts the transport
//! and the client listener, and launches the event loop, storage and apply threads.
//!
//! Start-up sequence (rule E0 and docs/protocol.md, The driving contract):
//! 1. create the data directory; open the log (alpo-log recovers a torn tail, refuses damage
//!    elsewhere with an error naming the file and offset);
//! 2. load the hard state (term, vote, incarnation), bump the incarnation and store it durably
//!    before anything is sent, so peers can tell this start from the last;
//! 3. open the snapshots (alpo-log's `SnapshotStore` removes what a crash left and falls back
//!    past a damaged file); with a newest valid snapshot at `(L, term_L)`, redo rule S7 step 1:
//!    a log that does not hold `(L, term_L)` is discarded (`Log::reset`, continuing at `L + 1`);
//!    a log that starts above `L + 1` has lost entries, and the node refuses to start, naming
//!    the files; restore the state machine and sessions from the snapshot (rule S8);
//! 4. read the retained log entries after `L` into `alpo_core::Persisted` with the snapshot's
//!    meta, so the core starts with `applied = commit = L` and nothing up to `L` is applied
//!    again (the core keeps the retained log in memory);
//! 5. start the peer transport and the client listener, then the threads.
//!
//! Invariants: the log files are only written by the storage thread, the hard-state file only by
//! the event loop, snapshot files only by the snapshot thread; the node answers clients only
//! through the listener it started.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alpo_core::{Entry, EntryKind, HardState, Incarnation, LogIndex, LogPosition, Message, NodeId};
use alpo_core::{Persisted, PersistedLog, Term, TermRun};
use alpo_log::{Log, LogOptions, LogView, SnapshotOptions, SnapshotStore};
use alpo_net::{ClientListener, ClientListenerConfig, Inbox, PeerTransport};

use crate::apply::EntrySource;
use crate::client_protocol::NodeStatus;
use crate::config::NodeConfig;
use crate::error::Error;
use crate::http::HttpServer;
use crate::metrics::Metrics;
use crate::node_image::{self, RestoredState};
use crate::observe::NodeEndpoints;
use crate::server::{self, HardStateStore, Parts, PeerSender, Running};
use crate::snapshot::core_meta;
use crate::state_machine::StateMachine;
use crate::storage::LogStore;

/// A running ALPO node. Stop it with [`Server::stop`]; dropping it stops it too.
#[derive(Debug)]
pub struct Server {
    id: NodeId,
    running: Option<Running>,
    peer_addr: SocketAddr,
    client_addr: SocketAddr,
    transport: Arc<PeerTransport>,
    listener: Arc<ClientListener>,
    /// `/metrics`, `/cluster.json` and the live page, when `[metrics] address` is set.
    http: Option<HttpServer>,
}

/// Group-commit figures of a node's storage thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Syncs (fdatasync calls through `Log::sync`) made.
    pub sync_count: u64,
    /// Entries written.
    pub entry_count: u64,
}

/// alpo-log's `Log` as the storage thread writes it, with the position an installed snapshot
/// left before its first entry (alpo-log keeps indices, not the term before them).
struct FileLog {
    log: Log,
    base: LogPosition,
}

/// What recovery found on disk.
struct Recovered {
    log: FileLog,
    hard_state: FileHardState,
    persisted: Persisted,
    snapshots: SnapshotStore,
    restored: Option<RestoredState>,
}

/// The hard state as alpo-log stores it, kept by the event loop.
struct FileHardState {
    dir: PathBuf,
    incarnation: u64,
}

impl Server {
    /// Starts a node: recovers its data directory, listens on `config.peer_addr` and
    /// `config.client_addr`, and applies committed commands to `machine`.
    pub fn start(config: NodeConfig, machine: impl StateMachine) -> Result<Server, Error> {
        let listener = TcpListener::bind(config.peer_addr).map_err(|source| Error::Io {
            what: format!("binding the peer address {}", config.peer_addr),
            source,
        })?;
        Server::start_with_listener(config, listener, machine)
    }

    /// Like [`Server::start`], on a peer listener the caller bound already, so that tests can
    /// bind port 0 first and tell every node the others' real addresses.
    pub fn start_with_listener(
        config: NodeConfig,
        peer_listener: TcpListener,
        machine: impl StateMachine,
    ) -> Result<Server, Error> {
        // Issue 12: a joined directory links to the addresses the cluster gave at the join.
        let config = match crate::join::joined_book(&config.data_dir)? {
            Some(book) => crate::join::with_joined_peers(config, &book),
            None => config,
        };
        config.validate()?;
        let mut machine = machine;
        let Recovered {
            log,
            hard_state,
            persisted,
            snapshots,
            restored,
        } = recover(&config, &mut machine)?;
        let (inbox, transport, listener) = start_network(&config, peer_listener)?;
        let (id, peer_addr, client_addr) = (
            config.node_id(),
            transport.local_addr(),
            listener.local_addr(),
        );
        tracing::info!(node = id.0, %peer_addr, %client_addr, last_index = last_index(&persisted),
            incarnation = persisted.incarnation.0, "node starting");
        let parts = Parts {
            entry_source: Box::new(log.log.view()),
            log_reader: Box::new(log.log.view()),
            log: Box::new(log),
            snapshots: Some(snapshots),
            restored,
            hard_state: Box::new(hard_state),
            peers: Box::new(Arc::clone(&transport)),
            waker: Arc::new(inbox.waker()),
            inputs: Box::new(inbox),
            replier: listener.clone(),
            metrics: config.metrics.address.map(|_| Arc::new(Metrics::new())),
        };
        let endpoint = parts.metrics.clone().and_then(|metrics| {
            let addr = config.metrics.address?;
            Some(HttpStart::new(
                &config, addr, metrics, &transport, &listener,
            ))
        });
        let running = server::launch(config, persisted, parts, Box::new(machine))?;
        let http = match endpoint
            .map(|endpoint| endpoint.serve(&running))
            .transpose()
        {
            Ok(http) => http,
            Err(error) => {
                let _ = running.stop();
                return Err(error);
            }
        };
        Ok(Server {
            id,
            running: Some(running),
            peer_addr,
            client_addr,
            transport,
            listener,
            http,
        })
    }

    /// Issue 12: starts a new node that joins a running cluster (`alpo node --join`,
    /// `join.rs`): `members` is the cluster's answer to [`crate::Client::members`], which must
    /// list `config.id` (added first with `member add`); `config.data_dir` must be empty. The
    /// node starts with an empty configuration (rule M11): it never campaigns until a
    /// configuration names it a voter, and learns the log or a snapshot from the leader.
    pub fn join(
        config: NodeConfig,
        members: &crate::member_protocol::Members,
        machine: impl StateMachine,
    ) -> Result<Server, Error> {
        let listener = TcpListener::bind(config.peer_addr).map_err(|source| Error::Io {
            what: format!("binding the peer address {}", config.peer_addr),
            source,
        })?;
        Server::join_with_listener(config, members, listener, machine)
    }

    /// Like [`Server::join`], on a peer listener the caller bound already.
    pub fn join_with_listener(
        mut config: NodeConfig,
        members: &crate::member_protocol::Members,
        peer_listener: TcpListener,
        machine: impl StateMachine,
    ) -> Result<Server, Error> {
        crate::join::check_empty(&config.data_dir)?;
        config.peers = crate::join::peers_from_members(&config, members)?;
        config.validate()?;
        crate::join::mark_joined(&config)?;
        Server::start_with_listener(config, peer_listener, machine)
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The address other nodes reach this one on (the real port when configured with port 0).
    #[must_use]
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// The address clients reach this node on.
    #[must_use]
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Where the node serves `/metrics`, `/cluster.json` and its live page (the bound address,
    /// so port 0 in the config gives the real port here); `None` with metrics off.
    #[must_use]
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// The node's role, term, leader and indices, as of its event loop's last batch.
    #[must_use]
    pub fn status(&self) -> NodeStatus {
        match &self.running {
            Some(running) => running.shared.status.lock().clone(),
            None => unreachable_status(self.id),
        }
    }

    /// How many log syncs the storage thread made and how many entries they covered since start
    /// (entries per sync is the group-commit batch size).
    #[must_use]
    pub fn storage_stats(&self) -> StorageStats {
        let Some(running) = &self.running else {
            return StorageStats::default();
        };
        let state = running.shared.storage.lock();
        StorageStats {
            sync_count: state.sync_count,
            entry_count: state.entry_count,
        }
    }

    /// The peer transport's counters (messages sent, dropped, connections rejected and why).
    #[must_use]
    pub fn peer_counters(&self) -> alpo_net::Counters {
        self.transport.counters()
    }

    /// The client listener's counters.
    #[must_use]
    pub fn client_counters(&self) -> alpo_net::Counters {
        self.listener.counters()
    }

    /// The fatal error that stopped the node on its own, if it did. Typed, so a caller can
    /// match on it: a failed log write or sync is [`Error::Log`] (and `is_fatal()` for a failed
    /// sync), whose `{:#}` chain names the file and the operating system's error.
    #[must_use]
    pub fn failure(&self) -> Option<Arc<Error>> {
        let running = self.running.as_ref()?;
        running.shared.failure.lock().clone()
    }

    /// Whether the event loop has ended (after a fatal error; `stop` also ends it).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.running
            .as_ref()
            .is_none_or(|running| running.thread.is_finished())
    }

    /// Stops the node: the event loop ends, queued log writes and applies finish, connections
    /// close and every thread is joined. Returns the fatal error if the node had failed.
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        if let Some(http) = &mut self.http {
            http.stop();
        }
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let (sync_count, entry_count) = {
            let state = running.shared.storage.lock();
            (state.sync_count, state.entry_count)
        };
        let result = running.stop();
        tracing::info!(node = self.id.0, sync_count, entry_count, "node stopped");
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown() {
            tracing::error!(
                node = self.id.0,
                error = &error as &dyn std::error::Error,
                "node stopped with an error"
            );
        }
        // The transport and listener stop when the last reference (this one) is dropped.
    }
}

/// The metrics endpoint, waiting for the running node it reports on.
struct HttpStart {
    addr: SocketAddr,
    endpoints: NodeEndpoints,
}

impl HttpStart {
    fn new(
        config: &NodeConfig,
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        transport: &Arc<PeerTransport>,
        listener: &Arc<ClientListener>,
    ) -> HttpStart {
        let peers = config.peers.iter();
        let endpoints = NodeEndpoints {
            id: config.node_id(),
            cluster_id: config.cluster(),
            metrics,
            shared: None,
            transport: Arc::clone(transport),
            listener: Arc::clone(listener),
            peers: peers.map(|p| (NodeId(p.id), p.client_addr)).collect(),
        };
        HttpStart { addr, endpoints }
    }

    /// Serves the endpoints of `running`.
    fn serve(mut self, running: &Running) -> Result<HttpServer, Error> {
        self.endpoints.shared = Some(Arc::clone(&running.shared));
        let id = self.endpoints.id.0;
        let http = HttpServer::start(self.addr, Arc::new(self.endpoints))?;
        let addr = http.local_addr();
        tracing::info!(node = id, metrics = %addr, "serving /metrics and the live page");
        Ok(http)
    }
}

impl PeerSender for Arc<PeerTransport> {
    fn send(&self, message: Message) {
        PeerTransport::send(self, message);
    }

    fn set_peers(&self, peers: &[(NodeId, std::net::SocketAddr)]) -> Result<(), Error> {
        Ok(PeerTransport::set_peers(self, peers)?)
    }
}

impl LogStore for FileLog {
    fn truncate_suffix(&mut self, from: LogIndex) -> Result<(), alpo_log::Error> {
        self.log.truncate_suffix(from.0)
    }

    fn append(&mut self, entry: &Entry) -> Result<(), alpo_log::Error> {
        let (index, term, kind) = (entry.index.0, entry.term.0, entry.kind.to_byte());
        self.log.append(index, term, kind, &entry.payload)?;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), alpo_log::Error> {
        self.log.sync()?;
        Ok(())
    }

    fn last_position(&self) -> LogPosition {
        if self.log.last_index() == self.base.index.0 {
            return self.base;
        }
        LogPosition {
            index: LogIndex(self.log.last_index()),
            term: Term(self.log.last_term()),
        }
    }

    fn compact_prefix(&mut self, below: LogIndex) -> Result<(), alpo_log::Error> {
        self.log.compact_prefix(below.0)
    }

    fn reset(&mut self, snapshot: LogPosition) -> Result<(), alpo_log::Error> {
        self.log.reset(snapshot.index.0 + 1)?;
        self.base = snapshot;
        Ok(())
    }
}

impl EntrySource for LogView {
    fn read(&self, from: LogIndex, to: LogIndex, max_bytes: u64) -> Result<Vec<Entry>, Error> {
        let records = LogView::read(self, from.0, to.0, max_bytes)?;
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let Some(kind) = EntryKind::from_byte(record.kind) else {
                // Checked at open for every record; the node writes only kinds it knows.
                let (index, other) = (record.index, record.kind);
                return Err(Error::Corrupt {
                    what: format!("log entry {index} has unknown kind {other}"),
                });
            };
            entries.push(Entry {
                index: LogIndex(record.index),
                term: Term(record.term),
                kind,
                payload: record.payload,
            });
        }
        Ok(entries)
    }
}

impl HardStateStore for FileHardState {
    fn save(&mut self, state: HardState) -> Result<(), Error> {
        let stored = alpo_log::HardState {
            current_term: state.current_term.0,
            voted_for: state.voted_for.map(|id| id.0),
            incarnation: self.incarnation,
        };
        Ok(stored.store(&self.dir)?)
    }

    fn save_term_ceiling(&mut self, ceiling: Term) -> Result<(), Error> {
        Ok(alpo_log::TermCeiling(ceiling.0).store(&self.dir)?)
    }
}

/// Steps 1–4 of the start-up sequence.
fn recover(config: &NodeConfig, machine: &mut impl StateMachine) -> Result<Recovered, Error> {
    let dir = config.data_dir.as_path();
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: format!("creating the data directory {}", dir.display()),
        source,
    })?;
    let mut options = LogOptions::new(config.cluster_id, config.id);
    options.segment_bytes_max = config.log.segment_bytes_max;
    let mut log = Log::open(dir, options)?;
    let snapshots = SnapshotStore::open(dir, SnapshotOptions::new(config.cluster_id, config.id))?;
    let stored = alpo_log::HardState::load(dir)?;
    // A log with entries (or a snapshot) was written by a node that had voted or followed a
    // leader; without its hard state it could vote twice in one term (rule E0), so it must not
    // start as new.
    if stored.is_none() && (log.last_index() > 0 || snapshots.newest().is_some()) {
        return Err(Error::Corrupt {
            what: format!(
                "{} is missing in {} but the log holds entries up to index {}; \
                 refusing to start without the term and vote",
                alpo_log::HARD_STATE_FILE_NAME,
                dir.display(),
                log.last_index()
            ),
        });
    }
    let mut stored = stored.unwrap_or(alpo_log::HardState {
        current_term: 0,
        voted_for: None,
        incarnation: 0,
    });
    stored.incarnation = stored
        .incarnation
        .checked_add(1)
        .ok_or_else(|| Error::Corrupt {
            what: format!("the incarnation in {} is at its maximum", dir.display()),
        })?;
    stored.store(dir)?;
    // F8: the ceiling of a disk written before it existed is 0; the core raises it before
    // its next vote. (A damaged ceiling file refuses the start, as a damaged hard state does:
    // starting without voting rights, rule F9, comes with the node's part of issue 13.)
    let term_ceiling = alpo_log::TermCeiling::load(dir)?.map_or(Term(0), |ceiling| Term(ceiling.0));
    let (base, snapshot, restored) = restore_newest(config, &snapshots, &mut log, machine)?;
    let persisted = Persisted {
        hard_state: HardState {
            current_term: Term(stored.current_term),
            voted_for: stored.voted_for.map(NodeId),
        },
        snapshot,
        log: persisted_log(&log, snapshot.map_or(0, |meta| meta.last.index.0))?,
        incarnation: Incarnation(stored.incarnation),
        term_ceiling,
        hard_state_lost: false,
    };
    let hard_state = FileHardState {
        dir: dir.to_path_buf(),
        incarnation: stored.incarnation,
    };
    Ok(Recovered {
        log: FileLog { log, base },
        hard_state,
        persisted,
        snapshots,
        restored,
    })
}

/// Step 3's snapshot part: restores `machine` from the newest valid snapshot after redoing
/// S7 step 1 on `log`; returns the log's base, the snapshot as the core knows it, and what was
/// restored besides the machine.
fn restore_newest(
    config: &NodeConfig,
    snapshots: &SnapshotStore,
    log: &mut Log,
    machine: &mut impl StateMachine,
) -> Result<
    (
        LogPosition,
        Option<alpo_core::SnapshotMeta>,
        Option<RestoredState>,
    ),
    Error,
> {
    let dir = config.data_dir.as_path();
    Ok(match snapshots.open_newest()? {
        None => {
            if 1 < log.first_index() {
                return Err(Error::Corrupt {
                    what: format!(
                        "the log in {} starts at index {} but no valid snapshot covers the \
                         entries before it{}",
                        dir.display(),
                        log.first_index(),
                        damaged_note(snapshots)
                    ),
                });
            }
            (LogPosition::default(), None, None)
        }
        Some(file) => {
            let meta = file.meta().clone();
            let last = LogPosition {
                index: LogIndex(meta.last_index),
                term: Term(meta.last_term),
            };
            redo_install_truncation(log, last, file.path(), snapshots)?;
            let restored = node_image::restore_from_file(file.path(), machine)?;
            tracing::info!(node = config.id, index = last.index.0, file = %file.path().display(),
                "state restored from the newest snapshot");
            let core = core_meta(&meta, file.file_bytes());
            (last, Some(core), Some(restored))
        }
    })
}

/// `" (damaged snapshot files: A at byte N, …)"` when the store skipped damaged files, else
/// nothing: what an operator needs to see next to a refusal to start.
fn damaged_note(snapshots: &SnapshotStore) -> String {
    let damaged: Vec<String> = snapshots
        .events()
        .iter()
        .filter(|event| event.situation == alpo_log::SnapshotSituation::Damaged)
        .map(|event| format!("{} at byte {}", event.path.display(), event.offset))
        .collect();
    if damaged.is_empty() {
        String::new()
    } else {
        format!(" (damaged snapshot files: {})", damaged.join(", "))
    }
}

/// Rule S7 step 1, redone at open: a log that does not hold the snapshot's last position
/// `last` is discarded and continues at `L + 1`; a log that starts above `L + 1` lost entries
/// no snapshot covers (a damaged newest snapshot, or a damaged log), and the node refuses.
fn redo_install_truncation(
    log: &mut Log,
    last: LogPosition,
    snapshot: &Path,
    snapshots: &SnapshotStore,
) -> Result<(), Error> {
    let l = last.index.0;
    if log.first_index() > l + 1 {
        return Err(Error::Corrupt {
            what: format!(
                "the log in {} starts at index {} but the newest valid snapshot {} ends at \
                 index {l}: entries {} to {} are missing (a damaged newer snapshot falls back \
                 only to one the log still continues){}",
                log.dir().display(),
                log.first_index(),
                snapshot.display(),
                l + 1,
                log.first_index() - 1,
                damaged_note(snapshots)
            ),
        });
    }
    // The log continues the snapshot if it starts right after `L` (after a reset, or
    // compacted exactly there) or holds `(L, term_L)`; entries after `L` then follow it
    // (log matching). Otherwise a crash fell between an install and its truncation.
    let continues = log.first_index() == l + 1 || log.term_at(l) == Some(last.term.0);
    if !continues {
        tracing::info!(
            index = l,
            first = log.first_index(),
            last = log.last_index(),
            "the log does not continue the newest snapshot: discarding it (rule S7 step 1)"
        );
        log.reset(l + 1)?;
    }
    Ok(())
}

/// Rule S9: the core gets the log's term index (from the scan `Log::open` made) and no
/// entries; it reads back what it needs with `ReadLog`, so a start never loads the log. Rule
/// M1: it gets the `Config` entries past the snapshot (`covered`), found by one pass over the
/// records (only those few are kept in memory).
fn persisted_log(log: &Log, covered: u64) -> Result<PersistedLog, Error> {
    let mut configs = Vec::new();
    for record in log.entries(covered.saturating_add(1)..) {
        let record = record?;
        if EntryKind::from_byte(record.kind) == Some(EntryKind::Config) {
            configs.push(Entry {
                index: LogIndex(record.index),
                term: Term(record.term),
                kind: EntryKind::Config,
                payload: record.payload,
            });
        }
    }
    let runs: Vec<TermRun> = log
        .term_runs()
        .iter()
        .map(|(first, term)| TermRun {
            first: LogIndex(*first),
            term: Term(*term),
        })
        .collect();
    let last = if runs.is_empty() {
        LogIndex(0)
    } else {
        LogIndex(log.last_index())
    };
    Ok(PersistedLog {
        runs,
        last,
        tail: Vec::new(),
        configs,
    })
}

/// The node's network: one inbox that reads every peer and client connection on the event
/// loop's thread, the peer transport on `peer_listener` and the client listener, both with
/// the configured TLS (plain TCP without it).
fn start_network(
    config: &NodeConfig,
    peer_listener: TcpListener,
) -> Result<(Inbox, Arc<PeerTransport>, Arc<ClientListener>), Error> {
    let peers = config
        .peers
        .iter()
        .map(|p| (NodeId(p.id), p.peer_addr))
        .collect();
    let mut peer_config =
        alpo_net::PeerConfig::new(config.cluster(), config.node_id(), config.peer_addr, peers);
    let tls = config
        .tls
        .as_ref()
        .map(crate::tls::TlsSettings::load)
        .transpose()?;
    peer_config.tls.clone_from(&tls);
    let inbox = Inbox::new()?;
    let transport = PeerTransport::start_with_listener(peer_listener, peer_config, &inbox)?;
    let mut client_config =
        ClientListenerConfig::new(config.cluster(), config.node_id(), config.client_addr);
    client_config.tls = tls;
    let listener = ClientListener::start(client_config, &inbox)?;
    Ok((inbox, Arc::new(transport), Arc::new(listener)))
}

fn last_index(persisted: &Persisted) -> u64 {
    persisted.log.last.0
}

fn unreachable_status(id: NodeId) -> NodeStatus {
    NodeStatus {
        id,
        role: alpo_core::Role::Passive,
        term: Term(0),
        leader: None,
        commit_index: LogIndex(0),
        last_index: LogIndex(0),
        durable_index: LogIndex(0),
        applied_index: LogIndex(0),
        snapshot_index: LogIndex(0),
        first_index: LogIndex(0),
    }
}
