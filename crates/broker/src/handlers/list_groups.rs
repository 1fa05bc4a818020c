//! ListGroups: every group, optionally filtered by state (v4+) and type (v5+).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    let _ = broker.groups.ensure_ready(&broker).await;
    let coordinator = broker.groups.coordinator();
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|state| state.to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|kind| kind.to_lowercase())
        .collect();
    let consumer_groups = broker.groups.consumer_groups();
    let kip848: Vec<ListedGroup> = consumer_groups
        .group_ids()
        .into_iter()
        .filter_map(|group_id| {
            let state = consumer_groups.group(&group_id)?.state();
            if !states.is_empty() && !states.contains(&state.to_lowercase()) {
                return None;
            }
            if !types.is_empty() && !types.contains(&"consumer".to_string()) {
                return None;
            }
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_protocol_type(str_bytes("consumer"));
            if context.api_version >= 4 {
                listed = listed.with_group_state(str_bytes(state));
            }
            if context.api_version >= 5 {
                listed = listed.with_group_type(str_bytes("consumer"));
            }
            Some(listed)
        })
        .collect();
    let mut groups: Vec<ListedGroup> = coordinator
        .group_ids()
        .into_iter()
        .filter_map(|group_id| {
            let state = coordinator.state_of(&group_id)?.name();
            let protocol_type = coordinator
                .group(&group_id)
                .and_then(|group| group.protocol_type.clone())
                .unwrap_or_else(|| "consumer".to_string());
            if !states.is_empty() && !states.contains(&state.to_lowercase()) {
                return None;
            }
            if !types.is_empty() && !types.contains(&"classic".to_string()) {
                return None;
            }
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_protocol_type(str_bytes(protocol_type));
            if context.api_version >= 4 {
                listed = listed.with_group_state(str_bytes(state));
            }
            if context.api_version >= 5 {
                listed = listed.with_group_type(str_bytes("classic"));
            }
            Some(listed)
        })
        .collect();
    groups.extend(kip848);
    ListGroupsResponse::default().with_groups(groups)
}
