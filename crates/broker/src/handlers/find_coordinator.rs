//! FindCoordinator: this broker coordinates every group and every
//! transactional id (it is the only one). Creates `__consumer_offsets` or
//! `__transaction_state` on first use.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::RequestContext;

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let ready = match request.key_type {
        GROUP => broker.groups.ensure_ready(&broker).await,
        TRANSACTION => broker.transactions.ensure_ready(&broker).await,
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
    let (code, message) = match &error {
        Some((error, message)) => (error.code(), Some(str_bytes(message.clone()))),
        None => (0, None),
    };
    if context.api_version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                Coordinator::default()
                    .with_key(key)
                    .with_node_id(BrokerId(broker.node_id()))
                    .with_host(str_bytes(broker.advertised_host.clone()))
                    .with_port(broker.advertised_port)
                    .with_error_code(code)
                    .with_error_message(message.clone())
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    FindCoordinatorResponse::default()
        .with_error_code(code)
        .with_error_message(message)
        .with_node_id(BrokerId(broker.node_id()))
        .with_host(str_bytes(broker.advertised_host.clone()))
        .with_port(broker.advertised_port)
}
