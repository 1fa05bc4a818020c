//! A seeded, deterministic simulation of the controller with a cluster of
//! brokers around it (TigerBeetle's VOPR and openraft's turmoil tests are
//! the models). One seed is one run: the same seed replays the same run.
//!
//! **Safety phase.** Brokers heartbeat with metadata they applied late,
//! crash (their heartbeats stop), restart (a new incarnation; sometimes on a
//! wiped disk), shut down in a controlled way; leaders propose ISR changes
//! from stale views, and the network loses, duplicates and reorders those
//! proposals; the controller fails over (a new one from the committed
//! image, without the old one's sessions); operators create topics, elect
//! leaders and turn unclean election on and off. After every step:
//! * the image keeps [`strom_controller::invariants`] (ISR within replicas,
//!   no fenced broker in an ISR, leader in the ISR, ...);
//! * leader epochs and partition epochs never go back, and one leader epoch
//!   of a partition has one leader;
//! * a clean election picks a replica from the previous ISR or eligible
//!   leaders: never one that may lack committed records;
//! * broker epochs only grow.
//!
//! **Liveness phase.** Faults stop, every broker runs and heartbeats, leaders
//! add every caught-up replica: then every partition must have a leader and
//! every broker must be unfenced.
//!
//! The replica side (followers' fetch positions, truncation, the high
//! watermark, acks=all) is [`replication`]'s simulation.

use std::collections::{BTreeMap, VecDeque};

pub mod replication;

use strom_controller::{
    invariants, AlterPartition, Controller, ControllerConfig, ElectionType, Heartbeat, IsrMember,
    NewTopic, Registration,
};
use strom_metadata::{Endpoint, MetadataImage, MetadataRecord, NO_LEADER};
use uuid::Uuid;

/// splitmix64: small, fast and good enough to drive a scheduler.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Runs the seeds: only `STROM_SIM_SEED` if it is set (a replay, its
/// outcome printed), else `0..seeds`. A failing seed is named with the
/// command that replays it (`test`: the test target).
pub fn run_seeds<T: std::fmt::Debug>(
    seeds: u64,
    test: &str,
    run: impl Fn(u64) -> T + std::panic::RefUnwindSafe,
) -> Vec<T> {
    let one = |seed: u64| match std::panic::catch_unwind(|| run(seed)) {
        Ok(outcome) => outcome,
        Err(panic) => {
            eprintln!("simulation seed {seed} failed; replay it with STROM_SIM_SEED={seed} STROM_SIM_TRACE=1 cargo test -p strom-sim --test {test}");
            std::panic::resume_unwind(panic);
        }
    };
    if let Ok(seed) = std::env::var("STROM_SIM_SEED") {
        let outcome = one(seed.parse().expect("STROM_SIM_SEED is a number"));
        eprintln!("{outcome:?}");
        return Vec::new();
    }
    (0..seeds).map(one).collect()
}

/// A new incarnation of broker `node` on the disk `directory_id`.
pub(crate) fn registration(rng: &mut Rng, node: i32, directory_id: Uuid) -> Registration {
    Registration {
        node_id: node,
        incarnation_id: Uuid::from_u128(rng.next_u64() as u128),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + node as u16,
        }],
        rack: None,
        directory_id,
    }
}

const SESSION_MS: i64 = 1_000;
const BROKERS: i32 = 4;

/// A broker process as the simulation sees it.
#[derive(Debug, Clone)]
struct Broker {
    running: bool,
    epoch: i64,
    directory_id: Uuid,
    /// How far it has applied the metadata (it lags the controller).
    applied: u64,
    /// Its view of the metadata, as of `applied`.
    view: MetadataImage,
    shutting_down: bool,
}

/// What one run saw, for the test's report.
#[derive(Debug, Default)]
pub struct Outcome {
    pub steps: usize,
    pub records: usize,
    pub elections: usize,
    pub fencings: usize,
}

pub struct Simulation {
    rng: Rng,
    controller: Controller,
    config: ControllerConfig,
    /// Every committed record, in order: what brokers apply from.
    log: Vec<MetadataRecord>,
    /// The fold of `log`.
    committed: MetadataImage,
    brokers: BTreeMap<i32, Broker>,
    /// ISR proposals on their way to the controller.
    in_flight: VecDeque<AlterPartition>,
    now: i64,
    /// (topic, partition, leader epoch) → the leader of that epoch.
    leaders_by_epoch: BTreeMap<(String, usize, i32), i32>,
    outcome: Outcome,
}

impl Simulation {
    pub fn new(seed: u64) -> Simulation {
        let config = ControllerConfig {
            session_timeout_ms: SESSION_MS,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 3_000,
            ..ControllerConfig::default()
        };
        let mut simulation = Simulation {
            rng: Rng::new(seed),
            controller: Controller::new(config.clone(), MetadataImage::default(), 0),
            config,
            log: Vec::new(),
            committed: MetadataImage::default(),
            brokers: BTreeMap::new(),
            in_flight: VecDeque::new(),
            now: 0,
            leaders_by_epoch: BTreeMap::new(),
            outcome: Outcome::default(),
        };
        for node in 1..=BROKERS {
            let directory_id = Uuid::from_u128(simulation.rng.next_u64() as u128);
            simulation.brokers.insert(
                node,
                Broker {
                    running: false,
                    epoch: 0,
                    directory_id,
                    applied: 0,
                    view: MetadataImage::default(),
                    shutting_down: false,
                },
            );
            simulation.start(node);
        }
        for (index, partitions) in [(0, 3), (1, 2)] {
            simulation.create_topic(&format!("topic-{index}"), partitions, 3);
        }
        simulation
    }

    /// Commits a decision's records: checks every rule against the image
    /// before and after each record.
    fn commit(&mut self, records: Vec<MetadataRecord>) {
        let mut image = std::mem::take(&mut self.committed);
        for record in records {
            self.check_record(&image, &record);
            image.apply(&record);
            self.log.push(record);
            self.outcome.records += 1;
        }
        assert_eq!(
            &image,
            self.controller.image(),
            "the controller's image is the fold of its records"
        );
        let broken = invariants::violations(&image);
        assert!(broken.is_empty(), "{broken:#?}");
        self.check_epochs(&image);
        self.committed = image;
    }

    fn check_record(&mut self, before: &MetadataImage, record: &MetadataRecord) {
        match record {
            MetadataRecord::BrokerRegistered {
                node_id,
                broker_epoch,
                ..
            } => {
                let previous = before.broker(*node_id).map_or(0, |b| b.broker_epoch);
                assert!(*broker_epoch > previous, "broker epochs only grow");
            }
            MetadataRecord::BrokerFenced { .. } => self.outcome.fencings += 1,
            MetadataRecord::PartitionChanged {
                topic_id,
                partition,
                leader: Some(leader),
                isr,
                ..
            } if *leader != NO_LEADER => {
                self.outcome.elections += 1;
                let topic = before.topic_by_id(*topic_id).expect("a known topic");
                let current = &topic.partitions[*partition as usize];
                let unclean = topic
                    .configs
                    .get("unclean.leader.election.enable")
                    .is_some_and(|v| v == "true");
                let clean_candidate = current.isr.contains(leader)
                    || (current.isr.is_empty()
                        && current.eligible_leader_replicas.contains(leader));
                assert!(
                    clean_candidate || unclean,
                    "{}-{partition}: broker {leader} elected from outside the ISR {:?} and eligible leaders {:?} (new ISR {isr:?})",
                    topic.name,
                    current.isr,
                    current.eligible_leader_replicas
                );
            }
            _ => {}
        }
    }

    fn check_epochs(&mut self, image: &MetadataImage) {
        for topic in image.topics.values() {
            for (index, partition) in topic.partitions.iter().enumerate() {
                if partition.leader == NO_LEADER {
                    continue;
                }
                let key = (topic.name.clone(), index, partition.leader_epoch);
                let leader = *self.leaders_by_epoch.entry(key).or_insert(partition.leader);
                assert_eq!(
                    leader, partition.leader,
                    "{}-{index}: leader epoch {} had leader {leader}, now {}",
                    topic.name, partition.leader_epoch, partition.leader
                );
            }
        }
    }

    fn start(&mut self, node: i32) {
        let registration = registration(&mut self.rng, node, self.brokers[&node].directory_id);
        // Refused while another live process has the id: retried later.
        if let Ok(decision) = self.controller.register_broker(registration, self.now) {
            self.commit(decision.records);
            let broker = self.brokers.get_mut(&node).expect("a broker");
            broker.running = true;
            broker.epoch = decision.reply;
            broker.shutting_down = false;
        }
    }

    fn create_topic(&mut self, name: &str, partitions: i32, replication_factor: i16) {
        let topic = NewTopic {
            name: name.to_string(),
            partitions: Some(partitions),
            replication_factor: Some(replication_factor),
            ..NewTopic::default()
        };
        if let Ok(decision) = self.controller.create_topic(topic, false) {
            self.commit(decision.records);
        }
    }

    /// The broker applies some of the committed records it has not yet.
    fn catch_up(&mut self, node: i32, all: bool) {
        let lag = (self.log.len() as u64).saturating_sub(self.brokers[&node].applied);
        let take = if all { lag } else { self.rng.below(lag + 1) };
        let broker = self.brokers.get_mut(&node).expect("a broker");
        for record in &self.log[broker.applied as usize..(broker.applied + take) as usize] {
            broker.view.apply(record);
        }
        broker.applied += take;
    }

    fn heartbeat(&mut self, node: i32, all: bool) {
        self.catch_up(node, all);
        let broker = &self.brokers[&node];
        let request = Heartbeat {
            node_id: node,
            broker_epoch: broker.epoch,
            metadata_offset: broker.applied,
            want_fence: false,
            want_shutdown: broker.shutting_down,
        };
        match self.controller.heartbeat(request, self.now) {
            Ok(decision) => {
                let should_shut_down = decision.reply.should_shut_down;
                self.commit(decision.records);
                if should_shut_down {
                    self.brokers.get_mut(&node).expect("a broker").running = false;
                }
            }
            // A stale epoch: this process was replaced; it stops.
            Err(_) => self.brokers.get_mut(&node).expect("a broker").running = false,
        }
    }

    /// A leader proposes an ISR change from its own (possibly stale) view.
    fn propose(&mut self, node: i32, expand_all: bool) {
        let broker = &self.brokers[&node];
        let mut proposals = Vec::new();
        for topic in broker.view.topics.values() {
            for (index, partition) in topic.partitions.iter().enumerate() {
                if partition.leader != node {
                    continue;
                }
                let mut isr = partition.isr.clone();
                if expand_all {
                    isr = partition.replicas.clone();
                } else if self.rng.chance(50) && isr.len() > 1 {
                    let drop = isr[1 + self.rng.below(isr.len() as u64 - 1) as usize];
                    isr.retain(|&m| m != drop);
                } else {
                    let outside: Vec<i32> = partition
                        .replicas
                        .iter()
                        .copied()
                        .filter(|r| !isr.contains(r))
                        .collect();
                    if outside.is_empty() {
                        continue;
                    }
                    isr.push(outside[self.rng.below(outside.len() as u64) as usize]);
                }
                let members = isr
                    .iter()
                    .map(|&member| IsrMember {
                        node_id: member,
                        broker_epoch: broker.view.broker(member).map_or(-1, |b| b.broker_epoch),
                    })
                    .collect();
                proposals.push(AlterPartition {
                    broker_id: node,
                    broker_epoch: broker.epoch,
                    topic_id: topic.topic_id,
                    partition: index as i32,
                    leader_epoch: partition.leader_epoch,
                    partition_epoch: partition.partition_epoch,
                    new_isr: members,
                });
            }
        }
        self.in_flight.extend(proposals);
    }

    /// Delivers one ISR proposal: the oldest, or any (reordering), or the
    /// same twice (duplication); some are lost.
    fn deliver(&mut self, faults: bool) {
        let Some(mut index) = (!self.in_flight.is_empty()).then_some(0) else {
            return;
        };
        if faults {
            index = self.rng.below(self.in_flight.len() as u64) as usize;
        }
        let proposal = if faults && self.rng.chance(10) {
            self.in_flight[index].clone()
        } else {
            self.in_flight.remove(index).expect("in range")
        };
        if faults && self.rng.chance(10) {
            return; // lost
        }
        if let Ok(decision) = self.controller.alter_partition(proposal) {
            self.commit(decision.records);
        }
    }

    /// One step of the safety phase.
    fn fault_step(&mut self) {
        let node = 1 + self.rng.below(BROKERS as u64) as i32;
        let running = self.brokers[&node].running;
        match self.rng.below(100) {
            0..=39 if running => self.heartbeat(node, false),
            40..=54 if running => self.propose(node, false),
            55..=69 => self.deliver(true),
            70..=73 if running => self.brokers.get_mut(&node).expect("broker").running = false,
            74..=79 if !running => {
                if self.rng.chance(20) {
                    // A wiped disk: whatever it held is gone.
                    let fresh = Uuid::from_u128(self.rng.next_u64() as u128);
                    self.brokers.get_mut(&node).expect("broker").directory_id = fresh;
                }
                let broker = self.brokers.get_mut(&node).expect("broker");
                broker.applied = 0;
                broker.view = MetadataImage::default();
                self.start(node);
            }
            80..=81 if running => self.brokers.get_mut(&node).expect("broker").shutting_down = true,
            82 => {
                // Controller failover: a new one from the committed image.
                let image = self.controller.image().clone();
                self.controller = Controller::new(self.config.clone(), image, self.now);
            }
            83 => {
                let election = if self.rng.chance(50) {
                    ElectionType::Preferred
                } else {
                    ElectionType::Unclean
                };
                let partition = self.rng.below(3) as i32;
                if let Ok(decision) = self.controller.elect_leader("topic-0", partition, election) {
                    self.commit(decision.records);
                }
            }
            84 => {
                let on = self.rng.chance(30);
                let configs = BTreeMap::from([(
                    "unclean.leader.election.enable".to_string(),
                    on.to_string(),
                )]);
                if let Ok(decision) = self
                    .controller
                    .replace_topic_configs("topic-1", configs, false)
                {
                    self.commit(decision.records);
                }
            }
            85 => {
                let name = format!("topic-{}", 2 + self.rng.below(3));
                let replication_factor = 1 + self.rng.below(3) as i16;
                self.create_topic(&name, 2, replication_factor);
            }
            _ => {
                self.now += self.rng.below(300) as i64;
                let records = self.controller.tick(self.now);
                self.commit(records);
            }
        }
        self.outcome.steps += 1;
    }

    /// Runs `steps` steps with faults, then lets the cluster heal.
    pub fn run(mut self, steps: usize) -> Outcome {
        for _ in 0..steps {
            self.fault_step();
        }
        self.heal();
        self.outcome
    }

    fn heal(&mut self) {
        // Unclean election off again, and every broker running.
        let configs = BTreeMap::from([(
            "unclean.leader.election.enable".to_string(),
            "false".to_string(),
        )]);
        if let Ok(decision) = self
            .controller
            .replace_topic_configs("topic-1", configs, false)
        {
            self.commit(decision.records);
        }
        self.in_flight.clear();
        for round in 0..20 {
            self.now += 200;
            for node in 1..=BROKERS {
                let broker = &self.brokers[&node];
                if !broker.running || broker.shutting_down {
                    let broker = self.brokers.get_mut(&node).expect("broker");
                    broker.running = false;
                    broker.applied = 0;
                    broker.view = MetadataImage::default();
                    self.start(node);
                    continue;
                }
                self.heartbeat(node, true);
                if round > 2 {
                    self.propose(node, true);
                }
            }
            while !self.in_flight.is_empty() {
                self.deliver(false);
            }
            let records = self.controller.tick(self.now);
            self.commit(records);
        }
        let image = self.controller.image();
        for broker in image.brokers.values() {
            assert!(
                broker.is_usable(),
                "broker {} is still fenced after healing",
                broker.node_id
            );
        }
        for topic in image.topics.values() {
            for (index, partition) in topic.partitions.iter().enumerate() {
                // A partition whose every eligible leader lost its disk can
                // only come back by an unclean election; all others lead.
                let lost =
                    partition.isr.is_empty() && partition.eligible_leader_replicas.is_empty();
                assert!(
                    partition.leader != NO_LEADER || lost,
                    "{}-{index} has no leader after healing: {partition:?}",
                    topic.name
                );
            }
        }
    }
}
