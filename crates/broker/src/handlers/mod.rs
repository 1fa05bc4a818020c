//! One module per Kafka API. Each exposes `handle(broker, context, request)`.
//! ApiVersions, which lists the routing table, is answered by
//! [`crate::protocol`] itself.

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_configs;
pub mod alter_partition_reassignments;
mod config_resources;
pub mod consumer_group_describe;
pub mod consumer_group_heartbeat;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_config_resources;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod write_txn_markers;

use kafka_protocol::messages::{ApiKey, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::broker::Broker;

/// Who asked, and in which version: what a handler needs to answer.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// The topic a request names: by id from the versions that use topic ids
/// (empty if no topic has that id), else by name.
pub(crate) fn resolve_topic(broker: &Broker, name: &str, topic_id: Uuid, by_id: bool) -> String {
    if !by_id {
        return name.to_string();
    }
    broker.topics.topic_name_by_id(topic_id).unwrap_or_default()
}

/// A topic name in the protocol's type.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// A refused change as a response's error code and message (0 and none if it went through).
pub(crate) fn error_fields(
    outcome: Result<(), crate::topics::TopicError>,
) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err(error) => (error.error.code(), Some(str_bytes(error.message))),
    }
}

pub(crate) fn str_bytes(text: impl Into<String>) -> StrBytes {
    StrBytes::from_string(text.into())
}

/// KIP-951's hints for one response: a partition refused with
/// NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names its current leader
/// and leader epoch, and the response lists those leaders' endpoints (once
/// each), so the client moves there without a metadata round trip.
#[derive(Default)]
pub(crate) struct LeaderHints {
    pub endpoints: Vec<crate::topics::LiveBroker>,
}

impl LeaderHints {
    /// The (leader, leader epoch) to name for a partition answered with
    /// `error_code`; `None` for other errors, or without a leader.
    pub fn for_partition(
        &mut self,
        broker: &Broker,
        topic: &str,
        index: i32,
        error_code: i16,
    ) -> Option<(i32, i32)> {
        use kafka_protocol::error::ResponseError;
        let moved = [
            ResponseError::NotLeaderOrFollower.code(),
            ResponseError::FencedLeaderEpoch.code(),
        ];
        if !moved.contains(&error_code) {
            return None;
        }
        let (leader, leader_epoch, endpoint) = broker.topics.current_leader(topic, index)?;
        if let Some(live) = endpoint {
            if self
                .endpoints
                .iter()
                .all(|known| known.node_id != live.node_id)
            {
                self.endpoints.push(live);
            }
        }
        Some((leader, leader_epoch))
    }
}
