//! OffsetFetch: a group's committed offsets (one group before v8, several
//! from v8); -1 for partitions without a commit. With `require_stable`
//! (v7+, KIP-447) a partition whose offset a transaction is still
//! committing answers UNSTABLE_OFFSET_COMMIT, and the client retries.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::handlers::RequestContext;

/// Per topic: (partition, offset, leader epoch, metadata, error code).
type Answer = Vec<(String, Vec<(i32, i64, i32, String, i16)>)>;

fn lookup(
    coordinator: &strom_coordinator::GroupCoordinator,
    group_id: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Answer {
    let offsets = coordinator.offsets(group_id);
    let wanted: Vec<(String, Vec<i32>)> = match topics {
        Some(topics) => topics,
        None => {
            let mut all: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (topic, partition) in offsets
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
            {
                all.entry(topic).or_default().push(partition);
            }
            all.into_iter().collect()
        }
    };
    wanted
        .into_iter()
        .map(|(topic, partitions)| {
            let found = partitions
                .into_iter()
                .map(|partition| {
                    if require_stable && coordinator.has_pending_offset(group_id, &topic, partition)
                    {
                        let unstable = ResponseError::UnstableOffsetCommit.code();
                        return (partition, -1, -1, String::new(), unstable);
                    }
                    match offsets.and_then(|o| o.get(&(topic.clone(), partition))) {
                        Some(committed) => (
                            partition,
                            committed.offset,
                            committed.leader_epoch,
                            committed.metadata.clone(),
                            0,
                        ),
                        None => (partition, -1, -1, String::new(), 0),
                    }
                })
                .collect();
            (topic, found)
        })
        .collect()
}

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    if context.api_version >= 8 {
        // Each group answers for itself: its coordinator may be elsewhere.
        let mut errors = Vec::with_capacity(request.groups.len());
        for group in &request.groups {
            errors.push(broker.groups.coordinate(&group.group_id).await.err());
        }
        let groups = request
            .groups
            .into_iter()
            .zip(errors)
            .map(|(group, error)| {
                if let Some(error) = error {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id)
                        .with_error_code(error.code());
                }
                let wanted = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|topic| (topic.name.to_string(), topic.partition_indexes))
                        .collect()
                });
                let topics = broker
                    .groups
                    .read(|coordinator| {
                        lookup(coordinator, &group.group_id, wanted, request.require_stable)
                    })
                    .into_iter()
                    .map(|(topic, partitions)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                partitions
                                    .into_iter()
                                    .map(|(partition, offset, epoch, metadata, code)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(partition)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(str_bytes(metadata)))
                                            .with_error_code(code)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    if let Err(error) = broker.groups.coordinate(&request.group_id).await {
        return OffsetFetchResponse::default().with_error_code(error.code());
    }
    let wanted = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| (topic.name.to_string(), topic.partition_indexes))
            .collect()
    });
    let with_epoch = context.api_version >= 5;
    let require_stable = context.api_version >= 7 && request.require_stable;
    let topics = broker
        .groups
        .read(|coordinator| lookup(coordinator, &request.group_id, wanted, require_stable))
        .into_iter()
        .map(|(topic, partitions)| {
            OffsetFetchResponseTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(partition, offset, epoch, metadata, code)| {
                            let answer = OffsetFetchResponsePartition::default()
                                .with_partition_index(partition)
                                .with_committed_offset(offset)
                                .with_metadata(Some(str_bytes(metadata)))
                                .with_error_code(code);
                            if with_epoch {
                                answer.with_committed_leader_epoch(epoch)
                            } else {
                                answer
                            }
                        })
                        .collect(),
                )
        })
        .collect();
    OffsetFetchResponse::default().with_topics(topics)
}
