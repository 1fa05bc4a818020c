//! JoinGroup: waits until the group's rebalance round completes.

use std::sync::Arc;

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use strom_coordinator::JoinRequest;

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    if let Err(error) = broker.groups.coordinate(&request.group_id).await {
        return JoinGroupResponse::default()
            .with_error_code(error.code())
            .with_generation_id(-1)
            .with_member_id(request.member_id);
    }
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.map(|id| id.to_string()),
        client_id: context.client_id.clone().unwrap_or_default(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: request.session_timeout_ms as i64,
        // Version 0 has no rebalance timeout: it is the session timeout.
        rebalance_timeout_ms: if context.api_version == 0 {
            request.session_timeout_ms as i64
        } else {
            request.rebalance_timeout_ms as i64
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| (protocol.name.to_string(), protocol.metadata.to_vec()))
            .collect(),
        require_known_member_id: context.api_version >= 4,
    };
    let response = broker.groups.join(&request.group_id, join).await;
    let members = response
        .members
        .into_iter()
        .map(|(member_id, instance, metadata)| {
            JoinGroupResponseMember::default()
                .with_member_id(str_bytes(member_id))
                .with_group_instance_id(instance.map(str_bytes))
                .with_metadata(metadata.into())
        })
        .collect();
    let mut answer = JoinGroupResponse::default()
        .with_error_code(response.error.map_or(0, |error| error.code()))
        .with_generation_id(response.generation_id)
        .with_protocol_name(response.protocol_name.map(str_bytes))
        .with_leader(str_bytes(response.leader))
        .with_member_id(str_bytes(response.member_id))
        .with_members(members);
    if context.api_version >= 7 {
        answer = answer.with_protocol_type(response.protocol_type.map(str_bytes));
    }
    if context.api_version >= 9 {
        answer = answer.with_skip_assignment(response.skip_assignment);
    }
    answer
}
