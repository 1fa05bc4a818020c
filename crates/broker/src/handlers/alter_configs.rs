//! AlterConfigs (the original, non-incremental form): the configs given for
//! a resource replace all of its overrides; configs left out are reset.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::config_resources::{apply, ConfigResource};
use super::error_fields;
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let target =
            ConfigResource::parse(&broker, resource.resource_type, &resource.resource_name);
        let configs: BTreeMap<String, String> = resource
            .configs
            .iter()
            .filter_map(|config| {
                Some((config.name.to_string(), config.value.as_ref()?.to_string()))
            })
            .collect();
        let outcome = match target {
            Ok(target) => apply(&broker, target, configs, request.validate_only).await,
            Err(error) => Err(error),
        };
        let (code, message) = error_fields(outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name),
        );
    }
    AlterConfigsResponse::default().with_responses(responses)
}
