//! CreateTopics: checks names, partition counts, replication factors and
//! configs with Kafka's error codes, then creates (or, with validate_only,
//! only checks).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::topics::{NewTopic, TopicError};

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let version = context.api_version;
    let validate_only = request.validate_only;
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let planned = plan(&broker, &topic);
        let outcome = match planned {
            Err(error) => Err(error),
            Ok(new_topic) => {
                let creator = broker.clone();
                tokio::spawn(async move {
                    if validate_only {
                        creator.topics.check_new_topic(&new_topic).await
                    } else {
                        creator.topics.create(new_topic).await
                    }
                })
                .await
                .unwrap_or_else(|_| {
                    Err(TopicError::new(
                        ResponseError::UnknownServerError,
                        "topic creation failed",
                    ))
                })
            }
        };
        let result = match outcome {
            Ok(metadata) => {
                let replication_factor =
                    metadata.partitions.first().map_or(0, |p| p.replicas.len()) as i16;
                let topic_id = if validate_only {
                    Uuid::nil()
                } else {
                    metadata.topic_id
                };
                let mut result = result
                    .with_num_partitions(metadata.partitions.len() as i32)
                    .with_replication_factor(replication_factor)
                    .with_topic_id(topic_id);
                if version >= 5 {
                    result = result.with_configs(Some(describe(&broker, &metadata.configs)));
                }
                result
            }
            Err(error) => {
                tracing::debug!(topic = %name, message = %error.message, "create topic refused");
                result
                    .with_error_code(error.error.code())
                    .with_error_message(Some(str_bytes(error.message)))
                    .with_num_partitions(-1)
                    .with_replication_factor(-1)
            }
        };
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Turns a request entry into a topic to create, resolving defaults from
/// the broker configs as they are now; the controller checks the rest.
fn plan(
    broker: &Broker,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<NewTopic, TopicError> {
    let configs_now = broker.configs();
    let mut assignments: Vec<(i32, Vec<i32>)> = topic
        .assignments
        .iter()
        .map(|a| {
            (
                a.partition_index,
                a.broker_ids.iter().map(|id| id.0).collect(),
            )
        })
        .collect();
    assignments.sort_by_key(|(index, _)| *index);
    if assignments
        .iter()
        .enumerate()
        .any(|(position, (index, _))| *index != position as i32)
    {
        return Err(TopicError::new(
            ResponseError::InvalidReplicaAssignment,
            "replica assignments must name partitions 0, 1, 2, ... once each",
        ));
    }
    let (partitions, replication_factor) = if assignments.is_empty() {
        let partitions = match topic.num_partitions {
            -1 => configs_now.get_i64("num.partitions") as i32,
            explicit => explicit,
        };
        let replication_factor = match topic.replication_factor {
            -1 => configs_now.get_i64("default.replication.factor") as i16,
            explicit => explicit,
        };
        (Some(partitions), Some(replication_factor))
    } else {
        let given = |value: i64| (value != -1).then_some(value);
        (
            given(topic.num_partitions as i64).map(|v| v as i32),
            given(topic.replication_factor as i64).map(|v| v as i16),
        )
    };
    if !assignments.is_empty() && partitions.is_some() {
        return Err(TopicError::new(
            ResponseError::InvalidRequest,
            "give either a replica assignment or partition count and replication factor, not both",
        ));
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let Some(value) = &config.value else {
            continue;
        };
        configs.insert(config.name.to_string(), value.to_string());
    }
    Ok(NewTopic {
        name: topic.name.to_string(),
        partitions,
        replication_factor,
        assignments: assignments
            .into_iter()
            .map(|(_, replicas)| replicas)
            .collect(),
        configs,
    })
}

fn describe(broker: &Broker, configs: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    broker
        .configs()
        .resolve_all_topic(configs)
        .into_iter()
        .map(|resolved| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(resolved.def.name))
                .with_value(Some(str_bytes(resolved.value)))
                .with_config_source(resolved.source as i8)
        })
        .collect()
}
