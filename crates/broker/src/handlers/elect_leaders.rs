//! ElectLeaders: on one node every partition already has its preferred
//! leader (the node, its only replica) and a leader at all, so each named
//! partition is answered ELECTION_NOT_NEEDED, as a one-broker Kafka answers;
//! a missing topic or partition is UNKNOWN_TOPIC_OR_PARTITION. Asked for
//! every partition (a null list), Kafka leaves out those that needed no
//! election, which here is all of them.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::protocol::RequestContext;

/// Kafka's election types: preferred (0) and unclean (1).
const ELECTION_TYPES: [i8; 2] = [0, 1];

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    // Version 0 has no election type and means preferred.
    if context.api_version >= 1 && !ELECTION_TYPES.contains(&request.election_type) {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let results = match request.topic_partitions {
        None => broker
            .topics
            .all_topics()
            .into_iter()
            .map(|topic| ReplicaElectionResult::default().with_topic(topic_name(&topic.name)))
            .collect(),
        Some(topics) => topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|&index| elect(&broker, topic.topic.as_str(), index))
                    .collect();
                ReplicaElectionResult::default()
                    .with_topic(topic.topic)
                    .with_partition_result(partitions)
            })
            .collect(),
    };
    ElectLeadersResponse::default().with_replica_election_results(results)
}

fn elect(broker: &Broker, topic: &str, partition: i32) -> PartitionResult {
    let (error, message) = if broker.topics.topic(topic).is_none() {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("No such topic as {topic}"),
        )
    } else if broker.partitions.get(topic, partition).is_none() {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("No such partition as {topic}-{partition}"),
        )
    } else {
        (
            ResponseError::ElectionNotNeeded,
            "Leader election not needed for topic partition.".to_string(),
        )
    };
    PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(error.code())
        .with_error_message(Some(str_bytes(message)))
}
