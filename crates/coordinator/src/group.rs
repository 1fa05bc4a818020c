//! The classic group protocol state machine.

use std::collections::{BTreeMap, HashMap};

/// Kafka's group errors, with their wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupError {
    UnknownServerError,
    IllegalGeneration,
    InconsistentGroupProtocol,
    InvalidGroupId,
    UnknownMemberId,
    InvalidSessionTimeout,
    RebalanceInProgress,
    GroupIdNotFound,
    NonEmptyGroup,
    MemberIdRequired,
    FencedInstanceId,
    /// The group's partition of `__consumer_offsets` moved to another
    /// broker while the request waited.
    NotCoordinator,
}

impl GroupError {
    pub fn code(self) -> i16 {
        match self {
            GroupError::UnknownServerError => -1,
            GroupError::IllegalGeneration => 22,
            GroupError::InconsistentGroupProtocol => 23,
            GroupError::InvalidGroupId => 24,
            GroupError::UnknownMemberId => 25,
            GroupError::InvalidSessionTimeout => 26,
            GroupError::RebalanceInProgress => 27,
            GroupError::GroupIdNotFound => 69,
            GroupError::NonEmptyGroup => 68,
            GroupError::MemberIdRequired => 79,
            GroupError::FencedInstanceId => 82,
            GroupError::NotCoordinator => 16,
        }
    }
}

/// Kafka's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// Broker settings that bound groups.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i64,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i64,
    /// `group.initial.rebalance.delay.ms`: wait for more members before the
    /// first rebalance of an empty group.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> GroupConfig {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: usize::MAX,
        }
    }
}

/// A JoinGroup request, in the coordinator's terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+: a new member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinResponse {
    pub error: Option<GroupError>,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Filled for the leader: every member's id, instance id and metadata.
    pub members: Vec<(String, Option<String>, Vec<u8>)>,
}

#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// From the leader: each member's assignment.
    pub assignments: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncResponse {
    pub error: Option<GroupError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Vec<u8>,
}

/// A deferred answer, identified by the id the runtime gave the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Join {
        request_id: u64,
        response: JoinResponse,
    },
    Sync {
        request_id: u64,
        response: SyncResponse,
    },
    /// The group's membership changed in a way worth persisting.
    Persist { group_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocols: Vec<(String, Vec<u8>)>,
    pub assignment: Vec<u8>,
    // Runtime state, not persisted: reset when a group is restored.
    pub(crate) heartbeat_deadline: i64,
    pub(crate) awaiting_join: Option<u64>,
    pub(crate) awaiting_sync: Option<u64>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Vec<u8> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub group_id: String,
    pub state: GroupState,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// Members told MEMBER_ID_REQUIRED, with the deadline to come back.
    pending: HashMap<String, i64>,
    /// When a rebalance in progress completes regardless of stragglers.
    rebalance_deadline: i64,
    /// A new group waits this long for more members to join.
    initial_delay_until: i64,
}

impl Group {
    fn new(group_id: &str) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline: 0,
            initial_delay_until: 0,
        }
    }

    fn member_by_instance(&self, instance: &str) -> Option<&Member> {
        self.members
            .values()
            .find(|member| member.group_instance_id.as_deref() == Some(instance))
    }

    /// Checks a request's member and generation against the group.
    fn check_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: Option<i32>,
    ) -> Result<(), GroupError> {
        if let Some(instance) = instance {
            if let Some(member) = self.member_by_instance(instance) {
                if member.member_id != member_id {
                    return Err(GroupError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if let Some(generation_id) = generation_id {
            if generation_id != self.generation_id {
                return Err(GroupError::IllegalGeneration);
            }
        }
        Ok(())
    }

    /// Protocols every member supports, each member voting for its most
    /// preferred; the most votes win (ties: the earliest in the leader's list).
    fn select_protocol(&self) -> Option<String> {
        let mut members = self.members.values();
        let first = members.next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|member| member.protocols.iter().any(|(other, _)| other == *name))
            })
            .collect();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|name| (0, *name)).collect();
        for member in self.members.values() {
            if let Some((preferred, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name))
            {
                if let Some(vote) = votes.iter_mut().find(|(_, name)| *name == preferred) {
                    vote.0 += 1;
                }
            }
        }
        votes
            .iter()
            .enumerate()
            .max_by_key(|(index, (count, _))| (*count, std::cmp::Reverse(*index)))
            .map(|(_, (_, name))| (*name).clone())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Vec<u8>)]) -> bool {
        if self.members.is_empty() {
            return !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|member| member.protocols.iter().any(|(other, _)| other == name))
        })
    }
}

/// A group's committed offset for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// All classic groups this coordinator owns, and their committed offsets.
#[derive(Debug, Default)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<String, Group>,
    offsets: BTreeMap<String, BTreeMap<(String, i32), CommittedOffset>>,
    /// TxnOffsetCommit offsets waiting for their transaction's marker, by
    /// producer id, then (group, topic, partition).
    pending_txn_offsets: BTreeMap<i64, BTreeMap<(String, String, i32), CommittedOffset>>,
    next_member: u64,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            ..GroupCoordinator::default()
        }
    }

    pub fn group(&self, group_id: &str) -> Option<&Group> {
        self.groups.get(group_id)
    }

    /// Every group that has members or committed offsets.
    pub fn group_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.groups.keys().cloned().collect();
        ids.extend(
            self.offsets
                .keys()
                .filter(|id| !self.groups.contains_key(*id))
                .cloned(),
        );
        ids.sort();
        ids
    }

    /// The state a group is in, `Empty` for one that only has offsets.
    pub fn state_of(&self, group_id: &str) -> Option<GroupState> {
        match self.groups.get(group_id) {
            Some(group) => Some(group.state),
            None => self
                .offsets
                .contains_key(group_id)
                .then_some(GroupState::Empty),
        }
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_member += 1;
        format!(
            "{client_id}-{:016x}-{}",
            self.next_member.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            self.next_member
        )
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        now: i64,
        request_id: u64,
        group_id: &str,
        request: JoinRequest,
    ) -> Vec<Action> {
        let failed = |error| {
            vec![Action::Join {
                request_id,
                response: JoinResponse {
                    error: Some(error),
                    generation_id: -1,
                    member_id: request.member_id.clone(),
                    ..JoinResponse::default()
                },
            }]
        };
        if group_id.is_empty() {
            return failed(GroupError::InvalidGroupId);
        }
        if request.session_timeout_ms < self.config.min_session_timeout_ms
            || request.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return failed(GroupError::InvalidSessionTimeout);
        }
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        if !group.supports(&request.protocol_type, &request.protocols) {
            return failed(GroupError::InconsistentGroupProtocol);
        }
        if request.member_id.is_empty() {
            self.join_new_member(now, request_id, group_id, request)
        } else {
            self.join_known_member(now, request_id, group_id, request)
        }
    }

    fn join_new_member(
        &mut self,
        now: i64,
        request_id: u64,
        group_id: &str,
        request: JoinRequest,
    ) -> Vec<Action> {
        let member_id = self.new_member_id(&request.client_id);
        let config = self.config;
        let group = self.groups.get_mut(group_id).expect("group exists");
        if let Some(instance) = request.group_instance_id.clone() {
            if let Some(old_id) = group
                .member_by_instance(&instance)
                .map(|member| member.member_id.clone())
            {
                return replace_static_member(group, now, request_id, old_id, member_id, request);
            }
        } else if request.require_known_member_id {
            group
                .pending
                .insert(member_id.clone(), now + request.session_timeout_ms);
            return vec![Action::Join {
                request_id,
                response: JoinResponse {
                    error: Some(GroupError::MemberIdRequired),
                    generation_id: -1,
                    member_id,
                    ..JoinResponse::default()
                },
            }];
        }
        if group.members.len() >= config.max_size {
            return vec![Action::Join {
                request_id,
                response: JoinResponse {
                    error: Some(GroupError::UnknownServerError),
                    generation_id: -1,
                    ..JoinResponse::default()
                },
            }];
        }
        add_member(group, now, request_id, member_id, request);
        prepare_rebalance(group, now, config)
    }

    fn join_known_member(
        &mut self,
        now: i64,
        request_id: u64,
        group_id: &str,
        request: JoinRequest,
    ) -> Vec<Action> {
        let config = self.config;
        let group = self.groups.get_mut(group_id).expect("group exists");
        let member_id = request.member_id.clone();
        if group.pending.remove(&member_id).is_some() {
            add_member(group, now, request_id, member_id, request);
            return prepare_rebalance(group, now, config);
        }
        if let Err(error) =
            group.check_member(&member_id, request.group_instance_id.as_deref(), None)
        {
            return vec![Action::Join {
                request_id,
                response: JoinResponse {
                    error: Some(error),
                    generation_id: -1,
                    member_id,
                    ..JoinResponse::default()
                },
            }];
        }
        let member = group.members.get_mut(&member_id).expect("checked");
        let unchanged = member.protocols == request.protocols;
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.heartbeat_deadline = now + member.session_timeout_ms;
        match group.state {
            GroupState::PreparingRebalance => {
                member.awaiting_join = Some(request_id);
                maybe_complete_join(group, now, false)
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if unchanged && group.leader.as_deref() != Some(member_id.as_str()) =>
            {
                // A follower rejoining without change gets the current generation.
                vec![Action::Join {
                    request_id,
                    response: join_response(group, &member_id, false),
                }]
            }
            _ => {
                member.awaiting_join = Some(request_id);
                prepare_rebalance(group, now, config)
            }
        }
    }

    /// SyncGroup.
    pub fn sync(
        &mut self,
        now: i64,
        request_id: u64,
        group_id: &str,
        request: SyncRequest,
    ) -> Vec<Action> {
        let answer = |error: GroupError| {
            vec![Action::Sync {
                request_id,
                response: SyncResponse {
                    error: Some(error),
                    ..SyncResponse::default()
                },
            }]
        };
        let Some(group) = self.groups.get_mut(group_id) else {
            return answer(GroupError::UnknownMemberId);
        };
        if let Err(error) = group.check_member(
            &request.member_id,
            request.group_instance_id.as_deref(),
            Some(request.generation_id),
        ) {
            return answer(error);
        }
        match group.state {
            GroupState::Empty => answer(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => answer(GroupError::RebalanceInProgress),
            GroupState::Stable => {
                let member = &group.members[&request.member_id];
                vec![Action::Sync {
                    request_id,
                    response: SyncResponse {
                        error: None,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        assignment: member.assignment.clone(),
                    },
                }]
            }
            GroupState::CompletingRebalance => {
                if let Some(member) = group.members.get_mut(&request.member_id) {
                    member.awaiting_sync = Some(request_id);
                    member.heartbeat_deadline = now + member.session_timeout_ms;
                }
                if group.leader.as_deref() != Some(request.member_id.as_str()) {
                    return Vec::new();
                }
                for member in group.members.values_mut() {
                    member.assignment = request
                        .assignments
                        .iter()
                        .find(|(id, _)| *id == member.member_id)
                        .map(|(_, assignment)| assignment.clone())
                        .unwrap_or_default();
                }
                group.state = GroupState::Stable;
                let mut actions: Vec<Action> = group
                    .members
                    .values_mut()
                    .filter_map(|member| {
                        member.awaiting_sync.take().map(|request_id| Action::Sync {
                            request_id,
                            response: SyncResponse {
                                error: None,
                                protocol_type: None,
                                protocol_name: None,
                                assignment: member.assignment.clone(),
                            },
                        })
                    })
                    .collect();
                for action in &mut actions {
                    if let Action::Sync { response, .. } = action {
                        response.protocol_type = group.protocol_type.clone();
                        response.protocol_name = group.protocol_name.clone();
                    }
                }
                actions.push(Action::Persist {
                    group_id: group_id.to_string(),
                });
                actions
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Result<(), GroupError> {
        let group = self
            .groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        group.check_member(member_id, instance, None)?;
        if let Some(member) = group.members.get_mut(member_id) {
            member.heartbeat_deadline = now + member.session_timeout_ms;
        }
        match group.state {
            GroupState::Empty => Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance => Err(GroupError::RebalanceInProgress),
            _ if generation_id != group.generation_id => Err(GroupError::IllegalGeneration),
            _ => Ok(()),
        }
    }

    /// LeaveGroup: members by id, or static members by instance id.
    pub fn leave(
        &mut self,
        now: i64,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> (Vec<Result<(), GroupError>>, Vec<Action>) {
        let config = self.config;
        let Some(group) = self.groups.get_mut(group_id) else {
            return (
                leaving
                    .iter()
                    .map(|_| Err(GroupError::UnknownMemberId))
                    .collect(),
                Vec::new(),
            );
        };
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for (member_id, instance) in leaving {
            let target = match instance {
                Some(instance) => match group.member_by_instance(instance) {
                    Some(member) if member_id.is_empty() || member.member_id == *member_id => {
                        Ok(member.member_id.clone())
                    }
                    Some(_) => Err(GroupError::FencedInstanceId),
                    None => Err(GroupError::UnknownMemberId),
                },
                None if group.members.contains_key(member_id) => Ok(member_id.clone()),
                None if group.pending.remove(member_id).is_some() => {
                    results.push(Ok(()));
                    continue;
                }
                None => Err(GroupError::UnknownMemberId),
            };
            match target {
                Ok(id) => {
                    group.members.remove(&id);
                    removed = true;
                    results.push(Ok(()));
                }
                Err(error) => results.push(Err(error)),
            }
        }
        let actions = if removed {
            members_left(group, now, config)
        } else {
            Vec::new()
        };
        (results, actions)
    }

    /// Expires members that stopped heartbeating and completes rebalances
    /// whose time is up.
    pub fn tick(&mut self, now: i64) -> Vec<Action> {
        let config = self.config;
        let mut actions = Vec::new();
        for group in self.groups.values_mut() {
            group.pending.retain(|_, deadline| *deadline > now);
            let expired: Vec<String> = group
                .members
                .values()
                .filter(|member| member.awaiting_join.is_none() && member.heartbeat_deadline <= now)
                .map(|member| member.member_id.clone())
                .collect();
            if !expired.is_empty() {
                for id in &expired {
                    group.members.remove(id);
                }
                actions.extend(members_left(group, now, config));
            }
            if group.state == GroupState::PreparingRebalance {
                let force = now >= group.rebalance_deadline;
                actions.extend(maybe_complete_join(group, now, force));
            }
        }
        self.groups.retain(|_, group| {
            group.state != GroupState::Empty
                || !group.members.is_empty()
                || !group.pending.is_empty()
                || group.generation_id > 0
        });
        actions
    }

    /// When [`tick`](Self::tick) next has something to do.
    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|group| {
                let rebalance = (group.state == GroupState::PreparingRebalance)
                    .then_some([group.initial_delay_until, group.rebalance_deadline])
                    .into_iter()
                    .flatten();
                group
                    .members
                    .values()
                    .map(|member| member.heartbeat_deadline)
                    .chain(group.pending.values().copied())
                    .chain(rebalance)
            })
            .min()
    }

    /// May this member commit offsets now? Kafka's rules (ClassicGroup's
    /// `validateOffsetCommit`): a commit outside any generation (generation
    /// -1, the admin client or a consumer without group management) only
    /// while the group is empty; a member must be known and name the current
    /// generation. While the group prepares a rebalance its current members
    /// keep committing what they consume (cooperative consumers go on
    /// consuming through it); only while it completes one, after the
    /// JoinGroup answers and before the leader's SyncGroup, is a commit
    /// refused with REBALANCE_IN_PROGRESS, since the member holds a new
    /// generation but not yet its assignment. Transactional commits
    /// (TxnOffsetCommit) are not held to the group's state.
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        transactional: bool,
    ) -> Result<(), GroupError> {
        let Some(group) = self.groups.get(group_id) else {
            // No live group: commits from outside a group ("simple" consumers).
            return if generation_id < 0 {
                Ok(())
            } else {
                Err(GroupError::IllegalGeneration)
            };
        };
        if generation_id < 0 && group.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id >= 0 || !member_id.is_empty() || instance.is_some() {
            group.check_member(member_id, instance, Some(generation_id))?;
        } else if !transactional {
            // No member and no generation: only an empty group takes it.
            return Err(GroupError::UnknownMemberId);
        }
        if !transactional && group.state == GroupState::CompletingRebalance {
            return Err(GroupError::RebalanceInProgress);
        }
        Ok(())
    }

    pub fn commit(
        &mut self,
        group_id: &str,
        topic: &str,
        partition: i32,
        committed: CommittedOffset,
    ) {
        self.offsets
            .entry(group_id.to_string())
            .or_default()
            .insert((topic.to_string(), partition), committed);
    }

    /// TxnOffsetCommit: the offset becomes committed only if the producer's
    /// transaction commits ([`GroupCoordinator::complete_transaction`]).
    pub fn stage_transactional_offset(
        &mut self,
        producer_id: i64,
        group_id: &str,
        topic: &str,
        partition: i32,
        committed: CommittedOffset,
    ) {
        self.pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .insert(
                (group_id.to_string(), topic.to_string(), partition),
                committed,
            );
    }

    /// Transaction markers for `producer_id` are durable in the partitions
    /// of `__consumer_offsets` that `marked` accepts (it is given a group
    /// id): the offsets it staged for groups there are committed or
    /// dropped. Offsets staged for groups elsewhere wait for their own
    /// partition's marker, as in Kafka, which completes per partition.
    pub fn complete_transaction(
        &mut self,
        producer_id: i64,
        commit: bool,
        marked: impl Fn(&str) -> bool,
    ) {
        let Some(staged) = self.pending_txn_offsets.get_mut(&producer_id) else {
            return;
        };
        let settled: Vec<_> = staged
            .keys()
            .filter(|(group_id, _, _)| marked(group_id))
            .cloned()
            .collect();
        let settled: Vec<_> = settled
            .into_iter()
            .filter_map(|key| staged.remove_entry(&key))
            .collect();
        if staged.is_empty() {
            self.pending_txn_offsets.remove(&producer_id);
        }
        if commit {
            for ((group_id, topic, partition), committed) in settled {
                self.commit(&group_id, &topic, partition, committed);
            }
        }
    }

    /// Is an offset of an open transaction waiting for this partition
    /// (OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT)?
    pub fn has_pending_offset(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        if self.pending_txn_offsets.is_empty() {
            return false;
        }
        let key = (group_id.to_string(), topic.to_string(), partition);
        self.pending_txn_offsets
            .values()
            .any(|staged| staged.contains_key(&key))
    }

    /// Drops the committed offsets of groups without members that are older
    /// than `retention_ms` (`offsets.retention.minutes`); returns them so
    /// the runtime can write their tombstones.
    pub fn expire_offsets(&mut self, now: i64, retention_ms: i64) -> Vec<(String, String, i32)> {
        let mut expired = Vec::new();
        for (group_id, offsets) in self.offsets.iter_mut() {
            let has_members = self
                .groups
                .get(group_id)
                .is_some_and(|group| !group.members.is_empty());
            if has_members {
                continue;
            }
            offsets.retain(|(topic, partition), committed| {
                let keep = committed.commit_timestamp_ms.saturating_add(retention_ms) > now;
                if !keep {
                    expired.push((group_id.clone(), topic.clone(), *partition));
                }
                keep
            });
        }
        self.offsets.retain(|_, offsets| !offsets.is_empty());
        expired
    }

    pub fn delete_offset(&mut self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.offsets
            .get_mut(group_id)
            .and_then(|offsets| offsets.remove(&(topic.to_string(), partition)))
            .is_some()
    }

    pub fn offsets(&self, group_id: &str) -> Option<&BTreeMap<(String, i32), CommittedOffset>> {
        self.offsets.get(group_id)
    }

    /// DeleteGroups: only groups without members.
    pub fn delete_group(&mut self, group_id: &str) -> Result<(), GroupError> {
        match self.groups.get(group_id) {
            Some(group) if !group.members.is_empty() => Err(GroupError::NonEmptyGroup),
            Some(_) => {
                self.groups.remove(group_id);
                self.offsets.remove(group_id);
                Ok(())
            }
            None if self.offsets.remove(group_id).is_some() => Ok(()),
            None => Err(GroupError::GroupIdNotFound),
        }
    }

    /// Restores a group's stable state loaded from storage; its members
    /// must heartbeat within their session timeouts to stay.
    pub fn restore_group(&mut self, now: i64, restored: RestoredGroup) {
        let mut group = Group::new(&restored.group_id);
        group.generation_id = restored.generation_id;
        group.protocol_type = restored.protocol_type;
        group.protocol_name = restored.protocol_name;
        group.leader = restored.leader;
        for member in restored.members {
            group.members.insert(
                member.member_id.clone(),
                Member {
                    heartbeat_deadline: now + member.session_timeout_ms,
                    awaiting_join: None,
                    awaiting_sync: None,
                    ..member
                },
            );
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.groups.insert(restored.group_id, group);
    }

    pub fn forget_group(&mut self, group_id: &str) {
        self.groups.remove(group_id);
    }

    /// Drops every group `owned` picks, with its offsets and the offsets
    /// its transactions staged: this coordinator stopped leading their
    /// partition of `__consumer_offsets` (or is about to load it anew).
    /// Members waiting in JoinGroup or SyncGroup are answered
    /// NOT_COORDINATOR, so they look for the new coordinator.
    pub fn unload(&mut self, owned: impl Fn(&str) -> bool) -> Vec<Action> {
        let mut actions = Vec::new();
        let dropped: Vec<String> = self.groups.keys().filter(|id| owned(id)).cloned().collect();
        for group_id in dropped {
            let Some(group) = self.groups.remove(&group_id) else {
                continue;
            };
            for member in group.members.into_values() {
                if let Some(request_id) = member.awaiting_join {
                    actions.push(Action::Join {
                        request_id,
                        response: JoinResponse {
                            error: Some(GroupError::NotCoordinator),
                            generation_id: -1,
                            member_id: member.member_id.clone(),
                            ..JoinResponse::default()
                        },
                    });
                }
                if let Some(request_id) = member.awaiting_sync {
                    actions.push(Action::Sync {
                        request_id,
                        response: SyncResponse {
                            error: Some(GroupError::NotCoordinator),
                            ..SyncResponse::default()
                        },
                    });
                }
            }
        }
        self.offsets.retain(|group_id, _| !owned(group_id));
        for staged in self.pending_txn_offsets.values_mut() {
            staged.retain(|(group_id, _, _), _| !owned(group_id));
        }
        self.pending_txn_offsets
            .retain(|_, staged| !staged.is_empty());
        actions
    }
}

/// A group's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredGroup {
    pub group_id: String,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<Member>,
}

fn add_member(
    group: &mut Group,
    now: i64,
    request_id: u64,
    member_id: String,
    request: JoinRequest,
) {
    if group.members.is_empty() {
        group.protocol_type = Some(request.protocol_type.clone());
    }
    group.members.insert(
        member_id.clone(),
        Member {
            member_id,
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols,
            assignment: Vec::new(),
            heartbeat_deadline: now + request.session_timeout_ms,
            awaiting_join: Some(request_id),
            awaiting_sync: None,
        },
    );
}

/// A static member came back under a new member id: it takes over the old
/// member's place and assignment. In a stable group with the same
/// protocols that needs no rebalance.
fn replace_static_member(
    group: &mut Group,
    now: i64,
    request_id: u64,
    old_id: String,
    new_id: String,
    request: JoinRequest,
) -> Vec<Action> {
    let mut member = group.members.remove(&old_id).expect("member exists");
    let unchanged = member.protocols == request.protocols;
    member.member_id = new_id.clone();
    member.client_id = request.client_id;
    member.client_host = request.client_host;
    member.session_timeout_ms = request.session_timeout_ms;
    member.rebalance_timeout_ms = request.rebalance_timeout_ms;
    member.protocols = request.protocols;
    member.heartbeat_deadline = now + member.session_timeout_ms;
    let was_leader = group.leader.as_deref() == Some(old_id.as_str());
    if was_leader {
        group.leader = Some(new_id.clone());
    }
    // A join the old incarnation left waiting is never answered: its
    // connection is gone with the process that sent it.
    member.awaiting_join = None;
    group.members.insert(new_id.clone(), member);
    if group.state == GroupState::Stable && unchanged {
        let mut response = join_response(group, &new_id, was_leader);
        response.skip_assignment = was_leader;
        return vec![
            Action::Join {
                request_id,
                response,
            },
            Action::Persist {
                group_id: group.group_id.clone(),
            },
        ];
    }
    if let Some(member) = group.members.get_mut(&new_id) {
        member.awaiting_join = Some(request_id);
    }
    prepare_rebalance(group, now, GroupConfig::default())
}

/// The JoinGroup answer of the current generation for one member.
fn join_response(group: &Group, member_id: &str, with_members: bool) -> JoinResponse {
    let leader = group.leader.clone().unwrap_or_default();
    let members = if with_members || leader == member_id {
        let protocol = group.protocol_name.clone().unwrap_or_default();
        group
            .members
            .values()
            .map(|member| {
                (
                    member.member_id.clone(),
                    member.group_instance_id.clone(),
                    member.metadata_for(&protocol),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    JoinResponse {
        error: None,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader,
        skip_assignment: false,
        member_id: member_id.to_string(),
        members,
    }
}

/// Starts a rebalance (or keeps one going): members must rejoin.
fn prepare_rebalance(group: &mut Group, now: i64, config: GroupConfig) -> Vec<Action> {
    let mut actions = Vec::new();
    // Members waiting for their assignment learn that it will not come.
    for member in group.members.values_mut() {
        if let Some(request_id) = member.awaiting_sync.take() {
            actions.push(Action::Sync {
                request_id,
                response: SyncResponse {
                    error: Some(GroupError::RebalanceInProgress),
                    ..SyncResponse::default()
                },
            });
        }
    }
    let timeout = group
        .members
        .values()
        .map(|member| member.rebalance_timeout_ms)
        .max()
        .unwrap_or(0);
    if group.state != GroupState::PreparingRebalance {
        if group.state == GroupState::Empty {
            group.initial_delay_until = now + config.initial_rebalance_delay_ms.min(timeout);
        } else {
            group.initial_delay_until = now;
        }
        group.rebalance_deadline = now + timeout;
        group.state = GroupState::PreparingRebalance;
    }
    actions.extend(maybe_complete_join(group, now, false));
    actions
}

/// Members went away (left or expired).
fn members_left(group: &mut Group, now: i64, config: GroupConfig) -> Vec<Action> {
    if group
        .leader
        .as_ref()
        .is_some_and(|leader| !group.members.contains_key(leader))
    {
        group.leader = None;
    }
    match group.state {
        GroupState::Stable | GroupState::CompletingRebalance if !group.members.is_empty() => {
            prepare_rebalance(group, now, config)
        }
        GroupState::PreparingRebalance => maybe_complete_join(group, now, false),
        _ => {
            let mut actions = Vec::new();
            if group.members.is_empty() && group.state != GroupState::Empty {
                group.state = GroupState::Empty;
                group.generation_id += 1;
                group.protocol_name = None;
                group.leader = None;
                actions.push(Action::Persist {
                    group_id: group.group_id.clone(),
                });
            }
            actions
        }
    }
}

/// Completes the join phase when every member rejoined (and a new group's
/// initial delay passed), or when `force`d by the rebalance deadline: the
/// stragglers are removed, a new generation starts, everyone is answered.
fn maybe_complete_join(group: &mut Group, now: i64, force: bool) -> Vec<Action> {
    if group.state != GroupState::PreparingRebalance {
        return Vec::new();
    }
    let all_joined = group.pending.is_empty()
        && group
            .members
            .values()
            .all(|member| member.awaiting_join.is_some());
    let ready = all_joined && now >= group.initial_delay_until;
    if !(force || ready) {
        return Vec::new();
    }
    group
        .members
        .retain(|_, member| member.awaiting_join.is_some());
    group.pending.clear();
    group.generation_id += 1;
    if group.members.is_empty() {
        group.state = GroupState::Empty;
        group.protocol_name = None;
        group.leader = None;
        return vec![Action::Persist {
            group_id: group.group_id.clone(),
        }];
    }
    group.protocol_name = group.select_protocol();
    if group
        .leader
        .as_ref()
        .is_none_or(|leader| !group.members.contains_key(leader))
    {
        group.leader = group.members.keys().next().cloned();
    }
    group.state = GroupState::CompletingRebalance;
    let ids: Vec<String> = group.members.keys().cloned().collect();
    let mut actions = Vec::new();
    for id in ids {
        let response = join_response(group, &id, false);
        let member = group.members.get_mut(&id).expect("member");
        member.heartbeat_deadline = now + member.session_timeout_ms;
        if let Some(request_id) = member.awaiting_join.take() {
            actions.push(Action::Join {
                request_id,
                response,
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: instance.map(str::to_string),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|name| (name.to_string(), name.as_bytes().to_vec()))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn coordinator() -> GroupCoordinator {
        GroupCoordinator::new(GroupConfig {
            initial_rebalance_delay_ms: 0,
            ..GroupConfig::default()
        })
    }

    fn join_response(actions: &[Action], request_id: u64) -> JoinResponse {
        actions
            .iter()
            .find_map(|action| match action {
                Action::Join {
                    request_id: id,
                    response,
                } if *id == request_id => Some(response.clone()),
                _ => None,
            })
            .expect("a join response")
    }

    fn sync_response(actions: &[Action], request_id: u64) -> SyncResponse {
        actions
            .iter()
            .find_map(|action| match action {
                Action::Sync {
                    request_id: id,
                    response,
                } if *id == request_id => Some(response.clone()),
                _ => None,
            })
            .expect("a sync response")
    }

    /// The coordinator loses the group's partition while a member waits in
    /// JoinGroup: the member is told NOT_COORDINATOR, and the group, its
    /// offsets and what its transactions staged are gone; other groups stay.
    #[test]
    fn unloading_answers_waiting_members_not_coordinator_and_forgets_only_the_unloaded_groups() {
        let mut coordinator = coordinator();
        let a =
            join_response(&coordinator.join(0, 1, "g", join("", None, &["range"])), 1).member_id;
        let joined = coordinator.join(0, 2, "g", join(&a, None, &["range"]));
        assert_eq!(join_response(&joined, 2).generation_id, 1);
        let b =
            join_response(&coordinator.join(1, 3, "g", join("", None, &["range"])), 3).member_id;
        assert!(
            coordinator
                .join(1, 4, "g", join(&b, None, &["range"]))
                .is_empty(),
            "b waits for a to rejoin"
        );
        let offset = CommittedOffset {
            offset: 7,
            leader_epoch: 0,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        };
        coordinator.commit("g", "t", 0, offset.clone());
        coordinator.commit("other", "t", 0, offset.clone());
        coordinator.stage_transactional_offset(9, "g", "t", 1, offset.clone());
        coordinator.stage_transactional_offset(9, "other", "t", 1, offset.clone());

        let actions = coordinator.unload(|group| group == "g");
        let waiting = join_response(&actions, 4);
        assert_eq!(waiting.error, Some(GroupError::NotCoordinator));
        assert_eq!(waiting.error.map(GroupError::code), Some(16));
        assert!(coordinator.group("g").is_none());
        assert!(coordinator.offsets("g").is_none());
        assert_eq!(coordinator.group_ids(), vec!["other".to_string()]);
        coordinator.complete_transaction(9, true, |_| true);
        assert_eq!(
            coordinator.offsets("other").map(|o| o.len()),
            Some(2),
            "other keeps its offset and gains the staged one"
        );
        assert_eq!(
            coordinator
                .offsets("other")
                .and_then(|o| o.get(&("t".to_string(), 1))),
            Some(&offset),
            "other's staged offset is kept"
        );
        assert!(
            coordinator.offsets("g").is_none(),
            "g's staged offset went with g"
        );
    }

    /// Two members join, the leader assigns, both get their assignment.
    fn stable_pair(coordinator: &mut GroupCoordinator) -> (String, String) {
        let first = join_response(&coordinator.join(0, 1, "g", join("", None, &["range"])), 1);
        assert_eq!(first.error, Some(GroupError::MemberIdRequired));
        let a = first.member_id;
        let joined = coordinator.join(0, 2, "g", join(&a, None, &["range"]));
        let leader = join_response(&joined, 2);
        assert_eq!(leader.generation_id, 1);
        assert_eq!(leader.leader, a);
        let synced = coordinator.sync(
            0,
            3,
            "g",
            SyncRequest {
                member_id: a.clone(),
                group_instance_id: None,
                generation_id: 1,
                assignments: vec![(a.clone(), b"p0,p1".to_vec())],
            },
        );
        assert_eq!(sync_response(&synced, 3).assignment, b"p0,p1");
        // A second member triggers a rebalance; the first learns it by heartbeat.
        let b =
            join_response(&coordinator.join(1, 4, "g", join("", None, &["range"])), 4).member_id;
        assert!(
            coordinator
                .join(1, 5, "g", join(&b, None, &["range"]))
                .is_empty(),
            "waits for the others"
        );
        assert_eq!(
            coordinator.heartbeat(2, "g", &a, None, 1),
            Err(GroupError::RebalanceInProgress)
        );
        let rejoined = coordinator.join(2, 6, "g", join(&a, None, &["range"]));
        assert_eq!(join_response(&rejoined, 6).generation_id, 2);
        assert_eq!(join_response(&rejoined, 5).generation_id, 2);
        assert_eq!(
            join_response(&rejoined, 6).members.len(),
            2,
            "the leader sees every member"
        );
        let follower = coordinator.sync(
            2,
            7,
            "g",
            SyncRequest {
                member_id: b.clone(),
                group_instance_id: None,
                generation_id: 2,
                assignments: vec![],
            },
        );
        assert!(follower.is_empty(), "the follower waits for the leader");
        let done = coordinator.sync(
            2,
            8,
            "g",
            SyncRequest {
                member_id: a.clone(),
                group_instance_id: None,
                generation_id: 2,
                assignments: vec![(a.clone(), b"p0".to_vec()), (b.clone(), b"p1".to_vec())],
            },
        );
        assert_eq!(sync_response(&done, 7).assignment, b"p1");
        assert_eq!(sync_response(&done, 8).assignment, b"p0");
        assert_eq!(coordinator.group("g").unwrap().state, GroupState::Stable);
        (a, b)
    }

    #[test]
    fn a_tick_between_member_id_required_and_the_rejoin_keeps_the_member() {
        let mut coordinator = coordinator();
        let first = join_response(&coordinator.join(0, 1, "g", join("", None, &["range"])), 1);
        coordinator.tick(1);
        let joined = coordinator.join(2, 2, "g", join(&first.member_id, None, &["range"]));
        assert_eq!(join_response(&joined, 2).error, None);
    }

    #[test]
    fn members_join_sync_and_rebalance_when_one_arrives() {
        let mut coordinator = coordinator();
        stable_pair(&mut coordinator);
    }

    #[test]
    fn a_member_that_stops_heartbeating_is_removed_and_the_group_rebalances() {
        let mut coordinator = coordinator();
        let (a, b) = stable_pair(&mut coordinator);
        assert_eq!(coordinator.heartbeat(5_000, "g", &a, None, 2), Ok(()));
        // b never heartbeats again; after its session timeout it is gone.
        let actions = coordinator.tick(12_003);
        assert!(actions.is_empty() || actions.iter().all(|a| matches!(a, Action::Persist { .. })));
        assert_eq!(
            coordinator.group("g").unwrap().state,
            GroupState::PreparingRebalance
        );
        assert!(!coordinator.group("g").unwrap().members.contains_key(&b));
        let rejoined = coordinator.join(12_004, 9, "g", join(&a, None, &["range"]));
        assert_eq!(join_response(&rejoined, 9).generation_id, 3);
    }

    #[test]
    fn leaving_triggers_a_rebalance_and_the_last_one_out_empties_the_group() {
        let mut coordinator = coordinator();
        let (a, b) = stable_pair(&mut coordinator);
        let (results, _) = coordinator.leave(3, "g", &[(b.clone(), None)]);
        assert_eq!(results, vec![Ok(())]);
        assert_eq!(
            coordinator.group("g").unwrap().state,
            GroupState::PreparingRebalance
        );
        let (results, _) = coordinator.leave(3, "g", &[(a.clone(), None), ("nobody".into(), None)]);
        assert_eq!(results, vec![Ok(()), Err(GroupError::UnknownMemberId)]);
        assert_eq!(coordinator.group("g").unwrap().state, GroupState::Empty);
    }

    #[test]
    fn wrong_generation_and_unknown_members_are_refused() {
        let mut coordinator = coordinator();
        let (a, _) = stable_pair(&mut coordinator);
        assert_eq!(
            coordinator.heartbeat(3, "g", &a, None, 1),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(
            coordinator.heartbeat(3, "g", "stranger", None, 2),
            Err(GroupError::UnknownMemberId)
        );
        assert_eq!(
            coordinator.check_commit("g", &a, None, 1, false),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(coordinator.check_commit("g", &a, None, 2, false), Ok(()));
        assert_eq!(
            coordinator.check_commit("g", "", None, -1, false),
            Err(GroupError::UnknownMemberId),
            "a group with members takes no commits from outside it"
        );
        assert_eq!(
            coordinator.check_commit("other", "", None, -1, false),
            Ok(()),
            "simple commits"
        );
    }

    #[test]
    fn members_commit_while_a_rebalance_is_prepared_but_not_while_it_completes() {
        let mut coordinator = coordinator();
        let (a, b) = stable_pair(&mut coordinator);
        // A third member arrives: the group prepares a rebalance, and the
        // current members, still at generation 2, keep committing.
        let c =
            join_response(&coordinator.join(3, 9, "g", join("", None, &["range"])), 9).member_id;
        assert!(coordinator
            .join(3, 10, "g", join(&c, None, &["range"]))
            .is_empty());
        let group = coordinator.group("g").unwrap();
        assert_eq!(group.state, GroupState::PreparingRebalance);
        assert_eq!(coordinator.check_commit("g", &a, None, 2, false), Ok(()));
        assert_eq!(coordinator.check_commit("g", &b, None, 2, false), Ok(()));
        // Everyone rejoined: generation 3 is completing, waiting for the
        // leader's assignment. Members of generation 3 are told to wait;
        // transactional commits are not held to the group's state.
        assert!(coordinator
            .join(4, 11, "g", join(&b, None, &["range"]))
            .is_empty());
        let rejoined = coordinator.join(4, 12, "g", join(&a, None, &["range"]));
        assert_eq!(join_response(&rejoined, 12).generation_id, 3);
        let group = coordinator.group("g").unwrap();
        assert_eq!(group.state, GroupState::CompletingRebalance);
        assert_eq!(
            coordinator.check_commit("g", &a, None, 3, false),
            Err(GroupError::RebalanceInProgress)
        );
        assert_eq!(
            coordinator.check_commit("g", &a, None, 2, false),
            Err(GroupError::IllegalGeneration)
        );
        assert_eq!(coordinator.check_commit("g", &a, None, 3, true), Ok(()));
        // The leader's SyncGroup makes the group stable: commits resume.
        let assignments = vec![(a.clone(), b"p0".to_vec())];
        coordinator.sync(5, 13, "g", sync(&a, 3, assignments));
        assert_eq!(coordinator.group("g").unwrap().state, GroupState::Stable);
        assert_eq!(coordinator.check_commit("g", &c, None, 3, false), Ok(()));
    }

    fn sync(
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Vec<u8>)>,
    ) -> SyncRequest {
        SyncRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            generation_id,
            assignments,
        }
    }

    #[test]
    fn a_restarted_static_member_gets_its_assignment_back_without_rebalance() {
        let mut coordinator = coordinator();
        let joined = coordinator.join(0, 1, "g", join("", Some("host-1"), &["range"]));
        let first = join_response(&joined, 1);
        assert_eq!(
            first.error, None,
            "static members need no member id round trip"
        );
        let done = coordinator.sync(
            0,
            2,
            "g",
            SyncRequest {
                member_id: first.member_id.clone(),
                group_instance_id: Some("host-1".into()),
                generation_id: first.generation_id,
                assignments: vec![(first.member_id.clone(), b"p0".to_vec())],
            },
        );
        assert_eq!(sync_response(&done, 2).assignment, b"p0");
        // The process restarts: same instance id, no member id.
        let again = coordinator.join(1_000, 3, "g", join("", Some("host-1"), &["range"]));
        let second = join_response(&again, 3);
        assert_eq!(
            second.generation_id, first.generation_id,
            "no new generation"
        );
        assert_ne!(second.member_id, first.member_id);
        assert_eq!(coordinator.group("g").unwrap().state, GroupState::Stable);
        let synced = coordinator.sync(
            1_000,
            4,
            "g",
            SyncRequest {
                member_id: second.member_id.clone(),
                group_instance_id: Some("host-1".into()),
                generation_id: second.generation_id,
                assignments: vec![],
            },
        );
        assert_eq!(sync_response(&synced, 4).assignment, b"p0");
        // The old incarnation is fenced.
        assert_eq!(
            coordinator.heartbeat(
                1_001,
                "g",
                &first.member_id,
                Some("host-1"),
                first.generation_id
            ),
            Err(GroupError::FencedInstanceId)
        );
    }

    #[test]
    fn offsets_of_empty_groups_expire_and_live_groups_keep_theirs() {
        let mut coordinator = coordinator();
        let committed = |at| CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: at,
        };
        coordinator.commit("idle", "t", 0, committed(0));
        coordinator.commit("g", "t", 0, committed(0));
        stable_pair(&mut coordinator);
        let expired = coordinator.expire_offsets(1_000, 500);
        assert_eq!(expired, vec![("idle".to_string(), "t".to_string(), 0)]);
        assert!(coordinator.offsets("idle").is_none());
        assert!(
            coordinator.offsets("g").is_some(),
            "a group with members keeps its offsets"
        );
    }

    #[test]
    fn protocols_must_overlap() {
        let mut coordinator = coordinator();
        stable_pair(&mut coordinator);
        let response = join_response(
            &coordinator.join(5, 20, "g", join("", None, &["roundrobin"])),
            20,
        );
        assert_eq!(response.error, Some(GroupError::InconsistentGroupProtocol));
    }

    #[test]
    fn the_most_preferred_common_protocol_wins() {
        let mut coordinator = coordinator();
        let a = join_response(
            &coordinator.join(0, 1, "g", join("", None, &["cooperative-sticky", "range"])),
            1,
        )
        .member_id;
        let joined = coordinator.join(0, 2, "g", join(&a, None, &["cooperative-sticky", "range"]));
        assert_eq!(
            join_response(&joined, 2).protocol_name.as_deref(),
            Some("cooperative-sticky")
        );
    }

    fn at(offset: i64) -> CommittedOffset {
        CommittedOffset {
            offset,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: 0,
        }
    }

    #[test]
    fn transactional_offsets_settle_only_where_a_marker_landed() {
        let mut c = coordinator();
        c.stage_transactional_offset(7, "g1", "t", 0, at(10));
        c.stage_transactional_offset(7, "g2", "t", 0, at(20));
        assert!(c.has_pending_offset("g1", "t", 0));
        assert!(
            c.offsets("g1").is_none(),
            "staged offsets are not committed"
        );

        // g1's partition got the commit marker; g2's has not yet.
        c.complete_transaction(7, true, |group| group == "g1");
        assert_eq!(c.offsets("g1").unwrap()[&("t".to_string(), 0)].offset, 10);
        assert!(!c.has_pending_offset("g1", "t", 0));
        assert!(
            c.has_pending_offset("g2", "t", 0),
            "g2 still waits for its marker"
        );
        assert!(c.offsets("g2").is_none());

        // An abort marker in g2's partition drops what was staged there.
        c.complete_transaction(7, false, |group| group == "g2");
        assert!(!c.has_pending_offset("g2", "t", 0));
        assert!(c.offsets("g2").is_none());
        // Another producer's markers settle nothing of producer 7.
        c.stage_transactional_offset(7, "g1", "t", 1, at(30));
        c.complete_transaction(8, true, |_| true);
        assert!(c.has_pending_offset("g1", "t", 1));
    }
}
