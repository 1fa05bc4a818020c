//! Metadata: brokers, controller, topics with partitions, leaders, replicas
//! and ISR; creates requested topics that do not exist when both the client
//! and `auto.create.topics.enable` allow it. From v8, when asked, the
//! operations the client may perform on each topic (and, up to v10, on the
//! cluster), KIP-430.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use strom_metadata::TopicMetadata;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::authorization::{authorized_operations, Resource, NOT_REQUESTED};
use crate::broker::Broker;
use crate::protocol::RequestContext;
use crate::topics::{validate_topic_name, NewTopic};

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    let version = context.api_version;
    let topics = match request.topics {
        // Null (or an empty list before v1) means every topic.
        None => broker.topics.all_topics().iter().map(describe).collect(),
        Some(ref requested) if requested.is_empty() && version == 0 => {
            broker.topics.all_topics().iter().map(describe).collect()
        }
        Some(requested) => {
            let allow_create = (version < 4 || request.allow_auto_topic_creation)
                && broker
                    .config
                    .overrides
                    .get_bool("auto.create.topics.enable");
            let mut topics = Vec::with_capacity(requested.len());
            for topic in requested {
                let response = match topic.name {
                    Some(name) => by_name(&broker, name.as_str(), allow_create).await,
                    None => by_id(&broker, topic.topic_id),
                };
                topics.push(response);
            }
            topics
        }
    };
    let mut topics: Vec<MetadataResponseTopic> = topics;
    let mut cluster_operations = NOT_REQUESTED;
    if version >= 8 {
        if request.include_topic_authorized_operations {
            for topic in &mut topics {
                topic.topic_authorized_operations = authorized_operations(Resource::Topic);
            }
        }
        if version <= 10 && request.include_cluster_authorized_operations {
            cluster_operations = authorized_operations(Resource::Cluster);
        }
    }
    let node = MetadataResponseBroker::default()
        .with_node_id(BrokerId(broker.node_id()))
        .with_host(str_bytes(broker.advertised_host.clone()))
        .with_port(broker.advertised_port);
    MetadataResponse::default()
        .with_brokers(vec![node])
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_cluster_authorized_operations(cluster_operations)
        .with_topics(topics)
}

async fn by_name(broker: &Arc<Broker>, name: &str, allow_create: bool) -> MetadataResponseTopic {
    if let Some(topic) = broker.topics.topic(name) {
        return describe(&topic);
    }
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(code.code())
    };
    if let Err(invalid) = validate_topic_name(name) {
        return error(invalid.error);
    }
    if !allow_create {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    let configs = broker.configs();
    let new_topic = NewTopic {
        name: name.to_string(),
        partitions: Some(configs.get_i64("num.partitions").max(1) as i32),
        replication_factor: Some(configs.get_i64("default.replication.factor") as i16),
        ..NewTopic::default()
    };
    let creator = broker.clone();
    let created =
        tokio::task::spawn_blocking(move || creator.topics.create(new_topic, &creator.partitions))
            .await;
    match created {
        Ok(Ok(topic)) => describe(&topic),
        // Another request created it first.
        Ok(Err(failed)) if failed.error == ResponseError::TopicAlreadyExists => {
            match broker.topics.topic(name) {
                Some(topic) => describe(&topic),
                None => error(ResponseError::UnknownTopicOrPartition),
            }
        }
        Ok(Err(failed)) => error(failed.error),
        Err(_) => error(ResponseError::UnknownServerError),
    }
}

fn by_id(broker: &Broker, topic_id: Uuid) -> MetadataResponseTopic {
    match broker.topics.topic_by_id(topic_id) {
        Some(topic) => describe(&topic),
        None => MetadataResponseTopic::default()
            .with_topic_id(topic_id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

fn describe(topic: &TopicMetadata) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| {
            MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(partition.leader))
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(partition.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(partition.isr.iter().copied().map(BrokerId).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
