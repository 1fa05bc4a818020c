//! LeaveGroup: one member (before v3) or a batch of members, by member id
//! or static instance id.

use std::sync::Arc;

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    if let Err(error) = broker.groups.coordinate(&request.group_id).await {
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let leaving: Vec<(String, Option<String>)> = if context.api_version >= 3 {
        request
            .members
            .iter()
            .map(|member| {
                (
                    member.member_id.to_string(),
                    member.group_instance_id.as_ref().map(|id| id.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let results = broker.groups.leave(&request.group_id, &leaving).await;
    if context.api_version >= 3 {
        let members = request
            .members
            .into_iter()
            .zip(&results)
            .map(|(member, result)| {
                MemberResponse::default()
                    .with_member_id(member.member_id)
                    .with_group_instance_id(member.group_instance_id)
                    .with_error_code(result.err().map_or(0, |error| error.code()))
            })
            .collect();
        return LeaveGroupResponse::default().with_members(members);
    }
    LeaveGroupResponse::default().with_error_code(
        results
            .first()
            .and_then(|result| result.err())
            .map_or(0, |error| error.code()),
    )
}
