//! SyncGroup: the leader hands out assignments; followers wait for theirs.

use std::sync::Arc;

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use strom_coordinator::SyncRequest;

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    if let Err(error) = broker.groups.coordinate(&request.group_id).await {
        return SyncGroupResponse::default().with_error_code(error.code());
    }
    let sync = SyncRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        generation_id: request.generation_id,
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| {
                (
                    assignment.member_id.to_string(),
                    assignment.assignment.to_vec(),
                )
            })
            .collect(),
    };
    let response = broker.groups.sync(&request.group_id, sync).await;
    let mut answer = SyncGroupResponse::default()
        .with_error_code(response.error.map_or(0, |error| error.code()))
        .with_assignment(response.assignment.into());
    if context.api_version >= 5 {
        answer = answer
            .with_protocol_type(response.protocol_type.map(str_bytes))
            .with_protocol_name(response.protocol_name.map(str_bytes));
    }
    answer
}
