//! TxnOffsetCommit: a transactional producer commits a consumer group's
//! offsets inside its transaction (`send_offsets_to_transaction`). The
//! offsets are written to `__consumer_offsets` as part of the transaction
//! and become the group's committed offsets only when the COMMIT marker
//! reaches that partition; an abort drops them. An offset for a topic or
//! partition that does not exist is refused with UNKNOWN_TOPIC_OR_PARTITION
//! and the others are staged, as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use crate::broker::Broker;

use crate::handlers::RequestContext;
use crate::internal_topics::NotWritten;
use crate::transactions::Refused;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let code = commit(&broker, context, &request).await.err().unwrap_or(0);
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let index = partition.partition_index;
                    let code = if broker.groups.partition_exists(&topic.name, index) {
                        code
                    } else {
                        ResponseError::UnknownTopicOrPartition.code()
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

async fn commit(
    broker: &Arc<Broker>,
    context: &RequestContext,
    request: &TxnOffsetCommitRequest,
) -> Result<(), i16> {
    let group_id = request.group_id.to_string();
    let transactional_id = request.transactional_id.to_string();
    let producer_id = request.producer_id.0;
    let epoch = request.producer_epoch;
    broker
        .groups
        .coordinate(&group_id)
        .await
        .map_err(|error| error.code())?;
    // AddOffsetsToTxn must have put the group's partition in the transaction.
    let partition = broker
        .groups
        .offsets_partition(&group_id)
        .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
    // KIP-890: the offsets partition must be in the open transaction, as its
    // coordinator (here or another broker) says.
    let knows_fenced = context.api_version >= 3;
    let code = |error: ResponseError| match error {
        ResponseError::ProducerFenced if !knows_fenced => {
            ResponseError::InvalidProducerEpoch.code()
        }
        other => other.code(),
    };
    let local = broker.transactions.coordinates(&transactional_id);
    let verify_here = || {
        broker
            .transactions
            .verify(&transactional_id, (producer_id, epoch), &partition)
            .map_err(|error| Refused::from(error).error)
    };
    // Asked again, under the lock markers take, when the write would open
    // the transaction in the group's partition: a coordinator here is asked
    // in-process; a remote coordinator's verdict holds only if no marker for
    // the producer and no new leader came to the partition since it was
    // asked (else the producer retries).
    let verified_remotely = if local {
        verify_here().map_err(code)?;
        None
    } else {
        let guard = broker
            .groups
            .transaction_guard(&group_id, producer_id)
            .ok_or(ResponseError::CoordinatorNotAvailable.code())?;
        broker
            .transactions
            .verify_remotely(&transactional_id, (producer_id, epoch), &partition)
            .await
            .map_err(code)?;
        Some(guard)
    };
    let admit = |now: (i32, u64)| match verified_remotely {
        None => verify_here(),
        Some(guard) if guard == now => Ok(()),
        Some(_) => {
            tracing::debug!(group = %group_id, transactional_id, "a transaction marker or a new leader reached the group's partition during verification; retry");
            Err(ResponseError::CoordinatorNotAvailable)
        }
    };
    // With consumer group metadata (v3+), a zombie member is refused.
    if context.api_version >= 3 && request.generation_id >= 0 {
        broker.groups.check_commit(
            &group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
            true,
        )?;
    }
    let requested: Vec<_> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.as_str(),
                    partition.partition_index,
                    partition.committed_offset,
                    partition.committed_leader_epoch,
                    partition.committed_metadata.as_deref(),
                )
            })
        })
        .collect();
    broker
        .groups
        .commit_transactional_offsets(&group_id, (producer_id, epoch), requested, admit)
        .await
        .map_err(|error| match error {
            NotWritten::Refused(error) => code(error),
            NotWritten::Failed(message) => {
                tracing::warn!(group = %group_id, %message, "transactional offset commit failed");
                ResponseError::CoordinatorNotAvailable.code()
            }
        })
}
