//! DescribeConfigs: a topic's or the broker's effective configs, with their
//! sources, synonyms, types and documentation.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::configs::{
    is_dynamic_broker_config, kafka_only_broker_configs, ConfigSource, ConfigType, ResolvedConfig,
    BROKER_CONFIGS, IDENTITY_CONFIGS, TOPIC_CONFIGS,
};
use crate::handlers::RequestContext;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

struct Entry {
    name: String,
    resolved: ResolvedConfig,
    read_only: bool,
    synonyms: Vec<(String, String, ConfigSource)>,
}

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let version = context.api_version;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.to_string();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let entries = match resource.resource_type {
                RESOURCE_TOPIC => match broker.topics.topic(&name) {
                    Some(topic) => Ok(topic_entries(&broker, &topic.configs)),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic '{name}' does not exist"),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() || name == broker.node_id().to_string() => {
                    Ok(broker_entries(&broker))
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!("this is broker {}, not '{name}'", broker.node_id()),
                )),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} has no configs here"),
                )),
            };
            match entries {
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(message))),
                Ok(entries) => {
                    let wanted = resource.configuration_keys.map(|keys| {
                        keys.into_iter()
                            .map(|key| key.to_string())
                            .collect::<Vec<_>>()
                    });
                    let configs = entries
                        .into_iter()
                        .filter(|entry| {
                            wanted
                                .as_ref()
                                .is_none_or(|keys| keys.contains(&entry.name))
                        })
                        .map(|entry| {
                            encode(
                                entry,
                                version,
                                request.include_synonyms,
                                request.include_documentation,
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn encode(
    entry: Entry,
    version: i16,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    // Passwords are never shown, as in Kafka.
    let sensitive = entry.resolved.def.kind == ConfigType::Password;
    let shown = |value: String| (!sensitive).then(|| str_bytes(value));
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(entry.name))
        .with_value(shown(entry.resolved.value))
        .with_is_sensitive(sensitive)
        .with_read_only(entry.read_only)
        .with_config_source(entry.resolved.source as i8);
    if synonyms && version >= 1 {
        result = result.with_synonyms(
            entry
                .synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(str_bytes(name))
                        .with_value(shown(value))
                        .with_source(source as i8)
                })
                .collect(),
        );
    }
    if version >= 3 {
        result = result.with_config_type(entry.resolved.def.kind as i8);
        if documentation {
            result = result.with_documentation(Some(str_bytes(entry.resolved.def.documentation)));
        }
    }
    result
}

fn topic_entries(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<Entry> {
    let broker_configs = broker.configs();
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let mut synonyms = Vec::new();
            if let Some(value) = overrides.get(def.name) {
                synonyms.push((
                    def.name.to_string(),
                    value.clone(),
                    ConfigSource::DynamicTopic,
                ));
            }
            if let Some(synonym) = def.broker_synonym {
                for (value, source) in broker_configs.layers(synonym) {
                    synonyms.push((synonym.to_string(), value, source));
                }
                synonyms.push((
                    synonym.to_string(),
                    def.default.to_string(),
                    ConfigSource::Default,
                ));
            }
            Entry {
                name: def.name.to_string(),
                resolved: broker_configs.resolve_topic(def, overrides),
                read_only: false,
                synonyms,
            }
        })
        .collect()
}

fn broker_entries(broker: &Broker) -> Vec<Entry> {
    let overrides = broker.configs();
    let mut names: Vec<&'static str> = BROKER_CONFIGS.iter().map(|def| def.name).collect();
    names.extend(TOPIC_CONFIGS.iter().filter_map(|def| def.broker_synonym));
    // Kafka's configs that Strom only keeps are reported once set.
    names.extend(
        kafka_only_broker_configs()
            .map(|def| def.name)
            .filter(|name| overrides.explicit(name).is_some()),
    );
    names.sort_unstable();
    names.dedup();
    let mut entries: Vec<Entry> = names
        .into_iter()
        .map(|name| {
            let resolved = overrides.get(name);
            let mut synonyms: Vec<_> = overrides
                .layers(name)
                .into_iter()
                .map(|(value, source)| (name.to_string(), value, source))
                .collect();
            if !resolved.def.default.is_empty() {
                synonyms.push((
                    name.to_string(),
                    resolved.def.default.to_string(),
                    ConfigSource::Default,
                ));
            }
            Entry {
                name: name.to_string(),
                read_only: !is_dynamic_broker_config(name),
                resolved,
                synonyms,
            }
        })
        .collect();
    // Identity and placement, fixed for the life of the process.
    let fixed = [
        ("node.id", broker.node_id().to_string()),
        ("broker.id", broker.node_id().to_string()),
        ("log.dirs", broker.config.data_dir.display().to_string()),
        (
            "listeners",
            format!("PLAINTEXT://{}", broker.config.listener),
        ),
        (
            "advertised.listeners",
            format!(
                "PLAINTEXT://{}:{}",
                broker.advertised_host, broker.advertised_port
            ),
        ),
        (
            "process.roles",
            match broker.config.roles {
                crate::ProcessRoles::Broker => "broker".to_string(),
                crate::ProcessRoles::BrokerController => "broker,controller".to_string(),
            },
        ),
        (
            "controller.quorum.voters",
            broker
                .config
                .quorum_voters
                .iter()
                .map(|(id, address)| format!("{id}@{address}"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    for ((name, value), def) in fixed.into_iter().zip(IDENTITY_CONFIGS) {
        debug_assert_eq!(name, def.name);
        entries.push(Entry {
            name: name.to_string(),
            resolved: ResolvedConfig {
                def,
                value,
                source: ConfigSource::StaticBroker,
            },
            read_only: true,
            synonyms: Vec::new(),
        });
    }
    entries
}
