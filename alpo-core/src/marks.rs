//! Coverage marks: tie each protocol rule (E0–E8, R1–R11) to the branch that implements it and
//! to the one test that checks it (`docs/protocol.md` lists rule → mark → test; after
//! rust-analyzer's `cov_mark`).
//!
//! In code, `mark::hit!(e4_vote_granted)` records that the branch ran. In a unit test,
//! `mark::check!(e4_vote_granted)` at the start of the test asserts, when the test ends, that the
//! branch ran at least once during it. Counters are thread-local (tests run one per thread), so
//! parallel tests do not see each other's hits.
//!
//! Invariant: outside `cfg(test)` a hit is a call to an empty inlined function and `check!` does
//! not exist, so marks cost nothing in a release build and the core keeps no global state.

#[cfg(test)]
use std::cell::RefCell;
#[cfg(test)]
use std::collections::BTreeMap;

#[cfg(test)]
thread_local! {
    static HITS: RefCell<BTreeMap<&'static str, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Records one hit of the mark `name` (test builds only).
#[cfg(test)]
pub(crate) fn record(name: &'static str) {
    HITS.with(|hits| *hits.borrow_mut().entry(name).or_insert(0) += 1);
}

/// The number of hits of `name` so far on this thread.
#[cfg(test)]
pub(crate) fn count(name: &'static str) -> u64 {
    HITS.with(|hits| hits.borrow().get(name).copied().unwrap_or(0))
}

/// Asserts, when dropped, that its mark was hit since it was created.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Guard {
    name: &'static str,
    before: u64,
}

#[cfg(test)]
impl Guard {
    /// Starts watching the mark `name`.
    pub(crate) fn new(name: &'static str) -> Guard {
        Guard {
            name,
            before: count(name),
        }
    }
}

#[cfg(test)]
impl Drop for Guard {
    fn drop(&mut self) {
        // A failing test is already unwinding: a second panic here would abort the test run.
        let unwinding = std::thread::panicking(); // tidy: test-only, not I/O
        if unwinding {
            return;
        }
        assert!(
            count(self.name) > self.before,
            "coverage mark `{}` was not hit by this test",
            self.name
        );
    }
}

/// Outside tests a hit records nothing; the empty call is inlined away.
#[cfg(not(test))]
#[inline(always)]
pub(crate) fn record(_name: &'static str) {}

/// Records that the branch named `$name` ran (test builds only; nothing otherwise).
macro_rules! hit {
    ($name:ident) => {
        $crate::marks::record(stringify!($name))
    };
}

/// In a test: asserts at the end of the enclosing scope that mark `$name` was hit.
#[cfg(test)]
macro_rules! check {
    ($name:ident) => {
        let _mark_guard = $crate::marks::Guard::new(stringify!($name));
    };
}

pub(crate) use hit;

#[cfg(test)]
pub(crate) use check;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hit_mark_passes_its_check() {
        check!(marks_self_test);
        hit!(marks_self_test);
    }

    #[test]
    fn an_unhit_mark_fails_its_check() {
        let result = std::panic::catch_unwind(|| {
            check!(marks_never_hit);
        });
        assert!(result.is_err());
        assert_eq!(count("marks_never_hit"), 0);
    }
}
