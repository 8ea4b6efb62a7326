//! Start-up of the hard state (protocol rules F8, F9): what the node does when its term/vote
//! file or its term-ceiling file cannot be read.
//!
//! Decision (`load`):
//! - hard state valid: start with it; a damaged ceiling file is then harmless (every term the
//!   node voted in is at most the stored `current_term`, and the core raises the ceiling above
//!   it before its next vote), so the node starts with ceiling 0 and says so;
//! - hard state damaged, or missing on a disk that holds log entries or a snapshot (rule F9,
//!   *hard-state amnesia*): the node starts with `hard_state_lost`, a fresh incarnation above
//!   any used before (wall-clock nanoseconds), and the core's vote fence at the ceiling —
//!   `u64::MAX` (never vote again) when the ceiling file is damaged or missing too;
//! - both missing on an empty disk: a new node.
//!
//! Invariants: a node whose hard state is lost never stores a hard state at start (a valid file
//! written below the fence would hide the loss from the next start: the core stores one only
//! once its term reaches the fence); an I/O error other than damage (permissions, EIO on open)
//! still refuses the start, naming the file.

use std::path::Path;

use alpo_core::Term;

use crate::error::Error;

/// What start-up found in the hard-state and term-ceiling files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HardStateAtStart {
    /// The stored hard state (`None`: a new node, or lost when `lost` is set).
    pub(crate) stored: Option<alpo_log::HardState>,
    /// Rule F9: why the hard state is lost (file and reason), when it is.
    pub(crate) lost: Option<String>,
    /// Rule F8's ceiling as the core must start with it.
    pub(crate) term_ceiling: Term,
    /// A damaged ceiling file next to a valid hard state (file and reason), for the log.
    pub(crate) ceiling_damage: Option<String>,
}

/// Loads the hard state and the ceiling of `dir` (decision in the module doc); `holds_data`:
/// the log holds entries or a snapshot exists.
pub(crate) fn load(dir: &Path, holds_data: bool) -> Result<HardStateAtStart, Error> {
    let (stored, lost) = match alpo_log::HardState::load(dir) {
        Ok(Some(stored)) => (Some(stored), None),
        Ok(None) if !holds_data => (None, None),
        Ok(None) => (
            None,
            Some(format!(
                "{} is missing in {} but the log holds entries or a snapshot",
                alpo_log::HARD_STATE_FILE_NAME,
                dir.display()
            )),
        ),
        Err(damage @ alpo_log::Error::Corruption { .. }) => (None, Some(damage.to_string())),
        Err(other) => return Err(other.into()),
    };
    let ceiling = match alpo_log::TermCeiling::load(dir) {
        Ok(ceiling) => Ok(ceiling),
        Err(damage @ alpo_log::Error::Corruption { .. }) => Err(damage.to_string()),
        Err(other) => return Err(other.into()),
    };
    let (term_ceiling, ceiling_damage) = match (lost.is_some(), ceiling) {
        (false, Ok(ceiling)) => (Term(ceiling.map_or(0, |c| c.0)), None),
        (false, Err(damage)) => (Term(0), Some(damage)),
        (true, Ok(Some(ceiling))) => (Term(ceiling.0), None),
        // F9: no bound on the terms it may have voted in.
        (true, Ok(None)) => (Term(u64::MAX), None),
        (true, Err(damage)) => (Term(u64::MAX), Some(damage)),
    };
    Ok(HardStateAtStart {
        stored,
        lost,
        term_ceiling,
        ceiling_damage,
    })
}

/// Loads (`load`) and logs what start-up found, and makes this start's hard state: after a
/// loss a fresh incarnation and nothing stored (F9); otherwise the stored one with its
/// incarnation bumped and stored durably before anything is sent. Returns it, whether the hard
/// state was lost, and the ceiling the core starts with.
pub(crate) fn start(
    dir: &Path,
    holds_data: bool,
) -> Result<(alpo_log::HardState, bool, Term), Error> {
    let found = load(dir, holds_data)?;
    if let Some(damage) = &found.ceiling_damage {
        tracing::warn!(
            dir = %dir.display(),
            %damage,
            lost_hard_state = found.lost.is_some(),
            "the term-ceiling file is damaged (rule F8)"
        );
    }
    let (stored, hard_state_lost) = match (&found.lost, found.stored) {
        // Rule F9: start fenced, with a fresh incarnation, storing no hard state (the core
        // stores one once its term reaches the fence).
        (Some(why), _) => {
            tracing::warn!(
                dir = %dir.display(),
                why = %why,
                vote_fence = found.term_ceiling.0,
                "hard state lost: starting without voting rights below the vote fence (rule F9)"
            );
            let stored = alpo_log::HardState {
                current_term: 0,
                voted_for: None,
                incarnation: fresh_incarnation(),
            };
            (stored, true)
        }
        (None, stored) => {
            let mut stored = stored.unwrap_or(alpo_log::HardState {
                current_term: 0,
                voted_for: None,
                incarnation: 0,
            });
            stored.incarnation =
                stored
                    .incarnation
                    .checked_add(1)
                    .ok_or_else(|| Error::Corrupt {
                        what: format!("the incarnation in {} is at its maximum", dir.display()),
                    })?;
            stored.store(dir)?;
            (stored, false)
        }
    };
    Ok((stored, hard_state_lost, found.term_ceiling))
}

/// Rule F9's fresh incarnation after a hard-state loss: above any used before, since
/// incarnations were bumped by one per start from 1 and wall-clock nanoseconds since 1970 are
/// far above any count of starts.
pub(crate) fn fresh_incarnation() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    u64::try_from(nanos).unwrap_or(u64::MAX).max(1 << 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn damage(path: &Path) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[20] ^= 0x40;
        std::fs::write(path, bytes).unwrap();
    }

    fn hard_state(dir: &Path) {
        alpo_log::HardState {
            current_term: 7,
            voted_for: Some(2),
            incarnation: 3,
        }
        .store(dir)
        .unwrap();
    }

    #[test]
    fn a_valid_hard_state_starts_unfenced() {
        let dir = tempfile::tempdir().unwrap();
        hard_state(dir.path());
        alpo_log::TermCeiling(23).store(dir.path()).unwrap();
        let found = load(dir.path(), true).unwrap();
        assert_eq!(found.stored.map(|s| s.current_term), Some(7));
        assert_eq!((found.lost, found.term_ceiling), (None, Term(23)));
    }

    #[test]
    fn a_new_disk_is_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let found = load(dir.path(), false).unwrap();
        assert_eq!((found.stored, found.lost), (None, None));
        assert_eq!(found.term_ceiling, Term(0));
    }

    #[test]
    fn a_damaged_hard_state_is_lost_and_fenced_at_the_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        hard_state(dir.path());
        alpo_log::TermCeiling(23).store(dir.path()).unwrap();
        damage(&dir.path().join(alpo_log::HARD_STATE_FILE_NAME));
        let found = load(dir.path(), true).unwrap();
        let lost = found.lost.unwrap();
        assert!(lost.contains(alpo_log::HARD_STATE_FILE_NAME), "{lost}");
        assert_eq!((found.stored, found.term_ceiling), (None, Term(23)));
    }

    #[test]
    fn a_lost_hard_state_without_a_readable_ceiling_is_fenced_forever() {
        let dir = tempfile::tempdir().unwrap();
        hard_state(dir.path());
        alpo_log::TermCeiling(23).store(dir.path()).unwrap();
        damage(&dir.path().join(alpo_log::HARD_STATE_FILE_NAME));
        damage(&dir.path().join(alpo_log::TERM_CEILING_FILE_NAME));
        let found = load(dir.path(), true).unwrap();
        assert_eq!(found.term_ceiling, Term(u64::MAX));
        assert!(found.ceiling_damage.is_some());
        std::fs::remove_file(dir.path().join(alpo_log::TERM_CEILING_FILE_NAME)).unwrap();
        assert_eq!(load(dir.path(), true).unwrap().term_ceiling, Term(u64::MAX));
    }

    #[test]
    fn a_missing_hard_state_with_a_log_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        alpo_log::TermCeiling(40).store(dir.path()).unwrap();
        let found = load(dir.path(), true).unwrap();
        assert!(found.lost.is_some());
        assert_eq!(found.term_ceiling, Term(40));
    }

    #[test]
    fn a_damaged_ceiling_beside_a_valid_hard_state_starts_at_ceiling_zero() {
        let dir = tempfile::tempdir().unwrap();
        hard_state(dir.path());
        alpo_log::TermCeiling(23).store(dir.path()).unwrap();
        damage(&dir.path().join(alpo_log::TERM_CEILING_FILE_NAME));
        let found = load(dir.path(), true).unwrap();
        assert_eq!((found.lost, found.term_ceiling), (None, Term(0)));
        assert!(found.ceiling_damage.unwrap().contains("term_ceiling"));
    }
}
