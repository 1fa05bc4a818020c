//! ListConfigResources (KIP-1142, Kafka 4.1; ListClientMetricsResources
//! before): the resources a client can describe configs of. Version 0 lists
//! client metrics resources only; version 1 takes resource types (none means
//! all of topic, broker, broker logger, client metrics and group) and
//! refuses any other type with UNSUPPORTED_VERSION, as Kafka does. Strom has
//! no client metrics subscriptions, so that type lists nothing.

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;

/// Kafka's `ConfigResource.Type` ids.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const BROKER_LOGGER: i8 = 8;
const CLIENT_METRICS: i8 = 16;
const GROUP: i8 = 32;
const SUPPORTED: [i8; 5] = [TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP];

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: ListConfigResourcesRequest,
) -> ListConfigResourcesResponse {
    let types: Vec<i8> = if context.api_version == 0 {
        vec![CLIENT_METRICS]
    } else if request.resource_types.is_empty() {
        SUPPORTED.to_vec()
    } else {
        request.resource_types
    };
    if types.iter().any(|kind| !SUPPORTED.contains(kind)) {
        return ListConfigResourcesResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code());
    }
    let mut resources: BTreeSet<(i8, String)> = BTreeSet::new();
    for kind in types {
        match kind {
            TOPIC => resources.extend(
                broker
                    .topics
                    .all_topics()
                    .into_iter()
                    .map(|topic| (TOPIC, topic.name)),
            ),
            BROKER | BROKER_LOGGER => {
                resources.insert((kind, broker.node_id().to_string()));
            }
            GROUP => {
                let _ = broker.groups.ensure_ready().await;
                let classic = broker.groups.read(|groups| groups.group_ids());
                let consumer = broker
                    .groups
                    .read_consumer_groups(|groups| groups.group_ids());
                resources.extend(classic.into_iter().chain(consumer).map(|id| (GROUP, id)));
            }
            _ => {}
        }
    }
    let resources = resources
        .into_iter()
        .map(|(kind, name)| {
            ConfigResource::default()
                .with_resource_name(str_bytes(name))
                .with_resource_type(kind)
        })
        .collect();
    ListConfigResourcesResponse::default().with_config_resources(resources)
}
