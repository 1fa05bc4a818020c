//! A seeded simulation of one partition's replication: three replicas
//! running the replica core (`strom_replica::Leader`, `check_fetch`,
//! `truncation`, and `strom_log::LeaderEpochCache`), with the real controller
//! deciding leaders and ISR changes. Logs are lists of records in memory, each
//! with a durable (fsynced) prefix; the I/O glue around the pure cores (what
//! the broker's replica fetcher, fetch handler and partition do with their
//! verdicts) is modelled here as the broker does it.
//!
//! **Faults:** a replica crashes, losing what it had not fsynced and its
//! volatile state (it restarts as a new incarnation, at its checkpointed high
//! watermark), or pauses and later resumes with its volatile state as it was
//! (a SIGSTOP: it may still believe it leads); replicas learn the metadata
//! late; fetches and their responses are lost; ISR proposals, or the
//! controller's answers to them, are lost (the leader cannot know the
//! outcome and sends again), and proposals from different leaders race;
//! the controller fails over; time jumps.
//!
//! **After every step:**
//! * the image keeps the controller's invariants (ISR within replicas, no
//!   fenced broker in an ISR, the leader in the ISR), and one leader epoch
//!   has one leader;
//! * the committed prefix (every record a leader's high watermark ever
//!   passed) is the same on every replica: whatever a replica counts as
//!   committed (below its high watermark) is that prefix, and every member
//!   of the committed ISR holds all of it durably;
//! * a leader's high watermark never goes back;
//! * every acknowledged acks=all write is in the committed prefix, at its
//!   offset.
//!
//! **Then healing:** every replica runs; the ISR must grow back to all
//! three, every log must equal the leader's, and an acks=all write must be
//! acknowledged again.

use std::collections::{BTreeMap, VecDeque};

use strom_controller::{
    invariants, AlterPartition, Controller, ControllerConfig, ErrorKind, Heartbeat, IsrMember,
    NewTopic,
};
use strom_log::LeaderEpochCache;
use strom_metadata::{MetadataImage, MetadataRecord, NO_LEADER};
use strom_replica::{
    check_fetch, truncation, AcksAll, FetchPosition, IsrProposal, Leader, PartitionState, Refusal,
    ReplicaConfig,
};
use uuid::Uuid;

use crate::Rng;

const NODES: i32 = 3;
const TOPIC: &str = "replicated";
const SESSION_MS: i64 = 1_000;
const HEARTBEAT_MS: i64 = 200;
const CONFIG: ReplicaConfig = ReplicaConfig {
    replica_lag_time_max_ms: 600,
    min_insync_replicas: 2,
};

/// A record: the leader epoch it was written in, and a value unique in the run.
type Record = (i32, u64);

/// One replica's process and disk.
#[derive(Debug)]
struct Replica {
    running: bool,
    paused: bool,
    broker_epoch: i64,
    directory_id: Uuid,
    log: Vec<Record>,
    /// The fsynced prefix: what a crash keeps.
    durable: usize,
    epochs: LeaderEpochCache,
    high_watermark: i64,
    /// What the last high-watermark checkpoint wrote (on disk).
    checkpoint: i64,
    /// The committed metadata records it has applied.
    learned: usize,
    /// When it last heartbeated.
    heartbeat_at: i64,
    /// The partition as it last learned it.
    view: Option<PartitionState>,
    view_leader: i32,
    /// Its replication state while it leads (in `view`'s leader epoch).
    leader: Option<Leader>,
}

impl Replica {
    fn last_fetched_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    fn end(&self) -> i64 {
        self.log.len() as i64
    }

    fn truncate(&mut self, offset: i64) {
        let offset = offset.clamp(0, self.end()) as usize;
        self.log.truncate(offset);
        self.durable = self.durable.min(offset);
        self.epochs.truncate_from_end(offset as i64);
        self.high_watermark = self.high_watermark.min(offset as i64);
    }

    fn append(&mut self, records: &[Record]) {
        for &(epoch, value) in records {
            if self.epochs.latest_epoch() != Some(epoch) {
                self.epochs.assign(epoch, self.end());
            }
            self.log.push((epoch, value));
        }
    }

    /// Group commit: everything appended is fsynced.
    fn flush(&mut self) {
        self.durable = self.log.len();
        if let Some(leader) = &mut self.leader {
            leader.on_local_log(self.log.len() as i64, self.durable as i64);
            self.high_watermark = leader.high_watermark();
        }
    }
}

/// An acks=all produce waiting for its verdict.
#[derive(Debug, Clone, Copy)]
struct Pending {
    node: i32,
    leader_epoch: i32,
    start: i64,
    end: i64,
}

/// What one run saw, for the test's report.
#[derive(Debug, Default)]
pub struct ReplicationOutcome {
    pub steps: usize,
    pub acknowledged: usize,
    pub elections: usize,
    pub truncations: usize,
    pub crashes: usize,
}

pub struct ReplicationSimulation {
    rng: Rng,
    controller: Controller,
    config: ControllerConfig,
    records: Vec<MetadataRecord>,
    committed: MetadataImage,
    topic_id: Uuid,
    replicas: BTreeMap<i32, Replica>,
    /// ISR proposals on their way: (proposer, its leader epoch, request).
    in_flight: VecDeque<(i32, i32, AlterPartition)>,
    pending: Vec<Pending>,
    /// Every record some leader's high watermark passed, in order.
    committed_prefix: Vec<Record>,
    /// leader epoch → its leader.
    leaders_by_epoch: BTreeMap<i32, i32>,
    next_value: u64,
    now: i64,
    outcome: ReplicationOutcome,
    /// STROM_SIM_TRACE set: every step and the state after it on stderr.
    trace: bool,
}

impl ReplicationSimulation {
    pub fn new(seed: u64) -> ReplicationSimulation {
        let config = ControllerConfig {
            session_timeout_ms: SESSION_MS,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 5_000,
            ..ControllerConfig::default()
        };
        let mut rng = Rng::new(seed);
        let replicas = (1..=NODES)
            .map(|node| {
                let replica = Replica {
                    running: false,
                    paused: false,
                    broker_epoch: -1,
                    directory_id: Uuid::from_u128(rng.next_u64() as u128),
                    log: Vec::new(),
                    durable: 0,
                    epochs: LeaderEpochCache::default(),
                    high_watermark: 0,
                    checkpoint: 0,
                    learned: 0,
                    heartbeat_at: 0,
                    view: None,
                    view_leader: NO_LEADER,
                    leader: None,
                };
                (node, replica)
            })
            .collect();
        let mut sim = ReplicationSimulation {
            rng,
            controller: Controller::new(config.clone(), MetadataImage::default(), 0),
            config,
            records: Vec::new(),
            committed: MetadataImage::default(),
            topic_id: Uuid::nil(),
            replicas,
            in_flight: VecDeque::new(),
            pending: Vec::new(),
            committed_prefix: Vec::new(),
            leaders_by_epoch: BTreeMap::new(),
            next_value: 0,
            now: 0,
            outcome: ReplicationOutcome::default(),
            trace: std::env::var_os("STROM_SIM_TRACE").is_some(),
        };
        for node in 1..=NODES {
            sim.start(node);
        }
        for node in 1..=NODES {
            sim.learn(node);
            sim.heartbeat(node);
        }
        let topic = NewTopic {
            name: TOPIC.to_string(),
            partitions: Some(1),
            replication_factor: Some(NODES as i16),
            ..NewTopic::default()
        };
        let decision = sim
            .controller
            .create_topic(topic, false)
            .expect("three unfenced brokers take a topic of three replicas");
        sim.commit(decision.records);
        sim.topic_id = sim.committed.topics[TOPIC].topic_id;
        for node in 1..=NODES {
            sim.learn(node);
        }
        sim
    }

    fn commit(&mut self, records: Vec<MetadataRecord>) {
        for record in records {
            self.committed.apply(&record);
            self.records.push(record);
        }
        let broken = invariants::violations(&self.committed);
        assert!(broken.is_empty(), "{broken:#?}");
        if let Some(state) = self.partition() {
            if state.1 != NO_LEADER {
                let leader = *self
                    .leaders_by_epoch
                    .entry(state.0.leader_epoch)
                    .or_insert_with(|| {
                        self.outcome.elections += 1;
                        state.1
                    });
                assert_eq!(
                    leader, state.1,
                    "leader epoch {} had leader {leader}, now {}",
                    state.0.leader_epoch, state.1
                );
            }
        }
    }

    /// The committed partition state and its leader.
    fn partition(&self) -> Option<(PartitionState, i32)> {
        let topic = self.committed.topics.get(TOPIC)?;
        let p = &topic.partitions[0];
        Some((
            PartitionState {
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            },
            p.leader,
        ))
    }

    /// A process starts on the replica's disk: a new incarnation.
    fn start(&mut self, node: i32) {
        let registration =
            crate::registration(&mut self.rng, node, self.replicas[&node].directory_id);
        if let Ok(decision) = self.controller.register_broker(registration, self.now) {
            self.commit(decision.records);
            let replica = self.replicas.get_mut(&node).expect("a replica");
            replica.running = true;
            replica.paused = false;
            replica.broker_epoch = decision.reply;
            replica.learned = 0;
            replica.view = None;
            replica.view_leader = NO_LEADER;
            replica.leader = None;
            // Reopened at its checkpointed high watermark, within its log.
            replica.high_watermark = replica.checkpoint.clamp(0, replica.end());
        }
    }

    /// kill -9: the unsynced tail and everything in memory are gone.
    fn crash(&mut self, node: i32) {
        self.outcome.crashes += 1;
        let replica = self.replicas.get_mut(&node).expect("a replica");
        replica.running = false;
        replica.paused = false;
        let durable = replica.durable as i64;
        replica.truncate(durable);
        replica.leader = None;
        replica.view = None;
        self.pending.retain(|p| p.node != node);
    }

    fn heartbeat(&mut self, node: i32) {
        let replica = &self.replicas[&node];
        let request = Heartbeat {
            node_id: node,
            broker_epoch: replica.broker_epoch,
            metadata_offset: replica.learned as u64,
            want_fence: false,
            want_shutdown: false,
        };
        match self.controller.heartbeat(request, self.now) {
            Ok(decision) => self.commit(decision.records),
            // Replaced by a newer incarnation: this process stops.
            Err(_) => self.replicas.get_mut(&node).expect("a replica").running = false,
        }
    }

    /// The replica applies the committed metadata: it becomes leader (the
    /// epoch starts in its cache at its log end), stays leader with a new
    /// ISR, or follows.
    fn learn(&mut self, node: i32) {
        let learned = self.records.len();
        self.replicas.get_mut(&node).expect("a replica").learned = learned;
        let Some((state, leader)) = self.partition() else {
            return;
        };
        let now = self.now;
        let replica = self.replicas.get_mut(&node).expect("a replica");
        replica.view = Some(state.clone());
        replica.view_leader = leader;
        if leader != node {
            replica.leader = None;
            return;
        }
        let same_epoch = replica
            .leader
            .as_ref()
            .is_some_and(|l| l.leader_epoch() == state.leader_epoch);
        if same_epoch {
            let leading = replica.leader.as_mut().expect("leading");
            let before = leading.high_watermark();
            assert!(leading.on_committed(&state));
            assert!(
                leading.high_watermark() >= before,
                "the high watermark went back"
            );
            replica.high_watermark = leading.high_watermark();
        } else {
            replica.epochs.assign(state.leader_epoch, replica.end());
            let durable = replica.durable as i64;
            replica.leader = Some(Leader::new(
                node,
                &state,
                replica.end(),
                durable,
                replica.high_watermark.min(durable),
                CONFIG,
                now,
            ));
        }
        self.extend_committed(node);
    }

    /// A leader's high watermark moved: the records it passed are committed.
    fn extend_committed(&mut self, node: i32) {
        let replica = &self.replicas[&node];
        let Some(leader) = &replica.leader else {
            return;
        };
        let high_watermark = leader.high_watermark() as usize;
        for offset in 0..high_watermark {
            match self.committed_prefix.get(offset) {
                Some(record) => assert_eq!(
                    *record, replica.log[offset],
                    "node {node} leads with a high watermark of {high_watermark} over offset {offset}, which holds another record than the committed one"
                ),
                None => self.committed_prefix.push(replica.log[offset]),
            }
        }
    }

    /// Group commit on one replica.
    fn flush(&mut self, node: i32) {
        self.replicas.get_mut(&node).expect("a replica").flush();
        self.extend_committed(node);
    }

    /// A leader appends an acks=all produce.
    fn produce(&mut self, node: i32) {
        let count = 1 + self.rng.below(3);
        let replica = self.replicas.get_mut(&node).expect("a replica");
        let Some(leader) = &replica.leader else {
            return;
        };
        if !leader.admits_acks_all() {
            return; // NOT_ENOUGH_REPLICAS
        }
        let leader_epoch = leader.leader_epoch();
        let start = replica.end();
        let records: Vec<Record> = (0..count)
            .map(|i| (leader_epoch, self.next_value + i))
            .collect();
        self.next_value += count;
        replica.append(&records);
        let end = replica.end();
        let durable = replica.durable as i64;
        replica
            .leader
            .as_mut()
            .expect("leading")
            .on_local_log(end, durable);
        self.pending.push(Pending {
            node,
            leader_epoch,
            start,
            end,
        });
        self.extend_committed(node);
    }

    /// A follower fsyncs what it has (it does before every fetch) and
    /// fetches from the leader it knows; the response may be lost.
    fn fetch(&mut self, node: i32, faults: bool) {
        let (leader_node, epoch) = {
            let replica = &self.replicas[&node];
            match &replica.view {
                Some(view) if replica.view_leader != node && replica.view_leader != NO_LEADER => {
                    (replica.view_leader, view.leader_epoch)
                }
                _ => return,
            }
        };
        self.flush(node);
        let (leader_running, leader_paused) = {
            let l = &self.replicas[&leader_node];
            (l.running, l.paused)
        };
        if !leader_running || leader_paused || (faults && self.rng.chance(10)) {
            return; // unreachable, or the request was lost
        }
        let (fetch_offset, last_fetched, broker_epoch) = {
            let f = &self.replicas[&node];
            (f.end(), f.last_fetched_epoch(), f.broker_epoch)
        };
        let now = self.now;
        // With faults, a response carries a few records; healing, all.
        let take = match faults {
            true => self.rng.below(6) as usize,
            false => usize::MAX,
        };
        let source = self.replicas.get_mut(&leader_node).expect("a replica");
        let source_end = source.end();
        let end_for_epoch =
            last_fetched.map_or((-1, -1), |e| source.epochs.end_offset_for(e, source_end));
        let Some(leader) = source.leader.as_mut() else {
            return; // NOT_LEADER_OR_FOLLOWER
        };
        if leader.leader_epoch() != epoch {
            return; // FENCED_LEADER_EPOCH or UNKNOWN_LEADER_EPOCH
        }
        let verdict = check_fetch(fetch_offset, last_fetched, end_for_epoch, 0, source_end);
        let response = match verdict {
            FetchPosition::OutOfRange => return,
            FetchPosition::Diverging { epoch, end_offset } => Err((epoch, end_offset)),
            FetchPosition::Agrees => {
                let before = leader.high_watermark();
                leader.on_fetch(node, fetch_offset, broker_epoch, now);
                assert!(
                    leader.high_watermark() >= before,
                    "the high watermark went back"
                );
                source.high_watermark = leader.high_watermark();
                let from = fetch_offset as usize;
                let to = from.saturating_add(take).min(source.log.len());
                Ok((source.log[from..to].to_vec(), leader.high_watermark()))
            }
        };
        self.extend_committed(leader_node);
        if faults && self.rng.chance(10) {
            return; // the response was lost
        }
        let follower = self.replicas.get_mut(&node).expect("a replica");
        match response {
            Err((epoch, end_offset)) => {
                let local = follower.epochs.end_offset_for(epoch, follower.end());
                let cut = truncation(epoch, end_offset, local, follower.end());
                let committed = self.committed_prefix.len() as i64;
                let holds_committed = follower.end() >= committed
                    && follower.log[..committed as usize] == self.committed_prefix[..];
                assert!(
                    !holds_committed || cut.offset >= committed,
                    "node {node} truncates to {} below the committed prefix ({committed})",
                    cut.offset
                );
                follower.truncate(cut.offset);
                self.outcome.truncations += 1;
            }
            Ok((records, leader_high_watermark)) => {
                follower.append(&records);
                follower.high_watermark = leader_high_watermark.min(follower.durable as i64);
            }
        }
    }

    /// The leader's due ISR change goes to the controller.
    fn propose(&mut self, node: i32) {
        let now = self.now;
        let replica = self.replicas.get_mut(&node).expect("a replica");
        let broker_epoch = replica.broker_epoch;
        let Some(leader) = replica.leader.as_mut() else {
            return;
        };
        let before = leader.high_watermark();
        let Some(proposal) = leader.tick(now) else {
            return;
        };
        assert!(
            leader.high_watermark() >= before,
            "the high watermark went back"
        );
        replica.high_watermark = leader.high_watermark();
        let request = AlterPartition {
            broker_id: node,
            broker_epoch,
            topic_id: self.topic_id,
            partition: 0,
            leader_epoch: proposal.leader_epoch,
            partition_epoch: proposal.partition_epoch,
            new_isr: proposal
                .isr
                .iter()
                .map(|&(node_id, broker_epoch)| IsrMember {
                    node_id,
                    broker_epoch,
                })
                .collect(),
        };
        if self.trace {
            eprintln!("propose from {node}: {proposal:?}");
        }
        self.in_flight
            .push_back((node, proposal.leader_epoch, request));
        self.extend_committed(node);
    }

    /// Delivers one ISR proposal. Each proposer's arrive in the order it
    /// sent them (one connection), but proposers race each other (a paused
    /// old leader's arrives late). With faults, some are lost before the
    /// controller sees them, and some answers are lost after it decided:
    /// either way the proposer cannot know the outcome.
    fn deliver(&mut self, faults: bool) {
        if self.in_flight.is_empty() {
            return;
        }
        let index = match faults {
            true => {
                let pick = self.rng.below(self.in_flight.len() as u64) as usize;
                let proposer = self.in_flight[pick].0;
                self.in_flight
                    .iter()
                    .position(|(p, _, _)| *p == proposer)
                    .expect("the picked one at least")
            }
            false => 0,
        };
        let (proposer, leader_epoch, request) = self.in_flight.remove(index).expect("in range");
        let fate = if faults { self.rng.below(10) } else { 9 };
        let proposal = IsrProposal {
            leader_epoch,
            partition_epoch: request.partition_epoch,
            isr: request
                .new_isr
                .iter()
                .map(|m| (m.node_id, m.broker_epoch))
                .collect(),
        };
        // As the broker tells a refusal of the proposal as it stood from
        // an outcome it cannot know.
        let refusal = match fate {
            0 => Some(Refusal::Unknown), // lost on the way
            _ => {
                let answer = match self.controller.alter_partition(request) {
                    Ok(decision) => {
                        self.commit(decision.records);
                        None
                    }
                    Err(error) => Some(match error.kind {
                        ErrorKind::IneligibleReplica | ErrorKind::InvalidRequest => {
                            Refusal::NotApplied
                        }
                        _ => Refusal::Unknown,
                    }),
                };
                match fate {
                    1 => Some(Refusal::Unknown), // decided, answer lost
                    _ => answer,
                }
            }
        };
        if self.trace {
            eprintln!("deliver from {proposer} epoch {leader_epoch}: {proposal:?} fate {fate} -> {refusal:?}");
        }
        if let Some(refusal) = refusal {
            let replica = self.replicas.get_mut(&proposer).expect("a replica");
            if let Some(leader) = replica
                .leader
                .as_mut()
                .filter(|l| l.leader_epoch() == leader_epoch)
            {
                leader.on_refused(&proposal, refusal);
            }
        }
    }

    /// Settles the acks=all produces whose verdict is in.
    fn settle(&mut self) {
        let mut still = Vec::new();
        for pending in std::mem::take(&mut self.pending) {
            let replica = &self.replicas[&pending.node];
            if replica.paused {
                still.push(pending);
                continue;
            }
            // An answer belongs to the leader epoch it was written in.
            let Some(leader) = replica
                .leader
                .as_ref()
                .filter(|l| l.leader_epoch() == pending.leader_epoch)
            else {
                continue; // NOT_LEADER_OR_FOLLOWER: indeterminate
            };
            match leader.acks_all(pending.end) {
                AcksAll::Waiting => still.push(pending),
                AcksAll::NotEnoughReplicasAfterAppend => {}
                AcksAll::Acknowledged => {
                    for offset in pending.start..pending.end {
                        assert_eq!(
                            self.committed_prefix.get(offset as usize),
                            Some(&replica.log[offset as usize]),
                            "an acknowledged record at offset {offset} is not the committed one"
                        );
                    }
                    self.outcome.acknowledged += (pending.end - pending.start) as usize;
                }
            }
        }
        self.pending = still;
    }

    /// The invariants that hold after every step.
    fn check(&self) {
        let committed = self.committed_prefix.len();
        for (node, replica) in &self.replicas {
            let high_watermark = replica.high_watermark as usize;
            assert!(
                high_watermark <= committed
                    && replica.log[..high_watermark] == self.committed_prefix[..high_watermark],
                "node {node} counts {high_watermark} records as committed that are not the committed prefix of {committed}"
            );
        }
        if let Some((state, _)) = self.partition() {
            for member in &state.isr {
                let replica = &self.replicas[member];
                assert!(
                    replica.durable >= committed
                        && replica.log[..committed] == self.committed_prefix[..],
                    "ISR member {member} does not hold the committed prefix ({committed} records) durably: {} durable of {}",
                    replica.durable,
                    replica.log.len()
                );
            }
        }
    }

    fn step(&mut self) {
        let node = 1 + self.rng.below(NODES as u64) as i32;
        let (running, paused) = {
            let r = &self.replicas[&node];
            (r.running, r.paused)
        };
        let active = running && !paused;
        let action = self.rng.below(200);
        match action {
            0..=49 if active => self.produce(node),
            50..=99 if active => self.fetch(node, true),
            100..=119 if active => self.learn(node),
            120..=129 if active => self.flush(node),
            130..=139 if active => self.propose(node),
            140..=153 => self.deliver(true),
            154..=157 if active => {
                let replica = self.replicas.get_mut(&node).expect("a replica");
                replica.checkpoint = replica.high_watermark;
            }
            158 if active => self.crash(node),
            159 if active => self.replicas.get_mut(&node).expect("a replica").paused = true,
            160..=167 if paused => self.replicas.get_mut(&node).expect("a replica").paused = false,
            168..=175 if !running => self.start(node),
            176 => {
                let image = self.controller.image().clone();
                self.controller = Controller::new(self.config.clone(), image, self.now);
            }
            _ => {
                self.now += self.rng.below(60) as i64;
                let records = self.controller.tick(self.now);
                self.commit(records);
            }
        }
        // Heartbeats every HEARTBEAT_MS from every process that runs.
        for node in 1..=NODES {
            let replica = &self.replicas[&node];
            if replica.running && !replica.paused && replica.heartbeat_at + HEARTBEAT_MS <= self.now
            {
                self.replicas
                    .get_mut(&node)
                    .expect("a replica")
                    .heartbeat_at = self.now;
                self.heartbeat(node);
            }
        }
        self.settle();
        if self.trace {
            self.print_state(&format!(
                "step {} node {node} action {action}",
                self.outcome.steps
            ));
        }
        self.check();
        self.outcome.steps += 1;
    }

    fn print_state(&self, what: &str) {
        let partition = self.partition();
        eprintln!(
            "{what} t={} partition={:?} committed={} pending={:?}",
            self.now,
            partition,
            self.committed_prefix.len(),
            self.pending
        );
        for (node, r) in &self.replicas {
            eprintln!(
                "  node {node}: running={} paused={} epoch={} end={} durable={} hw={} leads={:?} follows={} epochs={:?} tail={:?}",
                r.running,
                r.paused,
                r.broker_epoch,
                r.log.len(),
                r.durable,
                r.high_watermark,
                r.leader.as_ref().map(|l| (l.leader_epoch(), l.isr().to_vec(), l.high_watermark())),
                r.view_leader,
                r.epochs.entries(),
                &r.log[r.log.len().saturating_sub(4)..]
            );
        }
    }

    /// Runs `steps` steps with faults, then heals and checks that the
    /// partition recovers fully.
    pub fn run(mut self, steps: usize) -> ReplicationOutcome {
        for _ in 0..steps {
            self.step();
        }
        self.heal();
        self.outcome
    }

    fn heal(&mut self) {
        // Every request comes back answered (or timed out) in the end.
        while !self.in_flight.is_empty() {
            self.deliver(false);
        }
        for node in 1..=NODES {
            let replica = self.replicas.get_mut(&node).expect("a replica");
            replica.paused = false;
            if !replica.running {
                self.start(node);
            }
        }
        let mut produced = None;
        for round in 0..60 {
            self.now += 100;
            for node in 1..=NODES {
                if !self.replicas[&node].running {
                    self.start(node);
                    continue;
                }
                self.heartbeat(node);
                self.learn(node);
                self.fetch(node, false);
                self.flush(node);
                self.propose(node);
            }
            while !self.in_flight.is_empty() {
                self.deliver(false);
            }
            let records = self.controller.tick(self.now);
            self.commit(records);
            // Writes while the last changes settle (a preferred leader
            // may take over meanwhile, leaving a write indeterminate).
            if (30..50).contains(&round) {
                produced.get_or_insert(self.outcome.acknowledged);
                let leader = self.partition().map_or(NO_LEADER, |(_, leader)| leader);
                if leader != NO_LEADER {
                    self.produce(leader);
                }
            }
            self.settle();
            if self.trace {
                self.print_state(&format!("healing round {round}"));
            }
            self.check();
        }
        if self.trace {
            self.print_state("healed");
        }
        let (state, leader) = self.partition().expect("the topic");
        assert!(leader != NO_LEADER, "no leader after healing: {state:?}");
        let mut isr = state.isr.clone();
        isr.sort();
        assert_eq!(isr, vec![1, 2, 3], "the ISR did not grow back: {state:?}");
        let leader_log = &self.replicas[&leader].log;
        for (node, replica) in &self.replicas {
            assert_eq!(
                &replica.log, leader_log,
                "node {node}'s log differs from its leader's"
            );
        }
        let before = produced.expect("a leader to produce to after healing");
        assert!(
            self.outcome.acknowledged > before,
            "no acks=all write was acknowledged after healing"
        );
    }
}
