//! DescribeQuorum: the controller quorum, as KRaft reports the quorum of
//! `__cluster_metadata`: the leader and its epoch (the Raft term), the high
//! watermark and every voter's and observer's log end offset (metadata
//! offsets), answered by the leader (a broker asks it, as Kafka's brokers
//! forward the request to the controller). A single `strom serve` is a
//! one-voter quorum.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::quorum::ReplicaView;

const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    // Kafka's rules: exactly one topic with one partition, else
    // INVALID_REQUEST; any but partition 0 of the metadata topic is
    // UNKNOWN_TOPIC_OR_PARTITION.
    let [topic] = request.topics.as_slice() else {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    };
    let [partition] = topic.partitions.as_slice() else {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    };
    let mut answer = PartitionData::default().with_partition_index(partition.partition_index);
    let mut nodes = Vec::new();
    if topic.topic_name.as_str() != METADATA_TOPIC || partition.partition_index != 0 {
        answer = answer.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    } else {
        match broker.topics.quorum().describe().await {
            Ok(view) => {
                let state = |replica: &ReplicaView| {
                    let state = ReplicaState::default()
                        .with_replica_id(BrokerId(replica.node_id))
                        .with_log_end_offset(replica.log_end_offset);
                    // Timestamps came with v1.
                    if context.api_version >= 1 {
                        state
                            .with_last_fetch_timestamp(replica.last_fetch_ms)
                            .with_last_caught_up_timestamp(replica.last_caught_up_ms)
                    } else {
                        state
                    }
                };
                let live = broker.topics.live_brokers();
                nodes = view
                    .voters
                    .iter()
                    .filter_map(|voter| live.iter().find(|b| b.node_id == voter.node_id))
                    .map(|node| {
                        Node::default()
                            .with_node_id(BrokerId(node.node_id))
                            .with_listeners(vec![Listener::default()
                                .with_name(str_bytes("PLAINTEXT"))
                                .with_host(str_bytes(node.host.clone()))
                                .with_port(node.port)])
                    })
                    .collect();
                answer = answer
                    .with_leader_id(BrokerId(view.leader))
                    .with_leader_epoch(i32::try_from(view.term).unwrap_or(i32::MAX))
                    .with_high_watermark(view.high_watermark)
                    .with_current_voters(view.voters.iter().map(state).collect())
                    .with_observers(view.observers.iter().map(state).collect());
            }
            Err(problem) => {
                tracing::debug!(%problem, "DescribeQuorum found no quorum leader");
                answer = answer.with_error_code(ResponseError::NotLeaderOrFollower.code());
                if context.api_version >= 2 {
                    answer = answer.with_error_message(Some(str_bytes(problem)));
                }
            }
        }
    }
    DescribeQuorumResponse::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(topic_name(topic.topic_name.as_str()))
            .with_partitions(vec![answer])])
        // Listeners per node came with v2.
        .with_nodes(if context.api_version >= 2 {
            nodes
        } else {
            Vec::new()
        })
}
