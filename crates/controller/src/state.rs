//! The metadata state machine.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The cluster came into being (the first record of every metadata log).
    ClusterCreated {
        cluster_id: String,
    },
    TopicCreated {
        name: String,
        topic_id: Uuid,
        partitions: Vec<PartitionMetadata>,
        configs: BTreeMap<String, String>,
    },
    TopicDeleted {
        name: String,
    },
    /// Replaces the topic's config overrides as a whole.
    TopicConfigsReplaced {
        name: String,
        configs: BTreeMap<String, String>,
    },
    PartitionsAdded {
        name: String,
        partitions: Vec<PartitionMetadata>,
    },
    /// Producer ids below `next` are handed out (idempotent producers).
    ProducerIdsAllocated {
        next: i64,
    },
    /// Replaces the dynamic broker configs of one broker (`node_id`), or the
    /// cluster-wide defaults (`None`), as a whole.
    BrokerConfigsReplaced {
        node_id: Option<i32>,
        configs: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMetadata {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub leader: i32,
    pub leader_epoch: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionMetadata>,
    /// Config overrides set on the topic (Kafka names, string values).
    pub configs: BTreeMap<String, String>,
}

/// The current cluster metadata: the fold of every applied record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// Dynamic broker configs that apply to every broker.
    pub default_broker_configs: BTreeMap<String, String>,
    /// Dynamic broker configs of single brokers.
    pub node_broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// How many records have been applied.
    pub applied: u64,
}

impl ClusterMetadata {
    /// Applies one record. Records are checked before they are written, so a
    /// record that does not fit the state is a bug; it is logged and skipped
    /// rather than taking the node down at startup.
    pub fn apply(&mut self, record: &MetadataRecord) {
        self.applied += 1;
        match record {
            MetadataRecord::ClusterCreated { cluster_id } => {
                self.cluster_id.get_or_insert_with(|| cluster_id.clone());
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                self.topics.insert(
                    name.clone(),
                    TopicMetadata {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: partitions.clone(),
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::TopicDeleted { name } => {
                if self.topics.remove(name).is_none() {
                    tracing::error!(topic = %name, "metadata record deletes an unknown topic");
                }
            }
            MetadataRecord::TopicConfigsReplaced { name, configs } => {
                match self.topics.get_mut(name) {
                    Some(topic) => topic.configs = configs.clone(),
                    None => {
                        tracing::error!(topic = %name, "metadata record configures an unknown topic")
                    }
                }
            }
            MetadataRecord::ProducerIdsAllocated { next } => {
                self.next_producer_id = self.next_producer_id.max(*next);
            }
            MetadataRecord::BrokerConfigsReplaced { node_id, configs } => match node_id {
                Some(node_id) => {
                    self.node_broker_configs.insert(*node_id, configs.clone());
                }
                None => self.default_broker_configs = configs.clone(),
            },
            MetadataRecord::PartitionsAdded { name, partitions } => match self.topics.get_mut(name)
            {
                Some(topic) => topic.partitions.extend(partitions.iter().cloned()),
                None => tracing::error!(topic = %name, "metadata record grows an unknown topic"),
            },
        }
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<&TopicMetadata> {
        self.topics
            .values()
            .find(|topic| topic.topic_id == topic_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition() -> PartitionMetadata {
        PartitionMetadata {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
        }
    }

    #[test]
    fn records_fold_into_topics() {
        let mut state = ClusterMetadata::default();
        let id = Uuid::new_v4();
        state.apply(&MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: id,
            partitions: vec![partition()],
            configs: BTreeMap::new(),
        });
        state.apply(&MetadataRecord::PartitionsAdded {
            name: "orders".into(),
            partitions: vec![partition(), partition()],
        });
        state.apply(&MetadataRecord::TopicConfigsReplaced {
            name: "orders".into(),
            configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        });
        let topic = &state.topics["orders"];
        assert_eq!(topic.partitions.len(), 3);
        assert_eq!(topic.configs["retention.ms"], "1000");
        assert_eq!(
            state.topic_by_id(id).map(|t| t.name.as_str()),
            Some("orders")
        );
        state.apply(&MetadataRecord::TopicDeleted {
            name: "orders".into(),
        });
        assert!(state.topics.is_empty());
        assert_eq!(state.applied, 4);
    }
}
