//! FindCoordinator: a group's coordinator is the leader of its partition of
//! `__consumer_offsets`, a transactional id's the leader of its partition of
//! `__transaction_state` (Kafka's `abs(hashCode) % partitions`). Creates the
//! topic on first use.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use strom_coordinator::records::partition_for;

use super::str_bytes;
use crate::broker::Broker;
use crate::groups::OFFSETS_TOPIC;
use crate::handlers::RequestContext;
use crate::topics::LiveBroker;
use crate::transactions::TRANSACTION_TOPIC;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let ready = match request.key_type {
        GROUP => broker.groups.ensure_ready().await,
        TRANSACTION => broker.transactions.ensure_ready().await,
        other => Err(crate::topics::TopicError::new(
            ResponseError::InvalidRequest,
            format!("unknown coordinator key type {other}"),
        )),
    };
    let error = ready.err().map(|error| {
        let code = if error.error == ResponseError::InvalidRequest {
            error.error
        } else {
            ResponseError::CoordinatorNotAvailable
        };
        (code, error.message)
    });
    let topic = if request.key_type == TRANSACTION {
        TRANSACTION_TOPIC
    } else {
        OFFSETS_TOPIC
    };
    // Each key's coordinator, or why there is none.
    let locate = |key: &str| -> Result<LiveBroker, (ResponseError, String)> {
        if let Some(error) = &error {
            return Err(error.clone());
        }
        let count = broker
            .topics
            .topic(topic)
            .map_or(0, |metadata| metadata.partitions.len() as i32);
        let index = partition_for(key, count.max(1));
        broker.topics.leader_of(topic, index).ok_or_else(|| {
            (
                ResponseError::CoordinatorNotAvailable,
                format!("{topic} partition {index} has no live leader yet; retry"),
            )
        })
    };
    let answer = |key: &str| match locate(key) {
        Ok(node) => (0, None, node.node_id, node.host, i32::from(node.port)),
        Err((error, message)) => (
            error.code(),
            Some(str_bytes(message)),
            -1,
            String::new(),
            -1,
        ),
    };
    if context.api_version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let (code, message, node_id, host, port) = answer(key.as_str());
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(node_id))
                    .with_host(str_bytes(host))
                    .with_port(port)
                    .with_error_code(code)
                    .with_error_message(message)
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let (code, message, node_id, host, port) = answer(request.key.as_str());
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_node_id(BrokerId(node_id))
        .with_host(str_bytes(host))
        .with_port(port)
}
