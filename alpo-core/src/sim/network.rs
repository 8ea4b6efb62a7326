//! The simulated network: delay, loss, duplication, reordering and partitions.
//!
//! `Network::route` decides, when a message is sent, whether and when it arrives: a blocked
//! link (symmetric or one-way partition) or a random loss drops it; otherwise it is delivered
//! after a random delay, occasionally a long one (which reorders it behind later messages), and
//! occasionally twice. Invariants: every decision is drawn from the caller's `SimRng`; a link is
//! blocked only between distinct nodes; `heal` restores a perfect (lossless, duplicate-free)
//! network whose delays stay below `NetworkFaults::delay_ns_max`.

use crate::sim::rng::SimRng;

/// The fault rates of the network, fixed per run phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkFaults {
    /// Shortest one-way delay.
    pub delay_ns_min: u64,
    /// Longest ordinary one-way delay (exclusive).
    pub delay_ns_max: u64,
    /// Chance (per million messages) of a long delay that reorders the message.
    pub long_delay_per_million: u64,
    /// Longest long delay (exclusive).
    pub long_delay_ns_max: u64,
    /// Chance (per million messages) that a message is lost.
    pub drop_per_million: u64,
    /// Chance (per million messages) that a message is delivered twice.
    pub duplicate_per_million: u64,
}

/// The network between `node_count` nodes, numbered `0..node_count`.
#[derive(Clone, Debug)]
pub struct Network {
    node_count: usize,
    faults: NetworkFaults,
    /// `blocked[from * node_count + to]`: messages on this link are dropped.
    blocked: Vec<bool>,
    /// Messages handed to `route`.
    pub sent_count: u64,
    /// Messages dropped by a partition or at random.
    pub dropped_count: u64,
    /// Extra copies delivered.
    pub duplicated_count: u64,
}

impl NetworkFaults {
    /// A healthy network: no loss, no duplicates, no long delays.
    #[must_use]
    pub fn healthy(delay_ns_min: u64, delay_ns_max: u64) -> NetworkFaults {
        NetworkFaults {
            delay_ns_min,
            delay_ns_max,
            long_delay_per_million: 0,
            long_delay_ns_max: delay_ns_max,
            drop_per_million: 0,
            duplicate_per_million: 0,
        }
    }
}

impl Network {
    /// A fully connected network with these fault rates.
    #[must_use]
    pub fn new(node_count: usize, faults: NetworkFaults) -> Network {
        Network {
            node_count,
            faults,
            blocked: vec![false; node_count * node_count],
            sent_count: 0,
            dropped_count: 0,
            duplicated_count: 0,
        }
    }

    /// The current fault rates.
    #[must_use]
    pub fn faults(&self) -> NetworkFaults {
        self.faults
    }

    /// Replaces the fault rates.
    pub fn set_faults(&mut self, faults: NetworkFaults) {
        self.faults = faults;
    }

    /// Blocks (or unblocks) messages from `from` to `to` only: a one-way partition.
    pub fn set_link_blocked(&mut self, from: usize, to: usize, blocked: bool) {
        if from != to && from < self.node_count && to < self.node_count {
            self.blocked[from * self.node_count + to] = blocked;
        }
    }

    /// Splits the nodes into two sides: links across the cut are blocked both ways, links
    /// within a side are open. `side_a[i]` says on which side node `i` is.
    pub fn partition(&mut self, side_a: &[bool]) {
        for from in 0..self.node_count {
            for to in 0..self.node_count {
                let across = side_a.get(from) != side_a.get(to);
                self.set_link_blocked(from, to, across);
            }
        }
    }

    /// Whether messages from `from` to `to` are currently dropped by a partition.
    #[must_use]
    pub fn is_blocked(&self, from: usize, to: usize) -> bool {
        self.blocked
            .get(from * self.node_count + to)
            .copied()
            .unwrap_or(true)
    }

    /// Opens every link and makes the network healthy.
    pub fn heal(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.faults = NetworkFaults::healthy(self.faults.delay_ns_min, self.faults.delay_ns_max);
    }

    /// Decides the fate of one message sent from `from` to `to`: the delays after which a copy
    /// arrives (empty when lost, two entries when duplicated).
    pub fn route(&mut self, rng: &mut SimRng, from: usize, to: usize) -> Deliveries {
        self.sent_count += 1;
        let mut deliveries = Deliveries::default();
        if self.is_blocked(from, to) || rng.chance(self.faults.drop_per_million) {
            self.dropped_count += 1;
            return deliveries;
        }
        deliveries.push(self.delay(rng));
        if rng.chance(self.faults.duplicate_per_million) {
            self.duplicated_count += 1;
            deliveries.push(self.delay(rng));
        }
        deliveries
    }

    fn delay(&self, rng: &mut SimRng) -> u64 {
        let f = &self.faults;
        if rng.chance(f.long_delay_per_million) {
            rng.range(f.delay_ns_max, f.long_delay_ns_max)
        } else {
            rng.range(f.delay_ns_min, f.delay_ns_max)
        }
    }
}

/// Up to two delivery delays for one message, without allocating.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deliveries {
    delays_ns: [u64; 2],
    count: usize,
}

impl Deliveries {
    fn push(&mut self, delay_ns: u64) {
        if self.count < 2 {
            self.delays_ns[self.count] = delay_ns;
            self.count += 1;
        }
    }

    /// The delays, in the order drawn.
    #[must_use]
    pub fn delays_ns(&self) -> &[u64] {
        &self.delays_ns[..self.count]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn faulty() -> NetworkFaults {
        NetworkFaults {
            delay_ns_min: 100,
            delay_ns_max: 1_000,
            long_delay_per_million: 100_000,
            long_delay_ns_max: 50_000,
            drop_per_million: 100_000,
            duplicate_per_million: 100_000,
        }
    }

    #[test]
    fn faults_happen_at_roughly_their_rates() {
        let mut net = Network::new(3, faulty());
        let mut rng = SimRng::new(1);
        let mut copies = 0;
        let mut long = 0;
        for _ in 0..10_000 {
            for &d in net.route(&mut rng, 0, 1).delays_ns() {
                copies += 1;
                assert!(100 <= d);
                assert!(d < 50_000);
                if d >= 1_000 {
                    long += 1;
                }
            }
        }
        assert!(
            (800..1_200).contains(&net.dropped_count),
            "{}",
            net.dropped_count
        );
        assert!((700..1_100).contains(&net.duplicated_count));
        assert_eq!(copies, 10_000 - net.dropped_count + net.duplicated_count);
        assert!((700..1_300).contains(&long), "long {long}");
    }

    #[test]
    fn one_way_partition_blocks_one_direction_only() {
        let mut net = Network::new(3, NetworkFaults::healthy(1, 2));
        let mut rng = SimRng::new(2);
        net.set_link_blocked(0, 1, true);
        assert!(net.route(&mut rng, 0, 1).delays_ns().is_empty());
        assert_eq!(net.route(&mut rng, 1, 0).delays_ns().len(), 1);
        assert_eq!(net.route(&mut rng, 0, 2).delays_ns().len(), 1);
        net.set_link_blocked(1, 1, true);
        assert!(!net.is_blocked(1, 1));
    }

    #[test]
    fn symmetric_partition_and_heal() {
        let mut net = Network::new(5, faulty());
        net.partition(&[true, true, false, false, false]);
        assert!(net.is_blocked(0, 2));
        assert!(net.is_blocked(3, 1));
        assert!(!net.is_blocked(0, 1));
        assert!(!net.is_blocked(2, 4));
        net.heal();
        let mut rng = SimRng::new(3);
        for from in 0..5 {
            for to in 0..5 {
                let d = net.route(&mut rng, from, to);
                assert_eq!(d.delays_ns().len(), 1);
                assert!(d.delays_ns()[0] < 1_000);
            }
        }
        assert_eq!(net.dropped_count, 0);
    }
}
