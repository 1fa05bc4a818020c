//! CreatePartitions: grow a topic to a larger partition count.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::topics::TopicError;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.to_string();
        let assignments_valid = topic.assignments.as_ref().is_none_or(|assignments| {
            assignments.iter().all(|assignment| {
                assignment.broker_ids.len() == 1 && assignment.broker_ids[0].0 == broker.node_id()
            })
        });
        let outcome = if !assignments_valid {
            Err(TopicError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "new partitions must be assigned to broker {} alone",
                    broker.node_id()
                ),
            ))
        } else {
            let grower = broker.clone();
            let count = topic.count;
            let validate_only = request.validate_only;
            tokio::spawn(async move {
                grower
                    .topics
                    .add_partitions(&name, count, validate_only)
                    .await
            })
            .await
            .unwrap_or_else(|_| {
                Err(TopicError::new(
                    ResponseError::UnknownServerError,
                    "adding partitions failed",
                ))
            })
        };
        let result = CreatePartitionsTopicResult::default().with_name(topic.name);
        results.push(match outcome {
            Ok(()) => result,
            Err(error) => result
                .with_error_code(error.error.code())
                .with_error_message(Some(str_bytes(error.message))),
        });
    }
    CreatePartitionsResponse::default().with_results(results)
}
