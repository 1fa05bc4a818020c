//! The partition log: an ordered set of segments with a log start offset and
//! a log end offset.
//!
//! A `Log` is not thread-safe; the broker wraps each one in a lock. Slow
//! work (copying fetched bytes, fsync) is done outside that lock on the
//! `Arc<File>` handles that [`Log::read`] and [`Log::flush_target`] return.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{self, BatchHeader};
use crate::cleaner::{self, CleanPlan, CleanerConfig, PlannedSegment};
use crate::error::LogError;
use crate::files::FileCache;
use crate::leader_epoch::{self, LeaderEpochCache};
use crate::segment::{self, Segment};
use crate::txn_index::AbortedTxn;

/// Per-log settings, Kafka's topic configs of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll once the active segment would grow past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once the active segment is this old.
    pub segment_ms: i64,
    /// `index.interval.bytes`: bytes between two index entries.
    pub index_interval_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
        }
    }
}

/// How much to distrust the files found at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// The previous process shut down cleanly: validate the active segment
    /// from its last index entry.
    Clean,
    /// The previous process crashed: validate the whole active segment.
    Unclean,
}

#[derive(Debug, Clone, Copy)]
pub struct AppendOptions {
    /// Written into the batch's partition leader epoch field.
    pub leader_epoch: i32,
    /// `Some(now)` for LogAppendTime topics: the batch's timestamp is replaced.
    pub log_append_time_ms: Option<i64>,
    /// The broker's clock, for `segment.ms`.
    pub now_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The timestamp the broker assigned, or -1 for CreateTime.
    pub log_append_time_ms: i64,
    /// The batch's header as written (offsets and epoch patched).
    pub header: BatchHeader,
}

/// A byte range of one segment file holding whole batches.
#[derive(Debug, Clone)]
pub struct ReadSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub length: usize,
    /// Base offset of the first batch in the range.
    pub first_batch_offset: i64,
    /// Offset after the last batch in the range.
    pub next_offset: i64,
}

impl ReadSlice {
    /// Copies the range into memory (a page-cache read).
    pub fn read(&self) -> std::io::Result<Vec<u8>> {
        let mut bytes = vec![0u8; self.length];
        self.file.read_exact_at(&mut bytes, self.position)?;
        Ok(bytes)
    }
}

/// What to fsync to make everything up to `offset` durable.
pub struct FlushTarget {
    pub file: Arc<File>,
    pub offset: i64,
    path: PathBuf,
}

impl FlushTarget {
    /// Blocking fdatasync. Call outside the log's lock.
    pub fn sync(&self) -> Result<(), LogError> {
        self.file
            .sync_data()
            .map_err(|e| LogError::io("fsync", &self.path, e))
    }
}

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    files: FileCache,
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    flushed_offset: i64,
    /// The oldest tombstone the last cleaning had to keep (in memory only).
    oldest_kept_tombstone_ms: Option<i64>,
    /// Where each leader epoch began; see [`crate::leader_epoch`].
    epochs: LeaderEpochCache,
    /// The storage error that took this log offline, if one did.
    failed: Option<String>,
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|e| LogError::io("fsync directory", dir, e))
}

impl Log {
    /// Opens (or creates) the log in `dir`, recovering as `recovery` says.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        files: FileCache,
        recovery: Recovery,
        now_ms: i64,
    ) -> Result<Log, LogError> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).map_err(|e| LogError::io("create directory", dir, e))?;
        if created {
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        // A cleaning a crash interrupted is finished or abandoned first.
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| LogError::io("list", dir, e))? {
            let entry = entry.map_err(|e| LogError::io("list", dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        // Swapping in a committed cleaning renames over existing `.log`
        // files, so the listing stays true for the segments below.
        finish_cleaning(dir, &files, &names)?;
        let mut base_offsets: Vec<i64> = names
            .iter()
            .filter_map(|name| segment::parse_log_file_name(name))
            .collect();
        base_offsets.sort_unstable();

        let mut segments = BTreeMap::new();
        for (index, base) in base_offsets.iter().enumerate() {
            let next_base = base_offsets.get(index + 1).copied();
            let segment = Segment::open(
                dir,
                *base,
                &files,
                next_base,
                recovery == Recovery::Unclean,
                config.index_interval_bytes,
                now_ms,
            )?;
            segments.insert(*base, segment);
        }
        if segments.is_empty() {
            let segment = Segment::create(dir, 0, &files, now_ms)?;
            segments.insert(0, segment);
            sync_dir(dir)?;
        }
        let first_base = *segments.keys().next().expect("at least one segment");
        let log_start_offset = read_log_start_checkpoint(dir)?
            .unwrap_or(first_base)
            .max(first_base);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            files,
            segments,
            log_start_offset,
            flushed_offset: 0,
            oldest_kept_tombstone_ms: None,
            epochs: LeaderEpochCache::default(),
            failed: None,
        };
        log.flushed_offset = log.log_end_offset();
        let end = log.log_end_offset();
        if log.log_start_offset > end {
            // A crash took records the start had moved past: start at the end.
            log.log_start_offset = end;
            write_log_start_checkpoint(dir, end)?;
        }
        log.recover_epochs()?;
        Ok(log)
    }

    /// Rebuilds the leader-epoch cache: the checkpoint's entries below the
    /// log end, then the epochs of the batches it does not cover.
    fn recover_epochs(&mut self) -> Result<(), LogError> {
        let end = self.log_end_offset();
        let first = self.first_segment_base_offset();
        let (mut epochs, covered) = match LeaderEpochCache::load(&self.dir) {
            Some((epochs, covered)) if covered <= end => (epochs, covered),
            Some(_) => {
                // Records the checkpoint covered are gone (they were never
                // durable after all): nothing in it can be trusted.
                tracing::warn!(log = %self.dir.display(), "leader epoch checkpoint covers records the log no longer has; rebuilding it");
                let path = self.dir.join(leader_epoch::FILE_NAME);
                std::fs::remove_file(&path).map_err(|e| LogError::io("remove", &path, e))?;
                (LeaderEpochCache::default(), first)
            }
            None => (LeaderEpochCache::default(), first),
        };
        // The checkpoint lists every epoch it knew, also those that began
        // past what it covers; the batches from `covered` on say again which
        // of those the log still holds, so they are replayed, not trusted
        // (an older epoch replayed after a newer entry would wipe entries).
        epochs.truncate_from_end(end.min(covered + 1));
        self.for_each_batch_header(covered, |header, _| {
            if header.partition_leader_epoch >= 0 {
                epochs.assign(header.partition_leader_epoch, header.base_offset);
            }
        })?;
        epochs.truncate_from_start(self.log_start_offset);
        self.epochs = epochs;
        Ok(())
    }

    /// The leader epochs this log has seen and where each began.
    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Starts leader epoch `epoch` at the log end (a leader taking over);
    /// batches it appends carry it.
    pub fn assign_leader_epoch(&mut self, epoch: i32) {
        let end = self.log_end_offset();
        self.epochs.assign(epoch, end);
    }

    /// OffsetForLeaderEpoch: the largest epoch at or below `epoch` and the
    /// offset where it ended (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// Writes the leader-epoch checkpoint covering the log up to its flushed
    /// offset, without fsyncing it (clean shutdown, after the last flush,
    /// makes it durable with everything else).
    pub fn write_epoch_checkpoint(&self) -> Result<(), LogError> {
        self.write_epochs(false)
    }

    fn write_epochs(&self, sync: bool) -> Result<(), LogError> {
        let path = self.dir.join(leader_epoch::FILE_NAME);
        let temporary = self.dir.join(format!("{}.tmp", leader_epoch::FILE_NAME));
        // Covers only what is durable: a crash may take the rest, and the
        // records written there next may carry other epochs.
        let text = self.epochs.encode(self.flushed_offset);
        std::fs::write(&temporary, text)
            .and_then(|()| match sync {
                true => File::open(&temporary)?.sync_all(),
                false => Ok(()),
            })
            .map_err(|e| LogError::io("write", &temporary, e))?;
        std::fs::rename(&temporary, &path).map_err(|e| LogError::io("rename", &path, e))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> LogConfig {
        self.config
    }

    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The first offset a consumer can read.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// The offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Every offset below this is on stable storage.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }

    /// Total bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|segment| segment.size).sum()
    }

    /// Base offset of the oldest segment still on disk.
    pub fn first_segment_base_offset(&self) -> i64 {
        *self
            .segments
            .keys()
            .next()
            .expect("a log always has a segment")
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .values_mut()
            .next_back()
            .expect("a log always has an active segment")
    }

    /// Appends one batch, which the caller has validated with
    /// [`batch::validate`]. Patches its base offset, leader epoch and, for
    /// LogAppendTime, its timestamp; returns the offsets it was given.
    pub fn append(
        &mut self,
        bytes: &mut [u8],
        options: AppendOptions,
    ) -> Result<AppendInfo, LogError> {
        self.check_online()?;
        let appended = self.append_online(bytes, options);
        if let Err(error @ (LogError::Io { .. } | LogError::Corrupt { .. })) = &appended {
            self.fail(&error.to_string());
        }
        appended
    }

    /// Appends batches exactly as the partition's leader wrote them (a
    /// follower's fetch): their base offsets, leader epochs and timestamps
    /// stay; none may start below the log end offset (above it is a gap the
    /// leader's compaction left). The leader-epoch cache
    /// learns the epochs the batches carry. Checks every batch's CRC, so a
    /// batch damaged on its way is refused, not stored.
    pub fn append_replicated(
        &mut self,
        bytes: &[u8],
        now_ms: i64,
    ) -> Result<Vec<AppendInfo>, LogError> {
        self.check_online()?;
        // Every batch checked before any is written: a fetched chunk is
        // stored whole or not at all.
        let mut batches = Vec::new();
        let mut rest = bytes;
        let mut expected = self.log_end_offset();
        while !rest.is_empty() {
            let size = BatchHeader::parse(rest)?.total_size();
            if size > rest.len() {
                return Err(LogError::InvalidBatch(batch::BatchError::Truncated {
                    available: rest.len(),
                    needed: size,
                }));
            }
            let (one, tail) = rest.split_at(size);
            rest = tail;
            let header = batch::validate(one, false)?;
            // A gap is legal: compaction on the leader removes whole batches.
            if header.base_offset < expected {
                return Err(LogError::NotContiguous {
                    expected,
                    got: header.base_offset,
                });
            }
            expected = header.next_offset();
            batches.push((one, header));
        }
        let mut appended = Vec::with_capacity(batches.len());
        for (one, header) in batches {
            let written = self.maybe_roll(&header, now_ms).and_then(|()| {
                let interval = self.config.index_interval_bytes;
                let files = self.files.clone();
                self.active_mut().append(&files, one, &header, interval)
            });
            if let Err(error) = written {
                if matches!(error, LogError::Io { .. } | LogError::Corrupt { .. }) {
                    self.fail(&error.to_string());
                }
                return Err(error);
            }
            if header.partition_leader_epoch >= 0 {
                self.epochs
                    .assign(header.partition_leader_epoch, header.base_offset);
            }
            appended.push(AppendInfo {
                base_offset: header.base_offset,
                last_offset: header.last_offset(),
                log_append_time_ms: -1,
                header,
            });
        }
        Ok(appended)
    }

    /// Takes the log offline after a storage error: no more writes or
    /// fsyncs until it is opened again.
    pub fn fail(&mut self, reason: &str) {
        if self.failed.is_none() {
            tracing::error!(log = %self.dir.display(), reason, "storage error: the partition is offline until the broker restarts");
            self.failed = Some(reason.to_string());
        }
    }

    /// Whether a storage error took the log offline.
    pub fn is_offline(&self) -> bool {
        self.failed.is_some()
    }

    fn check_online(&self) -> Result<(), LogError> {
        match &self.failed {
            None => Ok(()),
            Some(reason) => Err(LogError::Failed {
                path: self.dir.clone(),
                reason: reason.clone(),
            }),
        }
    }

    fn append_online(
        &mut self,
        bytes: &mut [u8],
        options: AppendOptions,
    ) -> Result<AppendInfo, LogError> {
        let header = BatchHeader::parse(bytes)?;
        assert_eq!(
            header.total_size(),
            bytes.len(),
            "append takes one whole batch"
        );
        let base_offset = self.log_end_offset();
        batch::set_base_offset(bytes, base_offset);
        batch::set_partition_leader_epoch(bytes, options.leader_epoch);
        if let Some(now) = options.log_append_time_ms {
            batch::set_log_append_time(bytes, now);
        }
        let header = BatchHeader::parse(bytes)?;
        debug_assert!(batch::validate(bytes, false).is_ok());
        self.maybe_roll(&header, options.now_ms)?;
        let interval = self.config.index_interval_bytes;
        let files = self.files.clone();
        self.active_mut().append(&files, bytes, &header, interval)?;
        assert_eq!(self.log_end_offset(), header.next_offset());
        if options.leader_epoch >= 0 {
            self.epochs.assign(options.leader_epoch, base_offset);
        }
        Ok(AppendInfo {
            base_offset,
            last_offset: header.last_offset(),
            log_append_time_ms: options.log_append_time_ms.unwrap_or(-1),
            header,
        })
    }

    fn maybe_roll(&mut self, header: &BatchHeader, now_ms: i64) -> Result<(), LogError> {
        let active = self.active();
        if active.size == 0 {
            return Ok(());
        }
        let too_big = active.size + header.total_size() as u64 > self.config.segment_bytes;
        let too_old = now_ms - active.created_ms >= self.config.segment_ms;
        let offsets_overflow = header.last_offset() - active.base_offset > i32::MAX as i64;
        if too_big || too_old || offsets_overflow {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Seals the active segment and starts a new one at the log end offset.
    pub fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        self.check_online()?;
        let files = self.files.clone();
        let next_offset = self.log_end_offset();
        if self.active().size == 0 {
            return Ok(());
        }
        self.active_mut().seal(&files)?;
        self.flushed_offset = self.flushed_offset.max(next_offset);
        // Covers the sealed segments, so a crash reads only the new one's headers.
        self.write_epochs(true)?;
        let segment = Segment::create(&self.dir, next_offset, &files, now_ms)?;
        sync_dir(&self.dir)?;
        self.segments.insert(next_offset, segment);
        tracing::debug!(log = %self.dir.display(), base_offset = next_offset, "rolled segment");
        Ok(())
    }

    fn check_range(&self, offset: i64) -> Result<(), LogError> {
        if offset < self.log_start_offset || offset > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        Ok(())
    }

    /// Locates whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (but always the first batch when `min_one_batch`), and not
    /// past `upper_bound` (exclusive; the high watermark). Stays within one
    /// segment, as Kafka does. `Ok(None)` when there is nothing to read yet.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> Result<Option<ReadSlice>, LogError> {
        self.check_range(offset)?;
        if offset >= upper_bound {
            return Ok(None);
        }
        let candidates = self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
            .map(|(_, segment)| segment);
        for segment in candidates {
            if segment.base_offset >= upper_bound {
                return Ok(None);
            }
            let file = segment.log_file(&self.files)?;
            let Some(first) = segment.find_batch(&file, offset)? else {
                continue;
            };
            if first.header.base_offset >= upper_bound {
                return Ok(None);
            }
            let (end, next_offset) =
                self.slice_end(segment, &file, first, max_bytes, upper_bound, min_one_batch)?;
            if end <= first.position {
                return Ok(None);
            }
            return Ok(Some(ReadSlice {
                file,
                position: first.position,
                length: (end - first.position) as usize,
                first_batch_offset: first.header.base_offset,
                next_offset,
            }));
        }
        Ok(None)
    }

    /// Byte position where a read that starts at `first` must stop, and
    /// the offset that follows the last batch before it.
    fn slice_end(
        &self,
        segment: &Segment,
        file: &File,
        first: segment::BatchPosition,
        max_bytes: usize,
        upper_bound: i64,
        min_one_batch: bool,
    ) -> Result<(u64, i64), LogError> {
        let limit = first.position + max_bytes as u64;
        // Fast path: everything to the end of the segment is readable and fits.
        if segment.next_offset <= upper_bound && segment.size <= limit {
            return Ok((segment.size, segment.next_offset));
        }
        let mut position = first.position;
        let mut header = first.header;
        loop {
            let end = position + header.total_size() as u64;
            let fits = end <= limit || (min_one_batch && position == first.position);
            if header.next_offset() > upper_bound || !fits {
                return Ok((position, header.base_offset));
            }
            position = end;
            if position >= segment.size {
                return Ok((position, header.next_offset()));
            }
            match segment.read_header_at(file, position)? {
                Some(next) => header = next,
                None => {
                    return Err(LogError::Corrupt {
                        path: segment.log_path.clone(),
                        position,
                    })
                }
            }
        }
    }

    /// The first batch holding a record with a timestamp at or after
    /// `timestamp`, as bytes, for the caller to find the exact record in.
    pub fn find_by_timestamp(&self, timestamp: i64) -> Result<Option<Vec<u8>>, LogError> {
        for segment in self.segments.values() {
            if segment.max_timestamp < timestamp {
                continue;
            }
            let file = segment.log_file(&self.files)?;
            if let Some(found) = segment.find_batch_by_timestamp(&file, timestamp)? {
                return read_batch(&file, segment, found).map(Some);
            }
        }
        Ok(None)
    }

    /// The batch holding the largest timestamp in the log, as bytes.
    pub fn max_timestamp_batch(&self) -> Result<Option<Vec<u8>>, LogError> {
        let best = self
            .segments
            .values()
            .filter(|segment| segment.size > 0)
            .max_by_key(|segment| segment.max_timestamp);
        let Some(segment) = best else {
            return Ok(None);
        };
        let file = segment.log_file(&self.files)?;
        match segment.find_batch(&file, segment.offset_of_max_timestamp)? {
            Some(found) => read_batch(&file, segment, found).map(Some),
            None => Ok(None),
        }
    }

    /// What to fsync to make the whole log durable, or `None` if it already is.
    pub fn flush_target(&self) -> Result<Option<FlushTarget>, LogError> {
        self.check_online()?;
        let offset = self.log_end_offset();
        if offset <= self.flushed_offset {
            return Ok(None);
        }
        let active = self.active();
        Ok(Some(FlushTarget {
            file: active.log_file(&self.files)?,
            offset,
            path: active.log_path.clone(),
        }))
    }

    /// Records that a [`FlushTarget`] was synced.
    pub fn mark_flushed(&mut self, offset: i64) {
        self.flushed_offset = self.flushed_offset.max(offset.min(self.log_end_offset()));
    }

    /// Blocking flush of everything, under the caller's lock (shutdown, tests).
    pub fn flush(&mut self) -> Result<(), LogError> {
        if let Some(target) = self.flush_target()? {
            if let Err(error) = target.sync() {
                self.fail(&error.to_string());
                return Err(error);
            }
            self.mark_flushed(target.offset);
        }
        Ok(())
    }

    /// Removes every record at or after `offset` (a follower diverging from
    /// its leader; tests). Whole batches only: a batch that straddles
    /// `offset` is removed too.
    pub fn truncate_to(&mut self, offset: i64, now_ms: i64) -> Result<(), LogError> {
        self.check_online()?;
        if offset >= self.log_end_offset() {
            // Nothing to cut, but an epoch this node assigned as a leader
            // without writing a batch in it may stand at the end (Kafka's
            // truncateTo drops it too): a follower must not name it as its
            // last fetched epoch, or its leader finds it diverged forever.
            let end = self.log_end_offset();
            if self.epochs.truncate_from_end(end) {
                self.write_epochs(true)?;
            }
            return Ok(());
        }
        let files = self.files.clone();
        let doomed: Vec<i64> = self
            .segments
            .range(offset + 1..)
            .map(|(base, _)| *base)
            .collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete_files(&files)?;
            }
        }
        if self.segments.is_empty() {
            let base = offset;
            self.segments
                .insert(base, Segment::create(&self.dir, base, &files, now_ms)?);
        } else {
            self.active_mut().truncate_to(&files, offset)?;
        }
        self.flushed_offset = self.flushed_offset.min(self.log_end_offset());
        let end = self.log_end_offset();
        if self.log_start_offset > end {
            // Truncated below the start: the log starts over at its end.
            self.log_start_offset = end;
            write_log_start_checkpoint(&self.dir, end)?;
        }
        // The checkpoint must neither name epochs the truncation removed nor
        // cover offsets past the new end, or a restart would take them for
        // the records written there next.
        self.epochs.truncate_from_end(end);
        self.write_epochs(true)?;
        sync_dir(&self.dir)
    }

    /// Drops every record and starts the log over, empty, at `offset`
    /// (Kafka's `truncateFullyAndStartAt`): a follower whose log ends below
    /// its leader's log start has nothing the leader still serves next to
    /// it. Segments go first, then the empty one at `offset` is made, then
    /// the start is recorded: a crash anywhere in between opens a log that
    /// still ends below the leader's start, so the follower does this again.
    pub fn truncate_fully_and_start_at(
        &mut self,
        offset: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        self.check_online()?;
        assert!(offset >= 0, "a log cannot start at {offset}");
        let files = self.files.clone();
        for (_, segment) in std::mem::take(&mut self.segments) {
            segment.delete_files(&files)?;
        }
        self.segments
            .insert(offset, Segment::create(&self.dir, offset, &files, now_ms)?);
        sync_dir(&self.dir)?;
        write_log_start_checkpoint(&self.dir, offset)?;
        self.log_start_offset = offset;
        self.flushed_offset = offset;
        self.epochs = LeaderEpochCache::default();
        self.write_epochs(true)?;
        sync_dir(&self.dir)
    }

    /// Makes `offset` the log start offset (Kafka's DeleteRecords): records
    /// below it can no longer be read, and segments wholly below it are
    /// deleted. The new start is persisted before this returns.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<(), LogError> {
        self.check_online()?;
        if offset <= self.log_start_offset {
            return Ok(());
        }
        if offset > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.log_end_offset(),
            });
        }
        write_log_start_checkpoint(&self.dir, offset)?;
        self.log_start_offset = offset;
        self.epochs.truncate_from_start(offset);
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for pair in bases.windows(2) {
            // A segment is wholly below `offset` when the next one starts at or before it.
            if pair[1] <= offset {
                self.remove_segment(pair[0])?;
            }
        }
        Ok(())
    }

    fn remove_segment(&mut self, base: i64) -> Result<u64, LogError> {
        let files = self.files.clone();
        match self.segments.remove(&base) {
            Some(segment) => {
                segment.delete_files(&files)?;
                Ok(segment.size)
            }
            None => Ok(0),
        }
    }

    /// Applies time and size retention (`retention.ms`, `retention.bytes`;
    /// `None` for unlimited) by deleting whole segments from the start of
    /// the log, never data at or above `high_watermark`. An expired active
    /// segment is rolled first, as in Kafka, so that it too can go.
    pub fn apply_retention(
        &mut self,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
        high_watermark: i64,
        now_ms: i64,
    ) -> Result<RetentionOutcome, LogError> {
        self.check_online()?;
        let mut outcome = RetentionOutcome::default();
        if let Some(retention_ms) = retention_ms {
            let horizon = now_ms.saturating_sub(retention_ms);
            let expired = |segment: &Segment| segment.size > 0 && segment.max_timestamp < horizon;
            let active = self.active();
            if expired(active) && active.next_offset <= high_watermark {
                self.roll(now_ms)?;
            }
            self.delete_front_segments(high_watermark, &mut outcome, |first, _| expired(first))?;
        }
        if let Some(limit) = retention_bytes {
            self.delete_front_segments(high_watermark, &mut outcome, |first, size| {
                size - first.size >= limit
            })?;
        }
        Ok(outcome)
    }

    /// Deletes segments from the front while `doomed(first, log size)` says
    /// so, never the active one nor data at or above `high_watermark`, and
    /// persists the new log start offset once at the end (a crash before it
    /// is harmless: the start is never below the first segment).
    fn delete_front_segments(
        &mut self,
        high_watermark: i64,
        outcome: &mut RetentionOutcome,
        mut doomed: impl FnMut(&Segment, u64) -> bool,
    ) -> Result<(), LogError> {
        let mut size = self.size_bytes();
        let mut new_start = None;
        while self.segments.len() > 1 {
            let first = self.segments.values().next().expect("segments");
            let next_base = *self.segments.keys().nth(1).expect("two segments");
            if next_base > high_watermark || !doomed(first, size) {
                break;
            }
            let base = first.base_offset;
            let removed = self.remove_segment(base)?;
            size -= removed;
            outcome.deleted_bytes += removed;
            outcome.deleted_segments += 1;
            new_start = Some(next_base);
        }
        match new_start {
            Some(start) => self.advance_start_to(start),
            None => Ok(()),
        }
    }

    fn advance_start_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset > self.log_start_offset {
            self.log_start_offset = offset;
            self.epochs.truncate_from_start(offset);
            write_log_start_checkpoint(&self.dir, offset)?;
        }
        Ok(())
    }

    /// Visits the header of every batch that ends at or after `from`
    /// (found by the offset index), oldest first, with the marker of each control batch (for
    /// rebuilding producer and transaction state at startup). Reads headers,
    /// and the whole batch only for the few control batches.
    pub fn for_each_batch_header(
        &self,
        from: i64,
        mut visit: impl FnMut(&BatchHeader, Option<batch::Marker>),
    ) -> Result<(), LogError> {
        if from >= self.log_end_offset() {
            return Ok(()); // nothing after `from` (a clean shutdown's snapshot)
        }
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        let mut control = Vec::new();
        for segment in self.segments.range(first..).map(|(_, segment)| segment) {
            let file = segment.log_file(&self.files)?;
            // From the first batch ending at or after `from`, by the index.
            let Some(start) = segment.find_batch(&file, from)? else {
                continue;
            };
            let mut position = start.position;
            while position < segment.size {
                let Some(header) = segment.read_header_at(&file, position)? else {
                    return Err(LogError::Corrupt {
                        path: segment.log_path.clone(),
                        position,
                    });
                };
                let marker = if header.is_control() {
                    control.resize(header.total_size(), 0);
                    file.read_exact_at(&mut control, position)
                        .map_err(|e| LogError::io("read", &segment.log_path, e))?;
                    batch::marker(&control)
                } else {
                    None
                };
                visit(&header, marker);
                position += header.total_size() as u64;
            }
        }
        Ok(())
    }

    /// Notes an aborted transaction in the index of the segment that holds
    /// its abort marker. Idempotent, so a replay may add entries again.
    pub fn add_aborted(&mut self, entry: AbortedTxn) -> Result<(), LogError> {
        self.add_aborted_to_segment(entry).map(|_| ())
    }

    /// Adds the entry to the segment holding its marker; returns that
    /// segment's base offset if its `.txnindex` changed.
    fn add_aborted_to_segment(&mut self, entry: AbortedTxn) -> Result<Option<i64>, LogError> {
        let files = self.files.clone();
        match self.segments.range_mut(..=entry.last_offset).next_back() {
            Some((base, segment)) if entry.last_offset < segment.next_offset => {
                Ok(segment.add_aborted(&files, entry)?.then_some(*base))
            }
            _ => Ok(None),
        }
    }

    /// Adds entries a restart found missing (its replay of the markers),
    /// then makes each `.txnindex` that changed durable, once: sealed
    /// segments are otherwise synced only when sealed, and once a snapshot
    /// is past a marker no later replay would add its entry again.
    pub fn restore_aborted(
        &mut self,
        entries: impl IntoIterator<Item = AbortedTxn>,
    ) -> Result<(), LogError> {
        let mut changed = std::collections::BTreeSet::new();
        for entry in entries {
            changed.extend(self.add_aborted_to_segment(entry)?);
        }
        for base in changed {
            if let Some(segment) = self.segments.get(&base) {
                segment.sync_aborted(&self.files)?;
            }
        }
        Ok(())
    }

    /// The aborted transactions with records in `[from, to)`, by first
    /// offset, for a `read_committed` fetch of that range. Their markers are
    /// at or after `from`, so only the segments from there on are asked.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        let first = self
            .segments
            .range(..=from)
            .next_back()
            .map_or(i64::MIN, |(base, _)| *base);
        let mut found = Vec::new();
        // Entries are in marker order, and so are their last stable
        // offsets: once one reaches `to`, every later transaction began at
        // or after it and cannot overlap (Kafka stops there too).
        for entry in self
            .segments
            .range(first..)
            .flat_map(|(_, segment)| segment.aborted())
        {
            if entry.overlaps(from, to) {
                found.push(*entry);
            }
            if entry.last_stable_offset >= to {
                break;
            }
        }
        found.sort_by_key(|entry| entry.first_offset);
        found
    }

    /// Base offset of the active segment: everything below it is sealed.
    pub fn active_base_offset(&self) -> i64 {
        self.active().base_offset
    }

    /// Step 1 of a cleaning (see [`cleaner`]): the sealed segments to clean,
    /// or `None` when nothing is due.
    pub fn plan_clean(&self, config: &CleanerConfig) -> Result<Option<CleanPlan>, LogError> {
        self.check_online()?;
        let lag_horizon = config.now_ms.saturating_sub(config.min_compaction_lag_ms);
        let sealed: Vec<(&i64, &Segment)> = self.segments.iter().collect();
        let sealed = &sealed[..sealed.len().saturating_sub(1)];
        let mut chosen = Vec::new();
        for (index, (base, segment)) in sealed.iter().enumerate() {
            if segment.max_timestamp > lag_horizon {
                break;
            }
            let next_base = sealed
                .get(index + 1)
                .map_or(self.active().base_offset, |(next, _)| **next);
            if next_base > config.last_stable_offset {
                break;
            }
            chosen.push((**base, next_base, *segment));
        }
        let Some(&(_, end_offset, _)) = chosen.last() else {
            return Ok(None);
        };
        let first_dirty =
            read_offset_checkpoint(&self.dir, cleaner::CLEANER_CHECKPOINT)?.unwrap_or(0);
        let total: u64 = chosen.iter().map(|(_, _, segment)| segment.size).sum();
        let dirty: Vec<_> = chosen
            .iter()
            .filter(|(_, next_base, _)| *next_base > first_dirty)
            .collect();
        let dirty_bytes: u64 = dirty.iter().map(|(_, _, segment)| segment.size).sum();
        let tombstones_due = self.oldest_kept_tombstone_ms.is_some_and(|oldest| {
            oldest < config.now_ms.saturating_sub(config.delete_retention_ms)
        });
        if total == 0 || (dirty_bytes == 0 && !tombstones_due) {
            return Ok(None);
        }
        let max_lag_horizon = config.now_ms.saturating_sub(config.max_compaction_lag_ms);
        let overdue = dirty.iter().any(|(_, _, segment)| {
            segment.max_timestamp >= 0 && segment.max_timestamp < max_lag_horizon
        });
        let ratio = dirty_bytes as f64 / total as f64;
        if ratio < config.min_cleanable_dirty_ratio && !overdue && !tombstones_due {
            return Ok(None);
        }
        Ok(Some(CleanPlan {
            dir: self.dir.clone(),
            segments: chosen
                .iter()
                .map(|(base, _, segment)| PlannedSegment {
                    base_offset: *base,
                    log_path: segment.log_path.clone(),
                    size: segment.size,
                })
                .collect(),
            end_offset,
            aborted: self.aborted_transactions(chosen[0].0, end_offset),
        }))
    }

    /// Step 3 of a cleaning: swaps the `.cleaned` files in atomically. Returns
    /// false (and discards them) if the planned segments changed meanwhile.
    pub fn commit_clean(
        &mut self,
        plan: &CleanPlan,
        outcome: &cleaner::CleanOutcome,
        now_ms: i64,
    ) -> Result<bool, LogError> {
        let unchanged = plan.segments.iter().all(|planned| {
            self.segments
                .get(&planned.base_offset)
                .is_some_and(|segment| {
                    segment.size == planned.size && segment.base_offset != self.active().base_offset
                })
        });
        if !unchanged {
            for planned in &plan.segments {
                let _ = std::fs::remove_file(cleaner::cleaned_path(&planned.log_path));
            }
            return Ok(false);
        }
        // Past the marker, swapping the files in is what recovery does after
        // a crash, so both go through the same code.
        cleaner::write_commit_marker(&self.dir, plan)?;
        let files = self.files.clone();
        let mut names: Vec<String> = plan
            .segments
            .iter()
            .filter_map(|planned| {
                cleaner::cleaned_path(&planned.log_path)
                    .file_name()?
                    .to_str()
                    .map(str::to_string)
            })
            .collect();
        names.push(cleaner::COMMIT_MARKER.to_string());
        finish_cleaning(&self.dir, &files, &names)?;
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        for planned in &plan.segments {
            let position = bases.iter().position(|base| *base == planned.base_offset);
            let next_base = position.and_then(|index| bases.get(index + 1)).copied();
            let reopened = Segment::open(
                &self.dir,
                planned.base_offset,
                &files,
                next_base,
                false,
                self.config.index_interval_bytes,
                now_ms,
            )?;
            self.segments.insert(planned.base_offset, reopened);
        }
        write_offset_checkpoint(&self.dir, cleaner::CLEANER_CHECKPOINT, plan.end_offset)?;
        self.oldest_kept_tombstone_ms = outcome.oldest_kept_tombstone_ms;
        Ok(true)
    }

    /// Deletes all files of the log and its directory.
    pub fn delete(&mut self) -> Result<(), LogError> {
        for segment in self.segments.values() {
            segment.delete_files(&self.files)?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LogError::io("delete directory", &self.dir, e)),
        }
    }
}

/// Completes a committed cleaning (or discards an uncommitted one) and
/// drops what the replaced segments left in the file cache and indexes.
fn finish_cleaning(dir: &Path, files: &FileCache, names: &[String]) -> Result<(), LogError> {
    for base in cleaner::recover(dir, names)? {
        Segment::content_replaced(dir, base, files)?;
    }
    Ok(())
}

/// What a retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
}

const LOG_START_CHECKPOINT: &str = "log-start-offset";

/// The persisted log start offset, if one was ever written.
fn read_log_start_checkpoint(dir: &Path) -> Result<Option<i64>, LogError> {
    read_offset_checkpoint(dir, LOG_START_CHECKPOINT)
}

fn write_log_start_checkpoint(dir: &Path, offset: i64) -> Result<(), LogError> {
    write_offset_checkpoint(dir, LOG_START_CHECKPOINT, offset)
}

/// An offset persisted in a small file of the partition directory.
fn read_offset_checkpoint(dir: &Path, name: &str) -> Result<Option<i64>, LogError> {
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io("read", &path, e)),
    }
}

/// Writes an offset checkpoint atomically: temporary file, fsync, rename, fsync directory.
fn write_offset_checkpoint(dir: &Path, name: &str, offset: i64) -> Result<(), LogError> {
    let path = dir.join(name);
    let temporary = dir.join(format!("{name}.tmp"));
    std::fs::write(&temporary, format!("{offset}\n"))
        .and_then(|()| File::open(&temporary)?.sync_all())
        .map_err(|e| LogError::io("write", &temporary, e))?;
    std::fs::rename(&temporary, &path).map_err(|e| LogError::io("rename", &path, e))?;
    sync_dir(dir)
}

fn read_batch(
    file: &File,
    segment: &Segment,
    found: segment::BatchPosition,
) -> Result<Vec<u8>, LogError> {
    let mut bytes = vec![0u8; found.header.total_size()];
    file.read_exact_at(&mut bytes, found.position)
        .map_err(|e| LogError::io("read", &segment.log_path, e))?;
    Ok(bytes)
}
