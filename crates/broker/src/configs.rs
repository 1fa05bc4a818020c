//! Topic and broker configuration: Kafka's names, types, defaults, ranges and
//! the broker-level synonyms that supply a topic's default.
//!
//! A topic's effective value of a config is, in order: the topic's override,
//! the broker's value of the synonym if the operator set it, the built-in
//! default. DescribeConfigs reports which of the three it was.

use std::collections::BTreeMap;

use strom_log::batch::Compression;
use strom_log::LogConfig;

/// Kafka's `ConfigType` ids, as DescribeConfigs v3+ reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// Kafka's `ConfigSource` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

#[derive(Debug, Clone, Copy)]
pub enum Validator {
    Any,
    /// Inclusive lower bound.
    AtLeast(i64),
    /// Inclusive bounds, for doubles.
    Fraction,
    OneOf(&'static [&'static str]),
    /// A comma-separated list of values from the set, at least one.
    ListOf(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    pub kind: ConfigType,
    pub default: &'static str,
    /// The broker config that supplies the default for topics.
    pub broker_synonym: Option<&'static str>,
    pub validator: Validator,
    pub documentation: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// Topic-level configs Strom knows, with Kafka's defaults.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        kind: ConfigType::List,
        default: "delete",
        broker_synonym: Some("log.cleanup.policy"),
        validator: Validator::ListOf(&["delete", "compact"]),
        documentation: "delete: drop old segments by retention; compact: keep the latest record of each key.",
    },
    ConfigDef {
        name: "compression.type",
        kind: ConfigType::String,
        default: "producer",
        broker_synonym: Some("compression.type"),
        validator: Validator::OneOf(&["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"]),
        documentation: "producer: batches are stored as the producer compressed them; a codec (or uncompressed): the broker recompresses batches that arrive otherwise.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        default: "86400000",
        broker_synonym: Some("log.cleaner.delete.retention.ms"),
        validator: Validator::AtLeast(0),
        documentation: "How long tombstones are kept in compacted topics.",
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        kind: ConfigType::Long,
        default: "60000",
        broker_synonym: Some("log.segment.delete.delay.ms"),
        validator: Validator::AtLeast(0),
        documentation: "How long to wait before deleting a file from the filesystem.",
    },
    ConfigDef {
        name: "flush.messages",
        kind: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: Some("log.flush.interval.messages"),
        validator: Validator::AtLeast(1),
        documentation: "Setting this relaxes durability: acks=all is then answered after the write, and the log is fsynced every this many messages.",
    },
    ConfigDef {
        name: "flush.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: Some("log.flush.interval.ms"),
        validator: Validator::AtLeast(0),
        documentation: "Setting this relaxes durability: acks=all is then answered after the write, and the log is fsynced at least this often.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        kind: ConfigType::Int,
        default: "4096",
        broker_synonym: Some("log.index.interval.bytes"),
        validator: Validator::AtLeast(0),
        documentation: "Bytes of batches between two offset index entries.",
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        default: LONG_MAX,
        broker_synonym: Some("log.cleaner.max.compaction.lag.ms"),
        validator: Validator::AtLeast(1),
        documentation: "The longest a record may stay uncompacted.",
    },
    ConfigDef {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        default: "1048588",
        broker_synonym: Some("message.max.bytes"),
        validator: Validator::AtLeast(0),
        documentation: "The largest record batch the topic accepts.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        default: "CreateTime",
        broker_synonym: Some("log.message.timestamp.type"),
        validator: Validator::OneOf(&["CreateTime", "LogAppendTime"]),
        documentation: "CreateTime keeps the producer's timestamps; LogAppendTime replaces them with the broker's clock.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        default: "0.5",
        broker_synonym: Some("log.cleaner.min.cleanable.ratio"),
        validator: Validator::Fraction,
        documentation: "Share of the log that must be uncompacted before the cleaner runs.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        default: "0",
        broker_synonym: Some("log.cleaner.min.compaction.lag.ms"),
        validator: Validator::AtLeast(0),
        documentation: "The least time a record stays uncompacted.",
    },
    ConfigDef {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        default: "1",
        broker_synonym: Some("min.insync.replicas"),
        validator: Validator::AtLeast(1),
        documentation: "Replicas that must have a write before acks=all is answered.",
    },
    ConfigDef {
        name: "preallocate",
        kind: ConfigType::Boolean,
        default: "false",
        broker_synonym: Some("log.preallocate"),
        validator: Validator::Any,
        documentation: "Preallocate segment files (ignored: segments grow as written).",
    },
    ConfigDef {
        name: "retention.bytes",
        kind: ConfigType::Long,
        default: "-1",
        broker_synonym: Some("log.retention.bytes"),
        validator: Validator::AtLeast(-1),
        documentation: "Largest size a partition may grow to before old segments are deleted; -1 for no limit.",
    },
    ConfigDef {
        name: "retention.ms",
        kind: ConfigType::Long,
        default: "604800000",
        broker_synonym: Some("log.retention.ms"),
        validator: Validator::AtLeast(-1),
        documentation: "How long records are kept before old segments are deleted; -1 for ever.",
    },
    ConfigDef {
        name: "segment.bytes",
        kind: ConfigType::Int,
        default: "1073741824",
        broker_synonym: Some("log.segment.bytes"),
        validator: Validator::AtLeast(14),
        documentation: "Size at which a new segment file is rolled.",
    },
    ConfigDef {
        name: "segment.index.bytes",
        kind: ConfigType::Int,
        default: "10485760",
        broker_synonym: Some("log.index.size.max.bytes"),
        validator: Validator::AtLeast(4),
        documentation: "Largest offset index of one segment.",
    },
    ConfigDef {
        name: "segment.jitter.ms",
        kind: ConfigType::Long,
        default: "0",
        broker_synonym: Some("log.roll.jitter.ms"),
        validator: Validator::AtLeast(0),
        documentation: "Random jitter subtracted from segment.ms.",
    },
    ConfigDef {
        name: "segment.ms",
        kind: ConfigType::Long,
        default: "604800000",
        broker_synonym: Some("log.roll.ms"),
        validator: Validator::AtLeast(1),
        documentation: "Age at which a new segment file is rolled.",
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        default: "false",
        broker_synonym: Some("unclean.leader.election.enable"),
        validator: Validator::Any,
        documentation: "Whether a replica outside the ISR may become leader (losing data).",
    },
];

/// Broker-level configs that are not synonyms of topic configs.
pub const BROKER_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "auto.create.topics.enable",
        kind: ConfigType::Boolean,
        default: "true",
        broker_synonym: None,
        validator: Validator::Any,
        documentation: "Create a topic when a client asks for its metadata and it does not exist.",
    },
    ConfigDef {
        name: "num.partitions",
        kind: ConfigType::Int,
        default: "1",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Partitions of an automatically created topic, or of one created without a count.",
    },
    ConfigDef {
        name: "default.replication.factor",
        kind: ConfigType::Int,
        default: "1",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Replication factor of topics created without one.",
    },
    ConfigDef {
        name: "replica.lag.time.max.ms",
        kind: ConfigType::Long,
        default: "30000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "A follower that has not caught up with its leader's log end for this long leaves the ISR; one that catches up rejoins it.",
    },
    ConfigDef {
        name: "broker.session.timeout.ms",
        kind: ConfigType::Int,
        default: "4000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "A broker that has not heartbeated to the controller for this long is fenced: it leaves every ISR and loses its leaderships. Kafka's default is 9000, sized for JVM pauses; Strom has none, so it fails over sooner.",
    },
    ConfigDef {
        name: "controller.quorum.election.timeout.ms",
        kind: ConfigType::Int,
        default: "1000",
        broker_synonym: None,
        validator: Validator::AtLeast(50),
        documentation: "A voter that hears nothing from the quorum leader for this long (plus a random part up to as long again) starts an election; the leader sends heartbeats at a tenth of it.",
    },
    ConfigDef {
        name: "broker.heartbeat.interval.ms",
        kind: ConfigType::Int,
        default: "500",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often a broker heartbeats to the controller (Kafka's default is 2000; Strom's is an eighth of its session timeout).",
    },
    ConfigDef {
        name: "auto.leader.rebalance.enable",
        kind: ConfigType::Boolean,
        default: "true",
        broker_synonym: None,
        validator: Validator::Any,
        documentation: "Move leadership back to each partition's preferred leader once it is in sync again.",
    },
    ConfigDef {
        name: "leader.imbalance.check.interval.seconds",
        kind: ConfigType::Long,
        default: "300",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often the controller moves leadership back to preferred leaders.",
    },
    ConfigDef {
        name: "socket.request.max.bytes",
        kind: ConfigType::Int,
        default: "104857600",
        broker_synonym: None,
        validator: Validator::AtLeast(1024),
        documentation: "Largest request frame; a larger one closes the connection.",
    },
    ConfigDef {
        name: "max.connections",
        kind: ConfigType::Int,
        default: "10000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Most client connections served at once; more wait to be accepted.",
    },
    ConfigDef {
        name: "queued.max.requests",
        kind: ConfigType::Int,
        default: "500",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Most requests one connection may have in flight before the broker stops reading from it.",
    },
    ConfigDef {
        name: "log.max.open.files",
        kind: ConfigType::Int,
        default: "8192",
        broker_synonym: None,
        validator: Validator::AtLeast(16),
        documentation: "Most segment and index files held open at once (Strom-specific): three quarters for the file cache, an eighth for fetch responses being sent, an eighth for fsyncs in flight.",
    },
    ConfigDef {
        name: "replica.high.watermark.checkpoint.interval.ms",
        kind: ConfigType::Long,
        default: "5000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often the high watermarks of replicated partitions are written to the data directory's replication-offset-checkpoint, where they start after a restart.",
    },
    ConfigDef {
        name: "log.retention.check.interval.ms",
        kind: ConfigType::Long,
        default: "300000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often partitions are checked for segments that retention may delete.",
    },
    ConfigDef {
        name: "log.cleaner.enable",
        kind: ConfigType::Boolean,
        default: "true",
        broker_synonym: None,
        validator: Validator::Any,
        documentation: "Run the log cleaner for topics with cleanup.policy=compact.",
    },
    ConfigDef {
        name: "log.cleaner.backoff.ms",
        kind: ConfigType::Long,
        default: "15000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How long the cleaner waits between passes over the compacted partitions.",
    },
    ConfigDef {
        name: "log.cleaner.io.max.bytes.per.second",
        kind: ConfigType::Long,
        default: "52428800",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Bytes per second the cleaner may read plus write, so producers keep their disk bandwidth (Kafka's default is unlimited; Strom's is 50 MiB/s).",
    },
    ConfigDef {
        name: "offsets.topic.num.partitions",
        kind: ConfigType::Int,
        default: "50",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Partitions of __consumer_offsets, where groups keep their state.",
    },
    ConfigDef {
        name: "transaction.state.log.num.partitions",
        kind: ConfigType::Int,
        default: "50",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Partitions of __transaction_state, where the transaction coordinator keeps its state.",
    },
    ConfigDef {
        name: "transactional.id.expiration.ms",
        kind: ConfigType::Int,
        default: "604800000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How long the transaction coordinator keeps a transactional id its producer has not used, when no transaction is in progress.",
    },
    ConfigDef {
        name: "transaction.remove.expired.transaction.cleanup.interval.ms",
        kind: ConfigType::Int,
        default: "3600000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often transactional ids past transactional.id.expiration.ms are removed.",
    },
    ConfigDef {
        name: "producer.id.expiration.ms",
        kind: ConfigType::Int,
        default: "86400000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How long a partition remembers an idempotent producer (its epoch and last sequences) after its latest batch, unless it has a transaction open there.",
    },
    ConfigDef {
        name: "producer.id.expiration.check.interval.ms",
        kind: ConfigType::Int,
        default: "600000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often partitions forget producers idle longer than producer.id.expiration.ms.",
    },
    ConfigDef {
        name: "transaction.max.timeout.ms",
        kind: ConfigType::Int,
        default: "900000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "The longest transaction.timeout.ms a producer may ask for.",
    },
    ConfigDef {
        name: "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        kind: ConfigType::Int,
        default: "1000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often open transactions are checked against their timeout and aborted when past it (Kafka's default is 10000).",
    },
    ConfigDef {
        name: "offsets.retention.minutes",
        kind: ConfigType::Int,
        default: "10080",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How long the committed offsets of a group without members are kept.",
    },
    ConfigDef {
        name: "offsets.retention.check.interval.ms",
        kind: ConfigType::Long,
        default: "600000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often committed offsets are checked for expiry.",
    },
    ConfigDef {
        name: "group.initial.rebalance.delay.ms",
        kind: ConfigType::Int,
        default: "3000",
        broker_synonym: None,
        validator: Validator::AtLeast(0),
        documentation: "How long an empty group waits for more members before its first rebalance.",
    },
    ConfigDef {
        name: "group.min.session.timeout.ms",
        kind: ConfigType::Int,
        default: "6000",
        broker_synonym: None,
        validator: Validator::AtLeast(0),
        documentation: "Shortest session timeout a group member may ask for.",
    },
    ConfigDef {
        name: "group.max.session.timeout.ms",
        kind: ConfigType::Int,
        default: "1800000",
        broker_synonym: None,
        validator: Validator::AtLeast(0),
        documentation: "Longest session timeout a group member may ask for.",
    },
    ConfigDef {
        name: "group.consumer.session.timeout.ms",
        kind: ConfigType::Int,
        default: "45000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Session timeout of members of consumer-protocol (KIP-848) groups.",
    },
    ConfigDef {
        name: "group.consumer.heartbeat.interval.ms",
        kind: ConfigType::Int,
        default: "5000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "How often members of consumer-protocol (KIP-848) groups heartbeat.",
    },
    ConfigDef {
        name: "group.max.size",
        kind: ConfigType::Int,
        default: "2147483647",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Most members one group may have.",
    },
    ConfigDef {
        name: "max.request.partition.size.limit",
        kind: ConfigType::Int,
        default: "2000",
        broker_synonym: None,
        validator: Validator::AtLeast(1),
        documentation: "Most partitions one DescribeTopicPartitions response describes; the client pages through the rest.",
    },
    ConfigDef {
        name: "max.incremental.fetch.session.cache.slots",
        kind: ConfigType::Int,
        default: "1000",
        broker_synonym: None,
        validator: Validator::AtLeast(0),
        documentation: "Most incremental fetch sessions kept.",
    },
];

/// Broker identity and placement, read-only, reported by DescribeConfigs.
pub const IDENTITY_CONFIGS: &[ConfigDef] = &[
    identity("node.id", ConfigType::Int, "This broker's id."),
    identity(
        "broker.id",
        ConfigType::Int,
        "This broker's id (the pre-KRaft name).",
    ),
    identity(
        "log.dirs",
        ConfigType::String,
        "Where partitions and metadata are stored.",
    ),
    identity("listeners", ConfigType::List, "Where the broker listens."),
    identity(
        "advertised.listeners",
        ConfigType::List,
        "Where clients are told to connect.",
    ),
    identity(
        "process.roles",
        ConfigType::List,
        "broker, or broker,controller for a controller quorum voter.",
    ),
    identity(
        "controller.quorum.voters",
        ConfigType::List,
        "The controller quorum, as id@host:port (empty: this node alone).",
    ),
];

const fn identity(name: &'static str, kind: ConfigType, documentation: &'static str) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default: "",
        broker_synonym: None,
        validator: Validator::Any,
        documentation,
    }
}

/// Every other broker config Kafka 4.x knows, with its type: accepted
/// (type-checked), persisted and reported, so that tools and tests written
/// for Kafka can set them, but without effect in Strom (threads, quotas,
/// security, replication, tiered storage, KRaft tuning and the like, and
/// the hour and minute forms of the `*.ms` configs Strom reads, which Strom
/// does not yet take as synonyms). Names only; the list was drawn up from
/// Kafka's broker config definitions, without the ZooKeeper-era names that
/// Kafka 4.0 removed.
const KAFKA_BROKER_CONFIGS: &[(&str, ConfigType)] = &[
    ("alter.config.policy.class.name", ConfigType::Class),
    (
        "alter.log.dirs.replication.quota.window.num",
        ConfigType::Int,
    ),
    (
        "alter.log.dirs.replication.quota.window.size.seconds",
        ConfigType::Int,
    ),
    ("authorizer.class.name", ConfigType::String),
    ("background.threads", ConfigType::Int),
    ("broker.rack", ConfigType::String),
    ("client.quota.callback.class", ConfigType::Class),
    ("compression.gzip.level", ConfigType::Int),
    ("compression.lz4.level", ConfigType::Int),
    ("compression.zstd.level", ConfigType::Int),
    ("connection.failed.authentication.delay.ms", ConfigType::Int),
    ("connection_creation_rate", ConfigType::Int),
    ("connections.max.idle.ms", ConfigType::Long),
    ("connections.max.reauth.ms", ConfigType::Long),
    ("consumer_byte_rate", ConfigType::Long),
    ("controlled.shutdown.enable", ConfigType::Boolean),
    ("controlled.shutdown.max.retries", ConfigType::Int),
    ("controlled.shutdown.retry.backoff.ms", ConfigType::Long),
    ("controller.listener.names", ConfigType::String),
    ("controller.quorum.append.linger.ms", ConfigType::Int),
    ("controller.quorum.bootstrap.servers", ConfigType::List),
    ("controller.quorum.election.backoff.max.ms", ConfigType::Int),
    ("controller.quorum.fetch.timeout.ms", ConfigType::Int),
    ("controller.quota.window.num", ConfigType::Int),
    ("controller.quota.window.size.seconds", ConfigType::Int),
    ("controller.socket.timeout.ms", ConfigType::Int),
    ("controller_mutation_rate", ConfigType::Double),
    ("create.topic.policy.class.name", ConfigType::Class),
    (
        "delegation.token.expiry.check.interval.ms",
        ConfigType::Long,
    ),
    ("delegation.token.expiry.time.ms", ConfigType::Long),
    ("delegation.token.max.lifetime.ms", ConfigType::Long),
    ("delegation.token.secret.key", ConfigType::Password),
    (
        "delete.records.purgatory.purge.interval.requests",
        ConfigType::Int,
    ),
    ("delete.topic.enable", ConfigType::Boolean),
    ("early.start.listeners", ConfigType::String),
    ("eligible.leader.replicas.enable", ConfigType::Boolean),
    ("fetch.max.bytes", ConfigType::Int),
    ("fetch.purgatory.purge.interval.requests", ConfigType::Int),
    ("follower.replication.throttled.rate", ConfigType::Long),
    ("follower.replication.throttled.replicas", ConfigType::List),
    ("group.consumer.assignors", ConfigType::List),
    ("group.consumer.max.heartbeat.interval.ms", ConfigType::Int),
    ("group.consumer.max.session.timeout.ms", ConfigType::Int),
    ("group.consumer.max.size", ConfigType::Int),
    ("group.consumer.min.heartbeat.interval.ms", ConfigType::Int),
    ("group.consumer.min.session.timeout.ms", ConfigType::Int),
    ("group.coordinator.append.linger.ms", ConfigType::Int),
    ("group.coordinator.rebalance.protocols", ConfigType::List),
    ("group.coordinator.threads", ConfigType::Int),
    ("group.share.delivery.count.limit", ConfigType::Int),
    ("group.share.heartbeat.interval.ms", ConfigType::Int),
    ("group.share.max.groups", ConfigType::Short),
    ("group.share.max.heartbeat.interval.ms", ConfigType::Int),
    ("group.share.max.record.lock.duration.ms", ConfigType::Int),
    ("group.share.max.session.timeout.ms", ConfigType::Int),
    ("group.share.max.size", ConfigType::Int),
    ("group.share.min.heartbeat.interval.ms", ConfigType::Int),
    ("group.share.min.record.lock.duration.ms", ConfigType::Int),
    ("group.share.min.session.timeout.ms", ConfigType::Int),
    ("group.share.partition.max.record.locks", ConfigType::Int),
    ("group.share.record.lock.duration.ms", ConfigType::Int),
    ("group.share.session.timeout.ms", ConfigType::Int),
    ("initial.broker.registration.timeout.ms", ConfigType::Int),
    ("inter.broker.listener.name", ConfigType::String),
    ("kafka.metrics.polling.interval.secs", ConfigType::Int),
    ("kafka.metrics.reporters", ConfigType::List),
    ("leader.imbalance.per.broker.percentage", ConfigType::Int),
    ("leader.replication.throttled.rate", ConfigType::Long),
    ("leader.replication.throttled.replicas", ConfigType::List),
    ("listener.security.protocol.map", ConfigType::String),
    ("local.retention.bytes", ConfigType::Long),
    ("local.retention.ms", ConfigType::Long),
    ("log.cleaner.dedupe.buffer.size", ConfigType::Long),
    ("log.cleaner.io.buffer.load.factor", ConfigType::Double),
    ("log.cleaner.io.buffer.size", ConfigType::Int),
    ("log.cleaner.threads", ConfigType::Int),
    ("log.dir", ConfigType::String),
    ("log.dir.failure.timeout.ms", ConfigType::Long),
    ("log.flush.offset.checkpoint.interval.ms", ConfigType::Int),
    ("log.flush.scheduler.interval.ms", ConfigType::Long),
    (
        "log.flush.start.offset.checkpoint.interval.ms",
        ConfigType::Int,
    ),
    ("log.local.retention.bytes", ConfigType::Long),
    ("log.local.retention.ms", ConfigType::Long),
    ("log.message.timestamp.after.max.ms", ConfigType::Long),
    ("log.message.timestamp.before.max.ms", ConfigType::Long),
    ("log.retention.hours", ConfigType::Int),
    ("log.retention.minutes", ConfigType::Int),
    ("log.roll.hours", ConfigType::Int),
    ("log.roll.jitter.hours", ConfigType::Int),
    ("max.connection.creation.rate", ConfigType::Int),
    ("max.connections.per.ip", ConfigType::Int),
    ("max.connections.per.ip.overrides", ConfigType::String),
    ("message.downconversion.enable", ConfigType::Boolean),
    ("message.format.version", ConfigType::String),
    ("message.timestamp.after.max.ms", ConfigType::Long),
    ("message.timestamp.before.max.ms", ConfigType::Long),
    ("message.timestamp.difference.max.ms", ConfigType::Long),
    ("metadata.log.dir", ConfigType::String),
    (
        "metadata.log.max.record.bytes.between.snapshots",
        ConfigType::Long,
    ),
    ("metadata.log.max.snapshot.interval.ms", ConfigType::Long),
    ("metadata.log.segment.bytes", ConfigType::Int),
    ("metadata.log.segment.ms", ConfigType::Long),
    ("metadata.max.idle.interval.ms", ConfigType::Int),
    ("metadata.max.retention.bytes", ConfigType::Long),
    ("metadata.max.retention.ms", ConfigType::Long),
    ("metric.reporters", ConfigType::List),
    ("metrics.num.samples", ConfigType::Int),
    ("metrics.recording.level", ConfigType::String),
    ("metrics.sample.window.ms", ConfigType::Long),
    ("num.io.threads", ConfigType::Int),
    ("num.network.threads", ConfigType::Int),
    ("num.recovery.threads.per.data.dir", ConfigType::Int),
    ("num.replica.alter.log.dirs.threads", ConfigType::Int),
    ("num.replica.fetchers", ConfigType::Int),
    ("offset.metadata.max.bytes", ConfigType::Int),
    ("offsets.commit.timeout.ms", ConfigType::Int),
    ("offsets.load.buffer.size", ConfigType::Int),
    ("offsets.topic.compression.codec", ConfigType::Int),
    ("offsets.topic.replication.factor", ConfigType::Short),
    ("offsets.topic.segment.bytes", ConfigType::Int),
    ("password.encoder.cipher.algorithm", ConfigType::String),
    ("password.encoder.iterations", ConfigType::Int),
    ("password.encoder.key.length", ConfigType::Int),
    ("password.encoder.keyfactory.algorithm", ConfigType::String),
    ("password.encoder.old.secret", ConfigType::Password),
    ("password.encoder.secret", ConfigType::Password),
    ("principal.builder.class", ConfigType::Class),
    (
        "producer.purgatory.purge.interval.requests",
        ConfigType::Int,
    ),
    ("producer_byte_rate", ConfigType::Long),
    ("queued.max.request.bytes", ConfigType::Long),
    ("quorum.request.timeout.ms", ConfigType::Int),
    ("quorum.retry.backoff.ms", ConfigType::Int),
    ("quota.window.num", ConfigType::Int),
    ("quota.window.size.seconds", ConfigType::Int),
    ("remote.fetch.max.wait.ms", ConfigType::Int),
    ("remote.list.offsets.request.timeout.ms", ConfigType::Long),
    ("remote.log.copy.disable", ConfigType::Boolean),
    ("remote.log.delete.on.disable", ConfigType::Boolean),
    (
        "remote.log.index.file.cache.total.size.bytes",
        ConfigType::Long,
    ),
    (
        "remote.log.manager.copier.thread.pool.size",
        ConfigType::Int,
    ),
    (
        "remote.log.manager.copy.max.bytes.per.second",
        ConfigType::Long,
    ),
    ("remote.log.manager.copy.quota.window.num", ConfigType::Int),
    (
        "remote.log.manager.copy.quota.window.size.seconds",
        ConfigType::Int,
    ),
    (
        "remote.log.manager.expiration.thread.pool.size",
        ConfigType::Int,
    ),
    (
        "remote.log.manager.fetch.max.bytes.per.second",
        ConfigType::Long,
    ),
    ("remote.log.manager.fetch.quota.window.num", ConfigType::Int),
    (
        "remote.log.manager.fetch.quota.window.size.seconds",
        ConfigType::Int,
    ),
    ("remote.log.manager.task.interval.ms", ConfigType::Long),
    ("remote.log.manager.thread.pool.size", ConfigType::Int),
    (
        "remote.log.metadata.custom.metadata.max.bytes",
        ConfigType::Int,
    ),
    ("remote.log.metadata.manager.class.name", ConfigType::String),
    ("remote.log.metadata.manager.class.path", ConfigType::String),
    (
        "remote.log.metadata.manager.impl.prefix",
        ConfigType::String,
    ),
    (
        "remote.log.metadata.manager.listener.name",
        ConfigType::String,
    ),
    ("remote.log.reader.max.pending.tasks", ConfigType::Int),
    ("remote.log.reader.threads", ConfigType::Int),
    ("remote.log.storage.manager.class.name", ConfigType::String),
    ("remote.log.storage.manager.class.path", ConfigType::String),
    ("remote.log.storage.manager.impl.prefix", ConfigType::String),
    ("remote.log.storage.system.enable", ConfigType::Boolean),
    ("remote.storage.enable", ConfigType::Boolean),
    (
        "replica.alter.log.dirs.io.max.bytes.per.second",
        ConfigType::Long,
    ),
    ("replica.fetch.backoff.ms", ConfigType::Int),
    ("replica.fetch.max.bytes", ConfigType::Int),
    ("replica.fetch.min.bytes", ConfigType::Int),
    ("replica.fetch.response.max.bytes", ConfigType::Int),
    ("replica.fetch.wait.max.ms", ConfigType::Int),
    ("replica.selector.class", ConfigType::String),
    ("replica.socket.receive.buffer.bytes", ConfigType::Int),
    ("replica.socket.timeout.ms", ConfigType::Int),
    ("replication.quota.window.num", ConfigType::Int),
    ("replication.quota.window.size.seconds", ConfigType::Int),
    ("request.timeout.ms", ConfigType::Int),
    ("request_percentage", ConfigType::Double),
    ("sasl.client.callback.handler.class", ConfigType::Class),
    ("sasl.enabled.mechanisms", ConfigType::List),
    ("sasl.jaas.config", ConfigType::Password),
    ("sasl.kerberos.kinit.cmd", ConfigType::String),
    ("sasl.kerberos.min.time.before.relogin", ConfigType::Long),
    ("sasl.kerberos.principal.to.local.rules", ConfigType::List),
    ("sasl.kerberos.service.name", ConfigType::String),
    ("sasl.kerberos.ticket.renew.jitter", ConfigType::Double),
    (
        "sasl.kerberos.ticket.renew.window.factor",
        ConfigType::Double,
    ),
    ("sasl.login.callback.handler.class", ConfigType::Class),
    ("sasl.login.class", ConfigType::Class),
    ("sasl.login.connect.timeout.ms", ConfigType::Int),
    ("sasl.login.read.timeout.ms", ConfigType::Int),
    ("sasl.login.refresh.buffer.seconds", ConfigType::Short),
    ("sasl.login.refresh.min.period.seconds", ConfigType::Short),
    ("sasl.login.refresh.window.factor", ConfigType::Double),
    ("sasl.login.refresh.window.jitter", ConfigType::Double),
    ("sasl.login.retry.backoff.max.ms", ConfigType::Long),
    ("sasl.login.retry.backoff.ms", ConfigType::Long),
    ("sasl.mechanism.controller.protocol", ConfigType::String),
    ("sasl.mechanism.inter.broker.protocol", ConfigType::String),
    ("sasl.oauthbearer.clock.skew.seconds", ConfigType::Int),
    ("sasl.oauthbearer.expected.audience", ConfigType::List),
    ("sasl.oauthbearer.expected.issuer", ConfigType::String),
    (
        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
        ConfigType::Long,
    ),
    (
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms",
        ConfigType::Long,
    ),
    (
        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
        ConfigType::Long,
    ),
    ("sasl.oauthbearer.jwks.endpoint.url", ConfigType::String),
    ("sasl.oauthbearer.scope.claim.name", ConfigType::String),
    ("sasl.oauthbearer.sub.claim.name", ConfigType::String),
    ("sasl.oauthbearer.token.endpoint.url", ConfigType::String),
    ("sasl.server.callback.handler.class", ConfigType::Class),
    ("sasl.server.max.receive.size", ConfigType::Int),
    ("security.inter.broker.protocol", ConfigType::String),
    ("security.providers", ConfigType::String),
    ("share.coordinator.append.linger.ms", ConfigType::Int),
    ("share.coordinator.load.buffer.size", ConfigType::Int),
    (
        "share.coordinator.snapshot.update.records.per.snapshot",
        ConfigType::Int,
    ),
    (
        "share.coordinator.state.topic.compression.codec",
        ConfigType::Int,
    ),
    ("share.coordinator.state.topic.min.isr", ConfigType::Short),
    (
        "share.coordinator.state.topic.num.partitions",
        ConfigType::Int,
    ),
    (
        "share.coordinator.state.topic.replication.factor",
        ConfigType::Short,
    ),
    (
        "share.coordinator.state.topic.segment.bytes",
        ConfigType::Int,
    ),
    ("share.coordinator.threads", ConfigType::Int),
    ("share.coordinator.write.timeout.ms", ConfigType::Int),
    (
        "share.fetch.purgatory.purge.interval.requests",
        ConfigType::Int,
    ),
    ("socket.connection.setup.timeout.max.ms", ConfigType::Long),
    ("socket.connection.setup.timeout.ms", ConfigType::Long),
    ("socket.listen.backlog.size", ConfigType::Int),
    ("socket.receive.buffer.bytes", ConfigType::Int),
    ("socket.send.buffer.bytes", ConfigType::Int),
    ("ssl.allow.dn.changes", ConfigType::Boolean),
    ("ssl.allow.san.changes", ConfigType::Boolean),
    ("ssl.cipher.suites", ConfigType::List),
    ("ssl.client.auth", ConfigType::String),
    ("ssl.enabled.protocols", ConfigType::List),
    ("ssl.endpoint.identification.algorithm", ConfigType::String),
    ("ssl.engine.factory.class", ConfigType::Class),
    ("ssl.key.password", ConfigType::Password),
    ("ssl.keymanager.algorithm", ConfigType::String),
    ("ssl.keystore.certificate.chain", ConfigType::Password),
    ("ssl.keystore.key", ConfigType::Password),
    ("ssl.keystore.location", ConfigType::String),
    ("ssl.keystore.password", ConfigType::Password),
    ("ssl.keystore.type", ConfigType::String),
    ("ssl.principal.mapping.rules", ConfigType::String),
    ("ssl.protocol", ConfigType::String),
    ("ssl.provider", ConfigType::String),
    ("ssl.secure.random.implementation", ConfigType::String),
    ("ssl.trustmanager.algorithm", ConfigType::String),
    ("ssl.truststore.certificates", ConfigType::Password),
    ("ssl.truststore.location", ConfigType::String),
    ("ssl.truststore.password", ConfigType::Password),
    ("ssl.truststore.type", ConfigType::String),
    ("telemetry.max.bytes", ConfigType::Int),
    (
        "transaction.partition.verification.enable",
        ConfigType::Boolean,
    ),
    ("transaction.state.log.load.buffer.size", ConfigType::Int),
    ("transaction.state.log.min.isr", ConfigType::Int),
    (
        "transaction.state.log.replication.factor",
        ConfigType::Short,
    ),
    ("transaction.state.log.segment.bytes", ConfigType::Int),
];

const NO_EFFECT: &str =
    "A Kafka broker config: accepted, type-checked and persisted; it has no effect in Strom.";

/// [`KAFKA_BROKER_CONFIGS`] as definitions (no default: unset, they are not reported).
fn kafka_only_configs() -> &'static [ConfigDef] {
    static DEFS: std::sync::OnceLock<Vec<ConfigDef>> = std::sync::OnceLock::new();
    DEFS.get_or_init(|| {
        KAFKA_BROKER_CONFIGS
            .iter()
            .map(|&(name, kind)| ConfigDef {
                name,
                kind,
                default: "",
                broker_synonym: None,
                validator: Validator::Any,
                documentation: NO_EFFECT,
            })
            .collect()
    })
}

/// Is this one of the Kafka broker configs Strom accepts without using?
pub fn is_kafka_only_broker_config(name: &str) -> bool {
    kafka_only_configs().iter().any(|def| def.name == name)
}

/// The Kafka broker configs Strom accepts without using.
pub fn kafka_only_broker_configs() -> impl Iterator<Item = &'static ConfigDef> {
    kafka_only_configs().iter()
}

pub fn topic_config(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// A broker config by its name, including the synonyms of topic configs
/// (whose definition is the topic config's).
pub fn broker_config(name: &str) -> Option<&'static ConfigDef> {
    BROKER_CONFIGS
        .iter()
        .find(|def| def.name == name)
        .or_else(|| {
            TOPIC_CONFIGS
                .iter()
                .find(|def| def.broker_synonym == Some(name))
        })
        .or_else(|| kafka_only_configs().iter().find(|def| def.name == name))
}

/// Checks `value` against the definition; the error says what is wrong.
pub fn validate(def: &ConfigDef, value: &str) -> Result<(), String> {
    let name = def.name;
    match def.kind {
        ConfigType::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(format!("{name} must be true or false, not '{value}'"));
            }
        }
        ConfigType::Int => {
            let parsed: i32 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name} must be a 32-bit integer, not '{value}'"))?;
            check_lower_bound(def, parsed as i64, value)?;
        }
        ConfigType::Short => {
            let parsed: i16 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name} must be a 16-bit integer, not '{value}'"))?;
            check_lower_bound(def, parsed as i64, value)?;
        }
        ConfigType::Long => {
            let parsed: i64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name} must be a 64-bit integer, not '{value}'"))?;
            check_lower_bound(def, parsed, value)?;
        }
        ConfigType::Double => {
            let parsed: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{name} must be a number, not '{value}'"))?;
            if matches!(def.validator, Validator::Fraction) && !(0.0..=1.0).contains(&parsed) {
                return Err(format!("{name} must be between 0 and 1, not '{value}'"));
            }
        }
        ConfigType::String | ConfigType::List | ConfigType::Class | ConfigType::Password => {}
    }
    match def.validator {
        Validator::OneOf(allowed) if !allowed.contains(&value) => Err(format!(
            "{name} must be one of {}, not '{value}'",
            allowed.join(", ")
        )),
        Validator::ListOf(allowed) => {
            let items: Vec<&str> = value.split(',').map(str::trim).collect();
            if items.is_empty() || items.iter().any(|item| !allowed.contains(item)) {
                return Err(format!(
                    "{name} must be a comma-separated list of {}, not '{value}'",
                    allowed.join(", ")
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_lower_bound(def: &ConfigDef, parsed: i64, value: &str) -> Result<(), String> {
    if let Validator::AtLeast(minimum) = def.validator {
        if parsed < minimum {
            return Err(format!(
                "{} must be at least {minimum}, not '{value}'",
                def.name
            ));
        }
    }
    Ok(())
}

/// Validates a set of topic config overrides as CreateTopics and
/// AlterConfigs receive them.
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), String> {
    for (name, value) in configs {
        let def = topic_config(name).ok_or_else(|| format!("unknown topic config '{name}'"))?;
        validate(def, value)?;
    }
    Ok(())
}

/// The effective value of one config and where it came from.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    pub def: &'static ConfigDef,
    pub value: String,
    pub source: ConfigSource,
}

/// Broker configs that were set, in layers: set at startup (the config
/// file and `--set`), and changed at run time for this broker or as the
/// cluster-wide default (AlterConfigs). A later layer wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokerOverrides {
    pub static_configs: BTreeMap<String, String>,
    pub dynamic_default: BTreeMap<String, String>,
    pub dynamic_node: BTreeMap<String, String>,
}

/// Whether a broker config may change while the broker runs: the broker
/// defaults of topic configs may, as in Kafka, and so may the Kafka configs
/// Strom only keeps (they change nothing).
pub fn is_dynamic_broker_config(name: &str) -> bool {
    TOPIC_CONFIGS
        .iter()
        .any(|def| def.broker_synonym == Some(name))
        || is_kafka_only_broker_config(name)
}

impl BrokerOverrides {
    pub fn from_static(static_configs: BTreeMap<String, String>) -> BrokerOverrides {
        BrokerOverrides {
            static_configs,
            ..BrokerOverrides::default()
        }
    }

    /// The explicitly set value of a broker config and its layer, if any.
    pub fn explicit(&self, name: &str) -> Option<(&String, ConfigSource)> {
        self.dynamic_node
            .get(name)
            .map(|value| (value, ConfigSource::DynamicBroker))
            .or_else(|| {
                self.dynamic_default
                    .get(name)
                    .map(|value| (value, ConfigSource::DynamicDefaultBroker))
            })
            .or_else(|| {
                self.static_configs
                    .get(name)
                    .map(|value| (value, ConfigSource::StaticBroker))
            })
    }

    /// Every layer's value of a broker config, the winning one first.
    pub fn layers(&self, name: &str) -> Vec<(String, ConfigSource)> {
        [
            (self.dynamic_node.get(name), ConfigSource::DynamicBroker),
            (
                self.dynamic_default.get(name),
                ConfigSource::DynamicDefaultBroker,
            ),
            (self.static_configs.get(name), ConfigSource::StaticBroker),
        ]
        .into_iter()
        .filter_map(|(value, source)| value.map(|value| (value.clone(), source)))
        .collect()
    }

    /// Checks every name and value; the error names the first bad one.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in self
            .static_configs
            .iter()
            .chain(&self.dynamic_default)
            .chain(&self.dynamic_node)
        {
            let def = broker_config(name).ok_or_else(|| {
                format!("unknown broker config '{name}' (Strom takes Kafka's broker config names)")
            })?;
            validate(def, value).map_err(|e| e.replacen(def.name, name, 1))?;
        }
        Ok(())
    }

    /// The value of a broker config: explicit, or its default.
    pub fn get(&self, name: &str) -> ResolvedConfig {
        let def = broker_config(name).expect("a known broker config");
        match self.explicit(name) {
            Some((value, source)) => ResolvedConfig {
                def,
                value: value.clone(),
                source,
            },
            None => ResolvedConfig {
                def,
                value: def.default.to_string(),
                source: ConfigSource::Default,
            },
        }
    }

    pub fn get_i64(&self, name: &str) -> i64 {
        self.get(name).value.trim().parse().unwrap_or_else(|_| {
            broker_config(name)
                .and_then(|def| def.default.parse().ok())
                .unwrap_or(0)
        })
    }

    pub fn get_bool(&self, name: &str) -> bool {
        self.get(name).value.eq_ignore_ascii_case("true")
    }

    /// The effective value of a topic config for a topic with `overrides`.
    pub fn resolve_topic(
        &self,
        def: &'static ConfigDef,
        overrides: &BTreeMap<String, String>,
    ) -> ResolvedConfig {
        if let Some(value) = overrides.get(def.name) {
            return ResolvedConfig {
                def,
                value: value.clone(),
                source: ConfigSource::DynamicTopic,
            };
        }
        if let Some((value, source)) = def
            .broker_synonym
            .and_then(|synonym| self.explicit(synonym))
        {
            return ResolvedConfig {
                def,
                value: value.clone(),
                source,
            };
        }
        ResolvedConfig {
            def,
            value: def.default.to_string(),
            source: ConfigSource::Default,
        }
    }

    /// Every topic config's effective value for a topic.
    pub fn resolve_all_topic(&self, overrides: &BTreeMap<String, String>) -> Vec<ResolvedConfig> {
        TOPIC_CONFIGS
            .iter()
            .map(|def| self.resolve_topic(def, overrides))
            .collect()
    }

    /// The typed settings the produce and fetch paths use.
    pub fn topic_settings(&self, overrides: &BTreeMap<String, String>) -> TopicSettings {
        let value = |name: &str| {
            self.resolve_topic(topic_config(name).expect("known topic config"), overrides)
        };
        let long = |name: &str| {
            let resolved = value(name);
            resolved
                .value
                .trim()
                .parse::<i64>()
                .unwrap_or_else(|_| resolved.def.default.parse().unwrap_or(0))
        };
        let explicit = |name: &str| value(name).source != ConfigSource::Default;
        TopicSettings {
            log: LogConfig {
                segment_bytes: long("segment.bytes").max(14) as u64,
                segment_ms: long("segment.ms").max(1),
                index_interval_bytes: long("index.interval.bytes").max(0) as u64,
            },
            max_message_bytes: long("max.message.bytes").max(0) as usize,
            compression: Compression::from_config(&value("compression.type").value),
            log_append_time: value("message.timestamp.type").value == "LogAppendTime",
            flush_messages: explicit("flush.messages").then(|| long("flush.messages").max(1)),
            flush_ms: explicit("flush.ms").then(|| long("flush.ms").max(0)),
            min_insync_replicas: long("min.insync.replicas").max(1) as usize,
            delete_retention: value("cleanup.policy")
                .value
                .split(',')
                .any(|policy| policy.trim() == "delete"),
            retention_ms: Some(long("retention.ms")).filter(|ms| *ms >= 0),
            retention_bytes: u64::try_from(long("retention.bytes")).ok(),
            compact: value("cleanup.policy")
                .value
                .split(',')
                .any(|policy| policy.trim() == "compact"),
            delete_retention_ms: long("delete.retention.ms").max(0),
            min_compaction_lag_ms: long("min.compaction.lag.ms").max(0),
            max_compaction_lag_ms: long("max.compaction.lag.ms").max(1),
            min_cleanable_dirty_ratio: value("min.cleanable.dirty.ratio")
                .value
                .trim()
                .parse::<f64>()
                .unwrap_or(0.5)
                .clamp(0.0, 1.0),
        }
    }
}

/// A topic's configs in the form the hot paths use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicSettings {
    pub log: LogConfig,
    pub max_message_bytes: usize,
    /// `compression.type`: the codec batches are stored in, `None` to keep
    /// the producer's.
    pub compression: Option<Compression>,
    pub log_append_time: bool,
    /// Set when the operator relaxed durability by message count.
    pub flush_messages: Option<i64>,
    /// Set when the operator relaxed durability by time.
    pub flush_ms: Option<i64>,
    pub min_insync_replicas: usize,
    /// `cleanup.policy` includes `delete`: retention applies.
    pub delete_retention: bool,
    /// `retention.ms`, `None` when unlimited.
    pub retention_ms: Option<i64>,
    /// `retention.bytes`, `None` when unlimited.
    pub retention_bytes: Option<u64>,
    /// `cleanup.policy` includes `compact`: the cleaner applies.
    pub compact: bool,
    pub delete_retention_ms: i64,
    pub min_compaction_lag_ms: i64,
    pub max_compaction_lag_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
}

impl TopicSettings {
    /// Whether acks=all waits for fsync (the default) or only for the write.
    pub fn strict_durability(&self) -> bool {
        self.flush_messages.is_none() && self.flush_ms.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_only_broker_configs_are_distinct_from_those_strom_uses() {
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in KAFKA_BROKER_CONFIGS {
            assert!(seen.insert(*name), "{name} is listed twice");
            let own = BROKER_CONFIGS
                .iter()
                .chain(IDENTITY_CONFIGS)
                .any(|def| def.name == *name)
                || TOPIC_CONFIGS
                    .iter()
                    .any(|def| def.broker_synonym == Some(name));
            assert!(
                !own,
                "{name} is one Strom uses; it belongs in its own table"
            );
        }
        // Found, type-checked and changeable at run time.
        let relogin = broker_config("sasl.kerberos.min.time.before.relogin").unwrap();
        assert_eq!(relogin.kind, ConfigType::Long);
        assert!(validate(relogin, "60000").is_ok());
        assert!(validate(relogin, "soon").is_err());
        assert!(is_dynamic_broker_config(
            "sasl.kerberos.min.time.before.relogin"
        ));
        assert!(broker_config("no.such.broker.config").is_none());
        assert!(!is_dynamic_broker_config("num.partitions"));
    }

    #[test]
    fn values_are_checked_against_type_and_range() {
        let retention = topic_config("retention.ms").unwrap();
        assert!(validate(retention, "1000").is_ok());
        assert!(validate(retention, "-1").is_ok());
        assert!(validate(retention, "-2").is_err());
        assert!(validate(retention, "soon").is_err());
        let policy = topic_config("cleanup.policy").unwrap();
        assert!(validate(policy, "compact,delete").is_ok());
        assert!(validate(policy, "shred").is_err());
        let ratio = topic_config("min.cleanable.dirty.ratio").unwrap();
        assert!(validate(ratio, "1.5").is_err());
    }

    #[test]
    fn topic_override_beats_broker_synonym_beats_default() {
        let mut broker = BrokerOverrides::from_static(BTreeMap::from([(
            "log.retention.ms".to_string(),
            "5000".to_string(),
        )]));
        let def = topic_config("retention.ms").unwrap();
        let none = BTreeMap::new();
        assert_eq!(broker.resolve_topic(def, &none).value, "5000");
        assert_eq!(
            broker.resolve_topic(def, &none).source,
            ConfigSource::StaticBroker
        );
        let topic = BTreeMap::from([("retention.ms".to_string(), "7".to_string())]);
        assert_eq!(broker.resolve_topic(def, &topic).value, "7");
        let segment = topic_config("segment.bytes").unwrap();
        assert_eq!(
            broker.resolve_topic(segment, &none).source,
            ConfigSource::Default
        );
        // A dynamic default beats the static value; a per-broker value beats both.
        broker
            .dynamic_default
            .insert("log.retention.ms".into(), "6000".into());
        assert_eq!(broker.resolve_topic(def, &none).value, "6000");
        broker
            .dynamic_node
            .insert("log.retention.ms".into(), "8000".into());
        let resolved = broker.resolve_topic(def, &none);
        assert_eq!(
            (resolved.value.as_str(), resolved.source),
            ("8000", ConfigSource::DynamicBroker)
        );
    }

    #[test]
    fn unknown_broker_configs_are_refused() {
        let broker = BrokerOverrides::from_static(BTreeMap::from([(
            "log.retention.mss".into(),
            "1".into(),
        )]));
        assert!(broker
            .validate()
            .unwrap_err()
            .contains("unknown broker config"));
        let broker =
            BrokerOverrides::from_static(BTreeMap::from([("num.partitions".into(), "0".into())]));
        assert!(broker.validate().is_err());
    }

    #[test]
    fn durability_is_strict_unless_flush_settings_are_set() {
        let broker = BrokerOverrides::default();
        assert!(broker.topic_settings(&BTreeMap::new()).strict_durability());
        let relaxed = BTreeMap::from([("flush.ms".to_string(), "100".to_string())]);
        assert!(!broker.topic_settings(&relaxed).strict_durability());
    }
}
