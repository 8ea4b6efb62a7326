//! Issue 13's disk nemesis: damage a stopped node's files the way a bad disk or a crash does,
//! limited to what the node recovers from by itself (`nemesis::DiskDamage`).
//!
//! Invariant: only a node that is down (killed by the same fault) is touched, and only files
//! whose damage the node must survive: the hard state (F9: it starts fenced at its ceiling;
//! the ceiling file is left intact so the fence is finite and the cluster stays live) and the
//! unsynced tail of the last segment (bytes after the last valid record, never acknowledged).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use xtask::nemesis::{DiskDamage, SplitMix64};

/// Damages `dir` as `damage` says; returns what was done, for the run's log.
pub(crate) fn damage(dir: &Path, damage: DiskDamage, rng: &mut SplitMix64) -> Result<String> {
    match damage {
        DiskDamage::HardState => {
            let path = dir.join(alpo_log::HARD_STATE_FILE_NAME);
            if !path.exists() {
                return Ok(format!("{} missing: nothing damaged", path.display()));
            }
            let length = std::fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            let offset = rng.below(length.max(1));
            flip(&path, offset, 1 << rng.below(8))?;
            Ok(format!(
                "flipped a bit of {} at byte {offset}",
                path.display()
            ))
        }
        DiskDamage::TornTail => {
            let Some((path, end)) = log_end(dir)? else {
                return Ok("no log record: nothing torn".into());
            };
            let file_length = std::fs::metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .len();
            // Short of a sector, and never past the file: a torn write of the next batch.
            let length = rng
                .range_inclusive(1, 300)
                .min(file_length.saturating_sub(end));
            let garbage: Vec<u8> = (0..length).map(|_| (rng.next_u64() | 1) as u8).collect();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            file.write_all_at(&garbage, end)
                .with_context(|| format!("writing {}", path.display()))?;
            Ok(format!(
                "wrote {length} garbage bytes after the last record of {} (byte {end})",
                path.display()
            ))
        }
    }
}

/// The last segment and the offset just after its last valid record (the header's end for an
/// empty segment); `None` without a segment.
fn log_end(dir: &Path) -> Result<Option<(PathBuf, u64)>> {
    let reader = alpo_log::LogReader::open(dir)
        .with_context(|| format!("reading the log in {}", dir.display()))?;
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "alpolog"))
        .collect();
    segments.sort();
    let Some(last) = segments.pop() else {
        return Ok(None);
    };
    let last_index = reader.last_index();
    let end = match reader.segment_path(last_index) {
        Some(path) if path == last.as_path() => {
            let bytes =
                std::fs::read(&last).with_context(|| format!("reading {}", last.display()))?;
            record_end(&bytes, last_index)
        }
        // The last segment holds no record yet: right after its 48-byte header.
        _ => Some(48),
    };
    Ok(end.map(|end| (last, end)))
}

/// The end of record `index` in a segment's bytes, found by walking the records from the header.
fn record_end(bytes: &[u8], index: u64) -> Option<u64> {
    let mut at = 48usize;
    loop {
        let header = bytes.get(at..at + 25)?;
        let length = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
        let record_index = u64::from_le_bytes(header[9..17].try_into().ok()?);
        let end = at + 25 + length;
        if record_index == index {
            return Some(end as u64);
        }
        if record_index == 0 || bytes.len() < end {
            return None;
        }
        at = end;
    }
}

fn flip(path: &Path, offset: u64, mask: u64) -> Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut byte = [0];
    file.read_exact_at(&mut byte, offset)
        .with_context(|| format!("reading {}", path.display()))?;
    byte[0] ^= (mask & 0xff) as u8;
    file.write_all_at(&byte, offset)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_is_truncated_and_a_damaged_hard_state_fences() {
        let root = std::env::temp_dir().join(format!("xtask-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let dir = Dir(root);
        {
            let mut log = alpo_log::Log::open(dir.path(), alpo_log::LogOptions::new(7, 1)).unwrap();
            for index in 1..=20 {
                log.append(index, 1, 1, b"payload").unwrap();
            }
            log.sync().unwrap();
        }
        alpo_log::HardState {
            current_term: 3,
            voted_for: Some(1),
            incarnation: 2,
        }
        .store(dir.path())
        .unwrap();
        let mut rng = SplitMix64::new(5);
        let done = damage(dir.path(), DiskDamage::TornTail, &mut rng).unwrap();
        assert!(done.contains("garbage"), "{done}");
        let reader = alpo_log::LogReader::open(dir.path()).unwrap();
        assert_eq!(
            reader.last_index(),
            20,
            "the garbage is a torn tail, not a record"
        );
        assert!(
            reader.pending_repairs().count() > 0,
            "{:?}",
            reader.events()
        );
        damage(dir.path(), DiskDamage::HardState, &mut rng).unwrap();
        assert!(alpo_log::HardState::load(dir.path()).is_err());
    }

    /// A directory removed when the test ends.
    struct Dir(PathBuf);

    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
