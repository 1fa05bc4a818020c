//! DeleteGroups: removes groups without members, with their offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use strom_coordinator::records as group_records;

use crate::broker::Broker;
use crate::groups::{offset_record, write_records};
use crate::protocol::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for group_id in request.groups_names {
        if let Err(error) = broker.groups.coordinate(&broker, &group_id).await {
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(error.code()),
            );
            continue;
        }
        let (outcome, tombstones) = {
            let mut coordinator = broker.groups.coordinator();
            let offsets: Vec<(String, i32)> = coordinator
                .offsets(&group_id)
                .map(|offsets| offsets.keys().cloned().collect())
                .unwrap_or_default();
            let outcome = coordinator.delete_group(&group_id);
            let mut tombstones: Vec<_> = offsets
                .iter()
                .map(|(topic, partition)| offset_record(&group_id, topic, *partition, None))
                .collect();
            tombstones.push((group_records::group_key(&group_id), None));
            (outcome, tombstones)
        };
        if outcome.is_ok() {
            if let Err(error) = write_records(&broker, &group_id, tombstones).await {
                tracing::warn!(group = %group_id.as_str(), %error, "could not persist group deletion");
            }
        }
        results.push(
            DeletableGroupResult::default()
                .with_group_id(group_id)
                .with_error_code(outcome.err().map_or(0, |error| error.code())),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
