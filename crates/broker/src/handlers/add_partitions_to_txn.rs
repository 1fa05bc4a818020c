//! AddPartitionsToTxn: a producer names the partitions its open
//! transaction is about to write to, so that the coordinator knows where to
//! write markers. Versions 0-3 carry one transaction (from clients);
//! version 4 carries many, each possibly `verify_only` (KIP-890: a partition
//! leader asking whether a partition is already part of the transaction).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use strom_coordinator::transaction::TopicPartition;

use super::topic_name;
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let knows_fenced = context.api_version >= 2;
    if context.api_version <= 3 {
        let transaction = AddPartitionsToTxnTransaction::default()
            .with_transactional_id(request.v3_and_below_transactional_id)
            .with_producer_id(request.v3_and_below_producer_id)
            .with_producer_epoch(request.v3_and_below_producer_epoch)
            .with_topics(request.v3_and_below_topics);
        let result = add(&broker, transaction, knows_fenced).await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(result.topic_results);
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for transaction in request.transactions {
        results.push(add(&broker, transaction, knows_fenced).await);
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

/// One transaction's partitions: added, verified, or all refused with one error.
async fn add(
    broker: &Arc<Broker>,
    transaction: AddPartitionsToTxnTransaction,
    knows_fenced: bool,
) -> AddPartitionsToTxnResult {
    let transactional_id = transaction.transactional_id.to_string();
    let producer = (transaction.producer_id.0, transaction.producer_epoch);
    let requested: Vec<TopicPartition> = transaction
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.to_string(), *partition))
        })
        .collect();
    // Partitions of the cluster, wherever they are led (this node may hold
    // no replica of them).
    let unknown: Vec<&TopicPartition> = requested
        .iter()
        .filter(|(topic, partition)| {
            broker.topics.topic(topic).is_none_or(|metadata| {
                usize::try_from(*partition).map_or(true, |p| p >= metadata.partitions.len())
            })
        })
        .collect();
    let errors: Vec<i16> = if !unknown.is_empty() {
        // Nothing is added if any partition is unknown, as in Kafka.
        requested
            .iter()
            .map(|partition| {
                if unknown.contains(&partition) {
                    ResponseError::UnknownTopicOrPartition.code()
                } else {
                    ResponseError::OperationNotAttempted.code()
                }
            })
            .collect()
    } else if transaction.verify_only {
        match broker.transactions.ready(&transactional_id).await {
            Err(refused) => vec![refused.error.code(); requested.len()],
            Ok(()) => requested
                .iter()
                .map(|partition| {
                    broker
                        .transactions
                        .verify(&transactional_id, producer, partition)
                        .map_or_else(|error| error.code(), |()| 0)
                })
                .collect(),
        }
    } else {
        let code = match broker
            .transactions
            .add_partitions(&transactional_id, producer, &requested)
            .await
        {
            Ok(()) => 0,
            Err(refused) => refused.code(knows_fenced),
        };
        vec![code; requested.len()]
    };
    let mut topics: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), code) in requested.iter().zip(errors) {
        if topics.last().is_none_or(|last| last.name.as_str() != topic) {
            topics.push(AddPartitionsToTxnTopicResult::default().with_name(topic_name(topic)));
        }
        if let Some(last) = topics.last_mut() {
            last.results_by_partition.push(
                AddPartitionsToTxnPartitionResult::default()
                    .with_partition_index(*partition)
                    .with_partition_error_code(code),
            );
        }
    }
    AddPartitionsToTxnResult::default()
        .with_transactional_id(transaction.transactional_id)
        .with_topic_results(topics)
}
