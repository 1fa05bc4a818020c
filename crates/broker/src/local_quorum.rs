//! A quorum of one over the local metadata log, with the interface of the
//! Raft quorum (`strom-quorum`, being built) so the broker runs on the same
//! seams either way: records are committed once fsynced in the local
//! [`MetadataLog`], applied to the image, and handed to the broker in
//! order. This node is always the leader. It goes when the Raft quorum
//! lands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use strom_controller::{MetadataLog, MetadataLogError, SNAPSHOT_AFTER_RECORDS};
use strom_metadata::{MetadataImage, MetadataRecord};
use tokio::sync::{mpsc, watch};

/// The Raft quorum's timings (unused by a quorum of one).
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
            rpc_timeout_ms: 1000,
        }
    }
}

pub struct QuorumConfig {
    pub node_id: i32,
    pub voters: BTreeMap<i32, String>,
    pub dir: PathBuf,
    pub listener: Option<tokio::net::TcpListener>,
    pub timing: Timing,
    pub snapshot_after_entries: u64,
}

/// One committed batch, with the image right after it.
pub struct Applied {
    pub records: Vec<MetadataRecord>,
    pub image: Arc<MetadataImage>,
    pub from_snapshot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("this node is not the quorum leader")]
    NotLeader { leader: Option<(i32, String)> },
    #[error("{0}")]
    Fatal(String),
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RpcError(String);

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error(transparent)]
    Log(#[from] MetadataLogError),
    #[error("{0}")]
    Config(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    pub leader: Option<i32>,
    pub term: u64,
    pub local_ready: bool,
}

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

struct State {
    log: MetadataLog,
    image: Arc<MetadataImage>,
}

pub struct Quorum {
    node_id: i32,
    state: Mutex<State>,
    applied: mpsc::UnboundedSender<Applied>,
    offsets: watch::Sender<u64>,
    leadership: watch::Sender<Leadership>,
}

impl Quorum {
    pub async fn start(
        config: QuorumConfig,
        _seed: Option<MetadataImage>,
        applied: mpsc::UnboundedSender<Applied>,
    ) -> Result<Quorum, QuorumError> {
        if config.voters.len() != 1 || !config.voters.contains_key(&config.node_id) {
            return Err(QuorumError::Config(
                "this build runs a one-node cluster only: start without --controller-quorum-voters"
                    .to_string(),
            ));
        }
        let (log, image) = MetadataLog::open(&config.dir)?;
        let offset = image.applied;
        Ok(Quorum {
            node_id: config.node_id,
            state: Mutex::new(State {
                log,
                image: Arc::new(image),
            }),
            applied,
            offsets: watch::Sender::new(offset),
            leadership: watch::Sender::new(Leadership {
                leader: Some(config.node_id),
                term: 1,
                local_ready: true,
            }),
        })
    }

    pub async fn append(&self, records: Vec<MetadataRecord>) -> Result<u64, AppendError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .log
            .append(&records)
            .map_err(|error| AppendError::Fatal(error.to_string()))?;
        let mut image = (*state.image).clone();
        for record in &records {
            image.apply(record);
        }
        if state.log.records_since_snapshot() >= SNAPSHOT_AFTER_RECORDS {
            if let Err(error) = state.log.snapshot(&image) {
                tracing::warn!(%error, "could not snapshot the metadata; the next start replays more of the log");
            }
        }
        let image = Arc::new(image);
        state.image = image.clone();
        let offset = image.applied;
        let _ = self.applied.send(Applied {
            records,
            image,
            from_snapshot: false,
        });
        self.offsets.send_replace(offset);
        Ok(offset)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .image
            .clone()
    }

    pub async fn wait_applied(&self, offset: u64, timeout: Duration) -> bool {
        let mut offsets = self.offsets.subscribe();
        let reached = tokio::time::timeout(timeout, offsets.wait_for(|&applied| applied >= offset))
            .await
            .is_ok_and(|waited| waited.is_ok());
        reached
    }

    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.leadership.subscribe()
    }

    pub fn status(&self) -> QuorumStatus {
        let offset = self.image().applied as i64;
        let now = crate::partition::now_ms();
        QuorumStatus {
            leader: Some(self.node_id),
            term: 1,
            high_watermark: offset as u64,
            voters: vec![ReplicaStatus {
                node_id: self.node_id,
                log_end_offset: offset,
                last_fetch_ms: now,
                last_caught_up_ms: now,
            }],
            observers: Vec::new(),
        }
    }

    #[allow(clippy::type_complexity)]
    pub fn set_app_handler(
        &self,
        _handler: Arc<
            dyn Fn(serde_json::Value) -> BoxFuture<'static, serde_json::Value> + Send + Sync,
        >,
    ) {
    }

    pub async fn call_leader(
        &self,
        _request: serde_json::Value,
        _timeout: Duration,
    ) -> Result<serde_json::Value, RpcError> {
        Err(RpcError("a one-node quorum has no other node".to_string()))
    }
}
