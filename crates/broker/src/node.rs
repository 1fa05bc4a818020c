//! One broker process: startup (recovery), the background tasks, and
//! clean shutdown. The state the handlers work on is [`Broker`].

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strom_controller::{ControllerConfig, MetadataLog, Registration};
use strom_log::{FileCache, Recovery};
use strom_metadata::Endpoint;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::config::{parse_listener, BrokerConfig};
use crate::configs::BrokerOverrides;
use crate::fetch_session::FetchSessionCache;
use crate::flusher::{self, Flusher};
use crate::partition::PartitionRegistry;
use crate::quorum::MetadataQuorum;
use crate::replica_manager::ReplicaManager;
use crate::server;
use crate::topics::Topics;

/// Marker written after a clean shutdown; its absence at startup means the
/// previous process crashed and every active segment is validated in full.
const CLEAN_SHUTDOWN_MARKER: &str = ".strom-clean-shutdown";
const LOCK_FILE: &str = ".strom.lock";
const METADATA_DIR: &str = "__cluster_metadata";
/// The controller quorum's files, inside [`METADATA_DIR`].
const QUORUM_DIR: &str = "quorum";
/// Where the metadata log of single-node Strom goes once it seeded the
/// quorum (kept, not deleted), inside [`METADATA_DIR`].
const PRE_QUORUM_DIR: &str = "pre-quorum";

#[derive(Debug, Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("data directory {} is in use by another strom process; stop it or pick another --data-dir", .0.display())]
    Locked(PathBuf),
    #[error(transparent)]
    Metadata(#[from] strom_controller::MetadataLogError),
    #[error("recovering topic {topic}: {source}")]
    Log {
        topic: String,
        #[source]
        source: strom_log::LogError,
    },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// Most fsyncs running at once (each on a blocking thread).
const MAX_FSYNCS_IN_FLIGHT: usize = 256;

/// A started broker: serving until [`RunningBroker::shutdown`].
pub struct RunningBroker {
    pub broker: Arc<Broker>,
    pub local_addr: SocketAddr,
    pub recovered_after_crash: bool,
    /// The data directory had no cluster metadata before this start.
    pub new_data_dir: bool,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    _lock: File,
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> StartError + '_ {
    move |source| StartError::DataDir {
        path: path.to_path_buf(),
        source,
    }
}

/// Takes an exclusive advisory lock on the data directory.
fn lock_data_dir(data_dir: &Path) -> Result<File, StartError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error(&path))?;
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor we own; no memory is involved.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        return Err(StartError::Locked(data_dir.to_path_buf()));
    }
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), StartError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(io_error(dir))
}

/// Makes everything written to the data directory's file system durable.
fn sync_file_system(dir: &Path) -> Result<(), StartError> {
    let directory = File::open(dir).map_err(io_error(dir))?;
    // SAFETY: syncfs takes an open descriptor, which `directory` holds.
    if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&directory)) } != 0 {
        return Err(io_error(dir)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Raises the descriptor limit to its hard maximum: a broker holds many files.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit write to and read from a local struct.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Recovers the data directory and starts serving.
pub async fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
    config.overrides.validate().map_err(StartError::Config)?;
    let (listen_host, listen_port) =
        parse_listener(&config.listener).map_err(StartError::Config)?;
    let advertised = config
        .advertised_listener
        .as_deref()
        .map(parse_listener)
        .transpose()
        .map_err(StartError::Config)?;
    raise_fd_limit();

    let data_dir = config.data_dir.clone();
    std::fs::create_dir_all(&data_dir).map_err(io_error(&data_dir))?;
    let lock = lock_data_dir(&data_dir)?;
    let marker = data_dir.join(CLEAN_SHUTDOWN_MARKER);
    let clean = marker.exists();
    if clean {
        std::fs::remove_file(&marker).map_err(io_error(&marker))?;
        sync_dir(&data_dir)?;
    }
    let recovery = if clean {
        Recovery::Clean
    } else {
        Recovery::Unclean
    };

    let address = format!("{listen_host}:{listen_port}");
    let listener = TcpListener::bind((listen_host.as_str(), listen_port))
        .await
        .map_err(|source| StartError::Listen {
            address: address.clone(),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Listen {
        address: address.clone(),
        source,
    })?;
    let (advertised_host, advertised_port) = match advertised {
        Some((host, port)) => (host, port),
        None => (listen_host.clone(), local_addr.port()),
    };
    // The metadata: the controller quorum's Raft log in
    // __cluster_metadata/quorum. A data directory written by single-node
    // Strom before the quorum existed has its metadata log beside it: that
    // log's image seeds a quorum of one, once.
    let metadata_dir = data_dir.join(METADATA_DIR);
    let quorum_dir = metadata_dir.join(QUORUM_DIR);
    let quorum_started_before = strom_quorum::log_store::holds_entries(&quorum_dir);
    let legacy = has_legacy_metadata(&metadata_dir);
    let mut legacy_unreadable = false;
    let seed = match legacy.then(|| MetadataLog::open(&metadata_dir)) {
        None => None,
        Some(Ok((_, image))) => Some(image),
        // A start that had committed the seed was moving the old files
        // aside when it stopped: some are gone, so they no longer read as
        // a log; the quorum holds the metadata (checked below).
        Some(Err(error)) if quorum_started_before => {
            tracing::warn!(%error, "the old metadata log was partly moved aside already; finishing that");
            legacy_unreadable = true;
            None
        }
        Some(Err(error)) => return Err(error.into()),
    };
    // Before anything is written in this node's name: in a one-node
    // cluster, a data directory whose partitions are another node's (written
    // before meta.properties named its node) is refused as it is.
    let alone = config.quorum_voters.is_empty();
    if let Some(foreign) = seed
        .iter()
        .filter(|_| alone)
        .flat_map(|image| image.topics.values())
        .find(|topic| {
            topic
                .partitions
                .iter()
                .any(|p| !p.replicas.contains(&config.node_id))
        })
    {
        return Err(StartError::Config(format!(
            "topic '{}' in {} is assigned to other brokers; start this data directory with the node id it was created with",
            foreign.name,
            data_dir.display()
        )));
    }
    let directory_id = directory_id(&data_dir, config.node_id)?;

    // log.max.open.files bounds segment and index descriptors: three
    // quarters for the cache, an eighth for fetch responses being sent and
    // an eighth for fsyncs in flight (each may hold a file the cache let go).
    // Fsyncs in flight also stay well under tokio's 512 blocking threads, so
    // queued partitions wait for a slot, where they take turns, rather than
    // for a thread.
    let open_files = config.overrides.get_i64("log.max.open.files").max(16) as usize;
    let (splice_files, sync_files) = (open_files / 8, (open_files / 8).min(MAX_FSYNCS_IN_FLIGHT));
    let files = FileCache::new(open_files - splice_files - sync_files);

    let (applied_sender, applied) = tokio::sync::mpsc::unbounded_channel();
    let new_data_dir = !legacy && !quorum_dir.exists();
    let quorum = start_quorum(&config, quorum_dir, seed, applied_sender).await?;
    if legacy_unreadable && quorum.image().applied == 0 {
        return Err(StartError::Config(format!(
            "the metadata in {} is neither in the controller quorum nor readable in the old metadata log; restore the directory from a backup",
            metadata_dir.display()
        )));
    }
    // Seeded now or at an earlier start that stopped before this.
    if legacy {
        retire_legacy_metadata(&metadata_dir);
    }
    let quorum = MetadataQuorum::new(
        config.node_id,
        quorum,
        controller_config(&config.overrides),
        std::time::Duration::from_millis(
            config.overrides.get_i64("request.timeout.ms").max(1000) as u64
        ),
    );
    let hw_checkpoint = Arc::new(crate::hw_checkpoint::Checkpoint::open(&data_dir));
    let topics = Topics::new(
        config.node_id,
        config.overrides.clone(),
        quorum.clone(),
        ReplicaManager::new(
            config.node_id,
            data_dir.clone(),
            files.clone(),
            hw_checkpoint.clone(),
        ),
    );
    let partitions = Arc::new(PartitionRegistry::default());
    let registration = Registration {
        node_id: config.node_id,
        incarnation_id: uuid::Uuid::new_v4(),
        endpoints: vec![Endpoint {
            name: "PLAINTEXT".to_string(),
            host: advertised_host.clone(),
            port: advertised_port,
        }],
        rack: None,
        directory_id,
    };
    register(&topics, registration).await;
    topics
        .open_partitions(&partitions, recovery)
        .map_err(|failed| StartError::Log {
            topic: failed.topic,
            source: failed.source,
        })?;
    remove_orphan_partition_dirs(&data_dir, &topics);
    let topics = Arc::new(topics);
    let flusher = Flusher::start(sync_files);
    let replica_context = crate::replica_fetcher::ReplicaContext {
        node_id: config.node_id,
        topics: topics.clone(),
        partitions: partitions.clone(),
        flusher: flusher.clone(),
    };
    let internal_log = crate::internal_topics::InternalLog::new(
        config.node_id,
        config.overrides.clone(),
        topics.clone(),
        partitions.clone(),
        flusher.clone(),
    );
    let groups = Arc::new(crate::groups::Groups::new(
        internal_log.clone(),
        strom_coordinator::GroupConfig {
            min_session_timeout_ms: config.overrides.get_i64("group.min.session.timeout.ms"),
            max_session_timeout_ms: config.overrides.get_i64("group.max.session.timeout.ms"),
            initial_rebalance_delay_ms: config
                .overrides
                .get_i64("group.initial.rebalance.delay.ms"),
            max_size: config.overrides.get_i64("group.max.size").max(1) as usize,
        },
        strom_coordinator::consumer_group::ConsumerGroupConfig {
            session_timeout_ms: config
                .overrides
                .get_i64("group.consumer.session.timeout.ms"),
            heartbeat_interval_ms: config
                .overrides
                .get_i64("group.consumer.heartbeat.interval.ms")
                as i32,
        },
    ));
    let transactions = Arc::new(crate::transactions::Transactions::new(
        internal_log.clone(),
        groups.clone(),
        strom_coordinator::transaction::TxnConfig {
            max_timeout_ms: config.overrides.get_i64("transaction.max.timeout.ms") as i32,
        },
    ));

    let request_memory_bytes = 256 * 1024 * 1024u32;
    let broker = Arc::new(Broker {
        advertised_host,
        advertised_port: advertised_port as i32,
        fetch_sessions: FetchSessionCache::new(
            config
                .overrides
                .get_i64("max.incremental.fetch.session.cache.slots")
                .max(0) as usize,
        ),
        internal_log,
        groups,
        transactions,
        config,
        topics,
        partitions,
        hw_checkpoint,
        flusher,
        replica_fetchers: crate::replica_fetcher::ReplicaFetchers::new(replica_context.clone()),
        leadership_changed: tokio::sync::Notify::new(),
        files,
        splice_files: Arc::new(Semaphore::new(splice_files)),
        request_memory: Arc::new(Semaphore::new(request_memory_bytes as usize)),
        request_memory_bytes,
    });
    let (shutdown, shutdown_receiver) = watch::channel(false);
    tokio::spawn(periodically(
        broker.clone(),
        shutdown_receiver.clone(),
        "log.retention.check.interval.ms",
        enforce_retention,
    ));
    tokio::spawn(periodically(
        broker.clone(),
        shutdown_receiver.clone(),
        "producer.id.expiration.check.interval.ms",
        expire_producer_ids,
    ));
    tokio::spawn(periodically(
        broker.clone(),
        shutdown_receiver.clone(),
        "replica.high.watermark.checkpoint.interval.ms",
        checkpoint_high_watermarks,
    ));
    broker
        .replica_fetchers
        .update(&tokio::runtime::Handle::current());
    spawn_reconciler(broker.clone(), applied);
    tokio::spawn(crate::replica_fetcher::run_isr_changes(
        replica_context,
        shutdown_receiver.clone(),
    ));
    tokio::spawn(heartbeats(broker.clone(), shutdown_receiver.clone()));
    // Groups and offsets are back before the first client asks; then the
    // transactions, whose markers update the groups' offsets: prepared ones
    // are completed before the first client asks.
    let groups = broker.groups.ensure_ready();
    recover(&broker, crate::groups::OFFSETS_TOPIC, groups).await;
    let transactions = broker.transactions.ensure_ready();
    recover(
        &broker,
        crate::transactions::TRANSACTION_TOPIC,
        transactions,
    )
    .await;
    tokio::spawn(broker.groups.clone().run_timer());
    tokio::spawn(follow_leadership(broker.clone()));
    tokio::spawn(broker.transactions.clone().run_timer());
    if broker.config.overrides.get_bool("log.cleaner.enable") {
        tokio::spawn(run_cleaner(broker.clone(), shutdown_receiver.clone()));
    }
    let server = tokio::spawn(server::serve(broker.clone(), listener, shutdown_receiver));
    Ok(RunningBroker {
        broker,
        local_addr,
        recovered_after_crash: !clean && !new_data_dir,
        new_data_dir,
        shutdown,
        server,
        _lock: lock,
    })
}

/// Loads a coordinator's state at startup (`ensure_ready`), if its internal
/// topic exists here.
async fn recover(
    broker: &Broker,
    topic: &str,
    ensure_ready: impl std::future::Future<Output = Result<(), crate::topics::TopicError>>,
) {
    if broker.partitions.topic(topic).is_none() {
        return;
    }
    if let Err(error) = ensure_ready.await {
        tracing::error!(topic, message = %error.message, "loading a coordinator's state failed");
    }
}

/// The controller's settings, from the broker configs of the same names.
fn controller_config(overrides: &BrokerOverrides) -> ControllerConfig {
    ControllerConfig {
        session_timeout_ms: overrides.get_i64("broker.session.timeout.ms"),
        default_replication_factor: overrides.get_i64("default.replication.factor") as i16,
        default_partitions: overrides.get_i64("num.partitions") as i32,
        unclean_leader_election: overrides.get_bool("unclean.leader.election.enable"),
        auto_leader_rebalance: overrides.get_bool("auto.leader.rebalance.enable"),
        leader_imbalance_check_interval_ms: overrides
            .get_i64("leader.imbalance.check.interval.seconds")
            .saturating_mul(1000),
        producer_id_block_size: 1_000,
    }
}

const META_PROPERTIES: &str = "meta.properties";

/// The data directory's id and owner, in `meta.properties` (Kafka's file and
/// keys): created with a new id on first start; a directory another node id
/// wrote is refused, since its partitions and registration are that node's.
fn directory_id(data_dir: &Path, node_id: i32) -> Result<uuid::Uuid, StartError> {
    let path = data_dir.join(META_PROPERTIES);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let value = |key: &str| {
                text.lines()
                    .filter_map(|line| line.split_once('='))
                    .find(|(k, _)| k.trim() == key)
                    .map(|(_, v)| v.trim().to_string())
            };
            let stored = value("node.id").and_then(|v| v.parse::<i32>().ok());
            if stored.is_some_and(|stored| stored != node_id) {
                return Err(StartError::Config(format!(
                    "{} belongs to node {}, not {node_id}; start it with --node-id {} or pick another --data-dir",
                    data_dir.display(),
                    stored.unwrap_or_default(),
                    stored.unwrap_or_default()
                )));
            }
            value("directory.id")
                .and_then(|v| uuid::Uuid::parse_str(&v).ok())
                .ok_or_else(|| {
                    StartError::Config(format!(
                        "{} has no valid directory.id; restore it or remove the data directory",
                        path.display()
                    ))
                })
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let id = uuid::Uuid::new_v4();
            let temporary = data_dir.join(format!("{META_PROPERTIES}.tmp"));
            let text =
                format!("# written by strom\nversion=1\nnode.id={node_id}\ndirectory.id={id}\n");
            std::fs::write(&temporary, text)
                .and_then(|()| File::open(&temporary)?.sync_all())
                .and_then(|()| std::fs::rename(&temporary, &path))
                .map_err(io_error(&path))?;
            sync_dir(data_dir)?;
            Ok(id)
        }
        Err(error) => Err(io_error(&path)(error)),
    }
}

/// Runs `pass` on a blocking thread every `interval_config` milliseconds
/// (a broker config read once) until shutdown.
async fn periodically(
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
    interval_config: &'static str,
    pass: fn(&Broker),
) {
    let interval_ms = broker.config.overrides.get_i64(interval_config).max(1) as u64;
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        let broker = broker.clone();
        let _ = tokio::task::spawn_blocking(move || pass(&broker)).await;
    }
}

/// This broker's heartbeat to the controller, and the controller's
/// periodic work (fencing brokers whose session ended, preferred leaders)
/// when this node is the active controller, every
/// `broker.heartbeat.interval.ms`.
async fn heartbeats(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let interval_ms = broker
        .config
        .overrides
        .get_i64("broker.heartbeat.interval.ms")
        .max(1) as u64;
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.changed() => return,
        }
        if let Err(error) = broker.topics.heartbeat().await {
            tracing::warn!(message = %error.message, "heartbeat to the controller failed; retrying at the next interval");
        }
        broker.topics.quorum().tick().await;
    }
}

/// Applies committed metadata batches to this node's partitions, one at a
/// time in commit order, on a thread of its own (opening and removing
/// partitions is file I/O), then points the followers at their leaders.
/// The coordinators follow their partitions' leadership: after every
/// committed metadata batch each loads the partitions of its internal topic
/// this node now leads and unloads those it no longer does.
async fn follow_leadership(broker: Arc<Broker>) {
    loop {
        broker.leadership_changed.notified().await;
        broker.groups.follow_leadership().await;
        broker.transactions.follow_leadership().await;
    }
}

fn spawn_reconciler(
    broker: Arc<Broker>,
    mut applied: tokio::sync::mpsc::UnboundedReceiver<strom_quorum::Applied>,
) {
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("strom-reconciler".to_string())
        .spawn(move || {
            while let Some(batch) = applied.blocking_recv() {
                broker.topics.reconcile(&batch, &broker.partitions);
                broker.replica_fetchers.update(&runtime);
                // Coordinators follow their partitions' leadership.
                broker.leadership_changed.notify_one();
            }
        })
        .expect("starting the reconciler thread");
}

/// Registers this broker with the active controller, waiting for the
/// controller quorum to elect one (the voters may be starting one by one).
async fn register(topics: &Topics, registration: Registration) {
    let mut attempts = 0u32;
    loop {
        match topics.register(registration.clone()).await {
            Ok(epoch) => {
                tracing::info!(broker_epoch = epoch, "registered with the controller");
                return;
            }
            Err(error) => {
                attempts += 1;
                if attempts % 10 == 1 {
                    tracing::warn!(message = %error.message, "waiting to register with the controller quorum");
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

/// Starts this node's member of the controller quorum: a voter with its
/// controller listener, or a broker that follows the voters. Without
/// configured voters, this node alone is the quorum.
async fn start_quorum(
    config: &BrokerConfig,
    dir: PathBuf,
    seed: Option<strom_metadata::MetadataImage>,
    applied: tokio::sync::mpsc::UnboundedSender<strom_quorum::Applied>,
) -> Result<strom_quorum::Quorum, StartError> {
    let (voters, listener) = if config.quorum_voters.is_empty() {
        let alone = std::collections::BTreeMap::from([(config.node_id, String::new())]);
        (alone, None)
    } else {
        let listener = match config
            .controller_address()
            .filter(|_| config.roles.is_voter())
        {
            Some(address) => {
                let (host, port) = parse_listener(&address).map_err(StartError::Config)?;
                let bound = TcpListener::bind((host.as_str(), port))
                    .await
                    .map_err(|source| StartError::Listen {
                        address: address.clone(),
                        source,
                    })?;
                Some(bound)
            }
            None => None,
        };
        (config.quorum_voters.clone(), listener)
    };
    let election_ms = config
        .overrides
        .get_i64("controller.quorum.election.timeout.ms")
        .max(50) as u64;
    let timing = strom_quorum::Timing {
        heartbeat_ms: (election_ms / 10).max(10),
        election_timeout_min_ms: election_ms,
        election_timeout_max_ms: election_ms * 2,
        ..strom_quorum::Timing::default()
    };
    let quorum_config = strom_quorum::QuorumConfig {
        node_id: config.node_id,
        voters,
        dir,
        listener,
        timing,
        snapshot_after_entries: strom_quorum::DEFAULT_SNAPSHOT_AFTER_ENTRIES,
    };
    strom_quorum::Quorum::start(quorum_config, seed, applied)
        .await
        .map_err(|error| StartError::Config(format!("starting the controller quorum: {error}")))
}

/// Moves the metadata log of single-node Strom out of the way once its
/// image is in the quorum, so it seeds nothing again.
fn retire_legacy_metadata(dir: &Path) {
    let retired = dir.join(PRE_QUORUM_DIR);
    let moved = std::fs::create_dir_all(&retired).and_then(|()| {
        for entry in std::fs::read_dir(dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with("metadata") && entry.path().is_file() {
                std::fs::rename(entry.path(), retired.join(&name))?;
            }
        }
        std::fs::File::open(dir)?.sync_all()
    });
    match moved {
        Ok(()) => tracing::info!(
            kept_in = %retired.display(),
            "the single-node metadata log is now in the controller quorum; the old files are kept"
        ),
        Err(error) => {
            tracing::warn!(%error, "could not move the old metadata log aside; the next start tries again (the controller quorum holds its metadata)")
        }
    }
}

/// Whether `dir` holds a metadata log written before the controller
/// quorum existed.
fn has_legacy_metadata(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name().to_string_lossy().to_string();
            name.starts_with("metadata") && name.ends_with(".log")
        })
    })
}

/// Deletes the segments that `retention.ms` and `retention.bytes` no
/// longer keep (every `log.retention.check.interval.ms`).
fn enforce_retention(broker: &Broker) {
    let now = crate::partition::now_ms();
    for partition in broker.partitions.all() {
        if partition.log().is_offline() {
            continue; // it logged its storage error once
        }
        match partition.apply_retention(now) {
            Ok(outcome) if outcome.deleted_segments > 0 => tracing::info!(
                topic = %partition.topic,
                partition = partition.index,
                segments = outcome.deleted_segments,
                bytes = outcome.deleted_bytes,
                log_start_offset = partition.log_start_offset(),
                "retention deleted old segments"
            ),
            Ok(_) => {}
            Err(error) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "retention failed")
            }
        }
    }
}

/// Writes the replicated partitions' high watermarks to the checkpoint
/// (every `replica.high.watermark.checkpoint.interval.ms`, and at clean
/// shutdown) if they moved.
fn checkpoint_high_watermarks(broker: &Broker) {
    let entries = broker
        .partitions
        .all()
        .into_iter()
        .filter(|partition| partition.is_replicated())
        .map(|partition| {
            (
                partition.topic.clone(),
                partition.index,
                partition.high_watermark(),
            )
        });
    if let Err(error) = broker.hw_checkpoint.write(entries) {
        tracing::warn!(%error, "could not write the high-watermark checkpoint; replicated partitions that open from it start further back");
    }
}

/// Forgets producers idle longer than `producer.id.expiration.ms` (every
/// `producer.id.expiration.check.interval.ms`).
fn expire_producer_ids(broker: &Broker) {
    let now = crate::partition::now_ms();
    let expiration_ms = broker.config.overrides.get_i64("producer.id.expiration.ms");
    let expired: usize = broker
        .partitions
        .all()
        .iter()
        .map(|partition| partition.expire_producers(now, expiration_ms))
        .sum();
    if expired > 0 {
        tracing::info!(
            producers = expired,
            "forgot producers idle longer than producer.id.expiration.ms"
        );
    }
}

/// The log cleaner: every `log.cleaner.backoff.ms`, compacts the partitions
/// of compacted topics that have enough dirty data, one at a time.
async fn run_cleaner(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let overrides = &broker.config.overrides;
    let backoff =
        std::time::Duration::from_millis(overrides.get_i64("log.cleaner.backoff.ms").max(1) as u64);
    let rate = overrides
        .get_i64("log.cleaner.io.max.bytes.per.second")
        .max(1) as u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        let pass = broker.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for partition in pass.partitions.all() {
                if partition.log().is_offline() {
                    continue;
                }
                match partition.clean(crate::partition::now_ms(), rate) {
                    Ok(Some(outcome)) => tracing::info!(
                        topic = %partition.topic,
                        partition = partition.index,
                        segments = outcome.segments,
                        records_removed = outcome.records_removed,
                        bytes_before = outcome.bytes_before,
                        bytes_after = outcome.bytes_after,
                        "compacted"
                    ),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "compaction failed; it is retried on the next pass"),
                }
            }
        })
        .await;
    }
}

/// Partition directories of topics the metadata does not know (a crash
/// between a topic's deletion record and removing its files).
fn remove_orphan_partition_dirs(data_dir: &Path, topics: &Topics) {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return;
    };
    let partition_counts = topics.partition_counts();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !entry.path().is_dir() || name == METADATA_DIR {
            continue;
        }
        let Some((topic, index)) = name.rsplit_once('-') else {
            continue;
        };
        let looks_like_partition = std::fs::read_dir(entry.path())
            .map(|files| {
                files
                    .flatten()
                    .any(|file| file.file_name().to_string_lossy().ends_with(".log"))
            })
            .unwrap_or(false);
        if !looks_like_partition {
            continue;
        }
        let known = index
            .parse::<usize>()
            .ok()
            .zip(partition_counts.get(topic))
            .is_some_and(|(index, count)| index < *count);
        if !known {
            tracing::warn!(dir = %entry.path().display(), "removing directory of a deleted partition");
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl RunningBroker {
    /// Stops accepting, flushes every partition and marks the shutdown clean.
    pub async fn shutdown(self) -> Result<(), StartError> {
        // Controlled shutdown, while still serving: the controller moves
        // this broker's leaderships to other in-sync replicas first, so
        // clients move on without errors. Alone, there is nowhere to go.
        let others = self
            .broker
            .topics
            .live_brokers()
            .iter()
            .any(|live| live.node_id != self.broker.node_id());
        if others {
            let within = std::time::Duration::from_millis(
                self.broker
                    .config
                    .overrides
                    .get_i64("broker.session.timeout.ms")
                    .max(1000) as u64,
            );
            if self.broker.topics.shut_down(within).await {
                tracing::info!("controlled shutdown done: this broker leads nothing");
            } else {
                tracing::warn!("controlled shutdown did not finish in time; stopping anyway");
            }
        }
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        self.broker.replica_fetchers.shutdown();
        self.broker.topics.quorum().shutdown().await;
        let broker = self.broker.clone();
        let data_dir = broker.config.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            for partition in broker.partitions.all() {
                if let Err(error) = flusher::flush_partition(&partition) {
                    tracing::error!(topic = %partition.topic, partition = partition.index, %error, "flush at shutdown failed; the next start recovers it");
                    return Ok(());
                }
                if let Err(error) = partition.write_shutdown_snapshot() {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "no producer state snapshot at shutdown; the next start replays the log");
                }
            }
            checkpoint_high_watermarks(&broker);
            // One sync for the snapshots and indexes written above, rather
            // than an fsync for each of thousands of small files.
            sync_file_system(&data_dir)?;
            let marker = data_dir.join(CLEAN_SHUTDOWN_MARKER);
            File::create(&marker)
                .and_then(|file| file.sync_all())
                .map_err(io_error(&marker))?;
            sync_dir(&data_dir)
        })
        .await
        .unwrap_or(Ok(()))
    }
}
