//! DeleteTopics: by name, or by topic id from version 6.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::handlers::RequestContext;

pub async fn handle(
    broker: Arc<Broker>,
    context: &RequestContext,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if context.api_version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| {
                (
                    topic.name.as_ref().map(|name| name.to_string()),
                    topic.topic_id,
                )
            })
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| (Some(name.to_string()), Uuid::nil()))
            .collect()
    };
    let mut responses = Vec::with_capacity(targets.len());
    for (name, topic_id) in targets {
        let resolved = match &name {
            Some(name) => Some(name.clone()),
            None => broker.topics.topic_name_by_id(topic_id),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(topic_id);
        let Some(resolved) = resolved else {
            responses.push(
                result
                    .with_error_code(ResponseError::UnknownTopicId.code())
                    .with_error_message(Some(str_bytes(format!("no topic has id {topic_id}")))),
            );
            continue;
        };
        let deleter = broker.clone();
        let target = resolved.clone();
        let deleted = tokio::spawn(async move { deleter.topics.delete(&target).await }).await;
        let result = match deleted {
            Ok(Ok(metadata)) => result
                .with_name(Some(topic_name(&metadata.name)))
                .with_topic_id(metadata.topic_id),
            Ok(Err(error)) => result
                .with_error_code(error.error.code())
                .with_error_message(Some(str_bytes(error.message))),
            Err(_) => result.with_error_code(ResponseError::UnknownServerError.code()),
        };
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
