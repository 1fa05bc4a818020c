//! Idempotent and transactional producers: per partition, each producer's
//! epoch and the sequence numbers of its last five batches, so that a
//! retried batch is recognised (and answered with its original offset)
//! instead of written twice, and a gap or a zombie is refused with Kafka's
//! errors; and each producer's open transaction, whose first offset holds
//! back the last stable offset until its marker is written.
//!
//! Pure bookkeeping; the partition calls [`ProducerStates::check`] and
//! [`ProducerStates::record`] under its append lock. At startup the state
//! comes from the newest snapshot (`<offset>.snapshot`, written when a
//! segment rolls and at clean shutdown) plus a replay of the batch headers
//! after it; without a usable snapshot the whole log is replayed.
//!
//! A producer with no open transaction that has not written for
//! `producer.id.expiration.ms` is forgotten ([`ProducerStates::expire`]),
//! so state does not grow with every producer that ever wrote. Unlike
//! Kafka, which goes by the timestamp inside the producer's last batch,
//! idleness is measured on the broker's clock (when the batch was written,
//! or replayed at startup): a producer that writes records with old
//! timestamps (a backfill, a mirror) keeps its state while it writes.
//!
//! Snapshot file layout (big-endian), checked by CRC-32C:
//!
//! ```text
//! magic "STROMPS3" | crc u32 (of what follows) | offset i64 | producers u32 |
//!   per producer: id i64 | epoch i16 | open transaction's first offset i64 (-1) |
//!                 last timestamp i64 | last written (broker clock, ms) i64 |
//!                 coordinator epoch i32 (-1) |
//!                 batches u8 | per batch: first seq i32 | last seq i32 | base offset i64
//! ```
//!
//! Older snapshots are still read: "STROMPS2" (before the coordinator
//! epoch, which then is unknown) and "STROMPS1" (before the timestamps too;
//! its producers count as last written when the snapshot is loaded).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use kafka_protocol::error::ResponseError;
use strom_log::batch::{BatchHeader, Marker};

/// Batches remembered per producer, as in Kafka.
const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Clone)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// First offset of the producer's open transaction in this partition.
    open_transaction: Option<i64>,
    /// Max timestamp of the producer's latest batch or marker.
    last_timestamp: i64,
    /// When the broker last wrote (or replayed) one of its batches.
    last_written_ms: i64,
    /// The coordinator epoch of its latest marker here (-1: none known):
    /// a marker from an older coordinator is refused.
    coordinator_epoch: i32,
    /// Markers recorded for it since this process loaded the partition,
    /// written here as leader or fetched as follower (not snapshotted): a
    /// batch verified with a remote coordinator is admitted only if none
    /// came meanwhile, since its transaction may have ended.
    markers: u64,
}

impl Default for Producer {
    fn default() -> Producer {
        Producer {
            epoch: 0,
            batches: VecDeque::new(),
            open_transaction: None,
            last_timestamp: -1,
            last_written_ms: 0,
            coordinator_epoch: -1,
            markers: 0,
        }
    }
}

/// One producer's state in a partition, as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerSummary {
    pub producer_id: i64,
    pub epoch: i16,
    /// Last sequence of its latest batch, -1 if none is remembered.
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// First offset of its open transaction, -1 if none.
    pub transaction_start_offset: i64,
    /// The coordinator epoch of its latest marker here, -1 if none.
    pub coordinator_epoch: i32,
}

/// A transaction that a marker just ended in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
    pub control: strom_log::batch::ControlType,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// Already written: answer with this base offset and write nothing.
    Duplicate {
        base_offset: i64,
    },
    Reject(ResponseError),
}

/// Who wrote a batch: a client's batches are held to their sequences; the
/// broker's own writes carry a producer id and epoch but no sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Client,
    Broker,
}

#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
    /// Open transactions as (first offset, producer id).
    open: BTreeSet<(i64, i64)>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    // Sequences wrap around at i32::MAX.
    ((header.base_sequence as i64 + header.last_offset_delta as i64) % (i32::MAX as i64 + 1)) as i32
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    /// Kafka's rules (`ProducerAppendInfo.checkSequence`): a producer this
    /// partition does not know (never seen, expired, or its batches deleted
    /// by retention) may start at any sequence; a known one is refused at an
    /// older epoch, must start a newer epoch at 0, and must otherwise go on
    /// from its last sequence (from 0 if none is remembered). A retry of one
    /// of its last five batches is a duplicate.
    pub fn check(&self, header: &BatchHeader, origin: Origin) -> Verdict {
        if header.producer_id < 0 {
            return Verdict::Append;
        }
        if header.base_sequence < 0 {
            return match origin {
                // The broker's own transactional writes (offset commits)
                // carry no sequence: only the epoch is checked.
                Origin::Broker => match self.producers.get(&header.producer_id) {
                    Some(producer) if header.producer_epoch < producer.epoch => {
                        Verdict::Reject(ResponseError::InvalidProducerEpoch)
                    }
                    _ => Verdict::Append,
                },
                // Kafka's LogValidator refuses these as invalid records.
                Origin::Client => Verdict::Reject(ResponseError::InvalidRecord),
            };
        }
        let Some(producer) = self.producers.get(&header.producer_id) else {
            return Verdict::Append;
        };
        if header.producer_epoch < producer.epoch {
            return Verdict::Reject(ResponseError::InvalidProducerEpoch);
        }
        if header.producer_epoch > producer.epoch {
            return if header.base_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
            };
        }
        let last = last_sequence(header);
        if let Some(seen) = producer.batches.iter().find(|batch| {
            batch.first_sequence == header.base_sequence && batch.last_sequence == last
        }) {
            return Verdict::Duplicate {
                base_offset: seen.base_offset,
            };
        }
        let expected = producer
            .batches
            .back()
            .map_or(0, |latest| next_sequence(latest.last_sequence));
        if header.base_sequence == expected {
            Verdict::Append
        } else {
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
        }
    }

    /// Records a batch that is now in the log (its base offset patched);
    /// `marker` is what a control batch says. Returns the transaction a
    /// marker ended, if the producer had one open here.
    pub fn record(
        &mut self,
        header: &BatchHeader,
        marker: Option<Marker>,
        now_ms: i64,
    ) -> Option<EndedTransaction> {
        if header.producer_id < 0 {
            return None;
        }
        let producer = self.producers.entry(header.producer_id).or_default();
        producer.last_timestamp = header.max_timestamp;
        producer.last_written_ms = now_ms;
        if header.producer_epoch > producer.epoch
            || (header.producer_epoch != producer.epoch && !header.is_control())
        {
            // A new epoch starts its sequences over; a marker may carry a
            // bumped epoch (fencing), which the producer's next batch repeats.
            producer.epoch = header.producer_epoch;
            producer.batches.clear();
        }
        if header.is_control() {
            producer.markers += 1;
            if let Some(marker) = marker {
                producer.coordinator_epoch =
                    producer.coordinator_epoch.max(marker.coordinator_epoch);
            }
            let first_offset = producer.open_transaction.take()?;
            self.open.remove(&(first_offset, header.producer_id));
            return marker.map(|marker| EndedTransaction {
                producer_id: header.producer_id,
                first_offset,
                control: marker.control,
            });
        }
        if header.is_transactional() && producer.open_transaction.is_none() {
            producer.open_transaction = Some(header.base_offset);
            self.open.insert((header.base_offset, header.producer_id));
        }
        if header.base_sequence >= 0 {
            producer.batches.push_back(BatchMeta {
                first_sequence: header.base_sequence,
                last_sequence: last_sequence(header),
                base_offset: header.base_offset,
            });
            while producer.batches.len() > REMEMBERED_BATCHES {
                producer.batches.pop_front();
            }
        }
        None
    }

    /// May a marker for this producer at this epoch, from a coordinator in
    /// `coordinator_epoch`, be written? Not from an older producer epoch,
    /// nor from a coordinator older than the one whose marker came last
    /// (TRANSACTION_COORDINATOR_FENCED: it was deposed, and its successor
    /// decides the transaction).
    pub fn check_marker(
        &self,
        producer_id: i64,
        epoch: i16,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        match self.producers.get(&producer_id) {
            Some(producer) if epoch < producer.epoch => Err(ResponseError::InvalidProducerEpoch),
            Some(producer) if coordinator_epoch < producer.coordinator_epoch => {
                Err(ResponseError::TransactionCoordinatorFenced)
            }
            _ => Ok(()),
        }
    }

    /// How many markers were recorded for the producer since this process
    /// loaded the partition (see `Producer::markers`).
    pub fn markers(&self, producer_id: i64) -> u64 {
        self.producers
            .get(&producer_id)
            .map_or(0, |producer| producer.markers)
    }

    /// Does the producer have a transaction open in this partition?
    pub fn has_open_transaction(&self, producer_id: i64) -> bool {
        self.producers
            .get(&producer_id)
            .is_some_and(|producer| producer.open_transaction.is_some())
    }

    /// The first offset of the oldest open transaction: the last stable
    /// offset cannot pass it.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.open.first().map(|(offset, _)| *offset)
    }

    /// Forgets producers without an open transaction that have not
    /// written for `expiration_ms` before `now_ms`. Returns how many.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, producer| {
            producer.open_transaction.is_some()
                || now_ms.saturating_sub(producer.last_written_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Every producer this partition remembers, by producer id.
    pub fn describe(&self) -> Vec<ProducerSummary> {
        let mut summaries: Vec<ProducerSummary> = self
            .producers
            .iter()
            .map(|(id, producer)| ProducerSummary {
                producer_id: *id,
                epoch: producer.epoch,
                last_sequence: producer
                    .batches
                    .back()
                    .map_or(-1, |batch| batch.last_sequence),
                last_timestamp: producer.last_timestamp,
                transaction_start_offset: producer.open_transaction.unwrap_or(-1),
                coordinator_epoch: producer.coordinator_epoch,
            })
            .collect();
        summaries.sort_by_key(|summary| summary.producer_id);
        summaries
    }
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"STROMPS3";
/// The layout before the coordinator epoch.
const SNAPSHOT_MAGIC_V2: &[u8; 8] = b"STROMPS2";
/// The layout before the timestamps.
const SNAPSHOT_MAGIC_V1: &[u8; 8] = b"STROMPS1";
const SNAPSHOT_SUFFIX: &str = ".snapshot";
/// Snapshots kept per partition: the newest, and one before it in case the
/// newest was torn by a crash.
const SNAPSHOTS_KEPT: usize = 2;

impl ProducerStates {
    /// The state as a snapshot taken at `offset` (the state after every
    /// batch below it).
    pub fn encode_snapshot(&self, offset: i64) -> Vec<u8> {
        let mut body = Vec::with_capacity(12 + self.producers.len() * 64);
        body.extend_from_slice(&offset.to_be_bytes());
        body.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        for (id, producer) in &self.producers {
            body.extend_from_slice(&id.to_be_bytes());
            body.extend_from_slice(&producer.epoch.to_be_bytes());
            body.extend_from_slice(&producer.open_transaction.unwrap_or(-1).to_be_bytes());
            body.extend_from_slice(&producer.last_timestamp.to_be_bytes());
            body.extend_from_slice(&producer.last_written_ms.to_be_bytes());
            body.extend_from_slice(&producer.coordinator_epoch.to_be_bytes());
            body.push(producer.batches.len() as u8);
            for batch in &producer.batches {
                body.extend_from_slice(&batch.first_sequence.to_be_bytes());
                body.extend_from_slice(&batch.last_sequence.to_be_bytes());
                body.extend_from_slice(&batch.base_offset.to_be_bytes());
            }
        }
        let mut bytes = SNAPSHOT_MAGIC.to_vec();
        bytes.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        bytes.extend_from_slice(&body);
        bytes
    }

    /// The offset and state of a snapshot; `None` if it is torn or corrupt.
    /// `loaded_at_ms` stands for the last write of producers in an old
    /// snapshot that does not record it.
    pub fn decode_snapshot(bytes: &[u8], loaded_at_ms: i64) -> Option<(i64, ProducerStates)> {
        let (rest, version) = if let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC) {
            (rest, 3)
        } else if let Some(rest) = bytes.strip_prefix(SNAPSHOT_MAGIC_V2) {
            (rest, 2)
        } else {
            (bytes.strip_prefix(SNAPSHOT_MAGIC_V1)?, 1)
        };
        let (crc, body) = rest.split_first_chunk::<4>()?;
        if u32::from_be_bytes(*crc) != crc32c::crc32c(body) {
            return None;
        }
        let mut cursor = body;
        let mut take = |count: usize| -> Option<&[u8]> {
            let (taken, rest) = cursor.split_at_checked(count)?;
            cursor = rest;
            Some(taken)
        };
        let i64_of = |b: &[u8]| i64::from_be_bytes(b.try_into().unwrap_or_default());
        let i32_of = |b: &[u8]| i32::from_be_bytes(b.try_into().unwrap_or_default());
        let offset = i64_of(take(8)?);
        let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
        let mut states = ProducerStates::default();
        for _ in 0..count {
            let id = i64_of(take(8)?);
            let epoch = i16::from_be_bytes(take(2)?.try_into().ok()?);
            let open = i64_of(take(8)?);
            let (last_timestamp, last_written_ms) = if version >= 2 {
                (i64_of(take(8)?), i64_of(take(8)?))
            } else {
                (-1, loaded_at_ms)
            };
            let coordinator_epoch = if version >= 3 { i32_of(take(4)?) } else { -1 };
            let batches = take(1)?[0];
            let mut producer = Producer {
                epoch,
                batches: VecDeque::new(),
                open_transaction: (open >= 0).then_some(open),
                last_timestamp,
                last_written_ms,
                coordinator_epoch,
                markers: 0,
            };
            for _ in 0..batches {
                producer.batches.push_back(BatchMeta {
                    first_sequence: i32_of(take(4)?),
                    last_sequence: i32_of(take(4)?),
                    base_offset: i64_of(take(8)?),
                });
            }
            if let Some(first) = producer.open_transaction {
                states.open.insert((first, id));
            }
            states.producers.insert(id, producer);
        }
        Some((offset, states))
    }
}

fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Is there a snapshot at `offset` already?
pub fn has_snapshot(dir: &Path, offset: i64) -> bool {
    snapshot_path(dir, offset).exists()
}

const TEMPORARY_SUFFIX: &str = ".snapshot.tmp";

/// Snapshot files in `dir`, oldest first, and the temporary files of
/// snapshots a crash cut short.
fn list_snapshots(dir: &Path) -> (Vec<i64>, Vec<PathBuf>) {
    let mut offsets = Vec::new();
    let mut temporaries = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(TEMPORARY_SUFFIX) {
            temporaries.push(entry.path());
        } else if let Some(stem) = name.strip_suffix(SNAPSHOT_SUFFIX) {
            if let Some(offset) = (stem.len() == 20).then(|| stem.parse().ok()).flatten() {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    (offsets, temporaries)
}

fn snapshot_offsets(dir: &Path) -> Vec<i64> {
    list_snapshots(dir).0
}

/// Writes a snapshot (through a temporary file and a rename, so a reader
/// never sees half of one) and deletes all but the newest few. Not fsynced:
/// a crash may lose it, which costs only a longer replay (a clean shutdown
/// syncs the whole file system once instead).
pub fn write_snapshot(dir: &Path, offset: i64, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let path = snapshot_path(dir, offset);
    let temporary = dir.join(format!("{offset:020}{TEMPORARY_SUFFIX}"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    std::fs::rename(&temporary, &path)?;
    let offsets = snapshot_offsets(dir);
    for old in &offsets[..offsets.len().saturating_sub(SNAPSHOTS_KEPT)] {
        let _ = std::fs::remove_file(snapshot_path(dir, *old));
    }
    Ok(())
}

/// Deletes every snapshot (the log started over: none describes it).
pub fn delete_snapshots(dir: &Path) {
    for offset in snapshot_offsets(dir) {
        let _ = std::fs::remove_file(snapshot_path(dir, offset));
    }
}

/// The newest valid snapshot at or below `log_end_offset`. Snapshots past
/// the log's end (their records were lost in a crash) are deleted, and so
/// are temporary files that never became snapshots.
pub fn load_snapshot(
    dir: &Path,
    log_end_offset: i64,
    now_ms: i64,
) -> Option<(i64, ProducerStates)> {
    let (offsets, temporaries) = list_snapshots(dir);
    for temporary in temporaries {
        let _ = std::fs::remove_file(temporary);
    }
    for offset in offsets.into_iter().rev() {
        let path = snapshot_path(dir, offset);
        if offset > log_end_offset {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        match std::fs::read(&path)
            .ok()
            .and_then(|bytes| ProducerStates::decode_snapshot(&bytes, now_ms))
        {
            Some((at, states)) if at == offset => return Some((at, states)),
            _ => {
                tracing::warn!(snapshot = %path.display(), "ignoring an unreadable producer state snapshot");
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_log::batch::testing;

    fn batch(
        producer: i64,
        epoch: i16,
        sequence: i32,
        count: i32,
        base_offset: i64,
    ) -> BatchHeader {
        let mut bytes = testing::batch(count, 0, b"");
        strom_log::batch::set_base_offset(&mut bytes, base_offset);
        let mut header = BatchHeader::parse(&bytes).unwrap();
        header.producer_id = producer;
        header.producer_epoch = epoch;
        header.base_sequence = sequence;
        header
    }

    #[test]
    fn in_order_batches_append_and_a_retry_is_a_duplicate() {
        let mut states = ProducerStates::default();
        let first = batch(7, 0, 0, 3, 100);
        assert_eq!(states.check(&first, Origin::Client), Verdict::Append);
        states.record(&first, None, 0);
        let second = batch(7, 0, 3, 2, 103);
        assert_eq!(states.check(&second, Origin::Client), Verdict::Append);
        states.record(&second, None, 0);
        assert_eq!(
            states.check(&batch(7, 0, 0, 3, -1), Origin::Client),
            Verdict::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            states.check(&batch(7, 0, 9, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn zombies_and_strangers_are_refused() {
        let mut states = ProducerStates::default();
        states.record(&batch(7, 2, 0, 1, 0), None, 0);
        assert_eq!(
            states.check(&batch(7, 1, 1, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            states.check(&batch(7, 3, 0, 1, -1), Origin::Client),
            Verdict::Append,
            "a new epoch starts at 0"
        );
        assert_eq!(
            states.check(&batch(8, 0, 5, 1, -1), Origin::Client),
            Verdict::Append,
            "a producer this partition does not know may start anywhere, as in Kafka"
        );
        assert_eq!(
            states.check(&batch(-1, -1, -1, 1, -1), Origin::Client),
            Verdict::Append,
            "not idempotent"
        );
    }

    #[test]
    fn only_the_broker_may_write_without_a_sequence() {
        let mut states = ProducerStates::default();
        states.record(&batch(7, 2, 0, 1, 0), None, 0);
        assert_eq!(
            states.check(&batch(7, 2, -1, 1, -1), Origin::Broker),
            Verdict::Append
        );
        assert_eq!(
            states.check(&batch(7, 1, -1, 1, -1), Origin::Broker),
            Verdict::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            states.check(&batch(7, 2, -1, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::InvalidRecord)
        );
        assert_eq!(
            states.check(&batch(9, 0, -1, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::InvalidRecord),
            "unknown producer"
        );
        // A marker that bumped the epoch left no batches to go on from.
        let mut fenced = batch(7, 3, -1, 1, 1);
        fenced.attributes |= 0x30;
        states.record(&fenced, Some(abort(0)), 0);
        assert_eq!(
            states.check(&batch(7, 3, -1, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::InvalidRecord),
            "a known producer with no batches remembered"
        );
        assert_eq!(
            states.check(&batch(7, 3, 4, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber),
            "it goes on from 0"
        );
        assert_eq!(
            states.check(&batch(7, 3, 0, 1, -1), Origin::Client),
            Verdict::Append
        );
    }

    #[test]
    fn idle_producers_expire_unless_a_transaction_is_open() {
        let at = |mut header: BatchHeader, timestamp: i64| {
            header.max_timestamp = timestamp;
            header
        };
        let mut states = ProducerStates::default();
        // Written at broker times 1,000, 1,000 and 5,000; producer 3's
        // records carry an old timestamp, which does not count.
        states.record(&at(batch(1, 0, 0, 3, 10), 1_000), None, 1_000);
        let mut transactional = at(batch(2, 0, 0, 2, 13), 1_000);
        transactional.attributes |= 0x10;
        states.record(&transactional, None, 1_000);
        states.record(&at(batch(3, 0, 0, 1, 15), 7), None, 5_000);
        assert_eq!(states.expire(10_000, 6_000), 1);
        let described = states.describe();
        assert_eq!(
            described,
            vec![
                ProducerSummary {
                    producer_id: 2,
                    epoch: 0,
                    last_sequence: 1,
                    last_timestamp: 1_000,
                    transaction_start_offset: 13,
                    coordinator_epoch: -1,
                },
                ProducerSummary {
                    producer_id: 3,
                    epoch: 0,
                    last_sequence: 0,
                    last_timestamp: 7,
                    transaction_start_offset: -1,
                    coordinator_epoch: -1,
                },
            ]
        );
        assert_eq!(
            states.check(&batch(1, 0, 3, 1, -1), Origin::Client),
            Verdict::Append,
            "an expired producer is not known any more: it goes on where it is"
        );
        let (_, restored) =
            ProducerStates::decode_snapshot(&states.encode_snapshot(16), 0).unwrap();
        assert_eq!(
            restored.describe(),
            described,
            "the snapshot keeps timestamps"
        );
    }

    fn abort(coordinator_epoch: i32) -> Marker {
        Marker {
            control: strom_log::batch::ControlType::Abort,
            coordinator_epoch,
        }
    }

    /// A marker from a coordinator older than the one whose marker came
    /// last is refused; the coordinator epoch survives a snapshot.
    #[test]
    fn a_deposed_coordinators_marker_is_fenced_and_the_epoch_is_snapshotted() {
        let mut states = ProducerStates::default();
        let mut transactional = batch(4, 1, 0, 1, 0);
        transactional.attributes |= 0x10;
        states.record(&transactional, None, 0);
        assert_eq!(
            states.check_marker(4, 1, 0),
            Ok(()),
            "no marker yet: any epoch"
        );
        let mut marker = batch(4, 1, -1, 1, 1);
        marker.attributes |= 0x30;
        states.record(&marker, Some(abort(3)), 0);
        assert_eq!(
            states.check_marker(4, 1, 2),
            Err(ResponseError::TransactionCoordinatorFenced)
        );
        assert_eq!(states.check_marker(4, 1, 3), Ok(()));
        let (_, restored) = ProducerStates::decode_snapshot(&states.encode_snapshot(2), 0).unwrap();
        assert_eq!(
            restored.check_marker(4, 1, 2),
            Err(ResponseError::TransactionCoordinatorFenced)
        );
    }

    #[test]
    fn a_snapshot_restores_sequences_epochs_and_open_transactions() {
        let mut states = ProducerStates::default();
        states.record(&batch(1, 0, 0, 3, 10), None, 0);
        let mut transactional = batch(2, 4, 0, 2, 13);
        transactional.attributes |= 0x10;
        states.record(&transactional, None, 0);
        let bytes = states.encode_snapshot(15);
        let (offset, restored) = ProducerStates::decode_snapshot(&bytes, 0).unwrap();
        assert_eq!(offset, 15);
        assert_eq!(
            restored.check(&batch(1, 0, 0, 3, -1), Origin::Client),
            Verdict::Duplicate { base_offset: 10 }
        );
        assert_eq!(
            restored.check(&batch(2, 3, 2, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(restored.first_unstable_offset(), Some(13));
        assert!(restored.has_open_transaction(2));
        // The layout before timestamps: the same without them.
        let mut body = Vec::new();
        body.extend_from_slice(&15i64.to_be_bytes());
        body.extend_from_slice(&1u32.to_be_bytes());
        body.extend_from_slice(&1i64.to_be_bytes()); // producer id
        body.extend_from_slice(&0i16.to_be_bytes()); // epoch
        body.extend_from_slice(&(-1i64).to_be_bytes()); // no open transaction
        body.push(1);
        for field in [0i32, 2] {
            body.extend_from_slice(&field.to_be_bytes());
        }
        body.extend_from_slice(&10i64.to_be_bytes());
        let mut old = SNAPSHOT_MAGIC_V1.to_vec();
        old.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        old.extend_from_slice(&body);
        let (_, mut upgraded) = ProducerStates::decode_snapshot(&old, 77).unwrap();
        assert_eq!(
            upgraded.check(&batch(1, 0, 0, 3, -1), Origin::Client),
            Verdict::Duplicate { base_offset: 10 }
        );
        assert_eq!(
            upgraded.expire(77 + 999, 1_000),
            0,
            "last written when loaded"
        );
        let mut torn = bytes.clone();
        torn.truncate(bytes.len() - 1);
        assert!(ProducerStates::decode_snapshot(&torn, 0).is_none());
        let mut flipped = bytes;
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(ProducerStates::decode_snapshot(&flipped, 0).is_none());
    }

    #[test]
    fn snapshot_files_past_the_log_end_are_dropped_and_only_the_newest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut states = ProducerStates::default();
        for offset in [10, 20, 30] {
            states.record(&batch(1, 0, (offset / 10) as i32 - 1, 1, offset), None, 0);
            write_snapshot(dir.path(), offset + 1, &states.encode_snapshot(offset + 1)).unwrap();
        }
        assert_eq!(snapshot_offsets(dir.path()), vec![21, 31]);
        let cut_short = dir.path().join(format!("{:020}{TEMPORARY_SUFFIX}", 41));
        std::fs::write(&cut_short, b"half").unwrap();
        let (offset, _) = load_snapshot(dir.path(), 25, 0).unwrap();
        assert!(!cut_short.exists(), "a crash's temporary file is removed");
        assert_eq!(offset, 21, "the snapshot at 31 is past the log end");
        assert_eq!(snapshot_offsets(dir.path()), vec![21]);
        assert!(load_snapshot(dir.path(), 5, 0).is_none());
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for index in 0..7 {
            states.record(&batch(1, 0, index, 1, index as i64), None, 0);
        }
        assert_eq!(
            states.check(&batch(1, 0, 6, 1, -1), Origin::Client),
            Verdict::Duplicate { base_offset: 6 }
        );
        assert_eq!(
            states.check(&batch(1, 0, 0, 1, -1), Origin::Client),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber),
            "too old to recognise"
        );
    }
}
