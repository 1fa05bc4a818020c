//! Leaders and in-sync replicas (Kafka's ReplicationControlManager and
//! PartitionChangeBuilder): every change to a partition's leader or ISR is
//! made here, by one rule.
//!
//! * Only a usable broker (registered, unfenced, not shutting down) that is
//!   in the ISR may lead. If none is, the partition has no leader, unless
//!   unclean election is on (`unclean.leader.election.enable`), which takes
//!   any usable replica and makes it the whole ISR, accepting data loss.
//! * When the ISR's last member goes, the ISR becomes empty and that member
//!   its one eligible leader replica: the only broker known to hold every
//!   committed record, so the only one a clean election may pick when it
//!   comes back (Kafka 3 kept it in the ISR instead; Kafka 4's KIP-966 names
//!   it the same way). So no fenced broker is ever in an ISR.
//! * A leader's ISR change (AlterPartition) names the partition epoch it was
//!   based on; any other is refused, so a leader that was replaced while it
//!   was paused cannot shrink the ISR to itself and acknowledge alone.
//!   Members it adds must be usable and in their current broker epoch.

use strom_metadata::{MetadataImage, MetadataRecord, PartitionMetadata, NO_LEADER};
use uuid::Uuid;

use crate::controller::{Controller, Decision};
use crate::error::{ControllerError, ErrorKind};

/// A member of a proposed ISR: its node id and the broker epoch the leader
/// saw it fetch under (`-1` when the leader does not know it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IsrMember {
    pub node_id: i32,
    pub broker_epoch: i64,
}

/// A leader's proposal to change a partition's ISR (Kafka's AlterPartition).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct AlterPartition {
    pub broker_id: i32,
    pub broker_epoch: i64,
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<IsrMember>,
}

/// ElectLeaders' election types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ElectionType {
    /// Move leadership to the first replica, if it is in sync.
    Preferred,
    /// Elect a leader for a partition that has none, out of sync if need be.
    Unclean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Election {
    /// Keep the leader if it may still lead, else the first that may.
    KeepIfAcceptable,
    /// The preferred leader if it may lead, else as `KeepIfAcceptable`.
    Preferred,
}

/// The record that moves a partition to `target_isr`, electing a leader if
/// the current one may no longer lead; `None` when nothing changes. An empty
/// target keeps the members the ISR had as its eligible leaders, less
/// `forget` (a broker whose data is gone).
fn partition_change(
    image: &MetadataImage,
    topic_id: Uuid,
    index: i32,
    target_isr: Vec<i32>,
    forget: Option<i32>,
    election: Election,
    unclean: bool,
) -> Option<MetadataRecord> {
    let current = image.partition(topic_id, index)?;
    let mut isr = target_isr;
    let mut eligible = if !isr.is_empty() {
        Vec::new()
    } else if !current.isr.is_empty() {
        current.isr.clone()
    } else {
        current.eligible_leader_replicas.clone()
    };
    eligible.retain(|&member| Some(member) != forget);
    let in_sync = |node_id: i32, isr: &[i32]| image.is_usable(node_id) && isr.contains(&node_id);
    let preferred = current.replicas.first().copied().unwrap_or(NO_LEADER);
    let move_to_preferred =
        election == Election::Preferred && preferred != current.leader && in_sync(preferred, &isr);
    let first_replica =
        |accept: &dyn Fn(i32) -> bool| current.replicas.iter().copied().find(|&r| accept(r));
    let leader = if in_sync(current.leader, &isr) && !move_to_preferred {
        current.leader
    } else if let Some(leader) = first_replica(&|r| in_sync(r, &isr)) {
        leader
    } else if let Some(leader) = first_replica(&|r| isr.is_empty() && in_sync(r, &eligible))
        .or_else(|| first_replica(&|r| unclean && image.is_usable(r)))
    {
        // Out of the eligible leaders (clean) or, only if none is back, any
        // replica (unclean): it becomes the whole ISR.
        isr = vec![leader];
        eligible.clear();
        leader
    } else {
        NO_LEADER
    };
    assert!(leader == NO_LEADER || isr.contains(&leader));
    assert!(isr.is_empty() || eligible.is_empty());
    let leader_changed = leader != current.leader;
    let isr_changed = isr != current.isr;
    let eligible_changed = eligible != current.eligible_leader_replicas;
    (leader_changed || isr_changed || eligible_changed).then(|| MetadataRecord::PartitionChanged {
        topic_id,
        partition: index,
        leader: leader_changed.then_some(leader),
        isr: isr_changed.then_some(isr),
        replicas: None,
        eligible_leader_replicas: eligible_changed.then_some(eligible),
    })
}

impl Controller {
    /// Whether unclean election is allowed for a topic: its own config,
    /// else the cluster's.
    fn unclean_allowed(&self, topic_id: Uuid) -> bool {
        self.image
            .topic_by_id(topic_id)
            .and_then(|topic| topic.configs.get("unclean.leader.election.enable"))
            .map_or(self.config.unclean_leader_election, |value| value == "true")
    }

    /// Every partition, as (topic id, index, state), for changes over all.
    fn partitions_where(
        &self,
        keep: impl Fn(&PartitionMetadata) -> bool,
    ) -> Vec<(Uuid, i32, PartitionMetadata)> {
        self.image
            .topics
            .values()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, partition)| keep(partition))
                    .map(|(index, partition)| (topic.topic_id, index as i32, partition.clone()))
            })
            .collect()
    }

    fn change(
        &mut self,
        records: &mut Vec<MetadataRecord>,
        topic_id: Uuid,
        index: i32,
        target_isr: Vec<i32>,
        forget: Option<i32>,
        election: Election,
    ) {
        let unclean = self.unclean_allowed(topic_id);
        if let Some(record) = partition_change(
            &self.image,
            topic_id,
            index,
            target_isr,
            forget,
            election,
            unclean,
        ) {
            self.emit(records, record);
        }
    }

    /// Takes a broker that may no longer lead or follow (just fenced,
    /// re-registered or shutting down) out of every ISR and leadership;
    /// with `lost_data`, out of every eligible-leader set too.
    pub(crate) fn withdraw_broker(
        &mut self,
        node_id: i32,
        lost_data: bool,
        records: &mut Vec<MetadataRecord>,
    ) {
        debug_assert!(!self.image.is_usable(node_id));
        let affected = self.partitions_where(|p| {
            p.leader == node_id
                || p.isr.contains(&node_id)
                || (lost_data && p.eligible_leader_replicas.contains(&node_id))
        });
        let forget = lost_data.then_some(node_id);
        for (topic_id, index, partition) in affected {
            let isr: Vec<i32> = partition
                .isr
                .iter()
                .copied()
                .filter(|&member| member != node_id)
                .collect();
            self.change(
                records,
                topic_id,
                index,
                isr,
                forget,
                Election::KeepIfAcceptable,
            );
        }
    }

    /// Elects leaders for the partitions that have none (after a broker was
    /// unfenced).
    pub(crate) fn elect_leaderless(&mut self, records: &mut Vec<MetadataRecord>) {
        for (topic_id, index, partition) in self.partitions_where(|p| !p.has_leader()) {
            self.change(
                records,
                topic_id,
                index,
                partition.isr,
                None,
                Election::KeepIfAcceptable,
            );
        }
    }

    /// Moves leadership back to every preferred leader that is in sync
    /// (`auto.leader.rebalance.enable`).
    pub(crate) fn rebalance_leaders(&mut self, records: &mut Vec<MetadataRecord>) {
        let image = &self.image;
        let imbalanced = self.partitions_where(|p| {
            p.replicas.first().is_some_and(|&preferred| {
                preferred != p.leader && p.isr.contains(&preferred) && image.is_usable(preferred)
            })
        });
        for (topic_id, index, partition) in imbalanced {
            self.change(
                records,
                topic_id,
                index,
                partition.isr,
                None,
                Election::Preferred,
            );
        }
    }

    /// A leader's ISR change, checked as Kafka checks AlterPartition.
    /// Returns the partition as it is after the decision.
    pub fn alter_partition(
        &mut self,
        request: AlterPartition,
    ) -> Result<Decision<PartitionMetadata>, ControllerError> {
        let refuse = |kind, message: String| Err(ControllerError::new(kind, message));
        match self.image.broker(request.broker_id) {
            Some(broker) if broker.broker_epoch == request.broker_epoch => {}
            _ => {
                return refuse(
                    ErrorKind::StaleBrokerEpoch,
                    format!(
                        "broker {} is not registered with epoch {}",
                        request.broker_id, request.broker_epoch
                    ),
                )
            }
        }
        if self.image.topic_by_id(request.topic_id).is_none() {
            return refuse(
                ErrorKind::UnknownTopicId,
                format!("no topic has id {}", request.topic_id),
            );
        }
        let Some(current) = self
            .image
            .partition(request.topic_id, request.partition)
            .cloned()
        else {
            return refuse(
                ErrorKind::UnknownTopicOrPartition,
                format!(
                    "topic {} has no partition {}",
                    request.topic_id, request.partition
                ),
            );
        };
        // Kafka's order: a leader ahead of this controller looks for the
        // current one (NOT_CONTROLLER); one behind is fenced.
        if request.leader_epoch > current.leader_epoch
            || request.partition_epoch > current.partition_epoch
        {
            return refuse(
                ErrorKind::NotController,
                format!(
                    "leader epoch {} / partition epoch {} are newer than this controller's {} / {}",
                    request.leader_epoch,
                    request.partition_epoch,
                    current.leader_epoch,
                    current.partition_epoch
                ),
            );
        }
        if request.leader_epoch < current.leader_epoch {
            return refuse(
                ErrorKind::FencedLeaderEpoch,
                format!(
                    "leader epoch {} is older than the partition's {}",
                    request.leader_epoch, current.leader_epoch
                ),
            );
        }
        if request.broker_id != current.leader {
            return refuse(
                ErrorKind::InvalidRequest,
                format!(
                    "broker {} does not lead this partition ({} does)",
                    request.broker_id, current.leader
                ),
            );
        }
        if request.partition_epoch < current.partition_epoch {
            return refuse(
                ErrorKind::InvalidUpdateVersion,
                format!(
                    "partition epoch {} is not the current {}",
                    request.partition_epoch, current.partition_epoch
                ),
            );
        }
        let new_isr: Vec<i32> = request.new_isr.iter().map(|m| m.node_id).collect();
        let mut distinct = new_isr.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != new_isr.len() || new_isr.iter().any(|m| !current.replicas.contains(m))
        {
            return refuse(
                ErrorKind::InvalidRequest,
                format!(
                    "the new ISR {new_isr:?} repeats a broker or names one outside the replicas {:?}",
                    current.replicas
                ),
            );
        }
        if !new_isr.contains(&current.leader) {
            return refuse(
                ErrorKind::InvalidRequest,
                "the new ISR must contain the leader".to_string(),
            );
        }
        for member in &request.new_isr {
            if current.isr.contains(&member.node_id) {
                continue;
            }
            let eligible = self.image.broker(member.node_id).is_some_and(|broker| {
                // A new member names the broker epoch it fetched under:
                // only the current incarnation may join (-1, no epoch, is
                // refused, unlike Kafka's AlterPartition before v3).
                broker.is_usable() && member.broker_epoch == broker.broker_epoch
            });
            if !eligible {
                return refuse(
                    ErrorKind::IneligibleReplica,
                    format!(
                        "broker {} may not join the ISR: it is fenced, shutting down or in \
                         another broker epoch",
                        member.node_id
                    ),
                );
            }
        }
        let mut records = Vec::new();
        self.change(
            &mut records,
            request.topic_id,
            request.partition,
            new_isr,
            None,
            Election::KeepIfAcceptable,
        );
        let reply = self
            .image
            .partition(request.topic_id, request.partition)
            .cloned()
            .expect("checked above");
        Ok(Decision { reply, records })
    }

    /// ElectLeaders for one partition.
    pub fn elect_leader(
        &mut self,
        topic: &str,
        partition: i32,
        election: ElectionType,
    ) -> Result<Decision<()>, ControllerError> {
        let state = self.image.topics.get(topic).and_then(|t| {
            Some((
                t.topic_id,
                t.partitions.get(usize::try_from(partition).ok()?)?,
            ))
        });
        let Some((topic_id, current)) = state else {
            return Err(ControllerError::new(
                ErrorKind::UnknownTopicOrPartition,
                format!("topic '{topic}' has no partition {partition}"),
            ));
        };
        let current = current.clone();
        let mut records = Vec::new();
        match election {
            ElectionType::Preferred => {
                let preferred = current.replicas.first().copied().unwrap_or(NO_LEADER);
                if current.leader == preferred {
                    return Err(ControllerError::new(
                        ErrorKind::ElectionNotNeeded,
                        format!("broker {preferred}, the preferred leader, already leads"),
                    ));
                }
                if !(current.isr.contains(&preferred) && self.image.is_usable(preferred)) {
                    return Err(ControllerError::new(
                        ErrorKind::PreferredLeaderNotAvailable,
                        format!("the preferred leader, broker {preferred}, is not in sync or not available"),
                    ));
                }
                self.change(
                    &mut records,
                    topic_id,
                    partition,
                    current.isr,
                    None,
                    Election::Preferred,
                );
            }
            ElectionType::Unclean => {
                if current.has_leader() {
                    return Err(ControllerError::new(
                        ErrorKind::ElectionNotNeeded,
                        format!("broker {} leads the partition", current.leader),
                    ));
                }
                let unclean = true;
                if let Some(record) = partition_change(
                    &self.image,
                    topic_id,
                    partition,
                    current.isr,
                    None,
                    Election::KeepIfAcceptable,
                    unclean,
                ) {
                    self.emit(&mut records, record);
                }
                if !self
                    .image
                    .partition(topic_id, partition)
                    .is_some_and(PartitionMetadata::has_leader)
                {
                    return Err(ControllerError::new(
                        ErrorKind::EligibleLeadersNotAvailable,
                        "no replica of the partition is available",
                    ));
                }
            }
        }
        Ok(Decision { reply: (), records })
    }
}
