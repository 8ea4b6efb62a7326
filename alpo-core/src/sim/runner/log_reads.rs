//! The driver's side of rule S9: a `ReadLog` is answered from the simulated disk's running log
//! as it stands when the output is performed (contract (a): after every log write listed before
//! it), after a random delay of its own (`Scenario::log_read_ns`), so that answers arrive late
//! and out of order with every other input (contract (c)). The run's memory check (the cache
//! bound of `LogCacheStatus::is_bounded`) runs after every step, in `observe`.
//!
//! Invariants: every answer carries the incarnation that asked for it and is dropped if the
//! node crashed since; an answer is `Compacted` exactly when `from` is below the first entry
//! the disk holds, and otherwise a gap-free run from `from` within `to` and `max_bytes` (at
//! least one entry); a `from` past the disk's log is an output-contract violation.

use crate::log_read::{LogReadId, LogReadResult};
use crate::sim::checkers::Violation;
use crate::types::{Entry, Incarnation, LogIndex, NodeId};

use super::queue::Event;
use super::{Input, OUTPUT_CONTRACT, Simulation};

/// Salt of the read delays' generator (`Simulation::log_read_rng`).
pub(super) const READ_RNG_SALT: u64 = 0x5EAD_106F_0000_0009;

/// A `ReadLog` answer on its way to the node.
#[derive(Debug)]
pub(super) struct LogReadAnswer {
    pub(super) id: LogReadId,
    pub(super) result: LogReadResult,
}

impl Simulation {
    /// Performs a `ReadLog` (output.rs rule 10): reads the disk now, answers later.
    pub(super) fn read_log(
        &mut self,
        slot: usize,
        id: NodeId,
        read: (LogReadId, LogIndex, LogIndex, u64),
    ) -> Result<(), Violation> {
        let (read_id, from, to, max_bytes) = read;
        let result = answer(self.slots[slot].disk.live_log(), from, to, max_bytes)
            .map_err(|problem| Violation::new(OUTPUT_CONTRACT, format!("node {id}: {problem}")))?;
        self.trace.word(from.0 | 1 << 57);
        self.note(|| {
            format!(
                "node {id} ReadLog {} {from}..={to} max {max_bytes}",
                read_id.0
            )
        });
        let (low, high) = self.scenario.log_read_ns;
        let delay = self.log_read_rng.range(low, high);
        let incarnation = self.slots[slot].incarnation;
        let answer = LogReadAnswer {
            id: read_id,
            result,
        };
        self.schedule(
            self.now + delay,
            Event::LogRead {
                slot,
                incarnation,
                answer,
            },
        );
        Ok(())
    }

    /// A read answer arrives, unless the node crashed since it asked.
    pub(super) fn log_read_event(
        &mut self,
        slot: usize,
        incarnation: Incarnation,
        answer: LogReadAnswer,
    ) -> Result<(), Violation> {
        let s = &self.slots[slot];
        if s.incarnation != incarnation || s.node.is_none() {
            return Ok(());
        }
        let id = s.config.id;
        self.note(|| match &answer.result {
            LogReadResult::Entries(entries) => {
                format!(
                    "node {id} read {} answered: {} entries",
                    answer.id.0,
                    entries.len()
                )
            }
            other => format!("node {id} read {} answered: {other:?}", answer.id.0),
        });
        self.step(slot, Input::LogRead(answer))
    }
}

/// Contract (b): the answer a disk holding `log` (gap-free, from its first retained index)
/// gives to a read of `from..=to` within `max_bytes`.
fn answer(
    log: &[Entry],
    from: LogIndex,
    to: LogIndex,
    max_bytes: u64,
) -> Result<LogReadResult, String> {
    let first = log.first().map(|entry| entry.index);
    if first.is_some_and(|first| from < first) {
        return Ok(LogReadResult::Compacted);
    }
    let start = first.map_or(0, |first| from.0 - first.0);
    let start = usize::try_from(start).unwrap_or(usize::MAX);
    if start >= log.len() || from > to {
        return Err(format!(
            "ReadLog of {from}..={to} past the log's end at {}",
            log.last().map_or(LogIndex(0), |entry| entry.index)
        ));
    }
    let mut bytes = 0;
    let mut entries = Vec::new();
    for entry in &log[start..] {
        let size = entry.payload.len() as u64;
        if entry.index > to || (!entries.is_empty() && bytes + size > max_bytes) {
            break;
        }
        bytes += size;
        entries.push(entry.clone());
    }
    Ok(LogReadResult::Entries(entries))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::types::{EntryKind, Term};

    fn log(from: u64, to: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index: LogIndex(index),
                term: Term(1),
                kind: EntryKind::Normal,
                payload: Bytes::from_static(b"abcd"),
            })
            .collect()
    }

    #[test]
    fn answers_follow_the_contract() {
        let disk = log(3, 9);
        assert_eq!(
            answer(&disk, LogIndex(2), LogIndex(4), 100),
            Ok(LogReadResult::Compacted)
        );
        let LogReadResult::Entries(run) = answer(&disk, LogIndex(4), LogIndex(9), 9).unwrap()
        else {
            panic!("entries expected");
        };
        assert_eq!(run, log(4, 5), "two entries fit in 9 bytes");
        let LogReadResult::Entries(run) = answer(&disk, LogIndex(4), LogIndex(4), 1).unwrap()
        else {
            panic!("entries expected");
        };
        assert_eq!(run.len(), 1, "at least one entry");
        assert!(answer(&disk, LogIndex(10), LogIndex(10), 9).is_err());
    }
}
