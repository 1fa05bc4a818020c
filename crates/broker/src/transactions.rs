//! The runtime around the transaction coordinator: it feeds requests and
//! the clock to the [`TransactionCoordinator`] state machine, persists each
//! state change in `__transaction_state` before acting on it (appended in
//! order under `writes`, waited for durable after letting go of it, so ids
//! do not queue behind each other's fsyncs), and writes
//! the COMMIT or ABORT markers into every partition of a transaction.
//!
//! Order of a transaction's end, which recovery relies on:
//! 1. `Prepare*` is written to `__transaction_state` (durable);
//! 2. a marker is written to each partition (durable), ending the
//!    producer's transaction there and moving the last stable offset;
//! 3. `Complete*` is written.
//!
//! After a crash between 1 and 3 the coordinator, rebuilt from the topic,
//! still says `Prepare*`, and the markers are written again (a marker for a
//! transaction that is no longer open in a partition changes nothing there).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use strom_coordinator::records::partition_for;
use strom_coordinator::transaction::{
    self as txn, EndOutcome, InitOutcome, MarkerJob, TopicPartition, TransactionCoordinator,
    TxnConfig, TxnError,
};
use strom_log::batch::ControlType;
use tokio::sync::OnceCell;

use crate::coordinator_loads::Loads;
use crate::groups::Groups;
use crate::groups::OFFSETS_TOPIC;
use crate::internal_topics::{self, InternalLog};
use crate::partition::now_ms;
use crate::peer::PeerPool;
use crate::topics::TopicError;

pub const TRANSACTION_TOPIC: &str = "__transaction_state";

pub struct Transactions {
    log: InternalLog,
    /// The group coordinator, whose offsets a transaction's markers settle.
    groups: Arc<Groups>,
    coordinator: Arc<Mutex<TransactionCoordinator>>,
    /// Held from a state change until its record is written, so that records
    /// of one transactional id reach the log in the order of the changes.
    writes: tokio::sync::Mutex<()>,
    /// Transactional ids whose markers are being written right now.
    finishing: Arc<Mutex<HashSet<String>>>,
    /// Set once `__transaction_state` exists.
    ready: OnceCell<()>,
    /// The partitions of `__transaction_state` loaded here.
    loads: Loads,
    /// Connections to the other brokers: verifications and markers.
    peers: PeerPool,
}

/// A refusal: a Kafka error and what to tell the client.
#[derive(Debug, Clone)]
pub struct Refused {
    pub error: ResponseError,
    pub message: String,
}

impl From<TxnError> for Refused {
    fn from(error: TxnError) -> Refused {
        let (error, message) = match error {
            TxnError::ConcurrentTransactions => (
                ResponseError::ConcurrentTransactions,
                "the previous transaction is still being completed; retry",
            ),
            TxnError::ProducerFenced => (
                ResponseError::ProducerFenced,
                "a newer producer with this transactional.id exists (or the transaction timed out)",
            ),
            TxnError::InvalidProducerIdMapping => (
                ResponseError::InvalidProducerIdMapping,
                "the producer id does not belong to this transactional.id; call InitProducerId",
            ),
            TxnError::InvalidTxnState => (
                ResponseError::InvalidTxnState,
                "the request does not fit the transaction's state",
            ),
            TxnError::InvalidTransactionTimeout => (
                ResponseError::InvalidTransactionTimeout,
                "transaction.timeout.ms must be positive and at most the broker's transaction.max.timeout.ms",
            ),
        };
        Refused {
            error,
            message: message.to_string(),
        }
    }
}

impl Refused {
    /// The error code for a request version: versions before KIP-588 know
    /// no PRODUCER_FENCED and get INVALID_PRODUCER_EPOCH instead.
    pub fn code(&self, knows_producer_fenced: bool) -> i16 {
        if self.error == ResponseError::ProducerFenced && !knows_producer_fenced {
            ResponseError::InvalidProducerEpoch.code()
        } else {
            self.error.code()
        }
    }
}

fn unavailable(message: impl Into<String>) -> Refused {
    Refused {
        error: ResponseError::CoordinatorNotAvailable,
        message: message.into(),
    }
}

impl Transactions {
    pub fn new(log: InternalLog, groups: Arc<Groups>, config: TxnConfig) -> Transactions {
        Transactions {
            log,
            groups,
            coordinator: Arc::new(Mutex::new(TransactionCoordinator::new(config))),
            writes: tokio::sync::Mutex::new(()),
            finishing: Arc::default(),
            ready: OnceCell::const_new(),
            loads: Loads::default(),
            peers: PeerPool::new("strom-transactions"),
        }
    }

    fn coordinator(&self) -> MutexGuard<'_, TransactionCoordinator> {
        self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A look at the transactions loaded here, for the requests that
    /// describe or list them; every change goes through this runtime.
    pub fn read<T>(&self, look: impl FnOnce(&TransactionCoordinator) -> T) -> T {
        look(&self.coordinator())
    }

    /// KIP-890, at the coordinator: is `partition` in `transactional_id`'s
    /// open transaction, under this producer id and epoch?
    pub fn verify(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partition: &TopicPartition,
    ) -> Result<(), TxnError> {
        self.coordinator()
            .verify(transactional_id, producer.0, producer.1, partition)
    }

    /// Creates `__transaction_state` on first use, then loads the
    /// partitions this node leads.
    pub async fn ensure_ready(self: &Arc<Self>) -> Result<(), TopicError> {
        let created = self.ready.initialized();
        self.ready
            .get_or_try_init(|| {
                internal_topics::create(
                    &self.log,
                    TRANSACTION_TOPIC,
                    "transaction.state.log.num.partitions",
                )
            })
            .await?;
        if !created {
            self.follow_leadership().await;
        }
        Ok(())
    }

    /// Whether this node coordinates `transactional_id` now (see
    /// [`Loads::owns`]), after creating the topic on first use and loading
    /// the id's partition if it leads it but has not loaded it yet.
    pub(crate) async fn ready(self: &Arc<Self>, transactional_id: &str) -> Result<(), Refused> {
        self.ensure_ready()
            .await
            .map_err(|error| unavailable(error.message))?;
        let owns = || {
            self.loads
                .owns_key(&self.log, TRANSACTION_TOPIC, transactional_id)
        };
        let owned = match owns() {
            Err(ResponseError::CoordinatorLoadInProgress) => {
                self.follow_leadership().await;
                owns()
            }
            outcome => outcome,
        };
        owned.map_err(|error| Refused {
            error,
            message: match error {
                ResponseError::NotCoordinator => format!(
                    "this broker is not the coordinator of transactional id '{transactional_id}'; ask FindCoordinator"
                ),
                _ => format!("loading the state of transactional id '{transactional_id}'; retry"),
            },
        })
    }

    /// The coordinator epoch of `transactional_id` here (the leader epoch
    /// its partition of `__transaction_state` is led and loaded in), or
    /// `None` when this node does not coordinate it now.
    fn coordinator_epoch(&self, transactional_id: &str) -> Option<i32> {
        let partitions = self.log.partitions(TRANSACTION_TOPIC)?;
        let index = partition_for(transactional_id, partitions.count() as i32);
        self.loads.epoch(&partitions, index)
    }

    /// Makes the loaded transactions follow leadership: forgets the ids of
    /// the partitions of `__transaction_state` this node no longer leads
    /// (or leads in a newer epoch), loads those it leads (to the log end),
    /// and finishes the prepared transactions among them.
    pub async fn follow_leadership(self: &Arc<Self>) {
        let _turn = self.loads.turn.lock().await;
        let Some(partitions) = self.log.partitions(TRANSACTION_TOPIC) else {
            return;
        };
        let count = partitions.count() as i32;
        let plan = self.loads.plan(&partitions);
        for index in &plan.unload {
            self.coordinator()
                .unload(|id| partition_for(id, count) == *index);
        }
        if plan.load.is_empty() {
            return;
        }
        self.loads
            .load(TRANSACTION_TOPIC, plan.load, {
                let coordinator = self.coordinator.clone();
                move |partition| load(&coordinator, partition)
            })
            .await;
        let _guard = self.writes.lock().await;
        self.resume_prepared();
    }

    /// InitProducerId with a transactional id: a producer id and a new
    /// epoch, after aborting an older producer's open transaction.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        mut expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), Refused> {
        self.ready(transactional_id).await?;
        let mut allocated = None;
        loop {
            let guard = self.writes.lock().await;
            let outcome = self.coordinator().init_producer_id(
                now_ms(),
                transactional_id,
                timeout_ms,
                expected,
                || allocated.take(),
            )?;
            match outcome {
                None => {
                    drop(guard);
                    let allocator = self.log.clone();
                    let id =
                        tokio::spawn(
                            async move { allocator.metadata().allocate_producer_id().await },
                        )
                        .await
                        .map_err(|_| unavailable("allocating a producer id failed"))?
                        .map_err(|error| unavailable(error.message))?;
                    allocated = Some(id);
                }
                Some(InitOutcome::Ready {
                    producer_id,
                    producer_epoch,
                }) => {
                    let durable = self.record(transactional_id)?;
                    drop(guard);
                    durable.wait().await?;
                    return Ok((producer_id, producer_epoch));
                }
                Some(InitOutcome::AbortFirst(job)) => {
                    tracing::info!(
                        transactional_id,
                        producer_id = job.producer_id,
                        epoch = job.producer_epoch,
                        "fencing the previous producer: aborting its open transaction"
                    );
                    let claim = self.claim(&job);
                    let durable = self.record(transactional_id)?;
                    drop(guard);
                    durable.wait().await?;
                    self.clone().finish(job, claim).await?;
                    // The epoch moved on; the next round bumps it once more.
                    expected = None;
                }
            }
        }
    }

    /// AddPartitionsToTxn and AddOffsetsToTxn.
    pub async fn add_partitions(
        self: &Arc<Self>,
        transactional_id: &str,
        producer: (i64, i16),
        partitions: &[TopicPartition],
    ) -> Result<(), Refused> {
        self.ready(transactional_id).await?;
        let guard = self.writes.lock().await;
        let changed = self.coordinator().add_partitions(
            now_ms(),
            transactional_id,
            producer.0,
            producer.1,
            partitions,
        )?;
        let durable = if changed {
            self.record(transactional_id)?
        } else {
            self.settled(transactional_id)?
        };
        drop(guard);
        durable.wait().await
    }

    /// EndTxn: answered once every marker is written and the end recorded.
    pub async fn end(
        self: &Arc<Self>,
        transactional_id: &str,
        producer: (i64, i16),
        commit: bool,
    ) -> Result<(), Refused> {
        self.ready(transactional_id).await?;
        let guard = self.writes.lock().await;
        let outcome =
            self.coordinator()
                .end(now_ms(), transactional_id, producer.0, producer.1, commit)?;
        match outcome {
            EndOutcome::Done => {
                let durable = self.settled(transactional_id)?;
                drop(guard);
                durable.wait().await
            }
            EndOutcome::Markers(job) => {
                let claim = self.claim(&job);
                let durable = self.record(transactional_id)?;
                drop(guard);
                durable.wait().await?;
                self.clone().finish(job, claim).await
            }
        }
    }

    /// Aborts transactions past their timeout, and retries markers of
    /// prepared transactions that have waited too long.
    pub async fn run_timer(self: Arc<Self>) {
        let interval_ms = self
            .log
            .config_i64("transaction.abort.timed.out.transaction.cleanup.interval.ms")
            .max(10) as u64;
        let expiration_ms = self.log.config_i64("transactional.id.expiration.ms");
        let expiry_interval = std::time::Duration::from_millis(
            self.log
                .config_i64("transaction.remove.expired.transaction.cleanup.interval.ms")
                .max(1) as u64,
        );
        let mut expiry_due = tokio::time::Instant::now() + expiry_interval;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(interval_ms)).await;
            if self.ready.get().is_none() {
                continue;
            }
            if tokio::time::Instant::now() >= expiry_due {
                expiry_due = tokio::time::Instant::now() + expiry_interval;
                self.remove_expired(expiration_ms).await;
            }
            // Markers that a failed write or a crash left unwritten.
            {
                let _guard = self.writes.lock().await;
                self.resume_prepared();
            }
            let now = now_ms();
            let timed_out = self.coordinator().timed_out(now);
            // Only the coordinator acts: another broker's copy of a
            // transaction may be stale.
            for transactional_id in timed_out.into_iter().filter(|id| self.coordinates(id)) {
                let (job, claim, durable) = {
                    let _guard = self.writes.lock().await;
                    let job = self
                        .coordinator()
                        .abort_timed_out(now_ms(), &transactional_id);
                    let Some(job) = job else { continue };
                    tracing::info!(%transactional_id, producer_id = job.producer_id, "aborting a transaction past its transaction.timeout.ms");
                    let claim = self.claim(&job);
                    (job, claim, self.record(&transactional_id))
                };
                if let Err(error) = async { durable?.wait().await }.await {
                    tracing::warn!(%transactional_id, error = %error.message, "could not record the abort");
                    continue;
                }
                tokio::spawn(self.clone().finish(job, claim));
            }
        }
    }
}

impl Transactions {
    /// Forgets transactional ids idle for `transactional.id.expiration.ms`
    /// between transactions, each with a tombstone in `__transaction_state`.
    async fn remove_expired(&self, expiration_ms: i64) {
        // Removed and recorded under one hold of `writes`, then waited for
        // together (group commit makes them durable in the same fsyncs).
        let recorded: Vec<(String, Result<Durable, Refused>)> = {
            let _guard = self.writes.lock().await;
            let expired = self.coordinator().remove_expired(now_ms(), expiration_ms);
            expired
                .into_iter()
                .map(|transactional_id| {
                    let durable = self.record(&transactional_id);
                    (transactional_id, durable)
                })
                .collect()
        };
        let mut removed = 0;
        for (transactional_id, durable) in recorded {
            match async { durable?.wait().await }.await {
                Ok(()) => removed += 1,
                // Forgotten in memory; a restart may bring it back until the
                // next pass removes it again.
                Err(error) => {
                    tracing::warn!(%transactional_id, error = %error.message, "could not record the removal of an expired transactional id")
                }
            }
        }
        if removed > 0 {
            tracing::info!(
                transactional_ids = removed,
                "removed transactional ids idle longer than transactional.id.expiration.ms"
            );
        }
    }
}

impl Transactions {
    /// Appends the state of `transactional_id` to its partition of
    /// `__transaction_state`. Called holding `writes`, so records reach the log
    /// in the order of the changes; the caller lets go of the lock and then
    /// waits on the returned [`Durable`], so transactions of other ids do not
    /// queue behind this one's fsync.
    fn record(&self, transactional_id: &str) -> Result<Durable, Refused> {
        let value = self
            .coordinator()
            .get(transactional_id)
            .map(txn::transaction_value);
        let record = (txn::transaction_key(transactional_id), value);
        let partition = self
            .log
            .partition_for_key(TRANSACTION_TOPIC, transactional_id)
            .ok_or_else(|| unavailable("__transaction_state does not exist"))?;
        internal_topics::append_now(&self.log, partition, vec![record])
            .map(|flushed| Durable {
                flushed,
                transactional_id: transactional_id.to_string(),
            })
            .map_err(|error| state_not_recorded(transactional_id, error))
    }
}

impl Transactions {
    /// Whatever state of `transactional_id` is already in the log, made durable:
    /// for an answer that changes nothing but must not run ahead of an earlier
    /// change still waiting for its fsync (a retried request).
    fn settled(&self, transactional_id: &str) -> Result<Durable, Refused> {
        let partition = self
            .log
            .partition_for_key(TRANSACTION_TOPIC, transactional_id)
            .ok_or_else(|| unavailable("__transaction_state does not exist"))?;
        let leader_epoch = partition.leader_epoch();
        let end = partition.log_end_offset();
        Ok(Durable {
            flushed: internal_topics::durable_at(&self.log, partition, end, leader_epoch),
            transactional_id: transactional_id.to_string(),
        })
    }
}

/// A transaction state record on its way to disk.
struct Durable {
    flushed: internal_topics::Durable,
    transactional_id: String,
}

impl Durable {
    async fn wait(self) -> Result<(), Refused> {
        internal_topics::durable(self.flushed)
            .await
            .map_err(|error| state_not_recorded(&self.transactional_id, error))
    }
}

fn state_not_recorded(transactional_id: &str, error: String) -> Refused {
    tracing::error!(transactional_id, %error, "could not write transaction state");
    unavailable(format!("could not record the transaction's state: {error}"))
}

impl Transactions {
    /// Finishes every prepared transaction whose markers nobody is writing.
    /// Called holding `writes`, under which every transition to a prepared
    /// state claims its markers, so a job is never finished twice at once.
    fn resume_prepared(self: &Arc<Self>) {
        let prepared = self.coordinator().pending_markers();
        // Only the coordinator writes markers: another broker's copy of a
        // transaction may be stale.
        for job in prepared
            .into_iter()
            .filter(|job| self.coordinates(&job.transactional_id))
        {
            let claim = self.claim(&job);
            if claim.is_some() {
                tokio::spawn(self.clone().finish(job, claim));
            }
        }
    }
}

/// The right to write one transactional id's markers, given up on drop.
struct Claim {
    finishing: Arc<Mutex<HashSet<String>>>,
    transactional_id: String,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.finishing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.transactional_id);
    }
}

impl Transactions {
    /// Claims the markers of `job`; `None` if they are being written already.
    fn claim(&self, job: &MarkerJob) -> Option<Claim> {
        let mut finishing = self.finishing.lock().unwrap_or_else(|p| p.into_inner());
        finishing
            .insert(job.transactional_id.clone())
            .then(|| Claim {
                finishing: self.finishing.clone(),
                transactional_id: job.transactional_id.clone(),
            })
    }
}

impl Transactions {
    /// Writes the markers of a prepared transaction into all its partitions,
    /// waits until they are durable, and records the transaction complete. A
    /// job somebody else has claimed is theirs to finish: nothing is done.
    async fn finish(self: Arc<Self>, job: MarkerJob, claim: Option<Claim>) -> Result<(), Refused> {
        let Some(claim) = claim else {
            return Ok(());
        };
        self.write_markers(&job, claim).await
    }
}

impl Transactions {
    async fn write_markers(&self, job: &MarkerJob, claim: Claim) -> Result<(), Refused> {
        let mut pending: Vec<(String, i32)> = job.partitions.to_vec();
        let deadline = tokio::time::Instant::now() + MARKER_RETRY_WINDOW;
        loop {
            // Markers carry the coordinator epoch (the leader epoch of the id's
            // partition of __transaction_state): a partition refuses those of a
            // coordinator older than the last it heard from. One that no longer
            // coordinates stops; its successor completes the transaction.
            let Some(coordinator_epoch) = self.coordinator_epoch(&job.transactional_id) else {
                return Err(Refused {
                error: ResponseError::NotCoordinator,
                message: format!(
                    "this broker no longer coordinates transactional id '{}'; its new coordinator completes the transaction",
                    job.transactional_id
                ),
            });
            };
            // The partitions led here first, then the others from their leaders.
            let local = self
                .write_local_markers(
                    job.producer_id,
                    job.producer_epoch,
                    job.commit,
                    coordinator_epoch,
                    &pending,
                )
                .await;
            let mut failed = None;
            pending = pending
                .into_iter()
                .zip(local)
                .filter_map(|(partition, outcome)| match outcome {
                    MarkerOutcome::Done => None,
                    MarkerOutcome::NotLeader => Some(partition),
                    MarkerOutcome::Failed(error) => {
                        failed = Some(error);
                        Some(partition)
                    }
                })
                .collect();
            if !pending.is_empty() {
                pending = self.send_markers(job, coordinator_epoch, pending).await;
            }
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let error = failed.unwrap_or(ResponseError::NotLeaderOrFollower);
                tracing::warn!(transactional_id = %job.transactional_id, ?pending, ?error, "transaction markers not written yet; trying again later");
                return Err(Refused {
                error: ResponseError::CoordinatorNotAvailable,
                message: format!("the transaction's markers could not be written to {pending:?} yet ({error:?}); it completes once they are"),
            });
            }
            tokio::time::sleep(MARKER_RETRY_BACKOFF).await;
        }
        let durable = {
            let _guard = self.writes.lock().await;
            let completed =
                self.coordinator()
                    .complete(now_ms(), &job.transactional_id, job.producer_epoch);
            let durable = completed.then(|| self.record(&job.transactional_id));
            // Given up while `writes` is held, so the next transaction of this
            // id can always claim its own markers.
            drop(claim);
            durable
        };
        match durable {
            Some(durable) => durable?.wait().await,
            None => Ok(()),
        }
    }
}

/// How long one attempt to write a transaction's markers goes on before
/// the timer's next pass takes it up again, and the pause between rounds.
const MARKER_RETRY_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);
const MARKER_RETRY_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);

/// What writing a marker into one partition came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerOutcome {
    /// Written and durable on every in-sync replica; or moot (a newer
    /// producer epoch already wrote there, or the topic is gone).
    Done,
    /// This node does not lead the partition (or stopped leading it
    /// before the marker was replicated): its leader must write it.
    NotLeader,
    /// The write failed here; the marker is written again later.
    Failed(ResponseError),
}

impl Transactions {
    /// Writes a COMMIT or ABORT marker for `producer_id` into each of
    /// `partitions` this node leads, and waits until each is durable on every
    /// in-sync replica (markers are written with acks=all, as in Kafka). A
    /// marker in a partition of `__consumer_offsets` settles the offsets the
    /// transaction staged for the groups there. Returns each partition's
    /// outcome, in order. The transaction coordinator calls this for its own
    /// partitions; WriteTxnMarkers, from the coordinator on another broker,
    /// for the partitions led here.
    pub async fn write_local_markers(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        partitions: &[(String, i32)],
    ) -> Vec<MarkerOutcome> {
        let control = if commit {
            ControlType::Commit
        } else {
            ControlType::Abort
        };
        let mut outcomes = Vec::with_capacity(partitions.len());
        let mut waits = Vec::new();
        for (at, (topic, index)) in partitions.iter().enumerate() {
            let partition = match self.log.partition(topic, *index) {
                Some(partition) if partition.is_leader() => partition,
                Some(_) => {
                    outcomes.push(MarkerOutcome::NotLeader);
                    continue;
                }
                None if self.log.metadata().not_here(topic, *index)
                    == ResponseError::NotLeaderOrFollower =>
                {
                    outcomes.push(MarkerOutcome::NotLeader);
                    continue;
                }
                None => {
                    // Deleted since: nothing left to mark.
                    outcomes.push(MarkerOutcome::Done);
                    continue;
                }
            };
            let leader_epoch = partition.leader_epoch();
            match partition.write_marker(producer_id, producer_epoch, control, coordinator_epoch) {
                Ok(Ok(end)) => {
                    outcomes.push(MarkerOutcome::Done);
                    waits.push((
                        at,
                        internal_topics::durable_at(&self.log, partition, end, leader_epoch),
                    ));
                }
                Ok(Err(ResponseError::NotLeaderOrFollower)) => {
                    outcomes.push(MarkerOutcome::NotLeader)
                }
                Ok(Err(ResponseError::TransactionCoordinatorFenced)) => {
                    // A newer coordinator wrote there: the one asking is deposed
                    // (it stops once it learns so), and is told.
                    tracing::warn!(
                        topic,
                        partition = index,
                        coordinator_epoch,
                        "transaction marker from a deposed coordinator refused"
                    );
                    outcomes.push(MarkerOutcome::Failed(
                        ResponseError::TransactionCoordinatorFenced,
                    ));
                }
                Ok(Err(error)) => {
                    // A newer producer epoch already wrote there: this marker is moot.
                    tracing::warn!(
                        topic,
                        partition = index,
                        ?error,
                        "transaction marker refused"
                    );
                    outcomes.push(MarkerOutcome::Done);
                }
                Err(error) => {
                    tracing::error!(topic, partition = index, %error, "could not write a transaction marker");
                    outcomes.push(MarkerOutcome::Failed(ResponseError::KafkaStorageError));
                }
            }
        }
        let (places, durables): (Vec<usize>, Vec<_>) = waits.into_iter().unzip();
        let mut offsets_marked = Vec::new();
        for (at, durable) in places.into_iter().zip(join_all(durables).await) {
            let (topic, index) = &partitions[at];
            match durable {
                Ok(()) if topic == OFFSETS_TOPIC => offsets_marked.push(*index),
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(topic, partition = index, %error, "a transaction marker did not become durable");
                    outcomes[at] = MarkerOutcome::NotLeader;
                }
            }
        }
        // The markers are durable: the offsets the transaction committed to
        // groups in those partitions settle, as a replay would settle them.
        if !offsets_marked.is_empty() {
            let count = self
                .log
                .partitions(OFFSETS_TOPIC)
                .map_or(0, |partitions| partitions.count() as i32);
            self.groups
                .complete_transaction(producer_id, commit, &offsets_marked, count);
        }
        outcomes
    }
}

impl Transactions {
    /// Sends the markers of `job` for `partitions`, which other brokers lead,
    /// to their leaders (WriteTxnMarkers), one request per leader; returns the
    /// partitions still to be marked.
    async fn send_markers(
        &self,
        job: &MarkerJob,
        coordinator_epoch: i32,
        partitions: Vec<(String, i32)>,
    ) -> Vec<(String, i32)> {
        let mut by_leader: std::collections::BTreeMap<(i32, String), Vec<(String, i32)>> =
            std::collections::BTreeMap::new();
        let mut pending = Vec::new();
        for (topic, index) in partitions {
            match self.log.metadata().leader_of(&topic, index) {
                Some(leader) if leader.node_id != self.log.node_id() => by_leader
                    .entry((leader.node_id, format!("{}:{}", leader.host, leader.port)))
                    .or_default()
                    .push((topic, index)),
                // No leader now, or this node leads it since: the next round.
                _ => pending.push((topic, index)),
            }
        }
        let sends = by_leader
            .into_iter()
            .map(|((leader, address), partitions)| async move {
                let outcome =
                    send_markers_to(&self.peers, &address, job, coordinator_epoch, &partitions)
                        .await;
                (leader, partitions, outcome)
            });
        for (leader, partitions, outcome) in join_all(sends).await {
            match outcome {
                Ok(codes) => {
                    for ((topic, index), code) in partitions.into_iter().zip(codes) {
                        match ResponseError::try_from_code(code) {
                            None => {}
                            Some(
                                ResponseError::NotLeaderOrFollower
                                | ResponseError::UnknownTopicOrPartition
                                | ResponseError::KafkaStorageError
                                | ResponseError::RequestTimedOut
                                | ResponseError::NotEnoughReplicas
                                | ResponseError::NotEnoughReplicasAfterAppend,
                            ) => pending.push((topic, index)),
                            Some(error) => {
                                // Refused for good there (a newer producer epoch
                                // wrote): the marker is moot.
                                tracing::warn!(
                                    topic,
                                    partition = index,
                                    leader,
                                    ?error,
                                    "transaction marker refused by the partition's leader"
                                );
                            }
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(leader, %error, "sending transaction markers failed");
                    pending.extend(partitions);
                }
            }
        }
        pending
    }
}

/// One WriteTxnMarkers request to the broker at `address`: the error code
/// of each of `partitions`, in order.
async fn send_markers_to(
    peers: &PeerPool,
    address: &str,
    job: &MarkerJob,
    coordinator_epoch: i32,
    partitions: &[(String, i32)],
) -> anyhow::Result<Vec<i16>> {
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{
        ApiKey, ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    };
    use kafka_protocol::protocol::StrBytes;

    let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
    for (topic, index) in partitions {
        match topics.iter_mut().find(|t| t.name.as_str() == topic) {
            Some(entry) => entry.partition_indexes.push(*index),
            None => topics.push(
                WritableTxnMarkerTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_indexes(vec![*index]),
            ),
        }
    }
    let request =
        WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(job.producer_id))
            .with_producer_epoch(job.producer_epoch)
            .with_transaction_result(job.commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(topics)]);
    let call =
        peers.call::<_, WriteTxnMarkersResponse>(address, ApiKey::WriteTxnMarkers, 1, &request);
    let response = tokio::time::timeout(MARKER_RETRY_WINDOW, call)
        .await
        .map_err(|_| anyhow::anyhow!("{address} did not answer WriteTxnMarkers in time"))??;
    let answered: std::collections::HashMap<(String, i32), i16> = response
        .markers
        .into_iter()
        .flat_map(|marker| marker.topics)
        .flat_map(|topic| {
            let name = topic.name.to_string();
            topic
                .partitions
                .into_iter()
                .map(move |p| ((name.clone(), p.partition_index), p.error_code))
        })
        .collect();
    Ok(partitions
        .iter()
        .map(|key| {
            answered
                .get(key)
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code())
        })
        .collect())
}

/// How long a partition leader waits for another broker's answer to a
/// KIP-890 verification before telling the writer to retry.
const VERIFY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

impl Transactions {
    /// KIP-890 verification by a partition leader whose transaction
    /// coordinator is another broker: AddPartitionsToTxn v4 with `verify_only`,
    /// asking whether `partition` is in `transactional_id`'s open transaction
    /// under this producer. The coordinator's refusal comes back as its error
    /// (PRODUCER_FENCED, INVALID_PRODUCER_ID_MAPPING, INVALID_TXN_STATE);
    /// COORDINATOR_NOT_AVAILABLE when it cannot be asked now (no leader for
    /// its `__transaction_state` partition, unreachable, loading, moved): the
    /// writer retries.
    pub async fn verify_remotely(
        &self,
        transactional_id: &str,
        producer: (i64, i16),
        partition: &TopicPartition,
    ) -> Result<(), ResponseError> {
        use kafka_protocol::messages::add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        use kafka_protocol::messages::{
            AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName,
            TransactionalId,
        };
        use kafka_protocol::protocol::StrBytes;

        let unavailable = ResponseError::CoordinatorNotAvailable;
        let count = self
            .log
            .metadata()
            .topic(TRANSACTION_TOPIC)
            .map_or(0, |topic| topic.partitions.len());
        if count == 0 {
            return Err(unavailable);
        }
        let index = partition_for(transactional_id, count as i32);
        let Some(leader) = self.log.metadata().leader_of(TRANSACTION_TOPIC, index) else {
            tracing::debug!(
                transactional_id,
                "no leader for the transactional id's coordinator partition"
            );
            return Err(unavailable);
        };
        let address = format!("{}:{}", leader.host, leader.port);
        let request = AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(TransactionalId(StrBytes::from_string(
                    transactional_id.to_string(),
                )))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_verify_only(true)
                .with_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(partition.0.clone())))
                    .with_partitions(vec![partition.1])]),
        ]);
        let call = self.peers.call::<_, AddPartitionsToTxnResponse>(
            &address,
            ApiKey::AddPartitionsToTxn,
            4,
            &request,
        );
        let response = match tokio::time::timeout(VERIFY_TIMEOUT, call).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                tracing::debug!(coordinator = leader.node_id, %error, "transaction verification failed");
                return Err(unavailable);
            }
            Err(_) => {
                tracing::debug!(
                    transactional_id,
                    coordinator = leader.node_id,
                    "transaction verification timed out"
                );
                return Err(unavailable);
            }
        };
        let code = match ResponseError::try_from_code(response.error_code) {
            Some(_) => response.error_code,
            None => response
                .results_by_transaction
                .iter()
                .flat_map(|transaction| &transaction.topic_results)
                .flat_map(|topic| &topic.results_by_partition)
                .map(|result| result.partition_error_code)
                .next()
                .unwrap_or(ResponseError::UnknownServerError.code()),
        };
        if code != 0 {
            tracing::debug!(transactional_id, coordinator = leader.node_id, topic = %partition.0, partition = partition.1, code, "the transaction coordinator did not verify a partition");
        }
        match ResponseError::try_from_code(code) {
            None => Ok(()),
            Some(
                refused @ (ResponseError::ProducerFenced
                | ResponseError::InvalidProducerEpoch
                | ResponseError::InvalidProducerIdMapping
                | ResponseError::InvalidTxnState),
            ) => Err(refused),
            Some(_) => Err(unavailable),
        }
    }
}

impl Transactions {
    /// Is this node the transaction coordinator of `transactional_id` (the
    /// leader of its `__transaction_state` partition)?
    pub fn coordinates(&self, transactional_id: &str) -> bool {
        self.log
            .partition_for_key(TRANSACTION_TOPIC, transactional_id)
            .is_some_and(|partition| partition.is_leader())
    }
}

/// Replays one partition of `__transaction_state` into the coordinator.
fn load(coordinator: &Mutex<TransactionCoordinator>, partition: &crate::partition::Partition) {
    let mut coordinator = coordinator.lock().unwrap_or_else(|p| p.into_inner());
    let records = internal_topics::replay(TRANSACTION_TOPIC, partition, |record| {
        let Some(key) = &record.key else { return };
        match txn::decode_transaction(key, record.value.as_deref()) {
            Some((_, Some(metadata))) => coordinator.restore(metadata),
            Some((transactional_id, None)) => coordinator.forget(&transactional_id),
            None => {}
        }
    });
    tracing::info!(
        partition = partition.index,
        leader_epoch = partition.leader_epoch(),
        records,
        "loaded the transactions of a __transaction_state partition this broker leads"
    );
}
