//! InitProducerId: a producer id and epoch. Idempotent producers get a new
//! id (or, with a known id and epoch, KIP-360, a bumped epoch so they can
//! reset their sequences); transactional producers get theirs from the
//! transaction coordinator, which fences older producers of the same
//! `transactional.id`.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if let Some(transactional_id) = request
        .transactional_id
        .as_ref()
        .filter(|id| !id.is_empty())
    {
        let expected =
            (request.producer_id.0 >= 0).then_some((request.producer_id.0, request.producer_epoch));
        let result = broker
            .transactions
            .init_producer_id(transactional_id, request.transaction_timeout_ms, expected)
            .await;
        return match result {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(refused) => {
                tracing::debug!(transactional_id = %transactional_id.as_str(), message = %refused.message, "InitProducerId refused");
                InitProducerIdResponse::default()
                    .with_error_code(refused.code(context.api_version >= 4))
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
            }
        };
    }
    if request.producer_id.0 >= 0
        && request.producer_epoch >= 0
        && request.producer_epoch < i16::MAX - 1
    {
        return InitProducerIdResponse::default()
            .with_producer_id(request.producer_id)
            .with_producer_epoch(request.producer_epoch + 1);
    }
    let allocator = broker.clone();
    match tokio::spawn(async move { allocator.topics.allocate_producer_id().await }).await {
        Ok(Ok(id)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        _ => InitProducerIdResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    }
}
