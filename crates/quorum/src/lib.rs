//! The controller quorum: the metadata log replicated by Raft across the
//! controller voters (`controller.quorum.voters`), as KRaft does.
//!
//! - Raft is [openraft](https://docs.rs/openraft) (pinned), behind this
//!   crate's small interface ([`Quorum`]): the broker appends batches of
//!   [`MetadataRecord`]s on the leader and receives every committed batch,
//!   in order, with the image after it ([`Applied`]).
//! - Storage is Strom's own: the Raft log, vote and snapshot in CRC-checked,
//!   fsynced files ([`log_store`], [`state_machine`]), run against
//!   openraft's storage conformance suite (`tests/storage.rs`).
//! - Voters talk over their controller listeners ([`network`]). A
//!   broker-only node is not a Raft member: it follows a voter's applied
//!   metadata (the batches since its offset, or the whole image when it is
//!   far behind), like a KRaft observer.
//! - One node without voters is a quorum of one: no listener, no network,
//!   the same code.

// openraft's StorageError is large, and every storage trait method returns it.
#![allow(clippy::result_large_err)]

pub mod files;
pub mod log_store;
pub mod network;
mod shared;
pub mod state_machine;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState};
use strom_metadata::{MetadataImage, MetadataRecord};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::log_store::LogStore;
use crate::network::{Connection, Network, Rpc, TailMissing, TailReply};
use crate::shared::{Missing, Shared};
use crate::state_machine::StateMachine;
pub use crate::types::Command;
use crate::types::Raft;

/// Snapshot the image after this many Raft entries by default.
pub const DEFAULT_SNAPSHOT_AFTER_ENTRIES: u64 = 1000;

/// Raft's timings, in milliseconds (Kafka's `controller.quorum.*`).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    pub rpc_timeout_ms: u64,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat_ms: 100,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            rpc_timeout_ms: 2000,
        }
    }
}

pub struct QuorumConfig {
    pub node_id: i32,
    /// The voters and their controller listeners. This node is a voter when
    /// it is among them, else it follows them.
    pub voters: BTreeMap<i32, String>,
    /// Where the Raft log, vote and snapshot live.
    pub dir: PathBuf,
    /// A voter's bound controller listener (none for a quorum of one).
    pub listener: Option<tokio::net::TcpListener>,
    pub timing: Timing,
    pub snapshot_after_entries: u64,
}

impl QuorumConfig {
    pub fn new(node_id: i32, voters: BTreeMap<i32, String>, dir: PathBuf) -> QuorumConfig {
        QuorumConfig {
            node_id,
            voters,
            dir,
            listener: None,
            timing: Timing::default(),
            snapshot_after_entries: DEFAULT_SNAPSHOT_AFTER_ENTRIES,
        }
    }
}

/// One committed batch, with the image right after it. `from_snapshot`:
/// the image replaced the one before (a snapshot was installed, or a
/// broker-only node fell too far behind), so there are no records.
pub struct Applied {
    pub records: Vec<MetadataRecord>,
    pub image: Arc<MetadataImage>,
    pub from_snapshot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("this node is not the quorum leader")]
    NotLeader { leader: Option<(i32, String)> },
    /// Not committed within the time given: no majority of the voters
    /// answered (they are down or cut off). The batch may still commit
    /// later, or never; the caller must not assume either.
    #[error("not committed within {0:?}: no majority of the controller quorum voters answered")]
    Timeout(Duration),
    #[error("{0}")]
    Fatal(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RpcError(String);

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Config(String),
}

/// Who leads the quorum, as this node knows it. `local_ready`: this node
/// leads and has applied everything committed before its term, so the
/// active controller may decide from its image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<i32>,
    pub term: u64,
    pub local_ready: bool,
}

/// A quorum member's progress as the leader sees it (DescribeQuorum).
/// Offsets are Raft log indexes.
pub struct ReplicaStatus {
    pub node_id: i32,
    pub log_end_offset: i64,
    pub last_fetch_ms: i64,
    pub last_caught_up_ms: i64,
}

pub struct QuorumStatus {
    pub leader: Option<i32>,
    pub term: u64,
    pub high_watermark: u64,
    pub voters: Vec<ReplicaStatus>,
    pub observers: Vec<ReplicaStatus>,
}

/// Answers [`Quorum::call_leader`] requests on the leader.
pub type AppHandler =
    Arc<dyn Fn(serde_json::Value) -> BoxFuture<'static, serde_json::Value> + Send + Sync>;

/// A broker-only node as the voter it follows last saw it.
struct Seen {
    raft_index: u64,
    last_fetch_ms: i64,
    last_caught_up_ms: i64,
}

struct Node {
    node_id: i32,
    voters: BTreeMap<i32, String>,
    timing: Timing,
    raft: Option<Raft>,
    shared: Arc<Shared>,
    handler: RwLock<Option<AppHandler>>,
    leadership: watch::Sender<Leadership>,
    observers: Mutex<BTreeMap<i32, Seen>>,
}

/// This node's member of the controller quorum.
pub struct Quorum {
    node: Arc<Node>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Quorum {
    /// Starts this node's member: a voter (the Raft log in `config.dir`,
    /// initialized with the configured voters on first start) or a follower
    /// of the voters. `seed`, the image of a data directory from before the
    /// quorum, becomes the first metadata of a quorum of one.
    pub async fn start(
        config: QuorumConfig,
        seed: Option<MetadataImage>,
        applied: mpsc::UnboundedSender<Applied>,
    ) -> Result<Quorum, QuorumError> {
        let QuorumConfig {
            node_id,
            voters,
            dir,
            listener,
            timing,
            snapshot_after_entries,
        } = config;
        if voters.is_empty() {
            return Err(QuorumError::Config(
                "no controller quorum voters".to_string(),
            ));
        }
        let voter = voters.contains_key(&node_id);
        if seed.is_some() && (voters.len() != 1 || !voter) {
            return Err(QuorumError::Config(
                "this data directory was written by single-node Strom; it upgrades as a one-node cluster only (start it without --controller-quorum-voters): a quorum's voters are fixed when it first starts, so it cannot join a multi-node cluster".to_string(),
            ));
        }
        if voter && voters.len() > 1 && listener.is_none() {
            return Err(QuorumError::Config(format!(
                "node {node_id} is a controller quorum voter and needs its controller listener"
            )));
        }
        let leadership = watch::Sender::new(Leadership {
            leader: None,
            term: 0,
            local_ready: false,
        });
        let mut tasks = Vec::new();
        let (raft, shared) = if voter {
            let storage =
                |error: openraft::StorageError<u64>| QuorumError::Storage(error.to_string());
            let log = LogStore::open(&dir).map_err(storage)?;
            let machine = StateMachine::open(&dir, applied).map_err(storage)?;
            let shared = machine.shared();
            let ready = machine.ready();
            let raft_config = openraft::Config {
                cluster_name: "strom-metadata".to_string(),
                heartbeat_interval: timing.heartbeat_ms,
                election_timeout_min: timing.election_timeout_min_ms,
                election_timeout_max: timing.election_timeout_max_ms,
                install_snapshot_timeout: timing.rpc_timeout_ms,
                snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(
                    snapshot_after_entries.max(1),
                ),
                max_in_snapshot_log_to_keep: snapshot_after_entries.max(1),
                ..Default::default()
            }
            .validate()
            .map_err(|error| QuorumError::Config(format!("controller quorum timings: {error}")))?;
            let raft = Raft::new(node_id as u64, Arc::new(raft_config), Network, log, machine)
                .await
                .map_err(|error| QuorumError::Storage(error.to_string()))?;
            let initialized = raft
                .is_initialized()
                .await
                .map_err(|error| QuorumError::Storage(error.to_string()))?;
            if initialized {
                // The voter set is fixed at the first start (no membership
                // changes yet): a different one here would let two quorums
                // form over the same nodes.
                let stored: BTreeSet<u64> = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .collect();
                let configured: BTreeSet<u64> = voters.keys().map(|&id| id as u64).collect();
                if stored != configured {
                    return Err(QuorumError::Config(format!(
                        "this node's controller quorum was formed with voters {stored:?}, but {configured:?} are configured; \
                         Strom cannot change a quorum's voters yet: start it with the voters it was formed with \
                         (a one-node cluster is {{{node_id}}}: no --controller-quorum-voters)"
                    )));
                }
            } else {
                let members: BTreeMap<u64, BasicNode> = voters
                    .iter()
                    .map(|(&id, address)| (id as u64, BasicNode::new(address.clone())))
                    .collect();
                match raft.initialize(members).await {
                    Ok(()) => tracing::info!(voters = ?voters, "controller quorum initialized"),
                    // Another voter's initialization reached this one first.
                    Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                    Err(error) => return Err(QuorumError::Storage(error.to_string())),
                }
            }
            let (quorum_heard, heard) = watch::channel(true);
            tasks.push(tokio::spawn(check_quorum(
                raft.clone(),
                Duration::from_millis(timing.election_timeout_min_ms),
                quorum_heard,
            )));
            tasks.push(tokio::spawn(follow_leadership(
                node_id as u64,
                raft.metrics(),
                ready,
                heard,
                leadership.clone(),
            )));
            (Some(raft), shared)
        } else {
            (None, Shared::new(MetadataImage::default(), 0, applied))
        };
        let node = Arc::new(Node {
            node_id,
            voters,
            timing,
            raft,
            shared,
            handler: RwLock::new(None),
            leadership,
            observers: Mutex::new(BTreeMap::new()),
        });
        if let Some(listener) = listener {
            tasks.push(tokio::spawn(serve(node.clone(), listener)));
        }
        if !voter {
            tasks.push(tokio::spawn(tail(node.clone())));
        }
        let quorum = Quorum {
            node,
            tasks: Mutex::new(tasks),
        };
        if let Some(seed) = seed.filter(|_| quorum.image().applied == 0) {
            quorum.seed(seed).await?;
        }
        Ok(quorum)
    }

    /// Makes `seed` the metadata of a new quorum of one (an upgrade).
    async fn seed(&self, seed: MetadataImage) -> Result<(), QuorumError> {
        let mut leadership = self.leadership();
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            leadership.wait_for(|l| l.local_ready),
        )
        .await;
        let raft = self.node.raft.as_ref().expect("seeds only a voter");
        let topics = seed.topics.len();
        raft.client_write(Command::Seed(Box::new(seed)))
            .await
            .map_err(|error| {
                QuorumError::Storage(format!("moving the metadata into the quorum: {error}"))
            })?;
        tracing::info!(
            topics,
            "moved the single-node metadata log into the controller quorum"
        );
        Ok(())
    }

    /// Appends a batch on the quorum leader, answering the metadata offset
    /// after it once it is committed and applied here, or
    /// [`AppendError::Timeout`] when that takes longer than `within`.
    pub async fn append(
        &self,
        records: Vec<MetadataRecord>,
        within: Duration,
    ) -> Result<u64, AppendError> {
        let leader_address = |leader: Option<i32>| {
            leader.and_then(|id| {
                self.node
                    .voters
                    .get(&id)
                    .map(|address| (id, address.clone()))
            })
        };
        let Some(raft) = &self.node.raft else {
            return Err(AppendError::NotLeader {
                leader: leader_address(self.node.leadership.borrow().leader),
            });
        };
        let written = tokio::time::timeout(within, raft.client_write(Command::Records(records)));
        match written.await.map_err(|_| AppendError::Timeout(within))? {
            Ok(written) => Ok(written.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                Err(AppendError::NotLeader {
                    leader: leader_address(forward.leader_id.map(|id| id as i32)),
                })
            }
            Err(error) => Err(AppendError::Fatal(error.to_string())),
        }
    }

    /// The metadata as this node has applied it.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.node.shared.image()
    }

    /// Waits until this node has applied every entry in its Raft log (on a
    /// leader: until what it appended before is committed), so its image is
    /// the base for the next decision. False if that takes longer than
    /// `within` (no majority answers).
    pub async fn wait_caught_up(&self, within: Duration) -> bool {
        let Some(raft) = &self.node.raft else {
            return true;
        };
        let mut metrics = raft.metrics();
        let caught_up = metrics
            .wait_for(|m| m.last_log_index.unwrap_or(0) <= m.last_applied.map_or(0, |id| id.index));
        tokio::time::timeout(within, caught_up)
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    /// Waits until this node has applied the metadata up to `offset`.
    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut offsets = self.node.shared.offsets();
        tokio::time::timeout(timeout, offsets.wait_for(|&applied| applied >= offset))
            .await
            .is_ok_and(|waited| waited.is_ok())
    }

    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.node.leadership.subscribe()
    }

    /// The quorum's progress as this node sees it (complete on the leader).
    pub fn status(&self) -> QuorumStatus {
        let now = now_ms();
        let leadership = self.node.leadership.borrow().clone();
        let observers = lock(&self.node.observers)
            .iter()
            .map(|(&node_id, seen)| ReplicaStatus {
                node_id,
                log_end_offset: seen.raft_index as i64,
                last_fetch_ms: seen.last_fetch_ms,
                last_caught_up_ms: seen.last_caught_up_ms,
            })
            .collect();
        let Some(raft) = &self.node.raft else {
            return QuorumStatus {
                leader: leadership.leader,
                term: leadership.term,
                high_watermark: self.node.shared.raft_index(),
                voters: Vec::new(),
                observers,
            };
        };
        let metrics = raft.metrics().borrow().clone();
        let high_watermark = metrics.last_applied.map_or(0, |id| id.index);
        let matched = |id: i32| -> Option<u64> {
            if id == self.node.node_id {
                return metrics.last_log_index;
            }
            metrics
                .replication
                .as_ref()
                .and_then(|replication| replication.get(&(id as u64)).copied().flatten())
                .map(|log_id| log_id.index)
        };
        let voters = self
            .node
            .voters
            .keys()
            .map(|&node_id| {
                let index = matched(node_id);
                ReplicaStatus {
                    node_id,
                    log_end_offset: index.map_or(-1, |i| i as i64),
                    last_fetch_ms: if index.is_some() { now } else { -1 },
                    last_caught_up_ms: if index.is_some_and(|i| i >= high_watermark) {
                        now
                    } else {
                        -1
                    },
                }
            })
            .collect();
        QuorumStatus {
            leader: leadership.leader,
            term: leadership.term,
            high_watermark,
            voters,
            observers,
        }
    }

    /// Sets what answers [`Quorum::call_leader`] requests on this node.
    pub fn set_app_handler(&self, handler: AppHandler) {
        *self.node.handler.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Has the quorum leader's application answer `request` (this node's own
    /// when it leads), waiting up to `timeout` for a leader to be known.
    pub async fn call_leader(
        &self,
        request: serde_json::Value,
        timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        let started = Instant::now();
        let mut leadership = self.leadership();
        let leader = tokio::time::timeout(timeout, leadership.wait_for(|l| l.leader.is_some()))
            .await
            .ok()
            .and_then(|l| l.ok().and_then(|l| l.leader))
            .ok_or_else(|| RpcError("the controller quorum has no leader".to_string()))?;
        if leader == self.node.node_id {
            return Ok(self.node.answer_app(request).await);
        }
        let address = self.node.voters.get(&leader).ok_or_else(|| {
            RpcError(format!(
                "the quorum leader {leader} is not a configured voter"
            ))
        })?;
        let left = timeout
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        let answer = Connection::new(address.clone())
            .call(&Rpc::App(request), left)
            .await
            .map_err(|error| {
                RpcError(format!(
                    "calling the quorum leader {leader} at {address}: {error}"
                ))
            })?;
        serde_json::from_slice(&answer)
            .map_err(|error| RpcError(format!("the quorum leader's answer: {error}")))
    }

    /// Stops Raft and the quorum's tasks.
    pub async fn shutdown(&self) {
        for task in lock(&self.tasks).drain(..) {
            task.abort();
        }
        if let Some(raft) = &self.node.raft {
            let _ = raft.shutdown().await;
        }
    }
}

impl Node {
    async fn answer_app(&self, request: serde_json::Value) -> serde_json::Value {
        let handler = self
            .handler
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match handler {
            Some(handler) => handler(request).await,
            None => serde_json::json!({"error": "this node is still starting"}),
        }
    }

    async fn answer(&self, rpc: Rpc) -> Vec<u8> {
        let json = |value: &dyn erased::Json| value.to_json();
        match (rpc, &self.raft) {
            (Rpc::Append(request), Some(raft)) => json(&raft.append_entries(request).await),
            (Rpc::Vote(request), Some(raft)) => json(&raft.vote(request).await),
            (Rpc::Snapshot(request), Some(raft)) => json(&raft.install_snapshot(request).await),
            (
                Rpc::Tail {
                    node_id,
                    from,
                    raft_index,
                    wait_ms,
                },
                _,
            ) => json(&self.answer_tail(node_id, from, raft_index, wait_ms).await),
            (Rpc::App(request), _) => json(&self.answer_app(request).await),
            (_, None) => json(&serde_json::json!({"error": "not a voter"})),
        }
    }

    async fn answer_tail(
        &self,
        node_id: i32,
        from: u64,
        raft_index: u64,
        wait_ms: u64,
    ) -> TailReply {
        let now = now_ms();
        let caught_up = from >= self.shared.image().applied;
        {
            let mut observers = lock(&self.observers);
            let seen = observers.entry(node_id).or_insert(Seen {
                raft_index,
                last_fetch_ms: now,
                last_caught_up_ms: -1,
            });
            seen.raft_index = raft_index;
            seen.last_fetch_ms = now;
            if caught_up {
                seen.last_caught_up_ms = now;
            }
        }
        if caught_up {
            let mut offsets = self.shared.offsets();
            let wait = Duration::from_millis(wait_ms.min(5000));
            let _ = tokio::time::timeout(wait, offsets.wait_for(|&offset| offset > from)).await;
        }
        let leadership = self.leadership.borrow().clone();
        let missing = match self.shared.missing(from) {
            Missing::Batches(batches) => TailMissing::Batches(batches),
            Missing::Image(image, raft_index) => TailMissing::Image {
                image: image.to_snapshot(),
                raft_index,
            },
        };
        TailReply {
            leader: leadership.leader,
            term: leadership.term,
            missing,
        }
    }
}

/// Serialization of the answers of [`Node::answer`], whatever their type.
mod erased {
    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self).expect("quorum answers serialize")
        }
    }
}

/// While this node leads, asks a majority of the voters every half
/// election timeout whether they still follow it. openraft 0.9 keeps a
/// leader that lost its majority leading (it has no check-quorum); such a
/// node must not act as the active controller, whose decisions could not
/// commit, nor tell brokers it is one.
async fn check_quorum(raft: Raft, within: Duration, heard: watch::Sender<bool>) {
    let mut metrics = raft.metrics();
    loop {
        let leading = metrics.borrow_and_update().state == ServerState::Leader;
        if leading {
            let answered = tokio::time::timeout(within, raft.ensure_linearizable()).await;
            heard.send_if_modified(|old| {
                let now = matches!(answered, Ok(Ok(_)));
                std::mem::replace(old, now) != now
            });
            tokio::time::sleep(within / 2).await;
        } else {
            heard.send_if_modified(|old| !std::mem::replace(old, true));
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }
}

/// Keeps [`Leadership`] current from Raft's metrics, the state machine's
/// progress and whether a majority still follows this node.
async fn follow_leadership(
    me: u64,
    mut metrics: watch::Receiver<openraft::RaftMetrics<u64, BasicNode>>,
    mut ready: watch::Receiver<Option<openraft::LeaderId<u64>>>,
    mut heard: watch::Receiver<bool>,
    leadership: watch::Sender<Leadership>,
) {
    let mut reported_fatal = false;
    loop {
        let now = {
            let m = metrics.borrow_and_update();
            if let Err(fatal) = &m.running_state {
                if !reported_fatal {
                    reported_fatal = true;
                    tracing::error!(%fatal, "the controller quorum stopped on this node; restart it once the cause (see above) is fixed");
                }
            }
            let ready = *ready.borrow_and_update();
            let heard = *heard.borrow_and_update();
            // A leader cut off from its majority names no leader: it is
            // not one that can decide anything.
            let cut_off = m.current_leader == Some(me) && !heard;
            Leadership {
                leader: m.current_leader.filter(|_| !cut_off).map(|id| id as i32),
                term: m.current_term,
                local_ready: m.state == ServerState::Leader
                    && m.current_leader == Some(me)
                    && heard
                    && ready == Some(m.vote.leader_id),
            }
        };
        leadership.send_if_modified(|old| {
            let changed = *old != now;
            if changed {
                if now.local_ready {
                    tracing::info!(term = now.term, "this node leads the controller quorum");
                } else if old.leader != now.leader {
                    tracing::info!(leader = ?now.leader, term = now.term, "controller quorum leader changed");
                }
                *old = now;
            }
            changed
        });
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            changed = ready.changed() => if changed.is_err() { return },
            changed = heard.changed() => if changed.is_err() { return },
        }
    }
}

/// Answers the other nodes on this voter's controller listener.
async fn serve(node: Arc<Node>, listener: tokio::net::TcpListener) {
    // Connections end with the listener's task (at shutdown).
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (mut stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accepting on the controller listener failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let node = node.clone();
        connections.spawn(async move {
            loop {
                let frame = match network::read_frame(&mut stream).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return,
                    Err(error) => {
                        tracing::debug!(%peer, %error, "controller connection ended");
                        return;
                    }
                };
                let rpc: Rpc = match serde_json::from_slice(&frame) {
                    Ok(rpc) => rpc,
                    Err(error) => {
                        tracing::warn!(%peer, %error, "a request on the controller listener does not parse; closing the connection");
                        return;
                    }
                };
                let answer = node.answer(rpc).await;
                if network::write_frame(&mut stream, &answer).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// A broker-only node follows the voters: it asks the leader (or, not
/// knowing it, each voter in turn) for the batches it lacks and applies
/// them as a voter's state machine does.
async fn tail(node: Arc<Node>) {
    let voters: Vec<i32> = node.voters.keys().copied().collect();
    let mut connections: HashMap<i32, Connection> = HashMap::new();
    let mut next = 0usize;
    let mut warned = Instant::now() - Duration::from_secs(60);
    loop {
        let leader = node
            .leadership
            .borrow()
            .leader
            .filter(|id| node.voters.contains_key(id));
        let target = leader.unwrap_or_else(|| {
            next += 1;
            voters[next % voters.len()]
        });
        let connection = connections
            .entry(target)
            .or_insert_with(|| Connection::new(node.voters[&target].clone()));
        let rpc = Rpc::Tail {
            node_id: node.node_id,
            from: node.shared.image().applied,
            raft_index: node.shared.raft_index(),
            wait_ms: 1000,
        };
        let timeout = Duration::from_millis(1000 + node.timing.rpc_timeout_ms);
        let reply = match connection.call(&rpc, timeout).await {
            Ok(bytes) => {
                serde_json::from_slice::<TailReply>(&bytes).map_err(|error| error.to_string())
            }
            Err(error) => Err(error.to_string()),
        };
        let reply = match reply {
            Ok(reply) => reply,
            Err(error) => {
                if warned.elapsed() > Duration::from_secs(10) {
                    tracing::warn!(voter = target, %error, "cannot reach a controller quorum voter; trying the others");
                    warned = Instant::now();
                }
                node.leadership
                    .send_if_modified(|l| l.leader.take().is_some());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        node.leadership.send_if_modified(|l| {
            // Terms never go back: a voter that answers from an older term
            // (one cut off from the others) does not know the leader.
            let now = Leadership {
                leader: reply.leader.filter(|_| reply.term >= l.term),
                term: reply.term.max(l.term),
                local_ready: false,
            };
            let changed = *l != now;
            *l = now;
            changed
        });
        match reply.missing {
            TailMissing::Batches(batches) => {
                for batch in batches {
                    let mut image = (*node.shared.image()).clone();
                    if batch.from != image.applied {
                        break; // not from where this node is: ask again
                    }
                    for record in &batch.records {
                        image.apply(record);
                    }
                    node.shared
                        .publish_batch(batch.records, Arc::new(image), batch.raft_index);
                }
            }
            TailMissing::Image { image, raft_index } => {
                match MetadataImage::from_snapshot(&image) {
                    Some(image) => node.shared.publish_image(Arc::new(image), raft_index),
                    None => tracing::error!(
                        voter = target,
                        "a voter sent a metadata image that does not parse"
                    ),
                }
            }
        }
    }
}
