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
}

impl ConsumerGroupError {
    pub fn code(self) -> i16 {
        match self {
            ConsumerGroupError::UnknownMemberId => 25,
            ConsumerGroupError::FencedMemberEpoch => 110,
            ConsumerGroupError::UnsupportedAssignor => 112,
            ConsumerGroupError::InvalidRequest => 42,
            ConsumerGroupError::GroupIdNotFound => 69,
            ConsumerGroupError::InconsistentGroupProtocol => 23,
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
            // -1: leave; -2: a static member leaves for a moment (treated as leaving).
            if let Some(group) = self.groups.get_mut(group_id) {
                if group.members.remove(&request.member_id).is_some() {
                    group.group_epoch += 1;
                    recompute(group, topics);
                }
            }
            return Ok(HeartbeatResponse {
                member_id: request.member_id,
                member_epoch: request.member_epoch,
                heartbeat_interval_ms: interval,
                assignment: None,
            });
        }
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
            // Joining (or rejoining after being fenced): a fresh member.
            let replaced = request.instance_id.as_ref().and_then(|instance| {
                group
                    .members
                    .values()
                    .find(|member| member.instance_id.as_ref() == Some(instance))
                    .map(|member| member.member_id.clone())
            });
            let previous = replaced.and_then(|old| group.members.remove(&old));
            let member = ConsumerMember {
                member_id: member_id.clone(),
                instance_id: request.instance_id.clone(),
                rack_id: request.rack_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                member_epoch: 0,
                previous_epoch: 0,
                subscribed_topics: request.subscribed_topics.clone().unwrap_or_default(),
                assignor: request.server_assignor.clone(),
                assigned: Partitions::new(),
                target: previous.map(|member| member.target).unwrap_or_default(),
                pending_revocation: Partitions::new(),
                last_sent: None,
                session_deadline: now + session,
            };
            group.members.insert(member_id.clone(), member);
            changed = true;
        } else {
            let Some(member) = group.members.get_mut(&member_id) else {
                return Err(ConsumerGroupError::UnknownMemberId);
            };
            if request.member_epoch != member.member_epoch
                && request.member_epoch != member.previous_epoch
            {
                return Err(ConsumerGroupError::FencedMemberEpoch);
            }
            member.session_deadline = now + session;
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

fn fingerprint(group: &ConsumerGroup, topics: &TopicView) -> Vec<(String, i32)> {
    let subscribed: BTreeSet<&String> = group
        .members
        .values()
        .flat_map(|member| member.subscribed_topics.iter())
        .collect();
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
    let mut all_topics: BTreeSet<String> = BTreeSet::new();
    for member in group.members.values() {
        all_topics.extend(
            member
                .subscribed_topics
                .iter()
                .filter(|topic| topics.contains_key(*topic))
                .cloned(),
        );
    }
    for topic in &all_topics {
        let count = topics[topic].1;
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|id| group.members[*id].subscribed_topics.contains(topic))
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
