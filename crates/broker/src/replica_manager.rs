//! Applies committed metadata to this node's storage: opens the partitions
//! assigned to it, removes those of deleted topics, pushes config changes to
//! open partitions and tells each partition its leader epoch.
//!
//! It works by reconciling: every committed batch comes with the image right
//! after it, and every topic the batch touches is made to match that image.
//! So applying is idempotent (a topic deleted and created again under the
//! same name before its first creation was applied is simply opened once,
//! as the new topic). Batches are applied one at a time in commit order
//! (opening and deleting a partition work on the same directory).
//!
//! The registry keeps a topic's partitions by index, with a gap where this
//! node is not a replica. A partition here is told its committed state
//! (leader epoch, replicas, ISR) and whether it leads; the replica fetchers
//! ([`crate::replica_fetcher`]) then make the followers fetch from their
//! leaders.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use strom_log::{FileCache, LogError, Recovery};
use strom_metadata::{MetadataImage, MetadataRecord, TopicMetadata};

use crate::configs::BrokerOverrides;
use crate::hw_checkpoint::Checkpoint;
use crate::partition::{Partition, PartitionIdentity, PartitionRegistry, TopicPartitions};

pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    files: FileCache,
    /// High watermarks for replicated partitions as they open.
    checkpoint: Arc<Checkpoint>,
    reconciling: Mutex<()>,
    /// Set once [`ReplicaManager::open_all`] has recovered the partitions;
    /// records committed before (this broker's registration) are in the
    /// image it opens them from.
    opened: AtomicBool,
}

/// A partition log that could not be opened or removed.
#[derive(Debug)]
pub struct ApplyError {
    pub topic: String,
    pub source: LogError,
}

/// Each named topic as `image` has it (`None`: gone, to be removed here).
fn as_in(names: BTreeSet<String>, image: &MetadataImage) -> Vec<(String, Option<TopicMetadata>)> {
    names
        .into_iter()
        .map(|name| {
            let topic = image.topics.get(&name).cloned();
            (name, topic)
        })
        .collect()
}

impl ReplicaManager {
    pub fn new(
        node_id: i32,
        data_dir: PathBuf,
        files: FileCache,
        checkpoint: Arc<Checkpoint>,
    ) -> ReplicaManager {
        ReplicaManager {
            node_id,
            data_dir,
            files,
            checkpoint,
            reconciling: Mutex::new(()),
            opened: AtomicBool::new(false),
        }
    }

    /// Makes the partitions of every topic `records` touched match `image`,
    /// the committed image right after them. Batches come in commit order.
    pub fn apply(
        &self,
        records: &[MetadataRecord],
        image: &MetadataImage,
        configs: &BrokerOverrides,
        registry: &PartitionRegistry,
    ) -> Result<(), ApplyError> {
        let _turn = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
        if !self.opened.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut touched = BTreeSet::new();
        for record in records {
            match record {
                MetadataRecord::TopicCreated { name, .. }
                | MetadataRecord::TopicDeleted { name }
                | MetadataRecord::TopicConfigsReplaced { name, .. }
                | MetadataRecord::PartitionsAdded { name, .. } => {
                    touched.insert(name.clone());
                }
                MetadataRecord::PartitionChanged { topic_id, .. } => {
                    if let Some(topic) = image.topic_by_id(*topic_id) {
                        touched.insert(topic.name.clone());
                    }
                }
                MetadataRecord::BrokerConfigsReplaced { .. } => {
                    touched.extend(image.topics.keys().cloned());
                }
                _ => {}
            }
        }
        self.reconcile(as_in(touched, image), configs, registry, Recovery::Clean)
    }

    /// Makes every partition match `image` (after a snapshot was
    /// installed, when the records in between are not known): topics the
    /// image lacks are removed.
    pub fn apply_all(
        &self,
        image: &MetadataImage,
        configs: &BrokerOverrides,
        registry: &PartitionRegistry,
    ) -> Result<(), ApplyError> {
        let _turn = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
        if !self.opened.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut names: BTreeSet<String> = registry.topic_names().into_iter().collect();
        names.extend(image.topics.keys().cloned());
        self.reconcile(as_in(names, image), configs, registry, Recovery::Clean)
    }

    /// At startup: opens every partition of this node in `image`,
    /// recovering as told. Later batches come through
    /// [`ReplicaManager::apply`].
    pub fn open_all(
        &self,
        image: &MetadataImage,
        configs: &BrokerOverrides,
        registry: &PartitionRegistry,
        recovery: Recovery,
    ) -> Result<(), ApplyError> {
        let _turn = self.reconciling.lock().unwrap_or_else(|p| p.into_inner());
        let topics: Vec<(String, Option<TopicMetadata>)> = image
            .topics
            .iter()
            .map(|(name, topic)| (name.clone(), Some(topic.clone())))
            .collect();
        self.reconcile(topics, configs, registry, recovery)?;
        self.checkpoint.forget_unopened();
        self.opened.store(true, Ordering::Release);
        Ok(())
    }

    /// Under the reconciliation lock: makes each named topic's partitions
    /// match its committed metadata (`None`: deleted). This node opens the
    /// partitions it is a replica of and closes and removes those it no
    /// longer is.
    fn reconcile(
        &self,
        topics: Vec<(String, Option<TopicMetadata>)>,
        configs: &BrokerOverrides,
        registry: &PartitionRegistry,
        recovery: Recovery,
    ) -> Result<(), ApplyError> {
        for (name, topic) in topics {
            let error = |source| ApplyError {
                topic: name.clone(),
                source,
            };
            let local = registry.topic(&name);
            let stale = local
                .as_ref()
                .and_then(|p| p.iter().next())
                .is_some_and(|p| topic.as_ref().is_none_or(|t| t.topic_id != p.topic_id));
            let mut slots: Vec<Option<Arc<Partition>>> = match local {
                Some(_) if stale => {
                    remove(&name, registry);
                    Vec::new()
                }
                Some(local) => local.slots().to_vec(),
                None => Vec::new(),
            };
            let Some(topic) = topic else {
                if !slots.is_empty() {
                    remove(&name, registry);
                }
                continue;
            };
            let settings = configs.topic_settings(&topic.configs);
            let lag_ms = configs.get_i64("replica.lag.time.max.ms");
            let mut changed = stale || slots.len() != topic.partitions.len();
            slots.resize(topic.partitions.len(), None);
            for (index, (slot, state)) in slots.iter_mut().zip(&topic.partitions).enumerate() {
                let assigned = state.replicas.contains(&self.node_id);
                match slot {
                    Some(partition) if !assigned => {
                        // Moved to other brokers.
                        delete_dir(partition);
                        *slot = None;
                        changed = true;
                    }
                    Some(partition) => partition.set_settings(settings),
                    None if assigned => {
                        *slot = Some(
                            self.open(&topic, index, configs, recovery)
                                .map(Arc::new)
                                .map_err(error)?,
                        );
                        changed = true;
                    }
                    None => {}
                }
                if let Some(partition) = slot {
                    let committed = strom_replica::PartitionState {
                        leader_epoch: state.leader_epoch,
                        partition_epoch: state.partition_epoch,
                        replicas: state.replicas.clone(),
                        isr: state.isr.clone(),
                    };
                    partition.apply_state(self.node_id, state.leader, &committed, lag_ms);
                }
            }
            if changed {
                registry.insert_topic(&name, TopicPartitions::new(slots));
            }
        }
        Ok(())
    }

    /// Opens partition `index` of the topic.
    fn open(
        &self,
        topic: &TopicMetadata,
        index: usize,
        configs: &BrokerOverrides,
        recovery: Recovery,
    ) -> Result<Partition, LogError> {
        let replicated = topic.partitions[index].replicas.len() > 1;
        let identity = PartitionIdentity {
            topic: topic.name.clone(),
            topic_id: topic.topic_id,
            index: index as i32,
            leader_epoch: topic.partitions[index].leader_epoch,
            replicated,
            checkpointed_high_watermark: replicated
                .then(|| self.checkpoint.take(&topic.name, index as i32))
                .flatten(),
        };
        Partition::open(
            &self.data_dir,
            identity,
            configs.topic_settings(&topic.configs),
            self.files.clone(),
            recovery,
        )
    }
}

/// Removes a deleted topic's partitions: readers holding one keep their
/// open files; the directories go now.
fn remove(name: &str, registry: &PartitionRegistry) {
    if let Some(partitions) = registry.remove_topic(name) {
        partitions
            .iter()
            .for_each(|partition| delete_dir(partition));
    }
}

fn delete_dir(partition: &Partition) {
    let mut log = partition.log();
    if let Err(error) = log.delete() {
        tracing::warn!(dir = %log.dir().display(), %error, "could not remove partition directory");
    }
}
