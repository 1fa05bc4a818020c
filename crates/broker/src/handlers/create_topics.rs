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

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::RequestContext;
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
            Ok(new_topic) if validate_only => broker
                .topics
                .check_new_topic(&new_topic)
                .map(|()| (new_topic.configs.clone(), None, new_topic.partitions)),
            Ok(new_topic) => {
                let creator = broker.clone();
                let created = tokio::task::spawn_blocking(move || {
                    creator.topics.create(new_topic, &creator.partitions)
                })
                .await
                .unwrap_or_else(|_| {
                    Err(TopicError::new(
                        ResponseError::UnknownServerError,
                        "topic creation failed",
                    ))
                });
                created.map(|metadata| {
                    let count = metadata.partitions.len() as i32;
                    (metadata.configs, Some(metadata.topic_id), count)
                })
            }
        };
        let result = match outcome {
            Ok((configs, topic_id, partitions)) => {
                let mut result = result
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_topic_id(topic_id.unwrap_or_default());
                if version >= 5 {
                    result = result.with_configs(Some(describe(&broker, &configs)));
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

/// Turns a request entry into a topic to create, resolving defaults.
fn plan(
    broker: &Broker,
    topic: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<NewTopic, TopicError> {
    let brokers = 1;
    let replication_factor = match topic.replication_factor {
        -1 => broker
            .config
            .overrides
            .get_i64("default.replication.factor"),
        explicit => explicit as i64,
    };
    if replication_factor < 1 || replication_factor > brokers {
        return Err(TopicError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {replication_factor} is not possible: the cluster has {brokers} broker"
            ),
        ));
    }
    let mut partitions = match topic.num_partitions {
        -1 => broker.config.overrides.get_i64("num.partitions") as i32,
        explicit => explicit,
    };
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(TopicError::new(
                ResponseError::InvalidRequest,
                "give either a replica assignment or partition count and replication factor, not both",
            ));
        }
        for assignment in &topic.assignments {
            if assignment.broker_ids.len() != 1 || assignment.broker_ids[0].0 != broker.node_id() {
                return Err(TopicError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "partition {} must be assigned to broker {} alone",
                        assignment.partition_index,
                        broker.node_id()
                    ),
                ));
            }
        }
        partitions = topic.assignments.len() as i32;
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
