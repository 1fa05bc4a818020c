//! The broker's side of metadata changes: checks what only the broker can
//! check (config values against their definitions), has the controller
//! decide (through the [`MetadataQuorum`]), and applies what was committed
//! to this node's partitions (through the [`ReplicaManager`]). Also this
//! broker's own lifecycle towards the controller: registration and
//! heartbeats.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

use kafka_protocol::error::ResponseError;
use strom_controller::{
    ControllerError, ControllerReply, ControllerRequest, ErrorKind, Heartbeat, HeartbeatReply,
    Registration,
};
use strom_metadata::{MetadataImage, TopicMetadata};
use uuid::Uuid;

use crate::configs::{self, BrokerOverrides};
use crate::partition::{now_ms, PartitionRegistry};
use crate::quorum::{Committed, DecideError, MetadataQuorum};
use crate::replica_manager::ReplicaManager;

pub use strom_controller::NewTopic;

/// A broker as clients see it in Metadata and DescribeCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveBroker {
    pub node_id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

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

pub struct Topics {
    node_id: i32,
    broker_configs: BrokerOverrides,
    quorum: MetadataQuorum,
    replicas: ReplicaManager,
    /// This broker's epoch, from its registration (0 before it).
    broker_epoch: AtomicI64,
    /// The block of producer ids being handed out: (next, end).
    next_producer_id: Mutex<(i64, i64)>,
}

impl Topics {
    pub fn new(
        node_id: i32,
        broker_configs: BrokerOverrides,
        quorum: MetadataQuorum,
        replicas: ReplicaManager,
    ) -> Topics {
        Topics {
            node_id,
            broker_configs,
            quorum,
            replicas,
            broker_epoch: AtomicI64::new(0),
            next_producer_id: Mutex::new((0, 0)),
        }
    }

    /// Has the active controller answer `request`, then applies what it
    /// committed to this node's partitions.
    fn decide(
        &self,
        registry: &PartitionRegistry,
        request: ControllerRequest,
    ) -> Result<ControllerReply, TopicError> {
        let Committed { reply, records } =
            self.quorum
                .decide(now_ms(), request)
                .map_err(|error| match error {
                    DecideError::Refused(refused) => TopicError::from(refused),
                    DecideError::Storage(error) => storage_error(error),
                })?;
        self.apply(registry, &records)?;
        Ok(reply)
    }

    /// Applies committed records to this node's partitions.
    fn apply(
        &self,
        registry: &PartitionRegistry,
        records: &[strom_metadata::MetadataRecord],
    ) -> Result<(), TopicError> {
        if records.is_empty() {
            return Ok(());
        }
        self.replicas
            .apply(records, &self.quorum, |image| self.layered(image), registry)
            .map_err(|failed| storage_error(failed.source))
    }

    /// Registers this broker process with the controller and, once it has
    /// the metadata (in-process, at once), asks to be unfenced. Returns the
    /// broker epoch.
    pub fn register(
        &self,
        registration: Registration,
        registry: &PartitionRegistry,
    ) -> Result<i64, TopicError> {
        let ControllerReply::Registered(epoch) =
            self.decide(registry, ControllerRequest::RegisterBroker(registration))?
        else {
            return Err(unexpected("BrokerRegistration"));
        };
        self.broker_epoch.store(epoch, Ordering::Release);
        let reply = self.heartbeat(registry)?;
        if reply.is_fenced {
            return Err(TopicError::new(
                ResponseError::BrokerIdNotRegistered,
                "the controller did not unfence this broker",
            ));
        }
        Ok(epoch)
    }

    /// One heartbeat of this broker, then the controller's periodic work
    /// (the controller is in this process).
    pub fn heartbeat(&self, registry: &PartitionRegistry) -> Result<HeartbeatReply, TopicError> {
        let request = Heartbeat {
            node_id: self.node_id,
            broker_epoch: self.broker_epoch.load(Ordering::Acquire),
            metadata_offset: self.quorum.read(|image| image.applied),
            want_fence: false,
            want_shutdown: false,
        };
        let ControllerReply::Heartbeat(reply) =
            self.decide(registry, ControllerRequest::Heartbeat(request))?
        else {
            return Err(unexpected("BrokerHeartbeat"));
        };
        self.quorum
            .tick(now_ms())
            .map_err(|error| match error {
                DecideError::Refused(refused) => TopicError::from(refused),
                DecideError::Storage(error) => storage_error(error),
            })
            .and_then(|records| self.apply(registry, &records))?;
        Ok(reply)
    }

    /// Opens every partition of this node at startup.
    pub fn open_partitions(
        &self,
        registry: &PartitionRegistry,
        recovery: strom_log::Recovery,
    ) -> Result<(), crate::replica_manager::ApplyError> {
        self.replicas.open_all(
            &self.quorum,
            |image| self.layered(image),
            registry,
            recovery,
        )
    }

    /// Broker configs as they are now: static ones with the dynamic layers
    /// from the metadata log on top.
    pub fn configs(&self) -> BrokerOverrides {
        self.quorum.read(|image| self.layered(image))
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
        check_topic_configs(&configs)?;
        let logged = configs.clone();
        self.decide(
            registry,
            ControllerRequest::ReplaceTopicConfigs {
                name: name.to_string(),
                configs,
                validate_only,
            },
        )?;
        if !validate_only {
            tracing::info!(topic = %name, configs = ?logged, "changed topic configs");
        }
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
        let node_id = for_node.then_some(self.node_id);
        self.decide(
            registry,
            ControllerRequest::ReplaceBrokerConfigs { node_id, configs },
        )?;
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
        self.decide(
            registry,
            ControllerRequest::AddPartitions {
                name: name.to_string(),
                total,
                assignments: Vec::new(),
                validate_only,
            },
        )?;
        if !validate_only {
            tracing::info!(topic = %name, partitions = total, "added partitions");
        }
        Ok(())
    }

    /// A new producer id for an idempotent producer. Ids come in blocks the
    /// controller hands out and records, so a restart never reuses one.
    pub fn allocate_producer_id(&self, registry: &PartitionRegistry) -> Result<i64, TopicError> {
        let mut next = self
            .next_producer_id
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if next.0 >= next.1 {
            let request = ControllerRequest::AllocateProducerIds {
                node_id: self.node_id,
                broker_epoch: self.broker_epoch.load(Ordering::Acquire),
            };
            let ControllerReply::ProducerIds(block) = self.decide(registry, request)? else {
                return Err(unexpected("AllocateProducerIds"));
            };
            *next = (block.first, block.first + block.size);
        }
        let id = next.0;
        next.0 += 1;
        Ok(id)
    }

    /// A copy of the current metadata of one topic.
    pub fn topic(&self, name: &str) -> Option<TopicMetadata> {
        self.quorum.read(|image| image.topics.get(name).cloned())
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<TopicMetadata> {
        self.quorum
            .read(|image| image.topic_by_id(topic_id).cloned())
    }

    /// The name of the topic with this id, without copying its metadata
    /// (requests that name topics by id ask this on every call).
    pub fn topic_name_by_id(&self, topic_id: Uuid) -> Option<String> {
        self.quorum
            .read(|image| image.topic_by_id(topic_id).map(|topic| topic.name.clone()))
    }

    /// Partitions per topic, without copying any topic's metadata.
    pub fn partition_counts(&self) -> std::collections::HashMap<String, usize> {
        self.quorum.read(|image| {
            image
                .topics
                .iter()
                .map(|(name, topic)| (name.clone(), topic.partitions.len()))
                .collect()
        })
    }

    pub fn all_topics(&self) -> Vec<TopicMetadata> {
        self.quorum
            .read(|image| image.topics.values().cloned().collect())
    }

    pub fn cluster_id(&self) -> String {
        self.quorum
            .read(|image| image.cluster_id.clone().unwrap_or_default())
    }

    /// The brokers clients may connect to now (registered and unfenced), by
    /// node id, with the address of their client listener.
    pub fn live_brokers(&self) -> Vec<LiveBroker> {
        self.quorum.read(|image| {
            image
                .brokers
                .values()
                .filter(|broker| !broker.fenced)
                .filter_map(|broker| {
                    let endpoint = broker.endpoints.first()?;
                    Some(LiveBroker {
                        node_id: broker.node_id,
                        host: endpoint.host.clone(),
                        port: endpoint.port,
                        rack: broker.rack.clone(),
                    })
                })
                .collect()
        })
    }

    /// What to answer for a partition that is not held here: NOT_LEADER_OR_
    /// FOLLOWER when the cluster has it (on other brokers), else
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub fn not_here(&self, topic: &str, index: i32) -> ResponseError {
        let exists = self.quorum.read(|image| {
            image
                .topics
                .get(topic)
                .is_some_and(|t| usize::try_from(index).is_ok_and(|i| i < t.partitions.len()))
        });
        if exists {
            ResponseError::NotLeaderOrFollower
        } else {
            ResponseError::UnknownTopicOrPartition
        }
    }

    /// The live broker leading partition `index` of `topic`, if any.
    pub fn leader_of(&self, topic: &str, index: i32) -> Option<LiveBroker> {
        let leader = self.quorum.read(|image| {
            let partition = image
                .topics
                .get(topic)?
                .partitions
                .get(usize::try_from(index).ok()?)?;
            Some(partition.leader)
        })?;
        self.live_brokers()
            .into_iter()
            .find(|broker| broker.node_id == leader)
    }

    /// The node clients are told is the controller: the active controller.
    pub fn controller_id(&self) -> i32 {
        self.quorum.leader().unwrap_or(self.node_id)
    }

    /// Brokers that may lead and follow now.
    pub fn usable_brokers(&self) -> usize {
        self.quorum
            .read(|image| image.brokers.values().filter(|b| b.is_usable()).count())
    }

    /// Checks a new topic without creating it (CreateTopics validate_only).
    pub fn check_new_topic(
        &self,
        topic: &NewTopic,
        registry: &PartitionRegistry,
    ) -> Result<TopicMetadata, TopicError> {
        check_topic_configs(&topic.configs)?;
        let request = ControllerRequest::CreateTopic {
            topic: topic.clone(),
            validate_only: true,
        };
        match self.decide(registry, request)? {
            ControllerReply::Topic(topic) => Ok(*topic),
            _ => Err(unexpected("CreateTopics")),
        }
    }

    /// Creates a topic: the controller places it, the record is committed,
    /// then this node opens its partitions.
    pub fn create(
        &self,
        topic: NewTopic,
        registry: &PartitionRegistry,
    ) -> Result<TopicMetadata, TopicError> {
        check_topic_configs(&topic.configs)?;
        let request = ControllerRequest::CreateTopic {
            topic,
            validate_only: false,
        };
        let ControllerReply::Topic(metadata) = self.decide(registry, request)? else {
            return Err(unexpected("CreateTopics"));
        };
        tracing::info!(topic = %metadata.name, partitions = metadata.partitions.len(), "created topic");
        Ok(*metadata)
    }

    /// Deletes a topic: the record is committed, then its partitions go.
    pub fn delete(
        &self,
        name: &str,
        registry: &PartitionRegistry,
    ) -> Result<TopicMetadata, TopicError> {
        let request = ControllerRequest::DeleteTopic {
            name: name.to_string(),
        };
        let ControllerReply::Topic(metadata) = self.decide(registry, request)? else {
            return Err(unexpected("DeleteTopics"));
        };
        tracing::info!(topic = %name, "deleted topic");
        Ok(*metadata)
    }
}

/// Topic config values against their definitions (the broker's part of
/// checking a topic change; the controller checks the rest).
fn check_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), TopicError> {
    configs::validate_topic_configs(configs)
        .map_err(|message| TopicError::new(ResponseError::InvalidConfig, message))
}

/// A reply of the wrong kind: the controller and this broker disagree on
/// the protocol between them.
fn unexpected(request: &str) -> TopicError {
    tracing::error!(
        request,
        "the controller answered with a reply of another request"
    );
    TopicError::new(
        ResponseError::UnknownServerError,
        format!("the controller's answer to {request} was not understood"),
    )
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
