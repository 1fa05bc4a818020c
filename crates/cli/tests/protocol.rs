//! Protocol-level tests against the real `strom` binary: requests that the
//! Kafka clients in the end-to-end suite do not send in every shape, built
//! with `kafka-protocol` and sent over a plain TCP socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

struct Broker {
    child: Child,
    address: String,
    dir: Option<tempfile::TempDir>,
}

impl Broker {
    fn start() -> Broker {
        Broker::start_in(tempfile::tempdir().unwrap())
    }

    /// Stops the broker, cleanly (SIGTERM) or with SIGKILL, and starts it
    /// again on the same data directory (on a new port).
    fn restart(mut self, clean: bool) -> Broker {
        if clean {
            let pid = self.child.id().to_string();
            let status = Command::new("kill").args(["-TERM", &pid]).status();
            assert!(status.is_ok_and(|status| status.success()));
        } else {
            self.child.kill().unwrap();
        }
        self.child.wait().unwrap();
        Broker::start_in(self.dir.take().unwrap())
    }

    fn data_dir(&self) -> std::path::PathBuf {
        self.dir.as_ref().unwrap().path().join("data")
    }

    fn start_in(dir: tempfile::TempDir) -> Broker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["serve", "--schema-registry-listener", "none"])
            .args(["--listeners", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("strom starts");
        let address = listening_address(&mut child);
        Broker {
            child,
            address,
            dir: Some(dir),
        }
    }

    fn connect(&self) -> Client {
        let stream = TcpStream::connect(&self.address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Client {
            stream,
            correlation_id: 0,
        }
    }
}

/// The address a started `strom serve` prints in its banner; its output
/// is drained from then on, so the broker never blocks on a full pipe.
fn listening_address(child: &mut Child) -> String {
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("strom serve exited before printing its banner")
            .unwrap();
        if let Some(rest) = line.trim().strip_prefix("listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    address
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    fn send_raw(&mut self, frame: &[u8]) {
        self.stream
            .write_all(&(frame.len() as i32).to_be_bytes())
            .unwrap();
        self.stream.write_all(frame).unwrap();
    }

    fn receive_raw(&mut self) -> Bytes {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).unwrap();
        let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
        self.stream.read_exact(&mut frame).unwrap();
        Bytes::from(frame)
    }

    fn call<Q, R>(&mut self, key: ApiKey, version: i16, request: &Q) -> R
    where
        Q: Encodable + HeaderVersion,
        R: Decodable + HeaderVersion,
    {
        self.send(key, version, request);
        self.receive(version)
    }

    /// Sends a request without waiting for its answer ([`Client::receive`]).
    fn send<Q: Encodable + HeaderVersion>(&mut self, key: ApiKey, version: i16, request: &Q) {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("protocol-test")));
        let mut frame = BytesMut::new();
        header
            .encode(&mut frame, Q::header_version(version))
            .unwrap();
        request.encode(&mut frame, version).unwrap();
        self.send_raw(&frame);
    }

    /// The answer to the last request sent.
    fn receive<R: Decodable + HeaderVersion>(&mut self, version: i16) -> R {
        let mut response = self.receive_raw();
        let header = ResponseHeader::decode(&mut response, R::header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        R::decode(&mut response, version).unwrap()
    }
}

fn records(values: &[&str]) -> Bytes {
    producer_records(values, -1, -1, 0)
}

/// A batch from producer `producer_id` at `epoch`, sequences from `sequence`.
fn producer_records(values: &[&str], producer_id: i64, epoch: i16, sequence: i32) -> Bytes {
    encode_records(values, producer_id, epoch, sequence, false)
}

fn encode_records(
    values: &[&str],
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    transactional: bool,
) -> Bytes {
    let keyless: Vec<(Option<&str>, &str)> = values.iter().map(|value| (None, *value)).collect();
    encode_keyed(
        &keyless,
        producer_id,
        epoch,
        sequence,
        transactional,
        Compression::None,
    )
}

/// A batch of (key, value) records.
fn encode_keyed(
    records: &[(Option<&str>, &str)],
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    transactional: bool,
    compression: Compression,
) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder keeps records in one batch while offset - sequence is constant.
            sequence: sequence + index as i32,
            timestamp: 1_000 + index as i64,
            key: key.map(|key| Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options).unwrap();
    buffer.freeze()
}

/// InitProducerId for an idempotent (not transactional) producer.
fn init_idempotent_producer(client: &mut Client) -> InitProducerIdResponse {
    client.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
}

fn create_topic(client: &mut Client, name: &str, partitions: i32) {
    create_topic_with(client, name, partitions, &[]);
}

fn create_topic_with(client: &mut Client, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    let configs = configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_value(Some(StrBytes::from_string(value.to_string())))
        })
        .collect();
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_string(name.into())))
        .with_num_partitions(partitions)
        .with_replication_factor(1)
        .with_configs(configs)]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
    assert_eq!(
        response.topics[0].error_code, 0,
        "{:?}",
        response.topics[0].error_message
    );
}

fn produce(client: &mut Client, topic: &str, partition: i32, values: &[&str]) -> i64 {
    let response = produce_batch(client, topic, partition, records(values));
    assert_eq!(response.0, 0, "{:?}", response.2);
    response.1
}

/// (error code, base offset, error message) of producing one batch.
fn produce_batch(
    client: &mut Client,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> (i16, i64, Option<String>) {
    produce_in(client, None, topic, partition, batch)
}

/// Like [`produce_batch`], for a transactional producer.
fn produce_in(
    client: &mut Client,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> (i16, i64, Option<String>) {
    let partition = produce_partition(client, transactional_id, topic, partition, batch);
    (
        partition.error_code,
        partition.base_offset,
        partition.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// The whole partition answer to producing one batch (acks=all, v9).
fn produce_partition(
    client: &mut Client,
    transactional_id: Option<&str>,
    topic: &str,
    partition: i32,
    batch: Bytes,
) -> produce_response::PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.into()))),
        )
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let mut response: ProduceResponse = client.call(ApiKey::Produce, 9, &request);
    response.responses.remove(0).partition_responses.remove(0)
}

fn fetch_request(
    session_id: i32,
    epoch: i32,
    partitions: &[(i32, i64)],
    max_wait_ms: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(if partitions.is_empty() {
            vec![]
        } else {
            vec![FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("sessions")))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|(partition, offset)| {
                            FetchPartition::default()
                                .with_partition(*partition)
                                .with_fetch_offset(*offset)
                                .with_partition_max_bytes(1 << 20)
                        })
                        .collect(),
                )]
        })
}

fn returned_partitions(response: &FetchResponse) -> Vec<(i32, usize)> {
    response
        .responses
        .iter()
        .flat_map(|topic| topic.partitions.iter())
        .map(|partition| {
            (
                partition.partition_index,
                partition
                    .records
                    .as_ref()
                    .map_or(0, |records| records.len()),
            )
        })
        .collect()
}

#[test]
fn api_versions_lists_what_is_served_and_answers_too_new_versions_at_v0() {
    let broker = Broker::start();
    let mut client = broker.connect();
    let response: ApiVersionsResponse =
        client.call(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
    assert_eq!(response.error_code, 0);
    let keys: Vec<i16> = response.api_keys.iter().map(|api| api.api_key).collect();
    for key in [
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::Metadata,
        ApiKey::ListOffsets,
        ApiKey::WriteTxnMarkers,
    ] {
        assert!(keys.contains(&(key as i16)), "{key:?} is advertised");
    }
    assert!(
        !keys.contains(&(ApiKey::CreateAcls as i16)),
        "unimplemented APIs are absent"
    );
    let end_txn = response
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::EndTxn as i16)
        .expect("EndTxn is advertised");
    assert_eq!(
        end_txn.max_version, 4,
        "transactions version 2 (EndTxn v5) is not offered"
    );

    // Version 99 does not exist: the answer is v0 with UNSUPPORTED_VERSION and the ranges.
    let mut frame = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::ApiVersions as i16)
        .with_request_api_version(99)
        .with_correlation_id(7)
        .encode(&mut frame, 1)
        .unwrap();
    client.send_raw(&frame);
    let mut response = client.receive_raw();
    let header = ResponseHeader::decode(&mut response, 0).unwrap();
    assert_eq!(header.correlation_id, 7);
    let body = ApiVersionsResponse::decode(&mut response, 0).unwrap();
    assert_eq!(body.error_code, 35);
    assert!(!body.api_keys.is_empty());
}

#[test]
fn incremental_fetch_sessions_answer_only_partitions_with_news() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "sessions", 2);
    produce(&mut client, "sessions", 0, &["a", "b"]);

    // A full fetch opens a session and answers both partitions.
    let full: FetchResponse = client.call(
        ApiKey::Fetch,
        12,
        &fetch_request(0, 0, &[(0, 0), (1, 0)], 0),
    );
    assert_eq!(full.error_code, 0);
    assert_ne!(full.session_id, 0, "a session was created");
    let session = full.session_id;
    let mut partitions = returned_partitions(&full);
    partitions.sort();
    assert_eq!(partitions.len(), 2);
    assert!(partitions[0].1 > 0, "partition 0 has records");
    assert_eq!(partitions[1].1, 0, "partition 1 is empty");

    // Partition 0 moved on; nothing new anywhere: an empty incremental answer.
    let quiet: FetchResponse =
        client.call(ApiKey::Fetch, 12, &fetch_request(session, 1, &[(0, 2)], 0));
    assert_eq!(quiet.error_code, 0);
    assert!(
        returned_partitions(&quiet).is_empty(),
        "{:?}",
        returned_partitions(&quiet)
    );

    // New data on partition 1 only: only partition 1 comes back.
    produce(&mut client, "sessions", 1, &["c"]);
    let news: FetchResponse = client.call(ApiKey::Fetch, 12, &fetch_request(session, 2, &[], 0));
    let returned = returned_partitions(&news);
    assert_eq!(returned.len(), 1, "{returned:?}");
    assert_eq!(returned[0].0, 1);
    assert!(returned[0].1 > 0);

    // A stale epoch is refused; an unknown session too.
    let stale: FetchResponse = client.call(ApiKey::Fetch, 12, &fetch_request(session, 2, &[], 0));
    assert_eq!(stale.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    let unknown: FetchResponse =
        client.call(ApiKey::Fetch, 12, &fetch_request(session + 1000, 1, &[], 0));
    assert_eq!(unknown.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");
}

#[test]
fn a_waiting_fetch_is_woken_by_new_data() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "sessions", 1);
    let address = broker.address.clone();
    let started = Instant::now();
    let waiter = std::thread::spawn(move || {
        let mut client = Client {
            stream: TcpStream::connect(address).unwrap(),
            correlation_id: 0,
        };
        let response: FetchResponse =
            client.call(ApiKey::Fetch, 12, &fetch_request(0, -1, &[(0, 0)], 20_000));
        (response, started.elapsed())
    });
    // Give the fetch time to start waiting; it must then be woken by the write.
    std::thread::sleep(Duration::from_millis(300));
    produce(&mut client, "sessions", 0, &["wake up"]);
    let (response, elapsed) = waiter.join().unwrap();
    assert!(
        returned_partitions(&response)[0].1 > 0,
        "the record arrived"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "woken by the write, not by the 20 s max wait ({elapsed:?})"
    );
}

#[test]
fn an_idempotent_retry_is_answered_with_the_original_offset_and_not_written_again() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "sessions", 1);
    let init = init_idempotent_producer(&mut client);
    assert_eq!(init.error_code, 0);
    let (id, epoch) = (init.producer_id.0, init.producer_epoch);
    assert!(id >= 0);

    let batch = producer_records(&["a", "b"], id, epoch, 0);
    let first = produce_batch(&mut client, "sessions", 0, batch.clone());
    assert_eq!(first.0, 0, "{:?}", first.2);
    // The acknowledgement was lost; the producer sends the same batch again.
    let retry = produce_batch(&mut client, "sessions", 0, batch);
    assert_eq!(
        (retry.0, retry.1),
        (0, first.1),
        "answered with the original offset"
    );
    let next = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["c"], id, epoch, 2),
    );
    assert_eq!(
        (next.0, next.1),
        (0, first.1 + 2),
        "nothing was written twice"
    );

    // A gap in the sequence and a zombie epoch are refused.
    let gap = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["x"], id, epoch, 7),
    );
    assert_eq!(gap.0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
    let unsequenced = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["w"], id, epoch, -1),
    );
    assert_eq!(
        unsequenced.0, 87,
        "INVALID_RECORD: a producer id without a sequence is refused, not waved through"
    );
    let bumped: InitProducerIdResponse = client.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch),
    );
    assert_eq!(bumped.producer_epoch, epoch + 1, "KIP-360 epoch bump");
    let newer = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["y"], id, epoch + 1, 0),
    );
    assert_eq!(newer.0, 0);
    let zombie = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["z"], id, epoch, 3),
    );
    assert_eq!(zombie.0, 47, "INVALID_PRODUCER_EPOCH");
}

#[test]
fn producer_state_survives_a_clean_restart_by_snapshot_and_a_crash_by_replay() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "sessions", 1);
    let init = init_idempotent_producer(&mut client);
    let (id, epoch) = (init.producer_id.0, init.producer_epoch);
    let first = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["a", "b"], id, epoch, 0),
    );
    let last = producer_records(&["c"], id, epoch, 2);
    let written = produce_batch(&mut client, "sessions", 0, last.clone());
    assert_eq!((first.0, written.0), (0, 0));

    let broker = broker.restart(true);
    let snapshots: Vec<_> = std::fs::read_dir(broker.data_dir().join("sessions-0"))
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".snapshot"))
        .collect();
    assert_eq!(
        snapshots,
        vec!["00000000000000000003.snapshot".to_string()],
        "written at shutdown, at the log end"
    );
    let mut client = broker.connect();
    let retry = produce_batch(&mut client, "sessions", 0, last.clone());
    assert_eq!(
        (retry.0, retry.1),
        (0, written.1),
        "a retry after a clean restart is a duplicate"
    );

    let next = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["d"], id, epoch, 3),
    );
    assert_eq!((next.0, next.1), (0, 3));
    let broker = broker.restart(false);
    let mut client = broker.connect();
    let retry = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["d"], id, epoch, 3),
    );
    assert_eq!(
        (retry.0, retry.1),
        (0, 3),
        "the snapshot plus a replay of what came after it"
    );
    let gap = produce_batch(
        &mut client,
        "sessions",
        0,
        producer_records(&["x"], id, epoch, 9),
    );
    assert_eq!(gap.0, 45, "OUT_OF_ORDER_SEQUENCE_NUMBER");
}

/// FindCoordinator and InitProducerId for `transactional_id`: its producer
/// id and epoch.
fn init_transactional_producer(client: &mut Client, transactional_id: &str) -> (i64, i16) {
    let coordinator: FindCoordinatorResponse = client.call(
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(transactional_id.into()))
            .with_key_type(1),
    );
    assert_eq!(coordinator.error_code, 0);
    let init = init_producer_id(client, transactional_id);
    assert_eq!(init.error_code, 0);
    (init.producer_id.0, init.producer_epoch)
}

fn txn_id(id: &str) -> TransactionalId {
    TransactionalId(StrBytes::from_string(id.into()))
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}

/// AddPartitionsToTxn v3 of one partition: its error code.
fn add_partition_to_txn(
    client: &mut Client,
    transactional_id: &str,
    (id, epoch): (i64, i16),
    topic: &str,
    partition: i32,
) -> i16 {
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    let add: AddPartitionsToTxnResponse = client.call(
        ApiKey::AddPartitionsToTxn,
        3,
        &AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(transactional_id))
            .with_v3_and_below_producer_id(ProducerId(id))
            .with_v3_and_below_producer_epoch(epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![partition])]),
    );
    add.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

/// InitProducerId at a transactional id's coordinator, asked again while it
/// loads the id's partition: the producer id and epoch.
fn init_producer_id_when_loaded(client: &mut Client, transactional_id: &str) -> (i64, i16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let init = init_producer_id(client, transactional_id);
        if init.error_code == 0 {
            return (init.producer_id.0, init.producer_epoch);
        }
        assert!(
            Instant::now() < deadline,
            "InitProducerId: {}",
            init.error_code
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// AddOffsetsToTxn: `group`'s partition of `__consumer_offsets` joins the
/// transaction.
fn add_offsets_to_txn(
    client: &mut Client,
    transactional_id: &str,
    (id, epoch): (i64, i16),
    group: &str,
) -> i16 {
    let added: AddOffsetsToTxnResponse = client.call(
        ApiKey::AddOffsetsToTxn,
        3,
        &AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id(transactional_id))
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
            .with_group_id(GroupId(StrBytes::from_string(group.into()))),
    );
    added.error_code
}

/// EndTxn: commit or abort.
fn end_txn(
    client: &mut Client,
    transactional_id: &str,
    (id, epoch): (i64, i16),
    commit: bool,
) -> i16 {
    let end: EndTxnResponse = client.call(
        ApiKey::EndTxn,
        3,
        &EndTxnRequest::default()
            .with_transactional_id(txn_id(transactional_id))
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
            .with_committed(commit),
    );
    end.error_code
}

/// InitProducerId for a transactional id, as its coordinator answers.
fn init_producer_id(client: &mut Client, transactional_id: &str) -> InitProducerIdResponse {
    client.call(
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(transactional_id)))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    )
}

#[test]
fn a_partition_outside_the_transaction_is_refused_and_aborted_records_are_listed() {
    use kafka_protocol::messages::add_partitions_to_txn_request::{
        AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
    };
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "sessions", 2);
    let (id, epoch) = init_transactional_producer(&mut client, "tx");

    // Only partition 0 joins the transaction.
    assert_eq!(
        add_partition_to_txn(&mut client, "tx", (id, epoch), "sessions", 0),
        0
    );

    // KIP-890's verify-only form, as a partition leader asks it.
    let verify: AddPartitionsToTxnResponse = client.call(
        ApiKey::AddPartitionsToTxn,
        4,
        &AddPartitionsToTxnRequest::default().with_transactions(vec![
            AddPartitionsToTxnTransaction::default()
                .with_transactional_id(txn_id("tx"))
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch)
                .with_verify_only(true)
                .with_topics(vec![AddPartitionsToTxnTopic::default()
                    .with_name(topic_name("sessions"))
                    .with_partitions(vec![0, 1])]),
        ]),
    );
    let verified: Vec<(i32, i16)> = verify.results_by_transaction[0].topic_results[0]
        .results_by_partition
        .iter()
        .map(|result| (result.partition_index, result.partition_error_code))
        .collect();
    assert_eq!(
        verified,
        vec![(0, 0), (1, 48)],
        "partition 1 is not in the transaction: INVALID_TXN_STATE"
    );

    // The produce path asks the same question.
    let outside = produce_in(
        &mut client,
        Some("tx"),
        "sessions",
        1,
        encode_records(&["x"], id, epoch, 0, true),
    );
    assert_eq!(outside.0, 48, "{:?}", outside.2);
    let before = produce(&mut client, "sessions", 0, &["plain"]);
    let inside = produce_in(
        &mut client,
        Some("tx"),
        "sessions",
        0,
        encode_records(&["t1", "t2"], id, epoch, 0, true),
    );
    assert_eq!((inside.0, inside.1), (0, before + 1), "{:?}", inside.2);
    assert_eq!(end_txn(&mut client, "tx", (id, epoch), false), 0);

    // read_committed: the aborted transaction is listed with its first offset;
    // the last stable offset is past the marker.
    let fetch: FetchResponse = client.call(
        ApiKey::Fetch,
        11,
        &fetch_request(0, -1, &[(0, 0)], 0).with_isolation_level(1),
    );
    let partition = &fetch.responses[0].partitions[0];
    assert_eq!(
        partition.high_watermark,
        before + 4,
        "plain, t1, t2 and the abort marker"
    );
    assert_eq!(partition.last_stable_offset, partition.high_watermark);
    let aborted: Vec<(i64, i64)> = partition
        .aborted_transactions
        .iter()
        .flatten()
        .map(|aborted| (aborted.producer_id.0, aborted.first_offset))
        .collect();
    assert_eq!(aborted, vec![(id, before + 1)]);
}

fn end_offset_for_epoch(
    client: &mut Client,
    topic: &str,
    leader_epoch: i32,
    current_leader_epoch: i32,
) -> (i16, i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    let request = OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![OffsetForLeaderTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![OffsetForLeaderPartition::default()
                .with_partition(0)
                .with_leader_epoch(leader_epoch)
                .with_current_leader_epoch(current_leader_epoch)])]);
    let response: OffsetForLeaderEpochResponse =
        client.call(ApiKey::OffsetForLeaderEpoch, 4, &request);
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.leader_epoch, answer.end_offset)
}

#[test]
fn offset_for_leader_epoch_answers_from_the_epoch_cache_across_restarts() {
    let broker = Broker::start();
    let mut client = broker.connect();
    // The test's records are stamped in 1970: keep them from retention.
    let request = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(topic_name("epochs"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("-1"))),
        ])]);
    let response: CreateTopicsResponse = client.call(ApiKey::CreateTopics, 7, &request);
    assert_eq!(response.topics[0].error_code, 0);
    produce(&mut client, "epochs", 0, &["a", "b", "c"]);
    // The current epoch ends at the log end; a newer one is unknown (-1, -1).
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", 0, -1),
        (0, 0, 3)
    );
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", 7, -1),
        (0, -1, -1)
    );
    // A client ahead of the broker's epoch is told the broker does not know it.
    let unknown = end_offset_for_epoch(&mut client, "epochs", 0, 9).0;
    assert_eq!(
        unknown,
        kafka_protocol::error::ResponseError::UnknownLeaderEpoch.code()
    );

    // Every start is a new leader epoch (the broker registers again and is
    // elected again), and the old epoch still ends where it ended: a
    // consumer that read it sees no truncation.
    let broker = broker.restart(true);
    assert!(broker.data_dir().join("epochs-0/leader-epochs").exists());
    let mut client = broker.connect();
    let after_clean = leader_epoch(&mut client, "epochs");
    assert!(after_clean > 0, "a restart is a new leader epoch");
    produce(&mut client, "epochs", 0, &["d"]);
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", 0, -1),
        (0, 0, 3)
    );
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", after_clean, after_clean),
        (0, after_clean, 4)
    );
    // A client still on the old epoch is told it is behind.
    let fenced = end_offset_for_epoch(&mut client, "epochs", 0, 0).0;
    assert_eq!(
        fenced,
        kafka_protocol::error::ResponseError::FencedLeaderEpoch.code()
    );

    // After a crash the batches rebuild what the checkpoint did not cover.
    let broker = broker.restart(false);
    let mut client = broker.connect();
    let after_crash = leader_epoch(&mut client, "epochs");
    assert!(after_crash > after_clean);
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", 0, -1),
        (0, 0, 3)
    );
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", after_clean, -1),
        (0, after_clean, 4)
    );
    assert_eq!(
        end_offset_for_epoch(&mut client, "epochs", after_clean + 1, -1).2,
        4,
        "an epoch in which nothing was written ends where the next begins"
    );
}

/// The leader epoch of partition 0 of `topic`, from Metadata.
fn leader_epoch(client: &mut Client, topic: &str) -> i32 {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
    ]));
    let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.leader_id.0, 1);
    partition.leader_epoch
}

/// The group's committed offset of each (topic, partition), -1 for none.
/// Asks for stable offsets, and again while a transaction's marker is on its
/// way (UNSTABLE_OFFSET_COMMIT).
fn committed_offsets(client: &mut Client, group: &str, wanted: &[(&str, i32)]) -> Vec<i64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let fetched = fetch_committed(client, group, wanted);
        if fetched.iter().all(|(_, error)| *error != 88) {
            assert!(fetched.iter().all(|(_, error)| *error == 0), "{fetched:?}");
            return fetched.into_iter().map(|(offset, _)| offset).collect();
        }
        assert!(
            Instant::now() < deadline,
            "offsets still unstable: {fetched:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn fetch_committed(client: &mut Client, group: &str, wanted: &[(&str, i32)]) -> Vec<(i64, i16)> {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    let topics = wanted
        .iter()
        .map(|(topic, partition)| {
            OffsetFetchRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![*partition])
        })
        .collect();
    let fetched: OffsetFetchResponse = client.call(
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_topics(Some(topics))
            .with_require_stable(true),
    );
    assert_eq!(fetched.error_code, 0);
    fetched
        .topics
        .iter()
        .flat_map(|topic| &topic.partitions)
        .map(|partition| (partition.committed_offset, partition.error_code))
        .collect()
}

#[test]
fn offsets_for_topics_or_partitions_that_do_not_exist_are_refused_per_partition() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "present", 1);
    let wanted = [("present", 0), ("present", 1), ("absent", 0)];

    // Phase 1: a plain OffsetCommit outside any generation (what the admin
    // client's alter-offsets sends): the existing partition is committed, the
    // missing partition and the missing topic are UNKNOWN_TOPIC_OR_PARTITION.
    let commit_topic = |name: &str, partitions: &[i32]| {
        OffsetCommitRequestTopic::default()
            .with_name(topic_name(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|index| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*index)
                            .with_committed_offset(42)
                    })
                    .collect(),
            )
    };
    let committed: OffsetCommitResponse = client.call(
        ApiKey::OffsetCommit,
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("plain")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                commit_topic("present", &[0, 1]),
                commit_topic("absent", &[0]),
            ]),
    );
    let codes: Vec<(String, i32, i16)> = committed
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| {
                (
                    topic.name.to_string(),
                    partition.partition_index,
                    partition.error_code,
                )
            })
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            ("present".into(), 0, 0),
            ("present".into(), 1, 3),
            ("absent".into(), 0, 3)
        ]
    );
    assert_eq!(
        committed_offsets(&mut client, "plain", &wanted),
        [42, -1, -1]
    );

    // Phase 2: the same offsets inside a transaction (TxnOffsetCommit), then
    // committed: only the existing partition's offset becomes the group's.
    let (id, epoch) = init_transactional_producer(&mut client, "offsets-tx");
    assert_eq!(
        add_offsets_to_txn(&mut client, "offsets-tx", (id, epoch), "in-txn"),
        0
    );
    let txn_topic = |name: &str, partitions: &[i32]| {
        TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name(name))
            .with_partitions(
                partitions
                    .iter()
                    .map(|index| {
                        TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(*index)
                            .with_committed_offset(7)
                    })
                    .collect(),
            )
    };
    let staged: TxnOffsetCommitResponse = client.call(
        ApiKey::TxnOffsetCommit,
        3,
        &TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id("offsets-tx"))
            .with_group_id(GroupId(StrBytes::from_static_str("in-txn")))
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
            .with_generation_id(-1)
            .with_topics(vec![
                txn_topic("present", &[0, 1]),
                txn_topic("absent", &[0]),
            ]),
    );
    let codes: Vec<(i32, i16)> = staged
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (partition.partition_index, partition.error_code))
        })
        .collect();
    assert_eq!(codes, vec![(0, 0), (1, 3), (0, 3)]);
    assert_eq!(end_txn(&mut client, "offsets-tx", (id, epoch), true), 0);
    assert_eq!(
        committed_offsets(&mut client, "in-txn", &wanted),
        [7, -1, -1]
    );
}

#[test]
fn a_compacted_topic_refuses_records_without_a_key_naming_each_one() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic_with(&mut client, "keyed", 1, &[("cleanup.policy", "compact")]);
    create_topic_with(
        &mut client,
        "mixed",
        1,
        &[("cleanup.policy", "compact,delete")],
    );
    let message = "Compacted topic cannot accept message without key in topic partition";
    for (topic, compression) in [("keyed", Compression::None), ("mixed", Compression::Lz4)] {
        // Records 1 and 3 of four have no key: the whole batch is refused,
        // each of them named by its index in the batch.
        let batch = encode_keyed(
            &[(Some("a"), "1"), (None, "2"), (Some("b"), "3"), (None, "4")],
            -1,
            -1,
            0,
            false,
            compression,
        );
        let refused = produce_partition(&mut client, None, topic, 0, batch);
        assert_eq!(refused.error_code, 87, "INVALID_RECORD: {refused:?}");
        let named: Vec<(i32, String)> = refused
            .record_errors
            .iter()
            .map(|error| {
                let message = error.batch_index_error_message.as_deref().unwrap_or("");
                (error.batch_index, message.to_string())
            })
            .collect();
        let expected = |index: i32| (index, format!("{message} {topic}-0."));
        assert_eq!(named, vec![expected(1), expected(3)]);
        let summary = refused.error_message.as_deref().unwrap_or("").to_string();
        assert!(
            summary.starts_with("One or more records have been rejected due to 2 record errors"),
            "{summary}"
        );

        // Nothing of it was written: the next batch, all keyed, starts at 0.
        let keyed = encode_keyed(&[(Some("a"), "1")], -1, -1, 0, false, compression);
        let accepted = produce_partition(&mut client, None, topic, 0, keyed);
        assert_eq!((accepted.error_code, accepted.base_offset), (0, 0));
        assert!(accepted.record_errors.is_empty());
    }

    // A topic that is not compacted takes records without keys.
    create_topic(&mut client, "plain", 1);
    assert_eq!(produce(&mut client, "plain", 0, &["no", "keys"]), 0);
}

/// JoinGroup v9 for a consumer group member (one "range" protocol).
fn join_group(group: &str, member_id: &str) -> JoinGroupRequest {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_session_timeout_ms(30_000)
        .with_rebalance_timeout_ms(30_000)
        .with_member_id(StrBytes::from_string(member_id.into()))
        .with_protocol_type(StrBytes::from_static_str("consumer"))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"m"))])
}

/// Joins as a new member: MEMBER_ID_REQUIRED, then the join with that id,
/// which completes at once when nobody else is in the group.
fn join_alone(client: &mut Client, group: &str) -> JoinGroupResponse {
    let first: JoinGroupResponse = client.call(ApiKey::JoinGroup, 9, &join_group(group, ""));
    assert_eq!(first.error_code, 79, "MEMBER_ID_REQUIRED");
    let joined: JoinGroupResponse =
        client.call(ApiKey::JoinGroup, 9, &join_group(group, &first.member_id));
    assert_eq!(joined.error_code, 0);
    joined
}

fn sync_group(client: &mut Client, group: &str, member_id: &str, generation: i32) -> i16 {
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    let synced: SyncGroupResponse = client.call(
        ApiKey::SyncGroup,
        5,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.into()))
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(StrBytes::from_string(member_id.into()))
                .with_assignment(Bytes::from_static(b"a"))]),
    );
    synced.error_code
}

/// OffsetCommit v8 of `offset` for partition 0 of `topic`: its error code.
fn commit_offset(
    client: &mut Client,
    group: &str,
    member_id: &str,
    generation: i32,
    topic: &str,
    offset: i64,
) -> i16 {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let committed: OffsetCommitResponse = client.call(
        ApiKey::OffsetCommit,
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.into()))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]),
    );
    committed.topics[0].partitions[0].error_code
}

#[test]
fn a_member_commits_while_its_group_prepares_a_rebalance_but_not_while_it_completes_one() {
    let broker = Broker::start();
    let mut first = broker.connect();
    let mut second = broker.connect();
    create_topic(&mut first, "work", 1);

    // Phase 1: one member, generation 1, stable.
    let joined = join_alone(&mut first, "g");
    let (a, generation) = (joined.member_id.to_string(), joined.generation_id);
    assert_eq!(sync_group(&mut first, "g", &a, generation), 0);
    assert_eq!(commit_offset(&mut first, "g", &a, generation, "work", 1), 0);

    // Phase 2: a second member joins; its JoinGroup waits for the first to
    // rejoin, so the group prepares a rebalance. The first member, still of
    // generation 1, goes on committing what it consumes, as Kafka allows.
    let request: JoinGroupResponse = second.call(ApiKey::JoinGroup, 9, &join_group("g", ""));
    let b = request.member_id.to_string();
    second.send(ApiKey::JoinGroup, 9, &join_group("g", &b));
    // The second member's join arrives on its own connection: the first
    // member's heartbeat tells when it is in.
    let heartbeat = HeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(generation)
        .with_member_id(StrBytes::from_string(a.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer: HeartbeatResponse = first.call(ApiKey::Heartbeat, 4, &heartbeat);
        if answer.error_code == 27 {
            break; // REBALANCE_IN_PROGRESS
        }
        assert_eq!(answer.error_code, 0);
        assert!(Instant::now() < deadline, "the second member never joined");
    }
    assert_eq!(commit_offset(&mut first, "g", &a, generation, "work", 2), 0);

    // Phase 3: the first member rejoins; both JoinGroups are answered with
    // generation 2 and the group waits for the leader's SyncGroup. A commit
    // now is REBALANCE_IN_PROGRESS: the member has no assignment yet.
    let rejoined: JoinGroupResponse = first.call(ApiKey::JoinGroup, 9, &join_group("g", &a));
    let other: JoinGroupResponse = second.receive(9);
    assert_eq!((rejoined.error_code, other.error_code), (0, 0));
    assert_eq!(rejoined.generation_id, generation + 1);
    let next = rejoined.generation_id;
    assert_eq!(commit_offset(&mut first, "g", &a, next, "work", 3), 27);
    assert_eq!(
        commit_offset(&mut first, "g", &a, generation, "work", 3),
        22,
        "ILLEGAL_GENERATION for the old generation"
    );

    // Phase 4: synced, stable again: commits are taken.
    let leader = if rejoined.leader == rejoined.member_id {
        &mut first
    } else {
        &mut second
    };
    let leader_id = if rejoined.leader == rejoined.member_id {
        &a
    } else {
        &b
    };
    assert_eq!(sync_group(leader, "g", leader_id, next), 0);
    assert_eq!(commit_offset(&mut first, "g", &a, next, "work", 4), 0);
    assert_eq!(committed_offsets(&mut first, "g", &[("work", 0)]), [4]);
}

/// One topic of a DescribeTopicPartitions answer: name, error, partitions.
type DescribedTopic = (String, i16, Vec<i32>);

/// DescribeTopicPartitions v0: the topics answered and the next cursor.
fn describe_topic_partitions(
    client: &mut Client,
    topics: &[&str],
    limit: i32,
    cursor: Option<(&str, i32)>,
) -> (Vec<DescribedTopic>, Option<(String, i32)>) {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let request = DescribeTopicPartitionsRequest::default()
        .with_topics(
            topics
                .iter()
                .map(|name| TopicRequest::default().with_name(topic_name(name)))
                .collect(),
        )
        .with_response_partition_limit(limit)
        .with_cursor(cursor.map(|(topic, partition)| {
            Cursor::default()
                .with_topic_name(topic_name(topic))
                .with_partition_index(partition)
        }));
    let response: DescribeTopicPartitionsResponse =
        client.call(ApiKey::DescribeTopicPartitions, 0, &request);
    let topics = response
        .topics
        .iter()
        .map(|topic| {
            let name = topic
                .name
                .as_ref()
                .map(|name| name.to_string())
                .unwrap_or_default();
            let partitions = topic.partitions.iter().map(|p| p.partition_index).collect();
            (name, topic.error_code, partitions)
        })
        .collect();
    let next = response
        .next_cursor
        .map(|cursor| (cursor.topic_name.to_string(), cursor.partition_index));
    (topics, next)
}

#[test]
fn describe_topic_partitions_pages_through_topics_with_a_cursor() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "alpha", 3);
    create_topic(&mut client, "beta", 2);
    create_topic(&mut client, "gamma", 1);
    let page = |topic: &str, error: i16, partitions: &[i32]| {
        (topic.to_string(), error, partitions.to_vec())
    };

    // Every topic, four partitions a page: the first page ends inside beta,
    // the second starts at the cursor and is the last.
    let (first, next) = describe_topic_partitions(&mut client, &[], 4, None);
    assert_eq!(
        first,
        vec![page("alpha", 0, &[0, 1, 2]), page("beta", 0, &[0])]
    );
    assert_eq!(next, Some(("beta".to_string(), 1)));
    let (second, next) = describe_topic_partitions(&mut client, &[], 4, Some(("beta", 1)));
    assert_eq!(second, vec![page("beta", 0, &[1]), page("gamma", 0, &[0])]);
    assert_eq!(next, None);

    // A page that ends exactly at a topic's end points at the next topic.
    let (whole, next) = describe_topic_partitions(&mut client, &[], 3, None);
    assert_eq!(whole, vec![page("alpha", 0, &[0, 1, 2])]);
    assert_eq!(next, Some(("beta".to_string(), 0)));

    // Named topics come back in name order; a missing one is
    // UNKNOWN_TOPIC_OR_PARTITION, an impossible name INVALID_TOPIC_EXCEPTION.
    let (named, next) = describe_topic_partitions(
        &mut client,
        &["gamma", "missing", "alpha", "bad/name"],
        100,
        None,
    );
    assert_eq!(
        named,
        vec![
            page("alpha", 0, &[0, 1, 2]),
            page("bad/name", 17, &[]),
            page("gamma", 0, &[0]),
            page("missing", 3, &[]),
        ]
    );
    assert_eq!(next, None);

    // A cursor on a topic that was not asked for is INVALID_REQUEST.
    let (refused, _) = describe_topic_partitions(&mut client, &["alpha"], 10, Some(("beta", 0)));
    assert_eq!(refused, vec![page("alpha", 42, &[])]);

    // Without an authorizer every topic operation is allowed (KIP-430).
    let response: DescribeTopicPartitionsResponse = client.call(
        ApiKey::DescribeTopicPartitions,
        0,
        &DescribeTopicPartitionsRequest::default().with_response_partition_limit(10),
    );
    let alpha = &response.topics[0];
    assert_eq!(alpha.topic_authorized_operations, 3576);
    assert_eq!(alpha.partitions[0].leader_id.0, 1);
    assert_eq!(alpha.partitions[0].replica_nodes, vec![BrokerId(1)]);
}

#[test]
fn list_config_resources_lists_topics_brokers_and_groups() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "configured", 1);
    assert_eq!(
        commit_offset(&mut client, "a-group", "", -1, "configured", 1),
        0
    );
    let list = |client: &mut Client, version: i16, types: Vec<i8>| {
        let response: ListConfigResourcesResponse = client.call(
            ApiKey::ListConfigResources,
            version,
            &ListConfigResourcesRequest::default().with_resource_types(types),
        );
        let listed: Vec<(i8, String)> = response
            .config_resources
            .iter()
            .map(|resource| (resource.resource_type, resource.resource_name.to_string()))
            .collect();
        (response.error_code, listed)
    };
    let (error, listed) = list(&mut client, 1, vec![]);
    assert_eq!(error, 0);
    for expected in [
        (2, "configured".to_string()),
        (4, "1".to_string()),
        (8, "1".to_string()),
        (32, "a-group".to_string()),
    ] {
        assert!(listed.contains(&expected), "{expected:?} in {listed:?}");
    }
    let (_, topics) = list(&mut client, 1, vec![2]);
    assert!(topics.iter().all(|(kind, _)| *kind == 2), "{topics:?}");
    assert!(topics.contains(&(2, "configured".to_string())));
    // Types outside Kafka's set are UNSUPPORTED_VERSION; v0 lists client
    // metrics resources only, of which there are none.
    assert_eq!(list(&mut client, 1, vec![3]).0, 35);
    assert_eq!(list(&mut client, 0, vec![]), (0, vec![]));
}

#[test]
fn a_single_node_answers_quorum_election_and_reassignment_requests_as_a_one_broker_kafka() {
    use kafka_protocol::messages::alter_partition_reassignments_request::{
        ReassignablePartition, ReassignableTopic,
    };
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "placed", 2);

    // DescribeQuorum: one voter, the leader, no observers.
    let quorum_of = |client: &mut Client, topic: &str, partitions: &[i32]| {
        let request = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(topic_name(topic))
            .with_partitions(
                partitions
                    .iter()
                    .map(|index| PartitionData::default().with_partition_index(*index))
                    .collect(),
            )]);
        let response: DescribeQuorumResponse = client.call(ApiKey::DescribeQuorum, 2, &request);
        response
    };
    let quorum = quorum_of(&mut client, "__cluster_metadata", &[0]);
    assert_eq!(quorum.error_code, 0);
    let partition = &quorum.topics[0].partitions[0];
    assert_eq!((partition.error_code, partition.leader_id.0), (0, 1));
    let voters: Vec<i32> = partition
        .current_voters
        .iter()
        .map(|v| v.replica_id.0)
        .collect();
    assert_eq!(voters, vec![1]);
    assert!(partition.observers.is_empty());
    assert_eq!(quorum.nodes[0].node_id.0, 1);
    let elsewhere = quorum_of(&mut client, "placed", &[0]);
    assert_eq!(elsewhere.topics[0].partitions[0].error_code, 3);
    assert_eq!(
        quorum_of(&mut client, "__cluster_metadata", &[0, 1]).error_code,
        42
    );

    // ElectLeaders: the preferred leader is already the leader.
    let elect = |client: &mut Client, topics: Option<Vec<TopicPartitions>>| {
        let response: ElectLeadersResponse = client.call(
            ApiKey::ElectLeaders,
            2,
            &ElectLeadersRequest::default()
                .with_election_type(0)
                .with_topic_partitions(topics)
                .with_timeout_ms(5_000),
        );
        assert_eq!(response.error_code, 0);
        response
            .replica_election_results
            .iter()
            .flat_map(|topic| {
                topic.partition_result.iter().map(|result| {
                    (
                        topic.topic.to_string(),
                        result.partition_id,
                        result.error_code,
                    )
                })
            })
            .collect::<Vec<_>>()
    };
    let named = elect(
        &mut client,
        Some(vec![
            TopicPartitions::default()
                .with_topic(topic_name("placed"))
                .with_partitions(vec![0, 1, 7]),
            TopicPartitions::default()
                .with_topic(topic_name("nowhere"))
                .with_partitions(vec![0]),
        ]),
    );
    assert_eq!(
        named,
        vec![
            ("placed".to_string(), 0, 84),
            ("placed".to_string(), 1, 84),
            ("placed".to_string(), 7, 3),
            ("nowhere".to_string(), 0, 3),
        ],
        "ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert_eq!(
        elect(&mut client, None),
        vec![],
        "all partitions: none needed one"
    );

    // AlterPartitionReassignments: the current replicas are accepted, other
    // brokers and duplicates are not, and nothing is in progress to cancel.
    let reassign = |client: &mut Client, partitions: Vec<ReassignablePartition>| {
        let response: AlterPartitionReassignmentsResponse = client.call(
            ApiKey::AlterPartitionReassignments,
            0,
            &AlterPartitionReassignmentsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![ReassignableTopic::default()
                    .with_name(topic_name("placed"))
                    .with_partitions(partitions)]),
        );
        assert_eq!(response.error_code, 0);
        response.responses[0]
            .partitions
            .iter()
            .map(|partition| partition.error_code)
            .collect::<Vec<_>>()
    };
    let to = |index: i32, replicas: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(index)
            .with_replicas(replicas.map(|ids| ids.into_iter().map(BrokerId).collect()))
    };
    assert_eq!(
        reassign(
            &mut client,
            vec![
                to(0, Some(vec![1])),
                to(1, Some(vec![1, 2])),
                to(1, Some(vec![1, 1])),
                to(1, Some(vec![])),
                to(0, None),
                to(9, Some(vec![1])),
            ]
        ),
        vec![0, 39, 39, 39, 85, 3]
    );
    let listed: ListPartitionReassignmentsResponse = client.call(
        ApiKey::ListPartitionReassignments,
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(5_000),
    );
    assert_eq!((listed.error_code, listed.topics.len()), (0, 0));
}

#[test]
fn authorized_operations_are_reported_only_when_asked_for() {
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "asked", 1);
    let metadata = |client: &mut Client, asked: bool| {
        let request = MetadataRequest::default()
            .with_topics(None)
            .with_include_cluster_authorized_operations(asked)
            .with_include_topic_authorized_operations(asked);
        let response: MetadataResponse = client.call(ApiKey::Metadata, 10, &request);
        let topic = response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|name| name.as_str() == "asked"));
        let topic_operations = topic.unwrap().topic_authorized_operations;
        (response.cluster_authorized_operations, topic_operations)
    };
    // Without an authorizer: every operation Kafka supports (KIP-430 bit fields).
    assert_eq!(metadata(&mut client, true), (8096, 3576));
    assert_eq!(metadata(&mut client, false), (i32::MIN, i32::MIN));
    let cluster = |client: &mut Client, asked: bool| {
        let request =
            DescribeClusterRequest::default().with_include_cluster_authorized_operations(asked);
        let response: DescribeClusterResponse = client.call(ApiKey::DescribeCluster, 1, &request);
        response.cluster_authorized_operations
    };
    assert_eq!(
        (cluster(&mut client, true), cluster(&mut client, false)),
        (8096, i32::MIN)
    );
}

/// A port that is free now and outside the kernel's ephemeral range
/// (32768 and up), so no outgoing connection or `:0` listener of a test
/// running beside this one can take it before the broker binds it.
fn unused_fixed_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = 20_000 + (std::process::id() % 1000) as u16 * 12;
    loop {
        let port = start + NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Three `strom serve` nodes on loopback, each a broker and a controller
/// quorum voter, started together (voters wait for each other).
fn start_cluster() -> Vec<Broker> {
    let controller_ports: Vec<u16> = (0..3).map(|_| unused_fixed_port()).collect();
    let voters = controller_ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}@127.0.0.1:{port}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children = Vec::new();
    for (i, port) in controller_ports.iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strom"))
            .args(["serve", "--schema-registry-listener", "none"])
            .args(["--listeners", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--node-id", &(i + 1).to_string()])
            .args(["--controller-listener", &format!("127.0.0.1:{port}")])
            .args(["--controller-quorum-voters", &voters])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("strom starts");
        children.push((child, dir));
    }
    children
        .into_iter()
        .map(|(mut child, dir)| {
            let address = listening_address(&mut child);
            Broker {
                child,
                address,
                dir: Some(dir),
            }
        })
        .collect()
}

/// KIP-951: a broker that does not lead a partition answers Produce and
/// Fetch for it with NOT_LEADER_OR_FOLLOWER, the partition's current
/// leader and leader epoch, and that leader's endpoint, so a client goes
/// there without asking for metadata first.
/// Until every node of the cluster is in the metadata `client` gets.
fn wait_for_cluster(client: &mut Client, nodes: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = MetadataRequest::default().with_topics(None);
        let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request);
        if response.brokers.len() >= nodes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {nodes} nodes did not form a cluster"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The topic's metadata and, per partition, its leader and leader epoch,
/// once all `partitions` have a leader.
fn partition_leaders(
    client: &mut Client,
    topic: &str,
    partitions: usize,
) -> (metadata_response::MetadataResponseTopic, Vec<(i32, i32)>) {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let request = MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(topic))),
        ]));
        let response: MetadataResponse = client.call(ApiKey::Metadata, 12, &request);
        let metadata = &response.topics[0];
        let leaders: Vec<(i32, i32)> = metadata
            .partitions
            .iter()
            .map(|p| (p.leader_id.0, p.leader_epoch))
            .collect();
        if leaders.len() == partitions && leaders.iter().all(|(leader, _)| *leader > 0) {
            return (metadata.clone(), leaders);
        }
        assert!(
            Instant::now() < deadline,
            "no leaders for '{topic}': {leaders:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_broker_that_does_not_lead_a_partition_names_its_leader_in_produce_and_fetch_answers() {
    let nodes = start_cluster();
    let mut client = nodes[0].connect();
    wait_for_cluster(&mut client, 3);
    create_topic(&mut client, "hinted", 3);
    let (topic, leaders) = partition_leaders(&mut client, "hinted", 3);
    let topic_id = topic.topic_id;
    // Node 1 (the client's) and a partition another node leads.
    let (partition, (leader, leader_epoch)) = leaders
        .iter()
        .copied()
        .enumerate()
        .find(|(_, (leader, _))| *leader != 1)
        .expect("three partitions on three brokers: one is led elsewhere");
    let leader_address = &nodes[leader as usize - 1].address;
    let leader_port: i32 = leader_address.rsplit(':').next().unwrap().parse().unwrap();

    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name("hinted"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition as i32)
                .with_records(Some(records(&["misdirected"])))])]);
    let response: ProduceResponse = client.call(ApiKey::Produce, 11, &request);
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(
        (
            answer.current_leader.leader_id.0,
            answer.current_leader.leader_epoch
        ),
        (leader, leader_epoch)
    );
    let endpoint = response
        .node_endpoints
        .iter()
        .find(|e| e.node_id.0 == leader)
        .expect("the leader's endpoint in the Produce answer");
    assert_eq!(
        (endpoint.host.as_str(), endpoint.port),
        ("127.0.0.1", leader_port)
    );

    let request = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic_id(topic_id)
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition as i32)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(ApiKey::Fetch, 16, &request);
    let answer = &response.responses[0].partitions[0];
    assert_eq!(answer.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert_eq!(
        (
            answer.current_leader.leader_id.0,
            answer.current_leader.leader_epoch
        ),
        (leader, leader_epoch)
    );
    assert!(
        response
            .node_endpoints
            .iter()
            .any(|e| e.node_id.0 == leader && e.port == leader_port),
        "the leader's endpoint in the Fetch answer: {:?}",
        response.node_endpoints
    );

    // DescribeProducers is the leader's to answer, as Kafka's admin client
    // expects.
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    let described: DescribeProducersResponse = client.call(
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(topic_name("hinted"))
            .with_partition_indexes(vec![partition as i32])]),
    );
    assert_eq!(
        described.topics[0].partitions[0].error_code, 6,
        "NOT_LEADER_OR_FOLLOWER"
    );
}

/// The node coordinating `key` (`key_type` 0 a group, 1 a transactional
/// id), once its internal topic exists and the key's partition is led.
fn find_coordinator(client: &mut Client, key: &str, key_type: i8) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found: FindCoordinatorResponse = client.call(
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(key.into()))
                .with_key_type(key_type),
        );
        if found.error_code == 0 {
            return found.node_id.0;
        }
        assert!(Instant::now() < deadline, "no coordinator for '{key}'");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A group's coordinator takes offsets for every partition of a topic, the
/// ones it holds no replica of too: a partition exists when the cluster
/// metadata has it (six partitions, one replica each, on three brokers).
#[test]
fn a_group_coordinator_commits_offsets_of_partitions_it_holds_no_replica_of() {
    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    let nodes = start_cluster();
    let mut client = nodes[0].connect();
    wait_for_cluster(&mut client, 3);
    create_topic(&mut client, "spread", 6);
    let (topic, _) = partition_leaders(&mut client, "spread", 6);
    let coordinator = find_coordinator(&mut client, "spread-readers", 0);
    let elsewhere = topic
        .partitions
        .iter()
        .filter(|p| !p.replica_nodes.iter().any(|node| node.0 == coordinator))
        .count();
    assert!(
        elsewhere > 0,
        "every partition has a replica on node {coordinator}"
    );

    let mut at_coordinator = nodes[coordinator as usize - 1].connect();
    let partitions: Vec<i32> = (0..6).collect();
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string("spread-readers".into())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name("spread"))
            .with_partitions(
                partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(100 + *p as i64)
                    })
                    .collect(),
            )]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let codes = loop {
        let committed: OffsetCommitResponse =
            at_coordinator.call(ApiKey::OffsetCommit, 8, &request);
        let codes: Vec<i16> = committed.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        // COORDINATOR_LOAD_IN_PROGRESS while __consumer_offsets loads.
        if !codes.contains(&14) || Instant::now() > deadline {
            break codes;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(codes, vec![0; 6]);
    let wanted: Vec<(&str, i32)> = partitions.iter().map(|p| ("spread", *p)).collect();
    assert_eq!(
        committed_offsets(&mut at_coordinator, "spread-readers", &wanted),
        vec![100, 101, 102, 103, 104, 105]
    );
}

/// KIP-890 across brokers: a partition leader that does not coordinate the
/// transaction asks its coordinator (AddPartitionsToTxn verify_only) before
/// it lets a batch open a transaction. A batch for a partition the
/// transaction never added is refused with INVALID_TXN_STATE, so it cannot
/// leave a transaction open that no marker would ever end; one for an added
/// partition is written.
#[test]
fn a_leader_verifies_a_transactions_first_batch_with_a_coordinator_on_another_broker() {
    let nodes = start_cluster();
    let mut client = nodes[0].connect();
    wait_for_cluster(&mut client, 3);
    create_topic(&mut client, "ledger", 6);
    let (_, leaders) = partition_leaders(&mut client, "ledger", 6);

    let coordinator = find_coordinator(&mut client, "ledger-tx", 1);
    let mut at_coordinator = nodes[coordinator as usize - 1].connect();
    let (id, epoch) = init_producer_id_when_loaded(&mut at_coordinator, "ledger-tx");

    // Two partitions led by other brokers: one joins the transaction.
    let elsewhere: Vec<(i32, i32)> = leaders
        .iter()
        .enumerate()
        .filter(|(_, (leader, _))| *leader != coordinator)
        .map(|(partition, (leader, _))| (partition as i32, *leader))
        .take(2)
        .collect();
    assert_eq!(
        elsewhere.len(),
        2,
        "six partitions on three brokers: {leaders:?}"
    );
    let (added, outside) = (elsewhere[0], elsewhere[1]);
    assert_eq!(
        add_partition_to_txn(
            &mut at_coordinator,
            "ledger-tx",
            (id, epoch),
            "ledger",
            added.0
        ),
        0
    );

    let mut at_outside = nodes[outside.1 as usize - 1].connect();
    let refused = produce_in(
        &mut at_outside,
        Some("ledger-tx"),
        "ledger",
        outside.0,
        encode_records(&["late"], id, epoch, 0, true),
    );
    assert_eq!(refused.0, 48, "INVALID_TXN_STATE: {:?}", refused.2);
    let mut at_added = nodes[added.1 as usize - 1].connect();
    let written = produce_in(
        &mut at_added,
        Some("ledger-tx"),
        "ledger",
        added.0,
        encode_records(&["kept"], id, epoch, 0, true),
    );
    assert_eq!(written.0, 0, "{:?}", written.2);
}

/// TxnOffsetCommit at a group coordinator that does not coordinate the
/// transaction: the group's partition must be in the open transaction, as
/// the transaction's coordinator on another broker says (KIP-890). Before
/// AddOffsetsToTxn the offsets are refused with INVALID_TXN_STATE; after it
/// they are staged, and the COMMIT marker, written there by the other
/// broker's request, makes them the group's.
#[test]
fn a_group_coordinator_verifies_transactional_offsets_with_a_coordinator_on_another_broker() {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let nodes = start_cluster();
    let mut client = nodes[0].connect();
    wait_for_cluster(&mut client, 3);
    create_topic(&mut client, "source", 1);
    let txn_coordinator = find_coordinator(&mut client, "copy-tx", 1);
    let (group, group_coordinator) = (0..50)
        .map(|i| format!("copiers-{i}"))
        .map(|group| {
            let coordinator = find_coordinator(&mut client, &group, 0);
            (group, coordinator)
        })
        .find(|(_, coordinator)| *coordinator != txn_coordinator)
        .expect("a group coordinated by another broker than the transaction");
    let mut at_txn = nodes[txn_coordinator as usize - 1].connect();
    let mut at_group = nodes[group_coordinator as usize - 1].connect();
    let producer = init_producer_id_when_loaded(&mut at_txn, "copy-tx");
    let mut commit_offset = |offset: i64| {
        let staged: TxnOffsetCommitResponse = at_group.call(
            ApiKey::TxnOffsetCommit,
            3,
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id("copy-tx"))
                .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                .with_producer_id(ProducerId(producer.0))
                .with_producer_epoch(producer.1)
                .with_generation_id(-1)
                .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name("source"))
                    .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset)])]),
        );
        staged.topics[0].partitions[0].error_code
    };
    assert_eq!(
        commit_offset(5),
        48,
        "INVALID_TXN_STATE before AddOffsetsToTxn"
    );
    assert_eq!(
        add_offsets_to_txn(&mut at_txn, "copy-tx", producer, &group),
        0
    );
    assert_eq!(commit_offset(5), 0);
    assert_eq!(end_txn(&mut at_txn, "copy-tx", producer, true), 0);
    assert_eq!(
        committed_offsets(&mut at_group, &group, &[("source", 0)]),
        [5]
    );
}

/// Markers carry their coordinator's epoch: once a partition took a marker
/// for a producer from coordinator epoch 9, one from an older coordinator
/// (a deposed one that has not learned it) is refused with
/// TRANSACTION_COORDINATOR_FENCED, and DescribeProducers reports the epoch.
#[test]
fn a_marker_from_an_older_coordinator_epoch_is_fenced() {
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    let broker = Broker::start();
    let mut client = broker.connect();
    create_topic(&mut client, "fenced", 1);
    let (id, epoch) = init_transactional_producer(&mut client, "fence-tx");
    assert_eq!(
        add_partition_to_txn(&mut client, "fence-tx", (id, epoch), "fenced", 0),
        0
    );
    let written = produce_in(
        &mut client,
        Some("fence-tx"),
        "fenced",
        0,
        encode_records(&["x"], id, epoch, 0, true),
    );
    assert_eq!(written.0, 0, "{:?}", written.2);

    let mut marker = |coordinator_epoch: i32| -> i16 {
        let request =
            WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch)
                .with_transaction_result(false)
                .with_coordinator_epoch(coordinator_epoch)
                .with_topics(vec![WritableTxnMarkerTopic::default()
                    .with_name(topic_name("fenced"))
                    .with_partition_indexes(vec![0])])]);
        let response: WriteTxnMarkersResponse = client.call(ApiKey::WriteTxnMarkers, 1, &request);
        response.markers[0].topics[0].partitions[0].error_code
    };
    assert_eq!(marker(9), 0);
    assert_eq!(marker(3), 52, "TRANSACTION_COORDINATOR_FENCED");
    assert_eq!(marker(9), 0, "the same coordinator again");

    let described: DescribeProducersResponse = client.call(
        ApiKey::DescribeProducers,
        0,
        &DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
            .with_name(topic_name("fenced"))
            .with_partition_indexes(vec![0])]),
    );
    let producer = described.topics[0].partitions[0]
        .active_producers
        .iter()
        .find(|p| p.producer_id.0 == id)
        .expect("the producer is described");
    assert_eq!(producer.coordinator_epoch, 9);
}
