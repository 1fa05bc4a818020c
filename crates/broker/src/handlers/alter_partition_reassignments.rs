//! AlterPartitionReassignments: with one broker a partition's replicas can
//! only be this node, which they already are. Kafka's controller checks a
//! target the same way: an empty list, a broker that is not registered or
//! one named twice is INVALID_REPLICA_ASSIGNMENT; the current replicas
//! themselves are accepted and change nothing; cancelling (null replicas)
//! finds no reassignment in progress (NO_REASSIGNMENT_IN_PROGRESS); a
//! missing topic or partition is UNKNOWN_TOPIC_OR_PARTITION.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
};

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let responses = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let outcome = reassign(
                        &broker,
                        topic.name.as_str(),
                        partition.partition_index,
                        partition.replicas.as_deref(),
                    );
                    let (code, message) = match outcome {
                        Ok(()) => (0, None),
                        Err((error, message)) => (error.code(), Some(str_bytes(message))),
                    };
                    ReassignablePartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(request.allow_replication_factor_change)
        .with_responses(responses)
}

fn reassign(
    broker: &Broker,
    topic: &str,
    partition: i32,
    target: Option<&[BrokerId]>,
) -> Result<(), (ResponseError, String)> {
    if broker.topics.topic(topic).is_none() {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("Unable to find a topic named {topic}."),
        ));
    }
    if broker.partitions.get(topic, partition).is_none() {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("Unable to find partition {topic}:{partition}."),
        ));
    }
    let Some(target) = target else {
        return Err((
            ResponseError::NoReassignmentInProgress,
            "No partition reassignment is in progress for this topic partition.".to_string(),
        ));
    };
    let invalid = |message: String| Err((ResponseError::InvalidReplicaAssignment, message));
    if target.is_empty() {
        return invalid(
            "The manual partition assignment includes an empty replica list.".to_string(),
        );
    }
    let mut sorted: Vec<i32> = target.iter().map(|id| id.0).collect();
    sorted.sort_unstable();
    for (position, &id) in sorted.iter().enumerate() {
        if id != broker.node_id() {
            return invalid(format!(
                "The manual partition assignment includes broker {id}, but no such broker is registered."
            ));
        }
        if position > 0 && sorted[position - 1] == id {
            return invalid(format!(
                "The manual partition assignment includes the broker {id} more than once."
            ));
        }
    }
    // The target is this node alone: the partition's replicas already.
    Ok(())
}
