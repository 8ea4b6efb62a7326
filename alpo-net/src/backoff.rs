//! Capped exponential backoff with jitter for redialling a peer, driven by a small seeded PRNG
//! (splitmix64), so no randomness crate is needed.
//!
//! Invariant: every delay lies in `[current / 2, current]` with
//! `min_ms <= current <= max_ms`; `current` doubles after each failure and returns to `min_ms`
//! after a success.

use std::time::Duration;

/// Reconnect delays for one peer.
#[derive(Debug)]
pub(crate) struct Backoff {
    min_ms: u64,
    max_ms: u64,
    current_ms: u64,
    state: u64,
}

impl Backoff {
    /// A backoff from `min_ms` up to `max_ms`; `seed` decorrelates peers and transports.
    pub(crate) fn new(min_ms: u64, max_ms: u64, seed: u64) -> Backoff {
        let min_ms = min_ms.max(1);
        let max_ms = max_ms.max(min_ms);
        Backoff {
            min_ms,
            max_ms,
            current_ms: min_ms,
            state: seed,
        }
    }

    /// The delay before the next attempt; doubles the next one, up to the cap.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let half = self.current_ms / 2;
        let spread = self.current_ms - half + 1;
        let delay_ms = half + self.next_random() % spread;
        debug_assert!(delay_ms <= self.current_ms);
        self.current_ms = self.current_ms.saturating_mul(2).min(self.max_ms);
        Duration::from_millis(delay_ms)
    }

    /// Back to the shortest delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.current_ms = self.min_ms;
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64 (Steele, Lea, Flood): a full-period generator with good mixing.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let mut backoff = Backoff::new(10, 100, 42);
        let mut bound = 10;
        for _ in 0..20 {
            let delay = u64::try_from(backoff.next_delay().as_millis()).unwrap();
            assert!(bound / 2 <= delay, "{delay} below half of {bound}");
            assert!(delay <= bound, "{delay} above {bound}");
            bound = (bound * 2).min(100);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(10));
    }
}
