//! Heartbeat: keeps a member alive and tells it when to rejoin.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    if let Err(error) = broker.groups.coordinate(&request.group_id).await {
        return HeartbeatResponse::default().with_error_code(error.code());
    }
    let result = broker.groups.heartbeat(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
        request.generation_id,
    );
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |error| error.code()))
}
