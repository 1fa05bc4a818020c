//! ListPartitionReassignments: a one-broker cluster never has a
//! reassignment in progress, so the answer lists none, whether the request
//! names topics or asks for all (as Kafka's controller answers then).

use std::sync::Arc;

use kafka_protocol::messages::{
    ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};

use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    _broker: Arc<Broker>,
    _context: &RequestContext,
    _request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
}
