//! The local metadata log, in one directory:
//!
//! * `metadata.log` or `metadata-<base>.log`: one record a line,
//!   `<crc32c hex> <json>\n`, appended and fsynced before a change is
//!   acknowledged; its first line is metadata offset `<base>` (0 for
//!   `metadata.log`, the name single-node Strom wrote).
//! * `metadata-<offset>.snapshot`: the image after the first `<offset>`
//!   records, one line `<crc32c hex> <json>\n`.
//!
//! Opening reads the newest snapshot and replays the log after it. A torn
//! last line (a crash mid-append) is cut off; a damaged line anywhere else
//! stops the node, since skipping it would silently change the cluster.
//!
//! Snapshotting ([`MetadataLog::snapshot`]) writes the snapshot (durable
//! before anything depends on it), then starts `metadata-<offset>.log`, then
//! removes the older files. A crash between any two steps leaves a
//! directory that opens to the same image: a log older than the snapshot is
//! read from the snapshot's offset on.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use strom_metadata::{MetadataImage, MetadataRecord};

#[derive(Debug, Error)]
pub enum MetadataLogError {
    #[error("{operation} {}: {source}", path.display())]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata log {} is damaged at line {line}; restore it from a backup or remove the data directory", path.display())]
    Damaged { path: PathBuf, line: usize },
    #[error("metadata in {} starts at offset {base} but no snapshot covers the records before it; restore it from a backup", dir.display())]
    Gap { dir: PathBuf, base: u64 },
    /// An append failed earlier and could not be cut back off: the log takes
    /// no more until the node restarts and reads it again.
    #[error("metadata log {} is offline after a storage error; fix the disk and restart", path.display())]
    Failed { path: PathBuf },
}

/// Records appended since the last snapshot before the log takes a new one.
pub const SNAPSHOT_AFTER_RECORDS: u64 = 20_000;

const LEGACY_LOG: &str = "metadata.log";

pub struct MetadataLog {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// The metadata offset of the log file's first record.
    base: u64,
    /// Records in the log file (from `base`).
    records: u64,
    /// A failed append could not be undone: no more appends.
    failed: bool,
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> MetadataLogError {
    let path = path.to_path_buf();
    move |source| MetadataLogError::Io {
        operation,
        path,
        source,
    }
}

fn line(json: String) -> String {
    format!("{:08x} {json}\n", crc32c::crc32c(json.as_bytes()))
}

fn encode(record: &MetadataRecord) -> String {
    line(serde_json::to_string(record).expect("metadata records always serialize"))
}

fn checked_json(line: &str) -> Option<&str> {
    let (crc, json) = line.split_once(' ')?;
    let crc = u32::from_str_radix(crc, 16).ok()?;
    (crc32c::crc32c(json.as_bytes()) == crc).then_some(json)
}

fn decode(line: &str) -> Option<MetadataRecord> {
    serde_json::from_str(checked_json(line)?).ok()
}

fn log_name(base: u64) -> String {
    format!("metadata-{base:020}.log")
}

fn snapshot_name(offset: u64) -> String {
    format!("metadata-{offset:020}.snapshot")
}

/// Files of the metadata directory by the offset in their name.
type Files = Vec<(u64, PathBuf)>;

/// The files of the metadata directory: logs and snapshots, by offset.
fn list(dir: &Path) -> Result<(Files, Files), MetadataLogError> {
    let (mut logs, mut snapshots) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        let offset = |suffix: &str| {
            name.strip_prefix("metadata-")?
                .strip_suffix(suffix)?
                .parse::<u64>()
                .ok()
        };
        if name == LEGACY_LOG {
            logs.push((0, entry.path()));
        } else if let Some(base) = offset(".log") {
            logs.push((base, entry.path()));
        } else if let Some(at) = offset(".snapshot") {
            snapshots.push((at, entry.path()));
        }
    }
    logs.sort();
    snapshots.sort();
    Ok((logs, snapshots))
}

fn sync_dir(dir: &Path) -> Result<(), MetadataLogError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io("fsync directory", dir))
}

/// Removes what an interrupted snapshot left (`*.tmp`).
fn remove_temporary_files(dir: &Path) -> Result<(), MetadataLogError> {
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))?.flatten() {
        if entry.file_name().to_string_lossy().ends_with(".tmp") {
            std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
        }
    }
    Ok(())
}

/// The newest snapshot that reads whole and intact.
fn load_snapshot(snapshots: &[(u64, PathBuf)]) -> Option<(u64, MetadataImage)> {
    snapshots.iter().rev().find_map(|(offset, path)| {
        let text = std::fs::read_to_string(path).ok()?;
        let image = MetadataImage::from_snapshot(checked_json(text.trim_end())?)?;
        if image.applied != *offset {
            return None;
        }
        Some((*offset, image))
    }).or_else(|| {
        if let Some((_, path)) = snapshots.last() {
            tracing::warn!(path = %path.display(), "metadata snapshot is damaged; replaying the log");
        }
        None
    })
}

impl MetadataLog {
    /// Opens the metadata log in `dir` (creating it) and replays it into an
    /// image: the newest snapshot, then the records after it.
    pub fn open(dir: &Path) -> Result<(MetadataLog, MetadataImage), MetadataLogError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        remove_temporary_files(dir)?;
        let (logs, snapshots) = list(dir)?;
        let (from, mut image) = load_snapshot(&snapshots).unwrap_or_default();
        // The newest log that starts at or before what the snapshot covers;
        // a new one only if there is no log at all.
        if let Some((later, _)) = logs.iter().find(|(base, _)| *base > from) {
            // Records were written after what any readable snapshot covers,
            // in a log that cannot be read without it.
            return Err(MetadataLogError::Gap {
                dir: dir.to_path_buf(),
                base: *later,
            });
        }
        let (base, path) = match logs.iter().rev().find(|(base, _)| *base <= from) {
            Some(found) => found.clone(),
            None if logs.is_empty() => (from, dir.join(log_name(from))),
            None => {
                return Err(MetadataLogError::Gap {
                    dir: dir.to_path_buf(),
                    base: logs[0].0,
                })
            }
        };
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut valid_bytes = 0u64;
        let mut records = 0u64;
        let mut lines = BufReader::new(&file).lines().enumerate().peekable();
        while let Some((number, text)) = lines.next() {
            let text = text.map_err(io("read", &path))?;
            let is_last = lines.peek().is_none();
            match decode(&text) {
                Some(record) => {
                    if base + records >= image.applied {
                        image.apply(&record);
                    }
                    records += 1;
                    valid_bytes += text.len() as u64 + 1;
                }
                None if is_last => {
                    tracing::warn!(path = %path.display(), "cutting off a torn last metadata record");
                }
                None => {
                    return Err(MetadataLogError::Damaged {
                        path: path.to_path_buf(),
                        line: number + 1,
                    })
                }
            }
        }
        if base + records < from {
            // The snapshot is ahead of its log's end: the records it covers
            // were written, so this log is not the one that was appended to.
            return Err(MetadataLogError::Gap {
                dir: dir.to_path_buf(),
                base: base + records,
            });
        }
        let length = file.metadata().map_err(io("stat", &path))?.len();
        if length != valid_bytes {
            file.set_len(valid_bytes).map_err(io("truncate", &path))?;
            file.sync_all().map_err(io("fsync", &path))?;
        }
        sync_dir(dir)?;
        let log = MetadataLog {
            dir: dir.to_path_buf(),
            path,
            file,
            base,
            records,
            failed: false,
        };
        log.remove_older_than(base, from)?;
        Ok((log, image))
    }

    /// Appends records durably: they are on disk when this returns.
    /// A failed append is cut back off (and made durable so), so the
    /// records that were refused never come back at the next start; if even
    /// that fails, the log takes no more appends.
    pub fn append(&mut self, records: &[MetadataRecord]) -> Result<(), MetadataLogError> {
        if self.failed {
            return Err(MetadataLogError::Failed {
                path: self.path.clone(),
            });
        }
        let text: String = records.iter().map(encode).collect();
        let length = self.file.metadata().map_err(io("stat", &self.path))?.len();
        let written = self
            .file
            .write_all(text.as_bytes())
            .map_err(io("write", &self.path))
            .and_then(|()| self.file.sync_data().map_err(io("fsync", &self.path)));
        if let Err(error) = written {
            let undone = self
                .file
                .set_len(length)
                .and_then(|()| self.file.sync_all());
            if undone.is_err() {
                tracing::error!(path = %self.path.display(), "a failed metadata append could not be cut off; the metadata log is offline until a restart");
                self.failed = true;
            }
            return Err(error);
        }
        self.records += records.len() as u64;
        Ok(())
    }

    /// Records in the log since its last snapshot (or its start).
    pub fn records_since_snapshot(&self) -> u64 {
        self.records
    }

    /// Writes a snapshot of `image` (every record of this log applied) and
    /// starts a new log after it, so a restart replays nothing before it.
    pub fn snapshot(&mut self, image: &MetadataImage) -> Result<(), MetadataLogError> {
        let offset = image.applied;
        assert_eq!(offset, self.base + self.records, "the image is the log's");
        let path = self.dir.join(snapshot_name(offset));
        let temporary = self.dir.join(format!("{}.tmp", snapshot_name(offset)));
        let written = std::fs::write(&temporary, line(image.to_snapshot()))
            .and_then(|()| File::open(&temporary)?.sync_all())
            .map_err(io("write", &temporary))
            .and_then(|()| std::fs::rename(&temporary, &path).map_err(io("rename", &path)))
            .and_then(|()| sync_dir(&self.dir));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(error);
        }
        // The snapshot is durable; the old log stays the one appended to
        // until the new one is durable too (an empty log left behind with a
        // base no snapshot reaches would stop the next start).
        let log_path = self.dir.join(log_name(offset));
        let created = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io("create", &log_path))
            .and_then(|file| sync_dir(&self.dir).map(|()| file));
        let file = match created {
            Ok(file) => file,
            Err(error) => {
                if log_path.exists() && std::fs::remove_file(&log_path).is_err() {
                    // An empty log at the snapshot's offset would be read as
                    // the current one: nothing more may go to the old one.
                    tracing::error!(path = %log_path.display(), "could not remove a half-made metadata log; the metadata log is offline until a restart");
                    self.failed = true;
                }
                return Err(error);
            }
        };
        (self.path, self.file, self.base, self.records) = (log_path, file, offset, 0);
        self.remove_older_than(offset, offset)
    }

    /// Removes logs before `base` and snapshots before `snapshot`: the
    /// current files cover everything they held.
    fn remove_older_than(&self, base: u64, snapshot: u64) -> Result<(), MetadataLogError> {
        let (logs, snapshots) = list(&self.dir)?;
        let old_logs = logs.into_iter().filter(|(b, _)| *b < base);
        let old_snapshots = snapshots.into_iter().filter(|(s, _)| *s < snapshot);
        for (_, path) in old_logs.chain(old_snapshots) {
            std::fs::remove_file(&path).map_err(io("remove", &path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(id: &str) -> MetadataRecord {
        MetadataRecord::ClusterCreated {
            cluster_id: id.into(),
        }
    }

    fn config(value: &str) -> MetadataRecord {
        MetadataRecord::BrokerConfigsReplaced {
            node_id: None,
            configs: [("log.retention.ms".to_string(), value.to_string())].into(),
        }
    }

    #[test]
    fn replay_restores_state_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, state) = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(state.applied, 0);
            log.append(&[created("abc")]).unwrap();
        }
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join(log_name(0)))
            .unwrap();
        file.write_all(b"deadbeef {\"type\":\"clus").unwrap();
        drop(file);
        let (_, state) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(state.cluster_id.as_deref(), Some("abc"));
        assert_eq!(state.applied, 1);
        let (_, again) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(again, state);
    }

    #[test]
    fn damage_in_the_middle_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEGACY_LOG), "00000000 {}\n00000000 {}\n").unwrap();
        assert!(matches!(
            MetadataLog::open(dir.path()),
            Err(MetadataLogError::Damaged { line: 1, .. })
        ));
    }

    #[test]
    fn a_single_node_log_is_read_and_snapshots_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        // What single-node Strom wrote.
        std::fs::write(dir.path().join(LEGACY_LOG), encode(&created("old"))).unwrap();
        let (mut log, mut image) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(image.cluster_id.as_deref(), Some("old"));
        let change = config("1");
        log.append(std::slice::from_ref(&change)).unwrap();
        image.apply(&change);
        log.snapshot(&image).unwrap();
        assert!(!dir.path().join(LEGACY_LOG).exists());
        let later = config("2");
        log.append(std::slice::from_ref(&later)).unwrap();
        image.apply(&later);
        drop(log);
        let (log, reopened) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(reopened, image);
        assert_eq!(log.records_since_snapshot(), 1);
    }

    #[test]
    fn a_crash_between_the_snapshot_and_the_new_log_opens_the_same_image() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, mut image) = MetadataLog::open(dir.path()).unwrap();
        for record in [created("c"), config("1"), config("2")] {
            log.append(std::slice::from_ref(&record)).unwrap();
            image.apply(&record);
        }
        drop(log);
        // The snapshot is durable, the new log and the removals never came.
        let mut covered = MetadataImage::default();
        covered.apply(&created("c"));
        covered.apply(&config("1"));
        std::fs::write(
            dir.path().join(snapshot_name(2)),
            line(covered.to_snapshot()),
        )
        .unwrap();
        let (mut log, reopened) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(reopened, image, "the old log is read from the snapshot on");
        // A damaged snapshot is ignored in favour of the whole log.
        log.snapshot(&reopened).unwrap();
        drop(log);
        std::fs::write(dir.path().join(snapshot_name(3)), "00000000 {}\n").unwrap();
        assert!(matches!(
            MetadataLog::open(dir.path()),
            Err(MetadataLogError::Gap { .. })
        ));
    }
}
