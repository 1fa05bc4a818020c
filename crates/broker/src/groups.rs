//! The runtime around the group coordinator: it feeds requests and the clock
//! to the [`GroupCoordinator`] state machine, delivers its deferred answers,
//! and keeps group state in the internal compacted topic
//! `__consumer_offsets`, from which it is rebuilt at startup.
//!
//! A group's coordinator is the leader of the group's partition of
//! `__consumer_offsets` (Kafka's `abs(groupId.hashCode()) %
//! offsets.topic.num.partitions`). The coordinator follows that
//! leadership ([`Groups::follow_leadership`], run after every committed metadata batch):
//! a partition this node starts to lead, or leads in a new leader epoch, is
//! replayed into the coordinator (requests for its groups are answered
//! COORDINATOR_LOAD_IN_PROGRESS meanwhile); one it stops leading is
//! unloaded (its groups forgotten here, members waiting in a rebalance told
//! NOT_COORDINATOR), and requests for its groups are answered
//! NOT_COORDINATOR, so clients ask FindCoordinator again.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kafka_protocol::error::ResponseError;
use strom_coordinator::consumer_group::{
    ConsumerGroupConfig, ConsumerGroupError, ConsumerGroups, HeartbeatRequest as ConsumerHeartbeat,
    HeartbeatResponse as ConsumerHeartbeatResponse, TopicView,
};
use strom_coordinator::records::{self as group_records, GroupRecord};
use strom_coordinator::{
    Action, CommittedOffset, GroupConfig, GroupCoordinator, GroupError, JoinRequest, JoinResponse,
    RestoredGroup, SyncRequest, SyncResponse,
};
use strom_log::batch::ControlType;
use tokio::sync::{oneshot, Notify};

use crate::coordinator_loads::Loads;
use crate::internal_topics::{self, InternalLog};
use crate::partition::{now_ms, Partition};
use crate::topics::{TopicError, Topics};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

pub use crate::internal_topics::KeyedRecord;

enum Waiting {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

pub struct Groups {
    log: InternalLog,
    coordinator: Arc<Mutex<GroupCoordinator>>,
    /// KIP-848 groups (`group.protocol=consumer`).
    consumer_groups: Mutex<ConsumerGroups>,
    waiting: Mutex<HashMap<u64, Waiting>>,
    next_request: AtomicU64,
    /// Wakes the timer when deadlines may have moved.
    pub changed: Notify,
    /// Set once `__consumer_offsets` exists.
    offsets_topic: tokio::sync::OnceCell<()>,
    /// The partitions of `__consumer_offsets` whose groups are loaded here.
    loads: Loads,
}

impl Groups {
    pub fn new(
        log: InternalLog,
        config: GroupConfig,
        consumer_config: ConsumerGroupConfig,
    ) -> Groups {
        Groups {
            log,
            coordinator: Arc::new(Mutex::new(GroupCoordinator::new(config))),
            consumer_groups: Mutex::new(ConsumerGroups::new(consumer_config)),
            waiting: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            changed: Notify::new(),
            offsets_topic: tokio::sync::OnceCell::const_new(),
            loads: Loads::default(),
        }
    }

    /// Whether this node coordinates `group_id` now: creates
    /// `__consumer_offsets` on first use and loads the group's partition
    /// if this node leads it but has not loaded it yet. `Err` is what to
    /// answer: NOT_COORDINATOR (another broker leads the partition),
    /// COORDINATOR_LOAD_IN_PROGRESS or COORDINATOR_NOT_AVAILABLE.
    pub async fn coordinate(&self, group_id: &str) -> Result<(), ResponseError> {
        if let Err(error) = self.ensure_ready().await {
            tracing::warn!(group = group_id, message = %error.message, "the group coordinator is not available");
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        match self.owns(group_id) {
            Err(ResponseError::CoordinatorLoadInProgress) => {
                self.follow_leadership().await;
                self.owns(group_id)
            }
            outcome => outcome,
        }
    }

    /// [`Groups::coordinate`] without creating or loading anything.
    fn owns(&self, group_id: &str) -> Result<(), ResponseError> {
        self.loads.owns_key(&self.log, OFFSETS_TOPIC, group_id)
    }

    /// Makes the loaded groups follow leadership: unloads the partitions of
    /// `__consumer_offsets` this node no longer leads (or leads in a newer
    /// epoch) and loads those it leads, reading each to its log end (a new
    /// leader keeps its whole log; what its followers lack they fetch).
    pub async fn follow_leadership(&self) {
        let _turn = self.loads.turn.lock().await;
        let Some(partitions) = self.log.partitions(OFFSETS_TOPIC) else {
            return;
        };
        let count = partitions.count() as i32;
        let plan = self.loads.plan(&partitions);
        for index in plan.unload {
            let owned = |group: &str| group_records::partition_for(group, count) == index;
            let actions = self.coordinator().unload(owned);
            self.consumer_groups().unload(owned);
            self.perform(actions).await;
        }
        let coordinator = self.coordinator.clone();
        self.loads
            .load(OFFSETS_TOPIC, plan.load, move |partition| {
                load(&coordinator, partition, count)
            })
            .await;
    }

    fn coordinator(&self) -> std::sync::MutexGuard<'_, GroupCoordinator> {
        self.coordinator.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn consumer_groups(&self) -> std::sync::MutexGuard<'_, ConsumerGroups> {
        self.consumer_groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// A look at the classic groups and committed offsets, for the requests
    /// that describe or list them; every change goes through a method of
    /// this runtime, which also persists it.
    pub fn read<T>(&self, look: impl FnOnce(&GroupCoordinator) -> T) -> T {
        look(&self.coordinator())
    }

    /// A look at the KIP-848 consumer groups.
    pub fn read_consumer_groups<T>(&self, look: impl FnOnce(&ConsumerGroups) -> T) -> T {
        look(&self.consumer_groups())
    }

    /// Heartbeat of a classic group's member.
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        self.coordinator()
            .heartbeat(now_ms(), group_id, member_id, instance, generation_id)
    }

    /// LeaveGroup: each leaving member's outcome, in order.
    pub async fn leave(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Vec<Result<(), GroupError>> {
        let (results, actions) = self.coordinator().leave(now_ms(), group_id, leaving);
        self.perform(actions).await;
        results
    }

    /// OffsetCommit, once the commit is allowed: the offsets of partitions
    /// that exist are written durably, then they are the group's.
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        requested: Vec<RequestedOffset<'_>>,
    ) -> Result<(), String> {
        let (commits, records) = self.offsets_to_commit(group_id, requested);
        if records.is_empty() {
            return Ok(());
        }
        self.write_records(group_id, records).await?;
        let mut coordinator = self.coordinator();
        for (topic, partition, committed) in commits {
            coordinator.commit(group_id, &topic, partition, committed);
        }
        Ok(())
    }

    /// Where `producer`'s transaction stands in the group's partition of
    /// `__consumer_offsets` (see [`Partition::transaction_guard`]), for a
    /// verification made before [`Groups::commit_transactional_offsets`].
    pub fn transaction_guard(&self, group_id: &str, producer_id: i64) -> Option<(i32, u64)> {
        self.log
            .partition_for_key(OFFSETS_TOPIC, group_id)
            .map(|partition| partition.transaction_guard(producer_id))
    }

    /// TxnOffsetCommit: the offsets of partitions that exist wait for
    /// `producer`'s transaction to end. A write that would open the transaction in the group's
    /// partition is made only if `admit` allows it, asked under the lock
    /// markers take (KIP-890). Staged before the write, as Kafka does: a
    /// marker that lands while the write waits for its fsync settles them
    /// too. A write not made or not durable voids them (the client aborts
    /// the transaction).
    pub async fn commit_transactional_offsets(
        &self,
        group_id: &str,
        producer: (i64, i16),
        requested: Vec<RequestedOffset<'_>>,
        admit: impl FnOnce((i32, u64)) -> Result<(), ResponseError>,
    ) -> Result<(), internal_topics::NotWritten> {
        use internal_topics::NotWritten;
        let (staged, records) = self.offsets_to_commit(group_id, requested);
        if records.is_empty() {
            return Ok(());
        }
        let partition = self
            .log
            .partition_for_key(OFFSETS_TOPIC, group_id)
            .ok_or_else(|| NotWritten::Failed("__consumer_offsets does not exist".to_string()))?;
        {
            let mut coordinator = self.coordinator();
            for (topic, partition, committed) in staged {
                coordinator
                    .stage_transactional_offset(producer.0, group_id, &topic, partition, committed);
            }
        }
        let written = match internal_topics::append_admitted(
            &self.log,
            partition,
            records,
            Some(producer),
            admit,
        ) {
            Ok(durable) => internal_topics::durable(durable)
                .await
                .map_err(NotWritten::Failed),
            Err(refused) => Err(refused),
        };
        if written.is_err() {
            self.coordinator()
                .complete_transaction(producer.0, false, |group| group == group_id);
        }
        written
    }

    /// The markers of `producer_id`'s transaction are durable in the
    /// `__consumer_offsets` partitions `marked` (of `count`): the offsets it
    /// staged for the groups there settle, as a replay would settle them.
    pub fn complete_transaction(&self, producer_id: i64, commit: bool, marked: &[i32], count: i32) {
        self.coordinator()
            .complete_transaction(producer_id, commit, |group| {
                marked.contains(&group_records::partition_for(group, count))
            });
    }

    /// OffsetDelete of partitions the group's members do not subscribe to:
    /// forgotten here, then tombstones written.
    pub async fn delete_offsets(&self, group_id: &str, partitions: &[(String, i32)]) {
        let tombstones: Vec<KeyedRecord> = {
            let mut coordinator = self.coordinator();
            partitions
                .iter()
                .map(|(topic, partition)| {
                    coordinator.delete_offset(group_id, topic, *partition);
                    offset_record(group_id, topic, *partition, None)
                })
                .collect()
        };
        if tombstones.is_empty() {
            return;
        }
        if let Err(error) = self.write_records(group_id, tombstones).await {
            tracing::warn!(group = %group_id, %error, "could not persist offset deletion");
        }
    }

    /// DeleteGroups, for one group without members: forgotten with its
    /// offsets, then tombstones written for both.
    pub async fn delete_group(&self, group_id: &str) -> Result<(), GroupError> {
        let tombstones = {
            let mut coordinator = self.coordinator();
            let offsets: Vec<(String, i32)> = coordinator
                .offsets(group_id)
                .map(|offsets| offsets.keys().cloned().collect())
                .unwrap_or_default();
            coordinator.delete_group(group_id)?;
            let mut tombstones: Vec<KeyedRecord> = offsets
                .iter()
                .map(|(topic, partition)| offset_record(group_id, topic, *partition, None))
                .collect();
            tombstones.push((group_records::group_key(group_id), None));
            tombstones
        };
        if let Err(error) = self.write_records(group_id, tombstones).await {
            tracing::warn!(group = %group_id, %error, "could not persist group deletion");
        }
        Ok(())
    }

    /// ConsumerGroupHeartbeat. A group id is either classic or consumer.
    pub fn consumer_heartbeat(
        &self,
        group_id: &str,
        request: ConsumerHeartbeat,
        topics: &TopicView,
    ) -> Result<ConsumerHeartbeatResponse, ConsumerGroupError> {
        let classic = self
            .coordinator()
            .group(group_id)
            .is_some_and(|group| !group.members.is_empty());
        if classic {
            return Err(ConsumerGroupError::InconsistentGroupProtocol);
        }
        let result = self
            .consumer_groups()
            .heartbeat(now_ms(), group_id, request, topics);
        self.changed.notify_one();
        result
    }

    /// May this member commit offsets? Consumer groups check member epochs,
    /// classic groups generations (and, unless `transactional`, their state).
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_or_epoch: i32,
        transactional: bool,
    ) -> Result<(), i16> {
        if let Some(result) =
            self.consumer_groups()
                .check_commit(group_id, member_id, generation_or_epoch)
        {
            return result.map_err(|error| match error {
                // OffsetCommit reports a stale epoch as STALE_MEMBER_EPOCH.
                ConsumerGroupError::FencedMemberEpoch => 113,
                other => other.code(),
            });
        }
        self.coordinator()
            .check_commit(
                group_id,
                member_id,
                instance,
                generation_or_epoch,
                transactional,
            )
            .map_err(|error| error.code())
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiting>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// JoinGroup: resolves when the rebalance round completes.
    pub async fn join(&self, group_id: &str, request: JoinRequest) -> JoinResponse {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiting().insert(request_id, Waiting::Join(sender));
        let actions = self
            .coordinator()
            .join(now_ms(), request_id, group_id, request);
        self.perform(actions).await;
        receiver.await.unwrap_or_else(|_| JoinResponse {
            error: Some(GroupError::RebalanceInProgress),
            generation_id: -1,
            ..JoinResponse::default()
        })
    }

    /// SyncGroup: followers wait for the leader's assignment.
    pub async fn sync(&self, group_id: &str, request: SyncRequest) -> SyncResponse {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiting().insert(request_id, Waiting::Sync(sender));
        let actions = self
            .coordinator()
            .sync(now_ms(), request_id, group_id, request);
        self.perform(actions).await;
        receiver.await.unwrap_or_else(|_| SyncResponse {
            error: Some(GroupError::RebalanceInProgress),
            ..SyncResponse::default()
        })
    }

    /// Answers deferred requests and persists group state.
    pub async fn perform(&self, actions: Vec<Action>) {
        self.changed.notify_one();
        for action in actions {
            match action {
                Action::Join {
                    request_id,
                    response,
                } => {
                    if let Some(Waiting::Join(sender)) = self.waiting().remove(&request_id) {
                        let _ = sender.send(response);
                    }
                }
                Action::Sync {
                    request_id,
                    response,
                } => {
                    if let Some(Waiting::Sync(sender)) = self.waiting().remove(&request_id) {
                        let _ = sender.send(response);
                    }
                }
                Action::Persist { group_id } => {
                    let snapshot = self
                        .coordinator()
                        .group(&group_id)
                        .map(|group| RestoredGroup {
                            group_id: group.group_id.clone(),
                            generation_id: group.generation_id,
                            protocol_type: group.protocol_type.clone(),
                            protocol_name: group.protocol_name.clone(),
                            leader: group.leader.clone(),
                            members: group.members.values().cloned().collect(),
                        });
                    if let Some(group) = snapshot {
                        let value = group_records::group_value(&group, now_ms());
                        let record = (group_records::group_key(&group_id), Some(value));
                        if let Err(error) = self.write_records(&group_id, vec![record]).await {
                            tracing::warn!(group = %group_id, %error, "could not persist group metadata");
                        }
                    }
                }
            }
        }
    }

    /// Runs the coordinator's clock: session expiry and rebalance deadlines.
    pub async fn run_timer(self: Arc<Self>) {
        let retention_ms = self
            .log
            .config_i64("offsets.retention.minutes")
            .saturating_mul(60_000);
        let check_every_ms = self
            .log
            .config_i64("offsets.retention.check.interval.ms")
            .max(1);
        let mut next_expiry = now_ms() + check_every_ms;
        loop {
            if now_ms() >= next_expiry {
                next_expiry = now_ms() + check_every_ms;
                let expired = self.coordinator().expire_offsets(now_ms(), retention_ms);
                let mut by_group: BTreeMap<String, Vec<KeyedRecord>> = BTreeMap::new();
                for (group_id, topic, partition) in expired {
                    let record = offset_record(&group_id, &topic, partition, None);
                    by_group.entry(group_id).or_default().push(record);
                }
                for (group_id, tombstones) in by_group {
                    tracing::info!(group = %group_id, partitions = tombstones.len(), "expired committed offsets (offsets.retention.minutes)");
                    if let Err(error) = self.write_records(&group_id, tombstones).await {
                        tracing::warn!(group = %group_id, %error, "could not persist expired offsets");
                    }
                }
            }
            let now = now_ms();
            let classic = self.coordinator().next_deadline();
            let consumer = self.consumer_groups().next_deadline();
            let next = classic.into_iter().chain(consumer).min();
            let wait_ms = next.map_or(1_000, |deadline| (deadline - now).clamp(5, 1_000));
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(wait_ms as u64)) => {}
                _ = self.changed.notified() => {}
            }
            self.consumer_groups()
                .tick(now_ms(), || topic_view(self.log.metadata()));
            let actions = self.coordinator().tick(now_ms());
            if !actions.is_empty() {
                self.perform(actions).await;
            }
        }
    }

    /// Creates `__consumer_offsets` on first use, then loads the
    /// partitions this node leads. After the first success the creation is
    /// a lock-free check.
    pub async fn ensure_ready(&self) -> Result<(), TopicError> {
        let created = self.offsets_topic.initialized();
        self.offsets_topic
            .get_or_try_init(|| {
                internal_topics::create(&self.log, OFFSETS_TOPIC, "offsets.topic.num.partitions")
            })
            .await?;
        if !created {
            self.follow_leadership().await;
        }
        Ok(())
    }

    /// Appends keyed records to the group's partition of `__consumer_offsets`
    /// and waits until they are durable.
    pub async fn write_records(
        &self,
        group_id: &str,
        records: Vec<KeyedRecord>,
    ) -> Result<(), String> {
        let partition = self
            .log
            .partition_for_key(OFFSETS_TOPIC, group_id)
            .ok_or("__consumer_offsets does not exist")?;
        internal_topics::append(&self.log, partition, records).await
    }

    /// The group's partition of `__consumer_offsets`, as a transaction names
    /// it; `None` until the topic exists.
    pub fn offsets_partition(&self, group_id: &str) -> Option<(String, i32)> {
        self.log
            .partition_for_key(OFFSETS_TOPIC, group_id)
            .map(|partition| (OFFSETS_TOPIC.to_string(), partition.index))
    }

    /// Does this topic partition exist in the cluster? Offsets are committed
    /// only for partitions that do; Kafka answers the others
    /// UNKNOWN_TOPIC_OR_PARTITION. The coordinator need not hold a replica.
    pub fn partition_exists(&self, topic: &str, partition: i32) -> bool {
        self.log.metadata().partition_exists(topic, partition)
    }
}

/// The topics a consumer group may subscribe to (the internal ones left
/// out): name, id and partition count.
pub fn topic_view(topics: &Topics) -> TopicView {
    topics
        .all_topics()
        .into_iter()
        .filter(|topic| !topic.name.starts_with("__"))
        .map(|topic| {
            (
                topic.name,
                (topic.topic_id.into_bytes(), topic.partitions.len() as i32),
            )
        })
        .collect()
}

/// Replays one partition of `__consumer_offsets` (of `count`) into the
/// coordinator. Offsets committed inside a transaction wait for its marker.
fn load(coordinator: &Mutex<GroupCoordinator>, partition: &Partition, count: i32) {
    let now = now_ms();
    let mut coordinator = coordinator.lock().unwrap_or_else(|p| p.into_inner());
    let here = |group: &str| group_records::partition_for(group, count) == partition.index;
    let records = internal_topics::replay(OFFSETS_TOPIC, partition, |record| {
        let Some(key) = &record.key else { return };
        if record.control {
            if let Some(control) = ControlType::from_key(key) {
                let commit = control == ControlType::Commit;
                coordinator.complete_transaction(record.producer_id, commit, here);
            }
            return;
        }
        match group_records::decode(key, record.value.as_deref()) {
            Some(GroupRecord::Offset {
                group_id,
                topic,
                partition,
                committed: Some(committed),
            }) if record.transactional => coordinator.stage_transactional_offset(
                record.producer_id,
                &group_id,
                &topic,
                partition,
                committed,
            ),
            Some(GroupRecord::Offset {
                group_id,
                topic,
                partition,
                committed: Some(committed),
            }) => {
                coordinator.commit(&group_id, &topic, partition, committed);
            }
            Some(GroupRecord::Offset {
                group_id,
                topic,
                partition,
                committed: None,
            }) => {
                coordinator.delete_offset(&group_id, &topic, partition);
            }
            Some(GroupRecord::Metadata {
                group: Some(group), ..
            }) => coordinator.restore_group(now, group),
            Some(GroupRecord::Metadata {
                group_id,
                group: None,
            }) => coordinator.forget_group(&group_id),
            None => {}
        }
    });
    tracing::info!(
        partition = partition.index,
        leader_epoch = partition.leader_epoch(),
        records,
        "loaded the consumer groups of a __consumer_offsets partition this broker leads"
    );
}

/// One partition's offset in an OffsetCommit or TxnOffsetCommit request:
/// topic, partition, offset, leader epoch, metadata.
pub type RequestedOffset<'a> = (&'a str, i32, i64, i32, Option<&'a str>);

impl Groups {
    /// The committed offsets of a commit request for the partitions that
    /// exist, stamped now, and the records that persist them.
    fn offsets_to_commit(
        &self,
        group_id: &str,
        requested: Vec<RequestedOffset<'_>>,
    ) -> (Vec<(String, i32, CommittedOffset)>, Vec<KeyedRecord>) {
        let now = now_ms();
        let mut commits = Vec::new();
        let mut records = Vec::new();
        let existing = requested
            .into_iter()
            .filter(|offset| self.partition_exists(offset.0, offset.1));
        for (topic, partition, offset, leader_epoch, metadata) in existing {
            let committed = CommittedOffset {
                offset,
                leader_epoch,
                metadata: metadata.unwrap_or_default().to_string(),
                commit_timestamp_ms: now,
            };
            records.push(offset_record(group_id, topic, partition, Some(&committed)));
            commits.push((topic.to_string(), partition, committed));
        }
        (commits, records)
    }
}

/// Builds the record for one committed offset (or its deletion).
fn offset_record(
    group_id: &str,
    topic: &str,
    partition: i32,
    committed: Option<&CommittedOffset>,
) -> KeyedRecord {
    (
        group_records::offset_key(group_id, topic, partition),
        committed.map(group_records::offset_value),
    )
}
