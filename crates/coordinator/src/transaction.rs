//! Kafka's transaction coordinator as a state machine: one entry per
//! `transactional.id` with its producer id and epoch, the partitions its
//! open transaction wrote to and where the transaction stands.
//!
//! ```text
//!            AddPartitions              EndTxn(commit)
//!   Empty ───────────────▶ Ongoing ──────────────────▶ PrepareCommit ─▶ CompleteCommit
//!   Complete* ────────────▶   │     EndTxn(abort), timeout,               (markers written)
//!                             └──── or a newer producer ─▶ PrepareAbort ─▶ CompleteAbort
//! ```
//!
//! A `Prepare*` state is persisted before any marker is written, so after a
//! crash the runtime finds it again ([`TransactionCoordinator::pending_markers`])
//! and finishes writing the markers. Fencing is by epoch: InitProducerId
//! bumps it, so requests of an older producer with the same id fail with
//! PRODUCER_FENCED; an open transaction of that older producer is aborted
//! with the bumped epoch first, so that its partitions refuse its late
//! writes. Nothing here does I/O or reads a clock.

use std::collections::{BTreeMap, BTreeSet};

use crate::records::{Reader, Writer};

/// Where a transaction stands, with Kafka's codes and names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn code(self) -> i8 {
        self as i8
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        TxnState::ALL.get(usize::try_from(code).ok()?).copied()
    }

    /// The name ListTransactions and DescribeTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL
            .into_iter()
            .find(|state| state.name().eq_ignore_ascii_case(name))
    }
}

/// Why a request was refused, as Kafka's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnError {
    /// Markers of the previous transaction are still being written: retry.
    ConcurrentTransactions,
    /// A newer producer with this transactional id exists.
    ProducerFenced,
    /// The producer id does not belong to this transactional id.
    InvalidProducerIdMapping,
    /// The request does not fit the transaction's state.
    InvalidTxnState,
    InvalidTransactionTimeout,
}

impl TxnError {
    pub fn code(self) -> i16 {
        match self {
            TxnError::ConcurrentTransactions => 51,
            TxnError::ProducerFenced => 90,
            TxnError::InvalidProducerIdMapping => 49,
            TxnError::InvalidTxnState => 48,
            TxnError::InvalidTransactionTimeout => 50,
        }
    }
}

pub type TopicPartition = (String, i32);

/// One transactional id's state, as persisted in `__transaction_state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    pub last_update_ms: i64,
    /// When the open transaction began; -1 when none is open.
    pub start_ms: i64,
}

/// Markers to write: every partition of a transaction gets one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub transactional_id: String,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<TopicPartition>,
}

/// What InitProducerId must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// The producer may start with this id and epoch (persist the state).
    Ready {
        producer_id: i64,
        producer_epoch: i16,
    },
    /// An older producer's transaction is open: abort it (persist, write
    /// these markers, [`TransactionCoordinator::complete`]) and ask again.
    AbortFirst(MarkerJob),
}

/// What EndTxn must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Already done (a retry): answer success.
    Done,
    /// Persist the prepared state, write the markers, then complete.
    Markers(MarkerJob),
}

#[derive(Debug, Clone, Copy)]
pub struct TxnConfig {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
}

#[derive(Debug)]
pub struct TransactionCoordinator {
    config: TxnConfig,
    transactions: BTreeMap<String, TxnMetadata>,
}

/// Idle for `expiration_ms` and between transactions (never mid-way: a
/// prepared transaction still has markers to write).
fn is_expired(metadata: &TxnMetadata, now: i64, expiration_ms: i64) -> bool {
    matches!(
        metadata.state,
        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
    ) && now.saturating_sub(metadata.last_update_ms) >= expiration_ms
}

/// Epochs stop short of the top so that a fence can always bump once more.
const MAX_EPOCH: i16 = i16::MAX - 1;

impl TransactionCoordinator {
    pub fn new(config: TxnConfig) -> TransactionCoordinator {
        TransactionCoordinator {
            config,
            transactions: BTreeMap::new(),
        }
    }

    pub fn get(&self, transactional_id: &str) -> Option<&TxnMetadata> {
        self.transactions.get(transactional_id)
    }

    pub fn all(&self) -> impl Iterator<Item = &TxnMetadata> {
        self.transactions.values()
    }

    /// Rebuilding from `__transaction_state`: the latest value wins.
    pub fn restore(&mut self, metadata: TxnMetadata) {
        self.transactions
            .insert(metadata.transactional_id.clone(), metadata);
    }

    pub fn forget(&mut self, transactional_id: &str) {
        self.transactions.remove(transactional_id);
    }

    /// Forgets every transactional id `owned` picks: this coordinator
    /// stopped leading their partition of `__transaction_state` (or is
    /// about to load it anew).
    pub fn unload(&mut self, owned: impl Fn(&str) -> bool) {
        self.transactions.retain(|id, _| !owned(id));
    }

    /// InitProducerId with a transactional id. `expected` is the producer's
    /// current id and epoch when it asks to bump its epoch (KIP-360);
    /// `allocate` hands out a new producer id.
    pub fn init_producer_id(
        &mut self,
        now: i64,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        allocate: impl FnOnce() -> Option<i64>,
    ) -> Result<Option<InitOutcome>, TxnError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(TxnError::InvalidTransactionTimeout);
        }
        let Some(metadata) = self.transactions.get_mut(transactional_id) else {
            let Some(producer_id) = allocate() else {
                return Ok(None);
            };
            self.transactions.insert(
                transactional_id.to_string(),
                TxnMetadata {
                    transactional_id: transactional_id.to_string(),
                    producer_id,
                    producer_epoch: 0,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    last_update_ms: now,
                    start_ms: -1,
                },
            );
            return Ok(Some(InitOutcome::Ready {
                producer_id,
                producer_epoch: 0,
            }));
        };
        if let Some((producer_id, epoch)) = expected {
            // KIP-360: only the current producer may bump its own epoch.
            if producer_id != metadata.producer_id || epoch != metadata.producer_epoch {
                return Err(TxnError::ProducerFenced);
            }
        }
        match metadata.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => Ok(Some(InitOutcome::AbortFirst(fence_and_abort(
                metadata, now,
            )))),
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                if metadata.producer_epoch >= MAX_EPOCH {
                    let Some(producer_id) = allocate() else {
                        return Ok(None);
                    };
                    metadata.producer_id = producer_id;
                    metadata.producer_epoch = 0;
                } else {
                    metadata.producer_epoch += 1;
                }
                metadata.timeout_ms = timeout_ms;
                metadata.state = TxnState::Empty;
                metadata.partitions.clear();
                metadata.last_update_ms = now;
                metadata.start_ms = -1;
                Ok(Some(InitOutcome::Ready {
                    producer_id: metadata.producer_id,
                    producer_epoch: metadata.producer_epoch,
                }))
            }
        }
    }

    fn current(
        &mut self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<&mut TxnMetadata, TxnError> {
        let metadata = self
            .transactions
            .get_mut(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        check_producer(metadata, producer_id, producer_epoch)?;
        Ok(metadata)
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's partition
    /// of `__consumer_offsets`). Returns whether the state changed and must
    /// be persisted.
    pub fn add_partitions(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<bool, TxnError> {
        let metadata = self.current(transactional_id, producer_id, producer_epoch)?;
        match metadata.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                return Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Dead => return Err(TxnError::InvalidProducerIdMapping),
            TxnState::Ongoing => {
                if partitions
                    .iter()
                    .all(|partition| metadata.partitions.contains(partition))
                {
                    return Ok(false);
                }
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                metadata.state = TxnState::Ongoing;
                metadata.partitions.clear();
                metadata.start_ms = now;
            }
        }
        metadata.partitions.extend(partitions.iter().cloned());
        metadata.last_update_ms = now;
        Ok(true)
    }

    /// The verify-only form of AddPartitionsToTxn (KIP-890), which a
    /// partition leader asks before it accepts a transaction's first write:
    /// is the partition part of this producer's open transaction?
    pub fn verify(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partition: &TopicPartition,
    ) -> Result<(), TxnError> {
        let metadata = self
            .transactions
            .get(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        check_producer(metadata, producer_id, producer_epoch)?;
        if metadata.state == TxnState::Ongoing && metadata.partitions.contains(partition) {
            Ok(())
        } else {
            Err(TxnError::InvalidTxnState)
        }
    }

    /// EndTxn: commit or abort the open transaction.
    pub fn end(
        &mut self,
        now: i64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<EndOutcome, TxnError> {
        let metadata = self.current(transactional_id, producer_id, producer_epoch)?;
        match (metadata.state, commit) {
            (TxnState::Ongoing, _) => Ok(EndOutcome::Markers(prepare(metadata, now, commit))),
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndOutcome::Done)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            // librdkafka aborts an empty transaction without asking; an
            // abort with nothing open is harmless.
            (TxnState::Empty, false) => Ok(EndOutcome::Done),
            _ => Err(TxnError::InvalidTxnState),
        }
    }

    /// Every marker of a prepared transaction is written: it is complete.
    /// Returns whether the state changed and must be persisted.
    pub fn complete(&mut self, now: i64, transactional_id: &str, producer_epoch: i16) -> bool {
        let Some(metadata) = self.transactions.get_mut(transactional_id) else {
            return false;
        };
        let next = match metadata.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return false,
        };
        if metadata.producer_epoch != producer_epoch {
            return false;
        }
        metadata.state = next;
        metadata.partitions.clear();
        metadata.last_update_ms = now;
        metadata.start_ms = -1;
        true
    }

    /// Open transactions past their `transaction.timeout.ms`.
    pub fn timed_out(&self, now: i64) -> Vec<String> {
        self.transactions
            .values()
            .filter(|metadata| {
                metadata.state == TxnState::Ongoing
                    && metadata.start_ms.saturating_add(metadata.timeout_ms as i64) < now
            })
            .map(|metadata| metadata.transactional_id.clone())
            .collect()
    }

    /// Forgets the transactional ids with no transaction in progress that
    /// their producer has not used for `expiration_ms`
    /// (`transactional.id.expiration.ms`), and returns them: the caller
    /// records each removal (a tombstone in `__transaction_state`).
    pub fn remove_expired(&mut self, now: i64, expiration_ms: i64) -> Vec<String> {
        let expired: Vec<String> = self
            .transactions
            .values()
            .filter(|metadata| is_expired(metadata, now, expiration_ms))
            .map(|metadata| metadata.transactional_id.clone())
            .collect();
        for transactional_id in &expired {
            self.transactions.remove(transactional_id);
        }
        expired
    }

    /// Aborts a timed-out transaction. The epoch is bumped, as in Kafka, so
    /// the producer that let it time out is fenced.
    pub fn abort_timed_out(&mut self, now: i64, transactional_id: &str) -> Option<MarkerJob> {
        let metadata = self.transactions.get_mut(transactional_id)?;
        if metadata.state != TxnState::Ongoing {
            return None;
        }
        Some(fence_and_abort(metadata, now))
    }

    /// Prepared transactions whose markers may not all be written (after a
    /// restart, or a failed write): the runtime writes them again.
    pub fn pending_markers(&self) -> Vec<MarkerJob> {
        self.transactions
            .values()
            .filter(|metadata| {
                matches!(
                    metadata.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort
                )
            })
            .map(|metadata| marker_job(metadata, metadata.state == TxnState::PrepareCommit))
            .collect()
    }
}

/// Is this the id's current producer?
fn check_producer(
    metadata: &TxnMetadata,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(), TxnError> {
    if metadata.producer_id != producer_id {
        Err(TxnError::InvalidProducerIdMapping)
    } else if metadata.producer_epoch != producer_epoch {
        Err(TxnError::ProducerFenced)
    } else {
        Ok(())
    }
}

fn marker_job(metadata: &TxnMetadata, commit: bool) -> MarkerJob {
    MarkerJob {
        transactional_id: metadata.transactional_id.clone(),
        producer_id: metadata.producer_id,
        producer_epoch: metadata.producer_epoch,
        commit,
        partitions: metadata.partitions.iter().cloned().collect(),
    }
}

/// Aborts the open transaction under a bumped epoch, which every partition
/// then demands, so the producer that held it is fenced (a new
/// InitProducerId, or a timeout). At the epoch's ceiling the next
/// InitProducerId moves to a new producer id.
fn fence_and_abort(metadata: &mut TxnMetadata, now: i64) -> MarkerJob {
    metadata.producer_epoch = metadata.producer_epoch.saturating_add(1);
    prepare(metadata, now, false)
}

fn prepare(metadata: &mut TxnMetadata, now: i64, commit: bool) -> MarkerJob {
    metadata.state = if commit {
        TxnState::PrepareCommit
    } else {
        TxnState::PrepareAbort
    };
    metadata.last_update_ms = now;
    marker_job(metadata, commit)
}

// `__transaction_state` records in Kafka's layouts: key v0 (transactional
// id), value v0 (producer id, epoch, timeout, state, partitions by topic,
// last update, start). A null value deletes the id.

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

pub fn transaction_key(transactional_id: &str) -> Vec<u8> {
    let mut writer = Writer(Vec::new());
    writer.i16(KEY_VERSION);
    writer.string(transactional_id);
    writer.0
}

pub fn transaction_value(metadata: &TxnMetadata) -> Vec<u8> {
    let mut writer = Writer(Vec::new());
    writer.i16(VALUE_VERSION);
    writer.i64(metadata.producer_id);
    writer.i16(metadata.producer_epoch);
    writer.i32(metadata.timeout_ms);
    writer.0.push(metadata.state.code() as u8);
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &metadata.partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    writer.i32(by_topic.len() as i32);
    for (topic, partitions) in by_topic {
        writer.string(topic);
        writer.i32(partitions.len() as i32);
        for partition in partitions {
            writer.i32(partition);
        }
    }
    writer.i64(metadata.last_update_ms);
    writer.i64(metadata.start_ms);
    writer.0
}

/// Decodes a `__transaction_state` record: the transactional id, and its
/// state (`None` for a tombstone). `None` for a record of another kind.
pub fn decode_transaction(
    key: &[u8],
    value: Option<&[u8]>,
) -> Option<(String, Option<TxnMetadata>)> {
    let mut reader = Reader(key);
    if reader.i16()? != KEY_VERSION {
        return None;
    }
    let transactional_id = reader.string()?;
    let Some(value) = value else {
        return Some((transactional_id, None));
    };
    let mut reader = Reader(value);
    if reader.i16()? != VALUE_VERSION {
        return None;
    }
    let producer_id = reader.i64()?;
    let producer_epoch = reader.i16()?;
    let timeout_ms = reader.i32()?;
    let state = TxnState::from_code(reader.take(1)?[0] as i8)?;
    let mut partitions = BTreeSet::new();
    let topics = reader.i32()?;
    for _ in 0..topics.max(0) {
        let topic = reader.string()?;
        let count = reader.i32()?;
        for _ in 0..count.max(0) {
            partitions.insert((topic.clone(), reader.i32()?));
        }
    }
    let last_update_ms = reader.i64()?;
    let start_ms = reader.i64()?;
    Some((
        transactional_id.clone(),
        Some(TxnMetadata {
            transactional_id,
            producer_id,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            last_update_ms,
            start_ms,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coordinator() -> TransactionCoordinator {
        TransactionCoordinator::new(TxnConfig {
            max_timeout_ms: 60_000,
        })
    }

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        (topic.to_string(), partition)
    }

    fn init(coordinator: &mut TransactionCoordinator, now: i64) -> Option<InitOutcome> {
        coordinator
            .init_producer_id(now, "tx", 10_000, None, || Some(42))
            .unwrap()
    }

    #[test]
    fn a_transaction_commits_through_prepare_and_complete() {
        let mut c = coordinator();
        assert_eq!(
            init(&mut c, 0),
            Some(InitOutcome::Ready {
                producer_id: 42,
                producer_epoch: 0
            })
        );
        assert_eq!(
            c.add_partitions(1, "tx", 42, 0, &[tp("a", 0), tp("b", 1)]),
            Ok(true)
        );
        assert_eq!(c.add_partitions(2, "tx", 42, 0, &[tp("a", 0)]), Ok(false));
        assert_eq!(c.verify("tx", 42, 0, &tp("b", 1)), Ok(()));
        assert_eq!(
            c.verify("tx", 42, 0, &tp("c", 0)),
            Err(TxnError::InvalidTxnState)
        );
        let EndOutcome::Markers(job) = c.end(3, "tx", 42, 0, true).unwrap() else {
            panic!("markers expected");
        };
        assert!(job.commit);
        assert_eq!(job.partitions, vec![tp("a", 0), tp("b", 1)]);
        assert_eq!(c.get("tx").unwrap().state, TxnState::PrepareCommit);
        assert_eq!(
            c.add_partitions(4, "tx", 42, 0, &[tp("a", 0)]),
            Err(TxnError::ConcurrentTransactions)
        );
        assert_eq!(c.pending_markers(), vec![job]);
        assert!(c.complete(5, "tx", 0));
        assert_eq!(c.get("tx").unwrap().state, TxnState::CompleteCommit);
        assert!(c.pending_markers().is_empty());
        assert_eq!(c.end(6, "tx", 42, 0, true), Ok(EndOutcome::Done), "retry");
        assert_eq!(c.end(6, "tx", 42, 0, false), Err(TxnError::InvalidTxnState));
    }

    #[test]
    fn a_new_producer_fences_the_old_one_and_aborts_its_transaction() {
        let mut c = coordinator();
        init(&mut c, 0);
        c.add_partitions(1, "tx", 42, 0, &[tp("a", 0)]).unwrap();
        let Some(InitOutcome::AbortFirst(job)) = init(&mut c, 2) else {
            panic!("the open transaction must be aborted first");
        };
        assert!(!job.commit);
        assert_eq!(job.producer_epoch, 1, "markers carry the bumped epoch");
        assert_eq!(
            c.init_producer_id(3, "tx", 10_000, None, || Some(1)),
            Err(TxnError::ConcurrentTransactions),
            "while the abort markers are written"
        );
        assert!(c.complete(4, "tx", 1));
        assert_eq!(
            init(&mut c, 5),
            Some(InitOutcome::Ready {
                producer_id: 42,
                producer_epoch: 2
            })
        );
        assert_eq!(
            c.add_partitions(6, "tx", 42, 0, &[tp("a", 0)]),
            Err(TxnError::ProducerFenced)
        );
        assert_eq!(c.get("tx").unwrap().state, TxnState::Empty);
    }

    #[test]
    fn timeouts_abort_and_fence() {
        let mut c = coordinator();
        init(&mut c, 0);
        c.add_partitions(100, "tx", 42, 0, &[tp("a", 0)]).unwrap();
        assert!(c.timed_out(10_100).is_empty());
        assert_eq!(c.timed_out(10_101), vec!["tx".to_string()]);
        let job = c.abort_timed_out(10_101, "tx").unwrap();
        assert_eq!((job.commit, job.producer_epoch), (false, 1));
        assert!(c.complete(10_102, "tx", 1));
        assert_eq!(
            c.end(10_103, "tx", 42, 0, true),
            Err(TxnError::ProducerFenced),
            "the producer that let it time out is fenced"
        );
        assert_eq!(
            c.add_partitions(10_103, "tx", 42, 0, &[tp("a", 0)]),
            Err(TxnError::ProducerFenced)
        );
    }

    #[test]
    fn idle_transactional_ids_expire_but_never_mid_transaction() {
        let mut c = coordinator();
        init(&mut c, 0);
        assert!(c.remove_expired(999, 1_000).is_empty());
        assert!(c.get("tx").is_some());
        c.add_partitions(999, "tx", 42, 0, &[tp("a", 0)]).unwrap();
        assert!(
            c.remove_expired(5_000, 1_000).is_empty(),
            "an open transaction never expires"
        );
        let EndOutcome::Markers(_) = c.end(5_001, "tx", 42, 0, true).unwrap() else {
            panic!("markers expected");
        };
        assert!(
            c.remove_expired(9_000, 1_000).is_empty(),
            "nor a prepared one"
        );
        assert!(c.complete(9_001, "tx", 0));
        assert!(
            c.remove_expired(9_500, 1_000).is_empty(),
            "used again since"
        );
        assert_eq!(c.remove_expired(10_001, 1_000), vec!["tx".to_string()]);
        assert!(c.get("tx").is_none());
        assert!(c.remove_expired(20_000, 1_000).is_empty());
    }

    #[test]
    fn requests_are_checked_against_the_producer() {
        let mut c = coordinator();
        assert_eq!(
            c.add_partitions(0, "tx", 42, 0, &[tp("a", 0)]),
            Err(TxnError::InvalidProducerIdMapping)
        );
        init(&mut c, 0);
        assert_eq!(
            c.add_partitions(0, "tx", 7, 0, &[tp("a", 0)]),
            Err(TxnError::InvalidProducerIdMapping)
        );
        assert_eq!(
            c.init_producer_id(0, "tx", 120_000, None, || Some(1)),
            Err(TxnError::InvalidTransactionTimeout)
        );
        assert_eq!(
            c.init_producer_id(0, "tx", 1_000, Some((42, 5)), || Some(1)),
            Err(TxnError::ProducerFenced),
            "KIP-360: a stale epoch may not bump"
        );
        assert_eq!(
            c.init_producer_id(0, "tx", 1_000, Some((42, 0)), || Some(1)),
            Ok(Some(InitOutcome::Ready {
                producer_id: 42,
                producer_epoch: 1
            }))
        );
    }

    #[test]
    fn state_round_trips_through_kafkas_record_layout() {
        let metadata = TxnMetadata {
            transactional_id: "tx-é".to_string(),
            producer_id: 9,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::PrepareAbort,
            partitions: [tp("a", 0), tp("a", 2), tp("b", 1)].into_iter().collect(),
            last_update_ms: 1234,
            start_ms: 1000,
        };
        let key = transaction_key(&metadata.transactional_id);
        let value = transaction_value(&metadata);
        assert_eq!(
            decode_transaction(&key, Some(&value)),
            Some((metadata.transactional_id.clone(), Some(metadata.clone())))
        );
        assert_eq!(
            decode_transaction(&key, None),
            Some((metadata.transactional_id.clone(), None))
        );
        assert_eq!(decode_transaction(&key, Some(&value[..10])), None);
    }
}
