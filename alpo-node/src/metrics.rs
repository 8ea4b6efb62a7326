//! A node's Prometheus metrics (issue 15): what they mean, and the probe the event loop feeds.
//!
//! Every name starts `alpo_`; counters end `_total` (the exposition library adds it). The
//! metrics are served by `http.rs` at `/metrics` of the `[metrics] address`, off unless set.
//!
//! Invariants: metrics never feed back into the node (they are written by the node's threads
//! and read only by the HTTP thread); a counter only grows; gauges of the core's view are set
//! once per event-loop batch, so a scrape sees the state after some whole batch. With metrics
//! off no [`Metrics`] exists and every hook is a `None` check.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use alpo_core::{Message, MessageBody, NodeId, Role, Status};

/// One label, for a metric with a family of series (`role`, `peer`, `reason`).
type Labels = Vec<(&'static str, String)>;

/// A latency histogram in seconds, from 50 µs to about 3 s.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 17))
}

/// A size histogram (inputs or entries), 1 to 4096.
fn size_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// The roles a node can have, in `alpo_role`'s label.
const ROLES: [(Role, &str); 3] = [
    (Role::Passive, "passive"),
    (Role::Candidate, "candidate"),
    (Role::Leader, "leader"),
];

/// Reasons a peer message is dropped, in `alpo_peer_messages_dropped_total`'s label.
const DROP_REASONS: [&str; 5] = [
    "queue_full",
    "unroutable",
    "unencodable",
    "link_lost",
    "identity",
];

/// A node's metrics, shared by its threads.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    role: Family<Labels, Gauge>,
    /// `role`'s series, one per role, looked up once (set after every batch).
    role_series: Vec<(Role, Gauge)>,
    term: Gauge,
    leader: Gauge,
    commit_index: Gauge,
    applied_index: Gauge,
    durable_index: Gauge,
    last_index: Gauge,
    first_index: Gauge,
    snapshot_index: Gauge,
    apply_lag: Gauge,
    proposals: Counter,
    commits: Counter,
    batch_inputs: Histogram,
    append_batch_entries: Histogram,
    pub(crate) fsync_seconds: Histogram,
    append_round_trip_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub(crate) request_seconds: Histogram,
    storage_queue_depth: Gauge,
    apply_queue_depth: Gauge,
    pre_votes_started: Counter,
    elections_started: Counter,
    elections_won: Counter,
    elections_deferred: Counter,
    pre_votes_refused: Counter,
    votes_refused: Counter,
    snapshots_taken: Counter,
    snapshots_installed: Counter,
    peer_messages_dropped: Family<Labels, Counter>,
    peer_connections_established: Counter,
    peer_connect_failures: Counter,
    client_connections_accepted: Counter,
    /// Issue 13: scrub and vote fence.
    pub(crate) disk: crate::disk_metrics::DiskMetrics,
}

impl Metrics {
    /// A fresh set of metrics, every one registered (and so exposed) from the start.
    #[must_use]
    #[allow(clippy::too_many_lines)] // one registration per metric: a list, not logic
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("alpo");
        let mut metrics = Metrics {
            role: Family::default(),
            role_series: Vec::new(),
            term: Gauge::default(),
            leader: Gauge::default(),
            commit_index: Gauge::default(),
            applied_index: Gauge::default(),
            durable_index: Gauge::default(),
            last_index: Gauge::default(),
            first_index: Gauge::default(),
            snapshot_index: Gauge::default(),
            apply_lag: Gauge::default(),
            proposals: Counter::default(),
            commits: Counter::default(),
            batch_inputs: size_histogram(),
            append_batch_entries: size_histogram(),
            fsync_seconds: seconds_histogram(),
            append_round_trip_seconds: Family::new_with_constructor(seconds_histogram),
            request_seconds: seconds_histogram(),
            storage_queue_depth: Gauge::default(),
            apply_queue_depth: Gauge::default(),
            pre_votes_started: Counter::default(),
            elections_started: Counter::default(),
            elections_won: Counter::default(),
            elections_deferred: Counter::default(),
            pre_votes_refused: Counter::default(),
            votes_refused: Counter::default(),
            snapshots_taken: Counter::default(),
            snapshots_installed: Counter::default(),
            peer_messages_dropped: Family::default(),
            peer_connections_established: Counter::default(),
            peer_connect_failures: Counter::default(),
            client_connections_accepted: Counter::default(),
            disk: crate::disk_metrics::DiskMetrics::default(),
            registry: Registry::default(),
        };
        for (role, name) in ROLES {
            let series = metrics
                .role
                .get_or_create(&vec![("role", name.into())])
                .clone();
            series.set(i64::from(role == Role::Passive));
            metrics.role_series.push((role, series));
        }
        for reason in DROP_REASONS {
            let _ = metrics
                .peer_messages_dropped
                .get_or_create(&vec![("reason", reason.into())]);
        }
        let m = &metrics;
        let r = &mut registry;
        r.register(
            "role",
            "1 for the node's current role, 0 for the others",
            m.role.clone(),
        );
        r.register("term", "The node's current term", m.term.clone());
        r.register(
            "leader",
            "The leader the node believes in (0: none)",
            m.leader.clone(),
        );
        r.register(
            "commit_index",
            "Highest index known committed",
            m.commit_index.clone(),
        );
        r.register(
            "applied_index",
            "Highest index the state machine applied",
            m.applied_index.clone(),
        );
        r.register(
            "durable_index",
            "Highest index durable on this node's disk",
            m.durable_index.clone(),
        );
        r.register(
            "last_index",
            "Index of the node's last log entry",
            m.last_index.clone(),
        );
        r.register(
            "first_index",
            "First log index the node still holds",
            m.first_index.clone(),
        );
        r.register(
            "snapshot_index",
            "Last index of the newest durable snapshot",
            m.snapshot_index.clone(),
        );
        r.register(
            "apply_lag",
            "Entries committed but not yet applied",
            m.apply_lag.clone(),
        );
        r.register(
            "proposals",
            "Client commands proposed to the log (leader)",
            m.proposals.clone(),
        );
        r.register(
            "commits",
            "Log entries this node learned committed",
            m.commits.clone(),
        );
        r.register(
            "batch_inputs",
            "Inputs (messages, requests) per event-loop batch",
            m.batch_inputs.clone(),
        );
        r.register(
            "append_batch_entries",
            "Entries per log write handed to storage",
            m.append_batch_entries.clone(),
        );
        r.register(
            "fsync_seconds",
            "Time of one storage batch's fdatasync",
            m.fsync_seconds.clone(),
        );
        r.register(
            "append_round_trip_seconds",
            "Leader: from sending the oldest unanswered Append to a peer to its next reply",
            m.append_round_trip_seconds.clone(),
        );
        r.register(
            "request_seconds",
            "Client write: from arrival to the answer after apply",
            m.request_seconds.clone(),
        );
        r.register(
            "storage_queue_depth",
            "Operations waiting for the storage thread",
            m.storage_queue_depth.clone(),
        );
        r.register(
            "apply_queue_depth",
            "Messages waiting for the apply thread",
            m.apply_queue_depth.clone(),
        );
        r.register(
            "pre_votes_started",
            "Pre-vote rounds started (rule E2)",
            m.pre_votes_started.clone(),
        );
        r.register(
            "elections_started",
            "Candidacies started (rule E3)",
            m.elections_started.clone(),
        );
        r.register(
            "elections_won",
            "Elections won (rule E7)",
            m.elections_won.clone(),
        );
        r.register(
            "elections_deferred",
            "Campaigns deferred to a higher-ranked candidate (rule E8)",
            m.elections_deferred.clone(),
        );
        r.register(
            "pre_votes_refused",
            "Pre-votes this node refused",
            m.pre_votes_refused.clone(),
        );
        r.register(
            "votes_refused",
            "Votes this node refused",
            m.votes_refused.clone(),
        );
        r.register(
            "snapshots_taken",
            "Snapshots of this node's state made durable",
            m.snapshots_taken.clone(),
        );
        r.register(
            "snapshots_installed",
            "Snapshots received from a leader and installed",
            m.snapshots_installed.clone(),
        );
        r.register(
            "peer_messages_dropped",
            "Peer messages dropped, by reason",
            m.peer_messages_dropped.clone(),
        );
        r.register(
            "peer_connections_established",
            "Outbound peer connections established",
            m.peer_connections_established.clone(),
        );
        r.register(
            "peer_connect_failures",
            "Outbound peer connection attempts that failed",
            m.peer_connect_failures.clone(),
        );
        r.register(
            "client_connections_accepted",
            "Client connections accepted",
            m.client_connections_accepted.clone(),
        );
        m.disk.register(r);
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The metrics in Prometheus' text exposition format.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }

    /// Sets the gauges of the core's view (once per event-loop batch).
    pub(crate) fn observe_status(&self, status: &Status, applied: u64) {
        for (role, series) in &self.role_series {
            series.set(i64::from(*role == status.role));
        }
        self.term.set(gauge(status.term.0));
        self.leader.set(gauge(status.leader.map_or(0, |id| id.0)));
        self.commit_index.set(gauge(status.commit_index.0));
        self.applied_index.set(gauge(applied));
        self.durable_index.set(gauge(status.durable_index.0));
        self.last_index.set(gauge(status.last_index.0));
        self.first_index.set(gauge(status.first_index.0));
        self.snapshot_index.set(gauge(status.snapshot_index.0));
        self.apply_lag
            .set(gauge(status.commit_index.0.saturating_sub(applied)));
    }

    /// Brings the election counters up to the core's.
    pub(crate) fn observe_core_counters(&self, core: &alpo_core::Counters) {
        catch_up(&self.pre_votes_started, core.pre_votes_started);
        catch_up(&self.elections_started, core.elections_started);
        catch_up(&self.elections_won, core.elections_won);
        catch_up(&self.elections_deferred, core.elections_deferred);
        catch_up(&self.pre_votes_refused, core.pre_votes_refused);
        catch_up(&self.votes_refused, core.votes_refused);
    }

    /// Brings the transport counters up to alpo-net's (at each scrape).
    pub(crate) fn observe_transport(
        &self,
        peers: &alpo_net::Counters,
        clients: &alpo_net::Counters,
    ) {
        let drops = [
            peers.messages_dropped_queue_full,
            peers.messages_dropped_unroutable,
            peers.messages_dropped_unencodable,
            peers.messages_dropped_link_lost,
            peers.messages_dropped_identity,
        ];
        for (reason, count) in DROP_REASONS.into_iter().zip(drops) {
            let labels = vec![("reason", reason.to_string())];
            catch_up(&self.peer_messages_dropped.get_or_create(&labels), count);
        }
        catch_up(
            &self.peer_connections_established,
            peers.connections_established,
        );
        catch_up(&self.peer_connect_failures, peers.connect_failures);
        catch_up(
            &self.client_connections_accepted,
            clients.connections_accepted,
        );
    }

    pub(crate) fn snapshot_taken(&self) {
        self.snapshots_taken.inc();
    }

    pub(crate) fn snapshot_installed(&self) {
        self.snapshots_installed.inc();
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Raises `counter` to `value` (sources that count for themselves, read at intervals).
fn catch_up(counter: &Counter, value: u64) {
    let current = counter.get();
    if current < value {
        counter.inc_by(value - current);
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The event loop's side of the metrics: what it must remember between batches to turn its
/// inputs and outputs into counts and round trips. Owned by the event loop thread.
#[derive(Debug)]
pub(crate) struct LoopProbe {
    pub(crate) metrics: Arc<Metrics>,
    commit_index: u64,
    /// Leader: per peer, when the oldest Append not yet answered was sent.
    append_sent: BTreeMap<NodeId, std::time::Instant>,
    /// Per peer, its `append_round_trip_seconds` series, looked up on its first reply (a
    /// lookup builds a label and hashes it: too much for every AppendReply).
    round_trips: BTreeMap<NodeId, Histogram>,
}

impl LoopProbe {
    /// A probe for a core that starts with `commit_index` (not counted as commits).
    pub(crate) fn new(metrics: Arc<Metrics>, commit_index: u64) -> LoopProbe {
        LoopProbe {
            metrics,
            commit_index,
            append_sent: BTreeMap::new(),
            round_trips: BTreeMap::new(),
        }
    }

    /// A peer message arrived (before the core takes it).
    pub(crate) fn on_message(&mut self, message: &Message) {
        if let MessageBody::AppendReply(_) = message.body
            && let Some(sent) = self.append_sent.remove(&message.from)
        {
            let metrics = &self.metrics;
            self.round_trips
                .entry(message.from)
                .or_insert_with(|| {
                    let labels = vec![("peer", message.from.0.to_string())];
                    metrics
                        .append_round_trip_seconds
                        .get_or_create(&labels)
                        .clone()
                })
                .observe(sent.elapsed().as_secs_f64());
        }
    }

    /// The core sent a message.
    pub(crate) fn on_send(&mut self, message: &Message) {
        if let MessageBody::Append(_) = message.body {
            self.append_sent
                .entry(message.to)
                .or_insert_with(std::time::Instant::now);
        }
    }

    /// The core accepted a client's proposal.
    pub(crate) fn on_proposal(&self) {
        self.metrics.proposals.inc();
    }

    /// A log write of `count` entries went to storage.
    pub(crate) fn on_append(&self, count: usize) {
        self.metrics.append_batch_entries.observe(count as f64);
    }

    /// A batch ended: `inputs` arrived in it; the core's view is `status`.
    pub(crate) fn after_batch(
        &mut self,
        inputs: usize,
        (status, core): (&Status, &alpo_core::Counters),
        applied: u64,
        (storage_queue, apply_queue): (usize, usize),
    ) {
        let m = &self.metrics;
        if inputs > 0 {
            m.batch_inputs.observe(inputs as f64);
        }
        let commit = status.commit_index.0;
        if self.commit_index < commit {
            m.commits.inc_by(commit - self.commit_index);
            self.commit_index = commit;
        }
        if status.role != Role::Leader {
            self.append_sent.clear();
        }
        m.observe_status(status, applied);
        m.observe_core_counters(core);
        m.storage_queue_depth.set(gauge(storage_queue as u64));
        m.apply_queue_depth.set(gauge(apply_queue as u64));
    }
}
