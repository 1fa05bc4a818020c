//! DescribeCluster: the cluster id, the controller and the brokers.

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::protocol::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    // One node is both the only broker and the controller, so the brokers
    // and controllers endpoint types (KIP-919) get the same answer.
    let node = DescribeClusterBroker::default()
        .with_broker_id(BrokerId(broker.node_id()))
        .with_host(str_bytes(broker.advertised_host.clone()))
        .with_port(broker.advertised_port);
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(vec![node])
}
