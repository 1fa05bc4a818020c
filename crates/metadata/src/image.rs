//! The metadata image: the fold of every applied record (Kafka's
//! `MetadataImage`). Applying is a pure function of the image and the
//! record, so every node that applies the same committed records in the same
//! order holds the same image.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::records::{Endpoint, MetadataRecord, PartitionMetadata};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    pub topic_id: Uuid,
    pub partitions: Vec<PartitionMetadata>,
    /// Config overrides set on the topic (Kafka names, string values).
    pub configs: BTreeMap<String, String>,
}

/// A registered broker, as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    pub node_id: i32,
    pub incarnation_id: Uuid,
    pub broker_epoch: i64,
    pub endpoints: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The id of the broker's data directory.
    pub directory_id: Uuid,
    /// Fenced brokers lead nothing and are in no ISR.
    pub fenced: bool,
    /// In controlled shutdown: being moved out of ISRs and leaderships.
    pub in_controlled_shutdown: bool,
    /// The metadata offset of its registration record: the broker is caught
    /// up (and may be unfenced) once it has applied the log past it.
    pub registered_at: u64,
}

impl BrokerRegistration {
    /// May lead partitions and be in ISRs.
    pub fn is_usable(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// The current cluster metadata. Snapshots are its JSON form
/// ([`MetadataImage::to_snapshot`]). However it is read back (a snapshot, an
/// image inside a Raft entry or sent over the network), the derived index
/// is rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StoredImage")]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    pub topics: BTreeMap<String, TopicMetadata>,
    /// Topic names by id, for records and requests that name topics by id
    /// (derived: rebuilt when a snapshot is read).
    #[serde(skip)]
    topic_names: HashMap<Uuid, String>,
    /// Dynamic broker configs that apply to every broker.
    pub default_broker_configs: BTreeMap<String, String>,
    /// Dynamic broker configs of single brokers.
    pub node_broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// The highest broker epoch handed out.
    pub last_broker_epoch: i64,
    /// How many records have been applied: the metadata offset, the same on
    /// every node that applied the same log.
    pub applied: u64,
}

/// [`MetadataImage`] as stored: every field but the derived index.
#[derive(Deserialize)]
struct StoredImage {
    cluster_id: Option<String>,
    brokers: BTreeMap<i32, BrokerRegistration>,
    topics: BTreeMap<String, TopicMetadata>,
    default_broker_configs: BTreeMap<String, String>,
    node_broker_configs: BTreeMap<i32, BTreeMap<String, String>>,
    next_producer_id: i64,
    last_broker_epoch: i64,
    applied: u64,
}

impl From<StoredImage> for MetadataImage {
    fn from(stored: StoredImage) -> MetadataImage {
        let topic_names = stored
            .topics
            .values()
            .map(|topic| (topic.topic_id, topic.name.clone()))
            .collect();
        MetadataImage {
            cluster_id: stored.cluster_id,
            brokers: stored.brokers,
            topics: stored.topics,
            topic_names,
            default_broker_configs: stored.default_broker_configs,
            node_broker_configs: stored.node_broker_configs,
            next_producer_id: stored.next_producer_id,
            last_broker_epoch: stored.last_broker_epoch,
            applied: stored.applied,
        }
    }
}

impl MetadataImage {
    /// Applies one record. Records are checked by the controller before they
    /// are written, so a record that does not fit the image is a bug; it is
    /// logged and skipped rather than taking the node down at startup.
    pub fn apply(&mut self, record: &MetadataRecord) {
        let offset = self.applied;
        self.applied += 1;
        match record {
            MetadataRecord::ClusterCreated { cluster_id } => {
                self.cluster_id.get_or_insert_with(|| cluster_id.clone());
            }
            MetadataRecord::BrokerRegistered {
                node_id,
                incarnation_id,
                broker_epoch,
                endpoints,
                rack,
                directory_id,
            } => {
                self.last_broker_epoch = self.last_broker_epoch.max(*broker_epoch);
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        incarnation_id: *incarnation_id,
                        broker_epoch: *broker_epoch,
                        endpoints: endpoints.clone(),
                        rack: rack.clone(),
                        directory_id: *directory_id,
                        fenced: true,
                        in_controlled_shutdown: false,
                        registered_at: offset,
                    },
                );
            }
            MetadataRecord::BrokerFenced {
                node_id,
                broker_epoch,
            } => self.change_broker(*node_id, *broker_epoch, |broker| broker.fenced = true),
            MetadataRecord::BrokerUnfenced {
                node_id,
                broker_epoch,
            } => self.change_broker(*node_id, *broker_epoch, |broker| {
                broker.fenced = false;
                broker.in_controlled_shutdown = false;
            }),
            MetadataRecord::BrokerShuttingDown {
                node_id,
                broker_epoch,
            } => self.change_broker(*node_id, *broker_epoch, |broker| {
                broker.in_controlled_shutdown = true
            }),
            MetadataRecord::BrokerUnregistered {
                node_id,
                broker_epoch,
            } => {
                if self.brokers.get(node_id).map(|b| b.broker_epoch) == Some(*broker_epoch) {
                    self.brokers.remove(node_id);
                } else {
                    tracing::error!(
                        node_id,
                        broker_epoch,
                        "metadata record unregisters an unknown broker epoch"
                    );
                }
            }
            MetadataRecord::TopicCreated {
                name,
                topic_id,
                partitions,
                configs,
            } => {
                self.topic_names.insert(*topic_id, name.clone());
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
            MetadataRecord::TopicDeleted { name } => match self.topics.remove(name) {
                Some(topic) => {
                    self.topic_names.remove(&topic.topic_id);
                }
                None => tracing::error!(topic = %name, "metadata record deletes an unknown topic"),
            },
            MetadataRecord::TopicConfigsReplaced { name, configs } => {
                match self.topics.get_mut(name) {
                    Some(topic) => topic.configs = configs.clone(),
                    None => {
                        tracing::error!(topic = %name, "metadata record configures an unknown topic")
                    }
                }
            }
            MetadataRecord::PartitionsAdded { name, partitions } => match self.topics.get_mut(name)
            {
                Some(topic) => topic.partitions.extend(partitions.iter().cloned()),
                None => tracing::error!(topic = %name, "metadata record grows an unknown topic"),
            },
            MetadataRecord::PartitionChanged {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
                eligible_leader_replicas,
            } => {
                let Some(state) = self.partition_mut(*topic_id, *partition) else {
                    tracing::error!(%topic_id, partition, "metadata record changes an unknown partition");
                    return;
                };
                if let Some(leader) = leader {
                    state.leader = *leader;
                    state.leader_epoch += 1;
                }
                if let Some(isr) = isr {
                    state.isr = isr.clone();
                }
                if let Some(replicas) = replicas {
                    state.replicas = replicas.clone();
                }
                if let Some(eligible) = eligible_leader_replicas {
                    state.eligible_leader_replicas = eligible.clone();
                }
                state.partition_epoch += 1;
            }
            MetadataRecord::ProducerIdsAllocated { next, .. } => {
                self.next_producer_id = self.next_producer_id.max(*next);
            }
            MetadataRecord::BrokerConfigsReplaced { node_id, configs } => match node_id {
                Some(node_id) => {
                    self.node_broker_configs.insert(*node_id, configs.clone());
                }
                None => self.default_broker_configs = configs.clone(),
            },
        }
    }

    /// The image as a snapshot: JSON, with every field that folding the
    /// records produced.
    pub fn to_snapshot(&self) -> String {
        serde_json::to_string(self).expect("metadata images always serialize")
    }

    /// Reads a snapshot written by [`MetadataImage::to_snapshot`].
    pub fn from_snapshot(json: &str) -> Option<MetadataImage> {
        serde_json::from_str(json).ok()
    }

    fn change_broker(
        &mut self,
        node_id: i32,
        broker_epoch: i64,
        change: impl FnOnce(&mut BrokerRegistration),
    ) {
        match self.brokers.get_mut(&node_id) {
            Some(broker) if broker.broker_epoch == broker_epoch => change(broker),
            _ => tracing::error!(
                node_id,
                broker_epoch,
                "metadata record changes an unknown broker epoch"
            ),
        }
    }

    pub fn topic_by_id(&self, topic_id: Uuid) -> Option<&TopicMetadata> {
        self.topics.get(self.topic_names.get(&topic_id)?)
    }

    pub fn partition(&self, topic_id: Uuid, index: i32) -> Option<&PartitionMetadata> {
        let topic = self.topic_by_id(topic_id)?;
        topic.partitions.get(usize::try_from(index).ok()?)
    }

    fn partition_mut(&mut self, topic_id: Uuid, index: i32) -> Option<&mut PartitionMetadata> {
        let topic = self.topics.get_mut(self.topic_names.get(&topic_id)?)?;
        topic.partitions.get_mut(usize::try_from(index).ok()?)
    }

    /// The broker with this id, if it is registered.
    pub fn broker(&self, node_id: i32) -> Option<&BrokerRegistration> {
        self.brokers.get(&node_id)
    }

    /// Registered, unfenced and not shutting down: may lead and follow.
    pub fn is_usable(&self, node_id: i32) -> bool {
        self.broker(node_id)
            .is_some_and(BrokerRegistration::is_usable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::NO_LEADER;

    fn partition() -> PartitionMetadata {
        PartitionMetadata {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            eligible_leader_replicas: vec![],
        }
    }

    #[test]
    fn records_fold_into_topics() {
        let mut state = MetadataImage::default();
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
        let copy = MetadataImage::from_snapshot(&state.to_snapshot()).unwrap();
        assert_eq!(copy, state);
        assert_eq!(
            copy.topic_by_id(id).map(|t| t.name.as_str()),
            Some("orders")
        );
        // Read back inside something else (a Raft entry carrying a whole
        // image), the index is rebuilt too.
        let wrapped: Vec<MetadataImage> =
            serde_json::from_str(&serde_json::to_string(&vec![state.clone()]).unwrap()).unwrap();
        assert_eq!(
            wrapped[0].topic_by_id(id).map(|t| t.name.as_str()),
            Some("orders")
        );
        state.apply(&MetadataRecord::TopicDeleted {
            name: "orders".into(),
        });
        assert!(state.topics.is_empty());
        assert!(state.topic_by_id(id).is_none());
        assert_eq!(state.applied, 4);
    }

    #[test]
    fn a_new_leader_bumps_the_leader_epoch_and_any_change_the_partition_epoch() {
        let mut state = MetadataImage::default();
        let id = Uuid::new_v4();
        state.apply(&MetadataRecord::TopicCreated {
            name: "orders".into(),
            topic_id: id,
            partitions: vec![partition()],
            configs: BTreeMap::new(),
        });
        let change = |leader, isr| MetadataRecord::PartitionChanged {
            topic_id: id,
            partition: 0,
            leader,
            isr,
            replicas: None,
            eligible_leader_replicas: None,
        };
        state.apply(&change(None, Some(vec![1])));
        assert_eq!(
            (
                state.partition(id, 0).unwrap().leader_epoch,
                state.partition(id, 0).unwrap().partition_epoch
            ),
            (0, 1)
        );
        state.apply(&change(Some(NO_LEADER), None));
        let now = state.partition(id, 0).unwrap();
        assert_eq!(
            (now.leader, now.leader_epoch, now.partition_epoch),
            (NO_LEADER, 1, 2)
        );
        assert!(state.partition(id, 1).is_none() && state.partition(id, -1).is_none());
    }

    #[test]
    fn brokers_register_fenced_and_change_only_under_their_epoch() {
        let mut state = MetadataImage::default();
        let register = |epoch| MetadataRecord::BrokerRegistered {
            node_id: 2,
            incarnation_id: Uuid::new_v4(),
            broker_epoch: epoch,
            endpoints: vec![],
            rack: None,
            directory_id: Uuid::nil(),
        };
        state.apply(&register(5));
        assert!(state.broker(2).unwrap().fenced && !state.is_usable(2));
        assert_eq!(state.broker(2).unwrap().registered_at, 0);
        state.apply(&MetadataRecord::BrokerUnfenced {
            node_id: 2,
            broker_epoch: 5,
        });
        assert!(state.is_usable(2));
        // A restart registers again; the old epoch no longer changes anything.
        state.apply(&register(9));
        state.apply(&MetadataRecord::BrokerUnfenced {
            node_id: 2,
            broker_epoch: 5,
        });
        assert!(!state.is_usable(2));
        assert_eq!(state.last_broker_epoch, 9);
        state.apply(&MetadataRecord::BrokerUnfenced {
            node_id: 2,
            broker_epoch: 9,
        });
        state.apply(&MetadataRecord::BrokerShuttingDown {
            node_id: 2,
            broker_epoch: 9,
        });
        assert!(!state.is_usable(2) && !state.broker(2).unwrap().fenced);
        state.apply(&MetadataRecord::BrokerUnregistered {
            node_id: 2,
            broker_epoch: 9,
        });
        assert!(state.broker(2).is_none());
    }
}
