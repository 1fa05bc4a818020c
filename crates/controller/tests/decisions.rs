//! The controller's decisions as stories: a small cluster of brokers that
//! register, heartbeat, die and come back, with the image checked against
//! the controller's invariants after every decision.

use std::collections::BTreeMap;

use strom_controller::{
    invariants, AlterPartition, Controller, ControllerConfig, ElectionType, ErrorKind, Heartbeat,
    HeartbeatReply, IsrMember, NewTopic, Registration,
};
use strom_metadata::{Endpoint, MetadataImage, MetadataRecord, PartitionMetadata, NO_LEADER};
use uuid::Uuid;

const SESSION_MS: i64 = 1_000;

struct Cluster {
    controller: Controller,
    now: i64,
    epochs: BTreeMap<i32, i64>,
}

fn registration(node_id: i32) -> Registration {
    Registration {
        node_id,
        incarnation_id: Uuid::new_v4(),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9000 + node_id as u16,
        }],
        rack: None,
        directory_id: Uuid::from_u128(node_id as u128),
    }
}

impl Cluster {
    fn with_config(nodes: &[i32], config: ControllerConfig) -> Cluster {
        let mut cluster = Cluster {
            controller: Controller::new(config, MetadataImage::default(), 0),
            now: 0,
            epochs: BTreeMap::new(),
        };
        for &node in nodes {
            cluster.start(node);
        }
        cluster
    }

    fn new(nodes: &[i32]) -> Cluster {
        Cluster::with_config(
            nodes,
            ControllerConfig {
                session_timeout_ms: SESSION_MS,
                auto_leader_rebalance: false,
                ..ControllerConfig::default()
            },
        )
    }

    fn check(&self) {
        let broken = invariants::violations(self.controller.image());
        assert!(broken.is_empty(), "{broken:#?}");
    }

    /// A broker process starts: registers (fenced), then heartbeats once
    /// caught up with the metadata and is unfenced.
    fn start(&mut self, node: i32) {
        let decision = self
            .controller
            .register_broker(registration(node), self.now)
            .unwrap();
        self.epochs.insert(node, decision.reply);
        self.check();
        assert!(self.controller.image().broker(node).unwrap().fenced);
        let reply = self.heartbeat(node);
        assert!(!reply.is_fenced, "broker {node} caught up and is unfenced");
    }

    fn heartbeat_with(&mut self, node: i32, want_shutdown: bool) -> HeartbeatReply {
        let reply = self
            .controller
            .heartbeat(
                Heartbeat {
                    node_id: node,
                    broker_epoch: self.epochs[&node],
                    metadata_offset: self.controller.image().applied,
                    want_fence: false,
                    want_shutdown,
                },
                self.now,
            )
            .unwrap()
            .reply;
        self.check();
        reply
    }

    fn heartbeat(&mut self, node: i32) -> HeartbeatReply {
        self.heartbeat_with(node, false)
    }

    /// Time passes; the brokers in `alive` heartbeat all along.
    fn pass(&mut self, ms: i64, alive: &[i32]) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        for _ in 0..ms / 100 {
            self.now += 100;
            for &node in alive {
                self.heartbeat(node);
            }
            records.extend(self.controller.tick(self.now));
            self.check();
        }
        records
    }

    fn create(&mut self, name: &str, partitions: i32, replication_factor: i16) -> Uuid {
        let decision = self
            .controller
            .create_topic(
                NewTopic {
                    name: name.into(),
                    partitions: Some(partitions),
                    replication_factor: Some(replication_factor),
                    ..NewTopic::default()
                },
                false,
            )
            .unwrap();
        self.check();
        decision.reply.topic_id
    }

    fn partition(&self, topic_id: Uuid, index: i32) -> PartitionMetadata {
        self.controller
            .image()
            .partition(topic_id, index)
            .unwrap()
            .clone()
    }

    fn alter(&mut self, topic_id: Uuid, leader: i32, isr: &[i32]) -> AlterPartition {
        let current = self.partition(topic_id, 0);
        AlterPartition {
            broker_id: leader,
            broker_epoch: self.epochs[&leader],
            topic_id,
            partition: 0,
            leader_epoch: current.leader_epoch,
            partition_epoch: current.partition_epoch,
            new_isr: isr
                .iter()
                .map(|&node_id| IsrMember {
                    node_id,
                    broker_epoch: self.epochs[&node_id],
                })
                .collect(),
        }
    }
}

#[test]
fn replicas_and_leaders_spread_evenly_over_the_brokers() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let id = cluster.create("orders", 6, 3);
    let mut leaders = BTreeMap::<i32, usize>::new();
    for index in 0..6 {
        let partition = cluster.partition(id, index);
        assert_eq!(partition.replicas.len(), 3);
        assert_eq!(
            partition.isr, partition.replicas,
            "every replica starts in sync"
        );
        assert_eq!(
            partition.leader, partition.replicas[0],
            "the preferred leader leads"
        );
        *leaders.entry(partition.leader).or_default() += 1;
    }
    assert_eq!(leaders, BTreeMap::from([(1, 2), (2, 2), (3, 2)]));
    // Later topics go to the brokers with the least load first.
    let single = cluster.create("single", 1, 1);
    assert_eq!(cluster.partition(single, 0).replicas, vec![1]);
    let again = cluster.create("again", 2, 1);
    assert_eq!(cluster.partition(again, 0).replicas, vec![2]);
    assert_eq!(cluster.partition(again, 1).replicas, vec![3]);
}

#[test]
fn a_replication_factor_above_the_live_brokers_is_refused() {
    let mut cluster = Cluster::new(&[1, 2]);
    let wide = |rf| NewTopic {
        name: "wide".into(),
        replication_factor: Some(rf),
        ..NewTopic::default()
    };
    let refused = cluster.controller.create_topic(wide(3), false).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidReplicationFactor);
    assert!(refused.message.contains("2 broker(s)"), "{refused}");
    // A fenced broker does not count.
    cluster.pass(SESSION_MS + 200, &[1]);
    assert!(cluster.controller.image().broker(2).unwrap().fenced);
    let refused = cluster.controller.create_topic(wide(2), false).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidReplicationFactor);
    assert!(cluster.controller.create_topic(wide(1), false).is_ok());
}

#[test]
fn a_broker_that_stops_heartbeating_is_fenced_and_loses_its_leaderships() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let id = cluster.create("orders", 3, 3);
    let led_by_2: Vec<i32> = (0..3)
        .filter(|&index| cluster.partition(id, index).leader == 2)
        .collect();
    assert_eq!(led_by_2.len(), 1);
    let before = cluster.partition(id, led_by_2[0]);

    // Half a session without a heartbeat changes nothing.
    assert!(cluster.pass(SESSION_MS / 2, &[1, 3]).is_empty());
    let records = cluster.pass(SESSION_MS, &[1, 3]);
    assert!(records.contains(&MetadataRecord::BrokerFenced {
        node_id: 2,
        broker_epoch: cluster.epochs[&2]
    }));
    for index in 0..3 {
        let partition = cluster.partition(id, index);
        assert!(!partition.isr.contains(&2), "a fenced broker is in no ISR");
        assert_ne!(partition.leader, 2);
    }
    let after = cluster.partition(id, led_by_2[0]);
    assert_eq!(
        after.leader, before.replicas[1],
        "the next in-sync replica in replica order leads"
    );
    assert_eq!(after.leader_epoch, before.leader_epoch + 1);
    assert!(after.partition_epoch > before.partition_epoch);
}

#[test]
fn the_last_in_sync_replica_is_the_only_clean_leader_when_it_returns() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let id = cluster.create("orders", 1, 3);
    // 2 and 3 fall out of sync; 1 leads alone.
    let shrink = cluster.alter(id, 1, &[1]);
    cluster.controller.alter_partition(shrink).unwrap();
    cluster.check();
    // Then 1 dies: nobody in sync is left.
    cluster.pass(SESSION_MS + 200, &[2, 3]);
    let partition = cluster.partition(id, 0);
    assert_eq!(partition.leader, NO_LEADER);
    assert!(partition.isr.is_empty());
    assert_eq!(partition.eligible_leader_replicas, vec![1]);
    // An out-of-sync replica is not elected, even by operator request...
    let refused = cluster
        .controller
        .elect_leader("orders", 0, ElectionType::Preferred)
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::PreferredLeaderNotAvailable);
    // ...until 1 comes back, which leads again with what it had.
    cluster.start(1);
    let partition = cluster.partition(id, 0);
    assert_eq!((partition.leader, partition.isr.clone()), (1, vec![1]));
    assert!(partition.eligible_leader_replicas.is_empty());
}

#[test]
fn unclean_election_takes_an_out_of_sync_replica_when_asked_for() {
    let mut cluster = Cluster::new(&[1, 2]);
    let id = cluster.create("logs", 1, 2);
    let shrink = cluster.alter(id, 1, &[1]);
    cluster.controller.alter_partition(shrink).unwrap();
    cluster.pass(SESSION_MS + 200, &[2]);
    assert_eq!(cluster.partition(id, 0).leader, NO_LEADER);
    // ElectLeaders with the unclean type does it for one partition.
    cluster
        .controller
        .elect_leader("logs", 0, ElectionType::Unclean)
        .unwrap();
    cluster.check();
    let partition = cluster.partition(id, 0);
    assert_eq!((partition.leader, partition.isr), (2, vec![2]));
    let refused = cluster
        .controller
        .elect_leader("logs", 0, ElectionType::Unclean)
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::ElectionNotNeeded);
}

#[test]
fn a_topic_config_turns_unclean_election_on_for_that_topic() {
    let mut cluster = Cluster::new(&[1, 2]);
    let id = cluster.create("logs", 1, 2);
    cluster
        .controller
        .replace_topic_configs(
            "logs",
            BTreeMap::from([("unclean.leader.election.enable".into(), "true".into())]),
            false,
        )
        .unwrap();
    let shrink = cluster.alter(id, 1, &[1]);
    cluster.controller.alter_partition(shrink).unwrap();
    cluster.pass(SESSION_MS + 200, &[2]);
    assert_eq!(cluster.partition(id, 0).leader, 2);
}

#[test]
fn isr_changes_are_compare_and_swap_on_the_partition_epoch() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let id = cluster.create("orders", 1, 3);
    // The leader's proposal, made before it paused.
    let stale = cluster.alter(id, 1, &[1]);
    // Meanwhile 3 fell out of the ISR through another accepted change.
    let shrink = cluster.alter(id, 1, &[1, 2]);
    let decision = cluster.controller.alter_partition(shrink).unwrap();
    assert_eq!(decision.reply.isr, vec![1, 2]);
    let refused = cluster.controller.alter_partition(stale).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidUpdateVersion);
    // A replaced leader is fenced on its leader epoch.
    cluster.pass(SESSION_MS + 200, &[2, 3]);
    assert_eq!(cluster.partition(id, 0).leader, 2);
    let current = cluster.partition(id, 0);
    let zombie = AlterPartition {
        broker_id: 1,
        broker_epoch: cluster.epochs[&1],
        topic_id: id,
        partition: 0,
        leader_epoch: current.leader_epoch - 1,
        partition_epoch: current.partition_epoch,
        new_isr: vec![IsrMember {
            node_id: 1,
            broker_epoch: cluster.epochs[&1],
        }],
    };
    let refused = cluster.controller.alter_partition(zombie).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::FencedLeaderEpoch);
    // An identical ISR writes nothing.
    let same = cluster.alter(id, 2, &[2]);
    assert!(cluster
        .controller
        .alter_partition(same)
        .unwrap()
        .records
        .is_empty());
}

#[test]
fn a_follower_joins_the_isr_only_under_its_current_broker_epoch() {
    let mut cluster = Cluster::new(&[1, 2]);
    let id = cluster.create("orders", 1, 2);
    let shrink = cluster.alter(id, 1, &[1]);
    cluster.controller.alter_partition(shrink).unwrap();
    // The leader saw broker 2 fetch under its old epoch; 2 restarted since.
    let old_epoch = cluster.epochs[&2];
    cluster.pass(SESSION_MS + 200, &[1]);
    cluster.start(2);
    let mut expand = cluster.alter(id, 1, &[1, 2]);
    expand.new_isr[1].broker_epoch = old_epoch;
    let refused = cluster.controller.alter_partition(expand).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::IneligibleReplica);
    // Under its current epoch it joins.
    let expand = cluster.alter(id, 1, &[1, 2]);
    let decision = cluster.controller.alter_partition(expand).unwrap();
    assert_eq!(decision.reply.isr, vec![1, 2]);
    cluster.check();
    // A fenced broker never joins.
    let shrink = cluster.alter(id, 1, &[1]);
    cluster.controller.alter_partition(shrink).unwrap();
    cluster.pass(SESSION_MS + 200, &[1]);
    let expand = cluster.alter(id, 1, &[1, 2]);
    let refused = cluster.controller.alter_partition(expand).unwrap_err();
    assert_eq!(refused.kind, ErrorKind::IneligibleReplica);
}

#[test]
fn controlled_shutdown_moves_leadership_away_before_the_broker_may_exit() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let id = cluster.create("orders", 3, 3);
    let offset_before = cluster.controller.image().applied;
    let decision = cluster
        .controller
        .heartbeat(
            Heartbeat {
                node_id: 1,
                broker_epoch: cluster.epochs[&1],
                metadata_offset: offset_before,
                want_fence: false,
                want_shutdown: true,
            },
            cluster.now,
        )
        .unwrap();
    cluster.check();
    assert!(decision.reply.in_controlled_shutdown);
    assert!(
        !decision.reply.should_shut_down,
        "the broker has not applied its leadership moves yet"
    );
    for index in 0..3 {
        let partition = cluster.partition(id, index);
        assert_ne!(partition.leader, 1);
        assert!(!partition.isr.contains(&1));
    }
    // Not before the new leaders know they lead...
    assert!(!cluster.heartbeat_with(1, true).should_shut_down);
    cluster.heartbeat(2);
    assert!(!cluster.heartbeat_with(1, true).should_shut_down);
    cluster.heartbeat(3);
    // ...then it may go, fenced, so that its next incarnation may register
    // at once.
    let reply = cluster.heartbeat_with(1, true);
    assert!(reply.should_shut_down && reply.is_fenced);
    cluster.start(1);
}

#[test]
fn a_new_controller_keeps_live_brokers_ids_their_own() {
    let mut cluster = Cluster::new(&[1, 2]);
    let id = cluster.create("orders", 1, 2);
    // A controller failover: the new one has no sessions yet.
    let image = cluster.controller.image().clone();
    cluster.controller = Controller::new(cluster.controller.config().clone(), image, cluster.now);
    let mut elsewhere = registration(1);
    elsewhere.directory_id = Uuid::new_v4();
    let refused = cluster
        .controller
        .register_broker(elsewhere, cluster.now)
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::DuplicateBrokerRegistration);
    assert_eq!(cluster.partition(id, 0).isr, vec![1, 2]);
    // The same broker restarting on its own (locked) data directory is
    // known to be a new process of the same broker and registers at once.
    cluster.start(1);
    assert_eq!(cluster.partition(id, 0).isr, vec![2]);
    // Brokers that do not heartbeat to it are fenced a session later.
    cluster.pass(SESSION_MS + 200, &[2]);
    assert!(cluster.controller.image().broker(1).unwrap().fenced);
}

#[test]
fn a_clean_eligible_leader_wins_over_an_unclean_candidate() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let id = cluster.create("orders", 1, 3);
    // Only 2 stays in sync, then everybody goes.
    let shrink = cluster.alter(id, 1, &[1, 2]);
    cluster.controller.alter_partition(shrink).unwrap();
    cluster.pass(SESSION_MS + 200, &[2, 3]);
    cluster.pass(SESSION_MS + 200, &[]);
    assert_eq!(cluster.partition(id, 0).eligible_leader_replicas, vec![2]);
    // 1, out of sync but first in replica order, comes back; then unclean
    // election is allowed; then 2, which has every committed record.
    cluster.start(1);
    assert_eq!(cluster.partition(id, 0).leader, NO_LEADER);
    cluster
        .controller
        .replace_topic_configs(
            "orders",
            BTreeMap::from([("unclean.leader.election.enable".into(), "true".into())]),
            false,
        )
        .unwrap();
    cluster.start(2);
    let partition = cluster.partition(id, 0);
    assert_eq!((partition.leader, partition.isr), (2, vec![2]));
}

#[test]
fn a_broker_whose_data_directory_changed_is_no_longer_an_eligible_leader() {
    let mut cluster = Cluster::new(&[1, 2]);
    let id = cluster.create("orders", 1, 2);
    let shrink = cluster.alter(id, 1, &[1]);
    cluster.controller.alter_partition(shrink).unwrap();
    cluster.pass(SESSION_MS + 200, &[2]);
    assert_eq!(cluster.partition(id, 0).eligible_leader_replicas, vec![1]);
    // Broker 1 comes back on a wiped disk: it holds nothing.
    let mut wiped = registration(1);
    wiped.directory_id = Uuid::new_v4();
    let epoch = cluster
        .controller
        .register_broker(wiped, cluster.now)
        .unwrap()
        .reply;
    cluster.epochs.insert(1, epoch);
    cluster.check();
    assert!(cluster.partition(id, 0).eligible_leader_replicas.is_empty());
    cluster.heartbeat(1);
    assert_eq!(
        cluster.partition(id, 0).leader,
        NO_LEADER,
        "no clean leader is left"
    );
}

#[test]
fn an_isr_that_repeats_a_broker_or_names_a_stranger_is_invalid() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    let id = cluster.create("orders", 1, 2);
    let leader = cluster.partition(id, 0).leader;
    let other = cluster.partition(id, 0).replicas[1];
    let stranger = (1..=3)
        .find(|n| !cluster.partition(id, 0).replicas.contains(n))
        .unwrap();
    for isr in [vec![leader, other, other], vec![leader, stranger]] {
        let request = cluster.alter(id, leader, &isr);
        let refused = cluster.controller.alter_partition(request).unwrap_err();
        assert_eq!(refused.kind, ErrorKind::InvalidRequest, "{isr:?}");
    }
}

#[test]
fn a_second_process_with_a_live_broker_id_is_refused_and_a_restart_re_earns_its_place() {
    let mut cluster = Cluster::new(&[1, 2]);
    let id = cluster.create("orders", 1, 2);
    let mut elsewhere = registration(2);
    elsewhere.directory_id = Uuid::new_v4();
    let refused = cluster
        .controller
        .register_broker(elsewhere, cluster.now)
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::DuplicateBrokerRegistration);
    // A retry of the same incarnation is answered with the same epoch.
    cluster.pass(SESSION_MS + 200, &[2]);
    let same = registration(1);
    let first = cluster
        .controller
        .register_broker(same.clone(), cluster.now)
        .unwrap();
    let again = cluster
        .controller
        .register_broker(same, cluster.now)
        .unwrap();
    assert_eq!(first.reply, again.reply);
    assert!(again.records.is_empty());
    cluster.epochs.insert(1, first.reply);
    cluster.heartbeat(1);
    // Broker 1's new incarnation must earn its ISR place again.
    assert_eq!(cluster.partition(id, 0).isr, vec![2]);
    // Broker 2 restarts after its session ended: as the last in-sync
    // replica it leads again, and its old epoch no longer counts.
    let old_epoch = cluster.epochs[&2];
    cluster.pass(SESSION_MS + 200, &[1]);
    assert_eq!(cluster.partition(id, 0).leader, NO_LEADER);
    cluster.start(2);
    assert!(cluster.epochs[&2] > old_epoch);
    let partition = cluster.partition(id, 0);
    assert_eq!((partition.leader, partition.isr), (2, vec![2]));
    let refused = cluster
        .controller
        .heartbeat(
            Heartbeat {
                node_id: 2,
                broker_epoch: old_epoch,
                metadata_offset: 0,
                want_fence: false,
                want_shutdown: false,
            },
            cluster.now,
        )
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::StaleBrokerEpoch);
}

#[test]
fn preferred_leaders_come_back_by_election_and_by_rebalance() {
    let mut cluster = Cluster::with_config(
        &[1, 2],
        ControllerConfig {
            session_timeout_ms: SESSION_MS,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 500,
            ..ControllerConfig::default()
        },
    );
    let id = cluster.create("orders", 1, 2);
    cluster.pass(SESSION_MS + 200, &[2]);
    assert_eq!(cluster.partition(id, 0).leader, 2);
    cluster.start(1);
    // 1 is back but not in sync until the leader adds it.
    cluster.pass(600, &[1, 2]);
    assert_eq!(cluster.partition(id, 0).leader, 2);
    let expand = cluster.alter(id, 2, &[2, 1]);
    cluster.controller.alter_partition(expand).unwrap();
    cluster
        .controller
        .elect_leader("orders", 0, ElectionType::Preferred)
        .unwrap();
    assert_eq!(cluster.partition(id, 0).leader, 1);
    let refused = cluster
        .controller
        .elect_leader("orders", 0, ElectionType::Preferred)
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::ElectionNotNeeded);
    // The same through the periodic rebalance.
    cluster.pass(SESSION_MS + 200, &[2]);
    assert_eq!(cluster.partition(id, 0).leader, 2);
    cluster.start(1);
    let expand = cluster.alter(id, 2, &[2, 1]);
    cluster.controller.alter_partition(expand).unwrap();
    cluster.pass(600, &[1, 2]);
    assert_eq!(cluster.partition(id, 0).leader, 1);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut cluster = Cluster::new(&[1, 2]);
    let a = cluster
        .controller
        .allocate_producer_ids(1, cluster.epochs[&1])
        .unwrap()
        .reply;
    let b = cluster
        .controller
        .allocate_producer_ids(2, cluster.epochs[&2])
        .unwrap()
        .reply;
    assert_eq!(a.first + a.size, b.first);
    let refused = cluster
        .controller
        .allocate_producer_ids(2, cluster.epochs[&2] - 1)
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::StaleBrokerEpoch);
}

#[test]
fn a_single_node_log_from_before_the_cluster_keeps_its_topics_after_the_upgrade() {
    // What the single-node Strom wrote: topics, no broker records.
    let mut image = MetadataImage::default();
    let id = Uuid::new_v4();
    image.apply(&MetadataRecord::ClusterCreated {
        cluster_id: "c".into(),
    });
    image.apply(&MetadataRecord::TopicCreated {
        name: "orders".into(),
        topic_id: id,
        partitions: vec![PartitionMetadata {
            replicas: vec![1],
            isr: vec![1],
            leader: 1,
            leader_epoch: 0,
            partition_epoch: 0,
            eligible_leader_replicas: vec![],
        }],
        configs: BTreeMap::new(),
    });
    let mut cluster = Cluster {
        controller: Controller::new(ControllerConfig::default(), image, 0),
        now: 0,
        epochs: BTreeMap::new(),
    };
    cluster.start(1);
    let partition = cluster.partition(id, 0);
    assert_eq!((partition.leader, partition.isr), (1, vec![1]));
    assert!(
        partition.leader_epoch > 0,
        "a restart is a new leader epoch"
    );
}

#[test]
fn bad_topic_requests_get_kafkas_errors() {
    let mut cluster = Cluster::new(&[1, 2, 3]);
    cluster.create("orders.v1", 1, 1);
    let attempt = |cluster: &mut Cluster, topic: NewTopic| {
        cluster
            .controller
            .create_topic(topic, false)
            .unwrap_err()
            .kind
    };
    let named = |name: &str| NewTopic {
        name: name.into(),
        ..NewTopic::default()
    };
    assert_eq!(
        attempt(&mut cluster, named("orders.v1")),
        ErrorKind::TopicAlreadyExists
    );
    assert_eq!(
        attempt(&mut cluster, named("orders_v1")),
        ErrorKind::InvalidTopic
    );
    assert_eq!(
        attempt(&mut cluster, named("bad/name")),
        ErrorKind::InvalidTopic
    );
    let mut zero = named("zero");
    zero.partitions = Some(0);
    assert_eq!(attempt(&mut cluster, zero), ErrorKind::InvalidPartitions);
    let mut twice = named("twice");
    twice.assignments = vec![vec![1, 1]];
    assert_eq!(
        attempt(&mut cluster, twice),
        ErrorKind::InvalidReplicaAssignment
    );
    let mut unknown = named("unknown");
    unknown.assignments = vec![vec![1, 7]];
    assert_eq!(
        attempt(&mut cluster, unknown),
        ErrorKind::InvalidReplicaAssignment
    );
    let mut both = named("both");
    both.assignments = vec![vec![1]];
    both.replication_factor = Some(1);
    assert_eq!(attempt(&mut cluster, both), ErrorKind::InvalidRequest);
    let mut manual = named("manual");
    manual.assignments = vec![vec![3, 1], vec![2, 3]];
    let topic = cluster
        .controller
        .create_topic(manual, false)
        .unwrap()
        .reply;
    assert_eq!(topic.partitions[1].replicas, vec![2, 3]);
    assert_eq!(topic.partitions[1].leader, 2);
    // More partitions keep the topic's replication factor.
    cluster
        .controller
        .add_partitions("manual", 4, &[], false)
        .unwrap();
    cluster.check();
    let grown = &cluster.controller.image().topics["manual"];
    assert!(grown.partitions.iter().all(|p| p.replicas.len() == 2));
    let refused = cluster
        .controller
        .add_partitions("manual", 3, &[], false)
        .unwrap_err();
    assert_eq!(refused.kind, ErrorKind::InvalidPartitions);
    let refused = cluster.controller.delete_topic("nope").unwrap_err();
    assert_eq!(refused.kind, ErrorKind::UnknownTopicOrPartition);
}
