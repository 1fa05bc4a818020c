//! Idempotent and transactional producers: per partition, each producer's
//! epoch and the sequence numbers of its last five batches, so that a
//! retried batch is recognised (and answered with its original offset)
//! instead of written twice, and a gap or a zombie is refused with Kafka's
//! errors; and each producer's open transaction, whose first offset holds
//! back the last stable offset until its marker is written.
//!
//! Pure bookkeeping; the partition calls [`ProducerStates::check`] and
//! [`ProducerStates::record`] under its append lock, and rebuilds the state
//! from the log's batch headers at startup.

use std::collections::{BTreeSet, HashMap, VecDeque};

use kafka_protocol::error::ResponseError;
use strom_log::batch::{BatchHeader, ControlType};

/// Batches remembered per producer, as in Kafka.
const REMEMBERED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchMeta {
    first_sequence: i32,
    last_sequence: i32,
    base_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct Producer {
    epoch: i16,
    batches: VecDeque<BatchMeta>,
    /// First offset of the producer's open transaction in this partition.
    open_transaction: Option<i64>,
}

/// A transaction that a marker just ended in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndedTransaction {
    pub producer_id: i64,
    pub first_offset: i64,
    pub control: ControlType,
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
    pub fn check(&self, header: &BatchHeader) -> Verdict {
        if header.producer_id < 0 {
            return Verdict::Append;
        }
        if header.base_sequence < 0 {
            // The broker's own transactional writes (offset commits, markers)
            // carry no sequence: only the epoch is checked.
            return match self.producers.get(&header.producer_id) {
                Some(producer) if header.producer_epoch < producer.epoch => {
                    Verdict::Reject(ResponseError::InvalidProducerEpoch)
                }
                _ => Verdict::Append,
            };
        }
        let Some(producer) = self.producers.get(&header.producer_id) else {
            return if header.base_sequence == 0 {
                Verdict::Append
            } else {
                Verdict::Reject(ResponseError::UnknownProducerId)
            };
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
        match producer.batches.back() {
            Some(latest) if header.base_sequence != next_sequence(latest.last_sequence) => {
                Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
            }
            _ => Verdict::Append,
        }
    }

    /// Records a batch that is now in the log (its base offset patched);
    /// `marker` is what a control batch says. Returns the transaction a
    /// marker ended, if the producer had one open here.
    pub fn record(
        &mut self,
        header: &BatchHeader,
        marker: Option<ControlType>,
    ) -> Option<EndedTransaction> {
        if header.producer_id < 0 {
            return None;
        }
        let producer = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch > producer.epoch
            || (header.producer_epoch != producer.epoch && !header.is_control())
        {
            // A new epoch starts its sequences over; a marker may carry a
            // bumped epoch (fencing), which the producer's next batch repeats.
            producer.epoch = header.producer_epoch;
            producer.batches.clear();
        }
        if header.is_control() {
            let first_offset = producer.open_transaction.take()?;
            self.open.remove(&(first_offset, header.producer_id));
            return marker.map(|control| EndedTransaction {
                producer_id: header.producer_id,
                first_offset,
                control,
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

    /// May a marker for this producer at this epoch be written?
    pub fn check_marker(&self, producer_id: i64, epoch: i16) -> Result<(), ResponseError> {
        match self.producers.get(&producer_id) {
            Some(producer) if epoch < producer.epoch => Err(ResponseError::InvalidProducerEpoch),
            _ => Ok(()),
        }
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
        assert_eq!(states.check(&first), Verdict::Append);
        states.record(&first, None);
        let second = batch(7, 0, 3, 2, 103);
        assert_eq!(states.check(&second), Verdict::Append);
        states.record(&second, None);
        assert_eq!(
            states.check(&batch(7, 0, 0, 3, -1)),
            Verdict::Duplicate { base_offset: 100 }
        );
        assert_eq!(
            states.check(&batch(7, 0, 9, 1, -1)),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber)
        );
    }

    #[test]
    fn zombies_and_strangers_are_refused() {
        let mut states = ProducerStates::default();
        states.record(&batch(7, 2, 0, 1, 0), None);
        assert_eq!(
            states.check(&batch(7, 1, 1, 1, -1)),
            Verdict::Reject(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(
            states.check(&batch(7, 3, 0, 1, -1)),
            Verdict::Append,
            "a new epoch starts at 0"
        );
        assert_eq!(
            states.check(&batch(8, 0, 5, 1, -1)),
            Verdict::Reject(ResponseError::UnknownProducerId)
        );
        assert_eq!(
            states.check(&batch(-1, -1, -1, 1, -1)),
            Verdict::Append,
            "not idempotent"
        );
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut states = ProducerStates::default();
        for index in 0..7 {
            states.record(&batch(1, 0, index, 1, index as i64), None);
        }
        assert_eq!(
            states.check(&batch(1, 0, 6, 1, -1)),
            Verdict::Duplicate { base_offset: 6 }
        );
        assert_eq!(
            states.check(&batch(1, 0, 0, 1, -1)),
            Verdict::Reject(ResponseError::OutOfOrderSequenceNumber),
            "too old to recognise"
        );
    }
}
