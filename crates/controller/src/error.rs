//! Why the controller refused a request. The kinds are Kafka's error codes
//! for the same refusals; the broker maps them to the wire in one place.

use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    InvalidTopic,
    TopicAlreadyExists,
    UnknownTopicOrPartition,
    UnknownTopicId,
    InvalidPartitions,
    InvalidReplicationFactor,
    InvalidReplicaAssignment,
    InvalidRequest,
    /// A broker id is registered by another live process.
    DuplicateBrokerRegistration,
    /// The broker id is not registered at all.
    BrokerIdNotRegistered,
    /// The request carries a broker epoch that is not the current one.
    StaleBrokerEpoch,
    /// An ISR change from a leader whose leader epoch is behind.
    FencedLeaderEpoch,
    /// An ISR change from a leader epoch the controller has not reached.
    NotLeaderOrFollower,
    /// The request is ahead of this controller's metadata: ask the active one.
    NotController,
    /// An ISR change based on a partition epoch that is no longer current.
    InvalidUpdateVersion,
    /// An ISR change that adds a fenced, shutting-down or restarted broker.
    IneligibleReplica,
    ElectionNotNeeded,
    PreferredLeaderNotAvailable,
    EligibleLeadersNotAvailable,
}

/// A refused request: the Kafka error and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, Error, serde::Serialize, serde::Deserialize)]
#[error("{message}")]
pub struct ControllerError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ControllerError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ControllerError {
        ControllerError {
            kind,
            message: message.into(),
        }
    }
}
