//! The broker's side of metadata changes: checks what only the broker can
//! check (config values against their definitions), has the controller
//! decide (through the [`MetadataQuorum`]), and applies what was committed
//! to this node's partitions (through the [`ReplicaManager`]). Also this
//! broker's own lifecycle towards the controller: registration and
//! heartbeats.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use strom_controller::{
    ControllerError, ControllerReply, ControllerRequest, ElectionType, ErrorKind, Heartbeat,
    HeartbeatReply, Registration,
};
use strom_metadata::{MetadataImage, TopicMetadata};
use strom_quorum::Applied;
use tokio::sync::watch;
use uuid::Uuid;

use crate::configs::{self, BrokerOverrides};
use crate::partition::PartitionRegistry;
use crate::quorum::{DecideError, MetadataQuorum};
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
    quorum: Arc<MetadataQuorum>,
    replicas: ReplicaManager,
    /// The metadata offset this node's partitions have been reconciled to.
    reconciled: watch::Sender<u64>,
    /// This broker's epoch, from its registration (0 before it).
    broker_epoch: AtomicI64,
    /// The block of producer ids being handed out: (next, end).
    next_producer_id: tokio::sync::Mutex<(i64, i64)>,
}

/// How long a change waits for this node's partitions to catch up with it
/// before answering anyway (it is committed either way).
const RECONCILE_WAIT: Duration = Duration::from_secs(30);

impl Topics {
    pub fn new(
        node_id: i32,
        broker_configs: BrokerOverrides,
        quorum: Arc<MetadataQuorum>,
        replicas: ReplicaManager,
    ) -> Topics {
        Topics {
            node_id,
            broker_configs,
            quorum,
            replicas,
            reconciled: watch::Sender::new(0),
            broker_epoch: AtomicI64::new(0),
            next_producer_id: tokio::sync::Mutex::new((0, 0)),
        }
    }

    pub fn quorum(&self) -> &MetadataQuorum {
        &self.quorum
    }

    /// Has the active controller answer `request`; returns once this
    /// node's partitions reflect what it committed.
    async fn decide(&self, request: ControllerRequest) -> Result<ControllerReply, TopicError> {
        let (reply, offset) = self.decide_committed(request).await?;
        let mut reconciled = self.reconciled.subscribe();
        let caught_up = tokio::time::timeout(
            RECONCILE_WAIT,
            reconciled.wait_for(|&reconciled| reconciled >= offset),
        )
        .await;
        if !matches!(caught_up, Ok(Ok(_))) {
            tracing::warn!(
                metadata_offset = offset,
                "this node's partitions have not caught up with a committed change yet"
            );
        }
        Ok(reply)
    }

    /// Has the active controller answer `request`; returns once it is
    /// committed, with the metadata offset after it.
    async fn decide_committed(
        &self,
        request: ControllerRequest,
    ) -> Result<(ControllerReply, u64), TopicError> {
        self.quorum
            .decide(request)
            .await
            .map_err(|error| match error {
                DecideError::Refused(refused) => TopicError::from(refused),
                DecideError::Unavailable(problem) => {
                    tracing::warn!(%problem, "a metadata change found no controller");
                    TopicError::new(ResponseError::RequestTimedOut, problem)
                }
                DecideError::Storage(problem) => storage_error(problem),
            })
    }

    /// Applies one batch of committed metadata to this node's partitions
    /// (the reconciler thread, in commit order).
    pub fn reconcile(&self, applied: &Applied, registry: &PartitionRegistry) {
        let image = &applied.image;
        if image.applied <= *self.reconciled.borrow() {
            return; // already in the image the partitions were opened from
        }
        let result = if applied.from_snapshot {
            self.replicas
                .apply_all(image, &self.layered(image), registry)
        } else {
            self.replicas
                .apply(&applied.records, image, &self.layered(image), registry)
        };
        if let Err(failed) = result {
            tracing::error!(topic = %failed.topic, error = %failed.source, "applying committed metadata to a partition failed; the partition stays as it was");
        }
        self.reconciled.send_replace(image.applied);
    }

    /// Registers this broker process with the controller and, once it has
    /// the metadata up to its registration, asks to be unfenced. Returns
    /// the broker epoch.
    pub async fn register(&self, registration: Registration) -> Result<i64, TopicError> {
        let (reply, offset) = self
            .decide_committed(ControllerRequest::RegisterBroker(registration))
            .await?;
        let ControllerReply::Registered(epoch) = reply else {
            return Err(unexpected("BrokerRegistration"));
        };
        self.broker_epoch.store(epoch, Ordering::Release);
        if !self.quorum.wait_applied(offset, RECONCILE_WAIT).await {
            return Err(TopicError::new(
                ResponseError::RequestTimedOut,
                "this node did not receive the metadata up to its own registration",
            ));
        }
        for _ in 0..50 {
            let (reply, _) = self.heartbeat_once(false).await?;
            if !reply.is_fenced {
                return Ok(epoch);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(TopicError::new(
            ResponseError::BrokerIdNotRegistered,
            "the controller did not unfence this broker",
        ))
    }

    /// This broker process's epoch, from its registration.
    pub fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(Ordering::Acquire)
    }

    /// Proposes a leader's ISR change (AlterPartition); returns once the
    /// controller committed it and this node's partitions took it.
    pub async fn alter_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        proposal: &strom_replica::IsrProposal,
    ) -> Result<(), TopicError> {
        let request = strom_controller::AlterPartition {
            broker_id: self.node_id,
            broker_epoch: self.broker_epoch(),
            topic_id,
            partition,
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal
                .isr
                .iter()
                .map(|&(node_id, broker_epoch)| strom_controller::IsrMember {
                    node_id,
                    broker_epoch,
                })
                .collect(),
        };
        self.decide(ControllerRequest::AlterPartition(request))
            .await
            .map(|_| ())
    }

    /// One heartbeat of this broker to the active controller.
    pub async fn heartbeat(&self) -> Result<HeartbeatReply, TopicError> {
        self.heartbeat_once(false).await.map(|(reply, _)| reply)
    }

    /// Controlled shutdown: heartbeats asking to shut down until the
    /// controller has moved this broker's leaderships away and says it may
    /// go, or `within` has passed.
    pub async fn shut_down(&self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < deadline {
            // A controller without a majority never answers: the shutdown
            // waits no longer than its own deadline for any one heartbeat.
            let Ok(answer) = tokio::time::timeout_at(deadline, self.heartbeat_once(true)).await
            else {
                break;
            };
            match answer {
                Ok((reply, _)) if reply.should_shut_down => return true,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(message = %error.message, "controlled shutdown heartbeat failed")
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    async fn heartbeat_once(
        &self,
        want_shutdown: bool,
    ) -> Result<(HeartbeatReply, u64), TopicError> {
        let request = Heartbeat {
            node_id: self.node_id,
            broker_epoch: self.broker_epoch.load(Ordering::Acquire),
            metadata_offset: self.quorum.read(|image| image.applied),
            want_fence: false,
            want_shutdown,
        };
        match self
            .decide_committed(ControllerRequest::Heartbeat(request))
            .await?
        {
            (ControllerReply::Heartbeat(reply), offset) => Ok((reply, offset)),
            _ => Err(unexpected("BrokerHeartbeat")),
        }
    }

    /// Opens every partition of this node at startup, from the committed
    /// image as it is now; later batches come through [`Topics::reconcile`].
    pub fn open_partitions(
        &self,
        registry: &PartitionRegistry,
        recovery: strom_log::Recovery,
    ) -> Result<(), crate::replica_manager::ApplyError> {
        let image = self.quorum.image();
        self.replicas
            .open_all(&image, &self.layered(&image), registry, recovery)?;
        self.reconciled.send_replace(image.applied);
        Ok(())
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
    pub async fn replace_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        check_topic_configs(&configs)?;
        let logged = configs.clone();
        self.decide(ControllerRequest::ReplaceTopicConfigs {
            name: name.to_string(),
            configs,
            validate_only,
        })
        .await?;
        if !validate_only {
            tracing::info!(topic = %name, configs = ?logged, "changed topic configs");
        }
        Ok(())
    }

    /// Replaces the dynamic broker configs of this broker (`for_node`) or the
    /// cluster-wide defaults, and applies them to every partition.
    pub async fn replace_broker_configs(
        &self,
        for_node: bool,
        configs: BTreeMap<String, String>,
        validate_only: bool,
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
        self.decide(ControllerRequest::ReplaceBrokerConfigs { node_id, configs })
            .await?;
        tracing::info!("changed dynamic broker configs");
        Ok(())
    }

    /// Grows a topic to `total` partitions (CreatePartitions).
    pub async fn add_partitions(
        &self,
        name: &str,
        total: i32,
        validate_only: bool,
    ) -> Result<(), TopicError> {
        self.decide(ControllerRequest::AddPartitions {
            name: name.to_string(),
            total,
            assignments: Vec::new(),
            validate_only,
        })
        .await?;
        if !validate_only {
            tracing::info!(topic = %name, partitions = total, "added partitions");
        }
        Ok(())
    }

    /// A new producer id for an idempotent producer. Ids come in blocks the
    /// controller hands out and records, so a restart never reuses one.
    pub async fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        let mut next = self.next_producer_id.lock().await;
        if next.0 >= next.1 {
            let request = ControllerRequest::AllocateProducerIds {
                node_id: self.node_id,
                broker_epoch: self.broker_epoch.load(Ordering::Acquire),
            };
            let ControllerReply::ProducerIds(block) = self.decide(request).await? else {
                return Err(unexpected("AllocateProducerIds"));
            };
            *next = (block.first, block.first + block.size);
        }
        let id = next.0;
        next.0 += 1;
        Ok(id)
    }

    /// ElectLeaders for one partition.
    pub async fn elect_leader(
        &self,
        topic: &str,
        partition: i32,
        election: ElectionType,
    ) -> Result<(), TopicError> {
        self.decide(ControllerRequest::ElectLeader {
            topic: topic.to_string(),
            partition,
            election,
        })
        .await
        .map(|_| ())
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

    /// Whether the cluster has partition `index` of `topic` (on any broker).
    pub fn partition_exists(&self, topic: &str, index: i32) -> bool {
        self.quorum.read(|image| {
            image
                .topics
                .get(topic)
                .is_some_and(|t| usize::try_from(index).is_ok_and(|i| i < t.partitions.len()))
        })
    }

    /// What to answer for a partition that is not held here: NOT_LEADER_OR_
    /// FOLLOWER when the cluster has it (on other brokers), else
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub fn not_here(&self, topic: &str, index: i32) -> ResponseError {
        if self.partition_exists(topic, index) {
            ResponseError::NotLeaderOrFollower
        } else {
            ResponseError::UnknownTopicOrPartition
        }
    }

    /// KIP-951's hint for a client told NOT_LEADER_OR_FOLLOWER or
    /// FENCED_LEADER_EPOCH: the partition's current leader and leader epoch
    /// and, when that leader is live, where it listens; `None` when the
    /// partition has no leader or does not exist.
    pub fn current_leader(
        &self,
        topic: &str,
        index: i32,
    ) -> Option<(i32, i32, Option<LiveBroker>)> {
        let (leader, leader_epoch) = self.quorum.read(|image| {
            let partition = image
                .topics
                .get(topic)?
                .partitions
                .get(usize::try_from(index).ok()?)?;
            (partition.leader >= 0).then_some((partition.leader, partition.leader_epoch))
        })?;
        let endpoint = self
            .live_brokers()
            .into_iter()
            .find(|broker| broker.node_id == leader);
        Some((leader, leader_epoch, endpoint))
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
    pub async fn check_new_topic(&self, topic: &NewTopic) -> Result<TopicMetadata, TopicError> {
        check_topic_configs(&topic.configs)?;
        let request = ControllerRequest::CreateTopic {
            topic: topic.clone(),
            validate_only: true,
        };
        match self.decide(request).await? {
            ControllerReply::Topic(topic) => Ok(*topic),
            _ => Err(unexpected("CreateTopics")),
        }
    }

    /// Creates a topic: the controller places it, the record is committed,
    /// then this node opens its partitions.
    pub async fn create(&self, topic: NewTopic) -> Result<TopicMetadata, TopicError> {
        check_topic_configs(&topic.configs)?;
        let request = ControllerRequest::CreateTopic {
            topic,
            validate_only: false,
        };
        let ControllerReply::Topic(metadata) = self.decide(request).await? else {
            return Err(unexpected("CreateTopics"));
        };
        tracing::info!(topic = %metadata.name, partitions = metadata.partitions.len(), "created topic");
        Ok(*metadata)
    }

    /// Deletes a topic: the record is committed, then its partitions go.
    pub async fn delete(&self, name: &str) -> Result<TopicMetadata, TopicError> {
        let request = ControllerRequest::DeleteTopic {
            name: name.to_string(),
        };
        let ControllerReply::Topic(metadata) = self.decide(request).await? else {
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
