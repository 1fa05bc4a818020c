//! The internal compacted topics that coordinators keep their state in
//! (`__consumer_offsets`, `__transaction_state`): creating one on first use,
//! appending keyed records to the partition a key hashes to and waiting
//! until they are durable (fsynced here and, when the partition is
//! replicated, on every in-sync replica), and replaying a partition at
//! startup.
//!
//! [`InternalLog`] is all a coordinator runtime sees of the node it runs
//! on: these operations, the cluster metadata (who leads what), and the
//! node's static configs. It is built from the node's parts before the
//! broker is, so the coordinators never depend on the broker.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::future::Future;
use std::pin::Pin;
use strom_coordinator::records::partition_for;

use crate::configs::BrokerOverrides;
use crate::flusher::Flusher;
use crate::partition::{now_ms, Appended, Partition, PartitionRegistry, TopicPartitions};
use crate::topics::{NewTopic, TopicError, Topics};

/// A record for an internal topic: key and value (`None` deletes the key).
pub type KeyedRecord = (Vec<u8>, Option<Vec<u8>>);

/// What a coordinator runtime may use of its node: the internal topics'
/// partitions held here, writing to them durably, the cluster metadata,
/// and the node's static configs. Cheap to clone.
#[derive(Clone)]
pub struct InternalLog {
    node_id: i32,
    configs: Arc<BrokerOverrides>,
    topics: Arc<Topics>,
    partitions: Arc<PartitionRegistry>,
    flusher: Flusher,
}

impl InternalLog {
    pub fn new(
        node_id: i32,
        configs: BrokerOverrides,
        topics: Arc<Topics>,
        partitions: Arc<PartitionRegistry>,
        flusher: Flusher,
    ) -> InternalLog {
        InternalLog {
            node_id,
            configs: Arc::new(configs),
            topics,
            partitions,
            flusher,
        }
    }

    pub fn node_id(&self) -> i32 {
        self.node_id
    }

    /// A broker config as this node was started with it.
    pub fn config_i64(&self, name: &str) -> i64 {
        self.configs.get_i64(name)
    }

    /// The cluster metadata as this node knows it, and the controller.
    pub fn metadata(&self) -> &Topics {
        &self.topics
    }

    /// The partitions of `topic` held here, if any.
    pub fn partitions(&self, topic: &str) -> Option<Arc<TopicPartitions>> {
        self.partitions.topic(topic)
    }

    /// Partition `index` of `topic`, if this node holds a replica of it.
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.partitions.get(topic, index)
    }

    /// The partition of internal topic `topic` that `key` (a group or
    /// transactional id) belongs to: Kafka's `abs(hashCode) % partitions`.
    pub fn partition_for_key(&self, topic: &str, key: &str) -> Option<Arc<Partition>> {
        let partitions = self.partitions.topic(topic)?;
        let index = partition_for(key, partitions.count() as i32);
        partitions.get(index).cloned()
    }
}

/// Creates the compacted topic `name` with `partitions` partitions, unless
/// it exists. Returns true when it already existed.
async fn create_if_missing(
    log: &InternalLog,
    name: &str,
    partitions: i32,
) -> Result<bool, TopicError> {
    if log.topics.topic(name).is_some() {
        return Ok(true);
    }
    // Kafka's rule for internal topics: three replicas where there are three
    // brokers, fewer on smaller clusters.
    let replication_factor = log.topics.usable_brokers().clamp(1, 3) as i16;
    let topic = NewTopic {
        name: name.to_string(),
        partitions: Some(partitions),
        replication_factor: Some(replication_factor),
        assignments: Vec::new(),
        configs: BTreeMap::from([
            ("cleanup.policy".to_string(), "compact".to_string()),
            ("segment.bytes".to_string(), "104857600".to_string()),
        ]),
    };
    let creator = log.topics.clone();
    let created = tokio::spawn(async move { creator.create(topic).await })
        .await
        .map_err(|_| {
            TopicError::new(
                ResponseError::CoordinatorNotAvailable,
                format!("creating {name} failed"),
            )
        })?;
    match created {
        Ok(_) => Ok(false),
        Err(error) if error.error == ResponseError::TopicAlreadyExists => Ok(false),
        Err(error) => Err(error),
    }
}

/// Creates the internal topic `name` (`partitions_config` names its
/// partition count) unless it exists.
pub async fn create(
    log: &InternalLog,
    name: &str,
    partitions_config: &str,
) -> Result<(), TopicError> {
    let partitions = log.config_i64(partitions_config).max(1) as i32;
    create_if_missing(log, name, partitions).await.map(|_| ())
}

/// Creates the compacted topic `name` with `partitions` partitions unless
/// it exists (the schema registry's `_schemas`).
pub async fn create_with(log: &InternalLog, name: &str, partitions: i32) -> Result<(), TopicError> {
    create_if_missing(log, name, partitions).await.map(|_| ())
}

/// Visits every record of a partition its coordinator leads, control
/// records (transaction markers) included, up to the log end: a leader
/// keeps its whole log, and the high watermark of a new leader only
/// reaches the end once its followers fetched it. Returns how many it
/// visited.
pub fn replay(topic: &str, partition: &Partition, mut visit: impl FnMut(&Record)) -> u64 {
    let mut offset = partition.log_start_offset();
    let end = partition.log_end_offset();
    let mut records = 0u64;
    while offset < end {
        let slice = match partition.read_for_replica(offset, 1 << 20, true) {
            Ok(Some(slice)) => slice,
            Ok(None) => break,
            Err(error) => {
                tracing::error!(topic, partition = partition.index, %error, "reading an internal topic failed");
                break;
            }
        };
        let Ok(bytes) = slice.read() else { break };
        let mut buffer = Bytes::from(bytes);
        let Ok(sets) = RecordBatchDecoder::decode_all(&mut buffer) else {
            tracing::error!(
                topic,
                partition = partition.index,
                "undecodable batch in an internal topic"
            );
            break;
        };
        let mut last = offset;
        for set in sets {
            for record in set.records {
                last = last.max(record.offset + 1);
                records += 1;
                visit(&record);
            }
        }
        if last <= offset {
            break;
        }
        offset = last;
    }
    records
}

/// Appends keyed records, as one batch, to `partition` and waits until they
/// are durable.
pub async fn append(
    log: &InternalLog,
    partition: Arc<Partition>,
    records: Vec<KeyedRecord>,
) -> Result<(), String> {
    durable(append_now(log, partition, records)?).await
}

/// Resolves once a write is durable; `Err` says why it is not.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// How long a coordinator's write waits for the in-sync replicas.
const REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Waits for what [`append_now`] wrote to be durable.
pub async fn durable(durable: Durable) -> Result<(), String> {
    durable.await
}

/// Resolves once `partition` is durable up to `end`: fsynced here, and on
/// every in-sync replica when it is replicated (the acks=all rule).
pub fn durable_at(
    log: &InternalLog,
    partition: Arc<Partition>,
    end: i64,
    leader_epoch: i32,
) -> Durable {
    if partition.is_replicated() {
        log.flusher.flush_in_background(partition.clone(), end);
        return Box::pin(async move {
            partition
                .wait_replicated(end, leader_epoch, REPLICATION_TIMEOUT)
                .await
                .map_err(|(_, message)| message)
        });
    }
    let flushed = log.flusher.flush(partition, end);
    Box::pin(async move { flushed.await.map_err(|_| "flusher stopped".to_string())? })
}

/// The first half of [`append`]: the batch is in the log (its place in the
/// order of writes fixed) when this returns, and durable once the receiver
/// answers. Lets a caller that orders writes under a lock release the lock
/// before waiting for the fsync.
pub fn append_now(
    log: &InternalLog,
    partition: Arc<Partition>,
    records: Vec<KeyedRecord>,
) -> Result<Durable, String> {
    append_admitted(log, partition, records, None, |_| Ok(())).map_err(|error| match error {
        NotWritten::Refused(error) => format!("refused: {error:?}"),
        NotWritten::Failed(message) => message,
    })
}

/// Why [`append_admitted`] wrote nothing.
#[derive(Debug)]
pub enum NotWritten {
    /// `admit`, or the partition, refused the batch.
    Refused(ResponseError),
    /// The write failed.
    Failed(String),
}

/// [`append_now`], with `producer` (id, epoch) as part of that producer's
/// transaction (TxnOffsetCommit), where a transactional batch that would open `producer`'s
/// transaction in `partition` is written only if `admit` allows it, asked
/// under the lock markers take (KIP-890, see [`Partition::append_admitted`]).
pub fn append_admitted(
    log: &InternalLog,
    partition: Arc<Partition>,
    records: Vec<KeyedRecord>,
    producer: Option<(i64, i16)>,
    admit: impl FnOnce((i32, u64)) -> Result<(), ResponseError>,
) -> Result<Durable, NotWritten> {
    let failed = |error: &dyn std::fmt::Display| NotWritten::Failed(error.to_string());
    let now = now_ms();
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let encoded: Vec<Record> = records
        .into_iter()
        .enumerate()
        .map(|(index, (key, value))| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder keeps records in one batch while offset - sequence
            // is constant; the batch's own base sequence is reset below.
            sequence: index as i32,
            timestamp: now,
            key: Some(Bytes::from(key)),
            value: value.map(Bytes::from),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &encoded,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|error| failed(&error))?;
    let mut bytes = buffer.to_vec();
    // The broker's own writes carry no sequence.
    strom_log::batch::set_base_sequence(&mut bytes, -1);
    let leader_epoch = partition.leader_epoch();
    let end = match partition
        .append_admitted(&mut bytes, admit)
        .map_err(|error| failed(&error))?
    {
        Appended::Written(info) => info.last_offset + 1,
        Appended::Rejected(error) => return Err(NotWritten::Refused(error)),
        other => return Err(failed(&format!("unexpected append outcome {other:?}"))),
    };
    Ok(durable_at(log, partition, end, leader_epoch))
}
