//! DescribeQuorum: the KRaft quorum of `__cluster_metadata`. A single
//! `strom serve` is a one-voter quorum: this node is its only voter and its
//! leader, with no observers. Strom's metadata log is not a Raft log yet
//! (ARCHITECTURE.md, "Local metadata log until clustering"), so it has no
//! Raft offsets to report: the high watermark and the voter's log end
//! offset are -1, Kafka's "unknown", and the leader epoch is 1.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::partition::now_ms;
use crate::protocol::RequestContext;

const METADATA_TOPIC: &str = "__cluster_metadata";
const LEADER_EPOCH: i32 = 1;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
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
    let node = broker.node_id();
    let mut answer = PartitionData::default().with_partition_index(partition.partition_index);
    if topic.topic_name.as_str() != METADATA_TOPIC || partition.partition_index != 0 {
        answer = answer.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    } else {
        let now = now_ms();
        let voter = ReplicaState::default()
            .with_replica_id(BrokerId(node))
            .with_log_end_offset(-1)
            .with_last_fetch_timestamp(now)
            .with_last_caught_up_timestamp(now);
        answer = answer
            .with_leader_id(BrokerId(node))
            .with_leader_epoch(LEADER_EPOCH)
            .with_high_watermark(-1)
            .with_current_voters(vec![voter]);
    }
    let listener = Listener::default()
        .with_name(str_bytes("PLAINTEXT"))
        .with_host(str_bytes(broker.advertised_host.clone()))
        .with_port(broker.advertised_port.clamp(0, u16::MAX as i32) as u16);
    DescribeQuorumResponse::default()
        .with_topics(vec![TopicData::default()
            .with_topic_name(topic_name(topic.topic_name.as_str()))
            .with_partitions(vec![answer])])
        .with_nodes(vec![Node::default()
            .with_node_id(BrokerId(node))
            .with_listeners(vec![listener])])
}
