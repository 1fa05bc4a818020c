//! DescribeTopicPartitions (KIP-966): topics and their partitions, paged.
//! The Java admin client (3.8+) describes topics with it. Kafka's rules:
//! topics are answered in name order from the cursor's topic (from its
//! partition, for that one topic), at most `response_partition_limit`
//! partitions in all (at least 1, at most `max.request.partition.size.limit`);
//! if more remain, `next_cursor` names the first partition not answered. An
//! empty topic list asks for every topic and leaves out missing ones; named
//! topics that do not exist are answered UNKNOWN_TOPIC_OR_PARTITION (or
//! INVALID_TOPIC_EXCEPTION for a name no topic could have).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};
use strom_metadata::TopicMetadata;
use uuid::Uuid;

use super::topic_name;
use crate::authorization::{authorized_operations, Resource};
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::topics::validate_topic_name;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    match describe(&broker, &request) {
        Ok(response) => response,
        // Kafka answers a malformed request with the error for each topic.
        Err(error) => DescribeTopicPartitionsResponse::default().with_topics(
            request
                .topics
                .iter()
                .map(|topic| {
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(topic.name.clone()))
                        .with_error_code(error.code())
                })
                .collect(),
        ),
    }
}

fn describe(
    broker: &Broker,
    request: &DescribeTopicPartitionsRequest,
) -> Result<DescribeTopicPartitionsResponse, ResponseError> {
    let every_topic = request.topics.is_empty();
    let cursor = request
        .cursor
        .as_ref()
        .map(|cursor| (cursor.topic_name.to_string(), cursor.partition_index));
    let from_topic = cursor.as_ref().map_or("", |(topic, _)| topic.as_str());
    let mut names: Vec<String> = if every_topic {
        broker
            .topics
            .all_topics()
            .into_iter()
            .map(|topic| topic.name)
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|topic| topic.name.to_string())
            .collect()
    };
    names.retain(|name| name.as_str() >= from_topic);
    names.sort();
    names.dedup();
    if let Some((topic, partition)) = &cursor {
        // The cursor's topic must be among those asked for, and its
        // partition a real index.
        if (!every_topic && names.binary_search(topic).is_err()) || *partition < 0 {
            return Err(ResponseError::InvalidRequest);
        }
    }
    let limit_max = broker
        .config
        .overrides
        .get_i64("max.request.partition.size.limit")
        .clamp(1, i32::MAX as i64) as i32;
    let mut remaining = request.response_partition_limit.min(limit_max).max(1) as usize;
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // The previous topic was answered whole; the next page starts here.
            response.next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)));
            break;
        }
        let Some(topic) = broker.topics.topic(&name) else {
            if !every_topic {
                let error = match validate_topic_name(&name) {
                    Ok(()) => ResponseError::UnknownTopicOrPartition,
                    Err(_) => ResponseError::InvalidTopicException,
                };
                response.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(topic_name(&name)))
                        .with_topic_id(Uuid::nil())
                        .with_is_internal(is_internal(&name))
                        .with_error_code(error.code()),
                );
            }
            continue;
        };
        let start = match &cursor {
            Some((cursor_topic, partition)) if *cursor_topic == name => *partition as usize,
            _ => 0,
        };
        let end = topic.partitions.len().min(start.saturating_add(remaining));
        response.topics.push(describe_topic(&topic, start, end));
        if end < topic.partitions.len() {
            response.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(end as i32),
            );
            break;
        }
        remaining -= end.saturating_sub(start);
    }
    Ok(response)
}

/// Kafka's internal topics (`Topic.isInternal`).
fn is_internal(name: &str) -> bool {
    matches!(name, "__consumer_offsets" | "__transaction_state")
}

/// The topic with its partitions `start..end`.
fn describe_topic(
    topic: &TopicMetadata,
    start: usize,
    end: usize,
) -> DescribeTopicPartitionsResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .take(end)
        .skip(start)
        .map(|(index, partition)| {
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(partition.leader))
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(partition.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(partition.isr.iter().copied().map(BrokerId).collect())
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
        })
        .collect();
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.topic_id)
        .with_is_internal(is_internal(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(authorized_operations(Resource::Topic))
}
