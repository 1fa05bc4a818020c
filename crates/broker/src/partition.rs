//! Partitions this broker hosts, and the replica state around each log.
//!
//! A [`Partition`] owns its [`Log`] behind a mutex and keeps Kafka's three
//! offsets apart: the log start offset and log end offset come from the
//! log; the high watermark is what this module decides consumers may see.
//! On a single node the in-sync replica set is this broker alone, so the
//! high watermark follows the log end offset as soon as a write lands in the
//! log; replication will drive it from follower fetch positions instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::error::ResponseError;
use strom_log::batch::ControlType;
use strom_log::{
    AbortedTxn, AppendInfo, AppendOptions, FileCache, Log, LogError, ReadSlice, Recovery,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::configs::TopicSettings;
use crate::producer_state::{
    self, EndedTransaction, Origin, ProducerStates, ProducerSummary, Verdict,
};

/// The outcome of [`Partition::append`].
#[derive(Debug, Clone, Copy)]
pub enum Appended {
    Written(AppendInfo),
    /// A retry of a batch already in the log, at this base offset.
    Duplicate {
        base_offset: i64,
    },
    /// Refused for its producer sequence or epoch, or not admitted to a
    /// transaction.
    Rejected(ResponseError),
}

pub struct Partition {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    /// The partition's current leader epoch, from the committed metadata.
    leader_epoch: AtomicI32,
    /// This node leads the partition (else it is led elsewhere or by nobody).
    is_leader: AtomicBool,
    dir: PathBuf,
    log: Mutex<Log>,
    /// Idempotent producers' sequences; locked before `log` when both are.
    producers: Mutex<ProducerStates>,
    high_watermark: AtomicI64,
    /// Below the first offset of every open transaction and the high
    /// watermark: what `read_committed` consumers may see.
    last_stable_offset: AtomicI64,
    log_start_offset: AtomicI64,
    settings: RwLock<TopicSettings>,
    /// Messages appended since the last fsync, for relaxed `flush.messages`.
    unflushed_messages: AtomicI64,
    /// A delayed flush is already scheduled (relaxed `flush.ms`).
    flush_scheduled: AtomicBool,
    /// An abort marker is in the log without its aborted-transaction index
    /// entry (writing it failed). Until a restart replays the marker and
    /// adds it, no producer state snapshot is written past it (that replay
    /// must happen) and the log is not cleaned (the cleaner would take the
    /// aborted records for committed ones).
    aborted_index_incomplete: AtomicBool,
    /// Woken whenever the high watermark moves, for long-polling fetches.
    pub data_arrived: Notify,
}

/// Which partition a [`Partition`] is.
pub struct PartitionIdentity {
    pub topic: String,
    pub topic_id: Uuid,
    pub index: i32,
    pub leader_epoch: i32,
}

/// Directory of a partition: `<data dir>/<topic>-<partition>`, as in Kafka.
pub fn partition_dir(data_dir: &Path, topic: &str, index: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{index}"))
}

impl Partition {
    pub fn open(
        data_dir: &Path,
        identity: PartitionIdentity,
        settings: TopicSettings,
        files: FileCache,
        recovery: Recovery,
    ) -> Result<Partition, LogError> {
        let PartitionIdentity {
            topic,
            topic_id,
            index,
            leader_epoch,
        } = identity;
        let dir = partition_dir(data_dir, &topic, index);
        let now = now_ms();
        let mut log = Log::open(&dir, settings.log, files, recovery, now)?;
        log.assign_leader_epoch(leader_epoch);
        // Producer state: the newest snapshot, then the batches after it.
        let (replay_from, mut producers) =
            producer_state::load_snapshot(&dir, log.log_end_offset(), now)
                .unwrap_or_else(|| (log.log_start_offset(), ProducerStates::default()));
        let mut aborted = Vec::new();
        log.for_each_batch_header(replay_from, |header, marker| {
            if let Some(ended) = producers.record(header, marker, now) {
                aborted.extend(aborted_entry(&ended, header, &producers));
            }
        })?;
        // Re-adds index entries a crash may have lost before they were written.
        log.restore_aborted(aborted)?;
        let end = log.log_end_offset();
        let start = log.log_start_offset();
        let stable = producers.first_unstable_offset().unwrap_or(end).min(end);
        Ok(Partition {
            topic,
            topic_id,
            index,
            leader_epoch: AtomicI32::new(leader_epoch),
            is_leader: AtomicBool::new(true),
            dir,
            log: Mutex::new(log),
            producers: Mutex::new(producers),
            high_watermark: AtomicI64::new(end),
            last_stable_offset: AtomicI64::new(stable),
            log_start_offset: AtomicI64::new(start),
            settings: RwLock::new(settings),
            unflushed_messages: AtomicI64::new(0),
            flush_scheduled: AtomicBool::new(false),
            aborted_index_incomplete: AtomicBool::new(false),
            data_arrived: Notify::new(),
        })
    }

    /// The log, locked. Hold it only for in-memory work and short page-cache I/O.
    pub fn log(&self) -> MutexGuard<'_, Log> {
        // A panic while appending is a bug that already crashed a request;
        // the log's own invariants are checked on every append.
        self.log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }

    /// Takes the committed leadership: the leader epoch, and whether this
    /// node leads. A leader starts its epoch in the log's epoch cache, so
    /// OffsetForLeaderEpoch answers for it before anything is written in it.
    pub fn set_leader_epoch(&self, epoch: i32, is_leader: bool) {
        // Under the log's lock, so an append stamps either the old epoch
        // before the cache learns the new one or the new one after.
        let mut log = self.log();
        let current = self.leader_epoch.load(Ordering::Acquire);
        assert!(epoch >= current, "leader epoch {epoch} after {current}");
        self.leader_epoch.store(epoch, Ordering::Release);
        self.is_leader.store(is_leader, Ordering::Release);
        if is_leader {
            log.assign_leader_epoch(epoch);
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn last_stable_offset(&self) -> i64 {
        self.last_stable_offset.load(Ordering::Acquire)
    }

    /// The end offset a consumer with this isolation level may read up to.
    pub fn visible_end(&self, read_committed: bool) -> i64 {
        if read_committed {
            self.last_stable_offset()
        } else {
            self.high_watermark()
        }
    }

    fn producers(&self) -> MutexGuard<'_, ProducerStates> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets producers idle for `expiration_ms` (`producer.id.expiration.ms`)
    /// that have no transaction open here. Returns how many.
    pub fn expire_producers(&self, now_ms: i64, expiration_ms: i64) -> usize {
        self.producers().expire(now_ms, expiration_ms)
    }

    /// The producers this partition remembers, for DescribeProducers.
    pub fn describe_producers(&self) -> Vec<ProducerSummary> {
        self.producers().describe()
    }

    /// After a write: single replica, so the ISR is this broker and
    /// everything in the log is replicated to the whole ISR.
    fn advance(&self, log: &Log, producers: &ProducerStates) {
        let end = log.log_end_offset();
        let stable = producers.first_unstable_offset().unwrap_or(end).min(end);
        self.high_watermark.store(end, Ordering::Release);
        self.last_stable_offset.store(stable, Ordering::Release);
    }

    pub fn settings(&self) -> TopicSettings {
        *self.settings.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_settings(&self, settings: TopicSettings) {
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
        self.log().set_config(settings.log);
    }

    /// Appends one of the broker's own batches (offset commits, group and
    /// transaction state) and advances the high watermark. Such a batch may
    /// carry a producer id without a sequence: only its epoch is checked.
    pub fn append(&self, batch: &mut [u8]) -> Result<Appended, LogError> {
        self.append_checked(batch, Origin::Broker, |_| Ok(()))
    }

    /// Appends a client's batch: one from an idempotent producer is checked
    /// against its sequences, and a transactional batch that would open a
    /// transaction here must first be admitted by `admit` (KIP-890's
    /// verification). It is asked under the same lock that transaction
    /// markers take, so a marker written meanwhile cannot slip between the
    /// verdict and the append and leave a transaction open that nobody ends.
    pub fn append_from_client(
        &self,
        batch: &mut [u8],
        admit: impl FnOnce(&strom_log::batch::BatchHeader) -> Result<(), ResponseError>,
    ) -> Result<Appended, LogError> {
        self.append_checked(batch, Origin::Client, admit)
    }

    fn append_checked(
        &self,
        batch: &mut [u8],
        origin: Origin,
        admit: impl FnOnce(&strom_log::batch::BatchHeader) -> Result<(), ResponseError>,
    ) -> Result<Appended, LogError> {
        let header = strom_log::batch::BatchHeader::parse(batch)?;
        let producers = self.producers();
        if header.is_transactional()
            && !header.is_control()
            && !producers.has_open_transaction(header.producer_id)
        {
            if let Err(error) = admit(&header) {
                return Ok(Appended::Rejected(error));
            }
        }
        match producers.check(&header, origin) {
            Verdict::Append => {}
            Verdict::Duplicate { base_offset } => return Ok(Appended::Duplicate { base_offset }),
            Verdict::Reject(error) => return Ok(Appended::Rejected(error)),
        }
        Ok(match self.write(producers, batch, None)? {
            Ok(info) => Appended::Written(info),
            Err(error) => Appended::Rejected(error),
        })
    }

    /// Writes a transaction marker (the coordinator's COMMIT or ABORT) for
    /// `producer_id`, ending its open transaction here; an abort is noted in
    /// the aborted-transaction index. Returns the offset after the marker,
    /// or the error that refused it (a stale epoch).
    pub fn write_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        control: ControlType,
        coordinator_epoch: i32,
    ) -> Result<Result<i64, kafka_protocol::error::ResponseError>, LogError> {
        let producers = self.producers();
        if let Err(error) = producers.check_marker(producer_id, producer_epoch) {
            return Ok(Err(error));
        }
        let mut batch = strom_log::batch::control_batch(
            producer_id,
            producer_epoch,
            control,
            coordinator_epoch,
            now_ms(),
        );
        Ok(self
            .write(producers, &mut batch, Some(control))?
            .map(|info| info.last_offset + 1))
    }

    /// Writes an admitted batch (or a marker saying `marker`) under the
    /// producer-state lock the caller checked it under: records it in the
    /// producer state, moves the watermarks, notes an aborted transaction
    /// a marker ended, and wakes waiting fetches. A producer state snapshot
    /// taken because the segment rolled is written after the locks go.
    fn write(
        &self,
        mut producers: MutexGuard<'_, ProducerStates>,
        batch: &mut [u8],
        marker: Option<ControlType>,
    ) -> Result<Result<AppendInfo, ResponseError>, LogError> {
        let now = now_ms();
        let log_append_time_ms = self.settings().log_append_time.then_some(now);
        let (info, snapshot) = {
            let mut log = self.log();
            // Leadership is read under the log's lock, which leadership
            // changes take too: a node that no longer leads writes nothing.
            if !self.is_leader() {
                return Ok(Err(ResponseError::NotLeaderOrFollower));
            }
            let options = AppendOptions {
                leader_epoch: self.leader_epoch(),
                log_append_time_ms,
                now_ms: now,
            };
            let (info, snapshot) = append_with_snapshot(&mut log, &producers, batch, options)?;
            let ended = producers.record(&info.header, marker, now);
            // The batch is in the log: the watermarks move even if the
            // index entry below fails (a restart re-adds it from the marker).
            self.advance(&log, &producers);
            if let Some(entry) =
                ended.and_then(|ended| aborted_entry(&ended, &info.header, &producers))
            {
                if let Err(error) = log.add_aborted(entry) {
                    self.aborted_index_incomplete.store(true, Ordering::Release);
                    tracing::error!(topic = %self.topic, partition = self.index, %error, "could not index an aborted transaction; until a restart re-adds it, this partition is not compacted and writes no producer state snapshots");
                    return Err(error);
                }
            }
            (info, snapshot)
        };
        drop(producers);
        self.write_snapshot(snapshot);
        self.unflushed_messages
            .fetch_add(info.header.record_count.max(0) as i64, Ordering::Relaxed);
        self.data_arrived.notify_waiters();
        Ok(Ok(info))
    }

    /// Writes a producer state snapshot taken when a segment rolled. Not
    /// fsynced: losing it in a crash only makes the next start replay more.
    fn write_snapshot(&self, snapshot: Option<Snapshot>) {
        if self.aborted_index_incomplete.load(Ordering::Acquire) {
            return;
        }
        if let Some((offset, bytes)) = snapshot {
            if let Err(error) = producer_state::write_snapshot(&self.dir, offset, &bytes) {
                tracing::warn!(topic = %self.topic, partition = self.index, %error, "could not write a producer state snapshot");
            }
        }
    }

    /// At clean shutdown, after the last flush: a snapshot at the log end,
    /// unless one is there already (an idle partition), so the next start
    /// replays nothing. The broker then syncs the file system once, which
    /// makes the snapshots and the active segments' aborted-transaction
    /// indexes durable.
    pub fn write_shutdown_snapshot(&self) -> Result<(), LogError> {
        self.log().write_epoch_checkpoint()?;
        let producers = self.producers();
        let offset = self.log().log_end_offset();
        if self.aborted_index_incomplete.load(Ordering::Acquire)
            || producer_state::has_snapshot(&self.dir, offset)
        {
            return Ok(());
        }
        let bytes = producers.encode_snapshot(offset);
        producer_state::write_snapshot(&self.dir, offset, &bytes)
            .map_err(|e| LogError::io("write snapshot", &self.dir, e))
    }

    /// Reads whole batches from `offset` below the high watermark.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<ReadSlice>, LogError> {
        let high_watermark = self.high_watermark();
        self.log()
            .read(offset, max_bytes, high_watermark, min_one_batch)
    }

    /// Reads as a consumer with the given isolation level: `read_committed`
    /// stops at the last stable offset and also gets the aborted
    /// transactions among the records read, for the client to drop.
    pub fn read_isolated(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
        read_committed: bool,
    ) -> Result<(Option<ReadSlice>, Vec<AbortedTxn>), LogError> {
        if !read_committed {
            return Ok((self.read(offset, max_bytes, min_one_batch)?, Vec::new()));
        }
        let stable = self.last_stable_offset();
        let log = self.log();
        let slice = log.read(offset, max_bytes, stable, min_one_batch)?;
        let aborted = match &slice {
            Some(slice) => log.aborted_transactions(offset, slice.next_offset),
            None => Vec::new(),
        };
        Ok((slice, aborted))
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log().log_end_offset()
    }

    /// DeleteRecords: moves the log start offset to `offset` (at most the
    /// high watermark) and returns the new log start offset.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let mut log = self.log();
        let high_watermark = self.high_watermark();
        if offset > high_watermark || offset < 0 {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: log.log_start_offset(),
                log_end_offset: high_watermark,
            });
        }
        log.delete_records_before(offset)?;
        let start = log.log_start_offset();
        self.log_start_offset.store(start, Ordering::Release);
        Ok(start)
    }

    /// One retention pass with the topic's current settings.
    pub fn apply_retention(&self, now_ms: i64) -> Result<strom_log::RetentionOutcome, LogError> {
        let settings = self.settings();
        if !settings.delete_retention {
            return Ok(strom_log::RetentionOutcome::default());
        }
        let mut log = self.log();
        let outcome = log.apply_retention(
            settings.retention_ms,
            settings.retention_bytes,
            self.high_watermark(),
            now_ms,
        )?;
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Release);
        Ok(outcome)
    }

    /// One compaction pass if the topic is compacted and enough is dirty.
    /// The partition is locked only to plan and to swap the result in.
    pub fn clean(
        &self,
        now_ms: i64,
        io_bytes_per_second: u64,
    ) -> Result<Option<strom_log::cleaner::CleanOutcome>, LogError> {
        let settings = self.settings();
        if !settings.compact || self.aborted_index_incomplete.load(Ordering::Acquire) {
            return Ok(None);
        }
        let config = strom_log::cleaner::CleanerConfig {
            delete_retention_ms: settings.delete_retention_ms,
            min_compaction_lag_ms: settings.min_compaction_lag_ms,
            max_compaction_lag_ms: settings.max_compaction_lag_ms,
            min_cleanable_dirty_ratio: settings.min_cleanable_dirty_ratio,
            now_ms,
            last_stable_offset: self.last_stable_offset(),
            io_bytes_per_second,
            max_keys: 4_000_000,
        };
        let Some(mut plan) = self.log().plan_clean(&config)? else {
            return Ok(None);
        };
        let outcome = strom_log::cleaner::clean(&mut plan, &config)?;
        let committed = self.log().commit_clean(&plan, &outcome, now_ms)?;
        Ok(committed.then_some(outcome))
    }

    /// Bytes of all segments.
    pub fn size_bytes(&self) -> u64 {
        self.log().size_bytes()
    }

    /// Relaxed durability: counts toward `flush.messages`; true when a flush is due.
    pub fn take_flush_due_by_count(&self, limit: i64) -> bool {
        if self.unflushed_messages.load(Ordering::Relaxed) >= limit {
            self.unflushed_messages.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    pub fn note_flushed(&self) {
        self.unflushed_messages.store(0, Ordering::Relaxed);
    }

    /// Relaxed durability: claims the right to schedule the next timed flush.
    pub fn try_schedule_flush(&self) -> bool {
        !self.flush_scheduled.swap(true, Ordering::AcqRel)
    }

    pub fn clear_flush_scheduled(&self) {
        self.flush_scheduled.store(false, Ordering::Release);
    }
}

/// A producer state snapshot to write: its offset and bytes.
type Snapshot = (i64, Vec<u8>);

/// Appends a batch; if that rolled a new segment, also returns a snapshot
/// of the producer state at the new segment's base offset (taken before
/// the batch is recorded, which is the state at that offset).
fn append_with_snapshot(
    log: &mut Log,
    producers: &ProducerStates,
    batch: &mut [u8],
    options: AppendOptions,
) -> Result<(AppendInfo, Option<Snapshot>), LogError> {
    let active = log.active_base_offset();
    let info = log.append(batch, options)?;
    let rolled = log.active_base_offset() != active;
    let snapshot = rolled.then(|| {
        (
            info.base_offset,
            producers.encode_snapshot(info.base_offset),
        )
    });
    Ok((info, snapshot))
}

/// The index entry for a transaction a marker ended, if it was aborted.
fn aborted_entry(
    ended: &EndedTransaction,
    marker: &strom_log::batch::BatchHeader,
    producers: &ProducerStates,
) -> Option<AbortedTxn> {
    (ended.control == ControlType::Abort).then(|| AbortedTxn {
        producer_id: ended.producer_id,
        first_offset: ended.first_offset,
        last_offset: marker.base_offset,
        last_stable_offset: producers
            .first_unstable_offset()
            .unwrap_or(marker.next_offset()),
    })
}

/// The broker's wall clock in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// One topic's partitions on this node, by index: `None` for those whose
/// replicas are all on other brokers.
#[derive(Default)]
pub struct TopicPartitions {
    slots: Vec<Option<Arc<Partition>>>,
}

impl TopicPartitions {
    pub fn new(slots: Vec<Option<Arc<Partition>>>) -> TopicPartitions {
        TopicPartitions { slots }
    }

    /// How many partitions the topic has, here or elsewhere.
    pub fn count(&self) -> usize {
        self.slots.len()
    }

    pub fn get(&self, index: i32) -> Option<&Arc<Partition>> {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.slots.get(index))
            .and_then(Option::as_ref)
    }

    /// The partitions held here.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Partition>> {
        self.slots.iter().flatten()
    }

    pub fn slots(&self) -> &[Option<Arc<Partition>>] {
        &self.slots
    }
}

/// All partitions hosted here, by topic.
#[derive(Default)]
pub struct PartitionRegistry {
    topics: RwLock<HashMap<String, Arc<TopicPartitions>>>,
}

impl PartitionRegistry {
    pub fn get(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic)?.get(index).cloned()
    }

    pub fn topic(&self, topic: &str) -> Option<Arc<TopicPartitions>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.get(topic).cloned()
    }

    pub fn insert_topic(&self, topic: &str, partitions: TopicPartitions) {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        topics.insert(topic.to_string(), Arc::new(partitions));
    }

    pub fn remove_topic(&self, topic: &str) -> Option<Arc<TopicPartitions>> {
        let mut topics = self.topics.write().unwrap_or_else(|p| p.into_inner());
        topics.remove(topic)
    }

    pub fn topic_names(&self) -> Vec<String> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics.keys().cloned().collect()
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
        topics
            .values()
            .flat_map(|partitions| partitions.iter().cloned())
            .collect()
    }
}
