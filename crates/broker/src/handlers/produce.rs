//! Produce: validate each partition's record batch, append it, and answer
//! when the batch is as durable as `acks` asks.
//!
//! The appends happen in [`handle`] itself, before it returns, so requests
//! pipelined on one connection are appended in the order they were sent.
//! The returned future only waits: for acks=all until the group-commit
//! flusher has fsynced the partitions (unless the topic relaxed durability
//! with `flush.messages` / `flush.ms`) and, for a replicated partition,
//! until the high watermark passed the records, so they are on disk on
//! every in-sync replica (or `timeout_ms` ends: REQUEST_TIMED_OUT); for
//! acks=1 not at all. acks=0 gets no response.
//!
//! acks=all is refused before the append with NOT_ENOUGH_REPLICAS while
//! the ISR is smaller than `min.insync.replicas`, and answered with
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND when it shrank below that meanwhile.
//!
//! A refusal of single records (KIP-467) names each record by its index in
//! the batch in `record_errors` and sums them up in `error_message`, in
//! Kafka's words; the batch is then not appended at all. Today the one such
//! refusal is a record without a key on a compacted topic (INVALID_RECORD),
//! the one check for which Produce reads the records of a batch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use strom_log::batch::{self, BatchError};

use super::{resolve_topic, str_bytes, topic_name, LeaderHints};
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::partition::{Appended, Partition};

/// Waits until a write is as durable as acks asks; `Err` is the error to
/// answer instead.
type Durable = Pin<Box<dyn Future<Output = Result<(), (ResponseError, String)>> + Send>>;

struct PartitionOutcome {
    response: PartitionProduceResponse,
    durable: Option<Durable>,
}

fn failed(index: i32, error: ResponseError, message: impl Into<String>) -> PartitionOutcome {
    PartitionOutcome {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(error.code())
            .with_base_offset(-1)
            .with_log_append_time_ms(-1)
            .with_log_start_offset(-1)
            .with_error_message(Some(str_bytes(message.into()))),
        durable: None,
    }
}

/// One refused record: its index in the batch and why.
struct RecordError {
    batch_index: i32,
    message: String,
}

/// The batch is refused for the records in `errors` (KIP-467), with Kafka's
/// summary of at most the first three as the error message.
fn records_refused(index: i32, error: ResponseError, errors: Vec<RecordError>) -> PartitionOutcome {
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|error| {
            format!(
                "RecordError(batchIndex={}, message='{}')",
                error.batch_index, error.message
            )
        })
        .collect();
    let summary = format!(
        "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
        errors.len(),
        shown.join(", ")
    );
    let record_errors = errors
        .into_iter()
        .map(|error| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(error.batch_index)
                .with_batch_index_error_message(Some(str_bytes(error.message)))
        })
        .collect();
    let mut outcome = failed(index, error, summary);
    outcome.response.record_errors = record_errors;
    outcome
}

/// The records a compacted topic cannot take: those without a key (a
/// compacted log keeps the latest record of each key, so a keyless record
/// has nothing to be kept under). `Err` if the records cannot be read.
fn keyless_records(
    partition: &Partition,
    records: &[u8],
) -> Result<Vec<RecordError>, strom_log::records::RecordsError> {
    let (_, views) = strom_log::records::parse_records(records)?;
    Ok(views
        .iter()
        .enumerate()
        .filter(|(_, record)| record.key.is_none())
        .map(|(batch_index, _)| RecordError {
            batch_index: batch_index as i32,
            message: format!(
                "Compacted topic cannot accept message without key in topic partition {}-{}.",
                partition.topic, partition.index
            ),
        })
        .collect())
}

/// Appends every partition's batch now; returns the wait for the response,
/// or `None` for acks=0.
pub fn handle(
    broker: &Arc<Broker>,
    _context: &RequestContext,
    request: ProduceRequest,
) -> Option<impl Future<Output = ProduceResponse> + Send + 'static> {
    let acks = request.acks;
    let timeout = Duration::from_millis(request.timeout_ms.clamp(0, 15 * 60 * 1000) as u64);
    let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        // Produce v13 names topics by id.
        let by_id = topic.name.is_empty() && !topic.topic_id.is_nil();
        let name = resolve_topic(broker, &topic.name, topic.topic_id, by_id);
        let mut outcomes = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let outcome = if !matches!(acks, -1..=1) {
                failed(
                    data.index,
                    ResponseError::InvalidRequiredAcks,
                    format!("acks must be -1 (all), 0 or 1, not {acks}"),
                )
            } else {
                match broker.partitions.get(&name, data.index) {
                    None if name.is_empty() => failed(
                        data.index,
                        ResponseError::UnknownTopicId,
                        format!("topic id {} does not exist", topic.topic_id),
                    ),
                    None => match broker.topics.not_here(&name, data.index) {
                        ResponseError::NotLeaderOrFollower => failed(
                            data.index,
                            ResponseError::NotLeaderOrFollower,
                            format!(
                                "'{name}' partition {} is not on this broker; ask for metadata to find its leader",
                                data.index
                            ),
                        ),
                        error => failed(
                            data.index,
                            error,
                            format!("topic '{name}' partition {} does not exist", data.index),
                        ),
                    },
                    Some(partition) if !partition.is_leader() => failed(
                        data.index,
                        ResponseError::NotLeaderOrFollower,
                        format!(
                            "this broker does not lead '{name}' partition {}",
                            data.index
                        ),
                    ),
                    Some(partition) => append(
                        broker,
                        &partition,
                        data.index,
                        data.records.as_deref(),
                        acks,
                        timeout,
                        transactional_id.as_deref(),
                    ),
                }
            };
            outcomes.push(outcome);
        }
        topics.push((name, topic.topic_id, outcomes));
    }
    if acks == 0 {
        return None;
    }
    let broker = broker.clone();
    Some(async move {
        let mut responses = Vec::with_capacity(topics.len());
        let mut hints = LeaderHints::default();
        for (name, topic_id, outcomes) in topics {
            let mut partitions = Vec::with_capacity(outcomes.len());
            for outcome in outcomes {
                let mut response = outcome.response;
                if let Some(durable) = outcome.durable {
                    if let Err((error, message)) = durable.await {
                        response = failed(response.index, error, message).response;
                    }
                }
                if let Some((leader, epoch)) =
                    hints.for_partition(&broker, &name, response.index, response.error_code)
                {
                    response.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(epoch);
                }
                partitions.push(response);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(topic_name(&name))
                    .with_topic_id(topic_id)
                    .with_partition_responses(partitions),
            );
        }
        let endpoints = hints.endpoints.into_iter().map(|live| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(live.node_id))
                .with_host(str_bytes(live.host))
                .with_port(i32::from(live.port))
                .with_rack(live.rack.map(str_bytes))
        });
        ProduceResponse::default()
            .with_responses(responses)
            .with_node_endpoints(endpoints.collect())
    })
}

fn batch_error(error: &BatchError) -> ResponseError {
    match error {
        BatchError::UnsupportedMagic(_) | BatchError::CountMismatch { .. } => {
            ResponseError::InvalidRecord
        }
        BatchError::Truncated { .. }
        | BatchError::LengthTooSmall(_)
        | BatchError::CrcMismatch { .. }
        | BatchError::UnknownCompression(_) => ResponseError::CorruptMessage,
    }
}

/// Batches from this size up take long enough to recompress (a
/// millisecond or more) that handing the worker's other tasks to another
/// thread first is worth its cost.
const RECOMPRESS_OFF_THE_RUNTIME_BYTES: usize = 128 << 10;

/// Runs CPU-heavy work so that the runtime moves this worker's other tasks
/// elsewhere meanwhile.
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|handle| handle.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

fn append(
    broker: &Broker,
    partition: &Arc<Partition>,
    index: i32,
    records: Option<&[u8]>,
    acks: i16,
    timeout: Duration,
    transactional_id: Option<&str>,
) -> PartitionOutcome {
    let settings = partition.settings();
    let Some(records) = records.filter(|records| !records.is_empty()) else {
        return failed(
            index,
            ResponseError::InvalidRecord,
            "the request has no records",
        );
    };
    match batch::split(records) {
        Ok(sizes) if sizes.len() == 1 => {}
        Ok(sizes) => {
            return failed(
                index,
                ResponseError::InvalidRecord,
                format!(
                    "a produce request carries exactly one record batch per partition, not {}",
                    sizes.len()
                ),
            )
        }
        Err(error) => return failed(index, batch_error(&error), error.to_string()),
    }
    let header = match batch::validate(records, true) {
        Ok(header) => header,
        Err(error) => {
            tracing::debug!(topic = %partition.topic, partition = index, %error, "rejected batch");
            return failed(index, batch_error(&error), error.to_string());
        }
    };
    if header.is_control() {
        return failed(
            index,
            ResponseError::InvalidRecord,
            "control batches are written by the transaction coordinator, not by producers",
        );
    }
    let transactional_id = transactional_id.filter(|id| !id.is_empty());
    if header.is_transactional() && transactional_id.is_none() {
        return failed(
            index,
            ResponseError::InvalidRecord,
            "a transactional batch needs the request's transactional id".to_string(),
        );
    }
    if settings.compact {
        match keyless_records(partition, records) {
            Ok(errors) if errors.is_empty() => {}
            Ok(errors) => return records_refused(index, ResponseError::InvalidRecord, errors),
            Err(error) => {
                tracing::debug!(topic = %partition.topic, partition = index, %error, "rejected batch");
                return failed(index, ResponseError::CorruptMessage, error.to_string());
            }
        }
    }
    // compression.type other than `producer`: batches in another codec are
    // stored recompressed (checked against max.message.bytes as stored).
    let mut bytes = match settings.compression {
        Some(codec) if header.compression().ok() != Some(codec) => {
            let recompress = || strom_log::records::recompress(records, codec);
            let recompressed = if records.len() >= RECOMPRESS_OFF_THE_RUNTIME_BYTES {
                off_the_runtime(recompress)
            } else {
                recompress()
            };
            match recompressed {
                Ok(recompressed) => recompressed,
                Err(error) => {
                    tracing::debug!(topic = %partition.topic, partition = index, %error, "rejected batch");
                    return failed(index, ResponseError::CorruptMessage, error.to_string());
                }
            }
        }
        _ => records.to_vec(),
    };
    if bytes.len() > settings.max_message_bytes {
        return failed(
            index,
            ResponseError::MessageTooLarge,
            format!(
                "the batch is {} bytes; the topic's max.message.bytes is {}",
                bytes.len(),
                settings.max_message_bytes
            ),
        );
    }
    let in_sync = partition.in_sync_replicas();
    if acks == -1 && settings.min_insync_replicas > in_sync {
        return failed(
            index,
            ResponseError::NotEnoughReplicas,
            format!(
                "min.insync.replicas is {} but {}-{} has {in_sync} in-sync replica(s); bring its replicas back or lower min.insync.replicas",
                settings.min_insync_replicas, partition.topic, partition.index
            ),
        );
    }
    // The epoch this write is made in: an acks=all answer waits for it to
    // be replicated in this epoch, and is refused if leadership moved on
    // meanwhile (even back to this node), since the new leader may lack it.
    let leader_epoch = partition.leader_epoch();
    let transactional_id = transactional_id.unwrap_or("");
    // A transaction's first batch here, coordinated by another broker: asked
    // of it before the append; admitted only if no marker landed meanwhile.
    let verified_remotely =
        match verify_with_remote_coordinator(broker, partition, &header, transactional_id) {
            None => None,
            Some(Ok(markers)) => Some(markers),
            Some(Err(error)) => {
                return failed(index, error, unverified(partition, transactional_id, error));
            }
        };
    let not_admitted = std::cell::Cell::new(false);
    let admit = |header: &batch::BatchHeader, now: (i32, u64)| {
        let verdict = match verified_remotely {
            // No marker for this producer (from any leader) and no change of
            // leader since the coordinator answered.
            Some(then) if then == now => Ok(()),
            Some(then) => {
                tracing::debug!(topic = %partition.topic, partition = partition.index, ?then, ?now, "a transaction's first batch waits: a marker or a new leader came while it was verified");
                Err(ResponseError::NotEnoughReplicas)
            }
            None => verify_transactional(broker, partition, header, transactional_id),
        };
        not_admitted.set(verdict.is_err());
        verdict
    };
    let (base_offset, log_append_time_ms, durable_offset) = match partition
        .append_from_client(&mut bytes, admit)
    {
        Ok(Appended::Written(info)) => (
            info.base_offset,
            info.log_append_time_ms,
            info.last_offset + 1,
        ),
        // A retry of a batch that is already written: answered as a success
        // with the original offset, made as durable as acks asks.
        Ok(Appended::Duplicate { base_offset }) => (
            base_offset,
            -1,
            base_offset + header.last_offset_delta as i64 + 1,
        ),
        Ok(Appended::Rejected(error)) if not_admitted.get() => {
            return failed(index, error, unverified(partition, transactional_id, error));
        }
        Ok(Appended::Rejected(ResponseError::NotLeaderOrFollower)) => {
            return failed(
                index,
                ResponseError::NotLeaderOrFollower,
                format!(
                    "this broker no longer leads {}-{}; refresh the metadata",
                    partition.topic, partition.index
                ),
            );
        }
        Ok(Appended::Rejected(error)) => {
            return failed(
                index,
                error,
                format!("producer {} sequence refused", header.producer_id),
            );
        }
        Err(error) => {
            tracing::error!(topic = %partition.topic, partition = index, %error, "append failed");
            return failed(index, ResponseError::KafkaStorageError, error.to_string());
        }
    };
    let replicated = partition.is_replicated();
    let durable: Option<Durable> = if settings.strict_durability() {
        if acks == -1 && !replicated {
            let flushed = broker.flusher.flush(partition.clone(), durable_offset);
            Some(Box::pin(async move {
                match flushed.await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(error)) => Err((
                        ResponseError::KafkaStorageError,
                        format!("the write could not be made durable: {error}"),
                    )),
                    Err(_) => Err((
                        ResponseError::KafkaStorageError,
                        "the write could not be made durable: flusher stopped".to_string(),
                    )),
                }
            }))
        } else {
            // A replicated partition's leader counts its fsynced end
            // towards the high watermark that acks=all waits for.
            broker
                .flusher
                .flush_in_background(partition.clone(), durable_offset);
            None
        }
    } else {
        schedule_relaxed_flush(broker, partition, durable_offset);
        None
    };
    let durable = match acks == -1 && replicated {
        true => Some(Box::pin(partition.clone().wait_replicated(
            durable_offset,
            leader_epoch,
            timeout,
        )) as Durable),
        false => durable,
    };
    PartitionOutcome {
        response: PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(base_offset)
            .with_log_append_time_ms(log_append_time_ms)
            .with_log_start_offset(partition.log_start_offset()),
        durable,
    }
}

/// A transaction's first batch in a partition is admitted only if the
/// partition was added to the producer's open transaction (KIP-890's
/// verification), so a zombie's late write cannot open a transaction that
/// nothing would ever end. Later batches have their epoch checked with
/// their sequence by the partition. Where this node coordinates the
/// transaction, the coordinator is asked in-process, under the partition's
/// producer-state lock; otherwise [`verify_with_remote_coordinator`] asked
/// it before the append.
fn verify_transactional(
    broker: &Broker,
    partition: &Partition,
    header: &batch::BatchHeader,
    transactional_id: &str,
) -> Result<(), ResponseError> {
    if !broker.transactions.coordinates(transactional_id) {
        // Not asked remotely before the lock (its transaction here looked
        // open then, or the coordinator moved away since): never admitted
        // unverified; the producer retries and is asked about properly.
        tracing::debug!(topic = %partition.topic, partition = partition.index, transactional_id, "a transaction's first batch was not verified before the append; retry");
        return Err(ResponseError::NotEnoughReplicas);
    }
    let topic_partition = (partition.topic.clone(), partition.index);
    broker
        .transactions
        .verify(
            transactional_id,
            (header.producer_id, header.producer_epoch),
            &topic_partition,
        )
        .map_err(|error| {
            use strom_coordinator::transaction::TxnError;
            match error {
                TxnError::ProducerFenced => ResponseError::InvalidProducerEpoch,
                TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
                _ => ResponseError::InvalidTxnState,
            }
        })
}

/// What a writer is told when its transaction's first batch here was not
/// admitted.
fn unverified(partition: &Partition, transactional_id: &str, error: ResponseError) -> String {
    match error {
        ResponseError::NotEnoughReplicas => format!(
            "could not verify transactional id '{transactional_id}' with its coordinator, or a transaction marker reached {}-{} meanwhile; retry",
            partition.topic, partition.index
        ),
        _ => format!(
            "partition {}-{} is not part of transactional id '{transactional_id}''s open transaction",
            partition.topic, partition.index
        ),
    }
}

/// KIP-890 verification of a batch that opens a transaction here when
/// another broker coordinates it (`None`: no such batch): AddPartitionsToTxn
/// `verify_only` to that broker, waited for on this connection's reading
/// thread so that the connection's later requests still append after this
/// one (a produce answered later would let the transaction's next batch
/// overtake its first). Ok carries where the transaction stood when it was
/// asked ([`Partition::transaction_guard`]). A coordinator that cannot be asked now is NOT_ENOUGH_REPLICAS,
/// which producers retry, as Kafka answers.
fn verify_with_remote_coordinator(
    broker: &Broker,
    partition: &Partition,
    header: &batch::BatchHeader,
    transactional_id: &str,
) -> Option<Result<(i32, u64), ResponseError>> {
    if !header.is_transactional()
        || header.is_control()
        || broker.transactions.coordinates(transactional_id)
        || partition.has_open_transaction(header.producer_id)
    {
        return None;
    }
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
        return None; // one thread cannot wait here: the in-lock check refuses it (retriable)
    }
    let guard = partition.transaction_guard(header.producer_id);
    let topic_partition = (partition.topic.clone(), partition.index);
    let asked = broker.transactions.verify_remotely(
        transactional_id,
        (header.producer_id, header.producer_epoch),
        &topic_partition,
    );
    let verdict = tokio::task::block_in_place(|| runtime.block_on(asked));
    Some(verdict.map(|()| guard).map_err(|error| match error {
        ResponseError::CoordinatorNotAvailable => ResponseError::NotEnoughReplicas,
        ResponseError::ProducerFenced => ResponseError::InvalidProducerEpoch,
        other => other,
    }))
}

/// Relaxed durability (`flush.messages` / `flush.ms` set on the topic):
/// fsync once enough messages accumulated or the interval passed.
fn schedule_relaxed_flush(broker: &Broker, partition: &Arc<Partition>, offset: i64) {
    let settings = partition.settings();
    if let Some(limit) = settings.flush_messages {
        if partition.take_flush_due_by_count(limit) {
            broker
                .flusher
                .flush_in_background(partition.clone(), offset);
            return;
        }
    }
    if let Some(interval) = settings.flush_ms {
        if partition.try_schedule_flush() {
            let flusher = broker.flusher.clone();
            let partition = partition.clone();
            let delay =
                std::time::Duration::from_millis(interval.clamp(0, 24 * 3600 * 1000) as u64);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                partition.clear_flush_scheduled();
                let end = partition.log_end_offset();
                let _ = flusher.flush(partition, end).await;
            });
        }
    }
}
