//! The simulator's one random generator: SplitMix64, seeded from the run seed.
//!
//! Invariant: every random choice of a run (cluster size, timing, faults, delays, client load,
//! the engine's own seeds) is drawn from one `SimRng` in a fixed order, so a seed replays the
//! same run. The engine's generator (`rng.rs` in the core) is separate on purpose: the simulator
//! must not change when the engine changes how it draws.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough for test choices.
#[derive(Clone, Debug)]
pub struct SimRng {
    state: u64,
}

impl SimRng {
    /// A generator whose stream is fixed by `seed`.
    #[must_use]
    pub fn new(seed: u64) -> SimRng {
        SimRng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value uniform in `[low, high)`; `low` when the range is empty.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        if high <= low {
            return low;
        }
        // Multiply-shift maps 64 random bits onto the span with negligible bias.
        let span = u128::from(high - low);
        let scaled = (u128::from(self.next_u64()) * span) >> 64;
        low + u64::try_from(scaled).unwrap_or(0)
    }

    /// An index uniform in `[0, len)`; 0 when `len` is 0.
    pub fn index(&mut self, len: usize) -> usize {
        let high = u64::try_from(len).unwrap_or(u64::MAX);
        usize::try_from(self.range(0, high)).unwrap_or(0)
    }

    /// True with probability `per_million / 1_000_000`.
    pub fn chance(&mut self, per_million: u64) -> bool {
        self.range(0, 1_000_000) < per_million
    }

    /// A new generator for a sub-stream, so that adding draws in one place does not shift
    /// every later draw of the run.
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let mut a = SimRng::new(42);
        let mut b = SimRng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(SimRng::new(1).next_u64(), SimRng::new(2).next_u64());
    }

    #[test]
    fn range_stays_in_bounds_and_covers_it() {
        let mut rng = SimRng::new(7);
        let mut seen = [false; 5];
        for _ in 0..1000 {
            let v = rng.range(10, 15);
            assert!(10 <= v);
            assert!(v < 15);
            seen[usize::try_from(v - 10).unwrap()] = true;
        }
        assert!(seen.iter().all(|s| *s));
        assert_eq!(rng.range(3, 3), 3);
        assert_eq!(rng.index(0), 0);
    }

    #[test]
    fn chance_is_roughly_calibrated() {
        let mut rng = SimRng::new(9);
        let hits = (0..10_000).filter(|_| rng.chance(250_000)).count();
        assert!((2_000..3_000).contains(&hits), "hits {hits}");
        assert!(!(0..1000).any(|_| rng.chance(0)));
        assert!((0..1000).all(|_| rng.chance(1_000_000)));
    }
}
