//! Partitions this broker hosts, and the replica state around each log.
//!
//! A [`Partition`] owns its [`Log`] behind a mutex and keeps Kafka's three
//! offsets apart: the log start offset and log end offset come from the
//! log; the high watermark is what this module decides consumers may see.
//!
//! * A partition with one replica: the high watermark follows the log end
//!   offset as soon as a write lands in the log.
//! * The leader of a replicated partition: [`strom_replica::Leader`] decides
//!   it from the followers' fetch positions and this node's fsynced end
//!   (the lowest durable offset over the ISR), and acks=all waits for it.
//! * A follower: it appends what it fetched from its leader
//!   ([`Partition::append_replicated`]), truncates where its log diverged
//!   from the leader's, and takes the leader's high watermark, never beyond
//!   its own durable end. It serves no clients.
//!
//! Locks are taken in one order: `producers`, then `log`, then `replication`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use kafka_protocol::error::ResponseError;
use strom_log::batch::{ControlType, Marker};
use strom_log::{
    AbortedTxn, AppendInfo, AppendOptions, FileCache, Log, LogError, ReadSlice, Recovery,
};
use strom_replica::{AcksAll, IsrProposal, Leader, PartitionState, ReplicaConfig};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::configs::TopicSettings;
use crate::hw_checkpoint;
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
    /// The partition has other replicas: acks=all waits for the high
    /// watermark, which only a leader's replication state moves.
    replicated: AtomicBool,
    dir: PathBuf,
    log: Mutex<Log>,
    /// Idempotent producers' sequences; locked before `log` when both are.
    producers: Mutex<ProducerStates>,
    high_watermark: AtomicI64,
    /// The first offset of the oldest open transaction (`i64::MAX`: none).
    /// The last stable offset, what `read_committed` consumers may see, is
    /// the lower of it and the high watermark.
    first_unstable_offset: AtomicI64,
    /// The leader's replication state, while this node leads the partition
    /// and it has other replicas.
    replication: Mutex<Option<Leader>>,
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
    /// The partition has other replicas: its high watermark starts at the
    /// checkpointed one (or the log start) and is learned from the
    /// replicas, since records past it may never have been committed.
    pub replicated: bool,
    /// The high watermark in the checkpoint, if it had one.
    pub checkpointed_high_watermark: Option<i64>,
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
            replicated,
            checkpointed_high_watermark,
        } = identity;
        let dir = partition_dir(data_dir, &topic, index);
        let now = now_ms();
        // The epoch starts in the epoch cache only if this node leads
        // (`apply_state`): a follower's cache lists the epochs of batches
        // it holds, which it names to its leader when it fetches.
        let mut log = Log::open(&dir, settings.log, files, recovery, now)?;
        let producers = load_producers(&dir, &mut log, now)?;
        let end = log.log_end_offset();
        let start = log.log_start_offset();
        let first_unstable = producers.first_unstable_offset().unwrap_or(i64::MAX);
        Ok(Partition {
            topic,
            topic_id,
            index,
            leader_epoch: AtomicI32::new(leader_epoch),
            is_leader: AtomicBool::new(true),
            replicated: AtomicBool::new(replicated),
            dir,
            log: Mutex::new(log),
            producers: Mutex::new(producers),
            high_watermark: AtomicI64::new(match replicated {
                true => {
                    hw_checkpoint::opening_high_watermark(checkpointed_high_watermark, start, end)
                }
                false => end,
            }),
            first_unstable_offset: AtomicI64::new(first_unstable),
            replication: Mutex::new(None),
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

    /// The committed metadata gives the partition more than one replica.
    pub fn is_replicated(&self) -> bool {
        self.replicated.load(Ordering::Acquire)
    }

    /// Takes the committed state of the partition: its leader epoch, and
    /// whether this node leads (`node_id == leader`). A leader starts its
    /// epoch in the log's epoch cache, so OffsetForLeaderEpoch answers for
    /// it before anything is written in it; the leader of a replicated
    /// partition starts (or, in the same epoch, updates) its replication
    /// state. Waiting fetches and acks=all produces are woken to look again.
    pub fn apply_state(
        &self,
        node_id: i32,
        leader: i32,
        state: &PartitionState,
        replica_lag_time_max_ms: i64,
    ) {
        // Under the log's lock, so an append stamps either the old epoch
        // before the cache learns the new one or the new one after.
        let mut log = self.log();
        let current = self.leader_epoch.load(Ordering::Acquire);
        if state.leader_epoch < current {
            tracing::warn!(topic = %self.topic, partition = self.index, epoch = state.leader_epoch, current, "ignoring an older leader epoch");
            return;
        }
        let leads = leader == node_id;
        self.replicated
            .store(state.replicas.len() > 1, Ordering::Release);
        self.leader_epoch
            .store(state.leader_epoch, Ordering::Release);
        self.is_leader.store(leads, Ordering::Release);
        let mut replication = self.replication();
        if !leads {
            *replication = None;
        } else {
            log.assign_leader_epoch(state.leader_epoch);
            let same_epoch = replication
                .as_ref()
                .is_some_and(|leading| leading.leader_epoch() == state.leader_epoch);
            if same_epoch {
                if let Some(leading) = replication.as_mut() {
                    leading.on_committed(state);
                }
            } else if state.replicas.len() > 1 {
                let end = log.log_end_offset();
                let durable = self.durable_end(&log);
                let config = ReplicaConfig {
                    replica_lag_time_max_ms,
                    min_insync_replicas: self.settings().min_insync_replicas,
                };
                let high_watermark = self.high_watermark().min(durable);
                *replication = Some(Leader::new(
                    node_id,
                    state,
                    end,
                    durable,
                    high_watermark,
                    config,
                    now_ms(),
                ));
            } else {
                *replication = None;
                self.high_watermark
                    .store(log.log_end_offset(), Ordering::Release);
            }
            if let Some(leading) = replication.as_ref() {
                self.high_watermark
                    .fetch_max(leading.high_watermark(), Ordering::AcqRel);
            }
        }
        drop(replication);
        drop(log);
        self.data_arrived.notify_waiters();
    }

    fn replication(&self) -> MutexGuard<'_, Option<Leader>> {
        self.replication.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What of `log` counts as durable here: the fsynced end, or the whole
    /// log for a topic that relaxed durability (`flush.messages`,
    /// `flush.ms`), which counts on its replicas instead of fsyncs.
    fn durable_end(&self, log: &Log) -> i64 {
        if self.settings().strict_durability() {
            log.flushed_offset()
        } else {
            log.log_end_offset()
        }
    }

    /// Raises the high watermark to the leader's; wakes waiting fetches
    /// and produces (the leader's own high watermark, which acks=all reads,
    /// may have moved even where the published one stayed).
    fn raise_high_watermark(&self, to: i64) {
        self.high_watermark.fetch_max(to, Ordering::AcqRel);
        self.data_arrived.notify_waiters();
    }

    /// After an fsync: the leader counts the newly durable records.
    pub fn on_flushed(&self) {
        let log = self.log();
        let mut replication = self.replication();
        if let Some(leading) = replication.as_mut() {
            let before = leading.high_watermark();
            leading.on_local_log(log.log_end_offset(), self.durable_end(&log));
            let high_watermark = leading.high_watermark();
            drop(replication);
            drop(log);
            if high_watermark != before {
                self.raise_high_watermark(high_watermark);
            }
        }
    }

    /// The ISR members the leader counts now (1 for an unreplicated
    /// partition), for `min.insync.replicas`.
    pub fn in_sync_replicas(&self) -> usize {
        self.replication()
            .as_ref()
            .map_or(1, |leading| leading.isr().len())
    }

    /// A follower's fetch from `offset` (everything below it is durable
    /// there) under `broker_epoch`: the high watermark may move.
    pub fn on_replica_fetch(&self, replica_id: i32, offset: i64, broker_epoch: i64) {
        let mut replication = self.replication();
        let Some(leading) = replication.as_mut() else {
            return;
        };
        if leading.on_fetch(replica_id, offset, broker_epoch, now_ms()) {
            let high_watermark = leading.high_watermark();
            drop(replication);
            self.raise_high_watermark(high_watermark);
        }
    }

    /// The ISR change due now, if this node leads a replicated partition
    /// (and no change is pending).
    pub fn isr_change_due(&self, now_ms: i64) -> Option<IsrProposal> {
        let mut replication = self.replication();
        let leading = replication.as_mut()?;
        leading.set_min_insync_replicas(self.settings().min_insync_replicas);
        let before = leading.high_watermark();
        let proposal = leading.tick(now_ms);
        // An expansion counts its new member at once.
        let high_watermark = leading.high_watermark();
        drop(replication);
        if high_watermark != before {
            self.raise_high_watermark(high_watermark);
        }
        proposal
    }

    /// The controller refused (or never answered) the pending ISR change.
    pub fn isr_change_refused(
        &self,
        proposal: &strom_replica::IsrProposal,
        refusal: strom_replica::Refusal,
    ) {
        if let Some(leading) = self
            .replication()
            .as_mut()
            .filter(|leading| leading.leader_epoch() == proposal.leader_epoch)
        {
            leading.on_refused(proposal, refusal);
        }
    }

    /// How an acks=all produce whose records end before `end_offset`,
    /// written in `leader_epoch`, stands; `Err` when it never will be
    /// acknowledged here: also once the epoch moved on, even if this node
    /// leads again (the leader in between may never have had the records,
    /// and this node may have truncated them since).
    pub fn acks_all(&self, end_offset: i64, leader_epoch: i32) -> Result<AcksAll, ResponseError> {
        if !self.is_leader() || self.leader_epoch() != leader_epoch {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        if self.log().is_offline() {
            return Err(ResponseError::KafkaStorageError);
        }
        let mut replication = self.replication();
        Ok(match replication.as_mut() {
            Some(leading) => {
                leading.set_min_insync_replicas(self.settings().min_insync_replicas);
                leading.acks_all(end_offset)
            }
            None if self.high_watermark() >= end_offset => AcksAll::Acknowledged,
            None => AcksAll::Waiting,
        })
    }

    /// Waits until the high watermark passes `end_offset`, in
    /// `leader_epoch`: the records are on disk on every in-sync replica.
    pub async fn wait_replicated(
        self: Arc<Self>,
        end_offset: i64,
        leader_epoch: i32,
        timeout: std::time::Duration,
    ) -> Result<(), (ResponseError, String)> {
        let partition = self;
        let deadline = tokio::time::Instant::now() + timeout;
        let name = || format!("{}-{}", partition.topic, partition.index);
        loop {
            // Registered before looking, so a change in between is not missed.
            let changed = partition.data_arrived.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match partition.acks_all(end_offset, leader_epoch) {
                Ok(AcksAll::Acknowledged) => return Ok(()),
                Ok(AcksAll::NotEnoughReplicasAfterAppend) => {
                    return Err((
                        ResponseError::NotEnoughReplicasAfterAppend,
                        format!(
                            "the write to {} reached the in-sync replicas, but they are now fewer than min.insync.replicas; it may or may not be kept",
                            name()
                        ),
                    ))
                }
                Ok(AcksAll::Waiting) => {}
                Err(ResponseError::NotLeaderOrFollower) => {
                    return Err((
                        ResponseError::NotLeaderOrFollower,
                        format!(
                            "this broker stopped leading {} before the write reached every in-sync replica; refresh the metadata and retry",
                            name()
                        ),
                    ))
                }
                Err(error) => {
                    return Err((
                        error,
                        format!("{} went offline after a storage error", name()),
                    ))
                }
            }
            tokio::select! {
                _ = changed => {}
                _ = tokio::time::sleep_until(deadline) => {
                    return Err((
                        ResponseError::RequestTimedOut,
                        format!(
                            "the write to {} did not reach every in-sync replica within the request's timeout ({} ms)",
                            name(),
                            timeout.as_millis()
                        ),
                    ));
                }
            }
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset.load(Ordering::Acquire)
    }

    pub fn last_stable_offset(&self) -> i64 {
        self.first_unstable_offset
            .load(Ordering::Acquire)
            .min(self.high_watermark())
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

    /// After a leader's write: with a single replica everything in the
    /// log is on the whole ISR; a replicated partition's leader counts the
    /// write towards its high watermark.
    fn advance(&self, log: &Log, producers: &ProducerStates) {
        self.first_unstable_offset.store(
            producers.first_unstable_offset().unwrap_or(i64::MAX),
            Ordering::Release,
        );
        let mut replication = self.replication();
        match replication.as_mut() {
            Some(leading) => {
                leading.on_local_log(log.log_end_offset(), self.durable_end(log));
                self.high_watermark
                    .fetch_max(leading.high_watermark(), Ordering::AcqRel);
            }
            None => self
                .high_watermark
                .store(log.log_end_offset(), Ordering::Release),
        }
    }

    /// A follower appends batches exactly as its leader wrote them, fetched
    /// while it followed in `fetched_epoch`: records them in the producer
    /// state (so it can lead with its producers' sequences) and indexes the
    /// transactions their markers abort. Returns the new log end, or `None`
    /// when this node leads now or the leader epoch moved on (the batches
    /// are dropped; the next fetch asks anew).
    pub fn append_replicated(
        &self,
        bytes: &[u8],
        fetched_epoch: i32,
    ) -> Result<Option<i64>, LogError> {
        let mut producers = self.producers();
        let mut log = self.log();
        if self.is_leader() || self.leader_epoch() != fetched_epoch {
            return Ok(None);
        }
        let now = now_ms();
        // A log started over at its leader's log start (which need not be
        // a batch boundary) is given the batch holding that offset first:
        // the log starts over once more, at that batch (Kafka does the same
        // on its UnexpectedAppendOffsetException).
        let end = log.log_end_offset();
        if log.log_start_offset() == end {
            let first = strom_log::batch::BatchHeader::parse(bytes)?;
            if first.base_offset < end && end < first.next_offset() {
                log.truncate_fully_and_start_at(first.base_offset, now)?;
                self.log_start_offset
                    .store(first.base_offset, Ordering::Release);
                self.high_watermark
                    .fetch_min(first.base_offset, Ordering::AcqRel);
            }
        }
        let appended = log.append_replicated(bytes, now)?;
        let mut rest = bytes;
        for info in &appended {
            let (batch, tail) = rest.split_at(info.header.total_size().min(rest.len()));
            rest = tail;
            let marker = strom_log::batch::marker(batch);
            if let Some(ended) = producers.record(&info.header, marker, now) {
                if let Some(entry) = aborted_entry(&ended, &info.header, &producers) {
                    log.add_aborted(entry)?;
                }
            }
        }
        self.first_unstable_offset.store(
            producers.first_unstable_offset().unwrap_or(i64::MAX),
            Ordering::Release,
        );
        Ok(Some(log.log_end_offset()))
    }

    /// A follower takes its leader's high watermark, never beyond what it
    /// has durable itself.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        let log = self.log();
        if self.is_leader() {
            return;
        }
        let high_watermark = leader_high_watermark.min(self.durable_end(&log));
        self.high_watermark.store(high_watermark, Ordering::Release);
    }

    /// A follower whose log diverged from its leader's removes everything
    /// from `offset` on and rebuilds its producer state for what is left.
    /// Does nothing when this node leads now or the epoch moved on.
    pub fn truncate_replica(&self, offset: i64, fetched_epoch: i32) -> Result<(), LogError> {
        let mut producers = self.producers();
        let mut log = self.log();
        if self.is_leader() || self.leader_epoch() != fetched_epoch {
            return Ok(());
        }
        let now = now_ms();
        log.truncate_to(offset, now)?;
        *producers = load_producers(&self.dir, &mut log, now)?;
        self.first_unstable_offset.store(
            producers.first_unstable_offset().unwrap_or(i64::MAX),
            Ordering::Release,
        );
        let end = log.log_end_offset();
        self.high_watermark.fetch_min(end, Ordering::AcqRel);
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Release);
        Ok(())
    }

    /// A follower whose log ends below its leader's log start drops its
    /// log and starts over, empty, at `offset`, the leader's log start; its
    /// producer state starts empty too. Does nothing when this node leads
    /// now or the epoch moved on.
    pub fn restart_replica_at(&self, offset: i64, fetched_epoch: i32) -> Result<(), LogError> {
        let mut producers = self.producers();
        let mut log = self.log();
        if self.is_leader() || self.leader_epoch() != fetched_epoch {
            return Ok(());
        }
        log.truncate_fully_and_start_at(offset, now_ms())?;
        producer_state::delete_snapshots(&self.dir);
        *producers = ProducerStates::default();
        self.first_unstable_offset
            .store(i64::MAX, Ordering::Release);
        self.high_watermark.store(offset, Ordering::Release);
        self.log_start_offset.store(offset, Ordering::Release);
        Ok(())
    }

    /// A follower moves its log start up to its leader's (DeleteRecords or
    /// retention there), as far as its own log reaches.
    pub fn follow_log_start(&self, leader_log_start_offset: i64) -> Result<(), LogError> {
        if leader_log_start_offset <= self.log_start_offset() {
            return Ok(());
        }
        let mut log = self.log();
        if self.is_leader() {
            return Ok(());
        }
        let to = leader_log_start_offset.min(log.log_end_offset());
        log.delete_records_before(to)?;
        self.log_start_offset
            .store(log.log_start_offset(), Ordering::Release);
        Ok(())
    }

    /// Reads whole batches from `offset` up to the log end, for a follower
    /// (or a coordinator replaying the partition it leads).
    pub fn read_for_replica(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<Option<ReadSlice>, LogError> {
        let log = self.log();
        let end = log.log_end_offset();
        log.read(offset, max_bytes, end, min_one_batch)
    }

    /// The epoch of this log's last batch (`None`: it has none), which a
    /// follower names when it fetches.
    pub fn last_fetched_epoch(&self) -> Option<i32> {
        self.log().leader_epochs().latest_epoch()
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
        self.append_checked(batch, Origin::Broker, |_, _| Ok(()))
    }

    /// [`Partition::append`] of a transactional batch of the broker's own
    /// (offsets a TxnOffsetCommit sends), admitted as a client's would be
    /// (see [`Partition::append_from_client`]).
    pub fn append_admitted(
        &self,
        batch: &mut [u8],
        admit: impl FnOnce((i32, u64)) -> Result<(), ResponseError>,
    ) -> Result<Appended, LogError> {
        self.append_checked(batch, Origin::Broker, |_, guard| admit(guard))
    }

    /// Appends a client's batch: one from an idempotent producer is checked
    /// against its sequences, and a transactional batch that would open a
    /// transaction here must first be admitted by `admit` (KIP-890's
    /// verification). It is asked under the same lock that transaction
    /// markers take, so a marker written meanwhile cannot slip between the
    /// verdict and the append and leave a transaction open that nobody ends;
    /// it is told where the transaction stands now (the leader epoch and the
    /// producer's marker count, see [`Partition::transaction_guard`]).
    pub fn append_from_client(
        &self,
        batch: &mut [u8],
        admit: impl FnOnce(&strom_log::batch::BatchHeader, (i32, u64)) -> Result<(), ResponseError>,
    ) -> Result<Appended, LogError> {
        self.append_checked(batch, Origin::Client, admit)
    }

    fn append_checked(
        &self,
        batch: &mut [u8],
        origin: Origin,
        admit: impl FnOnce(&strom_log::batch::BatchHeader, (i32, u64)) -> Result<(), ResponseError>,
    ) -> Result<Appended, LogError> {
        let header = strom_log::batch::BatchHeader::parse(batch)?;
        let producers = self.producers();
        if header.is_transactional()
            && !header.is_control()
            && !producers.has_open_transaction(header.producer_id)
        {
            let guard = (self.leader_epoch(), producers.markers(header.producer_id));
            if let Err(error) = admit(&header, guard) {
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
        if let Err(error) = producers.check_marker(producer_id, producer_epoch, coordinator_epoch) {
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
            .write(
                producers,
                &mut batch,
                Some(Marker {
                    control,
                    coordinator_epoch,
                }),
            )?
            .map(|info| info.last_offset + 1))
    }

    /// Where a transaction of `producer_id` stands here, for a verification
    /// made away from the producer-state lock: the leader epoch and the
    /// producer's marker count (any marker, written here or fetched from
    /// another leader, changes it).
    pub fn transaction_guard(&self, producer_id: i64) -> (i32, u64) {
        let producers = self.producers();
        (self.leader_epoch(), producers.markers(producer_id))
    }

    /// Whether `producer_id` has a transaction open in this partition (its
    /// next transactional batch needs no verification).
    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.producers().has_open_transaction(producer_id)
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
        marker: Option<Marker>,
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

/// The producer state of `log`: the newest snapshot at or below its end,
/// then the batches after it; re-adds aborted-transaction index entries a
/// crash may have lost before they were written.
fn load_producers(dir: &Path, log: &mut Log, now: i64) -> Result<ProducerStates, LogError> {
    let (replay_from, mut producers) =
        producer_state::load_snapshot(dir, log.log_end_offset(), now)
            .unwrap_or_else(|| (log.log_start_offset(), ProducerStates::default()));
    let mut aborted = Vec::new();
    log.for_each_batch_header(replay_from, |header, marker| {
        if let Some(ended) = producers.record(header, marker, now) {
            aborted.extend(aborted_entry(&ended, header, &producers));
        }
    })?;
    log.restore_aborted(aborted)?;
    Ok(producers)
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::configs::BrokerOverrides;
    use strom_log::batch::testing;

    fn state(leader_epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            leader_epoch,
            partition_epoch: leader_epoch,
            replicas: vec![1, 2, 3],
            isr: isr.to_vec(),
        }
    }

    fn open_replicated(dir: &Path, checkpointed_high_watermark: Option<i64>) -> Partition {
        let settings =
            BrokerOverrides::from_static(Default::default()).topic_settings(&Default::default());
        let identity = PartitionIdentity {
            topic: "t".to_string(),
            topic_id: Uuid::nil(),
            index: 0,
            leader_epoch: 0,
            replicated: true,
            checkpointed_high_watermark,
        };
        Partition::open(dir, identity, settings, FileCache::new(16), Recovery::Clean).unwrap()
    }

    /// A replicated partition reopens at its checkpointed high watermark
    /// (within its log), and at its log start without one: records past it
    /// may never have been committed.
    #[test]
    fn a_replicated_partition_reopens_at_its_checkpointed_high_watermark() {
        let dir = tempfile::tempdir().unwrap();
        {
            let partition = open_replicated(dir.path(), None);
            for _ in 0..5 {
                partition.append(&mut testing::batch(1, 0, b"x")).unwrap();
            }
            partition.log().flush().unwrap();
        }
        assert_eq!(open_replicated(dir.path(), None).high_watermark(), 0);
        assert_eq!(open_replicated(dir.path(), Some(3)).high_watermark(), 3);
        assert_eq!(open_replicated(dir.path(), Some(9)).high_watermark(), 5);
    }

    /// KIP-890 with a coordinator elsewhere: a verification made before a
    /// marker for the producer reached the partition does not admit the
    /// transaction's first batch after it (the marker may have ended the very
    /// transaction that was verified); one made after it does, and a batch
    /// that continues the open transaction is not asked about.
    #[test]
    fn a_verification_from_before_a_marker_does_not_admit_a_transactions_first_batch() {
        let dir = tempfile::tempdir().unwrap();
        let partition = open_replicated(dir.path(), None);
        partition.apply_state(1, 1, &state(1, &[1]), 30_000);
        let transactional = || {
            let mut batch = testing::batch(1, 0, b"offsets");
            testing::make_transactional(&mut batch, 7);
            batch
        };
        let verified_at = |guard: (i32, u64)| {
            move |now: (i32, u64)| {
                if now == guard {
                    Ok(())
                } else {
                    Err(ResponseError::CoordinatorNotAvailable)
                }
            }
        };
        let before = partition.transaction_guard(7);
        partition
            .write_marker(7, 0, ControlType::Abort, 0)
            .unwrap()
            .unwrap();
        let refused = partition
            .append_admitted(&mut transactional(), verified_at(before))
            .unwrap();
        assert!(
            matches!(
                refused,
                Appended::Rejected(ResponseError::CoordinatorNotAvailable)
            ),
            "{refused:?}"
        );

        let after = partition.transaction_guard(7);
        let admitted = partition
            .append_admitted(&mut transactional(), verified_at(after))
            .unwrap();
        assert!(matches!(admitted, Appended::Written(_)), "{admitted:?}");
        let continued = partition
            .append_admitted(&mut transactional(), |_| {
                panic!("asked about an open transaction")
            })
            .unwrap();
        assert!(matches!(continued, Appended::Written(_)), "{continued:?}");
    }

    /// Node 1 leads in epoch 1 and appends; leadership goes to node 2 and
    /// comes back in epoch 3. The write of epoch 1 waits on, its replicas
    /// all fetch past it in epoch 3: it is still never acknowledged, since
    /// the leader of epoch 2 may never have had it (this node may since
    /// have truncated it and written other records at its offsets).
    #[test]
    fn an_acks_all_write_is_never_acknowledged_once_the_leader_epoch_it_was_written_in_ended() {
        let dir = tempfile::tempdir().unwrap();
        let partition = open_replicated(dir.path(), None);
        partition.apply_state(1, 1, &state(1, &[1, 2, 3]), 30_000);
        assert!(partition.is_leader() && partition.is_replicated());
        let end = match partition.append(&mut testing::batch(1, 0, b"x")).unwrap() {
            Appended::Written(info) => info.last_offset + 1,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(partition.acks_all(end, 1), Ok(AcksAll::Waiting));

        partition.apply_state(1, 2, &state(2, &[2, 3]), 30_000);
        assert_eq!(
            partition.acks_all(end, 1),
            Err(ResponseError::NotLeaderOrFollower)
        );
        partition.apply_state(1, 1, &state(3, &[1, 2, 3]), 30_000);
        partition.log().flush().unwrap();
        partition.on_flushed();
        partition.on_replica_fetch(2, end, -1);
        partition.on_replica_fetch(3, end, -1);
        assert!(
            partition.high_watermark() >= end,
            "every replica is past the write"
        );
        assert_eq!(
            partition.acks_all(end, 1),
            Err(ResponseError::NotLeaderOrFollower),
            "a write of an ended epoch is acknowledged"
        );
        assert_eq!(partition.acks_all(end, 3), Ok(AcksAll::Acknowledged));
    }
}
