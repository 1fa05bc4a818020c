//! The shared state of a running broker: what the request handlers work
//! on. Built and started by [`crate::node`].

use std::sync::Arc;

use strom_log::FileCache;
use tokio::sync::Semaphore;

use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::flusher::Flusher;
use crate::partition::PartitionRegistry;
use crate::topics::Topics;

/// Shared state of a running broker.
pub struct Broker {
    pub config: BrokerConfig,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub topics: Arc<Topics>,
    pub partitions: Arc<PartitionRegistry>,
    /// The replicated partitions' high watermarks on disk (hw_checkpoint).
    pub hw_checkpoint: Arc<crate::hw_checkpoint::Checkpoint>,
    pub flusher: Flusher,
    pub replica_fetchers: crate::replica_fetcher::ReplicaFetchers,
    /// Committed metadata may have moved partition leadership: wakes the
    /// coordinators' loader.
    pub leadership_changed: tokio::sync::Notify,
    pub fetch_sessions: FetchSessionCache,
    /// The internal topics, as the coordinators (and the schema registry)
    /// write them.
    pub internal_log: crate::internal_topics::InternalLog,
    pub groups: Arc<crate::groups::Groups>,
    pub transactions: Arc<crate::transactions::Transactions>,
    pub files: FileCache,
    /// Segment files that fetch responses on their way may hold open beside
    /// the cache's (see [`crate::response::Located::new`]).
    pub splice_files: Arc<Semaphore>,
    /// Bytes of request frames being handled, across all connections.
    pub request_memory: Arc<Semaphore>,
    pub request_memory_bytes: u32,
}

impl Broker {
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    pub fn cluster_id(&self) -> String {
        self.topics.cluster_id()
    }

    /// Broker configs now, dynamic changes included.
    pub fn configs(&self) -> crate::configs::BrokerOverrides {
        self.topics.configs()
    }
}
