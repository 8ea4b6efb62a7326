//! [`SnapshotStore`]: the snapshot files of one node's directory, opened per the decision
//! table in `recovery.rs`, and [`SnapshotFile`], one snapshot opened for reading.
//!
//! Invariants: the store lists only snapshots that verified at open (the newest in full, older
//! ones by header, length and name) or that a writer or receiver finished since; it removes a
//! snapshot only through `remove_older`, and only when a newer valid one is listed, so the
//! newest valid snapshot is never removed (protocol S3 step 7: "the previous snapshot kept until
//! the next is durable"). Unlinking a file that a [`SnapshotFile`] still reads is safe: the
//! open handle keeps its bytes until it is dropped, so a transfer in progress finishes.
//!
//! The store takes no lock of its own: it lives in the directory of (or beside) the `Log` whose
//! `LOCK` the node holds, and one process uses it at a time.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Corruption, Error};
use crate::limits::{
    SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_BYTES_MAX, SNAPSHOT_COUNT_MAX,
    SNAPSHOT_MEMBERSHIP_BYTES_MAX,
};
use crate::segment::sync_directory;
use crate::snapshot::format::{self, FileKind, SnapshotMeta};
use crate::snapshot::reader::{self, ImageReader};
use crate::snapshot::receive::SnapshotReceiver;
use crate::snapshot::recovery::{SnapshotAction, SnapshotEvent, SnapshotSituation};
use crate::snapshot::writer::{FinishedSnapshot, SnapshotWriter};

/// How to open a [`SnapshotStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// The cluster every snapshot must belong to.
    pub cluster_id: u64,
    /// This node: written into the snapshots it takes (received ones keep their taker's id).
    pub node_id: u64,
    /// Image bytes per chunk of the snapshots this node takes (`SNAPSHOT_CHUNK_BYTES`).
    pub chunk_bytes: u32,
}

impl SnapshotOptions {
    /// Options for `cluster_id` and `node_id` with the default chunk size.
    pub fn new(cluster_id: u64, node_id: u64) -> SnapshotOptions {
        SnapshotOptions {
            cluster_id,
            node_id,
            chunk_bytes: SNAPSHOT_CHUNK_BYTES,
        }
    }
}

/// The snapshots of one directory.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    options: SnapshotOptions,
    /// Valid snapshots, oldest first.
    snapshots: Vec<FinishedSnapshot>,
    events: Vec<SnapshotEvent>,
}

/// What a read-only scan of a snapshot directory found, for the store and the `alpo log` tools.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotScan {
    /// One event per file met (newest snapshot first), or one `NoSnapshot` event.
    pub events: Vec<SnapshotEvent>,
    /// The valid snapshots, oldest first: the newest verified in full, older ones by header.
    pub snapshots: Vec<(PathBuf, SnapshotMeta)>,
}

/// One snapshot file opened for reading: the image for a restore, byte ranges for a transfer.
#[derive(Debug)]
pub struct SnapshotFile {
    path: PathBuf,
    file: File,
    meta: SnapshotMeta,
}

impl SnapshotStore {
    /// Opens the snapshots of `dir` (creating the directory if needed) and carries out the
    /// decision table: removes leftover temporary and partial files, reports damaged snapshots
    /// and falls back past them, refuses a snapshot of another cluster.
    ///
    /// # Correctness
    /// After a fall-back (a `Damaged` event newer than [`SnapshotStore::newest`]), the node must
    /// check that its log still holds `newest().last_index + 1` onward before restoring from it
    /// (protocol F11); otherwise it needs a snapshot from the leader.
    pub fn open(dir: &Path, options: SnapshotOptions) -> Result<SnapshotStore, Error> {
        if options.chunk_bytes == 0 || SNAPSHOT_CHUNK_BYTES_MAX < options.chunk_bytes {
            return Err(Error::InvalidOptions {
                field: "chunk_bytes",
                problem: format!("{} is zero or above the limit", options.chunk_bytes),
            });
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
        let scan = scan_snapshots(dir, Some(options.cluster_id))?;
        let mut removed = false;
        for event in &scan.events {
            if event.situation.action().0 == SnapshotAction::RemoveFile {
                tracing::info!(file = %event.path.display(), situation = ?event.situation,
                    "removing a snapshot file left by a crash");
                fs::remove_file(&event.path)
                    .map_err(|e| Error::io(&event.path, "remove snapshot", e))?;
                removed = true;
            }
            if event.situation == SnapshotSituation::Damaged {
                tracing::error!(file = %event.path.display(), offset = event.offset,
                    damage = ?event.damage, "damaged snapshot skipped");
            }
        }
        if removed {
            sync_directory(dir)?;
        }
        let snapshots = scan
            .snapshots
            .into_iter()
            .map(|(path, meta)| FinishedSnapshot { path, meta })
            .collect();
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            options,
            snapshots,
            events: scan.events,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What `open` found, one event per file.
    pub fn events(&self) -> &[SnapshotEvent] {
        &self.events
    }

    /// The newest valid snapshot, if any.
    pub fn newest(&self) -> Option<&SnapshotMeta> {
        self.snapshots.last().map(FinishedSnapshot::meta)
    }

    /// Every valid snapshot, oldest first.
    pub fn snapshots(&self) -> impl Iterator<Item = &SnapshotMeta> {
        self.snapshots.iter().map(FinishedSnapshot::meta)
    }

    /// Starts taking a snapshot at `(last_index, last_term)` with the configuration in force
    /// there (opaque `membership`). Stream the image into the writer, then `finish` it and
    /// [`SnapshotStore::adopt`] the result.
    pub fn begin(
        &self,
        last_index: u64,
        last_term: u64,
        membership: &[u8],
    ) -> Result<SnapshotWriter, Error> {
        let limit = u64::from(SNAPSHOT_MEMBERSHIP_BYTES_MAX);
        let size = membership.len() as u64;
        if limit < size {
            return Err(Error::MembershipTooLarge { size, limit });
        }
        let meta = SnapshotMeta {
            cluster_id: self.options.cluster_id,
            node_id: self.options.node_id,
            last_index,
            last_term,
            membership: membership.to_vec(),
            image_bytes: 0,
            image_checksum: 0,
            chunk_bytes: self.options.chunk_bytes,
        };
        SnapshotWriter::create(&self.dir, meta)
    }

    /// A receiver for snapshots sent by a leader (install-snapshot), writing into this
    /// directory. One receiver per directory.
    pub fn receiver(&self) -> SnapshotReceiver {
        SnapshotReceiver::new(&self.dir, self.options.cluster_id)
    }

    /// Lists a snapshot that a writer or receiver made durable. A snapshot at the same
    /// position as a listed one replaces it (the file was replaced by the rename).
    pub fn adopt(&mut self, finished: FinishedSnapshot) {
        let position = |s: &FinishedSnapshot| (s.meta.last_index, s.meta.last_term);
        self.snapshots
            .retain(|s| position(s) != position(&finished));
        let at = self
            .snapshots
            .partition_point(|s| position(s) < position(&finished));
        self.snapshots.insert(at, finished);
    }

    /// Removes every snapshot file (valid or damaged) whose last index is below `last_index`,
    /// then fsyncs the directory; returns how many went. Removes nothing unless a valid
    /// snapshot at `last_index` or above is listed, so the newest valid one always stays.
    pub fn remove_older(&mut self, last_index: u64) -> Result<usize, Error> {
        let covered = self
            .snapshots
            .last()
            .is_some_and(|s| last_index <= s.meta.last_index);
        if !covered {
            return Ok(0);
        }
        let mut removed = 0;
        for (path, kind) in list_files(&self.dir)? {
            if let FileKind::Snapshot { last_index: l, .. } = kind
                && l < last_index
            {
                fs::remove_file(&path).map_err(|e| Error::io(&path, "remove snapshot", e))?;
                removed += 1;
            }
        }
        self.snapshots.retain(|s| last_index <= s.meta.last_index);
        if 0 < removed {
            sync_directory(&self.dir)?;
        }
        Ok(removed)
    }

    /// Opens the newest valid snapshot for reading.
    pub fn open_newest(&self) -> Result<Option<SnapshotFile>, Error> {
        self.snapshots
            .last()
            .map(|s| SnapshotFile::open(&s.path))
            .transpose()
    }
}

impl SnapshotFile {
    /// Opens the snapshot file at `path` and checks its header and length (not its chunks:
    /// [`SnapshotFile::image`] verifies those as it reads).
    pub fn open(path: &Path) -> Result<SnapshotFile, Error> {
        let file = File::open(path).map_err(|e| Error::io(path, "open snapshot", e))?;
        let meta = reader::read_meta(path, &file)?;
        Ok(SnapshotFile {
            path: path.to_path_buf(),
            file,
            meta,
        })
    }

    /// The snapshot's header.
    pub fn meta(&self) -> &SnapshotMeta {
        &self.meta
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the whole file: what a transfer to a follower sends.
    #[allow(clippy::expect_used, reason = "the message states the invariant")]
    pub fn file_bytes(&self) -> u64 {
        self.meta
            .file_bytes()
            .expect("invariant: read_meta checked the length against the file")
    }

    /// Reads the file's bytes at `offset` into `buffer` (fewer at the end of the file); returns
    /// how many. The file is the unit of transfer: a follower that writes these bytes at the
    /// same offsets holds a byte-identical file.
    pub fn read_at(&self, offset: u64, buffer: &mut [u8]) -> Result<usize, Error> {
        let rest = self.file_bytes().saturating_sub(offset);
        let count = usize::try_from(rest).map_or(buffer.len(), |rest| rest.min(buffer.len()));
        self.file
            .read_exact_at(&mut buffer[..count], offset)
            .map_err(|e| Error::io(&self.path, "read snapshot", e))?;
        Ok(count)
    }

    /// A reader of the image that verifies every chunk and, at the end, the image checksum.
    pub fn image(&self) -> Result<ImageReader, Error> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io(&self.path, "open snapshot", e))?;
        ImageReader::new(&self.path, file)
    }
}

/// Scans the snapshot files of `dir` without changing anything (rows in `recovery.rs`). With
/// `cluster_id` `None`, any cluster is accepted (the offline tools). A snapshot of another
/// cluster is an [`Error::Corruption`]; damaged snapshots are events, not errors.
pub fn scan_snapshots(dir: &Path, cluster_id: Option<u64>) -> Result<SnapshotScan, Error> {
    let mut scan = SnapshotScan::default();
    let mut snapshots = Vec::new();
    for (path, kind) in list_files(dir)? {
        match kind {
            FileKind::Temp => scan.events.push(event(path, SnapshotSituation::TempFile)),
            FileKind::Partial => scan
                .events
                .push(event(path, SnapshotSituation::PartialInstall)),
            FileKind::Snapshot {
                last_index,
                last_term,
            } => snapshots.push((last_index, last_term, path)),
        }
    }
    snapshots.sort();
    let mut valid = Vec::new();
    for (last_index, last_term, path) in snapshots.into_iter().rev() {
        let full = valid.is_empty();
        let checked = check_snapshot(&path, (last_index, last_term), cluster_id, full);
        match checked {
            Ok(meta) => {
                let situation = if full {
                    SnapshotSituation::Newest
                } else {
                    SnapshotSituation::Older
                };
                scan.events.push(event(path.clone(), situation));
                valid.push((path, meta));
            }
            Err(Error::Corruption {
                path,
                offset,
                reason,
            }) => {
                let situation = if matches!(reason, Corruption::ClusterIdMismatch { .. }) {
                    SnapshotSituation::ForeignCluster
                } else {
                    SnapshotSituation::Damaged
                };
                scan.events.push(SnapshotEvent {
                    path: path.clone(),
                    offset,
                    situation,
                    damage: Some(reason.clone()),
                });
                if situation == SnapshotSituation::ForeignCluster {
                    return Err(Error::corruption(path, offset, reason));
                }
            }
            Err(other) => return Err(other),
        }
    }
    if valid.is_empty() {
        scan.events
            .push(event(dir.to_path_buf(), SnapshotSituation::NoSnapshot));
    }
    valid.reverse();
    scan.snapshots = valid;
    Ok(scan)
}

/// Checks one snapshot: header, length, name, cluster, and with `full` every chunk and the
/// image checksum.
fn check_snapshot(
    path: &Path,
    position: (u64, u64),
    cluster_id: Option<u64>,
    full: bool,
) -> Result<SnapshotMeta, Error> {
    let meta = if full {
        reader::verify_snapshot_file(path)?
    } else {
        SnapshotFile::open(path)?.meta
    };
    if let Some(expected) = cluster_id
        && meta.cluster_id != expected
    {
        let reason = Corruption::ClusterIdMismatch {
            expected,
            found: meta.cluster_id,
        };
        return Err(Error::corruption(path, 16, reason));
    }
    if (meta.last_index, meta.last_term) != position {
        let reason = Corruption::SnapshotNameMismatch {
            last_index: meta.last_index,
            last_term: meta.last_term,
        };
        return Err(Error::corruption(path, 32, reason));
    }
    Ok(meta)
}

fn event(path: PathBuf, situation: SnapshotSituation) -> SnapshotEvent {
    SnapshotEvent {
        path,
        offset: 0,
        situation,
        damage: None,
    }
}

/// The files of `dir` the snapshot store owns, sorted by name.
fn list_files(dir: &Path) -> Result<Vec<(PathBuf, FileKind)>, Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, "read directory", e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, "read directory", e))?;
        let name = entry.file_name();
        let Some(kind) = name.to_str().and_then(format::parse_file_name) else {
            continue;
        };
        files.push((entry.path(), kind));
        if SNAPSHOT_COUNT_MAX < files.len() {
            return Err(Error::InvalidOptions {
                field: "directory",
                problem: format!("more than {SNAPSHOT_COUNT_MAX} snapshot files"),
            });
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}
