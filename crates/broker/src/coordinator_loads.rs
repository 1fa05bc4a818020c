//! Which partitions of a coordinator's internal topic (`__consumer_offsets`,
//! `__transaction_state`) this node has loaded, and in which leader epoch:
//! the bookkeeping the group and the transaction coordinators share as they
//! follow their partitions' leadership. A coordinator serves a key (a group
//! or transactional id) only while it leads the key's partition and has
//! loaded it in the current leader epoch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kafka_protocol::error::ResponseError;

use strom_coordinator::records::partition_for;

use crate::internal_topics::InternalLog;
use crate::partition::{Partition, TopicPartitions};

#[derive(Default)]
pub struct Loads {
    /// Partition index -> the leader epoch it was loaded in.
    loaded: Mutex<HashMap<i32, i32>>,
    /// One load or unload pass at a time.
    pub turn: tokio::sync::Mutex<()>,
}

/// What a pass must do: unload these partitions, then load those.
pub struct Plan {
    pub unload: Vec<i32>,
    pub load: Vec<Arc<Partition>>,
}

impl Loads {
    fn loaded(&self) -> MutexGuard<'_, HashMap<i32, i32>> {
        self.loaded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the coordinator may serve a key of partition `index` now:
    /// NOT_COORDINATOR unless this node leads it, COORDINATOR_LOAD_IN_PROGRESS
    /// until it is loaded in the current leader epoch.
    pub fn owns(&self, partitions: &TopicPartitions, index: i32) -> Result<(), ResponseError> {
        let partition = partitions
            .get(index)
            .filter(|partition| partition.is_leader())
            .ok_or(ResponseError::NotCoordinator)?;
        match self.loaded().get(&index) {
            Some(epoch) if *epoch == partition.leader_epoch() => Ok(()),
            _ => Err(ResponseError::CoordinatorLoadInProgress),
        }
    }

    /// [`Loads::owns`] for a key (a group or transactional id) of internal
    /// topic `topic`. While the topic is in the metadata but this node has
    /// not opened its partitions (it was just created), the key's leader is
    /// told COORDINATOR_LOAD_IN_PROGRESS and other nodes NOT_COORDINATOR;
    /// before the topic exists, COORDINATOR_NOT_AVAILABLE.
    pub fn owns_key(&self, log: &InternalLog, topic: &str, key: &str) -> Result<(), ResponseError> {
        if let Some(partitions) = log.partitions(topic) {
            return self.owns(&partitions, partition_for(key, partitions.count() as i32));
        }
        let count = log
            .metadata()
            .topic(topic)
            .map_or(0, |topic| topic.partitions.len() as i32);
        if count == 0 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        match log.metadata().leader_of(topic, partition_for(key, count)) {
            Some(leader) if leader.node_id == log.node_id() => {
                Err(ResponseError::CoordinatorLoadInProgress)
            }
            _ => Err(ResponseError::NotCoordinator),
        }
    }

    /// The leader epoch partition `index` is led and loaded in, if it is:
    /// the coordinator epoch of its keys, which their markers carry.
    pub fn epoch(&self, partitions: &TopicPartitions, index: i32) -> Option<i32> {
        self.owns(partitions, index).ok()?;
        self.loaded().get(&index).copied()
    }

    /// The partitions no longer led here, or led in a newer epoch than they
    /// were loaded in, are forgotten and to be unloaded; those led here and
    /// not loaded in the current epoch are to be loaded (after an unload,
    /// which drops whatever a request raced into memory for their keys).
    pub fn plan(&self, partitions: &TopicPartitions) -> Plan {
        let mut loaded = self.loaded();
        let mut plan = Plan {
            unload: Vec::new(),
            load: Vec::new(),
        };
        for index in 0..partitions.count() as i32 {
            let leading = partitions.get(index).filter(|p| p.is_leader());
            match (leading, loaded.get(&index)) {
                (Some(partition), Some(epoch)) if *epoch == partition.leader_epoch() => {}
                (Some(partition), _) => {
                    loaded.remove(&index);
                    plan.unload.push(index);
                    plan.load.push(partition.clone());
                }
                (None, Some(_)) => {
                    loaded.remove(&index);
                    plan.unload.push(index);
                }
                (None, None) => {}
            }
        }
        plan
    }

    /// Replays each of `partitions` of `topic` into its coordinator with
    /// `load` (on a blocking thread), and records it loaded in the leader
    /// epoch it was read in, if this node still leads it in that epoch.
    pub async fn load(
        &self,
        topic: &str,
        partitions: Vec<Arc<Partition>>,
        load: impl Fn(&Partition) + Send + Clone + 'static,
    ) {
        for partition in partitions {
            let epoch = partition.leader_epoch();
            let load = load.clone();
            let replayed = partition.clone();
            let loaded = tokio::task::spawn_blocking(move || load(&replayed)).await;
            if loaded.is_err() {
                tracing::error!(
                    topic,
                    partition = partition.index,
                    "loading a coordinator's partition failed"
                );
                continue;
            }
            if partition.is_leader() && partition.leader_epoch() == epoch {
                self.loaded().insert(partition.index, epoch);
            }
        }
    }
}
