//! Strom's broker: a Kafka-protocol server over partition logs.
//!
//! Layers, outside in:
//! * [`server`]: the listener and connections (framing, pipelining, bounds);
//! * [`protocol`]: request routing, version checks, response encoding, all
//!   through the `kafka-protocol` crate's generated codecs;
//! * [`handlers`]: one module per Kafka API, working on the [`broker::Broker`]
//!   state;
//! * [`partition`], [`flusher`], [`fetch_session`]: the state the handlers
//!   work on, which knows nothing about sockets;
//! * [`topics`], [`quorum`], [`replica_manager`]: metadata changes, decided
//!   by the controller, committed by the quorum, applied to this node's
//!   partitions;
//! * [`replica_fetcher`]: followers fetching from their leaders, and the
//!   leaders' ISR changes;
//! * [`groups`] and [`transactions`]: the runtimes around the coordinators'
//!   state machines, keeping their state in [`internal_topics`] (through an
//!   `InternalLog`, never the whole broker) and following their partitions'
//!   leadership ([`coordinator_loads`]);
//! * [`node`]: startup, background tasks, clean shutdown;
//! * `strom-log` below, for storage; `strom-controller` for metadata.
//!
//! Modules depend on each other one way, from storage up to [`node`]
//! (`tests/module_layers.rs` checks it).
//!
//! Record batches stay bytes from socket to disk and back: the produce path
//! validates a batch's header and CRC and patches its offsets, the fetch
//! path copies byte ranges of segment files.

pub mod alloc_guard;
pub mod authorization;
pub mod broker;
pub mod config;
pub mod configs;
pub mod coordinator_loads;
pub mod fetch_session;
pub mod flusher;
pub mod groups;
pub mod handlers;
pub mod hw_checkpoint;
pub mod internal_topics;
pub mod node;
pub mod partition;
mod peer;
pub mod producer_state;
pub mod protocol;
mod quorum;
pub mod replica_fetcher;
pub mod replica_manager;
pub mod response;
pub mod server;
pub mod topics;
pub mod transactions;

pub use broker::Broker;
pub use config::{parse_voters, BrokerConfig, ProcessRoles};
pub use node::{start, RunningBroker, StartError};
