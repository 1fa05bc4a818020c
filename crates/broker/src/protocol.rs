//! Request routing: from a frame's bytes to a handler, and from a handler's
//! response back to bytes.
//!
//! Kafka's rules for bad input, which this module follows:
//! * an unknown API key, an API this broker does not offer, a version
//!   outside the advertised range, or a body that does not decode closes the
//!   connection (the client cannot be answered in a form it expects);
//! * ApiVersions at a version that is too new is answered at version 0 with
//!   UNSUPPORTED_VERSION and the supported ranges, so the client can retry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message};

use crate::broker::Broker;
use crate::handlers;
use crate::response::{Frame, Splices, SplicingBuf};

pub use crate::handlers::RequestContext;

/// A response on its way: the size-prefixed frame, or nothing (acks=0).
pub type PendingResponse = Pin<Box<dyn Future<Output = Option<Frame>> + Send>>;

/// Why a connection must be closed.
#[derive(Debug)]
pub struct CloseConnection(pub String);

/// The APIs this broker serves and the versions it accepts: the versions
/// `kafka-protocol` can decode, which cover librdkafka 2.x and the Java
/// client 3.x/4.x. An API missing here is missing from ApiVersions too.
/// Built once from the API table; every request looks its version up here.
pub fn supported_apis() -> &'static [(ApiKey, i16, i16)] {
    static APIS: std::sync::OnceLock<Vec<(ApiKey, i16, i16)>> = std::sync::OnceLock::new();
    APIS.get_or_init(build_supported_apis)
}

fn version_range(api_key: ApiKey) -> Option<(i16, i16)> {
    supported_apis()
        .iter()
        .find(|(key, _, _)| *key == api_key)
        .map(|(_, min, max)| (*min, *max))
}

/// Old versions that are byte for byte the same as a newer one, which the
/// codec crate no longer lists: (API, old version, same as). kafka-python
/// only speaks DescribeLogDirs v0 ("version 1 is the same as version 0").
const VERSION_ALIASES: &[(ApiKey, i16, i16)] = &[(ApiKey::DescribeLogDirs, 0, 1)];

/// Newest versions served where the codec knows newer ones this broker does
/// not implement: (API, newest served). Transactions "version 2" (KIP-890
/// part 2: the epoch bumped at every EndTxn, partitions added implicitly)
/// starts at EndTxn v5, AddPartitionsToTxn v5 and TxnOffsetCommit v5;
/// ListTransactions v2 adds a regular-expression filter.
const VERSION_CAPS: &[(ApiKey, i16)] = &[
    (ApiKey::EndTxn, 4),
    (ApiKey::AddPartitionsToTxn, 4),
    (ApiKey::TxnOffsetCommit, 4),
    (ApiKey::ListTransactions, 1),
];

fn alias(api_key: ApiKey, version: i16) -> Option<i16> {
    VERSION_ALIASES
        .iter()
        .find(|(key, old, _)| *key == api_key && *old == version)
        .map(|(_, _, same_as)| *same_as)
}

/// Encodes a response header and body for the request in `context`.
pub fn encode_response<R: Encodable + HeaderVersion>(
    context: &RequestContext,
    response: &R,
) -> Option<Frame> {
    encode_at(context, response, context.api_version).map(Frame::bytes)
}

/// A Fetch response whose records are placeholders for file ranges: the
/// ranges are sent from the page cache (see [`crate::response`]); if that
/// cannot be done, the records are read into memory instead.
fn encode_fetch(
    context: &RequestContext,
    response: FetchResponse,
    mut splices: Splices,
) -> Option<Frame> {
    if splices.is_empty() {
        return encode_response(context, &response);
    }
    let version = context.api_version;
    let mut buffer = SplicingBuf::new(&splices, 1024);
    buffer.put_slice(&[0u8; 4]);
    let header = ResponseHeader::default().with_correlation_id(context.correlation_id);
    let encoded = header
        .encode(&mut buffer, FetchResponse::header_version(version))
        .and_then(|()| response.encode(&mut buffer, version));
    if let Err(error) = encoded {
        tracing::error!(version, %error, "could not encode a fetch response");
        return None;
    }
    if let Some(frame) = buffer.finish() {
        return Some(frame.holding(splices.take_permits()));
    }
    tracing::warn!("fetch response could not be spliced; reading its records into memory");
    let response = handlers::fetch::with_records_read(response, splices);
    encode_response(context, &response)
}

fn encode_at<R: Encodable + HeaderVersion>(
    context: &RequestContext,
    response: &R,
    version: i16,
) -> Option<BytesMut> {
    // The first four bytes are the frame's size prefix, filled in below, so
    // the connection writes the response without copying it again. The
    // buffer is sized once, so large responses are not copied as it grows.
    let size = response.compute_size(version).unwrap_or(0);
    let mut bytes = BytesMut::with_capacity(size + 16);
    bytes.extend_from_slice(&[0u8; 4]);
    let header = ResponseHeader::default().with_correlation_id(context.correlation_id);
    let encoded = header
        .encode(&mut bytes, R::header_version(version))
        .and_then(|()| response.encode(&mut bytes, version));
    match encoded {
        Ok(()) => {
            let size = (bytes.len() - 4) as i32;
            bytes[..4].copy_from_slice(&size.to_be_bytes());
            Some(bytes)
        }
        Err(error) => {
            // A bug in a handler: the response does not fit the version.
            tracing::error!(api = ?context.api_key, version, %error, "could not encode response");
            None
        }
    }
}

/// The ApiVersions response body listing everything in [`supported_apis`].
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = supported_apis()
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

/// ApiVersions: which APIs and versions this broker speaks. Versions that
/// are too new never reach here: [`parse_header`] answers them with
/// UNSUPPORTED_VERSION at version 0.
async fn api_versions(
    _broker: Arc<Broker>,
    _context: &RequestContext,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    api_versions_response(0)
}

/// A request frame after its header was read and checked.
enum Parsed {
    /// Ready for its handler.
    Request {
        context: RequestContext,
        body: Bytes,
    },
    /// Answered without a handler (ApiVersions at a version too new).
    Answered(Option<Frame>),
}

/// Reads and checks the request header: known API, supported version.
fn parse_header(frame: Bytes) -> Result<Parsed, CloseConnection> {
    if frame.len() < 8 {
        return Err(CloseConnection(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(raw_key)
        .map_err(|_| CloseConnection(format!("unknown API key {raw_key}")))?;
    let Some((min, max)) = version_range(api_key) else {
        return Err(CloseConnection(format!("API {api_key:?} is not supported")));
    };
    let version = alias(api_key, version).unwrap_or(version);
    if version < min || version > max {
        if api_key == ApiKey::ApiVersions {
            let context = RequestContext {
                api_key,
                api_version: 0,
                correlation_id,
                client_id: None,
            };
            let response = api_versions_response(ResponseError::UnsupportedVersion.code());
            return Ok(Parsed::Answered(
                encode_at(&context, &response, 0).map(Frame::bytes),
            ));
        }
        return Err(CloseConnection(format!(
            "{api_key:?} version {version} is outside the supported range {min}..={max}"
        )));
    }
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api_key.request_header_version(version))
        .map_err(|error| {
            CloseConnection(format!("malformed {api_key:?} request header: {error}"))
        })?;
    let context = RequestContext {
        api_key,
        api_version: version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|id| id.to_string()),
    };
    Ok(Parsed::Request { context, body })
}

/// Routes one request frame (without its length prefix) to its handler.
pub fn dispatch(broker: &Arc<Broker>, frame: Bytes) -> Result<PendingResponse, CloseConnection> {
    match parse_header(frame)? {
        Parsed::Answered(bytes) => Ok(Box::pin(async move { bytes })),
        Parsed::Request { context, body } => route(broker, context, body),
    }
}

fn decode<T: Decodable>(context: &RequestContext, body: &mut Bytes) -> Result<T, CloseConnection> {
    let request = T::decode(body, context.api_version).map_err(|error| {
        CloseConnection(format!(
            "malformed {:?} v{} request: {error}",
            context.api_key, context.api_version
        ))
    })?;
    if body.has_remaining() {
        tracing::debug!(api = ?context.api_key, trailing = body.remaining(), "ignoring trailing request bytes");
    }
    Ok(request)
}

/// The API table: each API this broker serves, its request type and its
/// handler. From it come [`supported_apis`] (which is also the ApiVersions
/// answer), the routing in [`dispatch`] and the decoding in
/// [`decode_request`]. Produce is listed apart because its appends happen
/// while routing, in request order, before the wait for durability; Fetch
/// because its records are spliced in from segment files.
macro_rules! api_table {
    ($($key:ident => $request:ty, $handler:path;)*) => {
        fn build_supported_apis() -> Vec<(ApiKey, i16, i16)> {
            fn range<M: Message>(key: ApiKey) -> (ApiKey, i16, i16) {
                let aliased = VERSION_ALIASES
                    .iter()
                    .filter(|(aliased, _, _)| *aliased == key)
                    .map(|(_, old, _)| *old)
                    .min();
                let min = aliased.map_or(M::VERSIONS.min, |old| old.min(M::VERSIONS.min));
                let max = VERSION_CAPS
                    .iter()
                    .find(|(capped, _)| *capped == key)
                    .map_or(M::VERSIONS.max, |(_, newest)| (*newest).min(M::VERSIONS.max));
                (key, min, max)
            }
            vec![
                range::<ProduceRequest>(ApiKey::Produce),
                range::<FetchRequest>(ApiKey::Fetch),
                $(range::<$request>(ApiKey::$key)),*
            ]
        }

        /// Decodes the body and starts the handler (`async fn (broker,
        /// context, request) -> response`).
        fn route(
            broker: &Arc<Broker>,
            context: RequestContext,
            mut body: Bytes,
        ) -> Result<PendingResponse, CloseConnection> {
            Ok(match context.api_key {
                ApiKey::Produce => {
                    let request: ProduceRequest = decode(&context, &mut body)?;
                    let pending = handlers::produce::handle(broker, &context, request);
                    Box::pin(async move {
                        let response = pending?.await;
                        encode_response(&context, &response)
                    })
                }
                ApiKey::Fetch => {
                    let request: FetchRequest = decode(&context, &mut body)?;
                    let broker = broker.clone();
                    Box::pin(async move {
                        let (response, splices) =
                            handlers::fetch::handle(broker, &context, request).await;
                        encode_fetch(&context, response, splices)
                    })
                }
                $(ApiKey::$key => {
                    let request: $request = decode(&context, &mut body)?;
                    let broker = broker.clone();
                    Box::pin(async move {
                        let response = $handler(broker, &context, request).await;
                        encode_response(&context, &response)
                    })
                })*
                other => return Err(CloseConnection(format!("API {other:?} is not supported"))),
            })
        }

        /// Decodes a frame as [`dispatch`] would, without a broker: header
        /// checks, body decoding, and for Produce the record batch checks.
        /// The fuzz target drives this with arbitrary bytes; it must never
        /// panic.
        pub fn decode_request(frame: Bytes) -> Result<(), CloseConnection> {
            let Parsed::Request { context, mut body } = parse_header(frame)? else {
                return Ok(());
            };
            match context.api_key {
                ApiKey::Produce => {
                    let request: ProduceRequest = decode(&context, &mut body)?;
                    for topic in &request.topic_data {
                        for partition in &topic.partition_data {
                            if let Some(records) = &partition.records {
                                let _ = strom_log::batch::split(records);
                                let _ = strom_log::batch::validate(records, true);
                            }
                        }
                    }
                }
                ApiKey::Fetch => drop(decode::<FetchRequest>(&context, &mut body)?),
                $(ApiKey::$key => drop(decode::<$request>(&context, &mut body)?),)*
                other => return Err(CloseConnection(format!("API {other:?} is not supported"))),
            }
            Ok(())
        }
    };
}

api_table! {
    ListOffsets => ListOffsetsRequest, handlers::list_offsets::handle;
    Metadata => MetadataRequest, handlers::metadata::handle;
    ApiVersions => ApiVersionsRequest, api_versions;
    CreateTopics => CreateTopicsRequest, handlers::create_topics::handle;
    DeleteTopics => DeleteTopicsRequest, handlers::delete_topics::handle;
    DescribeConfigs => DescribeConfigsRequest, handlers::describe_configs::handle;
    DescribeCluster => DescribeClusterRequest, handlers::describe_cluster::handle;
    AlterConfigs => AlterConfigsRequest, handlers::alter_configs::handle;
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest, handlers::incremental_alter_configs::handle;
    CreatePartitions => CreatePartitionsRequest, handlers::create_partitions::handle;
    DeleteRecords => DeleteRecordsRequest, handlers::delete_records::handle;
    DescribeLogDirs => DescribeLogDirsRequest, handlers::describe_log_dirs::handle;
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, handlers::offset_for_leader_epoch::handle;
    FindCoordinator => FindCoordinatorRequest, handlers::find_coordinator::handle;
    JoinGroup => JoinGroupRequest, handlers::join_group::handle;
    SyncGroup => SyncGroupRequest, handlers::sync_group::handle;
    Heartbeat => HeartbeatRequest, handlers::heartbeat::handle;
    LeaveGroup => LeaveGroupRequest, handlers::leave_group::handle;
    OffsetCommit => OffsetCommitRequest, handlers::offset_commit::handle;
    OffsetFetch => OffsetFetchRequest, handlers::offset_fetch::handle;
    ListGroups => ListGroupsRequest, handlers::list_groups::handle;
    DescribeGroups => DescribeGroupsRequest, handlers::describe_groups::handle;
    DeleteGroups => DeleteGroupsRequest, handlers::delete_groups::handle;
    OffsetDelete => OffsetDeleteRequest, handlers::offset_delete::handle;
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest, handlers::consumer_group_heartbeat::handle;
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest, handlers::consumer_group_describe::handle;
    InitProducerId => InitProducerIdRequest, handlers::init_producer_id::handle;
    AddPartitionsToTxn => AddPartitionsToTxnRequest, handlers::add_partitions_to_txn::handle;
    AddOffsetsToTxn => AddOffsetsToTxnRequest, handlers::add_offsets_to_txn::handle;
    TxnOffsetCommit => TxnOffsetCommitRequest, handlers::txn_offset_commit::handle;
    EndTxn => EndTxnRequest, handlers::end_txn::handle;
    ListTransactions => ListTransactionsRequest, handlers::list_transactions::handle;
    DescribeTransactions => DescribeTransactionsRequest, handlers::describe_transactions::handle;
    DescribeProducers => DescribeProducersRequest, handlers::describe_producers::handle;
    DescribeTopicPartitions => DescribeTopicPartitionsRequest, handlers::describe_topic_partitions::handle;
    ListConfigResources => ListConfigResourcesRequest, handlers::list_config_resources::handle;
    DescribeQuorum => DescribeQuorumRequest, handlers::describe_quorum::handle;
    ElectLeaders => ElectLeadersRequest, handlers::elect_leaders::handle;
    AlterPartitionReassignments => AlterPartitionReassignmentsRequest, handlers::alter_partition_reassignments::handle;
    ListPartitionReassignments => ListPartitionReassignmentsRequest, handlers::list_partition_reassignments::handle;
    WriteTxnMarkers => WriteTxnMarkersRequest, handlers::write_txn_markers::handle;
}
