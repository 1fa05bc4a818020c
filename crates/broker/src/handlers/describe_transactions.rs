//! DescribeTransactions: a transactional id's producer, state, timeout and
//! the partitions of its open transaction, for operators
//! (`kafka-transactions.sh describe`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId,
};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let ready = broker.transactions.ensure_ready().await.is_ok();
    let states = broker.transactions.read(|coordinator| {
        request
            .transactional_ids
            .into_iter()
            .map(|transactional_id| {
                let state = TransactionState::default()
                    .with_transactional_id(transactional_id.clone())
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1)
                    .with_transaction_start_time_ms(-1);
                if !ready {
                    return state.with_error_code(ResponseError::CoordinatorNotAvailable.code());
                }
                let Some(metadata) = coordinator.get(&transactional_id) else {
                    return state.with_error_code(ResponseError::TransactionalIdNotFound.code());
                };
                let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
                for (topic, partition) in &metadata.partitions {
                    by_topic.entry(topic).or_default().push(*partition);
                }
                let topics = by_topic
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicData::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(partitions)
                    })
                    .collect();
                state
                    .with_transaction_state(str_bytes(metadata.state.name()))
                    .with_transaction_timeout_ms(metadata.timeout_ms)
                    .with_transaction_start_time_ms(metadata.start_ms)
                    .with_producer_id(ProducerId(metadata.producer_id))
                    .with_producer_epoch(metadata.producer_epoch)
                    .with_topics(topics)
            })
            .collect::<Vec<_>>()
    });
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
