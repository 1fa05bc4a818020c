//! ListGroups: every group, optionally filtered by state (v4+) and type (v5+).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;

/// One row of the answer: (group id, protocol type, state, group type).
struct Row {
    group_id: String,
    protocol_type: String,
    state: &'static str,
    group_type: &'static str,
}

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let _ = broker.groups.ensure_ready().await;
    let mut rows = Vec::new();
    {
        broker.groups.read(|coordinator| {
            for group_id in coordinator.group_ids() {
                let Some(state) = coordinator.state_of(&group_id) else {
                    continue;
                };
                let protocol_type = coordinator
                    .group(&group_id)
                    .and_then(|group| group.protocol_type.clone())
                    .unwrap_or_else(|| "consumer".to_string());
                rows.push(Row {
                    group_id,
                    protocol_type,
                    state: state.name(),
                    group_type: "classic",
                });
            }
        });
    }
    {
        broker.groups.read_consumer_groups(|consumer_groups| {
            for group_id in consumer_groups.group_ids() {
                let Some(group) = consumer_groups.group(&group_id) else {
                    continue;
                };
                let state = group.state();
                rows.push(Row {
                    group_id,
                    protocol_type: "consumer".to_string(),
                    state,
                    group_type: "consumer",
                });
            }
        });
    }
    let wanted = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
        filter.is_empty()
            || filter
                .iter()
                .any(|wanted| wanted.eq_ignore_ascii_case(value))
    };
    let groups = rows
        .into_iter()
        .filter(|row| {
            wanted(&request.states_filter, row.state)
                && wanted(&request.types_filter, row.group_type)
        })
        .map(|row| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(row.group_id)))
                .with_protocol_type(str_bytes(row.protocol_type));
            if context.api_version >= 4 {
                listed = listed.with_group_state(str_bytes(row.state));
            }
            if context.api_version >= 5 {
                listed = listed.with_group_type(str_bytes(row.group_type));
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}
