//! A node's configuration: who it is, where it listens, who its peers are, where its data lives
//! and its protocol timing; read from TOML or built in code, then validated.
//!
//! Invariants after `validate`: node ids are non-zero and distinct; the node's own id is not
//! among its peers; every listen and peer address is distinct (port 0, "any free port", aside);
//! the timing satisfies `alpo_core::Config::validate` (heartbeat below half the shortest passive
//! timeout, non-empty ranges). Errors name the field (`peers[1].id`,
//! `timeouts.heartbeat_interval_ms`) and the problem.
//!
//! ```toml
//! id = 1
//! cluster_id = 7
//! data_dir = "/var/lib/alpo/1"
//! peer_addr = "127.0.0.1:7101"     # listens for other nodes
//! client_addr = "127.0.0.1:7201"   # listens for clients
//!
//! [[peers]]
//! id = 2
//! peer_addr = "127.0.0.1:7102"
//! client_addr = "127.0.0.1:7202"
//!
//! [timeouts]                       # optional; these are the LAN defaults
//! heartbeat_interval_ms = 50
//! passive_timeout_ms_min = 300
//! passive_timeout_ms_max = 600
//! election_cycle_ms_min = 150
//! election_cycle_ms_max = 300
//!
//! [snapshots]                      # optional; these are the defaults
//! interval_entries = 100000        # snapshot after this many applied entries; 0 = never
//! retain_entries = 10000           # log entries kept below a snapshot for slow followers
//!
//! [log]                            # optional; the defaults
//! segment_bytes_max = 67108864     # segment file size: compaction drops whole segments
//! cache_bytes_max = 67108864       # recent entries the core keeps in memory (rule S9)
//! scrub_bytes_per_sec = 4194304    # background scrub rate (issue 13); 0 turns it off
//! ```

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use alpo_core::{ClusterId, NodeId};

use crate::error::Error;

/// One node's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: non-zero, unique in the cluster, never reused.
    pub id: u64,
    /// The cluster's id: every connection and log file carries it; a foreign one is refused.
    pub cluster_id: u64,
    /// Where the node keeps its log and hard state (created if missing).
    pub data_dir: PathBuf,
    /// Address the node listens on for other nodes.
    pub peer_addr: SocketAddr,
    /// Address the node listens on for clients.
    pub client_addr: SocketAddr,
    /// The other nodes of the cluster (empty for a one-node cluster).
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Protocol timing (docs/protocol.md, Timing).
    #[serde(default = "Timeouts::lan")]
    pub timeouts: Timeouts,
    /// When to take snapshots and how much log to keep behind them (rules S2, S4).
    #[serde(default)]
    pub snapshots: Snapshots,
    /// The log files.
    #[serde(default)]
    pub log: LogSettings,
    /// Issue 16: TLS on both ports (`crate::tls`); plain TCP without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<crate::tls::TlsSettings>,
    /// Reads without a log write (rules Q1–Q3): the opt-in lease.
    #[serde(default)]
    pub reads: ReadSettings,
    /// The metrics and live-page HTTP endpoint (issue 15); off unless an address is set.
    #[serde(default)]
    pub metrics: MetricsSettings,
    /// The flight recorder (issue 15): the core's inputs, kept in the data directory.
    #[serde(default)]
    pub recorder: RecorderSettings,
}

/// How reads are served (docs/operations.md, Reads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadSettings {
    /// Lease reads (rule Q3), off when 0: the bound `ρ` on every node's clock drift, in parts
    /// per million. **Assumption:** every node's monotonic clock runs within `1 ± ρ` of real
    /// time. Requires check-quorum (always on in alpo-node). 20,000 (2%) is a safe bound for
    /// ordinary hardware clocks; a lease then lasts `P_min·(1−ρ)/(1+ρ) − H/10`.
    pub lease_drift_ppm: u32,
}

/// Where a node serves `/metrics`, `/cluster.json` and its live page (`http.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// The HTTP address; `None` (the default) serves nothing and collects no metrics.
    pub address: Option<SocketAddr>,
}

/// The flight recorder: a bounded ring of input-trace files under `data_dir/trace`
/// (`recorder.rs`), replayed offline by `alpo replay`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderSettings {
    /// Record at all (on by default).
    pub enabled: bool,
    /// Disk the trace files may use together; the oldest files go first, of earlier starts or
    /// of this one, so the budget keeps the newest history.
    pub disk_bytes_max: u64,
    /// The size at which a trace file is closed and the next begun with a checkpoint of the
    /// core (issue 15): the unit the ring drops. At most half the budget; `None` (the default):
    /// an eighth of the budget, at most `limits::RECORDER_FILE_BYTES_DEFAULT`
    /// ([`RecorderSettings::file_bytes`]).
    pub file_bytes_max: Option<u64>,
}

impl RecorderSettings {
    /// The trace file size in force (`file_bytes_max` or its default).
    #[must_use]
    pub fn file_bytes(&self) -> u64 {
        self.file_bytes_max.unwrap_or_else(|| {
            (self.disk_bytes_max / 8).clamp(
                crate::limits::RECORDER_FILE_BYTES_MIN,
                crate::limits::RECORDER_FILE_BYTES_DEFAULT,
            )
        })
    }
}

impl Default for RecorderSettings {
    fn default() -> RecorderSettings {
        RecorderSettings {
            enabled: true,
            disk_bytes_max: crate::limits::RECORDER_DISK_BYTES_DEFAULT,
            file_bytes_max: None,
        }
    }
}

/// How the log's files are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// Size of one segment file: compaction removes whole segments, so up to this much log
    /// below the compaction point stays on disk (alpo-log's `LogOptions::segment_bytes_max`).
    pub segment_bytes_max: u64,
    /// Payload bytes of recent entries the core keeps in memory (rule S9,
    /// `alpo_core::Config::log_cache_bytes_max`); older entries are read back from the log
    /// files when a follower or the state machine needs them. Entries not yet committed are
    /// always kept, whatever this says.
    pub cache_bytes_max: u64,
    /// Issue 13: the background scrubber re-reads the durable log from its files at most this
    /// many bytes per second, to find latent damage; 0 turns it off.
    pub scrub_bytes_per_sec: u64,
}

impl Default for LogSettings {
    fn default() -> LogSettings {
        LogSettings {
            segment_bytes_max: alpo_log::limits::SEGMENT_BYTES_DEFAULT,
            cache_bytes_max: alpo_core::limits::LOG_CACHE_BYTES_MAX,
            scrub_bytes_per_sec: crate::limits::SCRUB_BYTES_PER_SEC_DEFAULT,
        }
    }
}

/// The snapshot policy (docs/operations.md, Snapshots): the disk a node uses stays within two
/// snapshots plus `interval_entries + retain_entries` entries of log, plus one segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Snapshots {
    /// Take a snapshot once this many entries were applied since the last one (rule S2);
    /// 0 never takes one (the log then grows without bound).
    pub interval_entries: u64,
    /// Log entries kept below the newest snapshot when compacting, so that a follower only a
    /// little behind catches up by appends instead of a whole snapshot (rule S4).
    pub retain_entries: u64,
}

impl Default for Snapshots {
    fn default() -> Snapshots {
        Snapshots {
            interval_entries: 100_000,
            retain_entries: 10_000,
        }
    }
}

/// Another node of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its node id.
    pub id: u64,
    /// Where it listens for other nodes.
    pub peer_addr: SocketAddr,
    /// Where it listens for clients (sent to clients in "not the leader" answers).
    pub client_addr: SocketAddr,
}

/// Protocol timing, in milliseconds (docs/protocol.md, Timing).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// `H`: an idle leader's interval between heartbeats.
    pub heartbeat_interval_ms: u64,
    /// `P` lower bound: silence after which a passive node stands for election.
    pub passive_timeout_ms_min: u64,
    /// `P` upper bound (exclusive).
    pub passive_timeout_ms_max: u64,
    /// `C` lower bound: how long a candidate waits for votes.
    pub election_cycle_ms_min: u64,
    /// `C` upper bound (exclusive).
    pub election_cycle_ms_max: u64,
}

impl Timeouts {
    /// The LAN defaults: `H` = 50 ms, `P` in [300, 600) ms, `C` in [150, 300) ms.
    #[must_use]
    pub fn lan() -> Timeouts {
        Timeouts {
            heartbeat_interval_ms: 50,
            passive_timeout_ms_min: 300,
            passive_timeout_ms_max: 600,
            election_cycle_ms_min: 150,
            election_cycle_ms_max: 300,
        }
    }
}

impl NodeConfig {
    /// One configuration per member of a cluster: each member listens on its own addresses,
    /// names every other member as a peer, keeps its data in `dir/node-<id>` and uses the LAN
    /// timeouts. This is how `alpo dev`, the bank example and the tests lay out a cluster on
    /// one machine; `validate` still checks each (ids non-zero and distinct, and so on).
    #[must_use]
    pub fn for_members(cluster_id: u64, dir: &Path, members: &[PeerConfig]) -> Vec<NodeConfig> {
        members
            .iter()
            .map(|member| NodeConfig {
                id: member.id,
                cluster_id,
                data_dir: dir.join(format!("node-{}", member.id)),
                peer_addr: member.peer_addr,
                client_addr: member.client_addr,
                peers: members
                    .iter()
                    .filter(|peer| peer.id != member.id)
                    .cloned()
                    .collect(),
                timeouts: Timeouts::lan(),
                snapshots: Snapshots::default(),
                log: LogSettings::default(),
                reads: ReadSettings::default(),
                tls: None,
                metrics: MetricsSettings::default(),
                recorder: RecorderSettings::default(),
            })
            .collect()
    }

    /// Reads and validates a TOML file; errors name the file, the field and the problem.
    pub fn load(path: &Path) -> Result<NodeConfig, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            what: format!("reading config file {}", path.display()),
            source,
        })?;
        let config: NodeConfig = toml::from_str(&text).map_err(|error| Error::Config {
            field: format!("{} (toml)", path.display()),
            problem: error.to_string().trim_end().replace('\n', " "),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the invariants in the module documentation.
    pub fn validate(&self) -> Result<(), Error> {
        if self.id == 0 {
            return Err(config_error("id", "must be above zero"));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(config_error("data_dir", "must not be empty"));
        }
        let mut ids = BTreeSet::from([self.id]);
        // Port 0 ("any free port") may appear more than once; real addresses may not.
        let mut addrs = BTreeSet::from([self.peer_addr]);
        if self.client_addr.port() != 0 && !addrs.insert(self.client_addr) {
            return Err(config_error("client_addr", "must differ from peer_addr"));
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if peer.id == 0 {
                return Err(config_error(
                    &format!("peers[{i}].id"),
                    "must be above zero",
                ));
            }
            if !ids.insert(peer.id) {
                let problem = format!("node id {} is used twice", peer.id);
                return Err(config_error(&format!("peers[{i}].id"), &problem));
            }
            for (name, addr) in [
                ("peer_addr", peer.peer_addr),
                ("client_addr", peer.client_addr),
            ] {
                if addr.port() != 0 && !addrs.insert(addr) {
                    let problem = format!("address {addr} is used twice");
                    return Err(config_error(&format!("peers[{i}].{name}"), &problem));
                }
            }
        }
        let segment = self.log.segment_bytes_max;
        let (min, max) = (
            alpo_log::limits::SEGMENT_BYTES_MIN,
            alpo_log::limits::SEGMENT_BYTES_MAX,
        );
        if !(min..=max).contains(&segment) {
            let problem = format!("{segment} is outside {min}..={max}");
            return Err(config_error("log.segment_bytes_max", &problem));
        }
        let budget = self.recorder.disk_bytes_max;
        let least = crate::limits::RECORDER_DISK_BYTES_MIN;
        if self.recorder.enabled && budget < least {
            let problem = format!("{budget} is below {least} (turn the recorder off instead)");
            return Err(config_error("recorder.disk_bytes_max", &problem));
        }
        let file = self.recorder.file_bytes();
        let least = crate::limits::RECORDER_FILE_BYTES_MIN;
        if self.recorder.enabled && !(least..=budget / 2).contains(&file) {
            let problem = format!(
                "{file} is outside {least}..={} (half the budget)",
                budget / 2
            );
            return Err(config_error("recorder.file_bytes_max", &problem));
        }
        if let Some(addr) = self.metrics.address
            && addr.port() != 0
            && addrs.contains(&addr)
        {
            let problem = format!("address {addr} is used twice");
            return Err(config_error("metrics.address", &problem));
        }
        self.core_config(0)
            .validate()
            .map_err(|error| Error::Config {
                field: node_field(error.field),
                problem: error.problem,
            })
    }

    /// The protocol configuration for alpo-core, with `seed` for its random generator.
    #[must_use]
    pub fn core_config(&self, seed: u64) -> alpo_core::Config {
        let mut members: Vec<NodeId> = self.peers.iter().map(|peer| NodeId(peer.id)).collect();
        members.push(NodeId(self.id));
        members.sort();
        let mut config = alpo_core::Config::lan(NodeId(self.id), members, seed);
        let t = self.timeouts;
        config.heartbeat_interval = Duration::from_millis(t.heartbeat_interval_ms);
        config.passive_timeout_min = Duration::from_millis(t.passive_timeout_ms_min);
        config.passive_timeout_max = Duration::from_millis(t.passive_timeout_ms_max);
        config.election_cycle_min = Duration::from_millis(t.election_cycle_ms_min);
        config.election_cycle_max = Duration::from_millis(t.election_cycle_ms_max);
        let snapshots = self.snapshots;
        config.snapshot_interval_entries =
            Some(snapshots.interval_entries).filter(|interval| *interval != 0);
        config.retain_entries = snapshots.retain_entries;
        config.log_cache_bytes_max = self.log.cache_bytes_max;
        config.read_lease = (self.reads.lease_drift_ppm != 0).then_some(alpo_core::ReadLease {
            drift_ppm: self.reads.lease_drift_ppm,
        });
        config
    }

    /// This node's id.
    #[must_use]
    pub fn node_id(&self) -> NodeId {
        NodeId(self.id)
    }

    /// The cluster's id.
    #[must_use]
    pub fn cluster(&self) -> ClusterId {
        ClusterId(self.cluster_id)
    }

    /// The client address of node `id`, if it is this node or a peer.
    #[must_use]
    pub fn client_addr_of(&self, id: NodeId) -> Option<SocketAddr> {
        if id.0 == self.id {
            return Some(self.client_addr);
        }
        self.peers
            .iter()
            .find(|peer| peer.id == id.0)
            .map(|peer| peer.client_addr)
    }
}

/// Parses `ID=PEER_ADDR,CLIENT_ADDR`, the command-line form of a peer
/// (`2=127.0.0.1:7102,127.0.0.1:7202`).
impl FromStr for PeerConfig {
    type Err = String;

    fn from_str(text: &str) -> Result<PeerConfig, String> {
        let form = "expected ID=PEER_ADDR,CLIENT_ADDR";
        let (id, addrs) = text
            .split_once('=')
            .ok_or_else(|| format!("{form}, got {text:?}"))?;
        let (peer_addr, client_addr) = addrs
            .split_once(',')
            .ok_or_else(|| format!("{form}, got {text:?}"))?;
        let id = id
            .trim()
            .parse()
            .map_err(|_| format!("node id {id:?} is not a number"))?;
        let parse_addr = |addr: &str| {
            addr.trim()
                .parse::<SocketAddr>()
                .map_err(|_| format!("{addr:?} is not an address of the form IP:PORT"))
        };
        Ok(PeerConfig {
            id,
            peer_addr: parse_addr(peer_addr)?,
            client_addr: parse_addr(client_addr)?,
        })
    }
}

fn config_error(field: &str, problem: &str) -> Error {
    Error::Config {
        field: field.to_string(),
        problem: problem.to_string(),
    }
}

/// Maps alpo-core's field names to this file's, so the error names what the operator wrote.
/// The configuration field a field of alpo-core's `Config` comes from.
fn node_field(core_field: &str) -> String {
    match core_field {
        "heartbeat_interval" => "timeouts.heartbeat_interval_ms".into(),
        "passive_timeout_min" => "timeouts.passive_timeout_ms_min".into(),
        "election_cycle_min" => "timeouts.election_cycle_ms_min".into(),
        "snapshot_interval_entries" => "snapshots.interval_entries".into(),
        "retain_entries" => "snapshots.retain_entries".into(),
        "log_cache_bytes_max" => "log.cache_bytes_max".into(),
        "read_lease" => "reads.lease_drift_ppm".into(),
        other => format!("timeouts.{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        id = 1
        cluster_id = 7
        data_dir = "/tmp/alpo/1"
        peer_addr = "127.0.0.1:7101"
        client_addr = "127.0.0.1:7201"

        [[peers]]
        id = 2
        peer_addr = "127.0.0.1:7102"
        client_addr = "127.0.0.1:7202"

        [[peers]]
        id = 3
        peer_addr = "127.0.0.1:7103"
        client_addr = "127.0.0.1:7203"
    "#;

    fn example() -> NodeConfig {
        toml::from_str(EXAMPLE).unwrap()
    }

    #[test]
    fn example_parses_and_validates() {
        let config = example();
        config.validate().unwrap();
        assert_eq!(config.timeouts, Timeouts::lan());
        let core = config.core_config(1);
        assert_eq!(core.members, vec![NodeId(1), NodeId(2), NodeId(3)]);
        let addr = config.client_addr_of(NodeId(3)).unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:7203");
    }

    fn field_of(config: &NodeConfig) -> String {
        match config.validate().unwrap_err() {
            Error::Config { field, .. } => field,
            other => panic!("unexpected error {other}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        let mut config = example();
        config.peers[1].id = 2;
        assert_eq!(field_of(&config), "peers[1].id");
        let mut config = example();
        config.peers[0].client_addr = config.client_addr;
        assert_eq!(field_of(&config), "peers[0].client_addr");
        let mut config = example();
        config.timeouts.heartbeat_interval_ms = 500;
        assert_eq!(field_of(&config), "timeouts.heartbeat_interval_ms");
        let mut config = example();
        config.id = 0;
        assert_eq!(field_of(&config), "id");
    }

    #[test]
    fn the_snapshot_and_log_tables_parse_with_defaults_and_are_checked() {
        assert_eq!(example().snapshots, Snapshots::default());
        let text = format!(
            "{EXAMPLE}\n[snapshots]\ninterval_entries = 0\nretain_entries = 5\n\
             [log]\nsegment_bytes_max = 8192\ncache_bytes_max = 4096\n"
        );
        let config: NodeConfig = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.snapshots.retain_entries, 5);
        assert_eq!(
            config.core_config(1).snapshot_interval_entries,
            None,
            "0 is never"
        );
        assert_eq!(config.log.segment_bytes_max, 8192);
        assert_eq!(config.log.cache_bytes_max, 4096);
        assert_eq!(config.core_config(1).log_cache_bytes_max, 4096);
        let text = format!("{EXAMPLE}\n[snapshots]\ninterval = 5\n");
        let error = toml::from_str::<NodeConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("interval"), "{error}");
        let mut config = example();
        config.log.segment_bytes_max = 10;
        assert_eq!(field_of(&config), "log.segment_bytes_max");
    }

    #[test]
    fn the_metrics_and_recorder_tables_parse_with_defaults_and_are_checked() {
        let config = example();
        assert_eq!(config.metrics.address, None, "metrics are off by default");
        assert!(config.recorder.enabled, "the recorder is on by default");
        let text = format!(
            "{EXAMPLE}\n[metrics]\naddress = \"127.0.0.1:9100\"\n\
             [recorder]\nenabled = false\ndisk_bytes_max = 4194304\n"
        );
        let config: NodeConfig = toml::from_str(&text).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.metrics.address,
            Some("127.0.0.1:9100".parse().unwrap())
        );
        assert!(!config.recorder.enabled);
        let mut config = example();
        config.recorder.disk_bytes_max = 10;
        assert_eq!(field_of(&config), "recorder.disk_bytes_max");
        config.recorder.disk_bytes_max = 4 << 20;
        config.validate().unwrap();
        assert_eq!(
            config.recorder.file_bytes(),
            512 << 10,
            "an eighth of the budget"
        );
        config.recorder.file_bytes_max = Some(3 << 20);
        assert_eq!(field_of(&config), "recorder.file_bytes_max");
        config.recorder.file_bytes_max = Some(1024);
        assert_eq!(field_of(&config), "recorder.file_bytes_max");
        config.recorder.file_bytes_max = Some(2 << 20);
        config.validate().unwrap();
        config.recorder.disk_bytes_max = 10;
        config.recorder.enabled = false;
        config.validate().unwrap();
        let mut config = example();
        config.metrics.address = Some(config.client_addr);
        assert_eq!(field_of(&config), "metrics.address");
    }

    #[test]
    fn unknown_fields_and_bad_values_are_named() {
        let text = EXAMPLE.replace("cluster_id = 7", "cluster_id = 7\nport = 3");
        let error = toml::from_str::<NodeConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("port"), "{error}");
        let text = EXAMPLE.replace("\"127.0.0.1:7101\"", "\"nowhere\"");
        let error = toml::from_str::<NodeConfig>(&text).unwrap_err().to_string();
        assert!(error.contains("peer_addr"), "{error}");
    }

    #[test]
    fn peer_flag_form() {
        let peer: PeerConfig = "2=127.0.0.1:7102,127.0.0.1:7202".parse().unwrap();
        assert_eq!(peer.id, 2);
        assert_eq!(peer.client_addr.port(), 7202);
        assert!("2=127.0.0.1:7102".parse::<PeerConfig>().is_err());
        assert!("x=127.0.0.1:1,127.0.0.1:2".parse::<PeerConfig>().is_err());
    }

    #[test]
    fn for_members_gives_each_member_every_other_as_a_peer() {
        let member = |id: u64| PeerConfig {
            id,
            peer_addr: SocketAddr::from(([127, 0, 0, 1], 7100 + id as u16)),
            client_addr: SocketAddr::from(([127, 0, 0, 1], 7200 + id as u16)),
        };
        let members = [member(1), member(2), member(3)];
        let configs = NodeConfig::for_members(7, Path::new("/tmp/alpo"), &members);
        assert_eq!(configs.len(), 3);
        for (config, own) in configs.iter().zip(&members) {
            config.validate().unwrap();
            assert_eq!(config.id, own.id);
            assert_eq!(config.cluster_id, 7);
            assert_eq!(config.peer_addr, own.peer_addr);
            assert_eq!(config.client_addr, own.client_addr);
            assert_eq!(
                config.data_dir,
                Path::new(&format!("/tmp/alpo/node-{}", own.id))
            );
            let others: Vec<&PeerConfig> = members.iter().filter(|m| m.id != own.id).collect();
            assert_eq!(config.peers.iter().collect::<Vec<_>>(), others);
        }
    }
}
