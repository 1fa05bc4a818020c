//! ConsumerGroupDescribe (KIP-848): epochs, assignor, members with their
//! current and target assignments.

use std::sync::Arc;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse};
use strom_coordinator::consumer_group::{Partitions, TopicView};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::authorization::{authorized_operations, Resource, NOT_REQUESTED};
use crate::broker::Broker;
use crate::handlers::RequestContext;

fn assignment(partitions: &Partitions, view: &TopicView) -> Assignment {
    let topics = partitions
        .iter()
        .map(|(topic, partitions)| {
            let id = view
                .get(topic)
                .map_or(Uuid::nil(), |(id, _)| Uuid::from_bytes(*id));
            TopicPartitions::default()
                .with_topic_id(id)
                .with_topic_name(topic_name(topic))
                .with_partitions(partitions.iter().copied().collect())
        })
        .collect();
    Assignment::default().with_topic_partitions(topics)
}

pub async fn handle(
    broker: Arc<Broker>,
    _context: &RequestContext,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut errors = Vec::with_capacity(request.group_ids.len());
    for group_id in &request.group_ids {
        errors.push(broker.groups.coordinate(group_id).await.err());
    }
    // KIP-430: when asked, what the client may do with each group it finds.
    let operations = request
        .include_authorized_operations
        .then(|| authorized_operations(Resource::Group));
    let view = crate::groups::topic_view(&broker.topics);
    let described = broker.groups.read_consumer_groups(|groups| {
        request
            .group_ids
            .into_iter()
            .zip(errors)
            .map(|(group_id, error)| {
                let answer = DescribedGroup::default().with_group_id(group_id.clone());
                if let Some(error) = error {
                    return answer.with_error_code(error.code());
                }
                let Some(group) = groups.group(&group_id) else {
                    return answer
                        .with_error_code(
                            kafka_protocol::error::ResponseError::GroupIdNotFound.code(),
                        )
                        .with_error_message(Some(str_bytes(format!(
                            "no consumer group '{}'",
                            group_id.as_str()
                        ))));
                };
                let members = group
                    .members
                    .values()
                    .map(|member| {
                        Member::default()
                            .with_member_id(str_bytes(member.member_id.clone()))
                            .with_instance_id(member.instance_id.clone().map(str_bytes))
                            .with_rack_id(member.rack_id.clone().map(str_bytes))
                            .with_member_epoch(member.member_epoch)
                            .with_client_id(str_bytes(member.client_id.clone()))
                            .with_client_host(str_bytes(member.client_host.clone()))
                            .with_subscribed_topic_names(
                                member
                                    .subscribed_topics
                                    .iter()
                                    .map(|t| topic_name(t))
                                    .collect(),
                            )
                            .with_subscribed_topic_regex(
                                member
                                    .subscribed_regex
                                    .as_ref()
                                    .map(|regex| str_bytes(regex.source.clone())),
                            )
                            .with_assignment(assignment(&member.assigned, &view))
                            .with_target_assignment(assignment(&member.target, &view))
                    })
                    .collect();
                answer
                    .with_authorized_operations(operations.unwrap_or(NOT_REQUESTED))
                    .with_group_state(str_bytes(group.state()))
                    .with_group_epoch(group.group_epoch)
                    .with_assignment_epoch(group.assignment_epoch)
                    .with_assignor_name(str_bytes(group.assignor.clone()))
                    .with_members(members)
            })
            .collect::<Vec<_>>()
    });
    ConsumerGroupDescribeResponse::default().with_groups(described)
}
