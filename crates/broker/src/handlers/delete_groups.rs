//! DeleteGroups: removes groups without members, with their offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        if let Err(error) = broker.groups.coordinate(&group_id).await {
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(error.code()),
            );
            continue;
        }
        let outcome = broker.groups.delete_group(&group_id).await;
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(outcome.err().map_or(0, |error| error.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
