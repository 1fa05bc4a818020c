//! DescribeProducers: the idempotent and transactional producers each
//! partition remembers (epoch, last sequence and timestamp, the first
//! offset of an open transaction), for operators
//! (`kafka-transactions.sh describe-producers`, `find-hanging`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|index| describe(&broker, topic.name.as_str(), *index))
                .collect();
            TopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

fn describe(broker: &Broker, topic: &str, index: i32) -> PartitionResponse {
    let response = PartitionResponse::default().with_partition_index(index);
    // The leader answers (Kafka's admin client asks it); a follower or a
    // broker without a replica says NOT_LEADER_OR_FOLLOWER.
    let Some(partition) = broker
        .partitions
        .get(topic, index)
        .filter(|partition| partition.is_leader())
    else {
        let error = broker.topics.not_here(topic, index);
        let message = match error {
            ResponseError::NotLeaderOrFollower => {
                format!("this broker does not lead partition {index} of topic '{topic}'; ask its leader")
            }
            _ => format!("there is no partition {index} of topic '{topic}'"),
        };
        return response
            .with_error_code(error.code())
            .with_error_message(Some(str_bytes(message)));
    };
    let producers = partition
        .describe_producers()
        .into_iter()
        .map(|producer| {
            ProducerState::default()
                .with_producer_id(ProducerId(producer.producer_id))
                .with_producer_epoch(producer.epoch as i32)
                .with_last_sequence(producer.last_sequence)
                .with_last_timestamp(producer.last_timestamp)
                .with_coordinator_epoch(producer.coordinator_epoch)
                .with_current_txn_start_offset(producer.transaction_start_offset)
        })
        .collect();
    response.with_active_producers(producers)
}
