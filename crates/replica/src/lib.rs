//! A partition's replication as its leader keeps it (Kafka's `Partition`
//! and `Replica` bookkeeping), as a pure state machine: follower fetch
//! positions in, ISR proposals, the high watermark and acks=all verdicts out.
//! Time comes in as an argument; nothing here does I/O.
//!
//! ```text
//!  follower fetch(offset) ──► positions ──► high watermark = min over the
//!  local durable offset ─────►            maximal ISR of durable offsets
//!                                  │
//!  tick(now) ──► one ISR proposal at a time (AlterPartition):
//!                shrink: an ISR member not caught up for replica.lag.time.max.ms
//!                expand: a replica at or past the high watermark and the epoch's start
//!  committed metadata ──► the proposal is done (or refused) ──► next one
//! ```
//!
//! **Strom's departure from Kafka: the high watermark is durable.** A
//! follower fetches from offset X only once everything below X is fsynced
//! on it (it syncs before it asks for more), so a fetch offset is a durable
//! offset; the leader counts its own log only up to what it has fsynced.
//! The high watermark is the lowest of those over the ISR, so an acks=all
//! acknowledgement means "on disk on every in-sync replica", and a power
//! loss of the whole cluster loses nothing acknowledged.
//!
//! **The maximal ISR** (KIP-497's rule): while a shrink is pending, the high
//! watermark still waits for the members being removed; while an expansion
//! is pending, it already waits for the member being added. So the high
//! watermark never counts on fewer replicas than the committed ISR.

use std::collections::BTreeMap;

mod epochs;
pub use epochs::{check_fetch, truncation, FetchPosition, Truncation};

/// Kafka's `replica.lag.time.max.ms` and `min.insync.replicas`.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaConfig {
    pub replica_lag_time_max_ms: i64,
    pub min_insync_replicas: usize,
}

/// What the leader knows of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// Its last fetch offset: everything below it is durable on it.
    pub durable_offset: i64,
    /// The broker epoch it fetched under (ISR additions carry it).
    pub broker_epoch: i64,
    /// When it last had everything the leader had (Kafka's
    /// `lastCaughtUpTimeMs`).
    pub last_caught_up_ms: i64,
    /// The leader's durable end at its previous fetch, and when that was.
    last_fetch_leader_end: i64,
    last_fetch_ms: i64,
}

/// An ISR change for the controller (AlterPartition): the new ISR with the
/// broker epoch of each member, based on `partition_epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<(i32, i64)>,
}

/// Why a proposal did not come back as the committed ISR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The controller refused it as it stood (an ineligible replica, an
    /// invalid request): nothing changed, so the next tick proposes again
    /// from the committed state.
    NotApplied,
    /// The outcome is unknown (the request or its answer was lost, or timed
    /// out), or the controller holds a newer partition: the proposal may have
    /// been committed, and the metadata will say. Until then it stays pending,
    /// still counted in the maximal ISR (reverting to the committed ISR could
    /// let the high watermark pass a member the controller just added), and
    /// the next tick sends it again (Kafka's AlterPartition retries).
    Unknown,
}

/// How an acks=all produce stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAll {
    /// Not yet under the high watermark.
    Waiting,
    /// Durable on every ISR member.
    Acknowledged,
    /// Under the high watermark, but the ISR shrank below
    /// `min.insync.replicas` meanwhile (NOT_ENOUGH_REPLICAS_AFTER_APPEND):
    /// the outcome is indeterminate for the client.
    NotEnoughReplicasAfterAppend,
}

/// The leader's replication state of one partition.
#[derive(Debug, Clone)]
pub struct Leader {
    node_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    /// Where this leader epoch began in the log: a follower must be past it
    /// to join the ISR (it has then truncated to this leader's log).
    epoch_start_offset: i64,
    replicas: Vec<i32>,
    /// The committed ISR.
    isr: Vec<i32>,
    /// The ISR proposed and not yet committed or refused.
    pending: Option<Vec<i32>>,
    /// The pending proposal, to send again after an unknown outcome.
    resend: Option<IsrProposal>,
    followers: BTreeMap<i32, Follower>,
    /// The leader's own log: its end, and what of it is fsynced.
    log_end: i64,
    durable_end: i64,
    high_watermark: i64,
    config: ReplicaConfig,
}

/// The committed state of a partition, as the metadata has it.
#[derive(Debug, Clone)]
pub struct PartitionState {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl Leader {
    /// Becomes leader of `state` with a log ending at `log_end` (of which
    /// `durable_end` is fsynced) and a high watermark it had before
    /// (`high_watermark`, from its checkpoint or its time as follower).
    pub fn new(
        node_id: i32,
        state: &PartitionState,
        log_end: i64,
        durable_end: i64,
        high_watermark: i64,
        config: ReplicaConfig,
        now_ms: i64,
    ) -> Leader {
        assert!(state.isr.contains(&node_id), "only an ISR member leads");
        assert!(durable_end <= log_end && high_watermark <= durable_end);
        let followers = state
            .replicas
            .iter()
            .filter(|&&r| r != node_id)
            .map(|&r| {
                // In-sync followers get a full lag period to show up.
                let caught_up = if state.isr.contains(&r) {
                    now_ms
                } else {
                    i64::MIN / 2
                };
                (
                    r,
                    Follower {
                        durable_offset: -1,
                        broker_epoch: -1,
                        last_caught_up_ms: caught_up,
                        last_fetch_leader_end: -1,
                        last_fetch_ms: i64::MIN / 2,
                    },
                )
            })
            .collect();
        Leader {
            node_id,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            epoch_start_offset: log_end,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            pending: None,
            resend: None,
            followers,
            log_end,
            durable_end,
            high_watermark,
            config,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn follower(&self, node_id: i32) -> Option<&Follower> {
        self.followers.get(&node_id)
    }

    /// The committed ISR plus a pending expansion's new member, never less
    /// than the committed ISR (see the crate docs).
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        for member in self.pending.iter().flatten() {
            if !isr.contains(member) {
                isr.push(*member);
            }
        }
        isr
    }

    /// Records were appended (`log_end`) and fsynced up to `durable_end`.
    /// Returns whether the high watermark moved.
    /// A durable end below the one known (a topic whose durability was
    /// relaxed counted its whole log, then was made strict again) keeps
    /// the one known: what was counted stays counted.
    pub fn on_local_log(&mut self, log_end: i64, durable_end: i64) -> bool {
        assert!(log_end >= self.log_end, "a leader's log never shrinks");
        self.log_end = log_end;
        self.durable_end = durable_end.min(log_end).max(self.durable_end);
        self.advance()
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    /// Takes a changed `min.insync.replicas` (a topic config change).
    pub fn set_min_insync_replicas(&mut self, min_insync_replicas: usize) {
        self.config.min_insync_replicas = min_insync_replicas;
    }

    /// A follower fetched from `offset` (so has everything below it on
    /// disk) under `broker_epoch`. Returns whether the high watermark moved.
    /// A fetch from a broker that is not a replica is ignored.
    pub fn on_fetch(&mut self, node_id: i32, offset: i64, broker_epoch: i64, now_ms: i64) -> bool {
        let leader_end = self.durable_end;
        let Some(follower) = self.followers.get_mut(&node_id) else {
            return false;
        };
        // Kafka's rule: caught up now if at the leader's end; caught up as of
        // the previous fetch if at least where the leader was then.
        if offset >= leader_end {
            follower.last_caught_up_ms = follower.last_caught_up_ms.max(now_ms);
        } else if offset >= follower.last_fetch_leader_end {
            follower.last_caught_up_ms = follower.last_caught_up_ms.max(follower.last_fetch_ms);
        }
        follower.durable_offset = offset.min(self.log_end);
        follower.broker_epoch = broker_epoch;
        follower.last_fetch_leader_end = leader_end;
        follower.last_fetch_ms = now_ms;
        self.advance()
    }

    /// The high watermark: the lowest durable offset over the maximal ISR,
    /// never going back.
    fn advance(&mut self) -> bool {
        let lowest = self
            .maximal_isr()
            .iter()
            .map(|&member| match member == self.node_id {
                true => self.durable_end,
                false => self.followers.get(&member).map_or(-1, |f| f.durable_offset),
            })
            .min()
            .unwrap_or(self.durable_end);
        if lowest > self.high_watermark {
            self.high_watermark = lowest;
            true
        } else {
            false
        }
    }

    /// The ISR change due at `now_ms`, if none is pending: first a shrink
    /// (members not caught up for `replica.lag.time.max.ms`), else an
    /// expansion (replicas at or past the high watermark and the start of
    /// this leader epoch).
    pub fn tick(&mut self, now_ms: i64) -> Option<IsrProposal> {
        if self.pending.is_some() {
            return self.resend.take();
        }
        let lag = self.config.replica_lag_time_max_ms;
        let lagging: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&m| m != self.node_id)
            .filter(|m| self.followers[m].last_caught_up_ms + lag < now_ms)
            .collect();
        let proposed: Vec<i32> = if !lagging.is_empty() {
            self.isr
                .iter()
                .copied()
                .filter(|m| !lagging.contains(m))
                .collect()
        } else {
            // A new member must have fetched under a known broker epoch:
            // the controller checks it, so that a restarted replica cannot
            // join on a claim its earlier incarnation made.
            let joining = self.replicas.iter().copied().find(|r| {
                !self.isr.contains(r)
                    && self.followers.get(r).is_some_and(|f| {
                        f.broker_epoch >= 0
                            && f.durable_offset >= self.high_watermark
                            && f.durable_offset >= self.epoch_start_offset
                    })
            })?;
            let mut isr = self.isr.clone();
            isr.push(joining);
            isr
        };
        self.pending = Some(proposed.clone());
        // An expansion counts at once; a shrink only once committed.
        self.advance();
        let epoch_of = |member: i32| match member == self.node_id {
            true => -1,
            false => self.followers[&member].broker_epoch,
        };
        let proposal = IsrProposal {
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr: proposed.iter().map(|&m| (m, epoch_of(m))).collect(),
        };
        self.resend = None;
        Some(proposal)
    }

    /// The controller committed a change of this partition (or the leader
    /// read it from the metadata): takes the new ISR and partition epoch and
    /// ends the pending proposal. The state it already has (the metadata
    /// touched the topic, not this partition) changes nothing: the pending
    /// proposal may still be committed, so it stays counted. Returns false
    /// when this node no longer leads in this epoch: the caller makes it a
    /// follower.
    pub fn on_committed(&mut self, state: &PartitionState) -> bool {
        if state.leader_epoch != self.leader_epoch {
            return false;
        }
        assert!(state.partition_epoch >= self.partition_epoch);
        if state.partition_epoch == self.partition_epoch {
            return true;
        }
        // A member that left (fenced by the controller, or shrunk out for
        // lag) rejoins only on a fetch made after it left: what it fetched
        // before proves nothing about the broker it is now, if it lives.
        for left in self.isr.iter().filter(|m| !state.isr.contains(m)) {
            if let Some(follower) = self.followers.get_mut(left) {
                follower.broker_epoch = -1;
            }
        }
        self.partition_epoch = state.partition_epoch;
        self.isr = state.isr.clone();
        self.pending = None;
        self.resend = None;
        self.advance();
        true
    }

    /// The pending proposal (`proposal`, as `tick` gave it) did not come
    /// back committed; see [`Refusal`].
    pub fn on_refused(&mut self, proposal: &IsrProposal, refusal: Refusal) {
        if self.pending.is_none() || proposal.partition_epoch != self.partition_epoch {
            return; // settled meanwhile
        }
        match refusal {
            Refusal::NotApplied => {
                // A joiner the controller refused (fenced, restarted) must
                // fetch again before it is proposed again.
                for joiner in self.pending.take().into_iter().flatten() {
                    if !self.isr.contains(&joiner) {
                        if let Some(follower) = self.followers.get_mut(&joiner) {
                            follower.broker_epoch = -1;
                        }
                    }
                }
            }
            Refusal::Unknown => self.resend = Some(proposal.clone()),
        }
    }

    /// Whether an acks=all produce may append: the ISR must have at least
    /// `min.insync.replicas` members (else NOT_ENOUGH_REPLICAS).
    pub fn admits_acks_all(&self) -> bool {
        self.isr.len() >= self.config.min_insync_replicas
    }

    /// How an acks=all produce whose records end before `end_offset` stands.
    pub fn acks_all(&self, end_offset: i64) -> AcksAll {
        if self.high_watermark < end_offset {
            AcksAll::Waiting
        } else if self.isr.len() < self.config.min_insync_replicas {
            AcksAll::NotEnoughReplicasAfterAppend
        } else {
            AcksAll::Acknowledged
        }
    }
}

#[cfg(test)]
mod tests;
