//! ElectLeaders: the active controller elects the preferred leader, or any
//! replica for a partition without a leader (unclean), per partition;
//! ELECTION_NOT_NEEDED where the partition already has the leader asked
//! for, UNKNOWN_TOPIC_OR_PARTITION for one that does not exist. Asked for
//! every partition (a null list), Kafka leaves out those that needed no
//! election.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use strom_controller::ElectionType;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::handlers::RequestContext;

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
    let election = if context.api_version >= 1 && request.election_type == 1 {
        ElectionType::Unclean
    } else {
        ElectionType::Preferred
    };
    let results = match request.topic_partitions {
        // Every partition: those that needed no election are left out.
        None => {
            let mut results = Vec::new();
            for topic in broker.topics.all_topics() {
                let mut partitions = Vec::new();
                for index in 0..topic.partitions.len() as i32 {
                    let result = elect(&broker, &topic.name, index, election).await;
                    if result.error_code != ResponseError::ElectionNotNeeded.code() {
                        partitions.push(result);
                    }
                }
                if !partitions.is_empty() {
                    results.push(
                        ReplicaElectionResult::default()
                            .with_topic(topic_name(&topic.name))
                            .with_partition_result(partitions),
                    );
                }
            }
            results
        }
        Some(topics) => {
            let mut results = Vec::new();
            for topic in topics {
                let mut partitions = Vec::new();
                for &index in &topic.partitions {
                    partitions.push(elect(&broker, topic.topic.as_str(), index, election).await);
                }
                results.push(
                    ReplicaElectionResult::default()
                        .with_topic(topic.topic)
                        .with_partition_result(partitions),
                );
            }
            results
        }
    };
    ElectLeadersResponse::default().with_replica_election_results(results)
}

async fn elect(
    broker: &Broker,
    topic: &str,
    partition: i32,
    election: ElectionType,
) -> PartitionResult {
    let (code, message) = match broker.topics.elect_leader(topic, partition, election).await {
        Ok(()) => (0, None),
        Err(refused) => (refused.error.code(), Some(str_bytes(refused.message))),
    };
    PartitionResult::default()
        .with_partition_id(partition)
        .with_error_code(code)
        .with_error_message(message)
}
