//! EndTxn: commit or abort the producer's open transaction. Answered once
//! the markers are in every partition of the transaction, durably.

use std::sync::Arc;

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: EndTxnRequest,
) -> EndTxnResponse {
    let result = broker
        .transactions
        .end(
            &request.transactional_id,
            (request.producer_id.0, request.producer_epoch),
            request.committed,
        )
        .await;
    match result {
        Ok(()) => EndTxnResponse::default(),
        Err(refused) => {
            tracing::debug!(transactional_id = %request.transactional_id.as_str(), message = %refused.message, "EndTxn refused");
            EndTxnResponse::default().with_error_code(refused.code(context.api_version >= 2))
        }
    }
}
