//! ApiVersions: which APIs and versions this broker speaks.

use std::sync::Arc;

use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};

use crate::broker::Broker;
use crate::protocol::{api_versions_response, RequestContext};

pub async fn handle(
    _broker: Arc<Broker>,
    _context: &RequestContext,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    // Versions that are too new never reach here: routing answers them with
    // UNSUPPORTED_VERSION at version 0.
    api_versions_response(0)
}
