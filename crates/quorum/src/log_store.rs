//! The Raft log and vote on disk, in Strom's own files.
//!
//! `raft.log` holds one checked line per entry (see [`crate::files`]),
//! appended and fsynced before openraft hears that an append is durable. A
//! torn or damaged tail (a crash mid-append) is cut off at open: those
//! entries were never reported durable. Truncation (a new leader disagrees)
//! cuts the file at the first removed entry; purging (the entries are in a
//! snapshot) records the purged id first and then rewrites the file with
//! what is left. `vote` and `purged` are atomic checked files; `committed`
//! is one too but is only a hint, written without waiting for the disk, so
//! a restart can apply what it knows was committed before it hears from a
//! leader.
//!
//! The metadata log is small (snapshots keep it so), so entries are also
//! kept in memory and reads never touch the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};

use crate::files::{checked_line, parse_line, read_checked, sync_dir, write_atomic};
use crate::types::{Entry, LogId, StorageError, TypeConfig};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const PURGED_FILE: &str = "purged";

struct Inner {
    dir: PathBuf,
    file: File,
    /// Entries by index, with where each starts in the file.
    entries: BTreeMap<u64, (Entry, u64)>,
    end: u64,
    purged: Option<LogId>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId>,
}

/// The Raft log store; clones share it (the clone openraft reads with).
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<Inner>>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, StorageError> {
    let Some(json) = read_checked(path).map_err(|e| StorageIOError::read(&e))? else {
        return Ok(None);
    };
    serde_json::from_slice(&json)
        .map(Some)
        .map_err(|e| StorageIOError::read(&e).into())
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    write_atomic(
        path,
        &serde_json::to_vec(value).expect("raft state serializes"),
    )
}

/// Whether `dir` holds a Raft log with at least one entry: a quorum was
/// started there before.
pub fn holds_entries(dir: &Path) -> bool {
    std::fs::metadata(dir.join(LOG_FILE)).is_ok_and(|file| file.len() > 0)
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> Result<LogStore, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageIOError::write(&e))?;
        let purged: Option<LogId> = read_json(&dir.join(PURGED_FILE))?;
        let vote = read_json(&dir.join(VOTE_FILE))?;
        // The committed hint is not fsynced: if it is damaged, start without it.
        let committed = read_json(&dir.join(COMMITTED_FILE)).unwrap_or(None);
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| StorageIOError::read_logs(&e))?;
        let mut entries = BTreeMap::new();
        let mut end = 0u64;
        {
            let mut reader = BufReader::new(&mut file);
            reader
                .seek(SeekFrom::Start(0))
                .map_err(|e| StorageIOError::read_logs(&e))?;
            let mut line = Vec::new();
            loop {
                line.clear();
                let read = reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| StorageIOError::read_logs(&e))?;
                let whole = line.last() == Some(&b'\n');
                let entry = whole
                    .then(|| parse_line(&line[..line.len() - 1]))
                    .flatten()
                    .and_then(|json| serde_json::from_slice::<Entry>(json).ok());
                let Some(entry) = entry else {
                    // Only the last line may be cut off: a crash leaves a torn
                    // tail, never a bad line with entries after it. Those
                    // entries were reported durable; dropping them would
                    // silently change what this voter promised.
                    let mut rest = Vec::new();
                    let more = reader
                        .read_until(b'\n', &mut rest)
                        .map_err(|e| StorageIOError::read_logs(&e))?;
                    if read > 0 && more > 0 {
                        let problem = std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!(
                                "{} is damaged at byte {end}, before further entries; restore this node's data directory from a backup, or wipe it and let the node rejoin the quorum (when the other voters hold the log)",
                                path.display()
                            ),
                        );
                        return Err(StorageIOError::read_logs(&problem).into());
                    }
                    if read > 0 {
                        tracing::warn!(
                            path = %path.display(),
                            offset = end,
                            "the metadata Raft log ends in a torn or damaged entry (a crash during an append); cutting it off"
                        );
                    }
                    break;
                };
                let index = entry.log_id.index;
                if purged.is_none_or(|p: LogId| index > p.index) {
                    entries.insert(index, (entry, end));
                }
                end += read as u64;
            }
        }
        if file.metadata().map(|m| m.len()).unwrap_or(end) != end {
            file.set_len(end)
                .and_then(|()| file.sync_all())
                .map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(Inner {
                dir: dir.to_path_buf(),
                file,
                entries,
                end,
                purged,
                vote,
                committed,
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Rewrites the file with the entries in memory (after a purge).
    fn rewrite(&mut self) -> std::io::Result<()> {
        let path = self.dir.join(LOG_FILE);
        let temporary = self.dir.join("raft.log.tmp");
        let mut positions = Vec::with_capacity(self.entries.len());
        let mut end = 0u64;
        {
            let mut out = std::io::BufWriter::new(File::create(&temporary)?);
            for (index, (entry, _)) in &self.entries {
                let line = checked_line(&serde_json::to_vec(entry).expect("entries serialize"));
                out.write_all(&line)?;
                positions.push((*index, end));
                end += line.len() as u64;
            }
            out.flush()?;
            out.get_ref().sync_all()?;
        }
        std::fs::rename(&temporary, &path)?;
        sync_dir(&self.dir)?;
        self.file = OpenOptions::new().read(true).append(true).open(&path)?;
        self.end = end;
        for (index, position) in positions {
            if let Some(slot) = self.entries.get_mut(&index) {
                slot.1 = position;
            }
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(entry, _)| entry.log_id)
            .or(inner.purged);
        Ok(LogState {
            last_purged_log_id: inner.purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_json(&inner.dir.join(VOTE_FILE), vote).map_err(|e| StorageIOError::write_vote(&e))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.committed == committed {
            return Ok(());
        }
        inner.committed = committed;
        // A hint only (see the module docs): written whole, not waited for.
        let path = inner.dir.join(COMMITTED_FILE);
        let temporary = path.with_extension("tmp");
        let json = serde_json::to_vec(&committed).expect("log ids serialize");
        let written = std::fs::write(&temporary, checked_line(&json))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            tracing::warn!(%error, "could not note the committed metadata offset; a restart waits for the leader instead");
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut inner = self.lock();
        let mut bytes = Vec::new();
        let mut added = Vec::new();
        for entry in entries {
            let start = inner.end + bytes.len() as u64;
            bytes.extend_from_slice(&checked_line(
                &serde_json::to_vec(&entry).expect("entries serialize"),
            ));
            added.push((entry, start));
        }
        let written = inner
            .file
            .write_all(&bytes)
            .and_then(|()| inner.file.sync_data());
        if let Err(error) = written {
            // The file may hold part of the batch: cut it back so the log on
            // disk is what memory says, and report the failure (openraft
            // stops this node rather than retrying into an acknowledgement).
            let end = inner.end;
            let _ = inner.file.set_len(end);
            tracing::error!(%error, "writing the metadata Raft log failed");
            callback.log_io_completed(Err(std::io::Error::new(error.kind(), error.to_string())));
            return Err(StorageIOError::write_logs(&error).into());
        }
        inner.end += bytes.len() as u64;
        for (entry, start) in added {
            inner.entries.insert(entry.log_id.index, (entry, start));
        }
        drop(inner);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        let Some((_, start)) = inner
            .entries
            .get(&log_id.index)
            .map(|(e, s)| (e.log_id, *s))
        else {
            return Ok(());
        };
        inner
            .file
            .set_len(start)
            .and_then(|()| inner.file.sync_all())
            .map_err(|e| StorageIOError::write_logs(&e))?;
        inner.end = start;
        inner.entries.split_off(&log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_json(&inner.dir.join(PURGED_FILE), &log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        inner.purged = Some(log_id);
        let keep = inner.entries.split_off(&(log_id.index + 1));
        inner.entries = keep;
        // The purged id is durable, so entries left in the file would be
        // skipped at open; rewriting keeps the file small. A failure stops
        // this node like any other storage error.
        inner
            .rewrite()
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
