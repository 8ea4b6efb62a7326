//! Behaviour of snapshot files through the public API: take, list, read back, transfer byte
//! ranges, receive (install-snapshot), remove older ones, and damage in every region of a file.

// Test helpers outside #[test] functions panic on failure too.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use alpo_log::{
    ChunkOutcome, Corruption, Error, SnapshotFile, SnapshotOptions, SnapshotSituation,
    SnapshotStore, verify_snapshot_file,
};

const CLUSTER: u64 = 0xA1B0;

/// Options with tiny chunks, so small images span several.
fn options(node_id: u64) -> SnapshotOptions {
    SnapshotOptions {
        chunk_bytes: 16,
        ..SnapshotOptions::new(CLUSTER, node_id)
    }
}

/// A deterministic image of `size` bytes.
fn image(size: usize, seed: u8) -> Vec<u8> {
    (0..size)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// Takes a snapshot at `(l, t)` of `image`, written in pieces of 7 bytes.
fn take(store: &mut SnapshotStore, l: u64, t: u64, image: &[u8]) -> PathBuf {
    let mut writer = store.begin(l, t, b"voters 1 2 3").unwrap();
    for piece in image.chunks(7) {
        writer.write_all(piece).unwrap();
    }
    let finished = writer.finish().unwrap();
    let path = finished.path().to_path_buf();
    store.adopt(finished);
    path
}

fn read_image(file: &SnapshotFile) -> Result<Vec<u8>, Error> {
    let mut reader = file.image()?;
    let mut out = Vec::new();
    while let Some(chunk) = reader.next_chunk()? {
        assert!(chunk.len() <= 16, "one chunk at a time");
        out.extend_from_slice(chunk);
    }
    Ok(out)
}

#[test]
fn take_list_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SnapshotStore::open(dir.path(), options(1)).unwrap();
    assert_eq!(store.newest(), None);
    assert_eq!(store.events()[0].situation, SnapshotSituation::NoSnapshot);
    let data = image(100, 1);
    let path = take(&mut store, 42, 7, &data);
    assert!(path.ends_with("snap-00000000000000000042-00000000000000000007.alposnap"));
    let meta = store.newest().unwrap().clone();
    assert_eq!((meta.last_index, meta.last_term), (42, 7));
    assert_eq!(meta.membership, b"voters 1 2 3");
    assert_eq!(
        (meta.image_bytes, meta.chunk_bytes, meta.node_id),
        (100, 16, 1)
    );
    let file = store.open_newest().unwrap().unwrap();
    assert_eq!(read_image(&file).unwrap(), data);
    // io::Read gives the same bytes.
    let mut via_read = Vec::new();
    file.image().unwrap().read_to_end(&mut via_read).unwrap();
    assert_eq!(via_read, data);
    assert_eq!(verify_snapshot_file(&path).unwrap(), meta);
    // A reopen finds it, verified.
    let store = SnapshotStore::open(dir.path(), options(1)).unwrap();
    assert_eq!(store.newest(), Some(&meta));
    assert_eq!(store.events()[0].situation, SnapshotSituation::Newest);
}

#[test]
fn empty_and_exact_multiple_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SnapshotStore::open(dir.path(), options(1)).unwrap();
    for (l, size) in [(1, 0), (2, 16), (3, 32), (4, 33)] {
        take(&mut store, l, 1, &image(size, 9));
        let file = store.open_newest().unwrap().unwrap();
        assert_eq!(read_image(&file).unwrap(), image(size, 9), "size {size}");
    }
}

#[test]
fn previous_snapshot_kept_until_remove_older() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SnapshotStore::open(dir.path(), options(1)).unwrap();
    let first = take(&mut store, 10, 1, &image(50, 1));
    // A transfer reading the first snapshot keeps it readable after its removal.
    let transfer = SnapshotFile::open(&first).unwrap();
    take(&mut store, 20, 2, &image(60, 2));
    assert!(first.exists());
    assert_eq!(store.snapshots().count(), 2);
    // Nothing goes unless a valid snapshot at or above the bound is listed.
    assert_eq!(store.remove_older(30).unwrap(), 0);
    assert_eq!(store.remove_older(20).unwrap(), 1);
    assert!(!first.exists());
    assert_eq!(store.snapshots().count(), 1);
    assert_eq!(read_image(&transfer).unwrap(), image(50, 1));
}

#[test]
fn same_position_replaces_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = SnapshotStore::open(dir.path(), options(1)).unwrap();
    take(&mut store, 10, 1, &image(50, 1));
    take(&mut store, 10, 1, &image(50, 1));
    assert_eq!(store.snapshots().count(), 1);
    let reopened = SnapshotStore::open(dir.path(), options(1)).unwrap();
    assert_eq!(reopened.snapshots().count(), 1);
}

#[test]
fn membership_over_the_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path(), options(1)).unwrap();
    let large = vec![1u8; 64 * 1024 + 1];
    assert!(matches!(
        store.begin(1, 1, &large),
        Err(Error::MembershipTooLarge { .. })
    ));
}

/// Sends the leader's newest snapshot to `receiver` in pieces of `piece` bytes.
fn transfer(
    leader: &SnapshotFile,
    receiver: &mut alpo_log::SnapshotReceiver,
    id: u64,
    piece: usize,
) {
    let mut buffer = vec![0u8; piece];
    let mut offset = 0;
    while offset < leader.file_bytes() {
        let count = leader.read_at(offset, &mut buffer).unwrap();
        let outcome = receiver.write_at(id, offset, &buffer[..count]).unwrap();
        assert_eq!(
            outcome,
            ChunkOutcome::Accepted {
                held: offset + count as u64
            }
        );
        offset += count as u64;
    }
}

#[test]
fn install_gives_a_byte_identical_file() {
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = SnapshotStore::open(leader_dir.path(), options(1)).unwrap();
    let path = take(&mut leader, 500, 4, &image(1000, 3));
    let file = leader.open_newest().unwrap().unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let mut follower = SnapshotStore::open(follower_dir.path(), options(2)).unwrap();
    let mut receiver = follower.receiver();
    transfer(&file, &mut receiver, 77, 100);
    let finished = receiver.finish(77).unwrap();
    assert_eq!(finished.meta(), file.meta());
    assert_eq!(
        std::fs::read(finished.path()).unwrap(),
        std::fs::read(&path).unwrap()
    );
    assert!(!receiver.partial_path().exists());
    follower.adopt(finished);
    // The follower keeps the taker's node id.
    assert_eq!(follower.newest().unwrap().node_id, 1);
    let reopened = SnapshotStore::open(follower_dir.path(), options(2)).unwrap();
    assert_eq!(reopened.newest().unwrap().last_index, 500);
}

#[test]
fn receiver_resumes_after_loss_and_duplication_and_restarts_for_another_id() {
    let leader_dir = tempfile::tempdir().unwrap();
    let mut leader = SnapshotStore::open(leader_dir.path(), options(1)).unwrap();
    take(&mut leader, 9, 2, &image(300, 5));
    let file = leader.open_newest().unwrap().unwrap();
    let mut bytes = vec![0u8; usize::try_from(file.file_bytes()).unwrap()];
    file.read_at(0, &mut bytes).unwrap();
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = SnapshotStore::open(follower_dir.path(), options(2)).unwrap();
    let mut receiver = follower.receiver();
    assert_eq!(
        receiver.write_at(1, 0, &bytes[..100]).unwrap(),
        ChunkOutcome::Accepted { held: 100 }
    );
    // A lost chunk: the next one arrives at 200; the receiver asks for 100.
    assert_eq!(
        receiver.write_at(1, 200, &bytes[200..300]).unwrap(),
        ChunkOutcome::Resume { held: 100 }
    );
    // A duplicate of the first chunk.
    assert_eq!(
        receiver.write_at(1, 0, &bytes[..100]).unwrap(),
        ChunkOutcome::Resume { held: 100 }
    );
    assert!(matches!(
        receiver.finish(1),
        Err(Error::SnapshotIncomplete { held: 100, .. })
    ));
    // Another id discards the partial file and starts at 0.
    assert_eq!(
        receiver.write_at(2, 100, &bytes[100..200]).unwrap(),
        ChunkOutcome::Resume { held: 0 }
    );
    assert_eq!(receiver.held(1), 0);
    assert!(matches!(
        receiver.finish(1),
        Err(Error::SnapshotIdMismatch {
            receiving: Some(2),
            found: 1
        })
    ));
    let mut offset = 0;
    for piece in bytes.chunks(64) {
        receiver.write_at(2, offset, piece).unwrap();
        offset += piece.len() as u64;
    }
    assert_eq!(receiver.finish(2).unwrap().meta(), file.meta());
}

#[test]
fn receiver_refuses_another_cluster_and_bytes_past_the_end() {
    let leader_dir = tempfile::tempdir().unwrap();
    let other = SnapshotOptions {
        chunk_bytes: 16,
        ..SnapshotOptions::new(CLUSTER + 1, 1)
    };
    let mut leader = SnapshotStore::open(leader_dir.path(), other).unwrap();
    take(&mut leader, 9, 2, &image(40, 5));
    let file = leader.open_newest().unwrap().unwrap();
    let mut bytes = vec![0u8; usize::try_from(file.file_bytes()).unwrap() + 10];
    let length = file.read_at(0, &mut bytes).unwrap();
    assert_eq!(length as u64, file.file_bytes());
    let follower_dir = tempfile::tempdir().unwrap();
    let follower = SnapshotStore::open(follower_dir.path(), options(2)).unwrap();
    let mut receiver = follower.receiver();
    let error = receiver.write_at(1, 0, &bytes[..length]).unwrap_err();
    assert!(matches!(
        error,
        Error::Corruption {
            offset: 16,
            reason: Corruption::ClusterIdMismatch { .. },
            ..
        }
    ));
    assert!(!receiver.partial_path().exists());
    // Same cluster, but ten bytes too many.
    let mut leader = SnapshotStore::open(&leader_dir.path().join("same"), options(1)).unwrap();
    take(&mut leader, 9, 2, &image(40, 5));
    let file = leader.open_newest().unwrap().unwrap();
    let length = file.read_at(0, &mut bytes).unwrap();
    let error = receiver.write_at(3, 0, &bytes[..length + 10]).unwrap_err();
    assert!(error.to_string().contains("its header implies"), "{error}");
}

/// One region of a small snapshot file and a byte offset inside it.
struct Region {
    name: &'static str,
    offsets: std::ops::Range<usize>,
}

/// Regions of a snapshot with membership "voters 1 2 3" (12 bytes), 40 image bytes in chunks
/// of 16: header 0..88, chunks at 88 (24 bytes), 112 (24), 136 (16), trailer 152..188.
fn regions() -> Vec<Region> {
    vec![
        Region {
            name: "header",
            offsets: 0..88,
        },
        Region {
            name: "chunk length",
            offsets: 88..92,
        },
        Region {
            name: "chunk crc",
            offsets: 92..96,
        },
        Region {
            name: "chunk body",
            offsets: 96..112,
        },
        Region {
            name: "last chunk",
            offsets: 136..152,
        },
        Region {
            name: "trailer",
            offsets: 152..188,
        },
    ]
}

fn small_snapshot(dir: &Path) -> PathBuf {
    let mut store = SnapshotStore::open(dir, options(1)).unwrap();
    let path = take(&mut store, 3, 1, &image(40, 7));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 188);
    path
}

#[test]
fn every_damaged_byte_is_a_clear_error_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_snapshot(dir.path());
    let good = std::fs::read(&path).unwrap();
    for region in regions() {
        for offset in region.offsets.clone() {
            for bit in [0x01u8, 0x80] {
                let mut bytes = good.clone();
                bytes[offset] ^= bit;
                std::fs::write(&path, &bytes).unwrap();
                let error = verify_snapshot_file(&path).unwrap_err();
                let Error::Corruption {
                    path: at,
                    offset: found,
                    ..
                } = &error
                else {
                    panic!("{} byte {offset}: {error}", region.name);
                };
                assert_eq!(at, &path, "{}", region.name);
                assert!(*found < 188, "{} byte {offset}: {error}", region.name);
                let text = error.to_string();
                assert!(text.contains("alposnap at byte"), "{text}");
            }
        }
    }
    // Truncation at every length and trailing garbage.
    for length in 0..good.len() {
        std::fs::write(&path, &good[..length]).unwrap();
        assert!(verify_snapshot_file(&path).is_err(), "length {length}");
    }
    let mut longer = good.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert!(verify_snapshot_file(&path).is_err());
    std::fs::write(&path, &good).unwrap();
    verify_snapshot_file(&path).unwrap();
}

#[test]
fn damage_names_the_region() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_snapshot(dir.path());
    let good = std::fs::read(&path).unwrap();
    let cases: [(usize, &str); 5] = [
        (20, "at byte 84: header checksum"),
        (89, "at byte 88: chunk length"),
        (93, "at byte 88: chunk checksum"),
        (140, "at byte 136: chunk checksum"),
        (160, "at byte 152: trailer"),
    ];
    for (offset, expected) in cases {
        let mut bytes = good.clone();
        bytes[offset] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let text = verify_snapshot_file(&path).unwrap_err().to_string();
        assert!(text.contains(expected), "byte {offset}: {text}");
    }
    // Two chunks swapped: each CRC holds, the image checksum does not.
    let mut bytes = good.clone();
    let (first, second) = (good[88..112].to_vec(), good[112..136].to_vec());
    bytes[88..112].copy_from_slice(&second);
    bytes[112..136].copy_from_slice(&first);
    std::fs::write(&path, &bytes).unwrap();
    let text = verify_snapshot_file(&path).unwrap_err().to_string();
    assert!(text.contains("at byte 56: image checksum"), "{text}");
}

#[test]
fn random_bytes_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("snap-00000000000000000001-00000000000000000001.alposnap");
    let good = std::fs::read(small_snapshot(dir.path())).unwrap();
    let mut state = 0x1234_5678_9abc_def0u64;
    for round in 0..300 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let length = usize::try_from(state % 300).unwrap();
        let mut bytes: Vec<u8> = (0..length).map(|i| (state >> (i % 56)) as u8).collect();
        if round % 2 == 0 {
            // Keep a valid prefix so the decoder goes deeper.
            let keep = length
                .min(good.len())
                .min(usize::try_from(state % 160).unwrap());
            bytes[..keep].copy_from_slice(&good[..keep]);
        }
        std::fs::write(&path, &bytes).unwrap();
        assert!(verify_snapshot_file(&path).is_err());
        assert!(
            SnapshotFile::open(&path)
                .map(|f| read_image(&f))
                .is_ok_and(|r| r.is_err())
                || SnapshotFile::open(&path).is_err()
        );
    }
}

mod fuzz {
    //! Arbitrary bytes as a snapshot file, arbitrary damage to a valid one, and arbitrary chunks
    //! fed to a receiver: never a panic, always a value or an error, and nothing that does not
    //! verify is ever listed or installed.

    use super::*;
    use proptest::prelude::*;

    fn valid_file() -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::read(small_snapshot(dir.path())).unwrap()
    }

    fn open_everything(bytes: &[u8]) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("snap-00000000000000000003-00000000000000000001.alposnap");
        std::fs::write(&path, bytes).unwrap();
        let verified = verify_snapshot_file(&path);
        if let Ok(file) = SnapshotFile::open(&path) {
            let mut buffer = [0u8; 64];
            let _ = file.read_at(0, &mut buffer);
            let image = read_image(&file);
            assert_eq!(image.is_ok(), verified.is_ok());
        }
        let store = SnapshotStore::open(dir.path(), options(1));
        if let Ok(store) = store {
            assert_eq!(store.newest().is_some(), verified.is_ok());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            open_everything(&bytes);
        }

        #[test]
        fn damaged_valid_file(
            damage in proptest::collection::vec((0usize..188, 1u8..=255), 1..4),
            cut in 0usize..200,
        ) {
            let good = valid_file();
            let mut bytes = good.clone();
            for (offset, xor) in damage {
                bytes[offset] ^= xor;
            }
            bytes.truncate(cut.max(1) + 100);
            open_everything(&bytes);
            // Two damages at one offset may cancel out; any real change is caught.
            prop_assert!(bytes == good || !verifies(&bytes));
        }

        #[test]
        fn receiver_never_installs_what_does_not_verify(
            chunks in proptest::collection::vec((0u64..250, 0usize..120, any::<u8>()), 1..12),
        ) {
            let good = valid_file();
            let dir = tempfile::tempdir().unwrap();
            let store = SnapshotStore::open(dir.path(), options(2)).unwrap();
            let mut receiver = store.receiver();
            for (offset, length, xor) in chunks {
                let start = usize::try_from(offset).unwrap().min(good.len());
                let end = (start + length).min(good.len() + 5);
                let mut piece: Vec<u8> = (start..end).map(|i| *good.get(i).unwrap_or(&0)).collect();
                if let Some(first) = piece.first_mut() {
                    *first ^= xor;
                }
                let _ = receiver.write_at(1, offset, &piece);
            }
            if let Ok(finished) = receiver.finish(1) {
                prop_assert_eq!(std::fs::read(finished.path()).unwrap(), good);
            }
        }
    }

    fn verifies(bytes: &[u8]) -> bool {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.alposnap");
        std::fs::write(&path, bytes).unwrap();
        verify_snapshot_file(&path).is_ok()
    }
}
