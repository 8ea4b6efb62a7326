//! A running hash of everything a run does, to show that a seed replays the same run.
//!
//! The runner feeds it each step (time, node, input kind) and each output (messages with their
//! terms and indices, log writes, applies) and each observed status. Two runs with equal hashes
//! took the same steps with the same effects. The mix is FNV-1a applied to whole 64-bit words
//! (plus a shift to spread high bits), chosen for speed and for stability across Rust versions
//! (unlike `DefaultHasher`).

/// FNV-1a-style hash over 64-bit words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHash {
    state: u64,
    /// Words hashed so far.
    pub word_count: u64,
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl Default for TraceHash {
    fn default() -> TraceHash {
        TraceHash {
            state: FNV_OFFSET,
            word_count: 0,
        }
    }
}

impl TraceHash {
    /// Mixes in one word.
    pub fn word(&mut self, value: u64) {
        self.state = (self.state ^ value).wrapping_mul(FNV_PRIME);
        self.state ^= self.state >> 29;
        self.word_count += 1;
    }

    /// Mixes in bytes, preceded by their length.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.word(u64::try_from(bytes.len()).unwrap_or(u64::MAX));
        for &byte in bytes {
            self.state ^= u64::from(byte);
            self.state = self.state.wrapping_mul(FNV_PRIME);
        }
    }

    /// The hash so far.
    #[must_use]
    pub fn value(&self) -> u64 {
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_content_matter() {
        let mut a = TraceHash::default();
        a.word(1);
        a.word(2);
        let mut b = TraceHash::default();
        b.word(2);
        b.word(1);
        assert_ne!(a.value(), b.value());
        let mut c = TraceHash::default();
        c.word(1);
        c.word(2);
        assert_eq!(a, c);
        c.bytes(b"x");
        assert_ne!(a.value(), c.value());
    }
}
