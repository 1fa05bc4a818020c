//! OffsetDelete: removes committed offsets of topics the group does not
//! consume (all of them when it has no members).

use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetDeleteRequest, OffsetDeleteResponse,
};
use kafka_protocol::protocol::Decodable;

use crate::broker::Broker;
use crate::handlers::RequestContext;

/// Topics the group's members subscribe to (consumer protocol metadata).
fn subscribed_topics(
    coordinator: &strom_coordinator::GroupCoordinator,
    group_id: &str,
) -> Vec<String> {
    let Some(group) = coordinator.group(group_id) else {
        return Vec::new();
    };
    let mut topics = Vec::new();
    for member in group.members.values() {
        for (_, metadata) in &member.protocols {
            let mut bytes = Bytes::copy_from_slice(metadata);
            if bytes.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([bytes[0], bytes[1]]);
            let _ = bytes::Buf::get_i16(&mut bytes);
            if let Ok(subscription) =
                ConsumerProtocolSubscription::decode(&mut bytes, version.clamp(0, 3))
            {
                topics.extend(subscription.topics.iter().map(|topic| topic.to_string()));
            }
        }
    }
    topics
}

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let group_id = request.group_id.to_string();
    if let Err(error) = broker.groups.coordinate(&group_id).await {
        return OffsetDeleteResponse::default().with_error_code(error.code());
    }
    if broker
        .groups
        .read(|groups| groups.state_of(&group_id))
        .is_none()
    {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = broker
        .groups
        .read(|groups| subscribed_topics(groups, &group_id));
    let mut deleted = Vec::new();
    let mut topics = Vec::new();
    for topic in request.topics {
        let busy = subscribed
            .iter()
            .any(|name| name.as_str() == topic.name.as_str());
        let partitions = topic
            .partitions
            .iter()
            .map(|partition| {
                let code = if busy {
                    ResponseError::GroupSubscribedToTopic.code()
                } else {
                    deleted.push((topic.name.to_string(), partition.partition_index));
                    0
                };
                OffsetDeleteResponsePartition::default()
                    .with_partition_index(partition.partition_index)
                    .with_error_code(code)
            })
            .collect();
        topics.push(
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    broker.groups.delete_offsets(&group_id, &deleted).await;
    OffsetDeleteResponse::default().with_topics(topics)
}
