//! AddOffsetsToTxn: the producer will commit a consumer group's offsets in
//! its transaction, so the group's partition of `__consumer_offsets` joins
//! the transaction and gets its marker.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use strom_coordinator::records::partition_for;

use crate::broker::Broker;
use crate::groups::OFFSETS_TOPIC;
use crate::protocol::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    if broker.groups.ensure_ready(&broker).await.is_err() {
        return AddOffsetsToTxnResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    let partitions = broker
        .partitions
        .topic(OFFSETS_TOPIC)
        .map_or(1, |partitions| partitions.len() as i32);
    let partition = (
        OFFSETS_TOPIC.to_string(),
        partition_for(&request.group_id, partitions),
    );
    let result = broker
        .transactions
        .add_partitions(
            &broker,
            &request.transactional_id,
            (request.producer_id.0, request.producer_epoch),
            &[partition],
        )
        .await;
    let code = result.map_or_else(|refused| refused.code(context.api_version >= 2), |()| 0);
    AddOffsetsToTxnResponse::default().with_error_code(code)
}
