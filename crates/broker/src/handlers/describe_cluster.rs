//! DescribeCluster: the cluster id, the controller and the brokers, and when
//! asked the operations the client may perform on the cluster (KIP-430).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::authorization::{authorized_operations, Resource, NOT_REQUESTED};
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // Every node runs a broker, and the voters among them are the
    // controllers; both endpoint types (KIP-919) list the live brokers.
    let brokers = broker
        .topics
        .live_brokers()
        .into_iter()
        .map(|node| {
            DescribeClusterBroker::default()
                .with_broker_id(BrokerId(node.node_id))
                .with_host(str_bytes(node.host))
                .with_port(i32::from(node.port))
                .with_rack(node.rack.map(str_bytes))
        })
        .collect();
    let operations = if request.include_cluster_authorized_operations {
        authorized_operations(Resource::Cluster)
    } else {
        NOT_REQUESTED
    };
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(operations)
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.topics.controller_id()))
        .with_brokers(brokers)
}
