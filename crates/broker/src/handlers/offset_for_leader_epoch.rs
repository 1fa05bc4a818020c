//! OffsetForLeaderEpoch: the end offset of a leader epoch, which consumers
//! use to detect log truncation after a leader change and followers to find
//! where their log forked from the leader's. Answered from the partition's
//! leader-epoch cache (`strom_log::LeaderEpochCache`), as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use crate::broker::Broker;
use crate::handlers::RequestContext;

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
                    let current = partition.leader_epoch();
                    if requested.current_leader_epoch > current {
                        return result.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    if requested.current_leader_epoch >= 0
                        && requested.current_leader_epoch < current
                    {
                        return result.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    let (epoch, end_offset) =
                        partition.log().end_offset_for_epoch(requested.leader_epoch);
                    result.with_leader_epoch(epoch).with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
