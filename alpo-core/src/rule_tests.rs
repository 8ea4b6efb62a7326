//! One test per protocol rule (E0–E8, R1–R11), each checking the coverage mark at the branch
//! that implements the rule (house style rule 39); `docs/protocol.md` lists rule → function →
//! test. The tests drive nodes by hand through [`crate::testkit::Cluster`].

use std::time::Duration;

use crate::marks::check;
use crate::testkit::Cluster;
use crate::*;

const SECOND: Duration = Duration::from_secs(1);

fn elected(size: u64, seed: u64) -> (Cluster, NodeId) {
    let mut cluster = Cluster::new(size, seed);
    let leader = cluster.elect(SECOND * 5).expect("a leader within 5 s");
    (cluster, leader)
}

#[test]
fn smoke_three_nodes_elect_and_commit() {
    check!(e7_majority_wins);
    let (mut cluster, leader) = elected(3, 1);
    let proposal = cluster.propose(leader, "x").unwrap();
    cluster.deliver_all();
    cluster.advance(Duration::from_millis(60));
    cluster.deliver_all();
    for id in 1..=3 {
        assert_eq!(
            cluster.applied_payloads(id),
            vec!["x".to_string()],
            "node {id}"
        );
        assert!(cluster.commit_index(id) >= proposal.index);
    }
}
