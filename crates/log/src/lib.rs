//! Strom's storage layer.
//!
//! A partition is a [`Log`]: a directory of segments named by base offset.
//! Each segment is a `.log` file of Kafka v2 record batches stored exactly as
//! they arrive on the wire, with a sparse `.index` (offset to byte position)
//! and `.timeindex` (timestamp to offset), and a `.txnindex` of the
//! transactions aborted in it, so that a fetch is a copy of a
//! byte range and a lookup by offset or by time reads a few headers at most.
//!
//! Invariants this crate keeps:
//! * Offsets strictly grow inside a log; segments are ordered by base offset
//!   and never overlap.
//! * Only the last (active) segment is ever written; a segment is made
//!   durable (`seal`) before a new one is rolled.
//! * After [`Log::open`] every byte of every segment is a whole batch with a
//!   valid CRC: a torn or corrupt tail is truncated, never served.
//! * Index files are hints: anything the log can rebuild it rebuilds.
//!
//! It knows nothing about sockets, requests or Kafka APIs beyond the record
//! batch byte layout in [`batch`].

pub mod batch;
mod check;
pub mod cleaner;
mod error;
pub mod files;
mod index;
pub mod leader_epoch;
mod log;
mod reader;
pub mod records;
mod segment;
mod txn_index;

pub use check::{check_segment, SegmentCheck};
pub use error::LogError;
pub use files::FileCache;
pub use leader_epoch::{EpochEntry, LeaderEpochCache};
pub use log::{
    AppendInfo, AppendOptions, FlushTarget, Log, LogConfig, ReadSlice, Recovery, RetentionOutcome,
};
pub use txn_index::AbortedTxn;
