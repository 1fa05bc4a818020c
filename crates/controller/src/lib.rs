//! Cluster metadata: which brokers, topics, partitions, leaders, replicas and
//! configs exist.
//!
//! The design is the one KRaft uses: metadata changes are records in a log
//! ([`MetadataRecord`]), and the current metadata ([`ClusterMetadata`]) is
//! the result of applying them in order. Applying is a pure function of the
//! state and the record, so the same state machine can sit behind a Raft
//! library once Strom runs as a multi-node cluster; today a single node keeps
//! the log in a local file ([`MetadataLog`]) that it fsyncs before a change
//! is acknowledged.
//!
//! This crate knows nothing about Kafka requests or sockets.

mod log;
mod state;

pub use log::{MetadataLog, MetadataLogError};
pub use state::{ClusterMetadata, MetadataRecord, PartitionMetadata, TopicMetadata};
