//! The KIP-848 consumer group protocol: the broker assigns.
//!
//! Members send `ConsumerGroupHeartbeat` with their subscription and the
//! partitions they own; the coordinator keeps a group epoch that grows with
//! every change of membership, subscriptions or topic metadata, computes a
//! target assignment for that epoch with a server-side assignor (`uniform`
//! or `range`), and walks each member towards its target: a member first
//! gives up partitions it must lose (its answer keeps only what it may
//! keep), and only partitions that no other member still owns are handed
//! out. A member whose owned set matches its target reaches the group's
//! assignment epoch. No stop-the-world rebalance, no client-side assignor.

use std::collections::{BTreeMap, BTreeSet};

/// Topic name -> (topic id bytes, partition count), as the runtime sees it now.
pub type TopicView = BTreeMap<String, ([u8; 16], i32)>;

/// Owned or assigned partitions: topic name -> partitions.
pub type Partitions = BTreeMap<String, BTreeSet<i32>>;

/// KIP-848 errors with their wire codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupError {
    UnknownMemberId,
    FencedMemberEpoch,
    UnsupportedAssignor,
    InvalidRequest,
    GroupIdNotFound,
    /// The id belongs to a classic group.
    InconsistentGroupProtocol,
    /// `SubscribedTopicRegex` does not compile.
    InvalidRegularExpression,
    /// A static member joins with the instance id of a member that is
    /// still active (has not left with epoch -2).
    UnreleasedInstanceId,
    /// The instance id belongs to another member id.
    FencedInstanceId,
}

impl ConsumerGroupError {
    /// What the error message of the response says.
    pub fn message(self) -> &'static str {
        match self {
            ConsumerGroupError::UnknownMemberId => "the member is not in the group",
            ConsumerGroupError::FencedMemberEpoch => {
                "the member epoch is not the member's current one"
            }
            ConsumerGroupError::UnsupportedAssignor => {
                "the server assignor is not one of uniform, range"
            }
            ConsumerGroupError::InvalidRequest => "the heartbeat is not valid",
            ConsumerGroupError::GroupIdNotFound => "the group does not exist",
            ConsumerGroupError::InconsistentGroupProtocol => "the group uses the classic protocol",
            ConsumerGroupError::InvalidRegularExpression => {
                "SubscribedTopicRegex is not a valid regular expression"
            }
            ConsumerGroupError::UnreleasedInstanceId => {
                "the instance id is owned by a member that has not left the group"
            }
            ConsumerGroupError::FencedInstanceId => "the instance id belongs to another member",
        }
    }

    pub fn code(self) -> i16 {
        match self {
            ConsumerGroupError::UnknownMemberId => 25,
            ConsumerGroupError::FencedMemberEpoch => 110,
            ConsumerGroupError::UnsupportedAssignor => 112,
            ConsumerGroupError::InvalidRequest => 42,
            ConsumerGroupError::GroupIdNotFound => 69,
            ConsumerGroupError::InconsistentGroupProtocol => 23,
            ConsumerGroupError::InvalidRegularExpression => 128,
            ConsumerGroupError::UnreleasedInstanceId => 111,
            ConsumerGroupError::FencedInstanceId => 82,
        }
    }
}

#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout_ms: i64,
    /// `None`: unchanged since the last heartbeat.
    pub subscribed_topics: Option<Vec<String>>,
    /// `None`: unchanged since the last heartbeat; empty: no regex any more.
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    /// `None`: unchanged. The partitions the member owns now.
    pub owned: Option<Partitions>,
    pub client_id: String,
    pub client_host: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatResponse {
    pub member_id: String,
    pub member_epoch: i32,
    pub heartbeat_interval_ms: i32,
    /// `None`: no change since the last answer.
    pub assignment: Option<Partitions>,
}

#[derive(Debug, Clone)]
pub struct ConsumerMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub member_epoch: i32,
    previous_epoch: i32,
    pub subscribed_topics: Vec<String>,
    /// A regular-expression subscription: every topic whose whole name it
    /// matches, as the topics are now (so it follows topics created and
    /// deleted).
    pub subscribed_regex: Option<TopicRegex>,
    pub assignor: Option<String>,
    /// What the member owns (as it last reported, plus what it was given).
    pub assigned: Partitions,
    /// What the current target assignment gives it.
    pub target: Partitions,
    /// Partitions it was told to give up and has not yet reported released.
    pub pending_revocation: Partitions,
    last_sent: Option<Partitions>,
    session_deadline: i64,
}

impl ConsumerMember {
    /// Is the member subscribed to this topic, by name or by its regex?
    pub fn subscribes(&self, topic: &str) -> bool {
        self.subscribed_topics.iter().any(|name| name == topic)
            || self
                .subscribed_regex
                .as_ref()
                .is_some_and(|regex| regex.matches(topic))
    }
}

/// A `SubscribedTopicRegex`. Kafka resolves it with RE2 against whole topic
/// names; the `regex` crate's syntax is RE2's (bar a few escapes), its
/// matching is linear time as RE2's is, and the compiled program is bounded
/// so a hostile pattern cannot take the broker's memory.
#[derive(Debug, Clone)]
pub struct TopicRegex {
    pub source: String,
    compiled: regex::Regex,
}

/// Most bytes one compiled subscription regex may take.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

impl TopicRegex {
    pub fn new(source: &str) -> Result<TopicRegex, ConsumerGroupError> {
        let compiled = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|_| ConsumerGroupError::InvalidRegularExpression)?;
        Ok(TopicRegex {
            source: source.to_string(),
            compiled,
        })
    }

    pub fn matches(&self, topic: &str) -> bool {
        self.compiled.is_match(topic)
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerGroup {
    pub group_id: String,
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    pub members: BTreeMap<String, ConsumerMember>,
    topic_fingerprint: Vec<(String, i32)>,
}

impl ConsumerGroup {
    pub fn state(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|member| {
            member.member_epoch != self.assignment_epoch || member.assigned != member.target
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms`
    pub session_timeout_ms: i64,
    /// `group.consumer.heartbeat.interval.ms`
    pub heartbeat_interval_ms: i32,
}

impl Default for ConsumerGroupConfig {
    fn default() -> ConsumerGroupConfig {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
        }
    }
}

pub const ASSIGNORS: &[&str] = &["uniform", "range"];

/// The member epoch of a heartbeat that leaves the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The member epoch of a static member's heartbeat that leaves for a
/// moment, and the epoch such a member has until it is back.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// All KIP-848 groups.
#[derive(Debug, Default)]
pub struct ConsumerGroups {
    config: ConsumerGroupConfig,
    groups: BTreeMap<String, ConsumerGroup>,
    next_member: u64,
}

impl ConsumerGroups {
    pub fn new(config: ConsumerGroupConfig) -> ConsumerGroups {
        ConsumerGroups {
            config,
            ..ConsumerGroups::default()
        }
    }

    pub fn group(&self, group_id: &str) -> Option<&ConsumerGroup> {
        self.groups.get(group_id)
    }

    pub fn group_ids(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }

    /// Drops every group `owned` picks: this coordinator stopped leading
    /// their partition of `__consumer_offsets`. Their members' next
    /// heartbeats, sent to the new coordinator, find no member and rejoin.
    pub fn unload(&mut self, owned: impl Fn(&str) -> bool) {
        self.groups.retain(|group_id, _| !owned(group_id));
    }

    /// ConsumerGroupHeartbeat.
    pub fn heartbeat(
        &mut self,
        now: i64,
        group_id: &str,
        request: HeartbeatRequest,
        topics: &TopicView,
    ) -> Result<HeartbeatResponse, ConsumerGroupError> {
        if let Some(assignor) = &request.server_assignor {
            if !ASSIGNORS.contains(&assignor.as_str()) {
                return Err(ConsumerGroupError::UnsupportedAssignor);
            }
        }
        let interval = self.config.heartbeat_interval_ms;
        let session = self.config.session_timeout_ms;
        if request.member_epoch < 0 {
            return self.leave(group_id, request, topics);
        }
        // Compiled before anything changes, so a bad pattern changes nothing.
        let regex = match request.subscribed_regex.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(source) => Some(Some(TopicRegex::new(source)?)),
        };
        let generated = if request.member_id.is_empty() {
            self.next_member += 1;
            Some(format!(
                "{}-consumer-{:x}",
                request.client_id, self.next_member
            ))
        } else {
            None
        };
        let group = self
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| ConsumerGroup {
                group_id: group_id.to_string(),
                group_epoch: 0,
                assignment_epoch: 0,
                assignor: "uniform".to_string(),
                members: BTreeMap::new(),
                topic_fingerprint: Vec::new(),
            });
        let member_id = generated.unwrap_or_else(|| request.member_id.clone());
        let mut changed = false;
        if request.member_epoch == 0 {
            // Joining (or rejoining after being fenced).
            let static_member = request.instance_id.as_ref().and_then(|instance| {
                group
                    .members
                    .values()
                    .find(|member| member.instance_id.as_ref() == Some(instance))
            });
            match static_member {
                // The instance id is another member's, which has not left:
                // the newcomer is refused and the member keeps its partitions.
                Some(active) if active.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
                    return Err(ConsumerGroupError::UnreleasedInstanceId);
                }
                // A static member that left with epoch -2 is back within its
                // session: the new member id takes over its assignment, and
                // the group's epoch moves only if its subscription did.
                Some(departed) => {
                    let departed_id = departed.member_id.clone();
                    let mut member = group.members.remove(&departed_id).expect("member exists");
                    member.member_id = member_id.clone();
                    member.member_epoch = 0;
                    member.previous_epoch = 0;
                    member.rack_id = request.rack_id.clone();
                    member.client_id = request.client_id.clone();
                    member.client_host = request.client_host.clone();
                    member.last_sent = None;
                    member.session_deadline = now + session;
                    changed |= update_subscription(&mut member, &request, regex);
                    group.members.insert(member_id.clone(), member);
                }
                None => {
                    let member = ConsumerMember {
                        member_id: member_id.clone(),
                        instance_id: request.instance_id.clone(),
                        rack_id: request.rack_id.clone(),
                        client_id: request.client_id.clone(),
                        client_host: request.client_host.clone(),
                        member_epoch: 0,
                        previous_epoch: 0,
                        subscribed_topics: request.subscribed_topics.clone().unwrap_or_default(),
                        subscribed_regex: regex.flatten(),
                        assignor: request.server_assignor.clone(),
                        assigned: Partitions::new(),
                        target: Partitions::new(),
                        pending_revocation: Partitions::new(),
                        last_sent: None,
                        session_deadline: now + session,
                    };
                    group.members.insert(member_id.clone(), member);
                    changed = true;
                }
            }
        } else {
            let Some(member) = group.members.get_mut(&member_id) else {
                return Err(match &request.instance_id {
                    Some(instance)
                        if group
                            .members
                            .values()
                            .any(|member| member.instance_id.as_ref() == Some(instance)) =>
                    {
                        ConsumerGroupError::FencedInstanceId
                    }
                    _ => ConsumerGroupError::UnknownMemberId,
                });
            };
            if request.instance_id.is_some() && member.instance_id != request.instance_id {
                return Err(ConsumerGroupError::FencedInstanceId);
            }
            if member.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH
                || (request.member_epoch != member.member_epoch
                    && request.member_epoch != member.previous_epoch)
            {
                return Err(ConsumerGroupError::FencedMemberEpoch);
            }
            member.session_deadline = now + session;
            changed |= update_subscription(member, &request, regex);
        }
        if let Some(owned) = request.owned {
            let member = group.members.get_mut(&member_id).expect("member exists");
            // Partitions pending revocation that the member no longer reports
            // owning are released and may go to others.
            member.pending_revocation = intersect(&member.pending_revocation, &owned);
        }
        let fingerprint = fingerprint(group, topics);
        if fingerprint != group.topic_fingerprint {
            group.topic_fingerprint = fingerprint;
            changed = true;
        }
        if changed {
            group.group_epoch += 1;
            if let Some(assignor) = group
                .members
                .get(&member_id)
                .and_then(|member| member.assignor.clone())
            {
                group.assignor = assignor;
            }
            recompute(group, topics);
        }
        reconcile(group, &member_id);
        let member = group.members.get_mut(&member_id).expect("member exists");
        let assignment = if member.last_sent.as_ref() != Some(&member.assigned) {
            member.last_sent = Some(member.assigned.clone());
            Some(member.assigned.clone())
        } else {
            None
        };
        Ok(HeartbeatResponse {
            member_id,
            member_epoch: member.member_epoch,
            heartbeat_interval_ms: interval,
            assignment,
        })
    }

    /// A heartbeat with a negative epoch. -1: the member leaves and its
    /// partitions go to the others. -2 (static members only): the member
    /// leaves for a moment, say a restart; it stays in the group with its
    /// assignment, which nobody else gets, until its session times out or a
    /// member with its instance id joins and takes the assignment over.
    fn leave(
        &mut self,
        group_id: &str,
        request: HeartbeatRequest,
        topics: &TopicView,
    ) -> Result<HeartbeatResponse, ConsumerGroupError> {
        let answer = |member_epoch| HeartbeatResponse {
            member_id: request.member_id.clone(),
            member_epoch,
            heartbeat_interval_ms: self.config.heartbeat_interval_ms,
            assignment: None,
        };
        if request.member_epoch != LEAVE_GROUP_MEMBER_EPOCH
            && (request.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
                || request.instance_id.is_none())
        {
            return Err(ConsumerGroupError::InvalidRequest);
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return Ok(answer(request.member_epoch));
        };
        if let Some(instance) = &request.instance_id {
            let Some(member) = group
                .members
                .values_mut()
                .find(|member| member.instance_id.as_ref() == Some(instance))
            else {
                return Err(ConsumerGroupError::UnknownMemberId);
            };
            if member.member_id != request.member_id {
                return Err(ConsumerGroupError::FencedInstanceId);
            }
            if request.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
                member.pending_revocation = Partitions::new();
                return Ok(answer(LEAVE_GROUP_STATIC_MEMBER_EPOCH));
            }
        }
        if group.members.remove(&request.member_id).is_some() {
            group.group_epoch += 1;
            recompute(group, topics);
        }
        Ok(answer(request.member_epoch))
    }

    /// Removes members whose session expired; returns whether anything changed.
    /// `topics` is asked for only when a member expired and a group's
    /// assignment must be computed again.
    pub fn tick(&mut self, now: i64, topics: impl FnOnce() -> TopicView) -> bool {
        let mut topics = Some(topics);
        let mut view = None;
        let mut changed = false;
        for group in self.groups.values_mut() {
            let before = group.members.len();
            group
                .members
                .retain(|_, member| member.session_deadline > now);
            if group.members.len() != before {
                group.group_epoch += 1;
                let view =
                    view.get_or_insert_with(|| topics.take().map(|f| f()).unwrap_or_default());
                recompute(group, view);
                changed = true;
            }
        }
        changed
    }

    pub fn next_deadline(&self) -> Option<i64> {
        self.groups
            .values()
            .flat_map(|group| group.members.values().map(|member| member.session_deadline))
            .min()
    }

    /// OffsetCommit from a member of a consumer group (its epoch in place of
    /// a generation).
    pub fn check_commit(
        &self,
        group_id: &str,
        member_id: &str,
        member_epoch: i32,
    ) -> Option<Result<(), ConsumerGroupError>> {
        let group = self.groups.get(group_id)?;
        if member_id.is_empty() && member_epoch < 0 {
            return Some(if group.members.is_empty() {
                Ok(())
            } else {
                Err(ConsumerGroupError::UnknownMemberId)
            });
        }
        Some(match group.members.get(member_id) {
            None => Err(ConsumerGroupError::UnknownMemberId),
            Some(member) if member_epoch > member.member_epoch => {
                Err(ConsumerGroupError::FencedMemberEpoch)
            }
            Some(_) => Ok(()),
        })
    }

    pub fn delete_group(&mut self, group_id: &str) -> Option<bool> {
        let group = self.groups.get(group_id)?;
        if !group.members.is_empty() {
            return Some(false);
        }
        self.groups.remove(group_id);
        Some(true)
    }
}

/// Takes the subscription and assignor a heartbeat names; whether either
/// changed (which moves the group epoch).
fn update_subscription(
    member: &mut ConsumerMember,
    request: &HeartbeatRequest,
    regex: Option<Option<TopicRegex>>,
) -> bool {
    let mut changed = false;
    if let Some(regex) = regex {
        let source = |regex: &Option<TopicRegex>| regex.as_ref().map(|r| r.source.clone());
        if source(&regex) != source(&member.subscribed_regex) {
            member.subscribed_regex = regex;
            changed = true;
        }
    }
    if let Some(topics) = &request.subscribed_topics {
        if *topics != member.subscribed_topics {
            member.subscribed_topics = topics.clone();
            changed = true;
        }
    }
    if request.server_assignor.is_some() && request.server_assignor != member.assignor {
        member.assignor = request.server_assignor.clone();
        changed = true;
    }
    changed
}

fn intersect(left: &Partitions, right: &Partitions) -> Partitions {
    left.iter()
        .filter_map(|(topic, partitions)| {
            let common: BTreeSet<i32> = right
                .get(topic)
                .map(|other| partitions.intersection(other).copied().collect())
                .unwrap_or_default();
            (!common.is_empty()).then(|| (topic.clone(), common))
        })
        .collect()
}

fn minus(left: &Partitions, right: &Partitions) -> Partitions {
    left.iter()
        .filter_map(|(topic, partitions)| {
            let rest: BTreeSet<i32> = match right.get(topic) {
                Some(other) => partitions.difference(other).copied().collect(),
                None => partitions.clone(),
            };
            (!rest.is_empty()).then(|| (topic.clone(), rest))
        })
        .collect()
}

fn union_into(target: &mut Partitions, more: &Partitions) {
    for (topic, partitions) in more {
        target
            .entry(topic.clone())
            .or_default()
            .extend(partitions.iter().copied());
    }
}

/// The subscribed topics and their partition counts: when it changes (a
/// subscription changed, or a topic a name or regex covers was created,
/// deleted or grew), the group gets a new epoch and assignment.
fn fingerprint(group: &ConsumerGroup, topics: &TopicView) -> Vec<(String, i32)> {
    let mut subscribed: BTreeSet<&String> = group
        .members
        .values()
        .flat_map(|member| member.subscribed_topics.iter())
        .collect();
    subscribed.extend(topics.keys().filter(|topic| {
        group
            .members
            .values()
            .any(|member| member.subscribes(topic))
    }));
    subscribed
        .into_iter()
        .map(|topic| {
            (
                topic.clone(),
                topics.get(topic).map_or(0, |(_, count)| *count),
            )
        })
        .collect()
}

/// Computes every member's target for the current group epoch.
fn recompute(group: &mut ConsumerGroup, topics: &TopicView) {
    let members: Vec<String> = group.members.keys().cloned().collect();
    let mut targets: BTreeMap<String, Partitions> = members
        .iter()
        .map(|id| (id.clone(), Partitions::new()))
        .collect();
    let all_topics: BTreeSet<String> = topics
        .keys()
        .filter(|topic| {
            group
                .members
                .values()
                .any(|member| member.subscribes(topic))
        })
        .cloned()
        .collect();
    for topic in &all_topics {
        let count = topics[topic].1;
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|id| group.members[*id].subscribes(topic))
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        if group.assignor == "range" {
            let per = count as usize / subscribers.len();
            let extra = count as usize % subscribers.len();
            let mut next = 0;
            for (index, id) in subscribers.iter().enumerate() {
                let take = per + usize::from(index < extra);
                let partitions: BTreeSet<i32> = (next..next + take as i32).collect();
                next += take as i32;
                if !partitions.is_empty() {
                    targets
                        .get_mut(*id)
                        .expect("target")
                        .insert(topic.clone(), partitions);
                }
            }
        } else {
            // Uniform and sticky: every member's quota is the fair share
            // (one more for the first `extra`, preferring those that have
            // more already); members keep what they have up to their quota
            // and the rest goes to whoever is below theirs.
            let base = count as usize / subscribers.len();
            let extra = count as usize % subscribers.len();
            let previous = |id: &String| {
                group.members[id]
                    .target
                    .get(topic)
                    .cloned()
                    .unwrap_or_default()
            };
            let mut by_load: Vec<&String> = subscribers.clone();
            by_load.sort_by_key(|id| std::cmp::Reverse(previous(id).len()));
            let quota: BTreeMap<&String, usize> = by_load
                .iter()
                .enumerate()
                .map(|(rank, id)| (*id, base + usize::from(rank < extra)))
                .collect();
            let mut unassigned: BTreeSet<i32> = (0..count).collect();
            for id in &subscribers {
                let keep: BTreeSet<i32> = previous(id)
                    .into_iter()
                    .filter(|partition| unassigned.contains(partition))
                    .take(quota[id])
                    .collect();
                for partition in &keep {
                    unassigned.remove(partition);
                }
                if !keep.is_empty() {
                    targets
                        .get_mut(*id)
                        .expect("target")
                        .insert(topic.clone(), keep);
                }
            }
            for partition in unassigned {
                let load = |id: &String| targets[id].get(topic).map_or(0, BTreeSet::len);
                let receiver = subscribers
                    .iter()
                    .filter(|id| load(id) < quota[*id])
                    .min_by_key(|id| load(id))
                    .or_else(|| subscribers.iter().min_by_key(|id| load(id)))
                    .expect("subscribers");
                targets
                    .get_mut(*receiver)
                    .expect("target")
                    .entry(topic.clone())
                    .or_default()
                    .insert(partition);
            }
        }
    }
    for (id, target) in targets {
        if let Some(member) = group.members.get_mut(&id) {
            member.target = target;
        }
    }
    group.assignment_epoch = group.group_epoch;
}

/// Moves one member towards its target: first it must release what it
/// loses (and report it released); then it gets what no one else holds or
/// is still releasing.
fn reconcile(group: &mut ConsumerGroup, member_id: &str) {
    let mut held_by_others = Partitions::new();
    for other in group
        .members
        .values()
        .filter(|other| other.member_id != member_id)
    {
        union_into(&mut held_by_others, &other.assigned);
        union_into(&mut held_by_others, &other.pending_revocation);
    }
    let assignment_epoch = group.assignment_epoch;
    let member = group.members.get_mut(member_id).expect("member exists");
    let losing = minus(&member.assigned, &member.target);
    if !losing.is_empty() {
        union_into(&mut member.pending_revocation, &losing);
        member.assigned = intersect(&member.assigned, &member.target);
    }
    if !member.pending_revocation.is_empty() {
        return;
    }
    let free = minus(&member.target, &held_by_others);
    union_into(&mut member.assigned, &free);
    if member.member_epoch != assignment_epoch {
        member.previous_epoch = member.member_epoch;
        member.member_epoch = assignment_epoch;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> TopicView {
        BTreeMap::from([("orders".to_string(), ([1; 16], 6))])
    }

    fn join(client: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: String::new(),
            member_epoch: 0,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            subscribed_topics: Some(vec!["orders".into()]),
            subscribed_regex: None,
            server_assignor: None,
            owned: Some(Partitions::new()),
            client_id: client.into(),
            client_host: "/127.0.0.1".into(),
        }
    }

    fn beat(member_id: &str, epoch: i32, owned: Option<Partitions>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member_id.into(),
            member_epoch: epoch,
            subscribed_topics: None,
            owned,
            ..join("c")
        }
    }

    fn count(partitions: &Partitions) -> usize {
        partitions.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn a_second_member_gets_partitions_only_after_the_first_releases_them() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
        let first = groups.heartbeat(0, "g", join("a"), &topics()).unwrap();
        assert_eq!(count(first.assignment.as_ref().unwrap()), 6);
        let a = first.member_id.clone();
        let a_owned = first.assignment.unwrap();

        let second = groups.heartbeat(1, "g", join("b"), &topics()).unwrap();
        let b = second.member_id.clone();
        assert_eq!(
            count(second.assignment.as_ref().unwrap()),
            0,
            "a still owns everything"
        );

        // a learns it must give up three partitions.
        let release = groups
            .heartbeat(
                2,
                "g",
                beat(&a, first.member_epoch, Some(a_owned)),
                &topics(),
            )
            .unwrap();
        let kept = release.assignment.unwrap();
        assert_eq!(count(&kept), 3);
        // a revokes them and reports what it owns now: it reaches the new epoch.
        let settled = groups
            .heartbeat(
                3,
                "g",
                beat(&a, release.member_epoch, Some(kept.clone())),
                &topics(),
            )
            .unwrap();
        assert_eq!(
            settled.member_epoch,
            groups.group("g").unwrap().assignment_epoch
        );
        // b now gets the other three.
        let given = groups
            .heartbeat(4, "g", beat(&b, second.member_epoch, None), &topics())
            .unwrap();
        let b_owned = given.assignment.unwrap();
        assert_eq!(count(&b_owned), 3);
        for (topic, partitions) in &b_owned {
            assert!(
                kept.get(topic)
                    .is_none_or(|a_parts| a_parts.is_disjoint(partitions)),
                "never owned twice"
            );
        }
        assert_eq!(groups.group("g").unwrap().state(), "Stable");
    }

    #[test]
    fn stale_epochs_and_unknown_members_are_fenced() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
        let first = groups.heartbeat(0, "g", join("a"), &topics()).unwrap();
        assert_eq!(
            groups.heartbeat(
                1,
                "g",
                beat(&first.member_id, first.member_epoch + 5, None),
                &topics()
            ),
            Err(ConsumerGroupError::FencedMemberEpoch)
        );
        assert_eq!(
            groups.heartbeat(1, "g", beat("ghost", 3, None), &topics()),
            Err(ConsumerGroupError::UnknownMemberId)
        );
    }

    #[test]
    fn an_expired_member_is_removed_and_its_partitions_move() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig {
            session_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
        });
        let a = groups.heartbeat(0, "g", join("a"), &topics()).unwrap();
        let b = groups.heartbeat(0, "g", join("b"), &topics()).unwrap();
        let owned_a = groups
            .heartbeat(
                500,
                "g",
                beat(&a.member_id, a.member_epoch, a.assignment.clone()),
                &topics(),
            )
            .unwrap();
        let _ = owned_a;
        groups
            .heartbeat(
                900,
                "g",
                beat(&b.member_id, b.member_epoch, None),
                &topics(),
            )
            .unwrap();
        assert!(groups.tick(1_600, topics), "a missed its session");
        let after = groups
            .heartbeat(
                1_300,
                "g",
                beat(&b.member_id, b.member_epoch, None),
                &topics(),
            )
            .unwrap();
        assert_eq!(count(&after.assignment.unwrap()), 6);
    }

    fn static_join(client: &str, instance: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            instance_id: Some(instance.into()),
            ..join(client)
        }
    }

    #[test]
    fn a_static_member_is_not_taken_over_while_active_and_keeps_its_partitions_while_away() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig {
            session_timeout_ms: 1_000,
            heartbeat_interval_ms: 100,
        });
        // Two static members share the six partitions.
        let a = groups
            .heartbeat(0, "g", static_join("a", "host-a"), &topics())
            .unwrap();
        let b = groups
            .heartbeat(0, "g", static_join("b", "host-b"), &topics())
            .unwrap();
        let a_owned = groups
            .heartbeat(
                1,
                "g",
                beat(&a.member_id, a.member_epoch, a.assignment),
                &topics(),
            )
            .unwrap();
        let a_kept = a_owned.assignment.unwrap();
        let a_settled = groups
            .heartbeat(
                2,
                "g",
                beat(&a.member_id, a_owned.member_epoch, Some(a_kept.clone())),
                &topics(),
            )
            .unwrap();
        let b_given = groups
            .heartbeat(3, "g", beat(&b.member_id, b.member_epoch, None), &topics())
            .unwrap();
        let b_owned = b_given.assignment.unwrap();
        assert_eq!((count(&a_kept), count(&b_owned)), (3, 3));
        let epoch = groups.group("g").unwrap().group_epoch;

        // A second process with a's instance id while a is active is fenced
        // with UNRELEASED_INSTANCE_ID; a keeps its member id and partitions.
        assert_eq!(
            groups.heartbeat(4, "g", static_join("a-twin", "host-a"), &topics()),
            Err(ConsumerGroupError::UnreleasedInstanceId)
        );
        let group = groups.group("g").unwrap();
        assert_eq!(group.members[&a.member_id].target, a_kept);
        assert_eq!(group.group_epoch, epoch);

        // a leaves for a moment (epoch -2): it stays, with its assignment,
        // and b does not get its partitions.
        let away = HeartbeatRequest {
            instance_id: Some("host-a".into()),
            ..beat(&a.member_id, LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        };
        let left = groups.heartbeat(500, "g", away, &topics()).unwrap();
        assert_eq!(left.member_epoch, LEAVE_GROUP_STATIC_MEMBER_EPOCH);
        let b_meanwhile = groups
            .heartbeat(
                600,
                "g",
                beat(&b.member_id, b_given.member_epoch, Some(b_owned.clone())),
                &topics(),
            )
            .unwrap();
        assert!(
            b_meanwhile.assignment.is_none(),
            "b's assignment does not change"
        );
        assert_eq!(groups.group("g").unwrap().group_epoch, epoch);
        assert_eq!(
            groups.heartbeat(
                601,
                "g",
                beat(&a.member_id, a_settled.member_epoch, None),
                &topics()
            ),
            Err(ConsumerGroupError::FencedMemberEpoch),
            "the departed member id cannot heartbeat on"
        );

        // Back within the session timeout under a new member id: it gets
        // a's partitions at once, and the group epoch has not moved.
        let back = groups
            .heartbeat(900, "g", static_join("a", "host-a"), &topics())
            .unwrap();
        assert_ne!(back.member_id, a.member_id);
        assert_eq!(back.assignment, Some(a_kept.clone()));
        assert_eq!(back.member_epoch, a_settled.member_epoch);
        assert_eq!(groups.group("g").unwrap().group_epoch, epoch);
        assert!(!groups
            .group("g")
            .unwrap()
            .members
            .contains_key(&a.member_id));

        // Away again, and not back within the session timeout: the member
        // is removed and b gets everything.
        let away = HeartbeatRequest {
            instance_id: Some("host-a".into()),
            ..beat(&back.member_id, LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        };
        groups.heartbeat(1_000, "g", away, &topics()).unwrap();
        groups
            .heartbeat(
                1_500,
                "g",
                beat(&b.member_id, b_given.member_epoch, Some(b_owned)),
                &topics(),
            )
            .unwrap();
        assert!(
            groups.tick(2_100, topics),
            "the departed member's session ended"
        );
        let b_all = groups
            .heartbeat(
                2_200,
                "g",
                beat(&b.member_id, b_given.member_epoch, None),
                &topics(),
            )
            .unwrap();
        assert_eq!(count(&b_all.assignment.unwrap()), 6);
    }

    #[test]
    fn epoch_minus_two_needs_an_instance_id_and_its_owner() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
        let a = groups
            .heartbeat(0, "g", static_join("a", "host-a"), &topics())
            .unwrap();
        let dynamic = beat(&a.member_id, LEAVE_GROUP_STATIC_MEMBER_EPOCH, None);
        assert_eq!(
            groups.heartbeat(1, "g", dynamic, &topics()),
            Err(ConsumerGroupError::InvalidRequest)
        );
        let impostor = HeartbeatRequest {
            instance_id: Some("host-a".into()),
            ..beat("someone-else", LEAVE_GROUP_STATIC_MEMBER_EPOCH, None)
        };
        assert_eq!(
            groups.heartbeat(1, "g", impostor, &topics()),
            Err(ConsumerGroupError::FencedInstanceId)
        );
        // A static member leaving for good (-1) gives its partitions up.
        let gone = HeartbeatRequest {
            instance_id: Some("host-a".into()),
            ..beat(&a.member_id, LEAVE_GROUP_MEMBER_EPOCH, None)
        };
        groups.heartbeat(2, "g", gone, &topics()).unwrap();
        assert!(groups.group("g").unwrap().members.is_empty());
    }

    #[test]
    fn a_regex_subscription_follows_topics_as_they_come_and_go() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
        let mut view = BTreeMap::from([
            ("orders".to_string(), ([1; 16], 2)),
            ("orders-eu".to_string(), ([2; 16], 1)),
            ("payments".to_string(), ([3; 16], 4)),
        ]);
        let by_regex = HeartbeatRequest {
            subscribed_topics: Some(vec![]),
            subscribed_regex: Some("orders.*".into()),
            ..join("a")
        };
        // The pattern must match whole names: "payments" has no "orders" prefix.
        let joined = groups.heartbeat(0, "g", by_regex, &view).unwrap();
        let assigned = joined.assignment.unwrap();
        let topics: Vec<&String> = assigned.keys().collect();
        assert_eq!(topics, ["orders", "orders-eu"]);
        assert_eq!(count(&assigned), 3);
        let epoch = groups.group("g").unwrap().group_epoch;

        // A matching topic is created: the next heartbeat resolves it.
        view.insert("orders-us".to_string(), ([4; 16], 2));
        let owned = Some(assigned.clone());
        let grown = groups
            .heartbeat(
                1,
                "g",
                beat(&joined.member_id, joined.member_epoch, owned),
                &view,
            )
            .unwrap();
        assert!(groups.group("g").unwrap().group_epoch > epoch);
        let grown = grown.assignment.unwrap();
        assert_eq!(count(&grown), 5);
        assert!(grown.contains_key("orders-us"));

        // One is deleted: it leaves the assignment.
        view.remove("orders-eu");
        let shrunk = groups
            .heartbeat(
                2,
                "g",
                beat(&joined.member_id, grown_epoch(&groups), Some(grown)),
                &view,
            )
            .unwrap();
        let shrunk = shrunk.assignment.unwrap();
        let topics: Vec<&String> = shrunk.keys().collect();
        assert_eq!(topics, ["orders", "orders-us"]);
    }

    fn grown_epoch(groups: &ConsumerGroups) -> i32 {
        groups
            .group("g")
            .unwrap()
            .members
            .values()
            .next()
            .unwrap()
            .member_epoch
    }

    #[test]
    fn an_invalid_regex_is_refused_and_changes_nothing() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
        let bad = HeartbeatRequest {
            subscribed_regex: Some("orders(".into()),
            ..join("a")
        };
        assert_eq!(
            groups.heartbeat(0, "g", bad, &topics()).map(|_| ()),
            Err(ConsumerGroupError::InvalidRegularExpression)
        );
        assert!(groups.group("g").is_none());
    }

    #[test]
    fn uniform_assignment_stays_balanced_as_members_join() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
        for client in ["a", "b", "c", "d"] {
            groups.heartbeat(0, "g", join(client), &topics()).unwrap();
        }
        let mut sizes: Vec<usize> = groups
            .group("g")
            .unwrap()
            .members
            .values()
            .map(|m| count(&m.target))
            .collect();
        sizes.sort();
        assert_eq!(sizes, vec![1, 1, 2, 2]);
    }

    #[test]
    fn range_assignor_gives_contiguous_ranges() {
        let mut groups = ConsumerGroups::new(ConsumerGroupConfig::default());
        let mut request = join("a");
        request.server_assignor = Some("range".into());
        let a = groups.heartbeat(0, "g", request, &topics()).unwrap();
        assert_eq!(a.assignment.unwrap()["orders"], (0..6).collect());
        let mut unknown = join("b");
        unknown.server_assignor = Some("fancy".into());
        assert_eq!(
            groups.heartbeat(0, "g", unknown, &topics()),
            Err(ConsumerGroupError::UnsupportedAssignor)
        );
    }
}
