//! TxnOffsetCommit: a transactional producer commits a consumer group's
//! offsets inside its transaction (`send_offsets_to_transaction`). The
//! offsets are written to `__consumer_offsets` as part of the transaction
//! and become the group's committed offsets only when the COMMIT marker
//! reaches that partition; an abort drops them.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use strom_coordinator::records::partition_for;
use strom_coordinator::CommittedOffset;

use crate::broker::Broker;
use crate::groups::{offset_record, write_group_records, OFFSETS_TOPIC};
use crate::partition::now_ms;
use crate::protocol::RequestContext;

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
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(partition.partition_index)
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
        .ensure_ready(broker)
        .await
        .map_err(|_| ResponseError::CoordinatorNotAvailable.code())?;
    let offsets_partitions = broker
        .partitions
        .topic(OFFSETS_TOPIC)
        .map_or(1, |partitions| partitions.len() as i32);
    // AddOffsetsToTxn must have put the group's partition in the transaction.
    let partition = (
        OFFSETS_TOPIC.to_string(),
        partition_for(&group_id, offsets_partitions),
    );
    broker
        .transactions
        .coordinator()
        .verify(&transactional_id, producer_id, epoch, &partition)
        .map_err(|error| {
            let fenced = error == strom_coordinator::transaction::TxnError::ProducerFenced;
            if fenced && context.api_version < 3 {
                ResponseError::InvalidProducerEpoch.code()
            } else {
                error.code()
            }
        })?;
    // With consumer group metadata (v3+), a zombie member is refused.
    if context.api_version >= 3 && request.generation_id >= 0 {
        broker.groups.check_commit(
            &group_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        )?;
    }
    let now = now_ms();
    let mut staged = Vec::new();
    let mut records = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let committed = CommittedOffset {
                offset: partition.committed_offset,
                leader_epoch: partition.committed_leader_epoch,
                metadata: partition
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_default(),
                commit_timestamp_ms: now,
            };
            records.push(offset_record(
                &group_id,
                &topic.name,
                partition.partition_index,
                Some(&committed),
            ));
            staged.push((topic.name.to_string(), partition.partition_index, committed));
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    write_group_records(broker, &group_id, records, Some((producer_id, epoch)))
        .await
        .map_err(|error| {
            tracing::warn!(group = %group_id, %error, "transactional offset commit failed");
            ResponseError::CoordinatorNotAvailable.code()
        })?;
    let mut coordinator = broker.groups.coordinator();
    for (topic, partition, committed) in staged {
        coordinator.stage_transactional_offset(
            producer_id,
            &group_id,
            &topic,
            partition,
            committed,
        );
    }
    Ok(())
}
