//! DescribeCluster: the cluster id, the controller and the brokers, and when
//! asked the operations the client may perform on the cluster (KIP-430).

use std::sync::Arc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};

use super::str_bytes;
use crate::authorization::{authorized_operations, Resource, NOT_REQUESTED};
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
    let operations = if request.include_cluster_authorized_operations {
        authorized_operations(Resource::Cluster)
    } else {
        NOT_REQUESTED
    };
    DescribeClusterResponse::default()
        .with_cluster_authorized_operations(operations)
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(broker.cluster_id()))
        .with_controller_id(BrokerId(broker.node_id()))
        .with_brokers(vec![node])
}
