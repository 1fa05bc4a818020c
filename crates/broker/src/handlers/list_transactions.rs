//! ListTransactions: the transactional ids this coordinator knows, filtered
//! by state, producer id and how long the transaction has been open (v1),
//! for operators (`kafka-transactions.sh list`). Version 2's filter by a
//! regular expression is not served (see `protocol::VERSION_CAPS`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use strom_coordinator::transaction::TxnState;

use super::str_bytes;
use crate::broker::Broker;
use crate::handlers::RequestContext;
use crate::partition::now_ms;

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    if broker.transactions.ensure_ready().await.is_err() {
        return ListTransactionsResponse::default()
            .with_error_code(ResponseError::CoordinatorNotAvailable.code());
    }
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name) {
            Some(state) => states.push(state),
            None => unknown.push(name.clone()),
        }
    }
    let now = now_ms();
    let listed = broker.transactions.read(|coordinator| {
        coordinator
            .all()
            .filter(|metadata| states.is_empty() || states.contains(&metadata.state))
            .filter(|metadata| {
                request.producer_id_filters.is_empty()
                    || request
                        .producer_id_filters
                        .contains(&ProducerId(metadata.producer_id))
            })
            .filter(|metadata| {
                request.duration_filter < 0
                    || (metadata.state == TxnState::Ongoing
                        && now - metadata.start_ms >= request.duration_filter)
            })
            .map(|metadata| {
                TransactionState::default()
                    .with_transactional_id(TransactionalId(str_bytes(&metadata.transactional_id)))
                    .with_producer_id(ProducerId(metadata.producer_id))
                    .with_transaction_state(str_bytes(metadata.state.name()))
            })
            .collect::<Vec<_>>()
    });
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(listed)
}
