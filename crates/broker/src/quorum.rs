//! The metadata quorum as the broker sees it: decisions go to the active
//! controller, whose records are committed to the metadata log and applied
//! to the committed image, in that order.
//!
//! Today the quorum is this node alone (`strom serve` is a one-node cluster):
//! the controller runs in-process and "committed" means fsynced in the local
//! [`MetadataLog`]. This is the seam where the Raft quorum (openraft) goes:
//! [`MetadataQuorum::decide`] keeps its contract (the reply only once the
//! records are committed; the image never holds an uncommitted record), and
//! brokers that are not voters receive the committed records instead of
//! deciding.

use std::sync::{Mutex, MutexGuard};

use strom_controller::{
    Controller, ControllerConfig, ControllerError, ControllerReply, ControllerRequest, Decision,
    MetadataLog, MetadataLogError, SNAPSHOT_AFTER_RECORDS,
};
use strom_metadata::{MetadataImage, MetadataRecord};

/// Why a decision did not take effect.
#[derive(Debug)]
pub enum DecideError {
    /// The controller refused the request.
    Refused(ControllerError),
    /// The records could not be committed; nothing changed.
    Storage(MetadataLogError),
}

struct State {
    log: MetadataLog,
    controller: Controller,
    /// Every committed record applied.
    image: MetadataImage,
}

pub struct MetadataQuorum {
    config: ControllerConfig,
    state: Mutex<State>,
}

/// What a committed decision returns: the controller's reply and the records
/// it committed, for the caller to apply to local storage.
pub struct Committed<T> {
    pub reply: T,
    pub records: Vec<MetadataRecord>,
}

impl MetadataQuorum {
    /// The quorum over a log replayed into `image`, its controller active
    /// from `now_ms`.
    pub fn new(
        config: ControllerConfig,
        log: MetadataLog,
        image: MetadataImage,
        now_ms: i64,
    ) -> MetadataQuorum {
        let controller = Controller::new(config.clone(), image.clone(), now_ms);
        MetadataQuorum {
            config,
            state: Mutex::new(State {
                log,
                controller,
                image,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while deciding is a broken invariant that already took the
        // request down; the committed image is only changed after a commit.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one decision of the active controller and commits its records.
    /// Decisions are serialized, so the log's order is the order in which
    /// they took effect. `now_ms` is the time the decision is made at.
    pub fn decide(
        &self,
        now_ms: i64,
        request: ControllerRequest,
    ) -> Result<Committed<ControllerReply>, DecideError> {
        self.commit_decision(now_ms, |controller| controller.handle(request, now_ms))
    }

    /// The active controller's periodic work (fencing, rebalancing), at
    /// `now_ms`; returns the records it committed.
    pub fn tick(&self, now_ms: i64) -> Result<Vec<MetadataRecord>, DecideError> {
        self.commit_decision(now_ms, |controller| {
            Ok(Decision {
                reply: (),
                records: controller.tick(now_ms),
            })
        })
        .map(|committed| committed.records)
    }

    fn commit_decision<T>(
        &self,
        now_ms: i64,
        decision: impl FnOnce(&mut Controller) -> Result<Decision<T>, ControllerError>,
    ) -> Result<Committed<T>, DecideError> {
        let mut state = self.lock();
        let Decision { reply, records } =
            decision(&mut state.controller).map_err(DecideError::Refused)?;
        if let Err(error) = commit(&mut state, &records) {
            // The controller's image is ahead of the log: start over from
            // what is committed, as a controller that lost its place does.
            tracing::error!(%error, "committing metadata records failed; the controller restarts from the committed image");
            let image = state.image.clone();
            state.controller = Controller::new(self.config.clone(), image, now_ms);
            return Err(DecideError::Storage(error));
        }
        Ok(Committed { reply, records })
    }

    /// The active controller's node id, if it is another node (today the
    /// quorum is this node alone).
    pub fn leader(&self) -> Option<i32> {
        None
    }

    /// Runs `read` on the committed image.
    pub fn read<T>(&self, read: impl FnOnce(&MetadataImage) -> T) -> T {
        read(&self.lock().image)
    }
}

fn commit(state: &mut State, records: &[MetadataRecord]) -> Result<(), MetadataLogError> {
    if records.is_empty() {
        return Ok(());
    }
    state.log.append(records)?;
    for record in records {
        state.image.apply(record);
    }
    debug_assert_eq!(state.image.applied, state.controller.image().applied);
    if state.log.records_since_snapshot() >= SNAPSHOT_AFTER_RECORDS {
        // The records are committed either way; a failed snapshot only
        // means a longer replay at the next start.
        if let Err(error) = state.log.snapshot(&state.image) {
            tracing::warn!(%error, "could not snapshot the metadata; the next start replays more of the log");
        }
    }
    Ok(())
}
