//! Cluster metadata: which brokers, topics, partitions, leaders, replicas and
//! configs exist.
//!
//! The design is the one KRaft uses: metadata changes are records in a log
//! ([`MetadataRecord`]), and the current metadata ([`MetadataImage`]) is the
//! result of applying them in order. Applying is a pure function of the
//! image and the record. The controller (`strom-controller`) decides which
//! records to write; every node applies the committed ones.
//!
//! This crate knows nothing about Kafka requests, sockets or files.

mod image;
mod records;

pub use image::{BrokerRegistration, MetadataImage, TopicMetadata};
pub use records::{Endpoint, MetadataRecord, PartitionMetadata, NO_LEADER};
