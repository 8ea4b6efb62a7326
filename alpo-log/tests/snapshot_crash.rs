//! Crash tests of snapshot files: a crash after each step of taking, receiving and removing a
//! snapshot (including a torn temporary file and lost unsynced writes), and every row of the
//! snapshot decision table (`SnapshotSituation::action`) reached by a directory that produces it.
//!
//! A crash is simulated by copying the directory's files at the moment of the crash into a
//! fresh directory (what the disk holds), optionally damaging what was not yet synced, and
//! opening that copy.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use alpo_log::{
    SnapshotAction, SnapshotOptions, SnapshotSituation, SnapshotStore, verify_snapshot_file,
};

const CLUSTER: u64 = 0xA1B0;

fn options() -> SnapshotOptions {
    SnapshotOptions {
        chunk_bytes: 32,
        ..SnapshotOptions::new(CLUSTER, 1)
    }
}

fn image(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed) | 1)
        .collect()
}

/// What the disk holds at a crash now: a copy of every file of `dir`.
fn crash_copy(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        fs::copy(&path, copy.path().join(path.file_name().unwrap())).unwrap();
    }
    copy
}

fn take(store: &mut SnapshotStore, l: u64, size: usize) -> PathBuf {
    let mut writer = store.begin(l, 1, b"m").unwrap();
    writer.write_all(&image(size, 3)).unwrap();
    let finished = writer.finish().unwrap();
    let path = finished.path().to_path_buf();
    store.adopt(finished);
    path
}

fn situations(store: &SnapshotStore) -> Vec<SnapshotSituation> {
    store.events().iter().map(|e| e.situation).collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// A directory with a durable snapshot at 10, for the crash tests to take one at 20 in.
fn with_old_snapshot() -> (tempfile::TempDir, SnapshotStore) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SnapshotStore::open(dir.path(), options()).unwrap();
    take(&mut store, 10, 100);
    (dir, store)
}

/// After open, the store must hold exactly the old snapshot at 10 and no leftover file.
fn assert_old_snapshot_only(dir: &Path) -> SnapshotStore {
    let store = SnapshotStore::open(dir, options()).unwrap();
    assert_eq!(store.newest().unwrap().last_index, 10);
    assert_eq!(store.snapshots().count(), 1);
    assert_eq!(
        files(dir),
        vec!["snap-00000000000000000010-00000000000000000001.alposnap"]
    );
    store
}

#[test]
fn crash_while_writing_the_temporary_file_torn_at_every_length() {
    let (dir, store) = with_old_snapshot();
    let mut writer = store.begin(20, 1, b"m").unwrap();
    writer.write_all(&image(200, 5)).unwrap();
    let disk = crash_copy(dir.path());
    drop(writer);
    let temp = disk
        .path()
        .join("snap-00000000000000000020-00000000000000000001.tmp");
    let bytes = fs::read(&temp).unwrap();
    for length in [0, 1, 40, 83, 100, bytes.len()] {
        let torn = crash_copy(disk.path());
        fs::write(
            torn.path().join(temp.file_name().unwrap()),
            &bytes[..length],
        )
        .unwrap();
        let store = assert_old_snapshot_only(torn.path());
        assert!(situations(&store).contains(&SnapshotSituation::TempFile));
    }
}

#[test]
fn crash_after_the_temporary_file_is_synced_but_not_renamed() {
    let (dir, mut store) = with_old_snapshot();
    let path = take(&mut store, 20, 200);
    let disk = crash_copy(dir.path());
    // The rename did not reach the disk: the complete file is still under its temporary name.
    let temp = disk
        .path()
        .join("snap-00000000000000000020-00000000000000000001.tmp");
    fs::rename(disk.path().join(path.file_name().unwrap()), &temp).unwrap();
    let store = assert_old_snapshot_only(disk.path());
    assert!(situations(&store).contains(&SnapshotSituation::TempFile));
}

#[test]
fn crash_with_lost_unsynced_writes_in_the_temporary_file() {
    let (dir, store) = with_old_snapshot();
    let mut writer = store.begin(20, 1, b"m").unwrap();
    writer.write_all(&image(500, 5)).unwrap();
    let disk = crash_copy(dir.path());
    drop(writer);
    let temp = disk
        .path()
        .join("snap-00000000000000000020-00000000000000000001.tmp");
    let mut bytes = fs::read(&temp).unwrap();
    // Write-back reached the disk out of order: a middle page never arrived.
    bytes[100..300].fill(0);
    fs::write(&temp, &bytes).unwrap();
    assert_old_snapshot_only(disk.path());
}

#[test]
fn crash_after_the_rename_and_directory_sync() {
    let (dir, mut store) = with_old_snapshot();
    take(&mut store, 20, 200);
    let disk = crash_copy(dir.path());
    let store = SnapshotStore::open(disk.path(), options()).unwrap();
    assert_eq!(store.newest().unwrap().last_index, 20);
    assert_eq!(
        situations(&store),
        vec![SnapshotSituation::Newest, SnapshotSituation::Older]
    );
}

#[test]
fn crash_in_the_middle_of_remove_older() {
    let (dir, mut store) = with_old_snapshot();
    take(&mut store, 15, 100);
    take(&mut store, 20, 200);
    // The first removal reached the disk, the second did not.
    let disk = crash_copy(dir.path());
    fs::remove_file(
        disk.path()
            .join("snap-00000000000000000010-00000000000000000001.alposnap"),
    )
    .unwrap();
    let mut store = SnapshotStore::open(disk.path(), options()).unwrap();
    assert_eq!(store.newest().unwrap().last_index, 20);
    assert_eq!(store.remove_older(20).unwrap(), 1);
    assert_eq!(store.snapshots().count(), 1);
}

#[test]
fn crash_while_receiving_restarts_the_transfer_at_zero() {
    let (leader_dir, leader) = with_old_snapshot();
    let file = leader.open_newest().unwrap().unwrap();
    let mut bytes = vec![0u8; 150];
    let count = file.read_at(0, &mut bytes).unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = SnapshotStore::open(follower_dir.path(), options()).unwrap();
    let mut receiver = follower.receiver();
    receiver.write_at(5, 0, &bytes[..count]).unwrap();
    let disk = crash_copy(follower_dir.path());
    let store = SnapshotStore::open(disk.path(), options()).unwrap();
    assert_eq!(
        situations(&store),
        vec![
            SnapshotSituation::PartialInstall,
            SnapshotSituation::NoSnapshot
        ]
    );
    assert!(files(disk.path()).is_empty());
    // The new receiver holds nothing for that id: the leader resends from 0.
    assert_eq!(store.receiver().held(5), 0);
    drop(leader_dir);
}

#[test]
fn crash_after_a_received_snapshot_is_renamed() {
    let (_leader_dir, leader) = with_old_snapshot();
    let file = leader.open_newest().unwrap().unwrap();
    let mut bytes = vec![0u8; usize::try_from(file.file_bytes()).unwrap()];
    file.read_at(0, &mut bytes).unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = SnapshotStore::open(follower_dir.path(), options()).unwrap();
    let mut receiver = follower.receiver();
    receiver.write_at(5, 0, &bytes).unwrap();
    receiver.finish(5).unwrap();
    let disk = crash_copy(follower_dir.path());
    let store = SnapshotStore::open(disk.path(), options()).unwrap();
    assert_eq!(store.newest(), Some(file.meta()));
}

/// A file under a final name that lost writes was renamed before it was synced: the order
/// forbids it, so open must treat it as damage, report it, and fall back to the older one.
#[test]
fn a_damaged_newest_snapshot_falls_back_with_an_event() {
    let (dir, mut store) = with_old_snapshot();
    let newest = take(&mut store, 20, 200);
    let mut bytes = fs::read(&newest).unwrap();
    bytes[150..170].fill(0);
    fs::write(&newest, &bytes).unwrap();
    let store = SnapshotStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.newest().unwrap().last_index, 10);
    let damaged = &store.events()[0];
    assert_eq!(damaged.situation, SnapshotSituation::Damaged);
    assert_eq!(damaged.path, newest);
    assert!(damaged.damage.is_some());
    let expected = verify_snapshot_file(&newest).unwrap_err().to_string();
    assert!(
        expected.contains(&format!("at byte {}", damaged.offset)),
        "{expected}"
    );
    // The damaged file stays for the operator.
    assert!(newest.exists());
    // A new snapshot at the same position replaces it.
    let mut store = store;
    take(&mut store, 20, 200);
    let store = SnapshotStore::open(dir.path(), options()).unwrap();
    assert_eq!(store.newest().unwrap().last_index, 20);
}

/// Builds a directory that produces `row` and returns the situation open reports for it.
fn reach(row: SnapshotSituation) -> SnapshotSituation {
    let (dir, mut store) = with_old_snapshot();
    let find = |store: &SnapshotStore| {
        store
            .events()
            .iter()
            .map(|e| e.situation)
            .find(|s| *s == row)
            .unwrap()
    };
    match row {
        SnapshotSituation::NoSnapshot => {
            let empty = tempfile::tempdir().unwrap();
            find(&SnapshotStore::open(empty.path(), options()).unwrap())
        }
        SnapshotSituation::Newest | SnapshotSituation::Older => {
            take(&mut store, 20, 10);
            find(&SnapshotStore::open(dir.path(), options()).unwrap())
        }
        SnapshotSituation::TempFile => {
            fs::write(
                dir.path()
                    .join("snap-00000000000000000030-00000000000000000001.tmp"),
                b"x",
            )
            .unwrap();
            find(&SnapshotStore::open(dir.path(), options()).unwrap())
        }
        SnapshotSituation::PartialInstall => {
            fs::write(dir.path().join("install.alposnap-partial"), b"x").unwrap();
            find(&SnapshotStore::open(dir.path(), options()).unwrap())
        }
        SnapshotSituation::Damaged => {
            let path = take(&mut store, 20, 10);
            fs::write(&path, b"not a snapshot").unwrap();
            find(&SnapshotStore::open(dir.path(), options()).unwrap())
        }
        SnapshotSituation::ForeignCluster => {
            let other = SnapshotOptions::new(CLUSTER + 1, 1);
            let error = SnapshotStore::open(dir.path(), other)
                .unwrap_err()
                .to_string();
            assert!(error.contains("alposnap at byte 16: cluster id"), "{error}");
            let scan = alpo_log::scan_snapshots(dir.path(), Some(CLUSTER + 1));
            assert!(scan.is_err());
            row
        }
    }
}

#[test]
fn every_row_of_the_snapshot_decision_table_is_reached() {
    let mut reached = HashSet::new();
    for row in SnapshotSituation::ALL {
        let found = reach(row);
        assert_eq!(found, row);
        let (action, why) = row.action();
        assert!(!why.is_empty());
        if action == SnapshotAction::Refuse {
            assert_eq!(row, SnapshotSituation::ForeignCluster);
        }
        reached.insert(found);
    }
    assert_eq!(reached.len(), SnapshotSituation::ALL.len());
}
