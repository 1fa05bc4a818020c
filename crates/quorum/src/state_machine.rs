//! The state machine: the metadata image, rebuilt from the last snapshot
//! at start and kept in memory; every applied batch goes to the broker.
//!
//! The snapshot is the image's JSON in one checked file (`snapshot`),
//! written atomically; the Raft log keeps the entries after it, so the
//! image is volatile and nothing but the snapshot is written per apply.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use strom_metadata::MetadataImage;
use tokio::sync::watch;

use crate::files::{read_checked, write_atomic};
use crate::shared::Shared;
use crate::types::{
    Command, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

const SNAPSHOT_FILE: &str = "snapshot";

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    /// The image's JSON ([`MetadataImage::to_snapshot`]), as sent to
    /// followers.
    data: String,
}

struct State {
    image: MetadataImage,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

pub struct StateMachine {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
    shared: Arc<Shared>,
    /// The leader of the last blank entry applied: a new leader's image is
    /// complete once its own blank entry is applied.
    ready: watch::Sender<Option<openraft::LeaderId<u64>>>,
}

pub struct SnapshotBuilder {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    snapshot: Arc<Mutex<Option<StoredSnapshot>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_snapshot(dir: &Path) -> Result<Option<(StoredSnapshot, MetadataImage)>, StorageError> {
    let Some(json) = read_checked(&dir.join(SNAPSHOT_FILE))
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?
    else {
        return Ok(None);
    };
    let stored: StoredSnapshot =
        serde_json::from_slice(&json).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
    let image = MetadataImage::from_snapshot(&stored.data).ok_or_else(|| {
        StorageIOError::read_snapshot(
            None,
            &std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the metadata snapshot does not parse",
            ),
        )
    })?;
    Ok(Some((stored, image)))
}

impl StateMachine {
    /// Opens the state machine in `dir`: the last snapshot's image, or an
    /// empty one.
    pub fn open(
        dir: &Path,
        applied: tokio::sync::mpsc::UnboundedSender<crate::Applied>,
    ) -> Result<StateMachine, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| StorageIOError::write(&e))?;
        let (state, snapshot) = match read_snapshot(dir)? {
            Some((stored, image)) => (
                State {
                    image,
                    last_applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership.clone(),
                },
                Some(stored),
            ),
            None => (
                State {
                    image: MetadataImage::default(),
                    last_applied: None,
                    membership: StoredMembership::default(),
                },
                None,
            ),
        };
        let raft_index = state.last_applied.map_or(0, |id| id.index);
        let shared = Shared::new(state.image.clone(), raft_index, applied);
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
            snapshot: Arc::new(Mutex::new(snapshot)),
            shared,
            ready: watch::Sender::new(None),
        })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The image as applied (for tests and diagnostics).
    pub fn shared_image(&self) -> Arc<MetadataImage> {
        self.shared.image()
    }

    pub fn ready(&self) -> watch::Receiver<Option<openraft::LeaderId<u64>>> {
        self.ready.subscribe()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let (data, meta) = {
            let state = lock(&self.state);
            let meta = SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id: format!(
                    "{}-{}",
                    state.last_applied.map_or(0, |id| id.leader_id.term),
                    state.last_applied.map_or(0, |id| id.index)
                ),
            };
            (state.image.to_snapshot(), meta)
        };
        let bytes = data.clone().into_bytes();
        persist(&self.dir, &self.snapshot, &meta, data)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let state = lock(&self.state);
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<u64>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut answers = Vec::new();
        for entry in entries {
            let mut state = lock(&self.state);
            state.last_applied = Some(entry.log_id);
            let index = entry.log_id.index;
            match entry.payload {
                EntryPayload::Blank => {
                    drop(state);
                    self.shared.note_raft_index(index);
                    self.ready.send_replace(Some(entry.log_id.leader_id));
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                    drop(state);
                    self.shared.note_raft_index(index);
                }
                EntryPayload::Normal(Command::Records(records)) => {
                    for record in &records {
                        state.image.apply(record);
                    }
                    let image = Arc::new(state.image.clone());
                    drop(state);
                    self.shared.publish_batch(records, image, index);
                }
                EntryPayload::Normal(Command::Seed(seed)) => {
                    if state.image.applied == 0 {
                        state.image = *seed;
                        let image = Arc::new(state.image.clone());
                        drop(state);
                        self.shared.publish_image(image, index);
                    } else {
                        drop(state);
                        self.shared.note_raft_index(index);
                    }
                }
            }
            answers.push(lock(&self.state).image.applied);
        }
        Ok(answers)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.clone(),
            snapshot: self.snapshot.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let invalid = |what: &str| {
            StorageIOError::read_snapshot(
                Some(meta.signature()),
                &std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string()),
            )
        };
        let data = String::from_utf8(snapshot.into_inner())
            .map_err(|_| invalid("snapshot is not UTF-8"))?;
        let image = MetadataImage::from_snapshot(&data)
            .ok_or_else(|| invalid("snapshot does not parse"))?;
        persist(&self.dir, &self.snapshot, meta, data)?;
        {
            let mut state = lock(&self.state);
            state.image = image.clone();
            state.last_applied = meta.last_log_id;
            state.membership = meta.last_membership.clone();
        }
        self.shared
            .publish_image(Arc::new(image), meta.last_log_id.map_or(0, |id| id.index));
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(lock(&self.snapshot).as_ref().map(|stored| Snapshot {
            meta: stored.meta.clone(),
            snapshot: Box::new(Cursor::new(stored.data.clone().into_bytes())),
        }))
    }
}

/// Writes the snapshot file (atomically: a crash leaves the old one or
/// this) and makes it the current snapshot, unless a newer one is there
/// already: openraft builds snapshots in a task of their own, so a slow
/// build may finish after a leader's newer snapshot was installed. The slot
/// stays locked across the write, so two writers never share the file.
fn persist(
    dir: &Path,
    slot: &Mutex<Option<StoredSnapshot>>,
    meta: &SnapshotMeta,
    data: String,
) -> Result<(), StorageError> {
    let mut current = lock(slot);
    if current
        .as_ref()
        .is_some_and(|stored| stored.meta.last_log_id >= meta.last_log_id)
    {
        return Ok(());
    }
    let stored = StoredSnapshot {
        meta: meta.clone(),
        data,
    };
    write_atomic(
        &dir.join(SNAPSHOT_FILE),
        &serde_json::to_vec(&stored).expect("snapshots serialize"),
    )
    .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
    *current = Some(stored);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: StoredMembership::default(),
            snapshot_id: index.to_string(),
        }
    }

    #[test]
    fn a_snapshot_finished_after_a_newer_one_does_not_replace_it() {
        let dir = tempfile::tempdir().unwrap();
        let slot = Mutex::new(None);
        persist(dir.path(), &slot, &meta(500), "newer".into()).unwrap();
        // A build that read the state at index 100 finishes only now.
        persist(dir.path(), &slot, &meta(100), "older".into()).unwrap();
        let current = lock(&slot);
        assert_eq!(current.as_ref().unwrap().data, "newer");
        let file = read_checked(&dir.path().join(SNAPSHOT_FILE))
            .unwrap()
            .unwrap();
        let stored: StoredSnapshot = serde_json::from_slice(&file).unwrap();
        assert_eq!(stored.data, "newer");
    }
}
