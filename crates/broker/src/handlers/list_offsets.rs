//! ListOffsets: the earliest, latest or max-timestamp offset of a partition,
//! or the first offset whose record timestamp is at or after a given time.

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;
use strom_log::batch::BatchHeader;

use super::topic_name;
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::partition::Partition;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let with_epoch = context.api_version >= 4;
    // read_committed consumers see up to the last stable offset.
    let read_committed = request.isolation_level == 1;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .into_iter()
                .map(|requested| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(requested.partition_index);
                    let Some(partition) = broker
                        .partitions
                        .get(&topic.name, requested.partition_index)
                    else {
                        let error = broker
                            .topics
                            .not_here(&topic.name, requested.partition_index);
                        return response.with_error_code(error.code());
                    };
                    if !partition.is_leader() {
                        return response.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    match lookup(&partition, requested.timestamp, read_committed) {
                        Ok((timestamp, offset)) => {
                            let response = response.with_timestamp(timestamp).with_offset(offset);
                            if with_epoch && offset >= 0 {
                                response.with_leader_epoch(partition.leader_epoch())
                            } else {
                                response
                            }
                        }
                        Err(error) => response.with_error_code(error.code()),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic_name(&topic.name))
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset) for one partition; -1/-1 when no record qualifies.
fn lookup(
    partition: &Partition,
    timestamp: i64,
    read_committed: bool,
) -> Result<(i64, i64), ResponseError> {
    let high_watermark = partition.visible_end(read_committed);
    let found = match timestamp {
        LATEST => return Ok((-1, high_watermark)),
        EARLIEST | EARLIEST_LOCAL => return Ok((-1, partition.log_start_offset())),
        LATEST_TIERED => return Ok((-1, -1)),
        MAX_TIMESTAMP => {
            let batch = partition
                .log()
                .max_timestamp_batch()
                .map_err(storage_error)?;
            batch.and_then(max_timestamp_record)
        }
        target if target >= 0 => {
            let batch = partition
                .log()
                .find_by_timestamp(target)
                .map_err(storage_error)?;
            batch.and_then(|bytes| first_record_at_or_after(bytes, target))
        }
        _ => return Err(ResponseError::InvalidRequest),
    };
    Ok(match found {
        Some((timestamp, offset)) if offset < high_watermark => (timestamp, offset),
        _ => (-1, -1),
    })
}

fn storage_error(error: strom_log::LogError) -> ResponseError {
    tracing::error!(%error, "offset lookup failed");
    ResponseError::KafkaStorageError
}

/// Record timestamps and offsets of a stored batch. LogAppendTime batches
/// carry one broker timestamp for all their records.
fn record_times(bytes: Vec<u8>) -> Option<Vec<(i64, i64)>> {
    let header = BatchHeader::parse(&bytes).ok()?;
    if header.is_log_append_time() {
        return Some(vec![(header.max_timestamp, header.base_offset)]);
    }
    let mut buffer = Bytes::from(bytes);
    match RecordBatchDecoder::decode(&mut buffer) {
        Ok(set) => Some(
            set.records
                .iter()
                .map(|record| (record.timestamp, record.offset))
                .collect(),
        ),
        Err(error) => {
            // Stored batches passed a CRC check; a codec we cannot read is
            // answered with the batch's own bounds.
            tracing::warn!(%error, "could not decode a stored batch for a timestamp lookup");
            Some(vec![(header.max_timestamp, header.base_offset)])
        }
    }
}

fn first_record_at_or_after(bytes: Vec<u8>, target: i64) -> Option<(i64, i64)> {
    record_times(bytes)?
        .into_iter()
        .find(|(timestamp, _)| *timestamp >= target)
}

fn max_timestamp_record(bytes: Vec<u8>) -> Option<(i64, i64)> {
    // The first record carrying the largest timestamp.
    record_times(bytes)?
        .into_iter()
        .reduce(|best, next| if next.0 > best.0 { next } else { best })
}
