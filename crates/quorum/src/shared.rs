//! What a node has applied, shared between the side that applies (the
//! state machine on a voter, the tail on a broker-only node) and the side
//! that reads (the broker, and voters answering broker-only nodes).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use strom_metadata::{MetadataImage, MetadataRecord};
use tokio::sync::{mpsc, watch};

use crate::Applied;

/// How many recent batches a node keeps for broker-only nodes that follow
/// it; one further behind gets the whole image instead.
const TAIL_BATCHES: usize = 4096;

/// One applied batch, as broker-only nodes receive it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TailBatch {
    /// The metadata offset before the batch.
    pub from: u64,
    pub records: Vec<MetadataRecord>,
    /// The Raft index of the entry that carried it.
    pub raft_index: u64,
}

struct State {
    image: Arc<MetadataImage>,
    recent: VecDeque<TailBatch>,
    raft_index: u64,
}

pub struct Shared {
    state: Mutex<State>,
    offsets: watch::Sender<u64>,
    applied: mpsc::UnboundedSender<Applied>,
}

/// What a follower that is at metadata offset `from` is missing.
pub enum Missing {
    Batches(Vec<TailBatch>),
    Image(Arc<MetadataImage>, u64),
}

impl Shared {
    pub fn new(
        image: MetadataImage,
        raft_index: u64,
        applied: mpsc::UnboundedSender<Applied>,
    ) -> Arc<Shared> {
        let offset = image.applied;
        Arc::new(Shared {
            state: Mutex::new(State {
                image: Arc::new(image),
                recent: VecDeque::new(),
                raft_index,
            }),
            offsets: watch::Sender::new(offset),
            applied,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.lock().image.clone()
    }

    pub fn raft_index(&self) -> u64 {
        self.lock().raft_index
    }

    pub fn offsets(&self) -> watch::Receiver<u64> {
        self.offsets.subscribe()
    }

    /// Publishes a batch applied to `image` (the image after it).
    pub fn publish_batch(
        &self,
        records: Vec<MetadataRecord>,
        image: Arc<MetadataImage>,
        raft_index: u64,
    ) {
        let offset = image.applied;
        {
            let mut state = self.lock();
            let from = state.image.applied;
            state.image = image.clone();
            state.raft_index = raft_index;
            state.recent.push_back(TailBatch {
                from,
                records: records.clone(),
                raft_index,
            });
            if state.recent.len() > TAIL_BATCHES {
                state.recent.pop_front();
            }
        }
        let _ = self.applied.send(Applied {
            records,
            image,
            from_snapshot: false,
        });
        self.offsets.send_replace(offset);
    }

    /// Publishes an image that replaces the one before (a snapshot).
    pub fn publish_image(&self, image: Arc<MetadataImage>, raft_index: u64) {
        let offset = image.applied;
        {
            let mut state = self.lock();
            state.image = image.clone();
            state.raft_index = raft_index;
            state.recent.clear();
        }
        let _ = self.applied.send(Applied {
            records: Vec::new(),
            image,
            from_snapshot: true,
        });
        self.offsets.send_replace(offset);
    }

    /// Notes a Raft index applied without metadata (blank and membership
    /// entries).
    pub fn note_raft_index(&self, raft_index: u64) {
        self.lock().raft_index = raft_index;
    }

    /// What a follower at metadata offset `from` lacks: the batches since,
    /// when they are still kept, else the whole image. Empty when it has
    /// everything this node has.
    pub fn missing(&self, from: u64) -> Missing {
        let state = self.lock();
        if from >= state.image.applied {
            return Missing::Batches(Vec::new());
        }
        match state.recent.iter().position(|batch| batch.from == from) {
            Some(start) => Missing::Batches(state.recent.iter().skip(start).cloned().collect()),
            None => Missing::Image(state.image.clone(), state.raft_index),
        }
    }
}
