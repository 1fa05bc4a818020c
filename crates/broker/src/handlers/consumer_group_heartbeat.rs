//! ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile and leave in one
//! API; the broker computes the assignment.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use strom_coordinator::consumer_group::{HeartbeatRequest, Partitions};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let failed = |code: i16, message: &str| {
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(message)))
            .with_member_epoch(-1)
    };
    if let Err(error) = broker.groups.coordinate(&request.group_id).await {
        let message = match error {
            kafka_protocol::error::ResponseError::NotCoordinator => {
                "this broker is not the group's coordinator; ask FindCoordinator"
            }
            kafka_protocol::error::ResponseError::CoordinatorLoadInProgress => {
                "this broker is loading the group's partition of __consumer_offsets"
            }
            _ => "the group coordinator is not available",
        };
        return failed(error.code(), message);
    }
    let view = crate::groups::topic_view(&broker.topics);
    let by_id: BTreeMap<Uuid, String> = view
        .iter()
        .map(|(name, (id, _))| (Uuid::from_bytes(*id), name.clone()))
        .collect();
    let owned = request.topic_partitions.as_ref().map(|topics| {
        let mut owned = Partitions::new();
        for topic in topics {
            if let Some(name) = by_id.get(&topic.topic_id) {
                owned
                    .entry(name.clone())
                    .or_default()
                    .extend(topic.partitions.iter().copied());
            }
        }
        owned
    });
    let heartbeat = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|id| id.to_string()),
        rack_id: request.rack_id.as_ref().map(|id| id.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms as i64,
        subscribed_topics: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|name| name.to_string()).collect()),
        subscribed_regex: request
            .subscribed_topic_regex
            .as_ref()
            .map(|regex| regex.to_string()),
        server_assignor: request
            .server_assignor
            .as_ref()
            .map(|name| name.to_string()),
        owned,
        client_id: context.client_id.clone().unwrap_or_default(),
        client_host: "/127.0.0.1".to_string(),
    };
    let outcome = broker
        .groups
        .consumer_heartbeat(&request.group_id, heartbeat, &view);
    match outcome {
        Err(error) => failed(error.code(), error.message()),
        Ok(response) => {
            let assignment = response.assignment.map(|assigned| {
                let topics = assigned
                    .into_iter()
                    .filter_map(|(topic, partitions): (String, BTreeSet<i32>)| {
                        let (id, _) = view.get(&topic)?;
                        Some(
                            TopicPartitions::default()
                                .with_topic_id(Uuid::from_bytes(*id))
                                .with_partitions(partitions.into_iter().collect()),
                        )
                    })
                    .collect();
                Assignment::default().with_topic_partitions(topics)
            });
            ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(response.member_id)))
                .with_member_epoch(response.member_epoch)
                .with_heartbeat_interval_ms(response.heartbeat_interval_ms)
                .with_assignment(assignment)
        }
    }
}
