//! What a node's HTTP endpoint answers (`http.rs`): its metrics, brought up to date with the
//! transport's counters at each scrape, and `/cluster.json`, every member's status as this node
//! can learn it (its own from the event loop, the others' over the client protocol's `Status`
//! op, with a short timeout), for the live page.
//!
//! Invariant: answering never changes the node; a member that does not answer in time is
//! reported `"reachable": false` rather than delaying the page.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use alpo_core::{ClusterId, NodeId, Role};
use alpo_net::{ClientListener, PeerTransport};

use crate::client::{Client, ClientOptions};
use crate::client_protocol::NodeStatus;
use crate::http::Endpoints;
use crate::metrics::Metrics;
use crate::server::Shared;

/// How long `/cluster.json` waits for one other member's status.
const PEER_STATUS_TIMEOUT: Duration = Duration::from_millis(300);

/// A node's endpoints.
#[derive(Debug)]
pub(crate) struct NodeEndpoints {
    pub(crate) id: NodeId,
    pub(crate) cluster_id: ClusterId,
    pub(crate) metrics: Arc<Metrics>,
    /// The running node's status (set once it runs, before serving starts).
    pub(crate) shared: Option<Arc<Shared>>,
    pub(crate) transport: Arc<PeerTransport>,
    pub(crate) listener: Arc<ClientListener>,
    /// The other members and their client addresses.
    pub(crate) peers: Vec<(NodeId, SocketAddr)>,
}

impl Endpoints for NodeEndpoints {
    fn metrics(&self) -> String {
        self.metrics
            .observe_transport(&self.transport.counters(), &self.listener.counters());
        self.metrics.encode()
    }

    fn cluster_json(&self) -> String {
        let own = self
            .shared
            .as_ref()
            .map(|shared| shared.status.lock().clone());
        let mut members = vec![(self.id, own)];
        for (id, addr) in &self.peers {
            members.push((*id, self.peer_status(*addr)));
        }
        members.sort_by_key(|(id, _)| *id);
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis());
        let mut json = format!("{{\"from\":{},\"time_ms\":{millis},\"nodes\":[", self.id.0);
        for (i, (id, status)) in members.iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            status_json(&mut json, *id, status.as_ref());
        }
        json.push_str("]}");
        json
    }
}

impl NodeEndpoints {
    fn peer_status(&self, addr: SocketAddr) -> Option<NodeStatus> {
        let mut options = ClientOptions::new(self.cluster_id);
        options.attempt_timeout = PEER_STATUS_TIMEOUT;
        options.request_timeout = PEER_STATUS_TIMEOUT;
        let mut client = Client::new(vec![addr], options).ok()?;
        client.status_of(addr).ok()
    }
}

/// The name of `role` in JSON and on the page.
fn role_name(role: Role) -> &'static str {
    match role {
        Role::Passive => "passive",
        Role::Candidate => "candidate",
        Role::Leader => "leader",
    }
}

/// One member as a JSON object (every value a number, a fixed word or null: nothing to escape).
fn status_json(json: &mut String, id: NodeId, status: Option<&NodeStatus>) {
    let Some(s) = status else {
        let _ = write!(json, "{{\"id\":{},\"reachable\":false}}", id.0);
        return;
    };
    let leader = s
        .leader
        .map_or("null".to_string(), |leader| leader.0.to_string());
    let _ = write!(
        json,
        "{{\"id\":{},\"reachable\":true,\"role\":\"{}\",\"term\":{},\"leader\":{leader},\
         \"first\":{},\"snapshot\":{},\"applied\":{},\"commit\":{},\"durable\":{},\"last\":{}}}",
        id.0,
        role_name(s.role),
        s.term.0,
        s.first_index.0,
        s.snapshot_index.0,
        s.applied_index.0,
        s.commit_index.0,
        s.durable_index.0,
        s.last_index.0,
    );
}

#[cfg(test)]
mod tests {
    use alpo_core::{LogIndex, Term};

    use super::*;

    #[test]
    fn a_member_is_an_object_of_numbers_and_words() {
        let status = NodeStatus {
            id: NodeId(2),
            role: Role::Leader,
            term: Term(4),
            leader: Some(NodeId(2)),
            commit_index: LogIndex(9),
            last_index: LogIndex(10),
            durable_index: LogIndex(10),
            applied_index: LogIndex(8),
            snapshot_index: LogIndex(0),
            first_index: LogIndex(1),
            disk: crate::client_protocol::DiskStatus::default(),
        };
        let mut json = String::new();
        status_json(&mut json, NodeId(2), Some(&status));
        assert_eq!(
            json,
            "{\"id\":2,\"reachable\":true,\"role\":\"leader\",\"term\":4,\"leader\":2,\
             \"first\":1,\"snapshot\":0,\"applied\":8,\"commit\":9,\"durable\":10,\"last\":10}"
        );
        json.clear();
        status_json(&mut json, NodeId(3), None);
        assert_eq!(json, "{\"id\":3,\"reachable\":false}");
    }
}
