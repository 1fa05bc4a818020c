//! AddOffsetsToTxn: the producer will commit a consumer group's offsets in
//! its transaction, so the group's partition of `__consumer_offsets` joins
//! the transaction and gets its marker.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let ready = broker.groups.ensure_ready().await.is_ok();
    let Some(partition) = broker
        .groups
        .offsets_partition(&request.group_id)
        .filter(|_| ready)
    else {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    let result = broker
        .transactions
        .add_partitions(
            &request.transactional_id,
            (request.producer_id.0, request.producer_epoch),
            &[partition],
        )
        .await;
    let code = result.map_or_else(|refused| refused.code(context.api_version >= 2), |()| 0);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
