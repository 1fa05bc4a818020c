//! DescribeGroups: state, protocol, members and their assignments; from v3,
//! when asked, the operations the client may perform on each group (KIP-430).

use std::sync::Arc;

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::str_bytes;
use crate::authorization::{authorized_operations, Resource};
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut errors = Vec::with_capacity(request.groups.len());
    for group_id in &request.groups {
        errors.push(broker.groups.coordinate(group_id).await.err());
    }
    let operations = (context.api_version >= 3 && request.include_authorized_operations)
        .then(|| authorized_operations(Resource::Group));
    let groups = broker.groups.read(|coordinator| {
        request
            .groups
            .into_iter()
            .zip(errors)
            .map(|(group_id, error)| {
                let mut described = DescribedGroup::default().with_group_id(group_id.clone());
                if let Some(error) = error {
                    return described.with_error_code(error.code());
                }
                if let Some(operations) = operations {
                    described = described.with_authorized_operations(operations);
                }
                let Some(group) = coordinator.group(&group_id) else {
                    // Kafka describes unknown groups as Dead rather than failing.
                    let state = if coordinator.offsets(&group_id).is_some() {
                        "Empty"
                    } else {
                        "Dead"
                    };
                    return described.with_group_state(str_bytes(state));
                };
                let protocol = group.protocol_name.clone().unwrap_or_default();
                let members = group
                    .members
                    .values()
                    .map(|member| {
                        let metadata = member
                            .protocols
                            .iter()
                            .find(|(name, _)| *name == protocol)
                            .map(|(_, metadata)| metadata.clone())
                            .unwrap_or_default();
                        let mut described = DescribedGroupMember::default()
                            .with_member_id(str_bytes(member.member_id.clone()))
                            .with_client_id(str_bytes(member.client_id.clone()))
                            .with_client_host(str_bytes(member.client_host.clone()))
                            .with_member_metadata(metadata.into())
                            .with_member_assignment(member.assignment.clone().into());
                        if context.api_version >= 4 {
                            described = described.with_group_instance_id(
                                member.group_instance_id.clone().map(str_bytes),
                            );
                        }
                        described
                    })
                    .collect();
                described
                    .with_group_state(str_bytes(group.state.name()))
                    .with_protocol_type(str_bytes(group.protocol_type.clone().unwrap_or_default()))
                    .with_protocol_data(str_bytes(protocol))
                    .with_members(members)
            })
            .collect::<Vec<_>>()
    });
    DescribeGroupsResponse::default().with_groups(groups)
}
