//! The controller: every decision about cluster metadata, and the log the
//! decisions are kept in.
//!
//! Decisions are pure (Kafka's QuorumController managers, openraft's
//! Engine): [`Controller`] takes a request and the time, checks it against
//! the metadata image, and returns the reply together with the metadata
//! records that carry it out ([`Decision`]). It places replicas, registers,
//! fences and unfences brokers, elects leaders, accepts or refuses ISR
//! changes and hands out producer-id blocks. Nothing here does I/O or reads
//! a clock, so a seeded simulation can drive it.
//!
//! The runtime around it writes the records to the metadata log (today the
//! local, fsynced [`MetadataLog`]), and every node applies the committed
//! ones to its own image (`strom-metadata`).

mod brokers;
mod controller;
mod error;
pub mod invariants;
mod log;
mod partitions;
mod placement;
mod request;
mod topics;

pub use brokers::{Heartbeat, HeartbeatReply, ProducerIdBlock, Registration};
pub use controller::{Controller, ControllerConfig, Decision};
pub use error::{ControllerError, ErrorKind};
pub use log::{MetadataLog, MetadataLogError, SNAPSHOT_AFTER_RECORDS};
pub use partitions::{AlterPartition, ElectionType, IsrMember};
pub use request::{ControllerReply, ControllerRequest};
pub use topics::{validate_topic_name, NewTopic, MAX_PARTITIONS};
