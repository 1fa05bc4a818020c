//! Coordinators as state machines, apart from sockets and storage.
//!
//! [`GroupCoordinator`] implements Kafka's classic consumer group protocol
//! (JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the rules for offset
//! commits) as methods that take the current time and return what to
//! answer. JoinGroup and SyncGroup may have to wait for other members; their
//! answers come back later as [`Action`]s, from the call that completes the
//! round or from [`GroupCoordinator::tick`], which the runtime calls when
//! [`GroupCoordinator::next_deadline`] passes. Nothing here sleeps, reads a
//! clock or does I/O, so every rule is testable with plain function calls.
//!
//! [`transaction::TransactionCoordinator`] is Kafka's transaction
//! coordinator in the same style: producer ids and epochs per
//! `transactional.id`, the partitions of each open transaction, and the
//! markers to write when it ends.
//!
//! [`records`] encodes group state the way Kafka keys it in
//! `__consumer_offsets`, so that the runtime can persist and rebuild it.

pub mod consumer_group;
mod group;
pub mod records;
pub mod transaction;

pub use group::*;
