//! IncrementalAlterConfigs: SET, DELETE, APPEND and SUBTRACT single configs
//! of a topic or the broker, leaving the others as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::config_resources::{apply, ConfigResource};
use super::error_fields;
use crate::broker::Broker;
use crate::configs::ConfigType;
use crate::handlers::RequestContext;
use crate::topics::TopicError;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let outcome =
            match ConfigResource::parse(&broker, resource.resource_type, &resource.resource_name) {
                Ok(target) => match changed(&target.current(&broker), &resource.configs, &target) {
                    Ok(configs) => apply(&broker, target, configs, request.validate_only).await,
                    Err(error) => Err(error),
                },
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
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The resource's overrides after applying every operation in order.
fn changed(
    current: &BTreeMap<String, String>,
    operations: &[AlterableConfig],
    target: &ConfigResource,
) -> Result<BTreeMap<String, String>, TopicError> {
    let invalid = |message: String| TopicError::new(ResponseError::InvalidConfig, message);
    let mut configs = current.clone();
    let mut seen = Vec::new();
    for operation in operations {
        let name = operation.name.to_string();
        if seen.contains(&name) {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("{name} appears more than once in the request"),
            ));
        }
        seen.push(name.clone());
        let value = operation.value.as_ref().map(|value| value.to_string());
        match operation.config_operation {
            SET => {
                let value = value.ok_or_else(|| invalid(format!("SET {name} needs a value")))?;
                configs.insert(name, value);
            }
            DELETE => {
                configs.remove(&name);
            }
            APPEND | SUBTRACT => {
                let def = target
                    .definition(&name)
                    .ok_or_else(|| invalid(format!("unknown config '{name}'")))?;
                if def.kind != ConfigType::List {
                    return Err(invalid(format!(
                        "{name} is not a list; APPEND and SUBTRACT work on lists only"
                    )));
                }
                let existing = configs
                    .get(&name)
                    .cloned()
                    .unwrap_or_else(|| target.effective(&name));
                let mut items: Vec<String> = existing
                    .split(',')
                    .map(|item| item.trim().to_string())
                    .filter(|item| !item.is_empty())
                    .collect();
                let given: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .map(|item| item.trim().to_string())
                    .filter(|item| !item.is_empty())
                    .collect();
                if operation.config_operation == APPEND {
                    for item in given {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    }
                } else {
                    items.retain(|item| !given.contains(item));
                }
                configs.insert(name, items.join(","));
            }
            other => {
                return Err(TopicError::new(
                    ResponseError::InvalidRequest,
                    format!("unknown config operation {other} for {name}"),
                ))
            }
        }
    }
    Ok(configs)
}
