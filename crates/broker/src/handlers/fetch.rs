//! Fetch: byte ranges of partition logs, with long polling and sessions.
//!
//! The response carries whole record batches of segment files as they are
//! stored: the handler only locates them ([`strom_log::ReadSlice`]s), and the
//! connection sends them from the page cache with `sendfile` (see
//! [`crate::response`]). Each located range holds its segment file open
//! until sent; past the broker's budget for such files (an eighth of
//! `log.max.open.files`) a partition's records are read into memory
//! instead, so a fetch over thousands of partitions cannot run the broker
//! out of descriptors. If fewer than `min_bytes` are available the request
//! waits, up to `max_wait_ms`, for any of its partitions to receive data:
//! each partition's `data_arrived` notification wakes it, so a waiting
//! consumer gets a new record as soon as it is written. `max_bytes` bounds
//! the response and `partition_max_bytes` each partition, except that the
//! first batch of the response is always whole (KIP-74) so that a batch
//! larger than the limits cannot stall a consumer.
//!
//! A `read_committed` fetch (isolation level 1) stops at the last stable
//! offset and carries the aborted transactions among the returned records;
//! the client drops their records and every control batch.
//!
//! A follower's fetch (a replica id, Kafka's ReplicaState) is answered by
//! the leader only, past the high watermark up to the log end, and never
//! in a session. Its fetch offset tells the leader how much the follower
//! holds on disk ([`Partition::on_replica_fetch`]), which may move the
//! high watermark. Its leader epoch is checked (FENCED_LEADER_EPOCH when
//! older, UNKNOWN_LEADER_EPOCH when newer than the leader's), and so is the
//! epoch of the last batch it holds: a follower whose log diverged is told
//! where the leader's log of that epoch ends (DivergingEpoch), to truncate.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint,
    PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId};
use strom_log::{AbortedTxn, LogError};
use tokio::sync::Semaphore;
use tokio::time::{Duration, Instant};
use uuid::Uuid;

use super::{resolve_topic, str_bytes, topic_name, LeaderHints};
use crate::broker::Broker;
use crate::fetch_session::{PartitionState, SessionPartition, SessionPlan};
use crate::handlers::RequestContext;
use crate::partition::Partition;
use crate::response::{Located, Splices};

/// One partition's part of a response.
struct PartitionResult {
    key: SessionPartition,
    error: Option<ResponseError>,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Option<Located>,
    aborted: Vec<AbortedTxn>,
    /// For a follower: where the leader's log of its last epoch ends.
    diverging: Option<(i32, i64)>,
}

/// A follower fetching: its node id and broker epoch (`-1` if unknown).
#[derive(Debug, Clone, Copy)]
struct Replica {
    id: i32,
    broker_epoch: i64,
}

/// What a follower says of one partition beyond the fetch offset.
#[derive(Debug, Clone, Copy)]
struct Epochs {
    current_leader_epoch: i32,
    last_fetched_epoch: i32,
}

fn replica_of(context: &RequestContext, request: &FetchRequest) -> Option<Replica> {
    let (id, broker_epoch) = if context.api_version >= 15 {
        (
            request.replica_state.replica_id.0,
            request.replica_state.replica_epoch,
        )
    } else {
        (request.replica_id.0, -1)
    };
    (id >= 0).then_some(Replica { id, broker_epoch })
}

impl PartitionResult {
    /// A result with nothing found yet.
    fn new(key: &SessionPartition) -> PartitionResult {
        PartitionResult {
            key: key.clone(),
            error: None,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: None,
            aborted: Vec::new(),
            diverging: None,
        }
    }

    /// An error, or a divergence to report: answered without waiting.
    fn is_error(&self) -> bool {
        self.error.is_some() || self.diverging.is_some()
    }
}

/// The response, whose records are placeholders for the file ranges in
/// the returned [`Splices`].
pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: FetchRequest,
) -> (FetchResponse, Splices) {
    let uses_topic_ids = context.api_version >= 13;
    let read_committed = request.isolation_level == 1;
    let replica = replica_of(context, &request);
    let mut requested = Vec::new();
    let mut epochs = Vec::new();
    for topic in &request.topics {
        let name = resolve_topic(&broker, &topic.topic, topic.topic_id, uses_topic_ids);
        for partition in &topic.partitions {
            epochs.push(Epochs {
                current_leader_epoch: partition.current_leader_epoch,
                last_fetched_epoch: partition.last_fetched_epoch,
            });
            let key = SessionPartition {
                topic_id: if uses_topic_ids {
                    topic.topic_id
                } else {
                    Uuid::nil()
                },
                topic: name.clone(),
                partition: partition.partition,
            };
            requested.push((
                key,
                PartitionState::new(partition.fetch_offset, partition.partition_max_bytes),
            ));
        }
    }
    let forgotten: Vec<SessionPartition> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|topic| {
            let name = resolve_topic(&broker, &topic.topic, topic.topic_id, uses_topic_ids);
            let topic_id = if uses_topic_ids {
                topic.topic_id
            } else {
                Uuid::nil()
            };
            topic
                .partitions
                .iter()
                .map(move |partition| SessionPartition {
                    topic_id,
                    topic: name.clone(),
                    partition: *partition,
                })
        })
        .collect();

    let plan = if context.api_version >= 7 && replica.is_none() {
        broker.fetch_sessions.begin(
            request.session_id,
            request.session_epoch,
            &requested,
            &forgotten,
        )
    } else {
        Ok(SessionPlan::Sessionless)
    };
    let (session_id, partitions, incremental) = match plan {
        Ok(SessionPlan::Sessionless) => (0, requested, false),
        Ok(SessionPlan::Full { session_id }) => (session_id, requested, false),
        Ok(SessionPlan::Incremental {
            session_id,
            partitions,
        }) => (session_id, partitions, true),
        Err(error) => {
            return (
                FetchResponse::default().with_error_code(error.code()),
                Splices::default(),
            );
        }
    };

    let handles: Vec<Option<Arc<Partition>>> = partitions
        .iter()
        .map(|(key, _)| broker.partitions.get(&key.topic, key.partition))
        .collect();
    let max_wait = Duration::from_millis(request.max_wait_ms.clamp(0, 5 * 60 * 1000) as u64);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        request.max_bytes as usize
    };

    let mut results = loop {
        // Register for wake-ups before reading, so a write that lands
        // between the read and the wait is not missed.
        let mut arrivals: Vec<_> = handles
            .iter()
            .flatten()
            .map(|partition| Box::pin(partition.data_arrived.notified()))
            .collect();
        for arrival in &mut arrivals {
            arrival.as_mut().enable();
        }
        let results = match replica {
            // Sessionless, so `partitions` are the requested ones, in order.
            Some(replica) => read_for_replica(
                &broker,
                replica,
                &partitions,
                &epochs,
                &handles,
                max_bytes,
                &broker.splice_files,
            ),
            None => read_partitions(
                &broker,
                uses_topic_ids,
                read_committed,
                &partitions,
                &handles,
                max_bytes,
                &broker.splice_files,
            ),
        };
        let bytes: usize = results
            .iter()
            .filter_map(|result| result.records.as_ref())
            .map(Located::size)
            .sum();
        let has_error = results.iter().any(PartitionResult::is_error);
        if bytes >= min_bytes || has_error || arrivals.is_empty() || Instant::now() >= deadline {
            break results;
        }
        // Not enough yet: let go of the located ranges (files, budget
        // shares, copies) while waiting; the next round locates afresh.
        drop(results);
        tokio::select! {
            _ = select_all(arrivals) => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    };

    let states: Vec<PartitionState> = partitions.iter().map(|(_, state)| *state).collect();
    let slices = results
        .iter_mut()
        .map(|result| result.records.take())
        .collect();
    let (splices, placeholders) = Splices::new(slices);
    let mut sent = Vec::new();
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    let mut hints = LeaderHints::default();
    for ((result, state), records) in results.into_iter().zip(states).zip(placeholders) {
        let changed = result.is_error()
            || !records.is_empty()
            || result.high_watermark != state.last_high_watermark
            || result.log_start_offset != state.last_log_start_offset;
        if incremental && !changed {
            continue;
        }
        if session_id != 0 {
            sent.push((
                result.key.clone(),
                result.high_watermark,
                result.log_start_offset,
            ));
        }
        let data = PartitionData::default()
            .with_partition_index(result.key.partition)
            .with_error_code(result.error.map_or(0, |error| error.code()))
            .with_high_watermark(result.high_watermark)
            .with_last_stable_offset(result.last_stable_offset)
            .with_log_start_offset(result.log_start_offset)
            .with_aborted_transactions(read_committed.then(|| {
                result
                    .aborted
                    .iter()
                    .map(|aborted| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(aborted.producer_id))
                            .with_first_offset(aborted.first_offset)
                    })
                    .collect()
            }))
            .with_records(Some(records));
        let mut data = match result.diverging {
            Some((epoch, end_offset)) => data.with_diverging_epoch(
                EpochEndOffset::default()
                    .with_epoch(epoch)
                    .with_end_offset(end_offset),
            ),
            None => data,
        };
        if let Some((leader, epoch)) = hints.for_partition(
            &broker,
            &result.key.topic,
            result.key.partition,
            data.error_code,
        ) {
            data.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader))
                .with_leader_epoch(epoch);
        }
        let same_topic = topics.last().is_some_and(|last| {
            last.topic.as_str() == result.key.topic && last.topic_id == result.key.topic_id
        });
        if !same_topic {
            topics.push(
                FetchableTopicResponse::default()
                    .with_topic(topic_name(&result.key.topic))
                    .with_topic_id(result.key.topic_id),
            );
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(data);
        }
    }
    if session_id != 0 {
        broker.fetch_sessions.record_sent(session_id, &sent);
    }
    let endpoints = hints.endpoints.into_iter().map(|live| {
        NodeEndpoint::default()
            .with_node_id(BrokerId(live.node_id))
            .with_host(str_bytes(live.host))
            .with_port(i32::from(live.port))
            .with_rack(live.rack.map(str_bytes))
    });
    let response = FetchResponse::default()
        .with_session_id(session_id)
        .with_responses(topics)
        .with_node_endpoints(endpoints.collect());
    (response, splices)
}

/// The response with each placeholder replaced by the records it stands
/// for, read into memory (when they cannot be sent from the file).
pub fn with_records_read(mut response: FetchResponse, splices: Splices) -> FetchResponse {
    let slices = splices.into_slices();
    for partition in response
        .responses
        .iter_mut()
        .flat_map(|topic| topic.partitions.iter_mut())
    {
        let Some(records) = partition.records.as_mut() else {
            continue;
        };
        let Some((_, slice)) = slices.iter().find(|(placeholder, _)| {
            placeholder.as_ptr() == records.as_ptr() && !records.is_empty()
        }) else {
            continue;
        };
        *records = match slice.read() {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                tracing::error!(partition = partition.partition_index, %error, "reading a segment failed");
                partition.error_code = ResponseError::KafkaStorageError.code();
                Bytes::new()
            }
        };
    }
    response
}

fn read_partitions(
    broker: &Broker,
    uses_topic_ids: bool,
    read_committed: bool,
    partitions: &[(SessionPartition, PartitionState)],
    handles: &[Option<Arc<Partition>>],
    max_bytes: usize,
    budget: &Arc<Semaphore>,
) -> Vec<PartitionResult> {
    let mut remaining = max_bytes;
    let mut first_batch_sent = false;
    partitions
        .iter()
        .zip(handles)
        .map(|((key, state), handle)| {
            let mut result = PartitionResult::new(key);
            let Some(partition) = handle else {
                result.error = Some(not_here(broker, key, uses_topic_ids));
                return result;
            };
            if !partition.is_leader() {
                result.error = Some(ResponseError::NotLeaderOrFollower);
                return result;
            }
            if partition.log().is_offline() {
                result.error = Some(ResponseError::KafkaStorageError);
                return result;
            }
            result.high_watermark = partition.high_watermark();
            result.last_stable_offset = partition.last_stable_offset();
            result.log_start_offset = partition.log_start_offset();
            let limit = remaining.min(state.max_bytes.max(0) as usize);
            if limit == 0 && first_batch_sent {
                return result;
            }
            let read = partition.read_isolated(
                state.fetch_offset,
                limit,
                !first_batch_sent,
                read_committed,
            );
            take_read(
                &mut result,
                read,
                budget,
                &mut remaining,
                &mut first_batch_sent,
            );
            result
        })
        .collect()
}

/// Why a partition is not held here: an unknown topic id, or what
/// [`crate::topics::Topics::not_here`] says.
fn not_here(broker: &Broker, key: &SessionPartition, uses_topic_ids: bool) -> ResponseError {
    if uses_topic_ids && key.topic.is_empty() {
        ResponseError::UnknownTopicId
    } else {
        broker.topics.not_here(&key.topic, key.partition)
    }
}

/// Puts what a read found into `result`, counting its bytes.
fn take_read(
    result: &mut PartitionResult,
    read: Result<(Option<strom_log::ReadSlice>, Vec<AbortedTxn>), LogError>,
    budget: &Arc<Semaphore>,
    remaining: &mut usize,
    first_batch_sent: &mut bool,
) {
    let key = &result.key;
    match read {
        Ok((Some(slice), aborted)) => match Located::new(slice, budget) {
            Ok(located) => {
                *remaining = remaining.saturating_sub(located.size());
                *first_batch_sent = true;
                result.records = Some(located);
                result.aborted = aborted;
            }
            Err(error) => {
                tracing::error!(topic = %key.topic, partition = key.partition, %error, "reading a partition failed");
                result.error = Some(ResponseError::KafkaStorageError);
            }
        },
        Ok((None, _)) => {}
        Err(LogError::OffsetOutOfRange { .. }) => {
            result.error = Some(ResponseError::OffsetOutOfRange);
        }
        Err(error) => {
            tracing::error!(topic = %key.topic, partition = key.partition, %error, "reading a partition failed");
            result.error = Some(ResponseError::KafkaStorageError);
        }
    }
}

/// A follower's fetch: checks its epochs, counts its position towards the
/// high watermark, and reads up to the log end.
fn read_for_replica(
    broker: &Broker,
    replica: Replica,
    partitions: &[(SessionPartition, PartitionState)],
    epochs: &[Epochs],
    handles: &[Option<Arc<Partition>>],
    max_bytes: usize,
    budget: &Arc<Semaphore>,
) -> Vec<PartitionResult> {
    let mut remaining = max_bytes;
    let mut first_batch_sent = false;
    partitions
        .iter()
        .zip(epochs)
        .zip(handles)
        .map(|(((key, state), epochs), handle)| {
            let mut result = PartitionResult::new(key);
            let Some(partition) = handle else {
                result.error = Some(not_here(broker, key, true));
                return result;
            };
            let epoch = partition.leader_epoch();
            if !partition.is_leader() {
                result.error = Some(ResponseError::NotLeaderOrFollower);
                return result;
            }
            if epochs.current_leader_epoch >= 0 && epochs.current_leader_epoch < epoch {
                result.error = Some(ResponseError::FencedLeaderEpoch);
                return result;
            }
            if epochs.current_leader_epoch > epoch {
                result.error = Some(ResponseError::UnknownLeaderEpoch);
                return result;
            }
            let verdict = {
                let log = partition.log();
                if log.is_offline() {
                    result.error = Some(ResponseError::KafkaStorageError);
                    return result;
                }
                let last_fetched =
                    (epochs.last_fetched_epoch >= 0).then_some(epochs.last_fetched_epoch);
                strom_replica::check_fetch(
                    state.fetch_offset,
                    last_fetched,
                    last_fetched.map_or((-1, -1), |e| log.end_offset_for_epoch(e)),
                    log.log_start_offset(),
                    log.log_end_offset(),
                )
            };
            match verdict {
                strom_replica::FetchPosition::Agrees => {}
                strom_replica::FetchPosition::Diverging { epoch, end_offset } => {
                    result.diverging = Some((epoch, end_offset));
                }
                strom_replica::FetchPosition::OutOfRange => {
                    result.error = Some(ResponseError::OffsetOutOfRange);
                }
            }
            if result.diverging.is_none() && result.error.is_none() {
                partition.on_replica_fetch(replica.id, state.fetch_offset, replica.broker_epoch);
            }
            result.high_watermark = partition.high_watermark();
            result.last_stable_offset = partition.last_stable_offset();
            result.log_start_offset = partition.log_start_offset();
            if result.diverging.is_some() || result.error.is_some() {
                return result;
            }
            let limit = remaining.min(state.max_bytes.max(0) as usize);
            if limit == 0 && first_batch_sent {
                return result;
            }
            let read = partition
                .read_for_replica(state.fetch_offset, limit, !first_batch_sent)
                .map(|slice| (slice, Vec::new()));
            take_read(
                &mut result,
                read,
                budget,
                &mut remaining,
                &mut first_batch_sent,
            );
            result
        })
        .collect()
}
