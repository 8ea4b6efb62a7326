//! The core's only source of randomness: a small seeded generator (splitmix64).
//!
//! Invariant: the sequence of numbers depends only on `Config::seed` and the node id, so the same
//! seed and the same inputs give the same election timeouts, run after run, on every platform.
//! Not cryptographic; it only spreads election timeouts apart.

use std::time::Duration;

use crate::types::NodeId;

/// A splitmix64 generator (Steele, Lea, Flood 2014): one u64 of state, full period 2^64.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Rng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    /// A generator for node `id` of a cluster seeded with `seed`: nodes sharing a seed still draw
    /// different timeouts, which is what breaks election ties.
    pub(crate) fn new(seed: u64, id: NodeId) -> Rng {
        let mut rng = Rng {
            state: seed ^ id.0.wrapping_mul(GOLDEN_GAMMA).rotate_left(17),
        };
        // Discard one output so that nearby seeds do not start with nearby draws.
        let _ = rng.next_u64();
        rng
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A duration drawn uniformly (up to modulo bias, negligible here) from `[min, max)`;
    /// `min` when the range is empty.
    pub(crate) fn duration_in(&mut self, min: Duration, max: Duration) -> Duration {
        let span = u64::try_from(max.saturating_sub(min).as_nanos()).unwrap_or(u64::MAX);
        if span == 0 {
            return min;
        }
        min + Duration::from_nanos(self.next_u64() % span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence_different_nodes_differ() {
        let mut a = Rng::new(7, NodeId(1));
        let mut b = Rng::new(7, NodeId(1));
        let mut c = Rng::new(7, NodeId(2));
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..8).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn durations_stay_in_range_and_spread() {
        let mut rng = Rng::new(1, NodeId(3));
        let (min, max) = (Duration::from_millis(300), Duration::from_millis(600));
        let draws: Vec<Duration> = (0..1000).map(|_| rng.duration_in(min, max)).collect();
        assert!(draws.iter().all(|d| min <= *d && *d < max));
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_millis(450))
            .count();
        assert!(
            (400..600).contains(&low),
            "{low} of 1000 draws in the lower half"
        );
        assert_eq!(rng.duration_in(min, min), min);
    }
}
