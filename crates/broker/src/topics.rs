//! Creating, deleting and reconfiguring topics: checks a change, writes it to
//! the metadata log, applies it, and opens or removes the partition logs.
//!
//! Every change goes through one lock, so the metadata log's order is the
//! order in which changes took effect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError;
use strom_controller::{
    ClusterMetadata, MetadataLog, MetadataRecord, PartitionMetadata, TopicMetadata,
};
use strom_log::{FileCache, Recovery};
use uuid::Uuid;

use crate::configs::{self, BrokerOverrides};
use crate::partition::{Partition, PartitionIdentity, PartitionRegistry};

/// A refused metadata change: the Kafka error and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicError {
    pub error: ResponseError,
    pub message: String,
}

impl TopicError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> TopicError {
        TopicError {
            error,
            message: message.into(),
        }
    }
}

/// Kafka's rules for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`,
/// and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    let invalid = |why: String| TopicError::new(ResponseError::InvalidTopicException, why);
    if name.is_empty() {
        return Err(invalid("topic name is empty".into()));
    }
    if name == "." || name == ".." {
        return Err(invalid(format!("topic name cannot be '{name}'")));
    }
    if name.len() > 249 {
        return Err(invalid(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "topic name '{name}' contains '{bad}'; use only letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// What a new topic should look like.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
}

pub struct Topics {
    node_id: i32,
    data_dir: std::path::PathBuf,
    files: FileCache,
    broker_configs: BrokerOverrides,
    state: Mutex<(MetadataLog, ClusterMetadata)>,
}

impl Topics {
    pub fn new(
        node_id: i32,
        data_dir: std::path::PathBuf,
        files: FileCache,
        broker_configs: BrokerOverrides,
        log: MetadataLog,
        metadata: ClusterMetadata,
    ) -> Topics {
        Topics {
            node_id,
            data_dir,
            files,
            broker_configs,
            state: Mutex::new((log, metadata)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (MetadataLog, ClusterMetadata)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the current metadata of one topic.
    pub fn topic(&self, name: &str) -> Option<TopicMetadata> {
        self.lock().1.topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<TopicMetadata> {
        self.lock().1.topic_by_id(topic_id).cloned()
    }

    pub fn all_topics(&self) -> Vec<TopicMetadata> {
        self.lock().1.topics.values().cloned().collect()
    }

    pub fn cluster_id(&self) -> String {
        self.lock().1.cluster_id.clone().unwrap_or_default()
    }

    /// Checks a new topic without creating it (CreateTopics validate_only).
    pub fn check_new_topic(&self, topic: &NewTopic) -> Result<(), TopicError> {
        validate_topic_name(&topic.name)?;
        if topic.partitions < 1 {
            return Err(TopicError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "a topic needs at least 1 partition, not {}",
                    topic.partitions
                ),
            ));
        }
        if topic.partitions > 100_000 {
            return Err(TopicError::new(
                ResponseError::InvalidPartitions,
                format!(
                    "{} partitions is more than the 100000 one topic may have",
                    topic.partitions
                ),
            ));
        }
        configs::validate_topic_configs(&topic.configs)
            .map_err(|message| TopicError::new(ResponseError::InvalidConfig, message))?;
        let state = self.lock();
        if state.1.topics.contains_key(&topic.name) {
            return Err(TopicError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{}' already exists", topic.name),
            ));
        }
        // Kafka refuses names that collide once '.' and '_' are treated alike
        // (they map to the same metric names).
        let normalized = topic.name.replace('.', "_");
        if let Some(existing) = state
            .1
            .topics
            .keys()
            .find(|existing| existing.replace('.', "_") == normalized)
        {
            return Err(TopicError::new(
                ResponseError::InvalidTopicException,
                format!(
                    "topic '{}' collides with existing topic '{existing}' ('.' and '_' are treated alike)",
                    topic.name
                ),
            ));
        }
        Ok(())
    }

    /// Creates a topic: metadata record first (durable), then its partition logs.
    pub fn create(
        &self,
        topic: NewTopic,
        registry: &PartitionRegistry,
    ) -> Result<TopicMetadata, TopicError> {
        self.check_new_topic(&topic)?;
        let mut state = self.lock();
        if state.1.topics.contains_key(&topic.name) {
            return Err(TopicError::new(
                ResponseError::TopicAlreadyExists,
                format!("topic '{}' already exists", topic.name),
            ));
        }
        let record = MetadataRecord::TopicCreated {
            name: topic.name.clone(),
            topic_id: Uuid::new_v4(),
            partitions: (0..topic.partitions)
                .map(|_| PartitionMetadata {
                    replicas: vec![self.node_id],
                    isr: vec![self.node_id],
                    leader: self.node_id,
                    leader_epoch: 0,
                })
                .collect(),
            configs: topic.configs.clone(),
        };
        state
            .0
            .append(std::slice::from_ref(&record))
            .map_err(storage_error)?;
        state.1.apply(&record);
        let metadata = state.1.topics[&topic.name].clone();
        drop(state);
        let partitions = self
            .open_partitions(&metadata, Recovery::Clean)
            .map_err(storage_error)?;
        registry.insert_topic(&metadata.name, partitions);
        tracing::info!(topic = %metadata.name, partitions = metadata.partitions.len(), "created topic");
        Ok(metadata)
    }

    /// Opens (recovering as told) every partition log of a topic.
    pub fn open_partitions(
        &self,
        topic: &TopicMetadata,
        recovery: Recovery,
    ) -> Result<Vec<Arc<Partition>>, strom_log::LogError> {
        let settings = self.broker_configs.topic_settings(&topic.configs);
        topic
            .partitions
            .iter()
            .enumerate()
            .map(|(index, partition)| {
                let identity = PartitionIdentity {
                    topic: topic.name.clone(),
                    topic_id: topic.topic_id,
                    index: index as i32,
                    leader_epoch: partition.leader_epoch,
                };
                Partition::open(
                    &self.data_dir,
                    identity,
                    settings,
                    self.files.clone(),
                    recovery,
                )
                .map(Arc::new)
            })
            .collect()
    }

    /// Deletes a topic: metadata record first, then the partition logs.
    pub fn delete(
        &self,
        name: &str,
        registry: &PartitionRegistry,
    ) -> Result<TopicMetadata, TopicError> {
        let mut state = self.lock();
        let Some(metadata) = state.1.topics.get(name).cloned() else {
            return Err(TopicError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ));
        };
        let record = MetadataRecord::TopicDeleted {
            name: name.to_string(),
        };
        state
            .0
            .append(std::slice::from_ref(&record))
            .map_err(storage_error)?;
        state.1.apply(&record);
        drop(state);
        if let Some(partitions) = registry.remove_topic(name) {
            for partition in partitions.iter() {
                // Readers holding the partition keep their open files; the
                // directory goes now.
                let mut log = partition.log();
                if let Err(error) = log.delete() {
                    tracing::warn!(dir = %log.dir().display(), %error, "could not remove partition directory");
                }
            }
        }
        tracing::info!(topic = %name, "deleted topic");
        Ok(metadata)
    }
}

fn storage_error(error: impl std::fmt::Display) -> TopicError {
    tracing::error!(%error, "metadata change failed");
    TopicError::new(ResponseError::KafkaStorageError, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "bad/name", "spaces here", "ünïcode"] {
            assert_eq!(
                validate_topic_name(bad).unwrap_err().error,
                ResponseError::InvalidTopicException,
                "{bad:?}"
            );
        }
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
