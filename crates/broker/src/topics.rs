//! Creating, deleting and reconfiguring topics: checks a change, writes it to
//! the metadata log, applies it, and opens or removes the partition logs.
//!
//! Every change goes through one lock, so the metadata log's order is the
//! order in which changes took effect.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError;
use strom_controller::{ControllerError, ErrorKind, MetadataLog};
use strom_log::{FileCache, Recovery};
use strom_metadata::{MetadataImage, MetadataRecord, PartitionMetadata, TopicMetadata};
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

impl From<ControllerError> for TopicError {
    fn from(refused: ControllerError) -> TopicError {
        let error = match refused.kind {
            ErrorKind::InvalidTopic => ResponseError::InvalidTopicException,
            ErrorKind::TopicAlreadyExists => ResponseError::TopicAlreadyExists,
            ErrorKind::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
            ErrorKind::UnknownTopicId => ResponseError::UnknownTopicId,
            ErrorKind::InvalidPartitions => ResponseError::InvalidPartitions,
            ErrorKind::InvalidReplicationFactor => ResponseError::InvalidReplicationFactor,
            ErrorKind::InvalidReplicaAssignment => ResponseError::InvalidReplicaAssignment,
            ErrorKind::InvalidRequest => ResponseError::InvalidRequest,
            ErrorKind::DuplicateBrokerRegistration => ResponseError::DuplicateBrokerRegistration,
            ErrorKind::BrokerIdNotRegistered => ResponseError::BrokerIdNotRegistered,
            ErrorKind::StaleBrokerEpoch => ResponseError::StaleBrokerEpoch,
            ErrorKind::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
            ErrorKind::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
            ErrorKind::NotController => ResponseError::NotController,
            ErrorKind::InvalidUpdateVersion => ResponseError::InvalidUpdateVersion,
            ErrorKind::IneligibleReplica => ResponseError::IneligibleReplica,
            ErrorKind::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
            ErrorKind::PreferredLeaderNotAvailable => ResponseError::PreferredLeaderNotAvailable,
            ErrorKind::EligibleLeadersNotAvailable => ResponseError::EligibleLeadersNotAvailable,
        };
        TopicError::new(error, refused.message)
    }
}

/// Kafka's rules for topic names (the controller's).
pub fn validate_topic_name(name: &str) -> Result<(), TopicError> {
    strom_controller::validate_topic_name(name).map_err(TopicError::from)
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
    state: Mutex<(MetadataLog, MetadataImage)>,
    /// The block of producer ids being handed out: (next, end).
    next_producer_id: Mutex<(i64, i64)>,
}

impl Topics {
    pub fn new(
        node_id: i32,
        data_dir: std::path::PathBuf,
        files: FileCache,
        broker_configs: BrokerOverrides,
        log: MetadataLog,
        metadata: MetadataImage,
    ) -> Topics {
        Topics {
            node_id,
            data_dir,
            files,
            broker_configs,
            state: Mutex::new((log, metadata)),
            next_producer_id: Mutex::new((0, 0)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (MetadataLog, MetadataImage)> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Broker configs as they are now: static ones with the dynamic layers
    /// from the metadata log on top.
    pub fn configs(&self) -> BrokerOverrides {
        let state = self.lock();
        self.layered(&state.1)
    }

    fn layered(&self, metadata: &MetadataImage) -> BrokerOverrides {
        BrokerOverrides {
            static_configs: self.broker_configs.static_configs.clone(),
            dynamic_default: metadata.default_broker_configs.clone(),
            dynamic_node: metadata
                .node_broker_configs
                .get(&self.node_id)
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// Replaces a topic's config overrides (AlterConfigs and
    /// IncrementalAlterConfigs compute the new set) and applies them to its
    /// partitions at once.
    pub fn replace_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        registry: &PartitionRegistry,
    ) -> Result<(), TopicError> {
        configs::validate_topic_configs(&configs)
            .map_err(|message| TopicError::new(ResponseError::InvalidConfig, message))?;
        let mut state = self.lock();
        if !state.1.topics.contains_key(name) {
            return Err(unknown_topic(name));
        }
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::TopicConfigsReplaced {
            name: name.to_string(),
            configs,
        };
        state
            .0
            .append(std::slice::from_ref(&record))
            .map_err(storage_error)?;
        state.1.apply(&record);
        let broker_configs = self.layered(&state.1);
        let topic = state.1.topics[name].clone();
        drop(state);
        refresh_settings(&broker_configs, &topic, registry);
        tracing::info!(topic = %name, configs = ?topic.configs, "changed topic configs");
        Ok(())
    }

    /// Replaces the dynamic broker configs of this broker (`for_node`) or the
    /// cluster-wide defaults, and applies them to every partition.
    pub fn replace_broker_configs(
        &self,
        for_node: bool,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        registry: &PartitionRegistry,
    ) -> Result<(), TopicError> {
        for (name, value) in &configs {
            let Some(def) = configs::broker_config(name) else {
                return Err(TopicError::new(
                    ResponseError::InvalidConfig,
                    format!("unknown broker config '{name}'"),
                ));
            };
            if !configs::is_dynamic_broker_config(name) {
                return Err(TopicError::new(
                    ResponseError::InvalidConfig,
                    format!("{name} cannot change while the broker runs; set it with `strom serve --set {name}=...` and restart"),
                ));
            }
            configs::validate(def, value).map_err(|message| {
                TopicError::new(
                    ResponseError::InvalidConfig,
                    message.replacen(def.name, name, 1),
                )
            })?;
        }
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::BrokerConfigsReplaced {
            node_id: for_node.then_some(self.node_id),
            configs,
        };
        let mut state = self.lock();
        state
            .0
            .append(std::slice::from_ref(&record))
            .map_err(storage_error)?;
        state.1.apply(&record);
        let broker_configs = self.layered(&state.1);
        let topics: Vec<TopicMetadata> = state.1.topics.values().cloned().collect();
        drop(state);
        for topic in &topics {
            refresh_settings(&broker_configs, topic, registry);
        }
        tracing::info!("changed dynamic broker configs");
        Ok(())
    }

    /// Grows a topic to `total` partitions (CreatePartitions).
    pub fn add_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
        registry: &PartitionRegistry,
    ) -> Result<(), TopicError> {
        let mut state = self.lock();
        let Some(topic) = state.1.topics.get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        let current = topic.partitions.len() as i32;
        if total <= current {
            return Err(TopicError::new(
                ResponseError::InvalidPartitions,
                format!("topic '{name}' has {current} partitions; the new count must be higher, not {total}"),
            ));
        }
        if total > 100_000 {
            return Err(TopicError::new(
                ResponseError::InvalidPartitions,
                format!("{total} partitions is more than the 100000 one topic may have"),
            ));
        }
        if validate_only {
            return Ok(());
        }
        let record = MetadataRecord::PartitionsAdded {
            name: name.to_string(),
            partitions: (current..total).map(|_| self.new_partition()).collect(),
        };
        state
            .0
            .append(std::slice::from_ref(&record))
            .map_err(storage_error)?;
        state.1.apply(&record);
        let topic = state.1.topics[name].clone();
        let broker_configs = self.layered(&state.1);
        drop(state);
        let existing = registry
            .topic(name)
            .map(|partitions| partitions.to_vec())
            .unwrap_or_default();
        let mut partitions = existing;
        let opened = self
            .open_partitions_from(&topic, partitions.len(), &broker_configs, Recovery::Clean)
            .map_err(storage_error)?;
        partitions.extend(opened);
        registry.insert_topic(name, partitions);
        tracing::info!(topic = %name, partitions = total, "added partitions");
        Ok(())
    }

    fn new_partition(&self) -> PartitionMetadata {
        PartitionMetadata {
            replicas: vec![self.node_id],
            isr: vec![self.node_id],
            leader: self.node_id,
            leader_epoch: 0,
            partition_epoch: 0,
            eligible_leader_replicas: Vec::new(),
        }
    }

    /// A new producer id for an idempotent producer. Ids are reserved in
    /// blocks of 1,000 in the metadata log, so a restart never reuses one.
    pub fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        let mut state = self.lock();
        let mut next = self
            .next_producer_id
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if next.0 >= next.1 {
            let start = state.1.next_producer_id.max(next.1);
            let record = MetadataRecord::ProducerIdsAllocated {
                next: start + 1_000,
                node_id: Some(self.node_id),
            };
            state
                .0
                .append(std::slice::from_ref(&record))
                .map_err(storage_error)?;
            state.1.apply(&record);
            *next = (start, start + 1_000);
        }
        let id = next.0;
        next.0 += 1;
        Ok(id)
    }

    /// A copy of the current metadata of one topic.
    pub fn topic(&self, name: &str) -> Option<TopicMetadata> {
        self.lock().1.topics.get(name).cloned()
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<TopicMetadata> {
        self.lock().1.topic_by_id(topic_id).cloned()
    }

    /// The name of the topic with this id, without copying its metadata
    /// (requests that name topics by id ask this on every call).
    pub fn topic_name_by_id(&self, topic_id: Uuid) -> Option<String> {
        self.lock()
            .1
            .topic_by_id(topic_id)
            .map(|topic| topic.name.clone())
    }

    /// Partitions per topic, without copying any topic's metadata.
    pub fn partition_counts(&self) -> std::collections::HashMap<String, usize> {
        self.lock()
            .1
            .topics
            .iter()
            .map(|(name, topic)| (name.clone(), topic.partitions.len()))
            .collect()
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
                .map(|_| self.new_partition())
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
        let broker_configs = self.configs();
        self.open_partitions_from(topic, 0, &broker_configs, recovery)
    }

    fn open_partitions_from(
        &self,
        topic: &TopicMetadata,
        first: usize,
        broker_configs: &BrokerOverrides,
        recovery: Recovery,
    ) -> Result<Vec<Arc<Partition>>, strom_log::LogError> {
        let settings = broker_configs.topic_settings(&topic.configs);
        topic
            .partitions
            .iter()
            .enumerate()
            .skip(first)
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
            return Err(unknown_topic(name));
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

fn unknown_topic(name: &str) -> TopicError {
    TopicError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}

/// Pushes a topic's effective settings to its open partitions.
fn refresh_settings(
    broker_configs: &BrokerOverrides,
    topic: &TopicMetadata,
    registry: &PartitionRegistry,
) {
    let settings = broker_configs.topic_settings(&topic.configs);
    if let Some(partitions) = registry.topic(&topic.name) {
        for partition in partitions.iter() {
            partition.set_settings(settings);
        }
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
