//! What AlterConfigs and IncrementalAlterConfigs share: which resource a
//! request names, its current overrides, and applying a new set.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::configs::{self, ConfigDef};
use crate::topics::TopicError;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// A resource whose configs can change.
pub enum ConfigResource {
    Topic(String),
    /// This broker (`for_node`) or the cluster-wide broker defaults.
    Broker {
        for_node: bool,
    },
}

impl ConfigResource {
    pub fn parse(
        broker: &Broker,
        resource_type: i8,
        name: &StrBytes,
    ) -> Result<ConfigResource, TopicError> {
        let name = name.to_string();
        match resource_type {
            RESOURCE_TOPIC => Ok(ConfigResource::Topic(name)),
            RESOURCE_BROKER if name.is_empty() => Ok(ConfigResource::Broker { for_node: false }),
            RESOURCE_BROKER if name == broker.node_id().to_string() => {
                Ok(ConfigResource::Broker { for_node: true })
            }
            RESOURCE_BROKER => Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("this is broker {}, not '{name}'", broker.node_id()),
            )),
            other => Err(TopicError::new(
                ResponseError::InvalidRequest,
                format!("resource type {other} has no configs that can change"),
            )),
        }
    }

    /// The resource's current overrides.
    pub fn current(&self, broker: &Broker) -> BTreeMap<String, String> {
        match self {
            ConfigResource::Topic(name) => broker
                .topics
                .topic(name)
                .map(|topic| topic.configs)
                .unwrap_or_default(),
            ConfigResource::Broker { for_node: true } => broker.configs().dynamic_node,
            ConfigResource::Broker { for_node: false } => broker.configs().dynamic_default,
        }
    }

    pub fn definition(&self, name: &str) -> Option<&'static ConfigDef> {
        match self {
            ConfigResource::Topic(_) => configs::topic_config(name),
            ConfigResource::Broker { .. } => configs::broker_config(name),
        }
    }

    /// The value in force when the resource has no override (for APPEND).
    pub fn effective(&self, name: &str) -> String {
        self.definition(name)
            .map(|def| def.default.to_string())
            .unwrap_or_default()
    }
}

/// Validates and applies a resource's new overrides, off the async threads
/// (it writes the metadata log).
pub async fn apply(
    broker: &Arc<Broker>,
    target: ConfigResource,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), TopicError> {
    let broker = broker.clone();
    tokio::spawn(async move {
        match target {
            ConfigResource::Topic(name) => {
                broker
                    .topics
                    .replace_topic_configs(&name, configs, validate_only)
                    .await
            }
            ConfigResource::Broker { for_node } => {
                broker
                    .topics
                    .replace_broker_configs(for_node, configs, validate_only)
                    .await
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        Err(TopicError::new(
            ResponseError::UnknownServerError,
            "config change failed",
        ))
    })
}
