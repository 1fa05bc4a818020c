//! One segment: a `.log` file of record batches starting at `base_offset`,
//! with its sparse offset and time indexes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader, HEADER_SIZE};
use crate::error::LogError;
use crate::files::FileCache;
use crate::index::{self, OffsetEntry, TimeEntry};
use crate::txn_index::{self, AbortedTxn};

/// File names of a segment: the base offset as 20 zero-padded digits, as in Kafka.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Parses `00000000000000001234.log` into 1234.
pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Positional write through the file cache.
fn write_at(files: &FileCache, path: &Path, bytes: &[u8], at: u64) -> Result<(), LogError> {
    files
        .get(path)
        .map_err(|e| LogError::io("open", path, e))?
        .write_all_at(bytes, at)
        .map_err(|e| LogError::io("write", path, e))
}

/// Forgets the cached handle of `path` and deletes the file if it exists.
fn remove_if_exists(files: &FileCache, path: &Path) -> Result<(), LogError> {
    files.forget(path);
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LogError::io("delete", path, e)),
    }
}

/// Where a batch lives inside a segment file.
#[derive(Debug, Clone, Copy)]
pub struct BatchPosition {
    pub header: BatchHeader,
    pub position: u64,
}

pub struct Segment {
    pub base_offset: i64,
    pub log_path: PathBuf,
    offset_index_path: PathBuf,
    time_index_path: PathBuf,
    txn_index_path: PathBuf,
    /// Bytes of valid batches in the `.log` file.
    pub size: u64,
    /// Offset after the last batch (the base offset when empty).
    pub next_offset: i64,
    offset_index: Vec<OffsetEntry>,
    time_index: Vec<TimeEntry>,
    /// Transactions whose abort marker is in this segment, in marker order.
    aborted: Vec<AbortedTxn>,
    bytes_since_index_entry: u64,
    /// Largest batch max timestamp seen in the segment, -1 when empty.
    pub max_timestamp: i64,
    /// Base offset of the batch that carries `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// When the segment was created (or first opened), for `segment.ms`.
    pub created_ms: i64,
}

impl Segment {
    fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        let stem = file_stem(base_offset);
        (
            dir.join(format!("{stem}.log")),
            dir.join(format!("{stem}.index")),
            dir.join(format!("{stem}.timeindex")),
        )
    }

    fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
        txn_index::path(dir, &file_stem(base_offset))
    }

    /// Creates an empty segment, truncating any leftovers with the same name.
    pub fn create(
        dir: &Path,
        base_offset: i64,
        files: &FileCache,
        now_ms: i64,
    ) -> Result<Segment, LogError> {
        let (log_path, offset_index_path, time_index_path) = Segment::paths(dir, base_offset);
        let txn_index_path = Segment::txn_index_path(dir, base_offset);
        remove_if_exists(files, &txn_index_path)?;
        for path in [&log_path, &offset_index_path, &time_index_path] {
            let file = files
                .get(path)
                .map_err(|e| LogError::io("create", path, e))?;
            file.set_len(0)
                .map_err(|e| LogError::io("truncate", path, e))?;
        }
        Ok(Segment {
            base_offset,
            log_path,
            offset_index_path,
            time_index_path,
            txn_index_path,
            size: 0,
            next_offset: base_offset,
            offset_index: Vec::new(),
            time_index: Vec::new(),
            aborted: Vec::new(),
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms: now_ms,
        })
    }

    /// Opens an existing segment.
    ///
    /// A sealed segment (`next_offset_hint` is the next segment's base
    /// offset) is trusted up to its file size if its indexes load cleanly;
    /// otherwise it is scanned. The active segment (`next_offset_hint` is
    /// `None`) is always validated by CRC from its last offset index entry
    /// (`full_scan` = false, after a clean shutdown) or from its start (after
    /// a crash), and truncated at the first invalid batch.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        files: &FileCache,
        next_offset_hint: Option<i64>,
        full_scan: bool,
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> Result<Segment, LogError> {
        let (log_path, offset_index_path, time_index_path) = Segment::paths(dir, base_offset);
        let log_file = files
            .get(&log_path)
            .map_err(|e| LogError::io("open", &log_path, e))?;
        let file_size = log_file
            .metadata()
            .map_err(|e| LogError::io("stat", &log_path, e))?
            .len();
        let offset_file = files
            .get(&offset_index_path)
            .map_err(|e| LogError::io("open", &offset_index_path, e))?;
        let offset_index = index::load_offset_index(&offset_file, file_size)
            .map_err(|e| LogError::io("read", &offset_index_path, e))?;
        let time_file = files
            .get(&time_index_path)
            .map_err(|e| LogError::io("open", &time_index_path, e))?;
        let time_index = index::load_time_index(&time_file)
            .map_err(|e| LogError::io("read", &time_index_path, e))?;

        let mut segment = Segment {
            base_offset,
            log_path,
            offset_index_path,
            time_index_path,
            txn_index_path: Segment::txn_index_path(dir, base_offset),
            size: file_size,
            next_offset: next_offset_hint.unwrap_or(base_offset),
            offset_index: Vec::new(),
            time_index: Vec::new(),
            aborted: Vec::new(),
            bytes_since_index_entry: 0,
            max_timestamp: -1,
            offset_of_max_timestamp: base_offset,
            created_ms: now_ms,
        };
        let sealed = next_offset_hint.is_some();
        match (offset_index, time_index) {
            (Some(offsets), Some(times)) if sealed && (file_size == 0 || !times.is_empty()) => {
                if let Some(last) = times.last() {
                    segment.max_timestamp = last.timestamp;
                    segment.offset_of_max_timestamp = base_offset + last.relative_offset as i64;
                }
                segment.offset_index = offsets;
                segment.time_index = times;
            }
            (Some(offsets), Some(times)) if !full_scan => {
                // Clean shutdown of the active segment: trust the indexes and
                // validate the batches after the last offset index entry.
                let start = offsets.last().copied();
                segment.offset_index = offsets;
                segment.time_index = times;
                let (position, offset) = match start {
                    Some(entry) => (
                        entry.position as u64,
                        base_offset + entry.relative_offset as i64,
                    ),
                    None => (0, base_offset),
                };
                segment.recover_from(&log_file, position, offset, index_interval_bytes, files)?;
            }
            _ => {
                segment.rebuild(&log_file, index_interval_bytes, files)?;
            }
        }
        if !sealed {
            if let Some(first) = segment.read_header_at(&log_file, 0)? {
                segment.created_ms = first.max_timestamp.max(0).min(now_ms);
            }
        }
        segment.load_aborted(files)?;
        Ok(segment)
    }

    /// Loads the `.txnindex` entries that still point into the segment.
    fn load_aborted(&mut self, files: &FileCache) -> Result<(), LogError> {
        let path = &self.txn_index_path;
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LogError::io("open", path, e)),
        };
        self.aborted = txn_index::load(&file, self.base_offset, self.next_offset)
            .map_err(|e| LogError::io("read", path, e))?;
        let file_size = file
            .metadata()
            .map_err(|e| LogError::io("stat", path, e))?
            .len();
        if file_size != (self.aborted.len() * txn_index::ENTRY_SIZE) as u64 {
            // Entries past a truncated tail must not be appended after.
            self.rewrite_txn_index(files)?;
        }
        Ok(())
    }

    /// Makes the `.txnindex` file durable, if the segment has one.
    pub fn sync_aborted(&self, files: &FileCache) -> Result<(), LogError> {
        if self.aborted.is_empty() {
            return Ok(());
        }
        let path = &self.txn_index_path;
        files
            .get(path)
            .and_then(|file| file.sync_data())
            .map_err(|e| LogError::io("fsync", path, e))
    }

    /// The aborted transactions whose markers are in this segment.
    pub fn aborted(&self) -> &[AbortedTxn] {
        &self.aborted
    }

    /// Adds an aborted transaction whose marker is in this segment. Appends
    /// to the file in the usual case; an entry that is already there (a
    /// replay after restart) is ignored, and one that belongs earlier (a
    /// crash lost it) rewrites the file.
    /// Returns whether the file changed.
    pub fn add_aborted(&mut self, files: &FileCache, entry: AbortedTxn) -> Result<bool, LogError> {
        match self
            .aborted
            .binary_search_by_key(&entry.last_offset, |known| known.last_offset)
        {
            Ok(_) => Ok(false),
            Err(at) if at == self.aborted.len() => {
                let position = (at * txn_index::ENTRY_SIZE) as u64;
                write_at(files, &self.txn_index_path, &entry.encode(), position)?;
                self.aborted.push(entry);
                Ok(true)
            }
            Err(at) => {
                self.aborted.insert(at, entry);
                self.rewrite_txn_index(files).map(|()| true)
            }
        }
    }

    fn rewrite_txn_index(&self, files: &FileCache) -> Result<(), LogError> {
        let path = &self.txn_index_path;
        // Written over in place, then cut to length: a crash in between
        // leaves a longer file whose stale tail the loader drops, never an
        // empty one.
        let bytes = txn_index::encode_all(&self.aborted);
        write_at(files, path, &bytes, 0)?;
        let file = files.get(path).map_err(|e| LogError::io("open", path, e))?;
        file.set_len(bytes.len() as u64)
            .map_err(|e| LogError::io("truncate", path, e))
    }

    /// Throws the indexes away and rebuilds them by validating every batch.
    fn rebuild(
        &mut self,
        log_file: &File,
        index_interval_bytes: u64,
        files: &FileCache,
    ) -> Result<(), LogError> {
        self.offset_index.clear();
        self.time_index.clear();
        for path in [&self.offset_index_path, &self.time_index_path] {
            let file = files.get(path).map_err(|e| LogError::io("open", path, e))?;
            file.set_len(0)
                .map_err(|e| LogError::io("truncate", path, e))?;
        }
        self.recover_from(log_file, 0, self.base_offset, index_interval_bytes, files)
    }

    /// Validates batches from `position` (where offset `offset` starts) to the
    /// end of the file, re-adding index entries for them, and truncates the
    /// file at the first torn or corrupt batch.
    fn recover_from(
        &mut self,
        log_file: &File,
        mut position: u64,
        offset: i64,
        index_interval_bytes: u64,
        files: &FileCache,
    ) -> Result<(), LogError> {
        let file_size = log_file
            .metadata()
            .map_err(|e| LogError::io("stat", &self.log_path, e))?
            .len();
        // Index entries at or past the resume point are re-added below.
        let resume_relative = (offset - self.base_offset) as u32;
        self.offset_index
            .retain(|entry| entry.relative_offset < resume_relative);
        self.time_index
            .retain(|entry| entry.relative_offset < resume_relative);
        self.rewrite_index_files(files)?;
        self.max_timestamp = self.time_index.last().map_or(-1, |entry| entry.timestamp);
        self.offset_of_max_timestamp = self.time_index.last().map_or(self.base_offset, |entry| {
            self.base_offset + entry.relative_offset as i64
        });
        self.size = position;
        self.next_offset = offset;
        self.bytes_since_index_entry = 0;
        let mut buffer = Vec::new();
        while position < file_size {
            match self.validate_batch_at(log_file, position, file_size, &mut buffer)? {
                Some(header) if header.base_offset >= self.next_offset => {
                    let size = header.total_size() as u64;
                    self.size = position + size;
                    self.next_offset = header.next_offset();
                    self.note_appended(&header, position, index_interval_bytes, files)?;
                    position += size;
                }
                _ => break,
            }
        }
        if self.size < file_size {
            tracing::warn!(
                segment = %self.log_path.display(),
                valid_bytes = self.size,
                file_bytes = file_size,
                "truncating torn or corrupt tail of segment"
            );
            log_file
                .set_len(self.size)
                .map_err(|e| LogError::io("truncate", &self.log_path, e))?;
            log_file
                .sync_all()
                .map_err(|e| LogError::io("fsync", &self.log_path, e))?;
        }
        Ok(())
    }

    /// Reads and fully validates the batch at `position`; `None` if it is torn or corrupt.
    fn validate_batch_at(
        &self,
        log_file: &File,
        position: u64,
        file_size: u64,
        buffer: &mut Vec<u8>,
    ) -> Result<Option<BatchHeader>, LogError> {
        let Some(header) = self.read_header_at(log_file, position)? else {
            return Ok(None);
        };
        let size = header.total_size() as u64;
        if position + size > file_size {
            return Ok(None);
        }
        buffer.resize(size as usize, 0);
        log_file
            .read_exact_at(buffer, position)
            .map_err(|e| LogError::io("read", &self.log_path, e))?;
        Ok(batch::validate(buffer, false).ok())
    }

    /// Reads the batch header at `position`; `None` past the end or if the header is malformed.
    pub fn read_header_at(
        &self,
        log_file: &File,
        position: u64,
    ) -> Result<Option<BatchHeader>, LogError> {
        let mut bytes = [0u8; HEADER_SIZE];
        match log_file.read_exact_at(&mut bytes, position) {
            Ok(()) => Ok(BatchHeader::parse(&bytes).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(LogError::io("read", &self.log_path, e)),
        }
    }

    fn rewrite_index_files(&self, files: &FileCache) -> Result<(), LogError> {
        let offsets: Vec<u8> = self
            .offset_index
            .iter()
            .flat_map(|entry| index::encode_offset_entry(*entry))
            .collect();
        let times: Vec<u8> = self
            .time_index
            .iter()
            .flat_map(|entry| index::encode_time_entry(*entry))
            .collect();
        for (path, bytes) in [
            (&self.offset_index_path, offsets),
            (&self.time_index_path, times),
        ] {
            let file = files.get(path).map_err(|e| LogError::io("open", path, e))?;
            file.set_len(0)
                .and_then(|()| file.write_all_at(&bytes, 0))
                .map_err(|e| LogError::io("write", path, e))?;
        }
        Ok(())
    }

    /// Appends one batch whose base offset and epoch are already patched.
    pub fn append(
        &mut self,
        files: &FileCache,
        bytes: &[u8],
        header: &BatchHeader,
        index_interval_bytes: u64,
    ) -> Result<u64, LogError> {
        assert!(header.base_offset >= self.next_offset, "offsets must grow");
        let file = files
            .get(&self.log_path)
            .map_err(|e| LogError::io("open", &self.log_path, e))?;
        let position = self.size;
        file.write_all_at(bytes, position)
            .map_err(|e| LogError::io("write", &self.log_path, e))?;
        self.size += bytes.len() as u64;
        self.next_offset = header.next_offset();
        self.note_appended(header, position, index_interval_bytes, files)?;
        Ok(position)
    }

    /// Updates the in-memory state and indexes after a batch at `position` became valid.
    fn note_appended(
        &mut self,
        header: &BatchHeader,
        position: u64,
        index_interval_bytes: u64,
        files: &FileCache,
    ) -> Result<(), LogError> {
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.base_offset;
        }
        self.bytes_since_index_entry += header.total_size() as u64;
        if self.bytes_since_index_entry >= index_interval_bytes {
            self.bytes_since_index_entry = 0;
            let relative_offset = (header.base_offset - self.base_offset) as u32;
            let is_new = self
                .offset_index
                .last()
                .is_none_or(|last| last.relative_offset < relative_offset);
            if is_new && position > 0 {
                self.push_offset_entry(
                    files,
                    OffsetEntry {
                        relative_offset,
                        position: position as u32,
                    },
                )?;
            }
            self.maybe_push_time_entry(files)?;
        }
        Ok(())
    }

    fn push_offset_entry(&mut self, files: &FileCache, entry: OffsetEntry) -> Result<(), LogError> {
        let at = (self.offset_index.len() * index::OFFSET_ENTRY_SIZE) as u64;
        write_at(
            files,
            &self.offset_index_path,
            &index::encode_offset_entry(entry),
            at,
        )?;
        self.offset_index.push(entry);
        Ok(())
    }

    /// Records the segment's current maximum timestamp in the time index if it grew.
    fn maybe_push_time_entry(&mut self, files: &FileCache) -> Result<(), LogError> {
        if self.max_timestamp < 0
            || self
                .time_index
                .last()
                .is_some_and(|last| last.timestamp >= self.max_timestamp)
        {
            return Ok(());
        }
        let entry = TimeEntry {
            timestamp: self.max_timestamp,
            relative_offset: (self.offset_of_max_timestamp - self.base_offset) as u32,
        };
        let at = (self.time_index.len() * index::TIME_ENTRY_SIZE) as u64;
        write_at(
            files,
            &self.time_index_path,
            &index::encode_time_entry(entry),
            at,
        )?;
        self.time_index.push(entry);
        Ok(())
    }

    /// Makes the segment immutable: records its final maximum timestamp and
    /// makes the log and both indexes durable.
    pub fn seal(&mut self, files: &FileCache) -> Result<(), LogError> {
        self.maybe_push_time_entry(files)?;
        for path in [
            &self.log_path,
            &self.offset_index_path,
            &self.time_index_path,
        ] {
            files
                .get(path)
                .and_then(|file| file.sync_data())
                .map_err(|e| LogError::io("fsync", path, e))?;
        }
        self.sync_aborted(files)
    }

    pub fn log_file(&self, files: &FileCache) -> Result<Arc<File>, LogError> {
        files
            .get(&self.log_path)
            .map_err(|e| LogError::io("open", &self.log_path, e))
    }

    /// Finds the first batch whose last offset is at least `offset`, by
    /// index lookup and a short scan of headers.
    pub fn find_batch(
        &self,
        log_file: &File,
        offset: i64,
    ) -> Result<Option<BatchPosition>, LogError> {
        let relative = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let mut position = index::lookup_position(&self.offset_index, relative) as u64;
        while position < self.size {
            let Some(header) = self.read_header_at(log_file, position)? else {
                return Err(LogError::Corrupt {
                    path: self.log_path.clone(),
                    position,
                });
            };
            if header.last_offset() >= offset {
                return Ok(Some(BatchPosition { header, position }));
            }
            position += header.total_size() as u64;
        }
        Ok(None)
    }

    /// Finds the first batch whose max timestamp is at least `timestamp`.
    pub fn find_batch_by_timestamp(
        &self,
        log_file: &File,
        timestamp: i64,
    ) -> Result<Option<BatchPosition>, LogError> {
        let relative = index::lookup_time(&self.time_index, timestamp);
        let start = self.find_batch(log_file, self.base_offset + relative as i64)?;
        let Some(mut found) = start else {
            return Ok(None);
        };
        loop {
            if found.header.max_timestamp >= timestamp {
                return Ok(Some(found));
            }
            let position = found.position + found.header.total_size() as u64;
            if position >= self.size {
                return Ok(None);
            }
            match self.read_header_at(log_file, position)? {
                Some(header) => found = BatchPosition { header, position },
                None => {
                    return Err(LogError::Corrupt {
                        path: self.log_path.clone(),
                        position,
                    })
                }
            }
        }
    }

    /// The `.log` file of the segment at `base_offset` was replaced (a
    /// committed cleaning): its cached handles go, and its indexes are
    /// deleted so that the next open rebuilds them from the new content.
    pub fn content_replaced(
        dir: &Path,
        base_offset: i64,
        files: &FileCache,
    ) -> Result<(), LogError> {
        let (log_path, offset_index_path, time_index_path) = Segment::paths(dir, base_offset);
        files.forget(&log_path);
        remove_if_exists(files, &offset_index_path)?;
        remove_if_exists(files, &time_index_path)
    }

    /// Deletes the segment's files.
    pub fn delete_files(&self, files: &FileCache) -> Result<(), LogError> {
        for path in [
            &self.log_path,
            &self.offset_index_path,
            &self.time_index_path,
            &self.txn_index_path,
        ] {
            remove_if_exists(files, path)?;
        }
        Ok(())
    }

    /// Cuts the segment back so that it ends before `offset`; `offset` must
    /// fall on a batch boundary inside the segment or past its end.
    pub fn truncate_to(&mut self, files: &FileCache, offset: i64) -> Result<(), LogError> {
        let log_file = self.log_file(files)?;
        let position = match self.find_batch(&log_file, offset)? {
            Some(found) if found.header.base_offset >= offset => found.position,
            Some(found) => {
                // The batch straddles `offset`: the whole batch goes.
                found.position
            }
            None => return Ok(()),
        };
        log_file
            .set_len(position)
            .map_err(|e| LogError::io("truncate", &self.log_path, e))?;
        self.size = position;
        let relative = (offset - self.base_offset).max(0) as u32;
        self.offset_index
            .retain(|entry| (entry.position as u64) < position && entry.relative_offset < relative);
        self.time_index
            .retain(|entry| entry.relative_offset < relative);
        self.rewrite_index_files(files)?;
        if self.aborted.iter().any(|entry| entry.last_offset >= offset) {
            self.aborted.retain(|entry| entry.last_offset < offset);
            self.rewrite_txn_index(files)?;
        }
        // Recompute the tail state by walking what is left after the last index entry.
        let resume = self.offset_index.last().copied();
        let (start, start_offset) = match resume {
            Some(entry) => (
                entry.position as u64,
                self.base_offset + entry.relative_offset as i64,
            ),
            None => (0, self.base_offset),
        };
        self.recover_from(&log_file, start, start_offset, u64::MAX, files)
    }
}
