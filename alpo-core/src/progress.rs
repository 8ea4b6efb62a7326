//! The leader's view of one follower (rule R2): where to send next, what the follower holds
//! durably, and the window of Appends in flight.
//!
//! A follower is in one of three states. **Probe**: the leader does not know where the logs
//! match; it sends one Append at `next_index` and waits for the reply (or the next heartbeat)
//! before sending another. **Replicate**: the match point is known; the leader advances
//! `next_index` optimistically and keeps up to `inflight_append_count_max` Appends in flight.
//! **Snapshot** (rule S5, etcd-io/raft's `StateSnapshot`): the follower needs an entry the
//! leader compacted; the leader sends its newest snapshot file in chunks instead of Appends,
//! at most `snapshot_chunks_inflight_max` in flight, until the follower reports it installed.
//!
//! Invariants: `match_index < next_index`; in Probe and Snapshot the window is empty; the window
//! holds the last index of each Append in flight, strictly increasing, each `< next_index`; a
//! transfer exists exactly in Snapshot, with `acked_offset ≤ sent_offset ≤ size`.

use std::collections::VecDeque;

use crate::log::Log;
use crate::message::RejectHint;
use crate::types::{Incarnation, LogIndex, LogPosition, SnapshotMeta, Term};

/// Heartbeat intervals without progress after which a Replicate window is presumed lost.
const STALLED_TICK_COUNT_MAX: u8 = 2;

/// Whether the leader knows where its log and the follower's match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum ProgressState {
    /// Looking for the match point: one Append in flight at a time.
    Probe,
    /// Streaming: a bounded window of Appends in flight.
    Replicate,
    /// Sending the snapshot (rule S5): no Appends but heartbeats.
    Snapshot,
}

/// A snapshot transfer to one follower (rule S5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Transfer {
    /// The snapshot being sent.
    pub(crate) snapshot: SnapshotMeta,
    /// Bytes the follower reported holding.
    acked_offset: u64,
    /// End of the bytes asked for with `ReadSnapshot` (and then sent): the next read's start.
    sent_offset: u64,
    /// The offset a "no progress" reply last made the leader resend from.
    rewound_to: Option<u64>,
}

/// One chunk to read for a follower: `len` bytes at `offset` of the snapshot `snapshot`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkRead {
    pub(crate) snapshot: LogPosition,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// One follower's replication progress, as the leader tracks it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Progress {
    pub(crate) state: ProgressState,
    /// The next entry to send.
    pub(crate) next_index: LogIndex,
    /// Highest index known durable on the follower and matching the leader's log.
    pub(crate) match_index: LogIndex,
    /// Last index of each Append in flight (Replicate only).
    inflight: VecDeque<LogIndex>,
    /// A probe is in flight (Probe only); cleared by a reply or the heartbeat tick.
    probe_sent: bool,
    /// The follower's match index advanced since the last heartbeat tick.
    acked_since_tick: bool,
    /// Consecutive heartbeat ticks without progress while Appends were in flight.
    stalled_tick_count: u8,
    /// Replicate: the index a rejection last made the leader resend from.
    rewound_to: LogIndex,
    /// The follower sent us a message of our term since the last check-quorum (rule E5).
    pub(crate) recently_active: bool,
    /// The follower's incarnation, as last seen.
    pub(crate) incarnation: Incarnation,
    /// The snapshot transfer (Snapshot only).
    transfer: Option<Transfer>,
}

/// What a rejection did to a follower's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Probe: `next_index` moved back past the conflicting term.
    Probe,
    /// Replicate: the dropped part of the window will be sent again.
    Resend,
    /// Older than what the leader knows, or already resent: nothing changed.
    Stale,
}

/// What the leader sends to a follower next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendPlan {
    /// Entries from `next_index` (possibly none, as a probe).
    From(LogIndex),
    /// Nothing now.
    Nothing,
}

impl Progress {
    /// A follower the new leader knows nothing about: probe from just past its own last entry.
    pub(crate) fn new(leader_last: LogIndex) -> Progress {
        Progress {
            state: ProgressState::Probe,
            next_index: leader_last.next(),
            match_index: LogIndex(0),
            inflight: VecDeque::new(),
            probe_sent: false,
            acked_since_tick: false,
            stalled_tick_count: 0,
            rewound_to: LogIndex(0),
            recently_active: false,
            incarnation: Incarnation(0),
            transfer: None,
        }
    }

    /// What to send now, given the leader's last index and the window limit.
    pub(crate) fn plan(&self, leader_last: LogIndex, inflight_max: u64) -> SendPlan {
        match self.state {
            ProgressState::Probe if !self.probe_sent => SendPlan::From(self.next_index),
            ProgressState::Replicate
                if self.next_index <= leader_last
                    && (self.inflight.len() as u64) < inflight_max =>
            {
                SendPlan::From(self.next_index)
            }
            _ => SendPlan::Nothing,
        }
    }

    /// Rule S5: the follower needs a compacted entry; send `snapshot` from byte 0.
    pub(crate) fn become_snapshot(&mut self, snapshot: SnapshotMeta) {
        self.state = ProgressState::Snapshot;
        self.stalled_tick_count = 0;
        self.probe_sent = false;
        self.inflight.clear();
        self.transfer = Some(Transfer {
            snapshot,
            acked_offset: 0,
            sent_offset: 0,
            rewound_to: None,
        });
    }

    /// The transfer in progress, if the follower is in the Snapshot state.
    pub(crate) fn transfer(&self) -> Option<&Transfer> {
        self.transfer.as_ref()
    }

    /// The next chunk to read and send, if the window allows one (rule S5): chunks of at most
    /// `chunk_bytes`, at most `chunks_max` of them between the follower's held bytes and the
    /// end of what was sent.
    pub(crate) fn next_chunk(&mut self, chunk_bytes: u64, chunks_max: u64) -> Option<ChunkRead> {
        let transfer = self.transfer.as_mut()?;
        let size = transfer.snapshot.size;
        let window = chunk_bytes.saturating_mul(chunks_max);
        if transfer.sent_offset >= size || transfer.sent_offset - transfer.acked_offset >= window {
            return None;
        }
        let offset = transfer.sent_offset;
        let len = chunk_bytes.min(size - offset);
        transfer.sent_offset += len;
        Some(ChunkRead {
            snapshot: transfer.snapshot.last,
            offset,
            len,
        })
    }

    /// Whether the bytes at `offset` of `snapshot` were asked for and are still wanted: the
    /// follower is being sent that snapshot and has not reported holding them.
    pub(crate) fn wants_chunk(&self, snapshot: LogPosition, offset: u64) -> bool {
        self.transfer.is_some_and(|transfer| {
            transfer.snapshot.last == snapshot
                && transfer.acked_offset <= offset
                && offset < transfer.sent_offset
        })
    }

    /// The follower holds `held` bytes of `snapshot` (rule S6's `NextOffset`). Progress moves
    /// the window; a reply without progress while chunks beyond it were sent means one was lost
    /// or reordered, and the leader resends from there once per such point. Returns whether
    /// the leader resends.
    pub(crate) fn on_snapshot_offset(&mut self, snapshot: LogPosition, held: u64) -> bool {
        let Some(transfer) = self.transfer.as_mut() else {
            return false;
        };
        if transfer.snapshot.last != snapshot || held > transfer.snapshot.size {
            return false;
        }
        if held > transfer.acked_offset {
            transfer.acked_offset = held;
            transfer.sent_offset = transfer.sent_offset.max(held);
            self.acked_since_tick = true;
            return false;
        }
        if held == transfer.acked_offset
            && held < transfer.sent_offset
            && transfer.rewound_to != Some(held)
        {
            transfer.rewound_to = Some(held);
            transfer.sent_offset = held;
            return true;
        }
        false
    }

    /// The follower installed a snapshot up to `last` (rule S5): it holds the leader's log
    /// there, so Appends resume after it, probing.
    /// A transfer also ends when a late acknowledgement already moved the match index to or
    /// past `last`: otherwise every restart of the transfer would be answered `Installed` again
    /// and ignored, for ever.
    pub(crate) fn on_installed(&mut self, last: LogIndex, leader_last: LogIndex) {
        if leader_last < last {
            return;
        }
        if last > self.match_index {
            self.match_index = last;
            self.acked_since_tick = true;
        } else if self.state != ProgressState::Snapshot {
            return;
        }
        self.become_probe(self.match_index.next(), leader_last);
    }

    /// An Append whose last entry is `last` was sent.
    pub(crate) fn on_sent(&mut self, last: LogIndex) {
        match self.state {
            ProgressState::Snapshot => {}
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Replicate => {
                debug_assert!(self.next_index <= last.next());
                self.inflight.push_back(last);
                self.next_index = last.next();
            }
        }
    }

    /// The follower holds our log durably up to `match_index`.
    pub(crate) fn on_accepted(&mut self, match_index: LogIndex) {
        if match_index > self.match_index {
            // Only progress counts: a heartbeat's acknowledgement of the old match index says
            // nothing about the Appends of the window, which may have been lost.
            self.acked_since_tick = true;
            self.match_index = match_index;
        }
        if self.state == ProgressState::Snapshot {
            // Rule S5: an empty Append's reply (heartbeats at prev (0, 0)) or a late one does not
            // end the transfer; only `Installed` does.
            self.next_index = self.next_index.max(self.match_index.next());
            return;
        }
        while self
            .inflight
            .front()
            .is_some_and(|last| *last <= self.match_index)
        {
            self.inflight.pop_front();
        }
        if self.state == ProgressState::Probe {
            // A reply to the probe (or to an older Append): the match point is known.
            self.state = ProgressState::Replicate;
            self.rewound_to = LogIndex(0);
            self.probe_sent = false;
            self.inflight.clear();
            self.next_index = self.match_index.next();
        }
        self.next_index = self.next_index.max(self.match_index.next());
    }

    /// Issue 13, rule F5: the follower has a faulty entry at `from` (its match index is below
    /// it): resend from there unless a probe or Append from there is already under way.
    /// Returns whether the progress moved back.
    pub(crate) fn on_repair_from(&mut self, from: LogIndex, leader_last: LogIndex) -> bool {
        if self.state == ProgressState::Snapshot
            || from > leader_last
            || from <= self.match_index
            || self.next_index <= from
        {
            return false;
        }
        self.become_probe(from, leader_last);
        true
    }

    /// Issue 13, rule F6: the leader truncated its own log (before its no-op) to end at
    /// `leader_last`: probe again from there, forgetting any match above it.
    pub(crate) fn on_leader_truncated(&mut self, leader_last: LogIndex) {
        self.match_index = self.match_index.min(leader_last);
        if self.state == ProgressState::Snapshot {
            self.next_index = self.next_index.min(leader_last.next());
            return;
        }
        self.become_probe(leader_last.next(), leader_last);
    }

    /// The follower rejected an Append (rule R3).
    ///
    /// Probe: skip `next_index` back past the whole conflicting term in one step.
    ///
    /// Replicate: the window starts at the verified match index and its Appends chain, so a
    /// rejection means the network delivered a later Append of the window before an earlier
    /// one, and the follower dropped the later one. The leader resends from just past the
    /// follower's last entry (or from the match index, if the follower holds a stale entry of
    /// another term there), once per such point, keeping the window: a probe on every
    /// reordering collapsed the window to one Append per round trip, and ignoring rejections
    /// left the dropped Appends to the loss timer. A rejection older than what the follower has
    /// since acknowledged is ignored.
    pub(crate) fn on_rejected(&mut self, hint: RejectHint, log: &Log) -> Rejection {
        match self.state {
            ProgressState::Replicate => return self.on_rejected_in_window(hint),
            ProgressState::Snapshot => return Rejection::Stale,
            ProgressState::Probe => {}
        }
        let target = if hint.conflict_term == Term(0) {
            hint.last_index.next()
        } else {
            match log.last_index_of_term(hint.conflict_term) {
                Some(last) => last.next(),
                None => hint.conflict_first_index,
            }
        };
        self.become_probe(target, log.last_index());
        Rejection::Probe
    }

    fn on_rejected_in_window(&mut self, hint: RejectHint) -> Rejection {
        let target = if hint.conflict_term == Term(0) {
            if hint.last_index < self.match_index {
                return Rejection::Stale;
            }
            hint.last_index.next()
        } else {
            self.match_index.next()
        };
        if target <= self.rewound_to || target >= self.next_index {
            return Rejection::Stale;
        }
        self.rewound_to = target;
        self.next_index = target;
        self.inflight.retain(|last| *last < target);
        Rejection::Resend
    }

    /// The follower restarted (its incarnation grew): its unacknowledged writes may be lost.
    pub(crate) fn on_restart(&mut self, incarnation: Incarnation, leader_last: LogIndex) {
        self.incarnation = incarnation;
        self.become_probe(self.match_index.next(), leader_last);
    }

    /// The heartbeat interval passed. Allows a lost probe to be resent; a Replicate window whose
    /// match index did not advance for two whole intervals (one could be a slow fsync) is
    /// presumed lost and probed again from the match index.
    pub(crate) fn on_heartbeat_tick(&mut self, leader_last: LogIndex) {
        if self.state == ProgressState::Snapshot {
            self.on_snapshot_tick();
            self.acked_since_tick = false;
            return;
        }
        let stalled = !self.inflight.is_empty() && !self.acked_since_tick;
        self.stalled_tick_count = if stalled {
            self.stalled_tick_count + 1
        } else {
            0
        };
        match self.state {
            ProgressState::Probe => self.probe_sent = false,
            ProgressState::Replicate if self.stalled_tick_count >= STALLED_TICK_COUNT_MAX => {
                self.become_probe(self.match_index.next(), leader_last);
            }
            ProgressState::Replicate | ProgressState::Snapshot => {}
        }
        self.acked_since_tick = false;
    }

    /// Rule S5's stall handling: after two intervals without progress, start the transfer over
    /// from byte 0. The follower answers the first chunk with the bytes it really holds, so a
    /// lost chunk, a lost `Installed`, a restart or a failed verification all resume.
    fn on_snapshot_tick(&mut self) {
        let stalled_count = if self.acked_since_tick {
            0
        } else {
            self.stalled_tick_count + 1
        };
        self.stalled_tick_count = stalled_count;
        if stalled_count < STALLED_TICK_COUNT_MAX {
            return;
        }
        self.stalled_tick_count = 0;
        if let Some(transfer) = &self.transfer {
            self.become_snapshot(transfer.snapshot);
        }
    }

    /// Whether the follower is in the Snapshot state.
    pub(crate) fn is_snapshotting(&self) -> bool {
        self.state == ProgressState::Snapshot
    }

    /// Whether the follower is in the Replicate state.
    pub(crate) fn is_replicating(&self) -> bool {
        self.state == ProgressState::Replicate
    }

    fn become_probe(&mut self, target: LogIndex, leader_last: LogIndex) {
        self.state = ProgressState::Probe;
        self.transfer = None;
        self.stalled_tick_count = 0;
        self.probe_sent = false;
        self.inflight.clear();
        self.next_index = target
            .max(self.match_index.next())
            .min(leader_last.next())
            .max(LogIndex(1));
    }

    /// Checks the invariants in the module documentation.
    pub(crate) fn invariants(&self, leader_last: LogIndex) {
        assert!(
            self.match_index < self.next_index,
            "invariant: match < next"
        );
        assert!(
            self.next_index <= leader_last.next(),
            "invariant: next <= last + 1"
        );
        assert!(
            self.match_index <= leader_last,
            "invariant: match <= leader's last"
        );
        if self.state != ProgressState::Replicate {
            assert!(
                self.inflight.is_empty(),
                "invariant: no window while probing or sending a snapshot"
            );
        }
        assert!(
            self.transfer.is_some() == (self.state == ProgressState::Snapshot),
            "invariant: a transfer exactly in the Snapshot state"
        );
        if let Some(transfer) = &self.transfer {
            assert!(transfer.acked_offset <= transfer.sent_offset);
            assert!(transfer.sent_offset <= transfer.snapshot.size);
        }
        let mut previous = self.match_index;
        for last in &self.inflight {
            assert!(previous < *last, "invariant: window strictly increasing");
            previous = *last;
        }
        assert!(previous < self.next_index, "invariant: window below next");
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::{Entry, EntryKind};

    fn log_of(terms: &[u64]) -> Log {
        let entries = terms
            .iter()
            .enumerate()
            .map(|(i, t)| Entry {
                index: LogIndex(i as u64 + 1),
                term: Term(*t),
                kind: EntryKind::Normal,
                payload: Bytes::new(),
            })
            .collect();
        Log::load(
            None,
            crate::types::PersistedLog::from_entries(entries),
            u64::MAX,
        )
        .unwrap()
        .log
    }

    #[test]
    fn probe_then_replicate_with_a_window() {
        let log = log_of(&[1, 1, 1, 1]);
        let mut progress = Progress::new(log.last_index());
        assert_eq!(progress.plan(LogIndex(4), 2), SendPlan::From(LogIndex(5)));
        progress.on_sent(LogIndex(4));
        assert_eq!(progress.plan(LogIndex(4), 2), SendPlan::Nothing);
        progress.on_accepted(LogIndex(4));
        assert!(progress.is_replicating());
        assert_eq!(progress.plan(LogIndex(4), 2), SendPlan::Nothing);
        assert_eq!(progress.plan(LogIndex(6), 2), SendPlan::From(LogIndex(5)));
        progress.on_sent(LogIndex(5));
        progress.on_sent(LogIndex(6));
        assert_eq!(progress.plan(LogIndex(8), 2), SendPlan::Nothing);
        progress.on_accepted(LogIndex(5));
        assert_eq!(progress.plan(LogIndex(8), 2), SendPlan::From(LogIndex(7)));
        progress.invariants(LogIndex(8));
    }

    #[test]
    fn rejection_skips_a_whole_term() {
        let log = log_of(&[1, 1, 2, 2, 4, 4]);
        let mut progress = Progress::new(log.last_index());
        // In the Replicate state a rejection means reordering: resend from the follower's end,
        // once, keeping the window.
        progress.on_accepted(LogIndex(2));
        progress.on_sent(LogIndex(3));
        progress.on_sent(LogIndex(4));
        let reordered = RejectHint {
            conflict_term: Term(0),
            conflict_first_index: LogIndex(0),
            last_index: LogIndex(2),
            last_term: Term(1),
        };
        assert_eq!(progress.on_rejected(reordered, &log), Rejection::Resend);
        assert!(progress.is_replicating());
        assert_eq!(progress.next_index, LogIndex(3));
        assert_eq!(progress.on_rejected(reordered, &log), Rejection::Stale);
        let older = RejectHint {
            last_index: LogIndex(1),
            ..reordered
        };
        assert_eq!(progress.on_rejected(older, &log), Rejection::Stale);
        progress.invariants(log.last_index());
        progress.on_restart(Incarnation(2), log.last_index());
        // The follower has term 3 at the probed index, from index 5: we hold no term 3.
        let hint = RejectHint {
            conflict_term: Term(3),
            conflict_first_index: LogIndex(5),
            last_index: LogIndex(7),
            last_term: Term(3),
        };
        assert_eq!(progress.on_rejected(hint, &log), Rejection::Probe);
        assert_eq!(progress.next_index, LogIndex(5));
        // The follower has term 2 there: we hold term 2 up to index 4.
        let hint = RejectHint {
            conflict_term: Term(2),
            conflict_first_index: LogIndex(3),
            ..hint
        };
        assert_eq!(progress.on_rejected(hint, &log), Rejection::Probe);
        assert_eq!(progress.next_index, LogIndex(5));
        // The follower's log is short.
        let hint = RejectHint {
            conflict_term: Term(0),
            conflict_first_index: LogIndex(0),
            last_index: LogIndex(1),
            last_term: Term(1),
        };
        assert_eq!(progress.on_rejected(hint, &log), Rejection::Probe);
        assert_eq!(
            progress.next_index,
            LogIndex(3),
            "never below the match index + 1"
        );
        progress.invariants(log.last_index());
    }

    #[test]
    fn a_silent_window_is_probed_again() {
        let mut progress = Progress::new(LogIndex(0));
        progress.on_accepted(LogIndex(0));
        progress.on_sent(LogIndex(2));
        progress.on_sent(LogIndex(3));
        progress.on_accepted(LogIndex(2));
        progress.on_heartbeat_tick(LogIndex(3));
        assert!(
            progress.is_replicating(),
            "the window moved during this interval"
        );
        // A heartbeat acknowledgement at the old match index is no progress.
        progress.on_accepted(LogIndex(2));
        progress.on_heartbeat_tick(LogIndex(3));
        assert!(
            progress.is_replicating(),
            "one silent interval may be a slow fsync"
        );
        progress.on_heartbeat_tick(LogIndex(3));
        assert!(!progress.is_replicating());
        assert_eq!(progress.next_index, LogIndex(3));
    }

    #[test]
    fn an_installed_snapshot_ends_the_transfer_even_below_the_match_index() {
        let meta = SnapshotMeta {
            last: LogPosition {
                index: LogIndex(5),
                term: Term(1),
            },
            size: 40,
            ..SnapshotMeta::default()
        };
        let mut progress = Progress::new(LogIndex(9));
        progress.become_snapshot(meta);
        assert_eq!(
            progress.next_chunk(16, 2),
            Some(ChunkRead {
                snapshot: meta.last,
                offset: 0,
                len: 16
            })
        );
        // A late acknowledgement moves the match index past the snapshot during the transfer.
        progress.on_accepted(LogIndex(7));
        assert!(progress.is_snapshotting());
        progress.on_installed(LogIndex(5), LogIndex(9));
        assert!(!progress.is_snapshotting());
        assert_eq!(progress.next_index, LogIndex(8));
        progress.invariants(LogIndex(9));
    }
}
