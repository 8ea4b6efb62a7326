//! Helpers shared by alpo-node's integration tests (each test file includes this module).

use std::time::{Duration, Instant};

/// Polls `check` every 10 ms until it returns a value; fails the test after 60 s, naming `what`.
pub(crate) fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
