//! Every request the controller answers, as one serializable type, so a
//! broker can send a request to the active controller on another node and
//! get the same answer it would get in-process.
//!
//! [`Controller::handle`] dispatches to the decision methods; it adds no
//! rules of its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strom_metadata::{PartitionMetadata, TopicMetadata};

use crate::brokers::{Heartbeat, HeartbeatReply, ProducerIdBlock, Registration};
use crate::controller::{Controller, Decision};
use crate::error::ControllerError;
use crate::partitions::{AlterPartition, ElectionType};
use crate::topics::NewTopic;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    RegisterBroker(Registration),
    Heartbeat(Heartbeat),
    UnregisterBroker {
        node_id: i32,
    },
    CreateTopic {
        topic: NewTopic,
        validate_only: bool,
    },
    DeleteTopic {
        name: String,
    },
    AddPartitions {
        name: String,
        total: i32,
        assignments: Vec<Vec<i32>>,
        validate_only: bool,
    },
    ReplaceTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    },
    /// The dynamic configs of broker `node_id`, or the cluster-wide
    /// defaults (`None`).
    ReplaceBrokerConfigs {
        node_id: Option<i32>,
        configs: BTreeMap<String, String>,
    },
    AllocateProducerIds {
        node_id: i32,
        broker_epoch: i64,
    },
    AlterPartition(AlterPartition),
    ElectLeader {
        topic: String,
        partition: i32,
        election: ElectionType,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The broker epoch of a registration.
    Registered(i64),
    Heartbeat(HeartbeatReply),
    /// The topic as created (or as it would be, validate-only) or deleted.
    Topic(Box<TopicMetadata>),
    /// A partition after an accepted ISR change.
    Partition(PartitionMetadata),
    ProducerIds(ProducerIdBlock),
    Done,
}

impl ControllerRequest {
    /// The request's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            ControllerRequest::RegisterBroker(_) => "BrokerRegistration",
            ControllerRequest::Heartbeat(_) => "BrokerHeartbeat",
            ControllerRequest::UnregisterBroker { .. } => "UnregisterBroker",
            ControllerRequest::CreateTopic { .. } => "CreateTopics",
            ControllerRequest::DeleteTopic { .. } => "DeleteTopics",
            ControllerRequest::AddPartitions { .. } => "CreatePartitions",
            ControllerRequest::ReplaceTopicConfigs { .. } => "AlterConfigs(topic)",
            ControllerRequest::ReplaceBrokerConfigs { .. } => "AlterConfigs(broker)",
            ControllerRequest::AllocateProducerIds { .. } => "AllocateProducerIds",
            ControllerRequest::AlterPartition(_) => "AlterPartition",
            ControllerRequest::ElectLeader { .. } => "ElectLeaders",
        }
    }
}

fn map<T>(
    decision: Decision<T>,
    reply: impl FnOnce(T) -> ControllerReply,
) -> Decision<ControllerReply> {
    Decision {
        reply: reply(decision.reply),
        records: decision.records,
    }
}

impl Controller {
    /// Answers one request at `now_ms`.
    pub fn handle(
        &mut self,
        request: ControllerRequest,
        now_ms: i64,
    ) -> Result<Decision<ControllerReply>, ControllerError> {
        let done = |()| ControllerReply::Done;
        let topic = |topic| ControllerReply::Topic(Box::new(topic));
        Ok(match request {
            ControllerRequest::RegisterBroker(registration) => map(
                self.register_broker(registration, now_ms)?,
                ControllerReply::Registered,
            ),
            ControllerRequest::Heartbeat(heartbeat) => map(
                self.heartbeat(heartbeat, now_ms)?,
                ControllerReply::Heartbeat,
            ),
            ControllerRequest::UnregisterBroker { node_id } => {
                map(self.unregister_broker(node_id)?, done)
            }
            ControllerRequest::CreateTopic {
                topic: new_topic,
                validate_only,
            } => map(self.create_topic(new_topic, validate_only)?, topic),
            ControllerRequest::DeleteTopic { name } => map(self.delete_topic(&name)?, topic),
            ControllerRequest::AddPartitions {
                name,
                total,
                assignments,
                validate_only,
            } => map(
                self.add_partitions(&name, total, &assignments, validate_only)?,
                done,
            ),
            ControllerRequest::ReplaceTopicConfigs {
                name,
                configs,
                validate_only,
            } => map(
                self.replace_topic_configs(&name, configs, validate_only)?,
                done,
            ),
            ControllerRequest::ReplaceBrokerConfigs { node_id, configs } => {
                map(self.replace_broker_configs(node_id, configs), done)
            }
            ControllerRequest::AllocateProducerIds {
                node_id,
                broker_epoch,
            } => map(
                self.allocate_producer_ids(node_id, broker_epoch)?,
                ControllerReply::ProducerIds,
            ),
            ControllerRequest::AlterPartition(change) => {
                map(self.alter_partition(change)?, ControllerReply::Partition)
            }
            ControllerRequest::ElectLeader {
                topic,
                partition,
                election,
            } => map(self.elect_leader(&topic, partition, election)?, done),
        })
    }
}
