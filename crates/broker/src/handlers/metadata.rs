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
use strom_metadata::{TopicMetadata, NO_LEADER};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::authorization::{authorized_operations, Resource, NOT_REQUESTED};
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::topics::{validate_topic_name, LiveBroker, NewTopic};

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: MetadataRequest,
) -> MetadataResponse {
    let version = context.api_version;
    let live = broker.topics.live_brokers();
    let describe = |topic: &TopicMetadata| describe(topic, &live);
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
                    Some(name) => by_name(&broker, name.as_str(), allow_create, &live).await,
                    None => by_id(&broker, topic.topic_id, &live),
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
    let brokers = live
        .iter()
        .map(|node| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(node.node_id))
                .with_host(str_bytes(node.host.clone()))
                .with_port(i32::from(node.port))
                .with_rack(node.rack.clone().map(str_bytes))
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(brokers)
        .with_cluster_id(Some(str_bytes(broker.cluster_id())))
        .with_controller_id(BrokerId(broker.topics.controller_id()))
        .with_cluster_authorized_operations(cluster_operations)
        .with_topics(topics)
}

async fn by_name(
    broker: &Arc<Broker>,
    name: &str,
    allow_create: bool,
    live: &[LiveBroker],
) -> MetadataResponseTopic {
    if let Some(topic) = broker.topics.topic(name) {
        return describe(&topic, live);
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
    let created = tokio::spawn(async move { creator.topics.create(new_topic).await }).await;
    match created {
        Ok(Ok(topic)) => describe(&topic, live),
        // Another request created it first.
        Ok(Err(failed)) if failed.error == ResponseError::TopicAlreadyExists => {
            match broker.topics.topic(name) {
                Some(topic) => describe(&topic, live),
                None => error(ResponseError::UnknownTopicOrPartition),
            }
        }
        Ok(Err(failed)) => error(failed.error),
        Err(_) => error(ResponseError::UnknownServerError),
    }
}

fn by_id(broker: &Broker, topic_id: Uuid, live: &[LiveBroker]) -> MetadataResponseTopic {
    match broker.topics.topic_by_id(topic_id) {
        Some(topic) => describe(&topic, live),
        None => MetadataResponseTopic::default()
            .with_topic_id(topic_id)
            .with_error_code(ResponseError::UnknownTopicId.code()),
    }
}

/// A topic as clients see it: per partition the leader (or
/// LEADER_NOT_AVAILABLE while it has none), replicas, ISR, and the replicas
/// on brokers that are not live.
fn describe(topic: &TopicMetadata, live: &[LiveBroker]) -> MetadataResponseTopic {
    let is_live = |node: i32| live.iter().any(|broker| broker.node_id == node);
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| {
            let error = if partition.leader == NO_LEADER {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(index as i32)
                .with_leader_id(BrokerId(partition.leader))
                .with_leader_epoch(partition.leader_epoch)
                .with_replica_nodes(partition.replicas.iter().copied().map(BrokerId).collect())
                .with_isr_nodes(partition.isr.iter().copied().map(BrokerId).collect())
                .with_offline_replicas(
                    partition
                        .replicas
                        .iter()
                        .copied()
                        .filter(|&node| !is_live(node))
                        .map(BrokerId)
                        .collect(),
                )
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(topic.topic_id)
        .with_is_internal(topic.name.starts_with("__"))
        .with_partitions(partitions)
}
