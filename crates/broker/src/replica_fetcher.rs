//! Followers fetch from their leaders (Kafka's ReplicaFetcherThread), and
//! leaders propose ISR changes to the controller.
//!
//! One fetcher task per leader broker carries every partition this node
//! follows on that leader, over one connection: a Fetch naming this node as
//! the replica, from each partition's log end. The loop, per response:
//!
//! ```text
//!  records ──► append as the leader wrote them ──► fsync ──► next fetch
//!                                                            (its offset
//!  diverging epoch ──► truncate where the logs part          tells the
//!  high watermark ──► taken, never past the durable end      leader what
//!                                                            is on disk)
//! ```
//!
//! A follower asks for more only once what it has is on disk (whatever
//! the topic's flush settings: the leader's and the follower's view of them
//! may differ for a moment), so the leader may count a fetch offset as
//! durable: that is what makes an acks=all write "on disk on every in-sync
//! replica". After every committed metadata batch [`ReplicaFetchers::update`]
//! regroups the partitions by leader: fetchers start, change their
//! partitions or stop.
//!
//! The ISR side ([`run_isr_changes`]): every half `replica.lag.time.max.ms`
//! each leader of a replicated partition asks its [`strom_replica::Leader`]
//! whether the ISR should shrink or grow, and proposes that to the
//! controller (AlterPartition), which refuses a proposal from a stale
//! leader or partition epoch.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::flusher::Flusher;
use crate::partition::{now_ms, Partition, PartitionRegistry};
use crate::peer::PeerConnection;
use crate::topics::Topics;

/// Fetch v15: topic ids, and the replica's broker epoch (ReplicaState).
const FETCH_VERSION: i16 = 15;
/// Kafka's `replica.fetch.wait.max.ms` and `replica.fetch.min.bytes`.
const FETCH_WAIT_MAX_MS: i32 = 500;
const FETCH_MIN_BYTES: i32 = 1;
/// Kafka's `replica.fetch.response.max.bytes` and `replica.fetch.max.bytes`.
const FETCH_RESPONSE_MAX_BYTES: i32 = 10 << 20;
const FETCH_PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Kafka's `replica.fetch.backoff.ms`: the pause after a failed fetch.
const FETCH_BACKOFF: Duration = Duration::from_millis(200);
/// How long a connection attempt or a fetch may take before the fetcher
/// starts over (a fetch waits at most `FETCH_WAIT_MAX_MS` on the leader).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The partitions one fetcher fetches, and where their leader listens.
#[derive(Clone, Default)]
struct Assignment {
    address: String,
    partitions: Vec<Arc<Partition>>,
}

struct Fetcher {
    assigned: watch::Sender<Assignment>,
    task: JoinHandle<()>,
}

/// What the fetchers and the leaders' ISR task use of their node.
#[derive(Clone)]
pub struct ReplicaContext {
    pub node_id: i32,
    pub topics: Arc<Topics>,
    pub partitions: Arc<PartitionRegistry>,
    pub flusher: Flusher,
}

/// This node's fetchers, one per leader it follows.
pub struct ReplicaFetchers {
    context: ReplicaContext,
    fetchers: Mutex<HashMap<i32, Fetcher>>,
}

impl ReplicaFetchers {
    pub fn new(context: ReplicaContext) -> ReplicaFetchers {
        ReplicaFetchers {
            context,
            fetchers: Mutex::default(),
        }
    }

    /// Regroups the partitions this node follows by their leader, as the
    /// committed metadata has them: starts, updates and stops fetchers.
    /// Called from the runtime or from the reconciler thread.
    pub fn update(&self, runtime: &tokio::runtime::Handle) {
        let context = &self.context;
        let node_id = context.node_id;
        let image = context.topics.quorum().image();
        let mut by_leader: BTreeMap<i32, Vec<Arc<Partition>>> = BTreeMap::new();
        for partition in context.partitions.all() {
            if partition.is_leader() || partition.log().is_offline() {
                continue;
            }
            let Some(state) = image.partition(partition.topic_id, partition.index) else {
                continue;
            };
            if state.leader >= 0 && state.leader != node_id {
                by_leader.entry(state.leader).or_default().push(partition);
            }
        }
        let address = |leader: i32| {
            let endpoint = image.broker(leader)?.endpoints.first()?;
            Some(format!("{}:{}", endpoint.host, endpoint.port))
        };
        let mut fetchers = self.lock();
        fetchers.retain(|leader, fetcher| {
            let keep = by_leader.contains_key(leader) && address(*leader).is_some();
            if !keep {
                fetcher.task.abort();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            let Some(address) = address(leader) else {
                tracing::warn!(
                    leader,
                    "the leader of partitions this broker follows has no listener in the metadata"
                );
                continue;
            };
            let assignment = Assignment {
                address,
                partitions,
            };
            match fetchers.get(&leader) {
                Some(fetcher) => {
                    fetcher.assigned.send_replace(assignment);
                }
                None => {
                    let (assigned, receiver) = watch::channel(assignment);
                    let task = runtime.spawn(fetch_from(context.clone(), leader, receiver));
                    fetchers.insert(leader, Fetcher { assigned, task });
                }
            }
        }
    }

    /// Stops every fetcher (at shutdown, before the last flush).
    pub fn shutdown(&self) {
        for (_, fetcher) in self.lock().drain() {
            fetcher.task.abort();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Fetcher>> {
        self.fetchers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One fetcher: fetches its partitions from `leader` until stopped.
async fn fetch_from(
    context: ReplicaContext,
    leader: i32,
    mut assigned: watch::Receiver<Assignment>,
) {
    let mut connection: Option<PeerConnection> = None;
    let mut failures = 0u32;
    let mut round = 0usize;
    loop {
        if failures > 0 {
            tokio::time::sleep(FETCH_BACKOFF).await;
        }
        let assignment = assigned.borrow_and_update().clone();
        let mut partitions: Vec<Arc<Partition>> = assignment
            .partitions
            .into_iter()
            .filter(|p| !p.is_leader() && !p.log().is_offline())
            .collect();
        if partitions.is_empty() {
            if assigned.changed().await.is_err() {
                return;
            }
            continue;
        }
        // Only the first partition with data may get a batch larger than
        // its share of the response (KIP-74), and the response fills up in
        // request order: each round starts at another partition, so none
        // starves behind its neighbours (Kafka moves fetched ones to the end).
        round = round.wrapping_add(1);
        let first = round % partitions.len();
        partitions.rotate_left(first);
        // A fetch offset tells the leader everything below it is on disk
        // here (that is what the high watermark counts), so whatever was
        // appended is fsynced first, whatever the topic's flush settings say
        // and however the last append ended. A partition whose fsync failed
        // went offline and is not fetched.
        let partitions = durable_before_fetching(&context, partitions).await;
        if partitions.is_empty() {
            failures += 1;
            continue;
        }
        if connection
            .as_ref()
            .is_some_and(|c| c.address != assignment.address)
        {
            connection = None;
        }
        let mut peer = match connection.take() {
            Some(peer) => peer,
            None => {
                let client_id = format!("strom-replica-fetcher-{}", context.node_id);
                let connected = tokio::time::timeout(
                    FETCH_TIMEOUT,
                    PeerConnection::connect(&assignment.address, client_id),
                )
                .await;
                match connected {
                    Ok(Ok(peer)) => peer,
                    Ok(Err(error)) => {
                        failed(&mut failures, leader, &format!("connecting: {error}"));
                        continue;
                    }
                    Err(_) => {
                        failed(&mut failures, leader, "connecting timed out");
                        continue;
                    }
                }
            }
        };
        let epochs: Vec<i32> = partitions.iter().map(|p| p.leader_epoch()).collect();
        let request = fetch_request(&context, &partitions, &epochs);
        let answered = tokio::time::timeout(
            FETCH_TIMEOUT,
            peer.call::<_, FetchResponse>(ApiKey::Fetch, FETCH_VERSION, &request),
        )
        .await;
        let response = match answered {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                failed(&mut failures, leader, &format!("fetching: {error}"));
                continue;
            }
            Err(_) => {
                failed(&mut failures, leader, "a fetch timed out");
                continue;
            }
        };
        connection = Some(peer);
        if response.error_code != 0 {
            let error = ResponseError::try_from_code(response.error_code);
            failed(
                &mut failures,
                leader,
                &format!("the leader answered {error:?}"),
            );
            continue;
        }
        let applied =
            tokio::task::spawn_blocking(move || apply_response(response, &partitions, &epochs))
                .await;
        let Ok(outcome) = applied else {
            failed(&mut failures, leader, "applying a fetch response panicked");
            continue;
        };
        for (partition, high_watermark) in &outcome.high_watermarks {
            partition.follow_high_watermark(*high_watermark);
        }
        if outcome.must_back_off {
            failures += 1;
        } else {
            failures = 0;
        }
    }
}

/// Fsyncs what each partition holds past its flushed offset (group
/// commit: all are asked at once) and returns those that are durable to
/// their log end.
async fn durable_before_fetching(
    context: &ReplicaContext,
    partitions: Vec<Arc<Partition>>,
) -> Vec<Arc<Partition>> {
    let flushes = partitions.into_iter().map(|partition| {
        let end = partition.log_end_offset();
        let flushed = context.flusher.flush(partition.clone(), end);
        async move {
            match flushed.await {
                Ok(Ok(())) => Some(partition),
                Ok(Err(error)) => {
                    tracing::error!(topic = %partition.topic, partition = partition.index, %error, "a follower's fsync failed; the partition is offline here");
                    None
                }
                Err(_) => None,
            }
        }
    });
    join_all(flushes).await.into_iter().flatten().collect()
}

/// Counts a failed round and logs it, the first time and then every 50th.
fn failed(failures: &mut u32, leader: i32, problem: &str) {
    if failures.is_multiple_of(50) {
        tracing::warn!(
            leader,
            problem,
            "replica fetch failed; retrying every {} ms",
            FETCH_BACKOFF.as_millis()
        );
    }
    *failures += 1;
}

fn fetch_request(
    context: &ReplicaContext,
    partitions: &[Arc<Partition>],
    epochs: &[i32],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (partition, epoch) in partitions.iter().zip(epochs) {
        let fetch = FetchPartition::default()
            .with_partition(partition.index)
            .with_current_leader_epoch(*epoch)
            .with_fetch_offset(partition.log_end_offset())
            .with_last_fetched_epoch(partition.last_fetched_epoch().unwrap_or(-1))
            .with_log_start_offset(partition.log_start_offset())
            .with_partition_max_bytes(FETCH_PARTITION_MAX_BYTES);
        match topics.last_mut() {
            Some(topic) if topic.topic_id == partition.topic_id => topic.partitions.push(fetch),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic_id(partition.topic_id)
                    .with_partitions(vec![fetch]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_state(
            ReplicaState::default()
                .with_replica_id(BrokerId(context.node_id))
                .with_replica_epoch(context.topics.broker_epoch()),
        )
        .with_max_wait_ms(FETCH_WAIT_MAX_MS)
        .with_min_bytes(FETCH_MIN_BYTES)
        .with_max_bytes(FETCH_RESPONSE_MAX_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// What one response did.
#[derive(Default)]
struct Applied {
    /// The leader's high watermark for each partition answered without error.
    high_watermarks: Vec<(Arc<Partition>, i64)>,
    /// A partition's error says to wait before fetching again.
    must_back_off: bool,
}

/// Applies a response to the partitions fetched (on a blocking thread: the
/// appends and truncations are file I/O).
fn apply_response(
    response: FetchResponse,
    partitions: &[Arc<Partition>],
    epochs: &[i32],
) -> Applied {
    let by_key: HashMap<(Uuid, i32), (&Arc<Partition>, i32)> = partitions
        .iter()
        .zip(epochs)
        .map(|(p, e)| ((p.topic_id, p.index), (p, *e)))
        .collect();
    let mut applied = Applied::default();
    for topic in response.responses {
        for data in topic.partitions {
            let Some(&(partition, epoch)) = by_key.get(&(topic.topic_id, data.partition_index))
            else {
                continue;
            };
            let name = || format!("{}-{}", partition.topic, partition.index);
            match ResponseError::try_from_code(data.error_code) {
                None => {}
                Some(
                    error @ (ResponseError::NotLeaderOrFollower
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::UnknownTopicId),
                ) => {
                    // The metadata will say who leads now.
                    tracing::debug!(partition = %name(), ?error, "replica fetch refused");
                    applied.must_back_off = true;
                    continue;
                }
                Some(ResponseError::OffsetOutOfRange)
                    if partition.log_end_offset() < data.log_start_offset =>
                {
                    // Everything here is below what the leader still has
                    // (retention or DeleteRecords there, or this node was
                    // away long): start over at the leader's log start.
                    tracing::info!(
                        partition = %name(),
                        log_end = partition.log_end_offset(),
                        leader_log_start_offset = data.log_start_offset,
                        "this follower's log ends below its leader's log start; starting it over there"
                    );
                    if let Err(error) = partition.restart_replica_at(data.log_start_offset, epoch) {
                        tracing::error!(partition = %name(), %error, "starting a follower's log over failed");
                        applied.must_back_off = true;
                    }
                    continue;
                }
                Some(ResponseError::OffsetOutOfRange) => {
                    tracing::error!(
                        partition = %name(),
                        fetch_offset = partition.log_end_offset(),
                        leader_log_start_offset = data.log_start_offset,
                        "the leader refused this follower's fetch position as out of range"
                    );
                    applied.must_back_off = true;
                    continue;
                }
                Some(error) => {
                    tracing::warn!(partition = %name(), ?error, "replica fetch failed for a partition");
                    applied.must_back_off = true;
                    continue;
                }
            }
            if data.diverging_epoch.epoch >= 0 {
                let (local_epoch, local_end) = {
                    let log = partition.log();
                    (
                        log.end_offset_for_epoch(data.diverging_epoch.epoch),
                        log.log_end_offset(),
                    )
                };
                let cut = strom_replica::truncation(
                    data.diverging_epoch.epoch,
                    data.diverging_epoch.end_offset,
                    local_epoch,
                    local_end,
                );
                tracing::info!(partition = %name(), from = cut.offset, log_end = local_end, leader_epoch = data.diverging_epoch.epoch, "truncating where this follower's log diverged from its leader's");
                if let Err(error) = partition.truncate_replica(cut.offset, epoch) {
                    tracing::error!(partition = %name(), %error, "truncating a follower's log failed");
                    applied.must_back_off = true;
                }
                continue;
            }
            if let Some(records) = data.records.as_ref().filter(|r| !r.is_empty()) {
                match partition.append_replicated(records, epoch) {
                    // Fsynced before the next fetch (`durable_before_fetching`).
                    Ok(Some(_)) => {}
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::error!(partition = %name(), %error, "appending fetched records failed");
                        applied.must_back_off = true;
                        continue;
                    }
                }
            }
            if let Err(error) = partition.follow_log_start(data.log_start_offset) {
                tracing::error!(partition = %name(), %error, "moving a follower's log start failed");
                applied.must_back_off = true;
                continue;
            }
            applied
                .high_watermarks
                .push((partition.clone(), data.high_watermark));
        }
    }
    applied
}

/// Leaders' ISR changes: every half `replica.lag.time.max.ms`, each leader
/// of a replicated partition proposes the change its replicas' progress
/// calls for, one partition at a time, until shutdown.
pub async fn run_isr_changes(context: ReplicaContext, mut shutdown: watch::Receiver<bool>) {
    let lag_ms = context
        .topics
        .configs()
        .get_i64("replica.lag.time.max.ms")
        .max(1);
    let interval = Duration::from_millis((lag_ms / 2).clamp(50, 5_000) as u64);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        for partition in context.partitions.all() {
            let Some(proposal) = partition.isr_change_due(now_ms()) else {
                continue;
            };
            let isr: Vec<i32> = proposal.isr.iter().map(|(member, _)| *member).collect();
            match context
                .topics
                .alter_partition(partition.topic_id, partition.index, &proposal)
                .await
            {
                Ok(()) => {
                    tracing::info!(topic = %partition.topic, partition = partition.index, ?isr, "ISR changed")
                }
                Err(error) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, ?isr, message = %error.message, "the controller did not take an ISR change; proposing again later");
                    // Only a refusal of the proposal as it stood means nothing
                    // changed; anything else may have been committed.
                    let refusal = match error.error {
                        ResponseError::IneligibleReplica | ResponseError::InvalidRequest => {
                            strom_replica::Refusal::NotApplied
                        }
                        _ => strom_replica::Refusal::Unknown,
                    };
                    partition.isr_change_refused(&proposal, refusal);
                }
            }
        }
    }
}
