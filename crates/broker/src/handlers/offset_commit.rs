//! OffsetCommit: checks the member and generation, writes the offsets to
//! `__consumer_offsets`, and answers once they are durable. An offset for a
//! topic or partition that does not exist is refused with
//! UNKNOWN_TOPIC_OR_PARTITION and the others are committed, as Kafka does
//! (the admin client's "alter consumer group offsets" is this request too).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;

use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let group_id = request.group_id.to_string();
    let check = match broker.groups.coordinate(&group_id).await {
        Err(error) => Err(error.code()),
        Ok(()) => broker.groups.check_commit(
            &group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id_or_member_epoch,
            false,
        ),
    };
    let requested: Vec<_> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.as_str(),
                    partition.partition_index,
                    partition.committed_offset,
                    partition.committed_leader_epoch,
                    partition.committed_metadata.as_deref(),
                )
            })
        })
        .collect();
    let outcome = match check {
        Err(code) => Err(code),
        Ok(()) => broker
            .groups
            .commit_offsets(&group_id, requested)
            .await
            .map_err(|error| {
                tracing::error!(group = %group_id, %error, "offset commit failed");
                ResponseError::CoordinatorNotAvailable.code()
            }),
    };
    let code = outcome.err().unwrap_or(0);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let index = partition.partition_index;
                    let code = if broker.groups.partition_exists(&topic.name, index) {
                        code
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
