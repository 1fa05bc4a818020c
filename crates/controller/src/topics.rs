//! Topic changes: creation (names, counts, placement), deletion, more
//! partitions, config overrides. Config values are checked by the caller
//! against the config definitions before they reach the controller.

use std::collections::BTreeMap;

use strom_metadata::{MetadataRecord, PartitionMetadata, TopicMetadata, NO_LEADER};
use uuid::Uuid;

use crate::controller::{Controller, Decision};
use crate::error::{ControllerError, ErrorKind};
use crate::placement;

/// Most partitions one topic may have.
pub const MAX_PARTITIONS: i32 = 100_000;

/// A topic to create (CreateTopics). `None` takes the controller's default.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub partitions: Option<i32>,
    pub replication_factor: Option<i16>,
    /// Replicas of each partition, chosen by the client; empty to place them.
    pub assignments: Vec<Vec<i32>>,
    pub configs: BTreeMap<String, String>,
}

/// Kafka's rules for topic names: 1 to 249 characters of `[a-zA-Z0-9._-]`,
/// and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ControllerError> {
    let invalid = |why: String| Err(ControllerError::new(ErrorKind::InvalidTopic, why));
    if name.is_empty() {
        return invalid("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return invalid(format!("topic name cannot be '{name}'"));
    }
    if name.len() > 249 {
        return invalid(format!(
            "topic name is {} characters long; the limit is 249",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "topic name '{name}' contains '{bad}'; use only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

fn check_partition_count(count: i32) -> Result<(), ControllerError> {
    if count < 1 {
        return Err(ControllerError::new(
            ErrorKind::InvalidPartitions,
            format!("a topic needs at least 1 partition, not {count}"),
        ));
    }
    if count > MAX_PARTITIONS {
        return Err(ControllerError::new(
            ErrorKind::InvalidPartitions,
            format!("{count} partitions is more than the {MAX_PARTITIONS} one topic may have"),
        ));
    }
    Ok(())
}

fn unknown_topic(name: &str) -> ControllerError {
    ControllerError::new(
        ErrorKind::UnknownTopicOrPartition,
        format!("topic '{name}' does not exist"),
    )
}

impl Controller {
    /// Creates a topic; with `validate_only`, checks it and writes nothing.
    pub fn create_topic(
        &mut self,
        topic: NewTopic,
        validate_only: bool,
    ) -> Result<Decision<TopicMetadata>, ControllerError> {
        validate_topic_name(&topic.name)?;
        self.check_name_is_free(&topic.name)?;
        let replicas = self.replicas_for(
            &topic.assignments,
            topic.partitions,
            topic.replication_factor,
            0,
        )?;
        let partitions = self.initial_states(replicas);
        let metadata = TopicMetadata {
            name: topic.name.clone(),
            topic_id: Uuid::new_v4(),
            partitions,
            configs: topic.configs,
        };
        if validate_only {
            return Ok(Decision {
                reply: metadata,
                records: Vec::new(),
            });
        }
        let mut records = Vec::new();
        self.emit(
            &mut records,
            MetadataRecord::TopicCreated {
                name: metadata.name.clone(),
                topic_id: metadata.topic_id,
                partitions: metadata.partitions.clone(),
                configs: metadata.configs.clone(),
            },
        );
        Ok(Decision {
            reply: metadata,
            records,
        })
    }

    fn check_name_is_free(&self, name: &str) -> Result<(), ControllerError> {
        if self.image.topics.contains_key(name) {
            return Err(ControllerError::new(
                ErrorKind::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        // Kafka refuses names that collide once '.' and '_' are treated alike
        // (they map to the same metric names).
        let normalized = name.replace('.', "_");
        if let Some(existing) = self
            .image
            .topics
            .keys()
            .find(|existing| existing.replace('.', "_") == normalized)
        {
            return Err(ControllerError::new(
                ErrorKind::InvalidTopic,
                format!("topic '{name}' collides with existing topic '{existing}' ('.' and '_' are treated alike)"),
            ));
        }
        Ok(())
    }

    /// The replica lists of new partitions: the client's assignments
    /// (checked), or placed over the usable brokers. `existing` partitions
    /// already there set the replication factor when none is given.
    fn replicas_for(
        &self,
        assignments: &[Vec<i32>],
        count: Option<i32>,
        replication_factor: Option<i16>,
        existing: usize,
    ) -> Result<Vec<Vec<i32>>, ControllerError> {
        if !assignments.is_empty() {
            if replication_factor.is_some_and(|rf| rf != -1) {
                return Err(ControllerError::new(
                    ErrorKind::InvalidRequest,
                    "give either a replication factor or replica assignments, not both",
                ));
            }
            check_partition_count((existing + assignments.len()) as i32)?;
            let width = assignments[0].len();
            for (index, replicas) in assignments.iter().enumerate() {
                self.check_assignment(existing + index, replicas, width)?;
            }
            return Ok(assignments.to_vec());
        }
        let count = count
            .filter(|&c| c != -1)
            .unwrap_or(self.config.default_partitions);
        check_partition_count(count)?;
        let replication_factor = replication_factor
            .filter(|&rf| rf != -1)
            .unwrap_or(self.config.default_replication_factor);
        if replication_factor < 1 {
            return Err(ControllerError::new(
                ErrorKind::InvalidReplicationFactor,
                format!("replication factor must be at least 1, not {replication_factor}"),
            ));
        }
        placement::place(&self.image, count as usize, replication_factor as usize)
    }

    fn check_assignment(
        &self,
        index: usize,
        replicas: &[i32],
        width: usize,
    ) -> Result<(), ControllerError> {
        let invalid = |why: String| {
            Err(ControllerError::new(
                ErrorKind::InvalidReplicaAssignment,
                format!("partition {index}: {why}"),
            ))
        };
        if replicas.is_empty() {
            return invalid("no replicas given".into());
        }
        if replicas.len() != width {
            return invalid(format!(
                "{} replicas where the other partitions have {width}",
                replicas.len()
            ));
        }
        let mut seen = replicas.to_vec();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != replicas.len() {
            return invalid("a broker is named twice".into());
        }
        if let Some(unknown) = replicas.iter().find(|r| self.image.broker(**r).is_none()) {
            return invalid(format!("broker {unknown} is not registered"));
        }
        if let Some(down) = replicas.iter().find(|r| !self.image.is_usable(**r)) {
            return invalid(format!("broker {down} is fenced or shutting down"));
        }
        Ok(())
    }

    /// New partitions' first states: the usable replicas in sync, the first
    /// of them leading, epochs at zero.
    fn initial_states(&self, replicas: Vec<Vec<i32>>) -> Vec<PartitionMetadata> {
        replicas
            .into_iter()
            .map(|replicas| {
                let isr: Vec<i32> = replicas
                    .iter()
                    .copied()
                    .filter(|r| self.image.is_usable(*r))
                    .collect();
                PartitionMetadata {
                    leader: isr.first().copied().unwrap_or(NO_LEADER),
                    isr,
                    replicas,
                    leader_epoch: 0,
                    partition_epoch: 0,
                    eligible_leader_replicas: Vec::new(),
                }
            })
            .collect()
    }

    pub fn delete_topic(&mut self, name: &str) -> Result<Decision<TopicMetadata>, ControllerError> {
        let Some(topic) = self.image.topics.get(name).cloned() else {
            return Err(unknown_topic(name));
        };
        let mut records = Vec::new();
        self.emit(
            &mut records,
            MetadataRecord::TopicDeleted {
                name: name.to_string(),
            },
        );
        Ok(Decision {
            reply: topic,
            records,
        })
    }

    /// Grows a topic to `total` partitions (CreatePartitions).
    pub fn add_partitions(
        &mut self,
        name: &str,
        total: i32,
        assignments: &[Vec<i32>],
        validate_only: bool,
    ) -> Result<Decision<()>, ControllerError> {
        let Some(topic) = self.image.topics.get(name) else {
            return Err(unknown_topic(name));
        };
        let current = topic.partitions.len() as i32;
        if total <= current {
            return Err(ControllerError::new(
                ErrorKind::InvalidPartitions,
                format!("topic '{name}' has {current} partitions; the new count must be higher, not {total}"),
            ));
        }
        check_partition_count(total)?;
        if !assignments.is_empty() && assignments.len() as i32 != total - current {
            return Err(ControllerError::new(
                ErrorKind::InvalidReplicaAssignment,
                format!(
                    "{} assignments given for {} new partitions",
                    assignments.len(),
                    total - current
                ),
            ));
        }
        let replication_factor = topic.partitions.first().map_or(1, |p| p.replicas.len()) as i16;
        let replicas = self.replicas_for(
            assignments,
            Some(total - current),
            assignments.is_empty().then_some(replication_factor),
            current as usize,
        )?;
        let partitions = self.initial_states(replicas);
        if validate_only {
            return Ok(Decision {
                reply: (),
                records: Vec::new(),
            });
        }
        let mut records = Vec::new();
        self.emit(
            &mut records,
            MetadataRecord::PartitionsAdded {
                name: name.to_string(),
                partitions,
            },
        );
        Ok(Decision { reply: (), records })
    }

    /// Replaces a topic's config overrides (checked by the caller).
    pub fn replace_topic_configs(
        &mut self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Decision<()>, ControllerError> {
        if !self.image.topics.contains_key(name) {
            return Err(unknown_topic(name));
        }
        let mut records = Vec::new();
        if !validate_only {
            self.emit(
                &mut records,
                MetadataRecord::TopicConfigsReplaced {
                    name: name.to_string(),
                    configs,
                },
            );
        }
        Ok(Decision { reply: (), records })
    }

    /// Replaces the dynamic configs of broker `node_id`, or the cluster-wide
    /// defaults (`None`) (checked by the caller).
    pub fn replace_broker_configs(
        &mut self,
        node_id: Option<i32>,
        configs: BTreeMap<String, String>,
    ) -> Decision<()> {
        let mut records = Vec::new();
        self.emit(
            &mut records,
            MetadataRecord::BrokerConfigsReplaced { node_id, configs },
        );
        Decision { reply: (), records }
    }
}
