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
use crate::groups::{offset_record, write_records};
use crate::protocol::RequestContext;

/// Topics the group's members subscribe to (consumer protocol metadata).
fn subscribed_topics(broker: &Broker, group_id: &str) -> Vec<String> {
    let coordinator = broker.groups.coordinator();
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
    if let Err(error) = broker.groups.coordinate(&broker, &group_id).await {
        return OffsetDeleteResponse::default().with_error_code(error.code());
    }
    if broker.groups.coordinator().state_of(&group_id).is_none() {
        return OffsetDeleteResponse::default()
            .with_error_code(ResponseError::GroupIdNotFound.code());
    }
    let subscribed = subscribed_topics(&broker, &group_id);
    let mut tombstones = Vec::new();
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
                    broker.groups.coordinator().delete_offset(
                        &group_id,
                        &topic.name,
                        partition.partition_index,
                    );
                    tombstones.push(offset_record(
                        &group_id,
                        &topic.name,
                        partition.partition_index,
                        None,
                    ));
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
    if !tombstones.is_empty() {
        if let Err(error) = write_records(&broker, &group_id, tombstones).await {
            tracing::warn!(group = %group_id, %error, "could not persist offset deletion");
        }
    }
    OffsetDeleteResponse::default().with_topics(topics)
}
