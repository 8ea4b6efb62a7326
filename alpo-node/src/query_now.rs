//! Issue 14 (the CPU a read costs): queries answered by the event loop itself. The state
//! machine lives behind a lock shared by the apply thread and the event loop, so a query whose
//! read index is already applied — every read of a read-mostly load — is answered in the turn
//! its index became ready, without handing it to the apply thread (a channel send, a wake-up and
//! a context switch per turn, about a third of the leader's CPU per read before this). Only
//! for a state machine whose `StateMachine::queries_are_quick` says so (the key-value store
//! does): a slow query on the event loop would delay heartbeats and elections.
//!
//! Invariants (the concurrency contract with `apply.rs`):
//! - The apply thread changes the state machine only while holding the lock, and stores the new
//!   `applied` index before releasing it; so whoever holds the lock sees a state machine that
//!   holds exactly the entries up to `applied` (restores included: the machine and `applied`
//!   change together).
//! - The event loop answers a query only if, under the lock, `applied ≥ index` (rule Q1 (d),
//!   Q2: the state holds every entry up to the read index; `index` is 0 for a stale read). It
//!   never waits for the lock (`try_lock`): when the apply thread holds it (applying, freezing
//!   a snapshot, restoring one) or has not reached the index yet, the query goes down the apply
//!   queue as before, behind the entries it needs (`reads.rs`).
//! - The answer names the applied index it was served at, as the apply thread's does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use alpo_core::LogIndex;

use crate::client_protocol::ResponseBody;
use crate::state_machine::StateMachine;

/// The state machine, shared by the apply thread (which changes it) and the event loop (which
/// queries it when it can without waiting).
pub(crate) type SharedMachine = Arc<Mutex<Box<dyn StateMachine>>>;

/// The answer to `payload` if it can be served now without waiting: the lock is free and the
/// state holds every entry up to `index`. `None` sends the query to the apply thread.
pub(crate) fn query_if_applied(
    machine: &Mutex<Box<dyn StateMachine>>,
    applied: &AtomicU64,
    index: LogIndex,
    payload: &[u8],
) -> Option<ResponseBody> {
    let machine = machine.try_lock()?;
    // Read under the lock: the apply thread stores `applied` before it lets go of the lock.
    let applied = LogIndex(applied.load(Ordering::Acquire));
    if applied < index {
        return None;
    }
    let output = Bytes::from(machine.query(payload));
    Some(ResponseBody::Applied {
        index: applied,
        output,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::{KvOp, KvStateMachine};

    fn machine_with(key: &[u8], value: &[u8]) -> Mutex<Box<dyn StateMachine>> {
        let mut machine = KvStateMachine::new();
        let put = KvOp::Put {
            key: Bytes::copy_from_slice(key),
            value: Bytes::copy_from_slice(value),
        };
        machine.apply(LogIndex(1), &put.encode());
        Mutex::new(Box::new(machine))
    }

    fn get(key: &[u8]) -> Vec<u8> {
        KvOp::Get {
            key: Bytes::copy_from_slice(key),
        }
        .encode()
        .to_vec()
    }

    #[test]
    fn a_query_whose_index_is_applied_is_answered_at_the_applied_index() {
        let machine = machine_with(b"k", b"v");
        let applied = AtomicU64::new(7);
        for index in [0, 5, 7] {
            let Some(ResponseBody::Applied { index: at, output }) =
                query_if_applied(&machine, &applied, LogIndex(index), &get(b"k"))
            else {
                panic!("index {index} is applied: answered at once");
            };
            assert_eq!(at, LogIndex(7));
            assert_eq!(output, machine.lock().query(&get(b"k")));
        }
    }

    /// Negative case of Q1 (d) on this path: a query whose read index is above `applied` is
    /// not answered here (the apply thread serves it once its entries are applied).
    #[test]
    fn a_query_above_the_applied_index_is_left_to_the_apply_thread() {
        let machine = machine_with(b"k", b"v");
        let applied = AtomicU64::new(7);
        assert!(query_if_applied(&machine, &applied, LogIndex(8), &get(b"k")).is_none());
    }

    /// The event loop never waits for the apply thread: a held lock sends the query there.
    #[test]
    fn a_held_lock_is_not_waited_for() {
        let machine = machine_with(b"k", b"v");
        let applied = AtomicU64::new(7);
        let held = machine.lock();
        assert!(query_if_applied(&machine, &applied, LogIndex(0), &get(b"k")).is_none());
        drop(held);
        assert!(query_if_applied(&machine, &applied, LogIndex(0), &get(b"k")).is_some());
    }
}
