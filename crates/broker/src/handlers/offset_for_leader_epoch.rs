//! OffsetForLeaderEpoch: the end offset of a leader epoch, which consumers
//! use to detect log truncation after a leader change. Every partition has
//! had one leader epoch so far, so the answer is the log end offset for the
//! current epoch and "unknown" for epochs this broker never had.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::protocol::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|requested| {
                    let result = EpochEndOffset::default()
                        .with_partition(requested.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    let Some(partition) = broker.partitions.get(&topic.topic, requested.partition)
                    else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let current = partition.leader_epoch;
                    if requested.current_leader_epoch > current {
                        return result.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    if requested.current_leader_epoch >= 0
                        && requested.current_leader_epoch < current
                    {
                        return result.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    if requested.leader_epoch == current {
                        result
                            .with_leader_epoch(current)
                            .with_end_offset(partition.log_end_offset())
                    } else {
                        result
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
