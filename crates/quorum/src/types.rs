//! The Raft types of the metadata quorum: what one Raft entry carries and
//! how openraft is configured to carry it.

use std::io::Cursor;

use serde::{Deserialize, Serialize};
use strom_metadata::{MetadataImage, MetadataRecord};

/// What one normal Raft entry asks the metadata to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Apply these records, in order (one controller decision).
    Records(Vec<MetadataRecord>),
    /// Start from this image: the metadata of a data directory written by
    /// single-node Strom before the quorum existed. Applied only to an
    /// empty image, so it can be proposed again after a crash.
    Seed(Box<MetadataImage>),
}

openraft::declare_raft_types!(
    /// The metadata quorum's Raft types: node ids are Kafka node ids, the
    /// answer to an entry is the metadata offset after it.
    pub TypeConfig:
        D = Command,
        R = u64,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type LogId = openraft::LogId<u64>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<u64>;
pub type Raft = openraft::Raft<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
