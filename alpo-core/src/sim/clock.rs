//! Per-node clocks with drift: each node sees the global simulated time scaled and offset.
//!
//! A node's local time is `offset + global + global * drift_ppm / 1_000_000`, so local clocks
//! run a little fast or slow and start at different origins. Invariants: local time is
//! monotonic in global time, and `to_global(t)` is the first global instant whose local time is
//! at least `t`, so a timer set for local `t` never fires early.

use crate::types::Instant;

/// Parts per million, the unit of drift.
const PPM: i128 = 1_000_000;

/// One node's view of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// Local time at global time zero, in nanoseconds.
    pub offset_ns: u64,
    /// How much faster (positive) or slower (negative) than global time, in parts per million.
    /// Must be above -1_000_000 so time still moves forward.
    pub drift_ppm: i64,
}

impl Clock {
    /// The local instant at global time `global_ns`.
    #[must_use]
    pub fn to_local(&self, global_ns: u64) -> Instant {
        // 64-bit arithmetic covers every simulated run (hours); 128-bit is the fallback.
        let fast = i64::try_from(global_ns).ok().and_then(|global| {
            let skew = global.checked_mul(self.drift_ppm)? / 1_000_000;
            i64::try_from(self.offset_ns)
                .ok()?
                .checked_add(global)?
                .checked_add(skew)
        });
        let local = fast.map_or_else(
            || {
                let global = i128::from(global_ns);
                i128::from(self.offset_ns) + global + global * i128::from(self.drift_ppm) / PPM
            },
            i128::from,
        );
        Instant(u64::try_from(local.max(0)).unwrap_or(u64::MAX))
    }

    /// The first global time at which this clock shows at least `local`.
    #[must_use]
    pub fn to_global(&self, local: Instant) -> u64 {
        let since_offset = i128::from(local.0) - i128::from(self.offset_ns);
        if since_offset <= 0 {
            return 0;
        }
        let rate = PPM + i128::from(self.drift_ppm);
        let estimate = match (i64::try_from(since_offset * PPM), i64::try_from(rate)) {
            (Ok(scaled), Ok(rate)) => i128::from((scaled + rate - 1) / rate),
            _ => (since_offset * PPM + rate - 1) / rate,
        };
        let mut global = u64::try_from(estimate).unwrap_or(u64::MAX);
        // Integer division in to_local rounds toward zero, so the estimate can be off by a
        // nanosecond or two either way: step to the first instant that reaches `local`.
        while global > 0 && self.to_local(global - 1).0 >= local.0 {
            global -= 1;
        }
        while self.to_local(global).0 < local.0 {
            global += 1;
        }
        global
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_is_offset_and_scaled() {
        let clock = Clock {
            offset_ns: 1_000,
            drift_ppm: 10_000,
        };
        assert_eq!(clock.to_local(0), Instant(1_000));
        assert_eq!(clock.to_local(1_000_000), Instant(1_000 + 1_010_000));
    }

    #[test]
    fn to_global_is_the_first_instant_reaching_local() {
        for drift_ppm in [-30_000, -1, 0, 7, 25_000] {
            let clock = Clock {
                offset_ns: 5_000,
                drift_ppm,
            };
            for local in [0, 4_999, 5_000, 5_001, 123_457, 999_999_937, 1 << 62] {
                let global = clock.to_global(Instant(local));
                assert!(clock.to_local(global).0 >= local);
                if global > 0 {
                    assert!(clock.to_local(global - 1).0 < local, "drift {drift_ppm}");
                }
            }
        }
    }
}
