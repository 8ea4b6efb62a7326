//! Issue 16: TLS with mutual authentication. Peers exchange messages over mutual TLS; every
//! refusal (unknown CA, a certificate for another node id, an expired certificate, no
//! certificate, plain ALPO on a TLS port and TLS on a plain port) is named, logged and counted
//! while the healthy nodes keep serving; and an attacker with the right cluster id but no
//! certificate gets no message into the node.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alpo_core::{Message, NodeId};
use alpo_net::certs::{Authority, Validity, write_issued};
use alpo_net::handshake::Role;
use alpo_net::{
    ClientConnection, ClientListener, ClientListenerConfig, CloseReason, Error, Inbox, PeerConfig,
    PeerTransport, TlsConfig, TlsPaths,
};
use common::{CLUSTER, RawClient, Received, TIMEOUT, ack, append, hello, loopback, seq_of};

fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh directory under the system's temporary directory.
fn scratch_dir(name: &str) -> PathBuf {
    let unique = unique();
    let dir = std::env::temp_dir().join(format!(
        "alpo-net-tls-{}-{name}-{unique}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The cluster's CA and the certificates the tests hand out, good and bad.
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    authority: Authority,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = scratch_dir(name);
        let authority = Authority::new("test CA").unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, authority.cert_pem()).unwrap();
        Pki { dir, ca, authority }
    }

    fn node(&self, id: u64, validity: Validity) -> TlsConfig {
        self.issued_by(self, id, validity)
    }

    /// Node `id`'s certificate from `issuer`'s CA, trusting this CA.
    fn issued_by(&self, issuer: &Pki, id: u64, validity: Validity) -> TlsConfig {
        let issued = issuer.authority.issue_node(NodeId(id), validity).unwrap();
        let stem = format!("node-{id}-{}", unique());
        TlsConfig::load(&write_issued(&self.dir, &stem, &self.ca, &issued).unwrap()).unwrap()
    }

    fn client(&self) -> TlsConfig {
        let issued = self.authority.issue_client(Validity::Years10).unwrap();
        let stem = format!("client-{}", unique());
        TlsConfig::load(&write_issued(&self.dir, &stem, &self.ca, &issued).unwrap()).unwrap()
    }

    /// Trusts this CA, presents no certificate.
    fn anonymous(&self) -> TlsConfig {
        let paths = TlsPaths {
            ca: self.ca.clone(),
            cert: None,
            key: None,
        };
        TlsConfig::load(&paths).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Nodes 1 and 2 over mutual TLS; node 3 is a configured peer of both that never runs (its
/// address is dead), so a dialler claiming to be node 3 passes the `Hello`'s peer check and
/// only TLS can stop it.
struct Healthy {
    nodes: Vec<(PeerTransport, Received<Message>)>,
    peer_addr_2: SocketAddr,
}

fn dead_address() -> SocketAddr {
    // Bound and dropped: nothing listens there.
    TcpListener::bind(loopback()).unwrap().local_addr().unwrap()
}

fn healthy_cluster(pki: &Pki) -> Healthy {
    let listeners = [
        TcpListener::bind(loopback()).unwrap(),
        TcpListener::bind(loopback()).unwrap(),
    ];
    let addrs = [
        listeners[0].local_addr().unwrap(),
        listeners[1].local_addr().unwrap(),
    ];
    let dead = dead_address();
    let mut nodes = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let id = index as u64 + 1;
        let other = 3 - id;
        let peers = vec![
            (NodeId(other), addrs[usize::from(index == 0)]),
            (NodeId(3), dead),
        ];
        let mut config = PeerConfig::new(CLUSTER, NodeId(id), loopback(), peers);
        config.tls = Some(pki.node(id, Validity::Years10));
        nodes.push(common::start_peer(listener, config));
    }
    Healthy {
        nodes,
        peer_addr_2: addrs[1],
    }
}

impl Healthy {
    /// Node 1 and node 2 still exchange messages (`seq` distinguishes rounds), and node 2 has
    /// received nothing but node 1's.
    fn still_serving(&self, seq: u64) {
        self.nodes[0].0.send(ack(1, 2, seq));
        self.nodes[1].0.send(ack(2, 1, seq));
        let at_2 = self.nodes[1].1.recv_timeout(TIMEOUT).unwrap();
        assert_eq!((at_2.from, seq_of(&at_2)), (NodeId(1), seq));
        let at_1 = self.nodes[0].1.recv_timeout(TIMEOUT).unwrap();
        assert_eq!((at_1.from, seq_of(&at_1)), (NodeId(2), seq));
    }

    /// Waits until node 2 has refused a connection for `reason`.
    fn wait_refused(&self, reason: CloseReason) {
        wait_for(
            || self.nodes[1].0.counters().rejections_for(reason) > 0,
            reason,
        );
    }

    fn received_at_2(&self) -> Vec<Message> {
        self.nodes[1].1.try_iter().collect()
    }
}

fn wait_for(mut done: impl FnMut() -> bool, what: impl std::fmt::Debug) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Starts a would-be node 3 that dials node 2 with `tls` and sends it a message every few
/// milliseconds; returns it (drop it to stop).
fn intruder(healthy: &Healthy, tls: Option<TlsConfig>) -> PeerTransport {
    let peers = vec![(NodeId(2), healthy.peer_addr_2)];
    let mut config = PeerConfig::new(CLUSTER, NodeId(3), loopback(), peers);
    config.tls = tls;
    config.reconnect_backoff_ms_min = 5;
    config.reconnect_backoff_ms_max = 20;
    let inbox = Inbox::new().unwrap();
    let transport = PeerTransport::start(config, &inbox).unwrap();
    for seq in 0..20 {
        transport.send(append(3, 2, seq));
        std::thread::sleep(Duration::from_millis(5));
    }
    transport
}

#[test]
fn peers_exchange_messages_over_mutual_tls() {
    let pki = Pki::new("exchange");
    let healthy = healthy_cluster(&pki);
    healthy.still_serving(1);
    // A burst of larger messages both ways: queued, batched, written directly, all whole.
    for seq in 0..2_000 {
        healthy.nodes[0].0.send(append(1, 2, seq));
    }
    for seq in 0..2_000 {
        let message = healthy.nodes[1].1.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(message, append(1, 2, seq));
    }
    let counters = healthy.nodes[0].0.counters();
    assert_eq!(counters.messages_dropped_queue_full, 0);
    assert_eq!(healthy.nodes[1].0.counters().rejections, 0);
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let pki = Pki::new("unknown-ca");
    let healthy = healthy_cluster(&pki);
    let other = Pki::new("other-ca");
    // The intruder trusts the cluster CA (its certificate is public) but holds a certificate
    // for node 3 from another CA.
    let intruder = intruder(&healthy, Some(pki.issued_by(&other, 3, Validity::Years10)));
    healthy.wait_refused(CloseReason::CertificateUnknownCa);
    drop(intruder);
    // A node of another CA altogether refuses node 2 in turn: not from its CA.
    let stranger = self::intruder(&healthy, Some(other.node(3, Validity::Years10)));
    wait_for(
        || {
            stranger
                .counters()
                .rejections_for(CloseReason::CertificateUnknownCa)
                > 0
        },
        "the stranger's refusal",
    );
    healthy.still_serving(2);
    assert!(healthy.received_at_2().iter().all(|m| m.from == NodeId(1)));
}

#[test]
fn a_certificate_for_another_node_id_is_refused() {
    let pki = Pki::new("wrong-node");
    let healthy = healthy_cluster(&pki);
    // A real certificate from the cluster CA, but for node 1, used to claim node 3.
    let intruder = intruder(&healthy, Some(pki.node(1, Validity::Years10)));
    healthy.wait_refused(CloseReason::CertificateWrongNode);
    healthy.still_serving(3);
    assert!(healthy.received_at_2().iter().all(|m| m.from == NodeId(1)));
    drop(intruder);
}

#[test]
fn a_dialler_refuses_a_listener_whose_certificate_names_another_node() {
    let pki = Pki::new("wrong-listener");
    // Node 1 dials "node 2", but the listener there holds node 3's certificate.
    let listener = TcpListener::bind(loopback()).unwrap();
    let impostor_addr = listener.local_addr().unwrap();
    let mut impostor = PeerConfig::new(CLUSTER, NodeId(2), loopback(), vec![]);
    impostor.peers = vec![(NodeId(1), dead_address())];
    impostor.tls = Some(pki.node(3, Validity::Years10));
    let (_impostor, impostor_received) = common::start_peer(listener, impostor);
    let mut config = PeerConfig::new(CLUSTER, NodeId(1), loopback(), vec![]);
    config.peers = vec![(NodeId(2), impostor_addr)];
    config.tls = Some(pki.node(1, Validity::Years10));
    config.reconnect_backoff_ms_min = 5;
    let inbox = Inbox::new().unwrap();
    let node_1 = PeerTransport::start(config, &inbox).unwrap();
    node_1.send(ack(1, 2, 1));
    wait_for(
        || {
            node_1
                .counters()
                .rejections_for(CloseReason::CertificateWrongNode)
                > 0
        },
        "node 1's refusal",
    );
    assert!(impostor_received.try_recv().is_err());
}

#[test]
fn an_expired_certificate_is_refused() {
    let pki = Pki::new("expired");
    let healthy = healthy_cluster(&pki);
    let intruder = intruder(&healthy, Some(pki.node(3, Validity::Expired)));
    healthy.wait_refused(CloseReason::CertificateExpired);
    healthy.still_serving(4);
    assert!(healthy.received_at_2().iter().all(|m| m.from == NodeId(1)));
    drop(intruder);
}

#[test]
fn plain_alpo_on_a_tls_port_is_refused_by_name() {
    let pki = Pki::new("plain-on-tls");
    let healthy = healthy_cluster(&pki);
    let mut raw = RawClient::connect(healthy.peer_addr_2);
    raw.send(&hello(Role::Peer, CLUSTER, 3, 2));
    assert_eq!(raw.close_reason(), CloseReason::PlainOnTlsPort);
    healthy.wait_refused(CloseReason::PlainOnTlsPort);
    // A plain transport claiming node 3 is refused the same way, and never delivers.
    let intruder = intruder(&healthy, None);
    healthy.still_serving(5);
    assert!(healthy.received_at_2().iter().all(|m| m.from == NodeId(1)));
    drop(intruder);
}

#[test]
fn tls_on_a_plain_port_is_refused_by_name() {
    let pki = Pki::new("tls-on-plain");
    let nodes = common::start_cluster(&[1, 2], |_| {});
    let addr = {
        // Node 2's peer address is where node 1 dials it; take it from a fresh plain listener
        // instead: a client listener, plain.
        let inbox = Inbox::new().unwrap();
        let config = ClientListenerConfig::new(CLUSTER, NodeId(2), loopback());
        let listener = ClientListener::start(config, &inbox).unwrap();
        let addr = listener.local_addr();
        let error = ClientConnection::connect_with(addr, CLUSTER, TIMEOUT, Some(&pki.client()))
            .unwrap_err();
        assert!(
            matches!(
                error,
                Error::Closed {
                    reason: Some(CloseReason::TlsOnPlainPort),
                    ..
                }
            ),
            "{error}"
        );
        wait_for(
            || {
                listener
                    .counters()
                    .rejections_for(CloseReason::TlsOnPlainPort)
                    > 0
            },
            "the listener's refusal",
        );
        addr
    };
    let _ = addr;
    // The plain peers go on.
    nodes[0].0.send(ack(1, 2, 7));
    let message = nodes[1].1.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(seq_of(&message), 7);
}

/// The attacker knows the cluster id and node 3's id, but holds no certificate: neither plain
/// ALPO nor TLS without a certificate gets a single message to node 2.
#[test]
fn an_attacker_without_a_certificate_gets_no_message_into_the_node() {
    let pki = Pki::new("attacker");
    let healthy = healthy_cluster(&pki);
    // Plain: a correct hello followed by messages, all in one write.
    let mut raw = RawClient::connect(healthy.peer_addr_2);
    let mut bytes = hello(Role::Peer, CLUSTER, 3, 2);
    for seq in 0..10 {
        let mut frame = Vec::new();
        alpo_net::codec::encode_message(&append(3, 2, seq), CLUSTER, &mut frame).unwrap();
        bytes.extend_from_slice(&frame);
    }
    raw.send(&bytes);
    assert_eq!(raw.close_reason(), CloseReason::PlainOnTlsPort);
    // TLS that trusts the cluster CA but presents no certificate.
    let error = ClientConnection::connect_with(
        healthy.peer_addr_2,
        CLUSTER,
        TIMEOUT,
        Some(&pki.anonymous()),
    );
    assert!(error.is_err());
    healthy.wait_refused(CloseReason::CertificateMissing);
    // A transport claiming node 3 with no TLS at all.
    let intruder = intruder(&healthy, None);
    healthy.still_serving(6);
    let received = healthy.received_at_2();
    assert!(received.iter().all(|m| m.from == NodeId(1)), "{received:?}");
    drop(intruder);
}

#[test]
fn client_certificates_are_required_when_configured() {
    let pki = Pki::new("clients");
    for required in [true, false] {
        let inbox = Inbox::new().unwrap();
        let mut config = ClientListenerConfig::new(CLUSTER, NodeId(4), loopback());
        config.tls = Some(
            pki.node(4, Validity::Years10)
                .require_client_certificate(required),
        );
        let listener = ClientListener::start(config, &inbox).unwrap();
        let requests = common::pump_clients(inbox);
        let addr = listener.local_addr();
        // With a client certificate: served, both ways.
        let mut client =
            ClientConnection::connect_with(addr, CLUSTER, TIMEOUT, Some(&pki.client())).unwrap();
        client.send(b"with a certificate").unwrap();
        let request = requests.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(&request.body[..], b"with a certificate");
        listener.reply(request.connection, bytes::Bytes::from(vec![7; 100_000]));
        assert_eq!(client.recv(TIMEOUT).unwrap().len(), 100_000);
        // Without one: served only if not required.
        let anonymous =
            ClientConnection::connect_with(addr, CLUSTER, TIMEOUT, Some(&pki.anonymous()));
        if required {
            // TLS 1.3: the client may finish its side before the server refuses it.
            if let Ok(mut anonymous) = anonymous {
                let _ = anonymous.send(b"no certificate");
                assert!(anonymous.recv(TIMEOUT).is_err());
            }
            wait_for(
                || {
                    listener
                        .counters()
                        .rejections_for(CloseReason::CertificateMissing)
                        > 0
                },
                "the refusal",
            );
        } else {
            let mut anonymous = anonymous.unwrap();
            anonymous.send(b"no certificate").unwrap();
            let request = requests.recv_timeout(TIMEOUT).unwrap();
            assert_eq!(&request.body[..], b"no certificate");
        }
        // A plain client is refused by name.
        let error = ClientConnection::connect(addr, CLUSTER, TIMEOUT).unwrap_err();
        assert!(
            matches!(
                error,
                Error::Closed {
                    reason: Some(CloseReason::PlainOnTlsPort),
                    ..
                }
            ),
            "{error}"
        );
        assert!(requests.try_recv().is_err());
    }
}
