//! DeleteRecords: advance partitions' log start offsets, deleting whole
//! segments below them. Offset -1 means the high watermark.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use strom_log::LogError;

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for requested in topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(requested.partition_index)
                .with_low_watermark(-1);
            let Some(partition) = broker
                .partitions
                .get(&topic.name, requested.partition_index)
            else {
                partitions
                    .push(result.with_error_code(ResponseError::UnknownTopicOrPartition.code()));
                continue;
            };
            let offset = if requested.offset == -1 {
                partition.high_watermark()
            } else {
                requested.offset
            };
            let deleted =
                tokio::task::spawn_blocking(move || partition.delete_records_before(offset)).await;
            partitions.push(match deleted {
                Ok(Ok(low_watermark)) => result.with_low_watermark(low_watermark),
                Ok(Err(LogError::OffsetOutOfRange { .. })) => {
                    result.with_error_code(ResponseError::OffsetOutOfRange.code())
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "DeleteRecords failed");
                    result.with_error_code(ResponseError::KafkaStorageError.code())
                }
                Err(_) => result.with_error_code(ResponseError::UnknownServerError.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}
