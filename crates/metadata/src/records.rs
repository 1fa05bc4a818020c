//! The records of the metadata log: every change to the cluster's metadata
//! is one of these (compare Kafka's `metadata/src/main/resources/common/
//! metadata/*.json`).
//!
//! Records are stored as tagged JSON. A field added later carries
//! `#[serde(default)]`, so a log written by an older Strom still reads: a
//! single-node data directory from before the cluster existed has no broker
//! records and partitions without a partition epoch, and both fold into a
//! valid image (see [`crate::MetadataImage`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Kafka's "no leader" (`-1` on the wire).
pub const NO_LEADER: i32 = -1;

/// One change to cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The cluster came into being (the first record of every metadata log).
    ClusterCreated {
        cluster_id: String,
    },
    /// A broker process registered (Kafka's RegisterBrokerRecord). It is
    /// registered fenced: it may lead nothing and join no ISR until the
    /// controller unfences it. A registration replaces the node's earlier
    /// one, whose ISR memberships the controller has already withdrawn.
    BrokerRegistered {
        node_id: i32,
        /// New at every process start, so a restart is told from a retry.
        incarnation_id: Uuid,
        /// Grows with every registration in the cluster; requests from a
        /// broker carry it, so a restarted broker's stale claims are refused.
        broker_epoch: i64,
        endpoints: Vec<Endpoint>,
        #[serde(default)]
        rack: Option<String>,
        /// The data directory's own id: a registration with another one
        /// has lost what the broker stored (a wiped or replaced disk).
        #[serde(default)]
        directory_id: Uuid,
    },
    /// The broker missed its session timeout (or asked to be fenced).
    BrokerFenced {
        node_id: i32,
        broker_epoch: i64,
    },
    /// The broker caught up with the metadata and may lead and follow.
    BrokerUnfenced {
        node_id: i32,
        broker_epoch: i64,
    },
    /// The broker is shutting down in a controlled way: it is moved out of
    /// every ISR and leadership while it still serves.
    BrokerShuttingDown {
        node_id: i32,
        broker_epoch: i64,
    },
    /// The broker left the cluster for good.
    BrokerUnregistered {
        node_id: i32,
        broker_epoch: i64,
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
    /// A change to one partition (Kafka's PartitionChangeRecord): the fields
    /// that are set replace the current ones. A new leader (even "none")
    /// bumps the leader epoch; every change bumps the partition epoch.
    PartitionChanged {
        topic_id: Uuid,
        partition: i32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isr: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        eligible_leader_replicas: Option<Vec<i32>>,
    },
    /// Producer ids below `next` are handed out (idempotent producers), the
    /// block ending at `next` to broker `node_id` (absent in logs written
    /// before the cluster existed, where the only broker took them).
    ProducerIdsAllocated {
        next: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        node_id: Option<i32>,
    },
    /// Replaces the dynamic broker configs of one broker (`node_id`), or the
    /// cluster-wide defaults (`None`), as a whole.
    BrokerConfigsReplaced {
        node_id: Option<i32>,
        configs: BTreeMap<String, String>,
    },
}

/// Where a broker listens for clients (one entry per listener).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener's name, Kafka's `PLAINTEXT` when it has none.
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMetadata {
    /// The brokers holding a copy, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The in-sync replicas: the brokers that have every committed record.
    /// Empty only when its last member was fenced or shut down; that member
    /// is then the one eligible leader.
    pub isr: Vec<i32>,
    /// While the ISR is empty: the members it had last, the only brokers
    /// known to hold every committed record, so the only ones a clean
    /// election may pick (Kafka's eligible leader replicas, KIP-966, here
    /// kept for exactly that case). Empty whenever the ISR is not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eligible_leader_replicas: Vec<i32>,
    /// The leader's node id, or [`NO_LEADER`].
    pub leader: i32,
    /// Bumped at every change of leader.
    pub leader_epoch: i32,
    /// Bumped at every change of the partition: the version a leader's ISR
    /// change must name (AlterPartition's compare-and-swap).
    #[serde(default)]
    pub partition_epoch: i32,
}

impl PartitionMetadata {
    pub fn has_leader(&self) -> bool {
        self.leader != NO_LEADER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_before_the_cluster_still_read() {
        // A line of a single-node metadata log from before broker records.
        let old = r#"{"type":"topic_created","name":"orders","topic_id":"5f8d1c8e-8f5b-4a57-9bd3-1f6c2c7b2a10","partitions":[{"replicas":[1],"isr":[1],"leader":1,"leader_epoch":0}],"configs":{}}"#;
        let record: MetadataRecord = serde_json::from_str(old).unwrap();
        let MetadataRecord::TopicCreated { partitions, .. } = record else {
            panic!("{record:?}")
        };
        assert_eq!(partitions[0].partition_epoch, 0);
        let ids: MetadataRecord =
            serde_json::from_str(r#"{"type":"producer_ids_allocated","next":2000}"#).unwrap();
        assert_eq!(
            ids,
            MetadataRecord::ProducerIdsAllocated {
                next: 2000,
                node_id: None
            }
        );
    }

    #[test]
    fn a_partition_change_writes_only_what_changes() {
        let change = MetadataRecord::PartitionChanged {
            topic_id: Uuid::nil(),
            partition: 3,
            leader: None,
            isr: Some(vec![1, 2]),
            replicas: None,
            eligible_leader_replicas: None,
        };
        let json = serde_json::to_string(&change).unwrap();
        assert!(!json.contains("leader"), "{json}");
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&json).unwrap(),
            change
        );
    }
}
