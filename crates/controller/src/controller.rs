//! The controller's state between decisions: the image with every record
//! it decided applied (ahead of the committed image while records are on
//! their way into the log), and the brokers' heartbeat sessions, which are
//! volatile: a newly active controller gives every broker a fresh session.
//!
//! Every decision is a method that checks a request against the image and
//! returns the reply with the records that carry it out, already applied to
//! the controller's image so the next decision sees them. The runtime writes
//! the records to the metadata log; if that fails, it drops this controller
//! and builds a new one from the committed image (Kafka's controller does
//! the same when it loses its place in the log).

use std::collections::BTreeMap;

use strom_metadata::{MetadataImage, MetadataRecord};

/// The controller's settings, by Kafka's names.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `broker.session.timeout.ms`: a broker that has not heartbeated for
    /// this long is fenced.
    pub session_timeout_ms: i64,
    /// `default.replication.factor`, for topics created without one.
    pub default_replication_factor: i16,
    /// `num.partitions`, for topics created without a count.
    pub default_partitions: i32,
    /// `unclean.leader.election.enable`, the cluster default; a topic's own
    /// config of the same name wins.
    pub unclean_leader_election: bool,
    /// `auto.leader.rebalance.enable`: move leadership back to preferred
    /// leaders every `leader.imbalance.check.interval.seconds`.
    pub auto_leader_rebalance: bool,
    pub leader_imbalance_check_interval_ms: i64,
    /// Producer ids handed to a broker at a time.
    pub producer_id_block_size: i64,
}

impl Default for ControllerConfig {
    fn default() -> ControllerConfig {
        ControllerConfig {
            session_timeout_ms: 4_000,
            default_replication_factor: 1,
            default_partitions: 1,
            unclean_leader_election: false,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 300_000,
            producer_id_block_size: 1_000,
        }
    }
}

/// A decision: the reply to the request and the records that carry it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    pub reply: T,
    pub records: Vec<MetadataRecord>,
}

/// A broker's heartbeat session with this controller.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    pub broker_epoch: i64,
    pub last_heartbeat_ms: i64,
    /// The highest metadata offset the broker reported having applied.
    pub metadata_offset: u64,
    /// In controlled shutdown: the metadata offset the broker must have
    /// applied (the end of its leadership moves) before it may exit.
    pub shutdown_offset: Option<u64>,
}

pub struct Controller {
    pub(crate) config: ControllerConfig,
    pub(crate) image: MetadataImage,
    pub(crate) sessions: BTreeMap<i32, Session>,
    /// When this controller became active: brokers that never heartbeat to
    /// it are fenced a session timeout after this.
    pub(crate) activated_ms: i64,
    pub(crate) last_rebalance_ms: i64,
}

impl Controller {
    /// A controller over the committed `image`, active from `now_ms`.
    pub fn new(config: ControllerConfig, image: MetadataImage, now_ms: i64) -> Controller {
        Controller {
            config,
            image,
            sessions: BTreeMap::new(),
            activated_ms: now_ms,
            last_rebalance_ms: now_ms,
        }
    }

    /// The image with every decided record applied.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// Applies `record` to the controller's image and adds it to `records`.
    pub(crate) fn emit(&mut self, records: &mut Vec<MetadataRecord>, record: MetadataRecord) {
        self.image.apply(&record);
        records.push(record);
    }

    /// Periodic work at `now_ms`: fences brokers whose session expired
    /// (moving their leaderships to other in-sync replicas) and, when due,
    /// moves leadership back to preferred leaders.
    pub fn tick(&mut self, now_ms: i64) -> Vec<MetadataRecord> {
        let mut records = Vec::new();
        self.fence_expired(now_ms, &mut records);
        if self.config.auto_leader_rebalance
            && now_ms - self.last_rebalance_ms >= self.config.leader_imbalance_check_interval_ms
        {
            self.last_rebalance_ms = now_ms;
            self.rebalance_leaders(&mut records);
        }
        records
    }

    /// The next time [`Controller::tick`] has work, at the latest.
    pub fn next_deadline(&self) -> i64 {
        let sessions = self
            .image
            .brokers
            .values()
            .filter(|broker| !broker.fenced)
            .map(|broker| self.session_expiry(broker.node_id, broker.broker_epoch));
        let rebalance = self
            .config
            .auto_leader_rebalance
            .then(|| self.last_rebalance_ms + self.config.leader_imbalance_check_interval_ms);
        sessions.chain(rebalance).min().unwrap_or(i64::MAX)
    }
}
