//! WriteTxnMarkers: a transaction coordinator on another broker has this
//! broker write a transaction's COMMIT or ABORT markers into the partitions
//! it leads. Each is answered once durable on every in-sync replica.

use std::sync::Arc;

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::transactions::MarkerOutcome;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let partitions: Vec<(String, i32)> = marker
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partition_indexes
                    .iter()
                    .map(|index| (topic.name.to_string(), *index))
            })
            .collect();
        let outcomes = broker
            .transactions
            .write_local_markers(
                marker.producer_id.0,
                marker.producer_epoch,
                marker.transaction_result,
                marker.coordinator_epoch,
                &partitions,
            )
            .await;
        let mut outcomes = partitions.iter().zip(outcomes);
        let topics = marker
            .topics
            .into_iter()
            .map(|topic| {
                let answered = topic
                    .partition_indexes
                    .iter()
                    .zip(outcomes.by_ref())
                    .map(|(index, ((name, _), outcome))| {
                        let code = match outcome {
                            MarkerOutcome::Done => 0,
                            MarkerOutcome::NotLeader => broker.topics.not_here(name, *index).code(),
                            MarkerOutcome::Failed(error) => error.code(),
                        };
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(*index)
                            .with_error_code(code)
                    })
                    .collect();
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(answered)
            })
            .collect();
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}
