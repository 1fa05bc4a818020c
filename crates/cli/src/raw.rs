//! A few admin requests librdkafka's API does not offer (DescribeCluster,
//! DescribeLogDirs, IncrementalAlterConfigs), sent over a plain socket with
//! the `kafka-protocol` codecs. They are standard Kafka APIs, so these work
//! against any Kafka-compatible broker too.
//!
//! In a cluster a request goes where Kafka's admin client sends it: to
//! every broker ([`each_broker`]: ListGroups, ListTransactions,
//! DescribeLogDirs), to a key's coordinator ([`coordinator`]), or to a
//! partition's leader ([`leaders`]).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};

use crate::client::{CliError, CliResult, ClientArgs};

pub struct RawClient {
    stream: TcpStream,
    correlation_id: i32,
}

impl RawClient {
    /// A connection to the first bootstrap broker.
    pub fn connect(args: &ClientArgs) -> CliResult<RawClient> {
        RawClient::connect_to(args, args.bootstrap.split(',').next().unwrap_or_default())
    }

    /// A connection to the broker at `address` (host:port).
    pub fn connect_to(args: &ClientArgs, address: &str) -> CliResult<RawClient> {
        use std::net::ToSocketAddrs;
        let address = address
            .to_socket_addrs()
            .map_err(|e| args.unreachable(e))?
            .next()
            .ok_or_else(|| args.unreachable("no address"))?;
        let stream =
            TcpStream::connect_timeout(&address, args.timeout).map_err(|e| args.unreachable(e))?;
        stream.set_read_timeout(Some(args.timeout.max(Duration::from_secs(1))))?;
        Ok(RawClient {
            stream,
            correlation_id: 0,
        })
    }

    pub fn call<Q, R>(&mut self, key: ApiKey, version: i16, request: &Q) -> CliResult<R>
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("strom-cli")));
        let mut frame = BytesMut::new();
        let failed = |e: anyhow::Error| CliError::Failed(format!("encoding {key:?}: {e}"));
        header
            .encode(&mut frame, Q::header_version(version))
            .map_err(failed)?;
        request.encode(&mut frame, version).map_err(failed)?;
        self.stream.write_all(&(frame.len() as i32).to_be_bytes())?;
        self.stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let mut body = vec![0u8; i32::from_be_bytes(size).max(0) as usize];
        self.stream.read_exact(&mut body)?;
        let mut body = Bytes::from(body);
        let decode_failed =
            |e: anyhow::Error| CliError::Failed(format!("decoding the {key:?} response: {e}"));
        ResponseHeader::decode(&mut body, R::header_version(version)).map_err(decode_failed)?;
        R::decode(&mut body, version).map_err(decode_failed)
    }
}

/// The cluster's brokers, node id and `host:port`, as the bootstrap
/// broker's metadata lists them.
pub fn brokers(raw: &mut RawClient) -> CliResult<BTreeMap<i32, String>> {
    let response: MetadataResponse = raw.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(Vec::new())),
    )?;
    Ok(response
        .brokers
        .iter()
        .map(|broker| (broker.node_id.0, format!("{}:{}", broker.host, broker.port)))
        .collect())
}

/// A connection to broker `node_id`, wherever `brokers` says it listens.
pub fn connect_node(
    args: &ClientArgs,
    brokers: &BTreeMap<i32, String>,
    node_id: i32,
) -> CliResult<RawClient> {
    let address = brokers.get(&node_id).ok_or_else(|| {
        CliError::Failed(format!(
            "broker {node_id} is not in the cluster's metadata (down?); try again shortly"
        ))
    })?;
    RawClient::connect_to(args, address)
}

/// `request` sent to every broker of the cluster: each one's answer.
pub fn each_broker<Q, R>(
    args: &ClientArgs,
    key: ApiKey,
    version: i16,
    request: &Q,
) -> CliResult<Vec<R>>
where
    Q: Encodable + HeaderVersion,
    R: Decodable + HeaderVersion,
{
    let brokers = brokers(&mut RawClient::connect(args)?)?;
    brokers
        .values()
        .map(|address| RawClient::connect_to(args, address)?.call(key, version, request))
        .collect()
}

/// The broker coordinating `key`: a group (`key_type` 0) or a
/// transactional id (1).
pub fn coordinator(raw: &mut RawClient, key: &str, key_type: i8) -> CliResult<i32> {
    let response: FindCoordinatorResponse = raw.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(key.to_string()))
            .with_key_type(key_type),
    )?;
    if response.error_code != 0 {
        return Err(CliError::Failed(format!(
            "no coordinator for '{key}' now ({}); try again shortly",
            error_name(response.error_code)
        )));
    }
    Ok(response.node_id.0)
}

/// The leader of each partition of `topic` (-1 where there is none now);
/// `None` if the topic does not exist.
pub fn leaders(raw: &mut RawClient, topic: &str) -> CliResult<Option<BTreeMap<i32, i32>>> {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let response: MetadataResponse = raw.call(
        ApiKey::Metadata,
        12,
        &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))])),
    )?;
    Ok(response
        .topics
        .iter()
        .find(|found| found.error_code == 0)
        .map(|found| {
            found
                .partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_id.0))
                .collect()
        }))
}

/// A Kafka error code's name, or the number if it is not known.
pub fn error_name(code: i16) -> String {
    kafka_protocol::error::ResponseError::try_from_code(code)
        .map_or_else(|| code.to_string(), |error| error.to_string())
}

/// Kafka's resource types for config changes.
pub const TOPIC: i8 = 2;
pub const BROKER: i8 = 4;

/// IncrementalAlterConfigs on one resource: `Some(value)` sets a config,
/// `None` resets it to its default. Other configs stay as they are.
pub fn alter_configs(
    client: &ClientArgs,
    resource_type: i8,
    name: &str,
    changes: &[(String, Option<String>)],
) -> CliResult {
    let configs = changes
        .iter()
        .map(|(key, value)| {
            AlterableConfig::default()
                .with_name(StrBytes::from_string(key.clone()))
                .with_config_operation(if value.is_some() { 0 } else { 1 })
                .with_value(value.clone().map(StrBytes::from_string))
        })
        .collect();
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configs(configs),
    ]);
    let mut raw = RawClient::connect(client)?;
    let response: IncrementalAlterConfigsResponse =
        raw.call(ApiKey::IncrementalAlterConfigs, 0, &request)?;
    for result in &response.responses {
        if result.error_code != 0 {
            let error = error_name(result.error_code);
            let message = result.error_message.as_ref().map_or("", |m| m.as_str());
            return Err(CliError::Failed(format!(
                "changing the configs of '{name}' failed ({error}): {message}"
            )));
        }
    }
    Ok(())
}

/// A broker's configs (DescribeConfigs): (name, value, source).
pub fn broker_configs(
    client: &ClientArgs,
    broker: i32,
) -> CliResult<Vec<(String, String, String)>> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(BROKER)
            .with_resource_name(StrBytes::from_string(broker.to_string()))
            .with_configuration_keys(None)]);
    let mut raw = RawClient::connect(client)?;
    let response: DescribeConfigsResponse = raw.call(ApiKey::DescribeConfigs, 1, &request)?;
    let mut entries = Vec::new();
    for result in response.results {
        if result.error_code != 0 {
            let message = result.error_message.as_ref().map_or("", |m| m.as_str());
            return Err(CliError::Failed(format!(
                "describing broker {broker} failed: {message}"
            )));
        }
        for config in result.configs {
            let source = match config.config_source {
                1 => "DYNAMIC_TOPIC_CONFIG",
                2 => "DYNAMIC_BROKER_CONFIG",
                3 => "DYNAMIC_DEFAULT_BROKER_CONFIG",
                4 => "STATIC_BROKER_CONFIG",
                5 => "DEFAULT_CONFIG",
                _ => "UNKNOWN",
            };
            entries.push((
                config.name.to_string(),
                config.value.map(|v| v.to_string()).unwrap_or_default(),
                source.to_string(),
            ));
        }
    }
    Ok(entries)
}

/// CreateTopics with the broker's error message on failure.
pub fn create_topic(
    client: &ClientArgs,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(String, String)],
) -> CliResult {
    use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
    use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, TopicName};
    let topic = CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.to_string())))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(key, value)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string(key.clone()))
                        .with_value(Some(StrBytes::from_string(value.clone())))
                })
                .collect(),
        );
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(client.timeout.as_millis() as i32);
    let mut raw = RawClient::connect(client)?;
    let response: CreateTopicsResponse = raw.call(ApiKey::CreateTopics, 5, &request)?;
    for result in response.topics {
        if result.error_code != 0 {
            let error = error_name(result.error_code);
            let message = result.error_message.as_ref().map_or("", |m| m.as_str());
            let hint = if result.error_code == 36 {
                " (`strom topic describe` shows it)"
            } else {
                ""
            };
            return Err(CliError::Failed(format!(
                "creating topic '{name}' failed ({error}): {message}{hint}"
            )));
        }
    }
    Ok(())
}

/// Every group: (id, state, type) where type is `classic` or `consumer`
/// (KIP-848), from ListGroups v5.
pub fn list_groups(client: &ClientArgs) -> CliResult<Vec<(String, String, String)>> {
    use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};
    // Each broker lists the groups it coordinates.
    let responses: Vec<ListGroupsResponse> =
        each_broker(client, ApiKey::ListGroups, 5, &ListGroupsRequest::default())?;
    if let Some(failed) = responses.iter().find(|response| response.error_code != 0) {
        return Err(CliError::Failed(format!(
            "listing groups failed (error {})",
            failed.error_code
        )));
    }
    let mut rows: Vec<(String, String, String)> = responses
        .into_iter()
        .flat_map(|response| response.groups)
        .map(|group| {
            let kind = if group.group_type.is_empty() {
                "classic".to_string()
            } else {
                group.group_type.to_string()
            };
            (
                group.group_id.to_string(),
                group.group_state.to_string(),
                kind,
            )
        })
        .collect();
    rows.sort();
    rows.dedup_by(|a, b| a.0 == b.0);
    Ok(rows)
}
